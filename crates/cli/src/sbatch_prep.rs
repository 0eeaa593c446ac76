//! Everything `sbatch` does before the Submit RPC: option parsing (GNU `getopt_long` rules, as
//! Slurm uses them), reading and checking the batch script, `#SBATCH` directives, `SBATCH_*`
//! environment variables, defaults and validation. Pure: the caller passes argv, the
//! environment, stdin, the working directory and the user; the result is a `JobSpec` or the
//! exact stderr text and exit code Slurm would produce.
//!
//! References (SchedMD/slurm, tag slurm-25-11-7-1 unless noted):
//! * `src/sbatch/sbatch.c` `_get_script_buffer`, `_script_wrap`: script checks and messages.
//! * `src/sbatch/opt.c` `_opt_batch_script`, `get_argument`, `_set_options`, env table.
//! * `src/common/slurm_opt.c` (option table, `arg_set_*` messages, `_validate_memory_options`),
//!   `src/common/proc_args.c` (`str_to_mbytes`, `get_resource_arg_range`, `parse_int`),
//!   `src/common/parse_time.c` (`time_str2mins`).
//! * Observed with real Slurm 22.05.8 (Debian) on this machine; the texts in the tests below
//!   were copied from its stderr.
//!
//! Precedence (man1/sbatch.1): command line > `SBATCH_*` environment > `#SBATCH` directives.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use drover_proto::{JobSpec, KeyValue};
use drover_scheduler::depend::{parse_array, Dependency, MAX_ARRAY_SIZE};
use drover_scheduler::time::parse_begin;
use drover_scheduler::{time, units};

/// The wall clock, for `--begin` forms relative to now.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// slurmctld's default `max_script_size` (src/common/read_config.h `DEFAULT_BATCH_SCRIPT_LIMIT`).
pub const MAX_SCRIPT_BYTES: usize = 4 * 1024 * 1024;

/// Slurm's `error_exit` default.
const EXIT_ERROR: i32 = 1;
/// `exit(-1)` after an option error (`slurm_process_option_or_exit`, invalid directive).
const EXIT_OPTION: i32 = 255;

const TRY_HELP: &str = "Try \"sbatch --help\" for more information";

/// Who submits: filled from the process credentials and the host name by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub host: String,
}

/// A job ready to submit, plus the output flags that change what sbatch prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// `-W/--wait`: wait for the job to end, and exit with its exit code.
    pub wait: bool,
    /// `--test-only`: say when the job would start; submit nothing.
    pub test_only: bool,
    pub spec: JobSpec,
    /// `--parsable`: print `<id>` instead of `Submitted batch job <id>`.
    pub parsable: bool,
    /// `-Q/--quiet`: print nothing on success.
    pub quiet: bool,
}

/// What to print on stderr (the full text, each line ending in `\n`) and the exit code. Exit
/// code 0 is no error: `--help`, `--usage` and `--version` end sbatch there, their text goes
/// to stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbatchError {
    pub message: String,
    pub exit_code: i32,
}

/// `sbatch --usage` (Slurm's `_usage`, for the options drover takes).
pub const USAGE: &str = "Usage: sbatch [-N nnodes] [-n ntasks] [-c ncpus] [-p partition]
              [-J jobname] [-o out] [-e err] [-D path] [-t minutes] [--mem=MB]
              [--mem-per-cpu=MB] [--gres=list] [--gpus=n] [-C list] [-w hosts] [-x hosts]
              [--exclusive] [--hold] [--begin=time] [-d type:jobid] [--array=indexes]
              [--nice[=value]] [--export[=names]] [--signal=[B:]num[@time]]
              [--open-mode=append|truncate] [--parsable] [--test-only] [--wait]
              [--wrap=command] executable [args...]
";

/// `sbatch --help`: the options drover takes, in Slurm's layout.
pub const HELP: &str = "Usage: sbatch [OPTIONS(0)...] [ : [OPTIONS(N)...]] script(0) [args(0)...]

Parallel run options:
  -a, --array=indexes         job array index values
      --begin=time            defer job until HH:MM MM/DD/YY
  -c, --cpus-per-task=ncpus   number of cpus required per task
  -d, --dependency=type:jobid[:time] defer job until condition on jobid is satisfied
  -D, --chdir=directory       set working directory for batch script
  -e, --error=err             file for batch script's standard error
      --export[=names]        specify environment variables to export
  -H, --hold                  submit job in held state
  -J, --job-name=jobname      name of job
  -n, --ntasks=ntasks         number of tasks to run
      --nice[=value]          decrease scheduling priority by value
      --ntasks-per-node=n     number of tasks to invoke on each node
  -N, --nodes=N               number of nodes on which to run (N = min[-max])
  -o, --output=out            file for batch script's standard output
      --open-mode={append|truncate} output file open mode
  -p, --partition=partition   partition requested
      --parsable              outputs only the jobid and cluster name (if present),
                              separated by semicolon, only on successful submission.
  -Q, --quiet                 quiet mode (suppress informational messages)
      --signal=[[R][B]:]num[@time] send signal when time limit within time seconds
  -t, --time=minutes          time limit
      --test-only             validate batch script but do not submit
  -W, --wait                  wait for completion of submitted job
      --wrap[=command string] wrap command string in a sh script and submit

Constraint options:
  -C, --constraint=list       specify a list of constraints
      --mem=MB                minimum amount of real memory
      --mem-per-cpu=MB        maximum amount of real memory per allocated cpu
  -w, --nodelist=hosts...     request a specific list of hosts
  -x, --exclude=hosts...      exclude a specific list of hosts

Consumable resources related options:
      --exclusive             allocate nodes in exclusive mode

GPU scheduling options:
      --cpus-per-gpu=n        number of CPUs required per allocated GPU
  -G, --gpus=n                count of GPUs required for the job
      --gpus-per-node=n       number of GPUs required per allocated node
      --gpus-per-task=n       number of GPUs required per spawned task
      --gres=list             required generic resources
      --mem-per-gpu=n         real memory required per allocated GPU

Help options:
  -h, --help                  show this help message
      --usage                 display brief usage message

Other options:
  -V, --version               output version information and exit

drover takes every option of Slurm's sbatch; those not listed here are accepted and change
nothing in drover, or are refused with an error naming them.
";

impl SbatchError {
    /// Not an error: text for stdout, exit code 0 (`--help`, `--usage`, `--version`).
    fn info(text: String) -> Self {
        SbatchError {
            message: text,
            exit_code: 0,
        }
    }

    fn error(lines: &[&str], exit_code: i32) -> Self {
        let mut message = String::new();
        for line in lines {
            message.push_str("sbatch: error: ");
            message.push_str(line);
            message.push('\n');
        }
        SbatchError { message, exit_code }
    }

    fn fatal(line: &str) -> Self {
        SbatchError {
            message: format!("sbatch: fatal: {line}\n"),
            exit_code: EXIT_ERROR,
        }
    }

    /// A getopt diagnostic followed by Slurm's usage hint (`arg_set__unknown_sbatch`).
    fn getopt(line: &str) -> Self {
        SbatchError {
            message: format!("sbatch: {line}\n{TRY_HELP}\n"),
            exit_code: EXIT_OPTION,
        }
    }
}

impl fmt::Display for SbatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end())
    }
}

impl std::error::Error for SbatchError {}

// ---------------------------------------------------------------------------------------------
// Option table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HasArg {
    No,
    Required,
    Optional,
}

/// What an option does in this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    JobName,
    Partition,
    Nodes,
    Ntasks,
    CpusPerTask,
    Mem,
    MemPerCpu,
    Time,
    Output,
    Error,
    Chdir,
    Parsable,
    Quiet,
    Hold,
    Wrap,
    NtasksPerNode,
    Gres,
    GpusPerNode,
    Constraint,
    Exclusive,
    Oversubscribe,
    Qos,
    Nodelist,
    Exclude,
    Nice,
    Array,
    Begin,
    Dependency,
    Signal,
    Gpus,
    GpusPerTask,
    CpusPerGpu,
    MemPerGpu,
    Export,
    OpenMode,
    Requeue,
    NoRequeue,
    Wait,
    TestOnly,
    /// `--help`, `--usage`, `--version`: print and exit 0, at the first pass (as Slurm does).
    Help,
    Usage,
    Version,
    /// Accepted and ignored in this first version (does not change the job here).
    Ignored,
    /// Known to Slurm but would change sbatch's behaviour in ways we do not implement; rejected
    /// rather than silently ignored.
    Unsupported,
}

#[derive(Debug)]
struct OptDef {
    long: &'static str,
    short: Option<char>,
    has_arg: HasArg,
    key: Key,
}

const fn opt(long: &'static str, short: Option<char>, has_arg: HasArg, key: Key) -> OptDef {
    OptDef {
        long,
        short,
        has_arg,
        key,
    }
}

use HasArg::{No, Optional, Required};

/// sbatch's option table (src/common/slurm_opt.c, every entry with an sbatch setter, 25.11).
/// The full list matters even for ignored options: GNU getopt accepts unambiguous prefixes, and
/// whether `--mem-per` is ambiguous depends on every name.
static OPTIONS: &[OptDef] = &[
    // Options that shape the job.
    opt("job-name", Some('J'), Required, Key::JobName),
    opt("partition", Some('p'), Required, Key::Partition),
    opt("nodes", Some('N'), Required, Key::Nodes),
    opt("ntasks", Some('n'), Required, Key::Ntasks),
    opt("cpus-per-task", Some('c'), Required, Key::CpusPerTask),
    opt("mem", None, Required, Key::Mem),
    opt("mem-per-cpu", None, Required, Key::MemPerCpu),
    opt("time", Some('t'), Required, Key::Time),
    opt("output", Some('o'), Required, Key::Output),
    opt("error", Some('e'), Required, Key::Error),
    opt("chdir", Some('D'), Required, Key::Chdir),
    opt("parsable", None, No, Key::Parsable),
    opt("quiet", Some('Q'), No, Key::Quiet),
    opt("hold", Some('H'), No, Key::Hold),
    opt("wrap", None, Required, Key::Wrap),
    opt("ntasks-per-node", None, Required, Key::NtasksPerNode),
    opt("tasks-per-node", None, Required, Key::NtasksPerNode),
    // Accepted, no effect yet.
    opt("account", Some('A'), Required, Key::Ignored),
    opt("acctg-freq", None, Required, Key::Ignored),
    opt("array", Some('a'), Required, Key::Array),
    opt("batch", None, Required, Key::Ignored),
    opt("begin", Some('b'), Required, Key::Begin),
    opt("bb", None, Required, Key::Ignored),
    opt("cluster-constraint", None, Required, Key::Ignored),
    opt("clusters", Some('M'), Required, Key::Ignored),
    opt("cluster", None, Required, Key::Ignored),
    opt("comment", None, Required, Key::Ignored),
    opt("constraint", Some('C'), Required, Key::Constraint),
    opt("consolidate-segments", None, No, Key::Ignored),
    opt("container", None, Required, Key::Ignored),
    opt("container-id", None, Required, Key::Ignored),
    opt("context", None, Required, Key::Ignored),
    opt("contiguous", None, No, Key::Ignored),
    opt("core-spec", Some('S'), Required, Key::Ignored),
    opt("cores-per-socket", None, Required, Key::Ignored),
    opt("cpu-freq", None, Required, Key::Ignored),
    opt("cpus-per-gpu", None, Required, Key::CpusPerGpu),
    opt("deadline", None, Required, Key::Ignored),
    opt("delay-boot", None, Required, Key::Ignored),
    opt("dependency", Some('d'), Required, Key::Dependency),
    opt("distribution", Some('m'), Required, Key::Ignored),
    opt("exclude", Some('x'), Required, Key::Exclude),
    opt("exclusive", None, Optional, Key::Exclusive),
    opt("export", None, Required, Key::Export),
    opt("extra", None, Required, Key::Ignored),
    opt("extra-node-info", Some('B'), Required, Key::Ignored),
    opt("get-user-env", None, Optional, Key::Ignored),
    opt("gpu-bind", None, Required, Key::Ignored),
    opt("gpu-freq", None, Required, Key::Ignored),
    opt("gpus", Some('G'), Required, Key::Gpus),
    opt("gpus-per-node", None, Required, Key::GpusPerNode),
    opt("gpus-per-socket", None, Required, Key::Ignored),
    opt("gpus-per-task", None, Required, Key::GpusPerTask),
    opt("gres", None, Required, Key::Gres),
    opt("gres-flags", None, Required, Key::Ignored),
    opt("hint", None, Required, Key::Ignored),
    opt("ignore-pbs", None, No, Key::Ignored),
    opt("input", Some('i'), Required, Key::Ignored),
    opt("kill-on-invalid-dep", None, Required, Key::Ignored),
    opt("licenses", Some('L'), Required, Key::Ignored),
    opt("mail-type", None, Required, Key::Ignored),
    opt("mail-user", None, Required, Key::Ignored),
    opt("mcs-label", None, Required, Key::Ignored),
    opt("mem-bind", None, Required, Key::Ignored),
    opt("mem-per-gpu", None, Required, Key::MemPerGpu),
    opt("mincpus", None, Required, Key::Ignored),
    opt("network", None, Required, Key::Ignored),
    opt("nice", None, Optional, Key::Nice),
    opt("no-kill", Some('k'), Optional, Key::Ignored),
    opt("no-requeue", None, No, Key::NoRequeue),
    opt("nodefile", Some('F'), Required, Key::Ignored),
    opt("nodelist", Some('w'), Required, Key::Nodelist),
    opt("ntasks-per-core", None, Required, Key::Ignored),
    opt("ntasks-per-socket", None, Required, Key::Ignored),
    opt("ntasks-per-tres", None, Required, Key::Ignored),
    opt("ntasks-per-gpu", None, Required, Key::Ignored),
    opt("oom-kill-step", None, Optional, Key::Ignored),
    opt("open-mode", None, Required, Key::OpenMode),
    opt("overcommit", Some('O'), No, Key::Ignored),
    opt("oversubscribe", Some('s'), No, Key::Oversubscribe),
    opt("prefer", None, Required, Key::Ignored),
    opt("priority", None, Required, Key::Ignored),
    opt("profile", None, Required, Key::Ignored),
    opt("propagate", None, Optional, Key::Ignored),
    opt("qos", Some('q'), Required, Key::Qos),
    opt("reboot", None, No, Key::Ignored),
    opt("requeue", None, Optional, Key::Requeue),
    opt("reservation", None, Required, Key::Ignored),
    opt("resources", None, Required, Key::Ignored),
    opt("resv-ports", None, Optional, Key::Ignored),
    opt("segment", None, Required, Key::Ignored),
    opt("signal", None, Required, Key::Signal),
    opt("sockets-per-node", None, Required, Key::Ignored),
    opt("spread-job", None, No, Key::Ignored),
    opt("spread-segments", None, No, Key::Ignored),
    opt("stepmgr", None, No, Key::Ignored),
    opt("switches", None, Required, Key::Ignored),
    opt("thread-spec", None, Required, Key::Ignored),
    opt("threads-per-core", None, Required, Key::Ignored),
    opt("time-min", None, Required, Key::Ignored),
    opt("tmp", None, Required, Key::Ignored),
    opt("tres-bind", None, Required, Key::Ignored),
    opt("tres-per-task", None, Required, Key::Ignored),
    opt("use-min-nodes", None, No, Key::Ignored),
    opt("verbose", Some('v'), No, Key::Ignored),
    opt("wait-all-nodes", None, Required, Key::Ignored),
    opt("wckey", None, Required, Key::Ignored),
    // Recognised, but they change what sbatch itself does; refused for now.
    opt("bbf", None, Required, Key::Unsupported),
    opt("autocomplete", None, Required, Key::Unsupported),
    opt("export-file", None, Required, Key::Unsupported),
    opt("external", None, No, Key::Unsupported),
    opt("gid", None, Required, Key::Unsupported),
    opt("help", Some('h'), No, Key::Help),
    opt("test-only", None, No, Key::TestOnly),
    opt("uid", None, Required, Key::Unsupported),
    opt("usage", None, No, Key::Usage),
    opt("version", Some('V'), No, Key::Version),
    opt("wait", Some('W'), No, Key::Wait),
];

/// Environment variables that set options (src/sbatch/opt.c `env_vars`), restricted to the ones
/// whose options exist in [`OPTIONS`]. Applied in this order, after directives, before the CLI.
static ENV_OPTIONS: &[(&str, &str)] = &[
    ("SBATCH_ACCOUNT", "account"),
    ("SBATCH_ARRAY_INX", "array"),
    ("SBATCH_CONSTRAINT", "constraint"),
    ("SBATCH_EXCLUSIVE", "exclusive"),
    ("SBATCH_EXPORT", "export"),
    ("SBATCH_GRES", "gres"),
    ("SBATCH_JOB_NAME", "job-name"),
    ("SBATCH_MEM_PER_CPU", "mem-per-cpu"),
    ("SBATCH_MEM_PER_NODE", "mem"),
    ("SBATCH_NO_REQUEUE", "no-requeue"),
    ("SBATCH_OPEN_MODE", "open-mode"),
    ("SBATCH_PARTITION", "partition"),
    ("SBATCH_QOS", "qos"),
    ("SBATCH_REQUEUE", "requeue"),
    ("SBATCH_SIGNAL", "signal"),
    ("SBATCH_TIMELIMIT", "time"),
    ("SBATCH_WCKEY", "wckey"),
    ("SBATCH_ERROR", "error"),
    ("SBATCH_OUTPUT", "output"),
];

/// One parsed option occurrence.
#[derive(Debug, Clone)]
struct Occurrence {
    def: &'static OptDef,
    value: Option<String>,
}

/// GNU `getopt_long` with a leading `+` in the option string (stop at the first non-option, as
/// Slurm's `slurm_option_table_create` builds it). `args` excludes argv[0].
/// Returns the options and the index of the first non-option argument.
fn getopt(args: &[String]) -> Result<(Vec<Occurrence>, usize), SbatchError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            return Ok((out, i + 1));
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let def = lookup_long(name, arg)?;
            let value = match def.has_arg {
                No => {
                    if inline.is_some() {
                        return Err(SbatchError::getopt(&format!(
                            "option '--{}' doesn't allow an argument",
                            def.long
                        )));
                    }
                    None
                }
                Optional => inline,
                Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => Some(v.clone()),
                            None => {
                                return Err(SbatchError::getopt(&format!(
                                    "option '--{}' requires an argument",
                                    def.long
                                )))
                            }
                        }
                    }
                },
            };
            out.push(Occurrence { def, value });
            i += 1;
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            // A cluster of short options: -QH, -J name, -Jname.
            let chars: Vec<char> = arg.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let Some(def) = OPTIONS.iter().find(|d| d.short == Some(c)) else {
                    return Err(SbatchError::getopt(&format!("invalid option -- '{c}'")));
                };
                let rest: String = chars[k + 1..].iter().collect();
                match def.has_arg {
                    No => {
                        out.push(Occurrence { def, value: None });
                        k += 1;
                    }
                    Optional => {
                        let value = if rest.is_empty() { None } else { Some(rest) };
                        out.push(Occurrence { def, value });
                        break;
                    }
                    Required => {
                        let value = if !rest.is_empty() {
                            rest
                        } else {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.clone(),
                                None => {
                                    return Err(SbatchError::getopt(&format!(
                                        "option requires an argument -- '{c}'"
                                    )))
                                }
                            }
                        };
                        out.push(Occurrence {
                            def,
                            value: Some(value),
                        });
                        break;
                    }
                }
            }
            i += 1;
            continue;
        }
        // First non-option: stop (the script and its arguments follow).
        return Ok((out, i));
    }
    Ok((out, i))
}

/// Exact long name, else a unique prefix (glibc's rule), else an error worded like glibc's.
fn lookup_long(name: &str, whole_arg: &str) -> Result<&'static OptDef, SbatchError> {
    if let Some(def) = OPTIONS.iter().find(|d| d.long == name) {
        return Ok(def);
    }
    let candidates: Vec<&'static OptDef> = if name.is_empty() {
        Vec::new()
    } else {
        OPTIONS
            .iter()
            .filter(|d| d.long.starts_with(name))
            .collect()
    };
    match candidates.len() {
        0 => Err(SbatchError::getopt(&format!(
            "unrecognized option '{whole_arg}'"
        ))),
        1 => Ok(candidates[0]),
        _ => {
            let mut names: Vec<&str> = candidates.iter().map(|d| d.long).collect();
            names.sort_unstable();
            let list: Vec<String> = names.iter().map(|n| format!("'--{n}'")).collect();
            Err(SbatchError::getopt(&format!(
                "option '{whole_arg}' is ambiguous; possibilities: {}",
                list.join(" ")
            )))
        }
    }
}

/// `--gres=gpu[:type][:N][,other...]`: the GPUs per node (other resources are not known here).
fn parse_gres(value: &str) -> Result<Option<(u32, Option<String>)>, SbatchError> {
    let bad = || {
        SbatchError::error(
            &["Invalid generic resource (gres) specification"],
            EXIT_OPTION,
        )
    };
    let mut gpus = None;
    for item in value.split(',').filter(|s| !s.is_empty()) {
        if item == "none" {
            continue;
        }
        let parts: Vec<&str> = item.split(':').collect();
        if parts[0] != "gpu" {
            return Err(bad());
        }
        gpus = Some(match parts.as_slice() {
            [_] => (1, None),
            [_, n] if n.parse::<u32>().is_ok() => (n.parse().map_err(|_| bad())?, None),
            [_, t] => (1, Some(t.to_string())),
            [_, t, n] => (n.parse().map_err(|_| bad())?, Some(t.to_string())),
            _ => return Err(bad()),
        });
    }
    Ok(gpus)
}

/// `--gpus-per-node=[type:]N`.
fn parse_gpus(value: &str, flag: &str) -> Result<(u32, Option<String>), SbatchError> {
    let bad = || SbatchError::error(&[&format!("Invalid {flag} specification")], EXIT_OPTION);
    match value.split_once(':') {
        Some((t, n)) => Ok((n.parse().map_err(|_| bad())?, Some(t.to_string()))),
        None => Ok((value.parse().map_err(|_| bad())?, None)),
    }
}

fn parse_hostlist(value: &str, flag: &str) -> Result<Vec<String>, SbatchError> {
    drover_scheduler::hostlist::expand(value)
        .map_err(|e| SbatchError::error(&[&format!("Invalid {flag} host list: {e}")], EXIT_OPTION))
}

// ---------------------------------------------------------------------------------------------
// Option values
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Directive,
    Env,
    Cli,
}

#[derive(Debug, Default, Clone)]
struct Opts {
    job_name: Option<String>,
    partition: Option<String>,
    nodes: Option<(u32, Option<u32>)>,
    ntasks: Option<u32>,
    cpus_per_task: Option<u32>,
    mem_mb: Option<(u64, Source)>,
    mem_per_cpu_mb: Option<(u64, Source)>,
    /// `Some(None)` = UNLIMITED was asked for explicitly.
    time_limit_min: Option<Option<u64>>,
    output: Option<String>,
    error: Option<String>,
    chdir: Option<String>,
    parsable: bool,
    quiet: bool,
    hold: bool,
    wrap: Option<String>,
    ntasks_per_node: Option<u32>,
    /// GPUs per node and their type.
    gpus: Option<(u32, Option<String>)>,
    constraint: Option<String>,
    exclusive: bool,
    /// `-s/--oversubscribe` (the later of it and `--exclusive` wins, as in Slurm).
    oversubscribe: bool,
    /// `-q/--qos` (checked by the controller: `Invalid qos specification`).
    qos: Option<String>,
    nodelist: Vec<String>,
    exclude: Vec<String>,
    nice: Option<i32>,
    /// `--array`, validated, as given.
    array: Option<String>,
    /// `--begin`, as Unix seconds.
    begin: Option<i64>,
    /// `--dependency`, validated, as given.
    dependency: Option<String>,
    /// `--signal`: (signal, seconds before the time limit, batch shell only).
    signal: Option<(i32, u32, bool)>,
    /// `-G/--gpus=[type:]N` (for the whole job) and `--gpus-per-task=[type:]N`.
    gpus_total: Option<(u32, Option<String>)>,
    gpus_per_task: Option<(u32, Option<String>)>,
    cpus_per_gpu: Option<u32>,
    mem_per_gpu_mb: Option<u64>,
    /// `--export` as given.
    export: Option<String>,
    /// `--open-mode=append`.
    open_append: bool,
    /// `--requeue` / `--no-requeue` (the last one given).
    requeue: Option<bool>,
    /// `-W/--wait`.
    wait: bool,
    /// `--test-only`.
    test_only: bool,
}

impl Opts {
    fn apply(&mut self, occ: &Occurrence, source: Source) -> Result<(), SbatchError> {
        let value = occ.value.clone().unwrap_or_default();
        match occ.def.key {
            Key::JobName => self.job_name = Some(value),
            Key::Partition => self.partition = Some(value),
            Key::Nodes => self.nodes = Some(parse_nodes(&value)?),
            Key::Ntasks => self.ntasks = Some(parse_positive(&value, "--ntasks")?),
            Key::CpusPerTask => {
                self.cpus_per_task = Some(parse_positive(&value, "--cpus-per-task")?)
            }
            Key::NtasksPerNode => {
                self.ntasks_per_node = Some(parse_positive(&value, "--ntasks-per-node")?)
            }
            Key::Mem => match parse_mem_mb(&value) {
                Some(mb) => self.mem_mb = Some((mb, source)),
                None => {
                    return Err(SbatchError::error(
                        &["Invalid --mem specification"],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::MemPerCpu => match parse_mem_mb(&value) {
                Some(mb) => self.mem_per_cpu_mb = Some((mb, source)),
                None => {
                    return Err(SbatchError::error(
                        &["Invalid --mem-per-cpu specification"],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::Time => match parse_time_limit_min(&value) {
                Some(limit) => self.time_limit_min = Some(limit),
                None => {
                    return Err(SbatchError::error(
                        &["Invalid --time specification"],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::Output => self.output = Some(value),
            Key::Error => self.error = Some(value),
            Key::Chdir => self.chdir = Some(value),
            Key::Parsable => self.parsable = true,
            Key::Quiet => self.quiet = true,
            Key::Hold => self.hold = true,
            Key::Wrap => self.wrap = Some(value),
            Key::Gres => self.gpus = parse_gres(&value)?,
            Key::GpusPerNode => self.gpus = Some(parse_gpus(&value, "--gpus-per-node")?),
            Key::Constraint => self.constraint = Some(value),
            Key::Exclusive => {
                self.exclusive = true;
                self.oversubscribe = false;
            }
            Key::Oversubscribe => {
                self.oversubscribe = true;
                self.exclusive = false;
            }
            Key::Qos => self.qos = Some(value.to_string()),
            Key::Nodelist => self.nodelist = parse_hostlist(&value, "--nodelist")?,
            Key::Exclude => self.exclude = parse_hostlist(&value, "--exclude")?,
            Key::Nice => {
                // Slurm: `--nice` alone means 100.
                let nice = if value.is_empty() {
                    Ok(100)
                } else {
                    value.parse::<i32>()
                };
                match nice {
                    Ok(n) if n.unsigned_abs() <= 2_147_483_645 => self.nice = Some(n),
                    _ => return Err(SbatchError::error(&["Invalid --nice value"], EXIT_OPTION)),
                }
            }
            Key::Array => {
                if let Err(detail) = parse_array(&value, MAX_ARRAY_SIZE) {
                    return Err(SbatchError::error(
                        &["Invalid job array specification", &detail],
                        EXIT_ERROR,
                    ));
                }
                self.array = Some(value);
            }
            Key::Begin => match parse_begin(&value, now_unix(), 0) {
                Ok(t) => self.begin = Some(t),
                Err(detail) => return Err(SbatchError::error(&[&detail], EXIT_OPTION)),
            },
            Key::Dependency => {
                let detail = Dependency::parse(&value).err();
                if let Some(detail) = detail {
                    return Err(SbatchError::error(
                        &[
                            "Batch job submission failed: Job dependency problem",
                            &detail,
                        ],
                        EXIT_ERROR,
                    ));
                }
                self.dependency = Some(value);
            }
            Key::Gpus => self.gpus_total = Some(parse_gpus(&value, "--gpus")?),
            Key::GpusPerTask => self.gpus_per_task = Some(parse_gpus(&value, "--gpus-per-task")?),
            Key::CpusPerGpu => self.cpus_per_gpu = Some(parse_positive(&value, "--cpus-per-gpu")?),
            Key::MemPerGpu => match parse_mem_mb(&value) {
                Some(mb) => self.mem_per_gpu_mb = Some(mb),
                None => {
                    return Err(SbatchError::error(
                        &["Invalid --mem-per-gpu specification"],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::Export => self.export = Some(value),
            Key::OpenMode => match value.to_ascii_lowercase().as_str() {
                "a" | "append" => self.open_append = true,
                "t" | "truncate" => self.open_append = false,
                _ => {
                    return Err(SbatchError::error(
                        &["Invalid --open-mode argument: must be \"append\" or \"truncate\""],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::Requeue => self.requeue = Some(true),
            Key::NoRequeue => self.requeue = Some(false),
            Key::Wait => self.wait = true,
            Key::TestOnly => self.test_only = true,
            // Handled in the first pass; as a `#SBATCH` line they change nothing.
            Key::Help | Key::Usage | Key::Version => {}
            Key::Signal => match parse_signal_option(&value) {
                Some(w) => self.signal = Some(w),
                None => {
                    return Err(SbatchError::error(
                        &["Invalid --signal specification"],
                        EXIT_OPTION,
                    ))
                }
            },
            Key::Ignored => {}
            Key::Unsupported => {
                return Err(SbatchError::error(
                    &[&format!(
                        "--{} is not supported by drover yet",
                        occ.def.long
                    )],
                    EXIT_ERROR,
                ))
            }
        }
        Ok(())
    }
}

/// `--signal=[{R|B}:]SIG[@SECS]` (sbatch(1); `get_signal_opts`): SIG by name or number,
/// SECS 0–65535, 60 when not given; `B:` sends it to the batch shell only.
fn parse_signal_option(value: &str) -> Option<(i32, u32, bool)> {
    let (flags, rest) = match value.split_once(':') {
        Some((f, r)) if f.chars().all(|c| matches!(c, 'R' | 'B' | 'r' | 'b')) => (f, r),
        Some(_) => return None,
        None => ("", value),
    };
    let (sig, secs) = match rest.split_once('@') {
        Some((s, t)) => (s, t.parse::<u32>().ok().filter(|&t| t <= 65_535)?),
        None => (rest, 60),
    };
    let signal = crate::scancel::parse_signal(sig)?;
    Some((
        signal as i32,
        secs,
        flags.to_ascii_uppercase().contains('B'),
    ))
}

/// `parse_int(name, arg, positive=true)` (src/common/proc_args.c): decimal, > 0, ≤ INT_MAX.
fn parse_positive(arg: &str, what: &str) -> Result<u32, SbatchError> {
    match parse_c_long(arg) {
        Some((n, "")) if n > 0 && n <= i64::from(i32::MAX) => {
            u32::try_from(n).map_err(|_| invalid_numeric(arg, what))
        }
        Some((n, "")) if n > i64::from(i32::MAX) => Err(SbatchError::error(
            &[&format!("Numeric argument ({n}) too large for {what}.")],
            EXIT_ERROR,
        )),
        _ => Err(invalid_numeric(arg, what)),
    }
}

fn invalid_numeric(arg: &str, what: &str) -> SbatchError {
    SbatchError::error(
        &[&format!("Invalid numeric value \"{arg}\" for {what}.")],
        EXIT_ERROR,
    )
}

/// `strtol(arg, &end, 10)`: leading blanks, optional sign, digits; returns the value and the
/// unparsed rest, or `None` when no digits were found.
fn parse_c_long(arg: &str) -> Option<(i64, &str)> {
    let s = arg.trim_start();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let mut n: i64 = 0;
    for b in body[..digits].bytes() {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Some((if neg { -n } else { n }, &body[digits..]))
}

/// `-N min[-max]` (src/common/proc_args.c `get_resource_arg_range`, without the rarely used
/// k/m multipliers).
fn parse_nodes(arg: &str) -> Result<(u32, Option<u32>), SbatchError> {
    let bad = || {
        SbatchError::error(
            &[&format!("\"{arg}\" is not a valid node count")],
            EXIT_OPTION,
        )
    };
    let (min_s, max_s) = match arg.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (arg, None),
    };
    let parse = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|n| *n <= i32::MAX as u32)
    };
    let min = parse(min_s).ok_or_else(bad)?;
    let max = match max_s {
        Some(s) => Some(parse(s).ok_or_else(bad)?),
        None => None,
    };
    if let Some(max) = max {
        if max < min {
            return Err(SbatchError::error(
                &[&format!(
                    "Maximum node count {max} is less than minimum node count {min}"
                )],
                EXIT_OPTION,
            ));
        }
    }
    Ok((min, max))
}

/// `str_to_mbytes` (src/common/proc_args.c), shared with the rest of drover.
fn parse_mem_mb(arg: &str) -> Option<u64> {
    units::parse_mem_mb(arg).ok()
}

/// `time_str2mins` (src/common/parse_time.c), shared with the rest of drover.
/// Returns `Some(None)` for no limit, `Some(Some(min))` for a limit, `None` when invalid.
fn parse_time_limit_min(arg: &str) -> Option<Option<u64>> {
    time::parse_time_limit(arg).ok()
}

// ---------------------------------------------------------------------------------------------
// Script
// ---------------------------------------------------------------------------------------------

/// Where the script came from; decides the default job name and `argv[0]`.
enum ScriptSource {
    File {
        path: PathBuf,
        args: Vec<String>,
    },
    Stdin,
    Wrap,
    /// srun's own allocation: no script; the command srun runs names the job.
    Srun {
        command: Vec<String>,
    },
}

/// `_get_script_buffer`'s sanity tests, in its order, with its messages.
fn check_script(buf: &[u8]) -> Result<(), SbatchError> {
    if buf.is_empty() {
        return Err(SbatchError::error(&["Batch script is empty!"], EXIT_ERROR));
    }
    // xstring_is_whitespace stops at the first NUL (C string).
    let c_str = buf.split(|b| *b == 0).next().unwrap_or_default();
    if c_str.iter().all(|b| b.is_ascii_whitespace() || *b == 0x0b) {
        return Err(SbatchError::error(
            &["Batch script contains only whitespace!"],
            EXIT_ERROR,
        ));
    }
    if !buf.starts_with(b"#!") {
        return Err(SbatchError::error(
            &[
                "This does not look like a batch script.  The first",
                "line must start with #! followed by the path to an interpreter.",
                "For instance: #!/bin/sh",
            ],
            EXIT_ERROR,
        ));
    }
    if buf.contains(&0) {
        return Err(SbatchError::error(
            &[
                "The Slurm controller does not allow scripts that",
                "contain a NULL character '\\0'.",
            ],
            EXIT_ERROR,
        ));
    }
    if buf.windows(2).any(|w| w == b"\r\n") {
        return Err(SbatchError::error(
            &[
                "Batch script contains DOS line breaks (\\r\\n)",
                "instead of expected UNIX line breaks (\\n).",
            ],
            EXIT_ERROR,
        ));
    }
    if buf.len() > MAX_SCRIPT_BYTES {
        // slurmctld `_test_job_desc_fields` → ESLURM_PATHNAME_TOO_LONG.
        return Err(SbatchError::error(
            &["Batch job submission failed: Pathname of a file, directory or other parameter too long"],
            EXIT_ERROR,
        ));
    }
    Ok(())
}

/// Read at most `MAX_SCRIPT_BYTES + 1` bytes so a huge stdin cannot exhaust memory.
fn read_capped(reader: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader
        .take(MAX_SCRIPT_BYTES as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// `_script_wrap` (src/sbatch/sbatch.c).
fn wrap_script(command: &str) -> String {
    format!("#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{command}\n")
}

/// One word from a directive line (`get_argument`, src/sbatch/opt.c). Returns the word (None when
/// the line has no more words, including an empty quoted word, exactly as Slurm stops there) and
/// the number of bytes consumed.
fn directive_word(line: &str) -> Result<(Option<String>, usize), String> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut k = 0;
    while k < chars.len() && chars[k].1.is_ascii_whitespace() {
        k += 1;
    }
    if k < chars.len() && chars[k].1 == ':' {
        return Err(format!("Unexpected `:` in [{line}]"));
    }
    let mut word = String::new();
    let mut quoted: Option<char> = None;
    let mut escape = false;
    while k < chars.len() {
        let c = chars[k].1;
        if quoted.is_none() && c.is_ascii_whitespace() || c == '\n' {
            break;
        }
        if escape {
            escape = false;
        } else if c == '\\' {
            k += 1;
            if k < chars.len() && chars[k].1 == ' ' {
                word.push(' ');
                k += 1;
            } else {
                escape = true;
            }
            continue;
        } else if let Some(q) = quoted {
            if c == q {
                quoted = None;
                k += 1;
                continue;
            }
        } else if c == '"' || c == '\'' {
            quoted = Some(c);
            k += 1;
            continue;
        } else if c == '#' {
            break;
        }
        word.push(c);
        k += 1;
    }
    if let Some(q) = quoted {
        return Err(format!("Unmatched `{q}` in [{line}]"));
    }
    let consumed = chars.get(k).map_or(line.len(), |(i, _)| *i);
    Ok(((!word.is_empty()).then_some(word), consumed))
}

/// `_opt_batch_script`: collect the words of every `#SBATCH` line before the first command.
fn directive_words(script: &str, file: &str) -> Result<Vec<String>, SbatchError> {
    let mut words = Vec::new();
    let mut warned_slurm = false;
    let mut warnings = String::new();
    for (index, line) in script.split('\n').enumerate() {
        let lineno = index + 1;
        let rest = if let Some(rest) = line.strip_prefix("#SBATCH") {
            rest
        } else if let Some(rest) = line.strip_prefix("#SLURM") {
            if !warned_slurm {
                warnings.push_str(
                    "sbatch: error: Change from #SLURM to #SBATCH in your script and verify the options are valid in sbatch\n",
                );
                warned_slurm = true;
            }
            rest
        } else {
            let first = line.chars().find(|c| !c.is_ascii_whitespace());
            match first {
                None | Some('#') => continue,
                Some(_) => break,
            }
        };
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let lower = rest.to_ascii_lowercase();
        let separator = |word: &str| {
            lower.starts_with(word)
                && lower[word.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_ascii_whitespace())
        };
        if separator("hetjob") || separator("packjob") {
            // Heterogeneous jobs are not supported: the first component ends here.
            break;
        }
        let mut pos = 0;
        loop {
            let (word, used) = directive_word(&rest[pos..]).map_err(|e| {
                let mut err = SbatchError::fatal(&format!("{file}: line {lineno}: {e}"));
                err.message.insert_str(0, &warnings);
                err
            })?;
            match word {
                Some(w) => {
                    words.push(w);
                    pos += used;
                }
                None => break,
            }
        }
    }
    Ok(words)
}

// ---------------------------------------------------------------------------------------------
// prepare
// ---------------------------------------------------------------------------------------------

/// Turn sbatch's command line into a job. `args` excludes argv[0].
pub fn prepare(
    args: &[String],
    env: &BTreeMap<String, String>,
    stdin: &mut dyn Read,
    cwd: &Path,
    user: &UserIdentity,
) -> Result<Prepared, SbatchError> {
    // First pass (process_options_first_pass): getopt over the CLI to find the script.
    let (cli, optind) = getopt(args)?;
    let rest = &args[optind.min(args.len())..];
    let mut first = Opts::default();
    for occ in &cli {
        // Only the options the first pass needs; values are validated in the second pass.
        match occ.def.key {
            Key::Wrap => first.wrap = occ.value.clone(),
            Key::Chdir => first.chdir = occ.value.clone(),
            Key::Help => return Err(SbatchError::info(HELP.to_string())),
            Key::Usage => return Err(SbatchError::info(USAGE.to_string())),
            Key::Version => {
                return Err(SbatchError::info(format!(
                    "slurm {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            _ => {}
        }
    }
    if first.wrap.is_some() && !rest.is_empty() {
        return Err(SbatchError::error(
            &["Script arguments not permitted with --wrap option"],
            EXIT_ERROR,
        ));
    }

    // The script (sbatch.c: --wrap, else file, else stdin).
    let (source, script) = if let Some(command) = &first.wrap {
        (ScriptSource::Wrap, wrap_script(command))
    } else {
        let (source, bytes) = match rest.first() {
            Some(name) => {
                let path = absolute(cwd, Path::new(name));
                let mut file = std::fs::File::open(&path).map_err(|_| {
                    SbatchError::error(&[&format!("Unable to open file {name}")], EXIT_ERROR)
                })?;
                let bytes = read_capped(&mut file).map_err(|_| {
                    SbatchError::error(&[&format!("Unable to open file {name}")], EXIT_ERROR)
                })?;
                (
                    ScriptSource::File {
                        path,
                        args: rest[1..].to_vec(),
                    },
                    bytes,
                )
            }
            None => {
                let bytes = read_capped(stdin).map_err(|e| {
                    SbatchError::error(
                        &[&format!("Unable to read batch script from stdin: {e}")],
                        EXIT_ERROR,
                    )
                })?;
                (ScriptSource::Stdin, bytes)
            }
        };
        check_script(&bytes)?;
        let script = String::from_utf8(bytes).map_err(|_| {
            SbatchError::error(&["Batch script is not valid UTF-8 text"], EXIT_ERROR)
        })?;
        (source, script)
    };

    // Second pass: directives, then environment, then the command line.
    let mut opts = Opts::default();
    let file_label = match &source {
        ScriptSource::File { path, .. } => base_name(path),
        _ => "stdin".to_string(),
    };
    let words = directive_words(&script, &file_label)?;
    if !words.is_empty() {
        let (occs, stop) = getopt(&words)?;
        for occ in &occs {
            opts.apply(occ, Source::Directive)?;
        }
        if let Some(word) = words.get(stop) {
            return Err(SbatchError::error(
                &[&format!("Invalid directive found in batch script: {word}")],
                EXIT_OPTION,
            ));
        }
    }
    for (var, long) in ENV_OPTIONS {
        let Some(value) = env.get(*var) else { continue };
        let Some(def) = OPTIONS.iter().find(|d| d.long == *long) else {
            continue;
        };
        let value = match def.has_arg {
            // Flag variables are on when empty, "yes" or non-zero (man1/sbatch.1).
            No => {
                if !flag_env_on(value) {
                    continue;
                }
                None
            }
            Optional if value.is_empty() => None,
            _ => Some(value.clone()),
        };
        opts.apply(&Occurrence { def, value }, Source::Env)?;
    }
    for occ in &cli {
        opts.apply(occ, Source::Cli)?;
    }

    build_spec(opts, source, script, env, cwd, user)
}

/// The job srun allocates for itself outside any allocation (Slurm's `BatchFlag=0` job): sbatch's
/// own option handling over `options` (sbatch's long options, as srun maps its own, each
/// `--name=value` or `--name`), no script, named after `command` (its basename) unless `-J`.
/// Errors are sbatch's texts; srun rewords their prefix.
pub fn allocation(
    options: &[String],
    command: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    user: &UserIdentity,
) -> Result<JobSpec, SbatchError> {
    let (occs, stop) = getopt(options)?;
    if let Some(word) = options.get(stop) {
        return Err(SbatchError::error(
            &[&format!(
                "unexpected word in srun's allocation options: {word}"
            )],
            EXIT_ERROR,
        ));
    }
    let mut opts = Opts::default();
    for occ in &occs {
        opts.apply(occ, Source::Cli)?;
    }
    let source = ScriptSource::Srun {
        command: command.to_vec(),
    };
    build_spec(opts, source, String::new(), env, cwd, user).map(|p| p.spec)
}

/// The submit environment as `--export` passes it on (sbatch(1)): `ALL` (the default) or
/// `ALL,VAR=val,...` (everything, plus or overriding the listed ones), `NONE` (nothing), or a
/// list `VAR[=val],...` (only those, and the `SLURM_*` variables).
fn exported(
    env: &BTreeMap<String, String>,
    export: Option<&str>,
) -> Result<BTreeMap<String, String>, SbatchError> {
    let Some(export) = export.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(env.clone());
    };
    let items: Vec<&str> = export.split(',').filter(|s| !s.is_empty()).collect();
    let all = items.iter().any(|i| i.eq_ignore_ascii_case("ALL"));
    let none = items.iter().any(|i| i.eq_ignore_ascii_case("NONE"));
    let mut out: BTreeMap<String, String> = if all {
        env.clone()
    } else if none {
        BTreeMap::new()
    } else {
        env.iter()
            .filter(|(k, _)| k.starts_with("SLURM_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for item in items {
        if item.eq_ignore_ascii_case("ALL") || item.eq_ignore_ascii_case("NONE") {
            continue;
        }
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(SbatchError::error(
                    &[&format!(
                        "Invalid --export specification `{export}`: `{item}` names no variable"
                    )],
                    EXIT_OPTION,
                ))
            }
            None => {
                if let Some(v) = env.get(item) {
                    out.insert(item.to_string(), v.clone());
                }
            }
        }
    }
    Ok(out)
}

fn flag_env_on(value: &str) -> bool {
    value.is_empty()
        || value.eq_ignore_ascii_case("yes")
        || parse_c_long(value).is_some_and(|(n, _)| n != 0)
}

fn build_spec(
    mut opts: Opts,
    source: ScriptSource,
    script: String,
    env: &BTreeMap<String, String>,
    cwd: &Path,
    user: &UserIdentity,
) -> Result<Prepared, SbatchError> {
    // _validate_memory_options (src/common/slurm_opt.c).
    match (opts.mem_mb, opts.mem_per_cpu_mb) {
        (Some((_, a)), Some((_, b))) if a != Source::Env && b != Source::Env => {
            return Err(SbatchError::fatal(
                "--mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.",
            ));
        }
        (Some((_, a)), Some(_)) if a != Source::Env => opts.mem_per_cpu_mb = None,
        (Some(_), Some((_, b))) if b != Source::Env => opts.mem_mb = None,
        (Some(_), Some(_)) => {
            return Err(SbatchError::fatal(
                "SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE are mutually exclusive.",
            ));
        }
        _ => {}
    }

    let (nodes_min, nodes_max) = opts.nodes.unwrap_or((1, None));
    if nodes_min == 0 || nodes_max == Some(0) {
        // slurmctld rejects the request with ESLURM_INVALID_NODE_COUNT (observed, 22.05.8).
        return Err(SbatchError::error(
            &["Batch job submission failed: Node count specification invalid"],
            EXIT_ERROR,
        ));
    }

    let (ntasks, ntasks_set) = match (opts.ntasks, opts.ntasks_per_node) {
        (Some(n), _) => (n, true),
        (None, Some(per_node)) => (nodes_min.saturating_mul(per_node), true),
        (None, None) => (1, false),
    };

    // GPUs per node from whichever form was given (`--gres`/`--gpus-per-node` first, then
    // per task, then for the whole job spread over its nodes); CPUs and memory per GPU then
    // size the node's share.
    let tasks_per_node = ntasks.div_ceil(nodes_min.max(1)).max(1);
    if opts.gpus.is_none() {
        opts.gpus = match (&opts.gpus_per_task, &opts.gpus_total) {
            (Some((g, t)), _) => Some((g.saturating_mul(tasks_per_node), t.clone())),
            (None, Some((n, t))) => Some((n.div_ceil(nodes_min.max(1)), t.clone())),
            (None, None) => None,
        };
    }
    let gpus_per_node = opts.gpus.as_ref().map_or(0, |g| g.0);
    if (opts.cpus_per_gpu.is_some() || opts.mem_per_gpu_mb.is_some()) && gpus_per_node == 0 {
        return Err(SbatchError::error(
            &["--cpus-per-gpu and --mem-per-gpu need GPUs: add --gpus, --gpus-per-node, --gpus-per-task or --gres=gpu:N"],
            EXIT_ERROR,
        ));
    }
    if let Some(per_gpu) = opts.cpus_per_gpu {
        if opts.cpus_per_task.is_some() {
            return Err(SbatchError::fatal(
                "--cpus-per-gpu is mutually exclusive with --cpus-per-task",
            ));
        }
        let cpus = per_gpu.saturating_mul(gpus_per_node);
        opts.cpus_per_task = Some(cpus.div_ceil(tasks_per_node).max(1));
    }
    if let Some(per_gpu) = opts.mem_per_gpu_mb {
        if opts.mem_mb.is_some() || opts.mem_per_cpu_mb.is_some() {
            return Err(SbatchError::fatal(
                "--mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.",
            ));
        }
        opts.mem_mb = Some((
            per_gpu.saturating_mul(u64::from(gpus_per_node)),
            Source::Cli,
        ));
    }
    let env = exported(env, opts.export.as_deref())?;
    let env = &env;

    let work_dir = match &opts.chdir {
        Some(dir) => absolute(cwd, Path::new(dir)),
        None => cwd.to_path_buf(),
    };

    // argv holds the script's arguments only; the script's path is Slurm's Command=.
    let (default_name, argv, command) = match source {
        ScriptSource::File { path, args } => {
            (base_name(&path), args, path.to_string_lossy().into_owned())
        }
        ScriptSource::Stdin => ("sbatch".to_string(), Vec::new(), String::new()),
        ScriptSource::Wrap => ("wrap".to_string(), Vec::new(), String::new()),
        ScriptSource::Srun { command } => (
            command
                .first()
                .map(|c| base_name(Path::new(c)))
                .unwrap_or_default(),
            Vec::new(),
            command.join(" "),
        ),
    };

    let spec = JobSpec {
        name: opts.job_name.unwrap_or(default_name),
        partition: opts.partition.unwrap_or_default(),
        nodes_min,
        nodes_max: nodes_max.unwrap_or(0),
        ntasks,
        cpus_per_task: opts.cpus_per_task.unwrap_or(1),
        mem_per_node_mb: opts.mem_mb.map_or(0, |(mb, _)| mb),
        mem_per_cpu_mb: opts.mem_per_cpu_mb.map_or(0, |(mb, _)| mb),
        // An explicit UNLIMITED (or 0) is sent as "not given": the controller then applies the
        // partition's DefaultTime, else its MaxTime (JobSpec has no way to say "infinite").
        time_limit_min: opts.time_limit_min.flatten(),
        script,
        argv,
        command,
        work_dir: work_dir.to_string_lossy().into_owned(),
        stdout: opts.output.unwrap_or_default(),
        stderr: opts.error.unwrap_or_default(),
        user: user.name.clone(),
        uid: user.uid,
        gid: user.gid,
        // Slurm sets SLURM_NTASKS_PER_NODE in the job's environment only when it was asked
        // (whatever --export says); srun inside the job takes it as its --ntasks-per-node.
        env: env
            .iter()
            .filter(|(k, _)| {
                opts.ntasks_per_node.is_none() || k.as_str() != "SLURM_NTASKS_PER_NODE"
            })
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .chain(opts.ntasks_per_node.map(|n| KeyValue {
                key: "SLURM_NTASKS_PER_NODE".into(),
                value: n.to_string(),
            }))
            .collect(),
        hold: opts.hold,
        submit_host: user.host.clone(),
        ntasks_set,
        gpus_per_node: opts.gpus.as_ref().map_or(0, |g| g.0),
        gpu_type: opts.gpus.and_then(|g| g.1).unwrap_or_default(),
        constraint: opts.constraint.unwrap_or_default(),
        exclusive: opts.exclusive,
        oversubscribe: opts.oversubscribe,
        qos: opts.qos.unwrap_or_default(),
        nodelist: opts.nodelist,
        exclude: opts.exclude,
        nice: opts.nice.unwrap_or(0),
        begin_time: opts.begin.unwrap_or(0),
        dependency: opts.dependency.unwrap_or_default(),
        array: opts.array.unwrap_or_default(),
        open_append: opts.open_append,
        requeue: opts.requeue.unwrap_or(false),
        warn_signal: opts.signal.map_or(0, |w| w.0),
        warn_secs: opts.signal.map_or(0, |w| w.1),
        warn_batch: opts.signal.is_some_and(|w| w.2),
    };
    Ok(Prepared {
        wait: opts.wait,
        test_only: opts.test_only,
        spec,
        parsable: opts.parsable,
        quiet: opts.quiet,
    })
}

/// `cwd.join(p)` with `.` and `..` folded lexically (no filesystem access).
fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for comp in joined.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn base_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.to_string_lossy().into_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserIdentity {
        UserIdentity {
            name: "alice".into(),
            uid: 1000,
            gid: 100,
            host: "login1".into(),
        }
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Run `prepare` in a temp dir holding `files`, with `stdin` as standard input.
    fn run(
        argv: &[&str],
        env: &[(&str, &str)],
        files: &[(&str, &[u8])],
        stdin: &[u8],
    ) -> (Result<Prepared, SbatchError>, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).expect("write script");
        }
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut input = stdin;
        let result = prepare(&args(argv), &env, &mut input, dir.path(), &user());
        let path = dir.path().to_path_buf();
        drop(dir);
        (result, path)
    }

    fn ok(argv: &[&str], env: &[(&str, &str)], script: &str) -> (Prepared, PathBuf) {
        let (r, dir) = run(argv, env, &[("job.sh", script.as_bytes())], b"");
        (r.expect("prepare"), dir)
    }

    fn err(argv: &[&str], files: &[(&str, &[u8])]) -> SbatchError {
        run(argv, &[], files, b"").0.expect_err("should fail")
    }

    const PLAIN: &str = "#!/bin/sh\necho hi\n";

    #[test]
    fn defaults_for_a_file_script() {
        let (p, dir) = ok(&["job.sh", "a", "b"], &[("HOME", "/home/alice")], PLAIN);
        let s = &p.spec;
        assert_eq!(s.name, "job.sh");
        assert_eq!(s.partition, "");
        assert_eq!(
            (s.nodes_min, s.nodes_max, s.ntasks, s.ntasks_set),
            (1, 0, 1, false)
        );
        assert_eq!(s.cpus_per_task, 1);
        assert_eq!(
            (s.mem_per_node_mb, s.mem_per_cpu_mb, s.time_limit_min),
            (0, 0, None)
        );
        assert_eq!(s.script, PLAIN);
        assert_eq!(s.command, dir.join("job.sh").to_string_lossy());
        assert_eq!(s.argv, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(s.work_dir, dir.to_string_lossy());
        assert_eq!((s.stdout.as_str(), s.stderr.as_str()), ("", ""));
        assert_eq!(
            (s.user.as_str(), s.uid, s.gid, s.submit_host.as_str()),
            ("alice", 1000, 100, "login1")
        );
        assert_eq!(
            s.env,
            vec![KeyValue {
                key: "HOME".into(),
                value: "/home/alice".into()
            }]
        );
        assert!(!s.hold && !p.parsable && !p.quiet);
    }

    #[test]
    fn placement_options_reach_the_spec() {
        // Reference: Slurm sbatch(1) --gres, --constraint, --exclusive, -w, -x, --nice.
        let (p, _dir) = ok(
            &[
                "--gres=gpu:a100:2",
                "-C",
                "ib&fast",
                "--exclusive",
                "-w",
                "n[1-2]",
                "-x",
                "n3",
                "--nice",
                "job.sh",
            ],
            &[],
            PLAIN,
        );
        let s = &p.spec;
        assert_eq!((s.gpus_per_node, s.gpu_type.as_str()), (2, "a100"));
        assert_eq!(s.constraint, "ib&fast");
        assert!(s.exclusive);
        assert_eq!(s.nodelist, vec!["n1", "n2"]);
        assert_eq!(s.exclude, vec!["n3"]);
        assert_eq!(s.nice, 100);
        let (p, _dir) = ok(&["--gpus-per-node=3", "--nice=-5", "job.sh"], &[], PLAIN);
        assert_eq!((p.spec.gpus_per_node, p.spec.nice), (3, -5));
        assert!(!p.spec.oversubscribe);
        assert_eq!(p.spec.qos, "");
        let (p, _dir) = ok(&["-q", "high", "job.sh"], &[], PLAIN);
        assert_eq!(p.spec.qos, "high");
        // -s/--oversubscribe and --exclusive: the later one wins.
        let (p, _dir) = ok(&["--exclusive", "-s", "job.sh"], &[], PLAIN);
        assert!(p.spec.oversubscribe && !p.spec.exclusive);
        let (p, _dir) = ok(&["--oversubscribe", "--exclusive", "job.sh"], &[], PLAIN);
        assert!(!p.spec.oversubscribe && p.spec.exclusive);
        assert_eq!(
            err(
                &["--gres=fpga:1", "job.sh"],
                &[("job.sh", PLAIN.as_bytes())]
            )
            .message,
            "sbatch: error: Invalid generic resource (gres) specification\n"
        );
    }

    #[test]
    fn every_option_form() {
        let (p, dir) = ok(
            &[
                "-Jname",
                "-p",
                "debug",
                "--nodes=2-4",
                "-n",
                "8",
                "-c2",
                "--mem",
                "4GB",
                "-t",
                "1-2:03:04",
                "-o",
                "out-%j",
                "--error=err",
                "-D",
                "sub/../work",
                "--parsable",
                "-QH",
                "--account=x",
                "--exclusive",
                "--gres",
                "gpu:1",
                "--part=batch",
                "job.sh",
            ],
            &[],
            PLAIN,
        );
        let s = &p.spec;
        assert_eq!(s.name, "name");
        assert_eq!(
            s.partition, "batch",
            "unambiguous prefix, later option wins"
        );
        assert_eq!(
            (s.nodes_min, s.nodes_max, s.ntasks, s.ntasks_set),
            (2, 4, 8, true)
        );
        assert_eq!((s.cpus_per_task, s.mem_per_node_mb), (2, 4096));
        // 1-2:03:04 → 1562 min 4 s, rounded up (man1/sbatch.1 --time).
        assert_eq!(s.time_limit_min, Some(26 * 60 + 4));
        assert_eq!((s.stdout.as_str(), s.stderr.as_str()), ("out-%j", "err"));
        assert_eq!(s.work_dir, dir.join("work").to_string_lossy());
        assert!(p.parsable && p.quiet && s.hold);
    }

    #[test]
    fn time_and_memory_forms() {
        for (t, want) in [
            ("30", Some(30)),
            ("30:01", Some(31)),
            ("1:00:00", Some(60)),
            ("2-0", Some(2880)),
            ("2-1:30", Some(2970)),
            ("0", None),
            ("UNLIMITED", None),
            ("infinite", None),
        ] {
            assert_eq!(parse_time_limit_min(t), Some(want), "{t}");
        }
        for bad in ["abc", "", "1:2:3:4", "1-", "-5", "1-2-3"] {
            assert_eq!(parse_time_limit_min(bad), None, "{bad}");
        }
        for (m, want) in [
            ("954M", 954),
            ("2G", 2048),
            ("8g", 8192),
            ("512", 512),
            ("1025K", 2),
            ("4GB", 4096),
            ("1T", 1_048_576),
        ] {
            assert_eq!(parse_mem_mb(m), Some(want), "{m}");
        }
        for bad in ["abc", "4X", "4GBB", "-1", ""] {
            assert_eq!(parse_mem_mb(bad), None, "{bad}");
        }
    }

    #[test]
    fn directives_per_slurm_rules() {
        // slurm.md §2.1 and src/sbatch/opt.c `get_argument`: column 0 only, quotes grouped and
        // stripped, trailing comments, `\ ` escapes, stop at the first command line.
        let script = concat!(
            "#!/bin/bash\n",
            "#SBATCH -J \"a b\" # comment\n",
            "#SBATCH --time=5\n",
            " #SBATCH --partition=indented_is_comment\n",
            "# SBATCH --partition=space_is_comment\n",
            "\n",
            "#SBATCH --output=x\\ y  --ntasks-per-node 3 -N2\n",
            "#SBATCH --parsable   \n",
            "echo start\n",
            "#SBATCH --partition=after_command\n",
        );
        let (p, _) = ok(&["job.sh"], &[], script);
        assert_eq!(p.spec.name, "a b");
        assert_eq!(p.spec.time_limit_min, Some(5));
        assert_eq!(p.spec.partition, "");
        assert_eq!(p.spec.stdout, "x y");
        assert_eq!(
            (p.spec.nodes_min, p.spec.ntasks, p.spec.ntasks_set),
            (2, 6, true)
        );
        assert!(p.parsable);
        let per_node: Vec<&str> = p
            .spec
            .env
            .iter()
            .filter(|kv| kv.key == "SLURM_NTASKS_PER_NODE")
            .map(|kv| kv.value.as_str())
            .collect();
        assert_eq!(per_node, ["3"], "set for the job, for srun inside it");
    }

    #[test]
    fn precedence_cli_over_env_over_directives() {
        let script = "#!/bin/sh\n#SBATCH -J fromdir -p dirpart -t 10 --mem=1G\nrun\n";
        let env = [
            ("SBATCH_JOB_NAME", "fromenv"),
            ("SBATCH_PARTITION", "envpart"),
            ("SBATCH_TIMELIMIT", "20"),
        ];
        let (p, _) = ok(&["-J", "fromcli", "job.sh"], &env, script);
        assert_eq!(p.spec.name, "fromcli");
        assert_eq!(p.spec.partition, "envpart");
        assert_eq!(p.spec.time_limit_min, Some(20));
        assert_eq!(p.spec.mem_per_node_mb, 1024);
        // --mem-per-cpu on the command line resets --mem from the script? No: both count as
        // "set by cli" in Slurm (directives are not env), so that is the fatal case.
        let (r, _) = run(
            &["--mem-per-cpu=1", "job.sh"],
            &[],
            &[("job.sh", script.as_bytes())],
            b"",
        );
        assert_eq!(
            r.expect_err("exclusive").message,
            "sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.\n"
        );
        // An environment value is dropped when the command line sets the other one.
        let (p, _) = ok(
            &["--mem-per-cpu=2", "job.sh"],
            &[("SBATCH_MEM_PER_NODE", "5")],
            PLAIN,
        );
        assert_eq!((p.spec.mem_per_node_mb, p.spec.mem_per_cpu_mb), (0, 2));
    }

    #[test]
    fn stdin_and_wrap() {
        let (r, _) = run(&["-H"], &[], &[], PLAIN.as_bytes());
        let p = r.expect("stdin");
        assert_eq!(p.spec.name, "sbatch");
        assert!(p.spec.argv.is_empty());
        let (r, _) = run(&["--wrap=sleep 100", "-N2"], &[], &[], b"");
        let p = r.expect("wrap");
        assert_eq!(p.spec.name, "wrap");
        assert_eq!(
            p.spec.script,
            "#!/bin/sh\n# This script was created by sbatch --wrap.\n\nsleep 100\n"
        );
        assert_eq!(p.spec.nodes_min, 2);
    }

    // The expected texts below were captured from real Slurm 22.05.8 (stderr and exit status),
    // and agree with src/sbatch/sbatch.c / src/common/slurm_opt.c in 25.11.

    #[test]
    fn script_checks() {
        let cases: [(&[u8], &str); 5] = [
            (b"echo hi\n", "sbatch: error: This does not look like a batch script.  The first\nsbatch: error: line must start with #! followed by the path to an interpreter.\nsbatch: error: For instance: #!/bin/sh\n"),
            (b"#!/bin/sh\r\necho\r\n", "sbatch: error: Batch script contains DOS line breaks (\\r\\n)\nsbatch: error: instead of expected UNIX line breaks (\\n).\n"),
            (b"#!/bin/sh\necho \0x\n", "sbatch: error: The Slurm controller does not allow scripts that\nsbatch: error: contain a NULL character '\\0'.\n"),
            (b"", "sbatch: error: Batch script is empty!\n"),
            (b"  \n\n", "sbatch: error: Batch script contains only whitespace!\n"),
        ];
        for (body, message) in cases {
            let e = err(&["s.sh"], &[("s.sh", body)]);
            assert_eq!((e.message.as_str(), e.exit_code), (message, 1));
        }
        let big = format!("#!/bin/sh\n{}", "#".repeat(MAX_SCRIPT_BYTES));
        let e = err(&["big.sh"], &[("big.sh", big.as_bytes())]);
        assert_eq!(
            e.message,
            "sbatch: error: Batch job submission failed: Pathname of a file, directory or other parameter too long\n"
        );
        let e = err(&["nonexist.sh"], &[]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("sbatch: error: Unable to open file nonexist.sh\n", 1)
        );
    }

    #[test]
    fn getopt_errors() {
        let f: &[(&str, &[u8])] = &[("ok.sh", PLAIN.as_bytes())];
        let cases: [(&[&str], &str); 7] = [
            (&["--foo", "ok.sh"], "sbatch: unrecognized option '--foo'\n"),
            (&["--foo=bar", "ok.sh"], "sbatch: unrecognized option '--foo=bar'\n"),
            (&["-Z", "ok.sh"], "sbatch: invalid option -- 'Z'\n"),
            (&["-J"], "sbatch: option requires an argument -- 'J'\n"),
            (&["--job-name"], "sbatch: option '--job-name' requires an argument\n"),
            (&["--parsable=x", "ok.sh"], "sbatch: option '--parsable' doesn't allow an argument\n"),
            (&["--mem-per=1", "ok.sh"], "sbatch: option '--mem-per=1' is ambiguous; possibilities: '--mem-per-cpu' '--mem-per-gpu'\n"),
        ];
        for (argv, first) in cases {
            let e = err(argv, f);
            assert_eq!(
                e.message,
                format!("{first}Try \"sbatch --help\" for more information\n"),
                "{argv:?}"
            );
            assert_eq!(e.exit_code, 255);
        }
    }

    #[test]
    fn value_errors() {
        let f: &[(&str, &[u8])] = &[("ok.sh", PLAIN.as_bytes())];
        let cases: [(&[&str], &str, i32); 10] = [
            (
                &["--time=abc", "ok.sh"],
                "sbatch: error: Invalid --time specification\n",
                255,
            ),
            (
                &["-N", "0", "ok.sh"],
                "sbatch: error: Batch job submission failed: Node count specification invalid\n",
                1,
            ),
            (
                &["-n", "0", "ok.sh"],
                "sbatch: error: Invalid numeric value \"0\" for --ntasks.\n",
                1,
            ),
            (
                &["-n", "abc", "ok.sh"],
                "sbatch: error: Invalid numeric value \"abc\" for --ntasks.\n",
                1,
            ),
            (
                &["-c", "0", "ok.sh"],
                "sbatch: error: Invalid numeric value \"0\" for --cpus-per-task.\n",
                1,
            ),
            (
                &["--mem=abc", "ok.sh"],
                "sbatch: error: Invalid --mem specification\n",
                255,
            ),
            (
                &["-N", "3-2", "ok.sh"],
                "sbatch: error: Maximum node count 2 is less than minimum node count 3\n",
                255,
            ),
            (
                &["-N", "abc", "ok.sh"],
                "sbatch: error: \"abc\" is not a valid node count\n",
                255,
            ),
            (
                &["--mem=1", "--mem-per-cpu=1", "ok.sh"],
                "sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.\n",
                1,
            ),
            (
                &["--wrap=true", "extra"],
                "sbatch: error: Script arguments not permitted with --wrap option\n",
                1,
            ),
        ];
        for (argv, message, code) in cases {
            let e = err(argv, f);
            assert_eq!(
                (e.message.as_str(), e.exit_code),
                (message, code),
                "{argv:?}"
            );
        }
    }

    #[test]
    fn directive_errors() {
        let e = err(
            &["b.sh"],
            &[("b.sh", b"#!/bin/sh\n#SBATCH --bogus\necho\n")],
        );
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            ("sbatch: unrecognized option '--bogus'\nTry \"sbatch --help\" for more information\n", 255)
        );
        let e = err(&["nd.sh"], &[("nd.sh", b"#!/bin/sh\n#SBATCH foo\ntrue\n")]);
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "sbatch: error: Invalid directive found in batch script: foo\n",
                255
            )
        );
        let e = err(
            &["uq.sh"],
            &[("uq.sh", b"#!/bin/sh\n#SBATCH -J \"unterminated\ntrue\n")],
        );
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "sbatch: fatal: uq.sh: line 2: Unmatched `\"` in [ \"unterminated]\n",
                1
            )
        );
    }

    #[test]
    fn no_panics_on_odd_input() {
        for argv in [
            vec!["-"],
            vec!["--"],
            vec!["--=x"],
            vec!["-N", "-"],
            vec!["-N", "99999999999999999999"],
            vec!["-t", "99999999999999999999"],
            vec!["--mem", "99999999999999999999T"],
            vec!["-n", "9999999999"],
            vec!["-k"],
        ] {
            let _ = run(
                &argv,
                &[],
                &[],
                "#!/bin/sh\n#SBATCH \\\n#SBATCH 'x\u{e9}' \"\"\n".as_bytes(),
            );
        }
        let _ = run(&[], &[], &[], &[0xff, 0xfe]);
    }

    /// Reference: sbatch(1) `--array`, `--dependency`, `--begin`; `#SBATCH` lines work too.
    #[test]
    fn arrays_dependencies_and_begin_reach_the_spec() {
        let (p, _dir) = ok(
            &["--array=0-15%4", "-d", "afterok:12:13,singleton", "job.sh"],
            &[],
            PLAIN,
        );
        assert_eq!(p.spec.array, "0-15%4");
        assert_eq!(p.spec.dependency, "afterok:12:13,singleton");
        assert_eq!(p.spec.begin_time, 0);
        let (p, _dir) = ok(
            &["job.sh"],
            &[],
            "#!/bin/sh\n#SBATCH --begin=2030-01-02T03:04:05\n#SBATCH -a 1,3\ntrue\n",
        );
        assert_eq!(p.spec.begin_time, 1_893_553_445);
        assert_eq!(p.spec.array, "1,3");
    }

    #[test]
    fn bad_arrays_dependencies_and_begin_times_name_the_bad_part() {
        let e = err(&["--array=1-x", "job.sh"], &[("job.sh", PLAIN.as_bytes())]);
        assert_eq!(e.exit_code, EXIT_ERROR);
        assert!(
            e.message
                .starts_with("sbatch: error: Invalid job array specification\n"),
            "{}",
            e.message
        );
        assert!(e.message.contains("`1-x`"), "{}", e.message);
        let e = err(
            &["-d", "afterok:x", "job.sh"],
            &[("job.sh", PLAIN.as_bytes())],
        );
        assert!(
            e.message.starts_with(
                "sbatch: error: Batch job submission failed: Job dependency problem\n"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("bad job id `x`"), "{}", e.message);
        let (p, _dir) = ok(&["-d", "aftercorr:5?aftercorr:6", "job.sh"], &[], PLAIN);
        assert_eq!(p.spec.dependency, "aftercorr:5?aftercorr:6");
        let e = err(
            &["--begin=someday", "job.sh"],
            &[("job.sh", PLAIN.as_bytes())],
        );
        assert!(
            e.message.contains("Invalid time specification `someday`"),
            "{}",
            e.message
        );
    }

    /// Reference: sbatch(1) `--signal=[{R|B}:]<sig_num>[@sig_time]`, 60 s by default.
    #[test]
    fn signal_warnings() {
        let (p, _dir) = ok(&["--signal=USR2@90", "job.sh"], &[], PLAIN);
        assert_eq!(
            (p.spec.warn_signal, p.spec.warn_secs, p.spec.warn_batch),
            (12, 90, false)
        );
        let (p, _dir) = ok(&["--signal=B:10", "job.sh"], &[], PLAIN);
        assert_eq!(
            (p.spec.warn_signal, p.spec.warn_secs, p.spec.warn_batch),
            (10, 60, true)
        );
        for bad in [
            "--signal=FOO",
            "--signal=USR1@x",
            "--signal=X:USR1",
            "--signal=USR1@70000",
        ] {
            let e = err(&[bad, "job.sh"], &[("job.sh", PLAIN.as_bytes())]);
            assert!(
                e.message.contains("Invalid --signal specification"),
                "{bad}: {}",
                e.message
            );
        }
    }

    /// Reference: sbatch(1) `--gpus`, `--gpus-per-task`, `--cpus-per-gpu`, `--mem-per-gpu`:
    /// each becomes the node's share of GPUs, CPUs and memory.
    #[test]
    fn gpu_forms_size_the_node_share() {
        let (p, _dir) = ok(&["-G", "a100:4", "-N", "2", "job.sh"], &[], PLAIN);
        assert_eq!(
            (p.spec.gpus_per_node, p.spec.gpu_type.as_str()),
            (2, "a100")
        );
        let (p, _dir) = ok(
            &[
                "--gpus-per-task=2",
                "-n",
                "3",
                "--cpus-per-gpu=4",
                "--mem-per-gpu=8G",
                "job.sh",
            ],
            &[],
            PLAIN,
        );
        assert_eq!(p.spec.gpus_per_node, 6);
        assert_eq!(
            p.spec.cpus_per_task, 8,
            "4 CPUs for each of 6 GPUs over 3 tasks"
        );
        assert_eq!(p.spec.mem_per_node_mb, 6 * 8 * 1024);
        let e = err(
            &["--cpus-per-gpu=2", "job.sh"],
            &[("job.sh", PLAIN.as_bytes())],
        );
        assert!(e.message.contains("need GPUs"), "{}", e.message);
        let e = err(
            &["--gpus=2", "--mem-per-gpu=1G", "--mem=4G", "job.sh"],
            &[("job.sh", PLAIN.as_bytes())],
        );
        assert!(e.message.contains("mutually exclusive"), "{}", e.message);
    }

    /// Reference: sbatch(1) `--export`: ALL (default), NONE, a list (with SLURM_*), ALL plus
    /// assignments; `--open-mode`; `--wait`.
    #[test]
    fn export_open_mode_and_wait() {
        let env = [("HOME", "/home/alice"), ("SLURM_CONF", "/x"), ("FOO", "1")];
        let keys = |p: &Prepared| -> Vec<String> {
            p.spec
                .env
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect()
        };
        let (p, _dir) = ok(&["job.sh"], &env, PLAIN);
        assert!(keys(&p).contains(&"FOO=1".to_string()));
        let (p, _dir) = ok(&["--export=NONE", "job.sh"], &env, PLAIN);
        assert!(keys(&p).is_empty(), "{:?}", keys(&p));
        let (p, _dir) = ok(&["--export=FOO,BAR=2", "job.sh"], &env, PLAIN);
        assert_eq!(keys(&p), vec!["BAR=2", "FOO=1", "SLURM_CONF=/x"]);
        let (p, _dir) = ok(
            &["--export=ALL,FOO=3", "--open-mode=append", "-W", "job.sh"],
            &env,
            PLAIN,
        );
        assert!(keys(&p).contains(&"FOO=3".to_string()));
        assert!(keys(&p).contains(&"HOME=/home/alice".to_string()));
        assert!(p.spec.open_append && p.wait);
        assert!(!p.spec.requeue, "drover's JobRequeue default is 0");
        let (p, _dir) = ok(&["--requeue", "job.sh"], &env, PLAIN);
        assert!(p.spec.requeue);
        let (p, _dir) = ok(&["--requeue", "--no-requeue", "job.sh"], &env, PLAIN);
        assert!(!p.spec.requeue, "the last one given wins");
        let e = err(
            &["--open-mode=sideways", "job.sh"],
            &[("job.sh", PLAIN.as_bytes())],
        );
        assert!(e.message.contains("--open-mode"), "{}", e.message);
    }

    /// `--help`, `--usage` and `--version` print on stdout and exit 0 before any script is
    /// read (Slurm's first pass), wherever they stand among the options.
    #[test]
    fn help_usage_and_version_print_and_exit_zero() {
        let e = err(&["-N", "1", "--version"], &[]);
        assert_eq!(e.exit_code, 0);
        assert!(e.message.starts_with("slurm "), "{}", e.message);
        let e = err(&["--usage"], &[]);
        assert_eq!((e.exit_code, e.message.as_str()), (0, USAGE));
        let e = err(&["-h", "job.sh"], &[]);
        assert_eq!((e.exit_code, e.message.as_str()), (0, HELP));
        assert!(HELP.contains("--array=indexes"));
    }

    /// srun's own allocation: sbatch's option handling, no script, the command's basename as
    /// the name (`-J` wins), the command as Slurm's `Command=`; sbatch's errors as they are.
    #[test]
    fn srun_allocation_is_a_job_without_a_script() {
        let cwd = Path::new("/work");
        let env = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        let spec = allocation(
            &args(&["--ntasks=4", "--nodes=2", "--time=5", "--chdir=sub"]),
            &args(&["/bin/hostname", "-f"]),
            &env,
            cwd,
            &user(),
        )
        .expect("a job");
        assert_eq!(spec.name, "hostname");
        assert!(spec.script.is_empty());
        assert_eq!(spec.command, "/bin/hostname -f");
        assert_eq!(
            (spec.ntasks, spec.nodes_min, spec.time_limit_min),
            (4, 2, Some(5))
        );
        assert_eq!(spec.work_dir, "/work/sub");
        assert_eq!((spec.uid, spec.user.as_str()), (1000, "alice"));
        let spec = allocation(
            &args(&["--job-name=x"]),
            &args(&["true"]),
            &env,
            cwd,
            &user(),
        )
        .expect("a job");
        assert_eq!(spec.name, "x");
        let e =
            allocation(&args(&["--mem=lots"]), &args(&["true"]), &env, cwd, &user()).unwrap_err();
        assert!(e.message.starts_with("sbatch: error: "), "{e}");
    }
}
