//! urunc: an OCI runtime whose containers are virtual machines booting unikernels or
//! single-application Linux guests.
//!
//! The crate is laid out by concept:
//! - [`bundle`] reads `config.json`; [`unikernel`] reads the `com.urunc.unikernel.*`
//!   keys (annotations, `urunc.json`); [`rootfs_path`] resolves image paths safely.
//! - [`guest`] (one file per guest type) builds kernel command lines; [`monitor`] (one
//!   file per monitor) builds monitor command lines; [`plan`] joins them for a bundle.
//! - [`network`] hands the container's network to the guest (tap, redirect, modes);
//!   [`guest_init`] packages the guest init for Linux guests (the `urunit` crate).
//! - [`config`] is urunc's own configuration file (`/etc/urunc/config.toml`);
//!   [`timestamps`] records start-up phases when asked.
//! - [`container`] is the lifecycle (create/start/kill/delete) and its state;
//!   [`sys`] wraps the Linux facilities it uses.

pub mod bundle;
pub mod config;
pub mod container;
pub mod error;
pub mod guest;
pub mod guest_init;
pub mod monitor;
pub mod network;
pub mod plan;
pub mod rootfs_path;
pub mod storage;
pub mod sys;
pub mod timestamps;
pub mod unikernel;

pub use error::{Error, Result};
