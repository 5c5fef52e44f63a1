//! Images packed by urunc-pack, run the way a node runs them: imported into a private
//! containerd and started with `ctr run --runtime io.containerd.runc.v2 --runc-binary
//! <urunc>`. No annotations are passed, so urunc learns what to boot from the image's
//! `/urunc.json` only (image labels never reach the bundle).
//!
//! The urunc binary is the workspace's `target/<profile>/urunc`, which `cargo test
//! --workspace` (`make test`) builds before running tests; without it the tests skip
//! (or fail when integration tests are required).

use std::path::PathBuf;
use std::time::Duration;

use test_harness::{fixtures, output_text, require_root_and_tools, skip_or_fail, Containerd};
use urunc_pack::PackOptions;

const TOOLS: &[&str] = &[
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "qemu-system-x86_64",
];

/// `target/<profile>/urunc`, next to this test's `deps/` directory.
fn urunc() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("urunc");
    if bin.is_file() {
        Some(bin)
    } else {
        skip_or_fail(&format!(
            "{} is missing (build it: cargo build -p urunc-cli)",
            bin.display()
        ));
        None
    }
}

fn start() -> Option<(Containerd, PathBuf)> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    let urunc = urunc()?;
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .ctr_timeout(Duration::from_secs(60))
        .start()
        .expect("starting containerd");
    Some((containerd, urunc))
}

/// A private containerd with one packed image imported.
struct Packed {
    containerd: Containerd,
    urunc: String,
    name: String,
}

impl Packed {
    fn new(opts: PackOptions) -> Option<Packed> {
        let (containerd, urunc) = start()?;
        let tar = containerd.dir().join("image.tar");
        let packed = opts.pack(&tar).expect("packing");
        let name = containerd.import(&tar).expect("importing");
        assert_eq!(name, packed.reference);
        let urunc = urunc.to_string_lossy().into_owned();
        Some(Packed {
            containerd,
            urunc,
            name,
        })
    }

    /// `ctr run --rm` of the image with `argv` (none: the image's Cmd); its output.
    fn run(&self, argv: &[&str]) -> String {
        let id = self.containerd.unique_id("pack");
        let flags = [
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            &self.urunc,
        ];
        let out = self.containerd.run(&flags, &self.name, &id, argv);
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "ctr run failed: {text}\n{}",
            self.containerd.log_tail(20)
        );
        text
    }
}

#[test]
fn packed_unikernel_boots_from_urunc_json() {
    let Some(kernel) = fixtures::testkernel() else {
        return;
    };
    let opts = PackOptions {
        cmdline: Some("hello from urunc-pack".into()),
        env: vec!["GREETING=hi".into()],
        name: Some("urunc.local/test/pack-unikraft:latest".into()),
        ..PackOptions::new(kernel, "unikraft")
    };
    let Some(image) = Packed::new(opts) else {
        return;
    };
    let out = image.run(&[]);
    assert!(out.contains("URUNC-TESTKERNEL-BOOTED"), "{out}");
    // The image's env and the cmdline key, in Unikraft's syntax.
    let line = out
        .lines()
        .find(|l| l.starts_with("cmdline: "))
        .unwrap_or_else(|| panic!("no cmdline line: {out}"));
    assert!(line.starts_with("cmdline: Unikraft env.vars=[ "), "{line}");
    assert!(line.contains(" GREETING=hi "), "{line}");
    assert!(line.ends_with(" -- hello from urunc-pack"), "{line}");
}

#[test]
fn packed_linux_guest_runs_its_cmd_and_ctr_args_override_it() {
    let Some((vmlinux, initrd)) = fixtures::linux_guest() else {
        return;
    };
    let opts = PackOptions {
        initrd: Some(initrd),
        cmd: vec!["/bin/report".into(), "from".into(), "the image".into()],
        env: vec!["GREETING=hi there".into()],
        name: Some("urunc.local/test/pack-linux:latest".into()),
        ..PackOptions::new(vmlinux, "linux")
    };
    let Some(image) = Packed::new(opts) else {
        return;
    };
    let out = image.run(&[]);
    assert!(out.contains("URUNC-LINUX-GUEST-BOOTED"), "{out}");
    assert!(out.contains("argv: /bin/report from the image"), "{out}");
    assert!(out.contains("env: GREETING=hi there"), "{out}");

    let out = image.run(&["/bin/report", "from", "ctr"]);
    assert!(out.contains("argv: /bin/report from ctr"), "{out}");
}
