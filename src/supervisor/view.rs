//! Building the `Snapshot` readers see from the supervisor's state.
//!
//! Invariant: read-only over supervisor state (it writes only `spare`,
//! the buffers it recycles); called by the supervisor thread after every
//! change, so a snapshot is never older than the last event handled. Control replies wait in an outbox until the snapshot
//! that reflects them is published (read-your-writes for API clients).

use std::time::SystemTime;

use crossbeam_channel::Sender;

use crate::config::extra::ReadinessMode;
use crate::config::ProcessType;
use crate::health::Health;
use crate::instance::Outcome;
use crate::status::{
    unix_seconds, ControlReply, InstanceStatus, LastExit, NotReady, ProcessStatus, Snapshot,
};

use super::reload::Next;
use super::{Inst, Op, Phase, Proc, ProcPhase, Supervisor};

impl Supervisor {
    pub(super) fn publish(&mut self) {
        self.update_alive();
        let snapshot = self.snapshot();
        self.update_readiness_file();
        if let Some(old) = self.published.publish(snapshot) {
            self.spare = old.processes;
        }
        for (tx, reply) in self.outbox.drain(..) {
            // The reader may have given up waiting; that is its business.
            let _ = tx.send(reply);
        }
    }

    /// Answer a request once the state the answer describes is published.
    pub(super) fn answer(&mut self, tx: Sender<ControlReply>, reply: ControlReply) {
        self.outbox.push((tx, reply));
    }

    fn snapshot(&mut self) -> Snapshot {
        let now = SystemTime::now();
        // Refill the last snapshot's buffers when no reader kept it: a
        // probe result republishes every process, and with musl's
        // allocator each fresh buffer of this size is an mmap and each
        // free a munmap with a TLB shootdown on every CPU.
        let mut processes = std::mem::take(&mut self.spare);
        processes.truncate(self.procs.len());
        // Read here, where every snapshot is made: a stop or a resume
        // wakes this thread (`run`), so none is missed.
        let paused = self.shared.reaper.paused();
        for (k, p) in self.procs.values().enumerate() {
            match processes.get_mut(k) {
                Some(dst) => fill_process_status(dst, p, now, &paused),
                None => {
                    let mut st = ProcessStatus::default();
                    fill_process_status(&mut st, p, now, &paused);
                    processes.push(st);
                }
            }
        }
        merge_by_name(&mut processes, self.job_statuses());
        let not_ready = self.not_ready(&[], true);
        Snapshot {
            version: crate::VERSION,
            pid: std::process::id(),
            started_at: unix_seconds(self.started_at),
            phase: match self.phase {
                Phase::Running => "running",
                Phase::ShuttingDown { .. } => "stopping",
            },
            ready: not_ready.is_empty(),
            not_ready,
            orphans_reaped: self.shared.reaper.orphans_reaped(),
            shutdown_began: match self.phase {
                Phase::ShuttingDown { started, .. } => {
                    Some(unix_seconds(now) - started.elapsed().as_secs_f64())
                }
                Phase::Running => None,
            },
            processes,
            hooks: self.hook_stats.values().cloned().collect(),
            oneshot_history: self.oneshots.snapshot(now),
            heartbeats: self.beats.stats(),
            reloads: self.reloads.counts,
        }
    }

    /// Why the container is not ready (empty = ready): every enabled
    /// longrun (of `only`, when given) runs all its instances, those with a
    /// readiness check are healthy (when `require_health`), and none failed;
    /// nor did a oneshot (a failed migration that nothing depends on).
    /// The health check's error text goes in `detail`, apart, since it may
    /// hold secrets (probe output, URLs with queries).
    pub(super) fn not_ready(&self, only: &[String], require_health: bool) -> Vec<NotReady> {
        let mut why = Vec::new();
        let stopping = matches!(self.phase, Phase::ShuttingDown { .. });
        // Every process waits for the hooks, with or without dependencies:
        // one entry says so, instead of blaming each one's dependencies.
        if stopping || self.pre_start_pending {
            why.push(NotReady::new(
                if stopping {
                    "sheepdog is shutting down"
                } else {
                    super::PRE_START_RUNNING
                }
                .to_string(),
            ));
        }
        let tracked = self
            .procs
            .values()
            .filter(|p| p.def.kind == ProcessType::Longrun && p.def.extra.schedule.is_none())
            .filter(|p| only.is_empty() || only.contains(&p.def.name));
        let failed_oneshots = self
            .procs
            .values()
            .filter(|p| p.def.kind == ProcessType::Oneshot)
            .filter(|p| only.is_empty() || only.contains(&p.def.name))
            .flat_map(|p| p.instances.values().filter(|i| i.state == "failed"));
        why.extend(failed_oneshots.map(|i| NotReady::new(format!("{}: failed", i.id))));
        for p in tracked {
            let name = &p.def.name;
            match p.phase {
                ProcPhase::Pending if self.pre_start_pending => {}
                ProcPhase::Pending => why.push(NotReady::new(format!(
                    "{name}: waiting for its dependencies"
                ))),
                ProcPhase::Active | ProcPhase::Finished => {
                    for (i, inst) in &p.instances {
                        match (inst.state, inst.health) {
                            ("running", Some(Health::Healthy) | None) => {}
                            ("running", Some(h))
                                if require_health && p.def.has_readiness_check() =>
                            {
                                why.push(NotReady {
                                    what: format!("{name}-{i}: {}", h.as_str()),
                                    detail: inst.health_error.clone(),
                                });
                            }
                            ("running", Some(_)) => {}
                            (state, _) => why.push(NotReady::new(format!("{name}-{i}: {state}"))),
                        }
                    }
                }
                // Stopping to come back with a new definition (a reload):
                // draining, then down (its post_stop hooks running); it
                // does not serve.
                ProcPhase::Stopping | ProcPhase::Stopped
                    if matches!(p.next, Some(Next::Replace { start: true, .. })) =>
                {
                    why.push(NotReady::new(format!(
                        "{name}: being restarted with its new definition"
                    )));
                }
                // It was to run, but a reload's dependency never came.
                ProcPhase::Stopped if p.gave_up.is_some() => why.push(NotReady {
                    what: format!("{name}: not started after a reload"),
                    detail: p.gave_up.clone(),
                }),
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
        let failed = self.ready_file_retry.take();
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
            crate::safe_open::write_atomically(&r.path, content.as_bytes())
        } else {
            match crate::safe_open::remove(&r.path) {
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
                self.ready_file_error = None;
            }
            // Tried again at every publish (its directory may appear) and
            // after a backoff, but said once: a crash loop publishes many
            // times a second.
            Err(e) => {
                let n = failed.map_or(0, |(_, n)| n.saturating_add(1));
                let at = std::time::Instant::now() + crate::instance::shortage_backoff(n);
                self.ready_file_retry = Some((at, n));
                let e = e.to_string();
                if self.ready_file_error.as_ref() != Some(&e) {
                    log::warn!(
                        "unable to update readiness file {}: {e}; trying again, quietly",
                        r.path.display()
                    );
                    self.ready_file_error = Some(e);
                }
            }
        }
    }
}

/// Merge `jobs` into `processes`, each in name order (the keys of sorted
/// maps): from the back, into slots appended for the jobs. Not a sort,
/// which is 3 KiB of code for this type.
fn merge_by_name(processes: &mut Vec<ProcessStatus>, mut jobs: Vec<ProcessStatus>) {
    let mut i = processes.len();
    processes.resize_with(i + jobs.len(), ProcessStatus::default);
    let mut k = processes.len();
    while let Some(j) = jobs.pop() {
        while i > 0 && processes[i - 1].name > j.name {
            i -= 1;
            k -= 1;
            processes.swap(i, k);
        }
        k -= 1;
        processes[k] = j;
    }
}

/// Overwrite `dst` with `p`'s state, keeping `dst`'s instance buffer.
/// The exhaustive destructuring makes a new field a compile error here, so
/// a recycled status can never carry a stale value. `paused`: the pids
/// stopped by a signal (`Reaper::paused`).
fn fill_process_status(dst: &mut ProcessStatus, p: &Proc, now: SystemTime, paused: &[i32]) {
    let ProcessStatus {
        name,
        kind,
        state,
        desired_scale,
        current_scale,
        max_scale,
        critical,
        restart,
        operation,
        error,
        restarts,
        instances,
        schedule,
    } = dst;
    *name = p.name.clone();
    *kind = match p.def.kind {
        ProcessType::Longrun => "longrun",
        ProcessType::Oneshot => "oneshot",
    };
    *state = match p.phase {
        ProcPhase::Pending => "pending",
        ProcPhase::Held => "held",
        ProcPhase::Active => "running",
        ProcPhase::Stopping => "stopping",
        ProcPhase::Stopped => "stopped",
        // Down because an instance failed (it gave up restarting, or a
        // oneshot failed), not done: /metrics keeps its desired scale, so
        // the scale alerts fire for it.
        ProcPhase::Finished
            if p.instances
                .values()
                .any(|i| i.outcome.as_ref().is_some_and(Outcome::is_failure)) =>
        {
            "failed"
        }
        ProcPhase::Finished => "finished",
    };
    *desired_scale = p.desired;
    *current_scale = p.instances.values().filter(|i| i.pid.is_some()).count() as u32;
    *max_scale = p.def.max_scale;
    *critical = p.def.critical;
    *restart = crate::instance::policy_name(p.def.restart);
    *operation = match (&p.op, &p.next) {
        (Some(Op::Rolling { .. }), _) => Some("restarting"),
        (None, Some(Next::Replace { .. })) => Some("replacing"),
        (None, Some(Next::Remove { .. })) => Some("removing"),
        // Asked to start: it waits for its stop to end, or for its
        // post_stop hooks (`launch_after_post_stop`).
        (None, None) if p.start_when_stopped => Some("starting"),
        (None, None) => None,
    };
    error.clone_from(&p.gave_up);
    restarts.clone_from(&p.restarts);
    instances.clear();
    instances.extend(
        p.instances
            .iter()
            .map(|(i, inst)| instance_status(*i, inst, now, paused)),
    );
    *schedule = None;
}

fn instance_status(index: u32, inst: &Inst, now: SystemTime, paused: &[i32]) -> InstanceStatus {
    InstanceStatus {
        id: inst.id.clone(),
        index,
        state: inst.state,
        pid: inst.pid,
        paused: inst.pid.is_some_and(|p| paused.contains(&p)),
        started_at: inst.started_at.map(unix_seconds),
        uptime_seconds: inst
            .started_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs_f64()),
        restart_count: inst.restart_count,
        // An instance that has ended is not probed any more: its last
        // health would be stale ("healthy" beside "stopped"). One whose
        // child is gone, to be restarted, has not passed since (a crash
        // in backoff is not "healthy"; "unhealthy" still says why).
        health: match (&inst.outcome, inst.pid, inst.health) {
            (Some(_), ..) => "unknown",
            (None, None, Some(Health::Healthy)) => "starting",
            (None, _, h) => h.map_or("unknown", Health::as_str),
        },
        health_error: inst.health_error.clone(),
        last_exit: inst.last_exit.map(LastExit::from),
        backoff_until: inst.backoff_until.map(unix_seconds),
        error: inst.error.clone(),
        health_checks_ok: inst.probes.ok,
        health_checks_failed: inst.probes.failed,
        health_check_seconds_sum: inst.probes.seconds_sum,
        health_check_last_seconds: inst.probes.last_seconds,
        health_check_buckets: inst.probes.buckets,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plan::testutil::process;
    use crate::status::ScheduleStatus;

    #[test]
    fn jobs_merge_into_processes_in_name_order() {
        let st = |n: &str| ProcessStatus {
            name: n.into(),
            ..ProcessStatus::default()
        };
        let names = |v: &[ProcessStatus]| v.iter().map(|p| p.name.to_string()).collect::<Vec<_>>();
        for (procs, jobs) in [
            (&["b", "d", "f"][..], &["a", "c", "e", "g"][..]),
            (&["x", "y"], &["a", "b"]),
            (&["a", "b"], &["x", "y"]),
            (&[], &["a", "b"]),
            (&["a", "b"], &[]),
            (&["a", "a-1", "b"], &["B", "a-", "a0"]),
        ] {
            let mut out: Vec<_> = procs.iter().map(|n| st(n)).collect();
            merge_by_name(&mut out, jobs.iter().map(|n| st(n)).collect());
            let mut want: Vec<String> = procs.iter().chain(jobs).map(|n| n.to_string()).collect();
            want.sort();
            assert_eq!(names(&out), want, "{procs:?} + {jobs:?}");
        }
    }

    fn proc_with(name: &str, instances: &[(u32, &'static str, Option<i32>)]) -> Proc {
        let mut p = Proc::new(process(name), ProcPhase::Active);
        p.desired = instances.len() as u32;
        p.pending_since = None;
        for &(i, state, pid) in instances {
            let mut inst = Inst::new(Arc::from(format!("{name}-{i}")), 0);
            inst.state = state;
            inst.pid = pid;
            p.instances.insert(i, inst);
        }
        p
    }

    #[test]
    fn an_instance_whose_child_crashed_is_not_healthy() {
        // Healthy, then crashed: waiting in backoff, or ended for good.
        let mut p = proc_with("web", &[(1, "backoff", None), (2, "running", Some(7))]);
        for inst in p.instances.values_mut() {
            inst.health = Some(Health::Healthy);
        }
        let now = SystemTime::now();
        let health = |i| {
            p.instances
                .get(&i)
                .map(|inst| instance_status(i, inst, now, &[]).health)
        };
        assert_eq!(health(1), Some("starting"));
        assert_eq!(health(2), Some("healthy"));
    }

    #[test]
    fn a_recycled_status_keeps_nothing_of_what_it_held() {
        // A buffer that last held a scheduled job with three instances and
        // restarts, refilled with a plain process of one instance.
        let mut dst = ProcessStatus {
            name: Arc::from("old-job"),
            kind: "scheduled",
            state: "paused",
            desired_scale: 9,
            current_scale: 3,
            max_scale: Some(9),
            critical: true,
            restart: "never",
            operation: Some("restarting"),
            error: Some("gave up".into()),
            restarts: {
                let mut c = crate::status::Counts::default();
                c.bump("exit");
                c
            },
            instances: vec![InstanceStatus::default(); 3],
            schedule: Some(ScheduleStatus::default()),
        };
        let p = proc_with("web", &[(1, "running", Some(42))]);
        fill_process_status(&mut dst, &p, SystemTime::now(), &[]);
        assert_eq!(&*dst.name, "web");
        assert_eq!(
            (dst.kind, dst.state, dst.restart),
            ("longrun", "running", "always")
        );
        assert_eq!((dst.desired_scale, dst.current_scale), (1, 1));
        assert_eq!(
            (dst.max_scale, dst.critical, dst.operation),
            (None, false, None)
        );
        assert!(
            dst.restarts == Default::default() && dst.schedule.is_none() && dst.error.is_none()
        );
        assert_eq!(dst.instances.len(), 1);
        assert_eq!(
            (&*dst.instances[0].id, dst.instances[0].pid),
            ("web-1", Some(42))
        );
    }
}
