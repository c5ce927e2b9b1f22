//! The HTTP management API and the Prometheus metrics endpoint.
//!
//! `start` binds every configured listener (so a port in use or a bad
//! socket path fails start-up, before any process starts), then starts each
//! server's fixed set of threads (see `server`). Modules:
//! - `server`: listeners, the poll-based I/O thread, the worker pool, and
//!   every per-client bound (connections, head, body, time, rate);
//! - `http`: request parsing and response bytes (pure);
//! - `routes`: the endpoint table and handlers; `openapi`: its document;
//! - `auth`: the bearer token; `ratelimit`: per-peer token buckets;
//! - `metrics`: Prometheus families rendered from the latest snapshot.
//!
//! Invariants:
//! - Readers never block the supervisor: handlers read the published
//!   snapshot or send a control request and wait a bounded time for its
//!   reply (DESIGN.md §1, §2.4).
//! - A TCP listener reachable from other hosts without a token is refused
//!   unless `api_insecure: true` (checked by config validation and again
//!   here, since an open control API runs arbitrary signals as PID 1).

pub mod auth;
mod http;
mod logs;
mod metrics;
mod openapi;
mod ratelimit;
mod routes;
mod server;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::status::{Published, Request};

/// Worker threads of the API server (handlers may wait up to `REPLY_WAIT`).
const API_WORKERS: usize = 4;
// Long waits (logs wait/follow, trigger?wait=true) share fewer slots than
// there are workers, so status, stop and the like always find one free.
const _: () = assert!(logs::MAX_WAITERS < API_WORKERS);
// Every reload caller still waiting fits in the supervisor's queue.
const _: () = assert!(API_WORKERS <= crate::supervisor::MAX_QUEUED_RELOADS);
/// Worker threads of the metrics server (a scrape only renders a snapshot).
const METRICS_WORKERS: usize = 1;
/// Open connections per server.
const MAX_CONNECTIONS: usize = 64;
/// Complete requests waiting for a worker, per server.
const QUEUE: usize = 32;
/// Request bodies held at once per server (beyond small ones), unless
/// `api_max_request_body` is larger: then one body of that size.
const BODY_BUDGET: u64 = 4 << 20;
/// Time a client has to send a whole request, and to take the response.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Start the API and metrics listeners configured in `config.global`, in
/// their own threads. Errors (a port in use) name the config key and address;
/// sheepdog then exits, so a socket bound before the error is removed.
pub fn start(
    config: &Config,
    published: Arc<Published>,
    requests: Sender<Request>,
    logs: Arc<crate::output::buffer::LogStore>,
) -> Result<(), String> {
    let started = start_all(config, published, requests, logs);
    if started.is_err() {
        server::remove_sockets();
    }
    started
}

fn start_all(
    config: &Config,
    published: Arc<Published>,
    requests: Sender<Request>,
    logs: Arc<crate::output::buffer::LogStore>,
) -> Result<(), String> {
    let g = &config.global;
    let counters = metrics::ApiCounters::default();
    let limits = |workers: usize| server::Limits {
        max_body: g.api.max_request_body,
        body_budget: g.api.max_request_body.max(BODY_BUDGET),
        workers,
        max_connections: MAX_CONNECTIONS,
        queue: QUEUE,
        read_timeout: READ_TIMEOUT,
        write_timeout: WRITE_TIMEOUT,
        rate: g.api.rate_limit,
        burst: g.api.rate_burst,
    };
    // Bind everything first, so nothing listens if anything fails.
    let mut api_listeners = Vec::new();
    let mut token = None;
    if g.api.enabled {
        token = auth::Token::load(&g.api)?;
        if g.api.port != 0 {
            if !crate::config::is_loopback(&g.api.listen) && token.is_none() {
                if !g.api.insecure {
                    return Err(format!(
                        "global.api_listen: {} is reachable from other hosts and the API has no token; \
                         refusing to start (set api_auth, or api_insecure: true to accept the risk)",
                        g.api.listen
                    ));
                }
                log::warn!(
                    "api: INSECURE: listening on {}:{} with no token (api_insecure: true); \
                     anyone who can reach it can stop, signal and scale processes",
                    g.api.listen,
                    g.api.port
                );
            }
            api_listeners.push(server::Listener::tcp(
                &g.api.listen,
                g.api.port,
                "global.api_port",
            )?);
        }
        if let Some(path) = &g.api.socket {
            api_listeners.push(server::Listener::unix(path)?);
        }
    }
    let metrics_listener = if g.metrics.enabled {
        Some(server::Listener::tcp(
            &g.metrics.listen,
            g.metrics.port,
            "global.metrics_port",
        )?)
    } else {
        None
    };
    if !api_listeners.is_empty() {
        let api = routes::Api {
            published: published.clone(),
            logs,
            requests,
            token,
            counters: counters.clone(),
            any_host: g.api.insecure && !crate::config::is_loopback(&g.api.listen),
            pong: Default::default(),
        };
        server::spawn("api", api_listeners, limits(API_WORKERS), Arc::new(api))?;
    }
    if let Some(l) = metrics_listener {
        let site = metrics::Site {
            published,
            api: counters,
            path: g.metrics.path.clone(),
        };
        server::spawn("metrics", vec![l], limits(METRICS_WORKERS), Arc::new(site))?;
    }
    Ok(())
}

/// At exit: wait (at most `timeout`) for responses being written, such as
/// the 202 that answered `POST /api/v1/shutdown`.
pub fn drain(timeout: Duration) {
    server::drain(timeout);
    server::remove_sockets();
}

/// What `start` would refuse on this machine, found before anything starts
/// (`run` exits 2 on it, `check` warns): a token file that holds no usable
/// token, a socket whose directory is missing.
pub fn check_files(g: &crate::config::Global) -> Vec<String> {
    let mut problems = Vec::new();
    if !g.api.enabled {
        return problems;
    }
    if let Err(e) = auth::Token::load(&g.api) {
        problems.push(e);
    }
    if let Some(path) = &g.api.socket {
        if let Err(e) = crate::output::sink::check_dir_to(path, "listen on") {
            problems.push(format!("global.api_socket: {e}"));
        }
    }
    problems
}
