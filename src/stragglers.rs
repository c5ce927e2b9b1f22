//! End what is left of our descendants outside their process groups: the
//! last step of a shutdown, and the end of each exec probe run.
//!
//! A stop ends a process's whole group, but a descendant that made its
//! own session (`setsid`, a daemon's double fork, `start-stop-daemon
//! --background`) is in no group of ours. When its parent dies it is
//! re-parented to sheepdog (PID 1 or subreaper), and without this step it
//! would outlive the shutdown: holding the port its process listened on,
//! and the output pipe sheepdog then waits on. As a subreaper, it would
//! even outlive sheepdog.
//!
//! So once every process is down and no hook is running (and again after
//! the global post_stop hooks), a `Sweep` looks for children of ours that
//! nobody owns (stragglers), sends each one's group SIGTERM (then
//! SIGCONT, so a stopped one handles it), waits for
//! them up to `TERM_GRACE` (never past the shutdown deadline), then sends
//! SIGKILL, and gives up after `KILL_WAIT`.
//! Killing one may orphan its own children in other sessions, so the scan
//! is made again after each exit.
//!
//! While sheepdog runs, the same applies to what an exec health probe
//! leaves outside its group: one per probe run would pile up until the
//! shutdown. Probes mark their environment (`child::var::PROBE`), and after each
//! run `end_probe_strays` kills (SIGKILL) the children of ours that carry
//! the instance's mark and that nobody owns.
//!
//! Invariants:
//! - Only children of ours are signalled. A candidate from the scan is
//!   checked again and registered with the reaper under its lock
//!   (`Reaper::adopt`), and every signal is sent under that lock to a pid
//!   still registered (`Reaper::signal_adopted`): it is unreaped, so its
//!   pid cannot have been reused. A probe's stray is not adopted: it is
//!   signalled under that lock only if it is still an unowned living
//!   child of ours with the start time it was found with
//!   (`Reaper::signal_unowned`). Nothing is adopted while a spawn is
//!   between its clone and its registration (that child has no owner yet),
//!   and the supervisor starts the sweep only when no hook is running.
//! - A straggler's whole group is signalled only if it leads the group or
//!   its session is not sheepdog's: a session made by a descendant holds
//!   only descendants. Otherwise it is signalled alone.
//! - `/proc` must be this pid namespace's (`/proc/self` is our pid):
//!   without `--mount-proc`, its pids are another namespace's, and the
//!   sweep is skipped with a warning rather than signal strangers.
//! - Every exit still goes through the one reaper: the sweep learns of them
//!   on its channel. No polling: it waits on that channel and one deadline.
//! - Bounded: at most `TERM_GRACE` + `KILL_WAIT`; a second SIGTERM or the
//!   shutdown deadline moves straight to SIGKILL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;

use crate::child::var;
use crate::group;
use crate::reaper::{Exit, Reaper};

/// How long stragglers get between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for killed stragglers before giving up on them (one in
/// uninterruptible sleep, say).
pub const KILL_WAIT: Duration = Duration::from_secs(1);

/// A living child of ours, as its `/proc` entry describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Straggler {
    pub pid: i32,
    /// Its group may be signalled whole (see the module header).
    whole_group: bool,
    /// When it started (clock ticks since boot): with the pid, it tells a
    /// process from a later one under the same pid.
    start: u64,
}

impl Straggler {
    /// `pid` read from `/proc`: Some while it is a living (not zombie)
    /// child of ours.
    pub fn of(pid: i32) -> Option<Straggler> {
        let stat = read_stat(pid)?;
        (stat.ppid == our_pid()).then(|| Straggler {
            pid,
            whole_group: stat.pgid == pid || stat.sid != our_sid(),
            start: stat.start,
        })
    }

    /// Send `sig`, then SIGCONT unless it is SIGKILL: a straggler stopped
    /// by a signal (the API's `paused`) handles its SIGTERM at once, as
    /// in a stop (`group`), instead of being killed after `TERM_GRACE`.
    pub fn signal(&self, sig: Signal) {
        self.send(sig);
        if sig != Signal::SIGKILL {
            self.send(Signal::SIGCONT);
        }
    }

    fn send(&self, sig: Signal) {
        if self.whole_group {
            // Leader or not, its group is the one it is in.
            if let Some(stat) = read_stat(self.pid) {
                group::signal("left-over process", stat.pgid, sig);
                return;
            }
        }
        group::signal_main("left-over process", self.pid, sig);
    }
}

fn our_pid() -> i32 {
    // Pids fit in i32 (pid_max is at most 2^22).
    std::process::id() as i32
}

fn our_sid() -> i32 {
    nix::unistd::getsid(None).map_or(0, |s| s.as_raw())
}

/// What the sweep reads of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    pgid: i32,
    sid: i32,
    /// The kernel's PF_* flags.
    flags: u64,
    start: u64,
}

/// PF_FORKNOEXEC: forked (cloned), not exec'd yet; exec clears it.
const FORKED_NOT_EXECED: u64 = 0x40;

/// Whether living `pid` has not exec'd since its clone (a spawn's child
/// stuck short of exec, say); None when `/proc` cannot say.
pub fn short_of_exec(pid: i32) -> Option<bool> {
    read_stat(pid).map(|s| s.flags & FORKED_NOT_EXECED != 0)
}

/// `/proc/<pid>/stat`, or None if the process is gone or a zombie (which
/// the reaper collects as an orphan).
fn read_stat(pid: i32) -> Option<Stat> {
    use std::io::Read;
    // One read: the fields needed come well within the first 1 KiB (the
    // name is at most 64 bytes), and a scan may read every process's file.
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut f| f.read(&mut buf))
        .ok()?;
    parse_stat(&buf[..n])
}

/// The process group of living `pid` (for `ports`, which asks whose
/// group holds a socket).
pub fn group_of(pid: i32) -> Option<i32> {
    read_stat(pid).map(|s| s.pgid)
}

/// The command name is in parentheses and may hold spaces, parentheses and
/// bytes that are not UTF-8, so the fields are read after the last `)`.
fn parse_stat(stat: &[u8]) -> Option<Stat> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    let mut next = || fields.next()?.parse().ok();
    let (ppid, pgid, sid) = (next()?, next()?, next()?);
    // Field 9, three after the session; then field 22.
    let flags = fields.nth(2)?.parse().ok()?;
    let start = fields.nth(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        pgid,
        sid,
        flags,
        start,
    })
}

/// Whether `/proc` shows this pid namespace: `/proc/self` names our pid.
pub fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<i32>().ok())
        == Some(our_pid())
}

/// Pids that may be children of ours (`Straggler::of` decides): from the
/// `children` files of our threads, or, on a kernel without them
/// (`CONFIG_PROC_CHILDREN`), from every process's `stat`.
fn candidates() -> Vec<i32> {
    children_from_task_files(our_pid()).unwrap_or_else(|| children_by_walk(our_pid()))
}

/// The children of `parent`'s threads, from their `children` files; None
/// if the kernel has no such files.
fn children_from_task_files(parent: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        // A thread that ended meanwhile has no file either; only a kernel
        // without them has none at all.
        let Ok(list) = std::fs::read_to_string(&path) else {
            continue;
        };
        any = true;
        out.extend(
            list.split_ascii_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    any.then_some(out)
}

/// The children of `parent`, from every process's `stat`.
fn children_by_walk(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| read_stat(pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// Processes that left `instance`'s group and outlived it, as (pid,
/// name): living children of ours that nobody owns, whose environment
/// still names `instance` (`SHEEPDOG_INSTANCE`, inherited from the child
/// sheepdog started, as a daemon's fork keeps it). To name them while
/// sheepdog runs; nothing is signalled. None when no search could be made
/// now (a spawn in flight, a `/proc` that is not this namespace's).
pub fn left_by(reaper: &Reaper, instance: &str) -> Option<Vec<(i32, String)>> {
    let found = unowned_with(reaper, var::INSTANCE, instance)?
        .into_iter()
        .map(|s| (s.pid, name_of(s.pid)))
        .collect();
    Some(found)
}

/// The living children of ours that nobody owns whose environment sets
/// `name` to `value`; None when no search could be made now (see
/// `left_by`).
fn unowned_with(reaper: &Reaper, name: &str, value: &str) -> Option<Vec<Straggler>> {
    if !proc_is_ours() {
        return None;
    }
    let mut found = Vec::new();
    for s in reaper.unowned(candidates())? {
        if has_env(s.pid, name, value) {
            found.push(s);
        }
    }
    Some(found)
}

/// Every living child of ours that nobody owns, for single-command mode to
/// name what its command left behind. None when no search could be made
/// (see `left_by`).
pub fn unowned_children(reaper: &Reaper) -> Option<Vec<i32>> {
    if !proc_is_ours() {
        return None;
    }
    Some(
        reaper
            .unowned(candidates())?
            .iter()
            .map(|s| s.pid)
            .collect(),
    )
}

/// `pid 7 (nginx), pid 8 (nginx), 3 more`: the first `NAMED_AT_ONCE` of
/// `pids` by pid and comm (a lock-free read), then how many more.
pub fn name_list(pids: &[i32]) -> String {
    let named = pids
        .iter()
        .map(|&pid| format!("pid {pid} ({})", name_of(pid)));
    crate::logging::first_of(named, pids.len(), NAMED_AT_ONCE)
}

/// At most this many left-behind processes are named one by one.
const NAMED_AT_ONCE: usize = 5;

/// Warn about each process that left `instance`'s group and outlived its
/// run (`left_by`), but those in `named` (warned about already). Returns
/// every one found, or None when no search could be made now.
pub fn warn_left_behind(reaper: &Reaper, instance: &str, named: &[i32]) -> Option<Vec<i32>> {
    let found = left_by(reaper, instance)?;
    let new: Vec<&(i32, String)> = found.iter().filter(|(p, _)| !named.contains(p)).collect();
    for (pid, name) in new.iter().take(NAMED_AT_ONCE) {
        log::warn!(
            event = "left_behind", instance = instance, pid = *pid;
            "{instance}: pid {pid} ({name}) left its process group and is still running, \
             unsupervised; did it daemonize? Run it in the foreground (php-fpm -F, \
             nginx -g 'daemon off;'). sheepdog ends it at shutdown"
        );
    }
    if new.len() > NAMED_AT_ONCE {
        // A process that daemonizes hundreds of workers: one line for the
        // rest, not one each.
        log::warn!(
            event = "left_behind", instance = instance;
            "{instance}: {} more processes left its process group and are still running",
            new.len() - NAMED_AT_ONCE
        );
    }
    Some(found.into_iter().map(|(pid, _)| pid).collect())
}

/// Whether `pid`'s environment sets `name` (`SHEEPDOG_INSTANCE`) to
/// `value`. The environment is read up to 256 KiB: ours comes after what
/// sheepdog inherited, and few environments are larger.
fn has_env(pid: i32, name: &str, value: &str) -> bool {
    use std::io::Read;
    let mut env = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/environ"))
        .and_then(|f| f.take(256 << 10).read_to_end(&mut env));
    if read.is_err() {
        return false;
    }
    env.split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        == Some(value.as_bytes())
}

/// A probe's strays were warned about (`end_probe_strays`): the same
/// probe leaves one on every run, so once is enough.
static PROBES_NAMED: AtomicBool = AtomicBool::new(false);

/// End (SIGKILL) what exec probes of `instance` left running outside their
/// process groups, which the group kill cannot reach (`setsid`, a daemon's
/// double fork): living children of ours that nobody owns and whose
/// environment has `SHEEPDOG_PROBE=<instance>`. A warning names
/// them the first time (only then: the binary has no room for a list of
/// instances warned about).
///
/// Cheap when there are none, as it runs after every exec probe: the
/// kernel hands orphans to our main thread, which starts no children in
/// `run` mode, so one read of its `children` file (empty until something
/// is left behind) is all it costs; only then are they looked for
/// (`candidates`). Without that file (`CONFIG_PROC_CHILDREN`) nothing is
/// found. Run on the probe's thread, which bears the cost of reading an
/// orphan's environment (the target's mm lock), not the instance's or the
/// supervisor's.
pub fn end_probe_strays(reaper: &Reaper, instance: &str) {
    let me = our_pid();
    let orphans = std::fs::read_to_string(format!("/proc/self/task/{me}/children"));
    if !orphans.is_ok_and(|list| !list.is_empty()) {
        return;
    }
    let found = unowned_with(reaper, var::PROBE, instance).unwrap_or_default();
    if found.is_empty() {
        return;
    }
    if !PROBES_NAMED.swap(true, Ordering::Relaxed) {
        let pids: Vec<i32> = found.iter().map(|s| s.pid).collect();
        // Named while they live.
        log::warn!(
            "{instance}: killed {} left by its health check",
            name_list(&pids)
        );
    }
    reaper.signal_unowned(&found, Signal::SIGKILL);
}

/// `pid`'s command name, for a message.
pub fn name_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| "?".into(), |c| c.trim_end().to_string())
}

fn left_over(n: usize) -> String {
    crate::logging::counted(n as u64, "left-over process", "left-over processes")
}

/// One sweep, driven by the supervisor's loop: `exits` and `deadline`
/// are its events.
pub struct Sweep {
    /// Adopted, signalled, not reaped yet. Few: a plain list.
    left: Vec<Straggler>,
    killing: bool,
    until: Instant,
    /// The time SIGTERM was given: `TERM_GRACE`, or less to keep within
    /// the shutdown deadline.
    grace: Duration,
    /// Reaped so far: the first `NAMED_AT_ONCE` are logged one by one, the
    /// rest counted in one line at the end (2,000 `setsid` stragglers made
    /// 2,000 lines).
    ended: usize,
    tx: Sender<Exit>,
    pub exits: Receiver<Exit>,
}

impl Sweep {
    /// Look for stragglers and signal them; None when there are none.
    /// `forced` (a second SIGTERM, the deadline passed) starts at SIGKILL.
    pub fn start(reaper: &Reaper, forced: bool, hard: Instant) -> Option<Sweep> {
        if !proc_is_ours() {
            log::warn!(
                "unable to look for left-over processes: /proc is missing or shows another pid \
                 namespace (mount it for this one, e.g. unshare --mount-proc)"
            );
            return None;
        }
        let (tx, exits) = crossbeam_channel::unbounded();
        let now = Instant::now();
        let grace = TERM_GRACE.min(hard.saturating_duration_since(now));
        let killing = forced || grace.is_zero();
        let mut sweep = Sweep {
            left: Vec::new(),
            killing,
            until: now + if killing { KILL_WAIT } else { grace },
            grace,
            ended: 0,
            tx,
            exits,
        };
        sweep.adopt_more(reaper).then_some(sweep)
    }

    /// When the current step runs out.
    pub fn deadline(&self) -> Instant {
        self.until
    }

    fn sig(&self) -> Signal {
        if self.killing {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        }
    }

    /// Scan again, adopt and signal what is found; false if none was.
    fn adopt_more(&mut self, reaper: &Reaper) -> bool {
        let found = reaper.adopt(candidates(), &self.tx);
        if found.is_empty() {
            return false;
        }
        // Named by comm only: the instance a straggler came from is in its
        // environment, but reading /proc/<pid>/environ takes the target's
        // mm lock, and a process stuck holding it must not stall the
        // supervisor's loop, which also keeps the shutdown deadline.
        let pids: Vec<i32> = found.iter().map(|s| s.pid).collect();
        let list = name_list(&pids);
        let sig = self.sig();
        // Said before it is sent: a process's reply must not come first.
        log::warn!(
            event = "stragglers", count = found.len() as u64, signal = sig.as_str();
            "{} still running outside the stopped process groups: {list}; sending {sig}",
            left_over(found.len()),
        );
        reaper.signal_adopted(&found, |s| s.signal(sig));
        self.left.extend(found);
        true
    }

    /// A straggler was reaped. True when the sweep is over.
    pub fn on_exit(&mut self, exit: Exit, reaper: &Reaper) -> bool {
        if let Some(i) = self.left.iter().position(|s| s.pid == exit.pid) {
            self.left.swap_remove(i);
            self.ended += 1;
            if self.ended <= NAMED_AT_ONCE {
                log::info!("left-over pid {} ended ({})", exit.pid, exit.status);
            }
        }
        // Its own children in other sessions are ours now: they get the
        // signal of the current step too.
        let more = self.adopt_more(reaper);
        let over = self.left.is_empty() && !more;
        if over {
            self.say_unnamed_ended();
        }
        over
    }

    /// How many ended beyond the first `NAMED_AT_ONCE`, once, as the sweep
    /// ends (whether all ended or it gave up on some).
    fn say_unnamed_ended(&self) {
        if self.ended > NAMED_AT_ONCE {
            let n = (self.ended - NAMED_AT_ONCE) as u64;
            let more =
                crate::logging::counted(n, "more left-over process", "more left-over processes");
            log::info!("{more} ended");
        }
    }

    /// The current step ran out. True when the sweep is over.
    pub fn on_deadline(&mut self, reaper: &Reaper) -> bool {
        if self.killing {
            self.say_unnamed_ended();
            let pids: Vec<String> = self.left.iter().map(|s| s.pid.to_string()).collect();
            log::warn!(
                event = "stragglers_left", count = self.left.len() as u64;
                "gave up on {} still alive {} after SIGKILL (pid {})",
                left_over(self.left.len()),
                crate::config::format_duration(KILL_WAIT),
                pids.join(", ")
            );
            return true;
        }
        log::warn!(
            event = "stragglers", count = self.left.len() as u64, signal = "SIGKILL";
            "{} still alive after {}: sending SIGKILL",
            left_over(self.left.len()),
            crate::config::format_elapsed(self.grace)
        );
        self.force(reaper);
        false
    }

    /// Straight to SIGKILL (a second SIGTERM, the shutdown deadline).
    pub fn force(&mut self, reaper: &Reaper) {
        if self.killing {
            return;
        }
        self.killing = true;
        self.until = Instant::now() + KILL_WAIT;
        reaper.signal_adopted(&self.left, |s| s.signal(Signal::SIGKILL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // a fork that never execs: nothing else makes one
    fn a_child_is_short_of_exec_until_it_execs() {
        // One that has exec'd: not short of it.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(short_of_exec(sleeper.id() as i32), Some(false));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        // A fork that never execs: short of it.
        // SAFETY: the child only pauses until it is killed: no allocation,
        // no lock, nothing of this (multi-threaded) process touched.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            loop {
                // SAFETY: pause takes nothing and only waits for a signal.
                unsafe { libc::pause() };
            }
        }
        assert!(pid > 0);
        let short = short_of_exec(pid);
        // SAFETY: `pid` is our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: waits for that child only, writing `status`.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(short, Some(true));
    }

    #[test]
    fn stat_fields_are_read_after_the_last_parenthesis_and_zombies_skipped() {
        let at = |ppid, pgid, sid| {
            Some(Stat {
                ppid,
                pgid,
                sid,
                flags: 4194560,
                start: 5127,
            })
        };
        // Fields 7 to 21 between the session and the start time.
        let rest = "0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 5127 8245248";
        let stat = |head: &str| format!("{head} {rest}").into_bytes();
        assert_eq!(parse_stat(&stat("42 (sleep) S 1 42 40")), at(1, 42, 40));
        assert_eq!(parse_stat(&stat("7 (a) b) (c) R 3 9 8")), at(3, 9, 8));
        let mut odd = b"7 (\xff\xfe)".to_vec();
        odd.extend_from_slice(&stat(" S 3 9 8"));
        assert_eq!(parse_stat(&odd), at(3, 9, 8));
        assert_eq!(parse_stat(&stat("7 (x) Z 3 9 8")), None);
        assert_eq!(parse_stat(b"7 (x"), None);
        assert_eq!(parse_stat(b"7 (x) S 3 9 8 0 -1"), None);
    }

    /// Both ways of listing children find this test process under its
    /// parent (no child is spawned here: another test's `waitpid(-1)`
    /// could take it, DESIGN.md §8.4).
    #[test]
    fn both_scans_find_a_known_child() {
        let me = our_pid();
        let parent = nix::unistd::getppid().as_raw();
        assert!(children_by_walk(parent).contains(&me));
        if let Some(listed) = children_from_task_files(parent) {
            assert!(listed.contains(&me), "{listed:?} lacks {me}");
        }
        assert!(proc_is_ours());
    }
}
