//! deploy/kubernetes/install.sh run against a temporary directory standing for the
//! node's root (`--host-root DIR`), with dist-like binaries and a sample containerd
//! configuration: what it installs, the configuration it writes, that a second run is a
//! no-op (same bytes, same files, no containerd restart) and that `uninstall` gives the
//! node back as it was. Runs unprivileged: no cluster, no containerd is involved (the
//! restart command is recorded instead of run).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

const PATCHER: &str = env!("CARGO_BIN_EXE_urunc-deploy");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/install.sh")
}

fn data(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

struct Node {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    artifacts: PathBuf,
    restarts: PathBuf,
}

impl Node {
    /// A host root with `config` (or none) as /etc/containerd/config.toml, and artefacts
    /// named as `make dist` names them, plus one optional monitor.
    fn new(config: Option<&str>) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let artifacts = tmp.path().join("artifacts");
        fs::create_dir_all(host.join("etc/containerd")).unwrap();
        fs::create_dir_all(host.join("usr/local/bin")).unwrap();
        fs::create_dir_all(artifacts.join("hypervisors")).unwrap();
        if let Some(c) = config {
            fs::write(host.join("etc/containerd/config.toml"), c).unwrap();
        }
        // An unrelated binary of the node's, which must survive uninstall.
        fs::write(host.join("usr/local/bin/other-tool"), "keep me").unwrap();
        let a = arch();
        for (file, body) in [
            (format!("urunc_static_{a}"), "#!/bin/sh\necho urunc\n"),
            (
                format!("containerd-shim-urunc-v2_{a}"),
                "#!/bin/sh\necho shim\n",
            ),
            (format!("urunit_static_{a}"), "#!/bin/sh\necho urunit\n"),
            (
                "hypervisors/qemu-system-x86_64".to_string(),
                "#!/bin/sh\necho qemu\n",
            ),
        ] {
            let p = artifacts.join(file);
            fs::write(&p, body).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let restarts = tmp.path().join("restarts");
        Node {
            _tmp: tmp,
            host,
            artifacts,
            restarts,
        }
    }

    fn run(&self, action: &str, extra: &[&str]) -> Output {
        let restart = format!("echo restart >> '{}'", self.restarts.display());
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg(action)
            .arg("--host-root")
            .arg(&self.host)
            .arg("--artifacts")
            .arg(&self.artifacts)
            .args(["--restart-cmd", &restart])
            .args(extra)
            .env("URUNC_DEPLOY", PATCHER)
            // The DaemonSet's variables must not leak in from the test's environment.
            .env_remove("HOST_ROOT")
            .env_remove("ARTIFACTS")
            .env_remove("CONTAINERD_CONFIG")
            .env_remove("CONTAINERD_VERSION")
            .env_remove("RESTRICT_OOM_SCORE_ADJ");
        cmd.output().expect("running install.sh")
    }

    fn run_ok(&self, action: &str, extra: &[&str]) -> String {
        let out = self.run(action, extra);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "install.sh {action} failed:\n{text}");
        text
    }

    fn config(&self) -> Option<String> {
        fs::read_to_string(self.host.join("etc/containerd/config.toml")).ok()
    }

    fn restarts(&self) -> usize {
        fs::read_to_string(&self.restarts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Every file under the host root: path -> (bytes, mode, mtime).
    fn snapshot(&self) -> Snapshot {
        fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.insert(
                        p.strip_prefix(root).unwrap().to_path_buf(),
                        (
                            fs::read(&p).unwrap(),
                            m.permissions().mode() & 0o7777,
                            m.modified().unwrap(),
                        ),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.host, &self.host, &mut out);
        out
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.host.join("usr/local/bin").join(name)
    }
}

type Snapshot = BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)>;

/// The paths whose bytes, mode or mtime differ (empty: the same).
fn differences(a: &Snapshot, b: &Snapshot) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = a.keys().chain(b.keys()).cloned().collect();
    paths.sort();
    paths.dedup();
    paths.retain(|p| a.get(p) != b.get(p));
    paths
}

#[test]
fn install_twice_then_uninstall() {
    let original = data("v2-containerd-1.6-default.toml");
    let node = Node::new(Some(&original));
    let before = node.snapshot();

    let out = node.run_ok("install", &[]);
    let a = arch();
    for (name, artefact) in [
        ("urunc", format!("urunc_static_{a}")),
        (
            "containerd-shim-urunc-v2",
            format!("containerd-shim-urunc-v2_{a}"),
        ),
        ("urunit", format!("urunit_static_{a}")),
        (
            "qemu-system-x86_64",
            "hypervisors/qemu-system-x86_64".into(),
        ),
    ] {
        let dest = node.bin(name);
        assert_eq!(
            fs::read(&dest).unwrap(),
            fs::read(node.artifacts.join(&artefact)).unwrap(),
            "{name}\n{out}"
        );
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{name}");
    }
    let config = node.config().unwrap();
    assert_eq!(
        config,
        data("expected/v2-containerd-1.6-default.toml"),
        "{out}"
    );
    assert_eq!(node.restarts(), 1, "{out}");
    assert!(out.contains("restarting containerd"), "{out}");
    let manifest = fs::read_to_string(node.host.join("var/lib/urunc-deploy/installed")).unwrap();
    assert_eq!(
        manifest.lines().collect::<Vec<_>>(),
        [
            "/usr/local/bin/urunc",
            "/usr/local/bin/containerd-shim-urunc-v2",
            "/usr/local/bin/urunit",
            "/usr/local/bin/qemu-system-x86_64"
        ]
    );

    // Second run: nothing changes, not even a timestamp; no restart.
    let installed = node.snapshot();
    let out2 = node.run_ok("install", &[]);
    let changed = differences(&node.snapshot(), &installed);
    assert!(
        changed.is_empty(),
        "second install changed {changed:?}:\n{out2}"
    );
    assert_eq!(
        node.restarts(),
        1,
        "second install restarted containerd:\n{out2}"
    );
    assert!(out2.contains("nothing to do"), "{out2}");
    assert!(out2.contains("unchanged"), "{out2}");

    // A new urunc release: only that file is replaced, containerd is not restarted.
    fs::write(
        node.artifacts.join(format!("urunc_static_{a}")),
        "#!/bin/sh\necho urunc v2\n",
    )
    .unwrap();
    let out3 = node.run_ok("install", &[]);
    assert!(out3.contains("installed /usr/local/bin/urunc\n"), "{out3}");
    assert!(!out3.contains("installed /usr/local/bin/urunit"), "{out3}");
    assert_eq!(node.restarts(), 1, "{out3}");
    assert_eq!(node.config().unwrap(), config);

    // Uninstall: the node is as before (the config byte for byte), containerd restarted.
    let out4 = node.run_ok("uninstall", &[]);
    let after: BTreeMap<_, _> = node
        .snapshot()
        .into_iter()
        .map(|(p, (b, m, _))| (p, (b, m)))
        .collect();
    let before: BTreeMap<_, _> = before
        .into_iter()
        .map(|(p, (b, m, _))| (p, (b, m)))
        .collect();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{out4}"
    );
    assert!(after == before, "uninstall left different files:\n{out4}");
    assert_eq!(node.config().unwrap(), original);
    assert_eq!(node.restarts(), 2, "{out4}");
    assert!(!node.host.join("var/lib/urunc-deploy").exists());
    // Uninstalling again is harmless.
    node.run_ok("uninstall", &[]);
    assert_eq!(node.restarts(), 2);
}

#[test]
fn missing_config_is_created_and_removed() {
    let node = Node::new(None);
    // Without the containerd version the format of a new file is unknown: an error
    // before anything is copied.
    let out = node.run("install", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--containerd-version"), "{err}");
    assert!(
        !node.bin("urunc").exists(),
        "files copied before the failure"
    );

    let out = node.run_ok("install", &["--containerd-version", "2.0.5"]);
    assert_eq!(
        node.config().unwrap(),
        data("expected/created-v3.toml"),
        "{out}"
    );
    let installed = node.snapshot();
    node.run_ok("install", &["--containerd-version", "2.0.5"]);
    let changed = differences(&node.snapshot(), &installed);
    assert!(changed.is_empty(), "second install changed {changed:?}");
    node.run_ok("uninstall", &[]);
    assert_eq!(node.config(), None);
    assert!(!node.bin("urunc").exists());
    assert!(node.bin("other-tool").exists());
}

#[test]
fn restrict_oom_score_adj_and_no_restart() {
    let original = data("v3-containerd-2.0-default.toml");
    let node = Node::new(Some(&original));
    let out = node.run_ok("install", &["--restrict-oom-score-adj", "--no-restart"]);
    assert_eq!(node.restarts(), 0, "{out}");
    assert!(out.contains("restart containerd to use it"), "{out}");
    assert_eq!(
        node.config().unwrap(),
        data("expected/oom-v3-containerd-2.0-default.toml")
    );
    node.run_ok("uninstall", &["--no-restart"]);
    assert_eq!(node.config().unwrap(), original);
}

#[test]
fn bad_config_fails_before_copying_anything() {
    let node = Node::new(Some(&data("v1-no-version.toml")));
    let out = node.run("install", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version 1"), "{err}");
    assert!(!node.bin("urunc").exists());
    assert_eq!(node.restarts(), 0);
    assert_eq!(node.config().unwrap(), data("v1-no-version.toml"));
}

#[test]
fn missing_artefact_is_named() {
    let node = Node::new(Some(&data("v2-debian-bookworm.toml")));
    fs::remove_file(node.artifacts.join(format!("urunit_static_{}", arch()))).unwrap();
    let out = node.run("install", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("urunit_static_"), "{err}");
    assert!(err.contains("make dist"), "{err}");
    assert!(!node.bin("urunc").exists());
}
