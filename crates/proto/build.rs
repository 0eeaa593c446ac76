//! Compiles `proto/drover/v1/*.proto` with protox (pure Rust), so that `cargo build` needs no
//! system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["ctl.proto", "node.proto", "raft.proto", "step.proto"]
        .map(|f| root.join("drover/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
