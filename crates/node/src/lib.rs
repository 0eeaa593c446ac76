//! drover-node: the node daemon (`drover noded`), Slurm's `slurmd` + `slurmstepd`. It registers
//! the node's resources, runs what the replicated state assigns to it and reports what
//! happened. It never decides: it converges (DESIGN.md §3, §4).
//!
//! ```text
//!  discovery ──► Register ──► any controller replica (client: fail over, retry)
//!                                  │
//!  heartbeat loop (1 s, running ids)│   assignments loop: long poll (after_index, 5 s)
//!                                  ▼
//!            fence: drop replies older than the highest applied index seen
//!                                  ▼
//!            reconcile(desired, actual) -> Vec<Action>       (pure)
//!                 │ Launch                    │ Stop
//!                 ▼                           ▼
//!            launcher::Zygote (forks) ──► `drover-stepd: job N` (own process group, one per job):
//!                 │                     cgroup (cpuset, memory, devices) → launch script →
//!                 │                     child exit / time limit / "stop" → status.json
//!                 │ unix socket jobs/<id>/sock: "running <pid>", "stop", "ended"
//!                 ▼
//!            STARTED / FINISHED (cause: exited, stopped, time limit, OOM; MaxRSS, TotalCPU)
//!                 ▼
//!            outbox (state_dir/pending-reports.json.{0,1}) ──► ReportJobs, retried until answered
//!                                             └──► finished set (finished-jobs.json.{0,1}):
//!                                                  never launched again
//! ```
//!
//! srun's job steps come in through the `Tasks` service ([`tasks`], served on the address the
//! daemon registers): a launch is checked against the assignments last taken in (the job
//! must run here), its tasks start as the job's user in the job's cgroup when this node has
//! it, and their output and exits stream back to srun. Unlike batch scripts, step tasks are
//! the daemon's children: a daemon killed during a step breaks srun's streams, and srun ends
//! the step.
//!
//! The daemon never owns a job's processes: `kill -9` of the daemon leaves every job running.
//! At start it re-attaches to the supervisors it finds in `state_dir/jobs/`, and reports the
//! jobs that ended while it was away from their `status.json`, once.
//!
//! Side effects have one home each (STYLE P12): only `launcher` spawns or signals processes,
//! only `cgroup` writes to /sys/fs/cgroup, only `discovery::gpu` calls NVML, only `state` (and
//! the job directories of `launcher` and `supervisor`) writes to `state_dir`, only `client`
//! talks to controllers.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

pub mod cgroup;
pub mod client;
mod daemon;
pub mod discovery;
pub mod launcher;
pub mod pattern;
pub mod reconcile;
pub mod state;
pub mod supervisor;
pub mod tasks;
mod users;

/// Slurm's KillWait default: between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How `drover noded` is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name in the cluster (`SLURMD_NODENAME`).
    pub name: String,
    /// Controller replica addresses, e.g. `127.0.0.1:7001`; any of them serves the node API.
    pub controllers: Vec<String>,
    /// Where the daemon keeps pending reports and the finished job set (on disk).
    pub state_dir: PathBuf,
    /// Where job directories go (each job's script, supervisor socket and status; removed
    /// when the job ends). `None`: a directory of the daemon's own on `/dev/shm` when that is
    /// a tmpfs that allows exec, else `state_dir` ([`runtime_dir`]). Files there live as
    /// long as their job: on disk, creating and deleting a dozen per job kept ext4's inode
    /// allocator busy for a quarter of a loaded node's CPU.
    pub runtime_dir: Option<PathBuf>,
    /// CPUs to register instead of the OS's count.
    pub cpus: Option<u32>,
    /// Memory (MiB) to register instead of /proc/meminfo's total.
    pub real_memory_mb: Option<u64>,
    /// Where the daemon serves `Tasks` (srun's job steps) and which it registers; empty:
    /// `127.0.0.1` on a free port (a local cluster). Port 0: a free port.
    pub addr: String,
    /// Between SIGTERM and SIGKILL when a job is stopped or reaches its time limit.
    pub kill_wait: std::time::Duration,
    /// Pretend GPUs instead of NVML's (tests, nodes without a driver).
    pub fake_gpus: Option<u32>,
    /// What starts supervisors: `EXE supervise --zygote --state-dir …`, once, forks one per job
    /// (`EXE supervise --state-dir … --job …` per job when it cannot): `drover-stepd` when it
    /// sits beside `drover`, else `drover` ([`supervisor_exe`]).
    pub supervisor_exe: PathBuf,
}

/// Where `config`'s job directories go: `runtime_dir` when set; else
/// `/dev/shm/drover-<node>-<hash of state_dir>` (mode 0700, owned by the daemon's user: one
/// that someone else made first is not used), when `/dev/shm` is a tmpfs without `noexec`;
/// else `state_dir`. A machine that restarts loses the tmpfs: the runs it held are then
/// reported lost (`state::FinishedFile::running`).
pub fn runtime_dir(config: &NodeConfig) -> PathBuf {
    if let Some(dir) = &config.runtime_dir {
        return dir.clone();
    }
    let shm = std::path::Path::new("/dev/shm");
    if !discovery::is_exec_tmpfs(shm) {
        return config.state_dir.clone();
    }
    let hash = daemon::fnv1a(config.state_dir.as_os_str().as_encoded_bytes());
    let dir = shm.join(format!("drover-{}-{hash:08x}", config.name));
    match discovery::own_private_dir(&dir) {
        Ok(()) => dir,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e,
                "cannot use the runtime directory; job directories go to the state directory");
            config.state_dir.clone()
        }
    }
}

/// Runs the node daemon until `shutdown` is cancelled. On shutdown the loops stop; running
/// jobs keep running under their supervisors, and reports not yet delivered stay in
/// `state_dir` for the next start.
///
/// Fails at start only: bad controller addresses, an unusable `state_dir`, memory that cannot
/// be discovered, or a registration the controllers reject.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let found = discovery::discover(config.cpus, config.real_memory_mb, config.fake_gpus)?;
    let store = state::Store::open(&config.state_dir)?;
    let client = client::Controllers::new(&config.controllers, shutdown.clone())?;
    tracing::info!(
        node = %config.name,
        controller = client.current_addr(),
        cpus = found.cpus,
        real_memory_mb = found.real_memory_mb,
        gpus = found.gpus.len(),
        state_dir = %config.state_dir.display(),
        supervisor = %config.supervisor_exe.display(),
        "node daemon starting"
    );
    let bind = if config.addr.is_empty() {
        "127.0.0.1:0"
    } else {
        config.addr.as_str()
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind} for srun's tasks"))?;
    let mut config = config;
    config.addr = listener.local_addr()?.to_string();
    tracing::info!(addr = %config.addr, "tasks service listening");
    let daemon = daemon::Daemon::new(&config, found, store, client, shutdown, Some(listener))?;
    Arc::new(daemon)
        .run()
        .await
        .with_context(|| format!("node daemon {}", config.name))
}

/// The supervisor's own small binary, installed beside `drover` (Slurm's `slurmstepd`).
pub const STEPD: &str = "drover-stepd";

/// What a node daemon whose binary is `own_exe` starts supervisors from (see
/// [`NodeConfig::supervisor_exe`]): `drover-stepd` beside it when there is one, else itself.
/// Both run the same code; the small binary's forks copy far fewer page tables, and its exec
/// (without a zygote) costs a tenth of the relocations and page faults.
pub fn supervisor_exe(own_exe: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let stepd = own_exe.with_file_name(STEPD);
    match std::fs::metadata(&stepd) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => stepd,
        _ => own_exe.to_path_buf(),
    }
}

/// `drover-stepd supervise --state-dir DIR --job ID` (`args` without the program name): the
/// supervisor alone. Returns the exit status.
pub fn stepd_main(args: &[String]) -> i32 {
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--zygote") {
        let Some(dir) = flag("--state-dir") else {
            eprintln!("usage: {STEPD} supervise --zygote --state-dir DIR");
            return 2;
        };
        return launcher::serve_zygote(std::path::Path::new(&dir), supervise_exit);
    }
    let (Some(dir), Some(job)) = (flag("--state-dir"), flag("--job")) else {
        eprintln!("usage: {STEPD} supervise --state-dir DIR --job ID");
        return 2;
    };
    let Ok(job) = job.parse::<u64>() else {
        eprintln!("{STEPD}: --job: not a job id: {job}");
        return 2;
    };
    supervise_exit(std::path::Path::new(&dir), job)
}

/// One supervisor's run (see [`supervisor`]), as an exit status.
fn supervise_exit(state_dir: &std::path::Path, job_id: u64) -> i32 {
    match supervisor::main(state_dir, job_id) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{STEPD}: error: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_small_supervisor_binary_is_used_when_it_is_beside_drover() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let drover = tmp.path().join("drover");
        std::fs::write(&drover, "").expect("write");
        assert_eq!(supervisor_exe(&drover), drover, "none beside it");
        let stepd = tmp.path().join(STEPD);
        std::fs::write(&stepd, "").expect("write");
        std::fs::set_permissions(&stepd, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(supervisor_exe(&drover), drover, "not executable");
        std::fs::set_permissions(&stepd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(supervisor_exe(&drover), stepd);
    }

    #[test]
    fn stepd_refuses_bad_arguments() {
        assert_eq!(stepd_main(&["supervise".into()]), 2);
        let args: Vec<String> = ["supervise", "--state-dir", "/nonexistent", "--job", "x"]
            .map(String::from)
            .into();
        assert_eq!(stepd_main(&args), 2);
        let args: Vec<String> = ["supervise", "--state-dir", "/nonexistent", "--job", "5"]
            .map(String::from)
            .into();
        assert_eq!(stepd_main(&args), 1, "no such job directory");
    }
}
