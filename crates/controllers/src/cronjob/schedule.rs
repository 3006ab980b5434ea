//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's standard parser):
//! five fields (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges,
//! steps and month/weekday names, or a descriptor (`@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`). Times are computed in a
//! time zone, so `0 9 * * *` with `timeZone: Europe/Berlin` follows daylight saving time.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields as bit sets.
    Cron {
        /// Bits 0..=59.
        minutes: u64,
        /// Bits 0..=23.
        hours: u64,
        /// Bits 1..=31.
        days: u64,
        /// Bits 1..=12.
        months: u64,
        /// Bits 0..=6 (Sunday is 0).
        weekdays: u64,
        /// Day-of-month or day-of-week started with `*`/`?`: both must match (else either).
        day_star: bool,
    },
    /// `@every <duration>`: a fixed interval in seconds.
    Every(i64),
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parse a schedule; the error says what is wrong.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s if s.starts_with("@every ") => {
            let secs = parse_duration(s.trim_start_matches("@every ").trim())?;
            // robfig rounds the interval down to whole seconds, with a minimum of one second.
            return Ok(Schedule::Every(secs.max(1)));
        }
        s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
        s => s,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {expanded}", fields.len()));
    }
    let (minutes, _) = field(fields[0], 0, 59, &[])?;
    let (hours, _) = field(fields[1], 0, 23, &[])?;
    let (days, dom_star) = field(fields[2], 1, 31, &[])?;
    let (months, _) = field(fields[3], 1, 12, &MONTHS)?;
    let (weekdays, dow_star) = field(fields[4], 0, 6, &DAYS)?;
    Ok(Schedule::Cron { minutes, hours, days, months, weekdays, day_star: dom_star || dow_star })
}

/// A Go duration ("1h30m", "90s", "1.5h") in whole seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("failed to parse duration @every {s}");
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    // Whole seconds; the float came from a short user string.
    #[allow(clippy::cast_possible_truncation)]
    Ok(total.floor() as i64)
}

/// One field: the bit set and whether it started with `*`/`?`.
fn field(expr: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let value = |s: &str| -> Result<u32, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                let i = u32::try_from(i).unwrap_or(0);
                return Ok(i + lo);
            }
            s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))
        };
        let (start, end) = if range == "*" || range == "?" {
            star = true;
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step.is_some() { hi } else { v })
        };
        let step = match step {
            Some(s) => s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))?,
            None => 1,
        };
        if start < lo || end > hi || start > end || step == 0 {
            return Err(format!("invalid range {part} (allowed {lo}-{hi})"));
        }
        for v in (start..=end).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

fn has(bits: u64, v: i64) -> bool {
    (0..64).contains(&v) && bits & (1 << v) != 0
}

impl Schedule {
    /// The first activation strictly after `after`, with wall-clock fields read in `tz`.
    /// None if there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minutes, hours, days, months, weekdays, day_star) = match self {
            Schedule::Every(secs) => return after.checked_add(secs.seconds()).ok(),
            Schedule::Cron { minutes, hours, days, months, weekdays, day_star } => {
                (*minutes, *hours, *days, *months, *weekdays, *day_star)
            }
        };
        // Start at the next whole minute of local wall-clock time.
        let local = tz.to_datetime(after);
        let mut t = local.with().second(0).subsec_nanosecond(0).build().ok()?;
        t = t.checked_add(1.minute()).ok()?;
        let limit = local.year() + 5;
        while t.year() <= limit {
            if !has(months, i64::from(t.month())) {
                let first = Date::new(t.year(), t.month(), 1).ok()?;
                t = first.checked_add(1.month()).ok()?.to_datetime(Default::default());
                continue;
            }
            let dom = has(days, i64::from(t.day()));
            let dow = has(weekdays, i64::from(t.weekday().to_sunday_zero_offset()));
            let day_ok = if day_star { dom && dow } else { dom || dow };
            if !day_ok {
                t = t.date().checked_add(1.day()).ok()?.to_datetime(Default::default());
                continue;
            }
            if !has(hours, i64::from(t.hour())) {
                t = hour_start(t)?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(minutes, i64::from(t.minute())) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A wall-clock time skipped by a DST gap maps forward (robfig does the same).
            let ts = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn hour_start(t: DateTime) -> Option<DateTime> {
    t.with().minute(0).second(0).subsec_nanosecond(0).build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        let s = parse(spec).ok()?;
        s.next_after(at(after), &TimeZone::UTC).map(|t| t.to_string())
    }

    #[test]
    fn table_next_activation() {
        let cases = [
            ("* * * * *", "2025-01-01T10:00:30Z", "2025-01-01T10:01:00Z"),
            ("* * * * *", "2025-01-01T10:00:00Z", "2025-01-01T10:01:00Z"),
            ("*/15 * * * *", "2025-01-01T10:16:00Z", "2025-01-01T10:30:00Z"),
            ("0 9 * * 1-5", "2025-01-03T10:00:00Z", "2025-01-06T09:00:00Z"),
            ("0 0 1 * *", "2025-01-15T00:00:00Z", "2025-02-01T00:00:00Z"),
            ("30 2 * jan,mar *", "2025-01-31T03:00:00Z", "2025-03-01T02:30:00Z"),
            ("@hourly", "2025-01-01T10:59:59Z", "2025-01-01T11:00:00Z"),
            ("@daily", "2025-12-31T23:00:00Z", "2026-01-01T00:00:00Z"),
            ("@weekly", "2025-01-01T00:00:00Z", "2025-01-05T00:00:00Z"),
            ("@yearly", "2025-06-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ("@every 90s", "2025-01-01T00:00:00Z", "2025-01-01T00:01:30Z"),
            // Both day fields restricted: either matches (the 13th or a Friday).
            ("0 0 13 * fri", "2025-01-01T00:00:00Z", "2025-01-03T00:00:00Z"),
            // Day-of-month starred: both must match.
            ("0 0 * * sun", "2025-01-01T00:00:00Z", "2025-01-05T00:00:00Z"),
            ("0 0 29 2 *", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next(spec, after).as_deref(), Some(want), "{spec} after {after}");
        }
        assert_eq!(next("0 0 30 2 *", "2025-01-01T00:00:00Z"), None);
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in ["* * * *", "60 * * * *", "* * * * 7", "@often", "*/0 * * * *", "a * * * *"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        let tz = TimeZone::fixed(k8s_openapi::jiff::tz::offset(2));
        let s = parse("0 9 * * *").unwrap_or(Schedule::Every(1));
        let t = s.next_after(at("2025-01-01T00:00:00Z"), &tz);
        assert_eq!(t.map(|t| t.to_string()).as_deref(), Some("2025-01-01T07:00:00Z"));
    }
}
