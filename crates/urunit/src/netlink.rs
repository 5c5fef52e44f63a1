//! A small synchronous rtnetlink client over a raw `NETLINK_ROUTE` socket: enough for
//! listing links, IPv4 addresses and routes, configuring an interface, and sending any
//! other request built with [`Attrs`] (urunc builds its traffic-control requests that
//! way). It works in whichever network namespace the calling thread is in when
//! [`Netlink::open`] runs.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWQDISC: u16 = 36;
pub const RTM_DELQDISC: u16 = 37;
pub const RTM_GETQDISC: u16 = 38;
pub const RTM_NEWTFILTER: u16 = 44;
pub const RTM_DELTFILTER: u16 = 45;
pub const RTM_GETTFILTER: u16 = 46;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const HDR_LEN: usize = 16;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;

pub const IFF_UP: u32 = 0x1;
pub const IFF_LOOPBACK: u32 = 0x8;
/// The driver reports carrier (for a tap: a process has it open).
pub const IFF_LOWER_UP: u32 = 0x10000;
pub const RT_TABLE_MAIN: u8 = 254;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Netlink attributes being built: `type`, length, value, padded to 4 bytes.
#[derive(Clone, Debug, Default)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    pub fn put(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    pub fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string, as the kernel expects for names and kinds.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(ty, &v)
    }

    /// An attribute holding the attributes `f` adds.
    pub fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        f(&mut inner);
        self.put(ty | NLA_F_NESTED, &inner.0)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Iterates over the attributes in `buf` as `(type without flags, value)`.
pub fn parse_attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let value = &rest[4..len];
        rest = &rest[align4(len).min(rest.len())..];
        Some((ty, value))
    })
}

/// The value of the first attribute of type `ty`.
pub fn find_attr(buf: &[u8], ty: u16) -> Option<&[u8]> {
    parse_attrs(buf).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

pub fn attr_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

pub fn attr_str(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn attr_ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// `struct ifinfomsg`.
pub fn ifinfomsg(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg` for IPv4.
fn ifaddrmsg(index: u32, prefix: u8) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b[0] = libc::AF_INET as u8;
    b[1] = prefix;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// `struct rtmsg` for IPv4.
fn rtmsg(dst_len: u8, scope: u8) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0] = libc::AF_INET as u8;
    b[1] = dst_len;
    b[4] = RT_TABLE_MAIN;
    b[5] = 3; // RTPROT_BOOT
    b[6] = scope;
    b[7] = 1; // RTN_UNICAST
    b
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub flags: u32,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    /// `IFLA_INFO_KIND`: `tun`, `veth`, `bridge`, ... (none for physical devices).
    pub kind: Option<String>,
}

impl Link {
    pub fn is_loopback(&self) -> bool {
        self.flags & IFF_LOOPBACK != 0
    }
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub dst_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub table: u32,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst_len == 0 && self.table == RT_TABLE_MAIN as u32
    }
}

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// A `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        Self::open_protocol(libc::NETLINK_ROUTE)
    }

    /// A socket of another netlink family (e.g. `NETLINK_NETFILTER`).
    pub fn open_protocol(protocol: libc::c_int) -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; nl_pid 0 lets the kernel choose.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sa is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Appends one message to `buf` and returns its sequence number.
    fn encode(&mut self, buf: &mut Vec<u8>, ty: u16, flags: u16, body: &[u8]) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        buf.extend_from_slice(&((HDR_LEN + body.len()) as u32).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&self.seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(body);
        buf.resize(align4(buf.len()), 0);
        self.seq
    }

    fn send_buf(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: buf is a valid buffer of buf.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn send(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<u32> {
        let mut msg = Vec::with_capacity(HDR_LEN + body.len());
        let seq = self.encode(&mut msg, ty, flags, body);
        self.send_buf(&msg)?;
        Ok(seq)
    }

    /// Sends `(type, flags, body)` messages in one datagram (as nfnetlink batches must
    /// be) and waits for the answer to each one sent with `NLM_F_ACK`; the first error
    /// is returned.
    pub fn request_all(&mut self, msgs: &[(u16, u16, Vec<u8>)]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut pending = Vec::new();
        for (ty, flags, body) in msgs {
            let seq = self.encode(&mut buf, *ty, *flags, body);
            if flags & NLM_F_ACK != 0 {
                pending.push(seq);
            }
        }
        self.send_buf(&buf)?;
        self.receive_all(&pending, |_, _| {})
    }

    /// Receives messages answering any of `seqs`; calls `each(type, payload)` for every
    /// one that is neither an error nor DONE. An ACK (or DONE, for dumps) settles its
    /// sequence number; returns when all are settled, or at the first error.
    fn receive_all(&mut self, seqs: &[u32], mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut pending = seqs.to_vec();
        let mut buf = vec![0u8; 1 << 16];
        while !pending.is_empty() {
            // SAFETY: buf is a valid writable buffer of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > buf.len() {
                // A dump part larger than our buffer: retry with a larger one is not
                // possible (the part is gone), so report it.
                return Err(io::Error::other("netlink message truncated"));
            }
            let mut rest = &buf[..n];
            while rest.len() >= HDR_LEN {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                let mseq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if len < HDR_LEN || len > rest.len() {
                    return Err(io::Error::other("malformed netlink message"));
                }
                let payload = &rest[HDR_LEN..len];
                rest = &rest[align4(len).min(rest.len())..];
                if !pending.contains(&mseq) {
                    continue;
                }
                match ty {
                    NLMSG_DONE => pending.retain(|s| *s != mseq),
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(
                            payload
                                .get(..4)
                                .ok_or_else(|| io::Error::other("short netlink error"))?
                                .try_into()
                                .unwrap(),
                        );
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        pending.retain(|s| *s != mseq);
                    }
                    _ => each(ty, payload),
                }
            }
        }
        Ok(())
    }

    fn receive(&mut self, seq: u32, each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        self.receive_all(&[seq], each)
    }

    /// Sends a request (`NLM_F_ACK` is added) and waits for the kernel's answer.
    pub fn request(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        let seq = self.send(ty, flags | NLM_F_ACK, body)?;
        self.receive(seq, |_, _| {})
    }

    /// Sends a dump request and returns the payload of every message of the answer.
    pub fn dump(&mut self, ty: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(ty, NLM_F_DUMP, body)?;
        let mut out = Vec::new();
        self.receive(seq, |_, p| out.push(p.to_vec()))?;
        Ok(out)
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut links = Vec::new();
        for p in self.dump(RTM_GETLINK, &ifinfomsg(0, 0, 0))? {
            if p.len() < 16 {
                continue;
            }
            let index = i32::from_ne_bytes(p[4..8].try_into().unwrap()) as u32;
            let flags = u32::from_ne_bytes(p[8..12].try_into().unwrap());
            let attrs = &p[16..];
            let mac = find_attr(attrs, IFLA_ADDRESS)
                .filter(|v| v.len() == 6)
                .map(|v| v.try_into().unwrap());
            let kind = find_attr(attrs, IFLA_LINKINFO)
                .and_then(|info| find_attr(info, IFLA_INFO_KIND))
                .map(attr_str);
            links.push(Link {
                index,
                name: find_attr(attrs, IFLA_IFNAME)
                    .map(attr_str)
                    .unwrap_or_default(),
                flags,
                mtu: find_attr(attrs, IFLA_MTU).and_then(attr_u32).unwrap_or(0),
                mac,
                kind,
            });
        }
        Ok(links)
    }

    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    pub fn ipv4_addrs(&mut self) -> io::Result<Vec<Addr>> {
        let mut addrs = Vec::new();
        for p in self.dump(RTM_GETADDR, &ifaddrmsg(0, 0))? {
            if p.len() < 8 || p[0] != libc::AF_INET as u8 {
                continue;
            }
            let attrs = &p[8..];
            let address = find_attr(attrs, IFA_LOCAL)
                .or_else(|| find_attr(attrs, IFA_ADDRESS))
                .and_then(attr_ipv4);
            if let Some(address) = address {
                addrs.push(Addr {
                    index: u32::from_ne_bytes(p[4..8].try_into().unwrap()),
                    address,
                    prefix: p[1],
                });
            }
        }
        Ok(addrs)
    }

    pub fn ipv4_routes(&mut self) -> io::Result<Vec<Route>> {
        let mut routes = Vec::new();
        for p in self.dump(RTM_GETROUTE, &rtmsg(0, 0))? {
            if p.len() < 12 || p[0] != libc::AF_INET as u8 {
                continue;
            }
            let attrs = &p[12..];
            routes.push(Route {
                dst: find_attr(attrs, RTA_DST)
                    .and_then(attr_ipv4)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                dst_len: p[1],
                gateway: find_attr(attrs, RTA_GATEWAY).and_then(attr_ipv4),
                oif: find_attr(attrs, RTA_OIF).and_then(attr_u32),
                table: find_attr(attrs, RTA_TABLE)
                    .and_then(attr_u32)
                    .unwrap_or(p[4] as u32),
            });
        }
        Ok(routes)
    }

    /// Brings a link up (or down) and optionally sets its MTU.
    pub fn set_link(&mut self, index: u32, up: bool, mtu: Option<u32>) -> io::Result<()> {
        let mut body = ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP);
        let mut attrs = Attrs::new();
        if let Some(mtu) = mtu {
            attrs.put_u32(IFLA_MTU, mtu);
        }
        body.extend_from_slice(attrs.bytes());
        self.request(RTM_NEWLINK, 0, &body)
    }

    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        self.request(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0))
    }

    /// Adds `address/prefix` to a link (replacing the same address if present).
    pub fn add_ipv4_addr(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut body = ifaddrmsg(index, prefix);
        let mut attrs = Attrs::new();
        attrs
            .put(IFA_LOCAL, &address.octets())
            .put(IFA_ADDRESS, &address.octets());
        body.extend_from_slice(attrs.bytes());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &body)
    }

    /// Adds (or replaces) a route in the main table: via `gateway` when given,
    /// otherwise directly on the link (scope link).
    pub fn add_ipv4_route(
        &mut self,
        dst: Ipv4Addr,
        dst_len: u8,
        gateway: Option<Ipv4Addr>,
        oif: u32,
    ) -> io::Result<()> {
        let scope = if gateway.is_some() { 0 } else { 253 }; // universe / link
        let mut body = rtmsg(dst_len, scope);
        let mut attrs = Attrs::new();
        if dst_len > 0 {
            attrs.put(RTA_DST, &dst.octets());
        }
        if let Some(gw) = gateway {
            attrs.put(RTA_GATEWAY, &gw.octets());
        }
        attrs.put_u32(RTA_OIF, oif);
        body.extend_from_slice(attrs.bytes());
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &body)
    }
}

/// The network part of `address/prefix`.
pub fn network_of(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(address) & prefix_mask(prefix))
}

/// The netmask of a prefix length, as a host-order number.
pub fn prefix_mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut a = Attrs::new();
        a.put_str(3, "eth0").put_u32(4, 1500).nested(18, |i| {
            i.put_str(1, "veth");
        });
        let parsed: Vec<(u16, Vec<u8>)> = parse_attrs(a.bytes())
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(attr_str(&parsed[0].1), "eth0");
        assert_eq!(attr_u32(&parsed[1].1), Some(1500));
        assert_eq!(parsed[2].0, 18, "the nested flag is masked off");
        assert_eq!(
            find_attr(&parsed[2].1, 1).map(attr_str).as_deref(),
            Some("veth")
        );
        assert_eq!(a.bytes().len() % 4, 0);
    }

    #[test]
    fn truncated_attributes_stop_the_iterator() {
        assert_eq!(parse_attrs(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(parse_attrs(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(32), u32::MAX);
        assert_eq!(
            network_of(Ipv4Addr::new(10, 1, 2, 3), 16),
            Ipv4Addr::new(10, 1, 0, 0)
        );
    }

    #[test]
    fn lists_the_loopback_link() {
        // Every network namespace has `lo`; this needs no privileges.
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        assert!(links.iter().any(|l| l.is_loopback()), "{links:?}");
    }
}
