//! The one way sheepdog builds an outgoing HTTP client (ureq, built without
//! TLS): http health checks and heartbeat pings. (`sheepdog ctl` only
//! talks to sheepdog's own API and has its own minimal HTTP/1.0 exchange,
//! `ctl::client`.)
//!
//! Invariants:
//! - Every client has one overall timeout, reports non-2xx answers as
//!   statuses (not errors), and says who it is in `User-Agent`.
//! - Health checks never use a proxy: they talk to this machine,
//!   and an `HTTP_PROXY` set for the application must not send a
//!   `127.0.0.1` probe through a corporate proxy. Heartbeats leave the
//!   machine, so they honour `HTTP_PROXY` / `NO_PROXY` like other tools.

use std::time::Duration;

/// Whether requests may go through a proxy from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// Always connect directly.
    Never,
    /// `HTTP_PROXY`/`ALL_PROXY`, minus `NO_PROXY`, as ureq reads them.
    FromEnv,
}

/// A client with `timeout` for the whole request, following at most
/// `redirects` redirects, announcing itself as `sheepdog/<version> (<what>)`.
pub fn agent(timeout: Duration, redirects: u32, proxy: Proxy, what: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(redirects)
        .http_status_as_error(false)
        .user_agent(format!("sheepdog/{} ({what})", crate::VERSION));
    if proxy == Proxy::Never {
        config = config.proxy(None);
    }
    config.build().into()
}
