//! Configuration: discovery, `${VAR}` substitution, environment overrides,
//! decoding and validation. The only module that knows YAML.
//!
//! Invariant: `load` either returns a fully validated `Config` (see
//! `model.rs` for what that guarantees) or an error that names the key path,
//! the bad value and what was expected. It never panics on any input.

mod creds;
pub mod cron;
mod env;
pub mod extra;
mod keys;
pub mod model;
mod perms;
mod raw;
mod report;
mod shape;
mod subst;
pub(crate) mod suggest;
#[cfg(test)]
mod tests;
mod validate;
mod value;
mod yaml;

pub use env::is_override;
pub use model::*;
pub use report::process_key;
/// The load check of declared ports, for a scale request.
pub use validate::scale_ports;
/// What a bearer token must be (`api_auth`, and `api_auth_file`'s content).
#[cfg(feature = "api")]
pub use validate::{check_token, is_loopback};
/// The one duration grammar (`90`, `500ms`, `1h30m`), for `ctl trigger --wait=`.
pub use value::parse_duration;
#[cfg(feature = "api")]
pub use value::quote;
/// The one signal grammar (`SIGHUP`, `HUP`, `hup`, `1`), shared with the API.
#[cfg(feature = "api")]
pub use value::signal as parse_signal;

use std::ffi::OsString;
use std::fmt::{self, Write as _};
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

/// The places searched, in order, after `-c` and `$SHEEPDOG_CONFIG`.
pub const DEFAULT_PATHS: [&str; 2] = ["sheepdog.yaml", "/etc/sheepdog/sheepdog.yaml"];

/// Find the configuration file: `explicit` (from -c), else `$SHEEPDOG_CONFIG`,
/// else `./sheepdog.yaml`, else `/etc/sheepdog/sheepdog.yaml`.
pub fn discover(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let defaults = DEFAULT_PATHS.map(Path::new);
    discover_in(explicit, std::env::var_os("SHEEPDOG_CONFIG"), &defaults)
}

fn discover_in(
    explicit: Option<&Path>,
    from_env: Option<OsString>,
    defaults: &[&Path],
) -> Result<PathBuf, ConfigError> {
    let fail = |problem: String| ConfigError {
        source: None,
        problems: vec![problem],
    };
    // A dangling link passes: reading it names its target (yaml::read_capped).
    let must_exist = |path: &Path, origin: &str| match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(path.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail(format!(
            "configuration file {} ({origin}) does not exist{}",
            path.display(),
            if path == Path::new("-") {
                "; to read it from stdin, give -c /dev/stdin"
            } else {
                ""
            }
        ))),
        Err(e) => Err(fail(format!(
            "unable to access configuration file {} ({origin}): {e}",
            path.display()
        ))),
    };
    if let Some(p) = explicit {
        return must_exist(p, "given with -c");
    }
    if let Some(p) = from_env.filter(|p| !p.is_empty()) {
        return must_exist(Path::new(&p), "from $SHEEPDOG_CONFIG");
    }
    // A link counts even when it leads nowhere: reading it then says so,
    // instead of a fallback to the next path or "no configuration found".
    for p in defaults {
        if std::fs::symlink_metadata(p).is_ok() {
            return Ok(p.to_path_buf());
        }
    }
    // Written in place: a collected Vec<String> and a join cost more code.
    let mut looked =
        String::from("no configuration file found; looked for -c FILE, $SHEEPDOG_CONFIG");
    for p in defaults {
        let dot = if p.is_relative() { "./" } else { "" };
        let _ = write!(looked, ", {dot}{}", p.display());
    }
    Err(fail(looked))
}

/// Load, substitute, override from the process environment, decode and validate.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<String>| ConfigError {
        source: Some(path.to_path_buf()),
        problems,
    };
    let text = yaml::read_capped(path).map_err(|e| fail(vec![e]))?;
    let overrides = env::from_process_env().map_err(fail)?;
    let mut cfg = load_from_str(&text, Some(path), &process_env, &overrides)?;
    perms::check(path, &text, &mut cfg);
    Ok(cfg)
}

/// `${VAR}` lookups in the real process environment.
fn process_env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable {name} is not valid UTF-8"))
        }
    }
}

/// The whole pipeline on text, with the environment injected: parse →
/// structural key check → `${VAR}` → overrides (`SHEEPDOG_GLOBAL_…`,
/// `SHEEPDOG_PROCESS_…` pairs) → key check again → decode → validate.
pub fn load_from_str(
    text: &str,
    source: Option<&Path>,
    env: &EnvLookup,
    overrides: &[(String, String)],
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<String>| ConfigError {
        source: source.map(Path::to_path_buf),
        problems,
    };
    let shape = &shape::CONFIG;
    let mut value = yaml::parse(text).map_err(|e| fail(vec![e]))?;
    if value.is_null() && overrides.is_empty() {
        return Err(fail(vec![
            "the configuration is empty; expected a map with a processes: section".into(),
        ]));
    }
    let mut report = report::Report::default();
    keys::check(&mut value, shape, "", &mut report);
    let failed = subst::substitute_tree(&mut value, "", env);
    env::apply(&mut value, overrides, shape, &mut report);
    subst::report_failures(failed, &mut report);
    // Overrides may carry whole blocks ({...}); check what they added.
    // `${VAR}` only ever replaces text, so without overrides there is
    // nothing new to check.
    if !overrides.is_empty() {
        keys::check(&mut value, shape, "", &mut report);
    }
    let raw = raw::RawConfig::take(value);
    match validate::build(&raw, source, &mut report) {
        Some(config) => Ok(config),
        None => Err(fail(report.into_problems())),
    }
}
