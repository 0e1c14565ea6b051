//! Wire types for oxcd: etcd's v3 API (same packages, names and field
//! numbers as etcd 3.4) and oxcd's internal protocols.
//!
//! This crate holds generated code, plus the gRPC codec they all use
//! ([`codec`]), which words decode errors as etcd does, and the wording of
//! transport failures ([`errors`]). Modules mirror the proto packages:
//! `etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`, `v3electionpb`, and
//! `internal` (the replicated request envelope, the peer transport and the
//! chaos API).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod codec;
pub mod errors;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod leasepb {
    tonic::include_proto!("leasepb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

pub mod internal {
    tonic::include_proto!("oxcdinternal");
}

/// The compiled `FileDescriptorSet` of every proto above (written by
/// `build.rs`): the JSON gateway reads message shapes from it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/oxcd_descriptor.bin"));

pub use prost;
pub use prost::Message;
