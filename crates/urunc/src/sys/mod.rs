//! Thin wrappers over the Linux facilities the lifecycle uses. Nothing here knows
//! about containers; each file is one facility.

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod namespaces;
pub mod process;
pub mod seccomp;
