//! Deciding whether a privileged integration test can run on this machine.

use std::path::{Path, PathBuf};

/// When this environment variable is set to a non-empty value other than `0`,
/// [`require_root_and_tools`] panics instead of skipping, so that CI cannot
/// pass by skipping everything.
pub const REQUIRE_ENV: &str = "URUNC_REQUIRE_INTEGRATION";

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds an executable: a path containing `/` is checked as is, a bare name is
/// looked up in `$PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Returns true when running as root and every tool in `tools` is found.
///
/// Otherwise prints `SKIP: <test name>: <reason>` to stderr and returns false
/// (the test should then return early), or panics if [`REQUIRE_ENV`] is set.
pub fn require_root_and_tools(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("not running as root".to_string());
    }
    for tool in tools {
        if find_tool(tool).is_none() {
            missing.push(format!("{tool} not found in PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&missing.join(", "));
    false
}

/// Prints `SKIP: <test name>: <reason>`, or panics when [`REQUIRE_ENV`] is set.
pub fn skip_or_fail(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("{test}: cannot run ({reason}) but {REQUIRE_ENV} is set");
    }
    eprintln!("SKIP: {test}: {reason}");
}
