//! `oxcdctl bench list`: full lists of one prefix, page by page, the way
//! Kubernetes' apiserver lists a resource (`storage/etcd3/store.go`
//! `GetList`). Speaks only etcd's v3 API, so it measures real etcd and oxcd
//! alike.
//!
//! 1. Open `--conns` connections over the endpoints (round robin).
//! 2. `--clients` listers take list numbers from a shared counter until
//!    `--total-lists` lists have started; list `j` runs on connection
//!    `j % conns`, one page in flight.
//! 3. A list is a [`Pager`]: the first page ranges over the whole prefix
//!    with `--limit` and `--consistency`; each next page starts at the last
//!    key returned plus `"\0"` ([`next_page_key`], the apiserver's continue
//!    token) and reads at the first page's revision, so the pages form one
//!    snapshot. The list ends when a page says no `more`. A page that has
//!    no keys yet says `more` is an error, as in the apiserver.
//! 4. Every page is timed from send to answer, every list from its first
//!    send to its last answer. A failed page ends its list, which counts as
//!    one error.
//! 5. The report is etcd's latency report over the pages (its Requests/sec
//!    are pages per second), then the lists' figures, then the JSON summary
//!    (`succeeded` counts pages, so the server CPU per request that
//!    `scripts/bench.sh` derives is per page).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::etcdserverpb::{RangeRequest, RangeResponse};
use serde::Serialize;

use super::CtlError;
use super::bench_args::{Consistency, ListArgs, RunOptions};
use super::driver;
use super::report::{self, Stats};

/// A page answered with no keys while claiming more keys follow: paging
/// cannot go on from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no results were found, but etcd indicated there were more values remaining")]
pub struct EmptyPageWithMore;

/// The key the page after one ending at `last` starts from: `last + "\0"`,
/// the smallest key greater than `last`.
pub fn next_page_key(last: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(last.len() + 1);
    key.extend_from_slice(last);
    key.push(0);
    key
}

/// Step 3: where one paginated list stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Pager {
    key: Vec<u8>,
    range_end: Vec<u8>,
    limit: i64,
    serializable: bool,
    /// The revision of the first page (0 until it is answered).
    revision: i64,
    /// Pages answered so far.
    pub pages: u64,
    /// Keys received so far.
    pub keys: u64,
}

impl Pager {
    /// A list of every key under `prefix`, `limit` keys per page.
    pub fn new(prefix: &[u8], limit: i64, serializable: bool) -> Self {
        Self {
            key: prefix.to_vec(),
            range_end: node::concurrency::prefix_end(prefix),
            limit,
            serializable,
            revision: 0,
            pages: 0,
            keys: 0,
        }
    }

    /// The request for the next page.
    pub fn request(&self) -> RangeRequest {
        RangeRequest {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            limit: self.limit,
            revision: self.revision,
            serializable: self.serializable,
            ..Default::default()
        }
    }

    /// Takes in the answer to [`request`](Self::request); `Ok(true)` when
    /// another page follows.
    pub fn advance(&mut self, page: &RangeResponse) -> Result<bool, EmptyPageWithMore> {
        self.pages += 1;
        self.keys += page.kvs.len() as u64;
        if self.revision == 0 {
            self.revision = page.header.as_ref().map_or(0, |h| h.revision);
        }
        if !page.more {
            return Ok(false);
        }
        let last = page.kvs.last().ok_or(EmptyPageWithMore)?;
        self.key = next_page_key(&last.key);
        Ok(true)
    }
}

/// What one lister measured.
#[derive(Debug, Default)]
struct ListerOutcome {
    page_latencies: Vec<f64>,
    list_times: Vec<f64>,
    keys_per_list: Vec<u64>,
    pages_per_list: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Steps 2 to 4: one lister's share of the lists.
async fn lister(
    clients: Arc<[super::client::Kv]>,
    args: Arc<ListArgs>,
    next: Arc<AtomicU64>,
    timeout: Duration,
) -> ListerOutcome {
    let mut out = ListerOutcome::default();
    let serializable = args.consistency == Consistency::Serializable;
    loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        if j >= args.total_lists {
            return out;
        }
        let mut kv = clients[(j % clients.len() as u64) as usize].clone();
        let mut pager = Pager::new(args.prefix.as_bytes(), args.limit, serializable);
        let started = Instant::now();
        let failure = loop {
            let sent = Instant::now();
            let page = match tokio::time::timeout(timeout, kv.range(pager.request())).await {
                Ok(Ok(page)) => page.into_inner(),
                Ok(Err(status)) => {
                    break Some(format!(
                        "rpc error: code = {:?} desc = {}",
                        status.code(),
                        status.message()
                    ));
                }
                Err(_) => break Some(format!("request timed out after {timeout:?}")),
            };
            out.page_latencies.push(sent.elapsed().as_secs_f64());
            match pager.advance(&page) {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        match failure {
            None => {
                out.list_times.push(started.elapsed().as_secs_f64());
                out.keys_per_list.push(pager.keys);
                out.pages_per_list.push(pager.pages);
            }
            Some(message) => *out.errors.entry(message).or_default() += 1,
        }
    }
}

/// Full-list figures of the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct ListFigures {
    /// Lists that ran to their last page.
    pub completed: u64,
    /// Completed lists per second of wall time.
    pub lists_per_s: f64,
    pub keys_per_list_min: u64,
    pub keys_per_list_max: u64,
    pub pages_per_list_min: u64,
    pub pages_per_list_max: u64,
    /// Time of a whole list, first send to last answer, in milliseconds.
    pub list_ms: report::LatencyMs,
}

/// The JSON summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub op: String,
    pub workload: String,
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    /// Lists asked for.
    pub total: u64,
    /// Pages answered (the unit of `rps` and `latency_ms`).
    pub succeeded: u64,
    /// Lists that failed.
    pub errors: u64,
    pub error_messages: BTreeMap<String, u64>,
    pub duration_s: f64,
    /// Pages per second.
    pub rps: f64,
    /// Per page, in milliseconds.
    pub latency_ms: report::LatencyMs,
    pub lists: ListFigures,
}

/// Step 5: the lines about whole lists printed after the page report.
fn render_lists(figures: &ListFigures) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are discarded on purpose.
    let _ = writeln!(s, "\nLists:");
    let _ = writeln!(s, "  Completed:\t{}", figures.completed);
    let _ = writeln!(s, "  Lists/sec:\t{:.4}", figures.lists_per_s);
    let _ = writeln!(
        s,
        "  Keys/list:\t{}..{}",
        figures.keys_per_list_min, figures.keys_per_list_max
    );
    let _ = writeln!(
        s,
        "  Pages/list:\t{}..{}",
        figures.pages_per_list_min, figures.pages_per_list_max
    );
    let ms = &figures.list_ms;
    let _ = writeln!(
        s,
        "  List time:\tavg {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms.avg, ms.p50, ms.p99, ms.max
    );
    s
}

/// Runs `oxcdctl bench list` (see the module docs).
pub async fn run(options: RunOptions, args: ListArgs) -> Result<(), CtlError> {
    let RunOptions {
        endpoints,
        conns,
        clients,
        dial_timeout,
        request_timeout,
        json,
        user,
    } = options;
    if args.total_lists == 0 || args.limit <= 0 {
        return Err(CtlError::InvalidArgument(format!(
            "expected positive --total-lists and --limit, got total-lists({}) limit({})",
            args.total_lists, args.limit
        )));
    }
    let workload = format!(
        "prefix={:?} limit={} consistency={}",
        args.prefix,
        args.limit,
        match args.consistency {
            Consistency::Linearizable => "l",
            Consistency::Serializable => "s",
        }
    );
    eprintln!(
        "bench list ({workload}): {} lists, {clients} listers, {conns} conns, endpoints {}",
        args.total_lists,
        endpoints.join(",")
    );
    let kv: Arc<[super::client::Kv]> =
        driver::connect(&endpoints, conns, dial_timeout, user.as_deref())
            .await?
            .into();
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(lister(
            Arc::clone(&kv),
            Arc::clone(&args),
            Arc::clone(&next),
            request_timeout,
        ));
    }
    let mut all = ListerOutcome::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(out) => {
                all.page_latencies.extend(out.page_latencies);
                all.list_times.extend(out.list_times);
                all.keys_per_list.extend(out.keys_per_list);
                all.pages_per_list.extend(out.pages_per_list);
                for (message, n) in out.errors {
                    *all.errors.entry(message).or_default() += n;
                }
            }
            Err(e) => {
                *all.errors
                    .entry(format!("bench lister failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    let wall = started.elapsed();
    let failed_lists: u64 = all.errors.values().sum();
    let pages = Stats::new(all.page_latencies, all.errors, wall);
    let completed = all.list_times.len() as u64;
    let list_times = Stats::new(all.list_times, BTreeMap::new(), wall);
    let figures = ListFigures {
        completed,
        lists_per_s: list_times.rps,
        keys_per_list_min: all.keys_per_list.iter().copied().min().unwrap_or(0),
        keys_per_list_max: all.keys_per_list.iter().copied().max().unwrap_or(0),
        pages_per_list_min: all.pages_per_list.iter().copied().min().unwrap_or(0),
        pages_per_list_max: all.pages_per_list.iter().copied().max().unwrap_or(0),
        list_ms: report::LatencyMs::of(&list_times),
    };
    print!("{}", report::render(&pages));
    print!("{}", render_lists(&figures));
    let summary = ListSummary {
        op: "list".into(),
        workload,
        endpoints,
        clients,
        conns,
        total: args.total_lists,
        succeeded: pages.succeeded(),
        errors: failed_lists,
        error_messages: pages.errors.clone(),
        duration_s: wall.as_secs_f64(),
        rps: pages.rps,
        latency_ms: report::LatencyMs::of(&pages),
        lists: figures,
    };
    report::emit_json(&summary, json.as_ref())
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::ResponseHeader;
    use proto::mvccpb::KeyValue;

    use super::*;

    /// A store of `keys` at revision `revision`, answering ranges the way
    /// etcd does: keys in `[key, range_end)` in order, at most `limit`, with
    /// `more` when some were left out. A request for another revision than
    /// the store's is answered with nothing, so a pager that forgets to pin
    /// the revision shows up as missing keys.
    fn serve(keys: &[Vec<u8>], revision: i64, req: &RangeRequest) -> RangeResponse {
        let in_range: Vec<&Vec<u8>> = if req.revision == 0 || req.revision == revision {
            keys.iter()
                .filter(|k| k.as_slice() >= req.key.as_slice())
                .filter(|k| k.as_slice() < req.range_end.as_slice())
                .collect()
        } else {
            Vec::new()
        };
        let n = (req.limit as usize).min(in_range.len());
        RangeResponse {
            header: Some(ResponseHeader {
                revision,
                ..Default::default()
            }),
            kvs: in_range[..n]
                .iter()
                .map(|k| KeyValue {
                    key: (*k).clone(),
                    ..Default::default()
                })
                .collect(),
            more: n < in_range.len(),
            count: in_range.len() as i64,
        }
    }

    #[test]
    fn next_page_starts_right_after_the_last_key() {
        assert_eq!(next_page_key(b"p/0042"), b"p/0042\0".to_vec());
        assert_eq!(next_page_key(b""), vec![0]);
        // Nothing sorts between a key and the key plus "\0".
        let last = b"p/0042".to_vec();
        let next = next_page_key(&last);
        assert!(last < next && next < b"p/0042\x00\x00".to_vec());
        assert!(next < b"p/00420".to_vec());
    }

    #[test]
    fn pager_visits_every_key_of_the_prefix_once_in_order() {
        // Keys under the prefix, including one that is a prefix of another
        // ("p/1" before "p/1\0" and "p/10"), and keys around it.
        let mut keys: Vec<Vec<u8>> = (0..1234).map(|i| format!("p/{i}").into_bytes()).collect();
        keys.push(b"p/1\0".to_vec());
        keys.push(b"o/before".to_vec());
        keys.push(b"p0after".to_vec());
        keys.sort();
        let under: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| k.starts_with(b"p/"))
            .cloned()
            .collect();

        let mut pager = Pager::new(b"p/", 500, true);
        let mut seen = Vec::new();
        let mut revisions = Vec::new();
        loop {
            let req = pager.request();
            assert!(req.serializable);
            revisions.push(req.revision);
            let page = serve(&keys, 17, &req);
            seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
            if !pager.advance(&page).expect("pages carry keys") {
                break;
            }
        }
        assert_eq!(seen, under);
        assert_eq!((pager.pages, pager.keys), (3, 1235));
        // The first page reads the latest revision, the next ones its.
        assert_eq!(revisions, vec![0, 17, 17]);
    }

    #[test]
    fn a_limit_that_divides_the_keys_ends_on_a_page_without_more() {
        let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("k{i}").into_bytes()).collect();
        let mut pager = Pager::new(b"k", 5, false);
        let mut more = true;
        while more {
            more = pager
                .advance(&serve(&keys, 3, &pager.request()))
                .expect("pages carry keys");
        }
        assert_eq!((pager.pages, pager.keys), (2, 10));
        assert!(!pager.request().serializable);
    }

    #[test]
    fn an_empty_page_that_claims_more_is_an_error() {
        let mut pager = Pager::new(b"k", 5, false);
        let page = RangeResponse {
            more: true,
            ..Default::default()
        };
        assert_eq!(pager.advance(&page), Err(EmptyPageWithMore));
        assert_eq!(
            EmptyPageWithMore.to_string(),
            "no results were found, but etcd indicated there were more values remaining"
        );
    }

    #[test]
    fn an_empty_prefix_is_one_page() {
        let keys = vec![b"a".to_vec()];
        let mut pager = Pager::new(b"z/", 500, false);
        let page = serve(&keys, 1, &pager.request());
        assert_eq!(pager.advance(&page), Ok(false));
        assert_eq!((pager.pages, pager.keys), (1, 0));
    }
}
