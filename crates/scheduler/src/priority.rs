//! Slurm's priority/multifactor, computed by the planner (pure: `now` is an argument).
//!
//! ```text
//! priority = site + w_age·age + w_fairshare·fairshare + w_job_size·job_size
//!                 + w_partition·partition + w_qos·qos − nice          (each factor in [0, 1])
//! ```
//! Reference: Slurm doc/html/priority_multifactor.shtml (shared/reference/slurm.md §4.3).
//! Age = wait since submit / PriorityMaxAge, capped at 1. Job size = CPUs asked / CPUs in the
//! cluster (PriorityFavorSmall=NO). Partition = the partition's PriorityJobFactor / the largest.
//! Fairshare (classic formula, per user until accounting supplies associations):
//! `F = 2^(−U/S)`, U = the user's share of all decayed usage, S = 1 / number of users known
//! (with usage or with a job in the state).
//! QOS is the job's QOS priority over the highest QOS priority (0 when every QOS has 0). A priority is never 0 (0 means held).
//!
//! The stored `Job::priority` keeps its role as the held marker (0); the order a pass uses is
//! recomputed here every pass, so it is never written to the log.

use crate::state::ClusterState;
use crate::types::{Job, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Slurm's `PriorityWeight*` and `PriorityMaxAge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityWeights {
    pub site: u32,
    pub age: u32,
    pub fairshare: u32,
    pub job_size: u32,
    pub partition: u32,
    pub qos: u32,
    pub max_age_s: u64,
}

impl Default for PriorityWeights {
    fn default() -> PriorityWeights {
        PriorityWeights {
            site: 0,
            age: 1000,
            fairshare: 1000,
            job_size: 0,
            partition: 1000,
            qos: 0,
            max_age_s: 7 * 24 * 3600,
        }
    }
}

/// A job's priority and the factors it is made of (for `scontrol show job` and `sprio`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PriorityFactors {
    pub age: f64,
    pub fairshare: f64,
    pub job_size: f64,
    pub partition: f64,
    pub qos: f64,
    pub nice: i64,
    pub priority: u32,
}

/// What every job's factors are measured against, computed once per pass.
pub struct PriorityContext {
    now: TimestampMs,
    total_cpus: u64,
    max_part_factor: u32,
    total_usage: u64,
    users: u64,
    usage: BTreeMap<String, u64>,
    /// The highest QOS priority (the QOS factor is a job's QOS priority over it).
    max_qos_priority: u32,
}

impl PriorityContext {
    pub fn new(state: &ClusterState, now: TimestampMs) -> PriorityContext {
        let mut usage: BTreeMap<String, u64> = state
            .usage
            .iter()
            .map(|(user, u)| (user.clone(), u.at(now)))
            .collect();
        // Shares go to every user the state knows (with usage or any job remembered), not only
        // to those with queued jobs: starting a job must not change anyone's shares, or a pass
        // right after a pass would order the queue differently.
        for job in state.jobs.values() {
            if !usage.contains_key(&job.spec.user) {
                usage.insert(job.spec.user.clone(), 0);
            }
        }
        PriorityContext {
            now,
            total_cpus: state.nodes.values().map(|n| u64::from(n.reg.cpus)).sum(),
            max_part_factor: state
                .partitions
                .iter()
                .map(|p| p.priority_job_factor)
                .max()
                .unwrap_or(1)
                .max(1),
            total_usage: usage.values().sum(),
            users: usage.len().max(1) as u64,
            usage,
            max_qos_priority: state.qos.iter().map(|q| q.priority).max().unwrap_or(0),
        }
    }

    pub fn factors(
        &self,
        state: &ClusterState,
        job: &Job,
        weights: &PriorityWeights,
    ) -> PriorityFactors {
        let waited_s = self.now.saturating_sub(job.submit_at) / 1000;
        let age = (waited_s as f64 / weights.max_age_s.max(1) as f64).min(1.0);
        let fairshare = if self.total_usage == 0 {
            1.0
        } else {
            let used = self.usage.get(&job.spec.user).copied().unwrap_or(0);
            let u = used as f64 / self.total_usage as f64;
            let s = 1.0 / self.users as f64;
            (-(u / s)).exp2()
        };
        let cpus = u64::from(job.spec.cpus_per_node()) * u64::from(job.spec.nodes_needed());
        let job_size = (cpus as f64 / self.total_cpus.max(1) as f64).min(1.0);
        let partition = state.partition(Some(&job.partition)).map_or(0.0, |p| {
            f64::from(p.priority_job_factor) / f64::from(self.max_part_factor)
        });
        let qos = if self.max_qos_priority == 0 {
            0.0
        } else {
            let name = job.spec.qos_name();
            let p = state
                .qos
                .iter()
                .find(|q| q.name == name)
                .map_or(0, |q| q.priority);
            f64::from(p) / f64::from(self.max_qos_priority)
        };
        let nice = i64::from(job.spec.nice);
        let sum = f64::from(weights.site)
            + f64::from(weights.age) * age
            + f64::from(weights.fairshare) * fairshare
            + f64::from(weights.job_size) * job_size
            + f64::from(weights.partition) * partition
            + f64::from(weights.qos) * qos
            - nice as f64;
        let priority = match job.admin_priority {
            Some(p) => p,
            None => sum.floor().clamp(1.0, f64::from(u32::MAX - 1)) as u32,
        };
        PriorityFactors {
            age,
            fairshare,
            job_size,
            partition,
            qos,
            nice,
            priority,
        }
    }
}
