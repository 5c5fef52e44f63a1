//! `urunc-pack build -f Containerfile`: an image from a Containerfile (see
//! [`crate::containerfile`]), on `scratch` or on an existing image read from a local
//! tar or layout directory, whose layers, entrypoint, command, environment, working
//! directory and user are kept.
//!
//! The `com.urunc.unikernel.*` labels (from the file or inherited from the base) are
//! checked as the flags are and written to `/urunc.json`, the image labels and the
//! manifest annotations. `hypervisor` defaults to `qemu`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_image::{BaseImage, ContainerConfig, ImageBuilder, ImageRef};
use serde_json::Value;
use urunc::guest::{self, GuestSetup};
use urunc::monitor;
use urunc::unikernel::*;

use crate::containerfile::{self, Instruction};
use crate::{check_reference, default_name, elf, host_architecture, uruncjson, Packed};

/// What `urunc-pack build` is given.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The Containerfile.
    pub file: PathBuf,
    /// Where `COPY` sources and a relative `FROM` path are found; default: the
    /// Containerfile's directory.
    pub context: Option<PathBuf>,
    /// The image reference; default `urunc.local/<binary file name>:latest`.
    pub name: Option<String>,
}

impl BuildOptions {
    /// Parses the file, reads the base and the copied files, checks the keys and
    /// builds the image in memory.
    pub fn build(&self) -> Result<Packed> {
        let shown = self.file.display().to_string();
        let text = fs::read_to_string(&self.file).with_context(|| format!("-f {shown}"))?;
        let instructions = containerfile::parse(&text).map_err(|e| {
            // "line N: why" -> "FILE:N: why", as for the other errors.
            let e = format!("{e:#}");
            anyhow!("{shown}:{}", e.strip_prefix("line ").unwrap_or(&e))
        })?;
        let context = match &self.context {
            Some(c) => c.clone(),
            None => self
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        if !context.is_dir() {
            bail!("--context {}: not a directory", context.display());
        }
        let at = |line: usize, e: anyhow::Error| anyhow!("{shown}:{line}: {e:#}");

        let mut b = ImageBuilder::new();
        let mut config = ContainerConfig::default();
        let mut base_paths = BTreeMap::new();
        let mut arch: Option<String> = None;
        let mut copied_kernels: BTreeMap<String, PathBuf> = BTreeMap::new();
        match instructions.first() {
            Some((_, Instruction::From(_))) => {}
            Some((line, _)) => {
                return Err(at(*line, anyhow!("the first instruction must be FROM")))
            }
            None => bail!("{shown}: no instructions"),
        }
        for (line, ins) in &instructions {
            let line = *line;
            match ins {
                Instruction::From(base) => {
                    if line != instructions[0].0 {
                        return Err(at(
                            line,
                            anyhow!("a second FROM conflicts with the first (line {}): one base image only", instructions[0].0),
                        ));
                    }
                    if let Some(base) = base {
                        let path = context.join(base);
                        let img = BaseImage::read(&path, Some(host_architecture()))
                            .map_err(|e| at(line, anyhow!("FROM {base}: {e}")))?;
                        config = base_config(&img.config);
                        arch = img.config["architecture"].as_str().map(String::from);
                        base_paths = img
                            .paths()
                            .map_err(|e| at(line, anyhow!("FROM {base}: {e}")))?;
                        b.base_layers(img.layers);
                    }
                }
                Instruction::Copy { sources, dest } => {
                    for src in sources {
                        let host = confined(&context, src).map_err(|e| at(line, e))?;
                        let meta = fs::metadata(&host).map_err(|e| {
                            at(line, anyhow!("COPY {src}: {}: {e}", host.display()))
                        })?;
                        let target = if meta.is_dir() {
                            dest.clone()
                        } else if dest.ends_with('/') || sources.len() > 1 {
                            let name = host
                                .file_name()
                                .and_then(|n| n.to_str())
                                .ok_or_else(|| at(line, anyhow!("COPY {src}: no file name")))?;
                            format!("{}/{name}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        };
                        let target = absolute(&target);
                        if meta.is_dir() {
                            b.add_tree(&host, &target)
                                .map_err(|e| at(line, anyhow!("COPY {src}: {e}")))?;
                        } else {
                            use std::os::unix::fs::PermissionsExt;
                            b.add_file(&target, &host, meta.permissions().mode() & 0o7777)
                                .map_err(|e| at(line, anyhow!("COPY {src}: {e}")))?;
                            copied_kernels.insert(target.clone(), host.clone());
                        }
                    }
                }
                Instruction::Label(pairs) => {
                    for (k, v) in pairs {
                        if k.starts_with(PREFIX) && !KNOWN_KEYS.contains(&k.as_str()) {
                            return Err(at(
                                line,
                                anyhow!(
                                    "unknown key {k} (known: {})",
                                    KNOWN_KEYS
                                        .iter()
                                        .map(|k| &k[PREFIX.len()..])
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            ));
                        }
                        if v.chars().any(|c| c.is_control() && c != '\t') {
                            return Err(at(
                                line,
                                anyhow!("LABEL {k}: contains a control character"),
                            ));
                        }
                        config.labels.insert(k.clone(), v.clone());
                    }
                }
                Instruction::Env(pairs) => {
                    for (k, v) in pairs {
                        crate::parse_env(&format!("{k}={v}")).map_err(|e| at(line, e))?;
                        let prefix = format!("{k}=");
                        config.env.retain(|e| !e.starts_with(&prefix));
                        config.env.push(format!("{k}={v}"));
                    }
                }
                Instruction::Cmd(argv) => config.cmd = Some(argv.clone()),
                Instruction::Entrypoint(argv) => {
                    config.entrypoint = Some(argv.clone());
                    // As in Docker: a new ENTRYPOINT drops an inherited CMD.
                    config.cmd = None;
                }
                Instruction::Workdir(dir) => config.working_dir = Some(dir.clone()),
                Instruction::User(user) => config.user = Some(user.clone()),
            }
        }

        // The unikernel keys: labels with the prefix (inherited ones included).
        let mut keys: BTreeMap<String, String> = config
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        keys.entry(KEY_HYPERVISOR.to_string())
            .or_insert_with(|| crate::DEFAULT_MONITOR.to_string());
        for key in [KEY_TYPE, KEY_BINARY] {
            if !keys.contains_key(key) {
                bail!("{shown}: no LABEL {key}=... (required)");
            }
        }
        for (k, v) in &keys {
            config.labels.insert(k.clone(), v.clone());
        }
        let guest = guest::by_name(&keys[KEY_TYPE]).ok_or_else(|| {
            anyhow!(
                "{shown}: unknown {KEY_TYPE} {:?} (known: {})",
                keys[KEY_TYPE],
                guest::names().join(", ")
            )
        })?;
        let monitor = monitor::by_name(&keys[KEY_HYPERVISOR]).ok_or_else(|| {
            anyhow!(
                "{shown}: unknown {KEY_HYPERVISOR} {:?} (known: {})",
                keys[KEY_HYPERVISOR],
                monitor::names().join(", ")
            )
        })?;
        if !guest.monitors().contains(&monitor.name()) {
            bail!(
                "{shown}: unikernel type {:?} cannot run on monitor {:?} (it runs on: {})",
                guest.name(),
                monitor.name(),
                guest.monitors().join(", ")
            );
        }
        // The files the keys name must be regular files in the image.
        for key in [KEY_BINARY, KEY_INITRD] {
            let Some(path) = keys.get(key) else { continue };
            let rel = path.trim_start_matches('/');
            let found = b.added(path).or_else(|| base_paths.get(rel).copied());
            match found {
                Some(true) => {}
                Some(false) => bail!("{shown}: {key}={path}: not a regular file in the image"),
                None => bail!("{shown}: {key}={path}: no such file in the image (COPY it there)"),
            }
        }
        if b.added(uruncjson::PATH).is_some() {
            bail!(
                "{shown}: COPY to {} conflicts with the file urunc-pack writes from the labels",
                uruncjson::PATH
            );
        }

        // A command for Docker (which refuses images without one): the cmdline words.
        if config.cmd.is_none() && config.entrypoint.is_none() {
            if let Some(c) = keys.get(KEY_CMDLINE) {
                config.cmd = Some(c.split_whitespace().map(String::from).collect());
            }
        }
        let args: Vec<String> = config
            .entrypoint
            .iter()
            .flatten()
            .chain(config.cmd.iter().flatten())
            .cloned()
            .collect();
        let setup = GuestSetup {
            args,
            env: config.env.clone(),
            initrd: keys.contains_key(KEY_INITRD),
            version: keys.get(KEY_VERSION).cloned(),
            block_mount: None,
        };
        guest.cmdline(&setup).map_err(|e| {
            anyhow!(
                "{shown}: a {} guest cannot boot with this image's command and environment: {e}",
                guest.name()
            )
        })?;

        let binary = &keys[KEY_BINARY];
        let arch = match (arch, copied_kernels.get(&absolute(binary))) {
            (Some(a), _) => a,
            (None, Some(host)) => elf::architecture(host)?
                .unwrap_or_else(host_architecture)
                .to_string(),
            (None, None) => host_architecture().to_string(),
        };
        crate::check_qemu_machine(&keys, &arch).map_err(|e| anyhow!("{shown}: {e}"))?;
        let binary_name = binary.rsplit('/').next().unwrap_or("unikernel");
        let reference = self
            .name
            .clone()
            .unwrap_or_else(|| default_name(binary_name));
        let reference = ImageRef::parse(&reference)
            .map_err(|e| anyhow!("--name: {e}"))?
            .full;
        check_reference(&reference).map_err(|e| anyhow!("--name {reference:?}: {e}"))?;

        b.add_bytes(uruncjson::PATH, uruncjson::encode(&keys), 0o644)
            .map_err(|e| anyhow!("{e}"))?;
        b.platform("linux", &arch);
        for (k, v) in &keys {
            b.annotation(k, v);
        }
        *b.config_mut() = config;
        let image = b.build().map_err(|e| anyhow!("{e}"))?;
        Ok(Packed {
            reference,
            config: keys,
            image,
        })
    }

    /// Builds and writes the OCI image-layout tar (see [`crate::PackOptions::pack`]).
    pub fn pack(&self, output: &Path) -> Result<Packed> {
        let packed = self.build()?;
        crate::write_archive(&packed, output)?;
        Ok(packed)
    }
}

/// `/` + the path, for image destinations.
fn absolute(p: &str) -> String {
    format!("/{}", p.trim_start_matches('/'))
}

/// `src` inside `context`: relative, no `..`.
fn confined(context: &Path, src: &str) -> Result<PathBuf> {
    let rel = Path::new(src);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!("COPY {src}: sources must be relative paths inside the context");
    }
    Ok(context.join(rel))
}

/// The runtime settings an image build keeps from its base.
fn base_config(doc: &Value) -> ContainerConfig {
    let c = &doc["config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    ContainerConfig {
        user: text(&c["User"]),
        env: strings(&c["Env"]).unwrap_or_default(),
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        working_dir: text(&c["WorkingDir"]),
        labels: c["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        stop_signal: text(&c["StopSignal"]),
    }
}
