//! scancel, pure: options (src/scancel/opt.c), job filters and the texts scancel prints.
//! `commands::scancel` loads jobs when a filter is given, cancels, and reports.
//!
//! `-s/--signal` sends a signal instead of cancelling: by default to the job's processes but
//! not its batch shell (Slurm's steps), with `-b` to the batch shell only, with `-f` to all.
//! Job ids may name array tasks (`N_3`, `N_[1-3]`); `N` names every task of array N.

use crate::getopt::{self, long, opt, Arg};
use crate::squeue::{parse_state, resolve_user};
use drover_proto::JobInfo;
use drover_scheduler::hostlist;

const OPTIONS: &[getopt::Opt] = &[
    opt('A', "account", Arg::Required, "account"),
    opt('b', "batch", Arg::No, "batch"),
    long("ctld", Arg::No, "ctld"),
    opt('f', "full", Arg::No, "full"),
    opt('H', "hurry", Arg::No, "hurry"),
    long("help", Arg::No, "help"),
    opt('i', "interactive", Arg::No, "interactive"),
    opt('M', "clusters", Arg::Required, "clusters"),
    long("me", Arg::No, "me"),
    opt('n', "name", Arg::Required, "name"),
    long("jobname", Arg::Required, "name"),
    opt('p', "partition", Arg::Required, "partition"),
    opt('q', "qos", Arg::Required, "qos"),
    opt('Q', "quiet", Arg::No, "quiet"),
    opt('R', "reservation", Arg::Required, "reservation"),
    opt('s', "signal", Arg::Required, "signal"),
    long("sibling", Arg::Required, "sibling"),
    opt('t', "state", Arg::Required, "state"),
    opt('u', "user", Arg::Required, "user"),
    long("usage", Arg::No, "usage"),
    opt('v', "verbose", Arg::No, "verbose"),
    opt('V', "version", Arg::No, "version"),
    opt('w', "nodelist", Arg::Required, "nodelist"),
    long("wckey", Arg::Required, "wckey"),
];

pub const USAGE: &str = "Usage: scancel [-A account] [--batch] [--full] [--interactive] [-n job_name]
               [-p partition] [-Q] [-q qos] [-R reservation] [-s signal | integer]
               [-t PENDING | RUNNING | SUSPENDED] [--usage] [-u user_name]
               [--hurry] [-V] [-v] [-w hosts...] [--wckey=wckey] [--me] [job_id[_array_id][.step_id]]
";

/// Linux signal names, numbered from 1 (`sig_name2num`).
const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// `SIGTERM`, `TERM`, `term` or `15` → 15; 0 and unknown names are refused (as by Slurm).
pub fn parse_signal(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    SIGNALS
        .iter()
        .position(|x| *x == name)
        .map(|i| i as u32 + 1)
}

#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// The jobs named (`N`, `N_i`), in order.
    pub job_refs: Vec<drover_proto::JobRef>,
    /// Their job ids (array ids for tasks), for loading and filtering.
    pub job_ids: Vec<u64>,
    pub verbose: bool,
    pub quiet: bool,
    pub interactive: bool,
    /// `-s/--signal` (a validated name or number), or `-b`/`-f` alone (KILL).
    pub signal: Option<String>,
    /// Who gets it: 0 the job's processes but not the batch shell, 1 the batch shell (`-b`),
    /// 2 every process (`-f`).
    pub signal_scope: u32,
    pub version: bool,
    pub usage: bool,
    pub accounts: Vec<String>,
    pub names: Vec<String>,
    pub partitions: Vec<String>,
    pub qos: Vec<String>,
    pub reservation: Option<String>,
    pub wckey: Option<String>,
    pub states: Vec<String>,
    pub uids: Vec<u32>,
    pub user_text: Option<String>,
    pub nodes: Vec<String>,
    pub nodelist_text: Option<String>,
}

impl Opts {
    /// Any option that selects jobs by their properties.
    pub fn has_filters(&self) -> bool {
        !(self.accounts.is_empty()
            && self.names.is_empty()
            && self.partitions.is_empty()
            && self.qos.is_empty()
            && self.states.is_empty()
            && self.uids.is_empty()
            && self.nodes.is_empty()
            && self.reservation.is_none()
            && self.wckey.is_none())
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses scancel's arguments; the error is the full stderr text (exit 1).
pub fn parse(args: &[String], my_uid: u32) -> Result<Opts, String> {
    let p = getopt::parse("scancel", args, OPTIONS)?;
    let mut o = Opts {
        verbose: p.has("verbose"),
        quiet: p.has("quiet"),
        interactive: p.has("interactive"),
        version: p.has("version"),
        usage: p.has("help") || p.has("usage"),
        accounts: p.all("account").iter().flat_map(|v| list(v)).collect(),
        names: p.all("name").iter().flat_map(|v| list(v)).collect(),
        partitions: p.all("partition").iter().flat_map(|v| list(v)).collect(),
        qos: p.all("qos").iter().flat_map(|v| list(v)).collect(),
        reservation: p.last("reservation").map(str::to_string),
        wckey: p.last("wckey").map(str::to_string),
        ..Default::default()
    };
    if p.has("clusters") || p.has("sibling") {
        return Err(
            "scancel: error: drover is one cluster: --clusters/--sibling do not apply\n".into(),
        );
    }
    if let Some(s) = p.last("signal") {
        if parse_signal(s).is_none() {
            return Err(format!("Unknown job signal: {s}\n"));
        }
        o.signal = Some(s.to_string());
    } else if p.has("batch") || p.has("full") {
        o.signal = Some("KILL".to_string());
    }
    if p.has("full") {
        o.signal_scope = 2;
    } else if p.has("batch") {
        o.signal_scope = 1;
    }
    for s in p.all("state").iter().flat_map(|v| list(v)) {
        match parse_state(&s) {
            Some(l) => o.states.push(l.to_string()),
            None => {
                return Err(format!(
                    "Invalid job state specified: {s}\nValid job states are PENDING, RUNNING, and SUSPENDED\n"
                ))
            }
        }
    }
    if let Some(u) = p.last("user") {
        for name in list(u) {
            match resolve_user(&name) {
                Some(uid) => o.uids.push(uid),
                None => return Err(format!("scancel: error: Invalid user name: {name}\n")),
            }
        }
        o.user_text = Some(u.to_string());
    }
    if p.has("me") {
        o.uids.push(my_uid);
        o.user_text = Some(crate::identity::user_name(my_uid));
    }
    if let Some(w) = p.last("nodelist") {
        o.nodes =
            hostlist::expand(w).map_err(|_| format!("scancel: error: Invalid node list: {w}\n"))?;
        o.nodelist_text = Some(w.to_string());
    }
    o.job_refs = crate::control::parse_job_refs(p.words.iter().map(String::as_str))
        .map_err(|e| format!("scancel: error: {e}\n"))?;
    for r in &o.job_refs {
        if !o.job_ids.contains(&r.job_id) {
            o.job_ids.push(r.job_id);
        }
    }
    Ok(o)
}

/// The jobs a filtered scancel acts on: every filter must hold; without `-t`, only active jobs
/// (pending, running, suspended). With ids too, only those ids.
pub fn select(jobs: &[JobInfo], o: &Opts) -> Vec<JobInfo> {
    jobs.iter()
        .filter(|j| {
            o.job_ids.is_empty()
                || o.job_ids.contains(&j.job_id)
                || (j.array_job_id > 0 && o.job_ids.contains(&j.array_job_id))
        })
        .filter(|j| {
            if o.states.is_empty() {
                matches!(j.state.as_str(), "PENDING" | "RUNNING" | "SUSPENDED")
            } else {
                o.states.contains(&j.state)
            }
        })
        .filter(|j| o.uids.is_empty() || o.uids.contains(&j.uid))
        .filter(|j| o.names.is_empty() || o.names.contains(&j.name))
        .filter(|j| o.partitions.is_empty() || o.partitions.contains(&j.partition))
        // drover keeps no accounts, reservations or wckeys (Slurm's (null)); one QOS, normal.
        .filter(|_| o.accounts.is_empty() && o.reservation.is_none() && o.wckey.is_none())
        .filter(|_| o.qos.is_empty() || o.qos.iter().any(|q| q == "normal"))
        .filter(|j| {
            o.nodes.is_empty()
                || hostlist::expand(&j.node_list)
                    .unwrap_or_default()
                    .iter()
                    .any(|n| o.nodes.contains(n))
        })
        .cloned()
        .collect()
}

/// `scancel -v` when no job matched: `No active jobs match ALL job filters, including: …`.
pub fn no_match_text(o: &Opts) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: &[String]| {
        if !v.is_empty() {
            parts.push(format!("{k}={}", v.join(",")));
        }
    };
    add("account", &o.accounts);
    add("job_name", &o.names);
    add(
        "nodelist",
        &o.nodelist_text.iter().cloned().collect::<Vec<_>>(),
    );
    add("partition", &o.partitions);
    add("qos", &o.qos);
    add(
        "reservation",
        &o.reservation.iter().cloned().collect::<Vec<_>>(),
    );
    add("state", &o.states);
    add(
        "user_name",
        &o.user_text.iter().cloned().collect::<Vec<_>>(),
    );
    add("wckey", &o.wckey.iter().cloned().collect::<Vec<_>>());
    let mut s = String::from("scancel: error: No active jobs match ALL job filters, including: ");
    for p in parts {
        s.push_str(&p);
        s.push(' ');
    }
    s.push('\n');
    s
}

/// The `-i` question for one job.
pub fn confirm_prompt(j: &JobInfo) -> String {
    format!(
        "Cancel job_id={} name={} partition={} [y/n]? ",
        j.job_id, j.name, j.partition
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testdata::job;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn jobs() -> Vec<JobInfo> {
        // Slurm 22.05.8 capture: c1 pending, c2 and c3 held, longname_job running on n1.
        let mut running = job(1, "longname_job", "RUNNING", "None", 9);
        running.node_list = "n1".to_string();
        vec![
            running,
            job(5, "c1", "PENDING", "None", 8),
            job(6, "c2", "PENDING", "JobHeldUser", 0),
            job(7, "c3", "PENDING", "JobHeldUser", 0),
            job(4, "done", "COMPLETED", "None", 1),
        ]
    }

    fn ids(a: &[&str]) -> Vec<u64> {
        let o = parse(&args(a), 0).expect("valid options");
        select(&jobs(), &o).iter().map(|j| j.job_id).collect()
    }

    #[test]
    fn filters_select_like_slurm() {
        assert_eq!(ids(&["-n", "c3"]), [7]);
        assert_eq!(ids(&["-u", "root", "-t", "PD", "-n", "c2"]), [6]);
        assert_eq!(ids(&["--me"]), [1, 5, 6, 7], "finished jobs are not active");
        assert_eq!(ids(&["-t", "CD", "-u", "root"]), [4]);
        assert_eq!(ids(&["-w", "n1"]), [1]);
        assert_eq!(
            ids(&["-t", "R", "-w", "n1", "-n", "nomatch"]),
            Vec::<u64>::new()
        );
        assert_eq!(ids(&["-p", "bench", "6", "7"]), [6, 7]);
        assert_eq!(ids(&["-A", "acct"]), Vec::<u64>::new());
        assert_eq!(ids(&["-q", "normal", "-t", "R"]), [1]);
    }

    #[test]
    fn texts_match_slurm() {
        // Captured from Slurm 22.05.8.
        let e = |a: &[&str]| parse(&args(a), 0).unwrap_err();
        assert_eq!(
            e(&["-t", "bogus"]),
            "Invalid job state specified: bogus\nValid job states are PENDING, RUNNING, and SUSPENDED\n"
        );
        assert_eq!(e(&["-s", "FOO", "5"]), "Unknown job signal: FOO\n");
        assert_eq!(e(&["--signal=0", "99"]), "Unknown job signal: 0\n");
        assert_eq!(e(&["1x"]), "scancel: error: Invalid job id 1x\n");
        assert_eq!(
            e(&["-u", "nosuchuser_xyz"]),
            "scancel: error: Invalid user name: nosuchuser_xyz\n"
        );
        assert!(e(&["--bogus"]).starts_with("scancel: unrecognized option '--bogus'\n"));
        let o = parse(&args(&["-w", "n1", "-t", "R", "-v", "-n", "nomatch"]), 0).unwrap();
        assert_eq!(
            no_match_text(&o),
            "scancel: error: No active jobs match ALL job filters, including: job_name=nomatch nodelist=n1 state=RUNNING \n"
        );
        let o = parse(&args(&["-p", "nosuch"]), 0).unwrap();
        assert_eq!(
            no_match_text(&o),
            "scancel: error: No active jobs match ALL job filters, including: partition=nosuch \n"
        );
        assert_eq!(
            confirm_prompt(&jobs()[1]),
            "Cancel job_id=5 name=c1 partition=bench [y/n]? "
        );
    }

    #[test]
    fn signals_parse_with_their_scope() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("usr2"), Some(12));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("0"), None);
        // Signal after the ids (submitit's `scancel <id> --signal SIGTERM`).
        let o = parse(&args(&["12", "--signal", "SIGTERM"]), 0).unwrap();
        assert_eq!(
            (o.job_ids.as_slice(), o.signal.as_deref()),
            (&[12][..], Some("SIGTERM"))
        );
        let o = parse(&args(&["-b", "12"]), 0).unwrap();
        assert_eq!(
            (o.signal.as_deref(), o.signal_scope),
            (Some("KILL"), 1),
            "-b alone kills the batch shell"
        );
        let o = parse(&args(&["-f", "-s", "USR1", "12"]), 0).unwrap();
        assert_eq!((o.signal.as_deref(), o.signal_scope), (Some("USR1"), 2));
        // Array tasks are job references of their own.
        let o = parse(&args(&["12_[1-2],14"]), 0).unwrap();
        assert_eq!(o.job_ids, [12, 14]);
        assert_eq!(o.job_refs.len(), 3);
        assert_eq!(o.job_refs[1].task_id, Some(2));
    }
}
