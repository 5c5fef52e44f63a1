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

/// The static urunit binary: `URUNC_URUNIT` when set (as `make test` does), else built
/// once per test binary (or found up to date) into `target/urunit/` as `make urunit`
/// does. Skips (or fails, when integration is required) if it cannot be built.
pub fn urunit() -> Option<PathBuf> {
    use std::sync::OnceLock;
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let got = BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("URUNC_URUNIT").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .map_err(|e| e.to_string())?;
        let target_dir = root.join("target/urunit");
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let out = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "urunit", "--target", &triple])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building urunit failed:\n{}",
                crate::output_text(&out)
            ));
        }
        Ok(target_dir.join(triple).join("release/urunit"))
    });
    match got {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            skip_or_fail(e);
            None
        }
    }
}
