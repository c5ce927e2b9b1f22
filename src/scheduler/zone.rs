//! Cron due times in a time zone: the only user of jiff, which is linked
//! in with the `cron` cargo feature (on by default). Without it, cron
//! expressions are refused at load (`config::cron`) and this module has no
//! zone to offer; `@every` schedules need none.
//!
//! Daylight saving (`next_after`): a time that falls in a spring-forward gap
//! runs once, at the transition (the first valid instant after it); a time
//! that occurs twice in a fall-back repeat runs once, at its first
//! occurrence. Jobs whose hour field is `*` or `*/n` follow real time
//! instead, like cronie.
//!
//! `Local` is `TZ`, else `/etc/localtime`, else UTC (as the C library has
//! it). A `TZ` that names no zone is refused like an unknown zone name:
//! jiff would quietly run the jobs in UTC, at the wrong hour.

use std::time::SystemTime;

use crate::config::cron::Cron;
use crate::config::extra::Timezone;

#[cfg(feature = "cron")]
pub use with_jiff::*;
#[cfg(not(feature = "cron"))]
pub use without_jiff::*;

#[cfg(feature = "cron")]
mod with_jiff {
    use super::*;
    use crate::config::cron::Civil;
    use jiff::tz::{AmbiguousOffset, TimeZone};
    use jiff::Timestamp;

    /// A resolved time zone.
    pub type Zone = TimeZone;

    /// Resolve a configured time zone. Named zones come from the system
    /// zoneinfo (`/usr/share/zoneinfo`, or `$TZDIR`).
    pub fn time_zone(tz: &Timezone) -> Result<TimeZone, String> {
        match tz {
            Timezone::Utc => Ok(TimeZone::UTC),
            Timezone::Local => local(),
            // jiff's own message says no more than `unknown` does, and
            // formatting it links 60 KiB of jiff's error display.
            Timezone::Named(name) => TimeZone::get(name)
                .map_err(|_| format!("unknown time zone {name:?}: {}", unknown(name))),
        }
    }

    fn local() -> Result<TimeZone, String> {
        match (TimeZone::try_system(), std::env::var_os("TZ")) {
            (Ok(tz), _) => Ok(tz),
            (Err(_), None) => Ok(TimeZone::UTC),
            (Err(_), Some(v)) => {
                let v = v.to_string_lossy();
                Err(format!("Local follows TZ, and TZ={v:?} is {}", unknown(&v)))
            }
        }
    }

    /// `tz` as the plan and the log show it, with what `Local` stands for
    /// here: `Local (Europe/Amsterdam)`.
    pub fn describe(tz: &Timezone) -> String {
        let zone = match tz {
            Timezone::Local => local().ok(),
            Timezone::Utc | Timezone::Named(_) => None,
        };
        // Without a name (a POSIX rule in TZ, a zone file without one),
        // `Local` alone.
        match zone.as_ref().and_then(TimeZone::iana_name) {
            Some(n) => format!("Local ({n})"),
            None => super::name(tz).into(),
        }
    }

    /// Why `name` is not a zone, with the closest name the system has.
    fn unknown(name: &str) -> String {
        let names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_string())
            .collect();
        let hint = crate::config::suggest::hint(name, names.iter().map(String::as_str));
        let hint = if hint.is_empty() && names.is_empty() {
            "; the system has no zoneinfo (an Alpine image needs the tzdata package)".to_string()
        } else {
            hint
        };
        format!("not in the system zoneinfo (/usr/share/zoneinfo or $TZDIR){hint}")
    }

    fn civil_of(dt: jiff::civil::DateTime) -> Civil {
        Civil {
            year: i32::from(dt.year()),
            month: u32::try_from(dt.month()).unwrap_or(1),
            day: u32::try_from(dt.day()).unwrap_or(1),
            hour: u32::try_from(dt.hour()).unwrap_or(0),
            minute: u32::try_from(dt.minute()).unwrap_or(0),
        }
    }

    fn to_datetime(c: Civil) -> Option<jiff::civil::DateTime> {
        jiff::civil::DateTime::new(
            i16::try_from(c.year).ok()?,
            i8::try_from(c.month).ok()?,
            i8::try_from(c.day).ok()?,
            i8::try_from(c.hour).ok()?,
            i8::try_from(c.minute).ok()?,
            0,
            0,
        )
        .ok()
    }

    /// The first instant strictly after `after` when `cron` is due in `tz`
    /// (None: never within 400 years).
    pub fn next_after(cron: &Cron, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        if cron.hour_star {
            next_real(cron, tz, after)
        } else {
            next_civil(cron, tz, after)
        }
    }

    /// Civil semantics: each matching wall-clock minute runs once.
    fn next_civil(cron: &Cron, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let mut from = civil_of(tz.to_datetime(after)).succ();
        for _ in 0..1000 {
            let c = cron.next_match(from)?;
            let dt = to_datetime(c)?;
            let at = match tz.to_ambiguous_timestamp(dt).offset() {
                AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok()?,
                // In a gap: the transition itself, the first valid instant.
                AmbiguousOffset::Gap { after: off, .. } => {
                    let early = off.to_timestamp(dt).ok()?;
                    tz.following(early).next()?.timestamp()
                }
                // Twice: the first occurrence.
                AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok()?,
            };
            if at > after {
                return Some(at);
            }
            from = c.succ();
        }
        None
    }

    /// Real-time semantics: an instant is due when its local wall-clock time
    /// (with the offset in force then) matches.
    fn next_real(cron: &Cron, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let mut cur = after;
        let mut inclusive = false;
        for _ in 0..1000 {
            let off = tz.to_offset(cur);
            let base = civil_of(off.to_datetime(cur));
            let from = if inclusive { base } else { base.succ() };
            let c = cron.next_match(from)?;
            let at = off.to_timestamp(to_datetime(c)?).ok()?;
            match tz.following(cur).next() {
                // The offset changes before that: search again from there.
                Some(tr) if tr.timestamp() <= at => {
                    cur = tr.timestamp();
                    inclusive = true;
                }
                _ if at > after => return Some(at),
                _ => {
                    cur = at;
                    inclusive = false;
                }
            }
        }
        None
    }

    /// `next_after` on the wall clock.
    pub fn next_wall(cron: &Cron, tz: &Zone, after: SystemTime) -> Option<SystemTime> {
        let ts = Timestamp::try_from(after).ok()?;
        next_after(cron, tz, ts).map(SystemTime::from)
    }
}

#[cfg(not(feature = "cron"))]
mod without_jiff {
    use super::*;

    /// No zones in this build: a value of this type cannot exist.
    #[derive(Debug, Clone)]
    pub enum Zone {}

    pub fn time_zone(_: &Timezone) -> Result<Zone, String> {
        Err(
            "time zones need sheepdog's `cron` feature, which this build leaves out \
             (@every schedules need none)"
                .into(),
        )
    }

    pub fn next_wall(_: &Cron, tz: &Zone, _: SystemTime) -> Option<SystemTime> {
        match *tz {}
    }

    /// No cron expression can be loaded here: no zone is ever shown.
    pub fn describe(tz: &Timezone) -> String {
        super::name(tz).into()
    }
}

/// As `schedule_timezone` accepts it (and as the status API reports it).
pub fn name(tz: &Timezone) -> &str {
    match tz {
        Timezone::Utc => "UTC",
        Timezone::Local => "Local",
        Timezone::Named(n) => n,
    }
}
