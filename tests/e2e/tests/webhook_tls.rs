//! The operator provisions the webhook's TLS through a CertificateSigningRequest for its own
//! signer and owns the ValidatingWebhookConfiguration; deleted or edited objects heal.
//!
//! The certificate checks use the real `openssl`, an implementation independent of the one
//! that made the certificates. The names of the operator's objects default to its own
//! defaults; `ZASTAVA_WEBHOOK_CONFIG_NAME`, `ZASTAVA_WEBHOOK_TLS_SECRET` and
//! `ZASTAVA_WEBHOOK_CA_SECRET` (the operator's own variables) override them.
//!
//! Every test applies a policy of its own that governs no existing namespace: a configuration
//! with webhooks needs a policy, and the webhooks then call the webhook the e2e run serves.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_e2e::{
    apply_policy, client, delete_policy, env, http_get, kubectl, metric, unique, wait_for,
};

const HEAL: Duration = Duration::from_secs(20);
const SIGNER: &str = "zastava.stellaops.io/webhook-serving";

/// Held by the tests that replace or break the TLS Secret, so one never patches a Secret the
/// other just deleted.
static TLS_SECRET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setting(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn config_name() -> String {
    setting("ZASTAVA_WEBHOOK_CONFIG_NAME", "zastava-webhook")
}

fn tls_secret() -> String {
    setting("ZASTAVA_WEBHOOK_TLS_SECRET", "zastava-webhook-tls")
}

fn ca_secret() -> String {
    setting("ZASTAVA_WEBHOOK_CA_SECRET", "zastava-webhook-ca")
}

/// A policy that makes the configuration have webhooks without governing anything real.
async fn dormant_policy(client: &Client, name: &str, fail_open: &[&str]) {
    apply_policy(
        client,
        name,
        json!({
            "mode": "Audit",
            "namespaces": [unique("e2e-tls-nowhere")],
            "failOpenNamespaces": fail_open,
        }),
    )
    .await;
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// `openssl ARGS...` with `files` written to a fresh directory first; stdout, or the error
/// output when it fails.
fn openssl(files: &[(&str, &[u8])], args: &[&str]) -> Result<String, String> {
    let dir = std::env::temp_dir().join(unique("e2e-openssl"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let output = Command::new("openssl")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("running openssl");
    let _ = std::fs::remove_dir_all(&dir);
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The Secret, once it holds a serving certificate that chains to its `ca.crt`.
async fn valid_tls_secret(secrets: &Api<Secret>) -> Option<Secret> {
    let secret = secrets.get_opt(&tls_secret()).await.ok()??;
    let data = secret_data(&secret);
    let files = [
        ("tls.crt", data.get("tls.crt")?.as_slice()),
        ("ca.crt", data.get("ca.crt")?.as_slice()),
    ];
    openssl(&files, &["verify", "-CAfile", "ca.crt", "tls.crt"]).ok()?;
    Some(secret)
}

/// The host the configuration calls the webhook at, as `openssl` prints its SAN.
fn expected_san(vwc: &ValidatingWebhookConfiguration) -> String {
    let config = &vwc.webhooks.as_ref().unwrap()[0].client_config;
    match (&config.url, &config.service) {
        (Some(url), _) => {
            let authority = url
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap();
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap(),
                None => authority.split(':').next().unwrap(),
            };
            if host.parse::<std::net::IpAddr>().is_ok() {
                format!("IP Address:{host}")
            } else {
                format!("DNS:{host}")
            }
        }
        (None, Some(service)) => format!("DNS:{}.{}.svc", service.name, service.namespace),
        (None, None) => panic!("the webhook has neither a URL nor a Service"),
    }
}

/// The configuration once it has webhooks that trust `ca_bundle`.
async fn configuration_trusting(
    api: &Api<ValidatingWebhookConfiguration>,
    ca_bundle: &[u8],
) -> Option<ValidatingWebhookConfiguration> {
    let vwc = api.get_opt(&config_name()).await.ok()??;
    let webhooks = vwc.webhooks.as_ref()?;
    (!webhooks.is_empty()
        && webhooks
            .iter()
            .all(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(ca_bundle)))
    .then_some(vwc)
}

#[tokio::test]
async fn the_serving_certificate_is_issued_through_an_approved_csr_and_heals() {
    let _serial = TLS_SECRET.lock().await;
    let client = client().await;
    let policy = unique("e2e-tls-csr");
    dormant_policy(&client, &policy, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());

    // A fresh issuance: deleting the Secret is also how it is shown to heal.
    let before = wait_for("the webhook TLS Secret", HEAL, || {
        valid_tls_secret(&secrets)
    })
    .await;
    secrets
        .delete(&tls_secret(), &DeleteParams::default())
        .await
        .unwrap();
    let secret = wait_for("the deleted TLS Secret to come back", HEAL, || async {
        let secret = valid_tls_secret(&secrets).await?;
        (secret.metadata.uid != before.metadata.uid).then_some(secret)
    })
    .await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret_data(&secret);
    let (cert, key, bundle) = (&data["tls.crt"], &data["tls.key"], &data["ca.crt"]);
    assert!(
        key.starts_with(b"-----BEGIN PRIVATE KEY-----"),
        "tls.key is not PKCS#8 PEM"
    );
    let cert_key = openssl(
        &[("tls.crt", cert)],
        &["x509", "-in", "tls.crt", "-noout", "-pubkey"],
    )
    .unwrap();
    let key_key = openssl(&[("tls.key", key)], &["pkey", "-in", "tls.key", "-pubout"]).unwrap();
    assert_eq!(cert_key, key_key, "tls.key does not belong to tls.crt");

    // The CSR that issued it: approved with the operator's reason, for the operator's signer.
    let (csr, issued) = wait_for("the CSR that issued the certificate", HEAL, || async {
        let secret = valid_tls_secret(&secrets).await?;
        let cert = secret_data(&secret).remove("tls.crt")?;
        let list = csrs
            .list(&ListParams::default().labels(&format!(
                "zastava.stellaops.io/webhook-configuration={}",
                config_name()
            )))
            .await
            .ok()?;
        let issued = list.items.into_iter().find(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.certificate.as_ref())
                .is_some_and(|issued| issued.0 == cert)
        })?;
        Some((issued, cert))
    })
    .await;
    assert_eq!(csr.spec.signer_name, SIGNER);
    let mut usages = csr.spec.usages.clone().unwrap_or_default();
    usages.sort();
    assert_eq!(
        usages,
        ["digital signature", "key encipherment", "server auth"]
    );
    let conditions = csr.status.as_ref().unwrap().conditions.clone().unwrap();
    let approved = conditions
        .iter()
        .find(|c| c.type_ == "Approved")
        .expect("an Approved condition");
    assert_eq!(approved.status, "True");
    assert_eq!(approved.reason.as_deref(), Some("ZastavaOperatorApproved"));
    assert!(!conditions
        .iter()
        .any(|c| c.type_ == "Denied" || c.type_ == "Failed"));

    // The profile, read by openssl: the configuration's host as SAN, serving usages only.
    let vwc = wait_for("the configuration to trust the CA bundle", HEAL, || {
        configuration_trusting(&configs, bundle)
    })
    .await;
    let text = openssl(
        &[("tls.crt", &issued)],
        &["x509", "-in", "tls.crt", "-noout", "-text"],
    )
    .unwrap();
    let san = expected_san(&vwc);
    assert!(text.contains(&san), "{san} missing from\n{text}");
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");

    // The bundle holds the operator's CA.
    let ca = secrets.get(&ca_secret()).await.unwrap();
    let ca_cert = secret_data(&ca).remove("tls.crt").unwrap();
    let ca_cert = String::from_utf8(ca_cert).unwrap();
    assert!(
        String::from_utf8_lossy(bundle).contains(ca_cert.trim()),
        "ca.crt does not hold the CA of Secret {}",
        ca_secret()
    );

    let (_, metrics) = http_get(&format!("{}/metrics", env("ZASTAVA_OPERATOR_URL")))
        .await
        .expect("the operator's /metrics");
    assert!(
        metric(
            &metrics,
            r#"zastava_operator_certificate_issuance_total{result="issued"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            r#"zastava_operator_certificate_expiry_seconds{certificate="serving"}"#
        )
        .is_some_and(|s| s > 0.0),
        "{metrics}"
    );

    delete_policy(&client, &policy).await;
}

#[tokio::test]
async fn garbage_in_the_tls_secret_is_replaced_with_a_warning_event() {
    let _serial = TLS_SECRET.lock().await;
    let client = client().await;
    let policy = unique("e2e-tls-garbage");
    dormant_policy(&client, &policy, &[]).await;
    let namespace = env("ZASTAVA_NAMESPACE");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let before = wait_for("the webhook TLS Secret", HEAL, || {
        valid_tls_secret(&secrets)
    })
    .await;

    let since =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(1);
    let garbage = "-----BEGIN CERTIFICATE-----\\nnot a certificate\\n-----END CERTIFICATE-----\\n";
    kubectl(&[
        "-n",
        &namespace,
        "patch",
        "secret",
        &tls_secret(),
        "--type=merge",
        "-p",
        &format!(r#"{{"stringData":{{"tls.crt":"{garbage}"}}}}"#),
    ]);
    let healed = wait_for("a valid certificate in place of the garbage", HEAL, || {
        valid_tls_secret(&secrets)
    })
    .await;
    assert_ne!(
        secret_data(&healed)["tls.crt"],
        secret_data(&before)["tls.crt"],
        "the certificate was re-issued, not restored"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let event = wait_for("the CertificateInvalid Event", HEAL, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CertificateInvalid")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                        == Some(tls_secret().as_str())
                    && e.event_time.as_ref().is_some_and(|t| t.0 >= since)
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("tls.crt"),
        "{:?}",
        event.note
    );

    delete_policy(&client, &policy).await;
}

#[tokio::test]
async fn the_webhook_configuration_is_put_back_after_edits_and_deletion() {
    let client = client().await;
    let policy = unique("e2e-tls-drift");
    dormant_policy(&client, &policy, &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &env("ZASTAVA_NAMESPACE"));
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let secret = wait_for("the webhook TLS Secret", HEAL, || {
        valid_tls_secret(&secrets)
    })
    .await;
    let bundle = secret_data(&secret).remove("ca.crt").unwrap();
    let vwc = wait_for("the configuration to trust the CA bundle", HEAL, || {
        configuration_trusting(&configs, &bundle)
    })
    .await;
    let webhooks = vwc.webhooks.clone().unwrap();
    let closed = webhooks
        .iter()
        .position(|w| w.name == "fail-closed.zastava.stellaops.io")
        .expect("the fail-closed webhook");
    let w = &webhooks[closed];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(w.side_effects, "None");
    assert_eq!(w.admission_review_versions, ["v1"]);
    let timeout = w.timeout_seconds.unwrap();
    let edited = if timeout == 29 { 28 } else { 29 };

    // A manual edit of a field the operator owns is put back.
    kubectl(&[
        "patch",
        "validatingwebhookconfiguration",
        &config_name(),
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op":"replace","path":"/webhooks/{closed}/timeoutSeconds","value":{edited}}}]"#
        ),
    ]);
    wait_for("the edited timeoutSeconds to be put back", HEAL, || async {
        let vwc = configs.get_opt(&config_name()).await.ok()??;
        let w = vwc
            .webhooks?
            .into_iter()
            .find(|w| w.name == "fail-closed.zastava.stellaops.io")?;
        (w.timeout_seconds == Some(timeout)).then_some(())
    })
    .await;

    // A deleted configuration comes back, trusting the same CA.
    configs
        .delete(&config_name(), &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the deleted configuration to come back", HEAL, || async {
        let back = configuration_trusting(&configs, &bundle).await?;
        (back.metadata.uid != vwc.metadata.uid).then_some(())
    })
    .await;

    delete_policy(&client, &policy).await;
}

#[tokio::test]
async fn fail_open_namespaces_are_labelled_and_served_by_the_fail_open_webhook() {
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let label = |ns: &Namespace, key: &str| ns.metadata.labels.as_ref()?.get(key).cloned();

    // kube-system and Zastava's namespace are never called for.
    for system in ["kube-system".to_string(), env("ZASTAVA_NAMESPACE")] {
        wait_for(
            &format!("{system} to be labelled ignored"),
            HEAL,
            || async {
                let ns = namespaces.get(&system).await.ok()?;
                (label(&ns, "zastava.stellaops.io/ignore").as_deref() == Some("true")).then_some(())
            },
        )
        .await;
    }

    let name = unique("e2e-tls-open");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let policy = unique("e2e-tls-failopen");
    dormant_policy(&client, &policy, &[&name]).await;
    wait_for("the fail-open label", HEAL, || async {
        let ns = namespaces.get(&name).await.ok()?;
        (label(&ns, "zastava.stellaops.io/fail-open").as_deref() == Some("true")).then_some(())
    })
    .await;
    let open = wait_for("the fail-open webhook", HEAL, || async {
        configs
            .get_opt(&config_name())
            .await
            .ok()??
            .webhooks?
            .into_iter()
            .find(|w| w.name == "fail-open.zastava.stellaops.io")
    })
    .await;
    assert_eq!(open.failure_policy.as_deref(), Some("Ignore"));
    let expressions: Vec<(String, String)> = open
        .namespace_selector
        .unwrap()
        .match_expressions
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.operator))
        .collect();
    assert_eq!(
        expressions,
        [
            (
                "zastava.stellaops.io/ignore".to_string(),
                "DoesNotExist".to_string()
            ),
            (
                "zastava.stellaops.io/fail-open".to_string(),
                "Exists".to_string()
            ),
        ]
    );

    // No longer listed: the label goes.
    dormant_policy(&client, &policy, &[]).await;
    wait_for("the fail-open label to be removed", HEAL, || async {
        let ns = namespaces.get(&name).await.ok()?;
        label(&ns, "zastava.stellaops.io/fail-open")
            .is_none()
            .then_some(())
    })
    .await;

    delete_policy(&client, &policy).await;
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
}

/// A second webhook started by a test, serving the certificate of a Secret of the test's own
/// namespace (the operator manages only the shared one, so it never heals it); SIGTERM, then
/// SIGKILL, when dropped.
struct HealthWebhook {
    child: std::process::Child,
    http: String,
    log: std::path::PathBuf,
}

impl HealthWebhook {
    fn start(namespace: &str, secret: &str) -> Self {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (https, http) = (free_port(), free_port());
        let log = std::env::temp_dir().join(format!("{namespace}-webhook.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env("ZASTAVA_WEBHOOK_BIN"))
            .arg("serve")
            .env("ZASTAVA_NAMESPACE", namespace)
            .env("ZASTAVA_WEBHOOK_TLS_SECRET", secret)
            .env("ZASTAVA_WEBHOOK_ADDR", format!("127.0.0.1:{https}"))
            .env("ZASTAVA_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("ZASTAVA_SHUTDOWN_DELAY_SECONDS", "0")
            .env("ZASTAVA_TLS_SECRET_CHECK_SECONDS", "1")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting zastava-webhook");
        Self {
            child,
            http: format!("http://127.0.0.1:{http}"),
            log,
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("{}{path}", self.http)).await
    }

    async fn gauge(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        metric(&body, name)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HealthWebhook {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed serving certificate and its key (PEM), valid from `from` to `until` seconds
/// relative to now.
fn serving_pair(from: i64, until: i64) -> (String, String) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    params.not_before = shifted(now, from);
    params.not_after = shifted(now, until);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `t` moved by `seconds`, either way.
fn shifted<T>(t: T, seconds: i64) -> T
where
    T: std::ops::Add<Duration, Output = T> + std::ops::Sub<Duration, Output = T>,
{
    let by = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        t + by
    } else {
        t - by
    }
}

/// `/healthz` of the webhook follows its serving certificate: 503 while it serves an expired
/// one, 200 once the Secret holds a fresh one (reloaded through the watch), and still 200
/// for one past its renewal time that nothing renewed (a restart would not help): that is
/// reported by a gauge and a warning instead.
#[tokio::test]
async fn liveness_fails_for_an_expired_serving_certificate_only() {
    const DAY: i64 = 86_400;
    let client = client().await;
    let namespace = unique("e2e-tls-health");
    zastava_e2e::create_namespace(&client, &namespace, json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let name = "health-tls";
    let secret = |(cert, key): (String, String)| -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": cert, "tls.key": key},
        }))
        .unwrap()
    };
    // Expired yesterday.
    secrets
        .create(
            &PostParams::default(),
            &secret(serving_pair(-10 * DAY, -DAY)),
        )
        .await
        .unwrap();
    let webhook = HealthWebhook::start(&namespace, name);
    let ready = Duration::from_secs(60);
    wait_for(
        "the webhook ready with the expired certificate",
        ready,
        || async { (webhook.get("/readyz").await?.0 == 200).then_some(()) },
    )
    .await;
    let (status, body) = webhook.get("/healthz").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (503, "serving certificate expired\n"),
        "{}",
        webhook.log_text()
    );
    assert!(webhook
        .gauge("zastava_webhook_certificate_expiry_seconds")
        .await
        .is_some_and(|s| s < -(DAY as f64) + 60.0));
    assert_eq!(
        webhook
            .gauge("zastava_webhook_certificate_renewal_overdue")
            .await,
        Some(1.0)
    );

    // A fresh certificate in the Secret: the watch loads it, liveness passes.
    let fresh = secret(serving_pair(-3600, 30 * DAY));
    secrets
        .replace(name, &PostParams::default(), &fresh)
        .await
        .unwrap();
    wait_for("/healthz OK with the fresh certificate", HEAL, || async {
        (webhook.get("/healthz").await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(
        webhook
            .gauge("zastava_webhook_certificate_renewal_overdue")
            .await,
        Some(0.0)
    );
    assert!(webhook
        .gauge("zastava_webhook_certificate_expiry_seconds")
        .await
        .is_some_and(|s| s > 29.0 * DAY as f64));

    // Past its renewal time (day 20 of 25) with nothing newer in the Secret: not renewed,
    // still valid. Live, overdue, and said in the log.
    let overdue = secret(serving_pair(-20 * DAY, 5 * DAY));
    secrets
        .replace(name, &PostParams::default(), &overdue)
        .await
        .unwrap();
    wait_for("the overdue certificate loaded", HEAL, || async {
        (webhook
            .gauge("zastava_webhook_certificate_renewal_overdue")
            .await?
            == 1.0)
            .then_some(())
    })
    .await;
    wait_for("the warning that it was not renewed", HEAL, || async {
        webhook
            .log_text()
            .contains("the TLS Secret holds nothing newer: not renewed yet")
            .then_some(())
    })
    .await;
    // Several direct reads of the Secret (one a second) later, still live.
    for _ in 0..5 {
        let (status, body) = webhook.get("/healthz").await.unwrap();
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    drop(webhook);
    zastava_e2e::delete_namespace(&client, &namespace).await;
}
