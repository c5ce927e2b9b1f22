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
//!   its status: each spawn in flight has a slot the kernel writes its
//!   child's pid into before the child runs (`sys::spawn_clean`), so `reap`
//!   knows the pid of every child it may reap before registration. It
//!   keeps exactly those statuses (`early`) for their spawns to claim;
//!   any other unknown pid is an orphan's, counted at once. Nothing is held
//!   across the clone itself: a child stuck before exec (a `chdir` into a
//!   hung NFS mount) holds up its own spawning thread, never the reaper,
//!   other spawns or the straggler sweep, and a forced shutdown kills it
//!   (`kill_in_flight`), which frees that thread.
//! - A pid in the registry is an unreaped child of ours, so it cannot have
//!   been reused; signalling it (or its group, while it lives) is safe.
//! - Unknown pids are adopted orphans (we are PID 1 or a subreaper): they
//!   are counted and logged at debug. At the end of a shutdown, those still
//!   alive are taken on by the straggler sweep (`adopt`), which then gets
//!   their exits like an owner; they are counted as orphans all the same.
//! - A child stopped (SIGSTOP, SIGTSTP) or resumed (SIGCONT) has not
//!   exited: the supervisor's `reap` sees it (`WUNTRACED | WCONTINUED`)
//!   only to keep the `paused` set, under the lock, and its pid stays
//!   registered. Nothing of it goes to the owner's channel (a message there
//!   is the exit), and an unknown pid's stop is no orphan's reaping: it is
//!   ignored. A pid leaves `paused` when its exit is reaped.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;

use crate::child::{Child, Command, Prepared};
use crate::stragglers::Straggler;
use crate::sys::{self, WaitResult};

/// A spawn in flight this long is stuck, not slow (one takes a
/// millisecond or so, on a loaded machine): `kill_spawning` says so.
const STUCK_AFTER: Duration = Duration::from_millis(500);

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
    /// Spawns between their clone and their registration: the pid of each
    /// one's child, 0 until the kernel has written it, the thread spawning
    /// it, and when it began.
    in_flight: Vec<(Arc<AtomicI32>, ThreadId, Instant)>,
    /// Exits of those children, reaped before their spawn registered them.
    early: HashMap<i32, ExitStatus>,
    /// Owned pids that are adopted orphans (`adopt`): counted as such.
    /// Only the few left at the end of a shutdown: a plain list.
    adopted: Vec<i32>,
    /// Children of ours stopped by a signal and not resumed since (rare,
    /// few: a plain list).
    paused: Vec<i32>,
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
        let slot = Arc::new(AtomicI32::new(0));
        let me = std::thread::current().id();
        let began = Instant::now();
        self.registry()
            .in_flight
            .push((Arc::clone(&slot), me, began));
        let spawned = prepared.spawn(&slot);
        let mut r = self.registry();
        r.in_flight.retain(|s| !Arc::ptr_eq(&s.0, &slot));
        match spawned {
            Ok(child) => {
                register(&mut r, child.pid, Some(owner.clone()));
                Ok(child)
            }
            Err(e) => {
                if let Some(pid) = e.pid {
                    register(&mut r, pid, None);
                }
                Err(e.error)
            }
        }
    }

    fn orphan(&self, pid: i32, status: ExitStatus) {
        self.orphans.fetch_add(1, Ordering::Relaxed);
        log::debug!("reaped orphan pid {pid} ({status})");
    }

    /// Reap every exited child and route each status. Called by the main
    /// thread on SIGCHLD (coalesced signals are handled by draining until
    /// nothing is left). With `stops` (the supervisor's), children stopped
    /// or resumed are noted too: returns whether the `paused` set changed.
    pub fn reap(&self, stops: bool) -> bool {
        let mut r = self.registry();
        let mut changed = false;
        loop {
            match sys::wait_any_nohang(stops) {
                Ok(WaitResult::Reaped { pid, status }) => {
                    changed |= unpause(&mut r, pid);
                    self.route(&mut r, pid, ExitStatus::from_raw(status));
                }
                Ok(WaitResult::Stopped { pid, signal }) => {
                    // Ours (registered, or a spawn's not registered yet):
                    // an adopted orphan's stop is not its reaping.
                    let ours = r.owners.contains_key(&pid)
                        || (!r.early.contains_key(&pid) && spawning(&r).any(|p| p == pid));
                    log::debug!("pid {pid} stopped by {}", signal_name(signal));
                    if ours && !r.paused.contains(&pid) {
                        r.paused.push(pid);
                        changed = true;
                    }
                }
                Ok(WaitResult::Continued { pid }) => {
                    log::debug!("pid {pid} continued");
                    changed |= unpause(&mut r, pid);
                }
                Ok(WaitResult::NoneReady) | Ok(WaitResult::NoChildren) => break,
                Err(e) => {
                    log::error!("unable to wait for children: {e}");
                    break;
                }
            }
        }
        changed
    }

    /// The children of ours stopped by a signal and not resumed since.
    pub fn paused(&self) -> Vec<i32> {
        self.registry().paused.clone()
    }

    /// Deliver `pid`'s exit to its owner, keep it for the spawn whose child
    /// it is, or count an orphan's.
    fn route(&self, r: &mut Registry, pid: i32, status: ExitStatus) {
        match r.owners.remove(&pid) {
            Some(owner) => {
                if let Some(i) = r.adopted.iter().position(|&a| a == pid) {
                    r.adopted.swap_remove(i);
                    self.orphans.fetch_add(1, Ordering::Relaxed);
                }
                deliver(pid, status, owner.as_ref())
            }
            // Once: a second exit of that pid is a process's that took it
            // over after that child was reaped (an orphan's), which must
            // not replace the status its spawn will claim.
            None if !r.early.contains_key(&pid) && spawning(r).any(|p| p == pid) => {
                r.early.insert(pid, status);
            }
            None => self.orphan(pid, status),
        }
    }

    /// SIGKILL the children of spawns still short of exec (a `chdir` into a
    /// hung NFS mount), which frees their spawning threads: a forced
    /// shutdown must not wait on them. Under the lock and only for pids not
    /// reaped yet, so each is still an unreaped child of ours, not a
    /// reused pid.
    pub fn kill_in_flight(&self) {
        self.kill_spawning(None);
    }

    /// `kill_in_flight`, for the spawn of `thread` only when given (an exec
    /// probe stuck past its timeout, or abandoned: `instance`).
    pub fn kill_spawning(&self, thread: Option<ThreadId>) {
        let r = self.registry();
        let spawns = r
            .in_flight
            .iter()
            .filter(|s| thread.is_none_or(|t| t == s.1));
        for (slot, _, began) in spawns {
            let pid = slot.load(Ordering::Acquire);
            if pid == 0 || r.early.contains_key(&pid) {
                continue;
            }
            // Only a child short of exec: one that has exec'd while its
            // thread has not yet registered it (a moment, or longer on a
            // loaded machine) is a started program, for its owner to stop
            // gracefully. Where /proc cannot say, one in flight this long.
            let stuck = began.elapsed() >= STUCK_AFTER;
            let short = || crate::stragglers::short_of_exec(pid).unwrap_or(stuck);
            if !short() {
                continue;
            }
            // Stopped, then asked again: it may have exec'd since, and a
            // SIGKILL then would end a started program (the thread that
            // reads and kills can lose its CPU in between). A pending stop
            // is acted on before any return to user space, so one still
            // short of exec now runs nothing of the program before the
            // kill; one that has exec'd goes on (SIGCONT also drops the
            // stop if it is still pending).
            let _ = sys::send_signal(pid, libc::SIGSTOP);
            if !short() {
                let _ = sys::send_signal(pid, libc::SIGCONT);
                continue;
            }
            // One that a stop catches in its first moments is most likely
            // a spawn like any other (fifty starting as a SIGTERM comes):
            // nothing to warn of. Killed all the same, it may be stuck.
            if stuck {
                log::warn!("pid {pid} is still short of exec (its working_dir or program on a hung mount?): killing it");
            }
            let _ = sys::send_signal(pid, libc::SIGKILL);
        }
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
    /// none is reaped in between. A spawn's child not registered yet has
    /// no owner either: it is left out by its pid, and nothing is taken
    /// while a clone is under way (its pid not known yet). Returns those
    /// taken on.
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
    /// (to name them, not to end them); None while a clone is under way.
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

/// The living children of ours among `candidates` that nobody owns and no
/// spawn is starting; None while a clone is under way.
fn unowned(r: &Registry, candidates: Vec<i32>) -> Option<Vec<Straggler>> {
    if spawning(r).any(|p| p == 0) {
        // A clone under way: its child may be in /proc before its pid is
        // in the slot. A moment; not for as long as that child takes.
        log::debug!("not looking for left-over processes while a clone is under way");
        return None;
    }
    let found = candidates
        .into_iter()
        .filter(|pid| !r.owners.contains_key(pid) && !spawning(r).any(|p| p == *pid))
        .filter_map(Straggler::of)
        .collect();
    Some(found)
}

/// The pids of the children of spawns in flight; 0 for a clone under way.
fn spawning(r: &Registry) -> impl Iterator<Item = i32> + '_ {
    r.in_flight.iter().map(|s| s.0.load(Ordering::Acquire))
}

/// Take `pid` out of the paused set; whether it was there.
fn unpause(r: &mut Registry, pid: i32) -> bool {
    let i = r.paused.iter().position(|&p| p == pid);
    if let Some(i) = i {
        r.paused.swap_remove(i);
    }
    i.is_some()
}

/// Record `pid` for `owner`, or hand it its exit if `reap` got there first.
fn register(r: &mut Registry, pid: i32, owner: Option<Sender<Exit>>) {
    match r.early.remove(&pid) {
        Some(status) => deliver(pid, status, owner.as_ref()),
        None => {
            r.owners.insert(pid, owner);
        }
    }
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
    fn an_early_exit_is_kept_for_its_spawn_and_any_other_is_an_orphan() {
        let reaper = Reaper::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut r = reaper.registry();
        r.in_flight.push((
            Arc::new(AtomicI32::new(42)),
            std::thread::current().id(),
            Instant::now(),
        ));
        // The in-flight spawn's child, reaped before it registered: kept,
        // then handed to it when it registers.
        reaper.route(&mut r, 42, ExitStatus::Code(3));
        assert_eq!(reaper.orphans_reaped(), 0);
        // No spawn's: an orphan's at once, however long that spawn takes
        // (a chdir into a hung mount), not kept until no spawn is in flight.
        reaper.route(&mut r, 43, ExitStatus::Code(0));
        assert_eq!(reaper.orphans_reaped(), 1);
        assert!(!r.early.contains_key(&43));
        // Its pid taken over by an orphan, reaped before that spawn
        // registered: that exit is the orphan's, not the one kept.
        reaper.route(&mut r, 42, ExitStatus::Code(9));
        assert_eq!(reaper.orphans_reaped(), 2);
        register(&mut r, 42, Some(tx));
        let exit = Exit {
            pid: 42,
            status: ExitStatus::Code(3),
        };
        assert_eq!(rx.try_recv(), Ok(exit));
        assert!(!r.owners.contains_key(&42) && r.early.is_empty());
    }

    #[test]
    fn a_spawns_child_is_no_straggler() {
        let reaper = Reaper::new();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let child = sleeper.id() as i32;
        let found = |r: &Registry| unowned(r, vec![child]).map(|v| v.len());
        let mut r = reaper.registry();
        // A living child of ours that nobody owns: a straggler.
        assert_eq!(found(&r), Some(1));
        // A clone under way (its child may be in /proc before its pid is
        // in the slot): no search.
        r.in_flight.push((
            Arc::new(AtomicI32::new(0)),
            std::thread::current().id(),
            Instant::now(),
        ));
        assert_eq!(found(&r), None);
        // Its pid known: the search goes on and leaves that child out.
        r.in_flight[0].0.store(child, Ordering::Release);
        assert_eq!(found(&r), Some(0));
        drop(r);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
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
