//! Start-up timestamps through containerd: `ctr run --rm` of the test kernel via
//! `io.containerd.urunc.v2` with `URUNC_TIMESTAMPS=1` in containerd's environment (the
//! shim and urunc inherit it). The shim's phases (task create/start received) and
//! urunc's land in one log, in order, printed by `urunc timestamps ID`.
//!
//! Needs `cargo build -p urunc-cli` first (as `ctr.rs` does); skips with a `SKIP:` line
//! when not root or containerd, ctr, runc, QEMU or the fixtures are missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_image::ImageBuilder;
use test_harness::{fixtures, output_text, require_root_and_tools, Containerd};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-urunc-v2");
const TOOLS: &[&str] = &["containerd", "ctr", "runc", "qemu-system-x86_64"];

/// `urunc` built by cargo next to this test (target/<profile>/urunc).
fn urunc_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let urunc = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("urunc");
    assert!(
        urunc.is_file(),
        "{} is missing: build it first with `cargo build -p urunc-cli`",
        urunc.display()
    );
    urunc
}

#[test]
fn shim_and_runtime_phases_are_recorded_in_order() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let Some(kernel) = fixtures::testkernel() else {
        return;
    };
    let urunc = urunc_binary();
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().to_str().unwrap();
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .env("URUNC_TIMESTAMPS", "1")
        .env("URUNC_TIMESTAMPS_DIR", dir)
        .ctr_timeout(Duration::from_secs(60))
        .start_with_urunc(Path::new(SHIM), &urunc)
        .expect("starting containerd");

    let mut image = ImageBuilder::new();
    image.add_file("/boot/kernel", kernel, 0o755).unwrap();
    image.cmd(["/boot/kernel"]);
    let tar = containerd.dir().join("testkernel.tar");
    let reference = "example.com/urunc/ts-testkernel:1";
    image.write_oci_archive(&tar, reference).unwrap();
    let image = containerd.import(&tar).expect("import");

    let id = containerd.unique_id("ts");
    let flags = [
        "--runtime",
        "io.containerd.urunc.v2",
        "--annotation",
        "com.urunc.unikernel.unikernelType=unikraft",
        "--annotation",
        "com.urunc.unikernel.hypervisor=qemu",
        "--annotation",
        "com.urunc.unikernel.binary=/boot/kernel",
    ];
    let out = containerd.run(&flags, &image, &id, &["hello"]);
    assert!(out.status.success(), "ctr run\n{}", output_text(&out));

    let out = Command::new(&urunc)
        .args(["timestamps", &id])
        .env("URUNC_CONFIG", logs.path().join("none.toml"))
        .env("URUNC_TIMESTAMPS_DIR", dir)
        .output()
        .unwrap();
    // A missing config file named by URUNC_CONFIG is only a warning for this command.
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut codes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next().filter(|c| c.starts_with("TS")))
        .collect();
    // urunc create moves the process into its cgroups (TS03) while the process builds
    // its namespaces (TS04): either may come first.
    if let Some(i) = codes.windows(2).position(|w| w == ["TS04", "TS03"]) {
        codes.swap(i, i + 1);
    }
    // `ctr run --rm` deletes the task before it returns: the teardown phases too.
    let expected: Vec<String> = (0..15).map(|i| format!("TS{i:02}")).collect();
    assert_eq!(codes, expected, "{text}");
    assert!(text.contains("shim: task create received"), "{text}");
    assert!(text.contains("shim: monitor exit seen"), "{text}");
    eprintln!("{text}");
}
