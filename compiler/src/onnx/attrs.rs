//! A node's attributes, read by name with the op's default (defaults differ between opsets: each op's translation
//! passes the one of the opset it is importing).

use super::proto::{AttributeProto, NodeProto};
use super::tensor::Constant;
use super::ImportError;

/// The attributes of one node, with the node's name and op type for error messages.
pub struct Attrs<'n> {
    node: &'n NodeProto,
}

impl<'n> Attrs<'n> {
    pub fn new(node: &'n NodeProto) -> Attrs<'n> {
        Attrs { node }
    }

    fn get(&self, name: &str) -> Option<&'n AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn error(&self, message: String) -> ImportError {
        ImportError::Node {
            node: self.node.name().to_string(),
            op_type: self.node.op_type().to_string(),
            message,
        }
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i())
    }

    pub fn float(&self, name: &str, default: f64) -> f64 {
        self.get(name).map_or(default, |a| a.f() as f64)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f64>> {
        self.get(name)
            .map(|a| a.floats.iter().map(|&f| f as f64).collect())
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, ImportError> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s().to_vec())
                .map_err(|_| self.error(format!("attribute `{name}` is not UTF-8"))),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Constant>, ImportError> {
        match self.get(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => Constant::from_proto(t).map(Some),
        }
    }

    /// The names of the attributes present, for "which attribute" errors.
    pub fn names(&self) -> impl Iterator<Item = &'n str> {
        self.node.attribute.iter().map(|a| a.name())
    }
}
