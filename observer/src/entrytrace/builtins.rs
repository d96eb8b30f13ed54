//! The shell builtins the tracer interprets (`exec`, `exit`/`return`/`break`/`continue`, `set`,
//! `shift`, `export`/`local`/`declare`, `unset`, `cd`, `wait`, `[`/`test`/`[[`, `command`,
//! `read`, `.`/`source`, `eval`, ...), and the list of every builtin: none of them is a program
//! the container runs.

use std::rc::Rc;

use super::lexer::is_name;
use super::parser::{parse, Simple};
use super::rootfs::absolute;
use super::state::{Field, Flow, Loc, Pending, Src, State, Var};
use super::test_builtin::test_command;
use super::tracer::{shown, Call, Cx, Tracer};

/// Shell builtins: never programs the container runs.
pub(super) const BUILTINS: &[&str] = &[
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

impl Tracer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn builtin(
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
}
