//! The block-backed rootfs (`com.urunc.unikernel.useDMBlock=true`, the model of
//! containerd's devmapper snapshotter): the container rootfs is a whole filesystem on a
//! block device, mounted at the rootfs path. urunc finds the device in mountinfo,
//! hands it to the guest as its root disk and, before the monitor starts, remounts the
//! filesystem's superblock read-only on the host, so the host and the guest never both
//! write to it (see `docs/storage.md`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::unikernel::KEY_USE_DM_BLOCK;

/// One line of `/proc/self/mountinfo`, the fields urunc needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (`/` for a whole filesystem).
    pub root: String,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// True when the superblock (not just this mount) is read-only.
    pub fn super_readonly(&self) -> bool {
        self.super_options.split(',').any(|o| o == "ro")
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            let (major, minor) = l[2].split_once(':')?;
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                root: unescape(l[3]),
                mount_point: PathBuf::from(unescape(l[4])),
                mount_options: l[5].to_string(),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
                super_options: r[2].to_string(),
            })
        })
        .collect()
}

/// The mount at `path` that is visible there (the last one mounted on it).
pub fn mount_at(entries: &[MountEntry], path: &Path) -> Option<MountEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point == path)
        .cloned()
}

/// The mount that holds `path` (the longest mount point above it).
fn mount_holding(entries: &[MountEntry], path: &Path) -> Option<MountEntry> {
    entries
        .iter()
        .rev()
        .filter(|e| path.starts_with(&e.mount_point))
        .max_by_key(|e| e.mount_point.as_os_str().len())
        .cloned()
}

fn read_mountinfo() -> Result<Vec<MountEntry>> {
    let text =
        crate::sys::read_small(Path::new("/proc/self/mountinfo")).map_err(|e| Error::Io {
            context: "read /proc/self/mountinfo".into(),
            err: e,
        })?;
    Ok(parse_mountinfo(&text))
}

/// The block device behind the rootfs, as the plan records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRoot {
    /// The device node (`/dev/loop3`, `/dev/dm-2`); bound at the same path into the
    /// monitor's root.
    pub device: PathBuf,
    pub major: u32,
    pub minor: u32,
    /// The filesystem type the host mounted it as (what the guest mounts it as).
    pub fstype: String,
    /// The rootfs mount point on the host.
    pub mount_point: PathBuf,
}

fn not_a_block_root(rootfs: &Path, why: String) -> Error {
    Error::Config(format!(
        "{KEY_USE_DM_BLOCK}=true but the container rootfs {rootfs:?} is not a mount of a whole block device ({why})"
    ))
}

/// The device node of `major:minor` under `/dev`, by the kernel's name for it.
fn device_node(major: u32, minor: u32) -> Option<PathBuf> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    if name.split('/').any(|c| c == "..") {
        return None;
    }
    let node = Path::new("/dev").join(name);
    let meta = std::fs::metadata(&node).ok()?;
    let want = nix::sys::stat::makedev(major.into(), minor.into());
    (meta.file_type().is_block_device() && meta.rdev() == want).then_some(node)
}

/// Finds the block device mounted (as a whole filesystem) at `rootfs`.
pub fn find(rootfs: &Path) -> Result<BlockRoot> {
    let entries = read_mountinfo()?;
    let Some(m) = mount_at(&entries, rootfs) else {
        let on = mount_holding(&entries, rootfs)
            .map(|e| format!("it is a directory on {} {:?}", e.fstype, e.source))
            .unwrap_or_else(|| "it is not a mount point".into());
        return Err(not_a_block_root(rootfs, on));
    };
    if m.root != "/" {
        return Err(not_a_block_root(
            rootfs,
            format!("it mounts only {:?} of {:?}", m.root, m.source),
        ));
    }
    let device = device_node(m.major, m.minor).ok_or_else(|| {
        not_a_block_root(
            rootfs,
            format!(
                "it is {} {:?}, device {}:{} is not a block device in /dev",
                m.fstype, m.source, m.major, m.minor
            ),
        )
    })?;
    Ok(BlockRoot {
        device,
        major: m.major,
        minor: m.minor,
        fstype: m.fstype,
        mount_point: rootfs.to_path_buf(),
    })
}

/// Reads the first 2 KiB of the device (the ext superblock lives at 1024).
pub fn read_superblock(device: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 2048];
    std::fs::File::open(device)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::Io {
            context: format!("read the superblock of {device:?}"),
            err: e,
        })?;
    Ok(buf)
}

/// True for a plain ext2 filesystem: the ext magic, no journal and none of the
/// ext3/ext4 incompatible features (Rumprun reads only ext2).
pub fn is_ext2(sb: &[u8]) -> bool {
    let le32 = |off: usize| u32::from_le_bytes(sb[off..off + 4].try_into().unwrap());
    if sb.len() < 2048 || sb[1080..1082] != [0x53, 0xEF] {
        return false;
    }
    const HAS_JOURNAL: u32 = 0x4;
    // filetype and meta_bg are ext2 features; everything else incompatible is newer.
    const EXT2_INCOMPAT: u32 = 0x2 | 0x10;
    // sparse_super, large_file, btree_dir.
    const EXT2_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    let (compat, incompat, ro_compat) = (le32(1024 + 0x5C), le32(1024 + 0x60), le32(1024 + 0x64));
    compat & HAS_JOURNAL == 0 && incompat & !EXT2_INCOMPAT == 0 && ro_compat & !EXT2_RO_COMPAT == 0
}

/// The per-mount flags of the mount at `path` (nosuid, nodev, noexec, atime
/// behaviour), as `statvfs` reports them; none when it cannot tell.
fn mount_flags(path: &Path) -> nix::mount::MsFlags {
    use nix::mount::MsFlags;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return MsFlags::empty();
    };
    // SAFETY: statvfs fills the zeroed struct; c is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return MsFlags::empty();
    }
    // Linux's value; the libc crate defines it for glibc only.
    const ST_RELATIME: libc::c_ulong = 0x1000;
    let pairs = [
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    pairs
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

/// At `start`, before the monitor runs: checks that `b.mount_point` is still the
/// device `create` found, and remounts its superblock read-only, which makes every
/// mount of that filesystem on the host read-only. Fails (changing nothing) when the
/// host still writes to it (open files) or it changed since `create`.
pub fn hand_over(b: &BlockRoot) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let entries = read_mountinfo()?;
    match mount_at(&entries, &b.mount_point) {
        Some(m) if (m.major, m.minor) == (b.major, b.minor) && m.root == "/" => {}
        _ => {
            return Err(Error::Other(format!(
                "{KEY_USE_DM_BLOCK}: the rootfs {:?} is no longer a mount of {:?}",
                b.mount_point, b.device
            )))
        }
    }
    // No MS_BIND: this reconfigures the superblock, not just one mount of it. Such a
    // remount also resets the mount's own flags to those passed, so keep them.
    mount(
        None::<&str>,
        &b.mount_point,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | mount_flags(&b.mount_point),
        None::<&str>,
    )
    .map_err(|e| {
        Error::Other(format!(
            "{KEY_USE_DM_BLOCK}: cannot make the host's mount of {:?} ({:?}) read-only before the guest uses it: {e}{}",
            b.device,
            b.mount_point,
            if e == nix::errno::Errno::EBUSY {
                " (files on it are open for writing on the host)"
            } else {
                ""
            }
        ))
    })?;
    let entries = read_mountinfo()?;
    match mount_at(&entries, &b.mount_point) {
        Some(m) if m.super_readonly() => Ok(()),
        _ => Err(Error::Other(format!(
            "{KEY_USE_DM_BLOCK}: {:?} is still mounted read-write on the host",
            b.device
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 7:3 / /run/c\\040d/rootfs rw,relatime shared:40 - ext4 /dev/loop3 rw
91 22 0:50 / /var/lib/o rw - overlay overlay rw,lowerdir=/a
92 22 8:1 /srv/sub /mnt/sub rw - ext4 /dev/sda1 rw
93 22 7:3 / /run/c\\040d/rootfs ro,relatime shared:40 - ext4 /dev/loop3 ro
bad line
";

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let e = parse_mountinfo(INFO);
        assert_eq!(e.len(), 5);
        assert_eq!(e[1].mount_point, PathBuf::from("/run/c d/rootfs"));
        assert_eq!((e[1].major, e[1].minor), (7, 3));
        assert_eq!(
            (e[1].fstype.as_str(), e[1].source.as_str()),
            ("ext4", "/dev/loop3")
        );
        assert!(!e[1].super_readonly());
        // The last mount on a path is the visible one.
        let m = mount_at(&e, Path::new("/run/c d/rootfs")).unwrap();
        assert!(m.super_readonly());
        assert_eq!(mount_at(&e, Path::new("/run/c d")), None);
        let h = mount_holding(&e, Path::new("/var/lib/o/x")).unwrap();
        assert_eq!(h.fstype, "overlay");
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn a_directory_is_not_a_block_root() {
        let dir = tempfile::tempdir().unwrap();
        let e = find(dir.path()).unwrap_err().to_string();
        assert!(e.contains("useDMBlock=true"), "{e}");
        assert!(e.contains("is not a mount of a whole block device"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn ext2_is_told_from_ext4() {
        let mut sb = vec![0u8; 2048];
        assert!(!is_ext2(&sb));
        sb[1080] = 0x53;
        sb[1081] = 0xEF;
        sb[1024 + 0x60] = 0x2; // filetype
        sb[1024 + 0x64] = 0x3; // sparse_super, large_file
        assert!(is_ext2(&sb));
        sb[1024 + 0x5C] = 0x4; // has_journal: ext3
        assert!(!is_ext2(&sb));
        sb[1024 + 0x5C] = 0;
        sb[1024 + 0x60] = 0x42; // extents: ext4
        assert!(!is_ext2(&sb));
    }
}
