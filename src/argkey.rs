//! Canonical text of function arguments for keys (`cached`, `cached_as`): independent of
//! the codec and of integer widths, so `f(3_i32)` and `f(3_i64)` share one entry.
//! Scalars use [`Value::encode`]; sequences are `[a,b]`, maps and structs `{k=v,...}`,
//! enum variants `Name(...)`.

use std::fmt;

use serde::ser::{self, Serialize};

use crate::error::Error;
use crate::scalar::{ScalarSer, Shape};
use crate::value::{escape_into, Value};

/// The canonical key text of `args`.
pub(crate) fn arg_key<A: Serialize + ?Sized>(args: &A) -> Result<String, Error> {
    let mut out = String::new();
    args.serialize(key_ser(&mut out))
        .map_err(|e| Error::Codec(format!("arguments: {}", e.0)))?;
    Ok(out)
}

#[derive(Debug)]
pub(crate) struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for KeyError {}
impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError(msg.to_string())
    }
}

/// Writes the key text of a value into `out`.
fn key_ser(out: &mut String) -> ScalarSer<KeySer<'_>> {
    ScalarSer(KeySer { out })
}

/// The key text's [`Shape`]: scalars as [`Value::encode`]; `()` as `()`, a fieldless
/// variant as its bare name and a `u128` above `i128::MAX` as `u<digits>`, all distinct
/// from any scalar; compounds as described in the module doc.
struct KeySer<'a> {
    out: &'a mut String,
}

/// A compound value being written: closes with `close` and separates items with `,`.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
    close: char,
}

impl Compound<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
    }
    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), KeyError> {
        self.sep();
        v.serialize(key_ser(self.out))
    }
    fn field<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> Result<(), KeyError> {
        self.sep();
        escape_into(k, self.out);
        self.out.push('=');
        v.serialize(key_ser(self.out))
    }
    fn end(self) -> Result<(), KeyError> {
        self.out.push(self.close);
        Ok(())
    }
}

impl<'a> KeySer<'a> {
    fn open(self, name: Option<&str>, open: char, close: char) -> Compound<'a> {
        if let Some(n) = name {
            escape_into(n, self.out);
        }
        self.out.push(open);
        Compound {
            out: self.out,
            first: true,
            close,
        }
    }
}

impl<'a> Shape for KeySer<'a> {
    type Ok = ();
    type Error = KeyError;
    type Seq = Compound<'a>;
    type Tuple = Compound<'a>;
    type TupleStruct = Compound<'a>;
    type TupleVariant = Compound<'a>;
    type Map = Compound<'a>;
    type Struct = Compound<'a>;
    type StructVariant = Compound<'a>;

    fn scalar(self, v: Value) -> Result<(), KeyError> {
        v.encode_into(self.out);
        Ok(())
    }
    fn refuse(self, what: &'static str) -> KeyError {
        // Never called: every value has a key text (each method that refuses by default
        // is overridden here).
        KeyError(format!("no key text for {what}"))
    }
    fn unit(self) -> Result<(), KeyError> {
        self.out.push_str("()");
        Ok(())
    }
    fn unit_variant(self, variant: &'static str) -> Result<(), KeyError> {
        escape_into(variant, self.out);
        Ok(())
    }
    fn huge_u128(self, v: u128) -> Result<(), KeyError> {
        // Above i128: no other integer has this value, so a distinct tag is safe.
        self.out.push_str(&format!("u{v}"));
        Ok(())
    }
    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        variant: &'static str,
        v: &T,
    ) -> Result<(), KeyError> {
        let mut c = self.open(Some(variant), '(', ')');
        c.item(v)?;
        c.end()
    }
    fn seq(self, _: Option<usize>) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(None, '[', ']'))
    }
    fn tuple(self, _: usize) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(None, '(', ')'))
    }
    fn tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(None, '(', ')'))
    }
    fn tuple_variant(self, variant: &'static str, _: usize) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(Some(variant), '(', ')'))
    }
    fn map(self, _: Option<usize>) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(None, '{', '}'))
    }
    fn structure(self, _: &'static str, _: usize) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(None, '{', '}'))
    }
    fn struct_variant(self, variant: &'static str, _: usize) -> Result<Compound<'a>, KeyError> {
        Ok(self.open(Some(variant), '{', '}'))
    }
}

macro_rules! seq_like {
    ($($tr:ident::$m:ident),*) => {$(
        impl ser::$tr for Compound<'_> {
            type Ok = ();
            type Error = KeyError;
            fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), KeyError> {
                self.item(v)
            }
            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}
seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_like {
    ($($tr:ident),*) => {$(
        impl ser::$tr for Compound<'_> {
            type Ok = ();
            type Error = KeyError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) -> Result<(), KeyError> {
                self.field(k, v)
            }
            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}
struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), KeyError> {
        self.item(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), KeyError> {
        self.out.push('=');
        v.serialize(key_ser(self.out))
    }
    fn end(self) -> Result<(), KeyError> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Q {
        page: u32,
        tag: Option<String>,
    }

    #[derive(serde::Serialize)]
    enum E {
        Unit,
        New(i64),
        Tup(i8, i8),
        Rec { a: bool },
    }

    #[test]
    fn integer_widths_do_not_matter() {
        assert_eq!(arg_key(&3_i32).unwrap(), arg_key(&3_u64).unwrap());
        assert_eq!(
            arg_key(&(1_u8, "a")).unwrap(),
            arg_key(&(1_i64, "a")).unwrap()
        );
    }

    #[test]
    fn shapes_are_distinct() {
        let keys = [
            arg_key(&()).unwrap(),
            arg_key(&(1,)).unwrap(),
            arg_key(&vec![1]).unwrap(),
            arg_key(&(1, 2)).unwrap(),
            arg_key(&vec![1, 2]).unwrap(),
            arg_key(&"1,2").unwrap(),
            arg_key(&Q { page: 1, tag: None }).unwrap(),
            arg_key(&Q {
                page: 1,
                tag: Some("".into()),
            })
            .unwrap(),
            arg_key(&E::Unit).unwrap(),
            arg_key(&E::New(1)).unwrap(),
            arg_key(&E::Tup(1, 2)).unwrap(),
            arg_key(&E::Rec { a: true }).unwrap(),
            arg_key(&BTreeMap::from([("a", 1)])).unwrap(),
        ];
        let set: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(set.len(), keys.len(), "{keys:?}");
    }

    /// `serialize_bytes` (a `Vec<u8>` serializes as a sequence instead).
    struct Bytes(&'static [u8]);
    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[derive(serde::Serialize)]
    struct Unit;

    #[derive(serde::Serialize)]
    struct Id(u16);

    #[derive(serde::Serialize)]
    struct Pair(i8, &'static str);

    #[derive(serde::Serialize)]
    enum Wide {
        Rec { b: u8, c: Option<char> },
        Big(u128),
    }

    /// Redis keys are built from this text: it must never change.
    #[test]
    fn canonical_text_is_pinned() {
        let cases: Vec<(String, &str)> = vec![
            (
                arg_key(&(3_i32, "a", None::<u8>, 2.0_f64)).unwrap(),
                "(i3,sa,N,i2)",
            ),
            (
                arg_key(&u128::MAX).unwrap(),
                "u340282366920938463463374607431768211455",
            ),
            (arg_key(&7_u128).unwrap(), "i7"),
            (
                arg_key(&(i128::MIN, u64::MAX, -7_i8, 300_u16, 5_isize)).unwrap(),
                "(i-170141183460469231731687303715884105728,i18446744073709551615,i-7,i300,i5)",
            ),
            (
                arg_key(&(0.5_f32, f64::NAN, f64::INFINITY, -0.0_f64, 1e300)).unwrap(),
                "(r0.5,rNaN,rinf,i0,r1e300)",
            ),
            (arg_key(&('x', true, false)).unwrap(), "(sx,T,F)"),
            (arg_key(&"a&b=c,[x]%").unwrap(), "sa%26b%3Dc%2C%5Bx%5D%25"),
            (arg_key(&Bytes(&[0, 0xff, 0x61])).unwrap(), "x00ff61"),
            (arg_key(&()).unwrap(), "()"),
            (arg_key(&Unit).unwrap(), "()"),
            (arg_key(&Some(5)).unwrap(), "i5"),
            (arg_key(&Id(9)).unwrap(), "i9"),
            (arg_key(&Pair(-1, "p")).unwrap(), "(i-1,sp)"),
            (
                arg_key(&Wide::Rec { b: 2, c: Some('=') }).unwrap(),
                "Rec{b=i2,c=s%3D}",
            ),
            (
                arg_key(&Wide::Big(u128::MAX)).unwrap(),
                "Big(u340282366920938463463374607431768211455)",
            ),
            (arg_key(&Some(Wide::Big(1))).unwrap(), "Big(i1)"),
            (arg_key(&vec![1, 2]).unwrap(), "[i1,i2]"),
            (arg_key(&Vec::<i32>::new()).unwrap(), "[]"),
            (
                arg_key(&Q { page: 1, tag: None }).unwrap(),
                "{page=i1,tag=N}",
            ),
            (
                arg_key(&Q {
                    page: 2,
                    tag: Some("t:x".into()),
                })
                .unwrap(),
                "{page=i2,tag=st%3Ax}",
            ),
            (arg_key(&E::Unit).unwrap(), "Unit"),
            (arg_key(&E::New(1)).unwrap(), "New(i1)"),
            (arg_key(&E::Tup(1, -2)).unwrap(), "Tup(i1,i-2)"),
            (arg_key(&E::Rec { a: true }).unwrap(), "Rec{a=T}"),
            (
                arg_key(&BTreeMap::from([("a", 1), ("b&", 2)])).unwrap(),
                "{sa=i1,sb%26=i2}",
            ),
            (
                arg_key(&(vec![Some(E::Unit), None], (Unit, ()))).unwrap(),
                "([Unit,N],((),()))",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
