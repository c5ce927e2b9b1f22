//! The dependency plan: start levels, stop order and the shutdown budget,
//! computed from a validated `Config`. Pure data; no I/O.
//!
//! What it does: a layered Kahn topological sort over the *enabled,
//! unscheduled* processes. Level 0 holds the processes without
//! dependencies; a process sits in level `max(level of its dependencies) +
//! 1`. Processes in one level do not depend on each other, so the
//! supervisor may start them in parallel. Stopping follows the graph, not
//! the levels: the supervisor signals a process as soon as every process
//! that depends on it has stopped (`supervisor::try_stop_ready`), so the
//! budget is the slowest chain of `shutdown.timeout`s along dependencies.
//! Scheduled jobs (`schedule`) are never supervised as processes: they have
//! runs, not instances, nothing may depend on them, and their runs are told
//! to stop when the shutdown begins. They are listed in `jobs`, outside the
//! graph.
//!
//! What it does not do: readiness, conditions (`depends_on` conditions are
//! the supervisor's business) or any waiting; disabled processes are absent.
//! The budget counts the stop hooks at their timeouts (`budget`).
//!
//! Invariants:
//! - only enabled, unscheduled processes appear, each exactly once across
//!   `levels`; enabled scheduled jobs appear only in `jobs` (sorted);
//! - every level is sorted by name (deterministic tie-break);
//! - a process's dependencies are all in strictly earlier levels, so its
//!   dependents are all in strictly earlier *stop* levels;
//! - `deps` and `dependents` have an entry (maybe empty) for every planned
//!   process, each list sorted and free of duplicates, and never name a job
//!   (a job's own `depends_on` gates its runs and does not hold back a stop);
//! - a cycle is a `ConfigError` whose problem line prints the cycle
//!   (`dependency cycle: a → b → a`, "→" read as "depends on"), one line per
//!   strongly connected knot, each starting at its smallest name; a
//!   dependency on a missing, disabled or scheduled process is an error,
//!   never a panic;
//! - the budget's `total` is the sum of its `critical_path` timeouts and
//!   the largest `stopped_by`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::sorted_map::SortedMap;
use std::time::Duration;

use crate::btree;
use crate::config::{process_key, Config, ConfigError, Process};

/// Start and stop order for the enabled processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Start order: level 0 has no dependencies; each level sorted by name.
    pub levels: Vec<Vec<String>>,
    /// process → the enabled processes it depends on (sorted).
    pub deps: SortedMap<String, Vec<String>>,
    /// process → the enabled processes that depend on it (sorted).
    pub dependents: SortedMap<String, Vec<String>>,
    /// The enabled scheduled jobs, sorted; in no level.
    pub jobs: Vec<String>,
    /// process → the jobs that depend on it (sorted): it is stopped only
    /// once their runs have ended.
    pub job_dependents: SortedMap<String, Vec<String>>,
}

/// The worst-case length of an orderly shutdown, counted from its start:
/// `shutdown.timeout`s and the stop hooks that hold stops back (`budget`),
/// all bounded by the same global deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Per stop level (in stop order): the longest stop in it (pre_stop
    /// hooks and `shutdown.timeout`).
    /// For reading only: levels are not waited for as a whole, so these are
    /// not added up.
    pub per_level: Vec<Duration>,
    /// Every planned process and scheduled job → when it has stopped at the
    /// latest: its own `shutdown.timeout` after the slowest of its dependents.
    pub stopped_by: SortedMap<String, Duration>,
    /// What `total` is made of, each with its `shutdown.timeout`: the
    /// slowest dependency chain in stop order (each entry is a dependency of
    /// the one before it), or one scheduled job when its runs take longer.
    /// Empty when nothing is planned.
    pub critical_path: Vec<(String, Duration)>,
    /// The largest `stopped_by`.
    pub total: Duration,
    /// `global.shutdown_timeout`.
    pub limit: Duration,
}

impl Budget {
    /// True when an orderly stop may outlast `global.shutdown_timeout`, so
    /// processes still running at the global deadline would be killed.
    pub fn exceeds_limit(&self) -> bool {
        self.total > self.limit
    }
}

impl Plan {
    /// Build the plan, or fail naming every dependency cycle (and any
    /// dependency on a process that is not enabled, or is a scheduled job).
    pub fn build(config: &Config) -> Result<Plan, ConfigError> {
        let mut problems = Vec::new();

        // The graph over enabled, unscheduled processes: name → sorted,
        // deduplicated deps. A job's deps are checked, then left out.
        let mut deps: SortedMap<String, Vec<String>> = SortedMap::default();
        let mut jobs = Vec::new();
        let mut job_dependents: SortedMap<String, Vec<String>> = SortedMap::default();
        for p in config.enabled() {
            let mine = checked_deps(config, p, &mut problems);
            if p.extra.schedule.is_some() {
                jobs.push(p.name.clone());
                for d in mine {
                    job_dependents
                        .get_or_insert_with(d, Vec::new)
                        .push(p.name.clone());
                }
            } else {
                deps.insert(p.name.clone(), mine);
            }
        }

        let mut dependents: SortedMap<String, Vec<String>> =
            deps.keys().map(|k| (k.clone(), Vec::new())).collect();
        for (name, ds) in &deps {
            for d in ds {
                if let Some(list) = dependents.get_mut(d) {
                    list.push(name.clone());
                }
            }
        }
        // `deps` iterates in name order, so each list was filled sorted.

        let (levels, pending) = layers(&deps, &dependents);
        if !pending.is_empty() {
            let cycles = find_cycles(&deps, &pending);
            for cycle in &cycles {
                problems.push(format!("dependency cycle: {}", cycle.join(" → ")));
            }
            if cycles.is_empty() {
                // Unreachable if find_cycles is right; never fail silently.
                problems.push(format!(
                    "dependency cycle among: {}",
                    pending.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }

        if !problems.is_empty() {
            return Err(ConfigError {
                source: config.source.clone(),
                problems,
            });
        }
        Ok(Plan {
            levels,
            deps,
            dependents,
            jobs,
            job_dependents,
        })
    }

    /// Stop levels: the start levels reversed. A process's dependents are
    /// all in earlier stop levels; that is all the levels say about stopping.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        self.levels.iter().rev().cloned().collect()
    }

    /// The shutdown budget for `config`.
    ///
    /// The supervisor signals a process as soon as every process that
    /// depends on it has stopped (`try_stop_ready`/`dependents_stopped`),
    /// not when a whole level has; one that nothing depends on is signalled
    /// at once. So a process has stopped at the latest by its own
    /// `shutdown.timeout` after the slowest of its dependents, and the worst
    /// case is the slowest chain along dependencies. Adding up per-level
    /// maxima would overestimate it: the slowest process of one level need
    /// not be a dependent of the slowest of the next.
    ///
    /// Scheduled jobs' runs get their stop signal when the shutdown begins
    /// (`begin_shutdown` → `stop_runs`), no later than the processes that
    /// nothing depends on, and nothing waits for them. Each run then stops
    /// like an instance (`group::Stop`: `shutdown.signal`, `kill_signal` at
    /// `shutdown.timeout`), beside the ordered stop; the post-stop hooks wait
    /// for them (`runs_idle`). So a job counts with its own
    /// `shutdown.timeout` from the start, in parallel with every chain, and
    /// its `schedule_timeout` does not matter: the stop comes first.
    ///
    /// Hooks that hold a stop back count too, at their worst (every
    /// attempt to its timeout): a process's pre_stop hooks run before its
    /// stop signal (a job's never run), the global pre_stop hooks before
    /// any process's (though after a job's runs get theirs), and the global
    /// post_stop hooks once everything has stopped.
    pub fn budget(&self, config: &Config) -> Budget {
        let timeout = |name: &str| {
            config.processes.get(name).map_or(Duration::ZERO, |p| {
                let hooks = match p.extra.schedule {
                    Some(_) => Duration::ZERO,
                    None => hooks_time(
                        p.shutdown
                            .pre_stop_hook
                            .iter()
                            .chain(&p.extra.hooks.pre_stop),
                    ),
                };
                hooks.saturating_add(stop_time(&p.shutdown))
            })
        };
        let first = hooks_time(config.hooks.pre_stop.iter());
        let stop = self.stop_levels();
        let per_level: Vec<Duration> = stop
            .iter()
            .map(|level| level.iter().map(|n| timeout(n)).max().unwrap_or_default())
            .collect();

        let completes_first = |name: &str| self.completes_first(config, name);
        let (mut stopped_by, after, passed) =
            self.graph_stop_times(&timeout, &completes_first, first);
        let mut critical_path = slowest_chain(&stopped_by, &after, &timeout);
        // A oneshot passed through adds nothing to the chain: not listed.
        critical_path.retain(|(n, _)| !passed.contains(n.as_str()));
        // A chain that starts with a job (not in `stopped_by` yet) started
        // with the shutdown, beside the global pre_stop hooks; any other,
        // after them.
        if !first.is_zero()
            && critical_path
                .first()
                .is_none_or(|(n, _)| stopped_by.get(n).is_some())
        {
            critical_path.insert(0, (GLOBAL_PRE_STOP.to_string(), first));
        }
        let mut total = stopped_by.values().copied().max().unwrap_or(first);
        for job in &self.jobs {
            let t = timeout(job);
            stopped_by.insert(job.clone(), t);
            // On a tie the chain is reported: it is the ordered part.
            if t > total {
                total = t;
                critical_path = vec![(job.clone(), t)];
            }
        }
        let last = hooks_time(config.hooks.post_stop.iter());
        if !last.is_zero() {
            total = total.saturating_add(last);
            critical_path.push((GLOBAL_POST_STOP.to_string(), last));
        }
        Budget {
            per_level,
            stopped_by,
            critical_path,
            total,
            limit: config.global.shutdown_timeout,
        }
    }

    /// A oneshot whose every dependent (process or job) waits for it to
    /// complete: it never runs beside them. At a shutdown either it still
    /// runs and they have not started, or it is done and takes no time.
    fn completes_first(&self, config: &Config, name: &str) -> bool {
        use crate::config::{Condition, ProcessType};
        let Some(p) = config.processes.get(name) else {
            return false;
        };
        let dependents: Vec<&String> = self
            .dependents
            .get(name)
            .into_iter()
            .chain(self.job_dependents.get(name))
            .flatten()
            .collect();
        p.kind == ProcessType::Oneshot
            && !dependents.is_empty()
            && dependents.iter().all(|d| {
                config.processes.get(d.as_str()).is_some_and(|dp| {
                    dp.depends_on.iter().filter(|x| x.name == name).all(|x| {
                        matches!(
                            x.condition.unwrap_or(Condition::CompletedSuccessfully),
                            Condition::Completed | Condition::CompletedSuccessfully
                        )
                    })
                })
            })
    }

    /// Worst-case stop time of every planned process; for each process
    /// with dependents, the slowest of them (the first by name on a tie);
    /// and the oneshots the slowest chain passes through without waiting
    /// for (`completes_first`: the larger of their own stop and their
    /// dependents' counts, not the sum). No process gets its stop signal
    /// before the global pre_stop hooks (`first`) have ended; a job's runs
    /// get theirs when the shutdown begins, beside those hooks.
    ///
    /// Owned names throughout this file: a B-tree of `&str` is one more
    /// instantiation of its code in the static binary (a few KiB each).
    fn graph_stop_times(
        &self,
        timeout: &impl Fn(&str) -> Duration,
        completes_first: &impl Fn(&str) -> bool,
        first: Duration,
    ) -> (
        SortedMap<String, Duration>,
        BTreeMap<String, String>,
        BTreeSet<String>,
    ) {
        let mut stopped_by: SortedMap<String, Duration> = SortedMap::default();
        let mut after: BTreeMap<String, String> = BTreeMap::new();
        let mut passed: BTreeSet<String> = BTreeSet::new();
        // Reverse start order: every dependent is seen before what it
        // depends on (dependencies sit in strictly earlier start levels).
        for name in self.levels.iter().rev().flatten() {
            let mut start = Duration::ZERO;
            // A job's runs stop from the start of the shutdown: one that
            // depends on `name` has stopped by its own stop time.
            let dependents = self.dependents.get(name).into_iter().flatten();
            let jobs = self.job_dependents.get(name).into_iter().flatten();
            for d in dependents.chain(jobs) {
                let by = stopped_by.get(d).copied().unwrap_or_else(|| timeout(d));
                if by > start || !after.contains_key(name.as_str()) {
                    start = by;
                    after.insert(name.clone(), d.clone());
                }
            }
            if start < first {
                // The global pre_stop hooks end later: the chain starts
                // here, after them.
                start = first;
                after.remove(name.as_str());
            }
            let own = timeout(name);
            let by = if !completes_first(name) {
                start.saturating_add(own)
            } else if first.saturating_add(own) >= start {
                // Its own stop is the longer: the chain starts here.
                after.remove(name.as_str());
                first.saturating_add(own)
            } else {
                passed.insert(name.clone());
                start
            };
            stopped_by.insert(name.clone(), by);
        }
        (stopped_by, after, passed)
    }
}

/// How the global pre_stop and post_stop hooks appear in a budget's
/// critical path.
pub const GLOBAL_PRE_STOP: &str = "hooks.pre_stop";
pub const GLOBAL_POST_STOP: &str = "hooks.post_stop";

/// The longest `hooks` can take one after the other: every attempt of
/// each to its timeout, and the delays between attempts.
fn hooks_time<'a>(hooks: impl Iterator<Item = &'a crate::config::Hook>) -> Duration {
    hooks
        .map(|h| {
            let attempts = h.timeout.saturating_mul(h.retry.saturating_add(1));
            attempts.saturating_add(h.retry_delay.saturating_mul(h.retry))
        })
        .fold(Duration::ZERO, Duration::saturating_add)
}

/// The longest a process's stop can take before its group has had
/// SIGKILL: its `timeout`, plus `group::KILL_GRACE` when its `kill_signal`
/// is another signal (SIGKILL follows that one, `group::Stop`).
fn stop_time(s: &crate::config::Shutdown) -> Duration {
    if s.kill_signal == nix::sys::signal::Signal::SIGKILL {
        s.timeout
    } else {
        s.timeout.saturating_add(crate::group::KILL_GRACE)
    }
}

/// `p`'s dependencies, sorted and deduplicated; every one that is missing,
/// disabled or a scheduled job is a problem. Config validation rejects all
/// three; the plan stays defensive.
fn checked_deps(config: &Config, p: &Process, problems: &mut Vec<String>) -> Vec<String> {
    let key = || process_key(&p.name, "depends_on");
    let mut mine = BTreeSet::new();
    for d in &p.depends_on {
        match config.processes.get(&d.name) {
            Some(t) if !t.enabled => problems.push(format!(
                "{}: \"{}\" is disabled; enable it or remove the dependency",
                key(),
                d.name
            )),
            Some(t) if t.extra.schedule.is_some() => problems.push(format!(
                "{}: \"{}\" is a scheduled job; processes cannot wait for it",
                key(),
                d.name
            )),
            Some(_) => {
                mine.insert(d.name.clone());
            }
            None => problems.push(format!(
                "{}: \"{}\" is not a defined process",
                key(),
                d.name
            )),
        }
    }
    mine.into_iter().collect()
}

/// Layered Kahn: a process enters the level after its last dependency.
/// Returns the levels and the processes that could not be placed (cycles).
fn layers(
    deps: &SortedMap<String, Vec<String>>,
    dependents: &SortedMap<String, Vec<String>>,
) -> (Vec<Vec<String>>, BTreeSet<String>) {
    let mut pending: SortedMap<&str, u64> = deps
        .iter()
        .map(|(k, v)| (k.as_str(), v.len() as u64))
        .collect();
    let mut levels: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| (*k).to_string())
        .collect();
    while !current.is_empty() {
        for name in &current {
            pending.remove(name.as_str());
        }
        let mut next = BTreeSet::new();
        for name in &current {
            for dependent in dependents.get(name).into_iter().flatten() {
                if let Some(n) = pending.get_mut(dependent.as_str()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        next.insert(dependent.clone());
                    }
                }
            }
        }
        levels.push(current);
        current = next.into_iter().collect();
    }
    (
        levels,
        btree::collect(pending.keys().map(|k| k.to_string())),
    )
}

/// The chain ending at the process that stops last (the smallest name on a
/// tie), walked back through `after` (process → its slowest dependent) and
/// returned in stop order with each process's timeout.
fn slowest_chain(
    stopped_by: &SortedMap<String, Duration>,
    after: &BTreeMap<String, String>,
    timeout: &impl Fn(&str) -> Duration,
) -> Vec<(String, Duration)> {
    let mut last: Option<(&str, Duration)> = None;
    for (name, by) in stopped_by {
        if last.is_none_or(|(_, best)| *by > best) {
            last = Some((name, *by));
        }
    }
    let mut chain = Vec::new();
    let mut at = last.map(|(n, _)| n);
    // `after` points to strictly earlier stop levels, so this ends; the
    // bound guards against a wrong map all the same.
    while let Some(n) = at.filter(|_| chain.len() <= stopped_by.len()) {
        chain.push((n.to_string(), timeout(n)));
        at = after.get(n).map(String::as_str);
    }
    chain.reverse();
    chain
}

/// One cycle per strongly connected knot among `stuck` (the processes Kahn
/// could not place), as a closed path `[a, b, c, a]`. For determinism each
/// knot is reported once, by the shortest cycle through its smallest name,
/// following the smallest dependency first on ties.
///
/// Every stuck process has a stuck dependency, so walking dependencies from
/// any of them must meet a cycle; processes that merely hang off a cycle are
/// skipped because no path leads back to them.
fn find_cycles(
    deps: &SortedMap<String, Vec<String>>,
    stuck: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    // Linear and without recursion, so a cycle or chain of thousands of
    // processes neither takes seconds nor overflows the stack: Tarjan's
    // strongly connected components, iteratively, then one BFS per knot
    // from its smallest name, inside the knot (a shortest cycle through a
    // name never leaves its knot, and outside nodes are never a BFS parent
    // of one inside, so the path is the one a BFS over all would find).
    const NONE: usize = usize::MAX;
    let names: Vec<&str> = stuck.iter().map(String::as_str).collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            deps.get(*n)
                .into_iter()
                .flatten()
                .filter_map(|d| names.binary_search(&d.as_str()).ok())
                .collect()
        })
        .collect();
    let n = names.len();
    let (mut index, mut low) = (vec![NONE; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    // Each process's knot, named by its smallest member (names are sorted).
    let mut knot = vec![NONE; n];
    let mut next = 0;
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        let mut calls = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, i)) = calls.last_mut() {
            let v = *v;
            if let Some(&w) = edges[v].get(*i) {
                *i += 1;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let at = stack.iter().rposition(|&w| w == v).unwrap_or(0);
                let members = stack.split_off(at);
                let smallest = members.iter().copied().min().unwrap_or(v);
                for w in members {
                    on_stack[w] = false;
                    knot[w] = smallest;
                }
            }
        }
    }

    let mut parent = vec![NONE; n];
    let mut cycles = Vec::new();
    for start in (0..n).filter(|&s| knot[s] == s) {
        // BFS from `start` along dependencies, looking for `start` again.
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for &w in edges[v].iter().filter(|&&w| knot[w] == start) {
                if w == start {
                    closing = Some(v);
                    break 'bfs;
                }
                if parent[w] == NONE {
                    parent[w] = v;
                    queue.push_back(w);
                }
            }
        }
        // A knot of one without a self-dependency is no cycle.
        let Some(mut at) = closing else { continue };
        // Walk back from the closing process: start → … → last → start.
        let mut back = Vec::new();
        while at != start && at != NONE {
            back.push(names[at].to_string());
            at = parent[at];
        }
        let mut path = vec![names[start].to_string()];
        path.extend(back.into_iter().rev());
        path.push(names[start].to_string());
        cycles.push(path);
    }
    cycles
}

/// Hand-built configurations for unit tests (config loading lives elsewhere).
#[cfg(test)]
pub(crate) mod testutil {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use crate::config::extra::{Schedule, ScheduleSpec, Timezone};
    use crate::config::*;

    /// A process with the documented defaults: longrun, enabled, scale 1,
    /// restart always, SIGTERM then SIGKILL after 30s.
    pub fn process(name: &str) -> Process {
        Process {
            name: name.to_string(),
            enabled: true,
            kind: ProcessType::Longrun,
            initial_state: InitialState::Running,
            command: vec!["sleep".into(), "infinity".into()],
            scale: 1,
            max_scale: None,
            depends_on: vec![],
            restart: RestartPolicy::Always,
            max_restart_attempts: 0,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                reset_after: Duration::from_secs(60),
            },
            working_dir: None,
            env: BTreeMap::new(),
            credentials: None,
            shutdown: Shutdown {
                signal: Signal::SIGTERM,
                timeout: Duration::from_secs(30),
                kill_signal: Signal::SIGKILL,
                pre_stop_hook: None,
            },
            critical: false,
            extra: ProcessExtra::default(),
        }
    }

    /// `process(name)` depending on `deps` (list form, no conditions).
    pub fn with_deps(name: &str, deps: &[&str]) -> Process {
        let mut p = process(name);
        p.depends_on = deps
            .iter()
            .map(|d| Dependency {
                name: d.to_string(),
                condition: None,
            })
            .collect();
        p
    }

    /// `process(name)` run as a scheduled job on `@every 1m` (UTC, no
    /// timeout, one run at a time).
    pub fn job(name: &str) -> Process {
        let mut p = process(name);
        p.restart = RestartPolicy::Never;
        p.extra.schedule = Some(Schedule {
            spec: ScheduleSpec::Every(Duration::from_secs(60)),
            expression: "@every 1m".into(),
            timezone: Timezone::Utc,
            timeout: None,
            max_concurrent: 1,
            jitter: Duration::ZERO,
            catch_up: false,
        });
        p
    }

    /// A configuration with global defaults holding `processes`.
    pub fn config(processes: Vec<Process>) -> Config {
        Config {
            version: "1.0".into(),
            global: Global {
                shutdown_timeout: Duration::from_secs(30),
                log_format: LogFormat::Text,
                log_level: LogLevel::Info,
                restart_policy: RestartPolicy::Always,
                max_restart_attempts: 0,
                restart_backoff_initial: Duration::from_secs(1),
                restart_backoff_max: Duration::from_secs(60),
                restart_reset_after: Duration::from_secs(60),
                dependency_timeout: Duration::from_secs(300),
                api: Api {
                    enabled: true,
                    port: 9180,
                    listen: "127.0.0.1".into(),
                    socket: None,
                    auth: None,
                    auth_file: None,
                    insecure: false,
                    max_request_body: 64 * 1024,
                    rate_limit: 100,
                    rate_burst: 200,
                },
                metrics: Metrics {
                    enabled: true,
                    port: 9090,
                    path: "/metrics".into(),
                    listen: "127.0.0.1".into(),
                },
                extra: GlobalExtra::default(),
            },
            hooks: Hooks::default(),
            processes: processes.into_iter().map(|p| (p.name.clone(), p)).collect(),
            source: None,
            warnings: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{config, job, process, with_deps};
    use super::*;

    fn levels(plan: &Plan) -> Vec<Vec<&str>> {
        plan.levels
            .iter()
            .map(|l| l.iter().map(String::as_str).collect())
            .collect()
    }

    fn cycle_err(cfg: &Config) -> Vec<String> {
        Plan::build(cfg).unwrap_err().problems
    }

    #[test]
    fn no_processes_is_an_empty_plan() {
        let cfg = config(vec![]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(plan, Plan::default());
        assert!(plan.stop_levels().is_empty());
        let b = plan.budget(&cfg);
        assert!(b.per_level.is_empty());
        assert_eq!(b.total, Duration::ZERO);
        assert!(!b.exceeds_limit());
    }

    #[test]
    fn single_process() {
        let plan = Plan::build(&config(vec![process("a")])).unwrap();
        assert_eq!(levels(&plan), vec![vec!["a"]]);
        assert_eq!(*plan.deps.get("a").unwrap(), Vec::<String>::new());
        assert_eq!(*plan.dependents.get("a").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn independent_processes_share_level_zero_sorted() {
        let cfg = config(vec![process("zeta"), process("alpha"), process("mu")]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(levels(&plan), vec![vec!["alpha", "mu", "zeta"]]);
    }

    #[test]
    fn chain_makes_one_level_each() {
        let cfg = config(vec![
            with_deps("c", &["b"]),
            with_deps("b", &["a"]),
            process("a"),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(levels(&plan), vec![vec!["a"], vec!["b"], vec!["c"]]);
        assert_eq!(plan.stop_levels(), vec![vec!["c"], vec!["b"], vec!["a"]]);
    }

    #[test]
    fn diamond() {
        // web → (api, worker) → db
        let cfg = config(vec![
            process("db"),
            with_deps("worker", &["db"]),
            with_deps("api", &["db"]),
            with_deps("web", &["worker", "api"]),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(
            levels(&plan),
            vec![vec!["db"], vec!["api", "worker"], vec!["web"]]
        );
        assert_eq!(*plan.deps.get("web").unwrap(), vec!["api", "worker"]);
        assert_eq!(*plan.dependents.get("db").unwrap(), vec!["api", "worker"]);
        assert_eq!(*plan.dependents.get("web").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn level_is_longest_dependency_path() {
        // d depends on a (level 0) and c (level 2) → level 3, not 1.
        let cfg = config(vec![
            process("a"),
            with_deps("b", &["a"]),
            with_deps("c", &["b"]),
            with_deps("d", &["a", "c"]),
            with_deps("e", &["a"]),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(
            levels(&plan),
            vec![vec!["a"], vec!["b", "e"], vec!["c"], vec!["d"]]
        );
    }

    #[test]
    fn parallel_chains_interleave_by_level() {
        let cfg = config(vec![
            process("x1"),
            with_deps("x2", &["x1"]),
            process("a1"),
            with_deps("a2", &["a1"]),
            process("solo"),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(
            levels(&plan),
            vec![vec!["a1", "solo", "x1"], vec!["a2", "x2"]]
        );
    }

    #[test]
    fn duplicate_dependencies_are_collapsed() {
        let cfg = config(vec![process("a"), with_deps("b", &["a", "a"])]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(*plan.deps.get("b").unwrap(), vec!["a"]);
        assert_eq!(*plan.dependents.get("a").unwrap(), vec!["b"]);
    }

    #[test]
    fn disabled_processes_are_left_out() {
        let mut off = process("off");
        off.enabled = false;
        let cfg = config(vec![off, process("on")]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(levels(&plan), vec![vec!["on"]]);
        assert!(!plan.deps.contains_key("off"));
        assert!(!plan.dependents.contains_key("off"));
    }

    #[test]
    fn dependency_on_disabled_or_missing_process_is_an_error() {
        let mut off = process("off");
        off.enabled = false;
        let cfg = config(vec![off, with_deps("a", &["off", "ghost"])]);
        let problems = cycle_err(&cfg);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("processes.a.depends_on") && problems[0].contains("off"));
        assert!(problems[1].contains("ghost"));
    }

    #[test]
    fn two_cycle() {
        let cfg = config(vec![with_deps("b", &["a"]), with_deps("a", &["b"])]);
        assert_eq!(cycle_err(&cfg), vec!["dependency cycle: a → b → a"]);
    }

    #[test]
    fn three_cycle_starts_at_smallest_name() {
        let cfg = config(vec![
            with_deps("m", &["z"]),
            with_deps("z", &["b"]),
            with_deps("b", &["m"]),
        ]);
        assert_eq!(cycle_err(&cfg), vec!["dependency cycle: b → m → z → b"]);
    }

    #[test]
    fn self_dependency_is_a_one_cycle() {
        // Config validation rejects it; the plan still must not loop or panic.
        let cfg = config(vec![with_deps("a", &["a"])]);
        assert_eq!(cycle_err(&cfg), vec!["dependency cycle: a → a"]);
    }

    #[test]
    fn cycle_hanging_off_an_acyclic_part() {
        // base is fine; "a" depends on the knot x ⇄ y but is not in it.
        let cfg = config(vec![
            process("base"),
            with_deps("a", &["x", "base"]),
            with_deps("x", &["y", "base"]),
            with_deps("y", &["x"]),
            with_deps("w", &["a"]),
        ]);
        let err = Plan::build(&cfg).unwrap_err();
        assert_eq!(err.problems, vec!["dependency cycle: x → y → x"]);
    }

    #[test]
    fn shortest_cycle_through_smallest_name() {
        // a → b → a and a → c → d → a are one knot: report only the shorter.
        let cfg = config(vec![
            with_deps("a", &["c", "b"]),
            with_deps("b", &["a"]),
            with_deps("c", &["d"]),
            with_deps("d", &["a"]),
        ]);
        assert_eq!(cycle_err(&cfg), vec!["dependency cycle: a → b → a"]);
    }

    #[test]
    fn disjoint_cycles_are_each_reported() {
        let cfg = config(vec![
            with_deps("p", &["q"]),
            with_deps("q", &["p"]),
            with_deps("c", &["d"]),
            with_deps("d", &["e"]),
            with_deps("e", &["c"]),
            process("ok"),
        ]);
        assert_eq!(
            cycle_err(&cfg),
            vec![
                "dependency cycle: c → d → e → c",
                "dependency cycle: p → q → p"
            ]
        );
    }

    #[test]
    fn cycle_error_names_the_source_file() {
        let mut cfg = config(vec![with_deps("a", &["b"]), with_deps("b", &["a"])]);
        cfg.source = Some("/etc/sheepdog/sheepdog.yaml".into());
        let err = Plan::build(&cfg).unwrap_err();
        assert!(err.to_string().contains("/etc/sheepdog/sheepdog.yaml"));
        assert!(err.to_string().contains("a → b → a"));
    }

    #[test]
    fn long_cycle() {
        let n = 50;
        let name = |i: usize| format!("p{i:02}");
        let procs: Vec<_> = (0..n)
            .map(|i| with_deps(&name(i), &[&name((i + 1) % n)]))
            .collect();
        let problems = cycle_err(&config(procs));
        assert_eq!(problems.len(), 1);
        let expected: Vec<String> = (0..=n).map(|i| name(i % n)).collect();
        assert_eq!(
            problems[0],
            format!("dependency cycle: {}", expected.join(" → "))
        );
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// `process(name)` depending on `deps`, stopped within `timeout` seconds.
    fn timed(name: &str, deps: &[&str], timeout: u64) -> Process {
        let mut p = with_deps(name, deps);
        p.shutdown.timeout = secs(timeout);
        p
    }

    fn path(b: &Budget) -> Vec<(&str, u64)> {
        b.critical_path
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_secs()))
            .collect()
    }

    #[test]
    fn a_kill_signal_other_than_sigkill_adds_the_grace_before_sigkill() {
        let mut db = process("db");
        db.shutdown.timeout = secs(2);
        db.shutdown.kill_signal = nix::sys::signal::Signal::SIGQUIT;
        let cfg = config(vec![db]);
        let b = Plan::build(&cfg).unwrap().budget(&cfg);
        assert_eq!(b.total, secs(2) + crate::group::KILL_GRACE);
    }

    #[test]
    fn budget_of_one_chain_adds_its_timeouts() {
        let mut db = process("db");
        db.shutdown.timeout = secs(20);
        let mut cache = process("cache");
        cache.shutdown.timeout = secs(5);
        let mut app = with_deps("app", &["db", "cache"]);
        app.shutdown.timeout = Duration::from_millis(1500);
        let mut cfg = config(vec![db, cache, app]);
        cfg.global.shutdown_timeout = secs(30);
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        // Stop order: [app], [cache, db].
        assert_eq!(b.per_level, vec![Duration::from_millis(1500), secs(20)]);
        assert_eq!(b.total, Duration::from_millis(21_500));
        assert_eq!(
            *b.stopped_by.get("cache").unwrap(),
            Duration::from_millis(6_500)
        );
        assert_eq!(b.critical_path.len(), 2);
        assert_eq!(b.critical_path[0].0, "app");
        assert_eq!(b.critical_path[1], ("db".to_string(), secs(20)));
        assert_eq!(b.limit, secs(30));
        assert!(!b.exceeds_limit());

        cfg.global.shutdown_timeout = secs(21);
        assert!(plan.budget(&cfg).exceeds_limit());
        // Equal is within the limit.
        cfg.global.shutdown_timeout = Duration::from_millis(21_500);
        assert!(!plan.budget(&cfg).exceeds_limit());
    }

    #[test]
    fn budget_follows_the_graph_not_the_levels() {
        // Stop levels [nginx], [migrate, php-fpm]: migrate has no
        // dependents, so it is signalled at once, beside nginx. Summing the
        // level maxima (1m30s + 30s) would overestimate: the slowest chain
        // is nginx then php-fpm.
        let cfg = config(vec![
            timed("php-fpm", &[], 20),
            timed("nginx", &["php-fpm"], 90),
            timed("migrate", &[], 30),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        assert_eq!(b.per_level, vec![secs(90), secs(30)]);
        assert_eq!(*b.stopped_by.get("migrate").unwrap(), secs(30));
        assert_eq!(*b.stopped_by.get("php-fpm").unwrap(), secs(110));
        assert_eq!(b.total, secs(110));
        assert_eq!(path(&b), vec![("nginx", 90), ("php-fpm", 20)]);
    }

    #[test]
    fn budget_waits_for_the_slowest_dependent() {
        // web → (api, worker) → db: db waits for api (11s), not worker (3s).
        let cfg = config(vec![
            timed("db", &[], 5),
            timed("api", &["db"], 10),
            timed("worker", &["db"], 2),
            timed("web", &["api", "worker"], 1),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        let by: Vec<(&str, u64)> = b
            .stopped_by
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_secs()))
            .collect();
        assert_eq!(by, vec![("api", 11), ("db", 16), ("web", 1), ("worker", 3)]);
        assert_eq!(b.total, secs(16));
        assert_eq!(path(&b), vec![("web", 1), ("api", 10), ("db", 5)]);
    }

    #[test]
    fn budget_can_be_set_by_a_late_level_alone() {
        // A long-stopping process with no dependents, in the last stop
        // level, outlasts the chain that ends beside it.
        let cfg = config(vec![
            timed("base", &[], 1),
            timed("top", &["base"], 2),
            timed("slow", &[], 60),
        ]);
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        assert_eq!(b.per_level, vec![secs(2), secs(60)]);
        assert_eq!(b.total, secs(60));
        assert_eq!(path(&b), vec![("slow", 60)]);
    }

    #[test]
    fn budget_ties_are_deterministic() {
        // Two equal chains: the process that stops last with the smallest
        // name ends the path, and its smallest slowest dependent leads it.
        let cfg = config(vec![
            timed("a", &[], 5),
            timed("b", &[], 5),
            timed("x", &["a", "b"], 5),
            timed("y", &["a", "b"], 5),
        ]);
        let b = Plan::build(&cfg).unwrap().budget(&cfg);
        assert_eq!(b.total, secs(10));
        assert_eq!(path(&b), vec![("x", 5), ("a", 5)]);
    }

    #[test]
    fn budget_with_zero_timeouts() {
        let cfg = config(vec![timed("a", &[], 0), timed("b", &["a"], 0)]);
        let b = Plan::build(&cfg).unwrap().budget(&cfg);
        assert_eq!(b.total, Duration::ZERO);
        assert_eq!(path(&b), vec![("b", 0), ("a", 0)]);
    }

    #[test]
    fn scheduled_jobs_stay_out_of_the_graph() {
        let mut report = job("report");
        report.depends_on = with_deps("report", &["web"]).depends_on;
        let mut off = job("off");
        off.enabled = false;
        let cfg = config(vec![process("web"), job("cleanup"), report, off]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(levels(&plan), vec![vec!["web"]]);
        assert_eq!(plan.jobs, vec!["cleanup", "report"]);
        assert!(!plan.deps.contains_key("report"));
        // A run does not hold back the stop of what its job depends on.
        assert_eq!(*plan.dependents.get("web").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_job_dependency_is_still_checked() {
        let mut j = job("j");
        j.depends_on = with_deps("j", &["ghost"]).depends_on;
        let problems = cycle_err(&config(vec![j]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("processes.j.depends_on") && problems[0].contains("ghost"));
    }

    #[test]
    fn depending_on_a_job_is_an_error() {
        // Config validation rejects it; the plan must not place it.
        let cfg = config(vec![job("j"), with_deps("a", &["j"])]);
        let problems = cycle_err(&cfg);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("\"j\" is a scheduled job"));
    }

    #[test]
    fn budget_counts_jobs_from_the_start_beside_the_chains() {
        // Runs get their stop signal when the shutdown begins, in parallel
        // with the ordered stop: a job counts with its own timeout, not
        // after any level.
        let mut backup = job("backup");
        backup.shutdown.timeout = secs(25);
        let mut cfg = config(vec![
            timed("db", &[], 10),
            timed("app", &["db"], 10),
            backup,
        ]);
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        assert_eq!(b.per_level, vec![secs(10), secs(10)]);
        assert_eq!(*b.stopped_by.get("backup").unwrap(), secs(25));
        assert_eq!(b.total, secs(25));
        assert_eq!(path(&b), vec![("backup", 25)]);

        // A job no slower than the chain leaves the chain as the worst case.
        if let Some(p) = cfg.processes.get_mut("backup") {
            p.shutdown.timeout = secs(20);
        }
        let b = plan.budget(&cfg);
        assert_eq!(b.total, secs(20));
        assert_eq!(path(&b), vec![("app", 10), ("db", 10)]);
    }

    #[test]
    fn budget_counts_the_hooks_that_hold_a_stop_back() {
        let hook = |timeout: u64, retry: u32, delay: u64| crate::config::Hook {
            name: "h".into(),
            command: vec!["true".into()],
            timeout: secs(timeout),
            retry,
            retry_delay: secs(delay),
            continue_on_error: false,
            env: BTreeMap::new(),
            working_dir: None,
            credentials: None,
        };
        let mut backup = job("backup");
        backup.shutdown.timeout = secs(25);
        // A job's stop hooks never run: not counted.
        backup.extra.hooks.pre_stop = vec![hook(100, 0, 0)];
        let mut db = timed("db", &[], 10);
        // Two attempts of 5s with 1s between, then a second hook of 2s.
        db.extra.hooks.pre_stop = vec![hook(5, 1, 1), hook(2, 0, 0)];
        let mut app = timed("app", &["db"], 10);
        app.shutdown.pre_stop_hook = Some(hook(3, 0, 0));
        let mut cfg = config(vec![db, app, backup]);
        cfg.hooks.pre_stop = vec![hook(4, 0, 0)];
        cfg.hooks.post_stop = vec![hook(6, 0, 0)];
        let plan = Plan::build(&cfg).unwrap();
        let b = plan.budget(&cfg);
        // Global pre_stop 4s, app 3s + 10s, db 13s + 10s, global post_stop 6s.
        assert_eq!(*b.stopped_by.get("app").unwrap(), secs(17));
        assert_eq!(*b.stopped_by.get("db").unwrap(), secs(40));
        assert_eq!(*b.stopped_by.get("backup").unwrap(), secs(25));
        assert_eq!(b.total, secs(46));
        assert_eq!(
            path(&b),
            vec![
                ("hooks.pre_stop", 4),
                ("app", 13),
                ("db", 23),
                ("hooks.post_stop", 6)
            ]
        );
    }

    #[test]
    fn a_oneshot_its_dependents_wait_for_never_stops_beside_them() {
        let budget = |migrate_timeout: u64| {
            let mut migrate = timed("migrate", &["db"], migrate_timeout);
            migrate.kind = crate::config::ProcessType::Oneshot;
            let cfg = config(vec![
                timed("db", &[], 10),
                migrate,
                timed("app", &["migrate"], 5),
                timed("web", &["app"], 3),
            ]);
            Plan::build(&cfg).unwrap().budget(&cfg)
        };
        // Still migrating at the shutdown: app and web have not started.
        let b = budget(30);
        assert_eq!(
            (b.total, path(&b)),
            (secs(40), vec![("migrate", 30), ("db", 10)])
        );
        // Done migrating: it takes no time, the chain passes through it.
        let b = budget(2);
        assert_eq!(
            (b.total, path(&b)),
            (secs(18), vec![("web", 3), ("app", 5), ("db", 10)])
        );
    }

    #[test]
    fn a_job_holds_what_it_depends_on_until_its_runs_have_stopped() {
        let db = timed("db", &[], 10);
        let mut backup = job("backup");
        backup.depends_on = with_deps("x", &["db"]).depends_on;
        backup.shutdown.timeout = secs(30);
        let cfg = config(vec![db, backup]);
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(*plan.job_dependents.get("db").unwrap(), ["backup"]);
        let b = plan.budget(&cfg);
        assert_eq!(*b.stopped_by.get("db").unwrap(), secs(40));
        assert_eq!(b.total, secs(40));
        let chain: Vec<&str> = b.critical_path.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(chain, ["backup", "db"]);
    }

    /// A job's runs get their stop signal when the shutdown begins, beside
    /// the global pre_stop hooks, not after them: what waits for the job
    /// starts its stop at the later of the two. The hooks' time was added
    /// on top of the job's (db stopped by 44s, "hooks.pre_stop 4s + backup
    /// 30s + db 10s"), a WARNING for a shutdown_timeout of 40s that fits.
    #[test]
    fn a_job_stops_beside_the_global_pre_stop_hooks() {
        let budget = |hook_secs: u64| {
            let mut backup = job("backup");
            backup.depends_on = with_deps("x", &["db"]).depends_on;
            backup.shutdown.timeout = secs(30);
            let mut cfg = config(vec![timed("db", &[], 10), backup]);
            cfg.hooks.pre_stop = vec![crate::config::Hook {
                name: "drain".into(),
                command: vec!["true".into()],
                timeout: secs(hook_secs),
                retry: 0,
                retry_delay: secs(0),
                continue_on_error: false,
                env: BTreeMap::new(),
                working_dir: None,
                credentials: None,
            }];
            Plan::build(&cfg).unwrap().budget(&cfg)
        };
        let b = budget(4);
        assert_eq!(*b.stopped_by.get("db").unwrap(), secs(40));
        assert_eq!(
            (b.total, path(&b)),
            (secs(40), vec![("backup", 30), ("db", 10)])
        );
        // Hooks slower than the job: they hold db back.
        let b = budget(35);
        assert_eq!(*b.stopped_by.get("backup").unwrap(), secs(30));
        assert_eq!(
            (b.total, path(&b)),
            (secs(45), vec![("hooks.pre_stop", 35), ("db", 10)])
        );
    }

    #[test]
    fn jobs_alone() {
        let mut j = job("j");
        j.shutdown.timeout = secs(7);
        let cfg = config(vec![j]);
        let plan = Plan::build(&cfg).unwrap();
        assert!(plan.levels.is_empty());
        let b = plan.budget(&cfg);
        assert!(b.per_level.is_empty());
        assert_eq!(b.total, secs(7));
        assert_eq!(path(&b), vec![("j", 7)]);
    }
}
