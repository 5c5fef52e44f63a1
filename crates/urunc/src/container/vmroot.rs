//! The monitor's root filesystem, built inside the container's private mount
//! namespace so nothing is ever written into the container image:
//!
//! ```text
//! /usr /bin /sbin /lib* read-only binds of the host's (the monitor and its libraries)
//! /etc/ld.so.cache      read-only bind, so the dynamic loader is as fast as on the host
//! /dev                  tmpfs with only the device nodes the monitor needs
//! /proc /sys /tmp       the container's proc, read-only sysfs, a private tmpfs
//! /guest/<name>         read-only binds of the exact image files (kernel, initrd; a
//!                       block image is writable unless the spec's root is read-only),
//!                       and of files urunc made in the state directory (the initrd with
//!                       the guest init, the writable exit-status file)
//! /guest/rootfs, /guest/vol<N>
//!                       binds of the directories shared with the guest (the container
//!                       rootfs, the spec's bind mounts; see `crate::storage`); for a
//!                       bind mount of a single file, a directory holding only a bind
//!                       of that file
//! /dev/<disk>           the rootfs's block device with `useDMBlock`
//! ```
//!
//! The image files are bound from already-open descriptors (`/proc/self/fd/N`), so the
//! file the monitor sees is the one urunc resolved inside the rootfs, even if the
//! rootfs changed in between.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};

use crate::error::{Context, Result};
use crate::plan::GuestFile;
use crate::rootfs_path;
use crate::storage::Share;

const HOST_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];

pub struct VmRootSpec<'a> {
    pub root: &'a Path,
    pub devices: &'a [String],
    /// The container rootfs, where `files` are resolved (confined) and opened.
    pub rootfs: &'a Path,
    pub files: &'a [GuestFile],
    /// Host files (from the state directory): (source, target, writable).
    pub host_files: &'a [(PathBuf, PathBuf, bool)],
    /// Host directories exported to the guest, bound at their targets.
    pub shares: &'a [Share],
    /// The monitor binary; bound at the same path when not under a host dir above.
    pub binary: &'a Path,
    pub new_pid_ns: bool,
}

fn bind(src: &Path, dst: &Path, readonly: bool) -> Result<()> {
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind {src:?} to {dst:?}"))?;
    if readonly {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, dst, None::<&str>, flags, None::<&str>)
            .ctx(|| format!("make {dst:?} read-only"))?;
    }
    Ok(())
}

fn touch(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("mkdir {parent:?}"))?;
    }
    File::create(p).map(drop).ctx(|| format!("create {p:?}"))
}

fn tmpfs(dst: &Path, opts: &str) -> Result<()> {
    std::fs::create_dir_all(dst).ctx(|| format!("mkdir {dst:?}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), dst, Some("tmpfs"), flags, Some(opts))
        .ctx(|| format!("mount tmpfs on {dst:?}"))
}

/// `/dev/net/tun` for a monitor that attaches to its tap as the container's user: a
/// node of its own with mode 0666 (what udev gives it; hosts without udev leave the
/// original 0600), in a tmpfs of its own at `/dev/net` that allows device nodes and is
/// made read-only once the node exists. Opening it grants nothing by itself: attaching
/// needs the tap's owner, creating interfaces CAP_NET_ADMIN.
fn tun_node(dev: &Path, host: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let rdev = std::fs::metadata(host)
        .ctx(|| format!("stat {host:?}"))?
        .rdev();
    let dir = dev.join("net");
    std::fs::create_dir_all(&dir).ctx(|| format!("mkdir {dir:?}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        flags,
        Some("mode=0755,size=4k"),
    )
    .ctx(|| format!("mount tmpfs on {dir:?}"))?;
    let node = dir.join("tun");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        rdev,
    )
    .ctx(|| format!("mknod {node:?}"))?;
    std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666))
        .ctx(|| format!("chmod {node:?}"))?;
    mount(
        None::<&str>,
        &dir,
        None::<&str>,
        flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .ctx(|| format!("make {dir:?} read-only"))
}

/// Builds the root (without entering it; see [`enter`]). Runs in the container's
/// process, in its (private) mount namespace, before the monitor is executed.
pub fn build(s: &VmRootSpec) -> Result<()> {
    // Nothing we mount from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "make mounts private".into())?;
    let root = s.root;
    tmpfs(root, "mode=0755,size=16m")?;

    for d in HOST_DIRS {
        let host = Path::new("/").join(d);
        let target = root.join(d);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&host).ctx(|| format!("readlink {host:?}"))?;
                symlink(&to, &target).ctx(|| format!("symlink {target:?}"))?;
            }
            Ok(m) if m.is_dir() => {
                std::fs::create_dir(&target).ctx(|| format!("mkdir {target:?}"))?;
                bind(&host, &target, true)?;
            }
            _ => {}
        }
    }
    let ld_cache = Path::new("/etc/ld.so.cache");
    if ld_cache.exists() {
        let target = root.join("etc/ld.so.cache");
        touch(&target)?;
        bind(ld_cache, &target, true)?;
    }

    let dev = root.join("dev");
    tmpfs(&dev, "mode=0755,size=64k")?;
    for d in s.devices {
        let host = Path::new(d);
        if !host.exists() {
            continue;
        }
        if d == crate::network::TUN_DEVICE {
            tun_node(&dev, host)?;
            continue;
        }
        let target = root.join(d.trim_start_matches('/'));
        touch(&target)?;
        bind(host, &target, false)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(name)).ctx(|| format!("symlink /dev/{name}"))?;
    }

    for f in s.files {
        // Opened here, in this mount namespace: a bind mount's source must belong to it.
        let file = rootfs_path::open_required(s.rootfs, &f.image_path, &f.key)?;
        let dst = root.join(f.target.strip_prefix("/").unwrap_or(&f.target));
        touch(&dst)?;
        let src = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        bind(&src, &dst, !f.writable)?;
    }
    for sh in s.shares {
        let dst = root.join(sh.target.strip_prefix("/").unwrap_or(&sh.target));
        std::fs::create_dir_all(&dst).ctx(|| format!("mkdir {dst:?}"))?;
        if sh.file {
            // 9p and virtio-fs export directories: one of its own, holding the file.
            let file = dst.join(crate::storage::SHARED_FILE);
            touch(&file)?;
            bind(&sh.source, &file, sh.readonly)?;
        } else {
            bind(&sh.source, &dst, sh.readonly)?;
        }
    }
    if s.shares.iter().any(|sh| sh.socket.is_some()) {
        // virtiofsd keeps its lock files in /var/run/virtiofsd.
        tmpfs(&root.join("var/run"), "mode=0755,size=64k")?;
    }
    for (src, target, writable) in s.host_files {
        let dst = root.join(target.strip_prefix("/").unwrap_or(target));
        touch(&dst)?;
        bind(src, &dst, !writable)?;
    }

    let proc_dir = root.join("proc");
    std::fs::create_dir(&proc_dir).ctx(|| "mkdir /proc".into())?;
    if s.new_pid_ns {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("proc"), &proc_dir, Some("proc"), flags, None::<&str>)
            .ctx(|| "mount /proc".into())?;
    } else {
        bind(Path::new("/proc"), &proc_dir, false)?;
    }
    let sys = root.join("sys");
    std::fs::create_dir(&sys).ctx(|| "mkdir /sys".into())?;
    bind(Path::new("/sys"), &sys, true)?;
    tmpfs(&root.join("tmp"), "mode=1777,size=64m")?;
    // Last, so that no mount above (such as /tmp) hides a monitor installed there.
    let covered = HOST_DIRS
        .iter()
        .any(|d| s.binary.starts_with(Path::new("/").join(d)));
    if !covered {
        let target = root.join(s.binary.strip_prefix("/").unwrap_or(s.binary));
        touch(&target)?;
        bind(s.binary, &target, true)?;
    }
    Ok(())
}

/// Pivots into the root made by [`build`]. Separate from it so that createContainer
/// hooks run in between: the OCI spec runs them in the container's namespaces but
/// before the pivot, with their paths resolved as on the host.
pub fn enter(root: &Path) -> Result<()> {
    chdir(root).ctx(|| format!("chdir {root:?}"))?;
    pivot_root(".", ".").ctx(|| "pivot_root into the monitor root".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the host root".into())?;
    chdir("/").ctx(|| "chdir /".into())?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, "/", None::<&str>, ro, None::<&str>)
        .ctx(|| "make the monitor root read-only".into())?;
    Ok(())
}
