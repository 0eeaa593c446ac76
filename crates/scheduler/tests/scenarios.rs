//! Scheduler scenarios as text scripts (STYLE P8): `tests/scenarios/*.txt`.
//!
//! Each file is a sequence of cases: command lines, a `----` line, the expected output, and a
//! blank line. State carries over from case to case within a file. `run_script` is the only code
//! here that calls the scheduler's API. Set `UPDATE_SCENARIOS=1` to rewrite the expectations
//! from what the code does now (then read the diff).
//!
//! Times (`at=`, `time=`, `start_at=`) are minutes since the start of the script (`at=` may
//! be fractional).
//!
//! ```text
//! node add NAME cpus=N [mem=MB] [gpus=N] [type=T] [features=a,b]
//! node down|drain|resume NAME
//! partition NAME [nodes=a,b] [default] [maxtime=M] [defaulttime=M] [maxnodes=N] [tier=N]
//!                [factor=N] [state=up|down|drain|inactive] [oversubscribe=NO|YES:N|FORCE:N|EXCLUSIVE]
//! qos NAME [priority=N] [maxwall=M] [maxjobsperuser=N]   qos none (drops every QOS)
//! submit [id=N] [at=M] [nodes=N|MIN-MAX] [ntasks=N] [cpus=N] [mem=MB] [mem-per-cpu=MB] [gpus=N]
//!        [type=T] [time=M] [user=U] [nice=N] [part=P] [constraint=C] [w=a,b] [x=a,b]
//!        [exclusive] [oversubscribe] [qos=Q] [hold] [name=S] [uid=N] [dep=afterok:1,...] [begin=M] [array=0-3%2]
//!                                             -> nothing, or `rejected: <Slurm's text>`
//! schedule at=M [fifo] [easy] [window=M]      -> allocations, expected starts written to the
//!                                                log (if any), then every pending job
//! finish ID at=M [exit=N]    cancel REF at=M  -> nothing, or `rejected: …` (REF: 12 or 12_3)
//! hold REF [admin] [uid=N]   uhold REF [uid=N]   release REF [uid=N]
//! requeue REF   requeuehold REF
//! jobs                                        -> every job that is not pending: id, display id,
//!                                                state
//! ```

use drover_scheduler::plan::plan;
use drover_scheduler::*;
use std::fmt::Write as _;
use std::path::Path;

const MIN: u64 = 60_000;

struct Script {
    state: ClusterState,
    partitions: Vec<Partition>,
    qos: Vec<Qos>,
}

impl Script {
    fn apply(&mut self, at: u64, command: Command) -> Reply {
        let reply = self.state.apply_one(at, command);
        invariants::check(&self.state).expect("invariants hold after every apply");
        reply
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn num(v: &str) -> u64 {
    v.parse().unwrap_or_else(|_| panic!("not a number: {v:?}"))
}

fn minutes(ms: u64) -> String {
    if ms.is_multiple_of(MIN) {
        (ms / MIN).to_string()
    } else {
        format!("{}+{}ms", ms / MIN, ms % MIN)
    }
}

fn reply_line(out: &mut String, reply: Reply) {
    match reply {
        Reply::Rejected(r) => {
            let _ = writeln!(out, "rejected: {r}");
        }
        Reply::Cancelled { outcomes } => {
            for (id, r) in outcomes {
                if let Some(r) = r {
                    let _ = writeln!(out, "rejected {id}: {r}");
                }
            }
        }
        Reply::Outcomes { outcomes } => {
            for (id, r) in outcomes {
                if let Some(r) = r {
                    let _ = writeln!(out, "rejected {id}: {r}");
                }
            }
        }
        _ => {}
    }
}

/// Runs one case's commands and returns what they print.
fn run_script(s: &mut Script, commands: &str) -> String {
    let mut out = String::new();
    for line in commands.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut kv = std::collections::BTreeMap::new();
        let mut flags = std::collections::BTreeSet::new();
        let mut positional = Vec::new();
        for w in &words[1..] {
            match w.split_once('=') {
                Some((k, v)) => {
                    kv.insert(k.to_string(), v.to_string());
                }
                None => {
                    flags.insert(w.to_string());
                    positional.push(*w);
                }
            }
        }
        let at = kv.get("at").map_or(s.state.now, |v| {
            (v.parse::<f64>()
                .unwrap_or_else(|_| panic!("not a time: {v:?}"))
                * MIN as f64) as u64
        });
        let get = |k: &str| kv.get(k).map(String::as_str);
        match words[0] {
            "node" => {
                let name = positional[1].to_string();
                let command = match positional[0] {
                    "add" => Command::RegisterNode(NodeRegistration {
                        name,
                        cpus: num(get("cpus").unwrap_or("1")) as u32,
                        real_memory_mb: num(get("mem").unwrap_or("1000")),
                        gpus: num(get("gpus").unwrap_or("0")) as u32,
                        gpu_type: get("type").unwrap_or("").to_string(),
                        features: list(get("features").unwrap_or("")),
                        ..Default::default()
                    }),
                    verb => Command::SetNodeState {
                        node: name,
                        change: match verb {
                            "down" => NodeStateChange::Down {
                                reason: "test".into(),
                            },
                            "drain" => NodeStateChange::Drain {
                                reason: "test".into(),
                            },
                            "resume" => NodeStateChange::Resume,
                            other => panic!("unknown node verb {other}"),
                        },
                    },
                };
                let reply = s.apply(at, command);
                reply_line(&mut out, reply);
            }
            "qos" if positional[0] == "none" => {
                s.qos.clear();
                let reply = s.apply(at, Command::DefineQos(Vec::new()));
                reply_line(&mut out, reply);
            }
            "qos" => {
                let q = Qos {
                    name: positional[0].to_string(),
                    priority: get("priority").map_or(0, |v| num(v) as u32),
                    max_wall_min: get("maxwall").map(num),
                    max_jobs_per_user: get("maxjobsperuser").map(|v| num(v) as u32),
                };
                s.qos.push(q);
                let list = s.qos.clone();
                let reply = s.apply(at, Command::DefineQos(list));
                reply_line(&mut out, reply);
            }
            "partition" => {
                let name = positional[0].to_string();
                let part = Partition {
                    name: name.clone(),
                    nodes: get("nodes").map_or(NodeSet::All, |v| NodeSet::Names(list(v))),
                    is_default: flags.contains("default"),
                    state: match get("state").unwrap_or("up") {
                        "up" => PartitionState::Up,
                        "down" => PartitionState::Down,
                        "drain" => PartitionState::Drain,
                        _ => PartitionState::Inactive,
                    },
                    max_time_min: get("maxtime").map(num),
                    default_time_min: get("defaulttime").map(num),
                    max_nodes: get("maxnodes").map(|v| num(v) as u32),
                    priority_tier: get("tier").map_or(1, |v| num(v) as u32),
                    priority_job_factor: get("factor").map_or(1, |v| num(v) as u32),
                    oversubscribe: get("oversubscribe").map_or(OverSubscribe::No, |v| {
                        OverSubscribe::parse(v).expect("OverSubscribe parses")
                    }),
                };
                s.partitions.retain(|p| p.name != name);
                if part.is_default {
                    // As in slurm.conf: the last partition that says Default=YES is the default.
                    for p in &mut s.partitions {
                        p.is_default = false;
                    }
                }
                s.partitions.push(part);
                let parts = s.partitions.clone();
                let reply = s.apply(at, Command::DefinePartitions(parts));
                reply_line(&mut out, reply);
            }
            "submit" => {
                let spec = JobSpec {
                    name: get("name").unwrap_or("job").to_string(),
                    // A batch job (an empty script is srun's own allocation).
                    script: "#!/bin/sh\n".to_string(),
                    partition: get("part").map(str::to_string),
                    nodes_min: get("nodes")
                        .map_or(1, |v| num(v.split('-').next().unwrap_or(v)) as u32),
                    nodes_max: get("nodes")
                        .and_then(|v| v.split_once('-'))
                        .map_or(0, |(_, max)| num(max) as u32),
                    ntasks: get("ntasks").map_or(1, |v| num(v) as u32),
                    ntasks_set: get("ntasks").is_some(),
                    cpus_per_task: get("cpus").map_or(1, |v| num(v) as u32),
                    mem_per_node_mb: get("mem").map(num),
                    mem_per_cpu_mb: get("mem-per-cpu").map(num),
                    time_limit_min: get("time").map(num),
                    user: get("user").unwrap_or("alice").to_string(),
                    nice: get("nice").map_or(0, |v| v.parse().expect("nice")),
                    hold: flags.contains("hold"),
                    gpus_per_node: get("gpus").map_or(0, |v| num(v) as u32),
                    gpu_type: get("type").map(str::to_string),
                    constraint: get("constraint").unwrap_or("").to_string(),
                    exclusive: flags.contains("exclusive"),
                    oversubscribe: flags.contains("oversubscribe"),
                    qos: get("qos").map(str::to_string),
                    nodelist: list(get("w").unwrap_or("")),
                    exclude: list(get("x").unwrap_or("")),
                    uid: get("uid").map_or(1000, |v| num(v) as u32),
                    dependency: get("dep")
                        .map(|d| depend::Dependency::parse(d).expect("dependency parses")),
                    begin_at: get("begin").map(|m| num(m) * MIN),
                    array: get("array").map(|a| {
                        let a = depend::parse_array(a, depend::MAX_ARRAY_SIZE).expect("array");
                        ArraySpec {
                            tasks: a.tasks,
                            max_running: a.max_running,
                        }
                    }),
                    ..Default::default()
                };
                match s.apply(at, Command::Submit(spec)) {
                    Reply::Submitted { job_id } => {
                        if let Some(id) = get("id") {
                            assert_eq!(job_id.0, num(id), "job ids come from the counter");
                        }
                    }
                    reply => reply_line(&mut out, reply),
                }
            }
            "schedule" => {
                let cfg = SchedConfig {
                    backfill: !flags.contains("fifo"),
                    bf_job_part_count_reserve: usize::from(flags.contains("easy")),
                    bf_window_s: get("window").map_or(1440 * 60, |v| num(v) * 60),
                    ..SchedConfig::default()
                };
                // The pass runs at `at`; its result is applied in the same instant.
                s.state.apply(&Proposal {
                    at,
                    requests: Vec::new(),
                });
                let p = plan(&s.state, at, &cfg);
                let again = plan(&s.state, at, &cfg);
                assert_eq!(p, again, "the plan is a pure function");
                for a in &p.allocations {
                    for share in &a.nodes {
                        let _ = write!(
                            out,
                            "allocate {} {} cpus={}",
                            a.job_id, share.node, share.cpus
                        );
                        if share.mem_mb > 0 {
                            let _ = write!(out, " mem={}", share.mem_mb);
                        }
                        if !share.gpus.is_empty() {
                            let g: Vec<String> = share.gpus.iter().map(u32::to_string).collect();
                            let _ = write!(out, " gpus={}", g.join(","));
                        }
                        out.push('\n');
                    }
                }
                if !p.starts.is_empty() {
                    let _ = writeln!(out, "log: {} expected starts", p.starts.len());
                }
                let reply = s.apply(at, Command::Allocate(p));
                if let Reply::Allocated { refused, .. } = reply {
                    if refused > 0 {
                        let _ = writeln!(out, "refused {refused}");
                    }
                }
                for job in s.state.jobs.values() {
                    if job.state != JobState::Pending {
                        continue;
                    }
                    let _ = write!(
                        out,
                        "pending  {} reason={}",
                        job.display_id(),
                        job.reason.name()
                    );
                    let is_array = |id: JobId| s.state.is_array(id);
                    let dep = job
                        .dependency
                        .as_ref()
                        .map(|d| d.remaining(s.state.now, &is_array))
                        .unwrap_or_default();
                    if !dep.is_empty() {
                        let _ = write!(out, " dep={dep}");
                    }
                    if let Some(t) = job.expected_start_at {
                        let _ = write!(
                            out,
                            " start_at={} nodes={}",
                            minutes(t),
                            job.sched_nodes.join(",")
                        );
                    }
                    out.push('\n');
                }
            }
            "requeue" | "requeuehold" => {
                let target = JobRef::parse(positional[0]).expect("a job reference");
                let reply = s.apply(
                    at,
                    Command::Requeue {
                        targets: vec![target],
                        hold: words[0] == "requeuehold",
                        uid: 0,
                    },
                );
                reply_line(&mut out, reply);
            }
            "hold" | "uhold" | "release" => {
                let target = JobRef::parse(positional[0]).expect("a job reference");
                let uid = get("uid").map_or(0, |v| num(v) as u32);
                let command = match words[0] {
                    "release" => Command::Release {
                        targets: vec![target],
                        uid,
                    },
                    verb => Command::Hold {
                        targets: vec![target],
                        admin: verb == "hold" && flags.contains("admin"),
                        uid,
                    },
                };
                let reply = s.apply(at, command);
                reply_line(&mut out, reply);
            }
            "jobs" => {
                for job in s.state.jobs.values() {
                    if job.state != JobState::Pending || job.restarts > 0 {
                        let _ = write!(
                            out,
                            "job {} {} {}",
                            job.id,
                            job.display_id(),
                            job.state.name()
                        );
                        if job.completing {
                            out.push_str(" completing");
                        }
                        if job.restarts > 0 {
                            let _ = write!(out, " restarts={}", job.restarts);
                        }
                        out.push('\n');
                    }
                }
            }
            "cancel" if positional[0].contains('_') => {
                let target = JobRef::parse(positional[0]).expect("a job reference");
                let reply = s.apply(
                    at,
                    Command::CancelRefs {
                        targets: vec![target],
                        uid: 0,
                    },
                );
                reply_line(&mut out, reply);
            }
            "finish" | "cancel" => {
                let id = JobId(num(positional[0]));
                let command = if words[0] == "finish" {
                    let node = s
                        .state
                        .jobs
                        .get(&id)
                        .and_then(|j| j.batch_host())
                        .unwrap_or("none")
                        .to_string();
                    Command::JobFinished {
                        job_id: id,
                        node,
                        exit_code: get("exit").map_or(0, |v| v.parse().expect("exit")),
                        signal: 0,
                    }
                } else {
                    Command::Cancel {
                        job_ids: vec![id],
                        uid: 0,
                    }
                };
                let reply = s.apply(at, command);
                reply_line(&mut out, reply);
            }
            other => panic!("unknown scenario command {other:?} in {line:?}"),
        }
    }
    out
}

fn run_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let mut script = Script {
        state: ClusterState::new(),
        partitions: vec![Partition::default_debug()],
        qos: Vec::new(),
    };
    script.apply(0, Command::DefinePartitions(script.partitions.clone()));
    let mut rewritten = String::new();
    let mut failures = String::new();
    let mut lines = text.lines().peekable();
    while lines.peek().is_some() {
        let mut commands = String::new();
        let mut raw = String::new();
        for line in lines.by_ref() {
            if line == "----" {
                break;
            }
            raw.push_str(line);
            raw.push('\n');
            commands.push_str(line);
            commands.push('\n');
        }
        let mut expected = String::new();
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            expected.push_str(line);
            expected.push('\n');
        }
        if commands
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            rewritten.push_str(&raw);
            continue;
        }
        let actual = run_script(&mut script, &commands);
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.split("  #").next().unwrap_or("").trim_end().to_string())
                .collect()
        };
        if strip(&actual) != strip(&expected) {
            let _ = write!(
                failures,
                "{}:\n{commands}----\nexpected:\n{expected}actual:\n{actual}\n",
                path.display()
            );
        }
        rewritten.push_str(&raw);
        rewritten.push_str("----\n");
        rewritten.push_str(&actual);
        rewritten.push('\n');
    }
    if std::env::var_os("UPDATE_SCENARIOS").is_some() {
        std::fs::write(path, rewritten.trim_end().to_string() + "\n").expect("rewrite scenario");
        return Ok(());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenario dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = String::new();
    for f in &files {
        if let Err(e) = run_file(f) {
            failures.push_str(&e);
        }
    }
    assert!(failures.is_empty(), "scenario mismatches:\n{failures}");
}
