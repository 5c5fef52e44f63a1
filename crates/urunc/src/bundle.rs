//! The OCI bundle: `config.json` and the container's root filesystem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

pub const CONFIG_JSON: &str = "config.json";
/// Far above any real spec (a few KiB; Kubernetes caps all annotations at 256 KiB), and
/// low enough that a hostile one cannot make urunc allocate without bound.
pub const MAX_CONFIG_JSON: u64 = 16 << 20;

/// Reads `config.json` as UTF-8 text of at most [`MAX_CONFIG_JSON`] bytes.
fn read_bounded(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_JSON {
        return Err(format!(
            "larger than the {} MiB allowed for a runtime spec",
            MAX_CONFIG_JSON >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    pub spec: Spec,
    /// Absolute path of the root filesystem (`root.path` resolved against the bundle).
    pub rootfs: PathBuf,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::Bundle {
            path: dir.to_path_buf(),
            msg: format!("bundle directory: {e}"),
        })?;
        let config = dir.join(CONFIG_JSON);
        let text = read_bounded(&config).map_err(|msg| Error::Bundle {
            path: config.clone(),
            msg,
        })?;
        let spec: Spec = serde_json::from_str(&text).map_err(|e| Error::Bundle {
            path: config.clone(),
            msg: format!("invalid OCI runtime spec: {e}"),
        })?;
        let root = spec.root().as_ref().ok_or_else(|| Error::Bundle {
            path: config.clone(),
            msg: "no \"root\" section".into(),
        })?;
        let rootfs = dir.join(root.path());
        let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::Bundle {
            path: config.clone(),
            msg: format!("root.path {:?}: {e}", root.path()),
        })?;
        Ok(Bundle { dir, spec, rootfs })
    }

    pub fn annotations(&self) -> HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }

    pub fn args(&self) -> Vec<String> {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
    }

    pub fn env(&self) -> Vec<String> {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
    }

    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }

    pub fn memory_limit(&self) -> Option<u64> {
        let limit = self.linux_resources()?.memory().as_ref()?.limit()?;
        (limit > 0).then_some(limit as u64)
    }

    /// vCPUs from the CPU quota (rounded up), if one is set.
    pub fn cpu_limit(&self) -> Option<u32> {
        let cpu = self.linux_resources()?.cpu().as_ref()?;
        let quota = cpu.quota()?;
        let period = cpu.period().unwrap_or(100_000);
        (quota > 0 && period > 0).then(|| (quota as u64).div_ceil(period).max(1) as u32)
    }

    pub fn has_seccomp(&self) -> bool {
        self.spec
            .linux()
            .as_ref()
            .is_some_and(|l| l.seccomp().is_some())
    }

    fn linux_resources(&self) -> Option<&oci_spec::runtime::LinuxResources> {
        self.spec.linux().as_ref()?.resources().as_ref()
    }
}
