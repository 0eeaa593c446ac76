//! `drover-supervise supervise --state-dir DIR --job ID`: the job supervisor alone (the code
//! of `drover-stepd`), so that this crate's tests run the daemon with real supervisors
//! without the workspace's binaries.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(drover_node::stepd_main(&args));
}
