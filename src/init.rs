//! Single-command init (`sheepdog -- CMD ARGS`): a drop-in for tini.
//! Runs one child in its own process group, forwards every catchable signal
//! to that group, reaps every orphan through the one reaper, and exits with
//! the child's code (128+N when it died of signal N).

use std::ffi::OsString;

/// Run `argv` as the only child; returns sheepdog's exit code.
pub fn run(argv: Vec<OsString>) -> i32 {
    let _ = argv;
    crate::cli::exit::FAILURE
}
