//! Generates Rust code for the etcd v3 protos and oxcd's internal protos.
//!
//! 1. Point `PROTOC` at the vendored protoc (see below).
//! 2. Generate messages (each with a `prost::Name` impl, so the codec can
//!    look a request type up by its full proto name), clients and servers
//!    using `crate::codec::EtcdCodec`.
//! 3. Write the compiled `FileDescriptorSet` to `$OUT_DIR/oxcd_descriptor.bin`;
//!    the codec embeds it to re-scan undecodable requests the way etcd's
//!    gogoproto code does and word the error as etcd does.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a fresh machine needs
//! nothing installed. `PROTOC` is set only inside this build script's process:
//! exporting a non-3.x protoc globally would break raft-proto's own build.

fn main() {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
        // SAFETY: build scripts are single-threaded; nothing else reads the
        // environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc)
        };
    }
    let protos = [
        "etcd/kv.proto",
        "etcd/lease.proto",
        "etcd/auth.proto",
        "etcd/rpc.proto",
        "etcd/v3lock.proto",
        "etcd/v3election.proto",
        "internal/raft_request.proto",
        "internal/peer.proto",
        "internal/chaos.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::codec::EtcdCodec")
        .file_descriptor_set_path(out_dir.join("oxcd_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])
        .expect("compile protos");
}
