//! The one `drover` binary: every role and every command (see `drover_cli::dispatch`).

fn main() {
    std::process::exit(drover_cli::dispatch(std::env::args().collect()));
}
