//! Work a hostile workload can ask of the observer is bounded: what a cap hides is reported
//! (`partial`, `truncated`), and the observer gets its answer in bounded time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use zastava_observer::entrytrace::trace;
use zastava_observer::hashing::HashCache;
use zastava_observer::sample::{sample, SampleOptions};

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zastava-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a thread of its own; `None` when it has not returned within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// The most mappings a process can have (`vm.max_map_count`), each naming a different file
/// by a 4 000-character path: 262 MB of maps. The sample reads a bounded prefix of it and
/// says that it is partial.
#[test]
fn a_huge_maps_file_is_sampled_partially() {
    const LINES: usize = 65_530;
    const PATH_CHARS: usize = 4000;
    let tmp = TempDir::new("huge-maps");
    let pid_dir = tmp.0.join("4242");
    fs::create_dir_all(pid_dir.join("root")).unwrap();
    fs::copy(
        format!("/proc/{}/stat", std::process::id()),
        pid_dir.join("stat"),
    )
    .unwrap();
    fs::write(pid_dir.join("cmdline"), b"/bin/app\0").unwrap();
    std::os::unix::fs::symlink("/bin/true", pid_dir.join("exe")).unwrap();
    let mut maps = Vec::with_capacity(LINES * (PATH_CHARS + 80));
    let dir = "d".repeat(PATH_CHARS - 20);
    for i in 0..LINES {
        use std::io::Write;
        writeln!(
            maps,
            "{:x}-{:x} r-xp 00000000 08:01 {} /{dir}/lib{i:012}.so",
            0x1000_0000 + i * 0x2000,
            0x1000_1000 + i * 0x2000,
            1000 + i
        )
        .unwrap();
    }
    fs::write(pid_dir.join("maps"), &maps).unwrap();
    drop(maps);

    let opts = SampleOptions {
        proc_root: tmp.0.clone(),
        entry_trace_depth: None,
        ..SampleOptions::default()
    };
    let s = within(Duration::from_secs(120), move || {
        sample(4242, &opts, &HashCache::new(8))
    })
    .expect("sampling a huge maps file did not end")
    .unwrap();
    assert!(s.partial, "a capped maps file must make the sample partial");
    let listed = s.loaded_libs.len();
    assert!(
        listed > 0 && listed < LINES / 8,
        "{listed} of {LINES} mapped files listed"
    );
    let warnings = s.warnings.join("\n");
    assert!(warnings.contains("maps"), "{warnings:.2000}");
    assert!(
        s.warnings.len() < 300 && warnings.len() < 2 << 20,
        "{} warnings, {} bytes",
        s.warnings.len(),
        warnings.len()
    );
}

/// A 339 KB script that sources itself from a `for` loop, each time expanding a list of
/// 169 000 words: a few commands, billions of words. The trace ends, truncated, once its
/// work budget (which counts words expanded) is spent.
#[test]
fn a_self_sourcing_for_loop_ends_within_the_word_budget() {
    let tmp = TempDir::new("word-budget");
    let root = tmp.0.clone();
    let write = |path: &str, content: &[u8]| {
        let host = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o755)).unwrap();
    };
    write("/bin/sh", ELF);
    write("/bin/app", ELF);
    let items: String = (1..=32).map(|i| format!("{i} ")).collect();
    let words = "x ".repeat(169_000);
    let script = format!(
        "#!/bin/sh\nfor i in {items}; do\n  for w in {words}; do :; done\n  . /entry.sh\ndone\nexec /bin/app\n"
    );
    assert!(
        (330_000..350_000).contains(&script.len()),
        "{}",
        script.len()
    );
    write("/entry.sh", script.as_bytes());

    let t = within(Duration::from_secs(120), move || {
        trace(&root, &["/entry.sh".to_string()], None, 48)
    })
    .expect("the trace of a self-sourcing loop did not end");
    assert!(t.truncated, "{:?}", t.warnings);
    assert!(
        t.warnings.iter().any(|w| w.contains("budget")),
        "{:?}",
        t.warnings
    );
    drop(tmp);
}
