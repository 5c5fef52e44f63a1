//! The monitors that cannot be installed on the project's machines (Firecracker,
//! Cloud Hypervisor, Solo5 hvt and spt) driven through the whole stack: `ctr run` ->
//! a private containerd -> `containerd-shim-urunc-v2` -> `urunc` -> the monitor, which
//! is the recording test double (`test-harness`'s `urunc-record-monitor`). It prints
//! how it was executed on the container's stdout, which `ctr run` hands back.
//!
//! The double is installed under `firecracker`, `cloud-hypervisor` and `solo5-spt` in
//! containerd's `<opt>/bin` (first on the PATH containerd gives the shim and urunc),
//! and for `solo5-hvt` outside any PATH, named by `binary_path` in a urunc
//! configuration file that containerd's environment points at (`URUNC_CONFIG`).
//!
//! Needs `urunc` and the recorder built next to the shim (`cargo build -p urunc-cli
//! -p test-harness`; `make test` builds the workspace first), else SKIP.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_image::ImageBuilder;
use serde_json::Value;
use test_harness::bundle::{KEY_BINARY, KEY_HYPERVISOR, KEY_TYPE};
use test_harness::recorder::{self, strs};
use test_harness::{fixtures, output_text, require_root_and_tools, skip_or_fail, Containerd};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-urunc-v2");
const RUNTIME: &str = "io.containerd.urunc.v2";
const TOOLS: &[&str] = &["containerd", "ctr", "runc"];
/// The shim's default urunc `--root` parent.
const STATE_ROOT: &str = "/run/containerd/urunc";

const KEY_URUNIT: &str = "com.urunc.urunit";

struct Stack {
    containerd: Containerd,
    /// The configuration file and the hvt double; removed on drop.
    _scratch: tempfile::TempDir,
    image: String,
    kernel_size: u64,
    /// Where the `solo5-hvt` double is (only the configuration file names it).
    hvt: PathBuf,
}

/// A binary cargo built next to the shim (target/<profile>/), if it was built.
fn sibling(name: &str) -> Option<PathBuf> {
    let p = Path::new(SHIM).parent()?.join(name);
    p.is_file().then_some(p)
}

fn start() -> Option<Stack> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    let kernel = fixtures::testkernel()?;
    let (Some(urunc), Some(rec)) = (sibling("urunc"), recorder::binary(Path::new(SHIM))) else {
        skip_or_fail(&format!(
            "urunc or {} not built next to the shim (cargo build -p urunc-cli -p test-harness)",
            recorder::BIN
        ));
        return None;
    };
    // urunc reads the file (and finds the hvt double) at each `create`.
    let scratch = tempfile::tempdir().expect("temp dir");
    let config = scratch.path().join("urunc.toml");
    let containerd = Containerd::builder()
        .env("URUNC_CONFIG", config.to_str().unwrap())
        .ctr_timeout(Duration::from_secs(60))
        .start_with_urunc(Path::new(SHIM), &urunc)
        .expect("starting containerd");
    let bin = containerd.opt_bin();
    recorder::install(
        &rec,
        &bin,
        &["firecracker", "cloud-hypervisor", "solo5-spt"],
    );
    let elsewhere = scratch.path().join("monitors");
    recorder::install(&rec, &elsewhere, &["hvt-double"]);
    let hvt = elsewhere.join("hvt-double");
    fs::write(
        &config,
        format!(
            "[monitors.solo5-hvt]\nbinary_path = \"{}\"\n\n[monitors.firecracker]\ndefault_vcpus = 2\n",
            hvt.display()
        ),
    )
    .unwrap();

    let mut image = ImageBuilder::new();
    image.add_file("/boot/kernel", &kernel, 0o755).unwrap();
    image.cmd(["/boot/kernel"]);
    let tar = containerd.dir().join("monitors-image.tar");
    image
        .write_oci_archive(&tar, "example.com/urunc/monitors:1")
        .expect("writing the image");
    let image = containerd.import(&tar).expect("importing the image");
    let _ = fs::remove_file(&tar);
    Some(Stack {
        containerd,
        _scratch: scratch,
        image,
        kernel_size: fs::metadata(&kernel).unwrap().len(),
        hvt,
    })
}

/// `ctr run --rm` of the image with `keys` as annotations (and `extra` flags); returns
/// what the double recorded, after checking nothing of the container is left.
fn run(st: &Stack, name: &str, keys: &[(&str, &str)], extra: &[&str]) -> Value {
    let id = st.containerd.unique_id(name);
    let mut flags = vec!["--runtime".to_string(), RUNTIME.to_string()];
    for (k, v) in keys {
        flags.push("--annotation".into());
        flags.push(format!("{k}={v}"));
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = st
        .containerd
        .run(&flags, &st.image, &id, &["/app", "hello world"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "ctr run {id}\n{text}");
    st.containerd
        .assert_nothing_left(&id, Path::new(STATE_ROOT));
    recorder::parse(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|| panic!("no record from {id}:\n{text}"))
}

/// The shared checks of every monitor's record; containerd gives each container a
/// network namespace too.
#[track_caller]
fn assert_confined(st: &Stack, rec: &Value, kvm: bool) {
    let namespaces = ["mnt", "pid", "ipc", "uts", "net"];
    recorder::assert_confined(rec, &namespaces, st.kernel_size, kvm);
}

#[test]
fn every_uninstallable_monitor_through_containerd() {
    let Some(st) = start() else { return };
    if !Path::new("/dev/kvm").exists() {
        skip_or_fail("/dev/kvm is missing (firecracker, cloud-hypervisor and solo5-hvt need it)");
        return;
    }
    let bin = st.containerd.opt_bin();

    // Firecracker: its JSON file, written by urunc and bound read-only into its root.
    let rec = run(
        &st,
        "fc",
        &[
            (KEY_TYPE, "unikraft"),
            (KEY_HYPERVISOR, "firecracker"),
            (KEY_BINARY, "/boot/kernel"),
        ],
        &[],
    );
    let cfg = recorder::firecracker_config(&rec, &bin.join("firecracker"));
    let boot_args = cfg["boot-source"]["boot_args"].as_str().unwrap();
    assert!(
        boot_args.starts_with("Unikraft ") && boot_args.ends_with(" -- /app \"hello world\""),
        "{boot_args}"
    );
    assert_eq!(
        cfg["machine-config"]["vcpu_count"], 2,
        "from the config file"
    );
    assert_confined(&st, &rec, true);

    // Cloud Hypervisor: its command line.
    let rec = run(
        &st,
        "ch",
        &[
            (KEY_TYPE, "linux"),
            (KEY_HYPERVISOR, "cloud-hypervisor"),
            (KEY_BINARY, "/boot/kernel"),
            (KEY_URUNIT, "false"),
        ],
        &[],
    );
    let argv = strs(&rec["argv"]);
    assert_eq!(argv[0], bin.join("cloud-hypervisor").display().to_string());
    assert_eq!(
        argv[1..11],
        [
            "--memory",
            "size=256M",
            "--cpus",
            "boot=1",
            "--kernel",
            "/guest/kernel",
            "--console",
            "off",
            "--serial",
            "tty"
        ]
    );
    let cmdline = argv.last().unwrap();
    assert!(
        cmdline.starts_with("console=ttyS0 panic=-1 quiet init=/app PATH=")
            && cmdline.ends_with(" -- \"hello world\""),
        "{cmdline}"
    );
    assert_confined(&st, &rec, true);

    // Solo5 hvt, from the configuration file's binary_path.
    let hvt_keys = [
        (KEY_TYPE, "mirage"),
        (KEY_HYPERVISOR, "solo5-hvt"),
        (KEY_BINARY, "/boot/kernel"),
    ];
    let rec = run(&st, "hvt", &hvt_keys, &[]);
    assert_eq!(
        strs(&rec["argv"]),
        [
            st.hvt.display().to_string(),
            "--mem=256".into(),
            "--".into(),
            "/guest/kernel".into(),
            "/app \"hello world\"".into(),
        ]
    );
    assert_confined(&st, &rec, true);
    // With containerd's default seccomp profile in the spec, urunc confines this
    // tender (it has no filter of its own) before exec: exactly one filter.
    let rec = run(&st, "hvtsec", &hvt_keys, &["--seccomp"]);
    assert_eq!(rec["filtered"], true, "{rec}");
    assert_eq!(rec["status"]["Seccomp"], "2");
    assert_eq!(rec["status"]["Seccomp_filters"], "1");
    assert_eq!(rec["status"]["NoNewPrivs"], "1");
    assert_eq!(strs(&rec["argv"])[0], st.hvt.display().to_string());

    // Solo5 spt: no KVM, a Rumprun JSON command line.
    let rec = run(
        &st,
        "spt",
        &[
            (KEY_TYPE, "rumprun"),
            (KEY_HYPERVISOR, "solo5-spt"),
            (KEY_BINARY, "/boot/kernel"),
        ],
        &["--seccomp"],
    );
    assert_eq!(
        strs(&rec["argv"])[1..],
        [
            "--mem=256",
            "--",
            "/guest/kernel",
            r#"{"cmdline":"/app hello world","env":"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}"#,
        ]
    );
    assert_eq!(rec["status"]["Seccomp"], "0", "spt confines itself");
    assert_confined(&st, &rec, false);
}
