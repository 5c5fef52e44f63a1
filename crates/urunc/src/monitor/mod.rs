//! Virtual machine monitors: how to start each one for a [`VmConfig`].
//!
//! Adding a monitor means adding one file here with a [`Monitor`] implementation and
//! listing it in [`ALL`]. Argument generation is pure (`argv`, and `config_file` for
//! monitors configured by a file, from a [`VmConfig`] and the guest's network, which is
//! known only when the container starts), so each monitor's command line is
//! unit-tested with golden vectors; executing it is the lifecycle's job.

mod cloud_hypervisor;
mod firecracker;
mod qemu;
mod solo5;

use std::path::PathBuf;

use crate::config::MonitorSettings;
use crate::network::NetConfig;

pub use qemu::{check_machine, check_machine_for, default_machine, QEMU_ACCEL_ENV};

/// CPU virtualisation for monitors that can choose (QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// `kvm` or `tcg`.
pub fn parse_accel(s: &str) -> Result<Accel, String> {
    match s {
        "kvm" => Ok(Accel::Kvm),
        "tcg" => Ok(Accel::Tcg),
        other => Err(format!("accel {other:?}: expected kvm or tcg")),
    }
}

/// How the guest type wants its devices presented; filled in from the guest
/// ([`crate::guest::Guest::devices`]) so monitors need not know guest types.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GuestDevices {
    /// Solo5 names the network and block devices after the unikernel's manifest.
    pub solo5_net: String,
    pub solo5_block: String,
    /// Options added to QEMU's virtio-net device (e.g. Mewz: modern virtio only).
    pub qemu_nic_options: Vec<String>,
    /// Monitor arguments the guest type needs (e.g. Mewz's exit device on QEMU).
    pub monitor_args: Vec<String>,
}

/// A directory the monitor exports to the guest, by tag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedDir {
    pub tag: String,
    /// As the monitor sees it.
    pub path: PathBuf,
    pub readonly: bool,
    /// virtio-fs: the socket of the `virtiofsd` serving `path` (9p when none).
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// Everything a monitor needs to boot one guest, as plain validated data. Paths are
/// as the monitor sees them inside its own root (see `container::vmroot`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmConfig {
    pub name: String,
    /// The monitor executable (absolute host path; the same path inside its root).
    pub binary: PathBuf,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub accel: Accel,
    /// The spec asked for seccomp: the monitor confines itself where it can.
    pub seccomp: bool,
    /// The monitor's binary installs a seccomp filter of its own (decided at
    /// `create` by [`Monitor::tender_seccomp`], and only when `seccomp` is set), so
    /// urunc must not add one.
    #[serde(default)]
    pub tender_seccomp: bool,
    /// A file the guest's second serial port writes to (the guest init reports the
    /// application's exit status there).
    #[serde(default)]
    pub status_file: Option<PathBuf>,
    /// QEMU's machine type (`pc`, `microvm`, `virt`); empty for other monitors.
    #[serde(default)]
    pub machine: String,
    /// A block device image for the guest.
    #[serde(default)]
    pub block: Option<PathBuf>,
    /// The guest may only read the block device.
    #[serde(default)]
    pub block_readonly: bool,
    /// Host directories exported to the guest (QEMU: 9p or virtio-fs; Cloud
    /// Hypervisor: virtio-fs).
    #[serde(default)]
    pub shares: Vec<SharedDir>,
    #[serde(default)]
    pub devices: GuestDevices,
    /// From the configuration file, appended to the argv.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Where the monitor reads the file from [`Monitor::config_file`].
    #[serde(default)]
    pub config_file: Option<PathBuf>,
}

pub trait Monitor: Sync {
    /// The `hypervisor` value that selects this monitor.
    fn name(&self) -> &'static str;
    /// Executable looked up on PATH when no path is configured.
    fn default_binary(&self) -> String;
    /// True when the monitor runs guests with KVM (given its accelerator).
    fn uses_kvm(&self, _accel: Accel) -> bool {
        true
    }
    /// The accelerator this monitor will use, from the configuration and the
    /// operator's environment.
    fn accel(&self, _settings: &MonitorSettings) -> Result<Accel, String> {
        Ok(Accel::Kvm)
    }
    /// True when the monitor can hand an initrd to the guest.
    fn supports_initrd(&self) -> bool {
        true
    }
    /// Host device nodes the monitor needs inside its root (without the network's).
    fn devices(&self, vm: &VmConfig) -> Vec<&'static str> {
        if self.uses_kvm(vm.accel) {
            vec![KVM_DEVICE]
        } else {
            vec![]
        }
    }
    /// The full argv, program first; with a NIC on tap `net.tap` with MAC `net.mac`
    /// when the guest has a network.
    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String>;
    /// The name (in the container's state directory) and contents of the
    /// configuration file the monitor reads, for monitors configured by a file.
    fn config_file(
        &self,
        _vm: &VmConfig,
        _net: Option<&NetConfig>,
    ) -> Option<(&'static str, String)> {
        None
    }
    /// Whether the executable at `binary` confines itself with seccomp (the
    /// configuration's answer, else the monitor's own detection). Read at `create`.
    fn tender_seccomp(&self, _settings: &MonitorSettings, _binary: &std::path::Path) -> bool {
        false
    }
    /// Runs in the container process right before it execs the monitor, after
    /// privileges are dropped (e.g. to install a seccomp filter). Not pure.
    fn before_exec(&self, _vm: &VmConfig) -> Result<(), String> {
        Ok(())
    }
}

pub const KVM_DEVICE: &str = "/dev/kvm";

pub static ALL: &[&dyn Monitor] = &[
    &qemu::Qemu,
    &firecracker::Firecracker,
    &cloud_hypervisor::CloudHypervisor,
    &solo5::Solo5::HVT,
    &solo5::Solo5::SPT,
];

pub fn by_name(name: &str) -> Option<&'static dyn Monitor> {
    ALL.iter().copied().find(|m| m.name() == name)
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|m| m.name()).collect()
}

/// Device nodes every monitor gets.
pub const BASE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn vm(binary: &str) -> VmConfig {
        VmConfig {
            name: "urunc-c1".into(),
            binary: PathBuf::from(binary),
            memory_mib: 256,
            vcpus: 1,
            kernel: PathBuf::from("/guest/kernel"),
            initrd: None,
            cmdline: "console=ttyS0 panic=-1 quiet".into(),
            accel: Accel::Kvm,
            seccomp: false,
            tender_seccomp: false,
            status_file: None,
            machine: String::new(),
            block: None,
            block_readonly: false,
            shares: vec![],
            devices: GuestDevices::default(),
            extra_args: vec![],
            config_file: None,
        }
    }

    pub fn net() -> NetConfig {
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
}
