//! The one serde serializer of scalars: [`ScalarSer`] turns every scalar into a [`Value`]
//! (integers of every width, floats, chars, strings, bytes, bools; `None` is `Null`), for
//! argument keys (`argkey.rs`) and row images (`row.rs`) alike, so both see a scalar the
//! same way. What becomes of a `Value`, and of everything that is not a scalar (sequences,
//! maps, structs, enum variants with data), is up to the [`Shape`] it wraps.

use serde::ser::{self, Serialize};

use crate::value::Value;

/// The part of a serializer that [`ScalarSer`] leaves to its user: what a scalar becomes
/// once it is a [`Value`], and how compound values are written or refused.
///
/// Every compound method refuses by default, through [`Shape::refuse`]; a shape overrides
/// those it accepts.
pub(crate) trait Shape: Sized {
    /// What serializing a value produces.
    type Ok;
    /// The serializer's error.
    type Error: ser::Error;
    /// Writes a sequence.
    type Seq: ser::SerializeSeq<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a tuple.
    type Tuple: ser::SerializeTuple<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a tuple struct.
    type TupleStruct: ser::SerializeTupleStruct<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a tuple variant.
    type TupleVariant: ser::SerializeTupleVariant<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a map.
    type Map: ser::SerializeMap<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a struct.
    type Struct: ser::SerializeStruct<Ok = Self::Ok, Error = Self::Error>;
    /// Writes a struct variant.
    type StructVariant: ser::SerializeStructVariant<Ok = Self::Ok, Error = Self::Error>;

    /// A scalar, as a [`Value`].
    fn scalar(self, v: Value) -> Result<Self::Ok, Self::Error>;

    /// The error for a value this shape does not take; `what` names it ("a sequence").
    fn refuse(self, what: &'static str) -> Self::Error;

    /// `()` and unit structs: `Null` by default.
    fn unit(self) -> Result<Self::Ok, Self::Error> {
        self.scalar(Value::Null)
    }

    /// A fieldless enum variant: its name, as text, by default (as most ORMs store it).
    fn unit_variant(self, variant: &'static str) -> Result<Self::Ok, Self::Error> {
        self.scalar(Value::from(variant))
    }

    /// A `u128` above `i128::MAX`, which no [`Value`] holds: refused by default.
    fn huge_u128(self, _v: u128) -> Result<Self::Ok, Self::Error> {
        Err(self.refuse("an integer above i128::MAX"))
    }

    /// An enum variant holding one value.
    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        _variant: &'static str,
        _v: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Err(self.refuse("an enum"))
    }

    /// Starts a sequence.
    fn seq(self, _len: Option<usize>) -> Result<Self::Seq, Self::Error> {
        Err(self.refuse("a sequence"))
    }

    /// Starts a tuple.
    fn tuple(self, _len: usize) -> Result<Self::Tuple, Self::Error> {
        Err(self.refuse("a tuple"))
    }

    /// Starts a tuple struct.
    fn tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::TupleStruct, Self::Error> {
        Err(self.refuse("a tuple struct"))
    }

    /// Starts a tuple variant.
    fn tuple_variant(
        self,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::TupleVariant, Self::Error> {
        Err(self.refuse("an enum"))
    }

    /// Starts a map.
    fn map(self, _len: Option<usize>) -> Result<Self::Map, Self::Error> {
        Err(self.refuse("a map"))
    }

    /// Starts a struct.
    fn structure(self, _name: &'static str, _len: usize) -> Result<Self::Struct, Self::Error> {
        Err(self.refuse("a struct"))
    }

    /// Starts a struct variant.
    fn struct_variant(
        self,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::StructVariant, Self::Error> {
        Err(self.refuse("an enum"))
    }
}

/// The serde serializer over a [`Shape`]: scalars become [`Value`]s here, once; `Some(v)`
/// and newtype structs are `v`; everything else goes to the shape.
pub(crate) struct ScalarSer<S>(pub(crate) S);

/// The scalar methods whose type converts straight into a [`Value`].
macro_rules! scalars {
    ($($name:ident($t:ty);)*) => {$(
        fn $name(self, v: $t) -> Result<S::Ok, S::Error> {
            self.0.scalar(Value::from(v))
        }
    )*};
}

impl<S: Shape> ser::Serializer for ScalarSer<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::Seq;
    type SerializeTuple = S::Tuple;
    type SerializeTupleStruct = S::TupleStruct;
    type SerializeTupleVariant = S::TupleVariant;
    type SerializeMap = S::Map;
    type SerializeStruct = S::Struct;
    type SerializeStructVariant = S::StructVariant;

    scalars! {
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

    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        match i128::try_from(v) {
            Ok(i) => self.0.scalar(Value::Int(i)),
            Err(_) => self.0.huge_u128(v),
        }
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.scalar(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.unit()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<S::Ok, S::Error> {
        self.0.unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.unit_variant(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.newtype_variant(variant, v)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<S::Seq, S::Error> {
        self.0.seq(len)
    }
    fn serialize_tuple(self, len: usize) -> Result<S::Tuple, S::Error> {
        self.0.tuple(len)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<S::TupleStruct, S::Error> {
        self.0.tuple_struct(name, len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<S::TupleVariant, S::Error> {
        self.0.tuple_variant(variant, len)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<S::Map, S::Error> {
        self.0.map(len)
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<S::Struct, S::Error> {
        self.0.structure(name, len)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<S::StructVariant, S::Error> {
        self.0.struct_variant(variant, len)
    }
}
