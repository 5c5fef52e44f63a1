//! `start`, `state`, `kill`, `delete`, `ps` and `list` for urunc containers.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use super::hooks::{self, Kind};
use super::state::{self, OciState, State, StateDir, Status};
use super::Runtime;
use crate::bundle::Bundle;
use crate::error::{Context, Error, Result};
use crate::sys::{cgroups, process};

/// How long `start` waits for the container process to exec its monitor.
const START_TIMEOUT: Duration = Duration::from_secs(90);

impl Runtime {
    fn open(&self, id: &str) -> Result<(StateDir, State)> {
        let dir = StateDir::new(&self.root, id)?;
        let st = dir.load(id)?;
        Ok((dir, st))
    }

    /// [`Runtime::open`] under the container's lock (see [`StateDir::lock`]), for the
    /// operations that change it.
    fn open_locked(&self, id: &str) -> Result<(StateDir, State, state::Lock)> {
        let dir = StateDir::new(&self.root, id)?;
        let lock = dir.lock(id)?;
        let st = dir.load(id)?;
        Ok((dir, st, lock))
    }

    fn wrong_state(id: &str, status: Status, msg: &str) -> Error {
        Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            msg: msg.into(),
        }
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let (dir, st) = self.open(id)?;
        Ok(dir.oci_state(&st))
    }

    /// Lets the waiting container process exec its monitor.
    pub fn start(&self, id: &str) -> Result<()> {
        self.start_impl::<true>(id)
    }

    /// [`Runtime::start`] with only what the state recorded: a container whose state
    /// predates recorded hooks gets none run. For the shim, which asks
    /// [`Runtime::runs_late_hooks`] first; it keeps the bundle parser out of the shim.
    pub fn start_from_state(&self, id: &str) -> Result<()> {
        self.start_impl::<false>(id)
    }

    fn start_impl<const BUNDLE: bool>(&self, id: &str) -> Result<()> {
        crate::timestamps::mark(id, crate::timestamps::Phase::Start);
        let (dir, st, _lock) = self.open_locked(id)?;
        let status = dir.status(&st);
        if status != Status::Created {
            return Err(Self::wrong_state(
                id,
                status,
                "only a created container can be started",
            ));
        }
        // useDMBlock: the host stops writing to the rootfs before the guest may.
        if let Some(b) = st.plan.as_ref().and_then(|p| p.block_root.as_ref()) {
            crate::storage::block_root::hand_over(b)?;
        }
        let fd = open(
            &dir.fifo(),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open the exec FIFO".into())?;
        // One byte: the process is past the FIFO; then EOF: it ran the startContainer
        // hooks and exec'd the monitor (or died), and the write end closed.
        let mut started = false;
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let n =
                poll(&mut fds, PollTimeout::from(50u16)).ctx(|| "wait on the exec FIFO".into())?;
            if n > 0 {
                let mut b = [0u8; 1];
                match nix::unistd::read(&fd, &mut b) {
                    Ok(1) => started = true,
                    Ok(0) if started => break,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(e) => return Err(e).ctx(|| "read the exec FIFO".into()),
                }
            }
            if std::time::Instant::now() > deadline {
                // A start that never finishes would hang containerd's task start: fail
                // it, with the process, so the caller gets an error and can clean up.
                let _ = process::signal(st.pid, Signal::SIGKILL);
                return Err(Error::Other(format!(
                    "container {id:?} did not start its monitor within {} s (network setup or a startContainer hook is stuck); it was killed",
                    START_TIMEOUT.as_secs()
                )));
            }
            if !process::is_alive(st.pid, st.pid_start) {
                if started {
                    break;
                }
                let why = std::fs::read_to_string(dir.path.join(state::START_ERROR))
                    .map(|m| format!(": {}", m.trim()))
                    .unwrap_or_default();
                return Err(Error::Other(format!(
                    "container {id:?} process exited before it could start{why}"
                )));
            }
        }
        let _ = std::fs::remove_file(dir.fifo());
        let poststart = late_hooks::<BUNDLE>(&st, Kind::Poststart);
        if !poststart.is_empty() {
            let json = serde_json::to_vec(&dir.oci_state(&st)).expect("state serialises");
            // poststart failures are reported but do not undo the start (OCI spec).
            if let Err(e) = hooks::run_list(&poststart, Kind::Poststart, &json) {
                eprintln!("urunc: warning: {e}");
            }
        }
        crate::timestamps::mark(id, crate::timestamps::Phase::Started);
        Ok(())
    }

    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let (dir, st, _lock) = self.open_locked(id)?;
        let status = dir.status(&st);
        if status == Status::Stopped {
            return Err(Self::wrong_state(id, status, "container not running"));
        }
        let mut targets = vec![st.pid];
        if all {
            for p in cgroups::pids(&st.cgroup_dirs) {
                if !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
        for p in targets {
            match process::signal(p, sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e).ctx(|| format!("send {sig} to pid {p}")),
            }
        }
        Ok(())
    }

    /// Removes the container. A running container needs `force`, which kills it; a
    /// created one is simply discarded, as with runc.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        self.delete_impl::<true>(id, force)
    }

    /// [`Runtime::delete`] with only what the state recorded, as [`Runtime::start_from_state`].
    pub fn delete_from_state(&self, id: &str, force: bool) -> Result<()> {
        self.delete_impl::<false>(id, force)
    }

    fn delete_impl<const BUNDLE: bool>(&self, id: &str, force: bool) -> Result<()> {
        let (dir, st, _lock) = self.open_locked(id)?;
        let status = dir.status(&st);
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(Self::wrong_state(
                id,
                status,
                "cannot delete a running container (stop it first or use --force)",
            ));
        }
        if status != Status::Stopped {
            // A frozen process cannot die: thaw it so SIGKILL takes effect.
            if status == Status::Paused {
                let _ = cgroups::freeze(&st.cgroup_dirs, false);
            }
            let _ = process::signal(st.pid, Signal::SIGKILL);
            if !process::wait_gone(st.pid, st.pid_start, Duration::from_secs(10)) {
                return Err(Error::Other(format!(
                    "container {id:?}: process {} did not exit after SIGKILL",
                    st.pid
                )));
            }
        }
        for p in cgroups::pids(&st.cgroup_dirs) {
            let _ = process::signal(p, Signal::SIGKILL);
        }
        // The tap and redirects, in a namespace the container joined by path (its own
        // namespace, if it had one, is gone with the monitor).
        if let Some(plan) = &st.plan {
            if let Err(e) = crate::network::teardown_plan(&plan.network) {
                eprintln!("urunc: warning: network cleanup: {e}");
            }
        }
        cgroups::remove(&st.cgroup_dirs);
        let poststop = match st.created_ok {
            true => late_hooks::<BUNDLE>(&st, Kind::Poststop),
            false => vec![],
        };
        if !poststop.is_empty() {
            let mut oci = dir.oci_state(&st);
            oci.status = Status::Stopped;
            let json = serde_json::to_vec(&oci).expect("state serialises");
            if let Err(e) = hooks::run_list(&poststop, Kind::Poststop, &json) {
                eprintln!("urunc: warning: {e}");
            }
        }
        dir.remove()?;
        crate::timestamps::mark(id, crate::timestamps::Phase::Deleted);
        Ok(())
    }

    /// Freezes the whole VM (the monitor and its threads) through the cgroup freezer.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.set_frozen(id, true)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.set_frozen(id, false)
    }

    fn set_frozen(&self, id: &str, frozen: bool) -> Result<()> {
        let (dir, st, _lock) = self.open_locked(id)?;
        let status = dir.status(&st);
        let expected = if frozen {
            Status::Running
        } else {
            Status::Paused
        };
        if status != expected {
            let verb = if frozen { "paused" } else { "resumed" };
            return Err(Self::wrong_state(
                id,
                status,
                &format!("only a {expected} container can be {verb}"),
            ));
        }
        if !cgroups::freeze(&st.cgroup_dirs, frozen)? {
            return Err(Error::Other(
                "no freezer cgroup (v1 freezer or v2 cgroup.freeze) is available on this host"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Pids of the container: the monitor and anything else in its cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let (dir, st) = self.open(id)?;
        let mut pids = cgroups::pids(&st.cgroup_dirs);
        if pids.is_empty() && dir.status(&st) != Status::Stopped {
            pids.push(st.pid);
        }
        Ok(pids)
    }

    pub fn list(&self) -> Vec<OciState> {
        state::list_ids(&self.root)
            .into_iter()
            .filter_map(|id| self.state(&id).ok())
            .collect()
    }

    /// Whether `start` or `delete` of `id` would run hooks (poststart, poststop): a
    /// caller that reaps every child itself (the shim) must then leave the command to
    /// the `urunc` binary. True also when the state predates recorded hooks (only the
    /// bundle can tell), and for an id that cannot be read, so that the binary reports.
    pub fn runs_late_hooks(&self, id: &str) -> bool {
        match self.open(id) {
            Ok((_, st)) => st.late_hooks.as_ref().map_or(true, |h| {
                !h.poststart.is_empty() || (st.created_ok && !h.poststop.is_empty())
            }),
            Err(_) => true,
        }
    }
}

/// The hooks `start` (poststart) or `delete` (poststop) runs: recorded at create; in a
/// state from before that, read from the bundle when `BUNDLE` (a constant, so that the
/// callers without it link no bundle parser).
fn late_hooks<const BUNDLE: bool>(st: &State, kind: Kind) -> Vec<oci_spec::runtime::Hook> {
    match (&st.late_hooks, kind) {
        (Some(h), Kind::Poststart) => h.poststart.clone(),
        (Some(h), _) => h.poststop.clone(),
        (None, _) if !BUNDLE => vec![],
        (None, _) => Bundle::load(&st.bundle)
            .map(|b| hooks::list(&b.spec, kind))
            .unwrap_or_default(),
    }
}
