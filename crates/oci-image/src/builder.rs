//! [`ImageBuilder`]: collects the image's filesystem and configuration.

use crate::archive::Image;
use crate::base::BaseLayer;
use crate::json::ContainerConfig;
use crate::path::normalize;
use crate::{io_err, Error, Result};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub(crate) enum FileSource {
    Bytes(Vec<u8>),
    /// Read when the image is built.
    Host(PathBuf),
}

#[derive(Clone, Debug)]
pub(crate) enum Entry {
    File { source: FileSource, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// Collects files, directories, symlinks and configuration of a
/// single-layer image.
///
/// Destination paths are absolute or relative to the image root (`/bin/sh`
/// and `bin/sh` are the same); `..` is rejected. Adding a path that already
/// exists replaces the earlier entry. Missing parent directories are created
/// with mode 0755. Host files are read when the image is built.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    pub(crate) entries: BTreeMap<String, Entry>,
    pub(crate) config: ContainerConfig,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) architecture: String,
    pub(crate) os: String,
    pub(crate) base: Vec<BaseLayer>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An empty `linux`/`amd64` image.
    pub fn new() -> Self {
        ImageBuilder {
            entries: BTreeMap::new(),
            config: ContainerConfig::default(),
            annotations: BTreeMap::new(),
            architecture: "amd64".to_string(),
            os: "linux".to_string(),
            base: Vec::new(),
        }
    }

    /// Adds the host file `src` (following symlinks) as `dest` with `mode`.
    pub fn add_file(&mut self, dest: &str, src: impl AsRef<Path>, mode: u32) -> Result<&mut Self> {
        let src = src.as_ref();
        let meta = fs::metadata(src).map_err(io_err(src))?;
        if !meta.is_file() {
            return Err(Error::Unsupported(src.to_path_buf(), "not a regular file"));
        }
        let source = FileSource::Host(src.to_path_buf());
        self.insert(dest, Entry::File { source, mode })
    }

    /// Adds a file `dest` with the given content and `mode`.
    pub fn add_bytes(
        &mut self,
        dest: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<&mut Self> {
        let source = FileSource::Bytes(data.into());
        self.insert(dest, Entry::File { source, mode })
    }

    /// Adds a directory `dest` with mode 0755.
    pub fn add_dir(&mut self, dest: &str) -> Result<&mut Self> {
        self.add_dir_with_mode(dest, 0o755)
    }

    /// Adds a directory `dest` with `mode` (e.g. 0o1777 for `/tmp`).
    pub fn add_dir_with_mode(&mut self, dest: &str, mode: u32) -> Result<&mut Self> {
        self.insert(dest, Entry::Dir { mode })
    }

    /// Adds a symlink `dest` pointing at `target` (stored verbatim).
    pub fn add_symlink(&mut self, dest: &str, target: &str) -> Result<&mut Self> {
        let target = target.to_string();
        self.insert(dest, Entry::Symlink { target })
    }

    /// Adds the host directory `src` recursively below `dest_prefix` (`/` for
    /// the image root), keeping permission bits and symlinks. Hard links
    /// become separate copies; devices, FIFOs and sockets are rejected.
    pub fn add_tree(&mut self, src: impl AsRef<Path>, dest_prefix: &str) -> Result<&mut Self> {
        let src = src.as_ref();
        let prefix = match normalize(dest_prefix) {
            Ok(p) => p,
            Err(_) if dest_prefix.split('/').all(|c| c.is_empty() || c == ".") => String::new(),
            Err(e) => return Err(e),
        };
        let meta = fs::metadata(src).map_err(io_err(src))?;
        if !meta.is_dir() {
            return Err(Error::Unsupported(src.to_path_buf(), "not a directory"));
        }
        if !prefix.is_empty() {
            self.add_dir_with_mode(&prefix, meta.permissions().mode())?;
        }
        self.walk(src, &prefix)?;
        Ok(self)
    }

    fn walk(&mut self, dir: &Path, dest: &str) -> Result<()> {
        for item in fs::read_dir(dir).map_err(io_err(dir))? {
            let item = item.map_err(io_err(dir))?;
            let host = item.path();
            let name = item
                .file_name()
                .into_string()
                .map_err(|_| Error::Unsupported(host.clone(), "file name is not UTF-8"))?;
            let child = if dest.is_empty() {
                name
            } else {
                format!("{dest}/{name}")
            };
            let meta = fs::symlink_metadata(&host).map_err(io_err(&host))?;
            let mode = meta.permissions().mode();
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(&host).map_err(io_err(&host))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| Error::Unsupported(host.clone(), "link target is not UTF-8"))?;
                self.add_symlink(&child, target)?;
            } else if kind.is_dir() {
                self.add_dir_with_mode(&child, mode)?;
                self.walk(&host, &child)?;
            } else if kind.is_file() {
                let source = FileSource::Host(host);
                self.insert(&child, Entry::File { source, mode })?;
            } else {
                return Err(Error::Unsupported(host, "not a file, directory or symlink"));
            }
        }
        Ok(())
    }

    fn insert(&mut self, dest: &str, entry: Entry) -> Result<&mut Self> {
        self.entries.insert(normalize(dest)?, entry);
        Ok(self)
    }

    /// What was added at `dest` so far: `Some(true)` a regular file, `Some(false)`
    /// a directory or symlink, `None` nothing (or an invalid path).
    pub fn added(&self, dest: &str) -> Option<bool> {
        let path = normalize(dest).ok()?;
        self.entries
            .get(&path)
            .map(|e| matches!(e, Entry::File { .. }))
    }

    /// Sets the entrypoint (`Entrypoint`).
    pub fn entrypoint<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, argv: I) -> &mut Self {
        self.config.entrypoint = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the default arguments (`Cmd`).
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, argv: I) -> &mut Self {
        self.config.cmd = Some(argv.into_iter().map(Into::into).collect());
        self
    }

    /// Sets environment variable `key` (replacing an earlier value).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        let prefix = format!("{key}=");
        self.config.env.retain(|e| !e.starts_with(&prefix));
        self.config.env.push(format!("{key}={value}"));
        self
    }

    /// Sets the working directory (`WorkingDir`).
    pub fn working_dir(&mut self, dir: &str) -> &mut Self {
        self.config.working_dir = Some(dir.to_string());
        self
    }

    /// Sets the user (`User`), e.g. `1000:1000`.
    pub fn user(&mut self, user: &str) -> &mut Self {
        self.config.user = Some(user.to_string());
        self
    }

    /// Sets an image label (`Labels` in the config).
    pub fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.config
            .labels
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Direct access to the whole runtime configuration.
    pub fn config_mut(&mut self) -> &mut ContainerConfig {
        &mut self.config
    }

    /// Sets an annotation of the image manifest.
    pub fn annotation(&mut self, key: &str, value: &str) -> &mut Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the platform (default `linux`/`amd64`), in GOARCH/GOOS terms.
    pub fn platform(&mut self, os: &str, architecture: &str) -> &mut Self {
        self.os = os.to_string();
        self.architecture = architecture.to_string();
        self
    }

    /// Puts `layers` (of a base image, bottom first) below the layer this builder
    /// writes; they are stored as they are.
    pub fn base_layers(&mut self, layers: Vec<BaseLayer>) -> &mut Self {
        self.base = layers;
        self
    }

    /// Builds layer, config and manifest in memory.
    pub fn build(&self) -> Result<Image> {
        Image::build(self)
    }

    /// Builds the image and writes it as an OCI archive tagged `image_ref`
    /// (see [`Image::write_oci_archive`]).
    pub fn write_oci_archive(&self, path: impl AsRef<Path>, image_ref: &str) -> Result<Image> {
        let image = self.build()?;
        image.write_oci_archive(path, image_ref)?;
        Ok(image)
    }
}
