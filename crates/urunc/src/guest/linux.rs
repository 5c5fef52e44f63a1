//! A Linux kernel booting a single application: the console on the first serial port,
//! the application as init (`rdinit=` from an initrd), its environment as `KEY=VALUE`
//! words (the kernel hands unknown parameters to init as environment) and its
//! arguments after `--`. With a network, `ip=` (for kernels with `CONFIG_IP_PNP`).
//!
//! With an initrd urunc normally boots its guest init instead (see `crate::guest_init`):
//! the plan then asks for `rdinit=/urunit` alone and hands the application, its
//! environment and the network to urunit in a file, not on this command line.

use super::cmdline::{env_pair, join, quote, quote_all};
use super::{Guest, GuestSetup, NetConfig};

pub struct Linux;

/// Parameters the kernel itself acts on: an environment variable with one of these
/// names would change how the guest boots, so it is refused instead of passed on.
const KERNEL_PARAMS: &[&str] = &[
    "init",
    "rdinit",
    "root",
    "rootfstype",
    "rootflags",
    "rootwait",
    "rootdelay",
    "ro",
    "rw",
    "console",
    "earlycon",
    "earlyprintk",
    "panic",
    "quiet",
    "loglevel",
    "debug",
    "initrd",
    "noinitrd",
    "mem",
    "memmap",
    "maxcpus",
    "nr_cpus",
    "nosmp",
    "single",
    "modules",
    "module_blacklist",
    "nomodule",
    "resume",
    "noresume",
    "reboot",
    "acpi",
    "apic",
    "nokaslr",
    "ip",
    "nfsroot",
    "security",
    "selinux",
    "apparmor",
    "lsm",
    "systemd",
];

impl Guest for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn monitors(&self) -> &'static [&'static str] {
        &["qemu", "firecracker", "cloud-hypervisor"]
    }

    fn supports_guest_init(&self) -> bool {
        true
    }

    fn supports_block(&self) -> bool {
        true
    }

    fn supports_initrd(&self) -> bool {
        true
    }

    fn cmdline_net(&self, s: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String> {
        let mut parts = vec![
            "console=ttyS0".to_string(),
            "panic=-1".to_string(),
            "quiet".to_string(),
        ];
        if let Some(n) = net {
            // ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>
            let gw = n.gateway.map(|g| g.to_string()).unwrap_or_default();
            parts.push(format!("ip={}::{gw}:{}::eth0:off", n.address, n.netmask()));
        }
        if let Some(init) = s.args.first() {
            let key = if s.initrd { "rdinit" } else { "init" };
            parts.push(format!("{key}={}", quote("init program", init)?));
        }
        for entry in &s.env {
            let (k, v) = env_pair(entry)?;
            if KERNEL_PARAMS.contains(&k) {
                return Err(format!(
                    "environment variable {k:?} would be read by the guest kernel as a boot parameter"
                ));
            }
            parts.push(format!("{k}={}", quote("environment value", v)?));
        }
        if s.args.len() > 1 {
            parts.push("--".into());
            parts.extend(quote_all("argument", &s.args[1..])?);
        }
        join(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(args: &[&str], env: &[&str]) -> GuestSetup {
        GuestSetup {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            initrd: true,
            version: None,
            block_mount: None,
        }
    }

    #[test]
    fn golden_initrd_with_args_and_env() {
        let s = setup(
            &["/bin/report", "one", "two words"],
            &["PATH=/bin", "GREETING=hi there"],
        );
        assert_eq!(
            Linux.cmdline(&s).unwrap(),
            "console=ttyS0 panic=-1 quiet rdinit=/bin/report PATH=/bin GREETING=\"hi there\" -- one \"two words\""
        );
    }

    #[test]
    fn no_args_keeps_the_default_init() {
        assert_eq!(
            Linux.cmdline(&setup(&[], &[])).unwrap(),
            "console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn without_initrd_the_program_is_init() {
        let mut s = setup(&["/sbin/app"], &[]);
        s.initrd = false;
        assert_eq!(
            Linux.cmdline(&s).unwrap(),
            "console=ttyS0 panic=-1 quiet init=/sbin/app"
        );
    }

    fn net() -> NetConfig {
        NetConfig {
            mode: crate::network::NetMode::Dynamic,
            tap: "urunc0123456789".into(),
            mac: "02:42:0a:00:00:02".into(),
            address: "10.0.0.2".parse().unwrap(),
            prefix: 24,
            gateway: Some("10.0.0.1".parse().unwrap()),
            mtu: 1500,
            dns: vec![],
            interface: Some("eth0".into()),
        }
    }

    #[test]
    fn golden_with_network() {
        let s = setup(&["/bin/httpd", "-f"], &["PATH=/bin"]);
        assert_eq!(
            Linux.cmdline_net(&s, Some(&net())).unwrap(),
            "console=ttyS0 panic=-1 quiet ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off \
             rdinit=/bin/httpd PATH=/bin -- -f"
        );
        assert_eq!(
            Linux.cmdline_net(&s, None).unwrap(),
            "console=ttyS0 panic=-1 quiet rdinit=/bin/httpd PATH=/bin -- -f"
        );
    }

    #[test]
    fn golden_guest_init() {
        // What the plan asks for when urunit runs the application.
        let s = setup(&["/urunit"], &[]);
        assert_eq!(
            Linux.cmdline(&s).unwrap(),
            "console=ttyS0 panic=-1 quiet rdinit=/urunit"
        );
        assert!(Linux.supports_guest_init());
    }

    #[test]
    fn injection_is_refused() {
        let e = Linux
            .cmdline(&setup(&["/init"], &["rdinit=/evil"]))
            .unwrap_err();
        assert!(e.contains("boot parameter"), "{e}");
        let e = Linux
            .cmdline(&setup(&["/init"], &["X=a\" rdinit=/evil"]))
            .unwrap_err();
        assert!(e.contains("cannot carry"), "{e}");
        let e = Linux
            .cmdline(&setup(&["/init\nrdinit=/x"], &[]))
            .unwrap_err();
        assert!(e.contains("cannot carry"), "{e}");
    }
}
