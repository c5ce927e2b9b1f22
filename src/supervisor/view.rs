//! Building the `Snapshot` readers see from the supervisor's state.
//!
//! Invariant: read-only over supervisor state; called by the supervisor
//! thread after every change, so a snapshot is never older than the last
//! event handled.

use std::time::SystemTime;

use crate::config::{ProcessType, RestartPolicy};
use crate::reaper::ExitStatus;
use crate::status::{unix_seconds, InstanceStatus, LastExit, ProcessStatus, Snapshot};

use super::{Inst, Op, Phase, Proc, ProcPhase, Supervisor};

impl Supervisor {
    pub(super) fn publish(&self) {
        self.published.publish(self.snapshot());
    }

    fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let processes: Vec<ProcessStatus> = self
            .procs
            .values()
            .map(|p| process_status(p, now))
            .collect();
        let mut not_ready = Vec::new();
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            not_ready.push("sheepdog is shutting down".to_string());
        }
        for p in self
            .procs
            .values()
            .filter(|p| p.def.kind == ProcessType::Longrun)
        {
            match p.phase {
                ProcPhase::Pending => {
                    not_ready.push(format!("{}: waiting for its dependencies", p.def.name))
                }
                ProcPhase::Active => {
                    for (i, inst) in &p.instances {
                        match inst.state {
                            "running" => {}
                            "failed" => not_ready.push(format!("{}-{i}: failed", p.def.name)),
                            other => not_ready.push(format!("{}-{i}: {other}", p.def.name)),
                        }
                    }
                }
                ProcPhase::Held
                | ProcPhase::Stopping
                | ProcPhase::Stopped
                | ProcPhase::Finished => {}
            }
        }
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
        health: "unknown".into(),
        health_error: None,
        last_exit: inst.last_exit.map(|e| match e {
            ExitStatus::Code(c) => LastExit {
                code: Some(c),
                signal: None,
            },
            ExitStatus::Signal { signal, .. } => LastExit {
                code: None,
                signal: Some(signal),
            },
        }),
        backoff_until: inst.backoff_until.map(unix_seconds),
        error: inst.error.clone(),
    }
}
