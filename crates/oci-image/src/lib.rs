//! Deterministic writer for single-layer OCI images.
//!
//! [`ImageBuilder`] collects files, directories and symlinks plus the image's
//! runtime configuration, and [`ImageBuilder::build`] turns them into an
//! [`Image`]: one gzip-compressed layer, an OCI image config and an OCI
//! manifest. [`Image::write_oci_archive`] stores it as an OCI image-layout tar
//! that `ctr images import`, `docker load`, `podman load` and `skopeo` accept.
//!
//! The same input always yields the same bytes: tar entries are sorted, every
//! entry has mtime 0 and uid/gid 0, the gzip header carries no timestamp or
//! host OS, and all JSON documents have a fixed key order.
//!
//! ```no_run
//! use oci_image::ImageBuilder;
//!
//! # fn main() -> oci_image::Result<()> {
//! let mut image = ImageBuilder::new();
//! image
//!     .add_file("/bin/busybox", "/bin/busybox", 0o755)?
//!     .add_symlink("/bin/sh", "busybox")?
//!     .add_bytes("/etc/hostname", "demo\n", 0o644)?;
//! image.entrypoint(["/bin/sh"]).env("PATH", "/bin");
//! image.annotation("org.opencontainers.image.title", "demo");
//! image.write_oci_archive("demo.tar", "docker.io/library/demo:latest")?;
//! # Ok(())
//! # }
//! ```

mod archive;
mod base;
mod builder;
mod json;
mod layer;
mod path;
mod reference;
mod tarutil;

pub use archive::{Blob, Image};
pub use base::{BaseImage, BaseLayer};
pub use builder::ImageBuilder;
pub use json::ContainerConfig;
pub use reference::ImageRef;

use std::path::PathBuf;

/// Media type of an OCI image index (`index.json`).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of an uncompressed OCI layer (base images may have them).
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Manifest annotation containerd uses as the image name on import.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI annotation naming a reference (the tag) in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors reported while assembling or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a host file or writing the output failed.
    #[error("{path}: {source}")]
    Io {
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A destination path is empty, the image root, or escapes it with `..`.
    #[error("invalid path in image: {0:?}")]
    InvalidPath(String),
    /// A host path that is not valid UTF-8 or has an unsupported file type.
    #[error("unsupported host file {0}: {1}")]
    Unsupported(PathBuf, &'static str),
    /// An entry needs a parent directory, but a file or symlink is there.
    #[error("{0:?} is not a directory but has entries below it")]
    NotADirectory(String),
    /// A base image (`FROM`) that cannot be read.
    #[error("base image {0}: {1}")]
    BadBase(PathBuf, String),
    /// The image reference cannot name an image in an archive.
    #[error("invalid image reference {0:?}: {1}")]
    InvalidReference(String, &'static str),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// `sha256:<hex>` digest of `data`, as used in OCI descriptors.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
