//! The Argo CD health checks of `config/samples/gitops/argocd/` against the statuses the
//! operator really writes: each object, as read from the cluster, goes to a real Lua
//! interpreter (`lua5.4`, through `tests/e2e/lua/health.lua`) that runs the check the way
//! Argo CD does (the object in the global `obj`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::Api;
use serde_json::{json, Value};
use zastava_crds::RuntimePosture;
use zastava_e2e::observer::{deploy, run_dropped_program, running_pod};
use zastava_e2e::{
    apply_policy, client, condition, cosign_public_key, create_namespace, delete_namespace,
    delete_policy, unique, wait_for, wait_ready,
};

/// The policies govern a namespace that does not exist: only their status matters here.
const UNGOVERNED: &str = "e2e-argocd-objects-only";
const POLICY_CHECK: &str = "health-zastavapolicy.lua";
const POSTURE_CHECK: &str = "health-runtimeposture.lua";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Lua string literal of `s`: bytes other than printable ASCII as decimal escapes.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// `value` as a Lua table constructor, as Argo CD hands objects to its scripts (JSON null is
/// nil, so a member that is null is left out).
fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

/// (status, message) of the health check `script` on `object` (as JSON, the way the API
/// server serves it).
fn health(script: &str, object: &impl k8s_openapi::serde::Serialize) -> (String, String) {
    let value = serde_json::to_value(object).unwrap();
    let root = repo();
    let mut child = Command::new("lua5.4")
        .arg(root.join("tests/e2e/lua/health.lua"))
        .arg(root.join("config/samples/gitops/argocd").join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "running lua5.4 (Debian package lua5.4, installed by tests/e2e/cluster/install.sh)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("return {}", lua_value(&value)).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, message) = stdout
        .trim_end_matches('\n')
        .split_once('\t')
        .unwrap_or_else(|| panic!("unexpected output of {script}: {stdout}"));
    (status.to_string(), message.to_string())
}

#[test]
fn lua_literals_keep_every_byte() {
    assert_eq!(lua_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\010d\"");
    assert_eq!(lua_string("ü"), "\"\\195\\188\"");
    assert_eq!(
        lua_value(&json!({"a": [1, true, "x"], "b": null})),
        "{[\"a\"] = {1, true, \"x\"}}"
    );
}

#[tokio::test]
async fn zastava_policy_health_follows_the_operators_conditions() {
    let client = client().await;

    // A policy the operator accepts: Progressing as first read, Healthy once it is Ready.
    let good = unique("e2e-argocd-good");
    let applied = apply_policy(
        &client,
        &good,
        json!({
            "mode": "Enforce",
            "namespaces": [UNGOVERNED],
            "verify": {"signature": {"required": true, "keys": [
                {"name": "release", "pem": cosign_public_key()},
            ]}},
        }),
    )
    .await;
    assert!(
        applied.status.is_none(),
        "a new policy has no status before the operator writes it"
    );
    let (status, message) = health(POLICY_CHECK, &applied);
    assert_eq!(status, "Progressing", "{message}");

    let ready = wait_ready(&client, &good, "True").await;
    let (status, message) = health(POLICY_CHECK, &ready);
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.starts_with("Accepted: "), "{message}");

    // The spec changed and the operator has not assessed it yet.
    let mut newer = ready.clone();
    newer.metadata.generation = Some(ready.metadata.generation.unwrap() + 1);
    let (status, message) = health(POLICY_CHECK, &newer);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.contains("generation"), "{message}");
    delete_policy(&client, &good).await;

    // config/samples/broken-key-policy.yaml's key: Degraded with the operator's reason.
    let broken = unique("e2e-argocd-broken");
    let applied = apply_policy(
        &client,
        &broken,
        json!({
            "mode": "Audit",
            "namespaces": [UNGOVERNED],
            "verify": {"signature": {"keys": [{
                "name": "pasted-wrong",
                "pem": "-----BEGIN PUBLIC KEY-----\nthis is not base64 DER\n-----END PUBLIC KEY-----\n",
            }]}},
        }),
    )
    .await;
    assert_eq!(health(POLICY_CHECK, &applied).0, "Progressing");
    let rejected = wait_ready(&client, &broken, "False").await;
    assert_eq!(condition(&rejected, "Stalled").unwrap().status, "True");
    let (status, message) = health(POLICY_CHECK, &rejected);
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.starts_with("InvalidKey: "), "{message}");
    assert!(
        message.contains("spec.verify.signature.keys[0].pem: "),
        "{message}"
    );
    delete_policy(&client, &broken).await;
}

/// The posture's condition `type_`, once the operator has folded its current generation.
fn posture_condition<'a>(p: &'a RuntimePosture, type_: &str) -> Option<&'a str> {
    let status = p.status.as_ref()?;
    if status.observed_generation != p.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[tokio::test]
async fn runtime_posture_health_follows_observation_and_drift() {
    let client = client().await;
    let ns = unique("e2e-argocd-rp");
    create_namespace(&client, &ns, json!({})).await;
    deploy(&client, &ns, "sleeper", &["sleep", "3600"]).await;
    let pod = running_pod(&client, &ns, "sleeper").await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);

    // Observed, no drift: Healthy.
    let observed = wait_for(
        "the sleeper's posture Ready=True and Drifted=False",
        Duration::from_secs(90),
        || async {
            let p = postures.get_opt("deployment-sleeper").await.ok()??;
            (posture_condition(&p, "Ready") == Some("True")
                && posture_condition(&p, "Drifted") == Some("False"))
            .then_some(p)
        },
    )
    .await;
    let (status, message) = health(POSTURE_CHECK, &observed);
    assert_eq!(status, "Healthy", "{message}");
    assert!(message.starts_with("Observed: "), "{message}");

    let mut newer = observed.clone();
    newer.metadata.generation = Some(observed.metadata.generation.unwrap_or(1) + 1);
    let (status, message) = health(POSTURE_CHECK, &newer);
    assert_eq!(status, "Progressing", "{message}");

    // A program dropped into the container (busybox, named after its applet so that it runs):
    // Drifted=True, Degraded.
    let dropped = "/tmp/argocd-health/sleep";
    run_dropped_program(&client, &ns, &pod_name, "deployment-sleeper", dropped).await;
    let drifted = wait_for(
        "the sleeper's posture Drifted=True",
        Duration::from_secs(60),
        || async {
            let p = postures.get_opt("deployment-sleeper").await.ok()??;
            (posture_condition(&p, "Drifted") == Some("True")).then_some(p)
        },
    )
    .await;
    let (status, message) = health(POSTURE_CHECK, &drifted);
    assert_eq!(status, "Degraded", "{message}");
    assert!(message.starts_with("DriftDetected: "), "{message}");
    assert!(message.contains(dropped), "{message}");

    delete_namespace(&client, &ns).await;
}
