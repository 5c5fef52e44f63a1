//! The capability sets from `process.capabilities`, applied to the monitor process the
//! way runc applies them to a container's: bounding set first (needs CAP_SETPCAP),
//! then, after the uid switch with KEEPCAPS, effective/permitted/inheritable/ambient.

use std::collections::HashSet;

use caps::{CapSet, Capability};
use oci_spec::runtime::Process;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: HashSet<Capability>,
    pub effective: HashSet<Capability>,
    pub permitted: HashSet<Capability>,
    pub inheritable: HashSet<Capability>,
    pub ambient: HashSet<Capability>,
}

fn convert(set: &Option<oci_spec::runtime::Capabilities>) -> HashSet<Capability> {
    set.iter()
        .flatten()
        // Capabilities this host's libcaps does not know cannot be granted anyway.
        .filter_map(|c| format!("CAP_{c}").parse().ok())
        .collect()
}

/// `None` when the spec leaves capabilities alone.
pub fn from_spec(process: Option<&Process>) -> Option<CapSets> {
    let c = process?.capabilities().as_ref()?;
    Some(CapSets {
        bounding: convert(c.bounding()),
        effective: convert(c.effective()),
        permitted: convert(c.permitted()),
        inheritable: convert(c.inheritable()),
        ambient: convert(c.ambient()),
    })
}

fn err(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Other(format!("capabilities: {what}: {e}"))
}

pub fn drop_bounding(s: &CapSets) -> Result<()> {
    let current = caps::read(None, CapSet::Bounding).map_err(|e| err("read bounding set", e))?;
    for cap in current.difference(&s.bounding) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| err(&format!("drop {cap}"), e))?;
    }
    Ok(())
}

/// Keep permitted capabilities across the setuid that follows.
pub fn keep_across_setuid() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
        return Err(Error::Other(format!(
            "capabilities: PR_SET_KEEPCAPS: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

pub fn apply(s: &CapSets) -> Result<()> {
    let effective: HashSet<Capability> = s.effective.intersection(&s.permitted).copied().collect();
    caps::set(None, CapSet::Effective, &effective).map_err(|e| err("set effective", e))?;
    caps::set(None, CapSet::Inheritable, &s.inheritable).map_err(|e| err("set inheritable", e))?;
    caps::set(None, CapSet::Permitted, &s.permitted).map_err(|e| err("set permitted", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("clear ambient", e))?;
    for cap in &s.ambient {
        // Ambient needs the capability in both permitted and inheritable.
        if s.permitted.contains(cap) && s.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| err(&format!("raise ambient {cap}"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_convert() {
        let spec: Process = serde_json::from_value(serde_json::json!({
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "capabilities": {
                "bounding": ["CAP_NET_ADMIN", "CAP_KILL"],
                "effective": ["CAP_KILL"],
            }
        }))
        .unwrap();
        let s = from_spec(Some(&spec)).unwrap();
        assert_eq!(
            s.bounding,
            HashSet::from([Capability::CAP_NET_ADMIN, Capability::CAP_KILL])
        );
        assert_eq!(s.effective, HashSet::from([Capability::CAP_KILL]));
        assert!(s.permitted.is_empty());
    }
}
