//! The only module that starts or signals processes (STYLE P12; `crates/node/clippy.toml`).
//!
//! A batch job's script is written to `state_dir/jobs/<id>/script` (mode 0700) and executed
//! directly, so its `#!` line picks the interpreter, in its own process group, with `cwd` =
//! the job's work dir, stdin from /dev/null and stdout/stderr appended to the files its
//! `--output`/`--error` patterns name. Its environment carries `SLURM_TASK_PID`, its own pid,
//! which only the child knows: the child writes it into room left in the environment built
//! before it started, and calls execve(2) itself ([`ExecImage`]).
//!
//! Three kinds of process start here: the daemon's supervisors (one per job, in a process group
//! of its own), forked by a [`Zygote`] the daemon starts once (or, without one,
//! [`spawn_supervisor`]: an exec per job), the supervisor's [`launch`] of the batch script,
//! which joins the job's cgroup and switches to the job's user in a child that shares the
//! supervisor's memory until it executes ([`spawn_shared`], as posix_spawn does), and the
//! daemon's [`spawn_task`] of one task of an srun step (same cgroup and user switch, its own
//! process group, pipes to the daemon), signalled with [`signal_task`].
//! [`signal_job`] reaches the script's process group and every pid left in its cgroup.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::Assignment;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::process::{Child, Command};

use crate::cgroup::AttachFds;
use crate::pattern::{self, PatternContext};
use crate::state::write_replace;
use crate::users;

pub const CLUSTER_NAME: &str = "drover";
const DEFAULT_OUTPUT: &str = "slurm-%j.out";
/// Job arrays' default output (sbatch(1)).
const DEFAULT_ARRAY_OUTPUT: &str = "slurm-%A_%a.out";
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const LAUNCHED_FILE: &str = "launched.json";
/// `ETXTBSY`: another thread forked while our script's write fd was briefly open.
const TEXT_FILE_BUSY_RETRIES: u32 = 20;

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("work dir {0:?} is not an absolute path")]
    WorkDirNotAbsolute(String),
    #[error("work dir {path} does not exist or is not a directory")]
    WorkDirMissing { path: PathBuf },
    #[error("cannot write the job script {path}: {source}")]
    Script { path: PathBuf, source: io::Error },
    #[error("cannot open output file {path}: {source}")]
    Output { path: PathBuf, source: io::Error },
    #[error("cannot start the job script: {0}")]
    Spawn(io::Error),
}

/// Where the launcher works and who it works as.
#[derive(Debug, Clone)]
pub struct LaunchContext<'a> {
    pub node_name: &'a str,
    pub state_dir: &'a Path,
}

/// A started batch script. Its pid is also its process group id.
#[derive(Debug)]
pub struct LaunchedJob {
    pub job_id: u64,
    pub pid: u32,
    pub child: Script,
    /// Where the job's stderr goes (Slurm writes its time-limit line there).
    pub stderr_path: PathBuf,
}

/// How the batch script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOutcome {
    pub exit_code: i32,
    /// The signal that killed it, 0 when it exited.
    pub signal: i32,
    pub message: String,
}

/// What the supervisor adds to a launch: the cgroup to join before exec, and variables
/// (GPUs) that come from the node rather than the assignment.
#[derive(Default)]
pub struct JobSetup<'a> {
    pub cgroup: Option<&'a AttachFds>,
    pub extra_env: Vec<(String, String)>,
    /// The job's user as the daemon looked it up (`None`: look it up here).
    pub user: Option<users::JobUser>,
}

/// The job's user: its account and, when the job's processes switch to it, its groups.
pub fn job_user(uid: u32, gid: u32) -> users::JobUser {
    let switch_user = running_as_root() && uid != 0;
    let account = users::account(uid);
    let groups = supplementary_groups(switch_user, account.as_ref(), gid);
    users::JobUser { account, groups }
}

/// `<root>/jobs/<id>`, where `root` is the daemon's runtime directory
/// (`crate::runtime_dir`).
pub fn job_dir(state_dir: &Path, job_id: u64) -> PathBuf {
    state_dir.join("jobs").join(job_id.to_string())
}

/// Starts the batch script of `a`. Errors are the job's, to be reported as LAUNCH_FAILED.
///
/// When the daemon runs as root and the job's uid is not 0, the script runs as that user:
/// its supplementary groups (initgroups, resolved before the fork), gid and uid are set in
/// the child after it joined its cgroup, and `HOME`, `USER`, `LOGNAME`, `SHELL` come from the
/// password database where the submit environment lacks them.
pub fn launch(
    a: &Assignment,
    ctx: &LaunchContext<'_>,
    setup: JobSetup<'_>,
) -> Result<LaunchedJob, LaunchError> {
    let work_dir = PathBuf::from(&a.work_dir);
    if !work_dir.is_absolute() {
        return Err(LaunchError::WorkDirNotAbsolute(a.work_dir.clone()));
    }
    if !work_dir.is_dir() {
        return Err(LaunchError::WorkDirMissing { path: work_dir });
    }
    let switch_user = running_as_root() && a.uid != 0;
    let users::JobUser { account, groups } = match setup.user.clone() {
        Some(user) => user,
        None => job_user(a.uid, a.gid),
    };

    let dir = job_dir(ctx.state_dir, a.job_id);
    let script = dir.join("script");
    write_script(
        &dir,
        &script,
        &a.script,
        switch_user.then_some((a.uid, a.gid)),
    )
    .map_err(|source| LaunchError::Script {
        path: script.clone(),
        source,
    })?;

    let patterns = PatternContext {
        job_id: a.job_id,
        job_name: &a.name,
        user: &a.user,
        node_name: ctx.node_name,
        node_index: 0,
        task_id: 0,
        array: a.array_task_id.map(|t| (a.array_job_id, t)),
        step: "batch",
    };
    let stdout_pattern = if a.stdout.is_empty() {
        if a.array_task_id.is_some() {
            DEFAULT_ARRAY_OUTPUT
        } else {
            DEFAULT_OUTPUT
        }
    } else {
        &a.stdout
    };
    let stdout_path = work_dir.join(pattern::expand(stdout_pattern, &patterns));
    let owner = switch_user.then_some((a.uid, a.gid));
    let stdout =
        open_output(&stdout_path, owner, a.open_append).map_err(|source| LaunchError::Output {
            path: stdout_path.clone(),
            source,
        })?;
    let (stderr, stderr_path) = if a.stderr.is_empty() {
        let f = stdout.try_clone().map_err(|source| LaunchError::Output {
            path: stdout_path.clone(),
            source,
        })?;
        (f, stdout_path.clone())
    } else {
        let path = work_dir.join(pattern::expand(&a.stderr, &patterns));
        let f = open_output(&path, owner, a.open_append).map_err(|source| LaunchError::Output {
            path: path.clone(),
            source,
        })?;
        (f, path)
    };

    let mut env = job_environment(a, ctx.node_name);
    if let Some(acc) = &account {
        for (k, v) in [
            ("HOME", &acc.home),
            ("USER", &acc.name),
            ("LOGNAME", &acc.name),
            ("SHELL", &acc.shell),
        ] {
            if !env.iter().any(|(key, _)| key == k) {
                env.insert(0, (k.into(), v.into()));
            }
        }
    }
    env.extend(
        setup
            .extra_env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let attach = setup.cgroup.map(AttachFds::handle);
    let ids = switch_user.then_some((a.uid, a.gid));
    let argv: Vec<OsString> = std::iter::once(script.clone().into_os_string())
        .chain(a.argv.iter().map(OsString::from))
        .collect();
    let image = ExecImage::new(&script, &argv, &env).map_err(LaunchError::Spawn)?;

    let stdin = File::open("/dev/null").map_err(LaunchError::Spawn)?;
    let cwd = std::ffi::CString::new(work_dir.as_os_str().as_encoded_bytes())
        .map_err(|e| LaunchError::Spawn(io::Error::other(e)))?;
    let mut attempt = 0;
    let pid = loop {
        let plan = ChildPlan {
            stdio: [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
            cwd: &cwd,
            attach: attach.as_ref(),
            ids,
            groups: &groups,
            image: &image,
            errno: std::sync::atomic::AtomicI32::new(0),
        };
        match spawn_shared(&plan) {
            Ok(pid) => break pid,
            Err(e)
                if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_FILE_BUSY_RETRIES =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(LaunchError::Spawn(e)),
        }
    };
    let child = Script::new(pid).map_err(LaunchError::Spawn)?;
    // Remember which process this job is, for whoever finds the directory later.
    let record = LaunchedRecord {
        pid,
        start_ticks: process_start_ticks(pid),
    };
    if let Ok(bytes) = serde_json::to_vec(&record) {
        if let Err(e) = write_replace(&dir.join(LAUNCHED_FILE), &bytes) {
            tracing::warn!(job_id = a.job_id, error = %e, "cannot record the launched process");
        }
    }
    Ok(LaunchedJob {
        job_id: a.job_id,
        pid,
        child,
        stderr_path,
    })
}

/// Where one of a step task's standard streams goes.
#[derive(Debug)]
pub enum TaskStdio {
    /// A pipe to the node daemon (forwarded to srun).
    Pipe,
    Null,
    File(File),
}

impl TaskStdio {
    fn stdio(&self) -> io::Result<Stdio> {
        Ok(match self {
            TaskStdio::Pipe => Stdio::piped(),
            TaskStdio::Null => Stdio::null(),
            TaskStdio::File(f) => Stdio::from(f.try_clone()?),
        })
    }
}

/// One task of a job step (srun), as the node daemon starts it.
#[derive(Debug)]
pub struct TaskSpawn<'a> {
    /// `argv[0]` is already resolved to a path (see [`resolve_command`]).
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// The whole environment of the task.
    pub env: &'a [(String, String)],
    /// The job's user: the task runs as them when the daemon runs as root.
    pub uid: u32,
    pub gid: u32,
    /// The job's cgroup on this node, when it has one.
    pub cgroup: Option<&'a AttachFds>,
    pub stdin: TaskStdio,
    pub stdout: TaskStdio,
    pub stderr: TaskStdio,
}

/// The groups a job's processes get when the daemon switches to the job's user: the user's
/// supplementary groups and the job's gid (just the gid for a uid with no account here).
fn supplementary_groups(switch_user: bool, account: Option<&users::Account>, gid: u32) -> Vec<u32> {
    match (switch_user, account) {
        (false, _) => Vec::new(),
        (true, Some(acc)) => users::groups(&acc.name, gid),
        (true, None) => vec![gid],
    }
}

/// Between fork and exec, the child joins the job's cgroup (when given), becomes the job's
/// user (when `ids` is set), then executes `image` with its own pid in `SLURM_TASK_PID`: the
/// batch script and step tasks both start this way.
fn enter_job_before_exec(
    cmd: &mut Command,
    attach: Option<crate::cgroup::AttachHandle>,
    ids: Option<(u32, u32)>,
    groups: Vec<u32>,
    image: Arc<ExecImage>,
) {
    #[allow(unsafe_code)]
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (write, setgroups, setgid, setuid, getpid, execve) on memory prepared
    // before the fork (`ExecImage::exec` allocates nothing).
    unsafe {
        cmd.pre_exec(move || Err(enter_job(attach.as_ref(), ids, &groups, &image)));
    }
}

/// The last steps of a job's child before it becomes the job: join the job's cgroup, switch to
/// the job's user, execute the image. Async-signal-safe and allocation-free (it runs in a
/// forked child and in one that shares its parent's memory); returns only on failure.
fn enter_job(
    attach: Option<&crate::cgroup::AttachHandle>,
    ids: Option<(u32, u32)>,
    groups: &[u32],
    image: &ExecImage,
) -> io::Error {
    if let Some(attach) = attach {
        if let Err(e) = attach.attach_self() {
            return e;
        }
    }
    if let Some((uid, gid)) = ids {
        if let Err(e) = users::become_user(uid, gid, groups) {
            return e;
        }
    }
    image.exec()
}

/// The batch script's process ([`launch`]). Its exit makes [`Script::exit_fd`] readable, so
/// it is seen the moment it happens, never by polling on a timer: the fd is a pidfd, or, on
/// kernels before 5.3, a pipe that a waiter thread writes to once waitid(2) saw the exit.
pub struct Script {
    pid: u32,
    exited: Option<ExitStatus>,
    exit_fd: std::os::fd::OwnedFd,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("pid", &self.pid)
            .field("exited", &self.exited)
            .finish_non_exhaustive()
    }
}

impl Script {
    #[allow(unsafe_code)]
    fn new(pid: u32) -> io::Result<Script> {
        use std::os::fd::FromRawFd as _;
        let raw = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        if fd >= 0 {
            let fd = i32::try_from(fd).map_err(io::Error::other)?;
            return Ok(Script {
                pid,
                exited: None,
                // SAFETY: a fresh descriptor, owned from here on.
                exit_fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            });
        }
        Script::watched_by_thread(pid)
    }

    /// Kernels before 5.3 (no pidfd): a thread waits for the exit and then writes to a pipe.
    #[allow(unsafe_code)]
    fn watched_by_thread(pid: u32) -> io::Result<Script> {
        use std::os::fd::FromRawFd as _;
        let raw = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        let mut ends = [0; 2];
        // SAFETY: pipe2(2) fills the two descriptors, owned from here on.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above: fresh descriptors.
        let (read, write) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(ends[0]),
                File::from_raw_fd(ends[1]),
            )
        };
        std::thread::Builder::new()
            .name("script-wait".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // Waits without reaping: `try_wait` reaps, as with a pidfd.
                // SAFETY: waitid(2) writes only into `info`, a plain struct we own.
                unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    while libc::waitid(
                        libc::P_PID,
                        raw.unsigned_abs(),
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    ) != 0
                        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                    {
                    }
                }
                let _ = (&write).write_all(b"x");
            })?;
        Ok(Script {
            pid,
            exited: None,
            exit_fd: read,
        })
    }

    /// Readable once the script has exited.
    pub fn exit_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.exit_fd.as_fd()
    }

    /// Its exit status once it exited (reaping it); `None` while it runs. Never blocks.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            let raw = libc::pid_t::try_from(self.pid).map_err(io::Error::other)?;
            self.exited = wait_pid(raw, libc::WNOHANG)?;
        }
        Ok(self.exited)
    }

    /// Its exit status, waiting up to `timeout` for it (`None`: as long as it runs); `None`
    /// when it still runs after `timeout`. Tests only: a supervisor polls `exit_fd` with its
    /// other descriptors.
    #[cfg(test)]
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        let until = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let mut fds = [poll_in(self.exit_fd.as_raw_fd())];
            poll(&mut fds, left)?;
        }
    }

    /// Its exit status, once it exited (tests only, as `wait_timeout`).
    #[cfg(test)]
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.wait_timeout(None)?
            .ok_or_else(|| io::Error::other("the script still runs"))
    }
}

/// A `pollfd` waiting for `fd` to be readable.
pub(crate) fn poll_in(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// poll(2) over `fds` for up to `timeout` (`None`: no limit). Returns when one has events
/// (its `revents` set), the time ran out, or a signal interrupted it.
#[allow(unsafe_code)]
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    // Rounded up: a wake-up a little early would only poll again at once.
    let ms = timeout.map_or(-1, |t| {
        i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
    });
    let n = fds.len() as libc::nfds_t;
    // SAFETY: `fds` is a valid array of `n` pollfds for the call's duration.
    if unsafe { libc::poll(fds.as_mut_ptr(), n, ms) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// waitpid(2) for one child; `None` while it runs (with WNOHANG).
#[allow(unsafe_code)]
fn wait_pid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes one int.
        let n = unsafe { libc::waitpid(pid, &mut status, flags) };
        if n == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if n == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What the batch script's child does before it executes, all prepared before it exists: it
/// shares the supervisor's memory until then ([`spawn_shared`]), so it allocates nothing,
/// switches user by raw system calls ([`users::become_user`]), and leaves only through execve
/// or `_exit`.
struct ChildPlan<'a> {
    /// Its stdin, stdout and stderr.
    stdio: [std::os::fd::RawFd; 3],
    cwd: &'a std::ffi::CStr,
    attach: Option<&'a crate::cgroup::AttachHandle>,
    ids: Option<(u32, u32)>,
    groups: &'a [u32],
    image: &'a ExecImage,
    /// The errno of the step that failed, written by the child.
    errno: std::sync::atomic::AtomicI32,
}

/// The child's stack (its own, since it shares everything else). It makes a few system calls
/// on small structs; glibc's posix_spawn gives its child 32 KiB plus room for argv. Below
/// malloc's mmap threshold (128 KiB), the stack comes from the heap: no mmap and munmap per
/// job.
const CHILD_STACK: usize = 32 * 1024;

#[allow(unsafe_code)]
extern "C" fn shared_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildPlan that `spawn_shared` passed, alive while the parent waits
    // (CLONE_VFORK) for this child to execute or exit.
    let plan = unsafe { &*(arg as *const ChildPlan<'_>) };
    let errno = plan.enter().raw_os_error().unwrap_or(libc::EINVAL);
    plan.errno
        .store(errno.max(1), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: leaves without running anything of the parent's (no atexit, no flush).
    unsafe { libc::_exit(127) }
}

impl ChildPlan<'_> {
    /// In the child: signals as a new process has them, its own process group, stdio, working
    /// directory, the job's cgroup and user, then the image. Returns only on failure.
    #[allow(unsafe_code)]
    fn enter(&self) -> io::Error {
        let fail = || io::Error::last_os_error();
        // SAFETY: system calls on memory prepared by the parent; nothing here allocates, and the
        // parent's thread is suspended until execve or _exit.
        unsafe {
            // A handler of the supervisor's would run here, in its memory: every caught
            // signal goes back to its default before any is unblocked. SIGPIPE, which Rust
            // ignores, too (an ignored signal stays ignored across execve).
            for sig in 1..=libc::SIGRTMAX() {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN
                        || sig == libc::SIGPIPE)
                {
                    let mut dfl: libc::sigaction = std::mem::zeroed();
                    dfl.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if libc::setpgid(0, 0) != 0 {
                return fail();
            }
            for (target, &fd) in self.stdio.iter().enumerate() {
                let target = target as libc::c_int;
                let done = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, target)
                };
                if done < 0 {
                    return fail();
                }
            }
            if libc::chdir(self.cwd.as_ptr()) != 0 {
                return fail();
            }
        }
        enter_job(self.attach, self.ids, self.groups, self.image)
    }
}

/// Starts `plan`'s child as posix_spawn(3) does (clone with CLONE_VM | CLONE_VFORK): the child
/// runs on a stack of its own in the supervisor's memory until it executes, so no page table
/// is copied and none torn down again at its execve, which a fork cost per job. Returns its
/// pid once it executed; the error of the step that failed otherwise.
#[allow(unsafe_code)]
fn spawn_shared(plan: &ChildPlan<'_>) -> io::Result<u32> {
    // Uninitialised: only the pages the child touches, at the top, are ever written.
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: one past the end of the buffer, aligned down to 16 as the ABI wants; the buffer
    // outlives the child's use of it (the parent resumes only after execve or _exit).
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    let top = (top as usize & !15) as *mut libc::c_void;
    // SAFETY: signal masks and clone(2) as posix_spawn uses them; every signal is blocked
    // across the clone so that no handler runs in the child before it reset them.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            shared_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(plan).cast_mut().cast(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    let errno = plan.errno.load(std::sync::atomic::Ordering::SeqCst);
    if errno != 0 {
        // It exited without executing: reap it.
        let _ = wait_pid(pid, 0);
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(pid.unsigned_abs())
}

/// `SLURM_TASK_PID=` and room for any pid (at most 10 digits) and the terminating NUL.
const TASK_PID_VAR: &[u8] = b"SLURM_TASK_PID=";
const TASK_PID_ROOM: usize = 11;

/// A program, its arguments and its whole environment as execve(2) takes them, built before
/// the fork so that the child allocates nothing. The environment's last entry is
/// `SLURM_TASK_PID=`, with room for the pid the child writes in before it executes (a task's
/// pid is its own: the one-line shell `SLURM_TASK_PID=$$; exec …` that used to do this cost a
/// process per job). A file the kernel cannot execute (no `#!` line: ENOEXEC) is run by
/// `/bin/sh`, as execvp(3) and the shells do.
pub(crate) struct ExecImage {
    path: std::ffi::CString,
    /// Owns what `argv`, `sh_argv` and `envp` point into (the vectors' heap buffers never
    /// move).
    _strings: Vec<std::ffi::CString>,
    /// Written by the child before it executes: with [`spawn_shared`] that is this very
    /// memory, hence the cells.
    task_pid: Box<[std::cell::UnsafeCell<u8>]>,
    argv: Vec<*const libc::c_char>,
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

#[allow(unsafe_code)]
// SAFETY: the pointers point into buffers the image owns and never changes after `new`; only
// a child about to execute writes into `task_pid` (its own copy after a fork; after
// `spawn_shared`, while the one thread that shares the image is suspended).
unsafe impl Send for ExecImage {}
#[allow(unsafe_code)]
// SAFETY: as for Send; shared references never write.
unsafe impl Sync for ExecImage {}

impl ExecImage {
    pub(crate) fn new<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        path: &Path,
        argv: &[OsString],
        env: &[(K, V)],
    ) -> io::Result<ExecImage> {
        use std::os::unix::ffi::OsStrExt as _;
        let c = |bytes: &[u8]| {
            std::ffi::CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("a NUL byte in {:?}", String::from_utf8_lossy(bytes)),
                )
            })
        };
        let path = c(path.as_os_str().as_bytes())?;
        let args: Vec<std::ffi::CString> = argv
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let vars: Vec<std::ffi::CString> = env
            .iter()
            .filter(|(k, _)| k.as_ref().as_bytes() != b"SLURM_TASK_PID")
            .map(|(k, v)| {
                let mut kv = k.as_ref().as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_ref().as_bytes());
                c(&kv)
            })
            .collect::<io::Result<_>>()?;
        let sh = c(b"/bin/sh")?;
        let mut task_pid = TASK_PID_VAR.to_vec();
        task_pid.resize(TASK_PID_VAR.len() + TASK_PID_ROOM, 0);
        let task_pid: Box<[std::cell::UnsafeCell<u8>]> = task_pid
            .into_iter()
            .map(std::cell::UnsafeCell::new)
            .collect();

        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // `/bin/sh file args…`: the file takes argv[0]'s place.
        let mut sh_argv = vec![sh.as_ptr(), path.as_ptr()];
        sh_argv.extend(args.iter().skip(1).map(|a| a.as_ptr()));
        sh_argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = vars.iter().map(|v| v.as_ptr()).collect();
        envp.push(
            std::cell::UnsafeCell::raw_get(task_pid.as_ptr())
                .cast_const()
                .cast(),
        );
        envp.push(std::ptr::null());

        let mut strings = args;
        strings.extend(vars);
        strings.push(sh);
        Ok(ExecImage {
            path,
            _strings: strings,
            task_pid,
            argv,
            sh_argv,
            envp,
        })
    }

    /// In the child: writes the child's pid into `SLURM_TASK_PID` and executes the image.
    /// Returns only on failure.
    fn exec(&self) -> io::Error {
        #[allow(unsafe_code)]
        // SAFETY: async-signal-safe calls only; `task_pid` is written in place by this child
        // alone (see the Send impl), and every pointer is valid and NUL-terminated.
        unsafe {
            let room =
                std::cell::UnsafeCell::raw_get(self.task_pid.as_ptr().add(TASK_PID_VAR.len()));
            let mut pid = u32::try_from(libc::getpid()).unwrap_or(0);
            let mut digits = [0u8; TASK_PID_ROOM - 1];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 || n == digits.len() {
                    break;
                }
            }
            for (i, d) in digits[..n].iter().rev().enumerate() {
                *room.add(i) = *d;
            }
            *room.add(n) = 0;
            libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOEXEC) {
                return err;
            }
            libc::execve(self.sh_argv[0], self.sh_argv.as_ptr(), self.envp.as_ptr());
            io::Error::last_os_error()
        }
    }
}

/// Starts one task of a step in a process group of its own (its pid is the group id, which
/// [`signal_task`] reaches), as the job's user, inside the job's cgroup when given. Like the
/// batch script its `SLURM_TASK_PID` is its own pid ([`ExecImage`]).
pub fn spawn_task(t: &TaskSpawn<'_>) -> io::Result<Child> {
    let switch_user = running_as_root() && t.uid != 0;
    let groups = supplementary_groups(switch_user, users::account(t.uid).as_ref(), t.gid);
    let ids = switch_user.then_some((t.uid, t.gid));
    let attach = t.cgroup.map(AttachFds::handle);
    let program = t
        .argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a task needs a command"))?;
    let argv: Vec<OsString> = t.argv.iter().map(OsString::from).collect();
    let image = Arc::new(ExecImage::new(Path::new(program), &argv, t.env)?);
    #[allow(clippy::disallowed_methods)] // the one place that spawns (STYLE P12)
    let mut cmd = Command::new(program);
    cmd.current_dir(t.cwd)
        .env_clear()
        .stdin(t.stdin.stdio()?)
        .stdout(t.stdout.stdio()?)
        .stderr(t.stderr.stdio()?)
        .process_group(0)
        .kill_on_drop(false);
    enter_job_before_exec(&mut cmd, attach, ids, groups, image);
    cmd.spawn()
}

/// Finds a step's command as execve(2) through `PATH` would (`cmd` with a `/` is taken as
/// it is, relative to `cwd`); `None` when there is no such executable file, which Slurm
/// reports as `execve(): cmd: No such file or directory`.
pub fn resolve_command(cmd: &str, path_var: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        let p = cwd.join(cmd);
        return executable(&p).then(|| PathBuf::from(cmd));
    }
    path_var
        .unwrap_or(DEFAULT_PATH)
        .split(':')
        .map(|dir| cwd.join(if dir.is_empty() { "." } else { dir }).join(cmd))
        .find(|p| executable(p))
}

/// Sends `sig` to a step task's process group.
pub fn signal_task(pgid: u32, sig: i32) {
    signal_group(pgid, sig);
}

/// Starts `exe supervise --state-dir DIR --job ID` in a process group of its own, so that
/// nothing done to the daemon (a signal to its process group, `kill -9`, an upgrade) reaches
/// it. It writes its messages, each naming the job, where the daemon writes its own (its
/// stderr), as slurmstepd logs into slurmd's log: a file per job would cost an inode per job.
///
/// Nothing runs between fork and exec here, so the standard library starts it with
/// posix_spawn(3) (a vfork): a fork of the daemon would copy its page tables and leave it
/// copy-on-write faults, per job.
pub fn spawn_supervisor(exe: &Path, state_dir: &Path, job_id: u64) -> io::Result<Child> {
    #[allow(clippy::disallowed_methods)] // the one place that spawns (STYLE P12)
    let mut cmd = Command::new(exe);
    cmd.arg("supervise")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--job")
        .arg(job_id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn()
}

/// A supervisor starter: `EXE supervise --zygote --state-dir DIR`, started once by the daemon,
/// single-threaded, forks one supervisor per job id written to it and answers with its pid.
/// A fork of this small process costs a tenth of what a new exec of a supervisor does (the
/// loader, relocations, glibc's CPU probes and Rust's runtime start, per job); the forked
/// supervisor is the same code, as if started afresh: its own process group, stdin and stdout
/// on /dev/null, stderr the daemon's. It is not the supervisors' keeper: it ignores SIGCHLD
/// (the kernel reaps them), and it exits when the daemon's end of its pipe closes, leaving
/// every supervisor running, as a daemon's exit always does.
pub struct Zygote {
    process: std::process::Child,
    requests: std::process::ChildStdin,
    replies: io::BufReader<std::process::ChildStdout>,
}

/// Why [`Zygote::supervise`] gave no pid.
#[derive(Debug, Error)]
pub enum ZygoteError {
    /// The request did not reach it: nothing started.
    #[error("the supervisor starter is gone: {0}")]
    NotSent(io::Error),
    /// It had the request, and a supervisor may or may not have started.
    #[error("the supervisor starter gave no answer: {0}")]
    NoReply(io::Error),
    /// It answered that it could not start one (fork failed).
    #[error("the supervisor starter could not start one: {0}")]
    Refused(String),
}

impl Zygote {
    /// Starts it, and waits for its first line (`ready`): an executable that does not know
    /// `--zygote` (an older one) exits instead, and the daemon starts supervisors itself.
    pub fn start(exe: &Path, state_dir: &Path) -> io::Result<Zygote> {
        use std::io::BufRead as _;
        use std::os::unix::process::CommandExt as _;
        #[allow(clippy::disallowed_methods)] // the one place that spawns (STYLE P12)
        let mut process = std::process::Command::new(exe)
            .arg("supervise")
            .arg("--zygote")
            .arg("--state-dir")
            .arg(state_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let (Some(requests), Some(replies)) = (process.stdin.take(), process.stdout.take()) else {
            let _ = process.kill();
            let _ = process.wait();
            return Err(io::Error::other("no pipes to the supervisor starter"));
        };
        let mut zygote = Zygote {
            process,
            requests,
            replies: io::BufReader::new(replies),
        };
        let mut line = String::new();
        zygote.replies.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(io::Error::other(format!(
                "{} supervise --zygote did not start (it said {:?})",
                exe.display(),
                line.trim()
            )));
        }
        Ok(zygote)
    }

    /// Has it fork the supervisor of `job_id` (what `EXE supervise --state-dir DIR --job ID`
    /// runs); its pid.
    pub fn supervise(&mut self, job_id: u64) -> Result<u32, ZygoteError> {
        use std::io::BufRead as _;
        writeln!(self.requests, "{job_id}")
            .and_then(|()| self.requests.flush())
            .map_err(ZygoteError::NotSent)?;
        if self.replies.buffer().is_empty()
            && !readable_within(self.replies.get_ref(), ZYGOTE_PATIENCE)
        {
            return Err(ZygoteError::NoReply(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", ZYGOTE_PATIENCE.as_secs()),
            )));
        }
        let mut line = String::new();
        match self.replies.read_line(&mut line) {
            Ok(0) => Err(ZygoteError::NoReply(io::ErrorKind::UnexpectedEof.into())),
            Err(e) => Err(ZygoteError::NoReply(e)),
            Ok(_) => match line.trim().split_once(' ') {
                Some(("pid", pid)) => pid
                    .parse()
                    .map_err(|_| ZygoteError::NoReply(io::Error::other(format!("odd pid {pid}")))),
                Some(("error", why)) => Err(ZygoteError::Refused(why.to_string())),
                _ => Err(ZygoteError::NoReply(io::Error::other(format!(
                    "odd answer {:?}",
                    line.trim()
                )))),
            },
        }
    }
}

/// How long the daemon waits for the zygote's answer (a fork): one that takes longer (stopped,
/// wedged) is replaced rather than left to hold up every launch on the node.
const ZYGOTE_PATIENCE: Duration = Duration::from_secs(10);

/// Does `fd` have something to read (or its end) within `patience`?
#[allow(unsafe_code)]
fn readable_within(fd: &impl std::os::fd::AsRawFd, patience: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(patience.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut poll, 1, ms) };
        if n >= 0 {
            return n > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true; // let the read say what is wrong
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // It keeps nothing: stopping it touches no supervisor (each in its own group).
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The zygote's side (see [`Zygote`]): reads job ids on stdin, forks `supervise(state_dir,
/// id)` for each (its exit status the child's), answers `pid N` or `error WHY` on stdout, and
/// returns at end of input. It must be the process's only thread, since the children go on
/// to run anything: it says so and returns 1 otherwise.
#[allow(unsafe_code)]
pub fn serve_zygote(state_dir: &Path, supervise: fn(&Path, u64) -> i32) -> i32 {
    use std::io::BufRead as _;
    use std::os::fd::FromRawFd as _;
    let threads = fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    if threads != 1 {
        tracing::error!(threads, "a supervisor starter must be single-threaded");
        return 1;
    }
    // SAFETY: plain libc calls on a single-threaded process; fds 0 and 1 stay open for its
    // life (ManuallyDrop: they are not ours to close), and the std handles are never used, so
    // no std lock is held across a fork.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let input = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let mut output = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut requests = io::BufReader::new(&*input);
    let mut say = |line: String| output.write_all(line.as_bytes()).is_ok();
    if !say("ready\n".into()) {
        return 1;
    }
    let title_area = argument_area();
    let mut line = String::new();
    loop {
        line.clear();
        match requests.read_line(&mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let answer = match line.trim().parse::<u64>() {
            Err(_) => format!("error not a job id: {:?}\n", line.trim()),
            Ok(job_id) => match fork_supervisor(state_dir, job_id, supervise, title_area) {
                Ok(pid) => format!("pid {pid}\n"),
                Err(e) => format!("error {e}\n"),
            },
        };
        if !say(answer) {
            return 0;
        }
    }
}

/// What `ps` shows of a supervisor forked by the zygote: `drover-stepd: job N`, as Slurm's
/// shows `slurmstepd: [N.batch]`.
const STEPD_TITLE: &str = "drover-stepd:";

/// Where this process's arguments lie in its own memory (fields 48 and 49 of
/// /proc/self/stat), found once by the zygote: its forks have them at the same place.
fn argument_area() -> Option<(usize, usize)> {
    let stat = File::open("/proc/self/stat")
        .and_then(crate::cgroup::read_kernel_file)
        .ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let start = fields.get(45)?.parse::<usize>().ok()?;
    let end = fields.get(46)?.parse::<usize>().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// Writes `title` over the process's own command line (what `/proc/self/cmdline`, and so `ps`
/// and `pgrep -f`, show), cut to the room the original took (`area`, from
/// [`argument_area`]); nothing when that room could not be found.
#[allow(unsafe_code)]
fn retitle(area: Option<(usize, usize)>, title: &str) {
    let Some((start, end)) = area else {
        return;
    };
    let room = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(room - 1);
    // SAFETY: [start, end) is this process's argument area, mapped and writable for its life;
    // nothing else reads it while the single thread writes it.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, room);
        area[..n].copy_from_slice(&bytes[..n]);
        area[n..].fill(0);
    }
}

/// Forks one supervisor from the zygote; the child never returns.
#[allow(unsafe_code)]
fn fork_supervisor(
    state_dir: &Path,
    job_id: u64,
    supervise: fn(&Path, u64) -> i32,
    title_area: Option<(usize, usize)>,
) -> io::Result<u32> {
    // SAFETY: the zygote is single-threaded (checked by `serve_zygote`), so the child may run
    // anything; it leaves through `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            unsafe {
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                libc::setpgid(0, 0);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, 0);
                    libc::dup2(null, 1);
                    libc::close(null);
                }
            }
            retitle(title_area, &format!("{STEPD_TITLE} job {job_id}"));
            let code = supervise(state_dir, job_id);
            // Straight out: the job's status is on disk and its sockets are closed, stdout is
            // /dev/null and the log unbuffered. Exit handlers (each library's destructors)
            // would only fault pages in, per job, for nothing.
            unsafe { libc::_exit(code) }
        }
        pid => {
            // As a shell does: the group is set on both sides, so it exists when the daemon
            // hears the pid.
            unsafe { libc::setpgid(pid, pid) };
            Ok(pid.unsigned_abs())
        }
    }
}

/// Sends `sig` to the job's process group and to every pid still in its cgroup.
pub fn signal_job(pgid: u32, cgroup_pids: &[u32], sig: i32) {
    signal_group(pgid, sig);
    for &pid in cgroup_pids {
        signal_pid(pid, sig);
    }
}

/// Is `pid` alive and the same process that started at `start_ticks`?
pub fn same_process(pid: u32, start_ticks: Option<u64>) -> bool {
    start_ticks.is_some() && process_start_ticks(pid) == start_ticks
}

/// Sends `sig` to `scope` of a job whose script runs as `pid` (its process group leader):
/// the script alone (`Batch`), everything (`Full`), or everything but the script (`Steps`:
/// Slurm signals a job's steps, not its batch shell, unless asked to).
pub fn signal_scope(pid: u32, cgroup_pids: &[u32], sig: i32, scope: Scope) {
    match scope {
        Scope::Batch => signal_pid(pid, sig),
        Scope::Full => signal_job(pid, cgroup_pids, sig),
        Scope::Steps => {
            // pid 0: a job without a script (srun's own allocation), only its cgroup's pids.
            let mut pids: std::collections::BTreeSet<u32> = if pid > 1 {
                group_members(pid)
            } else {
                Default::default()
            };
            pids.extend(cgroup_pids.iter().copied());
            pids.remove(&pid);
            for p in pids {
                signal_pid(p, sig);
            }
        }
    }
}

/// Which processes of a job a signal reaches (see [`signal_scope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Steps,
    Batch,
    Full,
}

impl Scope {
    /// The wire's number (0 steps, 1 batch shell, 2 every process).
    pub fn from_wire(n: u32) -> Scope {
        match n {
            1 => Scope::Batch,
            2 => Scope::Full,
            _ => Scope::Steps,
        }
    }
}

/// Processes whose process group is `pgid` (from /proc).
fn group_members(pgid: u32) -> std::collections::BTreeSet<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 5 (pgrp), counted after the command name's closing `)`.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// Exit code and signal as Slurm reports them (`0:15` for a job killed by SIGTERM).
pub fn exit_outcome(status: ExitStatus) -> ExitOutcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitOutcome {
            exit_code: code,
            signal: 0,
            message: String::new(),
        },
        (None, Some(signal)) => ExitOutcome {
            exit_code: 0,
            signal,
            message: String::new(),
        },
        (None, None) => ExitOutcome {
            exit_code: 1,
            signal: 0,
            message: format!("unexpected exit status {status}"),
        },
    }
}

/// The environment of a batch script: the submit environment, then Slurm's variables
/// (reference/slurm.md §2.2).
pub fn job_environment(a: &Assignment, node_name: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(a.env.len() + 32);
    for kv in &a.env {
        // `Command` cannot carry these; skip them rather than fail the job.
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) || kv.value.contains('\0') {
            continue;
        }
        env.push((kv.key.clone(), kv.value.clone()));
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    let id = a.job_id.to_string();
    let num_nodes = a.num_nodes.max(1);
    set("SLURM_JOB_ID", id.clone());
    set("SLURM_JOBID", id);
    if a.restarts > 0 {
        set("SLURM_RESTART_COUNT", a.restarts.to_string());
    }
    if let Some(task) = a.array_task_id {
        set("SLURM_ARRAY_JOB_ID", a.array_job_id.to_string());
        set("SLURM_ARRAY_TASK_ID", task.to_string());
        set("SLURM_ARRAY_TASK_COUNT", a.array_task_count.to_string());
        set("SLURM_ARRAY_TASK_MIN", a.array_task_min.to_string());
        set("SLURM_ARRAY_TASK_MAX", a.array_task_max.to_string());
        set("SLURM_ARRAY_TASK_STEP", a.array_task_step.to_string());
    }
    set("SLURM_JOB_NAME", a.name.clone());
    set("SLURM_SUBMIT_DIR", a.work_dir.clone());
    set("SLURM_SUBMIT_HOST", a.submit_host.clone());
    let node_list = if a.node_list.is_empty() {
        node_name.to_string()
    } else {
        a.node_list.clone()
    };
    set("SLURM_JOB_NODELIST", node_list.clone());
    set("SLURM_NODELIST", node_list);
    set("SLURM_JOB_NUM_NODES", num_nodes.to_string());
    set("SLURM_NNODES", num_nodes.to_string());
    set("SLURM_CPUS_ON_NODE", a.cpus_on_node.to_string());
    set(
        "SLURM_JOB_CPUS_PER_NODE",
        if num_nodes > 1 {
            format!("{}(x{num_nodes})", a.cpus_on_node)
        } else {
            a.cpus_on_node.to_string()
        },
    );
    set("SLURM_JOB_PARTITION", a.partition.clone());
    set("SLURMD_NODENAME", node_name.to_string());
    if a.ntasks_set {
        set("SLURM_NTASKS", a.num_tasks.to_string());
        set("SLURM_NPROCS", a.num_tasks.to_string());
    }
    if a.cpus_per_task > 1 {
        set("SLURM_CPUS_PER_TASK", a.cpus_per_task.to_string());
    }
    if a.mem_on_node_mb > 0 {
        set("SLURM_MEM_PER_NODE", a.mem_on_node_mb.to_string());
    }
    set("SLURM_JOB_USER", a.user.clone());
    set("SLURM_JOB_UID", a.uid.to_string());
    set("SLURM_JOB_GID", a.gid.to_string());
    set("SLURM_CLUSTER_NAME", CLUSTER_NAME.to_string());
    set("SLURM_JOB_START_TIME", a.start_time.to_string());
    if let Some(limit_min) = a.time_limit_min {
        let limit_s = i64::try_from(limit_min.saturating_mul(60)).unwrap_or(i64::MAX);
        set(
            "SLURM_JOB_END_TIME",
            a.start_time.saturating_add(limit_s).to_string(),
        );
    }
    set("SLURM_NODEID", "0".into());
    set("SLURM_PROCID", "0".into());
    set("SLURM_LOCALID", "0".into());
    set("ENVIRONMENT", "BATCH".into());
    // Later entries win in `Command::envs`, so Slurm's values override the submit env's.
    env.into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn write_script(
    dir: &Path,
    path: &Path,
    script: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let create = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(path)
    };
    // The daemon made the job's directory already, except in the tests that launch alone.
    let mut f = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // `jobs/` only needs to be traversable by job users; each job's own dir is theirs
            // alone.
            if let Some(jobs) = dir.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(jobs)?;
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            create()?
        }
        made => made?,
    };
    f.write_all(script.as_bytes())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    }
    // Closed here, before any spawn.
    Ok(())
}

/// Opens an output file for appending (O_APPEND, so stdout and stderr sharing it interleave
/// without overwriting), emptied first as Slurm's default `--open-mode=truncate` does unless
/// `keep` (`--open-mode=append`).
pub(crate) fn open_output(path: &Path, owner: Option<(u32, u32)>, keep: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.is_file() {
        if !keep {
            f.set_len(0)?;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
    }
    Ok(f)
}

/// Removes `state_dir/jobs/<id>` once the job's end is recorded.
pub fn remove_job_dir(state_dir: &Path, job_id: u64) {
    let dir = job_dir(state_dir, job_id);
    // A link to a job directory an earlier daemon made elsewhere: that goes too.
    if let Ok(target) = fs::read_link(&dir) {
        remove_all(job_id, &target);
        if let Err(e) = fs::remove_file(&dir) {
            tracing::warn!(job_id, error = %e, "cannot remove {}", dir.display());
        }
        return;
    }
    remove_all(job_id, &dir);
}

fn remove_all(job_id: u64, dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(job_id, error = %e, "cannot remove {}", dir.display());
        }
    }
}

/// Daemons before runtime directories kept job directories in `state_dir/jobs`: after an
/// upgrade, each one still there is linked from `runtime/jobs`, so that its supervisor is
/// found, followed and cleaned up like the others.
pub fn link_legacy_job_dirs(state_dir: &Path, runtime: &Path) {
    let legacy = state_dir.join("jobs");
    if legacy == runtime.join("jobs") {
        return;
    }
    let Ok(entries) = fs::read_dir(&legacy) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(|n| n.parse::<u64>().ok()).is_none() {
            continue;
        }
        let link = runtime.join("jobs").join(&name);
        let made = fs::create_dir_all(runtime.join("jobs"))
            .and_then(|()| std::os::unix::fs::symlink(entry.path(), &link));
        match made {
            Ok(()) => {
                tracing::info!(dir = %entry.path().display(), "job directory of an earlier daemon linked")
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot link a job directory of an earlier daemon")
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LaunchedRecord {
    pid: u32,
    /// Field 22 of /proc/<pid>/stat, to tell the job's process from a later one with its pid.
    start_ticks: Option<u64>,
}

/// Kills what is left of a job whose supervisor is gone (its directory has no final status):
/// the script's process group, when it is still the process that was launched. True when
/// something was killed.
pub fn kill_orphaned_job(state_dir: &Path, job_id: u64) -> bool {
    let record: Option<LaunchedRecord> = fs::read(job_dir(state_dir, job_id).join(LAUNCHED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match record {
        Some(r) if same_process(r.pid, r.start_ticks) => {
            signal_group(r.pid, libc::SIGKILL);
            true
        }
        _ => false,
    }
}

/// Field 22 of /proc/<pid>/stat: tells a process from a later one with the same pid.
pub fn start_ticks(pid: u32) -> Option<u64> {
    process_start_ticks(pid)
}

fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = File::open(format!("/proc/{pid}/stat"))
        .and_then(crate::cgroup::read_kernel_file)
        .ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `sig` to the process group `pgid`. Never signals groups 0 or 1 (this daemon's own
/// group, or every process).
fn signal_group(pgid: u32, sig: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    #[allow(unsafe_code, clippy::disallowed_methods)]
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, sig, error = %e, "cannot signal the job's process group");
        }
    }
}

fn signal_pid(pid: u32, sig: i32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    #[allow(unsafe_code, clippy::disallowed_methods)]
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    let _ = unsafe { libc::kill(pid, sig) };
}

pub(crate) fn running_as_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::KeyValue;
    use std::collections::BTreeMap;

    /// The test's own ids, so that no user switch happens even when tests run as root.
    fn own_ids() -> (u32, u32) {
        use std::os::unix::fs::MetadataExt as _;
        let me = fs::metadata("/proc/self").expect("/proc/self");
        (me.uid(), me.gid())
    }

    fn assignment(job_id: u64, work_dir: &Path, script: &str) -> Assignment {
        let (uid, gid) = own_ids();
        Assignment {
            job_id,
            run: true,
            batch_host: true,
            name: "probe".into(),
            script: script.into(),
            work_dir: work_dir.to_string_lossy().into_owned(),
            user: "alice".into(),
            uid,
            gid,
            env: vec![
                KeyValue {
                    key: "PATH".into(),
                    value: "/usr/bin:/bin".into(),
                },
                KeyValue {
                    key: "FROM_SUBMIT".into(),
                    value: "kept".into(),
                },
                // Slurm's value must win over a stale one from the submit environment.
                KeyValue {
                    key: "SLURM_JOB_ID".into(),
                    value: "stale".into(),
                },
                KeyValue {
                    key: "BAD=KEY".into(),
                    value: "x".into(),
                },
            ],
            node_list: "n[1-2]".into(),
            num_nodes: 2,
            cpus_on_node: 4,
            mem_on_node_mb: 2048,
            partition: "debug".into(),
            num_tasks: 8,
            cpus_per_task: 2,
            time_limit_min: Some(10),
            submit_host: "login1".into(),
            start_time: 1_700_000_000,
            ntasks_set: true,
            ..Assignment::default()
        }
    }

    fn run_to_end(a: &Assignment, state_dir: &Path) -> (u32, ExitOutcome) {
        let ctx = LaunchContext {
            node_name: "n1",
            state_dir,
        };
        let mut job = launch(a, &ctx, JobSetup::default()).expect("launch");
        let pid = job.pid;
        let status = job
            .child
            .wait_timeout(Some(Duration::from_secs(20)))
            .expect("wait")
            .expect("job ends in time");
        (pid, exit_outcome(status))
    }

    /// Without a pidfd (kernels before 5.3), the exit is still seen as it happens: the
    /// waiter thread's pipe becomes readable, and the status is the script's.
    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own child, in the module that spawns
    fn a_script_is_waited_for_without_a_pidfd() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.2; exit 3"])
            .spawn()
            .expect("spawn");
        // Reaped by the Script, not by std.
        let pid = child.id();
        std::mem::forget(child);
        let mut script = Script::watched_by_thread(pid).expect("waiter");
        assert_eq!(script.try_wait().expect("try_wait"), None, "still running");
        assert_eq!(
            script
                .wait_timeout(Some(Duration::from_millis(10)))
                .expect("wait"),
            None
        );
        let status = script
            .wait_timeout(Some(Duration::from_secs(20)))
            .expect("wait")
            .expect("it exits");
        assert_eq!(status.code(), Some(3));
        assert_eq!(script.wait().expect("again").code(), Some(3));
    }

    fn parse_env(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A real script: output in `slurm-%j.out` in the work dir, stderr in the same file,
    /// arguments passed, the Slurm environment set, exit code 3 reported.
    #[test]
    fn runs_a_script_with_slurm_environment_and_exit_code() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        let script = "#!/bin/sh\necho \"args=$*\"\necho to-stderr >&2\necho \"pid=$$\"\necho \"cwd=$(pwd)\"\nenv\nexit 3\n";
        let mut a = assignment(41, &work, script);
        a.argv = vec!["one".into(), "two words".into()];
        let (pid, outcome) = run_to_end(&a, &tmp.path().join("state"));
        assert_eq!(
            outcome,
            ExitOutcome {
                exit_code: 3,
                signal: 0,
                message: String::new()
            }
        );

        let out = fs::read_to_string(work.join("slurm-41.out")).expect("output file");
        assert!(out.starts_with("args=one two words\n"), "{out}");
        assert!(out.contains("to-stderr\n"), "stderr shares the file: {out}");
        assert!(out.contains(&format!("pid={pid}\n")), "{out}");
        let env = parse_env(&out);
        let want = [
            ("SLURM_JOB_ID", "41"),
            ("SLURM_JOBID", "41"),
            ("SLURM_JOB_NAME", "probe"),
            ("SLURM_SUBMIT_DIR", a.work_dir.as_str()),
            ("SLURM_SUBMIT_HOST", "login1"),
            ("SLURM_JOB_NODELIST", "n[1-2]"),
            ("SLURM_NODELIST", "n[1-2]"),
            ("SLURM_JOB_NUM_NODES", "2"),
            ("SLURM_NNODES", "2"),
            ("SLURM_CPUS_ON_NODE", "4"),
            ("SLURM_JOB_CPUS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_PARTITION", "debug"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_NPROCS", "8"),
            ("SLURM_CPUS_PER_TASK", "2"),
            ("SLURM_MEM_PER_NODE", "2048"),
            ("SLURM_CLUSTER_NAME", "drover"),
            ("SLURM_JOB_START_TIME", "1700000000"),
            ("SLURM_JOB_END_TIME", "1700000600"),
            ("SLURM_NODEID", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_LOCALID", "0"),
            ("FROM_SUBMIT", "kept"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in\n{out}");
        }
        assert_eq!(env.get("SLURM_TASK_PID"), Some(&pid.to_string()));
        assert!(!env.contains_key("BAD"), "invalid names are skipped");
        assert_eq!(
            env.get("cwd").map(String::as_str),
            Some(a.work_dir.as_str())
        );

        let script_path = job_dir(&tmp.path().join("state"), 41).join("script");
        let mode = fs::metadata(&script_path).expect("script").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
    }

    /// A script without a `#!` line (the kernel refuses it: ENOEXEC) runs under /bin/sh, its
    /// arguments and pid still its own.
    #[test]
    fn a_script_without_an_interpreter_line_runs_under_sh() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        let mut a = assignment(
            43,
            &work,
            "echo \"args=$*\"\necho \"pid=$$ task=$SLURM_TASK_PID\"\nexit 4\n",
        );
        a.argv = vec!["x".into(), "y z".into()];
        let (pid, outcome) = run_to_end(&a, &tmp.path().join("state"));
        assert_eq!(outcome.exit_code, 4, "{outcome:?}");
        let out = fs::read_to_string(work.join("slurm-43.out")).expect("output file");
        assert_eq!(out, format!("args=x y z\npid={pid} task={pid}\n"));
    }

    /// The script starts as a new process would: no signal blocked, SIGPIPE not ignored
    /// (Rust ignores it in the supervisor), its own process group; and, when the daemon is
    /// root, as the job's user with that user's groups, in a work dir only they can write.
    #[test]
    fn a_script_starts_clean_and_as_its_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let work = tmp.path().join("work");
        fs::create_dir(&work).expect("mkdir");
        let root = running_as_root();
        let mut a = assignment(
            47,
            &work,
            // The shell's own masks, read by the shell itself: while it waits for a child
            // (a `grep` reading them), dash blocks every signal.
            "#!/bin/sh\nwhile read -r k v; do case $k in SigBlk:|SigIgn:) echo \"$k $v\";; esac; done < /proc/$$/status\necho \"pgrp=$(cut -d' ' -f5 /proc/$$/stat) pid=$$\"\necho \"ids=$(id -u) $(id -g) $(id -G)\"\n",
        );
        if root {
            fs::set_permissions(&work, fs::Permissions::from_mode(0o777)).expect("chmod");
            (a.uid, a.gid) = (65534, 65534);
        }
        let (pid, outcome) = run_to_end(&a, &tmp.path().join("state"));
        assert_eq!(outcome.exit_code, 0, "{outcome:?}");
        let out = fs::read_to_string(work.join("slurm-47.out")).expect("output file");
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{name} in {out}"))
                .to_string()
        };
        assert_eq!(u64::from_str_radix(&field("SigBlk:"), 16), Ok(0), "{out}");
        let ignored = u64::from_str_radix(&field("SigIgn:"), 16).expect("hex");
        assert_eq!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored: {out}"
        );
        assert!(out.contains(&format!("pgrp={pid} pid={pid}\n")), "{out}");
        if root {
            assert!(out.contains("ids=65534 65534 65534\n"), "{out}");
        } else {
            eprintln!("not root: the switch to the job's user is not exercised");
        }
    }

    /// Optional variables are absent when not asked for; `--error` gets its own file; patterns
    /// relative to the work dir; the shebang picks the interpreter.
    #[test]
    fn separate_error_file_and_optional_variables() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = tmp.path().join("w");
        fs::create_dir_all(work.join("logs")).expect("mkdir");
        let script =
            "#!/usr/bin/env bash\necho \"bash=${BASH_VERSION:+yes}\"\necho oops >&2\nenv\n";
        let mut a = assignment(7, &work, script);
        a.stdout = "logs/%x-%j.out".into();
        a.stderr = "logs/%x-%4j.err".into();
        a.ntasks_set = false;
        a.cpus_per_task = 1;
        a.mem_on_node_mb = 0;
        a.time_limit_min = None;
        a.num_nodes = 1;
        let (_, outcome) = run_to_end(&a, &tmp.path().join("state"));
        assert_eq!((outcome.exit_code, outcome.signal), (0, 0));
        let out = fs::read_to_string(work.join("logs/probe-7.out")).expect("stdout file");
        let err = fs::read_to_string(work.join("logs/probe-0007.err")).expect("stderr file");
        assert!(out.starts_with("bash=yes\n"), "{out}");
        assert_eq!(err, "oops\n");
        let env = parse_env(&out);
        for absent in [
            "SLURM_NTASKS",
            "SLURM_NPROCS",
            "SLURM_CPUS_PER_TASK",
            "SLURM_MEM_PER_NODE",
            "SLURM_JOB_END_TIME",
        ] {
            assert!(!env.contains_key(absent), "{absent} set in\n{out}");
        }
        assert_eq!(
            env.get("SLURM_JOB_CPUS_PER_NODE").map(String::as_str),
            Some("4")
        );
    }

    /// Reference: Slurm reports a job killed by a signal as exit code 0, signal N (`0:15`).
    #[test]
    fn a_script_killed_by_sigterm_reports_signal_15() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = assignment(
            8,
            tmp.path(),
            "#!/bin/sh\necho before\nkill -TERM $$\necho after\n",
        );
        let (_, outcome) = run_to_end(&a, &tmp.path().join("state"));
        assert_eq!((outcome.exit_code, outcome.signal), (0, 15));
        let out = fs::read_to_string(tmp.path().join("slurm-8.out")).expect("output");
        assert_eq!(out, "before\n");
    }

    #[test]
    fn a_missing_work_dir_fails_the_launch_with_a_message() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ctx = LaunchContext {
            node_name: "n1",
            state_dir: tmp.path(),
        };
        let missing = tmp.path().join("nope");
        let err = launch(
            &assignment(11, &missing, "#!/bin/sh\n"),
            &ctx,
            JobSetup::default(),
        )
        .expect_err("must fail");
        assert!(matches!(err, LaunchError::WorkDirMissing { .. }));
        assert!(err.to_string().contains("nope"), "{err}");

        let mut a = assignment(12, tmp.path(), "#!/bin/sh\n");
        a.work_dir = "relative/dir".into();
        assert!(matches!(
            launch(&a, &ctx, JobSetup::default()),
            Err(LaunchError::WorkDirNotAbsolute(_))
        ));

        let mut a = assignment(13, tmp.path(), "#!/bin/sh\n");
        a.stdout = "no/such/dir/out".into();
        assert!(matches!(
            launch(&a, &ctx, JobSetup::default()),
            Err(LaunchError::Output { .. })
        ));
    }
}
