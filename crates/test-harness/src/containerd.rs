//! A private containerd instance living in a temporary directory.

use crate::cleanup::{kill_tree_and_wait, mounts_under, pids_with_arg, unmount_all_under};
use crate::command::{output_text, run_with_timeout, spawn_failure};
use anyhow::{bail, ensure, Context, Result};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Namespace used by [`Containerd::ctr`] unless the builder sets another.
pub const DEFAULT_NAMESPACE: &str = "urunc-test";

/// Plugins disabled by default: CRI, and snapshotters that cannot work here
/// (their probing only slows the start down and clutters the log).
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];
const CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";

/// Counter behind [`Containerd::unique_id`].
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Timeout for the ctr calls made while cleaning up.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Options for starting a [`Containerd`]; see [`Containerd::builder`].
#[derive(Clone, Debug)]
pub struct ContainerdBuilder {
    namespace: String,
    cri_toml: Option<String>,
    extra_toml: String,
    log_level: String,
    start_timeout: Duration,
    ctr_timeout: Duration,
    env: Vec<(String, String)>,
}

impl ContainerdBuilder {
    /// Namespace for [`Containerd::ctr`] (default [`DEFAULT_NAMESPACE`]).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// Enables the CRI plugin (disabled by default) and appends `toml`, which
    /// may configure it, e.g. a `[plugins."io.containerd.grpc.v1.cri"]` table.
    /// Mind that CRI defaults point at host paths (`/var/run/netns`,
    /// `/opt/cni/bin`, `/etc/cni/net.d`).
    pub fn enable_cri(mut self, toml: &str) -> Self {
        self.cri_toml = Some(toml.to_string());
        self
    }

    /// Appends `toml` verbatim to the generated config (e.g. runtime or
    /// plugin tables); it must not repeat tables the harness writes itself.
    pub fn extra_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push_str(toml);
        self.extra_toml.push('\n');
        self
    }

    /// containerd's log level (default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// How long to wait for the socket to answer (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Time limit of each `ctr` call; a call still running then is killed
    /// (default 120 s).
    pub fn ctr_timeout(mut self, timeout: Duration) -> Self {
        self.ctr_timeout = timeout;
        self
    }

    /// Sets an environment variable for containerd only (not for this
    /// process). containerd hands its environment on to the shims it starts,
    /// and containerd's Go runc shim to the runtime binary, so this is how a
    /// test configures e.g. `URUNC_QEMU_ACCEL=tcg` for urunc without the
    /// race of `std::env::set_var` in a multi-threaded test binary.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts containerd and waits until it answers.
    pub fn start(self) -> Result<Containerd> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("urunc-ctrd-")
            .tempdir_in("/tmp")
            .context("creating the containerd temp dir")?
            .keep();
        let dir = dir.canonicalize().context("resolving the temp dir")?;
        // From here on Drop cleans up, also when starting fails.
        let mut containerd = Containerd {
            socket: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            dir,
            namespace: self.namespace.clone(),
            ctr_timeout: self.ctr_timeout,
            child: None,
            startup: Duration::ZERO,
            env: self.env.clone(),
            start_timeout: self.start_timeout,
        };
        for sub in ["root", "state", "opt", "fifo"] {
            fs::create_dir(containerd.dir.join(sub)).context("creating temp subdirectories")?;
        }
        fs::write(&containerd.config, self.config_toml(&containerd.dir))
            .context("writing config.toml")?;
        let log = File::create(&containerd.log).context("creating containerd.log")?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&containerd.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning containerd")?;
        containerd.child = Some(child);
        containerd.wait_ready(self.start_timeout)?;
        containerd.startup = started.elapsed();
        Ok(containerd)
    }

    /// Starts containerd (as [`ContainerdBuilder::start`]) with `shim` (as
    /// `containerd-shim-urunc-v2`) and `urunc` linked into its `<opt>/bin`, which is
    /// first on the PATH containerd gives its shims, and so on the shim's.
    pub fn start_with_urunc(self, shim: &Path, urunc: &Path) -> Result<Containerd> {
        let containerd = self.start()?;
        let bin = containerd.opt_bin();
        fs::create_dir_all(&bin).context("creating <opt>/bin")?;
        std::os::unix::fs::symlink(shim, bin.join("containerd-shim-urunc-v2"))
            .context("linking the shim")?;
        std::os::unix::fs::symlink(urunc, bin.join("urunc")).context("linking urunc")?;
        Ok(containerd)
    }

    fn config_toml(&self, dir: &Path) -> String {
        let path = |sub: &str| toml_string(&dir.join(sub).to_string_lossy());
        let mut disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_string(p)).collect();
        if self.cri_toml.is_none() {
            disabled.push(toml_string(CRI_PLUGIN));
        }
        let mut toml = format!(
            r#"version = 2
root = {root}
state = {state}
disabled_plugins = [{disabled}]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = {level}

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}
"#,
            root = path("root"),
            state = path("state"),
            disabled = disabled.join(", "),
            sock = path("containerd.sock"),
            ttrpc = path("containerd.sock.ttrpc"),
            level = toml_string(&self.log_level),
            opt = path("opt"),
        );
        if let Some(cri) = &self.cri_toml {
            toml.push_str(cri);
            toml.push('\n');
        }
        toml.push_str(&self.extra_toml);
        toml
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A containerd daemon private to one test, with everything it stores in one
/// temporary directory under /tmp.
///
/// Dropping it removes all containers and tasks in all its namespaces, stops
/// containerd (SIGTERM, then SIGKILL), kills leftover shims, unmounts what is
/// still mounted below the temp dir and deletes the directory. When the
/// dropping thread panics, the tail of containerd's log is printed first.
///
/// Not shared: containerd's Go runc shim keeps runc state in
/// `/run/containerd/runc/<namespace>/<id>` and `ctr run` puts a container in
/// cgroup `/<namespace>/<id>`, both global, so tests running at the same time
/// must use different container IDs; [`Containerd::unique_id`] makes them.
/// Keep it in a local variable of the test: in a `static` it would never be
/// dropped and so never cleaned up.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    namespace: String,
    ctr_timeout: Duration,
    child: Option<Child>,
    startup: Duration,
    env: Vec<(String, String)>,
    start_timeout: Duration,
}

impl Containerd {
    /// Options for starting one.
    pub fn builder() -> ContainerdBuilder {
        ContainerdBuilder {
            namespace: DEFAULT_NAMESPACE.to_string(),
            cri_toml: None,
            extra_toml: String::new(),
            log_level: "info".to_string(),
            start_timeout: Duration::from_secs(10),
            ctr_timeout: Duration::from_secs(120),
            env: Vec::new(),
        }
    }

    /// Starts one with the default options.
    pub fn start() -> Result<Containerd> {
        Self::builder().start()
    }

    /// The temporary directory holding config, sockets, root, state and log;
    /// a good place for image tars and other per-test files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<opt>/bin`: first on the PATH containerd gives the shims it starts.
    pub fn opt_bin(&self) -> PathBuf {
        self.dir.join("opt/bin")
    }

    /// The gRPC socket (what `ctr --address` takes).
    pub fn address(&self) -> &Path {
        &self.socket
    }

    /// The generated config.toml.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// containerd's combined stdout/stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The namespace [`Containerd::ctr`] uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// PID of the containerd process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How long starting took until the socket answered.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// `<prefix>-<pid>-<n>`: a container ID unique among concurrently
    /// running tests.
    pub fn unique_id(&self, prefix: &str) -> String {
        // Process-wide: tests in one binary run concurrently, each with its own
        // Containerd, but share the shim's state root and the cgroup tree.
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// Stops containerd (SIGTERM, SIGKILL after 5 s) and starts it again with the same
    /// configuration and environment, as a service manager restarting it would. Shims
    /// and their containers keep running meanwhile; containerd reconnects to them.
    pub fn restart(&mut self) -> Result<()> {
        self.stop_containerd();
        self.respawn()
    }

    /// Kills containerd with SIGKILL (a crash: no chance to clean up) and starts it
    /// again with the same configuration, as a service manager would after a crash.
    pub fn crash_and_restart(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL to containerd")?;
            child.wait().context("reaping containerd")?;
        }
        self.respawn()
    }

    fn respawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .context("opening containerd.log")?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning containerd again")?;
        self.child = Some(child);
        self.wait_ready(self.start_timeout)
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs `ctr --address <socket> --namespace <namespace> ARGS...` (stdin
    /// /dev/null, output captured, killed after the ctr timeout).
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_in(&self.namespace, args)
    }

    /// Like [`Containerd::ctr`] in another namespace.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Output {
        self.ctr_timed(namespace, args, self.ctr_timeout)
    }

    fn ctr_timed(&self, namespace: &str, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace])
            // Fail fast instead of the client's 10 s default when nobody listens.
            .args(["--connect-timeout", "5s"])
            .args(args)
            // ctr would take its default snapshotter from here.
            .env_remove("CONTAINERD_SNAPSHOTTER");
        run_with_timeout(&mut cmd, timeout).unwrap_or_else(|e| spawn_failure("ctr", e))
    }

    /// Like [`Containerd::ctr`], but panics with the output and the tail of
    /// containerd's log if ctr fails.
    pub fn ctr_ok(&self, args: &[&str]) -> Output {
        let out = self.ctr(args);
        if !out.status.success() {
            panic!(
                "ctr {} failed\n{}\n--- containerd log tail ---\n{}",
                args.join(" "),
                output_text(&out),
                self.log_tail(20)
            );
        }
        out
    }

    /// `ctr run --rm --fifo-dir <dir>/fifo FLAGS... IMAGE ID ARGV...`: runs a
    /// container to completion. The exit status is the task's; the FIFOs
    /// stay inside the temp dir instead of /run/containerd/fifo.
    pub fn run(&self, flags: &[&str], image: &str, id: &str, argv: &[&str]) -> Output {
        let fifo = self.dir.join("fifo");
        let fifo = fifo.to_string_lossy();
        let mut args = vec!["run", "--rm", "--fifo-dir", &fifo];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[image, id]);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }

    /// Asserts that nothing of container `id` is left once `ctr run --rm` (or a delete)
    /// returned: no process names it (monitors `-name urunc-<id>`, shims `-id <id>`;
    /// waited for up to 10 s, as shims exit just after ctr returns), no runtime state
    /// `<state_root>/<namespace>/<id>`, no cgroup `<hierarchy>/<namespace>/<id>`, no
    /// container record, nothing mounted below this containerd's directory.
    #[track_caller]
    pub fn assert_nothing_left(&self, id: &str, state_root: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut procs = pids_with_arg(id);
        while !procs.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            procs = pids_with_arg(id);
        }
        let described: Vec<String> = procs
            .iter()
            .map(|p| {
                let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        assert!(procs.is_empty(), "processes of {id} left: {described:#?}");
        let state = state_root.join(self.namespace()).join(id);
        assert!(!state.exists(), "runtime state {state:?} left behind");
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let cg = hierarchy.path().join(self.namespace()).join(id);
            assert!(!cg.exists(), "cgroup {cg:?} left behind");
        }
        let containers = self.ctr_ok(&["containers", "ls", "-q"]);
        assert!(
            !String::from_utf8_lossy(&containers.stdout)
                .lines()
                .any(|l| l.trim() == id),
            "container {id} still listed"
        );
        let mounts = mounts_under(self.dir());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    }

    /// Imports an image archive (OCI or docker format) into the namespace,
    /// unpacked for the default (overlayfs) snapshotter, and returns the
    /// image name ctr reports (for archives written by `oci_image`, the
    /// reference given when writing it).
    pub fn import(&self, tar: &Path) -> Result<String> {
        let tar = tar.to_str().context("archive path is not UTF-8")?;
        let out = self.ctr(&["images", "import", tar]);
        ensure!(
            out.status.success(),
            "ctr images import {tar} failed\n{}",
            output_text(&out)
        );
        // ctr prints "unpacking <name> (sha256:...)...done" per image.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("unpacking ")?.split(" (").next())
            .collect();
        match names.as_slice() {
            [name] => Ok(name.to_string()),
            _ => bail!(
                "expected one imported image, ctr said:\n{}",
                output_text(&out)
            ),
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "containerd exited during startup ({status}); log {}:\n{}",
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            if self.socket.exists() {
                let out = self.ctr_timed(&self.namespace, &["version"], Duration::from_secs(5));
                if out.status.success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "containerd did not answer on {} within {timeout:?}; log {}:\n{}",
                    self.socket.display(),
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn lines(out: &Output) -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Best effort: kill and delete every task and container in every
    /// namespace of this (private) containerd.
    fn remove_containers(&self) {
        let t = CLEANUP_TIMEOUT;
        let namespaces = Self::lines(&self.ctr_timed("default", &["namespaces", "ls", "-q"], t));
        for ns in &namespaces {
            for id in Self::lines(&self.ctr_timed(ns, &["containers", "ls", "-q"], t)) {
                self.ctr_timed(ns, &["tasks", "kill", "-s", "KILL", &id], t);
                self.ctr_timed(ns, &["tasks", "delete", "--force", &id], t);
                self.ctr_timed(ns, &["containers", "delete", &id], t);
            }
        }
    }

    /// SIGTERM to our containerd, SIGKILL if it has not exited in 5 s.
    fn stop_containerd(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::cleanup::terminate(&mut child, Duration::from_secs(5));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "[test-harness] containerd log tail ({}):\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
        let running = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            self.remove_containers();
        }
        self.stop_containerd();
        // Shims (and anything else started with our paths in its arguments)
        // that survived: they are ours, so kill them by PID.
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
