//! Building the `Snapshot` readers see from the supervisor's state.
//!
//! Invariant: read-only over supervisor state; called by the supervisor
//! thread after every change, so a snapshot is never older than the last
//! event handled. Control replies wait in an outbox until the snapshot
//! that reflects them is published (read-your-writes for API clients).

use std::time::SystemTime;

use crossbeam_channel::Sender;

use crate::config::extra::ReadinessMode;
use crate::config::{ProcessType, RestartPolicy};
use crate::health::Health;
use crate::status::{
    unix_seconds, ControlReply, InstanceStatus, LastExit, ProcessStatus, Snapshot,
};

use super::{Inst, Op, Phase, Proc, ProcPhase, Supervisor};

impl Supervisor {
    pub(super) fn publish(&mut self) {
        self.update_alive();
        let snapshot = self.snapshot();
        self.update_readiness_file();
        self.published.publish(snapshot);
        for (tx, reply) in self.outbox.drain(..) {
            // The reader may have given up waiting; that is its business.
            let _ = tx.send(reply);
        }
    }

    /// Answer a request once the state the answer describes is published.
    pub(super) fn answer(&mut self, tx: Sender<ControlReply>, reply: ControlReply) {
        self.outbox.push((tx, reply));
    }

    fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let mut processes: Vec<ProcessStatus> = self
            .procs
            .values()
            .map(|p| process_status(p, now))
            .collect();
        processes.extend(self.job_statuses());
        processes.sort_by(|a, b| a.name.cmp(&b.name));
        let not_ready = self.not_ready(&[], true);
        Snapshot {
            version: crate::VERSION.to_string(),
            pid: std::process::id(),
            started_at: unix_seconds(self.started_at),
            phase: match self.phase {
                Phase::Running => "running",
                Phase::ShuttingDown { .. } => "stopping",
            }
            .to_string(),
            ready: not_ready.is_empty(),
            not_ready,
            orphans_reaped: self.shared.reaper.orphans_reaped(),
            shutdown_seconds: self.shutdown_took.map(|d| d.as_secs_f64()),
            processes,
            hooks: self.hook_stats.values().cloned().collect(),
            oneshot_history: self.oneshots.snapshot(now),
            heartbeats: self.beats.stats(),
        }
    }

    /// Why the container is not ready (empty = ready): every enabled
    /// longrun (of `only`, when given) runs all its instances, those with a
    /// readiness check are healthy (when `require_health`), and none failed.
    pub(super) fn not_ready(&self, only: &[String], require_health: bool) -> Vec<String> {
        let mut why = Vec::new();
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            why.push("sheepdog is shutting down".to_string());
        }
        let tracked = self
            .procs
            .values()
            .filter(|p| p.def.kind == ProcessType::Longrun && p.def.extra.schedule.is_none())
            .filter(|p| only.is_empty() || only.contains(&p.def.name));
        for p in tracked {
            let name = &p.def.name;
            match p.phase {
                ProcPhase::Pending => why.push(format!("{name}: waiting for its dependencies")),
                ProcPhase::Active | ProcPhase::Finished => {
                    for (i, inst) in &p.instances {
                        match (inst.state, inst.health) {
                            ("running", Some(Health::Healthy) | None) => {}
                            ("running", Some(h))
                                if require_health && p.def.has_readiness_check() =>
                            {
                                let detail = inst
                                    .health_error
                                    .as_deref()
                                    .map_or(String::new(), |e| format!(": {e}"));
                                why.push(format!("{name}-{i}: {}{detail}", h.as_str()));
                            }
                            ("running", Some(_)) => {}
                            (state, _) => why.push(format!("{name}-{i}: {state}")),
                        }
                    }
                }
                ProcPhase::Held | ProcPhase::Stopping | ProcPhase::Stopped => {}
            }
        }
        why
    }

    /// `global.readiness_file`: present exactly while ready (and, when
    /// present, always complete: it is renamed into place).
    fn update_readiness_file(&mut self) {
        let Some(r) = &self.cfg.global.extra.readiness else {
            return;
        };
        let ready = self
            .not_ready(&r.processes, r.mode == ReadinessMode::AllHealthy)
            .is_empty()
            && matches!(self.phase, Phase::Running);
        if self.ready_file == Some(ready) {
            return;
        }
        let result = if ready {
            let content = r.content.clone().unwrap_or_else(|| {
                format!(
                    "ready\ntimestamp={}\n",
                    unix_seconds(SystemTime::now()) as u64
                )
            });
            write_atomically(&r.path, content.as_bytes())
        } else {
            match std::fs::remove_file(&r.path) {
                // Nothing to remove (first publish): nothing to say either.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.ready_file = Some(false);
                    return;
                }
                other => other,
            }
        };
        match result {
            Ok(()) => {
                log::info!(
                    "readiness file {}: {}",
                    r.path.display(),
                    if ready { "written" } else { "removed" }
                );
                self.ready_file = Some(ready);
            }
            Err(e) => log::warn!("unable to update readiness file {}: {e}", r.path.display()),
        }
    }
}

fn process_status(p: &Proc, now: SystemTime) -> ProcessStatus {
    ProcessStatus {
        name: p.def.name.clone(),
        kind: match p.def.kind {
            ProcessType::Longrun => "longrun",
            ProcessType::Oneshot => "oneshot",
        }
        .into(),
        state: match p.phase {
            ProcPhase::Pending => "pending",
            ProcPhase::Held => "held",
            ProcPhase::Active => "running",
            ProcPhase::Stopping => "stopping",
            ProcPhase::Stopped => "stopped",
            ProcPhase::Finished => "finished",
        }
        .into(),
        desired_scale: p.desired,
        current_scale: p.instances.values().filter(|i| i.pid.is_some()).count() as u32,
        max_scale: p.def.max_scale,
        critical: p.def.critical,
        restart: match p.def.restart {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
        .into(),
        operation: p.op.as_ref().map(|op| match op {
            Op::Rolling { .. } => "restarting".to_string(),
        }),
        restarts: p.restarts.clone(),
        instances: p
            .instances
            .iter()
            .map(|(i, inst)| instance_status(&p.def.name, *i, inst, now))
            .collect(),
        schedule: None,
    }
}

fn instance_status(name: &str, index: u32, inst: &Inst, now: SystemTime) -> InstanceStatus {
    InstanceStatus {
        id: format!("{name}-{index}"),
        index,
        state: inst.state.into(),
        pid: inst.pid,
        started_at: inst.started_at.map(unix_seconds),
        uptime_seconds: inst
            .started_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs_f64()),
        restart_count: inst.restart_count,
        health: inst.health.map_or("unknown", Health::as_str).into(),
        health_error: inst.health_error.clone(),
        last_exit: inst.last_exit.map(LastExit::from),
        backoff_until: inst.backoff_until.map(unix_seconds),
        error: inst.error.clone(),
        health_checks_ok: inst.probes.ok,
        health_checks_failed: inst.probes.failed,
        health_check_seconds_sum: inst.probes.seconds_sum,
        health_check_last_seconds: inst.probes.last_seconds,
        health_check_buckets: inst.probes.buckets.clone(),
    }
}

/// Write `path` so readers see either no file or the whole content.
fn write_atomically(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}
