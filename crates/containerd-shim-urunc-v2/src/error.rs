//! Errors of the task service, carrying the ttrpc status code containerd maps to its
//! own error kinds (NotFound, AlreadyExists, ...). The message is what `ctr` and
//! `kubectl` show, so it is urunc's own message wherever urunc produced one.

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(Code::NOT_FOUND, msg)
    }
    pub fn exists(msg: impl Into<String>) -> Self {
        Self::new(Code::ALREADY_EXISTS, msg)
    }
    pub fn precondition(msg: impl Into<String>) -> Self {
        Self::new(Code::FAILED_PRECONDITION, msg)
    }
    pub fn unimplemented(msg: impl Into<String>) -> Self {
        Self::new(Code::UNIMPLEMENTED, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(Code::INVALID_ARGUMENT, msg)
    }
    pub fn other(msg: impl Into<String>) -> Self {
        Self::new(Code::UNKNOWN, msg)
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: &str) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::other(e.to_string())
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::other(e.desc())
    }
}

impl From<containerd_shim::Error> for Error {
    fn from(e: containerd_shim::Error) -> Self {
        match e {
            containerd_shim::Error::NotFoundError(m) => Error::not_found(m),
            containerd_shim::Error::InvalidArgument(m) => Error::invalid(m),
            containerd_shim::Error::FailedPreconditionError(m) => Error::precondition(m),
            other => Error::other(other.to_string()),
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code, e.msg))
    }
}

/// `.ctx("doing x")?` on io/nix results.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(&what()))
    }
}
