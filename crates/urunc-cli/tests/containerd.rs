//! containerd 1.6 driving urunc through its own Go runc shim, the way a node uses it:
//! `ctr run --runtime io.containerd.runc.v2 --runc-binary <urunc>`. The shim calls
//! urunc exactly as it calls runc: `--root /run/containerd/runc/<ns> --log
//! <bundle>/log.json --log-format json` and then `create --bundle <bundle> --pid-file
//! <bundle>/init.pid <id>`, `start <id>`, `kill <id> 9`, `delete <id>` and, once the
//! shim is gone, `delete --force <id>` again (which urunc, no longer knowing the id,
//! hands to runc). These tests check that surface end to end: guest output on the
//! container's stdout, exit statuses, urunc's error messages in ctr's output, and that
//! nothing is left behind afterwards.
//!
//! Every test starts its own private containerd (about 70 ms) whose environment carries
//! `URUNC_QEMU_ACCEL=tcg`: containerd hands its environment to the shim and the shim to
//! urunc. (On the test machines `/dev/kvm` exists but cannot boot a Linux guest.)

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use oci_image::ImageBuilder;
use test_harness::bundle::{KEY_BINARY, KEY_HYPERVISOR, KEY_INITRD, KEY_TYPE, TESTKERNEL_KEYS};
use test_harness::fixtures::{LINUX_BOOTED, LINUX_DONE, TESTKERNEL_BOOTED, TESTKERNEL_DONE};
use test_harness::{busybox_image, fixtures, output_text, require_root_and_tools, Containerd};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &[
    "containerd",
    "ctr",
    "runc",
    "containerd-shim-runc-v2",
    "qemu-system-x86_64",
];
/// Where containerd's Go runc shim keeps the runtime's state (its `--root`).
const SHIM_RUNC_ROOT: &str = "/run/containerd/runc";

/// What a test needs besides containerd, runc and QEMU.
#[derive(Clone, Copy)]
enum Needs {
    TestKernel,
    LinuxGuest,
    Busybox,
}

/// Starts a private containerd whose shims run urunc with TCG, or returns None (after a
/// `SKIP:` line, or a panic when integration tests are required) when this machine
/// cannot run the test.
fn start(needs: Needs) -> Option<Containerd> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    let ready = match needs {
        Needs::TestKernel => fixtures::testkernel().is_some(),
        Needs::LinuxGuest => fixtures::linux_guest().is_some(),
        Needs::Busybox => require_root_and_tools(&["busybox"]),
    };
    if !ready {
        return None;
    }
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        // A hanging ctr fails the test well within the file's time budget.
        .ctr_timeout(Duration::from_secs(60))
        .start()
        .expect("starting containerd");
    Some(containerd)
}

/// `--runtime io.containerd.runc.v2 --runc-binary <urunc>` plus `--annotation k=v` for
/// each of `annotations`.
fn urunc_flags(annotations: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<String> = ["--runtime", "io.containerd.runc.v2", "--runc-binary", URUNC]
        .map(String::from)
        .to_vec();
    for (k, v) in annotations {
        flags.push("--annotation".into());
        flags.push(format!("{k}={v}"));
    }
    flags
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Writes `image` as an OCI archive in the containerd dir and imports it.
fn import(containerd: &Containerd, image: &ImageBuilder, reference: &str) -> String {
    let t = Instant::now();
    let tar = containerd
        .dir()
        .join(format!("{}.tar", reference.replace(['/', ':'], "_")));
    image
        .write_oci_archive(&tar, reference)
        .expect("writing the image archive");
    let name = containerd.import(&tar).expect("importing the image");
    let _ = fs::remove_file(&tar);
    eprintln!("image {name} built and imported in {:?}", t.elapsed());
    name
}

/// An image holding only the test kernel at /boot/kernel.
fn testkernel_image() -> ImageBuilder {
    let kernel = fixtures::testkernel().expect("test kernel fixture");
    let mut image = ImageBuilder::new();
    image
        .add_file("/boot/kernel", kernel, 0o755)
        .expect("adding the kernel");
    image.cmd(["/boot/kernel"]);
    image
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `cmdline: ...` line the test kernel prints.
fn testkernel_cmdline(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("cmdline: "))
}

/// `ctr run --rm` of the test kernel (container id from `prefix`) with `flags` (urunc
/// runtime flags included) and `args`; asserts a clean boot, exit 0 and a clean host,
/// and returns the command line the kernel printed.
fn run_testkernel(
    containerd: &Containerd,
    prefix: &str,
    image: &str,
    flags: &[String],
    args: &[&str],
) -> String {
    let id = containerd.unique_id(prefix);
    let t = Instant::now();
    let out = containerd.run(&strs(flags), image, &id, args);
    eprintln!("ctr run {id} took {:?}", t.elapsed());
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let so = stdout(&out);
    assert!(so.contains(TESTKERNEL_BOOTED), "{text}");
    assert!(so.contains(TESTKERNEL_DONE), "{text}");
    let cmdline = testkernel_cmdline(&so)
        .unwrap_or_else(|| panic!("no cmdline line\n{text}"))
        .to_string();
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
    cmdline
}

/// The process arguments of a unikraft guest come after ` -- ` on its command line.
fn assert_unikraft_args(cmdline: &str, args: &str) {
    assert!(cmdline.starts_with("Unikraft "), "{cmdline:?}");
    assert!(cmdline.ends_with(&format!(" -- {args}")), "{cmdline:?}");
}

#[test]
fn testkernel_from_command_line_annotations() {
    let Some(containerd) = start(Needs::TestKernel) else {
        return;
    };
    let image = import(
        &containerd,
        &testkernel_image(),
        "example.com/urunc/tk-plain:1",
    );
    let flags = urunc_flags(TESTKERNEL_KEYS);
    let cmdline = run_testkernel(
        &containerd,
        "uk-ann",
        &image,
        &flags,
        &["hello", "big world"],
    );
    // An argument with a space stays one word: quoted on the kernel command line.
    assert_unikraft_args(&cmdline, r#"hello "big world""#);
}

/// `/urunc.json` in the image is the only configuration channel (no annotations).
fn urunc_json_image(prefix: &str, encode: fn(&str) -> String, reference: &str) {
    let Some(containerd) = start(Needs::TestKernel) else {
        return;
    };
    let mut image = testkernel_image();
    let json: serde_json::Map<String, serde_json::Value> = TESTKERNEL_KEYS
        .iter()
        .map(|(k, v)| (k.to_string(), encode(v).into()))
        .collect();
    let json = serde_json::to_string(&json).unwrap();
    image
        .add_bytes("/urunc.json", json.as_bytes(), 0o644)
        .unwrap();
    let image = import(&containerd, &image, reference);
    let cmdline = run_testkernel(
        &containerd,
        prefix,
        &image,
        &urunc_flags(&[]),
        &["from", "json"],
    );
    assert_unikraft_args(&cmdline, "from json");
}

#[test]
fn testkernel_from_plain_urunc_json() {
    urunc_json_image("uk-json", |v| v.to_string(), "example.com/urunc/tk-json:1");
}

#[test]
fn testkernel_from_base64_urunc_json() {
    // Bare base64 values, as the reference image tooling writes them.
    urunc_json_image(
        "uk-b64",
        |v| STANDARD.encode(v),
        "example.com/urunc/tk-json-b64:1",
    );
}

#[test]
fn linux_guest_gets_args_and_env() {
    let Some(containerd) = start(Needs::LinuxGuest) else {
        return;
    };
    let (vmlinux, initrd) = fixtures::linux_guest().expect("linux guest fixture");
    let mut image = ImageBuilder::new();
    test_harness::linux_guest_image(&mut image, &vmlinux, &initrd).expect("Linux guest image");
    let image = import(&containerd, &image, "example.com/urunc/linux:1");
    let mut flags = urunc_flags(&[
        (KEY_TYPE, "linux"),
        (KEY_HYPERVISOR, "qemu"),
        (KEY_BINARY, "/boot/vmlinux"),
        (KEY_INITRD, "/boot/initrd"),
    ]);
    flags.extend(["--env", "FOO=bar"].map(String::from));
    let id = containerd.unique_id("linux");
    let t = Instant::now();
    let out = containerd.run(&strs(&flags), &image, &id, &["/bin/report", "a", "b"]);
    eprintln!("ctr run {id} (Linux guest) took {:?}", t.elapsed());
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let so = stdout(&out);
    let lines: Vec<&str> = so.lines().map(|l| l.trim_end_matches('\r')).collect();
    for want in [
        LINUX_BOOTED,
        "argv0: /bin/report",
        "args: a b",
        "env: FOO=bar",
        LINUX_DONE,
    ] {
        assert!(lines.contains(&want), "no line {want:?}\n{text}");
    }
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
}

#[test]
fn ordinary_container_is_handed_to_runc() {
    let Some(containerd) = start(Needs::Busybox) else {
        return;
    };
    let mut image = ImageBuilder::new();
    busybox_image(&mut image).unwrap();
    let image = import(&containerd, &image, "example.com/urunc/busybox:1");
    let id = containerd.unique_id("runc");
    let out = containerd.run(
        &strs(&urunc_flags(&[])),
        &image,
        &id,
        &["/bin/sh", "-c", "echo hi; exit 3"],
    );
    let text = output_text(&out);
    assert_eq!(stdout(&out).trim(), "hi", "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
}

#[test]
fn missing_kernel_is_reported_through_ctr() {
    let Some(containerd) = start(Needs::TestKernel) else {
        return;
    };
    let image = import(
        &containerd,
        &testkernel_image(),
        "example.com/urunc/tk-err:1",
    );
    let flags = urunc_flags(&[
        (KEY_TYPE, "unikraft"),
        (KEY_HYPERVISOR, "qemu"),
        (KEY_BINARY, "/boot/no-such-kernel"),
    ]);
    let id = containerd.unique_id("err");
    let out = containerd.run(&strs(&flags), &image, &id, &["x"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "OCI runtime create failed",
        "not found in the container rootfs",
        KEY_BINARY,
        "/boot/no-such-kernel",
    ] {
        assert!(stderr.contains(want), "ctr's stderr lacks {want:?}\n{text}");
    }
    assert!(!stdout(&out).contains(TESTKERNEL_BOOTED), "{text}");
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
}

/// One row of `ctr task ls`: pid and status of task `id`.
fn task_row(containerd: &Containerd, id: &str) -> Option<(i32, String)> {
    let out = containerd.ctr_ok(&["tasks", "ls"]);
    stdout(&out).lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            [task, pid, status] if *task == id => Some((pid.parse().ok()?, status.to_string())),
            _ => None,
        }
    })
}

/// Polls `ctr task ls` until task `id` has `status`; returns its pid.
fn wait_task_status(containerd: &Containerd, id: &str, status: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = task_row(containerd, id);
        match &row {
            Some((pid, s)) if s == status => return *pid,
            _ if Instant::now() >= deadline => {
                panic!("task {id} not {status} within 30 s: {row:?}")
            }
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Polls `file` until it contains `text` (the guest's console output, via --log-uri).
fn wait_for_output(file: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = fs::read_to_string(file).unwrap_or_default();
        if got.contains(text) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {file:?} within 30 s; it holds:\n{got}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// argv[0] of a process.
fn argv0(pid: i32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let first = cmd.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(first).into_owned()
}

fn log_uri(containerd: &Containerd, id: &str) -> (PathBuf, String) {
    let file = containerd.dir().join(format!("{id}.log"));
    let uri = format!("file://{}", file.display());
    (file, uri)
}

#[test]
fn detached_lifecycle_with_kill() {
    let Some(containerd) = start(Needs::TestKernel) else {
        return;
    };
    let image = import(
        &containerd,
        &testkernel_image(),
        "example.com/urunc/tk-detach:1",
    );
    let id = containerd.unique_id("detached");
    let (log, uri) = log_uri(&containerd, &id);
    let mut args = vec!["run".to_string(), "-d".into(), "--log-uri".into(), uri];
    args.extend(urunc_flags(TESTKERNEL_KEYS));
    args.extend([image, id.clone(), "wait".into()]);
    let t = Instant::now();
    containerd.ctr_ok(&strs(&args));
    eprintln!("ctr run -d {id} returned after {:?}", t.elapsed());

    let pid = wait_task_status(&containerd, &id, "RUNNING");
    assert!(
        argv0(pid).ends_with("qemu-system-x86_64"),
        "task pid {pid} is {:?}, not QEMU",
        argv0(pid)
    );
    let console = wait_for_output(&log, "waiting");
    assert!(console.contains(TESTKERNEL_BOOTED), "{console}");
    let cmdline = testkernel_cmdline(&console).unwrap_or_default();
    assert_unikraft_args(cmdline, "wait");

    containerd.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    wait_task_status(&containerd, &id, "STOPPED");
    // ctr 1.6's `task delete` exits 0 and reports a non-zero exit status of the task
    // as a warning: "task <id> exit with non-zero exit code <n>".
    let out = containerd.ctr_ok(&["tasks", "delete", &id]);
    let text = output_text(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{id} exit with non-zero exit code 137")),
        "{text}"
    );
    assert!(task_row(&containerd, &id).is_none(), "task still listed");
    containerd.ctr_ok(&["containers", "rm", &id]);
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
}

#[test]
fn vmm_killed_by_signal_gives_137() {
    let Some(containerd) = start(Needs::TestKernel) else {
        return;
    };
    let image = import(
        &containerd,
        &testkernel_image(),
        "example.com/urunc/tk-kill:1",
    );
    let id = containerd.unique_id("sigkill");
    let (log, uri) = log_uri(&containerd, &id);
    let mut flags = vec!["--log-uri".to_string(), uri];
    flags.extend(urunc_flags(TESTKERNEL_KEYS));
    let out = thread::scope(|s| {
        let run = s.spawn(|| containerd.run(&strs(&flags), &image, &id, &["wait"]));
        let pid = wait_task_status(&containerd, &id, "RUNNING");
        wait_for_output(&log, "waiting");
        assert!(
            argv0(pid).ends_with("qemu-system-x86_64"),
            "{:?}",
            argv0(pid)
        );
        // The VMM dies of a signal from outside containerd: the container's exit
        // status must be QEMU's, 128 + SIGKILL.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill QEMU");
        run.join().expect("ctr run thread")
    });
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(137), "{text}");
    assert_eq!(out.status.signal(), None, "{text}");
    containerd.assert_nothing_left(&id, Path::new(SHIM_RUNC_ROOT));
}
