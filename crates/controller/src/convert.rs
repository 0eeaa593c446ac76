//! Between the wire (drover_proto) and the domain (drover_scheduler). No logic beyond units.

use drover_proto as pb;
use drover_scheduler as sched;
use drover_scheduler::depend::{format_indices, parse_array, Dependency, MAX_ARRAY_SIZE};
use drover_scheduler::priority::PriorityContext;
use drover_scheduler::{ClusterState, Job, JobState, Node, NodeSet, Partition};

const MS: u64 = 1000;

fn secs(ms: Option<u64>) -> i64 {
    ms.map(|m| (m / MS) as i64).unwrap_or(0)
}

fn nonzero<T: PartialEq + Default>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// A submitted spec in the domain's terms; `--dependency` and `--array` are parsed here (the
/// commands parse them first, to name the bad part; this is the authority).
pub fn job_spec(spec: pb::JobSpec) -> Result<sched::JobSpec, String> {
    let dependency = match spec.dependency.trim() {
        "" => None,
        d => Some(Dependency::parse(d).map_err(|e| format!("Job dependency problem: {e}"))?),
    };
    let array = match spec.array.trim() {
        "" => None,
        a => {
            let a = parse_array(a, MAX_ARRAY_SIZE)
                .map_err(|e| format!("Invalid job array specification: {e}"))?;
            Some(sched::ArraySpec {
                tasks: a.tasks,
                max_running: a.max_running,
            })
        }
    };
    Ok(sched::JobSpec {
        name: spec.name,
        partition: nonzero(spec.partition),
        nodes_min: spec.nodes_min.max(1),
        nodes_max: spec.nodes_max,
        ntasks: spec.ntasks.max(1),
        ntasks_set: spec.ntasks_set,
        cpus_per_task: spec.cpus_per_task.max(1),
        mem_per_node_mb: nonzero(spec.mem_per_node_mb),
        mem_per_cpu_mb: nonzero(spec.mem_per_cpu_mb),
        time_limit_min: spec.time_limit_min,
        script: spec.script,
        argv: spec.argv,
        work_dir: spec.work_dir,
        stdout: spec.stdout,
        stderr: spec.stderr,
        user: spec.user,
        uid: spec.uid,
        gid: spec.gid,
        env: spec.env.into_iter().map(|kv| (kv.key, kv.value)).collect(),
        hold: spec.hold,
        submit_host: spec.submit_host,
        command: spec.command,
        gpus_per_node: spec.gpus_per_node,
        gpu_type: nonzero(spec.gpu_type),
        constraint: spec.constraint,
        exclusive: spec.exclusive,
        nodelist: spec.nodelist,
        exclude: spec.exclude,
        nice: spec.nice,
        begin_at: (spec.begin_time > 0).then(|| spec.begin_time as u64 * MS),
        dependency,
        array,
        open_append: spec.open_append,
        oversubscribe: spec.oversubscribe,
        qos: nonzero(spec.qos),
        // The replica that takes the submit decides (its AccountingStoreFlags).
        keep_script: false,
        keep_env: false,
        requeue: spec.requeue,
        signal_warning: (spec.warn_signal > 0).then_some(sched::SignalWarning {
            signal: spec.warn_signal,
            secs: spec.warn_secs,
            scope: if spec.warn_batch {
                sched::SignalScope::Batch
            } else {
                sched::SignalScope::Steps
            },
        }),
    })
}

/// `scontrol update job` fields in the domain's terms.
pub fn job_update(u: pb::JobUpdate) -> Result<sched::JobUpdate, String> {
    let dependency = match u.dependency {
        None => None,
        Some(d) if d.trim().is_empty() => Some(None),
        Some(d) => Some(Some(
            Dependency::parse(&d).map_err(|e| format!("Job dependency problem: {e}"))?,
        )),
    };
    Ok(sched::JobUpdate {
        time_limit_min: if u.time_limit_unlimited {
            Some(None)
        } else {
            u.time_limit_min.map(Some)
        },
        priority: u.priority,
        nice: u.nice,
        name: u.name,
        array_throttle: u.array_throttle,
        begin_at: u.begin_time.map(|t| (t > 0).then(|| t as u64 * MS)),
        dependency,
    })
}

/// `scontrol update PartitionName=…` from the wire; a state Slurm does not know is refused
/// with its words.
pub fn partition_update(u: &pb::UpdatePartitionRequest) -> Result<sched::PartitionUpdate, String> {
    let state = match u.state.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None => None,
        Some("UP") => Some(sched::PartitionState::Up),
        Some("DOWN") => Some(sched::PartitionState::Down),
        Some("DRAIN") => Some(sched::PartitionState::Drain),
        Some("INACTIVE") => Some(sched::PartitionState::Inactive),
        Some(other) => return Err(format!("Invalid input: State={other}")),
    };
    let oversubscribe = match u.oversubscribe.as_deref() {
        None => None,
        Some(o) => Some(
            sched::OverSubscribe::parse(o)
                .map_err(|_| format!("Invalid input: OverSubscribe={o}"))?,
        ),
    };
    let limit = |unlimited: bool, v: Option<u64>| if unlimited { Some(None) } else { v.map(Some) };
    let nodes = if u.all_nodes == Some(true) {
        Some(NodeSet::All)
    } else if u.all_nodes == Some(false) {
        Some(NodeSet::Names(u.nodes.clone()))
    } else {
        None
    };
    Ok(sched::PartitionUpdate {
        state,
        max_time_min: limit(u.max_time_unlimited, u.max_time_min),
        default_time_min: limit(u.default_time_unlimited, u.default_time_min),
        max_nodes: if u.max_nodes_unlimited {
            Some(None)
        } else {
            u.max_nodes.map(Some)
        },
        is_default: u.is_default,
        priority_tier: u.priority_tier,
        priority_job_factor: u.priority_job_factor,
        nodes,
        oversubscribe,
    })
}

/// The wire's signal scope (0 steps, 1 batch shell, 2 every process).
pub fn signal_scope(scope: u32) -> sched::SignalScope {
    match scope {
        1 => sched::SignalScope::Batch,
        2 => sched::SignalScope::Full,
        _ => sched::SignalScope::Steps,
    }
}

fn scope_number(scope: sched::SignalScope) -> u32 {
    match scope {
        sched::SignalScope::Steps => 0,
        sched::SignalScope::Batch => 1,
        sched::SignalScope::Full => 2,
    }
}

/// The state squeue and scontrol show: a cancelled job whose processes are still being
/// stopped is COMPLETING, as in Slurm.
fn state_name(job: &Job) -> &'static str {
    if job.completing {
        "COMPLETING"
    } else {
        job.state.name()
    }
}

/// `prio`: the multifactor context of this read (one per request: it sums all usage).
pub fn job_info(
    job: &Job,
    state: &ClusterState,
    now_s: i64,
    prio: &PriorityContext,
    weights: &sched::priority::PriorityWeights,
) -> pb::JobInfo {
    let factors = (job.state == JobState::Pending && job.priority > 0)
        .then(|| prio.factors(state, job, weights));
    let nodes: Vec<String> = job.alloc.iter().map(|s| s.node.clone()).collect();
    let reason = match job.state {
        JobState::Pending => job.reason.name().to_string(),
        JobState::Failed => "NonZeroExitCode".to_string(),
        JobState::NodeFail => "NodeDown".to_string(),
        _ => "None".to_string(),
    };
    pb::JobInfo {
        job_id: job.id.0,
        name: job.spec.name.clone(),
        user: job.spec.user.clone(),
        uid: job.spec.uid,
        gid: job.spec.gid,
        partition: job.partition.clone(),
        state: state_name(job).to_string(),
        reason,
        node_list: compress(&nodes),
        num_nodes: if job.alloc.is_empty() {
            job.spec.nodes_needed()
        } else {
            job.alloc.len() as u32
        },
        num_cpus: if job.alloc.is_empty() {
            job.spec.cpus_per_node() * job.spec.nodes_needed()
        } else {
            job.alloc_cpus()
        },
        num_tasks: job.spec.ntasks,
        cpus_per_task: job.spec.cpus_per_task,
        mem_per_node_mb: job.spec.mem_per_node_mb.unwrap_or(0),
        mem_per_cpu_mb: job.spec.mem_per_cpu_mb.unwrap_or(0),
        time_limit_min: job.time_limit_min,
        submit_time: secs(Some(job.submit_at)),
        eligible_time: secs(Some(job.submit_at.max(job.spec.begin_at.unwrap_or(0)))),
        // A pending job's StartTime is the planner's expected start (squeue --start).
        start_time: secs(job.start_at.or(job.expected_start_at)),
        end_time: secs(job.end_at),
        exit_code: job.exit_code,
        exit_signal: job.exit_signal,
        work_dir: job.spec.work_dir.clone(),
        stdout: job.spec.stdout.clone(),
        stderr: job.spec.stderr.clone(),
        command: job.spec.command.clone(),
        priority: factors.as_ref().map_or(job.priority, |f| f.priority),
        batch_host: job.batch_host().unwrap_or_default().to_string(),
        nodes_max: job.spec.nodes_max,
        held: job.priority == 0 && job.state == JobState::Pending,
        now: now_s,
        submit_host: job.spec.submit_host.clone(),
        priority_factors: factors.map(|f| pb::PriorityFactors {
            age: f.age,
            fairshare: f.fairshare,
            job_size: f.job_size,
            partition: f.partition,
            qos: f.qos,
            nice: f.nice,
        }),
        sched_nodes: job.sched_nodes.clone(),
        display_id: job.display_id(),
        array_job_id: job.array.as_ref().map_or(0, |a| a.array_job_id.0),
        array_task_id: job.array.as_ref().and_then(|a| a.task_id),
        array_tasks_pending: job
            .array
            .as_ref()
            .map(|a| format_indices(&a.pending))
            .unwrap_or_default(),
        array_max_running: job.array.as_ref().map_or(0, |a| a.max_running),
        dependency: job
            .dependency
            .as_ref()
            .map(|d| d.remaining(state.now, &|id| state.is_array(id)))
            .unwrap_or_default(),
        held_by_admin: job.reason == sched::PendingReason::JobHeldAdmin,
        begin_time: secs(job.spec.begin_at),
        restarts: job.restarts,
        nice: job.spec.nice,
        exclusive: job.spec.exclusive,
        oversubscribe: job.spec.oversubscribe,
        qos: job.spec.qos_name().to_string(),
        constraint: job.spec.constraint.clone(),
        req_nodes: job.spec.nodelist.clone(),
        exc_nodes: job.spec.exclude.clone(),
        gpus_per_node: job.spec.gpus_per_node,
        gpu_type: job.spec.gpu_type.clone().unwrap_or_default(),
        no_batch_script: !job.spec.has_batch_script(),
        shares: job
            .alloc
            .iter()
            .map(|s| pb::JobNodeShare {
                node: s.node.clone(),
                cpus: s.cpus,
                mem_mb: s.mem_mb,
                gpus: s.gpus.clone(),
            })
            .collect(),
        requeue: job.spec.requeue,
    }
}

pub fn node_info(node: &Node, state: &ClusterState) -> pb::NodeInfo {
    pb::NodeInfo {
        name: node.name().to_string(),
        addr: node.reg.addr.clone(),
        cpus: node.reg.cpus,
        alloc_cpus: node.alloc_cpus,
        real_memory_mb: node.reg.real_memory_mb,
        alloc_memory_mb: node.alloc_mem_mb,
        state: node.state_name(),
        reason: node.reason.clone().unwrap_or_default(),
        partitions: state
            .partitions
            .iter()
            .filter(|p| p.contains(node.name()))
            .map(|p| p.name.clone())
            .collect(),
        boot_time: node.reg.boot_time,
        registered_at: (node.registered_at / MS) as i64,
        version: node.reg.version.clone(),
        os: node.reg.os.clone(),
        arch: node.reg.arch.clone(),
        not_responding: node.not_responding,
        gpus: node.reg.gpus,
        gpu_type: node.reg.gpu_type.clone(),
        features: node.reg.features.clone(),
        alloc_gpus: node.alloc_gpus.len() as u32,
    }
}

pub fn partition_info(part: &Partition, state: &ClusterState) -> pb::PartitionInfo {
    let nodes: Vec<&Node> = state.partition_nodes(part).collect();
    let names = match &part.nodes {
        NodeSet::All => nodes.iter().map(|n| n.name().to_string()).collect(),
        NodeSet::Names(names) => names.clone(),
    };
    pb::PartitionInfo {
        name: part.name.clone(),
        total_nodes: names.len() as u32,
        nodes: names,
        is_default: part.is_default,
        state: part.state.name().to_string(),
        max_time_min: part.max_time_min,
        default_time_min: part.default_time_min,
        max_nodes: part.max_nodes.unwrap_or(0),
        priority_tier: part.priority_tier,
        priority_job_factor: part.priority_job_factor,
        total_cpus: nodes.iter().map(|n| n.reg.cpus).sum(),
        oversubscribe: part.oversubscribe.name(),
    }
}

pub fn registration(req: pb::RegisterRequest) -> sched::NodeRegistration {
    sched::NodeRegistration {
        name: req.name,
        addr: req.addr,
        cpus: req.cpus,
        real_memory_mb: req.real_memory_mb,
        boot_time: req.boot_time,
        version: req.version,
        os: req.os,
        arch: req.arch,
        gpus: req.gpus,
        gpu_type: req.gpu_type,
        ..Default::default()
    }
}

/// What of a job's [`assignment`] can change while the job is on a node (its state, run,
/// signals, time limit); the rest is fixed once it is allocated. A waiting long poll compares
/// these at every applied entry and builds whole assignments only when they differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentKey {
    job_id: u64,
    run: bool,
    completing: bool,
    restarts: u32,
    last_signal: Option<u32>,
    signals: usize,
    time_limit_min: Option<u64>,
    start_at: Option<u64>,
    nodes: usize,
}

impl AssignmentKey {
    /// The run this key is of: `(job id, restarts)`.
    pub fn run(&self) -> (u64, u32) {
        (self.job_id, self.restarts)
    }
}

#[cfg(test)]
impl AssignmentKey {
    /// The key of job `job_id`'s run `restarts`, running or not, on one node.
    pub fn of_run(job_id: u64, restarts: u32, run: bool) -> AssignmentKey {
        AssignmentKey {
            job_id,
            run,
            completing: false,
            restarts,
            last_signal: None,
            signals: 0,
            time_limit_min: None,
            start_at: None,
            nodes: 1,
        }
    }
}

pub fn assignment_key(job: &Job) -> AssignmentKey {
    AssignmentKey {
        job_id: job.id.0,
        run: job.state == JobState::Running,
        completing: job.completing,
        restarts: job.restarts,
        last_signal: job.signals.last().map(|r| r.seq),
        signals: job.signals.len(),
        time_limit_min: job.time_limit_min,
        start_at: job.start_at,
        nodes: job.alloc.len(),
    }
}

pub fn assignment(job: &Job, node: &str) -> pb::Assignment {
    let share = job.alloc.iter().find(|s| s.node == node);
    let nodes: Vec<String> = job.alloc.iter().map(|s| s.node.clone()).collect();
    pb::Assignment {
        job_id: job.id.0,
        // A job being stopped (cancelled or requeued) is COMPLETING: not to run.
        run: job.state == JobState::Running && !job.completing,
        restarts: job.restarts,
        signals: job
            .signals
            .iter()
            .map(|r| pb::JobSignal {
                seq: r.seq,
                signal: r.signal,
                scope: scope_number(r.scope),
            })
            .collect(),
        open_append: job.spec.open_append,
        warn_signal: job.spec.signal_warning.map_or(0, |w| w.signal),
        warn_secs: job.spec.signal_warning.map_or(0, |w| w.secs),
        warn_batch: job
            .spec
            .signal_warning
            .is_some_and(|w| w.scope == sched::SignalScope::Batch),
        batch_host: job.batch_host() == Some(node),
        name: job.spec.name.clone(),
        script: job.spec.script.clone(),
        argv: job.spec.argv.clone(),
        work_dir: job.spec.work_dir.clone(),
        stdout: job.spec.stdout.clone(),
        stderr: job.spec.stderr.clone(),
        user: job.spec.user.clone(),
        uid: job.spec.uid,
        gid: job.spec.gid,
        env: job
            .spec
            .env
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        node_list: compress(&nodes),
        num_nodes: job.alloc.len() as u32,
        cpus_on_node: share.map(|s| s.cpus).unwrap_or(0),
        mem_on_node_mb: share.map(|s| s.mem_mb).unwrap_or(0),
        partition: job.partition.clone(),
        num_tasks: job.spec.ntasks,
        cpus_per_task: job.spec.cpus_per_task,
        time_limit_min: job.time_limit_min,
        submit_host: job.spec.submit_host.clone(),
        start_time: secs(job.start_at),
        ntasks_set: job.spec.ntasks_set,
        gpus: share.map(|s| s.gpus.clone()).unwrap_or_default(),
        ..array_fields(job)
    }
}

/// SLURM_ARRAY_* for an array task: the array's id, the task, and the array's task count,
/// lowest and highest index and step (1 unless the indices are evenly spaced).
fn array_fields(job: &Job) -> pb::Assignment {
    let (Some(part), Some(spec)) = (job.array.as_ref(), job.spec.array.as_ref()) else {
        return pb::Assignment::default();
    };
    let tasks: Vec<u32> = spec.tasks.iter().copied().collect();
    let min = tasks.first().copied().unwrap_or(0);
    let max = tasks.last().copied().unwrap_or(0);
    let step = match tasks.as_slice() {
        [a, b, ..] if tasks.windows(2).all(|w| w[1] - w[0] == b - a) => b - a,
        _ => 1,
    };
    pb::Assignment {
        array_job_id: part.array_job_id.0,
        array_task_id: part.task_id,
        array_task_count: tasks.len() as u32,
        array_task_min: min,
        array_task_max: max,
        array_task_step: step,
        ..Default::default()
    }
}

/// Host list compression for display. Uses the scheduler's hostlist module.
fn compress(names: &[String]) -> String {
    drover_scheduler::hostlist::compress_sorted(names)
}

/// The account a job is charged to: drover has no account database yet, so every user is
/// taken to be associated with the `root` account, as `sacctmgr show assoc` says.
pub fn account_of(_uid: u32) -> &'static str {
    "root"
}

/// An accounting row (sacct) on the wire.
pub fn job_record(r: &sched::accounting::JobRecord) -> pb::JobRecord {
    pb::JobRecord {
        job_id: r.job_id.0,
        array_job_id: r.array_job_id.map_or(0, |a| a.0),
        array_task_id: r.array_task_id,
        array_pending: r.array_pending.clone(),
        array_max_running: r.array_max_running,
        name: r.name.clone(),
        partition: r.partition.clone(),
        account: account_of(r.uid).to_string(),
        user: r.user.clone(),
        uid: r.uid,
        gid: r.gid,
        state: r.state.name().to_string(),
        cancelled_by: r.cancelled_by,
        exit_code: r.exit_code,
        exit_signal: r.exit_signal,
        submit_time: secs(Some(r.submit_at)),
        eligible_time: secs(r.eligible_at),
        start_time: secs(r.start_at),
        end_time: secs(r.end_at),
        time_limit_min: r.time_limit_min,
        node_list: compress(&r.nodes),
        num_nodes: if r.nodes.is_empty() {
            r.req_nodes
        } else {
            r.nodes.len() as u32
        },
        alloc_cpus: r.alloc_cpus,
        req_cpus: r.req_cpus,
        req_nodes: r.req_nodes,
        req_mem_mb: r.req_mem_mb,
        reason: r.reason.name().to_string(),
        work_dir: r.work_dir.clone(),
        priority: r.priority,
        qos: r.qos.clone(),
        constraints: r.constraints.clone(),
        script: r.script.clone(),
        environment: r.environment.clone(),
        batch: r.batch.as_ref().map(|s| pb::StepRecord {
            node: s.node.clone(),
            cpus: s.cpus,
            start_time: secs(Some(s.start_at)),
            end_time: secs(s.end_at),
            state: s.state.name().to_string(),
            exit_code: s.exit_code,
            exit_signal: s.exit_signal,
            max_rss_kb: s.max_rss_kb,
            total_cpu_ms: s.total_cpu_ms,
        }),
        steps: r
            .steps
            .iter()
            .map(|st| {
                let nodes: Vec<String> = st.layout.iter().map(|(n, _)| n.clone()).collect();
                pb::SrunStepRecord {
                    step_id: st.id,
                    name: st.name.clone(),
                    node_list: compress(&nodes),
                    num_nodes: nodes.len() as u32,
                    ntasks: st.ntasks,
                    cpus: st.ntasks.saturating_mul(st.cpus_per_task),
                    start_time: secs(Some(st.start_at)),
                    end_time: secs(st.end_at),
                    state: st.state.name().to_string(),
                    exit_code: st.exit_code,
                    exit_signal: st.exit_signal,
                }
            })
            .collect(),
    }
}
