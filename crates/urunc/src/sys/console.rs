//! The container terminal: a pty whose master is sent to the caller's console socket
//! (as runc does, with SCM_RIGHTS) and whose slave becomes the monitor's stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::pty::{openpty, OpenptyResult};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Context, Result};

/// Opens a pty, sends its master to `socket`, and returns the slave.
pub fn setup(socket: &Path) -> Result<OwnedFd> {
    let OpenptyResult { master, slave } = openpty(None, None).ctx(|| "open a pty".into())?;
    let name = nix::unistd::ttyname(&slave)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/dev/ptmx".into());
    let stream =
        UnixStream::connect(socket).ctx(|| format!("connect to console socket {socket:?}"))?;
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| format!("send the pty to console socket {socket:?}"))?;
    Ok(slave)
}
