//! IncludeOS, on QEMU and Solo5 (hvt, spt), as the reference implementation's open
//! pull requests for it do (urunc-dev/urunc#619, #1025). IncludeOS has no kernel
//! parameters of its own: the command line reaches the service as its `argv`, and
//! its network is normally set by the service or its `config.json`. So, following
//! those pull requests, urunc puts the environment entries first, then
//! `--net=<ip>/<netmask> --gateway=<gw>` when the guest has a NIC, then the
//! application's arguments; a service that wants urunc's network reads them there.
//! Solo5 device names: the NIC `service`, the block device `rootfs`. On QEMU the
//! kernel must be one QEMU loads with `-kernel` (multiboot); services booted through
//! IncludeOS's chainloader (two files) are not supported.

use super::cmdline::{env_pair, join, quote, quote_all};
use super::{Guest, GuestDevices, GuestSetup, NetConfig};

pub struct IncludeOs;

impl Guest for IncludeOs {
    fn name(&self) -> &'static str {
        "includeos"
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
            solo5_block: "rootfs".into(),
            ..Default::default()
        }
    }

    fn cmdline_net(&self, s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut parts = Vec::new();
        for entry in &s.env {
            env_pair(entry)?;
            parts.push(quote("environment entry", entry)?);
        }
        if let Some(n) = net {
            parts.push(format!("--net={}/{}", n.address, n.netmask()));
            if let Some(gw) = n.gateway {
                parts.push(format!("--gateway={gw}"));
            }
        }
        parts.extend(quote_all("argument", &s.args)?);
        join(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> GuestSetup {
        GuestSetup {
            args: vec!["/service".into(), "hello world".into()],
            env: vec!["MODE=web".into(), "GREETING=two words".into()],
            ..Default::default()
        }
    }

    #[test]
    fn golden_with_and_without_network() {
        let net = crate::monitor::testutil::net();
        assert_eq!(
            IncludeOs.cmdline_net(&setup(), Some(&net)).unwrap(),
            "MODE=web \"GREETING=two words\" --net=10.88.0.7/255.255.0.0 \
             --gateway=10.88.0.1 /service \"hello world\""
        );
        assert_eq!(
            IncludeOs.cmdline(&setup()).unwrap(),
            "MODE=web \"GREETING=two words\" /service \"hello world\""
        );
        let mut no_gw = net.clone();
        no_gw.gateway = None;
        assert_eq!(
            IncludeOs
                .cmdline_net(&GuestSetup::default(), Some(&no_gw))
                .unwrap(),
            "--net=10.88.0.7/255.255.0.0"
        );
    }

    #[test]
    fn devices_and_support() {
        let d = IncludeOs.devices("solo5-hvt");
        assert_eq!(
            (d.solo5_net.as_str(), d.solo5_block.as_str()),
            ("service", "rootfs")
        );
        assert!(IncludeOs.supports_block() && IncludeOs.supports_network());
        assert!(!IncludeOs.supports_initrd() && !IncludeOs.supports_guest_init());
        assert!(!IncludeOs.monitors().contains(&"firecracker"));
    }

    #[test]
    fn bad_input_is_refused() {
        let mut s = setup();
        s.env = vec!["9=x".into()];
        assert!(IncludeOs.cmdline(&s).unwrap_err().contains("\"9\""));
        let mut s = setup();
        s.args = vec!["a\"b".into()];
        assert!(IncludeOs.cmdline(&s).is_err());
    }
}
