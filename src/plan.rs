//! The dependency plan: start levels, stop levels and the shutdown budget,
//! computed from a validated `Config`. Pure data; no I/O.
//!
//! What it does: a layered Kahn topological sort over the *enabled*
//! processes. Level 0 holds the processes without dependencies; a process
//! sits in level `max(level of its dependencies) + 1`. Processes in one level
//! do not depend on each other, so the supervisor may start them in
//! parallel. Stopping runs the levels in reverse. The budget is the
//! worst-case length of that orderly stop.
//!
//! What it does not do: readiness, conditions (`depends_on` conditions are
//! the supervisor's business) or any waiting; disabled processes are absent.
//!
//! Invariants:
//! - only enabled processes appear, each exactly once across `levels`;
//! - every level is sorted by name (deterministic tie-break);
//! - a process's dependencies are all in strictly earlier levels;
//! - `deps` and `dependents` have an entry (maybe empty) for every planned
//!   process, each list sorted and free of duplicates;
//! - a cycle is a `ConfigError` whose problem line prints the cycle
//!   (`dependency cycle: a → b → a`, "→" read as "depends on"), one line per
//!   strongly connected knot, each starting at its smallest name; a
//!   dependency on a missing or disabled process is an error, never a panic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::config::{process_key, Config, ConfigError};

/// Start and stop order for the enabled processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Start order: level 0 has no dependencies; each level sorted by name.
    pub levels: Vec<Vec<String>>,
    /// process → the enabled processes it depends on (sorted).
    pub deps: BTreeMap<String, Vec<String>>,
    /// process → the enabled processes that depend on it (sorted).
    pub dependents: BTreeMap<String, Vec<String>>,
}

/// The worst-case length of an orderly shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Per stop level (in stop order): the longest `shutdown.timeout` in it.
    pub per_level: Vec<Duration>,
    /// Sum of `per_level`.
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
    /// dependency on a process that is not enabled).
    pub fn build(config: &Config) -> Result<Plan, ConfigError> {
        let mut problems = Vec::new();

        // The graph over enabled processes: name → sorted, deduplicated deps.
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in config.enabled() {
            let mut mine = BTreeSet::new();
            for d in &p.depends_on {
                match config.processes.get(&d.name) {
                    Some(target) if target.enabled => {
                        mine.insert(d.name.clone());
                    }
                    // Config validation rejects both; stay defensive.
                    Some(_) => problems.push(format!(
                        "{}: \"{}\" is disabled; enable it or remove the dependency",
                        process_key(&p.name, "depends_on"),
                        d.name
                    )),
                    None => problems.push(format!(
                        "{}: \"{}\" is not a defined process",
                        process_key(&p.name, "depends_on"),
                        d.name
                    )),
                }
            }
            deps.insert(p.name.clone(), mine.into_iter().collect());
        }

        let mut dependents: BTreeMap<String, Vec<String>> =
            deps.keys().map(|k| (k.clone(), Vec::new())).collect();
        for (name, ds) in &deps {
            for d in ds {
                if let Some(list) = dependents.get_mut(d) {
                    list.push(name.clone());
                }
            }
        }
        // `deps` iterates in name order, so each list was filled sorted.

        // Layered Kahn: a process enters the level after its last dependency.
        let mut pending: BTreeMap<&str, usize> =
            deps.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
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

        if !pending.is_empty() {
            let stuck: BTreeSet<&str> = pending.keys().copied().collect();
            let cycles = find_cycles(&deps, &stuck);
            for cycle in &cycles {
                problems.push(format!("dependency cycle: {}", cycle.join(" → ")));
            }
            if cycles.is_empty() {
                // Unreachable if find_cycles is right; never fail silently.
                problems.push(format!(
                    "dependency cycle among: {}",
                    stuck.into_iter().collect::<Vec<_>>().join(", ")
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
        })
    }

    /// Stop order: the start levels reversed.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        self.levels.iter().rev().cloned().collect()
    }

    /// The shutdown budget for `config`: each stop level may take as long as
    /// its slowest process's `shutdown.timeout`, and the levels run one after
    /// another. Scheduled jobs' runs are stopped at once, beside the first
    /// level (nothing depends on them), so they only count when one of them
    /// takes longer than all the levels.
    pub fn budget(&self, config: &Config) -> Budget {
        let per_level: Vec<Duration> = self
            .stop_levels()
            .iter()
            .map(|level| {
                level
                    .iter()
                    .filter_map(|name| config.processes.get(name))
                    .filter(|p| p.extra.schedule.is_none())
                    .map(|p| p.shutdown.timeout)
                    .max()
                    .unwrap_or(Duration::ZERO)
            })
            .collect();
        let jobs = config
            .processes
            .values()
            .filter(|p| p.enabled && p.extra.schedule.is_some())
            .map(|p| p.shutdown.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let total = per_level
            .iter()
            .fold(Duration::ZERO, |acc, d| acc.saturating_add(*d))
            .max(jobs);
        Budget {
            per_level,
            total,
            limit: config.global.shutdown_timeout,
        }
    }
}

/// One cycle per strongly connected knot among `stuck` (the processes Kahn
/// could not place), as a closed path `[a, b, c, a]`. For determinism each
/// knot is reported once, by the shortest cycle through its smallest name,
/// following the smallest dependency first on ties.
///
/// Every stuck process has a stuck dependency, so walking dependencies from
/// any of them must meet a cycle; processes that merely hang off a cycle are
/// skipped because no path leads back to them.
fn find_cycles(deps: &BTreeMap<String, Vec<String>>, stuck: &BTreeSet<&str>) -> Vec<Vec<String>> {
    let edges = |n: &str| -> Vec<&str> {
        deps.get(n)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|d| stuck.contains(d))
            .collect()
    };
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    let mut cycles = Vec::new();
    for &start in stuck {
        if reported.contains(start) {
            continue;
        }
        // BFS from `start` along dependencies, looking for `start` again.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue: VecDeque<&str> = VecDeque::from([start]);
        let mut closing: Option<&str> = None;
        'bfs: while let Some(n) = queue.pop_front() {
            for d in edges(n) {
                if d == start {
                    closing = Some(n);
                    break 'bfs;
                }
                if !parent.contains_key(d) {
                    parent.insert(d, n);
                    queue.push_back(d);
                }
            }
        }
        let Some(last) = closing else { continue };

        // Walk back from `last` to `start`: start → … → last → start.
        let mut path = vec![start.to_string()];
        let mut back = vec![last];
        let mut at = last;
        while at != start {
            match parent.get(at) {
                Some(&p) => {
                    if p != start {
                        back.push(p);
                    }
                    at = p;
                }
                None => break,
            }
        }
        if last != start {
            path.extend(back.iter().rev().map(|s| s.to_string()));
        }
        path.push(start.to_string());
        cycles.push(path);

        // The knot: everything reachable from `start` that also reaches it.
        let forward = reachable(start, &edges);
        for n in forward {
            if reachable(n, &edges).contains(start) {
                reported.insert(n);
            }
        }
    }
    cycles
}

/// Every process reachable from `from` along dependencies (not `from` itself
/// unless it lies on a cycle).
fn reachable<'a>(from: &'a str, edges: &impl Fn(&'a str) -> Vec<&'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        for d in edges(n) {
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    seen
}

/// Hand-built configurations for unit tests (config loading lives elsewhere).
#[cfg(test)]
pub(crate) mod testutil {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use nix::sys::signal::Signal;

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
    use super::testutil::{config, process, with_deps};
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
        assert_eq!(plan.deps["a"], Vec::<String>::new());
        assert_eq!(plan.dependents["a"], Vec::<String>::new());
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
        assert_eq!(plan.deps["web"], vec!["api", "worker"]);
        assert_eq!(plan.dependents["db"], vec!["api", "worker"]);
        assert_eq!(plan.dependents["web"], Vec::<String>::new());
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
        assert_eq!(plan.deps["b"], vec!["a"]);
        assert_eq!(plan.dependents["a"], vec!["b"]);
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

    #[test]
    fn budget_takes_longest_per_level_and_sums() {
        let secs = Duration::from_secs;
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
        assert_eq!(b.limit, secs(30));
        assert!(!b.exceeds_limit());

        cfg.global.shutdown_timeout = secs(21);
        assert!(plan.budget(&cfg).exceeds_limit());
        // Equal is within the limit.
        cfg.global.shutdown_timeout = Duration::from_millis(21_500);
        assert!(!plan.budget(&cfg).exceeds_limit());
    }
}
