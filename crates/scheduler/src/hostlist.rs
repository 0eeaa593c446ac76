//! Slurm host lists: expanding `node[01-10,12]`-style expressions into names and
//! compressing names back, in the same order and spelling as Slurm.
//!
//! Sources (SchedMD/slurm, master as of 2026-08), all for a one-dimensional cluster:
//! * `src/common/hostlist.c`: `_next_tok`, `_hostlist_create_bracketed`,
//!   `_parse_range_list`, `_parse_single_range`, `_push_range_list` (expansion);
//!   `hostname_create_dims`, `hostlist_push_range`, `_width_equiv`, `_zero_padded`,
//!   `hostlist_ranged_string_dims`, `_get_bracketed_list`, `_is_bracket_needed`,
//!   `hostrange_numstr` (compression); `hostrange_cmp`, `hostrange_prefix_cmp`,
//!   `hostlist_sort` (ordering);
//! * `src/common/strnatcmp.c`: `strnatcmp` (prefix order);
//! * `src/common/hostlist.h`: `MAX_RANGE` (= `MAX_SLURM_NODES`, 65536 hosts per range);
//! * `src/scontrol/info_job.c`: `scontrol_encode_hostlist` (`show hostlist[sorted]`);
//! * `src/common/node_conf.c`: `bitmap2node_name` (node lists are sorted sets).

use std::cmp::Ordering;

use thiserror::Error;

/// The most names [`expand`] produces from one expression; larger expansions are an error
/// rather than an allocation that exhausts memory. (Slurm itself only caps each range at
/// [`MAX_RANGE`] hosts.)
pub const MAX_HOSTS: usize = 1_000_000;

/// The most hosts one `lo-hi` range may hold: Slurm's `MAX_RANGE` (`MAX_SLURM_NODES`),
/// checked in `_parse_single_range`.
pub const MAX_RANGE: u64 = 65_536;

/// Characters that separate host list expressions (`hostlist_create_dims`: `"\t, \n"`).
const SEPARATORS: [char; 4] = ['\t', ',', ' ', '\n'];

/// Why a host list expression was refused. Every variant carries the whole expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HostlistError {
    /// A `[` without its `]`, a `]` without its `[`, or a `[` inside brackets.
    #[error("Invalid hostlist `{expr}`: unbalanced brackets")]
    UnbalancedBrackets {
        /// The expression as given.
        expr: String,
    },
    /// A range that is not `N` or `N-M` with `N`, `M` decimal digits (or does not fit 64 bits).
    #[error("Invalid hostlist `{expr}`: invalid range `{range}` (expected N or N-M)")]
    InvalidRange {
        /// The expression as given.
        expr: String,
        /// The offending range, as written between the commas.
        range: String,
    },
    /// A range whose end is below its start (`5-1`).
    #[error("Invalid hostlist `{expr}`: range `{range}` ends before it starts")]
    ReversedRange {
        /// The expression as given.
        expr: String,
        /// The offending range.
        range: String,
    },
    /// A range of more than [`MAX_RANGE`] hosts (Slurm: `Too many hosts in range`).
    #[error("Invalid hostlist `{expr}`: too many hosts in range `{range}` (at most {MAX_RANGE})")]
    RangeTooLarge {
        /// The expression as given.
        expr: String,
        /// The offending range.
        range: String,
    },
    /// The whole expression names more than [`MAX_HOSTS`] hosts.
    #[error("Invalid hostlist `{expr}`: expands to more than {MAX_HOSTS} names")]
    TooManyHosts {
        /// The expression as given.
        expr: String,
    },
}

// ---------------------------------------------------------------------------------------
// Expansion
// ---------------------------------------------------------------------------------------

/// One `lo-hi` range inside brackets; `width` is the written width of `lo` (zero padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

/// One expression between separators: `texts[0] [groups[0]] texts[1] … [groups[k-1]] texts[k]`.
#[derive(Debug)]
struct Token<'a> {
    texts: Vec<&'a str>,
    groups: Vec<Vec<Range>>,
}

/// Expands a host list expression into host names, in Slurm's order, duplicates kept.
///
/// Mirrors `hostlist_create` (`_hostlist_create_bracketed`, `src/common/hostlist.c`):
/// * expressions are separated by `,`, space, tab or newline, except inside brackets;
/// * `prefix[ranges]suffix`, ranges being a comma list of `N` or `N-M`; every number is
///   padded with zeros to the written width of `N` (`[08-10]` → `08 09 10`; `[1-10]` →
///   `1 … 10`);
/// * several bracket groups multiply (`rack[0-1]_blade[0-2]`): with two groups the first
///   varies slowest; with more, Slurm's `_push_range_list` recursion makes the
///   second-to-last group the outermost loop, then the earlier groups right to left, then
///   the last group innermost, and this function follows it;
/// * a name without brackets is taken as written.
///
/// Stricter than Slurm, which passes some malformed text through as a host name: any stray
/// or nested bracket is an error, and range numbers must be plain ASCII digits (Slurm's
/// `strtoul` also takes `+1` or ` 1`, and reads `1-` as `1`).
pub fn expand(expr: &str) -> Result<Vec<String>, HostlistError> {
    let tokens = tokenize(expr)?
        .into_iter()
        .map(|tok| parse_token(expr, tok))
        .collect::<Result<Vec<_>, _>>()?;
    let mut total: usize = 0;
    for token in &tokens {
        total = token_count(token)
            .and_then(|n| total.checked_add(n))
            .filter(|&n| n <= MAX_HOSTS)
            .ok_or_else(|| HostlistError::TooManyHosts {
                expr: expr.to_string(),
            })?;
    }
    let mut names = Vec::with_capacity(total);
    for token in &tokens {
        push_names(token, &mut names);
    }
    Ok(names)
}

/// Splits an expression at separators outside brackets (`_next_tok`), checking that
/// brackets pair up without nesting. Empty pieces are dropped.
fn tokenize(expr: &str) -> Result<Vec<&str>, HostlistError> {
    let unbalanced = || HostlistError::UnbalancedBrackets {
        expr: expr.to_string(),
    };
    let mut tokens = Vec::new();
    let mut inside = false;
    let mut start = 0;
    for (i, c) in expr.char_indices() {
        match c {
            '[' if inside => return Err(unbalanced()),
            '[' => inside = true,
            ']' if !inside => return Err(unbalanced()),
            ']' => inside = false,
            c if !inside && SEPARATORS.contains(&c) => {
                tokens.push(&expr[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if inside {
        return Err(unbalanced());
    }
    tokens.push(&expr[start..]);
    tokens.retain(|t| !t.is_empty());
    Ok(tokens)
}

/// Splits a bracket-balanced token into its texts and parsed bracket groups.
fn parse_token<'a>(expr: &str, tok: &'a str) -> Result<Token<'a>, HostlistError> {
    let mut texts = Vec::new();
    let mut groups = Vec::new();
    let mut rest = tok;
    while let Some((text, after)) = rest.split_once('[') {
        // `tokenize` guarantees the `]`; stay total anyway.
        let (inner, after) =
            after
                .split_once(']')
                .ok_or_else(|| HostlistError::UnbalancedBrackets {
                    expr: expr.to_string(),
                })?;
        texts.push(text);
        groups.push(parse_range_list(expr, inner)?);
        rest = after;
    }
    texts.push(rest);
    Ok(Token { texts, groups })
}

/// Parses the inside of one bracket pair: `N` or `N-M`, comma separated
/// (`_parse_range_list`, `_parse_single_range`).
fn parse_range_list(expr: &str, inner: &str) -> Result<Vec<Range>, HostlistError> {
    inner
        .split(',')
        .map(|range| parse_range(range).map_err(|kind| kind.into_error(expr, range)))
        .collect()
}

/// What is wrong with one range, before the expression is attached.
enum RangeFault {
    Invalid,
    Reversed,
    TooLarge,
}

impl RangeFault {
    fn into_error(self, expr: &str, range: &str) -> HostlistError {
        let (expr, range) = (expr.to_string(), range.to_string());
        match self {
            RangeFault::Invalid => HostlistError::InvalidRange { expr, range },
            RangeFault::Reversed => HostlistError::ReversedRange { expr, range },
            RangeFault::TooLarge => HostlistError::RangeTooLarge { expr, range },
        }
    }
}

/// Parses `N` or `N-M` (`_parse_single_range`): width is the length of `N` as written.
fn parse_range(text: &str) -> Result<Range, RangeFault> {
    let (lo_text, hi_text) = text.split_once('-').unwrap_or((text, text));
    let lo = parse_number(lo_text).ok_or(RangeFault::Invalid)?;
    let hi = parse_number(hi_text).ok_or(RangeFault::Invalid)?;
    if lo > hi {
        return Err(RangeFault::Reversed);
    }
    if hi - lo >= MAX_RANGE {
        return Err(RangeFault::TooLarge);
    }
    Ok(Range {
        lo,
        hi,
        width: lo_text.len(),
    })
}

/// A non-empty run of ASCII digits that fits `u64`.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// How many names a token expands to, or `None` past `usize`.
fn token_count(token: &Token<'_>) -> Option<usize> {
    token.groups.iter().try_fold(1usize, |acc, group| {
        let n = group.iter().try_fold(0usize, |sum, r| {
            // `parse_range` bounds every range by MAX_RANGE.
            let len = usize::try_from(r.hi - r.lo).ok()?.checked_add(1)?;
            sum.checked_add(len)
        })?;
        acc.checked_mul(n)
    })
}

/// The nesting of bracket groups in Slurm's `_push_range_list`, outermost first: the
/// second-to-last group, then the earlier ones right to left, then the last group.
fn slurm_loop_order(groups: usize) -> Vec<usize> {
    match groups {
        0 => Vec::new(),
        n => (0..n - 1).rev().chain([n - 1]).collect(),
    }
}

/// Appends a token's names to `out`. The caller has bounded their number.
fn push_names(token: &Token<'_>, out: &mut Vec<String>) {
    let values: Vec<Vec<String>> = token
        .groups
        .iter()
        .map(|group| {
            group
                .iter()
                .flat_map(|r| (r.lo..=r.hi).map(move |n| format!("{n:0w$}", w = r.width)))
                .collect()
        })
        .collect();
    let order = slurm_loop_order(values.len());
    let mut at = vec![0usize; values.len()];
    loop {
        out.push(build_name(&token.texts, &values, &at));
        if !advance(&order, &values, &mut at) {
            return;
        }
    }
}

/// Joins texts and the chosen value of each group into one name.
fn build_name(texts: &[&str], values: &[Vec<String>], at: &[usize]) -> String {
    let mut name = String::new();
    for (i, text) in texts.iter().enumerate() {
        name.push_str(text);
        if let Some(value) = values.get(i).and_then(|v| v.get(at[i])) {
            name.push_str(value);
        }
    }
    name
}

/// Steps the odometer `at` (innermost group last in `order`); false once it wraps.
fn advance(order: &[usize], values: &[Vec<String>], at: &mut [usize]) -> bool {
    for &g in order.iter().rev() {
        at[g] += 1;
        if at[g] < values[g].len() {
            return true;
        }
        at[g] = 0;
    }
    false
}

// ---------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------

/// A host as Slurm's `hostrange_t` holds it: a name without a numeric suffix, or a run of
/// numbers after a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    /// A name that does not end in digits (`singlehost`), printed as is.
    Single(&'a str),
    /// `prefix` followed by each of `lo..=hi`, zero-padded to `width`.
    Run {
        prefix: &'a str,
        lo: u64,
        hi: u64,
        width: usize,
    },
}

impl<'a> Piece<'a> {
    /// Splits a name into prefix and trailing decimal number (`hostname_create_dims`).
    /// A suffix too long for `u64` leaves the name whole (Slurm would overflow `strtoul`).
    fn of(name: &'a str) -> Piece<'a> {
        let prefix = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let digits = &name[prefix.len()..];
        match digits.parse::<u64>() {
            Ok(n) if !digits.is_empty() => Piece::Run {
                prefix,
                lo: n,
                hi: n,
                width: digits.len(),
            },
            _ => Piece::Single(name),
        }
    }

    /// The text Slurm compares and prints before the numbers.
    fn prefix(&self) -> &'a str {
        match *self {
            Piece::Single(name) => name,
            Piece::Run { prefix, .. } => prefix,
        }
    }

    /// More than one host (`hostrange_count(hr) > 1`).
    fn is_plural(&self) -> bool {
        matches!(self, Piece::Run { lo, hi, .. } if hi > lo)
    }
}

/// Compresses names into a host list expression, keeping their order and duplicates, as
/// `scontrol show hostlist` prints it (`n1,n2,n3,n5` → `n[1-3,5]`, `tux2,tux1,tux2` →
/// `tux[2,1-2]`, `n1` → `n1`).
///
/// Mirrors `hostlist_push_host` and `hostlist_ranged_string` (`src/common/hostlist.c`):
/// * a name is split into a prefix and its trailing digits (`rack1_n7` → `rack1_n` + `7`);
///   names not ending in a digit are never bracketed, even if they contain digits;
/// * a name joins the previous run when it has the same prefix, its number is one more, and
///   the zero padding is compatible (`_width_equiv`: `n09,n10` → `n[09-10]`,
///   `n9,n10` → `n[9-10]`, but `n01,n2` → `n[01,2]`);
/// * consecutive runs with the same prefix share one bracket; brackets appear only when
///   they hold more than one host.
///
/// Empty names are skipped (no expression can produce one). Names holding separators or
/// brackets cannot round-trip through [`expand`].
pub fn compress(names: &[String]) -> String {
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    for name in names.iter().filter(|n| !n.is_empty()) {
        push_piece(&mut pieces, Piece::of(name));
    }
    render(&pieces)
}

/// Sorts and de-duplicates names, then compresses them: what squeue, sinfo and
/// `scontrol show job` print for a node list (`bitmap2node_name`, which sorts a set).
///
/// The order is Slurm's `hostrange_cmp`: prefixes in natural order (`strnatcmp`, so
/// `rack2_` before `rack10_`), a bare name before numbered names with that prefix, then by
/// the written width of the number and its value (`n1,n2,n01,n10`).
pub fn compress_sorted(names: &[String]) -> String {
    let mut pieces: Vec<Piece<'_>> = names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| Piece::of(n))
        .collect();
    pieces.sort_by(host_cmp);
    pieces.dedup();
    let mut merged: Vec<Piece<'_>> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        push_piece(&mut merged, piece);
    }
    render(&merged)
}

/// Appends a piece, extending the last run when Slurm's `hostlist_push_range` would.
fn push_piece<'a>(pieces: &mut Vec<Piece<'a>>, mut piece: Piece<'a>) {
    if let (
        Some(Piece::Run {
            prefix: tail_prefix,
            lo: tail_lo,
            hi: tail_hi,
            width: tail_width,
        }),
        Piece::Run {
            prefix,
            lo,
            hi,
            width,
        },
    ) = (pieces.last_mut(), &mut piece)
    {
        if tail_hi.checked_add(1) == Some(*lo)
            && *tail_prefix == *prefix
            && width_equiv(*tail_lo, tail_width, *lo, width)
        {
            *tail_hi = *hi;
            return;
        }
    }
    pieces.push(piece);
}

/// Zeros needed to pad `num` to `width` (`_zero_padded`).
fn zero_padded(num: u64, width: usize) -> usize {
    width.saturating_sub(num.checked_ilog10().unwrap_or(0) as usize + 1)
}

/// Whether widths `wn` (for `n`) and `wm` (for `m`) can share a range, adjusting one of
/// them so they agree (`_width_equiv`): true when equal, or when applying either width to
/// one of the numbers changes nothing.
fn width_equiv(n: u64, wn: &mut usize, m: u64, wm: &mut usize) -> bool {
    if *wn == *wm {
        return true;
    }
    let n_same = zero_padded(n, *wn) == zero_padded(n, *wm);
    let m_same = zero_padded(m, *wm) == zero_padded(m, *wn);
    match (n_same, m_same) {
        (false, false) => false,
        (false, true) => {
            *wm = *wn;
            true
        }
        (true, _) => {
            *wn = *wm;
            true
        }
    }
}

/// Two pieces go in one bracket when both are runs with the same prefix
/// (`hostrange_within_range`).
fn same_bracket(a: &Piece<'_>, b: &Piece<'_>) -> bool {
    matches!((a, b), (Piece::Run { prefix: p, .. }, Piece::Run { prefix: q, .. }) if p == q)
}

/// Prints pieces as `hostlist_ranged_string` does (`_get_bracketed_list`).
fn render(pieces: &[Piece<'_>]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < pieces.len() {
        if i > 0 {
            out.push(',');
        }
        let mut end = i + 1;
        while end < pieces.len() && same_bracket(&pieces[end], &pieces[end - 1]) {
            end += 1;
        }
        let group = &pieces[i..end];
        // `_is_bracket_needed`: the first run is plural, or another run shares the prefix.
        let bracket = group[0].is_plural() || group.len() > 1;
        out.push_str(group[0].prefix());
        if bracket {
            out.push('[');
        }
        let numbers: Vec<String> = group.iter().filter_map(numstr).collect();
        out.push_str(&numbers.join(","));
        if bracket {
            out.push(']');
        }
        i = end;
    }
    out
}

/// The numeric part of a run, `lo` or `lo-hi`, each padded to the run's width
/// (`hostrange_numstr`); `None` for a bare name.
fn numstr(piece: &Piece<'_>) -> Option<String> {
    match *piece {
        Piece::Single(_) => None,
        Piece::Run { lo, hi, width, .. } if hi > lo => Some(format!("{lo:0width$}-{hi:0width$}")),
        Piece::Run { lo, width, .. } => Some(format!("{lo:0width$}")),
    }
}

/// Slurm's host order (`hostrange_cmp` on single hosts), made total.
///
/// `hostrange_cmp` compares prefixes with `strnatcmp`, puts a bare name before numbered
/// ones with the same prefix, then compares numbers when their widths are compatible and
/// widths otherwise. For hosts parsed from names (width = digits written) that is exactly
/// the order of `(width, value)`.
fn host_cmp(a: &Piece<'_>, b: &Piece<'_>) -> Ordering {
    let number = |p: &Piece<'_>| match *p {
        Piece::Single(_) => None,
        Piece::Run { lo, width, .. } => Some((width, lo)),
    };
    nat_cmp(a.prefix(), b.prefix()).then_with(|| number(a).cmp(&number(b)))
}

/// Natural string order (`strnatcmp`, `src/common/strnatcmp.c`), byte-wise: runs of digits
/// compare as numbers (longer run wins, then value), or digit by digit when either run
/// starts with `0` (`compare_left`); other bytes compare as bytes.
///
/// Unlike `strnatcmp` this does not skip whitespace (host names hold none), and equal
/// results mean equal strings, so the order is total and safe for `sort_by`.
fn nat_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (ra, rb) = (digit_run(&a[i..]), digit_run(&b[j..]));
                let ord = if *x == b'0' || *y == b'0' {
                    ra.cmp(rb)
                } else {
                    ra.len().cmp(&rb.len()).then_with(|| ra.cmp(rb))
                };
                if ord != Ordering::Equal {
                    return ord;
                }
                i += ra.len();
                j += rb.len();
            }
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// The leading run of ASCII digits of `s`.
fn digit_run(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(expr: &str) -> Vec<String> {
        match expand(expr) {
            Ok(v) => v,
            Err(e) => panic!("{expr:?} should expand: {e}"),
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expands_ranges_with_written_width() {
        assert_eq!(
            ok("node[01-03,12]"),
            names(&["node01", "node02", "node03", "node12"])
        );
        assert_eq!(ok("n[8-10]"), names(&["n8", "n9", "n10"]));
        assert_eq!(ok("n[08-10]"), names(&["n08", "n09", "n10"]));
        assert_eq!(ok("n[001-2]"), names(&["n001", "n002"]));
        assert_eq!(
            ok("lx[15,18,32-33]"),
            names(&["lx15", "lx18", "lx32", "lx33"])
        );
        assert_eq!(ok("n[1-10]").len(), 10);
        assert_eq!(ok("[1-2]"), names(&["1", "2"]));
        assert_eq!(ok("n[3]"), names(&["n3"]));
        assert_eq!(ok("n[5-5]"), names(&["n5"]));
    }

    #[test]
    fn expands_several_expressions_and_plain_names() {
        assert_eq!(ok("a[1-3],b5"), names(&["a1", "a2", "a3", "b5"]));
        assert_eq!(ok("login"), names(&["login"]));
        assert_eq!(ok("n01"), names(&["n01"]));
        assert_eq!(ok("a b\tc\nd,,e"), names(&["a", "b", "c", "d", "e"]));
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok(" , "), Vec::<String>::new());
        assert_eq!(ok("n[2,1,2]"), names(&["n2", "n1", "n2"]));
        assert_eq!(ok("a[1,2]b,c"), names(&["a1b", "a2b", "c"]));
    }

    #[test]
    fn expands_suffixes_and_dimensions() {
        assert_eq!(ok("n[1-2].ib"), names(&["n1.ib", "n2.ib"]));
        assert_eq!(
            ok("rack[0-1]_blade[0-2]"),
            names(&[
                "rack0_blade0",
                "rack0_blade1",
                "rack0_blade2",
                "rack1_blade0",
                "rack1_blade1",
                "rack1_blade2",
            ])
        );
        assert_eq!(ok("a[1-2]b[3]c"), names(&["a1b3c", "a2b3c"]));
        // Three groups: Slurm's recursion loops over b, then a, then c.
        assert_eq!(
            ok("a[1-2]b[3-4]c[5-6]"),
            names(&[
                "a1b3c5", "a1b3c6", "a2b3c5", "a2b3c6", "a1b4c5", "a1b4c6", "a2b4c5", "a2b4c6",
            ])
        );
    }

    #[test]
    fn loop_order_follows_push_range_list() {
        assert_eq!(slurm_loop_order(0), Vec::<usize>::new());
        assert_eq!(slurm_loop_order(1), vec![0]);
        assert_eq!(slurm_loop_order(2), vec![0, 1]);
        assert_eq!(slurm_loop_order(4), vec![2, 1, 0, 3]);
    }

    #[test]
    fn bracket_errors_name_the_expression() {
        for expr in ["n[1-2", "n1-2]", "n[[1]]", "n[1]]", "a[1,b2", "]"] {
            match expand(expr) {
                Err(e @ HostlistError::UnbalancedBrackets { .. }) => {
                    assert!(e.to_string().contains(&format!("`{expr}`")), "{e}");
                }
                other => panic!("{expr:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn range_errors_name_the_range() {
        let cases = [
            ("n[a-b]", "a-b"),
            ("n[]", ""),
            ("n[1,]", ""),
            ("n[1-]", "1-"),
            ("n[-1]", "-1"),
            ("n[1--2]", "1--2"),
            ("n[ 1]", " 1"),
            ("n[+1]", "+1"),
            ("n[1-2-3]", "1-2-3"),
            ("n[99999999999999999999]", "99999999999999999999"),
        ];
        for (expr, range) in cases {
            match expand(expr) {
                Err(e @ HostlistError::InvalidRange { .. }) => {
                    assert!(e.to_string().contains(&format!("`{range}`")), "{e}");
                }
                other => panic!("{expr:?}: {other:?}"),
            }
        }
        assert!(matches!(
            expand("n[5-1]"),
            Err(HostlistError::ReversedRange { range, .. }) if range == "5-1"
        ));
    }

    #[test]
    fn sizes_are_capped() {
        assert_eq!(ok("n[1-65536]").len(), 65_536);
        assert!(matches!(
            expand("n[1-65537]"),
            Err(HostlistError::RangeTooLarge { .. })
        ));
        assert!(matches!(
            expand("n[0-18446744073709551615]"),
            Err(HostlistError::RangeTooLarge { .. })
        ));
        assert!(matches!(
            expand("a[0-60000]b[0-60000]"),
            Err(HostlistError::TooManyHosts { .. })
        ));
        let many = vec!["x[0-65535]"; 16].join(",");
        assert!(matches!(
            expand(&many),
            Err(HostlistError::TooManyHosts { .. })
        ));
        assert_eq!(ok("n[18446744073709551614-18446744073709551615]").len(), 2);
    }

    #[test]
    fn compress_keeps_order_and_duplicates() {
        assert_eq!(compress(&names(&["n1", "n2", "n3", "n5"])), "n[1-3,5]");
        assert_eq!(compress(&names(&["tux2", "tux1", "tux2"])), "tux[2,1-2]");
        assert_eq!(compress(&names(&["n1"])), "n1");
        assert_eq!(compress(&names(&["n1", "n1"])), "n[1,1]");
        assert_eq!(compress(&names(&["login", "n1", "n2"])), "login,n[1-2]");
        assert_eq!(compress(&names(&["n1", "m1", "n2"])), "n1,m1,n2");
        assert_eq!(compress(&names(&["a", "a"])), "a,a");
        assert_eq!(compress(&[]), "");
        assert_eq!(compress(&names(&["", "n1", ""])), "n1");
    }

    #[test]
    fn compress_handles_widths_like_width_equiv() {
        assert_eq!(compress(&names(&["n01", "n02"])), "n[01-02]");
        assert_eq!(compress(&names(&["n09", "n10"])), "n[09-10]");
        assert_eq!(compress(&names(&["n9", "n10"])), "n[9-10]");
        assert_eq!(compress(&names(&["n01", "n2"])), "n[01,2]");
        assert_eq!(compress(&names(&["n1", "n02"])), "n[1,02]");
        assert_eq!(compress(&names(&["n99", "n100"])), "n[99-100]");
        assert_eq!(compress(&names(&["n099", "n100"])), "n[099-100]");
    }

    #[test]
    fn compress_only_uses_trailing_digits() {
        assert_eq!(compress(&names(&["n1a", "n2a"])), "n1a,n2a");
        assert_eq!(compress(&names(&["r1n1", "r1n2"])), "r1n[1-2]");
        assert_eq!(compress(&names(&["1", "2", "3"])), "[1-3]");
        assert_eq!(compress(&names(&["7"])), "7");
        let huge = "n99999999999999999999".to_string();
        assert_eq!(
            compress(&[huge.clone(), huge.clone()]),
            format!("{huge},{huge}")
        );
    }

    #[test]
    fn compress_sorted_orders_like_hostlist_sort() {
        assert_eq!(compress_sorted(&names(&["n3", "n1", "n2", "n1"])), "n[1-3]");
        assert_eq!(
            compress_sorted(&names(&["tux2", "tux1", "tux2"])),
            "tux[1-2]"
        );
        assert_eq!(compress_sorted(&names(&["n10", "n9", "n2"])), "n[2,9-10]");
        assert_eq!(
            compress_sorted(&names(&["n10", "n01", "n2", "n1"])),
            "n[1-2,01,10]"
        );
        assert_eq!(
            compress_sorted(&names(&["rack10_n1", "rack2_n1", "rack2_n2"])),
            "rack2_n[1-2],rack10_n1"
        );
        assert_eq!(compress_sorted(&names(&["n1", "n", "m"])), "m,n,n1");
        assert_eq!(compress_sorted(&names(&["b1", "a2", "a1"])), "a[1-2],b1");
    }

    #[test]
    fn nat_cmp_matches_strnatcmp_on_names() {
        use Ordering::*;
        assert_eq!(nat_cmp("rack2_", "rack10_"), Less);
        assert_eq!(nat_cmp("a01", "a1"), Less);
        assert_eq!(nat_cmp("a1", "a01"), Greater);
        assert_eq!(nat_cmp("a", "a1"), Less);
        assert_eq!(nat_cmp("a1x", "a1"), Greater);
        assert_eq!(nat_cmp("a-", "a1"), Less);
        assert_eq!(nat_cmp("a_", "a1"), Greater);
        assert_eq!(nat_cmp("x", "x"), Equal);
        // compare_left: a leading zero makes the runs compare digit by digit.
        assert_eq!(nat_cmp("010", "09"), Less);
        assert_eq!(nat_cmp("10", "9"), Greater);
    }

    #[test]
    fn round_trips_through_expand() {
        let expr = "n[01-03,12],login,rack[0-1]_blade[0-2],n[9-11]";
        let hosts = ok(expr);
        assert_eq!(ok(&compress(&hosts)), hosts);
    }

    /// Host names as drover meets them: letters, digits, `-`, `_`, `.`, often ending in a
    /// number with or without zero padding.
    fn host_name() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[a-c]{1,2}", 0u64..30, 0usize..4).prop_map(|(p, n, w)| format!("{p}{n:0w$}")),
            ("[a-c][0-9]?[-_.]?[a-c]", 0u64..12).prop_map(|(p, n)| format!("{p}{n}")),
            "[a-c0-9][a-z0-9_.-]{0,6}",
            (0u64..20).prop_map(|n| n.to_string()),
        ]
    }

    proptest! {
        #[test]
        fn expand_inverts_compress(list in prop::collection::vec(host_name(), 0..40)) {
            prop_assert_eq!(expand(&compress(&list)), Ok(list));
        }

        #[test]
        fn expand_inverts_compress_sorted(list in prop::collection::vec(host_name(), 0..40)) {
            let mut want = list.clone();
            want.sort_by(|a, b| host_cmp(&Piece::of(a), &Piece::of(b)));
            want.dedup();
            let got = expand(&compress_sorted(&list));
            prop_assert_eq!(&got, &Ok(want.clone()));
            // The output is a set: sorted and duplicate-free whatever the input order.
            let mut reversed = list.clone();
            reversed.reverse();
            prop_assert_eq!(compress_sorted(&reversed), compress_sorted(&list));
        }

        #[test]
        fn compress_of_expand_is_stable(
            prefix in "[a-c]{1,3}",
            ranges in prop::collection::vec((0u64..200, 0u64..5, 1usize..4), 1..6),
        ) {
            let inner: Vec<String> = ranges
                .iter()
                .map(|(lo, len, w)| format!("{lo:0w$}-{:0w$}", lo + len))
                .collect();
            let hosts = expand(&format!("{prefix}[{}]", inner.join(",")));
            prop_assert!(hosts.is_ok());
            let hosts = hosts.unwrap_or_default();
            let once = compress(&hosts);
            prop_assert_eq!(expand(&once), Ok(hosts));
        }

        #[test]
        fn nat_cmp_is_a_total_order(a in "[a0-9_]{0,5}", b in "[a0-9_]{0,5}", c in "[a0-9_]{0,5}") {
            prop_assert_eq!(nat_cmp(&a, &b), nat_cmp(&b, &a).reverse());
            prop_assert_eq!(nat_cmp(&a, &b) == Ordering::Equal, a == b);
            if nat_cmp(&a, &b) != Ordering::Greater && nat_cmp(&b, &c) != Ordering::Greater {
                prop_assert_ne!(nat_cmp(&a, &c), Ordering::Greater);
            }
        }

        #[test]
        fn expand_never_panics(s in any::<String>()) {
            let _ = expand(&s);
        }

        #[test]
        fn expand_never_panics_on_near_misses(s in "[a-c0-9\\[\\],\\- ]{0,24}") {
            let _ = expand(&s);
        }

        #[test]
        fn compress_never_panics(list in prop::collection::vec(any::<String>(), 0..8)) {
            let _ = compress(&list);
            let _ = compress_sorted(&list);
        }
    }
}
