//! From a bundle and its unikernel configuration to a [`Plan`]: which monitor binary
//! to exec with which argv, which image files it needs and which devices. Everything
//! that can be checked before a process exists is checked here, so `create` fails
//! early with one clear message and `start` has nothing left to decide.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::guest::{self, GuestSetup};
use crate::monitor::{self, Accel, VmConfig};
use crate::rootfs_path;
use crate::unikernel::{UnikernelConfig, KEY_BINARY, KEY_INITRD};

pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Where image files appear inside the monitor's root.
pub const GUEST_DIR: &str = "/guest";

/// A file from the container image that the monitor opens, e.g. the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFile {
    /// Which configuration key named it, for error messages.
    pub key: String,
    /// The path as the image names it (resolved again, confined, when opened).
    pub image_path: String,
    /// Where the monitor sees it.
    pub target: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub guest: String,
    pub monitor: String,
    pub accel: Accel,
    pub argv: Vec<String>,
    pub files: Vec<GuestFile>,
    pub devices: Vec<String>,
}

impl Plan {
    pub fn binary(&self) -> &Path {
        Path::new(&self.argv[0])
    }
}

pub fn build(id: &str, bundle: &Bundle, cfg: &UnikernelConfig) -> Result<Plan> {
    let guest = guest::by_name(&cfg.unikernel_type).ok_or_else(|| {
        Error::Config(format!(
            "unknown unikernelType {:?}; supported: {}",
            cfg.unikernel_type,
            guest::names().join(", ")
        ))
    })?;
    let monitor = monitor::by_name(&cfg.hypervisor).ok_or_else(|| {
        Error::Config(format!(
            "unknown hypervisor {:?}; supported: {}",
            cfg.hypervisor,
            monitor::names().join(", ")
        ))
    })?;
    if !guest.monitors().contains(&monitor.name()) {
        return Err(Error::Config(format!(
            "unikernelType {:?} cannot run on hypervisor {:?}; it supports: {}",
            guest.name(),
            monitor.name(),
            guest.monitors().join(", ")
        )));
    }
    let monitor_err = |msg: String| Error::Monitor {
        monitor: monitor.name().into(),
        msg,
    };
    let accel = monitor.accel().map_err(monitor_err)?;
    let binary = find_in_path(&monitor.default_binary()).ok_or_else(|| {
        monitor_err(format!(
            "{} is not installed (not found in PATH)",
            monitor.default_binary()
        ))
    })?;

    let mut files = vec![guest_file(
        &bundle.rootfs,
        KEY_BINARY,
        &cfg.binary,
        "kernel",
    )?];
    if let Some(initrd) = &cfg.initrd {
        files.push(guest_file(&bundle.rootfs, KEY_INITRD, initrd, "initrd")?);
    }

    let mut args = bundle.args();
    if args.is_empty() {
        if let Some(cmdline) = &cfg.cmdline {
            args = cmdline.split_whitespace().map(String::from).collect();
        }
    }
    let setup = GuestSetup {
        args,
        env: bundle.env(),
        initrd: cfg.initrd.is_some(),
        version: cfg.version.clone(),
    };
    let cmdline = guest.cmdline(&setup).map_err(|msg| Error::Guest {
        guest: guest.name().into(),
        msg,
    })?;

    let vm = VmConfig {
        name: format!("urunc-{id}"),
        binary,
        memory_mib: bundle
            .memory_limit()
            .map(|b| (b >> 20).max(1))
            .unwrap_or(DEFAULT_MEMORY_MIB),
        vcpus: bundle.cpu_limit().unwrap_or(1),
        kernel: files[0].target.clone(),
        initrd: files.get(1).map(|f| f.target.clone()),
        cmdline,
        accel,
        seccomp: bundle.has_seccomp(),
    };
    let mut devices: Vec<String> = monitor::BASE_DEVICES
        .iter()
        .map(|d| d.to_string())
        .collect();
    for dev in monitor.devices(&vm) {
        if !Path::new(dev).exists() {
            let hint = if dev == "/dev/kvm" {
                format!(
                    "; set {}=tcg for software emulation",
                    monitor::QEMU_ACCEL_ENV
                )
            } else {
                String::new()
            };
            return Err(monitor_err(format!(
                "{dev} is not available on this host{hint}"
            )));
        }
        devices.push(dev.to_string());
    }
    Ok(Plan {
        guest: guest.name().into(),
        monitor: monitor.name().into(),
        accel,
        argv: monitor.argv(&vm),
        files,
        devices,
    })
}

fn guest_file(rootfs: &Path, key: &str, image_path: &str, name: &str) -> Result<GuestFile> {
    rootfs_path::open_required(rootfs, image_path, key)?;
    Ok(GuestFile {
        key: key.into(),
        image_path: image_path.into(),
        target: Path::new(GUEST_DIR).join(name),
    })
}

/// Looks a program up on PATH (urunc's own, as containerd passes it on).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .and_then(|p| std::fs::canonicalize(p).ok())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
