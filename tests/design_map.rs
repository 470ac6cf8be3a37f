//! DESIGN.md's codemap lists exactly the files of `src/`: a module added, moved or removed
//! without its row fails here.

use std::collections::BTreeSet;
use std::path::Path;

fn rust_files(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under src/");
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn the_codemap_lists_every_module_of_src_and_nothing_else() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeSet::new();
    rust_files(&root.join("src"), &root.join("src"), &mut files);

    let design = std::fs::read_to_string(root.join("DESIGN.md")).expect("DESIGN.md");
    let table = design
        .split("## Codemap (src/)")
        .nth(1)
        .expect("DESIGN.md has a '## Codemap (src/)' section");
    let table = table.split("\n## ").next().unwrap_or(table);
    let listed: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();

    let missing: Vec<_> = files.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&files).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "DESIGN.md's codemap is out of date: add rows for {missing:?}, remove rows for {stale:?}"
    );
}
