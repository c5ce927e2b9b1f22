//! Test-only: reads the key tree from serde types by driving their derived
//! `Deserialize` with a recording deserializer. When serde's code calls
//! `deserialize_struct(name, fields, …)` we note `fields` and feed each one
//! back with a recorder for its value; `deserialize_map`/`deserialize_seq`
//! record a map/list of one sample entry; anything else (the
//! `serde_yaml::Value` leaves) is a leaf.
//!
//! This is how `CONFIG` is checked against `raw` (and produced: `render`).
//! It is kept out of the binary on purpose; see the header of `shape`.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::de::{Deserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::Shape;

/// A recorded tree; structs keep their type name to name the constants.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Leaf,
    Struct(&'static str, Vec<(&'static str, Recorded)>),
    Map(Box<Recorded>),
    Seq(Box<Recorded>),
}

impl Recorded {
    /// Whether `shape` has the same keys, in the same order, and kinds.
    pub fn is(&self, shape: &Shape) -> bool {
        match (self, shape) {
            (Recorded::Leaf, Shape::Leaf) => true,
            (Recorded::Map(r), Shape::Map(s)) | (Recorded::Seq(r), Shape::Seq(s)) => r.is(s),
            (Recorded::Struct(_, rf), Shape::Struct(sf)) => {
                rf.len() == sf.len()
                    && rf
                        .iter()
                        .zip(sf.iter())
                        .all(|((rn, r), (sn, s))| rn == sn && r.is(s))
            }
            _ => false,
        }
    }

    /// The table as Rust source: one constant per struct type, dependencies
    /// first, the root as `pub static CONFIG`.
    pub fn render(&self) -> String {
        let mut done = Vec::new();
        let mut out = String::new();
        self.render_structs(&mut done, &mut out);
        out
    }

    fn render_structs(&self, done: &mut Vec<&'static str>, out: &mut String) {
        match self {
            Recorded::Leaf => {}
            Recorded::Map(inner) | Recorded::Seq(inner) => inner.render_structs(done, out),
            Recorded::Struct(name, fields) => {
                if done.contains(name) {
                    return;
                }
                for (_, sub) in fields {
                    sub.render_structs(done, out);
                }
                done.push(name);
                let decl = match const_name(name).as_str() {
                    "CONFIG" => "pub static CONFIG".to_string(),
                    other => format!("const {other}"),
                };
                let _ = write!(out, "{decl}: Shape = Shape::Struct(&[");
                for (key, sub) in fields {
                    let _ = write!(out, "({key:?}, {}), ", Expr(sub));
                }
                out.push_str("]);\n");
            }
        }
    }
}

/// `RawHealthCheck` → `HEALTH_CHECK`.
fn const_name(type_name: &str) -> String {
    let bare = type_name.strip_prefix("Raw").unwrap_or(type_name);
    let mut out = String::new();
    for (i, c) in bare.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A shape as an expression of the table.
struct Expr<'a>(&'a Recorded);

impl fmt::Display for Expr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Recorded::Leaf => f.write_str("L"),
            Recorded::Struct(name, _) => f.write_str(&const_name(name)),
            Recorded::Map(inner) => write!(f, "Shape::Map(&{})", Expr(inner)),
            Recorded::Seq(inner) => write!(f, "Shape::Seq(&{})", Expr(inner)),
        }
    }
}

/// Why a shape could not be recorded (a field that is not a leaf or block).
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
pub fn record<T: DeserializeOwned>() -> Result<Recorded, ShapeError> {
    let mut shape = Recorded::Leaf;
    T::deserialize(Recorder { out: &mut shape })?;
    Ok(shape)
}

struct Recorder<'a> {
    out: &'a mut Recorded,
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        *self.out = Recorded::Leaf;
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        visitor.visit_some(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        let mut access = Fields {
            fields,
            next: 0,
            shapes: Vec::new(),
        };
        let value = visitor.visit_map(&mut access)?;
        *self.out = Recorded::Struct(name, access.shapes);
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        let mut inner = Recorded::Leaf;
        let value = visitor.visit_map(OneEntry {
            done: false,
            out: &mut inner,
        })?;
        *self.out = Recorded::Map(Box::new(inner));
        Ok(value)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        let mut inner = Recorded::Leaf;
        let value = visitor.visit_seq(OneEntry {
            done: false,
            out: &mut inner,
        })?;
        *self.out = Recorded::Seq(Box::new(inner));
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
    shapes: Vec<(&'static str, Recorded)>,
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
        let mut shape = Recorded::Leaf;
        let value = seed.deserialize(Recorder { out: &mut shape })?;
        self.shapes.push((name, shape));
        self.next += 1;
        Ok(value)
    }
}

/// A map or list with exactly one sample entry.
struct OneEntry<'a> {
    done: bool,
    out: &'a mut Recorded,
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
        let inner = Recorded::Struct("Inner", vec![("a", Recorded::Leaf)]);
        assert_eq!(
            record::<Outer>().unwrap(),
            Recorded::Struct(
                "Outer",
                vec![
                    ("x", Recorded::Leaf),
                    ("y-y", inner.clone()),
                    ("m", Recorded::Map(Box::new(inner.clone()))),
                    ("l", Recorded::Seq(Box::new(inner))),
                ]
            )
        );
    }

    #[test]
    fn renders_one_constant_per_struct_dependencies_first() {
        let text = record::<Outer>().unwrap().render();
        let inner = text.find("const INNER: Shape = Shape::Struct(&[(\"a\", L), ]);");
        let outer =
            text.find("const OUTER: Shape = Shape::Struct(&[(\"x\", L), (\"y-y\", INNER), ");
        assert!(
            matches!((inner, outer), (Some(i), Some(o)) if i < o),
            "{text}"
        );
        assert!(text.contains("(\"m\", Shape::Map(&INNER)), (\"l\", Shape::Seq(&INNER))"));
        assert_eq!(const_name("RawHealthCheck"), "HEALTH_CHECK");
        assert_eq!(const_name("RawConfig"), "CONFIG");
    }

    #[test]
    fn typed_leaves_are_rejected() {
        assert!(record::<Typed>().is_err());
    }
}
