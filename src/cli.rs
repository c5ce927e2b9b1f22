//! Command line: lexopt → a typed `Command`. No I/O besides reading argv.
//!
//! Invariant: every unknown flag, missing value or stray argument becomes a
//! `UsageError` that names it; parsing never panics and never exits.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::group::Whom;
use crate::status::wait_bound;
pub use crate::status::ScaleBy;

/// Exit codes (DESIGN.md §4).
pub mod exit {
    /// Clean shutdown on request.
    pub const OK: i32 = 0;
    /// A runtime failure: start-up failed, a critical process failed, or all
    /// processes ended and at least one of them failed.
    pub const FAILURE: i32 = 1;
    /// Usage or configuration error.
    pub const USAGE: i32 = 2;
    /// The reader of stdout went away (`sheepdog ctl logs | head -1`):
    /// 128 + SIGPIPE, what the shell reports for cat, grep, jq or kubectl
    /// in the same place, so `set -o pipefail` treats us as it treats them.
    /// Not 0: what was asked for was not all delivered, and a
    /// `ctl trigger --wait` whose run failed must not turn into a success.
    pub const PIPE: i32 = 141;
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `sheepdog [run] [-c FILE] [--dry-run]`
    Run {
        config: Option<PathBuf>,
        dry_run: bool,
    },
    /// `sheepdog check [-c FILE] [--json]`
    Check { config: Option<PathBuf>, json: bool },
    /// `sheepdog [--main] -- CMD [ARG...]`: single-command init; `whom`
    /// the forwarded signals reach (`--main`: CMD alone, not its group).
    Exec { argv: Vec<OsString>, whom: Whom },
    /// `sheepdog version` / `--version`
    Version,
    /// `sheepdog help` / `--help` / `-h`
    Help,
    /// `sheepdog ctl ...`: talk to a running sheepdog.
    Ctl(Ctl),
}

/// `sheepdog ctl [--socket PATH | --url URL] [--token T] [--json] VERB ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctl {
    /// Where to connect; `None` means the default (see docs/ctl.md).
    pub target: Option<Target>,
    /// `--token`; `$SHEEPDOG_API_TOKEN` is read when it runs, not here.
    pub token: Option<String>,
    /// `--token-file`, read when it runs.
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table or message.
    pub json: bool,
    pub action: Action,
}

/// Where `ctl` connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Socket(PathBuf),
    /// `http://host:port` (no TLS).
    Url(String),
}

/// What `ctl` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every process, or one.
    Status(Option<String>),
    Start(String),
    Stop(String),
    Restart(String),
    Scale(String, ScaleBy),
    /// The signal as given (`HUP`, `SIGHUP`, `1`); the API validates it.
    /// To each instance's group, or its main process only (`--main`).
    Signal(String, String, Whom),
    Shutdown,
    /// Recent log records (of one process/instance, or all), then follow.
    Logs(LogsQuery),
    /// Reopen every log file (as SIGUSR1 does).
    ReopenLogs,
    /// Scheduled jobs (a table), or one job with its history.
    Schedules(Option<String>),
    /// Run a job now; `true`: wait for it and exit with its result, for
    /// at most the bound given (`--wait=DURATION`), else as long as the
    /// API waits, up to `TRIGGER_WAIT_CAP`.
    Trigger(String, bool, Option<Duration>),
    Pause(String),
    Resume(String),
    /// Read the configuration file again and apply what changed (as
    /// SIGHUP does).
    Reload,
    Help,
}

/// `ctl logs [NAME] [--tail N] [--stream S] [--follow]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsQuery {
    pub name: Option<String>,
    pub tail: usize,
    pub stream: Option<String>,
    pub follow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see 'sheepdog --help')", self.0)
    }
}

impl std::error::Error for UsageError {}

/// lexopt's "invalid option '--jsn'", with the option that was probably
/// meant among `known` (long names).
fn unexpected(arg: lexopt::Arg<'_>, known: &[&str]) -> UsageError {
    let hint = match arg {
        lexopt::Arg::Long(name) => crate::config::suggest::closest(name, known.iter().copied())
            .map_or(String::new(), |k| format!("; did you mean '--{k}'?")),
        _ => String::new(),
    };
    UsageError(format!("{}{hint}", arg.unexpected()))
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

pub const HELP: &str = "\
sheepdog — process supervisor and container init

USAGE:
    sheepdog [run] [-c FILE] [--dry-run]   run the supervisor (the default command)
    sheepdog check [-c FILE] [--json]      validate the config and print the plan:
                                           start order, stop order, shutdown budget
    sheepdog [--main] -- CMD [ARG...]      single-command init: run CMD, forward
                                           signals to its process group (--main: to
                                           CMD alone), reap orphans, exit with its code
    sheepdog ctl [OPTIONS] VERB [NAME] [ARG]
                                           talk to a running sheepdog through its API:
                                           status [NAME], start|stop|restart NAME,
                                           scale NAME N|+N|-N, signal NAME SIG,
                                           logs [NAME] [--follow], schedules, trigger,
                                           pause, resume, reload, shutdown
                                           (see 'sheepdog ctl --help')
    sheepdog version                       print the version
    sheepdog help                          print this help

OPTIONS:
    -c, --config FILE   configuration file; default: $SHEEPDOG_CONFIG, then
                        ./sheepdog.yaml, then /etc/sheepdog/sheepdog.yaml
    --dry-run           validate and print the plan without starting anything
    --json              (check) print the plan as JSON

SIGNALS (run):
    TERM, INT, QUIT,    stop everything in reverse dependency order, then exit;
    PWR                 a second TERM or INT kills what is left at once
    HUP                 read the config file again and apply what changed
    USR1                reopen log files

EXIT CODES:
    0    clean shutdown on request (or a successful check/dry-run)
    1    runtime failure: start-up failed, a critical process failed, or every
         process ended and at least one failed
    2    usage or configuration error
    -- CMD mode exits with CMD's code, or 128+N when CMD died of signal N;
         127 when CMD was not found, 126 when it could not be executed.

Docs: docs/configuration.md, docs/cli.md, docs/ctl.md, docs/api.md and the
rest of docs/ (README.md lists every page)
";

#[cfg(feature = "api")]
pub const CTL_HELP: &str = "\
sheepdog ctl — status and control of a running sheepdog, through its API

USAGE:
    sheepdog ctl [OPTIONS] status [NAME]       processes and instances (a table)
    sheepdog ctl [OPTIONS] start NAME          start a stopped process
    sheepdog ctl [OPTIONS] stop NAME           stop a process (graceful, idempotent); a job: its runs going now
    sheepdog ctl [OPTIONS] restart NAME        rolling restart, one instance at a time
    sheepdog ctl [OPTIONS] scale NAME N        run N instances (+N / -N: change by N)
    sheepdog ctl [OPTIONS] signal NAME SIG     send SIG (HUP, SIGUSR1, 10) to every instance
          [--main]                             to each one's process group; --main: to
                                               its main process only (a reload of a
                                               master/worker daemon such as php-fpm)
    sheepdog ctl [OPTIONS] reload              read the config file again and apply what
                                               changed, as SIGHUP does (exit 1 if invalid)
    sheepdog ctl [OPTIONS] shutdown            shut sheepdog down, as SIGTERM does
    sheepdog ctl [OPTIONS] logs [NAME]         recent log lines (a process, an instance, or all)
          [--tail N] [--stream stdout|stderr] [--follow]   N lines (100); then keep following
    sheepdog ctl [OPTIONS] logs --reopen       reopen every log file, as SIGUSR1 does
    sheepdog ctl [OPTIONS] schedules [NAME]    scheduled jobs (a table), or one job's history
    sheepdog ctl [OPTIONS] trigger NAME [--wait[=DURATION]]
                                               run a scheduled job now; --wait: until it
                                               ends (24h at most), exiting 0 only if it
                                               succeeded
    sheepdog ctl [OPTIONS] pause NAME          no more scheduled runs of NAME
    sheepdog ctl [OPTIONS] resume NAME         scheduled runs of NAME again

OPTIONS:
    --socket PATH   connect to the API's unix socket
    --url URL       connect to http://HOST:PORT[/PREFIX]
    --token TOKEN   bearer token; default: $SHEEPDOG_API_TOKEN
    --token-file F  read the token from file F
    --json          print the API's JSON response
    -h, --help      print this help

Without --socket or --url: $SHEEPDOG_API_SOCKET, else $SHEEPDOG_API_URL, else
/run/sheepdog.sock if it exists, else http://127.0.0.1:9180.

EXIT CODES:
    0    done (or accepted: progress shows in 'status')
    1    the API answered with an error, or could not be reached
    2    usage error
";

/// Parse the arguments after argv[0].
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut sub: Option<String> = None;
    let mut config: Option<PathBuf> = None;
    let mut dry_run = false;
    let mut json = false;
    let mut main_only = false;

    loop {
        // `--` ends our options. Check before lexopt consumes it: what follows
        // is the child's argv, handed over untouched.
        if parser_saw_double_dash(&mut parser) {
            let argv: Vec<OsString> = parser.raw_args()?.collect();
            if argv.is_empty() {
                return Err(UsageError(
                    "'--' must be followed by a command to run".into(),
                ));
            }
            // Named, the first of them: which word to drop.
            let other = match (&sub, config.is_some(), dry_run, json) {
                (Some(sub), ..) => sub.as_str(),
                (_, true, ..) => "--config",
                (_, _, true, _) => "--dry-run",
                (.., true) => "--json",
                _ => "",
            };
            if !other.is_empty() {
                return Err(UsageError(format!(
                    "'-- CMD' takes no other options or commands: got {other}"
                )));
            }
            let whom = if main_only { Whom::Main } else { Whom::Group };
            return Ok(Command::Exec { argv, whom });
        }
        let Some(arg) = parser.next()? else { break };
        let options = config.is_some() || dry_run || json || main_only;
        match arg {
            Short('c') | Long("config") => {
                let v: PathBuf = parser.value()?.into();
                if v.as_os_str().is_empty() {
                    return Err(UsageError(
                        "--config needs a file name, got an empty string".into(),
                    ));
                }
                if let Some(first) = &config {
                    return Err(UsageError(format!(
                        "--config given twice ('{}' and '{}'); give one file",
                        first.display(),
                        v.display()
                    )));
                }
                config = Some(v);
            }
            Long("dry-run") => dry_run = true,
            Long("json") => json = true,
            Long("main") => main_only = true,
            Short('h') | Long("help") => {
                return last(&mut parser, "--help").map(|()| Command::Help)
            }
            Short('V') | Long("version") => return version(&mut parser, sub.is_some() || options),
            Value(v) if sub.is_none() => {
                let name = v.into_string().map_err(|v| {
                    UsageError(format!("unknown command {:?}", v.to_string_lossy()))
                })?;
                match name.as_str() {
                    "ctl" => {
                        if options {
                            return Err(UsageError(
                                "'ctl' takes its options after it: sheepdog ctl [--json] VERB ..."
                                    .into(),
                            ));
                        }
                        return parse_ctl(&mut parser).map(Command::Ctl);
                    }
                    "run" | "check" => sub = Some(name),
                    "version" => return version(&mut parser, options),
                    "help" => return last(&mut parser, "help").map(|()| Command::Help),
                    other => {
                        // A typo of a command, or a program to run as with
                        // dumb-init (`dumb-init nginx`), which needs `--` here.
                        let run = format!(
                            "to run '{other}' as the container's command: sheepdog {}-- {other} ...",
                            if main_only { "--main " } else { "" }
                        );
                        let hint = match crate::config::suggest::closest(
                            other,
                            ["run", "check", "ctl", "version", "help"],
                        ) {
                            Some(c) => format!("did you mean '{c}'? ({run})"),
                            None => run,
                        };
                        return Err(UsageError(format!(
                            "unknown command '{other}'; expected run, check, ctl, version, help \
                             or -- CMD; {hint}"
                        )));
                    }
                }
            }
            Value(v) => {
                return Err(UsageError(format!(
                    "unexpected argument '{}'",
                    v.to_string_lossy()
                )))
            }
            _ => {
                return Err(unexpected(
                    arg,
                    &["config", "dry-run", "json", "main", "help", "version"],
                ))
            }
        }
    }
    if main_only {
        return Err(UsageError(
            "--main goes with '-- CMD' (signals to CMD alone, not its group)".into(),
        ));
    }

    match sub.as_deref() {
        Some("check") => {
            if dry_run {
                return Err(UsageError("--dry-run belongs to 'run', not 'check'".into()));
            }
            Ok(Command::Check { config, json })
        }
        _ => {
            if json {
                return Err(UsageError("--json belongs to 'check'".into()));
            }
            Ok(Command::Run { config, dry_run })
        }
    }
}

/// `version` takes nothing before or after it: a typo there, or a
/// `check -c FILE --version` that would print the version and check
/// nothing, would otherwise pass unnoticed in a script.
fn version(parser: &mut lexopt::Parser, others: bool) -> Result<Command, UsageError> {
    if others {
        return Err(UsageError(
            "version takes no other options or commands".into(),
        ));
    }
    last(parser, "version").map(|()| Command::Version)
}

/// `what` (help, version) ends the command line: anything after it is a
/// usage error naming it, not silently ignored.
fn last(parser: &mut lexopt::Parser, what: &str) -> Result<(), UsageError> {
    match parser.next()? {
        None => Ok(()),
        Some(lexopt::Arg::Value(v)) => Err(UsageError(format!(
            "unexpected argument '{}' after '{what}'",
            v.to_string_lossy()
        ))),
        Some(arg) => Err(unexpected(arg, &[])),
    }
}

/// The rest of `sheepdog ctl ...`.
fn parse_ctl(parser: &mut lexopt::Parser) -> Result<Ctl, UsageError> {
    use lexopt::prelude::*;
    let mut target: Option<Target> = None;
    let mut token: Option<String> = None;
    let mut token_file: Option<PathBuf> = None;
    let mut json = false;
    let mut words: Vec<String> = Vec::new();
    let mut logs = LogsQuery {
        name: None,
        tail: 100,
        stream: None,
        follow: false,
    };
    let mut reopen = false;
    let mut log_flags = false;
    let mut main_only = false;
    let mut tail_set = false;
    let mut wait_for = None;
    // A value option given twice is refused, as `-c` is: which one was meant?
    let twice = |flag: &str| UsageError(format!("{flag} given twice; give it once"));
    let mut set_target = |t: Target| match target.replace(t) {
        None => Ok(()),
        Some(Target::Url(_)) if matches!(target, Some(Target::Url(_))) => Err(twice("--url")),
        Some(Target::Socket(_)) if matches!(target, Some(Target::Socket(_))) => {
            Err(twice("--socket"))
        }
        Some(_) => Err(UsageError("use only one of --socket and --url".into())),
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("socket") => {
                let v: PathBuf = parser.value()?.into();
                if v.as_os_str().is_empty() {
                    return Err(UsageError("--socket needs a path".into()));
                }
                set_target(Target::Socket(v))?;
            }
            Long("url") => {
                let v = utf8(parser.value()?, "--url")?;
                set_target(api_url("--url", &v).map_err(UsageError)?)?;
            }
            Long("token") => {
                let v = utf8(parser.value()?, "--token")?;
                if token.replace(v).is_some() {
                    return Err(twice("--token"));
                }
            }
            Long("token-file") => {
                let v: PathBuf = parser.value()?.into();
                if token_file.replace(v).is_some() {
                    return Err(twice("--token-file"));
                }
            }
            Long("json") => json = true,
            Long("tail") | Short('n') => {
                if std::mem::replace(&mut tail_set, true) {
                    return Err(twice("--tail"));
                }
                let v = utf8(parser.value()?, "--tail")?;
                logs.tail = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        UsageError(format!("--tail: invalid value {v:?}; expected 1 to 10000"))
                    })?;
                log_flags = true;
            }
            Long("stream") => {
                let v = utf8(parser.value()?, "--stream")?;
                if v != "stdout" && v != "stderr" {
                    return Err(UsageError(format!(
                        "--stream: invalid value {v:?}; expected stdout or stderr"
                    )));
                }
                if logs.stream.replace(v).is_some() {
                    return Err(twice("--stream"));
                }
                log_flags = true;
            }
            Long("follow") | Short('f') => {
                logs.follow = true;
                log_flags = true;
            }
            Long("reopen") => {
                reopen = true;
                log_flags = true;
            }
            Long("wait") => {
                if let Some(v) = parser.optional_value() {
                    let v = utf8(v, "--wait")?;
                    wait_for =
                        Some(wait_bound(&v).map_err(|e| UsageError(format!("--wait: {e}")))?);
                }
                words.push("--wait".into());
            }
            Long("main") => main_only = true,
            Short('h') | Long("help") => {
                last(parser, "--help")?;
                return Ok(Ctl {
                    target: None,
                    token: None,
                    token_file: None,
                    json,
                    action: Action::Help,
                });
            }
            // `scale NAME -2`: lexopt reads "-2" as short flags.
            Short(c) if c.is_ascii_digit() && words.len() == 2 && words[0] == "scale" => {
                let rest = match parser.optional_value() {
                    Some(v) => utf8(v, "the instance count")?,
                    None => String::new(),
                };
                words.push(format!("-{c}{rest}"));
            }
            Value(v) => words.push(utf8(v, "arguments")?),
            _ => {
                return Err(unexpected(
                    arg,
                    &[
                        "socket",
                        "url",
                        "token",
                        "token-file",
                        "json",
                        "tail",
                        "stream",
                        "follow",
                        "reopen",
                        "wait",
                        "main",
                        "help",
                    ],
                ))
            }
        }
    }
    let mut action = ctl_action(&words)?;
    if let Action::Trigger(_, true, bound) = &mut action {
        *bound = wait_for;
    }
    if main_only {
        match &mut action {
            Action::Signal(_, _, whom) => *whom = Whom::Main,
            _ => return Err(UsageError("--main goes with 'ctl signal NAME SIG'".into())),
        }
    }
    match &mut action {
        Action::Logs(q) if reopen => {
            // (`q` has the name; the flags are in `logs`.)
            if q.name.is_some() || logs.follow || logs.stream.is_some() || tail_set {
                return Err(UsageError(
                    "'ctl logs --reopen' takes no name or other flags".into(),
                ));
            }
            action = Action::ReopenLogs;
        }
        Action::Logs(q) => {
            logs.name = q.name.take();
            *q = logs;
        }
        _ if log_flags => {
            return Err(UsageError(
                "--tail, --stream, --follow and --reopen belong to 'ctl logs'".into(),
            ))
        }
        _ => {}
    }
    if token.is_some() && token_file.is_some() {
        return Err(UsageError(
            "use only one of --token and --token-file".into(),
        ));
    }
    Ok(Ctl {
        target,
        token,
        token_file,
        json,
        action,
    })
}

fn utf8(v: OsString, what: &str) -> Result<String, UsageError> {
    v.into_string().map_err(|v| {
        UsageError(format!(
            "{what}: not valid UTF-8: {:?}",
            v.to_string_lossy()
        ))
    })
}

/// Where ctl connects, from `--url` or `$SHEEPDOG_API_URL` (`what`): the
/// one check of both, so they take the same URLs.
pub fn api_url(what: &str, url: &str) -> Result<Target, String> {
    match split_url(url) {
        Ok(_) => Ok(Target::Url(url.trim_end_matches('/').into())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// `http://AUTHORITY[/PREFIX]` → (authority, prefix without a trailing `/`).
/// Not `http_client`'s URL: ctl's may end in a path prefix (a reverse
/// proxy's) and nothing else, and std resolves the authority (`has_port`).
/// No control characters: the prefix goes into the request line.
pub fn split_url(url: &str) -> Result<(&str, &str), String> {
    // `user:password@` is never echoed: this error reaches CI logs.
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    if let Some(at) = url[start..end].rfind('@') {
        let shown = [&url[..start], "***", &url[start + at..]].concat();
        return Err(format!(
            "invalid URL '{}': a user or password in the URL is not supported; \
             give the token with $SHEEPDOG_API_TOKEN or --token",
            crate::logging::escaped(&shown)
        ));
    }
    let bad = || {
        format!(
            "invalid URL '{}'; expected http://HOST:PORT, optionally with a /PREFIX \
             (https is not supported)",
            crate::logging::escaped(url)
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !authority_ok(authority) || prefix.contains(|c: char| c.is_control() || "?# ".contains(c)) {
        return Err(bad());
    }
    Ok((authority, prefix.trim_end_matches('/')))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` with a non-empty host and a
/// port 1-65535: what a connection can use. Else the lookup failed later,
/// an exit 1 as if the API were down.
fn authority_ok(authority: &str) -> bool {
    let (host, port) = match authority.rfind(':') {
        Some(i) if has_port(authority) => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let host_ok = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').is_some_and(|h| !h.is_empty()),
        None => !host.is_empty() && !host.contains([':', '[', ']', '@', '?', '#', ' ']),
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `host:port`, `[v6]:port` have one; `host`, `[v6]` do not.
/// Not a splitter like `resolve::split`: it only decides whether to add
/// `:80`, and std's `ToSocketAddrs` parses the result and names a bad port.
pub fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

fn ctl_action(words: &[String]) -> Result<Action, UsageError> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let need = |verb: &str, what: &str| UsageError(format!("'ctl {verb}' needs {what}"));
    let extra = |x: &str| Err(UsageError(format!("unexpected argument '{x}'")));
    // An empty name would ask for `/api/v1/processes//VERB`.
    let opt_name = |verb: &str| -> Result<Option<String>, UsageError> {
        match w.get(1) {
            Some(&"") => Err(UsageError(format!(
                "'ctl {verb}': the process name is empty; expected a process name"
            ))),
            n => Ok(n.map(|s| s.to_string())),
        }
    };
    let name = |verb: &str| -> Result<String, UsageError> {
        opt_name(verb)?.ok_or_else(|| need(verb, "a process name"))
    };
    let action = match w.first().copied() {
        None => {
            return Err(UsageError(
                "'ctl' needs a command: status, start, stop, restart, scale, signal, logs, reload, shutdown, schedules, trigger, pause or resume"
                    .into(),
            ))
        }
        Some("help") => match w.get(1) {
            Some(x) => return extra(x),
            None => return Ok(Action::Help),
        },
        Some("status") => Action::Status(opt_name("status")?),
        Some(v @ ("start" | "stop" | "restart")) => {
            let n = name(v)?;
            match v {
                "start" => Action::Start(n),
                "stop" => Action::Stop(n),
                _ => Action::Restart(n),
            }
        }
        Some("scale") => {
            let n = name("scale")?;
            let count = w
                .get(2)
                .ok_or_else(|| need("scale", "a count: N, +N or -N"))?;
            Action::Scale(n, scale_by(count)?)
        }
        Some("signal") => {
            let n = name("signal")?;
            let sig = w
                .get(2)
                .ok_or_else(|| need("signal", "a signal, such as HUP"))?;
            Action::Signal(n, sig.to_string(), Whom::Group)
        }
        Some("shutdown") => Action::Shutdown,
        Some("reload") => Action::Reload,
        Some("logs") => {
            if w.len() > 2 {
                return extra(w[2]);
            }
            Action::Logs(LogsQuery { name: opt_name("logs")?, tail: 100, stream: None, follow: false })
        }
        Some("schedules") => Action::Schedules(opt_name("schedules")?),
        Some("trigger") => {
            let n = name("trigger")?;
            Action::Trigger(n, w.get(2) == Some(&"--wait"), None)
        }
        Some("pause") => Action::Pause(name("pause")?),
        Some("resume") => Action::Resume(name("resume")?),
        Some(other) => {
            return Err(UsageError(format!(
                "unknown ctl command '{other}'; expected status, start, stop, restart, scale, signal, logs, reload, shutdown, schedules, trigger, pause or resume"
            )))
        }
    };
    if w.contains(&"--wait") && !matches!(action, Action::Trigger(_, true, _)) {
        return Err(UsageError("--wait goes with 'ctl trigger NAME'".into()));
    }
    let used = match &action {
        Action::Status(Some(_))
        | Action::Start(_)
        | Action::Stop(_)
        | Action::Restart(_)
        | Action::Schedules(Some(_))
        | Action::Trigger(_, false, _)
        | Action::Pause(_)
        | Action::Resume(_) => 2,
        Action::Scale(..) | Action::Signal(..) | Action::Trigger(_, true, _) => 3,
        Action::Logs(q) => 1 + usize::from(q.name.is_some()),
        Action::Status(None)
        | Action::Schedules(None)
        | Action::Shutdown
        | Action::Reload
        | Action::ReopenLogs
        | Action::Help => 1,
    };
    match w.get(used) {
        Some(x) => extra(x),
        None => Ok(action),
    }
}

fn scale_by(s: &str) -> Result<ScaleBy, UsageError> {
    let bad = || {
        UsageError(format!(
            "invalid instance count '{s}'; expected N (run N instances), +N or -N (change by N)"
        ))
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if let Some(d) = s.strip_prefix('+') {
        if !digits(d) {
            return Err(bad());
        }
        return d.parse::<i32>().map(ScaleBy::Delta).map_err(|_| bad());
    }
    if let Some(d) = s.strip_prefix('-') {
        if !digits(d) {
            return Err(bad());
        }
        return d
            .parse::<i32>()
            .map(|n| ScaleBy::Delta(-n))
            .map_err(|_| bad());
    }
    if !digits(s) {
        return Err(bad());
    }
    s.parse::<u32>().map(ScaleBy::To).map_err(|_| bad())
}

/// True when the next raw argument is `--`; consumes it.
fn parser_saw_double_dash(parser: &mut lexopt::Parser) -> bool {
    let Some(mut raw) = parser.try_raw_args() else {
        return false;
    };
    let dash = raw.peek().is_some_and(|a| a == "--");
    if dash {
        raw.next();
    }
    dash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn default_is_run() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Run {
                config: None,
                dry_run: false
            }
        );
    }

    #[test]
    fn run_with_config_and_dry_run() {
        assert_eq!(
            p(&["run", "-c", "x.yaml", "--dry-run"]).unwrap(),
            Command::Run {
                config: Some("x.yaml".into()),
                dry_run: true
            }
        );
        assert_eq!(
            p(&["--config=y.yaml"]).unwrap(),
            Command::Run {
                config: Some("y.yaml".into()),
                dry_run: false
            }
        );
    }

    #[test]
    fn check_json() {
        assert_eq!(
            p(&["check", "--json", "-c", "a"]).unwrap(),
            Command::Check {
                config: Some("a".into()),
                json: true
            }
        );
    }

    /// The error names what is in the way, not just "other options".
    #[test]
    fn exec_mode_names_the_option_it_refuses() {
        for (bad, named) in [
            (&["check", "--", "true"][..], "got check"),
            (&["-c", "a.yaml", "--", "true"], "got --config"),
            (&["--dry-run", "--", "true"], "got --dry-run"),
            (&["--json", "--", "true"], "got --json"),
        ] {
            let msg = p(bad).unwrap_err().0;
            assert!(msg.contains(named), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn exec_mode_keeps_child_flags() {
        assert_eq!(
            p(&["--", "sh", "-c", "exit 3", "--json"]).unwrap(),
            Command::Exec {
                argv: vec!["sh".into(), "-c".into(), "exit 3".into(), "--json".into()],
                whom: Whom::Group,
            }
        );
        assert_eq!(
            p(&["--main", "--", "php-fpm", "-F"]).unwrap(),
            Command::Exec {
                argv: vec!["php-fpm".into(), "-F".into()],
                whom: Whom::Main,
            }
        );
        // After `--` it is CMD's.
        assert_eq!(
            p(&["--", "x", "--main"]).unwrap(),
            Command::Exec {
                argv: vec!["x".into(), "--main".into()],
                whom: Whom::Group,
            }
        );
        for bad in [
            &["--main"][..],
            &["run", "--main"],
            &["--main", "ctl", "status"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_offender() {
        let twice = p(&["-c", "a.yaml", "--config", "b.yaml"]).unwrap_err().0;
        assert!(twice.contains("'a.yaml' and 'b.yaml'"), "{twice}");
        assert!(p(&["version", "extra"]).unwrap_err().0.contains("'extra'"));
        assert!(p(&["--version", "--json"])
            .unwrap_err()
            .0
            .contains("--json"));
        assert_eq!(p(&["version"]).unwrap(), Command::Version);
        assert_eq!(p(&["-V"]).unwrap(), Command::Version);
        // Not the version with the check silently skipped.
        for bad in [
            &["check", "-c", "x.yaml", "--version"][..],
            &["run", "-V"],
            &["-c", "x.yaml", "--version"],
            &["--dry-run", "version"],
            &["--main", "-V"],
        ] {
            let msg = p(bad).unwrap_err().0;
            assert!(msg.contains("version takes no other"), "{bad:?}: {msg}");
        }
        assert!(p(&["--frobnicate"]).unwrap_err().0.contains("frobnicate"));
        assert!(p(&["launch"]).unwrap_err().0.contains("launch"));
        assert!(p(&["--"]).unwrap_err().0.contains("command"));
        assert!(
            p(&["-c"]).unwrap_err().0.contains("config")
                || p(&["-c"]).unwrap_err().0.contains("-c")
        );
        assert!(p(&["check", "--dry-run"])
            .unwrap_err()
            .0
            .contains("dry-run"));
        assert!(p(&["run", "extra"]).unwrap_err().0.contains("extra"));
    }

    #[test]
    fn a_misspelt_option_names_the_one_meant() {
        assert_eq!(
            p(&["check", "--jsn"]).unwrap_err().0,
            "invalid option '--jsn'; did you mean '--json'?"
        );
        assert!(p(&["--dry_run"])
            .unwrap_err()
            .0
            .ends_with("did you mean '--dry-run'?"));
        assert!(p(&["ctl", "--folow", "logs"])
            .unwrap_err()
            .0
            .ends_with("did you mean '--follow'?"));
        // Nothing close: no guess.
        assert_eq!(
            p(&["--frobnicate"]).unwrap_err().0,
            "invalid option '--frobnicate'"
        );
    }

    fn ctl(args: &[&str]) -> Result<Ctl, UsageError> {
        let mut v = vec!["ctl"];
        v.extend_from_slice(args);
        match p(&v)? {
            Command::Ctl(c) => Ok(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ctl_verbs() {
        let c = ctl(&["status"]).unwrap();
        assert_eq!(c.action, Action::Status(None));
        assert_eq!(c.target, None);
        assert!(!c.json);
        let c = ctl(&["--json", "status", "web", "--socket", "/run/x.sock"]).unwrap();
        assert_eq!(c.action, Action::Status(Some("web".into())));
        assert_eq!(c.target, Some(Target::Socket("/run/x.sock".into())));
        assert!(c.json);
        assert_eq!(
            ctl(&[
                "--url",
                "http://127.0.0.1:9180/",
                "--token",
                "t",
                "stop",
                "web"
            ])
            .unwrap(),
            Ctl {
                target: Some(Target::Url("http://127.0.0.1:9180".into())),
                token: Some("t".into()),
                token_file: None,
                json: false,
                action: Action::Stop("web".into())
            }
        );
        assert_eq!(
            ctl(&["restart", "q"]).unwrap().action,
            Action::Restart("q".into())
        );
        assert_eq!(
            ctl(&["start", "q"]).unwrap().action,
            Action::Start("q".into())
        );
        assert_eq!(ctl(&["shutdown"]).unwrap().action, Action::Shutdown);
        assert_eq!(ctl(&["reload"]).unwrap().action, Action::Reload);
        assert_eq!(
            ctl(&["--json", "reload"]).unwrap(),
            Ctl {
                target: None,
                token: None,
                token_file: None,
                json: true,
                action: Action::Reload
            }
        );
        assert_eq!(
            ctl(&["signal", "q", "HUP"]).unwrap().action,
            Action::Signal("q".into(), "HUP".into(), Whom::Group)
        );
        assert_eq!(
            ctl(&["signal", "q", "USR2", "--main"]).unwrap().action,
            Action::Signal("q".into(), "USR2".into(), Whom::Main)
        );
        assert_eq!(
            ctl(&["--main", "signal", "q", "USR2"]).unwrap().action,
            Action::Signal("q".into(), "USR2".into(), Whom::Main)
        );
        assert_eq!(
            ctl(&["stop", "q", "--main"]).unwrap_err().0,
            "--main goes with 'ctl signal NAME SIG'"
        );
        assert!(ctl(&["signal", "q", "HUP", "--main", "--tail", "5"]).is_err());
        assert_eq!(ctl(&["--help"]).unwrap().action, Action::Help);
        assert_eq!(ctl(&["help"]).unwrap().action, Action::Help);
        assert_eq!(ctl(&["--json", "-h"]).unwrap().action, Action::Help);
        // Nothing after help, as after `version`: a usage error naming it.
        for (bad, named) in [
            (&["help", "extra"][..], "'extra'"),
            (&["--help", "extra"], "'extra' after '--help'"),
            (&["-h", "--bogus"], "invalid option '--bogus'"),
            (&["--help", "status"], "'status' after '--help'"),
        ] {
            let msg = ctl(bad).unwrap_err().0;
            assert!(msg.contains(named), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn ctl_scale_counts() {
        let s = |n: &str| ctl(&["scale", "q", n]).map(|c| c.action);
        assert_eq!(s("3").unwrap(), Action::Scale("q".into(), ScaleBy::To(3)));
        assert_eq!(s("0").unwrap(), Action::Scale("q".into(), ScaleBy::To(0)));
        assert_eq!(
            s("+2").unwrap(),
            Action::Scale("q".into(), ScaleBy::Delta(2))
        );
        assert_eq!(
            s("-1").unwrap(),
            Action::Scale("q".into(), ScaleBy::Delta(-1))
        );
        assert_eq!(
            s("-12").unwrap(),
            Action::Scale("q".into(), ScaleBy::Delta(-12))
        );
        for bad in ["x", "+", "3.5", "+-1", "99999999999", "+2147483648"] {
            assert!(s(bad).unwrap_err().0.contains("instance count"), "{bad}");
        }
    }

    #[test]
    fn ctl_errors_name_the_offender() {
        let e = |a: &[&str]| ctl(a).unwrap_err().0;
        assert!(e(&[]).contains("needs a command"));
        assert!(e(&["frob"]).contains("frob"));
        assert!(e(&["stop"]).contains("process name"));
        // An empty name is a usage error (exit 2), not a request for
        // `/api/v1/processes//stop` that the API answers 404.
        for verb in [
            "start",
            "stop",
            "restart",
            "trigger",
            "pause",
            "resume",
            "status",
            "logs",
            "schedules",
        ] {
            assert!(
                e(&[verb, ""]).contains("the process name is empty"),
                "{verb}"
            );
        }
        assert!(e(&["scale", "", "2"]).contains("the process name is empty"));
        // A value option given twice is refused, as -c is, not overridden.
        assert!(e(&["--token", "a", "--token", "b", "status"]).contains("--token given twice"));
        assert!(e(&["logs", "--tail", "1", "-n", "2"]).contains("--tail given twice"));
        assert!(e(&["logs", "--stream", "stdout", "--stream", "stderr"])
            .contains("--stream given twice"));
        assert!(e(&["signal", "", "HUP"]).contains("the process name is empty"));
        assert!(e(&["scale", "q"]).contains("count"));
        assert!(e(&["signal", "q"]).contains("signal"));
        assert!(e(&["stop", "a", "b"]).contains("'b'"));
        assert!(e(&["shutdown", "now"]).contains("'now'"));
        // reload takes no name: the whole file is read again.
        assert!(e(&["reload", "web"]).contains("'web'"));
        assert!(e(&["reload", "--wait"]).contains("--wait goes with 'ctl trigger"));
        // `--wait=DURATION` bounds the wait, up to the cap, which it names.
        assert_eq!(
            ctl(&["trigger", "j", "--wait=90s"]).unwrap().action,
            Action::Trigger("j".into(), true, Some(Duration::from_secs(90)))
        );
        assert_eq!(
            ctl(&["trigger", "j", "--wait"]).unwrap().action,
            Action::Trigger("j".into(), true, None)
        );
        for bad in ["--wait=25h", "--wait=0", "--wait=soon"] {
            let msg = e(&["trigger", "j", bad]);
            // Names what was given, and what is expected.
            let given = format!("got {:?}", &bad["--wait=".len()..]);
            assert!(msg.contains("up to 24h") && msg.contains(&given), "{msg}");
        }
        assert!(e(&["reload", "--wait=1m"]).contains("--wait goes with 'ctl trigger"));
        assert_eq!(
            ctl(&["--token-file", "/t", "status"]).unwrap().token_file,
            Some(PathBuf::from("/t"))
        );
        assert!(e(&["--token", "a", "--token-file", "/t", "status"]).contains("only one"));
        assert!(e(&["--token-file", "/t", "--token-file", "/u", "status"])
            .contains("--token-file given twice"));
        assert!(e(&["frob"]).contains("reload"));
        assert!(e(&["--socket", "/a", "--url", "http://x:1", "status"]).contains("only one"));
        assert!(e(&["--url", "https://x", "status"]).contains("https"));
        assert!(e(&["--url", "x:1", "status"]).contains("http://"));
        // A /PREFIX, as $SHEEPDOG_API_URL takes it (one check for both).
        assert_eq!(
            ctl(&["--url", "http://x:1/api/", "status"]).unwrap().target,
            Some(Target::Url("http://x:1/api".into()))
        );
        assert!(e(&["--url", "http://x:0", "status"]).contains("'http://x:0'"));
        // Given twice: which one was meant? Named as --token is.
        assert!(e(&["--url", "http://x:1", "--url", "http://y:1", "status"])
            .contains("--url given twice"));
        assert!(e(&["--socket", "/a", "--socket", "/b", "status"]).contains("--socket given twice"));
        assert!(e(&["--bogus", "status"]).contains("bogus"));
        assert!(e(&["-x", "status"]).contains("-x"));
        assert!(p(&["-c", "x", "ctl", "status"])
            .unwrap_err()
            .0
            .contains("ctl"));
    }

    #[test]
    fn urls_split_into_address_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:9180").unwrap(),
            ("127.0.0.1:9180", "")
        );
        assert_eq!(
            split_url("http://[::1]:9180/sheepdog/").unwrap(),
            ("[::1]:9180", "/sheepdog")
        );
        assert!(split_url("https://x:1")
            .unwrap_err()
            .contains("https is not supported"));
        assert!(split_url("http://x:1/a?b").is_err());
        assert!(split_url("x:1").unwrap_err().contains("'x:1'"));
        assert_eq!(
            split_url("http://admin:s3cret@x:1/p").unwrap_err(),
            "invalid URL 'http://***@x:1/p': a user or password in the URL is not supported; \
             give the token with $SHEEPDOG_API_TOKEN or --token"
        );
        let e = split_url("u:s3cret@w@x:1").unwrap_err();
        assert!(e.starts_with("invalid URL '***@x:1'"), "{e}");
        assert!(split_url("http:///path").is_err());
        // The prefix goes into the request line: no line breaks there.
        assert_eq!(
            split_url("http://x:1/a\r\nX: y").unwrap_err(),
            "invalid URL 'http://x:1/a\\r\\nX: y'; expected http://HOST:PORT, optionally \
             with a /PREFIX (https is not supported)"
        );
        assert!(has_port("x:1") && has_port("[::1]:9180"));
        assert!(!has_port("x") && !has_port("[::1]"));
    }

    #[test]
    fn version_and_help() {
        assert_eq!(p(&["version"]).unwrap(), Command::Version);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
        assert_eq!(p(&["help"]).unwrap(), Command::Help);
        assert_eq!(
            p(&["check", "-c", "x.yaml", "--help"]).unwrap(),
            Command::Help
        );
        // Nothing may follow help (or version): a usage error naming it,
        // not the help printed with the rest ignored.
        for (bad, named) in [
            (
                &["help", "extra"][..],
                "unexpected argument 'extra' after 'help'",
            ),
            (&["--help", "--bogus"], "invalid option '--bogus'"),
            (&["-h", "run"], "unexpected argument 'run' after '--help'"),
            (&["help", "-x"], "invalid option '-x'"),
            (&["version", "--json"], "invalid option '--json'"),
        ] {
            assert_eq!(p(bad).unwrap_err().0, named, "{bad:?}");
        }
        // The exit codes of docs/cli.md, the exec failures included.
        for code in ["0 ", "1 ", "2 ", "128+N", "127", "126"] {
            assert!(HELP.contains(code), "{code}");
        }
    }

    /// Random argument lists from the words both parsers know, plus junk
    /// and non-UTF-8: each is a command or a usage error with a message,
    /// never a panic. Seeded, so a failure replays.
    #[test]
    fn any_argument_list_is_a_command_or_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        #[rustfmt::skip]
        const WORDS: &[&str] = &[
            "run", "check", "version", "help", "ctl", "--", "-c", "--config", "--config=",
            "--dry-run", "--json", "-h", "--help", "-V", "-x", "", "-", "--=", "-cx.yaml",
            "status", "start", "stop", "restart", "scale", "signal", "logs", "schedules",
            "pause", "resume", "trigger", "history", "shutdown", "web", "--socket", "--url",
            "http://127.0.0.1:1", "https://x", "--token", "--tail", "-n", "-5", "0", "-3",
            "99999999999999999999", "--stream", "stderr", "bogus", "--follow", "-f",
            "--reopen", "--wait", "HUP", "SIGKILL", "9", "-9", "ünïcode", "reload",
        ];
        let mut rng = crate::seeded::Rng(0x05ee_dd09);
        let mut below = |n: usize| rng.below(n);
        let mut errors = 0;
        for _ in 0..5000 {
            let args: Vec<OsString> = (0..below(7))
                .map(|_| match below(20) {
                    0 => OsString::from_vec(vec![b'-', b'-', 0xff, b'x']),
                    1 => OsString::from_vec(vec![0xc3]),
                    _ => OsString::from(WORDS[below(WORDS.len())]),
                })
                .collect();
            if let Err(UsageError(msg)) = parse(args.clone()) {
                assert!(!msg.trim().is_empty(), "{args:?}: an empty message");
                errors += 1;
            }
        }
        // Most random lists are wrong somewhere; if none were, the
        // generator is not reaching the error paths.
        assert!(errors > 1000, "only {errors} usage errors");
    }
}
