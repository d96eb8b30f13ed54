//! The built `zastava-observer` binary against real files and real processes of this machine.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_zastava-observer");
const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn observer(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run zastava-observer")
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn sha256sum(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("`sha256sum` (coreutils) is needed by these tests");
    assert!(out.status.success(), "sha256sum {path}");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn readelf_build_id(path: &str) -> Option<String> {
    let out = Command::new("readelf")
        .args(["-n", path])
        .output()
        .expect("`readelf` is needed by these tests: install binutils");
    assert!(out.status.success(), "readelf -n {path}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
}

fn realpath(path: &str) -> String {
    std::fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn inspect_real_files() {
    let out = observer(&[
        "inspect",
        "/bin/true",
        LIBC,
        "/etc/hostname",
        "/nonexistent",
    ]);
    assert_eq!(out.status.code(), Some(1), "a missing file makes it fail");
    let lines = stdout_lines(&out);
    assert_eq!(
        lines.len(),
        4,
        "one line per file, the rest still processed"
    );

    for (line, path) in lines.iter().zip(["/bin/true", LIBC, "/etc/hostname"]) {
        assert_eq!(line["path"], path);
        assert_eq!(line["sha256"], sha256sum(path), "{path}");
        assert!(line.get("error").is_none(), "{line}");
    }
    for (line, path) in lines.iter().zip(["/bin/true", LIBC]) {
        assert_eq!(line["elf"], true);
        let expected = readelf_build_id(path).expect("readelf shows a build-id");
        assert_eq!(line["buildId"], expected.as_str(), "{path}");
    }
    assert_eq!(lines[2]["elf"], false);
    assert!(lines[2]["buildId"].is_null());

    assert_eq!(lines[3]["path"], "/nonexistent");
    let error = lines[3]["error"].as_str().expect("an error field");
    assert!(error.contains("No such file"), "{error}");
    assert!(lines[3].get("sha256").is_none());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be inspected"), "{stderr}");
}

#[test]
fn inspect_all_good_exits_zero() {
    let out = observer(&["inspect", "/bin/true"]);
    assert!(out.status.success());
    assert_eq!(stdout_lines(&out).len(), 1);
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 30`, once it has exec'd and the loader has mapped libc.
fn sleeper() -> Reaped {
    let child = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let maps = format!("/proc/{}/maps", child.0.id());
    for _ in 0..400 {
        let ready = std::fs::read_to_string(&maps)
            .is_ok_and(|m| m.contains("libc.so") && m.contains("sleep"));
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn sample_a_sleeping_child() {
    let child = sleeper();
    let pid = child.0.id().to_string();
    let out = observer(&["sample", "--pid", &pid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "one JSON document");
    let doc = &lines[0];
    assert_eq!(doc["pid"].as_u64(), Some(u64::from(child.0.id())));
    assert_eq!(doc["partial"], false, "{doc}");

    let exe = &doc["executable"];
    let exe_path = exe["path"].as_str().unwrap();
    assert!(exe_path.ends_with("/sleep"), "{exe}");
    assert_eq!(exe["sha256"], sha256sum(exe_path));
    assert_eq!(
        exe["buildId"].as_str().map(str::to_string),
        readelf_build_id(exe_path)
    );

    let libs = doc["loadedLibs"].as_array().unwrap();
    let libc = libs
        .iter()
        .find(|l| {
            l["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/libc.so.6"))
        })
        .unwrap_or_else(|| panic!("libc among loadedLibs: {doc}"));
    let libc_path = libc["path"].as_str().unwrap();
    assert_eq!(realpath(libc_path), realpath(LIBC));
    assert_eq!(libc["sha256"], sha256sum(LIBC));
    assert_eq!(
        libc["buildId"].as_str().map(str::to_string),
        readelf_build_id(LIBC)
    );
    let inode = libc["inode"].as_u64().unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(inode, std::fs::metadata(LIBC).unwrap().ino());
    }
    assert!(
        libs.iter().all(|l| l["path"] != exe["path"]),
        "the executable is not a lib"
    );

    // Entry trace present; arguments redacted.
    assert!(doc.get("entryTrace").is_some(), "{doc}");
    assert!(doc.get("entrypoint").is_none(), "{doc}");
    assert!(!doc.to_string().contains("\"30\""), "argv leaked: {doc}");
}

#[test]
fn sample_show_args() {
    let child = sleeper();
    let pid = child.0.id().to_string();
    let out = observer(&["sample", "--pid", &pid, "--show-args"]);
    assert!(out.status.success());
    let doc = &stdout_lines(&out)[0];
    assert_eq!(doc["entrypoint"], serde_json::json!(["sleep", "30"]));
}

#[test]
fn sample_with_caps() {
    let child = sleeper();
    let pid = child.0.id().to_string();
    let out = observer(&[
        "sample",
        "--pid",
        &pid,
        "--max-libs",
        "1",
        "--max-hash-bytes",
        "1000",
    ]);
    assert!(out.status.success());
    let doc = &stdout_lines(&out)[0];
    assert_eq!(doc["executable"]["capped"], "maxHashBytes");
    assert!(doc["executable"]["sha256"].is_null());
    let libs = doc["loadedLibs"].as_array().unwrap();
    assert!(libs.len() >= 2, "{doc}");
    assert!(libs[1..].iter().all(|l| l["capped"] == "maxLibs"), "{doc}");
}

#[test]
fn sample_missing_pid_fails_clearly() {
    // Above the kernel's pid_max limit (4194304): never a live process.
    let out = observer(&["sample", "--pid", "99999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such process"), "{stderr}");
    assert!(stderr.contains("99999999"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sample_bad_proc_root_fails_clearly() {
    let out = observer(&["sample", "--pid", "1", "--proc-root", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such process"), "{stderr}");
}

#[test]
fn sample_a_process_that_exits_meanwhile() {
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let child = Reaped(
            Command::new("true")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn true"),
        );
        let pid = child.0.id().to_string();
        let out = observer(&["sample", "--pid", &pid]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        match out.status.code() {
            Some(0) => {
                let doc = &stdout_lines(&out)[0];
                assert_eq!(doc["pid"].as_u64(), Some(u64::from(child.0.id())));
                outcomes.push(if doc["partial"] == true {
                    "partial"
                } else {
                    "complete"
                });
            }
            Some(1) => {
                assert!(
                    stderr.contains("no such process"),
                    "a clear message: {stderr}"
                );
                outcomes.push("gone");
            }
            other => panic!("exit {other:?}: {stderr}"),
        }
        drop(child);
    }
    eprintln!("outcomes: {outcomes:?}");
}

#[test]
fn trace_prints_entry_trace_json() {
    let out = observer(&["trace", "--root", "/", "--", "/bin/true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = &stdout_lines(&out)[0];
    for field in ["steps", "terminals", "truncated", "warnings"] {
        assert!(doc.get(field).is_some(), "{field} in {doc}");
    }
}

#[test]
fn usage_errors_do_not_panic() {
    let out = observer(&["sample"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pid"));
    assert!(Path::new(BIN).exists());
}

/// An executable and a library deleted after they were loaded (as after an in-place upgrade
/// or by malware covering its tracks): listed as deleted; the executable is still hashed
/// through `/proc/<pid>/exe`, the library through `map_files` when that is permitted
/// (CAP_SYS_ADMIN), else it is listed without a hash and a warning says why.
#[test]
fn sample_deleted_executable_and_library() {
    let dir = std::env::temp_dir().join(format!("zastava-cli-deleted-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("mysleep");
    std::fs::copy(realpath("/bin/sleep"), &exe).unwrap();
    std::fs::copy(LIBC, dir.join("libc.so.6")).unwrap();
    let child = Reaped(
        Command::new(&exe)
            .arg("30")
            .env("LD_LIBRARY_PATH", &dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the copied sleep"),
    );
    let maps = format!("/proc/{}/maps", child.0.id());
    for _ in 0..400 {
        if std::fs::read_to_string(&maps)
            .is_ok_and(|m| m.contains("zastava-cli-deleted") && m.contains("libc.so.6"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let out = observer(&["sample", "--pid", &child.0.id().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = &stdout_lines(&out)[0];
    let exe_doc = &doc["executable"];
    assert_eq!(exe_doc["path"], exe.to_string_lossy().as_ref());
    assert_eq!(exe_doc["deleted"], true);
    assert_eq!(exe_doc["sha256"], sha256sum("/bin/sleep"));
    assert_eq!(
        exe_doc["buildId"].as_str().map(str::to_string),
        readelf_build_id("/bin/sleep")
    );

    let copied = dir.join("libc.so.6");
    let lib = doc["loadedLibs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["path"] == copied.to_string_lossy().as_ref())
        .unwrap_or_else(|| panic!("the deleted libc copy: {doc}"));
    assert_eq!(lib["deleted"], true);
    if lib["sha256"].is_null() {
        let warnings = doc["warnings"].to_string();
        assert!(warnings.contains("map_files"), "{warnings}");
    } else {
        assert_eq!(lib["sha256"], sha256sum(LIBC));
        assert_eq!(
            lib["buildId"].as_str().map(str::to_string),
            readelf_build_id(LIBC)
        );
    }
}
