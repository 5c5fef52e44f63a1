//! The unikernel configuration: the `com.urunc.unikernel.*` keys that say what to boot
//! and with which monitor. They come from the spec's annotations and/or a `urunc.json`
//! at the root of the container image.
//!
//! Precedence: `urunc.json` is the base, annotations override it key by key. A bundle
//! with neither is an ordinary container and is handed to runc.

pub mod encoding;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::rootfs_path;
use encoding::{decode_value, Source};

pub const PREFIX: &str = "com.urunc.unikernel.";
pub const URUNC_JSON: &str = "urunc.json";
/// Refuse absurd files before parsing them: no real configuration comes near this.
const MAX_URUNC_JSON: u64 = 1 << 20;

pub const KEY_TYPE: &str = "com.urunc.unikernel.unikernelType";
pub const KEY_HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
pub const KEY_BINARY: &str = "com.urunc.unikernel.binary";
pub const KEY_CMDLINE: &str = "com.urunc.unikernel.cmdline";
pub const KEY_INITRD: &str = "com.urunc.unikernel.initrd";
pub const KEY_BLOCK: &str = "com.urunc.unikernel.block";
pub const KEY_BLK_MNT_POINT: &str = "com.urunc.unikernel.blkMntPoint";
pub const KEY_USE_DM_BLOCK: &str = "com.urunc.unikernel.useDMBlock";
pub const KEY_VERSION: &str = "com.urunc.unikernel.unikernelVersion";
pub const KEY_MOUNT_ROOTFS: &str = "com.urunc.unikernel.mountRootfs";
/// urunc's own key, not the reference's: the QEMU machine this guest boots on (e.g.
/// `microvm` for a kernel that can), over the configuration file's `machine`.
pub const KEY_QEMU_MACHINE: &str = "com.urunc.unikernel.qemuMachine";

/// The annotations by which containerd's CRI plugin and CRI-O mark a pod's sandbox
/// (pause) container, and the value that does.
const SANDBOX_TYPE_KEYS: &[&str] = &[
    "io.kubernetes.cri.container-type",
    "io.kubernetes.cri-o.ContainerType",
];
const SANDBOX_TYPE: &str = "sandbox";

/// Whether the spec is a Kubernetes pod's sandbox (pause) container. It is never a
/// unikernel: the CRI plugin copies the pod's annotations (`com.urunc.unikernel.*`
/// among them, when a pod carries them) into its spec too, but it must stay the
/// ordinary process that holds the pod's namespaces.
pub fn is_pod_sandbox(annotations: &HashMap<String, String>) -> bool {
    SANDBOX_TYPE_KEYS
        .iter()
        .any(|k| annotations.get(*k).is_some_and(|v| v == SANDBOX_TYPE))
}

/// Every key urunc reads (a Containerfile's `LABEL` may set these and no others).
pub const KNOWN_KEYS: &[&str] = &[
    KEY_TYPE,
    KEY_HYPERVISOR,
    KEY_BINARY,
    KEY_CMDLINE,
    KEY_INITRD,
    KEY_BLOCK,
    KEY_BLK_MNT_POINT,
    KEY_USE_DM_BLOCK,
    KEY_VERSION,
    KEY_MOUNT_ROOTFS,
    KEY_QEMU_MACHINE,
];

/// What the image asks urunc to boot. Values are decoded; paths are still as the image
/// names them (inside the rootfs) and are resolved later by [`rootfs_path`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnikernelConfig {
    pub unikernel_type: String,
    pub hypervisor: String,
    pub binary: String,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    pub block: Option<String>,
    pub blk_mnt_point: Option<String>,
    pub use_dm_block: bool,
    pub version: Option<String>,
    pub mount_rootfs: bool,
    /// Only read when the monitor is QEMU; checked against the machines urunc knows.
    pub qemu_machine: Option<String>,
}

impl UnikernelConfig {
    /// Reads the configuration for a bundle. `Ok(None)` means "not a unikernel container".
    pub fn load(annotations: &HashMap<String, String>, rootfs: &Path) -> Result<Option<Self>> {
        if is_pod_sandbox(annotations) {
            return Ok(None);
        }
        Self::from_sources(read_urunc_json(rootfs)?, annotations)
    }

    /// The configuration from `urunc.json`'s values (see [`parse_urunc_json`]) and the
    /// annotations, without touching the filesystem. `Ok(None)`: neither has any key.
    pub fn from_sources(
        json: Option<BTreeMap<String, String>>,
        annotations: &HashMap<String, String>,
    ) -> Result<Option<Self>> {
        let mut values: BTreeMap<String, (String, Source)> = BTreeMap::new();
        if let Some(json) = json {
            for (k, v) in json {
                values.insert(k, (v, Source::UruncJson));
            }
        }
        for (k, v) in annotations {
            if k.starts_with(PREFIX) {
                values.insert(k.clone(), (v.clone(), Source::Annotation));
            }
        }
        if values.is_empty() {
            return Ok(None);
        }
        let mut decoded = BTreeMap::new();
        for (k, (raw, src)) in &values {
            let v = decode_value(k, raw, *src).map_err(Error::Config)?;
            if v.contains('\0') {
                return Err(Error::Config(format!("{k}: value contains a NUL byte")));
            }
            decoded.insert(k.as_str(), v);
        }
        Self::from_decoded(&decoded).map(Some)
    }

    fn from_decoded(values: &BTreeMap<&str, String>) -> Result<Self> {
        let get = |k: &str| values.get(k).map(|v| v.trim().to_string());
        let opt = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        let mut required = |k: &'static str| match opt(k) {
            Some(v) => v,
            None => {
                missing.push(k);
                String::new()
            }
        };
        let cfg = UnikernelConfig {
            unikernel_type: required(KEY_TYPE),
            hypervisor: required(KEY_HYPERVISOR),
            binary: required(KEY_BINARY),
            cmdline: get(KEY_CMDLINE).filter(|v| !v.is_empty()),
            initrd: opt(KEY_INITRD),
            block: opt(KEY_BLOCK),
            blk_mnt_point: opt(KEY_BLK_MNT_POINT),
            use_dm_block: parse_bool(KEY_USE_DM_BLOCK, opt(KEY_USE_DM_BLOCK))?,
            version: opt(KEY_VERSION),
            mount_rootfs: parse_bool(KEY_MOUNT_ROOTFS, opt(KEY_MOUNT_ROOTFS))?,
            qemu_machine: opt(KEY_QEMU_MACHINE),
        };
        if !missing.is_empty() {
            let unknown: Vec<&str> = values
                .keys()
                .copied()
                .filter(|k| !KNOWN_KEYS.contains(k))
                .collect();
            let mut msg = format!("missing {}", missing.join(", "));
            if !unknown.is_empty() {
                msg.push_str(&format!(" (unrecognised keys: {})", unknown.join(", ")));
            }
            return Err(Error::Config(msg));
        }
        if let Some(m) = &cfg.qemu_machine {
            crate::monitor::check_machine(m)
                .map_err(|e| Error::Config(format!("{KEY_QEMU_MACHINE}: {e}")))?;
        }
        Ok(cfg)
    }

    /// The keys as annotations, e.g. to record them in the container state.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(KEY_TYPE.into(), self.unikernel_type.clone());
        m.insert(KEY_HYPERVISOR.into(), self.hypervisor.clone());
        m.insert(KEY_BINARY.into(), self.binary.clone());
        let optional = [
            (KEY_CMDLINE, &self.cmdline),
            (KEY_INITRD, &self.initrd),
            (KEY_BLOCK, &self.block),
            (KEY_BLK_MNT_POINT, &self.blk_mnt_point),
            (KEY_VERSION, &self.version),
            (KEY_QEMU_MACHINE, &self.qemu_machine),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v.clone());
            }
        }
        if self.use_dm_block {
            m.insert(KEY_USE_DM_BLOCK.into(), "true".into());
        }
        if self.mount_rootfs {
            m.insert(KEY_MOUNT_ROOTFS.into(), "true".into());
        }
        m
    }
}

fn parse_bool(key: &str, v: Option<String>) -> Result<bool> {
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(Error::Config(format!(
            "{key}: expected true or false, got {other:?}"
        ))),
    }
}

/// Reads `/urunc.json` from the rootfs (confined: a symlink cannot point it elsewhere).
fn read_urunc_json(rootfs: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let file = match rootfs_path::open_in_root(rootfs, URUNC_JSON, "urunc.json") {
        Ok(f) => f,
        Err(rootfs_path::OpenError::NotFound) => return Ok(None),
        Err(rootfs_path::OpenError::Other(e)) => return Err(e),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX_URUNC_JSON {
        return Err(Error::Config(format!(
            "/{URUNC_JSON} in the image is {len} bytes, more than the {MAX_URUNC_JSON} allowed"
        )));
    }
    let mut text = String::new();
    file.take(MAX_URUNC_JSON)
        .read_to_string(&mut text)
        .map_err(|e| Error::Config(format!("/{URUNC_JSON} in the image: {e}")))?;
    parse_urunc_json(&text).map(Some)
}

/// The values of a `urunc.json` document (strings; booleans as `true`/`false`; nulls
/// skipped), still encoded as the image wrote them.
pub fn parse_urunc_json(text: &str) -> Result<BTreeMap<String, String>> {
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        Error::Config(format!(
            "/{URUNC_JSON} in the image is not a JSON object of strings: {e}"
        ))
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            other => {
                return Err(Error::Config(format!(
                    "/{URUNC_JSON} in the image: {k}: expected a string, got {other}"
                )))
            }
        };
        out.insert(k, s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
