//! The guests the integration tests boot, built by the scripts in `fixtures/` into a
//! cache outside the repository (`$URUNC_FIXTURES`, default `/var/cache/urunc-fixtures`).
//! `make fixtures` (run by `make test` and `.ci/run`) builds them; a test that finds
//! them missing skips with a `SKIP:` line, or fails when integration is required.

use std::path::PathBuf;

use crate::skip::skip_or_fail;

pub const FIXTURES_ENV: &str = "URUNC_FIXTURES";
pub const DEFAULT_FIXTURES: &str = "/var/cache/urunc-fixtures";

pub fn dir() -> PathBuf {
    std::env::var_os(FIXTURES_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FIXTURES))
}

/// The freestanding PVH test kernel (prints `URUNC-TESTKERNEL-BOOTED` and its cmdline).
pub fn testkernel() -> Option<PathBuf> {
    existing(&[dir().join("testkernel/testkernel.elf")]).map(|mut v| v.remove(0))
}

/// Debian's kernel as a PVH `vmlinux` and the busybox report initrd.
pub fn linux_guest() -> Option<(PathBuf, PathBuf)> {
    let d = dir().join("linux");
    existing(&[d.join("vmlinux"), d.join("initrd.cpio")]).map(|v| (v[0].clone(), v[1].clone()))
}

fn existing(paths: &[PathBuf]) -> Option<Vec<PathBuf>> {
    match paths.iter().find(|p| !p.is_file()) {
        None => Some(paths.to_vec()),
        Some(missing) => {
            skip_or_fail(&format!(
                "fixture {} is missing (run `make fixtures`)",
                missing.display()
            ));
            None
        }
    }
}
