//! `sacct`: options, the selection of records and Slurm's output (src/sacct/options.c,
//! print.c, src/common/print_fields.c), pure. The records come from the replicated state
//! (`ListRecords`); this module never talks to the cluster.
//!
//! Layout rules (print_fields.c): every field has a width (`fields[]` in src/sacct/sacct.c,
//! 24.11); a positive width right-justifies, a negative one left-justifies, `name%N` and
//! `name%-N` override it. Each value is followed by one space; a string that does not fit is
//! cut and its last kept character becomes `+`; numbers are never cut; dates are cut without a
//! `+`. `-p` ends every field with `|` (or `--delimiter`), `-P` puts it between fields only.

use crate::getopt::{self, long, opt, Arg, Opt};
use crate::squeue::{json_meta, json_number, resolve_user};
use drover_proto::{JobRecord, SrunStepRecord, StepRecord};
use drover_scheduler::time::{format_limit, format_timestamp, parse_begin};
use drover_scheduler::units::{convert_num_unit, Conversion};

/// src/sacct/sacct.h.
pub const DEFAULT_FIELDS: &str = "jobid,jobname,partition,account,alloccpus,state,exitcode";
pub const BRIEF_FIELDS: &str = "jobid,state,exitcode";
/// `-c`: the job completion log's fields (options.c `_init_params`, `opt_completion`).
pub const COMPLETION_FIELDS: &str = "jobid,uid,jobname,partition,nnodes,nodelist,state,end";
pub const BRIEF_COMPLETION_FIELDS: &str = "jobid,uid,state";
pub const LONG_COMPLETION_FIELDS: &str =
    "jobid,uid,jobname,partition,nnodes,nodelist,state,start,end,timelimit";
pub const LONG_FIELDS: &str = "jobid,jobidraw,jobname,partition,maxvmsize,maxvmsizenode,maxvmsizetask,avevmsize,maxrss,maxrssnode,maxrsstask,averss,maxpages,maxpagesnode,maxpagestask,avepages,mincpu,mincpunode,mincputask,avecpu,ntasks,alloccpus,elapsed,state,exitcode,avecpufreq,reqcpufreqmin,reqcpufreqmax,reqcpufreqgov,reqmem,consumedenergy,maxdiskread,maxdiskreadnode,maxdiskreadtask,avediskread,maxdiskwrite,maxdiskwritenode,maxdiskwritetask,avediskwrite,reqtres,alloctres,tresusageinave,tresusageinmax,tresusageinmaxn,tresusageinmaxt,tresusageinmin,tresusageinminn,tresusageinmint,tresusageintot,tresusageoutmax,tresusageoutmaxn,tresusageoutmaxt,tresusageoutave,tresusageouttot";

/// How a field's value is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Cut with `+`.
    Str,
    /// Never cut; blank when unset.
    Num,
    /// `YYYY-MM-DDTHH:MM:SS`, `Unknown` when unset; cut without `+`.
    Date,
    /// `[D-]HH:MM:SS`; never cut.
    Secs,
}

/// src/sacct/sacct.c `fields[]` (Slurm 24.11): name, default width, kind. The order matters:
/// a requested name picks the first field it is a case-insensitive prefix of.
const FIELDS: &[(&str, i32, Kind)] = &[
    ("Account", 10, Kind::Str),
    ("AdminComment", 15, Kind::Str),
    ("AllocCPUS", 10, Kind::Num),
    ("AllocNodes", 10, Kind::Str),
    ("AllocTRES", 10, Kind::Str),
    ("AssocID", 7, Kind::Num),
    ("AveCPU", 10, Kind::Str),
    ("AveCPUFreq", 10, Kind::Str),
    ("AveDiskRead", 14, Kind::Str),
    ("AveDiskWrite", 14, Kind::Str),
    ("AvePages", 10, Kind::Str),
    ("AveRSS", 10, Kind::Str),
    ("AveVMSize", 10, Kind::Str),
    ("BlockID", 16, Kind::Str),
    ("Cluster", 10, Kind::Str),
    ("Comment", 14, Kind::Str),
    ("Constraints", 19, Kind::Str),
    ("ConsumedEnergy", 14, Kind::Str),
    ("ConsumedEnergyRaw", 17, Kind::Num),
    ("Container", 19, Kind::Str),
    ("CPUTime", 10, Kind::Secs),
    ("CPUTimeRAW", 10, Kind::Num),
    ("DBIndex", -21, Kind::Num),
    ("DerivedExitCode", 15, Kind::Str),
    ("Elapsed", 10, Kind::Secs),
    ("ElapsedRaw", 10, Kind::Num),
    ("Eligible", 19, Kind::Date),
    ("End", 19, Kind::Date),
    ("ExitCode", 8, Kind::Str),
    ("Extra", 14, Kind::Str),
    ("FailedNode", 8, Kind::Str),
    ("Flags", 19, Kind::Str),
    ("GID", 6, Kind::Num),
    ("Group", 9, Kind::Str),
    ("JobID", -12, Kind::Str),
    ("JobIDRaw", -12, Kind::Str),
    ("JobName", 10, Kind::Str),
    ("Layout", 9, Kind::Str),
    ("Licenses", 10, Kind::Str),
    ("MaxDiskRead", 12, Kind::Str),
    ("MaxDiskReadNode", 15, Kind::Str),
    ("MaxDiskReadTask", 15, Kind::Num),
    ("MaxDiskWrite", 12, Kind::Str),
    ("MaxDiskWriteNode", 16, Kind::Str),
    ("MaxDiskWriteTask", 16, Kind::Num),
    ("MaxPages", 8, Kind::Str),
    ("MaxPagesNode", 12, Kind::Str),
    ("MaxPagesTask", 14, Kind::Num),
    ("MaxRSS", 10, Kind::Str),
    ("MaxRSSNode", 10, Kind::Str),
    ("MaxRSSTask", 10, Kind::Num),
    ("MaxVMSize", 10, Kind::Str),
    ("MaxVMSizeNode", 14, Kind::Str),
    ("MaxVMSizeTask", 14, Kind::Num),
    ("McsLabel", 12, Kind::Str),
    ("MinCPU", 10, Kind::Str),
    ("MinCPUNode", 10, Kind::Str),
    ("MinCPUTask", 10, Kind::Num),
    ("NCPUS", 10, Kind::Num),
    ("NNodes", 8, Kind::Num),
    ("NodeList", 15, Kind::Str),
    ("NTasks", 8, Kind::Num),
    ("Partition", 10, Kind::Str),
    ("Planned", 10, Kind::Secs),
    ("PlannedCPU", 10, Kind::Secs),
    ("PlannedCPURAW", 13, Kind::Num),
    ("Priority", 10, Kind::Num),
    ("QOS", 10, Kind::Str),
    ("QOSRAW", 6, Kind::Num),
    ("QOSREQ", 10, Kind::Str),
    ("Reason", 22, Kind::Str),
    ("ReqCPUFreq", 10, Kind::Str),
    ("ReqCPUFreqGov", 13, Kind::Str),
    ("ReqCPUFreqMax", 13, Kind::Str),
    ("ReqCPUFreqMin", 13, Kind::Str),
    ("ReqCPUS", 8, Kind::Num),
    ("ReqMem", 10, Kind::Str),
    ("ReqNodes", 8, Kind::Str),
    ("ReqTRES", 10, Kind::Str),
    ("Reservation", 20, Kind::Str),
    ("ReservationId", 8, Kind::Num),
    ("Restarts", 8, Kind::Num),
    ("SLUID", 14, Kind::Str),
    ("Start", 19, Kind::Date),
    ("State", 10, Kind::Str),
    ("StdErr", 20, Kind::Str),
    ("StdIn", 20, Kind::Str),
    ("StdOut", 20, Kind::Str),
    ("Submit", 19, Kind::Date),
    ("SubmitLine", 20, Kind::Str),
    ("Suspended", 10, Kind::Secs),
    ("SystemComment", 15, Kind::Str),
    ("SystemCPU", 10, Kind::Str),
    ("Timelimit", 10, Kind::Str),
    ("TimelimitRaw", 10, Kind::Str),
    ("TotalCPU", 10, Kind::Str),
    ("TRESUsageInAve", 14, Kind::Str),
    ("TRESUsageInMax", 14, Kind::Str),
    ("TRESUsageInMaxNode", 18, Kind::Str),
    ("TRESUsageInMaxTask", 18, Kind::Str),
    ("TRESUsageInMin", 14, Kind::Str),
    ("TRESUsageInMinNode", 18, Kind::Str),
    ("TRESUsageInMinTask", 18, Kind::Str),
    ("TRESUsageInTot", 14, Kind::Str),
    ("TRESUsageOutAve", 15, Kind::Str),
    ("TRESUsageOutMax", 15, Kind::Str),
    ("TRESUsageOutMaxNode", 19, Kind::Str),
    ("TRESUsageOutMaxTask", 19, Kind::Str),
    ("TRESUsageOutMin", 15, Kind::Str),
    ("TRESUsageOutMinNode", 19, Kind::Str),
    ("TRESUsageOutMinTask", 19, Kind::Str),
    ("TRESUsageOutTot", 15, Kind::Str),
    ("UID", 6, Kind::Num),
    ("User", 9, Kind::Str),
    ("UserCPU", 10, Kind::Str),
    ("WCKey", 10, Kind::Str),
    ("WCKeyID", 10, Kind::Num),
    ("WorkDir", 20, Kind::Str),
];

const OPTIONS: &[Opt] = &[
    opt('a', "allusers", Arg::No, "allusers"),
    opt('A', "accounts", Arg::Required, "accounts"),
    opt('X', "allocations", Arg::No, "allocations"),
    opt('b', "brief", Arg::No, "brief"),
    opt('B', "batch-script", Arg::No, "batch-script"),
    opt('c', "completion", Arg::No, "completion"),
    opt('C', "constraints", Arg::Required, "constraints"),
    long("delimiter", Arg::Required, "delimiter"),
    opt('D', "duplicates", Arg::No, "duplicates"),
    long("federation", Arg::No, "federation"),
    opt('e', "helpformat", Arg::No, "helpformat"),
    long("help-fields", Arg::No, "helpformat"),
    long("helpreason", Arg::No, "helpreason"),
    opt('E', "endtime", Arg::Required, "endtime"),
    long("env-vars", Arg::No, "env-vars"),
    opt('f', "file", Arg::Required, "file"),
    opt('F', "flags", Arg::Required, "flags"),
    opt('g', "gid", Arg::Required, "group"),
    long("group", Arg::Required, "group"),
    opt('h', "help", Arg::No, "help"),
    long("local", Arg::No, "local"),
    long("name", Arg::Required, "name"),
    opt('i', "nnodes", Arg::Required, "nnodes"),
    opt('I', "ncpus", Arg::Required, "ncpus"),
    opt('j', "jobs", Arg::Required, "jobs"),
    opt('k', "timelimit-min", Arg::Required, "timelimit-min"),
    opt('K', "timelimit-max", Arg::Required, "timelimit-max"),
    opt('l', "long", Arg::No, "long"),
    opt('L', "allclusters", Arg::No, "allclusters"),
    opt('M', "cluster", Arg::Required, "clusters"),
    long("clusters", Arg::Required, "clusters"),
    opt('N', "nodelist", Arg::Required, "nodelist"),
    long("noconvert", Arg::No, "noconvert"),
    long("units", Arg::Required, "units"),
    opt('n', "noheader", Arg::No, "noheader"),
    long("fields", Arg::Required, "format"),
    opt('o', "format", Arg::Required, "format"),
    opt('p', "parsable", Arg::No, "parsable"),
    opt('P', "parsable2", Arg::No, "parsable2"),
    opt('q', "qos", Arg::Required, "qos"),
    opt('r', "partition", Arg::Required, "partition"),
    opt('R', "reason", Arg::Required, "reason"),
    opt('s', "state", Arg::Required, "state"),
    opt('S', "starttime", Arg::Required, "starttime"),
    opt('T', "truncate", Arg::No, "truncate"),
    opt('t', "", Arg::No, "allocations"),
    opt('u', "uid", Arg::Required, "user"),
    long("use-local-uid", Arg::No, "use-local-uid"),
    opt('U', "usage", Arg::No, "usage"),
    long("user", Arg::Required, "user"),
    opt('v', "verbose", Arg::No, "verbose"),
    opt('V', "version", Arg::No, "version"),
    opt('W', "wckeys", Arg::Required, "wckeys"),
    long("whole-hetjob", Arg::Optional, "whole-hetjob"),
    opt('x', "associations", Arg::Required, "associations"),
    long("json", Arg::No, "json"),
    long("yaml", Arg::No, "yaml"),
    long("array", Arg::No, "array"),
];

pub const USAGE: &str = "Usage: sacct [options]
\tUse --help for help
";

pub const HELP: &str = "sacct [<OPTION>]
    Valid <OPTION> values are:
     -a, --allusers:        Display jobs for all users. By default, only the
                            current user's jobs are displayed.  If ran by user
                            root this is the default.
     -A, --accounts:        Use this comma separated list of accounts to select
                            jobs to display.  By default, all accounts are
                            selected.
     -b, --brief:           Equivalent to '--format=jobstep,state,error'.
     --delimiter:           ASCII characters used to separate the fields when
                            specifying the -p or -P options. The default
                            delimiter is a '|'. This option is ignored if -p or
                            -P options are not specified.
     -e, --helpformat:      Print a list of fields that can be specified with
                            the '--format' option
     -E, --endtime:         Select jobs eligible before this time.
     -h, --help:            Print this description of use.
     -j, --jobs:            Format is <job(.step)>. Display information about
                            this job or comma-separated list of jobs. The
                            default is all jobs. Adding .step will display the
                            specific job step of that job. (A step id of
                            'batch' will display the information about the
                            batch step.)
     -l, --long:            Equivalent to specifying
                            '--format=jobid,jobidraw,jobname,partition,maxvmsize,...'
     -M, --clusters:        Only send data about these clusters. -1 for all
                            clusters.
     --name:                Display jobs that have any of these name(s).
     -n, --noheader:        No header will be added to the beginning of the
                            output. The default is to print a header.
     -o, --format:          Comma separated list of fields. (use \"--helpformat\"
                            for a list of available fields).
     -p, --parsable:        output will be '|' delimited with a '|' at the end
     -P, --parsable2:       output will be '|' delimited without a '|' at the end
     -r, --partition:       Comma separated list of partitions to select jobs and
                            job steps from. The default is all partitions.
     -s, --state:           Select jobs based on their current state or the
                            state they were in during the time period given:
                            running (r), completed (cd), failed (f),
                            timeout (to), resizing (rs), deadline (dl) and
                            node_fail (nf).
     -S, --starttime:       Select jobs eligible after this time.  Default is
                            00:00:00 of the current day, unless '-s' is set then
                            the default is 'now'.
     -u, --uid, --user:     Use this comma separated list of uids or user names
                            to select jobs to display.  By default, the running
                            user's uid is used.
     -V, --version:         Print version.
     -X, --allocations:     Only show statistics relevant to the job allocation
                            itself, not taking steps into consideration.
     --json:                Produce JSON output
";

/// What to print instead of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Help,
    Usage,
    Version,
    HelpFields,
    HelpReasons,
}

/// What sacct prints for each selected job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Show {
    /// The table (or `--json`).
    #[default]
    Records,
    /// `-B`: the batch script, as kept by the accounting store.
    Script,
    /// `--env-vars`: the batch job's environment, as kept.
    Environment,
}

/// Separator style (print_fields.c `print_fields_parsable_print`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Parsable {
    #[default]
    No,
    /// `-p`: after every field.
    Ending(String),
    /// `-P`: between fields.
    NoEnding(String),
}

/// One requested column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub width: i32,
    kind: Kind,
}

/// A `-j` entry: a job (`12`), an array task (`12_3`) or a step (`12.batch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSel {
    pub job: u64,
    pub task: Option<u32>,
    /// `Some("batch")`: only that step.
    pub step: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    pub special: Option<Special>,
    pub json: bool,
    pub jobs: Vec<JobSel>,
    pub columns: Vec<Column>,
    pub parsable: Parsable,
    pub noheader: bool,
    pub no_steps: bool,
    pub all_users: bool,
    /// `None`: every user.
    pub uids: Option<Vec<u32>>,
    pub accounts: Vec<String>,
    pub names: Vec<String>,
    pub partitions: Vec<String>,
    /// Long state names.
    pub states: Vec<String>,
    /// The time window, unix seconds.
    pub start: i64,
    pub end: i64,
    /// `-M` names; `None`: the local cluster.
    pub clusters: Option<Vec<String>>,
    /// `-N`: jobs that ran on any of these nodes.
    pub nodes: Vec<String>,
    /// `-q`: QOS names.
    pub qos: Vec<String>,
    /// `-g`: group ids.
    pub gids: Vec<u32>,
    /// `-i`, `-I`: node and CPU counts, `min..=max`.
    pub nnodes: Option<(u32, u32)>,
    pub ncpus: Option<(u32, u32)>,
    /// `-k`/`-K`: time limits in minutes, `min..=max` (`-k` alone: exactly).
    pub timelimit: Option<(u64, u64)>,
    /// `--units`, `--noconvert`: how sizes print.
    pub conversion: Conversion,
    /// `-T`: start and end times cut to the window.
    pub truncate: bool,
    /// `-c`: the completion log (ended jobs, no steps).
    pub completion: bool,
    /// `-R`: reasons (Slurm's spelling).
    pub reasons: Vec<String>,
    /// `-C`: features every listed job asked for.
    pub constraints: Vec<String>,
    pub show: Show,
}

/// `N` or `min-max` (sacct's `-i`/`-I`).
fn count_range(v: &str, what: &str) -> Result<(u32, u32), String> {
    let bad = || format!("sacct: error: Invalid {what} range: {v} (give N or MIN-MAX)\n");
    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
    let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A group name from /etc/group, or a number.
fn resolve_group(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for line in groups.lines() {
        let mut parts = line.split(':');
        if let (Some(group), Some(_), Some(gid)) = (parts.next(), parts.next(), parts.next()) {
            if group == name {
                return gid.parse().ok();
            }
        }
    }
    name.parse().ok()
}

fn split_list(v: &str) -> impl Iterator<Item = &str> + '_ {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// sacct's `-s` names (src/common/slurm_protocol_defs.c `job_state_num`): long or short.
const STATES: &[(&str, &str)] = &[
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
    ("REQUEUED", "RQ"),
    ("RESIZING", "RS"),
];

/// Slurm's job state reasons, in its order (src/common/job_state_reason.c; two names appear
/// twice there): `-R` takes any of them (case-insensitive), `--helpreason` lists them.
const REASONS: &[&str] = &[
    "None",
    "Prolog",
    "Priority",
    "Dependency",
    "Resources",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "PartitionDown",
    "PartitionInactive",
    "JobHeldAdmin",
    "JobHeldUser",
    "NvidiaImexChannels",
    "BeginTime",
    "Licenses",
    "AssociationJobLimit",
    "AssociationResourceLimit",
    "AssociationTimeLimit",
    "Reservation",
    "ReqNodeNotAvail",
    "SchedDefer",
    "PartitionDown",
    "NodeDown",
    "BadConstraints",
    "SystemFailure",
    "JobLaunchFailure",
    "NonZeroExitCode",
    "RaisedSignal",
    "TimeLimit",
    "InactiveLimit",
    "InvalidAccount",
    "InvalidQOS",
    "QOSUsageThreshold",
    "QOSJobLimit",
    "QOSResourceLimit",
    "QOSTimeLimit",
    "Cleaning",
    "QOSNotAllowed",
    "AccountNotAllowed",
    "DependencyNeverSatisfied",
    "QOSGrpCpuLimit",
    "QOSGrpCPUMinutesLimit",
    "QOSGrpCPURunMinutesLimit",
    "QOSGrpJobsLimit",
    "QOSGrpMemLimit",
    "QOSGrpNodeLimit",
    "QOSGrpSubmitJobsLimit",
    "QOSGrpWallLimit",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxCpuMinutesPerJobLimit",
    "QOSMaxNodePerJobLimit",
    "QOSMaxWallDurationPerJobLimit",
    "QOSMaxCpuPerUserLimit",
    "QOSMaxJobsPerUserLimit",
    "QOSMaxNodePerUserLimit",
    "QOSMaxSubmitJobPerUserLimit",
    "QOSMinCpuNotSatisfied",
    "AssocGrpCpuLimit",
    "AssocGrpCPUMinutesLimit",
    "AssocGrpCPURunMinutesLimit",
    "AssocGrpJobsLimit",
    "AssocGrpMemLimit",
    "AssocGrpNodeLimit",
    "AssocGrpSubmitJobsLimit",
    "AssocGrpWallLimit",
    "AssocMaxJobsLimit",
    "AssocMaxCpuPerJobLimit",
    "AssocMaxCpuMinutesPerJobLimit",
    "AssocMaxNodePerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
    "AssocMaxSubmitJobLimit",
    "JobHoldMaxRequeue",
    "JobArrayTaskLimit",
    "BurstBufferResources",
    "BurstBufferStageIn",
    "BurstBufferOperation",
    "AssocGrpUnknown",
    "AssocGrpUnknownMinutes",
    "AssocGrpUnknownRunMinutes",
    "AssocMaxUnknownPerJob",
    "AssocMaxUnknownPerNode",
    "AssocMaxUnknownMinutesPerJob",
    "AssocMaxCpuPerNode",
    "AssocGrpMemMinutes",
    "AssocGrpMemRunMinutes",
    "AssocMaxMemPerJob",
    "AssocMaxMemPerNode",
    "AssocMaxMemMinutesPerJob",
    "AssocGrpNodeMinutes",
    "AssocGrpNodeRunMinutes",
    "AssocMaxNodeMinutesPerJob",
    "AssocGrpEnergy",
    "AssocGrpEnergyMinutes",
    "AssocGrpEnergyRunMinutes",
    "AssocMaxEnergyPerJob",
    "AssocMaxEnergyPerNode",
    "AssocMaxEnergyMinutesPerJob",
    "AssocGrpGRES",
    "AssocGrpGRESMinutes",
    "AssocGrpGRESRunMinutes",
    "AssocMaxGRESPerJob",
    "AssocMaxGRESPerNode",
    "AssocMaxGRESMinutesPerJob",
    "AssocGrpLicense",
    "AssocGrpLicenseMinutes",
    "AssocGrpLicenseRunMinutes",
    "AssocMaxLicensePerJob",
    "AssocMaxLicenseMinutesPerJob",
    "AssocGrpBB",
    "AssocGrpBBMinutes",
    "AssocGrpBBRunMinutes",
    "AssocMaxBBPerJob",
    "AssocMaxBBPerNode",
    "AssocMaxBBMinutesPerJob",
    "QOSGrpUnknown",
    "QOSGrpUnknownMinutes",
    "QOSGrpUnknownRunMinutes",
    "QOSMaxUnknownPerJob",
    "QOSMaxUnknownPerNode",
    "QOSMaxUnknownPerUser",
    "QOSMaxUnknownMinutesPerJob",
    "QOSMinUnknown",
    "QOSMaxCpuPerNode",
    "QOSGrpMemoryMinutes",
    "QOSGrpMemoryRunMinutes",
    "QOSMaxMemoryPerJob",
    "QOSMaxMemoryPerNode",
    "QOSMaxMemoryPerUser",
    "QOSMaxMemoryMinutesPerJob",
    "QOSMinMemory",
    "QOSGrpNodeMinutes",
    "QOSGrpNodeRunMinutes",
    "QOSMaxNodeMinutesPerJob",
    "QOSMinNode",
    "QOSGrpEnergy",
    "QOSGrpEnergyMinutes",
    "QOSGrpEnergyRunMinutes",
    "QOSMaxEnergyPerJob",
    "QOSMaxEnergyPerNode",
    "QOSMaxEnergyPerUser",
    "QOSMaxEnergyMinutesPerJob",
    "QOSMinEnergy",
    "QOSGrpGRES",
    "QOSGrpGRESMinutes",
    "QOSGrpGRESRunMinutes",
    "QOSMaxGRESPerJob",
    "QOSMaxGRESPerNode",
    "QOSMaxGRESPerUser",
    "QOSMaxGRESMinutesPerJob",
    "QOSMinGRES",
    "QOSGrpLicense",
    "QOSGrpLicenseMinutes",
    "QOSGrpLicenseRunMinutes",
    "QOSMaxLicensePerJob",
    "QOSMaxLicensePerUser",
    "QOSMaxLicenseMinutesPerJob",
    "QOSMinLicense",
    "QOSGrpBB",
    "QOSGrpBBMinutes",
    "QOSGrpBBRunMinutes",
    "QOSMaxBBPerJob",
    "QOSMaxBBPerNode",
    "QOSMaxBBPerUser",
    "AssocMaxBBMinutesPerJob",
    "QOSMinBB",
    "DeadLine",
    "MaxBBPerAccount",
    "MaxCpuPerAccount",
    "MaxEnergyPerAccount",
    "MaxGRESPerAccount",
    "MaxNodePerAccount",
    "MaxLicensePerAccount",
    "MaxMemoryPerAccount",
    "MaxUnknownPerAccount",
    "MaxJobsPerAccount",
    "MaxSubmitJobsPerAccount",
    "PartitionConfig",
    "AccountingPolicy",
    "FedJobLock",
    "OutOfMemory",
    "MaxMemPerLimit",
    "AssocGrpBilling",
    "AssocGrpBillingMinutes",
    "AssocGrpBillingRunMinutes",
    "AssocMaxBillingPerJob",
    "AssocMaxBillingPerNode",
    "AssocMaxBillingMinutesPerJob",
    "QOSGrpBilling",
    "QOSGrpBillingMinutes",
    "QOSGrpBillingRunMinutes",
    "QOSMaxBillingPerJob",
    "QOSMaxBillingPerNode",
    "QOSMaxBillingPerUser",
    "QOSMaxBillingMinutesPerJob",
    "MaxBillingPerAccount",
    "QOSMinBilling",
    "ReservationDeleted",
    "ReservationInvalid",
    "Constraints",
    "MaxBBRunMinsPerAccount",
    "MaxBillingRunMinsPerAccount",
    "MaxCpuRunMinsPerAccount",
    "MaxEnergyRunMinsPerAccount",
    "MaxGRESRunMinsPerAccount",
    "MaxNodeRunMinsPerAccount",
    "MaxLicenseRunMinsPerAccount",
    "MaxMemoryRunMinsPerAccount",
    "MaxUnknownRunMinsPerAccount",
    "MaxBBRunMinsPerUser",
    "MaxBillingRunMinsPerUser",
    "MaxCpuRunMinsPerUser",
    "MaxEnergyRunMinsPerUser",
    "MaxGRESRunMinsPerUser",
    "MaxNodeRunMinsPerUser",
    "MaxLicenseRunMinsPerUser",
    "MaxMemoryRunMinsPerUser",
    "MaxUnknownRunMinsPerUser",
    "MaxPoweredUpNodes",
    "MpiPortsBusy",
];

fn parse_state(s: &str) -> Option<&'static str> {
    let up = s.to_ascii_uppercase();
    // sacct also takes "CANCELED" (slurm_protocol_defs.c) and "OOM".
    if up == "CANCELED" {
        return Some("CANCELLED");
    }
    STATES
        .iter()
        .find(|(l, c)| *l == up || *c == up)
        .map(|(l, _)| *l)
}

fn parse_job_sel(s: &str) -> Option<JobSel> {
    let (job_part, step) = match s.split_once('.') {
        Some((j, st)) => (j, Some(st.to_string())),
        None => (s, None),
    };
    let (id, task) = match job_part.split_once('_') {
        Some((id, t)) => (id, Some(t.parse::<u32>().ok()?)),
        None => (job_part, None),
    };
    let job = id.parse::<u64>().ok().filter(|&n| n > 0)?;
    Some(JobSel { job, task, step })
}

/// Parses a field list (`-o`, `SACCT_FORMAT`): names are case-insensitive prefixes, `%N`
/// sets a width (negative: left-justified), `ALL` is every field.
fn parse_fields(list: &str) -> Result<Vec<Column>, String> {
    let mut out = Vec::new();
    for item in list.split(',') {
        let item = item.trim_start();
        if item.is_empty() {
            continue;
        }
        let (name, width) = match item.split_once('%') {
            // atoi: leading digits (with a sign), 0 when none.
            Some((n, w)) => (n, Some(atoi(w))),
            None => (item, None),
        };
        let lower = name.to_ascii_lowercase();
        if "all".starts_with(&lower) {
            for &(n, w, kind) in FIELDS {
                out.push(Column {
                    name: n,
                    width: width.unwrap_or(w),
                    kind,
                });
            }
            continue;
        }
        let Some(&(n, w, kind)) = FIELDS
            .iter()
            .find(|(n, _, _)| n.to_ascii_lowercase().starts_with(&lower))
        else {
            return Err(format!(
                "sacct: error: Invalid field requested: \"{name}\"\n"
            ));
        };
        out.push(Column {
            name: n,
            width: width.unwrap_or(w),
            kind,
        });
    }
    Ok(out)
}

fn atoi(s: &str) -> i32 {
    let s = s.trim_start();
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    sign * digits[..end].parse::<i32>().unwrap_or(0)
}

/// Parses sacct's arguments (and `SACCT_FORMAT`). `now` and `utc_offset_s` give the default
/// window (midnight today).
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    my_uid: u32,
    now: i64,
    utc_offset_s: i32,
) -> Result<Opts, String> {
    // sacct exits on getopt's own message, without a `Try --help` line.
    let p = getopt::parse("sacct", args, OPTIONS)
        .map_err(|e| e.replace("Try \"sacct --help\" for more information\n", ""))?;
    let mut o = Opts::default();
    let mut brief = false;
    let mut long_list = false;
    let mut format: Option<String> = None;
    let mut delimiter: Option<String> = None;
    let mut start: Option<i64> = None;
    let mut end: Option<i64> = None;
    let mut users: Option<Vec<u32>> = None;
    let mut timelimit_min: Option<u64> = None;
    let mut timelimit_max: Option<u64> = None;
    let mut noconvert = false;
    let (mut script, mut environment) = (false, false);
    let time = |v: &str| {
        parse_begin(v, now, utc_offset_s)
            .map_err(|_| format!("Invalid time specification (pos=0): {v}\n"))
    };
    for (id, value) in &p.opts {
        let v = value.as_deref().unwrap_or("");
        match *id {
            "help" => o.special = Some(Special::Help),
            "usage" => o.special = Some(Special::Usage),
            "version" => o.special = Some(Special::Version),
            "helpformat" => o.special = Some(Special::HelpFields),
            "helpreason" => o.special = Some(Special::HelpReasons),
            "json" => o.json = true,
            "yaml" => {
                return Err("sacct: error: --yaml is not supported by drover; use --json\n".into())
            }
            "allusers" => {
                o.all_users = true;
                users = None;
            }
            "accounts" => o.accounts.extend(split_list(v).map(str::to_string)),
            "allocations" => o.no_steps = true,
            "brief" => brief = true,
            "long" => long_list = true,
            "delimiter" => delimiter = Some(v.to_string()),
            "endtime" => end = Some(time(v)?),
            "starttime" => start = Some(time(v)?),
            "jobs" => {
                for s in split_list(v) {
                    match parse_job_sel(s) {
                        Some(sel) => o.jobs.push(sel),
                        None => return Err(format!("sacct: fatal: Bad job/step specified: {s}\n")),
                    }
                }
            }
            "name" => o.names.extend(split_list(v).map(str::to_string)),
            "noheader" => o.noheader = true,
            "format" => {
                let f = format.get_or_insert_with(String::new);
                f.push_str(v);
                f.push(',');
            }
            "parsable" => o.parsable = Parsable::Ending(String::new()),
            "parsable2" => o.parsable = Parsable::NoEnding(String::new()),
            "partition" => o.partitions.extend(split_list(v).map(str::to_string)),
            "state" => {
                for s in split_list(v) {
                    match parse_state(s) {
                        Some(l) => o.states.push(l.to_string()),
                        None => {
                            return Err(format!("sacct: fatal: unrecognized job state value {s}\n"))
                        }
                    }
                }
            }
            "user" => {
                if v == "-1" {
                    o.all_users = true;
                    users = None;
                    continue;
                }
                o.all_users = false;
                let list = users.get_or_insert_with(Vec::new);
                for u in split_list(v) {
                    match resolve_user(u) {
                        Some(uid) => list.push(uid),
                        None => return Err(format!("sacct: error: Invalid user id: {u}\n")),
                    }
                }
            }
            "clusters" => {
                if v.eq_ignore_ascii_case("all") || v == "-1" {
                    o.clusters = None;
                } else {
                    o.clusters = Some(split_list(v).map(str::to_string).collect());
                }
            }
            "allclusters" => o.clusters = None,
            "nodelist" => o.nodes.extend(
                drover_scheduler::hostlist::expand(v)
                    .map_err(|e| format!("sacct: error: Invalid node list {v}: {e}\n"))?,
            ),
            "qos" => o.qos.extend(split_list(v).map(str::to_string)),
            "group" => {
                for g in split_list(v) {
                    match resolve_group(g) {
                        Some(gid) => o.gids.push(gid),
                        None => return Err(format!("sacct: error: Invalid group id: {g}\n")),
                    }
                }
            }
            "nnodes" => o.nnodes = Some(count_range(v, "node count")?),
            "ncpus" => o.ncpus = Some(count_range(v, "CPU count")?),
            "timelimit-min" | "timelimit-max" => {
                let minutes = drover_scheduler::time::parse_time_limit(v)
                    .map_err(|_| format!("sacct: error: Invalid time limit: {v}\n"))?
                    .unwrap_or(u64::MAX);
                if *id == "timelimit-min" {
                    timelimit_min = Some(minutes);
                } else {
                    timelimit_max = Some(minutes);
                }
            }
            "units" => {
                let unit = v
                    .chars()
                    .next()
                    .and_then(|c| "KMGTP".find(c.to_ascii_uppercase()).map(|i| i + 1));
                match unit {
                    Some(u) => o.conversion = Conversion::To(u),
                    None => {
                        let c: String = v.chars().take(1).collect();
                        return Err(format!(
                            "sacct: error: Invalid unit type '{c}'. Possible options are 'KMGTP'\nsacct: fatal: Invalid unit type\n"
                        ));
                    }
                }
            }
            // `--units` wins over `--noconvert` (convert_num_unit2 looks at it first).
            "noconvert" => noconvert = true,
            "truncate" => o.truncate = true,
            "completion" => o.completion = true,
            "reason" => {
                for r in split_list(v) {
                    match REASONS.iter().find(|n| n.eq_ignore_ascii_case(r)) {
                        Some(n) => o.reasons.push(n.to_string()),
                        None => {
                            return Err(format!(
                                "sacct: fatal: unrecognized job reason value '{r}'\n"
                            ))
                        }
                    }
                }
            }
            "constraints" => o.constraints.extend(split_list(v).map(str::to_string)),
            "batch-script" => {
                script = true;
                o.no_steps = true;
            }
            "env-vars" => {
                environment = true;
                o.no_steps = true;
            }
            // Accepted, with nothing to change in drover: one cluster, no federation, no
            // requeue duplicates, arrays never collapsed, no het jobs.
            "local" | "federation" | "duplicates" | "verbose" | "use-local-uid" | "array"
            | "whole-hetjob" => {}
            "file" => {
                return Err("sacct: error: --file reads the accounting_storage/filetxt log, which drover does not have: its records live in the replicated state, and sacct reads them without --file\n".into())
            }
            "flags" => {
                return Err("sacct: error: --flags (SchedSubmit, SchedMain, SchedBackfill, StartReceived) is not available: drover's records do not say which scheduler started a job\n".into())
            }
            "wckeys" => {
                return Err("sacct: error: --wckeys is not available: drover does not track WCKeys (Slurm's TrackWCKey=no)\n".into())
            }
            "associations" => {
                return Err("sacct: error: --associations is not available: drover has no association ids (every job belongs to its user's association under root)\n".into())
            }
            other => {
                return Err(format!(
                    "sacct: error: --{other} is not supported by drover yet\n"
                ))
            }
        }
    }
    // `-k` alone: exactly that limit; with `-K`: the range; `-K` alone is ignored (sacct(1)).
    o.timelimit = timelimit_min.map(|lo| (lo, timelimit_max.unwrap_or(lo).max(lo)));
    if let Some(w) = p.words.first() {
        let mut text = "sacct: error: Unknown arguments:\n".to_string();
        for w in std::iter::once(w).chain(p.words.iter().skip(1)) {
            text.push_str(&format!("sacct: error:  {w}\n"));
        }
        return Err(text);
    }
    if o.special.is_none() {
        let asked = if environment {
            Some("job environment")
        } else if script {
            Some("job scripts")
        } else {
            None
        };
        if let (Some(what), true) = (asked, o.jobs.is_empty()) {
            return Err(format!("sacct: fatal: When requesting {what} you must also request specific jobs with the '-j' option.\n"));
        }
        if script && environment {
            return Err(
                "sacct: fatal: Options --batch-script and --env-vars are mutually exclusive\n"
                    .into(),
            );
        }
    }
    o.show = if script {
        Show::Script
    } else if environment {
        Show::Environment
    } else {
        Show::Records
    };
    if noconvert && o.conversion == Conversion::Exact {
        o.conversion = Conversion::None;
    }
    if o.completion {
        o.no_steps = true;
    }
    if long_list && format.is_some() {
        return Err("sacct: fatal: Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.\n".into());
    }
    let delim = delimiter.unwrap_or_else(|| "|".to_string());
    o.parsable = match o.parsable {
        Parsable::No => Parsable::No,
        Parsable::Ending(_) => Parsable::Ending(delim),
        Parsable::NoEnding(_) => Parsable::NoEnding(delim),
    };
    // slurmdb_job_cond_def_start_end (src/common/slurmdb_defs.c).
    let has_jobs = !o.jobs.is_empty();
    if !o.states.is_empty() {
        if start.is_none() && !has_jobs {
            start = Some(now);
        }
        if let (Some(s), None) = (start, end) {
            end = Some(s);
        }
    } else if !has_jobs && start.is_none() {
        let offset = i64::from(utc_offset_s);
        start = Some((now + offset).div_euclid(86_400) * 86_400 - offset);
    }
    o.start = start.unwrap_or(0);
    o.end = end.unwrap_or(now);
    if o.end != 0 && o.start > o.end {
        return Err(format!(
            "sacct: error: Start time ({}) requested is after end time ({}).\n",
            format_timestamp(o.start, utc_offset_s),
            format_timestamp(o.end, utc_offset_s)
        ));
    }
    // Jobs named: every user; root sees everyone; others see themselves.
    if users.is_none() && (has_jobs || my_uid == 0) {
        o.all_users = true;
    }
    o.uids = if o.all_users {
        None
    } else {
        Some(users.unwrap_or_else(|| vec![my_uid]))
    };
    let mut list = String::new();
    if brief {
        list.push_str(if o.completion {
            BRIEF_COMPLETION_FIELDS
        } else {
            BRIEF_FIELDS
        });
        list.push(',');
    }
    if long_list {
        list.push_str(if o.completion {
            LONG_COMPLETION_FIELDS
        } else {
            LONG_FIELDS
        });
        list.push(',');
    }
    if let Some(f) = format {
        list.push_str(&f);
    }
    if list.is_empty() && o.completion {
        list = COMPLETION_FIELDS.to_string();
    }
    if list.is_empty() {
        list = env("SACCT_FORMAT").unwrap_or_else(|| DEFAULT_FIELDS.to_string());
    }
    o.columns = parse_fields(&list)?;
    Ok(o)
}

/// `--helpreason`: the reasons, two to a line (options.c `_help_job_reason_msg`).
pub fn help_reasons() -> String {
    name_table(REASONS.iter().copied(), 2, 39)
}

/// `-e`: the field names, four to a line (options.c `_help_fields_msg`).
pub fn help_fields() -> String {
    name_table(FIELDS.iter().map(|(name, _, _)| *name), 4, 19)
}

/// sacct's help lists: `per_line` names padded to `width`, one space between them.
fn name_table<'a>(names: impl Iterator<Item = &'a str>, per_line: usize, width: usize) -> String {
    let mut out = String::new();
    for (i, name) in names.enumerate() {
        if i % per_line != 0 {
            out.push(' ');
        } else if i != 0 {
            out.push('\n');
        }
        out.push_str(&format!("{name:<width$}"));
    }
    out.push('\n');
    out
}

/// Did this record's job match `-s` in the window? (as_mysql_jobacct_process.c
/// `_state_time_string`; the window's end is taken inclusively, see `select`.)
fn state_in_window(r: &JobRecord, state: &str, start: i64, end: i64) -> bool {
    let (s, e) = (r.start_time, r.end_time);
    match state {
        "PENDING" => {
            r.eligible_time > 0
                && ((s > 0 && start < s)
                    || (s == 0 && e > 0 && start < e)
                    || (s == 0 && e == 0 && r.state == "PENDING"))
                && r.eligible_time <= end
        }
        "RUNNING" => s > 0 && (start < e || (e == 0 && r.state == "RUNNING")) && s <= end,
        other => r.state == other && e > 0 && (start..=end).contains(&e),
    }
}

/// Picks the records `opts` asks for, in job id order.
pub fn select(records: Vec<JobRecord>, o: &Opts, cluster: &str) -> Vec<JobRecord> {
    if let Some(names) = &o.clusters {
        if !names.iter().any(|n| n == cluster) {
            return Vec::new();
        }
    }
    let mut out: Vec<JobRecord> = records
        .into_iter()
        .filter(|r| {
            o.jobs.is_empty()
                || o.jobs.iter().any(|sel| {
                    let job_match =
                        r.job_id == sel.job || (r.array_job_id == sel.job && r.array_job_id != 0);
                    match sel.task {
                        None => job_match,
                        Some(t) => {
                            r.array_job_id == sel.job
                                && (r.array_task_id == Some(t)
                                    || pending_contains(&r.array_pending, t))
                        }
                    }
                })
        })
        .filter(|r| o.uids.as_ref().is_none_or(|u| u.contains(&r.uid)))
        .filter(|r| o.accounts.is_empty() || o.accounts.contains(&r.account))
        .filter(|r| o.names.is_empty() || o.names.contains(&r.name))
        .filter(|r| o.partitions.is_empty() || o.partitions.contains(&r.partition))
        .filter(|r| o.qos.is_empty() || o.qos.contains(&r.qos))
        .filter(|r| o.gids.is_empty() || o.gids.contains(&r.gid))
        .filter(|r| o.reasons.is_empty() || o.reasons.contains(&r.reason))
        // as_mysql_jobacct_process.c: `constraints like '%C%'` for each, all of them.
        .filter(|r| {
            o.constraints
                .iter()
                .all(|c| r.constraints.contains(c.as_str()))
        })
        // The completion log holds jobs that ended.
        .filter(|r| !o.completion || r.end_time > 0)
        .filter(|r| {
            o.nodes.is_empty()
                || drover_scheduler::hostlist::expand(&r.node_list)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| o.nodes.contains(n))
        })
        .filter(|r| {
            o.nnodes
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&r.num_nodes))
        })
        .filter(|r| {
            o.ncpus
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&r.alloc_cpus))
        })
        .filter(|r| {
            o.timelimit
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&r.time_limit_min.unwrap_or(u64::MAX)))
        })
        .filter(|r| {
            if !o.states.is_empty() {
                o.states
                    .iter()
                    .any(|s| state_in_window(r, s, o.start, o.end))
            } else if !o.jobs.is_empty() {
                // Named jobs: held ones (never eligible) too.
                r.submit_time <= o.end && (r.end_time == 0 || r.end_time >= o.start)
            } else {
                r.eligible_time > 0
                    && r.eligible_time <= o.end
                    && (r.end_time == 0 || r.end_time >= o.start)
            }
        })
        .collect();
    // options.c `_sort_desc_submit_time` (ascending, despite the name): submit time, then
    // array id (0 for plain jobs), task (unset last), job id. Slurm's window excludes its end
    // second; drover includes it (`<=` above), so that a job submitted in the second sacct
    // runs is listed: its times are whole seconds cut from milliseconds.
    out.sort_by_key(|r| {
        (
            r.submit_time,
            r.array_job_id,
            r.array_task_id.unwrap_or(u32::MAX),
            r.job_id,
        )
    });
    out
}

/// `-T`: times cut to the window (as_mysql_jobacct_process.c without JOBCOND_FLAG_NO_TRUNC):
/// a start before the window starts at its start, an end after it (or none yet) ends at its
/// end (never later than `now`), a job that never started starts when it ends; steps alike.
pub fn truncate(records: &mut [JobRecord], o: &Opts, now: i64) {
    let window_end = if o.end == 0 || o.end > now {
        now
    } else {
        o.end
    };
    let cut = |start: &mut i64, end: &mut i64| {
        if *start > 0 && *start < o.start {
            *start = o.start;
        }
        if *end == 0 || *end > window_end {
            *end = window_end;
        }
    };
    for r in records {
        if r.end_time > 0 && r.start_time > r.end_time {
            r.start_time = r.end_time;
        }
        cut(&mut r.start_time, &mut r.end_time);
        if r.start_time == 0 {
            r.start_time = r.end_time;
        }
        if o.start == 0 {
            continue;
        }
        let mut steps: Vec<(&mut i64, &mut i64)> = r
            .batch
            .iter_mut()
            .map(|st| (&mut st.start_time, &mut st.end_time))
            .chain(
                r.steps
                    .iter_mut()
                    .map(|st| (&mut st.start_time, &mut st.end_time)),
            )
            .collect();
        for (start, end) in steps.iter_mut() {
            if **start == 0 && **end > 0 {
                **start = **end;
            }
            cut(start, end);
            if **start > **end {
                (**start, **end) = (0, 0);
            }
        }
    }
}

/// `-B` / `--env-vars`: each job's kept script or environment under Slurm's heading
/// (options.c `_print_script`, `_print_env`); `NONE` where the record kept none (the cluster
/// runs without `accounting_store_flags`, or the job has no batch script).
pub fn kept_text(records: &[JobRecord], o: &Opts) -> String {
    let mut out = String::new();
    for r in records {
        let (heading, text) = match o.show {
            Show::Script => ("Batch Script for", r.script.as_deref()),
            Show::Environment => ("Environment used for", r.environment.as_deref()),
            Show::Records => continue,
        };
        if !o.noheader {
            out.push_str(&format!("{heading} {}", display_id(r)));
            if o.show == Show::Environment {
                out.push_str(" (must be batch to display)");
            }
            out.push('\n');
            out.push_str(&"-".repeat(80));
            out.push('\n');
        }
        out.push_str(text.unwrap_or("NONE\n"));
    }
    out
}

/// Is task `t` in Slurm's spelling of a set of tasks (`1-3,7`)?
fn pending_contains(pending: &str, t: u32) -> bool {
    split_list(pending).any(|part| match part.split_once('-') {
        Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&t),
            _ => false,
        },
        None => part.parse::<u32>() == Ok(t),
    })
}

/// The JobID column: `12`, `12_3`, `12_[3-7%2]`.
pub fn display_id(r: &JobRecord) -> String {
    if r.array_job_id == 0 {
        return r.job_id.to_string();
    }
    if !r.array_pending.is_empty() {
        let throttle = if r.array_max_running > 0 {
            format!("%{}", r.array_max_running)
        } else {
            String::new()
        };
        return format!("{}_[{}{throttle}]", r.array_job_id, r.array_pending);
    }
    match r.array_task_id {
        Some(t) => format!("{}_{t}", r.array_job_id),
        None => r.array_job_id.to_string(),
    }
}

/// One printed row: a job, its batch step, or one of its srun steps.
enum Row<'a> {
    Job(&'a JobRecord),
    Step(&'a JobRecord, &'a StepRecord),
    Srun(&'a JobRecord, &'a SrunStepRecord),
}

/// A value before layout.
enum Val {
    Str(String),
    Num(u64),
    Date(i64),
    Secs(u64),
    None,
}

/// `[D-]HH:MM:SS` (secs2time_str).
fn secs_text(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{sec:02}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}")
    }
}

/// TotalCPU's text (print.c `_elapsed_time`): milliseconds show as `MM:SS.mmm` under an hour.
fn cpu_text(ms: u64) -> String {
    let (secs, sub) = (ms / 1000, ms % 1000);
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else if h > 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else if sub > 0 {
        format!("{m:02}:{s:02}.{sub:03}")
    } else {
        format!("00:{m:02}:{s:02}")
    }
}

fn exit_text(code: i32, signal: i32) -> String {
    let code = if code >= 128 { code - 128 } else { code };
    format!("{}:{signal}", code.max(0))
}

fn elapsed(start: i64, end: i64, now: i64) -> u64 {
    if start <= 0 {
        return 0;
    }
    let end = if end > 0 { end } else { now };
    end.saturating_sub(start).max(0) as u64
}

fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut p = l.split(':');
        let name = p.next()?;
        let _ = p.next();
        (p.next()?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// A job's TRES string (`billing=2,cpu=2,mem=500M,node=1`).
fn tres(cpus: u32, mem_mb: u64, nodes: u32, how: Conversion) -> String {
    let mut parts = vec![format!("billing={cpus}"), format!("cpu={cpus}")];
    if mem_mb > 0 {
        parts.push(format!("mem={}", convert_num_unit(mem_mb, 2, how)));
    }
    parts.push(format!("node={nodes}"));
    parts.join(",")
}

fn value(col: &str, row: &Row<'_>, now: i64, cluster: &str, how: Conversion) -> Val {
    let s = |v: &str| Val::Str(v.to_string());
    match row {
        Row::Job(r) => {
            let cpus = if r.alloc_cpus > 0 {
                r.alloc_cpus
            } else {
                r.req_cpus
            };
            let el = elapsed(r.start_time, r.end_time, now);
            let cpu_ms = r.batch.as_ref().and_then(|b| b.total_cpu_ms);
            match col {
                "Account" => s(&r.account),
                "AllocCPUS" | "NCPUS" => Val::Num(cpus.into()),
                "AllocNodes" => Val::Str(if r.node_list.is_empty() {
                    "0".into()
                } else {
                    r.num_nodes.to_string()
                }),
                "AllocTRES" if !r.node_list.is_empty() => {
                    Val::Str(tres(r.alloc_cpus, r.req_mem_mb, r.num_nodes, how))
                }
                "Cluster" => s(cluster),
                "Constraints" => s(&r.constraints),
                "CPUTime" => Val::Secs(el * u64::from(cpus)),
                "CPUTimeRAW" => Val::Num(el * u64::from(cpus)),
                "DerivedExitCode" => s("0:0"),
                "Elapsed" => Val::Secs(el),
                "ElapsedRaw" => Val::Num(el),
                "Eligible" => Val::Date(r.eligible_time),
                "End" => Val::Date(r.end_time),
                "ExitCode" => Val::Str(exit_text(r.exit_code, r.exit_signal)),
                "GID" => Val::Num(r.gid.into()),
                "Group" => group_name(r.gid).map_or(Val::None, Val::Str),
                "JobID" => Val::Str(display_id(r)),
                "JobIDRaw" => Val::Str(r.job_id.to_string()),
                "JobName" => s(&r.name),
                "NNodes" => Val::Num(r.num_nodes.into()),
                "NodeList" => Val::Str(if r.node_list.is_empty() {
                    "None assigned".into()
                } else {
                    r.node_list.clone()
                }),
                "Partition" => s(&r.partition),
                "Priority" => Val::Num(r.priority.into()),
                "QOS" => s(&r.qos),
                "QOSRAW" => Val::Num(1),
                "Reason" => s(&r.reason),
                "ReqCPUS" => Val::Num(r.req_cpus.into()),
                "ReqMem" => Val::Str(convert_num_unit(r.req_mem_mb, 2, how)),
                "ReqNodes" => Val::Str(r.req_nodes.to_string()),
                "ReqTRES" => Val::Str(tres(r.req_cpus, r.req_mem_mb, r.req_nodes, how)),
                "Restarts" => Val::Num(0),
                "Start" => Val::Date(r.start_time),
                "State" => Val::Str(match r.cancelled_by {
                    Some(uid) if r.state == "CANCELLED" => format!("CANCELLED by {uid}"),
                    _ => r.state.clone(),
                }),
                "Submit" => Val::Date(r.submit_time),
                "Suspended" => Val::Secs(0),
                "Timelimit" => Val::Str(format_limit(r.time_limit_min)),
                "TimelimitRaw" => Val::Str(
                    r.time_limit_min
                        .map_or("UNLIMITED".to_string(), |m| m.to_string()),
                ),
                "TotalCPU" => Val::Str(cpu_text(cpu_ms.unwrap_or(0))),
                "UID" => Val::Num(r.uid.into()),
                "User" => s(&r.user),
                "WorkDir" => s(&r.work_dir),
                _ => Val::None,
            }
        }
        Row::Step(r, st) => {
            let el = elapsed(st.start_time, st.end_time, now);
            let rss = st.max_rss_kb.map(|kb| convert_num_unit(kb * 1024, 0, how));
            let cpu = st.total_cpu_ms.map(cpu_text);
            match col {
                "Account" => s(&r.account),
                "AllocCPUS" | "NCPUS" | "ReqCPUS" => Val::Num(st.cpus.into()),
                "AllocNodes" | "ReqNodes" => s("1"),
                "AllocTRES" => Val::Str(format!(
                    "cpu={},mem={},node=1",
                    st.cpus,
                    convert_num_unit(r.req_mem_mb / u64::from(r.num_nodes.max(1)), 2, how)
                )),
                "AveCPU" | "MinCPU" => cpu.map_or(Val::None, Val::Str),
                "MinCPUNode" | "MaxRSSNode" if st.max_rss_kb.is_some() => s(&st.node),
                "MinCPUTask" | "MaxRSSTask" if st.max_rss_kb.is_some() => Val::Num(0),
                "AveRSS" | "MaxRSS" => rss.map_or(Val::None, Val::Str),
                "Cluster" => s(cluster),
                "CPUTime" => Val::Secs(el * u64::from(st.cpus)),
                "CPUTimeRAW" => Val::Num(el * u64::from(st.cpus)),
                "Elapsed" => Val::Secs(el),
                "ElapsedRaw" => Val::Num(el),
                "Eligible" | "Start" | "Submit" => Val::Date(st.start_time),
                "End" => Val::Date(st.end_time),
                "ExitCode" => Val::Str(exit_text(st.exit_code, st.exit_signal)),
                "JobID" => Val::Str(format!("{}.batch", display_id(r))),
                "JobIDRaw" => Val::Str(format!("{}.batch", r.job_id)),
                "JobName" => s("batch"),
                "NNodes" | "NTasks" => Val::Num(1),
                "NodeList" => s(&st.node),
                "State" => s(&st.state),
                "Suspended" => Val::Secs(0),
                "TotalCPU" => Val::Str(cpu_text(st.total_cpu_ms.unwrap_or(0))),
                "TRESUsageInMax" | "TRESUsageInTot" => match (st.max_rss_kb, st.total_cpu_ms) {
                    (Some(kb), Some(ms)) => Val::Str(format!(
                        "cpu={},mem={}",
                        secs_text(ms / 1000),
                        convert_num_unit(kb * 1024, 0, how)
                    )),
                    _ => Val::None,
                },
                _ => Val::None,
            }
        }
        Row::Srun(r, st) => {
            let el = elapsed(st.start_time, st.end_time, now);
            match col {
                "Account" => s(&r.account),
                "AllocCPUS" | "NCPUS" | "ReqCPUS" => Val::Num(st.cpus.into()),
                "AllocNodes" | "ReqNodes" => Val::Str(st.num_nodes.to_string()),
                "Cluster" => s(cluster),
                "CPUTime" => Val::Secs(el * u64::from(st.cpus)),
                "CPUTimeRAW" => Val::Num(el * u64::from(st.cpus)),
                "Elapsed" => Val::Secs(el),
                "ElapsedRaw" => Val::Num(el),
                "Eligible" | "Start" | "Submit" => Val::Date(st.start_time),
                "End" => Val::Date(st.end_time),
                "ExitCode" => Val::Str(exit_text(st.exit_code, st.exit_signal)),
                "JobID" => Val::Str(format!("{}.{}", display_id(r), st.step_id)),
                "JobIDRaw" => Val::Str(format!("{}.{}", r.job_id, st.step_id)),
                "JobName" => s(&st.name),
                "NNodes" => Val::Num(st.num_nodes.into()),
                "NTasks" => Val::Num(st.ntasks.into()),
                "NodeList" => s(&st.node_list),
                "State" => s(&st.state),
                "Suspended" => Val::Secs(0),
                _ => Val::None,
            }
        }
    }
}

/// Lays one value out (print_fields.c).
fn cell(col: &Column, v: Val, last: bool, parsable: &Parsable, utc_offset_s: i32) -> String {
    let text = match &v {
        Val::Str(t) => Some(t.clone()),
        Val::Num(n) => Some(n.to_string()),
        Val::Date(t) => Some(if *t <= 0 {
            "Unknown".to_string()
        } else {
            format_timestamp(*t, utc_offset_s)
        }),
        Val::Secs(s) => Some(secs_text(*s)),
        Val::None => None,
    };
    match parsable {
        Parsable::NoEnding(_) if last => text.unwrap_or_default(),
        Parsable::Ending(d) | Parsable::NoEnding(d) => format!("{}{d}", text.unwrap_or_default()),
        Parsable::No => {
            let w = col.width.unsigned_abs() as usize;
            let right = col.width >= 0;
            let body = match (text, col.kind) {
                (None, _) => String::new(),
                (Some(t), Kind::Str) => {
                    let chars: Vec<char> = t.chars().collect();
                    if chars.len() > w && w > 0 {
                        let mut cut: String = chars[..w - 1].iter().collect();
                        cut.push('+');
                        cut
                    } else if w == 0 {
                        String::new()
                    } else {
                        t
                    }
                }
                (Some(t), Kind::Date) => t.chars().take(w).collect(),
                (Some(t), _) => t,
            };
            if right {
                format!("{body:>w$} ")
            } else {
                format!("{body:<w$} ")
            }
        }
    }
}

/// The header lines (print_fields_header).
fn header(cols: &[Column], parsable: &Parsable) -> String {
    let mut out = String::new();
    for (i, c) in cols.iter().enumerate() {
        let last = i + 1 == cols.len();
        match parsable {
            Parsable::NoEnding(_) if last => out.push_str(c.name),
            Parsable::Ending(d) | Parsable::NoEnding(d) => {
                out.push_str(c.name);
                out.push_str(d);
            }
            Parsable::No => {
                let w = c.width.unsigned_abs() as usize;
                let name: String = c.name.chars().take(w).collect();
                if c.width >= 0 {
                    out.push_str(&format!("{name:>w$} "));
                } else {
                    out.push_str(&format!("{name:<w$} "));
                }
            }
        }
    }
    out.push('\n');
    if *parsable == Parsable::No {
        for c in cols {
            out.push_str(&"-".repeat(c.width.unsigned_abs() as usize));
            out.push(' ');
        }
        out.push('\n');
    }
    out
}

/// A step row of `r` is shown unless `-j` names steps of this job and not this one
/// (`-j 12.0` shows step 0 only).
fn step_wanted(o: &Opts, r: &JobRecord, step: &str) -> bool {
    let named: Vec<&str> = o
        .jobs
        .iter()
        .filter(|sel| sel.job == r.job_id || sel.job == r.array_job_id)
        .filter_map(|sel| sel.step.as_deref())
        .collect();
    named.is_empty() || named.contains(&step)
}

/// The table sacct prints for these (already selected) records.
pub fn table(
    records: &[JobRecord],
    o: &Opts,
    now: i64,
    cluster: &str,
    utc_offset_s: i32,
) -> String {
    let mut out = String::new();
    if !o.noheader {
        out.push_str(&header(&o.columns, &o.parsable));
    }
    for r in records {
        let mut rows = Vec::new();
        let job_wanted = o
            .jobs
            .iter()
            .all(|sel| sel.step.is_none() || !(sel.job == r.job_id || sel.job == r.array_job_id));
        if job_wanted {
            rows.push(Row::Job(r));
        }
        if let Some(st) = r.batch.as_ref().filter(|_| !o.no_steps) {
            let state_ok = o.states.is_empty() || o.states.contains(&st.state);
            if state_ok && step_wanted(o, r, "batch") {
                rows.push(Row::Step(r, st));
            }
        }
        for st in r.steps.iter().filter(|_| !o.no_steps) {
            let state_ok = o.states.is_empty() || o.states.contains(&st.state);
            if state_ok && step_wanted(o, r, &st.step_id.to_string()) {
                rows.push(Row::Srun(r, st));
            }
        }
        for row in rows {
            for (i, c) in o.columns.iter().enumerate() {
                let last = i + 1 == o.columns.len();
                out.push_str(&cell(
                    c,
                    value(c.name, &row, now, cluster, o.conversion),
                    last,
                    &o.parsable,
                    utc_offset_s,
                ));
            }
            out.push('\n');
        }
    }
    out
}

/// `--json`: the records in data_parser's layout (the subset drover has values for).
pub fn json(records: &[JobRecord], o: &Opts, now: i64, cluster: &str, args: &[String]) -> String {
    let t = |v: i64| json_number(Some(v));
    let jobs: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let srun_steps = r.steps.iter().filter(|_| !o.no_steps).map(|st| {
                serde_json::json!({
                    "step": {"id": format!("{}.{}", r.job_id, st.step_id), "name": st.name},
                    "state": [st.state],
                    "exit_code": {"status": [if st.exit_signal != 0 { "SIGNALED" } else if st.exit_code != 0 { "ERROR" } else { "SUCCESS" }],
                                  "return_code": json_number(Some(i64::from(st.exit_code))),
                                  "signal": {"id": json_number(Some(i64::from(st.exit_signal))), "name": ""}},
                    "nodes": {"count": st.num_nodes, "range": st.node_list},
                    "tasks": {"count": st.ntasks},
                    "time": {"elapsed": elapsed(st.start_time, st.end_time, now),
                             "start": t(st.start_time), "end": t(st.end_time)},
                })
            });
            let steps: Vec<serde_json::Value> = r
                .batch
                .iter()
                .filter(|_| !o.no_steps)
                .map(|st| {
                    serde_json::json!({
                        "step": {"id": format!("{}.batch", r.job_id), "name": "batch"},
                        "state": [st.state],
                        "exit_code": {"status": [if st.exit_signal != 0 { "SIGNALED" } else if st.exit_code != 0 { "ERROR" } else { "SUCCESS" }],
                                      "return_code": json_number(Some(i64::from(st.exit_code))),
                                      "signal": {"id": json_number(Some(i64::from(st.exit_signal))), "name": ""}},
                        "nodes": {"count": 1, "range": st.node, "list": [st.node]},
                        "time": {"elapsed": elapsed(st.start_time, st.end_time, now),
                                 "start": t(st.start_time), "end": t(st.end_time)},
                        "tres": {"requested": {"max": st.max_rss_kb.map(|kb| vec![serde_json::json!({"type": "mem", "count": kb * 1024})]).unwrap_or_default()}},
                        "statistics": {"CPU": {"actual_frequency": 0}},
                    })
                })
                .chain(srun_steps)
                .collect();
            serde_json::json!({
                "account": r.account,
                "array": {
                    "job_id": r.array_job_id,
                    "task_id": json_number(r.array_task_id.map(i64::from)),
                    "task": r.array_pending,
                    "limits": {"max": {"running": {"tasks": r.array_max_running}}},
                },
                "cluster": cluster,
                "derived_exit_code": {"status": ["SUCCESS"], "return_code": json_number(Some(0))},
                "exit_code": {
                    "status": [if r.exit_signal != 0 { "SIGNALED" } else if r.exit_code != 0 { "ERROR" } else { "SUCCESS" }],
                    "return_code": json_number(Some(i64::from(r.exit_code))),
                    "signal": {"id": json_number(Some(i64::from(r.exit_signal))), "name": ""},
                },
                "group": group_name(r.gid).unwrap_or_default(),
                "job_id": r.job_id,
                "name": r.name,
                "nodes": r.node_list,
                "partition": r.partition,
                "priority": json_number(Some(i64::from(r.priority))),
                "qos": r.qos,
                "required": {"CPUs": r.req_cpus, "memory_per_node": json_number(Some(r.req_mem_mb as i64 / i64::from(r.req_nodes.max(1))))},
                "state": {"current": [r.state], "reason": r.reason},
                "steps": steps,
                "time": {
                    "elapsed": elapsed(r.start_time, r.end_time, now),
                    "eligible": r.eligible_time,
                    "end": r.end_time,
                    "start": r.start_time,
                    "submission": r.submit_time,
                    "suspended": 0,
                    "limit": match r.time_limit_min { Some(m) => json_number(Some(m as i64)), None => crate::squeue::json_infinite() },
                },
                "user": r.user,
                "working_directory": r.work_dir,
                "kill_request_user": r.cancelled_by.map(|u| u.to_string()).unwrap_or_default(),
            })
        })
        .collect();
    let mut command = vec!["sacct"];
    command.extend(args.iter().map(String::as_str));
    let doc = serde_json::json!({
        "jobs": jobs,
        "meta": json_meta(&command, cluster),
        "errors": [],
        "warnings": [],
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn opts(a: &[&str]) -> Opts {
        parse(&words(a), &|_| None, 0, NOW, 0).expect("parses")
    }

    fn rec(id: u64, name: &str, state: &str) -> JobRecord {
        JobRecord {
            job_id: id,
            name: name.into(),
            partition: "debug".into(),
            account: "physics".into(),
            user: "alice".into(),
            uid: 1000,
            gid: 1000,
            state: state.into(),
            submit_time: NOW - 100,
            eligible_time: NOW - 100,
            start_time: NOW - 90,
            end_time: NOW - 10,
            time_limit_min: Some(60),
            node_list: "n1".into(),
            num_nodes: 1,
            alloc_cpus: 2,
            req_cpus: 2,
            req_nodes: 1,
            req_mem_mb: 500,
            reason: "None".into(),
            qos: "normal".into(),
            batch: Some(StepRecord {
                node: "n1".into(),
                cpus: 2,
                start_time: NOW - 90,
                end_time: NOW - 10,
                state: state.into(),
                exit_code: 0,
                exit_signal: 0,
                max_rss_kb: Some(1234),
                total_cpu_ms: Some(1500),
            }),
            ..Default::default()
        }
    }

    /// The reference's example (slurm.md §1.7, from src/sacct/sacct.h's default fields and
    /// sacct.c's widths): header, dashes, every field followed by one space, `+` truncation,
    /// `CANCELLED by 1000` cut to `CANCELLED+`. drover has no `.extern` or `.0` steps (no
    /// srun), so only `.batch` rows follow the job rows.
    #[test]
    fn default_format_is_byte_exact() {
        let mut a = rec(1234, "test", "COMPLETED");
        a.batch.as_mut().unwrap().max_rss_kb = None;
        let mut b = rec(1235, "longjobname", "CANCELLED");
        b.alloc_cpus = 1;
        b.cancelled_by = Some(1000);
        b.batch = None;
        let o = opts(&["-j", "1234,1235"]);
        let text = table(&select(vec![a, b], &o, "c"), &o, NOW, "c", 0);
        let expected = "\
JobID           JobName  Partition    Account  AllocCPUS      State ExitCode 
------------ ---------- ---------- ---------- ---------- ---------- -------- 
1234               test      debug    physics          2  COMPLETED      0:0 
1234.batch        batch               physics          2  COMPLETED      0:0 
1235         longjobna+      debug    physics          1 CANCELLED+      0:0 
";
        assert_eq!(text, expected);
    }

    /// What submitit runs: `sacct -o JobID,State,NodeList --parsable2 -j A -j B`
    /// (reference/clients.md): a header, `|` between fields, array tasks as `N_i`, the
    /// canceller's uid in full.
    #[test]
    fn submitit_invocation() {
        let mut t0 = rec(20, "arr", "COMPLETED");
        t0.array_job_id = 20;
        t0.array_task_id = Some(0);
        let mut rest = rec(21, "arr", "PENDING");
        rest.array_job_id = 20;
        rest.array_pending = "1-3".into();
        rest.array_max_running = 2;
        rest.start_time = 0;
        rest.end_time = 0;
        rest.node_list.clear();
        rest.batch = None;
        let mut c = rec(22, "x", "CANCELLED");
        c.cancelled_by = Some(1000);
        let o = opts(&[
            "-o",
            "JobID,State,NodeList",
            "--parsable2",
            "-j",
            "20",
            "-j",
            "22",
        ]);
        let text = table(&select(vec![c, rest, t0], &o, "c"), &o, NOW, "c", 0);
        assert_eq!(
            text,
            "JobID|State|NodeList\n22|CANCELLED by 1000|n1\n22.batch|CANCELLED|n1\n20_0|COMPLETED|n1\n20_0.batch|COMPLETED|n1\n20_[1-3%2]|PENDING|None assigned\n"
        );
    }

    #[test]
    fn widths_parsable_delimiters_and_no_header() {
        let r = rec(7, "averyveryverylongname", "FAILED");
        let o = opts(&[
            "-j7",
            "-X",
            "-n",
            "-o",
            "jobid%-5,jobname%6,state%-12,elapsed",
        ]);
        assert_eq!(
            table(std::slice::from_ref(&r), &o, NOW, "c", 0),
            "7     avery+ FAILED         00:01:20 \n"
        );
        let o = opts(&["-j7", "-p", "-o", "jobid,exitcode"]);
        assert_eq!(
            table(std::slice::from_ref(&r), &o, NOW, "c", 0),
            "JobID|ExitCode|\n7|0:0|\n7.batch|0:0|\n"
        );
        let o = opts(&[
            "-j7",
            "-P",
            "--delimiter=,",
            "-X",
            "-o",
            "jobid,maxrss,totalcpu",
        ]);
        assert_eq!(
            table(std::slice::from_ref(&r), &o, NOW, "c", 0),
            "JobID,MaxRSS,TotalCPU\n7,,00:01.500\n"
        );
        let o = opts(&[
            "-j7",
            "-P",
            "-n",
            "-o",
            "jobid,maxrss,reqmem,timelimit,start",
        ]);
        assert_eq!(
            table(&[r], &o, NOW, "c", 0),
            "7||500M|01:00:00|2023-11-14T22:11:50\n7.batch|1234K|||2023-11-14T22:11:50\n"
        );
    }

    #[test]
    fn brief_long_and_env_formats() {
        assert_eq!(
            opts(&["-b"])
                .columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            vec!["JobID", "State", "ExitCode"]
        );
        assert_eq!(opts(&["-l"]).columns.len(), LONG_FIELDS.split(',').count());
        let env = |k: &str| (k == "SACCT_FORMAT").then(|| "jobid,user%20".to_string());
        let o = parse(&words(&[]), &env, 0, NOW, 0).unwrap();
        assert_eq!(o.columns[1].width, 20);
        // Prefixes, case-insensitive; the first field in table order wins.
        assert_eq!(
            opts(&["-o", "jobn,STAT,nodel"])
                .columns
                .iter()
                .map(|c| c.name)
                .collect::<Vec<_>>(),
            vec!["JobName", "State", "NodeList"]
        );
    }

    #[test]
    fn errors_are_slurms() {
        let err = |a: &[&str]| parse(&words(a), &|_| None, 0, NOW, 0).unwrap_err();
        assert_eq!(
            err(&["-o", "bogus"]),
            "sacct: error: Invalid field requested: \"bogus\"\n"
        );
        assert_eq!(
            err(&["-l", "-o", "jobid"]),
            "sacct: fatal: Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.\n"
        );
        assert_eq!(err(&["--bogus"]), "sacct: unrecognized option '--bogus'\n");
        assert!(err(&["-S", "notatime"]).starts_with("Invalid time specification"));
        assert!(err(&["-S", "2023-11-14", "-E", "2023-11-13"]).contains("is after end time"));
    }

    /// slurmdb_job_cond_def_start_end: midnight today without -j/-s; epoch with -j; now
    /// with -s.
    #[test]
    fn default_time_window() {
        let midnight = NOW - NOW % 86_400;
        let o = opts(&[]);
        assert_eq!((o.start, o.end), (midnight, NOW));
        let o = opts(&["-j", "5"]);
        assert_eq!((o.start, o.end), (0, NOW));
        let o = opts(&["-s", "R"]);
        assert_eq!((o.start, o.end), (NOW, NOW));
        let o = opts(&["-S", "now-1hours", "-E", "now"]);
        assert_eq!((o.start, o.end), (NOW - 3600, NOW));
        // A local zone moves midnight.
        let o = parse(&words(&[]), &|_| None, 0, NOW, 3600).unwrap();
        assert_eq!(
            o.start,
            midnight - 3600 + 86_400 * i64::from((NOW + 3600) % 86_400 < 3600)
        );
    }

    #[test]
    fn selection_by_window_state_user_name_and_cluster() {
        let old = JobRecord {
            end_time: NOW - 3 * 86_400,
            start_time: NOW - 3 * 86_400 - 10,
            eligible_time: NOW - 3 * 86_400 - 20,
            ..rec(1, "old", "COMPLETED")
        };
        let today = rec(2, "today", "FAILED");
        let mut running = rec(3, "run", "RUNNING");
        running.end_time = 0;
        let mut held = rec(4, "held", "PENDING");
        held.eligible_time = 0;
        held.start_time = 0;
        held.end_time = 0;
        let mut other = rec(5, "bob", "COMPLETED");
        other.uid = 1001;
        let all = vec![old, today, running, held, other];
        let ids = |o: &Opts| {
            select(all.clone(), o, "c")
                .iter()
                .map(|r| r.job_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&opts(&[])),
            vec![2, 3, 5],
            "since midnight, eligible only"
        );
        assert_eq!(
            ids(&opts(&["-j", "1,4"])),
            vec![1, 4],
            "named jobs: no window"
        );
        assert_eq!(ids(&opts(&["-s", "R"])), vec![3]);
        assert_eq!(
            ids(&opts(&["-s", "F,CD", "-S", "now-1days", "-E", "now"])),
            vec![2, 5]
        );
        // With -s, -E defaults to -S: an instant, at which these had not ended.
        assert_eq!(
            ids(&opts(&["-s", "F,CD", "-S", "now-1days"])),
            Vec::<u64>::new()
        );
        assert_eq!(ids(&opts(&["-u", "1001"])), vec![5]);
        assert_eq!(ids(&opts(&["--name", "run,today"])), vec![2, 3]);
        assert_eq!(ids(&opts(&["-M", "c"])), vec![2, 3, 5]);
        assert_eq!(ids(&opts(&["-M", "all"])), vec![2, 3, 5]);
        assert_eq!(ids(&opts(&["-M", "elsewhere"])), Vec::<u64>::new());
        assert_eq!(
            ids(&opts(&["-A", "physics", "-S", "2023-11-01"])),
            vec![1, 2, 3, 5]
        );
        let me = parse(&words(&[]), &|_| None, 1001, NOW, 0).unwrap();
        assert_eq!(ids(&me), vec![5], "a user sees only their own jobs");
        let me_all = parse(&words(&["-a"]), &|_| None, 1001, NOW, 0).unwrap();
        assert_eq!(ids(&me_all), vec![2, 3, 5]);
    }

    /// `-N`, `-q`, `-g`, `-i`, `-I`, `-k`/`-K` select as sacct(1) says.
    #[test]
    fn node_qos_group_count_and_time_limit_filters() {
        let mut big = rec(2, "big", "COMPLETED");
        big.node_list = "n[2-3]".into();
        big.num_nodes = 2;
        big.alloc_cpus = 8;
        big.gid = 0;
        big.time_limit_min = Some(120);
        let all = vec![rec(1, "small", "COMPLETED"), big];
        let ids = |a: &[&str]| {
            select(all.clone(), &opts(&[&["-a"], a].concat()), "c")
                .iter()
                .map(|r| r.job_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&["-N", "n3"]), vec![2]);
        assert_eq!(ids(&["-N", "n[1,3]"]), vec![1, 2]);
        assert_eq!(ids(&["-q", "normal"]), vec![1, 2]);
        assert_eq!(ids(&["-q", "high"]), Vec::<u64>::new());
        assert_eq!(ids(&["-g", "1000"]), vec![1]);
        assert_eq!(ids(&["-i", "2"]), vec![2]);
        assert_eq!(ids(&["-i", "1-2"]), vec![1, 2]);
        assert_eq!(ids(&["-I", "3-16"]), vec![2]);
        assert_eq!(ids(&["-k", "60"]), vec![1]);
        assert_eq!(ids(&["-k", "30", "-K", "2:00:00"]), vec![1, 2]);
        assert_eq!(ids(&["-K", "30"]), vec![1, 2], "-K alone is ignored");
        let bad = parse(&words(&["-i", "3-1"]), &|_| None, 0, NOW, 0).unwrap_err();
        assert!(bad.contains("Invalid node count range"), "{bad}");
    }

    #[test]
    fn units_noconvert_and_their_errors() {
        let all = vec![rec(1, "a", "COMPLETED")];
        let text = |a: &[&str]| {
            let o = opts(&[&["-a", "-P", "-n", "-o", "ReqMem,MaxRSS,ReqTRES"], a].concat());
            table(&select(all.clone(), &o, "c"), &o, NOW, "c", 0)
        };
        // ReqMem 500 MiB; MaxRSS 1234 KiB (bytes in Slurm: 1263616).
        assert_eq!(
            text(&[]),
            "500M||billing=2,cpu=2,mem=500M,node=1\n|1234K|\n"
        );
        assert_eq!(
            text(&["--units=G"]),
            "0.49G||billing=2,cpu=2,mem=0.49G,node=1\n|0.00G|\n"
        );
        assert_eq!(
            text(&["--units", "k"]),
            "512000K||billing=2,cpu=2,mem=512000K,node=1\n|1234K|\n"
        );
        assert_eq!(
            text(&["--noconvert"]),
            "500M||billing=2,cpu=2,mem=500M,node=1\n|1263616|\n"
        );
        assert_eq!(
            text(&["--noconvert", "--units=M"]),
            "500M||billing=2,cpu=2,mem=500M,node=1\n|1.21M|\n",
            "--units wins"
        );
        let bad = parse(&words(&["--units=x"]), &|_| None, 0, NOW, 0).unwrap_err();
        assert_eq!(
            bad,
            "sacct: error: Invalid unit type 'x'. Possible options are 'KMGTP'\nsacct: fatal: Invalid unit type\n"
        );
    }

    #[test]
    fn truncate_cuts_times_to_the_window() {
        let long_ago = |mut r: JobRecord| {
            r.submit_time = NOW - 8000;
            r.eligible_time = NOW - 8000;
            r
        };
        let mut early = long_ago(rec(1, "early", "COMPLETED"));
        early.start_time = NOW - 7200;
        early.end_time = NOW - 1800;
        let mut running = long_ago(rec(2, "running", "RUNNING"));
        running.start_time = NOW - 1200;
        running.end_time = 0;
        let mut pending = long_ago(rec(3, "pending", "PENDING"));
        pending.start_time = 0;
        pending.end_time = 0;
        pending.batch = None;
        let o = opts(&["-a", "-T", "-S", "now-1hour", "-E", "now-10minutes"]);
        let mut shown = select(vec![early, running, pending], &o, "c");
        truncate(&mut shown, &o, NOW);
        let times: Vec<(i64, i64)> = shown.iter().map(|r| (r.start_time, r.end_time)).collect();
        assert_eq!(
            times,
            vec![
                (NOW - 3600, NOW - 1800),
                (NOW - 1200, NOW - 600),
                (NOW - 600, NOW - 600)
            ]
        );
        // A step that ends after the window ends with it; one wholly after it shows no times.
        let batch = shown[1].batch.as_ref().expect("batch step");
        assert_eq!((batch.start_time, batch.end_time), (0, 0));
        let o = opts(&[
            "-a",
            "-P",
            "-n",
            "-X",
            "-T",
            "-o",
            "JobID,Elapsed",
            "-S",
            "now-1hour",
        ]);
        assert!(table(&shown[..1], &o, NOW, "c", 0).contains("1|00:30:00\n"));
    }

    #[test]
    fn completion_reason_and_constraint_filters() {
        let mut gpu = rec(1, "gpu", "COMPLETED");
        gpu.constraints = "a100&ib".into();
        gpu.reason = "Priority".into();
        let mut live = rec(2, "live", "RUNNING");
        live.end_time = 0;
        live.constraints = "ib".into();
        let all = vec![gpu, live];
        let ids = |a: &[&str]| {
            select(all.clone(), &opts(&[&["-a"], a].concat()), "c")
                .iter()
                .map(|r| r.job_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&["-C", "ib"]), vec![1, 2]);
        assert_eq!(ids(&["-C", "ib,a100"]), vec![1], "every constraint listed");
        assert_eq!(ids(&["-R", "priority"]), vec![1], "reasons ignore case");
        assert_eq!(ids(&["-R", "Resources,Dependency"]), Vec::<u64>::new());
        assert_eq!(ids(&["-c"]), vec![1], "the completion log holds ended jobs");
        let o = opts(&["-a", "-c"]);
        assert!(o.no_steps);
        assert_eq!(
            o.columns.iter().map(|c| c.name).collect::<Vec<_>>(),
            [
                "JobID",
                "UID",
                "JobName",
                "Partition",
                "NNodes",
                "NodeList",
                "State",
                "End"
            ]
        );
        let names = |a: &[&str]| opts(a).columns.iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(&["-c", "-b"]), ["JobID", "UID", "State"]);
        assert_eq!(names(&["-c", "-l"]).len(), 10);
        let bad = parse(&words(&["-R", "Lunch"]), &|_| None, 0, NOW, 0).unwrap_err();
        assert_eq!(bad, "sacct: fatal: unrecognized job reason value 'Lunch'\n");
        let o = opts(&["-a", "-o", "JobID,Constraints", "-P", "-n", "-X"]);
        assert_eq!(table(&all[..1], &o, NOW, "c", 0), "1|a100&ib\n");
        assert!(help_reasons().starts_with(&format!("{:<39} {:<39}\n", "None", "Prolog")));
    }

    #[test]
    fn batch_script_and_environment() {
        let mut kept = rec(5, "k", "COMPLETED");
        kept.script = Some("#!/bin/sh\ntrue\n".into());
        kept.environment = Some("A=1\nB=2\n".into());
        let bare = rec(6, "b", "COMPLETED");
        let all = vec![kept, bare];
        let o = opts(&["-B", "-j", "5,6"]);
        assert!(o.no_steps);
        let dashes = "-".repeat(80);
        assert_eq!(
            kept_text(&select(all.clone(), &o, "c"), &o),
            format!("Batch Script for 5\n{dashes}\n#!/bin/sh\ntrue\nBatch Script for 6\n{dashes}\nNONE\n")
        );
        let o = opts(&["--env-vars", "-n", "-j", "5"]);
        assert_eq!(kept_text(&select(all.clone(), &o, "c"), &o), "A=1\nB=2\n");
        let err = |a: &[&str]| parse(&words(a), &|_| None, 0, NOW, 0).unwrap_err();
        assert_eq!(
            err(&["-B"]),
            "sacct: fatal: When requesting job scripts you must also request specific jobs with the '-j' option.\n"
        );
        assert_eq!(
            err(&["--env-vars"]),
            "sacct: fatal: When requesting job environment you must also request specific jobs with the '-j' option.\n"
        );
        assert_eq!(
            err(&["-B", "--env-vars", "-j", "5"]),
            "sacct: fatal: Options --batch-script and --env-vars are mutually exclusive\n"
        );
    }

    #[test]
    fn array_task_selection() {
        let mut t1 = rec(11, "a", "COMPLETED");
        t1.array_job_id = 10;
        t1.array_task_id = Some(1);
        let mut meta = rec(10, "a", "PENDING");
        meta.array_job_id = 10;
        meta.array_pending = "2-4,7".into();
        let all = vec![t1, meta];
        let ids = |a: &[&str]| {
            select(all.clone(), &opts(a), "c")
                .iter()
                .map(display_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&["-j", "10"]), vec!["10_1", "10_[2-4,7]"]);
        assert_eq!(ids(&["-j", "10_1"]), vec!["10_1"]);
        assert_eq!(ids(&["-j", "10_3"]), vec!["10_[2-4,7]"]);
        assert_eq!(ids(&["-j", "11"]), vec!["10_1"], "a task's own id names it");
        assert_eq!(ids(&["-j", "10_5"]), Vec::<String>::new());
    }

    #[test]
    fn sizes_and_times_print_as_slurm_converts_them() {
        assert_eq!(convert_num_unit(1234 * 1024, 0, Conversion::Exact), "1234K");
        assert_eq!(convert_num_unit(2048 * 1024, 0, Conversion::Exact), "2M");
        assert_eq!(convert_num_unit(0, 0, Conversion::Exact), "0");
        assert_eq!(cpu_text(1500), "00:01.500");
        assert_eq!(cpu_text(61_000), "00:01:01");
        assert_eq!(cpu_text(3_600_000), "01:00:00");
        assert_eq!(secs_text(90_061), "1-01:01:01");
        assert_eq!(exit_text(130, 0), "2:0");
    }

    /// The jobs of crates/cli/tests/golden/slurm-22.05.8/sacct.txt (see its README): all
    /// submitted in one second, as root, to partition `bench` of cluster `bench`; node
    /// memory 64000 MB (Slurm's ReqMem without `--mem`).
    fn captured() -> Vec<JobRecord> {
        let t = NOW - 60;
        let job = |id: u64, name: &str, state: &str, node: &str| {
            let mut r = rec(id, name, state);
            r.account = "root".into();
            r.user = "root".into();
            r.uid = 0;
            r.gid = 0;
            r.partition = "bench".into();
            r.submit_time = t;
            r.eligible_time = t;
            r.start_time = t;
            r.end_time = t + 1;
            r.time_limit_min = None;
            r.alloc_cpus = 1;
            r.req_cpus = 1;
            r.req_mem_mb = 64_000;
            r.priority = 4_294_901_760 - id as u32;
            r.node_list = node.into();
            let step = r.batch.as_mut().unwrap();
            step.node = node.into();
            step.cpus = 1;
            step.max_rss_kb = None;
            step.total_cpu_ms = None;
            r
        };
        let mut bad = job(2, "bad", "FAILED", "n1");
        bad.exit_code = 3;
        let step = bad.batch.as_mut().unwrap();
        step.exit_code = 3;
        let mut long = job(3, "long", "CANCELLED", "n1");
        long.cancelled_by = Some(0);
        long.batch.as_mut().unwrap().exit_signal = 15;
        let mut big = job(6, "longjobname", "COMPLETED", "n2");
        big.req_mem_mb = 500;
        let task = |id: u64, t: u32, node: &str| {
            let mut r = job(id, "arr", "COMPLETED", node);
            r.array_job_id = 4;
            r.array_task_id = Some(t);
            r
        };
        let mut held = job(5, "held", "PENDING", "");
        held.eligible_time = 0;
        held.start_time = 0;
        held.end_time = 0;
        held.batch = None;
        held.priority = 0;
        vec![
            task(4, 2, "n2"),
            job(1, "ok", "COMPLETED", "n1"),
            bad,
            long,
            held,
            big,
            task(7, 0, "n1"),
            task(8, 1, "n1"),
        ]
    }

    fn run(cmd: &str) -> String {
        let args: Vec<String> = cmd.split(' ').skip(1).map(str::to_string).collect();
        match parse(&args, &|_| None, 0, NOW, 0) {
            Ok(o) => table(&select(captured(), &o, "bench"), &o, NOW, "bench", 0),
            Err(e) => e,
        }
    }

    /// Byte for byte against Slurm 22.05.8 with slurmdbd (golden file).
    #[test]
    fn golden_outputs_from_slurm_22_05() {
        use crate::format::testdata::golden;
        for cmd in [
            "sacct -a",
            "sacct -o JobID,State,NodeList --parsable2 -j 1 -j 3",
            "sacct -j 3 -o jobid%-20,state%20,jobname%3,exitcode%-4",
            "sacct -j 5 -b",
            "sacct -X -b -n -p -j 1,3",
            "sacct -j 4 -X -P --delimiter=, -o jobid,jobidraw,state",
            "sacct -o bogus",
            "sacct -l -o jobid",
            "sacct --bogus",
        ] {
            assert_eq!(run(cmd), golden("sacct", cmd), "{cmd}");
        }
        // Every field of this section but AllocTRES, which is `billing=1,cpu=1,node=1` there
        // (that Slurm did not track memory) and carries the allocated memory in drover.
        let cmd = "sacct -j 2,3,6,4_1 -P -o jobid,jobidraw,jobname,partition,account,user,uid,alloccpus,state,exitcode,timelimit,nodelist,nnodes,ncpus,reqmem,maxrss,totalcpu,reason,reqcpus,reqnodes,qos,cluster,derivedexitcode,gid,group,alloctres";
        let want: String = golden("sacct", cmd)
            .lines()
            .map(|l| format!("{}\n", &l[..l.rfind('|').unwrap()]))
            .collect();
        let ours = run(cmd.trim_end_matches(",alloctres"));
        assert_eq!(ours, want);
    }

    #[test]
    fn help_fields_lists_four_per_line() {
        let text = help_fields();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "Account             AdminComment        AllocCPUS           AllocNodes         "
        );
        assert_eq!(text.lines().count(), FIELDS.len().div_ceil(4));
    }

    #[test]
    fn json_carries_the_records() {
        let mut r = rec(9, "j", "CANCELLED");
        r.cancelled_by = Some(0);
        let o = opts(&["-j", "9", "--json"]);
        let v: serde_json::Value =
            serde_json::from_str(&json(&[r], &o, NOW, "c", &words(&["--json"]))).unwrap();
        assert_eq!(v["jobs"][0]["job_id"], 9);
        assert_eq!(v["jobs"][0]["state"]["current"][0], "CANCELLED");
        assert_eq!(v["jobs"][0]["kill_request_user"], "0");
        assert_eq!(v["jobs"][0]["steps"][0]["step"]["name"], "batch");
        assert_eq!(v["meta"]["slurm"]["cluster"], "c");
    }
}
