//! Persistent tap devices through `/dev/net/tun`: created here, attached to by name by
//! the monitor later (after it dropped to the container's user, hence the owner).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

pub const TUN_DEVICE: &str = "/dev/net/tun";

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl(fd: i32, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the tun ioctls used here take an integer argument.
    if unsafe { libc::ioctl(fd, req as libc::Ioctl, arg) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the persistent tap `name`, usable without privileges by `uid`/`gid` only.
pub fn create(name: &str, uid: u32, gid: u32) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other(format!("bad interface name {name:?}")));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_DEVICE)?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which req is laid out as.
    if unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            TUNSETIFF as libc::Ioctl,
            &mut req as *mut IfReq,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let fd = tun.as_raw_fd();
    ioctl(fd, TUNSETOWNER, uid as libc::c_ulong)?;
    ioctl(fd, TUNSETGROUP, gid as libc::c_ulong)?;
    ioctl(fd, TUNSETPERSIST, 1)?;
    // Closing detaches us: a single-queue tap accepts one attached file, the monitor's.
    Ok(())
}
