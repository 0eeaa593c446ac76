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
            ids_by_name.entry(&j.name).or_default().insert(j.id);
            names_by_id.entry(j.id).or_default().insert(&j.name);
        }
    }
    let final_epoch_s = (run.start_epoch_ns
        + run
            .final_reads
            .iter()
            .map(|e| e.t_ns)
            .max()
            .unwrap_or(run.healed_ns))
        / 1_000_000_000;
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
            let bad = if a.index == b.index {
                (a.job.state != b.job.state).then_some("divergent-read")
            } else if rank(&b.job.state) < rank(&a.job.state)
                || (rank(&a.job.state) == 3 && a.job.state != b.job.state)
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
                            "job {id}: {} at index {} (replica {}, {}, t={:.3}s) then {} at index {} (replica {}, {}, t={:.3}s)",
                            a.job.state, a.index, a.replica, a.process, a.t_ns as f64 / 1e9,
                            b.job.state, b.index, b.replica, b.process, b.t_ns as f64 / 1e9
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
            if !j.nodes.is_empty() && j.nodes != a.node {
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
        let detail: Vec<String> = atts
            .iter()
            .map(|a| {
                format!(
                    "{} pid {} {:.3}s..{:.3}s",
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
        } else {
            add(
                "ran-more-than-once",
                format!(
                    "job {id} ran {} times (drover has no requeue): {detail:?}",
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
    for e in run
        .events
        .iter()
        .filter(|e| e.f == Some(F::Cancel) && e.kind == Some(Kind::Ok) && e.error.is_none())
    {
        let Some(id) = e.job_id else { continue };
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
}
