//! `drover-supervise supervise --state-dir DIR --job ID`: the job supervisor alone, the same
//! code as `drover supervise`, so that this crate's tests can run the daemon with real
//! supervisors without the `drover` binary.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(dir), Some(job)) = (flag("--state-dir"), flag("--job")) else {
        eprintln!("usage: drover-supervise supervise --state-dir DIR --job ID");
        std::process::exit(2);
    };
    let Ok(job) = job.parse::<u64>() else {
        eprintln!("--job: not a job id: {job}");
        std::process::exit(2);
    };
    if let Err(e) = drover_node::supervise(std::path::Path::new(&dir), job) {
        eprintln!("drover-supervise: error: {e:#}");
        std::process::exit(1);
    }
}
