//! Slurm's file name patterns for `--output` / `--error` (reference/slurm.md §2.3; Slurm
//! `src/slurmd/common/fname.c`, `expand_stdio_fields`). Pure: no I/O.
//!
//! `%%` `%A` `%a` `%b` `%j` `%J` `%N` `%n` `%s` `%t` `%u` `%x`, with an optional zero padding
//! width (`%4j` → `0128`, at most 10) that numeric fields honour. A pattern that contains a
//! backslash is not expanded at all; its escaping backslashes are removed (`\\` → `\`).

/// The array task id Slurm uses for a job that is not part of an array (`NO_VAL - 1`).
pub const NO_ARRAY_TASK_ID: u32 = 4_294_967_294;

/// What a pattern can refer to, for the batch script of one job on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternContext<'a> {
    pub job_id: u64,
    pub job_name: &'a str,
    pub user: &'a str,
    /// Short host name of the node that expands the pattern (`%N`).
    pub node_name: &'a str,
    /// Index of this node in the allocation (`%n`); the batch host is 0.
    pub node_index: u32,
    /// Task rank (`%t`); the batch script is task 0.
    pub task_id: u32,
    /// Job arrays: the array's id (`%A`) and this task's index (`%a`); `None` outside arrays.
    pub array: Option<(u64, u32)>,
    /// The step (`%s`, and `%J` = `<job>.<step>`): `batch` for the batch script, `0` for srun.
    pub step: &'a str,
}

/// Expands `pattern` for `ctx`. Unknown `%` sequences are kept as written.
pub fn expand(pattern: &str, ctx: &PatternContext<'_>) -> String {
    if pattern.contains('\\') {
        return strip_escapes(pattern);
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let digits_start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let digits: String = chars[digits_start..i].iter().collect();
        let Some(&field) = chars.get(i) else {
            // A trailing `%` (with or without digits) expands to nothing, as in Slurm.
            break;
        };
        if field == '%' && digits.is_empty() {
            out.push('%');
            i += 1;
        } else if is_field(field) {
            let width = digits
                .parse::<usize>()
                .map_or(if digits.is_empty() { 0 } else { 10 }, |w| w.min(10));
            expand_field(&mut out, field, width, ctx);
            i += 1;
        } else if let Some(last) = digits.chars().last() {
            // Slurm keeps the last digit and goes on with the next character as plain text
            // (which may start another `%` sequence): do not consume it here.
            out.push(last);
        } else {
            out.push('%');
            out.push(field);
            i += 1;
        }
    }
    out
}

fn is_field(c: char) -> bool {
    matches!(
        c,
        'A' | 'a' | 'b' | 'J' | 'j' | 'N' | 'n' | 's' | 't' | 'u' | 'x'
    )
}

fn expand_field(out: &mut String, field: char, width: usize, ctx: &PatternContext<'_>) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = match field {
        'A' => write!(out, "{:0width$}", ctx.array.map_or(ctx.job_id, |a| a.0)),
        'j' => write!(out, "{:0width$}", ctx.job_id),
        'J' => write!(out, "{:0width$}.{}", ctx.job_id, ctx.step),
        'a' => write!(
            out,
            "{:0width$}",
            ctx.array.map_or(NO_ARRAY_TASK_ID, |a| a.1)
        ),
        'b' => write!(
            out,
            "{:0width$}",
            ctx.array.map_or(NO_ARRAY_TASK_ID, |a| a.1) % 10
        ),
        'n' => write!(out, "{:0width$}", ctx.node_index),
        't' => write!(out, "{:0width$}", ctx.task_id),
        'N' => write!(out, "{}", ctx.node_name),
        's' => write!(out, "{}", ctx.step),
        'u' => write!(out, "{}", ctx.user),
        'x' => write!(out, "{}", ctx.job_name),
        _ => Ok(()),
    };
}

/// Slurm's `remove_path_slashes`: `\\` becomes `\`, a lone `\` disappears.
fn strip_escapes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if chars.peek() == Some(&'\\') {
                chars.next();
                out.push('\\');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PatternContext<'static> {
        PatternContext {
            job_id: 128,
            job_name: "train",
            user: "alice",
            node_name: "n01",
            node_index: 0,
            task_id: 0,
            array: None,
            step: "batch",
        }
    }

    /// Reference: Slurm man sbatch, FILENAME PATTERN.
    #[test]
    fn every_field_expands() {
        let cases = [
            ("slurm-%j.out", "slurm-128.out"),
            ("%J", "128.batch"),
            ("%x-%u@%N", "train-alice@n01"),
            ("%n.%t.%s", "0.0.batch"),
            ("%A_%a", "128_4294967294"),
            ("%b", "4"),
            ("100%%", "100%"),
            ("%%j", "%j"),
            ("plain", "plain"),
            ("", ""),
        ];
        for (pattern, want) in cases {
            assert_eq!(expand(pattern, &ctx()), want, "pattern {pattern:?}");
        }
    }

    /// Reference: sbatch man page, `job%4j.out` → `job0128.out`; padding stops at 10.
    #[test]
    fn zero_padding() {
        assert_eq!(expand("job%4j.out", &ctx()), "job0128.out");
        assert_eq!(expand("%2j-%2t", &ctx()), "128-00");
        assert_eq!(expand("%12j", &ctx()), "0000000128");
        assert_eq!(expand("%99999999999999999999j", &ctx()), "0000000128");
        // Padding is ignored by text fields.
        assert_eq!(expand("%5x", &ctx()), "train");
    }

    /// Reference: sbatch man page, FILENAME PATTERN: `%A` the array's id, `%a` the task.
    #[test]
    fn array_tasks_expand() {
        let c = PatternContext {
            job_id: 131,
            array: Some((128, 7)),
            step: "batch",
            ..ctx()
        };
        assert_eq!(expand("slurm-%A_%a.out", &c), "slurm-128_7.out");
        assert_eq!(expand("%j-%3a-%b", &c), "131-007-7");
        assert_eq!(
            expand("slurm-%A_%a.out", &ctx()),
            "slurm-128_4294967294.out"
        );
    }

    #[test]
    fn unknown_and_truncated_sequences_do_not_panic() {
        assert_eq!(expand("a%zb", &ctx()), "a%zb");
        assert_eq!(expand("end%", &ctx()), "end");
        assert_eq!(expand("end%3", &ctx()), "end");
        assert_eq!(expand("%3z", &ctx()), "3z");
        assert_eq!(expand("%3%j", &ctx()), "3128");
        assert_eq!(expand("ü%jß", &ctx()), "ü128ß");
    }

    /// Reference: Slurm fname.c `remove_path_slashes`: a backslash disables every substitution.
    #[test]
    fn backslash_disables_expansion() {
        assert_eq!(expand("out\\%j", &ctx()), "out%j");
        assert_eq!(expand("a\\\\b-%j", &ctx()), "a\\b-%j");
    }
}
