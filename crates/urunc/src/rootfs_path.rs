//! Paths named by an image (kernel, initrd, block, urunc.json) are untrusted. They are
//! resolved with the container rootfs as `/`: absolute symlinks are read relative to the
//! rootfs, and any `..` that would climb above it — typed in the path or hidden in a
//! symlink — is refused rather than silently clamped, so a hostile image gets an error
//! instead of some other file. The final open uses `openat2(RESOLVE_IN_ROOT)` so that
//! even a race with a changing tree cannot leave the rootfs.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;

const MAX_SYMLINKS: usize = 40;

#[derive(Debug)]
pub enum OpenError {
    NotFound,
    Other(Error),
}

fn path_err(what: &str, path: &str, msg: impl Into<String>) -> Error {
    Error::Path {
        what: what.to_string(),
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Resolves `path` inside `root` and returns the host path it designates, relative to
/// `root` (no leading `/`). `what` names the value in errors (e.g. "kernel").
pub fn resolve(root: &Path, path: &str, what: &str) -> Result<PathBuf, OpenError> {
    if path.is_empty() {
        return Err(OpenError::Other(path_err(what, path, "empty path")));
    }
    let mut pending: VecDeque<OsString> = components(Path::new(path)).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            if resolved.pop().is_none() {
                return Err(OpenError::Other(path_err(
                    what,
                    path,
                    "escapes the container rootfs (\"..\" above /)",
                )));
            }
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenError::NotFound),
            Err(e) => return Err(OpenError::Other(path_err(what, path, e.to_string()))),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(OpenError::Other(path_err(
                    what,
                    path,
                    "too many levels of symbolic links",
                )));
            }
            let target = std::fs::read_link(&candidate)
                .map_err(|e| OpenError::Other(path_err(what, path, e.to_string())))?;
            if target.is_absolute() {
                resolved.clear();
            }
            for (i, c) in components(&target).enumerate() {
                pending.insert(i, c);
            }
        } else {
            resolved.push(part);
        }
    }
    Ok(resolved.iter().collect())
}

fn components(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Opens a regular file named by the image, confined to `root`. The returned handle is
/// an ordinary read-only file; callers that need the exact inode elsewhere (a bind
/// mount into the monitor's root) use `/proc/self/fd/N` of it.
pub fn open_in_root(root: &Path, path: &str, what: &str) -> Result<File, OpenError> {
    let rel = resolve(root, path, what)?;
    let fd = openat2_in_root(root, &rel, libc::O_RDONLY).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound,
        Some(libc::EXDEV) => OpenError::Other(path_err(what, path, "escapes the container rootfs")),
        Some(libc::ELOOP) => OpenError::Other(path_err(what, path, "symbolic link loop")),
        _ => OpenError::Other(path_err(what, path, e.to_string())),
    })?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| OpenError::Other(path_err(what, path, e.to_string())))?;
    if !meta.is_file() {
        return Err(OpenError::Other(path_err(
            what,
            path,
            format!("is not a regular file ({})", kind_of(&meta)),
        )));
    }
    Ok(file)
}

/// Like [`open_in_root`] but "not found" is an error naming the value too.
pub fn open_required(root: &Path, path: &str, what: &str) -> Result<File, Error> {
    open_in_root(root, path, what).map_err(|e| match e {
        OpenError::NotFound => path_err(what, path, "not found in the container rootfs"),
        OpenError::Other(e) => e,
    })
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

fn openat2_in_root(root: &Path, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    // O_NONBLOCK: opening a FIFO planted where a kernel should be must not hang us.
    let root_fd = File::open(root)?;
    let rel = if rel.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        rel.as_os_str()
    };
    let c = CString::new(rel.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall with valid pointers for its duration.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_fd.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests;
