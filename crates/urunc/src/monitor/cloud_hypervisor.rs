//! Cloud Hypervisor: everything on its command line. The guest's console is the
//! serial port on the container's stdio (`--console off --serial tty`); its own
//! seccomp filter follows the container spec (`--seccomp true|false`). Directories are
//! shared over virtio-fs only (it has no 9p): `--fs tag=…,socket=…` per `virtiofsd`,
//! with the guest's memory shared with them (`--memory …,shared=on`).

use super::{Monitor, NetConfig, VmConfig};

pub struct CloudHypervisor;

impl Monitor for CloudHypervisor {
    fn name(&self) -> &'static str {
        "cloud-hypervisor"
    }

    fn default_binary(&self) -> String {
        "cloud-hypervisor".into()
    }

    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String> {
        let mut a: Vec<String> = vec![vm.binary.display().to_string()];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        // vhost-user devices need the guest's memory shared with virtiofsd.
        let shared = if vm.shares.iter().any(|s| s.socket.is_some()) {
            ",shared=on"
        } else {
            ""
        };
        push(&["--memory", &format!("size={}M{shared}", vm.memory_mib)]);
        push(&["--cpus", &format!("boot={}", vm.vcpus)]);
        push(&["--kernel", &vm.kernel.display().to_string()]);
        if let Some(initrd) = &vm.initrd {
            push(&["--initramfs", &initrd.display().to_string()]);
        }
        push(&["--console", "off", "--serial", "tty"]);
        push(&["--seccomp", if vm.seccomp { "true" } else { "false" }]);
        if let Some(n) = net {
            push(&["--net", &format!("tap={},mac={}", n.tap, n.mac)]);
        }
        if let Some(b) = &vm.block {
            let ro = if vm.block_readonly {
                ",readonly=on"
            } else {
                ""
            };
            push(&["--disk", &format!("path={}{ro}", b.display())]);
        }
        // Planning refuses 9p shares for this monitor; a share without a socket is
        // never rendered.
        for s in vm.shares.iter() {
            if let Some(sock) = &s.socket {
                push(&[
                    "--fs",
                    &format!(
                        "tag={},socket={},num_queues=1,queue_size=512",
                        s.tag,
                        sock.display()
                    ),
                ]);
            }
        }
        a.extend(vm.devices.monitor_args.iter().cloned());
        a.extend(vm.extra_args.iter().cloned());
        a.extend(["--cmdline".to_string(), vm.cmdline.clone()]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{net, vm as base};
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn golden_without_network() {
        let v = base("/usr/bin/cloud-hypervisor");
        assert_eq!(
            CloudHypervisor.argv(&v, None),
            [
                "/usr/bin/cloud-hypervisor",
                "--memory",
                "size=256M",
                "--cpus",
                "boot=1",
                "--kernel",
                "/guest/kernel",
                "--console",
                "off",
                "--serial",
                "tty",
                "--seccomp",
                "false",
                "--cmdline",
                "console=ttyS0 panic=-1 quiet",
            ]
        );
        assert_eq!(CloudHypervisor.devices(&v), vec!["/dev/kvm"]);
    }

    #[test]
    fn golden_with_network_initrd_and_block() {
        let mut v = base("/usr/bin/cloud-hypervisor");
        v.initrd = Some(PathBuf::from("/guest/initrd"));
        v.block = Some(PathBuf::from("/guest/block"));
        v.seccomp = true;
        v.vcpus = 2;
        assert_eq!(
            CloudHypervisor.argv(&v, Some(&net())).join(" "),
            "/usr/bin/cloud-hypervisor --memory size=256M --cpus boot=2 --kernel /guest/kernel \
             --initramfs /guest/initrd --console off --serial tty --seccomp true \
             --net tap=urunc0a1b2c3d4e,mac=02:42:0a:58:00:07 --disk path=/guest/block \
             --cmdline console=ttyS0 panic=-1 quiet"
        );
    }

    #[test]
    fn golden_virtiofs_shares() {
        let mut v = base("/usr/bin/cloud-hypervisor");
        v.initrd = Some(PathBuf::from("/guest/initrd"));
        v.block = Some(PathBuf::from("/dev/loop3"));
        v.block_readonly = true;
        v.shares = ["urunc-root", "urunc-vol0"]
            .iter()
            .map(|tag| crate::monitor::SharedDir {
                tag: tag.to_string(),
                path: PathBuf::from(format!("/guest/{tag}")),
                readonly: false,
                socket: Some(PathBuf::from(format!("/tmp/{tag}.sock"))),
            })
            .collect();
        assert_eq!(
            CloudHypervisor.argv(&v, None).join(" "),
            "/usr/bin/cloud-hypervisor --memory size=256M,shared=on --cpus boot=1 \
             --kernel /guest/kernel --initramfs /guest/initrd --console off --serial tty \
             --seccomp false --disk path=/dev/loop3,readonly=on \
             --fs tag=urunc-root,socket=/tmp/urunc-root.sock,num_queues=1,queue_size=512 \
             --fs tag=urunc-vol0,socket=/tmp/urunc-vol0.sock,num_queues=1,queue_size=512 \
             --cmdline console=ttyS0 panic=-1 quiet"
        );
    }
}
