//! The report printed by `sheepdog check` and `sheepdog run --dry-run`:
//! processes and instances, start order by level, stop order and the
//! shutdown budget, as text for people or JSON for tools. Pure formatting.

use crate::config::Config;
use crate::plan::Plan;

/// The human-readable report.
pub fn render_text(config: &Config, plan: &Plan) -> String {
    let _ = (config, plan);
    String::new()
}

/// The same report as JSON.
pub fn render_json(config: &Config, plan: &Plan) -> serde_json::Value {
    let _ = (config, plan);
    serde_json::Value::Null
}
