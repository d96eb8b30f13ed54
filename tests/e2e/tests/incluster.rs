//! Zastava as its users run it: `helm install` of `charts/zastava` with the images `make
//! images` built, signed and pushed, every component in the cluster under its own
//! ServiceAccount, RBAC and security context; the apiserver calls the webhook through its
//! Service (kube-proxy), with the client certificate the webhook requires. One test, in the
//! order a release lives: install, admission through the Service, the webhook's least privilege
//! over Secrets (a key Secret's rotation through the policy's status), a webhook pod lost under load, the operator's leader lost, the observer DaemonSet's
//! posture, an upgrade under load, an uninstall that leaves no webhook behind, a reinstall.
//!
//! `tests/e2e/run.sh` runs it after the host-process tests, with those processes stopped.

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_crds::posture::Verdict;
use zastava_crds::{RuntimePosture, ZastavaPolicy};
use zastava_e2e::install::{
    admission_loop, admit, chart_reference, helm, image, image_signing_key, install, pods_of,
    print_usage, remove_leftover_release, values, wait_all_ready, webhook_configured, Admission,
    NAMESPACE, RELEASE, WEBHOOK_CONFIG,
};
use zastava_e2e::observer::{deploy_image, node_entry, readelf_build_id, running_pod, sha256sum};
use zastava_e2e::webhook::strict_policy;
use zastava_e2e::{
    apply_policy, client, create_namespace, delete_namespace, delete_policy, env, unique, wait_for,
    wait_ready, TestImage,
};

mod scanner;

const CHART: &str = "charts/zastava";
/// The backend token's Secret, which the values let the webhook read.
const BACKEND_SECRET: &str = "e2e-chart-scanner-token";

/// When the test ends, passed or not: the release uninstalled (a failure never leaves a
/// webhook configuration that refuses the next test's pods), the test's policy and namespace
/// deleted.
struct Cleanup {
    policy: String,
    namespace: String,
    key_secret: String,
    backend_policy: String,
    backend_namespace: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
        let _ = std::process::Command::new("kubectl")
            .args(["delete", "--wait=false", "--ignore-not-found"])
            .arg(format!("zastavapolicy/{}", self.policy))
            .arg(format!("zastavapolicy/{}", self.backend_policy))
            .arg(format!("namespace/{}", self.namespace))
            .arg(format!("namespace/{}", self.backend_namespace))
            .output();
        let _ = std::process::Command::new("kubectl")
            .args([
                "delete",
                "--wait=false",
                "--ignore-not-found",
                "-n",
                NAMESPACE,
            ])
            .arg(format!("secret/{}", self.key_secret))
            .arg(format!("secret/{BACKEND_SECRET}"))
            .output();
    }
}

/// Waits until admission in `ns` answers as it should: `signed` allowed, `unsigned` denied.
async fn enforcing(client: &Client, ns: &str, signed: &str, unsigned: &str) {
    wait_for(
        "admission through the Service to enforce the policy",
        Duration::from_secs(90),
        || async {
            let denied = matches!(admit(client, ns, unsigned).await, Admission::Denied(_));
            (denied && admit(client, ns, signed).await == Admission::Allowed).then_some(())
        },
    )
    .await;
}

async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    leases
        .get_opt("zastava-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Runs admissions of `signed` in two loops while `during` runs; asserts none failed.
async fn under_load<F: std::future::Future<Output = ()>>(
    client: &Client,
    ns: &str,
    signed: &str,
    what: &str,
    during: F,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(admission_loop(
                client.clone(),
                ns.to_string(),
                signed.to_string(),
                stopped.clone(),
            ))
        })
        .collect();
    during.await;
    stop.send(true).unwrap();
    let mut made = 0;
    let mut wrong = Vec::new();
    for l in loops {
        let (n, w) = l.await.unwrap();
        made += n;
        wrong.extend(w);
    }
    println!("{what}: {made} admissions, {} not allowed", wrong.len());
    assert!(made > 20, "{what}: only {made} admissions were made");
    assert!(
        wrong.is_empty(),
        "{what}: {} of {made} admissions failed: {wrong:?}",
        wrong.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_serve_survive_upgrade_uninstall_reinstall() {
    let client = client().await;
    remove_leftover_release(&client).await;
    let signed = image("webhook");
    let unsigned = env("ZASTAVA_TEST_IMAGE");

    let enforced = unique("e2e-chart");
    let policy = unique("e2e-chart");
    let key_secret = unique("e2e-chart-key");
    let cleanup = Cleanup {
        policy: policy.clone(),
        namespace: enforced.clone(),
        key_secret: key_secret.clone(),
        backend_policy: unique("e2e-chart-backend"),
        backend_namespace: unique("e2e-chart-backend"),
    };
    create_namespace(&client, &enforced, json!({})).await;

    // ---- install (the chart's CRDs too, as on a fresh cluster): every pod Ready, measured.
    let helm_time = install(
        CHART,
        json!({"webhook": {"backendSecrets": [BACKEND_SECRET]}}),
    );
    let ready_time = wait_all_ready(&client, Duration::from_secs(300)).await;
    println!(
        "install to Ready: helm install --wait {:.1} s, then every pod Ready after {:.1} s more",
        helm_time.as_secs_f64(),
        ready_time.as_secs_f64()
    );
    // What the test's namespace is held to: Zastava's own signing key, from a Secret of
    // Zastava's namespace (which the webhook cannot read: the operator publishes the public
    // key in the policy's status), and an SBOM.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let key = || -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": key_secret},
            "stringData": {"cosign.pub": image_signing_key()},
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &key())
        .await
        .unwrap();
    let mut spec = strict_policy(&enforced, &[], "Enforce");
    spec["verify"]["signature"]["keys"] =
        json!([{"name": "release", "secretRef": {"name": key_secret}}]);
    apply_policy(&client, &policy, spec).await;
    wait_ready(&client, &policy, "True").await;
    let vwc = webhook_configured(&client).await;
    let service = vwc.webhooks.as_ref().unwrap()[0]
        .client_config
        .service
        .clone()
        .expect("the apiserver calls the webhook through its Service");
    assert_eq!(service.namespace, NAMESPACE);
    assert_eq!(service.name, "zastava-webhook");

    // ---- admission through the Service: Zastava's own signed image with its SBOM admitted
    // (a cluster demanding both admits Zastava), the unsigned test image denied.
    enforcing(&client, &enforced, &signed, &unsigned).await;
    match admit(&client, &enforced, &unsigned).await {
        Admission::Denied(message) => assert!(message.contains("signature"), "{message}"),
        other => panic!("the unsigned image: {other:?}"),
    }

    // ---- least privilege: the webhook's ServiceAccount reads its serving certificate's
    // Secret and no other Secret of Zastava's namespace (not the CA's key, not key Secrets);
    // pull Secrets by name in the namespaces pods are decided in (the operator's RoleBinding
    // there), never a list.
    let webhook_sa = format!("system:serviceaccount:{NAMESPACE}:zastava-webhook");
    wait_for(
        "the operator to grant the webhook the test namespace's pull Secrets",
        Duration::from_secs(60),
        || async {
            can(&client, &webhook_sa, "get", &enforced, "registry-creds")
                .await
                .then_some(())
        },
    )
    .await;
    for (verb, namespace, name, allowed) in [
        ("watch", NAMESPACE, "zastava-webhook-tls", true),
        // The direct read that tells liveness whether a renewal was missed (cert_health.rs).
        ("get", NAMESPACE, "zastava-webhook-tls", true),
        ("get", NAMESPACE, "zastava-webhook-ca", false),
        ("get", NAMESPACE, key_secret.as_str(), false),
        // The backend credentials the values list, by name only.
        ("get", NAMESPACE, BACKEND_SECRET, true),
        ("watch", NAMESPACE, BACKEND_SECRET, false),
        ("list", NAMESPACE, "", false),
        ("get", "kube-system", "any", false),
        ("get", enforced.as_str(), "registry-creds", true),
        ("list", enforced.as_str(), "", false),
    ] {
        assert_eq!(
            can(&client, &webhook_sa, verb, namespace, name).await,
            allowed,
            "{webhook_sa} {verb} secret {namespace}/{name:?}"
        );
    }
    backend_credentials(&client, &cleanup, &signed).await;

    // A key Secret deleted: its key leaves the policy's status (the operator watches the
    // Secrets), and admission stops trusting it; created again, it is trusted again.
    secrets
        .delete(&key_secret, &DeleteParams::default())
        .await
        .unwrap();
    let revoked = Instant::now();
    wait_for(
        "the signed image to be denied once its key Secret is gone",
        Duration::from_secs(60),
        || async {
            matches!(
                admit(&client, &enforced, &signed).await,
                Admission::Denied(_)
            )
            .then_some(())
        },
    )
    .await;
    println!(
        "key Secret deleted: its key no longer trusted after {:.1} s",
        revoked.elapsed().as_secs_f64()
    );
    secrets
        .create(&PostParams::default(), &key())
        .await
        .unwrap();
    enforcing(&client, &enforced, &signed, &unsigned).await;

    // ---- only the apiserver may send reviews: every admission above came through it (with
    // the client certificate up.sh gave it); a caller without one is refused in the handshake.
    let webhooks = pods_of(&client, "webhook").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let ip = pods
        .get(&webhooks[0])
        .await
        .unwrap()
        .status
        .and_then(|s| s.pod_ip)
        .expect("the webhook pod has an IP");
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "forged", "operation": "CREATE", "namespace": enforced,
            "object": {"kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": signed}]}}}});
    let forged = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .post(format!("https://{ip}:8443/validate"))
        .json(&review)
        .send()
        .await;
    assert!(
        forged.is_err(),
        "a review without the apiserver's client certificate was answered: {forged:?}"
    );

    // ---- one webhook pod deleted under load: no failed admission.
    assert_eq!(webhooks.len(), 2, "{webhooks:?}");
    under_load(&client, &enforced, &signed, "webhook pod deleted", async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        pods.delete(&webhooks[0], &DeleteParams::default())
            .await
            .expect("deleting a webhook pod");
        wait_for(
            "the deleted webhook pod to be replaced",
            Duration::from_secs(120),
            || async {
                let now = pods_of(&client, "webhook").await;
                let replaced = now.len() == 2 && !now.contains(&webhooks[0]);
                let ready = all_ready(&pods, &now).await;
                (replaced && ready).then_some(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;

    print_usage("after the webhook pod loss under load");

    // ---- the operator's leader deleted: the other replica takes the Lease within the lease
    // duration; the webhook configuration and its certificate stay valid.
    let leader = wait_for("a Lease holder", Duration::from_secs(60), || {
        lease_holder(&client)
    })
    .await;
    let operators = pods_of(&client, "operator").await;
    assert_eq!(operators.len(), 2, "{operators:?}");
    assert!(
        operators.contains(&leader),
        "{leader} not among {operators:?}"
    );
    let bundle_before = vwc.webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .clone();
    let lost = Instant::now();
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("deleting the leader");
    // The standby, or the leader's replacement should it start first: any live replica.
    let new_leader = wait_for(
        "another replica to hold the Lease",
        Duration::from_secs(30),
        || async {
            let holder = lease_holder(&client).await.filter(|h| *h != leader)?;
            pods_of(&client, "operator")
                .await
                .contains(&holder)
                .then_some(holder)
        },
    )
    .await;
    let takeover = lost.elapsed();
    println!(
        "operator takeover: {new_leader} holds the Lease {:.1} s after {leader} was deleted",
        takeover.as_secs_f64()
    );
    assert!(
        takeover <= Duration::from_secs(10),
        "takeover took {takeover:?}, the lease lasts 10 s"
    );
    let vwc = webhook_configured(&client).await;
    assert_eq!(
        vwc.webhooks.as_ref().unwrap()[0].client_config.ca_bundle,
        bundle_before
    );
    enforcing(&client, &enforced, &signed, &unsigned).await;

    // ---- the observer DaemonSet: a RuntimePosture with libraries and build-ids.
    observed_libraries(&client).await;

    // ---- helm upgrade changing a value rolls the pods under load: no failed admission.
    let before = pods_of(&client, "webhook").await;
    let upgrade_values = values(json!({"webhook": {"registryTimeoutMs": 2500}}));
    under_load(&client, &enforced, &signed, "helm upgrade", async {
        let values = upgrade_values.to_str().unwrap().to_string();
        // Helm blocks; the admission loops go on beside it.
        tokio::task::spawn_blocking(move || {
            helm(&[
                "upgrade",
                RELEASE,
                CHART,
                "-n",
                NAMESPACE,
                "-f",
                &values,
                "--wait",
                "--timeout",
                "300s",
            ])
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
        wait_for(
            "the webhook pods to be replaced",
            Duration::from_secs(300),
            || async {
                let now = pods_of(&client, "webhook").await;
                let rolled = now.len() == 2 && now.iter().all(|p| !before.contains(p));
                (rolled && all_ready(&pods, &now).await).then_some(())
            },
        )
        .await;
        wait_all_ready(&client, Duration::from_secs(300)).await;
        // Past the old pods' shutdown delay and drain.
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    print_usage("after the upgrade under load");
    let after = pods_of(&client, "webhook").await;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "not rolled: {before:?} -> {after:?}"
    );

    // ---- helm uninstall: no webhook configuration left behind, pods created normally right
    // after, CRDs and policies kept.
    helm(&["uninstall", RELEASE, "-n", NAMESPACE, "--wait"])
        .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    let gone = Instant::now();
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    wait_for(
        "the webhook configuration to be deleted",
        Duration::from_secs(60),
        || async { matches!(vwcs.get_opt(WEBHOOK_CONFIG).await, Ok(None)).then_some(()) },
    )
    .await;
    println!(
        "webhook configuration gone {:.1} s after helm uninstall returned",
        gone.elapsed().as_secs_f64()
    );
    // The pull-Secret RoleBindings go with the ClusterRole that owns them.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &enforced);
    wait_for(
        "the pull-Secret RoleBinding to be deleted",
        Duration::from_secs(60),
        || async {
            matches!(
                bindings.get_opt("zastava-webhook-pull-secrets").await,
                Ok(None)
            )
            .then_some(())
        },
    )
    .await;
    let free: Api<Pod> = Api::namespaced(client.clone(), &enforced);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "after-uninstall"},
        "spec": {"containers": [{"name": "app", "image": unsigned, "command": ["sleep", "1"]}]},
    }))
    .unwrap();
    free.create(&PostParams::default(), &pod)
        .await
        .expect("an unsigned pod is created once Zastava is uninstalled");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        "zastavapolicies.zastava.stellaops.io",
        "runtimepostures.zastava.stellaops.io",
    ] {
        assert!(
            crds.get_opt(crd).await.unwrap().is_some(),
            "{crd} was removed"
        );
    }
    let policies: Api<ZastavaPolicy> = Api::all(client.clone());
    assert!(
        policies.get_opt(&policy).await.unwrap().is_some(),
        "the policy was removed"
    );

    // ---- reinstall, from the chart `make images` pushed as an OCI artifact: the policies are
    // picked up again.
    install(&chart_reference(), json!({}));
    wait_all_ready(&client, Duration::from_secs(300)).await;
    webhook_configured(&client).await;
    enforcing(&client, &enforced, &signed, &unsigned).await;

    drop(cleanup);
}

/// Whether `user` may `verb` the Secret `name` (all Secrets when empty) in `namespace`, as
/// the apiserver's authorizer answers.
/// A policy asking a backend over HTTPS (its own CA) with a token from the Secret the values
/// list: the webhook reads it under its own ServiceAccount and the backend gets it, with the
/// digest of the image; a policy naming a Secret the values do not list is told so by the
/// operator, and the webhook, which may not read it, does not call the backend.
async fn backend_credentials(client: &Client, cleanup: &Cleanup, image: &str) {
    let ns = &cleanup.backend_namespace;
    create_namespace(client, ns, json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &scanner::token_secret(BACKEND_SECRET, "in-cluster-token"),
        )
        .await
        .unwrap();
    // The host, as the pods reach it: the registry's address.
    let host = env("ZASTAVA_REGISTRY")
        .rsplit_once(':')
        .expect("registry host:port")
        .0
        .parse()
        .expect("the registry's address is an IP");
    let backend = scanner::backend(host, "in-cluster-token").await;
    let spec = |secret: &str| {
        json!({"namespaces": [ns], "verify": {"backend": {
            "url": backend.url, "required": true, "caBundle": backend.ca_pem,
            "auth": {"bearerTokenSecretRef": {"name": secret}}}}})
    };
    apply_policy(client, &cleanup.backend_policy, spec(BACKEND_SECRET)).await;
    wait_ready(client, &cleanup.backend_policy, "True").await;
    wait_for(
        "admission through the backend, with the token read under the webhook's account",
        Duration::from_secs(60),
        || async { matches!(admit(client, ns, image).await, Admission::Allowed).then_some(()) },
    )
    .await;
    let asked = backend.asked.lock().unwrap().clone();
    assert!(
        asked.iter().any(|(authorization, images)| {
            authorization == "Bearer in-cluster-token"
                && images[0].as_str().is_some_and(|i| i.contains("@sha256:"))
        }),
        "{asked:?}"
    );

    // A Secret outside webhook.backendSecrets: the operator names the chart value; the
    // webhook cannot read it, so the required backend is not asked and the pod is denied.
    let unlisted = unique("e2e-chart-unlisted");
    secrets
        .create(
            &PostParams::default(),
            &scanner::token_secret(&unlisted, "in-cluster-token"),
        )
        .await
        .unwrap();
    apply_policy(client, &cleanup.backend_policy, spec(&unlisted)).await;
    let rejected = wait_ready(client, &cleanup.backend_policy, "False").await;
    let ready = rejected
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    assert_eq!(ready.reason, "SecretNotReadable", "{ready:?}");
    let asked_before = backend.asked.lock().unwrap().len();
    let denied = wait_for(
        "the webhook to refuse a backend whose Secret it may not read",
        Duration::from_secs(60),
        || async {
            match admit(client, ns, image).await {
                Admission::Denied(message) => Some(message),
                _ => None,
            }
        },
    )
    .await;
    assert!(denied.contains("forbidden"), "{denied}");
    assert_eq!(backend.asked.lock().unwrap().len(), asked_before);

    delete_policy(client, &cleanup.backend_policy).await;
    let _ = secrets.delete(&unlisted, &DeleteParams::default()).await;
    delete_namespace(client, ns).await;
}

async fn can(client: &Client, user: &str, verb: &str, namespace: &str, name: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"user": user, "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")],
            "resourceAttributes": {"verb": verb, "resource": "secrets", "namespace": namespace, "name": name}},
    }))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

async fn all_ready(pods: &Api<Pod>, names: &[String]) -> bool {
    for name in names {
        match pods.get_opt(name).await {
            Ok(Some(p)) if zastava_e2e::install::pod_ready(&p) => {}
            _ => return false,
        }
    }
    true
}

/// The DaemonSet's observer, running with its own ServiceAccount and mounts, reports a
/// dynamically linked program with its libraries, each with the sha256 and build-id of the
/// file on the node.
async fn observed_libraries(client: &Client) {
    let ns = unique("e2e-chart-obs");
    let policy = unique("e2e-chart-obs");
    create_namespace(client, &ns, json!({})).await;
    apply_policy(
        client,
        &policy,
        json!({"mode": "Audit", "namespaces": [ns]}),
    )
    .await;
    wait_ready(client, &policy, "True").await;
    let image = TestImage::copy("ZASTAVA_DYN_IMAGE", &ns, "v1");
    deploy_image(
        client,
        &ns,
        "dyn",
        &image.by_tag(),
        &["/opt/dyn/bin/sleep", "3600"],
    )
    .await;
    let pod = running_pod(client, &ns, "dyn").await;
    let pod_name = pod.metadata.name.clone().unwrap();
    let (_, entry) = node_entry(
        client,
        &ns,
        "deployment-dyn",
        "the DaemonSet's observer reports the process with its libraries",
        Duration::from_secs(120),
        |e| {
            e.processes
                .iter()
                .any(|p| p.pod == pod_name && !p.loaded_libs.is_empty() && p.executable.is_some())
        },
    )
    .await;
    let process = entry.processes.iter().find(|p| p.pod == pod_name).unwrap();
    let root = format!("/proc/{}/root", process.pid);
    let exe = process.executable.as_ref().unwrap();
    assert_eq!(exe.path, "/opt/dyn/bin/sleep");
    assert_eq!(
        exe.build_id,
        readelf_build_id(&format!("{root}{}", exe.path))
    );
    assert!(exe.build_id.is_some());
    let libc = process
        .loaded_libs
        .iter()
        .find(|l| l.path.ends_with("/libc.so.6"))
        .unwrap_or_else(|| panic!("libc not among {:?}", process.loaded_libs));
    let file = format!("{root}{}", libc.path);
    assert_eq!(libc.sha256.as_deref(), Some(sha256sum(&file).as_str()));
    assert_eq!(libc.build_id, readelf_build_id(&file));
    assert!(libc.build_id.is_some());

    // The webhook's verifier, under the webhook's own ServiceAccount (its Lease, the pod's
    // pull Secrets, the posture's status): a verdict on what runs, written by its manager.
    let postures: Api<RuntimePosture> = Api::namespaced(client.clone(), &ns);
    let verified = wait_for(
        "the in-cluster verifier's verdict on the running image",
        Duration::from_secs(120),
        || async {
            let p = postures.get_opt("deployment-dyn").await.ok()??;
            let image = p.status.as_ref()?.images.first()?.clone();
            (image.verdict.is_some() && image.checked_at.is_some()).then_some(p)
        },
    )
    .await;
    let image = &verified.status.as_ref().unwrap().images[0];
    assert_eq!(image.verdict, Some(Verdict::Pass), "{image:?}");
    assert!(
        verified
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|f| f.manager.as_deref() == Some(zastava_webhook::verifier::FIELD_MANAGER)),
        "{:?}",
        verified.metadata.managed_fields
    );
    delete_policy(client, &policy).await;
    delete_namespace(client, &ns).await;
}
