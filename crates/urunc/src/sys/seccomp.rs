//! A seccomp-BPF allow-list installed on the calling process before it execs a
//! monitor that does not confine itself (Solo5's `solo5-hvt` before 0.11.0). Any
//! system call outside the list, from another architecture's ABI or (x86_64) the x32
//! ABI kills the process with SIGSYS. The program is built by [`program`] (pure,
//! tested with a small interpreter) and loaded by [`install`].

use libc::{c_long, sock_filter, sock_fprog};

/// `AUDIT_ARCH_*` of the architecture urunc was built for.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// System call numbers with this bit set are the x32 ABI on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

const fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program: check the architecture, then allow exactly `allowed`.
pub fn program(allowed: &[c_long]) -> Result<Vec<sock_filter>, String> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let kill = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS);
    let allow = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW);
    // Each comparison jumps over the ones after it and the final kill.
    if allowed.len() > u8::MAX as usize - 1 {
        return Err(format!(
            "{} system calls is too many for one filter",
            allowed.len()
        ));
    }
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        kill,
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
        p.push(kill);
    }
    let n = allowed.len();
    for (i, nr) in allowed.iter().enumerate() {
        let nr = u32::try_from(*nr).map_err(|_| format!("bad system call number {nr}"))?;
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, (n - i) as u8, 0));
    }
    p.push(kill);
    p.push(allow);
    Ok(p)
}

/// Sets no_new_privs (required to install a filter without CAP_SYS_ADMIN, and what
/// the reference implementation does) and loads the filter for this process, whose
/// next `execve` keeps it.
pub fn install(allowed: &[c_long]) -> std::io::Result<()> {
    let mut prog = program(allowed).map_err(std::io::Error::other)?;
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one (arch, nr) pair, for the instructions `program` emits.
    fn run(p: &[sock_filter], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = &p[pc];
            let code = i.code as u32;
            match code & 0x07 {
                c if c == libc::BPF_LD => {
                    acc = match i.k {
                        ARCH_OFFSET => arch,
                        NR_OFFSET => nr,
                        k => panic!("load of offset {k}"),
                    };
                    pc += 1;
                }
                c if c == libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        op if op == libc::BPF_JEQ => acc == i.k,
                        op if op == libc::BPF_JGE => acc >= i.k,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += 1 + if taken { i.jt } else { i.jf } as usize;
                }
                c if c == libc::BPF_RET => return i.k,
                c => panic!("instruction class {c:#x}"),
            }
        }
    }

    #[test]
    fn allows_exactly_the_list_on_this_architecture() {
        let list = [libc::SYS_read, libc::SYS_write, libc::SYS_exit_group];
        let p = program(&list).unwrap();
        for nr in list {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32), libc::SECCOMP_RET_ALLOW);
        }
        for nr in [libc::SYS_openat, libc::SYS_ptrace, libc::SYS_seccomp] {
            assert_eq!(
                run(&p, AUDIT_ARCH, nr as u32),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
        // Another ABI (i386 here) is killed even for a listed number.
        assert_eq!(
            run(&p, 0x4000_0003, libc::SYS_read as u32),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                run(&p, AUDIT_ARCH, X32_SYSCALL_BIT | libc::SYS_read as u32),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn empty_and_oversized_lists() {
        let p = program(&[]).unwrap();
        assert_eq!(
            run(&p, AUDIT_ARCH, libc::SYS_read as u32),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        let many: Vec<c_long> = (0..300).collect();
        assert!(program(&many).unwrap_err().contains("too many"));
        assert!(program(&[-1]).is_err());
    }
}
