//! Which cache table name a PostgreSQL relation's writes invalidate.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A function naming relations: `(schema, table)` to the cache's table name.
type NameFn = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Maps `(schema, table)` to the table name the cache's reads use.
///
/// In order: an explicit [`map`](TableNames::map) entry (keyed `schema.table`), else the
/// [`with`](TableNames::with) function, else the default: the bare table name for schema
/// `public` (as a read with the default `search_path` names it), `schema.table` otherwise.
#[derive(Clone, Default)]
pub struct TableNames {
    map: HashMap<String, String>,
    func: Option<NameFn>,
}

impl fmt::Debug for TableNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableNames")
            .field("map", &self.map)
            .field("func", &self.func.is_some())
            .finish()
    }
}

impl TableNames {
    /// The default naming (see the type's documentation).
    pub fn new() -> TableNames {
        TableNames::default()
    }

    /// Writes to `relation` (`schema.table`) invalidate the cache's table `cache_table`.
    pub fn map(mut self, relation: impl Into<String>, cache_table: impl Into<String>) -> Self {
        self.map.insert(relation.into(), cache_table.into());
        self
    }

    /// Names every relation without a [`map`](TableNames::map) entry:
    /// `f(schema, table)` is the cache's table name.
    pub fn with(mut self, f: impl Fn(&str, &str) -> String + Send + Sync + 'static) -> Self {
        self.func = Some(Arc::new(f));
        self
    }

    /// The cache's name for `schema.table`.
    pub fn name(&self, schema: &str, table: &str) -> String {
        if let Some(n) = self.map.get(&format!("{schema}.{table}")) {
            return n.clone();
        }
        match &self.func {
            Some(f) => f(schema, table),
            None if schema == "public" => table.to_owned(),
            None => format!("{schema}.{table}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_then_function_then_default() {
        let n = TableNames::new();
        assert_eq!(n.name("public", "article"), "article");
        assert_eq!(n.name("blog", "article"), "blog.article");
        let n = TableNames::new()
            .map("public.blog_article", "blog.article")
            .with(|s, t| format!("{s}:{t}"));
        assert_eq!(n.name("public", "blog_article"), "blog.article");
        assert_eq!(n.name("public", "x"), "public:x");
    }
}
