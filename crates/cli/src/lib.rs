//! The `drover` binary's library: the Slurm commands, the daemon roles and the local cluster.
//!
//! Invoked through a link named `sbatch`, `squeue`, … the binary acts as that command
//! (`dispatch` looks at argv[0]); invoked as `drover` it offers the roles (`ctld`, `noded`),
//! `up`, `restart` and `bench`, and the commands as subcommands (`drover squeue`).

pub mod bench;
pub mod client;
pub mod commands;
pub mod config;
pub mod control;
pub mod format;
pub mod getopt;
pub mod identity;
pub mod procs;
pub mod roles;
pub mod sacct;
pub mod sacctmgr;
pub mod sbatch_prep;
pub mod scancel;
pub mod scontrol_show;
pub mod sim;
pub mod sinfo;
pub mod squeue;
pub mod squeue_steps;
pub mod srun;
pub mod srun_alloc;
pub mod srun_step;
pub mod up;

use std::path::PathBuf;

/// Largest gRPC message the commands accept (big queues).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const USAGE: &str = "drover — a Slurm-compatible workload manager with replicated controllers

usage:
  drover up [--dir DIR] [--replicas 3|5] [--nodes N] [--cpus-per-node C] [--mem-per-node MB]
            [--job-record-retention-s S] [--accounting-store-flags job_script,job_env]
            [--node-timeout-s S]
  drover restart --dir DIR ctld-<id>|noded-<name>
  drover ctld --config FILE --id K [--data-dir DIR]
  drover noded --config FILE --name NAME [--state-dir DIR]
  drover supervise --state-dir DIR --job ID   (started by noded: one job's supervisor)
  drover supervise --zygote --state-dir DIR   (started by noded: forks its supervisors)
  drover bench failover --dir DIR [--kills 20]
  drover bench submit --dir DIR [--clients 64] [--jobs 20000]
  drover bench sbatch --dir DIR [--jobs 500]
  drover bench latency --dir DIR [--jobs 200]
  drover bench throughput --dir DIR [--jobs 2000]
  drover sim --trace FILE.swf[.gz] [--policy fcfs|easy|drover|all] [--nodes N --cpus-per-node C]
             [--max-jobs N] [--json] [--plot FILE.svg]
  drover sbatch|squeue|scancel|sinfo|scontrol|sacct|sacctmgr ARGS...   (or through links of those names)
";

/// Runs the binary; returns the process exit code.
pub fn dispatch(argv: Vec<String>) -> i32 {
    let name = argv
        .first()
        .map(|a| {
            std::path::Path::new(a)
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("drover")
                .to_string()
        })
        .unwrap_or_else(|| "drover".to_string());
    let rest = argv.get(1..).unwrap_or(&[]).to_vec();
    if name == "drover" {
        match rest.first() {
            None => {
                eprint!("{USAGE}");
                2
            }
            Some(sub) => admin(sub, &rest[1..]),
        }
    } else {
        command(&name, &rest)
    }
}

fn command(name: &str, args: &[String]) -> i32 {
    match name {
        "sbatch" => commands::sbatch(args),
        "squeue" => commands::squeue(args),
        "scancel" => commands::scancel(args),
        "sinfo" => commands::sinfo(args),
        "scontrol" => commands::scontrol(args),
        "sacct" => commands::sacct(args),
        "sacctmgr" => commands::sacctmgr(args),
        "srun" => commands::srun(args),
        other => {
            eprintln!("drover: unknown command `{other}`\n\n{USAGE}");
            2
        }
    }
}

/// Flags of the form `--name value` or `--name=value`.
struct Flags {
    values: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Flags, String> {
        let mut values = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if let Some(flag) = a.strip_prefix("--") {
                let (k, v) = match flag.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => {
                        i += 1;
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("--{flag} needs a value"))?;
                        (flag.to_string(), v)
                    }
                };
                if !known.contains(&k.as_str()) {
                    return Err(format!(
                        "unknown option --{k} (known: {})",
                        known
                            .iter()
                            .map(|k| format!("--{k}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                values.push((k, v));
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        Ok(Flags { values, positional })
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("--{k} wants a number, got `{v}`")),
        }
    }
}

fn admin(sub: &str, args: &[String]) -> i32 {
    let result = match sub {
        "sbatch" | "squeue" | "scancel" | "sinfo" | "scontrol" | "srun" | "sacct" | "sacctmgr" => {
            return command(sub, args)
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return 0;
        }
        "up" => run_up(args),
        "restart" => Flags::parse(args, &["dir"])
            .map_err(anyhow::Error::msg)
            .and_then(|f| {
                let dir = PathBuf::from(f.get("dir").unwrap_or(".drover"));
                match f.positional.as_slice() {
                    [label] => up::restart(&dir, label),
                    _ => Err(anyhow::anyhow!(
                        "usage: drover restart --dir DIR ctld-<id>|noded-<name>"
                    )),
                }
            }),
        "ctld" => Flags::parse(args, &["config", "id", "data-dir"])
            .map_err(anyhow::Error::msg)
            .and_then(|f| {
                let config = PathBuf::from(f.get("config").unwrap_or("/etc/drover/drover.toml"));
                let id = f
                    .num::<u64>("id")
                    .map_err(anyhow::Error::msg)?
                    .ok_or_else(|| anyhow::anyhow!("drover ctld needs --id K"))?;
                roles::ctld(&config, id, f.get("data-dir").map(PathBuf::from))
            }),
        "noded" => Flags::parse(args, &["config", "name", "state-dir"])
            .map_err(anyhow::Error::msg)
            .and_then(|f| {
                let config = PathBuf::from(f.get("config").unwrap_or("/etc/drover/drover.toml"));
                let name = f
                    .get("name")
                    .map(str::to_string)
                    .unwrap_or_else(identity::hostname);
                roles::noded(&config, &name, f.get("state-dir").map(PathBuf::from))
            }),
        // A job's supervisor, or the daemon's supervisor starter (`--zygote`): the code of
        // `drover-stepd`, for a node whose `drover` has no `drover-stepd` beside it.
        "supervise" => return roles::stepd(&[&["supervise".to_string()], args].concat()),
        "bench" => run_bench(args),
        "sim" => sim::run(args),
        other => Err(anyhow::anyhow!("unknown subcommand `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("drover {sub}: error: {e:#}");
            1
        }
    }
}

fn run_up(args: &[String]) -> anyhow::Result<()> {
    let f = Flags::parse(
        args,
        &[
            "dir",
            "replicas",
            "nodes",
            "cpus-per-node",
            "mem-per-node",
            "job-record-retention-s",
            "accounting-store-flags",
            "node-timeout-s",
        ],
    )
    .map_err(anyhow::Error::msg)?;
    let n = |k: &str| f.num::<u64>(k).map_err(anyhow::Error::msg);
    up::up(up::UpArgs {
        dir: PathBuf::from(f.get("dir").unwrap_or(".drover")),
        replicas: n("replicas")?.unwrap_or(3) as u32,
        nodes: n("nodes")?.unwrap_or(2) as u32,
        cpus_per_node: n("cpus-per-node")?.map(|c| c as u32),
        mem_per_node_mb: n("mem-per-node")?,
        job_record_retention_s: n("job-record-retention-s")?
            .unwrap_or_else(config::default_record_retention),
        accounting_store_flags: f.get("accounting-store-flags").unwrap_or("").to_string(),
        node_timeout_s: n("node-timeout-s")?.unwrap_or(30),
    })
}

fn run_bench(args: &[String]) -> anyhow::Result<()> {
    let (which, rest) = args.split_first().ok_or_else(|| {
        anyhow::anyhow!("usage: drover bench failover|submit|sbatch|latency|throughput --dir DIR")
    })?;
    let f = Flags::parse(rest, &["dir", "kills", "clients", "jobs"]).map_err(anyhow::Error::msg)?;
    let dir = PathBuf::from(f.get("dir").unwrap_or(".drover"));
    let n = |k: &str, d: u64| {
        f.num::<u64>(k)
            .map(|v| v.unwrap_or(d))
            .map_err(anyhow::Error::msg)
    };
    match which.as_str() {
        "failover" => bench::failover(&dir, n("kills", 20)? as u32),
        "submit" => bench::submit(
            &dir,
            n("clients", 64)? as usize,
            n("jobs", 20_000)? as usize,
        ),
        "sbatch" => bench::sbatch_sequential(&dir, n("jobs", 500)? as usize),
        "latency" => bench::latency(&dir, n("jobs", 200)? as usize),
        "throughput" => bench::throughput(&dir, n("jobs", 2000)? as usize),
        other => Err(anyhow::anyhow!(
            "unknown benchmark `{other}` (failover, submit, sbatch, latency, throughput)"
        )),
    }
}
