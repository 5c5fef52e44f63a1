//! Mewz, on QEMU only. Its command line is just the network: `ip=<ip>/<prefix>
//! gateway=<gw>` (it runs one built-in application and takes no arguments). On QEMU
//! it needs a modern-only virtio NIC (`disable-legacy=on,disable-modern=off`) and
//! exits through `isa-debug-exit` at port 0x501.

use super::cmdline::join;
use super::{Guest, GuestDevices, GuestSetup, NetConfig};

pub struct Mewz;

impl Guest for Mewz {
    fn name(&self) -> &'static str {
        "mewz"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["qemu"]
    }

    fn devices(&self, _monitor: &str) -> GuestDevices {
        GuestDevices {
            qemu_nic_options: vec!["disable-legacy=on".into(), "disable-modern=off".into()],
            monitor_args: vec![
                "-device".into(),
                "isa-debug-exit,iobase=0x501,iosize=2".into(),
            ],
            ..Default::default()
        }
    }

    fn cmdline_net(&self, _s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut parts = Vec::new();
        if let Some(n) = net {
            parts.push(format!("ip={}/{}", n.address, n.prefix));
            if let Some(gw) = n.gateway {
                parts.push(format!("gateway={gw}"));
            }
        }
        join(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let net = crate::monitor::testutil::net();
        let s = GuestSetup::default();
        assert_eq!(
            Mewz.cmdline_net(&s, Some(&net)).unwrap(),
            "ip=10.88.0.7/16 gateway=10.88.0.1"
        );
        assert_eq!(Mewz.cmdline(&s).unwrap(), "");
    }
}
