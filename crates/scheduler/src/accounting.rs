//! Accounting: the records `sacct` reads, kept in the replicated state (no slurmdbd).
//!
//! ```text
//!  job (or array task) reaches a terminal state ──► JobRecord { …, batch: StepRecord }
//!        (end_job / a pending job cancelled)          kept after MinJobAge purges the job
//!  Command::JobEnded's usage (MaxRSS, TotalCPU) ───► the record's `N.batch` step
//!  Command::PurgeRecords { ended_before } ─────────► records older than the retention go
//! ```
//!
//! Reference: slurm.md §1.7 (sacct reads one row per job and one per step) and §5.1 (slurmctld
//! sends job start/end to slurmdbd, which keeps them until `PurgeJobAfter`). Pending and
//! running jobs are read from their live job records (`live_record`), as slurmdbd would have
//! them from the start message.
//!
//! The retention is a leader decision carried through the log (`purge_due` → a
//! `PurgeRecords` proposal), so every replica removes the same records at the same index.

use crate::state::ClusterState;
use crate::types::{Job, JobId, JobState, PendingReason, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the accounting side of the state holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    records: BTreeMap<JobId, JobRecord>,
    /// `(end, id)` of every record: the purge order.
    by_end: BTreeSet<(TimestampMs, JobId)>,
    /// Who cancelled a running job that is still completing (its record is written when its
    /// processes are gone).
    cancelled_by: BTreeMap<JobId, u32>,
}

/// One job's accounting row, with its batch step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    /// Set for records of a job array.
    pub array_job_id: Option<JobId>,
    pub array_task_id: Option<u32>,
    /// Tasks this record still stood for when it ended (an array cancelled before they
    /// started), Slurm's spelling (`1-3,7`); empty otherwise.
    pub array_pending: String,
    pub array_max_running: u32,
    pub name: String,
    pub partition: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub state: JobState,
    /// `CANCELLED by <uid>`.
    pub cancelled_by: Option<u32>,
    pub exit_code: i32,
    pub exit_signal: i32,
    pub submit_at: TimestampMs,
    pub eligible_at: Option<TimestampMs>,
    pub start_at: Option<TimestampMs>,
    pub end_at: Option<TimestampMs>,
    /// Minutes; `None` = UNLIMITED.
    pub time_limit_min: Option<u64>,
    /// Allocated nodes, batch host first.
    pub nodes: Vec<String>,
    pub alloc_cpus: u32,
    pub req_cpus: u32,
    pub req_nodes: u32,
    /// Memory asked for, the whole job (Slurm's `ReqMem`, from the `mem=` TRES), MiB.
    pub req_mem_mb: u64,
    /// The last pending reason (`None` once the job ran).
    pub reason: PendingReason,
    pub work_dir: String,
    pub priority: u32,
    /// The `N.batch` step, once the job started.
    pub batch: Option<StepRecord>,
    /// The srun steps of its (last) run, `N.0`, `N.1`… (`steps.rs`).
    pub steps: Vec<crate::steps::Step>,
    /// Its QOS (sacct's `QOS`).
    pub qos: String,
    /// `--constraint` as given (`sacct -C`, Constraints).
    pub constraints: String,
    /// The batch script, when the submit asked the record to keep it (`JobSpec::keep_script`).
    pub script: Option<String>,
    /// The job's environment as `NAME=value` lines, when kept (`JobSpec::keep_env`).
    pub environment: Option<String>,
}

/// A step's row (`N.batch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub node: String,
    pub cpus: u32,
    pub start_at: TimestampMs,
    pub end_at: Option<TimestampMs>,
    pub state: JobState,
    pub exit_code: i32,
    pub exit_signal: i32,
    /// From the batch host's final report (`Command::JobEnded`); `None` when none came.
    pub max_rss_kb: Option<u64>,
    pub total_cpu_ms: Option<u64>,
}

impl JobRecord {
    /// The row for `job` as it is now; `step_exit` is what the batch host reported when the
    /// job ended (the job's own exit code stays 0:0 when it was cancelled first, as in Slurm).
    pub fn of(job: &Job, cancelled_by: Option<u32>, step_exit: Option<(i32, i32)>) -> JobRecord {
        let spec = &job.spec;
        let ended = job.state.is_terminal() && !job.completing;
        // srun's own allocation has no batch script, so no `N.batch` row (Slurm's neither).
        let batch = job
            .start_at
            .zip(job.alloc.first())
            .filter(|_| spec.has_batch_script())
            .map(|(start, share)| {
                let (exit_code, exit_signal) =
                    step_exit.unwrap_or((job.exit_code, job.exit_signal));
                let state = match job.state {
                    _ if !ended => JobState::Running,
                    JobState::Cancelled | JobState::Timeout => JobState::Cancelled,
                    JobState::Completed | JobState::Failed => {
                        if exit_code == 0 && exit_signal == 0 {
                            JobState::Completed
                        } else {
                            JobState::Failed
                        }
                    }
                    other => other,
                };
                StepRecord {
                    node: share.node.clone(),
                    cpus: share.cpus,
                    start_at: start,
                    end_at: job.end_at.filter(|_| ended),
                    state,
                    exit_code,
                    exit_signal,
                    max_rss_kb: None,
                    total_cpu_ms: None,
                }
            });
        let (array_job_id, array_task_id, array_pending, array_max_running) = match &job.array {
            Some(a) => (
                Some(a.array_job_id),
                a.task_id,
                crate::depend::format_indices(&a.pending),
                a.max_running,
            ),
            None => (None, None, String::new(), 0),
        };
        // Slurm's EligibleTime: unset while held (a job cancelled while held never had one),
        // and for a job that ended before its --begin; drover counts a dependency's wait as
        // eligible time.
        let held = matches!(
            job.reason,
            PendingReason::JobHeldUser | PendingReason::JobHeldAdmin
        ) && job.start_at.is_none();
        let eligible = job.submit_at.max(spec.begin_at.unwrap_or(0));
        let eligible_at = match (job.start_at, job.end_at) {
            (Some(start), _) => Some(start.min(eligible)),
            _ if held => None,
            (None, Some(end)) if job.state.is_terminal() && end < eligible => None,
            _ => Some(eligible),
        };
        JobRecord {
            job_id: job.id,
            array_job_id,
            array_task_id,
            array_pending,
            array_max_running,
            name: spec.name.clone(),
            partition: job.partition.clone(),
            user: spec.user.clone(),
            uid: spec.uid,
            gid: spec.gid,
            state: job.state,
            cancelled_by: cancelled_by.filter(|_| job.state == JobState::Cancelled),
            exit_code: job.exit_code,
            exit_signal: job.exit_signal,
            submit_at: job.submit_at,
            eligible_at,
            start_at: job.start_at,
            end_at: job.end_at.filter(|_| job.state.is_terminal()),
            time_limit_min: job.time_limit_min,
            nodes: job.alloc.iter().map(|s| s.node.clone()).collect(),
            alloc_cpus: job.alloc_cpus(),
            req_cpus: spec.cpus_per_node().saturating_mul(spec.nodes_needed()),
            req_nodes: spec.nodes_needed(),
            req_mem_mb: spec
                .mem_per_node()
                .saturating_mul(u64::from(spec.nodes_needed())),
            reason: job.reason.clone(),
            work_dir: spec.work_dir.clone(),
            priority: job.priority,
            batch,
            steps: job.steps.clone(),
            qos: spec.qos_name().to_string(),
            constraints: spec.constraint.clone(),
            script: spec.keep_script.then(|| spec.script.clone()),
            environment: spec
                .keep_env
                .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()),
        }
    }

    /// Slurm's JobID: `12`, `12_3` (an array task), `12_[3-7%2]` (tasks that never started).
    pub fn display_id(&self) -> String {
        match self.array_job_id {
            None => self.job_id.to_string(),
            Some(array) if !self.array_pending.is_empty() => {
                let throttle = if self.array_max_running > 0 {
                    format!("%{}", self.array_max_running)
                } else {
                    String::new()
                };
                format!("{array}_[{}{throttle}]", self.array_pending)
            }
            Some(array) => match self.array_task_id {
                Some(t) => format!("{array}_{t}"),
                None => array.to_string(),
            },
        }
    }
}

impl Accounting {
    /// Every record, in job id order.
    pub fn records(&self) -> impl Iterator<Item = &JobRecord> + '_ {
        self.records.values()
    }

    pub fn get(&self, id: JobId) -> Option<&JobRecord> {
        self.records.get(&id)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When the oldest record ended.
    pub fn oldest_end(&self) -> Option<TimestampMs> {
        self.by_end.first().map(|&(end, _)| end)
    }

    /// Who cancelled this job, while it is still completing.
    pub fn canceller(&self, id: JobId) -> Option<u32> {
        self.cancelled_by.get(&id).copied()
    }

    pub(crate) fn cancelled(&mut self, id: JobId, uid: u32) {
        self.cancelled_by.insert(id, uid);
    }

    /// A run that ends in a requeue leaves no record, and so no canceller either.
    pub(crate) fn requeued(&mut self, id: JobId) {
        self.cancelled_by.remove(&id);
    }

    fn insert(&mut self, record: JobRecord) {
        let key = (record.end_at.unwrap_or(0), record.job_id);
        if let Some(old) = self.records.insert(record.job_id, record) {
            self.by_end.remove(&(old.end_at.unwrap_or(0), old.job_id));
        }
        self.by_end.insert(key);
    }

    /// The batch host's usage for an ended job's batch step (MaxRSS, TotalCPU).
    pub(crate) fn usage(&mut self, id: JobId, max_rss_kb: u64, total_cpu_ms: u64) {
        if let Some(step) = self.records.get_mut(&id).and_then(|r| r.batch.as_mut()) {
            step.max_rss_kb = Some(max_rss_kb);
            step.total_cpu_ms = Some(total_cpu_ms);
        }
    }

    /// Removes the records of jobs that ended before `ended_before`.
    pub(crate) fn purge(&mut self, ended_before: TimestampMs) -> usize {
        let mut purged = 0;
        while let Some(&(end, id)) = self.by_end.first() {
            if end >= ended_before {
                break;
            }
            self.by_end.pop_first();
            self.records.remove(&id);
            purged += 1;
        }
        purged
    }

    pub(crate) fn by_end(&self) -> &BTreeSet<(TimestampMs, JobId)> {
        &self.by_end
    }

    pub(crate) fn cancellations(&self) -> &BTreeMap<JobId, u32> {
        &self.cancelled_by
    }
}

/// When the leader should propose a purge: the cut-off (`now - retention`) once the oldest
/// record is older than it. `retention_ms == 0` keeps records for ever.
pub fn purge_due(state: &ClusterState, now: TimestampMs, retention_ms: u64) -> Option<TimestampMs> {
    if retention_ms == 0 {
        return None;
    }
    let cutoff = now.checked_sub(retention_ms)?;
    let oldest = state.accounting.oldest_end()?;
    (oldest < cutoff).then_some(cutoff)
}

impl ClusterState {
    /// Writes the accounting record of a job that just reached its end (hook in `state.rs`).
    pub(crate) fn record_end(&mut self, id: JobId, step_exit: Option<(i32, i32)>) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let by = self.accounting.cancelled_by.remove(&id);
        let record = JobRecord::of(job, by, step_exit);
        self.accounting.insert(record);
    }

    /// What sacct reads: the records of ended jobs and the live rows of pending and running
    /// ones (a live job wins over an older record of the same id). `ids` (empty: all) names
    /// jobs or whole arrays.
    pub fn accounting_rows(&self, ids: &[JobId]) -> Vec<JobRecord> {
        let wanted = |r: &JobRecord| {
            ids.is_empty()
                || ids.contains(&r.job_id)
                || r.array_job_id.is_some_and(|a| ids.contains(&a))
        };
        let mut rows: BTreeMap<JobId, JobRecord> = self
            .accounting
            .records
            .values()
            .filter(|r| wanted(r))
            .map(|r| (r.job_id, r.clone()))
            .collect();
        for job in self.jobs.values() {
            let live = !job.state.is_terminal() || job.completing;
            if live {
                let row = JobRecord::of(job, self.accounting.canceller(job.id), None);
                if wanted(&row) {
                    rows.insert(job.id, row);
                }
            }
        }
        rows.into_values().collect()
    }
}
