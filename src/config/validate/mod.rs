//! The `raw` blocks → the resolved `model::Config`, with every check that
//! needs types: values, ranges, enums, commands, credentials, cross-process
//! dependencies. Each submodule owns one part of the document.
//!
//! Invariant: `build` returns `Some` only when the `Report` holds no
//! problems, and then every guarantee listed in `model.rs` holds.

mod extra;
mod global;
mod hooks;
mod process;

#[cfg(feature = "api")]
pub use global::{check_token, is_loopback};
pub use process::scale_ports;

use std::collections::BTreeMap;
use std::path::Path;

use super::model::Config;
use super::raw::{RawConfig, RawGlobal};
use super::report::Report;
use super::value as val;

pub fn build(raw: &RawConfig, source: Option<&Path>, r: &mut Report) -> Option<Config> {
    let version = r.get_or(&raw.version, "version", val::scalar_text, "1.0".into());
    let no_global = RawGlobal::default();
    let global = global::build(raw.global.as_ref().unwrap_or(&no_global), r);
    let hooks = hooks::hooks(raw.hooks.as_ref(), "hooks", r);

    let mut processes = BTreeMap::new();
    for (name, p) in raw.processes.iter().flatten() {
        processes.insert(name.clone(), process::build(name, p, &global, r));
    }
    if r.has_problem_at("processes") {
        // A bad key there already explains why none is left.
    } else if processes.is_empty() {
        r.error(
            "processes",
            "missing; at least one process is required, e.g. processes: {web: {command: [nginx, -g, \"daemon off;\"]}}",
        );
    } else if !processes.values().any(|p| p.enabled) {
        r.error(
            "processes",
            "every process is disabled; expected at least one with enabled: true (the default)",
        );
    }
    process::check_names(&processes, r);
    process::check_dependencies(&processes, r);
    process::check_ports(&processes, &global, r);
    process::check_backoff(&processes, r);
    process::check_api_users(&processes, &hooks, &global, r);
    if let Some(rd) = &global.extra.readiness {
        for name in &rd.processes {
            // Readiness counts enabled longruns (and failed oneshots):
            // a list of only disabled or scheduled ones is ready at once.
            let why = match processes.get(name) {
                None => {
                    r.error(
                        "global.readiness.processes",
                        format!("unknown process {}", val::quote(name)),
                    );
                    continue;
                }
                Some(p) if !p.enabled => "disabled",
                Some(p) if p.extra.schedule.is_some() => "a scheduled job",
                Some(_) => continue,
            };
            r.warn(
                "global.readiness.processes",
                format!(
                    "{} is {why}: it never counts toward readiness",
                    val::quote(name)
                ),
            );
        }
    }

    if !r.problems.is_empty() {
        return None;
    }
    Some(Config {
        version,
        global,
        hooks,
        processes,
        source: source.map(Path::to_path_buf),
        warnings: r.warnings(),
    })
}
