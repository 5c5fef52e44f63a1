//! QEMU (`qemu-system-<arch>`), the monitor that really boots guests on this project's
//! test machines. x86_64 uses the `pc` machine by default (`microvm` selectable in the
//! configuration file); aarch64 the `virt` machine. Devices are virtio: PCI on `pc` and
//! `virt`, MMIO on `microvm`.

use super::{parse_accel, Accel, Monitor, MonitorSettings, NetConfig, VmConfig};

/// Operators choose the accelerator: `kvm` (default) or `tcg`. `/dev/kvm` existing does
/// not mean KVM can run a guest (nested or software KVM), hence no automatic fallback.
/// The environment variable beats the configuration file.
pub const QEMU_ACCEL_ENV: &str = "URUNC_QEMU_ACCEL";

/// QEMU confines itself with this when the container spec asks for seccomp.
const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The machine types urunc generates arguments for on `arch` (Rust's name, as
/// `std::env::consts::ARCH`), the default first.
fn machines(arch: &str) -> &'static [&'static str] {
    match arch {
        "aarch64" => &["virt"],
        _ => &["pc", "microvm"],
    }
}

pub fn default_machine() -> &'static str {
    machines(std::env::consts::ARCH)[0]
}

/// A machine type this build of urunc can generate arguments for on this host.
pub fn check_machine(m: &str) -> Result<(), String> {
    check_machine_for(std::env::consts::ARCH, m)
}

/// The same for a guest of another architecture (an image packed for it).
pub fn check_machine_for(arch: &str, m: &str) -> Result<(), String> {
    let known = machines(arch);
    if known.contains(&m) {
        Ok(())
    } else {
        Err(format!(
            "machine {m:?} is not supported on {arch}; expected one of: {}",
            known.join(", ")
        ))
    }
}

pub struct Qemu;

/// The environment's choice, else the file's, else KVM.
fn resolve_accel(env: Option<&str>, settings: &MonitorSettings) -> Result<Accel, String> {
    match env {
        None | Some("") => match &settings.accel {
            Some(a) => parse_accel(a),
            None => Ok(Accel::Kvm),
        },
        Some(v) => parse_accel(v).map_err(|e| format!("{QEMU_ACCEL_ENV}: {e}")),
    }
}

impl Monitor for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn default_binary(&self) -> String {
        format!("qemu-system-{}", std::env::consts::ARCH)
    }

    fn uses_kvm(&self, accel: Accel) -> bool {
        accel == Accel::Kvm
    }

    fn accel(&self, settings: &MonitorSettings) -> Result<Accel, String> {
        resolve_accel(std::env::var(QEMU_ACCEL_ENV).ok().as_deref(), settings)
    }

    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String> {
        let mut a: Vec<String> = vec![vm.binary.display().to_string()];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let machine = if vm.machine.is_empty() {
            default_machine()
        } else {
            vm.machine.as_str()
        };
        let virt = machine == "virt";
        // virtio over MMIO on microvm, PCI elsewhere.
        let bus = if machine == "microvm" {
            "device"
        } else {
            "pci"
        };
        push(&["-name", &vm.name]);
        push(&["-machine", machine]);
        match (vm.accel, virt) {
            (Accel::Kvm, _) => push(&["-accel", "kvm", "-cpu", "host"]),
            (Accel::Tcg, false) => push(&["-accel", "tcg"]),
            (Accel::Tcg, true) => push(&["-accel", "tcg", "-cpu", "max"]),
        }
        push(&["-m", &format!("{}M", vm.memory_mib)]);
        push(&["-smp", &vm.vcpus.to_string()]);
        // No default devices, no firmware config from the host, no display: the guest
        // gets exactly what urunc adds, and its console is the container's stdio.
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        if !virt {
            push(&["-vga", "none"]);
        }
        push(&["-serial", "stdio"]);
        if let Some(status) = &vm.status_file {
            // The second serial port (ttyS1), a file on the host: the guest init's status
            // channel. microvm makes only the first port of `-serial`, so it gets the
            // second as a device, at the same legacy address.
            push(&[
                "-chardev",
                &format!("file,id=urunc-status,path={}", status.display()),
            ]);
            if machine == "microvm" {
                push(&["-device", "isa-serial,chardev=urunc-status,index=1"]);
            } else {
                push(&["-serial", "chardev:urunc-status"]);
            }
        }
        push(&["-no-reboot"]);
        if let Some(n) = net {
            // The tap exists already (owned by the user QEMU runs as); QEMU only attaches.
            let mut nic = format!("virtio-net-{bus},netdev=net0,mac={}", n.mac);
            if bus == "pci" {
                // No option ROM: the guest boots from -kernel, never from the network,
                // and the firmware would run iPXE's set-up on every boot (about 10 ms
                // of SeaBIOS under TCG).
                nic.push_str(",romfile=");
            }
            for o in &vm.devices.qemu_nic_options {
                nic.push(',');
                nic.push_str(o);
            }
            push(&[
                "-netdev",
                &format!("tap,id=net0,ifname={},script=no,downscript=no", n.tap),
                "-device",
                &nic,
            ]);
        }
        if let Some(block) = &vm.block {
            let ro = if vm.block_readonly {
                ",readonly=on"
            } else {
                ""
            };
            push(&[
                "-drive",
                &format!("file={},if=none,id=blk0,format=raw{ro}", block.display()),
                "-device",
                &format!("virtio-blk-{bus},drive=blk0"),
            ]);
        }
        if vm.shares.iter().any(|s| s.socket.is_some()) {
            // vhost-user devices need the guest's memory shared with virtiofsd.
            push(&[
                "-object",
                &format!(
                    "memory-backend-memfd,id=mem,size={}M,share=on",
                    vm.memory_mib
                ),
                "-numa",
                "node,memdev=mem",
            ]);
        }
        for (i, s) in vm.shares.iter().enumerate() {
            match &s.socket {
                Some(socket) => push(&[
                    "-chardev",
                    &format!("socket,id=vfs{i},path={}", socket.display()),
                    "-device",
                    &format!("vhost-user-fs-{bus},chardev=vfs{i},tag={}", s.tag),
                ]),
                None => {
                    let ro = if s.readonly { ",readonly=on" } else { "" };
                    push(&[
                        "-fsdev",
                        &format!(
                            "local,id=fs{i},path={},security_model=none{ro}",
                            s.path.display()
                        ),
                        "-device",
                        &format!("virtio-9p-{bus},fsdev=fs{i},mount_tag={}", s.tag),
                    ]);
                }
            }
        }
        if vm.seccomp {
            push(&["-sandbox", SANDBOX]);
        }
        let guest_args: Vec<&str> = vm.devices.monitor_args.iter().map(String::as_str).collect();
        push(&guest_args);
        let extra: Vec<&str> = vm.extra_args.iter().map(String::as_str).collect();
        push(&extra);
        push(&["-kernel", &vm.kernel.display().to_string()]);
        if let Some(initrd) = &vm.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        push(&["-append", &vm.cmdline]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{net, vm as base};
    use super::*;
    use std::path::PathBuf;

    fn vm() -> VmConfig {
        let mut v = base("/usr/bin/qemu-system-x86_64");
        v.initrd = Some(PathBuf::from("/guest/initrd"));
        v.accel = Accel::Tcg;
        v.machine = "pc".into();
        v
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
             -device virtio-net-pci,netdev=net0,mac=02:42:0a:58:00:07,romfile= \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn microvm_gets_the_status_port_as_a_second_isa_serial() {
        let mut v = vm();
        v.machine = "microvm".into();
        v.status_file = Some(PathBuf::from("/guest/exit-status"));
        let argv = Qemu.argv(&v, None).join(" ");
        assert!(
            argv.contains(
                "-serial stdio -chardev file,id=urunc-status,path=/guest/exit-status \
                 -device isa-serial,chardev=urunc-status,index=1 -no-reboot"
            ),
            "{argv}"
        );
        assert_eq!(argv.matches(" -serial ").count(), 1, "{argv}");
    }

    #[test]
    fn golden_microvm_with_network_block_and_extra_args() {
        let mut v = vm();
        v.machine = "microvm".into();
        v.initrd = None;
        v.block = Some(PathBuf::from("/guest/block"));
        v.extra_args = vec!["-d".into(), "guest_errors".into()];
        assert_eq!(
            Qemu.argv(&v, Some(&net())).join(" "),
            "/usr/bin/qemu-system-x86_64 -name urunc-c1 -machine microvm -accel tcg -m 256M -smp 1 \
             -nodefaults -no-user-config -display none -vga none -serial stdio -no-reboot \
             -netdev tap,id=net0,ifname=urunc0a1b2c3d4e,script=no,downscript=no \
             -device virtio-net-device,netdev=net0,mac=02:42:0a:58:00:07 \
             -drive file=/guest/block,if=none,id=blk0,format=raw \
             -device virtio-blk-device,drive=blk0 \
             -d guest_errors -kernel /guest/kernel -append console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn golden_read_only_block_and_shared_directories() {
        let mut v = vm();
        v.block = Some(PathBuf::from("/guest/block"));
        v.block_readonly = true;
        v.shares = vec![
            crate::monitor::SharedDir {
                tag: "urunc-root".into(),
                path: PathBuf::from("/guest/rootfs"),
                readonly: false,
                socket: None,
            },
            crate::monitor::SharedDir {
                tag: "urunc-vol1".into(),
                path: PathBuf::from("/guest/vol1"),
                readonly: true,
                socket: None,
            },
        ];
        assert_eq!(
            Qemu.argv(&v, None).join(" "),
            "/usr/bin/qemu-system-x86_64 -name urunc-c1 -machine pc -accel tcg -m 256M -smp 1 \
             -nodefaults -no-user-config -display none -vga none -serial stdio -no-reboot \
             -drive file=/guest/block,if=none,id=blk0,format=raw,readonly=on \
             -device virtio-blk-pci,drive=blk0 \
             -fsdev local,id=fs0,path=/guest/rootfs,security_model=none \
             -device virtio-9p-pci,fsdev=fs0,mount_tag=urunc-root \
             -fsdev local,id=fs1,path=/guest/vol1,security_model=none,readonly=on \
             -device virtio-9p-pci,fsdev=fs1,mount_tag=urunc-vol1 \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn golden_virtiofs_share() {
        let mut v = vm();
        v.shares = vec![crate::monitor::SharedDir {
            tag: "urunc-root".into(),
            path: PathBuf::from("/guest/rootfs"),
            readonly: false,
            socket: Some(PathBuf::from("/tmp/urunc-root.sock")),
        }];
        assert_eq!(
            Qemu.argv(&v, None).join(" "),
            "/usr/bin/qemu-system-x86_64 -name urunc-c1 -machine pc -accel tcg -m 256M -smp 1 \
             -nodefaults -no-user-config -display none -vga none -serial stdio -no-reboot \
             -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
             -chardev socket,id=vfs0,path=/tmp/urunc-root.sock \
             -device vhost-user-fs-pci,chardev=vfs0,tag=urunc-root \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn golden_aarch64_virt() {
        let mut v = vm();
        v.binary = PathBuf::from("/usr/bin/qemu-system-aarch64");
        v.machine = "virt".into();
        v.cmdline = "console=ttyAMA0".into();
        assert_eq!(
            Qemu.argv(&v, Some(&net())).join(" "),
            "/usr/bin/qemu-system-aarch64 -name urunc-c1 -machine virt -accel tcg -cpu max \
             -m 256M -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot \
             -netdev tap,id=net0,ifname=urunc0a1b2c3d4e,script=no,downscript=no \
             -device virtio-net-pci,netdev=net0,mac=02:42:0a:58:00:07,romfile= \
             -kernel /guest/kernel -initrd /guest/initrd -append console=ttyAMA0"
        );
        v.accel = Accel::Kvm;
        assert_eq!(
            Qemu.argv(&v, None)[3..9],
            ["-machine", "virt", "-accel", "kvm", "-cpu", "host"].map(String::from)
        );
    }

    #[test]
    fn machine_selection() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(default_machine(), "pc");
            assert!(check_machine("microvm").is_ok());
            assert!(check_machine("virt").unwrap_err().contains("pc, microvm"));
        }
        assert!(check_machine_for("aarch64", "virt").is_ok());
        let e = check_machine_for("aarch64", "microvm").unwrap_err();
        assert_eq!(
            e,
            r#"machine "microvm" is not supported on aarch64; expected one of: virt"#
        );
    }

    #[test]
    fn accel_env_beats_file() {
        let file = MonitorSettings {
            accel: Some("tcg".into()),
            ..Default::default()
        };
        assert_eq!(resolve_accel(None, &file), Ok(Accel::Tcg));
        assert_eq!(resolve_accel(Some(""), &file), Ok(Accel::Tcg));
        assert_eq!(
            resolve_accel(None, &MonitorSettings::default()),
            Ok(Accel::Kvm)
        );
        assert_eq!(resolve_accel(Some("kvm"), &file), Ok(Accel::Kvm));
        assert!(resolve_accel(Some("hax"), &file)
            .unwrap_err()
            .contains(QEMU_ACCEL_ENV));
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
