//! The guests the integration tests boot, built by the scripts in `fixtures/` into a
//! cache outside the repository (`$URUNC_FIXTURES`, default `/var/cache/urunc-fixtures`).
//! `make fixtures` (run by `make test` and `.ci/run`) builds them; a test that finds
//! them missing skips with a `SKIP:` line, or fails when integration is required.

use std::path::PathBuf;

use crate::skip::skip_or_fail;

pub const FIXTURES_ENV: &str = "URUNC_FIXTURES";

/// What the test kernel prints when it starts and when it is done.
pub const TESTKERNEL_BOOTED: &str = "URUNC-TESTKERNEL-BOOTED";
pub const TESTKERNEL_DONE: &str = "URUNC-TESTKERNEL-DONE";
/// What the Linux guest's `/bin/report` prints when it starts and when it is done.
pub const LINUX_BOOTED: &str = "URUNC-LINUX-GUEST-BOOTED";
pub const LINUX_DONE: &str = "URUNC-LINUX-GUEST-DONE";
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

/// The test kernel when running as root with every tool in `tools` found; else None
/// after a `SKIP:` line (or a panic when integration is required).
pub fn testkernel_with(tools: &[&str]) -> Option<PathBuf> {
    if !crate::require_root_and_tools(tools) {
        return None;
    }
    testkernel()
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

/// What a Linux guest needs for virtio-net, in load order.
pub const NET_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Adds the fixture kernel's `modules` to `archive` under `/lib/modules/<release>/` with
/// the `load-order.txt` (in the given order) that urunit reads.
pub fn add_modules(archive: &mut urunc::guest_init::Newc, modules: &[&str]) {
    let linux = dir().join("linux");
    let release = std::fs::read_to_string(linux.join("kernel-version")).expect("kernel-version");
    let moddir = format!("lib/modules/{}", release.trim());
    archive
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755)
        .dir(&moddir, 0o755);
    for m in modules {
        let ko = std::fs::read(linux.join(format!("modules/{m}.ko"))).expect("module fixture");
        archive.file(&format!("{moddir}/{m}.ko"), &ko, 0o644);
    }
    archive.file(
        &format!("{moddir}/load-order.txt"),
        modules.join("\n").as_bytes(),
        0o644,
    );
}

/// The initrd at `initrd` followed by the newc archive `extra` (the kernel unpacks
/// concatenated archives; the first is padded to a 512-byte boundary).
pub fn initrd_with(initrd: &std::path::Path, extra: &[u8]) -> Vec<u8> {
    let mut bytes = std::fs::read(initrd).expect("initrd fixture");
    bytes.resize(bytes.len().next_multiple_of(512), 0);
    bytes.extend_from_slice(extra);
    bytes
}
