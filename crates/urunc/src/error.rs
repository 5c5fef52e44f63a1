//! The library's error type. Every variant renders as one line that names the
//! thing at fault (file, annotation, container id) and what was expected, because
//! containerd shows that line to the user verbatim.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {msg}")]
    Bundle { path: PathBuf, msg: String },

    #[error("unikernel configuration: {0}")]
    Config(String),

    /// urunc's own configuration file (`/etc/urunc/config.toml` or `--config`).
    #[error("config file {path:?}: {msg}")]
    ConfigFile { path: PathBuf, msg: String },

    #[error("{what} {path:?}: {msg}")]
    Path {
        what: String,
        path: String,
        msg: String,
    },

    #[error("guest {guest}: {msg}")]
    Guest { guest: String, msg: String },

    #[error("monitor {monitor}: {msg}")]
    Monitor { monitor: String, msg: String },

    #[error("container {id:?} does not exist")]
    NotFound { id: String },

    #[error("container {id:?} already exists")]
    Exists { id: String },

    #[error("invalid container id {id:?}: {msg}")]
    InvalidId { id: String, msg: String },

    #[error("container {id:?} is {status}: {msg}")]
    WrongState {
        id: String,
        status: String,
        msg: String,
    },

    #[error("{hook} hook {path:?} failed: {msg}")]
    Hook {
        hook: String,
        path: PathBuf,
        msg: String,
    },

    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },

    #[error("{context}: {err}")]
    Sys { context: String, err: nix::Error },

    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context to low-level errors: `.ctx(|| format!("open {p:?}"))`.
pub trait Context<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|err| Error::Io { context: f(), err })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|err| Error::Sys { context: f(), err })
    }
}
