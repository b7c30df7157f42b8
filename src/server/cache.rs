//! The scorecard cache of the server: evaluated scorecards, and their JSON
//! response made once, per configuration version, data generation,
//! scorecard, periods and as-of minute. A reload or an ingest is never served
//! stale (both are in the key), nor is a close or a reopen (the frozen
//! generation is too); "now" is bucketed to the minute, so requests without
//! an as_of in the same minute share one evaluation. A frozen period's entry
//! holds its frozen report, so no edit or import changes what it serves.

use std::sync::{Arc, OnceLock};

use super::error::ApiError;
use super::state::AppState;
use crate::engine::{EvalRequest, Snapshot, When};
use crate::eval::report::Report;
use crate::memo::Memo;
use crate::period::PeriodId;

/// What a cached scorecard evaluation is for. The config version and data
/// generation are part of the key, so a reload or an ingest is never served
/// stale; "now" (no as_of in the request) is bucketed to the minute by
/// the API (`api::when`), so it does not defeat the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportKey {
    pub version: u64,
    pub generation: u64,
    pub scorecard: String,
    pub period: PeriodId,
    /// How many periods, ending with `period`.
    pub span: u32,
    pub as_of: i64,
    /// The frozen periods' generation (a close or a reopen changes it).
    pub frozen: i64,
    /// Evaluated afresh, frozen periods too (`?live=true`).
    pub live: bool,
}

/// One evaluated scorecard, and its JSON response made once.
pub struct CachedReports {
    pub reports: Arc<Vec<Report>>,
    json: OnceLock<axum::body::Bytes>,
}

impl CachedReports {
    /// The serialized JSON of the last report (what GET /api/scorecards/{id} returns).
    pub fn json(&self) -> axum::body::Bytes {
        self.json
            .get_or_init(|| {
                serde_json::to_vec(&self.reports.last())
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

/// Evaluated scorecards, shared by the API and the dashboard.
pub struct ReportCache {
    memo: Memo<ReportKey, CachedReports>,
    /// The periods with data of the key's span (the dashboard's period picker).
    with_data: Memo<ReportKey, Vec<PeriodId>>,
}

/// Entries kept before the cache starts over.
const CACHE_ENTRIES: usize = 64;

impl Default for ReportCache {
    fn default() -> Self {
        ReportCache {
            memo: Memo::new(CACHE_ENTRIES),
            with_data: Memo::new(CACHE_ENTRIES),
        }
    }
}

impl ReportCache {
    /// The entry of `key` if it is filled.
    pub fn get(&self, key: &ReportKey) -> Option<Arc<CachedReports>> {
        self.memo.get(key)
    }

    /// The entry of `key`, filled by `fill` unless it is already (or, in
    /// another thread, being) filled. Blocking. An error is not kept.
    pub fn get_or_fill<E>(
        &self,
        key: &ReportKey,
        fill: impl FnOnce() -> Result<Vec<Report>, E>,
    ) -> Result<Arc<CachedReports>, E> {
        if self.memo.get(key).is_none() {
            // Entries of older versions and generations are never asked for again.
            self.memo
                .retain(|k| k.version >= key.version && k.generation >= key.generation);
        }
        self.memo.get_or_fill(
            key,
            |_| true,
            |_| {
                Ok(CachedReports {
                    reports: Arc::new(fill()?),
                    json: OnceLock::new(),
                })
            },
        )
    }
}

/// "Now" is rounded down to this (ms): every request without an as_of in the
/// same minute asks the same question. It is the bucket a close evaluates as
/// of (`engine::freeze`), so a frozen result is what was served in its minute.
pub const NOW_BUCKET_MS: i64 = crate::engine::freeze::AS_OF_BUCKET_MS;

/// Reads `as_of` (default now, to the minute) and `period` (default: the
/// quarter containing as_of).
pub fn when(
    served: &Snapshot,
    as_of: Option<&str>,
    period: Option<&str>,
) -> Result<When, ApiError> {
    let now = crate::engine::now();
    Ok(served.when(as_of, period, now - now.rem_euclid(NOW_BUCKET_MS))?)
}

/// The cache key of scorecard `card` for the `span` periods ending with `when.period`.
pub fn report_key(served: &Snapshot, card: &str, when: When, span: u32) -> ReportKey {
    ReportKey {
        version: served.version,
        generation: served.data_generation,
        scorecard: card.to_string(),
        period: when.period,
        span,
        as_of: when.as_of,
        frozen: served.frozen.db_generation,
        live: false,
    }
}

/// The cache entry of scorecard `card` for the `span` periods ending with
/// `when.period` (oldest first), evaluated on a miss. Blocking.
pub fn cached_reports(
    state: &AppState,
    served: &Snapshot,
    card: &str,
    when: When,
    span: u32,
) -> Result<Arc<CachedReports>, ApiError> {
    cached_reports_of(state, served, card, when, span, false)
}

/// The periods among the `span` ending with `when.period` (oldest first) in which some
/// subject of scorecard `card` has a KPI value other than none or 0
/// (`Snapshot::periods_with_values`), cached like the reports. Blocking.
pub fn cached_periods_with_values(
    state: &AppState,
    served: &Snapshot,
    card: &str,
    when: When,
    span: u32,
) -> Result<Arc<Vec<PeriodId>>, ApiError> {
    let key = report_key(served, card, when, span);
    let memo = &state.cache.with_data;
    if memo.get(&key).is_none() {
        memo.retain(|k| k.version >= key.version && k.generation >= key.generation);
    }
    memo.get_or_fill(
        &key,
        |_| true,
        |_| served.periods_with_values(card, &span_periods(when, span), when.as_of),
    )
    .map_err(ApiError::from)
}

/// The `span` periods ending with `when.period`, oldest first.
fn span_periods(when: When, span: u32) -> Vec<PeriodId> {
    (0..span as i32)
        .rev()
        .map(|i| when.period.shift(-i))
        .collect()
}

/// [`cached_reports`], or with `live` every period evaluated afresh (frozen ones too).
pub fn cached_reports_of(
    state: &AppState,
    served: &Snapshot,
    card: &str,
    when: When,
    span: u32,
    live: bool,
) -> Result<Arc<CachedReports>, ApiError> {
    served.scorecard(card)?;
    let key = ReportKey {
        live,
        ..report_key(served, card, when, span)
    };
    state
        .cache
        .get_or_fill(&key, || {
            served.evaluate(&EvalRequest {
                scorecards: vec![card.to_string()],
                periods: span_periods(when, span),
                as_of: when.as_of,
                live,
                ..EvalRequest::default()
            })
        })
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_misses_of_one_report_evaluate_it_once() {
        let cache = Arc::new(ReportCache::default());
        let key = ReportKey {
            version: 1,
            generation: 1,
            scorecard: "sales".into(),
            period: "2026-Q3".parse().unwrap(),
            span: 1,
            as_of: 0,
            frozen: 0,
            live: false,
        };
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, key, fills) = (cache.clone(), key.clone(), fills.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_fill(&key, || {
                            fills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(Vec::new())
                        })
                        .unwrap()
                        .json()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(&t.join().unwrap()[..], b"null");
        }
        assert_eq!(fills.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.get(&key).is_some());
        // An error is not kept: the next ask evaluates again.
        let other = ReportKey { span: 2, ..key };
        assert!(cache.get_or_fill(&other, || Err("boom")).is_err());
        assert!(cache.get(&other).is_none());
    }
}
