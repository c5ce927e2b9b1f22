//! Signal intake: signal-hook's self-pipe, read by the main thread.
//!
//! Nothing is ever blocked process-wide, so children spawned by std start
//! with an empty mask (sys::spawn_clean resets it anyway). Handlers only
//! write a byte to the self-pipe; all decisions happen on the main thread.
//!
//! Invariant: every signal sheepdog may receive as PID 1 and wants to act on
//! or forward is registered here. An unregistered signal with SIG_DFL is
//! silently dropped by the kernel for PID 1.

use std::io;

use signal_hook::consts::signal::*;
use signal_hook::iterator::Signals;

/// What the supervisor listens to: CHLD to reap, TERM/INT/QUIT to stop,
/// HUP to reload, USR1/USR2 for operators (logged until the logging issue
/// gives USR1 a meaning), WINCH ignored.
pub const SUPERVISOR: &[libc::c_int] =
    &[SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2];

/// What single-command mode forwards to its child, plus CHLD: every
/// catchable signal except the synchronous faults and ABRT/TRAP/SYS (which tini also skips
/// as they report our own faults) and TTIN/TTOU (job control of our
/// own group, which must not stop PID 1).
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
];

/// Register `set` and return the iterator the main thread blocks on.
pub fn install(set: &[libc::c_int]) -> io::Result<Signals> {
    Signals::new(set)
}

/// "SIGTERM" for logs.
pub fn name(sig: libc::c_int) -> String {
    crate::reaper::signal_name(sig)
}
