//! The shim's own start-up, driven as containerd drives it but without containerd:
//! `start` prints an address whose server is a forked child, a second `start` for the
//! same group hands out the same server, Shutdown ends it and removes its socket, the
//! `-socket` serve mode does the same for the socket it is given, `delete` collects the
//! exit of the urunc it runs even when SIGCHLD was left ignored, and a bad command line
//! is one error line and a non-zero exit. The `start` test needs root (the socket is
//! named by a hash under /run/containerd/s) and skips otherwise.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use containerd_shim::protos::shim::shim::{ConnectRequest, ShutdownRequest};
use containerd_shim::protos::ttrpc::context;
use containerd_shim::protos::ttrpc::Client;
use containerd_shim::protos::TaskClient;
use test_harness::wait_or_kill;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-urunc-v2");

fn shim(bundle: &Path, args: &[&str]) -> Output {
    Command::new(SHIM)
        .args(args)
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", bundle.join("containerd.sock.ttrpc"))
        .stdin(Stdio::null())
        .output()
        .expect("run the shim")
}

/// A bundle directory with the `log` FIFO containerd would read, held open for reading.
fn bundle() -> (tempfile::TempDir, std::fs::File) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    use std::os::unix::fs::OpenOptionsExt;
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log)
        .unwrap();
    (dir, reader)
}

/// Alive and not a zombie: the server's parent (`start`) is gone, and whoever
/// inherited it reaps it in its own time.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn connect(address: &str) -> TaskClient {
    TaskClient::new(Client::connect(address).expect("connect to the shim"))
}

fn shim_pid(client: &TaskClient) -> u32 {
    let r = client
        .connect(context::with_timeout(5_000_000_000), &ConnectRequest::new())
        .expect("Connect");
    r.shim_pid
}

#[test]
fn start_forks_a_server_that_a_second_start_reuses_and_shutdown_ends() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: the shim's socket goes under /run/containerd/s, which needs root");
        return;
    }
    let (dir, _log) = bundle();
    let id = format!("bootstrap-{}", std::process::id());
    // Any path: only its hash names the socket.
    let address = dir.path().join("containerd.sock");
    let args = [
        "-namespace",
        "urunc-test",
        "-address",
        address.to_str().unwrap(),
        "-id",
        &id,
        "start",
    ];
    let first = shim(dir.path(), &args);
    assert!(first.status.success(), "start: {first:?}");
    let printed = String::from_utf8(first.stdout).unwrap();
    assert!(
        printed.starts_with("unix:///run/containerd/s/"),
        "{printed:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("address")).unwrap(),
        printed
    );
    let socket = printed.strip_prefix("unix://").unwrap().to_string();

    let client = connect(&printed);
    let server = shim_pid(&client);
    assert_ne!(server, 0);
    assert!(running(server));

    // The same group again: the same server, no second one.
    let second = shim(dir.path(), &args);
    assert!(second.status.success(), "second start: {second:?}");
    assert_eq!(String::from_utf8(second.stdout).unwrap(), printed);
    assert_eq!(shim_pid(&connect(&printed)), server);

    // With no container left, Shutdown ends the server and takes its socket away.
    let _ = client.shutdown(
        context::with_timeout(5_000_000_000),
        &ShutdownRequest::new(),
    );
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (running(server) || Path::new(&socket).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = !running(server);
    if !gone {
        // Not ours to leave behind, whatever the assertion says.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = std::fs::remove_file(&socket);
    }
    assert!(
        gone,
        "the shim server {server} is still running after Shutdown"
    );
    assert!(!Path::new(&socket).exists(), "{socket} is left behind");
}

#[test]
fn serve_mode_serves_the_given_socket_until_shutdown() {
    // How the crate and containerd's Go shims start their server: the binary again,
    // without an action, with -socket.
    let (dir, _log) = bundle();
    let socket = dir.path().join("shim.sock");
    let address = format!("unix://{}", socket.display());
    let mut server = Command::new(SHIM)
        .args([
            "-namespace",
            "urunc-test",
            "-id",
            "serve",
            "-socket",
            &address,
        ])
        .current_dir(dir.path())
        .env("TTRPC_ADDRESS", dir.path().join("containerd.sock.ttrpc"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the shim");
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = loop {
        if let Ok(c) = Client::connect(&address) {
            break TaskClient::new(c);
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!(
                "the shim never listened on {address}: {:?}",
                server.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(shim_pid(&client), server.id());
    let _ = client.shutdown(
        context::with_timeout(5_000_000_000),
        &ShutdownRequest::new(),
    );
    drop(client);
    let (status, killed) = wait_or_kill(&mut server, Duration::from_secs(10)).unwrap();
    assert!(!killed, "the shim is still running after Shutdown");
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "{} is left behind", socket.display());
}

#[test]
fn delete_sees_its_children_exit_even_when_sigchld_was_ignored() {
    // An ignored SIGCHLD survives exec; the shim must undo it, or the kernel reaps its
    // children and it waits for their exit forever. `delete` runs urunc when urunc
    // still has state for the container: here a stand-in that records its arguments.
    let (dir, _log) = bundle();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("gone")).unwrap();
    let called = dir.path().join("called");
    let fake = dir.path().join("fake-urunc");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" > {}\n", called.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let options = serde_json::json!({"binary_name": fake, "root": root});
    std::fs::write(dir.path().join("urunc-shim.json"), options.to_string()).unwrap();
    // bash leaves SIGCHLD ignored across exec after `trap '' CHLD` (dash does not).
    let mut child = Command::new("bash")
        .args(["-c", "trap '' CHLD; exec \"$0\" \"$@\"", SHIM])
        .args(["-namespace", "urunc-test", "-id", "gone", "delete"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the shim");
    let (_, killed) = wait_or_kill(&mut child, Duration::from_secs(20)).unwrap();
    assert!(!killed, "delete never saw urunc exit");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let args = std::fs::read_to_string(&called).expect("urunc was run");
    assert!(args.contains("delete --force gone"), "{args}");
}

#[test]
fn a_bad_command_line_is_one_error_line() {
    let (dir, _log) = bundle();
    for (args, expected) in [
        (&["-id", "x", "start"][..], "-namespace is required"),
        (
            &["-namespace", "n", "-id", "x", "frobnicate"][..],
            "unknown action \"frobnicate\"",
        ),
        (&["-namespace", "n", "-id", "x"][..], "-socket is required"),
    ] {
        let out = shim(dir.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("io.containerd.urunc.v2: ") && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
