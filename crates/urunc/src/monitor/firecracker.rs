//! Firecracker: configured by a JSON file (`boot-source`, `machine-config`, `drives`,
//! `network-interfaces`), started with `--no-api --config-file <file>`, and
//! `--no-seccomp` when the container spec asks for no seccomp (its own filters
//! otherwise). The file is written in the container's state directory, never in the
//! image, and bound read-only into the monitor's root at [`CONFIG_TARGET`]. The guest's
//! serial console is Firecracker's stdout.

use serde_json::json;

use super::{Monitor, NetConfig, VmConfig};

/// The file's name in the container's state directory.
pub const CONFIG_NAME: &str = "firecracker.json";

pub struct Firecracker;

impl Monitor for Firecracker {
    fn name(&self) -> &'static str {
        "firecracker"
    }

    fn default_binary(&self) -> String {
        "firecracker".into()
    }

    fn argv(&self, vm: &VmConfig, _net: Option<&NetConfig>) -> Vec<String> {
        let config = vm
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut a = vec![
            vm.binary.display().to_string(),
            "--no-api".into(),
            "--config-file".into(),
            config,
        ];
        if !vm.seccomp {
            a.push("--no-seccomp".into());
        }
        a.extend(vm.devices.monitor_args.iter().cloned());
        a.extend(vm.extra_args.iter().cloned());
        a
    }

    fn config_file(
        &self,
        vm: &VmConfig,
        net: Option<&NetConfig>,
    ) -> Option<(&'static str, String)> {
        let mut boot = json!({
            "kernel_image_path": vm.kernel.display().to_string(),
            "boot_args": vm.cmdline,
        });
        if let Some(initrd) = &vm.initrd {
            boot["initrd_path"] = json!(initrd.display().to_string());
        }
        let drives: Vec<_> = vm
            .block
            .iter()
            .map(|b| {
                json!({
                    "drive_id": "block0",
                    "path_on_host": b.display().to_string(),
                    "is_root_device": false,
                    "is_read_only": vm.block_readonly,
                })
            })
            .collect();
        let nics: Vec<_> = net
            .iter()
            .map(|n| {
                json!({
                    "iface_id": "eth0",
                    "guest_mac": n.mac,
                    "host_dev_name": n.tap,
                })
            })
            .collect();
        let doc = json!({
            "boot-source": boot,
            "machine-config": {
                "vcpu_count": vm.vcpus,
                "mem_size_mib": vm.memory_mib,
                "smt": false,
                "track_dirty_pages": false,
            },
            "drives": drives,
            "network-interfaces": nics,
        });
        Some((
            CONFIG_NAME,
            serde_json::to_string_pretty(&doc).expect("the config serialises") + "\n",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{net, vm as base};
    use super::*;
    use std::path::PathBuf;

    fn vm() -> VmConfig {
        let mut v = base("/usr/local/bin/firecracker");
        v.config_file = Some(PathBuf::from("/guest/firecracker.json"));
        v
    }

    #[test]
    fn golden_argv() {
        assert_eq!(
            Firecracker.argv(&vm(), None).join(" "),
            "/usr/local/bin/firecracker --no-api --config-file /guest/firecracker.json --no-seccomp"
        );
        let mut v = vm();
        v.seccomp = true;
        v.extra_args = vec!["--level".into(), "Debug".into()];
        assert_eq!(
            Firecracker.argv(&v, Some(&net())).join(" "),
            "/usr/local/bin/firecracker --no-api --config-file /guest/firecracker.json --level Debug"
        );
        assert_eq!(Firecracker.devices(&v), vec!["/dev/kvm"]);
    }

    #[test]
    fn golden_config_without_network() {
        let (name, text) = Firecracker.config_file(&vm(), None).unwrap();
        assert_eq!(name, "firecracker.json");
        assert_eq!(
            text,
            r#"{
  "boot-source": {
    "boot_args": "console=ttyS0 panic=-1 quiet",
    "kernel_image_path": "/guest/kernel"
  },
  "drives": [],
  "machine-config": {
    "mem_size_mib": 256,
    "smt": false,
    "track_dirty_pages": false,
    "vcpu_count": 1
  },
  "network-interfaces": []
}
"#
        );
    }

    #[test]
    fn golden_config_with_network_initrd_and_block() {
        let mut v = vm();
        v.initrd = Some(PathBuf::from("/guest/initrd"));
        v.block = Some(PathBuf::from("/guest/block"));
        v.vcpus = 2;
        v.memory_mib = 512;
        let (_, text) = Firecracker.config_file(&v, Some(&net())).unwrap();
        assert_eq!(
            text,
            r#"{
  "boot-source": {
    "boot_args": "console=ttyS0 panic=-1 quiet",
    "initrd_path": "/guest/initrd",
    "kernel_image_path": "/guest/kernel"
  },
  "drives": [
    {
      "drive_id": "block0",
      "is_read_only": false,
      "is_root_device": false,
      "path_on_host": "/guest/block"
    }
  ],
  "machine-config": {
    "mem_size_mib": 512,
    "smt": false,
    "track_dirty_pages": false,
    "vcpu_count": 2
  },
  "network-interfaces": [
    {
      "guest_mac": "02:42:0a:58:00:07",
      "host_dev_name": "urunc0a1b2c3d4e",
      "iface_id": "eth0"
    }
  ]
}
"#
        );
    }
}
