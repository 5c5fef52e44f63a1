//! Process identity and liveness. A pid alone can be reused after the process dies, so
//! a container's process is identified by pid *and* its start time from /proc.

use std::time::{Duration, Instant};

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Start time (clock ticks since boot) and state letter from /proc/<pid>/stat.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let text = super::read_small(std::path::Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    // The command name may contain spaces and parentheses; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(s, _)| s)
}

/// True when `pid` is the same live (not zombie) process that started at `start`.
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match stat(pid) {
        Some((s, state)) => s == start && state != 'Z' && state != 'X',
        None => false,
    }
}

pub fn signal(pid: i32, sig: Signal) -> nix::Result<()> {
    // 0 and negative pids name process groups (ours, or all): never a container's.
    if pid <= 0 {
        return Err(nix::errno::Errno::ESRCH);
    }
    kill(Pid::from_raw(pid), sig)
}

/// A pidfd for `pid` (Linux 5.3 and later): it becomes readable when the process exits.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor the kernel just gave us, owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until the process behind `fd` exits; true if it did within `timeout`.
fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], ms) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits for a child of ours (a hook) to exit, up to `timeout`; true if it did. The
/// caller reaps it.
pub fn wait_child(pid: i32, timeout: Duration) -> Option<bool> {
    pidfd(pid).map(|fd| wait_pidfd(&fd, timeout))
}

/// Waits until the process is gone (or a zombie); true if it went in time. Woken by
/// the exit itself where pidfds exist, else by polling.
pub fn wait_gone(pid: i32, start: u64, timeout: Duration) -> bool {
    if pid > 0 {
        if let Some(fd) = pidfd(pid) {
            // Checked after the pidfd is taken: it then refers to this very process,
            // not to a later one reusing the pid.
            return !is_alive(pid, start) || wait_pidfd(&fd, timeout);
        }
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    while is_alive(pid, start) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}

/// Parses a signal given as a name (`KILL`, `SIGKILL`) or a number (`9`).
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("invalid signal number {n}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("invalid signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert!(!is_alive(0, start));
    }
}
