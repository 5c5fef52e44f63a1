//! Namespaces from the spec: which to create (clone flags) and which to join (paths).

use std::fs::File;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Result};

#[derive(Debug)]
pub struct Namespaces {
    /// Namespaces to create with `clone`.
    pub create: CloneFlags,
    /// Namespaces to join with `setns` (the pid namespace is handled separately:
    /// joining it only affects children, so the parent joins before cloning).
    pub join: Vec<(CloneFlags, File)>,
    pub join_pid: Option<File>,
}

pub fn flag(t: LinuxNamespaceType) -> Option<CloneFlags> {
    Some(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        _ => return None,
    })
}

impl Namespaces {
    /// Reads the spec. A mount namespace is always created (or, when the spec names one
    /// to join, a private copy of it is made later) because the monitor gets a root
    /// filesystem of its own.
    pub fn from_spec(spec: &Spec) -> Result<Self> {
        let mut ns = Namespaces {
            create: CloneFlags::CLONE_NEWNS,
            join: Vec::new(),
            join_pid: None,
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for n in list {
            let Some(f) = flag(n.typ()) else { continue };
            if f == CloneFlags::CLONE_NEWUSER {
                return Err(Error::Other(
                    "user namespaces are not supported for unikernel containers".into(),
                ));
            }
            match n.path() {
                None => ns.create |= f,
                Some(p) => {
                    let file = open_ns(p)?;
                    if f == CloneFlags::CLONE_NEWPID {
                        ns.join_pid = Some(file);
                    } else {
                        if f == CloneFlags::CLONE_NEWNS {
                            // Keep creating a private copy after joining.
                            ns.create.remove(CloneFlags::CLONE_NEWNS);
                        }
                        ns.join.push((f, file));
                    }
                }
            }
        }
        Ok(ns)
    }

    pub fn joins_mount(&self) -> bool {
        self.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
    }
}

fn open_ns(p: &PathBuf) -> Result<File> {
    File::open(p).ctx(|| format!("namespace path {p:?}"))
}
