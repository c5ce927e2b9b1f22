//! The reaper: the only code that collects exit statuses, and the pid
//! registry that routes each status to the thread that owns the child.
//!
//! Invariants (DESIGN.md §2.1):
//! - `reap` is the only caller of `waitpid` in sheepdog, and it runs on the
//!   main thread. Nothing else waits: children are started by our own
//!   spawn (`child`, `sys::spawn_clean`), never by std's `Command`. A child
//!   whose exec failed is registered too (with no owner), so its status is
//!   collected like any other and not mistaken for an orphan's.
//! - A child that exits before its spawn has recorded its pid never loses
//!   its status: while any spawn is in flight, `reap` keeps the statuses of
//!   pids it does not know (`early`, tagged with the spawn count), and a
//!   spawn claims its own pid there when it registers. Only exits reaped
//!   after the spawn began can be claimed, so a stale entry of a reused pid
//!   is never taken for a new child's. What nobody claims is counted as
//!   adopted orphans once no spawn is in flight. Nothing is held across the
//!   clone itself: a child stuck before exec (a hung NFS `chdir`) holds up
//!   its own spawning thread, never the reaper or other spawns.
//! - A pid in the registry is an unreaped child of ours, so it cannot have
//!   been reused; signalling it (or its group, while it lives) is safe.
//! - Unknown pids are adopted orphans (we are PID 1 or a subreaper): they
//!   are counted and logged at debug. At the end of a shutdown, those still
//!   alive are taken on by the straggler sweep (`adopt`), which then gets
//!   their exits like an owner; they are counted as orphans all the same.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;

use crate::child::{Child, Command, Prepared};
use crate::stragglers::Straggler;
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

/// "SIGTERM", "SIGRTMIN+3", or "signal 33" for numbers without a name.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => s.as_str().to_string(),
        // As Docker (STOPSIGNAL), glibc and `kill -l` name them: from 34,
        // whatever this libc keeps (musl's own SIGRTMIN is 35).
        Err(_) if (34..=64).contains(&signal) => format!("SIGRTMIN+{}", signal - 34),
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
    registry: Mutex<Registry>,
    orphans: AtomicU64,
}

#[derive(Default)]
struct Registry {
    /// None: a child whose exec failed; nobody waits for its 127.
    owners: HashMap<i32, Option<Sender<Exit>>>,
    /// Spawns between their clone and their registration.
    in_flight: usize,
    /// Spawns begun so far: tags `early` entries with when they were reaped.
    spawns: u64,
    /// Unknown pids reaped while spawns were in flight: (`spawns` then,
    /// status).
    early: HashMap<i32, (u64, ExitStatus)>,
    /// Owned pids that are adopted orphans (`adopt`): counted as such.
    /// Only the few left at the end of a shutdown: a plain list.
    adopted: Vec<i32>,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A poisoned lock only means another thread panicked while holding
        // it; the maps are still consistent (every change is one insert or
        // remove under the lock), so keep going.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawn `cmd` (own process group, clean signal state) and register its
    /// pid for `owner`. If the child has already been reaped, its exit is
    /// sent to `owner` now.
    pub fn spawn(&self, cmd: Command, owner: &Sender<Exit>) -> io::Result<Child> {
        let prepared = Prepared::new(cmd)?;
        let began = {
            let mut r = self.registry();
            r.in_flight += 1;
            r.spawns += 1;
            r.spawns
        };
        let spawned = prepared.spawn();
        let mut r = self.registry();
        r.in_flight -= 1;
        let result = match spawned {
            Ok(child) => {
                self.register(&mut r, child.pid, Some(owner.clone()), began);
                Ok(child)
            }
            Err(e) => {
                if let Some(pid) = e.pid {
                    self.register(&mut r, pid, None, began);
                }
                Err(e.error)
            }
        };
        if r.in_flight == 0 {
            for (pid, (_, status)) in r.early.drain() {
                self.orphan(pid, status);
            }
        }
        result
    }

    /// Record `pid` for `owner`, or hand it its exit if `reap` got there
    /// first (after this spawn `began`).
    fn register(&self, r: &mut Registry, pid: i32, owner: Option<Sender<Exit>>, began: u64) {
        match r.early.remove(&pid) {
            Some((reaped, status)) if reaped >= began => deliver(pid, status, owner.as_ref()),
            stale => {
                // An older exit under a pid since reused: an orphan's.
                if let Some((_, status)) = stale {
                    self.orphan(pid, status);
                }
                r.owners.insert(pid, owner);
            }
        }
    }

    fn orphan(&self, pid: i32, status: ExitStatus) {
        self.orphans.fetch_add(1, Ordering::Relaxed);
        log::debug!("reaped orphan pid {pid} ({status})");
    }

    /// Reap every exited child and route each status. Returns how many were
    /// reaped. Called by the main thread on SIGCHLD (coalesced signals are
    /// handled by draining until nothing is left).
    pub fn reap(&self) -> usize {
        let mut r = self.registry();
        let mut count = 0;
        loop {
            match sys::wait_any_nohang() {
                Ok(WaitResult::Reaped { pid, status }) => {
                    count += 1;
                    let status = ExitStatus::from_raw(status);
                    match r.owners.remove(&pid) {
                        Some(owner) => {
                            if let Some(i) = r.adopted.iter().position(|&a| a == pid) {
                                r.adopted.swap_remove(i);
                                self.orphans.fetch_add(1, Ordering::Relaxed);
                            }
                            deliver(pid, status, owner.as_ref())
                        }
                        None if r.in_flight > 0 => {
                            // Perhaps a spawn's child, not registered yet.
                            let tag = r.spawns;
                            if let Some((_, older)) = r.early.insert(pid, (tag, status)) {
                                self.orphan(pid, older);
                            }
                        }
                        None => self.orphan(pid, status),
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

    /// A pidfd of child `pid` (`sys::pidfd_open`), to wait for its exit
    /// beside other descriptors; `exits` is its owner's channel. Opened
    /// under the lock while that channel is empty: `reap` delivers an exit
    /// under the same lock as it reaps it (and a spawn before it returns),
    /// so `pid` is unreaped and cannot name a process that took a reused
    /// pid. None once `pid` has been reaped (its exit is on `exits`), or
    /// when the kernel gives none (older than 5.3, out of descriptors).
    pub fn pidfd(&self, pid: i32, exits: &Receiver<Exit>) -> Option<std::os::fd::OwnedFd> {
        let _reaping = self.registry();
        if !exits.is_empty() {
            return None;
        }
        sys::pidfd_open(pid).ok()
    }

    /// Take on the stragglers among `candidates` (pids from a scan of
    /// `/proc`, see `stragglers`): each that is still a living child of
    /// ours and has no owner is registered for `owner`. Under the lock, so
    /// none is reaped in between; nothing is taken while a spawn is between
    /// its clone and its registration, since that child has no owner yet
    /// either. Returns those taken on.
    pub fn adopt(&self, candidates: Vec<i32>, owner: &Sender<Exit>) -> Vec<Straggler> {
        let mut r = self.registry();
        let taken = unowned(&r, candidates).unwrap_or_default();
        for s in &taken {
            r.owners.insert(s.pid, Some(owner.clone()));
            r.adopted.push(s.pid);
        }
        taken
    }

    /// Those of `candidates` that `adopt` would take on, left as they are
    /// (to name them, not to end them); None while a spawn is in flight.
    pub fn unowned(&self, candidates: Vec<i32>) -> Option<Vec<Straggler>> {
        unowned(&self.registry(), candidates)
    }

    /// Call `signal` for each of `stragglers` not reaped yet, under the
    /// lock: its pid is still ours while it runs.
    pub fn signal_adopted(&self, stragglers: &[Straggler], signal: impl Fn(&Straggler)) {
        let r = self.registry();
        for s in stragglers.iter().filter(|s| r.adopted.contains(&s.pid)) {
            signal(s);
        }
    }

    /// Send `sig` to each of `stragglers` (from `unowned`) that is still
    /// what it was (a living child of ours that nobody owns, started at the
    /// same time: not a reused pid), under the lock, so that it cannot be
    /// reaped and its pid reused before the signal.
    pub fn signal_unowned(&self, stragglers: &[Straggler], sig: Signal) {
        let r = self.registry();
        let pids = stragglers.iter().map(|s| s.pid).collect();
        for s in unowned(&r, pids).unwrap_or_default() {
            if stragglers.contains(&s) {
                s.signal(sig);
            }
        }
    }

    /// Adopted orphans reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.orphans.load(Ordering::Relaxed)
    }
}

/// The living children of ours among `candidates` that nobody owns; None
/// while a spawn is in flight (its child has no owner yet either).
fn unowned(r: &Registry, candidates: Vec<i32>) -> Option<Vec<Straggler>> {
    if r.in_flight > 0 {
        log::debug!("not looking for left-over processes while a spawn is in flight");
        return None;
    }
    let found = candidates
        .into_iter()
        .filter(|pid| !r.owners.contains_key(pid))
        .filter_map(Straggler::of)
        .collect();
    Some(found)
}

/// Send `pid`'s exit to its owner; None: a failed exec nobody waits for.
fn deliver(pid: i32, status: ExitStatus, owner: Option<&Sender<Exit>>) {
    match owner {
        None => log::debug!("reaped pid {pid} ({status}), whose exec failed"),
        Some(owner) => {
            if owner.send(Exit { pid, status }).is_err() {
                log::debug!("reaped pid {pid} ({status}) after its owner ended");
            }
        }
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
    fn an_early_exit_goes_to_the_spawn_that_began_before_it() {
        let reaper = Reaper::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut r = reaper.registry();
        // Reaped after the spawn began (tag 5 >= began 5): it is this
        // child's exit, delivered at once.
        r.early.insert(42, (5, ExitStatus::Code(3)));
        reaper.register(&mut r, 42, Some(tx.clone()), 5);
        assert_eq!(
            rx.try_recv(),
            Ok(Exit {
                pid: 42,
                status: ExitStatus::Code(3)
            })
        );
        assert!(!r.owners.contains_key(&42));
        // Reaped before the spawn began: an older process under a reused
        // pid. It counts as an orphan and the new child is registered.
        r.early.insert(43, (4, ExitStatus::Code(0)));
        reaper.register(&mut r, 43, Some(tx), 5);
        assert!(rx.try_recv().is_err());
        assert!(r.owners.contains_key(&43));
        assert_eq!(reaper.orphans_reaped(), 1);
    }

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
            "killed by SIGRTMIN+6"
        );
        // libc's own, below the real-time range anyone names.
        assert_eq!(signal_name(33), "signal 33");
        assert_eq!(signal_name(64), "SIGRTMIN+30");
        assert_eq!(ExitStatus::Code(2).to_string(), "exited 2");
    }
}
