//! The job supervisor (Slurm's `slurmstepd`): one process per running job, in a process group
//! of its own, forked by the daemon's zygote (`launcher::Zygote`; `drover-stepd supervise
//! --state-dir DIR --job ID` runs one directly). It owns the job's processes, so a
//! daemon that dies (`kill -9`), restarts or is upgraded never takes a job with it.
//!
//! ```text
//!  daemon                                   supervisor (jobs/<id>/)
//!  write assignment.pb, supervise.json ──►  read them; bind sock; create the cgroup
//!  zygote forks it (own process group) ──►  launch the script (joins the cgroup before exec)
//!  connect sock ◄── "running <pid>" ─────   accept any number of daemons, one after another
//!  "stop" ─────────────────────────────►    SIGTERM, KillWait, SIGKILL (cause: cancelled)
//!                                           time limit: stderr line, SIGTERM, KillWait, SIGKILL
//!                                           child exit (pidfd, no timer) → kill leftovers,
//!                                           read usage/OOM, write status.json atomically
//!               ◄── "ended" ─────────────   then exit
//!  read status.json → FINISHED report
//! ```
//!
//! A job without a batch script (srun's own allocation, `BatchFlag=0`) launches nothing: the
//! supervisor reports `running 0`, holds the job's cgroup (where the `Tasks` service puts the
//! step's tasks) and its time limit, and ends once asked to stop, or at the limit, when its
//! cgroup is empty (or after KillWait's SIGKILL). Its status then carries only the cause; the
//! job's outcome is srun's (`Command::CompleteAllocation`). So a time limit, `scancel` and a
//! daemon restart go through the same machinery as for a batch job.
//!
//! The final status is on disk before anyone is told, so a daemon that was away when the job
//! ended finds it at its next start (and `state.rs`'s finished set makes the report go out
//! exactly once). A daemon that starts again finds running supervisors by their sockets.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_proto::Assignment;
use prost::Message as _;
use serde::{Deserialize, Serialize};
// The daemon's side (`attach`, `follow`) is async; the supervisor's is not.
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use crate::cgroup::{self, JobCgroup, Limits};
use crate::launcher::{self, JobSetup, LaunchContext};
use crate::state::write_replace;

pub const ASSIGNMENT_FILE: &str = "assignment.pb";
pub const SPEC_FILE: &str = "supervise.json";
pub const STATUS_FILE: &str = "status.json";
pub const SUPERVISOR_FILE: &str = "supervisor.json";
pub const SOCKET_FILE: &str = "sock";

/// What the daemon tells a supervisor besides the assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuperviseSpec {
    pub node_name: String,
    /// Slurm's KillWait: between SIGTERM and SIGKILL.
    pub kill_wait_ms: u64,
    /// Unix time at which the job's time limit is reached; `None`: unlimited.
    pub deadline_unix_s: Option<i64>,
    /// The cgroup all jobs of this daemon go under (`drover/<node>-<hash>`).
    pub cgroup_group: String,
    pub limits: Limits,
    /// Global indices of the GPUs allocated to the job.
    pub gpus: Vec<u32>,
    /// True when the GPUs are real devices, restricted by the devices cgroup: the job then
    /// sees them renumbered from 0, as in Slurm.
    pub gpus_constrained: bool,
    /// The run (times requeued): read back when the daemon re-attaches.
    #[serde(default)]
    pub restarts: u32,
    /// `sbatch --signal`: (signal, seconds before the time limit, to the batch shell only).
    #[serde(default)]
    pub warning: Option<(i32, u32, bool)>,
    /// The cgroup layout the daemon found (absent: the supervisor looks itself).
    #[serde(default)]
    pub cgroups: Option<cgroup::Host>,
    /// The job's user as the daemon looked it up (absent: the supervisor looks itself).
    #[serde(default)]
    pub user: Option<crate::users::JobUser>,
    /// The job's cgroup slot on the node (see `cgroup::Host::create`); absent: none.
    #[serde(default)]
    pub cgroup_slot: Option<u32>,
}

/// What a daemon may ask of a supervisor, one line each on its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `stop`: SIGTERM, KillWait, SIGKILL.
    Stop,
    /// `signal SIG SCOPE` (scope 0 steps, 1 batch shell, 2 every process).
    Signal(i32, u32),
}

impl Request {
    pub fn line(self) -> String {
        match self {
            Request::Stop => "stop\n".to_string(),
            Request::Signal(sig, scope) => format!("signal {sig} {scope}\n"),
        }
    }

    pub fn parse(line: &str) -> Option<Request> {
        let mut words = line.split_whitespace();
        match words.next()? {
            "stop" => Some(Request::Stop),
            "signal" => {
                let sig = words.next()?.parse().ok()?;
                let scope = words.next()?.parse().ok()?;
                Some(Request::Signal(sig, scope))
            }
            _ => None,
        }
    }
}

/// Why a job ended, beyond its exit status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    #[default]
    Exited,
    Cancelled,
    TimeLimit,
    OutOfMemory,
}

/// `status.json`: how the job ended, written once, atomically, before the supervisor exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// False when the script could not be started at all.
    pub launched: bool,
    pub pid: u32,
    pub exit_code: i32,
    pub signal: i32,
    pub cause: EndCause,
    pub max_rss_kb: u64,
    pub total_cpu_ms: u64,
    pub message: String,
}

impl JobStatus {
    /// A job whose supervisor never started it.
    pub(crate) fn launch_failed(message: String) -> JobStatus {
        JobStatus {
            launched: false,
            ..JobStatus::unobserved(1, 0, EndCause::Exited, message)
        }
    }

    /// An end the daemon decides without a process to measure (cancelled before launch,
    /// supervisor lost): no pid, no usage.
    pub(crate) fn unobserved(
        exit_code: i32,
        signal: i32,
        cause: EndCause,
        message: String,
    ) -> JobStatus {
        JobStatus {
            launched: true,
            pid: 0,
            exit_code,
            signal,
            cause,
            max_rss_kb: 0,
            total_cpu_ms: 0,
            message,
        }
    }
}

/// `supervisor.json`, written by the daemon after the spawn.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SupervisorRecord {
    pub pid: u32,
    pub start_ticks: Option<u64>,
}

/// Writes what the supervisor of `a` will read (daemon side).
pub fn prepare(state_dir: &Path, a: &Assignment, spec: &SuperviseSpec) -> io::Result<()> {
    let dir = launcher::job_dir(state_dir, a.job_id);
    fs::create_dir_all(&dir)?;
    // Plain writes: no supervisor reads them until it is started after this returns, and a
    // daemon that dies first leaves a run that never started, whatever these files hold.
    fs::write(dir.join(ASSIGNMENT_FILE), a.encode_to_vec())?;
    fs::write(
        dir.join(SPEC_FILE),
        serde_json::to_vec(spec).map_err(io::Error::other)?,
    )
}

pub fn read_spec(dir: &Path) -> Option<SuperviseSpec> {
    serde_json::from_slice(&fs::read(dir.join(SPEC_FILE)).ok()?).ok()
}

pub fn read_status(dir: &Path) -> Option<JobStatus> {
    serde_json::from_slice(&fs::read(dir.join(STATUS_FILE)).ok()?).ok()
}

/// The supervisor process: `drover supervise`. Returns once the job's status is on disk.
///
/// It runs without an async runtime: one thread waits in poll(2) on the script's exit, its
/// socket and the daemons connected to it, until the next of its time limits. A process per
/// job pays for whatever it builds and touches.
pub fn main(state_dir: &Path, job_id: u64) -> anyhow::Result<()> {
    run(state_dir, job_id).inspect_err(|e| {
        tracing::error!(job_id, error = %format!("{e:#}"), "the supervisor failed");
    })
}

/// A job without a script, once asked to end, has its cgroup looked at this often until it
/// is empty.
const EMPTY_CHECK: Duration = Duration::from_millis(100);

/// Where a supervised job is in its ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM sent (a stop or the time limit); SIGKILL at `kill_at`.
    Stopping {
        kill_at: Instant,
    },
    /// SIGKILL sent.
    Killed,
}

/// A daemon connected to the supervisor's socket.
struct DaemonConn {
    stream: UnixStream,
    /// What it sent after its last complete line.
    partial: Vec<u8>,
    /// False once it closed its side (it may still read "ended").
    reading: bool,
}

impl DaemonConn {
    /// Reads what it sent (the socket is readable), appending its complete requests.
    fn read_requests(&mut self, requests: &mut Vec<Request>) {
        let mut buf = [0u8; 512];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => self.reading = false,
            Ok(n) => {
                self.partial.extend_from_slice(&buf[..n]);
                while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=end).collect();
                    if let Some(r) = Request::parse(&String::from_utf8_lossy(&line)) {
                        requests.push(r);
                    }
                }
            }
        }
    }
}

/// Sends `bytes` on `stream`; false when the peer is gone (no SIGPIPE).
#[allow(unsafe_code)]
fn say(stream: &UnixStream, bytes: &[u8]) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: send(2) reads `rest`, valid for its length, from a socket we own.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        sent += n.unsigned_abs();
    }
    true
}

fn run(state_dir: &Path, job_id: u64) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let dir = launcher::job_dir(state_dir, job_id);
    let spec = read_spec(&dir).ok_or_else(|| {
        anyhow::anyhow!("{}: missing or unreadable", dir.join(SPEC_FILE).display())
    })?;
    let a = Assignment::decode(&fs::read(dir.join(ASSIGNMENT_FILE))?[..])?;
    let sock = dir.join(SOCKET_FILE);
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    listener.set_nonblocking(true)?;

    let made = match &spec.cgroups {
        Some(host) => host.create(job_id, &spec.limits, spec.cgroup_slot),
        None => Err(io::ErrorKind::NotFound.into()),
    };
    // Without the daemon's layout, or with its parent directories gone: look afresh (which
    // makes them again).
    let made = made.or_else(|_| {
        cgroup::Host::detect(&spec.cgroup_group).create(job_id, &spec.limits, spec.cgroup_slot)
    });
    let cg: Option<Box<dyn JobCgroup>> = match made {
        Ok(cg) => cg,
        Err(e) => {
            let status = JobStatus::launch_failed(format!("cannot create the job's cgroup: {e}"));
            return finish(&dir, &status, &[], None, false);
        }
    };
    let attach = match cg.as_ref().map(|c| c.attach_fds()).transpose() {
        Ok(a) => a,
        Err(e) => {
            let status = JobStatus::launch_failed(format!("cannot open the job's cgroup: {e}"));
            return finish(&dir, &status, &[], cg, false);
        }
    };
    let ctx = LaunchContext {
        node_name: &spec.node_name,
        state_dir,
    };
    let setup = JobSetup {
        cgroup: attach.as_ref(),
        extra_env: gpu_environment(&spec.gpus, spec.gpus_constrained),
        user: spec.user.clone(),
    };
    // srun's own allocation has no script: nothing to launch; the supervisor still holds the
    // job's cgroup, its time limit and its end (see the module doc).
    let mut job = if a.script.is_empty() {
        None
    } else {
        match launcher::launch(&a, &ctx, setup) {
            Ok(job) => Some(job),
            Err(e) => {
                let status = JobStatus::launch_failed(e.to_string());
                return finish(&dir, &status, &[], cg, false);
            }
        }
    };
    drop(attach);
    // No script: pid 0, which the launcher's signal helpers never signal as a group.
    let pid = job.as_ref().map_or(0, |j| j.pid);
    // The daemon logs the start and the end; the supervisor logs its end with the status.
    tracing::debug!(job_id, pid, "supervising: the batch script started");

    let mut daemons: Vec<DaemonConn> = Vec::new();
    let deadline = spec.deadline_unix_s.map(|d| {
        let left = d.saturating_sub(unix_now());
        Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
    });
    // `sbatch --signal`: the warning goes out this long before the time limit.
    let mut warn_at = match (spec.warning, deadline) {
        (Some((_, secs, _)), Some(d)) => Some(
            d.checked_sub(Duration::from_secs(u64::from(secs)))
                .unwrap_or_else(Instant::now),
        ),
        _ => None,
    };
    let kill_wait = Duration::from_millis(spec.kill_wait_ms);
    let mut cause = EndCause::Exited;
    let mut phase = Phase::Running;
    let mut empty_check: Option<Instant> = None;
    let pids = |cg: &Option<Box<dyn JobCgroup>>| cg.as_ref().map(|c| c.pids()).unwrap_or_default();
    let mut requests: Vec<Request> = Vec::new();

    let waited = 'events: loop {
        // What wakes it, besides its descriptors: the next of its times.
        let running = phase == Phase::Running;
        let next = [
            warn_at.filter(|_| running),
            deadline.filter(|_| running),
            match phase {
                Phase::Stopping { kill_at } => Some(kill_at),
                _ => None,
            },
            empty_check,
        ]
        .into_iter()
        .flatten()
        .min();
        let mut fds = Vec::with_capacity(2 + daemons.len());
        fds.push(launcher::poll_in(listener.as_raw_fd()));
        if let Some(j) = &job {
            fds.push(launcher::poll_in(j.child.exit_fd().as_raw_fd()));
        }
        let first_daemon = fds.len();
        fds.extend(
            daemons
                .iter()
                .filter(|d| d.reading)
                .map(|d| launcher::poll_in(d.stream.as_raw_fd())),
        );
        let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
        launcher::poll(&mut fds, timeout)?;

        if let Some(j) = job.as_mut().filter(|_| fds[1].revents != 0) {
            match j.child.try_wait() {
                Ok(Some(status)) => break 'events Some(Ok(status)),
                Ok(None) => {}
                Err(e) => break 'events Some(Err(e)),
            }
        }
        if fds[0].revents != 0 {
            while let Ok((stream, _)) = listener.accept() {
                if say(&stream, format!("running {pid}\n").as_bytes()) {
                    daemons.push(DaemonConn {
                        stream,
                        partial: Vec::new(),
                        reading: true,
                    });
                }
            }
        }
        let mut ready = fds[first_daemon..].iter().map(|f| f.revents != 0);
        for d in daemons.iter_mut().filter(|d| d.reading) {
            if ready.next() == Some(true) {
                d.read_requests(&mut requests);
            }
        }
        for request in requests.drain(..) {
            match request {
                Request::Stop if phase == Phase::Running => {
                    tracing::info!(job_id, "stop requested: SIGTERM");
                    cause = EndCause::Cancelled;
                    launcher::signal_job(pid, &pids(&cg), libc::SIGTERM);
                    phase = Phase::Stopping {
                        kill_at: Instant::now() + kill_wait,
                    };
                    if job.is_none() && pids(&cg).is_empty() {
                        break 'events None;
                    }
                }
                Request::Stop => {}
                Request::Signal(sig, scope) => {
                    tracing::info!(job_id, sig, scope, "signal requested");
                    launcher::signal_scope(pid, &pids(&cg), sig, launcher::Scope::from_wire(scope));
                }
            }
        }

        let now = Instant::now();
        if let (Some(at), Some((sig, secs, batch))) = (warn_at, spec.warning) {
            if phase == Phase::Running && at <= now {
                warn_at = None;
                tracing::info!(job_id, sig, secs, "time limit near: --signal");
                let scope = if batch {
                    launcher::Scope::Batch
                } else {
                    launcher::Scope::Steps
                };
                launcher::signal_scope(pid, &pids(&cg), sig, scope);
            }
        }
        if phase == Phase::Running && deadline.is_some_and(|d| d <= now) {
            tracing::info!(job_id, "time limit reached: SIGTERM");
            cause = EndCause::TimeLimit;
            if let Some(j) = &job {
                time_limit_notice(&j.stderr_path, job_id, &spec.node_name);
            }
            let members = pids(&cg);
            launcher::signal_job(pid, &members, libc::SIGCONT);
            launcher::signal_job(pid, &members, libc::SIGTERM);
            phase = Phase::Stopping {
                kill_at: now + kill_wait,
            };
            if job.is_none() && members.is_empty() {
                break 'events None;
            }
        }
        if let Phase::Stopping { kill_at } = phase {
            if kill_at <= now {
                tracing::info!(job_id, "still running after KillWait: SIGKILL");
                launcher::signal_job(pid, &pids(&cg), libc::SIGKILL);
                phase = Phase::Killed;
                if job.is_none() {
                    break 'events None;
                }
            }
        }
        // No script: the job ends once it was asked to (stop, time limit) and what its cgroup
        // held is gone.
        if job.is_none() && phase != Phase::Running {
            match empty_check {
                Some(at) if at <= now => {
                    if pids(&cg).is_empty() {
                        break 'events None;
                    }
                    empty_check = Some(now + EMPTY_CHECK);
                }
                Some(_) => {}
                None => empty_check = Some(now + EMPTY_CHECK),
            }
        }
    };
    // The script is reaped; what it left in its group or cgroup goes now. A cgroup found
    // empty here is not read again (the usual end of a job).
    let left = pids(&cg);
    launcher::signal_job(pid, &left, libc::SIGKILL);
    let mut emptied = left.is_empty();
    if !emptied {
        for _ in 0..200 {
            if pids(&cg).is_empty() {
                emptied = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let usage = cg.as_ref().map(|c| c.usage()).unwrap_or_default();
    if usage.oom_killed {
        cause = EndCause::OutOfMemory;
    }
    let (exit_code, signal, message) = match waited {
        Some(Ok(status)) => {
            let o = launcher::exit_outcome(status);
            (o.exit_code, o.signal, o.message)
        }
        Some(Err(e)) => (1, 0, format!("cannot wait for the job script: {e}")),
        // No script: the outcome is srun's (`CompleteAllocation`), or the cause's.
        None => (0, 0, String::new()),
    };
    let status = JobStatus {
        launched: true,
        pid,
        exit_code,
        signal,
        cause,
        max_rss_kb: usage.max_rss_kb,
        total_cpu_ms: usage.total_cpu_ms,
        message,
    };
    tracing::debug!(job_id, ?status, "supervised job over: status written");
    finish(&dir, &status, &daemons, cg, emptied)
}

/// Status to disk first, then to the connected daemons; then the cgroup goes (see
/// `JobCgroup::release`, and `emptied` there). It becomes the spare of the job's slot, which
/// the daemon gives the node's next job once it learns that this one ended: by then (a
/// report, a log entry, a scheduling pass and an answer later) the spare is back, and if it
/// is not, the next job makes its cgroup afresh.
fn finish(
    dir: &Path,
    status: &JobStatus,
    daemons: &[DaemonConn],
    cg: Option<Box<dyn JobCgroup>>,
    emptied: bool,
) -> anyhow::Result<()> {
    write_replace(&dir.join(STATUS_FILE), &serde_json::to_vec(status)?)?;
    for d in daemons {
        say(&d.stream, b"ended\n");
    }
    if let Some(cg) = cg {
        cg.release(emptied);
    }
    Ok(())
}

/// `slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-02T03:04:05 DUE TO TIME LIMIT ***`
/// appended to the job's stderr (reference/slurm.md §4.7).
fn time_limit_notice(stderr_path: &Path, job_id: u64, node: &str) {
    use std::io::Write as _;
    let line = format!(
        "slurmstepd: error: *** JOB {job_id} ON {node} CANCELLED AT {} DUE TO TIME LIMIT ***\n",
        local_time(unix_now())
    );
    let written = fs::OpenOptions::new()
        .append(true)
        .open(stderr_path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(job_id, error = %e, "cannot write the time-limit line");
    }
}

/// `CUDA_VISIBLE_DEVICES`, `GPU_DEVICE_ORDINAL` and `SLURM_JOB_GPUS` for allocated GPUs
/// (reference/slurm.md §4.10): `SLURM_JOB_GPUS` holds the node's indices; the CUDA variables
/// count from 0 when the devices cgroup hides the others, as Slurm's ConstrainDevices does.
pub fn gpu_environment(gpus: &[u32], constrained: bool) -> Vec<(String, String)> {
    if gpus.is_empty() {
        return Vec::new();
    }
    let list = |ids: &mut dyn Iterator<Item = u32>| {
        ids.map(|g| g.to_string()).collect::<Vec<_>>().join(",")
    };
    let global = list(&mut gpus.iter().copied());
    let visible = if constrained {
        list(&mut (0..u32::try_from(gpus.len()).unwrap_or(0)))
    } else {
        global.clone()
    };
    vec![
        ("SLURM_JOB_GPUS".into(), global),
        ("CUDA_VISIBLE_DEVICES".into(), visible.clone()),
        ("GPU_DEVICE_ORDINAL".into(), visible),
    ]
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Slurm's `YYYY-MM-DDTHH:MM:SS` in local time.
fn local_time(unix_s: i64) -> String {
    #[allow(unsafe_code)]
    // SAFETY: localtime_r writes only into `tm`, a plain struct we own.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = unix_s;
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// What the daemon finds when it looks for a job's supervisor.
#[derive(Debug)]
pub enum Attach {
    /// The supervisor runs the job; `conn` carries "stop" one way and "ended" the other.
    Running {
        pid: u32,
        conn: tokio::net::UnixStream,
    },
    /// The job has ended (or never started): its final status.
    Ended(JobStatus),
    /// No supervisor and no status: it died, or was never started.
    Lost,
}

/// Connects to the supervisor of the job in `dir`, waiting up to `patience` while
/// `supervisor_alive` says it may still be starting.
pub async fn attach(
    dir: &Path,
    patience: Duration,
    supervisor_alive: &(dyn Fn() -> bool + Sync),
) -> Attach {
    let sock = dir.join(SOCKET_FILE);
    let give_up = Instant::now() + patience;
    loop {
        if let Some(status) = read_status(dir) {
            return Attach::Ended(status);
        }
        if let Ok(conn) = tokio::net::UnixStream::connect(&sock).await {
            let (read, write) = conn.into_split();
            let mut reader = BufReader::new(read);
            let mut line = String::new();
            // The first line comes once the script runs; EOF means it never did.
            if reader.read_line(&mut line).await.is_ok() {
                if let Some(pid) = line.trim().strip_prefix("running ") {
                    let pid = pid.parse().unwrap_or(0);
                    let read = reader.into_inner();
                    let conn = read.reunite(write).map_err(|_| ());
                    if let Ok(conn) = conn {
                        return Attach::Running { pid, conn };
                    }
                }
            }
            // The supervisor exited under us: its status is on disk by now.
            if let Some(status) = read_status(dir) {
                return Attach::Ended(status);
            }
        }
        if Instant::now() >= give_up || !supervisor_alive() {
            return read_status(dir).map_or(Attach::Lost, Attach::Ended);
        }
        // Until the supervisor listens (a few milliseconds after its start): every
        // millisecond, since a job's start waits on it.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Follows an attached supervisor until the job ends (`Some(status)`), asking it to stop when
/// `stop` fires. `None` when the daemon shuts down first (the job keeps running) or the
/// supervisor vanished without a status.
pub async fn follow(
    dir: PathBuf,
    conn: tokio::net::UnixStream,
    stop: tokio_util::sync::CancellationToken,
    mut signals: mpsc::UnboundedReceiver<Request>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<JobStatus> {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut asked = false;
    loop {
        tokio::select! {
            Some(request) = signals.recv() => {
                if write.write_all(request.line().as_bytes()).await.is_err() {
                    return read_status(&dir);
                }
            }
            line = lines.next_line() => {
                match line {
                    Ok(Some(l)) if l.trim() != "ended" => continue,
                    // "ended", or EOF/error: the supervisor is gone; its status is on disk.
                    _ => return read_status(&dir),
                }
            }
            _ = stop.cancelled(), if !asked => {
                asked = true;
                if write.write_all(b"stop\n").await.is_err() {
                    return read_status(&dir);
                }
            }
            _ = shutdown.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_variables_global_or_renumbered() {
        assert!(gpu_environment(&[], false).is_empty());
        let env = gpu_environment(&[1, 3], false);
        assert_eq!(
            env,
            vec![
                ("SLURM_JOB_GPUS".to_string(), "1,3".to_string()),
                ("CUDA_VISIBLE_DEVICES".to_string(), "1,3".to_string()),
                ("GPU_DEVICE_ORDINAL".to_string(), "1,3".to_string()),
            ]
        );
        let env = gpu_environment(&[1, 3], true);
        assert_eq!(env[0].1, "1,3");
        assert_eq!(env[1].1, "0,1");
    }

    /// Real cgroups (v1 here, v2 on the GPU machines): the script runs inside its job cgroup
    /// from its first instruction, with the memory limit and cpuset applied; usage is read and
    /// the cgroup removed. Skipped without root or cgroups.
    #[test]
    fn a_job_runs_inside_its_cgroup_with_its_limits() {
        if !launcher::running_as_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let group = format!("drover-test/{}", std::process::id());
        let host = cgroup::Host::detect(&group);
        eprintln!("{}", host.isolation.describe());
        if host.isolation.version == "none" {
            eprintln!("SKIPPED: no usable cgroups");
            return;
        }
        let first_cpu = cgroup::host_cpus()[0];
        let limits = Limits {
            cpus: vec![first_cpu],
            mem_mb: 64,
            gpu_minors: None,
        };
        let cg = host
            .create(77, &limits, None)
            .expect("create")
            .expect("a cgroup");
        let attach = cg.attach_fds().expect("open cgroup.procs");
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = Assignment {
            job_id: 77,
            name: "cg".into(),
            script: "#!/bin/sh\ncat /proc/self/cgroup\n".into(),
            work_dir: tmp.path().to_string_lossy().into_owned(),
            ..Assignment::default()
        };
        let ctx = LaunchContext {
            node_name: "n1",
            state_dir: &tmp.path().join("state"),
        };
        let setup = JobSetup {
            cgroup: Some(&attach),
            extra_env: Vec::new(),
            user: None,
        };
        let mut job = launcher::launch(&a, &ctx, setup).expect("launch");
        let status = job.child.wait().expect("wait");
        assert!(status.success());
        let out = fs::read_to_string(tmp.path().join("slurm-77.out")).expect("output");
        eprintln!("{out}");
        assert!(out.contains("/job_77"), "not in its cgroup: {out}");
        let usage = cg.usage();
        eprintln!("{usage:?}");
        assert!(!usage.oom_killed);
        assert!(cg.pids().is_empty());
        cg.release(true);
        host.remove_group_if_empty();
    }

    #[test]
    fn slurm_local_time_format() {
        let t = local_time(1_700_000_000);
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[4..5], "-");
        assert_eq!(&t[10..11], "T");
    }
}
