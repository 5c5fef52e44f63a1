//! Container state on disk: one directory per container under the runtime root,
//! holding `urunc-state.json` (written atomically), the exec FIFO while the container
//! is created-but-not-started, and the mount point of the monitor's root. The status
//! is never stored: it is derived from the live process every time it is read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::plan::Plan;
use crate::sys::process;

pub const STATE_FILE: &str = "urunc-state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const VM_ROOT: &str = "vmroot";
/// Why the container process could not start the monitor (written by it for `start`).
pub const START_ERROR: &str = "start-error";
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container process (the monitor once started); 0 while creating.
    pub pid: i32,
    /// Start time of `pid`, which tells it apart from a later process with the same pid.
    pub pid_start: u64,
    /// RFC 3339.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_dirs: Vec<PathBuf>,
    pub plan: Option<Plan>,
    /// True once `create` finished (all hooks ran, the process waits for `start`).
    pub created_ok: bool,
    /// The `urunc create` making the container (pid and start time): until
    /// `created_ok` the container is "creating" while it lives, "stopped" once it died.
    #[serde(default)]
    pub creator: i32,
    #[serde(default)]
    pub creator_start: u64,
    /// The spec's poststart and poststop hooks as `create` read them (the runtime runs
    /// the configuration it was created with; `start` and `delete` need not parse the
    /// bundle again). None in a state written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_hooks: Option<LateHooks>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LateHooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<oci_spec::runtime::Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<oci_spec::runtime::Hook>,
}

/// The OCI state as printed by `urunc state` (runc's shape: containerd parses it).
#[derive(Debug, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// The directory of one container.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub path: PathBuf,
}

pub fn validate_id(id: &str) -> Result<()> {
    let bad = |msg: &str| {
        Err(Error::InvalidId {
            id: id.into(),
            msg: msg.into(),
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id == "." || id == ".." {
        return bad("reserved name");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
    {
        return bad("only letters, digits, '_', '-', '.' and '+' are allowed");
    }
    Ok(())
}

impl StateDir {
    pub fn new(root: &Path, id: &str) -> Result<Self> {
        validate_id(id)?;
        Ok(StateDir {
            path: root.join(id),
        })
    }

    /// Reserves the id: the directory appears (rename with `RENAME_NOREPLACE`) already
    /// holding `state` and locked by the caller, so a concurrent command never finds it
    /// empty (an empty directory would be taken for runc's, and runc's `delete` removes
    /// it) and the commands that change a container wait until `create` is done. Fails
    /// if the id is taken (by us or by runc).
    pub fn reserve(root: &Path, id: &str, state: &State) -> Result<(Self, Lock)> {
        let dir = Self::new(root, id)?;
        std::fs::create_dir_all(root).ctx(|| format!("create state root {root:?}"))?;
        sweep(root);
        let tmp = root.join(format!("{RESERVING}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).ctx(|| format!("create {tmp:?}"))?;
        let made = (|| {
            let file = std::fs::File::open(&tmp).ctx(|| format!("open {tmp:?}"))?;
            flock(&file, libc::LOCK_EX).ctx(|| format!("lock {tmp:?}"))?;
            let staged = StateDir { path: tmp.clone() };
            staged.save(state)?;
            rename_noreplace(&tmp, &dir.path).map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Error::Exists { id: id.into() },
                _ => Error::Io {
                    context: format!("rename {tmp:?} to {:?}", dir.path),
                    err: e,
                },
            })?;
            Ok(Lock { _file: file })
        })();
        match made {
            Ok(lock) => Ok((dir, lock)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }
    pub fn fifo(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }
    pub fn vm_root(&self) -> PathBuf {
        self.path.join(VM_ROOT)
    }

    /// True when urunc (not runc) owns this id.
    pub fn is_ours(&self) -> bool {
        self.state_file().exists()
    }

    pub fn load(&self, id: &str) -> Result<State> {
        let text = match std::fs::read_to_string(self.state_file()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { id: id.into() })
            }
            Err(e) => return Err(e).ctx(|| format!("read {:?}", self.state_file())),
        };
        serde_json::from_str(&text)
            .map_err(|e| Error::Other(format!("{:?} is corrupt: {e}", self.state_file())))
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let json = serde_json::to_vec_pretty(state).expect("state serialises");
        write_atomic(&self.state_file(), &json)
    }

    /// The state file again, when the `create` that wrote `state` finished it.
    fn reread_created(&self, state: &State) -> Option<State> {
        self.load(&state.id).ok().filter(|now| now.created_ok)
    }

    pub fn status(&self, state: &State) -> Status {
        self.observe(state).0
    }

    /// The status, and the newer state it was decided on when `state` was read during
    /// a `create` that has finished since.
    fn observe(&self, state: &State) -> (Status, Option<State>) {
        if !state.created_ok && state.creator > 0 {
            if process::is_alive(state.creator, state.creator_start) {
                return (Status::Creating, None);
            }
            // That `create` ended since `state` was read: it finished (read it again),
            // or it was killed half-way, leaving a container that never was. One look
            // at the creator decides both, so its exit between two looks cannot turn
            // a finished container into a stopped one.
            return match self.reread_created(state) {
                Some(now) => (self.observe(&now).0, Some(now)),
                None => (Status::Stopped, None),
            };
        }
        (self.process_status(state), None)
    }

    /// The status of a container whose `create` is not running (finished or never
    /// recorded): from its process, FIFO and freezer.
    fn process_status(&self, state: &State) -> Status {
        if state.pid <= 0 {
            return if state.created_ok {
                Status::Stopped
            } else {
                Status::Creating
            };
        }
        if !process::is_alive(state.pid, state.pid_start) {
            return Status::Stopped;
        }
        if !state.created_ok {
            Status::Creating
        } else if self.fifo().exists() {
            Status::Created
        } else if crate::sys::cgroups::is_frozen(&state.cgroup_dirs) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, state: &State) -> OciState {
        let (status, now) = self.observe(state);
        let state = now.as_ref().unwrap_or(state);
        OciState {
            oci_version: OCI_VERSION.into(),
            id: state.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                state.pid
            },
            bundle: state.bundle.clone(),
            rootfs: state.rootfs.clone(),
            created: state.created.clone(),
            annotations: state.annotations.clone(),
        }
    }

    /// Takes the container's lock: an exclusive `flock` on its state directory, held by
    /// the operations that change a container (`start`, `kill`, `delete`, `pause`,
    /// `resume`) so that two of them never interleave (two `delete --force`, or a
    /// `delete` during a `start`). Blocks until the holder is done. When the directory
    /// was removed (or removed and made again by a new `create`) while we waited, the
    /// container we were asked about is gone: [`Error::NotFound`].
    pub fn lock(&self, id: &str) -> Result<Lock> {
        use std::os::unix::fs::MetadataExt;
        let gone = || Error::NotFound { id: id.into() };
        loop {
            let file = match std::fs::File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
                Err(e) => return Err(e).ctx(|| format!("open {:?}", self.path)),
            };
            flock(&file, libc::LOCK_EX).ctx(|| format!("lock {:?}", self.path))?;
            let held = file.metadata().ctx(|| format!("stat {:?}", self.path))?;
            match std::fs::metadata(&self.path) {
                Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                    return Ok(Lock { _file: file })
                }
                // Replaced by a new container of the same id: lock that one instead.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
                Err(e) => return Err(e).ctx(|| format!("stat {:?}", self.path)),
            }
        }
    }

    /// Removes the directory. It is first renamed away, so it disappears at once: a
    /// half-emptied directory without our state file would be taken for runc's.
    pub fn remove(&self) -> Result<()> {
        let root = self.path.parent().unwrap_or(Path::new("/"));
        sweep(root);
        let doomed = root.join(format!("{REMOVING}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&doomed);
        let path = match std::fs::rename(&self.path, &doomed) {
            Ok(()) => &doomed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Removed in place, then (e.g. a root that refuses renames).
            Err(_) => &self.path,
        };
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).ctx(|| format!("remove state directory {:?}", self.path))
            }
            _ => Ok(()),
        }
    }
}

/// A held container lock (see [`StateDir::lock`]); released when dropped (and by the
/// kernel if the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

impl std::os::fd::AsRawFd for Lock {
    /// For a cloned child to close: a copy of the descriptor would hold the lock too.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self._file.as_raw_fd()
    }
}

/// Name prefix (then the pid) of a directory being made into a container's; `~` is not
/// allowed in ids, so it never names a container.
const RESERVING: &str = ".reserving~";
/// Name prefix (then the pid) of a container's directory being removed.
const REMOVING: &str = ".removing~";

/// `flock(op)`, retried when interrupted.
fn flock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths. The raw system call: musl's libc has
    // no renameat2 wrapper before 1.2.5.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes what a `create` or `delete` killed half-way left in `root`: a reservation
/// not yet renamed into place, or a directory renamed away and not yet removed. Done
/// by every `create` and `delete`.
pub fn sweep(root: &Path) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| {
                n.strip_prefix(RESERVING)
                    .or_else(|| n.strip_prefix(REMOVING))
            })
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() as i32 && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Write-to-temporary then swap into place, so readers never see half a file. An
/// existing file is exchanged with the new one (`RENAME_EXCHANGE`) and then unlinked,
/// rather than renamed over: ext4 writes a file's data back before a rename that
/// replaces another returns (`auto_da_alloc`; 0.2 to 4 ms per save on this project's
/// machines), which state under `/run` never needs. A plain rename when there is
/// nothing to exchange with, or the filesystem cannot exchange.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).ctx(|| format!("write {tmp:?}"))?;
    f.write_all(data).ctx(|| format!("write {tmp:?}"))?;
    drop(f);
    if renameat2(&tmp, path, libc::RENAME_EXCHANGE).is_ok() {
        // `tmp` now holds the old content; the new one is in place whatever happens.
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    std::fs::rename(&tmp, path).ctx(|| format!("rename {tmp:?} to {path:?}"))
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Ids of the containers urunc owns under `root`.
pub fn list_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| validate_id(id).is_ok())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pid: i32, start: u64, created_ok: bool) -> State {
        State {
            id: "c".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid,
            pid_start: start,
            created: now_rfc3339(),
            annotations: BTreeMap::new(),
            cgroup_dirs: vec![],
            plan: None,
            created_ok,
            creator: 0,
            creator_start: 0,
            late_hooks: None,
        }
    }

    #[test]
    fn status_is_derived_from_the_process_and_fifo() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _lock) = StateDir::reserve(root.path(), "c", &state(0, 0, false)).unwrap();
        let me = std::process::id() as i32;
        let start = process::start_time(me).unwrap();
        assert_eq!(dir.status(&state(0, 0, false)), Status::Creating);
        assert_eq!(dir.status(&state(me, start, false)), Status::Creating);
        assert_eq!(dir.status(&state(me, start, true)), Status::Running);
        std::fs::write(dir.fifo(), b"").unwrap();
        assert_eq!(dir.status(&state(me, start, true)), Status::Created);
        // Same pid, different start time: a reused pid, so the container is gone.
        assert_eq!(dir.status(&state(me, start + 7, true)), Status::Stopped);
        // Until created, the creator's life decides: alive "creating", dead "stopped".
        let mut creating = state(0, 0, false);
        (creating.creator, creating.creator_start) = (me, start);
        assert_eq!(dir.status(&creating), Status::Creating);
        creating.creator_start = start + 7;
        assert_eq!(dir.status(&creating), Status::Stopped);
    }

    #[test]
    fn a_reserved_directory_holds_the_state_and_is_locked() {
        use std::os::fd::AsRawFd;
        let root = tempfile::tempdir().unwrap();
        let (dir, lock) = StateDir::reserve(root.path(), "c", &state(0, 0, false)).unwrap();
        assert!(dir.is_ours());
        // Another open file description cannot take the lock while it is held.
        let other = std::fs::File::open(&dir.path).unwrap();
        assert!(flock(&other, libc::LOCK_EX | libc::LOCK_NB).is_err());
        assert!(lock.as_raw_fd() >= 0);
        drop(lock);
        flock(&other, libc::LOCK_EX | libc::LOCK_NB).unwrap();
        // Only the container's directory is left in the root.
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c")]);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        let first = std::fs::metadata(&path).unwrap();
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two, longer");
        // A new file was swapped in, not the old one rewritten in place.
        use std::os::unix::fs::MetadataExt;
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), first.ino());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn save_load_and_duplicate_ids() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _lock) = StateDir::reserve(root.path(), "c", &state(1, 2, true)).unwrap();
        assert!(dir.is_ours());
        assert_eq!(dir.load("c").unwrap().pid_start, 2);
        assert!(matches!(
            StateDir::reserve(root.path(), "c", &state(0, 0, false)),
            Err(Error::Exists { .. })
        ));
        // The loser's staging directory is gone; a stale one is never listed.
        std::fs::create_dir(root.path().join(format!("{RESERVING}1"))).unwrap();
        std::fs::write(
            root.path().join(format!("{RESERVING}1/{STATE_FILE}")),
            b"{}",
        )
        .unwrap();
        assert_eq!(list_ids(root.path()), vec!["c".to_string()]);
        dir.remove().unwrap();
        assert!(matches!(dir.load("c"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn late_hooks_are_known_from_the_state() {
        let root = tempfile::tempdir().unwrap();
        let rt = crate::container::Runtime::new(root.path());
        let hook: oci_spec::runtime::Hook =
            serde_json::from_str(r#"{"path": "/bin/true"}"#).unwrap();
        let mut st = state(1, 2, true);
        st.late_hooks = Some(LateHooks::default());
        StateDir::reserve(root.path(), "none", &st).unwrap();
        st.late_hooks = Some(LateHooks {
            poststop: vec![hook.clone()],
            ..Default::default()
        });
        StateDir::reserve(root.path(), "stop", &st).unwrap();
        // A create that failed runs no poststop hooks.
        st.created_ok = false;
        StateDir::reserve(root.path(), "failed", &st).unwrap();
        st.late_hooks = Some(LateHooks {
            poststart: vec![hook],
            ..Default::default()
        });
        StateDir::reserve(root.path(), "start", &st).unwrap();
        assert!(!rt.runs_late_hooks("none"));
        assert!(rt.runs_late_hooks("stop"));
        assert!(!rt.runs_late_hooks("failed"));
        assert!(rt.runs_late_hooks("start"));
        assert!(rt.runs_late_hooks("missing"), "unknown ids go the long way");
        // A state from before hooks were recorded: only the bundle knows.
        st.late_hooks = None;
        StateDir::reserve(root.path(), "old", &st).unwrap();
        assert!(rt.runs_late_hooks("old"));
    }

    #[test]
    fn ids_are_validated() {
        for bad in ["", "..", "a/b", "a b", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["abc", "a.b-c_d+1", "0123"] {
            validate_id(good).unwrap();
        }
    }
}
