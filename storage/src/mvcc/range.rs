//! Range: etcd's `storeTxnRead.rangeKeys` (index walk and record loads) and
//! `applierV3backend.Range` (filters, sorting, limit, `more`, `count`).
//!
//! 1. The asked revision is checked against the view: above the current
//!    revision is `FutureRev`, `<= 0` means current, below the compacted
//!    revision is `Compacted` (reading *at* the compacted revision works).
//! 2. The index yields, in key order, every key alive at that revision;
//!    `count` is their number, whatever the limit and filters.
//! 3. Only the records that can be returned are loaded: `limit + 1` of them
//!    (to learn `more`) unless a sort or a min/max filter needs them all.
//! 4. Filters drop kvs, a sort orders them (a non-KEY target with order NONE
//!    sorts ASCEND), then the limit truncates and sets `more`.
//!
//! Sorting reproduces Go's unstable `sort.Sort` ([`super::gosort`]), so ties
//! come back in the same order as from etcd 3.4.

use super::gosort::go_sort_by;
use std::cmp::Ordering;

use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use proto::mvccpb::KeyValue;

use super::key_index::KeyRange;
use super::revision::Revision;
use super::view::{Fault, View};
use crate::error::EtcdError;

/// etcd's `mvcc.RangeOptions`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RangeOptions {
    /// Records to load; `<= 0` loads every key in the range.
    pub limit: i64,
    /// Revision to read at; `<= 0` is the view's current revision.
    pub rev: i64,
    /// Only count the keys.
    pub count_only: bool,
}

/// etcd's `mvcc.RangeResult`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeResult {
    pub kvs: Vec<KeyValue>,
    pub count: i64,
    /// The view's current revision.
    pub rev: i64,
}

/// The revision a range at `asked` reads at, or why it cannot.
pub(crate) fn read_revision(view: &impl View, asked: i64) -> Result<i64, EtcdError> {
    let current = view.rev();
    if asked > current {
        return Err(EtcdError::FutureRev);
    }
    let at = if asked <= 0 { current } else { asked };
    if at < view.first_rev() {
        return Err(EtcdError::Compacted);
    }
    Ok(at)
}

/// etcd's `rangeKeys`.
pub(crate) fn range_keys(
    view: &impl View,
    range: KeyRange<'_>,
    opts: RangeOptions,
) -> Result<RangeResult, Fault> {
    let at = read_revision(view, opts.rev)?;
    let cap = if opts.count_only {
        0
    } else if opts.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(opts.limit).unwrap_or(usize::MAX)
    };
    let mut count = 0i64;
    let mut revs: Vec<Revision> = Vec::new();
    view.index().visit(range, at, |_, found| {
        count += 1;
        if revs.len() < cap {
            revs.push(found.modified);
        }
    });
    let kvs = revs
        .into_iter()
        .map(|rev| view.load(rev))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RangeResult {
        kvs,
        count,
        rev: view.rev(),
    })
}

fn compare_by(target: SortTarget) -> fn(&KeyValue, &KeyValue) -> Ordering {
    match target {
        SortTarget::Key => |a, b| a.key.cmp(&b.key),
        SortTarget::Version => |a, b| a.version.cmp(&b.version),
        SortTarget::Create => |a, b| a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => |a, b| a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => |a, b| a.value.cmp(&b.value),
    }
}

/// etcd's `applierV3backend.Range`: a full Range request against `view`.
pub(crate) fn range(view: &impl View, req: &RangeRequest) -> Result<RangeResponse, Fault> {
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // As etcd: the raw sort order decides whether everything is fetched.
    let mut limit = req.limit;
    if req.sort_order != SortOrder::None as i32 || filtered {
        limit = 0;
    }
    if limit > 0 {
        limit = limit.saturating_add(1);
    }
    let opts = RangeOptions {
        limit,
        rev: req.revision,
        count_only: req.count_only,
    };
    let mut rr = range_keys(view, KeyRange::new(&req.key, &req.range_end), opts)?;

    if req.max_mod_revision != 0 {
        rr.kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        rr.kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        rr.kvs
            .retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        rr.kvs
            .retain(|kv| kv.create_revision >= req.min_create_revision);
    }

    let mut order = SortOrder::try_from(req.sort_order).ok();
    let target = SortTarget::try_from(req.sort_target).ok();
    if req.sort_target != SortTarget::Key as i32 && order == Some(SortOrder::None) {
        // Results come ascending by key already; another target needs a sort.
        order = Some(SortOrder::Ascend);
    }
    if let Some(target) = target {
        let cmp = compare_by(target);
        match order {
            // etcd sorts with Go's unstable sort.Sort (and sort.Reverse for
            // DESCEND); ties must land where Go puts them.
            Some(SortOrder::Ascend) => {
                go_sort_by(&mut rr.kvs, |a, b| cmp(a, b) == std::cmp::Ordering::Less)
            }
            Some(SortOrder::Descend) => {
                go_sort_by(&mut rr.kvs, |a, b| cmp(b, a) == std::cmp::Ordering::Less)
            }
            // NONE, or an order etcd does not know: natural key order.
            Some(SortOrder::None) | None => {}
        }
    }

    let mut more = false;
    if req.limit > 0 {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        if rr.kvs.len() > limit {
            rr.kvs.truncate(limit);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut rr.kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: rr.rev,
            ..Default::default()
        }),
        kvs: rr.kvs,
        more,
        count: rr.count,
    })
}
