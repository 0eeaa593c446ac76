//! `scontrol` options and the read-only forms that need no job or node records: `show config`
//! (src/api/config_info.c `slurm_print_ctl_conf`: `Configuration data as of <time>`, then
//! `%-23s = %s` lines, then the controllers' ping lines), `show hostnames|hostlist|
//! hostlistsorted` (src/scontrol/scontrol.c) and `version`.

use crate::format::{hostname_cmp, secs2time, timestamp};
use crate::getopt::{self, opt, Arg};
use drover_proto::ShowConfigReply;
use drover_scheduler::hostlist;

const OPTIONS: &[getopt::Opt] = &[
    opt('a', "all", Arg::No, "all"),
    opt('d', "details", Arg::No, "details"),
    opt('h', "help", Arg::No, "help"),
    getopt::long("hide", Arg::No, "hide"),
    getopt::long("json", Arg::No, "json"),
    getopt::long("local", Arg::No, "local"),
    opt('M', "clusters", Arg::Required, "clusters"),
    opt('o', "oneliner", Arg::No, "oneliner"),
    opt('Q', "quiet", Arg::No, "quiet"),
    getopt::long("sibling", Arg::No, "sibling"),
    opt('u', "uid", Arg::Required, "uid"),
    getopt::long("usage", Arg::No, "usage"),
    opt('v', "verbose", Arg::No, "verbose"),
    opt('V', "version", Arg::No, "version"),
    getopt::long("yaml", Arg::No, "yaml"),
];

/// scontrol's parsed command line: flags, then the command words.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub oneliner: bool,
    pub details: bool,
    pub quiet: bool,
    pub version: bool,
    pub help: bool,
    pub words: Vec<String>,
}

pub fn parse(args: &[String]) -> Result<Opts, String> {
    let p = getopt::parse("scontrol", args, OPTIONS)?;
    for unsupported in ["json", "yaml", "clusters", "sibling"] {
        if p.has(unsupported) {
            return Err(format!(
                "scontrol: error: --{unsupported} is not supported by drover yet\n"
            ));
        }
    }
    Ok(Opts {
        oneliner: p.has("oneliner"),
        details: p.has("details"),
        quiet: p.has("quiet"),
        version: p.has("version"),
        help: p.has("help") || p.has("usage"),
        words: p.words,
    })
}

/// `show hostnames|hostlist|hostlistsorted` take a host list, a file (`/path`) or `-` (stdin).
pub fn host_input(arg: Option<&str>, stdin: &mut dyn std::io::Read) -> Result<String, String> {
    let Some(arg) = arg else {
        return Ok(String::new());
    };
    let text = if arg == "-" {
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .map_err(|e| format!("scontrol: error: cannot read stdin: {e}\n"))?;
        s
    } else if arg.starts_with('/') {
        std::fs::read_to_string(arg)
            .map_err(|e| format!("scontrol: error: cannot read {arg}: {e}\n"))?
    } else {
        return Ok(arg.to_string());
    };
    Ok(text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(","))
}

fn expand(expr: &str) -> Result<Vec<String>, String> {
    hostlist::expand(expr).map_err(|e| format!("scontrol: error: Invalid hostlist: {expr} ({e})\n"))
}

/// `show hostnames`: one name per line, in order.
pub fn hostnames(expr: &str) -> Result<String, String> {
    let names = expand(expr)?;
    if names.is_empty() {
        return Err("scontrol: error: host list is empty\n".to_string());
    }
    Ok(names.into_iter().map(|n| n + "\n").collect())
}

/// `show hostlist` keeps order and duplicates; `hostlistsorted` sorts, still no de-duplication.
pub fn hostlist(expr: &str, sorted: bool) -> Result<String, String> {
    let mut names = expand(expr)?;
    if names.is_empty() {
        return Err("scontrol: error: host list is empty\n".to_string());
    }
    if sorted {
        names.sort_by(|a, b| hostname_cmp(a, b));
    }
    Ok(format!("{}\n", hostlist::compress(&names)))
}

/// `scontrol show config`: drover's real settings under Slurm's key names, in Slurm's order.
/// Keys for Slurm subsystems drover does not have (munge, plugins it has no counterpart
/// for) are left out rather than invented; `ping` is what `scontrol ping` prints.
pub fn config_text(c: &ShowConfigReply, now: i64, utc: i32, ping: &str) -> String {
    let ts = |t: i64| timestamp(t, utc, "Unknown");
    let secs = |s: u64| format!("{s} sec");
    let mut sched_params = vec![
        format!("bf_window={}", c.bf_window_s / 60),
        format!("bf_resolution={}", c.bf_resolution_s),
    ];
    if c.bf_max_job_test > 0 {
        sched_params.push(format!("bf_max_job_test={}", c.bf_max_job_test));
    }
    if c.bf_job_part_count_reserve > 0 {
        sched_params.push(format!(
            "bf_job_part_count_reserve={}",
            c.bf_job_part_count_reserve
        ));
    }
    let store = match c.accounting_store_flags.as_str() {
        "" => "(null)".to_string(),
        flags => flags.to_string(),
    };
    let mut rows: Vec<(String, String)> = vec![
        ("AccountingStoreFlags".into(), store),
        ("BOOT_TIME".into(), ts(c.boot_time)),
        ("ClusterName".into(), c.cluster_name.clone()),
        ("DefMemPerNode".into(), "UNLIMITED".into()),
        ("FirstJobId".into(), "1".into()),
        ("KillWait".into(), secs(c.kill_wait_s)),
        ("MaxArraySize".into(), c.max_array_size.to_string()),
        ("MinJobAge".into(), secs(c.min_job_age_s)),
        ("NEXT_JOB_ID".into(), c.next_job_id.to_string()),
        (
            "PriorityDecayHalfLife".into(),
            secs2time(c.priority_decay_half_life_s as i64),
        ),
        (
            "PriorityMaxAge".into(),
            secs2time(c.priority_max_age_s as i64),
        ),
        ("PriorityType".into(), "priority/multifactor".into()),
        ("PriorityWeightAge".into(), c.weight_age.to_string()),
        (
            "PriorityWeightFairShare".into(),
            c.weight_fairshare.to_string(),
        ),
        (
            "PriorityWeightJobSize".into(),
            c.weight_job_size.to_string(),
        ),
        (
            "PriorityWeightPartition".into(),
            c.weight_partition.to_string(),
        ),
        ("PriorityWeightQOS".into(), c.weight_qos.to_string()),
        ("SchedulerParameters".into(), sched_params.join(",")),
        (
            "SchedulerType".into(),
            if c.backfill {
                "sched/backfill"
            } else {
                "sched/builtin"
            }
            .into(),
        ),
        ("SelectType".into(), "select/cons_tres".into()),
    ];
    for (i, host) in c.controllers.iter().enumerate() {
        rows.push((format!("SlurmctldHost[{i}]"), host.clone()));
    }
    rows.push(("SlurmdTimeout".into(), secs(c.slurmd_timeout_s)));
    rows.push(("SLURM_VERSION".into(), c.version.clone()));
    let mut out = format!("Configuration data as of {}\n", ts(now));
    for (k, v) in rows {
        out.push_str(&format!("{k:<23} = {v}\n"));
    }
    out.push('\n');
    out.push_str(ping);
    out
}

/// Which steps `scontrol show step [ID]` asks for: every running one, a job's, or one step
/// (`N.S`, `N.batch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepFilter {
    All,
    Job(u64),
    Step(u64, StepName),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepName {
    Batch,
    Id(u32),
}

pub fn parse_step_id(arg: Option<&str>) -> Result<StepFilter, String> {
    let Some(arg) = arg else {
        return Ok(StepFilter::All);
    };
    let invalid = || format!("scontrol: error: Invalid job step id: {arg}\n");
    match arg.split_once('.') {
        None => arg.parse().map(StepFilter::Job).map_err(|_| invalid()),
        Some((job, step)) => {
            let job = job.parse().map_err(|_| invalid())?;
            let step = match step {
                "batch" => StepName::Batch,
                n => StepName::Id(n.parse().map_err(|_| invalid())?),
            };
            Ok(StepFilter::Step(job, step))
        }
    }
}

/// `scontrol show step`: the running steps of running jobs (the batch step, then srun's), in
/// Slurm 22.05's layout (src/api/job_step_info.c); what drover does not track prints as Slurm
/// prints it unset (`Network=(null)`, `SrunHost:Pid=(null):0`).
pub fn steps_text(
    records: &[drover_proto::JobRecord],
    filter: StepFilter,
    utc: i32,
    oneliner: bool,
) -> String {
    let sep = if oneliner { " " } else { "\n   " };
    let end = if oneliner { "\n" } else { "\n\n" };
    let mut out = String::new();
    for r in records.iter().filter(|r| r.state == "RUNNING") {
        let wanted = |name: StepName| match filter {
            StepFilter::All => true,
            StepFilter::Job(j) => j == r.job_id,
            StepFilter::Step(j, s) => j == r.job_id && s == name,
        };
        let head = |id: &str, start: i64| {
            format!(
                "StepId={}.{id} UserId={} StartTime={} TimeLimit=UNLIMITED",
                r.job_id,
                r.uid,
                crate::format::timestamp(start, utc, "Unknown")
            )
        };
        if let Some(b) = r.batch.as_ref().filter(|b| b.state == "RUNNING") {
            if wanted(StepName::Batch) {
                let lines = [
                    head("batch", b.start_time),
                    format!(
                        "State=RUNNING Partition={} NodeList={}",
                        r.partition, b.node
                    ),
                    "Nodes=1 CPUs=0 Tasks=1 Name=batch Network=(null)".to_string(),
                    "TRES=(null)".to_string(),
                    "ResvPorts=(null)".to_string(),
                    "CPUFreqReq=Default".to_string(),
                    "SrunHost:Pid=(null):0".to_string(),
                ];
                out.push_str(&lines.join(sep));
                out.push_str(end);
            }
        }
        for st in r.steps.iter().filter(|s| s.state == "RUNNING") {
            if !wanted(StepName::Id(st.step_id)) {
                continue;
            }
            let lines = [
                head(&st.step_id.to_string(), st.start_time),
                format!(
                    "State=RUNNING Partition={} NodeList={}",
                    r.partition, st.node_list
                ),
                format!(
                    "Nodes={} CPUs={} Tasks={} Name={} Network=(null)",
                    st.num_nodes, st.cpus, st.ntasks, st.name
                ),
                format!("TRES=cpu={},node={}", st.cpus, st.num_nodes),
                "ResvPorts=(null)".to_string(),
                "CPUFreqReq=Default Dist=Block".to_string(),
                "SrunHost:Pid=(null):0".to_string(),
            ];
            out.push_str(&lines.join(sep));
            out.push_str(end);
        }
    }
    if out.is_empty() {
        out = match filter {
            StepFilter::All => "No job steps in the system\n".to_string(),
            StepFilter::Job(j) => format!("Job step {j} not found\n"),
            StepFilter::Step(j, StepName::Batch) => format!("Job step {j}.batch not found\n"),
            StepFilter::Step(j, StepName::Id(s)) => format!("Job step {j}.{s} not found\n"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch step as Slurm 22.05.8 printed it (tests/golden/slurm-22.05.8/scontrol.txt,
    /// `scontrol show step`), and an srun step beside it; `N`, `N.S`, `N.batch` select.
    #[test]
    fn steps_print_in_slurms_layout() {
        let start = 1_795_000_000;
        let record = drover_proto::JobRecord {
            job_id: 1,
            uid: 0,
            state: "RUNNING".into(),
            partition: "bench".into(),
            batch: Some(drover_proto::StepRecord {
                node: "n1".into(),
                state: "RUNNING".into(),
                start_time: start,
                ..Default::default()
            }),
            steps: vec![drover_proto::SrunStepRecord {
                step_id: 0,
                name: "hostname".into(),
                node_list: "n[1-2]".into(),
                num_nodes: 2,
                ntasks: 4,
                cpus: 4,
                start_time: start,
                state: "RUNNING".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = crate::format::timestamp(start, 0, "Unknown");
        let batch = format!(
            "StepId=1.batch UserId=0 StartTime={t} TimeLimit=UNLIMITED\n   State=RUNNING Partition=bench NodeList=n1\n   Nodes=1 CPUs=0 Tasks=1 Name=batch Network=(null)\n   TRES=(null)\n   ResvPorts=(null)\n   CPUFreqReq=Default\n   SrunHost:Pid=(null):0\n\n"
        );
        let all = steps_text(std::slice::from_ref(&record), StepFilter::All, 0, false);
        assert!(all.starts_with(&batch), "{all}");
        assert!(all.contains("StepId=1.0 UserId=0"), "{all}");
        assert!(
            all.contains("Nodes=2 CPUs=4 Tasks=4 Name=hostname Network=(null)"),
            "{all}"
        );
        let one = steps_text(
            std::slice::from_ref(&record),
            parse_step_id(Some("1.0")).unwrap(),
            0,
            true,
        );
        assert!(
            one.starts_with("StepId=1.0 ") && one.ends_with("(null):0\n"),
            "{one}"
        );
        assert_eq!(one.lines().count(), 1);
        assert_eq!(
            steps_text(
                std::slice::from_ref(&record),
                parse_step_id(Some("1.batch")).unwrap(),
                0,
                false
            ),
            batch
        );
        assert_eq!(
            steps_text(
                std::slice::from_ref(&record),
                parse_step_id(Some("1.7")).unwrap(),
                0,
                false
            ),
            "Job step 1.7 not found\n"
        );
        assert_eq!(
            steps_text(&[], StepFilter::All, 0, false),
            "No job steps in the system\n"
        );
        assert!(parse_step_id(Some("x.1")).is_err());
    }

    #[test]
    fn hostlists_match_slurm() {
        // Captured from Slurm 22.05.8 `scontrol show hostnames|hostlist|hostlistsorted`.
        assert_eq!(
            hostnames("n[1-3],x[08-10]").unwrap(),
            "n1\nn2\nn3\nx08\nx09\nx10\n"
        );
        assert_eq!(
            hostlist("n1,n2,n3,n5,x08,x09", false).unwrap(),
            "n[1-3,5],x[08-09]\n"
        );
        assert_eq!(hostlist("n2,n1,n2", false).unwrap(), "n[2,1-2]\n");
        assert_eq!(hostlist("n2,n1,n2,n3", true).unwrap(), "n[1-2,2-3]\n");
        assert_eq!(
            hostnames("").unwrap_err(),
            "scontrol: error: host list is empty\n"
        );
        let mut stdin = "a1\na2 a3\n".as_bytes();
        assert_eq!(host_input(Some("-"), &mut stdin).unwrap(), "a1,a2,a3");
    }

    #[test]
    fn round_trip_through_hostnames_and_hostlist() {
        // Property: compressing the expansion of a compressed list gives it back.
        for expr in ["n[1-3,5]", "x[08-10],y7", "rack[1-2]n[01-04]", "login"] {
            let names = expand(expr).unwrap();
            let again = hostlist(&names.join(","), false).unwrap();
            assert_eq!(expand(again.trim()).unwrap(), names, "{expr}");
        }
    }

    #[test]
    fn show_config_layout() {
        // Layout of Slurm 22.05.8 `scontrol show config`: `%-23s = %s`, a blank line, then
        // the ping lines; long keys push the `=` right (`PriorityWeightFairShare = 1000`).
        let c = ShowConfigReply {
            cluster_name: "drover".into(),
            controllers: vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into()],
            min_job_age_s: 300,
            max_array_size: 1001,
            kill_wait_s: 30,
            slurmd_timeout_s: 300,
            backfill: true,
            bf_window_s: 86_400,
            bf_resolution_s: 60,
            next_job_id: 7,
            boot_time: 1_795_692_529,
            version: "0.1.0".into(),
            weight_age: 1000,
            weight_fairshare: 1000,
            weight_partition: 1000,
            priority_max_age_s: 7 * 86_400,
            priority_decay_half_life_s: 7 * 86_400,
            ..Default::default()
        };
        let text = config_text(
            &c,
            1_795_692_561,
            0,
            "Slurmctld(primary) at 127.0.0.1:7001 is UP\n",
        );
        assert!(text.starts_with("Configuration data as of 2026-11-26T11:29:21\nAccountingStoreFlags    = (null)\nBOOT_TIME               = 2026-11-26T11:28:49\nClusterName             = drover\n"), "{text}");
        let kept = config_text(
            &ShowConfigReply {
                accounting_store_flags: "job_env,job_script".into(),
                ..c.clone()
            },
            1_795_692_561,
            0,
            "",
        );
        assert!(kept.contains("\nAccountingStoreFlags    = job_env,job_script\n"));
        assert!(
            text.contains("\nKillWait                = 30 sec\nMaxArraySize            = 1001\n")
        );
        assert!(text.contains("\nMinJobAge               = 300 sec\n"));
        assert!(text.contains("\nPriorityWeightFairShare = 1000\n"));
        assert!(text.contains("\nPriorityMaxAge          = 7-00:00:00\n"));
        assert!(text.contains("\nSchedulerParameters     = bf_window=1440,bf_resolution=60\n"));
        assert!(text.contains("\nSlurmctldHost[1]        = 127.0.0.1:7002\n"));
        assert!(text.ends_with(
            "SLURM_VERSION           = 0.1.0\n\nSlurmctld(primary) at 127.0.0.1:7001 is UP\n"
        ));
    }

    #[test]
    fn options() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&a(&["-do", "show", "job", "3"])).unwrap();
        assert!(o.details && o.oneliner);
        assert_eq!(o.words, a(&["show", "job", "3"]));
        let o = parse(&a(&["show", "job", "-d", "1"])).unwrap();
        assert!(
            o.details,
            "options after the words count too (glibc permutes)"
        );
        assert_eq!(
            parse(&a(&["--bogus"])).unwrap_err(),
            "scontrol: unrecognized option '--bogus'\nTry \"scontrol --help\" for more information\n"
        );
    }
}
