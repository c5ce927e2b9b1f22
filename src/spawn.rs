//! Building and starting one instance's child process: argv, environment,
//! working directory, credentials, stdio. The only place that turns a
//! `Process` definition into a `child::Command`.
//!
//! Invariants:
//! - Every child is started through `Reaper::spawn`, so it runs in its own
//!   process group with a clean signal state, and its pid is registered
//!   before it can be reaped.
//! - stdin is /dev/null; stdout/stderr follow `logging.stdout`/`stderr`:
//!   a pipe handed to the output thread (true), /dev/null (false), or
//!   sheepdog's own fd 1/2 (`inherit`: zero copies, no framing, no
//!   buffer); no other descriptor is inherited (all of ours are CLOEXEC).
//! - Nothing here waits: a child's exit arrives through the reaper.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::child::{var, Command, Stdio};
use crate::config::extra::{Logging, StreamMode};
use crate::config::Process;
use crate::logging::Stream;
use crate::output::Output;
use crate::reaper::{Exit, Reaper};

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

/// The command for `argv` run in `def`'s context: its environment plus
/// the instance identity, its working directory, its credentials. Used for
/// the process itself and for its exec health probes.
pub fn command(def: &Process, id: &Identity, argv: &[String]) -> io::Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.envs(&def.env)
        .env(var::PROCESS, &*id.process)
        .env(var::INSTANCE, &*id.instance)
        .env(var::INSTANCE_INDEX, id.index.to_string())
        .credentials(def.credentials.clone());
    if let Some(dir) = &def.working_dir {
        cmd.current_dir(dir);
    }
    Ok(cmd)
}

/// Start `def` as instance `id`, with `extra_env` and, if given, an exec
/// deadline (`child::Command::exec_deadline`); returns the child's pid (also
/// its process group id) and a channel that disconnects once its output
/// pipes have closed and their last lines are written. Its exit goes to
/// `owner`.
pub fn start(
    def: &Process,
    id: &Identity,
    extra_env: &[(&str, String)],
    exec_deadline: Option<Instant>,
    reaper: &Reaper,
    owner: &Sender<Exit>,
    output: &Output,
) -> io::Result<(i32, Receiver<()>)> {
    let logging = &def.extra.logging;
    let mut cmd = command(def, id, &def.command)?;
    cmd.envs(extra_env.iter().map(|(k, v)| (*k, v)));
    if let Some(at) = exec_deadline {
        cmd.exec_deadline(at);
    }
    cmd.stdout(stdio(logging.stdout))
        .stderr(stdio(logging.stderr));
    attached(reaper, cmd, owner, output, id, logging)
}

/// Spawn `cmd` through the reaper and hand whichever of its stdout/stderr
/// are pipes to the output thread under `id`. Its exit arrives through the
/// reaper, never here.
pub fn attached(
    reaper: &Reaper,
    cmd: Command,
    owner: &Sender<Exit>,
    output: &Output,
    id: &Identity,
    logging: &Logging,
) -> io::Result<(i32, Receiver<()>)> {
    let child = reaper.spawn(cmd, owner)?;
    let (done_tx, done_rx) = crossbeam_channel::bounded(0);
    if let Some(out) = child.stdout {
        output.attach(out, id, Stream::Stdout, logging, done_tx.clone());
    }
    if let Some(err) = child.stderr {
        output.attach(err, id, Stream::Stderr, logging, done_tx);
    }
    Ok((child.pid, done_rx))
}

fn stdio(mode: StreamMode) -> Stdio {
    match mode {
        StreamMode::Log => Stdio::Pipe,
        StreamMode::Discard => Stdio::Null,
        StreamMode::Inherit => Stdio::Inherit,
    }
}
