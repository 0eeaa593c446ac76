//! A real local cluster for end-to-end tests: `drover up` in a temp dir, real processes on
//! 127.0.0.1, the real commands through `DIR/bin/<command>` links.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Clusters are heavy for a 2-core machine: tests that start one take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn drover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    up: Child,
    pub controllers: Vec<(u64, String)>,
    _turn: MutexGuard<'static, ()>,
}

impl TestCluster {
    pub fn start(replicas: u32, nodes: u32) -> TestCluster {
        TestCluster::start_with(replicas, nodes, &[])
    }

    /// `start`, with more `drover up` options.
    pub fn start_with(replicas: u32, nodes: u32, extra: &[&str]) -> TestCluster {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = std::fs::File::create(dir.path().join("up.log")).expect("up.log");
        let up = Command::new(drover_bin())
            .args(["up", "--dir"])
            .arg(dir.path().join("cluster"))
            .args([
                "--replicas",
                &replicas.to_string(),
                "--nodes",
                &nodes.to_string(),
            ])
            .args(["--cpus-per-node", "2", "--mem-per-node", "2000"])
            .args(extra)
            .env("DROVER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("drover up starts");
        let mut cluster = TestCluster {
            dir,
            up,
            controllers: Vec::new(),
            _turn: turn,
        };
        cluster.wait_for_env(Duration::from_secs(120));
        cluster.controllers = cluster.read_controllers();
        cluster
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn wait_for_env(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.root().join("env").exists() {
            if let Ok(Some(status)) = self.up.try_wait() {
                panic!("drover up exited early ({status}):\n{}", self.up_log());
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ready in time:\n{}",
                self.up_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn up_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn read_controllers(&self) -> Vec<(u64, String)> {
        let text = std::fs::read_to_string(self.root().join("drover.toml")).expect("drover.toml");
        let value: toml_lite::Doc = toml_lite::parse(&text);
        value.controllers
    }

    pub fn all_addrs(&self) -> String {
        self.controllers
            .iter()
            .map(|(_, a)| a.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs a command (`sbatch`, `squeue`, …) against the given controller addresses.
    pub fn cmd_at(
        &self,
        addrs: &str,
        name: &str,
        args: &[&str],
        cwd: &Path,
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new(self.root().join("bin").join(name));
        cmd.args(args)
            .current_dir(cwd)
            .env("DROVER_CONTROLLERS", addrs)
            .env("DROVER_STATE_CACHE", self.dir.path().join("client-state"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("command starts");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("command runs")
    }

    pub fn cmd(&self, name: &str, args: &[&str]) -> Output {
        self.cmd_at(&self.all_addrs(), name, args, self.dir.path(), None)
    }

    /// `scontrol ping`, parsed: (addr, is_leader, is_up) per replica.
    pub fn ping(&self) -> Vec<(String, bool, bool)> {
        let out = self.cmd("scontrol", &["ping"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let addr = l.split(" at ").nth(1)?.split(' ').next()?.to_string();
                Some((addr, l.contains("(primary)"), l.ends_with("is UP")))
            })
            .collect()
    }

    pub fn leader(&self, timeout: Duration) -> (u64, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((addr, _, _)) = self
                .ping()
                .into_iter()
                .find(|(_, leader, up)| *leader && *up)
            {
                let id = self
                    .controllers
                    .iter()
                    .find(|(_, a)| *a == addr)
                    .map(|(id, _)| *id)
                    .expect("known addr");
                return (id, addr);
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self, label: &str) -> i32 {
        std::fs::read_to_string(self.root().join("run").join(format!("{label}.pid")))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    pub fn kill9(&self, label: &str) {
        let pid = self.pid(label);
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        // Wait until it is gone (it is our grandchild: `drover up` reaps it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&self, label: &str) {
        let out = Command::new(drover_bin())
            .args(["restart", "--dir"])
            .arg(self.root())
            .arg(label)
            .output()
            .expect("drover restart");
        assert!(
            out.status.success(),
            "restart {label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Submits a script with sbatch from `cwd` through `addrs`; returns the job id.
    pub fn sbatch(&self, addrs: &str, cwd: &Path, args: &[&str], script: &str) -> u64 {
        let out = self.cmd_at(addrs, "sbatch", args, cwd, Some(script));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sbatch failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .trim()
            .strip_prefix("Submitted batch job ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("sbatch said {stdout:?}"))
    }

    /// The job's `JobState=` from `scontrol show job`.
    pub fn job_state(&self, id: u64) -> Option<String> {
        let out = self.cmd("scontrol", &["-o", "show", "job", &id.to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .map(str::to_string)
    }

    pub fn wait_state(&self, id: u64, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.job_state(id);
            if state.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} is {state:?}, not {want}, after {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `f` holds, failing with `what` and the cluster's logs after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(dir) = std::fs::read_dir(self.root().join("log")) {
            let mut files: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                out.push_str(&format!("==> {} <==\n", f.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

/// Just enough TOML reading for the controllers table `drover up` writes.
mod toml_lite {
    pub struct Doc {
        pub controllers: Vec<(u64, String)>,
    }

    pub fn parse(text: &str) -> Doc {
        let mut controllers = Vec::new();
        let mut in_controller = false;
        let mut id = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("[[") {
                in_controller = line == "[[controller]]";
                id = None;
                continue;
            }
            if !in_controller {
                continue;
            }
            if let Some(v) = line.strip_prefix("id = ") {
                id = v.parse().ok();
            }
            if let Some(v) = line.strip_prefix("addr = ") {
                controllers.push((id.unwrap_or(0), v.trim_matches('"').to_string()));
            }
        }
        Doc { controllers }
    }
}

/// Whether jobs here get real cgroups: root, and the v1 memory and cpuset controllers or v2.
pub fn cgroups_usable() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    let v1 = root.join("memory/cgroup.procs").exists() && root.join("cpuset/cgroup.procs").exists();
    let v2 = root.join("cgroup.controllers").exists();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root_user = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    root_user && (v1 || v2)
}

/// Processes whose program ends with `argv0_suffix` and whose command line holds `marker` (a
/// test's tasks, on every local node).
pub fn pids_with(marker: &str, argv0_suffix: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        if args.first().is_some_and(|a| a.ends_with(argv0_suffix))
            && args.iter().any(|a| a.contains(marker))
        {
            pids.push(pid);
        }
    }
    pids
}
