//! The shell language run symbolically: lists, `&&`/`||`, pipelines, background commands,
//! `if`/`case`/`for`/`while`, function calls and simple commands, each over every path through
//! the script that is still open.

use std::collections::BTreeMap;

use crate::limits::MAX_LOOP_ITEMS;

use super::builtins::BUILTINS;
use super::lexer::Word;
use super::parser::{AndOr, CaseArm, Command, IfArm, Item, List, Pipeline, Simple};
use super::patterns::glob_match;
use super::rootfs::basename;
use super::state::{Field, Flow, Loc, Pending, State, Var};
use super::tracer::{Call, Cx, ShellCx, Tracer};

impl Tracer {
    pub(super) fn run_list(
        &mut self,
        list: &[Item],
        cx: &Cx,
        mut states: Vec<State>,
    ) -> Vec<State> {
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
