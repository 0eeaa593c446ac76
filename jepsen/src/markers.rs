//! Execution evidence: each job attempt's script writes `<job>.<pid>.start` (name, job id, node,
//! CPUs, pid, start time, `SLURM_RESTART_COUNT`: which run of the job) and, when it ends or gets
//! SIGTERM, `<job>.<pid>.end`. A SIGKILLed script writes no end marker, so a watcher polls every open attempt's pid: the last time it
//! was seen alive is a lower bound of its end, which is all the checks need (they only report
//! overlaps that certainly happened).

use crate::cluster::alive;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub name: String,
    pub job_id: u64,
    pub node: String,
    pub cpus: u32,
    pub pid: i32,
    /// `SLURM_RESTART_COUNT`: which run of the job this attempt is (None: an old marker).
    #[serde(default)]
    pub restarts: Option<u32>,
    /// For an array task: the array's id (`SLURM_ARRAY_JOB_ID`) and the task's index.
    #[serde(default)]
    pub array_job_id: Option<u64>,
    #[serde(default)]
    pub array_task: Option<u32>,
    /// `SLURM_JOB_GPUS`: the node's GPU indices the attempt was given (empty: none).
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// Nanoseconds since the test started (converted from the script's wall clock).
    pub start_ns: i64,
    /// From the end marker, when there is one.
    pub end_ns: Option<i64>,
    /// "ok" (the script finished) or "term" (it got SIGTERM); None: killed, or still running.
    pub end_reason: Option<String>,
    /// The last time the watcher saw the process alive.
    pub last_alive_ns: i64,
    /// The first time the watcher saw it gone (an upper bound of its end).
    pub gone_ns: Option<i64>,
}

impl Attempt {
    /// A time before which the attempt certainly still ran.
    pub fn end_lower_bound(&self) -> i64 {
        self.end_ns.unwrap_or(self.last_alive_ns).max(self.start_ns)
    }
}

fn parse_start(text: &str, start_epoch_ns: i64) -> Option<Attempt> {
    let w: Vec<&str> = text.split_whitespace().collect();
    if w.len() < 6 {
        return None;
    }
    let start_ns = w[5].parse::<i64>().ok()? - start_epoch_ns;
    Some(Attempt {
        name: w[0].to_string(),
        job_id: w[1].parse().ok()?,
        node: w[2].to_string(),
        cpus: w[3].parse().ok()?,
        pid: w[4].parse().ok()?,
        restarts: w.get(6).and_then(|r| r.parse().ok()),
        array_job_id: w
            .get(7)
            .and_then(|r| r.parse().ok())
            .filter(|&id: &u64| id != 0),
        array_task: w.get(8).and_then(|r| r.parse().ok()),
        gpus: w
            .get(9)
            .map(|g| g.split(',').filter_map(|i| i.parse().ok()).collect())
            .unwrap_or_default(),
        start_ns,
        end_ns: None,
        end_reason: None,
        last_alive_ns: start_ns,
        gone_ns: None,
    })
}

fn parse_end(text: &str, start_epoch_ns: i64) -> Option<(i64, String)> {
    let mut w = text.split_whitespace();
    let t = w.next()?.parse::<i64>().ok()? - start_epoch_ns;
    Some((t, w.next().unwrap_or("").to_string()))
}

#[derive(Clone)]
pub struct Watcher {
    pub dir: PathBuf,
    pub start_epoch_ns: i64,
    pub attempts: Arc<Mutex<BTreeMap<String, Attempt>>>,
}

impl Watcher {
    pub fn new(dir: &Path, start_epoch_ns: i64) -> Watcher {
        Watcher {
            dir: dir.to_path_buf(),
            start_epoch_ns,
            attempts: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// One pass: new start markers, new end markers, liveness of the open attempts.
    pub fn scan(&self) {
        let now = crate::history::epoch_ns() - self.start_epoch_ns;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(key) = name.strip_suffix(".start") else {
                    continue;
                };
                if attempts.contains_key(key) {
                    continue;
                }
                if let Some(a) = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| parse_start(&t, self.start_epoch_ns))
                {
                    attempts.insert(key.to_string(), a);
                }
            }
        }
        for (key, a) in attempts.iter_mut() {
            if a.end_ns.is_none() {
                if let Some((t, why)) = std::fs::read_to_string(self.dir.join(format!("{key}.end")))
                    .ok()
                    .and_then(|t| parse_end(&t, self.start_epoch_ns))
                {
                    a.end_ns = Some(t);
                    a.end_reason = Some(why);
                }
            }
            if a.gone_ns.is_none() {
                if alive(a.pid) {
                    a.last_alive_ns = a.last_alive_ns.max(now);
                } else {
                    a.gone_ns = Some(now);
                }
            }
        }
    }

    pub async fn run(self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let w = self.clone();
            let _ = tokio::task::spawn_blocking(move || w.scan()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.scan();
    }

    pub fn all(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers() {
        let a = parse_start("c1-3 17 n2 2 4242 1000000500\n", 1_000_000_000).unwrap();
        assert_eq!(
            (a.job_id, a.node.as_str(), a.cpus, a.pid, a.start_ns),
            (17, "n2", 2, 4242, 500)
        );
        assert_eq!(
            parse_end("1000000900 term\n", 1_000_000_000),
            Some((900, "term".into()))
        );
        assert_eq!(a.restarts, None);
        let a = parse_start("c1-3 17 n2 2 4242 1000000500 2\n", 1_000_000_000).unwrap();
        assert_eq!(a.restarts, Some(2));
        assert!(parse_start("c1-3 17", 0).is_none());
    }
}
