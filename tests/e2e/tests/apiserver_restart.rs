//! The operator survives an API server restart and keeps reconciling afterwards.
//! (A test binary of its own: the restart would disturb tests running beside it.)

use std::process::Command;

use serde_json::json;
use zastava_e2e::{
    apply_policy, client, delete_policy, env, http_get, operator_pid, process_alive, unique,
    wait_ready,
};

#[tokio::test]
async fn operator_survives_an_apiserver_restart() {
    let client = client().await;
    let pid = operator_pid();
    let before = unique("e2e-before-restart");
    apply_policy(&client, &before, json!({"mode": "Audit"})).await;
    wait_ready(&client, &before, "True").await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/daemon.sh");
    let status = Command::new("bash")
        .args([script, "restart", "kube-apiserver"])
        .status()
        .expect("running daemon.sh");
    assert!(status.success(), "daemon.sh restart kube-apiserver failed");

    assert!(process_alive(pid), "the operator died with the API server");
    let url = env("ZASTAVA_OPERATOR_URL");
    assert_eq!(
        http_get(&format!("{url}/healthz")).await.map(|r| r.0),
        Some(200)
    );

    // Watches resumed: a new policy and an edit of an old one are both reconciled.
    let after = unique("e2e-after-restart");
    apply_policy(&client, &after, json!({"mode": "Audit"})).await;
    wait_ready(&client, &after, "True").await;
    apply_policy(
        &client,
        &before,
        json!({"mode": "Audit", "verify": {"signature": {"keys": [{"name": "k", "pem": "garbage"}]}}}),
    )
    .await;
    wait_ready(&client, &before, "False").await;
    assert!(process_alive(pid));

    delete_policy(&client, &before).await;
    delete_policy(&client, &after).await;
}
