//! A container that changes its root filesystem while the observer traces it: a thread swaps
//! a directory of the root for a symlink pointing outside the root, and for a directory
//! holding a FIFO where a script was (`renameat2(RENAME_EXCHANGE)`, in a loop), while the
//! tracer runs trace after trace. No byte of the file outside the root may ever show in a
//! trace, and no trace may hang on the FIFO.

use std::fs;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustix::fs::{mknodat, renameat_with, FileType, Mode, RenameFlags, CWD};

use zastava_observer::entrytrace::{trace, EntryTrace};

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
/// What only the file outside the root holds.
const SECRET: &str = "OUTSIDE-SECRET";
const TRACES: usize = 20_000;
/// No single trace takes anywhere near this long; one blocked on a FIFO takes for ever.
const TRACE_TIMEOUT: Duration = Duration::from_secs(20);

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn shows_the_secret(t: &EntryTrace) -> bool {
    serde_json::to_string(t).unwrap().contains(SECRET)
}

/// Unblocks a reader stuck opening a FIFO (old code): opening its write end succeeds only
/// while a reader waits, and closing it gives that reader end-of-file.
fn release_fifo_readers(root: &Path) {
    for path in ["d/entry.sh", "fifo/entry.sh"] {
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(root.join(path));
    }
}

/// What a run of traces under swaps gave.
struct Outcome {
    done: usize,
    hung: bool,
    leaked: Vec<EntryTrace>,
    inside: usize,
}

/// Traces `/d/entry.sh` [`TRACES`] times while a thread swaps `d` with each of `others` (and
/// back) in a loop.
fn traces_under_swaps(name: &str, others: &'static [&'static str]) -> Outcome {
    let tmp = TempDir(
        std::env::temp_dir().join(format!("zastava-confinement-{name}-{}", std::process::id())),
    );
    let _ = fs::remove_dir_all(&tmp.0);
    let root = tmp.0.join("root");
    let outside = tmp.0.join("outside");

    write(&root.join("bin/sh"), ELF, 0o755);
    write(&root.join("bin/inside-app"), ELF, 0o755);
    write(
        &root.join("d/entry.sh"),
        b"#!/bin/sh\nexec /bin/inside-app\n",
        0o755,
    );
    write(
        &outside.join("entry.sh"),
        format!("#!/bin/sh\nexec /{SECRET}\n").as_bytes(),
        0o755,
    );
    // What `d` is swapped with: a symlink to the directory outside (absolute, as a host
    // path), and a directory whose `entry.sh` is a FIFO.
    symlink(&outside, root.join("link")).unwrap();
    fs::create_dir_all(root.join("fifo")).unwrap();
    mknodat(
        CWD,
        root.join("fifo/entry.sh"),
        FileType::Fifo,
        Mode::from_bits_truncate(0o755),
        0,
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let d = root.join("d");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for other in others {
                    let other = root.join(other);
                    // There and back: `d` is the real directory half of the time.
                    for _ in 0..2 {
                        renameat_with(CWD, &d, CWD, &other, RenameFlags::EXCHANGE).unwrap();
                        swaps += 1;
                    }
                }
            }
            swaps
        })
    };

    let (tx, rx) = mpsc::channel();
    let tracer = {
        let root = root.clone();
        std::thread::spawn(move || {
            let argv = vec!["/d/entry.sh".to_string()];
            for _ in 0..TRACES {
                let t = trace(&root, &argv, None, 8);
                if tx.send(t).is_err() {
                    return;
                }
            }
        })
    };

    let started = Instant::now();
    let mut out = Outcome {
        done: 0,
        hung: false,
        leaked: Vec::new(),
        inside: 0,
    };
    while out.done < TRACES {
        match rx.recv_timeout(TRACE_TIMEOUT) {
            Ok(t) => {
                out.done += 1;
                if shows_the_secret(&t) {
                    out.leaked.push(t);
                } else if t.terminals == ["/bin/inside-app"] {
                    out.inside += 1;
                }
            }
            Err(_) => {
                out.hung = true;
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    if out.hung {
        release_fifo_readers(&root);
    } else {
        tracer.join().unwrap();
    }
    eprintln!(
        "{} traces in {:?} ({swaps} swaps): {} leaked, {} reached the program",
        out.done,
        started.elapsed(),
        out.leaked.len(),
        out.inside
    );
    out
}

#[test]
fn a_directory_swapped_for_an_outside_symlink_never_leaks_into_a_trace() {
    let out = traces_under_swaps("symlink", &["link"]);
    assert!(!out.hung, "a trace hung after {} traces", out.done);
    assert!(
        out.leaked.is_empty(),
        "{} of {} traces show bytes from outside the root, e.g. {:?}",
        out.leaked.len(),
        out.done,
        out.leaked[0]
    );
    // The swaps did not simply make every trace fail.
    assert!(out.inside > 0, "no trace reached /bin/inside-app");
}

#[test]
fn a_directory_swapped_for_one_holding_a_fifo_never_hangs_a_trace() {
    let out = traces_under_swaps("fifo", &["fifo"]);
    assert!(
        !out.hung,
        "a trace hung (blocked on the FIFO) after {} traces",
        out.done
    );
    assert!(out.inside > 0, "no trace reached /bin/inside-app");
}

#[test]
fn both_swaps_at_once() {
    let out = traces_under_swaps("both", &["link", "fifo"]);
    assert!(!out.hung, "a trace hung after {} traces", out.done);
    assert!(out.leaked.is_empty(), "{} traces leaked", out.leaked.len());
}
