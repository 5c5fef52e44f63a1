//! Every monitor that cannot be installed on the project's machines (Firecracker,
//! Cloud Hypervisor, Solo5 hvt and spt) driven through the real `urunc create/start/
//! delete` lifecycle, with a recording test double installed under its name: the
//! double records its argv, environment, ids, namespaces, seccomp status, its root
//! and the configuration file it was given on the container's stdout, then exits.
//! What it recorded is checked here; the argument formats themselves are golden-tested
//! next to each monitor in the `urunc` crate. The double also stands in for an old
//! `solo5-hvt` (no seccomp of its own) and, with libseccomp's name appended to it, a
//! self-confining one, to check where urunc installs its filter before exec.
//!
//! Skips (with a `SKIP:` line) when not root, or the fixtures or the recorder are
//! missing; fails instead when `URUNC_REQUIRE_INTEGRATION` is set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use test_harness::bundle::{TestBundle, Urunc, KEY_HYPERVISOR};
use test_harness::recorder::{self, strs};
use test_harness::{fixtures, output_text, require_root_and_tools, skip_or_fail};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    kernel: PathBuf,
    recorder: PathBuf,
    dir: PathBuf,
    bin_dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup() -> Option<Setup> {
    if !require_root_and_tools(&[]) {
        return None;
    }
    let kernel = fixtures::testkernel()?;
    let Some(rec) = recorder::binary(Path::new(URUNC)) else {
        skip_or_fail(&format!(
            "{} not built (cargo build -p test-harness --bin {})",
            recorder::BIN,
            recorder::BIN
        ));
        return None;
    };
    let name = std::thread::current()
        .name()
        .unwrap_or("t")
        .replace(':', "_");
    let dir = PathBuf::from(format!("/tmp/urunc-monitors-{name}-{}", std::process::id()));
    let bin_dir = dir.join("bin");
    recorder::install(
        &rec,
        &bin_dir,
        &["firecracker", "cloud-hypervisor", "solo5-hvt", "solo5-spt"],
    );
    Some(Setup {
        kernel,
        recorder: rec,
        dir,
        bin_dir,
    })
}

fn urunc(s: &Setup) -> Urunc {
    let path = format!(
        "{}:{}",
        s.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Urunc::new(URUNC).env("PATH", path)
}

fn bundle(name: &str, s: &Setup, guest: &str, monitor: &str) -> TestBundle {
    let mut b = TestBundle::new(name);
    b.link_file("/boot/kernel", &s.kernel);
    b.unikernel(guest, "/boot/kernel", None)
        .annotation(KEY_HYPERVISOR, monitor)
        .args(&["/app", "hello world"])
        .env(&["GREETING=hi"]);
    b
}

fn unique(name: &str) -> String {
    format!("mon-{name}-{}", std::process::id())
}

/// create, start, wait until stopped, read the record, delete; nothing left behind.
fn lifecycle(u: &Urunc, b: &TestBundle, id: &str) -> Value {
    let out = u.create(b, id);
    assert!(out.status.success(), "create\n{}", output_text(&out));
    let out = u.start(id);
    assert!(out.status.success(), "start\n{}", output_text(&out));
    assert!(u.wait_status(id, "stopped", WAIT), "{id} did not stop");
    let console = u.console(id);
    let out = u.delete(id);
    assert!(out.status.success(), "delete\n{}", output_text(&out));
    assert_eq!(u.leftovers(b, id), Vec::<String>::new());
    recorder::parse(&console).unwrap_or_else(|| panic!("no record in:\n{console}"))
}

/// The shared checks of every monitor's record; the bundles have no network namespace.
#[track_caller]
fn assert_confined(rec: &Value, kernel: &Path, kvm: bool) {
    let size = std::fs::metadata(kernel).unwrap().len();
    recorder::assert_confined(rec, &["mnt", "pid", "ipc", "uts"], size, kvm);
}

#[test]
fn firecracker_linux_config_file() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    // Defaults from the configuration file; the spec sets no limits.
    u.write_config("[monitors.firecracker]\ndefault_vcpus = 2\ndefault_memory_mb = 96\n");
    let b = bundle("fc", &s, "linux", "firecracker");
    let id = unique("fc");
    let rec = lifecycle(&u, &b, &id);
    let cfg = recorder::firecracker_config(&rec, &s.bin_dir.join("firecracker"));
    assert_eq!(
        cfg["boot-source"]["boot_args"],
        "console=ttyS0 panic=-1 quiet init=/app GREETING=hi -- \"hello world\""
    );
    assert_eq!(cfg["machine-config"]["vcpu_count"], 2);
    assert_eq!(cfg["machine-config"]["mem_size_mib"], 96);
    assert_eq!(cfg["network-interfaces"], serde_json::json!([]));
    assert_confined(&rec, &s.kernel, true);
    assert_eq!(rec["status"]["Seccomp"], "0");
}

#[test]
fn cloud_hypervisor_linux_spec_limits_win() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    u.write_config("[monitors.cloud-hypervisor]\ndefault_memory_mb = 512\n");
    let mut b = bundle("ch", &s, "linux", "cloud-hypervisor");
    b.memory_limit(128 << 20);
    let id = unique("ch");
    let rec = lifecycle(&u, &b, &id);
    assert_eq!(
        strs(&rec["argv"])[1..],
        [
            "--memory",
            "size=128M",
            "--cpus",
            "boot=1",
            "--kernel",
            "/guest/kernel",
            "--console",
            "off",
            "--serial",
            "tty",
            "--seccomp",
            "false",
            "--cmdline",
            "console=ttyS0 panic=-1 quiet init=/app GREETING=hi -- \"hello world\"",
        ]
    );
    assert_confined(&rec, &s.kernel, true);
}

#[test]
fn solo5_hvt_mirage_binary_from_config() {
    let Some(s) = setup() else { return };
    // Not on PATH: only the configuration file names it.
    let elsewhere = s.bin_dir.parent().unwrap().join("opt");
    recorder::install(&s.recorder, &elsewhere, &["my-hvt"]);
    let u = Urunc::new(URUNC);
    u.write_config(&format!(
        "[monitors.solo5-hvt]\nbinary_path = \"{}\"\nextra_args = [\"--x-extra\"]\n",
        elsewhere.join("my-hvt").display()
    ));
    let b = bundle("hvt", &s, "mirage", "solo5-hvt");
    let id = unique("hvt");
    let rec = lifecycle(&u, &b, &id);
    assert_eq!(
        strs(&rec["argv"]),
        [
            elsewhere.join("my-hvt").display().to_string(),
            "--mem=256".into(),
            "--x-extra".into(),
            "--".into(),
            "/guest/kernel".into(),
            "/app \"hello world\"".into(),
        ]
    );
    assert_confined(&rec, &s.kernel, true);
}

#[test]
fn solo5_spt_rumprun_as_a_user_without_kvm() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    let mut b = bundle("spt", &s, "rumprun", "solo5-spt");
    b.user(1000, 1000);
    let id = unique("spt");
    let rec = lifecycle(&u, &b, &id);
    assert_eq!(
        strs(&rec["argv"])[1..],
        [
            "--mem=256",
            "--",
            "/guest/kernel",
            r#"{"cmdline":"/app hello world","env":"GREETING=hi"}"#,
        ]
    );
    assert_eq!(rec["uid"], 1000);
    assert_eq!(rec["gid"], 1000);
    assert_confined(&rec, &s.kernel, false);
}

#[test]
fn the_config_is_fixed_at_create() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    u.write_config("[monitors.solo5-spt]\ndefault_memory_mb = 32\n");
    let b = bundle("fixed", &s, "mirage", "solo5-spt");
    let id = unique("fixed");
    let out = u.create(&b, &id);
    assert!(out.status.success(), "create\n{}", output_text(&out));
    // An edit (even a broken one) after create changes nothing for this container.
    u.write_config("[monitors.solo5-spt]\ndefault_memory_mb = 64\nbroken = \n");
    let out = u.start(&id);
    assert!(out.status.success(), "start\n{}", output_text(&out));
    assert!(u.wait_status(&id, "stopped", WAIT));
    let rec = recorder::parse(&u.console(&id)).expect("a record");
    assert_eq!(strs(&rec["argv"])[1], "--mem=32");
    let state = u.state_json(&id).unwrap();
    assert_eq!(state["status"], "stopped");
    let out = u.delete(&id);
    assert!(out.status.success(), "delete\n{}", output_text(&out));
    assert_eq!(u.leftovers(&b, &id), Vec::<String>::new());
}

#[test]
fn clear_errors_at_create() {
    let Some(s) = setup() else { return };
    let u = Urunc::new(URUNC).env("PATH", "/usr/bin:/bin");
    // Not installed.
    let b = bundle("missing", &s, "linux", "firecracker");
    let out = u.create(&b, &unique("missing"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("firecracker is not installed"), "{err}");
    // An unsupported combination lists what is supported.
    let b = bundle("combo", &s, "rumprun", "qemu");
    let out = u.create(&b, &unique("combo"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot run on hypervisor \"qemu\"") && err.contains("solo5-hvt, solo5-spt"),
        "{err}"
    );
    // An invalid configuration file names its line.
    u.write_config("[log]\nlevel = \"info\"\nbogus = 1\n");
    let b = bundle("cfg", &s, "linux", "qemu");
    let out = u.create(&b, &unique("cfg"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3, column 1") && err.contains("unknown field `bogus`"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(u.root()).unwrap().count(),
        0,
        "nothing left in the state root"
    );
}

/// A copy of the recorder that looks like a self-confining `solo5-hvt` (Solo5 0.11+
/// links libseccomp): bytes after the ELF image change nothing when it runs.
fn install_self_confining_hvt(s: &Setup, dir: &Path) {
    use std::io::Write;
    recorder::install(&s.recorder, dir, &["solo5-hvt"]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("solo5-hvt"))
        .unwrap();
    f.write_all(b"\0libseccomp.so.2\0").unwrap();
}

fn seccomp_bundle(name: &str, s: &Setup, monitor: &str) -> TestBundle {
    let mut b = bundle(name, s, "mirage", monitor);
    b.seccomp();
    b
}

#[test]
fn solo5_hvt_gets_urunc_seccomp_filter_before_exec() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    let mut b = seccomp_bundle("hvtsec", &s, "solo5-hvt");
    b.args(&["/app", recorder::FORBIDDEN_PROBE]);
    let id = unique("hvtsec");
    let out = u.create(&b, &id);
    assert!(out.status.success(), "create\n{}", output_text(&out));
    let out = u.start(&id);
    assert!(out.status.success(), "start\n{}", output_text(&out));
    assert!(u.wait_status(&id, "stopped", WAIT), "{id} did not stop");
    let console = u.console(&id);
    let out = u.delete(&id);
    assert!(out.status.success(), "delete\n{}", output_text(&out));
    assert_eq!(u.leftovers(&b, &id), Vec::<String>::new());
    assert!(
        !console.contains(recorder::SURVIVED),
        "a system call outside the list did not kill the tender:\n{console}"
    );
    let rec = recorder::parse(&console).unwrap_or_else(|| panic!("no record in:\n{console}"));
    // Only what the filter allows was recorded, and exactly one filter is in place.
    assert_eq!(
        rec["filtered"], true,
        "no filter (does the recorder contain \"libseccomp\" or \"seccomp_\"?): {rec}"
    );
    assert_eq!(rec["status"]["Seccomp"], "2");
    assert_eq!(rec["status"]["Seccomp_filters"], "1");
    assert_eq!(rec["status"]["NoNewPrivs"], "1");
    assert_eq!(
        strs(&rec["argv"])[1..],
        [
            "--mem=256",
            "--",
            "/guest/kernel",
            &format!("/app {}", recorder::FORBIDDEN_PROBE)
        ]
    );
    assert_eq!(rec["pid"], 1);
}

#[test]
fn no_urunc_filter_on_tenders_that_confine_themselves() {
    let Some(s) = setup() else { return };
    // Detected: a solo5-hvt linked against libseccomp.
    let own = s.bin_dir.parent().unwrap().join("own");
    install_self_confining_hvt(&s, &own);
    let path = format!(
        "{}:{}",
        own.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let u = Urunc::new(URUNC).env("PATH", path);
    let b = seccomp_bundle("selfsec", &s, "solo5-hvt");
    let rec = lifecycle(&u, &b, &unique("selfsec"));
    assert_eq!(rec["status"]["Seccomp"], "0", "{rec}");
    assert_confined(&rec, &s.kernel, true);
    // Configured: the file's answer beats detection, both ways.
    u.write_config("[monitors.solo5-hvt]\ntender_seccomp = false\n");
    let rec = lifecycle(&u, &b, &unique("cfgoff"));
    assert_eq!(rec["status"]["Seccomp"], "2", "{rec}");
    let u = urunc(&s);
    u.write_config("[monitors.solo5-hvt]\ntender_seccomp = true\n");
    let rec = lifecycle(&u, &b, &unique("cfgon"));
    assert_eq!(rec["status"]["Seccomp"], "0", "{rec}");
    // spt always confines itself.
    let b = seccomp_bundle("sptsec", &s, "solo5-spt");
    let rec = lifecycle(&u, &b, &unique("sptsec"));
    assert_eq!(rec["status"]["Seccomp"], "0", "{rec}");
}

#[test]
fn includeos_on_solo5_hvt_and_refused_elsewhere() {
    let Some(s) = setup() else { return };
    let u = urunc(&s);
    let b = bundle("ios", &s, "includeos", "solo5-hvt");
    let rec = lifecycle(&u, &b, &unique("ios"));
    assert_eq!(
        strs(&rec["argv"])[1..],
        [
            "--mem=256",
            "--",
            "/guest/kernel",
            "GREETING=hi /app \"hello world\""
        ]
    );
    assert_confined(&rec, &s.kernel, true);
    let b = bundle("iosfc", &s, "includeos", "firecracker");
    let out = u.create(&b, &unique("iosfc"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot run on hypervisor \"firecracker\"")
            && err.contains("it supports: qemu, solo5-hvt, solo5-spt"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(u.root()).unwrap().count(), 0);
}
