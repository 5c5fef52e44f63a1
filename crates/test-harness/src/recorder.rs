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

/// The strings of a JSON array in a record.
#[track_caller]
pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Checks a Firecracker record: run as `binary --no-api --config-file
/// /guest/firecracker.json --no-seccomp`, with only the kernel and that file in
/// `/guest`, the file naming the kernel. Returns the parsed file.
#[track_caller]
pub fn firecracker_config(rec: &Value, binary: &Path) -> Value {
    assert_eq!(
        strs(&rec["argv"]),
        [
            binary.display().to_string(),
            "--no-api".into(),
            "--config-file".into(),
            "/guest/firecracker.json".into(),
            "--no-seccomp".into(),
        ]
    );
    assert_eq!(
        strs(&rec["guest"]),
        ["firecracker.json", "kernel"],
        "only the kernel and the config file"
    );
    let text = rec["files"]["/guest/firecracker.json"]
        .as_str()
        .unwrap_or_else(|| panic!("no firecracker.json recorded: {rec}"));
    let cfg: Value = serde_json::from_str(text).expect("firecracker.json is JSON");
    assert_eq!(cfg["boot-source"]["kernel_image_path"], "/guest/kernel");
    cfg
}

/// What every monitor must have seen: no seccomp filter of urunc's, the minimal
/// environment, pid 1 in `namespaces` of its own (not this process's), a read-only
/// root of its own without the image's content, `/dev/kvm` exactly when `kvm`, and the
/// `kernel_size`-byte kernel at `/guest/kernel`.
#[track_caller]
pub fn assert_confined(rec: &Value, namespaces: &[&str], kernel_size: u64, kvm: bool) {
    assert_eq!(rec["filtered"], false, "no seccomp filter expected: {rec}");
    assert_eq!(
        strs(&rec["env"]),
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/tmp"
        ]
    );
    assert_eq!(rec["pid"], 1, "the monitor is the container's pid 1");
    let own = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    for ns in namespaces {
        assert_ne!(
            rec["namespaces"][ns].as_str().unwrap(),
            own(ns).to_str().unwrap(),
            "{ns} namespace shared with the host"
        );
    }
    let root = strs(&rec["root"]);
    for d in ["dev", "guest", "proc", "sys", "tmp", "usr"] {
        assert!(root.iter().any(|e| e == d), "/{d} missing from {root:?}");
    }
    assert!(!root.iter().any(|e| e == "boot"), "image leaked: {root:?}");
    assert_eq!(rec["root_writable"], false);
    let dev = strs(&rec["dev"]);
    assert_eq!(dev.iter().any(|e| e == "kvm"), kvm, "/dev: {dev:?}");
    assert_eq!(rec["sizes"]["/guest/kernel"].as_u64(), Some(kernel_size));
}
