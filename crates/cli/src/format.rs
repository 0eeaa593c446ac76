//! Pure formatters for squeue, sinfo and scontrol: proto messages in, Slurm's exact text out.
//!
//! References (SchedMD/slurm, tag slurm-25-11-7-1): src/squeue/print.c (`_print_str`,
//! `_print_secs`, the `_print_job_*` functions), src/squeue/opts.c (`parse_format`,
//! `_parse_token`), src/squeue/sort.c, src/sinfo/print.c, src/sinfo/sort.c,
//! src/scontrol/info_job.c (`_sprint_job_info`), src/api/node_info.c
//! (`slurm_sprint_node_table`), src/api/partition_info.c (`slurm_sprint_partition_info`),
//! src/scontrol/scontrol.c (`_print_ping`), src/common/slurm_protocol_defs.c
//! (`job_state_string_compact`, `node_state_string_compact`), src/common/print_fields.c
//! (`expand_stdio_fields`). Golden texts in the tests were captured from real Slurm 22.05.8
//! where 22.05 and 25.11 agree; where they differ the 25.11 layout is used (slurm.md §0.5).

use std::cmp::Ordering;
use std::fmt::Write as _;

use drover_proto::{JobInfo, NodeInfo, PartitionInfo, PingReply};
use drover_scheduler::{hostlist, time};

/// Slurm's `NO_VAL` (array task id of a job that is not an array task, `%a` in file names).
pub(crate) const NO_VAL: u32 = 0xffff_fffe;
/// `YEAR_SECONDS` in src/squeue/print.c: larger elapsed times print as INVALID.
#[cfg(test)]
const YEAR_SECONDS: i64 = 365 * 24 * 60 * 60;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `_print_str` (squeue and sinfo): `.` = right-justify with `%Ns` (cut to `width` only when
/// `cut`), otherwise `%.Ns` (always cut); then pad with blanks to `width`. Width 0 prints the
/// value as is.
pub(crate) fn print_str(out: &mut String, value: &str, width: usize, right: bool, cut: bool) {
    let shown: String = if width == 0 {
        value.to_string()
    } else if right {
        let padded = format!("{value:>width$}");
        if cut {
            padded.chars().take(width).collect()
        } else {
            padded
        }
    } else {
        value.chars().take(width).collect()
    };
    let len = shown.chars().count();
    out.push_str(&shown);
    for _ in len..width {
        out.push(' ');
    }
}

/// `_print_secs` in squeue/sinfo: `M:SS`, `H:MM:SS`, `D-HH:MM:SS`.
pub(crate) fn elapsed(secs: i64) -> String {
    time::format_elapsed(secs)
}

/// `secs2time_str` (src/common/parse_time.c): `HH:MM:SS` or `D-HH:MM:SS`.
pub(crate) fn secs2time(secs: i64) -> String {
    if secs < 0 {
        return "INVALID".to_string();
    }
    let (d, h, m, s) = (
        secs / 86400,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `mins2time_str`, with `None` = UNLIMITED.
pub(crate) fn limit(mins: Option<u64>) -> String {
    time::format_limit(mins)
}

/// `slurm_make_time_str` with the default format `%FT%T` in local time (`utc_offset_secs`
/// east of UTC); 0 prints `unset`.
pub(crate) fn timestamp(unix_secs: i64, utc_offset_secs: i32, unset: &str) -> String {
    time::format_timestamp_or(unix_secs, utc_offset_secs, unset)
}

/// `convert_num_unit` on MiB: `100M`, `1G`, `62.50G` (exact = only whole units).
pub(crate) fn mem_units(mb: u64, exact: bool) -> String {
    if mb == 0 {
        return "0".to_string();
    }
    const UNITS: [char; 5] = ['M', 'G', 'T', 'P', 'E'];
    if exact {
        let mut v = mb;
        let mut i = 0;
        while v.is_multiple_of(1024) && i + 1 < UNITS.len() {
            v /= 1024;
            i += 1;
        }
        return format!("{v}{}", UNITS[i]);
    }
    let mut v = mb as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 {
        format!("{}{}", v as u64, UNITS[i])
    } else {
        format!("{v:.2}{}", UNITS[i])
    }
}

/// One `%`-token of a squeue/sinfo `-o` format, `[.][#][digits]letter[suffix]`
/// (src/squeue/opts.c and src/sinfo/opts.c `_parse_token`). `#` (sinfo only) asks for a
/// width computed from the values.
pub(crate) struct Spec<'a> {
    pub token: &'a str,
    pub right: bool,
    pub computed: bool,
    pub width: usize,
    pub letter: Option<char>,
    pub suffix: &'a str,
}

/// Splits a `-o` format into the text before the first `%` and its `%`-tokens.
pub(crate) fn format_specs(fmt: &str, allow_computed: bool) -> (&str, Vec<Spec<'_>>) {
    let (prefix, rest) = match fmt.find('%') {
        Some(p) => (&fmt[..p], &fmt[p..]),
        None => (fmt, ""),
    };
    let specs = rest
        .split('%')
        .filter(|t| !t.is_empty())
        .map(|token| {
            let (right, body) = match token.strip_prefix('.') {
                Some(b) => (true, b),
                None => (false, token),
            };
            let (computed, body) = match body.strip_prefix('#') {
                Some(b) if allow_computed => (true, b),
                _ => (false, body),
            };
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let letter = body[digits..].chars().next();
            Spec {
                token,
                right,
                computed,
                width: body[..digits].parse::<usize>().unwrap_or(0).min(4096),
                letter,
                suffix: &body[digits + letter.map_or(0, char::len_utf8)..],
            }
        })
        .collect();
    (prefix, specs)
}

/// One `-O` item, `name[:[.][size][suffix]]` → (name, right, width, suffix); the width is 20
/// without `:` and `atoi` of what follows otherwise (`_parse_long_token`).
pub(crate) fn long_spec(token: &str) -> (&str, bool, usize, &str) {
    let Some((name, spec)) = token.split_once(':') else {
        return (token, false, 20, "");
    };
    let (right, body) = match spec.strip_prefix('.') {
        Some(b) => (true, b),
        None => (false, spec),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    let width = body[..digits].parse::<usize>().unwrap_or(0).min(4096);
    (name, right, width, &body[digits..])
}

/// Sort and compress a host list: `n1,n2,n3,n5` → `n[1-3,5]` (Slurm's `hostlist_sort` +
/// `hostlist_ranged_string`; zero padding kept, names without a numeric suffix stand alone).
/// Accepts compressed input too (`n[1-2],n5`).
pub fn compress_hostlist<S: AsRef<str>>(names: &[S]) -> String {
    let mut hosts = Vec::new();
    for name in names {
        // A malformed expression stands for itself, as one literal name.
        match hostlist::expand(name.as_ref()) {
            Ok(expanded) => hosts.extend(expanded),
            Err(_) => hosts.push(name.as_ref().to_string()),
        }
    }
    hostlist::compress_sorted(&hosts)
}

// ---------------------------------------------------------------------------------------------
// Job states
// ---------------------------------------------------------------------------------------------

/// `job_state_string_compact` (src/common/slurm_protocol_defs.c).
pub fn job_state_compact(state: &str) -> &'static str {
    match state {
        "PENDING" => "PD",
        "RUNNING" => "R",
        "SUSPENDED" => "S",
        "COMPLETED" => "CD",
        "CANCELLED" => "CA",
        "FAILED" => "F",
        "TIMEOUT" => "TO",
        "NODE_FAIL" => "NF",
        "PREEMPTED" => "PR",
        "BOOT_FAIL" => "BF",
        "DEADLINE" => "DL",
        "OUT_OF_MEMORY" => "OOM",
        "COMPLETING" => "CG",
        "CONFIGURING" => "CF",
        "REQUEUED" => "RQ",
        "REQUEUE_HOLD" => "RH",
        "REQUEUE_FED" => "RF",
        "RESIZING" => "RS",
        "RESV_DEL_HOLD" => "RD",
        "REVOKED" => "RV",
        "SPECIAL_EXIT" => "SE",
        "SIGNALING" => "SI",
        "STAGE_OUT" => "SO",
        "STOPPED" => "ST",
        _ => "?",
    }
}

pub(crate) fn is_pending(job: &JobInfo) -> bool {
    matches!(
        job.state.as_str(),
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
    )
}

/// `job_time_used` (src/squeue/print.c), with `JobInfo.now` as the clock.
pub(crate) fn job_time_used(job: &JobInfo) -> i64 {
    if job.start_time == 0 || is_pending(job) {
        return 0;
    }
    let end = if matches!(
        job.state.as_str(),
        "RUNNING" | "SUSPENDED" | "CONFIGURING" | "SIGNALING"
    ) || job.end_time == 0
    {
        job.now
    } else {
        job.end_time
    };
    end.saturating_sub(job.start_time)
}

pub(crate) fn reason_name(job: &JobInfo) -> &str {
    if job.reason.is_empty() {
        "None"
    } else {
        &job.reason
    }
}

/// `%R`: `(Reason)` for pending and failed-like jobs, else the sorted node list.
pub(crate) fn reason_or_nodes(job: &JobInfo) -> (String, bool) {
    let parenthesised = job.state != "COMPLETING"
        && (is_pending(job)
            || matches!(
                job.state.as_str(),
                "STAGE_OUT" | "TIMEOUT" | "OUT_OF_MEMORY" | "DEADLINE" | "FAILED"
            ));
    if parenthesised {
        (format!("({})", reason_name(job)), true)
    } else {
        (sorted_nodes(&job.node_list), false)
    }
}

pub(crate) fn sorted_nodes(list: &str) -> String {
    if list.is_empty() {
        String::new()
    } else {
        compress_hostlist(&[list])
    }
}

pub(crate) fn exit_code_text(job: &JobInfo) -> String {
    format!("{}:{}", job.exit_code.max(0), job.exit_signal.max(0))
}

// ---------------------------------------------------------------------------------------------
// sinfo
// ---------------------------------------------------------------------------------------------

/// Node state bits (slurm/slurm.h) for the compact name and sinfo's state sort.
pub(crate) const NODE_STATE_DOWN: u32 = 1;
pub(crate) const NODE_STATE_IDLE: u32 = 2;
pub(crate) const NODE_STATE_ALLOCATED: u32 = 3;
pub(crate) const NODE_STATE_MIXED: u32 = 5;
pub(crate) const NODE_STATE_FUTURE: u32 = 6;
pub(crate) const FLAG_DRAIN: u32 = 0x200;
pub(crate) const FLAG_COMPLETING: u32 = 0x400;
pub(crate) const FLAG_NO_RESPOND: u32 = 0x800;
pub(crate) const FLAG_POWERED_DOWN: u32 = 0x1000;
pub(crate) const FLAG_FAIL: u32 = 0x2000;
pub(crate) const FLAG_POWERING_UP: u32 = 0x4000;
pub(crate) const FLAG_MAINT: u32 = 0x8000;
pub(crate) const FLAG_REBOOT_REQUESTED: u32 = 0x10000;
pub(crate) const FLAG_POWERING_DOWN: u32 = 0x80000;
pub(crate) const FLAG_REBOOT_ISSUED: u32 = 0x0100_0000;
pub(crate) const FLAG_POWER_DOWN: u32 = 0x0200_0000;
pub(crate) const FLAG_PLANNED: u32 = 0x0800_0000;

/// Parse `IDLE+DRAIN`, `DOWN+NOT_RESPONDING`, `DRAINED`, `DRAINING`, … into Slurm's bit value.
pub(crate) fn node_state_bits(node: &NodeInfo) -> u32 {
    let mut bits = 0u32;
    let mut base = None;
    for (i, word) in node.state.split('+').enumerate() {
        let w = word.trim().trim_end_matches('*').to_ascii_uppercase();
        let b = match w.as_str() {
            "UNKNOWN" => Some(0),
            "DOWN" => Some(NODE_STATE_DOWN),
            "IDLE" => Some(NODE_STATE_IDLE),
            "ALLOCATED" | "ALLOC" => Some(NODE_STATE_ALLOCATED),
            "MIXED" | "MIX" => Some(NODE_STATE_MIXED),
            "FUTURE" => Some(NODE_STATE_FUTURE),
            "DRAINED" => {
                bits |= FLAG_DRAIN;
                Some(NODE_STATE_IDLE)
            }
            "DRAINING" => {
                bits |= FLAG_DRAIN;
                Some(NODE_STATE_ALLOCATED)
            }
            "COMPLETING" => {
                bits |= FLAG_COMPLETING;
                None
            }
            "DRAIN" => {
                bits |= FLAG_DRAIN;
                None
            }
            "NOT_RESPONDING" => {
                bits |= FLAG_NO_RESPOND;
                None
            }
            "FAIL" => {
                bits |= FLAG_FAIL;
                None
            }
            "MAINTENANCE" | "MAINT" => {
                bits |= FLAG_MAINT;
                None
            }
            "POWERED_DOWN" => {
                bits |= FLAG_POWERED_DOWN;
                None
            }
            "POWERING_UP" => {
                bits |= FLAG_POWERING_UP;
                None
            }
            "POWERING_DOWN" => {
                bits |= FLAG_POWERING_DOWN;
                None
            }
            "POWER_DOWN" => {
                bits |= FLAG_POWER_DOWN;
                None
            }
            "REBOOT_REQUESTED" => {
                bits |= FLAG_REBOOT_REQUESTED;
                None
            }
            "REBOOT_ISSUED" => {
                bits |= FLAG_REBOOT_ISSUED;
                None
            }
            "PLANNED" => {
                bits |= FLAG_PLANNED;
                None
            }
            _ => None,
        };
        if i == 0 || base.is_none() {
            if let Some(b) = b {
                base = Some(b);
            }
        }
    }
    if node.not_responding {
        bits |= FLAG_NO_RESPOND;
    }
    bits | base.unwrap_or(0)
}

/// `node_state_string_compact` (upper case; sinfo prints it in lower case).
pub(crate) fn node_state_compact(bits: u32) -> String {
    let base = bits & 0xf;
    let has = |f: u32| bits & f != 0;
    let busy = has(FLAG_COMPLETING) || base == NODE_STATE_ALLOCATED || base == NODE_STATE_MIXED;
    let suffix = if has(FLAG_MAINT) {
        "$"
    } else if has(FLAG_REBOOT_ISSUED) {
        "^"
    } else if has(FLAG_REBOOT_REQUESTED) {
        "@"
    } else if has(FLAG_POWERING_UP) {
        "#"
    } else if has(FLAG_POWERING_DOWN) {
        "%"
    } else if has(FLAG_POWERED_DOWN) {
        "~"
    } else if has(FLAG_POWER_DOWN) {
        "!"
    } else if has(FLAG_NO_RESPOND) {
        "*"
    } else {
        ""
    };
    let no_resp = if has(FLAG_NO_RESPOND) { "*" } else { "" };
    if has(FLAG_DRAIN) {
        return format!("{}{suffix}", if busy { "DRNG" } else { "DRAIN" });
    }
    if has(FLAG_FAIL) {
        return format!("{}{no_resp}", if busy { "FAILG" } else { "FAIL" });
    }
    match base {
        NODE_STATE_DOWN => format!("DOWN{suffix}"),
        NODE_STATE_ALLOCATED => {
            if suffix.is_empty() && has(FLAG_COMPLETING) {
                "ALLOC+".to_string()
            } else {
                format!("ALLOC{suffix}")
            }
        }
        _ if has(FLAG_COMPLETING) => format!("COMP{suffix}"),
        NODE_STATE_IDLE => {
            let planned = if suffix.is_empty() && has(FLAG_PLANNED) {
                "-"
            } else {
                ""
            };
            format!("IDLE{suffix}{planned}")
        }
        NODE_STATE_MIXED => {
            let planned = if suffix.is_empty() && has(FLAG_PLANNED) {
                "-"
            } else {
                ""
            };
            format!("MIX{suffix}{planned}")
        }
        NODE_STATE_FUTURE => format!("FUTURE{suffix}"),
        _ => format!("UNK{suffix}"),
    }
}

// ---------------------------------------------------------------------------------------------
// scontrol show
// ---------------------------------------------------------------------------------------------

/// Line joiner shared by the `show` records: `\n   ` between lines, or a blank with `-o`.
pub(crate) struct Record {
    out: String,
    oneliner: bool,
}

impl Record {
    fn new(oneliner: bool) -> Self {
        Record {
            out: String::new(),
            oneliner,
        }
    }
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }
    fn end_line(&mut self) {
        self.out.push_str(if self.oneliner { " " } else { "\n   " });
    }
}

/// `expand_stdio_fields` for a batch job (src/common/print_fields.c) on the default-filled path.
pub(crate) fn stdio_path(job: &JobInfo, pattern: &str) -> String {
    let pattern = if pattern.is_empty() {
        "slurm-%j.out"
    } else {
        pattern
    };
    let mut out = String::new();
    if !pattern.starts_with('/') && !job.work_dir.is_empty() {
        out.push_str(&job.work_dir);
        if !job.work_dir.ends_with('/') {
            out.push('/');
        }
    }
    if pattern.contains('\\') {
        out.extend(pattern.chars().filter(|c| *c != '\\'));
        return out;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' || i + 1 >= chars.len() {
            if c != '%' {
                out.push(c);
            }
            i += 1;
            continue;
        }
        i += 1;
        if chars[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        let start = i;
        let mut pad: usize = 0;
        while i < chars.len() && chars[i].is_ascii_digit() {
            pad = (pad * 10 + chars[i].to_digit(10).unwrap_or(0) as usize).min(10);
            i += 1;
        }
        let Some(&spec) = chars.get(i) else {
            out.push('%');
            out.extend(&chars[start..]);
            break;
        };
        let num = |v: u64| format!("{v:0pad$}");
        match spec {
            'A' | 'j' | 'J' => out.push_str(&num(job.job_id)),
            'a' => out.push_str(&num(u64::from(NO_VAL))),
            'b' => out.push_str(&num(u64::from(NO_VAL % 10))),
            'r' => out.push_str(&num(0)),
            's' => out.push_str("batch"),
            'x' => out.push_str(&job.name),
            'u' => out.push_str(&job.user),
            'N' => out.push_str(&job.batch_host),
            'n' | 't' => out.push_str(&num(0)),
            other => {
                out.push('%');
                out.extend(&chars[start..i]);
                out.push(other);
            }
        }
        i += 1;
    }
    out
}

pub(crate) fn tres(cpus: u32, mem_mb: u64, nodes: u32) -> String {
    let mut s = format!("cpu={cpus}");
    if mem_mb > 0 {
        let _ = write!(s, ",mem={}", mem_units(mem_mb, false));
    }
    let _ = write!(s, ",node={nodes},billing={cpus}");
    s
}

pub(crate) fn job_mem_total(job: &JobInfo, cpus: u32, nodes: u32) -> u64 {
    if job.mem_per_cpu_mb > 0 {
        job.mem_per_cpu_mb.saturating_mul(u64::from(cpus))
    } else {
        job.mem_per_node_mb.saturating_mul(u64::from(nodes))
    }
}

pub(crate) fn or_null(s: &str) -> &str {
    if s.is_empty() {
        "(null)"
    } else {
        s
    }
}

/// `scontrol show job` for one job (src/scontrol/info_job.c `_sprint_job_info`, 25.11 layout).
/// Fields drover does not track print the values Slurm shows on a plain cluster. The group
/// name is not known here: like Slurm for an unresolvable gid, the number is printed.
///
/// `details` (`-d`) adds `DerivedExitCode=` and, for a job holding nodes, `JOB_GRES=` and one
/// line per node. drover's controller does not know which CPU ids a node gave the job (the
/// node picks them), so `CPU_IDs=N/A`.
/// A job's QOS (`scontrol show job QOS=`, squeue `%q`): `normal` when none is named.
pub fn job_qos(job: &JobInfo) -> &str {
    if job.qos.is_empty() {
        "normal"
    } else {
        &job.qos
    }
}

/// A job's `OverSubscribe=` (`scontrol show job`, squeue `%h`): `NO` for `--exclusive`, `YES`
/// for `--oversubscribe`, `OK` otherwise (src/common/slurm_protocol_defs.c
/// `job_share_string`; drover has no `USER` or `MCS` exclusivity).
pub fn job_oversubscribe(job: &JobInfo) -> &'static str {
    if job.exclusive {
        "NO"
    } else if job.oversubscribe {
        "YES"
    } else {
        "OK"
    }
}

pub fn scontrol_show_job(
    job: &JobInfo,
    utc_offset_secs: i32,
    oneliner: bool,
    details: bool,
) -> String {
    let utc = utc_offset_secs;
    let ts = |t: i64| timestamp(t, utc, "Unknown");
    let mut r = Record::new(oneliner);
    if job.array_job_id > 0 {
        r.push(&format!(
            "JobId={} ArrayJobId={} ArrayTaskId={} JobName={}",
            job.job_id,
            job.array_job_id,
            crate::squeue::array_task_text(job),
            job.name
        ));
    } else {
        r.push(&format!("JobId={} JobName={}", job.job_id, job.name));
    }
    r.end_line();
    r.push(&format!(
        "UserId={}({}) GroupId={}({}) MCS_label=N/A",
        job.user, job.uid, job.gid, job.gid
    ));
    r.end_line();
    r.push(&format!(
        "Priority={} Nice={} Account=(null) QOS={}",
        job.priority,
        job.nice,
        job_qos(job)
    ));
    r.end_line();
    let dependency = if job.dependency.is_empty() {
        "(null)"
    } else {
        job.dependency.as_str()
    };
    r.push(&format!(
        "JobState={} Reason={} Dependency={dependency}",
        job.state,
        reason_name(job).replace(char::is_whitespace, "_")
    ));
    r.end_line();
    r.push(&format!(
        "Requeue={} Restarts={} BatchFlag={} Reboot=0 ExitCode={}",
        u8::from(job.requeue),
        job.restarts,
        u8::from(!job.no_batch_script),
        exit_code_text(job)
    ));
    r.end_line();
    if details {
        r.push("DerivedExitCode=0:0");
        r.end_line();
    }
    r.push(&format!(
        "RunTime={} TimeLimit={} TimeMin=N/A",
        secs2time(job_time_used(job)),
        limit(job.time_limit_min)
    ));
    r.end_line();
    r.push(&format!(
        "SubmitTime={} EligibleTime={}",
        ts(job.submit_time),
        ts(job.eligible_time)
    ));
    r.end_line();
    r.push(&format!("AccrueTime={}", ts(job.eligible_time)));
    r.end_line();
    let end = if job.time_limit_min.is_none() && (job.end_time == 0 || job.end_time > job.now) {
        "Unknown".to_string()
    } else {
        ts(job.end_time)
    };
    r.push(&format!(
        "StartTime={} EndTime={} Deadline=N/A",
        ts(job.start_time),
        end
    ));
    r.end_line();
    let last_eval = if job.start_time != 0 {
        job.start_time
    } else {
        job.submit_time
    };
    r.push(&format!(
        "SuspendTime=None SecsPreSuspend=0 LastSchedEval={} Scheduler=Main",
        ts(last_eval)
    ));
    r.end_line();
    r.push(&format!(
        "Partition={} AllocNode:Sid={}:0",
        job.partition,
        or_null(&job.submit_host)
    ));
    r.end_line();
    let list = |names: &[String]| {
        if names.is_empty() {
            "(null)".to_string()
        } else {
            compress_hostlist(names)
        }
    };
    r.push(&format!(
        "ReqNodeList={} ExcNodeList={}",
        list(&job.req_nodes),
        list(&job.exc_nodes)
    ));
    r.end_line();
    r.push(&format!("NodeList={}", sorted_nodes(&job.node_list)));
    r.end_line();
    if !job.batch_host.is_empty() {
        r.push(&format!("BatchHost={}", job.batch_host));
        r.end_line();
    }
    let pending = is_pending(job);
    let nodes = if pending && job.nodes_max > 0 {
        format!("{}-{}", job.num_nodes.min(job.nodes_max), job.nodes_max)
    } else {
        job.num_nodes.to_string()
    };
    r.push(&format!(
        "NumNodes={nodes} NumCPUs={} NumTasks={} CPUs/Task={} ReqB:S:C:T=0:0:*:*",
        job.num_cpus, job.num_tasks, job.cpus_per_task
    ));
    r.end_line();
    let mem = job_mem_total(job, job.num_cpus, job.num_nodes);
    r.push(&format!(
        "ReqTRES={}",
        tres(job.num_cpus, mem, job.num_nodes)
    ));
    r.end_line();
    if pending || job.node_list.is_empty() {
        r.push("AllocTRES=(null)");
    } else {
        r.push(&format!(
            "AllocTRES={}",
            tres(job.num_cpus, mem, job.num_nodes)
        ));
    }
    r.end_line();
    r.push("Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*");
    r.end_line();
    if details && !job.shares.is_empty() {
        let gpu = |n: usize| {
            if job.gpu_type.is_empty() {
                format!("gpu:{n}")
            } else {
                format!("gpu:{}:{n}", job.gpu_type)
            }
        };
        r.push(&format!(
            "JOB_GRES={}",
            if job.gpus_per_node == 0 {
                "(null)".to_string()
            } else {
                gpu(job.gpus_per_node as usize)
            }
        ));
        for share in &job.shares {
            r.end_line();
            let gres = if share.gpus.is_empty() {
                String::new()
            } else {
                let idx: Vec<String> = share.gpus.iter().map(u32::to_string).collect();
                format!("{}(IDX:{})", gpu(share.gpus.len()), idx.join(","))
            };
            r.push(&format!(
                "  Nodes={} CPU_IDs=N/A Mem={} GRES={gres}",
                share.node, share.mem_mb
            ));
        }
        r.end_line();
    }
    let (mem_kind, mem_value) = if job.mem_per_cpu_mb > 0 {
        ("CPU", job.mem_per_cpu_mb)
    } else {
        ("Node", job.mem_per_node_mb)
    };
    r.push(&format!(
        "MinCPUsNode={} MinMemory{mem_kind}={} MinTmpDiskNode=0",
        job.cpus_per_task.max(1),
        mem_units(mem_value, true)
    ));
    r.end_line();
    r.push(&format!(
        "Features={} DelayBoot=00:00:00",
        or_null(&job.constraint)
    ));
    r.end_line();
    r.push(&format!(
        "OverSubscribe={} Contiguous=0 Licenses=(null) LicensesAlloc=(null) Network=(null)",
        job_oversubscribe(job)
    ));
    r.end_line();
    r.push(&format!("Command={}", or_null(&job.command)));
    r.end_line();
    r.push("SubmitLine=(null)");
    r.end_line();
    r.push(&format!("WorkDir={}", job.work_dir));
    r.end_line();
    if job.no_batch_script {
        // srun's own allocation: its output goes to srun, and Slurm prints no file names.
        let mut out = r.out.trim_end().to_string();
        out.push_str(if oneliner { "\n" } else { "\n\n" });
        return out;
    }
    let stdout_pattern = job.stdout.as_str();
    let stderr_pattern = if job.stderr.is_empty() {
        stdout_pattern
    } else {
        job.stderr.as_str()
    };
    r.push(&format!("StdErr={}", stdio_path(job, stderr_pattern)));
    r.end_line();
    r.push("StdIn=/dev/null");
    r.end_line();
    r.push(&format!("StdOut={}", stdio_path(job, stdout_pattern)));
    // xstrtrim, then the record terminator.
    let mut out = r.out.trim_end().to_string();
    out.push_str(if oneliner { "\n" } else { "\n\n" });
    out
}

/// `scontrol show node` for one node (src/api/node_info.c `slurm_sprint_node_table`, 25.11).
/// Hardware topology is not tracked: like slurmd with only `CPUs=` configured, every CPU is a
/// socket with one core and one thread.
pub fn scontrol_show_node(node: &NodeInfo, utc_offset_secs: i32, oneliner: bool) -> String {
    let ts = |t: i64, unset: &str| timestamp(t, utc_offset_secs, unset);
    let mut r = Record::new(oneliner);
    r.push(&format!("NodeName={} ", node.name));
    if !node.arch.is_empty() {
        r.push(&format!("Arch={} ", node.arch));
    }
    r.push("CoresPerSocket=1 ");
    r.end_line();
    r.push(&format!(
        "CPUAlloc={} CPUEfctv={} CPUTot={} CPULoad=0.00",
        node.alloc_cpus, node.cpus, node.cpus
    ));
    r.end_line();
    r.push("AvailableFeatures=(null)");
    r.end_line();
    r.push("ActiveFeatures=(null)");
    r.end_line();
    r.push("Gres=(null)");
    r.end_line();
    let mut addr_line = String::new();
    if !node.addr.is_empty() {
        let _ = write!(addr_line, "NodeAddr={} ", node.addr);
    }
    let _ = write!(addr_line, "NodeHostName={} ", node.name);
    if !node.version.is_empty() {
        let _ = write!(addr_line, "Version={}", node.version);
    }
    r.push(&addr_line);
    r.end_line();
    if !node.os.is_empty() {
        r.push(&format!("OS={} ", node.os));
        r.end_line();
    }
    r.push(&format!(
        "RealMemory={} AllocMem={} FreeMem=N/A Sockets={} Boards=1",
        node.real_memory_mb, node.alloc_memory_mb, node.cpus
    ));
    r.end_line();
    r.push(&format!(
        "State={} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
        node_state_complete(node)
    ));
    r.end_line();
    if !node.partitions.is_empty() {
        r.push(&format!("Partitions={} ", node.partitions.join(",")));
        r.end_line();
    }
    r.push(&format!(
        "BootTime={} SlurmdStartTime={}",
        ts(node.boot_time, "None"),
        ts(node.registered_at, "None")
    ));
    r.end_line();
    r.push("LastBusyTime=Unknown ResumeAfterTime=None");
    r.end_line();
    let mut cfg = format!("cpu={}", node.cpus);
    if node.real_memory_mb > 0 {
        let _ = write!(cfg, ",mem={}", mem_units(node.real_memory_mb, false));
    }
    let _ = write!(cfg, ",billing={}", node.cpus);
    r.push(&format!("CfgTRES={cfg}"));
    r.end_line();
    let mut alloc = Vec::new();
    if node.alloc_cpus > 0 {
        alloc.push(format!("cpu={}", node.alloc_cpus));
    }
    if node.alloc_memory_mb > 0 {
        alloc.push(format!("mem={}", mem_units(node.alloc_memory_mb, false)));
    }
    r.push(&format!("AllocTRES={}", alloc.join(",")));
    r.end_line();
    r.push("CurrentWatts=n/a AveWatts=n/a");
    let mut first = true;
    for line in node.reason.split('\n').filter(|l| !l.is_empty()) {
        r.end_line();
        if first {
            r.push("Reason=");
            first = false;
        } else {
            r.push("       ");
        }
        r.push(line);
    }
    let mut out = r.out;
    out.push_str(if oneliner { "\n" } else { "\n\n" });
    out
}

/// `node_state_string_complete`-like long state: the base name, then `+FLAG`s.
pub(crate) fn node_state_complete(node: &NodeInfo) -> String {
    let mut state = if node.state.is_empty() {
        "UNKNOWN".to_string()
    } else {
        node.state.clone()
    };
    if node.not_responding && !state.contains("NOT_RESPONDING") {
        state.push_str("+NOT_RESPONDING");
    }
    state
}

/// `scontrol show partition` for one partition (src/api/partition_info.c, 25.11 layout).
/// `nodes` supplies memory for the `TRES=` line (pass `&[]` to leave `mem` out).
pub fn scontrol_show_partition(part: &PartitionInfo, nodes: &[NodeInfo], oneliner: bool) -> String {
    let mut r = Record::new(oneliner);
    r.push(&format!("PartitionName={}", part.name));
    r.end_line();
    r.push("AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL");
    r.end_line();
    r.push(&format!(
        "AllocNodes=ALL Default={} QoS=N/A",
        if part.is_default { "YES" } else { "NO" }
    ));
    r.end_line();
    let default_time = match part.default_time_min {
        None => "NONE".to_string(),
        Some(m) => secs2time(i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX)),
    };
    r.push(&format!(
        "DefaultTime={default_time} DisableRootJobs=NO ExclusiveUser=NO ExclusiveTopo=NO GraceTime=0 Hidden=NO"
    ));
    r.end_line();
    let max_nodes = if part.max_nodes == 0 {
        "UNLIMITED".to_string()
    } else {
        part.max_nodes.to_string()
    };
    r.push(&format!(
        "MaxNodes={max_nodes} MaxTime={} MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED MaxCPUsPerSocket=UNLIMITED",
        limit(part.max_time_min)
    ));
    r.end_line();
    let members = if part.nodes.is_empty() {
        "(null)".to_string()
    } else {
        compress_hostlist(&part.nodes)
    };
    r.push(&format!("Nodes={members}"));
    r.end_line();
    r.push(&format!(
        "PriorityJobFactor={} PriorityTier={} RootOnly=NO ReqResv=NO OverSubscribe={}",
        part.priority_job_factor,
        part.priority_tier,
        if part.oversubscribe.is_empty() {
            "NO"
        } else {
            &part.oversubscribe
        }
    ));
    r.end_line();
    r.push("OverTimeLimit=NONE PreemptMode=OFF");
    r.end_line();
    let state = if part.state.is_empty() {
        "UNKNOWN"
    } else {
        part.state.as_str()
    };
    r.push(&format!(
        "State={state} TotalCPUs={} TotalNodes={} SelectTypeParameters=NONE",
        part.total_cpus, part.total_nodes
    ));
    r.end_line();
    r.push("JobDefaults=(null)");
    r.end_line();
    r.push("DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED");
    r.end_line();
    let mem: u64 = nodes
        .iter()
        .filter(|n| part.nodes.contains(&n.name))
        .map(|n| n.real_memory_mb)
        .sum();
    r.push(&format!(
        "TRES={}",
        tres(part.total_cpus, mem, part.total_nodes)
    ));
    let mut out = r.out;
    out.push_str(if oneliner { "\n" } else { "\n\n" });
    out
}

/// `scontrol ping` (src/scontrol/scontrol.c `_print_ping`): one line per replica in the given
/// order. Slurm names controllers by position (`primary`, then `backup` when there are exactly
/// two, else `backup1`, `backup2`, …); drover's primary is the replica that answers as leader,
/// and the others are numbered in order. With no leader, the first replica is the primary.
pub fn scontrol_ping_lines(replies: &[(String, Option<PingReply>)]) -> String {
    let leader = replies
        .iter()
        .position(|(_, r)| r.as_ref().is_some_and(|r| r.is_leader))
        .unwrap_or(0);
    let mut out = String::new();
    let mut backup_no = 0;
    for (i, (addr, reply)) in replies.iter().enumerate() {
        let mode = if i == leader {
            "primary".to_string()
        } else {
            backup_no += 1;
            if replies.len() == 2 {
                "backup".to_string()
            } else {
                format!("backup{backup_no}")
            }
        };
        let state = if reply.is_some() { "UP" } else { "DOWN" };
        let _ = writeln!(out, "Slurmctld({mode}) at {addr} is {state}");
    }
    out
}

/// The banner Slurm adds after `scontrol ping` output when run as root and a controller is down.
pub const PING_DOWN_BANNER: &str = "*****************************************\n** RESTORE SLURMCTLD DAEMON TO SERVICE **\n*****************************************\n";

/// Stable ordering helper for callers that sort nodes by name the way Slurm's hostlist does.
pub fn hostname_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let digits = s.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (p, n) = s.split_at(s.len() - digits);
        (p.to_string(), n.parse::<u64>().ok())
    };
    split(a).cmp(&split(b))
}

#[cfg(test)]
pub(crate) mod testdata {
    use drover_proto::{JobInfo, NodeInfo, PartitionInfo};

    /// The recorded output of `command` in a golden file of real Slurm 22.05.8 (see
    /// crates/cli/tests/golden/slurm-22.05.8/README.md): the text between `=== command` and
    /// `--- rc=`.
    pub(crate) fn golden(file: &str, command: &str) -> String {
        let text = match file {
            "squeue" => include_str!("../tests/golden/slurm-22.05.8/squeue.txt"),
            "sinfo" => include_str!("../tests/golden/slurm-22.05.8/sinfo.txt"),
            "scancel" => include_str!("../tests/golden/slurm-22.05.8/scancel.txt"),
            "sacct" => include_str!("../tests/golden/slurm-22.05.8/sacct.txt"),
            "sacctmgr" => include_str!("../tests/golden/slurm-22.05.8/sacctmgr.txt"),
            _ => include_str!("../tests/golden/slurm-22.05.8/scontrol.txt"),
        };
        let start = text
            .find(&format!("=== {command}\n"))
            .unwrap_or_else(|| panic!("no `{command}` in {file}.txt"));
        let body = &text[start + command.len() + 5..];
        body[..body.find("--- rc=").expect("section end")].to_string()
    }

    /// 2026-11-26T08:55:48 UTC, the submit time of the jobs captured from Slurm 22.05.8.
    pub(crate) const T0: i64 = 1_795_683_348;

    pub(crate) fn job(id: u64, name: &str, state: &str, reason: &str, priority: u32) -> JobInfo {
        JobInfo {
            job_id: id,
            name: name.to_string(),
            user: "root".to_string(),
            partition: "bench".to_string(),
            state: state.to_string(),
            reason: reason.to_string(),
            num_nodes: 1,
            num_cpus: 1,
            num_tasks: 1,
            cpus_per_task: 1,
            submit_time: T0,
            eligible_time: T0,
            priority,
            work_dir: "/tmp/cli-gw".to_string(),
            command: "/tmp/cli-gw/job.sh".to_string(),
            submit_host: "localhost".to_string(),
            now: T0 + 1,
            // The capture's cluster ran with Slurm's JobRequeue=1 default.
            requeue: true,
            ..Default::default()
        }
    }

    /// The five jobs of the 22.05.8 capture (see `squeue_default_matches_slurm`).
    pub(crate) fn captured_jobs() -> Vec<JobInfo> {
        let mut running = job(1, "longname_job", "RUNNING", "None", 4_294_901_759);
        running.node_list = "n1".to_string();
        running.batch_host = "n1".to_string();
        running.start_time = T0 + 1;
        running.now = T0 + 2;
        running.time_limit_min = Some(10);
        let mut big = job(2, "longname_job", "PENDING", "Resources", 4_294_901_758);
        big.num_nodes = 4;
        big.nodes_max = 4;
        let mut wrap4 = job(3, "wrap", "PENDING", "Priority", 4_294_901_757);
        wrap4.num_nodes = 4;
        let held = job(4, "wrap", "PENDING", "JobHeldUser", 0);
        let later = job(5, "longname_job", "PENDING", "Priority", 4_294_901_756);
        let done = job(6, "done", "COMPLETED", "None", 1);
        vec![running, held, later, big, done, wrap4]
    }

    pub(crate) fn node(name: &str, state: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            addr: "127.0.0.1".to_string(),
            cpus: 16,
            real_memory_mb: 64_000,
            state: state.to_string(),
            partitions: vec!["bench".to_string()],
            ..Default::default()
        }
    }

    pub(crate) fn bench_partition() -> PartitionInfo {
        PartitionInfo {
            name: "bench".to_string(),
            nodes: ["n1", "n2", "n3", "n4"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            is_default: true,
            state: "UP".to_string(),
            priority_tier: 1,
            priority_job_factor: 1,
            total_cpus: 64,
            total_nodes: 4,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::*;
    use super::*;

    #[test]
    fn squeue_elapsed_forms() {
        // src/squeue/print.c `_print_secs`.
        assert_eq!(elapsed(0), "0:00");
        assert_eq!(elapsed(59), "0:59");
        assert_eq!(elapsed(3600), "1:00:00");
        assert_eq!(elapsed(86_400 + 61), "1-00:01:01");
        assert_eq!(elapsed(-1), "INVALID");
        assert_eq!(elapsed(YEAR_SECONDS + 1), "INVALID");
        // Captured 22.05.8: `-t 1-2:03:04` shows TIME_LIMIT 1-02:04:00.
        assert_eq!(elapsed(26 * 3600 * 60 / 60 + 4 * 60), "1-02:04:00");
    }

    #[test]
    fn compact_job_states() {
        for (long, short) in [
            ("PENDING", "PD"),
            ("RUNNING", "R"),
            ("COMPLETING", "CG"),
            ("COMPLETED", "CD"),
            ("CANCELLED", "CA"),
            ("FAILED", "F"),
            ("TIMEOUT", "TO"),
            ("NODE_FAIL", "NF"),
            ("OUT_OF_MEMORY", "OOM"),
            ("PREEMPTED", "PR"),
        ] {
            assert_eq!(job_state_compact(long), short);
        }
    }

    #[test]
    fn hostlists_compress_sorted() {
        assert_eq!(compress_hostlist(&["n3", "n1", "n2", "n5"]), "n[1-3,5]");
        assert_eq!(compress_hostlist(&["n1"]), "n1");
        assert_eq!(
            compress_hostlist(&["node01", "node02", "node10", "login"]),
            "login,node[01-02,10]"
        );
        assert_eq!(compress_hostlist(&["n[1-2],n4", "n3"]), "n[1-4]");
        assert_eq!(compress_hostlist::<&str>(&[]), "");
    }

    #[test]
    fn scontrol_show_job_running() {
        // Slurm 22.05.8 `scontrol show job 1` captured, turned into the 25.11 layout of
        // src/scontrol/info_job.c (ReqTRES/AllocTRES instead of TRES, LicensesAlloc=,
        // SubmitLine=, no Power=, xstrtrim then "\n\n").
        let jobs = captured_jobs();
        let expected = "\
JobId=1 JobName=longname_job
   UserId=root(0) GroupId=0(0) MCS_label=N/A
   Priority=4294901759 Nice=0 Account=(null) QOS=normal
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   RunTime=00:00:01 TimeLimit=00:10:00 TimeMin=N/A
   SubmitTime=2026-11-26T08:55:48 EligibleTime=2026-11-26T08:55:48
   AccrueTime=2026-11-26T08:55:48
   StartTime=2026-11-26T08:55:49 EndTime=2026-11-26T09:05:49 Deadline=N/A
   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-26T08:55:49 Scheduler=Main
   Partition=bench AllocNode:Sid=localhost:0
   ReqNodeList=(null) ExcNodeList=(null)
   NodeList=n1
   BatchHost=n1
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   ReqTRES=cpu=1,node=1,billing=1
   AllocTRES=cpu=1,node=1,billing=1
   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
   MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0
   Features=(null) DelayBoot=00:00:00
   OverSubscribe=OK Contiguous=0 Licenses=(null) LicensesAlloc=(null) Network=(null)
   Command=/tmp/cli-gw/job.sh
   SubmitLine=(null)
   WorkDir=/tmp/cli-gw
   StdErr=/tmp/cli-gw/slurm-1.out
   StdIn=/dev/null
   StdOut=/tmp/cli-gw/slurm-1.out

";
        let mut running = jobs[0].clone();
        running.end_time = T0 + 1 + 600;
        assert_eq!(scontrol_show_job(&running, 0, false, false), expected);
    }

    #[test]
    fn scontrol_show_job_oneliner_pending() {
        // 22.05.8 `scontrol -o show job 2`, in the 25.11 layout; `NumNodes=4-4` for a pending
        // job with a maximum, `EndTime=Unknown`, one line ending in "\n".
        let jobs = captured_jobs();
        let mut pending = jobs[3].clone();
        pending.num_cpus = 4;
        pending.num_tasks = 4;
        pending.time_limit_min = Some(10);
        pending.mem_per_node_mb = 64_000;
        pending.stdout = "out-%j-%x.txt".to_string();
        let out = scontrol_show_job(&pending, 0, true, false);
        assert_eq!(
            out,
            "JobId=2 JobName=longname_job UserId=root(0) GroupId=0(0) MCS_label=N/A Priority=4294901758 Nice=0 Account=(null) QOS=normal JobState=PENDING Reason=Resources Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=00:10:00 TimeMin=N/A SubmitTime=2026-11-26T08:55:48 EligibleTime=2026-11-26T08:55:48 AccrueTime=2026-11-26T08:55:48 StartTime=Unknown EndTime=Unknown Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-26T08:55:48 Scheduler=Main Partition=bench AllocNode:Sid=localhost:0 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=4-4 NumCPUs=4 NumTasks=4 CPUs/Task=1 ReqB:S:C:T=0:0:*:* ReqTRES=cpu=4,mem=250G,node=4,billing=4 AllocTRES=(null) Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=64000M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) LicensesAlloc=(null) Network=(null) Command=/tmp/cli-gw/job.sh SubmitLine=(null) WorkDir=/tmp/cli-gw StdErr=/tmp/cli-gw/out-2-longname_job.txt StdIn=/dev/null StdOut=/tmp/cli-gw/out-2-longname_job.txt\n"
        );
    }

    /// srun's own allocation: `BatchFlag=0`, and no output file names (its output is
    /// srun's); the record still ends as every record does.
    #[test]
    fn scontrol_show_job_without_a_batch_script() {
        let jobs = captured_jobs();
        let mut job = jobs[0].clone();
        job.no_batch_script = true;
        job.command = "hostname".to_string();
        let out = scontrol_show_job(&job, 0, true, false);
        assert!(out.contains(" BatchFlag=0 "), "{out}");
        assert!(
            out.ends_with(" Command=hostname SubmitLine=(null) WorkDir=/tmp/cli-gw\n"),
            "{out}"
        );
        let out = scontrol_show_job(&job, 0, false, false);
        assert!(out.ends_with("   WorkDir=/tmp/cli-gw\n\n"), "{out}");
        assert!(!out.contains("StdOut="), "{out}");
    }

    #[test]
    fn scontrol_show_job_details_layout() {
        // Slurm 22.05.8 `scontrol show job -d 1` / `scontrol -d -o show job 1`: -d adds
        // DerivedExitCode after ExitCode and, for a job on nodes, JOB_GRES then one
        // `  Nodes=` line per node (CPU_IDs are not known to drover's controller).
        let mut running = captured_jobs()[0].clone();
        running.shares = vec![drover_proto::JobNodeShare {
            node: "n1".to_string(),
            cpus: 1,
            mem_mb: 0,
            gpus: vec![],
        }];
        let out = scontrol_show_job(&running, 0, false, true);
        assert!(
            out.contains("ExitCode=0:0\n   DerivedExitCode=0:0\n   RunTime="),
            "{out}"
        );
        assert!(out.contains("CoreSpec=*\n   JOB_GRES=(null)\n     Nodes=n1 CPU_IDs=N/A Mem=0 GRES=\n   MinCPUsNode=1"), "{out}");
        let one = scontrol_show_job(&running, 0, true, true);
        assert!(
            one.contains(
                " CoreSpec=* JOB_GRES=(null)   Nodes=n1 CPU_IDs=N/A Mem=0 GRES= MinCPUsNode=1 "
            ),
            "{one}"
        );
        // A pending job has no node lines.
        let pending = scontrol_show_job(&captured_jobs()[3], 0, false, true);
        assert!(pending.contains("DerivedExitCode=0:0") && !pending.contains("JOB_GRES"));
    }

    #[test]
    fn scontrol_job_details() {
        let mut j = job(9, "x", "FAILED", "NonZeroExitCode", 1);
        j.exit_code = 3;
        j.start_time = T0;
        j.end_time = T0 + 90_061;
        j.stdout = "/abs/%5j.%%.%u".to_string();
        j.stderr = "e\\%j".to_string();
        j.mem_per_cpu_mb = 1024;
        let out = scontrol_show_job(&j, 3600, false, false);
        assert!(out.contains("\n   ExitCode=") || out.contains(" ExitCode=3:0"));
        assert!(out.contains("RunTime=1-01:01:01 TimeLimit=UNLIMITED"));
        assert!(
            out.contains("SubmitTime=2026-11-26T09:55:48"),
            "utc offset applied"
        );
        assert!(out.contains("MinMemoryCPU=1G"));
        assert!(out.contains("StdOut=/abs/00009.%.root\n"));
        assert!(out.contains("StdErr=/tmp/cli-gw/e%j\n"));
        assert!(out.ends_with("StdOut=/abs/00009.%.root\n\n"));
    }

    #[test]
    fn scontrol_show_node_layout() {
        // src/api/node_info.c (25.11): trailing blanks after "CoresPerSocket=1", "OS=…" and
        // "Partitions=…" exactly as in the 22.05.8 capture of `scontrol show node n1`.
        let mut n = node("n1", "MIXED");
        n.arch = "x86_64".to_string();
        n.alloc_cpus = 1;
        n.version = "0.1.0".to_string();
        n.os = "Linux 6.18".to_string();
        n.boot_time = T0 - 295;
        n.registered_at = T0 - 2;
        let expected = "\
NodeName=n1 Arch=x86_64 CoresPerSocket=1 
   CPUAlloc=1 CPUEfctv=16 CPUTot=16 CPULoad=0.00
   AvailableFeatures=(null)
   ActiveFeatures=(null)
   Gres=(null)
   NodeAddr=127.0.0.1 NodeHostName=n1 Version=0.1.0
   OS=Linux 6.18 
   RealMemory=64000 AllocMem=0 FreeMem=N/A Sockets=16 Boards=1
   State=MIXED ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Partitions=bench 
   BootTime=2026-11-26T08:50:53 SlurmdStartTime=2026-11-26T08:55:46
   LastBusyTime=Unknown ResumeAfterTime=None
   CfgTRES=cpu=16,mem=62.50G,billing=16
   AllocTRES=cpu=1
   CurrentWatts=n/a AveWatts=n/a

";
        assert_eq!(scontrol_show_node(&n, 0, false), expected);
        let mut d = node("n2", "IDLE+DRAIN");
        d.reason = "disk bad".to_string();
        let one = scontrol_show_node(&d, 0, true);
        assert!(
            one.starts_with("NodeName=n2 CoresPerSocket=1  CPUAlloc=0 "),
            "{one}"
        );
        assert!(one.ends_with("State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=bench  BootTime=None SlurmdStartTime=None LastBusyTime=Unknown ResumeAfterTime=None CfgTRES=cpu=16,mem=62.50G,billing=16 AllocTRES= CurrentWatts=n/a AveWatts=n/a Reason=disk bad\n"), "{one}");
    }

    #[test]
    fn scontrol_show_partition_layout() {
        // 22.05.8 capture of `scontrol show partition` plus the two 25.11 additions
        // (ExclusiveTopo=, MaxCPUsPerSocket=) from src/api/partition_info.c.
        let nodes: Vec<NodeInfo> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| node(n, "IDLE"))
            .collect();
        let expected = "\
PartitionName=bench
   AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL
   AllocNodes=ALL Default=YES QoS=N/A
   DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO ExclusiveTopo=NO GraceTime=0 Hidden=NO
   MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED MaxCPUsPerSocket=UNLIMITED
   Nodes=n[1-4]
   PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO
   OverTimeLimit=NONE PreemptMode=OFF
   State=UP TotalCPUs=64 TotalNodes=4 SelectTypeParameters=NONE
   JobDefaults=(null)
   DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED
   TRES=cpu=64,mem=250G,node=4,billing=64

";
        assert_eq!(
            scontrol_show_partition(&bench_partition(), &nodes, false),
            expected
        );
        let mut p = bench_partition();
        p.default_time_min = Some(90);
        p.max_time_min = Some(2 * 24 * 60);
        p.max_nodes = 2;
        let one = scontrol_show_partition(&p, &[], true);
        assert!(one.contains(" DefaultTime=01:30:00 "));
        assert!(one.contains(" MaxNodes=2 MaxTime=2-00:00:00 "));
        assert!(one.ends_with(" TRES=cpu=64,node=4,billing=64\n"));
    }

    #[test]
    fn ping_lines() {
        // 22.05.8 capture: "Slurmctld(primary) at ctl1 is UP"; naming rule from
        // src/scontrol/scontrol.c `_print_ping`.
        let up = |leader: bool| {
            Some(PingReply {
                is_leader: leader,
                ..Default::default()
            })
        };
        assert_eq!(
            scontrol_ping_lines(&[("ctl1".to_string(), up(true))]),
            "Slurmctld(primary) at ctl1 is UP\n"
        );
        assert_eq!(
            scontrol_ping_lines(&[("a:1".to_string(), None), ("b:1".to_string(), up(true))]),
            "Slurmctld(backup) at a:1 is DOWN\nSlurmctld(primary) at b:1 is UP\n"
        );
        assert_eq!(
            scontrol_ping_lines(&[
                ("a".to_string(), up(false)),
                ("b".to_string(), up(true)),
                ("c".to_string(), None)
            ]),
            "Slurmctld(backup1) at a is UP\nSlurmctld(primary) at b is UP\nSlurmctld(backup2) at c is DOWN\n"
        );
    }

    #[test]
    fn timestamps_and_units() {
        assert_eq!(timestamp(0, 0, "Unknown"), "Unknown");
        assert_eq!(timestamp(T0, 0, "N/A"), "2026-11-26T08:55:48");
        assert_eq!(timestamp(951_782_400, 0, "-"), "2000-02-29T00:00:00");
        assert_eq!(mem_units(100, true), "100M");
        assert_eq!(mem_units(1536, true), "1536M");
        assert_eq!(mem_units(64_000, false), "62.50G");
        assert_eq!(mem_units(256_000, false), "250G");
        assert_eq!(secs2time(5), "00:00:05");
        assert_eq!(limit(Some(26 * 60 + 4)), "1-02:04:00");
    }
}
