//! The small protocol between `urunc create` and the container process it cloned,
//! over a socketpair: one tag byte, then a length-prefixed message (errors only).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::error::{Error, Result};

/// Parent → child: set up the namespaces and the monitor root (the parent moves the
/// process into its cgroups meanwhile, and is done before it reads READY).
pub const GO: u8 = b'G';
/// Child → parent: namespaces and the monitor root are ready.
pub const READY: u8 = b'R';
/// Parent → child: createRuntime hooks ran.
pub const HOOKS_DONE: u8 = b'H';
/// Child → parent: createContainer hooks ran.
pub const CREATED: u8 = b'O';
/// Parent → child: state is saved, outlive the parent and wait for `start`.
pub const COMMIT: u8 = b'C';
/// Child → parent: its parent-death signal is cleared, so `urunc create` may exit now
/// without taking the container process with it.
pub const DETACHED: u8 = b'D';
/// Either way: failed, message follows.
pub const ERROR: u8 = b'E';

pub fn send(sock: &mut UnixStream, tag: u8, msg: &str) -> std::io::Result<()> {
    let mut buf = vec![tag];
    buf.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    buf.extend_from_slice(msg.as_bytes());
    sock.write_all(&buf)
}

/// Receives one message and checks its tag; the peer's error becomes ours. Returns
/// the message body (the state JSON for the hooks, where the parent sends one).
pub fn expect(sock: &mut UnixStream, want: u8, peer: &str) -> Result<String> {
    let mut head = [0u8; 5];
    if sock.read_exact(&mut head).is_err() {
        return Err(Error::Other(format!("{peer} exited unexpectedly")));
    }
    let len = u32::from_le_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len.min(1 << 16)];
    sock.read_exact(&mut body)
        .map_err(|_| Error::Other(format!("{peer} exited unexpectedly")))?;
    let msg = String::from_utf8_lossy(&body).into_owned();
    match head[0] {
        t if t == want => Ok(msg),
        ERROR => Err(Error::Other(msg)),
        t => Err(Error::Other(format!(
            "{peer} sent unexpected message {:?}",
            t as char
        ))),
    }
}
