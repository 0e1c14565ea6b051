//! `oxcdctl top -w json` against a live three-member cluster: one sample
//! per member, exactly one leader, every actor of every member with its
//! mailbox depth, message rate, handled count and restarts (the watch hub
//! of member 0 is killed through the chaos API first: one restart), and an
//! endpoint that does not answer reported as unreachable rather than
//! failing the view.

use std::time::Duration;

use integration::cluster::{Cluster, ClusterOpts};
use integration::{Kind, json_gateway, oxcdctl_binary};
use proto::etcdserverpb::PutRequest;
use proto::internal::KillActorRequest;
use proto::internal::chaos_client::ChaosClient;

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
    let opts = ClusterOpts {
        extra_args: vec!["--enable-chaos".to_string()],
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::start(Kind::Oxcd, opts)
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
    let mut chaos = ChaosClient::new(cluster.channel(0).await.expect("channel"));
    chaos
        .kill_actor(KillActorRequest {
            actor: "watch".to_string(),
        })
        .await
        .expect("kill the watch hub of member 0");
    // Wait (bounded) until the restart is counted, so that top's samples
    // come after it.
    let addr = cluster.client_addr(0);
    let mut counted = false;
    for _ in 0..200 {
        let reply = json_gateway::request(&addr, "GET", "/metrics", &[], b"")
            .await
            .expect("GET /metrics");
        if String::from_utf8_lossy(&reply.body)
            .contains("oxcd_actor_restarts_total{actor=\"watch\"} 1")
        {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "the watch hub's restart never showed in /metrics");
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
    for (i, m) in members.iter().enumerate() {
        assert!(m["unreachable"].is_null(), "{m}");
        let restarts: u64 = m["actors"]
            .as_array()
            .expect("actors")
            .iter()
            .map(|a| a["restarts"].as_u64().expect("restarts"))
            .sum();
        assert_eq!(restarts, u64::from(i == 0), "{m}");
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
