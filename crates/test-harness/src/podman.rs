//! podman 4.3 (Debian) with all its storage in a temporary directory.
//!
//! Every call gets `--root`, `--runroot` and `--tmpdir` below the directory,
//! `--cgroup-manager cgroupfs` and `--events-backend file` (no systemd here), and a
//! private `containers.conf` (through `CONTAINERS_CONF`) whose `conmon_env_vars` carry
//! the variables given to [`Podman::new`]: podman does not hand its own environment to
//! conmon, and conmon's environment is what the OCI runtime gets.
//!
//! Dropping it removes all containers (`podman rm -f --all`), kills processes left with
//! the directory in their arguments (conmon, the runtime's children), unmounts what is
//! mounted below it (overlay layers) and removes it.

use crate::cleanup::{kill_tree_and_wait, pids_with_arg, unmount_all_under};
use crate::command::{output_text, run_with_timeout, spawn_failure};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// What `podman run` needs on the project's machines: raising rlimits is not
/// permitted there, and podman's defaults would raise them.
pub const PODMAN_RUN_ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// Private podman storage for one test.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    timeout: Duration,
}

impl Podman {
    /// Creates the directories and the `containers.conf` with `conmon_env` passed to
    /// conmon (and so to the runtime), after a standard `PATH`.
    pub fn new(conmon_env: &[(&str, &str)]) -> Result<Podman> {
        let dir = tempfile::Builder::new()
            .prefix("urunc-podman-")
            .tempdir_in("/tmp")
            .context("creating the podman temp dir")?
            .keep()
            .canonicalize()?;
        let p = Podman {
            dir,
            timeout: Duration::from_secs(120),
        };
        for sub in ["root", "runroot", "tmp"] {
            fs::create_dir(p.dir.join(sub))?;
        }
        let mut vars =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        vars.extend(conmon_env.iter().map(|(k, v)| format!("{k}={v}")));
        let list: Vec<String> = vars
            .iter()
            .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        fs::write(
            p.dir.join("containers.conf"),
            format!("[engine]\nconmon_env_vars = [{}]\n", list.join(", ")),
        )?;
        Ok(p)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `podman <private storage flags> ARGS...`, output captured, killed after 120 s.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        run_with_timeout(&mut cmd, self.timeout).unwrap_or_else(|e| spawn_failure("podman", e))
    }

    /// Like [`Podman::podman`], panicking with the output on failure.
    pub fn podman_ok(&self, args: &[&str]) -> Output {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {} failed\n{}",
            args.join(" "),
            output_text(&out)
        );
        out
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.podman(&["rm", "--force", "--all"]);
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
    }
}
