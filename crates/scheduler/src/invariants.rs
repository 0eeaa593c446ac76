//! State invariants, checked after every apply in debug builds and always in tests.
//!
//! Each check names the property it protects. A broken invariant is a programmer error: the
//! caller panics, because continuing would let replicas diverge.

use crate::depend::{DepKind, DepStatus};
use crate::state::ClusterState;
use crate::types::{JobId, JobState};
use std::collections::{BTreeMap, BTreeSet};

pub fn check(state: &ClusterState) -> Result<(), String> {
    capacity_respected(state)?;
    allocations_consistent(state)?;
    job_ids_below_counter(state)?;
    queue_index_exact(state)?;
    gpus_not_double_booked(state)?;
    dependency_index_exact(state)?;
    held_jobs_say_so(state)?;
    array_records_exact(state)?;
    accounting_consistent(state)?;
    partitions_consistent(state)?;
    steps_consistent(state)?;
    Ok(())
}

/// Operators' updates change partitions, never add, remove or rename them: the table names
/// the configuration's partitions in its order, each once, with at most one default.
fn partitions_consistent(state: &ClusterState) -> Result<(), String> {
    let names: Vec<&str> = state.partitions.iter().map(|p| p.name.as_str()).collect();
    let configured: Vec<&str> = state
        .partitions_config
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    if names != configured {
        return Err(format!(
            "partitions {names:?} differ from the configuration's {configured:?}"
        ));
    }
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    if unique.len() != names.len() {
        return Err(format!("partition names repeat: {names:?}"));
    }
    let defaults = state.partitions.iter().filter(|p| p.is_default).count();
    if defaults > 1 {
        return Err(format!("{defaults} default partitions: {names:?}"));
    }
    Ok(())
}

/// Job steps (`steps.rs`): a running step belongs to a job that holds its resources; a
/// job's step ids strictly increase and stay below its counter; a pending job has no step; a
/// step's tasks lie on the job's nodes, at least one on each, as many as it has. Reference:
/// slurm.md §1.2 (steps `N.0`, `N.1`… exist only inside a running allocation).
fn steps_consistent(state: &ClusterState) -> Result<(), String> {
    for job in state.jobs.values() {
        if job.state == JobState::Pending && (!job.steps.is_empty() || job.next_step_id != 0) {
            return Err(format!("pending job {} has steps", job.id));
        }
        let mut last: Option<u32> = None;
        for step in &job.steps {
            if last.is_some_and(|l| step.id <= l) || step.id >= job.next_step_id {
                return Err(format!(
                    "job {} step ids out of order or beyond its counter: {:?} then {}",
                    job.id, last, step.id
                ));
            }
            last = Some(step.id);
            if step.is_running() && !job.holds_resources() {
                return Err(format!(
                    "step {}.{} runs in a job that holds no resources",
                    job.id, step.id
                ));
            }
            if step.is_running() != step.end_at.is_none() {
                return Err(format!(
                    "step {}.{} end time and state disagree",
                    job.id, step.id
                ));
            }
            let tasks: u32 = step.layout.iter().map(|(_, n)| n).sum();
            let on_job_nodes = step
                .layout
                .iter()
                .all(|(node, n)| *n > 0 && job.alloc.iter().any(|s| &s.node == node));
            if tasks != step.ntasks || (step.is_running() && !on_job_nodes) {
                return Err(format!(
                    "step {}.{} layout {:?} does not hold its {} tasks on the job's nodes",
                    job.id, step.id, step.layout, step.ntasks
                ));
            }
        }
    }
    Ok(())
}

/// Accounting records (`accounting.rs`): one per job id, each of a job that ended, indexed
/// under its end time exactly once (the purge order); a pending cancellation (`CANCELLED by`)
/// is kept only for a cancelled job still completing. Reference: slurm.md §1.7, §5.1.
fn accounting_consistent(state: &ClusterState) -> Result<(), String> {
    let acct = &state.accounting;
    let expected: BTreeSet<(u64, JobId)> = acct
        .records()
        .map(|r| (r.end_at.unwrap_or(0), r.job_id))
        .collect();
    if &expected != acct.by_end() {
        return Err(format!(
            "accounting end index {:?} differs from the records {:?}",
            acct.by_end(),
            expected
        ));
    }
    if let Some(r) = acct
        .records()
        .find(|r| !r.state.is_terminal() || r.end_at.is_none())
    {
        return Err(format!("accounting record {} has not ended", r.job_id));
    }
    if let Some(r) = acct
        .records()
        .find(|r| r.job_id.0 >= state.next_job_id.max(1))
    {
        return Err(format!(
            "accounting record {} has an id never assigned",
            r.job_id
        ));
    }
    for id in acct.cancellations().keys() {
        let ok = state
            .jobs
            .get(id)
            .is_some_and(|j| j.state == JobState::Cancelled && j.completing);
        if !ok {
            return Err(format!(
                "a cancellation is remembered for job {id}, which is not completing"
            ));
        }
    }
    Ok(())
}

/// A pending job with priority 0 is held and says so (JobHeldUser/JobHeldAdmin): a release
/// only matches a held job, so any other reason would leave it pending for ever.
fn held_jobs_say_so(state: &ClusterState) -> Result<(), String> {
    for job in state.jobs.values() {
        if job.state == JobState::Pending && job.priority == 0 && !job.is_held() {
            return Err(format!(
                "job {} has priority 0 but reason {}",
                job.id,
                job.reason.name()
            ));
        }
    }
    Ok(())
}

/// The reverse index of dependencies lists exactly the pending jobs with a waiting condition
/// on each job: a job whose condition is never indexed would wait forever.
fn dependency_index_exact(state: &ClusterState) -> Result<(), String> {
    let mut expected: BTreeMap<JobId, BTreeSet<JobId>> = BTreeMap::new();
    for job in state.jobs.values() {
        if job.state != JobState::Pending {
            continue;
        }
        for c in job.dependency.iter().flat_map(|d| &d.conditions) {
            if c.kind != DepKind::Singleton && c.status == DepStatus::Waiting {
                expected.entry(c.job).or_default().insert(job.id);
            }
        }
    }
    if &expected != state.dependents() {
        return Err(format!(
            "dependency index {:?} differs from the waiting conditions {:?}",
            state.dependents(),
            expected
        ));
    }
    Ok(())
}

/// Every array record is listed under its array, and while an array's first record still
/// stands for pending tasks, its running count (the throttle's) is the number of its records
/// holding resources.
fn array_records_exact(state: &ClusterState) -> Result<(), String> {
    for job in state.jobs.values() {
        let Some(part) = &job.array else { continue };
        if !state
            .array_records(part.array_job_id)
            .any(|j| j.id == job.id)
        {
            return Err(format!(
                "array record {} is not listed under array {}",
                job.id, part.array_job_id
            ));
        }
        if job.id == part.array_job_id && !part.pending.is_empty() {
            if part.task_id.is_some() {
                return Err(format!("array {} has pending tasks and a task id", job.id));
            }
            if job.state == JobState::Pending {
                let holding = state
                    .array_records(job.id)
                    .filter(|j| j.id != job.id && j.holds_resources())
                    .count() as u32;
                if holding != part.running {
                    return Err(format!(
                        "array {} counts {} running tasks, {} hold resources",
                        job.id, part.running, holding
                    ));
                }
            }
        }
    }
    Ok(())
}

/// No CPU of a node is held by more jobs than their partitions' `OverSubscribe=` counts
/// allow: each job holding a CPU that `n` jobs may share takes 1/n of it, and the shares of a
/// node's CPUs add up to no more than its CPU count; no job holds more CPUs of a node than it
/// has. Without oversubscription (every count 1) this is: no node holds more CPUs than it has
/// (Slurm's cons_tres never oversubscribes unless asked to; man5/slurm.conf.5 OverSubscribe).
fn capacity_respected(state: &ClusterState) -> Result<(), String> {
    for node in state.nodes.values() {
        // The jobs on a node share their CPUs in one way only (see `ClusterState::cpus_fit`).
        let shares: BTreeSet<u32> = node
            .jobs
            .iter()
            .filter_map(|id| state.jobs.get(id))
            .map(|j| j.cpu_share)
            .collect();
        if shares.len() > 1 {
            return Err(format!(
                "node {} runs jobs sharing their CPUs {shares:?} ways at once",
                node.name()
            ));
        }
    }
    for node in state.nodes.values().filter(|n| n.up) {
        let mut scale = 1u64;
        for id in &node.jobs {
            let Some(job) = state.jobs.get(id) else {
                continue;
            };
            if job.cpu_share > crate::types::MAX_OVERSUBSCRIBE {
                return Err(format!("job {id} shares its CPUs {} ways", job.cpu_share));
            }
            scale = crate::types::lcm(scale, u64::from(job.cpu_share));
            let cpus = job
                .alloc
                .iter()
                .find(|s| s.node == node.reg.name)
                .map_or(0, |s| s.cpus);
            if cpus > node.reg.cpus {
                return Err(format!(
                    "job {id} holds {cpus} CPUs of node {} with {}",
                    node.name(),
                    node.reg.cpus
                ));
            }
        }
        let load = state.node_cpu_load(node, scale);
        if load > u64::from(node.reg.cpus).saturating_mul(scale) {
            return Err(format!(
                "node {} has {} CPUs allocated of {} ({load} shares of {scale} per CPU)",
                node.name(),
                node.alloc_cpus,
                node.reg.cpus
            ));
        }
    }
    Ok(())
}

/// A node's allocated totals equal the sum of the shares of the jobs holding it, and only
/// running (or completing) jobs hold shares.
fn allocations_consistent(state: &ClusterState) -> Result<(), String> {
    let mut sums: BTreeMap<&str, (u32, u64, usize)> = BTreeMap::new();
    for job in state.jobs.values() {
        if job.holds_resources() {
            if job.alloc.is_empty() {
                return Err(format!(
                    "job {} holds resources but has no allocation",
                    job.id
                ));
            }
            for share in &job.alloc {
                let e = sums.entry(share.node.as_str()).or_default();
                e.0 += share.cpus;
                e.1 += share.mem_mb;
                e.2 += 1;
            }
        } else if job.state == JobState::Pending && !job.alloc.is_empty() {
            return Err(format!("pending job {} has an allocation", job.id));
        }
    }
    for node in state.nodes.values() {
        let (cpus, mem, count) = sums.get(node.name()).copied().unwrap_or_default();
        if (cpus, mem, count) != (node.alloc_cpus, node.alloc_mem_mb, node.jobs.len()) {
            return Err(format!(
                "node {}: jobs hold {cpus} CPUs/{mem} MiB in {count} jobs, node says {}/{} in {}",
                node.name(),
                node.alloc_cpus,
                node.alloc_mem_mb,
                node.jobs.len()
            ));
        }
    }
    for name in sums.keys() {
        if !state.nodes.contains_key(*name) {
            return Err(format!("a job holds unknown node {name}"));
        }
    }
    Ok(())
}

/// Job ids come from the counter: every id is below it, so no id is ever handed out twice.
fn job_ids_below_counter(state: &ClusterState) -> Result<(), String> {
    if let Some((id, _)) = state.jobs.last_key_value() {
        if id.0 >= state.next_job_id {
            return Err(format!(
                "job id {} not below the counter {}",
                id.0, state.next_job_id
            ));
        }
    }
    for (_, id) in state.finished_entries() {
        if state.jobs.get(id).is_some_and(|j| !j.state.is_terminal()) {
            return Err(format!(
                "job {id} is listed as finished but is {}",
                state.jobs[id].state.name()
            ));
        }
    }
    Ok(())
}

/// The scheduling queue index holds exactly the pending jobs that are not held.
fn queue_index_exact(state: &ClusterState) -> Result<(), String> {
    let expected: std::collections::BTreeSet<_> = state
        .jobs
        .values()
        .filter(|j| j.state == JobState::Pending && j.priority > 0)
        .map(|j| j.id)
        .collect();
    if &expected != state.queued_ids() {
        return Err(format!(
            "queue index {:?} differs from pending jobs {:?}",
            state.queued_ids(),
            expected
        ));
    }
    Ok(())
}

/// Each GPU index of a node belongs to at most one job, and the node's set of allocated indices
/// is exactly the union of its jobs' shares (Slurm's cons_tres GRES bitmaps).
fn gpus_not_double_booked(state: &ClusterState) -> Result<(), String> {
    let mut held: BTreeMap<&str, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for job in state.jobs.values().filter(|j| j.holds_resources()) {
        for share in &job.alloc {
            let set = held.entry(share.node.as_str()).or_default();
            for &g in &share.gpus {
                if !set.insert(g) {
                    return Err(format!(
                        "GPU {g} of node {} is held twice (job {})",
                        share.node, job.id
                    ));
                }
            }
        }
    }
    for node in state.nodes.values() {
        let empty = std::collections::BTreeSet::new();
        let expected = held.get(node.name()).unwrap_or(&empty);
        if *expected != node.alloc_gpus {
            return Err(format!(
                "node {}: jobs hold GPUs {expected:?}, node says {:?}",
                node.name(),
                node.alloc_gpus
            ));
        }
    }
    Ok(())
}
