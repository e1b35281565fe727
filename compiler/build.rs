//! Generates the ONNX protobuf types (`kiln::onnx::proto`) from the vendored `proto/onnx.proto`.
//!
//! protox parses the file in Rust, so building Kiln needs no `protoc`; prost-build writes the message structs.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
