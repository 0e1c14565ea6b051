//! Bad inputs: oxcd must reject them exactly as etcd 3.4 does (gRPC code and
//! message), and keep serving afterwards.
//!
//! 1. Start etcd (for the expected answers) and oxcd.
//! 2. Send each bad input as raw bytes on a plain gRPC channel to both:
//!    - a Put with a 1.6 MB value: `InvalidArgument` "etcdserver: request is
//!      too large";
//!    - a Put over the 2 MiB gRPC limit: `ResourceExhausted` "grpc: received
//!      message larger than max (<n> vs. 2097152)" with the real size;
//!    - malformed protobuf bodies for `KV/Put` and `KV/Range`: `Internal`,
//!      with etcd's message;
//!    - an unknown method and an unknown service: `Unimplemented`, with
//!      etcd's message.
//! 3. Check oxcd's code against the expected code, and its message against
//!    etcd's byte for byte (and against the documented text where it is
//!    fixed). After every input, a put and a get must still work on both.

use bytes::Bytes;
use integration::kv_ops::RpcError;
use integration::raw::raw_unary;
use integration::{Kind, Server, ServerOpts};
use proto::Message;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use tonic::Code;

/// etcd's gRPC receive limit: max-request-bytes (1.5 MiB) + 512 KiB.
const GRPC_MAX_RECV: usize = 2 * 1024 * 1024;

struct Case {
    name: String,
    path: &'static str,
    body: Vec<u8>,
    code: Code,
    /// The exact message when it is fixed by the reference docs; otherwise
    /// etcd's answer is the reference.
    message: Option<String>,
}

fn put_body(value_len: usize) -> Vec<u8> {
    PutRequest {
        key: b"bad-input/big".to_vec(),
        value: vec![b'x'; value_len],
        ..Default::default()
    }
    .encode_to_vec()
}

async fn send(server: &Server, path: &'static str, body: &[u8]) -> Result<Bytes, RpcError> {
    let channel = server.channel().await.expect("connect");
    let call = raw_unary(channel, path, Bytes::copy_from_slice(body));
    match tokio::time::timeout(std::time::Duration::from_secs(15), call).await {
        Ok(result) => result.map_err(RpcError::from),
        Err(_) => panic!("{} {path}: no answer within 15 s", server.kind().name()),
    }
}

/// A put then a get of the same key, on a new connection.
async fn still_serves(server: &Server, after: &str) {
    let name = server.kind().name();
    let mut kv = server
        .kv()
        .await
        .unwrap_or_else(|e| panic!("{name} after {after}: connect: {e}"));
    let key = b"bad-input/alive".to_vec();
    let value = after.as_bytes().to_vec();
    kv.put(PutRequest {
        key: key.clone(),
        value: value.clone(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{name} after {after}: put failed: {e}"));
    let got = kv
        .range(RangeRequest {
            key,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{name} after {after}: get failed: {e}"))
        .into_inner();
    assert_eq!(
        got.kvs.first().map(|kv| kv.value.clone()),
        Some(value),
        "{name} after {after}: get does not return the put value"
    );
}

async fn run_cases(cases: Vec<Case>) {
    let (reference, candidate) = tokio::join!(
        Server::start(Kind::Etcd, ServerOpts::default()),
        Server::start(Kind::Oxcd, ServerOpts::default())
    );
    let reference = reference.unwrap_or_else(|e| panic!("start etcd: {e}"));
    let candidate = candidate.unwrap_or_else(|e| panic!("start oxcd: {e}"));
    let mut differences = Vec::new();
    for case in &cases {
        let expected = send(&reference, case.path, &case.body).await;
        let actual = send(&candidate, case.path, &case.body).await;
        println!(
            "{} ({} bytes to {}):\n  etcd: {expected:?}\n  oxcd: {actual:?}",
            case.name,
            case.body.len(),
            case.path
        );
        let expected = match expected {
            Err(e) => e,
            Ok(reply) => panic!(
                "{}: etcd accepted the input ({} reply bytes); the case is wrong",
                case.name,
                reply.len()
            ),
        };
        assert_eq!(expected.code, case.code, "{}: etcd's code", case.name);
        if let Some(message) = &case.message {
            assert_eq!(&expected.message, message, "{}: etcd's message", case.name);
        }
        match actual {
            Ok(reply) => differences.push(format!(
                "{}: oxcd accepted the input ({} reply bytes); etcd answers {:?} {:?}",
                case.name,
                reply.len(),
                expected.code,
                expected.message
            )),
            Err(actual) if actual != expected => differences.push(format!(
                "{}: oxcd answers {:?} {:?}; etcd answers {:?} {:?}",
                case.name, actual.code, actual.message, expected.code, expected.message
            )),
            Err(_) => {}
        }
        still_serves(&reference, &case.name).await;
        still_serves(&candidate, &case.name).await;
    }
    assert!(
        differences.is_empty(),
        "{} of {} bad inputs answered differently from etcd:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_rejected_as_etcd_does() {
    let too_large_for_grpc = put_body(2_200_000);
    let grpc_message = format!(
        "grpc: received message larger than max ({} vs. {GRPC_MAX_RECV})",
        too_large_for_grpc.len()
    );
    run_cases(vec![
        Case {
            name: "put with a 1.6 MB value".to_string(),
            path: "/etcdserverpb.KV/Put",
            body: put_body(1_600_000),
            code: Code::InvalidArgument,
            message: Some("etcdserver: request is too large".to_string()),
        },
        Case {
            name: "put over the 2 MiB gRPC limit".to_string(),
            path: "/etcdserverpb.KV/Put",
            body: too_large_for_grpc,
            code: Code::ResourceExhausted,
            message: Some(grpc_message),
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_rejected_as_etcd_does() {
    let mut cases = Vec::new();
    let bodies: [(&str, Vec<u8>); 3] = [
        // Field 1 (key) claims 5 bytes, 1 follows.
        ("truncated length-delimited field", vec![0x0a, 0x05, b'a']),
        // Field 1 with wire type 7, which does not exist.
        ("invalid wire type", vec![0x0f, 0x01]),
        // A varint that never ends.
        ("unterminated varint", vec![0x18, 0xff, 0xff, 0xff]),
    ];
    for path in ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"] {
        for (what, body) in &bodies {
            cases.push(Case {
                name: format!("{}: {what}", path.rsplit('/').next().unwrap_or(path)),
                path,
                body: body.clone(),
                code: Code::Internal,
                message: None,
            });
        }
    }
    run_cases(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_rejected_as_etcd_does() {
    run_cases(vec![
        Case {
            name: "unknown method on KV".to_string(),
            path: "/etcdserverpb.KV/NoSuchMethod",
            body: Vec::new(),
            code: Code::Unimplemented,
            message: Some("unknown method NoSuchMethod for service etcdserverpb.KV".to_string()),
        },
        Case {
            name: "unknown service".to_string(),
            path: "/etcdserverpb.NoSuchService/Range",
            body: Vec::new(),
            code: Code::Unimplemented,
            message: Some("unknown service etcdserverpb.NoSuchService".to_string()),
        },
    ])
    .await;
}
