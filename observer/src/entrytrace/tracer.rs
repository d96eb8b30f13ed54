//! The tracer: its output and bookkeeping (steps, warnings, terminals, the work and time
//! budgets, the cap on paths followed at once), and following one program to the next: `PATH`
//! lookups, `#!` lines, busybox applets, shells and their scripts, wrappers, interpreters and
//! `run-parts`. What a program *is* comes from [`programs`](super::programs); the shell
//! language itself is run by [`interpret`](super::interpret).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use crate::limits::{
    HEADER_BYTES, MAX_DIR_ENTRIES, MAX_RUN_PARTS, MAX_SCRIPT_BYTES, MAX_TRACE_STATES as MAX_STATES,
    MAX_TRACE_STEPS as MAX_STEPS, MAX_TRACE_WARNINGS as MAX_WARNINGS,
    TRACE_GLOB_STEPS_PER_UNIT as GLOB_STEPS_PER_UNIT,
    TRACE_HASH_BYTES_PER_UNIT as HASH_BYTES_PER_UNIT, TRACE_WALL_TIME, TRACE_WORK_UNITS,
};

use super::parser::{parse, Command, Script};
use super::programs::{
    classify, env_command, header, interpreter_target, Header, Kind, Lang, Program, Target, Wrapper,
};
use super::rootfs::{absolute, basename, join, Resolved, Rootfs};
use super::state::{widen, Env, Field, Loc, Src, State};
use super::{is_busybox, EntryTrace, TraceStep};

/// A command word or path as it may appear in a step or warning. Arguments can hold secrets,
/// and a word where a command was expected may be an argument (`exec "$@"` with `$1` being
/// `--password=...`), so anything that does not look like a command is not shown.
pub(super) fn shown(word: &str) -> String {
    if word.len() > 256
        || word.starts_with('-')
        || word.contains(|c: char| c == '=' || c.is_whitespace())
    {
        "<redacted>".to_string()
    } else {
        word.to_string()
    }
}

/// A program being started.
pub(super) struct Call<'a> {
    pub(super) at: &'a Loc,
    pub(super) op: &'a str,
    pub(super) argv: &'a [Field],
    pub(super) env: &'a Env,
    pub(super) depth: usize,
}

/// The shell a script runs in.
pub(super) struct ShellCx {
    /// Its terminal path, when found.
    pub(super) program: Option<String>,
    /// An `sh -c` string that is a single command: the shell execs it.
    pub(super) exec_single: bool,
}

#[derive(Clone, Copy)]
pub(super) struct Cx<'a> {
    pub(super) src: &'a Src,
    pub(super) shell: &'a ShellCx,
    pub(super) depth: usize,
    /// Evaluating an `if`/`while` condition: its commands are not what the script ends in.
    pub(super) cond: bool,
}

pub(super) struct Tracer {
    fs: Rootfs,
    max_depth: usize,
    pub(super) out: EntryTrace,
    seen: HashSet<TraceStep>,
    /// Parsed scripts by resolved path (`None`: could not be read or parsed).
    scripts: HashMap<String, Option<Rc<Script>>>,
    /// Function definitions met so far: where they were read from, and their body.
    pub(super) functions: Vec<(Src, Rc<Command>)>,
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
    pub(super) transient: usize,
}

impl Tracer {
    pub(super) fn new(root: &Path, max_depth: usize) -> Self {
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

    pub(super) fn step(&mut self, at: &Loc, op: &str, target: &str) {
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

    pub(super) fn warn(&mut self, msg: String) {
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
    pub(super) fn spend(&mut self, units: usize) -> bool {
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
    pub(super) fn spent(&self) -> bool {
        self.out_of_budget
    }

    /// Charges matching `text` against `pattern` (up to text × pattern steps).
    pub(super) fn spend_glob(&mut self, text: &str, pattern: &str) -> bool {
        self.spend(1 + text.len().saturating_mul(pattern.len()) / GLOB_STEPS_PER_UNIT)
    }

    pub(super) fn too_deep(&mut self, at: &Loc, depth: usize) -> bool {
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
    pub(super) fn merge(&mut self, states: Vec<State>) -> Vec<State> {
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
    pub(super) fn branch_step(&mut self, mark: usize, at: &Loc, what: &str) {
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
    pub(super) fn exec_program(&mut self, call: &Call) {
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
    pub(super) fn find_script(
        &mut self,
        at: &Loc,
        name: &str,
        env: &Env,
    ) -> Option<(String, String)> {
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

    pub(super) fn load_script(&mut self, real: &str) -> Option<Rc<Script>> {
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
    pub(super) fn end_path(&mut self, st: State, cx: &Cx, op: &str) {
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
