//! A Linux kernel booting a single application: the console on the first serial port,
//! the application as init (`rdinit=` from an initrd), its environment as `KEY=VALUE`
//! words (the kernel hands unknown parameters to init as environment) and its
//! arguments after `--`.

use super::cmdline::{env_pair, join, quote, quote_all};
use super::{Guest, GuestSetup};

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
        &["qemu"]
    }

    fn cmdline(&self, s: &GuestSetup) -> Result<String, String> {
        let mut parts = vec![
            "console=ttyS0".to_string(),
            "panic=-1".to_string(),
            "quiet".to_string(),
        ];
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
