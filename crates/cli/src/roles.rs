//! The daemon roles of the `drover` binary: `drover ctld` and `drover noded`.

use crate::config::ClusterConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Cancels the token on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        token.cancel();
    });
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

fn load(config: &Path) -> anyhow::Result<ClusterConfig> {
    ClusterConfig::load(config).map_err(anyhow::Error::msg)
}

pub fn ctld(config: &Path, id: u64, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let cfg = load(config)?;
    let entry =
        cfg.controllers.iter().find(|c| c.id == id).ok_or_else(|| {
            anyhow::anyhow!("{}: no [[controller]] with id = {id}", config.display())
        })?;
    let data_dir = data_dir
        .or_else(|| entry.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(format!("/var/lib/drover/ctld-{id}")));
    let mut cc = drover_controller::ControllerConfig::new(id, cfg.members(), data_dir);
    cc.partitions = cfg.partitions().map_err(anyhow::Error::msg)?;
    cc.qos = cfg.qos().map_err(anyhow::Error::msg)?;
    cc.node_timeout = Duration::from_secs(cfg.node_timeout_s);
    cc.cluster_name = cfg.cluster_name.clone();
    cc.kill_wait_s = cfg.kill_wait_s;
    cc.sched = cfg.scheduler.sched_config().map_err(anyhow::Error::msg)?;
    cc.sched_min_interval = Duration::from_micros(cfg.scheduler.sched_min_interval_us);
    cc.record_retention = Duration::from_secs(cfg.job_record_retention_s);
    cc.store = drover_controller::AccountingStore::parse(&cfg.accounting_store_flags)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    cc.election_grace = cc.node_timeout.max(Duration::from_secs(10));
    cc.heartbeat_ms = cfg.raft_heartbeat_ms;
    cc.election_min_ms = cfg.raft_election_min_ms;
    cc.election_max_ms = cfg.raft_election_max_ms;
    multi_thread().block_on(async move {
        let token = CancellationToken::new();
        cancel_on_signals(token.clone());
        drover_controller::run(cc, token).await
    })
}

pub fn noded(config: &Path, name: &str, state_dir: Option<PathBuf>) -> anyhow::Result<()> {
    init_tracing();
    let cfg = load(config)?;
    let entry = cfg.nodes.iter().find(|n| n.name == name);
    let state_dir = state_dir
        .or_else(|| entry.and_then(|e| e.state_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(format!("/var/lib/drover/noded-{name}")));
    let nc = drover_node::NodeConfig {
        name: name.to_string(),
        controllers: cfg.controller_addrs(),
        state_dir,
        runtime_dir: entry.and_then(|e| e.runtime_dir.clone()),
        cpus: entry.and_then(|e| e.cpus),
        real_memory_mb: entry.and_then(|e| e.memory_mb),
        addr: entry.and_then(|e| e.addr.clone()).unwrap_or_default(),
        kill_wait: Duration::from_secs(cfg.kill_wait_s),
        fake_gpus: entry.and_then(|e| e.gpus),
        supervisor_exe: drover_node::supervisor_exe(&std::env::current_exe()?),
    };
    multi_thread().block_on(async move {
        let token = CancellationToken::new();
        cancel_on_signals(token.clone());
        drover_node::run(nc, token).await
    })
}

/// `drover-stepd supervise …` and `drover supervise …` (`drover_node::stepd_main`): one job's
/// supervisor (`--state-dir DIR --job ID`), or a node daemon's supervisor starter (`--zygote
/// --state-dir DIR`). Its messages go to the daemon's log.
///
/// Its log filter is one level (`DROVER_LOG=debug`; info otherwise): the per-target filters
/// of the daemons' `EnvFilter` bring a regex engine, doubling the binary a job starts.
pub fn stepd(args: &[String]) -> i32 {
    let level = std::env::var("DROVER_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
    drover_node::stepd_main(args)
}
