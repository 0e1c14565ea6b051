//! Benchmark report: the numbers etcd's `pkg/report` prints, computed from
//! the per-request latencies the bench workers collected.
//!
//! 1. The workers hand over every successful request's latency (seconds) and
//!    a count of failed requests per error message; the driver adds the wall
//!    time of the whole run.
//! 2. [`Stats::new`] sorts the latencies once and derives fastest, slowest,
//!    average, population standard deviation and requests per second
//!    (successes divided by wall time, as etcd does).
//! 3. [`percentiles`] picks etcd's percentile points with its index rule
//!    `ceil(p * (n + 1) / 100) - 1`, clamped to the sample, so the numbers are
//!    comparable with `benchmark` runs against etcd.
//! 4. [`histogram`] splits `[fastest, slowest]` into ten equal buckets plus
//!    a last bucket at `slowest`; each latency lands in the first bucket
//!    whose upper bound it does not exceed.
//! 5. [`render`] lays all of this out as etcd's text report, and
//!    [`Summary`] carries the same numbers (milliseconds) as the JSON summary
//!    that `scripts/bench.sh` reads.
//!
//! Nothing here does I/O or reads a clock, so every number is unit tested on
//! known inputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The percentile points etcd's report prints, in order.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Number of equal-width buckets between fastest and slowest (etcd: 10).
const HISTOGRAM_BUCKETS: usize = 10;

/// Width in characters of the longest histogram bar (etcd: 40).
const BAR_WIDTH: usize = 40;

/// The character etcd draws histogram bars with.
const BAR_CHAR: char = '∎';

/// Aggregated results of one benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Latencies of successful requests in seconds, sorted ascending.
    pub latencies: Vec<f64>,
    /// Failed requests, counted per error message.
    pub errors: BTreeMap<String, u64>,
    /// Smallest latency (0 when no request succeeded).
    pub fastest: f64,
    /// Largest latency (0 when no request succeeded).
    pub slowest: f64,
    /// Mean latency (0 when no request succeeded).
    pub average: f64,
    /// Population standard deviation of the latencies.
    pub stddev: f64,
    /// Successful requests per second of wall time.
    pub rps: f64,
}

impl Stats {
    /// Aggregates raw results: `latencies` in seconds (any order),
    /// `errors` by message, `wall` the duration of the run.
    pub fn new(mut latencies: Vec<f64>, errors: BTreeMap<String, u64>, wall: Duration) -> Self {
        latencies.sort_by(f64::total_cmp);
        let n = latencies.len();
        let (fastest, slowest, average, stddev) = if n == 0 {
            (0.0, 0.0, 0.0, 0.0)
        } else {
            let average = latencies.iter().sum::<f64>() / n as f64;
            let variance = latencies
                .iter()
                .map(|l| (l - average) * (l - average))
                .sum::<f64>()
                / n as f64;
            (latencies[0], latencies[n - 1], average, variance.sqrt())
        };
        let secs = wall.as_secs_f64();
        let rps = if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Self {
            wall,
            latencies,
            errors,
            fastest,
            slowest,
            average,
            stddev,
            rps,
        }
    }

    /// Number of successful requests.
    pub fn succeeded(&self) -> u64 {
        self.latencies.len() as u64
    }

    /// Number of failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency at percentile `p` (0..=100), by etcd's rule.
    pub fn percentile(&self, p: f64) -> f64 {
        percentiles(&self.latencies, &[p])[0]
    }
}

/// Values at the percentile points `points` of an ascending `sorted`
/// sample, using etcd's index rule; zeros for an empty sample.
pub fn percentiles(sorted: &[f64], points: &[f64]) -> Vec<f64> {
    let n = sorted.len();
    if n == 0 {
        return vec![0.0; points.len()];
    }
    points
        .iter()
        .map(|p| {
            let rank = (p * (n as f64 + 1.0) / 100.0).ceil() as i64 - 1;
            let idx = rank.clamp(0, n as i64 - 1) as usize;
            sorted[idx]
        })
        .collect()
}

/// One histogram bucket: latencies in `(previous upper, upper]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Upper bound in seconds (inclusive).
    pub upper: f64,
    /// Number of latencies in the bucket.
    pub count: u64,
}

/// etcd's response-time histogram of an ascending `sorted` sample:
/// `buckets` equal-width bounds starting at the fastest latency, plus a final
/// bound at the slowest. Empty sample, empty histogram.
pub fn histogram(sorted: &[f64], buckets: usize) -> Vec<Bucket> {
    let (Some(&fastest), Some(&slowest)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    let width = (slowest - fastest) / buckets as f64;
    let mut out: Vec<Bucket> = (0..buckets)
        .map(|i| Bucket {
            upper: fastest + width * i as f64,
            count: 0,
        })
        .collect();
    out.push(Bucket {
        upper: slowest,
        count: 0,
    });
    let last = out.len() - 1;
    let mut bi = 0;
    for &lat in sorted {
        while bi < last && lat > out[bi].upper {
            bi += 1;
        }
        out[bi].count += 1;
    }
    out
}

/// The text report, laid out like etcd's `benchmark` output.
pub fn render(stats: &Stats) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are discarded on purpose.
    let _ = writeln!(s, "\nSummary:");
    let _ = writeln!(s, "  Total:\t{:.4} secs.", stats.wall.as_secs_f64());
    let _ = writeln!(s, "  Slowest:\t{:.4} secs.", stats.slowest);
    let _ = writeln!(s, "  Fastest:\t{:.4} secs.", stats.fastest);
    let _ = writeln!(s, "  Average:\t{:.4} secs.", stats.average);
    let _ = writeln!(s, "  Stddev:\t{:.4} secs.", stats.stddev);
    let _ = writeln!(s, "  Requests/sec:\t{:.4}", stats.rps);
    let buckets = histogram(&stats.latencies, HISTOGRAM_BUCKETS);
    if !buckets.is_empty() {
        let _ = writeln!(s, "\nResponse time histogram:");
        let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
        for b in &buckets {
            let len = if max > 0 {
                (b.count as usize * BAR_WIDTH) / max as usize
            } else {
                0
            };
            let bar: String = std::iter::repeat_n(BAR_CHAR, len).collect();
            let _ = writeln!(s, "  {:.4} [{}]\t|{}", b.upper, b.count, bar);
        }
        let _ = writeln!(s, "\nLatency distribution:");
        let values = percentiles(&stats.latencies, &PERCENTILES);
        for (p, v) in PERCENTILES.iter().zip(values) {
            if v > 0.0 {
                let _ = writeln!(s, "  {p}% in {:.3} ms.", v * 1000.0);
            }
        }
    }
    if !stats.errors.is_empty() {
        let _ = writeln!(s, "\nError distribution:");
        for (msg, n) in &stats.errors {
            let _ = writeln!(s, "  [{n}]\t{msg}");
        }
    }
    s
}

/// Prints a run's JSON summary after its report, and writes it to `path`
/// when given (what `scripts/bench.sh` reads).
pub fn emit_json(
    summary: &impl Serialize,
    path: Option<&std::path::PathBuf>,
) -> Result<(), super::CtlError> {
    let json = serde_json::to_string_pretty(summary)?;
    println!("\n{json}");
    if let Some(path) = path {
        std::fs::write(path, format!("{json}\n")).map_err(|source| super::CtlError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// What was run, for the JSON summary.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Workload name: `put`, `range` or `txn`.
    pub op: String,
    /// Workload parameters in flag form, e.g. `key-size=8 val-size=256`.
    pub workload: String,
    /// Endpoints the connections were spread over.
    pub endpoints: Vec<String>,
    /// Concurrent in-flight requests.
    pub clients: usize,
    /// gRPC connections.
    pub conns: usize,
    /// Requests attempted.
    pub total: u64,
    /// Seed of the key and value generator.
    pub seed: u64,
}

/// Latency figures of the JSON summary, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyMs {
    pub avg: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The machine-readable summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub op: String,
    pub workload: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    pub total: u64,
    pub succeeded: u64,
    pub errors: u64,
    pub error_messages: BTreeMap<String, u64>,
    pub seed: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub latency_ms: LatencyMs,
}

impl Summary {
    /// Builds the summary of `stats` for the run described by `info`.
    pub fn new(info: RunInfo, stats: &Stats) -> Self {
        Self {
            op: info.op,
            workload: info.workload,
            endpoints: info.endpoints,
            clients: info.clients,
            conns: info.conns,
            total: info.total,
            succeeded: stats.succeeded(),
            errors: stats.failed(),
            error_messages: stats.errors.clone(),
            seed: info.seed,
            duration_s: stats.wall.as_secs_f64(),
            rps: stats.rps,
            latency_ms: LatencyMs::of(stats),
        }
    }
}

impl LatencyMs {
    /// The latency figures of `stats`, in milliseconds.
    pub fn of(stats: &Stats) -> Self {
        let ms = |secs: f64| secs * 1000.0;
        Self {
            avg: ms(stats.average),
            stddev: ms(stats.stddev),
            min: ms(stats.fastest),
            p50: ms(stats.percentile(50.0)),
            p90: ms(stats.percentile(90.0)),
            p95: ms(stats.percentile(95.0)),
            p99: ms(stats.percentile(99.0)),
            p999: ms(stats.percentile(99.9)),
            max: ms(stats.slowest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// 1..=10 in seconds, shuffled, so sorting is exercised too.
    fn one_to_ten() -> Vec<f64> {
        vec![7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]
    }

    #[test]
    fn summary_statistics_on_known_sample() {
        let stats = Stats::new(one_to_ten(), BTreeMap::new(), Duration::from_secs(2));
        assert_eq!(stats.latencies, (1..=10).map(f64::from).collect::<Vec<_>>());
        assert!(close(stats.fastest, 1.0));
        assert!(close(stats.slowest, 10.0));
        assert!(close(stats.average, 5.5));
        // Population variance of 1..=10 is (10^2 - 1) / 12 = 8.25.
        assert!(close(stats.stddev, 8.25_f64.sqrt()));
        assert!(close(stats.rps, 5.0));
        assert_eq!(stats.succeeded(), 10);
        assert_eq!(stats.failed(), 0);
    }

    #[test]
    fn stddev_of_constant_sample_is_zero() {
        let stats = Stats::new(vec![0.25; 4], BTreeMap::new(), Duration::from_secs(1));
        assert!(close(stats.stddev, 0.0));
        assert!(close(stats.average, 0.25));
        assert!(close(stats.rps, 4.0));
    }

    #[test]
    fn stddev_of_two_point_sample() {
        // Mean 3, deviations +-1, population stddev 1.
        let stats = Stats::new(vec![2.0, 4.0], BTreeMap::new(), Duration::from_secs(1));
        assert!(close(stats.stddev, 1.0));
    }

    #[test]
    fn percentiles_follow_etcd_index_rule() {
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        // idx = ceil(p * 11 / 100) - 1, clamped to 0..=9.
        let got = percentiles(&sorted, &PERCENTILES);
        assert_eq!(got, vec![2.0, 3.0, 6.0, 9.0, 10.0, 10.0, 10.0, 10.0]);
    }

    #[test]
    fn percentiles_on_thousand_points() {
        let sorted: Vec<f64> = (1..=1000).map(f64::from).collect();
        let got = percentiles(&sorted, &[50.0, 90.0, 99.0, 99.9, 0.0, 100.0]);
        // ceil(500.5)-1=500 -> 501; ceil(900.9)-1=900 -> 901;
        // ceil(990.99)-1=990 -> 991; ceil(999.999)-1=999 -> 1000; clamps.
        assert_eq!(got, vec![501.0, 901.0, 991.0, 1000.0, 1.0, 1000.0]);
    }

    #[test]
    fn percentiles_of_empty_and_single_sample() {
        assert_eq!(percentiles(&[], &[50.0, 99.0]), vec![0.0, 0.0]);
        assert_eq!(percentiles(&[3.0], &PERCENTILES), vec![3.0; 8]);
    }

    #[test]
    fn histogram_one_latency_per_bucket() {
        let sorted: Vec<f64> = (0..=10).map(f64::from).collect();
        let got = histogram(&sorted, 10);
        let want: Vec<Bucket> = (0..=10)
            .map(|i| Bucket {
                upper: f64::from(i),
                count: 1,
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn histogram_counts_into_first_bucket_not_exceeded() {
        // Bounds 0, 2, 4, 6, 8, 10 (five buckets plus the last).
        let sorted = [0.0, 0.5, 1.0, 2.0, 2.5, 7.0, 9.5, 10.0, 10.0];
        let got = histogram(&sorted, 5);
        let counts: Vec<u64> = got.iter().map(|b| b.count).collect();
        let uppers: Vec<f64> = got.iter().map(|b| b.upper).collect();
        assert_eq!(uppers, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(counts, vec![1, 3, 1, 0, 1, 3]);
        assert_eq!(counts.iter().sum::<u64>(), sorted.len() as u64);
    }

    #[test]
    fn histogram_of_constant_and_empty_sample() {
        let got = histogram(&[1.5, 1.5, 1.5], 10);
        assert_eq!(got.len(), 11);
        assert_eq!(got[0].count, 3);
        assert!(got[1..].iter().all(|b| b.count == 0));
        assert!(histogram(&[], 10).is_empty());
    }

    #[test]
    fn zero_latency_points_are_left_out_like_etcd() {
        let stats = Stats::new(
            vec![0.0, 0.0, 0.002],
            BTreeMap::new(),
            Duration::from_secs(1),
        );
        let text = render(&stats);
        // n = 3: 10%, 25% and 50% fall on 0 ms and are not printed.
        assert!(!text.contains("  10% in"));
        assert!(!text.contains("  25% in"));
        assert!(!text.contains("  50% in"));
        assert!(text.contains("  75% in 2.000 ms.\n"));
    }

    #[test]
    fn all_failed_run_has_zero_numbers_and_lists_errors() {
        let mut errors = BTreeMap::new();
        errors.insert("code = Unavailable desc = down".to_string(), 3);
        let stats = Stats::new(Vec::new(), errors, Duration::from_millis(10));
        assert_eq!(stats.succeeded(), 0);
        assert_eq!(stats.failed(), 3);
        assert!(close(stats.rps, 0.0));
        assert!(close(stats.stddev, 0.0));
        let text = render(&stats);
        assert!(text.contains("Error distribution:\n  [3]\tcode = Unavailable desc = down\n"));
        assert!(!text.contains("Response time histogram"));
    }

    #[test]
    fn render_matches_etcd_layout() {
        // Multiples of 2^-10 s keep every bucket bound exact in binary.
        let sorted: Vec<f64> = (0..=10).map(|i| f64::from(i) / 1024.0).collect();
        let stats = Stats::new(sorted, BTreeMap::new(), Duration::from_millis(500));
        let text = render(&stats);
        assert!(text.starts_with("\nSummary:\n  Total:\t0.5000 secs.\n"));
        assert!(text.contains("  Slowest:\t0.0098 secs.\n"));
        assert!(text.contains("  Fastest:\t0.0000 secs.\n"));
        assert!(text.contains("  Average:\t0.0049 secs.\n"));
        assert!(text.contains("  Requests/sec:\t22.0000\n"));
        // Every bucket holds one latency, so every bar is full width.
        let full: String = std::iter::repeat_n(BAR_CHAR, BAR_WIDTH).collect();
        assert!(text.contains(&format!("  0.0010 [1]\t|{full}\n")));
        assert_eq!(text.matches(&format!("[1]\t|{full}\n")).count(), 11);
        // n = 11: the 10% index is ceil(10 * 12 / 100) - 1 = 1.
        assert!(text.contains("  10% in 0.977 ms.\n"));
        // n = 11: the 50% index is ceil(50 * 12 / 100) - 1 = 5.
        assert!(text.contains("  50% in 4.883 ms.\n"));
        assert!(text.contains("  99.9% in 9.766 ms.\n"));
        assert!(!text.contains("Error distribution"));
    }

    #[test]
    fn summary_converts_to_milliseconds() {
        let sorted: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let mut errors = BTreeMap::new();
        errors.insert("boom".to_string(), 2);
        let stats = Stats::new(sorted, errors, Duration::from_secs(4));
        let info = RunInfo {
            op: "put".into(),
            workload: "key-size=8".into(),
            endpoints: vec!["127.0.0.1:1".into()],
            clients: 10,
            conns: 2,
            total: 1002,
            seed: 7,
        };
        let s = Summary::new(info, &stats);
        assert_eq!((s.succeeded, s.errors, s.total), (1000, 2, 1002));
        assert!(close(s.rps, 250.0));
        assert!(close(s.duration_s, 4.0));
        assert!(close(s.latency_ms.avg, 500.5));
        assert!(close(s.latency_ms.min, 1.0));
        assert!(close(s.latency_ms.p50, 501.0));
        assert!(close(s.latency_ms.p90, 901.0));
        assert!(close(s.latency_ms.p99, 991.0));
        assert!(close(s.latency_ms.p999, 1000.0));
        assert!(close(s.latency_ms.max, 1000.0));
        let json = serde_json::to_value(&s).expect("summary serializes");
        assert_eq!(json["op"], "put");
        assert_eq!(json["errors"], 2);
        assert_eq!(json["error_messages"]["boom"], 2);
        assert_eq!(json["latency_ms"]["p999"], 1000.0);
    }
}
