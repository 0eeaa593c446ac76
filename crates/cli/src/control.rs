//! Job controls by reference: `scontrol hold|uhold|release <jobs>` and the array forms of
//! `scancel` (`12`, `12_3`, `12_[1-3]`). Parsing the job list is pure; `control` sends one
//! `Control` request and prints Slurm's per-job errors.

use crate::client::{request_id, Cluster};
use drover_proto as pb;
use pb::control_request::Action;

/// Parses job arguments as scancel and scontrol take them: ids separated by commas or given
/// as separate words, each `N`, `N_i` or `N_[a-b,c]` (reference/slurm.md §5).
pub fn parse_job_refs<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<pb::JobRef>, String> {
    let mut refs = Vec::new();
    for arg in args {
        let mut rest = arg;
        while !rest.is_empty() {
            // A comma inside `[...]` separates array indices, not jobs.
            let end = match (rest.find('['), rest.find(',')) {
                (Some(b), Some(c)) if b < c => {
                    rest[b..].find(']').map_or(rest.len(), |e| b + e + 1)
                }
                (_, Some(c)) => c,
                _ => rest.len(),
            };
            let item = &rest[..end];
            rest = rest[end..].trim_start_matches(',');
            if item.is_empty() {
                continue;
            }
            refs.extend(parse_one(item).ok_or_else(|| format!("Invalid job id {item}"))?);
        }
    }
    Ok(refs)
}

fn parse_one(item: &str) -> Option<Vec<pb::JobRef>> {
    let id = |s: &str| s.parse::<u64>().ok().filter(|&n| n > 0);
    match item.split_once('_') {
        None => Some(vec![pb::JobRef {
            job_id: id(item)?,
            task_id: None,
        }]),
        Some((job, "*")) => Some(vec![pb::JobRef {
            job_id: id(job)?,
            task_id: None,
        }]),
        Some((job, tasks)) => {
            let job_id = id(job)?;
            let list = tasks
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(tasks);
            let parsed = drover_scheduler::depend::parse_array(list, u32::MAX).ok()?;
            Some(
                parsed
                    .tasks
                    .into_iter()
                    .map(|t| pb::JobRef {
                        job_id,
                        task_id: Some(t),
                    })
                    .collect(),
            )
        }
    }
}

/// Slurm's spelling of a reference: `12` or `12_3`.
pub fn ref_name(r: &pb::JobRef) -> String {
    match r.task_id {
        Some(t) => format!("{}_{t}", r.job_id),
        None => r.job_id.to_string(),
    }
}

/// The errors a control request got, one `(target, Slurm's text)` per job it did not change.
pub async fn control(
    cluster: &mut Cluster,
    action: Action,
    targets: Vec<pb::JobRef>,
    uid: u32,
) -> Result<Vec<(pb::JobRef, String)>, String> {
    send(
        cluster,
        pb::ControlRequest {
            request_id: request_id(),
            action: action as i32,
            targets,
            uid,
            ..Default::default()
        },
    )
    .await
}

/// `scancel --signal`: `signal` to `scope` (0 the job's processes but not the batch shell,
/// 1 the batch shell, 2 every process) of each target.
pub async fn signal(
    cluster: &mut Cluster,
    targets: Vec<pb::JobRef>,
    signal: i32,
    scope: u32,
    uid: u32,
) -> Result<Vec<(pb::JobRef, String)>, String> {
    send(
        cluster,
        pb::ControlRequest {
            request_id: request_id(),
            action: Action::Signal as i32,
            targets,
            uid,
            signal,
            signal_scope: scope,
            ..Default::default()
        },
    )
    .await
}

async fn send(
    cluster: &mut Cluster,
    request: pb::ControlRequest,
) -> Result<Vec<(pb::JobRef, String)>, String> {
    let reply = cluster
        .call(|mut c| {
            let request = request.clone();
            async move { c.control(request).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|e| e.to_string())?;
    cluster.saw(reply.applied_index);
    Ok(reply
        .outcomes
        .into_iter()
        .filter(|o| !o.error.is_empty())
        .map(|o| (o.target.unwrap_or_default(), o.error))
        .collect())
}

/// `scontrol hold|uhold|release|requeue|requeuehold <job_list>`: exit 1 if any job was not
/// changed.
pub fn scontrol_job_control(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    verb: &str,
    jobs: &[&str],
) -> i32 {
    let action = match verb {
        "hold" => Action::Hold,
        "uhold" => Action::UserHold,
        "requeue" => Action::Requeue,
        "requeuehold" => Action::RequeueHold,
        _ => Action::Release,
    };
    let targets = match parse_job_refs(jobs.iter().copied()) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            eprintln!("scontrol: error: Invalid job id specified");
            return 1;
        }
        Err(e) => {
            eprintln!("scontrol: error: {e}");
            return 1;
        }
    };
    match rt.block_on(control(cluster, action, targets, crate::identity::uid())) {
        Ok(errors) => {
            for (target, error) in &errors {
                eprintln!("scontrol: error: {error} for job {}", ref_name(target));
            }
            i32::from(!errors.is_empty())
        }
        Err(e) => {
            eprintln!("scontrol: error: {e}");
            1
        }
    }
}

/// `scontrol update JobId=… Key=Value…` or `scontrol update NodeName=… State=… Reason=…`.
pub fn scontrol_update(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    words: &[String],
    now_unix: i64,
) -> i32 {
    let request = match parse_update(words, now_unix) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let uid = crate::identity::uid();
    let result = match request {
        Update::Job { targets, update } => rt
            .block_on(send(
                cluster,
                pb::ControlRequest {
                    request_id: request_id(),
                    action: Action::Update as i32,
                    targets,
                    uid,
                    update: Some(update),
                    ..Default::default()
                },
            ))
            .map(|errors| errors.into_iter().map(|(_, e)| e).collect::<Vec<_>>()),
        Update::Node {
            names,
            state,
            reason,
        } => {
            let request = pb::UpdateNodeRequest {
                request_id: request_id(),
                names,
                state,
                reason,
            };
            rt.block_on(cluster.call(|mut c| {
                let request = request.clone();
                async move { c.update_node(request).await.map(|r| r.into_inner()) }
            }))
            .map(|reply| {
                cluster.saw(reply.applied_index);
                Vec::new()
            })
            .map_err(|e| e.to_string())
        }
        Update::Partition(request) => {
            let request = pb::UpdatePartitionRequest {
                request_id: request_id(),
                uid,
                ..request
            };
            rt.block_on(cluster.call(|mut c| {
                let request = request.clone();
                async move { c.update_partition(request).await.map(|r| r.into_inner()) }
            }))
            .map(|reply| {
                cluster.saw(reply.applied_index);
                Vec::new()
            })
            .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(errors) if errors.is_empty() => 0,
        Ok(errors) => {
            for e in errors {
                eprintln!("slurm_update error: {e}");
            }
            1
        }
        Err(e) => {
            eprintln!("slurm_update error: {e}");
            1
        }
    }
}

/// What `scontrol update` asks for.
#[derive(Debug, PartialEq)]
pub enum Update {
    Job {
        targets: Vec<pb::JobRef>,
        update: pb::JobUpdate,
    },
    Node {
        names: Vec<String>,
        state: String,
        reason: String,
    },
    Partition(pb::UpdatePartitionRequest),
}

/// Parses `Key=Value` words (keys in any case) into one job or node update.
pub fn parse_update(words: &[String], now_unix: i64) -> Result<Update, String> {
    let mut pairs = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => pairs.push((k.to_ascii_lowercase(), v.to_string())),
            None => {
                return Err(format!(
                    "scontrol: error: Invalid input: {w}\nRequest aborted"
                ))
            }
        }
    }
    let unsupported = |k: &str, v: &str| {
        format!(
            "scontrol: error: Update of this parameter is not supported: {k}={v}\nRequest aborted"
        )
    };
    let entity = pairs.first().map(|(k, _)| k.as_str());
    match entity {
        Some("jobid" | "job") => {
            let targets = parse_job_refs([pairs[0].1.as_str()])
                .map_err(|e| format!("scontrol: error: {e}"))?;
            let mut u = pb::JobUpdate::default();
            for (k, v) in &pairs[1..] {
                match k.as_str() {
                    "timelimit" => match drover_scheduler::time::parse_time_limit(v) {
                        Ok(Some(m)) => u.time_limit_min = Some(m),
                        Ok(None) => u.time_limit_unlimited = true,
                        Err(_) => return Err(format!("scontrol: error: Invalid TimeLimit value: {v}\nRequest aborted")),
                    },
                    "priority" => {
                        u.priority = Some(v.parse().map_err(|_| format!("scontrol: error: Invalid Priority value: {v}\nRequest aborted"))?)
                    }
                    "nice" => {
                        u.nice = Some(v.parse().map_err(|_| format!("scontrol: error: Invalid nice value: {v}\nRequest aborted"))?)
                    }
                    "name" | "jobname" => u.name = Some(v.clone()),
                    "arraytaskthrottle" => {
                        u.array_throttle = Some(v.parse().map_err(|_| format!("scontrol: error: Invalid ArrayTaskThrottle value: {v}\nRequest aborted"))?)
                    }
                    "starttime" | "begintime" => {
                        u.begin_time = Some(
                            drover_scheduler::time::parse_begin(v, now_unix, 0)
                                .map_err(|e| format!("scontrol: error: {e}\nRequest aborted"))?,
                        )
                    }
                    "dependency" => {
                        if !v.trim().is_empty() {
                            drover_scheduler::depend::Dependency::parse(v)
                                .map_err(|e| format!("scontrol: error: Job dependency problem: {e}\nRequest aborted"))?;
                        }
                        u.dependency = Some(v.clone());
                    }
                    _ => return Err(unsupported(k, v)),
                }
            }
            Ok(Update::Job { targets, update: u })
        }
        Some("nodename" | "node") => {
            let names = drover_scheduler::hostlist::expand(&pairs[0].1).map_err(|_| {
                format!(
                    "scontrol: error: Invalid node name specified: {}",
                    pairs[0].1
                )
            })?;
            let mut state = None;
            let mut reason = String::new();
            for (k, v) in &pairs[1..] {
                match k.as_str() {
                    "state" => state = Some(v.to_ascii_uppercase()),
                    "reason" => reason = v.clone(),
                    _ => return Err(unsupported(k, v)),
                }
            }
            let state = state.ok_or_else(|| {
                "scontrol: error: No changes specified\nRequest aborted".to_string()
            })?;
            Ok(Update::Node {
                names,
                state,
                reason,
            })
        }
        Some(k) if abbreviates(k, "partitionname", 2) => parse_partition_update(words),
        Some(other) => Err(format!(
            "scontrol: error: Invalid input: {other}\nRequest aborted"
        )),
        None => Err("scontrol: error: too few arguments for keyword:update".to_string()),
    }
}

/// Does `key` (lowercase) name `name` (lowercase)? Slurm's scontrol accepts any prefix of at
/// least `min` characters (`strncasecmp(tag, name, MAX(taglen, min))`).
fn abbreviates(key: &str, name: &str, min: usize) -> bool {
    key.len() >= min.min(name.len()) && name.starts_with(key)
}

/// `scontrol update PartitionName=P Key=Value…` (src/scontrol/update_part.c): keys and the
/// State/Default values may be abbreviated as Slurm allows.
fn parse_partition_update(words: &[String]) -> Result<Update, String> {
    let mut u = pb::UpdatePartitionRequest::default();
    let mut changes = 0;
    for w in words {
        let (tag, val) = w.split_once('=').unwrap_or((w.as_str(), ""));
        let key = tag.to_ascii_lowercase();
        let value = val.to_ascii_lowercase();
        let invalid = || format!("scontrol: error: Invalid input: {w}");
        let time = |what: &str| -> Result<(Option<u64>, bool), String> {
            match drover_scheduler::time::parse_time_limit(val) {
                Ok(Some(m)) => Ok((Some(m), false)),
                Ok(None) => Ok((None, true)),
                Err(_) => Err(format!("scontrol: error: Invalid input {what}={val}")),
            }
        };
        let number = |what: &str| -> Result<u32, String> {
            val.parse::<u16>()
                .map(u32::from)
                .map_err(|_| format!("scontrol: error: Invalid {what} value: {val}"))
        };
        if abbreviates(&key, "partitionname", 2) {
            u.name = val.to_string();
            continue;
        }
        changes += 1;
        if abbreviates(&key, "maxtime", 4) {
            (u.max_time_min, u.max_time_unlimited) = time("MaxTime")?;
        } else if abbreviates(&key, "defaulttime", 8) {
            (u.default_time_min, u.default_time_unlimited) = time("DefaultTime")?;
        } else if abbreviates(&key, "maxnodes", 4) {
            if value == "unlimited" || value == "infinite" {
                u.max_nodes_unlimited = true;
            } else {
                let n = val
                    .split('-')
                    .next()
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(|| {
                        format!("scontrol: error: Invalid node count specification: {val}")
                    })?;
                u.max_nodes = Some(n);
            }
        } else if abbreviates(&key, "default", 7) {
            u.is_default = Some(match () {
                () if !value.is_empty() && "no".starts_with(&value) => false,
                () if !value.is_empty() && "yes".starts_with(&value) => true,
                () => {
                    return Err(format!(
                        "{}\nscontrol: error: Acceptable Default values are YES and NO",
                        invalid()
                    ))
                }
            });
        } else if abbreviates(&key, "priority", 3) {
            // Before the longer keys, as in Slurm: `Pri=` is Priority (tier and job factor).
            let n = number("Priority")?;
            u.priority_tier = Some(n);
            u.priority_job_factor = Some(n);
        } else if abbreviates(&key, "priorityjobfactor", 3) {
            u.priority_job_factor = Some(number("PriorityJobFactor")?);
        } else if abbreviates(&key, "prioritytier", 3) {
            u.priority_tier = Some(number("PriorityTier")?);
        } else if abbreviates(&key, "state", 2) {
            let known = [
                ("inactive", "INACTIVE"),
                ("down", "DOWN"),
                ("up", "UP"),
                ("drain", "DRAIN"),
            ];
            let state = known
                .iter()
                .find(|(name, _)| !value.is_empty() && name.starts_with(&value))
                .map(|(_, s)| s.to_string())
                .ok_or_else(|| {
                    format!(
                        "{}\nscontrol: error: Acceptable State values are UP, DOWN, DRAIN and INACTIVE",
                        invalid()
                    )
                })?;
            u.state = Some(state);
        } else if abbreviates(&key, "oversubscribe", 2) || abbreviates(&key, "shared", 2) {
            let o = drover_scheduler::OverSubscribe::parse(val).map_err(|_| {
                format!(
                    "{}\nscontrol: error: Acceptable OverSubscribe values are NO, EXCLUSIVE, YES:#, and FORCE:#",
                    invalid()
                )
            })?;
            u.oversubscribe = Some(o.name());
        } else if abbreviates(&key, "nodes", 1) {
            if value == "all" {
                u.all_nodes = Some(true);
            } else {
                u.all_nodes = Some(false);
                u.nodes = if val.is_empty() {
                    Vec::new()
                } else {
                    drover_scheduler::hostlist::expand(val).map_err(|_| {
                        format!("scontrol: error: Invalid node name specified: {val}")
                    })?
                };
            }
        } else {
            return Err(format!(
                "scontrol: error: Update of this parameter is not supported: {w}\nRequest aborted"
            ));
        }
    }
    if changes == 0 {
        return Err("scontrol: error: No changes specified".to_string());
    }
    Ok(Update::Partition(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: &[&str]) -> Vec<String> {
        parse_job_refs(args.iter().copied())
            .unwrap()
            .iter()
            .map(ref_name)
            .collect()
    }

    #[test]
    fn job_lists_and_array_forms() {
        assert_eq!(names(&["12", "13,14"]), ["12", "13", "14"]);
        assert_eq!(names(&["12_3"]), ["12_3"]);
        assert_eq!(
            names(&["12_[1-3,7],15"]),
            ["12_1", "12_2", "12_3", "12_7", "15"]
        );
        assert_eq!(names(&["12_*"]), ["12"]);
        for bad in ["x", "12_", "12_[a]", "0", "-3", "12_[1-"] {
            let e = parse_job_refs([bad]).unwrap_err();
            assert!(e.starts_with("Invalid job id"), "{bad}: {e}");
        }
    }

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn update_words() {
        let now = 1_795_689_000;
        match parse_update(
            &words(&[
                "JobId=12_3",
                "TimeLimit=1:00:00",
                "nice=5",
                "Dependency=afterok:4",
            ]),
            now,
        )
        .unwrap()
        {
            Update::Job { targets, update } => {
                assert_eq!(ref_name(&targets[0]), "12_3");
                assert_eq!(update.time_limit_min, Some(60));
                assert_eq!(update.nice, Some(5));
                assert_eq!(update.dependency.as_deref(), Some("afterok:4"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_update(
                &words(&["NodeName=n[1-2]", "State=drain", "Reason=disk bad"]),
                now
            )
            .unwrap(),
            Update::Node {
                names: vec!["n1".into(), "n2".into()],
                state: "DRAIN".into(),
                reason: "disk bad".into()
            }
        );
        for (bad, needle) in [
            (&["JobId=1", "Foo=bar"][..], "not supported: foo=bar"),
            (&["JobId=1", "TimeLimit=x"][..], "Invalid TimeLimit"),
            (
                &["JobId=1", "Dependency=afterok:x"][..],
                "Job dependency problem",
            ),
            (&["NodeName=n1"][..], "No changes"),
            (&["PartitionName=p"][..], "No changes specified"),
            (
                &["PartitionName=p", "State=SIDEWAYS"][..],
                "Invalid input: State=SIDEWAYS\nscontrol: error: Acceptable State values are UP, DOWN, DRAIN and INACTIVE",
            ),
            (&["PartitionName=p", "MaxTime=soon"][..], "Invalid input MaxTime=soon"),
            (&["PartitionName=p", "Default=maybe"][..], "Acceptable Default values are YES and NO"),
            (&["PartitionName=p", "PriorityTier=x"][..], "Invalid PriorityTier value: x"),
            (&["PartitionName=p", "Color=red"][..], "not supported: Color=red"),
        ] {
            let e = parse_update(&words(bad), now).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn partition_updates_take_slurms_keys_abbreviations_and_values() {
        let now = 1_700_000_000;
        let Ok(Update::Partition(u)) = parse_update(
            &words(&[
                "PartitionName=gpu",
                "state=dr",
                "MaxTime=1-00:00:00",
                "DefaultTime=UNLIMITED",
                "MaxNodes=4",
                "Default=y",
                "Pri=5",
                "PriorityJobFactor=7",
                "Nodes=n[1-2]",
            ]),
            now,
        ) else {
            panic!("not a partition update")
        };
        assert_eq!(u.name, "gpu");
        assert_eq!(u.state.as_deref(), Some("DRAIN"));
        assert_eq!((u.max_time_min, u.max_time_unlimited), (Some(1440), false));
        assert_eq!((u.default_time_min, u.default_time_unlimited), (None, true));
        assert_eq!(u.max_nodes, Some(4));
        assert_eq!(u.is_default, Some(true));
        assert_eq!((u.priority_tier, u.priority_job_factor), (Some(5), Some(7)));
        assert_eq!(u.all_nodes, Some(false));
        assert_eq!(u.nodes, vec!["n1".to_string(), "n2".to_string()]);
        let Ok(Update::Partition(u)) = parse_update(
            &words(&["PartitionName=gpu", "Nodes=ALL", "MaxNodes=UNLIMITED"]),
            now,
        ) else {
            panic!("not a partition update")
        };
        assert_eq!(u.all_nodes, Some(true));
        assert!(u.max_nodes_unlimited);
        // OverSubscribe=: Slurm's forms, sent in its spelling; anything else refused.
        let Ok(Update::Partition(u)) =
            parse_update(&words(&["PartitionName=gpu", "OverSubscribe=force"]), now)
        else {
            panic!("not a partition update")
        };
        assert_eq!(u.oversubscribe.as_deref(), Some("FORCE:4"));
        let Ok(Update::Partition(u)) =
            parse_update(&words(&["PartitionName=gpu", "OverSubscribe=YES:2"]), now)
        else {
            panic!("not a partition update")
        };
        assert_eq!(u.oversubscribe.as_deref(), Some("YES:2"));
        let Err(e) = parse_update(
            &words(&["PartitionName=gpu", "OverSubscribe=sometimes"]),
            now,
        ) else {
            panic!("accepted")
        };
        assert_eq!(
            e,
            "scontrol: error: Invalid input: OverSubscribe=sometimes\nscontrol: error: Acceptable OverSubscribe values are NO, EXCLUSIVE, YES:#, and FORCE:#"
        );
    }
}
