//! The commands' thin shells: parse, call the cluster, print. Formatting lives in `format`,
//! sbatch's parsing in `sbatch_prep`; this module only wires them to the client.

use crate::client::{request_id, ClientError, Cluster};
use crate::{control, format, identity, sbatch_prep};
use drover_proto as pb;
use std::collections::BTreeMap;
use std::io::Write;

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
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
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
            EXIT_OK
        }
        Err(e) => {
            eprintln!("sbatch: error: Batch job submission failed: {e}");
            EXIT_ERROR
        }
    }
}

pub fn scancel(args: &[String]) -> i32 {
    let mut ids = Vec::new();
    for a in args {
        if a == "-v" || a == "--verbose" || a == "-Q" || a == "--quiet" {
            continue;
        }
        if a.starts_with('-') {
            eprintln!("scancel: error: option {a} is not supported yet");
            return EXIT_ERROR;
        }
        ids.push(a.as_str());
    }
    let targets = match control::parse_job_refs(ids) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("scancel: error: {e}");
            return EXIT_ERROR;
        }
    };
    if targets.is_empty() {
        eprintln!("scancel: error: No job identification provided");
        return EXIT_ERROR;
    }
    let Ok(mut cluster) = cluster("scancel") else {
        return EXIT_ERROR;
    };
    let result = runtime().block_on(control::control(
        &mut cluster,
        pb::control_request::Action::Cancel,
        targets,
        identity::uid(),
    ));
    cluster.save();
    match result {
        Ok(errors) => {
            let mut rc = EXIT_OK;
            for (target, error) in errors {
                // Slurm is silent about jobs that already ended; it reports unknown ids.
                if error == "Invalid job id specified" {
                    eprintln!(
                        "scancel: error: Kill job error on job id {}: {error}",
                        control::ref_name(&target)
                    );
                    rc = EXIT_ERROR;
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

async fn load_jobs(
    cluster: &mut Cluster,
    job_ids: Vec<u64>,
) -> Result<Vec<pb::JobInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| {
            let req = pb::ListJobsRequest {
                consistency,
                job_ids: job_ids.clone(),
            };
            async move { c.list_jobs(req).await.map(|r| r.into_inner()) }
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.jobs)
}

async fn load_nodes(cluster: &mut Cluster) -> Result<Vec<pb::NodeInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| async move {
            c.list_nodes(pb::ListNodesRequest {
                consistency,
                names: vec![],
            })
            .await
            .map(|r| r.into_inner())
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.nodes)
}

async fn load_partitions(cluster: &mut Cluster) -> Result<Vec<pb::PartitionInfo>, ClientError> {
    let consistency = cluster.consistency();
    let reply = cluster
        .call(|mut c| async move {
            c.list_partitions(pb::ListPartitionsRequest { consistency })
                .await
                .map(|r| r.into_inner())
        })
        .await?;
    cluster.saw(reply.applied_index);
    Ok(reply.partitions)
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn squeue(args: &[String]) -> i32 {
    let mut noheader = false;
    let mut job_ids: Vec<u64> = Vec::new();
    let mut users: Vec<String> = Vec::new();
    let mut partitions: Vec<String> = Vec::new();
    let mut states: Vec<String> = Vec::new();
    let mut fmt: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a, None),
        };
        let mut value = |short: &str| -> Option<String> {
            if let Some(v) = inline.clone() {
                return Some(v);
            }
            if flag.len() > short.len() && flag.starts_with(short) && !flag.starts_with("--") {
                return Some(flag[short.len()..].to_string());
            }
            i += 1;
            args.get(i).cloned()
        };
        match flag {
            "-h" | "--noheader" => noheader = true,
            "--me" => users.push(identity::user_name(identity::uid())),
            f if f == "--jobs" || f.starts_with("-j") => {
                for id in value("-j").map(|v| split_list(&v)).unwrap_or_default() {
                    match id.parse() {
                        Ok(n) => job_ids.push(n),
                        Err(_) => {
                            eprintln!("squeue: error: Invalid job id: {id}");
                            return EXIT_ERROR;
                        }
                    }
                }
            }
            f if f == "--user" || f.starts_with("-u") => {
                users.extend(value("-u").map(|v| split_list(&v)).unwrap_or_default())
            }
            f if f == "--partition" || f.starts_with("-p") => {
                partitions.extend(value("-p").map(|v| split_list(&v)).unwrap_or_default())
            }
            f if f == "--states" || f.starts_with("-t") => {
                states.extend(value("-t").map(|v| split_list(&v)).unwrap_or_default())
            }
            f if f == "--format" || f.starts_with("-o") => fmt = value("-o"),
            other => {
                eprintln!("squeue: unrecognized option '{other}'\nTry \"squeue --help\" for more information");
                return EXIT_ERROR;
            }
        }
        i += 1;
    }
    let Ok(mut cluster) = cluster("squeue") else {
        return EXIT_ERROR;
    };
    let single = job_ids.len() == 1;
    let jobs = match runtime().block_on(load_jobs(&mut cluster, job_ids.clone())) {
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
    let all_states = states.iter().any(|s| s.eq_ignore_ascii_case("all"));
    let jobs: Vec<pb::JobInfo> = jobs
        .into_iter()
        .filter(|j| users.is_empty() || users.contains(&j.user))
        .filter(|j| partitions.is_empty() || partitions.contains(&j.partition))
        .filter(|j| {
            all_states
                || if states.is_empty() {
                    // Explicit job ids show finished jobs too, as in Slurm.
                    !job_ids.is_empty()
                        || matches!(
                            j.state.as_str(),
                            "PENDING" | "RUNNING" | "COMPLETING" | "SUSPENDED"
                        )
                } else {
                    states.iter().any(|s| state_matches(s, &j.state))
                }
        })
        .collect();
    let text = match fmt {
        Some(f) => format::squeue_format(&f, &jobs, UTC_OFFSET_S),
        None => format::squeue_default(&jobs, UTC_OFFSET_S),
    };
    let text = if noheader {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    };
    out(&text);
    EXIT_OK
}

fn state_matches(filter: &str, state: &str) -> bool {
    let f = filter.to_ascii_uppercase();
    let compact = match state {
        "PENDING" => "PD",
        "RUNNING" => "R",
        "COMPLETING" => "CG",
        "COMPLETED" => "CD",
        "CANCELLED" => "CA",
        "FAILED" => "F",
        "TIMEOUT" => "TO",
        "NODE_FAIL" => "NF",
        "OUT_OF_MEMORY" => "OOM",
        _ => "",
    };
    f == state || f == compact
}

pub fn sinfo(args: &[String]) -> i32 {
    let mut noheader = false;
    for a in args {
        match a.as_str() {
            "-h" | "--noheader" => noheader = true,
            other => {
                eprintln!("sinfo: unrecognized option '{other}'\nTry \"sinfo --help\" for more information");
                return EXIT_ERROR;
            }
        }
    }
    let Ok(mut cluster) = cluster("sinfo") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
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
    let text = format::sinfo_default(&parts, &nodes);
    let text = if noheader {
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    } else {
        text
    };
    out(&text);
    EXIT_OK
}

pub fn scontrol(args: &[String]) -> i32 {
    let mut oneliner = false;
    let mut words: Vec<&str> = Vec::new();
    for a in args {
        match a.as_str() {
            "-o" | "--oneliner" => oneliner = true,
            "-d" | "--details" | "-a" | "--all" => {}
            other => words.push(other),
        }
    }
    let Ok(mut cluster) = cluster("scontrol") else {
        return EXIT_ERROR;
    };
    let rt = runtime();
    let rc = match words.as_slice() {
        ["ping"] => {
            let mut replies = Vec::new();
            for (i, addr) in cluster.addrs().to_vec().iter().enumerate() {
                replies.push((addr.clone(), rt.block_on(cluster.ping_one(i))));
            }
            out(&format::scontrol_ping_lines(&replies));
            if replies.iter().any(|(_, r)| r.is_some()) {
                EXIT_OK
            } else {
                EXIT_ERROR
            }
        }
        [verb @ ("hold" | "uhold" | "release"), jobs @ ..] => {
            control::scontrol_job_control(&rt, &mut cluster, verb, jobs)
        }
        ["show", what, rest @ ..] => {
            let what = what.to_ascii_lowercase();
            let id = rest.first().copied();
            show(&rt, &mut cluster, &what, id, oneliner)
        }
        [] => {
            eprintln!("scontrol: error: no command given; try `scontrol show job`");
            EXIT_ERROR
        }
        [cmd, ..] => {
            eprintln!("scontrol: error: Invalid command: {cmd}");
            EXIT_ERROR
        }
    };
    cluster.save();
    rc
}

fn show(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    what: &str,
    id: Option<&str>,
    oneliner: bool,
) -> i32 {
    let what = match what {
        w if "jobs".starts_with(w) && w.len() >= 3 => "job",
        w if "nodes".starts_with(w) && w.len() >= 3 => "node",
        w if "partitions".starts_with(w) && w.len() >= 3 => "partition",
        other => {
            eprintln!("scontrol: error: invalid entity: {other} for keyword: show");
            return EXIT_ERROR;
        }
    };
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
                        .map(|j| format::scontrol_show_job(j, UTC_OFFSET_S, oneliner))
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
    let shown: Vec<&T> = records
        .iter()
        .filter(|r| name.is_none_or(|x| x == name_of(r)))
        .collect();
    match (shown.is_empty(), name) {
        (true, Some(x)) => {
            eprintln!("{kind} {x} not found");
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
