//! The harness of the end-to-end tests: the real local cluster that `tests/e2e/run.sh` brings
//! up, the operator it runs, and the waiting and applying every test needs.
//!
//! The tests share the cluster; each works in namespaces and objects named after itself with
//! a unique suffix, and removes them at the end.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use zastava_crds::ZastavaPolicy;

pub const FIELD_MANAGER: &str = "zastava-e2e";

/// A variable `tests/e2e/run.sh` exports; missing means the tests were not started by it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the end-to-end tests need the local cluster and operator that \
             `make e2e` (tests/e2e/run.sh) starts; run them through it"
        )
    })
}

pub async fn client() -> Client {
    env("KUBECONFIG");
    Client::try_default()
        .await
        .expect("a client from the local cluster's kubeconfig")
}

/// `prefix-<suffix>`, unique across test runs and tests, valid as a Kubernetes name.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{:x}{:05x}",
        std::process::id() & 0xfff,
        nanos >> 12
    )
}

/// Polls `probe` every 250 ms until it returns `Some`, tolerating API errors (which a probe
/// turns into `None`); panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates or updates a ZastavaPolicy by server-side apply, as `kubectl apply` would.
pub async fn apply_policy(client: &Client, name: &str, spec: serde_json::Value) -> ZastavaPolicy {
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    let object = json!({
        "apiVersion": "zastava.stellaops.io/v1alpha1",
        "kind": "ZastavaPolicy",
        "metadata": { "name": name },
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying ZastavaPolicy {name}: {e}"))
}

pub fn condition<'a>(policy: &'a ZastavaPolicy, type_: &str) -> Option<&'a Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the operator has reconciled the current generation of `name` and its `Ready`
/// condition has `status` ("True"/"False").
pub async fn wait_ready(client: &Client, name: &str, status: &str) -> ZastavaPolicy {
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    wait_for(
        &format!("ZastavaPolicy {name} Ready={status} at its current generation"),
        Duration::from_secs(60),
        || async {
            let policy = api.get_opt(name).await.ok()??;
            let observed = policy.status.as_ref()?.observed_generation;
            let ready = condition(&policy, "Ready")?;
            (observed == policy.metadata.generation && ready.status == status).then_some(policy)
        },
    )
    .await
}

pub async fn delete_policy(client: &Client, name: &str) {
    let api: Api<ZastavaPolicy> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    wait_for(
        &format!("ZastavaPolicy {name} to be gone"),
        Duration::from_secs(30),
        || async { matches!(api.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await;
}

/// A fresh cosign key pair made by the real `cosign generate-key-pair`; returns the public PEM.
pub fn cosign_public_key() -> String {
    let dir = std::env::temp_dir().join(unique("cosign"));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env("COSIGN"))
        .arg("generate-key-pair")
        .current_dir(&dir)
        .env("COSIGN_PASSWORD", "")
        .stdin(Stdio::null())
        .output()
        .expect("running cosign");
    assert!(
        output.status.success(),
        "cosign generate-key-pair failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = std::fs::read_to_string(dir.join("cosign.pub")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    pem
}

/// `kubectl ARGS...` against the local cluster; panics with its stderr when it fails.
///
/// Each test process gets a discovery cache of its own: kubectl keeps discovery for ten
/// minutes and does not refresh it for an unknown short name, so a cache from before the CRDs
/// were installed would make `kubectl get rp` fail.
pub fn kubectl(args: &[&str]) -> String {
    let cache = std::env::temp_dir().join(format!("zastava-e2e-kube-cache-{}", std::process::id()));
    let output = Command::new("kubectl")
        .arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// GET `url` over plain HTTP: status code and body, or `None` when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The value of an unlabelled (or fully labelled) sample in a Prometheus text exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The shared operator `run.sh` started.
pub fn operator_pid() -> u32 {
    let file = env("ZASTAVA_OPERATOR_PID");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        })
}

/// An extra operator replica started by a test; stopped with SIGTERM when dropped.
pub struct OperatorReplica {
    child: Child,
    pub identity: String,
    pub url: String,
    pub log: PathBuf,
}

impl OperatorReplica {
    pub fn start(identity: &str, port: u16, lease: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env("ZASTAVA_OPERATOR_BIN"))
            .env("ZASTAVA_NAMESPACE", env("ZASTAVA_NAMESPACE"))
            .env("ZASTAVA_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("POD_NAME", identity)
            .env("ZASTAVA_LEASE_NAME", lease)
            .env("ZASTAVA_LEASE_DURATION_SECONDS", "6")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting zastava-operator");
        Self {
            child,
            identity: identity.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait; returns whether it exited successfully within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorReplica {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) && !self.terminate(Duration::from_secs(10))
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
