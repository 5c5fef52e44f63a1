//! `containerd-shim-urunc-v2`: containerd's runtime `io.containerd.urunc.v2`.
//!
//! A shim v2 on the `containerd-shim` crate's protocol types and helpers (synchronous
//! flavour; the start-up is its own, see [`shim`]) that drives the `urunc` binary:
//! unikernel containers run as VMs, ordinary containers are handed on to runc by urunc
//! itself and behave as under `io.containerd.runc.v2`.

#![cfg_attr(not(test), no_main)]

mod error;
mod events;
mod io;
mod options;
mod reaper;
mod rootfs;
mod runtime;
mod service;
mod shim;
mod stats;

pub const RUNTIME_ID: &str = "io.containerd.urunc.v2";

// `start` writes the address containerd reads to stdout without a newline: the
// `exit` that `c_main!` ends with flushes it.
urunc::c_main!(run);

fn run() -> i32 {
    // -v/-version answers without a namespace (the crate's parser only records it).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "-v" | "--v" | "-version" | "--version"))
    {
        println!("containerd-shim-urunc-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        return 0;
    }
    // One malloc arena for all threads. The ttrpc server runs requests on many short
    // threads; with glibc's default of an arena per thread (up to 8 per CPU) each kept
    // what its requests freed, and a long-lived pod shim's RSS crept up by tens of
    // KiB per container. The shim's allocations are small and rarely concurrent.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt before any thread exists; M_ARENA_MAX takes a count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    shim::main(&args)
}
