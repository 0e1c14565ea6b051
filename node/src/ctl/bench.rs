//! `oxcdctl bench`: a load generator that speaks only etcd's v3 KV gRPC API,
//! so the same run measures real etcd and oxcd alike. It follows etcd's
//! `tools/benchmark` (flag names and defaults, key encoding, report).
//!
//! 1. [`run`] checks the options ([`BenchArgs`], parsed by clap in
//!    [`bench_args`](super::bench_args)) and picks the seed (printed, so a run can be
//!    replayed with `--seed`). `watch`, `lease-keepalive` and `list` are
//!    handed to their own modules ([`watch_bench`](super::watch_bench),
//!    [`lease_bench`](super::lease_bench), [`list_bench`](super::list_bench));
//!    the steps below are the KV workloads'.
//! 2. [`Plan::new`](super::workload::Plan::new) checks the workload's own
//!    options and draws the value bytes from the seed.
//! 3. [`driver::connect`](super::driver::connect) opens `--conns` gRPC
//!    connections over the `--endpoints`; an unreachable endpoint ends the
//!    run with an error before any load is sent.
//! 4. [`driver::drive`](super::driver::drive) runs `--total` requests with
//!    `--clients` concurrent workers and returns the merged
//!    [`Stats`](super::report::Stats).
//! 5. [`run`] prints the etcd-style text report and the JSON
//!    [`Summary`] to stdout, and writes the JSON to `--json` when given.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::CtlError;
use super::bench_args::{BenchArgs, BenchCommand, RunOptions};
use super::driver;
use super::report::{self, RunInfo, Summary};
use super::workload::Plan;

/// Runs `oxcdctl bench`: see the module docs for the steps.
pub async fn run(args: BenchArgs) -> Result<(), CtlError> {
    let endpoints: Vec<String> = args
        .endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(CtlError::InvalidArgument("no --endpoints given".into()));
    }
    if args.conns == 0 || args.clients == 0 {
        return Err(CtlError::InvalidArgument(format!(
            "expected positive --conns and --clients, got conns({}) clients({})",
            args.conns, args.clients
        )));
    }
    let options = RunOptions {
        endpoints: endpoints.clone(),
        conns: args.conns,
        clients: args.clients,
        dial_timeout: args.dial_timeout,
        request_timeout: args.request_timeout,
        json: args.json.clone(),
        user: args.user.clone(),
    };
    let workload = match args.command {
        BenchCommand::Kv(workload) => workload,
        BenchCommand::Watch(watch) => return super::watch_bench::run(options, watch).await,
        BenchCommand::List(list) => return super::list_bench::run(options, list).await,
        BenchCommand::LeaseKeepalive(lease) => {
            return super::lease_bench::run(options, lease).await;
        }
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let plan = Plan::new(&workload, seed)?;
    let total = workload.total();
    let (op, workload) = plan.describe(&workload);
    eprintln!(
        "bench {op} ({workload}): {total} requests, {} clients, {} conns, endpoints {}, seed {seed}",
        args.clients,
        args.conns,
        endpoints.join(",")
    );

    let clients = driver::connect(
        &endpoints,
        args.conns,
        args.dial_timeout,
        args.user.as_deref(),
    )
    .await?;
    let stats = driver::drive(
        Arc::new(plan),
        clients.into(),
        args.clients,
        total,
        args.request_timeout,
        driver::progress_bar(total),
    )
    .await;

    print!("{}", report::render(&stats));
    let info = RunInfo {
        op,
        workload,
        endpoints,
        clients: args.clients,
        conns: args.conns,
        total,
        seed,
    };
    report::emit_json(&Summary::new(info, &stats), args.json.as_ref())
}
