//! Running the `urunc` binary.
//!
//! Every call is `urunc --root R --log <bundle>/log.json --log-format json
//! [--systemd-cgroup] <command> ...`, as containerd's Go runc shim calls runc. When a
//! call fails, the error is the last `"level":"error"` message the call appended to
//! `log.json` (urunc's own message, or runc's for ordinary containers), so that is what
//! ctr and kubectl show.
//!
//! The shim is the child subreaper and the crate's SIGCHLD handler reaps every child
//! with `waitpid(-1)`, so a child must never be waited for directly: [`execute`]
//! subscribes to the crate's exit monitor *before* spawning and waits for the exit
//! event carrying the child's pid.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::monitor::{monitor_subscribe, wait_pid, Topic};
use serde::Deserialize;

use crate::error::{Error, Result};

pub const LOG_FILE: &str = "log.json";
pub const INIT_PID_FILE: &str = "init.pid";

/// How to call urunc for one container.
#[derive(Clone, Debug)]
pub struct Urunc {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// The bundle: `log.json` and pid files go there.
    pub bundle: PathBuf,
}

/// Standard streams for a command whose output is not captured (`create`, `exec`).
#[derive(Default)]
pub struct ChildIo {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// `urunc state` output (runc's shape).
#[derive(Debug, Deserialize)]
pub struct State {
    pub status: String,
}

impl Urunc {
    pub fn log_path(&self) -> PathBuf {
        self.bundle.join(LOG_FILE)
    }

    fn command(&self, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(self.log_path())
            .args(["--log-format", "json"]);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// Runs a command that prints nothing of interest; stdout and stderr are captured
    /// for the error message.
    pub fn run(&self, args: &[&OsStr]) -> Result<Vec<u8>> {
        execute(self.command(args), subcommand(args), None, &self.log_path())
    }

    /// Runs a command whose standard streams are the container's (`create`, `exec`).
    pub fn run_with_io(&self, args: &[&OsStr], io: ChildIo) -> Result<()> {
        execute(
            self.command(args),
            subcommand(args),
            Some(io),
            &self.log_path(),
        )
        .map(drop)
    }

    /// `create --bundle B --pid-file B/init.pid [--console-socket S] ID`; returns the pid.
    pub fn create(&self, id: &str, console_socket: Option<&Path>, io: ChildIo) -> Result<i32> {
        let pid_file = self.bundle.join(INIT_PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let mut args: Vec<&OsStr> = vec![
            "create".as_ref(),
            "--bundle".as_ref(),
            self.bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ];
        if let Some(s) = console_socket {
            args.extend(["--console-socket".as_ref(), s.as_os_str()]);
        }
        args.push(id.as_ref());
        self.run_with_io(&args, io)?;
        read_pid(&pid_file)
    }

    /// `exec --process P --pid-file F --detach [--console-socket S] ID`; returns the pid.
    pub fn exec(
        &self,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        io: ChildIo,
    ) -> Result<i32> {
        let _ = std::fs::remove_file(pid_file);
        let mut args: Vec<&OsStr> = vec![
            "exec".as_ref(),
            "--process".as_ref(),
            process.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
            "--detach".as_ref(),
        ];
        if let Some(s) = console_socket {
            args.extend(["--console-socket".as_ref(), s.as_os_str()]);
        }
        args.push(id.as_ref());
        self.run_with_io(&args, io)?;
        read_pid(pid_file)
    }

    /// The library the CLI is built on, for a `start` or `delete` of a urunc container
    /// that runs no hooks: done in this process, it saves starting `urunc` (about a
    /// millisecond each, on the path of every `ctr run` and pod start). Hooks are
    /// processes, whose exits the shim's reaper would take from the library, so with
    /// hooks, and for containers urunc hands to runc (no urunc state, which
    /// `runs_late_hooks` also answers true for), the binary runs the command.
    fn library(&self, id: &str) -> Option<urunc::container::Runtime> {
        let rt = urunc::container::Runtime {
            systemd_cgroup: self.systemd_cgroup,
            ..urunc::container::Runtime::new(&self.root)
        };
        (!rt.runs_late_hooks(id)).then_some(rt)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        if let Some(rt) = self.library(id) {
            return rt
                .start_from_state(id)
                .map_err(|e| Error::other(e.to_string()));
        }
        self.run(&["start".as_ref(), id.as_ref()]).map(drop)
    }

    /// The container's status. A urunc container's is read in this process, with the
    /// library the CLI is built on: containerd (and the kubelet through it) asks often,
    /// and running `urunc state` costs a process start each time. Containers urunc
    /// hands to runc are asked through the binary, which forwards to runc.
    pub fn state(&self, id: &str) -> Result<State> {
        let rt = urunc::container::Runtime::new(&self.root);
        if rt.owns(id) {
            if let Ok(st) = rt.state(id) {
                return Ok(State {
                    status: st.status.to_string(),
                });
            }
        }
        let out = self.run(&["state".as_ref(), id.as_ref()])?;
        serde_json::from_slice(&out)
            .map_err(|e| Error::other(format!("parse `urunc state {id}` output: {e}")))
    }

    /// The exit status the guest's application reported through its guest init, read
    /// once the monitor exited and before `delete` removes the state. The monitor's own
    /// status only says how the VM ended (QEMU exits 0 when the guest powers off).
    pub fn guest_exit_status(&self, id: &str) -> Option<i32> {
        urunc::container::Runtime::new(&self.root).guest_exit_status(id)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = OsString::from(signal.to_string());
        let mut args: Vec<&OsStr> = vec!["kill".as_ref()];
        if all {
            args.push("--all".as_ref());
        }
        args.extend([id.as_ref(), sig.as_os_str()]);
        self.run(&args).map(drop)
    }

    pub fn delete_force(&self, id: &str) -> Result<()> {
        if let Some(rt) = self.library(id) {
            return rt
                .delete_from_state(id, true)
                .map_err(|e| Error::other(e.to_string()));
        }
        self.run(&["delete".as_ref(), "--force".as_ref(), id.as_ref()])
            .map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.run(&["pause".as_ref(), id.as_ref()]).map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.run(&["resume".as_ref(), id.as_ref()]).map(drop)
    }

    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let out = self.run(&[
            "ps".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
            id.as_ref(),
        ])?;
        let text = String::from_utf8_lossy(&out);
        if text.trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text.trim())
            .map_err(|e| Error::other(format!("parse `urunc ps {id}` output: {e}")))
    }

    pub fn update(&self, id: &str, resources: &Path) -> Result<()> {
        self.run(&[
            "update".as_ref(),
            "--resources".as_ref(),
            resources.as_os_str(),
            id.as_ref(),
        ])
        .map(drop)
    }
}

fn subcommand<'a>(args: &[&'a OsStr]) -> &'a str {
    args.first().and_then(|a| a.to_str()).unwrap_or("")
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::other(format!("read pid file {}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|e| Error::other(format!("pid file {}: {e}: {text:?}", path.display())))
}

/// Spawns `cmd`, waits for its exit through the exit monitor, and returns its stdout
/// (captured when `io` is None). A failure is turned into urunc's own error message.
fn execute(mut cmd: Command, what: &str, io: Option<ChildIo>, log: &Path) -> Result<Vec<u8>> {
    let log_start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let capture = io.is_none();
    match io {
        Some(io) => {
            let s = |f: Option<File>| f.map(Stdio::from).unwrap_or_else(Stdio::null);
            cmd.stdin(s(io.stdin))
                .stdout(s(io.stdout))
                .stderr(s(io.stderr));
        }
        None => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
    }
    let name = cmd.get_program().to_string_lossy().into_owned();
    let sub = monitor_subscribe(Topic::Pid).map_err(Error::from)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::other(format!("run {name}: {e}")))?;
    // The Command holds our copies of the container's streams: close them now.
    drop(cmd);
    let pid = child.id() as i32;
    let (stdout, stderr) = if capture {
        let mut err_pipe = child.stderr.take();
        let mut out_pipe = child.stdout.take();
        std::thread::scope(|s| {
            let err = s.spawn(move || {
                let mut buf = Vec::new();
                if let Some(p) = err_pipe.as_mut() {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            });
            let mut out = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut out);
            }
            (out, err.join().unwrap_or_default())
        })
    } else {
        (Vec::new(), Vec::new())
    };
    let code = wait_pid(pid, sub);
    // Not waited for here: the reaper already collected it.
    drop(child);
    if code == 0 {
        return Ok(stdout);
    }
    let msg = last_error(log, log_start)
        .or_else(|| {
            let text = String::from_utf8_lossy(&stderr).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
        .unwrap_or_else(|| format!("{name} {what} failed with exit status {code}"));
    Err(Error::other(msg))
}

/// The message of the last `"level":"error"` line written to `log` after `offset`.
pub fn last_error(log: &Path, offset: u64) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        level: Option<String>,
        msg: Option<String>,
    }
    let mut f = File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    // A log truncated in between is read from the start.
    f.seek(SeekFrom::Start(if offset <= len { offset } else { 0 }))
        .ok()?;
    BufReader::new(f)
        .lines()
        .map_while(std::result::Result::ok)
        .filter_map(|l| serde_json::from_str::<Line>(&l).ok())
        .filter(|l| l.level.as_deref() == Some("error"))
        .filter_map(|l| l.msg)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_error_reads_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        let mut f = File::create(&log).unwrap();
        writeln!(f, r#"{{"level":"error","msg":"old","time":"t"}}"#).unwrap();
        let offset = f.metadata().unwrap().len();
        writeln!(f, r#"{{"level":"warning","msg":"w","time":"t"}}"#).unwrap();
        writeln!(f, "not json").unwrap();
        writeln!(
            f,
            r#"{{"level":"error","msg":"kernel \"/k\" not found","time":"t"}}"#
        )
        .unwrap();
        writeln!(f, r#"{{"level":"debug","msg":"d","time":"t"}}"#).unwrap();
        drop(f);
        assert_eq!(last_error(&log, offset).unwrap(), "kernel \"/k\" not found");
        assert_eq!(last_error(&log, 0).unwrap(), "kernel \"/k\" not found");
        let end = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_error(&log, end), None);
        assert_eq!(last_error(&dir.path().join("missing"), 0), None);
    }
}
