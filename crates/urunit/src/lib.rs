//! urunit: the init process urunc places into Linux guests, and what urunc shares
//! with it.
//!
//! urunc appends an extra newc archive to the guest's initrd holding the static
//! `urunit` binary ([`BINARY_PATH`]) and its configuration ([`CONFIG_PATH`], a
//! [`config::Config`] as JSON), and boots the kernel with `rdinit=/urunit`. urunit then
//! mounts the basic filesystems, loads the kernel modules the image carries, configures
//! the network, runs the container's process and, when it exits, writes its exit status
//! to a serial port the host reads, and powers the VM off.
//!
//! [`netlink`] is a small synchronous rtnetlink client (links, addresses, routes and raw
//! requests), used by urunit in the guest and by urunc on the host.

pub mod config;
pub mod netlink;

/// Where urunc puts the urunit binary in the guest's initrd.
pub const BINARY_PATH: &str = "/urunit";
/// Where urunc puts urunit's configuration in the guest's initrd.
pub const CONFIG_PATH: &str = "/urunit.json";
