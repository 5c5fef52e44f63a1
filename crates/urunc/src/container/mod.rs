//! The container lifecycle: create, start, state, kill, delete, as runc has them.
//! Each operation lives in its own file; this one holds the shared entry type.

mod create;
pub mod hooks;
mod init;
mod lifecycle;
pub mod state;
mod sync;
mod vmroot;

use std::path::PathBuf;

pub use create::{CreateOptions, Created};
pub use state::{OciState, Status};

/// Default `--root`, like runc's `/run/runc`.
pub const DEFAULT_ROOT: &str = "/run/urunc";

/// A runtime instance: where state lives, how cgroup paths are read, and urunc's
/// configuration file (read by `create` only: a created container keeps what it got).
#[derive(Clone, Debug)]
pub struct Runtime {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub config: crate::config::Config,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            systemd_cgroup: false,
            config: crate::config::Config::default(),
        }
    }

    /// True when `id` is a urunc container (anything else belongs to runc).
    pub fn owns(&self, id: &str) -> bool {
        state::StateDir::new(&self.root, id).is_ok_and(|d| d.is_ours())
    }

    /// The exit status of the guest's application, when its guest init reported one
    /// (`<root>/<id>/exit-status`, see `crate::guest_init`). The monitor's own exit
    /// status says only how the VM ended.
    pub fn guest_exit_status(&self, id: &str) -> Option<i32> {
        let dir = state::StateDir::new(&self.root, id).ok()?;
        crate::guest_init::read_exit_status(&dir.path)
    }
}
