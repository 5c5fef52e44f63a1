//! Networking of unikernel containers and the guest init, with real QEMU under TCG:
//!
//! - a Linux guest (Debian kernel, the fixture's busybox initrd plus the virtio-net
//!   modules and a web page) serves a file with busybox httpd, booted by urunit in
//!   dynamic mode, and answers an HTTP GET from the other end of a veth pair;
//! - the test kernel as a Unikraft guest gets `netdev.ip=...` and QEMU a tap NIC with the
//!   interface's MAC; a second container on the same interface is refused;
//! - static mode: the private address, and a Linux guest reaching the peer through NAT;
//! - without an interface (or without a network namespace) there is no NIC;
//! - an application exiting with 7 makes `urunc run` exit with 7;
//! - 50 create/start/delete cycles (the first after a simulated crash) leave no tap,
//!   qdisc, filter, namespace or process behind;
//! - `ctr run --cni` through containerd's runc shim with Debian's bridge and host-local
//!   plugins: the Linux guest answers from the host at the container's IP.
//!
//! Every test makes its own network namespaces (veth pairs created directly inside
//! them) and talks only to addresses inside them, or to the CNI bridge it configures
//! (10.251.N.0/24); guards remove namespaces, bridges, conflists and IPAM state even
//! when a test fails. `ip`/`tc` are used to set up the test networks and to check what
//! is left (`nft` to check NAT rules); urunc itself uses netlink.
//!
//! urunit: `URUNC_URUNIT`, else built statically by this test into
//! `target/urunit/` (what `make build` does).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_harness::bundle::{TestBundle, Urunc};
use test_harness::fixtures::NET_MODULES;
use test_harness::{fixtures, output_text, require_root_and_tools, Containerd};
use urunc::guest_init::Newc;

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &["qemu-system-x86_64", "ip", "tc"];
const WAIT: Duration = Duration::from_secs(20);
/// The container side of every veth pair: not `eth0`, so discovery is exercised.
const UPLINK: &str = "uplink0";
const PAGE: &str = "hello from a unikernel container\n";

fn pid() -> u32 {
    std::process::id()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_cmd(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[track_caller]
fn must(args: &[&str]) -> String {
    let out = run_cmd(args);
    assert!(
        out.status.success(),
        "{args:?} failed\n{}",
        output_text(&out)
    );
    text(&out.stdout)
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", output_text(out));
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("urunc-t{}-{tag}", pid());
        let _ = run_cmd(&["ip", "netns", "del", &name]);
        must(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    #[track_caller]
    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        must(&full)
    }

    /// `nft ARGS` in the namespace; None (after a note) when nft is not installed.
    #[track_caller]
    fn nft(&self, args: &[&str]) -> Option<String> {
        if test_harness::find_tool("nft").is_none() {
            eprintln!("note: nft is not installed; NAT rules not checked");
            return None;
        }
        let mut full = vec!["ip", "netns", "exec", &self.name, "nft"];
        full.extend_from_slice(args);
        Some(must(&full))
    }

    #[track_caller]
    fn tc(&self, args: &[&str]) -> String {
        let mut full = vec!["tc", "-n", &self.name];
        full.extend_from_slice(args);
        must(&full)
    }

    /// Interface names in the namespace.
    fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_cmd(&["ip", "netns", "del", &self.name]);
    }
}

/// The container's namespace and a peer namespace joined by a veth pair: `uplink0`
/// with 10.250.N.2/24 and a default route via the peer's 10.250.N.1.
struct Wire {
    container: Netns,
    peer: Netns,
    net: u8,
}

impl Wire {
    fn new(tag: &str, net: u8) -> Wire {
        let container = Netns::new(&format!("{tag}c"));
        let peer = Netns::new(&format!("{tag}p"));
        must(&[
            "ip",
            "link",
            "add",
            UPLINK,
            "netns",
            &container.name,
            "type",
            "veth",
            "peer",
            "name",
            "peer0",
            "netns",
            &peer.name,
        ]);
        let w = Wire {
            container,
            peer,
            net,
        };
        w.container
            .ip(&["addr", "add", &format!("{}/24", w.addr(2)), "dev", UPLINK]);
        w.container.ip(&["link", "set", UPLINK, "up"]);
        w.container
            .ip(&["route", "add", "default", "via", &w.addr(1)]);
        w.peer
            .ip(&["addr", "add", &format!("{}/24", w.addr(1)), "dev", "peer0"]);
        w.peer.ip(&["link", "set", "peer0", "up"]);
        w
    }

    fn addr(&self, host: u8) -> String {
        format!("10.250.{}.{host}", self.net)
    }

    fn uplink_mac(&self) -> String {
        let out = self.container.ip(&["-o", "link", "show", UPLINK]);
        let after = out.split("link/ether ").nth(1).expect("a MAC address");
        after.split_whitespace().next().unwrap().to_string()
    }

    /// Checks that only `lo` and the uplink are left, with no qdisc or filter of ours.
    #[track_caller]
    fn assert_pristine(&self) {
        let mut links = self.container.links();
        links.sort();
        assert_eq!(links, ["lo", UPLINK], "leftover interfaces");
        let qdiscs = self.container.tc(&["qdisc", "show"]);
        assert!(!qdiscs.contains("ingress"), "leftover qdisc:\n{qdiscs}");
        let filters = self
            .container
            .tc(&["filter", "show", "dev", UPLINK, "ingress"]);
        assert!(filters.trim().is_empty(), "leftover filters:\n{filters}");
        if let Some(rules) = self.container.nft(&["list", "ruleset"]) {
            assert!(rules.trim().is_empty(), "leftover nftables rules:\n{rules}");
        }
    }
}

/// Shared with the other Linux-guest tests.
fn urunit() -> Option<PathBuf> {
    test_harness::fixtures::urunit()
}

fn testkernel() -> Option<PathBuf> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    fixtures::testkernel()
}

/// The Linux guest: kernel, the fixture initrd plus an archive with the virtio-net
/// modules (`/lib/modules/<release>/`, `load-order.txt`) and `/www/index.html`.
fn linux_guest() -> Option<(PathBuf, Vec<u8>, PathBuf)> {
    if !require_root_and_tools(TOOLS) {
        return None;
    }
    let (vmlinux, initrd) = fixtures::linux_guest()?;
    let urunit = urunit()?;
    let mut a = Newc::new();
    fixtures::add_modules(&mut a, NET_MODULES);
    a.dir("www", 0o755)
        .file("www/index.html", PAGE.as_bytes(), 0o644);
    let bytes = fixtures::initrd_with(&initrd, &a.finish());
    Some((vmlinux, bytes, urunit))
}

fn linux_bundle(name: &str, vmlinux: &Path, initrd: &[u8], args: &[&str]) -> TestBundle {
    let mut b = TestBundle::new(name);
    b.link_file("/boot/vmlinux", vmlinux)
        .write_file("/boot/initrd", initrd, 0o644);
    b.unikernel("linux", "/boot/vmlinux", Some("/boot/initrd"))
        .args(args)
        .env(&["PATH=/bin"]);
    b
}

fn testkernel_bundle(name: &str, kernel: &Path, args: &[&str]) -> TestBundle {
    let mut b = TestBundle::new(name);
    b.link_file("/boot/kernel", kernel);
    b.unikernel("unikraft", "/boot/kernel", None)
        .args(args)
        .env(&[]);
    b
}

/// Makes the bundle join a network namespace by path.
fn join_netns(b: &mut TestBundle, path: &Path) {
    let mut ns = b.config()["linux"]["namespaces"].clone();
    ns.as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": path}));
    b.set("/linux/namespaces", ns);
}

/// The `cmdline:` line the test kernel printed.
fn cmdline_line(console: &str) -> String {
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("cmdline: "))
        .unwrap_or_else(|| panic!("no cmdline line in:\n{console}"))
        .to_string()
}

/// The running monitor's argv.
fn monitor_argv(urunc: &Urunc, id: &str) -> Vec<String> {
    let pid = urunc.state_json(id).expect("state")["pid"]
        .as_i64()
        .unwrap();
    let raw = fs::read(format!("/proc/{pid}/cmdline")).expect("monitor cmdline");
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(text)
        .collect()
}

/// One HTTP/1.0 GET, from inside network namespace `netns` (None: this one).
fn http_get(netns: Option<&Path>, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let ns = netns.map(fs::File::open).transpose()?;
    let path = path.to_string();
    thread::spawn(move || {
        if let Some(ns) = ns {
            // Only this short-lived thread moves into the namespace.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        }
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        Ok(reply)
    })
    .join()
    .expect("http thread")
}

/// Polls until the page is served (or `timeout`); returns the reply and how long it took.
fn wait_for_page(netns: Option<&Path>, ip: &str, timeout: Duration) -> (String, Duration) {
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < timeout {
        match http_get(netns, addr, "/index.html") {
            Ok(reply) if reply.contains(PAGE.trim()) => return (reply, t.elapsed()),
            Ok(reply) => last = reply,
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("no page from http://{addr}/index.html within {timeout:?}; last: {last}");
}

#[test]
fn linux_guest_serves_http_to_the_peer_in_dynamic_mode() {
    let Some((vmlinux, initrd, urunit)) = linux_guest() else {
        return;
    };
    let wire = Wire::new("http", 1);
    let mut b = linux_bundle(
        "net-http",
        &vmlinux,
        &initrd,
        &["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
    );
    join_netns(&mut b, &wire.container.path());
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = format!("net-http-{}", pid());
    let t = Instant::now();
    assert_ok(&urunc.create(&b, &id), "create");
    assert_ok(&urunc.start(&id), "start");
    let argv = monitor_argv(&urunc, &id).join(" ");
    assert!(
        argv.contains(&format!("mac={}", wire.uplink_mac())),
        "{argv}"
    );
    assert!(argv.contains("rdinit=/urunit"), "{argv}");
    let (reply, took) = wait_for_page(
        Some(&wire.peer.path()),
        &wire.addr(2),
        Duration::from_secs(60),
    );
    eprintln!(
        "first HTTP reply {took:?} after start ({:?} after create)",
        t.elapsed()
    );
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "{reply}"
    );
    let state_dir = urunc.root().join(&id);
    let recorded: Value =
        serde_json::from_slice(&fs::read(state_dir.join("network.json")).unwrap()).unwrap();
    assert_eq!(recorded["interface"], UPLINK);
    assert_eq!(recorded["address"], wire.addr(2));
    // The interface keeps its address; the traffic goes to the guest.
    assert!(wire
        .container
        .ip(&["-o", "addr", "show", "dev", UPLINK])
        .contains(&wire.addr(2)));
    assert!(
        urunc.console(&id).is_empty(),
        "urunit printed: {}",
        urunc.console(&id)
    );

    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
    wire.assert_pristine();
}

#[test]
fn unikraft_guest_gets_the_interface_address_and_mac() {
    let Some(kernel) = testkernel() else { return };
    let wire = Wire::new("uk", 2);
    let mut b = testkernel_bundle("net-uk", &kernel, &["hello", "wait"]);
    join_netns(&mut b, &wire.container.path());
    // The monitor attaches to the tap as the container's user, who owns it (a uid
    // without a name, so `ip` prints it as a number).
    b.user(4242, 4243);
    let urunc = Urunc::new(URUNC);
    let id = format!("net-uk-{}", pid());
    assert_ok(&urunc.create(&b, &id), "create");
    assert_ok(&urunc.start(&id), "start");
    assert!(
        urunc.wait_console(&id, "waiting", WAIT),
        "{}",
        urunc.console(&id)
    );
    let cmdline = cmdline_line(&urunc.console(&id));
    assert_eq!(
        cmdline,
        "Unikraft netdev.ip=10.250.2.2/24:10.250.2.1:8.8.8.8 -- hello wait"
    );
    let tap = urunc::network::tap_name(&id);
    let argv = monitor_argv(&urunc, &id);
    let netdev = argv.iter().position(|a| a == "-netdev").expect("-netdev");
    assert_eq!(
        argv[netdev + 1],
        format!("tap,id=net0,ifname={tap},script=no,downscript=no")
    );
    assert_eq!(argv[netdev + 2], "-device");
    assert_eq!(
        argv[netdev + 3],
        format!(
            "virtio-net-pci,netdev=net0,mac={},romfile=",
            wire.uplink_mac()
        )
    );
    // The tap is the user's and attached (carrier); both directions are redirected.
    let link = wire.container.ip(&["-d", "-o", "link", "show", &tap]);
    assert!(link.contains("LOWER_UP"), "{link}");
    assert!(link.contains("user 4242 group 4243"), "{link}");
    let f = wire
        .container
        .tc(&["filter", "show", "dev", UPLINK, "ingress"]);
    assert!(
        f.contains(&format!("Egress Redirect to device {tap}")),
        "{f}"
    );
    let f = wire
        .container
        .tc(&["filter", "show", "dev", &tap, "ingress"]);
    assert!(
        f.contains(&format!("Egress Redirect to device {UPLINK}")),
        "{f}"
    );

    // A second container with a network in the namespace is refused, clearly, in
    // either mode; one without network is fine.
    let mut others = Vec::new();
    for (n, mode) in ["dynamic", "static", "none"].into_iter().enumerate() {
        let mut b2 = testkernel_bundle(&format!("net-uk-{mode}"), &kernel, &["wait"]);
        join_netns(&mut b2, &wire.container.path());
        b2.annotation("com.urunc.network.mode", mode);
        let id2 = format!("net-uk{n}-{}", pid());
        assert_ok(&urunc.create(&b2, &id2), "create another");
        let out = urunc.start(&id2);
        if mode == "none" {
            assert_ok(&out, "start without network");
            assert!(urunc.wait_console(&id2, "waiting", WAIT));
            assert_eq!(cmdline_line(&urunc.console(&id2)), "Unikraft -- wait");
        } else {
            assert!(!out.status.success(), "a second {mode} container started");
            let err = text(&out.stderr);
            assert!(
                err.contains(&format!(
                    "the network namespace already has a unikernel container with a \
                     network (tap {tap})"
                )),
                "{err}"
            );
        }
        assert_ok(&urunc.delete_force(&id2), "delete another");
        assert!(
            wire.container.links().contains(&tap),
            "the first container's tap went away"
        );
        others.push((b2, id2));
    }

    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
    for (b2, id2) in &others {
        urunc.assert_clean(b2, id2);
    }
    wire.assert_pristine();
}

#[test]
fn static_mode_gives_the_guest_a_private_address() {
    let Some(kernel) = testkernel() else { return };
    let wire = Wire::new("st", 3);
    let mut b = testkernel_bundle("net-static", &kernel, &["wait"]);
    join_netns(&mut b, &wire.container.path());
    b.annotation("com.urunc.network.mode", "static");
    let urunc = Urunc::new(URUNC);
    let id = format!("net-static-{}", pid());
    assert_ok(&urunc.create(&b, &id), "create");
    assert_ok(&urunc.start(&id), "start");
    assert!(
        urunc.wait_console(&id, "waiting", WAIT),
        "{}",
        urunc.console(&id)
    );
    assert_eq!(
        cmdline_line(&urunc.console(&id)),
        "Unikraft netdev.ip=172.16.1.2/24:172.16.1.1:8.8.8.8 -- wait"
    );
    let tap = urunc::network::tap_name(&id);
    let addr = wire.container.ip(&["-o", "addr", "show", "dev", &tap]);
    assert!(addr.contains("172.16.1.1/24"), "{addr}");
    let qdiscs = wire.container.tc(&["qdisc", "show"]);
    assert!(
        !qdiscs.contains("ingress"),
        "static mode redirects nothing:\n{qdiscs}"
    );
    if let Some(rules) = wire.container.nft(&["list", "table", "ip", &tap]) {
        let want = format!("oifname \"{UPLINK}\" ip saddr 172.16.1.2 masquerade");
        assert!(rules.contains(&want), "{rules}");
    }
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
    wire.assert_pristine();
}

/// Serves one HTTP request on `addr` inside `netns`; returns the client's address.
fn serve_once(netns: PathBuf, addr: SocketAddr, body: &'static str) -> thread::JoinHandle<String> {
    let ns = fs::File::open(netns).expect("peer namespace");
    thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind(addr).expect("bind");
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut req = [0u8; 1024];
                    let _ = s.read(&mut req);
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    return peer.ip().to_string();
                }
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("nobody connected to {addr}: {e}"),
            }
        }
    })
}

#[test]
fn static_mode_guest_reaches_the_peer_through_nat() {
    let Some((vmlinux, initrd, urunit)) = linux_guest() else {
        return;
    };
    let wire = Wire::new("nat", 5);
    let server = serve_once(
        wire.peer.path(),
        format!("{}:8080", wire.addr(1)).parse().unwrap(),
        "urunc-nat-ok\n",
    );
    let url = format!("http://{}:8080/", wire.addr(1));
    let mut b = linux_bundle(
        "net-nat",
        &vmlinux,
        &initrd,
        &["/bin/busybox", "wget", "-q", "-O", "-", &url],
    );
    join_netns(&mut b, &wire.container.path());
    b.annotation("com.urunc.network.mode", "static");
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = format!("net-nat-{}", pid());
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!("static mode: wget through NAT took {:?}", t.elapsed());
    assert_ok(&out, "run");
    assert!(
        text(&out.stdout).contains("urunc-nat-ok"),
        "{}",
        output_text(&out)
    );
    // The peer has no route to 172.16.1.0/24: it saw the interface's address.
    assert_eq!(server.join().unwrap(), wire.addr(2));
    urunc.assert_clean(&b, &id);
    wire.assert_pristine();
}

#[test]
fn without_an_interface_the_guest_has_no_nic() {
    let Some(kernel) = testkernel() else { return };
    let urunc = Urunc::new(URUNC);
    // A network namespace of its own with only `lo`, and none at all (the host's).
    for (name, own_netns) in [("net-none-own", true), ("net-none-host", false)] {
        let mut b = testkernel_bundle(name, &kernel, &["wait"]);
        if own_netns {
            b.network_namespace();
        }
        let id = format!("{name}-{}", pid());
        assert_ok(&urunc.create(&b, &id), "create");
        assert_ok(&urunc.start(&id), "start");
        assert!(
            urunc.wait_console(&id, "waiting", WAIT),
            "{}",
            urunc.console(&id)
        );
        let argv = monitor_argv(&urunc, &id);
        assert!(
            !argv.iter().any(|a| a.contains("netdev") || a == "-nic"),
            "{name}: {argv:?}"
        );
        assert_eq!(cmdline_line(&urunc.console(&id)), "Unikraft -- wait");
        assert!(!urunc.root().join(&id).join("network.json").exists());
        assert_ok(&urunc.delete_force(&id), "delete --force");
        urunc.assert_clean(&b, &id);
    }
}

#[test]
fn the_application_exit_status_is_the_container_exit_status() {
    let Some((vmlinux, initrd, urunit)) = linux_guest() else {
        return;
    };
    let mut b = linux_bundle(
        "net-exit",
        &vmlinux,
        &initrd,
        &["/bin/sh", "-c", "echo bye from $(id -u); exit 7"],
    );
    // The monitor and the application run as the container's user; the monitor can
    // still write the status file.
    b.user(1000, 1000);
    let urunc = Urunc::new(URUNC).env("URUNC_URUNIT", &urunit);
    let id = format!("net-exit-{}", pid());
    let t = Instant::now();
    let out = urunc.run(&b, &id);
    eprintln!(
        "urunc run of the Linux guest exiting 7 took {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert_eq!(lines, ["bye from 1000"], "only the application prints");
    urunc.assert_clean(&b, &id);
}

#[test]
fn fifty_cycles_leave_nothing_behind() {
    let Some(kernel) = testkernel() else { return };
    let wire = Wire::new("cyc", 4);
    let urunc = Urunc::new(URUNC);
    let ids: Vec<String> = (0..50).map(|i| format!("net-cyc{i}-{}", pid())).collect();

    // What a crashed earlier run of the first container would have left: its tap and
    // a redirect to it.
    let stale = urunc::network::tap_name(&ids[0]);
    wire.container
        .ip(&["tuntap", "add", "mode", "tap", "name", &stale]);
    wire.container
        .tc(&["qdisc", "add", "dev", UPLINK, "ingress"]);
    wire.container.tc(&[
        "filter", "add", "dev", UPLINK, "parent", "ffff:", "prio", "30066", "protocol", "all",
        "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", &stale,
    ]);

    let mut b = testkernel_bundle("net-cycles", &kernel, &["wait"]);
    join_netns(&mut b, &wire.container.path());
    let t = Instant::now();
    for id in &ids {
        assert_ok(&urunc.create(&b, id), "create");
        assert_ok(&urunc.start(id), "start");
        assert!(
            urunc.wait_console(id, "waiting", WAIT),
            "{id}: {}",
            urunc.console(id)
        );
        assert_ok(&urunc.delete_force(id), "delete --force");
    }
    eprintln!("50 create/start/boot/delete cycles took {:?}", t.elapsed());
    for id in &ids {
        urunc.assert_clean(&b, id);
    }
    wire.assert_pristine();
    let names = [wire.container.name.clone(), wire.peer.name.clone()];
    drop(wire);
    let left = must(&["ip", "netns", "list"]);
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left:\n{left}");
    }
    let procs = test_harness::pids_with_arg("urunc-net-cyc");
    assert!(procs.is_empty(), "processes left: {procs:?}");
}

/// A CNI network for `ctr run --cni`: conflist, bridge and private IPAM directory, all
/// removed on drop; IPv4 forwarding, which the bridge plugin turns on, is restored.
struct CniNet {
    conflist: PathBuf,
    created_dir: bool,
    bridge: String,
    ipam_dir: PathBuf,
    forward: String,
    subnet: String,
}

const CNI_DIR: &str = "/etc/cni/net.d";
const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl CniNet {
    fn new() -> CniNet {
        let dir = Path::new(CNI_DIR);
        let created_dir = !dir.exists();
        fs::create_dir_all(dir).expect("create /etc/cni/net.d");
        let name = format!("urunc-test-{}", pid());
        // The first conflist by name is the one ctr uses.
        let conflist = dir.join(format!("00-{name}.conflist"));
        let bridge = format!("urtbr{}", pid() % 1_000_000);
        let subnet = format!("10.251.{}", pid() % 250 + 1);
        let ipam_dir = std::env::temp_dir().join(format!("urunc-cni-ipam-{}", pid()));
        let _ = fs::remove_dir_all(&ipam_dir);
        let conf = test_harness::cni::bridge_conflist(
            "1.0.0",
            &name,
            test_harness::cni::bridge_plugin(&bridge, &format!("{subnet}.0/24"), &ipam_dir),
        );
        let forward = fs::read_to_string(FORWARD).unwrap_or_else(|_| "0".into());
        fs::write(&conflist, serde_json::to_string_pretty(&conf).unwrap()).expect("conflist");
        CniNet {
            conflist,
            created_dir,
            bridge,
            ipam_dir,
            forward,
            subnet,
        }
    }
}

impl Drop for CniNet {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.conflist);
        if self.created_dir {
            let _ = fs::remove_dir(CNI_DIR);
            let _ = fs::remove_dir("/etc/cni");
        }
        let _ = run_cmd(&["ip", "link", "del", &self.bridge]);
        let _ = fs::write(FORWARD, self.forward.trim());
        let _ = fs::remove_dir_all(&self.ipam_dir);
    }
}

#[test]
fn ctr_run_cni_linux_guest_answers_from_the_host() {
    if !require_root_and_tools(&[
        "containerd",
        "ctr",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/loopback",
    ]) {
        return;
    }
    let Some((vmlinux, initrd, urunit)) = linux_guest() else {
        return;
    };
    let cni = CniNet::new();
    let containerd = Containerd::builder()
        .env("URUNC_QEMU_ACCEL", "tcg")
        .env("URUNC_URUNIT", urunit.to_str().unwrap())
        .ctr_timeout(Duration::from_secs(90))
        .start()
        .expect("starting containerd");
    let mut image = oci_image::ImageBuilder::new();
    image
        .add_file("/boot/vmlinux", &vmlinux, 0o644)
        .unwrap()
        .add_bytes("/boot/initrd", initrd.clone(), 0o644)
        .unwrap();
    image.cmd(["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    let tar = containerd.dir().join("web.tar");
    image
        .write_oci_archive(&tar, "example.com/urunc/web:1")
        .expect("image archive");
    let name = containerd.import(&tar).expect("import");
    let id = containerd.unique_id("web");
    let flags = [
        "--cni",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        URUNC,
        "--annotation",
        "com.urunc.unikernel.unikernelType=linux",
        "--annotation",
        "com.urunc.unikernel.hypervisor=qemu",
        "--annotation",
        "com.urunc.unikernel.binary=/boot/vmlinux",
        "--annotation",
        "com.urunc.unikernel.initrd=/boot/initrd",
    ];
    let t = Instant::now();
    let (reply, took, out) = thread::scope(|s| {
        let run = s.spawn(|| containerd.run(&flags, &name, &id, &[]));
        // urunc's state directory under the runc shim's root records what the guest got.
        let state = PathBuf::from(format!(
            "/run/containerd/runc/{}/{id}/network.json",
            containerd.namespace()
        ));
        let found = test_harness::bundle::wait_for(Duration::from_secs(60), || {
            state.exists() || run.is_finished()
        });
        assert!(found && state.exists(), "no {state:?}");
        let net: Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
        let ip = net["address"].as_str().unwrap().to_string();
        assert!(ip.starts_with(&format!("{}.", cni.subnet)), "{net}");
        assert_eq!(net["interface"], "eth0");
        let (reply, took) = wait_for_page(None, &ip, Duration::from_secs(60));
        containerd.ctr_ok(&["tasks", "kill", "-s", "KILL", &id]);
        (reply, took, run.join().unwrap())
    });
    eprintln!(
        "ctr run --cni: first HTTP reply after {took:?} (total {:?})",
        t.elapsed()
    );
    assert!(reply.contains(" 200 "), "{reply}");
    assert_eq!(out.status.code(), Some(137), "{}", output_text(&out));
    assert!(
        test_harness::pids_with_arg(&format!("urunc-{id}")).is_empty(),
        "monitor left running"
    );
    // Only the bridge stays (CNI's); no veth of the container is left on it.
    let ports = must(&["ip", "-o", "link", "show", "master", &cni.bridge]);
    assert!(ports.trim().is_empty(), "{ports}");
}
