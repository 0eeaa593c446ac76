//! The node daemon's `Tasks` service: srun launches the tasks of a job step here and talks to
//! them directly (step.proto). The daemon checks its applied assignments first: a step's tasks
//! start only for a job that runs on this node, as the job's user, in the job's working
//! directory and (when this node has it) the job's cgroup.
//!
//! ```text
//!  srun ── TaskInput { launch } ──► job assigned here and running? (waits briefly for the
//!                                   assignments poll to catch up) ── no ──► `refused`
//!        ── stdin chunks ─────────► task(s) reading stdin        (`-i`: task 0 by default)
//!        ── signal ───────────────► every task's process group
//!        ◄─ stdout / stderr chunks ─ tasks' pipes (or the files of `-o`/`-e` patterns)
//!        ◄─ exited { code, signal } ─ one per task, after its output
//!  srun's stream breaks, or the job stops being assigned here ──► the tasks are killed
//! ```
//!
//! Processes are spawned and signalled by `launcher` only (STYLE P12).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::{
    task_input, task_output, Assignment, KeyValue, TaskExit, TaskInput, TaskLaunch, TaskOutput,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cgroup::AttachFds;
use crate::launcher::{self, TaskSpawn, TaskStdio};
use crate::pattern::{self, PatternContext};

/// How long a launch waits for this node's assignments to show the job (a step can be
/// created right after the job starts, before this daemon's next poll answers).
const ASSIGNMENT_PATIENCE: Duration = Duration::from_secs(10);
const CHUNK: usize = 16 * 1024;

/// What the service needs from the daemon.
pub(crate) trait StepHost: Send + Sync + 'static {
    fn node_name(&self) -> &str;
    /// The job's assignment to this node while it should run here.
    fn running_assignment(&self, job_id: u64) -> Option<Assignment>;
    /// Changes whenever a new assignments reply was taken in.
    fn assignments_watch(&self) -> watch::Receiver<u64>;
    fn job_cgroup(&self, job_id: u64) -> Option<AttachFds>;
    fn kill_wait(&self) -> Duration;
}

pub(crate) struct TaskService<H: StepHost> {
    pub host: Arc<H>,
}

type Out = mpsc::Sender<Result<TaskOutput, Status>>;

fn output(task_id: u32, kind: task_output::Kind) -> Result<TaskOutput, Status> {
    Ok(TaskOutput {
        task_id,
        kind: Some(kind),
    })
}

#[tonic::async_trait]
impl<H: StepHost> drover_proto::tasks_server::Tasks for TaskService<H> {
    type LaunchTasksStream = ReceiverStream<Result<TaskOutput, Status>>;

    async fn launch_tasks(
        &self,
        request: Request<Streaming<TaskInput>>,
    ) -> Result<Response<Self::LaunchTasksStream>, Status> {
        let mut input = request.into_inner();
        let launch = match input.message().await? {
            Some(TaskInput {
                kind: Some(task_input::Kind::Launch(l)),
            }) => l,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a launch",
                ))
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let host = self.host.clone();
        tokio::spawn(async move {
            let assignment = wait_for_assignment(&*host, launch.job_id).await;
            match assignment {
                None => {
                    let why = format!(
                        "job {} is not running on node {}",
                        launch.job_id,
                        host.node_name()
                    );
                    tracing::warn!(job_id = launch.job_id, step = launch.step_id, "{why}");
                    let _ = tx.send(output(0, task_output::Kind::Refused(why))).await;
                }
                Some(a) => run_step(&*host, a, launch, input, tx).await,
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn wait_for_assignment<H: StepHost>(host: &H, job_id: u64) -> Option<Assignment> {
    let mut changes = host.assignments_watch();
    let deadline = tokio::time::Instant::now() + ASSIGNMENT_PATIENCE;
    loop {
        if let Some(a) = host.running_assignment(job_id) {
            return Some(a);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return host.running_assignment(job_id),
        }
    }
}

/// The environment of task `task_id`: srun's, then the job's Slurm variables (from the
/// assignment this node follows), then the step's and the task's (slurm.md §2.2).
pub fn task_environment(
    a: &Assignment,
    l: &TaskLaunch,
    node_name: &str,
    task_id: u32,
    local_id: u32,
) -> Vec<(String, String)> {
    let mut job = a.clone();
    job.env = l.env.clone();
    let mut env: Vec<(String, String)> = launcher::job_environment(&job, node_name)
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k != "ENVIRONMENT" || l.env.iter().any(|kv| kv.key == "ENVIRONMENT"))
        .collect();
    let gtids: Vec<String> = l.task_ids.iter().map(u32::to_string).collect();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("SLURM_STEP_ID", l.step_id.to_string());
    set("SLURM_STEPID", l.step_id.to_string());
    set("SLURM_PROCID", task_id.to_string());
    set("SLURM_LOCALID", local_id.to_string());
    set("SLURM_NODEID", l.node_index.to_string());
    set("SLURM_GTIDS", gtids.join(","));
    set("SLURM_NTASKS", l.ntasks.to_string());
    set("SLURM_NPROCS", l.ntasks.to_string());
    set("SLURM_STEP_NUM_TASKS", l.ntasks.to_string());
    set("SLURM_STEP_NUM_NODES", l.num_nodes.to_string());
    set("SLURM_STEP_NODELIST", l.node_list.clone());
    set("SLURM_STEP_TASKS_PER_NODE", l.tasks_per_node.clone());
    set("SLURM_TASKS_PER_NODE", l.tasks_per_node.clone());
    if l.cpus_per_task_set {
        set("SLURM_CPUS_PER_TASK", l.cpus_per_task.to_string());
    }
    // A node other than the batch host: srun's GPU variables name the batch host's GPUs.
    if !a.batch_host && !a.gpus.is_empty() {
        let list: Vec<String> = a.gpus.iter().map(u32::to_string).collect();
        set("CUDA_VISIBLE_DEVICES", list.join(","));
        set("SLURM_JOB_GPUS", list.join(","));
    }
    // Later entries win; keep one of each, in first-seen order.
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (k, _)) in env.iter().enumerate() {
        last.insert(k.clone(), i);
    }
    env.into_iter()
        .enumerate()
        .filter(|(i, (k, _))| last.get(k) == Some(i))
        .map(|(_, kv)| kv)
        .collect()
}

struct Running {
    /// Process group of each task still running.
    pgids: Mutex<BTreeMap<u32, u32>>,
}

impl Running {
    fn signal_all(&self, sig: i32) {
        let pgids: Vec<u32> = self
            .pgids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .copied()
            .collect();
        for pgid in pgids {
            launcher::signal_task(pgid, sig);
        }
    }
}

/// Opens the file a pattern names for one task; a file several tasks of this node name is
/// opened (and truncated) once and shared, as one slurmstepd does.
fn open_file(
    files: &mut BTreeMap<PathBuf, std::fs::File>,
    pattern_text: &str,
    ctx: &PatternContext<'_>,
    cwd: &Path,
    write: bool,
    owner: Option<(u32, u32)>,
    append: bool,
) -> std::io::Result<(std::fs::File, PathBuf)> {
    let path = cwd.join(pattern::expand(pattern_text, ctx));
    if let Some(f) = files.get(&path) {
        return Ok((f.try_clone()?, path));
    }
    let f = if write {
        launcher::open_output(&path, owner, append)?
    } else {
        std::fs::File::open(&path)?
    };
    files.insert(path.clone(), f.try_clone()?);
    Ok((f, path))
}

async fn run_step<H: StepHost>(
    host: &H,
    a: Assignment,
    l: TaskLaunch,
    mut input: Streaming<TaskInput>,
    tx: Out,
) {
    let node = host.node_name().to_string();
    let cwd = PathBuf::from(if l.cwd.is_empty() {
        &a.work_dir
    } else {
        &l.cwd
    });
    let cgroup = host.job_cgroup(a.job_id);
    let owner = (launcher::running_as_root() && a.uid != 0).then_some((a.uid, a.gid));
    let running = Arc::new(Running {
        pgids: Mutex::new(BTreeMap::new()),
    });
    let mut stdins: Vec<ChildStdin> = Vec::new();
    let mut waiters = tokio::task::JoinSet::new();
    let step = l.step_id.to_string();
    let mut files: BTreeMap<PathBuf, std::fs::File> = BTreeMap::new();
    for (local_id, &task_id) in l.task_ids.iter().enumerate() {
        let local_id = u32::try_from(local_id).unwrap_or(u32::MAX);
        let env = task_environment(&a, &l, &node, task_id, local_id);
        let ctx = PatternContext {
            job_id: a.job_id,
            job_name: &a.name,
            user: &a.user,
            node_name: &node,
            node_index: l.node_index,
            task_id,
            array: a.array_task_id.map(|t| (a.array_job_id, t)),
            step: &step,
        };
        let fail = |msg: String| {
            let tx = tx.clone();
            async move {
                let exit = TaskExit {
                    task_id,
                    exit_code: 2,
                    signal: 0,
                    error: msg,
                };
                let _ = tx
                    .send(output(task_id, task_output::Kind::Exited(exit)))
                    .await;
            }
        };
        let mut stdio = || -> std::io::Result<(TaskStdio, TaskStdio, TaskStdio)> {
            let reads_stdin = l.stdin_task == -2 || i64::from(l.stdin_task) == i64::from(task_id);
            let stdin = if !l.stdin.is_empty() {
                TaskStdio::File(open_file(&mut files, &l.stdin, &ctx, &cwd, false, owner, false)?.0)
            } else if reads_stdin {
                TaskStdio::Pipe
            } else {
                TaskStdio::Null
            };
            let stdout = if l.stdout.is_empty() {
                None
            } else {
                Some(open_file(
                    &mut files,
                    &l.stdout,
                    &ctx,
                    &cwd,
                    true,
                    owner,
                    l.open_append,
                )?)
            };
            let stderr = if !l.stderr.is_empty() {
                // The same file as `-o` is the same open file (the cache shares it).
                let (f, _) = open_file(
                    &mut files,
                    &l.stderr,
                    &ctx,
                    &cwd,
                    true,
                    owner,
                    l.open_append,
                )?;
                TaskStdio::File(f)
            } else {
                match &stdout {
                    // `-o` alone: stderr goes to the same file (srun(1)).
                    Some((f, _)) => TaskStdio::File(f.try_clone()?),
                    None => TaskStdio::Pipe,
                }
            };
            let stdout = match stdout {
                Some((f, _)) => TaskStdio::File(f),
                None => TaskStdio::Pipe,
            };
            Ok((stdin, stdout, stderr))
        };
        let stdio = stdio();
        let (stdin, stdout, stderr) = match stdio {
            Ok(s) => s,
            Err(e) => {
                fail(format!("Could not open stdio file: {e}")).await;
                continue;
            }
        };
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let Some(argv0) = l
            .argv
            .first()
            .and_then(|c| launcher::resolve_command(c, path_var, &cwd))
        else {
            let name = l.argv.first().cloned().unwrap_or_default();
            fail(format!("execve(): {name}: No such file or directory")).await;
            continue;
        };
        let mut argv = l.argv.clone();
        argv[0] = argv0.to_string_lossy().into_owned();
        let spawned = launcher::spawn_task(&TaskSpawn {
            argv: &argv,
            cwd: &cwd,
            env: &env,
            uid: a.uid,
            gid: a.gid,
            cgroup: cgroup.as_ref(),
            stdin,
            stdout,
            stderr,
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                fail(format!("execve(): {}: {e}", l.argv[0])).await;
                continue;
            }
        };
        if let Some(pid) = child.id() {
            running
                .pgids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(task_id, pid);
        }
        if let Some(s) = child.stdin.take() {
            stdins.push(s);
        }
        let mut pumps = tokio::task::JoinSet::new();
        if let Some(mut out) = child.stdout.take() {
            let tx = tx.clone();
            pumps.spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = out.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = task_output::Kind::Stdout(buf[..n].to_vec());
                    if tx.send(output(task_id, chunk)).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let tx = tx.clone();
            pumps.spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = task_output::Kind::Stderr(buf[..n].to_vec());
                    if tx.send(output(task_id, chunk)).await.is_err() {
                        break;
                    }
                }
            });
        }
        let tx = tx.clone();
        let running = running.clone();
        waiters.spawn(async move {
            let status = child.wait().await;
            running
                .pgids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&task_id);
            // Output first, then the exit (a process the task left behind may hold the
            // pipes: its output is not waited for beyond a moment).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while pumps.join_next().await.is_some() {}
            })
            .await;
            let exit = match status {
                Ok(s) => {
                    let o = launcher::exit_outcome(s);
                    TaskExit {
                        task_id,
                        exit_code: o.exit_code,
                        signal: o.signal,
                        error: String::new(),
                    }
                }
                Err(e) => TaskExit {
                    task_id,
                    exit_code: 1,
                    signal: 0,
                    error: format!("cannot wait for the task: {e}"),
                },
            };
            let _ = tx
                .send(output(task_id, task_output::Kind::Exited(exit)))
                .await;
        });
    }
    drop(tx);
    tracing::info!(
        job_id = a.job_id,
        step = l.step_id,
        tasks = l.task_ids.len(),
        cgroup = cgroup.is_some(),
        "step tasks started"
    );
    drop(cgroup);
    drop(files);

    let mut changes = host.assignments_watch();
    let mut input_open = true;
    let mut stopped = false;
    loop {
        tokio::select! {
            done = waiters.join_next() => {
                if done.is_none() {
                    break;
                }
            }
            msg = input.message(), if input_open => match msg {
                Ok(Some(TaskInput { kind: Some(task_input::Kind::Stdin(bytes)) })) => {
                    let mut open = Vec::with_capacity(stdins.len());
                    for mut s in stdins.drain(..) {
                        if s.write_all(&bytes).await.is_ok() {
                            open.push(s);
                        }
                    }
                    stdins = open;
                }
                Ok(Some(TaskInput { kind: Some(task_input::Kind::StdinClosed(_)) })) => {
                    stdins.clear();
                }
                Ok(Some(TaskInput { kind: Some(task_input::Kind::Signal(sig)) })) => {
                    running.signal_all(sig);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    // srun is gone: so is its step (Slurm kills a step whose srun died).
                    input_open = false;
                    stdins.clear();
                    tracing::info!(job_id = a.job_id, step = l.step_id, "srun went away: killing the step's tasks");
                    running.signal_all(libc::SIGKILL);
                }
            },
            changed = changes.changed(), if !stopped => {
                if changed.is_err() || host.running_assignment(a.job_id).is_none() {
                    // The job ended, was cancelled, or left this node: its tasks go too.
                    stopped = true;
                    running.signal_all(libc::SIGTERM);
                    let running = running.clone();
                    let grace = host.kill_wait();
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        running.signal_all(libc::SIGKILL);
                    });
                }
            }
        }
    }
}

/// srun's environment, for a launch.
pub fn key_values(vars: impl IntoIterator<Item = (String, String)>) -> Vec<KeyValue> {
    vars.into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost {
        assigned: Mutex<Option<Assignment>>,
        seq: watch::Sender<u64>,
    }

    impl StepHost for FakeHost {
        fn node_name(&self) -> &str {
            "n2"
        }
        fn running_assignment(&self, job_id: u64) -> Option<Assignment> {
            self.assigned
                .lock()
                .unwrap()
                .clone()
                .filter(|a| a.job_id == job_id)
        }
        fn assignments_watch(&self) -> watch::Receiver<u64> {
            self.seq.subscribe()
        }
        fn job_cgroup(&self, _: u64) -> Option<AttachFds> {
            None
        }
        fn kill_wait(&self) -> Duration {
            Duration::from_millis(10)
        }
    }

    fn assignment(job_id: u64) -> Assignment {
        Assignment {
            job_id,
            run: true,
            name: "job".into(),
            work_dir: "/tmp".into(),
            user: "alice".into(),
            uid: 1000,
            gid: 1000,
            node_list: "n[1-2]".into(),
            num_nodes: 2,
            cpus_on_node: 2,
            partition: "debug".into(),
            env: vec![KeyValue {
                key: "FROM_SUBMIT".into(),
                value: "1".into(),
            }],
            ..Assignment::default()
        }
    }

    /// The node refuses a launch for a job its applied assignments do not show running here,
    /// and takes one that shows up while it waits.
    #[tokio::test(start_paused = true)]
    async fn a_launch_waits_for_the_assignment_then_refuses() {
        let host = Arc::new(FakeHost {
            assigned: Mutex::new(None),
            seq: watch::channel(0).0,
        });
        assert!(wait_for_assignment(&*host, 7).await.is_none());
        let h = host.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            *h.assigned.lock().unwrap() = Some(assignment(7));
            h.seq.send_modify(|n| *n += 1);
        });
        assert_eq!(
            wait_for_assignment(&*host, 7).await.map(|a| a.job_id),
            Some(7)
        );
        assert!(wait_for_assignment(&*host, 8).await.is_none());
    }

    /// A task starts from srun's environment, gets the job's Slurm variables from the
    /// assignment, and the step's and its own on top (slurm.md §2.2).
    #[test]
    fn task_environment_has_the_steps_and_the_tasks_variables() {
        let l = TaskLaunch {
            job_id: 7,
            step_id: 3,
            env: vec![
                KeyValue {
                    key: "MINE".into(),
                    value: "kept".into(),
                },
                KeyValue {
                    key: "SLURM_PROCID".into(),
                    value: "0".into(),
                },
            ],
            node_index: 1,
            task_ids: vec![2, 3],
            ntasks: 4,
            num_nodes: 2,
            node_list: "n[1-2]".into(),
            tasks_per_node: "2(x2)".into(),
            cpus_per_task: 1,
            ..TaskLaunch::default()
        };
        let env: BTreeMap<String, String> = task_environment(&assignment(7), &l, "n2", 3, 1)
            .into_iter()
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("MINE"), Some("kept"));
        assert_eq!(
            get("FROM_SUBMIT"),
            None,
            "srun's environment, not the submit one"
        );
        for (k, v) in [
            ("SLURM_JOB_ID", "7"),
            ("SLURM_STEP_ID", "3"),
            ("SLURM_PROCID", "3"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NODEID", "1"),
            ("SLURM_GTIDS", "2,3"),
            ("SLURM_NTASKS", "4"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_STEP_NUM_NODES", "2"),
            ("SLURM_STEP_NODELIST", "n[1-2]"),
            ("SLURM_TASKS_PER_NODE", "2(x2)"),
            ("SLURMD_NODENAME", "n2"),
        ] {
            assert_eq!(get(k), Some(v), "{k}");
        }
        assert_eq!(get("SLURM_CPUS_PER_TASK"), None, "only when -c was given");
    }
}
