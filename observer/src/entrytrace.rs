//! Entry-point tracing: from a container's entrypoint and command, follow shell scripts and
//! wrappers inside the container's root filesystem — reading them, never executing anything —
//! to the terminal program(s): the programs the container ends up running.
//!
//! The model, in the order a trace meets it:
//!
//! - **Files** are looked up inside `root` only: symlinks are resolved one component at a time
//!   relative to `root` (an absolute `/bin/sh -> /bin/busybox` means `<root>/bin/busybox`), so a
//!   rootfs cannot point the observer at its own files. Terminals are the resolved paths (what
//!   `/proc/<pid>/exe` shows), except busybox applets. Bare names are searched on the
//!   container's `PATH` (which scripts may change). A file is read only up to 256 bytes to tell
//!   an ELF binary from a `#!` script, and a script only when it is at most 1 MiB.
//! - **Programs** are classified by name: shells (`sh -c`, `bash script`) are parsed; wrappers
//!   (`env`, `tini`, `dumb-init`, `catatonit`, `gosu`, `su-exec`, `s6-setuidgid`, `nohup`) are
//!   followed to the command they start; interpreters (`python`, `node`, `java`, `ruby`, `perl`,
//!   `php`) are terminal, with their script, module, jar or class recorded as a step;
//!   `run-parts DIR` follows every file it would run (also where a script runs it as a hook
//!   and moves on: then only what the hooks start in the background are terminals); a path
//!   that resolves to a multi-call
//!   `busybox` is the applet its name says (`/bin/sleep`); anything else is terminal.
//! - **Scripts** are tokenized and parsed by hand (quotes, `\` continuations, `$VAR`,
//!   `${VAR:-default}` and friends, here-documents, `&&`/`||`/`;`/`&`/`|`, `if`/`case`/`for`/
//!   `while`, functions), then interpreted symbolically: variables assigned earlier, `set --`,
//!   `shift` and `"$@"` are known; the container's environment and command substitutions are
//!   not. A condition that can be decided (`[ "$1" = postgres ]` with `$1` known) takes one
//!   branch; one that cannot explores every branch, each with its own copy of the variables, and
//!   all their terminals are recorded (`${VAR:-default}` of a variable the scripts never set
//!   takes the default: the environment is not known here, and the default is what the image
//!   expects). A script ends in the program it `exec`s or, when it never does, in its last
//!   command — and then the shell stays too, waiting for it. `local` variables are scoped to
//!   their function; a script re-running itself (`exec gosu user "$0" "$@"`) is a cycle.
//!
//! Everything is bounded: `max_depth` (programs, scripts, sourced files and function calls
//! nested in each other), steps, warnings, paths explored at once (beyond a cap, paths that
//! differ only in variables are joined, those variables becoming unknown), and a total amount
//! of work.
//! Whatever cannot be followed becomes a warning, never a panic. Arguments can hold secrets:
//! steps and warnings show command words and paths, never argument values.

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;

use crate::confined::{self, Root};
use crate::limits::{
    HEADER_BYTES, MAX_DIR_ENTRIES, MAX_LOOP_ITEMS, MAX_RUN_PARTS, MAX_SCRIPT_BYTES,
    MAX_SCRIPT_NESTING as MAX_NESTING, MAX_TRACE_STATES as MAX_STATES,
    MAX_TRACE_STEPS as MAX_STEPS, MAX_TRACE_WARNINGS as MAX_WARNINGS, MAX_VALUE_BYTES,
    TRACE_GLOB_STEPS_PER_UNIT as GLOB_STEPS_PER_UNIT,
    TRACE_HASH_BYTES_PER_UNIT as HASH_BYTES_PER_UNIT, TRACE_WALL_TIME, TRACE_WORK_UNITS,
};

/// One step of the trace, as in the runtime event contract `entryTrace[{file,line,op,target}]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TraceStep {
    /// The file the step was read from (a path inside the container), or `argv` for the
    /// container's own entrypoint/command (and for the commands of an `sh -c` string in it).
    pub file: String,
    /// 1-based line in `file`; for `argv`, 0 — or the line inside an `sh -c` string.
    pub line: u32,
    /// What happened:
    /// - `exec`: a program replaces the process (the entrypoint itself, `exec`, an `sh -c`
    ///   string that is a single command);
    /// - `path-lookup`: a bare name found on `PATH`; `symlink`: what a path resolves to;
    /// - `shebang`: a script's `#!` interpreter; `applet`: `busybox APPLET`;
    /// - `wrapper`: the command `env`/`tini`/`dumb-init`/`gosu`/`su-exec`/... starts;
    /// - `interpreter`: the script, `-m module`, jar or class an interpreter runs (also the
    ///   script a shell runs); `shell-c`: a shell parses a `-c` string;
    /// - `source`: `.`/`source`;
    /// - `branch`: a branch of an `if`/`case` whose condition is not known before the
    ///   container runs (`then`, `elif`, `else`, or the `case` patterns), recorded when the
    ///   branch led to further steps;
    /// - `command`: the last command of a script that never `exec`s (the shell waits for
    ///   it), or `run-parts` run along the way;
    /// - `background`: `cmd &`; `run-parts`: a file `run-parts` runs;
    /// - `cycle`: a script re-run with the same arguments (e.g. by `gosu user "$0" "$@"`),
    ///   not followed again.
    pub op: String,
    /// What it led to (a path inside the container, or a command word when unresolved).
    pub target: String,
}

/// The result of tracing one entrypoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryTrace {
    pub steps: Vec<TraceStep>,
    /// Absolute paths (inside the container) of the program(s) the entrypoint ends in: what
    /// it `exec`s in the end, supervisors that stay as its parent (`tini`, `dumb-init`, a shell
    /// waiting for its last command, `run-parts`), and commands started in the background.
    pub terminals: Vec<String>,
    /// The deepest level followed (programs, scripts, sourced files and function calls):
    /// 0 for an entrypoint that is the program itself.
    pub depth: usize,
    /// True when `max_depth` or another cap cut the trace short (see `warnings`).
    pub truncated: bool,
    /// What could not be followed and why (unreadable file, unresolvable word, ...).
    pub warnings: Vec<String>,
}

/// The `PATH` used when the image does not set one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Traces `argv` (entrypoint followed by command, as the runtime concatenates them) inside the
/// container root `root`, resolving bare program names against `path` (the image's `PATH`, or
/// [`DEFAULT_PATH`] when `None`).
pub fn trace(root: &Path, argv: &[String], path: Option<&str>, max_depth: usize) -> EntryTrace {
    let mut tracer = Tracer::new(root, max_depth);
    if argv.is_empty() {
        tracer.warn("empty entrypoint and command: nothing to trace".to_string());
        return tracer.out;
    }
    let argv: Vec<Field> = argv.iter().map(|a| Field::known(a.as_str())).collect();
    let env = Env {
        vars: BTreeMap::from([(
            "PATH".to_string(),
            Var::Set(path.unwrap_or(DEFAULT_PATH).to_string()),
        )]),
        cwd: None,
    };
    let at = Loc {
        file: Rc::from(ARGV),
        line: 0,
    };
    tracer.exec_program(&Call {
        at: &at,
        op: "exec",
        argv: &argv,
        env: &env,
        depth: 0,
    });
    tracer.out
}

/// Whether `path` names a multi-call `busybox` binary, which runs the applet its `argv[0]`
/// names: a process whose executable is busybox is the program its name says.
pub fn is_busybox(path: &str) -> bool {
    basename(path) == "busybox"
}

/// The `file` of steps read from the entrypoint and command.
const ARGV: &str = "argv";
/// What execvp(3) searches when `PATH` is unset (glibc's `_CS_PATH`), e.g. after `env -i`.
const UNSET_PATH: &str = "/bin:/usr/bin";
// ---------------------------------------------------------------------------------------------
// The container's root filesystem
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("not found")]
    NotFound,
    #[error("a path component is not a directory")]
    NotADirectory,
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("{0}")]
    Io(io::Error),
}

/// A path resolved inside the root: no symlinks left in it.
type Resolved = confined::Resolved;

/// The container's root filesystem: every lookup and every read goes through
/// [`confined::Root`], so nothing outside the root is ever read, whatever the container does
/// to its files while it is traced; FIFOs, sockets and devices are never opened for reading.
struct Rootfs {
    root: Result<Root, String>,
}

impl Rootfs {
    fn new(root: &Path) -> Rootfs {
        Rootfs {
            root: Root::open(root).map_err(|e| format!("{}: {e}", root.display())),
        }
    }

    fn root(&self) -> Result<&Root, ResolveError> {
        self.root
            .as_ref()
            .map_err(|e| ResolveError::Io(io::Error::other(e.clone())))
    }

    /// Resolves `path` (absolute, inside the container) the way the kernel would with the
    /// root as `/`: `..` stops at the root and absolute symlink targets start over from it.
    fn resolve(&self, path: &str) -> Result<Resolved, ResolveError> {
        self.root()?.resolve(path).map_err(io_error)
    }

    /// The first `limit` bytes of a resolved regular file, if it is still that file.
    fn read(&self, file: &Resolved, limit: u64) -> io::Result<Vec<u8>> {
        let root = self.root().map_err(|e| io::Error::other(e.to_string()))?;
        let opened = root.open_resolved(file)?;
        if !opened.meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut data = Vec::new();
        opened.file.take(limit).read_to_end(&mut data)?;
        Ok(data)
    }

    /// The UTF-8 names in a directory (others cannot be run by name from a script anyway),
    /// at most `limit` of them read; and whether there were more.
    fn list(&self, dir: &str, limit: usize) -> Result<(Vec<String>, bool), ResolveError> {
        let root = self.root()?;
        let dir = root.resolve(dir).map_err(io_error)?;
        if !dir.meta.is_dir() {
            return Err(ResolveError::NotADirectory);
        }
        root.read_dir(&dir.path, limit).map_err(io_error)
    }
}

fn io_error(e: io::Error) -> ResolveError {
    const ELOOP: i32 = 40;
    match e.kind() {
        io::ErrorKind::NotFound => ResolveError::NotFound,
        io::ErrorKind::NotADirectory => ResolveError::NotADirectory,
        _ if e.raw_os_error() == Some(ELOOP) => ResolveError::Loop,
        _ => ResolveError::Io(e),
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` made absolute against `cwd` and normalized lexically; `None` when it is relative and
/// the working directory is not known.
fn absolute(path: &str, cwd: Option<&str>) -> Option<String> {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", cwd?)
    };
    let mut out: Vec<&str> = Vec::new();
    for c in components(&joined) {
        match c {
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    Some(format!("/{}", out.join("/")))
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// A command word or path as it may appear in a step or warning. Arguments can hold secrets,
/// and a word where a command was expected may be an argument (`exec "$@"` with `$1` being
/// `--password=...`), so anything that does not look like a command is not shown.
fn shown(word: &str) -> String {
    if word.len() > 256
        || word.starts_with('-')
        || word.contains(|c: char| c == '=' || c.is_whitespace())
    {
        "<redacted>".to_string()
    } else {
        word.to_string()
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Part {
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
struct Word {
    parts: Vec<Part>,
    /// The source text, for steps and warnings about words that cannot be resolved.
    raw: String,
}

impl Word {
    fn literal(text: &str) -> Word {
        Word {
            parts: vec![Part::Lit {
                text: text.to_string(),
                quoted: false,
            }],
            raw: text.to_string(),
        }
    }

    /// The word when it is a single unquoted literal (reserved words must be).
    fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit {
                text,
                quoted: false,
            }] => Some(text),
            _ => None,
        }
    }

    /// `NAME=value` / `NAME+=value`: the name, the value and whether it appends.
    fn assignment(&self) -> Option<Assign> {
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
struct Param {
    /// A variable name, a positional index (`0`, `1`, `10`) or a special (`@*#?$!-`).
    name: String,
    op: ParamOp,
    raw: String,
}

#[derive(Debug)]
enum ParamOp {
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
enum Tok {
    Word(Word),
    Op(&'static str),
    Newline,
    /// The `2` of `2>&1`.
    IoNumber,
    /// `(( ... ))`
    Arith,
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    line: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("line {line}: {msg}")]
struct SyntaxError {
    line: u32,
    msg: String,
}

/// Operators, longest first.
const OPERATORS: &[&str] = &[
    ";;&", "&>>", "<<-", "<<<", ";;", ";&", "&&", "||", "|&", "&>", ">>", ">&", ">|", "<&", "<>",
    "<<", ";", "&", "|", "(", ")", "<", ">",
];

fn is_redirection(op: &str) -> bool {
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

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: u32,
    nesting: usize,
    /// Here-documents whose bodies start after the current line: (delimiter, strip tabs).
    heredocs: Vec<(String, bool)>,
}

impl Lexer {
    fn new(text: &str, line: u32, nesting: usize) -> Self {
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

    fn tokens(mut self) -> Result<Vec<Token>, SyntaxError> {
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

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Script {
    body: List,
}

type List = Vec<Item>;

#[derive(Debug)]
struct Item {
    and_or: AndOr,
    background: bool,
}

#[derive(Debug)]
struct AndOr {
    first: Pipeline,
    /// `(true, p)` for `&& p`, `(false, p)` for `|| p`.
    rest: Vec<(bool, Pipeline)>,
}

#[derive(Debug)]
struct Pipeline {
    negated: bool,
    commands: Vec<Command>,
}

#[derive(Debug)]
enum Command {
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
struct IfArm {
    /// The line of the `if`/`elif`.
    line: u32,
    cond: List,
    body: List,
}

#[derive(Debug)]
struct CaseArm {
    line: u32,
    patterns: Vec<Word>,
    body: List,
}

#[derive(Debug)]
struct Simple {
    line: u32,
    assigns: Vec<Assign>,
    words: Vec<Word>,
}

#[derive(Clone, Debug)]
struct Assign {
    name: String,
    value: Word,
    append: bool,
}

impl Script {
    /// Whether the script is one simple command, which `sh -c` execs in place of the shell.
    fn is_single_command(&self) -> bool {
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

fn parse(text: &str) -> Result<Script, SyntaxError> {
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

// ---------------------------------------------------------------------------------------------
// Patterns and `test`
// ---------------------------------------------------------------------------------------------

/// Whether unquoted text would undergo pathname expansion (`*`, `?`, `[...]`).
fn has_glob(text: &str) -> bool {
    text.contains(['*', '?']) || text.find('[').is_some_and(|i| text[i..].contains(']'))
}

/// One element of a shell pattern.
enum Elem {
    Star,
    Any,
    Char(char),
    /// `[...]`: ranges (a single character `c` is `(c, c)`), negated by `!` or `^`.
    Class {
        ranges: Vec<(char, char)>,
        negate: bool,
    },
}

impl Elem {
    fn matches(&self, c: char) -> bool {
        match self {
            Elem::Star | Elem::Any => true,
            Elem::Char(x) => *x == c,
            Elem::Class { ranges, negate } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negate
            }
        }
    }
}

/// A shell pattern (`case`, `${x#p}`, `[[ x == p ]]`): `*`, `?`, `[...]`, `\x`.
fn compile(pattern: &str) -> Vec<Elem> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (elem, next) = match p[i] {
            '*' => (Elem::Star, i + 1),
            '?' => (Elem::Any, i + 1),
            '\\' if i + 1 < p.len() => (Elem::Char(p[i + 1]), i + 2),
            '[' => class(&p, i).unwrap_or((Elem::Char('['), i + 1)),
            c => (Elem::Char(c), i + 1),
        };
        out.push(elem);
        i = next;
    }
    out
}

/// A `[...]` at `start` and the index after it; `None` when it is not closed (then `[` is
/// literal).
fn class(p: &[char], start: usize) -> Option<(Elem, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((Elem::Class { ranges, negate }, i + 1));
        }
        first = false;
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        match (p.get(i + 1), p.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((lo, hi));
                i += 3;
            }
            _ => {
                ranges.push((lo, lo));
                i += 1;
            }
        }
    }
}

/// For each prefix of `text` (lengths 0 to n), whether `pattern` matches it: one pass of the
/// pattern's NFA over the text, O(n·m) for all prefixes together (trying every prefix with a
/// backtracking matcher would be O(n²·m), which a script could make expensive).
fn prefix_matches(pattern: &[Elem], text: &[char]) -> Vec<bool> {
    let k = pattern.len();
    // A `*` may match nothing: reaching it reaches what follows.
    let close = |set: &mut [bool]| {
        for s in 0..k {
            if set[s] && matches!(pattern[s], Elem::Star) {
                set[s + 1] = true;
            }
        }
    };
    let mut cur = vec![false; k + 1];
    cur[0] = true;
    close(&mut cur);
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(cur[k]);
    for &c in text {
        let mut next = vec![false; k + 1];
        for s in 0..k {
            if cur[s] && pattern[s].matches(c) {
                // `*` consumes and stays; anything else moves on.
                let to = if matches!(pattern[s], Elem::Star) {
                    s
                } else {
                    s + 1
                };
                next[to] = true;
            }
        }
        close(&mut next);
        if !next.contains(&true) {
            break;
        }
        out.push(next[k]);
        cur = next;
    }
    out.resize(text.len() + 1, false);
    out
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    prefix_matches(&compile(pattern), &text)[text.len()]
}

/// `[`, `test` and `[[` on known arguments: `Some(result)`, or `None` when it depends on
/// something not known before the container runs (a file, an unknown value, `=~`).
fn test_command(args: &[Field], double: bool) -> Option<bool> {
    // An unknown unquoted expansion may be any number of arguments.
    if args.iter().any(|a| a.value.is_none() && a.split) {
        return None;
    }
    let values: Vec<Option<&str>> = args.iter().map(|a| a.value.as_deref()).collect();
    let mut expr = TestExpr {
        args: &values,
        pos: 0,
        double,
    };
    let result = expr.or().ok()?;
    (expr.pos == values.len()).then_some(result)?
}

struct TestExpr<'a> {
    args: &'a [Option<&'a str>],
    pos: usize,
    double: bool,
}

/// A malformed test expression.
struct Malformed;

impl<'a> TestExpr<'a> {
    fn at(&self, i: usize) -> Option<&'a str> {
        self.args.get(self.pos + i).copied().flatten()
    }

    fn or(&mut self) -> Result<Option<bool>, Malformed> {
        let op = if self.double { "||" } else { "-o" };
        let mut value = self.and()?;
        while self.at(0) == Some(op) {
            self.pos += 1;
            let right = self.and()?;
            value = match (value, right) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            };
        }
        Ok(value)
    }

    fn and(&mut self) -> Result<Option<bool>, Malformed> {
        let op = if self.double { "&&" } else { "-a" };
        let mut value = self.not()?;
        while self.at(0) == Some(op) {
            self.pos += 1;
            let right = self.not()?;
            value = match (value, right) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
        }
        Ok(value)
    }

    fn not(&mut self) -> Result<Option<bool>, Malformed> {
        if self.at(0) == Some("!") && self.pos + 1 < self.args.len() {
            self.pos += 1;
            return Ok(self.not()?.map(|b| !b));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Option<bool>, Malformed> {
        let left = self.args.len() - self.pos;
        if left == 0 {
            return Err(Malformed);
        }
        if self.at(0) == Some("(") && left > 1 {
            self.pos += 1;
            let value = self.or()?;
            if self.at(0) != Some(")") {
                return Err(Malformed);
            }
            self.pos += 1;
            return Ok(value);
        }
        if left >= 3 {
            if let Some(op) = self.at(1).filter(|op| is_binary_test(op)) {
                let (a, b) = (self.args[self.pos], self.args[self.pos + 2]);
                self.pos += 3;
                return Ok(binary_test(a, op, b, self.double));
            }
        }
        if left >= 2 {
            if let Some(op) = self.at(0).filter(|op| is_unary_test(op)) {
                let arg = self.args[self.pos + 1];
                self.pos += 2;
                return Ok(match op {
                    "-n" => arg.map(|a| !a.is_empty()),
                    "-z" => arg.map(str::is_empty),
                    // Files, terminals, options: what the running container has.
                    _ => None,
                });
            }
        }
        let arg = self.args[self.pos];
        self.pos += 1;
        Ok(arg.map(|a| !a.is_empty()))
    }
}

fn is_unary_test(op: &str) -> bool {
    op.len() == 2 && op.starts_with('-') && "abcdefghknoprstuvwxzGLNOS".contains(&op[1..])
}

fn is_binary_test(op: &str) -> bool {
    matches!(
        op,
        "=" | "=="
            | "!="
            | "<"
            | ">"
            | "=~"
            | "-eq"
            | "-ne"
            | "-lt"
            | "-le"
            | "-gt"
            | "-ge"
            | "-nt"
            | "-ot"
            | "-ef"
    )
}

fn binary_test(a: Option<&str>, op: &str, b: Option<&str>, double: bool) -> Option<bool> {
    let (a, b) = (a?, b?);
    let equal = || {
        if double && has_glob(b) {
            glob_match(b, a)
        } else {
            a == b
        }
    };
    let int = |s: &str| s.trim().parse::<i64>().ok();
    match op {
        "=" | "==" => Some(equal()),
        "!=" => Some(!equal()),
        "<" => Some(a < b),
        ">" => Some(a > b),
        "-eq" => Some(int(a)? == int(b)?),
        "-ne" => Some(int(a)? != int(b)?),
        "-lt" => Some(int(a)? < int(b)?),
        "-le" => Some(int(a)? <= int(b)?),
        "-gt" => Some(int(a)? > int(b)?),
        "-ge" => Some(int(a)? >= int(b)?),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Symbolic state
// ---------------------------------------------------------------------------------------------

/// One word after expansion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Field {
    /// `None` when it depends on something not known before the container runs.
    value: Option<String>,
    /// For steps and warnings: the known text with unknown parts as written (`$JAVA_HOME/bin`).
    text: String,
    /// An unknown unquoted expansion: may stand for any number of words.
    split: bool,
}

impl Field {
    fn known(s: impl Into<String>) -> Field {
        let s = s.into();
        Field::new(Some(s.clone()), s, false)
    }

    /// A field, unknown when its value is longer than [`MAX_VALUE_BYTES`].
    fn new(value: Option<String>, mut text: String, split: bool) -> Field {
        if text.len() > MAX_VALUE_BYTES {
            let mut end = MAX_VALUE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Field {
            value: value.filter(|v| v.len() <= MAX_VALUE_BYTES),
            text,
            split,
        }
    }

    fn var(&self) -> Var {
        match &self.value {
            Some(v) => Var::Set(v.clone()),
            None => Var::Unknown,
        }
    }
}

/// A field being built by expansion.
#[derive(Default)]
struct FieldBuf {
    value: String,
    text: String,
    unknown: bool,
    split: bool,
    /// Quotes or an unknown expansion make a field even when empty.
    present: bool,
}

impl FieldBuf {
    fn push(&mut self, s: &str) {
        self.value.push_str(s);
        self.text.push_str(s);
    }

    fn push_unknown(&mut self, raw: &str, quoted: bool) {
        self.unknown = true;
        self.present = true;
        self.split |= !quoted;
        self.text.push_str(raw);
    }

    fn push_field(&mut self, f: &Field) {
        match &f.value {
            Some(v) => self.push(v),
            None => {
                self.unknown = true;
                self.text.push_str(&f.text);
            }
        }
        self.split |= f.split;
        self.present = true;
    }

    fn has_content(&self) -> bool {
        self.present || self.unknown || !self.value.is_empty()
    }

    fn take(&mut self) -> Field {
        let buf = std::mem::take(self);
        Field::new((!buf.unknown).then_some(buf.value), buf.text, buf.split)
    }

    /// Appends `value` split on blanks (the default `IFS`), finishing fields at each blank.
    fn split_into(&mut self, value: &str, out: &mut Vec<Field>) {
        for (i, piece) in value.split([' ', '\t', '\n']).enumerate() {
            if i > 0 && self.has_content() {
                out.push(self.take());
            }
            self.push(piece);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Var {
    Set(String),
    Unset,
    /// Assigned from something not known before the container runs.
    Unknown,
}

/// A variable's value as expansion sees it.
enum Lookup {
    Value(String),
    Unset,
    /// Never assigned by the scripts: from the container's environment, not known here.
    Environment,
    Unknown,
}

/// What a program inherits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Env {
    /// Exported variables; names not here come from the container's environment.
    vars: BTreeMap<String, Var>,
    cwd: Option<String>,
}

impl Env {
    fn path(&self) -> &str {
        match self.vars.get("PATH") {
            Some(Var::Set(p)) => p,
            Some(Var::Unset) => UNSET_PATH,
            _ => DEFAULT_PATH,
        }
    }
}

/// A place in a file (or `argv`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Loc {
    file: Rc<str>,
    line: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// Where parsed text came from: a file, or an `sh -c`/`eval` string inside one.
#[derive(Clone, Debug)]
struct Src {
    file: Rc<str>,
    /// Added to the lines of the parsed text (a `-c` string on line 5 starts at 5).
    offset: u32,
    /// A script file (`$BASH_SOURCE` is its path), not a string.
    is_file: bool,
}

impl Src {
    fn at(&self, line: u32) -> Loc {
        Loc {
            file: self.file.clone(),
            line: self.offset + line,
        }
    }
}

/// An external command run in the foreground, kept until the script moves on: if the script
/// ends without `exec`, its last such command(s) are what it ends in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    at: Loc,
    argv: Vec<Field>,
    env: Env,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flow {
    Normal,
    Return,
    Break,
    Continue,
}

/// One path through a script: what the shell knows at that point.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    vars: BTreeMap<String, Var>,
    /// One frame per function call: the values `local` variables hid (`None`: not set).
    frames: Vec<BTreeMap<String, Option<Var>>>,
    exported: BTreeSet<String>,
    positional: Vec<Field>,
    arg0: String,
    cwd: Option<String>,
    /// Function name → index into [`Tracer::functions`].
    functions: BTreeMap<String, usize>,
    pending: Vec<Pending>,
    /// `wait` ran: the shell stays until its background commands end.
    waited: bool,
    /// The exit status of the last command: `None` when not known.
    status: Option<bool>,
    flow: Flow,
}

impl State {
    fn new(env: &Env, arg0: String, positional: Vec<Field>) -> State {
        State {
            exported: env.vars.keys().cloned().collect(),
            vars: env.vars.clone(),
            frames: Vec::new(),
            positional,
            arg0,
            cwd: env.cwd.clone(),
            functions: BTreeMap::new(),
            pending: Vec::new(),
            waited: false,
            status: Some(true),
            flow: Flow::Normal,
        }
    }

    /// What a command started now inherits, with its `NAME=value` prefixes.
    fn env(&self, prefix: &[(String, Field)]) -> Env {
        let mut vars: BTreeMap<String, Var> = self
            .exported
            .iter()
            .filter_map(|n| Some((n.clone(), self.vars.get(n)?.clone())))
            .collect();
        for (name, value) in prefix {
            vars.insert(name.clone(), value.var());
        }
        Env {
            vars,
            cwd: self.cwd.clone(),
        }
    }

    /// Makes `name` local to the running function (if any), remembering what it hid.
    fn make_local(&mut self, name: &str) {
        if let Some(frame) = self.frames.last_mut() {
            if !frame.contains_key(name) {
                frame.insert(name.to_string(), self.vars.get(name).cloned());
            }
        }
    }

    /// Ends a function call: its `local` variables give way to what they hid.
    fn pop_frame(&mut self) {
        for (name, hidden) in self.frames.pop().unwrap_or_default() {
            match hidden {
                Some(var) => self.vars.insert(name, var),
                None => self.vars.remove(&name),
            };
        }
    }

    /// Whether `other` can be joined into this path (see [`widen`]).
    fn same_shape(&self, other: &State) -> bool {
        self.positional == other.positional
            && self.arg0 == other.arg0
            && self.functions == other.functions
            && self.pending.len() == other.pending.len()
            && self.pending.iter().zip(&other.pending).all(|(a, b)| {
                a.at == b.at && a.argv.len() == b.argv.len() && a.argv.first() == b.argv.first()
            })
            && self.waited == other.waited
            && self.flow == other.flow
            && self.frames.len() == other.frames.len()
            && self
                .frames
                .iter()
                .zip(&other.frames)
                .all(|(a, b)| a.keys().eq(b.keys()))
    }

    fn join(&mut self, other: &State) {
        join_map(&mut self.vars, &other.vars, &Var::Unknown);
        for (a, b) in self.frames.iter_mut().zip(&other.frames) {
            join_map(a, b, &Some(Var::Unknown));
        }
        for (a, b) in self.pending.iter_mut().zip(&other.pending) {
            for (x, y) in a.argv.iter_mut().zip(&b.argv) {
                if x != y {
                    x.value = None;
                    x.split |= y.split;
                }
            }
            join_map(&mut a.env.vars, &b.env.vars, &Var::Unknown);
            if a.env.cwd != b.env.cwd {
                a.env.cwd = None;
            }
        }
        self.exported.extend(other.exported.iter().cloned());
        if self.cwd != other.cwd {
            self.cwd = None;
        }
        if self.status != other.status {
            self.status = None;
        }
    }

    /// Whether an unknown number of words precedes positional parameter `n` (1-based).
    fn positional_uncertain(&self, n: usize) -> bool {
        self.positional
            .iter()
            .take(n.saturating_sub(1))
            .any(|f| f.split)
    }
}

// ---------------------------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------------------------

/// A program being started.
struct Call<'a> {
    at: &'a Loc,
    op: &'a str,
    argv: &'a [Field],
    env: &'a Env,
    depth: usize,
}

/// The shell a script runs in.
struct ShellCx {
    /// Its terminal path, when found.
    program: Option<String>,
    /// An `sh -c` string that is a single command: the shell execs it.
    exec_single: bool,
}

#[derive(Clone, Copy)]
struct Cx<'a> {
    src: &'a Src,
    shell: &'a ShellCx,
    depth: usize,
    /// Evaluating an `if`/`while` condition: its commands are not what the script ends in.
    cond: bool,
}

/// A file's first bytes.
enum Header {
    Script {
        interpreter: String,
        arg: Option<String>,
    },
    Elf,
    Other,
}

struct Program {
    /// The path as executed (found on `PATH`, or given).
    invoked: String,
    /// With all symlinks resolved.
    real: String,
    header: Option<Header>,
}

#[derive(Clone, Copy)]
enum Kind {
    Terminal,
    Shell,
    Wrapper(Wrapper),
    Interpreter(&'static Lang),
    RunParts,
}

#[derive(Clone, Copy)]
enum Wrapper {
    Env,
    /// `tini`, `dumb-init`, `catatonit`: stay as PID 1, the command runs as their child.
    Init {
        value_flags: &'static [&'static str],
    },
    /// `gosu USER cmd`, `su-exec USER cmd`, `s6-setuidgid USER cmd`.
    SwitchUser,
    Nohup,
}

/// How an interpreter's command line names what it runs.
struct Lang {
    /// Flags followed by a value that is not what runs.
    value_flags: &'static [&'static str],
    /// Flags whose value is code (`python -c`): nothing on disk to record.
    code_flags: &'static [&'static str],
    /// Flags followed by the file that runs (`java -jar`).
    file_flags: &'static [&'static str],
    /// Flags followed by a module that runs (`python -m`, `java -m`; a python module is
    /// shown as `-m name`, so it is not mistaken for a file).
    module_flags: &'static [&'static str],
    /// Whether `-m`/`-c` may have their value attached (`-mhttp.server`).
    attached: bool,
    /// Whether the first operand is a file (a script) rather than a class name.
    operand_is_file: bool,
}

const PYTHON: Lang = Lang {
    value_flags: &["-W", "-X", "-Q"],
    code_flags: &["-c"],
    file_flags: &[],
    module_flags: &["-m"],
    attached: true,
    operand_is_file: true,
};

const NODE: Lang = Lang {
    value_flags: &[
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "-C",
        "--conditions",
    ],
    code_flags: &["-e", "--eval", "-p", "--print"],
    file_flags: &[],
    module_flags: &[],
    attached: false,
    operand_is_file: true,
};

const JAVA: Lang = Lang {
    value_flags: &[
        "-cp",
        "-classpath",
        "--class-path",
        "-p",
        "--module-path",
        "--add-modules",
        "--add-opens",
        "--add-exports",
        "--add-reads",
        "--patch-module",
        "--limit-modules",
        "--upgrade-module-path",
    ],
    code_flags: &[],
    file_flags: &["-jar"],
    module_flags: &["-m", "--module"],
    attached: false,
    operand_is_file: false,
};

/// ruby, perl, php.
const SCRIPTING: Lang = Lang {
    value_flags: &["-I", "-r", "-d", "-c"],
    code_flags: &["-e", "-E"],
    file_flags: &["-f"],
    module_flags: &[],
    attached: false,
    operand_is_file: true,
};

/// `base` or `base` followed by a version (`python3`, `python3.11`, `php8.2`).
fn versioned(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

fn classify(name: &str) -> Kind {
    match name {
        "sh" | "bash" | "dash" | "ash" | "ksh" | "mksh" | "zsh" => Kind::Shell,
        "env" => Kind::Wrapper(Wrapper::Env),
        "tini" | "tini-static" => Kind::Wrapper(Wrapper::Init {
            value_flags: &["-p", "-e"],
        }),
        "dumb-init" => Kind::Wrapper(Wrapper::Init {
            value_flags: &["-r", "--rewrite"],
        }),
        "catatonit" => Kind::Wrapper(Wrapper::Init { value_flags: &[] }),
        "gosu" | "su-exec" | "s6-setuidgid" => Kind::Wrapper(Wrapper::SwitchUser),
        "nohup" => Kind::Wrapper(Wrapper::Nohup),
        "run-parts" => Kind::RunParts,
        "node" | "nodejs" => Kind::Interpreter(&NODE),
        "java" => Kind::Interpreter(&JAVA),
        _ if versioned(name, "python") => Kind::Interpreter(&PYTHON),
        _ if ["ruby", "perl", "php"].iter().any(|b| versioned(name, b)) => {
            Kind::Interpreter(&SCRIPTING)
        }
        _ => Kind::Terminal,
    }
}

/// What an interpreter runs, as its arguments say.
enum Target {
    File(String),
    /// A class (java) or a jar's module.
    Name(String),
    /// `python -m module`.
    Module(String),
    Unknown(String),
}

fn interpreter_target(lang: &Lang, args: &[Field]) -> Option<Target> {
    let operand = |a: &Field, file: bool| match &a.value {
        Some(v) if file => Target::File(v.clone()),
        Some(v) => Target::Name(v.clone()),
        None => Target::Unknown(a.text.clone()),
    };
    let module = |a: &Field| match &a.value {
        Some(v) if lang.operand_is_file => Target::Module(v.clone()),
        Some(v) => Target::Name(v.clone()),
        None => Target::Unknown(a.text.clone()),
    };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let Some(v) = arg.value.as_deref() else {
            if arg.split {
                // `$JAVA_OPTS`, `$NODE_OPTIONS`: options, most likely.
                i += 1;
                continue;
            }
            return Some(operand(arg, lang.operand_is_file));
        };
        let next = args.get(i + 1);
        if v == "--" {
            return next.map(|a| operand(a, lang.operand_is_file));
        }
        if lang.code_flags.contains(&v) {
            return None;
        }
        if lang.file_flags.contains(&v) {
            return next.map(|a| operand(a, true));
        }
        if lang.module_flags.contains(&v) {
            return next.map(module);
        }
        if lang.value_flags.contains(&v) {
            i += 2;
            continue;
        }
        if lang.attached && v.len() > 2 {
            if lang.code_flags.iter().any(|f| v.starts_with(f)) {
                return None;
            }
            if let Some(m) = lang.module_flags.iter().find_map(|f| v.strip_prefix(f)) {
                return Some(Target::Module(m.to_string()));
            }
        }
        if v.starts_with('-') {
            i += 1;
            continue;
        }
        return Some(operand(arg, lang.operand_is_file));
    }
    None
}

/// Splits `env -S` text into words (quotes and backslashes; no expansion).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut present = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if present {
                    words.push(std::mem::take(&mut cur));
                    present = false;
                }
            }
            '\'' => {
                present = true;
                cur.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                present = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        _ => cur.push(c),
                    }
                }
            }
            '\\' => {
                present = true;
                cur.extend(chars.next());
            }
            _ => {
                present = true;
                cur.push(c);
            }
        }
    }
    if present {
        words.push(cur);
    }
    words
}

/// Shell builtins: never programs the container runs.
const BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "[[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "cd",
    "command",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

struct Tracer {
    fs: Rootfs,
    max_depth: usize,
    out: EntryTrace,
    seen: HashSet<TraceStep>,
    /// Parsed scripts by resolved path (`None`: could not be read or parsed).
    scripts: HashMap<String, Option<Rc<Script>>>,
    /// Function definitions met so far: where they were read from, and their body.
    functions: Vec<(Src, Rc<Command>)>,
    /// Scripts being traced, with their arguments: a script exec'ing itself (with the same
    /// arguments) is a cycle.
    active: Vec<(String, Vec<Field>)>,
    /// Work units left of [`TRACE_WORK_UNITS`].
    budget: usize,
    /// When the trace stops, spent or not ([`TRACE_WALL_TIME`]).
    deadline: Instant,
    /// Calls to `spend` (the clock is read every few).
    spends: u32,
    /// The work or the time budget is spent: the trace is truncated, and winds down.
    out_of_budget: bool,
    /// Above zero while following a command a script runs and then moves on from (`run-parts`
    /// hooks): what it ends in is not what the container ends in — but what it starts in the
    /// background is.
    transient: usize,
}

impl Tracer {
    fn new(root: &Path, max_depth: usize) -> Self {
        Tracer {
            fs: Rootfs::new(root),
            max_depth,
            out: EntryTrace::default(),
            seen: HashSet::new(),
            scripts: HashMap::new(),
            functions: Vec::new(),
            active: Vec::new(),
            budget: TRACE_WORK_UNITS,
            deadline: Instant::now() + TRACE_WALL_TIME,
            spends: 0,
            out_of_budget: false,
            transient: 0,
        }
    }

    fn step(&mut self, at: &Loc, op: &str, target: &str) {
        let step = TraceStep {
            file: at.file.to_string(),
            line: at.line,
            op: op.to_string(),
            target: target.to_string(),
        };
        if self.seen.contains(&step) {
            return;
        }
        if self.out.steps.len() >= MAX_STEPS {
            self.truncate(format!(
                "more than {MAX_STEPS} steps: the others are not listed"
            ));
            return;
        }
        self.seen.insert(step.clone());
        self.out.steps.push(step);
    }

    fn warn(&mut self, msg: String) {
        if self.out.warnings.len() < MAX_WARNINGS && !self.out.warnings.contains(&msg) {
            self.out.warnings.push(msg);
        }
    }

    fn truncate(&mut self, why: String) {
        self.out.truncated = true;
        self.warn(why);
    }

    fn add_terminal(&mut self, path: &str) {
        if self.transient == 0 && !self.out.terminals.iter().any(|t| t == path) {
            self.out.terminals.push(path.to_string());
        }
    }

    /// Takes `units` of work; false (and truncated) when the budget or the time is spent.
    fn spend(&mut self, units: usize) -> bool {
        if self.out_of_budget {
            return false;
        }
        self.spends = self.spends.wrapping_add(1);
        if self.spends.is_multiple_of(64) && Instant::now() > self.deadline {
            self.out_of_budget = true;
            self.truncate(format!(
                "the time budget ({} s) is spent: the trace is incomplete",
                TRACE_WALL_TIME.as_secs()
            ));
            return false;
        }
        if units > self.budget {
            self.out_of_budget = true;
            self.truncate(format!(
                "the work budget ({TRACE_WORK_UNITS} units: commands, programs and words \
                 expanded) is spent: the trace is incomplete"
            ));
            return false;
        }
        self.budget -= units;
        true
    }

    /// Whether the budget is spent (the trace is winding down).
    fn spent(&self) -> bool {
        self.out_of_budget
    }

    /// Charges matching `text` against `pattern` (up to text × pattern steps).
    fn spend_glob(&mut self, text: &str, pattern: &str) -> bool {
        self.spend(1 + text.len().saturating_mul(pattern.len()) / GLOB_STEPS_PER_UNIT)
    }

    fn too_deep(&mut self, at: &Loc, depth: usize) -> bool {
        if depth > self.max_depth {
            self.truncate(format!(
                "{at}: not followed: maximum depth {} reached",
                self.max_depth
            ));
            return true;
        }
        self.out.depth = self.out.depth.max(depth);
        false
    }

    /// Dedupes paths and caps how many are followed.
    fn merge(&mut self, states: Vec<State>) -> Vec<State> {
        if states.len() < 2 {
            return states;
        }
        let mut out: Vec<State> = Vec::with_capacity(states.len());
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut hashed = 0;
        for s in states {
            let mut hasher = Counting {
                inner: std::collections::hash_map::DefaultHasher::new(),
                bytes: 0,
            };
            s.hash(&mut hasher);
            hashed += hasher.bytes;
            let same = by_hash.entry(hasher.finish()).or_default();
            if !same.iter().any(|&i| out[i] == s) {
                same.push(out.len());
                out.push(s);
            }
        }
        // Paths hold what scripts put in them: comparing them is charged as work.
        self.spend(hashed / HASH_BYTES_PER_UNIT);
        if out.len() > MAX_STATES {
            out = widen(out);
        }
        if out.len() > MAX_STATES {
            self.truncate(format!(
                "more than {MAX_STATES} paths through the scripts at once: the others are not followed"
            ));
            out.truncate(MAX_STATES);
        }
        out
    }

    /// Records a `branch` step before the steps its body led to — only if it led to any, so
    /// the `if`s of helper functions that lead nowhere do not crowd the trace.
    fn branch_step(&mut self, mark: usize, at: &Loc, what: &str) {
        if self.out.steps.len() == mark {
            return;
        }
        let step = TraceStep {
            file: at.file.to_string(),
            line: at.line,
            op: "branch".to_string(),
            target: what.to_string(),
        };
        if self.seen.insert(step.clone()) {
            self.out.steps.insert(mark, step);
        } else if let Some(i) = self.out.steps[mark..].iter().position(|s| *s == step) {
            // Already recorded deeper down (a script re-run by `gosu` passes the same
            // branch): it belongs here, before what it led to.
            let step = self.out.steps.remove(mark + i);
            self.out.steps.insert(mark, step);
        }
    }

    // --- programs ----------------------------------------------------------------------------

    /// Follows a program started with `call.argv`.
    fn exec_program(&mut self, call: &Call) {
        if !self.spend(1) || self.too_deep(call.at, call.depth) {
            return;
        }
        let Some(first) = call.argv.first() else {
            return;
        };
        let Some(name) = first.value.as_deref() else {
            self.step(call.at, call.op, &shown(&first.text));
            self.warn(format!(
                "{}: `{}`: the command is not known before the container runs",
                call.at,
                shown(&first.text)
            ));
            return;
        };
        if name.is_empty() || name.starts_with('-') {
            self.warn(format!(
                "{}: an empty word or an option where a command was expected",
                call.at
            ));
            return;
        }
        self.step(call.at, call.op, &shown(name));
        let program = self.locate(call.at, name, call.env);

        if let Some(p) = &program {
            match &p.header {
                Some(Header::Script { interpreter, arg }) => {
                    if self.is_active(&p.real, &call.argv[1..]) {
                        self.step(call.at, "cycle", &p.invoked);
                        return;
                    }
                    // The kernel runs `interpreter [arg] script args...`.
                    let mut argv = vec![Field::known(interpreter.as_str())];
                    argv.extend(arg.as_deref().map(Field::known));
                    argv.push(Field::known(p.invoked.as_str()));
                    argv.extend(call.argv[1..].iter().cloned());
                    let at = Loc {
                        file: Rc::from(p.invoked.as_str()),
                        line: 1,
                    };
                    self.exec_program(&Call {
                        at: &at,
                        op: "shebang",
                        argv: &argv,
                        env: call.env,
                        depth: call.depth + 1,
                    });
                    return;
                }
                Some(Header::Other) => {
                    self.warn(format!("{}: neither an ELF binary nor a #! script", p.real))
                }
                Some(Header::Elf) | None => {}
            }
        }

        let invoked = program.as_ref().map_or(name, |p| p.invoked.as_str());
        let invoked_name = basename(invoked);
        match &program {
            Some(p) if is_busybox(&p.real) && invoked_name == "busybox" => {
                // `busybox APPLET args...`
                let Some(applet) = call.argv.get(1).and_then(|a| a.value.clone()) else {
                    self.add_terminal(&p.real);
                    return;
                };
                self.step(call.at, "applet", &shown(&applet));
                let call = Call {
                    argv: &call.argv[1..],
                    ..*call
                };
                self.run(classify(&applet), &call, Some(p.real.clone()));
            }
            Some(p) if is_busybox(&p.real) => {
                // `/bin/sleep -> busybox` runs the sleep applet: sleep is the program.
                self.run(classify(invoked_name), call, Some(p.invoked.clone()));
            }
            _ => {
                let real = program.as_ref().map(|p| p.real.clone());
                let kind = match classify(invoked_name) {
                    Kind::Terminal => classify(basename(real.as_deref().unwrap_or(invoked))),
                    kind => kind,
                };
                self.run(kind, call, real);
            }
        }
    }

    fn run(&mut self, kind: Kind, call: &Call, program: Option<String>) {
        match kind {
            Kind::Terminal => {
                if let Some(p) = program {
                    self.add_terminal(&p);
                }
            }
            Kind::Shell => self.shell(call, program),
            Kind::Wrapper(w) => self.wrapper(w, call, program),
            Kind::Interpreter(lang) => self.interpreter(lang, call, program),
            Kind::RunParts => self.run_parts(call, program),
        }
    }

    fn is_active(&self, real: &str, args: &[Field]) -> bool {
        self.active.iter().any(|(f, a)| f == real && a == args)
    }

    /// Finds the file a command word names, recording `path-lookup`/`symlink` steps.
    fn locate(&mut self, at: &Loc, name: &str, env: &Env) -> Option<Program> {
        if !name.contains('/') {
            let path = env.path().to_string();
            let found = path
                .split(':')
                .filter(|dir| dir.starts_with('/'))
                .find_map(|dir| {
                    let candidate = join(dir, name);
                    let resolved = self.fs.resolve(&candidate).ok()?;
                    resolved
                        .meta
                        .is_executable()
                        .then_some((candidate, resolved))
                });
            let Some((invoked, resolved)) = found else {
                self.warn(format!("{at}: `{}` not found on PATH {path}", shown(name)));
                return None;
            };
            self.step(at, "path-lookup", &invoked);
            return Some(self.program(at, invoked, resolved));
        }
        let Some(invoked) = absolute(name, env.cwd.as_deref()) else {
            self.warn(format!(
                "{at}: `{}`: a relative path, and the working directory is not known",
                shown(name)
            ));
            return None;
        };
        match self.fs.resolve(&invoked) {
            Ok(r) if r.meta.is_file() => Some(self.program(at, invoked, r)),
            Ok(_) => {
                self.warn(format!("{at}: {invoked}: not a regular file"));
                None
            }
            Err(e) => {
                self.warn(format!("{at}: {invoked}: {e}"));
                None
            }
        }
    }

    fn program(&mut self, at: &Loc, invoked: String, resolved: Resolved) -> Program {
        if resolved.path != invoked {
            self.step(at, "symlink", &resolved.path);
        }
        let header = match self.fs.read(&resolved, HEADER_BYTES) {
            Ok(head) => Some(header(&head)),
            Err(e) => {
                self.warn(format!("{}: cannot read: {e}", resolved.path));
                None
            }
        };
        Program {
            invoked,
            real: resolved.path,
            header,
        }
    }

    /// A shell: `sh -c STRING [arg0 args...]`, `sh SCRIPT args...`, or an interactive shell.
    fn shell(&mut self, call: &Call, program: Option<String>) {
        let argv = call.argv;
        let shell_name = argv[0].text.clone();
        let mut i = 1;
        let mut command_mode = false;
        while let Some(v) = argv.get(i).and_then(|a| a.value.as_deref()) {
            match v {
                "--" | "-" => {
                    i += 1;
                    break;
                }
                "--rcfile" | "--init-file" => i += 2,
                _ if v.starts_with("--") => i += 1,
                _ if v.len() > 1 && (v.starts_with('-') || v.starts_with('+')) => {
                    command_mode |= v.starts_with('-') && v.contains('c');
                    // `-o name` / `-O name`, also in a cluster (`bash -eo pipefail`).
                    i += if v[1..].contains(['o', 'O']) { 2 } else { 1 };
                }
                _ => break,
            }
        }
        if command_mode {
            let Some(string) = argv.get(i) else {
                self.warn(format!("{}: `-c` without a command string", call.at));
                return;
            };
            self.step(
                call.at,
                "shell-c",
                program.as_deref().unwrap_or(&shown(&shell_name)),
            );
            let Some(text) = &string.value else {
                self.warn(format!(
                    "{}: the `-c` command string is not known before the container runs",
                    call.at
                ));
                if let Some(p) = &program {
                    self.add_terminal(p);
                }
                return;
            };
            let script = match parse(text) {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    self.warn(format!(
                        "{}: the `-c` command string cannot be parsed ({e}): not followed",
                        call.at
                    ));
                    return;
                }
            };
            let src = Src {
                file: call.at.file.clone(),
                offset: call.at.line.saturating_sub(1),
                is_file: false,
            };
            let arg0 = argv
                .get(i + 1)
                .map_or(shell_name, |a| a.value.clone().unwrap_or_default());
            let positional = argv.get(i + 2..).unwrap_or_default().to_vec();
            let shell = ShellCx {
                program,
                exec_single: script.is_single_command(),
            };
            let state = State::new(call.env, arg0, positional);
            self.run_script(&script, &src, &shell, state, call.depth);
            return;
        }
        let Some(script_arg) = argv.get(i) else {
            // Interactive, or reading commands from stdin: the shell is what runs.
            if let Some(p) = &program {
                self.add_terminal(p);
            }
            return;
        };
        let Some(name) = script_arg.value.as_deref() else {
            self.warn(format!(
                "{}: the script `{}` is not known before the container runs",
                call.at, script_arg.text
            ));
            return;
        };
        let Some((invoked, real)) = self.find_script(call.at, name, call.env) else {
            return;
        };
        self.step(call.at, "interpreter", &invoked);
        let args = &argv[i + 1..];
        if self.is_active(&real, args) {
            self.step(call.at, "cycle", &invoked);
            return;
        }
        let Some(script) = self.load_script(&real) else {
            return;
        };
        let src = Src {
            file: Rc::from(invoked.as_str()),
            offset: 0,
            is_file: true,
        };
        let shell = ShellCx {
            program,
            exec_single: false,
        };
        let state = State::new(call.env, invoked, args.to_vec());
        self.active.push((real, args.to_vec()));
        self.run_script(&script, &src, &shell, state, call.depth);
        self.active.pop();
    }

    /// A script given to a shell or to `.`: a path, or a name looked up on `PATH` (then in the
    /// working directory). Returns the path as given and the resolved one.
    fn find_script(&mut self, at: &Loc, name: &str, env: &Env) -> Option<(String, String)> {
        let candidates: Vec<String> = if name.contains('/') {
            absolute(name, env.cwd.as_deref()).into_iter().collect()
        } else {
            env.path()
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| join(d, name))
                .chain(env.cwd.as_deref().map(|cwd| join(cwd, name)))
                .collect()
        };
        for candidate in candidates {
            if let Ok(r) = self.fs.resolve(&candidate) {
                if r.meta.is_file() {
                    return Some((candidate, r.path));
                }
            }
        }
        self.warn(format!("{at}: script `{}` not found", shown(name)));
        None
    }

    fn load_script(&mut self, real: &str) -> Option<Rc<Script>> {
        if let Some(script) = self.scripts.get(real) {
            return script.clone();
        }
        let script = self.read_script(real).map(Rc::new);
        self.scripts.insert(real.to_string(), script.clone());
        script
    }

    fn read_script(&mut self, real: &str) -> Option<Script> {
        let data = match self
            .fs
            .resolve(real)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                // Never open a FIFO or a device: reading could block or never end.
                if !r.meta.is_file() {
                    return Err("not a regular file".to_string());
                }
                self.fs
                    .read(&r, MAX_SCRIPT_BYTES + 1)
                    .map_err(|e| e.to_string())
            }) {
            Ok(data) => data,
            Err(e) => {
                self.warn(format!("{real}: cannot read: {e}"));
                return None;
            }
        };
        if data.len() as u64 > MAX_SCRIPT_BYTES {
            self.warn(format!(
                "{real}: larger than {MAX_SCRIPT_BYTES} bytes: not read"
            ));
            return None;
        }
        match parse(&String::from_utf8_lossy(&data)) {
            Ok(script) => Some(script),
            Err(e) => {
                self.warn(format!("{real}: cannot parse ({e}): not followed"));
                None
            }
        }
    }

    fn run_script(
        &mut self,
        script: &Script,
        src: &Src,
        shell: &ShellCx,
        state: State,
        depth: usize,
    ) {
        let cx = Cx {
            src,
            shell,
            depth,
            cond: false,
        };
        let out = self.run_list(&script.body, &cx, vec![state]);
        for st in out {
            self.end_path(st, &cx, "command");
        }
    }

    /// A path through a script ended without `exec`: what it last ran in the foreground is
    /// what it ends in, and the shell stays, waiting for it (or for its background commands).
    fn end_path(&mut self, st: State, cx: &Cx, op: &str) {
        if st.pending.is_empty() && !st.waited {
            return;
        }
        let op = if cx.shell.exec_single { "exec" } else { op };
        for p in &st.pending {
            self.exec_program(&Call {
                at: &p.at,
                op,
                argv: &p.argv,
                env: &p.env,
                depth: cx.depth + 1,
            });
        }
        if !cx.shell.exec_single {
            if let Some(shell) = &cx.shell.program {
                self.add_terminal(shell);
            }
        }
    }

    fn wrapper(&mut self, wrapper: Wrapper, call: &Call, program: Option<String>) {
        let argv = call.argv;
        let mut env = call.env.clone();
        let child: Vec<Field> = match wrapper {
            Wrapper::Env => env_command(&argv[1..], &mut env),
            Wrapper::Init { value_flags } => {
                if let Some(p) = &program {
                    self.add_terminal(p);
                }
                let mut i = 1;
                while let Some(v) = argv.get(i).and_then(|a| a.value.as_deref()) {
                    if v == "--" {
                        i += 1;
                        break;
                    }
                    if !v.starts_with('-') {
                        break;
                    }
                    i += if value_flags.contains(&v) { 2 } else { 1 };
                }
                argv.get(i..).unwrap_or_default().to_vec()
            }
            Wrapper::SwitchUser => argv.get(2..).unwrap_or_default().to_vec(),
            Wrapper::Nohup => {
                let skip = if argv.get(1).and_then(|a| a.value.as_deref()) == Some("--") {
                    2
                } else {
                    1
                };
                argv.get(skip..).unwrap_or_default().to_vec()
            }
        };
        if child.is_empty() {
            self.warn(format!(
                "{}: `{}` without a command",
                call.at,
                shown(&argv[0].text)
            ));
            return;
        }
        self.exec_program(&Call {
            at: call.at,
            op: "wrapper",
            argv: &child,
            env: &env,
            depth: call.depth + 1,
        });
    }

    fn interpreter(&mut self, lang: &Lang, call: &Call, program: Option<String>) {
        if let Some(p) = &program {
            self.add_terminal(p);
        }
        match interpreter_target(lang, &call.argv[1..]) {
            Some(Target::File(path)) => {
                let shown_path = match absolute(&path, call.env.cwd.as_deref()) {
                    Some(abs) => {
                        if self.fs.resolve(&abs).is_err() {
                            self.warn(format!("{}: {}: not found", call.at, shown(&abs)));
                        }
                        abs
                    }
                    // Relative to a working directory not known here: as written.
                    None => path,
                };
                self.step(call.at, "interpreter", &shown(&shown_path));
            }
            Some(Target::Name(name)) => self.step(call.at, "interpreter", &shown(&name)),
            Some(Target::Module(name)) => {
                self.step(call.at, "interpreter", &format!("-m {}", shown(&name)))
            }
            Some(Target::Unknown(text)) => {
                self.step(call.at, "interpreter", &shown(&text));
                self.warn(format!(
                    "{}: what `{}` runs (`{}`) is not known before the container runs",
                    call.at,
                    shown(&call.argv[0].text),
                    shown(&text)
                ));
            }
            None => {}
        }
    }

    fn run_parts(&mut self, call: &Call, program: Option<String>) {
        if let Some(p) = &program {
            self.add_terminal(p);
        }
        let args = &call.argv[1..];
        let mut i = 0;
        let mut extra = Vec::new();
        let mut regex = false;
        while let Some(arg) = args.get(i) {
            let Some(v) = arg.value.as_deref() else {
                break;
            };
            match v {
                "--" => {
                    i += 1;
                    break;
                }
                // These only print what would run.
                "--test" | "--list" => return,
                "-u" | "--umask" => i += 2,
                "-a" | "--arg" => {
                    extra.extend(args.get(i + 1).cloned());
                    i += 2;
                }
                _ if v.starts_with("--arg=") => {
                    extra.push(Field::known(&v["--arg=".len()..]));
                    i += 1;
                }
                _ if v.starts_with("--regex=") => {
                    regex = true;
                    i += 1;
                }
                _ if v.starts_with('-') => i += 1,
                _ => break,
            }
        }
        let Some(dir_arg) = args.get(i) else {
            self.warn(format!("{}: run-parts without a directory", call.at));
            return;
        };
        let Some(dir) = dir_arg
            .value
            .as_deref()
            .and_then(|d| absolute(d, call.env.cwd.as_deref()))
        else {
            self.warn(format!(
                "{}: the run-parts directory `{}` is not known before the container runs",
                call.at,
                shown(&dir_arg.text)
            ));
            return;
        };
        if regex {
            self.warn(format!(
                "{}: run-parts --regex is not evaluated: every executable in {dir} is followed",
                call.at
            ));
        }
        let mut names = match self.fs.list(&dir, MAX_DIR_ENTRIES) {
            Ok((names, more)) => {
                if more {
                    self.truncate(format!(
                        "{}: {dir}: more than {MAX_DIR_ENTRIES} entries: the others are not followed",
                        call.at
                    ));
                }
                names
            }
            Err(e) => {
                self.warn(format!("{}: {dir}: {e}", call.at));
                return;
            }
        };
        // run-parts' default (Debian, busybox): names of letters, digits, `_` and `-` only,
        // so `x.sh`, `x.dpkg-old` and dotfiles are skipped; in C-locale order.
        names.retain(|n| {
            regex
                || n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        });
        names.sort();
        if names.len() > MAX_RUN_PARTS {
            self.truncate(format!(
                "{}: {dir}: more than {MAX_RUN_PARTS} files: the others are not followed",
                call.at
            ));
            names.truncate(MAX_RUN_PARTS);
        }
        for name in names {
            let path = join(&dir, &name);
            // run-parts skips what it cannot execute.
            if !self.fs.resolve(&path).is_ok_and(|r| r.meta.is_executable()) {
                continue;
            }
            let mut argv = vec![Field::known(path)];
            argv.extend(extra.iter().cloned());
            self.exec_program(&Call {
                at: call.at,
                op: "run-parts",
                argv: &argv,
                env: call.env,
                depth: call.depth + 1,
            });
        }
    }

    // --- the shell language ------------------------------------------------------------------

    fn run_list(&mut self, list: &[Item], cx: &Cx, mut states: Vec<State>) -> Vec<State> {
        for item in list {
            let (active, mut out): (Vec<State>, Vec<State>) =
                states.into_iter().partition(|s| s.flow == Flow::Normal);
            if active.is_empty() {
                return out;
            }
            if item.background {
                out.extend(self.run_background(&item.and_or, cx, active));
            } else {
                out.extend(self.run_and_or(&item.and_or, cx, active));
            }
            states = self.merge(out);
        }
        states
    }

    fn run_and_or(&mut self, and_or: &AndOr, cx: &Cx, states: Vec<State>) -> Vec<State> {
        let mut states = self.run_pipeline(&and_or.first, cx, states);
        for (and, pipeline) in &and_or.rest {
            let mut out = Vec::new();
            let mut run = Vec::new();
            for mut st in states {
                if st.flow != Flow::Normal {
                    out.push(st);
                    continue;
                }
                match st.status {
                    Some(s) if s == *and => run.push(st),
                    Some(_) => out.push(st),
                    None => {
                        // Either way: skipped (the status says why) or run.
                        let mut skipped = st.clone();
                        skipped.status = Some(!*and);
                        out.push(skipped);
                        st.status = Some(*and);
                        run.push(st);
                    }
                }
            }
            out.extend(self.run_pipeline(pipeline, cx, run));
            states = self.merge(out);
        }
        states
    }

    fn run_pipeline(&mut self, pipeline: &Pipeline, cx: &Cx, states: Vec<State>) -> Vec<State> {
        let mut out = match pipeline.commands.as_slice() {
            [command] => self.run_command(command, cx, states),
            commands => states
                .into_iter()
                .map(|mut st| {
                    // Each part runs in a subshell: nothing it sets is kept, and its programs
                    // all run until the pipeline ends.
                    let pending: Vec<Pending> = commands
                        .iter()
                        .filter_map(|c| match c {
                            Command::Simple(s) => self.external(s, cx, &mut st.clone()),
                            _ => None,
                        })
                        .collect();
                    if !cx.cond && !pending.is_empty() {
                        st.pending = pending;
                    }
                    st.status = None;
                    st
                })
                .collect(),
        };
        if pipeline.negated {
            for st in &mut out {
                st.status = st.status.map(|b| !b);
            }
        }
        out
    }

    /// `cmd &`: a simple command is followed as a program of its own; anything else runs in a
    /// subshell that ends like a script.
    fn run_background(&mut self, and_or: &AndOr, cx: &Cx, states: Vec<State>) -> Vec<State> {
        let simple = match (and_or.rest.as_slice(), and_or.first.commands.as_slice()) {
            ([], [Command::Simple(s)]) => Some(s),
            _ => None,
        };
        let shell = ShellCx {
            program: cx.shell.program.clone(),
            exec_single: false,
        };
        let sub = Cx {
            shell: &shell,
            cond: false,
            ..*cx
        };
        // What starts in the background outlives a hook that starts it.
        let transient = std::mem::take(&mut self.transient);
        let out = states
            .into_iter()
            .map(|mut st| {
                match simple {
                    Some(s) => {
                        if let Some(p) = self.external(s, cx, &mut st.clone()) {
                            self.exec_program(&Call {
                                at: &p.at,
                                op: "background",
                                argv: &p.argv,
                                env: &p.env,
                                depth: cx.depth + 1,
                            });
                        }
                    }
                    None => {
                        for end in self.run_and_or(and_or, &sub, vec![st.clone()]) {
                            self.end_path(end, &sub, "background");
                        }
                    }
                }
                st.status = Some(true);
                st
            })
            .collect();
        self.transient = transient;
        out
    }

    fn run_command(&mut self, command: &Command, cx: &Cx, states: Vec<State>) -> Vec<State> {
        match command {
            Command::Simple(s) => {
                let mut out = Vec::new();
                for st in states {
                    out.extend(self.run_simple(s, cx, st));
                }
                out
            }
            Command::If { arms, otherwise } => self.run_if(arms, otherwise.as_ref(), cx, states),
            Command::Case { word, arms } => self.run_case(word, arms, cx, states),
            Command::For { var, words, body } => {
                self.run_for(var, words.as_deref(), body, cx, states)
            }
            Command::While { until, cond, body } => self.run_while(*until, cond, body, cx, states),
            Command::Group(list) => self.run_list(list, cx, states),
            // A foreground subshell is not what the script ends in; nothing it sets is kept.
            Command::Subshell | Command::Arith => states
                .into_iter()
                .map(|mut st| {
                    st.status = None;
                    st
                })
                .collect(),
            Command::Function { name, body } => {
                let id = self.functions.len();
                self.functions.push((cx.src.clone(), body.clone()));
                states
                    .into_iter()
                    .map(|mut st| {
                        st.functions.insert(name.clone(), id);
                        st.status = Some(true);
                        st
                    })
                    .collect()
            }
        }
    }

    fn run_if(
        &mut self,
        arms: &[IfArm],
        otherwise: Option<&(u32, List)>,
        cx: &Cx,
        states: Vec<State>,
    ) -> Vec<State> {
        let mut out = Vec::new();
        let mut waiting = states;
        let mut undecided = false;
        let cond_cx = Cx { cond: true, ..*cx };
        for (k, arm) in arms.iter().enumerate() {
            if waiting.is_empty() {
                break;
            }
            let after = self.run_list(&arm.cond, &cond_cx, waiting);
            let mut take = Vec::new();
            waiting = Vec::new();
            let mut guessed = false;
            for st in after {
                if st.flow != Flow::Normal {
                    out.push(st);
                    continue;
                }
                match st.status {
                    Some(true) => take.push(st),
                    Some(false) => waiting.push(st),
                    None => {
                        guessed = true;
                        take.push(st.clone());
                        waiting.push(st);
                    }
                }
            }
            undecided |= guessed;
            let mark = self.out.steps.len();
            out.extend(self.run_list(&arm.body, cx, take));
            if guessed {
                let what = if k == 0 { "then" } else { "elif" };
                self.branch_step(mark, &cx.src.at(arm.line), what);
            }
        }
        match otherwise {
            Some((line, body)) if !waiting.is_empty() => {
                let mark = self.out.steps.len();
                out.extend(self.run_list(body, cx, waiting));
                if undecided {
                    self.branch_step(mark, &cx.src.at(*line), "else");
                }
            }
            _ => out.extend(waiting.into_iter().map(|mut st| {
                st.status = Some(true);
                st
            })),
        }
        self.merge(out)
    }

    fn run_case(
        &mut self,
        word: &Word,
        arms: &[CaseArm],
        cx: &Cx,
        states: Vec<State>,
    ) -> Vec<State> {
        let mut out = Vec::new();
        for mut st in states {
            let subject = self.string(word, &mut st, cx);
            let mut undecided = false;
            let mut matched = false;
            for arm in arms {
                let mut result = Some(false);
                for pattern in &arm.patterns {
                    let is_match = match (&subject.value, self.pattern(pattern, &mut st, cx)) {
                        (_, Some(p)) if p == "*" => Some(true),
                        (Some(s), Some(p)) if self.spend_glob(s, &p) => Some(glob_match(&p, s)),
                        _ => None,
                    };
                    match is_match {
                        Some(true) => {
                            result = Some(true);
                            break;
                        }
                        Some(false) => {}
                        None => result = None,
                    }
                }
                if result == Some(false) {
                    continue;
                }
                let mark = self.out.steps.len();
                out.extend(self.run_list(&arm.body, cx, vec![st.clone()]));
                if result.is_none() || undecided {
                    let patterns: Vec<&str> = arm.patterns.iter().map(|p| p.raw.as_str()).collect();
                    self.branch_step(mark, &cx.src.at(arm.line), &patterns.join("|"));
                }
                if result == Some(true) {
                    matched = true;
                    break;
                }
                undecided = true;
            }
            if !matched {
                st.status = Some(true);
                out.push(st);
            }
        }
        self.merge(out)
    }

    fn run_for(
        &mut self,
        var: &str,
        words: Option<&[Word]>,
        body: &[Item],
        cx: &Cx,
        states: Vec<State>,
    ) -> Vec<State> {
        let mut out = Vec::new();
        for mut st in states {
            let items: Vec<Field> = match words {
                Some(words) => {
                    let mut items = Vec::new();
                    for w in words {
                        if self.spent() {
                            break;
                        }
                        items.extend(self.fields(w, &mut st, cx));
                    }
                    items
                }
                None => st.positional.clone(),
            };
            if items.iter().all(|f| f.value.is_some()) && items.len() <= MAX_LOOP_ITEMS {
                // A known list: the body once per item.
                let mut running = vec![st];
                for item in &items {
                    for s in &mut running {
                        s.vars.insert(var.to_string(), item.var());
                    }
                    let after = self.run_list(body, cx, running);
                    running = Vec::new();
                    for mut s in after {
                        match s.flow {
                            Flow::Normal | Flow::Continue => {
                                s.flow = Flow::Normal;
                                running.push(s);
                            }
                            Flow::Break => {
                                s.flow = Flow::Normal;
                                out.push(s);
                            }
                            Flow::Return => out.push(s),
                        }
                    }
                    running = self.merge(running);
                }
                out.extend(running);
            } else {
                // Not known: no iteration, or the body once with the variable unknown.
                let mut once = st.clone();
                once.vars.insert(var.to_string(), Var::Unknown);
                st.status = Some(true);
                out.push(st);
                out.extend(end_loop(self.run_list(body, cx, vec![once])));
            }
        }
        self.merge(out)
    }

    fn run_while(
        &mut self,
        until: bool,
        cond: &[Item],
        body: &[Item],
        cx: &Cx,
        states: Vec<State>,
    ) -> Vec<State> {
        let cond_cx = Cx { cond: true, ..*cx };
        let states = states
            .into_iter()
            .map(|mut st| {
                st.status = None;
                st
            })
            .collect();
        let mut out = Vec::new();
        let mut enter = Vec::new();
        for mut st in self.run_list(cond, &cond_cx, states) {
            if st.flow != Flow::Normal {
                out.push(st);
                continue;
            }
            // The body once (a loop that runs for ever ends in what it runs), or not at all.
            match st.status.map(|s| s != until) {
                Some(true) => enter.push(st),
                Some(false) => {
                    st.status = Some(true);
                    out.push(st);
                }
                None => {
                    enter.push(st.clone());
                    st.status = Some(true);
                    out.push(st);
                }
            }
        }
        out.extend(end_loop(self.run_list(body, cx, enter)));
        self.merge(out)
    }

    fn run_simple(&mut self, s: &Simple, cx: &Cx, mut st: State) -> Vec<State> {
        if !self.spend(1) {
            return Vec::new();
        }
        let (assigns, argv) = self.expand_simple(s, cx, &mut st);
        let Some(first) = argv.first() else {
            // Only assignments (or redirections).
            let unknown = assigns.iter().any(|(_, f)| f.value.is_none());
            for (name, value) in assigns {
                st.vars.insert(name, value.var());
            }
            st.status = if unknown { None } else { Some(true) };
            return vec![st];
        };
        let at = cx.src.at(s.line);
        match first.value.clone() {
            Some(name) if st.functions.contains_key(&name) => {
                let id = st.functions[&name];
                self.call_function(id, &at, &argv, cx, st)
            }
            Some(name) if BUILTINS.contains(&name.as_str()) => {
                self.builtin(&name, s, &at, &assigns, &argv, cx, st)
            }
            _ => {
                if !cx.cond {
                    let pending = Pending {
                        at,
                        env: st.env(&assigns),
                        argv,
                    };
                    let hooks = pending.argv[0].value.as_deref().map(basename) == Some("run-parts");
                    if hooks {
                        // Hooks run along the way: followed now, for their steps and for what
                        // they start in the background.
                        self.transient += 1;
                        self.exec_program(&Call {
                            at: &pending.at,
                            op: "command",
                            argv: &pending.argv,
                            env: &pending.env,
                            depth: cx.depth + 1,
                        });
                        self.transient -= 1;
                    }
                    st.pending = vec![pending];
                }
                st.status = None;
                vec![st]
            }
        }
    }

    /// An external command (not a builtin or function) as it would be started.
    fn external(&mut self, s: &Simple, cx: &Cx, st: &mut State) -> Option<Pending> {
        let (assigns, argv) = self.expand_simple(s, cx, st);
        let name = argv.first()?.value.as_deref();
        if name.is_some_and(|n| st.functions.contains_key(n) || BUILTINS.contains(&n)) {
            return None;
        }
        Some(Pending {
            at: cx.src.at(s.line),
            env: st.env(&assigns),
            argv,
        })
    }

    fn expand_simple(
        &mut self,
        s: &Simple,
        cx: &Cx,
        st: &mut State,
    ) -> (Vec<(String, Field)>, Vec<Field>) {
        let mut assigns = Vec::new();
        for a in &s.assigns {
            let value = self.assigned(a, st, cx);
            assigns.push((a.name.clone(), value));
        }
        let mut argv = Vec::new();
        if s.words.first().and_then(Word::as_literal) == Some("[[") {
            // No field splitting or pathname expansion inside `[[ ]]`.
            for w in &s.words {
                argv.push(self.string(w, st, cx));
            }
        } else {
            for w in &s.words {
                argv.extend(self.fields(w, st, cx));
            }
        }
        (assigns, argv)
    }

    fn assigned(&mut self, a: &Assign, st: &mut State, cx: &Cx) -> Field {
        let value = self.string(&a.value, st, cx);
        if !a.append {
            return value;
        }
        match (st.vars.get(&a.name), &value.value) {
            (Some(Var::Set(old)), Some(new)) => Field::known(format!("{old}{new}")),
            (Some(Var::Unset), _) => value,
            _ => Field {
                value: None,
                ..value
            },
        }
    }

    fn call_function(
        &mut self,
        id: usize,
        at: &Loc,
        argv: &[Field],
        cx: &Cx,
        mut st: State,
    ) -> Vec<State> {
        if self.too_deep(at, cx.depth + 1) {
            st.status = None;
            return vec![st];
        }
        let (src, body) = self.functions[id].clone();
        let saved = std::mem::replace(&mut st.positional, argv[1..].to_vec());
        st.frames.push(BTreeMap::new());
        let sub = Cx {
            src: &src,
            depth: cx.depth + 1,
            ..*cx
        };
        self.run_command(&body, &sub, vec![st])
            .into_iter()
            .map(|mut s| {
                s.positional = saved.clone();
                s.pop_frame();
                if s.flow == Flow::Return {
                    s.flow = Flow::Normal;
                }
                s
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn builtin(
        &mut self,
        name: &str,
        s: &Simple,
        at: &Loc,
        assigns: &[(String, Field)],
        argv: &[Field],
        cx: &Cx,
        mut st: State,
    ) -> Vec<State> {
        let args = &argv[1..];
        let arg = |i: usize| args.get(i).and_then(|a| a.value.as_deref());
        match name {
            "exec" => {
                let mut i = 0;
                while let Some(v) = arg(i) {
                    match v {
                        "--" => {
                            i += 1;
                            break;
                        }
                        "-a" => i += 2,
                        "-c" | "-l" | "-cl" | "-lc" => i += 1,
                        _ => break,
                    }
                }
                let command = args.get(i..).unwrap_or_default();
                if command.is_empty() {
                    // Only redirections: the shell goes on.
                    st.status = Some(true);
                    return vec![st];
                }
                let env = st.env(assigns);
                self.exec_program(&Call {
                    at,
                    op: "exec",
                    argv: command,
                    env: &env,
                    depth: cx.depth + 1,
                });
                Vec::new()
            }
            "exit" => {
                // `exit 1` (a literal failure) is an error path: the container just fails.
                if !arg(0).is_some_and(|v| v.parse::<i64>().is_ok_and(|n| n != 0)) {
                    self.end_path(st, cx, "command");
                }
                Vec::new()
            }
            "return" | "break" | "continue" => {
                st.flow = match name {
                    "return" => Flow::Return,
                    "break" => Flow::Break,
                    _ => Flow::Continue,
                };
                if name == "return" {
                    st.status = match args.first() {
                        None => st.status,
                        Some(a) => a
                            .value
                            .as_deref()
                            .and_then(|v| v.parse::<i64>().ok())
                            .map(|n| n == 0),
                    };
                }
                vec![st]
            }
            "." | "source" => self.source(at, args, cx, st),
            "eval" => self.eval(at, args, cx, st),
            "set" => {
                let mut i = 0;
                while let Some(a) = args.get(i) {
                    match a.value.as_deref() {
                        Some("--" | "-") => {
                            st.positional = args[i + 1..].to_vec();
                            break;
                        }
                        // `-o name`, also in a cluster (`set -eo pipefail`).
                        Some(v) if v.len() > 1 && (v.starts_with('-') || v.starts_with('+')) => {
                            i += if v[1..].contains('o') { 2 } else { 1 };
                        }
                        _ => {
                            st.positional = args[i..].to_vec();
                            break;
                        }
                    }
                }
                st.status = Some(true);
                vec![st]
            }
            "shift" => {
                let n = match args.first() {
                    None => Some(1),
                    Some(a) => a.value.as_deref().and_then(|v| v.parse::<usize>().ok()),
                };
                match n {
                    Some(n) if !st.positional_uncertain(n + 1) && n <= st.positional.len() => {
                        st.positional.drain(..n);
                        st.status = Some(true);
                    }
                    _ => {
                        st.positional = vec![Field {
                            value: None,
                            text: "$@".to_string(),
                            split: true,
                        }];
                        st.status = None;
                    }
                }
                vec![st]
            }
            "export" | "readonly" | "local" | "declare" | "typeset" => {
                self.declare(name, s, cx, &mut st);
                vec![st]
            }
            "unset" => {
                let functions = arg(0) == Some("-f");
                for v in args.iter().filter_map(|a| a.value.as_deref()) {
                    if v.starts_with('-') {
                        continue;
                    }
                    if functions {
                        st.functions.remove(v);
                    } else {
                        st.vars.insert(v.to_string(), Var::Unset);
                    }
                }
                st.status = Some(true);
                vec![st]
            }
            "cd" => {
                st.cwd = match args.first().and_then(|a| a.value.as_deref()) {
                    Some(dir) if dir != "-" => absolute(dir, st.cwd.as_deref()),
                    _ => None,
                };
                st.status = None;
                vec![st]
            }
            "wait" => {
                // Waits for the background commands: those are what the script runs now.
                st.pending.clear();
                st.waited = true;
                st.status = None;
                vec![st]
            }
            "true" | ":" => {
                st.status = Some(true);
                vec![st]
            }
            "false" => {
                st.status = Some(false);
                vec![st]
            }
            "[" => {
                st.status = match args.split_last() {
                    Some((last, rest)) if last.value.as_deref() == Some("]") => {
                        test_command(rest, false)
                    }
                    _ => None,
                };
                vec![st]
            }
            "[[" => {
                // `==` matches patterns: charged like the other pattern matching.
                let text: String = args.iter().map(|a| a.text.as_str()).collect();
                st.status = match args.split_last() {
                    Some((_, rest)) if self.spend_glob(&text, &text) => test_command(rest, true),
                    _ => None,
                };
                vec![st]
            }
            "test" => {
                st.status = test_command(args, false);
                vec![st]
            }
            "command" => match arg(0) {
                Some(v) if !v.starts_with('-') => {
                    // `command prog args`: the program, never a function of that name.
                    if !cx.cond {
                        st.pending = vec![Pending {
                            at: at.clone(),
                            env: st.env(assigns),
                            argv: args.to_vec(),
                        }];
                    }
                    st.status = None;
                    vec![st]
                }
                _ => {
                    st.status = None;
                    vec![st]
                }
            },
            "read" | "getopts" | "mapfile" | "readarray" | "printf" => {
                // Whatever they assign is not known here.
                let mut value_next = false;
                for a in args {
                    let Some(v) = a.value.as_deref() else {
                        continue;
                    };
                    if value_next {
                        value_next = false;
                        if name == "printf" {
                            st.vars.insert(v.to_string(), Var::Unknown);
                        }
                        continue;
                    }
                    if v.starts_with('-') {
                        value_next = matches!(v, "-p" | "-d" | "-n" | "-N" | "-t" | "-u" | "-v");
                        continue;
                    }
                    if name != "printf" && is_name(v) {
                        st.vars.insert(v.to_string(), Var::Unknown);
                    }
                    if name == "printf" {
                        break;
                    }
                }
                st.status = if name == "printf" { Some(true) } else { None };
                vec![st]
            }
            "echo" | "pwd" => {
                st.status = Some(true);
                vec![st]
            }
            _ => {
                st.status = None;
                vec![st]
            }
        }
    }

    /// `export`/`readonly`/`local`/`declare`/`typeset`: their `NAME=value` words are
    /// assignments (read from the words, so `export X="$(cmd)"` still names `X`).
    fn declare(&mut self, kind: &str, s: &Simple, cx: &Cx, st: &mut State) {
        let mut export = kind == "export";
        // In a function, `local`, `declare` and `typeset` make function-local variables
        // (`declare -g`: global).
        let mut local = matches!(kind, "local" | "declare" | "typeset");
        for word in s.words.get(1..).unwrap_or_default() {
            if let Some(a) = word.assignment() {
                let value = self.assigned(&a, st, cx);
                if local {
                    st.make_local(&a.name);
                }
                st.vars.insert(a.name.clone(), value.var());
                if export {
                    st.exported.insert(a.name);
                }
                continue;
            }
            let Some(v) = self.string(word, st, cx).value else {
                continue;
            };
            if v.starts_with('-') || v.starts_with('+') {
                export |= v.starts_with('-') && v.contains('x');
                local &= !(v.starts_with('-') && v.contains('g'));
            } else if let Some((name, value)) = v.split_once('=').filter(|(n, _)| is_name(n)) {
                if local {
                    st.make_local(name);
                }
                st.vars
                    .insert(name.to_string(), Var::Set(value.to_string()));
                if export {
                    st.exported.insert(name.to_string());
                }
            } else if is_name(&v) {
                if export {
                    st.exported.insert(v);
                } else if local && !st.frames.is_empty() {
                    // `local x` in a function: a new, unset variable. (Elsewhere, declaring
                    // a name without a value leaves it as it is.)
                    st.make_local(&v);
                    st.vars.insert(v, Var::Unset);
                }
            }
        }
        st.status = Some(true);
    }

    fn source(&mut self, at: &Loc, args: &[Field], cx: &Cx, mut st: State) -> Vec<State> {
        st.status = None;
        let Some(file) = args.first() else {
            return vec![st];
        };
        let Some(name) = file.value.as_deref() else {
            self.warn(format!(
                "{at}: the sourced file `{}` is not known before the container runs",
                shown(&file.text)
            ));
            return vec![st];
        };
        let env = st.env(&[]);
        let Some((invoked, real)) = self.find_script(at, name, &env) else {
            return vec![st];
        };
        self.step(at, "source", &invoked);
        if self.too_deep(at, cx.depth + 1) {
            return vec![st];
        }
        let Some(script) = self.load_script(&real) else {
            return vec![st];
        };
        let src = Src {
            file: Rc::from(invoked.as_str()),
            offset: 0,
            is_file: true,
        };
        let sub = Cx {
            src: &src,
            depth: cx.depth + 1,
            ..*cx
        };
        let saved =
            (args.len() > 1).then(|| std::mem::replace(&mut st.positional, args[1..].to_vec()));
        self.run_list(&script.body, &sub, vec![st])
            .into_iter()
            .map(|mut s| {
                if let Some(p) = &saved {
                    s.positional = p.clone();
                }
                if s.flow == Flow::Return {
                    s.flow = Flow::Normal;
                }
                s
            })
            .collect()
    }

    fn eval(&mut self, at: &Loc, args: &[Field], cx: &Cx, mut st: State) -> Vec<State> {
        let Some(words) = args
            .iter()
            .map(|a| a.value.as_deref())
            .collect::<Option<Vec<_>>>()
        else {
            self.warn(format!(
                "{at}: `eval` of a string not known before the container runs"
            ));
            st.status = None;
            return vec![st];
        };
        let script = match parse(&words.join(" ")) {
            Ok(script) => script,
            Err(e) => {
                self.warn(format!("{at}: `eval` string cannot be parsed ({e})"));
                st.status = None;
                return vec![st];
            }
        };
        let src = Src {
            file: at.file.clone(),
            offset: at.line.saturating_sub(1),
            is_file: cx.src.is_file,
        };
        let sub = Cx { src: &src, ..*cx };
        self.run_list(&script.body, &sub, vec![st])
    }

    // --- expansion ---------------------------------------------------------------------------

    fn lookup(&self, name: &str, st: &State, cx: &Cx) -> Lookup {
        if let Ok(n) = name.parse::<usize>() {
            if n == 0 {
                return Lookup::Value(st.arg0.clone());
            }
            if st.positional_uncertain(n) {
                return Lookup::Unknown;
            }
            return match st.positional.get(n - 1) {
                Some(Field { value: Some(v), .. }) => Lookup::Value(v.clone()),
                Some(_) => Lookup::Unknown,
                None if st.positional.iter().any(|f| f.split) => Lookup::Unknown,
                None => Lookup::Unset,
            };
        }
        match name {
            "#" if !st.positional.iter().any(|f| f.split) => {
                Lookup::Value(st.positional.len().to_string())
            }
            "#" | "?" | "$" | "!" | "-" | "@" | "*" => Lookup::Unknown,
            "BASH_SOURCE" if cx.src.is_file && !st.vars.contains_key(name) => {
                Lookup::Value(cx.src.file.to_string())
            }
            _ => match st.vars.get(name) {
                Some(Var::Set(v)) => Lookup::Value(v.clone()),
                Some(Var::Unset) => Lookup::Unset,
                Some(Var::Unknown) => Lookup::Unknown,
                None => Lookup::Environment,
            },
        }
    }

    /// The value of a `$x`/`${x...}` (not `$@`/`$*`), `None` when not known. A variable the
    /// scripts never assigned is taken as unset by `${x:-default}` and friends: the default
    /// is what the image's authors expect (the environment may say otherwise).
    fn param_value(&mut self, param: &Param, st: &mut State, cx: &Cx) -> Option<String> {
        let lookup = self.lookup(&param.name, st, cx);
        let plain = |l: &Lookup| match l {
            Lookup::Value(v) => Some(v.clone()),
            Lookup::Unset => Some(String::new()),
            Lookup::Environment | Lookup::Unknown => None,
        };
        // Whether the word of `${x:-w}`/`${x:=w}`/`${x:+w}` applies: `Some(true)` when `x` is
        // unset (or empty, with `:`).
        let unset = |l: &Lookup, colon: bool| match l {
            Lookup::Value(v) => Some(colon && v.is_empty()),
            Lookup::Unset | Lookup::Environment => Some(true),
            Lookup::Unknown => None,
        };
        match &param.op {
            ParamOp::Plain => plain(&lookup),
            ParamOp::Length => plain(&lookup).map(|v| v.chars().count().to_string()),
            ParamOp::Default { colon, word } => match unset(&lookup, *colon)? {
                true => self.string(word, st, cx).value,
                false => plain(&lookup),
            },
            ParamOp::Assign { colon, word } => match unset(&lookup, *colon)? {
                true => {
                    let value = self.string(word, st, cx);
                    if is_name(&param.name) {
                        st.vars.insert(param.name.clone(), value.var());
                    }
                    value.value
                }
                false => plain(&lookup),
            },
            ParamOp::Alt { colon, word } => match unset(&lookup, *colon)? {
                true => Some(String::new()),
                false => self.string(word, st, cx).value,
            },
            // When unset, the shell stops with an error: that path is not followed further.
            ParamOp::Error { colon } => match unset(&lookup, *colon)? {
                true => None,
                false => plain(&lookup),
            },
            ParamOp::StripPrefix { longest, pattern } => {
                let value = plain(&lookup)?;
                let pattern = self.pattern(pattern, st, cx)?;
                self.spend_glob(&value, &pattern)
                    .then(|| strip(&value, &pattern, *longest, true))
            }
            ParamOp::StripSuffix { longest, pattern } => {
                let value = plain(&lookup)?;
                let pattern = self.pattern(pattern, st, cx)?;
                self.spend_glob(&value, &pattern)
                    .then(|| strip(&value, &pattern, *longest, false))
            }
            ParamOp::Substring { offset, length } => {
                let value: Vec<char> = plain(&lookup)?.chars().collect();
                let n = value.len() as i64;
                let offset: i64 = offset.parse().ok()?;
                let start = if offset < 0 {
                    n.saturating_add(offset).max(0)
                } else {
                    offset.min(n)
                };
                let end = match length {
                    None => n,
                    Some(l) => {
                        let l: i64 = l.parse().ok()?;
                        if l < 0 {
                            n.saturating_add(l).max(start)
                        } else {
                            start.saturating_add(l).min(n)
                        }
                    }
                };
                Some(value[start as usize..end as usize].iter().collect())
            }
            ParamOp::Unsupported => None,
        }
    }

    /// A word expanded into fields: parameters, `"$@"`, field splitting of unquoted
    /// expansions; pathname expansion is not known here, so an unquoted glob is unknown.
    /// Charged one work unit per word and one per field it yields: once the budget is
    /// spent, words expand to nothing (the trace is winding down, already truncated).
    fn fields(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Vec<Field> {
        if !self.spend(1) {
            return Vec::new();
        }
        let out = self.fields_of(word, st, cx);
        self.spend(out.len());
        out
    }

    fn fields_of(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Vec<Field> {
        let mut out = Vec::new();
        let mut cur = FieldBuf::default();
        for part in &word.parts {
            match part {
                Part::Lit { text, quoted } => {
                    if !quoted && has_glob(text) {
                        cur.push_unknown("", false);
                    }
                    cur.push(text);
                    cur.present |= *quoted;
                }
                Part::Opaque { text, quoted } => cur.push_unknown(text, *quoted),
                Part::Param { param, quoted }
                    if matches!(param.op, ParamOp::Plain)
                        && (param.name == "@" || param.name == "*") =>
                {
                    let items = st.positional.clone();
                    if *quoted && param.name == "@" {
                        // "$@": one field per parameter, the first and last joined to what
                        // is around them.
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(cur.take());
                            }
                            cur.push_field(item);
                        }
                    } else if *quoted {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                cur.push(" ");
                            }
                            cur.push_field(item);
                        }
                    } else {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 && cur.has_content() {
                                out.push(cur.take());
                            }
                            match &item.value {
                                Some(v) => cur.split_into(v, &mut out),
                                None => cur.push_field(item),
                            }
                        }
                    }
                }
                Part::Param { param, quoted } => match self.param_value(param, st, cx) {
                    Some(v) if *quoted => {
                        cur.push(&v);
                        cur.present = true;
                    }
                    Some(v) => cur.split_into(&v, &mut out),
                    None => cur.push_unknown(&param.raw, *quoted),
                },
            }
        }
        if cur.has_content() {
            out.push(cur.take());
        }
        out
    }

    /// A word expanded into one string (assignments, `case`, `[[ ]]`, `${x:-word}`).
    /// Charged one work unit; once the budget is spent, an unknown value.
    fn string(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Field {
        let mut cur = FieldBuf::default();
        if !self.spend(1) {
            cur.push_unknown("", true);
            return cur.take();
        }
        for part in &word.parts {
            match part {
                Part::Lit { text, .. } => cur.push(text),
                Part::Opaque { text, .. } => cur.push_unknown(text, true),
                Part::Param { param, .. }
                    if matches!(param.op, ParamOp::Plain)
                        && (param.name == "@" || param.name == "*") =>
                {
                    for (i, item) in st.positional.clone().iter().enumerate() {
                        if i > 0 {
                            cur.push(" ");
                        }
                        cur.push_field(item);
                    }
                }
                Part::Param { param, .. } => match self.param_value(param, st, cx) {
                    Some(v) => cur.push(&v),
                    None => cur.push_unknown(&param.raw, true),
                },
            }
        }
        let mut field = cur.take();
        field.split = false;
        field
    }

    /// A word as a pattern: quoted characters escaped so they match themselves.
    fn pattern(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Option<String> {
        let mut out = String::new();
        for part in &word.parts {
            match part {
                Part::Lit {
                    text,
                    quoted: false,
                } => out.push_str(text),
                Part::Lit { text, quoted: true } => out.push_str(&escape_glob(text)),
                Part::Opaque { .. } => return None,
                Part::Param { param, quoted } => {
                    let value = if param.name == "@" || param.name == "*" {
                        let values: Option<Vec<String>> =
                            st.positional.iter().map(|f| f.value.clone()).collect();
                        values?.join(" ")
                    } else {
                        self.param_value(param, st, cx)?
                    };
                    if *quoted {
                        out.push_str(&escape_glob(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        Some(out)
    }
}

/// A hasher that counts the bytes it is fed.
struct Counting<H> {
    inner: H,
    bytes: usize,
}

impl<H: Hasher> Hasher for Counting<H> {
    fn finish(&self) -> u64 {
        self.inner.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        self.inner.write(bytes);
    }
}

/// Joins paths that differ only in what variables hold (in the shell, in what pending
/// commands inherit, in their arguments after the first) and in the last status: what differs
/// becomes unknown. Keeps the number of paths down without losing the positional parameters,
/// commands and functions that decide the terminals.
fn widen(states: Vec<State>) -> Vec<State> {
    let mut out: Vec<State> = Vec::new();
    for s in states {
        match out.iter_mut().find(|o| o.same_shape(&s)) {
            Some(o) => o.join(&s),
            None => out.push(s),
        }
    }
    out
}

fn join_map<V: Clone + PartialEq>(
    a: &mut BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    unknown: &V,
) {
    let keys: BTreeSet<String> = a.keys().chain(b.keys()).cloned().collect();
    for key in keys {
        if a.get(&key) != b.get(&key) {
            a.insert(key, unknown.clone());
        }
    }
}

/// Loop bodies are done: `break`/`continue` end here, `return` goes on.
fn end_loop(states: Vec<State>) -> impl Iterator<Item = State> {
    states.into_iter().map(|mut s| {
        if matches!(s.flow, Flow::Break | Flow::Continue) {
            s.flow = Flow::Normal;
        }
        s
    })
}

fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "*?[]\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `${x#p}`, `${x##p}` (`prefix`) and `${x%p}`, `${x%%p}`.
fn strip(value: &str, pattern: &str, longest: bool, prefix: bool) -> String {
    let mut pattern = compile(pattern);
    let mut chars: Vec<char> = value.chars().collect();
    // A suffix is a prefix of the reversed text, for the reversed pattern.
    if !prefix {
        pattern.reverse();
        chars.reverse();
    }
    let matches = prefix_matches(&pattern, &chars);
    let mut lengths = (0..=chars.len()).filter(|&n| matches[n]);
    let cut = if longest {
        lengths.next_back()
    } else {
        lengths.next()
    };
    let Some(cut) = cut else {
        return value.to_string();
    };
    let mut kept: Vec<char> = chars.split_off(cut);
    if !prefix {
        kept.reverse();
    }
    kept.into_iter().collect()
}

/// What a file's first bytes say it is.
fn header(head: &[u8]) -> Header {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        // Linux passes everything after the interpreter as one argument.
        let (interpreter, arg) = match line.split_once([' ', '\t']) {
            Some((i, a)) => (i, Some(a.trim()).filter(|a| !a.is_empty())),
            None => (line, None),
        };
        if !interpreter.is_empty() {
            return Header::Script {
                interpreter: interpreter.to_string(),
                arg: arg.map(str::to_string),
            };
        }
    }
    if head.starts_with(b"\x7fELF") {
        Header::Elf
    } else {
        Header::Other
    }
}

/// `env [options] [NAME=value]... [command [args]]`: the command, with `env` changed as the
/// options and assignments say.
fn env_command(args: &[Field], env: &mut Env) -> Vec<Field> {
    let mut args = args.to_vec();
    let mut i = 0;
    while let Some(v) = args.get(i).and_then(|a| a.value.clone()) {
        let next = args.get(i + 1).and_then(|a| a.value.clone());
        match v.as_str() {
            "--" => {
                i += 1;
                break;
            }
            "-" | "-i" | "--ignore-environment" => {
                env.vars = BTreeMap::from([("PATH".to_string(), Var::Unset)]);
                i += 1;
            }
            "-u" | "--unset" => {
                if let Some(name) = next {
                    env.vars.insert(name, Var::Unset);
                }
                i += 2;
            }
            "-C" | "--chdir" => {
                env.cwd = next.and_then(|d| absolute(&d, env.cwd.as_deref()));
                i += 2;
            }
            "-S" | "--split-string" => {
                // `-S "cmd args"` (as a #! line passes it) splits into words.
                let words = next.map(|s| split_words(&s)).unwrap_or_default();
                args.splice(
                    i..(i + 2).min(args.len()),
                    words.into_iter().map(Field::known),
                );
            }
            _ if v.starts_with("-S") || v.starts_with("--split-string=") => {
                let text = v
                    .strip_prefix("--split-string=")
                    .unwrap_or_else(|| &v["-S".len()..]);
                let words = split_words(text);
                args.splice(i..=i, words.into_iter().map(Field::known));
            }
            _ if v.starts_with("--unset=") => {
                env.vars
                    .insert(v["--unset=".len()..].to_string(), Var::Unset);
                i += 1;
            }
            _ if v.starts_with("--chdir=") => {
                env.cwd = absolute(&v["--chdir=".len()..], env.cwd.as_deref());
                i += 1;
            }
            _ if v.starts_with('-') && v.len() > 1 => i += 1,
            _ => match v.split_once('=').filter(|(n, _)| is_name(n)) {
                Some((name, value)) => {
                    env.vars
                        .insert(name.to_string(), Var::Set(value.to_string()));
                    i += 1;
                }
                None => break,
            },
        }
    }
    args.get(i..).unwrap_or_default().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(root: &Path, path: &str, content: &str, mode: u32) {
        let host = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
    }

    const ELF: &str = "\x7fELF\x02\x01\x01\0";

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn script_fields(text: &str, positional: &[&str]) -> (Vec<Field>, State) {
        // Expands the single command of `text` in a fresh state.
        // Expansion reads no files: a root that does not exist.
        let mut tracer = Tracer::new(Path::new("/nonexistent/zastava-root"), 8);
        let script = parse(text).unwrap();
        let src = Src {
            file: Rc::from("t"),
            offset: 0,
            is_file: true,
        };
        let shell = ShellCx {
            program: None,
            exec_single: false,
        };
        let cx = Cx {
            src: &src,
            shell: &shell,
            depth: 0,
            cond: false,
        };
        let env = Env {
            vars: BTreeMap::new(),
            cwd: None,
        };
        let mut st = State::new(
            &env,
            "/entrypoint.sh".into(),
            positional.iter().map(|p| Field::known(*p)).collect(),
        );
        let items = &script.body;
        let (last, before) = items.split_last().unwrap();
        let mut states = tracer.run_list(before, &cx, vec![st.clone()]);
        assert_eq!(states.len(), 1, "{text}");
        st = states.pop().unwrap();
        let Command::Simple(s) = &last.and_or.first.commands[0] else {
            panic!("{text}: not a simple command")
        };
        let (_, fields) = tracer.expand_simple(s, &cx, &mut st);
        (fields, st)
    }

    fn values(fields: &[Field]) -> Vec<Option<&str>> {
        fields.iter().map(|f| f.value.as_deref()).collect()
    }

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

    #[test]
    fn quoting_and_positional_parameters() {
        let (f, _) = script_fields(r#"x "$@" "a$1b" $* '$1' "${2}""#, &["p q", "r"]);
        assert_eq!(
            values(&f),
            [
                Some("x"),
                Some("p q"),
                Some("r"),
                Some("ap qb"),
                Some("p"),
                Some("q"),
                Some("r"),
                Some("$1"),
                Some("r")
            ]
        );
        let (f, _) = script_fields(r#"x "$@" "" "$3""#, &[]);
        assert_eq!(values(&f), [Some("x"), Some(""), Some("")]);
    }

    #[test]
    fn parameter_operators() {
        let text = concat!(
            "A=/opt/app; B=\n",
            r#"x ${A:-d} ${B:-d} "${B-d}" ${C:-$A/bin} ${A:+set} ${C:+set}x ${#A} ${A#*/} ${A##*/} "#,
            r#"${A%/*} ${1:0:1} ${1#-} ${1%.conf} ${D:=dflt} $D ${A: -3}"#,
        );
        let (f, st) = script_fields(text, &["-x.conf"]);
        assert_eq!(
            values(&f),
            [
                Some("x"),
                Some("/opt/app"),
                Some("d"),
                Some(""),
                Some("/opt/app/bin"),
                Some("set"),
                Some("x"),
                Some("8"),
                Some("opt/app"),
                Some("app"),
                Some("/opt"),
                Some("-"),
                Some("x.conf"),
                Some("-x"),
                Some("dflt"),
                Some("dflt"),
                Some("app"),
            ]
        );
        assert_eq!(st.vars["D"], Var::Set("dflt".into()));
    }

    #[test]
    fn long_values_are_unknown() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let (f, st) = script_fields(
            &format!("V={long}; W=short\nx \"$V\" \"$W\" \"$1\""),
            &[&long],
        );
        assert_eq!(values(&f), [Some("x"), None, Some("short"), None]);
        assert_eq!(st.vars["V"], Var::Unknown);
        assert!(f[1].text.len() <= MAX_VALUE_BYTES);
    }

    #[test]
    fn unknown_values_stay_unknown() {
        let (f, _) = script_fields(r#"x $HOME "$(id -u)" `date` ${!ref} *.sh "$HOME/bin""#, &[]);
        assert_eq!(values(&f), [Some("x"), None, None, None, None, None, None]);
        assert!(f[1].split && !f[2].split);
        assert_eq!(f[6].text, "$HOME/bin");
    }

    #[test]
    fn test_builtin() {
        let t = |args: &[&str], double| {
            let fields: Vec<Field> = args.iter().map(|a| Field::known(*a)).collect();
            test_command(&fields, double)
        };
        assert_eq!(t(&["a", "=", "a"], false), Some(true));
        assert_eq!(t(&["a", "!=", "a"], false), Some(false));
        assert_eq!(t(&["-z", ""], false), Some(true));
        assert_eq!(t(&["-n", ""], false), Some(false));
        assert_eq!(t(&["x"], false), Some(true));
        assert_eq!(t(&["!", "x"], false), Some(false));
        assert_eq!(t(&["-f", "/x"], false), None);
        assert_eq!(
            t(&["a", "=", "b", "-o", "1", "-lt", "2"], false),
            Some(true)
        );
        assert_eq!(t(&["a", "=", "b", "-a", "-f", "/x"], false), Some(false));
        assert_eq!(t(&["a", "=", "a", "-a", "-f", "/x"], false), None);
        assert_eq!(t(&["-a", "=", "-a"], false), Some(true));
        assert_eq!(t(&["--help", "==", "-*"], true), Some(true));
        assert_eq!(t(&["x", "=~", "y"], true), None);
        let unknown = Field {
            value: None,
            text: "$X".into(),
            split: false,
        };
        assert_eq!(test_command(std::slice::from_ref(&unknown), false), None);
        assert_eq!(
            test_command(&[Field::known("a"), Field::known("="), unknown], false),
            None
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*.sh", "a.sh"));
        assert!(!glob_match("*.sh", "a.shx"));
        assert!(glob_match("-*", "-v"));
        assert!(glob_match("[!0-9]*", "x1"));
        assert!(!glob_match("[!0-9]*", "1x"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match(r"\*", "*"));
        assert!(!glob_match(r"\*", "x"));
        assert!(glob_match("[", "["));
        assert!(glob_match("*", ""));
        assert_eq!(strip("a/b/c", "*/", false, true), "b/c");
        assert_eq!(strip("a/b/c", "*/", true, true), "c");
        assert_eq!(strip("a/b/c", "/*", false, false), "a/b");
        assert_eq!(strip("a/b/c", "/*", true, false), "a");
        assert_eq!(strip("a/b/c", "x*", true, false), "a/b/c");
        assert_eq!(strip("-x.conf", "-", false, true), "x.conf");
        assert_eq!(strip("x[1]", r"\[*", false, false), "x");
        assert!(glob_match("*a*b*c", "xaybzc"));
        assert!(!glob_match("*a*b*c", "xaybz"));
        assert!(glob_match("[a-c][!a-c]", "bz"));
        assert!(!glob_match("[a-c][!a-c]", "bb"));
        assert!(glob_match("[]x]", "]"));
        assert!(glob_match(r"[\]]", "]"));
        // Linear in the text for all prefixes at once: a long value is cheap.
        let long = "a".repeat(4000) + "b";
        assert_eq!(strip(&long, "*a", true, true), "b");
        assert!(!glob_match(&"*a".repeat(50), &"a".repeat(49)));
    }

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

    #[test]
    fn resolve_stays_inside_the_root() {
        let root = TempDir::new("entrytrace-resolve");
        let r = root.path();
        write(r, "/bin/busybox", ELF, 0o755);
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../../../../../../etc", r.join("bin/up")).unwrap();
        symlink("loop", r.join("bin/loop")).unwrap();
        fs::create_dir_all(r.join("usr")).unwrap();
        symlink("../bin", r.join("usr/bin")).unwrap();
        let fs = Rootfs::new(r);
        assert_eq!(fs.resolve("/bin/sh").unwrap().path, "/bin/busybox");
        assert_eq!(fs.resolve("/usr/bin/sh").unwrap().path, "/bin/busybox");
        assert_eq!(
            fs.resolve("/usr/bin/../bin/sh").unwrap().path,
            "/bin/busybox"
        );
        // `..` stops at the root: /etc of the root, which does not exist there.
        assert!(matches!(
            fs.resolve("/bin/up/passwd"),
            Err(ResolveError::NotFound)
        ));
        assert!(matches!(fs.resolve("/bin/loop"), Err(ResolveError::Loop)));
        assert!(matches!(
            fs.resolve("/bin/busybox/x"),
            Err(ResolveError::NotADirectory)
        ));
    }

    /// The observer traces through `/proc/<pid>/root`, itself a (magic) symlink.
    #[test]
    fn through_proc_pid_root() {
        let root = Path::new("/proc/self/root");
        let t = trace(root, &argv(&["sh", "-c", "exec true"]), None, 8);
        let real = |p: &str| fs::canonicalize(p).unwrap().to_string_lossy().into_owned();
        assert_eq!(t.terminals, [real("/bin/true")], "{t:?}");
        assert!(t.warnings.is_empty(), "{t:?}");
    }

    #[test]
    fn a_binary_is_its_own_terminal() {
        let root = TempDir::new("entrytrace-binary");
        write(root.path(), "/usr/bin/app", ELF, 0o755);
        let t = trace(root.path(), &argv(&["app", "--flag=secret"]), None, 8);
        assert_eq!(t.terminals, ["/usr/bin/app"]);
        assert_eq!(
            t.steps,
            [
                TraceStep {
                    file: "argv".into(),
                    line: 0,
                    op: "exec".into(),
                    target: "app".into()
                },
                TraceStep {
                    file: "argv".into(),
                    line: 0,
                    op: "path-lookup".into(),
                    target: "/usr/bin/app".into()
                },
            ]
        );
        assert!(t.warnings.is_empty() && !t.truncated);
    }

    #[test]
    fn missing_and_unreadable_are_warnings() {
        let root = TempDir::new("entrytrace-missing");
        let t = trace(root.path(), &argv(&["nope"]), Some("/bin"), 8);
        assert!(t.terminals.is_empty());
        assert_eq!(t.warnings, ["argv: `nope` not found on PATH /bin"]);
        let t = trace(root.path(), &argv(&["/x/y"]), None, 8);
        assert_eq!(t.warnings, ["argv: /x/y: not found"]);
        let t = trace(root.path(), &argv(&["./rel"]), None, 8);
        assert_eq!(
            t.warnings,
            ["argv: `./rel`: a relative path, and the working directory is not known"]
        );
        let t = trace(root.path(), &[], None, 8);
        assert_eq!(t.warnings.len(), 1);
        // A secret where the command should be is not echoed back.
        let t = trace(root.path(), &argv(&["--password=hunter2"]), None, 8);
        assert!(!format!("{t:?}").contains("hunter2"), "{t:?}");
        let t = trace(root.path(), &argv(&["PASS=hunter2"]), None, 8);
        assert!(!format!("{t:?}").contains("hunter2"), "{t:?}");
    }

    #[test]
    fn huge_scripts_are_not_read() {
        let root = TempDir::new("entrytrace-huge");
        let big = format!("#!/bin/sh\n{}exec /bin/app\n", "# pad\n".repeat(200_000));
        write(root.path(), "/entrypoint.sh", &big, 0o755);
        write(root.path(), "/bin/sh", ELF, 0o755);
        let t = trace(root.path(), &argv(&["/entrypoint.sh"]), None, 8);
        assert!(t.terminals.is_empty());
        assert!(
            t.warnings
                .iter()
                .any(|w| w.contains("larger than 1048576 bytes")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn depth_counts_the_levels_followed() {
        let root = TempDir::new("entrytrace-depth");
        write(root.path(), "/bin/app", ELF, 0o755);
        write(root.path(), "/bin/sh", ELF, 0o755);
        write(
            root.path(),
            "/inner.sh",
            "#!/bin/sh\nexec /bin/app\n",
            0o755,
        );
        write(
            root.path(),
            "/outer.sh",
            "#!/bin/sh\nexec /inner.sh\n",
            0o755,
        );
        let direct = trace(root.path(), &argv(&["/bin/app"]), None, 8);
        assert_eq!(direct.depth, 0);
        let one = trace(root.path(), &argv(&["/inner.sh"]), None, 8);
        let two = trace(root.path(), &argv(&["/outer.sh"]), None, 8);
        assert_eq!(one.terminals, ["/bin/app"]);
        assert_eq!(two.terminals, ["/bin/app"]);
        assert!(one.depth > 0, "{one:?}");
        assert!(two.depth > one.depth, "{one:?} {two:?}");
        let capped = trace(root.path(), &argv(&["/outer.sh"]), None, one.depth);
        assert!(capped.truncated && capped.depth <= one.depth, "{capped:?}");
    }

    #[test]
    fn exponential_scripts_hit_the_work_budget() {
        let root = TempDir::new("entrytrace-budget");
        let text = "#!/bin/sh\nf() { f; f; }\nf\nexec /bin/app\n";
        write(root.path(), "/e.sh", text, 0o755);
        write(root.path(), "/bin/sh", ELF, 0o755);
        write(root.path(), "/bin/app", ELF, 0o755);
        let t = trace(root.path(), &argv(&["/e.sh"]), None, 48);
        assert!(t.truncated, "{t:?}");
    }

    fn undecidable_ifs(body: &str) -> String {
        let mut text = String::from("#!/bin/sh\n");
        for i in 0..10 {
            text.push_str(&format!(
                "if [ -f /x ]; then {}; fi\n",
                body.replace('N', &i.to_string())
            ));
        }
        text + "exec /bin/app \"$@\"\n"
    }

    #[test]
    fn paths_differing_in_variables_are_joined() {
        let root = TempDir::new("entrytrace-join");
        write(root.path(), "/e.sh", &undecidable_ifs("VN=1"), 0o755);
        write(root.path(), "/bin/sh", ELF, 0o755);
        write(root.path(), "/bin/app", ELF, 0o755);
        let t = trace(root.path(), &argv(&["/e.sh"]), None, 48);
        assert!(!t.truncated && t.warnings.is_empty(), "{t:?}");
        assert_eq!(t.terminals, ["/bin/app"]);
    }

    #[test]
    fn paths_are_capped() {
        let root = TempDir::new("entrytrace-cap");
        // 2^10 different argument lists: they cannot be joined.
        write(
            root.path(),
            "/e.sh",
            &undecidable_ifs("set -- N \"$@\""),
            0o755,
        );
        write(root.path(), "/bin/sh", ELF, 0o755);
        write(root.path(), "/bin/app", ELF, 0o755);
        let t = trace(root.path(), &argv(&["/e.sh"]), None, 48);
        assert!(t.truncated);
        assert_eq!(
            t.warnings,
            ["more than 32 paths through the scripts at once: the others are not followed"]
        );
        assert_eq!(
            t.terminals,
            ["/bin/app"],
            "capped paths still reach the end"
        );
    }

    #[test]
    fn interpreter_targets() {
        let f = |args: &[&str]| args.iter().map(|a| Field::known(*a)).collect::<Vec<_>>();
        let name = |t: Option<Target>| match t {
            Some(Target::File(s)) => format!("file {s}"),
            Some(Target::Name(s)) => format!("name {s}"),
            Some(Target::Module(s)) => format!("module {s}"),
            Some(Target::Unknown(s)) => format!("unknown {s}"),
            None => "none".into(),
        };
        assert_eq!(
            name(interpreter_target(&PYTHON, &f(&["-u", "app.py", "-x"]))),
            "file app.py"
        );
        assert_eq!(
            name(interpreter_target(&PYTHON, &f(&["-m", "gunicorn", "a:b"]))),
            "module gunicorn"
        );
        assert_eq!(
            name(interpreter_target(&PYTHON, &f(&["-mhttp.server"]))),
            "module http.server"
        );
        assert_eq!(
            name(interpreter_target(&PYTHON, &f(&["-c", "print(1)"]))),
            "none"
        );
        assert_eq!(
            name(interpreter_target(&PYTHON, &f(&["-W", "ignore", "x.py"]))),
            "file x.py"
        );
        assert_eq!(name(interpreter_target(&PYTHON, &f(&[]))), "none");
        assert_eq!(
            name(interpreter_target(
                &NODE,
                &f(&["-r", "dotenv/config", "server.js"])
            )),
            "file server.js"
        );
        assert_eq!(
            name(interpreter_target(
                &NODE,
                &f(&["--max-old-space-size=512", "--", "s.js"])
            )),
            "file s.js"
        );
        assert_eq!(name(interpreter_target(&NODE, &f(&["-e", "1"]))), "none");
        assert_eq!(
            name(interpreter_target(
                &JAVA,
                &f(&["-Xmx1g", "-jar", "/app/app.jar"])
            )),
            "file /app/app.jar"
        );
        assert_eq!(
            name(interpreter_target(
                &JAVA,
                &f(&["-cp", "/app/lib", "com.example.Main"])
            )),
            "name com.example.Main"
        );
        assert_eq!(
            name(interpreter_target(
                &JAVA,
                &f(&["-m", "app/com.example.Main"])
            )),
            "name app/com.example.Main"
        );
        assert_eq!(
            name(interpreter_target(
                &SCRIPTING,
                &f(&["-d", "x=1", "index.php"])
            )),
            "file index.php"
        );
        let opts = Field {
            value: None,
            text: "$JAVA_OPTS".into(),
            split: true,
        };
        let args = [opts, Field::known("-jar"), Field::known("a.jar")];
        assert_eq!(name(interpreter_target(&JAVA, &args)), "file a.jar");
    }

    #[test]
    fn env_options() {
        let f = |args: &[&str]| args.iter().map(|a| Field::known(*a)).collect::<Vec<_>>();
        let mut env = Env {
            vars: BTreeMap::from([("PATH".to_string(), Var::Set("/bin".into()))]),
            cwd: None,
        };
        let child = env_command(
            &f(&["-u", "X", "A=1", "-C", "/app", "cmd", "B=2"]),
            &mut env,
        );
        assert_eq!(values(&child), [Some("cmd"), Some("B=2")]);
        assert_eq!(env.vars["A"], Var::Set("1".into()));
        assert_eq!(env.vars["X"], Var::Unset);
        assert_eq!(env.cwd.as_deref(), Some("/app"));
        let child = env_command(&f(&["-S python3 -u 'a b'", "x"]), &mut env);
        assert_eq!(
            values(&child),
            [Some("python3"), Some("-u"), Some("a b"), Some("x")]
        );
        let child = env_command(&f(&["-i", "PATH=/opt", "--", "-weird"]), &mut env);
        assert_eq!(values(&child), [Some("-weird")]);
        assert_eq!(env.path(), "/opt");
        env_command(&f(&["-i"]), &mut env);
        assert_eq!(env.path(), UNSET_PATH);
    }

    #[test]
    fn headers() {
        assert!(matches!(
            header(b"#!/usr/bin/env -S python3 -u\nprint()"),
            Header::Script { interpreter, arg: Some(arg) } if interpreter == "/usr/bin/env" && arg == "-S python3 -u"
        ));
        assert!(matches!(
            header(b"#! /bin/sh\n"),
            Header::Script { interpreter, arg: None } if interpreter == "/bin/sh"
        ));
        assert!(matches!(header(b"\x7fELF\x02"), Header::Elf));
        assert!(matches!(header(b"echo hi\n"), Header::Other));
        assert!(matches!(header(b"#!\n"), Header::Other));
    }
}
