//! The checker: a pure function of the recorded run (history, job markers, the reads taken after
//! healing, the liveness phase's results) → anomalies. `valid` is "no anomaly".
//!
//! Each check reports only what certainly happened: an `info` submit may or may not exist; an
//! attempt killed with SIGKILL is known to have run until the last time it was seen alive.

use crate::history::{Event, JobObs, Kind, F};
use crate::markers::Attempt;
use crate::workload::is_terminal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Finished jobs stay listed this long (controller): an acked job missing from the final read
/// is lost only if it was not seen finished at least this long before.
pub const FINISHED_VISIBLE_S: i64 = 290;
/// How long a job may keep running after its cancel was acknowledged (propagation + SIGTERM).
pub const CANCEL_GRACE_NS: i64 = 10_000_000_000;
/// Jobs the harness itself submits after healing (the liveness probe) start with this.
pub const PROBE_PREFIX: &str = "probe-";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Params {
    pub replicas: u32,
    pub nodes: u32,
    pub cpus_per_node: u32,
    pub mem_per_node_mb: u64,
    #[serde(default)]
    pub gpus_per_node: u32,
    pub clients: usize,
    pub nemeses: Vec<String>,
    pub time_limit_s: u64,
    pub seed: u64,
    pub drover: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Liveness {
    /// Seconds after healing until every known job was terminal; None: not within the bound.
    pub settled_after_s: Option<f64>,
    pub bound_s: u64,
    /// Jobs still not terminal at the bound: (id, name, state).
    pub stuck: Vec<(u64, String, String)>,
    /// The probe job submitted after healing: None = completed; Some(why not).
    pub probe_error: Option<String>,
    pub probe_job: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunData {
    pub params: Params,
    pub start_epoch_ns: i64,
    /// When the workload stopped and faults were healed (ns since start).
    pub healed_ns: i64,
    pub events: Vec<Event>,
    pub attempts: Vec<Attempt>,
    /// One read of every job per replica after healing (process "final").
    pub final_reads: Vec<Event>,
    /// Every accounting record, from one replica, after the final reads (process "final").
    #[serde(default)]
    pub final_records: Vec<Event>,
    pub liveness: Liveness,
    /// Harness-level problem (not a verdict on drover), if any.
    pub harness_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: String,
    pub msg: String,
}

fn rank(state: &str) -> u8 {
    match state {
        "PENDING" => 0,
        "RUNNING" => 1,
        "COMPLETING" => 2,
        _ => 3,
    }
}

struct Obs<'a> {
    t_ns: i64,
    index: u64,
    replica: u64,
    process: &'a str,
    job: &'a JobObs,
}

struct Submit {
    process: String,
    name: String,
    mem_mb: u64,
    kind: Kind,
    job_id: Option<u64>,
    applied_index: Option<u64>,
    /// `--array` as asked, for an array.
    array: Option<String>,
    /// GPUs per node asked for.
    gpus: Option<u32>,
}

/// `first-last%throttle` (the only form the workload submits) → (task indices, throttle).
fn parse_array_spec(spec: &str) -> Option<(BTreeSet<u32>, u32)> {
    let (range, throttle) = spec.split_once('%')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
    Some(((first..=last).collect(), throttle.parse().ok()?))
}

pub fn check(run: &RunData) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut add = |kind: &str, msg: String| {
        out.push(Anomaly {
            kind: kind.to_string(),
            msg,
        })
    };
    let p = &run.params;

    // ---- Index the history. ----
    let mut submits: BTreeMap<(String, u64), Submit> = BTreeMap::new();
    for e in &run.events {
        if e.f != Some(F::Submit) {
            continue;
        }
        let key = (e.process.clone(), e.op);
        match e.kind {
            Some(Kind::Invoke) => {
                submits.insert(
                    key,
                    Submit {
                        process: e.process.clone(),
                        name: e.name.clone().unwrap_or_default(),
                        mem_mb: e.mem_mb.unwrap_or(0),
                        kind: Kind::Info,
                        job_id: None,
                        applied_index: None,
                        array: e.array.clone(),
                        gpus: e.gpus,
                    },
                );
            }
            Some(k) => {
                if let Some(s) = submits.get_mut(&key) {
                    s.kind = k;
                    s.job_id = e.job_id;
                    s.applied_index = e.applied_index;
                }
            }
            None => {}
        }
    }
    let by_name: BTreeMap<&str, &Submit> = submits.values().map(|s| (s.name.as_str(), s)).collect();

    let reads: Vec<&Event> = run
        .events
        .iter()
        .chain(run.final_reads.iter())
        .filter(|e| e.f == Some(F::Read) && e.kind == Some(Kind::Ok))
        .collect();
    let mut obs_by_job: BTreeMap<u64, Vec<Obs>> = BTreeMap::new();
    let mut ids_by_name: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut names_by_id: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for r in &reads {
        let mut ids_here = BTreeSet::new();
        for j in &r.jobs {
            if !ids_here.insert(j.id) {
                add(
                    "duplicate-id-in-read",
                    format!(
                        "{} read from replica {:?} at index {:?} lists job {} twice",
                        r.process, r.replica, r.applied_index, j.id
                    ),
                );
            }
            obs_by_job.entry(j.id).or_default().push(Obs {
                t_ns: r.t_ns,
                index: r.applied_index.unwrap_or(0),
                replica: r.replica.unwrap_or(0),
                process: &r.process,
                job: j,
            });
            // An array's tasks are split off under new ids: one submit, one array id.
            let root = if j.array_job_id != 0 {
                j.array_job_id
            } else {
                j.id
            };
            ids_by_name.entry(&j.name).or_default().insert(root);
            names_by_id.entry(j.id).or_default().insert(&j.name);
        }
    }
    // The cluster purges finished jobs by its own clock, which a skewed leader may have moved
    // ahead of ours (the `clock` nemesis): the later of the two decides what has expired.
    let cluster_now_s = reads
        .iter()
        .filter_map(|r| r.state_now_ms)
        .max()
        .map_or(0, |ms| (ms / 1000) as i64);
    let final_epoch_s = ((run.start_epoch_ns
        + run
            .final_reads
            .iter()
            .map(|e| e.t_ns)
            .max()
            .unwrap_or(run.healed_ns))
        / 1_000_000_000)
        .max(cluster_now_s);
    let mut final_view: BTreeMap<u64, &JobObs> = BTreeMap::new();
    for r in &run.final_reads {
        if r.kind == Some(Kind::Ok) {
            for j in &r.jobs {
                final_view.insert(j.id, j);
            }
        }
    }
    let expired = |id: u64| -> bool {
        obs_by_job.get(&id).is_some_and(|os| {
            os.iter().any(|o| {
                is_terminal(&o.job.state)
                    && o.job.end_time > 0
                    && final_epoch_s - o.job.end_time >= FINISHED_VISIBLE_S
            })
        })
    };

    // ---- Acknowledged submits: present, exactly once; ids unique. ----
    let mut acked_ids: BTreeMap<u64, &Submit> = BTreeMap::new();
    for s in submits.values() {
        let ids = ids_by_name
            .get(s.name.as_str())
            .cloned()
            .unwrap_or_default();
        if ids.len() > 1 {
            add(
                "duplicate-job",
                format!(
                    "submit {} ({}, {:?}) created several jobs: {ids:?}",
                    s.name, s.process, s.kind
                ),
            );
        }
        match s.kind {
            Kind::Ok => {
                let Some(id) = s.job_id else { continue };
                if let Some(other) = acked_ids.insert(id, s) {
                    add(
                        "job-id-reused",
                        format!(
                            "job id {id} was acknowledged to two submits: {} and {}",
                            other.name, s.name
                        ),
                    );
                }
                let names = names_by_id.get(&id).cloned().unwrap_or_default();
                if names.iter().any(|n| *n != s.name) {
                    add(
                        "job-id-reused",
                        format!("job id {id} was acknowledged to submit {} but reads show it as {names:?}", s.name),
                    );
                }
                if !final_view.contains_key(&id) && !expired(id) {
                    let seen = obs_by_job.get(&id).map(|o| o.len()).unwrap_or(0);
                    add(
                        "lost-acked-submit",
                        format!(
                            "submit {} was acknowledged as job {id} (applied index {:?}) but no replica lists it after healing (seen in {seen} earlier reads)",
                            s.name, s.applied_index
                        ),
                    );
                }
            }
            Kind::Fail if !ids.is_empty() => {
                add(
                    "failed-submit-took-effect",
                    format!(
                        "submit {} failed definitely but jobs {ids:?} carry its name",
                        s.name
                    ),
                );
            }
            _ => {}
        }
    }

    // ---- Reads: never older than the client has seen; acked jobs visible at a later index. ----
    for r in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Read) && e.kind == Some(Kind::Ok))
    {
        let (min, idx) = (r.min_index.unwrap_or(0), r.applied_index.unwrap_or(0));
        if idx < min {
            add(
                "stale-read",
                format!(
                    "{} read from replica {:?} returned applied index {idx} < min_index {min}",
                    r.process, r.replica
                ),
            );
        }
        let listed: BTreeSet<u64> = r.jobs.iter().map(|j| j.id).collect();
        for id in &r.asked {
            let Some(s) = acked_ids.get(id) else { continue };
            if s.applied_index.is_some_and(|a| a <= idx) && !listed.contains(id) && !expired(*id) {
                add(
                    "read-missed-acked-job",
                    format!(
                        "{} read from replica {:?} at index {idx} (t={:.3}s) does not list job {id} ({}), acknowledged at index {:?}",
                        r.process,
                        r.replica,
                        r.t_ns as f64 / 1e9,
                        s.name,
                        s.applied_index
                    ),
                );
            }
        }
    }

    // ---- State transitions: monotonic in log order; one state per index; one terminal state. ----
    for (id, os) in obs_by_job.iter_mut() {
        os.sort_by_key(|o| (o.index, o.t_ns));
        let mut reported = false;
        for w in os.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            // A requeue starts a new run (Restarts= + 1, PENDING again): states are ordered
            // by (run, state), and a terminal state is final only within its run.
            let (ra, rb) = (
                (a.job.restarts, rank(&a.job.state)),
                (b.job.restarts, rank(&b.job.state)),
            );
            let bad = if a.index == b.index {
                (a.job.state != b.job.state || a.job.restarts != b.job.restarts)
                    .then_some("divergent-read")
            } else if rb < ra
                || (ra.1 == 3 && a.job.restarts == b.job.restarts && a.job.state != b.job.state)
            {
                Some("illegal-transition")
            } else {
                None
            };
            if let Some(kind) = bad {
                if !reported {
                    add(
                        kind,
                        format!(
                            "job {id}: {} (run {}) at index {} (replica {}, {}, t={:.3}s) then {} (run {}) at index {} (replica {}, {}, t={:.3}s)",
                            a.job.state, a.job.restarts, a.index, a.replica, a.process, a.t_ns as f64 / 1e9,
                            b.job.state, b.job.restarts, b.index, b.replica, b.process, b.t_ns as f64 / 1e9
                        ),
                    );
                }
                reported = true;
            }
        }
    }

    // ---- Allocations as read: no node holds more CPUs than it has. ----
    for r in &reads {
        let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
        for j in &r.jobs {
            if matches!(j.state.as_str(), "RUNNING" | "COMPLETING")
                && !j.nodes.is_empty()
                && !j.nodes.contains([',', '['])
            {
                *per_node.entry(&j.nodes).or_default() += j.cpus;
            }
        }
        for (node, cpus) in per_node {
            if cpus > p.cpus_per_node {
                add(
                    "allocation-oversubscribed",
                    format!(
                        "read from replica {:?} at index {:?}: node {node} holds {cpus} CPUs of {}",
                        r.replica, r.applied_index, p.cpus_per_node
                    ),
                );
            }
        }
    }

    // ---- Execution, from the markers. ----
    let mut by_job: BTreeMap<u64, Vec<&Attempt>> = BTreeMap::new();
    for a in &run.attempts {
        by_job.entry(a.job_id).or_default().push(a);
        match by_name.get(a.name.as_str()) {
            None if a.name.starts_with(PROBE_PREFIX) => {}
            None => add(
                "unknown-job-ran",
                format!(
                    "an attempt of job {} named {} ran on {}, but no client submitted that name",
                    a.job_id, a.name, a.node
                ),
            ),
            Some(s) if s.kind == Kind::Fail => add(
                "failed-submit-ran",
                format!(
                    "submit {} failed definitely but ran as job {} on {}",
                    a.name, a.job_id, a.node
                ),
            ),
            _ => {}
        }
        if let Some(names) = names_by_id.get(&a.job_id) {
            if !names.contains(a.name.as_str()) {
                add(
                    "ran-wrong-job",
                    format!(
                        "job {} ran script {} but the cluster calls it {names:?}",
                        a.job_id, a.name
                    ),
                );
            }
        }
        if let Some(j) = final_view.get(&a.job_id) {
            // Only the last run's allocation is listed; a requeued run may have had another.
            if !j.nodes.is_empty() && j.nodes != a.node && a.restarts.unwrap_or(0) == j.restarts {
                add(
                    "ran-on-unallocated-node",
                    format!(
                        "job {} ran on {} but is allocated {}",
                        a.job_id, a.node, j.nodes
                    ),
                );
            }
        }
    }
    for (id, atts) in &by_job {
        if atts.len() < 2 {
            continue;
        }
        let mut concurrent = false;
        for (i, a) in atts.iter().enumerate() {
            for b in &atts[i + 1..] {
                if a.start_ns < b.end_lower_bound() && b.start_ns < a.end_lower_bound() {
                    concurrent = true;
                }
            }
        }
        // Each run (job, SLURM_RESTART_COUNT) is one attempt: runs of a requeued job may follow
        // each other, but never overlap, and one run never starts twice.
        let mut per_run: BTreeMap<Option<u32>, usize> = BTreeMap::new();
        for a in atts {
            *per_run.entry(a.restarts).or_default() += 1;
        }
        let twice: Vec<Option<u32>> = per_run
            .iter()
            .filter(|(r, n)| **n > 1 || r.is_none())
            .map(|(r, _)| *r)
            .collect();
        let detail: Vec<String> = atts
            .iter()
            .map(|a| {
                format!(
                    "run {:?} {} pid {} {:.3}s..{:.3}s",
                    a.restarts,
                    a.node,
                    a.pid,
                    a.start_ns as f64 / 1e9,
                    a.end_lower_bound() as f64 / 1e9
                )
            })
            .collect();
        if concurrent {
            add(
                "ran-concurrently",
                format!("job {id} ran twice at the same time: {detail:?}"),
            );
        } else if !twice.is_empty() {
            add(
                "ran-more-than-once",
                format!(
                    "job {id} ran {} times, run(s) {twice:?} more than once: {detail:?}",
                    atts.len()
                ),
            );
        }
    }
    for node in (1..=p.nodes).map(|i| format!("n{i}")) {
        let mut edges: Vec<(i64, i32, &Attempt)> = Vec::new();
        for a in run.attempts.iter().filter(|a| a.node == node) {
            let end = a.end_lower_bound();
            if end > a.start_ns {
                edges.push((a.start_ns, 1, a));
                edges.push((end, -1, a));
            }
        }
        // Ends before starts at the same instant.
        edges.sort_by_key(|(t, d, _)| (*t, *d));
        let mut running: Vec<&Attempt> = Vec::new();
        let mut reported = 0;
        for (t, d, a) in edges {
            if d < 0 {
                running.retain(|x| !std::ptr::eq(*x, a));
                continue;
            }
            running.push(a);
            let cpus: u32 = running.iter().map(|x| x.cpus).sum();
            let mem: u64 = running
                .iter()
                .map(|x| by_name.get(x.name.as_str()).map(|s| s.mem_mb).unwrap_or(0))
                .sum();
            if (cpus > p.cpus_per_node || mem > p.mem_per_node_mb) && reported < 3 {
                reported += 1;
                let who: Vec<String> = running
                    .iter()
                    .map(|x| format!("job {} ({} cpus, pid {})", x.job_id, x.cpus, x.pid))
                    .collect();
                add(
                    "node-oversubscribed",
                    format!(
                        "at t={:.3}s node {node} ran {cpus} CPUs / {mem} MB of {} / {}: {who:?}",
                        t as f64 / 1e9,
                        p.cpus_per_node,
                        p.mem_per_node_mb
                    ),
                );
            }
        }
    }

    // ---- Cancel: nothing runs long after an acknowledged cancel. ----
    let faults = fault_windows(&run.events, run.healed_ns);
    let daemon_down = |node: &str, from: i64, to: i64| {
        faults.iter().any(|(s, e, info)| {
            *s <= to
                && *e >= from
                && (info.contains(&format!("noded-{node}"))
                    || info.contains("every replica and node daemon"))
        })
    };
    // Invocation times, and the requeues that may have taken effect (ok without error, or info).
    let mut invoked: BTreeMap<(&str, u64), i64> = BTreeMap::new();
    for e in run.events.iter().filter(|e| e.kind == Some(Kind::Invoke)) {
        invoked.insert((e.process.as_str(), e.op), e.t_ns);
    }
    let invoked_at = |e: &Event| invoked.get(&(e.process.as_str(), e.op)).copied();
    let requeues: Vec<(u64, i64, i64)> = run
        .events
        .iter()
        .filter(|e| {
            e.f == Some(F::Requeue)
                && (e.kind == Some(Kind::Info) || (e.kind == Some(Kind::Ok) && e.error.is_none()))
        })
        .filter_map(|e| Some((e.job_id?, invoked_at(e).unwrap_or(0), e.t_ns)))
        .collect();
    for e in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Cancel) && e.kind == Some(Kind::Ok) && e.error.is_none())
    {
        let Some(id) = e.job_id else { continue };
        // A requeue that may have been applied after this cancel runs the job again, legally.
        let from = invoked_at(e).unwrap_or(e.t_ns);
        if requeues
            .iter()
            .any(|(j, _, done)| *j == id && *done >= from)
        {
            continue;
        }
        for a in by_job.get(&id).into_iter().flatten() {
            let end = a.end_lower_bound();
            if end > e.t_ns + CANCEL_GRACE_NS && !daemon_down(&a.node, e.t_ns, end) {
                add(
                    "ran-after-cancel",
                    format!(
                        "job {id} was acknowledged cancelled at t={:.3}s but ran on {} until at least t={:.3}s",
                        e.t_ns as f64 / 1e9,
                        a.node,
                        end as f64 / 1e9
                    ),
                );
            }
        }
        if let Some(j) = final_view.get(&id) {
            if j.state == "COMPLETED" {
                add(
                    "cancelled-job-completed",
                    format!(
                        "job {id} was acknowledged cancelled at t={:.3}s but ended COMPLETED",
                        e.t_ns as f64 / 1e9
                    ),
                );
            }
        }
    }

    // ---- Hold: a job held (acknowledged, no error: it was pending) starts no run until a
    // release or requeue of it may have been applied: the earliest invocation of one that was
    // still in flight when the hold was invoked (or the harness's final release, after
    // healing). ----
    for e in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Hold) && e.kind == Some(Kind::Ok) && e.error.is_none())
    {
        let Some(id) = e.job_id else { continue };
        let held_from = invoked_at(e).unwrap_or(e.t_ns);
        let until = run
            .events
            .iter()
            .filter(|x| {
                matches!(x.f, Some(F::Release) | Some(F::Requeue))
                    && x.job_id == Some(id)
                    && x.t_ns > held_from
            })
            .map(|x| {
                if x.kind == Some(Kind::Invoke) {
                    x.t_ns
                } else {
                    invoked_at(x).unwrap_or(i64::MIN)
                }
            })
            .min()
            .unwrap_or(run.healed_ns);
        for a in by_job.get(&id).into_iter().flatten() {
            if a.start_ns > e.t_ns && a.start_ns < until {
                add(
                    "ran-while-held",
                    format!(
                        "job {id} was acknowledged held at t={:.3}s but run {:?} started on {} at t={:.3}s, before any release (t={:.3}s)",
                        e.t_ns as f64 / 1e9,
                        a.restarts,
                        a.node,
                        a.start_ns as f64 / 1e9,
                        until as f64 / 1e9
                    ),
                );
            }
        }
    }

    // ---- Dependencies: `afterany:D` — no run starts while a run of D is running; `afterok:D` —
    // also, no run starts unless a run of D finished its script (exit 0, the "ok" end marker)
    // before it. Jobs whose D may have been requeued are left out (a requeue reopens D). ----
    let requeued: BTreeSet<u64> = requeues.iter().map(|(j, _, _)| *j).collect();
    for e in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Submit) && e.kind == Some(Kind::Invoke))
    {
        let Some((how, dep)) = e.info.as_deref().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let Ok(dep) = dep.parse::<u64>() else {
            continue;
        };
        let Some(s) = e.name.as_deref().and_then(|n| by_name.get(n)) else {
            continue;
        };
        let Some(id) = s.job_id else { continue };
        if requeued.contains(&dep) {
            continue;
        }
        let dep_runs = by_job.get(&dep).cloned().unwrap_or_default();
        for a in by_job.get(&id).into_iter().flatten() {
            if let Some(d) = dep_runs
                .iter()
                .find(|d| d.start_ns < a.start_ns && a.start_ns < d.end_lower_bound())
            {
                add(
                    "ran-before-dependency",
                    format!(
                        "job {id} ({how}:{dep}) started on {} at t={:.3}s while job {dep} still ran on {} (until at least t={:.3}s)",
                        a.node,
                        a.start_ns as f64 / 1e9,
                        d.node,
                        d.end_lower_bound() as f64 / 1e9
                    ),
                );
            }
            let dep_ok = dep_runs.iter().any(|d| {
                d.end_reason.as_deref() == Some("ok") && d.end_ns.is_some_and(|t| t <= a.start_ns)
            });
            if how == "afterok" && !dep_ok {
                add(
                    "ran-despite-dependency",
                    format!(
                        "job {id} (afterok:{dep}) started on {} at t={:.3}s, but no run of job {dep} had finished successfully by then",
                        a.node,
                        a.start_ns as f64 / 1e9
                    ),
                );
            }
        }
    }

    // ---- Accounting (sacct): every acknowledged job has its record, and it agrees. ----
    // Records outlive MinJobAge (they are purged after the retention, 30 days by default), so
    // an acknowledged job must be in every accounting read at or above its index, and in the
    // final one; a job the final reads show ended must have a record in the same state.
    for r in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Acct) && e.kind == Some(Kind::Ok))
    {
        let idx = r.applied_index.unwrap_or(0);
        let listed: BTreeSet<u64> = r.jobs.iter().map(|j| j.id).collect();
        for id in &r.asked {
            let Some(s) = acked_ids.get(id) else { continue };
            if s.applied_index.is_some_and(|a| a <= idx) && !listed.contains(id) {
                add(
                    "acct-missed-acked-job",
                    format!(
                        "{} accounting read from replica {:?} at index {idx} does not list job {id} ({}), acknowledged at index {:?}",
                        r.process, r.replica, s.name, s.applied_index
                    ),
                );
            }
        }
    }
    if let Some(fin) = run.final_records.iter().find(|e| e.kind == Some(Kind::Ok)) {
        let records: BTreeMap<u64, &JobObs> = fin.jobs.iter().map(|j| (j.id, j)).collect();
        for (id, s) in &acked_ids {
            if !records.contains_key(id) {
                add(
                    "acct-lost-job",
                    format!(
                        "job {id} ({}) was acknowledged but the final accounting read (index {:?}) has no record of it",
                        s.name, fin.applied_index
                    ),
                );
            }
        }
        for (id, j) in &final_view {
            let Some(rec) = records.get(id) else { continue };
            if is_terminal(&j.state) && rec.state != j.state {
                add(
                    "acct-state-differs",
                    format!(
                        "job {id} is {} in the final reads but {} in its accounting record",
                        j.state, rec.state
                    ),
                );
            }
        }
    }

    // ---- Linearizable reads: every write acknowledged before the read was sent is in it. ----
    // A write's answer carries an applied index that was committed when it was sent; a read
    // that asked to be linearizable and was invoked after that answer must reflect at least
    // that index (real-time order, as Jepsen's linearizability checks demand of reads).
    let mut acked_writes: Vec<(i64, u64)> = run
        .events
        .iter()
        .filter(|e| {
            e.kind == Some(Kind::Ok)
                && matches!(
                    e.f,
                    Some(F::Submit | F::Cancel | F::Hold | F::Release | F::Requeue)
                )
        })
        .filter_map(|e| Some((e.t_ns, e.applied_index?)))
        .collect();
    acked_writes.sort_unstable();
    let mut highest_acked: Vec<(i64, u64)> = Vec::with_capacity(acked_writes.len());
    for (t, idx) in acked_writes {
        let high = highest_acked.last().map_or(idx, |&(_, h)| h.max(idx));
        highest_acked.push((t, high));
    }
    let invoked: BTreeMap<(&str, u64), i64> = run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Read) && e.kind == Some(Kind::Invoke))
        .map(|e| ((e.process.as_str(), e.op), e.t_ns))
        .collect();
    for r in run.events.iter().filter(|e| {
        e.f == Some(F::Read)
            && e.kind == Some(Kind::Ok)
            && e.info.as_deref() == Some(crate::workload::LINEARIZABLE)
    }) {
        let Some(&t_inv) = invoked.get(&(r.process.as_str(), r.op)) else {
            continue;
        };
        let before = highest_acked.partition_point(|&(t, _)| t < t_inv);
        let Some(&(_, must)) = before.checked_sub(1).and_then(|k| highest_acked.get(k)) else {
            continue;
        };
        let idx = r.applied_index.unwrap_or(0);
        if idx < must {
            add(
                "stale-linearizable-read",
                format!(
                    "{} read from replica {:?} invoked at t={:.3}s reflects index {idx}, but a write acknowledged before then was applied at index {must}",
                    r.process,
                    r.replica,
                    t_inv as f64 / 1e9
                ),
            );
        }
    }

    // ---- The state's clock: one value per applied index, never lower at a higher one. ----
    // Time enters the state only as the leader's stamp, and apply keeps the largest: a leader
    // whose clock is behind (or a new leader behind the old one) cannot move it back, and
    // every replica that applied the same entries reads the same clock.
    let mut clock_at: BTreeMap<u64, BTreeMap<u64, Vec<u64>>> = BTreeMap::new();
    for r in &reads {
        if let (Some(idx), Some(now)) = (r.applied_index, r.state_now_ms) {
            clock_at
                .entry(idx)
                .or_default()
                .entry(now)
                .or_default()
                .push(r.replica.unwrap_or(0));
        }
    }
    let mut highest: Option<(u64, u64)> = None; // (index, clock) of the highest clock so far
    for (idx, clocks) in &clock_at {
        if clocks.len() > 1 {
            add(
                "divergent-clock",
                format!("at applied index {idx} replicas read different clocks (ms → replicas): {clocks:?}"),
            );
        }
        let (&low, _) = clocks
            .first_key_value()
            .expect("an entry per index has a clock");
        if let Some((at, high)) = highest.filter(|&(_, high)| low < high) {
            add(
                "clock-went-back",
                format!(
                    "the state's clock read {high} ms at index {at} but {low} ms at the later index {idx}"
                ),
            );
        }
        let (&high, _) = clocks
            .last_key_value()
            .expect("an entry per index has a clock");
        if highest.is_none_or(|(_, h)| high > h) {
            highest = Some((*idx, high));
        }
    }

    // ---- GPUs: each attempt got the count asked for; no index on a node held twice. ----
    for a in &run.attempts {
        let asked = by_name
            .get(a.name.as_str())
            .and_then(|s| s.gpus)
            .unwrap_or(0);
        if a.gpus.len() != asked as usize {
            add(
                "gpu-count-wrong",
                format!(
                    "job {} ({}) asked for {asked} GPU(s) per node but ran on {} with {:?}",
                    a.job_id, a.name, a.node, a.gpus
                ),
            );
        }
        if a.gpus.iter().any(|&g| g >= p.gpus_per_node) {
            add(
                "gpu-count-wrong",
                format!(
                    "job {} ran on {} with GPUs {:?}, but the node has {}",
                    a.job_id, a.node, a.gpus, p.gpus_per_node
                ),
            );
        }
    }
    for node in (1..=p.nodes).map(|i| format!("n{i}")) {
        for gpu in 0..p.gpus_per_node {
            let holders: Vec<&Attempt> = run
                .attempts
                .iter()
                .filter(|a| a.node == node && a.gpus.contains(&gpu))
                .collect();
            let overlap = holders.iter().enumerate().find_map(|(i, a)| {
                holders[i + 1..]
                    .iter()
                    .find(|b| a.start_ns < b.end_lower_bound() && b.start_ns < a.end_lower_bound())
                    .map(|b| (a, b))
            });
            if let Some((a, b)) = overlap {
                add(
                    "gpu-oversubscribed",
                    format!(
                        "GPU {gpu} of {node} was held at once by job {} ({:.3}s..{:.3}s) and job {} ({:.3}s..{:.3}s)",
                        a.job_id,
                        a.start_ns as f64 / 1e9,
                        a.end_lower_bound() as f64 / 1e9,
                        b.job_id,
                        b.start_ns as f64 / 1e9,
                        b.end_lower_bound() as f64 / 1e9
                    ),
                );
            }
        }
    }

    // ---- Arrays: the `%` throttle, and every task run. ----
    // At most `throttle` tasks of an array run at once: counted at each task's start, from the
    // markers, with only overlaps that certainly happened. Every task index runs (once the
    // cluster settled), and no index outside the array does.
    for s in submits.values().filter(|s| s.kind == Kind::Ok) {
        let (Some(id), Some(spec)) = (s.job_id, s.array.as_deref()) else {
            continue;
        };
        let Some((indices, throttle)) = parse_array_spec(spec) else {
            continue;
        };
        let tasks: Vec<&Attempt> = run
            .attempts
            .iter()
            .filter(|a| a.array_job_id == Some(id))
            .collect();
        for a in &tasks {
            let running: Vec<&&Attempt> = tasks
                .iter()
                .filter(|b| b.start_ns <= a.start_ns && a.start_ns < b.end_lower_bound())
                .collect();
            if running.len() > throttle as usize {
                let detail: Vec<String> = running
                    .iter()
                    .map(|b| {
                        format!(
                            "task {:?} (job {}) on {} {:.3}s..{:.3}s",
                            b.array_task,
                            b.job_id,
                            b.node,
                            b.start_ns as f64 / 1e9,
                            b.end_lower_bound() as f64 / 1e9
                        )
                    })
                    .collect();
                add(
                    "array-throttle-exceeded",
                    format!(
                        "array {id} ({spec}) ran {} tasks at once at t={:.3}s: {detail:?}",
                        running.len(),
                        a.start_ns as f64 / 1e9
                    ),
                );
                break;
            }
        }
        let mut ran: BTreeSet<u32> = tasks.iter().filter_map(|a| a.array_task).collect();
        let outside: Vec<u32> = ran.difference(&indices).copied().collect();
        if !outside.is_empty() {
            add(
                "array-task-unknown",
                format!("array {id} ({spec}) ran tasks {outside:?}, which it does not have"),
            );
        }
        for r in &reads {
            ran.extend(
                r.jobs
                    .iter()
                    .filter(|j| j.array_job_id == id && j.state != "PENDING")
                    .filter_map(|j| j.array_task),
            );
        }
        let missing: Vec<u32> = indices.difference(&ran).copied().collect();
        if run.liveness.settled_after_s.is_some() && !missing.is_empty() {
            add(
                "array-task-missing",
                format!(
                    "array {id} ({spec}): tasks {missing:?} never ran, though every job is terminal"
                ),
            );
        }
    }

    // ---- Leadership. ----
    // Not "one leader per term": openraft's default build names a leader by (term, node id),
    // so two replicas may lead one term (the later one, with the higher id, supersedes the
    // first; jepsen/README.md, layer 2). What the monitor sees cannot show the real safety
    // condition (a quorum of durable votes behind each leader); layer 2 checks that.

    // ---- Liveness after healing. ----
    let l = &run.liveness;
    if l.settled_after_s.is_none() {
        add(
            "not-live",
            format!(
                "{} jobs were not terminal {} s after healing: {:?}",
                l.stuck.len(),
                l.bound_s,
                l.stuck.iter().take(10).collect::<Vec<_>>()
            ),
        );
    }
    if let Some(why) = &l.probe_error {
        add(
            "no-new-work",
            format!("a job submitted after healing did not complete: {why}"),
        );
    }
    out
}

/// Fault windows (start, end, description) from the nemesis's events.
pub fn fault_windows(events: &[Event], end_ns: i64) -> Vec<(i64, i64, String)> {
    let mut open: BTreeMap<u64, (i64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.f == Some(F::Fault)) {
        match e.kind {
            Some(Kind::Invoke) => {
                open.insert(e.op, (e.t_ns, e.info.clone().unwrap_or_default()));
            }
            _ => {
                if let Some((s, info)) = open.remove(&e.op) {
                    out.push((s, e.t_ns, info));
                }
            }
        }
    }
    for (_, (s, info)) in open {
        out.push((s, end_ns, info));
    }
    out.sort_by_key(|w| w.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, process: &str, kind: Kind, f: F, op: u64) -> Event {
        Event {
            t_ns: t,
            process: process.into(),
            kind: Some(kind),
            f: Some(f),
            op,
            ..Default::default()
        }
    }

    fn job(id: u64, name: &str, state: &str) -> JobObs {
        JobObs {
            id,
            name: name.into(),
            state: state.into(),
            nodes: "n1".into(),
            cpus: 1,
            mem_mb: 64,
            end_time: 0,
            now: 0,
            restarts: 0,
            array_job_id: 0,
            array_task: None,
        }
    }

    fn read(t: i64, index: u64, jobs: Vec<JobObs>) -> Event {
        Event {
            replica: Some(1),
            min_index: Some(0),
            applied_index: Some(index),
            jobs,
            ..ev(t, "c0", Kind::Ok, F::Read, 0)
        }
    }

    fn base() -> RunData {
        let mut run = RunData {
            params: Params {
                nodes: 1,
                cpus_per_node: 2,
                mem_per_node_mb: 1024,
                ..Default::default()
            },
            ..Default::default()
        };
        run.liveness.settled_after_s = Some(1.0);
        run.events.push(Event {
            name: Some("c0-1".into()),
            mem_mb: Some(64),
            ..ev(0, "c0", Kind::Invoke, F::Submit, 1)
        });
        run.events.push(Event {
            name: Some("c0-1".into()),
            job_id: Some(1),
            applied_index: Some(5),
            ..ev(10, "c0", Kind::Ok, F::Submit, 1)
        });
        run
    }

    fn kinds(run: &RunData) -> Vec<String> {
        check(run).into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_clean_run_is_valid() {
        let mut run = base();
        run.events
            .push(read(20, 6, vec![job(1, "c0-1", "RUNNING")]));
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        assert_eq!(kinds(&run), Vec::<String>::new());
    }

    #[test]
    fn a_lost_acked_submit_is_caught() {
        let mut run = base();
        run.final_reads.push(read(30, 9, vec![]));
        assert_eq!(kinds(&run), vec!["lost-acked-submit"]);
    }

    #[test]
    fn a_duplicate_and_a_backwards_state_are_caught() {
        let mut run = base();
        run.events
            .push(read(20, 7, vec![job(1, "c0-1", "COMPLETED")]));
        run.final_reads.push(read(
            30,
            9,
            vec![job(1, "c0-1", "RUNNING"), job(2, "c0-1", "PENDING")],
        ));
        let k = kinds(&run);
        assert!(k.contains(&"duplicate-job".to_string()), "{k:?}");
        assert!(k.contains(&"illegal-transition".to_string()), "{k:?}");
    }

    #[test]
    fn concurrent_attempts_and_oversubscription_are_caught() {
        let mut run = base();
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        let a = Attempt {
            name: "c0-1".into(),
            job_id: 1,
            node: "n1".into(),
            cpus: 2,
            pid: 1,
            restarts: Some(0),
            array_job_id: None,
            array_task: None,
            gpus: Vec::new(),
            start_ns: 100,
            end_ns: Some(200),
            end_reason: Some("ok".into()),
            last_alive_ns: 150,
            gone_ns: Some(210),
        };
        run.attempts = vec![
            a.clone(),
            Attempt {
                pid: 2,
                start_ns: 150,
                ..a
            },
        ];
        let k = kinds(&run);
        assert!(k.contains(&"ran-concurrently".to_string()), "{k:?}");
        assert!(k.contains(&"node-oversubscribed".to_string()), "{k:?}");
    }

    #[test]
    fn a_stale_read_is_caught() {
        let mut run = base();
        run.events.push(Event {
            min_index: Some(8),
            ..read(20, 7, vec![job(1, "c0-1", "RUNNING")])
        });
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        assert_eq!(kinds(&run), vec!["stale-read"]);
    }

    fn attempt(pid: i32, restarts: u32, start_ns: i64, end_ns: i64) -> Attempt {
        Attempt {
            name: "c0-1".into(),
            job_id: 1,
            node: "n1".into(),
            cpus: 1,
            pid,
            restarts: Some(restarts),
            array_job_id: None,
            array_task: None,
            gpus: Vec::new(),
            start_ns,
            end_ns: Some(end_ns),
            end_reason: Some("ok".into()),
            last_alive_ns: end_ns,
            gone_ns: Some(end_ns + 10),
        }
    }

    #[test]
    fn a_requeued_job_runs_again_but_its_runs_never_overlap() {
        let mut run = base();
        let requeued = JobObs {
            restarts: 1,
            ..job(1, "c0-1", "PENDING")
        };
        run.events
            .push(read(20, 6, vec![job(1, "c0-1", "RUNNING")]));
        run.events
            .push(read(25, 7, vec![job(1, "c0-1", "COMPLETED")]));
        run.events.push(Event {
            job_id: Some(1),
            ..ev(26, "c1", Kind::Invoke, F::Requeue, 1)
        });
        run.events.push(Event {
            job_id: Some(1),
            applied_index: Some(8),
            ..ev(27, "c1", Kind::Ok, F::Requeue, 1)
        });
        run.events.push(read(28, 8, vec![requeued]));
        run.final_reads.push(read(
            300,
            9,
            vec![JobObs {
                restarts: 1,
                nodes: "n2".into(),
                ..job(1, "c0-1", "COMPLETED")
            }],
        ));
        let mut first = attempt(1, 0, 100, 200);
        first.node = "n2".into();
        run.attempts = vec![first.clone(), attempt(2, 1, 250, 290)];
        // Two runs, one after the other; the first on another node than the last run's.
        assert_eq!(
            kinds(&run),
            vec!["ran-on-unallocated-node"],
            "only the last run is checked against the final allocation"
        );
        run.attempts[0].node = "n2".into();
        run.attempts[1].node = "n2".into();
        assert_eq!(kinds(&run), Vec::<String>::new());
        // The same run twice (one after the other), or two runs at once: caught.
        run.attempts = vec![attempt(1, 1, 100, 200), attempt(2, 1, 250, 290)];
        for a in &mut run.attempts {
            a.node = "n2".into();
        }
        assert_eq!(kinds(&run), vec!["ran-more-than-once"]);
        run.attempts = vec![attempt(1, 0, 100, 260), attempt(2, 1, 250, 290)];
        for a in &mut run.attempts {
            a.node = "n2".into();
        }
        assert_eq!(kinds(&run), vec!["ran-concurrently"]);
        // Back to PENDING without a new run is still illegal.
        run.attempts.clear();
        run.events
            .push(read(29, 9, vec![job(1, "c0-1", "PENDING")]));
        assert!(kinds(&run).contains(&"illegal-transition".to_string()));
    }

    #[test]
    fn a_held_job_that_starts_is_caught() {
        let mut run = base();
        run.healed_ns = 1_000;
        run.final_reads
            .push(read(2_000, 9, vec![job(1, "c0-1", "COMPLETED")]));
        run.events.push(Event {
            job_id: Some(1),
            ..ev(20, "c1", Kind::Invoke, F::Hold, 1)
        });
        run.events.push(Event {
            job_id: Some(1),
            ..ev(30, "c1", Kind::Ok, F::Hold, 1)
        });
        run.attempts = vec![attempt(1, 0, 100, 200)];
        assert_eq!(kinds(&run), vec!["ran-while-held"]);
        // A release invoked just before the hold was acknowledged (so possibly applied after
        // it): legal.
        let mut racing = run.clone();
        racing.events.push(Event {
            job_id: Some(1),
            ..ev(25, "c2", Kind::Invoke, F::Release, 1)
        });
        racing.events.push(Event {
            job_id: Some(1),
            ..ev(35, "c2", Kind::Ok, F::Release, 1)
        });
        assert_eq!(kinds(&racing), Vec::<String>::new());
        // Released first: legal.
        run.events.push(Event {
            job_id: Some(1),
            ..ev(50, "c1", Kind::Invoke, F::Release, 2)
        });
        assert_eq!(kinds(&run), Vec::<String>::new());
    }

    #[test]
    fn a_dependency_that_was_not_met_is_caught() {
        let mut run = base();
        run.healed_ns = 1_000;
        run.events.push(Event {
            name: Some("c0-2".into()),
            info: Some("afterok:1".into()),
            ..ev(11, "c0", Kind::Invoke, F::Submit, 2)
        });
        run.events.push(Event {
            name: Some("c0-2".into()),
            job_id: Some(2),
            applied_index: Some(6),
            ..ev(12, "c0", Kind::Ok, F::Submit, 2)
        });
        run.final_reads.push(read(
            2_000,
            9,
            vec![job(1, "c0-1", "COMPLETED"), job(2, "c0-2", "COMPLETED")],
        ));
        let second = Attempt {
            name: "c0-2".into(),
            job_id: 2,
            ..attempt(2, 0, 300, 400)
        };
        run.attempts = vec![attempt(1, 0, 100, 200), second.clone()];
        assert_eq!(kinds(&run), Vec::<String>::new());
        // Started while its dependency still ran.
        run.attempts = vec![attempt(1, 0, 100, 350), second.clone()];
        let k = kinds(&run);
        assert!(k.contains(&"ran-before-dependency".to_string()), "{k:?}");
        assert!(k.contains(&"ran-despite-dependency".to_string()), "{k:?}");
        // The dependency was killed (SIGTERM), yet the job ran.
        let mut killed = attempt(1, 0, 100, 200);
        killed.end_reason = Some("term".into());
        run.attempts = vec![killed, second];
        assert_eq!(kinds(&run), vec!["ran-despite-dependency"]);
    }

    /// An array `0-2%1` (job 1; tasks 0 and 1 split off as jobs 2 and 3, task 2 in job 1):
    /// two tasks at once break the throttle; a task index it does not have, and one that never
    /// ran once everything settled, are caught; the same tasks one after another are valid.
    #[test]
    fn array_throttle_and_tasks_are_checked_from_the_markers() {
        let mut run = base();
        run.events[0].array = Some("0-2%1".into());
        let mut records = Vec::new();
        for (id, task) in [(2, 0), (3, 1), (1, 2)] {
            records.push(JobObs {
                array_job_id: 1,
                array_task: Some(task),
                ..job(id, "c0-1", "COMPLETED")
            });
        }
        run.final_reads.push(read(30, 9, records));
        let task = |job_id: u64, index: u32, start_ns: i64| Attempt {
            name: "c0-1".into(),
            job_id,
            node: "n1".into(),
            cpus: 1,
            pid: job_id as i32,
            restarts: Some(0),
            array_job_id: Some(1),
            array_task: Some(index),
            gpus: Vec::new(),
            start_ns,
            end_ns: Some(start_ns + 100),
            end_reason: Some("ok".into()),
            last_alive_ns: start_ns + 50,
            gone_ns: Some(start_ns + 110),
        };
        run.attempts = vec![task(2, 0, 100), task(3, 1, 300), task(1, 2, 500)];
        assert_eq!(kinds(&run), Vec::<String>::new());

        run.attempts[1].start_ns = 150;
        assert_eq!(kinds(&run), vec!["array-throttle-exceeded"]);

        run.attempts[1].start_ns = 300;
        run.attempts[2].array_task = Some(7);
        run.final_reads[0].jobs.pop();
        let k = kinds(&run);
        assert!(k.contains(&"array-task-unknown".to_string()), "{k:?}");
        assert!(k.contains(&"array-task-missing".to_string()), "{k:?}");
    }

    /// The state's clock from reads: a lower clock at a higher index, or two clocks at one
    /// index, are anomalies; equal and rising clocks are not.
    #[test]
    fn the_states_clock_never_goes_back_or_diverges() {
        let mut run = base();
        let at = |t: i64, index: u64, now: u64| Event {
            state_now_ms: Some(now),
            ..read(t, index, vec![job(1, "c0-1", "RUNNING")])
        };
        run.events.push(at(20, 6, 1_000));
        run.events.push(at(21, 6, 1_000));
        run.events.push(at(22, 8, 1_000));
        run.events.push(at(23, 9, 2_000));
        run.final_reads
            .push(read(30, 12, vec![job(1, "c0-1", "COMPLETED")]));
        assert_eq!(kinds(&run), Vec::<String>::new());
        run.events.push(at(24, 10, 1_500));
        assert_eq!(kinds(&run), vec!["clock-went-back"]);
        run.events.pop();
        run.events.push(at(24, 8, 1_200));
        assert_eq!(kinds(&run), vec!["divergent-clock"]);
    }

    /// A read asked to be linearizable, sent after a write's answer, must reflect the write's
    /// index; an ordinary read may lag (its own check is `min_index`).
    #[test]
    fn a_linearizable_read_older_than_an_acknowledged_write_is_caught() {
        let mut run = base(); // the submit was answered at t=10 with index 5
        let lin = |t: i64, op: u64, index: u64, kind: Kind| Event {
            info: Some(crate::workload::LINEARIZABLE.into()),
            kind: Some(kind),
            op,
            ..read(t, index, vec![job(1, "c0-1", "RUNNING")])
        };
        run.events.push(lin(5, 7, 0, Kind::Invoke));
        run.events.push(lin(12, 7, 4, Kind::Ok)); // invoked before the answer: may miss it
        run.events.push(lin(20, 8, 0, Kind::Invoke));
        run.events.push(lin(21, 8, 6, Kind::Ok));
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        assert_eq!(kinds(&run), Vec::<String>::new());
        run.events.push(lin(22, 9, 0, Kind::Invoke));
        run.events.push(lin(23, 9, 4, Kind::Ok));
        let k = kinds(&run);
        assert!(k.contains(&"stale-linearizable-read".to_string()), "{k:?}");
    }

    /// Two attempts on one node holding GPU 1 at once, and an attempt given another count
    /// than asked, are caught; one after the other they are not.
    #[test]
    fn gpu_double_booking_and_wrong_counts_are_caught() {
        let mut run = base();
        run.params.gpus_per_node = 2;
        run.events[0].gpus = Some(1);
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        let a = Attempt {
            name: "c0-1".into(),
            job_id: 1,
            node: "n1".into(),
            cpus: 1,
            pid: 1,
            restarts: Some(0),
            array_job_id: None,
            array_task: None,
            gpus: vec![1],
            start_ns: 100,
            end_ns: Some(200),
            end_reason: Some("ok".into()),
            last_alive_ns: 150,
            gone_ns: Some(210),
        };
        let later = Attempt {
            restarts: Some(1),
            pid: 2,
            start_ns: 300,
            end_ns: Some(400),
            ..a.clone()
        };
        run.attempts = vec![a.clone(), later.clone()];
        assert_eq!(kinds(&run), Vec::<String>::new());
        run.attempts[1].start_ns = 150;
        let k = kinds(&run);
        assert!(k.contains(&"gpu-oversubscribed".to_string()), "{k:?}");
        run.attempts = vec![Attempt {
            gpus: vec![0, 1],
            ..a
        }];
        assert_eq!(kinds(&run), vec!["gpu-count-wrong"]);
    }

    /// sacct's records: an acknowledged job missing from an accounting read at or above its
    /// index, or from the final one, and a record whose state differs from the final reads'.
    #[test]
    fn accounting_records_are_checked_against_acks_and_reads() {
        let mut run = base(); // job 1 acknowledged at index 5
        run.final_reads
            .push(read(30, 9, vec![job(1, "c0-1", "COMPLETED")]));
        let acct = |t: i64, index: u64, jobs: Vec<JobObs>| Event {
            f: Some(F::Acct),
            asked: vec![1],
            ..read(t, index, jobs)
        };
        run.events
            .push(acct(20, 6, vec![job(1, "c0-1", "RUNNING")]));
        run.final_records
            .push(acct(31, 9, vec![job(1, "c0-1", "COMPLETED")]));
        assert_eq!(kinds(&run), Vec::<String>::new());

        run.events.push(acct(21, 7, vec![]));
        assert_eq!(kinds(&run), vec!["acct-missed-acked-job"]);
        run.events.pop();
        run.final_records[0].jobs[0].state = "FAILED".into();
        assert_eq!(kinds(&run), vec!["acct-state-differs"]);
        run.final_records[0].jobs.clear();
        assert_eq!(kinds(&run), vec!["acct-lost-job"]);
    }
}
