//! Virtual machine monitors: how to start each one for a [`VmConfig`].
//!
//! Adding a monitor means adding one file here with a [`Monitor`] implementation and
//! listing it in [`ALL`]. Argument generation is pure (`argv`, from a [`VmConfig`] and
//! the guest's network, which is known only when the container starts), so each
//! monitor's command line is unit-tested with golden vectors; executing it is the
//! lifecycle's job.

mod qemu;

use std::path::PathBuf;

use crate::network::NetConfig;

pub use qemu::QEMU_ACCEL_ENV;

/// CPU virtualisation for monitors that can choose (QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
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
    /// A file the guest's second serial port writes to (the guest init reports the
    /// application's exit status there).
    #[serde(default)]
    pub status_file: Option<PathBuf>,
}

pub trait Monitor: Sync {
    /// The `hypervisor` value that selects this monitor.
    fn name(&self) -> &'static str;
    /// Executable looked up on PATH when no path is configured.
    fn default_binary(&self) -> String;
    /// The accelerator this monitor will use, from the operator's environment.
    fn accel(&self) -> Result<Accel, String> {
        Ok(Accel::Kvm)
    }
    /// Host device nodes the monitor needs inside its root.
    fn devices(&self, vm: &VmConfig) -> Vec<&'static str>;
    /// The full argv, program first; with a NIC on tap `net.tap` with MAC `net.mac`
    /// when the guest has a network.
    fn argv(&self, vm: &VmConfig, net: Option<&NetConfig>) -> Vec<String>;
}

pub static ALL: &[&dyn Monitor] = &[&qemu::Qemu];

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
