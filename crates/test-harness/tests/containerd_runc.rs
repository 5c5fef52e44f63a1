//! Proves the harness: a private containerd runs busybox images through runc
//! and leaves nothing behind when dropped.

use std::path::PathBuf;
use std::time::Instant;
use test_harness::{
    busybox_image, mounts_under, output_text, pids_with_arg, require_root_and_tools, Containerd,
};

const TOOLS: &[&str] = &[
    "containerd",
    "ctr",
    "runc",
    "containerd-shim-runc-v2",
    "busybox",
];

fn start() -> Containerd {
    let containerd = Containerd::start().expect("starting containerd");
    eprintln!(
        "containerd pid {:?} answered after {:?} (dir {})",
        containerd.pid(),
        containerd.startup_time(),
        containerd.dir().display()
    );
    containerd
}

/// Writes a busybox image with oci_image and imports it; returns its name.
fn import_busybox(containerd: &Containerd, reference: &str) -> String {
    let mut image = oci_image::ImageBuilder::new();
    busybox_image(&mut image).expect("busybox image");
    let tar = containerd.dir().join("busybox.tar");
    image
        .write_oci_archive(&tar, reference)
        .expect("writing the archive");
    let t = Instant::now();
    let name = containerd.import(&tar).expect("importing");
    eprintln!("imported {name} in {:?}", t.elapsed());
    assert_eq!(name, reference);
    let images = containerd.ctr_ok(&["images", "ls", "-q"]);
    assert!(String::from_utf8_lossy(&images.stdout)
        .lines()
        .any(|l| l == reference));
    name
}

/// What must be gone once the harness is dropped.
struct Traces {
    dir: PathBuf,
    config: String,
    socket: String,
}

impl Traces {
    fn of(containerd: &Containerd) -> Traces {
        Traces {
            dir: containerd.dir().to_path_buf(),
            config: containerd.config_path().to_string_lossy().into_owned(),
            socket: containerd.address().to_string_lossy().into_owned(),
        }
    }

    fn assert_gone(&self) {
        assert!(
            pids_with_arg(&self.config).is_empty(),
            "containerd still running"
        );
        assert!(
            pids_with_arg(&self.socket).is_empty(),
            "shims still running"
        );
        assert!(
            mounts_under(&self.dir).is_empty(),
            "mounts left under {:?}",
            self.dir
        );
        assert!(!self.dir.exists(), "{:?} not removed", self.dir);
    }
}

fn run_hello(flags: &[&str]) {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let containerd = start();
    let traces = Traces::of(&containerd);
    let image = import_busybox(&containerd, "docker.io/library/busybox-harness:test");
    let id = containerd.unique_id("t1");
    let t = Instant::now();
    let script = "echo hello-from-runc; exit 3";
    let out = containerd.run(flags, &image, &id, &["/bin/sh", "-c", script]);
    eprintln!("ctr run {flags:?} took {:?}", t.elapsed());
    let text = output_text(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-from-runc"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    // --rm removed the container again.
    let left = containerd.ctr_ok(&["containers", "ls", "-q"]);
    assert!(left.stdout.is_empty(), "{}", output_text(&left));
    let t = Instant::now();
    drop(containerd);
    eprintln!("drop took {:?}", t.elapsed());
    traces.assert_gone();
}

#[test]
fn runs_busybox_with_default_runtime() {
    run_hello(&[]);
}

#[test]
fn runs_busybox_with_explicit_runc_binary() {
    // How urunc gets plugged in: the Go runc shim executing another binary.
    run_hello(&[
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        "/usr/bin/runc",
    ]);
}

#[test]
fn drop_cleans_up_running_container() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let containerd = start();
    let traces = Traces::of(&containerd);
    let image = import_busybox(&containerd, "example.com/busybox-sleeper:1");
    let id = containerd.unique_id("sleeper");
    let fifo = containerd.dir().join("fifo");
    let fifo = fifo.to_str().unwrap();
    containerd.ctr_ok(&[
        "run",
        "-d",
        "--fifo-dir",
        fifo,
        &image,
        &id,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
    let tasks = containerd.ctr_ok(&["tasks", "ls"]);
    let tasks = String::from_utf8_lossy(&tasks.stdout).into_owned();
    let line = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("task listed");
    let pid: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    // The container's rootfs is mounted below our temp dir.
    assert!(!mounts_under(&traces.dir).is_empty());
    let t = Instant::now();
    drop(containerd);
    eprintln!("drop with a running container took {:?}", t.elapsed());
    traces.assert_gone();
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "container process {pid} survived"
    );
}

#[test]
fn failed_start_reports_log_and_cleans_up() {
    if !require_root_and_tools(&["containerd", "ctr"]) {
        return;
    }
    let err = Containerd::builder()
        .extra_toml("this is not toml")
        .start()
        .expect_err("a broken config must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("containerd exited during startup"), "{msg}");
    assert!(msg.contains("toml"), "log tail missing: {msg}");
    let dir = msg
        .split("log ")
        .nth(1)
        .and_then(|s| s.split("/containerd.log").next());
    let dir = PathBuf::from(dir.expect("log path in message"));
    assert!(
        dir.to_string_lossy().starts_with("/tmp/urunc-ctrd-"),
        "{dir:?}"
    );
    assert!(!dir.exists(), "{dir:?} left behind");
}

#[test]
fn cleans_up_when_the_test_panics() {
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let mut traces = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let containerd = start();
        traces = Some(Traces::of(&containerd));
        let image = import_busybox(&containerd, "example.com/busybox-panic:1");
        let id = containerd.unique_id("doomed");
        let fifo = containerd.dir().join("fifo");
        let fifo = fifo.to_str().unwrap();
        containerd.ctr_ok(&[
            "run",
            "-d",
            "--fifo-dir",
            fifo,
            &image,
            &id,
            "/bin/busybox",
            "sleep",
            "600",
        ]);
        panic!("deliberate failure with a running container");
    }));
    assert!(result.is_err());
    traces.expect("containerd started").assert_gone();
}
