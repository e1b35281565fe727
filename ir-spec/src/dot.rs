//! Graphviz DOT export, in the spirit of torchviz's `make_dot`.

use crate::graph::Graph;

/// How to draw a graph. `groups[i]` (if given) puts node `i` into cluster `group_names[groups[i]]`: autodiff uses it to
/// tell forward from backward nodes, fusion to show one cluster per kernel.
#[derive(Clone, Debug, Default)]
pub struct DotOptions {
    pub groups: Option<Vec<usize>>,
    pub group_names: Vec<String>,
}

pub fn to_dot(_graph: &Graph, _options: &DotOptions) -> String {
    todo!("dot export")
}
