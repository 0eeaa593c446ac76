//! `srun` inside a batch job, for the one case drover can run honestly today: one task on the
//! batch host (job steps across nodes, `--pty`, several tasks and allocations of its own are
//! another issue). It replaces itself with the command (`exec`), with the environment Slurm
//! gives task 0 of step 0 and `-o`/`-e`/`-i` patterns expanded, so the command's exit status
//! is srun's, as for a 1-task step. Anything it cannot do as Slurm would is refused with
//! `srun: error:` and exit 1 — never run differently.
//!
//! This is what workflow tools call inside their batch scripts (submitit runs
//! `srun --unbuffered --output DIR/%j_%t_log.out --error … python -m submitit.core._submit DIR`,
//! reference/clients.md).

use crate::getopt::{self, long, opt, Arg, Opt};
use drover_node::pattern::{expand, PatternContext};

/// srun's options (src/srun/libsrun/opt.c), those that take a value marked so that the command
/// after them is found; what each means for a 1-task local step is decided in `plan`.
const OPTIONS: &[Opt] = &[
    opt('A', "account", Arg::Required, "ignore"),
    opt('b', "begin", Arg::Required, "ignore"),
    opt('c', "cpus-per-task", Arg::Required, "ignore"),
    opt('C', "constraint", Arg::Required, "ignore"),
    opt('d', "dependency", Arg::Required, "ignore"),
    opt('D', "chdir", Arg::Required, "chdir"),
    opt('e', "error", Arg::Required, "error"),
    opt('E', "preserve-env", Arg::No, "ignore"),
    opt('G', "gpus", Arg::Required, "ignore"),
    opt('h', "help", Arg::No, "help"),
    opt('i', "input", Arg::Required, "input"),
    opt('I', "immediate", Arg::Optional, "ignore"),
    opt('J', "job-name", Arg::Required, "ignore"),
    opt('k', "no-kill", Arg::Optional, "ignore"),
    opt('K', "kill-on-bad-exit", Arg::Optional, "ignore"),
    opt('l', "label", Arg::No, "label"),
    opt('m', "distribution", Arg::Required, "ignore"),
    opt('n', "ntasks", Arg::Required, "ntasks"),
    opt('N', "nodes", Arg::Required, "nodes"),
    opt('o', "output", Arg::Required, "output"),
    opt('O', "overcommit", Arg::No, "ignore"),
    opt('p', "partition", Arg::Required, "ignore"),
    opt('q', "qos", Arg::Required, "ignore"),
    opt('Q', "quiet", Arg::No, "ignore"),
    opt('r', "relative", Arg::Required, "relative"),
    opt('s', "oversubscribe", Arg::No, "ignore"),
    opt('t', "time", Arg::Required, "refuse"),
    opt('T', "threads", Arg::Required, "ignore"),
    opt('u', "unbuffered", Arg::No, "ignore"),
    opt('v', "verbose", Arg::No, "ignore"),
    opt('V', "version", Arg::No, "version"),
    opt('w', "nodelist", Arg::Required, "nodelist"),
    opt('W', "wait", Arg::Required, "ignore"),
    opt('x', "exclude", Arg::Required, "ignore"),
    opt('X', "disable-status", Arg::No, "ignore"),
    opt('Z', "no-allocate", Arg::No, "refuse"),
    long("cpu-bind", Arg::Required, "ignore"),
    long("exact", Arg::No, "ignore"),
    long("exclusive", Arg::Optional, "ignore"),
    long("export", Arg::Required, "export"),
    long("gpus-per-node", Arg::Required, "ignore"),
    long("gpus-per-task", Arg::Required, "ignore"),
    long("gres", Arg::Required, "ignore"),
    long("hint", Arg::Required, "ignore"),
    long("jobid", Arg::Required, "jobid"),
    long("mem", Arg::Required, "ignore"),
    long("mem-bind", Arg::Required, "ignore"),
    long("mem-per-cpu", Arg::Required, "ignore"),
    long("mpi", Arg::Required, "mpi"),
    long("multi-prog", Arg::No, "refuse"),
    long("ntasks-per-node", Arg::Required, "ntasks"),
    long("open-mode", Arg::Required, "open-mode"),
    long("overlap", Arg::No, "ignore"),
    long("pty", Arg::No, "refuse"),
    long("quit-on-interrupt", Arg::No, "ignore"),
    long("signal", Arg::Required, "refuse"),
    long("usage", Arg::No, "help"),
    long("het-group", Arg::Required, "refuse"),
];

pub const USAGE: &str = "Usage: srun [OPTIONS(0)... [executable(0) [args(0)...]]]
drover's srun runs one task (step 0) on the batch host of the job it is called from:
  srun [-n 1] [-N 1] [-o FILE] [-e FILE] [-i FILE] [-D DIR] [--export=...] command [args...]
Several tasks or nodes, --pty, --multi-prog and allocations of its own need job steps,
which drover does not have yet.
";

/// How to run the command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Launch {
    pub argv: Vec<String>,
    pub chdir: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdin: Option<String>,
    pub append: bool,
    /// Variables to set (the rest of the environment is inherited).
    pub env: Vec<(String, String)>,
    /// `--export=NONE`: start from these only.
    pub clear_env: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Help,
    Version,
    Run(Launch),
}

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
    // `-N 1-1` and `-N 1` both mean one node.
    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
    let (lo, hi) = (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?);
    (lo == hi).then_some(lo)
}

/// Decides what to run from srun's arguments and the job's environment.
pub fn plan(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Plan, String> {
    let split = command_start(args);
    let p = getopt::parse("srun", &args[..split.min(args.len())], OPTIONS)?;
    let argv: Vec<String> = args[split.min(args.len())..].to_vec();
    if p.has("help") {
        return Ok(Plan::Help);
    }
    if p.has("version") {
        return Ok(Plan::Version);
    }
    let Some(job_id) = env("SLURM_JOB_ID").or_else(|| env("SLURM_JOBID")) else {
        return Err(refuse(
            "drover's srun runs inside a batch job only (SLURM_JOB_ID is not set); allocations of its own (srun outside sbatch, salloc) are not available yet",
        ));
    };
    let mut launch = Launch::default();
    let mut ntasks: Option<u32> = None;
    let mut nodes: Option<u32> = None;
    for (id, value) in &p.opts {
        let v = value.clone().unwrap_or_default();
        match *id {
            "refuse" => {
                return Err(refuse(
                    "this srun option needs job steps, which drover does not have yet (it runs one task on the batch host)",
                ))
            }
            "label" => {
                return Err(refuse(
                    "--label is not available: drover's srun runs one task and hands it the output directly",
                ))
            }
            "ntasks" => match count(&v) {
                Some(n) => ntasks = Some(n),
                None => return Err(refuse(&format!("Invalid numeric value \"{v}\" for --ntasks"))),
            },
            "nodes" => match count(&v) {
                Some(n) => nodes = Some(n),
                None => return Err(refuse(&format!("Invalid node count specification: {v}"))),
            },
            "relative" if v != "0" => {
                return Err(refuse("--relative: drover's srun runs on the batch host (relative 0) only"))
            }
            "nodelist" => {
                let here = env("SLURMD_NODENAME").unwrap_or_default();
                if v != here {
                    return Err(refuse(&format!(
                        "--nodelist={v}: drover's srun runs on the batch host ({here}) only"
                    )));
                }
            }
            "jobid" if v != job_id => {
                return Err(refuse(&format!(
                    "--jobid={v}: drover's srun runs in its own job ({job_id}) only"
                )))
            }
            "mpi" if !matches!(v.as_str(), "none" | "pmi2" | "pmix") => {
                return Err(refuse(&format!("--mpi={v} is not available")))
            }
            "chdir" => launch.chdir = Some(v),
            "output" => launch.stdout = Some(v),
            "error" => launch.stderr = Some(v),
            "input" => launch.stdin = Some(v),
            "open-mode" => launch.append = v.eq_ignore_ascii_case("append") || v == "a",
            "export" => {
                let mut parts = v.split(',');
                match parts.next().map(str::to_ascii_uppercase).as_deref() {
                    Some("ALL") => {}
                    Some("NONE") => launch.clear_env = true,
                    _ => parts = v.split(','),
                }
                for kv in parts {
                    match kv.split_once('=') {
                        Some((k, val)) => launch.env.push((k.to_string(), val.to_string())),
                        None => {
                            if let Some(val) = env(kv) {
                                launch.env.push((kv.to_string(), val));
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
    // Slurm's srun takes its task and node counts from the allocation when not given.
    let job_nodes = env("SLURM_JOB_NUM_NODES")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    let job_tasks = env("SLURM_NTASKS")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    let nodes = nodes.unwrap_or(job_nodes);
    let tasks = ntasks.unwrap_or(job_tasks);
    if nodes != 1 || tasks != 1 {
        return Err(refuse(&format!(
            "drover's srun runs one task on one node (this step asks for {tasks} task(s) on {nodes} node(s)); steps across tasks and nodes are not available yet: use `srun -n 1 -N 1`, or start the tasks from the batch script"
        )));
    }
    let node = env("SLURMD_NODENAME").unwrap_or_default();
    let job: u64 = job_id.parse().unwrap_or(0);
    let array = match (env("SLURM_ARRAY_JOB_ID"), env("SLURM_ARRAY_TASK_ID")) {
        (Some(a), Some(t)) => a.parse().ok().zip(t.parse().ok()),
        _ => None,
    };
    let user = env("SLURM_JOB_USER")
        .or_else(|| env("USER"))
        .unwrap_or_default();
    let name = env("SLURM_JOB_NAME").unwrap_or_default();
    let ctx = PatternContext {
        job_id: job,
        job_name: &name,
        user: &user,
        node_name: &node,
        node_index: 0,
        task_id: 0,
        array,
        step: "0",
    };
    for path in [&mut launch.stdout, &mut launch.stderr, &mut launch.stdin] {
        if let Some(p) = path.as_mut() {
            *p = expand(p, &ctx);
        }
    }
    // `-i all|none|0` name tasks, not files: task 0 keeps the batch script's stdin.
    if launch
        .stdin
        .as_deref()
        .is_some_and(|i| matches!(i, "all" | "none" | "0"))
    {
        launch.stdin = None;
    }
    launch.argv = argv;
    let set = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut step_env = vec![
        set("SLURM_STEP_ID", "0"),
        set("SLURM_STEPID", "0"),
        set("SLURM_PROCID", "0"),
        set("SLURM_LOCALID", "0"),
        set("SLURM_NODEID", "0"),
        set("SLURM_NTASKS", "1"),
        set("SLURM_NPROCS", "1"),
        set("SLURM_STEP_NUM_TASKS", "1"),
        set("SLURM_STEP_NUM_NODES", "1"),
        set("SLURM_STEP_NODELIST", &node),
        set("SLURM_STEP_TASKS_PER_NODE", "1"),
        set("SLURM_TASKS_PER_NODE", "1"),
        set("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"),
        set("SLURM_SRUN_COMM_HOST", "127.0.0.1"),
    ];
    step_env.extend(std::mem::take(&mut launch.env));
    launch.env = step_env;
    Ok(Plan::Run(launch))
}

/// Runs the plan: replaces this process with the command. Returns only on failure.
pub fn exec(launch: &Launch) -> i32 {
    use std::os::unix::process::CommandExt;
    let open = |path: &str, write: bool| -> Result<std::fs::File, String> {
        let mut o = std::fs::OpenOptions::new();
        if write {
            o.create(true).write(true);
            if launch.append {
                o.append(true);
            } else {
                o.truncate(true);
            }
        } else {
            o.read(true);
        }
        o.open(path)
            .map_err(|e| format!("srun: error: Could not open stdio file {path}: {e}\n"))
    };
    let mut cmd = std::process::Command::new(&launch.argv[0]);
    cmd.args(&launch.argv[1..]);
    if launch.clear_env {
        cmd.env_clear();
    }
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &launch.chdir {
        cmd.current_dir(dir);
    }
    let files = [
        (launch.stdout.as_deref(), true),
        (launch.stderr.as_deref(), true),
        (launch.stdin.as_deref(), false),
    ];
    for (i, (path, write)) in files.iter().enumerate() {
        let Some(path) = path else { continue };
        let file = match open(path, *write) {
            Ok(f) => f,
            Err(e) => {
                eprint!("{e}");
                return 1;
            }
        };
        match i {
            0 => cmd.stdout(file),
            1 => cmd.stderr(file),
            _ => cmd.stdin(file),
        };
    }
    let err = cmd.exec();
    // Slurm: the task fails to start and srun reports exit code 2.
    eprintln!(
        "srun: error: execve(): {}: {}",
        launch.argv[0],
        err.kind()
            .to_string()
            .replace("entity not found", "No such file or directory")
    );
    2
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
        ])
    }

    fn run(a: &[&str], env: &BTreeMap<&'static str, &'static str>) -> Result<Plan, String> {
        plan(&words(a), &|k| env.get(k).map(|v| v.to_string()))
    }

    /// submitit's line (reference/clients.md): the command's own `-u` and `-m` stay its own.
    #[test]
    fn submitit_command_line() {
        let plan = run(
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
        )
        .unwrap();
        let Plan::Run(l) = plan else { panic!() };
        assert_eq!(
            l.argv,
            words(&[
                "/venv/bin/python",
                "-u",
                "-m",
                "submitit.core._submit",
                "/d"
            ])
        );
        assert_eq!(l.stdout.as_deref(), Some("/d/42_0_log.out"));
        assert_eq!(l.stderr.as_deref(), Some("/d/42_0_log.err"));
        assert!(l.env.contains(&("SLURM_PROCID".into(), "0".into())));
        assert!(l.env.contains(&("SLURM_STEP_ID".into(), "0".into())));
        assert!(l.env.contains(&("SLURM_NTASKS".into(), "1".into())));
    }

    #[test]
    fn array_patterns_and_steps() {
        let mut env = job_env();
        env.insert("SLURM_ARRAY_JOB_ID", "40");
        env.insert("SLURM_ARRAY_TASK_ID", "2");
        let Plan::Run(l) = run(&["-o", "%A_%a_%J_%s.out", "-n1", "-N", "1", "true"], &env).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.stdout.as_deref(), Some("40_2_42.0_0.out"));
        assert_eq!(l.argv, words(&["true"]));
    }

    #[test]
    fn what_it_cannot_do_is_refused() {
        let env = job_env();
        let err = |a: &[&str]| run(a, &env).unwrap_err();
        assert!(
            err(&["-n", "4", "hostname"]).starts_with("srun: error: drover's srun runs one task")
        );
        assert!(err(&["--pty", "bash"]).starts_with("srun: error: "));
        assert!(err(&["-l", "hostname"]).starts_with("srun: error: --label"));
        assert!(err(&["-w", "n2", "hostname"]).contains("batch host (n1)"));
        let mut multi = job_env();
        multi.insert("SLURM_JOB_NUM_NODES", "2");
        assert!(run(&["hostname"], &multi)
            .unwrap_err()
            .contains("on 2 node(s)"));
        assert!(
            run(&["-N1", "hostname"], &multi).is_ok(),
            "one node of two is fine"
        );
        let mut tasks = job_env();
        tasks.insert("SLURM_NTASKS", "3");
        assert!(run(&["hostname"], &tasks)
            .unwrap_err()
            .contains("3 task(s)"));
        assert!(run(&["-n", "1", "hostname"], &tasks).is_ok());
        assert!(run(&["hostname"], &BTreeMap::new())
            .unwrap_err()
            .contains("inside a batch job only"));
        assert_eq!(err(&["-u"]), "srun: fatal: No command given to execute.\n");
        assert!(err(&["--bogus", "x"]).starts_with("srun: unrecognized option '--bogus'"));
    }
}
