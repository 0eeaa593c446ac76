//! The system under test: `drover ctld` replicas and `drover noded` daemons as real processes on
//! 127.0.0.1, started from one config file the harness writes. The harness owns every child
//! (it is their parent), so a kill -9 is reaped at once and a restart is a fresh spawn on the
//! same state directory.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub struct Shape {
    pub replicas: u32,
    pub nodes: u32,
    pub cpus_per_node: u32,
    pub mem_per_node_mb: u64,
    /// Fake GPUs per node (drover's fake probe: indices, env and accounting, no devices).
    pub gpus_per_node: u32,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub drover: PathBuf,
    pub config: PathBuf,
    /// (replica id, address), in id order.
    pub ctlds: Vec<(u64, String)>,
    pub nodes: Vec<String>,
    /// Set when the replicas run in network namespaces (needed for partitions).
    pub net: Option<Netns>,
    children: Mutex<BTreeMap<String, Child>>,
    paused: Mutex<BTreeSet<String>>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn ctld_label(id: u64) -> String {
    format!("ctld-{id}")
}

pub fn noded_label(name: &str) -> String {
    format!("noded-{name}")
}

impl Cluster {
    /// Writes `DIR/drover.toml` for a new cluster (fresh ports on 127.0.0.1).
    /// With `netns`, each replica gets its own network namespace on a bridge (see [`Netns`]).
    pub fn create(dir: &Path, drover: &Path, shape: Shape, netns: bool) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir.join("log"))?;
        std::fs::create_dir_all(dir.join("state"))?;
        let net = if netns {
            Some(Netns::create(shape.replicas)?)
        } else {
            None
        };
        let mut ctlds = Vec::new();
        for id in 1..=u64::from(shape.replicas) {
            match &net {
                Some(n) => ctlds.push((id, format!("{}:6817", n.ip(id)))),
                None => ctlds.push((id, format!("127.0.0.1:{}", free_port()?))),
            }
        }
        let nodes: Vec<String> = (1..=shape.nodes).map(|i| format!("n{i}")).collect();
        let mut text = String::from(
            "# Written by drover-jepsen.\ncluster_name = \"jepsen\"\nnode_timeout_s = 30\n",
        );
        for (id, addr) in &ctlds {
            text.push_str(&format!("\n[[controller]]\nid = {id}\naddr = \"{addr}\"\n"));
        }
        for n in &nodes {
            text.push_str(&format!(
                "\n[[node]]\nname = \"{n}\"\ncpus = {}\nmemory_mb = {}\n",
                shape.cpus_per_node, shape.mem_per_node_mb
            ));
            if shape.gpus_per_node > 0 {
                text.push_str(&format!("gpus = {}\n", shape.gpus_per_node));
            }
        }
        let config = dir.join("drover.toml");
        std::fs::write(&config, text)?;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            drover: drover.to_path_buf(),
            config,
            ctlds,
            nodes,
            net,
            children: Mutex::new(BTreeMap::new()),
            paused: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn labels(&self) -> Vec<String> {
        self.ctlds
            .iter()
            .map(|(id, _)| ctld_label(*id))
            .chain(self.nodes.iter().map(|n| noded_label(n)))
            .collect()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.ctlds.iter().map(|(_, a)| a.clone()).collect()
    }

    /// Starts `label` on its existing state (no-op when it runs).
    pub fn start(&self, label: &str) -> anyhow::Result<()> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = children.get_mut(label) {
            if matches!(c.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log").join(format!("{label}.log")))?;
        let state = self.dir.join("state").join(label);
        let mut cmd = Command::new(&self.drover);
        if let (Some(net), Some(id)) = (&self.net, label.strip_prefix("ctld-")) {
            // `ip netns exec` execs drover in place: the child's pid is drover's.
            cmd = Command::new("ip");
            cmd.args(["netns", "exec", &net.ns(id.parse().unwrap_or(0))])
                .arg(&self.drover);
        }
        if let Some(id) = label.strip_prefix("ctld-") {
            cmd.args(["ctld", "--config"])
                .arg(&self.config)
                .args(["--id", id, "--data-dir"])
                .arg(&state);
            // The `clock` nemesis writes this replica's skew there (absent: none).
            cmd.env(
                "DROVER_TEST_CLOCK_SKEW_FILE",
                self.clock_skew_file(id.parse().unwrap_or(0)),
            );
        } else if let Some(name) = label.strip_prefix("noded-") {
            cmd.args(["noded", "--config"])
                .arg(&self.config)
                .args(["--name", name, "--state-dir"])
                .arg(&state);
        } else {
            anyhow::bail!("unknown process {label}");
        }
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: a Ctrl-C on the harness does not reach it.
            cmd.process_group(0);
        }
        cmd.env_remove("DROVER_CONTROLLERS")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn()?;
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(label);
        children.insert(label.to_string(), child);
        Ok(())
    }

    /// Where replica `id` reads its clock skew (ms, signed) from: outside its state dir, so a
    /// restart keeps the skew until the nemesis heals it.
    pub fn clock_skew_file(&self, id: u64) -> PathBuf {
        self.dir.join(format!("clock-skew-ctld-{id}"))
    }

    /// Skews replica `id`'s clock by `ms` (0: heals it).
    pub fn set_clock_skew(&self, id: u64, ms: i64) -> std::io::Result<()> {
        let path = self.clock_skew_file(id);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ms.to_string())?;
        std::fs::rename(tmp, path)
    }

    pub fn pid(&self, label: &str) -> Option<i32> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let c = children.get_mut(label)?;
        if matches!(c.try_wait(), Ok(None)) {
            Some(c.id() as i32)
        } else {
            None
        }
    }

    pub fn running(&self, label: &str) -> bool {
        self.pid(label).is_some()
    }

    /// kill -9, and reap it.
    pub fn kill9(&self, label: &str) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut c) = children.remove(label) else {
            return false;
        };
        let was_running = matches!(c.try_wait(), Ok(None));
        let _ = c.kill();
        let _ = c.wait();
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(label);
        was_running
    }

    pub fn pause(&self, label: &str) -> bool {
        let Some(pid) = self.pid(label) else {
            return false;
        };
        let ok = kill(Pid::from_raw(pid), Signal::SIGSTOP).is_ok();
        if ok {
            self.paused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(label.to_string());
        }
        ok
    }

    pub fn resume(&self, label: &str) {
        if let Some(pid) = self.pid(label) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(label);
    }

    /// Heals every process fault: resumes the paused, restarts the dead.
    pub fn heal_all(&self) -> anyhow::Result<Vec<String>> {
        let paused: Vec<String> = self
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut healed = Vec::new();
        if let Some(net) = &self.net {
            net.heal();
            healed.push("healed partitions".to_string());
        }
        for l in paused {
            self.resume(&l);
            healed.push(format!("resumed {l}"));
        }
        for (id, _) in &self.ctlds {
            if self.clock_skew_file(*id).exists() {
                self.set_clock_skew(*id, 0)?;
                healed.push(format!("clock of ctld-{id}"));
            }
        }
        for l in self.labels() {
            if !self.running(&l) {
                self.start(&l)?;
                healed.push(format!("restarted {l}"));
            }
        }
        Ok(healed)
    }

    /// Stops everything: SIGCONT, then SIGTERM (node daemons first, so they stop their jobs),
    /// then SIGKILL whatever is left after a grace.
    pub fn shutdown(&self) {
        let labels = self.labels();
        for l in &labels {
            self.resume(l);
        }
        for l in labels.iter().filter(|l| l.starts_with("noded-")) {
            if let Some(pid) = self.pid(l) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        for l in labels.iter().filter(|l| l.starts_with("ctld-")) {
            if let Some(pid) = self.pid(l) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline && labels.iter().any(|l| self.running(l)) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for l in &labels {
            self.kill9(l);
        }
        if let Some(net) = &self.net {
            net.destroy();
        }
    }
}

/// Replicas in network namespaces: one bridge in the root namespace (10.213.X.1, where the
/// harness's clients and the node daemons live), one namespace per replica (10.213.X.(10+id))
/// joined to it by a veth pair. A partition is a pair of blackhole routes between two replicas'
/// namespaces, so only replica-to-replica traffic is cut; clients and node daemons still reach
/// every replica. Needs root and `ip` (iproute2); nothing outside 10.213.X.0/24 is touched.
pub struct Netns {
    tag: String,
    octet: u32,
    replicas: u32,
    cuts: Mutex<BTreeSet<(u64, u64)>>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    pub fn create(replicas: u32) -> anyhow::Result<Netns> {
        let pid = std::process::id();
        let n = Netns {
            tag: format!("j{:04x}", pid & 0xffff),
            octet: 1 + pid % 250,
            replicas,
            cuts: Mutex::new(BTreeSet::new()),
        };
        n.setup().inspect_err(|_| n.destroy())?;
        Ok(n)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    pub fn ns(&self, id: u64) -> String {
        format!("{}-c{id}", self.tag)
    }

    pub fn ip(&self, id: u64) -> String {
        format!("10.213.{}.{}", self.octet, 10 + id)
    }

    fn setup(&self) -> anyhow::Result<()> {
        let br = self.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{}.1/24", self.octet),
            "dev",
            &br,
        ])?;
        ip(&["link", "set", &br, "up"])?;
        for id in 1..=u64::from(self.replicas) {
            let (ns, h, p) = (
                self.ns(id),
                format!("{}h{id}", self.tag),
                format!("{}p{id}", self.tag),
            );
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &h, "type", "veth", "peer", "name", &p])?;
            ip(&["link", "set", &p, "netns", &ns])?;
            ip(&["link", "set", &h, "master", &br])?;
            ip(&["link", "set", &h, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.ip(id)),
                "dev",
                &p,
            ])?;
            ip(&["-n", &ns, "link", "set", &p, "up"])?;
        }
        Ok(())
    }

    /// Cuts the link between replicas `a` and `b`, both ways.
    pub fn cut(&self, a: u64, b: u64) -> anyhow::Result<()> {
        ip(&[
            "-n",
            &self.ns(a),
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.ip(b)),
        ])?;
        ip(&[
            "-n",
            &self.ns(b),
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.ip(a)),
        ])?;
        self.cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((a.min(b), a.max(b)));
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        let cuts: Vec<(u64, u64)> =
            std::mem::take(&mut *self.cuts.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        for (a, b) in cuts {
            let _ = ip(&[
                "-n",
                &self.ns(a),
                "route",
                "del",
                "blackhole",
                &format!("{}/32", self.ip(b)),
            ]);
            let _ = ip(&[
                "-n",
                &self.ns(b),
                "route",
                "del",
                "blackhole",
                &format!("{}/32", self.ip(a)),
            ]);
        }
    }

    pub fn destroy(&self) {
        for id in 1..=u64::from(self.replicas) {
            let _ = ip(&["netns", "del", &self.ns(id)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Is `pid` running (a zombie is not)?
pub fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !matches!(
        stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()),
        Some(Some('Z' | 'X'))
    )
}

/// kill -9 of a stray job process group (after a harness failure).
pub fn kill_group(pid: i32) {
    let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
}
