//! Row images: the field values of one database row, taken from any `Serialize` struct.
//!
//! Only scalar fields are kept (see [`Value`]); nested structs, sequences and maps are left
//! out, because conditions can only compare scalars.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{self, Impossible, Serialize};

use crate::error::Error;
use crate::scalar::{ScalarSer, Shape};
use crate::value::Value;

/// The scalar fields of one row, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(BTreeMap<String, Value>);

impl Row {
    /// An empty row image.
    pub fn new() -> Row {
        Row::default()
    }

    /// Builds a row image from a struct or a map with string keys.
    ///
    /// Fields that are not scalars are left out. Anything other than a struct or map at the
    /// top level is an [`Error::Row`].
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Row, Error> {
        value
            .serialize(ScalarSer(Top))
            .map_err(|e| Error::Row(e.to_string()))
    }

    /// The old and new images of an updated row.
    pub(crate) fn images_of_update<R: Serialize + ?Sized>(
        old: &R,
        new: &R,
    ) -> Result<[Row; 2], Error> {
        Ok([Row::from_serialize(old)?, Row::from_serialize(new)?])
    }

    /// The old and new images of many updated rows.
    pub(crate) fn images_of_changes<'r, R: Serialize + 'r>(
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<Vec<Row>, Error> {
        let mut rows = Vec::new();
        for (old, new) in changes {
            rows.extend(Row::images_of_update(old, new)?);
        }
        Ok(rows)
    }

    /// Sets one field (builder style).
    pub fn with(mut self, field: impl Into<String>, value: impl Into<Value>) -> Row {
        self.0.insert(field.into(), value.into());
        self
    }

    /// Sets one field.
    pub fn insert(&mut self, field: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(field.into(), value.into());
    }

    /// The value of a field, if the image has it.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// Removes a field (used for fields a profile skips).
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field)
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the image has no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Row {
    /// A map of field to value, so a `Row` can go wherever a row struct can.
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Row {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Row(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

/// Serializer error: a message, or (from a field) "not a scalar", which leaves the field
/// out of the row.
#[derive(Debug)]
enum SerError {
    NotScalar,
    Message(String),
}

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerError::NotScalar => f.write_str("not a scalar"),
            SerError::Message(m) => f.write_str(m),
        }
    }
}
impl std::error::Error for SerError {}
impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError::Message(msg.to_string())
    }
}

/// The top level's [`Shape`]: a struct or a map, whose scalar fields it collects.
struct Top;

/// Collects fields; shared by the struct and map forms.
struct RowCollector {
    row: Row,
    pending_key: Option<String>,
}

impl RowCollector {
    fn field<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), SerError> {
        match value.serialize(ScalarSer(Field)) {
            Ok(v) => {
                self.row.0.insert(key, v);
                Ok(())
            }
            Err(SerError::NotScalar) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Shape for Top {
    type Ok = Row;
    type Error = SerError;
    type Seq = Impossible<Row, SerError>;
    type Tuple = Impossible<Row, SerError>;
    type TupleStruct = Impossible<Row, SerError>;
    type TupleVariant = Impossible<Row, SerError>;
    type Map = RowCollector;
    type Struct = RowCollector;
    type StructVariant = Impossible<Row, SerError>;

    fn scalar(self, v: Value) -> Result<Row, SerError> {
        Err(self.refuse(match v {
            Value::Null => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "a string",
            Value::Bytes(_) => "bytes",
        }))
    }
    fn refuse(self, what: &'static str) -> SerError {
        SerError::Message(format!(
            "expected a struct or a map with string keys, got {what}"
        ))
    }
    fn unit(self) -> Result<Row, SerError> {
        Err(self.refuse("()"))
    }
    fn unit_variant(self, _: &'static str) -> Result<Row, SerError> {
        Err(self.refuse("an enum"))
    }
    fn map(self, _: Option<usize>) -> Result<RowCollector, SerError> {
        Ok(RowCollector {
            row: Row::new(),
            pending_key: None,
        })
    }
    fn structure(self, _: &'static str, _: usize) -> Result<RowCollector, SerError> {
        self.map(None)
    }
}

impl ser::SerializeStruct for RowCollector {
    type Ok = Row;
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.field(key.to_owned(), value)
    }
    fn end(self) -> Result<Row, SerError> {
        Ok(self.row)
    }
}

impl ser::SerializeMap for RowCollector {
    type Ok = Row;
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        match key.serialize(ScalarSer(Field)) {
            Ok(Value::Text(s)) => {
                self.pending_key = Some(s);
                Ok(())
            }
            _ => Err(Top.refuse("a map whose keys are not strings")),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| SerError::Message("map value without a key".into()))?;
        self.field(key, value)
    }
    fn end(self) -> Result<Row, SerError> {
        Ok(self.row)
    }
}

/// One field's [`Shape`]: a scalar is its [`Value`] (`()` and unit structs `Null`, a
/// fieldless enum its variant's name); anything else is [`SerError::NotScalar`].
struct Field;

impl Shape for Field {
    type Ok = Value;
    type Error = SerError;
    type Seq = Impossible<Value, SerError>;
    type Tuple = Impossible<Value, SerError>;
    type TupleStruct = Impossible<Value, SerError>;
    type TupleVariant = Impossible<Value, SerError>;
    type Map = Impossible<Value, SerError>;
    type Struct = Impossible<Value, SerError>;
    type StructVariant = Impossible<Value, SerError>;

    fn scalar(self, v: Value) -> Result<Value, SerError> {
        Ok(v)
    }
    fn refuse(self, _: &'static str) -> SerError {
        SerError::NotScalar
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::HashMap;

    #[derive(Serialize)]
    struct Inner {
        x: i32,
    }

    #[derive(Serialize)]
    enum Kind {
        Draft,
    }

    #[derive(Serialize)]
    struct Article {
        id: u32,
        title: String,
        published: bool,
        score: Option<f64>,
        tags: Vec<String>,
        inner: Inner,
        kind: Kind,
    }

    #[test]
    fn struct_fields_become_a_flat_row() {
        let row = Row::from_serialize(&Article {
            id: 7,
            title: "t".into(),
            published: true,
            score: None,
            tags: vec!["a".into()],
            inner: Inner { x: 1 },
            kind: Kind::Draft,
        })
        .unwrap();
        assert_eq!(row.get("id"), Some(&Value::from(7)));
        assert_eq!(row.get("title"), Some(&Value::from("t")));
        assert_eq!(row.get("published"), Some(&Value::from(true)));
        assert_eq!(row.get("score"), Some(&Value::Null));
        assert_eq!(row.get("kind"), Some(&Value::from("Draft")));
        assert!(row.get("tags").is_none());
        assert!(row.get("inner").is_none());
        assert_eq!(row.len(), 5);
    }

    #[test]
    fn maps_with_string_keys_are_rows() {
        let mut m = HashMap::new();
        m.insert("a", 1);
        let row = Row::from_serialize(&m).unwrap();
        assert_eq!(row.get("a"), Some(&Value::from(1)));
    }

    #[test]
    fn non_rows_are_typed_errors() {
        let err = Row::from_serialize(&5).unwrap_err();
        assert!(
            matches!(err, Error::Row(ref m) if m.contains("an integer")),
            "{err}"
        );
        let mut m = HashMap::new();
        m.insert(1, 1);
        assert!(matches!(Row::from_serialize(&m), Err(Error::Row(_))));
        assert!(matches!(Row::from_serialize(&vec![1]), Err(Error::Row(_))));
    }

    struct Bytes(&'static [u8]);
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Id(i64);

    #[derive(Serialize)]
    enum Shape {
        Circle(f64),
    }

    #[derive(Serialize)]
    struct Everything {
        a_i8: i8,
        b_u64: u64,
        c_i128: i128,
        d_u128: u128,
        e_u128_big: u128,
        f_f32: f32,
        g_f64_integral: f64,
        h_nan: f64,
        i_char: char,
        j_text: String,
        k_bytes: Bytes,
        l_bool: bool,
        m_none: Option<i32>,
        n_some: Option<Option<i32>>,
        o_unit: (),
        p_unit_struct: Unit,
        q_kind: Kind,
        r_id: Id,
        s_shape: Shape,
        t_tuple: (i32, i32),
        u_map: HashMap<String, i32>,
    }

    /// Invalidation keys are built from row images: they must never change.
    #[test]
    fn row_images_are_pinned() {
        let row = Row::from_serialize(&Everything {
            a_i8: -3,
            b_u64: u64::MAX,
            c_i128: i128::MIN,
            d_u128: 12,
            e_u128_big: u128::MAX,
            f_f32: 1.5,
            g_f64_integral: 4.0,
            h_nan: f64::NAN,
            i_char: 'c',
            j_text: "a&b".into(),
            k_bytes: Bytes(&[1, 0xab]),
            l_bool: false,
            m_none: None,
            n_some: Some(Some(8)),
            o_unit: (),
            p_unit_struct: Unit,
            q_kind: Kind::Draft,
            r_id: Id(-1),
            s_shape: Shape::Circle(1.0),
            t_tuple: (1, 2),
            u_map: HashMap::from([("k".to_string(), 1)]),
        })
        .unwrap();
        assert_eq!(
            format!("{row:?}"),
            "Row({\"a_i8\": Int(-3), \"b_u64\": Int(18446744073709551615), \
             \"c_i128\": Int(-170141183460469231731687303715884105728), \"d_u128\": Int(12), \
             \"f_f32\": Float(1.5), \"g_f64_integral\": Float(4.0), \"h_nan\": Float(NaN), \
             \"i_char\": Text(\"c\"), \"j_text\": Text(\"a&b\"), \"k_bytes\": Bytes([1, 171]), \
             \"l_bool\": Bool(false), \"m_none\": Null, \"n_some\": Int(8), \"o_unit\": Null, \
             \"p_unit_struct\": Null, \"q_kind\": Text(\"Draft\"), \"r_id\": Int(-1)})"
        );
        let encoded: Vec<String> = row
            .iter()
            .map(|(k, v)| format!("{k}={}", v.encode()))
            .collect();
        assert_eq!(
            encoded.join("&"),
            "a_i8=i-3&b_u64=i18446744073709551615\
             &c_i128=i-170141183460469231731687303715884105728&d_u128=i12&f_f32=r1.5\
             &g_f64_integral=i4&h_nan=rNaN&i_char=sc&j_text=sa%26b&k_bytes=x01ab&l_bool=F\
             &m_none=N&n_some=i8&o_unit=N&p_unit_struct=N&q_kind=sDraft&r_id=i-1"
        );

        // A map with string (and char) keys, values of every scalar kind.
        let mut m: BTreeMap<char, Value> = BTreeMap::new();
        m.insert('x', Value::from(2.5));
        m.insert('y', Value::Null);
        m.insert('z', Value::from(vec![7_u8]));
        let row = Row::from_serialize(&m).unwrap();
        assert_eq!(
            format!("{row:?}"),
            "Row({\"x\": Float(2.5), \"y\": Null, \"z\": Bytes([7])})"
        );
        // A row image serializes back to an equal row image.
        assert_eq!(Row::from_serialize(&row).unwrap(), row);
    }
}
