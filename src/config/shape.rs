//! The key tree of the configuration, read from the `raw` serde types
//! themselves, so field names are written exactly once.
//!
//! `shape_of::<T>()` drives `T::deserialize` with a recording deserializer:
//! when serde's derived code calls `deserialize_struct(name, fields, …)` we
//! note `fields` and feed each one back with a recorder for its value;
//! `deserialize_map`/`deserialize_seq` record a map/list of one sample entry;
//! anything else (the `serde_yaml::Value` leaves) is a `Leaf`.
//!
//! Invariant: every field of a `raw` struct is a `Value` leaf, an `Option`,
//! a map/list, or another `raw` struct; `shape_of` fails (and a unit test
//! catches it) if a typed leaf sneaks in. The shape is used for the
//! unknown-key pass (`keys`) and to resolve environment overrides (`env`).

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::de::{Deserializer, Visitor};
use serde::forward_to_deserialize_any;

/// What a node of the configuration tree may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Any YAML value; typed later by `validate`.
    Leaf,
    /// A fixed set of keys, in declaration order.
    Struct(Vec<(&'static str, Shape)>),
    /// Free string keys, each value of this shape.
    Map(Box<Shape>),
    /// A list, each item of this shape.
    Seq(Box<Shape>),
}

impl Shape {
    /// The field names of a `Struct`, in declaration order.
    #[cfg(test)]
    pub fn field_names(&self) -> Vec<&'static str> {
        match self {
            Shape::Struct(fields) => fields.iter().map(|(n, _)| *n).collect(),
            _ => Vec::new(),
        }
    }

    /// The shape of field `name` of a `Struct`.
    pub fn field(&self, name: &str) -> Option<&Shape> {
        match self {
            Shape::Struct(fields) => fields.iter().find(|(n, _)| *n == name).map(|(_, s)| s),
            _ => None,
        }
    }
}

/// Why a shape could not be recorded (a programming error in `raw`).
#[derive(Debug)]
pub struct ShapeError(String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

impl de::Error for ShapeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ShapeError(msg.to_string())
    }
}

/// The key tree of `T`.
pub fn shape_of<T: DeserializeOwned>() -> Result<Shape, ShapeError> {
    let mut shape = Shape::Leaf;
    T::deserialize(Recorder { out: &mut shape })?;
    Ok(shape)
}

struct Recorder<'a> {
    out: &'a mut Shape,
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        *self.out = Shape::Leaf;
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        visitor.visit_some(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        let mut access = Fields {
            fields,
            next: 0,
            shapes: Vec::new(),
        };
        let value = visitor.visit_map(&mut access)?;
        *self.out = Shape::Struct(access.shapes);
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        let mut inner = Shape::Leaf;
        let value = visitor.visit_map(OneEntry {
            done: false,
            out: &mut inner,
        })?;
        *self.out = Shape::Map(Box::new(inner));
        Ok(value)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        let mut inner = Shape::Leaf;
        let value = visitor.visit_seq(OneEntry {
            done: false,
            out: &mut inner,
        })?;
        *self.out = Shape::Seq(Box::new(inner));
        Ok(value)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct enum
        identifier ignored_any
    }
}

struct Fields {
    fields: &'static [&'static str],
    next: usize,
    shapes: Vec<(&'static str, Shape)>,
}

impl<'de> MapAccess<'de> for Fields {
    type Error = ShapeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ShapeError> {
        match self.fields.get(self.next) {
            Some(name) => seed
                .deserialize(IntoDeserializer::<ShapeError>::into_deserializer(*name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ShapeError> {
        let name = self
            .fields
            .get(self.next)
            .ok_or_else(|| ShapeError("value requested before its key".into()))?;
        let mut shape = Shape::Leaf;
        let value = seed.deserialize(Recorder { out: &mut shape })?;
        self.shapes.push((name, shape));
        self.next += 1;
        Ok(value)
    }
}

/// A map or list with exactly one sample entry.
struct OneEntry<'a> {
    done: bool,
    out: &'a mut Shape,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = ShapeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ShapeError> {
        if self.done {
            return Ok(None);
        }
        seed.deserialize(IntoDeserializer::<ShapeError>::into_deserializer("sample"))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ShapeError> {
        self.done = true;
        seed.deserialize(Recorder {
            out: &mut *self.out,
        })
    }
}

impl<'de> SeqAccess<'de> for OneEntry<'_> {
    type Error = ShapeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ShapeError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize(Recorder {
            out: &mut *self.out,
        })
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[allow(dead_code)]
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: Option<serde_yaml::Value>,
    }

    #[allow(dead_code)]
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        x: Option<serde_yaml::Value>,
        #[serde(rename = "y-y")]
        y: Option<Inner>,
        m: Option<BTreeMap<String, Inner>>,
        l: Option<Vec<Inner>>,
    }

    #[allow(dead_code)]
    #[derive(serde::Deserialize)]
    struct Typed {
        n: u32,
    }

    #[test]
    fn records_nested_structs_maps_and_lists() {
        let inner = Shape::Struct(vec![("a", Shape::Leaf)]);
        assert_eq!(
            shape_of::<Outer>().unwrap(),
            Shape::Struct(vec![
                ("x", Shape::Leaf),
                ("y-y", inner.clone()),
                ("m", Shape::Map(Box::new(inner.clone()))),
                ("l", Shape::Seq(Box::new(inner))),
            ])
        );
    }

    #[test]
    fn typed_leaves_are_rejected() {
        assert!(shape_of::<Typed>().is_err());
    }
}
