//! A private Docker daemon (Debian's `docker.io` 20.10) on top of a private containerd.
//!
//! `dockerd` gets its own data root, exec root, socket, pid file and trust key in one
//! temporary directory, uses a [`Containerd`] started for it (`--containerd`), has no
//! bridge and does not touch iptables, and knows the runtimes given to
//! [`Dockerd::start`] (`--add-runtime NAME=PATH`). Docker 20.10 calls such a runtime
//! like runc, through containerd's runc shim, with `--root <exec-root>/runtime-runc/moby`.
//!
//! The environment of the runtime is containerd's (the shim is containerd's child), so
//! variables for the runtime (`URUNC_QEMU_ACCEL`) are set on both daemons.
//!
//! Dropping it removes all containers (`docker rm -f`), stops dockerd (SIGTERM, SIGKILL
//! after 10 s, by PID), kills processes left with the temporary directory in their
//! arguments, unmounts what is mounted below it, removes it, and then drops containerd.

use crate::cleanup::{kill_tree_and_wait, pids_with_arg, unmount_all_under};
use crate::command::{output_text, run_with_timeout, spawn_failure};
use crate::containerd::Containerd;
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The daemon binary of Debian's `docker.io`.
pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// The client of Debian's `docker.io` (a newer client in /usr/local/bin may exist).
pub const DOCKER: &str = "/usr/bin/docker";

/// A dockerd private to one test.
#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    timeout: Duration,
    // Dropped after dockerd has stopped (fields drop after Drop::drop).
    containerd: Option<Containerd>,
}

impl Dockerd {
    /// Starts a private containerd with `env` and a dockerd on it with `env` and the
    /// runtimes `(name, path)`; waits until dockerd answers.
    pub fn start(runtimes: &[(&str, &Path)], env: &[(&str, &str)]) -> Result<Dockerd> {
        let mut builder = Containerd::builder().namespace("moby");
        for (k, v) in env {
            builder = builder.env(k, v);
        }
        let containerd = builder.start().context("starting containerd for dockerd")?;
        let dir = tempfile::Builder::new()
            .prefix("urunc-dockerd-")
            .tempdir_in("/tmp")
            .context("creating the dockerd temp dir")?
            .keep()
            .canonicalize()?;
        let mut d = Dockerd {
            socket: dir.join("docker.sock"),
            log: dir.join("dockerd.log"),
            dir,
            child: None,
            timeout: Duration::from_secs(120),
            containerd: Some(containerd),
        };
        for sub in ["data", "exec", "config"] {
            fs::create_dir(d.dir.join(sub))?;
        }
        let daemon_json = d.dir.join("daemon.json");
        let key = serde_json::json!({ "deprecated-key-path": d.dir.join("key.json") });
        fs::write(&daemon_json, key.to_string())?;
        let mut cmd = Command::new(DOCKERD);
        cmd.arg("--data-root")
            .arg(d.dir.join("data"))
            .arg("--exec-root")
            .arg(d.dir.join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", d.socket.display()))
            .arg("--pidfile")
            .arg(d.dir.join("docker.pid"))
            // Not /etc/docker/daemon.json, and the trust key dockerd 20.10 creates not
            // in /etc/docker/key.json (that setting exists only in the config file).
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--containerd")
            .arg(d.containerd.as_ref().expect("set above").address())
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .args(["--ip-masq=false", "--userland-proxy=false"]);
        for (name, path) in runtimes {
            cmd.arg("--add-runtime")
                .arg(format!("{name}={}", path.display()));
        }
        let log = File::create(&d.log)?;
        let child = cmd
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning dockerd")?;
        d.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = d.docker_timed(
                &["version", "--format", "{{.Server.Version}}"],
                Duration::from_secs(5),
            );
            if out.status.success() {
                break;
            }
            if let Some(c) = d.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("dockerd exited at start ({status}):\n{}", d.log_tail(30));
                }
            }
            if Instant::now() >= deadline {
                bail!("dockerd did not answer within 30 s:\n{}", d.log_tail(30));
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    /// The temporary directory (data root, exec root, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exec root; the runtime's state is in `<exec root>/runtime-runc/moby/<id>`.
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// The containerd dockerd uses.
    pub fn containerd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("containerd lives as long as dockerd")
    }

    /// The last `lines` lines of dockerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `docker -H unix://<socket> ARGS...`, output captured, killed after 120 s.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_timed(args, self.timeout)
    }

    /// Like [`Dockerd::docker`], panicking with the output and dockerd's log on failure.
    pub fn docker_ok(&self, args: &[&str]) -> Output {
        let out = self.docker(args);
        if !out.status.success() {
            panic!(
                "docker {} failed\n{}\n--- dockerd log tail ---\n{}",
                args.join(" "),
                output_text(&out),
                self.log_tail(20)
            );
        }
        out
    }

    fn docker_timed(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            // No ~/.docker/config.json is read or written.
            .env("DOCKER_CONFIG", self.dir.join("config"));
        run_with_timeout(&mut cmd, timeout).unwrap_or_else(|e| spawn_failure("docker", e))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::terminate(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[test-harness] dockerd log tail:\n{}", self.log_tail(40));
        }
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            let t = Duration::from_secs(30);
            let ids = self.docker_timed(&["ps", "-aq"], t);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                self.docker_timed(&["rm", "-f", id], t);
            }
        }
        self.stop();
        let needle = self.dir.to_string_lossy().into_owned();
        for pid in pids_with_arg(&needle) {
            kill_tree_and_wait(pid, Duration::from_secs(5));
        }
        let left = unmount_all_under(&self.dir);
        if left.is_empty() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("[test-harness] cannot remove {}: {e}", self.dir.display());
            }
        } else {
            eprintln!(
                "[test-harness] keeping {}: still mounted: {left:?}",
                self.dir.display()
            );
        }
        // containerd last: its Drop removes what is left in the moby namespace.
        drop(self.containerd.take());
    }
}
