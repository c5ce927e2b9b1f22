//! Building and starting one instance's child process.
