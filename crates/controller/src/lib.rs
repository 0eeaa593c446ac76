//! A controller replica: one process, one gRPC port, four services.
//!
//! ```text
//!            ┌──────────────── gRPC :port ────────────────┐
//!  commands ─┤ Ctl       → write::write ─┬─ leader: Replica::propose (group commit, Raft)
//!  nodes ────┤ NodeCtl   → write::write ─┘  follower: Peer.Propose on the leader
//!  replicas ─┤ Raft      (openraft RPCs, crates/consensus)
//!            └ Peer      (forwarded writes)
//!  reads: this replica's applied state, once it has applied the client's min_index
//!  leader only: leader::supervise → scheduling pass, node liveness, partition table
//! ```

pub mod convert;
pub mod ctl;
pub mod leader;
pub mod liveness;
pub mod node_api;
pub mod steps_api;
pub mod write;

use anyhow::Context;
use drover_consensus::{Replica, ReplicaConfig};
use drover_proto as pb;
use drover_scheduler::{Partition, SchedConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Largest gRPC message a replica accepts (snapshots and big listings).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub id: u64,
    /// Replica id → `host:port`, the same on every replica.
    pub members: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub partitions: Vec<Partition>,
    /// QOS definitions (`[[qos]]`); `normal` exists without one.
    pub qos: Vec<drover_scheduler::Qos>,
    pub node_timeout: Duration,
    pub election_grace: Duration,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub snapshot_logs_since_last: u64,
    /// Shown by `scontrol show config` (ClusterName, KillWait; the nodes enforce KillWait).
    pub cluster_name: String,
    pub kill_wait_s: u64,
    /// The planner's settings and priority weights (`[scheduler]` in drover.toml).
    pub sched: SchedConfig,
    /// Accounting records older than this are purged (slurmdbd's PurgeJobAfter); zero keeps
    /// them for ever.
    pub record_retention: Duration,
    /// Slurm's `sched_min_interval` (zero: passes are spaced by their own duration only).
    pub sched_min_interval: Duration,
    /// Slurm's `AccountingStoreFlags`: what accounting records keep beside the job's fields.
    pub store: AccountingStore,
}

/// `AccountingStoreFlags=job_script,job_env`: the submits this replica takes ask their
/// records to keep the batch script and the environment (`sacct -B`, `--env-vars`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountingStore {
    pub job_script: bool,
    pub job_env: bool,
}

impl AccountingStore {
    /// Parses slurm.conf's comma list; the flags drover has no counterpart for are named.
    pub fn parse(flags: &str) -> Result<AccountingStore, String> {
        let mut store = AccountingStore::default();
        for flag in flags.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            match flag.to_ascii_lowercase().as_str() {
                "job_script" => store.job_script = true,
                "job_env" => store.job_env = true,
                _ => {
                    return Err(format!(
                        "accounting_store_flags: unknown flag `{flag}` (drover knows job_script and job_env)"
                    ))
                }
            }
        }
        Ok(store)
    }

    /// slurm.conf's spelling (`scontrol show config`).
    pub fn flags(&self) -> String {
        let mut out = Vec::new();
        if self.job_env {
            out.push("job_env");
        }
        if self.job_script {
            out.push("job_script");
        }
        out.join(",")
    }
}

impl ControllerConfig {
    pub fn new(id: u64, members: BTreeMap<u64, String>, data_dir: PathBuf) -> ControllerConfig {
        ControllerConfig {
            id,
            members,
            data_dir,
            partitions: vec![Partition::default_debug()],
            qos: Vec::new(),
            node_timeout: Duration::from_secs(300),
            election_grace: Duration::from_secs(60),
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 600,
            snapshot_logs_since_last: 5000,
            cluster_name: "drover".to_string(),
            kill_wait_s: 30,
            sched: SchedConfig::default(),
            record_retention: Duration::from_secs(DEFAULT_RECORD_RETENTION_S),
            sched_min_interval: Duration::ZERO,
            store: AccountingStore::default(),
        }
    }
}

/// How long accounting records are kept by default: 30 days.
pub const DEFAULT_RECORD_RETENTION_S: u64 = 30 * 24 * 3600;

/// Runs a replica until `shutdown` is cancelled.
pub async fn run(cfg: ControllerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let addr = cfg
        .members
        .get(&cfg.id)
        .with_context(|| {
            format!(
                "replica id {} is not among the members {:?}",
                cfg.id, cfg.members
            )
        })?
        .clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!("cannot listen on {addr} (is another replica already running there?)")
        })?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            cfg.data_dir.display()
        )
    })?;

    let mut rc = ReplicaConfig::new(cfg.id, cfg.members.clone(), cfg.data_dir.clone());
    rc.heartbeat_ms = cfg.heartbeat_ms;
    rc.election_min_ms = cfg.election_min_ms;
    rc.election_max_ms = cfg.election_max_ms;
    rc.snapshot_logs_since_last = cfg.snapshot_logs_since_last;
    if let Some(path) = std::env::var_os(CLOCK_SKEW_FILE_ENV) {
        tracing::warn!(
            file = %std::path::Path::new(&path).display(),
            "test hook: this replica's clock is skewed by the milliseconds in this file"
        );
        rc.clock = skewed_clock(path.into());
    }
    let replica = Replica::open(rc)
        .await
        .context("cannot open the replica's Raft state")?;
    tracing::info!(id = cfg.id, %addr, "replica listening");

    let peers = write::Peers::default();
    let liveness = liveness::Liveness::default();
    let leader_cfg = leader::LeaderConfig {
        partitions: cfg.partitions.clone(),
        qos: cfg.qos.clone(),
        node_timeout: cfg.node_timeout,
        election_grace: cfg.election_grace,
        sched: cfg.sched.clone(),
        record_retention: cfg.record_retention,
        sched_min_interval: cfg.sched_min_interval,
    };
    tokio::spawn(leader::supervise(
        replica.clone(),
        peers.clone(),
        liveness.clone(),
        leader_cfg,
        shutdown.clone(),
    ));

    let ctl = pb::ctl_server::CtlServer::new(ctl::CtlService {
        replica: replica.clone(),
        peers: peers.clone(),
        sched: cfg.sched.clone(),
        store: cfg.store,
        shown: ctl::ShownConfig {
            cluster_name: cfg.cluster_name.clone(),
            slurmd_timeout_s: cfg.node_timeout.as_secs(),
            kill_wait_s: cfg.kill_wait_s,
            boot_time: ctl::wall_clock_s(),
        },
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let node = pb::node_ctl_server::NodeCtlServer::new(node_api::NodeService {
        replica: replica.clone(),
        peers: peers.clone(),
        liveness,
        answered: Default::default(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let peer = pb::peer_server::PeerServer::new(write::PeerService {
        replica: replica.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let steps = pb::steps_server::StepsServer::new(steps_api::StepsService {
        replica: replica.clone(),
        peers: peers.clone(),
    });

    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(replica.raft_service())
        .add_service(ctl)
        .add_service(node)
        .add_service(peer)
        .add_service(steps)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
        .await;
    replica.shutdown().await;
    served.context("the gRPC server stopped")
}

/// Test hook for jepsen's `clock` nemesis: when set, this replica's clock (the one that stamps
/// `Proposal::at` while it leads) runs ahead or behind by the signed milliseconds written in
/// the named file (absent or unreadable: 0), re-read at most every 100 ms. Time enters the
/// state only through that stamp, so this is as far as a skewed host clock reaches.
pub const CLOCK_SKEW_FILE_ENV: &str = "DROVER_TEST_CLOCK_SKEW_FILE";

fn skewed_clock(path: std::path::PathBuf) -> drover_consensus::Clock {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let cache: std::sync::Mutex<Option<(Instant, i64)>> = std::sync::Mutex::new(None);
    drover_consensus::Clock::from_fn(move || {
        let mut cached = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let skew_ms = match *cached {
            Some((read_at, skew)) if read_at.elapsed() < Duration::from_millis(100) => skew,
            _ => {
                let skew = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                *cached = Some((Instant::now(), skew));
                skew
            }
        };
        let system_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        system_ms.saturating_add(skew_ms).max(0) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::AccountingStore;

    #[test]
    fn accounting_store_flags_parse_and_print_as_slurm_conf_does() {
        let both = AccountingStore::parse("job_script, JOB_ENV").unwrap();
        assert!(both.job_script && both.job_env);
        assert_eq!(both.flags(), "job_env,job_script");
        assert_eq!(
            AccountingStore::parse("").unwrap(),
            AccountingStore::default()
        );
        assert_eq!(AccountingStore::default().flags(), "");
        let err = AccountingStore::parse("job_script,job_comment").unwrap_err();
        assert!(err.contains("`job_comment`"), "{err}");
    }
}
