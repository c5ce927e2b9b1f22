//! The reaper: the only code that collects exit statuses, and the pid
//! registry that routes each status to the thread that owns the child.
//!
//! Invariants (DESIGN.md §2.1):
//! - `reap` is the only caller of `waitpid` in sheepdog, and it runs on the
//!   main thread. Nothing else waits: children are started by our own
//!   spawn (`child`, `sys::spawn_clean`), never by std's `Command`. A child
//!   whose exec failed is registered too (with no owner), so its status is
//!   collected like any other and not mistaken for an orphan's.
//! - A spawn holds the gate (shared) from before the clone until its pid is
//!   recorded; `reap` holds it exclusively while it reaps and routes. So a
//!   child that exits at once is never reaped before its owner is known (its
//!   status always arrives), while spawns on different threads still overlap.
//! - A pid in the registry is an unreaped child of ours, so it cannot have
//!   been reused; signalling it (or its group, while it lives) is safe.
//! - Unknown pids are adopted orphans (we are PID 1 or a subreaper): they
//!   are counted and logged at debug.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use crossbeam_channel::Sender;

use crate::child::{Child, Command, Prepared};
use crate::sys::{self, WaitResult};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code)
    Code(i32),
    /// Killed by signal number `signal`.
    Signal { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    fn from_raw(status: libc::c_int) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signal {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        }
    }

    /// exit(0)
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The shell convention: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal { signal, .. } => 128 + signal,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exited {c}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(signal))?;
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// "SIGTERM", or "signal 34" for numbers without a name.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}

/// An exit delivered to the owner of `pid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub status: ExitStatus,
}

/// The pid registry plus counters.
#[derive(Default)]
pub struct Reaper {
    /// Shared by spawns in flight, exclusive for `reap`.
    gate: RwLock<()>,
    /// None: a child whose exec failed; nobody waits for its 127.
    owners: Mutex<HashMap<i32, Option<Sender<Exit>>>>,
    orphans: AtomicU64,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<i32, Option<Sender<Exit>>>> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is still consistent (inserts/removes are atomic
        // with respect to the lock), so keep going.
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawn `cmd` (own process group, clean signal state) and register its
    /// pid for `owner` before any reap can happen.
    pub fn spawn(&self, cmd: Command, owner: &Sender<Exit>) -> io::Result<Child> {
        let prepared = Prepared::new(cmd)?;
        // A poisoned gate guards no data; carry on (see `owners`).
        let _spawning = self.gate.read().unwrap_or_else(|e| e.into_inner());
        match prepared.spawn() {
            Ok(child) => {
                self.owners().insert(child.pid, Some(owner.clone()));
                Ok(child)
            }
            Err(e) => {
                if let Some(pid) = e.pid {
                    self.owners().insert(pid, None);
                }
                Err(e.error)
            }
        }
    }

    /// Reap every exited child and route each status. Returns how many were
    /// reaped. Called by the main thread on SIGCHLD (coalesced signals are
    /// handled by draining until nothing is left).
    pub fn reap(&self) -> usize {
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut owners = self.owners();
        let mut count = 0;
        loop {
            match sys::wait_any_nohang() {
                Ok(WaitResult::Reaped { pid, status }) => {
                    count += 1;
                    let exit = Exit {
                        pid,
                        status: ExitStatus::from_raw(status),
                    };
                    match owners.remove(&pid) {
                        Some(None) => {
                            log::debug!("reaped pid {pid} ({}), whose exec failed", exit.status);
                        }
                        Some(Some(owner)) => {
                            if owner.send(exit).is_err() {
                                log::debug!(
                                    "reaped pid {pid} ({}) after its owner ended",
                                    exit.status
                                );
                            }
                        }
                        None => {
                            self.orphans.fetch_add(1, Ordering::Relaxed);
                            log::debug!("reaped orphan pid {pid} ({})", exit.status);
                        }
                    }
                }
                Ok(WaitResult::NoneReady) | Ok(WaitResult::NoChildren) => break,
                Err(e) => {
                    log::error!("unable to wait for children: {e}");
                    break;
                }
            }
        }
        count
    }

    /// Adopted orphans reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.orphans.load(Ordering::Relaxed)
    }
}

/// Make sure orphans come back to us: PID 1 gets them from the kernel;
/// otherwise register as a child subreaper. Returns false (after logging a
/// warning) when neither holds, so zombies of grandchildren may escape us.
pub fn adopt_orphans() -> bool {
    if nix::unistd::getpid().as_raw() == 1 {
        return true;
    }
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("unable to become a child subreaper: {e}; orphans of our children will not be reaped by sheepdog");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_codes() {
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
        assert_eq!(
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false
            }
            .shell_code(),
            137
        );
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal {
            signal: 15,
            core_dumped: false
        }
        .success());
    }

    #[test]
    fn display_names_signals() {
        assert_eq!(
            ExitStatus::Signal {
                signal: 9,
                core_dumped: false
            }
            .to_string(),
            "killed by SIGKILL"
        );
        assert_eq!(
            ExitStatus::Signal {
                signal: 11,
                core_dumped: true
            }
            .to_string(),
            "killed by SIGSEGV (core dumped)"
        );
        assert_eq!(
            ExitStatus::Signal {
                signal: 40,
                core_dumped: false
            }
            .to_string(),
            "killed by signal 40"
        );
        assert_eq!(ExitStatus::Code(2).to_string(), "exited 2");
    }
}
