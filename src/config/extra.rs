//! Configuration keys owned by later issues (health checks, logging, hooks,
//! scheduling, heartbeats, readiness file, …). They are parsed and validated
//! now so seed configs load, but nothing acts on them yet.

/// `global:` keys owned by later issues.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GlobalExtra {}

/// Per-process keys owned by later issues.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessExtra {}
