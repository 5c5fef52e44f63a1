//! urunc-pack: packs a unikernel (or a Linux kernel with its initrd) into an OCI image
//! that urunc runs.
//!
//! The image is one layer holding
//! - the kernel at `/boot/<file name>` and, if given, the initrd at `/boot/<file name>`;
//! - the files of an optional extra root directory (`--rootfs`), at the image root;
//! - `/urunc.json`: the `com.urunc.unikernel.*` keys with every value base64-encoded
//!   without a prefix, as the reference image builders (bunny, bima) write it. This file
//!   is what reaches urunc: image labels never get into a container's `config.json`.
//!
//! The same keys, with plain values, are also the image config's `Labels` and the
//! manifest's annotations, so tools that inspect images see what the image boots.
//!
//! Packing is deterministic: the same inputs give the same archive, byte for byte
//! (see [`oci_image`]). Everything that urunc would refuse at `create` time and that
//! can be known while packing (unknown guest type or monitor, a kernel command line the
//! guest type cannot carry) is refused here with one clear message.

mod build;
pub mod containerfile;
mod elf;
pub mod uruncjson;

pub use build::BuildOptions;
/// The keys a Containerfile may set with `LABEL`: every key urunc reads.
pub use urunc::unikernel::KNOWN_KEYS;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_image::{Image, ImageBuilder, ImageRef};
use urunc::guest::{self, GuestSetup};
use urunc::monitor;
use urunc::unikernel::{
    KEY_BINARY, KEY_CMDLINE, KEY_HYPERVISOR, KEY_INITRD, KEY_QEMU_MACHINE, KEY_TYPE, KEY_VERSION,
};

/// The directory of the image that holds the kernel and the initrd.
pub const BOOT_DIR: &str = "/boot";
/// The monitor used when none is given.
pub const DEFAULT_MONITOR: &str = "qemu";
/// Registry part of the reference given to images packed without `--name`.
pub const DEFAULT_REGISTRY: &str = "urunc.local";

/// What to pack. Paths are host paths; nothing is read before [`PackOptions::pack`]
/// (or [`PackOptions::build`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// The kernel (unikernel binary or Linux `vmlinux`).
    pub kernel: PathBuf,
    /// An initrd handed to the guest.
    pub initrd: Option<PathBuf>,
    /// `com.urunc.unikernel.unikernelType`, one of [`urunc::guest::names`].
    pub unikernel_type: String,
    /// `com.urunc.unikernel.hypervisor`, one of [`urunc::monitor::names`].
    pub monitor: String,
    /// `com.urunc.unikernel.cmdline`: the guest's arguments when the container has none.
    pub cmdline: Option<String>,
    /// `com.urunc.unikernel.unikernelVersion`.
    pub version: Option<String>,
    /// `com.urunc.unikernel.qemuMachine`: the QEMU machine the kernel boots on.
    pub qemu_machine: Option<String>,
    /// A host directory whose contents are added at the image root.
    pub rootfs: Option<PathBuf>,
    /// `KEY=VALUE` entries of the image's environment.
    pub env: Vec<String>,
    /// The image's default arguments (`Cmd`).
    pub cmd: Vec<String>,
    /// The image reference; by default `urunc.local/<kernel file name>:latest`.
    pub name: Option<String>,
}

/// The checked options: the keys and where the files go in the image.
struct Resolved {
    reference: String,
    config: BTreeMap<String, String>,
    kernel_dest: String,
    initrd_dest: Option<String>,
    env: Vec<(String, String)>,
}

/// A packed image and what went into it.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The full reference the archive is tagged with (`name:tag`).
    pub reference: String,
    /// The unikernel keys with plain values.
    pub config: BTreeMap<String, String>,
    /// Layer, config and manifest blobs.
    pub image: Image,
}

impl PackOptions {
    /// Options for `kernel` as a guest of `unikernel_type` on the default monitor.
    pub fn new(kernel: impl Into<PathBuf>, unikernel_type: &str) -> Self {
        PackOptions {
            kernel: kernel.into(),
            unikernel_type: unikernel_type.to_string(),
            monitor: DEFAULT_MONITOR.to_string(),
            ..Default::default()
        }
    }

    /// Checks the options, reads the files and builds the image in memory.
    pub fn build(&self) -> Result<Packed> {
        let r = self.resolve()?;
        let image = self.image(&r)?.build().map_err(|e| anyhow!("{e}"))?;
        Ok(Packed {
            reference: r.reference,
            config: r.config,
            image,
        })
    }

    /// Everything that can be checked before reading the files: the keys, where the
    /// files go, the reference, and that the guest type can boot with these arguments.
    fn resolve(&self) -> Result<Resolved> {
        let guest = guest::by_name(&self.unikernel_type).ok_or_else(|| {
            anyhow!(
                "unknown unikernel type {:?} (known: {})",
                self.unikernel_type,
                guest::names().join(", ")
            )
        })?;
        let monitor = monitor::by_name(&self.monitor).ok_or_else(|| {
            anyhow!(
                "unknown monitor {:?} (known: {})",
                self.monitor,
                monitor::names().join(", ")
            )
        })?;
        if !guest.monitors().contains(&monitor.name()) {
            bail!(
                "unikernel type {:?} cannot run on monitor {:?} (it runs on: {})",
                guest.name(),
                monitor.name(),
                guest.monitors().join(", ")
            );
        }
        let cmdline = optional_text("--cmdline", &self.cmdline)?;
        let version = optional_text("--version", &self.version)?;
        let qemu_machine = optional_text("--qemu-machine", &self.qemu_machine)?;
        let env = self
            .env
            .iter()
            .map(|e| parse_env(e))
            .collect::<Result<Vec<_>>>()?;
        for arg in &self.cmd {
            if arg.contains('\0') {
                bail!("--cmd {arg:?}: contains a NUL byte");
            }
        }

        check_file("--kernel", &self.kernel)?;
        let kernel_name = file_name("--kernel", &self.kernel)?;
        let initrd_name = match &self.initrd {
            Some(p) => {
                check_file("--initrd", p)?;
                Some(file_name("--initrd", p)?)
            }
            None => None,
        };
        if initrd_name.as_deref() == Some(kernel_name.as_str()) {
            bail!(
                "--kernel and --initrd have the same file name {kernel_name:?}; rename one of them"
            );
        }
        let kernel_dest = format!("{BOOT_DIR}/{kernel_name}");
        let initrd_dest = initrd_name.map(|n| format!("{BOOT_DIR}/{n}"));

        // The guest builds its command line from the container's args (the image's Cmd
        // unless the user gives others), else from the cmdline key. Check now that it can.
        let args = if self.cmd.is_empty() {
            cmdline
                .as_deref()
                .map(|c| c.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        } else {
            self.cmd.clone()
        };
        let setup = GuestSetup {
            args,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            initrd: initrd_dest.is_some(),
            version: version.clone(),
            block_mount: None,
        };
        guest.cmdline(&setup).map_err(|e| {
            anyhow!(
                "a {} guest cannot boot with these arguments: {e}",
                guest.name()
            )
        })?;

        let reference = match &self.name {
            Some(n) => n.clone(),
            None => default_name(&kernel_name),
        };
        let reference = ImageRef::parse(&reference)
            .map_err(|e| anyhow!("--name: {e}"))?
            .full;
        check_reference(&reference).map_err(|e| anyhow!("--name {reference:?}: {e}"))?;

        let mut config = BTreeMap::new();
        config.insert(KEY_TYPE.to_string(), guest.name().to_string());
        config.insert(KEY_HYPERVISOR.to_string(), monitor.name().to_string());
        config.insert(KEY_BINARY.to_string(), kernel_dest.clone());
        if let Some(i) = &initrd_dest {
            config.insert(KEY_INITRD.to_string(), i.clone());
        }
        if let Some(c) = &cmdline {
            config.insert(KEY_CMDLINE.to_string(), c.clone());
        }
        if let Some(v) = &version {
            config.insert(KEY_VERSION.to_string(), v.clone());
        }
        if let Some(m) = &qemu_machine {
            config.insert(KEY_QEMU_MACHINE.to_string(), m.clone());
        }

        Ok(Resolved {
            reference,
            config,
            kernel_dest,
            initrd_dest,
            env,
        })
    }

    /// The image's files and configuration.
    fn image(&self, r: &Resolved) -> Result<ImageBuilder> {
        let Resolved {
            config,
            kernel_dest,
            initrd_dest,
            env,
            ..
        } = r;
        let mut b = ImageBuilder::new();
        if let Some(dir) = &self.rootfs {
            let meta = fs::metadata(dir).with_context(|| format!("--rootfs {}", dir.display()))?;
            if !meta.is_dir() {
                bail!("--rootfs {}: not a directory", dir.display());
            }
            let ours = std::iter::once(uruncjson::PATH)
                .chain(std::iter::once(kernel_dest.as_str()))
                .chain(initrd_dest.as_deref());
            for dest in ours {
                let host = dir.join(dest.trim_start_matches('/'));
                if host.symlink_metadata().is_ok() {
                    bail!(
                        "--rootfs {}: it has {dest}, which urunc-pack writes itself",
                        dir.display()
                    );
                }
            }
            b.add_tree(dir, "/")
                .map_err(|e| anyhow!("--rootfs {}: {e}", dir.display()))?;
        }
        b.add_file(kernel_dest, &self.kernel, 0o644)
            .map_err(|e| anyhow!("--kernel: {e}"))?;
        if let (Some(src), Some(dest)) = (&self.initrd, &initrd_dest) {
            b.add_file(dest, src, 0o644)
                .map_err(|e| anyhow!("--initrd: {e}"))?;
        }
        b.add_bytes(uruncjson::PATH, uruncjson::encode(config), 0o644)
            .map_err(|e| anyhow!("{e}"))?;

        let arch = elf::architecture(&self.kernel)
            .with_context(|| format!("--kernel {}", self.kernel.display()))?
            .unwrap_or_else(host_architecture);
        check_qemu_machine(config, arch)?;
        b.platform("linux", arch);
        for (k, v) in config {
            b.label(k, v);
            b.annotation(k, v);
        }
        for (k, v) in env {
            b.env(k, v);
        }
        if !self.cmd.is_empty() {
            b.cmd(self.cmd.iter().cloned());
        } else if let Some(c) = config.get(KEY_CMDLINE) {
            // Docker refuses to run an image without a command: the cmdline's words
            // (what urunc uses when the container has no args anyway).
            b.cmd(c.split_whitespace());
        }
        Ok(b)
    }

    /// Builds the image and writes it as an OCI image-layout tar to `output`. The file
    /// is written next to `output` first and renamed, so a failed pack leaves none.
    pub fn pack(&self, output: &Path) -> Result<Packed> {
        let packed = self.build()?;
        write_archive(&packed, output)?;
        Ok(packed)
    }
}

/// Writes `packed` as an OCI image-layout tar to `output`: next to it first, then
/// renamed, so a failed write leaves no archive.
pub(crate) fn write_archive(packed: &Packed, output: &Path) -> Result<()> {
    let name = output
        .file_name()
        .ok_or_else(|| anyhow!("--output {}: not a file name", output.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = output.with_file_name(tmp_name);
    let written = packed
        .image
        .write_oci_archive(&tmp, &packed.reference)
        .map_err(|e| anyhow!("--output {}: {e}", output.display()))
        .and_then(|()| {
            fs::rename(&tmp, output).with_context(|| format!("--output {}", output.display()))
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Splits a `KEY=VALUE` environment entry. The key must be non-empty and free of `=`,
/// whitespace and control characters; the value may be empty but holds no NUL.
pub fn parse_env(entry: &str) -> Result<(String, String)> {
    let Some((key, value)) = entry.split_once('=') else {
        bail!("--env {entry:?}: expected KEY=VALUE");
    };
    if key.is_empty() {
        bail!("--env {entry:?}: the name before '=' is empty");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--env {entry:?}: the name contains whitespace or a control character");
    }
    if value.contains('\0') {
        bail!("--env {entry:?}: the value contains a NUL byte");
    }
    Ok((key.to_string(), value.to_string()))
}

/// A text option: unset or empty means none; control characters (a newline, say)
/// cannot be carried on a kernel command line or through `urunc.json`.
fn optional_text(flag: &str, v: &Option<String>) -> Result<Option<String>> {
    let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().any(|c| c.is_control() && c != '\t') {
        bail!("{flag} {v:?}: contains a control character");
    }
    Ok(Some(v.to_string()))
}

fn check_file(flag: &str, path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| anyhow!("{flag} {}: {e}", path.display()))?;
    if !meta.is_file() {
        bail!("{flag} {}: not a regular file", path.display());
    }
    Ok(())
}

fn file_name(flag: &str, path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .ok_or_else(|| anyhow!("{flag} {}: the file name is not UTF-8", path.display()))
}

/// What container tools accept as `[domain/]path:tag`: path components of lowercase
/// letters and digits joined by `.`, `_`, `__` or dashes; a tag of up to 128 word
/// characters, dots and dashes not starting with either. (The domain, the first
/// component when it has a dot or a port or is `localhost`, is not checked.)
pub(crate) fn check_reference(full: &str) -> std::result::Result<(), String> {
    let (name, tag) = full.rsplit_once(':').ok_or("no tag")?;
    let tag_ok = tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !tag_ok {
        return Err(format!("invalid tag {tag:?}"));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    for part in parts {
        let chars_ok = part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        let ends_ok = part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !chars_ok || !ends_ok || part.contains("..") || part.contains("___") {
            return Err(format!(
                "invalid repository name component {part:?} (lowercase letters, digits and . _ - only)"
            ));
        }
    }
    Ok(())
}

/// `urunc.local/<name>:latest`, with the name lowered to what references allow.
pub(crate) fn default_name(kernel_name: &str) -> String {
    // Letters and digits stay; a run of anything else becomes one separator: itself
    // when it is a single '.', '_' or '-', else '-'.
    let mut repo = String::new();
    let mut run = String::new();
    for c in kernel_name.to_ascii_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            if !run.is_empty() && !repo.is_empty() {
                repo.push(match run.as_str() {
                    "." | "_" | "-" => run.chars().next().unwrap_or('-'),
                    _ => '-',
                });
            }
            run.clear();
            repo.push(c);
        } else {
            run.push(c);
        }
    }
    if repo.is_empty() {
        repo = "unikernel".into();
    }
    format!("{DEFAULT_REGISTRY}/{repo}:latest")
}

/// `qemuMachine` means something to QEMU only, and must name a machine urunc knows for
/// the image's architecture (`goarch`, as in the image's platform).
pub(crate) fn check_qemu_machine(keys: &BTreeMap<String, String>, goarch: &str) -> Result<()> {
    let Some(machine) = keys.get(KEY_QEMU_MACHINE) else {
        return Ok(());
    };
    let monitor = keys.get(KEY_HYPERVISOR).map_or("", String::as_str);
    if monitor != "qemu" {
        bail!("{KEY_QEMU_MACHINE}={machine}: a QEMU setting, but the monitor is {monitor:?}");
    }
    let arch = match goarch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => other,
    };
    monitor::check_machine_for(arch, machine).map_err(|e| anyhow!("{KEY_QEMU_MACHINE}: {e}"))
}

/// The host's architecture in GOARCH terms, for kernels that are not ELF files.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

#[cfg(test)]
mod tests;
