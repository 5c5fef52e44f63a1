//! What urunc's executables do first, in place of Rust's standard start-up.
//!
//! `urunc` runs three times per container start and the shim three times per `ctr run`
//! (start, server, cleanup). Rust's `main` start-up reads `/proc/self/maps` to place
//! a stack guard and maps an alternate signal stack for its stack-overflow message:
//! 70 to 80 µs of each run on this project's machines, about a seventh of a static
//! executable's whole start. The binaries therefore define the C `main` themselves
//! (`#![no_main]` and [`c_main!`](crate::c_main)), which calls [`prepare`]: it keeps
//! the two parts of std's start-up that matter, SIGPIPE ignored and descriptors 0 to 2
//! open, and clears the signal mask it was started with.

/// Defines an executable's C `main`: [`prepare`], then `$run` (a `fn() -> i32`
/// returning the exit status), then `std::process::exit`, which flushes stdout as the
/// end of std's `main` would. The crate root needs `#![cfg_attr(not(test), no_main)]`.
#[macro_export]
macro_rules! c_main {
    ($run:path) => {
        #[cfg(not(test))]
        #[no_mangle]
        pub extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::sys::entry::prepare();
            let status: i32 = $run();
            ::std::process::exit(status)
        }
        // Under `cargo test` the test harness has the `main`; `$run` is still used.
        #[cfg(test)]
        const _: fn() -> i32 = $run;
    };
}

/// Ignores SIGPIPE (a write to a closed pipe fails with EPIPE instead of killing the
/// process, as under std's `main`), opens `/dev/null` on any of descriptors 0 to 2
/// that the caller left closed, so that no file urunc opens becomes a standard stream,
/// and unblocks every signal.
///
/// A blocked signal stays blocked across fork and exec. A caller that takes its signals
/// with `sigwait` (as the shim does, SIGCHLD, SIGTERM and SIGINT) would otherwise pass
/// its mask through urunc to the container's process: a monitor that cannot receive
/// SIGTERM, so `ctr task kill` or `docker stop` waits for its grace period and SIGKILL.
pub fn prepare() {
    // SAFETY: setting a signal to be ignored installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    clear_signal_mask();
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // Lands on the lowest free descriptor: this one. Left open for good.
            // SAFETY: a constant NUL-terminated path.
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != fd {
                // Without a /dev/null there is nothing sane to run with.
                std::process::abort();
            }
        }
    }
}

/// Unblocks every signal in the calling thread. Only `sigprocmask(2)`, which is
/// async-signal-safe: also for a forked child before its exec.
pub fn clear_signal_mask() {
    // SAFETY: an empty set is a valid mask; nothing else is touched.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_blocked_signal_is_unblocked() {
        // In a child, so the test process's own mask stays as it is.
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                super::prepare();
                let mut now: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
                libc::_exit(libc::sigismember(&now, libc::SIGTERM));
            },
            pid => {
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "SIGTERM still blocked after prepare"
                );
            }
        }
    }

    #[test]
    fn closed_standard_descriptors_are_reopened() {
        // In a child, so the test process's own stdin stays as it is.
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                unsafe { libc::close(0) };
                super::prepare();
                let ok = unsafe { libc::fcntl(0, libc::F_GETFD) } != -1
                    && unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_IGN;
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            pid => {
                let mut status = 0;
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
