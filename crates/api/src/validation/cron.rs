//! Cron schedules as the CronJob controller's parser (robfig/cron, standard format) reads
//! them: five fields or an `@descriptor`, with that parser's error messages.

use super::go_quote;

/// Checks a cron schedule as robfig/cron's standard parser does (5 fields or a descriptor),
/// with its error messages.
pub(crate) fn parse_cron(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if let Some(desc) = spec.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const BOUNDS: [(u32, u32, &[&str]); 5] = [
        (0, 59, &[]),
        (0, 23, &[]),
        (1, 31, &[]),
        (
            1,
            12,
            &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        ),
        (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
    ];
    for (field, (lo, hi, names)) in fields.iter().zip(BOUNDS) {
        for part in field.split(',') {
            parse_cron_range(part, lo, hi, names)?;
        }
    }
    Ok(())
}

fn parse_cron_range(expr: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + if lo == 1 { 1 } else { 0 });
        }
        s.parse::<u32>().map_err(|_| {
            format!(
                "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
                go_quote(s)
            )
        })
    };
    let (start, end) = if range == "*" || range == "?" {
        (lo, hi)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a)?, value(b)?)
    } else {
        let v = value(range)?;
        (v, if step.is_some() { hi } else { v })
    };
    if start < lo {
        return Err(format!("beginning of range ({start}) below minimum ({lo}): {expr}"));
    }
    if end > hi {
        return Err(format!("end of range ({end}) above maximum ({hi}): {expr}"));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if let Some(s) = step {
        match s.parse::<u32>() {
            Ok(0) => return Err(format!("step of range should be a positive number: {expr}")),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
                    go_quote(s)
                ))
            }
        }
    }
    Ok(())
}
