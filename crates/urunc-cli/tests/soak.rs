//! Soak (issue 9): many full lifecycles — `create`, `start`, `kill KILL`, `delete` — of
//! the test kernel, several at a time, asserting 0 failures and 0 leaks: no state
//! directory, cgroup, mount or process of any container, and as many open descriptors
//! in this test process as before.
//!
//! The test suite runs 100 cycles at 4-way concurrency (about 15 s here). The full soak
//! is the same test with more cycles:
//!
//! ```sh
//! URUNC_SOAK_CYCLES=1000 cargo test -p urunc-cli --test soak -- --nocapture
//! ```
//!
//! (`URUNC_SOAK_CONCURRENCY` changes the 4.) Skips (with a `SKIP:` line) when not root
//! or QEMU, runc or the test kernel are missing; fails instead when
//! `URUNC_REQUIRE_INTEGRATION` is set.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use test_harness::bundle::{TestBundle, Urunc};
use test_harness::{fixtures, mounts_under, output_text, pids_with_arg, require_root_and_tools};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
pub const CYCLES_ENV: &str = "URUNC_SOAK_CYCLES";
pub const CONCURRENCY_ENV: &str = "URUNC_SOAK_CONCURRENCY";
const DEFAULT_CYCLES: usize = 100;
const DEFAULT_CONCURRENCY: usize = 4;

fn env_number(key: &str, default: usize) -> usize {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn testkernel() -> Option<PathBuf> {
    if !require_root_and_tools(&["qemu-system-x86_64", "runc"]) {
        return None;
    }
    fixtures::testkernel()
}

fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect();
    fds.sort();
    fds
}

/// One lifecycle; the first failing step's output.
fn cycle(urunc: &Urunc, b: &TestBundle, id: &str) -> Result<(), String> {
    let step = |what: &str, out: Output| {
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{id}: {what} failed\n{}", output_text(&out)))
        }
    };
    step("create", urunc.create(b, id))?;
    step("start", urunc.start(id))?;
    match urunc.status(id).as_deref() {
        Some("running") => {}
        other => return Err(format!("{id}: status after start is {other:?}")),
    }
    step("kill", urunc.kill(id, "KILL"))?;
    if !urunc.wait_status(id, "stopped", Duration::from_secs(20)) {
        return Err(format!(
            "{id}: not stopped after kill: {:?}",
            urunc.state_json(id)
        ));
    }
    step("delete", urunc.delete(id))?;
    // This container's traces only: the other workers' containers are alive.
    let left: Vec<String> = urunc
        .leftovers(b, id)
        .into_iter()
        .filter(|l| l.contains(id))
        .collect();
    if !left.is_empty() {
        return Err(format!("{id}: left behind {left:?}"));
    }
    Ok(())
}

#[test]
fn soak_lifecycles_leak_nothing() {
    let Some(kernel) = testkernel() else { return };
    let cycles = env_number(CYCLES_ENV, DEFAULT_CYCLES);
    let workers = env_number(CONCURRENCY_ENV, DEFAULT_CONCURRENCY).max(1);
    let mut b = TestBundle::new("soak");
    b.link_file("/boot/kernel", &kernel);
    b.unikernel("unikraft", "/boot/kernel", None)
        .args(&["wait"]);
    // Each call's output goes to a file; no more than needed stays open.
    let urunc = Urunc::new(URUNC);
    let fds_before = open_fds();

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= cycles {
                    break;
                }
                let id = format!("soak-{n}-{}", std::process::id());
                if let Err(e) = cycle(&urunc, &b, &id) {
                    failures.lock().unwrap().push(e);
                    // Best effort, so one failure does not cascade into leaks.
                    let _ = urunc.delete_force(&id);
                }
            });
        }
    });
    let took = t.elapsed();
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "soak: {cycles} lifecycles at {workers}-way concurrency in {took:.1?} ({:.1} per second), {} failure(s)",
        cycles as f64 / took.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cycles} lifecycles failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Global leaks: anything in the state root, any process or mount naming it or the
    // bundle, the cgroup parent's children, and this process's descriptors.
    let mut leaks = Vec::new();
    for e in std::fs::read_dir(urunc.root()).unwrap().flatten() {
        leaks.push(format!("state root entry {}", e.path().display()));
    }
    for dir in [urunc.root(), b.dir()] {
        for p in pids_with_arg(&dir.to_string_lossy()) {
            leaks.push(format!("process {p}"));
        }
        for m in mounts_under(dir) {
            leaks.push(format!("mount {}", m.display()));
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(hierarchy.path().join("urunc"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("soak-") && name.ends_with(&format!("-{}", std::process::id())) {
                leaks.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    let fds_after = open_fds();
    if fds_after.len() != fds_before.len() {
        leaks.push(format!(
            "descriptors of the test process: {} before, {} after\nbefore: {fds_before:?}\nafter: {fds_after:?}",
            fds_before.len(),
            fds_after.len()
        ));
    }
    eprintln!("soak: {} leak(s)", leaks.len());
    assert!(leaks.is_empty(), "leaks:\n  {}", leaks.join("\n  "));
}
