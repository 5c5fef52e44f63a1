//! Storage for unikernel containers beyond the kernel and initrd: a block image from
//! the container image (`com.urunc.unikernel.block`, mounted by urunit at
//! `com.urunc.unikernel.blkMntPoint` in Linux guests), the container's rootfs shared
//! with a Linux guest as its root (`com.urunc.unikernel.mountRootfs=true`), and the
//! spec's bind mounts shared as volumes. Directories are shared with 9p (QEMU's
//! `virtio-9p`) or virtio-fs (`virtiofsd`, started by the container process); see
//! `docs/storage.md`.
//!
//! The block-backed rootfs (`com.urunc.unikernel.useDMBlock=true`) is in
//! [`block_root`]. Single-file bind mounts are shared as a directory of their own
//! holding only that file ([`SHARED_FILE`]), which urunit binds onto the destination.
//!
//! Everything else here is pure planning; the monitor root binds what the plan lists
//! (`crate::container::vmroot`) and urunit mounts what its configuration lists.

pub mod block_root;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::unikernel::KEY_USE_DM_BLOCK;

pub use block_root::BlockRoot;

/// `9p` (default) or `virtiofs`: how directories are shared with the guest.
pub const SHAREDFS_ANNOTATION: &str = "com.urunc.sharedfs";
/// The guest device of the (single) virtio-blk disk.
pub const BLOCK_DEVICE: &str = "/dev/vda";
/// The 9p tag of the shared rootfs; volumes are `urunc-vol<N>`.
pub const ROOT_TAG: &str = "urunc-root";
/// The 9p mount options urunit uses.
pub const NINEP_DATA: &str = "trans=virtio,version=9p2000.L,msize=262144";
/// Destinations the guest provides itself: never shared.
const SPECIAL: &[&str] = &["/proc", "/sys", "/dev", "/run", "/tmp"];

/// A host directory the monitor exports to the guest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The host directory, bound into the monitor's root at `target`.
    pub source: PathBuf,
    /// Where the monitor sees it.
    pub target: PathBuf,
    /// The tag the guest mounts it by.
    pub tag: String,
    pub readonly: bool,
    /// For virtio-fs: the vhost-user socket (in the monitor's `/tmp`) where the
    /// container process starts `virtiofsd` before it becomes the monitor.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// `source` is a single file: `target` is a directory of the monitor's root
    /// holding only a bind of it, named [`SHARED_FILE`].
    #[serde(default)]
    pub file: bool,
}

/// The name of the file in the directory a single-file share exports.
pub const SHARED_FILE: &str = "file";

/// The C `virtiofsd` Debian's QEMU installs (under `/usr`, so also visible in the
/// monitor's root).
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

/// How directories are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedFs {
    NineP,
    VirtioFs,
}

/// The transport `value` (the annotation) asks for; without one, 9p on QEMU and
/// virtio-fs on Cloud Hypervisor (which has no 9p).
pub fn shared_fs(value: Option<&String>, monitor: &str) -> Result<SharedFs> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") if monitor == "cloud-hypervisor" => Ok(SharedFs::VirtioFs),
        None | Some("") | Some("9p") => Ok(SharedFs::NineP),
        Some("virtiofs") | Some("virtio-fs") => Ok(SharedFs::VirtioFs),
        Some(other) => Err(Error::Config(format!(
            "{SHAREDFS_ANNOTATION}: expected 9p or virtiofs, got {other:?}"
        ))),
    }
}

/// Whether `monitor` can share directories over `fs`; the error lists what can.
pub fn check_sharing(what: &str, monitor: &str, fs: SharedFs) -> Result<()> {
    let ok = match monitor {
        "qemu" => true,
        "cloud-hypervisor" => fs == SharedFs::VirtioFs,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let asked = match fs {
        SharedFs::NineP => "9p",
        SharedFs::VirtioFs => "virtiofs",
    };
    Err(Error::Config(format!(
        "{what}: hypervisor {monitor:?} cannot share directories with the guest over {asked}; \
         supported: qemu (9p, virtiofs), cloud-hypervisor (virtiofs)"
    )))
}

/// True when the spec's root is read-only.
pub fn root_readonly(bundle: &Bundle) -> bool {
    bundle
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
}

/// A bind mount of the spec to share with the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
    /// The source is a regular file (shared in a directory of its own).
    pub file: bool,
}

fn is_special(dest: &str) -> bool {
    SPECIAL
        .iter()
        .any(|s| dest == *s || dest.starts_with(&format!("{s}/")))
}

/// The spec's bind mounts of directories and regular files (the engines'
/// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, Kubernetes configMap items), in
/// order. Special destinations (`/proc`, `/sys`, `/dev`, `/run`, `/tmp` and below) and
/// other kinds of source (sockets, devices) are skipped. A missing source is an error.
pub fn volumes(bundle: &Bundle) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    for m in bundle.spec.mounts().as_deref().unwrap_or_default() {
        let options = m.options().clone().unwrap_or_default();
        let is_bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if !is_bind {
            continue;
        }
        let dest = m.destination().display().to_string();
        if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
            return Err(Error::Config(format!(
                "mount destination {dest:?}: expected an absolute path without \"..\""
            )));
        }
        if is_special(&dest) {
            continue;
        }
        let Some(source) = m.source().clone() else {
            continue;
        };
        // As runc does: a relative source is relative to the bundle.
        let source = bundle.dir.join(source);
        let meta = std::fs::metadata(&source)
            .map_err(|e| Error::Config(format!("bind mount source {source:?} for {dest}: {e}")))?;
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        out.push(Volume {
            source,
            destination: dest,
            readonly: options.iter().any(|o| o == "ro"),
            file: meta.is_file(),
        });
    }
    Ok(out)
}

/// The filesystem of a block image by its superblock: `ext4` for ext2/3/4 (the ext4
/// driver mounts all three), else `None`.
pub fn block_fstype(mut image: impl Read) -> Option<&'static str> {
    let mut buf = vec![0u8; 1082];
    image.read_exact(&mut buf).ok()?;
    (buf[1080..1082] == [0x53, 0xEF]).then_some("ext4")
}

/// A guest mount point: absolute, no `..`, nothing the 9p/mount data could misread.
pub fn check_mount_point(key: &str, p: &str) -> Result<()> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p == "/" {
        return Err(Error::Config(format!(
            "{key} {p:?}: expected an absolute path other than / without \"..\""
        )));
    }
    Ok(())
}

/// What urunit mounts for a share with `tag` at `target`.
pub fn guest_mount(fs: SharedFs, tag: &str, target: &str, readonly: bool) -> urunit::config::Mount {
    let (fstype, data) = match fs {
        SharedFs::NineP => ("9p", NINEP_DATA),
        SharedFs::VirtioFs => ("virtiofs", ""),
    };
    urunit::config::Mount {
        source: tag.into(),
        target: target.into(),
        fstype: fstype.into(),
        data: data.into(),
        readonly,
        file: None,
    }
}

/// The share of `source` as tag `tag`, seen by the monitor at `/guest/<name>`.
pub fn share(fs: SharedFs, source: PathBuf, name: &str, tag: &str, readonly: bool) -> Share {
    Share {
        source,
        target: Path::new(crate::plan::GUEST_DIR).join(name),
        tag: tag.into(),
        readonly,
        socket: (fs == SharedFs::VirtioFs).then(|| PathBuf::from(format!("/tmp/{tag}.sock"))),
        file: false,
    }
}

/// The files container engines bind into every container (Docker, podman and the
/// CRI plugin), which a Linux guest gets as copies (see [`copied_file`]).
pub const ENGINE_FILES: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Largest engine file copied in; a bigger one is shared like any other volume.
const MAX_COPIED_FILE: u64 = 64 * 1024;

/// The guest copy of `v` when it is one of the engine's small text files
/// ([`ENGINE_FILES`]): copied rather than shared, so that every pod and `docker run`
/// works on any monitor and guest kernel (no 9p or virtio-fs needed). The copy is
/// taken at `create`; later rewrites on the host are not seen (engines write these
/// before they create the container).
pub fn copied_file(v: &Volume) -> Option<urunit::config::GuestFile> {
    if !v.file || !ENGINE_FILES.contains(&v.destination.as_str()) {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(&v.source)
        .ok()?
        .take(MAX_COPIED_FILE + 1)
        .read_to_string(&mut text)
        .ok()?;
    if text.len() as u64 > MAX_COPIED_FILE {
        return None;
    }
    Some(urunit::config::GuestFile {
        path: v.destination.clone(),
        content: text,
        readonly: v.readonly,
    })
}

/// How a guest boots from the block-backed rootfs: the device, and the filesystem it
/// holds when the guest needs a specific one.
pub fn block_root_for(guest: &str, rootfs: &Path) -> Result<BlockRoot> {
    if guest != "linux" && guest != "rumprun" {
        return Err(Error::Config(format!(
            "{KEY_USE_DM_BLOCK}=true: unikernelType {guest:?} cannot boot from a block-backed rootfs; \
             supported: linux (any filesystem its kernel mounts), rumprun (ext2)"
        )));
    }
    let b = block_root::find(rootfs)?;
    if guest == "rumprun" && !block_root::is_ext2(&block_root::read_superblock(&b.device)?) {
        return Err(Error::Config(format!(
            "{KEY_USE_DM_BLOCK}=true: the rootfs device {:?} holds {} but unikernelType \"rumprun\" reads only ext2",
            b.device, b.fstype
        )));
    }
    Ok(b)
}

/// The argv of `virtiofsd` for `s` (inside the monitor's root).
pub fn virtiofsd_argv(s: &Share) -> Vec<String> {
    let socket = s.socket.as_deref().unwrap_or(Path::new(""));
    vec![
        VIRTIOFSD.into(),
        format!("--socket-path={}", socket.display()),
        "-o".into(),
        format!("source={}", s.target.display()),
        "-o".into(),
        "sandbox=chroot".into(),
        "-o".into(),
        "log_level=err".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharedfs_values() {
        assert_eq!(shared_fs(None, "qemu").unwrap(), SharedFs::NineP);
        assert_eq!(
            shared_fs(None, "cloud-hypervisor").unwrap(),
            SharedFs::VirtioFs
        );
        assert_eq!(
            shared_fs(Some(&"9P".into()), "qemu").unwrap(),
            SharedFs::NineP
        );
        assert_eq!(
            shared_fs(Some(&"virtiofs".into()), "qemu").unwrap(),
            SharedFs::VirtioFs
        );
        assert!(shared_fs(Some(&"nfs".into()), "qemu").is_err());
    }

    #[test]
    fn engine_files_are_copied_other_files_shared() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let vol = |dest: &str, file: bool| Volume {
            source: hosts.clone(),
            destination: dest.into(),
            readonly: true,
            file,
        };
        let copy = copied_file(&vol("/etc/hosts", true)).expect("copied");
        assert_eq!(copy.path, "/etc/hosts");
        assert_eq!(copy.content, "127.0.0.1 localhost\n");
        assert!(copy.readonly);
        assert!(copied_file(&vol("/etc/config/app.conf", true)).is_none());
        assert!(copied_file(&vol("/etc/hosts", false)).is_none());
        std::fs::write(&hosts, vec![b'x'; 70 * 1024]).unwrap();
        assert!(
            copied_file(&vol("/etc/hosts", true)).is_none(),
            "too big: shared"
        );
    }

    #[test]
    fn sharing_per_monitor() {
        assert!(check_sharing("x", "qemu", SharedFs::NineP).is_ok());
        assert!(check_sharing("x", "cloud-hypervisor", SharedFs::VirtioFs).is_ok());
        let e = check_sharing("x", "cloud-hypervisor", SharedFs::NineP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("over 9p"), "{e}");
        let e = check_sharing("bind mount /data", "firecracker", SharedFs::VirtioFs)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"firecracker\" cannot share")
                && e.contains("supported: qemu (9p, virtiofs), cloud-hypervisor (virtiofs)"),
            "{e}"
        );
    }

    #[test]
    fn block_root_guests() {
        let dir = tempfile::tempdir().unwrap();
        let e = block_root_for("unikraft", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("supported: linux"), "{e}");
        let e = block_root_for("linux", dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a mount of a whole block device"), "{e}");
    }

    #[test]
    fn special_destinations() {
        for d in ["/proc", "/dev/shm", "/sys/fs/cgroup", "/run", "/tmp"] {
            assert!(is_special(d), "{d}");
        }
        for d in ["/data", "/procfs", "/var/run"] {
            assert!(!is_special(d), "{d}");
        }
    }

    #[test]
    fn ext_superblock_is_recognised() {
        let mut img = vec![0u8; 2048];
        assert_eq!(block_fstype(&img[..]), None);
        img[1080] = 0x53;
        img[1081] = 0xEF;
        assert_eq!(block_fstype(&img[..]), Some("ext4"));
        assert_eq!(block_fstype(&img[..100]), None);
    }

    #[test]
    fn shares_and_guest_mounts() {
        let s = share(SharedFs::NineP, "/r".into(), "rootfs", ROOT_TAG, true);
        assert_eq!(s.target, PathBuf::from("/guest/rootfs"));
        assert_eq!(s.socket, None);
        let m = guest_mount(SharedFs::NineP, ROOT_TAG, "/", true);
        assert_eq!((m.fstype.as_str(), m.data.as_str()), ("9p", NINEP_DATA));
        let v = share(SharedFs::VirtioFs, "/h".into(), "vol0", "urunc-vol0", false);
        assert_eq!(v.socket, Some(PathBuf::from("/tmp/urunc-vol0.sock")));
        assert_eq!(
            virtiofsd_argv(&v).join(" "),
            "/usr/lib/qemu/virtiofsd --socket-path=/tmp/urunc-vol0.sock -o source=/guest/vol0 \
             -o sandbox=chroot -o log_level=err"
        );
        let m = guest_mount(SharedFs::VirtioFs, "urunc-vol0", "/data", false);
        assert_eq!((m.fstype.as_str(), m.data.as_str()), ("virtiofs", ""));
    }

    #[test]
    fn mount_points() {
        assert!(check_mount_point("k", "/data").is_ok());
        for bad in ["data", "/", "/a/../b", ""] {
            assert!(check_mount_point("k", bad).is_err(), "{bad}");
        }
    }
}
