//! Tests across the parts: whole traces over small root filesystems, budgets and caps; and
//! the helpers the tests of each part share.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::rc::Rc;

use crate::testutil::TempDir;

use super::parser::{parse, Command};
use super::state::{Env, Field, Src, State};
use super::tracer::{Cx, ShellCx, Tracer};
use super::{trace, TraceStep};

pub(super) fn write(root: &Path, path: &str, content: &str, mode: u32) {
    let host = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(host.parent().unwrap()).unwrap();
    fs::write(&host, content).unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) const ELF: &str = "\x7fELF\x02\x01\x01\0";

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

pub(super) fn script_fields(text: &str, positional: &[&str]) -> (Vec<Field>, State) {
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

pub(super) fn values(fields: &[Field]) -> Vec<Option<&str>> {
    fields.iter().map(|f| f.value.as_deref()).collect()
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
