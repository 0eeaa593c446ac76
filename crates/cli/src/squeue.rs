//! squeue, pure: its options (src/squeue/opts.c), its filters, its sort (src/squeue/sort.c) and
//! its output (`-o` letters and `-O` names, src/squeue/print.c; `--json`). `commands::squeue`
//! only loads the jobs and prints what `run` returns.
//!
//! Job arrays: tasks not yet started print collapsed on their array's record (`N_[a-b%t]`);
//! `-r/--array` prints one line per task (`expand_arrays`).

use crate::format::{
    elapsed, exit_code_text, format_specs, is_pending, job_mem_total, job_state_compact,
    job_time_used, long_spec, mem_units, or_null, print_str, reason_name, reason_or_nodes,
    sorted_nodes, stdio_path, timestamp, tres,
};
use crate::getopt::{self, long, opt, Arg};
use drover_proto::JobInfo;
use drover_scheduler::hostlist;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// squeue's default `-o` format (src/squeue/opts.c).
pub const DEFAULT_FORMAT: &str = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R";
/// `squeue -l`.
pub const LONG_FORMAT: &str = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R";
/// `squeue --start` (one blank before START_TIME, as Slurm 22.05.8 prints it).
pub const START_FORMAT: &str = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R";

// ---------------------------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------------------------

/// One column squeue can print: a `-o` letter, `-O` names, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Account,
    AccrueTime,
    ArrayJobId,
    ArrayTaskId,
    BatchHost,
    Command,
    Comment,
    CpusPerTask,
    Cpus,
    Dependency,
    EligibleTime,
    EndTime,
    ExcNodes,
    ExitCode,
    Features,
    GroupId,
    GroupName,
    JobId,
    JobIdUnique,
    LastSchedEval,
    Licenses,
    MinCpus,
    MinMemory,
    Name,
    Nice,
    NodeList,
    Nodes,
    NumTasks,
    OverSubscribe,
    Partition,
    PendingTime,
    PriorityFloat,
    PriorityLong,
    Qos,
    Reason,
    ReasonList,
    ReqNodes,
    Reservation,
    SchedNodes,
    Sct,
    StartTime,
    State,
    StateCompact,
    StdErr,
    StdIn,
    StdOut,
    SubmitTime,
    TimeLeft,
    TimeLimit,
    TimeUsed,
    TresAlloc,
    TresPerNode,
    Uid,
    User,
    WcKey,
    WorkDir,
}

/// (letter, `-O` names in lower case, header, field), after src/squeue/opts.c; headers as
/// Slurm 22.05.8 prints them.
const FIELDS: &[(Option<char>, &[&str], &str, Field)] = {
    use Field::*;
    &[
        (Some('a'), &["account"], "ACCOUNT", Account),
        (None, &["accruetime"], "ACCRUE_TIME", AccrueTime),
        (Some('F'), &["arrayjobid"], "ARRAY_JOB_ID", ArrayJobId),
        (Some('K'), &["arraytaskid"], "ARRAY_TASK_ID", ArrayTaskId),
        (Some('B'), &["batchhost"], "EXEC_HOST", BatchHost),
        (Some('o'), &["command"], "COMMAND", Command),
        (Some('k'), &["comment"], "COMMENT", Comment),
        (None, &["cpus-per-task"], "CPUS_PER_TASK", CpusPerTask),
        (Some('C'), &["numcpus"], "CPUS", Cpus),
        (Some('E'), &["dependency"], "DEPENDENCY", Dependency),
        (None, &["eligibletime"], "ELIGIBLE_TIME", EligibleTime),
        (Some('e'), &["endtime"], "END_TIME", EndTime),
        (Some('x'), &["excnodes"], "EXC_NODES", ExcNodes),
        (None, &["exit_code"], "EXIT_CODE", ExitCode),
        (Some('f'), &["feature"], "FEATURES", Features),
        (Some('G'), &["groupid"], "GROUP", GroupId),
        (Some('g'), &["groupname"], "GROUP", GroupName),
        (Some('i'), &["jobarrayid"], "JOBID", JobId),
        (Some('A'), &["jobid"], "JOBID", JobIdUnique),
        (None, &["lastschedeval"], "LAST_SCHED_EVAL", LastSchedEval),
        (Some('W'), &["licenses"], "LICENSES", Licenses),
        (Some('c'), &["mincpus"], "MIN_CPUS", MinCpus),
        (Some('m'), &["minmemory"], "MIN_MEMORY", MinMemory),
        (Some('j'), &["name"], "NAME", Name),
        (Some('y'), &["nice"], "NICE", Nice),
        (Some('N'), &["nodelist"], "NODELIST", NodeList),
        (Some('D'), &["numnodes"], "NODES", Nodes),
        (None, &["numtasks"], "TASKS", NumTasks),
        (
            Some('h'),
            &["oversubscribe"],
            "OVER_SUBSCRIBE",
            OverSubscribe,
        ),
        (Some('P'), &["partition"], "PARTITION", Partition),
        (None, &["pendingtime"], "PENDING_TIME", PendingTime),
        (Some('p'), &["priority"], "PRIORITY", PriorityFloat),
        (Some('Q'), &["prioritylong"], "PRIORITY", PriorityLong),
        (Some('q'), &["qos"], "QOS", Qos),
        (Some('r'), &["reason"], "REASON", Reason),
        (Some('R'), &["reasonlist"], "NODELIST(REASON)", ReasonList),
        (Some('n'), &["reqnodes"], "REQ_NODES", ReqNodes),
        (Some('v'), &["reservation"], "RESERVATION", Reservation),
        (Some('Y'), &["schednodes"], "SCHEDNODES", SchedNodes),
        (Some('z'), &["sct"], "S:C:T", Sct),
        (Some('S'), &["starttime"], "START_TIME", StartTime),
        (Some('T'), &["state"], "STATE", State),
        (Some('t'), &["statecompact"], "ST", StateCompact),
        (None, &["stderr"], "STDERR", StdErr),
        (None, &["stdin"], "STDIN", StdIn),
        (None, &["stdout"], "STDOUT", StdOut),
        (Some('V'), &["submittime"], "SUBMIT_TIME", SubmitTime),
        (Some('L'), &["timeleft"], "TIME_LEFT", TimeLeft),
        (Some('l'), &["timelimit"], "TIME_LIMIT", TimeLimit),
        (Some('M'), &["timeused"], "TIME", TimeUsed),
        (None, &["tres-alloc"], "TRES_ALLOC", TresAlloc),
        (None, &["tres-per-node"], "TRES_PER_NODE", TresPerNode),
        (Some('U'), &["userid"], "UID", Uid),
        (Some('u'), &["username"], "USER", User),
        (Some('w'), &["wckey"], "WCKEY", WcKey),
        (Some('Z'), &["workdir"], "WORK_DIR", WorkDir),
    ]
};

fn by_letter(c: char) -> Option<(Field, &'static str)> {
    FIELDS
        .iter()
        .find(|(l, ..)| *l == Some(c))
        .map(|(_, _, h, f)| (*f, *h))
}

fn by_name(name: &str) -> Option<(Field, &'static str)> {
    let lower = name.to_ascii_lowercase();
    FIELDS
        .iter()
        .find(|(_, names, ..)| names.contains(&lower.as_str()))
        .map(|(_, _, h, f)| (*f, *h))
}

/// Slurm's group name for a gid (/etc/group), else the number.
pub fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut parts = l.split(':');
                let name = parts.next()?;
                let id = parts.nth(1)?.parse::<u32>().ok()?;
                (id == gid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

/// A job's QOS (`normal` when the controller sent none, as older replies do).
fn qos_of(job: &JobInfo) -> &str {
    crate::format::job_qos(job)
}

fn ts(t: i64, utc: i32) -> String {
    timestamp(t, utc, "N/A")
}

/// The node list as requested (`-w`), compressed.
fn hostlist_of(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        crate::format::compress_hostlist(names)
    }
}

/// One field's text for a job, and whether it is cut to its width when right-justified.
/// An array record's task (`%K`): its index, or the pending tasks with the throttle
/// (`2-5%2`); `N/A` outside arrays.
pub fn array_task_text(job: &JobInfo) -> String {
    match (job.array_job_id, job.array_task_id) {
        (0, _) => "N/A".to_string(),
        (_, Some(t)) => t.to_string(),
        (_, None) if job.array_max_running > 0 => {
            format!("{}%{}", job.array_tasks_pending, job.array_max_running)
        }
        (_, None) => job.array_tasks_pending.clone(),
    }
}

pub fn value(job: &JobInfo, field: Field, utc: i32) -> (String, bool) {
    use Field::*;
    let s = |v: String| (v, true);
    match field {
        Account => s("(null)".to_string()),
        AccrueTime | EligibleTime => s(if job.held {
            "N/A".into()
        } else {
            ts(job.eligible_time, utc)
        }),
        ArrayJobId => s(if job.array_job_id > 0 {
            job.array_job_id
        } else {
            job.job_id
        }
        .to_string()),
        ArrayTaskId => s(array_task_text(job)),
        BatchHost => s(if job.batch_host.is_empty() {
            "n/a".into()
        } else {
            job.batch_host.clone()
        }),
        Command => s(or_null(&job.command).to_string()),
        Dependency => s(or_null(&job.dependency).to_string()),
        Comment | Licenses | Reservation | WcKey => s("(null)".to_string()),
        CpusPerTask | MinCpus => s(job.cpus_per_task.max(1).to_string()),
        Cpus => s(job.num_cpus.to_string()),
        EndTime => s(if job.time_limit_min.is_none() && job.end_time > job.now {
            "NONE".into()
        } else {
            ts(job.end_time, utc)
        }),
        ExcNodes => s(hostlist_of(&job.exc_nodes)),
        ExitCode => s(job.exit_code.max(0).to_string()),
        Features => s(or_null(&job.constraint).to_string()),
        GroupId => s(job.gid.to_string()),
        GroupName => s(group_name(job.gid)),
        JobId if !job.display_id.is_empty() => s(job.display_id.clone()),
        JobId | JobIdUnique => s(job.job_id.to_string()),
        LastSchedEval => s(ts(
            if job.start_time != 0 && !is_pending(job) {
                job.start_time
            } else {
                job.submit_time
            },
            utc,
        )),
        MinMemory => s(mem_units(
            if job.mem_per_cpu_mb > 0 {
                job.mem_per_cpu_mb
            } else {
                job.mem_per_node_mb
            },
            true,
        )),
        Name => s(job.name.clone()),
        Nice => s(job.nice.to_string()),
        NodeList => (sorted_nodes(&job.node_list), false),
        Nodes => s(job.num_nodes.to_string()),
        NumTasks => s(job.num_tasks.to_string()),
        OverSubscribe => s(crate::format::job_oversubscribe(job).to_string()),
        Partition => s(job.partition.clone()),
        PendingTime => {
            let until = if job.start_time != 0 && !is_pending(job) {
                job.start_time
            } else {
                job.now
            };
            s(until.saturating_sub(job.submit_time).max(0).to_string())
        }
        PriorityFloat => s(format!(
            "{:.14}",
            f64::from(job.priority) / f64::from(u32::MAX)
        )),
        PriorityLong => s(job.priority.to_string()),
        Qos => s(qos_of(job).to_string()),
        Reason => s(reason_name(job).to_string()),
        ReasonList => reason_or_nodes(job),
        ReqNodes => s(hostlist_of(&job.req_nodes)),
        SchedNodes => s(if job.sched_nodes.is_empty() {
            "(null)".into()
        } else {
            hostlist_of(&job.sched_nodes)
        }),
        Sct => s("*:*:*".to_string()),
        StartTime => s(ts(job.start_time, utc)),
        State => s(job.state.clone()),
        StateCompact => s(job_state_compact(&job.state).to_string()),
        StdErr => s(stdio_path(
            job,
            if job.stderr.is_empty() {
                &job.stdout
            } else {
                &job.stderr
            },
        )),
        StdIn => s("/dev/null".to_string()),
        StdOut => s(stdio_path(job, &job.stdout)),
        SubmitTime => s(ts(job.submit_time, utc)),
        TimeLeft => match job.time_limit_min {
            None => s("UNLIMITED".to_string()),
            Some(m) => {
                let total = i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX);
                (elapsed(total.saturating_sub(job_time_used(job))), false)
            }
        },
        TimeLimit => match job.time_limit_min {
            None => s("UNLIMITED".to_string()),
            Some(m) => (
                elapsed(i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX)),
                false,
            ),
        },
        TimeUsed => (elapsed(job_time_used(job)), false),
        TresAlloc => {
            let mem = job_mem_total(job, job.num_cpus, job.num_nodes);
            s(tres(job.num_cpus, mem, job.num_nodes))
        }
        TresPerNode => s(if job.gpus_per_node > 0 {
            if job.gpu_type.is_empty() {
                format!("gres/gpu:{}", job.gpus_per_node)
            } else {
                format!("gres/gpu:{}:{}", job.gpu_type, job.gpus_per_node)
            }
        } else {
            "N/A".to_string()
        }),
        Uid => s(job.uid.to_string()),
        User => s(job.user.clone()),
        WorkDir => s(job.work_dir.clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field {
        field: Field,
        header: &'static str,
        width: usize,
        right: bool,
        suffix: String,
    },
}

/// A parsed `-o` or `-O` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFormat {
    pieces: Vec<Piece>,
    /// What squeue complains about: `Invalid job format specification: <x>` (printed, then
    /// the rest of the format is used).
    pub invalid: Vec<String>,
}

impl JobFormat {
    /// `-o`: text before the first `%` is literal; each `%`-token is `[.][digits]letter` and
    /// the text after the letter up to the next `%` is printed after the field. An unknown
    /// letter prints its token back literally (`job_format_add_invalid`).
    pub fn parse(fmt: &str) -> JobFormat {
        let mut pieces = Vec::new();
        let mut invalid = Vec::new();
        let (prefix, specs) = format_specs(fmt, false);
        if !prefix.is_empty() {
            pieces.push(Piece::Literal(prefix.to_string()));
        }
        for spec in specs {
            let Some(letter) = spec.letter else {
                pieces.push(Piece::Literal(format!("%{}", spec.token)));
                continue;
            };
            match by_letter(letter) {
                Some((field, header)) => pieces.push(Piece::Field {
                    field,
                    header,
                    width: spec.width,
                    right: spec.right,
                    suffix: spec.suffix.to_string(),
                }),
                None => {
                    invalid.push(letter.to_string());
                    pieces.push(Piece::Literal(format!("%{}", spec.token)));
                }
            }
        }
        JobFormat { pieces, invalid }
    }

    /// `-O`: `name[:[.][size][suffix]]`, comma-separated, names case-insensitive, default
    /// width 20, no separator between fields (src/squeue/opts.c `parse_long_format`).
    pub fn parse_long(fmt: &str) -> JobFormat {
        let mut pieces = Vec::new();
        let mut invalid = Vec::new();
        for token in fmt.split(',').filter(|t| !t.is_empty()) {
            let (name, right, width, suffix) = long_spec(token);
            match by_name(name) {
                Some((field, header)) => pieces.push(Piece::Field {
                    field,
                    header,
                    width,
                    right,
                    suffix: suffix.to_string(),
                }),
                None => invalid.push(name.to_string()),
            }
        }
        JobFormat { pieces, invalid }
    }

    /// The header line (when `header`) and one line per job, in the order given.
    pub fn render(&self, jobs: &[JobInfo], utc_offset_secs: i32, header: bool) -> String {
        let mut out = String::new();
        if header {
            self.render_one(&mut out, None, utc_offset_secs);
        }
        for job in jobs {
            self.render_one(&mut out, Some(job), utc_offset_secs);
        }
        out
    }

    fn render_one(&self, out: &mut String, job: Option<&JobInfo>, utc: i32) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field {
                    field,
                    header,
                    width,
                    right,
                    suffix,
                } => {
                    let (text, cut) = match job {
                        // NODELIST headers are never cut when right-justified.
                        None => (
                            header.to_string(),
                            !matches!(field, Field::NodeList | Field::ReasonList),
                        ),
                        Some(job) => value(job, *field, utc),
                    };
                    print_str(out, &text, *width, *right, cut);
                    out.push_str(suffix);
                }
            }
        }
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------------------------

/// `-S` keys: `[+|-]letter`, comma-separated (src/squeue/sort.c). Unknown letters are ignored,
/// as squeue does.
pub fn sort_jobs(jobs: &mut [JobInfo], spec: &str) {
    let keys: Vec<(bool, char)> = spec
        .split(',')
        .filter_map(|k| {
            let k = k.trim();
            let (desc, rest) = match k.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, k.strip_prefix('+').unwrap_or(k)),
            };
            rest.chars().next().map(|c| (desc, c))
        })
        .collect();
    // Slurm sorts with list_sort over the controller's order (job id ascending here); the last
    // key given is the most significant, which a stable sort per key reproduces.
    jobs.sort_by_key(|j| j.job_id);
    for (desc, key) in keys.iter().rev() {
        jobs.sort_by(|a, b| {
            let o = compare(a, b, *key);
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
}

fn compare(a: &JobInfo, b: &JobInfo, key: char) -> Ordering {
    let text = |j: &JobInfo, f: Field| value(j, f, 0).0;
    match key {
        'i' | 'A' | 'F' => a.job_id.cmp(&b.job_id),
        'P' => a.partition.cmp(&b.partition),
        // `_sort_job_by_state` compares job_state_string (captured: CD before PD before R).
        't' | 'T' => a.state.cmp(&b.state),
        'p' | 'Q' => a.priority.cmp(&b.priority),
        'j' => a.name.cmp(&b.name),
        'u' => a.user.cmp(&b.user),
        'U' => a.uid.cmp(&b.uid),
        'g' => group_name(a.gid).cmp(&group_name(b.gid)),
        'G' => a.gid.cmp(&b.gid),
        'D' => a.num_nodes.cmp(&b.num_nodes),
        'C' => a.num_cpus.cmp(&b.num_cpus),
        'c' => a.cpus_per_task.cmp(&b.cpus_per_task),
        'M' => job_time_used(a).cmp(&job_time_used(b)),
        'l' => a
            .time_limit_min
            .unwrap_or(u64::MAX)
            .cmp(&b.time_limit_min.unwrap_or(u64::MAX)),
        'S' => a.start_time.cmp(&b.start_time),
        'e' => a.end_time.cmp(&b.end_time),
        'V' => a.submit_time.cmp(&b.submit_time),
        'y' => a.nice.cmp(&b.nice),
        'm' => (a.mem_per_node_mb, a.mem_per_cpu_mb).cmp(&(b.mem_per_node_mb, b.mem_per_cpu_mb)),
        'N' => text(a, Field::NodeList).cmp(&text(b, Field::NodeList)),
        'r' => text(a, Field::Reason).cmp(&text(b, Field::Reason)),
        'R' => text(a, Field::ReasonList).cmp(&text(b, Field::ReasonList)),
        'Z' => a.work_dir.cmp(&b.work_dir),
        _ => Ordering::Equal,
    }
}

// ---------------------------------------------------------------------------------------------
// Options and filters
// ---------------------------------------------------------------------------------------------

const OPTIONS: &[getopt::Opt] = &[
    opt('A', "account", Arg::Required, "account"),
    opt('a', "all", Arg::No, "all"),
    long("array-unique", Arg::No, "array-unique"),
    long("federation", Arg::No, "federation"),
    opt('h', "noheader", Arg::No, "noheader"),
    long("help", Arg::No, "help"),
    long("hide", Arg::No, "hide"),
    opt('i', "iterate", Arg::Required, "iterate"),
    opt('j', "jobs", Arg::Optional, "jobs"),
    opt('j', "job", Arg::Optional, "jobs"),
    long("json", Arg::No, "json"),
    long("local", Arg::No, "local"),
    opt('l', "long", Arg::No, "long"),
    opt('L', "licenses", Arg::Required, "licenses"),
    opt('M', "clusters", Arg::Required, "clusters"),
    long("me", Arg::No, "me"),
    opt('n', "name", Arg::Required, "name"),
    long("noconvert", Arg::No, "noconvert"),
    opt('o', "format", Arg::Required, "format"),
    opt('O', "Format", Arg::Required, "Format"),
    opt('p', "partition", Arg::Required, "partition"),
    opt('P', "priority", Arg::No, "priority"),
    opt('q', "qos", Arg::Required, "qos"),
    opt('R', "reservation", Arg::Required, "reservation"),
    opt('r', "array", Arg::No, "array"),
    long("sibling", Arg::No, "sibling"),
    opt('s', "steps", Arg::Optional, "steps"),
    opt('S', "sort", Arg::Required, "sort"),
    long("start", Arg::No, "start"),
    opt('t', "states", Arg::Required, "states"),
    opt('u', "user", Arg::Required, "user"),
    long("usage", Arg::No, "usage"),
    opt('v', "verbose", Arg::No, "verbose"),
    opt('V', "version", Arg::No, "version"),
    opt('w', "nodelist", Arg::Required, "nodelist"),
    long("yaml", Arg::No, "yaml"),
];

/// What squeue prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Version,
    Usage,
}

/// squeue's parsed command line.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub output: Option<Output>,
    pub noheader: bool,
    pub long: bool,
    pub start: bool,
    /// `-r/--array` (or `SQUEUE_ARRAY`): one line per array task.
    pub array: bool,
    pub iterate_s: Option<u64>,
    /// `-j`: ids; `Some(empty)` is impossible (squeue refuses an empty list).
    pub job_ids: Vec<u64>,
    /// `-u` / `--me`: uids to show; `users_given` keeps an all-invalid list from showing all.
    pub uids: Vec<u32>,
    pub users_given: bool,
    pub accounts: Vec<String>,
    pub names: Vec<String>,
    pub partitions: Vec<String>,
    pub qos: Vec<String>,
    pub reservation: Option<String>,
    pub licenses: Option<String>,
    /// Expanded `-w` host list.
    pub nodes: Vec<String>,
    /// Long state names; empty = the default set, `all` = every state.
    pub states: Vec<String>,
    pub all_states: bool,
    pub format: Option<String>,
    pub long_format: Option<String>,
    pub sort: Option<String>,
    /// Warnings squeue prints on stderr and carries on (invalid users).
    pub warnings: String,
    /// `-s/--steps[=LIST]`: list steps instead of jobs (`Some(empty)`: every step).
    pub steps: Option<Vec<crate::squeue_steps::StepSel>>,
}

/// Every job state squeue accepts, in the order of its error message.
const JOB_STATES: &[(&str, &str)] = &[
    ("PENDING", "PD"),
    ("RUNNING", "R"),
    ("SUSPENDED", "S"),
    ("COMPLETED", "CD"),
    ("CANCELLED", "CA"),
    ("FAILED", "F"),
    ("TIMEOUT", "TO"),
    ("NODE_FAIL", "NF"),
    ("PREEMPTED", "PR"),
    ("BOOT_FAIL", "BF"),
    ("DEADLINE", "DL"),
    ("OUT_OF_MEMORY", "OOM"),
    ("COMPLETING", "CG"),
    ("CONFIGURING", "CF"),
    ("RESIZING", "RS"),
    ("RESV_DEL_HOLD", "RD"),
    ("REQUEUED", "RQ"),
    ("REQUEUE_FED", "RF"),
    ("REQUEUE_HOLD", "RH"),
    ("REVOKED", "RV"),
    ("SIGNALING", "SI"),
    ("SPECIAL_EXIT", "SE"),
    ("STAGE_OUT", "SO"),
    ("STOPPED", "ST"),
];

/// A state name or its compact form (case-insensitive) → the long name.
pub fn parse_state(s: &str) -> Option<&'static str> {
    let up = s.to_ascii_uppercase();
    JOB_STATES
        .iter()
        .find(|(l, c)| *l == up || *c == up)
        .map(|(l, _)| *l)
}

fn split_list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A user name or uid → uid, from /etc/passwd.
pub fn resolve_user(name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let mut parts = line.split(':');
        let (Some(user), Some(_), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if user == name {
            return uid.parse().ok();
        }
    }
    name.parse().ok()
}

/// An error squeue prints before exiting 1 (the full stderr text).
pub type Fail = String;

/// Parses squeue's arguments (and `SQUEUE_*` variables, which the command line overrides).
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    my_uid: u32,
) -> Result<Opts, Fail> {
    let p = getopt::parse("squeue", args, OPTIONS)?;
    let mut o = Opts::default();
    let env_or = |id: &str, var: &str| p.last(id).map(str::to_string).or_else(|| env(var));
    for (id, _) in &p.opts {
        match *id {
            "help" | "usage" => o.output = Some(Output::Usage),
            "version" => o.output = Some(Output::Version),
            "json" => o.output = Some(Output::Json),
            "yaml" => {
                return Err("squeue: error: --yaml is not supported by drover; use --json\n".into())
            }
            "clusters" | "federation" | "sibling" => {
                return Err(format!(
                    "squeue: error: --{id} needs a federation; drover is one cluster\n"
                ))
            }
            _ => {}
        }
    }
    o.noheader = p.has("noheader");
    o.long = p.has("long");
    o.start = p.has("start");
    o.array = p.has("array") || std::env::var_os("SQUEUE_ARRAY").is_some();
    if let Some(v) = p.last("iterate") {
        match v.parse::<u64>() {
            Ok(n) if n > 0 => o.iterate_s = Some(n),
            _ => {
                return Err("squeue: error: --iterate=seconds must be a positive integer\n".into())
            }
        }
    }
    // -s with its list attached, or bare -s and the list as the next word (opts.c).
    let mut words: &[String] = &p.words;
    if p.has("steps") {
        let mut list = p.all("steps").join(",");
        if list.is_empty() && !p.has("jobs") {
            if let Some((first, rest)) = words.split_first() {
                list = first.clone();
                words = rest;
            }
        }
        o.steps = Some(crate::squeue_steps::parse_list(&list)?);
        if p.has("Format") || o.output == Some(Output::Json) {
            return Err(
                "squeue: error: -O/--Format and --json are not available with --steps in drover; use -o\n"
                    .into(),
            );
        }
    }
    // -j with its value attached, or bare -j and the ids as the other words.
    let mut ids: Vec<String> = p.all("jobs").iter().flat_map(|v| split_list(v)).collect();
    if p.has("jobs") {
        ids.extend(words.iter().flat_map(|w| split_list(w)));
    } else if let Some(w) = words.first() {
        return Err(format!(
            "squeue: error: Unrecognized option: {w}\nUsage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]\n              [-n name] [-o format] [-p partitions] [--qos qos]\n              [--reservation reservation] [--sort fields] [--start]\n              [--step step_id] [-t states] [-u user_name] [--usage]\n              [-L licenses] [-w nodes] [--federation] [--local] [--sibling]\n\t      [-ahjlrsv]\n"
        ));
    }
    for id in ids {
        // `N_i` lists array N (squeue shows its records; the task is one of them).
        let whole = id.split_once('_').map_or(id.as_str(), |(n, _)| n);
        match whole.parse::<u64>() {
            Ok(n) if n > 0 => o.job_ids.push(n),
            _ => return Err(format!("squeue: error: Invalid job id: {id}\n")),
        }
    }
    let users: Vec<String> = env_or("user", "SQUEUE_USERS")
        .map(|v| split_list(&v).collect())
        .unwrap_or_default();
    for u in &users {
        o.users_given = true;
        match resolve_user(u) {
            Some(uid) => o.uids.push(uid),
            None => o
                .warnings
                .push_str(&format!("squeue: error: Invalid user: {u}\n\n")),
        }
    }
    if p.has("me") {
        o.users_given = true;
        o.uids.push(my_uid);
    }
    o.accounts = env_or("account", "SQUEUE_ACCOUNT")
        .map(|v| split_list(&v).collect())
        .unwrap_or_default();
    o.names = p.all("name").iter().flat_map(|v| split_list(v)).collect();
    o.partitions = env_or("partition", "SQUEUE_PARTITION")
        .map(|v| split_list(&v).collect())
        .unwrap_or_default();
    o.qos = p.all("qos").iter().flat_map(|v| split_list(v)).collect();
    o.reservation = p.last("reservation").map(str::to_string);
    o.licenses = p.last("licenses").map(str::to_string);
    for w in p.all("nodelist") {
        match hostlist::expand(w) {
            Ok(names) => o.nodes.extend(names),
            Err(_) => return Err(format!("squeue: error: Invalid node name {w}\n")),
        }
    }
    if let Some(states) = env_or("states", "SQUEUE_STATES") {
        for s in split_list(&states) {
            if s.eq_ignore_ascii_case("all") {
                o.all_states = true;
                continue;
            }
            match parse_state(&s) {
                Some(l) => o.states.push(l.to_string()),
                None => {
                    let valid: Vec<&str> = JOB_STATES.iter().map(|(l, _)| *l).collect();
                    return Err(format!(
                        "squeue: error: Invalid job state specified: {s}\nsqueue: error: Valid job states include: {}\n\n",
                        valid.join(",")
                    ));
                }
            }
        }
    }
    o.format = env_or("format", "SQUEUE_FORMAT");
    o.long_format = env_or("Format", "SQUEUE_FORMAT2");
    // -o and -O: the one given last on the command line wins; env only fills in.
    if p.has("format") && p.has("Format") {
        let last_o = p.opts.iter().rposition(|(i, _)| *i == "format");
        let last_big = p.opts.iter().rposition(|(i, _)| *i == "Format");
        if last_o > last_big {
            o.long_format = None;
        } else {
            o.format = None;
        }
    } else if p.has("format") {
        o.long_format = None;
    } else if p.has("Format") {
        o.format = None;
    }
    o.sort = env_or("sort", "SQUEUE_SORT");
    if o.output.is_none() {
        o.output = Some(Output::Table);
    }
    Ok(o)
}

/// squeue's default state filter: pending, running, suspended, completing (and the transient
/// flag states); finished jobs are hidden unless asked for.
pub fn default_visible(job: &JobInfo) -> bool {
    matches!(
        job.state.as_str(),
        "PENDING"
            | "RUNNING"
            | "SUSPENDED"
            | "COMPLETING"
            | "CONFIGURING"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
    )
}

/// The jobs `o` selects. Explicit job ids show finished jobs too (src/squeue/filter), and
/// `--start` shows only pending jobs.
pub fn select(jobs: Vec<JobInfo>, o: &Opts) -> Vec<JobInfo> {
    let node_set: BTreeSet<&str> = o.nodes.iter().map(String::as_str).collect();
    let jobs = if o.array { expand_arrays(jobs) } else { jobs };
    jobs.into_iter()
        .filter(|j| {
            o.job_ids.is_empty()
                || o.job_ids.contains(&j.job_id)
                || (j.array_job_id > 0 && o.job_ids.contains(&j.array_job_id))
        })
        .filter(|j| !o.users_given || o.uids.contains(&j.uid))
        // drover keeps no accounts yet: a job's account is Slurm's (null), which no -A matches.
        .filter(|_| o.accounts.is_empty())
        .filter(|j| o.names.is_empty() || o.names.contains(&j.name))
        .filter(|j| o.partitions.is_empty() || o.partitions.contains(&j.partition))
        .filter(|j| o.qos.is_empty() || o.qos.iter().any(|q| q == qos_of(j)))
        .filter(|_| o.reservation.is_none() && o.licenses.is_none())
        .filter(|j| {
            node_set.is_empty()
                || hostlist::expand(&j.node_list)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| node_set.contains(n.as_str()))
        })
        .filter(|j| {
            if o.all_states {
                true
            } else if !o.states.is_empty() {
                o.states.contains(&j.state)
            } else if o.start {
                is_pending(j)
            } else {
                !o.job_ids.is_empty() || default_visible(j)
            }
        })
        .collect()
}

/// `-r/--array`: the tasks an array's record stands for, one row each (`N_i`), in index order
/// (src/squeue/print.c with `--array`).
pub fn expand_arrays(jobs: Vec<JobInfo>) -> Vec<JobInfo> {
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        if j.array_job_id == 0 || j.array_task_id.is_some() || j.array_tasks_pending.is_empty() {
            out.push(j);
            continue;
        }
        let tasks = drover_scheduler::depend::parse_array(&j.array_tasks_pending, u32::MAX)
            .map(|a| a.tasks)
            .unwrap_or_default();
        for t in tasks {
            let mut row = j.clone();
            row.array_task_id = Some(t);
            row.array_tasks_pending.clear();
            row.display_id = format!("{}_{t}", j.array_job_id);
            out.push(row);
        }
    }
    out
}

/// `slurm_ctime2`: `%a %b %d %T %Y` (squeue -l/-i, sinfo -l date line).
pub fn ctime(unix_secs: i64, utc_offset_secs: i32) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = unix_secs + i64::from(utc_offset_secs);
    let stamp = drover_scheduler::time::format_timestamp(unix_secs, utc_offset_secs);
    // stamp = YYYY-MM-DDTHH:MM:SS
    let month: usize = stamp.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let weekday = DAYS[local.div_euclid(86_400).rem_euclid(7) as usize];
    format!(
        "{weekday} {} {} {} {}",
        MONTHS[month.clamp(1, 12) - 1],
        stamp.get(8..10).unwrap_or("01"),
        stamp.get(11..19).unwrap_or("00:00:00"),
        stamp.get(0..4).unwrap_or("1970")
    )
}

/// The table squeue prints for `jobs` (already selected), with the date line of `-l`/`-i`.
pub fn table(jobs: &[JobInfo], o: &Opts, now: i64, utc: i32) -> (String, String) {
    let mut jobs = jobs.to_vec();
    let sort = o.sort.clone().unwrap_or_else(|| {
        if o.start {
            "S".to_string()
        } else {
            "P,t,-p".to_string()
        }
    });
    sort_jobs(&mut jobs, &sort);
    let format = match (&o.format, &o.long_format) {
        (_, Some(f)) => JobFormat::parse_long(f),
        (Some(f), None) => JobFormat::parse(f),
        (None, None) if o.start => JobFormat::parse(START_FORMAT),
        (None, None) if o.long => JobFormat::parse(LONG_FORMAT),
        (None, None) => JobFormat::parse(DEFAULT_FORMAT),
    };
    let errors: String = format
        .invalid
        .iter()
        .map(|x| format!("squeue: error: Invalid job format specification: {x}\n"))
        .collect();
    let mut out = String::new();
    if (o.long || o.iterate_s.is_some()) && !o.noheader {
        out.push_str(&ctime(now, utc));
        out.push('\n');
    }
    out.push_str(&format.render(&jobs, utc, !o.noheader));
    (out, errors)
}

// ---------------------------------------------------------------------------------------------
// --json
// ---------------------------------------------------------------------------------------------

/// data_parser's `{set, infinite, number}` (v0.0.40 and later).
pub fn json_number(v: Option<i64>) -> serde_json::Value {
    match v {
        Some(n) => serde_json::json!({"set": true, "infinite": false, "number": n}),
        None => serde_json::json!({"set": false, "infinite": false, "number": 0}),
    }
}

pub fn json_infinite() -> serde_json::Value {
    serde_json::json!({"set": true, "infinite": true, "number": 0})
}

/// `meta` of a data_parser reply, naming the command line.
pub fn json_meta(command: &[&str], cluster: &str) -> serde_json::Value {
    serde_json::json!({
        "plugin": {"type": "", "name": "", "data_parser": "data_parser/v0.0.42", "accounting_storage": ""},
        "client": {"source": "", "user": "", "group": ""},
        "command": command,
        "slurm": {
            "version": {"major": "24", "minor": "11", "micro": "0"},
            "release": "24.11.0",
            "cluster": cluster,
        },
    })
}

fn job_json(j: &JobInfo) -> serde_json::Value {
    let t = |v: i64| json_number(Some(v));
    let mut state = vec![j.state.clone()];
    if j.state == "COMPLETING" {
        state = vec!["COMPLETED".to_string(), "COMPLETING".to_string()];
    }
    let mut m = serde_json::Map::new();
    m.insert("account".to_string(), serde_json::json!(""));
    m.insert(
        "accrue_time".to_string(),
        serde_json::json!(t(j.eligible_time)),
    );
    m.insert(
        "array_job_id".to_string(),
        serde_json::json!(json_number(Some(j.array_job_id as i64))),
    );
    m.insert(
        "array_task_id".to_string(),
        serde_json::json!(json_number(j.array_task_id.map(i64::from))),
    );
    m.insert("batch_flag".to_string(), serde_json::json!(true));
    m.insert("batch_host".to_string(), serde_json::json!(j.batch_host));
    m.insert("command".to_string(), serde_json::json!(j.command));
    m.insert(
        "cpus".to_string(),
        serde_json::json!(json_number(Some(i64::from(j.num_cpus)))),
    );
    m.insert(
        "cpus_per_task".to_string(),
        serde_json::json!(json_number(Some(i64::from(j.cpus_per_task)))),
    );
    m.insert(
        "current_working_directory".to_string(),
        serde_json::json!(j.work_dir),
    );
    m.insert(
        "eligible_time".to_string(),
        serde_json::json!(t(j.eligible_time)),
    );
    m.insert("end_time".to_string(), serde_json::json!(t(j.end_time)));
    m.insert("exit_code".to_string(), serde_json::json!({
            "status": [if j.exit_signal > 0 { "SIGNALED" } else if j.exit_code != 0 { "ERROR" } else { "SUCCESS" }],
            "return_code": json_number(Some(i64::from(j.exit_code.max(0)))),
            "signal": {"id": json_number(Some(i64::from(j.exit_signal.max(0)))), "name": ""},
        }));
    m.insert("features".to_string(), serde_json::json!(j.constraint));
    m.insert("group_id".to_string(), serde_json::json!(j.gid));
    m.insert(
        "group_name".to_string(),
        serde_json::json!(group_name(j.gid)),
    );
    m.insert("job_id".to_string(), serde_json::json!(j.job_id));
    m.insert("job_state".to_string(), serde_json::json!(state));
    m.insert(
        "last_sched_evaluation".to_string(),
        serde_json::json!(t(if j.start_time != 0 {
            j.start_time
        } else {
            j.submit_time
        })),
    );
    m.insert(
        "memory_per_cpu".to_string(),
        serde_json::json!(if j.mem_per_cpu_mb > 0 {
            json_number(Some(j.mem_per_cpu_mb as i64))
        } else {
            json_number(None)
        }),
    );
    m.insert(
        "memory_per_node".to_string(),
        serde_json::json!(if j.mem_per_node_mb > 0 {
            json_number(Some(j.mem_per_node_mb as i64))
        } else {
            json_number(None)
        }),
    );
    m.insert("name".to_string(), serde_json::json!(j.name));
    m.insert("nice".to_string(), serde_json::json!(j.nice));
    m.insert(
        "node_count".to_string(),
        serde_json::json!(json_number(Some(i64::from(j.num_nodes)))),
    );
    m.insert(
        "nodes".to_string(),
        serde_json::json!(sorted_nodes(&j.node_list)),
    );
    m.insert("partition".to_string(), serde_json::json!(j.partition));
    m.insert(
        "priority".to_string(),
        serde_json::json!(json_number(Some(i64::from(j.priority)))),
    );
    m.insert("qos".to_string(), serde_json::json!(qos_of(j)));
    m.insert(
        "required_nodes".to_string(),
        serde_json::json!(hostlist_of(&j.req_nodes)),
    );
    m.insert(
        "excluded_nodes".to_string(),
        serde_json::json!(hostlist_of(&j.exc_nodes)),
    );
    m.insert(
        "scheduled_nodes".to_string(),
        serde_json::json!(hostlist_of(&j.sched_nodes)),
    );
    m.insert(
        "standard_error".to_string(),
        serde_json::json!(stdio_path(
            j,
            if j.stderr.is_empty() {
                &j.stdout
            } else {
                &j.stderr
            }
        )),
    );
    m.insert("standard_input".to_string(), serde_json::json!("/dev/null"));
    m.insert(
        "standard_output".to_string(),
        serde_json::json!(stdio_path(j, &j.stdout)),
    );
    m.insert("start_time".to_string(), serde_json::json!(t(j.start_time)));
    m.insert(
        "state_reason".to_string(),
        serde_json::json!(reason_name(j)),
    );
    m.insert(
        "submit_time".to_string(),
        serde_json::json!(t(j.submit_time)),
    );
    m.insert(
        "tasks".to_string(),
        serde_json::json!(json_number(Some(i64::from(j.num_tasks)))),
    );
    m.insert(
        "time_limit".to_string(),
        serde_json::json!(match j.time_limit_min {
            Some(m) => json_number(Some(m as i64)),
            None => json_infinite(),
        }),
    );
    m.insert(
        "tres_alloc_str".to_string(),
        serde_json::json!(if is_pending(j) {
            String::new()
        } else {
            tres(
                j.num_cpus,
                job_mem_total(j, j.num_cpus, j.num_nodes),
                j.num_nodes,
            )
        }),
    );
    m.insert(
        "tres_req_str".to_string(),
        serde_json::json!(tres(
            j.num_cpus,
            job_mem_total(j, j.num_cpus, j.num_nodes),
            j.num_nodes
        )),
    );
    m.insert("user_id".to_string(), serde_json::json!(j.uid));
    m.insert("user_name".to_string(), serde_json::json!(j.user));
    m.insert(
        "exit_code_text".to_string(),
        serde_json::json!(exit_code_text(j)),
    );
    serde_json::Value::Object(m)
}

/// `squeue --json`: the selected jobs (sorting and format options are ignored, as in Slurm).
pub fn json(jobs: &[JobInfo], now: i64, args: &[String]) -> String {
    let mut command = vec!["squeue"];
    command.extend(args.iter().map(String::as_str));
    let doc = serde_json::json!({
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
        "last_backfill": json_number(Some(now)),
        "last_update": json_number(Some(now)),
        "meta": json_meta(&command, ""),
        "errors": [],
        "warnings": [],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

pub const USAGE: &str = "Usage: squeue [-A account] [--clusters names] [-i seconds] [--job jobid]
              [-n name] [-o format] [-p partitions] [--qos qos]
              [--reservation reservation] [--sort fields] [--start]
              [--step step_id] [-t states] [-u user_name] [--usage]
              [-L licenses] [-w nodes] [--federation] [--local] [--sibling]
\t      [-ahjlrsv]
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testdata::{captured_jobs, job, T0};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn opts(a: &[&str]) -> Opts {
        parse(&args(a), &|_| None, 0).expect("valid options")
    }

    fn render(jobs: Vec<JobInfo>, a: &[&str]) -> String {
        let o = opts(a);
        table(&select(jobs, &o), &o, T0, 0).0
    }

    #[test]
    fn squeue_default_matches_slurm() {
        // Captured from Slurm 22.05.8 `squeue` (jobs submitted by the bench cluster in
        // /work/shared/bench/slurm); the COMPLETED job 6 is hidden by the default state filter.
        let expected =
            "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                 2     bench longname     root PD       0:00      4 (Resources)
                 3     bench     wrap     root PD       0:00      4 (Priority)
                 5     bench longname     root PD       0:00      1 (Priority)
                 4     bench     wrap     root PD       0:00      1 (JobHeldUser)
                 1     bench longname     root  R       0:01      1 n1
";
        assert_eq!(render(captured_jobs(), &[]), expected);
    }

    #[test]
    fn squeue_format_engine_letters() {
        // Captured from Slurm 22.05.8: `squeue -o "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R %r %N
        // %C %S %V %Q %l %L %T"` (job 1 row; REASON/NODELIST headers are not cut).
        let jobs = captured_jobs();
        let fmt = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R %r %N %C %S %V %Q %l %L %T";
        let out = JobFormat::parse(fmt).render(&jobs[..1], 0, true);
        assert_eq!(
            out,
            "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON) REASON NODELIST CPUS START_TIME SUBMIT_TIME PRIORITY TIME_LIMIT TIME_LEFT STATE\n                 1     bench longname     root  R       0:01      1 n1 None n1 1 2026-11-26T08:55:49 2026-11-26T08:55:48 4294901759 10:00 9:59 RUNNING\n"
        );
        // Pending row of the same capture (job 4): START_TIME N/A, UNLIMITED limits.
        let out = JobFormat::parse("%S %l %L %m").render(&jobs[1..2], 0, true);
        assert_eq!(
            out,
            "START_TIME TIME_LIMIT TIME_LEFT MIN_MEMORY\nN/A UNLIMITED UNLIMITED 0\n"
        );
    }

    #[test]
    fn squeue_truncation_rules() {
        // Slurm 22.05.8: left-justified fields are always cut (`%4N` → `n[1-`, `%5R` →
        // `(JobH`), right-justified node lists never, right-justified reasons are.
        let mut j = job(7, "averylongname", "RUNNING", "None", 1);
        j.node_list = "node[01-10],node12".to_string();
        j.start_time = T0;
        j.now = T0 + 3_725;
        let mut p = job(8, "held", "PENDING", "JobHeldUser", 0);
        p.now = T0;
        let out = JobFormat::parse("%.5j|%5j|%.4R|%4N|%.3M|x%10i|%.2R").render(&[j, p], 0, false);
        assert_eq!(
            out,
            "avery|avery|node[01-10,12]|node|1:02:05|x7         |node[01-10,12]\n held|held |(Job|    |0:00|x8         |(J\n"
        );
        // Captured: `squeue -o "%.3i|%-5j|%5j|%.20R|x"` reports `-` and prints the token back.
        let f = JobFormat::parse("%.3i|%-5j|%5j|%.20R|x");
        assert_eq!(f.invalid, vec!["-".to_string()]);
        assert_eq!(
            f.render(&[], 0, true),
            "JOB|%-5j|NAME |    NODELIST(REASON)|x\n"
        );
        // Captured: a format without fields prints itself on every line; "%" prints nothing.
        assert_eq!(
            JobFormat::parse("literal only").render(&captured_jobs()[..2], 0, true),
            "literal only\nliteral only\nliteral only\n"
        );
        assert_eq!(
            JobFormat::parse("%").render(&captured_jobs()[..1], 0, true),
            "\n\n"
        );
    }

    /// The four jobs of the second 22.05.8 capture (/tmp/cli-gold, 2026-11-26 11:29): 1 running
    /// `longname_job` (-t 10), 2 `big` completed (-N4 -t 1-2:03:04 --mem=1G), 3 `held` (-H -n 2),
    /// 4 `done` completed; the clock at 11:29:13.
    fn capture2() -> Vec<JobInfo> {
        const SUBMIT: i64 = 1_795_692_540; // 2026-11-26T11:29:00
        let now = SUBMIT + 13;
        let base = |id: u64, name: &str, state: &str| {
            let mut j = job(id, name, state, "None", 0);
            j.submit_time = SUBMIT;
            j.eligible_time = SUBMIT;
            j.now = now;
            j.work_dir = "/tmp/cli-gold".to_string();
            j.command = String::new();
            j
        };
        let mut running = base(1, "longname_job", "RUNNING");
        running.priority = 4_294_901_759;
        running.time_limit_min = Some(10);
        running.start_time = SUBMIT + 1;
        running.end_time = SUBMIT + 601;
        running.node_list = "n1".to_string();
        running.batch_host = "n1".to_string();
        let mut big = base(2, "big", "COMPLETED");
        big.priority = 4_294_901_758;
        big.num_nodes = 4;
        big.num_cpus = 4;
        big.mem_per_node_mb = 1024;
        big.time_limit_min = Some(26 * 60 + 4);
        big.start_time = SUBMIT + 1;
        big.end_time = SUBMIT + 2;
        big.node_list = "n[1-4]".to_string();
        big.batch_host = "n1".to_string();
        let mut held = base(3, "held", "PENDING");
        held.reason = "JobHeldUser".to_string();
        held.held = true;
        held.num_cpus = 2;
        held.num_tasks = 2;
        let mut done = base(4, "done", "COMPLETED");
        done.priority = 4_294_901_757;
        done.start_time = SUBMIT + 1;
        done.end_time = SUBMIT + 1;
        done.node_list = "n1".to_string();
        done.batch_host = "n1".to_string();
        vec![running, big, held, done]
    }

    #[test]
    fn long_start_sort_and_state_filters_match_slurm() {
        // Slurm 22.05.8 captures (squeue.txt in the capture notes): `-l` starts with the date.
        let jobs = capture2();
        let now = jobs[0].now;
        let o = opts(&["-l"]);
        assert_eq!(
            table(&select(jobs.clone(), &o), &o, now, 0).0,
            "Thu Nov 26 11:29:13 2026
             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES NODELIST(REASON)
                 3     bench     held     root  PENDING       0:00 UNLIMITED      1 (JobHeldUser)
                 1     bench longname     root  RUNNING       0:12     10:00      1 n1
"
        );
        assert_eq!(
            render(jobs.clone(), &["--start"]),
            "             JOBID PARTITION     NAME     USER ST          START_TIME  NODES SCHEDNODES           NODELIST(REASON)
                 3     bench     held     root PD                 N/A      1 (null)               (JobHeldUser)
"
        );
        // -t all sorts states by name: CD before PD before R.
        assert_eq!(
            render(jobs.clone(), &["-t", "all"]),
            "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)
                 2     bench      big     root CD       0:01      4 n[1-4]
                 4     bench     done     root CD       0:00      1 n1
                 3     bench     held     root PD       0:00      1 (JobHeldUser)
                 1     bench longname     root  R       0:12      1 n1
"
        );
        assert_eq!(render(jobs.clone(), &["-t", "PD,CD"]).lines().count(), 4);
        let ids = |a: &[&str]| -> Vec<String> {
            render(jobs.clone(), a)
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(ids(&["-t", "all", "-S", "i"]), ["1", "2", "3", "4"]);
        assert_eq!(ids(&["-t", "all", "-S", "-i"]), ["4", "3", "2", "1"]);
        assert_eq!(ids(&["-n", "held,done", "-t", "all"]), ["4", "3"]);
        assert_eq!(ids(&["-w", "n1"]), ["1"]);
        assert_eq!(ids(&["-A", "foo"]), Vec::<String>::new());
        assert_eq!(ids(&["-p", "nosuch"]), Vec::<String>::new());
        assert_eq!(ids(&["-j1,99"]), ["1"]);
        assert_eq!(ids(&["-j", "2"]), ["2"], "-j shows finished jobs");
        assert_eq!(ids(&["-u", "nobody"]), Vec::<String>::new());
        assert_eq!(ids(&["--me"]), ["3", "1"]);
        assert_eq!(
            render(jobs, &["-h"]),
            "                 3     bench     held     root PD       0:00      1 (JobHeldUser)
                 1     bench longname     root  R       0:12      1 n1
"
        );
    }

    #[test]
    fn recorded_sections_match() {
        // Whole sections of crates/cli/tests/golden/slurm-22.05.8/squeue.txt, rendered from
        // the same jobs (capture2) at the capture's clock.
        use crate::format::testdata::golden;
        let jobs = capture2();
        let now = jobs[0].now;
        for cmd in [
            "squeue -l",
            "squeue --start",
            "squeue -t all -S i",
            "squeue -t all -S -i",
            "squeue -t PD,CD",
            "squeue -n held,done -t all",
            "squeue -w n1",
            "squeue -A foo",
            "squeue -p nosuch",
            "squeue -h",
            "squeue -j1",
            "squeue -t all -O JobID,Name:5,State:.10,Partition,NumNodes:.4,ReasonList,UserName",
        ] {
            let argv: Vec<String> = cmd.split(' ').skip(1).map(str::to_string).collect();
            let o = parse(&argv, &|_| None, 0).expect(cmd);
            assert_eq!(
                table(&select(jobs.clone(), &o), &o, now, 0).0,
                golden("squeue", cmd),
                "{cmd}"
            );
        }
    }

    #[test]
    fn every_letter_matches_slurm() {
        // Slurm 22.05.8, `squeue -t all -o "%a|%A|…|%Z"` (letters Slurm has and drover knows);
        // the header and the running job's row. %g resolves gid 0 through /etc/group.
        let jobs = capture2();
        let fmt = "%a|%A|%B|%c|%C|%D|%e|%E|%f|%F|%G|%h|%i|%j|%k|%K|%l|%L|%m|%M|%n|%N|%o|%p|%P|%Q|%r|%R|%S|%t|%T|%u|%U|%v|%V|%w|%W|%x|%y|%Y|%z|%Z";
        let out = JobFormat::parse(fmt).render(&jobs[..3], 0, true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ACCOUNT|JOBID|EXEC_HOST|MIN_CPUS|CPUS|NODES|END_TIME|DEPENDENCY|FEATURES|ARRAY_JOB_ID|GROUP|OVER_SUBSCRIBE|JOBID|NAME|COMMENT|ARRAY_TASK_ID|TIME_LIMIT|TIME_LEFT|MIN_MEMORY|TIME|REQ_NODES|NODELIST|COMMAND|PRIORITY|PARTITION|PRIORITY|REASON|NODELIST(REASON)|START_TIME|ST|STATE|USER|UID|RESERVATION|SUBMIT_TIME|WCKEY|LICENSES|EXC_NODES|NICE|SCHEDNODES|S:C:T|WORK_DIR");
        assert_eq!(lines[1], "(null)|1|n1|1|1|1|2026-11-26T11:39:01|(null)|(null)|1|0|OK|1|longname_job|(null)|N/A|10:00|9:48|0|0:12||n1|(null)|0.99998474121093|bench|4294901759|None|n1|2026-11-26T11:29:01|R|RUNNING|root|0|(null)|2026-11-26T11:29:00|(null)|(null)||0|(null)|*:*:*|/tmp/cli-gold");
        assert_eq!(lines[2], "(null)|2|n1|1|4|4|2026-11-26T11:29:02|(null)|(null)|2|0|OK|2|big|(null)|N/A|1-02:04:00|1-02:03:59|1G|0:01||n[1-4]|(null)|0.99998474097810|bench|4294901758|None|n[1-4]|2026-11-26T11:29:01|CD|COMPLETED|root|0|(null)|2026-11-26T11:29:00|(null)|(null)||0|(null)|*:*:*|/tmp/cli-gold");
        assert_eq!(lines[3], "(null)|3|n/a|1|2|1|N/A|(null)|(null)|3|0|OK|3|held|(null)|N/A|UNLIMITED|UNLIMITED|0|0:00|||(null)|0.00000000000000|bench|0|JobHeldUser|(JobHeldUser)|N/A|PD|PENDING|root|0|(null)|2026-11-26T11:29:00|(null)|(null)||0|(null)|*:*:*|/tmp/cli-gold");
    }

    #[test]
    fn long_format_names_match_slurm() {
        // Slurm 22.05.8: `squeue -t all -O "JobID,Name:5,State:.10,Partition,NumNodes:.4,
        // ReasonList,UserName"` (default width 20, no separator, sorted as the default).
        let jobs = capture2();
        assert_eq!(
            render(jobs.clone(), &["-t", "all", "-O", "JobID,Name:5,State:.10,Partition,NumNodes:.4,ReasonList,UserName"]),
            "JOBID               NAME      STATEPARTITION           NODENODELIST(REASON)    USER                
2                   big   COMPLETEDbench                  4n[1-4]              root                
4                   done  COMPLETEDbench                  1n1                  root                
3                   held    PENDINGbench                  1(JobHeldUser)       root                
1                   longn   RUNNINGbench                  1n1                  root                
"
        );
        // Selected values of the all-names capture (running job 1).
        let f = JobFormat::parse_long("ArrayJobID,ArrayTaskID,exit_code,PendingTime,tres-alloc,STDOUT:40,TimeLeft,tres-per-node,StepID");
        assert_eq!(f.invalid, vec!["StepID".to_string()]);
        assert_eq!(
            f.render(&jobs[..1], 0, false),
            "1                   N/A                 0                   1                   cpu=1,node=1,billing/tmp/cli-gold/slurm-1.out               9:48                N/A                 \n"
        );
    }

    #[test]
    fn field_widths_hold_for_every_letter() {
        // The format language's contract, over every letter, width 0-24 and both
        // justifications: `%N<l>` is exactly N characters (cut or padded), `%.N<l>` is exactly
        // N unless the value is a node list (never cut), and width 0 prints the value as is.
        let jobs = capture2();
        for letter in FIELDS.iter().filter_map(|f| f.0) {
            for width in 0..25usize {
                for right in [false, true] {
                    let spec = format!("%{}{width}{letter}|", if right { "." } else { "" });
                    let out = JobFormat::parse(&spec).render(&jobs, 0, true);
                    for (line, job) in out
                        .lines()
                        .zip([None].into_iter().chain(jobs.iter().map(Some)))
                    {
                        let cell = line.strip_suffix('|').expect("suffix kept");
                        let raw = match job {
                            Some(j) => value(j, by_letter(letter).unwrap().0, 0).0,
                            None => by_letter(letter).unwrap().1.to_string(),
                        };
                        let n = cell.chars().count();
                        let raw_n = raw.chars().count();
                        if width == 0 {
                            assert_eq!(cell, raw, "{spec}");
                        } else if !right {
                            assert_eq!(n, width, "{spec} {cell:?}");
                            assert!(raw.starts_with(cell.trim_end()) || raw.is_empty(), "{spec}");
                        } else {
                            assert_eq!(
                                n,
                                width.max(if n > width { raw_n } else { 0 }),
                                "{spec} {cell:?}"
                            );
                            assert!(
                                cell.trim_start() == raw
                                    || raw.starts_with(cell.trim_start())
                                    || n == width,
                                "{spec}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn errors_match_slurm() {
        let e = |a: &[&str]| parse(&args(a), &|_| None, 0).unwrap_err();
        assert_eq!(e(&["-t", "bogus"]), "squeue: error: Invalid job state specified: bogus\nsqueue: error: Valid job states include: PENDING,RUNNING,SUSPENDED,COMPLETED,CANCELLED,FAILED,TIMEOUT,NODE_FAIL,PREEMPTED,BOOT_FAIL,DEADLINE,OUT_OF_MEMORY,COMPLETING,CONFIGURING,RESIZING,RESV_DEL_HOLD,REQUEUED,REQUEUE_FED,REQUEUE_HOLD,REVOKED,SIGNALING,SPECIAL_EXIT,STAGE_OUT,STOPPED\n\n");
        assert!(e(&["--bogus"]).starts_with("squeue: unrecognized option '--bogus'\n"));
        assert!(e(&["-z"]).starts_with("squeue: invalid option -- 'z'\n"));
        // -s: every step, a list attached or as the next word; -O and --json are refused.
        assert_eq!(opts(&["-s"]).steps, Some(vec![]));
        let one = crate::squeue_steps::StepSel {
            job: 12,
            task: None,
            step: "0".into(),
        };
        assert_eq!(opts(&["-s", "12.0"]).steps, Some(vec![one.clone()]));
        assert_eq!(opts(&["--steps=12.0"]).steps, Some(vec![one]));
        assert!(e(&["-s", "-O", "JobId"]).contains("not available with --steps"));
        assert_eq!(e(&["-s", "12"]), "squeue: error: Invalid job step id: 12\n");
        // An unknown user is reported and matches nothing (22.05.8: rc 0, header only).
        let o = opts(&["-u", "nosuchuser_xyz"]);
        assert_eq!(
            o.warnings,
            "squeue: error: Invalid user: nosuchuser_xyz\n\n"
        );
        assert!(select(capture2(), &o).is_empty());
        // Environment fills in what the command line leaves out.
        let env = |k: &str| (k == "SQUEUE_FORMAT").then(|| "%i".to_string());
        let o = parse(&args(&[]), &env, 0).unwrap();
        assert_eq!(o.format.as_deref(), Some("%i"));
        let o = parse(&args(&["-O", "JobID"]), &env, 0).unwrap();
        assert_eq!((o.format, o.long_format.as_deref()), (None, Some("JobID")));
    }

    #[test]
    fn date_line_is_slurm_ctime2() {
        assert_eq!(ctime(1_795_692_553, 0), "Thu Nov 26 11:29:13 2026");
        assert_eq!(ctime(0, 0), "Thu Jan 01 00:00:00 1970");
        assert_eq!(ctime(951_782_400, 0), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn json_has_the_data_parser_shape() {
        let text = json(&capture2()[..1], T0, &args(&["--json"]));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let job = &v["jobs"][0];
        assert_eq!(job["job_id"], 1);
        assert_eq!(job["job_state"][0], "RUNNING");
        assert_eq!(job["time_limit"]["number"], 10);
        assert_eq!(job["nodes"], "n1");
        assert_eq!(v["meta"]["command"][1], "--json");
        assert!(v["errors"].as_array().is_some_and(|e| e.is_empty()));
    }

    /// Reference: squeue(1) `-r/--array`: one line per task of a pending array record.
    #[test]
    fn array_records_expand_one_line_per_task() {
        let meta = JobInfo {
            job_id: 7,
            array_job_id: 7,
            array_tasks_pending: "1-3,5".into(),
            array_max_running: 2,
            display_id: "7_[1-3,5%2]".into(),
            ..JobInfo::default()
        };
        let task = JobInfo {
            job_id: 9,
            array_job_id: 7,
            array_task_id: Some(0),
            display_id: "7_0".into(),
            ..JobInfo::default()
        };
        let plain = JobInfo {
            job_id: 8,
            display_id: "8".into(),
            ..JobInfo::default()
        };
        let rows = expand_arrays(vec![meta, task, plain]);
        let ids: Vec<&str> = rows.iter().map(|j| j.display_id.as_str()).collect();
        assert_eq!(ids, ["7_1", "7_2", "7_3", "7_5", "7_0", "8"]);
        assert_eq!(array_task_text(&rows[3]), "5");
    }
}
