//! The recording monitor (`src/bin/urunc-record-monitor.rs`): installs it under
//! monitor names and reads back what it recorded. The binary is built with the
//! workspace (`cargo test --workspace` builds every member's binaries into the same
//! directory as `urunc`).

use std::path::{Path, PathBuf};

use serde_json::Value;

pub const BIN: &str = "urunc-record-monitor";
/// An argument that makes the recorder try a system call no seccomp filter allows,
/// after recording; it prints [`SURVIVED`] if it was not killed.
pub const FORBIDDEN_PROBE: &str = "--urunc-record-forbidden-syscall";
pub const SURVIVED: &str = "URUNC-RECORD-SURVIVED-FORBIDDEN-SYSCALL";
const BEGIN: &str = "URUNC-RECORD-BEGIN";
const END: &str = "URUNC-RECORD-END";

/// The recorder next to the `urunc` binary, if it was built.
pub fn binary(urunc: &Path) -> Option<PathBuf> {
    let p = urunc.parent()?.join(BIN);
    p.is_file().then_some(p)
}

/// Copies the recorder into `dir` under each of `names` (copies, not symlinks: urunc
/// resolves symlinks and would run it under its own name). `dir` is made 0755 so a
/// monitor running as another user can be executed.
pub fn install(recorder: &Path, dir: &Path, names: &[&str]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create the monitor dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    for n in names {
        let to = dir.join(n);
        std::fs::copy(recorder, &to).expect("install the recorder");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// The record in a container's stdout.
pub fn parse(stdout: &str) -> Option<Value> {
    let start = stdout.find(BEGIN)? + BEGIN.len();
    let end = start + stdout[start..].find(END)?;
    serde_json::from_str(&stdout[start..end]).ok()
}
