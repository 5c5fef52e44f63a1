//! Writing the single image layer: a sorted tar, gzip-compressed.

use crate::builder::{Entry, FileSource};
use crate::path::ancestors;
use crate::{io_err, tarutil, Error, Result};
use flate2::{write::GzEncoder, Compression, GzBuilder};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

/// The compressed layer blob and the digest of its uncompressed tar.
pub(crate) struct Layer {
    pub compressed: Vec<u8>,
    pub diff_id: String,
}

/// Passes bytes through while hashing them (the uncompressed tar → diff_id).
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Adds the implicit parent directories (mode 0755) and checks that every
/// parent really is a directory.
fn with_parents(entries: &BTreeMap<String, Entry>) -> Result<BTreeMap<&str, Entry>> {
    let mut all: BTreeMap<&str, Entry> = BTreeMap::new();
    for (path, entry) in entries {
        for parent in ancestors(path) {
            match entries.get(parent) {
                Some(Entry::Dir { .. }) => {}
                Some(_) => return Err(Error::NotADirectory(parent.to_string())),
                None => {
                    all.insert(parent, Entry::Dir { mode: 0o755 });
                }
            }
        }
        all.insert(path, entry.clone());
    }
    Ok(all)
}

/// Builds the layer from the builder's entries.
pub(crate) fn write_layer(entries: &BTreeMap<String, Entry>) -> Result<Layer> {
    let out = Path::new("<layer>");
    // The gzip header gets mtime 0 and OS "unknown", so it is host independent.
    let gz: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::default());
    let hashing = HashingWriter {
        inner: gz,
        hasher: Sha256::new(),
    };
    let mut tar = tar::Builder::new(hashing);
    for (path, entry) in with_parents(entries)? {
        match entry {
            Entry::Dir { mode } => {
                tarutil::append_dir(&mut tar, path, mode).map_err(io_err(out))?
            }
            Entry::Symlink { target } => {
                tarutil::append_symlink(&mut tar, path, &target).map_err(io_err(out))?
            }
            Entry::File { source, mode } => {
                let data = match source {
                    FileSource::Bytes(bytes) => bytes,
                    FileSource::Host(src) => std::fs::read(&src).map_err(io_err(&src))?,
                };
                tarutil::append_file(&mut tar, path, mode, &data).map_err(io_err(out))?
            }
        }
    }
    let hashing = tar.into_inner().map_err(io_err(out))?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    let compressed = hashing.inner.finish().map_err(io_err(out))?;
    Ok(Layer {
        compressed,
        diff_id,
    })
}
