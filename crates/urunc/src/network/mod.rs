//! The container's network, handed to the guest.
//!
//! A container runtime (CNI under containerd or Kubernetes) configures an interface in
//! the container's network namespace, possibly only after `create` (`ctr run --cni`
//! does it between task create and task start). So `create` only decides, as data, what
//! to do ([`NetPlan`]); the container process, already inside the namespace, applies it
//! when `start` releases it ([`setup`]) and gets the [`NetConfig`] that the guest and
//! monitor argument generation turns into NIC options and guest parameters.
//!
//! Modes ([`NetMode`]; annotation [`MODE_ANNOTATION`], or [`MODE_ENV`] in urunc's
//! environment):
//! - **dynamic** (the default when the namespace has an interface with an IPv4 address):
//!   a tap owned by the container's uid/gid, and everything arriving on the interface
//!   is redirected to the tap and vice versa (ingress qdisc, u32 match-all filter,
//!   `mirred egress redirect`); the guest takes the interface's address, prefix,
//!   gateway, MTU and MAC.
//! - **static**: a tap with the private address [`STATIC_HOST`]/24, the guest gets
//!   [`STATIC_GUEST`]; IPv4 forwarding is enabled in the namespace and the guest's
//!   traffic is masqueraded out of the interface (nftables, [`nat`]).
//! - **none** (the default when there is no configured interface, or the container
//!   shares the host's network namespace): the guest gets no NIC.
//!
//! Tap names are derived from the container id ([`tap_name`]); a leftover with the same
//! name (a crashed earlier run) is removed and made again. [`teardown`] removes the tap,
//! urunc's filters and its NAT table; `delete` runs it inside the namespace when the container joined
//! one by path (a namespace of its own disappears with the monitor, and with it all).

pub mod nat;
mod tap;
pub mod tc;

use std::collections::HashMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use urunit::config::{format_mac, GuestNet};
use urunit::netlink::{Addr, Link, Netlink};

pub use tap::TUN_DEVICE;

pub const MODE_ANNOTATION: &str = "com.urunc.network.mode";
/// In the container's state directory: the [`NetConfig`] the guest got, as JSON.
pub const STATE_FILE: &str = "network.json";
pub const MODE_ENV: &str = "URUNC_NETWORK_MODE";
/// Every tap urunc creates is named `urunc<10 hex digits>`.
pub const TAP_PREFIX: &str = "urunc";
/// Static mode: the tap's address (the guest's gateway) and the guest's address, /24.
pub const STATIC_HOST: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
pub const STATIC_GUEST: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
pub const STATIC_PREFIX: u8 = 24;
const DEFAULT_MTU: u32 = 1500;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// Dynamic when there is an interface, none otherwise.
    #[default]
    Auto,
    Dynamic,
    Static,
    None,
}

impl std::str::FromStr for NetMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(NetMode::Auto),
            "dynamic" => Ok(NetMode::Dynamic),
            "static" => Ok(NetMode::Static),
            "none" => Ok(NetMode::None),
            other => Err(format!(
                "network mode {other:?}: expected auto, dynamic, static or none"
            )),
        }
    }
}

/// What `create` decided; applied by [`setup`] in the container process at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    pub mode: NetMode,
    pub tap: String,
    /// Name servers for the guest (from the container's `/etc/resolv.conf`).
    pub dns: Vec<Ipv4Addr>,
    /// The namespace the container joins by path, where `delete` cleans up. None when
    /// it has a namespace of its own (gone with its last process) or none at all.
    pub netns: Option<PathBuf>,
    /// The tap's owner: the user the monitor runs as.
    pub uid: u32,
    pub gid: u32,
}

/// The guest's network: what guest and monitor argument generation use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    pub mode: NetMode,
    /// The tap the monitor's NIC attaches to.
    pub tap: String,
    /// The guest NIC's MAC, `aa:bb:cc:dd:ee:ff` (dynamic: the interface's).
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
    pub dns: Vec<Ipv4Addr>,
    /// The container interface whose traffic the guest takes over (or NATs through).
    pub interface: Option<String>,
}

impl NetConfig {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(urunit::netlink::prefix_mask(self.prefix))
    }

    /// The same, as urunit's configuration wants it.
    pub fn guest(&self) -> GuestNet {
        GuestNet {
            mac: self.mac.clone(),
            address: self.address,
            prefix: self.prefix,
            gateway: self.gateway,
            mtu: Some(self.mtu),
            dns: self.dns.clone(),
        }
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The tap of container `id`: `urunc` and 40 bits of a hash of the id (15 characters,
/// the longest interface name Linux allows).
pub fn tap_name(id: &str) -> String {
    format!("{TAP_PREFIX}{:010x}", fnv1a(id.as_bytes()) >> 24)
}

/// A locally administered unicast MAC derived from the tap name (static mode).
pub fn derived_mac(tap: &str) -> String {
    let h = fnv1a(tap.as_bytes()).to_be_bytes();
    format_mac(&[0x02, h[0], h[1], h[2], h[3], h[4]])
}

/// The mode asked for: the annotation wins over urunc's environment.
pub fn requested_mode(
    annotations: &HashMap<String, String>,
    env: Option<&str>,
) -> Result<NetMode, String> {
    match annotations.get(MODE_ANNOTATION) {
        Some(v) => v.parse().map_err(|e| format!("{MODE_ANNOTATION}: {e}")),
        None => env
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("{MODE_ENV}: {e}")),
    }
}

/// IPv4 name servers from `resolv.conf` text (loopback ones are useless to a guest).
pub fn parse_resolv_conf(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .take(3)
        .collect()
}

/// The container's network namespace, as the spec has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netns {
    /// No network namespace: the host's.
    Host,
    /// A new one, made by urunc with the container process.
    New,
    Joined(PathBuf),
}

/// True when `path` is urunc's own network namespace (joining it means the host's).
fn is_own_netns(path: &Path) -> bool {
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (id(path), id(Path::new("/proc/self/ns/net"))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Decides at `create`. The host's network namespace is never touched: there the
/// default is no network and asking for one is an error.
pub fn plan(
    id: &str,
    netns: Netns,
    mode: NetMode,
    dns: Vec<Ipv4Addr>,
    uid: u32,
    gid: u32,
) -> Result<NetPlan, String> {
    let netns = match netns {
        Netns::Joined(p) if is_own_netns(&p) => Netns::Host,
        other => other,
    };
    let mode = match (&netns, mode) {
        (Netns::Host, NetMode::Auto | NetMode::None) => NetMode::None,
        (Netns::Host, m) => {
            return Err(format!(
                "network mode {m:?} needs the container to have its own network namespace \
                 (it would take over the host's interface)"
            ))
        }
        (_, m) => m,
    };
    Ok(NetPlan {
        mode,
        tap: tap_name(id),
        dns,
        netns: match netns {
            Netns::Joined(p) => Some(p),
            _ => None,
        },
        uid,
        gid,
    })
}

/// The interface the guest takes over.
#[derive(Clone, Debug)]
struct Iface {
    link: Link,
    addr: Addr,
    gateway: Option<Ipv4Addr>,
}

fn is_urunc_tap(l: &Link) -> bool {
    l.name.starts_with(TAP_PREFIX) && l.kind.as_deref() == Some("tun")
}

/// The interface with the default route, else the only non-loopback one with an IPv4
/// address; none when there is no such interface.
fn discover(nl: &mut Netlink) -> Result<Option<Iface>, String> {
    let links = nl.links().map_err(|e| format!("list links: {e}"))?;
    let addrs = nl
        .ipv4_addrs()
        .map_err(|e| format!("list addresses: {e}"))?;
    let routes = nl.ipv4_routes().map_err(|e| format!("list routes: {e}"))?;
    let candidates: Vec<Iface> = links
        .iter()
        .filter(|l| !l.is_loopback() && !is_urunc_tap(l))
        .filter_map(|l| {
            let addr = addrs.iter().find(|a| a.index == l.index)?;
            Some(Iface {
                link: l.clone(),
                addr: *addr,
                gateway: None,
            })
        })
        .collect();
    for r in routes.iter().filter(|r| r.is_default()) {
        if let Some(mut i) = candidates
            .iter()
            .find(|c| Some(c.link.index) == r.oif)
            .cloned()
        {
            i.gateway = r.gateway;
            return Ok(Some(i));
        }
    }
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.into_iter().next()),
        _ => Err(format!(
            "the network namespace has several interfaces with IPv4 addresses ({}) and no \
             default route to choose one",
            candidates
                .iter()
                .map(|c| c.link.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Applies the plan in the current network namespace (the container process calls it
/// at start, before executing the monitor). `Ok(None)`: the guest gets no NIC.
pub fn setup(p: &NetPlan) -> Result<Option<NetConfig>, String> {
    if p.mode == NetMode::None {
        return Ok(None);
    }
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    if p.mode == NetMode::Auto
        && nl
            .links()
            .map_err(|e| format!("list links: {e}"))?
            .iter()
            .all(|l| l.is_loopback())
    {
        // A namespace with only its loopback (no network configured, the usual case
        // of a container without one): nothing to use, and nothing a crashed run could
        // have left, since setup adds taps and redirects only beside an interface.
        return Ok(None);
    }
    // A tap of the same name is a leftover of a crashed run of this container.
    let nat = p.mode == NetMode::Static;
    teardown_with(&mut nl, &p.tap, nat)?;
    let iface = discover(&mut nl)?;
    match (p.mode, &iface) {
        (NetMode::Auto | NetMode::None, None) | (NetMode::None, Some(_)) => return Ok(None),
        (NetMode::Dynamic, None) => {
            return Err(
                "network mode dynamic: the container's network namespace has no interface \
                 with an IPv4 address"
                    .into(),
            )
        }
        _ => claim_namespace(&mut nl, &p.tap)?,
    }
    let result = match (p.mode, iface) {
        (NetMode::Static, iface) => setup_static(&mut nl, p, iface),
        (_, Some(iface)) => setup_dynamic(&mut nl, p, iface),
        (_, None) => unreachable!("handled above"),
    };
    if result.is_err() {
        let _ = teardown_with(&mut nl, &p.tap, nat);
    }
    result.map(Some)
}

/// One unikernel container with a network per namespace: the dynamic mode takes all of
/// the interface's traffic, so a second container, dynamic or static (whose NAT replies
/// arrive on that interface too), could not work. Another container's tap that a
/// monitor holds open (carrier) is an error; one nobody holds is a crash leftover and
/// is removed with its redirects and NAT table.
fn claim_namespace(nl: &mut Netlink, ours: &str) -> Result<(), String> {
    let links = nl.links().map_err(|e| format!("list links: {e}"))?;
    let addrs = nl
        .ipv4_addrs()
        .map_err(|e| format!("list addresses: {e}"))?;
    for other in links.iter().filter(|l| is_urunc_tap(l) && l.name != ours) {
        if other.has_carrier() {
            return Err(format!(
                "the network namespace already has a unikernel container with a network \
                 (tap {}); only one per namespace can have one (set {MODE_ANNOTATION}=none \
                 for the others)",
                other.name
            ));
        }
        let was_static = addrs
            .iter()
            .any(|a| a.index == other.index && a.address == STATIC_HOST);
        teardown_with(nl, &other.name, was_static)?;
    }
    Ok(())
}

fn make_tap(nl: &mut Netlink, p: &NetPlan, mtu: u32) -> Result<Link, String> {
    tap::create(&p.tap, p.uid, p.gid).map_err(|e| format!("create tap {}: {e}", p.tap))?;
    let link = nl
        .link_by_name(&p.tap)
        .map_err(|e| format!("list links: {e}"))?
        .ok_or_else(|| format!("tap {} vanished after creation", p.tap))?;
    nl.set_link(link.index, true, Some(mtu))
        .map_err(|e| format!("bring {} up with MTU {mtu}: {e}", p.tap))?;
    Ok(link)
}

fn setup_dynamic(nl: &mut Netlink, p: &NetPlan, iface: Iface) -> Result<NetConfig, String> {
    let name = iface.link.name.clone();
    let mac = iface.link.mac.ok_or_else(|| {
        format!("interface {name} has no MAC address; dynamic mode needs an Ethernet interface")
    })?;
    // Any redirect of urunc's left on the interface now is stale (see claim_namespace).
    let filters =
        tc::ingress_filters(nl, iface.link.index).map_err(|e| format!("list filters: {e}"))?;
    if filters.iter().any(|f| f.prio == tc::PRIO) {
        tc::del_filters(nl, iface.link.index, tc::PRIO)
            .map_err(|e| format!("remove a stale redirect on {name}: {e}"))?;
    }
    let mtu = if iface.link.mtu > 0 {
        iface.link.mtu
    } else {
        DEFAULT_MTU
    };
    let tap = make_tap(nl, p, mtu)?;
    nl.set_link(iface.link.index, true, None)
        .map_err(|e| format!("bring {name} up: {e}"))?;
    let redirect = |nl: &mut Netlink, from: &Link, to: &Link| {
        tc::add_ingress_qdisc(nl, from.index)
            .map_err(|e| format!("add an ingress qdisc to {}: {e}", from.name))?;
        tc::add_redirect(nl, from.index, to.index)
            .map_err(|e| format!("redirect {} to {}: {e}", from.name, to.name))
    };
    redirect(nl, &iface.link, &tap)?;
    redirect(nl, &tap, &iface.link)?;
    Ok(NetConfig {
        mode: NetMode::Dynamic,
        tap: p.tap.clone(),
        mac: format_mac(&mac),
        address: iface.addr.address,
        prefix: iface.addr.prefix,
        gateway: iface.gateway,
        mtu,
        dns: p.dns.clone(),
        interface: Some(name),
    })
}

fn setup_static(nl: &mut Netlink, p: &NetPlan, iface: Option<Iface>) -> Result<NetConfig, String> {
    let mtu = iface
        .as_ref()
        .map(|i| i.link.mtu)
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_MTU);
    let tap = make_tap(nl, p, mtu)?;
    nl.add_ipv4_addr(tap.index, STATIC_HOST, STATIC_PREFIX)
        .map_err(|e| format!("add {STATIC_HOST}/{STATIC_PREFIX} to {}: {e}", p.tap))?;
    // Per network namespace.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
        .map_err(|e| format!("enable IPv4 forwarding: {e}"))?;
    if let Some(i) = &iface {
        nat::add_masquerade(&p.tap, &i.link.name, STATIC_GUEST).map_err(|e| {
            format!(
                "masquerade {STATIC_GUEST} out of {} (nftables): {e}",
                i.link.name
            )
        })?;
    }
    Ok(NetConfig {
        mode: NetMode::Static,
        tap: p.tap.clone(),
        mac: derived_mac(&p.tap),
        address: STATIC_GUEST,
        prefix: STATIC_PREFIX,
        gateway: Some(STATIC_HOST),
        mtu,
        dns: p.dns.clone(),
        interface: iface.map(|i| i.link.name),
    })
}

/// Removes tap `tap` and urunc's redirects to it (or to links that no longer exist)
/// from the current network namespace, and with `nat` (static mode) its NAT table.
/// Nothing there is fine.
pub fn teardown(tap: &str, nat: bool) -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    teardown_with(&mut nl, tap, nat)
}

fn teardown_with(nl: &mut Netlink, tap: &str, nat: bool) -> Result<(), String> {
    if nat {
        // Only for static mode: talking to nf_tables may load its module.
        nat::delete_table(tap).map_err(|e| format!("remove NAT table {tap}: {e}"))?;
    }
    let links = nl.links().map_err(|e| format!("list links: {e}"))?;
    let ours = links.iter().find(|l| l.name == tap).map(|l| l.index);
    for l in links.iter().filter(|l| Some(l.index) != ours) {
        let Ok(filters) = tc::ingress_filters(nl, l.index) else {
            continue;
        };
        if filters.is_empty() {
            // A setup killed between adding the qdisc and its redirect leaves an ingress
            // qdisc without filters, which does nothing: remove it (none there: an
            // error, ignored).
            let _ = tc::del_ingress_qdisc(nl, l.index);
            continue;
        }
        let stale = filters.iter().any(|f| {
            f.prio == tc::PRIO
                && match f.redirect_to {
                    Some(t) => Some(t) == ours || !links.iter().any(|x| x.index == t),
                    None => true,
                }
        });
        if !stale {
            continue;
        }
        tc::del_filters(nl, l.index, tc::PRIO)
            .map_err(|e| format!("remove the redirect on {}: {e}", l.name))?;
        if tc::ingress_filters(nl, l.index).is_ok_and(|f| f.is_empty()) {
            tc::del_ingress_qdisc(nl, l.index)
                .map_err(|e| format!("remove the ingress qdisc of {}: {e}", l.name))?;
        }
    }
    if let Some(index) = ours {
        match nl.del_link(index) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                return Err(format!("delete tap {tap}: {e}"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `delete`'s cleanup: [`teardown`] inside the namespace the container joined by path.
/// Runs on a thread of its own, since joining a network namespace is per thread.
pub fn teardown_plan(p: &NetPlan) -> Result<(), String> {
    let Some(path) = p.netns.clone() else {
        return Ok(());
    };
    if p.mode == NetMode::None || is_own_netns(&path) {
        return Ok(());
    }
    let ns = match File::open(&path) {
        Ok(f) => f,
        // The namespace is gone, and everything in it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("open network namespace {path:?}: {e}")),
    };
    let tap = p.tap.clone();
    let nat = p.mode == NetMode::Static;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join network namespace {path:?}: {e}"))?;
        teardown(&tap, nat)
    })
    .join()
    .unwrap_or_else(|_| Err("network cleanup panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_unique_short_and_stable() {
        let a = tap_name("web-1");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with(TAP_PREFIX));
        assert_eq!(a, tap_name("web-1"));
        assert_ne!(a, tap_name("web-2"));
        let mac = derived_mac(&a);
        assert!(mac.starts_with("02:"), "{mac}");
        assert_eq!(urunit::config::parse_mac(&mac).map(|m| m[0]), Some(2));
    }

    #[test]
    fn modes_from_annotation_and_environment() {
        let mut a = HashMap::new();
        assert_eq!(requested_mode(&a, None), Ok(NetMode::Auto));
        assert_eq!(requested_mode(&a, Some("static")), Ok(NetMode::Static));
        a.insert(MODE_ANNOTATION.to_string(), "None".to_string());
        assert_eq!(requested_mode(&a, Some("static")), Ok(NetMode::None));
        a.insert(MODE_ANNOTATION.to_string(), "bridge".to_string());
        assert!(requested_mode(&a, None)
            .unwrap_err()
            .contains(MODE_ANNOTATION));
    }

    #[test]
    fn the_host_namespace_is_never_taken_over() {
        let p = plan("c", Netns::Host, NetMode::Auto, vec![], 0, 0).unwrap();
        assert_eq!(p.mode, NetMode::None);
        let e = plan("c", Netns::Host, NetMode::Dynamic, vec![], 0, 0).unwrap_err();
        assert!(e.contains("own network namespace"), "{e}");
        // Joining urunc's own namespace by path is the host's too.
        let own = Netns::Joined("/proc/self/ns/net".into());
        assert_eq!(
            plan("c", own, NetMode::Auto, vec![], 0, 0).unwrap().mode,
            NetMode::None
        );
        let p = plan("c", Netns::New, NetMode::Auto, vec![], 5, 6).unwrap();
        assert_eq!((p.mode, p.netns, p.uid, p.gid), (NetMode::Auto, None, 5, 6));
    }

    #[test]
    fn resolv_conf() {
        let text = "# x\nnameserver 127.0.0.53\nnameserver 10.0.0.53\nsearch x\nnameserver ::1\nnameserver 1.1.1.1\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }

    #[test]
    fn netmask_and_guest_view() {
        let c = NetConfig {
            mode: NetMode::Dynamic,
            tap: "urunc0".into(),
            mac: "02:00:00:00:00:01".into(),
            address: Ipv4Addr::new(10, 1, 2, 3),
            prefix: 20,
            gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
            mtu: 1450,
            dns: vec![],
            interface: Some("eth0".into()),
        };
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 240, 0));
        let g = c.guest();
        assert_eq!(
            (g.prefix, g.mtu, g.mac.as_str()),
            (20, Some(1450), "02:00:00:00:00:01")
        );
    }
}
