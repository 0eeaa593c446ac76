//! `drover sim`: replay an SWF trace through the real planner in simulated time and compare
//! policies. The simulation itself is pure (`drover_scheduler::sim`); this file reads the trace,
//! prints the table or JSON and draws the optional SVG.

use anyhow::{anyhow, bail, Context, Result};
use drover_scheduler::sim::{parse_swf, simulate, Policy, SimReport};
use std::fmt::Write as _;
use std::path::Path;

const USAGE: &str = "usage: drover sim --trace FILE.swf[.gz] [--policy fcfs|easy|drover|all] \
[--nodes N --cpus-per-node C] [--max-jobs N] [--json] [--plot FILE.svg]";

pub fn run(args: &[String]) -> Result<()> {
    let mut trace = None;
    let mut policy = "all".to_string();
    let mut nodes: Option<u32> = None;
    let mut cpus: Option<u32> = None;
    let mut max_jobs: Option<usize> = None;
    let mut json = false;
    let mut plot = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (k, inline) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if k == "--json" {
            json = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| anyhow!("{k} needs a value\n{USAGE}"))
        };
        let number = |v: String| -> Result<u64> {
            v.parse()
                .map_err(|_| anyhow!("{k} wants a number, got `{v}`"))
        };
        match k {
            "--trace" => trace = Some(value()?),
            "--policy" => policy = value()?,
            "--nodes" => nodes = Some(number(value()?)? as u32),
            "--cpus-per-node" => cpus = Some(number(value()?)? as u32),
            "--max-jobs" => max_jobs = Some(number(value()?)? as usize),
            "--plot" => plot = Some(value()?),
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let trace = trace.ok_or_else(|| anyhow!("--trace FILE is required\n{USAGE}"))?;
    let policies: Vec<Policy> = match policy.as_str() {
        "all" => vec![Policy::Fcfs, Policy::Easy, Policy::Drover],
        "fcfs" => vec![Policy::Fcfs],
        "easy" => vec![Policy::Easy],
        "drover" => vec![Policy::Drover],
        other => bail!("unknown policy `{other}` (fcfs, easy, drover, all)"),
    };
    let text = read_trace(Path::new(&trace))?;
    let mut swf = parse_swf(&text).map_err(|e| anyhow!("{trace}: {e}"))?;
    if let Some(m) = max_jobs {
        swf.jobs.truncate(m);
    }
    let nodes = nodes.or(swf.max_nodes).unwrap_or(128).max(1);
    let cpus = cpus
        .or_else(|| swf.max_procs.map(|p| p.div_ceil(nodes)))
        .unwrap_or(16)
        .max(1);
    let reports: Vec<SimReport> = policies
        .iter()
        .map(|&p| simulate(&swf, nodes, cpus, p))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "trace {trace}: {} jobs ({} skipped), {nodes} nodes × {cpus} CPUs",
            reports.first().map_or(0, |r| r.jobs),
            reports.first().map_or(0, |r| r.skipped)
        );
        println!(
            "{:<7} {:>11} {:>12} {:>12} {:>12} {:>10} {:>12} {:>8}",
            "policy",
            "utilization",
            "mean wait",
            "p95 wait",
            "max wait",
            "mean bsld",
            "makespan",
            "passes"
        );
        for r in &reports {
            println!(
                "{:<7} {:>10.1}% {:>12} {:>12} {:>12} {:>10.2} {:>12} {:>8}",
                r.policy,
                r.utilization * 100.0,
                duration(r.mean_wait_s as u64),
                duration(r.p95_wait_s as u64),
                duration(r.max_wait_s),
                r.mean_bounded_slowdown,
                duration(r.makespan_s),
                r.passes
            );
        }
    }
    if let Some(path) = plot {
        std::fs::write(&path, svg(&reports, u64::from(nodes) * u64::from(cpus)))
            .with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

fn read_trace(path: &Path) -> Result<String> {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .with_context(|| format!("running gzip -dc {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "gzip -dc {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).map_err(|_| anyhow!("{}: not text", path.display()))
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Slurm's `D-HH:MM:SS`.
fn duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Utilization (top) and queue length (bottom) over time, one line per policy.
fn svg(reports: &[SimReport], total_cpus: u64) -> String {
    let (w, h, pad) = (1200.0, 300.0, 40.0);
    let end = reports
        .iter()
        .flat_map(|r| r.samples.last().map(|s| s.0))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_queue = reports
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.2))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let colors = ["#888888", "#1f77b4", "#d62728"];
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
        2.0 * h + 3.0 * pad
    );
    for (panel, title) in ["utilization (%)", "queued jobs"].iter().enumerate() {
        let top = pad + panel as f64 * (h + pad);
        let _ = write!(
            out,
            r#"<rect x="{pad}" y="{top}" width="{}" height="{h}" fill="none" stroke="black"/><text x="{pad}" y="{}">{title} — max {}</text>"#,
            w - 2.0 * pad,
            top - 5.0,
            if panel == 0 {
                "100".to_string()
            } else {
                (max_queue as u64).to_string()
            }
        );
        for (k, r) in reports.iter().enumerate() {
            let step = (r.samples.len() / 3000).max(1);
            let points: Vec<String> = r
                .samples
                .iter()
                .step_by(step)
                .map(|&(t, busy, queued)| {
                    let x = pad + (w - 2.0 * pad) * t as f64 / end;
                    let v = if panel == 0 {
                        busy as f64 / total_cpus.max(1) as f64
                    } else {
                        queued as f64 / max_queue
                    };
                    format!("{x:.1},{:.1}", top + h - h * v.min(1.0))
                })
                .collect();
            let color = colors[k % colors.len()];
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="0.8" points="{}"/>"#,
                points.join(" ")
            );
            if panel == 0 {
                let _ = write!(
                    out,
                    r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
                    w - pad - 60.0,
                    top + 15.0 + 15.0 * k as f64,
                    r.policy
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
