//! The report: `valid`, operation counts by function and outcome, anomalies grouped by kind,
//! and a timeline (HTML with an inline SVG) of operations, faults and leadership.

use crate::checker::{fault_windows, Anomaly, RunData};
use crate::history::{Kind, F};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Serialize)]
pub struct Summary {
    pub valid: bool,
    pub harness_error: Option<String>,
    /// "submit ok" → count, …
    pub ops: BTreeMap<String, usize>,
    pub faults: usize,
    pub attempts: usize,
    pub anomaly_counts: BTreeMap<String, usize>,
    pub anomalies: Vec<Anomaly>,
}

pub fn summarize(run: &RunData, anomalies: &[Anomaly]) -> Summary {
    let mut ops = BTreeMap::new();
    for e in &run.events {
        let (Some(f), Some(k)) = (e.f, e.kind) else {
            continue;
        };
        if matches!(f, F::Role | F::Fault) || k == Kind::Invoke {
            continue;
        }
        // An answer that refused the change (Slurm's error text: a hold of a running job, a
        // cancel of a finished one) is an `ok` that changed nothing: counted apart.
        let refused = k == Kind::Ok && e.error.is_some() && f != F::Read;
        let name = format!(
            "{} {}{}",
            serde_json::to_value(f)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?"),
            serde_json::to_value(k)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?"),
            if refused { " (refused)" } else { "" }
        );
        *ops.entry(name).or_insert(0) += 1;
    }
    let mut anomaly_counts = BTreeMap::new();
    for a in anomalies {
        *anomaly_counts.entry(a.kind.clone()).or_insert(0) += 1;
    }
    Summary {
        valid: anomalies.is_empty() && run.harness_error.is_none(),
        harness_error: run.harness_error.clone(),
        ops,
        faults: fault_windows(&run.events, run.healed_ns).len(),
        attempts: run.attempts.len(),
        anomaly_counts,
        anomalies: anomalies.to_vec(),
    }
}

/// The human-readable report (also printed at the end of a run).
pub fn text(run: &RunData, s: &Summary) -> String {
    let mut t = String::new();
    let p = &run.params;
    let _ = writeln!(
        t,
        "drover-jepsen: {} replicas, {} nodes x {} CPUs, {} clients, nemeses [{}], {} s, seed {}",
        p.replicas,
        p.nodes,
        p.cpus_per_node,
        p.clients,
        p.nemeses.join(","),
        p.time_limit_s,
        p.seed
    );
    let _ = writeln!(t, "operations:");
    for (k, v) in &s.ops {
        let _ = writeln!(t, "  {k:<14} {v}");
    }
    let _ = writeln!(
        t,
        "faults: {}   submits with a dependency: {}   arrays: {}   job attempts (markers): {} ({} of them runs after a requeue, {} array tasks)",
        s.faults,
        run.events
            .iter()
            .filter(|e| e.f == Some(F::Submit)
                && e.kind == Some(Kind::Invoke)
                && e.info.as_deref().is_some_and(|d| d.starts_with("after")))
            .count(),
        run.events
            .iter()
            .filter(|e| e.f == Some(F::Submit) && e.kind == Some(Kind::Invoke) && e.array.is_some())
            .count(),
        s.attempts,
        run.attempts
            .iter()
            .filter(|a| a.restarts.unwrap_or(0) > 0)
            .count(),
        run.attempts.iter().filter(|a| a.array_job_id.is_some()).count()
    );
    let l = &run.liveness;
    let _ = writeln!(
        t,
        "liveness: {} (bound {} s); probe job {:?}: {}",
        l.settled_after_s
            .map(|x| format!("every job terminal {x:.1} s after healing"))
            .unwrap_or_else(|| format!("{} jobs stuck", l.stuck.len())),
        l.bound_s,
        l.probe_job,
        l.probe_error.clone().unwrap_or_else(|| "completed".into())
    );
    if let Some(h) = &s.harness_error {
        let _ = writeln!(t, "HARNESS ERROR (no verdict on drover): {h}");
    }
    if !s.anomaly_counts.is_empty() {
        let _ = writeln!(t, "anomalies:");
        for (kind, n) in &s.anomaly_counts {
            let _ = writeln!(t, "  {kind}: {n}");
            for a in s.anomalies.iter().filter(|a| &a.kind == kind).take(5) {
                let _ = writeln!(t, "    - {}", a.msg);
            }
        }
    }
    let _ = writeln!(t, "valid: {}", s.valid);
    t
}

fn color(kind: Option<Kind>) -> &'static str {
    match kind {
        Some(Kind::Ok) => "#3a3",
        Some(Kind::Fail) => "#d33",
        _ => "#e90",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A timeline: one lane per client (submit/cancel/read bars coloured by outcome), a fault lane,
/// one lane per replica (leader = dark, follower = light, unreachable = empty).
pub fn timeline(run: &RunData, s: &Summary) -> String {
    let end_ns = run
        .events
        .iter()
        .map(|e| e.t_ns)
        .chain(run.final_reads.iter().map(|e| e.t_ns))
        .max()
        .unwrap_or(1)
        .max(1);
    let width = 1400.0;
    let left = 90.0;
    let x = |t: i64| left + (t.max(0) as f64 / end_ns as f64) * (width - left - 10.0);
    let mut processes: Vec<String> = run
        .events
        .iter()
        .filter(|e| e.process.starts_with('c'))
        .map(|e| e.process.clone())
        .collect();
    processes.sort_by_key(|p| p[1..].parse::<u32>().unwrap_or(0));
    processes.dedup();
    let replicas: Vec<u64> = {
        let mut r: Vec<u64> = run
            .events
            .iter()
            .filter(|e| e.f == Some(F::Role))
            .filter_map(|e| e.replica)
            .collect();
        r.sort();
        r.dedup();
        r
    };
    let lane = 18.0;
    let lanes = processes.len() + 1 + replicas.len();
    let height = 30.0 + lane * lanes as f64 + 20.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
    );
    // Seconds axis.
    let secs = end_ns / 1_000_000_000;
    let step = (secs / 20).max(1);
    for sec in (0..=secs).step_by(step as usize) {
        let xx = x(sec * 1_000_000_000);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" y1="20" x2="{xx:.1}" y2="{height}" stroke="#eee"/><text x="{xx:.1}" y="14">{sec}s</text>"##
        );
    }
    let y_of = |i: usize| 24.0 + lane * i as f64;
    // Fault windows, shaded over every lane.
    for (s0, e0, info) in fault_windows(&run.events, run.healed_ns) {
        let (x0, x1) = (x(s0), x(e0).max(x(s0) + 1.0));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="20" width="{:.1}" height="{}" fill="#f66" opacity="0.12"><title>{}</title></rect>"##,
            x1 - x0,
            height - 20.0,
            esc(&info)
        );
    }
    let mut open: BTreeMap<(String, u64), (i64, Option<F>)> = BTreeMap::new();
    for (i, p) in processes.iter().enumerate() {
        let _ = write!(svg, r#"<text x="2" y="{:.1}">{p}</text>"#, y_of(i) + 12.0);
    }
    let index: BTreeMap<&str, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    for e in &run.events {
        let Some(&i) = index.get(e.process.as_str()) else {
            continue;
        };
        if e.kind == Some(Kind::Invoke) {
            open.insert((e.process.clone(), e.op), (e.t_ns, e.f));
            continue;
        }
        let Some((t0, f)) = open.remove(&(e.process.clone(), e.op)) else {
            continue;
        };
        let (h, dy) = match f {
            Some(F::Submit) => (14.0, 0.0),
            Some(F::Cancel) => (10.0, 2.0),
            _ => (5.0, 5.0),
        };
        let (x0, x1) = (x(t0), x(e.t_ns).max(x(t0) + 1.0));
        let title = format!(
            "{} {:?} {:?} {} job={:?} idx={:?} {}",
            e.process,
            f,
            e.kind,
            e.name.clone().unwrap_or_default(),
            e.job_id,
            e.applied_index,
            e.error.clone().unwrap_or_default()
        );
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{h}" fill="{}"><title>{}</title></rect>"#,
            y_of(i) + dy,
            x1 - x0,
            color(e.kind),
            esc(&title)
        );
    }
    let fy = y_of(processes.len());
    let _ = write!(svg, r#"<text x="2" y="{:.1}">nemesis</text>"#, fy + 12.0);
    for (s0, e0, info) in fault_windows(&run.events, run.healed_ns) {
        let (x0, x1) = (x(s0), x(e0).max(x(s0) + 1.0));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{fy:.1}" width="{:.1}" height="14" fill="#c33"><title>{}</title></rect>"##,
            x1 - x0,
            esc(&info)
        );
    }
    for (k, r) in replicas.iter().enumerate() {
        let y = y_of(processes.len() + 1 + k);
        let _ = write!(svg, r#"<text x="2" y="{:.1}">ctld-{r}</text>"#, y + 12.0);
        let evs: Vec<_> = run
            .events
            .iter()
            .filter(|e| e.f == Some(F::Role) && e.replica == Some(*r))
            .collect();
        for (j, e) in evs.iter().enumerate() {
            let t1 = evs.get(j + 1).map(|n| n.t_ns).unwrap_or(end_ns);
            let fill = match (e.kind, e.leader) {
                (Some(Kind::Ok), Some(true)) => "#225",
                (Some(Kind::Ok), _) => "#99b",
                _ => continue,
            };
            let (x0, x1) = (x(e.t_ns), x(t1).max(x(e.t_ns) + 1.0));
            let _ = write!(
                svg,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="14" fill="{fill}"><title>ctld-{r} term {:?} leader {:?}</title></rect>"#,
                x1 - x0,
                e.term,
                e.leader
            );
        }
    }
    svg.push_str("</svg>");
    let report = esc(&text(run, s));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>drover-jepsen</title></head><body>\
         <h2>drover-jepsen: valid = {}</h2>\
         <p>Lanes: clients (tall = submit, middle = cancel, thin = read; green ok, red fail, orange info), \
         nemesis (red = fault held; shaded over all lanes), replicas (dark = leader, light = follower, blank = unreachable). \
         Hover for details.</p>{svg}<pre>{report}</pre></body></html>",
        s.valid
    )
}
