//! etcd 3.4's gateway paths (from its generated `rpc.pb.gw.go`,
//! `v3lock.pb.gw.go` and `v3election.pb.gw.go`): every one is `POST`, under
//! `/v3/` (and `/v3beta/`, which etcd rewrites to `/v3/`).
//!
//! Where two RPCs share a path (`/v3/maintenance/hash` is both `Hash` and
//! `HashKV`), grpc-gateway 1.x serves the first one registered: `Hash`.

/// How the gateway drives an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One request, one response.
    Unary,
    /// One request (the body), a stream of responses.
    ServerStream,
    /// A stream of requests (JSON objects one after another in the body), a
    /// stream of responses.
    BidiStream,
}

/// One gateway path.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The path after `/v3/`.
    pub path: &'static str,
    /// The gRPC service's full name.
    pub service: &'static str,
    /// The method's name in that service.
    pub method: &'static str,
    pub shape: Shape,
}

const fn unary(path: &'static str, service: &'static str, method: &'static str) -> Route {
    Route {
        path,
        service,
        method,
        shape: Shape::Unary,
    }
}

const KV: &str = "etcdserverpb.KV";
const LEASE: &str = "etcdserverpb.Lease";
const CLUSTER: &str = "etcdserverpb.Cluster";
const MAINTENANCE: &str = "etcdserverpb.Maintenance";
const AUTH: &str = "etcdserverpb.Auth";
const LOCK: &str = "v3lockpb.Lock";
const ELECTION: &str = "v3electionpb.Election";

/// Every path etcd 3.4's gateway serves.
pub const ROUTES: &[Route] = &[
    unary("kv/range", KV, "Range"),
    unary("kv/put", KV, "Put"),
    unary("kv/deleterange", KV, "DeleteRange"),
    unary("kv/txn", KV, "Txn"),
    unary("kv/compaction", KV, "Compact"),
    Route {
        path: "watch",
        service: "etcdserverpb.Watch",
        method: "Watch",
        shape: Shape::BidiStream,
    },
    unary("lease/grant", LEASE, "LeaseGrant"),
    unary("lease/revoke", LEASE, "LeaseRevoke"),
    unary("kv/lease/revoke", LEASE, "LeaseRevoke"),
    Route {
        path: "lease/keepalive",
        service: LEASE,
        method: "LeaseKeepAlive",
        shape: Shape::BidiStream,
    },
    unary("lease/timetolive", LEASE, "LeaseTimeToLive"),
    unary("kv/lease/timetolive", LEASE, "LeaseTimeToLive"),
    unary("lease/leases", LEASE, "LeaseLeases"),
    unary("kv/lease/leases", LEASE, "LeaseLeases"),
    unary("cluster/member/add", CLUSTER, "MemberAdd"),
    unary("cluster/member/remove", CLUSTER, "MemberRemove"),
    unary("cluster/member/update", CLUSTER, "MemberUpdate"),
    unary("cluster/member/list", CLUSTER, "MemberList"),
    unary("cluster/member/promote", CLUSTER, "MemberPromote"),
    unary("maintenance/alarm", MAINTENANCE, "Alarm"),
    unary("maintenance/status", MAINTENANCE, "Status"),
    unary("maintenance/defragment", MAINTENANCE, "Defragment"),
    unary("maintenance/hash", MAINTENANCE, "Hash"),
    Route {
        path: "maintenance/snapshot",
        service: MAINTENANCE,
        method: "Snapshot",
        shape: Shape::ServerStream,
    },
    unary("maintenance/transfer-leadership", MAINTENANCE, "MoveLeader"),
    unary("auth/enable", AUTH, "AuthEnable"),
    unary("auth/disable", AUTH, "AuthDisable"),
    unary("auth/authenticate", AUTH, "Authenticate"),
    unary("auth/user/add", AUTH, "UserAdd"),
    unary("auth/user/get", AUTH, "UserGet"),
    unary("auth/user/list", AUTH, "UserList"),
    unary("auth/user/delete", AUTH, "UserDelete"),
    unary("auth/user/changepw", AUTH, "UserChangePassword"),
    unary("auth/user/grant", AUTH, "UserGrantRole"),
    unary("auth/user/revoke", AUTH, "UserRevokeRole"),
    unary("auth/role/add", AUTH, "RoleAdd"),
    unary("auth/role/get", AUTH, "RoleGet"),
    unary("auth/role/list", AUTH, "RoleList"),
    unary("auth/role/delete", AUTH, "RoleDelete"),
    unary("auth/role/grant", AUTH, "RoleGrantPermission"),
    unary("auth/role/revoke", AUTH, "RoleRevokePermission"),
    // etcd's v3lock gateway pattern pushes the literal "lock" twice.
    unary("lock/lock", LOCK, "Lock"),
    unary("lock/unlock", LOCK, "Unlock"),
    unary("election/campaign", ELECTION, "Campaign"),
    unary("election/proclaim", ELECTION, "Proclaim"),
    unary("election/leader", ELECTION, "Leader"),
    Route {
        path: "election/observe",
        service: ELECTION,
        method: "Observe",
        shape: Shape::ServerStream,
    },
    unary("election/resign", ELECTION, "Resign"),
];

/// True for the paths the gateway answers: `/v3`, `/v3/...` and
/// `/v3beta/...` (etcd rewrites the latter to `/v3/` before routing).
pub fn is_gateway(path: &str) -> bool {
    path == "/v3" || path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// Where a gateway path leads.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// The path after `/v3/`, to look up in [`ROUTES`].
    Path(String),
    /// Go's mux redirects to this path first.
    Redirect(String),
}

/// What etcd's HTTP stack makes of a gateway path: `/v3beta/` rewritten to
/// `/v3/`, then Go's `ServeMux` rules: a path that is not clean is
/// redirected to its clean form, `/v3` to `/v3/`.
pub fn route_path(path: &str) -> Routed {
    let path = match path.strip_prefix("/v3beta/") {
        Some(rest) => format!("/v3/{rest}"),
        None => path.to_owned(),
    };
    let clean = clean_path(&path);
    if clean != path {
        return Routed::Redirect(clean);
    }
    if path == "/v3" {
        return Routed::Redirect("/v3/".to_owned());
    }
    Routed::Path(path.strip_prefix("/v3/").unwrap_or_default().to_owned())
}

/// Go's `cleanPath` (net/http): `path.Clean`, keeping a trailing slash.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

/// The route of a gateway path, first match as grpc-gateway's mux picks it.
pub fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_a_method_of_the_descriptors() {
        let pool = super::super::pool();
        for route in ROUTES {
            let service = pool
                .get_service_by_name(route.service)
                .unwrap_or_else(|| panic!("no service {}", route.service));
            let method = service
                .methods()
                .find(|m| m.name() == route.method)
                .unwrap_or_else(|| panic!("no method {}/{}", route.service, route.method));
            let shape = match (method.is_client_streaming(), method.is_server_streaming()) {
                (false, false) => Shape::Unary,
                (false, true) => Shape::ServerStream,
                _ => Shape::BidiStream,
            };
            assert_eq!(shape, route.shape, "{}", route.path);
        }
    }

    #[test]
    fn paths_are_routed_as_etcd_routes_them() {
        let path = |p: &str| Routed::Path(p.to_owned());
        let redirect = |p: &str| Routed::Redirect(p.to_owned());
        assert_eq!(route_path("/v3beta/kv/range"), path("kv/range"));
        assert_eq!(route_path("/v3/watch"), path("watch"));
        assert_eq!(route_path("/v3/kv/range/"), path("kv/range/"));
        assert_eq!(route_path("/v3"), redirect("/v3/"));
        assert_eq!(route_path("/v3//kv/range"), redirect("/v3/kv/range"));
        assert_eq!(route_path("/v3/kv/../kv/range"), redirect("/v3/kv/range"));
        assert_eq!(
            route_path("/v3beta//kv/./range/"),
            redirect("/v3/kv/range/")
        );
        assert!(is_gateway("/v3beta/kv/range"));
        assert!(!is_gateway("/v3x"));
        assert!(!is_gateway("/metrics"));
        assert_eq!(find("maintenance/hash").map(|r| r.method), Some("Hash"));
        assert!(find("kv/range/").is_none());
    }
}
