//! Control requests (from the HTTP API and `sheepdog ctl`): start, stop,
//! rolling restart, scale, signal, shutdown. Each is answered at once; long
//! operations are accepted and then driven by instance reports.
//!
//! Invariants:
//! - Requests never make the supervisor wait: a reply is sent before
//!   returning, and the reply channel is never blocked on (the reader holds
//!   a bounded wait on its side).
//! - Stop is idempotent; nothing here runs during shutdown except Ping,
//!   ReopenLogs and Shutdown itself.
//! - A rolling restart touches one instance at a time: stop it (its group
//!   drained), relaunch it, wait until it has started — and is healthy, when
//!   the process has a readiness check — then the next.

use std::collections::VecDeque;

use crate::config::ProcessType;
use crate::group::Whom;
use crate::instance::{Cmd, Outcome};
use crate::status::{Control, ControlReply, Request, ScaleBy};

use super::reload::Next;
use super::{Op, Phase, Proc, ProcPhase, Reason, Supervisor, PRE_START_RUNNING};

/// A stop of `p` (or a scale to 0) cancels the start it waited for (its
/// post_stop hooks', a scale's, a reload's): `answer` says so when it did.
fn cancel_start(p: &mut Proc, answer: String) -> String {
    if !p.cancel_start() {
        return answer;
    }
    log::info!(
        "{}: its pending start is cancelled; it stays stopped",
        p.name
    );
    answer + "; its pending start was cancelled"
}

impl Supervisor {
    pub(super) fn not_found(&self, name: &str) -> ControlReply {
        let names: Vec<&str> = self
            .procs
            .keys()
            .chain(self.jobs.keys())
            .map(String::as_str)
            .collect();
        ControlReply::NotFound(crate::status::no_process_named(name, &names))
    }

    pub(super) fn on_request(&mut self, req: Request) {
        // Answered once the file has been read, on a thread of its own.
        if let Control::Reload = req.control {
            self.request_reload(Some(req.reply));
            return;
        }
        if let Control::Trigger { name, wait: true } = &req.control {
            if matches!(self.phase, Phase::Running) {
                // Answered now (refused) or when the run ends.
                if let Some(reply) = self.trigger(&name.clone(), Some(&req.reply)) {
                    self.answer(req.reply, reply);
                }
                return;
            }
        }
        let reply = self.apply(req.control);
        self.answer(req.reply, reply);
    }

    fn apply(&mut self, control: Control) -> ControlReply {
        if let Control::Ping = control {
            return ControlReply::Done("pong".into());
        }
        if let Control::ReopenLogs = control {
            log::info!(event = "reopen_logs"; "reopening log files (requested)");
            self.shared.output.reopen();
            return ControlReply::Done("log files reopened".into());
        }
        if matches!(self.phase, Phase::ShuttingDown { .. }) {
            return match control {
                Control::Shutdown => ControlReply::Accepted("already shutting down".into()),
                _ => ControlReply::Conflict("sheepdog is shutting down".into()),
            };
        }
        match control {
            Control::Ping => ControlReply::Done("pong".into()),
            Control::ReopenLogs => ControlReply::Done("log files reopened".into()),
            // (`on_request` takes it first.)
            Control::Reload => ControlReply::Conflict("a reload is answered once the file is read".into()),
            Control::Shutdown => {
                self.begin_shutdown(Reason::Requested);
                ControlReply::Accepted("shutting down".into())
            }
            Control::Pause { name } => self.pause(&name, true),
            Control::Resume { name } => self.pause(&name, false),
            Control::Trigger { name, .. } => self
                .trigger(&name, None)
                .unwrap_or_else(|| ControlReply::Accepted(format!("{name}: run started"))),
            Control::Stop { name } if self.jobs.contains_key(&name) => self.stop_job_runs(&name),
            Control::Start { name }
            | Control::Restart { name }
            | Control::Scale { name, .. }
            | Control::ScaleBy { name, .. }
            | Control::Signal { name, .. }
                if self.jobs.contains_key(&name) =>
            {
                ControlReply::Conflict(format!(
                    "{name} is a scheduled job: it runs on its schedule; use trigger, stop (its runs), pause or resume"
                ))
            }
            Control::Start { name } => self.start(&name),
            Control::Stop { name } => self.stop(&name),
            Control::Restart { name } => self.restart(&name),
            Control::Scale { name, desired } => self.scale(&name, ScaleBy::To(desired)),
            Control::ScaleBy { name, delta } => self.scale(&name, ScaleBy::Delta(delta)),
            Control::Signal { name, signal, whom } => self.signal(&name, signal, whom),
        }
    }

    pub(super) fn start(&mut self, name: &str) -> ControlReply {
        let Some(p) = self.procs.get_mut(name) else {
            return self.not_found(name);
        };
        match p.phase {
            ProcPhase::Active | ProcPhase::Pending => {
                ControlReply::Done(format!("{name} is already started"))
            }
            ProcPhase::Stopping => {
                ControlReply::Conflict(format!("{name} is stopping; start it once it has stopped"))
            }
            // Nothing starts before them: they may be the migrations it needs.
            _ if self.pre_start_pending => ControlReply::Conflict(format!(
                "{name}: {PRE_START_RUNNING}; start it once they are done"
            )),
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished => {
                // A reload's step waits for its post_stop hooks, and
                // `take_next` decides the start: it must know of this one.
                match &mut p.next {
                    Some(Next::Remove { .. }) => {
                        return ControlReply::Conflict(format!(
                            "{name} is being removed: it is no longer in the configuration"
                        ))
                    }
                    Some(Next::Replace { start, .. }) => *start = true,
                    None => {}
                }
                if p.desired == 0 {
                    p.desired = p.def.scale.max(1);
                }
                log::info!("{name}: start requested");
                if p.def.kind == ProcessType::Oneshot {
                    let n = p.desired;
                    self.oneshots.mark(name, n, "manual");
                }
                self.launch_after_post_stop(name);
                ControlReply::Accepted(format!("starting {name}"))
            }
        }
    }

    fn stop(&mut self, name: &str) -> ControlReply {
        let Some(p) = self.procs.get_mut(name) else {
            return self.not_found(name);
        };
        match p.phase {
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished => {
                // Stopped on purpose now, not "failed to start after a reload".
                p.gave_up = None;
                // A start waiting for its post_stop hooks does not happen.
                ControlReply::Done(cancel_start(p, format!("{name} is already stopped")))
            }
            ProcPhase::Stopping => {
                // A scale's or a reload's restart: it stays stopped (with a
                // reload's new definition).
                ControlReply::Accepted(cancel_start(p, format!("{name} is already stopping")))
            }
            ProcPhase::Pending | ProcPhase::Active => {
                log::info!("{name}: stop requested");
                if p.phase == ProcPhase::Pending {
                    p.phase = ProcPhase::Stopped;
                    return ControlReply::Done(format!(
                        "{name} was not started yet; it will not start"
                    ));
                }
                p.cancel_start();
                if self.stop_active(name) {
                    // A reload's next step may have waited for it.
                    self.reload_step();
                    return ControlReply::Done(format!("{name} stopped"));
                }
                ControlReply::Accepted(format!("stopping {name}"))
            }
        }
    }

    fn restart(&mut self, name: &str) -> ControlReply {
        let Some(p) = self.procs.get_mut(name) else {
            return self.not_found(name);
        };
        match p.phase {
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished => return self.start(name),
            ProcPhase::Pending if self.pre_start_pending => {
                return ControlReply::Conflict(format!("{name}: {PRE_START_RUNNING}"))
            }
            ProcPhase::Pending => {
                return ControlReply::Conflict(format!("{name} is waiting for its dependencies"))
            }
            ProcPhase::Stopping => return ControlReply::Conflict(format!("{name} is stopping")),
            ProcPhase::Active => {}
        }
        if p.op.is_some() {
            return ControlReply::Conflict(format!("{name} is already being restarted"));
        }
        // Not those a scale-down is still stopping: they are going away.
        let queue: VecDeque<u32> = p.instances.range(..=p.desired).map(|(i, _)| *i).collect();
        log::info!(
            "{name}: rolling restart of {} instance(s) requested",
            queue.len()
        );
        p.op = Some(Op::Rolling {
            current: None,
            relaunched: false,
            queue,
        });
        self.roll_next(name);
        ControlReply::Accepted(format!("restarting {name}, one instance at a time"))
    }

    /// Why `name`'s declared ports forbid `desired` instances: the load
    /// check (which allowed for `scale`, or `max_scale`), against the
    /// others with what they may run now (a scale of theirs may have
    /// raised it).
    fn scale_ports(&self, name: &str, desired: u32) -> Option<String> {
        // (Not one a reload removes: it is going.)
        let going = |o: &&Proc| matches!(o.next, Some(Next::Remove { .. }));
        let others = self.procs.values().filter(|o| !going(o)).map(|o| {
            let n = o.def.max_scale.unwrap_or(o.def.scale).max(o.desired);
            (&*o.def, n)
        });
        let p = self.procs.get(name)?;
        crate::config::scale_ports(&p.def, desired, others, &self.cfg.global)
    }

    pub(super) fn scale(&mut self, name: &str, by: ScaleBy) -> ControlReply {
        let cap = self.cfg.global.extra.max_process_scale;
        let Some(p) = self.procs.get(name) else {
            return self.not_found(name);
        };
        if p.def.kind == ProcessType::Oneshot {
            return ControlReply::Conflict(format!(
                "{name} is a oneshot; oneshots cannot be scaled"
            ));
        }
        // A reload's replacement or removal would drop the count (it takes
        // the new definition's `scale`, or forgets the process).
        if p.op.is_some() || p.next.is_some() {
            return ControlReply::Conflict(format!(
                "{name} is being restarted, replaced or removed; scale it afterwards"
            ));
        }
        // A change counts from what the process wants now, not from a
        // snapshot a client read: deltas sent at once all count.
        let desired = match by {
            ScaleBy::To(n) => n,
            ScaleBy::Delta(d) => match p.desired.checked_add_signed(d) {
                Some(n) => n,
                None if d < 0 => {
                    return ControlReply::Bad(format!(
                        "delta: {d} would take {name} below 0 instances (it wants {} now)",
                        p.desired
                    ))
                }
                None => return ControlReply::Bad(format!("delta: {d} is too large")),
            },
        };
        if let Some(max) = p.def.max_scale {
            if desired > max {
                return ControlReply::Conflict(format!(
                    "{name}: {desired} is above its max_scale of {max}"
                ));
            }
        }
        if desired > cap {
            return ControlReply::Conflict(format!(
                "{name}: {desired} is above global.max_process_scale ({cap})"
            ));
        }
        if let Some(why) = self.scale_ports(name, desired) {
            return ControlReply::Conflict(format!("{name}: cannot scale to {desired}: {why}"));
        }
        let Some(p) = self.procs.get_mut(name) else {
            return self.not_found(name);
        };
        let from = p.desired;
        // Already so (and no stop to undo): nothing to do, as for a start
        // of a started process. A stopped or stopping process with the
        // same count is not: a scale above 0 starts it.
        let same = match p.phase {
            ProcPhase::Pending => true,
            ProcPhase::Active => {
                (1..=desired).all(|i| p.instances.contains_key(&i))
                    && p.instances.range(desired + 1..).all(|(_, i)| i.leaving)
            }
            _ => false,
        };
        if from == desired && same {
            return ControlReply::Done(format!(
                "{name} is already scaled to {desired}; nothing to do"
            ));
        }
        p.desired = desired;
        log::info!("{name}: scaling from {from} to {desired}");
        match p.phase {
            ProcPhase::Pending => {
                return ControlReply::Accepted(format!(
                    "{name} will run {desired} instance(s) when it starts"
                ))
            }
            // Consistent with scaling a stopped process, which starts it.
            ProcPhase::Stopping => {
                p.start_when_stopped = desired > 0;
                return ControlReply::Accepted(if desired > 0 {
                    format!(
                        "{name} is stopping; it will start with {desired} instance(s) once stopped"
                    )
                } else {
                    format!("{name} is stopping")
                });
            }
            ProcPhase::Held | ProcPhase::Stopped | ProcPhase::Finished => {
                if desired == 0 {
                    return ControlReply::Done(cancel_start(p, format!("{name} scaled to 0")));
                }
                self.launch_after_post_stop(name);
                return ControlReply::Accepted(format!(
                    "starting {name} with {desired} instance(s)"
                ));
            }
            ProcPhase::Active => {}
        }
        // Scale down: stop the highest indices; they are removed once done
        // (unless a scale-up brings them back first). Those already leaving
        // got their stop before.
        for (index, inst) in p.instances.range_mut(desired + 1..) {
            if !inst.leaving && inst.outcome.is_none() {
                log::info!("{name}-{index}: stopping (scale down)");
                inst.stop(&self.shared.reaper);
            }
            inst.leaving = true;
        }
        // Already-ended instances above the count go at once.
        p.instances
            .retain(|i, inst| *i <= desired || inst.outcome.is_none());
        if desired == 0 {
            p.phase = if p.all_done() {
                ProcPhase::Stopped
            } else {
                ProcPhase::Stopping
            };
            return ControlReply::Accepted(format!("scaling {name} to 0"));
        }
        let missing: Vec<u32> = (1..=desired)
            .filter(|i| !p.instances.contains_key(i))
            .collect();
        for index in missing {
            self.launch(name, index);
        }
        ControlReply::Accepted(format!("scaling {name} from {from} to {desired}"))
    }

    fn signal(&mut self, name: &str, signal: nix::sys::signal::Signal, whom: Whom) -> ControlReply {
        let Some(p) = self.procs.get(name) else {
            return self.not_found(name);
        };
        let live: Vec<_> = p.instances.values().filter(|i| i.pid.is_some()).collect();
        if live.is_empty() {
            return ControlReply::Conflict(format!("{name} has no running instance to signal"));
        }
        for i in &live {
            i.send(Cmd::Signal(signal, whom));
        }
        let only = match whom {
            Whom::Group => "",
            Whom::Main => " (main process only)",
        };
        log::info!(
            "{name}: sent {signal} to {} instance(s){only} on request",
            live.len()
        );
        ControlReply::Done(format!(
            "sent {signal} to {} instance(s) of {name}{only}",
            live.len()
        ))
    }

    /// Take the next instance of a rolling restart, or finish it.
    fn roll_next(&mut self, name: &str) {
        let Some(p) = self.procs.get_mut(name) else {
            return;
        };
        let Some(Op::Rolling {
            current,
            relaunched,
            queue,
        }) = &mut p.op
        else {
            return;
        };
        let Some(index) = queue.pop_front() else {
            log::info!("{name}: rolling restart complete");
            p.op = None;
            return;
        };
        *current = Some(index);
        *relaunched = false;
        match p.instances.get(&index) {
            Some(inst) if inst.outcome.is_none() => {
                log::info!("{name}-{index}: restarting (rolling)");
                inst.stop(&self.shared.reaper);
            }
            // Ended already (failed, exited): relaunch it straight away.
            _ => {
                self.relaunch(name, index);
            }
        }
    }

    /// Counted as a manual restart here, when it happens: a rolling restart
    /// cut short (a stop, a shutdown) restarts fewer than it queued.
    fn relaunch(&mut self, name: &str, index: u32) {
        if let Some(p) = self.procs.get_mut(name) {
            if let Some(Op::Rolling { relaunched, .. }) = p.op.as_mut() {
                *relaunched = true;
            }
            p.restarts.bump("manual");
            if let Some(inst) = p.instances.get_mut(&index) {
                inst.restart_count += 1;
            }
            // Its oneshot history's next run: "manual", not "startup".
            if p.def.kind == ProcessType::Oneshot {
                self.oneshots.mark(name, index, "manual");
            }
        }
        self.launch(name, index);
    }

    /// A rolling restart's instance has stopped: relaunch it. Returns true
    /// when the report belonged to the rolling restart. Not a critical
    /// process's instance that failed on its own (gave up) before the stop
    /// reached it: that failure shuts sheepdog down, as at any other time.
    pub(super) fn roll_on_done(&mut self, name: &str, index: u32) -> bool {
        let Some(p) = self.procs.get(name) else {
            return false;
        };
        let failed = p
            .instances
            .get(&index)
            .and_then(|i| i.outcome.as_ref())
            .is_some_and(Outcome::is_failure);
        if failed && p.def.critical && matches!(self.phase, Phase::Running) {
            return false;
        }
        match &p.op {
            Some(Op::Rolling {
                current: Some(c),
                relaunched: false,
                ..
            }) if *c == index => {
                self.relaunch(name, index);
                true
            }
            // The relaunched instance ended before it started: move on.
            Some(Op::Rolling {
                current: Some(c),
                relaunched: true,
                ..
            }) if *c == index => {
                self.roll_next(name);
                false
            }
            Some(Op::Rolling { .. }) | None => false,
        }
    }

    /// A relaunched instance has started: on to the next one, unless the
    /// process has a readiness check (then `roll_on_healthy` moves on).
    pub(super) fn roll_on_started(&mut self, name: &str, index: u32) {
        let checked = self
            .procs
            .get(name)
            .is_some_and(|p| p.def.has_readiness_check());
        if !checked {
            self.roll_on_ready(name, index);
        }
    }

    /// A relaunched instance of a process with a readiness check became
    /// healthy: on to the next one.
    pub(super) fn roll_on_healthy(&mut self, name: &str, index: u32) {
        self.roll_on_ready(name, index);
    }

    fn roll_on_ready(&mut self, name: &str, index: u32) {
        let Some(p) = self.procs.get(name) else {
            return;
        };
        if let Some(Op::Rolling {
            current: Some(c),
            relaunched: true,
            ..
        }) = &p.op
        {
            if *c == index {
                self.roll_next(name);
            }
        }
    }
}
