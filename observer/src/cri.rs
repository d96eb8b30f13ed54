//! The container runtime's inventory through the CRI v1 gRPC API on its Unix socket.
//!
//! The few CRI messages the observer uses are declared here with `prost` derives, field
//! numbers as in the CRI `api.proto` (`runtime.v1`): protobuf skips the fields a message
//! declares but we do not, so this subset decodes the runtime's full answers. Generating the
//! whole API (the `k8s-cri` crate) needs `protoc` at build time, which `make lint`/`make unit`
//! do not have on a fresh machine.
//!
//! The shell ([`CriClient`]) only calls; turning answers into [`RuntimeContainer`],
//! [`ContainerDetails`] and [`ImageDetails`] is pure and tested. Verbose status (`info`) is
//! JSON whose container part also holds the container's environment: only `pid` and the
//! process's `args` are deserialized, everything else is skipped unread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// The CRI labels kubelet puts on every container.
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD: &str = "io.kubernetes.pod.name";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

/// The messages of `runtime.v1` the observer sends and reads.
pub mod v1 {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        #[prost(string, tag = "1")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ContainerState {
        ContainerCreated = 0,
        ContainerRunning = 1,
        ContainerExited = 2,
        ContainerUnknown = 3,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStateValue {
        #[prost(enumeration = "ContainerState", tag = "1")]
        pub state: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerFilter {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub state: Option<ContainerStateValue>,
        #[prost(string, tag = "3")]
        pub pod_sandbox_id: String,
        #[prost(map = "string, string", tag = "4")]
        pub label_selector: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersRequest {
        #[prost(message, optional, tag = "1")]
        pub filter: Option<ContainerFilter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListContainersResponse {
        #[prost(message, repeated, tag = "1")]
        pub containers: Vec<Container>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(uint32, tag = "2")]
        pub attempt: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageSpec {
        #[prost(string, tag = "1")]
        pub image: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Container {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub pod_sandbox_id: String,
        #[prost(message, optional, tag = "3")]
        pub metadata: Option<ContainerMetadata>,
        #[prost(message, optional, tag = "4")]
        pub image: Option<ImageSpec>,
        #[prost(string, tag = "5")]
        pub image_ref: String,
        #[prost(enumeration = "ContainerState", tag = "6")]
        pub state: i32,
        /// Nanoseconds since the Unix epoch.
        #[prost(int64, tag = "7")]
        pub created_at: i64,
        #[prost(map = "string, string", tag = "8")]
        pub labels: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatusRequest {
        #[prost(string, tag = "1")]
        pub container_id: String,
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<ContainerStatus>,
        /// Runtime-specific JSON, only with `verbose` (containerd: key `info`).
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ContainerStatus {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<ContainerMetadata>,
        #[prost(enumeration = "ContainerState", tag = "3")]
        pub state: i32,
        #[prost(int64, tag = "4")]
        pub created_at: i64,
        /// Nanoseconds since the Unix epoch; 0 when not started.
        #[prost(int64, tag = "5")]
        pub started_at: i64,
        #[prost(message, optional, tag = "8")]
        pub image: Option<ImageSpec>,
        /// The image by digest (`repo@sha256:...`) when the runtime knows one.
        #[prost(string, tag = "9")]
        pub image_ref: String,
        #[prost(string, tag = "17")]
        pub image_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageStatusRequest {
        #[prost(message, optional, tag = "1")]
        pub image: Option<ImageSpec>,
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageStatusResponse {
        #[prost(message, optional, tag = "1")]
        pub image: Option<Image>,
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, repeated, tag = "2")]
        pub repo_tags: Vec<String>,
        #[prost(string, repeated, tag = "3")]
        pub repo_digests: Vec<String>,
    }
}

/// A running container as the inventory lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// Restart count of the container in its pod (a restart is a new container id).
    pub attempt: u32,
    /// The image as the runtime knows it (containerd: the image id).
    pub image: String,
}

impl RuntimeContainer {
    /// A listed container with the pod identity kubelet labels it with; `None` for one that
    /// kubelet did not create (no labels: `ctr run`, another orchestrator).
    pub fn from_cri(c: &v1::Container) -> Option<Self> {
        let label = |key: &str| c.labels.get(key).filter(|v| !v.is_empty()).cloned();
        Some(RuntimeContainer {
            id: c.id.clone(),
            namespace: label(LABEL_NAMESPACE)?,
            pod: label(LABEL_POD)?,
            pod_uid: label(LABEL_POD_UID)?,
            container: label(LABEL_CONTAINER)?,
            attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
            image: c
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| c.image_ref.clone()),
        })
    }
}

/// What a container's (verbose) status adds to the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDetails {
    /// The image as the pod spec names it (`repo:tag`), as the runtime reports it.
    pub image_ref: String,
    /// `sha256:...` of the image manifest, when the runtime reports the image by digest.
    pub image_digest: Option<String>,
    /// The image id to ask the image service about.
    pub image_id: String,
    /// The container's main process on the host (from the verbose `info.pid`).
    pub pid: Option<u32>,
    /// Nanoseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// The argv the runtime started the process with (image Entrypoint+Cmd as the pod spec
    /// overrides them); only traced, never reported.
    pub args: Vec<String>,
}

/// The part of containerd's verbose container `info` that is read: nothing else (in
/// particular not `runtimeSpec.process.env` or `config.envs`) is kept.
#[derive(Deserialize)]
struct ContainerInfo {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default, rename = "runtimeSpec")]
    runtime_spec: Option<RuntimeSpec>,
}

#[derive(Deserialize)]
struct RuntimeSpec {
    #[serde(default)]
    process: Option<SpecProcess>,
}

#[derive(Deserialize)]
struct SpecProcess {
    #[serde(default)]
    args: Vec<String>,
}

impl ContainerDetails {
    pub fn from_status(response: &v1::ContainerStatusResponse) -> Self {
        let status = response.status.clone().unwrap_or_default();
        let image_ref = status
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| status.image_ref.clone());
        let info: Option<ContainerInfo> = response
            .info
            .get("info")
            .and_then(|json| serde_json::from_str(json).ok());
        let (pid, args) = match info {
            Some(info) => (
                info.pid.filter(|&p| p > 0),
                info.runtime_spec
                    .and_then(|s| s.process)
                    .map(|p| p.args)
                    .unwrap_or_default(),
            ),
            None => (None, Vec::new()),
        };
        ContainerDetails {
            image_digest: digest_of(&status.image_ref),
            image_id: if status.image_id.is_empty() {
                status.image_ref.clone()
            } else {
                status.image_id.clone()
            },
            image_ref,
            pid,
            started_at: (status.started_at > 0).then_some(status.started_at),
            args,
        }
    }
}

/// What the image's config says: the entrypoint and command (the fallback baseline when the
/// runtime does not report the process's argv) and its creation time (filesystem drift).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDetails {
    pub digest: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Unix seconds.
    pub created: Option<i64>,
}

/// containerd's verbose image `info`: `{"imageSpec": <OCI image config>}`. `config.Env` is
/// not read.
#[derive(Deserialize)]
struct ImageInfo {
    #[serde(default, rename = "imageSpec")]
    image_spec: Option<OciImage>,
}

#[derive(Deserialize)]
struct OciImage {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<OciImageConfig>,
}

#[derive(Deserialize)]
struct OciImageConfig {
    #[serde(default, rename = "Entrypoint")]
    entrypoint: Option<Vec<String>>,
    #[serde(default, rename = "Cmd")]
    cmd: Option<Vec<String>>,
}

impl ImageDetails {
    pub fn from_status(response: &v1::ImageStatusResponse) -> Self {
        let image = response.image.clone().unwrap_or_default();
        let spec = response
            .info
            .get("info")
            .and_then(|json| serde_json::from_str::<ImageInfo>(json).ok())
            .and_then(|info| info.image_spec);
        let (created, config) = match spec {
            Some(spec) => (spec.created, spec.config),
            None => (None, None),
        };
        let config = config.unwrap_or(OciImageConfig {
            entrypoint: None,
            cmd: None,
        });
        ImageDetails {
            digest: image.repo_digests.iter().find_map(|d| digest_of(d)),
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            created: created.as_deref().and_then(unix_seconds),
        }
    }
}

/// `sha256:<hex>` of a `repo@sha256:<hex>` reference.
pub fn digest_of(reference: &str) -> Option<String> {
    let (_, digest) = reference.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_string())
}

/// An RFC 3339 time as Unix seconds.
fn unix_seconds(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// The argv a container runs, by Kubernetes' rules: `command` replaces the image's
/// Entrypoint (and drops its Cmd), `args` replaces the Cmd.
pub fn effective_argv(
    image_entrypoint: &[String],
    image_cmd: &[String],
    command: Option<&[String]>,
    args: Option<&[String]>,
) -> Vec<String> {
    let (entrypoint, default_args) = match command {
        Some(command) if !command.is_empty() => (command, &[][..]),
        _ => (image_entrypoint, image_cmd),
    };
    let args = match args {
        Some(args) if !args.is_empty() => args,
        _ => default_args,
    };
    entrypoint.iter().chain(args).cloned().collect()
}

/// The runtime's name and version, e.g. `containerd` `v1.6.20`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
}

/// A CRI v1 client on the runtime's Unix socket. Cheap to clone (one HTTP/2 connection).
#[derive(Clone)]
pub struct CriClient {
    grpc: tonic::client::Grpc<Channel>,
    socket: PathBuf,
}

/// Every call gives up after this long: a hung runtime must not stall the observer.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl CriClient {
    /// Connects to the runtime listening on `socket`.
    pub async fn connect(socket: &Path) -> Result<Self> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but not used: the connector dials the socket.
        let channel =
            Endpoint::from_static("http://cri.invalid")
                .connect_timeout(CALL_TIMEOUT)
                .timeout(CALL_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|e| Error::CriConnect {
                    socket: socket.to_path_buf(),
                    cause: e.to_string(),
                })?;
        Ok(CriClient {
            grpc: tonic::client::Grpc::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    async fn unary<Req, Resp>(&self, method: &'static str, request: Req) -> Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        let call_failed = |cause: String| Error::Cri {
            socket: self.socket.clone(),
            method,
            cause,
        };
        grpc.ready().await.map_err(|e| call_failed(e.to_string()))?;
        grpc.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(method),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| call_failed(format!("{:?}: {}", status.code(), status.message())))
    }

    pub async fn version(&self) -> Result<RuntimeVersion> {
        let v: v1::VersionResponse = self
            .unary(
                "/runtime.v1.RuntimeService/Version",
                v1::VersionRequest {
                    version: "v1".into(),
                },
            )
            .await?;
        Ok(RuntimeVersion {
            name: v.runtime_name,
            version: v.runtime_version,
        })
    }

    /// The running containers kubelet made, by id.
    pub async fn running_containers(&self) -> Result<BTreeMap<String, RuntimeContainer>> {
        let list: v1::ListContainersResponse = self
            .unary(
                "/runtime.v1.RuntimeService/ListContainers",
                v1::ListContainersRequest {
                    filter: Some(v1::ContainerFilter {
                        state: Some(v1::ContainerStateValue {
                            state: v1::ContainerState::ContainerRunning as i32,
                        }),
                        ..Default::default()
                    }),
                },
            )
            .await?;
        Ok(list
            .containers
            .iter()
            .filter_map(RuntimeContainer::from_cri)
            .map(|c| (c.id.clone(), c))
            .collect())
    }

    pub async fn container_details(&self, id: &str) -> Result<ContainerDetails> {
        let status: v1::ContainerStatusResponse = self
            .unary(
                "/runtime.v1.RuntimeService/ContainerStatus",
                v1::ContainerStatusRequest {
                    container_id: id.to_string(),
                    verbose: true,
                },
            )
            .await?;
        Ok(ContainerDetails::from_status(&status))
    }

    pub async fn image_details(&self, image: &str) -> Result<ImageDetails> {
        let status: v1::ImageStatusResponse = self
            .unary(
                "/runtime.v1.ImageService/ImageStatus",
                v1::ImageStatusRequest {
                    image: Some(v1::ImageSpec {
                        image: image.to_string(),
                    }),
                    verbose: true,
                },
            )
            .await?;
        Ok(ImageDetails::from_status(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::collections::HashMap;

    fn kubelet_labels(
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
    ) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_NAMESPACE.to_string(), namespace.to_string()),
            (LABEL_POD.to_string(), pod.to_string()),
            (LABEL_POD_UID.to_string(), uid.to_string()),
            (LABEL_CONTAINER.to_string(), container.to_string()),
        ])
    }

    const DIGEST: &str = "sha256:546ff503c91158fd220e5c466494023a2c9af6c91dee86e8f98ec76a1419d618";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listed_containers_need_kubelet_labels() {
        let c = v1::Container {
            id: "abc".into(),
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            image: Some(v1::ImageSpec {
                image: "sha256:1111".into(),
            }),
            image_ref: "sha256:2222".into(),
            state: v1::ContainerState::ContainerRunning as i32,
            labels: kubelet_labels("team-a", "web-1", "uid-1", "app"),
            ..Default::default()
        };
        assert_eq!(
            RuntimeContainer::from_cri(&c),
            Some(RuntimeContainer {
                id: "abc".into(),
                namespace: "team-a".into(),
                pod: "web-1".into(),
                pod_uid: "uid-1".into(),
                container: "app".into(),
                attempt: 2,
                image: "sha256:1111".into(),
            })
        );
        let mut unlabelled = c.clone();
        unlabelled.labels.remove(LABEL_POD_UID);
        assert_eq!(RuntimeContainer::from_cri(&unlabelled), None);
        let mut no_image = c;
        no_image.image = None;
        assert_eq!(
            RuntimeContainer::from_cri(&no_image).unwrap().image,
            "sha256:2222"
        );
    }

    /// The subset decodes what the runtime sends even with fields it does not declare: a
    /// message with an unknown field (number 99) and a later known one.
    #[test]
    fn unknown_fields_are_skipped() {
        let mut bytes = v1::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }
        .encode_to_vec();
        // Field 99, wire type 2 (length-delimited), 3 bytes.
        bytes.extend([0x9a, 0x06, 3, b'x', b'y', b'z']);
        bytes.extend(
            v1::ContainerMetadata {
                name: String::new(),
                attempt: 4,
            }
            .encode_to_vec(),
        );
        let decoded = v1::ContainerMetadata::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.name, "app");
        assert_eq!(decoded.attempt, 4);
    }

    /// containerd 1.6's verbose ContainerStatus, trimmed: pid and argv are read; the
    /// environment is not kept anywhere.
    #[test]
    fn container_details_from_verbose_status() {
        let info = r#"{"sandboxID":"s1","pid":4242,"removing":false,
            "config":{"envs":[{"key":"SECRET","value":"hunter2"}],"command":["sleep"]},
            "runtimeSpec":{"process":{"args":["sleep","3600"],"env":["SECRET=hunter2"],"cwd":"/"}}}"#;
        let response = v1::ContainerStatusResponse {
            status: Some(v1::ContainerStatus {
                id: "abc".into(),
                started_at: 1_700_000_000_123_456_789,
                image: Some(v1::ImageSpec {
                    image: "127.0.0.1:5000/zastava/busybox:1.36".into(),
                }),
                image_ref: format!("127.0.0.1:5000/zastava/busybox@{DIGEST}"),
                image_id: "sha256:3333".into(),
                ..Default::default()
            }),
            info: HashMap::from([("info".to_string(), info.to_string())]),
        };
        let details = ContainerDetails::from_status(&response);
        assert_eq!(
            details,
            ContainerDetails {
                image_ref: "127.0.0.1:5000/zastava/busybox:1.36".into(),
                image_digest: Some(DIGEST.into()),
                image_id: "sha256:3333".into(),
                pid: Some(4242),
                started_at: Some(1_700_000_000_123_456_789),
                args: strings(&["sleep", "3600"]),
            }
        );
        assert!(!format!("{details:?}").contains("hunter2"));

        // Not verbose, not started, image known by id only.
        let bare = v1::ContainerStatusResponse {
            status: Some(v1::ContainerStatus {
                image_ref: "sha256:3333".into(),
                ..Default::default()
            }),
            info: HashMap::from([("info".to_string(), "not json".to_string())]),
        };
        assert_eq!(
            ContainerDetails::from_status(&bare),
            ContainerDetails {
                image_ref: "sha256:3333".into(),
                image_digest: None,
                image_id: "sha256:3333".into(),
                pid: None,
                started_at: None,
                args: Vec::new(),
            }
        );
    }

    #[test]
    fn image_details_from_verbose_status() {
        let info = r#"{"chainID":"sha256:c","imageSpec":{"created":"2023-11-14T22:13:20.5Z",
            "architecture":"amd64","config":{"Env":["PATH=/bin"],"Entrypoint":["/entry.sh"],"Cmd":["serve"]}}}"#;
        let response = v1::ImageStatusResponse {
            image: Some(v1::Image {
                id: "sha256:3333".into(),
                repo_tags: strings(&["127.0.0.1:5000/zastava/busybox:1.36"]),
                repo_digests: vec![format!("127.0.0.1:5000/zastava/busybox@{DIGEST}")],
            }),
            info: HashMap::from([("info".to_string(), info.to_string())]),
        };
        assert_eq!(
            ImageDetails::from_status(&response),
            ImageDetails {
                digest: Some(DIGEST.into()),
                entrypoint: strings(&["/entry.sh"]),
                cmd: strings(&["serve"]),
                created: Some(1_700_000_000),
            }
        );
        assert_eq!(
            ImageDetails::from_status(&v1::ImageStatusResponse::default()),
            ImageDetails::default()
        );
    }

    #[test]
    fn digests_of_references() {
        assert_eq!(
            digest_of(&format!("registry:5000/a/b@{DIGEST}")),
            Some(DIGEST.to_string())
        );
        assert_eq!(digest_of("busybox:1.36"), None);
        assert_eq!(digest_of("busybox@sha256:abc"), None);
        assert_eq!(digest_of("sha256:3333"), None);
    }

    #[test]
    fn kubernetes_command_and_args_rules() {
        let entry = strings(&["/entry.sh"]);
        let cmd = strings(&["serve", "--port=80"]);
        let command = strings(&["sleep"]);
        let args = strings(&["3600"]);
        assert_eq!(
            effective_argv(&entry, &cmd, None, None),
            strings(&["/entry.sh", "serve", "--port=80"])
        );
        assert_eq!(
            effective_argv(&entry, &cmd, Some(&command), None),
            strings(&["sleep"])
        );
        assert_eq!(
            effective_argv(&entry, &cmd, None, Some(&args)),
            strings(&["/entry.sh", "3600"])
        );
        assert_eq!(
            effective_argv(&entry, &cmd, Some(&command), Some(&args)),
            strings(&["sleep", "3600"])
        );
        assert_eq!(
            effective_argv(&[], &cmd, Some(&[]), Some(&[])),
            strings(&["serve", "--port=80"])
        );
    }
}
