//! Unikraft. Its library-parameter syntax changed in 0.16.1: older images take
//! `netdev.ipv4_addr=`-style network words and `vfs.rootfs=initrd` and have no
//! environment support; newer ones take `netdev.ip=` and `vfs.fstab=[...]`. Without a
//! version (or with one that does not parse) the current syntax is used, as the
//! reference implementation does.
//!
//! Network: current `netdev.ip=<ip>/<prefix>:<gateway>:<dns>`; legacy
//! `netdev.ipv4_addr=<ip> netdev.ipv4_gw_addr=<gateway> netdev.ipv4_subnet_mask=<mask>`.
//! Without a known name server the reference implementation's `8.8.8.8` is used.

use super::cmdline::{env_pair, join, quote, quote_all};
use std::net::Ipv4Addr;

use super::{Guest, GuestSetup, NetConfig};

pub struct Unikraft;

/// The first word of the command line is the application name; the reference
/// implementation always passes this one.
const APP_NAME: &str = "Unikraft";
/// The name server given when the container has none.
const DEFAULT_DNS: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

#[derive(Debug, PartialEq, Eq)]
enum Syntax {
    /// Before 0.16.1.
    Legacy,
    Current,
}

fn syntax(version: Option<&str>) -> Syntax {
    let Some(v) = version else {
        return Syntax::Current;
    };
    let nums: Vec<u64> = v
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .take(3)
        .map_while(|p| p.parse().ok())
        .collect();
    if nums.is_empty() {
        return Syntax::Current;
    }
    let key = (
        nums[0],
        *nums.get(1).unwrap_or(&0),
        *nums.get(2).unwrap_or(&0),
    );
    if key < (0, 16, 1) {
        Syntax::Legacy
    } else {
        Syntax::Current
    }
}

impl Guest for Unikraft {
    fn name(&self) -> &'static str {
        "unikraft"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["qemu", "firecracker"]
    }

    fn supports_initrd(&self) -> bool {
        true
    }

    fn cmdline_net(&self, s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let syntax = syntax(s.version.as_deref());
        let mut parts = vec![APP_NAME.to_string()];
        if syntax == Syntax::Current && !s.env.is_empty() {
            let mut vars = Vec::new();
            for entry in &s.env {
                let (k, v) = env_pair(entry)?;
                vars.push(quote("environment entry", &format!("{k}={v}"))?);
            }
            parts.push(format!("env.vars=[ {} ]", vars.join(" ")));
        }
        if let Some(n) = net {
            let gw = n.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED);
            match syntax {
                Syntax::Current => parts.push(format!(
                    "netdev.ip={}/{}:{gw}:{}",
                    n.address,
                    n.prefix,
                    n.dns.first().copied().unwrap_or(DEFAULT_DNS)
                )),
                Syntax::Legacy => {
                    parts.push(format!("netdev.ipv4_addr={}", n.address));
                    parts.push(format!("netdev.ipv4_gw_addr={gw}"));
                    parts.push(format!("netdev.ipv4_subnet_mask={}", n.netmask()));
                }
            }
        }
        if s.initrd {
            parts.push(match syntax {
                Syntax::Legacy => "vfs.rootfs=initrd".to_string(),
                Syntax::Current => "vfs.fstab=[ \"initrd0:/:extract:::\" ]".to_string(),
            });
        }
        parts.push("--".into());
        parts.extend(quote_all("argument", &s.args)?);
        join(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(version: Option<&str>, initrd: bool) -> GuestSetup {
        GuestSetup {
            args: vec!["hello".into(), "big world".into()],
            env: vec!["A=1".into(), "B=x y".into()],
            initrd,
            version: version.map(String::from),
            block_mount: None,
        }
    }

    #[test]
    fn golden_current_syntax() {
        assert_eq!(
            Unikraft.cmdline(&setup(Some("0.17.0"), true)).unwrap(),
            "Unikraft env.vars=[ A=1 \"B=x y\" ] vfs.fstab=[ \"initrd0:/:extract:::\" ] -- hello \"big world\""
        );
    }

    #[test]
    fn golden_legacy_syntax_drops_env() {
        assert_eq!(
            Unikraft.cmdline(&setup(Some("0.15.0"), true)).unwrap(),
            "Unikraft vfs.rootfs=initrd -- hello \"big world\""
        );
    }

    fn net(dns: &[&str]) -> NetConfig {
        NetConfig {
            mode: crate::network::NetMode::Dynamic,
            tap: "urunc0123456789".into(),
            mac: "02:42:0a:00:00:02".into(),
            address: "10.4.0.7".parse().unwrap(),
            prefix: 16,
            gateway: Some("10.4.0.1".parse().unwrap()),
            mtu: 1500,
            dns: dns.iter().map(|d| d.parse().unwrap()).collect(),
            interface: Some("eth0".into()),
        }
    }

    #[test]
    fn golden_current_syntax_with_network() {
        assert_eq!(
            Unikraft
                .cmdline_net(&setup(Some("0.17.0"), true), Some(&net(&["10.4.0.53"])))
                .unwrap(),
            "Unikraft env.vars=[ A=1 \"B=x y\" ] netdev.ip=10.4.0.7/16:10.4.0.1:10.4.0.53 \
             vfs.fstab=[ \"initrd0:/:extract:::\" ] -- hello \"big world\""
        );
        let s = GuestSetup {
            args: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            Unikraft.cmdline_net(&s, Some(&net(&[]))).unwrap(),
            "Unikraft netdev.ip=10.4.0.7/16:10.4.0.1:8.8.8.8 -- x"
        );
        assert_eq!(Unikraft.cmdline_net(&s, None).unwrap(), "Unikraft -- x");
    }

    #[test]
    fn golden_legacy_syntax_with_network() {
        assert_eq!(
            Unikraft
                .cmdline_net(&setup(Some("0.15.0"), false), Some(&net(&[])))
                .unwrap(),
            "Unikraft netdev.ipv4_addr=10.4.0.7 netdev.ipv4_gw_addr=10.4.0.1 \
             netdev.ipv4_subnet_mask=255.255.0.0 -- hello \"big world\""
        );
    }

    #[test]
    fn version_boundaries() {
        assert_eq!(syntax(Some("0.16.0")), Syntax::Legacy);
        assert_eq!(syntax(Some("0.16.1")), Syntax::Current);
        assert_eq!(syntax(Some("v0.18")), Syntax::Current);
        assert_eq!(syntax(Some("garbage")), Syntax::Current);
        assert_eq!(syntax(None), Syntax::Current);
    }

    #[test]
    fn no_initrd_no_env() {
        let s = GuestSetup {
            args: vec![],
            ..Default::default()
        };
        assert_eq!(Unikraft.cmdline(&s).unwrap(), "Unikraft --");
    }
}
