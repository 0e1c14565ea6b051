//! `oxcdctl top -w json` against a live three-member cluster: one sample
//! per member, exactly one leader, every actor of every member with its
//! mailbox depth, message rate and handled count, and an endpoint that
//! does not answer reported as unreachable rather than failing the view.

use std::time::Duration;

use integration::cluster::{Cluster, ClusterOpts};
use integration::{Kind, oxcdctl_binary};
use proto::etcdserverpb::PutRequest;

const ACTORS: [&str; 6] = [
    "apply",
    "lessor",
    "log_writer",
    "raft",
    "transport",
    "watch",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_json_shows_every_member_and_actor() {
    let mut cluster = Cluster::start(Kind::Oxcd, ClusterOpts::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .wait_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let mut kv = cluster.kv(0).await.expect("kv client");
    for i in 0..50 {
        kv.put(PutRequest {
            key: format!("top{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put");
    }
    let mut endpoints = cluster.endpoints();
    endpoints.push("127.0.0.1:1".to_string());
    let out = tokio::process::Command::new(oxcdctl_binary().expect("oxcdctl"))
        .args([
            "top",
            "-w",
            "json",
            "--interval",
            "300ms",
            "--endpoints",
            &endpoints.join(","),
        ])
        .output()
        .await
        .expect("oxcdctl top runs");
    assert!(out.status.success(), "{out:?}");
    let views: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let views = views.as_array().expect("one entry per endpoint");
    assert_eq!(views.len(), 4);
    let (members, dead) = views.split_at(3);
    assert!(dead[0]["unreachable"].is_string(), "{}", dead[0]);
    let leaders = members.iter().filter(|m| m["is_leader"] == true).count();
    assert_eq!(leaders, 1, "{members:?}");
    for m in members {
        assert!(m["unreachable"].is_null(), "{m}");
        assert!(m["raft_applied_index"].as_u64().unwrap_or(0) >= 50, "{m}");
        let actors: Vec<&str> = m["actors"]
            .as_array()
            .expect("actors")
            .iter()
            .filter_map(|a| a["actor"].as_str())
            .collect();
        for actor in ACTORS {
            assert!(actors.contains(&actor), "{actor} missing in {m}");
        }
        let raft = m["actors"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["actor"] == "raft"))
            .expect("raft actor");
        // Raft ticks every heartbeat: it handles messages all the time.
        assert!(
            raft["messages_per_second"].as_f64().unwrap_or(0.0) > 0.0,
            "{raft}"
        );
        assert!(
            raft["messages_total"].as_f64().unwrap_or(0.0) > 0.0,
            "{raft}"
        );
    }
}
