//! Guest types: how each kind of unikernel (or Linux) wants its kernel command line.
//!
//! Adding a guest type means adding one file here with a [`Guest`] implementation and
//! listing it in [`ALL`]. Command-line generation is pure: it takes a [`GuestSetup`]
//! and the container's network ([`NetConfig`], known only at start, or none) and
//! returns a string or an error message, and is unit-tested with golden strings.
//!
//! Each guest type declares the monitors it boots on, whether it takes a network, a
//! block device and an initrd; `create` refuses any other combination, listing what
//! is supported. How a guest wants its devices presented (Solo5 device names, QEMU
//! NIC options, extra monitor arguments) is [`GuestDevices`] data handed to the
//! monitor, so monitors never look at guest types.

mod cmdline;
mod includeos;
mod linux;
mod mewz;
mod mirage;
mod osv;
mod rumprun;
mod unikraft;

pub use crate::monitor::GuestDevices;
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
    /// Where the guest mounts its block device, when it has one.
    #[serde(default)]
    pub block_mount: Option<String>,
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
    /// True when the guest can be given a network interface.
    fn supports_network(&self) -> bool {
        true
    }
    /// True when the guest can be given a block device.
    fn supports_block(&self) -> bool {
        false
    }
    /// True when the guest can be given an initrd.
    fn supports_initrd(&self) -> bool {
        false
    }
    /// How this guest wants its devices presented by `monitor`.
    fn devices(&self, _monitor: &str) -> GuestDevices {
        GuestDevices::default()
    }
}

pub static ALL: &[&dyn Guest] = &[
    &linux::Linux,
    &unikraft::Unikraft,
    &rumprun::Rumprun,
    &mirage::Mirage,
    &mewz::Mewz,
    &osv::Osv,
    &includeos::IncludeOs,
];

pub fn by_name(name: &str) -> Option<&'static dyn Guest> {
    ALL.iter().copied().find(|g| g.name() == name)
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|g| g.name()).collect()
}

/// What a guest supports, in words, for error messages and the documentation.
pub fn describe(g: &dyn Guest) -> String {
    let mut s = format!("monitors: {}", g.monitors().join(", "));
    for (what, yes) in [
        ("network", g.supports_network()),
        ("block device", g.supports_block()),
        ("initrd", g.supports_initrd()),
    ] {
        s.push_str(&format!("; {what}: {}", if yes { "yes" } else { "no" }));
    }
    s
}

/// Combinations that really booted on the project's machines (guest, monitor, how);
/// every other supported combination is verified by golden arguments and by the
/// recording monitor run through the lifecycle.
pub const BOOTED: &[(&str, &str, &str)] = &[
    (
        "linux",
        "qemu",
        "booted (Debian 6.1 kernel, busybox initrd, TCG)",
    ),
    (
        "unikraft",
        "qemu",
        "booted: the project's PVH test kernel in the Unikraft format",
    ),
];

/// The support matrix as a Markdown table (README.md carries a copy, checked by a
/// test): for each guest and monitor, whether the combination is supported and how
/// it was verified.
pub fn support_matrix() -> String {
    let monitors = crate::monitor::names();
    let mut s = format!(
        "| guest \\ monitor | {} | network | block (formats only) | initrd |\n|---|{}---|---|---|\n",
        monitors.join(" | "),
        "---|".repeat(monitors.len())
    );
    for g in ALL {
        let mut row = format!("| {} |", g.name());
        for m in &monitors {
            let cell = if let Some((_, _, how)) =
                BOOTED.iter().find(|(bg, bm, _)| *bg == g.name() && bm == m)
            {
                how.to_string()
            } else if g.monitors().contains(m) {
                "arguments verified".to_string()
            } else {
                "—".to_string()
            };
            row.push_str(&format!(" {cell} |"));
        }
        let yn = |b: bool| if b { "yes" } else { "no" };
        row.push_str(&format!(
            " {} | {} | {} |\n",
            yn(g.supports_network()),
            yn(g.supports_block()),
            yn(g.supports_initrd())
        ));
        s.push_str(&row);
    }
    s
}
