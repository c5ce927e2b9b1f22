//! Cron expressions: parsing (at load time) and the next matching civil
//! time (for the scheduler).
//!
//! Accepts the standard 5-field cron syntax (minute hour day-of-month month
//! day-of-week) with `*`, `?` (day fields), lists `a,b`, ranges `a-b`,
//! steps `*/n`, `a-b/n`, `a/n`, month names JAN–DEC and day names SUN–SAT
//! (7 is also Sunday, and so is SUN or 0 ending a range: `SAT-SUN`), and the descriptors `@yearly`/`@annually`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` (rewritten to
//! their 5-field form) and `@every <duration>`.
//!
//! Errors name the field and the expected range. Both day fields follow
//! Vixie cron: when both are restricted a day matches if *either* does;
//! when one starts with `*` (or `?`) only the other restricts.
//!
//! Invariant: a `Cron` spec `parse` returns has exactly 5 fields that
//! `Cron::parse` accepts, and matches at least one day within a 400-year
//! cycle (`0 0 30 2 *` is refused: it would never run).
//! Time zones are not handled here: `next_match` works on civil
//! (wall-clock) times; `scheduler::next` maps them to instants.

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

/// Why a cron expression is refused by a build without the `cron` feature.
const NO_CRON: &str = "cron expressions and @hourly-style descriptors need sheepdog's \
    `cron` feature (time zones), which this build leaves out; use @every <duration>, \
    or a default build";

/// The fixed descriptors and the expressions they stand for (`@every`
/// takes a duration and is handled on its own).
const DESCRIPTORS: [(&str, &str); 7] = [
    ("yearly", "0 0 1 1 *"),
    ("annually", "0 0 1 1 *"),
    ("monthly", "0 0 1 * *"),
    ("weekly", "0 0 * * 0"),
    ("daily", "0 0 * * *"),
    ("midnight", "0 0 * * *"),
    ("hourly", "0 * * * *"),
];

/// The shortest `@every`, probe period or heartbeat interval: shorter
/// ones are a busy loop (a spawn storm for `@every`), not a schedule.
pub const MIN_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

/// Check a schedule expression and return its normalised form.
pub fn parse(expr: &str) -> Result<ScheduleSpec, String> {
    let t = expr.trim();
    if let Some(desc) = t.strip_prefix('@') {
        let (word, arg) = match desc.split_once(char::is_whitespace) {
            Some((w, a)) => (w, a.trim()),
            None => (desc, ""),
        };
        let word_lc = word.to_ascii_lowercase();
        let fixed = match DESCRIPTORS.iter().find(|(w, _)| *w == word_lc) {
            Some((_, expr)) => *expr,
            None if word_lc == "every" => {
                let d = parse_duration(arg).map_err(|e| format!("@every: {e}"))?;
                if d < MIN_PERIOD {
                    return Err(format!(
                        "@every {}: expected a duration of at least {}, e.g. @every 5m",
                        quote(arg),
                        crate::config::format_duration(MIN_PERIOD)
                    ));
                }
                return Ok(ScheduleSpec::Every(d));
            }
            None => {
                let known = DESCRIPTORS.iter().map(|(w, _)| *w).chain(["every"]);
                let hint = super::suggest::closest(word, known)
                    .map_or(String::new(), |k| format!("; did you mean \"@{k}\"?"));
                return Err(format!(
                    "unknown schedule descriptor {}; expected @yearly, @monthly, @weekly, @daily, \
                     @hourly or @every <duration>{hint}",
                    quote(t)
                ));
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
            "invalid schedule {}: {}{extra}; expected 5 fields \
             (minute hour day-of-month month day-of-week) or a descriptor like @hourly",
            quote(expr),
            crate::logging::counted(parts.len() as u64, "field", "fields")
        ));
    }
    for (part, field) in parts.iter().zip(FIELDS.iter()) {
        field_bits(part, field).map_err(|why| {
            format!(
                "invalid {} field {} in schedule {}: {why}",
                field.name,
                quote(part),
                quote(expr)
            )
        })?;
    }
    let joined = parts.join(" ");
    let cron = Cron::parse(&joined)?;
    if cron.never_matches() {
        return Err(format!(
            "schedule {} never matches a date (day-of-month and month exclude each other)",
            quote(expr)
        ));
    }
    if !cfg!(feature = "cron") {
        return Err(NO_CRON.into());
    }
    Ok(ScheduleSpec::Cron(joined))
}

/// A parsed 5-field expression: one bit per allowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    doms: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6 (Sunday = 0; a 7 was folded into 0).
    dows: u8,
    dom_star: bool,
    dow_star: bool,
    /// The hour field starts with `*`: the job runs every hour (or every
    /// n hours), so it follows real time across DST changes.
    pub hour_star: bool,
}

/// A civil (wall-clock) minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
}

impl Civil {
    /// The next minute.
    #[cfg_attr(not(feature = "cron"), allow(dead_code))] // read by zone.rs only
    pub fn succ(self) -> Civil {
        let mut c = self;
        c.minute += 1;
        if c.minute == 60 {
            c.minute = 0;
            c.next_hour_start()
        } else {
            c
        }
    }

    /// 00 minutes of the next hour.
    fn next_hour_start(mut self) -> Civil {
        self.minute = 0;
        self.hour += 1;
        if self.hour == 24 {
            self.next_day_start()
        } else {
            self
        }
    }

    fn next_day_start(mut self) -> Civil {
        self.minute = 0;
        self.hour = 0;
        self.day += 1;
        if self.day > days_in_month(self.year, self.month) {
            self.next_month_start()
        } else {
            self
        }
    }

    fn next_month_start(mut self) -> Civil {
        self.minute = 0;
        self.hour = 0;
        self.day = 1;
        self.month += 1;
        if self.month == 13 {
            self.month = 1;
            self.year += 1;
        }
        self
    }
}

pub fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week, Sunday = 0 (Zeller-style, proleptic Gregorian).
pub fn weekday(y: i32, m: u32, d: u32) -> u32 {
    const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if m < 3 { y - 1 } else { y };
    let idx = (m as usize).saturating_sub(1).min(11);
    (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) + T[idx] + d as i32).rem_euclid(7)
        as u32
}

impl Cron {
    /// Parse five whitespace-separated fields.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "invalid schedule {}: {} fields; expected 5",
                quote(text),
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            bits[i] = field_bits(part, field).map_err(|why| {
                format!(
                    "invalid {} field {} in schedule {}: {why}",
                    field.name,
                    quote(part),
                    quote(text)
                )
            })?;
        }
        let star = |s: &str| s.starts_with('*') || s.starts_with('?');
        // Day-of-week 7 is Sunday too.
        let dows = (bits[4] | (bits[4] >> 7)) & 0x7f;
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            doms: bits[2] as u32,
            months: bits[3] as u16,
            dows: dows as u8,
            dom_star: star(parts[2]),
            dow_star: star(parts[4]),
            hour_star: star(parts[1]),
        })
    }

    fn day_matches(&self, y: i32, m: u32, d: u32) -> bool {
        let dom = self.doms & (1 << d) != 0;
        let dow = self.dows & (1 << weekday(y, m, d)) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// No day of any month (over a full 400-year cycle) matches.
    fn never_matches(&self) -> bool {
        self.next_match(Civil {
            year: 2000,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
        })
        .is_none()
    }

    /// The shortest time between two runs among the first 500 from 2000
    /// (a run that happens is all a check needs); None: fewer than two.
    pub fn shortest_gap(&self) -> Option<std::time::Duration> {
        // Minutes since 0000-03-01, from days_from_civil (H. Hinnant).
        let minutes = |c: Civil| {
            let y = i64::from(c.year) - i64::from(c.month <= 2);
            let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
            let m = i64::from(c.month);
            let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(c.day) - 1;
            let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy;
            (days * 24 + i64::from(c.hour)) * 60 + i64::from(c.minute)
        };
        let mut at = Civil {
            year: 2000,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
        };
        let (mut prev, mut best) = (None, i64::MAX);
        for _ in 0..500 {
            let Some(c) = self.next_match(at) else { break };
            if let Some(p) = prev {
                best = best.min(minutes(c) - minutes(p));
            }
            if best == 1 {
                break;
            }
            prev = Some(c);
            at = c.succ();
        }
        (best != i64::MAX).then(|| std::time::Duration::from_secs(best.unsigned_abs() * 60))
    }

    /// The first civil minute at or after `from` that matches, looking at
    /// most 400 years ahead (None: never).
    pub fn next_match(&self, from: Civil) -> Option<Civil> {
        let mut c = from;
        let limit = from.year.saturating_add(400);
        while c.year <= limit {
            if self.months & (1 << c.month) == 0 {
                c = c.next_month_start();
                continue;
            }
            if !self.day_matches(c.year, c.month, c.day) {
                c = c.next_day_start();
                continue;
            }
            if self.hours & (1 << c.hour) == 0 {
                c = c.next_hour_start();
                continue;
            }
            // The first allowed minute at or after this one, in this hour.
            let rest = self.minutes >> c.minute;
            if rest == 0 {
                c = c.next_hour_start();
                continue;
            }
            c.minute += rest.trailing_zeros();
            return Some(c);
        }
        None
    }
}

/// The set of values a field allows, as bits.
fn field_bits(text: &str, f: &Field) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (item, None),
        };
        let step = match step {
            Some(step) => {
                let n: u32 = step
                    .parse()
                    .map_err(|_| format!("step {} is not a number", quote(step)))?;
                if n == 0 || n > f.max {
                    return Err(format!("step {n} is out of range; expected 1-{}", f.max));
                }
                Some(n)
            }
            None => None,
        };
        let (lo, hi) = match base {
            "*" => (f.min, f.max),
            "?" if f.question => (f.min, f.max),
            _ => match base.split_once('-') {
                // `-5`: not a negative number, a range without its start.
                Some((a, b)) if a.is_empty() || b.is_empty() => {
                    return Err(format!(
                        "range {} has no {}; expected a-b, each {}",
                        quote(base),
                        if a.is_empty() { "start" } else { "end" },
                        expected(f)
                    ));
                }
                Some((a, b)) => {
                    let (lo, mut hi) = (value(a, f)?, value(b, f)?);
                    // Day-of-week: Sunday ends a week too, as 7 (SAT-SUN is 6-7).
                    if f.max == 7 && hi == 0 && lo > 0 {
                        hi = 7;
                    }
                    if lo > hi {
                        return Err(format!("range {base} runs backwards"));
                    }
                    (lo, hi)
                }
                // `a/n` means a, a+n, … up to the maximum (Vixie cron).
                None if step.is_some() => (value(base, f)?, f.max),
                None => {
                    let v = value(base, f)?;
                    (v, v)
                }
            },
        };
        let step = step.unwrap_or(1) as usize;
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

/// The values a field takes: `0-59`, `1-12 or JAN-DEC`.
fn expected(f: &Field) -> String {
    match (f.names.first(), f.names.last()) {
        (Some(first), Some(last)) => format!("{}-{} or {first}-{last}", f.min, f.max),
        _ => format!("{}-{}", f.min, f.max),
    }
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    let expected = expected(f);
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
    #[cfg_attr(
        not(all(feature = "api", feature = "cron", feature = "http")),
        ignore = "needs the default features"
    )]
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
        assert!(parse("5").unwrap_err().contains(": 1 field; expected 5"));
        assert!(parse("*/0 * * * *").unwrap_err().contains("step 0"));
        assert!(parse("5-1 * * * *").unwrap_err().contains("backwards"));
        // A leading `-` is a range without its start, not a negative value.
        assert_eq!(
            parse("-5 * * * *").unwrap_err(),
            "invalid minute field \"-5\" in schedule \"-5 * * * *\": range \"-5\" has no start; \
             expected a-b, each 0-59"
        );
        assert!(parse("* * * jan- *")
            .unwrap_err()
            .ends_with("range \"jan-\" has no end; expected a-b, each 1-12 or JAN-DEC"));
        assert!(parse("@every 100000000h")
            .unwrap_err()
            .ends_with("expected at most 100 years (876000h)"));
        // Sunday at the end of a day-of-week range is 7.
        for (named, numbered) in [("SAT-SUN", "6-7"), ("mon-sun", "1-7"), ("6-0", "6-7")] {
            assert_eq!(
                field_bits(named, &FIELDS[4]),
                field_bits(numbered, &FIELDS[4]),
                "{named}"
            );
        }
        // ...but at the start it is 0, as always.
        assert_eq!(
            field_bits("SUN-SAT", &FIELDS[4]),
            field_bits("0-6", &FIELDS[4])
        );
        assert!(parse("0 0 * * FRI-MON").unwrap_err().contains("backwards"));
        assert!(parse("1,,2 * * * *").unwrap_err().contains("empty"));
        assert!(parse("? * * * *").unwrap_err().contains("minute"));
        assert!(parse("@reboot").unwrap_err().contains("descriptor"));
        assert!(!parse("@reboot").unwrap_err().contains("did you mean"));
        assert!(parse("@hourli")
            .unwrap_err()
            .ends_with("; did you mean \"@hourly\"?"));
        assert!(parse("@every 0s").unwrap_err().contains("at least 10ms"));
        assert!(parse("@every soon").unwrap_err().contains("@every"));
        assert!(parse("@daily now").unwrap_err().contains("no argument"));
    }
}
