//! The `.kir` text format: a printer and a parser such that `print(parse(print(g))) == print(g)`.
//! (Grammar in SPEC.md.)

use crate::graph::Graph;

/// A syntax or typing error in `.kir` text, with its 1-based line and column.
#[derive(Clone, PartialEq, Debug)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line, for rendering with a caret.
    pub source_line: String,
    /// Optional file name used when rendering.
    pub path: Option<String>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Prints a graph in the `.kir` text format.
pub fn print(_graph: &Graph) -> String {
    todo!("text printer")
}

/// Parses and verifies `.kir` text.
pub fn parse(_src: &str) -> Result<Graph, ParseError> {
    todo!("text parser")
}
