//! The shim is the child subreaper of everything it starts (urunc, the container
//! processes that outlive it): one thread takes every child's exit with `waitpid(-1)`
//! and hands it to the crate's exit monitor, where [`crate::runtime`] and the service's
//! exit thread are subscribed.
//!
//! SIGCHLD, SIGTERM and SIGINT are blocked in every thread ([`block_signals`] runs
//! before the first thread is made) and taken synchronously by this thread with
//! `sigwait`. SIGTERM and SIGINT are ignored, as by containerd's shims: containerd ends
//! a shim with the Shutdown request. The block is inherited by what the shim starts:
//! urunc clears its mask first thing (`urunc::sys::entry::prepare`), and the logging
//! binary of a `binary://` log URI is started with an empty one.

use containerd_shim::monitor::monitor_notify_by_pid;
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    set
}

/// Blocks the signals the reaper takes, in the calling thread and so in every thread
/// it makes from now on. Call it while the process has one thread.
pub fn block_signals() -> std::io::Result<()> {
    // An ignored SIGCHLD (inheritable through exec) would have the kernel reap the
    // children itself: their exits would never reach the monitor.
    // SAFETY: SIG_DFL installs no handler.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }
        .map_err(std::io::Error::from)?;
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals()), None)
        .map_err(std::io::Error::from)
}

/// Makes this process the subreaper of its descendants and starts the reaping thread.
pub fn start() -> std::io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(reap)?;
    Ok(())
}

fn reap() {
    let set = signals();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap_all(),
            Ok(sig) => log::debug!("received {sig}, ignored"),
            Err(e) => log::warn!("sigwait: {e}"),
        }
    }
}

/// Several exits can be behind one SIGCHLD: collect until none is left.
fn reap_all() {
    loop {
        let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::warn!("waitpid: {e}");
                return;
            }
        };
        if let Err(e) = monitor_notify_by_pid(pid.as_raw(), code) {
            log::error!("pid {pid}: exit not delivered: {e}");
        }
    }
}
