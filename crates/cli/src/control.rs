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
}
