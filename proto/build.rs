//! Generates the `focal.v1` types and tonic stubs from `proto/focal/v1/*.proto`
//! with a vendored protoc (no system protoc needed), and writes the encoded
//! file descriptor set used by gRPC server reflection.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/focal/v1/envelope.proto",
        "proto/focal/v1/audit.proto",
        "proto/focal/v1/federation.proto",
        "proto/focal/v1/api.proto",
        "proto/focal/v1/content.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("focal_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    Ok(())
}
