//! From a bundle and its unikernel configuration to a [`Plan`]: which monitor binary
//! to exec, what to boot, which image files and devices it needs, how the guest is
//! initialised (directly, or by urunc's guest init) and what to do about the network.
//! Everything that can be checked before a process exists is checked here, so `create`
//! fails early with one clear message.
//!
//! The plan is pure data. Only the network is left open: the container's network
//! namespace may be configured after `create` (as `ctr run --cni` does), so the
//! container process discovers it at `start` and then renders the final argv with
//! [`Plan::render`] — the same pure guest and monitor functions, given the network.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::config::{Config, MonitorSettings};
use crate::error::{Error, Result};
use crate::guest::{self, GuestSetup};
use crate::guest_init::{self, UrunitPlan};
use crate::monitor::{self, Accel, VmConfig};
use crate::network::{self, NetConfig, NetMode, NetPlan, Netns};
use crate::rootfs_path;
use crate::storage::{self, BlockRoot, Share, SharedFs};
use crate::unikernel::{
    UnikernelConfig, KEY_BINARY, KEY_BLK_MNT_POINT, KEY_BLOCK, KEY_INITRD, KEY_MOUNT_ROOTFS,
    KEY_USE_DM_BLOCK,
};

pub const DEFAULT_MEMORY_MIB: u64 = 256;
pub const DEFAULT_VCPUS: u32 = 1;
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
    /// Bound read-write (a block image when the spec's root is not read-only).
    #[serde(default)]
    pub writable: bool,
}

/// A file urunc makes in the container's state directory for the monitor (the initrd
/// with urunit, the exit-status file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// The name in the state directory.
    pub name: String,
    /// Where the monitor sees it.
    pub target: PathBuf,
    pub writable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub guest: String,
    pub monitor: String,
    pub accel: Accel,
    /// The monitor's argv as `create` rendered it, without network (for inspection;
    /// `start` renders the one it executes with [`Plan::render`]).
    pub argv: Vec<String>,
    /// The VM; its `cmdline` is filled in by [`Plan::render`].
    pub vm: VmConfig,
    /// What the guest's command line is built from.
    pub setup: GuestSetup,
    pub network: NetPlan,
    /// Set when the guest boots urunc's guest init.
    pub urunit: Option<UrunitPlan>,
    pub files: Vec<GuestFile>,
    pub state_files: Vec<StateFile>,
    pub devices: Vec<String>,
    /// Host directories bound into the monitor's root and exported to the guest.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// The block device behind the rootfs (`useDMBlock`), the guest's root disk; `start`
    /// makes the host's mount of it read-only first.
    #[serde(default)]
    pub block_root: Option<BlockRoot>,
    /// The monitor's settings from the configuration file as `create` read them
    /// (a record: the values are already in `vm`, so later edits change nothing).
    #[serde(default)]
    pub settings: MonitorSettings,
}

impl Plan {
    pub fn binary(&self) -> &Path {
        &self.vm.binary
    }

    /// The monitor's argv for a guest with network `net` (none: no NIC). Pure.
    pub fn render(&self, net: Option<&NetConfig>) -> Result<Vec<String>> {
        let (monitor, vm) = self.render_vm(net)?;
        Ok(monitor.argv(&vm, net))
    }

    /// The monitor's configuration file (its name in the state directory and its
    /// contents) for a guest with network `net`, for monitors configured by a file.
    pub fn render_config_file(&self, net: Option<&NetConfig>) -> Result<Option<(String, String)>> {
        let (monitor, vm) = self.render_vm(net)?;
        Ok(monitor
            .config_file(&vm, net)
            .map(|(name, text)| (name.to_string(), text)))
    }

    fn render_vm(
        &self,
        net: Option<&NetConfig>,
    ) -> Result<(&'static dyn monitor::Monitor, VmConfig)> {
        let guest = guest::by_name(&self.guest)
            .ok_or_else(|| Error::Config(format!("unknown unikernelType {:?}", self.guest)))?;
        let monitor = monitor::by_name(&self.monitor)
            .ok_or_else(|| Error::Config(format!("unknown hypervisor {:?}", self.monitor)))?;
        // With urunit the network travels in its configuration, not on the command line.
        let guest_net = if self.urunit.is_some() { None } else { net };
        let cmdline = guest
            .cmdline_net(&self.setup, guest_net)
            .map_err(|msg| Error::Guest {
                guest: guest.name().into(),
                msg,
            })?;
        let vm = VmConfig {
            cmdline,
            ..self.vm.clone()
        };
        Ok((monitor, vm))
    }

    /// urunit's configuration for a guest with network `net`, when it boots urunit.
    pub fn urunit_config(&self, net: Option<&NetConfig>) -> Option<urunit::config::Config> {
        self.urunit
            .as_ref()
            .map(|u| guest_init::guest_config(&u.config, net))
    }
}

pub fn build(id: &str, bundle: &Bundle, cfg: &UnikernelConfig, config: &Config) -> Result<Plan> {
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
    if cfg.initrd.is_some() && !(guest.supports_initrd() && monitor.supports_initrd()) {
        let who = if guest.supports_initrd() {
            format!("hypervisor {:?} cannot load an initrd", monitor.name())
        } else {
            format!("unikernelType {:?} takes no initrd", guest.name())
        };
        return Err(Error::Config(format!(
            "{KEY_INITRD} is set but {who} ({}: {})",
            guest.name(),
            guest::describe(guest)
        )));
    }
    let monitor_err = |msg: String| Error::Monitor {
        monitor: monitor.name().into(),
        msg,
    };
    let settings = config.monitor(monitor.name());
    let accel = monitor.accel(&settings).map_err(monitor_err)?;
    let binary = match &settings.binary_path {
        Some(p) => find_in_path(&p.display().to_string()).ok_or_else(|| {
            monitor_err(format!(
                "{p:?} (binary_path in the configuration file) is not an executable file"
            ))
        })?,
        None => find_in_path(&monitor.default_binary()).ok_or_else(|| {
            monitor_err(format!(
                "{} is not installed (not found in PATH; set binary_path in [monitors.{}] of {})",
                monitor.default_binary(),
                monitor.name(),
                crate::config::DEFAULT_PATH
            ))
        })?,
    };

    let annotations = bundle.annotations();
    let wants_urunit = guest_init::requested(annotations.get(guest_init::ANNOTATION))?;
    let urunit_binary = match (guest.supports_guest_init(), wants_urunit, &cfg.initrd) {
        (_, Some(false), _) => None,
        (false, Some(true), _) => {
            return Err(Error::Config(format!(
                "{}=true: guest type {:?} cannot boot urunc's guest init",
                guest_init::ANNOTATION,
                guest.name()
            )))
        }
        (true, Some(true), None) => {
            return Err(Error::Config(format!(
                "{}=true needs an initrd ({KEY_INITRD}) to add the guest init to",
                guest_init::ANNOTATION
            )))
        }
        (true, want, Some(_)) => guest_init::locate(want == Some(true))?,
        _ => None,
    };

    let mut files = vec![guest_file(
        &bundle.rootfs,
        KEY_BINARY,
        &cfg.binary,
        "kernel",
    )?];
    let mut state_files = Vec::new();
    if let Some(initrd) = &cfg.initrd {
        let file = guest_file(&bundle.rootfs, KEY_INITRD, initrd, "initrd")?;
        if urunit_binary.is_some() {
            // The monitor gets urunc's copy with urunit appended (see crate::guest_init).
            state_files.push(StateFile {
                name: guest_init::INITRD_FILE.into(),
                target: file.target,
                writable: false,
            });
            state_files.push(StateFile {
                name: guest_init::EXIT_STATUS_FILE.into(),
                target: guest_init::STATUS_TARGET.into(),
                writable: true,
            });
        } else {
            files.push(file);
        }
    }

    let mut args = bundle.args();
    if args.is_empty() {
        if let Some(cmdline) = &cfg.cmdline {
            args = cmdline.split_whitespace().map(String::from).collect();
        }
    }
    let process = bundle.spec.process().as_ref();
    let user = process.map(|p| p.user().clone()).unwrap_or_default();
    let env = bundle.env();
    let (mut setup, mut init_plan) = match (urunit_binary, &cfg.initrd) {
        (Some(binary), Some(image_initrd)) => {
            let config = urunit::config::Config {
                args,
                debug: env
                    .iter()
                    .any(|e| e == &format!("{}=1", guest_init::DEBUG_ENV)),
                env,
                cwd: process
                    .map(|p| p.cwd().display().to_string())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "/".into()),
                uid: user.uid(),
                gid: user.gid(),
                additional_gids: user.additional_gids().clone().unwrap_or_default(),
                hostname: bundle.spec.hostname().clone().filter(|h| !h.is_empty()),
                net: None,
                status_port: Some(guest_init::STATUS_PORT.into()),
                root: None,
                mounts: vec![],
                files: vec![],
            };
            let setup = GuestSetup {
                args: vec![urunit::BINARY_PATH.into()],
                env: vec![],
                initrd: true,
                version: cfg.version.clone(),
                block_mount: None,
            };
            let plan = UrunitPlan {
                binary,
                image_initrd: image_initrd.clone(),
                config,
            };
            (setup, Some(plan))
        }
        _ => (
            GuestSetup {
                args,
                env,
                initrd: cfg.initrd.is_some(),
                version: cfg.version.clone(),
                block_mount: None,
            },
            None,
        ),
    };

    // Storage (see crate::storage): the block image, the shared rootfs, volumes.
    let root_ro = storage::root_readonly(bundle);
    let mut block = None;
    if let Some(image) = &cfg.block {
        if !guest.supports_block() {
            return Err(Error::Config(format!(
                "{KEY_BLOCK} is set but unikernelType {:?} takes no block device",
                guest.name()
            )));
        }
        let mut file = guest_file(&bundle.rootfs, KEY_BLOCK, image, "block")?;
        file.writable = !root_ro;
        block = Some(file.target.clone());
        match (init_plan.as_mut(), &cfg.blk_mnt_point) {
            (Some(init), Some(mnt)) => {
                storage::check_mount_point(KEY_BLK_MNT_POINT, mnt)?;
                let f = rootfs_path::open_required(&bundle.rootfs, image, KEY_BLOCK)?;
                let fstype = storage::block_fstype(f).ok_or_else(|| {
                    Error::Config(format!(
                        "{KEY_BLOCK} {image:?}: not an ext2/3/4 filesystem image, the only kind urunit mounts in a Linux guest"
                    ))
                })?;
                init.config.mounts.push(urunit::config::Mount {
                    source: storage::BLOCK_DEVICE.into(),
                    target: mnt.clone(),
                    fstype: fstype.into(),
                    data: String::new(),
                    readonly: root_ro,
                    file: None,
                });
            }
            (None, mnt) => setup.block_mount = mnt.clone(),
            (Some(_), None) => {}
        }
        files.push(file);
    }
    // The block-backed rootfs: the device is the guest's disk and its root.
    let mut block_root = None;
    if cfg.use_dm_block {
        if cfg.block.is_some() || cfg.mount_rootfs {
            return Err(Error::Config(format!(
                "{KEY_USE_DM_BLOCK}=true cannot be combined with {KEY_BLOCK} or {KEY_MOUNT_ROOTFS}=true: the rootfs device is the guest's only disk and its root"
            )));
        }
        let b = storage::block_root_for(guest.name(), &bundle.rootfs)?;
        match init_plan.as_mut() {
            Some(init) => {
                init.config.root = Some(urunit::config::Mount {
                    source: storage::BLOCK_DEVICE.into(),
                    target: "/".into(),
                    fstype: b.fstype.clone(),
                    data: String::new(),
                    readonly: root_ro,
                    file: None,
                })
            }
            None if guest.supports_guest_init() => {
                return Err(Error::Config(format!(
                    "{KEY_USE_DM_BLOCK}=true needs urunc's guest init for a {} guest: an initrd ({KEY_INITRD}) and urunit installed",
                    guest.name()
                )))
            }
            None => setup.block_mount = Some("/".into()),
        }
        block = Some(b.device.clone());
        block_root = Some(b);
    }
    let sharedfs = storage::shared_fs(
        annotations.get(storage::SHAREDFS_ANNOTATION),
        monitor.name(),
    )?;
    let mut shares = Vec::new();
    let can_share = |what: &str| -> Result<()> {
        storage::check_sharing(what, monitor.name(), sharedfs)?;
        if sharedfs == SharedFs::VirtioFs && !Path::new(storage::VIRTIOFSD).is_file() {
            return Err(Error::Config(format!(
                "{what}: {}=virtiofs needs {} (Debian's qemu-system-common); use 9p",
                storage::SHAREDFS_ANNOTATION,
                storage::VIRTIOFSD
            )));
        }
        Ok(())
    };
    if cfg.mount_rootfs {
        let Some(init) = init_plan.as_mut() else {
            return Err(Error::Config(format!(
                "{KEY_MOUNT_ROOTFS}=true needs urunc's guest init: a Linux guest with an initrd ({KEY_INITRD}) and urunit installed"
            )));
        };
        can_share(KEY_MOUNT_ROOTFS)?;
        shares.push(storage::share(
            sharedfs,
            bundle.rootfs.clone(),
            "rootfs",
            storage::ROOT_TAG,
            root_ro,
        ));
        init.config.root = Some(storage::guest_mount(
            sharedfs,
            storage::ROOT_TAG,
            "/",
            root_ro,
        ));
    }
    if let Some(init) = init_plan.as_mut() {
        for (i, v) in storage::volumes(bundle)?.iter().enumerate() {
            if let Some(file) = storage::copied_file(v) {
                init.config.files.push(file);
                continue;
            }
            can_share(&format!("bind mount {}", v.destination))?;
            let tag = format!("urunc-vol{i}");
            let mut mount = storage::guest_mount(sharedfs, &tag, &v.destination, v.readonly);
            let mut share = storage::share(
                sharedfs,
                v.source.clone(),
                &format!("vol{i}"),
                &tag,
                v.readonly,
            );
            if v.file {
                mount.file = Some(storage::SHARED_FILE.into());
                share.file = true;
            }
            init.config.mounts.push(mount);
            shares.push(share);
        }
    }

    let mode = network::requested_mode(
        &annotations,
        std::env::var(network::MODE_ENV).ok().as_deref(),
    )
    .map_err(Error::Config)?;
    let network = network::plan(
        id,
        netns_of(bundle),
        mode,
        dns_of(bundle),
        user.uid(),
        user.gid(),
    )
    .map_err(|e| Error::Other(format!("network: {e}")))?;

    // Only asked when a filter is in play: finding out may mean reading the binary.
    let tender_seccomp = bundle.has_seccomp() && monitor.tender_seccomp(&settings, &binary);
    let mut vm = VmConfig {
        name: format!("urunc-{id}"),
        binary,
        // The spec's limits win over the configuration file's defaults.
        memory_mib: bundle
            .memory_limit()
            .map(|b| (b >> 20).max(1))
            .or(settings.default_memory_mb)
            .unwrap_or(DEFAULT_MEMORY_MIB),
        vcpus: bundle
            .cpu_limit()
            .or(settings.default_vcpus)
            .unwrap_or(DEFAULT_VCPUS),
        kernel: files[0].target.clone(),
        initrd: cfg
            .initrd
            .as_ref()
            .map(|_| Path::new(GUEST_DIR).join("initrd")),
        cmdline: String::new(),
        accel,
        seccomp: bundle.has_seccomp(),
        tender_seccomp,
        status_file: init_plan.as_ref().map(|_| guest_init::STATUS_TARGET.into()),
        // The image's (or the container's) choice, else the host's, else the default.
        machine: match monitor.name() {
            "qemu" => cfg
                .qemu_machine
                .clone()
                .or_else(|| settings.machine.clone())
                .unwrap_or_else(|| monitor::default_machine().into()),
            _ => String::new(),
        },
        block,
        block_readonly: root_ro,
        shares: shares
            .iter()
            .map(|s| monitor::SharedDir {
                tag: s.tag.clone(),
                path: s.target.clone(),
                readonly: s.readonly,
                socket: s.socket.clone(),
            })
            .collect(),
        devices: guest.devices(monitor.name()),
        extra_args: settings.extra_args.clone(),
        config_file: None,
    };
    // A monitor configured by a file reads it from the state directory (rewritten at
    // start, when the network is known).
    if let Some((name, _)) = monitor.config_file(&vm, None) {
        let target = Path::new(GUEST_DIR).join(name);
        state_files.push(StateFile {
            name: name.into(),
            target: target.clone(),
            writable: false,
        });
        vm.config_file = Some(target);
    }
    let mut devices: Vec<String> = monitor::BASE_DEVICES
        .iter()
        .map(|d| d.to_string())
        .collect();
    for dev in monitor.devices(&vm) {
        if !Path::new(dev).exists() {
            let hint = match (dev, monitor.name()) {
                (monitor::KVM_DEVICE, "qemu") => format!(
                    "; set {}=tcg (or accel = \"tcg\" in [monitors.qemu] of the configuration file) for software emulation",
                    monitor::QEMU_ACCEL_ENV
                ),
                (monitor::KVM_DEVICE, _) => format!("; {} needs KVM", monitor.name()),
                _ => String::new(),
            };
            return Err(monitor_err(format!(
                "{dev} is not available on this host{hint}"
            )));
        }
        devices.push(dev.to_string());
    }
    if let Some(b) = &block_root {
        // Bound at the same path into the monitor's root.
        devices.push(b.device.display().to_string());
    }
    if network.mode != NetMode::None {
        if Path::new(network::TUN_DEVICE).exists() {
            devices.push(network::TUN_DEVICE.into());
        } else if network.mode != NetMode::Auto {
            return Err(Error::Other(format!(
                "network: {} is not available on this host",
                network::TUN_DEVICE
            )));
        }
    }
    let mut plan = Plan {
        guest: guest.name().into(),
        monitor: monitor.name().into(),
        accel,
        argv: vec![],
        vm,
        setup,
        network,
        urunit: init_plan,
        files,
        state_files,
        devices,
        shares,
        block_root,
        settings,
    };
    // Checks the command line now, so a bad one fails `create`.
    plan.argv = plan.render(None)?;
    Ok(plan)
}

/// The container's network namespace from the spec.
fn netns_of(bundle: &Bundle) -> Netns {
    let ns = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    match ns
        .iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
    {
        None => Netns::Host,
        Some(n) => match n.path() {
            Some(p) => Netns::Joined(p.clone()),
            None => Netns::New,
        },
    }
}

/// Name servers for the guest: from the `/etc/resolv.conf` the engine mounts into the
/// container (Docker, CRI), else the image's own.
fn dns_of(bundle: &Bundle) -> Vec<Ipv4Addr> {
    const MAX: u64 = 64 << 10;
    let mounted = bundle
        .spec
        .mounts()
        .as_ref()
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.destination() == Path::new("/etc/resolv.conf"))
        })
        .and_then(|m| m.source().clone());
    let file = match mounted {
        Some(src) => std::fs::File::open(src).ok(),
        None => rootfs_path::open_in_root(&bundle.rootfs, "/etc/resolv.conf", "resolv.conf").ok(),
    };
    let mut text = String::new();
    if let Some(f) = file {
        let _ = f.take(MAX).read_to_string(&mut text);
    }
    network::parse_resolv_conf(&text)
}

fn guest_file(rootfs: &Path, key: &str, image_path: &str, name: &str) -> Result<GuestFile> {
    rootfs_path::open_required(rootfs, image_path, key)?;
    Ok(GuestFile {
        key: key.into(),
        image_path: image_path.into(),
        target: Path::new(GUEST_DIR).join(name),
        writable: false,
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
