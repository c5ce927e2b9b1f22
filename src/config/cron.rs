//! The *shape* of a `schedule` expression, checked at load time.
//!
//! Accepts the standard 5-field cron syntax (minute hour day-of-month month
//! day-of-week) with `*`, `?` (day fields), lists `a,b`, ranges `a-b`,
//! steps `*/n`, `a-b/n`, `a/n`, month names JAN–DEC and day names SUN–SAT
//! (7 is also Sunday), and the descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` (rewritten to
//! their 5-field form) and `@every <duration>`.
//!
//! This module only checks that each field is well formed and in range,
//! naming the field on error; computing next run times belongs to the
//! scheduler. Invariant: a `Cron` spec it returns has exactly 5 fields,
//! each of which passed `check_field`.

use super::extra::ScheduleSpec;
use super::value::{parse_duration, quote};

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    question: bool,
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        question: false,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        question: false,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        question: true,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        question: false,
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: DAYS,
        question: true,
    },
];

/// Check a schedule expression and return its normalised form.
pub fn parse(expr: &str) -> Result<ScheduleSpec, String> {
    let t = expr.trim();
    if let Some(desc) = t.strip_prefix('@') {
        let (word, arg) = match desc.split_once(char::is_whitespace) {
            Some((w, a)) => (w, a.trim()),
            None => (desc, ""),
        };
        let fixed = match word.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            "every" => {
                let d = parse_duration(arg).map_err(|e| format!("@every: {e}"))?;
                if d.is_zero() {
                    return Err("@every needs a duration greater than 0, e.g. @every 5m".into());
                }
                return Ok(ScheduleSpec::Every(d));
            }
            _ => {
                return Err(format!(
                    "unknown schedule descriptor {}; expected @yearly, @monthly, @weekly, @daily, \
                     @hourly or @every <duration>",
                    quote(t)
                ))
            }
        };
        if !arg.is_empty() {
            return Err(format!("@{word} takes no argument, got {}", quote(arg)));
        }
        return parse(fixed);
    }
    let parts: Vec<&str> = t.split_whitespace().collect();
    if parts.len() != 5 {
        let extra = if parts.len() == 6 {
            " (a seconds field is not supported)"
        } else {
            ""
        };
        return Err(format!(
            "invalid schedule {}: {} fields{extra}; expected 5 fields \
             (minute hour day-of-month month day-of-week) or a descriptor like @hourly",
            quote(expr),
            parts.len()
        ));
    }
    for (part, field) in parts.iter().zip(FIELDS.iter()) {
        check_field(part, field).map_err(|why| {
            format!(
                "invalid {} field {} in schedule {}: {why}",
                field.name,
                quote(part),
                quote(expr)
            )
        })?;
    }
    Ok(ScheduleSpec::Cron(parts.join(" ")))
}

fn check_field(text: &str, f: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("step {} is not a number", quote(step)))?;
            if n == 0 || n > f.max {
                return Err(format!("step {n} is out of range; expected 1-{}", f.max));
            }
        }
        match base {
            "*" => {}
            "?" if f.question => {}
            _ => {
                let (lo, hi) = match base.split_once('-') {
                    Some((a, b)) => (value(a, f)?, Some(value(b, f)?)),
                    None => (value(base, f)?, None),
                };
                if let Some(hi) = hi {
                    if lo > hi {
                        return Err(format!("range {base} runs backwards"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    let expected = if f.names.is_empty() {
        format!("{}-{}", f.min, f.max)
    } else {
        format!(
            "{}-{} or {}-{}",
            f.min,
            f.max,
            f.names[0],
            f.names[f.names.len() - 1]
        )
    };
    if let Ok(n) = text.parse::<u32>() {
        if (f.min..=f.max).contains(&n) {
            return Ok(n);
        }
        return Err(format!("{n} is out of range; expected {expected}"));
    }
    let upper = text.to_ascii_uppercase();
    match f.names.iter().position(|n| *n == upper) {
        // Names start at `min` (JAN = 1, SUN = 0); positions fit in u32.
        Some(i) => Ok(f.min + u32::try_from(i).unwrap_or(0)),
        None => Err(format!(
            "{} is not a value; expected {expected}",
            quote(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok(s: &str) -> String {
        match parse(s) {
            Ok(ScheduleSpec::Cron(c)) => c,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn accepts_standard_forms() {
        assert_eq!(ok("* * * * *"), "* * * * *");
        assert_eq!(
            ok("  */5  0-6 1,15 JAN-mar mon-fri "),
            "*/5 0-6 1,15 JAN-mar mon-fri"
        );
        assert_eq!(ok("0 0 ? * 7"), "0 0 ? * 7");
        assert_eq!(ok("5/15 * * * *"), "5/15 * * * *");
        assert_eq!(ok("@daily"), "0 0 * * *");
        assert_eq!(ok("@HOURLY"), "0 * * * *");
        assert_eq!(ok("@annually"), "0 0 1 1 *");
        assert_eq!(
            parse("@every 1h30m"),
            Ok(ScheduleSpec::Every(Duration::from_secs(5400)))
        );
    }

    #[test]
    fn names_the_bad_field() {
        let e = parse("0 25 * * *").unwrap_err();
        assert!(e.starts_with("invalid hour field \"25\""), "{e}");
        assert!(e.contains("expected 0-23"), "{e}");
        assert!(parse("60 * * * *").unwrap_err().contains("minute field"));
        assert!(parse("* * 0 * *").unwrap_err().contains("day-of-month"));
        assert!(parse("* * * FOO *").unwrap_err().contains("JAN-DEC"));
        assert!(parse("* * * * 8").unwrap_err().contains("day-of-week"));
        assert!(parse("* * * * * *").unwrap_err().contains("seconds field"));
        assert!(parse("* * *").unwrap_err().contains("3 fields"));
        assert!(parse("").unwrap_err().contains("0 fields"));
        assert!(parse("*/0 * * * *").unwrap_err().contains("step 0"));
        assert!(parse("5-1 * * * *").unwrap_err().contains("backwards"));
        assert!(parse("1,,2 * * * *").unwrap_err().contains("empty"));
        assert!(parse("? * * * *").unwrap_err().contains("minute"));
        assert!(parse("@reboot").unwrap_err().contains("descriptor"));
        assert!(parse("@every 0s").unwrap_err().contains("greater than 0"));
        assert!(parse("@every soon").unwrap_err().contains("@every"));
        assert!(parse("@daily now").unwrap_err().contains("no argument"));
    }
}
