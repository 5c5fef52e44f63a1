//! OSv, on QEMU and Firecracker. Its loader's options come first, then the
//! application's command: `--ip=eth0,<ip>,<netmask> --defaultgw=<gw>
//! --nameserver=<dns>` for a static network, one `--env=KEY=VALUE` per environment
//! entry, then the program and its arguments.

use super::cmdline::{env_pair, join, quote, quote_all};
use super::{Guest, GuestSetup, NetConfig};

pub struct Osv;

impl Guest for Osv {
    fn name(&self) -> &'static str {
        "osv"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["qemu", "firecracker"]
    }

    fn cmdline_net(&self, s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut parts = Vec::new();
        if let Some(n) = net {
            parts.push(format!("--ip=eth0,{},{}", n.address, n.netmask()));
            if let Some(gw) = n.gateway {
                parts.push(format!("--defaultgw={gw}"));
            }
            if let Some(dns) = n.dns.first() {
                parts.push(format!("--nameserver={dns}"));
            }
        }
        for entry in &s.env {
            let (k, v) = env_pair(entry)?;
            parts.push(quote("environment entry", &format!("--env={k}={v}"))?);
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
            args: vec!["/hello".into(), "a b".into()],
            env: vec!["PATH=/bin".into(), "X=two words".into()],
            ..Default::default()
        };
        let mut net = crate::monitor::testutil::net();
        net.dns = vec!["10.88.0.53".parse().unwrap()];
        assert_eq!(
            Osv.cmdline_net(&s, Some(&net)).unwrap(),
            "--ip=eth0,10.88.0.7,255.255.0.0 --defaultgw=10.88.0.1 --nameserver=10.88.0.53 \
             --env=PATH=/bin \"--env=X=two words\" /hello \"a b\""
        );
        assert_eq!(
            Osv.cmdline(&s).unwrap(),
            "--env=PATH=/bin \"--env=X=two words\" /hello \"a b\""
        );
    }
}
