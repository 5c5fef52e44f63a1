//! urunc's own configuration file, `/etc/urunc/config.toml` (path overridable with
//! [`CONFIG_ENV`] or the CLI's `--config`):
//!
//! ```toml
//! [log]
//! level = "info"          # error, warn, info, debug
//! format = "text"         # text or json (the CLI's --log-format wins when given)
//!
//! [timestamps]
//! enabled = false         # record start-up timestamps (`urunc timestamps ID`)
//! dir = "/run/urunc-timestamps"  # where their per-container logs go
//!
//! [monitors.qemu]
//! binary_path = "/usr/bin/qemu-system-x86_64"
//! default_memory_mb = 256
//! default_vcpus = 1
//! accel = "kvm"           # QEMU only: kvm or tcg (URUNC_QEMU_ACCEL wins)
//! machine = "pc"          # QEMU only: pc or microvm (x86_64), virt (aarch64)
//! extra_args = []         # appended to the monitor's argv
//!
//! [monitors.solo5-hvt]
//! tender_seccomp = true   # solo5-hvt only: it installs its own seccomp filter
//!                         # (Solo5 0.11.0+); unset: detected from the binary
//! ```
//!
//! A missing file means the built-in defaults; an unreadable or invalid one is an
//! error naming the line. Unknown keys are errors (a typo must not be silently
//! ignored). The effective monitor settings are copied into the container's plan at
//! `create` (its state), so later edits do not affect existing containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/etc/urunc/config.toml";
pub const CONFIG_ENV: &str = "URUNC_CONFIG";
/// Refuse absurd files before parsing them.
const MAX_SIZE: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub timestamps: Timestamps,
    /// Per monitor, by its `hypervisor` name (`qemu`, `firecracker`, ...).
    pub monitors: BTreeMap<String, MonitorSettings>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: Option<LogFormat>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timestamps {
    pub enabled: bool,
    /// Where the per-container logs go (see `crate::timestamps`).
    pub dir: Option<PathBuf>,
}

/// One monitor's settings. Every field is optional: unset means the built-in default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    /// The executable; without it the monitor's name is looked up on PATH.
    pub binary_path: Option<PathBuf>,
    /// Guest memory when the spec sets no memory limit, in MiB.
    pub default_memory_mb: Option<u64>,
    /// vCPUs when the spec sets no CPU quota.
    pub default_vcpus: Option<u32>,
    /// QEMU's accelerator: `kvm` or `tcg`.
    pub accel: Option<String>,
    /// QEMU's machine type.
    pub machine: Option<String>,
    /// Appended to the monitor's argv, before the guest's kernel and command line.
    pub extra_args: Vec<String>,
    /// solo5-hvt: the tender installs its own seccomp filter, so urunc adds none
    /// (unset: detected from the binary; see `monitor::solo5`).
    pub tender_seccomp: Option<bool>,
}

impl Config {
    /// The file at `path`, or at [`CONFIG_ENV`], or at [`DEFAULT_PATH`]. A missing file
    /// is only tolerated at the default location or when the path came from nowhere
    /// explicit; a path the operator named must exist.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
        let (path, explicit) = match (path, env) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(e)) => (PathBuf::from(e), true),
            (None, None) => (PathBuf::from(DEFAULT_PATH), false),
        };
        Self::load_file(&path, explicit)
    }

    pub fn load_file(path: &Path, must_exist: bool) -> Result<Config> {
        use std::io::Read;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default())
            }
            Err(e) => return Err(file_error(path, e)),
        };
        let mut text = String::new();
        file.take(MAX_SIZE + 1)
            .read_to_string(&mut text)
            .map_err(|e| file_error(path, e))?;
        if text.len() as u64 > MAX_SIZE {
            return Err(file_error(path, format!("larger than {MAX_SIZE} bytes")));
        }
        Self::parse(&text).map_err(|msg| file_error(path, msg))
    }

    /// Parses and validates; the error names the line (and column).
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    // Quote the line: serde's message names the value, not the key.
                    let src: String = text
                        .lines()
                        .nth(line - 1)
                        .unwrap_or("")
                        .trim()
                        .chars()
                        .take(80)
                        .collect();
                    format!("line {line}, column {col} ({src:?}): {msg}")
                }
                None => msg,
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(d) = self.timestamps.dir.as_ref().filter(|d| !d.is_absolute()) {
            return Err(format!("[timestamps] dir {d:?} must be an absolute path"));
        }
        for (name, m) in &self.monitors {
            if crate::monitor::by_name(name).is_none() {
                return Err(format!(
                    "[monitors.{name}]: unknown monitor; known: {}",
                    crate::monitor::names().join(", ")
                ));
            }
            if m.default_memory_mb == Some(0) {
                return Err(format!(
                    "[monitors.{name}] default_memory_mb must be at least 1"
                ));
            }
            if m.default_vcpus == Some(0) {
                return Err(format!(
                    "[monitors.{name}] default_vcpus must be at least 1"
                ));
            }
            if let Some(p) = &m.binary_path {
                if !p.is_absolute() {
                    return Err(format!(
                        "[monitors.{name}] binary_path {p:?} must be an absolute path"
                    ));
                }
            }
            if name != "qemu" && (m.accel.is_some() || m.machine.is_some()) {
                return Err(format!(
                    "[monitors.{name}]: accel and machine are QEMU settings"
                ));
            }
            if name != "solo5-hvt" && m.tender_seccomp.is_some() {
                return Err(format!(
                    "[monitors.{name}]: tender_seccomp is a solo5-hvt setting"
                ));
            }
            if let Some(a) = &m.accel {
                crate::monitor::parse_accel(a).map_err(|e| format!("[monitors.{name}] {e}"))?;
            }
            if let Some(machine) = &m.machine {
                crate::monitor::check_machine(machine)
                    .map_err(|e| format!("[monitors.{name}] {e}"))?;
            }
            if let Some(bad) = m.extra_args.iter().find(|a| a.contains('\0')) {
                return Err(format!(
                    "[monitors.{name}] extra_args: {bad:?} contains NUL"
                ));
            }
        }
        Ok(())
    }

    /// The settings for monitor `name` (defaults when the file has none).
    pub fn monitor(&self, name: &str) -> MonitorSettings {
        self.monitors.get(name).cloned().unwrap_or_default()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

fn file_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::ConfigFile {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_missing_are_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let missing = Path::new("/nonexistent/urunc/config.toml");
        assert_eq!(
            Config::load_file(missing, false).unwrap(),
            Config::default()
        );
        let e = Config::load_file(missing, true).unwrap_err().to_string();
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn full_file() {
        let cfg = Config::parse(
            r#"
[log]
level = "debug"
format = "json"

[timestamps]
enabled = true

[monitors.qemu]
binary_path = "/opt/qemu/bin/qemu-system-x86_64"
default_memory_mb = 512
default_vcpus = 2
accel = "tcg"
machine = "microvm"
extra_args = ["-d", "guest_errors"]

[monitors.firecracker]
default_memory_mb = 128
"#,
        )
        .unwrap();
        assert_eq!(cfg.log.level, LogLevel::Debug);
        assert_eq!(cfg.log.format, Some(LogFormat::Json));
        assert!(cfg.timestamps.enabled);
        let q = cfg.monitor("qemu");
        assert_eq!(q.default_memory_mb, Some(512));
        assert_eq!(q.default_vcpus, Some(2));
        assert_eq!(q.machine.as_deref(), Some("microvm"));
        assert_eq!(q.extra_args, ["-d", "guest_errors"]);
        assert_eq!(cfg.monitor("firecracker").default_memory_mb, Some(128));
        assert_eq!(cfg.monitor("solo5-hvt"), MonitorSettings::default());
    }

    #[test]
    fn errors_name_the_line() {
        let e = Config::parse("[log]\nlevel = \"info\"\nlevle = \"debug\"\n").unwrap_err();
        assert!(e.starts_with("line 3, column 1 (\"levle = "), "{e}");
        assert!(e.contains("unknown field `levle`"), "{e}");

        let e = Config::parse("[monitors.qemu]\n\ndefault_memory_mb = -5\n").unwrap_err();
        assert!(e.starts_with("line 3,"), "{e}");
        assert!(
            e.contains("default_memory_mb = -5"),
            "the key is named: {e}"
        );

        let e = Config::parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert!(e.starts_with("line 2,"), "{e}");

        let e = Config::parse("[log\n").unwrap_err();
        assert!(e.starts_with("line 1,"), "{e}");
    }

    #[test]
    fn semantic_errors() {
        for (text, want) in [
            ("[monitors.qemu]\ndefault_memory_mb = 0", "at least 1"),
            ("[monitors.qemu]\ndefault_vcpus = 0", "at least 1"),
            ("[monitors.xen]\n", "unknown monitor"),
            ("[monitors.qemu]\naccel = \"hax\"", "expected kvm or tcg"),
            ("[monitors.qemu]\nmachine = \"q35x\"", "machine"),
            ("[monitors.firecracker]\naccel = \"tcg\"", "QEMU settings"),
            ("[monitors.qemu]\nbinary_path = \"qemu\"", "absolute"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
