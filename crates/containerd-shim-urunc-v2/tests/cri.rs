//! The CRI API, as the kubelet drives containerd: a private containerd 1.6 with its CRI
//! plugin, a runtime handler `urunc` of type `io.containerd.urunc.v2` (this shim), and
//! a CRI client (`test_harness::cri`, API v1) talking to it.
//!
//! - a pod with the `urunc` handler: the pause container runs through runc via the
//!   shim, unikernel containers (the test kernel, `com.urunc.unikernel.*` container
//!   annotations) run as VMs; statuses, exit codes and the CRI log file; the whole pod
//!   costs one shim process; StopPodSandbox + RemovePodSandbox leave no shim, monitor,
//!   state directory, mount or network namespace behind;
//! - StopContainer with timeout 0 kills a unikernel container: exit code 137;
//! - a pod on a CNI bridge network: a Linux guest (busybox httpd, booted by urunit with
//!   the virtio-net modules) answers HTTP from the host at the pod IP.
//!
//! Each test has its own CNI configuration directory, bridge, private range
//! (10.252.N.0/24) and IPAM directory, all removed at the end (also on failure), and
//! restores `net.ipv4.ip_forward`, which the bridge plugin turns on. The pause image is
//! Debian's static busybox running `sleep`, imported into the `k8s.io` namespace under
//! the configured `sandbox_image`. containerd's environment carries
//! `URUNC_QEMU_ACCEL=tcg` (and `URUNC_URUNIT`), which reach urunc through the shim.
//!
//! Needs root, containerd, runc, QEMU, Debian's containernetworking-plugins
//! (`/usr/lib/cni`) and busybox-static, the fixtures (`make fixtures`), and `urunc`
//! built next to this test (`cargo build -p urunc-cli`).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use oci_image::ImageBuilder;
use serde_json::Value;
use test_harness::bundle::{KEY_BINARY, KEY_HYPERVISOR, KEY_INITRD, KEY_TYPE, TESTKERNEL_KEYS};
use test_harness::cni;
use test_harness::cri::{api, container_config, cri_toml, pod_config, Cri};
use test_harness::fixtures::{NET_MODULES, TESTKERNEL_BOOTED as BOOTED};
use test_harness::{
    busybox_image, fixtures, mounts_under, pids_with_arg, require_root_and_tools, wait_until,
    Containerd,
};
use urunc::guest_init::Newc;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-urunc-v2");
const RUNTIME: &str = "io.containerd.urunc.v2";
const HANDLER: &str = "urunc";
const NAMESPACE: &str = "k8s.io";
const PAUSE_IMAGE: &str = "example.com/urunc/cri-pause:1";
const TOOLS: &[&str] = &[
    "containerd",
    "ctr",
    "runc",
    "qemu-system-x86_64",
    "ip",
    "/usr/lib/cni/bridge",
    "/usr/lib/cni/host-local",
    "/usr/lib/cni/loopback",
];
/// Where urunc (the shim's `--root`) and runc keep container state.
const STATE_ROOTS: &[&str] = &["/run/containerd/urunc", "/run/containerd/runc"];
const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

const KEY_NETWORK_MODE: &str = "com.urunc.network.mode";

const PAGE: &str = "hello from a unikernel pod\n";

/// `urunc` built by cargo next to this test (target/<profile>/deps/cri-* -> ../urunc).
fn urunc_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let urunc = dir.join("urunc");
    assert!(
        urunc.is_file(),
        "{} is missing: build it first with `cargo build -p urunc-cli` (make test does)",
        urunc.display()
    );
    urunc
}

/// `ip_forward` as it was before the first test network of this process, and how many
/// test networks exist: the last one to go restores it.
static FORWARD_STATE: Mutex<(usize, Option<String>)> = Mutex::new((0, None));

/// A CNI network for the CRI plugin: a private conflist directory with a bridge +
/// host-local network on 10.252.N.0/24 (IPAM state in a private directory). Dropping it
/// deletes the bridge and the directories.
struct CniNet {
    conf_dir: tempfile::TempDir,
    bridge: String,
    subnet: String,
}

impl CniNet {
    fn new(n: u32) -> CniNet {
        {
            let mut f = FORWARD_STATE.lock().unwrap_or_else(|e| e.into_inner());
            if f.0 == 0 {
                f.1 = fs::read_to_string(FORWARD).ok();
            }
            f.0 += 1;
        }
        let pid = std::process::id();
        let conf_dir = tempfile::Builder::new()
            .prefix("urunc-cri-cni-")
            .tempdir_in("/tmp")
            .expect("CNI conf dir");
        let bridge = format!("urcri{}{n}", pid % 100_000);
        let subnet = format!("10.252.{}", (pid * 7 + n) % 250 + 1);
        let conf = cni::bridge_conflist(
            "0.4.0",
            &format!("urunc-cri-{pid}-{n}"),
            cni::bridge_plugin(
                &bridge,
                &format!("{subnet}.0/24"),
                &conf_dir.path().join("ipam"),
            ),
        );
        fs::write(
            conf_dir.path().join("10-urunc-cri.conflist"),
            serde_json::to_string_pretty(&conf).unwrap(),
        )
        .expect("conflist");
        CniNet {
            conf_dir,
            bridge,
            subnet,
        }
    }

    /// Interfaces enslaved to the bridge (the pods' veth ends).
    fn ports(&self) -> String {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let mut f = FORWARD_STATE.lock().unwrap_or_else(|e| e.into_inner());
        f.0 -= 1;
        if f.0 == 0 {
            if let Some(v) = f.1.take() {
                let _ = fs::write(FORWARD, v.trim());
            }
        }
    }
}

/// Everything one test needs: its network, a containerd with CRI and the shim, a CRI
/// client. Fields drop in order: client, containerd (removing leftovers), network.
struct Env {
    cri: Cri,
    containerd: Containerd,
    net: CniNet,
}

/// Starts the environment, or returns None after a SKIP line.
fn start(n: u32, extra_env: &[(&str, &str)]) -> Option<Env> {
    if !require_root_and_tools(TOOLS) || !require_root_and_tools(&[test_harness::BUSYBOX]) {
        return None;
    }
    fixtures::testkernel()?;
    let urunc = urunc_binary();
    let net = CniNet::new(n);
    let mut builder = Containerd::builder()
        .namespace(NAMESPACE)
        .enable_cri(&cri_toml(
            PAUSE_IMAGE,
            net.conf_dir.path(),
            &[(HANDLER, RUNTIME)],
        ))
        .env("URUNC_QEMU_ACCEL", "tcg")
        .ctr_timeout(Duration::from_secs(60));
    for (k, v) in extra_env {
        builder = builder.env(k, v);
    }
    let containerd = builder
        .start_with_urunc(Path::new(SHIM), &urunc)
        .expect("starting containerd");
    let mut pause = ImageBuilder::new();
    busybox_image(&mut pause).expect("busybox image");
    pause.cmd(["/bin/busybox", "sleep", "1000000"]);
    import(&containerd, &pause, PAUSE_IMAGE);
    let cri = Cri::connect(containerd.address()).expect("CRI client");
    Some(Env {
        cri,
        containerd,
        net,
    })
}

/// The pods run one at a time: each boots VMs under TCG on a 2-core machine, and
/// three at once make StartContainer slow enough to look like a hang.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn import(containerd: &Containerd, image: &ImageBuilder, reference: &str) -> String {
    let tar = containerd
        .dir()
        .join(format!("{}.tar", reference.replace(['/', ':'], "_")));
    image
        .write_oci_archive(&tar, reference)
        .expect("writing the image");
    let name = containerd.import(&tar).expect("importing the image");
    let _ = fs::remove_file(&tar);
    name
}

fn testkernel_image(containerd: &Containerd) -> String {
    let kernel = fixtures::testkernel().expect("test kernel fixture");
    let mut image = ImageBuilder::new();
    image.add_file("/boot/kernel", kernel, 0o755).unwrap();
    image.cmd(["/boot/kernel"]);
    import(containerd, &image, "example.com/urunc/cri-testkernel:1")
}

/// Processes running our shim binary for this containerd (`-address <its socket>`).
fn our_shims(containerd: &Containerd) -> Vec<i32> {
    let shim = fs::canonicalize(SHIM).unwrap();
    let ours = pids_with_arg(&containerd.address().to_string_lossy());
    ours.into_iter()
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == shim))
        .collect()
}

/// A pod sandbox that is stopped and removed on drop unless the test did it.
struct Pod<'a> {
    cri: &'a Cri,
    id: String,
    config: api::PodSandboxConfig,
    removed: bool,
}

impl<'a> Pod<'a> {
    fn run(env: &'a Env, name: &str, annotations: &[(&str, &str)]) -> Pod<'a> {
        let logs = env.containerd.dir().join("pods").join(name);
        fs::create_dir_all(&logs).unwrap();
        let uid = format!("uid-{name}-{}", std::process::id());
        let config = pod_config(name, &uid, &logs, annotations);
        let t = Instant::now();
        let id = env
            .cri
            .run_pod_sandbox(&config, HANDLER)
            .unwrap_or_else(|e| panic!("{e:#}"));
        eprintln!("RunPodSandbox {name}: {:?}", t.elapsed());
        Pod {
            cri: &env.cri,
            id,
            config,
            removed: false,
        }
    }

    fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// Creates and starts a container; returns its ID.
    fn start_container(&self, config: &api::ContainerConfig) -> String {
        let id = self
            .cri
            .create_container(&self.id, config, &self.config)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.cri
            .start_container(&id)
            .unwrap_or_else(|e| panic!("{e:#}"));
        id
    }

    /// containerd's verbose sandbox info (pid, runtime spec, ...).
    fn info(&self) -> Value {
        let status = self.cri.pod_sandbox_status(&self.id).expect("status");
        serde_json::from_str(status.info.get("info").expect("verbose info")).expect("info JSON")
    }

    fn ip(&self) -> String {
        let status = self.cri.pod_sandbox_status(&self.id).expect("status");
        status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    /// The network namespace the sandbox joined (`/var/run/netns/cni-<uuid>`).
    fn netns(&self) -> PathBuf {
        let info = self.info();
        let ns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .unwrap_or_else(|| panic!("no network namespace path in {info}"));
        PathBuf::from(ns)
    }

    fn stop_and_remove(mut self) {
        let t = Instant::now();
        self.cri.stop_pod_sandbox(&self.id).expect("StopPodSandbox");
        self.cri
            .remove_pod_sandbox(&self.id)
            .expect("RemovePodSandbox");
        eprintln!("StopPodSandbox + RemovePodSandbox: {:?}", t.elapsed());
        self.removed = true;
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.cri.stop_pod_sandbox(&self.id);
            let _ = self.cri.remove_pod_sandbox(&self.id);
        }
    }
}

/// Nothing of the pod and its containers `ids` is left: no shim of this containerd, no
/// process naming an ID (monitors, pause), no state directory, no mount under the
/// containerd directory, no network namespace, no veth on the bridge.
fn assert_nothing_left(env: &Env, ids: &[&str], netns: &Path) {
    wait_until(
        "the shim and all processes to go",
        Duration::from_secs(15),
        || {
            our_shims(&env.containerd).is_empty()
                && ids.iter().all(|id| pids_with_arg(id).is_empty())
        },
    );
    for root in STATE_ROOTS {
        for id in ids {
            let state = Path::new(root).join(NAMESPACE).join(id);
            assert!(!state.exists(), "state {state:?} left behind");
        }
    }
    let mounts = mounts_under(env.containerd.dir());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(!netns.exists(), "network namespace {netns:?} left behind");
    let ports = env.net.ports();
    assert!(ports.is_empty(), "veth left on the bridge: {ports}");
    assert!(
        env.cri.list_pod_sandboxes().unwrap().is_empty(),
        "sandboxes still listed"
    );
}

/// The CRI log file's text (`<time> stdout F <line>` lines), once it contains `text`.
fn wait_for_log(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = fs::read_to_string(path).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {text:?} in {path:?}:\n{log}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pod_with_unikernel_containers_through_cri() {
    let _one_at_a_time = serial();
    let t0 = Instant::now();
    let Some(env) = start(1, &[]) else { return };
    let image = testkernel_image(&env.containerd);
    let version = env.cri.version().expect("Version");
    eprintln!(
        "CRI {} {} (API {}); setup {:?}",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
        t0.elapsed()
    );

    let pod = Pod::run(&env, "uk-pod", &[]);
    let info = pod.info();
    let pause_pid = info["pid"].as_i64().expect("sandbox pid") as i32;
    let pause_cmd = fs::read(format!("/proc/{pause_pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&pause_cmd).starts_with("/bin/busybox\0sleep"),
        "the pause container is a process (runc), not a VM: {:?}",
        String::from_utf8_lossy(&pause_cmd)
    );
    let netns = pod.netns();
    assert!(
        netns.starts_with("/var/run/netns") && netns.exists(),
        "{netns:?}"
    );
    let ip = pod.ip();
    assert!(
        ip.starts_with(&format!("{}.", env.net.subnet)),
        "pod IP {ip}"
    );

    // One container that prints and stops (exit 0), two that wait. Only one unikernel
    // container per network namespace can have the network: the waiting ones have none.
    let no_net: Vec<(&str, &str)> = TESTKERNEL_KEYS
        .iter()
        .copied()
        .chain([(KEY_NETWORK_MODE, "none")])
        .collect();
    let t = Instant::now();
    let done = pod.start_container(&container_config(
        "done",
        &image,
        &["hello", "cri"],
        "done.log",
        TESTKERNEL_KEYS,
    ));
    let waiting: Vec<String> = (0..2)
        .map(|i| {
            pod.start_container(&container_config(
                &format!("wait{i}"),
                &image,
                &["wait"],
                &format!("wait{i}.log"),
                &no_net,
            ))
        })
        .collect();
    eprintln!("3 x CreateContainer + StartContainer: {:?}", t.elapsed());
    for id in &waiting {
        let s = env
            .cri
            .wait_container_state(
                id,
                api::ContainerState::ContainerRunning,
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(s.started_at > 0, "{s:?}");
    }
    let exited = env
        .cri
        .wait_container_state(
            &done,
            api::ContainerState::ContainerExited,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("test kernel container exited {:?} after start", t.elapsed());
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(exited.reason, "Completed", "{exited:?}");
    assert!(exited.started_at > 0 && exited.finished_at >= exited.started_at);
    assert_eq!(
        Path::new(&exited.log_path),
        pod.log_dir().join("done.log"),
        "{exited:?}"
    );
    let log = wait_for_log(&pod.log_dir().join("done.log"), BOOTED);
    assert!(
        log.lines()
            .any(|l| l.contains(" stdout ") && l.contains(BOOTED)),
        "CRI log format:\n{log}"
    );
    assert!(
        log.contains("hello cri"),
        "the args reach the guest:\n{log}"
    );
    wait_for_log(&pod.log_dir().join("wait0.log"), "waiting");

    // The kubelet restarts a container by creating the next attempt while the exited
    // one still exists: the new one takes over the network.
    let mut again = container_config("done", &image, &["again"], "done.1.log", TESTKERNEL_KEYS);
    again.metadata.as_mut().unwrap().attempt = 1;
    let done_again = pod.start_container(&again);
    let exited_again = env
        .cri
        .wait_container_state(
            &done_again,
            api::ContainerState::ContainerExited,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(exited_again.exit_code, 0, "{exited_again:?}");
    let log = wait_for_log(&pod.log_dir().join("done.1.log"), BOOTED);
    assert!(
        log.contains("netdev.ip="),
        "the restarted container has the network:\n{log}"
    );

    // The sandbox and four containers: one shim.
    let shims = our_shims(&env.containerd);
    assert_eq!(shims.len(), 1, "one shim for the pod, found {shims:?}");
    for id in &waiting {
        let s = env.cri.container_status(id).unwrap();
        assert_eq!(
            s.state,
            api::ContainerState::ContainerRunning as i32,
            "{s:?}"
        );
        let monitors = pids_with_arg(id);
        assert!(!monitors.is_empty(), "no monitor process for {id}");
    }
    // (CRI deletes the task of an exited container at once.) The running ones, and the
    // pause container, have state where assert_nothing_left looks.
    for id in waiting.iter().chain([&pod.id]) {
        let roots: Vec<&&str> = STATE_ROOTS
            .iter()
            .filter(|r| Path::new(r).join(NAMESPACE).join(id).exists())
            .collect();
        assert!(!roots.is_empty(), "no state of {id} in {STATE_ROOTS:?}");
    }

    let mut ids: Vec<&str> = vec![&pod.id, &done, &done_again];
    ids.extend(waiting.iter().map(String::as_str));
    let ids: Vec<String> = ids.into_iter().map(String::from).collect();
    pod.stop_and_remove();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_nothing_left(&env, &ids, &netns);
    eprintln!("pod test total {:?}", t0.elapsed());
}

#[test]
fn stop_container_with_timeout_zero_reports_137() {
    let _one_at_a_time = serial();
    let t0 = Instant::now();
    let Some(env) = start(2, &[]) else { return };
    let image = testkernel_image(&env.containerd);
    // The unikernel keys as pod annotations, as a Kubernetes pod spec carries them:
    // the CRI plugin puts them into the pause container's spec too, which stays an
    // ordinary container.
    let pod = Pod::run(&env, "kill-pod", TESTKERNEL_KEYS);
    let netns = pod.netns();
    let id = pod.start_container(&container_config(
        "victim",
        &image,
        &["wait"],
        "victim.log",
        &[],
    ));
    env.cri
        .wait_container_state(
            &id,
            api::ContainerState::ContainerRunning,
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    wait_for_log(&pod.log_dir().join("victim.log"), "waiting");
    let t = Instant::now();
    env.cri.stop_container(&id, 0).expect("StopContainer");
    eprintln!("StopContainer(timeout 0): {:?}", t.elapsed());
    let s = env.cri.container_status(&id).unwrap();
    assert_eq!(
        s.state,
        api::ContainerState::ContainerExited as i32,
        "{s:?}"
    );
    assert_eq!(s.exit_code, 137, "{s:?}");
    wait_until("the monitor to go", Duration::from_secs(10), || {
        pids_with_arg(&id).is_empty()
    });
    env.cri.remove_container(&id).expect("RemoveContainer");
    let pod_id = pod.id.clone();
    pod.stop_and_remove();
    assert_nothing_left(&env, &[&pod_id, &id], &netns);
    eprintln!("kill test total {:?}", t0.elapsed());
}

/// Shared with the other Linux-guest tests.
fn urunit() -> Option<PathBuf> {
    test_harness::fixtures::urunit()
}

/// The Linux guest's initrd: the fixture's busybox initrd plus the virtio-net modules
/// (`/lib/modules/<release>/`, `load-order.txt`, which urunit loads) and
/// `/www/index.html`.
fn web_initrd(initrd: &Path) -> Vec<u8> {
    let mut a = Newc::new();
    fixtures::add_modules(&mut a, NET_MODULES);
    a.dir("www", 0o755)
        .file("www/index.html", PAGE.as_bytes(), 0o644);
    fixtures::initrd_with(initrd, &a.finish())
}

/// One HTTP/1.0 GET of `path` from the host.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn linux_guest_in_a_cni_pod_answers_http_at_the_pod_ip() {
    let _one_at_a_time = serial();
    let t0 = Instant::now();
    if !require_root_and_tools(TOOLS) {
        return;
    }
    let Some((vmlinux, initrd)) = fixtures::linux_guest() else {
        return;
    };
    let Some(urunit) = urunit() else { return };
    let Some(env) = start(3, &[("URUNC_URUNIT", urunit.to_str().unwrap())]) else {
        return;
    };
    let mut image = ImageBuilder::new();
    image
        .add_file("/boot/vmlinux", &vmlinux, 0o644)
        .unwrap()
        .add_bytes("/boot/initrd", web_initrd(&initrd), 0o644)
        .unwrap();
    // The guest publishes the /etc/hostname and /etc/hosts it got from the CRI plugin
    // (copied in by urunc, see docs/storage.md), then serves.
    image.cmd([
        "/bin/busybox",
        "sh",
        "-c",
        "cat /etc/hostname /etc/hosts > /www/etc.txt; exec /bin/busybox httpd -f -p 80 -h /www",
    ]);
    let image = import(&env.containerd, &image, "example.com/urunc/cri-web:1");

    let pod = Pod::run(&env, "web-pod", &[]);
    let netns = pod.netns();
    let ip = pod.ip();
    assert!(
        ip.starts_with(&format!("{}.", env.net.subnet)),
        "pod IP {ip}"
    );
    let keys = [
        (KEY_TYPE, "linux"),
        (KEY_HYPERVISOR, "qemu"),
        (KEY_BINARY, "/boot/vmlinux"),
        (KEY_INITRD, "/boot/initrd"),
    ];
    let t = Instant::now();
    let id = pod.start_container(&container_config("web", &image, &[], "web.log", &keys));
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let mut last;
    let reply = loop {
        match http_get(addr, "/index.html") {
            Ok(r) if r.contains(PAGE.trim()) => break r,
            Ok(r) => last = r,
            Err(e) => last = e.to_string(),
        }
        if t.elapsed() > Duration::from_secs(60) {
            let log = fs::read_to_string(pod.log_dir().join("web.log")).unwrap_or_default();
            panic!("no page from http://{addr}/ within 60 s; last: {last}\nlog:\n{log}");
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "first HTTP reply from the pod IP {:?} after StartContainer",
        t.elapsed()
    );
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
    // The pod's /etc/hostname and /etc/hosts (the CRI plugin's files) reached the guest.
    let etc = http_get(addr, "/etc.txt").expect("GET /etc.txt");
    assert!(etc.contains(" 200 "), "{etc}");
    let body = etc.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.starts_with("web-pod\n"),
        "guest /etc/hostname: {body:?}"
    );
    assert!(body.contains("localhost"), "guest /etc/hosts: {body:?}");
    let s = env.cri.container_status(&id).unwrap();
    assert_eq!(
        s.state,
        api::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let pod_id = pod.id.clone();
    pod.stop_and_remove();
    assert_nothing_left(&env, &[&pod_id, &id], &netns);
    eprintln!("network test total {:?}", t0.elapsed());
}
