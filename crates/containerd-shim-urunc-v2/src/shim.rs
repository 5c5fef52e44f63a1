//! The shim binary's lifecycle: `start` (spawn or reuse the shim of the pod), the
//! long-running server, and `delete` (clean up after a shim that died).

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{socket_address, spawn, Config, ExitSignal, Flags, Shim, StartOpts};

use crate::events::Events;
use crate::service::{cleanup_after_shim, Service};

/// The CRI annotation naming a container's pod sandbox: containers of one pod share a
/// shim, as with containerd's runc v2 shim.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct UruncShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

/// The group a container's shim is shared by: its pod, else the container alone.
pub fn grouping_id(spec: Option<&serde_json::Value>, id: &str) -> String {
    spec.and_then(|s| s["annotations"][SANDBOX_ID_ANNOTATION].as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string()
}

impl Shim for UruncShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        UruncShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory.
        let spec: Option<serde_json::Value> = std::fs::read("config.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let grouping = grouping_id(spec.as_ref(), &opts.id);
        // The pod's shim already serves this group: hand out its address instead of
        // spawning a shim that would only find the socket taken and exit (a flood of
        // such short-lived children made `start` spin in the crate's signal teardown).
        let existing = socket_address(&opts.address, &opts.namespace, &grouping);
        let path = existing.strip_prefix("unix://").unwrap_or(&existing);
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            write_address(&existing)?;
            return Ok(existing);
        }
        let (child, address) = spawn(opts, &grouping, Vec::new())?;
        // Best effort, as root lacking CAP_SYS_RESOURCE may not change some of it.
        if let Err(e) = containerd_shim::cgroup::set_cgroup_and_oom_score(child) {
            eprintln!("containerd-shim-urunc-v2: shim cgroup/oom score: {e}");
        }
        write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        cleanup_after_shim(&self.namespace, &self.id, &self.bundle)
            .map_err(|e| containerd_shim::Error::Other(e.msg))
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Our own sender reconnects after a containerd restart; the crate's does not.
        drop(publisher);
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Events::start(address, self.namespace.clone());
        Service::new(&self.namespace, self.exit.clone(), events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_share_a_shim() {
        let spec = serde_json::json!({"annotations": {SANDBOX_ID_ANNOTATION: "pod1"}});
        assert_eq!(grouping_id(Some(&spec), "c1"), "pod1");
        let spec = serde_json::json!({"annotations": {"other": "x"}});
        assert_eq!(grouping_id(Some(&spec), "c1"), "c1");
        assert_eq!(grouping_id(None, "c1"), "c1");
    }
}
