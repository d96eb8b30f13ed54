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

pub mod histogram;
pub mod install;
pub mod observer;
pub mod webhook;

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
    // rustls is linked with both ring and aws-lc-rs here; kube needs the choice made.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default()
        .await
        .expect("a client from the local cluster's kubeconfig")
}

/// `prefix-<suffix>`, unique across test runs and tests, valid as a Kubernetes name.
/// The time tells runs apart, the counter tests of one run that ask in the same microsecond.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{prefix}-{:x}{:05x}{n:x}",
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

/// A fresh cosign key pair made by the real `cosign generate-key-pair`, kept in a temporary
/// directory (removed on drop) so images can be signed with it.
pub struct CosignKeys {
    dir: PathBuf,
    pub public_pem: String,
}

impl CosignKeys {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(unique("cosign"));
        std::fs::create_dir_all(&dir).unwrap();
        run_tool(
            Command::new(env("COSIGN"))
                .arg("generate-key-pair")
                .current_dir(&dir)
                .env("COSIGN_PASSWORD", ""),
        );
        let public_pem = std::fs::read_to_string(dir.join("cosign.pub")).unwrap();
        Self { dir, public_pem }
    }

    /// `cosign sign --key` of `image` (by digest) against the local registry, no tlog.
    pub fn sign(&self, image: &str) {
        self.sign_with(image, &[]);
    }

    /// The same, the signature stored as an OCI 1.1 referrer of the image (cosign's
    /// experimental `--registry-referrers-mode=oci-1-1`; on a registry without the referrers
    /// API that is the `sha256-<hex>` referrers tag, and no `.sig` tag).
    pub fn sign_as_referrer(&self, image: &str) {
        self.sign_with(image, &["--registry-referrers-mode=oci-1-1"]);
    }

    fn sign_with(&self, image: &str, extra: &[&str]) {
        let mut command = Command::new(env("COSIGN"));
        command
            .args([
                "sign",
                "--key",
                "cosign.key",
                "--tlog-upload=false",
                "--allow-http-registry",
                "--allow-insecure-registry",
                "-y",
            ])
            .args(extra)
            .arg(image)
            .current_dir(&self.dir)
            .env("COSIGN_PASSWORD", "");
        if !extra.is_empty() {
            // The referrers mode is behind cosign's experimental switch.
            command.env("COSIGN_EXPERIMENTAL", "1");
        }
        run_tool(&mut command);
    }
}

impl Drop for CosignKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cosign public key PEM (the private half is thrown away).
pub fn cosign_public_key() -> String {
    CosignKeys::generate().public_pem.clone()
}

/// An image in the local registry: a copy of the cluster's test image under a repository of
/// its own, so signatures and SBOMs attached to it concern this test only.
pub struct TestImage {
    /// `registry/repository`.
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

impl TestImage {
    /// Copies the test image (busybox) to `<registry>/e2e/<name>:<tag>` with the real
    /// `oras cp`.
    pub fn push(name: &str, tag: &str) -> Self {
        Self::copy("ZASTAVA_TEST_IMAGE", name, tag)
    }

    /// Copies the cluster's image `$<source>` (digest in `$<source>_DIGEST`) to
    /// `<registry>/e2e/<name>:<tag>`; `ZASTAVA_DYN_IMAGE` is busybox plus a dynamically
    /// linked `/opt/dyn/bin/sleep` and its libraries.
    pub fn copy(source: &str, name: &str, tag: &str) -> Self {
        let repository = format!("{}/e2e/{name}", env("ZASTAVA_REGISTRY"));
        run_tool(Command::new(env("ORAS")).args([
            "cp",
            "--from-plain-http",
            "--to-plain-http",
            &env(source),
            &format!("{repository}:{tag}"),
        ]));
        Self {
            repository,
            tag: tag.to_string(),
            digest: env(&format!("{source}_DIGEST")),
        }
    }

    pub fn by_tag(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    pub fn by_digest(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }

    /// Attaches a CycloneDX SBOM as a referrer with the real `oras attach`.
    pub fn attach_sbom(&self) {
        self.attach_cyclonedx(
            r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"application","name":"busybox","version":"1.35"}]}"#,
        );
    }

    /// Attaches `document` as a CycloneDX SBOM referrer with the real `oras attach`.
    pub fn attach_cyclonedx(&self, document: &str) {
        let dir = std::env::temp_dir().join(unique("sbom"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sbom.json"), document).unwrap();
        run_tool(
            Command::new(env("ORAS"))
                .args([
                    "attach",
                    "--plain-http",
                    "--artifact-type",
                    "application/vnd.cyclonedx+json",
                    &self.by_digest(),
                    "sbom.json:application/vnd.cyclonedx+json",
                ])
                .current_dir(&dir),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn run_tool(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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

/// `kubectl apply -f -` of `manifest`: `Ok(stderr)` (where kubectl prints the admission
/// warnings) when applied, `Err(stderr)` (the denial) when not.
pub fn kubectl_apply(manifest: &str) -> Result<String, String> {
    kubectl_apply_args(manifest, &[])
}

/// [`kubectl_apply`] with extra arguments (e.g. `--dry-run=server`).
pub fn kubectl_apply_args(manifest: &str, args: &[&str]) -> Result<String, String> {
    use std::io::Write;
    let cache = std::env::temp_dir().join(format!("zastava-e2e-kube-cache-{}", std::process::id()));
    let mut child = Command::new("kubectl")
        .arg(format!("--cache-dir={}", cache.display()))
        .args(["apply", "-f", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// Creates namespace `name` with `labels` and waits for its `default` ServiceAccount (pods are
/// refused until the controller-manager made it).
pub async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&Default::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait_for(
        &format!("ServiceAccount default in {name}"),
        Duration::from_secs(60),
        || async { accounts.get_opt("default").await.ok()?.map(|_| ()) },
    )
    .await;
}

pub async fn delete_namespace(client: &Client, name: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
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
            // The shared operator owns the webhook's TLS and configuration; a replica on a
            // Lease of its own must not manage them too.
            .env("ZASTAVA_MANAGE_WEBHOOK", "false")
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

/// Runs `tests/e2e/daemon.sh start` or `stop registry`: the local registry, stopped to see an
/// outage and started again.
fn registry_daemon(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/daemon.sh");
    let mut command = Command::new("bash");
    command.arg(script).arg(action);
    if action == "stop" {
        command.arg("registry");
    }
    assert!(
        command.status().expect("running daemon.sh").success(),
        "daemon.sh {action} registry failed"
    );
}

/// The registry stopped; started again when this is dropped, even when an assertion fails,
/// so later tests find it up. A test binary that stops it runs alone (the tests beside it
/// would see the outage too).
pub struct RegistryDown;

impl RegistryDown {
    pub fn stop() -> Self {
        registry_daemon("stop");
        Self
    }
}

impl Drop for RegistryDown {
    fn drop(&mut self) {
        registry_daemon("start");
    }
}
