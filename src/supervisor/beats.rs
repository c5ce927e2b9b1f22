//! Where heartbeats meet the supervisor: which process has one, what to
//! tell the heartbeat worker when a run starts or ends or a longrun with
//! `heartbeat.interval` becomes (un)healthy, and the ping counts metrics
//! show.
//!
//! Invariants:
//! - The supervisor never waits on the worker: every message is a
//!   `try_send`; a full queue drops the ping, logs it and counts it as a
//!   failure.
//! - `Alive` messages go only on a change (one per process per change),
//!   and only for longruns that have an interval: a config without one
//!   sends nothing and the worker never wakes for it.
//! - A run stopped by a shutdown or a stop request pings neither success
//!   nor failure: it did not end on its own.
//! - A scheduled run pings with the heartbeat of the definition it started
//!   with (each ping carries its settings): a reload that changes or
//!   removes it, or the job, does not move or drop the run's end ping.
//! - Workers that cannot be started (no task to spare) are tried again
//!   after `instance::shortage_backoff`, on the supervisor's deadline;
//!   messages meanwhile are held (`heartbeat::QUEUE` at most) and go to
//!   them once they run.
//! - Counts only grow (rendered as Prometheus counters) while their
//!   process has a heartbeat; a reload that removes it removes its counts.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::extra::Heartbeat;
use crate::config::{Config, ProcessType};
use crate::health::Health;
use crate::heartbeat::{self, Handle, Kind, Msg, Outcome};
use crate::output::buffer::LogStore;
use crate::reaper::ExitStatus;
use crate::sorted_map::SortedMap;
use crate::status::HeartbeatStats;

use super::{Phase, ProcPhase, Supervisor};

pub(super) struct Beats {
    configs: SortedMap<Arc<str>, Heartbeat>,
    handle: Option<Handle>,
    /// Workers a reload replaced, sending what they had queued
    /// (`heartbeat::FLUSH_GRACE` at most); waited for at shutdown too.
    retired: Vec<Handle>,
    /// Kept so `results` never disconnects, even if the worker is gone.
    results_tx: Sender<Outcome>,
    pub(super) results: Receiver<Outcome>,
    /// (sent, failed) per process with a heartbeat.
    counts: SortedMap<Arc<str>, (u64, u64)>,
    /// Longruns with an interval: whether the worker was last told they
    /// are alive.
    alive: SortedMap<Arc<str>, bool>,
    /// The workers could not be started (sheepdog out of tasks: EAGAIN):
    /// when to try again, the failures in a row, and their `after`.
    /// Messages meanwhile wait in `held` (`heartbeat::QUEUE` at most).
    retry: Option<(Instant, u32, Option<Receiver<()>>)>,
    held: Vec<Msg>,
}

/// Each enabled process's heartbeat in `cfg`.
fn configs(cfg: &Config) -> SortedMap<Arc<str>, Heartbeat> {
    SortedMap::from_iter(
        cfg.enabled()
            .filter_map(|p| Some((Arc::from(p.name.as_str()), p.extra.heartbeat.clone()?))),
    )
}

/// The longruns of `cfg` with a heartbeat interval, none yet told alive.
fn interval_longruns(cfg: &Config) -> SortedMap<Arc<str>, bool> {
    SortedMap::from_iter(
        cfg.enabled()
            .filter(|p| p.kind == ProcessType::Longrun && p.extra.schedule.is_none())
            .filter(|p| {
                p.extra
                    .heartbeat
                    .as_ref()
                    .is_some_and(|h| h.interval.is_some())
            })
            .map(|p| (Arc::from(p.name.as_str()), false)),
    )
}

impl Beats {
    pub(super) fn new(cfg: &Config) -> Beats {
        let configs = configs(cfg);
        let counts = SortedMap::from_iter(configs.keys().map(|k| (k.clone(), (0, 0))));
        let (results_tx, results) = crossbeam_channel::unbounded();
        Beats {
            configs,
            handle: None,
            retired: Vec::new(),
            results_tx,
            results,
            counts,
            alive: interval_longruns(cfg),
            retry: None,
            held: Vec::new(),
        }
    }

    /// A reload: take `cfg`'s heartbeats. When any was added, changed or
    /// removed, new workers take over at once; the old ones send what they
    /// had queued, with the settings it was queued under, and end. Counts
    /// of a process that stays go on; a removed one's leave the metrics.
    /// The new workers learn which longruns are alive at the next publish
    /// (so a healthy one's interval ping goes out at once).
    pub(super) fn reload(&mut self, cfg: &Config, store: &Arc<LogStore>) {
        let configs = configs(cfg);
        if configs == self.configs {
            return;
        }
        self.retired.retain(|h| !h.finished());
        if let Some(mut old) = self.handle.take() {
            old.stop();
            self.retired.push(old);
        }
        // The new workers hold their pings until the old ones are done, so
        // that a retry flushed by an old one cannot land after a newer ping.
        let after = self.retired.last().map(Handle::done);
        self.counts.retain(|p, _| configs.contains_key(p));
        for p in configs.keys() {
            self.counts.get_or_insert_with(p.clone(), Default::default);
        }
        self.configs = configs;
        self.alive = interval_longruns(cfg);
        // What waited for workers that never ran: the new ones take it.
        self.start(store.clone(), after);
    }

    /// Start the worker, when some process has a heartbeat, or after a
    /// reload that removed the last one (a run started before still sends
    /// its end ping with the old settings); it sends nothing before the
    /// workers it replaces (whose `Handle::done` is `after`) have ended.
    pub(super) fn start(&mut self, store: Arc<LogStore>, after: Option<Receiver<()>>) {
        if self.configs.is_empty() && after.is_none() {
            return;
        }
        let failed = self.retry.take().map(|(_, n, _)| n);
        match heartbeat::start(
            self.configs.clone(),
            store,
            self.results_tx.clone(),
            after.clone(),
        ) {
            Ok(h) => {
                for msg in std::mem::take(&mut self.held) {
                    let _ = h.try_send(msg);
                }
                self.handle = Some(h);
            }
            // sheepdog's shortage (a full pids cgroup): tried again as an
            // instance's thread is, said once.
            Err(e) => {
                let n = failed.map_or(0, |n| n.saturating_add(1));
                let delay = crate::instance::shortage_backoff(n);
                if failed.is_none() {
                    log::error!(
                        "unable to start the heartbeat thread: {e}; pings wait; trying again in {}",
                        crate::config::format_duration(delay)
                    );
                }
                self.retry = Some((Instant::now() + delay, n, after));
            }
        }
    }

    /// When to try starting the workers again.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry.as_ref().map(|(at, _, _)| *at)
    }

    /// Try starting the workers again if that is due; whether they run.
    pub(super) fn retry_due(&mut self, now: Instant, store: &Arc<LogStore>) -> bool {
        match &self.retry {
            Some((at, _, after)) if *at <= now => {
                let after = after.clone();
                self.start(store.clone(), after);
                self.handle.is_some()
            }
            _ => false,
        }
    }

    fn key(&self, process: &str) -> Arc<str> {
        self.configs
            .get_key_value(process)
            .map_or_else(|| process.into(), |(k, _)| k.clone())
    }

    fn send(&mut self, msg: Msg) -> bool {
        let Some(h) = &self.handle else {
            // Until the workers can be started.
            if self.retry.is_some() && self.held.len() < heartbeat::QUEUE {
                self.held.push(msg);
                return true;
            }
            return false;
        };
        match h.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(Msg::Ping { process, kind, .. })) => {
                log::warn!(
                    "{process}: heartbeat {} ping dropped: {} pings already queued",
                    kind.as_str(),
                    heartbeat::QUEUE
                );
                // Not for a heartbeat a reload removed: its counts are gone.
                if let Some(c) = self.counts.get_mut(&process) {
                    c.1 += 1;
                }
                false
            }
            Err(TrySendError::Full(Msg::Alive { .. }) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// A run of `process` began, under heartbeat `hb` (its definition's:
    /// the run's end pings with the same).
    pub(super) fn run_started(&mut self, process: &str, hb: Option<&Heartbeat>) {
        let Some(hb) = hb else { return };
        if hb.ping_start || hb.start_url.is_some() {
            self.send(Msg::Ping {
                process: self.key(process),
                kind: Kind::Start,
                detail: String::new(),
                instance: None,
                hb: Box::new(hb.clone()),
            });
        }
    }

    /// A run of `process` ended on its own (or never started: `error`);
    /// `hb` as for `run_started`.
    pub(super) fn run_ended(
        &mut self,
        process: &str,
        hb: Option<&Heartbeat>,
        instance: String,
        status: Option<ExitStatus>,
        timed_out: bool,
        error: Option<&str>,
    ) {
        let Some(hb) = hb else { return };
        let ok = !timed_out && error.is_none() && status.is_some_and(|s| s.success());
        let mut detail = Vec::new();
        if timed_out {
            detail.push("timed_out".to_string());
        }
        match status {
            Some(ExitStatus::Code(c)) => detail.push(format!("exit_code={c}")),
            Some(ExitStatus::Signal { signal, .. }) => detail.push(format!("signal={signal}")),
            None => {}
        }
        if let Some(e) = error {
            detail.push(format!("error={e}"));
        }
        self.send(Msg::Ping {
            process: self.key(process),
            kind: if ok { Kind::Success } else { Kind::Failure },
            detail: detail.join("\n"),
            instance: Some(instance),
            hb: Box::new(hb.clone()),
        });
    }

    pub(super) fn on_outcome(&mut self, o: Outcome) {
        // A retired worker's last ping for a process a reload removed.
        let Some(c) = self.counts.get_mut(&o.process) else {
            return;
        };
        if o.ok {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }

    pub(super) fn stats(&self) -> Vec<HeartbeatStats> {
        self.counts
            .iter()
            .map(|(p, (ok, failed))| HeartbeatStats {
                process: p.to_string(),
                success: *ok,
                failure: *failed,
            })
            .collect()
    }

    /// Shutdown: let the worker flush, and wait for it until `deadline`.
    pub(super) fn stop(&mut self) {
        for h in self.handle.iter_mut().chain(&mut self.retired) {
            h.stop();
        }
    }

    pub(super) fn wait(&mut self, deadline: Instant) {
        for h in self.handle.take().into_iter().chain(self.retired.drain(..)) {
            h.wait(deadline);
        }
    }
}

impl Supervisor {
    /// Tell the worker which longruns with an interval are now running and
    /// healthy (only what changed).
    pub(super) fn update_alive(&mut self) {
        if self.beats.alive.is_empty() {
            return;
        }
        let running = matches!(self.phase, Phase::Running);
        let mut changed = Vec::new();
        for (name, was) in self.beats.alive.iter() {
            let now = running
                && self.procs.get(&**name).is_some_and(|p| {
                    p.phase == ProcPhase::Active
                        && p.instances.values().any(|i| {
                            i.state == "running"
                                && i.pid.is_some()
                                && matches!(i.health, None | Some(Health::Healthy))
                        })
                });
            if now != *was {
                changed.push((name.clone(), now));
            }
        }
        for (name, alive) in changed {
            if self.beats.send(Msg::Alive {
                process: name.clone(),
                alive,
            }) {
                log::debug!(
                    "{name}: heartbeat interval pings {}",
                    if alive { "on" } else { "off" }
                );
                self.beats.alive.insert(name, alive);
            }
        }
    }
}
