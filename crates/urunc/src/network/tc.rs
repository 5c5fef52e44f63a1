//! Traffic control over rtnetlink: the ingress qdisc and a u32 match-all filter whose
//! `mirred egress redirect` action sends every frame arriving on one link out of
//! another, i.e. `tc qdisc add dev A ingress` and
//! `tc filter add dev A parent ffff: prio P protocol all u32 match u32 0 0
//! action mirred egress redirect dev B`.

use std::io;

use urunit::netlink::{
    attr_str, find_attr, parse_attrs, Attrs, Netlink, NLM_F_CREATE, NLM_F_EXCL, RTM_DELQDISC,
    RTM_DELTFILTER, RTM_GETTFILTER, RTM_NEWQDISC, RTM_NEWTFILTER,
};

/// The priority of urunc's filters, which tells them apart from anyone else's.
pub const PRIO: u16 = 0x7572; // "ur"

const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
/// The ingress qdisc's handle `ffff:`, the parent of its filters.
const INGRESS_HANDLE: u32 = 0xFFFF_0000;
const ETH_P_ALL: u16 = 0x0003;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_U32_TERMINAL: u8 = 1;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;

/// `struct tcmsg`.
fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut b = vec![0u8; 20];
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&handle.to_ne_bytes());
    b[12..16].copy_from_slice(&parent.to_ne_bytes());
    b[16..20].copy_from_slice(&info.to_ne_bytes());
    b
}

fn filter_info(prio: u16) -> u32 {
    ((prio as u32) << 16) | ETH_P_ALL.to_be() as u32
}

/// Adds the ingress qdisc to a link; an existing one is kept.
pub fn add_ingress_qdisc(nl: &mut Netlink, ifindex: u32) -> io::Result<()> {
    let mut body = tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0);
    body.extend_from_slice(Attrs::new().put_str(TCA_KIND, "ingress").bytes());
    match nl.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &body) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

pub fn del_ingress_qdisc(nl: &mut Netlink, ifindex: u32) -> io::Result<()> {
    nl.request(
        RTM_DELQDISC,
        0,
        &tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS, 0),
    )
}

/// The u32 selector matching every packet: one key, mask 0, value 0, at offset 0.
fn match_all_selector() -> Vec<u8> {
    // struct tc_u32_sel (16 bytes) followed by one struct tc_u32_key (16 bytes).
    let mut sel = vec![0u8; 32];
    sel[0] = TC_U32_TERMINAL; // flags
    sel[2] = 1; // nkeys
    sel
}

/// `struct tc_mirred`: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex.
fn mirred_parms(target: u32) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[8..12].copy_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
    p[20..24].copy_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
    p[24..28].copy_from_slice(&target.to_ne_bytes());
    p
}

/// The body of the request adding the redirect filter (pure, for tests).
pub fn redirect_request(from: u32, to: u32) -> Vec<u8> {
    let mut body = tcmsg(from, 0, INGRESS_HANDLE, filter_info(PRIO));
    let mut attrs = Attrs::new();
    attrs.put_str(TCA_KIND, "u32").nested(TCA_OPTIONS, |o| {
        o.put(TCA_U32_SEL, &match_all_selector())
            .nested(TCA_U32_ACT, |acts| {
                acts.nested(1, |a| {
                    a.put_str(TCA_ACT_KIND, "mirred")
                        .nested(TCA_ACT_OPTIONS, |m| {
                            m.put(TCA_MIRRED_PARMS, &mirred_parms(to));
                        });
                });
            });
    });
    body.extend_from_slice(attrs.bytes());
    body
}

/// Redirects everything arriving on `from` out of `to` (the ingress qdisc on `from`
/// must exist).
pub fn add_redirect(nl: &mut Netlink, from: u32, to: u32) -> io::Result<()> {
    nl.request(
        RTM_NEWTFILTER,
        NLM_F_CREATE | NLM_F_EXCL,
        &redirect_request(from, to),
    )
}

/// One filter on a link's ingress qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub prio: u16,
    /// Where its mirred action sends packets, if it has one.
    pub redirect_to: Option<u32>,
}

/// The mirred target in a filter message's attributes, if any.
fn mirred_target(attrs: &[u8]) -> Option<u32> {
    if find_attr(attrs, TCA_KIND).map(attr_str).as_deref() != Some("u32") {
        return None;
    }
    let acts = find_attr(find_attr(attrs, TCA_OPTIONS)?, TCA_U32_ACT)?;
    parse_attrs(acts).find_map(|(_, act)| {
        if find_attr(act, TCA_ACT_KIND).map(attr_str).as_deref() != Some("mirred") {
            return None;
        }
        let parms = find_attr(find_attr(act, TCA_ACT_OPTIONS)?, TCA_MIRRED_PARMS)?;
        Some(u32::from_ne_bytes(parms.get(24..28)?.try_into().ok()?))
    })
}

/// The filters on a link's ingress qdisc (none when it has no ingress qdisc).
pub fn ingress_filters(nl: &mut Netlink, ifindex: u32) -> io::Result<Vec<Filter>> {
    let msgs = match nl.dump(RTM_GETTFILTER, &tcmsg(ifindex, 0, INGRESS_HANDLE, 0)) {
        Ok(m) => m,
        // No ingress qdisc on this link.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut out: Vec<Filter> = Vec::new();
    for m in msgs {
        if m.len() < 20 {
            continue;
        }
        let info = u32::from_ne_bytes(m[16..20].try_into().unwrap());
        let prio = (info >> 16) as u16;
        let target = mirred_target(&m[20..]);
        // u32 also reports its hash table nodes: one entry per priority is enough.
        match out.iter_mut().find(|f| f.prio == prio) {
            Some(f) => f.redirect_to = f.redirect_to.or(target),
            None => out.push(Filter {
                prio,
                redirect_to: target,
            }),
        }
    }
    Ok(out)
}

/// Deletes every filter of priority `prio` on a link's ingress qdisc.
pub fn del_filters(nl: &mut Netlink, ifindex: u32, prio: u16) -> io::Result<()> {
    nl.request(
        RTM_DELTFILTER,
        0,
        &tcmsg(ifindex, 0, INGRESS_HANDLE, filter_info(prio)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_request_parses_back() {
        let body = redirect_request(7, 42);
        assert_eq!(&body[4..8], &7i32.to_ne_bytes());
        assert_eq!(
            u32::from_ne_bytes(body[12..16].try_into().unwrap()),
            0xFFFF_0000
        );
        let info = u32::from_ne_bytes(body[16..20].try_into().unwrap());
        assert_eq!(info >> 16, PRIO as u32);
        // protocol "all" in network byte order
        assert_eq!((info & 0xffff) as u16, ETH_P_ALL.to_be());
        assert_eq!(mirred_target(&body[20..]), Some(42));
        let opts = find_attr(&body[20..], TCA_OPTIONS).unwrap();
        let sel = find_attr(opts, TCA_U32_SEL).unwrap();
        assert_eq!(sel.len(), 32);
        assert_eq!((sel[0], sel[2]), (TC_U32_TERMINAL, 1));
        assert!(sel[16..].iter().all(|b| *b == 0), "match u32 0 0 at 0");
    }
}
