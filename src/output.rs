//! The output thread: child stdout/stderr pipes multiplexed with poll.
