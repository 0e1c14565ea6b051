//! Seeded differential test of permission checks: etcd 3.4 and oxcd must
//! allow and refuse the same requests, with the same gRPC code and message.
//!
//! 1. Start etcd and oxcd fresh (`--bcrypt-cost=4`, so the many
//!    Authenticate calls stay cheap), add user and role `root` and enable
//!    auth on both ([`enable_auth`]).
//! 2. Set up, as root, the same way on both: users `u0`..`u3`, roles
//!    `r0`..`r3`, random permissions over the differential test's key space
//!    ([`KEYS`]: single keys, ranges, prefixes, from-key, the whole space;
//!    READ, WRITE, READWRITE; overlapping on purpose), random role grants;
//!    each user authenticates on each server and keeps its token.
//! 3. Draw `OXCD_AUTH_PERM_OPS` actions (1500 by default) from the seed
//!    (`OXCD_SEED`, printed; replay with it): the differential test's KV
//!    ops ([`Generator`]: Range, Put, DeleteRange, Txn with compares and
//!    nested txns, Compact, bad inputs), Watch creates, LeaseGrant, puts
//!    with a lease, LeaseRevoke and LeaseTimeToLive of leases with keys
//!    attached, Maintenance and Cluster calls, Authenticate with right and
//!    wrong passwords, and user/role admin calls; each made as root, as a
//!    random user with its token, with no token, or with a forged token.
//!    Root also changes permissions, role grants and passwords as it goes,
//!    so tokens outlive the auth state they were issued under.
//! 4. Each action goes to both servers at once; the answers, with
//!    `cluster_id`, `member_id` and `raft_term` scrubbed and anything that
//!    legitimately differs (tokens, hashes, sizes, remaining TTLs) reduced to
//!    a marker, must be equal. A user whose token was refused as invalid on
//!    etcd (its password changed) authenticates again on both.
//! 5. Then [`edge_acts`] (ranges whose end is not after their key, Alarm
//!    with a forged token) and [`nested_txn_acts`] (the permission check of
//!    ops in a nested txn, which etcd 3.4.23 does not make), by name.
//! 6. Finally the stale-token case ([`stale_token_acts`]): a token taken
//!    before a role change is used after it. etcd 3.4 gives "etcdserver:
//!    revision of auth store is old" only for a token carrying its auth
//!    revision (JWT, see `auth_token`), or when the auth store changes while
//!    a request is in flight (`doSerialize`, and the apply-time check of a
//!    proposed request's header revision); a simple token is checked against
//!    the current revision, so the old token simply gets the new
//!    permissions. A password change then invalidates it ("etcdserver:
//!    invalid auth token").
//!
//! Differences fail the test with the seed, each action and both answers;
//! up to [`MAX_MISMATCHES`] are collected first (the first is the finding,
//! later ones may follow from it). `OXCD_BIN=/usr/bin/etcd`
//! runs it with etcd on both sides.

use std::collections::BTreeMap;
use std::time::Duration;

use integration::auth::{
    Answer, ROOT_PASSWORD, Token, authenticate, enable_auth, show_answer, with_token,
};
use integration::kv_ops::{Generator, KEYS, Op, Outcome, Reply, RpcError, prefix_end};
use integration::{Server, ServerOpts, env_usize, seed_from_env};
use proto::authpb::Permission;
use proto::authpb::permission::Type as PermType;
use proto::etcdserverpb::auth_client::AuthClient;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::request_op::Request as ReqOp;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    AlarmRequest, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserRevokeRoleRequest, Compare, DefragmentRequest, DeleteRangeRequest, HashKvRequest,
    HashRequest, LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, MemberListRequest,
    PutRequest, RangeRequest, RequestOp, ResponseHeader, SnapshotRequest, StatusRequest,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Bound on one request (and on waiting for a watch's first response).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The ordinary users.
const USERS: usize = 4;
/// The roles root hands out.
const ROLES: [&str; 4] = ["r0", "r1", "r2", "r3"];
/// The user (`u4`) of [`nested_txn_acts`], outside the random users.
const NEST_USER: usize = USERS;
/// The user (`u5`) of [`edge_acts`], outside the random users.
const EDGE_USER: usize = USERS + 1;
/// A user root adds and deletes as it goes.
const SPARE_USER: &str = "spare";
/// Lease ids granted explicitly, so both servers hold the same ids.
const LEASE_IDS: [i64; 3] = [7001, 7002, 7003];
/// etcd's text for a token it does not know.
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
/// etcd's text for a request without a token while auth is on.
const USER_EMPTY: &str = "etcdserver: user name is empty";
/// Tokens no server issued: simple-token shaped, and not.
const FORGED_TOKENS: [&str; 2] = ["AAAAAAAAAAAAAAAA.1", "not-a-token"];

/// Who makes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    User(usize),
    NoToken,
    Forged(usize),
}

fn user_name(i: usize) -> String {
    format!("u{i}")
}

/// A user/role admin call.
#[derive(Debug, Clone)]
enum Admin {
    UserAdd(String, String),
    UserGet(String),
    UserList,
    UserDelete(String),
    ChangePassword(String, String),
    GrantRole(String, String),
    RevokeRole(String, String),
    RoleAdd(String),
    RoleGet(String),
    RoleList,
    RoleDelete(String),
    Grant(String, Permission),
    Revoke(String, Vec<u8>, Vec<u8>),
    AuthEnable,
    AuthDisable,
}

/// A Maintenance or Cluster call.
#[derive(Debug, Clone, Copy)]
enum Maint {
    Status,
    Hash,
    HashKv,
    Defragment,
    Snapshot,
    AlarmList,
    MemberList,
}

/// One request of the run.
#[derive(Debug, Clone)]
enum Action {
    Kv(Who, Op),
    Watch(Who, Vec<u8>, Vec<u8>),
    LeaseGrant(Who, i64),
    LeaseAttach(Who, i64, Vec<u8>),
    LeaseRevoke(Who, i64),
    LeaseTimeToLive(Who, i64),
    Admin(Who, Admin),
    Maintenance(Who, Maint),
    Authenticate(String, String),
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Action::Kv(who, op) => format!("{who:?} {}", op.describe()),
            other => format!("{other:?}"),
        }
    }
}

/// One server, and the token each user holds on it.
struct Side {
    server: Server,
    channel: Channel,
    tokens: BTreeMap<String, String>,
    /// The outcome of the last KV op, for the generator to observe.
    last_outcome: Option<Outcome>,
}

impl Side {
    fn token(&self, who: Who) -> Token {
        let held = |name: &str| {
            self.tokens
                .get(name)
                .map(|t| Token::Value(t.clone()))
                .unwrap_or(Token::Absent)
        };
        match who {
            Who::Root => held("root"),
            Who::User(i) => held(&user_name(i)),
            Who::NoToken => Token::Absent,
            Who::Forged(i) => Token::Value(FORGED_TOKENS[i].to_string()),
        }
    }

    async fn run(&mut self, action: &Action) -> Answer {
        match tokio::time::timeout(CALL_TIMEOUT, self.call(action)).await {
            Ok(answer) => answer,
            Err(_) => panic!(
                "{}: no answer within {CALL_TIMEOUT:?} to {}",
                self.server.kind().name(),
                action.describe()
            ),
        }
    }

    async fn call(&mut self, action: &Action) -> Answer {
        let ch = self.channel.clone();
        match action {
            Action::Kv(who, op) => {
                let outcome = kv(ch, op, &self.token(*who)).await;
                self.last_outcome = Some(outcome.clone());
                answer(outcome)
            }
            Action::Watch(who, key, end) => watch(ch, key, end, &self.token(*who)).await,
            Action::LeaseGrant(who, id) => {
                let req = with_token(LeaseGrantRequest { ttl: 600, id: *id }, &self.token(*who));
                LeaseClient::new(ch)
                    .lease_grant(req)
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        format!("granted id={} ttl={} error={:?}", r.id, r.ttl, r.error)
                    })
                    .map_err(RpcError::from)
            }
            Action::LeaseAttach(who, id, key) => {
                let put = PutRequest {
                    key: key.clone(),
                    value: b"leased".to_vec(),
                    lease: *id,
                    ..Default::default()
                };
                answer(kv(ch, &Op::Put(put), &self.token(*who)).await)
            }
            Action::LeaseRevoke(who, id) => {
                let req = with_token(LeaseRevokeRequest { id: *id }, &self.token(*who));
                LeaseClient::new(ch)
                    .lease_revoke(req)
                    .await
                    .map(|r| format!("revoked {}", header(r.into_inner().header)))
                    .map_err(RpcError::from)
            }
            Action::LeaseTimeToLive(who, id) => {
                let req = LeaseTimeToLiveRequest {
                    id: *id,
                    keys: true,
                };
                LeaseClient::new(ch)
                    .lease_time_to_live(with_token(req, &self.token(*who)))
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        let mut keys = r.keys.clone();
                        keys.sort();
                        // The remaining TTL may be read a second apart.
                        let remaining = if r.ttl > 0 {
                            "live".to_string()
                        } else {
                            r.ttl.to_string()
                        };
                        format!(
                            "id={} remaining={remaining} granted={} keys={keys:?}",
                            r.id, r.granted_ttl
                        )
                    })
                    .map_err(RpcError::from)
            }
            Action::Admin(who, admin) => admin_call(ch, admin, &self.token(*who)).await,
            Action::Maintenance(who, maint) => maintenance(ch, *maint, &self.token(*who)).await,
            Action::Authenticate(name, password) => {
                let answer = authenticate(&self.channel, name, password).await;
                answer.map(|token| {
                    self.tokens.insert(name.clone(), token);
                    "token issued".to_string()
                })
            }
        }
    }
}

/// The header with the fields that differ between servers left out.
fn header(h: Option<ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev={}", h.revision),
        None => "no header".to_string(),
    }
}

/// An op's outcome as an [`Answer`].
fn answer(outcome: Outcome) -> Answer {
    match outcome.0 {
        Ok(_) => Ok(outcome.describe()),
        Err(e) => Err(e),
    }
}

/// Sends a KV op with `token`; the outcome has its headers scrubbed.
async fn kv(ch: Channel, op: &Op, token: &Token) -> Outcome {
    let mut kv = KvClient::new(ch);
    let result = match op {
        Op::Put(r) => kv
            .put(with_token(r.clone(), token))
            .await
            .map(|x| Reply::Put(x.into_inner())),
        Op::Range(r) => kv
            .range(with_token(r.clone(), token))
            .await
            .map(|x| Reply::Range(x.into_inner())),
        Op::Delete(r) => kv
            .delete_range(with_token(r.clone(), token))
            .await
            .map(|x| Reply::Delete(x.into_inner())),
        Op::Txn(r) => kv
            .txn(with_token(r.clone(), token))
            .await
            .map(|x| Reply::Txn(x.into_inner())),
        Op::Compact(r) => kv
            .compact(with_token(*r, token))
            .await
            .map(|x| Reply::Compact(x.into_inner())),
    };
    Outcome(result.map_err(RpcError::from)).scrub()
}

/// Opens a watch stream, creates one watcher and describes the first
/// response (or the stream's error).
async fn watch(ch: Channel, key: &[u8], end: &[u8], token: &Token) -> Answer {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        })),
    };
    tx.send(create).await.expect("queue the create request");
    let mut stream = WatchClient::new(ch)
        .watch(with_token(ReceiverStream::new(rx), token))
        .await
        .map_err(RpcError::from)?
        .into_inner();
    let first = stream.message().await.map_err(RpcError::from)?;
    // The request side stays open until the answer is in.
    drop(tx);
    Ok(match first {
        None => "stream ended without a response".to_string(),
        Some(r) => format!(
            "created={} canceled={} reason={:?} id={} compact={} events={} {}",
            r.created,
            r.canceled,
            r.cancel_reason,
            r.watch_id,
            r.compact_revision,
            r.events.len(),
            header(r.header)
        ),
    })
}

async fn admin_call(ch: Channel, admin: &Admin, token: &Token) -> Answer {
    let mut auth = AuthClient::new(ch);
    let t = token;
    let result = match admin.clone() {
        Admin::UserAdd(name, password) => auth
            .user_add(with_token(
                AuthUserAddRequest {
                    name,
                    password,
                    options: None,
                },
                t,
            ))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::UserGet(name) => auth
            .user_get(with_token(AuthUserGetRequest { name }, t))
            .await
            .map(|r| {
                let r = r.into_inner();
                format!("roles={:?} {}", r.roles, header(r.header))
            }),
        Admin::UserList => auth
            .user_list(with_token(AuthUserListRequest {}, t))
            .await
            .map(|r| {
                let r = r.into_inner();
                format!("users={:?} {}", r.users, header(r.header))
            }),
        Admin::UserDelete(name) => auth
            .user_delete(with_token(AuthUserDeleteRequest { name }, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::ChangePassword(name, password) => auth
            .user_change_password(with_token(
                AuthUserChangePasswordRequest { name, password },
                t,
            ))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::GrantRole(user, role) => auth
            .user_grant_role(with_token(AuthUserGrantRoleRequest { user, role }, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::RevokeRole(name, role) => auth
            .user_revoke_role(with_token(AuthUserRevokeRoleRequest { name, role }, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::RoleAdd(name) => auth
            .role_add(with_token(AuthRoleAddRequest { name }, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::RoleGet(role) => auth
            .role_get(with_token(AuthRoleGetRequest { role }, t))
            .await
            .map(|r| {
                let r = r.into_inner();
                format!("perms={:?} {}", r.perm, header(r.header))
            }),
        Admin::RoleList => auth
            .role_list(with_token(AuthRoleListRequest {}, t))
            .await
            .map(|r| {
                let r = r.into_inner();
                format!("roles={:?} {}", r.roles, header(r.header))
            }),
        Admin::RoleDelete(role) => auth
            .role_delete(with_token(AuthRoleDeleteRequest { role }, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::Grant(name, perm) => auth
            .role_grant_permission(with_token(
                AuthRoleGrantPermissionRequest {
                    name,
                    perm: Some(perm),
                },
                t,
            ))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::Revoke(role, key, range_end) => auth
            .role_revoke_permission(with_token(
                AuthRoleRevokePermissionRequest {
                    role,
                    key,
                    range_end,
                },
                t,
            ))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::AuthEnable => auth
            .auth_enable(with_token(AuthEnableRequest {}, t))
            .await
            .map(|r| header(r.into_inner().header)),
        Admin::AuthDisable => auth
            .auth_disable(with_token(AuthDisableRequest {}, t))
            .await
            .map(|r| header(r.into_inner().header)),
    };
    result.map_err(RpcError::from)
}

/// Maintenance and Cluster calls: whether they are allowed, and what of
/// their answer both servers must share (hashes and sizes are
/// implementation details).
async fn maintenance(ch: Channel, maint: Maint, t: &Token) -> Answer {
    let mut m = MaintenanceClient::new(ch.clone());
    let result = match maint {
        Maint::Status => m
            .status(with_token(StatusRequest {}, t))
            .await
            .map(|_| "status".to_string()),
        Maint::Hash => m
            .hash(with_token(HashRequest {}, t))
            .await
            .map(|_| "hash".to_string()),
        Maint::HashKv => m
            .hash_kv(with_token(HashKvRequest { revision: 0 }, t))
            .await
            .map(|r| format!("hashkv compact={}", r.into_inner().compact_revision)),
        Maint::Defragment => m
            .defragment(with_token(DefragmentRequest {}, t))
            .await
            .map(|_| "defragmented".to_string()),
        Maint::Snapshot => match m.snapshot(with_token(SnapshotRequest {}, t)).await {
            Ok(stream) => stream
                .into_inner()
                .message()
                .await
                .map(|first| format!("snapshot first chunk: {}", first.is_some())),
            Err(e) => Err(e),
        },
        Maint::AlarmList => m
            .alarm(with_token(AlarmRequest::default(), t))
            .await
            .map(|r| format!("alarms={}", r.into_inner().alarms.len())),
        Maint::MemberList => ClusterClient::new(ch)
            .member_list(with_token(MemberListRequest::default(), t))
            .await
            .map(|r| format!("members={}", r.into_inner().members.len())),
    };
    result.map_err(RpcError::from)
}

/// A permission's `[key, range_end)`.
type KeyRange = (Vec<u8>, Vec<u8>);

/// The test's picture of the auth state, kept from etcd's answers: the
/// passwords users have, the permissions each role was granted.
struct Model {
    passwords: BTreeMap<String, String>,
    perms: BTreeMap<String, Vec<KeyRange>>,
    password_counter: u64,
}

impl Model {
    fn new() -> Model {
        let mut passwords: BTreeMap<String, String> = (0..USERS)
            .map(|i| (user_name(i), format!("pw-{i}")))
            .collect();
        passwords.insert("root".to_string(), ROOT_PASSWORD.to_string());
        Model {
            passwords,
            perms: BTreeMap::new(),
            password_counter: 0,
        }
    }

    /// Follows an admin call etcd accepted.
    fn observe(&mut self, action: &Action, answer: &Answer) {
        if answer.is_err() {
            return;
        }
        match action {
            Action::Admin(_, Admin::UserAdd(name, pw) | Admin::ChangePassword(name, pw)) => {
                self.passwords.insert(name.clone(), pw.clone());
            }
            Action::Admin(_, Admin::UserDelete(name)) => {
                self.passwords.remove(name);
            }
            Action::Admin(_, Admin::Grant(role, perm)) => {
                let list = self.perms.entry(role.clone()).or_default();
                let range = (perm.key.clone(), perm.range_end.clone());
                if !list.contains(&range) {
                    list.push(range);
                }
            }
            Action::Admin(_, Admin::Revoke(role, key, end)) => {
                if let Some(list) = self.perms.get_mut(role) {
                    list.retain(|(k, e)| (k, e) != (key, end));
                }
            }
            Action::Admin(_, Admin::RoleDelete(role)) => {
                self.perms.remove(role);
            }
            _ => {}
        }
    }
}

/// Draws actions: the KV ops of the differential test plus the auth-specific
/// ones, each with a random requester.
struct Draw {
    rng: StdRng,
    kv: Generator,
}

impl Draw {
    fn who(&mut self) -> Who {
        match self.rng.gen_range(0..20) {
            0..=2 => Who::Root,
            3 => Who::NoToken,
            4 => Who::Forged(self.rng.gen_range(0..FORGED_TOKENS.len())),
            _ => Who::User(self.rng.gen_range(0..USERS)),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        KEYS.choose(&mut self.rng)
            .map(|k| k.to_vec())
            .unwrap_or_default()
    }

    /// A permission range in every form etcdctl and clients grant.
    fn perm_range(&mut self) -> (Vec<u8>, Vec<u8>) {
        let key = self.key();
        match self.rng.gen_range(0..10) {
            0..=2 => (key, Vec::new()),
            3..=4 => {
                let end = prefix_end(&key);
                (key, end)
            }
            5 => (key, vec![0]),
            6 => (vec![0], vec![0]),
            _ => {
                let other = self.key();
                if other > key {
                    (key, other)
                } else if other < key {
                    (other, key)
                } else {
                    (key, Vec::new())
                }
            }
        }
    }

    fn permission(&mut self) -> Permission {
        let (key, range_end) = self.perm_range();
        let perm_type = *[PermType::Read, PermType::Write, PermType::Readwrite]
            .choose(&mut self.rng)
            .unwrap_or(&PermType::Read);
        Permission {
            perm_type: perm_type as i32,
            key,
            range_end,
        }
    }

    fn role(&mut self) -> String {
        if self.rng.gen_range(0..10) == 0 {
            "nosuch".to_string()
        } else {
            ROLES.choose(&mut self.rng).unwrap_or(&"r0").to_string()
        }
    }

    fn user(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0 => "root".to_string(),
            1 => SPARE_USER.to_string(),
            2 => "nobody".to_string(),
            _ => user_name(self.rng.gen_range(0..USERS)),
        }
    }

    /// An admin call; root's changes stay within `u0..u3`, the roles and the
    /// spare user, so the users go on making requests.
    fn admin(&mut self, model: &mut Model) -> Admin {
        match self.rng.gen_range(0..16) {
            0 => Admin::UserAdd(SPARE_USER.to_string(), "spare-pw".to_string()),
            1 => Admin::UserGet(self.user()),
            2 => Admin::UserList,
            3 => Admin::UserDelete(SPARE_USER.to_string()),
            4 => {
                model.password_counter += 1;
                let user = if self.rng.gen_bool(0.8) {
                    user_name(self.rng.gen_range(0..USERS))
                } else {
                    SPARE_USER.to_string()
                };
                Admin::ChangePassword(user, format!("pw-new-{}", model.password_counter))
            }
            5..=6 => Admin::GrantRole(user_name(self.rng.gen_range(0..USERS)), self.role()),
            7 => Admin::RevokeRole(user_name(self.rng.gen_range(0..USERS)), self.role()),
            8 => Admin::RoleAdd(self.role()),
            9 => Admin::RoleGet(self.role()),
            10 => Admin::RoleList,
            11 => Admin::RoleDelete(self.role()),
            12..=13 => Admin::Grant(self.role(), self.permission()),
            14 => {
                let role = self.role();
                let granted = model.perms.get(&role).cloned().unwrap_or_default();
                let (key, end) = match granted.choose(&mut self.rng) {
                    Some(range) if self.rng.gen_bool(0.7) => range.clone(),
                    _ => self.perm_range(),
                };
                Admin::Revoke(role, key, end)
            }
            // Auth goes off now and then (every token is dropped), and
            // comes back on.
            _ => {
                if self.rng.gen_bool(0.7) {
                    Admin::AuthEnable
                } else {
                    Admin::AuthDisable
                }
            }
        }
    }

    fn next(&mut self, model: &mut Model) -> Action {
        let who = self.who();
        let lease = *LEASE_IDS.choose(&mut self.rng).unwrap_or(&LEASE_IDS[0]);
        match self.rng.gen_range(0..100) {
            0..=54 => Action::Kv(who, self.kv.next_op()),
            55..=61 => {
                let (key, end) = self.perm_range();
                Action::Watch(who, key, end)
            }
            62..=63 => Action::LeaseGrant(who, lease),
            64..=67 => Action::LeaseAttach(who, lease, self.key()),
            68..=69 => Action::LeaseRevoke(who, lease),
            70..=71 => Action::LeaseTimeToLive(who, lease),
            72..=77 => {
                let maint = *[
                    Maint::Status,
                    Maint::Hash,
                    Maint::HashKv,
                    Maint::Defragment,
                    Maint::Snapshot,
                    Maint::AlarmList,
                    Maint::MemberList,
                ]
                .choose(&mut self.rng)
                .unwrap_or(&Maint::Status);
                Action::Maintenance(who, maint)
            }
            78..=80 => {
                let name = self.user();
                let password = match model.passwords.get(&name) {
                    Some(pw) if self.rng.gen_bool(0.6) => pw.clone(),
                    _ => "wrong-pw".to_string(),
                };
                Action::Authenticate(name, password)
            }
            81..=89 => {
                // Root's changes move the permission state along; others'
                // attempts are refused (or allowed: UserGet of oneself,
                // RoleGet of one's own role).
                let who = if self.rng.gen_bool(0.6) {
                    Who::Root
                } else {
                    who
                };
                if let Who::User(i) = who
                    && self.rng.gen_bool(0.3)
                {
                    return Action::Admin(who, Admin::UserGet(user_name(i)));
                }
                Action::Admin(who, self.admin(model))
            }
            _ => {
                // Puts by root give the users' reads something to find.
                Action::Kv(Who::Root, self.kv.next_op())
            }
        }
    }
}

/// Step 2 of the module doc: users, roles, permissions and grants, as root.
fn setup_actions(rng: &mut Draw) -> Vec<Action> {
    let root = |admin| Action::Admin(Who::Root, admin);
    let mut acts = Vec::new();
    for i in 0..USERS {
        acts.push(root(Admin::UserAdd(user_name(i), format!("pw-{i}"))));
    }
    for role in ROLES {
        acts.push(root(Admin::RoleAdd(role.to_string())));
        for _ in 0..rng.rng.gen_range(1..=3) {
            let perm = rng.permission();
            acts.push(root(Admin::Grant(role.to_string(), perm)));
        }
    }
    for i in 0..USERS {
        for _ in 0..rng.rng.gen_range(1..=2) {
            let role = ROLES.choose(&mut rng.rng).unwrap_or(&"r0").to_string();
            acts.push(root(Admin::GrantRole(user_name(i), role)));
        }
    }
    for i in 0..USERS {
        acts.push(Action::Authenticate(user_name(i), format!("pw-{i}")));
    }
    for role in ROLES {
        acts.push(root(Admin::RoleGet(role.to_string())));
    }
    acts
}

/// Step 5 of the module doc, for user `u0` (its current token is the one
/// taken before the change).
fn stale_token_acts(model: &Model) -> Vec<Action> {
    let u0 = Who::User(0);
    let key = b"stale-key".to_vec();
    let root = |admin| Action::Admin(Who::Root, admin);
    let password = model.passwords.get("u0").cloned().unwrap_or_default();
    let range = |serializable| {
        Action::Kv(
            u0,
            Op::Range(RangeRequest {
                key: key.clone(),
                serializable,
                ..Default::default()
            }),
        )
    };
    let put = Action::Kv(
        u0,
        Op::Put(PutRequest {
            key: key.clone(),
            value: b"by-old-token".to_vec(),
            ..Default::default()
        }),
    );
    vec![
        Action::Authenticate("u0".to_string(), password),
        range(false),
        root(Admin::RoleAdd("stale".to_string())),
        root(Admin::Grant(
            "stale".to_string(),
            Permission {
                perm_type: PermType::Readwrite as i32,
                key: key.clone(),
                range_end: Vec::new(),
            },
        )),
        root(Admin::GrantRole("u0".to_string(), "stale".to_string())),
        put.clone(),
        range(false),
        range(true),
        Action::Watch(u0, key.clone(), Vec::new()),
        root(Admin::RevokeRole("u0".to_string(), "stale".to_string())),
        range(false),
        range(true),
        put.clone(),
        root(Admin::ChangePassword(
            "u0".to_string(),
            "pw-stale".to_string(),
        )),
        range(false),
        range(true),
        put,
        Action::Watch(u0, key, Vec::new()),
        Action::Admin(u0, Admin::UserGet("u0".to_string())),
    ]
}

/// Edges the random actions reach only now and then, named so a mismatch
/// reads plainly. User `u5` may read and write `[a, c)`:
/// - a range whose end is not after its key (`[b, a)`, `[b, b)`, `[c, a)`)
///   is checked by etcd 3.4 through its interval tree
///   (`adt.IntervalTree.Contains`), which in effect checks the key alone:
///   `[b, a)` and `[b, b)` are allowed (and empty), `[c, a)` is refused; in
///   Range, DeleteRange, a txn's compare and a watch alike. Only in effect:
///   the tree's visit prunes subtrees by comparing their span with the
///   range's end, so with several disjoint permitted ranges a permitted key
///   can still be refused as the start of such a range;
/// - Maintenance.Alarm is not permission-checked, but an invalid token
///   fails it with etcd's raw `Unknown "auth: invalid auth token"`, while
///   no token at all is let through.
fn edge_acts() -> Vec<Action> {
    let read_perm = |key: &[u8], end: &[u8]| Permission {
        perm_type: PermType::Read as i32,
        key: key.to_vec(),
        range_end: end.to_vec(),
    };
    let edge = Who::User(EDGE_USER);
    let root = |admin| Action::Admin(Who::Root, admin);
    let range = |key: &[u8], end: &[u8]| {
        Action::Kv(
            edge,
            Op::Range(RangeRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            }),
        )
    };
    let delete = |key: &[u8], end: &[u8]| {
        Action::Kv(
            edge,
            Op::Delete(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            }),
        )
    };
    let compare = |key: &[u8], end: &[u8]| {
        Action::Kv(
            edge,
            Op::Txn(TxnRequest {
                compare: vec![Compare {
                    key: key.to_vec(),
                    range_end: end.to_vec(),
                    target: CompareTarget::Version as i32,
                    result: CompareResult::Greater as i32,
                    target_union: Some(TargetUnion::Version(0)),
                }],
                ..Default::default()
            }),
        )
    };
    vec![
        root(Admin::UserAdd(user_name(EDGE_USER), "edge-pw".to_string())),
        root(Admin::RoleAdd("edge".to_string())),
        root(Admin::Grant(
            "edge".to_string(),
            Permission {
                perm_type: PermType::Readwrite as i32,
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
            },
        )),
        root(Admin::GrantRole(user_name(EDGE_USER), "edge".to_string())),
        Action::Authenticate(user_name(EDGE_USER), "edge-pw".to_string()),
        range(b"a", b"c"),
        range(b"a", b"d"),
        range(b"b", b"a"),
        range(b"b", b"b"),
        range(b"c", b"a"),
        range(b"c", b"c"),
        delete(b"b", b"a"),
        delete(b"c", b"a"),
        compare(b"b", b"a"),
        compare(b"c", b"a"),
        Action::Watch(edge, b"b".to_vec(), b"a".to_vec()),
        Action::Watch(edge, b"c".to_vec(), b"a".to_vec()),
        // Three disjoint readable ranges: etcd's interval tree roots at
        // [c, d), and a visit for [e1, a) prunes the subtree holding
        // [e, f) (it compares the subtree's span with the range's end, `a`),
        // so that range is refused while [e1, e) is allowed.
        root(Admin::Revoke(
            "edge".to_string(),
            b"a".to_vec(),
            b"c".to_vec(),
        )),
        root(Admin::Grant("edge".to_string(), read_perm(b"a", b"b"))),
        root(Admin::Grant("edge".to_string(), read_perm(b"c", b"d"))),
        root(Admin::Grant("edge".to_string(), read_perm(b"e", b"f"))),
        range(b"e1", b"a"),
        range(b"e1", b"e"),
        range(b"e1", b"e1"),
        range(b"c1", b"a"),
        range(b"a1", b"a"),
        range(b"e1", b""),
        Action::Maintenance(Who::Forged(0), Maint::AlarmList),
        Action::Maintenance(Who::Forged(1), Maint::AlarmList),
        Action::Maintenance(Who::NoToken, Maint::AlarmList),
        Action::Maintenance(edge, Maint::AlarmList),
        root(Admin::UserDelete(user_name(EDGE_USER))),
        root(Admin::RoleDelete("edge".to_string())),
    ]
}

/// etcd 3.4.23 checks the Range, Put and DeleteRange ops of a txn against
/// the requester's permissions, but not the ops of a txn nested in it
/// (`checkTxnReqsPermission` skips `RequestTxn`; later 3.4 releases check
/// them): user `nest`, with no role, is refused a put at the top level and
/// allowed the same put, a read and a delete one level down. Kept apart from
/// the random actions so a server that does check nested ops shows here,
/// by name, rather than as a random mismatch.
fn nested_txn_acts() -> Vec<Action> {
    let nest = Who::User(NEST_USER);
    let root = |admin| Action::Admin(Who::Root, admin);
    let key = b"nested-secret".to_vec();
    let put = RequestOp {
        request: Some(ReqOp::RequestPut(PutRequest {
            key: key.clone(),
            value: b"written-by-nest".to_vec(),
            ..Default::default()
        })),
    };
    let get = RequestOp {
        request: Some(ReqOp::RequestRange(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    };
    let del = RequestOp {
        request: Some(ReqOp::RequestDeleteRange(DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    };
    let nested = |ops: Vec<RequestOp>| {
        Action::Kv(
            nest,
            Op::Txn(TxnRequest {
                success: vec![RequestOp {
                    request: Some(ReqOp::RequestTxn(TxnRequest {
                        success: ops,
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            }),
        )
    };
    vec![
        root(Admin::UserAdd(user_name(NEST_USER), "nest-pw".to_string())),
        Action::Authenticate(user_name(NEST_USER), "nest-pw".to_string()),
        Action::Kv(
            nest,
            Op::Txn(TxnRequest {
                success: vec![put.clone()],
                ..Default::default()
            }),
        ),
        nested(vec![put]),
        nested(vec![get]),
        nested(vec![del]),
        root(Admin::UserDelete(user_name(NEST_USER))),
    ]
}

/// Mismatches collected before the run stops: the first one is the
/// finding; later ones may follow from it (the states drifted apart), and
/// are listed because a refusal that differs does not always move the state.
const MAX_MISMATCHES: usize = 12;

/// Both servers, the model, and the mismatches seen so far.
struct Run {
    seed: u64,
    etcd: Side,
    oxcd: Side,
    model: Model,
    mismatches: Vec<String>,
}

impl Run {
    /// Runs `action` on both, records a difference, and brings the model
    /// and the held tokens along (from etcd's answer).
    async fn step(&mut self, index: usize, action: &Action) -> Answer {
        let (expected, actual) = tokio::join!(self.etcd.run(action), self.oxcd.run(action));
        if expected != actual {
            let state = if self.oxcd.server.is_running() {
                "still running"
            } else {
                "gone (it exited)"
            };
            let perms = self.permissions_of(action).await;
            self.mismatches.push(format!(
                "action #{index} (oxcd {state})\n  action: {}\n  etcd:   {}\n  oxcd:   {}{perms}",
                action.describe(),
                show_answer(&expected),
                show_answer(&actual)
            ));
            if self.mismatches.len() >= MAX_MISMATCHES || !self.oxcd.server.is_running() {
                self.fail();
            }
        }
        self.model.observe(action, &expected);
        expected
    }

    /// The requesting user's roles and their permissions as etcd holds
    /// them, for a mismatch's report (empty for other requesters).
    async fn permissions_of(&mut self, action: &Action) -> String {
        let name = match action {
            Action::Kv(Who::User(i), _)
            | Action::Watch(Who::User(i), ..)
            | Action::LeaseGrant(Who::User(i), _)
            | Action::LeaseAttach(Who::User(i), ..)
            | Action::LeaseRevoke(Who::User(i), _)
            | Action::LeaseTimeToLive(Who::User(i), _)
            | Action::Admin(Who::User(i), _)
            | Action::Maintenance(Who::User(i), _) => user_name(*i),
            _ => return String::new(),
        };
        let root = self.etcd.token(Who::Root);
        let ch = self.etcd.channel.clone();
        let user = admin_call(ch.clone(), &Admin::UserGet(name.clone()), &root).await;
        let mut text = format!("\n  {name} on etcd: {}", show_answer(&user));
        let roles: Vec<String> = ROLES
            .iter()
            .map(|r| r.to_string())
            .filter(|r| user.as_ref().is_ok_and(|u| u.contains(&format!("{r:?}"))))
            .collect();
        for role in roles {
            let perms = admin_call(ch.clone(), &Admin::RoleGet(role.clone()), &root).await;
            text.push_str(&format!("\n    {role}: {}", show_answer(&perms)));
        }
        text
    }

    /// Fails the test with every mismatch seen.
    fn fail(&self) -> ! {
        let seed = self.seed;
        panic!(
            "{} mismatch(es) (seed {seed}; replay with OXCD_SEED={seed}); the first is the finding:\n{}",
            self.mismatches.len(),
            self.mismatches.join("\n")
        );
    }

    /// After a request refused for its token (invalid: the password changed
    /// or auth was disabled; absent: the login failed earlier), the
    /// requester logs in again on both; the logins are compared too. A login
    /// refused (auth is off) leaves the user without a token on both.
    async fn reauthenticate(&mut self, index: usize, action: &Action, answer: &Answer) {
        let who = match action {
            Action::Kv(w, _)
            | Action::Watch(w, ..)
            | Action::LeaseGrant(w, _)
            | Action::LeaseAttach(w, ..)
            | Action::LeaseRevoke(w, _)
            | Action::LeaseTimeToLive(w, _)
            | Action::Admin(w, _)
            | Action::Maintenance(w, _) => *w,
            Action::Authenticate(..) => return,
        };
        let name = match who {
            Who::Root => "root".to_string(),
            Who::User(i) => user_name(i),
            Who::NoToken | Who::Forged(_) => return,
        };
        let refused_for_token =
            |text: &str| text.contains(INVALID_TOKEN) || text.contains(USER_EMPTY);
        let refused = match answer {
            Err(e) => refused_for_token(&e.message),
            // A watch refused for its token is canceled, not failed.
            Ok(text) => refused_for_token(text),
        };
        let Some(password) = self.model.passwords.get(&name).cloned() else {
            return;
        };
        if refused {
            let login = Action::Authenticate(name.clone(), password);
            if self.step(index, &login).await.is_err() {
                self.etcd.tokens.remove(&name);
                self.oxcd.tokens.remove(&name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_checks_match_etcd() {
    let seed = seed_from_env();
    let ops = env_usize("OXCD_AUTH_PERM_OPS", 1500);
    println!("auth_perm: seed {seed} (replay with OXCD_SEED={seed}), {ops} actions");
    let opts = ServerOpts {
        extra_args: vec!["--bcrypt-cost=4".to_string()],
        ..ServerOpts::default()
    };
    let (reference, candidate) = Server::start_pair(opts).await;
    let mut sides = Vec::new();
    for server in [reference, candidate] {
        let channel = server.channel().await.expect("connect");
        let name = server.kind().name();
        enable_auth(&channel)
            .await
            .unwrap_or_else(|e| panic!("{name}: enable auth: {e}"));
        let root = authenticate(&channel, "root", ROOT_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{name}: authenticate root: {e:?}"));
        let tokens = BTreeMap::from([("root".to_string(), root)]);
        sides.push(Side {
            server,
            channel,
            tokens,
            last_outcome: None,
        });
    }
    let mut sides = sides.into_iter();
    let mut run = Run {
        seed,
        etcd: sides.next().expect("etcd"),
        oxcd: sides.next().expect("oxcd"),
        model: Model::new(),
        mismatches: Vec::new(),
    };

    let mut draw = Draw {
        rng: StdRng::seed_from_u64(seed ^ 0x05ee_da17),
        kv: Generator::new(seed),
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut index = 0;
    let setup = setup_actions(&mut draw);
    for action in &setup {
        let answer = run.step(index, action).await;
        assert!(
            answer.is_ok(),
            "setup action #{index} {} failed on etcd: {}",
            action.describe(),
            show_answer(&answer)
        );
        index += 1;
    }
    for _ in 0..ops {
        let action = draw.next(&mut run.model);
        let answer = run.step(index, &action).await;
        if let (Action::Kv(_, op), Some(outcome)) = (&action, run.etcd.last_outcome.take()) {
            draw.kv.observe(op, &outcome);
        }
        *seen.entry(label(&action, &answer)).or_default() += 1;
        run.reauthenticate(index, &action, &answer).await;
        index += 1;
    }
    for action in edge_acts() {
        let answer = run.step(index, &action).await;
        println!(
            "edge #{index}: {} -> {}",
            action.describe(),
            show_answer(&answer)
        );
        index += 1;
    }
    for action in nested_txn_acts() {
        let answer = run.step(index, &action).await;
        println!(
            "nested txn #{index}: {} -> {}",
            action.describe(),
            show_answer(&answer)
        );
        index += 1;
    }
    for action in stale_token_acts(&run.model) {
        let answer = run.step(index, &action).await;
        println!(
            "stale token #{index}: {} -> {}",
            action.describe(),
            show_answer(&answer)
        );
        index += 1;
    }
    for (outcome, n) in &seen {
        println!("  {n:5}  {outcome}");
    }
    if !run.mismatches.is_empty() {
        run.fail();
    }
    assert!(run.etcd.server.is_running(), "etcd exited during the run");
    assert!(run.oxcd.server.is_running(), "oxcd exited during the run");
    println!("auth_perm: {index} actions answered alike");
}

/// A coarse label for the tally printed at the end.
fn label(action: &Action, answer: &Answer) -> String {
    let kind = match action {
        Action::Kv(_, Op::Put(_)) => "put",
        Action::Kv(_, Op::Range(_)) => "range",
        Action::Kv(_, Op::Delete(_)) => "delete",
        Action::Kv(_, Op::Txn(_)) => "txn",
        Action::Kv(_, Op::Compact(_)) => "compact",
        Action::Watch(..) => "watch",
        Action::LeaseGrant(..) => "lease grant",
        Action::LeaseAttach(..) => "put with lease",
        Action::LeaseRevoke(..) => "lease revoke",
        Action::LeaseTimeToLive(..) => "lease ttl",
        Action::Admin(..) => "admin",
        Action::Maintenance(..) => "maintenance",
        Action::Authenticate(..) => "authenticate",
    };
    match answer {
        Ok(text) if text.contains("canceled=true") => format!("{kind} canceled"),
        Ok(_) => format!("{kind} ok"),
        Err(e) => format!("{kind} {:?} {}", e.code, e.message),
    }
}
