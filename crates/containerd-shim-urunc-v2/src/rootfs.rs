//! The container's root filesystem as containerd hands it to the shim: a list of
//! mounts (an overlay of the image's snapshot, usually) to put on `bundle/rootfs`.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;
use nix::mount::{mount, MsFlags};

use crate::error::{Context, Error, Result};

/// Mounts containerd's rootfs mounts onto `bundle/rootfs`; None when there are none
/// (`ctr run --rootfs`).
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).ctx(|| format!("create {}", target.display()))?;
    for m in mounts {
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        let fstype = (!m.type_.is_empty()).then_some(m.type_.as_str());
        if let Err(e) = mount_one(fstype, source, &m.options, &target) {
            unmount_rootfs(&target);
            return Err(Error::other(e).context(&format!(
                "mount {} ({}) on {}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(Some(target))
}

/// Unmounts what is mounted on `target`. Usually that is the one overlay (or a stack
/// of mounts) containerd asked for, taken off with plain `umount` calls until the
/// kernel says nothing is mounted there (EINVAL); the crate's recursive unmount, which
/// parses the mount table (0.6 ms here, on the path of every task delete), is only for
/// a mount that has others below it or is busy.
pub fn unmount_rootfs(target: &Path) {
    use nix::errno::Errno;
    use nix::mount::{umount2, MntFlags};
    for _ in 0..16 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return,
            Err(_) => break,
        }
    }
    let t = target.to_string_lossy();
    if let Err(e) = containerd_shim::mount::umount_recursive(Some(&t), 0) {
        log::warn!("unmount {t}: {e}; detaching");
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(&t), libc::MNT_DETACH) {
            log::warn!("detach {t}: {e}");
        }
    }
}

/// The propagation flags, which need a mount call of their own.
const PROPAGATION: MsFlags = MsFlags::MS_SHARED
    .union(MsFlags::MS_PRIVATE)
    .union(MsFlags::MS_SLAVE)
    .union(MsFlags::MS_UNBINDABLE);

/// What a mount option does to the flags: sets them, or clears them (`rw`, `dev`);
/// None for a filesystem option, passed on in the data string.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    let set = |f| Some((true, f));
    let clear = |f| Some((false, f));
    match option {
        "defaults" => set(F::empty()),
        "ro" => set(F::MS_RDONLY),
        "rw" => clear(F::MS_RDONLY),
        "nosuid" => set(F::MS_NOSUID),
        "suid" => clear(F::MS_NOSUID),
        "nodev" => set(F::MS_NODEV),
        "dev" => clear(F::MS_NODEV),
        "noexec" => set(F::MS_NOEXEC),
        "exec" => clear(F::MS_NOEXEC),
        "sync" => set(F::MS_SYNCHRONOUS),
        "async" => clear(F::MS_SYNCHRONOUS),
        "dirsync" => set(F::MS_DIRSYNC),
        "remount" => set(F::MS_REMOUNT),
        "mand" => set(F::MS_MANDLOCK),
        "nomand" => clear(F::MS_MANDLOCK),
        "noatime" => set(F::MS_NOATIME),
        "atime" => clear(F::MS_NOATIME),
        "nodiratime" => set(F::MS_NODIRATIME),
        "diratime" => clear(F::MS_NODIRATIME),
        "relatime" => set(F::MS_RELATIME),
        "norelatime" => clear(F::MS_RELATIME),
        "strictatime" => set(F::MS_STRICTATIME),
        "nostrictatime" => clear(F::MS_STRICTATIME),
        "bind" => set(F::MS_BIND),
        "rbind" => set(F::MS_BIND.union(F::MS_REC)),
        "private" => set(F::MS_PRIVATE),
        "rprivate" => set(F::MS_PRIVATE.union(F::MS_REC)),
        "shared" => set(F::MS_SHARED),
        "rshared" => set(F::MS_SHARED.union(F::MS_REC)),
        "slave" => set(F::MS_SLAVE),
        "rslave" => set(F::MS_SLAVE.union(F::MS_REC)),
        "unbindable" => set(F::MS_UNBINDABLE),
        "runbindable" => set(F::MS_UNBINDABLE.union(F::MS_REC)),
        _ => None,
    }
}

/// Mount flags and the filesystem's data string for `options`.
fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        match flag(o) {
            Some((true, f)) => flags |= f,
            Some((false, f)) => flags &= !f,
            None => data.push(o),
        }
    }
    (flags, data.join(","))
}

/// One mount, done by this thread. An overlay whose options approach the page-sized
/// limit of mount data (many image layers) goes to the crate, which shortens the
/// lowerdir paths from a forked child that changes directory; for anything else that
/// fork (about 0.4 ms of a `ctr run` here) buys nothing.
fn mount_one(
    fstype: Option<&str>,
    source: Option<&str>,
    options: &[String],
    target: &Path,
) -> std::result::Result<(), String> {
    let long = options.iter().map(String::len).sum::<usize>() + 512 >= page_size();
    if fstype == Some("overlay") && long {
        return containerd_shim::mount::mount_rootfs(fstype, source, options, target)
            .map_err(|e| e.to_string());
    }
    let (flags, data) = parse_options(options);
    let data = (!data.is_empty()).then_some(data.as_str());
    let fail = |what: &str, e: nix::Error| format!("{what}: {e}");
    if !flags.contains(MsFlags::MS_REMOUNT) || data.is_some() {
        mount(source, target, fstype, flags - PROPAGATION, data).map_err(|e| fail("mount", e))?;
    }
    if flags.intersects(PROPAGATION) {
        let f = flags & (PROPAGATION | MsFlags::MS_REC | MsFlags::MS_SILENT);
        mount(None::<&str>, target, None::<&str>, f, None::<&str>)
            .map_err(|e| fail("set propagation", e))?;
    }
    // A bind mount ignores MS_RDONLY until remounted.
    let bind_ro = MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    if flags.contains(bind_ro) {
        let f = (flags - PROPAGATION) | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, f, None::<&str>)
            .map_err(|e| fail("make read-only", e))?;
    }
    Ok(())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    fn is_mount_point(p: &Path) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = p.to_str().unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(p))
    }

    #[test]
    fn stacked_mounts_and_submounts_are_all_taken_off() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("rootfs");
        std::fs::create_dir(&target).unwrap();
        // Whatever happens below, nothing stays mounted.
        struct Detach(PathBuf);
        impl Drop for Detach {
            fn drop(&mut self) {
                for p in [self.0.join("sub"), self.0.clone(), self.0.clone()] {
                    let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        let _detach = Detach(target.clone());
        let tmpfs = |t: &Path| {
            mount_one(
                Some("tmpfs"),
                Some("tmpfs"),
                &opts(&["size=1m", "nosuid"]),
                t,
            )
            .unwrap()
        };
        // Two stacked on the target, and one below it (the slow path).
        tmpfs(&target);
        tmpfs(&target);
        std::fs::create_dir(target.join("sub")).unwrap();
        tmpfs(&target.join("sub"));
        assert!(is_mount_point(&target));
        unmount_rootfs(&target);
        assert!(!is_mount_point(&target), "still mounted");
        assert!(!is_mount_point(&target.join("sub")), "submount left");
        // Nothing mounted: nothing to do, no error.
        unmount_rootfs(&target);
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l",
        ]));
        assert_eq!(
            (f, d.as_str()),
            (
                MsFlags::empty(),
                "index=off,workdir=/w,upperdir=/u,lowerdir=/l"
            )
        );
        let (f, d) = parse_options(&opts(&["rbind", "ro", "nosuid", "rprivate"]));
        assert_eq!(
            f,
            MsFlags::MS_BIND
                | MsFlags::MS_REC
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_PRIVATE
        );
        assert_eq!(d, "");
        // Later options win, as with mount(8).
        let (f, _) = parse_options(&opts(&["ro", "rw", "noexec", "exec", "nodev"]));
        assert_eq!(f, MsFlags::MS_NODEV);
    }
}
