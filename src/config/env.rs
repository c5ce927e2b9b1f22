//! Environment overrides: `SHEEPDOG_GLOBAL_<KEY>` and
//! `SHEEPDOG_PROCESS_<NAME>_<KEY>`, applied to the parsed tree after
//! `${VAR}` substitution and before validation.
//!
//! - `<KEY>` is a key path with `.` and `-` written as `_`, matched
//!   case-insensitively against the known keys (`shape`), longest key first
//!   at each level: `SHUTDOWN_TIMEOUT` → `shutdown.timeout`,
//!   `HEALTH_CHECK_PERIOD` → `health_check.period`. For a map-valued key
//!   (`env`, `labels`, `headers`) the rest is the map key, kept as written:
//!   `ENV_APP_DEBUG` → `env.APP_DEBUG`.
//! - `<NAME>` is an existing process name upper-cased with `-` and `.` as
//!   `_`, tried longest first, and only accepted if the rest is a valid key
//!   (so `my-env` and names containing `ENV` work). If no existing process
//!   matches, the variable defines a new process: the shortest valid key
//!   suffix is the key and the rest, lower-cased with `_` → `-`, the name
//!   (with a process `app`, `APP_WORKER_COMMAND` adds `app-worker`). An
//!   existing process wins: `APP_ENV_X` is `app`'s `env.X`, not a new
//!   `app-env`'s.
//! - A key with two spellings (`pre_start`, `pre-start`) is set in the
//!   first and the other is removed, so the variable replaces the file's
//!   value whichever spelling the file used.
//! - Values are strings, typed later by the target key exactly like YAML
//!   strings (`1` is an integer, `yes` a boolean). A value starting with
//!   `[` or `{` is parsed as a YAML flow list/map; `command` and
//!   `depends_on` also accept comma-separated lists (not a command with a
//!   space before its first comma: a shell command). Map entries (`ENV_X`)
//!   are always taken verbatim.
//! - A variable naming no known key is an error naming the variable.
//! - Two variables that set the same key, or a block and a key inside it
//!   (`…_SHUTDOWN='{timeout: 9}'` and `…_SHUTDOWN_TIMEOUT=3`,
//!   `…_WEB_SCALE` and `…_web_scale`), are an error naming both: which one
//!   wins would depend on their spelling.
//!
//! Invariant: every path set here is recorded in the `Report` with its
//! variable, so later problems at that path name the variable too.

use serde_yaml::{Mapping, Value};

use super::report::{join, Report};
use super::shape::Shape;
use super::suggest;
use super::value::describe;

pub const GLOBAL_PREFIX: &str = "SHEEPDOG_GLOBAL_";
pub const PROCESS_PREFIX: &str = "SHEEPDOG_PROCESS_";

/// Why a value that is not YAML was read as YAML.
const FLOW: &str = " (a value starting with [ or { is read as YAML: [a, b], {key: value})";

/// Whether `name` is an override variable: sheepdog's own input, which
/// children do not inherit (`child`), since one may hold another process's
/// secret (`…_ENV_DB_PASSWORD`) or the API token.
pub fn is_override(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(GLOBAL_PREFIX.as_bytes()) || bytes.starts_with(PROCESS_PREFIX.as_bytes())
}

/// The override variables of the real process environment, sorted by name.
/// A non-UTF-8 override is an error naming it.
pub fn from_process_env() -> Result<Vec<(String, String)>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !is_override(&k) {
            continue;
        }
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) => problems.push(format!("{k}: the value is not valid UTF-8")),
            (Err(k), _) => problems.push(format!(
                "{}: the variable name is not valid UTF-8",
                k.to_string_lossy()
            )),
        }
    }
    out.sort_unstable();
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Apply `overrides` to `root`, whose key tree is `shape` (of `RawConfig`).
pub fn apply(root: &mut Value, overrides: &[(String, String)], shape: &Shape, report: &mut Report) {
    if !matches!(root, Value::Mapping(_) | Value::Null) {
        // The structural pass reports the bad document.
        return;
    }
    let (Some(global), Some(Shape::Map(process))) =
        (shape.field("global"), shape.field("processes"))
    else {
        report.error(
            "",
            "internal error: configuration shape lacks global/processes",
        );
        return;
    };
    // A sorted copy: the same sort as `from_process_env`'s, so the binary
    // holds one instance of it (a sort is 4-5 KiB of code per type).
    let mut sorted = overrides.to_vec();
    sorted.sort_unstable();
    // What each applied variable set: a later one may not set it again.
    let mut applied: Vec<(Vec<String>, &str)> = Vec::new();
    for (var, val) in &sorted {
        // The origin of a process this variable adds (a misspelt name, often).
        let mut adds = None;
        let target = if let Some(rest) = var.strip_prefix(GLOBAL_PREFIX) {
            match resolve(rest, global) {
                Some((mut segs, target)) => {
                    segs.insert(0, "global".into());
                    Ok((segs, target))
                }
                None => Err(format!(
                    "{var}: no such global key{}",
                    hint(var, GLOBAL_PREFIX, global)
                )),
            }
        } else if let Some(rest) = var.strip_prefix(PROCESS_PREFIX) {
            resolve_process(var, rest, &process_names(root), process).map(
                |(name, mut segs, target, added)| {
                    adds = added.map(|why| (join("processes", &name), why));
                    segs.insert(0, name);
                    segs.insert(0, "processes".into());
                    (segs, target)
                },
            )
        } else {
            continue;
        };
        let (segs, target) = match target {
            Ok(t) => t,
            Err(e) => {
                report.error("", e);
                continue;
            }
        };
        let overlaps = |(other, _): &&(Vec<String>, &str)| {
            let n = other.len().min(segs.len());
            other[..n] == segs[..n]
        };
        if let Some((_, other)) = applied.iter().find(overlaps) {
            let path = segs.iter().fold(String::new(), |p, s| join(&p, s));
            report.error(
                "",
                format!("{var}: sets {path}, which {other} sets too; expected one variable for it"),
            );
            continue;
        }
        let parent = parent(shape, &segs);
        // A process map entry is at depth 1; free maps (`env.X`) deeper.
        let is_map_entry = segs.len() >= 3 && matches!(parent, Some(Shape::Map(_)));
        let value = match typed(val, target, segs.last().map(String::as_str), is_map_entry) {
            Ok(v) => v,
            Err(e) => {
                report.error("", format!("{var}: {e}"));
                continue;
            }
        };
        let path = segs.iter().fold(String::new(), |p, s| join(&p, s));
        // The key's other spelling (`pre-start` for `pre_start`): the
        // variable replaces the file's list whichever spelling it used.
        let alias = match (parent, segs.last()) {
            (Some(Shape::Struct(fields)), Some(last)) => fields
                .iter()
                .map(|(n, _)| *n)
                .find(|n| n != last && n.replace('-', "_") == *last),
            _ => None,
        };
        match set(root, &segs, value, alias) {
            Ok(()) => {
                report.set_origin(&path, var);
                if let Some((process, origin)) = adds {
                    report.set_origin(&process, &origin);
                }
            }
            Err(e) => report.error("", format!("{var}: cannot set {path}: {e}")),
        }
        applied.push((segs, var));
    }
}

/// Process names in the tree, as strings.
fn process_names(root: &Value) -> Vec<String> {
    match root.get("processes") {
        Some(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// How a process name appears in a variable name.
pub fn env_name(process: &str) -> String {
    process.to_ascii_uppercase().replace(['-', '.'], "_")
}

/// A process name, a key path in it, the key's shape, and for a process
/// the file lacks, what added it.
type ProcessKey<'s> = (String, Vec<String>, &'s Shape, Option<String>);

/// Split `rest` (after the prefix) into a process name and a key path; for
/// a process the file lacks, also what its problems should say added it.
///
/// Tried in order, the first that leaves a valid key wins: existing names,
/// longest first; then a new process, with the shortest valid key suffix.
/// So with a process `app`, `APP_ENV_X` is `app`'s `env.X` (not a new
/// `app-env`), and `APP_WORKER_COMMAND` adds `app-worker`.
fn resolve_process<'s>(
    var: &str,
    rest: &str,
    names: &[String],
    shape: &'s Shape,
) -> Result<ProcessKey<'s>, String> {
    // Spelt as the variable may spell it: `QUEUE-DEFAULT_SCALE` and
    // `queue-default_SCALE` name queue-default too. (Same length as `rest`.)
    let upper = env_name(rest);
    let candidates: Vec<(String, &String)> = names.iter().map(|n| (env_name(n), n)).collect();
    // The longest existing name that starts the variable, and its rest.
    let mut near: Option<(&String, &str)> = None;
    for i in longest_first(candidates.iter().map(|(norm, _)| norm.as_str())) {
        let (norm, name) = &candidates[i];
        // The name may be spelt with `-` and `.`, but is followed by a
        // real `_`: `WEB.SCALE` is no spelling of `WEB_SCALE`.
        let Some(field) = upper
            .strip_prefix(norm.as_str())
            .filter(|_| rest.as_bytes().get(norm.len()) == Some(&b'_'))
            .and_then(|t| t.strip_prefix('_'))
        else {
            continue;
        };
        let field = &rest[rest.len() - field.len()..];
        if let Some((segs, target)) = resolve(field, shape) {
            let same: Vec<&str> = candidates
                .iter()
                .filter(|(n, _)| n == norm)
                .map(|(_, p)| p.as_str())
                .collect();
            if same.len() > 1 {
                return Err(format!(
                    "{var}: ambiguous: processes {} all read as {norm}",
                    same.join(", ")
                ));
            }
            return Ok(((*name).clone(), segs, target, None));
        }
        // (`…_WEB_`: no key at all, which the generic message says.)
        if !field.is_empty() {
            near.get_or_insert((name, field));
        }
    }
    // Why no existing process matched, and a did-you-mean for its key.
    let near = near.map(|(name, field)| {
        let prefix = format!("{PROCESS_PREFIX}{}_", env_name(name));
        (
            format!("process {name} has no key {field}"),
            hint(var, &prefix, shape),
        )
    });
    for (i, _) in rest
        .match_indices('_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let (name, field) = (&rest[..i], &rest[i + 1..]);
        if name.is_empty() {
            continue;
        }
        if let Some((segs, target)) = resolve(field, shape) {
            let name = name.to_ascii_lowercase().replace('_', "-");
            let (why, hint) = near.unwrap_or_else(|| {
                (
                    "the file has no process of that name".into(),
                    suggest::hint(&name, names.iter().map(String::as_str)),
                )
            });
            let why = format!("{var}, which adds process {name}: {why}{hint}");
            return Ok((name, segs, target, Some(why)));
        }
    }
    Err(match near {
        Some((why, hint)) => {
            format!("{var}: {why}, and {rest} does not end in a key to add a new process{hint}")
        }
        None => format!(
            "{var}: no process key found; expected {PROCESS_PREFIX}<NAME>_<KEY> with a key such \
             as COMMAND, SCALE or SHUTDOWN_TIMEOUT"
        ),
    })
}

/// The indices of `names`, longest first; names of equal length keep their
/// order. Both resolvers try the longest name first. Sorting (length,
/// index) pairs, all distinct, gives the order of a stable sort by length,
/// with one sort in the binary for both (each is 4-5 KiB of code). The
/// length is complemented (longest first) into a `(u64, usize)` pair: the
/// type `output::buffer` sorts its records' sequence numbers as, so that
/// both share that one sort too.
fn longest_first<'a>(names: impl Iterator<Item = &'a str>) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = names
        .enumerate()
        .map(|(i, n)| (!(n.len() as u64), i))
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, i)| i).collect()
}

/// Resolve a `_`-joined key path against a struct shape.
fn resolve<'s>(field: &str, shape: &'s Shape) -> Option<(Vec<String>, &'s Shape)> {
    let Shape::Struct(fields) = shape else {
        return None;
    };
    let upper = field.to_ascii_uppercase();
    for i in longest_first(fields.iter().map(|(name, _)| *name)) {
        let (name, sub) = &fields[i];
        let key = name.to_ascii_uppercase().replace('-', "_");
        if upper == key {
            return Some((vec![(*name).to_string()], sub));
        }
        let Some(tail) = upper.strip_prefix(&key).and_then(|t| t.strip_prefix('_')) else {
            continue;
        };
        let tail = &field[field.len() - tail.len()..];
        match sub {
            Shape::Struct(_) => {
                if let Some((mut segs, target)) = resolve(tail, sub) {
                    segs.insert(0, (*name).to_string());
                    return Some((segs, target));
                }
            }
            Shape::Map(inner) if !tail.is_empty() => {
                return Some((vec![(*name).to_string(), tail.to_string()], inner));
            }
            _ => {}
        }
    }
    None
}

/// The shape of the block holding the last key of `segs`.
fn parent<'s>(shape: &'s Shape, segs: &[String]) -> Option<&'s Shape> {
    let (_, init) = segs.split_last()?;
    init.iter().try_fold(shape, |node, seg| match node {
        Shape::Struct(_) => node.field(seg),
        Shape::Map(inner) => Some(*inner),
        _ => None,
    })
}

/// The variable's text as a YAML value for a key of shape `target`.
fn typed(raw: &str, target: &Shape, key: Option<&str>, map_entry: bool) -> Result<Value, String> {
    // A map entry is text; so is a secret, whatever it looks like: a token
    // starting with `[` or `{` is not YAML to parse (nor to echo in an
    // error), and one that looks like a number stays the text it is.
    if map_entry || key == Some("api_auth") {
        return Ok(Value::String(raw.to_string()));
    }
    let t = raw.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        // "scanning an anchor" alone does not tell that `[ -f /x ] && run`
        // was read as a list.
        return super::yaml::parse(raw).map_err(|e| e + FLOW);
    }
    match target {
        Shape::Leaf => {
            // A program name has no space: `php artisan queue:work
            // --queue=high,default` is a shell command with a comma in it,
            // not the argv ["php artisan … --queue=high", "default"] (which
            // `check` passed and every start failed to exec).
            let shell = key == Some("command")
                && raw
                    .trim()
                    .bytes()
                    .take_while(|&b| b != b',')
                    .any(|b| b == b' ');
            if matches!(key, Some("command" | "depends_on")) && raw.contains(',') && !shell {
                Ok(Value::Sequence(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            } else {
                Ok(Value::String(raw.to_string()))
            }
        }
        Shape::Seq(_) => Err("this key takes a list; write it as [item, ...]".into()),
        Shape::Struct(_) | Shape::Map(_) => {
            Err("this key takes a map; write it as {key: value, ...}".into())
        }
    }
}

/// Set `segs` in `root`, creating maps where the path is absent or null,
/// and remove the last key's `alias` beside it.
fn set(root: &mut Value, segs: &[String], value: Value, alias: Option<&str>) -> Result<(), String> {
    let Some((last, parents)) = segs.split_last() else {
        return Err("empty key path".into());
    };
    let mut node = root;
    for seg in parents {
        node = child_map(node)?
            .entry(Value::String(seg.clone()))
            .or_insert(Value::Null);
    }
    let map = child_map(node)?;
    map.insert(Value::String(last.clone()), value);
    if let Some(alias) = alias {
        map.remove(alias);
    }
    Ok(())
}

fn child_map(node: &mut Value) -> Result<&mut Mapping, String> {
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Mapping(m) => Ok(m),
        other => Err(format!("the file has {} there, not a map", describe(other))),
    }
}

/// A did-you-mean naming the full variable.
fn hint(var: &str, prefix: &str, shape: &Shape) -> String {
    let mut candidates = Vec::new();
    leaf_vars(shape, prefix.to_string(), &mut candidates);
    suggest::hint(var, candidates.iter().map(String::as_str))
}

fn leaf_vars(shape: &Shape, prefix: String, out: &mut Vec<String>) {
    if let Shape::Struct(fields) = shape {
        for (name, sub) in fields.iter() {
            let var = format!("{prefix}{}", name.to_ascii_uppercase().replace('-', "_"));
            if let Shape::Struct(_) = sub {
                leaf_vars(sub, format!("{var}_"), out);
            }
            out.push(var);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::shape::CONFIG;

    fn run(yaml: &str, vars: &[(&str, &str)]) -> (Value, Report) {
        let mut root: Value = serde_yaml::from_str(yaml).unwrap();
        let overrides: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut report = Report::default();
        apply(&mut root, &overrides, &CONFIG, &mut report);
        (root, report)
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn global_keys_nested_and_flat() {
        let (v, r) = run(
            "global: {}\n",
            &[
                ("SHEEPDOG_GLOBAL_SHUTDOWN_TIMEOUT", "10"),
                ("SHEEPDOG_GLOBAL_API_TLS_ENABLED", "false"),
                ("SHEEPDOG_GLOBAL_readiness_path", "/tmp/r"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(v["global"]["shutdown_timeout"], s("10"));
        assert_eq!(v["global"]["api_tls"]["enabled"], s("false"));
        assert_eq!(v["global"]["readiness"]["path"], s("/tmp/r"));
    }

    #[test]
    fn unknown_global_key_is_an_error_with_a_suggestion() {
        let (_, r) = run("{}", &[("SHEEPDOG_GLOBAL_SHUTDOWN_TIMOUT", "10")]);
        assert_eq!(
            r.problems,
            vec!["SHEEPDOG_GLOBAL_SHUTDOWN_TIMOUT: no such global key; did you mean \"SHEEPDOG_GLOBAL_SHUTDOWN_TIMEOUT\"?"]
        );
    }

    #[test]
    fn process_keys_nested_env_and_lists() {
        let yaml = "processes: {queue-default: {command: x}, web: {command: y}}\n";
        let (v, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_QUEUE_DEFAULT_SCALE", "3"),
                ("SHEEPDOG_PROCESS_QUEUE_DEFAULT_HEALTH_CHECK_PERIOD", "5s"),
                ("SHEEPDOG_PROCESS_WEB_SHUTDOWN_TIMEOUT", "7"),
                ("SHEEPDOG_PROCESS_WEB_ENV_App_Key", "{not: parsed}"),
                ("SHEEPDOG_PROCESS_WEB_COMMAND", "nginx,-g,daemon off;"),
                ("SHEEPDOG_PROCESS_WEB_DEPENDS_ON", "[queue-default]"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let q = &v["processes"]["queue-default"];
        assert_eq!(q["scale"], s("3"));
        assert_eq!(q["health_check"]["period"], s("5s"));
        let w = &v["processes"]["web"];
        assert_eq!(w["shutdown"]["timeout"], s("7"));
        assert_eq!(w["env"]["App_Key"], s("{not: parsed}"));
        assert_eq!(
            w["command"],
            Value::Sequence(vec![s("nginx"), s("-g"), s("daemon off;")])
        );
        assert_eq!(w["depends_on"], Value::Sequence(vec![s("queue-default")]));
        // A comma inside a shell command does not make it an argv.
        let cmd = "php artisan queue:work --queue=high,default";
        let (v, r) = run(yaml, &[("SHEEPDOG_PROCESS_WEB_COMMAND", cmd)]);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(v["processes"]["web"]["command"], s(cmd));
        // The name as written in the file, dash and all, names it too.
        let (v, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_QUEUE-DEFAULT_MAX_SCALE", "5"),
                ("SHEEPDOG_PROCESS_queue-default_HEALTH_CHECK_TYPE", "tcp"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let q = &v["processes"]["queue-default"];
        assert_eq!(q["max_scale"], s("5"));
        assert_eq!(q["health_check"]["type"], s("tcp"));
        assert_eq!(v["processes"].as_mapping().map(|m| m.len()), Some(2));
    }

    #[test]
    fn names_containing_env_match_longest_first() {
        let yaml = "processes: {my-env: {command: x}, my: {command: y}, env: {command: z}}\n";
        let (v, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_MY_ENV_SCALE", "2"),
                ("SHEEPDOG_PROCESS_MY_ENV_ENV_FOO", "a"),
                ("SHEEPDOG_PROCESS_MY_ENV_BAR", "b"),
                ("SHEEPDOG_PROCESS_ENV_ENV_X", "c"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(v["processes"]["my-env"]["scale"], s("2"));
        assert_eq!(v["processes"]["my-env"]["env"]["FOO"], s("a"));
        // my-env has no key BAR, so this is process `my`, env BAR.
        assert_eq!(v["processes"]["my"]["env"]["BAR"], s("b"));
        assert_eq!(v["processes"]["env"]["env"]["X"], s("c"));
    }

    #[test]
    fn unknown_process_key_is_an_error() {
        let (_, r) = run(
            "processes: {web: {command: x}}\n",
            &[("SHEEPDOG_PROCESS_WEB_SCAEL", "2")],
        );
        assert_eq!(
            r.problems,
            vec!["SHEEPDOG_PROCESS_WEB_SCAEL: process web has no key SCAEL, and WEB_SCAEL does not end in a key to add a new process; did you mean \"SHEEPDOG_PROCESS_WEB_SCALE\"?"]
        );
        let (_, r) = run("{}", &[("SHEEPDOG_PROCESS_FOO", "2")]);
        assert!(r.problems[0].contains("no process key found"));
    }

    #[test]
    fn a_dot_or_dash_is_no_separator_between_name_and_key() {
        // `WEB.SCALE` read as `WEB_SCALE` and set web's scale.
        for var in ["SHEEPDOG_PROCESS_WEB.SCALE", "SHEEPDOG_PROCESS_WEB-SCALE"] {
            let (v, r) = run("processes: {web: {command: x}}\n", &[(var, "2")]);
            assert_eq!(
                r.problems,
                vec![format!(
                    "{var}: no process key found; expected SHEEPDOG_PROCESS_<NAME>_<KEY> with a \
                     key such as COMMAND, SCALE or SHUTDOWN_TIMEOUT"
                )]
            );
            assert_eq!(v["processes"]["web"].get("scale"), None);
        }
        // Inside the name they stay spellings of `_`.
        let (v, r) = run(
            "processes: {web.api: {command: x}}\n",
            &[("SHEEPDOG_PROCESS_WEB.API_SCALE", "2")],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(v["processes"]["web.api"]["scale"], s("2"));
    }

    #[test]
    fn new_processes_are_created() {
        let (v, r) = run(
            "processes: {web: {command: x}}\n",
            &[
                (
                    "SHEEPDOG_PROCESS_MY_WORKER_COMMAND",
                    "php artisan queue:work",
                ),
                ("SHEEPDOG_PROCESS_MY_WORKER_ENV_MODE", "x"),
                ("SHEEPDOG_PROCESS_NEW_ENV_SYNC_SHUTDOWN_TIMEOUT", "3"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(
            v["processes"]["my-worker"]["command"],
            s("php artisan queue:work")
        );
        assert_eq!(v["processes"]["my-worker"]["env"]["MODE"], s("x"));
        assert_eq!(
            v["processes"]["new-env-sync"]["shutdown"]["timeout"],
            s("3")
        );
    }

    #[test]
    fn a_new_process_may_start_with_an_existing_name() {
        let yaml = "processes: {app: {command: x}}\n";
        let (v, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_APP_WORKER_COMMAND", "sleep 5"),
                // `app` has env.COMMAND, so it is not a new `app-env`.
                ("SHEEPDOG_PROCESS_APP_ENV_COMMAND", "y"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(v["processes"]["app-worker"]["command"], s("sleep 5"));
        assert_eq!(v["processes"]["app"]["env"]["COMMAND"], s("y"));
        assert!(v["processes"].get("app-env").is_none());
        // Its problems say why it is a new process.
        let (_, mut r) = run(yaml, &[("SHEEPDOG_PROCESS_APP_HEALTHCHECK_TYPE", "tcp")]);
        r.error("processes.app-healthcheck.command", "missing");
        assert_eq!(
            r.problems,
            vec!["processes.app-healthcheck.command: missing (set by SHEEPDOG_PROCESS_APP_HEALTHCHECK_TYPE, \
                  which adds process app-healthcheck: process app has no key HEALTHCHECK_TYPE; \
                  did you mean \"SHEEPDOG_PROCESS_APP_HEALTH_CHECK_TYPE\"?)"]
        );
        let (_, r) = run(yaml, &[("SHEEPDOG_PROCESS_APP_COMAND", "x")]);
        assert_eq!(
            r.problems,
            vec!["SHEEPDOG_PROCESS_APP_COMAND: process app has no key COMAND, and APP_COMAND does not \
                  end in a key to add a new process; did you mean \"SHEEPDOG_PROCESS_APP_COMMAND\"?"]
        );
        // Nothing after the name: not "has no key , and".
        let (_, r) = run(yaml, &[("SHEEPDOG_PROCESS_APP_", "x")]);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("SHEEPDOG_PROCESS_APP_: no process key found; expected"),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_list_replaces_the_file_s_list_whichever_spelling_it_used() {
        let (v, r) = run(
            "processes: {web: {command: x, env: {A-B: 1}, hooks: {pre-start: [a], post_stop: [b]}}}\n",
            &[
                ("SHEEPDOG_PROCESS_WEB_HOOKS_PRE_START", "[c]"),
                ("SHEEPDOG_PROCESS_WEB_HOOKS_POST_STOP", "[d]"),
                ("SHEEPDOG_PROCESS_WEB_ENV_A_B", "2"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let w = &v["processes"]["web"];
        let list = |x: &str| Value::Sequence(vec![s(x)]);
        assert_eq!(w["hooks"]["pre_start"], list("c"));
        assert!(w["hooks"].get("pre-start").is_none());
        assert_eq!(w["hooks"]["post_stop"], list("d"));
        // Free map keys are not spellings of one another.
        assert_eq!(w["env"]["A-B"], Value::Number(1.into()));
        assert_eq!(w["env"]["A_B"], s("2"));
    }

    #[test]
    fn flow_values_and_errors() {
        let (v, r) = run(
            "processes: {web: {command: x}}\n",
            &[
                (
                    "SHEEPDOG_PROCESS_WEB_HEALTH_CHECK",
                    "{type: tcp, address: 'a:1'}",
                ),
                ("SHEEPDOG_PROCESS_WEB_PORTS", "[80, 443]"),
                ("SHEEPDOG_PROCESS_WEB_SHUTDOWN", "not a map"),
                ("SHEEPDOG_PROCESS_WEB_ENV", "[unterminated"),
            ],
        );
        assert_eq!(v["processes"]["web"]["health_check"]["type"], s("tcp"));
        assert_eq!(v["processes"]["web"]["ports"][1], Value::Number(443.into()));
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("SHEEPDOG_PROCESS_WEB_ENV: invalid YAML: ")
                && r.problems[0].ends_with(FLOW),
            "{}",
            r.problems[0]
        );
        assert!(r.problems[1].contains("SHEEPDOG_PROCESS_WEB_SHUTDOWN: this key takes a map"));
    }

    #[test]
    fn setting_through_a_scalar_is_an_error() {
        let (_, r) = run(
            "processes: {web: {command: x, shutdown: 5}}\n",
            &[("SHEEPDOG_PROCESS_WEB_SHUTDOWN_TIMEOUT", "3")],
        );
        assert!(r.problems[0].contains("cannot set processes.web.shutdown.timeout"));
    }

    #[test]
    fn origins_are_remembered() {
        let (_, mut r) = run("{}", &[("SHEEPDOG_GLOBAL_API_PORT", "x")]);
        r.error("global.api_port", "bad");
        assert_eq!(
            r.problems,
            vec!["global.api_port: bad (set by SHEEPDOG_GLOBAL_API_PORT)"]
        );
    }

    #[test]
    fn a_key_set_twice_is_an_error_naming_both_variables() {
        let yaml = "processes: {web: {command: x}}";
        let (_, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_WEB_SCALE", "3"),
                ("SHEEPDOG_PROCESS_web_scale", "4"),
            ],
        );
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("SHEEPDOG_PROCESS_web_scale: sets processes.web.scale, which SHEEPDOG_PROCESS_WEB_SCALE sets too"), "{:?}", r.problems);
        let (_, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_WEB_SHUTDOWN", "{timeout: 9}"),
                ("SHEEPDOG_PROCESS_WEB_SHUTDOWN_TIMEOUT", "3"),
            ],
        );
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        // Two entries of one map are two keys.
        let (_, r) = run(
            yaml,
            &[
                ("SHEEPDOG_PROCESS_WEB_ENV_A", "1"),
                ("SHEEPDOG_PROCESS_WEB_ENV_B", "2"),
            ],
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    #[test]
    fn ambiguous_names_are_an_error() {
        let (_, r) = run(
            "processes: {a-b: {command: x}, a_b: {command: y}}\n",
            &[("SHEEPDOG_PROCESS_A_B_SCALE", "2")],
        );
        assert!(r.problems[0].contains("ambiguous"), "{:?}", r.problems);
    }
}
