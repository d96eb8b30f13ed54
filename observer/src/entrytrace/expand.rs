//! Word expansion: parameters (`$x`, `${x:-w}`, `${x#p}`, `${x:1:2}`, ...), `"$@"`, field
//! splitting, and a simple command's words and assignments, with what is not known before the
//! container runs kept unknown.

use super::lexer::{is_name, Param, ParamOp, Part, Word};
use super::parser::{Assign, Simple};
use super::patterns::{escape_glob, has_glob, strip};
use super::state::{Field, FieldBuf, Lookup, State, Var};
use super::tracer::{Cx, Tracer};

impl Tracer {
    pub(super) fn expand_simple(
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

    pub(super) fn assigned(&mut self, a: &Assign, st: &mut State, cx: &Cx) -> Field {
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
    pub(super) fn fields(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Vec<Field> {
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
    pub(super) fn string(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Field {
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
    pub(super) fn pattern(&mut self, word: &Word, st: &mut State, cx: &Cx) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entrytrace::tests::{script_fields, values};
    use crate::limits::MAX_VALUE_BYTES;

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
}
