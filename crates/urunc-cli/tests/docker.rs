//! Docker 20.10 (Debian's `docker.io`) and podman 4.3 driving urunc, as users do:
//! `dockerd --add-runtime urunc=<urunc>` + `docker load` + `docker run --runtime urunc`,
//! and `podman load` + `podman run --runtime <urunc>`.
//!
//! Neither passes annotations to the runtime: the image's `/urunc.json` (written by
//! urunc-pack) is the only thing telling urunc what to boot. Each test starts its own
//! daemons with all their storage in temporary directories (see test_harness::Dockerd
//! and test_harness::Podman); the accelerator reaches urunc through containerd's
//! environment (Docker) or conmon's (podman's `conmon_env_vars`).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use test_harness::fixtures::TESTKERNEL_BOOTED as BOOTED;
use test_harness::{
    fixtures, output_text, pids_with_arg, require_root_and_tools, Dockerd, Podman, DOCKER, DOCKERD,
    PODMAN_RUN_ULIMITS,
};
use urunc_pack::PackOptions;

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const ACCEL: (&str, &str) = ("URUNC_QEMU_ACCEL", "tcg");

/// The test kernel packed as a unikraft guest whose Cmd is `args`, written to `dir`.
fn pack_testkernel(dir: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
    let kernel = fixtures::testkernel()?;
    let tar = dir.join("testkernel.tar");
    let opts = PackOptions {
        cmd: args.iter().map(|s| s.to_string()).collect(),
        name: Some(name.to_string()),
        ..PackOptions::new(kernel, "unikraft")
    };
    opts.pack(&tar).expect("packing the test kernel");
    Some(tar)
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

fn cmdline_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("cmdline: "))
        .unwrap_or_else(|| panic!("no cmdline line in:\n{out}"))
}

/// Waits until no process has `needle` in its arguments.
fn assert_no_process_with(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids_with_arg(needle);
        if pids.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes still running with {needle:?} in their arguments: {pids:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// No urunc state file left anywhere below `dir`.
fn assert_no_urunc_state(dir: &Path) {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, found),
                _ if e.file_name() == "urunc-state.json" => found.push(p),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, &mut found);
    assert!(found.is_empty(), "urunc state left: {found:?}");
}

fn start_docker() -> Option<Dockerd> {
    if !require_root_and_tools(&[DOCKERD, DOCKER, "containerd", "qemu-system-x86_64"]) {
        return None;
    }
    fixtures::testkernel()?;
    let runtimes = [("urunc", Path::new(URUNC))];
    Some(Dockerd::start(&runtimes, &[ACCEL]).expect("starting containerd and dockerd"))
}

#[test]
fn docker_run_boots_a_packed_unikernel() {
    let Some(docker) = start_docker() else {
        return;
    };
    let image = "urunc.local/test/docker-tk:latest";
    let Some(tar) = pack_testkernel(docker.dir(), image, &["hello", "from", "docker"]) else {
        return;
    };
    let tar = tar.to_string_lossy().into_owned();
    let out = docker.docker_ok(&["load", "--input", &tar]);
    assert!(text(&out).contains(image), "{}", output_text(&out));

    let out = docker.docker(&["run", "--rm", "--runtime", "urunc", image]);
    let console = text(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(console.contains(BOOTED), "{console}");
    let line = cmdline_line(&console);
    assert!(line.starts_with("cmdline: Unikraft env.vars=[ "), "{line}");
    assert!(line.ends_with(" -- hello from docker"), "{line}");

    // Arguments after the image name replace the image's Cmd.
    let out = docker.docker(&["run", "--rm", "--runtime", "urunc", image, "other", "args"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let console = text(&out);
    assert!(
        cmdline_line(&console).ends_with(" -- other args"),
        "{console}"
    );
    assert_no_urunc_state(&docker.exec_root());
}

#[test]
fn docker_detached_stop_and_rm_leave_nothing() {
    let Some(docker) = start_docker() else {
        return;
    };
    let image = "urunc.local/test/docker-wait:latest";
    // The test kernel with the argument `wait` prints "waiting" and waits forever.
    let Some(tar) = pack_testkernel(docker.dir(), image, &["wait"]) else {
        return;
    };
    docker.docker_ok(&["load", "--input", &tar.to_string_lossy()]);
    let out = docker.docker_ok(&["run", "--detach", "--runtime", "urunc", image]);
    let id = text(&out).trim().to_string();
    assert_eq!(id.len(), 64, "{}", output_text(&out));

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = text(&docker.docker_ok(&["logs", &id]));
        if logs.contains("waiting") {
            assert!(logs.contains(BOOTED), "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'waiting' in the logs: {logs}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let state = docker.exec_root().join("runtime-runc/moby").join(&id);
    assert!(state.is_dir(), "no urunc state at {}", state.display());
    // QEMU is named after the container.
    assert!(!pids_with_arg(&format!("urunc-{id}")).is_empty(), "no QEMU");
    let running = text(&docker.docker_ok(&["inspect", "--format", "{{.State.Running}}", &id]));
    assert_eq!(running.trim(), "true");

    docker.docker_ok(&["stop", "--time", "5", &id]);
    docker.docker_ok(&["rm", &id]);
    assert_no_process_with(&format!("urunc-{id}"));
    assert!(!state.exists(), "{} is left", state.display());
    assert_no_urunc_state(&docker.exec_root());
    let all = text(&docker.docker_ok(&["ps", "--all", "--quiet"]));
    assert!(all.trim().is_empty(), "containers left: {all}");
}

fn start_podman() -> Option<Podman> {
    if !require_root_and_tools(&["podman", "conmon", "qemu-system-x86_64"]) {
        return None;
    }
    fixtures::testkernel()?;
    Some(Podman::new(&[ACCEL]).expect("podman storage"))
}

#[test]
fn podman_run_boots_a_packed_unikernel() {
    let Some(podman) = start_podman() else {
        return;
    };
    let image = "urunc.local/test/podman-tk:latest";
    let Some(tar) = pack_testkernel(podman.dir(), image, &["hello", "from", "podman"]) else {
        return;
    };
    let out = podman.podman_ok(&["load", "--input", &tar.to_string_lossy()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(image),
        "{}",
        output_text(&out)
    );
    let mut args = vec!["run", "--rm", "--runtime", URUNC, "--network", "none"];
    args.extend_from_slice(PODMAN_RUN_ULIMITS);
    args.push(image);
    let out = podman.podman(&args);
    assert!(out.status.success(), "{}", output_text(&out));
    let console = text(&out);
    assert!(console.contains(BOOTED), "{console}");
    let line = cmdline_line(&console);
    assert!(line.starts_with("cmdline: Unikraft env.vars=[ "), "{line}");
    assert!(line.contains(" container=podman "), "{line}");
    assert!(line.ends_with(" -- hello from podman"), "{line}");
    assert_no_urunc_state(podman.dir());
}

#[test]
fn podman_detached_stop_and_rm_leave_nothing() {
    let Some(podman) = start_podman() else {
        return;
    };
    let image = "urunc.local/test/podman-wait:latest";
    let Some(tar) = pack_testkernel(podman.dir(), image, &["wait"]) else {
        return;
    };
    podman.podman_ok(&["load", "--input", &tar.to_string_lossy()]);
    let mut args = vec!["run", "--detach", "--runtime", URUNC, "--network", "none"];
    args.extend_from_slice(PODMAN_RUN_ULIMITS);
    args.push(image);
    let id = text(&podman.podman_ok(&args)).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = text(&podman.podman_ok(&["logs", &id]));
        if logs.contains("waiting") {
            assert!(logs.contains(BOOTED), "{logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'waiting' in the logs: {logs}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!pids_with_arg(&format!("urunc-{id}")).is_empty(), "no QEMU");
    podman.podman_ok(&["stop", "--time", "5", &id]);
    podman.podman_ok(&["rm", &id]);
    assert_no_process_with(&format!("urunc-{id}"));
    assert_no_urunc_state(podman.dir());
    let all = text(&podman.podman_ok(&["ps", "--all", "--quiet"]));
    assert!(all.trim().is_empty(), "containers left: {all}");
}
