//! QEMU (`qemu-system-<arch>`), the monitor that really boots guests on this project's
//! test machines. x86_64 uses the `pc` machine; aarch64 the `virt` machine.

use super::{Accel, Monitor, NetConfig, VmConfig};

/// Operators choose the accelerator: `kvm` (default) or `tcg`. `/dev/kvm` existing does
/// not mean KVM can run a guest (nested or software KVM), hence no automatic fallback.
pub const QEMU_ACCEL_ENV: &str = "URUNC_QEMU_ACCEL";

/// QEMU confines itself with this when the container spec asks for seccomp.
const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

pub struct Qemu;

impl Monitor for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn default_binary(&self) -> String {
        format!("qemu-system-{}", std::env::consts::ARCH)
    }

    fn accel(&self) -> Result<Accel, String> {
        match std::env::var(QEMU_ACCEL_ENV).ok().as_deref() {
            None | Some("") | Some("kvm") => Ok(Accel::Kvm),
            Some("tcg") => Ok(Accel::Tcg),
            Some(other) => Err(format!("{QEMU_ACCEL_ENV}={other:?}: expected kvm or tcg")),
        }
    }

    fn devices(&self, vm: &VmConfig) -> Vec<&'static str> {
        match vm.accel {
            Accel::Kvm => vec!["/dev/kvm"],
            Accel::Tcg => vec![],
        }
    }

    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String> {
        let mut a: Vec<String> = vec![vm.binary.display().to_string()];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let machine = if cfg!(target_arch = "aarch64") {
            "virt"
        } else {
            "pc"
        };
        push(&["-name", &vm.name]);
        push(&["-machine", machine]);
        match vm.accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => push(&["-accel", "tcg"]),
        }
        push(&["-m", &format!("{}M", vm.memory_mib)]);
        push(&["-smp", &vm.vcpus.to_string()]);
        // No default devices, no firmware config from the host, no display: the guest
        // gets exactly what urunc adds, and its console is the container's stdio.
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ]);
        push(&["-serial", "stdio"]);
        if let Some(status) = &vm.status_file {
            // The second serial port, a file on the host: the guest init's status channel.
            push(&[
                "-chardev",
                &format!("file,id=urunc-status,path={}", status.display()),
                "-serial",
                "chardev:urunc-status",
            ]);
        }
        push(&["-no-reboot"]);
        if let Some(n) = net {
            // The tap exists already (owned by the user QEMU runs as); QEMU only attaches.
            push(&[
                "-netdev",
                &format!("tap,id=net0,ifname={},script=no,downscript=no", n.tap),
                "-device",
                &format!("virtio-net-pci,netdev=net0,mac={}", n.mac),
            ]);
        }
        if vm.seccomp {
            push(&["-sandbox", SANDBOX]);
        }
        push(&["-kernel", &vm.kernel.display().to_string()]);
        if let Some(initrd) = &vm.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        push(&["-append", &vm.cmdline]);
        a
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vm() -> VmConfig {
        VmConfig {
            name: "urunc-c1".into(),
            binary: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            memory_mib: 256,
            vcpus: 1,
            kernel: PathBuf::from("/guest/kernel"),
            initrd: Some(PathBuf::from("/guest/initrd")),
            cmdline: "console=ttyS0 panic=-1 quiet".into(),
            accel: Accel::Tcg,
            seccomp: false,
            status_file: None,
        }
    }

    fn net() -> NetConfig {
        NetConfig {
            mode: crate::network::NetMode::Dynamic,
            tap: "urunc0a1b2c3d4e".into(),
            mac: "02:42:0a:58:00:07".into(),
            address: "10.88.0.7".parse().unwrap(),
            prefix: 16,
            gateway: Some("10.88.0.1".parse().unwrap()),
            mtu: 1500,
            dns: vec![],
            interface: Some("eth0".into()),
        }
    }

    #[test]
    fn golden_tcg_with_initrd() {
        assert_eq!(
            Qemu.argv(&vm(), None).join(" "),
            "/usr/bin/qemu-system-x86_64 -name urunc-c1 -machine pc -accel tcg -m 256M -smp 1 \
             -nodefaults -no-user-config -display none -vga none -serial stdio -no-reboot \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyS0 panic=-1 quiet"
        );
        assert!(Qemu.devices(&vm()).is_empty());
    }

    #[test]
    fn golden_kvm_seccomp_no_initrd() {
        let mut v = vm();
        v.accel = Accel::Kvm;
        v.seccomp = true;
        v.initrd = None;
        v.vcpus = 2;
        let argv = Qemu.argv(&v, None);
        assert_eq!(
            argv[3..9],
            ["-machine", "pc", "-accel", "kvm", "-cpu", "host"].map(String::from)
        );
        let sandbox = argv.iter().position(|a| a == "-sandbox").unwrap();
        assert_eq!(argv[sandbox + 1], SANDBOX);
        assert!(!argv.contains(&"-initrd".to_string()));
        assert!(argv.windows(2).any(|w| w == ["-smp", "2"]));
        assert_eq!(Qemu.devices(&v), vec!["/dev/kvm"]);
    }

    #[test]
    fn golden_with_network_and_status_port() {
        let mut v = vm();
        v.status_file = Some(PathBuf::from("/guest/exit-status"));
        assert_eq!(
            Qemu.argv(&v, Some(&net())).join(" "),
            "/usr/bin/qemu-system-x86_64 -name urunc-c1 -machine pc -accel tcg -m 256M -smp 1 \
             -nodefaults -no-user-config -display none -vga none -serial stdio \
             -chardev file,id=urunc-status,path=/guest/exit-status -serial chardev:urunc-status \
             -no-reboot \
             -netdev tap,id=net0,ifname=urunc0a1b2c3d4e,script=no,downscript=no \
             -device virtio-net-pci,netdev=net0,mac=02:42:0a:58:00:07 \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn no_network_no_nic() {
        let argv = Qemu.argv(&vm(), None);
        assert!(!argv
            .iter()
            .any(|a| a.contains("netdev") || a.contains("-nic")));
        assert!(!argv.iter().any(|a| a == "-net"));
    }

    #[test]
    fn the_cmdline_is_one_argument() {
        let mut v = vm();
        v.cmdline = "a -device evil".into();
        let argv = Qemu.argv(&v, None);
        assert_eq!(argv.last().unwrap(), "a -device evil");
        assert!(!argv.contains(&"evil".to_string()));
    }
}
