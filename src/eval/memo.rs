//! Shape answers kept across evaluations: the record side of a served
//! snapshot keeps one [`ShapeMemo`], so every request and the alert scheduler
//! share the answers, and a change keeps those it did not touch (an ingest of
//! deals recomputes only the shapes that read deals).
//!
//! A serving memo ([`ShapeMemo::serving`]) answers a missed shape over the whole window of
//! periods a request could ask (the last [`SERVED_WINDOW`] periods up to now), not only the
//! asked ones: a scorecard GET asks one period, and the next period's GET then finds the answer
//! instead of running every pass again over one more period.

use std::sync::Arc;

use crate::memo::Memo;
use crate::period::{Calendar, PeriodId};
use crate::query::{Agg, Query, QueryError, ShapeResult};
use crate::store::RecordStore;

/// Entries kept before the memo starts over.
const ENTRIES: usize = 4096;

/// A shape answered over more periods than this is not widened further.
const MAX_PERIODS: usize = 32;

/// The periods a serving memo answers a missed shape over: this many up to the one containing
/// now (the dashboard's period picker offers the last 12 quarters), each with the one before.
pub const SERVED_WINDOW: i32 = 12;

/// One answer, the entities it read, and the store epoch it was read in.
pub struct Answer {
    result: Arc<ShapeResult>,
    entities: Vec<String>,
    epoch: u64,
}

pub struct ShapeMemo {
    memo: Memo<String, Answer>,
    /// Answer a miss over the served window ([`SERVED_WINDOW`]) too.
    window: bool,
}

impl Default for ShapeMemo {
    fn default() -> Self {
        ShapeMemo {
            memo: Memo::new(ENTRIES),
            window: false,
        }
    }
}

impl ShapeMemo {
    /// The memo of a long-running server: a miss is answered over the served window too.
    pub fn serving() -> ShapeMemo {
        ShapeMemo {
            window: true,
            ..ShapeMemo::default()
        }
    }

    /// The periods a miss of `query` in `period` is answered over besides the asked ones: when
    /// serving, the window up to now of `period`'s grain if it holds `period` (a cut query is
    /// a question of one as-of: it is not widened).
    fn window(&self, cal: &Calendar, query: &Query, period: PeriodId) -> Vec<PeriodId> {
        if !self.window || query.is_cut() {
            return Vec::new();
        }
        let now = cal.containing(period.grain, chrono::Utc::now().timestamp_millis());
        let first = now.shift(1 - SERVED_WINDOW);
        if period < first || period > now {
            return Vec::new();
        }
        (-SERVED_WINDOW..1).map(|i| now.shift(i)).collect()
    }

    /// The answer to `query` + `agg` covering `period`, from the memo when it
    /// has one of the store's current epoch, else computed over `periods`
    /// (and the periods the kept answer had, so alternating asks converge).
    pub fn answer(
        &self,
        store: &dyn RecordStore,
        cal: &Calendar,
        query: &Query,
        agg: &Agg,
        periods: &[PeriodId],
        period: PeriodId,
    ) -> Result<Arc<ShapeResult>, QueryError> {
        let key = format!("{cal:?}|{query:?}|{agg:?}");
        let epoch = store.epoch();
        let answer = self.memo.get_or_fill(
            &key,
            |a| a.epoch == epoch && a.result.periods().contains(&period),
            |old| {
                let mut all = periods.to_vec();
                all.extend(self.window(cal, query, period));
                all.sort();
                all.dedup();
                if let Some(old) = old
                    .filter(|o| o.epoch == epoch)
                    .filter(|o| o.result.periods().len() + all.len() <= MAX_PERIODS)
                {
                    all.extend_from_slice(old.result.periods());
                    all.sort();
                    all.dedup();
                }
                Ok::<_, QueryError>(Answer {
                    result: Arc::new(store.answer(query, agg, &all, cal)?),
                    entities: query.entities(store.schema()),
                    epoch,
                })
            },
        )?;
        Ok(answer.result.clone())
    }

    /// A memo for the records after a change: the answers that read none of
    /// the entities `changed` picks.
    pub fn after_change(&self, changed: impl Fn(&str) -> bool) -> ShapeMemo {
        ShapeMemo {
            memo: self
                .memo
                .filtered(|_, a| !a.entities.iter().any(|e| changed(e))),
            window: self.window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::period::Grain;
    use crate::query::{AggValue, Filter, PeriodRef};
    use crate::store::Schema;
    use crate::store::columns::ColumnStore;

    fn store(cal: &Calendar) -> ColumnStore {
        let schema = Schema::from_source(&Source::new(
            "schema.toml",
            "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\nclosed_at = \"time?\"\n",
        ))
        .unwrap();
        let team = serde_json::json!({"id": "t", "name": "T"});
        let now = chrono::Utc::now().to_rfc3339();
        let deal = serde_json::json!({"id": "d", "team": "t", "closed_at": now});
        ColumnStore::in_memory(
            Arc::new(schema),
            cal,
            &[
                ("teams", "teams", vec![team]),
                ("deals", "deals", vec![deal]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_serving_memo_answers_a_miss_over_its_window_and_a_plain_one_over_the_asked_periods() {
        let cal = Calendar::utc();
        let store = store(&cal);
        let mut q = Query::new("deals");
        q.filters.push(Filter::InPeriod {
            field: "closed_at".into(),
            period: PeriodRef::Relative(0),
            cut: None,
        });
        let now = cal.containing(Grain::Quarter, chrono::Utc::now().timestamp_millis());
        let asked = [now.shift(-3)];
        let plain = ShapeMemo::default();
        let a = plain
            .answer(&store, &cal, &q, &Agg::Count, &asked, asked[0])
            .unwrap();
        assert_eq!(a.periods(), &asked);
        let serving = ShapeMemo::serving();
        let a = serving
            .answer(&store, &cal, &q, &Agg::Count, &asked, asked[0])
            .unwrap();
        let window: Vec<PeriodId> = (-SERVED_WINDOW..1).map(|i| now.shift(i)).collect();
        assert_eq!(a.periods(), &window[..]);
        assert_eq!(a.get(0, now), Some(&AggValue::Number(1.0)));
        // The next quarter's ask is the same answer; one outside the window is not widened.
        let b = serving
            .answer(&store, &cal, &q, &Agg::Count, &[now], now)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let old = now.shift(-40);
        let c = serving
            .answer(&store, &cal, &q, &Agg::Count, &[old], old)
            .unwrap();
        assert!(c.periods().contains(&old) && c.periods().len() == window.len() + 1);
        // What survives a change keeps the window setting.
        assert!(serving.after_change(|_| true).window);
    }
}
