//! The log's vocabulary: what a replica may be asked to apply, and what it answers.
//!
//! Append-only contract (STYLE P5): every variant carries an explicit serde name that is never
//! reused or renamed; new variants and fields go at the end. Golden tests in `state.rs` pin the
//! encoding of one entry per variant.

use crate::steps::StepRequest;
use crate::types::{
    JobId, JobSpec, NodeRegistration, NodeSet, NodeShare, Partition, PartitionState, PendingReason,
    SignalScope, TimestampMs,
};
use serde::{Deserialize, Serialize};

/// One Raft log entry's payload: a batch of client requests (group commit), stamped with the
/// leader's clock. `apply` keeps `now = max(now, at)`, so a new leader with a slower clock
/// cannot move time back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub at: TimestampMs,
    pub requests: Vec<Request>,
}

/// One client (or leader-internal) request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Client-chosen id; a retry with the same id gets the first answer again. Empty: no dedup.
    pub request_id: String,
    pub command: Command,
}

// A submit carries the whole job spec; commands are built once and moved into the log, so
// boxing it would change every caller for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    #[serde(rename = "submit")]
    Submit(JobSpec),
    #[serde(rename = "cancel")]
    Cancel { job_ids: Vec<JobId>, uid: u32 },
    #[serde(rename = "register_node")]
    RegisterNode(NodeRegistration),
    #[serde(rename = "node_state")]
    SetNodeState {
        node: String,
        change: NodeStateChange,
    },
    /// A scheduling pass's result, proposed by the leader and re-checked by apply.
    #[serde(rename = "allocate")]
    Allocate(Plan),
    #[serde(rename = "job_started")]
    JobStarted {
        job_id: JobId,
        node: String,
        pid: u32,
    },
    #[serde(rename = "job_finished")]
    JobFinished {
        job_id: JobId,
        node: String,
        exit_code: i32,
        signal: i32,
    },
    #[serde(rename = "launch_failed")]
    LaunchFailed {
        job_id: JobId,
        node: String,
        message: String,
    },
    /// Replace the partition table (from the leader's configuration).
    #[serde(rename = "define_partitions")]
    DefinePartitions(Vec<Partition>),
    /// The batch host's final report with why the job ended: a time limit the node enforced
    /// ends it `TIMEOUT`, an OOM kill in its cgroup `OUT_OF_MEMORY` (reference/slurm.md §4.7,
    /// §4.11); `Exited` is `JobFinished`. Usage is carried for accounting.
    #[serde(rename = "job_ended")]
    JobEnded {
        job_id: JobId,
        node: String,
        exit_code: i32,
        signal: i32,
        cause: EndCause,
        /// Peak memory of the job's cgroup (MaxRSS), KiB.
        max_rss_kb: u64,
        /// CPU time of the job's cgroup (TotalCPU), ms.
        total_cpu_ms: u64,
    },
    /// scancel with array forms: `12` (the job, every task of an array), `12_3` (one task).
    #[serde(rename = "cancel_refs")]
    CancelRefs { targets: Vec<JobRef>, uid: u32 },
    /// `scontrol hold` (`admin` when asked by an operator: JobHeldAdmin), `scontrol uhold`
    /// and `sbatch -H` (JobHeldUser).
    #[serde(rename = "hold")]
    Hold {
        targets: Vec<JobRef>,
        admin: bool,
        uid: u32,
    },
    /// `scontrol release`: users may release only their own user holds.
    #[serde(rename = "release")]
    Release { targets: Vec<JobRef>, uid: u32 },
    /// `scontrol requeue` (`hold`: `requeuehold`): a running job is stopped and pends again
    /// once its processes are gone; a finished one pends again at once. `Restarts` + 1.
    #[serde(rename = "requeue")]
    Requeue {
        targets: Vec<JobRef>,
        hold: bool,
        uid: u32,
    },
    /// `scancel --signal`: delivered once by the batch host of a running job; SIGKILL to a
    /// pending job cancels it, any other signal to one is refused (Slurm's `job_signal`).
    #[serde(rename = "signal")]
    Signal {
        targets: Vec<JobRef>,
        signal: i32,
        scope: SignalScope,
        uid: u32,
    },
    /// `scontrol update JobId=… Key=Value…`.
    #[serde(rename = "update_job")]
    UpdateJob {
        targets: Vec<JobRef>,
        update: JobUpdate,
        uid: u32,
    },
    /// Drops the accounting records of jobs that ended before this time (proposed by the
    /// leader from the configured retention, slurmdbd's `PurgeJobAfter`).
    #[serde(rename = "purge_records")]
    PurgeRecords { ended_before: TimestampMs },
    /// `scontrol update PartitionName=… State=… MaxTime=…` (operators only). The change stays
    /// until the partition's definition in the configuration changes (see
    /// `ClusterState::partitions_config`): a new leader with the same configuration keeps it.
    #[serde(rename = "update_partition")]
    UpdatePartition {
        name: String,
        update: PartitionUpdate,
        uid: u32,
    },
    /// srun inside an allocation: a new step of a running job (ids 0, 1, 2… per run), its
    /// tasks laid out over the job's nodes (`steps.rs`); refused beyond the allocation.
    #[serde(rename = "start_step")]
    StartStep {
        job_id: JobId,
        uid: u32,
        name: String,
        request: StepRequest,
    },
    /// srun's end of a step: srun's exit code, or the signal that ended a task (0: none).
    #[serde(rename = "end_step")]
    EndStep {
        job_id: JobId,
        step_id: u32,
        exit_code: i32,
        signal: i32,
    },
    /// srun outside any allocation ends the job it allocated for itself (Slurm's
    /// `slurm_complete_job` from srun): the job — running, without a batch script — ends with
    /// srun's outcome (COMPLETED when every task exited 0, else FAILED with the tasks' highest
    /// exit code, or the signal that ended one) and frees its resources at once. Only the
    /// job's user (or root) may end it.
    #[serde(rename = "complete_allocation")]
    CompleteAllocation {
        job_id: JobId,
        uid: u32,
        exit_code: i32,
        signal: i32,
    },
    /// A node's report (`JobStarted`, `JobFinished`, `JobEnded`, `LaunchFailed`) about one
    /// run of a job (`restarts`: 0 for the first run): applied only while that run is the
    /// job's current one. A node cut off while its job was requeued elsewhere reports the
    /// old run's end late; it must not end the new run (possibly on the same node).
    #[serde(rename = "run_report")]
    RunReport { restarts: u32, report: Box<Command> },
    /// Replace the QOS table (from the leader's configuration; `normal` exists without it).
    #[serde(rename = "define_qos")]
    DefineQos(Vec<crate::types::Qos>),
}

/// What `scontrol update partition` may change; `None`: left as it is. For the limits,
/// `Some(None)` is UNLIMITED.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionUpdate {
    pub state: Option<PartitionState>,
    pub max_time_min: Option<Option<u64>>,
    pub default_time_min: Option<Option<u64>>,
    pub max_nodes: Option<Option<u32>>,
    /// `Default=YES` makes it the default partition (and no other); `Default=NO` leaves the
    /// cluster without one.
    pub is_default: Option<bool>,
    pub priority_tier: Option<u32>,
    pub priority_job_factor: Option<u32>,
    /// `Nodes=` (`ALL` or names).
    pub nodes: Option<NodeSet>,
    /// `OverSubscribe=` (jobs already running keep the sharing they started with).
    pub oversubscribe: Option<crate::types::OverSubscribe>,
}

impl PartitionUpdate {
    pub fn apply_to(&self, p: &mut Partition) {
        if let Some(s) = self.state {
            p.state = s;
        }
        if let Some(t) = self.max_time_min {
            p.max_time_min = t;
        }
        if let Some(t) = self.default_time_min {
            p.default_time_min = t;
        }
        if let Some(n) = self.max_nodes {
            p.max_nodes = n;
        }
        if let Some(d) = self.is_default {
            p.is_default = d;
        }
        if let Some(t) = self.priority_tier {
            p.priority_tier = t;
        }
        if let Some(f) = self.priority_job_factor {
            p.priority_job_factor = f;
        }
        if let Some(n) = &self.nodes {
            p.nodes = n.clone();
        }
        if let Some(o) = self.oversubscribe {
            p.oversubscribe = o;
        }
    }
}

/// What `scontrol update job` may change; `None`: left as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobUpdate {
    /// `TimeLimit=` (`Some(None)`: UNLIMITED); users may only lower it.
    pub time_limit_min: Option<Option<u64>>,
    /// `Priority=` (operators only; 0 holds the job).
    pub priority: Option<u32>,
    /// `Nice=` (users may not lower it below 0).
    pub nice: Option<i32>,
    /// `JobName=`.
    pub name: Option<String>,
    /// `ArrayTaskThrottle=` (0: no limit).
    pub array_throttle: Option<u32>,
    /// `StartTime=` (`--begin`; `Some(None)`: at once).
    pub begin_at: Option<Option<TimestampMs>>,
    /// `Dependency=` (`Some(None)`: none).
    pub dependency: Option<Option<crate::depend::Dependency>>,
}

/// A job as scancel and scontrol name it: `12` or `12_3` (one task of array 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobRef {
    pub job: JobId,
    pub task: Option<u32>,
}

impl JobRef {
    /// Parses `12` or `12_3`.
    pub fn parse(s: &str) -> Option<JobRef> {
        let (id, task) = match s.split_once('_') {
            Some((id, t)) => (id, Some(t.parse().ok()?)),
            None => (s, None),
        };
        let id: u64 = id.parse().ok().filter(|&n| n > 0)?;
        Some(JobRef {
            job: JobId(id),
            task,
        })
    }
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.task {
            Some(t) => write!(f, "{}_{t}", self.job),
            None => write!(f, "{}", self.job),
        }
    }
}

/// Why a job ended on its node, beyond its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndCause {
    #[serde(rename = "exited")]
    Exited,
    /// Stopped on request (scancel): the job keeps the state the cancel gave it.
    #[serde(rename = "stopped")]
    Stopped,
    #[serde(rename = "time_limit")]
    TimeLimit,
    #[serde(rename = "out_of_memory")]
    OutOfMemory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStateChange {
    #[serde(rename = "down")]
    Down { reason: String },
    #[serde(rename = "drain")]
    Drain { reason: String },
    #[serde(rename = "resume")]
    Resume,
    /// Missed heartbeats, noticed by the leader's liveness loop.
    #[serde(rename = "not_responding")]
    NotResponding,
}

/// A planner's output: data, proposed by the leader, re-checked by apply (STYLE P2, P4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub allocations: Vec<PlannedAllocation>,
    /// Pending reasons that changed since the state the plan was made from.
    pub reasons: Vec<(JobId, PendingReason)>,
    /// Expected starts (`squeue --start`) that moved by more than `bf_resolution`, or appeared
    /// or vanished, since the state the plan was made from.
    pub starts: Vec<PlannedStart>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty() && self.reasons.is_empty() && self.starts.is_empty()
    }
}

/// Where and when the planner expects a pending job to start (its backfill reservation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStart {
    pub job_id: JobId,
    /// `None`: no start within `bf_window` (or the job cannot be planned at all).
    pub start_at: Option<TimestampMs>,
    pub nodes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAllocation {
    pub job_id: JobId,
    pub nodes: Vec<NodeShare>,
}

/// What apply answers for one request. Deterministic: the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    #[serde(rename = "submitted")]
    Submitted { job_id: JobId },
    #[serde(rename = "cancelled")]
    Cancelled {
        outcomes: Vec<(JobId, Option<Rejection>)>,
    },
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "allocated")]
    Allocated { started: u32, refused: u32 },
    #[serde(rename = "rejected")]
    Rejected(Rejection),
    /// Per-job outcomes of hold and release (`None`: done).
    #[serde(rename = "outcomes")]
    Outcomes {
        outcomes: Vec<(JobRef, Option<Rejection>)>,
    },
    /// A step created: its id and its nodes with their task counts, in task order.
    #[serde(rename = "step_started")]
    StepStarted {
        step_id: u32,
        layout: Vec<(String, u32)>,
    },
}

/// A request refused by apply, with Slurm's error text (src/common/slurm_errno.c).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("Invalid partition name specified")]
    InvalidPartition,
    #[error("Invalid job id specified")]
    InvalidJobId,
    #[error("Job/step already completing or completed")]
    AlreadyDone,
    #[error("Invalid node name specified")]
    InvalidNodeName,
    #[error("Requested node configuration is not available")]
    NodeConfigUnavailable,
    #[error("Node count specification invalid")]
    InvalidNodeCount,
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid generic resource (gres) specification")]
    InvalidGres,
    #[error("Invalid feature specification")]
    InvalidFeature,
    #[error("Job dependency problem")]
    DependencyProblem,
    #[error("Invalid job array specification")]
    InvalidArray,
    #[error("Job is no longer pending execution")]
    NotPending,
    #[error("Access/permission denied")]
    AccessDenied,
    #[error("Job is pending execution")]
    JobPending,
    #[error("More processors requested than permitted")]
    TooManyProcessors,
    #[error("Invalid qos specification")]
    InvalidQos,
}
