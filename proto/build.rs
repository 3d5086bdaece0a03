//! Generates the netmon.v1 code with protox, so no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=netmon");
    let fds = protox::compile(["netmon/v1/netmon.proto"], ["."])?;
    // Served by netmond's gRPC reflection, so grpcurl and friends need no .proto.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("netmon_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
