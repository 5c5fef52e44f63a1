//! Hand-off to runc for ordinary (non-unikernel) containers: the whole command line is
//! passed unchanged to runc, which replaces this process, so exit status, stdio and
//! pid file are exactly runc's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The runc binary: `$URUNC_RUNC`, else `runc` on PATH.
pub const RUNC_ENV: &str = "URUNC_RUNC";

pub fn binary() -> OsString {
    std::env::var_os(RUNC_ENV).unwrap_or_else(|| "runc".into())
}

/// Replaces this process with runc given our own arguments. Returns only on failure.
pub fn exec_delegate() -> anyhow::Error {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let runc = binary();
    let err = Command::new(&runc).args(args).exec();
    anyhow::anyhow!(
        "not a unikernel container, and runc could not be executed ({:?}: {err}); set {RUNC_ENV} to its path",
        runc
    )
}

/// Runs runc with `args` and returns its stdout, for merging listings.
pub fn output(args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new(binary()).args(args).output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// The state root runc uses for a command we hand it: ours when `--root` was given (it
/// is passed on unchanged), else runc's own default.
fn root(ours: &Path) -> PathBuf {
    let explicit = std::env::args_os().any(|a| {
        // Either dash form, as the command line accepts (runc's Go flags do too).
        let a = a.as_encoded_bytes();
        match a.strip_prefix(b"--").or_else(|| a.strip_prefix(b"-")) {
            Some(name) => name == b"root" || name.starts_with(b"root="),
            None => false,
        }
    });
    if explicit {
        return ours.to_path_buf();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !nix::unistd::geteuid().is_root() => PathBuf::from(dir).join("runc"),
        _ => PathBuf::from("/run/runc"),
    }
}

/// True when runc has (or is making) container `id`: its directory exists under runc's
/// root. A directory of ours always holds our state file (see `StateDir::reserve`), so
/// callers ask this only for ids urunc does not own.
pub fn has_container(ours: &Path, id: &str) -> bool {
    urunc::container::state::validate_id(id).is_ok() && root(ours).join(id).exists()
}
