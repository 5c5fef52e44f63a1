//! Packaging urunit, the guest init for Linux guests (the `urunit` crate), into a guest.
//!
//! The image's initrd is never modified. At `create` urunc writes
//! `<state dir>/initrd`: a copy of the image's initrd, padded, followed by a newc cpio
//! archive holding `/urunit` (the static binary) and `/dev/console`. At `start`, once the
//! network is known, the container process appends a last archive holding
//! `/urunit.json`. The kernel unpacks concatenated archives in order (compressed or
//! not), so the guest sees the image's files plus urunc's. The monitor sees the result
//! as `/guest/initrd` and boots the kernel with `rdinit=/urunit`.
//!
//! urunit writes the application's exit status to the guest's second serial port, which
//! QEMU connects to `<state dir>/exit-status` ([`EXIT_STATUS_FILE`]);
//! [`read_exit_status`] reads it back.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use urunit::config::Config;

use crate::error::{Context, Error, Result};
use crate::network::NetConfig;

/// Path of the urunit binary to use (otherwise `urunit` next to the urunc binary).
pub const ENV: &str = "URUNC_URUNIT";
/// `true`: the container must boot with urunit; `false`: never (the image's own init
/// then gets the command line as before). Unset: urunit when it is installed.
pub const ANNOTATION: &str = "com.urunc.urunit";
/// `URUNIT_DEBUG=1` in the container's environment makes urunit describe what it does.
pub const DEBUG_ENV: &str = "URUNIT_DEBUG";
/// Files in the container's state directory.
pub const INITRD_FILE: &str = "initrd";
pub const EXIT_STATUS_FILE: &str = "exit-status";
/// Where the monitor sees them.
pub const INITRD_TARGET: &str = "/guest/initrd";
pub const STATUS_TARGET: &str = "/guest/exit-status";
/// The guest's device for the status port: the second serial port.
pub const STATUS_PORT: &str = "/dev/ttyS1";

/// What `create` decided for a guest booting with urunit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrunitPlan {
    /// The host binary copied into the initrd.
    pub binary: PathBuf,
    /// The image's initrd, a path inside the rootfs (resolved confined when copied).
    pub image_initrd: String,
    /// urunit's configuration without the network (added at start).
    pub config: Config,
}

/// Whether the configuration asks for urunit: `Some(true)` required, `Some(false)`
/// refused, `None` when available.
pub fn requested(value: Option<&String>) -> Result<Option<bool>> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") | Some("yes") => Ok(Some(true)),
        Some("false") | Some("0") | Some("no") => Ok(Some(false)),
        Some(other) => Err(Error::Config(format!(
            "{ANNOTATION}: expected true or false, got {other:?}"
        ))),
    }
}

/// True for an ELF executable without a program interpreter (statically linked), the
/// only kind that runs in an arbitrary guest initrd.
pub fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    let mut f = File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(false); // not a 64-bit little-endian ELF
    }
    let phoff = u64::from_le_bytes(h[0x20..0x28].try_into().unwrap());
    let phentsize = u16::from_le_bytes([h[0x36], h[0x37]]) as u64;
    let phnum = u16::from_le_bytes([h[0x38], h[0x39]]) as u64;
    if phentsize < 4 || phnum > 256 {
        return Ok(false);
    }
    for i in 0..phnum {
        f.seek(SeekFrom::Start(phoff + i * phentsize))?;
        let mut t = [0u8; 4];
        f.read_exact(&mut t)?;
        if u32::from_le_bytes(t) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

/// Finds the urunit binary: [`ENV`], else `urunit` beside the running urunc. A binary
/// named by [`ENV`] must be static; one found beside urunc that is not (a development
/// build) is ignored unless `required`.
pub fn locate(required: bool) -> Result<Option<PathBuf>> {
    let check = |p: PathBuf, from: &str| -> Result<Option<PathBuf>> {
        match is_static_elf(&p) {
            Ok(true) => Ok(Some(p)),
            Ok(false) => Err(Error::Config(format!(
                "urunit {p:?} ({from}) is not a static executable; build it with `make build`"
            ))),
            Err(e) => Err(Error::Config(format!("urunit {p:?} ({from}): {e}"))),
        }
    };
    if let Some(p) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        return check(PathBuf::from(p), ENV);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("urunit")))
        .filter(|p| p.is_file());
    match beside {
        Some(p) => match check(p, "beside urunc") {
            Ok(found) => Ok(found),
            Err(e) if required => Err(e),
            Err(_) => Ok(None),
        },
        None if required => Err(Error::Config(format!(
            "{ANNOTATION}=true but urunit is not installed beside urunc and {ENV} is not set"
        ))),
        None => Ok(None),
    }
}

/// A writer of newc (`070701`) cpio archives, the format the kernel unpacks.
pub struct Newc {
    out: Vec<u8>,
    ino: u32,
}

impl Default for Newc {
    fn default() -> Self {
        Self::new()
    }
}

impl Newc {
    pub fn new() -> Newc {
        // Every entry has nlink 1, so the kernel never links entries as hard links
        // whatever their inode numbers (which need only differ within an archive).
        Newc {
            out: Vec::new(),
            ino: 0,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad(4);
        self.out.extend_from_slice(data);
        self.pad(4);
    }

    fn pad(&mut self, to: usize) {
        let n = self.out.len().next_multiple_of(to);
        self.out.resize(n, 0);
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Self {
        self.entry(name, libc::S_IFDIR | perm, &[], (0, 0));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], perm: u32) -> &mut Self {
        self.entry(name, libc::S_IFREG | perm, data, (0, 0));
        self
    }

    pub fn chardev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, libc::S_IFCHR | perm, &[], (major, minor));
        self
    }

    /// The archive with its trailer, padded to 512 bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.pad(512);
        self.out
    }
}

/// The archive urunc adds at `create`: the binary and a console node.
pub fn binary_archive(binary: &[u8]) -> Vec<u8> {
    let mut a = Newc::new();
    a.dir("dev", 0o755)
        .chardev("dev/console", 0o600, 5, 1)
        .file(urunit::BINARY_PATH, binary, 0o755);
    a.finish()
}

/// The archive added at `start`: the configuration.
pub fn config_archive(cfg: &Config) -> Vec<u8> {
    let mut a = Newc::new();
    a.file(urunit::CONFIG_PATH, cfg.to_json().as_bytes(), 0o600);
    a.finish()
}

/// urunit's final configuration: the plan's, with the network the container got.
pub fn guest_config(template: &Config, net: Option<&NetConfig>) -> Config {
    Config {
        net: net.map(NetConfig::guest),
        ..template.clone()
    }
}

/// Writes `<state dir>/initrd` (image initrd + urunit) and an empty
/// `<state dir>/exit-status` the monitor (running as `uid`/`gid`) can write.
pub fn prepare(
    state_dir: &Path,
    rootfs: &Path,
    plan: &UrunitPlan,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let mut image = crate::rootfs_path::open_required(
        rootfs,
        &plan.image_initrd,
        crate::unikernel::KEY_INITRD,
    )?;
    let binary = std::fs::read(&plan.binary).ctx(|| format!("read urunit {:?}", plan.binary))?;
    let path = state_dir.join(INITRD_FILE);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .ctx(|| format!("create {path:?}"))?;
    let len =
        std::io::copy(&mut image, &mut out).ctx(|| format!("copy the image initrd to {path:?}"))?;
    // Each archive must start 4-byte aligned; zeros between archives are skipped.
    let pad = (len as usize).next_multiple_of(512) - len as usize;
    out.write_all(&vec![0u8; pad])
        .and_then(|()| out.write_all(&binary_archive(&binary)))
        .ctx(|| format!("write {path:?}"))?;

    let status = state_dir.join(EXIT_STATUS_FILE);
    let f = File::create(&status).ctx(|| format!("create {status:?}"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .ctx(|| format!("chmod {status:?}"))?;
    nix::unistd::fchown(
        f.as_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .ctx(|| format!("chown {status:?}"))?;
    Ok(())
}

/// Appends the configuration archive to the initrd in the state directory, from the
/// container process (which reaches the state directory only through `state_dir`).
pub fn append_config<Fd: AsFd>(state_dir: Fd, cfg: &Config) -> Result<()> {
    let fd = openat(
        state_dir,
        INITRD_FILE,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open the guest initrd".into())?;
    File::from(fd)
        .write_all(&config_archive(cfg))
        .ctx(|| "append urunit's configuration to the guest initrd".into())
}

/// The application's exit status as urunit reported it, if it did.
pub fn read_exit_status(state_dir: &Path) -> Option<i32> {
    let mut bytes = Vec::new();
    File::open(state_dir.join(EXIT_STATUS_FILE))
        .ok()?
        .take(64)
        .read_to_end(&mut bytes)
        .ok()?;
    urunit::config::parse_status(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (name, mode, data) of every entry, checking the format on the way.
    fn entries(mut a: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(&a[..6], b"070701", "magic at offset {off}");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let name = String::from_utf8(a[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = a[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!((off + next).next_multiple_of(512), off + a.len());
                return out;
            }
            out.push((name, mode, data));
            a = &a[next..];
            off += next;
        }
    }

    #[test]
    fn archives_are_valid_newc() {
        let a = binary_archive(b"\x7fELF...");
        assert_eq!(a.len() % 512, 0);
        let e = entries(&a);
        assert_eq!(e[0].0, "dev");
        assert_eq!(e[0].1, libc::S_IFDIR | 0o755);
        assert_eq!(
            (e[1].0.as_str(), e[1].1),
            ("dev/console", libc::S_IFCHR | 0o600)
        );
        assert_eq!(
            (e[2].0.as_str(), e[2].2.as_slice()),
            ("urunit", &b"\x7fELF..."[..])
        );

        let cfg = Config {
            args: vec!["/bin/sh".into()],
            ..Default::default()
        };
        let e = entries(&config_archive(&cfg));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "urunit.json");
        assert_eq!(
            Config::from_json(std::str::from_utf8(&e[0].2).unwrap()).unwrap(),
            cfg
        );
    }

    #[test]
    fn static_executables_are_told_apart() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let not_elf = dir.path().join("x");
        std::fs::write(&not_elf, [0u8; 64]).unwrap();
        assert!(!is_static_elf(&not_elf).unwrap());
    }

    #[test]
    fn exit_status_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit_status(dir.path()), None);
        std::fs::write(dir.path().join(EXIT_STATUS_FILE), b"").unwrap();
        assert_eq!(read_exit_status(dir.path()), None);
        std::fs::write(dir.path().join(EXIT_STATUS_FILE), b"7\r\n").unwrap();
        assert_eq!(read_exit_status(dir.path()), Some(7));
    }

    #[test]
    fn requested_values() {
        assert_eq!(requested(None).unwrap(), None);
        assert_eq!(requested(Some(&"TRUE".to_string())).unwrap(), Some(true));
        assert_eq!(requested(Some(&"no".to_string())).unwrap(), Some(false));
        assert!(requested(Some(&"maybe".to_string())).is_err());
    }
}
