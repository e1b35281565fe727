//! The `.kir` text format: a printer and a parser such that `print(parse(print(g))) == print(g)`.
//!
//! ```text
//! # a comment runs to the end of the line
//! graph logreg {
//!   %x = input{role=data} : f32[64,2]
//!   %w = input{role=param} : f32[1,2]
//!   %2 = transpose{perm=[1,0]} %w : f32[2,1]
//!   %3 = matmul %x, %2 : f32[64,1]
//!   %4 = reduce_sum{axes=[0,1], keep_dims=false} %3 : f32[]
//!   output loss = %4
//! }
//! ```
//!
//! One statement per line (lists and attribute sets may span lines). A node line is
//! `%LABEL = MNEMONIC{attrs}? OPERANDS? : TYPE`; an all-digit label means an unnamed node, any other label names the
//! node (or the input). Outputs are `output NAME = %LABEL` or `output NAME = %LABEL aliases %INPUT`. The parser builds
//! the graph through `Graph::add_named`, so every typing rule runs, checks each annotated type against the inferred
//! one, and verifies the result. (Grammar in SPEC.md; this is its summary.)
//!
//! ```text
//! file      = "graph" (NAME | STRING) "{" NL { statement NL } "}"
//! statement = "%" LABEL "=" MNEMONIC [ "{" [ attr { "," attr } ] "}" ] [ operand { "," operand } ] ":" type
//!           | "output" NAME "=" operand [ "aliases" operand ]
//! operand   = "%" LABEL
//! attr      = IDENT "=" ( scalar | "[" [ scalar { "," scalar } ] "]" )
//! type      = ("f32" | "f64" | "i32" | "bool") "[" [ UINT { "," UINT } ] "]"
//! scalar    = [+-] (DIGITS ["." DIGITS] [("e" | "E") [+-] DIGITS] | "inf" | "nan") | WORD
//! ```
//! A leading UTF-8 byte order mark is skipped. `NAME`, `LABEL`, `WORD`: ASCII letters, digits, `_`, `.`. Blanks and `# comments` may appear between tokens; newlines
//! only between statements and inside `{...}` and `[...]`. Attributes per op: `input{role}`, `constant{value}`,
//! `iota{axis}`, `cast{to}`, `compare{dir}`, `reduce_sum`/`reduce_max{axes, keep_dims}`, `reshape{shape}`,
//! `transpose{perm}`, `broadcast{shape}`, `slice{start, end}`, `concat{axis}`; printed in that order, accepted in any.
//! A source's type after `:` is the type it produces. Floats print as Rust's `{:?}` (shortest round trip) or `inf`,
//! `-inf`, `nan`; i32 and bool constants as integers.
//!
//! - `lexer.rs`: the character cursor (words, numbers, strings, trivia), with byte positions.
//! - `parser.rs`: statements → graph; errors carry the byte offset, turned into line:column here. Errors stay short
//!   on any input: echoed words, types and lists are abbreviated, long source lines cut around the column.
//! - `printer.rs`: graph → text, one canonical spelling.

mod lexer;
mod parser;
pub(crate) mod printer;

pub use parser::parse;
pub use printer::print;

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

/// A syntax or typing error in `.kir` text, with its 1-based line and column (in characters).
#[derive(Clone, PartialEq, Debug)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending source line, for rendering with a caret; a line longer than 200 characters is cut to the 200
    /// around the column, with `…` where it was cut.
    pub source_line: String,
    /// The 1-based column of the caret in `source_line`: `column`, unless the line was cut.
    pub source_column: usize,
    /// Optional file name used when rendering.
    pub path: Option<String>,
}

/// The most characters of a source line an error shows.
const SHOWN_LINE: usize = 200;
/// The most characters of a message: the parser abbreviates what it echoes, so this only bounds the unforeseen.
const SHOWN_MESSAGE: usize = 1000;

/// `text` cut to `max` characters (plus `…`), so that an error about a megabyte-long line stays readable.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

impl ParseError {
    /// An error at byte offset `pos` of `src` (clamped into `src` and onto a character boundary).
    pub(crate) fn at(src: &str, pos: usize, message: impl Into<String>) -> ParseError {
        let mut pos = pos.min(src.len());
        while !src.is_char_boundary(pos) {
            pos -= 1;
        }
        let line_start = src[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[pos..].find('\n').map_or(src.len(), |i| pos + i);
        let line = src[line_start..line_end].trim_end_matches('\r');
        let column = src[line_start..pos].chars().count() + 1;
        // A window of `SHOWN_LINE` characters with the column in its middle (or as near as the line's ends allow).
        let (source_line, source_column) = match line.char_indices().nth(SHOWN_LINE) {
            None => (line.to_string(), column),
            Some(_) => {
                let chars = line.chars().count();
                let first = (column - 1)
                    .saturating_sub(SHOWN_LINE / 2)
                    .min(chars - SHOWN_LINE);
                let rest: String = line.chars().skip(first).collect();
                let mut shown = if first > 0 {
                    "…".to_string()
                } else {
                    String::new()
                };
                let caret = column - first + usize::from(first > 0);
                shown += &cut(&rest, SHOWN_LINE);
                (shown, caret)
            }
        };
        ParseError {
            line: src[..line_start].matches('\n').count() + 1,
            column,
            message: cut(&message.into(), SHOWN_MESSAGE),
            source_line,
            source_column,
            path: None,
        }
    }

    /// Names the file the text came from, for rendering (`--> model.kir:3:7`).
    pub fn with_path(mut self, path: impl Into<String>) -> ParseError {
        self.path = Some(path.into());
        self
    }

    /// The byte range in `source_line` that the caret marks: the character at `column`, or an empty range at the end
    /// of the line when the error is at its end.
    fn caret_span(&self) -> std::ops::Range<usize> {
        let line = &self.source_line;
        let skip = self.source_column.saturating_sub(1);
        match line.char_indices().nth(skip) {
            Some((start, c)) => start..start + c.len_utf8(),
            None => line.len()..line.len(),
        }
    }
}

/// Renders like rustc: `error: MESSAGE`, ` --> PATH:LINE:COL`, the source line and a caret under the column.
impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.as_deref().unwrap_or("<input>");
        let report = &[Level::ERROR.primary_title(&self.message).element(
            Snippet::source(&self.source_line)
                .line_start(self.line)
                .path(path)
                .annotation(AnnotationKind::Primary.span(self.caret_span())),
        )];
        let rendered = Renderer::plain().render(report);
        if self.source_column == self.column {
            return f.write_str(&rendered);
        }
        // A long line was cut, and the renderer takes the header's column from the caret's place in the text it is
        // shown, so the header says `source_column`: put the column in the file back.
        let shown = format!("--> {path}:{}:{}", self.line, self.source_column);
        let real = format!("--> {path}:{}:{}", self.line, self.column);
        f.write_str(&rendered.replacen(&shown, &real, 1))
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_position_counts_characters_not_bytes() {
        let src = "graph g {\n  %é = foo\n}";
        let pos = src.find("foo").unwrap();
        let e = ParseError::at(src, pos, "unknown op `foo`");
        assert_eq!((e.line, e.column), (2, 8));
        assert_eq!(e.source_line, "  %é = foo");
        let shown = e.to_string();
        assert!(shown.contains("error: unknown op `foo`"), "{shown}");
        assert!(shown.contains("--> <input>:2:8"), "{shown}");
        assert!(shown.contains("2 |   %é = foo\n  |        ^"), "{shown}");
    }

    #[test]
    fn error_at_end_of_input_renders() {
        let src = "graph g {\n";
        let e = ParseError::at(src, src.len(), "missing `}`").with_path("m.kir");
        assert_eq!((e.line, e.column), (2, 1));
        let shown = e.to_string();
        assert!(shown.contains("--> m.kir:2:1"), "{shown}");
    }

    #[test]
    fn error_header_keeps_our_column_with_tabs_and_at_line_end() {
        let src = "graph g {\n\t%x = \tfoo";
        let e = ParseError::at(src, src.find("foo").unwrap(), "m");
        assert_eq!((e.line, e.column), (2, 8));
        assert!(e.to_string().contains("--> <input>:2:8"), "{e}");
        let e = ParseError::at(src, src.len(), "m");
        assert_eq!((e.line, e.column), (2, 11));
        assert!(e.to_string().contains("--> <input>:2:11"), "{e}");
    }

    #[test]
    fn error_position_is_clamped() {
        let e = ParseError::at("é", 1, "x");
        assert_eq!((e.line, e.column), (1, 1));
        let e = ParseError::at("ab", 99, "x");
        assert_eq!((e.line, e.column), (1, 3));
        let _ = e.to_string();
    }
}
