//! Every `unsafe` block in sheepdog lives here, each under a `// SAFETY:`
//! paragraph. These are thin wrappers over libc calls that nix does not
//! expose safely (raw `waitpid` status, `sigaction` queries, the pre-exec
//! child setup, `fcntl` on inherited fds).
//!
//! Invariants:
//! - The pre-exec closure only makes async-signal-safe calls and never
//!   allocates: everything it needs is prepared before `fork`.
//! - Children start clean: every disposition back to SIG_DFL and an empty
//!   signal mask, set before exec (std's `Command` passes the parent's mask
//!   on, rust-lang/rust#101077).
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

/// Highest signal number to reset in children (covers real-time signals).
const MAX_SIGNAL: libc::c_int = 64;

/// A kernel `struct sigaction` (not libc's) for SIG_DFL: SIG_DFL is 0, so
/// all zeroes mean SIG_DFL, no flags, empty mask on every architecture.
/// 64 bytes is more than the struct's size anywhere.
static KERNEL_SIG_DFL: [u64; 8] = [0; 8];

/// `sizeof(sigset_t)` as the kernel counts it (`_NSIG / 8`).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_BYTES: libc::size_t = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_BYTES: libc::size_t = 8;

/// A raw status from `waitpid`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// A child changed state: its pid and raw status word.
    Reaped { pid: i32, status: libc::c_int },
    /// Children exist but none has exited.
    NoneReady,
    /// We have no children at all (ECHILD).
    NoChildren,
}

/// One non-blocking `waitpid(-1, WNOHANG)`.
///
/// nix's `waitpid` converts the terminating signal into its `Signal` enum
/// and returns EINVAL for numbers it does not know (real-time signals) —
/// *after* the child was reaped, losing the status. The raw call keeps it.
pub fn wait_any_nohang() -> io::Result<WaitResult> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int for the whole call;
        // waitpid has no other memory effects.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            return Ok(WaitResult::Reaped { pid, status });
        }
        if pid == 0 {
            return Ok(WaitResult::NoneReady);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(WaitResult::NoChildren),
            _ => return Err(err),
        }
    }
}

/// Reset the signal state sheepdog inherited, so that children (which
/// inherit ignored dispositions and the mask across exec) start clean:
/// unblock everything and turn SIG_IGN back into SIG_DFL. Call first thing
/// in `main`, before any thread exists. SIGPIPE is left as std set it (std
/// resets it in every child itself).
pub fn reset_inherited_signal_state() {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in 1..=MAX_SIGNAL {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: sigaction with a null new action only reads the current
        // disposition into `old`, a zeroed, properly sized sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        let queried = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if queried == 0 && old.sa_sigaction == libc::SIG_IGN {
            // SAFETY: installing SIG_DFL with an empty mask is always valid;
            // no handler code is involved.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut dfl.sa_mask);
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
}

/// Mark every inherited descriptor above 2 close-on-exec, so children get
/// only 0/1/2. (Descriptors sheepdog opens itself are CLOEXEC already: std
/// and nix open everything with O_CLOEXEC.)
pub fn cloexec_inherited_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<libc::c_int> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only touch the descriptor flags; a stale fd
        // (the read_dir handle itself, now closed) yields EBADF, ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// What a child needs done between fork and exec.
#[derive(Debug, Clone, Default)]
pub struct ChildSetup {
    /// setgroups → setgid → setuid, in that order.
    pub credentials: Option<(u32, u32, Vec<u32>)>,
    /// Make the child's process group the foreground group of the terminal
    /// on stdin (single-command mode with `docker run -it`).
    pub foreground_tty: bool,
}

/// Spawn `cmd` in its own process group with a clean signal state.
///
/// All signals are blocked on the calling thread across the fork, so no
/// signal-hook handler can run in the child before exec (it would write a
/// phantom signal into our shared self-pipe). The child then resets every
/// disposition to SIG_DFL and only then unblocks: a signal aimed at it in
/// that window takes its default action, as it would after exec.
pub fn spawn_clean(cmd: &mut Command, setup: ChildSetup) -> io::Result<Child> {
    cmd.process_group(0);
    let groups: Vec<libc::gid_t> = setup
        .credentials
        .as_ref()
        .map(|(_, _, g)| g.iter().map(|&g| g as libc::gid_t).collect())
        .unwrap_or_default();
    let creds = setup.credentials.as_ref().map(|(u, g, _)| (*u, *g));
    let tty = setup.foreground_tty;
    // SAFETY: the closure runs in the forked child before exec. It only calls
    // async-signal-safe functions (sigaction, sigemptyset, setgroups, setgid,
    // setuid, tcsetpgrp, getpgrp, sigprocmask, and the raw rt_sigaction
    // syscall with a static, all-zero kernel sigaction of sufficient size and
    // a null old-action pointer) on data prepared before fork (`groups` is
    // moved in, never reallocated), and allocates nothing. Resetting the
    // libc-reserved signals behind libc's back is sound here: the child is
    // single-threaded and about to exec, so nothing in it can need them.
    unsafe {
        cmd.pre_exec(move || {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut dfl.sa_mask);
            for sig in 1..=MAX_SIGNAL {
                if sig != libc::SIGKILL
                    && sig != libc::SIGSTOP
                    && libc::sigaction(sig, &dfl, std::ptr::null_mut()) != 0
                {
                    // glibc (32, 33) and musl (32-34) keep the first
                    // real-time signals for themselves and their sigaction
                    // refuses them (EINVAL). A parent that started us with
                    // glibc's posix_spawn (std's Command does) left them
                    // SIG_IGN, which survives exec; the raw syscall resets
                    // them. Only the kernel sees this, just before exec.
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        KERNEL_SIG_DFL.as_ptr(),
                        std::ptr::null_mut::<libc::c_void>(),
                        KERNEL_SIGSET_BYTES,
                    );
                }
            }
            if let Some((uid, gid)) = creds {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if tty {
                // SIGTTOU is still blocked here, so a background group may
                // take the terminal. ENOTTY etc. are not fatal for the child.
                libc::tcsetpgrp(0, libc::getpgrp());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(io::Error::from)?;
    let spawned = cmd.spawn();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    spawned
}

/// True when fd 0 is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// Give the terminal on stdin back to `pgrp` (sheepdog's own group), with
/// SIGTTOU blocked so a background caller is not stopped by the kernel.
pub fn take_back_tty(pgrp: libc::pid_t) {
    let mut ttou = SigSet::empty();
    ttou.add(nix::sys::signal::Signal::SIGTTOU);
    let mut old = SigSet::empty();
    if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
        // SAFETY: tcsetpgrp only changes terminal state; errors are ignored.
        unsafe {
            libc::tcsetpgrp(0, pgrp);
        }
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
}
