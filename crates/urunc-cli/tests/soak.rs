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
//! (`URUNC_SOAK_CONCURRENCY` changes the 4.) The second test does the same with CNI
//! networking: each container gets a fresh network namespace that Debian's bridge
//! plugin (host-local IPAM) wires up, so urunc makes a tap and redirects for each; 100
//! cycles by default (`URUNC_SOAK_CNI_CYCLES`), then 0 leaked taps, qdiscs, namespaces,
//! bridge ports, IPAM leases, mounts, processes or state directories. Skips (with a `SKIP:` line) when not root
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
    fixtures::testkernel_with(&["qemu-system-x86_64", "runc"])
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

/// Runs `one(n)` for n in `first..cycles` on `workers` threads; the errors.
fn run_cycles(
    first: usize,
    cycles: usize,
    workers: usize,
    one: impl Fn(usize) -> Result<(), String> + Sync,
) -> Vec<String> {
    let next = AtomicUsize::new(first);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= cycles {
                    break;
                }
                if let Err(e) = one(n) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// Reports the run and fails with the first few failures, if any.
fn assert_no_failures(
    what: &str,
    cycles: usize,
    workers: usize,
    took: Duration,
    failures: &[String],
) {
    eprintln!(
        "{what}: {cycles} lifecycles at {workers}-way concurrency in {took:.1?} ({:.1} per second), {} failure(s)",
        cycles as f64 / took.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cycles} lifecycles failed; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

/// What both soaks count as leaked whatever the container: entries in the state root
/// and a changed number of this process's descriptors.
fn common_leaks(urunc: &Urunc, fds_before: &[String]) -> Vec<String> {
    let mut leaks: Vec<String> = std::fs::read_dir(urunc.root())
        .unwrap()
        .flatten()
        .map(|e| format!("state root entry {}", e.path().display()))
        .collect();
    let fds_after = open_fds();
    if fds_after.len() != fds_before.len() {
        leaks.push(format!(
            "descriptors of the test process: {} before, {} after\nbefore: {fds_before:?}\nafter: {fds_after:?}",
            fds_before.len(),
            fds_after.len()
        ));
    }
    leaks
}

#[track_caller]
fn assert_no_leaks(what: &str, leaks: &[String]) {
    eprintln!("{what}: {} leak(s)", leaks.len());
    assert!(leaks.is_empty(), "leaks:\n  {}", leaks.join("\n  "));
}

/// One lifecycle; the first failing step's output. `while_running` checks more once
/// the container runs.
fn cycle(
    urunc: &Urunc,
    b: &TestBundle,
    id: &str,
    while_running: &dyn Fn() -> Result<(), String>,
) -> Result<(), String> {
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
    while_running()?;
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

/// The soaks count this process's descriptors: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn soak_lifecycles_leak_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(kernel) = testkernel() else { return };
    let cycles = env_number(CYCLES_ENV, DEFAULT_CYCLES);
    let workers = env_number(CONCURRENCY_ENV, DEFAULT_CONCURRENCY).max(1);
    let b = TestBundle::waiting_testkernel("soak", &kernel);
    // Each call's output goes to a file; no more than needed stays open.
    let urunc = Urunc::new(URUNC);
    let fds_before = open_fds();

    let t = Instant::now();
    let failures = run_cycles(0, cycles, workers, |n| {
        let id = format!("soak-{n}-{}", std::process::id());
        let result = cycle(&urunc, &b, &id, &|| Ok(()));
        if result.is_err() {
            // Best effort, so one failure does not cascade into leaks.
            let _ = urunc.delete_force(&id);
        }
        result
    });
    assert_no_failures("soak", cycles, workers, t.elapsed(), &failures);

    // Global leaks: anything in the state root, any process or mount naming it or the
    // bundle, the cgroup parent's children, and this process's descriptors.
    let mut leaks = common_leaks(&urunc, &fds_before);
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
    assert_no_leaks("soak", &leaks);
}

// --- The same with CNI networking -------------------------------------------------

const CNI_CYCLES_ENV: &str = "URUNC_SOAK_CNI_CYCLES";
const DEFAULT_CNI_CYCLES: usize = 100;
const CNI_PLUGINS: &str = "/usr/lib/cni";
const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd} {args:?} failed\n{}", output_text(&out)))
    }
}

/// A CNI network of this test (Debian's bridge plugin with host-local IPAM in a private
/// directory), driven the way a container manager does: the plugin is run with
/// `CNI_COMMAND=ADD`/`DEL` for each container's network namespace. Drop removes the
/// bridge and the IPAM directory and restores IPv4 forwarding (the plugin turns it on).
struct Cni {
    config: String,
    bridge: String,
    ipam_dir: PathBuf,
    forward: String,
}

impl Cni {
    fn new() -> Cni {
        let pid = std::process::id();
        let bridge = format!("ursoak{}", pid % 1_000_000);
        let ipam_dir = std::env::temp_dir().join(format!("urunc-soak-ipam-{pid}"));
        let _ = std::fs::remove_dir_all(&ipam_dir);
        let subnet = format!("10.252.{}.0/24", pid % 250 + 1);
        let mut config = test_harness::cni::bridge_plugin(&bridge, &subnet, &ipam_dir);
        config["cniVersion"] = "1.0.0".into();
        config["name"] = format!("urunc-soak-{pid}").into();
        let config = config.to_string();
        Cni {
            config,
            bridge,
            ipam_dir,
            forward: std::fs::read_to_string(FORWARD).unwrap_or_else(|_| "0".into()),
        }
    }

    fn plugin(&self, command: &str, id: &str, netns: &str) -> Result<(), String> {
        use std::io::Write;
        let mut child = std::process::Command::new(format!("{CNI_PLUGINS}/bridge"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/var/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PLUGINS)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("bridge plugin: {e}"))?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.as_bytes())
            .map_err(|e| format!("bridge plugin stdin: {e}"))?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "CNI {command} for {id} failed\n{}",
                output_text(&out)
            ))
        }
    }

    /// Addresses host-local still has reserved (files named by IP).
    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(&self.ipam_dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|net| {
                std::fs::read_dir(net.path())
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
            .collect()
    }

    /// Interfaces still attached to the bridge.
    fn bridge_ports(&self) -> Vec<String> {
        run("ip", &["-o", "link", "show", "master", &self.bridge])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(String::from)
            .collect()
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.bridge]);
        let _ = std::fs::write(FORWARD, self.forward.trim());
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}

/// Deletes a network namespace of this test even when a cycle fails half-way.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// One lifecycle in a fresh namespace networked by CNI; checks that urunc's tap and
/// redirect were there while it ran and are gone after `delete`.
fn cni_cycle(urunc: &Urunc, cni: &Cni, kernel: &std::path::Path, n: usize) -> Result<(), String> {
    let pid = std::process::id();
    let id = format!("soakcni-{n}-{pid}");
    let netns = format!("urunc-soak{pid}-{n}");
    run("ip", &["netns", "add", &netns])?;
    let _guard = NetnsGuard(netns.clone());
    cni.plugin("ADD", &id, &netns)?;
    let mut b = TestBundle::waiting_testkernel(&format!("soakcni{n}"), kernel);
    let mut ns = b.config()["linux"]["namespaces"].clone();
    ns.as_array_mut().unwrap().push(serde_json::json!(
        {"type": "network", "path": format!("/var/run/netns/{netns}")}
    ));
    b.set("/linux/namespaces", ns);
    let tap = urunc::network::tap_name(&id);
    let networked = || {
        let links = run("ip", &["-n", &netns, "-o", "link", "show"])?;
        let qdiscs = run("tc", &["-n", &netns, "qdisc", "show", "dev", "eth0"])?;
        if !links.contains(&format!(" {tap}:")) || !qdiscs.contains("ingress") {
            return Err(format!(
                "{id}: no tap {tap} or redirect while running
{links}
{qdiscs}"
            ));
        }
        Ok(())
    };
    let result = (|| {
        cycle(urunc, &b, &id, &networked)?;
        // cycle() checked urunc's own leftovers; now the namespace: only lo and eth0,
        // no qdisc of urunc's.
        let links = run("ip", &["-n", &netns, "-o", "link", "show"])?;
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .collect();
        if names != ["lo", "eth0"] {
            return Err(format!("{id}: links left in its namespace: {names:?}"));
        }
        let qdiscs = run("tc", &["-n", &netns, "qdisc", "show"])?;
        if qdiscs.contains("ingress") {
            return Err(format!("{id}: qdisc left:\n{qdiscs}"));
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = urunc.delete_force(&id);
    }
    let del = cni.plugin("DEL", &id, &netns);
    result.and(del)
}

#[test]
fn soak_with_cni_networking_leaks_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(kernel) = testkernel() else { return };
    if !require_root_and_tools(&["ip", "tc", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"]) {
        return;
    }
    let cycles = env_number(CNI_CYCLES_ENV, DEFAULT_CNI_CYCLES);
    let workers = env_number(CONCURRENCY_ENV, DEFAULT_CONCURRENCY).max(1);
    let cni = Cni::new();
    let urunc = Urunc::new(URUNC);
    let fds_before = open_fds();
    let t = Instant::now();
    // The first cycle alone: it makes the bridge, which concurrent ADDs would race on.
    let first = cni_cycle(&urunc, &cni, &kernel, 0).err();
    let mut failures = run_cycles(1, cycles, workers, |n| cni_cycle(&urunc, &cni, &kernel, n));
    failures.splice(0..0, first);
    assert_no_failures("soak with CNI", cycles, workers, t.elapsed(), &failures);

    let pid = std::process::id();
    let mut leaks = common_leaks(&urunc, &fds_before);
    for p in pids_with_arg(&format!("-{pid}")) {
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("soakcni-") || cmd.contains(&urunc.root().to_string_lossy().into_owned()) {
            leaks.push(format!("process {p}: {cmd}"));
        }
    }
    for m in mounts_under(urunc.root()) {
        leaks.push(format!("mount {}", m.display()));
    }
    let netns = run("ip", &["netns", "list"]).unwrap_or_default();
    for l in netns
        .lines()
        .filter(|l| l.contains(&format!("urunc-soak{pid}-")))
    {
        leaks.push(format!("netns {l}"));
    }
    for port in cni.bridge_ports() {
        leaks.push(format!("bridge port {port}"));
    }
    for ip in cni.leases() {
        leaks.push(format!("IPAM lease {ip}"));
    }
    let taps = run("ip", &["-o", "link", "show", "type", "tun"]).unwrap_or_default();
    for l in taps.lines() {
        for n in 0..cycles {
            let tap = urunc::network::tap_name(&format!("soakcni-{n}-{pid}"));
            if l.contains(&format!(" {tap}:")) {
                leaks.push(format!("tap on the host: {l}"));
            }
        }
    }
    assert_no_leaks("soak with CNI", &leaks);
}
