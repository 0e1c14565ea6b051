//! Member and cluster ids, derived as etcd derives them, so the same
//! `--initial-cluster` and `--initial-cluster-token` give the same ids on
//! every member (and the same ids etcd would print).
//!
//! 1. A member id is the first 8 bytes (big endian) of
//!    sha1(sorted peer URLs joined with "" + cluster token).
//! 2. The cluster id is the first 8 bytes of sha1 over the sorted member ids,
//!    each as 8 big-endian bytes.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// The ids a member keeps across restarts (`member/identity.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// True for a member that joined an existing cluster (its first start
    /// had `--initial-cluster-state existing`): it never founds a log.
    #[serde(default)]
    pub joined: bool,
}

/// The founding members of `--initial-cluster` and the ids of the one
/// called `name` (the server at its first start, `snapshot restore` for the
/// data dir it writes).
pub fn founding_identity(
    spec: &str,
    token: &str,
    name: &str,
) -> Result<(Identity, Vec<InitialMember>), String> {
    let members = parse_initial_cluster(spec, token)?;
    let me = members.iter().find(|m| m.name == name).ok_or_else(|| {
        format!("couldn't find local name {name:?} in the initial cluster configuration")
    })?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let identity = Identity {
        member_id: me.id,
        cluster_id: cluster_id(&ids),
        joined: false,
    };
    Ok((identity, members))
}

/// etcd's bootstrap check (`advertiseMatchesCluster`): the local member's
/// `--initial-cluster` URLs must be exactly `--initial-advertise-peer-urls`,
/// in any order, after resolving host names; otherwise its error text.
pub fn check_advertised(member: &InitialMember, advertised: &[String]) -> Result<(), String> {
    let mut cluster = member.peer_urls.clone();
    let mut own = advertised.to_vec();
    cluster.sort();
    own.sort();
    if cluster == own {
        return Ok(());
    }
    let resolve = |urls: &[String]| -> Vec<String> {
        let mut resolved: Vec<String> = urls.iter().map(|u| resolve_url(u)).collect();
        resolved.sort();
        resolved
    };
    let (cluster_resolved, own_resolved) = (resolve(&cluster), resolve(&own));
    if cluster_resolved == own_resolved {
        return Ok(());
    }
    let listed: Vec<String> = member
        .peer_urls
        .iter()
        .map(|u| format!("{}={u}", member.name))
        .collect();
    Err(format!(
        "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} (resolved urls: {:?} != {:?})",
        listed.join(","),
        advertised.join(","),
        own_resolved.join(","),
        cluster_resolved.join(","),
    ))
}

/// `url` with its host resolved to an address (the URL unchanged when it
/// does not parse or resolve), as etcd compares peer URLs.
fn resolve_url(url: &str) -> String {
    use std::net::ToSocketAddrs;
    let Ok(parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return url.to_string();
    };
    // Go's resolver (net.ResolveTCPAddr) prefers an IPv4 address.
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .collect();
    match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        Some(addr) => format!("{}://{addr}", parsed.scheme()),
        None => url.to_string(),
    }
}

/// One member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub id: u64,
}

/// Parses `name=url,name=url,...` (a name may appear several times, one per
/// peer URL) and derives each member's id.
pub fn parse_initial_cluster(spec: &str, token: &str) -> Result<Vec<InitialMember>, String> {
    let mut members: Vec<InitialMember> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster entry {part:?} is not name=peerURL"))?;
        url::Url::parse(url).map_err(|e| format!("--initial-cluster URL {url:?}: {e}"))?;
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => members.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url.to_string()],
                id: 0,
            }),
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    for m in &mut members {
        m.id = member_id(&m.peer_urls, token);
    }
    Ok(members)
}

/// etcd's `computeMemberId` without a timestamp.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut input = urls.concat().into_bytes();
    input.extend_from_slice(token.as_bytes());
    first_u64(&Sha1::digest(&input))
}

/// The id of a member added at run time (MemberAdd): etcd's
/// `computeMemberId` with an empty cluster name and the Unix time in
/// seconds, so the same URLs added again later get a new id.
pub fn added_member_id(peer_urls: &[String], now_secs: u64) -> u64 {
    member_id(peer_urls, &now_secs.to_string())
}

/// Peer URLs of a MemberAdd or MemberUpdate, checked as etcd's
/// `types.NewURLs` checks them (at least one; each http, https, unix or
/// unixs, with host:port and no path) and sorted, or etcd's `given member
/// URLs are invalid`.
pub fn parse_member_urls(urls: &[String]) -> Result<Vec<String>, storage::EtcdError> {
    let bad = storage::EtcdError::MemberBadUrls;
    if urls.is_empty() {
        return Err(bad);
    }
    let mut out = Vec::with_capacity(urls.len());
    for raw in urls {
        let trimmed = raw.trim();
        let parsed = url::Url::parse(trimmed).map_err(|_| bad.clone())?;
        if !matches!(parsed.scheme(), "http" | "https" | "unix" | "unixs") {
            return Err(bad);
        }
        // host:port, with the port written out (Go's SplitHostPort).
        let authority = trimmed.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !has_port || !matches!(parsed.path(), "" | "/") || trimmed.ends_with('/') {
            return Err(bad);
        }
        out.push(trimmed.to_string());
    }
    out.sort();
    Ok(out)
}

/// etcd's cluster id over the founding members.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_u64(&Sha1::digest(&bytes))
}

fn first_u64(hash: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(b)
}

/// The first start of a member with `--initial-cluster-state existing`
/// (etcd's `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs`):
/// ask the other members of `--initial-cluster`, over their peer URLs, for
/// the cluster's members; the cluster must list exactly the members of
/// `--initial-cluster`, matched by peer URLs, and this member among them (it
/// was added with MemberAdd first). Its id and the cluster id come from the
/// answer.
pub async fn join_existing(
    config: &crate::config::Config,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<(Identity, Vec<proto::etcdserverpb::Member>), String> {
    let local = parse_initial_cluster(&config.initial_cluster, &config.initial_cluster_token)?;
    let me = local
        .iter()
        .find(|m| m.name == config.name)
        .ok_or_else(|| {
            format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                config.name
            )
        })?;
    check_advertised(me, &config.initial_advertise_peer_urls)?;
    let urls: Vec<String> = local
        .iter()
        .filter(|m| m.name != config.name)
        .flat_map(|m| m.peer_urls.iter().cloned())
        .collect();
    let remote = fetch_members(&urls, tls).await.ok_or_else(|| {
        "cannot fetch cluster info from peer urls: could not retrieve cluster information \
         from the given URLs"
            .to_string()
    })?;
    let sorted = |urls: &[String]| {
        let mut u = urls.to_vec();
        u.sort();
        u
    };
    if remote.members.len() != local.len() {
        return Err(format!(
            "error validating peerURLs {}: member count is unequal",
            describe(&remote.members)
        ));
    }
    let mut my_id = None;
    for l in &local {
        let matched = remote
            .members
            .iter()
            .find(|r| sorted(&r.peer_ur_ls) == sorted(&l.peer_urls))
            .ok_or_else(|| {
                format!(
                    "error validating peerURLs {}: unmatched member while checking PeerURLs",
                    describe(&remote.members)
                )
            })?;
        if l.name == config.name {
            my_id = Some(matched.id);
        }
    }
    let member_id = my_id.ok_or("member is not listed by the existing cluster")?;
    tracing::info!(
        member = %format!("{member_id:x}"),
        cluster = %format!("{:x}", remote.cluster_id),
        "joining an existing cluster"
    );
    Ok((
        Identity {
            member_id,
            cluster_id: remote.cluster_id,
            joined: true,
        },
        remote.members,
    ))
}

/// The first answer of a peer at `urls` to `Peer.Members`.
async fn fetch_members(
    urls: &[String],
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Option<proto::internal::MembersResponse> {
    use proto::internal::peer_client::PeerClient;
    for url in urls {
        let mut endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(e) => e.connect_timeout(std::time::Duration::from_secs(2)),
            Err(_) => continue,
        };
        if url.starts_with("https://")
            && let Some(tls) = &tls
        {
            endpoint = match endpoint.tls_config(tls.clone()) {
                Ok(e) => e,
                Err(_) => continue,
            };
        }
        let Ok(channel) = endpoint.connect().await else {
            tracing::warn!(%url, "could not reach a peer for the member list");
            continue;
        };
        let mut client = PeerClient::new(channel);
        let request = tonic::Request::new(proto::internal::MembersRequest {});
        match tokio::time::timeout(std::time::Duration::from_secs(5), client.members(request)).await
        {
            Ok(Ok(answer)) => return Some(answer.into_inner()),
            Ok(Err(status)) => tracing::warn!(%url, %status, "peer refused the member list"),
            Err(_) => tracing::warn!(%url, "peer did not answer the member list in time"),
        }
    }
    None
}

/// `name=url,...` of `members`, as etcd prints a cluster in its errors.
fn describe(members: &[proto::etcdserverpb::Member]) -> String {
    members
        .iter()
        .flat_map(|m| m.peer_ur_ls.iter().map(move |u| format!("{}={u}", m.name)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {

    #[test]
    fn advertised_urls_must_match_the_initial_cluster_entry() {
        let members =
            parse_initial_cluster("e=http://127.0.0.1:2380,e=http://127.0.0.1:2480", "t").unwrap();
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let e = &members[0];
        assert_eq!(
            check_advertised(
                e,
                &urls(&["http://127.0.0.1:2480", "http://127.0.0.1:2380"])
            ),
            Ok(())
        );
        // A name that resolves to the same address is the same URL.
        let local = &parse_initial_cluster("d=http://localhost:2380", "t").unwrap()[0];
        assert_eq!(
            check_advertised(local, &urls(&["http://127.0.0.1:2380"])),
            Ok(())
        );
        // etcd 3.4.23's text for the same mismatch.
        let one = &parse_initial_cluster("e=http://127.0.0.1:42380", "t").unwrap()[0];
        assert_eq!(
            check_advertised(one, &urls(&["http://127.0.0.1:42381"])),
            Err(
                "--initial-cluster has e=http://127.0.0.1:42380 but missing from \
                 --initial-advertise-peer-urls=http://127.0.0.1:42381 (resolved urls: \
                 \"http://127.0.0.1:42381\" != \"http://127.0.0.1:42380\")"
                    .to_string()
            )
        );
    }
    use super::*;

    #[test]
    fn default_single_member_ids_match_etcd() {
        // etcd 3.4 with default flags reports member 8e9e05c52164694d in
        // cluster cdf818194e3a8c32.
        let members =
            parse_initial_cluster("default=http://localhost:2380", "etcd-cluster").unwrap();
        assert_eq!(members[0].id, 0x8e9e_05c5_2164_694d);
        assert_eq!(cluster_id(&[members[0].id]), 0xcdf8_1819_4e3a_8c32);
    }

    #[test]
    fn member_urls_are_checked_as_etcd_does() {
        let ok =
            |u: &[&str]| parse_member_urls(&u.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            ok(&["http://127.0.0.1:2480", "http://127.0.0.1:2380"]),
            Ok(vec![
                "http://127.0.0.1:2380".to_string(),
                "http://127.0.0.1:2480".to_string()
            ])
        );
        assert!(ok(&["https://node-1:2380"]).is_ok());
        for bad in [
            "notaurl",
            "http://127.0.0.1",
            "ftp://127.0.0.1:2380",
            "http://127.0.0.1:2380/path",
        ] {
            assert_eq!(ok(&[bad]), Err(storage::EtcdError::MemberBadUrls), "{bad}");
        }
        assert_eq!(ok(&[]), Err(storage::EtcdError::MemberBadUrls));
    }

    #[test]
    fn added_ids_depend_on_time() {
        let urls = vec!["http://127.0.0.1:2380".to_string()];
        assert_ne!(added_member_id(&urls, 1), added_member_id(&urls, 2));
        assert_eq!(added_member_id(&urls, 7), member_id(&urls, "7"));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(parse_initial_cluster("", "t").is_err());
        assert!(parse_initial_cluster("a", "t").is_err());
        assert!(parse_initial_cluster("a=not a url", "t").is_err());
    }

    #[test]
    fn ids_do_not_depend_on_url_order() {
        let a = member_id(&["http://b:2".into(), "http://a:1".into()], "t");
        let b = member_id(&["http://a:1".into(), "http://b:2".into()], "t");
        assert_eq!(a, b);
    }
}
