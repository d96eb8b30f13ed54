//! The symbolic state of one path through a script: expanded words ([`Field`]) that may be
//! unknown, variables, the environment a program inherits, positional parameters, the
//! commands pending when the script ends, and how paths that differ only in variables are
//! joined.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use crate::limits::MAX_VALUE_BYTES;

use super::{DEFAULT_PATH, UNSET_PATH};

/// One word after expansion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Field {
    /// `None` when it depends on something not known before the container runs.
    pub(super) value: Option<String>,
    /// For steps and warnings: the known text with unknown parts as written (`$JAVA_HOME/bin`).
    pub(super) text: String,
    /// An unknown unquoted expansion: may stand for any number of words.
    pub(super) split: bool,
}

impl Field {
    pub(super) fn known(s: impl Into<String>) -> Field {
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

    pub(super) fn var(&self) -> Var {
        match &self.value {
            Some(v) => Var::Set(v.clone()),
            None => Var::Unknown,
        }
    }
}

/// A field being built by expansion.
#[derive(Default)]
pub(super) struct FieldBuf {
    value: String,
    text: String,
    unknown: bool,
    split: bool,
    /// Quotes or an unknown expansion make a field even when empty.
    pub(super) present: bool,
}

impl FieldBuf {
    pub(super) fn push(&mut self, s: &str) {
        self.value.push_str(s);
        self.text.push_str(s);
    }

    pub(super) fn push_unknown(&mut self, raw: &str, quoted: bool) {
        self.unknown = true;
        self.present = true;
        self.split |= !quoted;
        self.text.push_str(raw);
    }

    pub(super) fn push_field(&mut self, f: &Field) {
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

    pub(super) fn has_content(&self) -> bool {
        self.present || self.unknown || !self.value.is_empty()
    }

    pub(super) fn take(&mut self) -> Field {
        let buf = std::mem::take(self);
        Field::new((!buf.unknown).then_some(buf.value), buf.text, buf.split)
    }

    /// Appends `value` split on blanks (the default `IFS`), finishing fields at each blank.
    pub(super) fn split_into(&mut self, value: &str, out: &mut Vec<Field>) {
        for (i, piece) in value.split([' ', '\t', '\n']).enumerate() {
            if i > 0 && self.has_content() {
                out.push(self.take());
            }
            self.push(piece);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Var {
    Set(String),
    Unset,
    /// Assigned from something not known before the container runs.
    Unknown,
}

/// A variable's value as expansion sees it.
pub(super) enum Lookup {
    Value(String),
    Unset,
    /// Never assigned by the scripts: from the container's environment, not known here.
    Environment,
    Unknown,
}

/// What a program inherits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Env {
    /// Exported variables; names not here come from the container's environment.
    pub(super) vars: BTreeMap<String, Var>,
    pub(super) cwd: Option<String>,
}

impl Env {
    pub(super) fn path(&self) -> &str {
        match self.vars.get("PATH") {
            Some(Var::Set(p)) => p,
            Some(Var::Unset) => UNSET_PATH,
            _ => DEFAULT_PATH,
        }
    }
}

/// A place in a file (or `argv`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Loc {
    pub(super) file: Rc<str>,
    pub(super) line: u32,
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
pub(super) struct Src {
    pub(super) file: Rc<str>,
    /// Added to the lines of the parsed text (a `-c` string on line 5 starts at 5).
    pub(super) offset: u32,
    /// A script file (`$BASH_SOURCE` is its path), not a string.
    pub(super) is_file: bool,
}

impl Src {
    pub(super) fn at(&self, line: u32) -> Loc {
        Loc {
            file: self.file.clone(),
            line: self.offset + line,
        }
    }
}

/// An external command run in the foreground, kept until the script moves on: if the script
/// ends without `exec`, its last such command(s) are what it ends in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Pending {
    pub(super) at: Loc,
    pub(super) argv: Vec<Field>,
    pub(super) env: Env,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Flow {
    Normal,
    Return,
    Break,
    Continue,
}

/// One path through a script: what the shell knows at that point.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct State {
    pub(super) vars: BTreeMap<String, Var>,
    /// One frame per function call: the values `local` variables hid (`None`: not set).
    pub(super) frames: Vec<BTreeMap<String, Option<Var>>>,
    pub(super) exported: BTreeSet<String>,
    pub(super) positional: Vec<Field>,
    pub(super) arg0: String,
    pub(super) cwd: Option<String>,
    /// Function name → index into [`Tracer::functions`](super::tracer::Tracer::functions).
    pub(super) functions: BTreeMap<String, usize>,
    pub(super) pending: Vec<Pending>,
    /// `wait` ran: the shell stays until its background commands end.
    pub(super) waited: bool,
    /// The exit status of the last command: `None` when not known.
    pub(super) status: Option<bool>,
    pub(super) flow: Flow,
}

impl State {
    pub(super) fn new(env: &Env, arg0: String, positional: Vec<Field>) -> State {
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
    pub(super) fn env(&self, prefix: &[(String, Field)]) -> Env {
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
    pub(super) fn make_local(&mut self, name: &str) {
        if let Some(frame) = self.frames.last_mut() {
            if !frame.contains_key(name) {
                frame.insert(name.to_string(), self.vars.get(name).cloned());
            }
        }
    }

    /// Ends a function call: its `local` variables give way to what they hid.
    pub(super) fn pop_frame(&mut self) {
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
    pub(super) fn positional_uncertain(&self, n: usize) -> bool {
        self.positional
            .iter()
            .take(n.saturating_sub(1))
            .any(|f| f.split)
    }
}

/// Joins paths that differ only in what variables hold (in the shell, in what pending
/// commands inherit, in their arguments after the first) and in the last status: what differs
/// becomes unknown. Keeps the number of paths down without losing the positional parameters,
/// commands and functions that decide the terminals.
pub(super) fn widen(states: Vec<State>) -> Vec<State> {
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
