//! The commands' thin shells: parse, call the cluster, print. Formatting lives in `format`,
//! sbatch's parsing in `sbatch_prep`; this module only wires them to the client.

use crate::client::{request_id, ClientError, Cluster};
use crate::{
    control, format, identity, sacct, sacctmgr, sbatch_prep, scancel, scontrol_show, sinfo, squeue,
    squeue_steps,
};
use drover_proto as pb;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Exit codes (Slurm's): 0 success, 1 error.
pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;

/// Local time offset used for timestamps. drover prints UTC for now.
const UTC_OFFSET_S: i32 = 0;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// Prints to stdout; a closed pipe (`squeue | head`) is not an error.
fn out(text: &str) {
    out_ok(text);
}

/// Like `out`; false once the reader has gone away.
fn out_ok(text: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).is_ok() && stdout.flush().is_ok()
}

fn cluster(cmd: &str) -> Result<Cluster, i32> {
    Cluster::from_env().map_err(|e| {
        eprintln!("{cmd}: error: {e}");
        EXIT_ERROR
    })
}

pub fn sbatch(args: &[String]) -> i32 {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sbatch: error: cannot read the working directory: {e}");
            return EXIT_ERROR;
        }
    };
    let prepared = match sbatch_prep::prepare(
        args,
        &env,
        &mut std::io::stdin().lock(),
        &cwd,
        &identity::current(),
    ) {
        Ok(p) => p,
        Err(e) if e.exit_code == 0 => {
            print!("{}", e.message);
            return 0;
        }
        Err(e) => {
            eprint!("{}", e.message);
            return e.exit_code;
        }
    };
    let Ok(mut cluster) = cluster("sbatch") else {
        return EXIT_ERROR;
    };
    let request = pb::SubmitRequest {
        request_id: request_id(),
        spec: Some(prepared.spec),
    };
    if prepared.test_only {
        return test_only(&mut cluster, request);
    }
    let result = runtime().block_on(cluster.call(|mut c| {
        let request = request.clone();
        async move { c.submit(request).await.map(|r| r.into_inner()) }
    }));
    match result {
        Ok(reply) => {
            cluster.saw(reply.applied_index);
            cluster.save();
            if prepared.parsable {
                out(&format!("{}\n", reply.job_id));
            } else if !prepared.quiet {
                out(&format!("Submitted batch job {}\n", reply.job_id));
            }
            if prepared.wait {
                return wait_for_job(&mut cluster, reply.job_id);
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("sbatch: error: Batch job submission failed: {e}");
            EXIT_ERROR
        }
    }
}

pub fn scancel(args: &[String]) -> i32 {
    let opts = match scancel::parse(args, identity::uid()) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    if opts.version {
        out(&version_line());
        return EXIT_OK;
    }
    if opts.usage {
        out(scancel::USAGE);
        return EXIT_OK;
    }
    if opts.job_ids.is_empty() && !opts.has_filters() {
        eprintln!("scancel: error: No job identification provided");
        return EXIT_ERROR;
    }
    let Ok(mut cluster) = cluster("scancel") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    let mut targets = opts.job_refs.clone();
    if opts.has_filters() || opts.interactive {
        let jobs = match rt.block_on(load_jobs(&mut cluster, opts.job_ids.clone())) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("scancel: error: {e}");
                return EXIT_ERROR;
            }
        };
        let loaded_ids: Vec<u64> = jobs.iter().map(|j| j.job_id).collect();
        let mut chosen = if opts.has_filters() {
            scancel::select(&jobs, &opts)
        } else {
            jobs
        };
        if chosen.is_empty() && opts.has_filters() {
            if opts.verbose {
                eprint!("{}", scancel::no_match_text(&opts));
            }
            return EXIT_OK;
        }
        if opts.interactive {
            let mut keep = Vec::new();
            for job in chosen {
                out(&scancel::confirm_prompt(&job));
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if answer.trim_start().starts_with(['y', 'Y']) {
                    keep.push(job);
                }
            }
            chosen = keep;
        }
        let unknown: Vec<pb::JobRef> = opts
            .job_refs
            .iter()
            .filter(|r| !loaded_ids.contains(&r.job_id))
            .cloned()
            .collect();
        targets = chosen
            .iter()
            .map(|j| pb::JobRef {
                job_id: j.job_id,
                task_id: None,
            })
            .collect();
        // Without filters, ids that no longer exist still go to the cluster, which reports them.
        if !opts.has_filters() {
            targets.extend(unknown);
        }
    }
    if targets.is_empty() {
        return EXIT_OK;
    }
    if opts.verbose {
        for t in &targets {
            eprintln!("scancel: Terminating job {}", control::ref_name(t));
        }
    }
    let result = match &opts.signal {
        None => rt.block_on(control::control(
            &mut cluster,
            pb::control_request::Action::Cancel,
            targets,
            identity::uid(),
        )),
        Some(name) => rt.block_on(control::signal(
            &mut cluster,
            targets,
            scancel::parse_signal(name).unwrap_or(9) as i32,
            opts.signal_scope,
            identity::uid(),
        )),
    };
    cluster.save();
    match result {
        Ok(errors) => {
            let mut rc = EXIT_OK;
            for (target, error) in errors {
                // Unknown ids are errors (exit 1); jobs that already ended are reported
                // only with -v (Slurm's silence rule); -Q silences both.
                let unknown = error == "Invalid job id specified";
                if unknown {
                    rc = EXIT_ERROR;
                }
                if !opts.quiet && (unknown || opts.verbose) {
                    eprintln!(
                        "scancel: error: Kill job error on job id {}: {error}",
                        control::ref_name(&target)
                    );
                }
            }
            rc
        }
        Err(e) => {
            eprintln!("scancel: error: {e}");
            EXIT_ERROR
        }
    }
}

pub(crate) async fn load_jobs(
    cluster: &mut Cluster,
    job_ids: Vec<u64>,
) -> Result<Vec<pb::JobInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let req = pb::ListJobsRequest {
                consistency: consistency.get(),
                job_ids: job_ids.clone(),
            };
            async move { c.list_jobs(req).await.map(|r| r.into_inner()) }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.jobs)
}

/// `sbatch --test-only`: the planner's answer for the job on a copy of the state, on stderr
/// as Slurm prints it (`sbatch: Job N to start at T using C processors on nodes L in partition
/// P`); nothing is submitted.
fn test_only(cluster: &mut Cluster, request: pb::SubmitRequest) -> i32 {
    let result = runtime().block_on(cluster.call(|mut c| {
        let request = request.clone();
        async move { c.test_only(request).await.map(|r| r.into_inner()) }
    }));
    match result {
        Ok(r) if r.start_time > 0 => {
            eprintln!(
                "sbatch: Job {} to start at {} using {} processors on nodes {} in partition {}",
                r.job_id,
                drover_scheduler::time::format_timestamp(r.start_time, UTC_OFFSET_S),
                r.cpus,
                drover_scheduler::hostlist::compress_sorted(&r.nodes),
                r.partition
            );
            EXIT_OK
        }
        Ok(r) => {
            eprintln!(
                "sbatch: Job {} cannot start within the planning window (bf_window) in partition {}",
                r.job_id, r.partition
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("sbatch: error: Batch job submission failed: {e}");
            EXIT_ERROR
        }
    }
}

/// `scontrol wait_job <id>`: returns once the job has started (0), or has ended without
/// starting (1); an unknown id is Slurm's error.
fn wait_job(rt: &tokio::runtime::Runtime, cluster: &mut Cluster, id: &str) -> i32 {
    let Ok(job_id) = id.parse::<u64>() else {
        eprintln!("scontrol: error: Invalid job id specified");
        return EXIT_ERROR;
    };
    loop {
        let jobs = match rt.block_on(load_jobs(cluster, vec![job_id])) {
            Ok(jobs) => jobs,
            Err(e) => {
                eprintln!("scontrol: error: {e}");
                return EXIT_ERROR;
            }
        };
        let Some(job) = jobs.iter().find(|j| j.job_id == job_id) else {
            eprintln!("scontrol: error: Invalid job id specified");
            return EXIT_ERROR;
        };
        match job.state.as_str() {
            "PENDING" => std::thread::sleep(Duration::from_millis(500)),
            _ if !job.batch_host.is_empty() => return EXIT_OK,
            _ => {
                eprintln!("scontrol: error: Job {job_id} ended without starting");
                return EXIT_ERROR;
            }
        }
    }
}

/// `sbatch --wait`: polls until every record of the job (every task of an array) has ended;
/// the exit code is the job's (the highest of an array's tasks), 1 for one killed by a
/// signal (sbatch.c `_job_wait`).
fn wait_for_job(cluster: &mut Cluster, job_id: u64) -> i32 {
    let rt = runtime();
    let mut pause = Duration::from_millis(250);
    loop {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
        let jobs = match rt.block_on(load_jobs(cluster, vec![job_id])) {
            Ok(jobs) => jobs,
            Err(e) => {
                eprintln!("sbatch: error: while waiting for job {job_id}: {e}");
                continue;
            }
        };
        cluster.save();
        let done = |j: &pb::JobInfo| {
            !matches!(
                j.state.as_str(),
                "PENDING" | "RUNNING" | "COMPLETING" | "SUSPENDED"
            )
        };
        if jobs.is_empty() || !jobs.iter().all(done) {
            if jobs.is_empty() {
                eprintln!("sbatch: error: job {job_id} is no longer known to the cluster");
                return EXIT_ERROR;
            }
            continue;
        }
        return jobs
            .iter()
            .map(|j| if j.exit_signal != 0 { 1 } else { j.exit_code })
            .max()
            .unwrap_or(0);
    }
}

async fn load_nodes(cluster: &mut Cluster) -> Result<Vec<pb::NodeInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let consistency = consistency.get();
            async move {
                c.list_nodes(pb::ListNodesRequest {
                    consistency,
                    names: vec![],
                })
                .await
                .map(|r| r.into_inner())
            }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.nodes)
}

async fn load_partitions(cluster: &mut Cluster) -> Result<Vec<pb::PartitionInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let consistency = consistency.get();
            async move {
                c.list_partitions(pb::ListPartitionsRequest { consistency })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.partitions)
}

pub fn squeue(args: &[String]) -> i32 {
    let env = |k: &str| std::env::var(k).ok();
    let opts = match squeue::parse(args, &env, identity::uid()) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    match opts.output {
        Some(squeue::Output::Version) => {
            out(&version_line());
            return EXIT_OK;
        }
        Some(squeue::Output::Usage) => {
            out(squeue::USAGE);
            return EXIT_OK;
        }
        _ => {}
    }
    eprint!("{}", opts.warnings);
    let Ok(mut cluster) = cluster("squeue") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    if let Some(steps) = &opts.steps {
        let filter = squeue_steps::StepFilter {
            jobs: opts.job_ids.clone(),
            steps: steps.clone(),
            partitions: opts.partitions.clone(),
            uids: opts.users_given.then(|| opts.uids.clone()),
            nodes: opts.nodes.clone(),
        };
        loop {
            let reply = match rt.block_on(load_records(&mut cluster, opts.job_ids.clone(), 0)) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("slurm_get_job_steps error: {e}");
                    return EXIT_ERROR;
                }
            };
            cluster.save();
            let now = reply.now.max(wall_clock_s());
            let mut rows = squeue_steps::select(squeue_steps::rows(&reply.records), &filter);
            squeue_steps::sort(&mut rows, opts.sort.as_deref());
            let format = opts
                .format
                .as_deref()
                .unwrap_or(squeue_steps::DEFAULT_FORMAT);
            let (text, errors) =
                squeue_steps::render(&rows, format, !opts.noheader, now, UTC_OFFSET_S);
            eprint!("{errors}");
            if let Some(rc) = print_round(&text, opts.iterate_s) {
                return rc;
            }
        }
    }
    loop {
        // Exactly one -j id is Slurm's single-job RPC: an unknown id is an error.
        let single = opts.job_ids.len() == 1;
        let jobs = match rt.block_on(load_jobs(&mut cluster, opts.job_ids.clone())) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("slurm_load_jobs error: {e}");
                return EXIT_ERROR;
            }
        };
        cluster.save();
        if single && jobs.is_empty() {
            eprintln!("slurm_load_jobs error: Invalid job id specified");
            return EXIT_ERROR;
        }
        let now = jobs.first().map(|j| j.now).unwrap_or_else(wall_clock_s);
        let shown = squeue::select(jobs, &opts);
        let text = if opts.output == Some(squeue::Output::Json) {
            squeue::json(&shown, now, args)
        } else {
            let (text, errors) = squeue::table(&shown, &opts, now, UTC_OFFSET_S);
            eprint!("{errors}");
            text
        };
        if let Some(rc) = print_round(&text, opts.iterate_s) {
            return rc;
        }
    }
}

/// Prints one round of squeue/sinfo output. Without `-i` that is all (`Some(0)`); with
/// `-i N` a blank line follows and, after N seconds, the caller goes round again (`None`),
/// until the reader goes away (a closed pipe ends it quietly, exit 0).
fn print_round(text: &str, iterate_s: Option<u64>) -> Option<i32> {
    let Some(every) = iterate_s else {
        out(text);
        return Some(EXIT_OK);
    };
    if !out_ok(&format!("{text}\n")) {
        return Some(EXIT_OK);
    }
    std::thread::sleep(std::time::Duration::from_secs(every));
    None
}

fn wall_clock_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn load_records(
    cluster: &mut Cluster,
    job_ids: Vec<u64>,
    ended_since: i64,
) -> Result<pb::ListRecordsReply, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let req = pb::ListRecordsRequest {
                consistency: consistency.get(),
                job_ids: job_ids.clone(),
                ended_since,
            };
            async move { c.list_records(req).await.map(|r| r.into_inner()) }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply)
}

pub fn sacct(args: &[String]) -> i32 {
    let env = |k: &str| std::env::var(k).ok();
    let opts = match sacct::parse(args, &env, identity::uid(), wall_clock_s(), UTC_OFFSET_S) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    match opts.special {
        Some(sacct::Special::Help) => {
            out(sacct::HELP);
            return EXIT_OK;
        }
        Some(sacct::Special::Usage) => {
            out(sacct::USAGE);
            return EXIT_OK;
        }
        Some(sacct::Special::Version) => {
            out(&version_line());
            return EXIT_OK;
        }
        Some(sacct::Special::HelpFields) => {
            out(&sacct::help_fields());
            return EXIT_OK;
        }
        Some(sacct::Special::HelpReasons) => {
            out(&sacct::help_reasons());
            return EXIT_OK;
        }
        None => {}
    }
    let Ok(mut cluster) = cluster("sacct") else {
        return EXIT_ERROR;
    };
    let mut ids: Vec<u64> = opts.jobs.iter().map(|j| j.job).collect();
    ids.sort_unstable();
    ids.dedup();
    // Whole seconds on both sides: a record that ended in the window's first second stays.
    let reply = match runtime().block_on(load_records(&mut cluster, ids, opts.start)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sacct: error: Problem talking to the database: {e}");
            return EXIT_ERROR;
        }
    };
    cluster.save();
    let now = reply.now.max(wall_clock_s());
    let mut shown = sacct::select(reply.records, &opts, &reply.cluster_name);
    if opts.truncate {
        sacct::truncate(&mut shown, &opts, now);
    }
    let text = if opts.show != sacct::Show::Records {
        sacct::kept_text(&shown, &opts)
    } else if opts.json {
        sacct::json(&shown, &opts, now, &reply.cluster_name, args)
    } else {
        sacct::table(&shown, &opts, now, &reply.cluster_name, UTC_OFFSET_S)
    };
    out(&text);
    EXIT_OK
}

pub fn sacctmgr(args: &[String]) -> i32 {
    let show = match sacctmgr::parse(args) {
        Ok(sacctmgr::Parsed::Help) => {
            out(sacctmgr::HELP);
            return EXIT_OK;
        }
        Ok(sacctmgr::Parsed::Version) => {
            out(&version_line());
            return EXIT_OK;
        }
        Ok(sacctmgr::Parsed::Show(s)) => s,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    let Ok(mut cluster) = cluster("sacctmgr") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    let loaded = rt.block_on(async {
        let config = load_config(&mut cluster).await?;
        let users = if show.entity == sacctmgr::Entity::User
            || show.entity == sacctmgr::Entity::Association
        {
            load_records(&mut cluster, Vec::new(), 0).await?.records
        } else {
            Vec::new()
        };
        Ok::<_, ClientError>((config, users))
    });
    let (config, records) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sacctmgr: error: Problem talking to the database: {e}");
            return EXIT_ERROR;
        }
    };
    cluster.save();
    let mut users: Vec<String> = records.into_iter().map(|r| r.user).collect();
    users.push("root".to_string());
    users.retain(|u| !u.is_empty());
    users.sort();
    users.dedup();
    let facts = sacctmgr::Facts {
        cluster: config.cluster_name,
        control: config.controllers.first().cloned().unwrap_or_default(),
        users,
        qos: if config.qos.is_empty() {
            vec![("normal".to_string(), 0, None, None)]
        } else {
            config
                .qos
                .iter()
                .map(|q| {
                    (
                        q.name.clone(),
                        q.priority,
                        q.max_wall_min,
                        q.max_jobs_per_user,
                    )
                })
                .collect()
        },
    };
    match sacctmgr::render(&show, &facts) {
        Ok(text) => {
            out(&text);
            EXIT_OK
        }
        Err(e) => {
            eprint!("{e}");
            EXIT_ERROR
        }
    }
}

/// srun: a job step (`srun.rs` decides, `srun_step.rs` runs it), inside an allocation or in
/// one of its own (`srun_alloc.rs`).
pub fn srun(args: &[String]) -> i32 {
    let env = |k: &str| std::env::var(k).ok();
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let cwd = match std::env::current_dir() {
        Ok(d) => d.display().to_string(),
        Err(e) => {
            eprintln!("srun: error: cannot read the working directory: {e}");
            return EXIT_ERROR;
        }
    };
    match crate::srun::plan(args, &env, &vars, &cwd) {
        Ok(crate::srun::Plan::Help) => {
            out(crate::srun::USAGE);
            EXIT_OK
        }
        Ok(crate::srun::Plan::Version) => {
            out(&version_line());
            EXIT_OK
        }
        Ok(crate::srun::Plan::Run(step)) => runtime().block_on(crate::srun_step::run(*step)),
        Ok(crate::srun::Plan::Allocate(alloc)) => {
            // The job as sbatch shapes it from the same options; sbatch's words reworded.
            let submit_env: BTreeMap<String, String> = vars.iter().cloned().collect();
            let spec = match sbatch_prep::allocation(
                &alloc.options,
                &alloc.step.argv,
                &submit_env,
                std::path::Path::new(&cwd),
                &identity::current(),
            ) {
                Ok(spec) => spec,
                Err(e) => {
                    let text = e
                        .message
                        .replace("sbatch: ", "srun: ")
                        .replace("Try \"sbatch --help\"", "Try \"srun --help\"")
                        .replace(
                            "Batch job submission failed",
                            "Unable to allocate resources",
                        );
                    eprint!("{text}");
                    return EXIT_ERROR;
                }
            };
            runtime().block_on(crate::srun_alloc::run(*alloc, spec))
        }
        Err(e) => {
            eprint!("{e}");
            EXIT_ERROR
        }
    }
}

/// `<command> --version` / `scontrol version`: Slurm prints `slurm <version>`.
fn version_line() -> String {
    format!("slurm {}\n", env!("CARGO_PKG_VERSION"))
}

pub fn sinfo(args: &[String]) -> i32 {
    let env = |k: &str| std::env::var(k).ok();
    let opts = match sinfo::parse(args, &env) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    match opts.output {
        sinfo::Output::Version => {
            out(&version_line());
            return EXIT_OK;
        }
        sinfo::Output::Usage => {
            out(sinfo::USAGE);
            return EXIT_OK;
        }
        _ => {}
    }
    let Ok(mut cluster) = cluster("sinfo") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    loop {
        let loaded = rt.block_on(async {
            let parts = load_partitions(&mut cluster).await?;
            let nodes = load_nodes(&mut cluster).await?;
            Ok::<_, ClientError>((parts, nodes))
        });
        let (parts, nodes) = match loaded {
            Ok(v) => v,
            Err(e) => {
                eprintln!("slurm_load_partitions: {e}");
                return EXIT_ERROR;
            }
        };
        cluster.save();
        let text = if opts.output == sinfo::Output::Json {
            sinfo::json(&parts, &nodes, &opts, args)
        } else {
            let (text, errors) = sinfo::render(&parts, &nodes, &opts, wall_clock_s(), UTC_OFFSET_S);
            eprint!("{errors}");
            text
        };
        if let Some(rc) = print_round(&text, opts.iterate_s) {
            return rc;
        }
    }
}

pub fn scontrol(args: &[String]) -> i32 {
    let opts = match scontrol_show::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprint!("{e}");
            return EXIT_ERROR;
        }
    };
    let words: Vec<String> = opts.words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if opts.version || words == ["version"] {
        out(&version_line());
        return EXIT_OK;
    }
    // Host list forms need no cluster.
    if let ["show", what, ..] = words.as_slice() {
        let arg = opts.words.get(2).map(String::as_str);
        let result = match *what {
            "hostnames" | "hostname" => Some(
                scontrol_show::host_input(arg, &mut std::io::stdin().lock())
                    .and_then(|e| scontrol_show::hostnames(&e)),
            ),
            "hostlist" | "hostlistsorted" => Some(
                scontrol_show::host_input(arg, &mut std::io::stdin().lock())
                    .and_then(|e| scontrol_show::hostlist(&e, *what == "hostlistsorted")),
            ),
            _ => None,
        };
        match result {
            Some(Ok(text)) => {
                out(&text);
                return EXIT_OK;
            }
            // Slurm reports an empty list and still exits 0.
            Some(Err(e)) if e.ends_with("host list is empty\n") => {
                eprint!("{e}");
                return EXIT_OK;
            }
            Some(Err(e)) => {
                eprint!("{e}");
                return EXIT_ERROR;
            }
            None => {}
        }
    }
    if words.is_empty() {
        eprintln!("scontrol: error: no command given; try `scontrol show job`");
        return EXIT_ERROR;
    }
    let Ok(mut cluster) = cluster("scontrol") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    let rc = match words.as_slice() {
        ["ping"] => {
            let replies = ping_all(&rt, &mut cluster);
            out(&format::scontrol_ping_lines(&replies));
            if replies.iter().any(|(_, r)| r.is_some()) {
                EXIT_OK
            } else {
                EXIT_ERROR
            }
        }
        ["update", ..] => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            control::scontrol_update(&rt, &mut cluster, &opts.words[1..], now)
        }
        ["wait_job", id] => wait_job(&rt, &mut cluster, id),
        [verb @ ("hold" | "uhold" | "release" | "requeue" | "requeuehold"), ..] => {
            let jobs: Vec<&str> = opts.words[1..].iter().map(String::as_str).collect();
            control::scontrol_job_control(&rt, &mut cluster, verb, &jobs)
        }
        ["show", what, ..] => {
            let id = opts.words.get(2).map(String::as_str);
            show(&rt, &mut cluster, what, id, &opts)
        }
        ["show"] => {
            eprintln!("too few arguments for keyword:show");
            EXIT_ERROR
        }
        [cmd, ..] => {
            eprintln!("invalid keyword: {cmd}");
            EXIT_ERROR
        }
        [] => EXIT_ERROR,
    };
    cluster.save();
    rc
}

fn ping_all(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
) -> Vec<(String, Option<pb::PingReply>)> {
    let mut replies = Vec::new();
    for (i, addr) in cluster.addrs().to_vec().iter().enumerate() {
        replies.push((addr.clone(), rt.block_on(cluster.ping_one(i))));
    }
    replies
}

async fn load_config(cluster: &mut Cluster) -> Result<pb::ShowConfigReply, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let consistency = consistency.get();
            async move {
                c.show_config(pb::ShowConfigRequest { consistency })
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply)
}

fn show(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    what: &str,
    id: Option<&str>,
    opts: &scontrol_show::Opts,
) -> i32 {
    let oneliner = opts.oneliner;
    let what = match what {
        w if "jobs".starts_with(w) && w.len() >= 3 => "job",
        w if "nodes".starts_with(w) && w.len() >= 3 => "node",
        w if "partitions".starts_with(w) && w.len() >= 3 => "partition",
        w if "configuration".starts_with(w) && w.len() >= 3 => "config",
        w if "steps".starts_with(w) && w.len() >= 3 => "step",
        other => {
            eprintln!("invalid entity:{other} for keyword:show ");
            return EXIT_ERROR;
        }
    };
    if what == "config" {
        return match rt.block_on(load_config(cluster)) {
            Err(e) => {
                eprintln!("slurm_load_ctl_conf error: {e}");
                EXIT_ERROR
            }
            Ok(conf) => {
                let ping = format::scontrol_ping_lines(&ping_all(rt, cluster));
                out(&scontrol_show::config_text(
                    &conf,
                    wall_clock_s(),
                    UTC_OFFSET_S,
                    &ping,
                ));
                EXIT_OK
            }
        };
    }
    if what == "step" {
        let filter = match scontrol_show::parse_step_id(id) {
            Ok(f) => f,
            Err(e) => {
                eprint!("{e}");
                return EXIT_ERROR;
            }
        };
        let ids = match filter {
            scontrol_show::StepFilter::All => vec![],
            scontrol_show::StepFilter::Job(j) | scontrol_show::StepFilter::Step(j, _) => vec![j],
        };
        return match rt.block_on(load_records(cluster, ids.clone(), 0)) {
            Err(e) => {
                eprintln!("slurm_get_job_steps error: {e}");
                EXIT_ERROR
            }
            Ok(reply) if !ids.is_empty() && reply.records.is_empty() => {
                eprintln!("slurm_get_job_steps error: Invalid job id specified");
                EXIT_ERROR
            }
            Ok(reply) => {
                out(&scontrol_show::steps_text(
                    &reply.records,
                    filter,
                    UTC_OFFSET_S,
                    oneliner,
                ));
                EXIT_OK
            }
        };
    }
    match what {
        "job" => {
            let ids = match id {
                None => vec![],
                Some(s) => match s.parse::<u64>() {
                    Ok(n) => vec![n],
                    Err(_) => {
                        eprintln!("scontrol: error: Invalid job id specified");
                        return EXIT_ERROR;
                    }
                },
            };
            match rt.block_on(load_jobs(cluster, ids)) {
                Err(e) => {
                    eprintln!("slurm_load_jobs error: {e}");
                    EXIT_ERROR
                }
                Ok(jobs) if jobs.is_empty() && id.is_some() => {
                    eprintln!("slurm_load_jobs error: Invalid job id specified");
                    EXIT_ERROR
                }
                Ok(jobs) if jobs.is_empty() => {
                    out("No jobs in the system\n");
                    EXIT_OK
                }
                Ok(jobs) => {
                    let text: String = jobs
                        .iter()
                        .map(|j| format::scontrol_show_job(j, UTC_OFFSET_S, oneliner, opts.details))
                        .collect();
                    out(&text);
                    EXIT_OK
                }
            }
        }
        "node" => match rt.block_on(load_nodes(cluster)) {
            Err(e) => {
                eprintln!("slurm_load_node error: {e}");
                EXIT_ERROR
            }
            Ok(nodes) => show_records(
                &nodes,
                id,
                "Node",
                "nodes",
                |n| &n.name,
                |n| format::scontrol_show_node(n, UTC_OFFSET_S, oneliner),
            ),
        },
        _ => match rt.block_on(async {
            Ok::<_, ClientError>((load_partitions(cluster).await?, load_nodes(cluster).await?))
        }) {
            Err(e) => {
                eprintln!("slurm_load_partitions error: {e}");
                EXIT_ERROR
            }
            Ok((parts, nodes)) => show_records(
                &parts,
                id,
                "Partition",
                "partitions",
                |p| &p.name,
                |p| format::scontrol_show_partition(p, &nodes, oneliner),
            ),
        },
    }
}

/// `scontrol show node|partition [NAME]`: the matching records, or Slurm's words when none.
fn show_records<T>(
    records: &[T],
    name: Option<&str>,
    kind: &str,
    plural: &str,
    name_of: impl Fn(&T) -> &String,
    render: impl Fn(&T) -> String,
) -> i32 {
    // A host list names several (`scontrol show node n[1-2]`).
    let wanted: Option<Vec<String>> =
        name.map(|x| drover_scheduler::hostlist::expand(x).unwrap_or_else(|_| vec![x.to_string()]));
    let shown: Vec<&T> = records
        .iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(name_of(r))))
        .collect();
    match (shown.is_empty(), name) {
        // Slurm prints this on stdout, and exits 1.
        (true, Some(x)) => {
            out(&format!("{kind} {x} not found\n"));
            EXIT_ERROR
        }
        (true, None) => {
            out(&format!("No {plural} in the system\n"));
            EXIT_OK
        }
        (false, _) => {
            out(&shown.into_iter().map(render).collect::<String>());
            EXIT_OK
        }
    }
}
