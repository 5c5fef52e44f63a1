//! Faults (issue 9), each a test: `kill -9` of `urunc create` and of `urunc delete`
//! half-way (at a fixed point, inside a blocking hook, and at several random points),
//! the container process killed while `start` sets up the network, and the network
//! left half-done by a crashed earlier run (its tap, qdisc and redirect still there).
//! After each: `state` tells the truth, `delete` (or `delete --force`) cleans
//! everything, and a new container with the same id runs.
//!
//! The other faults are in `reliability.rs` (VMM killed, concurrent creates and
//! deletes, partial cleanup) and the shim's `ctr.rs` (shim and containerd killed);
//! `docs/reliability.md` lists them all.
//!
//! Network tests make their own namespace and veth pair and remove them on drop.
//! Skips (with a `SKIP:` line) when not root or QEMU, runc, ip, tc or the test kernel
//! are missing; fails instead when `URUNC_REQUIRE_INTEGRATION` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use test_harness::bundle::{unique_id, wait_for, TestBundle, Urunc};
use test_harness::{assert_ok, fixtures};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &["qemu-system-x86_64", "runc"];
const NET_TOOLS: &[&str] = &["qemu-system-x86_64", "ip", "tc"];
const WAIT: Duration = Duration::from_secs(20);
/// Points (after the command began) at which the random-point tests kill it.
const KILL_AFTER_MS: &[u64] = &[0, 2, 5, 10, 20, 40];

/// The id is usable again: a new container runs, and goes without a trace.
#[track_caller]
fn id_runs_again(urunc: &Urunc, b: &TestBundle, id: &str) {
    urunc.create_and_start(b, id);
    assert_ok(
        &urunc.delete_force(id),
        "delete --force of the new container",
    );
    urunc.assert_clean(b, id);
}

/// Starts `urunc ARGS` without waiting for it.
fn spawn(urunc: &Urunc, args: &[&str]) -> Child {
    urunc
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run urunc")
}

fn kill9(child: &mut Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

/// A hook script that records its pid, marks that it runs, and blocks — the fixed
/// point at which a test kills the urunc running it. Once marked, it returns at once
/// (the retried command must not block again). Returns (script, marker, pid file).
fn blocking_hook(b: &TestBundle, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let marker = b.dir().join(format!("{name}.ran"));
    let pidfile = b.dir().join(format!("{name}.pid"));
    let script = b.script(
        name,
        &format!(
            "[ -e '{m}' ] && exit 0\necho $$ > '{p}'\ntouch '{m}'\nexec sleep 60",
            m = marker.display(),
            p = pidfile.display()
        ),
    );
    (script, marker, pidfile)
}

/// Ends the hook process the killed urunc left running (it is this test's).
fn end_hook(pidfile: &Path) {
    if let Some(pid) = fs::read_to_string(pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_for(WAIT, || !Path::new(&format!("/proc/{pid}")).exists());
    }
}

#[test]
fn create_killed_in_a_hook_is_reported_stopped_and_cleaned() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("create-killed", &kernel);
    let (hook, marker, pidfile) = blocking_hook(&b, "create-hook");
    // createRuntime runs in `urunc create` once the container process, its cgroups
    // and its state exist: half-way.
    b.hook("createRuntime", hook.to_str().unwrap(), &[], &[]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("fault-create-killed");
    let dir = b.dir().to_str().unwrap().to_string();
    let mut create = spawn(&urunc, &["create", "--bundle", &dir, &id]);
    assert!(wait_for(WAIT, || marker.exists()), "the hook never ran");
    assert_eq!(urunc.status(&id).as_deref(), Some("creating"));
    kill9(&mut create);
    end_hook(&pidfile);
    // Its creator gone, the container never was: stopped, not "creating" forever.
    assert_eq!(urunc.status(&id).as_deref(), Some("stopped"));
    assert!(
        !urunc.start(&id).status.success(),
        "start of a half-made container"
    );
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
    id_runs_again(&urunc, &b, &id);
}

#[test]
fn create_killed_at_random_points_leaves_a_deletable_container() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("create-random", &kernel);
    let urunc = Urunc::new(URUNC);
    let dir = b.dir().to_str().unwrap().to_string();
    for (round, ms) in KILL_AFTER_MS.iter().enumerate() {
        let id = unique_id(&format!("fault-create-random{round}"));
        let mut create = spawn(&urunc, &["create", "--bundle", &dir, &id]);
        std::thread::sleep(Duration::from_millis(*ms));
        kill9(&mut create);
        let out = urunc.state(&id);
        let said = if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["status"].as_str().unwrap_or("?").to_string()
        } else {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        };
        // Not yet reserved, never finished, or finished just before the kill.
        assert!(
            said.ends_with("does not exist") || said == "stopped" || said == "created",
            "killed after {ms} ms: state says {said:?}"
        );
        assert_ok(&urunc.delete_force(&id), "delete --force");
        eprintln!("create killed after {ms} ms: {said}");
        id_runs_again(&urunc, &b, &id);
    }
}

#[test]
fn delete_killed_in_a_hook_is_finished_by_the_next_delete() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("delete-killed", &kernel);
    let (hook, marker, pidfile) = blocking_hook(&b, "poststop-hook");
    // poststop runs in `urunc delete` after the VMM, its cgroups and its network are
    // gone and before the state directory is: half-way.
    b.hook("poststop", hook.to_str().unwrap(), &[], &[]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("fault-delete-killed");
    urunc.create_and_start(&b, &id);
    let mut delete = spawn(&urunc, &["delete", "--force", &id]);
    assert!(wait_for(WAIT, || marker.exists()), "the hook never ran");
    kill9(&mut delete);
    end_hook(&pidfile);
    assert_eq!(urunc.status(&id).as_deref(), Some("stopped"));
    // Stopped: a plain delete finishes the job.
    assert_ok(&urunc.delete(&id), "delete after the killed one");
    urunc.assert_clean(&b, &id);
    id_runs_again(&urunc, &b, &id);
}

#[test]
fn delete_killed_at_random_points_is_finished_by_the_next_delete() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("delete-random", &kernel);
    let urunc = Urunc::new(URUNC);
    for (round, ms) in KILL_AFTER_MS.iter().enumerate() {
        let id = unique_id(&format!("fault-delete-random{round}"));
        urunc.create_and_start(&b, &id);
        let mut delete = spawn(&urunc, &["delete", "--force", &id]);
        std::thread::sleep(Duration::from_millis(*ms));
        kill9(&mut delete);
        let said = urunc.status(&id);
        assert!(
            matches!(said.as_deref(), None | Some("running") | Some("stopped")),
            "killed after {ms} ms: state says {said:?}"
        );
        assert_ok(
            &urunc.delete_force(&id),
            "delete --force after the killed one",
        );
        urunc.assert_clean(&b, &id);
        eprintln!("delete killed after {ms} ms: {said:?}");
        id_runs_again(&urunc, &b, &id);
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert_ok(&out, &format!("ip {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tc(ns: &str, args: &[&str]) -> String {
    let out = Command::new("tc")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run tc");
    assert_ok(&out, &format!("tc {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace of this test with a veth pair (`uplink0` addressed, `peer0`),
/// so urunc finds an interface to give the guest; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("urunc-f{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&[
            "-n", n, "link", "add", "uplink0", "type", "veth", "peer", "name", "peer0",
        ]);
        ip(&["-n", n, "addr", "add", "10.249.7.2/24", "dev", "uplink0"]);
        ip(&["-n", n, "link", "set", "uplink0", "up"]);
        ip(&["-n", n, "link", "set", "peer0", "up"]);
        ip(&["-n", n, "route", "add", "default", "via", "10.249.7.1"]);
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    fn links(&self) -> Vec<String> {
        let mut l: Vec<String> = ip(&["-n", &self.name, "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect();
        l.sort();
        l
    }

    /// What a crashed run of container `id` leaves: its tap, the ingress qdisc on the
    /// uplink and a redirect to the tap.
    fn leave_half_done_network(&self, id: &str) {
        let tap = urunc::network::tap_name(id);
        let n = self.name.as_str();
        ip(&["-n", n, "tuntap", "add", "mode", "tap", "name", &tap]);
        tc(n, &["qdisc", "add", "dev", "uplink0", "ingress"]);
        tc(
            n,
            &[
                "filter", "add", "dev", "uplink0", "parent", "ffff:", "prio", "30066", "protocol",
                "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                "dev", &tap,
            ],
        );
    }

    /// Only the namespace's own links, and no qdisc or filter of urunc's.
    #[track_caller]
    fn assert_pristine(&self) {
        assert_eq!(self.links(), ["lo", "peer0", "uplink0"], "leftover links");
        let qdiscs = tc(&self.name, &["qdisc", "show"]);
        assert!(!qdiscs.contains("ingress"), "leftover qdisc:\n{qdiscs}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn network_bundle(name: &str, kernel: &Path, ns: &Netns) -> TestBundle {
    let mut b = TestBundle::waiting_testkernel(name, kernel);
    let mut list = b.config()["linux"]["namespaces"].clone();
    list.as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": ns.path()}));
    b.set("/linux/namespaces", list);
    b
}

#[test]
fn network_left_half_done_by_a_crash_is_replaced() {
    let Some(kernel) = fixtures::testkernel_with(NET_TOOLS) else {
        return;
    };
    let ns = Netns::new("stale");
    let b = network_bundle("net-stale", &kernel, &ns);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("fault-net-stale");
    ns.leave_half_done_network(&id);
    let tap = urunc::network::tap_name(&id);
    let pid = urunc.create_and_start(&b, &id);
    urunc.assert_console(&id, "waiting", WAIT);
    // The monitor got the tap; exactly one redirect on the uplink (the stale one went).
    let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&argv).contains(&tap),
        "monitor argv lacks {tap}"
    );
    let filters = tc(&ns.name, &["filter", "show", "dev", "uplink0", "ingress"]);
    assert_eq!(
        filters.matches("mirred").count(),
        1,
        "redirects on the uplink:\n{filters}"
    );
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
    ns.assert_pristine();
    id_runs_again(&urunc, &b, &id);
    ns.assert_pristine();
}

#[test]
fn container_process_killed_during_network_setup_is_cleaned() {
    let Some(kernel) = fixtures::testkernel_with(NET_TOOLS) else {
        return;
    };
    let ns = Netns::new("start");
    let b = network_bundle("net-start", &kernel, &ns);
    let urunc = Urunc::new(URUNC);
    for (round, ms) in KILL_AFTER_MS.iter().enumerate() {
        let id = unique_id(&format!("fault-net-start{round}"));
        assert_ok(&urunc.create(&b, &id), "create");
        let pid = urunc.pid(&id);
        // `start` lets the container process set up the tap and redirects, then exec
        // the monitor; it is killed somewhere along that way (or once it is QEMU).
        let mut start = spawn(&urunc, &["start", &id]);
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = start.wait();
        assert!(
            urunc.wait_status(&id, "stopped", WAIT),
            "killed after {ms} ms: state {:?}",
            urunc.state_json(&id)
        );
        assert_ok(&urunc.delete(&id), "delete");
        urunc.assert_clean(&b, &id);
        ns.assert_pristine();
        eprintln!("container process killed {ms} ms into start: cleaned");
    }
    let id = unique_id("fault-net-start-again");
    id_runs_again(&urunc, &b, &id);
    ns.assert_pristine();
}
