//! MirageOS, on QEMU (virtio target) and Solo5 (hvt, spt). Network:
//! `--ipv4=<ip>/<prefix> --ipv4-gateway=<gw>` (the options of its default `service`
//! device), then the application's arguments. Solo5 device names: the NIC `service`,
//! the block device `storage`.

use super::cmdline::{join, quote_all};
use super::{Guest, GuestDevices, GuestSetup, NetConfig};

pub struct Mirage;

impl Guest for Mirage {
    fn name(&self) -> &'static str {
        "mirage"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["qemu", "solo5-hvt", "solo5-spt"]
    }

    fn supports_block(&self) -> bool {
        true
    }

    fn devices(&self, _monitor: &str) -> GuestDevices {
        GuestDevices {
            solo5_net: "service".into(),
            solo5_block: "storage".into(),
            ..Default::default()
        }
    }

    fn cmdline_net(&self, s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut parts = Vec::new();
        if let Some(n) = net {
            parts.push(format!("--ipv4={}/{}", n.address, n.prefix));
            if let Some(gw) = n.gateway {
                parts.push(format!("--ipv4-gateway={gw}"));
            }
        }
        parts.extend(quote_all("argument", &s.args)?);
        join(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden() {
        let s = GuestSetup {
            args: vec!["--hello=world".into()],
            ..Default::default()
        };
        let net = crate::monitor::testutil::net();
        assert_eq!(
            Mirage.cmdline_net(&s, Some(&net)).unwrap(),
            "--ipv4=10.88.0.7/16 --ipv4-gateway=10.88.0.1 --hello=world"
        );
        assert_eq!(Mirage.cmdline(&s).unwrap(), "--hello=world");
        assert_eq!(Mirage.cmdline(&GuestSetup::default()).unwrap(), "");
    }
}
