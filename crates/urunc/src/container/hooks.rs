//! OCI hooks: each gets the container's state JSON on stdin; a failing hook fails the
//! step that ran it (except poststart/poststop, whose failures are only logged by
//! callers, as the spec says).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    fn select(self, h: &Hooks) -> Option<&Vec<Hook>> {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => h.prestart(),
            Kind::CreateRuntime => h.create_runtime(),
            Kind::CreateContainer => h.create_container(),
            Kind::StartContainer => h.start_container(),
            Kind::Poststart => h.poststart(),
            Kind::Poststop => h.poststop(),
        };
        list.as_ref()
    }
}

pub fn has(spec: &Spec, kind: Kind) -> bool {
    spec.hooks()
        .as_ref()
        .and_then(|h| kind.select(h))
        .is_some_and(|l| !l.is_empty())
}

/// The hooks of `kind` in the spec.
pub fn list(spec: &Spec, kind: Kind) -> Vec<Hook> {
    spec.hooks()
        .as_ref()
        .and_then(|h| kind.select(h))
        .cloned()
        .unwrap_or_default()
}

/// Runs every hook of `kind` in order, stopping at the first failure.
pub fn run(spec: &Spec, kind: Kind, state_json: &[u8]) -> Result<()> {
    let Some(list) = spec.hooks().as_ref().and_then(|h| kind.select(h)) else {
        return Ok(());
    };
    run_list(list, kind, state_json)
}

/// Runs `hooks` (of `kind`) in order, stopping at the first failure.
pub fn run_list(hooks: &[Hook], kind: Kind, state_json: &[u8]) -> Result<()> {
    for hook in hooks {
        run_one(hook, kind, state_json)?;
    }
    Ok(())
}

fn run_one(hook: &Hook, kind: Kind, state_json: &[u8]) -> Result<()> {
    let fail = |msg: String| Error::Hook {
        hook: kind.name().into(),
        path: hook.path().clone(),
        msg,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(argv0) = args.first() {
            cmd.arg0(argv0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .map(|s| Instant::now() + Duration::from_secs(s.max(1) as u64));
    // Woken by the exit itself (pidfd); the loop below then reaps it at once. Without
    // pidfds, the loop polls.
    if let Some(d) = deadline {
        let _ = crate::sys::process::wait_child(
            child.id() as i32,
            d.saturating_duration_since(Instant::now()),
        );
    } else {
        let _ = child.wait();
    }
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let err = err.trim().lines().last().unwrap_or("").to_string();
                return Err(fail(format!(
                    "{status}{}",
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!(": {err}")
                    }
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail("timed out".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
