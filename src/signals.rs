//! Signal intake: signal-hook's self-pipe, read by the main thread (`run`;
//! single-command mode blocks `FORWARDED` and takes each with sigwaitinfo,
//! to keep the kernel's order: `sys::wait_signal`).
//!
//! In `run` mode only the real-time signals are blocked process-wide
//! (`sys::block_realtime_signals`); every child starts with an empty mask
//! anyway (`sys::spawn_clean`). Handlers only write a byte to the
//! self-pipe; all decisions happen on the main thread.
//!
//! Invariant: every signal sheepdog may receive as PID 1 and wants to act on
//! or forward is registered here (or, in single-command mode, blocked:
//! the kernel queues a blocked signal for PID 1 too). An unregistered,
//! unblocked signal with SIG_DFL is silently dropped by the kernel for PID 1.

use std::io;

use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

/// What the supervisor listens to: CHLD to reap, TERM/INT/QUIT to stop,
/// PWR to stop too (how LXC asks its init to halt), HUP to reload the
/// configuration, USR1 to reopen log files, USR2 logged. The rest end a process by
/// default: caught and logged, a stray one (`kill -ALRM`, an RLIMIT_CPU or
/// RLIMIT_FSIZE signal) cannot kill sheepdog and orphan every child when
/// it is not PID 1. (SIGXFSZ is not logged: the write of that line past
/// RLIMIT_FSIZE would raise it again.) WINCH and URG are ignored by default anyway.
pub const SUPERVISOR: &[libc::c_int] = &[
    SIGCHLD,
    SIGTERM,
    SIGINT,
    SIGQUIT,
    libc::SIGPWR,
    SIGHUP,
    SIGUSR1,
    SIGUSR2,
    SIGALRM,
    SIGVTALRM,
    SIGPROF,
    SIGXCPU,
    SIGXFSZ,
    SIGIO,
    libc::SIGSTKFLT,
];

/// What single-command mode forwards to its child, plus CHLD: every
/// catchable signal except the synchronous faults and ABRT/TRAP/SYS (which tini also skips
/// as they report our own faults) and TTIN/TTOU (job control of our
/// own group, which must not stop PID 1). The real-time signals, which
/// `Signal` cannot name, are added by `init::run`.
pub const FORWARDED: &[libc::c_int] = &[
    SIGHUP,
    SIGINT,
    SIGQUIT,
    SIGUSR1,
    SIGUSR2,
    SIGPIPE,
    SIGALRM,
    SIGTERM,
    SIGCONT,
    SIGTSTP,
    SIGURG,
    SIGXCPU,
    SIGXFSZ,
    SIGVTALRM,
    SIGPROF,
    SIGWINCH,
    SIGIO,
    libc::SIGPWR,
    libc::SIGSTKFLT,
];

/// Register `set` and return the iterator the main thread blocks on.
///
/// It lives until the process exits, on purpose: dropping `Signals` closes
/// the self-pipe's read end *before* it unregisters the handlers. A signal
/// in between (SIGCHLD from a dying orphan, say) makes the handler's write
/// fail with EPIPE and raise SIGPIPE; where SIGPIPE is itself handled
/// (single-command mode forwards it) each SIGPIPE handler's write raises the
/// next, and sheepdog spins forever with its exit code in hand. Found as a
/// rare hang in `signals_reach_the_whole_group`. Leaked, the pipe stays
/// open: late handlers write into it (or get EAGAIN once it is full) until
/// exit. One leak per process: `run` installs once.
pub fn install(set: &[libc::c_int]) -> io::Result<&'static mut Signals> {
    // Children reset only what sheepdog changed: tell the spawn first.
    crate::sys::note_caught(set);
    Signals::new(set).map(|s| Box::leak(Box::new(s)))
}

/// "SIGTERM" for logs.
pub fn name(sig: libc::c_int) -> String {
    crate::reaper::signal_name(sig)
}
