//! The lexer: a script's text into tokens — words made of literal, parameter and opaque parts
//! (quotes, backslashes, `$VAR`, `${VAR...}`, command substitutions), operators, newlines and
//! here-documents.

use std::rc::Rc;

use crate::limits::MAX_SCRIPT_NESTING as MAX_NESTING;

use super::parser::Assign;

pub(super) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[derive(Clone, Debug)]
pub(super) enum Part {
    /// Literal text; `quoted` when it came from quotes or a backslash (then it is never a glob,
    /// a reserved word or the name of an assignment).
    Lit {
        text: String,
        quoted: bool,
    },
    Param {
        param: Rc<Param>,
        quoted: bool,
    },
    /// Command substitution, arithmetic, arrays, process substitution: never run, unknown.
    Opaque {
        text: String,
        quoted: bool,
    },
}

#[derive(Clone, Debug)]
pub(super) struct Word {
    pub(super) parts: Vec<Part>,
    /// The source text, for steps and warnings about words that cannot be resolved.
    pub(super) raw: String,
}

impl Word {
    pub(super) fn literal(text: &str) -> Word {
        Word {
            parts: vec![Part::Lit {
                text: text.to_string(),
                quoted: false,
            }],
            raw: text.to_string(),
        }
    }

    /// The word when it is a single unquoted literal (reserved words must be).
    pub(super) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit {
                text,
                quoted: false,
            }] => Some(text),
            _ => None,
        }
    }

    /// `NAME=value` / `NAME+=value`: the name, the value and whether it appends.
    pub(super) fn assignment(&self) -> Option<Assign> {
        let Some(Part::Lit {
            text,
            quoted: false,
        }) = self.parts.first()
        else {
            return None;
        };
        let (name, rest) = text.split_once('=')?;
        let (name, append) = match name.strip_suffix('+') {
            Some(n) => (n, true),
            None => (name, false),
        };
        if !is_name(name) {
            return None;
        }
        let mut parts = Vec::new();
        if !rest.is_empty() {
            parts.push(Part::Lit {
                text: rest.to_string(),
                quoted: false,
            });
        }
        parts.extend(self.parts[1..].iter().cloned());
        let raw = self.raw.split_once('=').map_or("", |(_, r)| r).to_string();
        Some(Assign {
            name: name.to_string(),
            value: Word { parts, raw },
            append,
        })
    }
}

#[derive(Debug)]
pub(super) struct Param {
    /// A variable name, a positional index (`0`, `1`, `10`) or a special (`@*#?$!-`).
    pub(super) name: String,
    pub(super) op: ParamOp,
    pub(super) raw: String,
}

#[derive(Debug)]
pub(super) enum ParamOp {
    Plain,
    /// `${#x}`
    Length,
    /// `${x:-w}` / `${x-w}`
    Default {
        colon: bool,
        word: Word,
    },
    /// `${x:=w}` / `${x=w}`
    Assign {
        colon: bool,
        word: Word,
    },
    /// `${x:+w}` / `${x+w}`
    Alt {
        colon: bool,
        word: Word,
    },
    /// `${x:?w}` / `${x?w}`
    Error {
        colon: bool,
    },
    /// `${x#p}` / `${x##p}`
    StripPrefix {
        longest: bool,
        pattern: Word,
    },
    /// `${x%p}` / `${x%%p}`
    StripSuffix {
        longest: bool,
        pattern: Word,
    },
    /// `${x:offset}` / `${x:offset:length}`
    Substring {
        offset: String,
        length: Option<String>,
    },
    /// Indirection, arrays, replacement, case conversion: not evaluated.
    Unsupported,
}

#[derive(Debug)]
pub(super) enum Tok {
    Word(Word),
    Op(&'static str),
    Newline,
    /// The `2` of `2>&1`.
    IoNumber,
    /// `(( ... ))`
    Arith,
}

#[derive(Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {msg}")]
pub(super) struct SyntaxError {
    pub(super) line: u32,
    pub(super) msg: String,
}

/// Operators, longest first.
const OPERATORS: &[&str] = &[
    ";;&", "&>>", "<<-", "<<<", ";;", ";&", "&&", "||", "|&", "&>", ">>", ">&", ">|", "<&", "<>",
    "<<", ";", "&", "|", "(", ")", "<", ">",
];

pub(super) fn is_redirection(op: &str) -> bool {
    matches!(
        op,
        "<" | ">" | ">>" | ">&" | "<&" | "<>" | ">|" | "&>" | "&>>" | "<<" | "<<-" | "<<<"
    )
}

/// The blanks that separate words: POSIX's space and tab, and a carriage return (scripts
/// written on Windows). Any other whitespace (a vertical tab, a no-break space) is part of a
/// word, as in `sh`; splitting on it where the blank skipper does not skip it made the lexer
/// return empty words forever (found by fuzzing).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

pub(super) struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    nesting: usize,
    /// Here-documents whose bodies start after the current line: (delimiter, strip tabs).
    heredocs: Vec<(String, bool)>,
}

impl Lexer {
    pub(super) fn new(text: &str, line: u32, nesting: usize) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            line,
            nesting,
            heredocs: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn error(&self, msg: &str) -> SyntaxError {
        SyntaxError {
            line: self.line,
            msg: msg.to_string(),
        }
    }

    /// Consumes one character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    pub(super) fn tokens(mut self) -> Result<Vec<Token>, SyntaxError> {
        let mut out = Vec::new();
        loop {
            // Blanks and line continuations between tokens.
            loop {
                match self.peek() {
                    Some(c) if is_blank(c) => self.pos += 1,
                    Some('\\') if self.peek_at(1) == Some('\n') => {
                        self.pos += 2;
                        self.line += 1;
                    }
                    _ => break,
                }
            }
            let Some(c) = self.peek() else { break };
            let line = self.line;
            let tok = if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
                continue;
            } else if c == '\n' {
                self.bump();
                self.read_heredocs();
                Tok::Newline
            } else if self.starts_with("((") {
                self.pos += 2;
                self.until_double_paren()?;
                Tok::Arith
            } else if self.starts_with("<(") || self.starts_with(">(") {
                // Process substitution: a word whose value is a /dev/fd path.
                self.pos += 1;
                let text = self.balanced_paren()?;
                Tok::Word(Word {
                    parts: vec![Part::Opaque {
                        text: text.clone(),
                        quoted: false,
                    }],
                    raw: text,
                })
            } else if let Some(op) = OPERATORS.iter().copied().find(|op| self.starts_with(op)) {
                self.pos += op.len();
                if op == "<<" || op == "<<-" {
                    out.push(Token {
                        tok: Tok::Op(op),
                        line,
                    });
                    while matches!(self.peek(), Some(' ' | '\t')) {
                        self.pos += 1;
                    }
                    let delim = self.word(false)?;
                    let text: String = delim
                        .parts
                        .iter()
                        .map(|p| match p {
                            Part::Lit { text, .. } | Part::Opaque { text, .. } => text.as_str(),
                            Part::Param { param, .. } => param.raw.as_str(),
                        })
                        .collect();
                    self.heredocs.push((text, op == "<<-"));
                    Tok::Word(delim)
                } else {
                    Tok::Op(op)
                }
            } else {
                let start = self.pos;
                let word = self.word(false)?;
                if self.pos == start {
                    return Err(self.error("a word expected"));
                }
                let digits = word
                    .as_literal()
                    .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()));
                if digits && matches!(self.peek(), Some('<' | '>')) {
                    Tok::IoNumber
                } else {
                    Tok::Word(word)
                }
            };
            out.push(Token { tok, line });
        }
        Ok(out)
    }

    /// Skips the bodies of the here-documents opened on the line just ended.
    fn read_heredocs(&mut self) {
        for (delim, strip_tabs) in std::mem::take(&mut self.heredocs) {
            while self.peek().is_some() {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
                let line: String = self.chars[start..self.pos].iter().collect();
                self.bump();
                let line = if strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if line.trim_end_matches('\r') == delim {
                    break;
                }
            }
        }
    }

    /// One word. In `braces` mode (the argument of `${x:-...}`) blanks and operators are part
    /// of the word and it runs to the end of the text.
    fn word(&mut self, braces: bool) -> Result<Word, SyntaxError> {
        let start = self.pos;
        let mut parts = Vec::new();
        while let Some(c) = self.peek() {
            if !braces && (is_blank(c) || c == '\n' || ";&|()<>".contains(c)) {
                break;
            }
            match c {
                '\\' => {
                    self.pos += 1;
                    match self.bump() {
                        Some('\n') => {}
                        Some(n) => push_lit(&mut parts, &n.to_string(), true),
                        None => push_lit(&mut parts, "\\", false),
                    }
                }
                '\'' => {
                    self.pos += 1;
                    let text = self.until_quote()?;
                    push_lit(&mut parts, &text, true);
                }
                '"' => {
                    self.pos += 1;
                    self.double_quoted(&mut parts)?;
                }
                '`' => {
                    self.pos += 1;
                    let text = self.backquoted()?;
                    parts.push(Part::Opaque {
                        text,
                        quoted: false,
                    });
                }
                '$' => self.dollar(&mut parts, false)?,
                '=' if !braces && self.peek_at(1) == Some('(') && is_array_name(&parts) => {
                    // `NAME=(a b c)`: an array, not evaluated.
                    self.pos += 1;
                    push_lit(&mut parts, "=", false);
                    let text = self.balanced_paren()?;
                    parts.push(Part::Opaque {
                        text,
                        quoted: false,
                    });
                }
                _ => {
                    self.bump();
                    push_lit(&mut parts, &c.to_string(), false);
                }
            }
        }
        Ok(Word {
            parts,
            raw: self.chars[start..self.pos].iter().collect(),
        })
    }

    fn until_quote(&mut self) -> Result<String, SyntaxError> {
        let mut text = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(text),
                Some(c) => text.push(c),
                None => return Err(self.error("unterminated single quote")),
            }
        }
    }

    fn double_quoted(&mut self, parts: &mut Vec<Part>) -> Result<(), SyntaxError> {
        let before = parts.len();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated double quote")),
                Some('"') => {
                    self.pos += 1;
                    // An empty "" is still a (quoted, empty) word; "$@" alone is not.
                    if parts.len() == before {
                        push_lit(parts, "", true);
                    }
                    return Ok(());
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.bump() {
                        Some('\n') => {}
                        Some(c @ ('$' | '`' | '"' | '\\')) => push_lit(parts, &c.to_string(), true),
                        Some(c) => push_lit(parts, &format!("\\{c}"), true),
                        None => return Err(self.error("unterminated double quote")),
                    }
                }
                Some('$') => self.dollar(parts, true)?,
                Some('`') => {
                    self.pos += 1;
                    let text = self.backquoted()?;
                    parts.push(Part::Opaque { text, quoted: true });
                }
                Some(c) => {
                    self.bump();
                    push_lit(parts, &c.to_string(), true);
                }
            }
        }
    }

    fn backquoted(&mut self) -> Result<String, SyntaxError> {
        let mut text = String::from("`");
        loop {
            match self.bump() {
                Some('\\') => {
                    text.push('\\');
                    if let Some(c) = self.bump() {
                        text.push(c);
                    }
                }
                Some('`') => {
                    text.push('`');
                    return Ok(text);
                }
                Some(c) => text.push(c),
                None => return Err(self.error("unterminated backquote")),
            }
        }
    }

    /// After `(`: the text up to the matching `)`, quotes respected; returns it with both
    /// parentheses.
    fn balanced_paren(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated parenthesis")),
                Some('\\') => {
                    self.bump();
                }
                Some('\'') => {
                    self.until_quote()?;
                }
                Some('"') => {
                    let mut scratch = Vec::new();
                    self.double_quoted(&mut scratch)?;
                }
                Some('(') => depth += 1,
                Some(')') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(self.chars[start..self.pos].iter().collect());
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// After `((`: skips to the matching `))`.
    fn until_double_paren(&mut self) -> Result<(), SyntaxError> {
        let mut depth = 0usize;
        loop {
            if depth == 0 && self.starts_with("))") {
                self.pos += 2;
                return Ok(());
            }
            match self.bump() {
                None => return Err(self.error("unterminated (( ))")),
                Some('(') => depth += 1,
                Some(')') => depth = depth.saturating_sub(1),
                Some(_) => {}
            }
        }
    }

    fn dollar(&mut self, parts: &mut Vec<Part>, quoted: bool) -> Result<(), SyntaxError> {
        self.pos += 1;
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let body = self.brace_body()?;
                let param = self.param(&body)?;
                parts.push(Part::Param {
                    param: Rc::new(param),
                    quoted,
                });
            }
            Some('(') if self.peek_at(1) == Some('(') => {
                let start = self.pos - 1;
                self.pos += 2;
                self.until_double_paren()?;
                parts.push(Part::Opaque {
                    text: self.chars[start..self.pos].iter().collect(),
                    quoted,
                });
            }
            Some('(') => {
                let text = format!("${}", self.balanced_paren()?);
                parts.push(Part::Opaque { text, quoted });
            }
            Some('\'') if !quoted => {
                self.pos += 1;
                let text = self.ansi_c_quoted()?;
                push_lit(parts, &text, true);
            }
            Some('"') if !quoted => {
                // `$"..."` (a translatable string) is a double-quoted string.
                self.pos += 1;
                self.double_quoted(parts)?;
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
                {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                parts.push(simple_param(name, quoted));
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.pos += 1;
                parts.push(simple_param(c.to_string(), quoted));
            }
            _ => push_lit(parts, "$", quoted),
        }
        Ok(())
    }

    /// `$'...'` with its backslash escapes.
    fn ansi_c_quoted(&mut self) -> Result<String, SyntaxError> {
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated $'...'")),
                Some('\'') => return Ok(text),
                Some('\\') => match self.bump() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('e' | 'E') => text.push('\u{1b}'),
                    Some('0') => text.push('\0'),
                    Some(c) => text.push(c),
                    None => return Err(self.error("unterminated $'...'")),
                },
                Some(c) => text.push(c),
            }
        }
    }

    /// After `${`: the text up to the matching `}`.
    fn brace_body(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated ${")),
                Some('\\') => {
                    self.bump();
                }
                Some('\'') => {
                    self.until_quote()?;
                }
                Some('"') => {
                    let mut scratch = Vec::new();
                    self.double_quoted(&mut scratch)?;
                }
                Some('$') if self.peek() == Some('{') => {
                    self.pos += 1;
                    depth += 1;
                }
                Some('}') => {
                    if depth == 0 {
                        return Ok(self.chars[start..self.pos - 1].iter().collect());
                    }
                    depth -= 1;
                }
                Some(_) => {}
            }
        }
    }

    fn param(&self, body: &str) -> Result<Param, SyntaxError> {
        let raw = format!("${{{body}}}");
        let unsupported = |name: &str| Param {
            name: name.to_string(),
            op: ParamOp::Unsupported,
            raw: raw.clone(),
        };
        if let Some(name) = body.strip_prefix('#').filter(|n| !n.is_empty()) {
            let valid = is_name(name)
                || name.chars().all(|c| c.is_ascii_digit())
                || (name.len() == 1 && "@*#?$!-".contains(name));
            return Ok(if valid {
                Param {
                    name: name.to_string(),
                    op: ParamOp::Length,
                    raw,
                }
            } else {
                unsupported(name)
            });
        }
        let name_len = match body.chars().next() {
            Some(c) if c == '_' || c.is_ascii_alphabetic() => body
                .find(|c: char| c != '_' && !c.is_ascii_alphanumeric())
                .unwrap_or(body.len()),
            Some(c) if c.is_ascii_digit() => body
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(body.len()),
            Some(c) if "@*#?$!-".contains(c) => 1,
            _ => return Ok(unsupported(body)),
        };
        let (name, rest) = body.split_at(name_len);
        let word = |s: &str| self.sub_word(s);
        let op = if rest.is_empty() {
            ParamOp::Plain
        } else if let Some(w) = rest.strip_prefix(":-") {
            ParamOp::Default {
                colon: true,
                word: word(w)?,
            }
        } else if let Some(w) = rest.strip_prefix(":=") {
            ParamOp::Assign {
                colon: true,
                word: word(w)?,
            }
        } else if let Some(w) = rest.strip_prefix(":+") {
            ParamOp::Alt {
                colon: true,
                word: word(w)?,
            }
        } else if rest.starts_with(":?") {
            ParamOp::Error { colon: true }
        } else if let Some(w) = rest.strip_prefix('-') {
            ParamOp::Default {
                colon: false,
                word: word(w)?,
            }
        } else if let Some(w) = rest.strip_prefix('=') {
            ParamOp::Assign {
                colon: false,
                word: word(w)?,
            }
        } else if let Some(w) = rest.strip_prefix('+') {
            ParamOp::Alt {
                colon: false,
                word: word(w)?,
            }
        } else if rest.starts_with('?') {
            ParamOp::Error { colon: false }
        } else if let Some(p) = rest.strip_prefix("##") {
            ParamOp::StripPrefix {
                longest: true,
                pattern: word(p)?,
            }
        } else if let Some(p) = rest.strip_prefix('#') {
            ParamOp::StripPrefix {
                longest: false,
                pattern: word(p)?,
            }
        } else if let Some(p) = rest.strip_prefix("%%") {
            ParamOp::StripSuffix {
                longest: true,
                pattern: word(p)?,
            }
        } else if let Some(p) = rest.strip_prefix('%') {
            ParamOp::StripSuffix {
                longest: false,
                pattern: word(p)?,
            }
        } else if let Some(range) = rest.strip_prefix(':') {
            let (offset, length) = match range.split_once(':') {
                Some((o, l)) => (o, Some(l.trim().to_string())),
                None => (range, None),
            };
            ParamOp::Substring {
                offset: offset.trim().to_string(),
                length,
            }
        } else {
            ParamOp::Unsupported
        };
        Ok(Param {
            name: name.to_string(),
            op,
            raw,
        })
    }

    /// The word argument of a `${x<op>word}`.
    fn sub_word(&self, text: &str) -> Result<Word, SyntaxError> {
        if self.nesting >= MAX_NESTING {
            return Err(self.error("${...} nested too deeply"));
        }
        Lexer::new(text, self.line, self.nesting + 1).word(true)
    }
}

fn simple_param(name: String, quoted: bool) -> Part {
    let raw = format!("${name}");
    Part::Param {
        param: Rc::new(Param {
            name,
            op: ParamOp::Plain,
            raw,
        }),
        quoted,
    }
}

fn push_lit(parts: &mut Vec<Part>, s: &str, quoted: bool) {
    if let Some(Part::Lit { text, quoted: q }) = parts.last_mut() {
        if *q == quoted {
            text.push_str(s);
            return;
        }
    }
    parts.push(Part::Lit {
        text: s.to_string(),
        quoted,
    });
}

/// Whether the word so far is `NAME` or `NAME+` (so `=(` starts an array assignment).
fn is_array_name(parts: &[Part]) -> bool {
    match parts {
        [Part::Lit {
            text,
            quoted: false,
        }] => is_name(text.strip_suffix('+').unwrap_or(text)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::entrytrace::parser::parse;
    use crate::entrytrace::tests::{script_fields, values};

    #[test]
    fn a_vertical_tab_or_a_no_break_space_is_part_of_a_word_as_in_sh() {
        // Both once made the lexer return empty words forever (2 GiB in 49 s).
        let (fields, _) = script_fields("exec a\u{b}b c\u{a0}d", &[]);
        assert_eq!(
            values(&fields),
            [Some("exec"), Some("a\u{b}b"), Some("c\u{a0}d")]
        );
        assert!(parse("\u{b}").is_ok());
        assert!(parse("x\u{a0}\u{b}\u{c}").is_ok());
    }
}
