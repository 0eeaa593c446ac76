//! Running a job step (`srun.rs` decides what; this is the I/O): create the step through the
//! controllers, open one `Tasks.LaunchTasks` stream per node of its layout, carry srun's stdin
//! and signals to the tasks and their output back to srun's stdout/stderr, and record the end.
//!
//! Signals, as Slurm's srun: a first SIGINT prints the tasks' states, another within a second
//! sends SIGINT to the tasks (at once with `-X` or `--quit-on-interrupt`), a third SIGKILL.
//! SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the tasks. They are caught
//! from srun's start ([`Signals`]), so one that comes before the tasks exist reaches them once
//! they do (srun's own allocation uses the same catch while its job pends: `srun_alloc.rs`).

use crate::client::{request_id, ClientError, Cluster};
use crate::srun::{exit_status, failure_lines, label, Input, Labeller, Step};
use drover_proto as pb;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const EXIT_ERROR: i32 = 1;

enum Event {
    Output(usize, pb::TaskOutput),
    /// A node's stream ended (or failed: the message).
    Closed(usize, Option<String>),
}

struct Task {
    node: usize,
    out: Labeller,
    err: Labeller,
    end: Option<(i32, i32)>,
}

fn kv(vars: &[(String, String)]) -> Vec<pb::KeyValue> {
    vars.iter()
        .map(|(k, v)| pb::KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn write_out(stderr: bool, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if stderr {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(bytes);
        let _ = e.flush();
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(bytes);
        let _ = o.flush();
    }
}

/// How a step ended: srun's exit status, the tasks' highest exit code and the signal that
/// ended one of them (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub rc: i32,
    pub exit_code: i32,
    pub signal: i32,
}

/// srun's signals, caught from the start (before the step exists): one that comes while the
/// step is created, or while srun's own allocation pends, is not lost.
pub struct Signals {
    pub sigint: Option<tokio::signal::unix::Signal>,
    /// SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, by number.
    pub forwarded: Vec<(i32, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub fn catch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let mut forwarded = Vec::new();
        for kind in [
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
            SignalKind::user_defined1(),
            SignalKind::user_defined2(),
        ] {
            if let Ok(s) = signal(kind) {
                forwarded.push((kind.as_raw_value(), s));
            }
        }
        Signals {
            sigint: signal(SignalKind::interrupt()).ok(),
            forwarded,
        }
    }
}

/// Runs the step to its end; returns srun's exit status.
pub async fn run(step: Step) -> i32 {
    let mut signals = Signals::catch();
    let mut cluster = match Cluster::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("srun: error: {e}");
            return EXIT_ERROR;
        }
    };
    let ended = run_in(&mut cluster, &step, &mut signals).await;
    cluster.save();
    ended.rc
}

/// Creates the step in its (running) job, runs its tasks and records its end. The one path
/// for a step's tasks, inside a batch job and in srun's own allocation (`srun_alloc.rs`).
pub async fn run_in(cluster: &mut Cluster, step: &Step, signals: &mut Signals) -> Ended {
    let failed = Ended {
        rc: EXIT_ERROR,
        exit_code: EXIT_ERROR,
        signal: 0,
    };
    for w in &step.warnings {
        eprintln!("{w}");
    }
    let create = pb::CreateStepRequest {
        request_id: request_id(),
        job_id: step.job_id,
        uid: crate::identity::uid(),
        name: step.name.clone(),
        ntasks: step.ntasks,
        nodes: step.nodes.unwrap_or(0),
        ntasks_per_node: step.ntasks_per_node.unwrap_or(0),
        cpus_per_task: step.cpus_per_task.unwrap_or(1),
    };
    let created = cluster
        .call_steps(|mut c| {
            let req = create.clone();
            async move { c.create_step(req).await.map(|r| r.into_inner()) }
        })
        .await;
    let created = match created {
        Ok(c) => c,
        Err(ClientError::Rejected(why)) => {
            eprintln!(
                "srun: error: Unable to create step for job {}: {why}",
                step.job_id
            );
            return failed;
        }
        Err(e) => {
            eprintln!("srun: error: {e}");
            return failed;
        }
    };
    cluster.saw(created.applied_index);
    let step_id = created.step_id;
    let (rc, exit_code, signal) = launch(step, &created, signals).await;
    // The step's record keeps the tasks' highest exit code and the signal apart (sacct's
    // `ExitCode` 0:9), srun's own status joins them (137).
    let end = pb::EndStepRequest {
        request_id: request_id(),
        job_id: step.job_id,
        step_id,
        exit_code,
        signal,
    };
    match cluster
        .call_steps(|mut c| {
            let req = end.clone();
            async move { c.end_step(req).await.map(|r| r.into_inner()) }
        })
        .await
    {
        Ok(r) => cluster.saw(r.applied_index),
        Err(e) => eprintln!(
            "srun: error: cannot record the end of step {}.{step_id}: {e}",
            step.job_id
        ),
    }
    Ended {
        rc,
        exit_code,
        signal,
    }
}

/// Launches the tasks on the step's nodes and follows them; returns srun's exit status, the
/// tasks' highest exit code and the signal that ended one of them (0: none).
async fn launch(
    step: &Step,
    created: &pb::CreateStepReply,
    signals: &mut Signals,
) -> (i32, i32, i32) {
    let Signals { sigint, forwarded } = signals;
    let mut interrupts = 0;
    let mut last_interrupt: Option<std::time::Instant> = None;
    let node_names: Vec<String> = created.nodes.iter().map(|n| n.name.clone()).collect();
    let node_list = drover_scheduler::hostlist::compress(&node_names);
    let counts: Vec<u32> = created.nodes.iter().map(|n| n.tasks).collect();
    let tasks_per_node = drover_scheduler::steps::tasks_per_node(&counts);
    let ntasks: u32 = counts.iter().sum();
    let stdin_task: i32 = match step.input {
        Input::Task(t) => i32::try_from(t).unwrap_or(-1),
        Input::All => -2,
        Input::None | Input::File(_) => -1,
    };
    let (events_tx, mut events) = mpsc::channel::<Event>(256);
    let mut inputs: Vec<mpsc::Sender<pb::TaskInput>> = Vec::new();
    let mut tasks: BTreeMap<u32, Task> = BTreeMap::new();
    let mut reads_stdin: Vec<bool> = Vec::new();
    let mut first = 0u32;
    for (i, node) in created.nodes.iter().enumerate() {
        let ids: Vec<u32> = (first..first + node.tasks).collect();
        first += node.tasks;
        for &t in &ids {
            tasks.insert(
                t,
                Task {
                    node: i,
                    out: Labeller::default(),
                    err: Labeller::default(),
                    end: None,
                },
            );
        }
        reads_stdin
            .push(stdin_task == -2 || ids.iter().any(|&t| i64::from(t) == i64::from(stdin_task)));
        let launch = pb::TaskLaunch {
            job_id: step.job_id,
            step_id: created.step_id,
            argv: step.argv.clone(),
            env: kv(&step.env),
            cwd: step.cwd.clone(),
            node_index: u32::try_from(i).unwrap_or(u32::MAX),
            task_ids: ids,
            ntasks,
            num_nodes: u32::try_from(created.nodes.len()).unwrap_or(u32::MAX),
            node_list: node_list.clone(),
            tasks_per_node: tasks_per_node.clone(),
            cpus_per_task: step.cpus_per_task.unwrap_or(1),
            cpus_per_task_set: step.cpus_per_task.is_some(),
            stdout: step.stdout.clone().unwrap_or_default(),
            stderr: step.stderr.clone().unwrap_or_default(),
            stdin: match &step.input {
                Input::File(f) => f.clone(),
                _ => String::new(),
            },
            open_append: step.append,
            stdin_task,
        };
        let (tx, rx) = mpsc::channel::<pb::TaskInput>(64);
        let _ = tx
            .send(pb::TaskInput {
                kind: Some(pb::task_input::Kind::Launch(launch)),
            })
            .await;
        inputs.push(tx);
        let addr = node.addr.clone();
        let events_tx = events_tx.clone();
        tokio::spawn(async move {
            let result = async {
                if addr.is_empty() {
                    return Err("the node registered no address for its tasks service".into());
                }
                let mut client = pb::tasks_client::TasksClient::connect(format!("http://{addr}"))
                    .await
                    .map_err(|e| format!("cannot reach {addr}: {e}"))?;
                let mut stream = client
                    .launch_tasks(ReceiverStream::new(rx))
                    .await
                    .map_err(|s| s.message().to_string())?
                    .into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => {
                            if events_tx.send(Event::Output(i, m)).await.is_err() {
                                return Ok(());
                            }
                        }
                        Ok(None) => return Ok(()),
                        Err(s) => return Err(s.message().to_string()),
                    }
                }
            }
            .await;
            let _ = events_tx.send(Event::Closed(i, result.err())).await;
        });
    }
    drop(events_tx);

    // srun's stdin, read on a thread of its own (a blocking read never holds up the end).
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Option<Vec<u8>>>(16);
    let wants_stdin = reads_stdin.iter().any(|&r| r);
    if wants_stdin {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = stdin_tx.blocking_send(None);
                        return;
                    }
                    Ok(n) => {
                        if stdin_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        drop(stdin_tx);
    }
    let mut stdin_open = wants_stdin;

    let mut open_nodes = created.nodes.len();
    let mut launch_failed = false;
    let mut closed = vec![false; created.nodes.len()];
    let send_signal = |inputs: &[mpsc::Sender<pb::TaskInput>], sig: i32| {
        for tx in inputs {
            // Behind stdin chunks if need be, never dropped.
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx
                    .send(pb::TaskInput {
                        kind: Some(pb::task_input::Kind::Signal(sig)),
                    })
                    .await;
            });
        }
    };
    while open_nodes > 0 {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    Event::Output(i, m) => {
                        let task_id = m.task_id;
                        match m.kind {
                            Some(pb::task_output::Kind::Stdout(b)) => {
                                emit(step, &mut tasks, task_id, ntasks, false, &b);
                            }
                            Some(pb::task_output::Kind::Stderr(b)) => {
                                emit(step, &mut tasks, task_id, ntasks, true, &b);
                            }
                            Some(pb::task_output::Kind::Exited(x)) => {
                                if !x.error.is_empty() {
                                    eprintln!("slurmstepd: error: {}", x.error);
                                }
                                if let Some(t) = tasks.get_mut(&x.task_id) {
                                    let l = label(x.task_id, ntasks);
                                    let mut out = Vec::new();
                                    if step.label {
                                        t.out.finish(&l, &mut out);
                                        write_out(false, &out);
                                        out.clear();
                                        t.err.finish(&l, &mut out);
                                        write_out(true, &out);
                                    }
                                    t.end = Some((x.exit_code, x.signal));
                                }
                            }
                            Some(pb::task_output::Kind::Refused(why)) => {
                                eprintln!(
                                    "srun: error: Task launch for StepId={}.{} failed on node {}: {why}",
                                    step.job_id, created.step_id, created.nodes[i].name
                                );
                                launch_failed = true;
                            }
                            None => {}
                        }
                    }
                    Event::Closed(i, err) => {
                        if !closed[i] {
                            closed[i] = true;
                            open_nodes -= 1;
                        }
                        if let Some(e) = err {
                            if tasks.values().any(|t| t.node == i && t.end.is_none()) {
                                eprintln!(
                                    "srun: error: Task launch for StepId={}.{} failed on node {}: {e}",
                                    step.job_id, created.step_id, created.nodes[i].name
                                );
                                launch_failed = true;
                            }
                        }
                        if launch_failed {
                            // The other nodes' tasks go too (closing their streams kills them).
                            inputs.clear();
                        }
                    }
                }
            }
            chunk = stdin_rx.recv(), if stdin_open => {
                let (msg, last) = match chunk {
                    Some(Some(b)) => (pb::task_input::Kind::Stdin(b), false),
                    _ => (pb::task_input::Kind::StdinClosed(true), true),
                };
                for (tx, _) in inputs.iter().zip(&reads_stdin).filter(|(_, r)| **r) {
                    let _ = tx.send(pb::TaskInput { kind: Some(msg.clone()) }).await;
                }
                if last {
                    stdin_open = false;
                }
            }
            _ = async { match sigint.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                // Slurm's srun (srun_job.c `_handle_intr`): a first Ctrl-C prints the tasks'
                // states; another within a second sends SIGINT to the tasks; a third kills.
                let now = std::time::Instant::now();
                let recent = last_interrupt.is_some_and(|t: std::time::Instant| now.duration_since(t) <= std::time::Duration::from_secs(1));
                if !step.interrupt_forwards && !recent {
                    eprintln!("srun: interrupt (one more within 1 sec to abort)");
                    for line in status_lines(step.job_id, created.step_id, &tasks) {
                        eprintln!("{line}");
                    }
                    last_interrupt = Some(now);
                } else {
                    interrupts += 1;
                    if interrupts > 2 {
                        eprintln!("srun: forcing job termination");
                        send_signal(&inputs, libc::SIGKILL);
                    } else {
                        eprintln!("srun: sending Ctrl-C to StepId={}.{}", step.job_id, created.step_id);
                        send_signal(&inputs, libc::SIGINT);
                    }
                }
            }
            sig = next_signal(forwarded) => {
                send_signal(&inputs, sig);
            }
        }
    }
    // Tasks that never reported an end (a node lost or refused): Slurm counts them failed.
    let mut ends = Vec::new();
    let mut exits = Vec::new();
    for (&id, t) in &tasks {
        let (code, sig) = t.end.unwrap_or((1, 0));
        if t.end.is_some() {
            ends.push((created.nodes[t.node].name.clone(), id, code, sig));
        }
        exits.push((code, sig));
    }
    for line in failure_lines(&ends) {
        eprintln!("{line}");
    }
    let signal = exits.iter().map(|&(_, s)| s).find(|&s| s > 0).unwrap_or(0);
    let highest = exits.iter().map(|&(c, _)| c).max().unwrap_or(0);
    let rc = if launch_failed {
        exit_status(&exits).max(EXIT_ERROR)
    } else {
        exit_status(&exits)
    };
    (rc, highest.max(i32::from(launch_failed)), signal)
}

/// What srun prints at a first Ctrl-C (task_state.c): `srun: StepId=12.0 tasks 0-3: running`.
fn status_lines(job_id: u64, step_id: u32, tasks: &BTreeMap<u32, Task>) -> Vec<String> {
    let mut running = Vec::new();
    let mut exited = Vec::new();
    let mut failed = Vec::new();
    for (&id, t) in tasks {
        match t.end {
            None => running.push(id),
            Some((0, 0)) => exited.push(id),
            Some(_) => failed.push(id),
        }
    }
    [
        (running, "running"),
        (exited, "exited"),
        (failed, "exited abnormally"),
    ]
    .into_iter()
    .filter(|(ids, _)| !ids.is_empty())
    .map(|(ids, what)| {
        let s = if ids.len() > 1 { "s" } else { "" };
        format!(
            "srun: StepId={job_id}.{step_id} task{s} {}: {what}",
            crate::srun::ranges(&ids)
        )
    })
    .collect()
}

/// Writes a chunk of a task's output, labelled or line-buffered as asked.
fn emit(
    step: &Step,
    tasks: &mut BTreeMap<u32, Task>,
    task_id: u32,
    ntasks: u32,
    stderr: bool,
    bytes: &[u8],
) {
    if !step.label {
        // Slurm line-buffers each task's output unless -u; passing chunks on as they come
        // keeps lines whole for line-buffered tasks and shows -u output at once.
        write_out(stderr, bytes);
        return;
    }
    let Some(t) = tasks.get_mut(&task_id) else {
        return;
    };
    let l = label(task_id, ntasks);
    let mut out = Vec::new();
    if stderr {
        t.err.push(&l, bytes, &mut out);
    } else {
        t.out.push(&l, bytes, &mut out);
    }
    write_out(stderr, &out);
}

/// The next of the forwarded signals to arrive (never, when none could be caught).
pub async fn next_signal(forwarded: &mut [(i32, tokio::signal::unix::Signal)]) -> i32 {
    std::future::poll_fn(|cx| {
        for (n, s) in forwarded.iter_mut() {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*n);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
