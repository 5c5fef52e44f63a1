//! Solo5's tenders: `solo5-hvt` (KVM) and `solo5-spt` (a seccomp-confined process, no
//! KVM). Usage: `solo5-hvt [TENDER OPTIONS] [--] KERNEL [APPLICATION ARGUMENTS]`, with
//! `--mem=<MB>`, `--net:<name>=<tap>`, `--net-mac:<name>=<mac>` and
//! `--block:<name>=<path>`, where the device names are the ones in the unikernel's
//! manifest (given by the guest type, see [`super::GuestDevices`]). Solo5 cannot load an
//! initrd. The application's command line is one argument after the kernel.

use super::{Accel, Monitor, NetConfig, VmConfig};

pub struct Solo5 {
    tender: &'static str,
}

impl Solo5 {
    pub const HVT: Solo5 = Solo5 { tender: "hvt" };
    pub const SPT: Solo5 = Solo5 { tender: "spt" };
}

impl Monitor for Solo5 {
    fn name(&self) -> &'static str {
        match self.tender {
            "hvt" => "solo5-hvt",
            _ => "solo5-spt",
        }
    }

    fn default_binary(&self) -> String {
        self.name().into()
    }

    fn uses_kvm(&self, _accel: Accel) -> bool {
        self.tender == "hvt"
    }

    fn supports_initrd(&self) -> bool {
        false
    }

    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String> {
        let mut a = vec![
            vm.binary.display().to_string(),
            format!("--mem={}", vm.memory_mib),
        ];
        let d = &vm.devices;
        if let Some(n) = net {
            a.push(format!("--net:{}={}", d.solo5_net, n.tap));
            a.push(format!("--net-mac:{}={}", d.solo5_net, n.mac));
        }
        if let Some(b) = &vm.block {
            a.push(format!("--block:{}={}", d.solo5_block, b.display()));
        }
        a.extend(d.monitor_args.iter().cloned());
        a.extend(vm.extra_args.iter().cloned());
        a.push("--".into());
        a.push(vm.kernel.display().to_string());
        if !vm.cmdline.is_empty() {
            a.push(vm.cmdline.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{net, vm as base};
    use super::*;
    use std::path::PathBuf;

    fn vm(bin: &str) -> VmConfig {
        let mut v = base(bin);
        v.cmdline = "--hello=world".into();
        v.devices.solo5_net = "service".into();
        v.devices.solo5_block = "storage".into();
        v
    }

    #[test]
    fn golden_hvt() {
        let v = vm("/usr/bin/solo5-hvt");
        assert_eq!(
            Solo5::HVT.argv(&v, None),
            [
                "/usr/bin/solo5-hvt",
                "--mem=256",
                "--",
                "/guest/kernel",
                "--hello=world"
            ]
        );
        assert_eq!(Solo5::HVT.devices(&v), vec!["/dev/kvm"]);
        let mut v = v;
        v.block = Some(PathBuf::from("/guest/block"));
        v.memory_mib = 64;
        assert_eq!(
            Solo5::HVT.argv(&v, Some(&net())).join(" "),
            "/usr/bin/solo5-hvt --mem=64 --net:service=urunc0a1b2c3d4e \
             --net-mac:service=02:42:0a:58:00:07 --block:storage=/guest/block \
             -- /guest/kernel --hello=world"
        );
    }

    #[test]
    fn golden_spt() {
        let mut v = vm("/usr/bin/solo5-spt");
        v.cmdline = String::new();
        assert_eq!(
            Solo5::SPT.argv(&v, Some(&net())).join(" "),
            "/usr/bin/solo5-spt --mem=256 --net:service=urunc0a1b2c3d4e \
             --net-mac:service=02:42:0a:58:00:07 -- /guest/kernel"
        );
        assert!(Solo5::SPT.devices(&v).is_empty());
        assert!(!Solo5::SPT.supports_initrd());
    }
}
