//! Configuration: discovery, `${VAR}` substitution, environment overrides,
//! decoding and validation. The only module that knows YAML.
//!
//! Invariant: `load` either returns a fully validated `Config` (see
//! `model.rs` for what that guarantees) or an error that names the key path,
//! the bad value and what was expected. It never panics on any input.

pub mod extra;
pub mod model;
#[allow(dead_code)]
mod creds;
#[allow(dead_code)]
mod cron;
#[allow(dead_code)]
mod env;
#[allow(dead_code)]
mod keys;
#[allow(dead_code)]
mod raw;
#[allow(dead_code)]
mod report;
#[allow(dead_code)]
mod shape;
#[allow(dead_code)]
mod subst;
#[allow(dead_code)]
mod suggest;
#[allow(dead_code)]
mod validate;
#[allow(dead_code)]
mod value;
#[allow(dead_code)]
mod yaml;

pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

/// Every problem found in a configuration, each naming its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file involved, if any.
    pub source: Option<PathBuf>,
    /// One line per problem: "processes.web.restart: unknown value \"sometimes\"; expected one of always, on-failure, never".
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(p) => writeln!(f, "invalid configuration in {}:", p.display())?,
            None => writeln!(f, "invalid configuration:")?,
        }
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Looks up a variable for `${VAR}` substitution: `Ok(None)` when unset,
/// `Err` when set but unusable (not UTF-8).
pub type EnvLookup = dyn Fn(&str) -> Result<Option<String>, String>;

/// Find the configuration file: `explicit` (from -c), else `$SHEEPDOG_CONFIG`,
/// else `./sheepdog.yaml`, else `/etc/sheepdog/sheepdog.yaml`.
pub fn discover(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let _ = explicit;
    Err(ConfigError {
        source: None,
        problems: vec!["not implemented yet".into()],
    })
}

/// Load, substitute, override from the process environment, decode and validate.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let _ = path;
    Err(ConfigError {
        source: None,
        problems: vec!["not implemented yet".into()],
    })
}
