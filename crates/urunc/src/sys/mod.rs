//! Thin wrappers over the Linux facilities the lifecycle uses. Nothing here knows
//! about containers; each file is one facility.

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod entry;
pub mod namespaces;
pub mod process;
pub mod seccomp;

use std::io::Read;
use std::path::Path;

/// Reads a small file the kernel generates (`/proc`, cgroupfs) whole, in one or two
/// `read`s. `std::fs::read_to_string` sizes its buffer from the file's length, which
/// these files report as 0, so it stats the file and then reads 32, 32, 64, ... bytes
/// at a time: eight system calls for a 700-byte mountinfo, on every command.
pub fn read_small(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk)? {
            0 => break,
            n => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
