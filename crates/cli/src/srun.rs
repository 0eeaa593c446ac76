//! `srun` inside an allocation (a batch job, or `--jobid N`): a job step; outside one, a job
//! of its own first (`Plan::Allocate`: the job's options in sbatch's form, `srun_alloc.rs`
//! runs it), then the step in it. srun asks the
//! controllers for the step (`Steps.CreateStep`: apply checks that the job runs and that the
//! step fits its allocation, numbers it and lays its tasks out over the job's nodes), then
//! launches the tasks through the node daemons of that layout (`Tasks.LaunchTasks`, one stream
//! per node: srun's stdin and signals in, the tasks' output and exits back), prints their
//! output as it comes (`-l`: `<task>: ` before each line), and records the step's end
//! (`Steps.EndStep`). Its exit status is Slurm's: 128+signal when a task was killed by a
//! signal, else the highest task exit code. Anything it cannot do as Slurm would is refused
//! with `srun: error:` and exit 1 — never run differently.
//!
//! This is what workflow tools call inside their batch scripts (submitit runs
//! `srun --unbuffered --output DIR/%j_%t_log.out --error … python -m submitit.core._submit DIR`,
//! reference/clients.md).

use crate::getopt::{self, long, opt, Arg, Opt};

/// srun's options (src/srun/libsrun/opt.c), those that take a value marked so that the command
/// after them is found; what each means for a step is decided in `plan`.
const OPTIONS: &[Opt] = &[
    opt('A', "account", Arg::Required, "account"),
    opt('b', "begin", Arg::Required, "begin"),
    opt('c', "cpus-per-task", Arg::Required, "cpus-per-task"),
    opt('C', "constraint", Arg::Required, "constraint"),
    opt('d', "dependency", Arg::Required, "dependency"),
    opt('D', "chdir", Arg::Required, "chdir"),
    opt('e', "error", Arg::Required, "error"),
    opt('E', "preserve-env", Arg::No, "ignore"),
    opt('G', "gpus", Arg::Required, "gpus"),
    opt('h', "help", Arg::No, "help"),
    opt('i', "input", Arg::Required, "input"),
    opt('I', "immediate", Arg::Optional, "immediate"),
    opt('J', "job-name", Arg::Required, "job-name"),
    opt('k', "no-kill", Arg::Optional, "ignore"),
    opt('K', "kill-on-bad-exit", Arg::Optional, "kill-on-bad-exit"),
    opt('l', "label", Arg::No, "label"),
    opt('m', "distribution", Arg::Required, "distribution"),
    opt('n', "ntasks", Arg::Required, "ntasks"),
    opt('N', "nodes", Arg::Required, "nodes"),
    opt('o', "output", Arg::Required, "output"),
    opt('O', "overcommit", Arg::No, "refuse"),
    opt('p', "partition", Arg::Required, "partition"),
    opt('q', "qos", Arg::Required, "qos"),
    opt('Q', "quiet", Arg::No, "quiet"),
    opt('r', "relative", Arg::Required, "relative"),
    opt('s', "oversubscribe", Arg::No, "oversubscribe"),
    opt('t', "time", Arg::Required, "time"),
    opt('T', "threads", Arg::Required, "ignore"),
    opt('u', "unbuffered", Arg::No, "unbuffered"),
    opt('v', "verbose", Arg::No, "ignore"),
    opt('V', "version", Arg::No, "version"),
    opt('w', "nodelist", Arg::Required, "nodelist"),
    opt('W', "wait", Arg::Required, "ignore"),
    opt('x', "exclude", Arg::Required, "exclude"),
    opt('X', "disable-status", Arg::No, "interrupt-forwards"),
    opt('Z', "no-allocate", Arg::No, "refuse"),
    long("cpu-bind", Arg::Required, "ignore"),
    long("exact", Arg::No, "ignore"),
    long("exclusive", Arg::Optional, "exclusive"),
    long("export", Arg::Required, "export"),
    long("gpus-per-node", Arg::Required, "gpus-per-node"),
    long("gpus-per-task", Arg::Required, "gpus-per-task"),
    long("gres", Arg::Required, "gres"),
    long("hint", Arg::Required, "ignore"),
    long("jobid", Arg::Required, "jobid"),
    long("mem", Arg::Required, "mem"),
    long("mem-bind", Arg::Required, "ignore"),
    long("mem-per-cpu", Arg::Required, "mem-per-cpu"),
    long("mpi", Arg::Required, "mpi"),
    long("multi-prog", Arg::No, "refuse"),
    long("ntasks-per-node", Arg::Required, "ntasks-per-node"),
    long("open-mode", Arg::Required, "open-mode"),
    long("overlap", Arg::No, "ignore"),
    long("pty", Arg::No, "refuse"),
    long("quit-on-interrupt", Arg::No, "interrupt-forwards"),
    long("signal", Arg::Required, "refuse"),
    long("usage", Arg::No, "help"),
    long("het-group", Arg::Required, "refuse"),
];

pub const USAGE: &str = "Usage: srun [OPTIONS(0)... [executable(0) [args(0)...]]]
drover's srun runs a job step: inside an allocation (a batch job, or --jobid), or, outside
one, in a job it allocates for itself (then ended with the step):
  srun [-n ntasks] [-N nodes] [--ntasks-per-node=n] [-c cpus] [-l] [-u] [-J name] [-Q]
       [-o FILE] [-e FILE] [-i FILE|all|none|taskid] [-D DIR] [--export=...]
       [-t time] [-p partition] [--mem=MB] [--mem-per-cpu=MB] [-w hosts] [-x hosts]
       [-C list] [--gpus=n] [--gres=list] [--exclusive] [--begin=time] [-d dependency]
       command [args...]
--pty, --multi-prog, --overcommit, -K, -I, other distributions than block, and a step's
own time limit (-t inside an allocation) are not available yet.
";

/// Which tasks read srun's stdin (`-i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One task (task 0 by default).
    Task(u32),
    All,
    None,
    /// A file pattern every task reads (opened on its node).
    File(String),
}

/// A step to run, as srun's options and the job's environment describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub job_id: u64,
    pub argv: Vec<String>,
    pub name: String,
    pub ntasks: u32,
    pub nodes: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub label: bool,
    pub unbuffered: bool,
    /// `-X`, `--quit-on-interrupt`: a first Ctrl-C goes to the tasks at once.
    pub interrupt_forwards: bool,
    /// The tasks' working directory (absolute).
    pub cwd: String,
    /// File patterns for the nodes to open; `None`: to srun's own stdout/stderr.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub input: Input,
    pub append: bool,
    /// The tasks' environment before the node adds the step's variables.
    pub env: Vec<(String, String)>,
    /// Warnings srun prints before it starts (Slurm's).
    pub warnings: Vec<String>,
}

/// srun outside any allocation: the job it allocates for itself, then its step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The job's options in sbatch's long form (`--nodes=2`, `--exclusive`), for
    /// `sbatch_prep::allocation`, which shapes the job as sbatch would.
    pub options: Vec<String>,
    /// The step to run in it (`job_id` is set once the job is submitted).
    pub step: Step,
    /// `-Q`: no `queued and waiting` / `allocated resources` lines.
    pub quiet: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Help,
    Version,
    /// A step inside an existing allocation.
    Run(Box<Step>),
    /// An allocation of srun's own, then a step in it.
    Allocate(Box<Allocation>),
}

/// srun's options that shape the job it allocates outside any allocation, by the sbatch
/// option (same long name) they become; `nodes` and `ntasks` go as srun settles them.
const ALLOCATION_OPTIONS: &[&str] = &[
    "account",
    "begin",
    "constraint",
    "cpus-per-task",
    "dependency",
    "exclude",
    "exclusive",
    "gpus",
    "gpus-per-node",
    "gpus-per-task",
    "gres",
    "job-name",
    "mem",
    "mem-per-cpu",
    "nodelist",
    "ntasks-per-node",
    "oversubscribe",
    "partition",
    "qos",
    "time",
    "chdir",
    "export",
];

fn refuse(why: &str) -> String {
    format!("srun: error: {why}\n")
}

/// Where the command starts: the first word that is not an option or an option's value
/// (srun stops at it, as its optstring's leading `+` asks getopt to).
fn command_start(args: &[String]) -> usize {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return i + 1;
        }
        if !a.starts_with('-') || a == "-" {
            return i;
        }
        let takes_next = if let Some(body) = a.strip_prefix("--") {
            !body.contains('=')
                && OPTIONS
                    .iter()
                    .filter(|o| !o.long.is_empty() && o.long.starts_with(body))
                    .any(|o| o.arg == Arg::Required)
        } else {
            // Clustered short options: the first one that takes a value ends the word.
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut next = false;
            for (k, c) in chars.iter().enumerate() {
                match OPTIONS.iter().find(|o| o.short == Some(*c)).map(|o| o.arg) {
                    Some(Arg::Required) => {
                        next = k + 1 == chars.len();
                        break;
                    }
                    Some(Arg::Optional) => break,
                    _ => {}
                }
            }
            next
        };
        i += if takes_next { 2 } else { 1 };
    }
    i
}

fn count(v: &str) -> Option<u32> {
    // `-N 2-2` and `-N 2` both mean two nodes.
    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
    let (lo, hi) = (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?);
    (lo == hi && lo > 0).then_some(lo)
}

/// Decides the step from srun's arguments, the environment (`env`, also the tasks'
/// environment: `vars`) and the working directory.
pub fn plan(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    vars: &[(String, String)],
    cwd: &str,
) -> Result<Plan, String> {
    let split = command_start(args);
    let p = getopt::parse("srun", &args[..split.min(args.len())], OPTIONS)?;
    let argv: Vec<String> = args[split.min(args.len())..].to_vec();
    if p.has("help") {
        return Ok(Plan::Help);
    }
    if p.has("version") {
        return Ok(Plan::Version);
    }
    let mut job_id = env("SLURM_JOB_ID").or_else(|| env("SLURM_JOBID"));
    let mut ntasks: Option<u32> = None;
    let mut nodes: Option<u32> = None;
    let mut per_node: Option<u32> = None;
    let mut cpus_per_task: Option<u32> = None;
    let mut label = false;
    let mut unbuffered = false;
    let mut interrupt_forwards = false;
    let mut chdir: Option<String> = None;
    let mut stdout = None;
    let mut stderr = None;
    let mut input = Input::Task(0);
    let mut append = false;
    let mut name: Option<String> = None;
    let mut clear_env = false;
    let mut exported: Vec<(String, String)> = Vec::new();
    let mut nodelist: Option<String> = None;
    let mut mpi: Option<String> = None;
    let mut quiet = false;
    let mut time: Option<String> = None;
    let mut immediate = false;
    let number = |v: &str, what: &str| -> Result<u32, String> {
        v.parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| refuse(&format!("Invalid numeric value \"{v}\" for {what}")))
    };
    for (id, value) in &p.opts {
        let v = value.clone().unwrap_or_default();
        match *id {
            "refuse" => {
                return Err(refuse(
                    "this srun option is not available in drover yet (--pty, --multi-prog, --overcommit, --signal, --het-group, --no-allocate)",
                ))
            }
            "quiet" => quiet = true,
            "time" => time = Some(v),
            "immediate" => immediate = true,
            "ntasks" => ntasks = Some(number(&v, "--ntasks")?),
            "nodes" => match count(&v) {
                Some(n) => nodes = Some(n),
                None => return Err(refuse(&format!("Invalid node count specification: {v}"))),
            },
            "ntasks-per-node" => per_node = Some(number(&v, "--ntasks-per-node")?),
            "cpus-per-task" => cpus_per_task = Some(number(&v, "--cpus-per-task")?),
            "label" => label = true,
            "unbuffered" => unbuffered = true,
            "interrupt-forwards" => interrupt_forwards = true,
            "job-name" => name = Some(v),
            "kill-on-bad-exit" if v != "0" => {
                return Err(refuse("--kill-on-bad-exit is not available in drover yet"))
            }
            "distribution" => {
                let kind = v.split([':', ',']).next().unwrap_or_default();
                if kind != "block" && kind != "*" {
                    return Err(refuse(&format!(
                        "--distribution={v}: drover lays tasks out by block only"
                    )));
                }
            }
            "relative" if v != "0" => {
                return Err(refuse("--relative: drover's steps start on the job's first node"))
            }
            "nodelist" => nodelist = Some(v),
            "jobid" => job_id = Some(v),
            "mpi" => mpi = Some(v),
            "chdir" => chdir = Some(v),
            "output" => stdout = Some(v),
            "error" => stderr = Some(v),
            "input" => {
                input = match v.as_str() {
                    "all" => Input::All,
                    "none" => Input::None,
                    _ => match v.parse::<u32>() {
                        Ok(t) => Input::Task(t),
                        Err(_) => Input::File(v),
                    },
                }
            }
            "open-mode" => append = v.eq_ignore_ascii_case("append") || v == "a",
            "export" => {
                let mut parts = v.split(',');
                match parts.next().map(str::to_ascii_uppercase).as_deref() {
                    Some("ALL") => {}
                    Some("NONE") => clear_env = true,
                    _ => parts = v.split(','),
                }
                for kv in parts {
                    match kv.split_once('=') {
                        Some((k, val)) => exported.push((k.to_string(), val.to_string())),
                        None => {
                            if let Some(val) = env(kv) {
                                exported.push((kv.to_string(), val));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if argv.is_empty() {
        return Err("srun: fatal: No command given to execute.\n".to_string());
    }
    let job = match &job_id {
        Some(j) => match j.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return Err(refuse(&format!("Invalid job id: {j}"))),
        },
        None => None,
    };
    let inside = job.is_some();
    if inside && time.is_some() {
        return Err(refuse(
            "--time inside an allocation (a step's own time limit) is not available in drover yet",
        ));
    }
    if !inside && immediate {
        return Err(refuse(
            "--immediate is not available in drover yet (srun waits for its allocation)",
        ));
    }
    // Inside an allocation, the job's variables give the defaults; outside, srun's options.
    let env = |k: &str| if inside { env(k) } else { None };
    let mut warnings = Vec::new();
    // Slurm's srun takes its defaults from the allocation's variables: the job's task count
    // (when the job gave one), else one task per node.
    let job_nodes = env("SLURM_JOB_NUM_NODES")
        .or_else(|| env("SLURM_NNODES"))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    // SLURM_NTASKS_PER_NODE (set for a job that asked --ntasks-per-node) is srun's
    // --ntasks-per-node when neither it nor -n is given (srun(1), INPUT ENVIRONMENT).
    if ntasks.is_none() && per_node.is_none() {
        per_node =
            env("SLURM_NTASKS_PER_NODE").and_then(|v| v.parse::<u32>().ok().filter(|&k| k > 0));
    }
    let ntasks = match (ntasks, per_node, nodes) {
        (Some(n), _, _) => n,
        (None, Some(k), n) => k.saturating_mul(n.unwrap_or(job_nodes)),
        (None, None, Some(n)) => env("SLURM_NTASKS")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(n)
            .max(n),
        (None, None, None) => env("SLURM_NTASKS")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(job_nodes),
    };
    if let Some(n) = nodes.filter(|&n| n > ntasks) {
        warnings.push(format!(
            "srun: Warning: can't run {ntasks} processes on {n} nodes, setting nnodes to {ntasks}"
        ));
        nodes = Some(ntasks);
    }
    if let Some(list) = nodelist.as_ref().filter(|_| inside) {
        let first = env("SLURMD_NODENAME").unwrap_or_default();
        if *list != first || nodes.unwrap_or(ntasks.min(job_nodes)) != 1 {
            return Err(refuse(&format!(
                "--nodelist={list}: drover's steps use the job's first nodes; only a one-node step on {first} may name its node"
            )));
        }
    }
    if let Some(m) = mpi.filter(|m| m != "none") {
        if !matches!(m.as_str(), "pmi2" | "pmix") {
            return Err(refuse(&format!("--mpi={m} is not available")));
        }
        if ntasks > 1 {
            return Err(refuse(&format!(
                "--mpi={m}: drover has no PMI server for the tasks of a step yet; use --mpi=none"
            )));
        }
    }
    if let Input::Task(t) = input {
        if t >= ntasks {
            return Err(refuse(&format!(
                "--input={t}: the step has {ntasks} task(s)"
            )));
        }
    }
    let cpus_per_task = cpus_per_task.or_else(|| {
        env("SRUN_CPUS_PER_TASK")
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
    });
    let cwd = match chdir {
        Some(d) => std::path::Path::new(cwd).join(d).display().to_string(),
        None => cwd.to_string(),
    };
    let mut task_env: Vec<(String, String)> = if clear_env {
        // `--export=NONE`: what Slurm still gives a task (its own variables come from the node).
        vars.iter()
            .filter(|(k, _)| k.starts_with("SLURM_"))
            .cloned()
            .collect()
    } else {
        vars.to_vec()
    };
    task_env.extend(exported);
    let name = name.unwrap_or_else(|| {
        argv[0]
            .rsplit('/')
            .next()
            .unwrap_or(argv[0].as_str())
            .to_string()
    });
    let step = Step {
        job_id: job.unwrap_or(0),
        argv,
        name,
        ntasks,
        nodes,
        ntasks_per_node: per_node,
        cpus_per_task,
        label,
        unbuffered,
        interrupt_forwards,
        cwd,
        stdout,
        stderr,
        input,
        append,
        env: task_env,
        warnings,
    };
    if inside {
        return Ok(Plan::Run(Box::new(step)));
    }
    // The job as sbatch would shape it from the same options; `-n` and `-N` as srun settled
    // them, so that the step fits the job.
    let mut options = vec![format!("--ntasks={}", step.ntasks)];
    if let Some(n) = step.nodes {
        options.push(format!("--nodes={n}"));
    }
    for (id, value) in &p.opts {
        if ALLOCATION_OPTIONS.contains(id) {
            options.push(match value {
                Some(v) => format!("--{id}={v}"),
                None => format!("--{id}"),
            });
        }
    }
    Ok(Plan::Allocate(Box::new(Allocation {
        options,
        step,
        quiet,
    })))
}

/// Slurm's exit status of srun from its tasks' ends `(exit code, signal)`: 128+signal when a
/// task was killed by a signal (a signal outranks an exit code), else the highest exit code.
pub fn exit_status(ends: &[(i32, i32)]) -> i32 {
    if let Some(sig) = ends.iter().map(|&(_, s)| s).find(|&s| s > 0) {
        return 128 + sig;
    }
    ends.iter().map(|&(c, _)| c).max().unwrap_or(0)
}

/// Puts `<task>: ` before each complete line of a task's output (`-l`), keeping an
/// unfinished line for later; the label is as wide as the step's highest task id, as
/// Slurm's is.
#[derive(Debug, Default)]
pub struct Labeller {
    partial: Vec<u8>,
}

impl Labeller {
    pub fn push(&mut self, label: &str, bytes: &[u8], out: &mut Vec<u8>) {
        self.partial.extend_from_slice(bytes);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(label.as_bytes());
            out.extend(self.partial.drain(..=pos));
        }
    }

    /// The rest of the output, at the task's end.
    pub fn finish(&mut self, label: &str, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            out.extend_from_slice(label.as_bytes());
            out.append(&mut self.partial);
        }
    }
}

/// `-l`'s label for task `task` of a step of `ntasks` tasks.
pub fn label(task: u32, ntasks: u32) -> String {
    let width = ntasks.saturating_sub(1).to_string().len();
    format!("{task:>width$}: ")
}

/// Slurm's task id ranges in its messages: `0-2,5`.
pub fn ranges(ids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Slurm's per-node failure lines (src/srun/launch.c): `srun: error: n1: tasks 0-1: Exited
/// with exit code 3`, `srun: error: n2: task 2: Killed`. `ends`: (node, task, code, signal).
pub fn failure_lines(ends: &[(String, u32, i32, i32)]) -> Vec<String> {
    let mut groups: Vec<(String, i32, i32, Vec<u32>)> = Vec::new();
    for (node, task, code, sig) in ends {
        if *code == 0 && *sig == 0 {
            continue;
        }
        match groups
            .iter_mut()
            .find(|g| g.0 == *node && g.1 == *code && g.2 == *sig)
        {
            Some(g) => g.3.push(*task),
            None => groups.push((node.clone(), *code, *sig, vec![*task])),
        }
    }
    groups
        .into_iter()
        .map(|(node, code, sig, mut tasks)| {
            tasks.sort_unstable();
            let which = if tasks.len() == 1 { "task" } else { "tasks" };
            let what = if sig > 0 {
                signal_name(sig)
            } else {
                format!("Exited with exit code {code}")
            };
            format!("srun: error: {node}: {which} {}: {what}", ranges(&tasks))
        })
        .collect()
}

/// strsignal(3)'s words for the signals a task commonly dies of.
fn signal_name(sig: i32) -> String {
    match sig {
        1 => "Hangup",
        2 => "Interrupt",
        3 => "Quit",
        4 => "Illegal instruction",
        6 => "Aborted",
        7 => "Bus error",
        8 => "Floating point exception",
        9 => "Killed",
        10 => "User defined signal 1",
        11 => "Segmentation fault",
        12 => "User defined signal 2",
        13 => "Broken pipe",
        14 => "Alarm clock",
        15 => "Terminated",
        _ => return format!("Signal {sig}"),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn words(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn job_env() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("SLURM_JOB_ID", "42"),
            ("SLURM_JOB_NUM_NODES", "1"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_JOB_NAME", "job"),
            ("SLURM_JOB_USER", "root"),
            ("PATH", "/bin"),
        ])
    }

    fn run(a: &[&str], env: &BTreeMap<&'static str, &'static str>) -> Result<Plan, String> {
        let vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        plan(
            &words(a),
            &|k| env.get(k).map(|v| v.to_string()),
            &vars,
            "/work",
        )
    }

    fn step(a: &[&str], env: &BTreeMap<&'static str, &'static str>) -> Step {
        match run(a, env) {
            Ok(Plan::Run(s)) => *s,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    /// submitit's line (reference/clients.md): the command's own `-u` and `-m` stay its own;
    /// the patterns go to the nodes, which expand them per task.
    #[test]
    fn submitit_command_line() {
        let s = step(
            &[
                "--unbuffered",
                "--output",
                "/d/%j_%t_log.out",
                "--error",
                "/d/%j_%t_log.err",
                "/venv/bin/python",
                "-u",
                "-m",
                "submitit.core._submit",
                "/d",
            ],
            &job_env(),
        );
        assert_eq!(
            s.argv,
            words(&[
                "/venv/bin/python",
                "-u",
                "-m",
                "submitit.core._submit",
                "/d"
            ])
        );
        assert_eq!(s.stdout.as_deref(), Some("/d/%j_%t_log.out"));
        assert_eq!(s.stderr.as_deref(), Some("/d/%j_%t_log.err"));
        assert_eq!((s.job_id, s.ntasks, s.nodes), (42, 1, None));
        assert!(s.unbuffered);
        assert_eq!(s.name, "python");
        assert_eq!(s.cwd, "/work");
        assert!(s.env.contains(&("PATH".into(), "/bin".into())));
    }

    /// Slurm's defaults inside an allocation: one task per node of the job unless the job
    /// gave a task count; `-N` beyond the tasks is lowered with Slurm's warning.
    #[test]
    fn task_and_node_counts_follow_slurms_defaults() {
        let mut env = job_env();
        env.insert("SLURM_JOB_NUM_NODES", "2");
        assert_eq!(step(&["hostname"], &env).ntasks, 2);
        assert_eq!(step(&["-n", "4", "-l", "hostname"], &env).ntasks, 4);
        let s = step(&["--ntasks-per-node=3", "hostname"], &env);
        assert_eq!((s.ntasks, s.ntasks_per_node), (6, Some(3)));
        let s = step(&["-N", "2", "-n", "1", "hostname"], &env);
        assert_eq!(s.nodes, Some(1));
        assert_eq!(
            s.warnings,
            ["srun: Warning: can't run 1 processes on 2 nodes, setting nnodes to 1"]
        );
        env.insert("SLURM_NTASKS", "3");
        assert_eq!(step(&["hostname"], &env).ntasks, 3);
        // A job that asked --ntasks-per-node: its SLURM_NTASKS_PER_NODE is srun's default.
        let mut per_node = env.clone();
        per_node.insert("SLURM_NTASKS_PER_NODE", "2");
        let s = step(&["-N", "1", "hostname"], &per_node);
        assert_eq!((s.ntasks, s.ntasks_per_node), (2, Some(2)));
        let s = step(&["-n", "1", "hostname"], &per_node);
        assert_eq!((s.ntasks, s.ntasks_per_node), (1, None), "-n wins");
        assert_eq!(step(&["-c", "2", "hostname"], &env).cpus_per_task, Some(2));
        let s = step(&["-D", "sub", "-i", "none", "-J", "x", "true"], &env);
        assert_eq!(
            (s.cwd.as_str(), s.input, s.name.as_str()),
            ("/work/sub", Input::None, "x")
        );
        assert_eq!(step(&["-i", "all", "cat"], &env).input, Input::All);
        assert_eq!(
            step(&["-i", "in.%t", "cat"], &env).input,
            Input::File("in.%t".into())
        );
        assert_eq!(step(&["--jobid=7", "true"], &BTreeMap::new()).job_id, 7);
    }

    #[test]
    fn what_it_cannot_do_is_refused() {
        let env = job_env();
        let err = |a: &[&str]| run(a, &env).unwrap_err();
        assert!(err(&["--pty", "bash"]).starts_with("srun: error: "));
        assert!(err(&["-m", "cyclic", "-n2", "true"]).contains("by block only"));
        assert!(err(&["-K", "true"]).contains("--kill-on-bad-exit"));
        assert!(err(&["-w", "n2", "hostname"]).contains("--nodelist=n2"));
        assert!(run(&["-w", "n1", "hostname"], &env).is_ok());
        assert!(err(&["-n", "2", "--mpi=pmix", "true"]).contains("PMI"));
        assert!(err(&["-n", "2", "-i", "5", "cat"]).contains("--input=5"));
        assert!(err(&["-t", "5", "true"]).contains("--time inside an allocation"));
        assert!(run(&["-I", "true"], &BTreeMap::new())
            .unwrap_err()
            .contains("--immediate"));
        assert_eq!(err(&["-u"]), "srun: fatal: No command given to execute.\n");
        assert!(err(&["--bogus", "x"]).starts_with("srun: unrecognized option '--bogus'"));
        assert!(err(&["-n", "0", "x"]).contains("Invalid numeric value"));
    }

    /// srun's exit status (slurm.md §0.3): the highest exit code; a signal outranks it.
    #[test]
    fn exit_status_follows_slurms_rules() {
        assert_eq!(exit_status(&[(0, 0), (0, 0)]), 0);
        assert_eq!(exit_status(&[(0, 0), (3, 0), (1, 0)]), 3);
        assert_eq!(exit_status(&[(7, 0), (0, 9)]), 137);
        assert_eq!(exit_status(&[]), 0);
        let lines = failure_lines(&[
            ("n1".into(), 0, 3, 0),
            ("n1".into(), 1, 3, 0),
            ("n2".into(), 2, 0, 0),
            ("n2".into(), 3, 0, 9),
        ]);
        assert_eq!(
            lines,
            [
                "srun: error: n1: tasks 0-1: Exited with exit code 3",
                "srun: error: n2: task 3: Killed"
            ]
        );
        assert_eq!(ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    /// `-l`: each line gets its task's label, as wide as the highest task id; an unfinished
    /// line waits for the rest, and is labelled at the task's end.
    #[test]
    fn labels_go_before_whole_lines() {
        assert_eq!(label(0, 4), "0: ");
        assert_eq!(label(3, 12), " 3: ");
        assert_eq!(label(11, 12), "11: ");
        let mut l = Labeller::default();
        let mut out = Vec::new();
        l.push("1: ", b"a\nb", &mut out);
        assert_eq!(out, b"1: a\n");
        l.push("1: ", b"c\nd\n", &mut out);
        assert_eq!(out, b"1: a\n1: bc\n1: d\n");
        l.push("1: ", b"tail", &mut out);
        l.finish("1: ", &mut out);
        assert_eq!(out, b"1: a\n1: bc\n1: d\n1: tail");
    }

    fn allocation(a: &[&str]) -> Allocation {
        match run(
            a,
            &BTreeMap::from([("PATH", "/bin"), ("SLURM_NTASKS", "7")]),
        ) {
            Ok(Plan::Allocate(a)) => *a,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    /// Outside any allocation srun allocates a job of its own: the job's options go to
    /// sbatch's handling in its long form, `-n`/`-N` as srun settled them (so the step fits);
    /// the step's defaults come from srun's options, never from stray job variables.
    #[test]
    fn outside_an_allocation_srun_shapes_a_job_of_its_own() {
        let a = allocation(&["-N2", "-n4", "-l", "hostname"]);
        assert_eq!(a.options, ["--ntasks=4", "--nodes=2"]);
        let shared = allocation(&["-s", "hostname"]);
        assert_eq!(shared.options, ["--ntasks=1", "--oversubscribe"]);
        assert_eq!(
            (a.step.ntasks, a.step.nodes, a.step.job_id),
            (4, Some(2), 0)
        );
        assert!(!a.quiet);
        assert_eq!(a.step.name, "hostname");
        let a = allocation(&[
            "-Q",
            "-t",
            "5",
            "-p",
            "gpu",
            "--mem=1G",
            "-c",
            "2",
            "--exclusive",
            "-w",
            "n[1-2]",
            "-x",
            "n3",
            "-C",
            "fast",
            "--gpus-per-node=1",
            "-J",
            "x",
            "-D",
            "sub",
            "/bin/true",
        ]);
        assert!(a.quiet);
        assert_eq!(
            a.options,
            [
                "--ntasks=1",
                "--time=5",
                "--partition=gpu",
                "--mem=1G",
                "--cpus-per-task=2",
                "--exclusive",
                "--nodelist=n[1-2]",
                "--exclude=n3",
                "--constraint=fast",
                "--gpus-per-node=1",
                "--job-name=x",
                "--chdir=sub",
            ]
        );
        assert_eq!(
            (a.step.cpus_per_task, a.step.cwd.as_str()),
            (Some(2), "/work/sub")
        );
        assert_eq!(
            a.step.ntasks, 1,
            "SLURM_NTASKS outside a job is not a default"
        );
        let a = allocation(&["-N", "3", "true"]);
        assert_eq!((a.step.ntasks, a.options[0].as_str()), (3, "--ntasks=3"));
        let a = allocation(&["--ntasks-per-node=2", "-N2", "true"]);
        assert_eq!(a.step.ntasks, 4);
    }
}
