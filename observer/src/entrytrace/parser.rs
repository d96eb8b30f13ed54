//! The parser: tokens into the syntax tree of a script (lists, and-or lists, pipelines,
//! simple commands with their assignments, `if`/`case`/`for`/`while`, groups, subshells and
//! function definitions), with nesting capped.

use std::rc::Rc;

use crate::limits::MAX_SCRIPT_NESTING as MAX_NESTING;

use super::lexer::{is_redirection, Lexer, SyntaxError, Tok, Token, Word};

#[derive(Debug)]
pub(super) struct Script {
    pub(super) body: List,
}

pub(super) type List = Vec<Item>;

#[derive(Debug)]
pub(super) struct Item {
    pub(super) and_or: AndOr,
    pub(super) background: bool,
}

#[derive(Debug)]
pub(super) struct AndOr {
    pub(super) first: Pipeline,
    /// `(true, p)` for `&& p`, `(false, p)` for `|| p`.
    pub(super) rest: Vec<(bool, Pipeline)>,
}

#[derive(Debug)]
pub(super) struct Pipeline {
    pub(super) negated: bool,
    pub(super) commands: Vec<Command>,
}

#[derive(Debug)]
pub(super) enum Command {
    Simple(Simple),
    If {
        arms: Vec<IfArm>,
        otherwise: Option<(u32, List)>,
    },
    Case {
        word: Word,
        arms: Vec<CaseArm>,
    },
    For {
        var: String,
        /// `None` for `for x; do` / `for x do`, which loops over `"$@"`.
        words: Option<Vec<Word>>,
        body: List,
    },
    /// `while`/`until`, and `for ((...))` with an empty condition.
    While {
        until: bool,
        cond: List,
        body: List,
    },
    Group(List),
    Subshell,
    Function {
        name: String,
        body: Rc<Command>,
    },
    Arith,
}

#[derive(Debug)]
pub(super) struct IfArm {
    /// The line of the `if`/`elif`.
    pub(super) line: u32,
    pub(super) cond: List,
    pub(super) body: List,
}

#[derive(Debug)]
pub(super) struct CaseArm {
    pub(super) line: u32,
    pub(super) patterns: Vec<Word>,
    pub(super) body: List,
}

#[derive(Debug)]
pub(super) struct Simple {
    pub(super) line: u32,
    pub(super) assigns: Vec<Assign>,
    pub(super) words: Vec<Word>,
}

#[derive(Clone, Debug)]
pub(super) struct Assign {
    pub(super) name: String,
    pub(super) value: Word,
    pub(super) append: bool,
}

impl Script {
    /// Whether the script is one simple command, which `sh -c` execs in place of the shell.
    pub(super) fn is_single_command(&self) -> bool {
        match self.body.as_slice() {
            [Item {
                background: false,
                and_or: AndOr { first, rest },
            }] => {
                rest.is_empty()
                    && !first.negated
                    && matches!(first.commands.as_slice(), [Command::Simple(s)] if !s.words.is_empty())
            }
            _ => false,
        }
    }
}

pub(super) fn parse(text: &str) -> Result<Script, SyntaxError> {
    let toks = Lexer::new(text, 1, 0).tokens()?;
    let mut parser = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let body = parser.list(&[])?;
    match parser.peek() {
        None => Ok(Script { body }),
        Some(tok) => Err(parser.error(&format!("unexpected {}", describe(tok)))),
    }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("`{}`", w.raw),
        Tok::Op(op) => format!("`{op}`"),
        Tok::Newline => "end of line".to_string(),
        Tok::IoNumber => "file descriptor number".to_string(),
        Tok::Arith => "`((`".to_string(),
    }
}

const RESERVED_ENDINGS: &[&str] = &["then", "else", "elif", "fi", "do", "done", "esac", "}"];

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.line)
    }

    fn error(&self, msg: &str) -> SyntaxError {
        SyntaxError {
            line: self.line(),
            msg: msg.to_string(),
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_reserved(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.as_literal() == Some(word))
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline)) {
            self.pos += 1;
        }
    }

    fn expect_reserved(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.is_reserved(word) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{word}`")))
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), SyntaxError> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{op}`")))
        }
    }

    fn expect_word(&mut self) -> Result<Word, SyntaxError> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.error("expected a word")),
        }
    }

    /// Commands up to the end, a `)`, a `;;`, or one of the reserved words `stop`.
    fn list(&mut self, stop: &[&str]) -> Result<List, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                None => break,
                Some(Tok::Op(")" | ";;" | ";&" | ";;&")) => break,
                Some(Tok::Word(w)) if w.as_literal().is_some_and(|l| stop.contains(&l)) => break,
                _ => {}
            }
            let and_or = self.and_or()?;
            let background = self.is_op("&");
            if background || self.is_op(";") {
                self.pos += 1;
            } else if !matches!(
                self.peek(),
                None | Some(Tok::Newline | Tok::Op(")" | ";;" | ";&" | ";;&"))
            ) && !matches!(self.peek(), Some(Tok::Word(w)) if w.as_literal().is_some_and(|l| stop.contains(&l)))
            {
                let tok = self.peek().map_or(String::new(), describe);
                return Err(self.error(&format!("unexpected {tok}")));
            }
            items.push(Item { and_or, background });
        }
        Ok(items)
    }

    fn and_or(&mut self) -> Result<AndOr, SyntaxError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let and = if self.is_op("&&") {
                true
            } else if self.is_op("||") {
                false
            } else {
                break;
            };
            self.pos += 1;
            self.skip_newlines();
            rest.push((and, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, SyntaxError> {
        let mut negated = false;
        loop {
            if self.is_reserved("!") {
                negated = !negated;
                self.pos += 1;
            } else if self.is_reserved("time") {
                self.pos += 1;
                if self.is_reserved("-p") {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
        let mut commands = vec![self.command()?];
        while self.is_op("|") || self.is_op("|&") {
            self.pos += 1;
            self.skip_newlines();
            commands.push(self.command()?);
        }
        Ok(Pipeline { negated, commands })
    }

    fn command(&mut self) -> Result<Command, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error("commands nested too deeply"));
        }
        let command = self.command_inner()?;
        self.depth -= 1;
        Ok(command)
    }

    fn command_inner(&mut self) -> Result<Command, SyntaxError> {
        let compound = match self.peek() {
            None => return Err(self.error("unexpected end of script")),
            Some(Tok::Arith) => {
                self.pos += 1;
                Command::Arith
            }
            Some(Tok::Op("(")) => {
                self.pos += 1;
                self.list(&[])?;
                self.expect_op(")")?;
                Command::Subshell
            }
            Some(Tok::Word(w)) => match w.as_literal() {
                Some("if") => self.if_command()?,
                Some("case") => self.case_command()?,
                Some("for") => self.for_command()?,
                Some(kw @ ("while" | "until")) => {
                    let until = kw == "until";
                    self.pos += 1;
                    let cond = self.list(&["do"])?;
                    self.expect_reserved("do")?;
                    let body = self.list(&["done"])?;
                    self.expect_reserved("done")?;
                    Command::While { until, cond, body }
                }
                Some("{") => {
                    self.pos += 1;
                    let body = self.list(&["}"])?;
                    self.expect_reserved("}")?;
                    Command::Group(body)
                }
                Some("function") => {
                    self.pos += 1;
                    let name = self.expect_word()?.raw;
                    if self.is_op("(") {
                        self.pos += 1;
                        self.expect_op(")")?;
                    }
                    self.function_body(name)?
                }
                Some(kw) if RESERVED_ENDINGS.contains(&kw) => {
                    return Err(self.error(&format!("unexpected `{kw}`")));
                }
                Some("[[") => return self.double_bracket(),
                Some(name) if self.is_function_definition() => {
                    let name = name.to_string();
                    self.pos += 3;
                    self.function_body(name)?
                }
                _ => return self.simple(),
            },
            Some(Tok::IoNumber | Tok::Op(_)) => return self.simple(),
            Some(Tok::Newline) => return Err(self.error("unexpected end of line")),
        };
        // Redirections after a compound command (`done < file`, `} >&2`).
        while self.redirection()? {}
        Ok(compound)
    }

    fn is_function_definition(&self) -> bool {
        let op = |i: usize, op: &str| matches!(self.toks.get(self.pos + i).map(|t| &t.tok), Some(Tok::Op(o)) if *o == op);
        op(1, "(") && op(2, ")")
    }

    fn function_body(&mut self, name: String) -> Result<Command, SyntaxError> {
        self.skip_newlines();
        let body = self.command()?;
        Ok(Command::Function {
            name,
            body: Rc::new(body),
        })
    }

    /// Skips one redirection (and its target); false when there is none.
    fn redirection(&mut self) -> Result<bool, SyntaxError> {
        match self.peek() {
            Some(Tok::IoNumber) => {
                self.pos += 1;
                Ok(true)
            }
            Some(Tok::Op(op)) if is_redirection(op) => {
                self.pos += 1;
                self.expect_word()
                    .map_err(|_| self.error("a redirection without a target"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn simple(&mut self) -> Result<Command, SyntaxError> {
        let line = self.line();
        let mut assigns = Vec::new();
        let mut words = Vec::new();
        let mut any = false;
        loop {
            if self.redirection()? {
                any = true;
                continue;
            }
            let Some(Tok::Word(w)) = self.peek() else {
                break;
            };
            match w.assignment().filter(|_| words.is_empty()) {
                Some(assign) => assigns.push(assign),
                None => words.push(w.clone()),
            }
            self.pos += 1;
            any = true;
        }
        if !any {
            let tok = self.peek().map_or("end of script".to_string(), describe);
            return Err(self.error(&format!("expected a command, found {tok}")));
        }
        Ok(Command::Simple(Simple {
            line,
            assigns,
            words,
        }))
    }

    /// `[[ ... ]]`: operators inside are words of the test.
    fn double_bracket(&mut self) -> Result<Command, SyntaxError> {
        let line = self.line();
        let mut words = Vec::new();
        loop {
            let word = match self.peek() {
                Some(Tok::Word(w)) => w.clone(),
                Some(Tok::Op(op)) => Word::literal(op),
                _ => return Err(self.error("unterminated [[")),
            };
            self.pos += 1;
            let end = word.as_literal() == Some("]]");
            words.push(word);
            if end {
                break;
            }
        }
        Ok(Command::Simple(Simple {
            line,
            assigns: Vec::new(),
            words,
        }))
    }

    fn if_command(&mut self) -> Result<Command, SyntaxError> {
        let mut arms = Vec::new();
        let mut otherwise = None;
        loop {
            // At `if` or `elif`.
            let line = self.line();
            self.pos += 1;
            let cond = self.list(&["then"])?;
            self.expect_reserved("then")?;
            let body = self.list(&["elif", "else", "fi"])?;
            arms.push(IfArm { line, cond, body });
            if self.is_reserved("elif") {
                continue;
            }
            if self.is_reserved("else") {
                let line = self.line();
                self.pos += 1;
                otherwise = Some((line, self.list(&["fi"])?));
            }
            self.expect_reserved("fi")?;
            return Ok(Command::If { arms, otherwise });
        }
    }

    fn case_command(&mut self) -> Result<Command, SyntaxError> {
        self.pos += 1;
        let word = self.expect_word()?;
        self.skip_newlines();
        self.expect_reserved("in")?;
        let mut arms = Vec::new();
        loop {
            self.skip_newlines();
            if self.is_reserved("esac") {
                self.pos += 1;
                return Ok(Command::Case { word, arms });
            }
            let line = self.line();
            if self.is_op("(") {
                self.pos += 1;
            }
            let mut patterns = vec![self.expect_word()?];
            while self.is_op("|") {
                self.pos += 1;
                patterns.push(self.expect_word()?);
            }
            self.expect_op(")")?;
            let body = self.list(&["esac"])?;
            if self.is_op(";;") || self.is_op(";&") || self.is_op(";;&") {
                self.pos += 1;
            } else if !self.is_reserved("esac") {
                return Err(self.error("expected `;;` or `esac`"));
            }
            arms.push(CaseArm {
                line,
                patterns,
                body,
            });
        }
    }

    fn for_command(&mut self) -> Result<Command, SyntaxError> {
        self.pos += 1;
        if matches!(self.peek(), Some(Tok::Arith)) {
            // `for ((i = 0; i < n; i++))`
            self.pos += 1;
            if self.is_op(";") {
                self.pos += 1;
            }
            self.skip_newlines();
            self.expect_reserved("do")?;
            let body = self.list(&["done"])?;
            self.expect_reserved("done")?;
            return Ok(Command::While {
                until: false,
                cond: Vec::new(),
                body,
            });
        }
        let var = self.expect_word()?.raw;
        self.skip_newlines();
        let mut words = None;
        if self.is_reserved("in") {
            self.pos += 1;
            let mut list = Vec::new();
            while let Some(Tok::Word(w)) = self.peek() {
                list.push(w.clone());
                self.pos += 1;
            }
            words = Some(list);
        }
        if self.is_op(";") {
            self.pos += 1;
        }
        self.skip_newlines();
        self.expect_reserved("do")?;
        let body = self.list(&["done"])?;
        self.expect_reserved("done")?;
        Ok(Command::For { var, words, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_accepts_the_language_of_entrypoints() {
        let text = r#"#!/bin/bash
set -Eeuo pipefail
shopt -s nullglob
declare -a args=( "$@" )
f() { local x="${1:-}"; [[ $x == -* ]] && return 0 || return 1; }
function g {
    case "$1" in
        (a|b) echo one ;;
        -*) echo two ;&
        *) ;;
    esac
}
for ((i = 0; i < 3; i++)); do :; done
while read -r line; do echo "$line"; done < <(ls /)
until false; do break; done
cat >&2 <<-'EOT'
	if this were parsed ) it would fail (
	EOT
cat <<EOF | grep x
fi
EOF
(( n = 1 + 2 ))
{ echo a; echo b; } 2>&1 >/dev/null
x=$(( 1 + $(echo 2) )) y=`echo \`z\``
echo "a \" b" 'c'"d"$'e\n' \
  continued
exec 3>&1 4>&2
! true && exit 1 || :
echo done &
"#;
        let script = parse(text).unwrap();
        assert_eq!(script.body.len(), 17);
        assert!(parse("if true; then").is_err());
        assert!(parse("echo 'unterminated").is_err());
        assert!(parse("case x in a) ;; ").is_err());
        assert!(parse("fi").is_err());
        let deep = "{ ".repeat(500) + &" }".repeat(500);
        assert!(parse(&deep).is_err(), "nesting is capped");
        let deep = "${a:-".repeat(500) + &"}".repeat(500);
        assert!(parse(&format!("echo {deep}")).is_err());
    }
}
