//! Running a command with a time limit while capturing its output.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` with stdin from /dev/null, capturing stdout and stderr. If it
/// is still running after `timeout` it is killed (by its own PID) and a note
/// is appended to the captured stderr.
pub(crate) fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let (status, timed_out) = wait_or_kill(&mut child, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if timed_out {
        let note = format!("\n[test-harness] killed after {timeout:?} (timeout)\n");
        stderr.extend_from_slice(note.as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Waits for `child` for up to `timeout`, then kills it (by its own PID) and reaps it.
/// Its exit status, and whether it had to be killed.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok((child.wait()?, true));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// An `Output` that says the command could not be started at all.
pub(crate) fn spawn_failure(what: &str, err: io::Error) -> Output {
    Output {
        status: ExitStatus::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: format!("[test-harness] cannot run {what}: {err}\n").into_bytes(),
    }
}

/// Status, stdout and stderr of `out` as readable text for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// Panics with `what failed` and the command's output unless it succeeded.
#[track_caller]
pub fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", output_text(out));
}
