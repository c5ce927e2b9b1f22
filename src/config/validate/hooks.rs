//! Hook objects and hook lists (global `hooks:`, per-process `hooks:`,
//! `shutdown.pre_stop_hook`). Both spellings of a list (`pre_start` and the
//! seed's `pre-start`) are accepted; setting both is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use super::super::creds::{self, CredError};
use super::super::model::{Credentials, Hook, Hooks};
use super::super::raw::{RawHook, RawHooks};
use super::super::report::{index, join, under, Report};
use super::super::value as val;

/// One hook object at `path`; `None` if it has errors.
pub fn hook(raw: &RawHook, path: &str, r: &mut Report) -> Option<Hook> {
    let p = under(path);
    let before = r.problems.len();
    let name = r.get(&raw.name, p("name"), val::text);
    if raw.name.is_none() {
        r.error(
            p("name"),
            "missing; every hook needs a name (used in logs and metrics)",
        );
    }
    let command = r.get(&raw.command, p("command"), val::argv);
    if raw.command.is_none() {
        r.error(
            p("command"),
            "missing; expected a list of arguments or a shell command string",
        );
    }
    let timeout = r.get_or(
        &raw.timeout,
        p("timeout"),
        positive_duration,
        Duration::from_secs(30),
    );
    let retry = r.get_or(&raw.retry, p("retry"), |v| val::uint32(v, 0, 1000), 0);
    let retry_delay = r.get_or(
        &raw.retry_delay,
        p("retry_delay"),
        val::duration,
        Duration::ZERO,
    );
    let continue_on_error = r.get_or(
        &raw.continue_on_error,
        p("continue_on_error"),
        val::boolean,
        false,
    );
    let env = env_map(raw.env.as_ref(), &p("env").path(), r);
    let working_dir = r
        .get(&raw.working_dir, p("working_dir"), val::text)
        .map(PathBuf::from);
    let credentials = credentials(&raw.user, &raw.group, path, r);
    if r.problems.len() != before {
        return None;
    }
    Some(Hook {
        name: name?,
        command: command?,
        timeout,
        retry,
        retry_delay,
        continue_on_error,
        env,
        working_dir,
        credentials,
    })
}

/// The four hook lists under `path`.
pub fn hooks(raw: Option<&RawHooks>, path: &str, r: &mut Report) -> Hooks {
    let Some(raw) = raw else {
        return Hooks::default();
    };
    let list =
        |ours: &Option<Vec<RawHook>>, seed: &Option<Vec<RawHook>>, key: &str, r: &mut Report| {
            let seed_key = key.replace('_', "-");
            let (items, at) = match (ours, seed) {
                (Some(_), Some(_)) => {
                    r.error(
                        join(path, &seed_key),
                        format!(
                        "{key} is also set; expected one of {key} and {seed_key} (the same list)"
                    ),
                    );
                    return Vec::new();
                }
                (Some(l), None) => (l, join(path, key)),
                (None, Some(l)) => (l, join(path, &seed_key)),
                (None, None) => return Vec::new(),
            };
            items
                .iter()
                .enumerate()
                .filter_map(|(i, h)| hook(h, &index(&at, i), r))
                .collect()
        };
    Hooks {
        pre_start: list(&raw.pre_start, &raw.pre_start_seed, "pre_start", r),
        post_start: list(&raw.post_start, &raw.post_start_seed, "post_start", r),
        pre_stop: list(&raw.pre_stop, &raw.pre_stop_seed, "pre_stop", r),
        post_stop: list(&raw.post_stop, &raw.post_stop_seed, "post_stop", r),
    }
}

/// A duration of at least 1ms: a timeout or wait below that is over
/// before anything it waits for could happen (a probe's fork, a connect).
pub fn positive_duration(v: &Value) -> Result<Duration, String> {
    at_least(v, Duration::from_millis(1))
}

/// A period of repeated work (a probe period, a heartbeat interval): at
/// least 10ms, which stops a busy loop and keeps a test's fast period.
pub fn period(v: &Value) -> Result<Duration, String> {
    at_least(v, crate::config::cron::MIN_PERIOD)
}

fn at_least(v: &Value, floor: Duration) -> Result<Duration, String> {
    let d = val::duration(v)?;
    if d < floor {
        Err(format!(
            "invalid value {}; expected a duration of at least {}",
            val::describe(v),
            crate::config::format_duration(floor)
        ))
    } else {
        Ok(d)
    }
}

/// An environment map; each bad entry is reported at `path.NAME`.
pub fn env_map(
    raw: Option<&BTreeMap<String, Value>>,
    path: &str,
    r: &mut Report,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.into_iter().flatten() {
        let at = under(path)(k);
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            r.error(
                path,
                format!(
                    "invalid variable name {}; expected a name without '=' or NUL",
                    val::quote(k)
                ),
            );
            continue;
        }
        let text = match v {
            Value::Null => Ok(String::new()),
            other => val::scalar_text(other).and_then(|s| {
                if s.contains('\0') {
                    Err("the value contains a NUL byte".to_string())
                } else {
                    Ok(s)
                }
            }),
        };
        match text {
            Ok(s) => {
                if matches!(v, Value::Number(n) if n.is_f64()) {
                    r.warn(
                        at,
                        format!(
                            "YAML read this value as a number, passed on as {}; quote it if \
                             it was written differently (1.10 reads as 1.1, 1e3 as 1000.0)",
                            val::quote(&s)
                        ),
                    );
                }
                out.insert(k.clone(), s);
            }
            Err(e) => r.error(at, e),
        }
    }
    out
}

/// A user or group: a name, or a number that is a whole id (`1e3` or
/// `1000.5` is neither, and would otherwise be looked up as "1000.0").
fn id_or_name(v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) if !n.is_u64() => Err(format!(
            "invalid value {}; expected a name or a numeric id (a whole number from 0)",
            val::describe(v)
        )),
        _ => val::text(v),
    }
}

/// `user`/`group` under `path`, resolved to ids.
pub fn credentials(
    user: &Option<Value>,
    group: &Option<Value>,
    path: &str,
    r: &mut Report,
) -> Option<Credentials> {
    let user_path = under(path)("user");
    let group_path = under(path)("group");
    let u = r.get(user, user_path, id_or_name);
    let g = r.get(group, group_path, id_or_name);
    if (user.is_some() && u.is_none()) || (group.is_some() && g.is_none()) {
        return None;
    }
    let u = u.as_deref().map(str::trim);
    match creds::resolve(u, g.as_deref().map(str::trim)) {
        Ok(c) => c,
        Err(CredError::User(e)) => {
            r.error(user_path, e);
            None
        }
        Err(CredError::Group(e)) => {
            // The group is resolved first: look at the user too, so that
            // both problems are reported at once.
            if let Err(CredError::User(e)) = creds::resolve(u, None) {
                r.error(user_path, e);
            }
            r.error(group_path, e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Hooks, Vec<String>) {
        let raw = RawHooks::take(serde_yaml::from_str(yaml).unwrap());
        let mut r = Report::default();
        let h = hooks(Some(&raw), "hooks", &mut r);
        (h, r.problems)
    }

    #[test]
    fn defaults_and_both_spellings() {
        let (h, p) = run("{pre-start: [{name: migrate, command: [php, artisan, migrate]}], post_stop: [{name: bye, command: 'echo bye'}]}");
        assert!(p.is_empty(), "{p:?}");
        let m = &h.pre_start[0];
        assert_eq!(m.name, "migrate");
        assert_eq!(m.command, vec!["php", "artisan", "migrate"]);
        assert_eq!(m.timeout, Duration::from_secs(30));
        assert_eq!(
            (m.retry, m.retry_delay, m.continue_on_error),
            (0, Duration::ZERO, false)
        );
        assert_eq!(m.credentials, None);
        assert_eq!(h.post_stop[0].command, vec!["/bin/sh", "-c", "echo bye"]);
    }

    #[test]
    fn values() {
        let (h, p) = run("{pre_stop: [{name: x, command: [a], timeout: 5m, retry: '2', retry_delay: 500ms, continue_on_error: yes, env: {A: 1}, working_dir: /srv, user: root}]}");
        assert!(p.is_empty(), "{p:?}");
        let x = &h.pre_stop[0];
        assert_eq!(x.timeout, Duration::from_secs(300));
        assert_eq!(x.retry, 2);
        assert_eq!(x.retry_delay, Duration::from_millis(500));
        assert!(x.continue_on_error);
        assert_eq!(x.env["A"], "1");
        assert_eq!(x.working_dir, Some(PathBuf::from("/srv")));
        assert_eq!(x.credentials.as_ref().map(|c| c.uid), Some(0));
    }

    #[test]
    fn errors() {
        let (_, p) = run("{pre_start: [{command: [a]}, {name: b}, {name: c, command: [], timeout: 0, user: no-such-user-x}]}");
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].starts_with("hooks.pre_start[0].name: missing"));
        assert!(p[1].starts_with("hooks.pre_start[1].command: missing"));
        assert!(p[2].starts_with("hooks.pre_start[2].command: command is empty"));
        assert!(p[3].starts_with(
            "hooks.pre_start[2].timeout: invalid value 0; expected a duration of at least 1ms"
        ));
        assert!(p[4].starts_with("hooks.pre_start[2].user: unknown user"));
        let (_, p) = run("{pre_start: [], pre-start: []}");
        assert!(
            p[0].starts_with("hooks.pre-start: pre_start is also set"),
            "{p:?}"
        );
    }
}
