//! The replicated state machine: `ClusterState::apply(&Proposal) -> Vec<Reply>`.
//!
//! Pure and deterministic (DESIGN §4): no clock (time is `Proposal::at`), no randomness, no
//! hash-map iteration. Every replica applies the same entries in the same order and reaches
//! byte-identical state.

use crate::accounting::Accounting;
use crate::command::{
    Command, EndCause, JobRef, JobUpdate, NodeStateChange, PartitionUpdate, Plan, Proposal,
    Rejection as Reject, Reply, Request,
};
use crate::depend::{DepKind, DepStatus, DepTask, Readiness, MAX_ARRAY_SIZE};
use crate::invariants;
use crate::steps::{Step, StepRequest, ENDED_STEPS_KEPT};
use crate::types::{
    lcm, ArrayPart, Job, JobId, JobSpec, JobState, Node, NodeRegistration, OverSubscribe,
    Partition, PartitionState, PendingReason, Qos, SignalRequest, SignalScope, TimestampMs,
    DEFAULT_QOS, SIGNALS_KEPT,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Drops the oldest ended steps beyond `ENDED_STEPS_KEPT` (running ones stay).
fn trim_steps(steps: &mut Vec<Step>) {
    let mut extra = steps
        .iter()
        .filter(|s| !s.is_running())
        .count()
        .saturating_sub(ENDED_STEPS_KEPT);
    steps.retain(|s| {
        if extra > 0 && !s.is_running() {
            extra -= 1;
            false
        } else {
            true
        }
    });
}

/// How long a finished job stays visible to squeue/scontrol (Slurm's MinJobAge, 300 s).
pub const MIN_JOB_AGE_MS: u64 = 300_000;

/// How many recent request ids are remembered for retries.
pub const REQUEST_MEMORY: usize = 100_000;

/// Slurm's priority/basic: the first job gets this, each later one a little less.
const BASE_PRIORITY: u64 = 4_294_901_760;

/// A job's priority under priority/basic (the planner computes multifactor priorities).
fn base_priority(id: JobId) -> u32 {
    BASE_PRIORITY.saturating_sub(id.0).max(1) as u32
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster's clock: the largest `at` applied so far.
    pub now: TimestampMs,
    pub next_job_id: u64,
    pub jobs: BTreeMap<JobId, Job>,
    pub nodes: BTreeMap<String, Node>,
    /// In configuration order, with the operators' `scontrol update` changes.
    pub partitions: Vec<Partition>,
    /// The table as the configuration last defined it (`DefinePartitions`): a new leader
    /// re-defines the partitions only when its configuration differs from this, so operators'
    /// changes outlive elections (and are replaced when the configuration changes, as Slurm's
    /// `scontrol reconfigure` does).
    pub partitions_config: Vec<Partition>,
    /// Finished jobs by end time, purged from `jobs` after `MIN_JOB_AGE_MS`.
    finished: BTreeSet<(TimestampMs, JobId)>,
    recent: BTreeMap<String, Reply>,
    recent_order: VecDeque<String>,
    /// Pending jobs a scheduling pass must consider (not held): an index, so that a pass costs
    /// the queue's length, not the number of jobs remembered. Checked by the invariants.
    queued: BTreeSet<JobId>,
    /// Fairshare usage per user (CPU-seconds of finished jobs, decayed with
    /// `USAGE_HALF_LIFE_MS`), read by the planner's priority.
    pub usage: BTreeMap<String, Usage>,
    /// Pending jobs waiting on a dependency condition, by the job the condition names: the
    /// conditions are decided when that job starts or ends (see `depend.rs`).
    dependents: BTreeMap<JobId, BTreeSet<JobId>>,
    /// Every record of a job array (its first record and the tasks split off), by array id.
    array_records: BTreeMap<JobId, BTreeSet<JobId>>,
    /// sacct's records (`accounting.rs`).
    pub accounting: Accounting,
    /// The QOS table as the configuration defines it (`normal` is implied when absent).
    pub qos: Vec<Qos>,
}

/// What one job (or array task) named by a dependency is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DepUnit {
    NotStarted,
    Started {
        at: TimestampMs,
    },
    /// `started`: when it started (or ended, if it never started).
    Ended {
        ok: bool,
        started: TimestampMs,
    },
}

/// Slurm's PriorityDecayHalfLife default (7 days).
pub const USAGE_HALF_LIFE_MS: u64 = 7 * 24 * 3600 * 1000;

/// A user's decayed usage as of `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_s: u64,
    pub at: TimestampMs,
}

impl Usage {
    /// The usage decayed to `now`: halved every half-life, linear between halvings. Integer
    /// arithmetic, so every replica computes the same value.
    pub fn at(&self, now: TimestampMs) -> u64 {
        decay(self.cpu_s, now.saturating_sub(self.at), USAGE_HALF_LIFE_MS)
    }
}

pub fn decay(value: u64, dt_ms: u64, half_life_ms: u64) -> u64 {
    let halvings = dt_ms / half_life_ms.max(1);
    if halvings >= 64 {
        return 0;
    }
    let v = value >> halvings;
    let rest = dt_ms % half_life_ms.max(1);
    v - (u128::from(v) * u128::from(rest) / (2 * u128::from(half_life_ms.max(1)))) as u64
}

impl ClusterState {
    pub fn new() -> ClusterState {
        ClusterState {
            next_job_id: 1,
            ..ClusterState::default()
        }
    }

    /// True when a pending job waits for a scheduling pass; with none, a pass plans nothing.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// What a scheduling pass reads, copied: the state without what only answers clients
    /// (accounting records, the request-dedup window) and without jobs that ended and hold
    /// nothing (kept for MinJobAge, up to hundreds of thousands under a high job rate). The
    /// leader plans from this copy instead of a whole clone; `plan(copy) == plan(state)`
    /// (tests/plan_properties.rs). The users of the jobs left out keep a zero fairshare
    /// usage, so the shares are computed over the same users.
    pub fn planning_copy(&self) -> ClusterState {
        let planned = |j: &Job| {
            !j.state.is_terminal()
                || j.completing
                || j.array.as_ref().is_some_and(|a| !a.pending.is_empty())
        };
        let mut usage = self.usage.clone();
        // Ended jobs mostly come in runs of one user's: a look-up per user change, not per job.
        let mut last: Option<&str> = None;
        for job in self.jobs.values().filter(|j| !planned(j)) {
            let user = job.spec.user.as_str();
            if last == Some(user) {
                continue;
            }
            last = Some(user);
            if !usage.contains_key(user) {
                usage.insert(user.to_string(), Usage::default());
            }
        }
        ClusterState {
            now: self.now,
            next_job_id: self.next_job_id,
            jobs: self
                .jobs
                .iter()
                .filter(|(_, j)| planned(j))
                .map(|(id, j)| (*id, j.clone()))
                .collect(),
            nodes: self.nodes.clone(),
            partitions: self.partitions.clone(),
            partitions_config: self.partitions_config.clone(),
            finished: BTreeSet::new(),
            recent: BTreeMap::new(),
            recent_order: VecDeque::new(),
            queued: self.queued.clone(),
            usage,
            dependents: self.dependents.clone(),
            array_records: self.array_records.clone(),
            accounting: Accounting::default(),
            qos: self.qos.clone(),
        }
    }

    /// Applies one log entry. The replies line up with `proposal.requests`.
    pub fn apply(&mut self, proposal: &Proposal) -> Vec<Reply> {
        self.now = self.now.max(proposal.at);
        if self.next_job_id == 0 {
            self.next_job_id = 1;
        }
        let replies = proposal
            .requests
            .iter()
            .map(|r| self.apply_request(r))
            .collect();
        self.purge_old_jobs();
        if cfg!(debug_assertions) {
            if let Err(e) = invariants::check(self) {
                panic!("invariant broken after apply: {e}");
            }
        }
        replies
    }

    /// Applies one command as a log entry of its own, stamped `at`, without a request id.
    pub fn apply_one(&mut self, at: TimestampMs, command: Command) -> Reply {
        let mut replies = self.apply(&Proposal {
            at,
            requests: vec![Request {
                request_id: String::new(),
                command,
            }],
        });
        replies.pop().unwrap_or(Reply::Ok)
    }

    fn apply_request(&mut self, request: &Request) -> Reply {
        if !request.request_id.is_empty() {
            if let Some(first) = self.recent.get(&request.request_id) {
                return first.clone();
            }
        }
        let reply = self.apply_command(&request.command);
        if !request.request_id.is_empty() {
            self.remember(request.request_id.clone(), reply.clone());
        }
        reply
    }

    fn remember(&mut self, id: String, reply: Reply) {
        self.recent.insert(id.clone(), reply);
        self.recent_order.push_back(id);
        while self.recent_order.len() > REQUEST_MEMORY {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    fn apply_command(&mut self, command: &Command) -> Reply {
        let result = match command {
            Command::Submit(spec) => self.submit(spec),
            Command::Cancel { job_ids, uid } => Ok(self.cancel(job_ids, *uid)),
            Command::RegisterNode(reg) => Ok(self.register_node(reg)),
            Command::SetNodeState { node, change } => self.set_node_state(node, change),
            Command::Allocate(plan) => Ok(self.allocate(plan)),
            Command::JobStarted { job_id, node, pid } => self.job_started(*job_id, node, *pid),
            Command::JobFinished {
                job_id,
                node,
                exit_code,
                signal,
            } => self.job_finished(*job_id, node, *exit_code, *signal),
            Command::LaunchFailed {
                job_id,
                node,
                message: _,
            } => self.job_finished(*job_id, node, 1, 0),
            Command::DefinePartitions(parts)
                if parts.iter().filter(|p| p.is_default).count() > 1
                    || parts
                        .iter()
                        .enumerate()
                        .any(|(i, p)| parts[..i].iter().any(|q| q.name == p.name)) =>
            {
                Err(Reject::Invalid(
                    "a partition table needs distinct names and at most one default".into(),
                ))
            }
            Command::DefineQos(list)
                if list
                    .iter()
                    .enumerate()
                    .any(|(i, q)| list[..i].iter().any(|o| o.name == q.name)) =>
            {
                Err(Reject::Invalid("a QOS table needs distinct names".into()))
            }
            Command::DefineQos(list) => {
                self.qos = list.clone();
                Ok(Reply::Ok)
            }
            Command::DefinePartitions(parts) => {
                self.partitions = parts.clone();
                self.partitions_config = parts.clone();
                Ok(Reply::Ok)
            }
            Command::JobEnded {
                job_id,
                node,
                exit_code,
                signal,
                cause,
                max_rss_kb,
                total_cpu_ms,
            } => self
                .job_ended(*job_id, node, *exit_code, *signal, *cause)
                .inspect(|_| self.accounting.usage(*job_id, *max_rss_kb, *total_cpu_ms)),
            Command::CancelRefs { targets, uid } => Ok(self.cancel_refs(targets, *uid)),
            Command::Hold {
                targets,
                admin,
                uid,
            } => Ok(self.hold(targets, *admin, *uid)),
            Command::Release { targets, uid } => Ok(self.release(targets, *uid)),
            Command::Requeue { targets, hold, uid } => Ok(self.requeue(targets, *hold, *uid)),
            Command::Signal {
                targets,
                signal,
                scope,
                uid,
            } => Ok(self.signal(targets, *signal, *scope, *uid)),
            Command::UpdateJob {
                targets,
                update,
                uid,
            } => Ok(self.update_jobs(targets, update, *uid)),
            Command::PurgeRecords { ended_before } => {
                self.accounting.purge(*ended_before);
                Ok(Reply::Ok)
            }
            Command::UpdatePartition { name, update, uid } => {
                self.update_partition(name, update, *uid)
            }
            Command::StartStep {
                job_id,
                uid,
                name,
                request,
            } => self.start_step(*job_id, *uid, name, request),
            Command::EndStep {
                job_id,
                step_id,
                exit_code,
                signal,
            } => self.end_step(*job_id, *step_id, *exit_code, *signal),
            Command::CompleteAllocation {
                job_id,
                uid,
                exit_code,
                signal,
            } => self.complete_allocation(*job_id, *uid, *exit_code, *signal),
            Command::RunReport { restarts, report } => match report.as_ref() {
                Command::JobStarted { job_id, .. }
                | Command::JobFinished { job_id, .. }
                | Command::JobEnded { job_id, .. }
                | Command::LaunchFailed { job_id, .. } => match self.jobs.get(job_id) {
                    // A past run's report (the job was requeued since): nothing to change,
                    // and the node may forget it.
                    Some(job) if job.restarts != *restarts => Ok(Reply::Ok),
                    _ => return self.apply_command(report),
                },
                _ => Err(Reject::Invalid(
                    "a run report carries a node's report about a job".into(),
                )),
            },
        };
        result.unwrap_or_else(Reply::Rejected)
    }

    /// The partition a job names, or the default one.
    pub fn partition(&self, name: Option<&str>) -> Option<&Partition> {
        match name {
            Some(n) => self.partitions.iter().find(|p| p.name == n),
            None => self
                .partitions
                .iter()
                .find(|p| p.is_default)
                .or(self.partitions.first()),
        }
    }

    /// Nodes of a partition in node-name order.
    pub fn partition_nodes<'a>(
        &'a self,
        part: &'a Partition,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.values().filter(move |n| part.contains(n.name()))
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<Reply, Reject> {
        let part = self
            .partition(spec.partition.as_deref())
            .ok_or(Reject::InvalidPartition)?;
        if spec.nodes_max != 0 && spec.nodes_max < spec.nodes_min {
            return Err(Reject::InvalidNodeCount);
        }
        // Reject what no node of the partition could ever hold (Slurm does the same at submit).
        let nodes: Vec<&Node> = self.partition_nodes(part).collect();
        for name in &spec.nodelist {
            if !nodes.iter().any(|n| n.name() == name) {
                return Err(Reject::InvalidNodeName);
            }
        }
        if !nodes.is_empty() {
            if let Some(t) = spec.gpu_type.as_ref().filter(|_| spec.gpus_per_node > 0) {
                if !nodes.iter().any(|n| n.reg.gpu_type == *t && n.reg.gpus > 0) {
                    return Err(Reject::InvalidGres);
                }
            }
            if !spec.constraint.trim().is_empty()
                && !nodes.iter().any(|n| spec.constraint_met(&n.reg.features))
            {
                return Err(Reject::InvalidFeature);
            }
            // `-N min-max` with tasks that do not fit on min nodes: the fewest nodes of the
            // range they fit on (Slurm's select plugin takes as many as the tasks need).
            let count = |k: u32| {
                nodes
                    .iter()
                    .filter(|n| spec.node_could_hold_on(&n.reg, k))
                    .count()
            };
            let needed = (spec.nodes_needed()..=spec.nodes_allowed().min(nodes.len() as u32))
                .find(|&k| count(k) >= k as usize)
                .unwrap_or(spec.nodes_needed());
            let fitting = count(needed);
            let listed_fit = spec.nodelist.iter().all(|name| {
                nodes
                    .iter()
                    .any(|n| n.name() == name && spec.node_could_hold_on(&n.reg, needed))
            });
            if fitting < needed as usize
                || !listed_fit
                || spec.nodelist.len() > spec.nodes_needed().max(spec.nodes_max) as usize
            {
                return Err(Reject::NodeConfigUnavailable);
            }
        }
        if let Some(a) = &spec.array {
            if a.tasks.is_empty() || a.tasks.last().is_some_and(|&t| t >= MAX_ARRAY_SIZE) {
                return Err(Reject::InvalidArray);
            }
        }
        if let Some(dep) = &spec.dependency {
            let known = dep
                .conditions
                .iter()
                .all(|c| c.kind == DepKind::Singleton || self.dep_records(c.job, c.task).is_some());
            if dep.conditions.is_empty() || !known {
                return Err(Reject::DependencyProblem);
            }
        }
        let qos = self.qos(spec.qos_name()).ok_or(Reject::InvalidQos)?;
        // A job with no limit gets its QOS's MaxWall, within the partition's MaxTime, before
        // the partition's DefaultTime is considered (Slurm's acct_policy `_set_time_limit`);
        // otherwise the partition's DefaultTime, else its MaxTime.
        let time_limit_min = spec.time_limit_min.or_else(|| match qos.max_wall_min {
            Some(wall) => Some(part.max_time_min.map_or(wall, |max| wall.min(max))),
            None => part.default_time_min.or(part.max_time_min),
        });
        let partition = part.name.clone();
        let id = JobId(self.next_job_id);
        self.next_job_id += 1;
        let held = spec.hold;
        let job = Job {
            id,
            spec: spec.clone(),
            partition,
            time_limit_min,
            state: JobState::Pending,
            reason: if held {
                PendingReason::JobHeldUser
            } else {
                PendingReason::None
            },
            priority: if held { 0 } else { base_priority(id) },
            submit_at: self.now,
            start_at: None,
            end_at: None,
            alloc: Vec::new(),
            completing: false,
            exit_code: 0,
            exit_signal: 0,
            batch_pid: None,
            expected_start_at: None,
            sched_nodes: Vec::new(),
            dependency: spec.dependency.clone(),
            restarts: 0,
            requeue: None,
            signals: Vec::new(),
            admin_priority: None,
            steps: Vec::new(),
            next_step_id: 0,
            cpu_share: 0,
            array: spec.array.as_ref().map(|a| ArrayPart {
                array_job_id: id,
                task_id: None,
                pending: a.tasks.clone(),
                max_running: a.max_running,
                running: 0,
            }),
        };
        if job.array.is_some() {
            self.array_records.entry(id).or_default().insert(id);
        }
        self.jobs.insert(id, job);
        if !held {
            self.queued.insert(id);
        }
        self.refresh_dependency(id);
        Ok(Reply::Submitted { job_id: id })
    }

    fn cancel(&mut self, job_ids: &[JobId], uid: u32) -> Reply {
        let outcomes = job_ids
            .iter()
            .map(|&job| {
                let r = JobRef { job, task: None };
                (job, self.cancel_ref(r, uid).err())
            })
            .collect();
        Reply::Cancelled { outcomes }
    }

    fn cancel_refs(&mut self, targets: &[JobRef], uid: u32) -> Reply {
        let outcomes = targets
            .iter()
            .map(|&r| (r, self.cancel_ref(r, uid).err()))
            .collect();
        Reply::Outcomes { outcomes }
    }

    /// Cancels a job, every record of an array (`12`), or one task (`12_3`; a task that has
    /// not started is split off into its own CANCELLED record, as Slurm does).
    fn cancel_ref(&mut self, r: JobRef, uid: u32) -> Result<(), Reject> {
        let records = self.resolve(r)?;
        let mut any = false;
        for id in records {
            any |= self.cancel_record(id, uid);
        }
        if any {
            Ok(())
        } else {
            Err(Reject::AlreadyDone)
        }
    }

    /// The records a reference names, splitting a not-yet-started task off its array first.
    fn resolve(&mut self, r: JobRef) -> Result<Vec<JobId>, Reject> {
        match r.task {
            None => {
                if let Some(records) = self.array_records.get(&r.job) {
                    Ok(records.iter().copied().collect())
                } else if self.jobs.contains_key(&r.job) {
                    Ok(vec![r.job])
                } else {
                    Err(Reject::InvalidJobId)
                }
            }
            Some(task) => {
                let records = self.array_records.get(&r.job).ok_or(Reject::InvalidJobId)?;
                let found = records.iter().copied().find(|id| {
                    self.jobs[id]
                        .array
                        .as_ref()
                        .is_some_and(|a| a.task_id == Some(task))
                });
                if let Some(id) = found {
                    return Ok(vec![id]);
                }
                let pending = self.jobs[&r.job]
                    .array
                    .as_ref()
                    .is_some_and(|a| a.pending.contains(&task));
                if pending && self.jobs[&r.job].state == JobState::Pending {
                    Ok(vec![self.split_task(r.job, task)])
                } else {
                    Err(Reject::InvalidJobId)
                }
            }
        }
    }

    /// Gives a task of an array that has not started a record of its own: a new record with
    /// a new id, or the array's first record itself when it is the last task.
    fn split_task(&mut self, array: JobId, task: u32) -> JobId {
        let new_id = JobId(self.next_job_id);
        let Some(meta) = self.jobs.get_mut(&array) else {
            return array;
        };
        let Some(part) = meta.array.as_mut() else {
            return array;
        };
        part.pending.remove(&task);
        if part.pending.is_empty() {
            part.task_id = Some(task);
            return array;
        }
        let max_running = part.max_running;
        self.next_job_id += 1;
        let mut record = meta.clone();
        record.id = new_id;
        record.expected_start_at = None;
        record.sched_nodes.clear();
        record.array = Some(ArrayPart {
            array_job_id: array,
            task_id: Some(task),
            pending: BTreeSet::new(),
            max_running,
            running: 0,
        });
        let queued = self.queued.contains(&array);
        self.jobs.insert(new_id, record);
        self.array_records.entry(array).or_default().insert(new_id);
        if queued {
            self.queued.insert(new_id);
        }
        self.refresh_dependency(new_id);
        new_id
    }

    /// Cancels one record; false when it had already ended.
    fn cancel_record(&mut self, id: JobId, uid: u32) -> bool {
        let now = self.now;
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.state.is_terminal() {
            return false;
        }
        let was_running = job.state == JobState::Running;
        self.queued.remove(&id);
        // A cancel wins over a requeue still waiting for the processes to end.
        job.requeue = None;
        job.state = JobState::Cancelled;
        job.end_at = Some(now);
        self.accounting.cancelled(id, uid);
        if was_running {
            // Resources stay held until the batch host confirms the processes ended.
            job.completing = true;
        } else {
            self.finished.insert((now, id));
            self.record_end(id, None);
            self.forget_dependent(id);
            self.dependency_event(id);
        }
        true
    }

    fn hold(&mut self, targets: &[JobRef], admin: bool, uid: u32) -> Reply {
        let reason = if admin && uid == 0 {
            PendingReason::JobHeldAdmin
        } else {
            PendingReason::JobHeldUser
        };
        let outcomes = targets
            .iter()
            .map(|&r| {
                let result = self.pending_records(r, uid).map(|ids| {
                    for id in ids {
                        self.queued.remove(&id);
                        if let Some(job) = self.jobs.get_mut(&id) {
                            job.priority = 0;
                            job.reason = reason.clone();
                            job.expected_start_at = None;
                            job.sched_nodes.clear();
                        }
                    }
                });
                (r, result.err())
            })
            .collect();
        Reply::Outcomes { outcomes }
    }

    fn release(&mut self, targets: &[JobRef], uid: u32) -> Reply {
        let outcomes = targets
            .iter()
            .map(|&r| {
                let result = self.pending_records(r, uid).and_then(|ids| {
                    let admin_held = ids
                        .iter()
                        .any(|id| self.jobs[id].reason == PendingReason::JobHeldAdmin);
                    if admin_held && uid != 0 {
                        return Err(Reject::AccessDenied);
                    }
                    for id in ids {
                        let Some(job) = self.jobs.get_mut(&id) else {
                            continue;
                        };
                        if job.is_held() {
                            job.priority = base_priority(id);
                            job.reason = PendingReason::None;
                            self.queued.insert(id);
                        }
                    }
                    Ok(())
                });
                (r, result.err())
            })
            .collect();
        Reply::Outcomes { outcomes }
    }

    fn requeue(&mut self, targets: &[JobRef], hold: bool, uid: u32) -> Reply {
        let outcomes = targets
            .iter()
            .map(|&r| (r, self.requeue_ref(r, hold, uid).err()))
            .collect();
        Reply::Outcomes { outcomes }
    }

    fn requeue_ref(&mut self, r: JobRef, hold: bool, uid: u32) -> Result<(), Reject> {
        for id in self.owned_records(r, uid, false)? {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !job.spec.has_batch_script() {
                // Slurm's ESLURM_BATCH_ONLY: srun's allocation cannot run again without srun.
                return Err(Reject::Invalid(
                    "Only batch jobs are accepted or processed".into(),
                ));
            }
            if job.holds_resources() {
                // Stopped first: it pends again when the batch host reports the end.
                job.completing = true;
                job.requeue = Some(hold);
            } else {
                let end = job.end_at.unwrap_or(self.now);
                self.finished.remove(&(end, id));
                self.back_to_pending(id, hold);
            }
        }
        Ok(())
    }

    fn signal(&mut self, targets: &[JobRef], signal: i32, scope: SignalScope, uid: u32) -> Reply {
        let outcomes = targets
            .iter()
            .map(|&r| (r, self.signal_ref(r, signal, scope, uid).err()))
            .collect();
        Reply::Outcomes { outcomes }
    }

    fn signal_ref(
        &mut self,
        r: JobRef,
        signal: i32,
        scope: SignalScope,
        uid: u32,
    ) -> Result<(), Reject> {
        const SIGKILL: i32 = 9;
        self.may_change(r, uid)?;
        let records = self.resolve(r)?;
        let mut done = false;
        let mut pending = false;
        for id in records {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            match job.state {
                JobState::Running if !job.completing => {
                    let seq = job.signals.last().map_or(1, |s| s.seq + 1);
                    job.signals.push(SignalRequest { seq, signal, scope });
                    if job.signals.len() > SIGNALS_KEPT {
                        job.signals.remove(0);
                    }
                    done = true;
                }
                JobState::Pending if signal == SIGKILL => done |= self.cancel_record(id, uid),
                JobState::Pending => pending = true,
                _ => {}
            }
        }
        match (done, pending) {
            (true, _) => Ok(()),
            (false, true) => Err(Reject::JobPending),
            (false, false) => Err(Reject::AlreadyDone),
        }
    }

    /// `scontrol update PartitionName=…`: operators only (uid 0), a partition that exists.
    /// `Default=YES` takes the default from the partition that had it.
    fn update_partition(
        &mut self,
        name: &str,
        update: &PartitionUpdate,
        uid: u32,
    ) -> Result<Reply, Reject> {
        if uid != 0 {
            return Err(Reject::AccessDenied);
        }
        let i = self
            .partitions
            .iter()
            .position(|p| p.name == name)
            .ok_or(Reject::InvalidPartition)?;
        if update.is_default == Some(true) {
            for p in &mut self.partitions {
                p.is_default = false;
            }
        }
        update.apply_to(&mut self.partitions[i]);
        Ok(Reply::Ok)
    }

    fn update_jobs(&mut self, targets: &[JobRef], update: &JobUpdate, uid: u32) -> Reply {
        let outcomes = targets
            .iter()
            .map(|&r| (r, self.update_ref(r, update, uid).err()))
            .collect();
        Reply::Outcomes { outcomes }
    }

    /// Slurm's rules (`update_job` in job_mgr.c, reference/slurm.md §6): users may only lower
    /// a time limit and raise their nice; only operators set priorities; what shapes a start
    /// (priority, nice, begin, dependency) changes only while the job pends.
    fn update_ref(&mut self, r: JobRef, u: &JobUpdate, uid: u32) -> Result<(), Reject> {
        self.may_change(r, uid)?;
        let admin = uid == 0;
        let ids = self.resolve(r)?;
        // Check every record first: an update is applied whole or not at all.
        for id in &ids {
            let job = &self.jobs[id];
            let pending = job.state == JobState::Pending;
            if job.state.is_terminal() {
                return Err(Reject::AlreadyDone);
            }
            let start_fields = u.priority.is_some()
                || u.nice.is_some()
                || u.begin_at.is_some()
                || u.dependency.is_some();
            if start_fields && !pending {
                return Err(Reject::NotPending);
            }
            if let Some(limit) = u.time_limit_min {
                if !pending {
                    return Err(Reject::Invalid(
                        "changing the time limit of a running job is not supported by drover yet"
                            .to_string(),
                    ));
                }
                let lower = match (limit, job.time_limit_min) {
                    (_, None) => true,
                    (None, Some(_)) => false,
                    (Some(new), Some(old)) => new <= old,
                };
                if !admin && !lower {
                    return Err(Reject::AccessDenied);
                }
            }
            if !admin && (u.priority.is_some() || u.nice.is_some_and(|n| n < 0)) {
                return Err(Reject::AccessDenied);
            }
            if u.array_throttle.is_some() && job.array.is_none() {
                return Err(Reject::InvalidArray);
            }
        }
        if let Some(Some(dep)) = &u.dependency {
            let known = dep.conditions.iter().all(|c| {
                c.kind == DepKind::Singleton
                    || (!ids.contains(&c.job) && self.dep_records(c.job, c.task).is_some())
            });
            if !known {
                return Err(Reject::DependencyProblem);
            }
        }
        for id in ids {
            if u.dependency.is_some() {
                self.forget_dependent(id);
            }
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if let Some(limit) = u.time_limit_min {
                job.time_limit_min = limit;
            }
            if let Some(name) = &u.name {
                job.spec.name = name.clone();
            }
            if let Some(nice) = u.nice {
                job.spec.nice = nice;
            }
            if let Some(begin) = u.begin_at {
                job.spec.begin_at = begin;
            }
            if let Some(dep) = &u.dependency {
                job.dependency = dep.clone();
            }
            if let (Some(t), Some(part)) = (u.array_throttle, job.array.as_mut()) {
                part.max_running = t;
            }
            match u.priority {
                Some(0) => {
                    job.priority = 0;
                    job.reason = PendingReason::JobHeldAdmin;
                    job.admin_priority = None;
                    self.queued.remove(&id);
                }
                Some(p) => {
                    job.admin_priority = Some(p);
                    if job.is_held() {
                        job.reason = PendingReason::None;
                    }
                    job.priority = p;
                    self.queued.insert(id);
                }
                None => {}
            }
            self.refresh_dependency(id);
        }
        Ok(())
    }

    /// A requeued job pends again: a new run, with its counters of the last run cleared.
    fn back_to_pending(&mut self, id: JobId, hold: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = JobState::Pending;
        job.restarts += 1;
        job.requeue = None;
        job.completing = false;
        job.start_at = None;
        job.end_at = None;
        job.alloc.clear();
        job.exit_code = 0;
        job.exit_signal = 0;
        job.batch_pid = None;
        job.expected_start_at = None;
        job.sched_nodes.clear();
        job.signals.clear();
        job.steps.clear();
        job.next_step_id = 0;
        self.accounting.requeued(id);
        if hold {
            job.priority = 0;
            job.reason = PendingReason::JobHeldUser;
        } else {
            job.priority = base_priority(id);
            job.reason = PendingReason::None;
            self.queued.insert(id);
        }
        self.refresh_dependency(id);
    }

    /// Users change only their own jobs; uid 0 (an operator) any.
    fn may_change(&self, r: JobRef, uid: u32) -> Result<(), Reject> {
        let owner = self
            .jobs
            .get(&r.job)
            .map(|j| j.spec.uid)
            .ok_or(Reject::InvalidJobId)?;
        if uid != 0 && uid != owner {
            return Err(Reject::AccessDenied);
        }
        Ok(())
    }

    /// The pending records a hold or release names, if `uid` may change them.
    fn pending_records(&mut self, r: JobRef, uid: u32) -> Result<Vec<JobId>, Reject> {
        self.owned_records(r, uid, true)
    }

    /// The records `r` names that are pending (`pending`) or not, if `uid` (an operator, or
    /// the owner) may change them; none: Slurm's "no longer pending" / "pending" error.
    fn owned_records(&mut self, r: JobRef, uid: u32, pending: bool) -> Result<Vec<JobId>, Reject> {
        self.may_change(r, uid)?;
        let ids: Vec<JobId> = self
            .resolve(r)?
            .into_iter()
            .filter(|id| (self.jobs[id].state == JobState::Pending) == pending)
            .collect();
        match (ids.is_empty(), pending) {
            (false, _) => Ok(ids),
            (true, true) => Err(Reject::NotPending),
            (true, false) => Err(Reject::JobPending),
        }
    }

    fn register_node(&mut self, reg: &NodeRegistration) -> Reply {
        let now = self.now;
        match self.nodes.get_mut(&reg.name) {
            Some(node) => {
                if reg.cpus < node.alloc_cpus
                    || reg.real_memory_mb < node.alloc_mem_mb
                    || node.alloc_gpus.iter().any(|&g| g >= reg.gpus)
                {
                    // The node came back smaller than what runs on it (replaced or
                    // reconfigured): its jobs cannot be running as allocated.
                    let jobs: Vec<JobId> = node.jobs.iter().copied().collect();
                    for id in jobs {
                        self.node_failed(id);
                    }
                }
                let Some(node) = self.nodes.get_mut(&reg.name) else {
                    return Reply::Ok;
                };
                node.reg = reg.clone();
                node.registered_at = now;
                if node.not_responding {
                    // Down only for not responding: a registration brings it back
                    // (Slurm's ReturnToService=1).
                    node.not_responding = false;
                    node.up = true;
                    node.reason = None;
                }
            }
            None => {
                self.nodes.insert(
                    reg.name.clone(),
                    Node {
                        reg: reg.clone(),
                        registered_at: now,
                        up: true,
                        not_responding: false,
                        drain: false,
                        reason: None,
                        alloc_cpus: 0,
                        alloc_mem_mb: 0,
                        jobs: BTreeSet::new(),
                        alloc_gpus: BTreeSet::new(),
                    },
                );
            }
        }
        Reply::Ok
    }

    fn set_node_state(&mut self, name: &str, change: &NodeStateChange) -> Result<Reply, Reject> {
        let node = self.nodes.get_mut(name).ok_or(Reject::InvalidNodeName)?;
        let fail_jobs = match change {
            NodeStateChange::Down { reason } => {
                node.up = false;
                node.reason = Some(reason.clone());
                true
            }
            NodeStateChange::NotResponding => {
                node.up = false;
                node.not_responding = true;
                node.reason = Some("Not responding".to_string());
                true
            }
            NodeStateChange::Drain { reason } => {
                node.drain = true;
                node.reason = Some(reason.clone());
                false
            }
            NodeStateChange::Resume => {
                node.up = true;
                node.drain = false;
                node.not_responding = false;
                node.reason = None;
                false
            }
        };
        if fail_jobs {
            let jobs: Vec<JobId> = node.jobs.iter().copied().collect();
            for id in jobs {
                self.node_failed(id);
            }
        }
        Ok(Reply::Ok)
    }

    fn allocate(&mut self, plan: &Plan) -> Reply {
        let mut started = 0;
        let mut refused = 0;
        for a in &plan.allocations {
            if self.allocation_fits(a.job_id, &a.nodes) {
                let now = self.now;
                // The first record of an array starts its lowest pending task.
                let next_task = self.jobs[&a.job_id]
                    .array
                    .as_ref()
                    .and_then(|p| p.pending.first().copied());
                let id = match next_task {
                    Some(task) => self.split_task(a.job_id, task),
                    None => a.job_id,
                };
                for share in &a.nodes {
                    if let Some(node) = self.nodes.get_mut(&share.node) {
                        node.alloc_cpus += share.cpus;
                        node.alloc_mem_mb += share.mem_mb;
                        node.jobs.insert(id);
                        node.alloc_gpus.extend(share.gpus.iter().copied());
                    }
                }
                self.queued.remove(&id);
                let cpu_share = self.cpu_share_for(&self.jobs[&id]);
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.cpu_share = cpu_share;
                    job.state = JobState::Running;
                    job.reason = PendingReason::None;
                    job.start_at = Some(now);
                    job.alloc = a.nodes.clone();
                    job.expected_start_at = None;
                    job.sched_nodes.clear();
                }
                self.array_running(id, true);
                self.forget_dependent(id);
                self.dependency_event(id);
                started += 1;
            } else {
                refused += 1;
            }
        }
        // A plan is made from an earlier state: a job held since then keeps its hold reason
        // (overwriting it would leave a priority-0 job that no release matches; jepsen
        // finding 2).
        for (id, reason) in &plan.reasons {
            if let Some(job) = self.jobs.get_mut(id) {
                if job.state == JobState::Pending && job.priority > 0 {
                    job.reason = reason.clone();
                }
            }
        }
        for start in &plan.starts {
            if let Some(job) = self.jobs.get_mut(&start.job_id) {
                if job.state == JobState::Pending && job.priority > 0 {
                    job.expected_start_at = start.start_at;
                    job.sched_nodes = start.nodes.clone();
                }
            }
        }
        Reply::Allocated { started, refused }
    }

    /// Apply is the authority (STYLE P4): a stale plan is refused here, the same way on every
    /// replica.
    fn allocation_fits(&self, job_id: JobId, shares: &[crate::types::NodeShare]) -> bool {
        let Some(job) = self.jobs.get(&job_id) else {
            return false;
        };
        if job.state != JobState::Pending
            || job.priority == 0
            || shares.is_empty()
            || !self.eligible(job)
        {
            return false;
        }
        let Some(qos) = self.qos(job.spec.qos_name()) else {
            return false;
        };
        if qos
            .max_wall_min
            .is_some_and(|max| job.time_limit_min.is_none_or(|l| l > max))
            || qos
                .max_jobs_per_user
                .is_some_and(|max| self.running_in_qos(&job.spec.user, job.spec.qos_name()) >= max)
        {
            return false;
        }
        let Some(part) = self.partition(Some(&job.partition)) else {
            return false;
        };
        if part.state != PartitionState::Up {
            return false;
        }
        let spec = &job.spec;
        let granted = shares.len() as u32;
        let cpu_share = self.cpu_share_for(job);
        let whole_nodes = self.whole_nodes(job);
        if shares.len() < spec.nodes_needed() as usize
            || granted > spec.nodes_allowed()
            || !spec
                .nodelist
                .iter()
                .all(|w| shares.iter().any(|s| s.node == *w))
        {
            return false;
        }
        let mut seen = BTreeSet::new();
        shares.iter().all(|s| {
            seen.insert(s.node.as_str())
                && self.nodes.get(&s.node).is_some_and(|n| {
                    let mut gpus = BTreeSet::new();
                    let gpus_free = s
                        .gpus
                        .iter()
                        .all(|&g| gpus.insert(g) && g < n.reg.gpus && !n.alloc_gpus.contains(&g));
                    n.schedulable()
                        && part.contains(n.name())
                        // (Sizes are checked against the share below: with `-N min-max`
                        // a node's share shrinks as the job gets more nodes.)
                        && spec.node_could_hold_type(&n.reg)
                        && s.cpus >= spec.cpus_per_node_on(granted)
                        && s.mem_mb >= spec.mem_per_node_on(granted)
                        && s.gpus.len() >= spec.gpus_per_node as usize
                        && s.cpus <= n.reg.cpus
                        && self.cpus_fit(n, s.cpus, cpu_share)
                        && n.free_mem_mb() >= s.mem_mb
                        && gpus_free
                        && (!whole_nodes || n.jobs.is_empty())
                })
        })
    }

    fn job_started(&mut self, id: JobId, node: &str, pid: u32) -> Result<Reply, Reject> {
        let job = self.jobs.get_mut(&id).ok_or(Reject::InvalidJobId)?;
        if job.batch_host() != Some(node) {
            return Err(Reject::InvalidNodeName);
        }
        job.batch_pid = Some(pid);
        Ok(Reply::Ok)
    }

    fn job_finished(
        &mut self,
        id: JobId,
        node: &str,
        exit_code: i32,
        signal: i32,
    ) -> Result<Reply, Reject> {
        let job = self.jobs.get(&id).ok_or(Reject::InvalidJobId)?;
        if job.batch_host() != Some(node) {
            return Err(Reject::InvalidNodeName);
        }
        if job.state == JobState::Running {
            let state = if exit_code == 0 && signal == 0 {
                JobState::Completed
            } else {
                JobState::Failed
            };
            self.end_job(id, state, exit_code, signal);
        } else if job.completing {
            self.end_job(id, job.state, exit_code, signal);
        }
        // Anything else: a duplicate report of a job already ended; nothing to do.
        Ok(Reply::Ok)
    }

    /// A final report that says why the job ended. A running job that hit its time limit ends
    /// `TIMEOUT`, one OOM-killed in its cgroup `OUT_OF_MEMORY` (whatever its exit status, as
    /// in Slurm); a cancelled (completing) job stays `CANCELLED`.
    fn job_ended(
        &mut self,
        id: JobId,
        node: &str,
        exit_code: i32,
        signal: i32,
        cause: EndCause,
    ) -> Result<Reply, Reject> {
        let job = self.jobs.get(&id).ok_or(Reject::InvalidJobId)?;
        if job.batch_host() != Some(node) {
            return Err(Reject::InvalidNodeName);
        }
        let state = match cause {
            EndCause::TimeLimit => JobState::Timeout,
            EndCause::OutOfMemory => JobState::OutOfMemory,
            EndCause::Exited | EndCause::Stopped => {
                return self.job_finished(id, node, exit_code, signal);
            }
        };
        if job.state == JobState::Running {
            self.end_job(id, state, exit_code, signal);
        } else if job.completing {
            self.end_job(id, job.state, exit_code, signal);
        }
        Ok(Reply::Ok)
    }

    /// A new step of a running job, laid out over its nodes (`steps.rs`). Slurm's answers: a
    /// job that is pending, or ending, gets no step; a step beyond the allocation is refused.
    fn start_step(
        &mut self,
        id: JobId,
        uid: u32,
        name: &str,
        request: &StepRequest,
    ) -> Result<Reply, Reject> {
        let now = self.now;
        let job = self.jobs.get_mut(&id).ok_or(Reject::InvalidJobId)?;
        if uid != 0 && uid != job.spec.uid {
            return Err(Reject::AccessDenied);
        }
        match job.state {
            JobState::Running if !job.completing && job.requeue.is_none() => {}
            JobState::Pending => return Err(Reject::JobPending),
            _ => return Err(Reject::AlreadyDone),
        }
        let layout = crate::steps::layout(&job.alloc, request)?;
        let step_id = job.next_step_id;
        job.next_step_id += 1;
        job.steps.push(Step {
            id: step_id,
            name: name.to_string(),
            ntasks: request.ntasks,
            cpus_per_task: request.cpus_per_task.max(1),
            layout: layout.clone(),
            start_at: now,
            end_at: None,
            state: JobState::Running,
            exit_code: 0,
            exit_signal: 0,
        });
        Ok(Reply::StepStarted { step_id, layout })
    }

    /// srun's report that a step ended. A step that already ended (with its job, or reported
    /// twice) keeps its first end.
    fn end_step(
        &mut self,
        id: JobId,
        step_id: u32,
        exit_code: i32,
        signal: i32,
    ) -> Result<Reply, Reject> {
        let now = self.now;
        let job = self.jobs.get_mut(&id).ok_or(Reject::InvalidJobId)?;
        if step_id >= job.next_step_id {
            return Err(Reject::Invalid(format!(
                "Invalid job step id {id}.{step_id}"
            )));
        }
        if let Some(step) = job
            .steps
            .iter_mut()
            .find(|s| s.id == step_id && s.is_running())
        {
            step.state = if exit_code == 0 && signal == 0 {
                JobState::Completed
            } else if signal == 9 || signal == 15 {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            step.end_at = Some(now);
            step.exit_code = exit_code;
            step.exit_signal = signal;
        }
        trim_steps(&mut job.steps);
        Ok(Reply::Ok)
    }

    /// srun's end of its own allocation. Its tasks have ended (srun saw every one end), so
    /// the job ends at once, with srun's outcome (TIMEOUT past its time limit), and its
    /// resources are free for the next plan; the batch host's supervisor, which holds no process of such a job, is stopped
    /// when the assignment goes, and its late report finds the job ended.
    fn complete_allocation(
        &mut self,
        id: JobId,
        uid: u32,
        exit_code: i32,
        signal: i32,
    ) -> Result<Reply, Reject> {
        let job = self.jobs.get(&id).ok_or(Reject::InvalidJobId)?;
        if uid != 0 && uid != job.spec.uid {
            return Err(Reject::AccessDenied);
        }
        if job.spec.has_batch_script() {
            return Err(Reject::Invalid(format!(
                "Job {id} has a batch script: it ends when its script does"
            )));
        }
        match job.state {
            JobState::Running if !job.completing && job.requeue.is_none() => {}
            JobState::Pending => return Err(Reject::JobPending),
            _ => return Err(Reject::AlreadyDone),
        }
        // Past its time limit, the end is the limit's (the batch host's supervisor stopped
        // the tasks; srun's report can come before the node's), as slurmctld, which enforces
        // the limit itself, records it.
        let timed_out = match (job.start_at, job.time_limit_min) {
            (Some(start), Some(min)) => {
                self.now >= start.saturating_add(min.saturating_mul(60_000))
            }
            _ => false,
        };
        let state = if timed_out {
            JobState::Timeout
        } else if exit_code == 0 && signal == 0 {
            JobState::Completed
        } else {
            JobState::Failed
        };
        self.end_job(id, state, exit_code, signal);
        Ok(Reply::Ok)
    }

    /// Ends a running or completing job: records the outcome and frees its resources.
    /// A node of the job failed: a running job that asked `--requeue` pends again (its next
    /// run; reports about this run are ignored from now on, see `Command::RunReport`), any
    /// other ends `NODE_FAIL`. A job already stopping (cancelled, or requeued by hand) ends as
    /// it was going to.
    fn node_failed(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get_mut(&id) {
            // Only batch jobs run again (Slurm's `Only batch jobs are accepted or processed`):
            // srun's own allocation has no script to restart.
            if job.spec.requeue
                && job.spec.has_batch_script()
                && job.state == JobState::Running
                && !job.completing
                && job.requeue.is_none()
            {
                job.requeue = Some(false);
            }
        }
        self.end_job(id, JobState::NodeFail, 0, 0);
    }

    fn end_job(&mut self, id: JobId, state: JobState, exit_code: i32, signal: i32) {
        let now = self.now;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.holds_resources() {
            return;
        }
        if job.state == JobState::Running && job.requeue.is_none() {
            job.state = state;
            job.end_at = Some(now);
            job.exit_code = exit_code;
            job.exit_signal = signal;
        }
        job.completing = false;
        // Its steps end with it (a cancelled job's as CANCELLED, as sacct shows them).
        let step_state = match job.state {
            JobState::Completed | JobState::Running => JobState::Completed,
            JobState::Failed => JobState::Failed,
            _ => JobState::Cancelled,
        };
        for step in job.steps.iter_mut().filter(|s| s.is_running()) {
            step.state = step_state;
            step.end_at = Some(now);
        }
        trim_steps(&mut job.steps);
        let requeue = job.requeue;
        let end = job.end_at.unwrap_or(now);
        let ran_s = end.saturating_sub(job.start_at.unwrap_or(end)) / 1000;
        // (A requeued run is charged to fairshare like any other.)
        let cpu_s = ran_s.saturating_mul(u64::from(job.alloc_cpus()));
        let user = job.spec.user.clone();
        for share in &job.alloc {
            if let Some(node) = self.nodes.get_mut(&share.node) {
                node.alloc_cpus -= share.cpus;
                node.alloc_mem_mb -= share.mem_mb;
                node.jobs.remove(&id);
                for g in &share.gpus {
                    node.alloc_gpus.remove(g);
                }
            }
        }
        let usage = self.usage.entry(user).or_default();
        usage.cpu_s = usage.at(now).saturating_add(cpu_s);
        usage.at = now;
        self.array_running(id, false);
        match requeue {
            // A requeued run leaves no record: sacct shows the job's last run.
            Some(hold) => self.back_to_pending(id, hold),
            None => {
                self.finished.insert((end, id));
                self.record_end(id, Some((exit_code, signal)));
                self.dependency_event(id);
            }
        }
    }

    /// Counts a record of an array starting (`true`) or releasing its resources on the
    /// array's first record, for the `%` throttle.
    fn array_running(&mut self, id: JobId, started: bool) {
        let Some(array) = self.jobs.get(&id).and_then(|j| j.array.as_ref()) else {
            return;
        };
        let array = array.array_job_id;
        if let Some(part) = self.jobs.get_mut(&array).and_then(|m| m.array.as_mut()) {
            part.running = if started {
                part.running.saturating_add(1)
            } else {
                part.running.saturating_sub(1)
            };
        }
    }

    /// May this pending job start now, as far as `--begin`, its dependency and its array's
    /// throttle go? (The planner gives the reasons; apply re-checks.)
    pub fn eligible(&self, job: &Job) -> bool {
        job.spec.begin_at.is_none_or(|b| b <= self.now)
            && job
                .dependency
                .as_ref()
                .is_none_or(|d| d.readiness(self.now) == Readiness::Ready)
            && !self.throttled(job)
    }

    /// Does the array's `%` throttle keep this record from starting?
    pub fn throttled(&self, job: &Job) -> bool {
        let Some(part) = job.array.as_ref() else {
            return false;
        };
        let meta = if part.array_job_id == job.id {
            Some(part)
        } else {
            self.jobs
                .get(&part.array_job_id)
                .and_then(|m| m.array.as_ref())
                .filter(|m| !m.pending.is_empty())
        };
        meta.is_some_and(|m| m.max_running > 0 && m.running >= m.max_running)
    }

    /// The records a dependency condition names, or `None` when none is known (never
    /// submitted, or purged after MinJobAge).
    fn dep_records(&self, job: JobId, task: DepTask) -> Option<Vec<DepUnit>> {
        let unit = |j: &Job| {
            if j.state == JobState::Pending {
                DepUnit::NotStarted
            } else if j.state.is_terminal() && !j.completing {
                DepUnit::Ended {
                    ok: j.state == JobState::Completed,
                    started: j.start_at.or(j.end_at).unwrap_or(0),
                }
            } else {
                DepUnit::Started {
                    at: j.start_at.or(j.end_at).unwrap_or(0),
                }
            }
        };
        let records: Vec<&Job> = match self.array_records.get(&job) {
            Some(ids) => ids.iter().filter_map(|id| self.jobs.get(id)).collect(),
            None => self.jobs.get(&job).into_iter().collect(),
        };
        let mut units = Vec::new();
        for j in records {
            let (pending, own_task) = match &j.array {
                Some(a) => (a.pending.iter().copied().collect(), a.task_id),
                None => (Vec::new(), None),
            };
            let pending_here = j.state == JobState::Pending;
            match task {
                DepTask::Whole => {
                    if pending_here {
                        units.extend(pending.iter().map(|_| DepUnit::NotStarted));
                    }
                    if own_task.is_some() || j.array.is_none() || !pending_here {
                        units.push(unit(j));
                    }
                }
                DepTask::Task(t) => {
                    if own_task == Some(t) {
                        units.push(unit(j));
                    } else if pending.contains(&t) {
                        units.push(if pending_here {
                            DepUnit::NotStarted
                        } else {
                            unit(j)
                        });
                    }
                }
            }
        }
        (!units.is_empty()).then_some(units)
    }

    /// Decides one condition from the records it names (`Waiting` while undecided).
    fn decide(&self, kind: DepKind, job: JobId, task: DepTask, delay_min: u32) -> DepStatus {
        let now = self.now;
        let Some(units) = self.dep_records(job, task) else {
            // Nothing left in memory: Slurm lifts a dependency on a job it no longer knows.
            return DepStatus::Satisfied { at: now };
        };
        let all_ended = units.iter().all(|u| matches!(u, DepUnit::Ended { .. }));
        let any_bad = units
            .iter()
            .any(|u| matches!(u, DepUnit::Ended { ok: false, .. }));
        match kind {
            DepKind::After => {
                if units.contains(&DepUnit::NotStarted) {
                    return DepStatus::Waiting;
                }
                let started = units
                    .iter()
                    .map(|u| match *u {
                        DepUnit::Started { at } | DepUnit::Ended { started: at, .. } => at,
                        DepUnit::NotStarted => 0,
                    })
                    .max()
                    .unwrap_or(now);
                DepStatus::Satisfied {
                    at: started.saturating_add(u64::from(delay_min) * 60_000),
                }
            }
            DepKind::AfterAny if all_ended => DepStatus::Satisfied { at: now },
            DepKind::AfterOk if any_bad => DepStatus::Failed,
            DepKind::AfterOk if all_ended => DepStatus::Satisfied { at: now },
            DepKind::AfterNotOk if all_ended && any_bad => DepStatus::Satisfied { at: now },
            DepKind::AfterNotOk if all_ended => DepStatus::Failed,
            _ => DepStatus::Waiting,
        }
    }

    /// `aftercorr`: task i of this record waits for task i of `target`; a record that stands
    /// for no single task (a non-array job, or an array's tasks not yet started) and a task
    /// with no counterpart in `target` wait for the whole of `target` to end, and are met only
    /// if every one of its tasks completed (job_scheduler.c, SLURM_DEPEND_AFTER_CORRESPOND).
    fn decide_corr(&self, target: JobId, own_task: Option<u32>) -> DepStatus {
        let now = self.now;
        let units = own_task
            .filter(|_| self.is_array(target))
            .and_then(|t| self.dep_records(target, DepTask::Task(t)))
            .or_else(|| self.dep_records(target, DepTask::Whole));
        let Some(units) = units else {
            // Nothing left in memory: Slurm lifts a dependency on a job it no longer knows.
            return DepStatus::Satisfied { at: now };
        };
        if !units.iter().all(|u| matches!(u, DepUnit::Ended { .. })) {
            DepStatus::Waiting
        } else if units
            .iter()
            .any(|u| matches!(u, DepUnit::Ended { ok: false, .. }))
        {
            DepStatus::Failed
        } else {
            DepStatus::Satisfied { at: now }
        }
    }

    /// An array's first record whose tasks wait with `aftercorr` on another array: each task
    /// whose counterpart has ended is split off into a record of its own, which the
    /// counterpart's outcome decides (Slurm splits such tasks off as it schedules them). The
    /// tasks left in the first record still wait on theirs, or have none.
    fn split_decided_corr_tasks(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let (Some(dep), Some(part)) = (job.dependency.as_ref(), job.array.as_ref()) else {
            return;
        };
        if job.state != JobState::Pending || part.pending.is_empty() {
            return;
        }
        let targets: Vec<JobId> = dep
            .conditions
            .iter()
            .filter(|c| c.kind == DepKind::AfterCorr && c.status == DepStatus::Waiting)
            .map(|c| c.job)
            .filter(|&t| self.is_array(t))
            .collect();
        if targets.is_empty() {
            return;
        }
        // The targets' ended tasks, each array's records read once (not once per task).
        let mut ended: BTreeSet<u32> = BTreeSet::new();
        for &t in &targets {
            ended.extend(self.ended_tasks(t));
        }
        let decided: Vec<u32> = part.pending.intersection(&ended).copied().collect();
        for task in decided {
            self.split_task(id, task);
        }
    }

    /// The task ids of array `array` that have ended (for `aftercorr`: what `dep_records`
    /// calls `Ended` for each of them).
    fn ended_tasks(&self, array: JobId) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for j in self.array_records(array) {
            if !j.state.is_terminal() || j.completing {
                continue;
            }
            if let Some(a) = &j.array {
                out.extend(a.task_id);
                out.extend(a.pending.iter().copied());
            }
        }
        out
    }

    /// Decides what can be decided of a pending job's dependency and keeps the reverse
    /// index (`dependents`) to the conditions still waiting.
    fn refresh_dependency(&mut self, id: JobId) {
        self.split_decided_corr_tasks(id);
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let Some(dep) = job.dependency.as_ref() else {
            return;
        };
        if job.state != JobState::Pending {
            self.forget_dependent(id);
            return;
        }
        let own_task = job.array.as_ref().and_then(|a| a.task_id);
        let mut dep = dep.clone();
        for c in &mut dep.conditions {
            if c.status == DepStatus::Waiting && c.kind == DepKind::AfterCorr {
                c.status = self.decide_corr(c.job, own_task);
            } else if c.status == DepStatus::Waiting && c.kind != DepKind::Singleton {
                c.status = self.decide(c.kind, c.job, c.task, c.delay_min);
            }
        }
        let all = dep.targets();
        let waiting: BTreeSet<JobId> = dep
            .conditions
            .iter()
            .filter(|c| c.kind != DepKind::Singleton && c.status == DepStatus::Waiting)
            .map(|c| c.job)
            .collect();
        for t in all {
            if waiting.contains(&t) {
                self.dependents.entry(t).or_default().insert(id);
            } else {
                self.unindex_dependent(t, id);
            }
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            job.dependency = Some(dep);
        }
    }

    fn unindex_dependent(&mut self, target: JobId, id: JobId) {
        if let Some(set) = self.dependents.get_mut(&target) {
            set.remove(&id);
            if set.is_empty() {
                self.dependents.remove(&target);
            }
        }
    }

    /// A job that left the queue waits on nothing.
    fn forget_dependent(&mut self, id: JobId) {
        let targets = self
            .jobs
            .get(&id)
            .and_then(|j| j.dependency.as_ref())
            .map(|d| d.targets())
            .unwrap_or_default();
        for t in targets {
            self.unindex_dependent(t, id);
        }
    }

    /// A job started or ended: decide the conditions that name it (or its array).
    fn dependency_event(&mut self, id: JobId) {
        let mut keys = vec![id];
        if let Some(array) = self.jobs.get(&id).and_then(|j| j.array.as_ref()) {
            if array.array_job_id != id {
                keys.push(array.array_job_id);
            }
        }
        for key in keys {
            let waiting: Vec<JobId> = self
                .dependents
                .get(&key)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for d in waiting {
                self.refresh_dependency(d);
            }
        }
    }

    fn purge_old_jobs(&mut self) {
        while let Some(&(end, id)) = self.finished.first() {
            if end.saturating_add(MIN_JOB_AGE_MS) > self.now {
                break;
            }
            self.finished.pop_first();
            self.forget_dependent(id);
            if let Some(job) = self.jobs.remove(&id) {
                if let Some(array) = job.array {
                    if let Some(set) = self.array_records.get_mut(&array.array_job_id) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.array_records.remove(&array.array_job_id);
                        }
                    }
                }
            }
        }
    }

    /// Finished jobs still remembered (for invariants and tests).
    pub fn finished_count(&self) -> usize {
        self.finished.len()
    }

    /// Pending jobs that are not held, in id order: what a scheduling pass considers.
    pub fn queued(&self) -> impl Iterator<Item = &Job> + '_ {
        self.queued.iter().filter_map(|id| self.jobs.get(id))
    }

    pub(crate) fn queued_ids(&self) -> &BTreeSet<JobId> {
        &self.queued
    }

    pub(crate) fn finished_entries(&self) -> &BTreeSet<(TimestampMs, JobId)> {
        &self.finished
    }

    pub(crate) fn dependents(&self) -> &BTreeMap<JobId, BTreeSet<JobId>> {
        &self.dependents
    }

    /// Every record of array `id` (its first record and the tasks split off).
    pub fn array_records(&self, id: JobId) -> impl Iterator<Item = &Job> + '_ {
        self.array_records
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|i| self.jobs.get(i))
    }

    /// The QOS named `name`: the configured one, or the built-in `normal`.
    pub fn qos(&self, name: &str) -> Option<Qos> {
        self.qos
            .iter()
            .find(|q| q.name == name)
            .cloned()
            .or_else(|| (name == DEFAULT_QOS).then(Qos::normal))
    }

    /// Running (or completing) jobs of `user` in QOS `qos` (for `MaxJobsPerUser`).
    /// Walks the jobs the nodes hold (every job holding resources is on a node: see the
    /// invariants), not every job remembered, since apply runs this on every replica.
    pub fn running_in_qos(&self, user: &str, qos: &str) -> u32 {
        let held: BTreeSet<JobId> = self
            .nodes
            .values()
            .flat_map(|n| n.jobs.iter().copied())
            .collect();
        held.iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.holds_resources() && j.spec.user == user && j.spec.qos_name() == qos)
            .count() as u32
    }

    /// Does `job` get whole nodes (`--exclusive`, or a partition with
    /// `OverSubscribe=EXCLUSIVE`)?
    pub fn whole_nodes(&self, job: &Job) -> bool {
        job.spec.exclusive
            || self
                .partition(Some(&job.partition))
                .is_some_and(|p| p.oversubscribe == OverSubscribe::Exclusive)
    }

    /// How many jobs may hold each CPU `job` would get in its partition now (1: not shared).
    pub fn cpu_share_for(&self, job: &Job) -> u32 {
        if self.whole_nodes(job) {
            return 1;
        }
        self.partition(Some(&job.partition))
            .map_or(1, |p| p.oversubscribe.cpu_share(job.spec.oversubscribe))
    }

    /// The shares per CPU in which the planner counts CPUs: the least common multiple of the
    /// `OverSubscribe=` counts of the partitions and of the jobs holding CPUs (1 when nothing
    /// is shared, the common case: CPUs are then counted as they are).
    pub fn cpu_scale(&self) -> u64 {
        let parts = self
            .partitions
            .iter()
            .map(|p| u64::from(p.oversubscribe.cpu_share(true)));
        let jobs = self
            .jobs
            .values()
            .filter(|j| j.holds_resources())
            .map(|j| u64::from(j.cpu_share));
        parts.chain(jobs).fold(1, lcm)
    }

    /// The CPUs the jobs on `node` hold, in `scale` shares per CPU: a job whose CPUs `n` jobs
    /// may share holds `scale / n` of each (`scale` must be a multiple of every such `n`).
    pub fn node_cpu_load(&self, node: &Node, scale: u64) -> u64 {
        node.jobs
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(|j| {
                let cpus = j
                    .alloc
                    .iter()
                    .find(|s| s.node == node.reg.name)
                    .map_or(0, |s| u64::from(s.cpus));
                cpus.saturating_mul(scale / u64::from(j.cpu_share.max(1)))
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Do `cpus` more CPUs, shared by up to `share` jobs each, fit on `node` beside what its
    /// jobs hold (each CPU's holders, weighted by 1/their share count, at most one)?
    ///
    /// A node runs jobs of one share count at a time: the controller counts CPUs per node, not
    /// which CPU each job runs on (the node's cpuset choice), so a job that did not ask to share
    /// (count 1) beside jobs that did could be given one of their CPUs.
    pub fn cpus_fit(&self, node: &Node, cpus: u32, share: u32) -> bool {
        let other_kind = node
            .jobs
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .any(|j| j.cpu_share != share.max(1));
        if other_kind {
            return false;
        }
        let scale = node
            .jobs
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(|j| u64::from(j.cpu_share))
            .fold(u64::from(share.max(1)), lcm);
        if scale == 1 {
            return node.free_cpus() >= cpus;
        }
        let want = u64::from(cpus).saturating_mul(scale / u64::from(share.max(1)));
        self.node_cpu_load(node, scale).saturating_add(want)
            <= u64::from(node.reg.cpus).saturating_mul(scale)
    }

    /// Is `id` a job array (for `N_*` in dependency strings)?
    pub fn is_array(&self, id: JobId) -> bool {
        self.array_records.contains_key(&id)
    }
}
