//! Typed leaf values: one YAML scalar (or small list/map) → one Rust value.
//!
//! Every function here is pure and lenient in the same documented way: a
//! value may arrive as a YAML string even when the key wants a number or a
//! boolean, because `${VAR}` substitution and environment overrides always
//! produce strings. So `"8080"` is a valid port and `"yes"` a valid boolean.
//!
//! Invariant: a conversion either returns the typed value or an error
//! message of the form `invalid value "x"; expected …` (without the key
//! path, which the caller adds). Nothing here panics on any input.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_yaml::{Number, Value};

/// A YAML number as serde_yaml's `Display` prints it: integers in
/// decimal, `.nan`, `.inf`, `-.inf`, other floats in their shortest
/// round-trip form. Floats go through serde_json's formatter, which
/// prints the same digits (`1e+16` where serde_yaml's ryu prints `1e16`),
/// so that ryu and its 10 KB of tables are not linked beside it.
pub fn number(n: &Number) -> String {
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    match serde_json::Number::from_f64(f) {
        Some(j) => j.to_string().replace("e+", "e"),
        None if f.is_nan() => ".nan".into(),
        None if f < 0.0 => "-.inf".into(),
        None => ".inf".into(),
    }
}

/// A short description of a value for error messages: scalars verbatim
/// (strings quoted and truncated), collections by kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => quote(s),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// `s` in double quotes with escapes, cut at 60 characters.
pub fn quote(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{:?}…", cut)
    } else {
        format!("{s:?}")
    }
}

pub fn invalid(v: &Value, expected: &str) -> String {
    match v {
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) | Value::Null => {
            format!("expected {expected}, got {}", describe(v))
        }
        _ => format!("invalid value {}; expected {expected}", describe(v)),
    }
}

/// A scalar as text: strings as they are, numbers and booleans printed.
/// Used where YAML's typing is an accident (`version: 1.0`, `env: {N: 3}`,
/// `command: [sleep, 10]`).
pub fn scalar_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(number(n)),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(v, "a string")),
    }
}

/// A string (numbers are accepted and printed; booleans are not, as
/// `true` where a path or name is expected is almost always a mistake).
pub fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(number(n)),
        _ => Err(invalid(v, "a string")),
    }
}

/// A non-empty string without NUL bytes (paths, names, URLs).
pub fn text(v: &Value) -> Result<String, String> {
    let s = string(v)?;
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.contains('\0') {
        return Err(format!("invalid value {}; contains a NUL byte", quote(&s)));
    }
    Ok(s)
}

/// true/false/yes/no/1/0 in any case, as YAML booleans, strings or numbers.
pub fn boolean(v: &Value) -> Result<bool, String> {
    const EXPECTED: &str = "a boolean (true, false, yes, no, 1, 0)";
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(invalid(v, EXPECTED)),
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(invalid(v, EXPECTED)),
        },
        _ => Err(invalid(v, EXPECTED)),
    }
}

/// A signed integer (YAML number or decimal string).
pub fn integer(v: &Value) -> Result<i64, String> {
    const EXPECTED: &str = "an integer";
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| invalid(v, EXPECTED)),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| invalid(v, EXPECTED)),
        _ => Err(invalid(v, EXPECTED)),
    }
}

/// An unsigned integer within `min..=max`.
pub fn uint(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let expected = format!("an integer from {min} to {max}");
    let n = match v {
        Value::Number(n) => n.as_u64(),
        // `-0` too, as `integer` reads it: zero, not a negative number.
        Value::String(s) => {
            let t = s.trim();
            t.parse::<u64>()
                .ok()
                .or_else(|| (t.parse::<i64>() == Ok(0)).then_some(0))
        }
        _ => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(v, &expected)),
    }
}

/// A `u32` within `min..=max`.
pub fn uint32(v: &Value, min: u32, max: u32) -> Result<u32, String> {
    // The bounds are u32, so the checked value fits.
    uint(v, u64::from(min), u64::from(max)).map(|n| u32::try_from(n).unwrap_or(max))
}

/// A TCP port, 1..=65535.
pub fn port(v: &Value) -> Result<u16, String> {
    uint(v, 1, u64::from(u16::MAX)).map(|n| u16::try_from(n).unwrap_or(u16::MAX))
}

const DURATION_EXPECTED: &str = "seconds or a duration like 500ms, 10s, 5m, 1h30m";

/// A duration: an integer number of seconds (YAML number or string), a
/// non-negative float number of seconds, or a string of `<number><unit>`
/// parts with units `ms`, `s`, `m`, `h` (`1h30m`, `1.5s`).
pub fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                at_most_a_century(Duration::from_secs(secs), &number(n))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && *f >= 0.0) {
                // Finite and not negative: only too large a number fails.
                Duration::try_from_secs_f64(f)
                    .map_err(|_| too_long(&number(n)))
                    .and_then(|d| at_most_a_century(d, &number(n)))
            } else if n.as_f64().is_some_and(|f| f < 0.0) {
                Err(format!(
                    "invalid duration {}; durations cannot be negative",
                    number(n)
                ))
            } else {
                Err(format!(
                    "invalid duration {}; expected {DURATION_EXPECTED}",
                    number(n)
                ))
            }
        }
        Value::String(s) => parse_duration(s),
        _ => Err(invalid(v, DURATION_EXPECTED)),
    }
}

/// The longest duration anything takes: a deadline is an `Instant` plus a
/// duration, and one far enough out overflows it, which would end PID 1.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

fn at_most_a_century(d: Duration, shown: &str) -> Result<Duration, String> {
    if d <= MAX_DURATION {
        Ok(d)
    } else {
        Err(too_long(shown))
    }
}

/// Also for a number too large for a `Duration` at all: the limit is what
/// the user needs to know, not that the number was no duration.
fn too_long(shown: &str) -> String {
    format!("invalid duration {shown}; expected at most 100 years (876000h)")
}

/// Parse the string form of a duration (see [`duration`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_any_duration(s).and_then(|d| at_most_a_century(d, &quote(s)))
}

fn parse_any_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {}; expected {DURATION_EXPECTED}",
            quote(s)
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Some(abs) = t.strip_prefix('-') {
        // `-0` (`-0s`, `-0.0`) is zero, not negative.
        if abs.starts_with(|c: char| c.is_ascii_digit())
            && parse_any_duration(abs).is_ok_and(|d| d.is_zero())
        {
            return Ok(Duration::ZERO);
        }
        return Err(format!(
            "invalid duration {}; durations cannot be negative",
            quote(s)
        ));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: an error is an overflow.
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| too_long(&quote(s)));
    }
    // Decimal seconds; not `1e3`, which f64 would read as 1000.
    if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains(['e', 'E']) {
        if let Ok(f) = t.parse::<f64>() {
            // Finite and not negative: only too large a number fails.
            return Duration::try_from_secs_f64(f).map_err(|_| too_long(&quote(s)));
        }
    }
    let mut nanos: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return Err(bad()),
        };
        // Saturating: any overflow is far past the limit.
        nanos = nanos.saturating_add(scaled(num, unit_nanos).ok_or_else(bad)?);
        rest = tail;
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_long(&quote(s)))?;
    Ok(Duration::from_nanos(nanos))
}

/// `num` (digits with an optional fraction) times `unit`, exactly, or
/// `u128::MAX` when it overflows; None when `num` is not a number.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits only: a parse error is an overflow.
    let int_val: u128 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap_or(u128::MAX)
    };
    let mut total = int_val.saturating_mul(unit);
    let mut place = unit;
    for d in frac.bytes().take(18) {
        place /= 10;
        total = total.saturating_add(u128::from(d - b'0') * place);
    }
    Some(total)
}

const SIZE_EXPECTED: &str = "a number of bytes or a size like 512KiB, 10MiB, 1GB";

/// A byte size: an integer, or a string `<integer><unit>` with units
/// B, K/KiB, M/MiB, G/GiB (powers of 1024) or KB, MB, GB (powers of 1000),
/// case-insensitive.
pub fn size(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| invalid(v, SIZE_EXPECTED)),
        Value::String(s) => parse_size(s).ok_or_else(|| invalid(v, SIZE_EXPECTED)),
        _ => Err(invalid(v, SIZE_EXPECTED)),
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

const SIGNAL_EXPECTED: &str = "a signal name like SIGTERM or TERM, or a signal number";

/// A signal: `SIGTERM`, `TERM`, `sigterm`, or a number. Numbers must name a
/// signal `nix` knows (1–31 on Linux); real-time signals are not supported.
pub fn signal(v: &Value) -> Result<Signal, String> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(n) => signal_number(n).map_err(|e| format!("invalid signal {n}; {e}")),
            None => Err(invalid(v, SIGNAL_EXPECTED)),
        },
        Value::String(s) => {
            let t = s.trim();
            if let Ok(n) = t.parse::<i64>() {
                return signal_number(n).map_err(|e| format!("invalid signal {}; {e}", quote(s)));
            }
            let upper = t.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            // Linux's other names for three signals (nix knows one each).
            let canonical = match name.as_str() {
                "SIGIOT" => "SIGABRT",
                "SIGPOLL" => "SIGIO",
                "SIGCLD" => "SIGCHLD",
                other => other,
            };
            Signal::from_str(canonical).map_err(|_| {
                // Compared without the SIG prefix they all share.
                let known = Signal::iterator().map(|k| k.as_str().trim_start_matches("SIG"));
                let hint = super::suggest::closest(&name[3..], known)
                    .map_or(String::new(), |k| format!("; did you mean \"SIG{k}\"?"));
                format!(
                    "unknown signal {}; expected {SIGNAL_EXPECTED}{hint}",
                    quote(s)
                )
            })
        }
        _ => Err(invalid(v, SIGNAL_EXPECTED)),
    }
}

fn signal_number(n: i64) -> Result<Signal, String> {
    const EXPECTED: &str =
        "expected a signal number from 1 to 31 (real-time signals are not supported)";
    let n = i32::try_from(n).map_err(|_| EXPECTED.to_string())?;
    match Signal::try_from(n) {
        Ok(s) if (1..=31).contains(&n) => Ok(s),
        _ => Err(EXPECTED.into()),
    }
}

/// One of a fixed set of words (case-insensitive). The error lists them.
pub fn choice<T: Copy>(v: &Value, options: &[(&str, T)]) -> Result<T, String> {
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let expected = format!("one of {}", names.join(", "));
    match v {
        Value::String(s) => {
            let t = s.trim();
            options
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(t))
                .map(|(_, val)| *val)
                .ok_or_else(|| {
                    let hint = super::suggest::hint(t, names.iter().copied());
                    format!("unknown value {}; expected {expected}{hint}", quote(s))
                })
        }
        _ => Err(invalid(v, &expected)),
    }
}

/// A command: a list of arguments (scalars are printed: `[sleep, 10]`), or
/// a string, which runs as `/bin/sh -c STRING`. Never empty; no NUL bytes.
pub fn argv(v: &Value) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "a list of arguments or a shell command string";
    let args = match v {
        Value::String(s) => {
            if s.trim().is_empty() {
                return Err("command is empty; expected a program to run".into());
            }
            vec!["/bin/sh".to_string(), "-c".to_string(), s.clone()]
        }
        Value::Sequence(items) => {
            let mut args = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let a = scalar_text(item).map_err(|_| {
                    format!("argument {i} is {}; expected a string", describe(item))
                })?;
                args.push(a);
            }
            match args.first() {
                None => return Err("command is empty; expected a program to run".into()),
                Some(first) if first.trim().is_empty() => {
                    return Err("the program name (argument 0) is empty".into())
                }
                Some(_) => {}
            }
            args
        }
        _ => return Err(invalid(v, EXPECTED)),
    };
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(format!("argument {i} contains a NUL byte"));
    }
    Ok(args)
}

/// A list of strings. A plain string is split at commas (so `${DEPS}` and
/// environment overrides can carry lists); empty items are dropped.
pub fn string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                scalar_text(item)
                    .map_err(|_| format!("item {i} is {}; expected a string", describe(item)))
            })
            .collect(),
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()),
        _ => Err(invalid(v, "a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn numbers_print_as_serde_yaml_prints_them() {
        let mut all: Vec<Number> = [
            "1.0",
            "-0.0",
            "0.1",
            "1e15",
            "1e16",
            "1.5e300",
            "1e-7",
            ".nan",
            ".inf",
            "-.inf",
            "-12",
            "18446744073709551615",
        ]
        .iter()
        .map(|t| match y(t) {
            Value::Number(n) => n,
            v => panic!("{t}: {v:?}"),
        })
        .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            all.push(f64::from_bits(x).into());
            all.push((x as i64).into());
        }
        for n in &all {
            assert_eq!(number(n), n.to_string());
        }
        assert_eq!(number(&y("1e16").as_f64().unwrap().into()), "1e16");
    }

    #[test]
    fn booleans() {
        for t in ["true", "yes", "YES", "1", "True", "'1'", "'true'"] {
            assert_eq!(boolean(&y(t)), Ok(true), "{t}");
        }
        for f in ["false", "no", "0", "NO", "'0'"] {
            assert_eq!(boolean(&y(f)), Ok(false), "{f}");
        }
        for bad in ["2", "maybe", "[]", "~", "on"] {
            assert!(boolean(&y(bad)).is_err(), "{bad}");
        }
        assert!(boolean(&y("maybe")).unwrap_err().contains("\"maybe\""));
    }

    #[test]
    fn integers() {
        assert_eq!(uint(&y("1"), 0, 10), Ok(1));
        assert_eq!(uint(&y("'1'"), 0, 10), Ok(1));
        assert_eq!(uint(&y("' 7 '"), 0, 10), Ok(7));
        assert!(uint(&y("11"), 0, 10).unwrap_err().contains("from 0 to 10"));
        assert!(uint(&y("-1"), 0, 10).is_err());
        assert_eq!(uint(&y("'-0'"), 0, 10), Ok(0));
        assert!(uint(&y("'-0'"), 1, 10)
            .unwrap_err()
            .contains("from 1 to 10"));
        assert!(uint(&y("1.5"), 0, 10).is_err());
        assert!(uint(&y("abc"), 0, 10).is_err());
        assert_eq!(integer(&y("-3")), Ok(-3));
        assert_eq!(port(&y("8080")), Ok(8080));
        assert!(port(&y("0")).is_err());
        assert!(port(&y("65536")).is_err());
        assert_eq!(uint32(&y("4294967295"), 0, u32::MAX), Ok(u32::MAX));
    }

    #[test]
    fn durations() {
        let d = |s: &str| duration(&y(s));
        assert_eq!(d("30"), Ok(Duration::from_secs(30)));
        assert_eq!(d("'30'"), Ok(Duration::from_secs(30)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(d("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(d("'2.5'"), Ok(Duration::from_millis(2500)));
        assert!(d("'inf'").is_err());
        for e in ["'1e3'", "'1E3'", "'1e-3'", "'1.5e2s'"] {
            assert!(
                d(e).unwrap_err().contains("expected seconds or a duration"),
                "{e}"
            );
        }
        assert!(d("'NaN'").is_err());
        assert_eq!(d("2h0m5s"), Ok(Duration::from_secs(7205)));
        // An Instant plus anything longer could overflow: refused at load.
        assert_eq!(d("876000h"), Ok(MAX_DURATION));
        for huge in [
            "876001h",
            "10000000000000000000",
            "'3153600001'",
            "3153600001.5",
            // Past u64 nanoseconds, u64 seconds, u128 and f64's Duration.
            "'100000000h'",
            "'99999999999999999999h'",
            "'999999999999999999999999999999999999999999s'",
            "'18446744073709551616'",
            "'99999999999999999999.5'",
            "1e300",
            "'1h99999999999999999999m'",
        ] {
            assert!(d(huge).unwrap_err().contains("at most 100 years"), "{huge}");
        }
        for bad in [
            "-5", "'-5s'", "abc", "5x", "s", "''", "1.2.3s", "[1]", "5 s", "-0.5",
        ] {
            let e = d(bad);
            assert!(e.is_err(), "{bad} -> {e:?}");
        }
        assert!(d("'-5s'").unwrap_err().contains("negative"));
        // Minus zero is zero, not negative; minus anything else is.
        for zero in ["'-0'", "'-0s'", "' -0.0 '", "'-0ms0s'"] {
            assert_eq!(d(zero), Ok(Duration::ZERO), "{zero}");
        }
        for bad in ["'-0.001'", "'--0'", "'- 0'"] {
            assert!(d(bad).unwrap_err().contains("negative"), "{bad}");
        }
        assert!(d("abc").unwrap_err().contains("1h30m"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size(&y("1024")), Ok(1024));
        assert_eq!(size(&y("10MiB")), Ok(10 << 20));
        assert_eq!(size(&y("10mb")), Ok(10_000_000));
        assert_eq!(size(&y("1G")), Ok(1 << 30));
        assert!(size(&y("10 parsecs")).is_err());
        assert!(size(&y("-1")).is_err());
        assert!(size(&y("99999999999999999999GiB")).is_err());
    }

    #[test]
    fn signals() {
        for s in ["SIGTERM", "TERM", "sigterm", "term", "15", "'15'"] {
            assert_eq!(signal(&y(s)), Ok(Signal::SIGTERM), "{s}");
        }
        assert_eq!(signal(&y("SIGQUIT")), Ok(Signal::SIGQUIT));
        assert_eq!(signal(&y("9")), Ok(Signal::SIGKILL));
        assert_eq!(signal(&y("SIGIOT")), Ok(Signal::SIGABRT));
        assert_eq!(signal(&y("poll")), Ok(Signal::SIGIO));
        assert_eq!(signal(&y("cld")), Ok(Signal::SIGCHLD));
        assert!(signal(&y("SIGFOO"))
            .unwrap_err()
            .contains("unknown signal \"SIGFOO\""));
        assert!(signal(&y("0")).is_err());
        assert!(signal(&y("65")).is_err());
        assert!(signal(&y("40")).unwrap_err().contains("real-time"));
        assert!(signal(&y("TREM"))
            .unwrap_err()
            .ends_with("; did you mean \"SIGTERM\"?"));
        assert!(signal(&y("sigusr"))
            .unwrap_err()
            .ends_with("; did you mean \"SIGUSR1\"?"));
        assert_eq!(
            signal(&y("SIGFOO")).unwrap_err(),
            "unknown signal \"SIGFOO\"; expected a signal name like SIGTERM or TERM, or a signal number"
        );
        assert!(signal(&y("[]")).is_err());
    }

    #[test]
    fn choices() {
        let opts = [("always", 1), ("on-failure", 2), ("never", 3)];
        assert_eq!(choice(&y("never"), &opts), Ok(3));
        assert_eq!(choice(&y("On-Failure"), &opts), Ok(2));
        assert_eq!(
            choice(&y("sometimes"), &opts).unwrap_err(),
            "unknown value \"sometimes\"; expected one of always, on-failure, never"
        );
        assert!(choice(&y("5"), &opts).is_err());
        // The spelling of the seed's keys, or a typo: say which was meant.
        assert_eq!(
            choice(&y("on_failure"), &opts).unwrap_err(),
            "unknown value \"on_failure\"; expected one of always, on-failure, never; did you mean \"on-failure\"?"
        );
        assert!(choice(&y("allways"), &opts)
            .unwrap_err()
            .ends_with("did you mean \"always\"?"));
    }

    #[test]
    fn argvs() {
        assert_eq!(
            argv(&y("'echo hi'")),
            Ok(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            argv(&y("[sleep, 10]")),
            Ok(vec!["sleep".into(), "10".into()])
        );
        assert!(argv(&y("[]")).unwrap_err().contains("empty"));
        assert!(argv(&y("''")).unwrap_err().contains("empty"));
        assert!(argv(&y("['', x]")).unwrap_err().contains("argument 0"));
        assert!(argv(&y("[a, [b]]")).unwrap_err().contains("argument 1"));
        assert!(argv(&y("{a: b}")).is_err());
        assert!(argv(&y("\"a\\0b\"")).unwrap_err().contains("NUL"));
    }

    #[test]
    fn lists_and_maps() {
        assert_eq!(string_list(&y("[a, b]")), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(
            string_list(&y("'a, b,,c'")),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn describe_truncates() {
        let long = "x".repeat(100);
        assert!(describe(&Value::String(long)).ends_with('…'));
        assert_eq!(describe(&y("[1]")), "a list");
    }
}
