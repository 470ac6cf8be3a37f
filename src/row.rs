//! Row images: the field values of one database row, taken from any `Serialize` struct.
//!
//! Only scalar fields are kept (see [`Value`]); nested structs, sequences and maps are left
//! out, because conditions can only compare scalars.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{self, Impossible, Serialize};

use crate::error::Error;
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
        value.serialize(RowSerializer).map_err(|e| Error::Row(e.0))
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

/// Serializer error: a message (for the top level) or the "not a scalar" marker.
#[derive(Debug)]
struct SerError(String);

const NOT_SCALAR: &str = "\u{0}not a scalar";

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SerError {}
impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError(msg.to_string())
    }
}

fn not_a_row<T>(what: &str) -> Result<T, SerError> {
    Err(SerError(format!(
        "expected a struct or a map with string keys, got {what}"
    )))
}

/// Top level: accepts a struct or a map and collects its scalar fields.
struct RowSerializer;

/// Collects fields; shared by the struct and map forms.
struct RowCollector {
    row: Row,
    pending_key: Option<String>,
}

impl RowCollector {
    fn field<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), SerError> {
        match value.serialize(ScalarSerializer) {
            Ok(v) => {
                self.row.0.insert(key, v);
                Ok(())
            }
            Err(e) if e.0 == NOT_SCALAR => Ok(()),
            Err(e) => Err(e),
        }
    }
}

macro_rules! reject {
    ($($name:ident($($arg:ty),*) => $what:expr;)*) => {$(
        fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> { not_a_row($what) }
    )*};
}

impl ser::Serializer for RowSerializer {
    type Ok = Row;
    type Error = SerError;
    type SerializeSeq = Impossible<Row, SerError>;
    type SerializeTuple = Impossible<Row, SerError>;
    type SerializeTupleStruct = Impossible<Row, SerError>;
    type SerializeTupleVariant = Impossible<Row, SerError>;
    type SerializeMap = RowCollector;
    type SerializeStruct = RowCollector;
    type SerializeStructVariant = Impossible<Row, SerError>;

    reject! {
        serialize_bool(bool) => "a bool";
        serialize_i8(i8) => "an integer";
        serialize_i16(i16) => "an integer";
        serialize_i32(i32) => "an integer";
        serialize_i64(i64) => "an integer";
        serialize_u8(u8) => "an integer";
        serialize_u16(u16) => "an integer";
        serialize_u32(u32) => "an integer";
        serialize_u64(u64) => "an integer";
        serialize_f32(f32) => "a float";
        serialize_f64(f64) => "a float";
        serialize_char(char) => "a char";
        serialize_str(&str) => "a string";
        serialize_bytes(&[u8]) => "bytes";
        serialize_none() => "None";
        serialize_unit() => "()";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Row, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Row, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Row, SerError> {
        not_a_row("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        not_a_row("a sequence")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, SerError> {
        not_a_row("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        not_a_row("a tuple struct")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        not_a_row("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<RowCollector, SerError> {
        Ok(RowCollector {
            row: Row::new(),
            pending_key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<RowCollector, SerError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        not_a_row("an enum")
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
        match key.serialize(ScalarSerializer) {
            Ok(Value::Text(s)) => {
                self.pending_key = Some(s);
                Ok(())
            }
            _ => not_a_row("a map whose keys are not strings"),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| SerError("map value without a key".into()))?;
        self.field(key, value)
    }
    fn end(self) -> Result<Row, SerError> {
        Ok(self.row)
    }
}

/// One field: a scalar becomes a [`Value`]; anything compound fails with `NOT_SCALAR`.
struct ScalarSerializer;

fn not_scalar<T>() -> Result<T, SerError> {
    Err(SerError(NOT_SCALAR.into()))
}

macro_rules! scalar {
    ($($name:ident($t:ty);)*) => {$(
        fn $name(self, v: $t) -> Result<Value, SerError> { Ok(Value::from(v)) }
    )*};
}

impl ser::Serializer for ScalarSerializer {
    type Ok = Value;
    type Error = SerError;
    type SerializeSeq = Impossible<Value, SerError>;
    type SerializeTuple = Impossible<Value, SerError>;
    type SerializeTupleStruct = Impossible<Value, SerError>;
    type SerializeTupleVariant = Impossible<Value, SerError>;
    type SerializeMap = Impossible<Value, SerError>;
    type SerializeStruct = Impossible<Value, SerError>;
    type SerializeStructVariant = Impossible<Value, SerError>;

    scalar! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
    }

    fn serialize_u128(self, v: u128) -> Result<Value, SerError> {
        i128::try_from(v).map(Value::Int).or_else(|_| not_scalar())
    }
    fn serialize_none(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, SerError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, SerError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, SerError> {
        // A fieldless enum is stored by name, as most ORMs map it to text.
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Value, SerError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Value, SerError> {
        not_scalar()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, SerError> {
        not_scalar()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, SerError> {
        not_scalar()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, SerError> {
        not_scalar()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, SerError> {
        not_scalar()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, SerError> {
        not_scalar()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, SerError> {
        not_scalar()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, SerError> {
        not_scalar()
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
