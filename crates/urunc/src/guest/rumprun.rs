//! Rumprun, on Solo5 (hvt, spt). Its command line is one JSON object
//! (rumprun's `doc/config.md`): `"cmdline"` the application's argv, one `"env"` member
//! per environment entry (the key repeats; rumprun's parser reads them in order),
//! `"net"` for a static address on `ukvmif0`, `"blk"` for its block device (an `etfs`
//! device `/dev/ld0a` mounted at the configured mount point). Solo5 device names: the
//! NIC `tap`, the block device `rootfs`, as the reference implementation's images
//! declare them.
//!
//! Unlike the reference implementation, which always sends mask `1` (a workaround
//! for gateways outside the guest's subnet), the interface's real prefix is sent.

use serde_json::json;

use super::cmdline::{env_pair, join};
use super::{Guest, GuestDevices, GuestSetup, NetConfig};

pub struct Rumprun;

/// A JSON string literal, `"` included.
fn s(v: &str) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

impl Guest for Rumprun {
    fn name(&self) -> &'static str {
        "rumprun"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["solo5-hvt", "solo5-spt"]
    }

    fn supports_block(&self) -> bool {
        true
    }

    fn devices(&self, _monitor: &str) -> GuestDevices {
        GuestDevices {
            solo5_net: "tap".into(),
            solo5_block: "rootfs".into(),
            ..Default::default()
        }
    }

    fn cmdline_net(&self, setup: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut members = vec![format!("\"cmdline\":{}", s(&setup.args.join(" ")))];
        for entry in &setup.env {
            env_pair(entry)?;
            members.push(format!("\"env\":{}", s(entry)));
        }
        if let Some(n) = net {
            let net = json!({
                "if": "ukvmif0",
                "cloner": "True",
                "type": "inet",
                "method": "static",
                "addr": n.address.to_string(),
                "mask": n.prefix.to_string(),
                "gw": n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            });
            members.push(format!("\"net\":{net}"));
        }
        if let Some(mount) = &setup.block_mount {
            let blk = json!({
                "source": "etfs",
                "path": "/dev/ld0a",
                "fstype": "blk",
                "mountpoint": mount,
            });
            members.push(format!("\"blk\":{blk}"));
        }
        join(&[format!("{{{}}}", members.join(","))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> GuestSetup {
        GuestSetup {
            args: vec!["/hello".into(), "big world".into()],
            env: vec!["A=1".into(), "Q=\"x\"".into()],
            ..Default::default()
        }
    }

    #[test]
    fn golden_without_network() {
        assert_eq!(
            Rumprun.cmdline(&setup()).unwrap(),
            r#"{"cmdline":"/hello big world","env":"A=1","env":"Q=\"x\""}"#
        );
    }

    #[test]
    fn golden_with_network_and_block() {
        let mut s = setup();
        s.env.clear();
        s.block_mount = Some("/data".into());
        let net = crate::monitor::testutil::net();
        assert_eq!(
            Rumprun.cmdline_net(&s, Some(&net)).unwrap(),
            r#"{"cmdline":"/hello big world","net":{"addr":"10.88.0.7","cloner":"True","gw":"10.88.0.1","if":"ukvmif0","mask":"16","method":"static","type":"inet"},"blk":{"fstype":"blk","mountpoint":"/data","path":"/dev/ld0a","source":"etfs"}}"#
        );
        assert_eq!(Rumprun.devices("solo5-hvt").solo5_net, "tap");
    }

    #[test]
    fn bad_env_is_refused() {
        let mut s = setup();
        s.env = vec!["1X=y".into()];
        assert!(Rumprun.cmdline(&s).is_err());
    }
}
