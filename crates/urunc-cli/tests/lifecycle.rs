//! The runtime driven the way runc is driven, bundle by bundle: `urunc create/start/
//! state/kill/delete/run` against real QEMU under TCG, booting the PVH test kernel (as a
//! `unikraft` guest, ~0.1 s) or the Debian kernel with the report initrd (as a `linux`
//! guest, ~2.5 s). Every test uses its own bundle, `--root` and container id, and ends
//! by checking that nothing was left behind: no state, process, mount or cgroup.
//!
//! Skips (with a `SKIP:` line) when not root or QEMU, runc or the fixtures are missing;
//! fails instead when `URUNC_REQUIRE_INTEGRATION` is set.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use test_harness::bundle::{
    tree_snapshot, unique_id, wait_for, TestBundle, Urunc, KEY_BINARY, KEY_HYPERVISOR, KEY_TYPE,
};
use test_harness::fixtures::{
    LINUX_BOOTED, LINUX_DONE, TESTKERNEL_BOOTED as BOOTED, TESTKERNEL_DONE as DONE,
};
use test_harness::{assert_ok, fixtures, output_text, require_root_and_tools};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &["qemu-system-x86_64", "runc"];

const WAIT: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `cmdline:` line the test kernel printed.
fn cmdline_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("cmdline: "))
        .unwrap_or_else(|| panic!("no cmdline line in:\n{stdout}"))
        .to_string()
}

#[track_caller]
fn assert_testkernel_ran(out: &Output, args_tail: &str) {
    assert_ok(out, "urunc run");
    let stdout = text(&out.stdout);
    assert!(stdout.contains(BOOTED), "{}", output_text(out));
    assert!(stdout.contains(DONE), "{}", output_text(out));
    let cmdline = cmdline_line(&stdout);
    assert!(
        cmdline.starts_with("Unikraft ") && cmdline.ends_with(&format!(" -- {args_tail}")),
        "unexpected cmdline {cmdline:?}"
    );
}

#[test]
fn run_boots_the_test_kernel_with_its_arguments() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::testkernel("run", &kernel, &["hello", "world"]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-run");
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!("urunc run of the test kernel took {:?}", t.elapsed());
    assert_testkernel_ran(&out, "hello world");
    assert_eq!(out.status.code(), Some(0));
    urunc.assert_clean(&b, &id);
}

#[test]
fn urunc_json_plain_and_base64_configure_the_same_guest() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let plain = [
        (KEY_TYPE, "unikraft"),
        (KEY_HYPERVISOR, "qemu"),
        (KEY_BINARY, "/boot/kernel"),
    ];
    fn encode(how: &str, v: &str) -> String {
        match how {
            "plain" => v.to_string(),
            // As the reference image tooling writes every value.
            "bare-base64" => STANDARD.encode(v),
            _ => format!("b64:{}", STANDARD.encode(v)),
        }
    }
    for name in ["plain", "bare-base64", "b64-prefix"] {
        let mut b = TestBundle::testkernel(name, &kernel, &["from", "json"]);
        for (k, _) in plain {
            b.remove_annotation(k);
        }
        let values: Vec<(&str, String)> =
            plain.iter().map(|(k, v)| (*k, encode(name, v))).collect();
        let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.urunc_json(&values);
        let urunc = Urunc::new(URUNC);
        let id = unique_id(&format!("lc-json-{name}"));
        let out = urunc.run(&b, &id);
        eprintln!("{name}: {values:?}");
        assert_testkernel_ran(&out, "from json");
        urunc.assert_clean(&b, &id);
    }
}

#[test]
fn create_state_start_kill_delete() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("lifecycle", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-lifecycle");
    let pid_file = b.dir().join("container.pid");

    let out = urunc.create_with(&b, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    assert_ok(&out, "create");
    let pid: i32 = fs::read_to_string(&pid_file)
        .expect("pid file written")
        .trim()
        .parse()
        .expect("pid file holds a number");
    let state = urunc.state_json(&id).expect("state after create");
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["pid"], pid, "{state}");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], b.dir().to_str().unwrap());

    let list = urunc.list();
    assert_ok(&list, "list");
    let list: Vec<Value> = serde_json::from_slice(&list.stdout).expect("list is JSON");
    let entry = list
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {list:?}"));
    assert_eq!(entry["status"], "created");

    let ps = urunc.ps(&id);
    assert_ok(&ps, "ps");
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).expect("ps --format json");
    assert!(pids.contains(&pid), "ps {pids:?} lacks {pid}");

    assert_ok(&urunc.start(&id), "start");
    assert_eq!(urunc.status(&id).as_deref(), Some("running"));
    urunc.assert_console(&id, "waiting", WAIT);
    assert_eq!(urunc.state_json(&id).unwrap()["pid"], pid);
    // The leftovers check sees a live container's traces (so its silence means something).
    let traces = urunc.leftovers(&b, &id).join("\n");
    for kind in ["state root entry", "process", "cgroup"] {
        assert!(traces.contains(kind), "no {kind} among:\n{traces}");
    }

    let out = urunc.delete(&id);
    assert!(
        !out.status.success(),
        "delete of a running container succeeded"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("running") && err.contains("--force"),
        "unclear message: {err}"
    );
    assert_eq!(urunc.status(&id).as_deref(), Some("running"));

    assert_ok(&urunc.kill(&id, "KILL"), "kill");
    assert!(
        urunc.wait_status(&id, "stopped", WAIT),
        "not stopped after KILL: {:?}",
        urunc.state_json(&id)
    );
    assert_ok(&urunc.delete(&id), "delete");
    assert!(!urunc.root().join(&id).exists(), "state dir not removed");
    assert!(!urunc.state(&id).status.success(), "state after delete");
    urunc.assert_clean(&b, &id);
}

#[test]
fn delete_force_discards_a_created_container() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("discard", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-discard");
    assert_ok(&urunc.create(&b, &id), "create");
    let pid = urunc.state_json(&id).unwrap()["pid"].as_i64().unwrap();
    assert_ok(&urunc.delete_force(&id), "delete --force");
    // Gone, or a zombie until init reaps it (a zombie has an empty cmdline).
    assert!(
        wait_for(WAIT, || fs::read(format!("/proc/{pid}/cmdline"))
            .map_or(true, |c| c.is_empty())),
        "container process {pid} survived delete --force"
    );
    assert!(urunc.console(&id).is_empty(), "the guest ran without start");
    urunc.assert_clean(&b, &id);
}

#[test]
fn killed_create_is_undone_by_delete_force_and_the_id_reusable() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::testkernel("killed", &kernel, &["again"]);
    let hook_pid = b.dir().join("hook.pid");
    // Records its pid, then becomes `sleep 5` (same pid), so the test can end it.
    let hook = b.script(
        "slow-hook.sh",
        &format!(
            "echo $$ > {}.tmp && mv {0}.tmp {0}\nexec sleep 5",
            hook_pid.display()
        ),
    );
    b.hook(
        "createRuntime",
        hook.to_str().unwrap(),
        &[],
        &["PATH=/usr/bin:/bin"],
    );
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-killed");
    let bundle = b.dir().to_str().unwrap().to_string();
    let mut create = urunc
        .command(&["create", "--bundle", &bundle, &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn urunc create");
    assert!(
        wait_for(WAIT, || hook_pid.exists()),
        "the createRuntime hook never ran"
    );
    create.kill().expect("SIGKILL urunc create");
    create.wait().expect("reap urunc create");
    // The hook is the test's own process, orphaned like any hook of a killed runtime.
    let hook: i32 = fs::read_to_string(&hook_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hook),
        nix::sys::signal::Signal::SIGKILL,
    );

    assert!(urunc.root().join(&id).exists(), "no state to recover from");
    let state = urunc
        .state_json(&id)
        .expect("state of the half-made container");
    assert_ne!(state["status"], "running", "{state}");
    assert_ok(&urunc.delete_force(&id), "delete --force");
    assert!(
        wait_for(WAIT, || urunc.leftovers(&b, &id).is_empty()),
        "left after delete --force: {:?}",
        urunc.leftovers(&b, &id)
    );

    b.unset("/hooks");
    let out = urunc.run(&b, &id);
    assert_testkernel_ran(&out, "again");
    urunc.assert_clean(&b, &id);
}

#[test]
fn a_run_leaves_the_rootfs_byte_identical() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::testkernel("identical", &kernel, &["hello"]);
    b.write_file("/etc/hostname", b"image\n", 0o644)
        .write_file("/bin/app", b"#!/bin/sh\necho app\n", 0o755)
        .write_file("/secret", b"0600 data", 0o600)
        .symlink("/boot/vmlinuz", "kernel")
        .symlink("/abs-link", "/etc/hostname")
        .mkdir("/var/empty")
        .mkdir("/tmp");
    b.urunc_json(&[("com.urunc.unikernel.unikernelVersion", "0.17.0")]);
    let before = tree_snapshot(&b.rootfs());
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-identical");
    let out = urunc.run(&b, &id);
    assert_testkernel_ran(&out, "hello");
    urunc.assert_clean(&b, &id);
    let after = tree_snapshot(&b.rootfs());
    assert_eq!(before, after, "the run changed the rootfs");
    assert!(before.len() > 10, "{before:?}");
}

#[test]
fn linux_guest_gets_arguments_and_environment() {
    if fixtures::testkernel_with(TOOLS).is_none() {
        return;
    }
    let Some((vmlinux, initrd)) = fixtures::linux_guest() else {
        return;
    };
    let mut b = TestBundle::new("linux");
    b.link_file("/boot/vmlinux", &vmlinux)
        .link_file("/boot/initrd", &initrd);
    b.unikernel("linux", "/boot/vmlinux", Some("/boot/initrd"))
        .args(&["/bin/report", "one", "two words"])
        .env(&["PATH=/bin", "GREETING=hi there"]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-linux");
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!("urunc run of the Linux guest took {:?}", t.elapsed());
    assert_ok(&out, "run");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    for want in [
        LINUX_BOOTED,
        "argv0: /bin/report",
        "args: one two words",
        "env: GREETING=hi there",
        "env: PATH=/bin",
        LINUX_DONE,
    ] {
        assert!(
            lines.contains(&want),
            "no line {want:?}\n{}",
            output_text(&out)
        );
    }
    assert_eq!(out.status.code(), Some(0));
    urunc.assert_clean(&b, &id);
}

#[test]
fn concurrent_creates_share_a_new_parent_cgroup() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    // A parent cgroup no container has made yet, as for the first containers of a new
    // containerd namespace (`/<namespace>/<id>`): all four race to create it.
    let parent = format!("urunc-test-{}", std::process::id());
    let _remove_parent = RemoveCgroupOnDrop(parent.clone());
    let bundles: Vec<TestBundle> = (0..4)
        .map(|k| {
            let mut b = TestBundle::testkernel(&format!("cg{k}"), &kernel, &["hello"]);
            b.cgroups_path(&format!("/{parent}/c{k}"));
            b
        })
        .collect();
    let urunc = Urunc::new(URUNC);
    let barrier = std::sync::Barrier::new(bundles.len());
    let outs: Vec<(String, Output)> = thread::scope(|s| {
        let handles: Vec<_> = bundles
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let (urunc, barrier) = (&urunc, &barrier);
                s.spawn(move || {
                    let id = unique_id(&format!("lc-cg{k}"));
                    barrier.wait();
                    let out = urunc.run(b, &id);
                    (id, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((id, out), b) in outs.iter().zip(&bundles) {
        assert_testkernel_ran(out, "hello");
        urunc.assert_clean(b, id);
    }
}

/// Removes a (parent) cgroup from every hierarchy, also when the test fails: urunc,
/// like runc, leaves parents it made, so the test removes the one it invented.
struct RemoveCgroupOnDrop(String);

impl Drop for RemoveCgroupOnDrop {
    fn drop(&mut self) {
        let base = Path::new("/sys/fs/cgroup");
        for hierarchy in fs::read_dir(base).into_iter().flatten().flatten() {
            let _ = fs::remove_dir(hierarchy.path().join(&self.0));
        }
        let _ = fs::remove_dir(base.join(&self.0));
    }
}

/// One line a hook wrote: `<hook> <ns-since-epoch> <state JSON>`.
fn parse_hook_lines(text: &str) -> Vec<(String, u128, Value)> {
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next().unwrap().to_string();
            let ts = parts.next().unwrap().parse().expect("timestamp");
            let state = serde_json::from_str(parts.next().unwrap_or(""))
                .unwrap_or_else(|e| panic!("hook {name} got no state JSON ({e}): {l}"));
            (name, ts, state)
        })
        .collect()
}

#[test]
fn hooks_run_in_order_and_receive_the_state() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("hooks", &kernel);
    let log = b.dir().join("hooks.log");
    let script = b.script(
        "hook.sh",
        &format!("echo \"$1 $(date +%s%N) $(cat)\" >> {}", log.display()),
    );
    let script = script.to_str().unwrap();
    let env = ["PATH=/usr/bin:/bin"];
    for kind in ["createRuntime", "createContainer", "poststart", "poststop"] {
        b.hook(kind, script, &["hook.sh", kind], &env);
    }
    // startContainer hooks run in the container: inside the monitor's root, where
    // only host binaries and a private /tmp exist. The test reads that /tmp through
    // /proc/<monitor pid>/root.
    let inline = "echo \"startContainer $(date +%s%N) $(cat)\" >> /tmp/hooks.log";
    b.hook("startContainer", "/bin/sh", &["sh", "-c", inline], &env);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-hooks");

    assert_ok(&urunc.create(&b, &id), "create");
    let after_create = parse_hook_lines(&fs::read_to_string(&log).unwrap());
    let names: Vec<&str> = after_create.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["createRuntime", "createContainer"]);

    assert_ok(&urunc.start(&id), "start");
    urunc.assert_console(&id, "waiting", WAIT);
    let pid = urunc.state_json(&id).unwrap()["pid"].as_i64().unwrap();
    let inside = fs::read_to_string(format!("/proc/{pid}/root/tmp/hooks.log"))
        .expect("startContainer hook output in the monitor's /tmp");
    let started = parse_hook_lines(&inside);
    let after_start = parse_hook_lines(&fs::read_to_string(&log).unwrap());

    assert_ok(&urunc.kill(&id, "KILL"), "kill");
    assert!(urunc.wait_status(&id, "stopped", WAIT));
    assert_ok(&urunc.delete(&id), "delete");
    let mut all = parse_hook_lines(&fs::read_to_string(&log).unwrap());
    assert_eq!(
        after_start.len(),
        3,
        "poststart missing after start: {after_start:?}"
    );
    all.extend(started);
    all.sort_by_key(|(_, ts, _)| *ts);
    let order: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        order,
        [
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{all:#?}"
    );
    for (name, _, state) in &all {
        assert_eq!(state["id"], id.as_str(), "{name}: {state}");
        assert_eq!(
            state["bundle"],
            b.dir().to_str().unwrap(),
            "{name}: {state}"
        );
        // The OCI state each hook kind is given: the pid is the VMM's from the start.
        let expected_status = match name.as_str() {
            "createRuntime" | "createContainer" => "creating",
            "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(state["status"], expected_status, "{name}: {state}");
        if name != "poststop" {
            assert_eq!(state["pid"].as_i64(), Some(pid), "{name}: {state}");
        }
    }
    urunc.assert_clean(&b, &id);
}

#[test]
fn a_failing_create_runtime_hook_fails_create_cleanly() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("badhook", &kernel);
    let script = b.script("fail.sh", "cat >/dev/null; echo 'hook says no' >&2; exit 3");
    b.hook("createRuntime", script.to_str().unwrap(), &[], &[]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-badhook");
    let out = urunc.create(&b, &id);
    assert!(
        !out.status.success(),
        "create succeeded\n{}",
        output_text(&out)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("createRuntime hook")
            && err.contains(script.to_str().unwrap())
            && err.contains("hook says no"),
        "unclear message: {err}"
    );
    urunc.assert_clean(&b, &id);
}

/// Accepts one connection on `listener` and receives the fd runc-style runtimes send.
fn receive_pty_master(listener: UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (stream, _) = listener.accept().expect("accept on the console socket");
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for cmsg in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed this descriptor in our table.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no SCM_RIGHTS message on the console socket");
}

/// Reads `fd` until `needle` appears or `timeout` passes; returns what was read.
fn read_until(fd: &OwnedFd, needle: &str, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(needle) && Instant::now() < deadline {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn terminal_output_arrives_through_the_console_socket() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("tty", &kernel);
    b.terminal(true);
    let socket = b.dir().join("console.sock");
    let listener = UnixListener::bind(&socket).expect("bind the console socket");
    let receiver = thread::spawn(move || receive_pty_master(listener));
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-tty");
    let out = urunc.create_with(&b, &id, &["--console-socket", socket.to_str().unwrap()]);
    assert_ok(&out, "create with --console-socket");
    let master = receiver.join().expect("console receiver");
    assert_ok(&urunc.start(&id), "start");
    let seen = read_until(&master, "waiting", WAIT);
    assert!(seen.contains(BOOTED), "pty output: {seen:?}");
    assert!(seen.contains("waiting"), "pty output: {seen:?}");
    assert!(
        !urunc.console(&id).contains(BOOTED),
        "guest output went to urunc's stdout instead of the pty"
    );
    assert_ok(&urunc.kill(&id, "KILL"), "kill");
    assert!(urunc.wait_status(&id, "stopped", WAIT));
    assert_ok(&urunc.delete(&id), "delete");
    drop(master);
    urunc.assert_clean(&b, &id);
}

/// `Uid:`/`Gid:` line of /proc/<pid>/status as numbers (real, effective, saved, fs).
fn ids_of(pid: i32, key: &str) -> Vec<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in status"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn monitor_runs_as_the_user_sandboxed_in_its_own_root() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("confined", &kernel);
    b.user(1000, 1000).seccomp();
    b.write_file("/container-only-file", b"not for the monitor", 0o644);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-confined");
    let pid = urunc.create_and_start(&b, &id);
    urunc.assert_console(&id, "waiting", WAIT);

    assert_eq!(ids_of(pid, "Uid:"), [1000; 4]);
    assert_eq!(ids_of(pid, "Gid:"), [1000; 4]);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline.split(|&b| b == 0).map(text).collect();
    assert!(argv[0].contains("qemu-system"), "{argv:?}");
    let sandbox = argv.iter().position(|a| a == "-sandbox").expect("-sandbox");
    assert!(argv[sandbox + 1].starts_with("on,"), "{argv:?}");

    let mut listing: Vec<String> = fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    for want in ["guest", "dev", "usr", "proc", "sys", "tmp"] {
        assert!(
            listing.iter().any(|n| n == want),
            "{want} missing: {listing:?}"
        );
    }
    for unwanted in ["container-only-file", "boot", "urunc.json"] {
        assert!(
            !listing.iter().any(|n| n == unwanted),
            "container file {unwanted} visible to the monitor: {listing:?}"
        );
    }
    assert!(Path::new(&format!("/proc/{pid}/root/guest/kernel")).is_file());

    assert_ok(&urunc.kill(&id, "KILL"), "kill");
    assert!(urunc.wait_status(&id, "stopped", WAIT));
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
}

/// A bundle with no urunc keys: Debian's static busybox as an ordinary container.
fn busybox_bundle(name: &str) -> Option<TestBundle> {
    if !require_root_and_tools(&["runc", test_harness::BUSYBOX]) {
        return None;
    }
    let mut b = TestBundle::new(name);
    b.copy_file("/bin/busybox", test_harness::BUSYBOX);
    b.args(&["/bin/busybox", "echo", "hi-from-runc"]);
    Some(b)
}

#[test]
fn an_ordinary_bundle_is_run_by_runc() {
    let Some(b) = busybox_bundle("runc-run") else {
        return;
    };
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-runc-run");
    let out = urunc.run(&b, &id);
    assert_ok(&out, "run");
    assert_eq!(
        text(&out.stdout).trim(),
        "hi-from-runc",
        "{}",
        output_text(&out)
    );
    urunc.assert_clean(&b, &id);
}

#[test]
fn an_ordinary_bundle_is_created_stated_and_deleted_by_runc() {
    let Some(mut b) = busybox_bundle("runc-create") else {
        return;
    };
    b.args(&["/bin/busybox", "sleep", "60"]);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("lc-runc-create");
    assert_ok(&urunc.create(&b, &id), "create");
    let state = urunc.state_json(&id).expect("state from runc");
    assert_eq!(state["id"], id.as_str(), "{state}");
    assert_eq!(state["status"], "created", "{state}");
    // Only runc's state has an owner field; urunc's state dir format is not used.
    assert!(state.get("owner").is_some(), "not runc's state: {state}");
    assert!(!urunc.root().join(&id).join("urunc-state.json").exists());
    assert_ok(&urunc.delete_force(&id), "delete --force");
    assert!(!urunc.state(&id).status.success());
    urunc.assert_clean(&b, &id);
}
