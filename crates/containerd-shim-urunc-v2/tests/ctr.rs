//! containerd 1.6 running containers through `containerd-shim-urunc-v2` as runtime
//! `io.containerd.urunc.v2`, driven with `ctr`.
//!
//! Each test starts a private containerd whose `<opt>/bin` (first on containerd's PATH,
//! and so on the shim's) holds links to the shim and to `urunc`; containerd's
//! environment carries `URUNC_QEMU_ACCEL=tcg` (KVM cannot boot guests on the test
//! machines), which reaches urunc through the shim.
//!
//! `urunc` is another package's binary: these tests use the one cargo built next to
//! them (`target/<profile>/urunc`), so `cargo build -p urunc-cli` must have run first
//! (`make test` builds the workspace before testing it).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use oci_image::ImageBuilder;
use test_harness::bundle::{KEY_BINARY, KEY_HYPERVISOR, KEY_TYPE, TESTKERNEL_KEYS};
use test_harness::fixtures::{TESTKERNEL_BOOTED as BOOTED, TESTKERNEL_DONE as DONE};
use test_harness::{
    busybox_image, fixtures, linux_guest_image, output_text, pids_with_arg, require_root_and_tools,
    wait_or_kill, wait_until, Containerd,
};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-urunc-v2");
const RUNTIME: &str = "io.containerd.urunc.v2";
const TOOLS: &[&str] = &["containerd", "ctr", "runc", "qemu-system-x86_64"];
/// The shim's default urunc `--root` parent.
const STATE_ROOT: &str = "/run/containerd/urunc";

const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
const MACHINE: &str = "com.urunc.unikernel.qemuMachine";

/// `urunc` built by cargo next to this test (target/<profile>/deps/ctr-* -> ../urunc).
fn urunc_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let urunc = dir.join("urunc");
    assert!(
        urunc.is_file(),
        "{} is missing: build it first with `cargo build -p urunc-cli` (make test does)",
        urunc.display()
    );
    urunc
}

/// A private containerd that finds the shim and urunc in its `<opt>/bin`, or None after
/// a SKIP line when this machine cannot run the test.
fn start() -> Option<Containerd> {
    if !require_root_and_tools(TOOLS) || fixtures::testkernel().is_none() {
        return None;
    }
    let urunc = urunc_binary();
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .ctr_timeout(Duration::from_secs(60))
        .start_with_urunc(Path::new(SHIM), &urunc)
        .expect("starting containerd");
    Some(containerd)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn import(containerd: &Containerd, image: &ImageBuilder, reference: &str) -> String {
    let tar = containerd
        .dir()
        .join(format!("{}.tar", reference.replace(['/', ':'], "_")));
    image
        .write_oci_archive(&tar, reference)
        .expect("writing the image");
    let name = containerd.import(&tar).expect("importing the image");
    let _ = fs::remove_file(&tar);
    name
}

fn testkernel_image(containerd: &Containerd, reference: &str) -> String {
    let kernel = fixtures::testkernel().expect("test kernel fixture");
    let mut image = ImageBuilder::new();
    image.add_file("/boot/kernel", kernel, 0o755).unwrap();
    image.cmd(["/boot/kernel"]);
    import(containerd, &image, reference)
}

/// The keys that boot the image of [`linux_image`].
const LINUX_KEYS: &[(&str, &str)] = &[
    (KEY_TYPE, "linux"),
    (KEY_HYPERVISOR, "qemu"),
    (KEY_BINARY, "/boot/vmlinux"),
    ("com.urunc.unikernel.initrd", "/boot/initrd"),
];

/// The Linux guest fixture as an image: the kernel and the initrd under /boot.
fn linux_image(containerd: &Containerd, vmlinux: &Path, initrd: &Path, reference: &str) -> String {
    let mut image = ImageBuilder::new();
    linux_guest_image(&mut image, vmlinux, initrd).expect("Linux guest image");
    import(containerd, &image, reference)
}

fn busybox(containerd: &Containerd) -> String {
    let mut image = ImageBuilder::new();
    busybox_image(&mut image).expect("busybox image");
    import(containerd, &image, "example.com/urunc/shim-busybox:1")
}

/// `--runtime io.containerd.urunc.v2` and `--annotation k=v` for each of `annotations`.
fn flags(annotations: &[(&str, &str)]) -> Vec<String> {
    let mut v = vec!["--runtime".to_string(), RUNTIME.to_string()];
    for (k, val) in annotations {
        v.push("--annotation".into());
        v.push(format!("{k}={val}"));
    }
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Processes running our shim binary.
fn shim_pids() -> Vec<i32> {
    let shim = fs::canonicalize(SHIM).unwrap();
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == shim))
        .collect();
    pids.sort();
    pids
}

/// Shims serving this containerd (their `-address` is its socket).
fn our_shims(containerd: &Containerd) -> Vec<i32> {
    let ours = pids_with_arg(&containerd.address().to_string_lossy());
    shim_pids()
        .into_iter()
        .filter(|p| ours.contains(p))
        .collect()
}

/// Nothing of container `id` is left (see `Containerd::assert_nothing_left`), and no
/// shim of this containerd runs.
fn assert_nothing_left(containerd: &Containerd, id: &str) {
    wait_until(
        "this containerd's shims to go",
        Duration::from_secs(10),
        || our_shims(containerd).is_empty(),
    );
    containerd.assert_nothing_left(id, Path::new(STATE_ROOT));
}

/// PID and STATUS of task `id` in `ctr task ls`.
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

fn wait_status(containerd: &Containerd, id: &str, status: &str) -> i32 {
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        last = task_row(containerd, id).or(last);
        if let Some((pid, s)) = &last {
            if s == status {
                return *pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not {status} within 30 s (last: {last:?})"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `ctr tasks kill KILL.. ID` (e.g. `["-s", "KILL"]`, or none for SIGTERM), then once
/// the task stopped, its delete and the container's.
fn stop_and_remove(containerd: &Containerd, id: &str, kill: &[&str]) {
    let mut args = vec!["tasks", "kill"];
    args.extend_from_slice(kill);
    args.push(id);
    containerd.ctr_ok(&args);
    wait_status(containerd, id, "STOPPED");
    containerd.ctr_ok(&["tasks", "delete", id]);
    containerd.ctr_ok(&["containers", "rm", id]);
}

/// `ctr ARGS` with `input` on its stdin (the harness gives ctr /dev/null).
fn ctr_with_input(containerd: &Containerd, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("ctr")
        .arg("--address")
        .arg(containerd.address())
        .args(["--namespace", containerd.namespace()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ctr");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let (status, _) = wait_or_kill(&mut child, Duration::from_secs(60)).unwrap();
    drop(stdin);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn argv0(pid: i32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(cmd.split(|&b| b == 0).next().unwrap_or_default()).into_owned()
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `ctr run -d` of the test kernel told to `wait`, its console in a `file://` log, once
/// the guest is up: the container id, the task's pid and the console so far.
fn run_until_up(containerd: &Containerd, image: String, prefix: &str) -> (String, i32, String) {
    let id = containerd.unique_id(prefix);
    let log = containerd.dir().join(format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    let mut args: Vec<String> = ["run", "-d", "--log-uri", &uri].map(String::from).to_vec();
    args.extend(flags(TESTKERNEL_KEYS));
    args.extend([image, id.clone(), "wait".into()]);
    containerd.ctr_ok(&strs(&args));
    let pid = wait_status(containerd, &id, "RUNNING");
    let console = wait_for_text(&log, "waiting");
    (id, pid, console)
}

/// Polls `file` until it contains `text`.
fn wait_for_text(file: &Path, text: &str) -> String {
    let mut got = String::new();
    wait_until(
        &format!("{text:?} in {}", file.display()),
        Duration::from_secs(30),
        || {
            got = fs::read_to_string(file).unwrap_or_default();
            got.contains(text)
        },
    );
    got
}

#[test]
fn version_flag() {
    let out = Command::new(SHIM).arg("-v").output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(text.contains("containerd-shim-urunc-v2"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn runs_the_test_kernel_to_completion() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk:1");
    // (urunc gives the guest no isa-debug-exit device: the test kernel always exits 0;
    // non-zero statuses are covered by the busybox and kill tests.)
    for (args, code) in [(vec!["hello", "world"], 0), (vec!["second", "run"], 0)] {
        let id = containerd.unique_id("uk");
        let t = Instant::now();
        let out = containerd.run(&strs(&flags(TESTKERNEL_KEYS)), &image, &id, &args);
        eprintln!("ctr run --rm {id} {args:?} took {:?}", t.elapsed());
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(code), "{text}");
        let so = stdout(&out);
        assert!(so.contains(BOOTED), "{text}");
        assert!(so.contains(&format!(" -- {}", args.join(" "))), "{text}");
        assert!(so.contains(DONE), "{text}");
        assert_nothing_left(&containerd, &id);
    }
}

#[test]
fn detached_lifecycle_pause_resume_kill() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-d:1");
    let (id, pid, console) = run_until_up(&containerd, image, "det");
    assert!(
        argv0(pid).ends_with("qemu-system-x86_64"),
        "pid {pid}: {}",
        argv0(pid)
    );
    assert!(console.contains(BOOTED), "{console}");

    let shims = our_shims(&containerd);
    assert_eq!(shims.len(), 1, "shims: {shims:?}");
    eprintln!(
        "shim pid {} RSS {:?} KiB with one running unikernel container",
        shims[0],
        rss_kib(shims[0])
    );

    let ps = containerd.ctr_ok(&["tasks", "ps", &id]);
    assert!(
        stdout(&ps)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{}",
        output_text(&ps)
    );
    let metrics = containerd.ctr_ok(&["tasks", "metrics", &id]);
    eprintln!("ctr task metrics:\n{}", stdout(&metrics));
    assert!(
        stdout(&metrics).contains("memory.usage_in_bytes"),
        "{}",
        output_text(&metrics)
    );

    containerd.ctr_ok(&["tasks", "pause", &id]);
    wait_status(&containerd, &id, "PAUSED");
    containerd.ctr_ok(&["tasks", "resume", &id]);
    wait_status(&containerd, &id, "RUNNING");

    // Exec into a VM is refused with a clear message.
    let exec = containerd.ctr(&["tasks", "exec", "--exec-id", "e1", &id, "/bin/sh"]);
    assert!(!exec.status.success(), "{}", output_text(&exec));
    assert!(
        stderr(&exec).contains("exec is not supported for unikernel containers"),
        "{}",
        output_text(&exec)
    );

    let cp = containerd.ctr(&["tasks", "checkpoint", &id]);
    assert!(!cp.status.success(), "{}", output_text(&cp));
    assert!(
        stderr(&cp).contains("checkpoint is not supported by urunc"),
        "{}",
        output_text(&cp)
    );

    containerd.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    wait_status(&containerd, &id, "STOPPED");
    // A second kill finds nothing to kill (NotFound, as with runc).
    let again = containerd.ctr(&["tasks", "kill", "-s", "KILL", &id]);
    assert!(!again.status.success(), "{}", output_text(&again));
    assert!(
        stderr(&again).contains("not found"),
        "{}",
        output_text(&again)
    );

    let del = containerd.ctr_ok(&["tasks", "delete", &id]);
    assert!(
        stderr(&del).contains("exit with non-zero exit code 137"),
        "{}",
        output_text(&del)
    );
    assert!(task_row(&containerd, &id).is_none());
    containerd.ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn terminal_run_echoes_input() {
    let Some(containerd) = start() else {
        return;
    };
    if !require_root_and_tools(&["script"]) {
        return;
    }
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-t:1");
    let id = containerd.unique_id("tty");
    // ctr -t needs a terminal on its own stdin: script(1) gives it one.
    let mut ctr = vec![
        "ctr".to_string(),
        "--address".into(),
        containerd.address().to_string_lossy().into_owned(),
        "--namespace".into(),
        containerd.namespace().into(),
        "run".into(),
        "--rm".into(),
        "-t".into(),
    ];
    ctr.extend(flags(TESTKERNEL_KEYS));
    ctr.extend([image, id.clone(), "echo".into()]);
    let cmdline = ctr
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_pipe = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let mut stdin = child.stdin.take().unwrap();
    // Typed after the guest is up: it echoes until a 'q'.
    thread::sleep(Duration::from_secs(2));
    stdin.write_all(b"xyz").unwrap();
    thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"q").unwrap();
    let (status, _) = wait_or_kill(&mut child, Duration::from_secs(60)).unwrap();
    drop(stdin);
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let text = format!("status {status}\n--- output ---\n{out}\n--- stderr ---\n{err}");
    assert!(status.success(), "{text}");
    assert!(out.contains(BOOTED), "{text}");
    assert!(out.contains("xyz"), "{text}");
    assert!(out.contains(DONE), "{text}");
    assert_nothing_left(&containerd, &id);
}

#[test]
fn ordinary_containers_go_to_runc_through_the_shim() {
    let Some(containerd) = start() else {
        return;
    };
    if !require_root_and_tools(&["busybox"]) {
        return;
    }
    let image = busybox(&containerd);
    let id = containerd.unique_id("bb");
    let out = containerd.run(
        &strs(&flags(&[])),
        &image,
        &id,
        &["/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"],
    );
    let text = output_text(&out);
    assert_eq!(stdout(&out).trim(), "hi", "{text}");
    assert!(stderr(&out).contains("oops"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert_nothing_left(&containerd, &id);

    // stdin reaches the process. (Only data: like containerd's Go runc shim, the shim
    // holds stdin open until CloseIO, which ctr 1.6 does not send when its input ends
    // before the task exists, so a process reading to end of file would wait.)
    let id = containerd.unique_id("bbi");
    let mut args: Vec<String> = ["run", "--rm"].map(String::from).to_vec();
    args.extend(flags(&[]));
    args.extend([
        image.clone(),
        id.clone(),
        "/bin/sh".into(),
        "-c".into(),
        "read line; echo got:$line".into(),
    ]);
    let out = ctr_with_input(&containerd, &strs(&args), b"typed-input\n");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(stdout(&out).trim(), "got:typed-input", "{text}");
    assert_nothing_left(&containerd, &id);

    // exec works for them, with its own streams and exit status.
    let id = containerd.unique_id("bbx");
    let mut args: Vec<String> = ["run", "-d"].map(String::from).to_vec();
    args.extend(flags(&[]));
    args.extend([
        image,
        id.clone(),
        "/bin/busybox".into(),
        "sleep".into(),
        "60".into(),
    ]);
    containerd.ctr_ok(&strs(&args));
    wait_status(&containerd, &id, "RUNNING");
    let exec = containerd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "x1",
        &id,
        "/bin/sh",
        "-c",
        "echo exec-out; exit 5",
    ]);
    let text = output_text(&exec);
    assert_eq!(stdout(&exec).trim(), "exec-out", "{text}");
    assert_eq!(exec.status.code(), Some(5), "{text}");
    stop_and_remove(&containerd, &id, &["-s", "KILL"]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn missing_kernel_error_reaches_ctr() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-err:1");
    let id = containerd.unique_id("err");
    let keys = [
        (KEY_TYPE, "unikraft"),
        (KEY_HYPERVISOR, "qemu"),
        (KEY_BINARY, "/boot/no-such-kernel"),
    ];
    let t = Instant::now();
    let out = containerd.run(&strs(&flags(&keys)), &image, &id, &["x"]);
    eprintln!("failing ctr run took {:?}", t.elapsed());
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    for want in ["/boot/no-such-kernel", KEY_BINARY, "not found"] {
        assert!(
            stderr(&out).contains(want),
            "ctr's stderr lacks {want:?}\n{text}"
        );
    }
    // ctr run --rm does not remove the container when the task cannot be created.
    containerd.ctr(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn containers_of_one_pod_share_a_shim() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-pod:1");
    let pod = containerd.unique_id("pod");
    let mut keys = TESTKERNEL_KEYS.to_vec();
    keys.push((SANDBOX_ID, &pod));
    let ids = [containerd.unique_id("pa"), containerd.unique_id("pb")];
    for id in &ids {
        let mut args: Vec<String> = ["run", "-d"].map(String::from).to_vec();
        args.extend(flags(&keys));
        args.extend([image.clone(), id.clone(), "wait".into()]);
        containerd.ctr_ok(&strs(&args));
        wait_status(&containerd, id, "RUNNING");
    }
    let shims = our_shims(&containerd);
    assert_eq!(shims.len(), 1, "one shim for the pod, found {shims:?}");
    eprintln!(
        "shim pid {} RSS {:?} KiB with two running unikernel containers",
        shims[0],
        rss_kib(shims[0])
    );
    // Deleting one container leaves the shim serving the other.
    stop_and_remove(&containerd, &ids[0], &["-s", "KILL"]);
    assert_eq!(our_shims(&containerd), shims);
    wait_status(&containerd, &ids[1], "RUNNING");
    stop_and_remove(&containerd, &ids[1], &["-s", "KILL"]);
    for id in &ids {
        assert_nothing_left(&containerd, id);
    }
}

#[test]
fn file_log_uri_gets_the_guest_output() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-log:1");
    let id = containerd.unique_id("log");
    let log = containerd.dir().join("logs").join(format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    let mut f = flags(TESTKERNEL_KEYS);
    f.extend(["--log-uri".to_string(), uri]);
    let out = containerd.run(&strs(&f), &image, &id, &["to-file"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let got = fs::read_to_string(&log).unwrap_or_default();
    assert!(got.contains(BOOTED) && got.contains(DONE), "{got}\n{text}");
    assert_nothing_left(&containerd, &id);
}

/// `ctr events` running in the background; what it printed so far.
struct EventWatch {
    child: std::process::Child,
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl EventWatch {
    fn start(containerd: &Containerd) -> EventWatch {
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(containerd.address())
            .arg("events")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stdout.take().unwrap();
        let sink = text.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let watch = EventWatch { child, text };
        // `ctr events` subscribes some milliseconds after it starts; an event published
        // before then is never printed (containerd's cleanup after a killed shim can be
        // that quick). Label the namespace until the watch reports the update.
        let ns = containerd.namespace();
        let mut n = 0;
        wait_until("ctr events to subscribe", Duration::from_secs(15), || {
            n += 1;
            let label = format!("urunc.test/events-ready={n}");
            containerd.ctr_ok(&["namespaces", "label", ns, &label]);
            thread::sleep(Duration::from_millis(50));
            watch
                .text
                .lock()
                .unwrap()
                .contains("urunc.test/events-ready")
        });
        watch
    }

    /// Waits for a line with all of `parts`.
    fn wait_for(&self, parts: &[&str]) -> String {
        let mut line = String::new();
        wait_until(
            &format!("an event with {parts:?}"),
            Duration::from_secs(15),
            || {
                let text = self.text.lock().unwrap();
                match text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                    Some(l) => {
                        line = l.to_string();
                        true
                    }
                    None => false,
                }
            },
        );
        line
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ctr run -d` of the test kernel waiting forever; returns the container id.
fn run_waiting(containerd: &Containerd, image: &str, prefix: &str) -> String {
    let id = containerd.unique_id(prefix);
    let mut args: Vec<String> = ["run", "-d"].map(String::from).to_vec();
    args.extend(flags(TESTKERNEL_KEYS));
    args.extend([image.to_string(), id.clone(), "wait".into()]);
    containerd.ctr_ok(&strs(&args));
    wait_status(containerd, &id, "RUNNING");
    id
}

#[test]
fn events_reach_containerd() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-ev:1");
    let events = EventWatch::start(&containerd);
    let id = run_waiting(&containerd, &image, "ev");
    events.wait_for(&["/tasks/create", &id]);
    events.wait_for(&["/tasks/start", &id]);
    containerd.ctr_ok(&["tasks", "pause", &id]);
    events.wait_for(&["/tasks/paused", &id]);
    containerd.ctr_ok(&["tasks", "resume", &id]);
    events.wait_for(&["/tasks/resumed", &id]);
    containerd.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    let exit = events.wait_for(&["/tasks/exit", &id]);
    assert!(exit.contains("\"exit_status\":137"), "{exit}");
    assert!(exit.contains("exited_at"), "{exit}");
    containerd.ctr_ok(&["tasks", "delete", &id]);
    let delete = events.wait_for(&["/tasks/delete", &id]);
    assert!(delete.contains("\"exit_status\":137"), "{delete}");
    containerd.ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn containerd_restart_keeps_the_container_managed() {
    let Some(mut containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-rs:1");
    let id = run_waiting(&containerd, &image, "rs");
    let (pid, _) = task_row(&containerd, &id).unwrap();
    let shims = our_shims(&containerd);
    let t = Instant::now();
    containerd
        .crash_and_restart()
        .expect("kill -9 and restart of containerd");
    eprintln!("containerd killed and restarted in {:?}", t.elapsed());
    // Same VM, same shim, still running and under control.
    assert_eq!(wait_status(&containerd, &id, "RUNNING"), pid);
    assert_eq!(our_shims(&containerd), shims);
    assert!(argv0(pid).ends_with("qemu-system-x86_64"));
    containerd.ctr_ok(&["tasks", "ps", &id]);
    let events = EventWatch::start(&containerd);
    containerd.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
    wait_status(&containerd, &id, "STOPPED");
    // The shim reconnected to the new containerd for its events.
    let exit = events.wait_for(&["/tasks/exit", &id]);
    assert!(exit.contains("\"exit_status\":137"), "{exit}");
    let del = containerd.ctr_ok(&["tasks", "delete", &id]);
    assert!(
        stderr(&del).contains("exit code 137"),
        "{}",
        output_text(&del)
    );
    containerd.ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn killed_shim_means_an_exited_task() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-kill:1");
    let id = run_waiting(&containerd, &image, "ks");
    let (vm, _) = task_row(&containerd, &id).unwrap();
    let shims = our_shims(&containerd);
    assert_eq!(shims.len(), 1, "{shims:?}");
    let address = containerd_shim::socket_address(
        &containerd.address().display().to_string(),
        containerd.namespace(),
        &id,
    );
    let socket = PathBuf::from(address.strip_prefix("unix://").unwrap());
    assert!(socket.exists(), "{} not found", socket.display());
    let events = EventWatch::start(&containerd);
    // SAFETY: kill(2) on the pid of the shim this test started through containerd.
    assert_eq!(unsafe { libc::kill(shims[0], libc::SIGKILL) }, 0);
    // containerd runs `containerd-shim-urunc-v2 delete`, which removes the VM.
    let exit = events.wait_for(&["/tasks/exit", &id]);
    assert!(exit.contains("\"exit_status\":137"), "{exit}");
    wait_until("the VM to be gone", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{vm}")).exists() || argv0(vm).is_empty()
    });
    match task_row(&containerd, &id) {
        None => {}
        Some((_, status)) => assert_eq!(status, "STOPPED"),
    }
    // The dead shim's socket file goes too (containerd's cleanup run of `delete`).
    wait_until(
        "the dead shim's socket to be removed",
        Duration::from_secs(10),
        || !socket.exists(),
    );
    let _ = containerd.ctr(&["tasks", "delete", &id]);
    containerd.ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn binary_log_uri_gets_the_guest_output() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-bin:1");
    let id = containerd.unique_id("bin");
    let out_file = containerd.dir().join(format!("{id}.from-logger"));
    // A logging binary as containerd defines them: stdout on fd 3, stderr on fd 4,
    // ready when fd 5 is closed; the query string becomes its arguments.
    let logger = containerd.dir().join("logger.sh");
    fs::write(
        &logger,
        "#!/bin/sh\n[ \"$1\" = out ] || exit 2\nexec 5>&-\necho \"id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE\" > \"$2\"\nexec cat <&3 >> \"$2\"\n",
    )
    .unwrap();
    fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?out={}", logger.display(), out_file.display());
    let mut f = flags(TESTKERNEL_KEYS);
    f.extend(["--log-uri".to_string(), uri]);
    let out = containerd.run(&strs(&f), &image, &id, &["to-binary"]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let got = wait_for_text(&out_file, DONE);
    assert!(
        got.starts_with(&format!("id={id} ns={}", containerd.namespace())),
        "{got}"
    );
    assert!(got.contains(BOOTED), "{got}");
    assert_nothing_left(&containerd, &id);
}

#[test]
fn missing_urunc_is_a_clear_error() {
    if !require_root_and_tools(TOOLS) || fixtures::testkernel().is_none() {
        return;
    }
    // A PATH without urunc even where it is installed on the host.
    let path: Vec<&str> = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .filter(|d| !Path::new(d).join("urunc").exists())
        .collect();
    let containerd = Containerd::builder()
        .env("PATH", &path.join(":"))
        .start()
        .expect("starting containerd");
    let bin = containerd.opt_bin();
    fs::create_dir_all(&bin).unwrap();
    // Only the shim: no urunc anywhere on containerd's PATH.
    std::os::unix::fs::symlink(SHIM, bin.join("containerd-shim-urunc-v2")).unwrap();
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-nourunc:1");
    let id = containerd.unique_id("nourunc");
    let out = containerd.run(&strs(&flags(TESTKERNEL_KEYS)), &image, &id, &["x"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        stderr(&out).contains("runtime binary \"urunc\" not found in PATH"),
        "{text}"
    );
    containerd.ctr(&["containers", "rm", &id]);
    assert_nothing_left(&containerd, &id);
}

#[test]
fn linux_guest_runs_through_the_shim() {
    let Some(containerd) = start() else {
        return;
    };
    let Some((vmlinux, initrd)) = fixtures::linux_guest() else {
        return;
    };
    let image = linux_image(
        &containerd,
        &vmlinux,
        &initrd,
        "example.com/urunc/shim-linux:1",
    );
    let id = containerd.unique_id("linux");
    let t = Instant::now();
    let out = containerd.run(
        &strs(&flags(LINUX_KEYS)),
        &image,
        &id,
        &["/bin/report", "a", "b"],
    );
    eprintln!("ctr run --rm {id} (Linux guest) took {:?}", t.elapsed());
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let so = stdout(&out);
    for want in [
        "URUNC-LINUX-GUEST-BOOTED",
        "args: a b",
        "URUNC-LINUX-GUEST-DONE",
    ] {
        assert!(so.contains(want), "no {want:?}\n{text}");
    }
    assert_nothing_left(&containerd, &id);
}

/// `ctr task kill` sends SIGTERM, on which QEMU ends the VM. The shim blocks SIGTERM
/// in all its threads (it takes its signals with `sigwait`), and a block is inherited
/// across fork and exec: the monitor must not start with it.
#[test]
fn sigterm_stops_the_vm() {
    let Some(containerd) = start() else {
        return;
    };
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-term:1");
    // Once the guest is up, QEMU has its handlers: a signal whose action is the default
    // never reaches a pid namespace's init, which QEMU is (as with runc's containers).
    let (id, pid, _) = run_until_up(&containerd, image, "term");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigBlk in /proc/<pid>/status");
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGCHLD] {
        assert_eq!(
            blocked & (1 << (sig - 1)),
            0,
            "signal {sig} blocked in the monitor: {blocked:#x}"
        );
    }
    stop_and_remove(&containerd, &id, &[]);
    assert_nothing_left(&containerd, &id);
}

/// The QEMU machine is chosen per guest: the image's `urunc.json` names it
/// (`com.urunc.unikernel.qemuMachine`, as `urunc-pack --qemu-machine` writes it) over the
/// host's default (`pc`), and an annotation overrides the image.
#[test]
fn the_image_chooses_its_qemu_machine() {
    let Some(containerd) = start() else {
        return;
    };
    let kernel = fixtures::testkernel().expect("test kernel fixture");
    let urunc_json = format!(
        r#"{{"{KEY_TYPE}":"unikraft","{KEY_HYPERVISOR}":"qemu","{KEY_BINARY}":"/boot/kernel","{MACHINE}":"microvm"}}"#
    );
    let mut image = ImageBuilder::new();
    image
        .add_file("/boot/kernel", kernel, 0o755)
        .unwrap()
        .add_bytes("/urunc.json", urunc_json.into_bytes(), 0o644)
        .unwrap();
    let image = import(&containerd, &image, "example.com/urunc/shim-tk-microvm:1");
    let machine_of = |annotations: &[(&str, &str)]| {
        let id = containerd.unique_id("mach");
        let mut args: Vec<String> = ["run", "-d"].map(String::from).to_vec();
        args.extend(flags(annotations));
        args.extend([image.clone(), id.clone(), "wait".into()]);
        containerd.ctr_ok(&strs(&args));
        let pid = wait_status(&containerd, &id, "RUNNING");
        let argv: Vec<String> = fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        stop_and_remove(&containerd, &id, &["-s", "KILL"]);
        assert_nothing_left(&containerd, &id);
        let at = argv.iter().position(|a| a == "-machine");
        at.and_then(|i| argv.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(machine_of(&[]), "microvm");
    assert_eq!(machine_of(&[(MACHINE, "pc")]), "pc");

    // And the guest boots there, to the end.
    let id = containerd.unique_id("mach-run");
    let out = containerd.run(&strs(&flags(&[])), &image, &id, &["hello"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(stdout(&out).contains(DONE), "{text}");
    assert_nothing_left(&containerd, &id);

    // A machine QEMU has but urunc does not generate arguments for: one clear line.
    let id = containerd.unique_id("mach-bad");
    let out = containerd.run(&strs(&flags(&[(MACHINE, "q35")])), &image, &id, &["hello"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        stderr(&out).contains(r#"com.urunc.unikernel.qemuMachine: machine "q35" is not supported"#),
        "{}",
        output_text(&out)
    );
    assert_nothing_left(&containerd, &id);
}

/// A Linux guest booting through urunit reports its application's exit status on a
/// second serial port; the shim makes it the task's (QEMU itself exits 0 when the guest
/// powers off), so `ctr run` returns it, as it would for a runc container.
#[test]
fn the_guest_applications_exit_status_is_the_tasks() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let (Some((vmlinux, initrd)), Some(urunit)) = (fixtures::linux_guest(), fixtures::urunit())
    else {
        return;
    };
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .env("URUNC_URUNIT", &urunit.to_string_lossy())
        .ctr_timeout(Duration::from_secs(60))
        .start_with_urunc(Path::new(SHIM), &urunc_binary())
        .expect("starting containerd");
    let image = linux_image(
        &containerd,
        &vmlinux,
        &initrd,
        "example.com/urunc/shim-linux-exit:1",
    );
    for code in [3, 0] {
        let id = containerd.unique_id("linux-exit");
        let script = format!("echo bye; exit {code}");
        let out = containerd.run(
            &strs(&flags(LINUX_KEYS)),
            &image,
            &id,
            &["/bin/sh", "-c", &script],
        );
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(code), "{text}");
        assert_eq!(stdout(&out).trim(), "bye", "{text}");
        assert_nothing_left(&containerd, &id);
    }
}

/// Soak through one long-lived shim (issue 9): a pod's anchor container keeps the shim
/// alive while `URUNC_SHIM_SOAK_CYCLES` (default 100) more containers of the pod run,
/// are killed and deleted one after another. The shim's RSS after the first 10 and at
/// the end stays within 512 KiB, its descriptors within 2, and nothing is left.
///
/// Regression: the shim's `start` subcommand used to spawn a throw-away shim for every
/// container of a pod (it exits at once: the pod's socket is taken) and, in about 2 of 3
/// runs of this test, spun at 100% CPU in `signal_hook_registry::unregister` under the
/// resulting SIGCHLDs, hanging `ctr run -d`. `start` now hands out the live pod shim's
/// address without spawning.
#[test]
fn one_shim_serves_many_containers_without_growing() {
    let Some(containerd) = start() else {
        return;
    };
    let cycles: usize = std::env::var("URUNC_SHIM_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let image = testkernel_image(&containerd, "example.com/urunc/shim-tk-soak:1");
    let pod = containerd.unique_id("soakpod");
    let mut keys = TESTKERNEL_KEYS.to_vec();
    keys.push((SANDBOX_ID, &pod));
    let run = |id: &str| {
        let mut args: Vec<String> = ["run", "-d"].map(String::from).to_vec();
        args.extend(flags(&keys));
        args.extend([image.clone(), id.to_string(), "wait".into()]);
        containerd.ctr_ok(&strs(&args));
        wait_status(&containerd, id, "RUNNING");
    };
    let remove = |id: &str| stop_and_remove(&containerd, id, &["-s", "KILL"]);
    let anchor = containerd.unique_id("anchor");
    run(&anchor);
    let shims = our_shims(&containerd);
    assert_eq!(shims.len(), 1, "one shim for the pod, found {shims:?}");
    let shim = shims[0];
    let fds = |pid: i32| fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let mut baseline = None;
    let t = Instant::now();
    for n in 0..cycles {
        if n == 10.min(cycles) {
            baseline = Some((rss_kib(shim).unwrap(), fds(shim)));
        }
        let id = containerd.unique_id(&format!("soak{n}"));
        run(&id);
        remove(&id);
        assert!(
            !Path::new(STATE_ROOT)
                .join(containerd.namespace())
                .join(&id)
                .exists(),
            "urunc state of {id} left behind"
        );
    }
    let (rss0, fds0) = baseline.unwrap_or((rss_kib(shim).unwrap(), fds(shim)));
    let (rss1, fds1) = (rss_kib(shim).unwrap(), fds(shim));
    eprintln!(
        "shim {shim}: {cycles} containers in {:.1?}; RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}",
        t.elapsed()
    );
    assert_eq!(our_shims(&containerd), vec![shim], "the shim changed");
    assert!(
        rss1 <= rss0 + 512,
        "shim RSS grew from {rss0} to {rss1} KiB"
    );
    assert!(
        fds1 <= fds0 + 2,
        "shim descriptors grew from {fds0} to {fds1}"
    );
    remove(&anchor);
    assert_nothing_left(&containerd, &anchor);
}
