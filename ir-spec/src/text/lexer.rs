//! The character cursor the parser pulls tokens from.
//!
//! The format is small and partly contextual (an output name may start with a digit, a number may start with a
//! sign), so instead of a separate token stream the parser asks for the token it expects next: a word, a scalar, a
//! string. Every position is a byte offset into the source; `ParseError::at` turns it into line:column.

/// A byte offset into the source text.
pub(crate) type Pos = usize;

/// Characters of names and words: ASCII letters, digits, `_` and `.` (see `graph::is_valid_name`).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

pub(crate) struct Cursor<'s> {
    src: &'s str,
    pos: Pos,
}

impl<'s> Cursor<'s> {
    pub(crate) fn new(src: &'s str) -> Cursor<'s> {
        Cursor { src, pos: 0 }
    }

    pub(crate) fn pos(&self) -> Pos {
        self.pos
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes `c` if it is next.
    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Skips spaces, tabs, carriage returns and comments, but not newlines: statements end at the end of a line.
    pub(crate) fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '#' => self.skip_comment(),
                _ => break,
            }
        }
    }

    /// Skips blanks and newlines (between statements, and inside brackets and braces).
    pub(crate) fn skip_blank_lines(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' => self.pos += 1,
                '#' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        self.pos = self.src[self.pos..]
            .find('\n')
            .map_or(self.src.len(), |i| self.pos + i);
    }

    /// True at a newline or the end of input (after `skip_blank`).
    pub(crate) fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some('\n'))
    }

    /// The longest run of word characters (possibly empty).
    pub(crate) fn word(&mut self) -> &'s str {
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// A scalar attribute value: an optional sign, then word characters, where a sign may also follow the `e` of an
    /// exponent (`-1.5e-5`, `inf`, `true`, `gt`). Whether it is a valid number is the parser's business.
    pub(crate) fn scalar(&mut self) -> &'s str {
        let start = self.pos;
        if matches!(self.peek(), Some('+' | '-')) {
            self.pos += 1;
        }
        let body = self.pos;
        while let Some(c) = self.peek() {
            let exponent_sign = matches!(c, '+' | '-')
                && self.src[body..self.pos].starts_with(|d: char| d.is_ascii_digit())
                && self.src[..self.pos].ends_with(['e', 'E']);
            if is_word_char(c) || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.src[start..self.pos]
    }

    /// A double-quoted string with the escapes `\\`, `\"`, `\n`, `\t`, `\r` and `\u{HEX}`; the cursor is at the
    /// opening quote. On error, returns the position and message.
    pub(crate) fn string(&mut self) -> Result<String, (Pos, String)> {
        let open = self.pos;
        if !self.eat('"') {
            return Err((open, "expected `\"`".into()));
        }
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => return Err((open, "unterminated string".into())),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('u') => out.push(self.unicode_escape(at)?),
                    _ => return Err((at, "unknown escape in string".into())),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// The `{HEX}` part of `\u{HEX}`; `at` is the backslash.
    fn unicode_escape(&mut self, at: Pos) -> Result<char, (Pos, String)> {
        let bad = || (at, "bad `\\u{...}` escape in string".to_string());
        if !self.eat('{') {
            return Err(bad());
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let hex = &self.src[start..self.pos];
        if hex.is_empty() || hex.len() > 6 || !self.eat('}') {
            return Err(bad());
        }
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_take_exponent_signs_but_stop_at_separators() {
        let mut c = Cursor::new("-1.5e-5, inf] gt}e-1");
        assert_eq!(c.scalar(), "-1.5e-5");
        assert!(c.eat(','));
        c.skip_blank();
        assert_eq!(c.scalar(), "inf");
        assert!(c.eat(']'));
        c.skip_blank();
        assert_eq!(c.scalar(), "gt");
        assert!(c.eat('}'));
        // A word starting with a letter takes no sign after its `e`.
        assert_eq!(c.scalar(), "e");
    }

    #[test]
    fn comments_end_at_newline() {
        let mut c = Cursor::new("  # note\n%x");
        c.skip_blank();
        assert!(c.at_line_end());
        c.skip_blank_lines();
        assert_eq!(c.peek(), Some('%'));
    }

    #[test]
    fn strings_unescape() {
        let mut c = Cursor::new(r#""a \"b\" \\ \u{e9}\n""#);
        assert_eq!(c.string().unwrap(), "a \"b\" \\ é\n");
        assert!(Cursor::new("\"abc").string().is_err());
        assert!(Cursor::new(r#""\u{110000}""#).string().is_err());
        assert!(Cursor::new(r#""\u{""#).string().is_err());
        assert!(Cursor::new(r#""\q""#).string().is_err());
    }
}
