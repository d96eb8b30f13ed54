//! Two replicas share one Lease: one reconciles, the other stands by and takes over when the
//! leader stops. Runs on a Lease of its own so the shared operator is left alone.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DeleteParams;
use kube::Api;
use zastava_e2e::{client, env, http_get, metric, unique, wait_for, OperatorReplica};

async fn leader_gauge(replica: &OperatorReplica) -> Option<f64> {
    let (status, body) = http_get(&format!("{}/metrics", replica.url)).await?;
    (status == 200).then(|| metric(&body, "zastava_operator_leader"))?
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases.get_opt(name).await.ok()??.spec?.holder_identity
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_stops() {
    let client = client().await;
    let lease_name = unique("e2e-lease");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));

    let mut first = OperatorReplica::start(&unique("replica-a"), 18181, &lease_name);
    wait_for(
        "the first replica to lead",
        Duration::from_secs(30),
        || async {
            (holder(&leases, &lease_name).await.as_deref() == Some(first.identity.as_str())
                && leader_gauge(&first).await == Some(1.0))
            .then_some(())
        },
    )
    .await;

    let second = OperatorReplica::start(&unique("replica-b"), 18182, &lease_name);
    wait_for(
        "the second replica to be ready",
        Duration::from_secs(30),
        || async {
            let (status, _) = http_get(&format!("{}/readyz", second.url)).await?;
            (status == 200).then_some(())
        },
    )
    .await;
    // Give the standby several renewal periods to (wrongly) grab the Lease.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        leader_gauge(&second).await,
        Some(0.0),
        "{}",
        second.log_text()
    );
    assert_eq!(
        holder(&leases, &lease_name).await.as_deref(),
        Some(first.identity.as_str())
    );

    assert!(
        first.terminate(Duration::from_secs(20)),
        "the leader did not exit cleanly on SIGTERM:\n{}",
        first.log_text()
    );
    wait_for(
        "the standby to take over",
        Duration::from_secs(30),
        || async {
            (holder(&leases, &lease_name).await.as_deref() == Some(second.identity.as_str())
                && leader_gauge(&second).await == Some(1.0))
            .then_some(())
        },
    )
    .await;

    drop(second);
    let _ = leases.delete(&lease_name, &DeleteParams::default()).await;
}
