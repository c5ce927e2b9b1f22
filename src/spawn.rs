//! Building and starting one instance's child process: argv, environment,
//! working directory, credentials, stdio. The only place that turns a
//! `Process` definition into a `std::process::Command`.
//!
//! Invariants:
//! - Every child is started through `Reaper::spawn`, so it runs in its own
//!   process group with a clean signal state, and its pid is registered
//!   before it can be reaped.
//! - stdin is /dev/null; stdout/stderr are pipes handed to the output
//!   thread; no other descriptor is inherited (all of ours are CLOEXEC).
//! - The `Child` handle is dropped without waiting: its exit arrives through
//!   the reaper, never through `Child::wait`.

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Process;
use crate::logging::Stream;
use crate::output::Output;
use crate::reaper::{Exit, Reaper};
use crate::sys::ChildSetup;

/// Who a child is, for its environment and its log lines.
#[derive(Debug, Clone)]
pub struct Identity {
    pub process: Arc<str>,
    /// `<process>-<index>`
    pub instance: Arc<str>,
    /// 1-based.
    pub index: u32,
}

impl Identity {
    pub fn new(process: &str, index: u32) -> Identity {
        Identity {
            process: process.into(),
            instance: format!("{process}-{index}").into(),
            index,
        }
    }
}

/// Start `def` as instance `id`; returns the child's pid (also its process
/// group id). Its exit will be sent to `owner`.
pub fn start(
    def: &Process,
    id: &Identity,
    reaper: &Reaper,
    owner: &Sender<Exit>,
    output: &Output,
) -> io::Result<i32> {
    start_with(def, id, &[], reaper, owner, output)
}

/// `start` with extra environment variables (scheduled runs).
pub fn start_with(
    def: &Process,
    id: &Identity,
    extra_env: &[(&str, String)],
    reaper: &Reaper,
    owner: &Sender<Exit>,
    output: &Output,
) -> io::Result<i32> {
    let (program, args) = def
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&def.env)
        .env("SHEEPDOG_PROCESS", &*id.process)
        .env("SHEEPDOG_INSTANCE", &*id.instance)
        .env("SHEEPDOG_INSTANCE_INDEX", id.index.to_string())
        .envs(extra_env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &def.working_dir {
        cmd.current_dir(dir);
    }
    let setup = ChildSetup {
        credentials: def
            .credentials
            .as_ref()
            .map(|c| (c.uid, c.gid, c.groups.clone())),
        foreground_tty: false,
    };
    let mut child = reaper.spawn(&mut cmd, setup, owner)?;
    let pid = child.id() as i32;
    if let Some(out) = child.stdout.take() {
        output.attach(OwnedFd::from(out), id, Stream::Stdout);
    }
    if let Some(err) = child.stderr.take() {
        output.attach(OwnedFd::from(err), id, Stream::Stderr);
    }
    // Dropping `child` neither waits nor kills: the reaper owns its exit.
    drop(child);
    Ok(pid)
}
