//! The key tree of the configuration: which keys each block has, and
//! which blocks are structs, free maps or lists. Used by the unknown-key
//! pass (`keys`) and to resolve environment overrides (`env`).
//!
//! The tree is constant data, built at compile time from the block
//! definitions in `raw` (each block's `SHAPE`), so keys are written once
//! and the tree costs nothing at load.

/// What a node of the configuration tree may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Any YAML value; typed later by `validate`.
    Leaf,
    /// A fixed set of keys, in declaration order.
    Struct(&'static [(&'static str, Shape)]),
    /// Free string keys, each value of this shape.
    Map(&'static Shape),
    /// A list, each item of this shape.
    Seq(&'static Shape),
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
    pub fn field(&self, name: &str) -> Option<&'static Shape> {
        match self {
            Shape::Struct(fields) => fields.iter().find(|(n, _)| *n == name).map(|(_, s)| s),
            _ => None,
        }
    }
}

/// The whole configuration document.
pub static CONFIG: Shape = super::raw::RawConfig::SHAPE;

#[cfg(test)]
mod tests {
    use super::*;

    const L: Shape = Shape::Leaf;

    #[test]
    fn the_key_tree_has_every_block() {
        let global = CONFIG.field("global").unwrap();
        assert!(global.field_names().contains(&"shutdown_timeout"));
        assert_eq!(global.field("api_tls").unwrap().field("enabled"), Some(&L));
        let Some(Shape::Map(process)) = CONFIG.field("processes") else {
            panic!("processes is a map");
        };
        assert!(process.field_names().contains(&"type"));
        assert_eq!(process.field("env"), Some(&Shape::Map(&L)));
        let hooks = CONFIG.field("hooks").unwrap();
        assert!(hooks.field_names().contains(&"pre-start"));
        assert!(matches!(hooks.field("pre_start"), Some(Shape::Seq(_))));
        assert_eq!(CONFIG.field("nope"), None);
        assert_eq!(L.field("x"), None);
    }
}
