//! A child process to start, as plain data, and the preparation that turns
//! it into exactly what the exec'ing child needs (`sys::spawn_clean`).
//!
//! sheepdog does not use `std::process::Command`: std must `fork` (copying
//! the page tables of a process with many threads, and write-protecting all
//! of its memory) whenever a `pre_exec` hook is set, and one is needed to
//! reset every signal. Our spawn is a `clone(CLONE_VM | CLONE_VFORK)` that
//! borrows sheepdog's memory until the child execs, like `posix_spawn`.
//!
//! Invariants:
//! - Building a `Command` has no side effects; nothing is opened or
//!   allocated for the child until `prepare`.
//! - Everything the child touches between clone and exec is prepared here,
//!   in the parent: argv, envp, the `$PATH` candidates, the descriptors.
//!   The child allocates nothing.
//! - The environment is sheepdog's own without its override variables
//!   (`SHEEPDOG_GLOBAL_*`, `SHEEPDOG_PROCESS_*`) and those it sets per child
//!   (`SHEEPDOG_INSTANCE`, …), then `env` in order (later wins); all of
//!   it, as inherited, in single-command mode (`WHOLE_ENV`).
//! - Descriptors made here are CLOEXEC and above 2 (`sys::open_std_fds`
//!   keeps 0-2 taken), so moving them onto 0/1/2 never clobbers another.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::config::Credentials;
use crate::exec_error;
use crate::sys::{self, ExecImage, SpawnError, Stage};

/// Where one of the child's standard descriptors comes from.
#[derive(Debug)]
pub enum Stdio {
    /// /dev/null.
    Null,
    /// sheepdog's own descriptor of the same number.
    Inherit,
    /// A new pipe; the parent's end is returned in `Child`.
    Pipe,
    /// This descriptor (e.g. the write end of a pipe made by the caller).
    Fd(OwnedFd),
}

/// What to run and how. Defaults: stdin /dev/null, stdout and stderr
/// inherited, sheepdog's environment and working directory.
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    credentials: Option<Credentials>,
    foreground_tty: bool,
    exec_deadline: Option<Instant>,
}

/// A started child: its pid (also its process group id) and the parent's
/// ends of whichever of stdout/stderr were `Stdio::Pipe`.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            stdin: Stdio::Null,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            credentials: None,
            foreground_tty: false,
            exec_deadline: None,
        }
    }

    /// Kill the child (SIGKILL) if it has not exec'd by `at`, and fail the
    /// spawn: a bounded task's spawn stuck on a hung mount (working_dir,
    /// program) ends at the task's own deadline instead of holding its
    /// thread for ever.
    pub fn exec_deadline(&mut self, at: Instant) -> &mut Command {
        self.exec_deadline = Some(at);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Command {
        self.dir = Some(dir.into());
        self
    }

    pub fn stdin(&mut self, stdio: Stdio) -> &mut Command {
        self.stdin = stdio;
        self
    }

    pub fn stdout(&mut self, stdio: Stdio) -> &mut Command {
        self.stdout = stdio;
        self
    }

    pub fn stderr(&mut self, stdio: Stdio) -> &mut Command {
        self.stderr = stdio;
        self
    }

    /// Switch to these (setgroups → setgid → setuid) before exec.
    pub fn credentials(&mut self, credentials: Option<Credentials>) -> &mut Command {
        self.credentials = credentials;
        self
    }

    /// Make the child's process group the terminal's foreground group
    /// (single-command mode with `docker run -it`).
    pub fn foreground_tty(&mut self, yes: bool) -> &mut Command {
        self.foreground_tty = yes;
        self
    }
}

/// NUL-terminated strings packed in one buffer: a spawn allocates a few
/// buffers, not one per argument and variable (50 instance threads
/// spawning at once would queue on the allocator's lock).
#[derive(Debug, Default)]
struct Strings {
    bytes: Vec<u8>,
    starts: Vec<usize>,
}

impl Strings {
    fn with_capacity(bytes: usize, count: usize) -> Strings {
        Strings {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(count),
        }
    }

    /// Append the concatenation of `parts` as one string.
    fn push(&mut self, parts: &[&[u8]], what: &str) -> io::Result<()> {
        if parts.iter().any(|p| p.contains(&0)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            ));
        }
        self.starts.push(self.bytes.len());
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.bytes.push(0);
        Ok(())
    }

    /// NULL-terminated pointers into `self` (valid while it lives, unmoved).
    fn pointers(&self) -> Vec<*const libc::c_char> {
        self.starts
            .iter()
            .map(|&i| self.bytes[i..].as_ptr().cast::<libc::c_char>())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }

    /// Each string, without its NUL.
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.starts.iter().map(|&i| {
            let s = &self.bytes[i..];
            // Every string was pushed with a NUL after it.
            &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
        })
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<String> {
        self.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }
}

/// A `Command` turned into C strings and descriptors, ready for the child.
pub struct Prepared {
    candidates: Strings,
    argv: Strings,
    envp: Strings,
    dir: Option<CString>,
    groups: Vec<libc::gid_t>,
    /// What goes onto fds 0, 1, 2 (None: keep sheepdog's).
    stdio: [Option<Source>; 3],
    parent_out: Option<OwnedFd>,
    parent_err: Option<OwnedFd>,
    credentials: Option<(u32, u32)>,
    foreground_tty: bool,
    exec_deadline: Option<Instant>,
}

/// A descriptor for the child's side: one made for this spawn, or the
/// shared /dev/null.
enum Source {
    Owned(OwnedFd),
    Null(RawFd),
}

impl Source {
    fn raw(&self) -> RawFd {
        match self {
            Source::Owned(fd) => fd.as_raw_fd(),
            Source::Null(fd) => *fd,
        }
    }
}

impl Prepared {
    /// Allocate and open everything the child will need.
    pub fn new(cmd: Command) -> io::Result<Prepared> {
        let login = login_env(cmd.credentials.as_ref());
        let envp = if login.is_empty() {
            environment(&cmd.env)?
        } else {
            environment(&[login, cmd.env.clone()].concat())?
        };
        let path = cmd
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str())
            .or_else(|| {
                base_env()
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.as_os_str())
            })
            .unwrap_or(OsStr::new(DEFAULT_PATH));
        let candidates = candidates(&cmd.program, path)?;
        let mut argv = Strings::with_capacity(
            std::iter::once(&cmd.program)
                .chain(&cmd.args)
                .map(|a| a.len() + 1)
                .sum(),
            cmd.args.len() + 1,
        );
        for a in std::iter::once(&cmd.program).chain(&cmd.args) {
            argv.push(&[a.as_bytes()], "an argument")?;
        }
        let dir = cmd
            .dir
            .as_ref()
            .map(|d| c_string(d.as_os_str().as_bytes(), "the working directory"))
            .transpose()?;
        let (stdin, _) = source(cmd.stdin)?;
        let (stdout, parent_out) = source(cmd.stdout)?;
        let (stderr, parent_err) = source(cmd.stderr)?;
        Ok(Prepared {
            candidates,
            argv,
            envp,
            dir,
            groups: cmd
                .credentials
                .as_ref()
                .map(|c| c.groups.iter().map(|&g| g as libc::gid_t).collect())
                .unwrap_or_default(),
            stdio: [stdin, stdout, stderr],
            parent_out,
            parent_err,
            credentials: cmd
                .credentials
                .as_ref()
                .filter(|c| !already_as(c))
                .map(|c| (c.uid, c.gid)),
            foreground_tty: cmd.foreground_tty,
            exec_deadline: cmd.exec_deadline,
        })
    }

    /// Start the child. On success the child has exec'd; the child's ends
    /// of its pipes are closed here and the parent's ends returned. On a
    /// failure after the clone, the error carries the pid of the child,
    /// which has exited (status 127) and must still be reaped. `pid_slot` gets
    /// the child's pid as soon as it exists (`sys::spawn_clean`).
    pub fn spawn(self, pid_slot: &AtomicI32) -> Result<Child, SpawnError> {
        let candidates = self.candidates.pointers();
        let argv = self.argv.pointers();
        let envp = self.envp.pointers();
        let image = ExecImage {
            candidates: &candidates[..candidates.len() - 1],
            argv: &argv,
            envp: &envp,
            dir: self.dir.as_deref(),
            stdio: [0, 1, 2].map(|i| self.stdio[i].as_ref().map(Source::raw)),
            credentials: self.credentials.map(|(u, g)| (u, g, &self.groups[..])),
            foreground_tty: self.foreground_tty,
            exec_within: self
                .exec_deadline
                .map(|at| at.saturating_duration_since(Instant::now())),
        };
        let pid = sys::spawn_clean(&image, pid_slot).map_err(|e| {
            let context = self.context(e.stage);
            let hint = match (e.stage, e.error.raw_os_error()) {
                (Stage::Exec, Some(errno)) => self.exec_hint(errno),
                _ => None,
            };
            e.with_context(context).with_hint(hint)
        })?;
        // Back at or after its deadline: the child was still short of exec
        // there and its timer killed it (or it exec'd just then, and goes
        // now, group and all). Nothing of the program ran: a failed spawn.
        if self.exec_deadline.is_some_and(|at| Instant::now() >= at) {
            let _ = sys::send_signal(-pid, libc::SIGKILL);
            return Err(SpawnError {
                pid: Some(pid),
                stage: Stage::Exec,
                error: io::Error::new(io::ErrorKind::TimedOut, STUCK),
            });
        }
        Ok(Child {
            pid,
            stdout: self.parent_out,
            stderr: self.parent_err,
        })
    }

    /// What the errno of a failed exec does not say: the first candidate
    /// that exists (as seen from the working directory) explains it.
    fn exec_hint(&self, errno: i32) -> Option<String> {
        self.candidates
            .iter()
            .map(|c| {
                let c = Path::new(OsStr::from_bytes(c));
                match &self.dir {
                    Some(d) if c.is_relative() => {
                        Path::new(OsStr::from_bytes(d.as_bytes())).join(c)
                    }
                    _ => c.to_path_buf(),
                }
            })
            .find(|p| p.symlink_metadata().is_ok())
            .and_then(|p| exec_error::explain(&p, errno))
    }

    fn context(&self, stage: Stage) -> Option<String> {
        match stage {
            Stage::Dir => Some(format!(
                "unable to enter working directory {}",
                self.dir.as_deref().map_or("".into(), CStr::to_string_lossy)
            )),
            Stage::Credentials => Some("unable to switch user/group".into()),
            Stage::Stdio => Some("unable to set up stdin/stdout/stderr".into()),
            Stage::Group => Some("unable to create a process group".into()),
            Stage::Clone | Stage::Exec => None,
        }
    }
}

/// Why a spawn with an exec deadline failed when it ran out.
const STUCK: &str =
    "still short of exec when its time ran out (its working_dir or program on a hung mount?)";

/// Whether a spawn failed because its exec deadline ran out
/// (`Prepared::spawn`'s `STUCK`): `TimedOut` with no errno, where an errno
/// ETIMEDOUT (from a network file system) is something else.
pub fn is_exec_deadline(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none()
}

/// What execvp uses when there is no PATH at all (musl's default).
const DEFAULT_PATH: &str = "/usr/local/bin:/bin:/usr/bin";

/// The variables sheepdog sets per child, named once here so that
/// `PER_CHILD` cannot miss one a spawner sets.
pub mod var {
    pub const PROCESS: &str = "SHEEPDOG_PROCESS";
    pub const INSTANCE: &str = "SHEEPDOG_INSTANCE";
    pub const INSTANCE_INDEX: &str = "SHEEPDOG_INSTANCE_INDEX";
    pub const HOOK_NAME: &str = "SHEEPDOG_HOOK_NAME";
    pub const HOOK_TYPE: &str = "SHEEPDOG_HOOK_TYPE";
    pub const SCHEDULED: &str = "SHEEPDOG_SCHEDULED";
    pub const RUN_ID: &str = "SHEEPDOG_RUN_ID";
    pub const TRIGGER: &str = "SHEEPDOG_TRIGGER";
    /// In an exec probe's environment, the instance it probes: what a
    /// probe leaves behind is known by it (`stragglers::end_probe_strays`).
    pub const PROBE: &str = "SHEEPDOG_PROBE";
}

/// What sheepdog sets per child (`spawn`, `hooks`, `probe`, a scheduled
/// run's): a child gets its own, or none (a stop hook has no instance, a
/// global hook no process), never what a sheepdog running this one set.
const PER_CHILD: [&str; 9] = [
    var::PROCESS,
    var::INSTANCE,
    var::INSTANCE_INDEX,
    var::HOOK_NAME,
    var::HOOK_TYPE,
    var::SCHEDULED,
    var::RUN_ID,
    var::TRIGGER,
    var::PROBE,
];

/// sheepdog's own environment, read once (sheepdog never changes it),
/// without the override variables: those are sheepdog's input, already
/// applied, and one process's `…_ENV_<VAR>` must not reach the others.
/// Nor `PER_CHILD`.
fn base_env() -> &'static [(OsString, OsString)] {
    static BASE: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let whole = WHOLE_ENV.load(Ordering::Relaxed);
        std::env::vars_os()
            .filter(|(k, _)| {
                whole || (!crate::config::is_override(k) && !PER_CHILD.iter().any(|v| k == v))
            })
            .collect()
    })
}

/// Pass sheepdog's environment on whole, the variables `base_env` leaves
/// out included: single-command mode reads no configuration, so none of
/// them is sheepdog's input (tini passes everything too). Set before the
/// first spawn, which reads the environment once.
pub static WHOLE_ENV: AtomicBool = AtomicBool::new(false);

/// What a login as the target user sets, before the command's own `env`
/// (which wins): `USER`, `LOGNAME` and `HOME` from its passwd entry, as
/// `su -`, `runuser` and Docker's `USER` give them. A uid without an entry
/// gets `HOME=/`, as under Docker, rather than sheepdog's own (root's).
/// sheepdog, not root, already runs as `c`'s user and group: there is
/// nothing to switch, and `setgroups` would fail with EPERM (`user: www-data`
/// in an image run with `--user 33`, as supervisord allows).
fn already_as(c: &Credentials) -> bool {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    uid != 0 && (c.uid, c.gid) == (uid, gid)
}

fn login_env(credentials: Option<&Credentials>) -> Vec<(OsString, OsString)> {
    let Some(c) = credentials else {
        return Vec::new();
    };
    match &c.login {
        Some((name, home)) => vec![
            ("USER".into(), name.into()),
            ("LOGNAME".into(), name.into()),
            ("HOME".into(), home.into()),
        ],
        None if c.uid != nix::unistd::geteuid().as_raw() => vec![("HOME".into(), "/".into())],
        None => Vec::new(),
    }
}

/// sheepdog's environment with `changes` applied in order (the last change
/// of a name wins), as `NAME=value` strings.
fn environment(changes: &[(OsString, OsString)]) -> io::Result<Strings> {
    let base = base_env();
    let last_change = |name: &OsStr| changes.iter().rev().find(|(k, _)| k == name);
    let size = base
        .iter()
        .chain(changes)
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let mut env = Strings::with_capacity(size, base.len() + changes.len());
    let what = "an environment variable";
    for (k, v) in base {
        let v = last_change(k).map_or(v, |(_, changed)| changed);
        env.push(&[k.as_bytes(), b"=", v.as_bytes()], what)?;
    }
    for (i, (k, v)) in changes.iter().enumerate() {
        let first = changes[..i].iter().all(|(earlier, _)| earlier != k);
        let new = base.iter().all(|(b, _)| b != k);
        if first && new {
            let v = last_change(k).map_or(v, |(_, changed)| changed);
            env.push(&[k.as_bytes(), b"=", v.as_bytes()], what)?;
        }
    }
    Ok(env)
}

/// The paths to try, in order, as execvp would: the program itself when it
/// names a path, else each `$PATH` entry joined with it (an empty entry is
/// the working directory).
fn candidates(program: &OsStr, path: &OsStr) -> io::Result<Strings> {
    let name = program.as_bytes();
    let what = "the program";
    if name.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let mut out = Strings::with_capacity(path.len() + 2 * name.len() + 8, 8);
    if name.contains(&b'/') {
        out.push(&[name], what)?;
        return Ok(out);
    }
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        out.push(&[dir, b"/", name], what)?;
    }
    Ok(out)
}

fn c_string(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// /dev/null, opened once for every child's null stdio (read-write, so it
/// serves stdin and stdout alike). An error if it cannot be opened; then
/// each spawn tries again and reports the error.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(NULL.get_or_init(|| file.into()).as_raw_fd())
}

/// The descriptor for the child's side and, for a pipe, the parent's end.
fn source(stdio: Stdio) -> io::Result<(Option<Source>, Option<OwnedFd>)> {
    Ok(match stdio {
        Stdio::Inherit => (None, None),
        Stdio::Fd(fd) => (Some(Source::Owned(fd)), None),
        Stdio::Null => (Some(Source::Null(dev_null()?)), None),
        Stdio::Pipe => {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            (Some(Source::Owned(write)), Some(read))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_follows_execvp() {
        let c = candidates(OsStr::new("sleep"), OsStr::new("/a::/b")).unwrap();
        assert_eq!(c.to_vec(), ["/a/sleep", "./sleep", "/b/sleep"]);
        let c = candidates(OsStr::new("./run.sh"), OsStr::new("/a")).unwrap();
        assert_eq!(c.to_vec(), ["./run.sh"]);
        let e = candidates(OsStr::new(""), OsStr::new("/a")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn later_environment_changes_win() {
        let (name, _) = base_env()
            .first()
            .expect("tests run with some environment")
            .clone();
        let name = name.to_string_lossy().into_owned();
        let env = environment(&[
            ("SHEEPDOG_T1".into(), "a".into()),
            (name.clone().into(), "changed".into()),
            ("SHEEPDOG_T1".into(), "b".into()),
        ])
        .unwrap()
        .to_vec();
        let t1: Vec<_> = env
            .iter()
            .filter(|kv| kv.starts_with("SHEEPDOG_T1="))
            .collect();
        assert_eq!(t1, ["SHEEPDOG_T1=b"]);
        let base: Vec<_> = env
            .iter()
            .filter(|kv| kv.starts_with(&format!("{name}=")))
            .collect();
        assert_eq!(base, [&format!("{name}=changed")]);
        assert_eq!(env.len(), base_env().len() + 1);
    }

    #[test]
    fn pointers_end_with_null_and_point_at_each_string() {
        let mut s = Strings::default();
        s.push(&[b"a", b"=", b"1"], "x").unwrap();
        s.push(&[b"bc"], "x").unwrap();
        let p = s.pointers();
        assert_eq!(p.len(), 3);
        assert!(p[2].is_null());
        assert_eq!(p[0], s.bytes.as_ptr().cast());
        assert_eq!(p[1], s.bytes[4..].as_ptr().cast());
        assert_eq!(s.bytes, b"a=1\0bc\0");
    }

    #[test]
    fn a_program_that_has_execd_outlives_its_exec_deadline() {
        // The deadline's timer must go with the exec (a POSIX timer does,
        // `alarm` would not): a hook or run that started in time is then
        // stopped by its task's own timeout handling, gracefully, never by
        // a SIGKILL from this timer.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.3; exit 3"])
            .exec_deadline(Instant::now() + std::time::Duration::from_millis(50));
        let slot = AtomicI32::new(0);
        let child = Prepared::new(cmd).unwrap().spawn(&slot).unwrap();
        let pid = nix::unistd::Pid::from_raw(child.pid);
        // Our own child, waited for by pid only (no other test's).
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 3));
    }

    #[test]
    fn a_spawn_back_past_its_exec_deadline_fails_and_its_child_dies() {
        let mut cmd = Command::new("sleep");
        cmd.args(["30"]).exec_deadline(Instant::now());
        let slot = AtomicI32::new(0);
        let e = Prepared::new(cmd).unwrap().spawn(&slot).unwrap_err();
        assert!(is_exec_deadline(&e.error), "{}", e.error);
        assert!(e.error.to_string().contains("short of exec"), "{}", e.error);
        assert!(!is_exec_deadline(&io::Error::from_raw_os_error(
            libc::ETIMEDOUT
        )));
        let pid = nix::unistd::Pid::from_raw(e.pid.expect("a child was made"));
        // Our own child, waited for by pid only (no other test's): killed,
        // by its timer or by the failed spawn, never left to sleep.
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
            ),
            "{status:?}"
        );
    }

    #[test]
    fn nul_bytes_are_refused_with_a_reason() {
        let mut cmd = Command::new("echo");
        cmd.args(["a\0b"]);
        let e = Prepared::new(cmd).err().expect("must fail");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("NUL"), "{e}");
    }
}
