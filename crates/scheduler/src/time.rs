//! Slurm's time values: parsing `-t/--time` limits and printing limits, elapsed times and
//! timestamps byte-for-byte the way Slurm's commands do.
//!
//! Sources (SchedMD/slurm, master as of 2026-08):
//! * `src/common/parse_time.c`: `time_str2secs`, `time_str2mins`, `_is_valid_timespec`,
//!   `mins2time_str`, `_make_time_str_internal`;
//! * `src/common/slurm_opt.c`: `arg_set_time_limit` (a limit of `0` means no limit);
//! * `src/squeue/print.c`: `_print_secs`, `_print_job_time_limit`;
//! * `src/sinfo/print.c`: `_print_secs`, `_print_time`.
//!
//! Everything here is a pure function of its arguments: there is no clock and no time zone
//! database; callers pass the UTC offset they want.

use thiserror::Error;

/// Seconds in Slurm's `YEAR_SECONDS` (`slurm_protocol_defs.h`: 365 days).
const YEAR_SECONDS: i64 = 365 * 86_400;

/// Seconds in a day.
const DAY_SECONDS: i64 = 86_400;

/// The largest number of seconds a limit may spell: `time_str2secs` returns a C `int`.
const MAX_LIMIT_SECS: u64 = i32::MAX as u64;

/// Why a `-t/--time` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The text is not one of Slurm's time limit forms (sbatch: `Invalid --time specification`).
    #[error("Invalid time limit specification `{value}` (expected M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, 0, UNLIMITED or INFINITE)")]
    Invalid {
        /// The text as given.
        value: String,
    },
    /// The value is well formed but larger than Slurm can hold (`INT_MAX` seconds).
    #[error("Invalid time limit specification `{value}`: larger than {MAX_LIMIT_SECS} seconds")]
    TooLarge {
        /// The text as given.
        value: String,
    },
}

/// Parses an sbatch/srun `-t/--time` value into minutes; `Ok(None)` means no limit.
///
/// Mirrors `time_str2mins` (`src/common/parse_time.c`) and `arg_set_time_limit`
/// (`src/common/slurm_opt.c`):
/// * forms `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S` (fields may exceed their
///   usual range, e.g. `90` or `48:00:00`);
/// * `UNLIMITED`, `INFINITE` (any case) and `-1` mean no limit, and so does any value that
///   totals zero (`0`, `0:0`), as sbatch turns a zero limit into `INFINITE`;
/// * seconds round **up** to whole minutes (`0:30` → 1, `1:00:01` → 61).
///
/// Stricter than Slurm, which accepts a few shapes by accident of `sscanf`: every field must
/// be present and made of ASCII digits, so `-5`, `2-` and `5:` are errors here.
pub fn parse_time_limit(s: &str) -> Result<Option<u64>, TimeError> {
    let invalid = || TimeError::Invalid {
        value: s.to_string(),
    };
    if s.eq_ignore_ascii_case("UNLIMITED") || s.eq_ignore_ascii_case("INFINITE") || s == "-1" {
        return Ok(None);
    }
    let secs = limit_seconds(s).ok_or_else(invalid)?;
    let secs = secs.ok_or_else(|| TimeError::TooLarge {
        value: s.to_string(),
    })?;
    if secs > MAX_LIMIT_SECS {
        return Err(TimeError::TooLarge {
            value: s.to_string(),
        });
    }
    let minutes = secs.div_ceil(60);
    Ok((minutes > 0).then_some(minutes))
}

/// Total seconds spelled by a limit: `None` if malformed, `Some(None)` if it overflows.
fn limit_seconds(s: &str) -> Option<Option<u64>> {
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, s),
    };
    let mut fields = Vec::new();
    for part in rest.split(':') {
        fields.push(parse_field(part)?);
    }
    let days = match days {
        Some(d) => Some(parse_field(d)?),
        None => None,
    };
    // (days, hours, minutes, seconds), each `Option<u64>` where `None` means overflow.
    let (d, h, m, sec) = match (days, fields.as_slice()) {
        (None, [m]) => (Some(0), Some(0), *m, Some(0)),
        (None, [m, s]) => (Some(0), Some(0), *m, *s),
        (None, [h, m, s]) => (Some(0), *h, *m, *s),
        (Some(d), [h]) => (d, *h, Some(0), Some(0)),
        (Some(d), [h, m]) => (d, *h, *m, Some(0)),
        (Some(d), [h, m, s]) => (d, *h, *m, *s),
        _ => return None,
    };
    Some(combine(d, h, m, sec))
}

/// One numeric field: `None` if not all ASCII digits, `Some(None)` if it overflows `u64`.
fn parse_field(s: &str) -> Option<Option<u64>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().ok())
}

/// `d*86400 + h*3600 + m*60 + s`, or `None` on overflow.
fn combine(d: Option<u64>, h: Option<u64>, m: Option<u64>, s: Option<u64>) -> Option<u64> {
    d?.checked_mul(86_400)?
        .checked_add(h?.checked_mul(3_600)?)?
        .checked_add(m?.checked_mul(60)?)?
        .checked_add(s?)
}

/// Prints a limit in minutes the way `scontrol show job` (`TimeLimit=`), sacct
/// (`Timelimit`) and sacctmgr print it: `UNLIMITED`, `HH:MM:SS`, or `D-HH:MM:SS` when at
/// least a day (30 → `00:30:00`, 1440 → `1-00:00:00`).
///
/// Mirrors `mins2time_str` (`src/common/parse_time.c`). Note that squeue's `%l` does *not*
/// use this; see [`format_squeue_limit`].
pub fn format_limit(minutes: Option<u64>) -> String {
    let Some(minutes) = minutes else {
        return "UNLIMITED".to_string();
    };
    let days = minutes / 1440;
    let hours = minutes / 60 % 24;
    let mins = minutes % 60;
    if days > 0 {
        format!("{days}-{hours:02}:{mins:02}:00")
    } else {
        format!("{hours:02}:{mins:02}:00")
    }
}

/// Prints an elapsed or remaining time the way squeue's `%M` and `%L` do: `M:SS`,
/// `H:MM:SS`, `D-HH:MM:SS` (days and hours only when non-zero), or `INVALID` when negative
/// or more than 365 days.
///
/// Mirrors `_print_secs` in `src/squeue/print.c`.
pub fn format_elapsed(secs: i64) -> String {
    if !(0..=YEAR_SECONDS).contains(&secs) {
        return "INVALID".to_string();
    }
    // The range check above makes the conversion lossless.
    compact_secs(secs.unsigned_abs().into())
}

/// Prints a job's limit the way squeue's `%l` (`TIME_LIMIT`) does: `UNLIMITED`, else the
/// compact form of [`format_elapsed`] (30 → `30:00`, 1440 → `1-00:00:00`; more than 365
/// days prints `INVALID`, as Slurm does).
///
/// Mirrors `_print_job_time_limit` in `src/squeue/print.c`, which calls
/// `_print_secs(time_limit * 60)`.
pub fn format_squeue_limit(minutes: Option<u64>) -> String {
    match minutes {
        None => "UNLIMITED".to_string(),
        Some(m) if u128::from(m) * 60 > YEAR_SECONDS as u128 => "INVALID".to_string(),
        Some(m) => compact_secs(u128::from(m) * 60),
    }
}

/// Prints a partition limit the way sinfo's `TIMELIMIT` column (`%l`) does: `infinite`,
/// else `M:SS`, `H:MM:SS` or `D-HH:MM:SS` (30 → `30:00`, 1440 → `1-00:00:00`).
///
/// Mirrors `_print_time` and `_print_secs` in `src/sinfo/print.c` (sinfo's copy of
/// `_print_secs` has no `INVALID` case).
pub fn format_sinfo_limit(minutes: Option<u64>) -> String {
    match minutes {
        None => "infinite".to_string(),
        Some(m) => compact_secs(u128::from(m) * 60),
    }
}

/// The `_print_secs` body shared by squeue and sinfo: `M:SS`, `H:MM:SS`, `D-HH:MM:SS`.
fn compact_secs(time: u128) -> String {
    let seconds = time % 60;
    let minutes = time / 60 % 60;
    let hours = time / 3600 % 24;
    let days = time / DAY_SECONDS as u128;
    if days > 0 {
        format!("{days}-{hours:02}:{minutes:02}:{seconds:02}")
    } else if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// Prints a Unix timestamp as Slurm's standard `%FT%T` (`YYYY-MM-DDTHH:MM:SS`), shifted by
/// `utc_offset_secs` (the caller's zone; pass 0 for UTC).
///
/// Mirrors `_make_time_str_internal` (`src/common/parse_time.c`) with
/// `SLURM_TIME_FORMAT` unset or `standard`. Years are printed with at least four digits.
/// Every input is printed; see [`format_timestamp_or`] for Slurm's "unset" spellings.
pub fn format_timestamp(unix_secs: i64, utc_offset_secs: i32) -> String {
    let local = i128::from(unix_secs) + i128::from(utc_offset_secs);
    let day_secs = i128::from(DAY_SECONDS);
    let days = local.div_euclid(day_secs);
    let secs_of_day = local.rem_euclid(day_secs);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}")
}

/// Like [`format_timestamp`], but returns `unset` when `unix_secs <= 0`.
///
/// Slurm stores "not yet" as 0: scontrol prints `Unknown` (`_make_time_str_internal`) and
/// squeue's `%S`/`%e` print `N/A` (`_print_time` in `src/squeue/print.c`).
pub fn format_timestamp_or(unix_secs: i64, utc_offset_secs: i32, unset: &str) -> String {
    if unix_secs <= 0 {
        unset.to_string()
    } else {
        format_timestamp(unix_secs, utc_offset_secs)
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian `(year, month, day)`.
///
/// Howard Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
/// in `i128` so that every `i64` timestamp is in range.
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i128::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a `--begin` time (sbatch(1); `parse_time` in src/common/parse_time.c) into Unix
/// seconds, relative to `now` (Unix seconds) in a zone `utc_offset_secs` east of UTC:
/// `now[+N[seconds|minutes|hours|days|weeks]]`, `HH:MM[:SS][AM|PM]` (today, or tomorrow once
/// past), `midnight`, `noon`, `elevenses` (11:00), `fika` (15:00), `teatime` (16:00), `today`,
/// `tomorrow`, `YYYY-MM-DD[THH:MM[:SS]]`, `MM/DD[/YY]`, `MMDD[YY]`.
pub fn parse_begin(s: &str, now: i64, utc_offset_secs: i32) -> Result<i64, String> {
    let bad = || format!("Invalid time specification `{s}`");
    let text = s.trim().to_ascii_lowercase();
    let offset = i64::from(utc_offset_secs);
    let local_now = now + offset;
    let today = local_now.div_euclid(DAY_SECONDS);
    let secs_today = local_now.rem_euclid(DAY_SECONDS);
    // A local time of day: today, or tomorrow once it has passed.
    let next = |secs_of_day: i64| {
        let day = if secs_of_day > secs_today {
            today
        } else {
            today + 1
        };
        day * DAY_SECONDS + secs_of_day - offset
    };
    if let Some(rest) = text.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, rest) = match rest.as_bytes()[0] {
            b'+' => (1, &rest[1..]),
            b'-' => (-1, &rest[1..]),
            _ => return Err(bad()),
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = match &rest[digits..] {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => DAY_SECONDS,
            "w" | "week" | "weeks" => 7 * DAY_SECONDS,
            _ => return Err(bad()),
        };
        return n
            .checked_mul(unit)
            .and_then(|d| now.checked_add(sign * d))
            .ok_or_else(bad);
    }
    match text.as_str() {
        "midnight" => return Ok((today + 1) * DAY_SECONDS - offset),
        "noon" => return Ok(next(12 * 3600)),
        "elevenses" => return Ok(next(11 * 3600)),
        "fika" => return Ok(next(15 * 3600)),
        "teatime" => return Ok(next(16 * 3600)),
        "today" => return Ok(today * DAY_SECONDS - offset),
        "tomorrow" => return Ok((today + 1) * DAY_SECONDS - offset),
        _ => {}
    }
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    let time_of_day = |t: &str| -> Result<i64, String> {
        let (t, pm) = if let Some(t) = t.strip_suffix("pm") {
            (t, Some(true))
        } else if let Some(t) = t.strip_suffix("am") {
            (t, Some(false))
        } else {
            (t, None)
        };
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let mut h = num(parts[0])?;
        let m = num(parts[1])?;
        let sec = parts.get(2).map_or(Ok(0), |p| num(p))?;
        match pm {
            Some(_) if !(1..=12).contains(&h) => return Err(bad()),
            Some(true) if h < 12 => h += 12,
            Some(false) if h == 12 => h = 0,
            _ => {}
        }
        if h > 23 || m > 59 || sec > 59 {
            return Err(bad());
        }
        Ok(h * 3600 + m * 60 + sec)
    };
    let date = |y: i64, m: i64, d: i64| -> Result<i64, String> {
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        Ok(days_from_civil(y, m as u32, d as u32))
    };
    let this_year = civil_from_days(i128::from(today)).0 as i64;
    let year = |yy: Option<&str>| -> Result<i64, String> {
        match yy {
            None => Ok(this_year),
            Some(t) if t.len() == 2 => Ok(2000 + num(t)?),
            Some(t) => num(t),
        }
    };
    let (day, tod) = if text.len() >= 10 && text.as_bytes()[4] == b'-' {
        // YYYY-MM-DD[THH:MM[:SS]]
        let (d, t) = match text.split_once('t') {
            Some((d, t)) => (d, Some(t)),
            None => (text.as_str(), None),
        };
        let parts: Vec<&str> = d.split('-').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let day = date(num(parts[0])?, num(parts[1])?, num(parts[2])?)?;
        (day, t.map(time_of_day).transpose()?.unwrap_or(0))
    } else if text.contains(':') {
        return Ok(next(time_of_day(&text)?));
    } else if text.contains('/') {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        (
            date(year(parts.get(2).copied())?, num(parts[0])?, num(parts[1])?)?,
            0,
        )
    } else if text.len() == 4 || text.len() == 6 {
        let yy = (text.len() == 6).then(|| &text[4..6]);
        (date(year(yy)?, num(&text[0..2])?, num(&text[2..4])?)?, 0)
    } else {
        return Err(bad());
    };
    Ok(day * DAY_SECONDS + tod - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(s: &str) -> Option<u64> {
        match parse_time_limit(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn begin_times() {
        // 2026-11-26T10:30:00Z
        let now = 1_795_689_000;
        assert_eq!(format_timestamp(now, 0), "2026-11-26T10:30:00");
        let at = |s: &str| format_timestamp(parse_begin(s, now, 0).unwrap(), 0);
        assert_eq!(at("now"), "2026-11-26T10:30:00");
        assert_eq!(at("now+60"), "2026-11-26T10:31:00");
        assert_eq!(at("now+1hour"), "2026-11-26T11:30:00");
        assert_eq!(at("now+2days"), "2026-11-28T10:30:00");
        assert_eq!(at("16:00"), "2026-11-26T16:00:00");
        assert_eq!(at("09:15"), "2026-11-27T09:15:00");
        assert_eq!(at("4:00PM"), "2026-11-26T16:00:00");
        assert_eq!(at("teatime"), "2026-11-26T16:00:00");
        assert_eq!(at("elevenses"), "2026-11-26T11:00:00");
        assert_eq!(at("midnight"), "2026-11-27T00:00:00");
        assert_eq!(at("tomorrow"), "2026-11-27T00:00:00");
        assert_eq!(at("2027-01-20T12:34:56"), "2027-01-20T12:34:56");
        assert_eq!(at("2027-01-20"), "2027-01-20T00:00:00");
        assert_eq!(at("12/24"), "2026-12-24T00:00:00");
        assert_eq!(at("12/24/27"), "2027-12-24T00:00:00");
        assert_eq!(at("122427"), "2027-12-24T00:00:00");
        // One hour east of UTC: 16:00 local is 15:00 UTC.
        assert_eq!(
            format_timestamp(parse_begin("16:00", now, 3600).unwrap(), 0),
            "2026-11-26T15:00:00"
        );
        for bad in [
            "later",
            "now+",
            "now+5parsecs",
            "25:00",
            "13:00pm",
            "2027-13-01",
            "1/2/3/4",
            "",
        ] {
            assert!(parse_begin(bad, now, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_every_sbatch_form() {
        assert_eq!(limit("30"), Some(30));
        assert_eq!(limit("90"), Some(90));
        assert_eq!(limit("5:00"), Some(5));
        assert_eq!(limit("5:30"), Some(6));
        assert_eq!(limit("1:00:00"), Some(60));
        assert_eq!(limit("48:00:00"), Some(2880));
        assert_eq!(limit("1-0"), Some(1440));
        assert_eq!(limit("2-12"), Some(2 * 1440 + 12 * 60));
        assert_eq!(limit("1-2:03"), Some(1440 + 120 + 3));
        assert_eq!(limit("1-2:03:04"), Some(1440 + 120 + 4));
        assert_eq!(limit("007"), Some(7));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(limit("0:30"), Some(1));
        assert_eq!(limit("0:1"), Some(1));
        assert_eq!(limit("1:00:01"), Some(61));
        assert_eq!(limit("0-0:0:59"), Some(1));
        assert_eq!(limit("0:60"), Some(1));
        assert_eq!(limit("0:61"), Some(2));
    }

    #[test]
    fn no_limit_spellings() {
        for s in [
            "0",
            "00",
            "0:0",
            "0:00:00",
            "0-0",
            "UNLIMITED",
            "unlimited",
            "Infinite",
            "-1",
        ] {
            assert_eq!(parse_time_limit(s), Ok(None), "{s}");
        }
    }

    #[test]
    fn rejects_garbage_and_names_it() {
        for s in [
            "",
            " ",
            "abc",
            "1h",
            "-5",
            "--1",
            "1-",
            "-",
            ":",
            "1:",
            ":1",
            "1::2",
            "1:2:3:4",
            "1-2-3",
            "1-2:3:4:5",
            " 5",
            "5 ",
            "+5",
            "1.5",
            "١",
            "UNLIMITE",
            "inf",
        ] {
            match parse_time_limit(s) {
                Err(e @ TimeError::Invalid { .. }) => {
                    assert!(e.to_string().contains(&format!("`{s}`")), "{e}");
                    assert!(e
                        .to_string()
                        .starts_with("Invalid time limit specification"));
                }
                other => panic!("{s:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_values_slurm_cannot_hold() {
        assert!(matches!(
            parse_time_limit("99999999999999999999999"),
            Err(TimeError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_time_limit("36000000"),
            Err(TimeError::TooLarge { .. })
        ));
        // INT_MAX seconds is the largest value time_str2secs can return.
        assert_eq!(limit("0:2147483647"), Some(35_791_395));
        assert!(parse_time_limit("0:2147483648").is_err());
    }

    #[test]
    fn format_limit_matches_mins2time_str() {
        assert_eq!(format_limit(None), "UNLIMITED");
        assert_eq!(format_limit(Some(0)), "00:00:00");
        assert_eq!(format_limit(Some(1)), "00:01:00");
        assert_eq!(format_limit(Some(30)), "00:30:00");
        assert_eq!(format_limit(Some(61)), "01:01:00");
        assert_eq!(format_limit(Some(1439)), "23:59:00");
        assert_eq!(format_limit(Some(1440)), "1-00:00:00");
        assert_eq!(format_limit(Some(2 * 1440 + 3 * 60 + 4)), "2-03:04:00");
        assert_eq!(format_limit(Some(400 * 1440)), "400-00:00:00");
        assert_eq!(
            format_limit(Some(u64::MAX)),
            format!("{}-12:15:00", u64::MAX / 1440)
        );
    }

    #[test]
    fn format_elapsed_matches_squeue_print_secs() {
        assert_eq!(format_elapsed(0), "0:00");
        assert_eq!(format_elapsed(5), "0:05");
        assert_eq!(format_elapsed(65), "1:05");
        assert_eq!(format_elapsed(3599), "59:59");
        assert_eq!(format_elapsed(3600), "1:00:00");
        assert_eq!(format_elapsed(36_005), "10:00:05");
        assert_eq!(format_elapsed(86_399), "23:59:59");
        assert_eq!(format_elapsed(86_400), "1-00:00:00");
        assert_eq!(format_elapsed(90_061), "1-01:01:01");
        assert_eq!(format_elapsed(YEAR_SECONDS), "365-00:00:00");
        assert_eq!(format_elapsed(YEAR_SECONDS + 1), "INVALID");
        assert_eq!(format_elapsed(-1), "INVALID");
        assert_eq!(format_elapsed(i64::MIN), "INVALID");
        assert_eq!(format_elapsed(i64::MAX), "INVALID");
    }

    #[test]
    fn squeue_and_sinfo_limits_are_compact() {
        assert_eq!(format_squeue_limit(None), "UNLIMITED");
        assert_eq!(format_squeue_limit(Some(30)), "30:00");
        assert_eq!(format_squeue_limit(Some(60)), "1:00:00");
        assert_eq!(format_squeue_limit(Some(1440)), "1-00:00:00");
        assert_eq!(format_squeue_limit(Some(366 * 1440)), "INVALID");
        assert_eq!(format_squeue_limit(Some(u64::MAX)), "INVALID");
        assert_eq!(format_sinfo_limit(None), "infinite");
        assert_eq!(format_sinfo_limit(Some(0)), "0:00");
        assert_eq!(format_sinfo_limit(Some(30)), "30:00");
        assert_eq!(format_sinfo_limit(Some(120)), "2:00:00");
        assert_eq!(format_sinfo_limit(Some(1440)), "1-00:00:00");
        assert_eq!(format_sinfo_limit(Some(366 * 1440)), "366-00:00:00");
        assert!(format_sinfo_limit(Some(u64::MAX)).ends_with(":00"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0, 0), "1970-01-01T00:00:00");
        assert_eq!(format_timestamp(1_700_000_000, 0), "2023-11-14T22:13:20");
        assert_eq!(format_timestamp(1_700_000_000, 3600), "2023-11-14T23:13:20");
        assert_eq!(
            format_timestamp(1_700_000_000, -23 * 3600),
            "2023-11-13T23:13:20"
        );
        assert_eq!(format_timestamp(951_782_400, 0), "2000-02-29T00:00:00");
        assert_eq!(format_timestamp(4_107_542_400, 0), "2100-03-01T00:00:00");
        assert_eq!(format_timestamp(-1, 0), "1969-12-31T23:59:59");
        assert_eq!(format_timestamp(253_402_300_799, 0), "9999-12-31T23:59:59");
        // Extremes print something rather than panic.
        assert!(!format_timestamp(i64::MAX, i32::MAX).is_empty());
        assert!(!format_timestamp(i64::MIN, i32::MIN).is_empty());
    }

    #[test]
    fn unset_timestamps() {
        assert_eq!(format_timestamp_or(0, 0, "Unknown"), "Unknown");
        assert_eq!(format_timestamp_or(-5, 0, "N/A"), "N/A");
        assert_eq!(format_timestamp_or(1, 0, "N/A"), "1970-01-01T00:00:01");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse_time_limit(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[-0-9:a-zA-Z ]{0,16}") {
            let _ = parse_time_limit(&s);
        }

        #[test]
        fn formatted_limit_parses_back(m in 1u64..35_791_394) {
            prop_assert_eq!(parse_time_limit(&format_limit(Some(m))), Ok(Some(m)));
            prop_assert_eq!(parse_time_limit(&format_sinfo_limit(Some(m))), Ok(Some(m)));
        }

        #[test]
        fn d_h_m_s_totals(d in 0u64..100, h in 0u64..24, m in 0u64..60, s in 0u64..60) {
            let secs = d * 86_400 + h * 3600 + m * 60 + s;
            let want = (secs > 0).then_some(secs.div_ceil(60));
            prop_assert_eq!(parse_time_limit(&format!("{d}-{h}:{m}:{s}")), Ok(want));
        }

        #[test]
        fn elapsed_never_panics(secs in any::<i64>()) {
            let _ = format_elapsed(secs);
        }

        #[test]
        fn timestamp_never_panics(t in any::<i64>(), off in any::<i32>()) {
            let _ = format_timestamp(t, off);
        }

        #[test]
        fn timestamp_fields_are_well_formed(t in -62_135_596_800i64..253_402_300_799) {
            let s = format_timestamp(t, 0);
            prop_assert_eq!(s.len(), 19, "{}", s);
            prop_assert_eq!(&s[4..5], "-");
            prop_assert_eq!(&s[10..11], "T");
        }

        #[test]
        fn consecutive_days_advance_the_date(days in -1_000_000i64..1_000_000) {
            let a = format_timestamp(days * 86_400, 0);
            let b = format_timestamp((days + 1) * 86_400, 0);
            prop_assert!(a[..10] != b[..10]);
            prop_assert_eq!(&a[10..], "T00:00:00");
        }
    }
}
