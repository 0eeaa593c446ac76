//! The cluster configuration file (`drover.toml`), shared by replicas, node daemons and commands.
//!
//! ```toml
//! cluster_name = "drover"
//! node_timeout_s = 300          # Slurm's SlurmdTimeout
//! kill_wait_s = 30              # Slurm's KillWait: SIGTERM, then SIGKILL this much later
//! job_record_retention_s = 2592000   # sacct's records are purged this long after a job ends
//!
//! [[controller]]
//! id = 1
//! addr = "10.0.0.1:6817"
//! data_dir = "/var/lib/drover/ctld"     # optional
//!
//! [[node]]
//! name = "n1"
//! cpus = 64                             # optional: the OS's count otherwise
//! memory_mb = 257000                    # optional: /proc/meminfo otherwise
//! gpus = 2                              # optional: pretend GPUs (tests); NVML's otherwise
//!
//! [[partition]]
//! name = "debug"
//! nodes = "ALL"                         # or a host list: "n[1-16]"
//! default = true
//! max_time = "UNLIMITED"                # Slurm time syntax
//! oversubscribe = "NO"                  # or YES[:N], FORCE[:N], EXCLUSIVE (slurm.conf's OverSubscribe)
//! ```

use drover_scheduler::priority::PriorityWeights;
use drover_scheduler::{
    hostlist, time, NodeSet, OverSubscribe, Partition, PartitionState, Qos, SchedConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    #[serde(default = "default_node_timeout")]
    pub node_timeout_s: u64,
    /// Slurm's KillWait: between SIGTERM and SIGKILL of a job that is stopped or timed out.
    #[serde(default = "default_kill_wait")]
    pub kill_wait_s: u64,
    /// How long sacct's records are kept after a job ends (slurmdbd's PurgeJobAfter); 0 keeps
    /// them for ever.
    #[serde(default = "default_record_retention")]
    pub job_record_retention_s: u64,
    /// Slurm's AccountingStoreFlags: `job_script` and/or `job_env` make sacct's records keep
    /// each batch job's script (`sacct -B`) and environment (`sacct --env-vars`).
    #[serde(default)]
    pub accounting_store_flags: String,
    /// Raft timing: the leader's heartbeat, and the election timeout range. Failover takes
    /// about 1.5-2x the maximum; keep the minimum well above the heartbeat.
    #[serde(default = "default_heartbeat")]
    pub raft_heartbeat_ms: u64,
    #[serde(default = "default_election_min")]
    pub raft_election_min_ms: u64,
    #[serde(default = "default_election_max")]
    pub raft_election_max_ms: u64,
    #[serde(default, rename = "controller")]
    pub controllers: Vec<ControllerEntry>,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeEntry>,
    #[serde(default, rename = "partition")]
    pub partitions: Vec<PartitionEntry>,
    /// QOS definitions (sacctmgr's `add qos`); `normal` (priority 0) exists without one.
    #[serde(default, rename = "qos")]
    pub qos: Vec<QosEntry>,
    /// Slurm's SchedulerType/SchedulerParameters and PriorityWeight* (`[scheduler]`).
    #[serde(default)]
    pub scheduler: SchedulerEntry,
}

/// `[scheduler]`: the planner's settings, in slurm.conf's terms (reference/slurm.md §4).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerEntry {
    /// `sched/backfill` (true) or `sched/builtin` (false).
    pub backfill: bool,
    /// `bf_window`, minutes.
    pub bf_window_min: u64,
    /// `bf_resolution`, seconds.
    pub bf_resolution_s: u64,
    /// `bf_max_job_test`; 0: the whole queue.
    pub bf_max_job_test: usize,
    /// `bf_job_part_count_reserve`; 0: every job gets a reservation.
    pub bf_job_part_count_reserve: usize,
    pub priority_weight_age: u32,
    pub priority_weight_fairshare: u32,
    pub priority_weight_job_size: u32,
    pub priority_weight_partition: u32,
    pub priority_weight_qos: u32,
    /// `PriorityMaxAge`, Slurm's time syntax (`7-0`).
    pub priority_max_age: String,
    /// `SchedulerParameters=sched_min_interval=#`: microseconds between the starts of two
    /// scheduling passes, at least (0: as soon as the last pass allows; see `pass_gap`).
    pub sched_min_interval_us: u64,
}

impl Default for SchedulerEntry {
    fn default() -> SchedulerEntry {
        let d = SchedConfig::default();
        SchedulerEntry {
            backfill: d.backfill,
            bf_window_min: d.bf_window_s / 60,
            bf_resolution_s: d.bf_resolution_s,
            bf_max_job_test: d.bf_max_job_test,
            bf_job_part_count_reserve: d.bf_job_part_count_reserve,
            priority_weight_age: d.weights.age,
            priority_weight_fairshare: d.weights.fairshare,
            priority_weight_job_size: d.weights.job_size,
            priority_weight_partition: d.weights.partition,
            priority_weight_qos: d.weights.qos,
            priority_max_age: "7-0".to_string(),
            sched_min_interval_us: 0,
        }
    }
}

impl SchedulerEntry {
    /// The planner's configuration; a bad `priority_max_age` names itself.
    pub fn sched_config(&self) -> Result<SchedConfig, String> {
        let max_age_min = time::parse_time_limit(&self.priority_max_age)
            .map_err(|e| format!("[scheduler] priority_max_age: {e}"))?
            .ok_or("[scheduler] priority_max_age: a limit is needed, not UNLIMITED")?;
        if self.bf_resolution_s == 0 || self.bf_window_min == 0 {
            return Err("[scheduler] bf_window_min and bf_resolution_s must be at least 1".into());
        }
        let d = SchedConfig::default();
        Ok(SchedConfig {
            backfill: self.backfill,
            bf_window_s: self.bf_window_min * 60,
            bf_resolution_s: self.bf_resolution_s,
            bf_max_job_test: self.bf_max_job_test,
            bf_job_part_count_reserve: self.bf_job_part_count_reserve,
            weights: PriorityWeights {
                age: self.priority_weight_age,
                fairshare: self.priority_weight_fairshare,
                job_size: self.priority_weight_job_size,
                partition: self.priority_weight_partition,
                qos: self.priority_weight_qos,
                max_age_s: max_age_min * 60,
                ..d.weights
            },
        })
    }
}

fn default_cluster_name() -> String {
    "drover".to_string()
}

fn default_node_timeout() -> u64 {
    300
}

pub fn default_kill_wait() -> u64 {
    30
}

pub fn default_record_retention() -> u64 {
    drover_controller::DEFAULT_RECORD_RETENTION_S
}

fn default_heartbeat() -> u64 {
    50
}

fn default_election_min() -> u64 {
    200
}

fn default_election_max() -> u64 {
    400
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerEntry {
    pub id: u64,
    pub addr: String,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub name: String,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Where the node's job directories go (each job's script, supervisor socket and status,
    /// for as long as the job runs); absent: a directory of the daemon's own on /dev/shm when
    /// that is a tmpfs allowing exec, else the state dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_dir: Option<PathBuf>,
    /// Pretend GPUs (a fake probe, for tests); absent: what NVML finds (none without a driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Where the node daemon serves srun's tasks (`10.0.0.5:6818`, port 0: a free port), as
    /// the commands reach it; absent: 127.0.0.1 on a free port (a local cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionEntry {
    pub name: String,
    #[serde(default = "all_nodes")]
    pub nodes: String,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub max_time: Option<String>,
    #[serde(default)]
    pub default_time: Option<String>,
    #[serde(default)]
    pub max_nodes: Option<u32>,
    #[serde(default)]
    pub state: Option<String>,
    /// Slurm's `OverSubscribe=`: `NO` (default), `YES[:N]`, `FORCE[:N]`, `EXCLUSIVE`.
    #[serde(default)]
    pub oversubscribe: Option<String>,
}

/// `[[qos]]`: a QOS as `sacctmgr add qos NAME Priority= MaxWall= MaxJobsPerUser=` makes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosEntry {
    pub name: String,
    #[serde(default)]
    pub priority: u32,
    /// Slurm time syntax (`2:00:00`, `1-0`).
    #[serde(default)]
    pub max_wall: Option<String>,
    #[serde(default)]
    pub max_jobs_per_user: Option<u32>,
}

fn all_nodes() -> String {
    "ALL".to_string()
}

impl ClusterConfig {
    /// The default Raft timing: (heartbeat, election min, election max) in ms.
    pub fn default_timing() -> (u64, u64, u64) {
        (
            default_heartbeat(),
            default_election_min(),
            default_election_max(),
        )
    }

    pub fn load(path: &Path) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg: ClusterConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.controllers.len(), 1 | 3 | 5) {
            return Err(format!(
                "a cluster has 1, 3 or 5 controllers, this one lists {}",
                self.controllers.len()
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for c in &self.controllers {
            if c.id == 0 || !ids.insert(c.id) {
                return Err(format!(
                    "controller ids must be unique and non-zero (id {})",
                    c.id
                ));
            }
        }
        if self.raft_heartbeat_ms == 0
            || self.raft_election_min_ms <= self.raft_heartbeat_ms
            || self.raft_election_max_ms <= self.raft_election_min_ms
        {
            return Err(format!(
                "raft timing must satisfy 0 < raft_heartbeat_ms < raft_election_min_ms < raft_election_max_ms (got {} / {} / {})",
                self.raft_heartbeat_ms, self.raft_election_min_ms, self.raft_election_max_ms
            ));
        }
        self.partitions()?;
        self.qos()?;
        Ok(())
    }

    /// The QOS table (empty: only the implied `normal`).
    pub fn qos(&self) -> Result<Vec<Qos>, String> {
        let mut out: Vec<Qos> = Vec::new();
        for q in &self.qos {
            if q.name.is_empty() {
                return Err("a [[qos]] needs a name".to_string());
            }
            if out.iter().any(|o| o.name == q.name) {
                return Err(format!("qos {} is defined twice", q.name));
            }
            let max_wall_min = match &q.max_wall {
                None => None,
                Some(s) => time::parse_time_limit(s).map_err(|e| format!("qos {}: {e}", q.name))?,
            };
            out.push(Qos {
                name: q.name.clone(),
                priority: q.priority,
                max_wall_min,
                max_jobs_per_user: q.max_jobs_per_user,
            });
        }
        Ok(out)
    }

    pub fn members(&self) -> BTreeMap<u64, String> {
        self.controllers
            .iter()
            .map(|c| (c.id, c.addr.clone()))
            .collect()
    }

    pub fn controller_addrs(&self) -> Vec<String> {
        self.controllers.iter().map(|c| c.addr.clone()).collect()
    }

    /// The partition table; a config without partitions gets `debug` with every node.
    pub fn partitions(&self) -> Result<Vec<Partition>, String> {
        if self.partitions.is_empty() {
            return Ok(vec![Partition::default_debug()]);
        }
        let mut out = Vec::new();
        for p in &self.partitions {
            let nodes = if p.nodes.eq_ignore_ascii_case("ALL") {
                NodeSet::All
            } else {
                NodeSet::Names(
                    hostlist::expand(&p.nodes).map_err(|e| format!("partition {}: {e}", p.name))?,
                )
            };
            let limit = |v: &Option<String>| -> Result<Option<u64>, String> {
                match v {
                    None => Ok(None),
                    Some(s) => {
                        time::parse_time_limit(s).map_err(|e| format!("partition {}: {e}", p.name))
                    }
                }
            };
            let state = match p.state.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("UP") => PartitionState::Up,
                Some("DOWN") => PartitionState::Down,
                Some("DRAIN") => PartitionState::Drain,
                Some("INACTIVE") => PartitionState::Inactive,
                Some(other) => {
                    return Err(format!(
                        "partition {}: unknown state {other} (UP, DOWN, DRAIN, INACTIVE)",
                        p.name
                    ))
                }
            };
            let oversubscribe = match p.oversubscribe.as_deref() {
                None => OverSubscribe::No,
                Some(o) => {
                    OverSubscribe::parse(o).map_err(|e| format!("partition {}: {e}", p.name))?
                }
            };
            out.push(Partition {
                name: p.name.clone(),
                nodes,
                is_default: p.default,
                state,
                max_time_min: limit(&p.max_time)?,
                default_time_min: limit(&p.default_time)?,
                max_nodes: p.max_nodes,
                priority_tier: 1,
                priority_job_factor: 1,
                oversubscribe,
            });
        }
        for (i, p) in out.iter().enumerate() {
            if out[..i].iter().any(|q| q.name == p.name) {
                return Err(format!(
                    "partition {} is defined twice: give each [[partitions]] its own name",
                    p.name
                ));
            }
        }
        // As slurm.conf reads: the last partition that says Default=YES is the default; none
        // saying so makes the first one the default.
        match out.iter().rposition(|p| p.is_default) {
            Some(last) => {
                for (i, p) in out.iter_mut().enumerate() {
                    p.is_default = i == last;
                }
            }
            None => out[0].is_default = true,
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[scheduler]` in slurm.conf's terms: defaults are Slurm's, values reach the planner.
    #[test]
    fn scheduler_section() {
        let cfg: ClusterConfig = toml::from_str("").unwrap();
        assert_eq!(
            cfg.scheduler.sched_config().unwrap(),
            SchedConfig::default()
        );
        let cfg: ClusterConfig = toml::from_str(
            "[scheduler]\nbackfill = false\nbf_window_min = 60\npriority_weight_age = 5\npriority_max_age = \"1-0\"\n",
        )
        .unwrap();
        let s = cfg.scheduler.sched_config().unwrap();
        assert!(!s.backfill);
        assert_eq!(s.bf_window_s, 3600);
        assert_eq!((s.weights.age, s.weights.max_age_s), (5, 86_400));
        assert_eq!(
            s.weights.fairshare,
            SchedConfig::default().weights.fairshare
        );
        let bad: ClusterConfig =
            toml::from_str("[scheduler]\npriority_max_age = \"soon\"\n").unwrap();
        assert!(bad
            .scheduler
            .sched_config()
            .unwrap_err()
            .contains("priority_max_age"));
        assert!(toml::from_str::<ClusterConfig>("[scheduler]\nbf_windw = 1\n").is_err());
    }

    /// `[[qos]]`: Slurm's time syntax for MaxWall; names distinct.
    #[test]
    fn qos_entries() {
        let cfg: ClusterConfig = toml::from_str(
            "[[qos]]\nname = \"short\"\npriority = 10\nmax_wall = \"2:00:00\"\nmax_jobs_per_user = 3\n",
        )
        .unwrap();
        assert_eq!(
            cfg.qos().unwrap(),
            vec![Qos {
                name: "short".into(),
                priority: 10,
                max_wall_min: Some(120),
                max_jobs_per_user: Some(3)
            }]
        );
        let twice: ClusterConfig =
            toml::from_str("[[qos]]\nname = \"a\"\n[[qos]]\nname = \"a\"\n").unwrap();
        assert!(twice.qos().unwrap_err().contains("defined twice"));
        let bad: ClusterConfig =
            toml::from_str("[[qos]]\nname = \"a\"\nmax_wall = \"soon\"\n").unwrap();
        assert!(bad.qos().unwrap_err().starts_with("qos a: "));
    }

    /// `oversubscribe` in slurm.conf's words (`OverSubscribe=`); a bad value names the
    /// partition and the forms.
    #[test]
    fn partition_oversubscribe() {
        let parts = |text: &str| {
            toml::from_str::<ClusterConfig>(text)
                .unwrap()
                .partitions()
                .map(|p| p.iter().map(|p| p.oversubscribe).collect::<Vec<_>>())
        };
        assert_eq!(
            parts(
                "[[partition]]\nname = \"a\"\n[[partition]]\nname = \"b\"\noversubscribe = \"yes\"\n\
                 [[partition]]\nname = \"c\"\noversubscribe = \"FORCE:2\"\n\
                 [[partition]]\nname = \"d\"\noversubscribe = \"EXCLUSIVE\"\n"
            ),
            Ok(vec![
                OverSubscribe::No,
                OverSubscribe::Yes(4),
                OverSubscribe::Force(2),
                OverSubscribe::Exclusive
            ])
        );
        let e = parts("[[partition]]\nname = \"a\"\noversubscribe = \"MAYBE\"\n").unwrap_err();
        assert!(e.contains("partition a: bad OverSubscribe `MAYBE`"), "{e}");
        let e = parts("[[partition]]\nname = \"a\"\noversubscribe = \"YES:0\"\n").unwrap_err();
        assert!(e.contains("bad OverSubscribe count"), "{e}");
    }
}
