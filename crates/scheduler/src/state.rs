//! The replicated state machine: `ClusterState::apply(&Proposal) -> Vec<Reply>`.
//!
//! Pure and deterministic (DESIGN §4): no clock (time is `Proposal::at`), no randomness, no
//! hash-map iteration. Every replica applies the same entries in the same order and reaches
//! byte-identical state.

use crate::command::{
    Command, EndCause, NodeStateChange, Plan, Proposal, Rejection as Reject, Reply, Request,
};
use crate::invariants;
use crate::types::{
    Job, JobId, JobSpec, JobState, Node, NodeRegistration, Partition, PartitionState,
    PendingReason, TimestampMs,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How long a finished job stays visible to squeue/scontrol (Slurm's MinJobAge, 300 s).
pub const MIN_JOB_AGE_MS: u64 = 300_000;

/// How many recent request ids are remembered for retries.
pub const REQUEST_MEMORY: usize = 100_000;

/// Slurm's priority/basic: the first job gets this, each later one a little less.
const BASE_PRIORITY: u64 = 4_294_901_760;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster's clock: the largest `at` applied so far.
    pub now: TimestampMs,
    pub next_job_id: u64,
    pub jobs: BTreeMap<JobId, Job>,
    pub nodes: BTreeMap<String, Node>,
    /// In configuration order.
    pub partitions: Vec<Partition>,
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
            Command::Cancel { job_ids, uid: _ } => Ok(self.cancel(job_ids)),
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
            Command::DefinePartitions(parts) => {
                self.partitions = parts.clone();
                Ok(Reply::Ok)
            }
            // Usage (max_rss_kb, total_cpu_ms) is not kept yet: accounting (sacct) will.
            Command::JobEnded {
                job_id,
                node,
                exit_code,
                signal,
                cause,
                max_rss_kb: _,
                total_cpu_ms: _,
            } => self.job_ended(*job_id, node, *exit_code, *signal, *cause),
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
            let fitting = nodes
                .iter()
                .filter(|n| spec.node_could_hold(&n.reg))
                .count();
            let listed_fit = spec.nodelist.iter().all(|name| {
                nodes
                    .iter()
                    .any(|n| n.name() == name && spec.node_could_hold(&n.reg))
            });
            if fitting < spec.nodes_needed() as usize
                || !listed_fit
                || spec.nodelist.len() > spec.nodes_needed().max(spec.nodes_max) as usize
            {
                return Err(Reject::NodeConfigUnavailable);
            }
        }
        let time_limit_min = spec
            .time_limit_min
            .or(part.default_time_min)
            .or(part.max_time_min);
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
            priority: if held {
                0
            } else {
                BASE_PRIORITY.saturating_sub(id.0).max(1) as u32
            },
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
        };
        self.jobs.insert(id, job);
        if !held {
            self.queued.insert(id);
        }
        Ok(Reply::Submitted { job_id: id })
    }

    fn cancel(&mut self, job_ids: &[JobId]) -> Reply {
        let now = self.now;
        let mut outcomes = Vec::with_capacity(job_ids.len());
        for &id in job_ids {
            let outcome = match self.jobs.get_mut(&id) {
                None => Some(Reject::InvalidJobId),
                Some(job) if job.state.is_terminal() => Some(Reject::AlreadyDone),
                Some(job) => {
                    let was_running = job.state == JobState::Running;
                    self.queued.remove(&id);
                    job.state = JobState::Cancelled;
                    job.end_at = Some(now);
                    if was_running {
                        // Resources stay held until the batch host confirms the processes ended.
                        job.completing = true;
                    } else {
                        self.finished.insert((now, id));
                    }
                    None
                }
            };
            outcomes.push((id, outcome));
        }
        Reply::Cancelled { outcomes }
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
                        self.end_job(id, JobState::NodeFail, 0, 0);
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
                self.end_job(id, JobState::NodeFail, 0, 0);
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
                for share in &a.nodes {
                    if let Some(node) = self.nodes.get_mut(&share.node) {
                        node.alloc_cpus += share.cpus;
                        node.alloc_mem_mb += share.mem_mb;
                        node.jobs.insert(a.job_id);
                        node.alloc_gpus.extend(share.gpus.iter().copied());
                    }
                }
                self.queued.remove(&a.job_id);
                if let Some(job) = self.jobs.get_mut(&a.job_id) {
                    job.state = JobState::Running;
                    job.reason = PendingReason::None;
                    job.start_at = Some(now);
                    job.alloc = a.nodes.clone();
                    job.expected_start_at = None;
                    job.sched_nodes.clear();
                }
                started += 1;
            } else {
                refused += 1;
            }
        }
        for (id, reason) in &plan.reasons {
            if let Some(job) = self.jobs.get_mut(id) {
                if job.state == JobState::Pending {
                    job.reason = reason.clone();
                }
            }
        }
        for start in &plan.starts {
            if let Some(job) = self.jobs.get_mut(&start.job_id) {
                if job.state == JobState::Pending {
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
        if job.state != JobState::Pending || job.priority == 0 || shares.is_empty() {
            return false;
        }
        let Some(part) = self.partition(Some(&job.partition)) else {
            return false;
        };
        if part.state != PartitionState::Up {
            return false;
        }
        let spec = &job.spec;
        if shares.len() < spec.nodes_needed() as usize
            || (spec.nodes_max != 0 && shares.len() > spec.nodes_max.max(spec.nodes_min) as usize)
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
                        && spec.node_could_hold(&n.reg)
                        && s.cpus >= spec.cpus_per_node()
                        && s.mem_mb >= spec.mem_per_node()
                        && s.gpus.len() >= spec.gpus_per_node as usize
                        && n.free_cpus() >= s.cpus
                        && n.free_mem_mb() >= s.mem_mb
                        && gpus_free
                        && (!spec.exclusive || n.jobs.is_empty())
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

    /// Ends a running or completing job: records the outcome and frees its resources.
    fn end_job(&mut self, id: JobId, state: JobState, exit_code: i32, signal: i32) {
        let now = self.now;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.holds_resources() {
            return;
        }
        if job.state == JobState::Running {
            job.state = state;
            job.end_at = Some(now);
            job.exit_code = exit_code;
            job.exit_signal = signal;
        }
        job.completing = false;
        let end = job.end_at.unwrap_or(now);
        let ran_s = end.saturating_sub(job.start_at.unwrap_or(end)) / 1000;
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
        self.finished.insert((end, id));
        let usage = self.usage.entry(user).or_default();
        usage.cpu_s = usage.at(now).saturating_add(cpu_s);
        usage.at = now;
    }

    fn purge_old_jobs(&mut self) {
        while let Some(&(end, id)) = self.finished.first() {
            if end.saturating_add(MIN_JOB_AGE_MS) > self.now {
                break;
            }
            self.finished.pop_first();
            self.jobs.remove(&id);
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
}
