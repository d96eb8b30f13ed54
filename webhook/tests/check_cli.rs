//! `zastava-webhook check` as CI runs it: exit 0 allowed, 1 denied, 2 unusable input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples")
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zastava-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zastava-webhook"))
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn banned_latest_is_denied_with_exit_1_and_the_decision_json() {
    let pod = write(
        "latest.yaml",
        "kind: Pod\nmetadata: {name: p, namespace: prod}\nspec:\n  containers:\n  - {name: a, image: busybox}\n",
    );
    let policy = samples().join("baseline-policy.yaml");
    let out = check(&[
        "--policy",
        policy.to_str().unwrap(),
        "--object",
        pod.to_str().unwrap(),
        "--offline",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["schemaVersion"], "zastava.admission.decision@v1.1");
    assert_eq!(decision["decision"], "Deny");
    assert_eq!(decision["namespace"], "prod");
    let reasons = decision["images"][0]["reasons"].to_string();
    assert!(reasons.contains("tag `latest` is banned"), "{reasons}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not checked (offline): busybox: signature"),
        "{stderr}"
    );
}

#[test]
fn audit_policy_allows_with_exit_0_and_warnings() {
    let pod = write(
        "audit.yaml",
        "kind: Deployment\nmetadata: {name: d, namespace: pay}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: a, image: 'ghcr.io/acme/app:1'}\n",
    );
    let policy = samples().join("audit-team-policy.yaml");
    let out = check(&[
        "--policy",
        policy.to_str().unwrap(),
        "--object",
        pod.to_str().unwrap(),
        "--namespace-label",
        "team=payments",
        "--offline",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a digest is required"), "{stderr}");
    assert!(stderr.contains("Audit: admitted"), "{stderr}");
}

#[test]
fn unusable_input_exits_2_with_a_message() {
    let garbage = write("garbage.yaml", "kind: [unclosed\n");
    let policy = samples().join("baseline-policy.yaml");
    let out = check(&[
        "--policy",
        policy.to_str().unwrap(),
        "--object",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbage.yaml"));
    assert!(out.stdout.is_empty());

    let missing = check(&[
        "--policy",
        "/nonexistent.yaml",
        "--object",
        "/nonexistent.yaml",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}
