//! OCI bundles and a `urunc` runner for bundle-level integration tests: the way runc
//! itself is driven (`create --bundle`, `start`, `state`, ...), without containerd.
//!
//! * [`TestBundle`] is a temporary bundle directory: `rootfs/` plus a `config.json`
//!   shaped like `runc spec`'s (so the same bundle also runs under runc), rewritten
//!   after every change made through its methods.
//! * [`Urunc`] runs the binary with a private `--root`, `URUNC_QEMU_ACCEL=tcg` and
//!   optionally `--log <file> --log-format json`; each call returns the
//!   [`std::process::Output`]. Output is captured through files, not pipes, because a
//!   created container keeps the stdio of `urunc create` (a pipe would never reach EOF).
//! * [`Urunc::leftovers`] lists what a container left behind: state entries, processes,
//!   mounts and cgroup directories.
//!
//! ```no_run
//! use test_harness::bundle::{TestBundle, Urunc};
//!
//! let mut b = TestBundle::new("demo");
//! // Rootfs helpers return `&Self`, configuration setters `&mut Self`.
//! b.link_file("/kernel", "/var/cache/urunc-fixtures/testkernel/testkernel.elf");
//! b.unikernel("unikraft", "/kernel", None).args(&["hello"]);
//! // In a test of the urunc-cli crate: Urunc::new(env!("CARGO_BIN_EXE_urunc")).
//! let urunc = Urunc::new("target/debug/urunc");
//! let out = urunc.run(&b, "demo-1");
//! assert!(out.status.success());
//! assert!(urunc.leftovers(&b, "demo-1").is_empty());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cleanup::{mounts_under, pids_with_arg};
use crate::command::assert_ok;

pub const KEY_TYPE: &str = "com.urunc.unikernel.unikernelType";
pub const KEY_HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
pub const KEY_BINARY: &str = "com.urunc.unikernel.binary";
pub const KEY_INITRD: &str = "com.urunc.unikernel.initrd";
pub const KEY_CMDLINE: &str = "com.urunc.unikernel.cmdline";
pub const KEY_USE_DM_BLOCK: &str = "com.urunc.unikernel.useDMBlock";

/// The annotations of the test kernel (at `/boot/kernel`) as a unikraft guest on QEMU.
pub const TESTKERNEL_KEYS: &[(&str, &str)] = &[
    (KEY_TYPE, "unikraft"),
    (KEY_HYPERVISOR, "qemu"),
    (KEY_BINARY, "/boot/kernel"),
];

/// The environment variable urunc reads to choose QEMU's accelerator.
pub const ACCEL_ENV: &str = "URUNC_QEMU_ACCEL";
/// The environment variable naming urunc's configuration file.
pub const CONFIG_ENV: &str = "URUNC_CONFIG";

/// A spec like `runc spec` writes (so runc accepts it too), with pid, ipc, uts and
/// mount namespaces and no network namespace.
pub fn default_spec() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/init"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "urunc-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "annotations": {},
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// A temporary OCI bundle: `<dir>/rootfs` and `<dir>/config.json`. Removed on drop.
pub struct TestBundle {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    config: Value,
}

impl TestBundle {
    /// An empty rootfs and the [`default_spec`], in `/tmp/urunc-bundle-<name>-XXXX`.
    pub fn new(name: &str) -> TestBundle {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("urunc-bundle-{name}-"))
            .tempdir_in("/tmp")
            .expect("create the bundle temp dir");
        let dir = tmp.path().canonicalize().expect("resolve the bundle dir");
        fs::create_dir(dir.join("rootfs")).expect("create rootfs/");
        let b = TestBundle {
            dir,
            _tmp: tmp,
            config: default_spec(),
        };
        b.save();
        b
    }

    /// A bundle booting the test kernel (linked in at `/boot/kernel`) as a unikraft
    /// guest on QEMU with `args`.
    pub fn testkernel(name: &str, kernel: &Path, args: &[&str]) -> TestBundle {
        let mut b = TestBundle::new(name);
        b.link_file("/boot/kernel", kernel);
        b.unikernel("unikraft", "/boot/kernel", None).args(args);
        b
    }

    /// [`TestBundle::testkernel`] with `wait`: it prints `waiting` once booted and then
    /// halts until killed.
    pub fn waiting_testkernel(name: &str, kernel: &Path) -> TestBundle {
        TestBundle::testkernel(name, kernel, &["wait"])
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Writes `config.json` from the current configuration (the methods below do).
    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("spec serialises");
        fs::write(self.config_path(), text).expect("write config.json");
    }

    /// Replaces `config.json` with `text` verbatim (e.g. invalid JSON); later changes
    /// through the other methods overwrite it again.
    pub fn write_raw_config(&self, text: &str) {
        fs::write(self.config_path(), text).expect("write config.json");
    }

    pub fn remove_config(&self) {
        fs::remove_file(self.config_path()).expect("remove config.json");
    }

    /// Sets the value at a JSON pointer (`/process/args`), creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.config;
        let keys: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = keys.split_last().expect("non-empty pointer");
        for k in parents {
            if !cur.get(k).is_some_and(Value::is_object) {
                cur[k.as_str()] = json!({});
            }
            cur = cur.get_mut(k).expect("just inserted");
        }
        cur[last.as_str()] = value;
        self.save();
        self
    }

    /// Removes the value at a JSON pointer, if present.
    pub fn unset(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer with a '/'");
        if let Some(Value::Object(m)) = self.config.pointer_mut(parent) {
            m.remove(key);
        }
        self.save();
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }

    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }

    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.set("/process/user", json!({"uid": uid, "gid": gid}))
    }

    pub fn annotation(&mut self, key: &str, value: &str) -> &mut Self {
        self.config["annotations"][key] = json!(value);
        self.save();
        self
    }

    pub fn remove_annotation(&mut self, key: &str) -> &mut Self {
        if let Some(m) = self.config["annotations"].as_object_mut() {
            m.remove(key);
        }
        self.save();
        self
    }

    /// The unikernel annotations for QEMU: type, binary and optionally initrd.
    pub fn unikernel(&mut self, kind: &str, binary: &str, initrd: Option<&str>) -> &mut Self {
        self.annotation(KEY_TYPE, kind)
            .annotation(KEY_HYPERVISOR, "qemu")
            .annotation(KEY_BINARY, binary);
        match initrd {
            Some(i) => self.annotation(KEY_INITRD, i),
            None => self.remove_annotation(KEY_INITRD),
        }
    }

    /// Writes `/urunc.json` in the rootfs with the values exactly as given (encode
    /// them first to test encodings).
    pub fn urunc_json(&self, values: &[(&str, &str)]) -> &Self {
        let map: serde_json::Map<String, Value> = values
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let text = serde_json::to_string_pretty(&Value::Object(map)).expect("serialises");
        self.write_file("/urunc.json", text.as_bytes(), 0o644)
    }

    /// Appends an OCI hook of `kind` (`createRuntime`, `poststop`, ...).
    pub fn hook(&mut self, kind: &str, path: &str, args: &[&str], env: &[&str]) -> &mut Self {
        let hooks = &mut self.config["hooks"];
        if !hooks.is_object() {
            *hooks = json!({});
        }
        let list = &mut hooks[kind];
        if !list.is_array() {
            *list = json!([]);
        }
        let mut hook = json!({"path": path});
        if !args.is_empty() {
            hook["args"] = json!(args);
        }
        if !env.is_empty() {
            hook["env"] = json!(env);
        }
        list.as_array_mut().expect("array").push(hook);
        self.save();
        self
    }

    pub fn memory_limit(&mut self, bytes: u64) -> &mut Self {
        self.set("/linux/resources/memory", json!({"limit": bytes}))
    }

    /// A permissive seccomp section (urunc has QEMU sandbox itself when one is present).
    pub fn seccomp(&mut self) -> &mut Self {
        self.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}),
        )
    }

    /// Adds a new network namespace to the spec.
    pub fn network_namespace(&mut self) -> &mut Self {
        let ns = self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        ns.push(json!({"type": "network"}));
        self.save();
        self
    }

    pub fn cgroups_path(&mut self, path: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(path))
    }

    /// The cgroup (relative to each hierarchy) urunc uses for container `id`.
    pub fn cgroup_rel(&self, id: &str) -> String {
        match self.config["linux"]["cgroupsPath"].as_str() {
            Some(p) if !p.is_empty() => p.trim_start_matches('/').to_string(),
            _ => format!("urunc/{id}"),
        }
    }

    /// Host path of `dest` (an absolute path inside the rootfs); parents are created.
    pub fn path_in_rootfs(&self, dest: &str) -> PathBuf {
        let p = self.rootfs().join(dest.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dirs in rootfs");
        }
        p
    }

    pub fn write_file(&self, dest: &str, contents: &[u8], mode: u32) -> &Self {
        let p = self.path_in_rootfs(dest);
        fs::write(&p, contents).expect("write file in rootfs");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Copies a host file into the rootfs, keeping its mode.
    pub fn copy_file(&self, dest: &str, src: impl AsRef<Path>) -> &Self {
        let src = src.as_ref();
        fs::copy(src, self.path_in_rootfs(dest))
            .unwrap_or_else(|e| panic!("copy {} into the rootfs: {e}", src.display()));
        self
    }

    /// Hard-links a host file into the rootfs (copies when on another filesystem): for
    /// large read-only fixtures such as a Linux kernel.
    pub fn link_file(&self, dest: &str, src: impl AsRef<Path>) -> &Self {
        let dst = self.path_in_rootfs(dest);
        if fs::hard_link(src.as_ref(), &dst).is_err() {
            self.copy_file(dest, src);
        }
        self
    }

    pub fn mkdir(&self, dest: &str) -> &Self {
        fs::create_dir_all(self.rootfs().join(dest.trim_start_matches('/'))).expect("mkdir");
        self
    }

    pub fn symlink(&self, dest: &str, target: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.path_in_rootfs(dest)).expect("symlink");
        self
    }

    pub fn mkfifo(&self, dest: &str) -> &Self {
        let p = self.path_in_rootfs(dest);
        let c = CString::new(p.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: c is a valid NUL-terminated path.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        self
    }

    /// Writes an executable `/bin/sh` script into the bundle directory (outside the
    /// rootfs) and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod script");
        p
    }
}

/// Every entry below `dir`, by relative path: kind, mode, owner, and content hash or
/// symlink target. Two equal snapshots mean the tree is byte-identical.
pub fn tree_snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        let listing: Vec<String> = entries
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let rel = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap().display());
        out.insert(format!("{} [listing]", rel(dir)), listing.join("\n"));
        for p in entries {
            let m = fs::symlink_metadata(&p).expect("lstat");
            let head = format!("mode={:o} uid={} gid={}", m.mode(), m.uid(), m.gid());
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!(
                    "symlink -> {}",
                    fs::read_link(&p).expect("readlink").display()
                )
            } else if ft.is_dir() {
                walk(root, &p, out);
                "dir".to_string()
            } else if ft.is_file() {
                let mut h = Sha256::new();
                let mut f = fs::File::open(&p).expect("open");
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                format!("file size={} sha256={hex}", m.len())
            } else {
                format!("special rdev={}", m.rdev())
            };
            out.insert(rel(&p), format!("{head} {what}"));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// PIDs of processes with an argument exactly equal to `arg`.
pub fn pids_with_exact_arg(arg: &str) -> Vec<i32> {
    pids_with_arg(arg)
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// `<name>-<pid>`: a container id no other test binary running now uses.
pub fn unique_id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the `urunc` binary with a private state root. Dropping it force-deletes any
/// container still in that root and removes the temporary directories.
pub struct Urunc {
    bin: PathBuf,
    tmp: tempfile::TempDir,
    root: PathBuf,
    log: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    seq: AtomicU32,
    /// stdout file of the last `create`/`run` per container id (the container's console).
    consoles: Mutex<HashMap<String, PathBuf>>,
}

impl Urunc {
    /// `bin` with `URUNC_QEMU_ACCEL=tcg`, a fresh empty `--root` and a 60 s limit per call.
    pub fn new(bin: impl Into<PathBuf>) -> Urunc {
        let tmp = tempfile::Builder::new()
            .prefix("urunc-state-")
            .tempdir_in("/tmp")
            .expect("create the state temp dir");
        let base = tmp.path().canonicalize().expect("resolve temp dir");
        let root = base.join("root");
        fs::create_dir(&root).expect("create root");
        fs::create_dir(base.join("out")).expect("create out");
        // A configuration file of its own (empty: the defaults), so a file installed
        // on the machine cannot change what the tests see.
        let config = base.join("config.toml");
        fs::write(&config, "").expect("write config.toml");
        Urunc {
            bin: bin.into(),
            tmp,
            root,
            log: None,
            env: vec![
                (ACCEL_ENV.into(), "tcg".into()),
                (CONFIG_ENV.into(), config.into()),
            ],
            timeout: Duration::from_secs(60),
            seq: AtomicU32::new(0),
            consoles: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `--log <tmp>/log.json --log-format json` to every call.
    pub fn with_log(mut self) -> Urunc {
        self.log = Some(self.tmp.path().join("log.json"));
        self
    }

    /// Sets an environment variable for every call (after `URUNC_QEMU_ACCEL=tcg`).
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Urunc {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Replaces urunc's configuration file (`$URUNC_CONFIG`) with `text`.
    pub fn write_config(&self, text: &str) {
        fs::write(self.config_path(), text).expect("write config.toml");
    }

    pub fn config_path(&self) -> PathBuf {
        self.tmp.path().join("config.toml")
    }

    pub fn timeout(mut self, timeout: Duration) -> Urunc {
        self.timeout = timeout;
        self
    }

    /// The `--root` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The command with global flags and environment, stdin from /dev/null; the
    /// caller sets stdout/stderr (for calls [`Urunc::cmd`] does not cover, such as
    /// killing `urunc create` half-way).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = &self.log {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn out_files(&self, what: &str) -> (PathBuf, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let base = self.tmp.path().join("out").join(format!("{n:03}-{what}"));
        (base.with_extension("out"), base.with_extension("err"))
    }

    /// Runs `urunc <global flags> <args>`, stdout and stderr captured through files;
    /// killed after the time limit (noted in stderr).
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_tracked(args, None)
    }

    fn cmd_tracked(&self, args: &[&str], console_of: Option<&str>) -> Output {
        let what = args.first().copied().unwrap_or("none");
        let (out_path, err_path) = self.out_files(what);
        let out = fs::File::create(&out_path).expect("create stdout file");
        let err = fs::File::create(&err_path).expect("create stderr file");
        if let Some(id) = console_of {
            self.consoles
                .lock()
                .unwrap()
                .insert(id.to_string(), out_path.clone());
        }
        let mut cmd = self.command(args);
        cmd.stdout(out).stderr(err);
        let (status, timed_out) = match cmd.spawn() {
            Ok(child) => wait_timeout(child, self.timeout),
            Err(e) => panic!("cannot run {}: {e}", self.bin.display()),
        };
        let mut stderr = fs::read(&err_path).unwrap_or_default();
        if timed_out {
            stderr.extend_from_slice(
                format!(
                    "\n[test-harness] urunc {args:?} killed after {:?}\n",
                    self.timeout
                )
                .as_bytes(),
            );
        }
        Output {
            status,
            stdout: fs::read(&out_path).unwrap_or_default(),
            stderr,
        }
    }

    fn with_bundle(&self, sub: &str, bundle: &TestBundle, id: &str, extra: &[&str]) -> Output {
        let dir = bundle.dir().to_str().expect("UTF-8 bundle path");
        let mut args = vec![sub, "--bundle", dir];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd_tracked(&args, Some(id))
    }

    pub fn create(&self, bundle: &TestBundle, id: &str) -> Output {
        self.with_bundle("create", bundle, id, &[])
    }

    /// `create --bundle <dir> <extra...> <id>`, e.g. with `--pid-file`.
    pub fn create_with(&self, bundle: &TestBundle, id: &str, extra: &[&str]) -> Output {
        self.with_bundle("create", bundle, id, extra)
    }

    pub fn run(&self, bundle: &TestBundle, id: &str) -> Output {
        self.with_bundle("run", bundle, id, &[])
    }

    pub fn run_with(&self, bundle: &TestBundle, id: &str, extra: &[&str]) -> Output {
        self.with_bundle("run", bundle, id, extra)
    }

    pub fn start(&self, id: &str) -> Output {
        self.cmd(&["start", id])
    }

    /// `create` and `start`, asserting both succeed and `state` then says running;
    /// returns the container's pid (the monitor's).
    #[track_caller]
    pub fn create_and_start(&self, bundle: &TestBundle, id: &str) -> i32 {
        assert_ok(&self.create(bundle, id), "create");
        assert_ok(&self.start(id), "start");
        let state = self
            .state_json(id)
            .unwrap_or_else(|| panic!("no state for {id} after start"));
        assert_eq!(state["status"], "running", "state of {id} after start");
        state["pid"].as_i64().expect("pid in state") as i32
    }

    /// The container's pid from `state`; panics when `state` fails.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let state = self
            .state_json(id)
            .unwrap_or_else(|| panic!("no state for {id}"));
        state["pid"].as_i64().expect("pid in state") as i32
    }

    pub fn state(&self, id: &str) -> Output {
        self.cmd(&["state", id])
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.cmd(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.cmd(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.cmd(&["delete", "--force", id])
    }

    /// `list --format json`.
    pub fn list(&self) -> Output {
        self.cmd(&["list", "--format", "json"])
    }

    /// `ps --format json <id>`.
    pub fn ps(&self, id: &str) -> Output {
        self.cmd(&["ps", "--format", "json", id])
    }

    /// The parsed output of `state`, or None when it fails.
    pub fn state_json(&self, id: &str) -> Option<Value> {
        let out = self.state(id);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `status` from `state`, or None when `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        self.state_json(id)
            .and_then(|v| v["status"].as_str().map(String::from))
    }

    /// Waits until `state` reports `status` (up to `timeout`).
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.status(id).as_deref() == Some(status))
    }

    /// What the container printed so far: the stdout of its `create` (or `run`).
    pub fn console(&self, id: &str) -> String {
        let path = self.consoles.lock().unwrap().get(id).cloned();
        path.map(|p| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the container's console contains `needle`.
    pub fn wait_console(&self, id: &str, needle: &str, timeout: Duration) -> bool {
        wait_for(timeout, || self.console(id).contains(needle))
    }

    /// Waits until the console contains `needle`; panics with the console if it does not.
    #[track_caller]
    pub fn assert_console(&self, id: &str, needle: &str, timeout: Duration) {
        if !self.wait_console(id, needle, timeout) {
            panic!(
                "{id}: no {needle:?} on the console within {timeout:?}:\n{}",
                self.console(id)
            );
        }
    }

    /// Every line of the JSON log, parsed (non-JSON lines are skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        let Some(p) = &self.log else {
            return Vec::new();
        };
        fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last JSON log line.
    pub fn last_log(&self) -> Option<Value> {
        self.log_lines().pop()
    }

    /// Truncates the log file, so the next call's lines stand alone.
    pub fn clear_log(&self) {
        if let Some(p) = &self.log {
            let _ = fs::write(p, b"");
        }
    }

    /// What container `id` of `bundle` left behind, one description per item: entries
    /// in the state root, processes naming the bundle, the root or `urunc-<id>` (QEMU's
    /// `-name`), mounts under the bundle or the root, and cgroup directories (the
    /// spec's `cgroupsPath` or urunc's default `/urunc/<id>`, and runc's `/<id>`).
    pub fn leftovers(&self, bundle: &TestBundle, id: &str) -> Vec<String> {
        let mut left = Vec::new();
        for e in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            left.push(format!("state root entry {}", e.path().display()));
        }
        let needles = [
            bundle.dir().to_string_lossy().into_owned(),
            self.root.to_string_lossy().into_owned(),
        ];
        let mut pids: Vec<i32> = needles.iter().flat_map(|n| pids_with_arg(n)).collect();
        pids.extend(pids_with_exact_arg(&format!("urunc-{id}")));
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            left.push(format!("process {pid}: {}", cmd.trim()));
        }
        for dir in [bundle.dir(), self.root.as_path()] {
            for m in mounts_under(dir) {
                left.push(format!("mount {}", m.display()));
            }
        }
        for rel in [bundle.cgroup_rel(id), id.to_string()] {
            for dir in cgroup_dirs(&rel) {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        left
    }

    /// Panics with the list when [`Urunc::leftovers`] finds anything.
    pub fn assert_clean(&self, bundle: &TestBundle, id: &str) {
        let left = self.leftovers(bundle, id);
        assert!(
            left.is_empty(),
            "container {id} left behind:\n  {}",
            left.join("\n  ")
        );
    }
}

/// Existing `/sys/fs/cgroup/<rel>` and `/sys/fs/cgroup/*/<rel>`.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.to_path_buf()];
    dirs.extend(
        fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    );
    dirs.into_iter()
        .map(|d| d.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

fn wait_timeout(mut child: Child, timeout: Duration) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) => {}
            Err(e) => panic!("wait: {e}"),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().expect("wait"), true);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Urunc {
    fn drop(&mut self) {
        // Containers a failed test left: delete them (a urunc id, or runc's, which
        // urunc hands on), so neither processes nor cgroups outlive the test.
        let ids: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        for id in ids {
            let out = self.cmd(&["delete", "--force", &id]);
            if !out.status.success() {
                eprintln!(
                    "[test-harness] delete --force {id} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
}
