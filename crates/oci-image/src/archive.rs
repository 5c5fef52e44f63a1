//! [`Image`]: the built blobs, and writing them as an OCI image layout.

use crate::builder::ImageBuilder;
use crate::json::{self, Descriptor, DockerManifest, Index, Manifest, Platform, RootFs};
use crate::reference::ImageRef;
use crate::{io_err, layer, sha256_digest, tarutil, Result};
use crate::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG};
use crate::{MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Fixed creation time, so that the config digest does not depend on the clock.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// A content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Its media type.
    pub media_type: &'static str,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// The content.
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        let digest = sha256_digest(&data);
        Blob {
            media_type,
            digest,
            data,
        }
    }

    fn descriptor(&self) -> Descriptor<'_> {
        Descriptor {
            media_type: self.media_type,
            digest: &self.digest,
            size: self.data.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    /// Path of the blob inside an OCI layout (`blobs/sha256/<hex>`).
    pub fn layout_path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// A built single-layer image: layer, config and manifest blobs.
#[derive(Clone, Debug)]
pub struct Image {
    /// The base image's layers (bottom first), below [`Image::layer`].
    pub base: Vec<Blob>,
    /// Their diff IDs.
    pub base_diff_ids: Vec<String>,
    /// The gzip-compressed layer.
    pub layer: Blob,
    /// `sha256:<hex>` of the uncompressed layer tar.
    pub diff_id: String,
    /// The image config JSON.
    pub config: Blob,
    /// The image manifest JSON.
    pub manifest: Blob,
    architecture: String,
    os: String,
}

impl Image {
    pub(crate) fn build(b: &ImageBuilder) -> Result<Image> {
        let layer::Layer {
            compressed,
            diff_id,
        } = layer::write_layer(&b.entries)?;
        let layer = Blob::new(MEDIA_TYPE_LAYER_GZIP, compressed);
        let base: Vec<Blob> = b
            .base
            .iter()
            .map(|l| Blob::new(l.media_type, l.data.clone()))
            .collect();
        let base_diff_ids: Vec<String> = b.base.iter().map(|l| l.diff_id.clone()).collect();
        let mut diff_ids: Vec<&str> = base_diff_ids.iter().map(String::as_str).collect();
        diff_ids.push(&diff_id);
        let mut layers: Vec<Descriptor<'_>> = base.iter().map(Blob::descriptor).collect();
        layers.push(layer.descriptor());
        let config = json::to_vec(&json::ImageConfig {
            created: CREATED,
            architecture: &b.architecture,
            os: &b.os,
            config: &b.config,
            rootfs: RootFs {
                kind: "layers",
                diff_ids,
            },
        });
        let config = Blob::new(MEDIA_TYPE_CONFIG, config);
        let manifest = json::to_vec(&Manifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: config.descriptor(),
            layers,
            annotations: b.annotations.clone(),
        });
        let manifest = Blob::new(MEDIA_TYPE_MANIFEST, manifest);
        Ok(Image {
            base,
            base_diff_ids,
            layer,
            diff_id,
            config,
            manifest,
            architecture: b.architecture.clone(),
            os: b.os.clone(),
        })
    }

    /// The files of an OCI image layout tagged `image_ref`, as (path, content)
    /// in archive order. Besides `oci-layout`, `index.json` and the blobs it
    /// holds docker's `manifest.json`, so `docker load` accepts it too.
    ///
    /// The index's manifest descriptor is annotated with
    /// `io.containerd.image.name` = the full reference (the name `ctr images
    /// import` gives the image) and `org.opencontainers.image.ref.name` = the
    /// tag, as containerd's own exporter does.
    pub fn layout_files(&self, image_ref: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let reference = ImageRef::parse(image_ref)?;
        let mut desc = self.manifest.descriptor();
        desc.annotations
            .insert(ANNOTATION_CONTAINERD_NAME.into(), reference.full.clone());
        desc.annotations
            .insert(ANNOTATION_REF_NAME.into(), reference.tag.clone());
        desc.platform = Some(Platform {
            architecture: &self.architecture,
            os: &self.os,
        });
        let index = json::to_vec(&Index {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX,
            manifests: vec![desc],
        });
        let docker = json::to_vec(&[DockerManifest {
            config: self.config.layout_path(),
            repo_tags: vec![&reference.full],
            layers: self
                .base
                .iter()
                .chain(std::iter::once(&self.layer))
                .map(Blob::layout_path)
                .collect(),
        }]);
        let mut blobs: Vec<&Blob> = self.base.iter().collect();
        blobs.extend([&self.layer, &self.config, &self.manifest]);
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        // Two base layers with the same content are one blob.
        blobs.dedup_by(|a, b| a.digest == b.digest);
        let mut files: Vec<(String, Vec<u8>)> = blobs
            .iter()
            .map(|b| (b.layout_path(), b.data.clone()))
            .collect();
        files.push(("index.json".into(), index));
        files.push(("manifest.json".into(), docker));
        files.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        Ok(files)
    }

    /// Writes the OCI image-layout tar tagged `image_ref` to `w`.
    pub fn write_oci_archive_to<W: Write>(&self, w: W, image_ref: &str) -> Result<()> {
        let out = Path::new("<archive>");
        let files = self.layout_files(image_ref)?;
        let mut tar = tar::Builder::new(w);
        tarutil::append_dir(&mut tar, "blobs", 0o755).map_err(io_err(out))?;
        tarutil::append_dir(&mut tar, "blobs/sha256", 0o755).map_err(io_err(out))?;
        for (name, data) in &files {
            tarutil::append_file(&mut tar, name, 0o644, data).map_err(io_err(out))?;
        }
        tar.into_inner()
            .map_err(io_err(out))?
            .flush()
            .map_err(io_err(out))
    }

    /// Writes the OCI image-layout tar tagged `image_ref` to the file `path`.
    pub fn write_oci_archive(&self, path: impl AsRef<Path>, image_ref: &str) -> Result<()> {
        let path = path.as_ref();
        let file = fs::File::create(path).map_err(io_err(path))?;
        let mut w = std::io::BufWriter::new(file);
        self.write_oci_archive_to(&mut w, image_ref)?;
        let file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
        file.sync_all().map_err(io_err(path))
    }

    /// Writes the same layout unpacked into directory `dir` (created if
    /// missing), e.g. for `skopeo copy oci:DIR ...`.
    pub fn write_oci_layout_dir(&self, dir: impl AsRef<Path>, image_ref: &str) -> Result<()> {
        let dir = dir.as_ref();
        for (name, data) in self.layout_files(image_ref)? {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::write(&path, data).map_err(io_err(&path))?;
        }
        Ok(())
    }
}
