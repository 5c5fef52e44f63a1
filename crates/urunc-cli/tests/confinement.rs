//! Confinement (issue 9), through the real `create`/`start`/`delete` lifecycle:
//!
//! - the spec's memory limit is both the guest's RAM (QEMU's `-m`) and the limit of
//!   the cgroup the monitor runs in, and a monitor that tries to use more is stopped by
//!   that cgroup (a hostile test double allocating 4 times the limit is OOM-killed);
//! - the CVE-2019-5736 class: from inside the monitor, neither its own binary
//!   (`/proc/self/exe`, directly or through a reopened descriptor) nor the host's
//!   urunc or monitor binaries can be opened for writing, urunc's binary is not in the
//!   monitor's root at all, and that root holds only what a monitor needs.
//!
//! The hostile double is `urunc-confine-probe` (test-harness), installed under the
//! name `firecracker`; it reads what to try from the kernel file it is given. Skips
//! (with a `SKIP:` line) when not root, or QEMU, the test kernel or the probe are
//! missing; fails instead when `URUNC_REQUIRE_INTEGRATION` is set.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use test_harness::bundle::{unique_id, TestBundle, Urunc, KEY_HYPERVISOR};
use test_harness::{assert_ok, fixtures, recorder, require_root_and_tools, skip_or_fail};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const PROBE: &str = "urunc-confine-probe";
const WAIT: Duration = Duration::from_secs(30);
/// For the probe that walks its root for the host's binaries.
const WALK_WAIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// The memory cgroup directory of process `pid` (v1 `memory` hierarchy, else v2).
fn memory_cgroup(pid: i32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(path));
        }
        if ctrls.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup/unified").join(path));
        }
    }
    v2.filter(|d| d.join("memory.max").exists())
}

/// The limit, peak usage and failure count of a memory cgroup (v1 or v2 names).
fn memory_figures(dir: &Path) -> (u64, u64, u64) {
    let read = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| fs::read_to_string(dir.join(n)).ok())
            .and_then(|t| {
                let t = t.trim();
                // v2 memory.events: "max N" counts hits of the limit.
                t.lines()
                    .find_map(|l| l.strip_prefix("max "))
                    .unwrap_or(t)
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (
        read(&["memory.limit_in_bytes", "memory.max"]),
        read(&["memory.max_usage_in_bytes", "memory.peak"]),
        read(&["memory.failcnt", "memory.events"]),
    )
}

#[test]
fn memory_limit_is_the_guest_ram_and_the_monitor_cgroup_limit() {
    let Some(kernel) = fixtures::testkernel_with(&["qemu-system-x86_64"]) else {
        return;
    };
    let limit = 64 * MIB;
    let mut b = TestBundle::waiting_testkernel("conf-mem", &kernel);
    b.memory_limit(limit);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("conf-mem");
    let pid = urunc.create_and_start(&b, &id);
    urunc.assert_console(&id, "waiting", WAIT);
    let argv: Vec<String> = fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|&c| c == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let ram = argv
        .windows(2)
        .find(|w| w[0] == "-m")
        .map(|w| w[1].clone())
        .unwrap_or_default();
    let dir = memory_cgroup(pid).expect("the monitor is in a memory cgroup");
    let (cg_limit, peak, _) = memory_figures(&dir);
    eprintln!(
        "guest RAM {ram}, cgroup {} limit {cg_limit}, peak {peak}",
        dir.display()
    );
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
    assert_eq!(ram, "64M", "guest RAM is not the spec's limit: {argv:?}");
    assert_eq!(
        cg_limit, limit,
        "the monitor's cgroup limit is not the spec's"
    );
    assert!(
        peak <= limit,
        "the monitor used {peak} bytes, over the {limit} limit"
    );
}

struct Probe {
    bin_dir: PathBuf,
    kernel: PathBuf,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.bin_dir.parent().unwrap());
    }
}

/// The probe installed as `firecracker` in a directory of this test.
fn probe(tag: &str) -> Option<Probe> {
    if !require_root_and_tools(&[]) {
        return None;
    }
    let kernel = fixtures::testkernel()?;
    let bin = Path::new(URUNC).with_file_name(PROBE);
    if !bin.is_file() {
        skip_or_fail(&format!(
            "{PROBE} not built (cargo build -p test-harness --bin {PROBE})"
        ));
        return None;
    }
    let dir = PathBuf::from(format!("/tmp/urunc-confine-{tag}-{}", std::process::id()));
    let bin_dir = dir.join("bin");
    recorder::install(&bin, &bin_dir, &["firecracker"]);
    Some(Probe { bin_dir, kernel })
}

impl Probe {
    fn urunc(&self) -> Urunc {
        let path = format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Urunc::new(URUNC).env("PATH", path)
    }

    /// A bundle whose "kernel" is the probe's script.
    fn bundle(&self, name: &str, script: &str) -> TestBundle {
        let mut b = TestBundle::new(name);
        // The real kernel's bytes first (urunc may look at the image), the script after.
        let mut bytes = fs::read(&self.kernel).unwrap();
        bytes.extend_from_slice(format!("\n{script}\n").as_bytes());
        b.write_file("/boot/kernel", &bytes, 0o644);
        b.unikernel("unikraft", "/boot/kernel", None)
            .annotation(KEY_HYPERVISOR, "firecracker")
            .args(&["probe"]);
        b
    }
}

fn report(console: &str) -> Option<Value> {
    let start = console.find("URUNC-PROBE-BEGIN")? + "URUNC-PROBE-BEGIN".len();
    let end = start + console[start..].find("URUNC-PROBE-END")?;
    serde_json::from_str(&console[start..end]).ok()
}

fn dev_ino(p: &Path) -> String {
    let m = fs::metadata(p).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

#[test]
fn a_monitor_cannot_use_more_memory_than_the_limit() {
    let Some(p) = probe("hog") else { return };
    let limit = 64 * MIB;
    let mut b = p.bundle("conf-hog", "hog 256");
    b.memory_limit(limit);
    let urunc = p.urunc();
    let id = unique_id("conf-hog");
    assert_ok(&urunc.create(&b, &id), "create");
    let pid = urunc.pid(&id);
    let dir = memory_cgroup(pid).expect("the container process is in a memory cgroup");
    assert_ok(&urunc.start(&id), "start");
    assert!(
        urunc.wait_status(&id, "stopped", WAIT),
        "the hog still runs: {:?}",
        urunc.state_json(&id)
    );
    let (cg_limit, peak, failures) = memory_figures(&dir);
    let console = urunc.console(&id);
    let reached = console
        .lines()
        .filter_map(|l| l.strip_prefix("hog: "))
        .filter_map(|l| l.strip_suffix(" MiB"))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    eprintln!(
        "hog of 256 MiB under a {} MiB limit: reached {reached} MiB, peak {} MiB, limit hit {failures} times",
        limit / MIB,
        peak / MIB
    );
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
    assert!(
        report(&console).is_some(),
        "the probe did not run:\n{console}"
    );
    assert_eq!(cg_limit, limit);
    assert!(
        !console.contains("hog: done"),
        "the monitor allocated 256 MiB under a 64 MiB limit:\n{console}"
    );
    assert!(reached < 64, "reached {reached} MiB");
    assert!(peak <= limit, "peak {peak} over the limit {limit}");
    assert!(failures > 0, "the limit was never hit");
}

#[test]
fn a_monitor_cannot_replace_host_binaries() {
    let Some(p) = probe("exe") else { return };
    let urunc_bin = fs::canonicalize(URUNC).unwrap();
    let monitor_bin = p.bin_dir.join("firecracker");
    let script = format!(
        "find {u}\nfind {m}\nwrite {ub}\nwrite {mb}\nwrite /proc/1/exe",
        u = dev_ino(&urunc_bin),
        m = dev_ino(&monitor_bin),
        ub = urunc_bin.display(),
        mb = monitor_bin.display(),
    );
    let b = p.bundle("conf-exe", &script);
    let urunc = p.urunc();
    let id = unique_id("conf-exe");
    assert_ok(&urunc.create(&b, &id), "create");
    assert_ok(&urunc.start(&id), "start");
    // The probe walks its whole root (all of /usr): seconds on a warm machine, tens of
    // seconds where the page cache is cold and other tests read the disk too.
    let stopped = urunc.wait_status(&id, "stopped", WALK_WAIT);
    let console = urunc.console(&id);
    assert!(
        stopped,
        "the probe did not finish its walk; console:\n{console}"
    );
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
    let rep = report(&console).unwrap_or_else(|| panic!("no probe report in:\n{console}"));
    eprintln!("probe: {rep}");
    // Every write attempt failed.
    for (path, result) in rep["writes"].as_object().unwrap() {
        assert_ne!(result, "ok", "the monitor opened {path} for writing");
    }
    // urunc's binary is not in the monitor's root at all; the monitor's binary is,
    // and cannot be written.
    let found = &rep["found"];
    let urunc_hits = found[dev_ino(&urunc_bin)].as_object().unwrap();
    assert!(
        urunc_hits.is_empty(),
        "urunc's binary is reachable: {urunc_hits:?}"
    );
    let monitor_hits = found[dev_ino(&monitor_bin)].as_object().unwrap();
    assert!(
        !monitor_hits.is_empty(),
        "the monitor's binary was not found in its root"
    );
    for (path, result) in monitor_hits {
        assert_ne!(
            result["write"], "ok",
            "the monitor could write its binary at {path}"
        );
        // "Text file busy" lasts only while it runs: the mount must be read-only too,
        // or a process it left behind could write the binary once it exited.
        assert_eq!(
            result["read_only_mount"], true,
            "the monitor's binary at {path} is on a writable mount"
        );
    }
    // Only what a monitor needs: no image content (the kernel is under /guest), no
    // host directories beyond the system ones.
    let root: Vec<&str> = rep["root"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let allowed = [
        "bin", "dev", "etc", "guest", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin",
        "sys", "tmp", "usr",
    ];
    let unexpected: Vec<&&str> = root.iter().filter(|e| !allowed.contains(e)).collect();
    assert!(
        unexpected.is_empty(),
        "unexpected entries in the monitor's root: {unexpected:?} of {root:?}"
    );
}
