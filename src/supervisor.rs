//! The central state machine.
use crate::config::Config;
use crate::plan::Plan;

pub fn run(config: Config, plan: Plan) -> i32 {
    let _ = (config, plan);
    crate::cli::exit::FAILURE
}
