//! Guest types: how each kind of unikernel (or Linux) wants its kernel command line.
//!
//! Adding a guest type means adding one file here with a [`Guest`] implementation and
//! listing it in [`ALL`]. Command-line generation is pure: it takes a [`GuestSetup`]
//! and the container's network ([`NetConfig`], known only at start, or none) and
//! returns a string or an error message, and is unit-tested with golden strings.
//!
//! Network hooks for guest types still to come, from their conventions: Rumprun takes
//! a JSON `"net": {"if": "ukvmif0", "type": "inet", "method": "static", "addr": ...,
//! "mask": <prefix>, "gw": ...}`; MirageOS `--ipv4=<ip>/<prefix> --ipv4-gateway=<gw>`;
//! Mewz `ip=<ip>/<prefix> gateway=<gw>`. Each formats [`NetConfig`] in its
//! `cmdline_net` the way [`unikraft`] does.

mod cmdline;
mod linux;
mod unikraft;

pub use crate::network::NetConfig;
pub use cmdline::MAX_CMDLINE;

/// What the container asks the guest to run, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestSetup {
    /// The application's argv (from `process.args`, or the `cmdline` key when empty).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries from `process.env`.
    pub env: Vec<String>,
    /// True when an initrd is handed to the guest.
    pub initrd: bool,
    /// `com.urunc.unikernel.unikernelVersion`, for guests whose syntax changed.
    pub version: Option<String>,
}

pub trait Guest: Sync {
    /// The `unikernelType` value that selects this guest.
    fn name(&self) -> &'static str;
    /// Monitors this guest can boot on (their `hypervisor` names).
    fn monitors(&self) -> &'static [&'static str];
    /// The kernel command line, with the guest's network configuration when it has a
    /// NIC, or why it cannot be built.
    fn cmdline_net(&self, setup: &GuestSetup, net: Option<&NetConfig>) -> Result<String, String>;
    /// The kernel command line of a guest without network.
    fn cmdline(&self, setup: &GuestSetup) -> Result<String, String> {
        self.cmdline_net(setup, None)
    }
    /// True when the guest can boot urunc's guest init (urunit) from its initrd, which
    /// then receives the application, its environment and the network instead of
    /// the command line.
    fn supports_guest_init(&self) -> bool {
        false
    }
}

pub static ALL: &[&dyn Guest] = &[&linux::Linux, &unikraft::Unikraft];

pub fn by_name(name: &str) -> Option<&'static dyn Guest> {
    ALL.iter().copied().find(|g| g.name() == name)
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|g| g.name()).collect()
}
