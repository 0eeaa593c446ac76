//! Domain types: jobs, nodes, partitions, and the words users see for their states.
//!
//! Encoding rule: these types are persisted in snapshots (postcard, which encodes enum variants
//! by position) and carried in log entries. Variants and fields are only ever appended, never
//! reordered or removed (see `SNAPSHOT_VERSION` in `state.rs`).

use crate::depend::Dependency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A job's id, assigned by `apply` from a counter in the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch, as stamped by the leader on a log entry.
pub type TimestampMs = u64;

/// What a user asked for (sbatch's options after parsing, in Slurm's units).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    /// `None`: the default partition.
    pub partition: Option<String>,
    pub nodes_min: u32,
    pub nodes_max: u32,
    pub ntasks: u32,
    /// True when `-n` was given (SLURM_NTASKS is then exported).
    pub ntasks_set: bool,
    pub cpus_per_task: u32,
    pub mem_per_node_mb: Option<u64>,
    pub mem_per_cpu_mb: Option<u64>,
    /// `None`: the partition's default time (or its maximum).
    pub time_limit_min: Option<u64>,
    pub script: String,
    pub argv: Vec<String>,
    pub work_dir: String,
    pub stdout: String,
    pub stderr: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub env: Vec<(String, String)>,
    pub hold: bool,
    pub submit_host: String,
    /// The batch script's path as given to sbatch (Slurm's `Command=`); empty for stdin/--wrap.
    pub command: String,
    /// GPUs on each node (`--gres=gpu[:type]:N`, `--gpus-per-node`); 0: none.
    pub gpus_per_node: u32,
    /// `--gres=gpu:TYPE:N`: only GPUs of this type.
    pub gpu_type: Option<String>,
    /// `--constraint`: node features, `a&b` (all) or `a|b` (any).
    pub constraint: String,
    /// `--exclusive`: whole nodes, shared with no other job.
    pub exclusive: bool,
    /// `-w/--nodelist` (expanded): every one of these nodes is in the allocation.
    pub nodelist: Vec<String>,
    /// `-x/--exclude` (expanded): none of these nodes is.
    pub exclude: Vec<String>,
    /// `--nice`: subtracted from the job's priority.
    pub nice: i32,
    /// `--begin`: not eligible before this time.
    pub begin_at: Option<TimestampMs>,
    /// `--dependency`, as parsed (every condition `Waiting`; the job's copy is kept current).
    pub dependency: Option<Dependency>,
    /// `--array`: the task indices and the `%` throttle.
    pub array: Option<ArraySpec>,
    /// `--signal=[{R|B}:]SIG[@SECS]`: sent SECS before the time limit.
    pub signal_warning: Option<SignalWarning>,
    /// `--open-mode=append`: output files are appended to rather than emptied.
    pub open_append: bool,
    /// `-s/--oversubscribe`: its CPUs may be shared with other jobs that asked the same, where
    /// the partition allows it (`OverSubscribe=YES`).
    pub oversubscribe: bool,
    /// `-q/--qos`; `None`: the default QOS, `normal`.
    pub qos: Option<String>,
    /// Slurm's `AccountingStoreFlags=job_script`, decided by the controller that took the
    /// submit: the job's accounting record keeps its script (`sacct -B`).
    pub keep_script: bool,
    /// `AccountingStoreFlags=job_env`: the record keeps the job's environment
    /// (`sacct --env-vars`).
    pub keep_env: bool,
    /// `--requeue`: when its node fails, the job pends again (a new run) instead of ending
    /// NODE_FAIL. Off by default (Slurm's JobRequeue=0): a node that is only cut off may still
    /// be running the job, so a second run is the user's choice.
    pub requeue: bool,
}

/// The QOS every job gets unless it asks for another; it always exists (priority 0).
pub const DEFAULT_QOS: &str = "normal";

/// A quality of service (sacctmgr's QOS), as the configuration defines it: a priority for the
/// multifactor QOS factor and per-job / per-user limits (man1/sacctmgr.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qos {
    pub name: String,
    pub priority: u32,
    /// `MaxWall`, minutes: a job with a longer time limit pends
    /// (`QOSMaxWallDurationPerJobLimit`); one without a limit gets this one.
    pub max_wall_min: Option<u64>,
    /// `MaxJobsPerUser`: running jobs of one user in this QOS (`QOSMaxJobsPerUserLimit`).
    pub max_jobs_per_user: Option<u32>,
}

impl Qos {
    /// `normal`, as Slurm creates it: priority 0, no limits.
    pub fn normal() -> Qos {
        Qos {
            name: DEFAULT_QOS.to_string(),
            priority: 0,
            max_wall_min: None,
            max_jobs_per_user: None,
        }
    }
}

impl JobSpec {
    /// The QOS the job asked for (`normal` when none).
    pub fn qos_name(&self) -> &str {
        self.qos.as_deref().unwrap_or(DEFAULT_QOS)
    }
}

/// Which of a job's processes a signal reaches (scancel's default, `--batch`, `--full`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalScope {
    /// The job's processes but not the batch shell (Slurm: its steps).
    #[default]
    #[serde(rename = "steps")]
    Steps,
    /// The batch shell only (`-b`, `--signal=B:…`).
    #[serde(rename = "batch")]
    Batch,
    /// Every process of the job (`-f`).
    #[serde(rename = "full")]
    Full,
}

/// `sbatch --signal`: a signal sent `secs` before the job's time limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalWarning {
    pub signal: i32,
    pub secs: u32,
    pub scope: SignalScope,
}

/// A signal asked for with `scancel --signal`, numbered so that the batch host delivers each
/// once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub seq: u32,
    pub signal: i32,
    pub scope: SignalScope,
}

/// `--array` as submitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    pub tasks: BTreeSet<u32>,
    /// At most this many tasks run at once; 0: no limit.
    pub max_running: u32,
}

/// A job record's place in a job array (doc/html/job_array.shtml). The array's first record
/// (whose id is the array's id) stands for every task not yet started; a task that starts is
/// split off into a record of its own with a new id, and the last task runs in the first
/// record itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayPart {
    pub array_job_id: JobId,
    /// This record's task; `None` while the record stands for tasks not yet started.
    pub task_id: Option<u32>,
    /// Tasks not yet started (only on the array's first record).
    pub pending: BTreeSet<u32>,
    /// The throttle (`%N`, `ArrayTaskThrottle`); 0: none.
    pub max_running: u32,
    /// Tasks of the array holding resources (kept on the first record while tasks pend).
    pub running: u32,
}

impl JobSpec {
    /// False for srun's own allocation (srun outside any job; Slurm's `BatchFlag=0`): such a
    /// job has no batch script. sbatch refuses an empty script (`Batch script is empty!`), so
    /// an empty `script` means exactly this, and the encoding needs no field of its own.
    pub fn has_batch_script(&self) -> bool {
        !self.script.is_empty()
    }

    /// Nodes the job needs (Slurm's `-N` minimum, at least one).
    pub fn nodes_needed(&self) -> u32 {
        self.nodes_min.max(1)
    }

    /// The most nodes the job may be given (`-N min-max`: as many as are free up to max);
    /// with `-n`, no more nodes than tasks (each node runs at least one), never below min.
    pub fn nodes_allowed(&self) -> u32 {
        let needed = self.nodes_needed();
        let max = self.nodes_max.max(needed);
        if self.ntasks_set {
            max.min(self.ntasks.max(needed))
        } else {
            max
        }
    }

    /// CPUs the job needs on each of its nodes: tasks spread evenly, `-c` CPUs per task.
    pub fn cpus_per_node(&self) -> u32 {
        self.cpus_per_node_on(self.nodes_needed())
    }

    /// CPUs on each node when the job runs on `nodes` nodes (its tasks spread over them).
    pub fn cpus_per_node_on(&self, nodes: u32) -> u32 {
        let tasks = self.ntasks.max(1);
        let tasks_per_node = tasks.div_ceil(nodes.max(1));
        tasks_per_node
            .saturating_mul(self.cpus_per_task.max(1))
            .max(1)
    }

    /// Memory the job needs on each of its nodes, in MiB (0 when none was asked for).
    pub fn mem_per_node(&self) -> u64 {
        self.mem_per_node_on(self.nodes_needed())
    }

    /// Memory on each node when the job runs on `nodes` nodes.
    pub fn mem_per_node_on(&self, nodes: u32) -> u64 {
        match (self.mem_per_node_mb, self.mem_per_cpu_mb) {
            (Some(mb), _) => mb,
            (None, Some(per_cpu)) => {
                per_cpu.saturating_mul(u64::from(self.cpus_per_node_on(nodes)))
            }
            (None, None) => 0,
        }
    }

    /// Does a node with these features satisfy `--constraint`? `&` and `,` mean all, `|` any.
    pub fn constraint_met(&self, features: &[String]) -> bool {
        let c = self.constraint.trim();
        if c.is_empty() {
            return true;
        }
        c.split('|').any(|alt| {
            alt.split(['&', ','])
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .all(|f| features.iter().any(|have| have == f))
        })
    }

    /// Can this node ever hold one node's share of the job (its total resources, type,
    /// features, exclusions)?
    pub fn node_could_hold(&self, reg: &NodeRegistration) -> bool {
        self.node_could_hold_on(reg, self.nodes_needed())
    }

    /// `node_could_hold` for the job spread over `nodes` nodes.
    pub fn node_could_hold_on(&self, reg: &NodeRegistration, nodes: u32) -> bool {
        reg.cpus >= self.cpus_per_node_on(nodes)
            && reg.real_memory_mb >= self.mem_per_node_on(nodes)
            && reg.gpus >= self.gpus_per_node
            && self.node_could_hold_type(reg)
    }

    /// The part of `node_could_hold` that does not depend on sizes: GPU type, features,
    /// exclusions.
    pub fn node_could_hold_type(&self, reg: &NodeRegistration) -> bool {
        (self.gpus_per_node == 0 || self.gpu_type.as_ref().is_none_or(|t| *t == reg.gpu_type))
            && self.constraint_met(&reg.features)
            && !self.exclude.contains(&reg.name)
    }
}

/// Slurm's job base states (slurm.h `enum job_states`), in the words `squeue` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobState {
    Pending,
    Running,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    OutOfMemory,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    /// The long name (`squeue %T`, `scontrol JobState=`).
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Cancelled => "CANCELLED",
            JobState::Failed => "FAILED",
            JobState::Timeout => "TIMEOUT",
            JobState::NodeFail => "NODE_FAIL",
            JobState::OutOfMemory => "OUT_OF_MEMORY",
        }
    }
}

/// Why a pending job is not running, spelled as Slurm's `job_state_reason.c` spells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PendingReason {
    /// Not yet evaluated by a scheduling pass.
    None,
    Priority,
    Resources,
    JobHeldUser,
    JobHeldAdmin,
    PartitionDown,
    PartitionInactive,
    PartitionNodeLimit,
    PartitionTimeLimit,
    /// Some required node is not available.
    ReqNodeNotAvail,
    /// `--begin` is in the future.
    BeginTime,
    Dependency,
    DependencyNeverSatisfied,
    JobArrayTaskLimit,
    QOSMaxWallDurationPerJobLimit,
    QOSMaxJobsPerUserLimit,
    /// Its QOS is no longer defined (the configuration dropped it).
    InvalidQOS,
}

impl PendingReason {
    pub fn name(&self) -> &'static str {
        match self {
            PendingReason::None => "None",
            PendingReason::Priority => "Priority",
            PendingReason::Resources => "Resources",
            PendingReason::JobHeldUser => "JobHeldUser",
            PendingReason::JobHeldAdmin => "JobHeldAdmin",
            PendingReason::PartitionDown => "PartitionDown",
            PendingReason::PartitionInactive => "PartitionInactive",
            PendingReason::PartitionNodeLimit => "PartitionNodeLimit",
            PendingReason::PartitionTimeLimit => "PartitionTimeLimit",
            PendingReason::ReqNodeNotAvail => "ReqNodeNotAvail",
            PendingReason::BeginTime => "BeginTime",
            PendingReason::Dependency => "Dependency",
            PendingReason::DependencyNeverSatisfied => "DependencyNeverSatisfied",
            PendingReason::JobArrayTaskLimit => "JobArrayTaskLimit",
            PendingReason::QOSMaxWallDurationPerJobLimit => "QOSMaxWallDurationPerJobLimit",
            PendingReason::QOSMaxJobsPerUserLimit => "QOSMaxJobsPerUserLimit",
            PendingReason::InvalidQOS => "InvalidQOS",
        }
    }
}

/// The share of one node a job holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeShare {
    pub node: String,
    pub cpus: u32,
    pub mem_mb: u64,
    /// GPU indices on the node (cons_tres: each index belongs to one job at a time).
    pub gpus: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    /// The partition the job runs in (resolved at submit).
    pub partition: String,
    /// Minutes; `None` = UNLIMITED (resolved at submit from the spec and the partition).
    pub time_limit_min: Option<u64>,
    pub state: JobState,
    pub reason: PendingReason,
    pub priority: u32,
    pub submit_at: TimestampMs,
    pub start_at: Option<TimestampMs>,
    pub end_at: Option<TimestampMs>,
    /// Nodes in allocation order; the first one runs the batch script.
    pub alloc: Vec<NodeShare>,
    /// Cancelled (or failed) while processes may still run: resources stay held until the
    /// batch host reports that the processes are gone (Slurm's COMPLETING).
    pub completing: bool,
    pub exit_code: i32,
    pub exit_signal: i32,
    pub batch_pid: Option<u32>,
    /// The planner's expected start for a pending job (`squeue --start`); written through the
    /// log only when it moves by more than `bf_resolution`.
    pub expected_start_at: Option<TimestampMs>,
    /// The nodes the planner means to start it on (Slurm's `SchedNodeList`).
    pub sched_nodes: Vec<String>,
    /// The job's dependency with each condition's current status (apply keeps it current).
    pub dependency: Option<Dependency>,
    /// Set for records of a job array.
    pub array: Option<ArrayPart>,
    /// Times the job was requeued (Slurm's `Restarts=`, `SLURM_RESTART_COUNT`).
    pub restarts: u32,
    /// Requeued while its processes still run: back to pending (held when `Some(true)`) once
    /// the batch host reports them gone.
    pub requeue: Option<bool>,
    /// The latest signals asked for this run (at most `SIGNALS_KEPT`), oldest first.
    pub signals: Vec<SignalRequest>,
    /// Set by an operator (`scontrol update job Priority=`): used instead of multifactor.
    pub admin_priority: Option<u32>,
    /// The steps of this run (`srun` inside the job): every running one and the latest
    /// `steps::ENDED_STEPS_KEPT` ended ones, in id order.
    pub steps: Vec<crate::steps::Step>,
    /// The id the next step of this run gets (0 at each start, as Slurm numbers them).
    pub next_step_id: u32,
    /// How many jobs may hold each CPU this job holds (its partition's `OverSubscribe=`
    /// count when it started sharing; 1, or 0 before it ever started: not shared).
    pub cpu_share: u32,
}

/// How many signal requests a job remembers for its batch host.
pub const SIGNALS_KEPT: usize = 16;

impl Job {
    pub fn batch_host(&self) -> Option<&str> {
        self.alloc.first().map(|s| s.node.as_str())
    }

    pub fn holds_resources(&self) -> bool {
        self.state == JobState::Running || self.completing
    }

    pub fn alloc_cpus(&self) -> u32 {
        self.alloc.iter().map(|s| s.cpus).sum()
    }

    /// Held (`--hold`, `scontrol hold/uhold`): priority 0 and a hold reason.
    pub fn is_held(&self) -> bool {
        self.state == JobState::Pending
            && matches!(
                self.reason,
                PendingReason::JobHeldUser | PendingReason::JobHeldAdmin
            )
    }

    /// The array's first record while some of its tasks have not started.
    pub fn is_array_meta(&self) -> bool {
        self.array.as_ref().is_some_and(|a| !a.pending.is_empty())
    }

    /// Slurm's display id: `12`, `12_3` for a task, `12_[3-7%2]` for tasks not yet started
    /// (squeue's JOBID column, `%i`).
    pub fn display_id(&self) -> String {
        match &self.array {
            None => self.id.to_string(),
            Some(a) if !a.pending.is_empty() => {
                let throttle = if a.max_running > 0 {
                    format!("%{}", a.max_running)
                } else {
                    String::new()
                };
                format!(
                    "{}_[{}{throttle}]",
                    a.array_job_id,
                    crate::depend::format_indices(&a.pending)
                )
            }
            Some(a) => match a.task_id {
                Some(t) => format!("{}_{t}", a.array_job_id),
                None => a.array_job_id.to_string(),
            },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub name: String,
    pub addr: String,
    pub cpus: u32,
    pub real_memory_mb: u64,
    pub boot_time: i64,
    pub version: String,
    pub os: String,
    pub arch: String,
    /// GPUs (generic resource `gpu`), indices 0..gpus.
    pub gpus: u32,
    /// Their type (`a100`), empty when untyped.
    pub gpu_type: String,
    /// Node features (`--constraint`).
    pub features: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub reg: NodeRegistration,
    pub registered_at: TimestampMs,
    /// False when DOWN (set by an operator, or by the leader after missed heartbeats).
    pub up: bool,
    pub not_responding: bool,
    pub drain: bool,
    pub reason: Option<String>,
    pub alloc_cpus: u32,
    pub alloc_mem_mb: u64,
    pub jobs: BTreeSet<JobId>,
    /// GPU indices held by jobs.
    pub alloc_gpus: BTreeSet<u32>,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.reg.name
    }

    pub fn free_cpus(&self) -> u32 {
        self.reg.cpus.saturating_sub(self.alloc_cpus)
    }

    pub fn free_mem_mb(&self) -> u64 {
        self.reg.real_memory_mb.saturating_sub(self.alloc_mem_mb)
    }

    pub fn free_gpus(&self) -> u32 {
        self.reg.gpus.saturating_sub(self.alloc_gpus.len() as u32)
    }

    /// Can new work be placed here?
    pub fn schedulable(&self) -> bool {
        self.up && !self.drain
    }

    /// Slurm's long node state with flags (`scontrol show node State=`).
    pub fn state_name(&self) -> String {
        let base = if !self.up {
            "DOWN"
        } else if self.alloc_cpus == 0 && self.jobs.is_empty() {
            "IDLE"
        } else if self.alloc_cpus >= self.reg.cpus {
            "ALLOCATED"
        } else {
            "MIXED"
        };
        let mut s = base.to_string();
        if self.drain {
            s.push_str("+DRAIN");
        }
        if self.not_responding {
            s.push_str("+NOT_RESPONDING");
        }
        s
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionState {
    Up,
    Down,
    Drain,
    Inactive,
}

impl PartitionState {
    pub fn name(self) -> &'static str {
        match self {
            PartitionState::Up => "UP",
            PartitionState::Down => "DOWN",
            PartitionState::Drain => "DRAIN",
            PartitionState::Inactive => "INACTIVE",
        }
    }
}

/// Which nodes a partition holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSet {
    /// Every registered node (Slurm's `Nodes=ALL`).
    All,
    /// These node names (an expanded host list), in configuration order.
    Names(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub name: String,
    pub nodes: NodeSet,
    pub is_default: bool,
    pub state: PartitionState,
    pub max_time_min: Option<u64>,
    pub default_time_min: Option<u64>,
    pub max_nodes: Option<u32>,
    pub priority_tier: u32,
    pub priority_job_factor: u32,
    /// `OverSubscribe=`: whether (and how many) jobs share a CPU, or whole nodes.
    pub oversubscribe: OverSubscribe,
}

/// The most jobs `OverSubscribe=YES:N|FORCE:N` may put on one CPU (drover's bound; the
/// planner keeps CPUs in shares of the least common multiple of the counts in use).
pub const MAX_OVERSUBSCRIBE: u32 = 32;

/// A partition's `OverSubscribe=` (man5/slurm.conf.5): `NO` (the default: CPUs are never
/// shared, nodes are), `YES[:N]` (CPUs of jobs that ask `--oversubscribe` are shared by up to
/// N such jobs, 4 by default), `FORCE[:N]` (every job's CPUs are, up to N), `EXCLUSIVE`
/// (every job gets whole nodes). Memory is never oversubscribed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverSubscribe {
    #[default]
    #[serde(rename = "no")]
    No,
    #[serde(rename = "yes")]
    Yes(u32),
    #[serde(rename = "force")]
    Force(u32),
    #[serde(rename = "exclusive")]
    Exclusive,
}

impl OverSubscribe {
    /// Slurm's spelling (`scontrol show partition`): `NO`, `YES:4`, `FORCE:4`, `EXCLUSIVE`.
    pub fn name(self) -> String {
        match self {
            OverSubscribe::No => "NO".to_string(),
            OverSubscribe::Yes(n) => format!("YES:{n}"),
            OverSubscribe::Force(n) => format!("FORCE:{n}"),
            OverSubscribe::Exclusive => "EXCLUSIVE".to_string(),
        }
    }

    /// Parses `NO`, `YES`, `YES:N`, `FORCE`, `FORCE:N`, `EXCLUSIVE` (any case).
    pub fn parse(s: &str) -> Result<OverSubscribe, String> {
        let (word, count) = match s.split_once(':') {
            Some((w, c)) => (w, Some(c)),
            None => (s, None),
        };
        let count = match count {
            None => 4,
            Some(c) => c
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_OVERSUBSCRIBE).contains(n))
                .ok_or_else(|| {
                    format!(
                        "bad OverSubscribe count `{c}` in `{s}` (1 to {MAX_OVERSUBSCRIBE} expected)"
                    )
                })?,
        };
        match (word.trim().to_ascii_uppercase().as_str(), s.contains(':')) {
            ("NO", false) => Ok(OverSubscribe::No),
            ("EXCLUSIVE", false) => Ok(OverSubscribe::Exclusive),
            ("YES", _) => Ok(OverSubscribe::Yes(count)),
            ("FORCE", _) => Ok(OverSubscribe::Force(count)),
            _ => Err(format!(
                "bad OverSubscribe `{s}` (NO, YES[:N], FORCE[:N] or EXCLUSIVE expected)"
            )),
        }
    }

    /// How many jobs may hold each CPU of a job that did (or did not) ask `--oversubscribe`
    /// (and did not ask `--exclusive`) in this partition.
    pub fn cpu_share(self, asked: bool) -> u32 {
        match self {
            OverSubscribe::Yes(n) if asked => n.max(1),
            OverSubscribe::Force(n) => n.max(1),
            _ => 1,
        }
    }
}

/// Least common multiple (for CPU share counts, all at most `MAX_OVERSUBSCRIBE`).
pub fn lcm(a: u64, b: u64) -> u64 {
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    let (a, b) = (a.max(1), b.max(1));
    (a / gcd(a, b)).saturating_mul(b)
}

impl Partition {
    /// The partition `drover up` and a config without partitions get: every node, no limits.
    pub fn default_debug() -> Partition {
        Partition {
            name: "debug".to_string(),
            nodes: NodeSet::All,
            is_default: true,
            state: PartitionState::Up,
            max_time_min: None,
            default_time_min: None,
            max_nodes: None,
            priority_tier: 1,
            priority_job_factor: 1,
            oversubscribe: OverSubscribe::No,
        }
    }

    pub fn contains(&self, node: &str) -> bool {
        match &self.nodes {
            NodeSet::All => true,
            NodeSet::Names(names) => names.iter().any(|n| n == node),
        }
    }
}
