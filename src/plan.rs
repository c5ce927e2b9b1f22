//! The dependency plan: start levels, stop levels and the shutdown budget,
//! computed from a validated `Config`. Pure data; no I/O.
//!
//! Invariants: only enabled processes appear; every level is sorted by name
//! (deterministic tie-break); a process's dependencies are all in earlier
//! levels; a cycle is an error that prints the cycle.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, ConfigError};

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
    pub fn exceeds_limit(&self) -> bool {
        self.total > self.limit
    }
}

impl Plan {
    /// Build the plan, or fail naming a dependency cycle.
    pub fn build(config: &Config) -> Result<Plan, ConfigError> {
        let _ = config;
        Ok(Plan::default())
    }

    /// Stop order: the start levels reversed.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        self.levels.iter().rev().cloned().collect()
    }

    /// The shutdown budget for `config`.
    pub fn budget(&self, config: &Config) -> Budget {
        Budget {
            per_level: vec![],
            total: Duration::ZERO,
            limit: config.global.shutdown_timeout,
        }
    }
}
