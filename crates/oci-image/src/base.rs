//! Reading an existing image to build on (`FROM`): an OCI image-layout tar or directory,
//! or a docker archive (`docker save`). Its layers are kept byte for byte; the new
//! image adds one layer on top.

use crate::{io_err, sha256_digest, Error, Result};
use crate::{MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

/// One layer of a base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseLayer {
    /// OCI media type (gzip or uncompressed tar).
    pub media_type: &'static str,
    /// The blob as stored.
    pub data: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar (from the image config).
    pub diff_id: String,
}

/// An image read from an archive or a layout directory.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The whole image config document.
    pub config: Value,
    /// Its layers, bottom first.
    pub layers: Vec<BaseLayer>,
}

impl BaseImage {
    /// Reads `path`: a tar (OCI layout or docker archive) or an OCI layout directory.
    /// An OCI index with several manifests is read at its first manifest for
    /// `architecture` (or its only one).
    pub fn read(path: impl AsRef<Path>, architecture: Option<&str>) -> Result<BaseImage> {
        let path = path.as_ref();
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let files = if meta.is_dir() {
            Files::Dir(path.to_path_buf())
        } else {
            Files::Tar(read_tar(path)?)
        };
        let bad = |why: String| Error::BadBase(path.to_path_buf(), why);
        let (config, layer_refs) = if let Some(index) = files.get("index.json").map_err(bad)? {
            let index: Value = json(&index, "index.json").map_err(bad)?;
            let manifest = pick_manifest(&files, &index, architecture).map_err(bad)?;
            let config_digest = manifest["config"]["digest"]
                .as_str()
                .ok_or_else(|| bad("manifest has no config digest".into()))?;
            let config = files.blob(config_digest).map_err(bad)?;
            let layers = manifest["layers"]
                .as_array()
                .ok_or_else(|| bad("manifest has no layers".into()))?
                .iter()
                .map(|l| {
                    let digest = l["digest"].as_str().unwrap_or_default().to_string();
                    let media = l["mediaType"].as_str().unwrap_or_default().to_string();
                    (format!("blobs/{}", digest.replacen(':', "/", 1)), media)
                })
                .collect::<Vec<_>>();
            (config, layers)
        } else if let Some(m) = files.get("manifest.json").map_err(bad)? {
            let m: Value = json(&m, "manifest.json").map_err(bad)?;
            let entry = m
                .as_array()
                .and_then(|a| a.first())
                .ok_or_else(|| bad("manifest.json lists no image".into()))?;
            let config_path = entry["Config"]
                .as_str()
                .ok_or_else(|| bad("manifest.json has no Config".into()))?;
            let config = files
                .get(config_path)
                .map_err(bad)?
                .ok_or_else(|| bad(format!("{config_path} is missing")))?;
            let layers = entry["Layers"]
                .as_array()
                .ok_or_else(|| bad("manifest.json has no Layers".into()))?
                .iter()
                .map(|l| (l.as_str().unwrap_or_default().to_string(), String::new()))
                .collect();
            (config, layers)
        } else {
            return Err(bad(
                "neither an OCI image layout (index.json) nor a docker archive (manifest.json)"
                    .into(),
            ));
        };
        let config: Value = json(&config, "the image config").map_err(bad)?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| d.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != layer_refs.len() {
            return Err(bad(format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                layer_refs.len()
            )));
        }
        let mut layers = Vec::new();
        for ((name, media), diff_id) in layer_refs.into_iter().zip(diff_ids) {
            let data = files
                .get(&name)
                .map_err(bad)?
                .ok_or_else(|| bad(format!("layer {name} is missing")))?;
            let gzip = data.starts_with(&[0x1f, 0x8b]);
            let media_type = match media.as_str() {
                _ if media.contains("zstd") => {
                    return Err(bad(format!("layer {name}: zstd layers are not supported")))
                }
                _ if gzip => MEDIA_TYPE_LAYER_GZIP,
                _ => MEDIA_TYPE_LAYER_TAR,
            };
            layers.push(BaseLayer {
                media_type,
                data,
                diff_id,
            });
        }
        Ok(BaseImage { config, layers })
    }

    /// The paths (normalised, without a leading `/`) that exist in the image's merged
    /// filesystem, with whether each is a regular file; whiteouts are applied.
    pub fn paths(&self) -> Result<BTreeMap<String, bool>> {
        let mut all = BTreeMap::new();
        for layer in &self.layers {
            let reader: Box<dyn Read> = if layer.data.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(&layer.data[..]))
            } else {
                Box::new(&layer.data[..])
            };
            let mut tar = tar::Archive::new(reader);
            let entries = tar.entries().map_err(io_err("<base layer>"))?;
            for e in entries {
                let e = e.map_err(io_err("<base layer>"))?;
                let path = e.path().map_err(io_err("<base layer>"))?;
                let path = path.to_string_lossy().trim_start_matches("./").to_string();
                let path = path.trim_end_matches('/').to_string();
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                if name == ".wh..wh..opq" {
                    let prefix = format!("{dir}/");
                    all.retain(|p: &String, _| !p.starts_with(&prefix));
                } else if let Some(gone) = name.strip_prefix(".wh.") {
                    let gone = if dir.is_empty() {
                        gone.to_string()
                    } else {
                        format!("{dir}/{gone}")
                    };
                    let prefix = format!("{gone}/");
                    all.retain(|p: &String, _| *p != gone && !p.starts_with(&prefix));
                } else if !path.is_empty() {
                    all.insert(path, e.header().entry_type().is_file());
                }
            }
        }
        Ok(all)
    }
}

enum Files {
    Dir(std::path::PathBuf),
    Tar(BTreeMap<String, Vec<u8>>),
}

impl Files {
    fn get(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let name = name.trim_start_matches("./");
        match self {
            Files::Tar(map) => Ok(map.get(name).cloned()),
            Files::Dir(dir) => {
                if name.split('/').any(|c| c == "..") {
                    return Err(format!("{name}: path leaves the layout"));
                }
                match fs::read(dir.join(name)) {
                    Ok(d) => Ok(Some(d)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(format!("{name}: {e}")),
                }
            }
        }
    }

    /// A blob by digest, checked against it.
    fn blob(&self, digest: &str) -> std::result::Result<Vec<u8>, String> {
        let name = format!("blobs/{}", digest.replacen(':', "/", 1));
        let data = self
            .get(&name)?
            .ok_or(format!("blob {digest} is missing"))?;
        if digest.starts_with("sha256:") && sha256_digest(&data) != digest {
            return Err(format!("blob {digest} does not match its digest"));
        }
        Ok(data)
    }
}

fn json(data: &[u8], what: &str) -> std::result::Result<Value, String> {
    serde_json::from_slice(data).map_err(|e| format!("{what}: not JSON: {e}"))
}

fn pick_manifest(
    files: &Files,
    index: &Value,
    architecture: Option<&str>,
) -> std::result::Result<Value, String> {
    let list = index["manifests"]
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or("index.json lists no manifest")?;
    let chosen = match architecture {
        Some(arch) if list.len() > 1 => list
            .iter()
            .find(|m| m["platform"]["architecture"].as_str() == Some(arch))
            .ok_or(format!("index.json has no manifest for {arch}"))?,
        _ => &list[0],
    };
    let digest = chosen["digest"].as_str().ok_or("manifest without digest")?;
    let doc = json(&files.blob(digest)?, "the manifest")?;
    if doc["manifests"].is_array() {
        // A nested index (e.g. from `skopeo copy --all`).
        return pick_manifest(files, &doc, architecture);
    }
    Ok(doc)
}

fn read_tar(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(io_err(path))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(io_err(path))?;
        files.insert(name, data);
    }
    Ok(files)
}
