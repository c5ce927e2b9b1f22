//! The HTTP management API and Prometheus metrics servers.
//! (Being built for the HTTP issue; until then nothing listens.)

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::status::{Published, Request};

/// Start the API and metrics listeners configured in `config.global`, in
/// their own threads. Errors (a port in use) name the address.
pub fn start(
    config: &Config,
    published: Arc<Published>,
    requests: Sender<Request>,
) -> Result<(), String> {
    let _ = (config, published, requests);
    Ok(())
}
