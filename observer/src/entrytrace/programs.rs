//! What the tracer knows about programs without running them: a file's header (`#!` or ELF),
//! the kind a program name is (shell, wrapper, interpreter, `run-parts`, terminal), how each
//! interpreter's command line names what it runs, and how `env` changes the command and the
//! environment.

use std::collections::BTreeMap;

use super::lexer::is_name;
use super::rootfs::absolute;
use super::state::{Env, Field, Var};

/// A file's first bytes.
pub(super) enum Header {
    Script {
        interpreter: String,
        arg: Option<String>,
    },
    Elf,
    Other,
}

pub(super) struct Program {
    /// The path as executed (found on `PATH`, or given).
    pub(super) invoked: String,
    /// With all symlinks resolved.
    pub(super) real: String,
    pub(super) header: Option<Header>,
}

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Terminal,
    Shell,
    Wrapper(Wrapper),
    Interpreter(&'static Lang),
    RunParts,
}

#[derive(Clone, Copy)]
pub(super) enum Wrapper {
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
pub(super) struct Lang {
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

pub(super) fn classify(name: &str) -> Kind {
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
pub(super) enum Target {
    File(String),
    /// A class (java) or a jar's module.
    Name(String),
    /// `python -m module`.
    Module(String),
    Unknown(String),
}

pub(super) fn interpreter_target(lang: &Lang, args: &[Field]) -> Option<Target> {
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

/// What a file's first bytes say it is.
pub(super) fn header(head: &[u8]) -> Header {
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
pub(super) fn env_command(args: &[Field], env: &mut Env) -> Vec<Field> {
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
    use crate::entrytrace::tests::values;
    use crate::entrytrace::UNSET_PATH;

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
