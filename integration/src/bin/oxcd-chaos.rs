//! `oxcd-chaos`: a seeded chaos run against a three-member oxcd cluster
//! (`make chaos SEED=7 DURATION=60s`). A thin shell over
//! [`integration::chaos::run`]:
//!
//! 1. parse the flags; without `--seed`, draw one (printed, so the run can
//!    be replayed);
//! 2. run the schedule the seed plans;
//! 3. print the schedule, the timeline, what the workload did and the
//!    verdict; exit 0 on PASS, 1 on FAIL, 2 when the run could not be
//!    carried out (the cluster did not start).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use integration::chaos::{self, ChaosOpts, PlantOpts, Role};

/// Runs a seeded schedule of faults (actor kills, partitions, delays,
/// drops, paused apply, slow disk, failing fsync, crashes) against a
/// cluster started with --enable-chaos while clients put, read
/// linearizably, watch and keep leases alive; then checks the history and
/// prints the timeline and a verdict.
#[derive(Debug, Parser)]
#[command(name = "oxcd-chaos")]
struct Args {
    /// Seed of the schedule and the workload (default: a random one,
    /// printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults are injected: `30s`, `2m`, `1500ms`, or seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Members of the cluster.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Run the workload with no faults.
    #[arg(long)]
    no_faults: bool,
    /// Plant a bug on the leader a third of the way in, to see the checker
    /// catch it: `lose-writes` or `lose-writes:COUNT` (default 5).
    #[arg(long)]
    plant_bug: Option<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut opts = ChaosOpts::new(seed, args.duration);
    opts.members = args.members;
    opts.faults = !args.no_faults;
    if let Some(spec) = &args.plant_bug {
        let (bug, count) = match spec.split_once(':') {
            Some((bug, count)) => match count.parse() {
                Ok(count) => (bug, count),
                Err(e) => {
                    eprintln!("oxcd-chaos: --plant-bug {spec}: bad count: {e}");
                    return ExitCode::from(2);
                }
            },
            None => (spec.as_str(), 5),
        };
        opts.plant = Some(PlantOpts {
            bug: bug.to_string(),
            count,
            after: args.duration / 3,
            role: Role::Leader,
        });
    }
    println!(
        "oxcd-chaos: seed {seed} (replay: make chaos SEED={seed} DURATION={}s)",
        args.duration.as_secs()
    );
    println!(
        "oxcd-chaos: {} faults planned over {:?}; the report follows the run",
        chaos::planned(&opts).len(),
        opts.duration
    );
    match chaos::run(&opts).await {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("oxcd-chaos: the run could not be carried out: {e}");
            ExitCode::from(2)
        }
    }
}

/// `30s`, `2m`, `1500ms`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit (ms, s, m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        other => Err(format!("`{text}`: unknown unit `{other}` (ms, s, m)")),
    }
}
