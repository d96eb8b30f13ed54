//! The entry tracer (shell lexer, parser and interpreter, wrappers, the root lookups) on a
//! script a workload ships: any script ends in a trace within its caps, never a panic, a hang
//! or unbounded memory (libFuzzer's `-timeout` and `-rss_limit_mb` hold it to that), and every
//! step and terminal names a path inside the container or an argv word.
#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zastava_observer::entrytrace::trace;
use zastava_observer::limits::{MAX_TRACE_STEPS, MAX_TRACE_WARNINGS};

/// A container root of this fuzzing process: the script under test is its `/entrypoint.sh`,
/// beside a helper script it may source or run and an ELF-looking program.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("zastava-fuzz-root-{}", std::process::id()));
        for dir in ["bin", "usr/local/bin", "etc"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let file = |path: &str, text: &[u8]| {
            fs::write(root.join(path), text).unwrap();
            fs::set_permissions(root.join(path), fs::Permissions::from_mode(0o755)).unwrap();
        };
        file("usr/local/bin/app", b"\x7fELF\x02\x01\x01\0");
        file("etc/helper.sh", b"#!/bin/sh\nexec app \"$@\"\n");
        root
    })
}

fuzz_target!(|script: &[u8]| {
    let root = root();
    let entry = root.join("entrypoint.sh");
    let mut text = b"#!/bin/sh\n".to_vec();
    text.extend_from_slice(script);
    fs::write(&entry, &text).unwrap();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o755)).unwrap();
    let argv = ["/entrypoint.sh".to_string(), "serve".to_string()];
    let out = trace(root, &argv, None, 8);
    assert!(out.steps.len() <= MAX_TRACE_STEPS);
    assert!(out.warnings.len() <= MAX_TRACE_WARNINGS + 1);
    for step in &out.steps {
        assert!(step.file == "argv" || step.file.starts_with('/'), "{step:?}");
    }
    for terminal in &out.terminals {
        assert!(terminal.starts_with('/'), "{terminal}");
    }
});
