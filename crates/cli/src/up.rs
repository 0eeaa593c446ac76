//! `drover up`: a whole cluster on 127.0.0.1 — replicas and node daemons as real processes,
//! each with its own state directory and log file under DIR — in the foreground.

use crate::client::Cluster;
use crate::config::{ClusterConfig, ControllerEntry, NodeEntry};
use crate::procs::{self, Layout, Role};
use drover_proto as pb;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The commands `DIR/bin` holds, as links to this binary.
pub const COMMANDS: [&str; 8] = [
    "sbatch", "srun", "squeue", "scancel", "sinfo", "scontrol", "sacct", "sacctmgr",
];

#[derive(Clone, Debug)]
pub struct UpArgs {
    pub dir: PathBuf,
    pub replicas: u32,
    pub nodes: u32,
    pub cpus_per_node: Option<u32>,
    pub mem_per_node_mb: Option<u64>,
    /// sacct's records are purged this long after a job ends (a new cluster's config).
    pub job_record_retention_s: u64,
    /// AccountingStoreFlags (`job_script,job_env`) of a new cluster's config.
    pub accounting_store_flags: String,
    /// SlurmdTimeout of a new cluster's config: a node not heard from this long is DOWN.
    pub node_timeout_s: u64,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes a new cluster's configuration, or keeps the one already in DIR (resume).
pub fn prepare(args: &UpArgs) -> anyhow::Result<(Layout, ClusterConfig, bool)> {
    let dir = if args.dir.is_absolute() {
        args.dir.clone()
    } else {
        std::env::current_dir()?.join(&args.dir)
    };
    let layout = Layout { dir };
    std::fs::create_dir_all(&layout.dir)?;
    let config_path = layout.config();
    if config_path.exists() {
        let cfg = ClusterConfig::load(&config_path).map_err(anyhow::Error::msg)?;
        return Ok((layout, cfg, true));
    }
    if !matches!(args.replicas, 1 | 3 | 5) {
        anyhow::bail!(
            "--replicas must be 1, 3 or 5 (a Raft majority needs an odd count), not {}",
            args.replicas
        );
    }
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    if args.node_timeout_s == 0 {
        anyhow::bail!("--node-timeout-s must be at least 1");
    }
    drover_controller::AccountingStore::parse(&args.accounting_store_flags)
        .map_err(|e| anyhow::anyhow!("--accounting-store-flags: {e}"))?;
    let mut controllers = Vec::new();
    for id in 1..=u64::from(args.replicas) {
        controllers.push(ControllerEntry {
            id,
            addr: format!("127.0.0.1:{}", free_port()?),
            data_dir: None,
        });
    }
    let nodes = (1..=args.nodes)
        .map(|i| NodeEntry {
            name: format!("n{i}"),
            cpus: args.cpus_per_node,
            memory_mb: args.mem_per_node_mb,
            state_dir: None,
            runtime_dir: None,
            addr: None,
            gpus: None,
        })
        .collect();
    let cfg = ClusterConfig {
        cluster_name: "drover".to_string(),
        node_timeout_s: args.node_timeout_s,
        kill_wait_s: crate::config::default_kill_wait(),
        job_record_retention_s: args.job_record_retention_s,
        accounting_store_flags: args.accounting_store_flags.clone(),
        raft_heartbeat_ms: crate::config::ClusterConfig::default_timing().0,
        raft_election_min_ms: crate::config::ClusterConfig::default_timing().1,
        raft_election_max_ms: crate::config::ClusterConfig::default_timing().2,
        controllers,
        nodes,
        partitions: Vec::new(),
        qos: Vec::new(),
        scheduler: crate::config::SchedulerEntry::default(),
    };
    let text = toml::to_string_pretty(&cfg)?;
    std::fs::write(
        &config_path,
        format!("# Written by `drover up`; edit freely, it is read again on resume.\n{text}"),
    )?;
    Ok((layout, cfg, false))
}

/// `DIR/bin/<command>` links to this binary.
pub fn install_links(bin: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(bin)?;
    let exe = std::env::current_exe()?;
    for name in COMMANDS.iter().copied().chain(["drover"]) {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link)?;
    }
    Ok(())
}

/// Waits until some replica leads and every configured node is registered and up.
pub fn wait_ready(cfg: &ClusterConfig, timeout: Duration) -> anyhow::Result<(u64, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut cluster = Cluster::new(cfg.controller_addrs());
    let mut last = String::from("no replica answered yet");
    while Instant::now() < deadline {
        let mut leader = None;
        for i in 0..cluster.addrs().len() {
            if let Some(p) = rt.block_on(cluster.ping_one(i)) {
                if p.is_leader {
                    leader = Some((p.replica_id, p.addr.clone()));
                }
            }
        }
        if let Some((id, addr)) = leader {
            let nodes = rt.block_on(async {
                cluster
                    .call(|mut c| async move {
                        c.list_nodes(pb::ListNodesRequest {
                            consistency: None,
                            names: vec![],
                        })
                        .await
                        .map(|r| r.into_inner())
                    })
                    .await
            });
            match nodes {
                Ok(reply) => {
                    let up = reply
                        .nodes
                        .iter()
                        .filter(|n| !n.state.starts_with("DOWN"))
                        .count();
                    if cfg.nodes.iter().all(|n| {
                        reply
                            .nodes
                            .iter()
                            .any(|x| x.name == n.name && !x.state.starts_with("DOWN"))
                    }) {
                        return Ok((id, addr));
                    }
                    last = format!(
                        "leader is replica {id}; {up} of {} nodes registered",
                        cfg.nodes.len()
                    );
                }
                Err(e) => last = e.to_string(),
            }
        } else {
            last = "no leader elected yet".to_string();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!(
        "the cluster did not become ready in {}s: {last}",
        timeout.as_secs()
    )
}

pub fn write_env(layout: &Layout, cfg: &ClusterConfig) -> anyhow::Result<PathBuf> {
    let env = layout.dir.join("env");
    let text = format!(
        "# source this file: it puts drover's Slurm commands on PATH and points them at this cluster\nexport PATH=\"{}:$PATH\"\nexport DROVER_CONTROLLERS=\"{}\"\nexport DROVER_CONF=\"{}\"\n",
        layout.bin_dir().display(),
        cfg.controller_addrs().join(","),
        layout.config().display()
    );
    std::fs::write(&env, text)?;
    Ok(env)
}

pub fn roles(cfg: &ClusterConfig) -> Vec<Role> {
    cfg.controllers
        .iter()
        .map(|c| Role::Ctld(c.id))
        .chain(cfg.nodes.iter().map(|n| Role::Noded(n.name.clone())))
        .collect()
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    let (layout, cfg, resumed) = prepare(&args)?;
    install_links(&layout.bin_dir())?;
    for role in roles(&cfg) {
        if let Some(pid) = procs::read_pid(&layout, &role) {
            if procs::alive(pid) && is_drover(pid) {
                anyhow::bail!(
                    "{} is already running (pid {pid}); is another `drover up --dir {}` running? Stop it first.",
                    role.label(),
                    layout.dir.display()
                );
            }
        }
    }
    let mut children: Vec<(Role, Child)> = Vec::new();
    for role in roles(&cfg) {
        let child = procs::spawn(&layout, &role, false)?;
        println!(
            "started {:<12} pid {:<7} log {}",
            role.label(),
            child.id(),
            layout.log_file(&role).display()
        );
        children.push((role, child));
    }
    let (leader, addr) = match wait_ready(&cfg, Duration::from_secs(120)) {
        Ok(v) => v,
        Err(e) => {
            stop_all(&layout, &cfg, &mut children);
            return Err(e);
        }
    };
    let env = write_env(&layout, &cfg)?;
    println!(
        "\ndrover cluster {} in {}: {} replicas (leader: replica {leader} at {addr}), {} nodes",
        if resumed { "resumed" } else { "started" },
        layout.dir.display(),
        cfg.controllers.len(),
        cfg.nodes.len()
    );
    println!("\nUse it from another shell:\n  source {}\n  sbatch --wrap 'hostname; sleep 30'\n  squeue; sinfo; scontrol ping", env.display());
    println!(
        "Kill the leader and watch it recover:\n  kill -9 $(cat {}/run/ctld-{leader}.pid); scontrol ping\n  drover restart --dir {} ctld-{leader}",
        layout.dir.display(),
        layout.dir.display()
    );
    println!("\nCtrl-C stops the whole cluster.");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    for (role, child) in children.iter_mut() {
                        if let Ok(Some(status)) = child.try_wait() {
                            println!("{} exited ({status}); restart it with: drover restart --dir {} {}", role.label(), layout.dir.display(), role.label());
                        }
                    }
                    children.retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
                }
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    println!("stopping the cluster…");
    stop_all(&layout, &cfg, &mut children);
    println!(
        "stopped; `drover up --dir {}` resumes it with its state",
        layout.dir.display()
    );
    Ok(())
}

/// Is `pid` a drover process (and not a recycled pid)?
pub fn is_drover(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.starts_with(b"drover"))
        .unwrap_or(false)
}

/// Stops every process of the cluster: our children and any restarted ones (by pid file).
pub fn stop_all(layout: &Layout, cfg: &ClusterConfig, children: &mut [(Role, Child)]) {
    let mut pids: Vec<i32> = children.iter().map(|(_, c)| c.id() as i32).collect();
    for role in roles(cfg) {
        if let Some(pid) = procs::read_pid(layout, &role) {
            if procs::alive(pid) && is_drover(pid) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    for &pid in &pids {
        procs::signal(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, child) in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for &pid in &pids {
        while procs::alive(pid) && is_drover(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if procs::alive(pid) && is_drover(pid) {
            procs::signal(pid, Signal::SIGKILL);
        }
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    for role in roles(cfg) {
        let _ = std::fs::remove_file(layout.pid_file(&role));
    }
}

/// `drover restart --dir DIR ctld-<id>|noded-<name>`: start one killed process on its state.
pub fn restart(dir: &Path, label: &str) -> anyhow::Result<()> {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    let layout = Layout { dir };
    let cfg = ClusterConfig::load(&layout.config()).map_err(anyhow::Error::msg)?;
    let role = Role::parse(label)
        .filter(|r| roles(&cfg).contains(r))
        .ok_or_else(|| {
            let names: Vec<String> = roles(&cfg).iter().map(Role::label).collect();
            anyhow::anyhow!(
                "no process {label} in this cluster; it has {}",
                names.join(", ")
            )
        })?;
    if let Some(pid) = procs::read_pid(&layout, &role) {
        if procs::alive(pid) && is_drover(pid) {
            anyhow::bail!("{label} is still running (pid {pid})");
        }
    }
    let child = procs::spawn(&layout, &role, true)?;
    println!("restarted {label}: pid {}", child.id());
    Ok(())
}
