//! `oxcdctl chaos`: faults injected into a running cluster through the
//! members' chaos API (`oxcdinternal.Chaos`, served only by members started
//! with `--enable-chaos`).
//!
//! 1. Connect: every endpoint is `host:port`, `http://host:port` or
//!    `https://host:port`. A scheme-less endpoint is dialled over TLS when
//!    `--cacert` or `--cert` is given, as etcdctl does; `--cacert` is the CA
//!    the server's certificate must chain to, `--cert`/`--key` the client
//!    certificate a member with `--client-cert-auth` asks for.
//! 2. Names: `--peer` and `--isolate` take member names or hex member ids,
//!    resolved against `Cluster.MemberList`, asked of the endpoints in turn
//!    until one answers (a member answers it from its own state, so an
//!    isolated member answers too).
//! 3. Targets: `partition` and `heal` act on every member of the cluster,
//!    reached at the client URLs it advertises, whichever endpoints were
//!    given (a partition is made and undone on both sides). Every other
//!    action acts on each `--endpoints` entry, in order.
//! 4. `partition --isolate S` sends each member in `S` a `Partition` naming
//!    every member outside `S`, and each member outside `S` one naming `S`:
//!    the set is cut from the rest in both directions (each member filters
//!    its own links only).
//! 5. Output: one line per member acted on, `<target>: <the member's
//!    message>`. A member that fails or refuses is reported on stderr in
//!    grpc-go's wording (`rpc error: code = ... desc = ...`) and the others
//!    are still tried; then the command fails (exit status 1).

use actors::chaos::ActorKind;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::{Member, MemberListRequest};
use proto::internal::chaos_client::ChaosClient;
use proto::internal::{
    CrashRequest, Direction, FailFsyncRequest, FaultsRequest, HealRequest, KillActorRequest,
    LinkFaultRequest, PartitionRequest, PauseApplyRequest, PlantBugRequest, ResumeApplyRequest,
    SlowDiskRequest,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::CtlError;
use super::bench_args::parse_duration;
use super::client::status_message;

/// The bugs a member can plant.
const BUGS: [&str; 1] = ["lose-writes"];

/// `oxcdctl chaos`'s flags and action.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub action: ChaosAction,
}

/// How members are reached (given before or after the action).
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Client URLs of the members (host:port, http:// or https://), comma
    /// separated.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// The CA certificate (PEM) the members' certificates must chain to.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// The client certificate (PEM), for members with --client-cert-auth.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Time allowed to open each connection.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Time allowed for each call.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub command_timeout: Duration,
}

/// What to break (or mend).
#[derive(Debug, Clone, Subcommand)]
pub enum ChaosAction {
    /// Stops one actor of each member; its supervisor restarts it.
    KillActor {
        /// raft, log_writer, transport, apply, watch or lessor.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(ActorKind::ALL.map(ActorKind::name)))]
        actor: String,
    },
    /// Cuts a set of members from the rest of the cluster, both ways.
    Partition {
        /// The members on one side (names or hex ids), comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        isolate: Vec<String>,
    },
    /// Clears every link fault and partition on every member.
    Heal,
    /// Delays the raft messages between each member and a peer.
    Delay {
        /// The peer (name or hex id); `all` for every peer.
        #[arg(long, default_value = "all")]
        peer: String,
        /// Which messages: received from the peer, sent to it, or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
        /// Milliseconds added to every message batch (0 clears the fault).
        #[arg(long)]
        ms: u32,
    },
    /// Drops raft messages between each member and a peer at random.
    Drop {
        /// The peer (name or hex id); `all` for every peer.
        #[arg(long, default_value = "all")]
        peer: String,
        /// Which messages: received from the peer, sent to it, or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
        /// Probability in [0, 1] that a message batch is dropped (0 clears
        /// the fault).
        #[arg(long, value_parser = parse_probability)]
        probability: f64,
        /// Seed of the drop draws (random, and printed, if not given).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Pauses applying committed entries on each member.
    PauseApply {
        /// The pause ends by itself after this long (at most 10m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        max: Duration,
    },
    /// Resumes applying on each member.
    ResumeApply,
    /// Slows every raft log write of each member (0 clears it).
    SlowDisk {
        /// Milliseconds added before each fsync.
        #[arg(long)]
        ms: u32,
    },
    /// Makes the next raft log writes of each member fail; the member then
    /// stops without acknowledging what they carried.
    FailFsync {
        /// How many writes fail.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Ends each member's process at once, as a crash would.
    Crash,
    /// Plants a bug, to prove that a checker catches it.
    PlantBug {
        /// lose-writes: puts are answered but not written to the store.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(BUGS))]
        bug: String,
        /// How many times the bug bites.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Lists the faults active on each member.
    Faults,
}

/// `--direction`, in etcd-ish words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    In,
    Out,
    Both,
}

impl DirectionArg {
    fn wire(self) -> Direction {
        match self {
            DirectionArg::In => Direction::Inbound,
            DirectionArg::Out => Direction::Outbound,
            DirectionArg::Both => Direction::Both,
        }
    }
}

/// Errors of `oxcdctl chaos`.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A certificate or key file could not be read.
    #[error("failed to read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No endpoint answered `MemberList`.
    #[error("cannot list the cluster's members: {0}")]
    MemberList(String),
    /// A `--peer` or `--isolate` entry names no member.
    #[error("no member is named {name:?} or has that hex id (members: {known})")]
    UnknownMember { name: String, known: String },
    /// `--isolate` names every member, so there is no other side.
    #[error("--isolate names every member: nothing is left on the other side")]
    NothingLeft,
    /// Some members failed or refused (each reported on stderr).
    #[error("{failed} of {total} member(s) failed or refused")]
    Failed { failed: usize, total: usize },
}

/// One chaos call, built before any member is reached.
#[derive(Debug, Clone)]
enum Call {
    KillActor(KillActorRequest),
    LinkFault(LinkFaultRequest),
    Partition(PartitionRequest),
    Heal,
    PauseApply(PauseApplyRequest),
    ResumeApply,
    SlowDisk(SlowDiskRequest),
    FailFsync(FailFsyncRequest),
    Crash,
    PlantBug(PlantBugRequest),
    Faults,
}

/// Where one call goes: a label for the output and the URLs to try.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    label: String,
    urls: Vec<String>,
}

/// Runs `oxcdctl chaos`.
pub async fn run(args: ChaosArgs) -> Result<(), CtlError> {
    let dialer = Dialer::new(&args.conn)?;
    let plan = plan(&dialer, &args.action).await?;
    let total = plan.len();
    let mut failed = 0;
    for (target, call) in plan {
        match dialer.send(&target, call).await {
            Ok(lines) => {
                for line in lines {
                    println!("{}: {line}", target.label);
                }
            }
            Err(e) => {
                eprintln!("{}: {e}", target.label);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(ChaosError::Failed { failed, total }.into());
    }
    Ok(())
}

/// Every (target, call) of `action` (module doc, steps 2 to 4).
async fn plan(dialer: &Dialer, action: &ChaosAction) -> Result<Vec<(Target, Call)>, CtlError> {
    let each = |call: Call| -> Vec<(Target, Call)> {
        dialer
            .endpoints
            .iter()
            .map(|ep| {
                let target = Target {
                    label: ep.clone(),
                    urls: vec![dialer.uri(ep)],
                };
                (target, call.clone())
            })
            .collect()
    };
    let call = match action {
        ChaosAction::KillActor { actor } => Call::KillActor(KillActorRequest {
            actor: actor.clone(),
        }),
        ChaosAction::Partition { isolate } => {
            let members = dialer.members().await?;
            let isolated = isolate
                .iter()
                .map(|name| resolve(name, &members))
                .collect::<Result<BTreeSet<u64>, ChaosError>>()?;
            let cuts = partition_plan(&members, &isolated)?;
            return Ok(members
                .iter()
                .zip(cuts)
                .map(|(m, peers)| {
                    (
                        member_target(m),
                        Call::Partition(PartitionRequest { peers }),
                    )
                })
                .collect());
        }
        ChaosAction::Heal => {
            let members = dialer.members().await?;
            return Ok(members
                .iter()
                .map(|m| (member_target(m), Call::Heal))
                .collect());
        }
        ChaosAction::Delay {
            peer,
            direction,
            ms,
        } => Call::LinkFault(LinkFaultRequest {
            peer: dialer.peer(peer).await?,
            direction: direction.wire() as i32,
            drop_probability: 0.0,
            delay_ms: *ms,
            seed: 0,
        }),
        ChaosAction::Drop {
            peer,
            direction,
            probability,
            seed,
        } => {
            let seed = seed.unwrap_or_else(rand::random);
            eprintln!("drop: seed {seed}");
            Call::LinkFault(LinkFaultRequest {
                peer: dialer.peer(peer).await?,
                direction: direction.wire() as i32,
                drop_probability: *probability,
                delay_ms: 0,
                seed,
            })
        }
        ChaosAction::PauseApply { max } => Call::PauseApply(PauseApplyRequest {
            max_ms: u32::try_from(max.as_millis()).unwrap_or(u32::MAX),
        }),
        ChaosAction::ResumeApply => Call::ResumeApply,
        ChaosAction::SlowDisk { ms } => Call::SlowDisk(SlowDiskRequest { delay_ms: *ms }),
        ChaosAction::FailFsync { count } => Call::FailFsync(FailFsyncRequest { count: *count }),
        ChaosAction::Crash => Call::Crash,
        ChaosAction::PlantBug { bug, count } => Call::PlantBug(PlantBugRequest {
            bug: bug.clone(),
            count: *count,
        }),
        ChaosAction::Faults => Call::Faults,
    };
    Ok(each(call))
}

/// A member as a target: its name and id, at its client URLs.
fn member_target(m: &Member) -> Target {
    Target {
        label: format!("{} ({:x})", m.name, m.id),
        urls: m.client_ur_ls.clone(),
    }
}

/// The member `spec` names: a name, or a hex id (step 2).
fn resolve(spec: &str, members: &[Member]) -> Result<u64, ChaosError> {
    let spec = spec.trim();
    if let Some(m) = members.iter().find(|m| m.name == spec) {
        return Ok(m.id);
    }
    if let Ok(id) = u64::from_str_radix(spec, 16)
        && members.iter().any(|m| m.id == id)
    {
        return Ok(id);
    }
    Err(ChaosError::UnknownMember {
        name: spec.to_string(),
        known: members
            .iter()
            .map(|m| format!("{} {:x}", m.name, m.id))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// For each member in order, the peers it must cut so that `isolated` is
/// split from the rest (step 4).
fn partition_plan(
    members: &[Member],
    isolated: &BTreeSet<u64>,
) -> Result<Vec<Vec<u64>>, ChaosError> {
    let (inside, outside): (Vec<u64>, Vec<u64>) = members
        .iter()
        .map(|m| m.id)
        .partition(|id| isolated.contains(id));
    if outside.is_empty() {
        return Err(ChaosError::NothingLeft);
    }
    Ok(members
        .iter()
        .map(|m| {
            if isolated.contains(&m.id) {
                outside.clone()
            } else {
                inside.clone()
            }
        })
        .collect())
}

/// Opens connections as the flags say (step 1).
struct Dialer {
    endpoints: Vec<String>,
    tls: Option<ClientTlsConfig>,
    dial_timeout: Duration,
    command_timeout: Duration,
}

impl Dialer {
    fn new(conn: &ConnArgs) -> Result<Dialer, CtlError> {
        if conn.endpoints.iter().all(|e| e.trim().is_empty()) {
            return Err(CtlError::InvalidArgument("--endpoints is empty".into()));
        }
        let tls = if conn.cacert.is_some() || conn.cert.is_some() {
            let mut config = ClientTlsConfig::new();
            config = match &conn.cacert {
                Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
                None => config.with_enabled_roots(),
            };
            if let (Some(cert), Some(key)) = (&conn.cert, &conn.key) {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            Some(config)
        } else {
            None
        };
        Ok(Dialer {
            endpoints: conn
                .endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            tls,
            dial_timeout: conn.dial_timeout,
            command_timeout: conn.command_timeout,
        })
    }

    /// `endpoint` with its scheme: as given, else `https://` with TLS flags
    /// and `http://` without.
    fn uri(&self, endpoint: &str) -> String {
        endpoint_uri(endpoint, self.tls.is_some())
    }

    /// A channel to the first of `urls` that connects.
    async fn connect(&self, urls: &[String]) -> Result<Channel, String> {
        let mut last = String::from("the member advertises no client URL");
        for url in urls {
            match self.connect_one(url).await {
                Ok(channel) => return Ok(channel),
                Err(e) => last = format!("failed to connect to {url}: {e}"),
            }
        }
        Err(last)
    }

    async fn connect_one(&self, url: &str) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| proto::errors::error_chain(&e))?
            .connect_timeout(self.dial_timeout)
            .timeout(self.command_timeout);
        if url.starts_with("https://") {
            let tls = self.tls.clone().unwrap_or_else(|| {
                // An https:// endpoint without --cacert: the platform's
                // roots, if this build has any.
                ClientTlsConfig::new().with_enabled_roots()
            });
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| proto::errors::error_chain(&e))?;
        }
        match tokio::time::timeout(self.dial_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(proto::errors::error_chain(&e)),
            Err(_) => Err(format!("timed out after {:?}", self.dial_timeout)),
        }
    }

    /// The cluster's members, from the first endpoint that answers.
    async fn members(&self) -> Result<Vec<Member>, ChaosError> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let answer = match self.connect(&[self.uri(ep)]).await {
                Ok(channel) => ClusterClient::new(channel)
                    .member_list(MemberListRequest {})
                    .await
                    .map(|r| r.into_inner().members)
                    .map_err(|s| status_message(&s)),
                Err(e) => Err(e),
            };
            match answer {
                Ok(members) => return Ok(members),
                Err(e) => errors.push(format!("{ep}: {e}")),
            }
        }
        Err(ChaosError::MemberList(errors.join("; ")))
    }

    /// The member id `--peer` names (0 for `all`).
    async fn peer(&self, spec: &str) -> Result<u64, ChaosError> {
        if spec == "all" || spec == "0" {
            return Ok(0);
        }
        resolve(spec, &self.members().await?)
    }

    /// Sends `call` to `target`: the lines to print, or the error in
    /// grpc-go's words.
    async fn send(&self, target: &Target, call: Call) -> Result<Vec<String>, String> {
        let mut client = ChaosClient::new(self.connect(&target.urls).await?);
        let done = match call {
            Call::KillActor(r) => client.kill_actor(r).await,
            Call::LinkFault(r) => client.link_fault(r).await,
            Call::Partition(r) => client.partition(r).await,
            Call::Heal => client.heal(HealRequest {}).await,
            Call::PauseApply(r) => client.pause_apply(r).await,
            Call::ResumeApply => client.resume_apply(ResumeApplyRequest {}).await,
            Call::SlowDisk(r) => client.slow_disk(r).await,
            Call::FailFsync(r) => client.fail_fsync(r).await,
            Call::Crash => client.crash(CrashRequest {}).await,
            Call::PlantBug(r) => client.plant_bug(r).await,
            Call::Faults => {
                let faults = client
                    .faults(FaultsRequest {})
                    .await
                    .map_err(|s| failure(&s))?
                    .into_inner();
                return Ok(fault_lines(faults.member_id, &faults.faults));
            }
        };
        let response = done.map_err(|s| failure(&s))?.into_inner();
        Ok(vec![response.message])
    }
}

/// A failed call in grpc-go's words, followed by what the transport said
/// when the call never reached the member (a refused TLS handshake shows up
/// as `Cancelled` at the first request).
fn failure(status: &tonic::Status) -> String {
    let mut text = status_message(status);
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&proto::errors::error_chain(source));
    }
    text
}

/// The lines `faults` prints for one member.
fn fault_lines(member_id: u64, faults: &[String]) -> Vec<String> {
    if faults.is_empty() {
        return vec![format!("member {member_id:x}: no active faults")];
    }
    faults
        .iter()
        .map(|f| format!("member {member_id:x}: {f}"))
        .collect()
}

/// `endpoint` with a scheme (see [`Dialer::uri`]).
fn endpoint_uri(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ChaosError> {
    std::fs::read(path).map_err(|source| ChaosError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A probability in [0, 1].
fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid probability {s:?}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("probability {s} is not in [0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::ctl::{Cli, Command};

    fn member(name: &str, id: u64) -> Member {
        Member {
            id,
            name: name.to_string(),
            client_ur_ls: vec![format!("http://{name}:2379")],
            ..Default::default()
        }
    }

    fn three() -> Vec<Member> {
        vec![member("a", 0xa1), member("b", 0xb2), member("c", 0xc3)]
    }

    fn parse(line: &str) -> Result<ChaosArgs, clap::Error> {
        let cli = Cli::try_parse_from(line.split_whitespace())?;
        match cli.command {
            Command::Chaos(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn members_are_named_by_name_or_hex_id() {
        let members = three();
        assert_eq!(resolve("b", &members).ok(), Some(0xb2));
        assert_eq!(resolve("c3", &members).ok(), Some(0xc3));
        assert_eq!(resolve(" a ", &members).ok(), Some(0xa1));
        let err = resolve("d4", &members).unwrap_err().to_string();
        assert!(err.contains("\"d4\"") && err.contains("b b2"), "{err}");
    }

    #[test]
    fn a_partition_cuts_each_side_from_the_other() {
        let members = three();
        let cuts = partition_plan(&members, &BTreeSet::from([0xb2])).unwrap();
        assert_eq!(cuts, vec![vec![0xb2], vec![0xa1, 0xc3], vec![0xb2]]);
        let cuts = partition_plan(&members, &BTreeSet::from([0xa1, 0xc3])).unwrap();
        assert_eq!(cuts, vec![vec![0xb2], vec![0xa1, 0xc3], vec![0xb2]]);
        assert!(matches!(
            partition_plan(&members, &BTreeSet::from([0xa1, 0xb2, 0xc3])),
            Err(ChaosError::NothingLeft)
        ));
    }

    #[test]
    fn endpoints_get_a_scheme_from_the_tls_flags() {
        assert_eq!(endpoint_uri("h:1", false), "http://h:1");
        assert_eq!(endpoint_uri("h:1", true), "https://h:1");
        assert_eq!(endpoint_uri("http://h:1", true), "http://h:1");
        assert_eq!(endpoint_uri("https://h:1", false), "https://h:1");
    }

    #[test]
    fn faults_print_one_line_each_or_say_there_are_none() {
        assert_eq!(fault_lines(0xab, &[]), vec!["member ab: no active faults"]);
        assert_eq!(
            fault_lines(0xab, &["x".into(), "y".into()]),
            vec!["member ab: x", "member ab: y"]
        );
    }

    #[test]
    fn flags_parse_before_or_after_the_action() {
        let args = parse("oxcdctl chaos --endpoints a:1,b:2 drop --peer m1 --direction in --probability 0.3 --seed 7").unwrap();
        assert_eq!(args.conn.endpoints, vec!["a:1", "b:2"]);
        match args.action {
            ChaosAction::Drop {
                peer,
                direction,
                probability,
                seed,
            } => {
                assert_eq!(
                    (peer.as_str(), direction, probability, seed),
                    ("m1", DirectionArg::In, 0.3, Some(7))
                );
            }
            other => panic!("{other:?}"),
        }
        let args = parse("oxcdctl chaos partition --isolate m0,m2 --endpoints x:1").unwrap();
        assert_eq!(args.conn.endpoints, vec!["x:1"]);
        assert!(
            matches!(args.action, ChaosAction::Partition { ref isolate } if isolate == &["m0", "m2"])
        );
        let args = parse("oxcdctl chaos pause-apply --max 1500ms").unwrap();
        assert!(
            matches!(args.action, ChaosAction::PauseApply { max } if max == Duration::from_millis(1500))
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        for line in [
            "oxcdctl chaos kill-actor scheduler",
            "oxcdctl chaos drop --probability 1.5",
            "oxcdctl chaos delay --direction sideways --ms 5",
            "oxcdctl chaos plant-bug off-by-one",
            "oxcdctl chaos partition",
            "oxcdctl chaos --cert c.pem faults",
        ] {
            assert!(parse(line).is_err(), "{line} was accepted");
        }
    }
}
