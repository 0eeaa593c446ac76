//! Memory sizes as Slurm spells them: `--mem`/`--mem-per-cpu` values in, TRES-style
//! `4G`/`512M`/`1.50G` out. Everything is in MiB, Slurm's unit for memory.
//!
//! Sources (SchedMD/slurm, master as of 2026-08):
//! * `src/common/proc_args.c`: `str_to_mbytes`, `_end_on_byte`;
//! * `src/common/slurm_opt.c`: `arg_set_mem` (`Invalid --mem specification`);
//! * `src/common/slurm_protocol_api.c`: `convert_num_unit2` with `CONVERT_NUM_UNIT_EXACT`,
//!   as `assoc_mgr_make_tres_str_from_array` (`src/common/assoc_mgr.c`) and
//!   `scontrol show job` (`MinMemoryNode=`, `src/scontrol/info_job.c`) call it.

use thiserror::Error;

/// Why a memory size was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnitError {
    /// Not a non-negative integer with an optional `K`, `M`, `G` or `T` (plus optional `B`).
    #[error("Invalid memory specification `{value}` (expected a whole number with an optional K, M, G or T suffix, e.g. 4G or 512M)")]
    Invalid {
        /// The text as given.
        value: String,
    },
    /// Well formed, but larger than Slurm can hold (`LLONG_MAX` MiB).
    #[error("Invalid memory specification `{value}`: too large")]
    TooLarge {
        /// The text as given.
        value: String,
    },
}

/// Parses `--mem`/`--mem-per-cpu` into MiB.
///
/// Mirrors `str_to_mbytes` (`src/common/proc_args.c`): a decimal integer (leading
/// whitespace and a `+` allowed, as `strtoll` allows them) followed by nothing (MiB) or one
/// of `K`, `M`, `G`, `T` in either case, itself optionally followed by `B`/`b`
/// (`4GB`, `512mb`). `K` rounds up to whole MiB; the multiplier is 1024. `KiB`-style suffixes
/// and fractions (`1.5G`) are refused, as Slurm refuses them. `0` is accepted (sbatch reads
/// `--mem=0` as "all the memory of the node").
///
/// Stricter than Slurm only where Slurm overflows or accepts by accident: a `-` sign is
/// always refused (Slurm takes `-0`), and results above `i64::MAX` are `TooLarge`.
pub fn parse_mem_mb(s: &str) -> Result<u64, UnitError> {
    let invalid = || UnitError::Invalid {
        value: s.to_string(),
    };
    let too_large = || UnitError::TooLarge {
        value: s.to_string(),
    };
    let body = s.trim_start_matches(is_c_space);
    let body = body.strip_prefix('+').unwrap_or(body);
    let digits_end = body
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(body.len());
    let (digits, suffix) = body.split_at(digits_end);
    if digits.is_empty() {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let mb = match unit_of(suffix).ok_or_else(invalid)? {
        Unit::Kilo => Some(number.div_ceil(1024)),
        Unit::Mega => Some(number),
        Unit::Giga => number.checked_mul(1024),
        Unit::Tera => number.checked_mul(1024 * 1024),
    };
    // `strtoll` and the `long long` result cap every value at LLONG_MAX.
    match mb {
        Some(mb) if i64::try_from(number).is_ok() && i64::try_from(mb).is_ok() => Ok(mb),
        _ => Err(too_large()),
    }
}

/// C's `isspace` in the "C" locale, which `strtoll` skips before the number.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r')
}

/// The unit a `str_to_mbytes` suffix names.
enum Unit {
    Kilo,
    Mega,
    Giga,
    Tera,
}

/// Reads a suffix: empty (MiB) or one letter of `KMGT`, optionally followed by `B`
/// (`_end_on_byte` in `src/common/proc_args.c`).
fn unit_of(suffix: &str) -> Option<Unit> {
    let mut chars = suffix.chars();
    let Some(letter) = chars.next() else {
        return Some(Unit::Mega);
    };
    match chars.as_str() {
        "" | "B" | "b" => {}
        _ => return None,
    }
    match letter.to_ascii_uppercase() {
        'K' => Some(Unit::Kilo),
        'M' => Some(Unit::Mega),
        'G' => Some(Unit::Giga),
        'T' => Some(Unit::Tera),
        _ => None,
    }
}

/// Prints a size in MiB the way Slurm prints memory in TRES strings (`mem=4G`) and
/// `scontrol show job` (`MinMemoryNode=4G`): `0`, `512M`, `4G`, `1.50G`, `1T`.
///
/// Mirrors `convert_num_unit2(num, .., UNIT_MEGA, NO_VAL, 1024, CONVERT_NUM_UNIT_EXACT)`
/// (`src/common/slurm_protocol_api.c`): divide by 1024 while the value is at least 1024 and
/// its integer part is a multiple of 512 (so halves such as `2.5G` still count as exact),
/// then print an integer, or two decimals if a fraction is left. Like Slurm, this works in
/// `f64`, and units past `P` print as `?`.
pub fn format_mem_mb(mb: u64) -> String {
    format_size_exact(mb, 2)
}

/// [`format_mem_mb`] for a count in any unit: `unit` 0 is none (bytes), 1 `K`, 2 `M`, …
/// (sacct's MaxRSS is bytes: `1234K`, `2M`).
pub fn format_size_exact(count: u64, unit: usize) -> String {
    convert_num_unit(count, unit, Conversion::Exact)
}

/// How [`convert_num_unit`] picks the unit it prints in (sacct's `--units`, `--noconvert`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Conversion {
    /// The largest unit that loses no precision (halves count as precise): Slurm's default.
    #[default]
    Exact,
    /// The unit the value is kept in (`--noconvert`).
    None,
    /// This unit, 1 = `K` … 5 = `P`, with two decimals where a fraction is left (`--units`).
    To(usize),
}

/// Slurm's `convert_num_unit2(count, .., unit, spec, 1024, flags)` (src/common/
/// slurm_protocol_api.c): `unit` is the count's own unit, 0 = none (bytes), 1 = `K`, 2 = `M` …
pub fn convert_num_unit(count: u64, unit: usize, how: Conversion) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "?"];
    if count == 0 {
        return "0".to_string();
    }
    // Slurm converts the count to `double` too; the rounding is part of the behaviour.
    let mut num = count as f64;
    let mut unit = unit.min(UNITS.len() - 1);
    match how {
        Conversion::To(to) => {
            while to < unit {
                num *= 1024.0;
                unit -= 1;
            }
            while to > unit {
                num /= 1024.0;
                unit += 1;
            }
        }
        Conversion::None => {}
        Conversion::Exact => {
            // `u64::is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
            #[allow(clippy::manual_is_multiple_of)]
            while num >= 1024.0 && whole_part(num) % 512 == 0 {
                num /= 1024.0;
                unit = (unit + 1).min(UNITS.len() - 1);
            }
        }
    }
    let suffix = UNITS[unit.min(UNITS.len() - 1)];
    let whole = whole_part(num);
    if whole as f64 == num {
        format!("{whole}{suffix}")
    } else {
        format!("{num:.2}{suffix}")
    }
}

/// C's `(uint64_t)num` for the non-negative, finite values [`format_mem_mb`] produces.
fn whole_part(num: f64) -> u64 {
    // `as` truncates toward zero and saturates, which is the C conversion for this range.
    num as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mb(s: &str) -> u64 {
        match parse_mem_mb(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn default_unit_is_mib() {
        assert_eq!(mb("0"), 0);
        assert_eq!(mb("100"), 100);
        assert_eq!(mb("0100"), 100);
    }

    #[test]
    fn suffixes_in_either_case_with_optional_b() {
        assert_eq!(mb("4G"), 4096);
        assert_eq!(mb("4g"), 4096);
        assert_eq!(mb("4GB"), 4096);
        assert_eq!(mb("4Gb"), 4096);
        assert_eq!(mb("512MB"), 512);
        assert_eq!(mb("512M"), 512);
        assert_eq!(mb("512m"), 512);
        assert_eq!(mb("2T"), 2 * 1024 * 1024);
        assert_eq!(mb("2tb"), 2 * 1024 * 1024);
        assert_eq!(mb("1024K"), 1);
        assert_eq!(mb("1025K"), 2);
        assert_eq!(mb("1k"), 1);
        assert_eq!(mb("0K"), 0);
        assert_eq!(mb("2048KB"), 2);
    }

    #[test]
    fn strtoll_leniency_is_kept() {
        assert_eq!(mb(" 4G"), 4096);
        assert_eq!(mb("\t+8"), 8);
    }

    #[test]
    fn rejects_what_slurm_rejects_and_names_it() {
        for s in [
            "", " ", "G", "4X", "4GiB", "4KiB", "4GBB", "4 G", "4G ", "1.5G", "-1", "-0", "--1",
            "4B", "++4", "0x10", "٣G",
        ] {
            match parse_mem_mb(s) {
                Err(e @ UnitError::Invalid { .. }) => {
                    assert!(e.to_string().contains(&format!("`{s}`")), "{e}");
                }
                other => panic!("{s:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_overflow() {
        for s in [
            "99999999999999999999",
            "9223372036854775808",
            "9007199254740992T",
            "9223372036854775807G",
        ] {
            assert!(
                matches!(parse_mem_mb(s), Err(UnitError::TooLarge { .. })),
                "{s}"
            );
        }
        assert_eq!(mb("9223372036854775807"), i64::MAX as u64);
        assert_eq!(mb("9223372036854775807K"), (i64::MAX as u64).div_ceil(1024));
    }

    #[test]
    fn format_matches_convert_num_unit_exact() {
        assert_eq!(format_mem_mb(0), "0");
        assert_eq!(format_mem_mb(1), "1M");
        assert_eq!(format_mem_mb(512), "512M");
        assert_eq!(format_mem_mb(1000), "1000M");
        assert_eq!(format_mem_mb(1023), "1023M");
        assert_eq!(format_mem_mb(1024), "1G");
        assert_eq!(format_mem_mb(1025), "1025M");
        assert_eq!(format_mem_mb(1536), "1.50G");
        assert_eq!(format_mem_mb(2560), "2.50G");
        assert_eq!(format_mem_mb(1280), "1280M");
        assert_eq!(format_mem_mb(4096), "4G");
        assert_eq!(format_mem_mb(4000), "4000M");
        assert_eq!(format_mem_mb(1024 * 1024), "1T");
        assert_eq!(format_mem_mb(1536 * 1024), "1.50T");
        assert_eq!(format_mem_mb(3 * 1024 * 1024 * 1024), "3P");
        assert_eq!(format_mem_mb(1024 * 1024 * 1024 * 1024), "1?");
        // Half a GiB survives one step, then the integer part decides the next one.
        assert_eq!(format_mem_mb(1024 * 512 * 1024 + 512), "512.00T");
    }

    #[test]
    fn convert_num_unit_follows_units_and_noconvert() {
        // sacct --units=G / --units=K / --noconvert on MiB and byte counts.
        assert_eq!(convert_num_unit(2048, 2, Conversion::To(3)), "2G");
        assert_eq!(convert_num_unit(1500, 2, Conversion::To(3)), "1.46G");
        assert_eq!(convert_num_unit(1, 2, Conversion::To(1)), "1024K");
        assert_eq!(convert_num_unit(1234 * 1024, 0, Conversion::To(2)), "1.21M");
        assert_eq!(convert_num_unit(2048, 2, Conversion::None), "2048M");
        assert_eq!(convert_num_unit(2048, 2, Conversion::Exact), "2G");
        assert_eq!(convert_num_unit(0, 2, Conversion::To(3)), "0");
        assert_eq!(
            convert_num_unit(3 * 1024 * 1024, 0, Conversion::None),
            "3145728"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse_mem_mb(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[ +\\-0-9kKmMgGtTbBiI.]{0,24}") {
            let _ = parse_mem_mb(&s);
        }

        #[test]
        fn format_never_panics(n in any::<u64>()) {
            prop_assert!(!format_mem_mb(n).is_empty());
        }

        #[test]
        fn whole_units_round_trip(n in 0u64..1_000_000) {
            let printed = format_mem_mb(n);
            if !printed.contains('.') {
                prop_assert_eq!(parse_mem_mb(&printed), Ok(n));
            }
            prop_assert_eq!(parse_mem_mb(&format!("{n}G")), Ok(n * 1024));
            prop_assert_eq!(parse_mem_mb(&format!("{n}K")), Ok(n.div_ceil(1024)));
        }
    }
}
