//! The per-instance lifecycle thread.
