//! sheepdog: a synchronous process supervisor and container init.
//!
//! `main` only parses the command line and dispatches; see DESIGN.md §1 for
//! the threads and §2 for the invariants each module keeps.
#![deny(unsafe_code)]
// Every build is linted strictly. What a build without a feature carries
// for that feature alone (status fields only the API reads) says so where
// it is declared, with a cfg_attr'd allow(dead_code).

/// `print!` and `eprint!` (`err:`) for the commands that print and exit
/// (help, version, check, ctl): through `emit`, which ends the process
/// quietly when the reader is gone, where std's macros panic.
macro_rules! out {
    (err: $($a:tt)*) => { $crate::emit(true, format_args!($($a)*)) };
    ($($a:tt)*) => { $crate::emit(false, format_args!($($a)*)) };
}
/// `out!` with a newline: `println!`, `eprintln!` (`err:`).
macro_rules! outln {
    (err: $($a:tt)*) => { out!(err: "{}\n", format_args!($($a)*)) };
    ($($a:tt)*) => { out!("{}\n", format_args!($($a)*)) };
}

#[cfg(feature = "api")]
mod api;
mod btree;
mod check;
mod child;
mod cli;
mod config;
#[cfg(feature = "api")]
mod ctl;
mod exec_error;
mod group;
mod health;
mod heartbeat;
mod hooks;
#[cfg(feature = "http")]
mod http_client;
#[cfg(any(feature = "api", feature = "http"))]
mod http_text;
mod init;
mod instance;
mod logging;
mod output;
mod plan;
mod ports;
mod probe;
mod reaper;
mod resolve;
mod safe_open;
mod scheduler;
#[cfg(test)]
mod seeded;
mod signals;
mod sorted_map;
mod spawn;
mod status;
mod stdout;
mod stragglers;
mod supervisor;
mod sys;
mod task;

use std::path::PathBuf;

use cli::{exit, Command};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `global.log_file` rotation: at 10 MiB, keeping 5 rotated files.
const OWN_LOG_MAX_SIZE: u64 = 10 << 20;
const OWN_LOG_MAX_FILES: u32 = 5;

fn main() {
    let code = real_main();
    // The last lines (the shutdown's summary) are still with the stdout
    // thread: let them out, unless stdout does not drain.
    log::logger().flush();
    std::process::exit(code);
}

fn real_main() -> i32 {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            outln!(err: "sheepdog: {e}");
            return exit::USAGE;
        }
    };
    match command {
        Command::Help => {
            out!("{}", cli::HELP);
            exit::OK
        }
        Command::Version => {
            outln!("sheepdog {VERSION}");
            exit::OK
        }
        #[cfg(feature = "api")]
        Command::Ctl(c) => ctl::run(c),
        #[cfg(not(feature = "api"))]
        Command::Ctl(_) => {
            outln!(err:
                "sheepdog: ctl talks to the HTTP API, which this build leaves out (cargo feature `api`)"
            );
            exit::USAGE
        }
        Command::Exec { argv, whom } => {
            prepare_process();
            init::run(argv, whom)
        }
        Command::Check { config, json } => report(config, json),
        Command::Run {
            config,
            dry_run: true,
        } => report(config, false),
        Command::Run {
            config,
            dry_run: false,
        } => run(config),
    }
}

/// Write to stdout (`err`: stderr) now. A reader of stdout that went away
/// (EPIPE: `sheepdog ctl logs | head -1`; SIGPIPE is ignored, so the write
/// fails instead of killing us) ends the process at once with
/// `exit::PIPE`, quietly: there is no one left to tell. Another failure of
/// stdout (a full disk) is said on stderr, exit 1: the output is
/// incomplete. A failure of stderr is ignored: the exit code still says
/// what happened.
pub fn emit(err: bool, args: std::fmt::Arguments) {
    use std::io::Write;
    // Formatted first: one `write_all` each, no `dyn Write` (its vtables
    // cost a kilobyte of binary).
    let text = std::fmt::format(args);
    let written = if err {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(text.as_bytes()).and_then(|()| o.flush())
    };
    match written {
        Err(x) if x.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(exit::PIPE),
        Err(x) if !err => {
            outln!(err: "sheepdog: unable to write to stdout: {x}");
            std::process::exit(exit::FAILURE)
        }
        _ => {}
    }
}

/// Start clean, whatever state our parent left us in: no blocked or ignored
/// signals to pass on, no stray descriptors for children to inherit.
fn prepare_process() {
    sys::open_std_fds();
    sys::reset_inherited_signal_state();
    sys::cloexec_inherited_fds();
}

/// Load and plan, or print why not.
/// `load` on a thread of its own, as a reload loads. The decoder recurses
/// once per nesting level; on the main thread the pages it touched would
/// stay in PID 1's resident set for good (44 KiB, of the 2 MiB that one
/// idle process may take); a thread's stack is unmapped when it ends.
fn load_on_a_thread(config: Option<PathBuf>) -> Result<(config::Config, plan::Plan), i32> {
    let thread = std::thread::Builder::new()
        .name("load".into())
        .stack_size(supervisor::LOADER_STACK);
    std::thread::scope(|s| match thread.spawn_scoped(s, || load(config.clone())) {
        // A panic aborts (panic = "abort"): `join` returns what `load` did.
        Ok(h) => h.join().unwrap_or(Err(exit::FAILURE)),
        Err(_) => load(config.clone()),
    })
}

fn load(config: Option<PathBuf>) -> Result<(config::Config, plan::Plan), i32> {
    let loaded = config::discover(config.as_deref()).and_then(|path| config::load(&path));
    let cfg = loaded.map_err(|e| {
        out!(err: "sheepdog: {e}");
        exit::USAGE
    })?;
    let plan = plan::Plan::build(&cfg).map_err(|e| {
        out!(err: "sheepdog: {e}");
        exit::USAGE
    })?;
    Ok((cfg, plan))
}

fn report(config: Option<PathBuf>, json: bool) -> i32 {
    let (mut cfg, plan) = match load(config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // What `run` checks on this machine before it starts anything. Only a
    // warning here: `check` often runs where the image's directories are
    // not (a CI job), and the file itself is valid.
    if let Err(problems) = output::check_files(&cfg, true) {
        for p in problems.lines() {
            cfg.warnings
                .push(format!("{p}; `run` refuses to start until this is fixed"));
        }
    }
    if json {
        outln!("{:#}", check::render_json(&cfg, &plan));
    } else {
        out!("{}", check::render_text(&cfg, &plan));
    }
    exit::OK
}

fn run(config: Option<PathBuf>) -> i32 {
    prepare_process();
    // Before the first thread (the first log line starts one).
    sys::block_realtime_signals();
    // Before the configuration loads, which takes a while for a big one: a
    // SIGTERM meanwhile waits in the self-pipe and starts the shutdown,
    // where PID 1 without a handler would drop it.
    let sigs = match signals::install(signals::SUPERVISOR) {
        Ok(s) => s,
        Err(e) => {
            outln!(err: "sheepdog: unable to install signal handlers: {e}");
            return exit::FAILURE;
        }
    };
    logging::init(config::LogFormat::Text, config::LogLevel::Info);
    let (cfg, plan) = match load_on_a_thread(config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    logging::configure(cfg.global.log_format, cfg.global.log_level);
    let files = output::check_files(&cfg, false).and_then(|()| match &cfg.global.extra.log_file {
        Some(path) => logging::open_own_file(path, OWN_LOG_MAX_SIZE, OWN_LOG_MAX_FILES)
            .map_err(|e| format!("global.log_file: {e}")),
        None => Ok(()),
    });
    if let Err(e) = files {
        for line in e.lines() {
            outln!(err: "sheepdog: {line}");
        }
        return exit::USAGE;
    }
    supervisor::run(cfg, plan, sigs)
}
