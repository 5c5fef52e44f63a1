//! Static mode's NAT over nftables netlink: one table per container, named after its
//! tap, equivalent to
//!
//! ```text
//! nft add table ip TAP
//! nft add chain ip TAP postrouting '{ type nat hook postrouting priority srcnat; }'
//! nft add rule ip TAP postrouting oifname IFACE ip saddr GUEST masquerade
//! ```
//!
//! Deleting the table removes it all.

use std::io;
use std::net::Ipv4Addr;

use urunit::netlink::{Attrs, Netlink, NLM_F_ACK, NLM_F_CREATE};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;
const NLM_F_APPEND: u16 = 0x800;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;

const NF_INET_POST_ROUTING: u32 = 4;
const NF_IP_PRI_NAT_SRC: u32 = 100;
const NFT_REG_1: u32 = 1;
const NFT_META_OIFNAME: u32 = 7;
const NFT_CMP_EQ: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const CHAIN: &str = "postrouting";

fn msg_type(m: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | m
}

/// `struct nfgenmsg` followed by the attributes.
fn body(family: u8, res_id: u16, attrs: &Attrs) -> Vec<u8> {
    let mut b = vec![family, 0];
    b.extend_from_slice(&res_id.to_be_bytes());
    b.extend_from_slice(attrs.bytes());
    b
}

/// nftables wants its 32-bit values in network byte order.
fn be32(a: &mut Attrs, ty: u16, v: u32) -> &mut Attrs {
    a.put(ty, &v.to_be_bytes())
}

fn expr(list: &mut Attrs, name: &str, data: impl FnOnce(&mut Attrs)) {
    list.nested(NFTA_LIST_ELEM, |e| {
        e.put_str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
    });
}

fn cmp_eq(list: &mut Attrs, value: &[u8]) {
    expr(list, "cmp", |d| {
        be32(d, NFTA_CMP_SREG, NFT_REG_1);
        be32(d, NFTA_CMP_OP, NFT_CMP_EQ);
        d.nested(NFTA_CMP_DATA, |v| {
            v.put(NFTA_DATA_VALUE, value);
        });
    });
}

fn batch(msgs: Vec<(u16, u16, Vec<u8>)>) -> Vec<(u16, u16, Vec<u8>)> {
    let edge = |ty| (ty, 0, body(0, NFNL_SUBSYS_NFTABLES, &Attrs::new()));
    let mut all = vec![edge(NFNL_MSG_BATCH_BEGIN)];
    all.extend(msgs);
    all.push(edge(NFNL_MSG_BATCH_END));
    all
}

/// The batch creating the masquerade rule (pure, for tests).
pub fn masquerade_batch(table: &str, oif: &str, source: Ipv4Addr) -> Vec<(u16, u16, Vec<u8>)> {
    let create = NLM_F_CREATE | NLM_F_ACK;
    let mut t = Attrs::new();
    t.put_str(NFTA_TABLE_NAME, table);
    let mut c = Attrs::new();
    c.put_str(NFTA_CHAIN_TABLE, table)
        .put_str(NFTA_CHAIN_NAME, CHAIN)
        .nested(NFTA_CHAIN_HOOK, |h| {
            be32(h, NFTA_HOOK_HOOKNUM, NF_INET_POST_ROUTING);
            be32(h, NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_SRC);
        })
        .put_str(NFTA_CHAIN_TYPE, "nat");
    let mut ifname = [0u8; 16];
    let n = oif.len().min(15);
    ifname[..n].copy_from_slice(&oif.as_bytes()[..n]);
    let mut r = Attrs::new();
    r.put_str(NFTA_RULE_TABLE, table)
        .put_str(NFTA_RULE_CHAIN, CHAIN)
        .nested(NFTA_RULE_EXPRESSIONS, |l| {
            expr(l, "meta", |d| {
                be32(d, NFTA_META_DREG, NFT_REG_1);
                be32(d, NFTA_META_KEY, NFT_META_OIFNAME);
            });
            cmp_eq(l, &ifname);
            expr(l, "payload", |d| {
                be32(d, NFTA_PAYLOAD_DREG, NFT_REG_1);
                be32(d, NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
                be32(d, NFTA_PAYLOAD_OFFSET, 12); // source address
                be32(d, NFTA_PAYLOAD_LEN, 4);
            });
            cmp_eq(l, &source.octets());
            expr(l, "masq", |_| {});
        });
    batch(vec![
        (
            msg_type(NFT_MSG_NEWTABLE),
            create,
            body(NFPROTO_IPV4, 0, &t),
        ),
        (
            msg_type(NFT_MSG_NEWCHAIN),
            create,
            body(NFPROTO_IPV4, 0, &c),
        ),
        (
            msg_type(NFT_MSG_NEWRULE),
            create | NLM_F_APPEND,
            body(NFPROTO_IPV4, 0, &r),
        ),
    ])
}

fn socket() -> io::Result<Netlink> {
    Netlink::open_protocol(libc::NETLINK_NETFILTER)
}

/// Masquerades packets from `source` leaving through `oif` (table `table`).
pub fn add_masquerade(table: &str, oif: &str, source: Ipv4Addr) -> io::Result<()> {
    socket()?.request_all(&masquerade_batch(table, oif, source))
}

/// Deletes table `table`; a missing table (or no nf_tables at all) is fine.
pub fn delete_table(table: &str) -> io::Result<()> {
    let mut t = Attrs::new();
    t.put_str(NFTA_TABLE_NAME, table);
    let msgs = batch(vec![(
        msg_type(NFT_MSG_DELTABLE),
        NLM_F_ACK,
        body(NFPROTO_IPV4, 0, &t),
    )]);
    match socket().and_then(|mut nl| nl.request_all(&msgs)) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT)
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use urunit::netlink::{find_attr, parse_attrs};

    #[test]
    fn the_masquerade_batch_is_framed_and_complete() {
        let b = masquerade_batch("urunc0123456789", "eth0", Ipv4Addr::new(172, 16, 1, 2));
        let types: Vec<u16> = b.iter().map(|m| m.0).collect();
        assert_eq!(types, [0x10, 0x0a00, 0x0a03, 0x0a06, 0x11]);
        assert_eq!(&b[0].2, &[0, 0, 0, 10], "batch for the nftables subsystem");
        assert_eq!(b[1].2[0], NFPROTO_IPV4);
        let rule = &b[3].2[4..];
        let exprs = find_attr(rule, NFTA_RULE_EXPRESSIONS).unwrap();
        let names: Vec<String> = parse_attrs(exprs)
            .map(|(_, e)| urunit::netlink::attr_str(find_attr(e, NFTA_EXPR_NAME).unwrap()))
            .collect();
        assert_eq!(names, ["meta", "cmp", "payload", "cmp", "masq"]);
        let cmp_ip = parse_attrs(exprs).nth(3).unwrap().1;
        let data = find_attr(find_attr(cmp_ip, NFTA_EXPR_DATA).unwrap(), NFTA_CMP_DATA).unwrap();
        assert_eq!(find_attr(data, NFTA_DATA_VALUE).unwrap(), [172, 16, 1, 2]);
        let chain = &b[2].2[4..];
        let hook = find_attr(chain, NFTA_CHAIN_HOOK).unwrap();
        assert_eq!(
            find_attr(hook, NFTA_HOOK_HOOKNUM).unwrap(),
            4u32.to_be_bytes()
        );
    }
}
