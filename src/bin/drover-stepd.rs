//! `drover-stepd`: a job's supervisor (Slurm's `slurmstepd`), started by `drover noded` once
//! per job as `drover-stepd supervise --state-dir DIR --job ID`. The same code as `drover
//! supervise`, in a binary small enough to start in a fraction of the time; the node daemon
//! uses it when it sits beside `drover` (`drover_node::supervisor_exe`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(drover_cli::roles::stepd(&args));
}
