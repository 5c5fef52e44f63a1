//! Runtime options from the create request, and where the shim keeps them.
//!
//! containerd sends `options` as an `Any` of one of two types:
//! - `containerd.runc.v1.Options` (what `io.containerd.runc.v2` takes: `BinaryName`,
//!   `Root`, `SystemdCgroup`, ...), sent by ctr and by CRI when configured so;
//! - `runtimeoptions.v1.Options` (`TypeUrl`, `ConfigPath`), what containerd's CRI plugin
//!   sends for any runtime type it does not know. Nothing in it applies to urunc: the
//!   config path is logged and otherwise ignored.
//!
//! The resolved options are written to the bundle, so that `containerd-shim-urunc-v2
//! delete` (run by containerd after a shim died) drives the same binary and root.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedInputStream, Message};
use containerd_shim::protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The binary run when no `BinaryName` is given.
pub const DEFAULT_BINARY: &str = "urunc";
/// Parent of the default `--root`: `/run/containerd/urunc/<namespace>`.
pub const DEFAULT_ROOT_PARENT: &str = "/run/containerd/urunc";
/// Written into the bundle next to containerd's own files.
pub const SAVED_OPTIONS: &str = "urunc-shim.json";

const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

/// What the shim needs from the options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeOptions {
    /// `BinaryName`: a name looked up in PATH or a path; empty means [`DEFAULT_BINARY`].
    #[serde(default)]
    pub binary_name: String,
    /// `Root`: urunc's `--root`; empty means the default for the namespace.
    #[serde(default)]
    pub root: String,
    #[serde(default)]
    pub systemd_cgroup: bool,
}

/// `runtimeoptions.v1.Options`: two strings, decoded by hand (no generated type for it
/// ships with the protos crate).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CriRuntimeOptions {
    pub type_url: String,
    pub config_path: String,
}

impl CriRuntimeOptions {
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut out = CriRuntimeOptions::default();
        let mut is = CodedInputStream::from_bytes(bytes);
        let bad = |e: containerd_shim::protos::protobuf::Error| {
            Error::invalid(format!("decode {RUNTIME_OPTIONS}: {e}"))
        };
        while !is.eof().map_err(bad)? {
            let tag = is.read_raw_varint32().map_err(bad)?;
            match (tag >> 3, tag & 7) {
                (1, 2) => out.type_url = is.read_string().map_err(bad)?,
                (2, 2) => out.config_path = is.read_string().map_err(bad)?,
                (_, 0) => {
                    is.read_raw_varint64().map_err(bad)?;
                }
                (_, 1) => {
                    is.read_raw_little_endian64().map_err(bad)?;
                }
                (_, 2) => {
                    is.read_bytes().map_err(bad)?;
                }
                (_, 5) => {
                    is.read_raw_little_endian32().map_err(bad)?;
                }
                (field, wt) => {
                    return Err(Error::invalid(format!(
                        "decode {RUNTIME_OPTIONS}: field {field} has unsupported wire type {wt}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

impl RuntimeOptions {
    /// Decodes the create request's options (absent or empty: defaults).
    pub fn from_any(any: Option<&Any>) -> Result<Self> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty() || !a.value.is_empty()) else {
            return Ok(Self::default());
        };
        let url = any.type_url.as_str();
        if url.ends_with(RUNC_OPTIONS) {
            let o = RuncOptions::parse_from_bytes(&any.value)
                .map_err(|e| Error::invalid(format!("decode {RUNC_OPTIONS}: {e}")))?;
            return Ok(RuntimeOptions {
                binary_name: o.binary_name,
                root: o.root,
                systemd_cgroup: o.systemd_cgroup,
            });
        }
        if url.ends_with(RUNTIME_OPTIONS) {
            let o = CriRuntimeOptions::decode(&any.value)?;
            if !o.config_path.is_empty() || !o.type_url.is_empty() {
                log::info!(
                    "runtime options: ignoring ConfigPath {:?} (TypeUrl {:?}): urunc takes no config file",
                    o.config_path,
                    o.type_url
                );
            }
            return Ok(Self::default());
        }
        Err(Error::invalid(format!(
            "unsupported runtime options type {url:?} (expected {RUNC_OPTIONS} or {RUNTIME_OPTIONS})"
        )))
    }

    /// urunc's `--root`.
    pub fn root_for(&self, namespace: &str) -> PathBuf {
        if self.root.is_empty() {
            Path::new(DEFAULT_ROOT_PARENT).join(namespace)
        } else {
            PathBuf::from(&self.root)
        }
    }

    /// The binary to run: `BinaryName` (or `urunc`) resolved in PATH when it has no `/`.
    pub fn binary(&self) -> Result<PathBuf> {
        let name = if self.binary_name.is_empty() {
            DEFAULT_BINARY
        } else {
            self.binary_name.as_str()
        };
        find_executable(name).ok_or_else(|| {
            let path = std::env::var("PATH").unwrap_or_default();
            Error::precondition(if name.contains('/') {
                format!("runtime binary {name:?} does not exist or is not executable")
            } else {
                format!(
                    "runtime binary {name:?} not found in PATH ({path}): install urunc there or set BinaryName in the runtime options"
                )
            })
        })
    }

    pub fn save(&self, bundle: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).expect("options serialise");
        let path = bundle.join(SAVED_OPTIONS);
        std::fs::write(&path, json).ctx(|| format!("write {}", path.display()))
    }

    /// The options saved by `create`, or the defaults.
    pub fn load(bundle: &Path) -> Self {
        std::fs::read(bundle.join(SAVED_OPTIONS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

/// A path containing `/` as is, else the first executable `name` in PATH.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let ok = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return ok(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| ok(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::CodedOutputStream;

    fn any(url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = url.into();
        a.value = value;
        a
    }

    #[test]
    fn runc_options_are_decoded() {
        let o = RuncOptions {
            binary_name: "/opt/urunc".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let a = any("containerd.runc.v1.Options", o.write_to_bytes().unwrap());
        let got = RuntimeOptions::from_any(Some(&a)).unwrap();
        assert_eq!(got.binary_name, "/opt/urunc");
        assert_eq!(got.root_for("ns"), PathBuf::from("/run/x"));
        assert!(got.systemd_cgroup);
    }

    #[test]
    fn cri_runtime_options_are_accepted_and_ignored() {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_string(1, "io.containerd.urunc.v1.Config").unwrap();
            os.write_string(2, "/etc/urunc/config.toml").unwrap();
            os.write_uint32(7, 42).unwrap();
            os.flush().unwrap();
        }
        let decoded = CriRuntimeOptions::decode(&buf).unwrap();
        assert_eq!(decoded.config_path, "/etc/urunc/config.toml");
        assert_eq!(decoded.type_url, "io.containerd.urunc.v1.Config");
        let a = any("runtimeoptions.v1.Options", buf);
        let got = RuntimeOptions::from_any(Some(&a)).unwrap();
        assert_eq!(got, RuntimeOptions::default());
        assert_eq!(
            got.root_for("k8s.io"),
            PathBuf::from("/run/containerd/urunc/k8s.io")
        );
    }

    #[test]
    fn missing_and_unknown_options() {
        assert_eq!(
            RuntimeOptions::from_any(None).unwrap(),
            RuntimeOptions::default()
        );
        assert_eq!(
            RuntimeOptions::from_any(Some(&Any::new())).unwrap(),
            RuntimeOptions::default()
        );
        let err = RuntimeOptions::from_any(Some(&any("example.Other", vec![1]))).unwrap_err();
        assert!(err.msg.contains("example.Other"), "{err}");
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let o = RuntimeOptions {
            binary_name: "urunc-does-not-exist-anywhere".into(),
            ..Default::default()
        };
        let err = o.binary().unwrap_err();
        assert!(err.msg.contains("not found in PATH"), "{err}");
        let o = RuntimeOptions {
            binary_name: "/nonexistent/urunc".into(),
            ..Default::default()
        };
        assert!(o.binary().unwrap_err().msg.contains("does not exist"));
    }

    #[test]
    fn saved_options_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()), RuntimeOptions::default());
        let o = RuntimeOptions {
            binary_name: "b".into(),
            root: "/r".into(),
            systemd_cgroup: true,
        };
        o.save(dir.path()).unwrap();
        assert_eq!(RuntimeOptions::load(dir.path()), o);
    }
}
