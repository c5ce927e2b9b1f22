//! Every `unsafe` block in sheepdog lives here, each under a `// SAFETY:`
//! paragraph. These are thin wrappers over libc calls that nix does not
//! expose safely (raw `waitpid` status, `sigaction` queries, `fcntl` on
//! inherited fds) and the spawn: `spawn_clean`'s `clone(CLONE_VM |
//! CLONE_VFORK)` and the child's setup before exec (`setup_and_exec`).
//!
//! Invariants:
//! - The cloned child (`setup_and_exec`) makes raw system calls only and
//!   never allocates: everything it needs is prepared before the clone.
//! - Children start clean: every disposition back to SIG_DFL and an empty
//!   signal mask, set before exec. Only the dispositions sheepdog may have
//!   changed are reset (`NOT_DEFAULT`): every registration of a handler
//!   goes through `note_caught` first.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};

/// Highest signal number to reset in children (covers real-time signals).
const MAX_SIGNAL: libc::c_int = 64;

/// A kernel `struct sigaction` (not libc's) for SIG_DFL: SIG_DFL is 0, so
/// all zeroes mean SIG_DFL, no flags, empty mask on every architecture.
/// 64 bytes is more than the struct's size anywhere.
static KERNEL_SIG_DFL: [u64; 8] = [0; 8];

/// Signals whose disposition in sheepdog may not be SIG_DFL, bit `n - 1`
/// for signal `n`: the ones a child must set back before it unblocks. A
/// handler of ours must not run in the child, on the memory it shares with
/// us (signal-hook's would write to our self-pipe), and SIG_IGN would
/// survive exec; a SIG_DFL one needs nothing. Filled by a scan at the first
/// spawn and by `note_caught` before every later registration, so a child
/// makes a handful of calls instead of 62 (3,100 system calls in a start
/// of 50, all in the window where the spawning thread waits).
static NOT_DEFAULT: AtomicU64 = AtomicU64::new(0);
static NOT_DEFAULT_SCANNED: Once = Once::new();

/// libc's own signals (glibc takes 32 and 33, musl 32 to 34): libc may
/// install handlers for them whenever it likes, and a parent may have left
/// them SIG_IGN (glibc's posix_spawn does), so they are always reset.
const LIBC_INTERNAL: u64 = 0b111 << 31;

fn signal_bit(sig: libc::c_int) -> u64 {
    if (1..=MAX_SIGNAL).contains(&sig) {
        1 << (sig - 1)
    } else {
        0
    }
}

/// Record that sheepdog is about to give `signals` a handler (or ignore
/// them). Call before the disposition changes, so that a spawn racing with
/// the change already resets them.
pub fn note_caught(signals: &[libc::c_int]) {
    let bits = signals.iter().fold(0, |acc, s| acc | signal_bit(*s));
    NOT_DEFAULT.fetch_or(bits, Ordering::SeqCst);
}

/// The signals a child must reset (see `NOT_DEFAULT`). The first call
/// reads every disposition: whatever std, libc or our own parent set
/// before any registration of ours counts too.
fn not_default() -> u64 {
    NOT_DEFAULT_SCANNED.call_once(|| {
        let mut found = 0;
        for sig in 1..=MAX_SIGNAL {
            // libc refuses to report its own signals: count them as set.
            if disposition(sig) != Some(libc::SIG_DFL) {
                found |= signal_bit(sig);
            }
        }
        NOT_DEFAULT.fetch_or(found, Ordering::SeqCst);
    });
    let kernel_fixed = signal_bit(libc::SIGKILL) | signal_bit(libc::SIGSTOP);
    (NOT_DEFAULT.load(Ordering::SeqCst) | LIBC_INTERNAL) & !kernel_fixed
}

/// `sizeof(sigset_t)` as the kernel counts it (`_NSIG / 8`).
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_SIGSET_BYTES: libc::size_t = 16;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_SIGSET_BYTES: libc::size_t = 8;

/// A raw status from `waitpid`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// A child exited: its pid and raw status word.
    Reaped { pid: i32, status: libc::c_int },
    /// A child was stopped by `signal` (SIGSTOP, SIGTSTP...): it lives on.
    Stopped { pid: i32, signal: i32 },
    /// A stopped child was resumed by SIGCONT.
    Continued { pid: i32 },
    /// Children exist but none has changed state.
    NoneReady,
    /// We have no children at all (ECHILD).
    NoChildren,
}

/// One non-blocking `waitpid(-1, WNOHANG)`; with `stops`, also
/// `WUNTRACED | WCONTINUED`, so a child stopped or resumed is reported
/// (`Stopped`, `Continued`) as well as one that exited.
///
/// nix's `waitpid` converts the terminating signal into its `Signal` enum
/// and returns EINVAL for numbers it does not know (real-time signals) —
/// *after* the child was reaped, losing the status. The raw call keeps it.
pub fn wait_any_nohang(stops: bool) -> io::Result<WaitResult> {
    let flags = if stops {
        libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED
    } else {
        libc::WNOHANG
    };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable c_int for the whole call;
        // waitpid has no other memory effects.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid > 0 {
            return Ok(if libc::WIFSTOPPED(status) {
                WaitResult::Stopped {
                    pid,
                    signal: libc::WSTOPSIG(status),
                }
            } else if libc::WIFCONTINUED(status) {
                WaitResult::Continued { pid }
            } else {
                WaitResult::Reaped { pid, status }
            });
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

/// `pidfd_open(pid)` (Linux 5.3): a descriptor of process `pid` that polls
/// readable once it has exited (a zombie counts), so an exit can be waited
/// for beside other descriptors. Never waited on: the status still comes
/// from the reaper. The caller makes sure `pid` is an unreaped child of
/// ours (`Reaper::pidfd`), so it names no other process under a reused pid.
pub fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags (none) and touches no memory
    // of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel has just made for us alone
    // (close-on-exec, as every pidfd is); a file descriptor fits in c_int.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The uid and pid of a unix socket's peer as they were when it connected
/// (SO_PEERCRED), for the log of who asked what; `(u32::MAX, 0)` should
/// the kernel not say, which it always does for a connected AF_UNIX socket.
#[cfg(feature = "api")]
pub fn peer_cred(fd: std::os::fd::BorrowedFd<'_>) -> (u32, i32) {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live, writable locals, and `len` is
    // `cred`'s size: the kernel writes at most that many bytes. On failure
    // nothing is written and the placeholders stay.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    (cred.uid, cred.pid)
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
        if disposition(sig) == Some(libc::SIG_IGN) {
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

/// Block the real-time signals (libc's `SIGRTMIN()` to `SIGRTMAX()`, so
/// never one libc keeps for itself) on this thread, and so on every thread
/// it starts. Their default action ends a process, and the supervisor has
/// no use for them: blocked, a stray one stays pending instead of ending
/// sheepdog (and orphaning its children) when it is not PID 1. Blocking
/// costs a spawn nothing: every child starts with an empty mask
/// (`spawn_clean`). Call before any thread exists.
pub fn block_realtime_signals() {
    // SAFETY: `set` is a local, properly sized sigset_t initialised by
    // sigemptyset before sigaddset reads it; pthread_sigmask only changes
    // this thread's mask, and a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Signals blocked by `block_signals`, for `wait_signal`.
pub struct SignalSet(libc::sigset_t);

/// Block `signals` on this thread, and so on every thread it starts (a
/// child unblocks everything: `spawn_clean`), to be taken with
/// `wait_signal`. Blocked, not caught, a signal waits in the kernel's
/// queue, which keeps what a handler's flag loses: a SIGCONT drops a
/// pending stop signal and a stop signal a pending SIGCONT (the later one
/// wins), and each real-time signal sent is queued on its own. As PID 1 a
/// blocked signal is queued too, handler or not.
pub fn block_signals(signals: &[libc::c_int]) -> SignalSet {
    // SAFETY: `set` is a local, properly sized sigset_t initialised by
    // sigemptyset before sigaddset reads it; pthread_sigmask only changes
    // this thread's mask, and a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        SignalSet(set)
    }
}

/// The next signal of `set`, as the kernel queued it; blocks until one
/// comes (EINTR, from a stop and continue of ours, waits on).
pub fn wait_signal(set: &SignalSet) -> io::Result<libc::c_int> {
    loop {
        // SAFETY: sigwaitinfo reads `set`, a sigset_t initialised by
        // `block_signals`; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(&set.0, std::ptr::null_mut()) };
        if sig > 0 {
            return Ok(sig);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// kill(2) with a raw signal number: nix's `Signal` has no real-time
/// signals, which single-command mode forwards too. `pid` < 0: a group.
pub fn send_signal(pid: libc::pid_t, sig: libc::c_int) -> nix::Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    nix::errno::Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `sig`'s current handler (SIG_DFL, SIG_IGN or a function), or None when
/// libc refuses to say (its own signals, 32 to 34).
fn disposition(sig: libc::c_int) -> Option<libc::sighandler_t> {
    // SAFETY: sigaction with a null new action only reads the current
    // disposition into `old`, a zeroed, properly sized sigaction.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let queried = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    (queried == 0).then_some(old.sa_sigaction)
}

/// Mark every inherited descriptor above 2 close-on-exec, so children get
/// only 0/1/2. (Descriptors sheepdog opens itself are CLOEXEC already: std
/// and nix open everything with O_CLOEXEC.) One `close_range` call (Linux
/// 5.11): it needs neither `/proc` (not mounted yet in a bare container)
/// nor a free descriptor; older kernels get the `/proc/self/fd` walk.
pub fn cloexec_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets descriptor
    // flags; no descriptor is closed.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::c_int>().ok());
    for fd in fds.filter(|fd| *fd > 2) {
        // SAFETY: F_SETFD only sets the descriptor flags (FD_CLOEXEC is the
        // only one; the read_dir handle's own fd has it already).
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// Everything the child needs between clone and exec, prepared (and kept
/// alive) by the parent: see `child::Prepared`.
pub struct ExecImage<'a> {
    /// Paths to try in order, as execvp would.
    pub candidates: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub argv: &'a [*const libc::c_char],
    /// NULL-terminated.
    pub envp: &'a [*const libc::c_char],
    pub dir: Option<&'a CStr>,
    /// The descriptor to put on 0, 1, 2 (None: keep sheepdog's).
    pub stdio: [Option<libc::c_int>; 3],
    /// uid, gid, supplementary groups.
    pub credentials: Option<(u32, u32, &'a [libc::gid_t])>,
    pub foreground_tty: bool,
    /// Kill the child if it is still short of exec this long after it
    /// starts (`arm_exec_deadline`); None: no bound.
    pub exec_within: Option<Duration>,
}

/// The step of a spawn that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Clone = 1,
    Group,
    Stdio,
    Dir,
    Credentials,
    Exec,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Clone,
        Stage::Group,
        Stage::Stdio,
        Stage::Dir,
        Stage::Credentials,
        Stage::Exec,
    ];
}

/// A failed spawn. `pid` is set when the child was created (it has exited
/// with status 127 and is still to be reaped).
#[derive(Debug)]
pub struct SpawnError {
    pub pid: Option<i32>,
    pub stage: Stage,
    pub error: io::Error,
}

impl SpawnError {
    /// Prefix the OS error with what was being done, keeping its kind and
    /// errno (`errno_of`).
    pub fn with_context(mut self, context: Option<String>) -> SpawnError {
        if let Some(c) = context {
            self.error = explained(&self.error, format!("{c}: {}", self.error));
        }
        self
    }

    /// Append an explanation of the OS error, keeping its kind and errno.
    pub fn with_hint(mut self, hint: Option<String>) -> SpawnError {
        if let Some(h) = hint {
            self.error = explained(&self.error, format!("{}; {h}", self.error));
        }
        self
    }
}

/// An OS error said in more words, that keeps its errno for `errno_of`
/// (`io::Error::new` alone would drop it: EPERM, EMFILE and EAGAIN decide
/// what is said and done next).
#[derive(Debug)]
struct Explained {
    errno: Option<i32>,
    text: String,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Explained {}

fn explained(e: &io::Error, text: String) -> io::Error {
    io::Error::new(
        e.kind(),
        Explained {
            errno: errno_of(e),
            text,
        },
    )
}

/// Whether `e` says sheepdog could not make a descriptor or a task
/// (EMFILE, ENFILE, EAGAIN, ENOMEM): its own shortage, not the fault of
/// what it was starting or probing.
pub fn short_of_resources(e: &io::Error) -> bool {
    matches!(
        errno_of(e),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    )
}

/// The errno of `e`, also through the words `SpawnError` put around it.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
        .or_else(|| e.get_ref()?.downcast_ref::<Explained>()?.errno)
}

/// Stack for the cloned child until it execs: it runs `child_exec` only
/// (a few small frames, raw syscalls; musl's posix_spawn makes do with 5
/// KiB).
const CHILD_STACK: usize = 16 * 1024;

/// Child stacks not in use. A spawn takes one (or makes one) and puts it
/// back: there are only as many as spawns ever ran at once, not one per
/// thread, and none is freed per spawn (that would cost every CPU a TLB
/// shootdown). An array in the spawning frame is no better: stack probes
/// touch all of it, in every instance thread. Only the pages a child writes
/// (the top one or two) become resident.
static CHILD_STACKS: Mutex<Vec<Box<[MaybeUninit<u8>]>>> = Mutex::new(Vec::new());

fn take_stack() -> Box<[MaybeUninit<u8>]> {
    // A poisoned pool still holds valid buffers.
    let pooled = CHILD_STACKS.lock().unwrap_or_else(|e| e.into_inner()).pop();
    pooled.unwrap_or_else(|| Box::new_uninit_slice(CHILD_STACK))
}

fn put_stack(stack: Box<[MaybeUninit<u8>]>) {
    CHILD_STACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(stack);
}

/// What the child reports back through the memory it shares with us:
/// 0, or `stage << 32 | errno`.
struct ChildArgs<'a> {
    image: &'a ExecImage<'a>,
    /// The signals to set back to SIG_DFL (`not_default`).
    reset: u64,
    failure: AtomicU64,
}

/// Start `image` in its own process group with a clean signal state, via
/// `clone(CLONE_VM | CLONE_VFORK)`: the child borrows our memory (no page
/// tables copied, nothing write-protected) and this thread sleeps until
/// the child has exec'd or exited. Other threads keep running.
///
/// Every signal, libc's internal ones included, is blocked on this thread
/// across the clone, so no handler of ours can run in the child (it would
/// run on our memory). The child sets every disposition that is not
/// SIG_DFL here back to it and only then unblocks: a signal aimed at it in
/// that window takes its default action, as it would after exec.
///
/// The kernel writes the child's pid into `pid` as it creates the child,
/// before the child runs (CLONE_PARENT_SETTID): other threads can see the
/// pid of a child still short of exec (a `chdir` into a hung NFS mount
/// holds this thread in clone), to route its exit or to kill it.
pub fn spawn_clean(image: &ExecImage<'_>, pid: &AtomicI32) -> Result<i32, SpawnError> {
    let mut stack = take_stack();
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let args = ChildArgs {
        image,
        reset: not_default(),
        failure: AtomicU64::new(0),
    };
    let all: [u64; 2] = [!0; 2];
    let mut old: [u64; 2] = [0; 2];
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both at least
    // KERNEL_SIGSET_BYTES long; it only changes this thread's mask, which
    // is restored below whatever happens.
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            all.as_ptr(),
            old.as_mut_ptr(),
            KERNEL_SIGSET_BYTES,
        )
    };
    if blocked != 0 {
        let error = io::Error::last_os_error();
        put_stack(stack);
        return Err(failed(None, Stage::Clone, error));
    }
    // SAFETY: `child_exec` runs on `stack` (owned here, used by nothing
    // else meanwhile: this thread sits in clone; 16-byte aligned top; large
    // enough for its frames; uninitialised memory is fine for a stack) and
    // reads `args`, which outlives the child's use of it: with CLONE_VFORK,
    // clone returns only after the child has exec'd or exited, and only
    // then can `stack`, `args` and the image go. The child shares our
    // memory but not our signal handlers (no CLONE_SIGHAND) and starts with
    // every signal blocked, so none of our code runs in it except
    // `child_exec`. The kernel stores the child's pid, an aligned i32,
    // through `pid.as_ptr()` (borrowed for longer than this call) once,
    // before the child runs; other threads only load it atomically.
    let pid = unsafe {
        libc::clone(
            child_exec,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT_SETTID | libc::SIGCHLD,
            &args as *const ChildArgs as *mut libc::c_void,
            pid.as_ptr(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: as above; restores the mask saved before the clone.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            old.as_ptr(),
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_BYTES,
        );
    }
    put_stack(stack);
    if pid < 0 {
        return Err(failed(None, Stage::Clone, clone_error));
    }
    match args.failure.load(Ordering::Acquire) {
        0 => Ok(pid),
        f => {
            let stage = Stage::ALL
                .into_iter()
                .find(|s| *s as u64 == f >> 32)
                .unwrap_or(Stage::Exec);
            let errno = (f & 0xffff_ffff) as i32;
            Err(failed(
                Some(pid),
                stage,
                io::Error::from_raw_os_error(errno),
            ))
        }
    }
}

fn failed(pid: Option<i32>, stage: Stage, error: io::Error) -> SpawnError {
    SpawnError { pid, stage, error }
}

/// The cloned child: set up, exec, or report the failing step and exit 127.
///
/// It runs on memory shared with sheepdog, so it makes raw system calls
/// only, through libc's `syscall()` (no lock, no allocation; on failure it
/// sets errno, which here is the spawning thread's: harmless, that thread
/// reads errno after the clone only when the clone failed, and then there
/// is no child). libc's own wrappers may not be trusted here: `setuid` and
/// friends in glibc and musl signal every thread of the process they
/// believe they are in (ours) to change credentials process-wide.
extern "C" fn child_exec(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `spawn_clean` keeps alive until
    // this child has exec'd or exited.
    let args = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: see `setup_and_exec`; it returns only on failure.
    let (stage, errno) = unsafe { setup_and_exec(args.image, args.reset) };
    args.failure.store(
        ((stage as u64) << 32) | errno as u32 as u64,
        Ordering::Release,
    );
    // SAFETY: _exit ends this child only (no CLONE_THREAD), running no
    // atexit handlers or destructors on the memory we share.
    unsafe { libc::_exit(127) }
}

/// The child's steps, in order: exec deadline, signal dispositions, process group, stdio,
/// credentials, working directory, terminal, mask, exec. Returns the step
/// that failed and its errno.
///
/// SAFETY (for callers): only in the `clone`d child of `spawn_clean`, with
/// every signal blocked. Every pointer in `image` is valid (the parent keeps
/// the prepared data alive); only raw syscalls are made, nothing allocates.
unsafe fn setup_and_exec(image: &ExecImage<'_>, reset: u64) -> (Stage, i32) {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    if let Some(within) = image.exec_within {
        arm_exec_deadline(within);
    }
    // The raw call, as libc's sigaction refuses libc's own signals.
    let mut pending = reset;
    while pending != 0 {
        let sig = pending.trailing_zeros() as libc::c_int + 1;
        pending &= pending - 1;
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            KERNEL_SIG_DFL.as_ptr(),
            std::ptr::null_mut::<libc::c_void>(),
            KERNEL_SIGSET_BYTES,
        );
    }
    if libc::syscall(libc::SYS_setpgid, 0, 0) != 0 {
        return (Stage::Group, errno());
    }
    for (target, source) in image.stdio.iter().enumerate() {
        let Some(fd) = *source else { continue };
        let target = target as libc::c_int;
        // dup3 refuses fd == target; then only the CLOEXEC flag must go.
        let moved = if fd == target {
            libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, 0)
        } else {
            libc::syscall(libc::SYS_dup3, fd, target, 0)
        };
        if moved < 0 {
            return (Stage::Stdio, errno());
        }
    }
    // Credentials before the directory, as std's Command does: the working
    // directory is entered with the permissions the process will have (and
    // works on root-squashed NFS, where root may not enter).
    if let Some((uid, gid, groups)) = image.credentials {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setgid, gid) != 0
            || libc::syscall(libc::SYS_setuid, uid) != 0
        {
            return (Stage::Credentials, errno());
        }
    }
    if let Some(dir) = image.dir {
        if libc::syscall(libc::SYS_chdir, dir.as_ptr()) != 0 {
            return (Stage::Dir, errno());
        }
    }
    if image.foreground_tty {
        // SIGTTOU is still blocked, so a background group may take the
        // terminal. ENOTTY etc. are not fatal for the child.
        let pgrp = libc::syscall(libc::SYS_getpid) as libc::pid_t;
        libc::syscall(
            libc::SYS_ioctl,
            0,
            libc::TIOCSPGRP,
            &pgrp as *const libc::pid_t,
        );
    }
    let empty: [u64; 2] = [0; 2];
    libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        empty.as_ptr(),
        std::ptr::null_mut::<u64>(),
        KERNEL_SIGSET_BYTES,
    );
    // glibc's execvp rules: EACCES anywhere wins over a later ENOENT;
    // "not here" errors go on to the next entry; errors that say the file
    // exists but cannot run stop the search. Unlike glibc (like musl and
    // posix_spawnp) there is no retry through /bin/sh on ENOEXEC: a script
    // needs its `#!` line.
    let mut result = libc::ENOENT;
    let mut denied = false;
    for &path in image.candidates {
        libc::syscall(
            libc::SYS_execve,
            path,
            image.argv.as_ptr(),
            image.envp.as_ptr(),
        );
        result = errno();
        match result {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return (Stage::Exec, result),
        }
    }
    (Stage::Exec, if denied { libc::EACCES } else { result })
}

/// Have the kernel SIGKILL this child `within` from now unless it has
/// exec'd by then: a POSIX timer, which execve deletes (unlike `alarm`,
/// which would follow the program). A step on a hung mount (chdir, the
/// program's open) sleeps where only a fatal signal wakes it, and the
/// spawning thread sleeps in clone until the child execs or dies: this
/// bounds both, with no watchdog thread and no wake-up when the spawn is
/// quick. Best effort: a failure to arm (EAGAIN at the timer limit)
/// leaves the spawn unbounded, as it was, rather than failing it.
///
/// SAFETY (for callers): as `setup_and_exec`; raw syscalls on stack data.
unsafe fn arm_exec_deadline(within: Duration) {
    // SIGEV_SIGNAL: signal this process. All zeros is a valid sigevent
    // (a plain C struct); libc's has private padding, so no literal.
    let mut event: libc::sigevent = std::mem::zeroed();
    event.sigev_signo = libc::SIGKILL;
    event.sigev_notify = libc::SIGEV_SIGNAL;
    let mut timer: libc::c_int = 0;
    if libc::syscall(
        libc::SYS_timer_create,
        libc::CLOCK_MONOTONIC,
        &event as *const libc::sigevent,
        &mut timer as *mut libc::c_int,
    ) != 0
    {
        return;
    }
    // A zero it_value would disarm the timer: at least a nanosecond.
    let value = within.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            // `as _`: time_t, a name musl's libc crate deprecates.
            tv_sec: value.as_secs().min(i32::MAX as u64) as _,
            tv_nsec: value.subsec_nanos() as _,
        },
    };
    libc::syscall(
        libc::SYS_timer_settime,
        timer,
        0,
        &spec as *const libc::itimerspec,
        std::ptr::null_mut::<libc::itimerspec>(),
    );
}

/// Make sure descriptors 0, 1 and 2 are open (on /dev/null when our parent
/// closed them), so no descriptor sheepdog opens later lands on them: a
/// pipe end on fd 1 would be clobbered while a child's stdio is set up,
/// and `inherit` children expect real stdio there. Call before anything
/// else opens a file.
pub fn open_std_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
        if !open {
            // SAFETY: open with a static NUL-terminated path; the lowest
            // free descriptor is `fd`, since 0..fd are open. Not CLOEXEC:
            // it stands in for inherited stdio.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn has(set: u64, sig: libc::c_int) -> bool {
        set & signal_bit(sig) != 0
    }

    #[test]
    fn children_reset_what_we_changed_and_libc_signals_only() {
        // Like sheepdog's main, std's start-up ignores SIGPIPE; the scan
        // at the first spawn must find that.
        let scanned = not_default();
        assert!(has(scanned, libc::SIGPIPE), "{scanned:#x}");
        for sig in [32, 33, 34] {
            assert!(has(scanned, sig), "libc's signal {sig}: {scanned:#x}");
        }
        // Never touched by this test binary: left alone by children.
        assert!(!has(scanned, libc::SIGWINCH), "{scanned:#x}");
        // A registration after the scan is reset from then on.
        note_caught(&[libc::SIGWINCH, 0, 65]);
        let later = not_default();
        assert!(has(later, libc::SIGWINCH), "{later:#x}");
        assert_eq!(later & !scanned, signal_bit(libc::SIGWINCH));
        // The kernel refuses to change these; no call is wasted on them.
        assert!(!has(later, libc::SIGKILL) && !has(later, libc::SIGSTOP));
    }
}
