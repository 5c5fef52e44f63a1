//! A small, blocking client of the Kubernetes CRI `RuntimeService` (API v1), as the
//! kubelet uses containerd's CRI plugin, built on the `k8s-cri` crate (tonic over the
//! containerd socket). Feature `cri`; building it needs `protoc` (Debian:
//! protobuf-compiler).
//!
//! [`cri_toml`] writes the CRI plugin's configuration for a private [`Containerd`]
//! (`ContainerdBuilder::enable_cri`); [`Cri::connect`] talks to its socket.
//!
//! [`Containerd`]: crate::Containerd

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use api::*;
/// The generated CRI v1 messages.
pub use k8s_cri::v1 as api;

/// Time limit of one CRI call.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The `[plugins."io.containerd.grpc.v1.cri"]` configuration for a private containerd
/// (containerd 1.6, config version 2): sandbox image `sandbox_image`, CNI plugins from
/// Debian's `/usr/lib/cni` with the conflists of `cni_conf_dir`, the runtime handler
/// `runc` (which CRI requires once any handler is declared) and one handler per
/// `(name, runtime_type)` of `handlers`, passing `com.urunc.*` pod and container
/// annotations through. `restrict_oom_score_adj` keeps the sandbox from asking for a
/// negative OOM score (root may lack CAP_SYS_RESOURCE); the streaming server listens on
/// a free port so that several such containerds can run at once.
pub fn cri_toml(sandbox_image: &str, cni_conf_dir: &Path, handlers: &[(&str, &str)]) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut toml = format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {image}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {conf}
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#,
        image = q(sandbox_image),
        conf = q(&cni_conf_dir.to_string_lossy()),
    );
    for (name, runtime_type) in handlers {
        toml.push_str(&format!(
            r#"  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
    runtime_type = {rt}
    pod_annotations = ["com.urunc.*"]
    container_annotations = ["com.urunc.*"]
"#,
            rt = q(runtime_type)
        ));
    }
    toml
}

/// A connection to a CRI `RuntimeService` on a unix socket. Every call blocks the
/// calling thread until the answer (or the 120 s call timeout).
pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl std::fmt::Debug for Cri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cri").finish_non_exhaustive()
    }
}

/// A map from string pairs (labels, annotations).
pub fn string_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pod configuration as the kubelet sends it, reduced to what matters here: metadata
/// (`name`, `uid`, namespace `default`), hostname `name`, the log directory and the
/// annotations.
pub fn pod_config(
    name: &str,
    uid: &str,
    log_directory: &Path,
    annotations: &[(&str, &str)],
) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        annotations: string_map(annotations),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A container configuration: image `image`, `args` (the image's entrypoint stays),
/// log file `log_path` (relative to the pod's log directory) and the annotations.
pub fn container_config(
    name: &str,
    image: &str,
    args: &[&str],
    log_path: &str,
    annotations: &[(&str, &str)],
) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        args: args.iter().map(|a| a.to_string()).collect(),
        log_path: log_path.to_string(),
        annotations: string_map(annotations),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

fn status_err(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow!("CRI {what}: {:?}: {}", s.code(), s.message())
}

impl Cri {
    /// Connects to the CRI service on `socket` (containerd's gRPC socket) and checks
    /// that it answers `Version`.
    pub fn connect(socket: &Path) -> Result<Cri> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let path: PathBuf = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                Endpoint::try_from("http://[::]:50051")?
                    .timeout(CALL_TIMEOUT)
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await
            })
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let cri = Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
        };
        cri.version()?;
        Ok(cri)
    }

    /// `Version`: runtime name and versions.
    pub fn version(&self) -> Result<VersionResponse> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.version(VersionRequest {
                version: "v1".to_string(),
            }))
            .map(|r| r.into_inner())
            .map_err(|s| status_err("Version", s))
    }

    /// `RunPodSandbox` with `runtime_handler`; returns the sandbox ID.
    pub fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.to_string(),
            }))
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(|s| status_err("RunPodSandbox", s))
    }

    /// `StopPodSandbox`.
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            }))
            .map(|_| ())
            .map_err(|s| status_err("StopPodSandbox", s))
    }

    /// `RemovePodSandbox`.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            }))
            .map(|_| ())
            .map_err(|s| status_err("RemovePodSandbox", s))
    }

    /// `PodSandboxStatus` (verbose: `info` carries containerd's JSON, with the pid).
    pub fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatusResponse> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: true,
            }))
            .map(|r| r.into_inner())
            .map_err(|s| status_err("PodSandboxStatus", s))
    }

    /// `ListPodSandbox` without a filter.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.list_pod_sandbox(ListPodSandboxRequest { filter: None }))
            .map(|r| r.into_inner().items)
            .map_err(|s| status_err("ListPodSandbox", s))
    }

    /// `CreateContainer` in pod `pod_id` (created from `pod`); returns the container ID.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.to_string(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            }))
            .map(|r| r.into_inner().container_id)
            .map_err(|s| status_err("CreateContainer", s))
    }

    /// `StartContainer`.
    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.start_container(StartContainerRequest {
                container_id: id.to_string(),
            }))
            .map(|_| ())
            .map_err(|s| status_err("StartContainer", s))
    }

    /// `StopContainer` with a grace period of `timeout` seconds (0: SIGKILL at once).
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.stop_container(StopContainerRequest {
                container_id: id.to_string(),
                timeout,
            }))
            .map(|_| ())
            .map_err(|s| status_err("StopContainer", s))
    }

    /// `RemoveContainer`.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.remove_container(RemoveContainerRequest {
                container_id: id.to_string(),
            }))
            .map(|_| ())
            .map_err(|s| status_err("RemoveContainer", s))
    }

    /// `ContainerStatus`.
    pub fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let mut c = self.client.clone();
        self.rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }))
            .map_err(|s| status_err("ContainerStatus", s))?
            .into_inner()
            .status
            .context("ContainerStatus without a status")
    }

    /// Polls `ContainerStatus` until the container is in `state`, for at most
    /// `timeout`; returns that status.
    pub fn wait_container_state(
        &self,
        id: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id)?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "container {id} not {state:?} within {timeout:?}; last status: {status:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}
