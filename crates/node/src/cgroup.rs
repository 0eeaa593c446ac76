//! The only module that writes to `/sys/fs/cgroup` (STYLE P12): one cgroup per job, with the
//! allocated CPUs (cpuset), the memory limit, the allocated GPUs (v1 `devices`), OOM detection
//! and usage (peak memory, CPU time) for the final report.
//!
//! A small cgroupfs writer rather than `cgroups-rs`: what a job needs is a dozen files, the
//! same on every kernel since 4.x, while `cgroups-rs` 0.5 pulls `zbus` and `nix` (about 90
//! crates, ~70 s of cold build on the 2-core builders) and its v2 OOM and v1 race-free attach
//! paths would have to be written by us anyway (reference/stack.md §5). Both hierarchies are
//! behind [`JobCgroup`]:
//!
//! - v1 (this host): `/sys/fs/cgroup/<controller>/<own path>/drover/<node>/job_<id>` for each
//!   of `cpuset`, `memory`, `cpuacct`, `devices` that is mounted and writable;
//! - v2 (unified): `/sys/fs/cgroup/<own path>/drover/<node>/job_<id>`, with `+cpuset` and
//!   `+memory` enabled (each on its own) in the parents' `cgroup.subtree_control` where the
//!   parent allows it; where the daemon's own cgroup holds processes (v2 then refuses
//!   controllers to its children), `/sys/fs/cgroup/drover/<node>/job_<id>` directly under the
//!   root, as Slurm's cgroup/v2 does with `IgnoreSystemd=yes`.
//!
//! A controller that is missing or not writable is left out, and [`Isolation`] says so: the
//! node registers and logs what it really enforces, never more.
//!
//! Processes join race-free: the launcher's `pre_exec` calls [`AttachFds::attach_self`], which
//! writes `0` ("the writer") into each `cgroup.procs` through descriptors opened before the
//! fork, so the job never runs a single instruction outside its cgroup.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// The NVIDIA character device major (`/dev/nvidia<minor>`, `/dev/nvidiactl` is 255).
pub const NVIDIA_MAJOR: u32 = 195;

/// What a job's cgroup enforces on this host. Reported at registration and in logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Isolation {
    /// `v1`, `v2` or `none`.
    pub version: String,
    pub cpuset: bool,
    pub memory: bool,
    pub cpuacct: bool,
    pub devices: bool,
}

impl Isolation {
    /// e.g. `cgroup v1: cpuset memory cpuacct devices` or `no cgroups: nothing is isolated`.
    pub fn describe(&self) -> String {
        if self.version == "none" || self.version.is_empty() {
            return "no usable cgroups: jobs are not isolated (no CPU, memory or device limits)"
                .into();
        }
        let mut have = Vec::new();
        let mut missing = Vec::new();
        for (name, on) in [
            ("cpuset", self.cpuset),
            ("memory", self.memory),
            ("cpuacct", self.cpuacct),
            ("devices", self.devices),
        ] {
            if on {
                have.push(name);
            } else {
                missing.push(name);
            }
        }
        let mut s = format!("cgroup {}: {}", self.version, have.join(" "));
        if !missing.is_empty() {
            s.push_str(&format!(" (not enforced: {})", missing.join(" ")));
        }
        s
    }
}

/// What one job's cgroup must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Host CPU ids (cpuset); empty: no CPU restriction.
    pub cpus: Vec<u32>,
    /// 0: no memory limit.
    pub mem_mb: u64,
    /// Device minors of the GPUs the job may open (`None`: devices are not restricted).
    pub gpu_minors: Option<Vec<u32>>,
}

/// Usage read when the job has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub max_rss_kb: u64,
    pub total_cpu_ms: u64,
    /// The kernel OOM-killed a process of the job.
    pub oom_killed: bool,
}

/// One job's cgroup, whatever the hierarchy.
pub trait JobCgroup: Send {
    /// Descriptors to join the cgroup from a forked child (see [`AttachFds`]).
    fn attach_fds(&self) -> io::Result<AttachFds>;
    /// Pids still in the cgroup (to be killed once the job has ended).
    fn pids(&self) -> Vec<u32>;
    fn usage(&self) -> Usage;
    /// Removes the (empty) cgroup directories.
    fn remove(&self);
}

/// `cgroup.procs` of each controller, opened for writing before the fork.
#[derive(Debug)]
pub struct AttachFds(Vec<OwnedFd>);

impl AttachFds {
    /// The raw descriptors, for a `pre_exec` closure; valid while `self` lives.
    pub fn handle(&self) -> AttachHandle {
        AttachHandle(self.0.iter().map(|fd| fd.as_raw_fd()).collect())
    }
}

/// Borrowed descriptors of an [`AttachFds`].
#[derive(Debug, Clone)]
pub struct AttachHandle(Vec<RawFd>);

impl AttachHandle {
    /// Moves the calling process into the cgroup. Async-signal-safe: meant for `pre_exec`.
    pub fn attach_self(&self) -> io::Result<()> {
        for &fd in &self.0 {
            #[allow(unsafe_code)]
            // SAFETY: write(2) on a descriptor kept open by the AttachFds, from a static buffer.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The host's cgroup layout, found once by the daemon from /proc/self/cgroup and handed to
/// each job's supervisor in its spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Host {
    /// v1: controller → the directory jobs go under; v2: one entry with name "unified".
    dirs: Vec<(String, PathBuf)>,
    v2: bool,
    pub isolation: Isolation,
}

impl Host {
    /// Finds what this host offers, under `group` (e.g. `drover/n1-3f2a`), creating the parent
    /// directories. Never fails: what is missing is reported in `isolation`.
    pub fn detect(group: &str) -> Host {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root = Path::new(ROOT);
        let unified_only = root.join("cgroup.controllers").exists();
        let mut dirs = Vec::new();
        let mut isolation = Isolation {
            version: "none".into(),
            ..Isolation::default()
        };
        if unified_only {
            let own_path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let controllers =
                fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let wanted = |enabled: &str| {
                ["cpuset", "memory"]
                    .iter()
                    .filter(|c| controllers.contains(*c))
                    .all(|c| enabled.contains(c))
            };
            // Under the daemon's own cgroup first (a delegated subtree, as systemd's
            // Delegate=yes gives). Its own cgroup holds processes, which v2 forbids to give
            // controllers to children unless it is the root: then, as root, a tree of our own
            // directly under the root (Slurm's cgroup/v2 with IgnoreSystemd=yes does the same).
            let under_own = root.join(own_path.trim_start_matches('/')).join(group);
            let under_root = root.join(group);
            let count = |enabled: &str| {
                ["cpuset", "memory"]
                    .iter()
                    .filter(|c| controllers.contains(*c) && enabled.contains(*c))
                    .count()
            };
            // The first that gives every controller the root has, else the one giving most.
            let mut base: Option<(PathBuf, String)> = None;
            for candidate in [under_own, under_root] {
                if make_v2_parents(root, &candidate).is_ok() {
                    let enabled = fs::read_to_string(candidate.join("cgroup.subtree_control"))
                        .unwrap_or_default();
                    let good = wanted(&enabled);
                    if base
                        .as_ref()
                        .is_none_or(|(_, best)| count(&enabled) > count(best))
                    {
                        base = Some((candidate, enabled));
                    }
                    if good {
                        break;
                    }
                }
            }
            if let Some((base, enabled)) = base {
                isolation.version = "v2".into();
                isolation.cpuset = controllers.contains("cpuset") && enabled.contains("cpuset");
                isolation.memory = controllers.contains("memory") && enabled.contains("memory");
                isolation.cpuacct = true; // cpu.stat is always there
                isolation.devices = false; // needs an eBPF program (stack.md §5)
                dirs.push(("unified".into(), base));
            }
            return Host {
                dirs,
                v2: true,
                isolation,
            };
        }
        for controller in ["cpuset", "memory", "cpuacct", "devices"] {
            let mount = root.join(controller);
            if !mount.join("cgroup.procs").exists() {
                continue;
            }
            let own_path = own
                .lines()
                .find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let _id = parts.next()?;
                    let names = parts.next()?;
                    let path = parts.next()?;
                    names.split(',').any(|n| n == controller).then_some(path)
                })
                .unwrap_or("/");
            let base = mount.join(own_path.trim_start_matches('/')).join(group);
            if let Err(e) = make_v1_parents(&mount, &base, controller == "cpuset") {
                tracing::warn!(controller, error = %e, "cgroup controller not usable");
                continue;
            }
            match controller {
                "cpuset" => isolation.cpuset = true,
                "memory" => isolation.memory = true,
                "cpuacct" => isolation.cpuacct = true,
                _ => isolation.devices = true,
            }
            dirs.push((controller.to_string(), base));
        }
        if !dirs.is_empty() {
            isolation.version = "v1".into();
        }
        Host {
            dirs,
            v2: false,
            isolation,
        }
    }

    /// The cgroup of job `job_id`, created with `limits` applied, or `None` on a host without
    /// usable cgroups.
    pub fn create(&self, job_id: u64, limits: &Limits) -> io::Result<Option<Box<dyn JobCgroup>>> {
        if self.dirs.is_empty() {
            return Ok(None);
        }
        let name = format!("job_{job_id}");
        if self.v2 {
            let dir = self.dirs[0].1.join(&name);
            mkdir(&dir)?;
            let cg = V2 { dir };
            if self.isolation.cpuset && !limits.cpus.is_empty() {
                write(&cg.dir.join("cpuset.cpus"), &cpu_list(&limits.cpus))?;
            }
            if self.isolation.memory && limits.mem_mb > 0 {
                let bytes = limits.mem_mb.saturating_mul(1 << 20).to_string();
                write(&cg.dir.join("memory.max"), &bytes)?;
                let _ = write(&cg.dir.join("memory.swap.max"), "0");
            }
            return Ok(Some(Box::new(cg)));
        }
        let mut dirs = Vec::new();
        for (controller, base) in &self.dirs {
            // A devices cgroup that would restrict nothing is not made (a directory to make,
            // join and remove per job, for nothing).
            if controller == "devices" && limits.gpu_minors.is_none() {
                continue;
            }
            let dir = base.join(&name);
            mkdir(&dir)?;
            match controller.as_str() {
                "cpuset" => {
                    // Before its CPUs are set: a cpuset that balances load on its own makes
                    // the kernel rebuild the scheduling domains when its CPUs are set and
                    // again when it is removed. The root cpuset balances across every CPU,
                    // so a job's setting changes nothing else.
                    let _ = write(&dir.join("cpuset.sched_load_balance"), "0");
                    let cpus = if limits.cpus.is_empty() {
                        fs::read_to_string(base.join("cpuset.cpus"))?
                    } else {
                        cpu_list(&limits.cpus)
                    };
                    write(&dir.join("cpuset.cpus"), cpus.trim())?;
                    let mems = fs::read_to_string(base.join("cpuset.mems"))?;
                    write(&dir.join("cpuset.mems"), mems.trim())?;
                }
                "memory" if limits.mem_mb > 0 => {
                    let bytes = limits.mem_mb.saturating_mul(1 << 20).to_string();
                    write(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    // No swap beyond the limit, where swap accounting exists.
                    let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes);
                }
                "devices" => {
                    if let Some(minors) = &limits.gpu_minors {
                        write(
                            &dir.join("devices.deny"),
                            &format!("c {NVIDIA_MAJOR}:* rwm"),
                        )?;
                        for m in minors.iter().chain([&255]) {
                            write(
                                &dir.join("devices.allow"),
                                &format!("c {NVIDIA_MAJOR}:{m} rwm"),
                            )?;
                        }
                    }
                }
                _ => {}
            }
            dirs.push((controller.clone(), dir));
        }
        Ok(Some(Box::new(V1 { dirs })))
    }
}

impl Host {
    /// The `cgroup.procs` of job `job_id`'s cgroup when it exists on this node (made by the
    /// job's supervisor on its batch host), to put a step's tasks in it; `None` elsewhere.
    pub fn attach_existing(&self, job_id: u64) -> io::Result<Option<AttachFds>> {
        let name = format!("job_{job_id}");
        // Those the job has: a job restricted to no devices has no devices cgroup.
        let dirs: Vec<PathBuf> = self
            .dirs
            .iter()
            .map(|(_, base)| base.join(&name))
            .filter(|d| d.is_dir())
            .collect();
        if dirs.is_empty() {
            return Ok(None);
        }
        let mut fds = Vec::new();
        for dir in dirs {
            let f = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?;
            fds.push(OwnedFd::from(f));
        }
        Ok(Some(AttachFds(fds)))
    }

    /// Removes this daemon's group directories when no job cgroup is left in them (at a clean
    /// shutdown); a group still holding jobs stays, silently.
    pub fn remove_group_if_empty(&self) {
        for (_, dir) in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

struct V1 {
    dirs: Vec<(String, PathBuf)>,
}

impl V1 {
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }
}

impl JobCgroup for V1 {
    fn attach_fds(&self) -> io::Result<AttachFds> {
        let mut fds = Vec::new();
        for (_, dir) in &self.dirs {
            let f = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?;
            fds.push(OwnedFd::from(f));
        }
        Ok(AttachFds(fds))
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for (_, dir) in &self.dirs {
            pids.extend(read_pids(dir));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn usage(&self) -> Usage {
        let mut u = Usage::default();
        if let Some(dir) = self.dir("memory") {
            u.max_rss_kb = read_u64(&dir.join("memory.max_usage_in_bytes")) / 1024;
            let oom = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
            u.oom_killed = key_value(&oom, "oom_kill") > 0;
        }
        if let Some(dir) = self.dir("cpuacct") {
            u.total_cpu_ms = read_u64(&dir.join("cpuacct.usage")) / 1_000_000;
        }
        u
    }

    fn remove(&self) {
        for (_, dir) in &self.dirs {
            rmdir(dir);
        }
    }
}

struct V2 {
    dir: PathBuf,
}

impl JobCgroup for V2 {
    fn attach_fds(&self) -> io::Result<AttachFds> {
        let f = OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(AttachFds(vec![OwnedFd::from(f)]))
    }

    fn pids(&self) -> Vec<u32> {
        read_pids(&self.dir)
    }

    fn usage(&self) -> Usage {
        let events = fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        let stat = fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        Usage {
            max_rss_kb: read_u64(&self.dir.join("memory.peak")) / 1024,
            total_cpu_ms: key_value(&stat, "usage_usec") / 1000,
            oom_killed: key_value(&events, "oom_kill") > 0,
        }
    }

    fn remove(&self) {
        rmdir(&self.dir);
    }
}

/// The id of a CPU list, `0-3,8` → `[0,1,2,3,8]`.
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

/// `[0,1,2,5]` → `0,1,2,5` (the kernel accepts plain lists).
pub fn cpu_list(cpus: &[u32]) -> String {
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Picks `n` of `host` CPUs, the least used first (ties: lowest id). `used[i]` counts the jobs
/// on `host[i]`. More CPUs asked than the host has (a node configured larger than the
/// machine, as in tests) wraps around: every host CPU, some of them shared.
pub fn pick_cpus(n: u32, host: &[u32], used: &dyn Fn(u32) -> u32) -> Vec<u32> {
    if host.is_empty() || n == 0 {
        return Vec::new();
    }
    let mut order: Vec<u32> = host.to_vec();
    order.sort_by_key(|&c| (used(c), c));
    let take = (n as usize).min(order.len());
    let mut picked: Vec<u32> = order[..take].to_vec();
    picked.sort_unstable();
    picked
}

/// CPUs this process may use (the cpuset it was started in).
pub fn host_cpus() -> Vec<u32> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(parse_cpu_list)
        .unwrap_or_default()
}

fn make_v1_parents(mount: &Path, base: &Path, cpuset: bool) -> io::Result<()> {
    let rel = base.strip_prefix(mount).map_err(io::Error::other)?;
    let mut dir = mount.to_path_buf();
    for part in rel.components() {
        let parent = dir.clone();
        dir.push(part);
        if !dir.exists() {
            mkdir(&dir)?;
        }
        if cpuset {
            // A v1 cpuset child starts empty and takes no task until both are set.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(dir.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(file))?;
                    write(&dir.join(file), theirs.trim())?;
                }
            }
        }
    }
    // Writable? (read-only mounts and unprivileged daemons end here)
    let probe = base.join("cgroup.procs");
    OpenOptions::new().write(true).open(probe).map(drop)
}

fn make_v2_parents(root: &Path, base: &Path) -> io::Result<()> {
    let rel = base.strip_prefix(root).map_err(io::Error::other)?;
    let mut dir = root.to_path_buf();
    // Each controller on its own: one that a level lacks must not keep the other off.
    let delegate = |dir: &Path| {
        for c in ["+cpuset", "+memory"] {
            let _ = write(&dir.join("cgroup.subtree_control"), c);
        }
    };
    for part in rel.components() {
        // Delegate the controllers one level down (the parent must not hold processes).
        delegate(&dir);
        dir.push(part);
        if !dir.exists() {
            mkdir(&dir)?;
        }
    }
    delegate(&dir);
    OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map(drop)
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn rmdir(dir: &Path) {
    if let Err(e) = fs::remove_dir(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the job's cgroup");
        }
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_pids(dir: &Path) -> Vec<u32> {
    File::open(dir.join("cgroup.procs"))
        .and_then(io::read_to_string)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `key N` lines (memory.oom_control, memory.events, cpu.stat).
fn key_value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8\n"), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(cpu_list(&[0, 2]), "0,2");
    }

    #[test]
    fn picks_least_used_cpus_and_wraps_when_asked_for_more() {
        let host = [0, 1, 2, 3];
        let used = |c: u32| u32::from(c < 2);
        assert_eq!(pick_cpus(2, &host, &used), vec![2, 3]);
        assert_eq!(pick_cpus(3, &host, &used), vec![0, 2, 3]);
        assert_eq!(pick_cpus(9, &host, &|_| 0), vec![0, 1, 2, 3]);
        assert!(pick_cpus(0, &host, &|_| 0).is_empty());
    }

    #[test]
    fn key_values_of_cgroup_files() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(key_value(oom, "oom_kill"), 2);
        assert_eq!(key_value(oom, "missing"), 0);
    }

    #[test]
    fn isolation_says_what_is_missing() {
        let i = Isolation {
            version: "v1".into(),
            cpuset: true,
            memory: true,
            cpuacct: true,
            devices: false,
        };
        assert_eq!(
            i.describe(),
            "cgroup v1: cpuset memory cpuacct (not enforced: devices)"
        );
        assert!(Isolation::default()
            .describe()
            .starts_with("no usable cgroups"));
    }
}
