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
//! On v1, a job's cgroup is reused by the next job of its slot: see [`Host::create`] and
//! [`JobCgroup::release`].
//!
//! A controller that is missing or not writable is left out, and [`Isolation`] says so: the
//! node registers and logs what it really enforces, never more.
//!
//! Processes join race-free: the launcher's `pre_exec` calls [`AttachFds::attach_self`], which
//! writes `0` ("the writer") into each `cgroup.procs` through descriptors opened before the
//! fork, so the job never runs a single instruction outside its cgroup.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
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
    /// Done with the cgroup: removes its directories, or (v1, a job given a slot) resets
    /// them and keeps them as the slot's spare for the node's next job. `emptied`: the caller
    /// saw no process left in it (else it looks itself); a cgroup that still holds one is
    /// never kept.
    fn release(&self, emptied: bool);
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
    /// usable cgroups. What it made before a step failed is removed again.
    ///
    /// `slot`: the job's cgroup slot on this node, given by the daemon, unique among the
    /// node's running jobs. On v1, the spare that an earlier job of the slot left
    /// ([`JobCgroup::release`]) is renamed to the job's name and reused: a `mkdir` and
    /// `rmdir` per controller and job cost the kernel more than renaming, resetting and
    /// limiting a spare (cgroupfs builds and tears down every control file of a new
    /// cgroup). v2 cannot rename a cgroup, and makes each job's afresh.
    pub fn create(
        &self,
        job_id: u64,
        limits: &Limits,
        slot: Option<u32>,
    ) -> io::Result<Option<Box<dyn JobCgroup>>> {
        if self.dirs.is_empty() {
            return Ok(None);
        }
        let name = format!("job_{job_id}");
        if self.v2 {
            let base = CgDir::open(&self.dirs[0].1)?;
            let dir = base.make_child(&name)?;
            let cg = V2 { name, base, dir };
            let limited = (|| {
                if self.isolation.cpuset && !limits.cpus.is_empty() {
                    cg.dir.write("cpuset.cpus", &cpu_list(&limits.cpus))?;
                }
                if self.isolation.memory && limits.mem_mb > 0 {
                    let bytes = limits.mem_mb.saturating_mul(1 << 20).to_string();
                    cg.dir.write("memory.max", &bytes)?;
                    let _ = cg.dir.write("memory.swap.max", "0");
                }
                Ok(())
            })();
            return match limited {
                Ok(()) => Ok(Some(Box::new(cg))),
                Err(e) => {
                    cg.release(true);
                    Err(e)
                }
            };
        }
        let mut cg = V1 {
            name,
            dirs: Vec::new(),
            mem_limited: limits.mem_mb > 0,
            oom_kills_before: 0,
        };
        for (controller, base) in &self.dirs {
            // A devices cgroup that would restrict nothing is not made (a directory to make,
            // join and remove per job, for nothing).
            if controller == "devices" && limits.gpu_minors.is_none() {
                continue;
            }
            let slot = slot.filter(|_| POOLED.contains(&controller.as_str()));
            let made = CgDir::open(base).and_then(|base| {
                let spare = match slot {
                    Some(k) => base.take_spare(&spare_name(k), &cg.name)?,
                    None => None,
                };
                let fresh = spare.is_none();
                let dir = match spare {
                    Some(dir) => dir,
                    None => base.make_child(&cg.name)?,
                };
                Ok((base, dir, fresh))
            });
            let (base, dir, fresh) = match made {
                Ok(made) => made,
                Err(e) => {
                    cg.release(true);
                    return Err(e);
                }
            };
            cg.dirs.push(V1Dir {
                controller: controller.clone(),
                base,
                dir,
                slot,
            });
            let d = cg.dirs.last().expect("just pushed");
            let limited = limit_v1(controller, &d.base, &d.dir, limits, fresh);
            if let Err(e) = limited {
                cg.release(true);
                return Err(e);
            }
            if controller == "memory" && !fresh {
                // A spare's OOM kill count is its earlier jobs': this job's are those after.
                let oom = d.dir.read("memory.oom_control").unwrap_or_default();
                cg.oom_kills_before = key_value(&oom, "oom_kill");
            }
        }
        Ok(Some(Box::new(cg)))
    }
}

/// The v1 controllers whose job cgroups are kept for reuse (see [`JobCgroup::release`]);
/// the devices cgroup, made for GPU jobs only, is not.
const POOLED: [&str; 3] = ["cpuset", "memory", "cpuacct"];
/// A memory cgroup with more than this still charged to it (page cache its job left) is
/// removed rather than emptied and kept.
const SPARE_MAX_CHARGED: u64 = 16 << 20;
/// A memory cgroup with at most this charged when its job ends is kept as it is, not
/// emptied: what a short job leaves is mostly the kernel's per-CPU charge batches and a few
/// slab objects, not page cache, and `memory.force_empty` runs a reclaim pass over the whole
/// cgroup (its dentries and inodes too) for it. The slot's next job starts with at most this
/// much charged and counted in its peak.
const SPARE_KEPT_AS_IS: u64 = 1 << 20;
/// Idle job cgroups kept for reuse are named `spare_<slot>`.
const SPARE_PREFIX: &str = "spare_";

fn spare_name(slot: u32) -> String {
    format!("{SPARE_PREFIX}{slot}")
}

/// Applies `limits` to the v1 cgroup `dir` of `controller` under `base`: a `fresh` one, just
/// made, or a spare, which keeps what every job's cgroup has alike (and no limit).
fn limit_v1(
    controller: &str,
    base: &CgDir,
    dir: &CgDir,
    limits: &Limits,
    fresh: bool,
) -> io::Result<()> {
    match controller {
        "cpuset" => {
            // Before its CPUs are set: a cpuset that balances load on its own makes the kernel
            // rebuild the scheduling domains when its CPUs are set and again when it is
            // removed. The root cpuset balances across every CPU, so a job's setting changes
            // nothing else.
            if fresh {
                let _ = dir.write("cpuset.sched_load_balance", "0");
            }
            let cpus = if limits.cpus.is_empty() {
                base.read("cpuset.cpus")?
            } else {
                cpu_list(&limits.cpus)
            };
            dir.write("cpuset.cpus", cpus.trim())?;
            if fresh {
                let mems = base.read("cpuset.mems")?;
                dir.write("cpuset.mems", mems.trim())?;
            }
        }
        "memory" => {
            if limits.mem_mb > 0 {
                let bytes = limits.mem_mb.saturating_mul(1 << 20).to_string();
                dir.write("memory.limit_in_bytes", &bytes)?;
                // No swap beyond the limit, where swap accounting exists.
                let _ = dir.write("memory.memsw.limit_in_bytes", &bytes);
            }
            if !fresh {
                // The earlier jobs' peak.
                dir.write("memory.max_usage_in_bytes", "0")?;
            }
        }
        "cpuacct" if !fresh => dir.write("cpuacct.usage", "0")?,
        "devices" if fresh => {
            if let Some(minors) = &limits.gpu_minors {
                dir.write("devices.deny", &format!("c {NVIDIA_MAJOR}:* rwm"))?;
                for m in minors.iter().chain([&255]) {
                    dir.write("devices.allow", &format!("c {NVIDIA_MAJOR}:{m} rwm"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
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
            // The spares first: idle, and made again by the next jobs.
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(SPARE_PREFIX)
                {
                    let _ = fs::remove_dir(entry.path());
                }
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A job's v1 cgroup: one directory per controller.
struct V1 {
    name: String,
    dirs: Vec<V1Dir>,
    /// The job set a memory limit (which its spare must not keep).
    mem_limited: bool,
    /// The memory cgroup's `oom_kill` count when the job got it (a spare keeps its count).
    oom_kills_before: u64,
}

struct V1Dir {
    controller: String,
    /// Where the job's directory is.
    base: CgDir,
    dir: CgDir,
    /// The slot whose spare it becomes once the job is over (`None`: it is removed).
    slot: Option<u32>,
}

impl V1 {
    fn dir(&self, controller: &str) -> Option<&CgDir> {
        self.dirs
            .iter()
            .find(|d| d.controller == controller)
            .map(|d| &d.dir)
    }

    /// Makes the job's memory cgroup ready to be a spare: no limit, no page charged (its
    /// usage counters are reset when the next job takes it).
    fn reset(&self, d: &V1Dir) -> io::Result<()> {
        match d.controller.as_str() {
            "memory" => {
                if self.mem_limited {
                    // The swap limit first: it may never be below the memory limit.
                    let _ = d.dir.write("memory.memsw.limit_in_bytes", "-1");
                    d.dir.write("memory.limit_in_bytes", "-1")?;
                }
                // Pages the job left in the page cache would count for the next job: a few
                // are reclaimed here; more are left in the cache (for the next job that reads
                // the same files) with the cgroup removed, its pages going to the parent; a
                // mere trace is left where it is (`SPARE_KEPT_AS_IS`).
                let charged = read_u64(&d.dir, "memory.usage_in_bytes");
                if charged > SPARE_MAX_CHARGED {
                    return Err(io::Error::other(format!(
                        "{charged} bytes still charged to it"
                    )));
                }
                if charged > SPARE_KEPT_AS_IS {
                    d.dir.write("memory.force_empty", "0")?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl JobCgroup for V1 {
    fn attach_fds(&self) -> io::Result<AttachFds> {
        let fds = self
            .dirs
            .iter()
            .map(|d| d.dir.open_write("cgroup.procs"))
            .collect::<io::Result<_>>()?;
        Ok(AttachFds(fds))
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for d in &self.dirs {
            pids.extend(read_pids(&d.dir));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn usage(&self) -> Usage {
        let mut u = Usage::default();
        if let Some(dir) = self.dir("memory") {
            u.max_rss_kb = read_u64(dir, "memory.max_usage_in_bytes") / 1024;
            let oom = dir.read("memory.oom_control").unwrap_or_default();
            u.oom_killed = key_value(&oom, "oom_kill") > self.oom_kills_before;
        }
        if let Some(dir) = self.dir("cpuacct") {
            u.total_cpu_ms = read_u64(dir, "cpuacct.usage") / 1_000_000;
        }
        u
    }

    fn release(&self, emptied: bool) {
        let emptied = emptied || self.pids().is_empty();
        for d in &self.dirs {
            if let Some(slot) = d.slot.filter(|_| emptied) {
                let kept = self
                    .reset(d)
                    .and_then(|()| d.base.rename_child(&self.name, &spare_name(slot)));
                match kept {
                    Ok(()) => continue,
                    Err(e) => tracing::debug!(controller = %d.controller, error = %e,
                        "the job's cgroup is not kept for reuse"),
                }
            }
            d.base.remove_child(&self.name);
        }
    }
}

struct V2 {
    name: String,
    base: CgDir,
    dir: CgDir,
}

impl JobCgroup for V2 {
    fn attach_fds(&self) -> io::Result<AttachFds> {
        Ok(AttachFds(vec![self.dir.open_write("cgroup.procs")?]))
    }

    fn pids(&self) -> Vec<u32> {
        read_pids(&self.dir)
    }

    fn usage(&self) -> Usage {
        let events = self.dir.read("memory.events").unwrap_or_default();
        let stat = self.dir.read("cpu.stat").unwrap_or_default();
        Usage {
            max_rss_kb: read_u64(&self.dir, "memory.peak") / 1024,
            total_cpu_ms: key_value(&stat, "usage_usec") / 1000,
            oom_killed: key_value(&events, "oom_kill") > 0,
        }
    }

    fn release(&self, _emptied: bool) {
        self.base.remove_child(&self.name);
    }
}

/// A cgroup directory held open (`O_PATH`). A job's cgroup files are opened relative to it:
/// one walk down the deep cgroupfs path per controller, not one per file.
struct CgDir {
    path: PathBuf,
    fd: OwnedFd,
}

#[allow(unsafe_code)]
impl CgDir {
    fn open(path: &Path) -> io::Result<CgDir> {
        Ok(CgDir {
            fd: open_dir(libc::AT_FDCWD, path).map_err(|e| named(e, path))?,
            path: path.to_path_buf(),
        })
    }

    /// The directory `name` in this one, opened.
    fn child(&self, name: &str) -> io::Result<CgDir> {
        let path = self.path.join(name);
        Ok(CgDir {
            fd: open_dir(self.fd.as_raw_fd(), Path::new(name)).map_err(|e| named(e, &path))?,
            path,
        })
    }

    /// Makes the directory `name` in this one (there already: taken as it is) and opens it.
    fn make_child(&self, name: &str) -> io::Result<CgDir> {
        let c = c_path(Path::new(name))?;
        // SAFETY: mkdirat(2) relative to our open directory, NUL-terminated name.
        if unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(named(e, &self.path.join(name)));
            }
        }
        self.child(name)
    }

    /// The spare cgroup `spare` in this one, renamed to `name`; `None` when there is none, or
    /// when a process is in it (a step task started for the spare's last job in the instant
    /// it was released): then the spare stays as it is, and the job makes a new cgroup.
    fn take_spare(&self, spare: &str, name: &str) -> io::Result<Option<CgDir>> {
        let Some(dir) = self.take_child(spare, name) else {
            return Ok(None);
        };
        if read_pids(&dir).is_empty() {
            return Ok(Some(dir));
        }
        drop(dir);
        // Given back, or the job would take the process's cgroup as its own.
        self.rename_child(name, spare)?;
        Ok(None)
    }

    /// Renames the directory `spare` in this one to `name` and opens it; `None` when that
    /// cannot be done (no such spare).
    fn take_child(&self, spare: &str, name: &str) -> Option<CgDir> {
        self.rename_child(spare, name).ok()?;
        match self.child(name) {
            Ok(dir) => Some(dir),
            Err(_) => {
                // Renamed but not opened: give the spare back.
                let _ = self.rename_child(name, spare);
                None
            }
        }
    }

    /// Renames the directory `from` in this one to `to`. cgroupfs refuses (EEXIST) to rename
    /// over an existing cgroup.
    fn rename_child(&self, from: &str, to: &str) -> io::Result<()> {
        let (from_c, to_c) = (c_path(Path::new(from))?, c_path(Path::new(to))?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: renameat(2) within our open directory, NUL-terminated names.
        if unsafe { libc::renameat(fd, from_c.as_ptr(), fd, to_c.as_ptr()) } != 0 {
            return Err(named(io::Error::last_os_error(), &self.path.join(from)));
        }
        Ok(())
    }

    /// Removes the (empty) directory `name` in this one; gone already is fine.
    fn remove_child(&self, name: &str) {
        let Ok(c) = c_path(Path::new(name)) else {
            return;
        };
        // SAFETY: unlinkat(2) relative to our open directory, NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                let dir = self.path.join(name);
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the job's cgroup");
            }
        }
    }

    fn open_file(&self, file: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = c_path(Path::new(file))?;
        // SAFETY: openat(2) relative to our open directory; the result is checked and owned.
        let fd = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
        owned(fd).map_err(|e| named(e, &self.path.join(file)))
    }

    fn open_write(&self, file: &str) -> io::Result<OwnedFd> {
        self.open_file(file, libc::O_WRONLY)
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        let mut f = File::from(self.open_write(file)?);
        f.write_all(value.as_bytes())
            .map_err(|e| named(e, &self.path.join(file)))
    }

    fn read(&self, file: &str) -> io::Result<String> {
        read_kernel_file(File::from(self.open_file(file, libc::O_RDONLY)?))
    }
}

/// Reads a small kernel file (cgroupfs, procfs) whole, into one buffer: no size probe and no
/// small first reads, as `read_to_string` makes on files that report no size.
pub(crate) fn read_kernel_file(mut file: File) -> io::Result<String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(io::Error::other)
}

/// Opens directory `path` (relative to `dirfd`) as an `O_PATH` handle; the error does not
/// name it.
#[allow(unsafe_code)]
fn open_dir(dirfd: RawFd, path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: openat(2) with a NUL-terminated path; the result is checked and owned.
    let fd = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

#[allow(unsafe_code)]
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned to us by the kernel, owned by no one else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
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

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| named(e, path))
}

fn read_u64(dir: &CgDir, file: &str) -> u64 {
    dir.read(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_pids(dir: &CgDir) -> Vec<u32> {
    dir.read("cgroup.procs")
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

    /// Starts `script` as job `job_id` inside `cg`.
    fn start_in(
        cg: &dyn JobCgroup,
        job_id: u64,
        script: &str,
        dir: &Path,
    ) -> crate::launcher::LaunchedJob {
        let attach = cg.attach_fds().expect("open cgroup.procs");
        let a = drover_proto::Assignment {
            job_id,
            script: script.into(),
            work_dir: dir.to_string_lossy().into_owned(),
            stdout: "/dev/null".into(),
            ..drover_proto::Assignment::default()
        };
        let ctx = crate::launcher::LaunchContext {
            node_name: "n1",
            state_dir: &dir.join("state"),
        };
        let setup = crate::launcher::JobSetup {
            cgroup: Some(&attach),
            extra_env: Vec::new(),
            user: None,
        };
        crate::launcher::launch(&a, &ctx, setup).expect("launch")
    }

    fn kill(job: &mut crate::launcher::LaunchedJob) {
        crate::launcher::signal_job(job.pid, &[], libc::SIGKILL);
        job.child.wait().expect("wait");
    }

    /// Runs `script` as job `job_id` inside `cg`; returns once it has exited.
    fn run_in(cg: &dyn JobCgroup, job_id: u64, script: &str, dir: &Path) {
        let mut job = start_in(cg, job_id, script, dir);
        assert!(job.child.wait().expect("wait").success());
    }

    /// Real v1 cgroups: a job's cgroup, once released empty, is its slot's spare, and the
    /// slot's next job gets it back reset (no limit, usage or peak of the first job); one
    /// that still holds a process is not kept; the spares go with the group. Skipped without
    /// root or v1 cgroups.
    #[test]
    fn a_released_cgroup_is_reused_reset_by_the_next_job_of_its_slot() {
        if !crate::launcher::running_as_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let host = Host::detect(&format!("drover-test/{}-pool", std::process::id()));
        if host.isolation.version != "v1" {
            eprintln!("SKIPPED: no v1 cgroups ({})", host.isolation.describe());
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let pooled: Vec<PathBuf> = host
            .dirs
            .iter()
            .filter(|(c, _)| POOLED.contains(&c.as_str()))
            .map(|(_, base)| base.clone())
            .collect();
        let exist = |name: &str| pooled.iter().all(|base| base.join(name).is_dir());
        let none = |name: &str| pooled.iter().all(|base| !base.join(name).exists());
        let cpus = host_cpus();
        let make = |job_id: u64, limits: &Limits, slot: u32| {
            host.create(job_id, limits, Some(slot))
                .expect("create")
                .expect("a cgroup")
        };

        let first = Limits {
            cpus: vec![cpus[0]],
            mem_mb: 64,
            gpu_minors: None,
        };
        let cg = make(101, &first, 0);
        assert!(exist("job_101") && none("spare_0"));
        // Some CPU time and memory for the first job to leave behind, and 4 MB of page cache:
        // more than a spare keeps as it is, less than makes it go.
        let burn = "#!/bin/sh\ni=0; while [ $i -lt 30000 ]; do i=$((i+1)); done\n\
                    head -c 4000000 /dev/zero > cached4\n";
        run_in(cg.as_ref(), 101, burn, tmp.path());
        let used = cg.usage();
        assert!(used.total_cpu_ms > 0 && used.max_rss_kb > 0, "{used:?}");
        cg.release(true);
        assert!(exist("spare_0") && none("job_101"));

        let second = Limits {
            cpus: vec![*cpus.last().expect("a CPU")],
            mem_mb: 0,
            gpu_minors: None,
        };
        let cg = make(102, &second, 0);
        assert!(
            exist("job_102") && none("spare_0"),
            "the spare was not taken"
        );
        let fresh = cg.usage();
        assert_eq!(fresh.total_cpu_ms, 0, "{fresh:?}");
        assert!(!fresh.oom_killed);
        assert!(
            fresh.max_rss_kb < used.max_rss_kb && fresh.max_rss_kb <= SPARE_KEPT_AS_IS / 1024,
            "the first job's page cache stayed charged: {fresh:?} after {used:?}"
        );
        let v1_dir = |c: &str, file: &str| {
            let (_, base) = host.dirs.iter().find(|(n, _)| n == c).expect(c);
            fs::read_to_string(base.join("job_102").join(file)).expect(file)
        };
        assert_eq!(
            v1_dir("cpuset", "cpuset.cpus").trim(),
            cpu_list(&second.cpus)
        );
        let limit: u64 = v1_dir("memory", "memory.limit_in_bytes")
            .trim()
            .parse()
            .unwrap();
        assert!(
            limit > 1 << 40,
            "the first job's memory limit stayed: {limit}"
        );
        run_in(cg.as_ref(), 102, "#!/bin/sh\ntrue\n", tmp.path());
        cg.release(false);
        assert!(exist("spare_0") && none("job_102"));

        // A process still inside: the cgroup is not made a spare.
        let cg = make(103, &second, 1);
        let mut sleeper = start_in(cg.as_ref(), 103, "#!/bin/sh\nexec sleep 30\n", tmp.path());
        cg.release(false);
        assert!(exist("job_103") && none("spare_1"));
        kill(&mut sleeper);
        cg.release(false);
        assert!(exist("spare_1") && none("job_103"));

        // A process that got into a job's cgroup after its supervisor found it empty (a step
        // task started in that instant) is in the spare: the slot's next job does not take it.
        let cg = make(105, &second, 1);
        let mut stray = start_in(cg.as_ref(), 105, "#!/bin/sh\nexec sleep 30\n", tmp.path());
        cg.release(true);
        assert!(exist("spare_1") && none("job_105"));
        let cg = make(106, &second, 1);
        assert!(
            exist("job_106") && exist("spare_1"),
            "a spare holding a process was taken"
        );
        assert!(cg.pids().is_empty());
        cg.release(true);
        kill(&mut stray);
        let cg = make(107, &second, 1);
        assert!(
            exist("job_107") && none("spare_1"),
            "the emptied spare is taken again"
        );
        assert_eq!(cg.usage().total_cpu_ms, 0);
        cg.release(true);

        // A job that leaves much in the page cache: its memory cgroup is removed (the cache
        // stays, charged to the parent), the others are kept.
        let cg = make(104, &second, 2);
        let fill = "#!/bin/sh\nhead -c 20000000 /dev/zero > cached\n";
        run_in(cg.as_ref(), 104, fill, tmp.path());
        cg.release(true);
        let (_, memory) = host
            .dirs
            .iter()
            .find(|(c, _)| c == "memory")
            .expect("memory");
        assert!(!memory.join("spare_2").exists() && !memory.join("job_104").exists());
        let (_, cpuset) = host
            .dirs
            .iter()
            .find(|(c, _)| c == "cpuset")
            .expect("cpuset");
        assert!(cpuset.join("spare_2").is_dir());

        host.remove_group_if_empty();
        assert!(host.dirs.iter().all(|(_, base)| !base.exists()));
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
