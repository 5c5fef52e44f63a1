//! The shim binary's lives, as containerd's shim v2 protocol runs it:
//!
//! - `start`, in the bundle directory: print the address of the ttrpc socket that will
//!   serve the container. The shim of the container's pod is reused when it runs.
//!   Otherwise the socket is bound here and the process forks: the child serves it, the
//!   parent prints the address and exits.
//! - no action, with `-socket`: serve that socket (how the crate and containerd's Go
//!   shims start their server, by re-executing themselves; kept for callers that do).
//! - `delete`: clean up after a shim that is gone.
//!
//! Forking instead of re-executing saves loading the binary a second time (about a
//! millisecond on every container start), and containerd can connect at once: the
//! socket listens before `start` exits, and the child answers once its service is up.
//! The fork is safe because `start` has a single thread until then.

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::protos::create_task;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::Server;
use containerd_shim::protos::Task;
use containerd_shim::util::write_address;
use containerd_shim::{socket_address, ExitSignal, Flags};

use crate::events::Events;
use crate::reaper;
use crate::service::{cleanup_after_shim, Service};

/// The CRI annotation naming a container's pod sandbox: containers of one pod share a
/// shim, as with containerd's runc v2 shim.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// containerd's ttrpc address, in the environment it gives shims.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// How long an exiting shim waits for its last events to be delivered.
const EVENTS_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, String>;

/// The group a container's shim is shared by: its pod, else the container alone.
pub fn grouping_id(spec: Option<&serde_json::Value>, id: &str) -> String {
    spec.and_then(|s| s["annotations"][SANDBOX_ID_ANNOTATION].as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// Runs the action the command line asks for; returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let result = containerd_shim::parse(args)
        .map_err(|e| e.to_string())
        .and_then(|flags| {
            if flags.namespace.is_empty() {
                return Err("-namespace is required".into());
            }
            match flags.action.as_str() {
                "start" => start(&flags),
                "delete" => delete(&flags),
                "" if !flags.socket.is_empty() => {
                    let path = socket_path(&flags.socket).to_path_buf();
                    let ttrpc = ttrpc_address()?;
                    match listen(&path)? {
                        Some(listener) => serve(&flags, &ttrpc, listener, &path),
                        // A live shim serves it already: nothing to do.
                        None => Ok(()),
                    }
                }
                "" => Err("-socket is required to serve".into()),
                other => Err(format!(
                    "unknown action {other:?}: expected start or delete"
                )),
            }
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: {e}", crate::RUNTIME_ID);
            1
        }
    }
}

fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

fn ttrpc_address() -> Result<String> {
    std::env::var(TTRPC_ADDRESS).map_err(|_| format!("{TTRPC_ADDRESS} is not set"))
}

fn start(flags: &Flags) -> Result<()> {
    // Read before the fork, so that a shim without it fails where containerd sees it.
    let ttrpc = ttrpc_address()?;
    // containerd runs `start` in the bundle directory.
    let spec: Option<serde_json::Value> = std::fs::read("config.json")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let grouping = grouping_id(spec.as_ref(), &flags.id);
    let address = socket_address(&flags.address, &flags.namespace, &grouping);
    let path = socket_path(&address).to_path_buf();
    let Some(listener) = listen(&path)? else {
        // The pod's shim already serves this group: hand out its address.
        return print_address(&address);
    };
    // SAFETY: this process has one thread; the child only continues as the server.
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "fork the shim: {}",
            std::io::Error::last_os_error()
        )),
        0 => {
            let status = match detach().and_then(|()| serve(flags, &ttrpc, listener, &path)) {
                Ok(()) => 0,
                Err(e) => {
                    // containerd then finds nothing listening at the address it got.
                    log::error!("shim: {e}");
                    let _ = std::fs::remove_file(&path);
                    1
                }
            };
            std::process::exit(status)
        }
        child => {
            drop(listener);
            // Best effort, as root lacking CAP_SYS_RESOURCE may not change some of it.
            // Done before the address is out: containerd sends nothing until it has it.
            if let Err(e) = containerd_shim::cgroup::set_cgroup_and_oom_score(child as u32) {
                eprintln!("{}: shim cgroup/oom score: {e}", crate::RUNTIME_ID);
            }
            print_address(&address)
        }
    }
}

/// Binds the group's socket, or None when a live shim already listens on it (a
/// socket file nobody answers on is left from a shim that died, and replaced).
fn listen(path: &Path) -> Result<Option<UnixListener>> {
    if UnixStream::connect(path).is_ok() {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let bind = || UnixListener::bind(path).map_err(|e| (e.kind(), e.to_string()));
    match bind() {
        Ok(l) => Ok(Some(l)),
        Err((std::io::ErrorKind::AddrInUse, _)) => {
            // Another `start` of the same pod may have just bound it.
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            let _ = std::fs::remove_file(path);
            bind()
                .map(Some)
                .map_err(|(_, e)| format!("bind {}: {e}", path.display()))
        }
        Err((_, e)) => Err(format!("bind {}: {e}", path.display())),
    }
}

/// What containerd reads: the address on stdout, without a newline, and in the
/// bundle's `address` file.
fn print_address(address: &str) -> Result<()> {
    write_address(address).map_err(|e| format!("write the address file: {e}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("write the address: {e}"))
}

/// The serving child leaves `start`'s process group and standard streams:
/// containerd reads `start`'s output until every holder of the pipe has closed it.
fn detach() -> Result<()> {
    // SAFETY: setpgid and open/dup2 on descriptors this process owns.
    unsafe {
        libc::setpgid(0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return Err(format!(
                "open /dev/null: {}",
                std::io::Error::last_os_error()
            ));
        }
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 2 {
            libc::close(null);
        }
    }
    Ok(())
}

/// Serves the task API on `listener` until containerd's Shutdown, then removes the
/// socket; events go to containerd's ttrpc address `ttrpc`.
fn serve(flags: &Flags, ttrpc: &str, listener: UnixListener, path: &Path) -> Result<()> {
    reaper::block_signals().map_err(|e| format!("block signals: {e}"))?;
    // The shim's log goes to the `log` FIFO containerd reads in the bundle directory.
    containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
        .map_err(|e| format!("open the shim log: {e}"))?;
    reaper::start().map_err(|e| format!("start the reaper: {e}"))?;
    let exit = Arc::new(ExitSignal::default());
    let events = Events::start(ttrpc.to_string(), flags.namespace.clone());
    let service: Box<dyn Task + Send + Sync> =
        Box::new(Service::new(&flags.namespace, exit.clone(), events.clone()));
    let mut server = Server::new()
        .add_listener(listener.into_raw_fd())
        .map_err(|e| format!("serve {}: {e}", path.display()))?
        .register_service(create_task(Arc::from(service)));
    server
        .start()
        .map_err(|e| format!("serve {}: {e}", path.display()))?;
    exit.wait();
    log::info!("shutting down");
    // The last events (TaskDelete, TaskExit) reach containerd before the shim is gone.
    events.flush(EVENTS_FLUSH_TIMEOUT);
    server.shutdown();
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn delete(flags: &Flags) -> Result<()> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().map_err(|e| format!("current directory: {e}"))?
    } else {
        PathBuf::from(&flags.bundle)
    };
    // Cleaning up may run urunc, whose exit the reaper collects.
    reaper::block_signals()
        .and_then(|()| reaper::start())
        .map_err(|e| format!("start the reaper: {e}"))?;
    let response = cleanup_after_shim(&flags.namespace, &flags.id, &bundle).map_err(|e| e.msg)?;
    remove_dead_socket(&bundle);
    let mut out = std::io::stdout().lock();
    response
        .write_to_writer(&mut out)
        .map_err(|e| format!("write the delete response: {e}"))?;
    out.flush()
        .map_err(|e| format!("write the delete response: {e}"))
}

/// The socket of a shim that died without its shutdown (killed, OOM) stays behind in
/// /run/containerd/s; containerd runs `delete` after such a death. It goes when nothing
/// listens on it any more: a pod's shim that still serves other containers keeps it.
fn remove_dead_socket(bundle: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = socket_path(address.trim());
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    let refused = matches!(
        UnixStream::connect(path),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if is_socket && refused {
        let _ = std::fs::remove_file(path);
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

    #[test]
    fn a_live_socket_is_reused_and_a_dead_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s").join("shim.sock");
        let first = listen(&path).unwrap().expect("nothing listened yet");
        assert!(listen(&path).unwrap().is_none(), "a live shim is reused");
        drop(first);
        // The socket file of a shim that died: nobody answers on it.
        assert!(path.exists());
        let second = listen(&path).unwrap();
        assert!(second.is_some(), "a dead socket is replaced");
    }

    #[test]
    fn delete_removes_a_dead_shims_socket_and_keeps_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path();
        let path = bundle.join("shim.sock");
        std::fs::write(bundle.join("address"), format!("unix://{}", path.display())).unwrap();
        let live = UnixListener::bind(&path).unwrap();
        remove_dead_socket(bundle);
        assert!(path.exists(), "a shim still listens on it");
        drop(live);
        remove_dead_socket(bundle);
        assert!(!path.exists(), "nobody listens: it goes");
        // Not a socket: left alone whatever the address file says.
        std::fs::write(&path, "x").unwrap();
        remove_dead_socket(bundle);
        assert!(path.exists());
    }
}
