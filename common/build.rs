//! Compiles the client API. protoc comes from the `protoc-bin-vendored` crate so that a bare
//! machine needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds the migrations; without this a new file would not be picked up.
    println!("cargo:rerun-if-changed=migrations");
    // The pinned Kafka release lives in kafka/pom.xml only; the environment finds its jars by it.
    println!("cargo:rerun-if-changed=../kafka/pom.xml");
    let pom = std::fs::read_to_string("../kafka/pom.xml")?;
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .ok_or("kafka/pom.xml has no <kafka.version> property")?;
    println!("cargo:rustc-env=TXLAB_KAFKA_VERSION={}", version.trim());
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/order_api.proto",
            "proto/metrics.proto",
            "proto/twopc.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
