//! `drover-stepd`: a job's supervisor (Slurm's `slurmstepd`). `drover noded` starts it once, as
//! `drover-stepd supervise --zygote --state-dir DIR`, and has it fork a supervisor per job
//! (`drover_node::launcher::Zygote`); `drover-stepd supervise --state-dir DIR --job ID` runs one
//! supervisor directly. The same code as `drover supervise`, in a binary a tenth of the size;
//! the node daemon uses it when it sits beside `drover` (`drover_node::supervisor_exe`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(drover_cli::roles::stepd(&args));
}
