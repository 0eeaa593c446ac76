//! The history: every operation's invocation and completion, every fault, every change of
//! leadership, with times in nanoseconds since the test started (wall clock, so that the job
//! markers written by the scripts line up with it).
//!
//! Completion kinds follow Jepsen: `ok` (it happened), `fail` (it definitely did not happen),
//! `info` (unknown: it may have happened, now or later; never assumed absent).

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum F {
    Submit,
    Cancel,
    /// `scontrol hold` / `release` / `requeue` (`Ctl.Control`), one job each.
    Hold,
    Release,
    Requeue,
    Read,
    /// `sacct`: the accounting records (`Ctl.ListRecords`) of some jobs, or of all.
    Acct,
    /// A fault starts (`invoke`) or is healed (`ok`); `process` is "nemesis".
    Fault,
    /// A replica's answer to Ping changed (the monitor's view of leadership).
    Role,
    /// A liveness probe after healing.
    Probe,
}

/// One job as a read saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobObs {
    pub id: u64,
    pub name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nodes: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub mem_mb: u64,
    /// Unix seconds; 0 = not yet.
    #[serde(default)]
    pub end_time: i64,
    /// The cluster's clock when read (unix seconds).
    #[serde(default)]
    pub now: i64,
    /// Times requeued (`Restarts=`): each requeue starts a new run of the job.
    #[serde(default)]
    pub restarts: u32,
    /// An array's records: the array's id (0: not an array) and this record's task index
    /// (None for the record of tasks not yet started).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub array_job_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_task: Option<u32>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Event {
    pub t_ns: i64,
    pub process: String,
    pub kind: Option<Kind>,
    pub f: Option<F>,
    /// Links an invocation to its completion (unique per process).
    pub op: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_index: Option<u64>,
    /// Job ids a read asked for (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobObs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free text: a fault's description, a submit's resources, a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// For a submit: `--array` as asked (`0-3%2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// For a submit: GPUs per node asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// For a read: the applied state's clock (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_now_ms: Option<u64>,
    /// For a submit: CPUs and memory asked for; for a role event: the term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
}

/// Wall-clock nanoseconds since the Unix epoch.
pub fn epoch_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The shared, append-only history of a run.
#[derive(Clone)]
pub struct Recorder {
    pub start_epoch_ns: i64,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start_epoch_ns: epoch_ns(),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn now(&self) -> i64 {
        epoch_ns() - self.start_epoch_ns
    }

    /// Appends `e`, stamped now; returns the stamp.
    pub fn record(&self, mut e: Event) -> i64 {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        e.t_ns = self.now();
        let t = e.t_ns;
        events.push(e);
        t
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}
