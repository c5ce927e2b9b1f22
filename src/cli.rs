//! Command line: lexopt → a typed `Command`. No I/O besides reading argv.
//!
//! Invariant: every unknown flag, missing value or stray argument becomes a
//! `UsageError` that names it; parsing never panics and never exits.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Exit codes (DESIGN.md §4).
pub mod exit {
    /// Clean shutdown on request.
    pub const OK: i32 = 0;
    /// A runtime failure: start-up failed, a critical process failed, or all
    /// processes ended and at least one of them failed.
    pub const FAILURE: i32 = 1;
    /// Usage or configuration error.
    pub const USAGE: i32 = 2;
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
    /// `sheepdog -- CMD [ARG...]`: single-command init.
    Exec { argv: Vec<OsString> },
    /// `sheepdog version` / `--version`
    Version,
    /// `sheepdog help` / `--help` / `-h`
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see 'sheepdog --help')", self.0)
    }
}

impl std::error::Error for UsageError {}

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
    sheepdog -- CMD [ARG...]               single-command init: run CMD, forward
                                           signals, reap orphans, exit with its code
    sheepdog version                       print the version
    sheepdog help                          print this help

OPTIONS:
    -c, --config FILE   configuration file; default: $SHEEPDOG_CONFIG, then
                        ./sheepdog.yaml, then /etc/sheepdog/sheepdog.yaml
    --dry-run           validate and print the plan without starting anything
    --json              (check) print the plan as JSON

EXIT CODES:
    0    clean shutdown on request (or a successful check/dry-run)
    1    runtime failure: start-up failed, a critical process failed, or every
         process ended and at least one failed
    2    usage or configuration error
    -- CMD mode exits with CMD's code, or 128+N when CMD died of signal N.

Docs: docs/configuration.md, docs/cli.md
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
            if sub.is_some() || config.is_some() || dry_run || json {
                return Err(UsageError(
                    "'-- CMD' takes no other options or commands".into(),
                ));
            }
            return Ok(Command::Exec { argv });
        }
        let Some(arg) = parser.next()? else { break };
        match arg {
            Short('c') | Long("config") => {
                let v: PathBuf = parser.value()?.into();
                if v.as_os_str().is_empty() {
                    return Err(UsageError(
                        "--config needs a file name, got an empty string".into(),
                    ));
                }
                config = Some(v);
            }
            Long("dry-run") => dry_run = true,
            Long("json") => json = true,
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) if sub.is_none() => {
                let name = v.into_string().map_err(|v| {
                    UsageError(format!("unknown command {:?}", v.to_string_lossy()))
                })?;
                match name.as_str() {
                    "run" | "check" => sub = Some(name),
                    "version" => return Ok(Command::Version),
                    "help" => return Ok(Command::Help),
                    other => {
                        return Err(UsageError(format!(
                        "unknown command '{other}'; expected run, check, version, help or -- CMD"
                    )))
                    }
                }
            }
            Value(v) => {
                return Err(UsageError(format!(
                    "unexpected argument '{}'",
                    v.to_string_lossy()
                )))
            }
            _ => return Err(arg.unexpected().into()),
        }
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

    #[test]
    fn exec_mode_keeps_child_flags() {
        assert_eq!(
            p(&["--", "sh", "-c", "exit 3", "--json"]).unwrap(),
            Command::Exec {
                argv: vec!["sh".into(), "-c".into(), "exit 3".into(), "--json".into()]
            }
        );
    }

    #[test]
    fn errors_name_the_offender() {
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
    fn version_and_help() {
        assert_eq!(p(&["version"]).unwrap(), Command::Version);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
    }
}
