//! sinfo, pure: options (src/sinfo/opts.c), node filters (`-p -n -t -d -r`), grouping of nodes
//! into records (src/sinfo/sinfo.c `_match_node_data`), sorting (src/sinfo/sort.c) and output
//! (`-o` letters, `-O` names, src/sinfo/print.c; `--json`).
//!
//! A record is a partition (or none, when no partition field is shown) and the nodes whose
//! shown fields agree; numeric fields (CPUs, memory, disk, weight, …) only split records under
//! `-e` and otherwise print their minimum with a `+` when the nodes differ.

use crate::format::{
    compress_hostlist, format_specs, long_spec, node_state_bits, node_state_compact, print_str,
    FLAG_DRAIN, FLAG_FAIL, FLAG_NO_RESPOND,
};
use crate::getopt::{self, long, opt, Arg};
use crate::squeue::{ctime, json_meta, json_number};
use drover_proto::{NodeInfo, PartitionInfo};
use drover_scheduler::{hostlist, time};
use std::cmp::Ordering;

/// `MIN_PART_FIELD_SIZE` / `MIN_NODE_FIELD_SIZE` (src/sinfo/sinfo.c).
const MIN_FIELD_SIZE: usize = 9;

/// Built-in formats as Slurm 22.05.8 prints them; `#` marks the widths sinfo computes
/// (at least 9, else the longest value).
const DEFAULT_FORMAT: &str = "%#P %.5a %.10l %.6D %.6t %N";
const LONG_FORMAT: &str = "%#P %.5a %.10l %.10s %.4r %.8h %.10g %.6D %.11T %N";
const SUMMARIZE_FORMAT: &str = "%#P %.5a %.10l %.16F %N";
const NODE_FORMAT: &str = "%#N %.6D %.#P %6t";
const NODE_LONG_FORMAT: &str = "%#N %.6D %.#P %.11T %4c %.8z %.6m %.8d %.6w %.8f %20E";
const REASONS_FORMAT: &str = "%20E %9u %19H %N";
const REASONS_LONG_FORMAT: &str = "%20E %12U %19H %6t %N";

/// (letter, `-O` names in lower case, header, numeric-and-exact-only).
const FIELDS: &[(char, &[&str], &str, bool)] = &[
    ('a', &["available"], "AVAIL", false),
    ('A', &["nodeai"], "NODES(A/I)", false),
    ('b', &["features_act"], "ACTIVE_FEATURES", false),
    ('B', &["maxcpuspernode"], "MAX_CPUS_PER_NODE", false),
    ('c', &["cpus"], "CPUS", true),
    ('C', &["cpusstate"], "CPUS(A/I/O/T)", false),
    ('d', &["disk"], "TMP_DISK", true),
    ('D', &["nodes"], "NODES", false),
    ('e', &["freemem"], "FREE_MEM", true),
    ('E', &["reason"], "REASON", false),
    ('f', &["features"], "AVAIL_FEATURES", false),
    ('F', &["nodeaiot"], "NODES(A/I/O/T)", false),
    ('g', &["groups"], "GROUPS", false),
    ('G', &["gres"], "GRES", false),
    ('h', &["oversubscribe", "share"], "OVERSUBSCRIBE", false),
    ('H', &["timestamp"], "TIMESTAMP", false),
    ('I', &["priorityjobfactor"], "PRIO_JOB_FACTOR", false),
    ('l', &["time"], "TIMELIMIT", false),
    ('L', &["defaulttime"], "DEFAULTTIME", false),
    ('m', &["memory"], "MEMORY", true),
    ('M', &["preemptmode"], "PREEMPT_MODE", false),
    ('n', &["nodehost"], "HOSTNAMES", false),
    ('N', &["nodelist"], "NODELIST", false),
    ('o', &["nodeaddr"], "NODE_ADDR", false),
    ('O', &["cpusload"], "CPU_LOAD", true),
    ('p', &["prioritytier"], "PRIO_TIER", false),
    ('P', &["partition"], "PARTITION", false),
    ('r', &["root"], "ROOT", false),
    ('R', &["partitionname"], "PARTITION", false),
    ('s', &["size"], "JOB_SIZE", false),
    ('S', &["allocnodes"], "ALLOCNODES", false),
    ('t', &["statecompact"], "STATE", false),
    ('T', &["statelong"], "STATE", false),
    ('u', &["user"], "USER", false),
    ('U', &["userlong"], "USER", false),
    ('v', &["version"], "VERSION", false),
    ('w', &["weight"], "WEIGHT", true),
    ('X', &["sockets"], "SOCKETS", true),
    ('Y', &["cores"], "CORES", true),
    ('Z', &["threads"], "THREADS", true),
    ('z', &["socketcorethread"], "S:C:T", true),
    // -O only (letters outside Slurm's set).
    ('1', &["allocmem"], "ALLOCMEM", true),
    ('2', &["statecomplete"], "STATECOMPLETE", false),
    ('3', &["gresused"], "GRES_USED", false),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field {
        letter: char,
        header: &'static str,
        /// `None`: sinfo computes it (`%#P`, `%#N`).
        width: Option<usize>,
        right: bool,
        suffix: String,
    },
}

/// A parsed `-o`/`-O` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pieces: Vec<Piece>,
    /// Stderr lines for unknown letters/names (sinfo carries on).
    pub errors: String,
}

impl Format {
    /// `-o` (src/sinfo/opts.c `_parse_format`): prefix text, then `%[.][#|size]letter[suffix]`.
    pub fn parse(fmt: &str) -> Format {
        let mut pieces = Vec::new();
        let mut errors = String::new();
        let (prefix, specs) = format_specs(fmt, true);
        if !prefix.is_empty() {
            pieces.push(Piece::Literal(prefix.to_string()));
        }
        for spec in specs {
            let Some(letter) = spec.letter else {
                continue;
            };
            match FIELDS
                .iter()
                .find(|f| f.0 == letter && letter.is_ascii_alphabetic())
            {
                Some(f) => pieces.push(Piece::Field {
                    letter,
                    header: f.2,
                    width: (!spec.computed).then_some(spec.width),
                    right: spec.right,
                    suffix: spec.suffix.to_string(),
                }),
                None => {
                    errors.push_str(&format!("Invalid node format specification: {letter}\n"));
                    pieces.push(Piece::Literal(format!("%{}", spec.token)));
                }
            }
        }
        Format { pieces, errors }
    }

    /// `-O` (`_parse_long_format`): `name[:[.]size]`, comma-separated, width 20 by default.
    pub fn parse_long(fmt: &str) -> Format {
        let mut pieces = Vec::new();
        let mut errors = String::new();
        for token in fmt.split(',').filter(|t| !t.is_empty()) {
            let (name, right, width, suffix) = long_spec(token);
            let lower = name.to_ascii_lowercase();
            match FIELDS.iter().find(|f| f.1.contains(&lower.as_str())) {
                Some(f) => pieces.push(Piece::Field {
                    letter: f.0,
                    header: f.2,
                    width: Some(width),
                    right,
                    suffix: suffix.to_string(),
                }),
                None => errors.push_str(&format!(
                    "sinfo: error: Invalid job format specification: {name}\n"
                )),
            }
        }
        Format { pieces, errors }
    }

    fn letters(&self) -> impl Iterator<Item = char> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field { letter, .. } => Some(*letter),
            Piece::Literal(_) => None,
        })
    }

    fn has(&self, letters: &str) -> bool {
        self.letters().any(|l| letters.contains(l))
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

const OPTIONS: &[getopt::Opt] = &[
    opt('a', "all", Arg::No, "all"),
    opt('d', "dead", Arg::No, "dead"),
    opt('e', "exact", Arg::No, "exact"),
    long("federation", Arg::No, "federation"),
    opt('h', "noheader", Arg::No, "noheader"),
    long("help", Arg::No, "help"),
    long("hide", Arg::No, "hide"),
    opt('i', "iterate", Arg::Required, "iterate"),
    long("json", Arg::No, "json"),
    long("local", Arg::No, "local"),
    opt('l', "long", Arg::No, "long"),
    opt('M', "clusters", Arg::Required, "clusters"),
    opt('n', "nodes", Arg::Required, "nodes"),
    long("noconvert", Arg::No, "noconvert"),
    opt('N', "Node", Arg::No, "Node"),
    opt('o', "format", Arg::Required, "format"),
    opt('O', "Format", Arg::Required, "Format"),
    opt('p', "partition", Arg::Required, "partition"),
    opt('r', "responding", Arg::No, "responding"),
    opt('R', "list-reasons", Arg::No, "list-reasons"),
    opt('s', "summarize", Arg::No, "summarize"),
    opt('S', "sort", Arg::Required, "sort"),
    opt('t', "states", Arg::Required, "states"),
    opt('T', "reservation", Arg::No, "reservation"),
    long("usage", Arg::No, "usage"),
    opt('v', "verbose", Arg::No, "verbose"),
    opt('V', "version", Arg::No, "version"),
    long("yaml", Arg::No, "yaml"),
];

pub const USAGE: &str =
    "Usage: sinfo [-abdelNRrsTv] [-i seconds] [-t states] [-p partition] [-n nodes]
             [-S fields] [-o format] [-O Format] [--federation] [--local]
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Version,
    Usage,
}

/// One `-t` term: every (possibly negated) state of an `a+b` group must hold.
type StateTerm = Vec<(bool, StateId)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateId {
    Base(u32),
    Flag(u32),
    Drained,
    Draining,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub output: Output,
    pub noheader: bool,
    pub long: bool,
    pub node_mode: bool,
    pub summarize: bool,
    pub reasons: bool,
    pub exact: bool,
    pub dead: bool,
    pub responding: bool,
    pub iterate_s: Option<u64>,
    pub partitions: Vec<String>,
    pub nodes: Vec<String>,
    /// `-t`: any term matching selects a node; empty = all.
    pub states: Vec<StateTerm>,
    pub format: Option<String>,
    pub long_format: Option<String>,
    pub sort: Option<String>,
}

const VALID_STATES: &str = "unknown,down,idle,allocated,?,mixed,future,drain,drained,draining,no_respond,reserved,perfctrs,cloud,completing,powering_down,powered_down,power_down,powering_up,fail,maint,reboot,reboot^,unknown";

/// `_node_state_id`: a (case-insensitive) prefix of a state name.
fn state_id(word: &str) -> Option<StateId> {
    use crate::format::{
        FLAG_COMPLETING, FLAG_MAINT, FLAG_POWERED_DOWN, FLAG_POWERING_UP, FLAG_POWER_DOWN,
        FLAG_REBOOT_REQUESTED, NODE_STATE_ALLOCATED, NODE_STATE_DOWN, NODE_STATE_FUTURE,
        NODE_STATE_IDLE, NODE_STATE_MIXED,
    };
    let w = word.to_ascii_uppercase();
    if w.is_empty() {
        return None;
    }
    let is = |full: &str, compact: &str| full.starts_with(&w) || compact.starts_with(&w);
    let bases = [
        ("UNKNOWN", "UNK", 0),
        ("DOWN", "DOWN", NODE_STATE_DOWN),
        ("IDLE", "IDLE", NODE_STATE_IDLE),
        ("ALLOCATED", "ALLOC", NODE_STATE_ALLOCATED),
        ("ERROR", "ERR", 4),
        ("MIXED", "MIX", NODE_STATE_MIXED),
        ("FUTURE", "FUTR", NODE_STATE_FUTURE),
    ];
    if let Some((_, _, b)) = bases.iter().find(|(f, c, _)| is(f, c)) {
        return Some(StateId::Base(*b));
    }
    let pre = |full: &str| full.starts_with(&w);
    Some(if pre("DRAIN") {
        StateId::Flag(FLAG_DRAIN)
    } else if pre("DRAINED") {
        StateId::Drained
    } else if pre("DRAINING") || pre("DRNG") {
        StateId::Draining
    } else if is("COMPLETING", "COMP") {
        StateId::Flag(FLAG_COMPLETING)
    } else if pre("NO_RESPOND") {
        StateId::Flag(FLAG_NO_RESPOND)
    } else if is("POWERED_DOWN", "POW_DN") || pre("POWER_DOWN") {
        StateId::Flag(FLAG_POWERED_DOWN | FLAG_POWER_DOWN)
    } else if is("POWERING_UP", "POW_UP") {
        StateId::Flag(FLAG_POWERING_UP)
    } else if pre("FAIL") {
        StateId::Flag(FLAG_FAIL)
    } else if pre("MAINT") {
        StateId::Flag(FLAG_MAINT)
    } else if pre("REBOOT") {
        StateId::Flag(FLAG_REBOOT_REQUESTED)
    } else {
        return None;
    })
}

fn busy(bits: u32) -> bool {
    use crate::format::{FLAG_COMPLETING, NODE_STATE_ALLOCATED, NODE_STATE_MIXED};
    let base = bits & 0xf;
    base == NODE_STATE_ALLOCATED || base == NODE_STATE_MIXED || bits & FLAG_COMPLETING != 0
}

fn state_holds(id: StateId, bits: u32) -> bool {
    use crate::format::{NODE_STATE_ALLOCATED, NODE_STATE_MIXED};
    match id {
        StateId::Flag(f) => bits & f != 0,
        StateId::Drained => bits & FLAG_DRAIN != 0 && !busy(bits),
        StateId::Draining => bits & FLAG_DRAIN != 0 && busy(bits),
        // "alloc" also selects mixed nodes (captured from 22.05.8).
        StateId::Base(NODE_STATE_ALLOCATED) => {
            matches!(bits & 0xf, NODE_STATE_ALLOCATED | NODE_STATE_MIXED)
        }
        StateId::Base(b) => bits & 0xf == b,
    }
}

pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Opts, String> {
    let p = getopt::parse("sinfo", args, OPTIONS)?;
    if let Some(w) = p.words.first() {
        return Err(format!("sinfo: error: Unrecognized option: {w}\n{USAGE}"));
    }
    let mut output = Output::Table;
    for (id, _) in &p.opts {
        match *id {
            "help" | "usage" => output = Output::Usage,
            "version" => output = Output::Version,
            "json" => output = Output::Json,
            "yaml" => {
                return Err("sinfo: error: --yaml is not supported by drover; use --json\n".into())
            }
            "clusters" | "federation" => {
                return Err(format!(
                    "sinfo: error: --{id} needs a federation; drover is one cluster\n"
                ))
            }
            "reservation" => return Err("sinfo: error: drover has no reservations (-T)\n".into()),
            _ => {}
        }
    }
    if p.has("all") && p.has("partition") {
        return Err("sinfo: error: Conflicting options, -a and -p, specified. Please choose one or the other.\n".into());
    }
    let mut states = Vec::new();
    if let Some(t) = p.last("states") {
        if !t.eq_ignore_ascii_case("all") {
            for term in t.split(',').filter(|s| !s.is_empty()) {
                let mut parts = Vec::new();
                for word in term.split('+') {
                    let (neg, w) = match word.strip_prefix('~') {
                        Some(w) => (true, w),
                        None => (false, word),
                    };
                    match state_id(w) {
                        Some(id) => parts.push((neg, id)),
                        None => {
                            return Err(format!(
                                "sinfo: error: Bad state string: \"{term}\"\nsinfo: error: valid states: {VALID_STATES}\n"
                            ))
                        }
                    }
                }
                states.push(parts);
            }
        }
    }
    let mut nodes = Vec::new();
    for n in p.all("nodes") {
        match hostlist::expand(n) {
            Ok(names) => nodes.extend(names),
            Err(_) => return Err(format!("sinfo: error: Invalid node name {n}\n")),
        }
    }
    let iterate_s = match p.last("iterate") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err("sinfo: error: --iterate=seconds must be a positive integer\n".into()),
        },
    };
    let (mut format, mut long_format) = (
        p.last("format").map(str::to_string),
        p.last("Format").map(str::to_string),
    );
    if format.is_some() && long_format.is_some() {
        let o = p.opts.iter().rposition(|(i, _)| *i == "format");
        let big = p.opts.iter().rposition(|(i, _)| *i == "Format");
        if o > big {
            long_format = None;
        } else {
            format = None;
        }
    }
    Ok(Opts {
        output,
        noheader: p.has("noheader"),
        long: p.has("long"),
        node_mode: p.has("Node"),
        summarize: p.has("summarize"),
        reasons: p.has("list-reasons"),
        exact: p.has("exact"),
        dead: p.has("dead"),
        responding: p.has("responding"),
        iterate_s,
        partitions: p
            .last("partition")
            .map(str::to_string)
            .or_else(|| env("SINFO_PARTITION"))
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        nodes,
        states,
        format: if format.is_none() && long_format.is_none() {
            env("SINFO_FORMAT")
        } else {
            format
        },
        long_format,
        sort: p
            .last("sort")
            .map(str::to_string)
            .or_else(|| env("SINFO_SORT")),
    })
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

struct Record<'a> {
    part: Option<&'a PartitionInfo>,
    nodes: Vec<&'a NodeInfo>,
}

fn node_selected(node: &NodeInfo, o: &Opts) -> bool {
    let bits = node_state_bits(node);
    let responding = bits & FLAG_NO_RESPOND == 0;
    (o.nodes.is_empty() || o.nodes.contains(&node.name))
        && (!o.dead || !responding)
        && (!o.responding || responding)
        && (o.states.is_empty()
            || o.states
                .iter()
                .any(|term| term.iter().all(|(neg, id)| state_holds(*id, bits) != *neg)))
}

/// The value a node contributes to a grouping field (numeric fields only under `-e`).
fn group_key(
    node: &NodeInfo,
    part: Option<&PartitionInfo>,
    f: &Format,
    exact: bool,
) -> Vec<String> {
    f.letters()
        .filter(|l| !"NDnoAFC".contains(*l))
        .filter(|l| exact || !FIELDS.iter().any(|x| x.0 == *l && x.3))
        .map(|l| {
            value(
                &Record {
                    part,
                    nodes: vec![node],
                },
                l,
                0,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Field values
// ---------------------------------------------------------------------------------------------

/// Long node state (`node_state_string`), e.g. `IDLE`, `DRAINED*`, `ALLOCATED+`.
pub fn node_state_long(bits: u32) -> String {
    let compact = node_state_compact(bits);
    let word_len = compact
        .trim_end_matches(|c: char| !c.is_ascii_alphabetic())
        .len();
    let (word, suffix) = compact.split_at(word_len);
    let long = match word {
        "DRAIN" => "DRAINED",
        "DRNG" => "DRAINING",
        "FAILG" => "FAILING",
        "ALLOC" => "ALLOCATED",
        "MIX" => "MIXED",
        "COMP" => "COMPLETING",
        "UNK" => "UNKNOWN",
        other => other,
    };
    format!("{long}{suffix}")
}

/// Is the node "other" in A/I/O/T counts: drained, down or failed.
fn is_other(bits: u32) -> bool {
    use crate::format::NODE_STATE_DOWN;
    bits & (FLAG_DRAIN | FLAG_FAIL) != 0 || bits & 0xf == NODE_STATE_DOWN
}

/// `_build_min_max_32_string` without ranges: `16`, or `8+` when the nodes differ.
fn min_plus(values: impl Iterator<Item = u64>) -> String {
    let v: Vec<u64> = values.collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(lo), Some(hi)) if lo != hi => format!("{lo}+"),
        (Some(lo), _) => lo.to_string(),
        _ => "0".to_string(),
    }
}

fn joined_or_null(items: &[String]) -> String {
    if items.is_empty() {
        "(null)".to_string()
    } else {
        items.join(",")
    }
}

fn gres(node: &NodeInfo, count: u32) -> String {
    if node.gpus == 0 {
        "(null)".to_string()
    } else if node.gpu_type.is_empty() {
        format!("gpu:{count}")
    } else {
        format!("gpu:{}:{count}", node.gpu_type)
    }
}

fn value(r: &Record, letter: char, utc: i32) -> String {
    let _ = utc;
    let first = r.nodes.first();
    let part = r.part;
    let counts = || {
        let (mut a, mut i, mut o) = (0u64, 0u64, 0u64);
        for n in &r.nodes {
            let bits = node_state_bits(n);
            if is_other(bits) {
                o += 1;
            } else if busy(bits) || n.alloc_cpus > 0 {
                a += 1;
            } else {
                i += 1;
            }
        }
        (a, i, o)
    };
    match letter {
        'a' => part
            .map_or("n/a", |p| match p.state.as_str() {
                "UP" => "up",
                "DOWN" => "down",
                "DRAIN" => "drain",
                "INACTIVE" => "inact",
                _ => "unknown",
            })
            .to_string(),
        'A' => {
            let (a, i, _) = counts();
            format!("{a}/{i}")
        }
        'F' => {
            let (a, i, o) = counts();
            format!("{a}/{i}/{o}/{}", r.nodes.len())
        }
        'C' => {
            let (mut a, mut i, mut o, mut t) = (0u64, 0u64, 0u64, 0u64);
            for n in &r.nodes {
                let cpus = u64::from(n.cpus);
                t += cpus;
                if is_other(node_state_bits(n)) {
                    o += cpus;
                } else {
                    a += u64::from(n.alloc_cpus);
                    i += cpus.saturating_sub(u64::from(n.alloc_cpus));
                }
            }
            format!("{a}/{i}/{o}/{t}")
        }
        'b' | 'f' => first.map_or("(null)".to_string(), |n| joined_or_null(&n.features)),
        'B' => "UNLIMITED".to_string(),
        'c' => min_plus(r.nodes.iter().map(|n| u64::from(n.cpus))),
        'd' => "0".to_string(),
        'D' => r.nodes.len().to_string(),
        'e' | 'O' => "N/A".to_string(),
        'E' => first
            .map(|n| n.reason.trim())
            .filter(|r| !r.is_empty())
            .unwrap_or("none")
            .to_string(),
        'g' => "all".to_string(),
        'G' => first.map_or("(null)".to_string(), |n| gres(n, n.gpus)),
        '3' => first.map_or("(null)".to_string(), |n| gres(n, n.alloc_gpus)),
        'h' => part
            .map(|p| p.oversubscribe.as_str())
            .filter(|o| !o.is_empty())
            .unwrap_or("NO")
            .to_string(),
        // drover does not record who set a node's reason, or when.
        'H' | 'u' | 'U' => "Unknown".to_string(),
        'I' => part.map_or(String::new(), |p| p.priority_job_factor.to_string()),
        'l' => part.map_or("n/a".to_string(), |p| {
            time::format_sinfo_limit(p.max_time_min)
        }),
        'L' => part
            .and_then(|p| p.default_time_min)
            .map_or("n/a".to_string(), |m| time::format_sinfo_limit(Some(m))),
        'm' => min_plus(r.nodes.iter().map(|n| n.real_memory_mb)),
        '1' => min_plus(r.nodes.iter().map(|n| n.alloc_memory_mb)),
        'M' => "OFF".to_string(),
        'n' | 'N' => {
            compress_hostlist(&r.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>())
        }
        'o' => {
            let mut addrs: Vec<&str> = r.nodes.iter().map(|n| n.addr.as_str()).collect();
            addrs.dedup();
            addrs.join(",")
        }
        'p' => part.map_or(String::new(), |p| p.priority_tier.to_string()),
        'P' => part.map_or(String::new(), |p| {
            if p.is_default {
                format!("{}*", p.name)
            } else {
                p.name.clone()
            }
        }),
        'R' => part.map_or(String::new(), |p| p.name.clone()),
        'r' => "no".to_string(),
        's' => part.map_or(String::new(), |p| {
            if p.max_nodes == 0 {
                "1-infinite".to_string()
            } else {
                format!("1-{}", p.max_nodes)
            }
        }),
        'S' => "all".to_string(),
        't' => first.map_or("n/a".to_string(), |n| {
            node_state_compact(node_state_bits(n)).to_ascii_lowercase()
        }),
        'T' => first.map_or("n/a".to_string(), |n| {
            node_state_long(node_state_bits(n)).to_ascii_lowercase()
        }),
        '2' => first.map_or("n/a".to_string(), |n| n.state.to_ascii_lowercase()),
        'v' => first.map_or("N/A".to_string(), |n| n.version.clone()),
        'w' => "1".to_string(),
        'X' => min_plus(r.nodes.iter().map(|n| u64::from(n.cpus))),
        'Y' | 'Z' => "1".to_string(),
        'z' => format!(
            "{}:1:1",
            min_plus(r.nodes.iter().map(|n| u64::from(n.cpus)))
        ),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Building and printing
// ---------------------------------------------------------------------------------------------

fn builtin_format(o: &Opts) -> &'static str {
    match (o.summarize, o.node_mode, o.reasons, o.long) {
        (true, ..) => SUMMARIZE_FORMAT,
        (_, true, _, false) => NODE_FORMAT,
        (_, true, _, true) => NODE_LONG_FORMAT,
        (_, _, true, false) => REASONS_FORMAT,
        (_, _, true, true) => REASONS_LONG_FORMAT,
        (.., true) => LONG_FORMAT,
        _ => DEFAULT_FORMAT,
    }
}

fn records<'a>(
    parts: &'a [PartitionInfo],
    nodes: &'a [NodeInfo],
    o: &Opts,
    f: &Format,
) -> Vec<Record<'a>> {
    let by_partition = f.has("PRaslLhgrpIM") || o.node_mode;
    let mut out: Vec<(Vec<String>, Record<'a>)> = Vec::new();
    let mut reason_nodes_seen: Vec<&str> = Vec::new();
    for part in parts
        .iter()
        .filter(|p| o.partitions.is_empty() || o.partitions.contains(&p.name))
    {
        let members: Vec<&NodeInfo> = part
            .nodes
            .iter()
            .filter_map(|name| nodes.iter().find(|n| &n.name == name))
            .filter(|n| node_selected(n, o))
            .collect();
        let keyed_part = by_partition.then_some(part);
        if members.is_empty() && by_partition && !o.node_mode && !o.reasons && o.states.is_empty() {
            // A partition without (selected) nodes still prints: 0 nodes, state n/a.
            out.push((
                vec![part.name.clone()],
                Record {
                    part: Some(part),
                    nodes: vec![],
                },
            ));
            continue;
        }
        for node in members {
            if o.reasons {
                let bits = node_state_bits(node);
                let listed = bits & (FLAG_DRAIN | FLAG_FAIL) != 0
                    || bits & 0xf == crate::format::NODE_STATE_DOWN;
                if !listed || (!by_partition && reason_nodes_seen.contains(&node.name.as_str())) {
                    continue;
                }
                reason_nodes_seen.push(&node.name);
            }
            if !by_partition
                && !o.reasons
                && out
                    .iter()
                    .any(|(_, r)| r.nodes.iter().any(|n| n.name == node.name))
            {
                continue;
            }
            let mut key = vec![keyed_part.map_or(String::new(), |p| p.name.clone())];
            if o.node_mode {
                key.push(node.name.clone());
            } else if !o.summarize {
                key.extend(group_key(node, keyed_part, f, o.exact));
            }
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some((_, r)) => r.nodes.push(node),
                None => out.push((
                    key,
                    Record {
                        part: keyed_part.or(Some(part)),
                        nodes: vec![node],
                    },
                )),
            }
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

fn sort_records(recs: &mut [Record], parts: &[PartitionInfo], spec: &str) {
    let part_pos = |r: &Record| {
        r.part
            .and_then(|p| parts.iter().position(|x| x.name == p.name))
            .unwrap_or(usize::MAX)
    };
    let state = |r: &Record| r.nodes.first().map_or(0, |n| node_state_bits(n));
    for key in spec.split(',').rev() {
        let (desc, k) = match key.strip_prefix('-') {
            Some(k) => (true, k),
            None => (false, key.strip_prefix('+').unwrap_or(key)),
        };
        recs.sort_by(|a, b| {
            let o = match k {
                "#P" => part_pos(a).cmp(&part_pos(b)),
                "P" | "R" => value(a, 'R', 0).cmp(&value(b, 'R', 0)),
                "t" | "T" => state(a).cmp(&state(b)),
                "N" | "n" => crate::format::hostname_cmp(&value(a, 'N', 0), &value(b, 'N', 0)),
                "D" => a.nodes.len().cmp(&b.nodes.len()),
                "E" => value(a, 'E', 0).cmp(&value(b, 'E', 0)),
                "c" | "m" | "X" => value(a, k.chars().next().unwrap_or('c'), 0)
                    .len()
                    .cmp(&value(b, k.chars().next().unwrap_or('c'), 0).len())
                    .then_with(|| value(a, 'c', 0).cmp(&value(b, 'c', 0))),
                _ => Ordering::Equal,
            };
            if desc {
                o.reverse()
            } else {
                o
            }
        });
    }
}

/// sinfo's output for the loaded partitions and nodes; the second string is for stderr.
pub fn render(
    parts: &[PartitionInfo],
    nodes: &[NodeInfo],
    o: &Opts,
    now: i64,
    utc: i32,
) -> (String, String) {
    let f = match (&o.long_format, &o.format) {
        (Some(l), _) => Format::parse_long(l),
        (None, Some(s)) => Format::parse(s),
        (None, None) => Format::parse(builtin_format(o)),
    };
    let mut recs = records(parts, nodes, o, &f);
    let default_sort = if o.node_mode { "N" } else { "#P,-t" };
    sort_records(&mut recs, parts, o.sort.as_deref().unwrap_or(default_sort));
    let computed = |letter: char| -> usize {
        recs.iter()
            .map(|r| value(r, letter, utc).chars().count())
            .max()
            .unwrap_or(0)
            .max(MIN_FIELD_SIZE)
    };
    let mut out = String::new();
    if (o.long || o.iterate_s.is_some()) && !o.noheader {
        out.push_str(&ctime(now, utc));
        out.push('\n');
    }
    let line = |r: Option<&Record>, out: &mut String| {
        for piece in &f.pieces {
            match piece {
                Piece::Literal(t) => out.push_str(t),
                Piece::Field {
                    letter,
                    header,
                    width,
                    right,
                    suffix,
                } => {
                    let w = width.unwrap_or_else(|| computed(*letter));
                    let text = match r {
                        None => header.to_string(),
                        Some(r) => value(r, *letter, utc),
                    };
                    print_str(out, &text, w, *right, true);
                    out.push_str(suffix);
                }
            }
        }
        out.push('\n');
    };
    if !o.noheader {
        line(None, &mut out);
    }
    for r in &recs {
        line(Some(r), &mut out);
    }
    (out, f.errors)
}

/// `sinfo --json`: one entry per record of the default grouping.
pub fn json(parts: &[PartitionInfo], nodes: &[NodeInfo], o: &Opts, args: &[String]) -> String {
    let f = Format::parse(DEFAULT_FORMAT);
    let recs = records(parts, nodes, o, &f);
    let entries: Vec<serde_json::Value> = recs
        .iter()
        .map(|r| {
            let num = |v: u64| json_number(Some(v as i64));
            let (a, i, oth) = {
                let t: Vec<u64> = value(r, 'F', 0).split('/').filter_map(|x| x.parse().ok()).collect();
                (t.first().copied().unwrap_or(0), t.get(1).copied().unwrap_or(0), t.get(2).copied().unwrap_or(0))
            };
            let cpus: Vec<u64> = value(r, 'C', 0).split('/').filter_map(|x| x.parse().ok()).collect();
            let states: Vec<String> = r
                .nodes
                .first()
                .map(|n| n.state.split('+').map(str::to_string).collect())
                .unwrap_or_default();
            let mut m = serde_json::Map::new();
            m.insert("node".into(), serde_json::json!({"state": states}));
            m.insert("nodes".into(), serde_json::json!({
                "allocated": a, "idle": i, "other": oth, "total": r.nodes.len(),
                "hostnames": r.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
                "addresses": r.nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>(),
                "nodes": r.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            }));
            m.insert("cpus".into(), serde_json::json!({
                "allocated": cpus.first().copied().unwrap_or(0), "idle": cpus.get(1).copied().unwrap_or(0),
                "other": cpus.get(2).copied().unwrap_or(0), "total": cpus.get(3).copied().unwrap_or(0),
                "minimum": r.nodes.iter().map(|n| n.cpus).min().unwrap_or(0),
                "maximum": r.nodes.iter().map(|n| n.cpus).max().unwrap_or(0),
            }));
            m.insert("memory".into(), serde_json::json!({
                "minimum": r.nodes.iter().map(|n| n.real_memory_mb).min().unwrap_or(0),
                "maximum": r.nodes.iter().map(|n| n.real_memory_mb).max().unwrap_or(0),
                "allocated": r.nodes.iter().map(|n| n.alloc_memory_mb).sum::<u64>(),
            }));
            m.insert("features".into(), serde_json::json!({
                "total": r.nodes.first().map(|n| n.features.join(",")).unwrap_or_default(),
                "active": r.nodes.first().map(|n| n.features.join(",")).unwrap_or_default(),
            }));
            m.insert("gres".into(), serde_json::json!({
                "total": r.nodes.first().map(|n| gres(n, n.gpus)).filter(|g| g != "(null)").unwrap_or_default(),
                "used": r.nodes.first().map(|n| gres(n, n.alloc_gpus)).filter(|g| g != "(null)").unwrap_or_default(),
            }));
            m.insert("reason".into(), serde_json::json!({
                "description": r.nodes.first().map(|n| n.reason.clone()).unwrap_or_default(),
                "time": json_number(None), "user": "",
            }));
            m.insert("partition".into(), r.part.map_or(serde_json::Value::Null, |p| serde_json::json!({
                "name": p.name,
                "nodes": {"total": p.total_nodes, "configured": compress_hostlist(&p.nodes)},
                "cpus": {"total": p.total_cpus},
                "maximums": {"time": match p.max_time_min { Some(t) => num(t), None => crate::squeue::json_infinite() },
                             "nodes": if p.max_nodes == 0 { crate::squeue::json_infinite() } else { num(u64::from(p.max_nodes)) }},
                "defaults": {"time": match p.default_time_min { Some(t) => num(t), None => json_number(None) }},
                "partition": {"state": [p.state.clone()]},
                "priority": {"tier": p.priority_tier, "job_factor": p.priority_job_factor},
                "default": p.is_default,
            })));
            serde_json::Value::Object(m)
        })
        .collect();
    let mut command = vec!["sinfo"];
    command.extend(args.iter().map(String::as_str));
    let doc = serde_json::json!({
        "sinfo": entries,
        "meta": json_meta(&command, ""),
        "errors": [],
        "warnings": [],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testdata::{bench_partition, node};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(parts: &[PartitionInfo], nodes: &[NodeInfo], a: &[&str]) -> String {
        let o = parse(&args(a), &|_| None).expect("valid options");
        render(parts, nodes, &o, 1_795_692_558, 0).0
    }

    /// The 22.05.8 capture's cluster (2026-11-26 11:29): n1 mixed (1 of 16 CPUs), n2 idle,
    /// n3 drained "disk bad", n4 down "maint"; 16 CPUs and 64000 MB each, partition bench.
    fn capture() -> (Vec<PartitionInfo>, Vec<NodeInfo>) {
        let mut n1 = node("n1", "MIXED");
        n1.alloc_cpus = 1;
        let n2 = node("n2", "IDLE");
        let mut n3 = node("n3", "IDLE+DRAIN");
        n3.reason = "disk bad".to_string();
        let mut n4 = node("n4", "DOWN");
        n4.reason = "maint".to_string();
        let mut p = bench_partition();
        p.total_cpus = 64;
        (vec![p], vec![n1, n2, n3, n4])
    }

    #[test]
    fn default_long_node_and_summary_match_slurm() {
        let (p, n) = capture();
        assert_eq!(
            run(&p, &n, &[]),
            "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
bench*       up   infinite      1  drain n3
bench*       up   infinite      1    mix n1
bench*       up   infinite      1   idle n2
bench*       up   infinite      1   down n4
"
        );
        assert_eq!(
            run(&p, &n, &["-N"]),
            "NODELIST   NODES PARTITION STATE 
n1             1    bench* mix   
n2             1    bench* idle  
n3             1    bench* drain 
n4             1    bench* down  
"
        );
        assert_eq!(
            run(&p, &n, &["-l"]),
            "Thu Nov 26 11:29:18 2026
PARTITION AVAIL  TIMELIMIT   JOB_SIZE ROOT OVERSUBS     GROUPS  NODES       STATE NODELIST
bench*       up   infinite 1-infinite   no       NO        all      1     drained n3
bench*       up   infinite 1-infinite   no       NO        all      1       mixed n1
bench*       up   infinite 1-infinite   no       NO        all      1        idle n2
bench*       up   infinite 1-infinite   no       NO        all      1        down n4
"
        );
        assert_eq!(
            run(&p, &n, &["-N", "-l"]),
            "Thu Nov 26 11:29:18 2026
NODELIST   NODES PARTITION       STATE CPUS    S:C:T MEMORY TMP_DISK WEIGHT AVAIL_FE REASON              
n1             1    bench*       mixed 16     16:1:1  64000        0      1   (null) none                
n2             1    bench*        idle 16     16:1:1  64000        0      1   (null) none                
n3             1    bench*     drained 16     16:1:1  64000        0      1   (null) disk bad            
n4             1    bench*        down 16     16:1:1  64000        0      1   (null) maint               
"
        );
        assert_eq!(
            run(&p, &n, &["-s"]),
            "PARTITION AVAIL  TIMELIMIT   NODES(A/I/O/T) NODELIST
bench*       up   infinite          1/1/2/4 n[1-4]
"
        );
        assert_eq!(
            run(&p, &n, &["-h", "-e"]),
            "bench*       up   infinite      1  drain n3
bench*       up   infinite      1    mix n1
bench*       up   infinite      1   idle n2
bench*       up   infinite      1   down n4
"
        );
    }

    #[test]
    fn recorded_sections_match() {
        // Whole sections of crates/cli/tests/golden/slurm-22.05.8/sinfo.txt.
        use crate::format::testdata::golden;
        let (p, n) = capture();
        for cmd in [
            "sinfo -N",
            "sinfo -l",
            "sinfo -N -l",
            "sinfo -s",
            "sinfo -e",
            "sinfo -p bench",
            "sinfo -p nosuch",
            "sinfo -t idle",
            "sinfo -t drain",
            "sinfo -n n1,n2",
            "sinfo -n n9",
            "sinfo -h",
        ] {
            let argv: Vec<String> = cmd.split(' ').skip(1).map(str::to_string).collect();
            let o = parse(&argv, &|_| None).expect(cmd);
            assert_eq!(
                render(&p, &n, &o, 1_795_692_558, 0).0,
                golden("sinfo", cmd),
                "{cmd}"
            );
        }
    }

    #[test]
    fn reasons_and_filters_match_slurm() {
        let (p, n) = capture();
        // drover records no reason user or time: Slurm's "Unknown" stands in for both.
        assert_eq!(
            run(&p, &n, &["-R"]),
            "REASON               USER      TIMESTAMP           NODELIST
disk bad             Unknown   Unknown             n3
maint                Unknown   Unknown             n4
"
        );
        assert_eq!(
            run(&p, &n, &["-t", "idle"]),
            "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
bench*       up   infinite      1  drain n3
bench*       up   infinite      1   idle n2
"
        );
        assert_eq!(
            run(&p, &n, &["-t", "alloc", "-h"]),
            "bench*       up   infinite      1    mix n1\n"
        );
        assert_eq!(
            run(&p, &n, &["-t", "drain", "-h"]),
            "bench*       up   infinite      1  drain n3\n"
        );
        assert_eq!(run(&p, &n, &["-n", "n1,n2", "-h"]), "bench*       up   infinite      1    mix n1\nbench*       up   infinite      1   idle n2\n");
        assert_eq!(
            run(&p, &n, &["-n", "n9", "-h"]),
            "bench*       up   infinite      0    n/a \n"
        );
        assert_eq!(
            run(&p, &n, &["-p", "nosuch"]),
            "PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST\n"
        );
        assert_eq!(
            run(&p, &n, &["-p", "bench", "-n", "n9", "-N"]),
            "NODELIST   NODES PARTITION STATE \n"
        );
        // 24.11 state expressions: `+` = and, `~` = not.
        assert_eq!(run(&p, &n, &["-t", "idle+drain", "-h", "-o", "%N"]), "n3\n");
        assert_eq!(run(&p, &n, &["-t", "~idle", "-h", "-o", "%N"]), "n[1,4]\n");
        let e = parse(&args(&["-t", "bogus"]), &|_| None).unwrap_err();
        assert_eq!(e, "sinfo: error: Bad state string: \"bogus\"\nsinfo: error: valid states: unknown,down,idle,allocated,?,mixed,future,drain,drained,draining,no_respond,reserved,perfctrs,cloud,completing,powering_down,powered_down,power_down,powering_up,fail,maint,reboot,reboot^,unknown\n");
        assert!(parse(&args(&["--bogus"]), &|_| None)
            .unwrap_err()
            .starts_with("sinfo: unrecognized option '--bogus'\n"));
    }

    #[test]
    fn format_letters_match_slurm() {
        // 22.05.8 `sinfo -o "%P|%a|%A|%c|%C|%d|%D|%E|%f|%F|%g|%G|%h|%l|%L|%m|%M|%N|%p|%R|%s|%t|
        // %T|%w|%X|%Y|%Z|%z|%b|%i"`: `%i` is reported and printed back. Free memory, CPU load,
        // reason user/time (%e %O %u %H) are not known to drover.
        let (p, n) = capture();
        let o = parse(&args(&["-o", "%P|%a|%A|%c|%C|%d|%D|%E|%f|%F|%g|%G|%h|%l|%L|%m|%M|%N|%p|%R|%s|%t|%T|%w|%X|%Y|%Z|%z|%b|%i"]), &|_| None).unwrap();
        let (out, err) = render(&p, &n, &o, 0, 0);
        assert_eq!(err, "Invalid node format specification: i\n");
        assert_eq!(out, "PARTITION|AVAIL|NODES(A/I)|CPUS|CPUS(A/I/O/T)|TMP_DISK|NODES|REASON|AVAIL_FEATURES|NODES(A/I/O/T)|GROUPS|GRES|OVERSUBSCRIBE|TIMELIMIT|DEFAULTTIME|MEMORY|PREEMPT_MODE|NODELIST|PRIO_TIER|PARTITION|JOB_SIZE|STATE|STATE|WEIGHT|SOCKETS|CORES|THREADS|S:C:T|ACTIVE_FEATURES|%i
bench*|up|0/0|16|0/0/16/16|0|1|disk bad|(null)|0/0/1/1|all|(null)|NO|infinite|n/a|64000|OFF|n3|1|bench|1-infinite|drain|drained|1|16|1|1|16:1:1|(null)|%i
bench*|up|1/0|16|1/15/0/16|0|1|none|(null)|1/0/0/1|all|(null)|NO|infinite|n/a|64000|OFF|n1|1|bench|1-infinite|mix|mixed|1|16|1|1|16:1:1|(null)|%i
bench*|up|0/1|16|0/16/0/16|0|1|none|(null)|0/1/0/1|all|(null)|NO|infinite|n/a|64000|OFF|n2|1|bench|1-infinite|idle|idle|1|16|1|1|16:1:1|(null)|%i
bench*|up|0/0|16|0/0/16/16|0|1|maint|(null)|0/0/1/1|all|(null)|NO|infinite|n/a|64000|OFF|n4|1|bench|1-infinite|down|down|1|16|1|1|16:1:1|(null)|%i
");
        assert_eq!(
            run(&p, &n, &["-N", "-o", "%N %.6t %T %E|%10E|%.3c"]),
            "NODELIST  STATE STATE REASON|REASON    |CPU
n1    mix mixed none|none      | 16
n2   idle idle none|none      | 16
n3  drain drained disk bad|disk bad  | 16
n4   down down maint|maint     | 16
"
        );
        assert_eq!(
            run(&p, &n, &["-O", "Partition,NodeList,StateCompact,StateLong,CPUsState,Memory:.8,Reason:30,Gres,Features,PartitionName,Nodes,CPUs"]),
            "PARTITION           NODELIST            STATE               STATE               CPUS(A/I/O/T)         MEMORYREASON                        GRES                AVAIL_FEATURES      PARTITION           NODES               CPUS                
bench*              n3                  drain               drained             0/0/16/16              64000disk bad                      (null)              (null)              bench               1                   16                  
bench*              n1                  mix                 mixed               1/15/0/16              64000none                          (null)              (null)              bench               1                   16                  
bench*              n2                  idle                idle                0/16/0/16              64000none                          (null)              (null)              bench               1                   16                  
bench*              n4                  down                down                0/0/16/16              64000maint                         (null)              (null)              bench               1                   16                  
"
        );
        // Without a state field, a partition's nodes form one record; `-e` splits by CPUs.
        let mut mixed = n.clone();
        mixed[1].cpus = 8;
        assert_eq!(
            run(&p, &mixed, &["-o", "%P %D %c"]),
            "PARTITION NODES CPUS\nbench* 4 8+\n"
        );
        assert_eq!(
            run(&p, &mixed, &["-e", "-o", "%P %D %c"]),
            "PARTITION NODES CPUS\nbench* 3 16\nbench* 1 8\n"
        );
    }

    #[test]
    fn sinfo_groups_states_and_partitions() {
        // Layout of man1/sinfo.1 / slurm.md §1.5 example; group order = state descending
        // (src/sinfo/sort.c `#P,-t` on the numeric state), partitions in configuration order.
        let mut nodes = Vec::new();
        for i in 0..16 {
            let state = match i {
                8 | 9 => "ALLOCATED",
                10 => "MIXED",
                11 => "IDLE+DRAIN",
                12 => "IDLE",
                13 => "DOWN+NOT_RESPONDING",
                _ => "IDLE",
            };
            let mut n = node(&format!("adev{i}"), state);
            if i == 14 {
                n.not_responding = true;
            }
            nodes.push(n);
        }
        let debug = PartitionInfo {
            name: "debug".to_string(),
            nodes: (0..8).map(|i| format!("adev{i}")).collect(),
            is_default: true,
            state: "UP".to_string(),
            max_time_min: Some(30),
            ..Default::default()
        };
        let batch = PartitionInfo {
            name: "batch".to_string(),
            nodes: (8..16).map(|i| format!("adev{i}")).collect(),
            state: "UP".to_string(),
            ..Default::default()
        };
        let expected = "\
PARTITION AVAIL  TIMELIMIT  NODES  STATE NODELIST
debug*       up      30:00      8   idle adev[0-7]
batch        up   infinite      1  idle* adev14
batch        up   infinite      1  down* adev13
batch        up   infinite      1  drain adev11
batch        up   infinite      1    mix adev10
batch        up   infinite      2  alloc adev[8-9]
batch        up   infinite      2   idle adev[12,15]
";
        assert_eq!(run(&[debug, batch], &nodes, &[]), expected);
        let mut p = bench_partition();
        p.name = "a_long_partition".to_string();
        assert_eq!(
            run(&[p], &[node("n1", "IDLE")], &[]),
            "PARTITION         AVAIL  TIMELIMIT  NODES  STATE NODELIST\na_long_partition*    up   infinite      1   idle n1\n"
        );
    }

    #[test]
    fn json_lists_records() {
        let (p, n) = capture();
        let o = parse(&args(&["--json"]), &|_| None).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&json(&p, &n, &o, &args(&["--json"]))).unwrap();
        assert_eq!(v["sinfo"].as_array().map(Vec::len), Some(4));
        assert_eq!(v["sinfo"][0]["partition"]["name"], "bench");
        assert_eq!(v["sinfo"][0]["nodes"]["total"], 1);
    }
}
