//! Any text through the whole configuration pipeline (parse, key check,
//! `${VAR}` substitution, overrides, decode, validate) and, when it is
//! valid, the start/stop plan. The invariant under test is the one in
//! src/config/mod.rs: an error or a config, never a panic.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/config/mod.rs"]
mod config;
#[allow(dead_code)]
#[path = "../../src/plan.rs"]
mod plan;
#[allow(dead_code)]
#[path = "../../src/scheduler/zone.rs"]
mod zone;
mod scheduler {
    pub use crate::zone::*;
}
// Validation asks the HTTP client what it would refuse (URLs, headers).
#[allow(dead_code)]
#[path = "../../src/http_client.rs"]
mod http_client;
const VERSION: &str = "fuzz";
#[allow(dead_code)]
#[path = "../../src/resolve.rs"]
mod resolve;

use libfuzzer_sys::fuzz_target;

/// A fixed environment, so a crash reproduces: two variables are set.
fn env(name: &str) -> Result<Option<String>, String> {
    Ok(match name {
        "PORT" => Some("8080".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    })
}

fuzz_target!(|data: &[u8]| {
    // Input after a NUL line becomes `NAME=value` override lines, so the
    // SHEEPDOG_GLOBAL_* / SHEEPDOG_PROCESS_* path is fuzzed too.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, overrides) = text.split_once("\n\0\n").unwrap_or((text, ""));
    let overrides: Vec<(String, String)> = overrides
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(cfg) = config::load_from_str(yaml, None, &env, &overrides) {
        if let Ok(plan) = plan::Plan::build(&cfg) {
            let _ = plan.stop_levels();
            let _ = plan.budget(&cfg).exceeds_limit();
        }
    }
});
