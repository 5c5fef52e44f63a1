//! Tar entries without host-specific metadata (mtime 0, uid/gid 0, no names).

use std::io::Write;
use tar::{Builder, EntryType, Header};

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Appends a regular file called `path` holding `data`.
pub(crate) fn append_file<W: Write>(
    tar: &mut Builder<W>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = header(EntryType::Regular, mode, data.len() as u64);
    tar.append_data(&mut h, path, data)
}

/// Appends a directory; the name gets the conventional trailing slash.
pub(crate) fn append_dir<W: Write>(
    tar: &mut Builder<W>,
    path: &str,
    mode: u32,
) -> std::io::Result<()> {
    let mut h = header(EntryType::Directory, mode, 0);
    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
}

/// Appends a symbolic link `path` pointing at `target`.
pub(crate) fn append_symlink<W: Write>(
    tar: &mut Builder<W>,
    path: &str,
    target: &str,
) -> std::io::Result<()> {
    let mut h = header(EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut h, path, target)
}
