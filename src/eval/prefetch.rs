//! Answering the shapes of an evaluation ahead, on every core.
//!
//! Formulas ask for shapes one at a time, as they run, so a plain evaluation runs its passes
//! one after another on one core. [`Evaluation::prefetch`] first *probes*: it runs the formulas
//! of the KPIs about to be evaluated, once per period, with every aggregate answered by a
//! placeholder and recorded instead of computed (no value is kept). The recorded shapes are then
//! answered together, spread over the cores, into the shape memo and the evaluation's own cache;
//! the real evaluation that follows finds them there. A shape a probe cannot see (one behind a
//! branch its placeholder values did not take) is still answered when first asked, as before,
//! so a probe changes no value, only when the passes run.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Condvar, Mutex};

use super::{Evaluation, Subject};
use crate::config::Scorecard;
use crate::config::scorecards::Subjects;
use crate::period::PeriodId;
use crate::query::{Agg, AggValue, Filter, Query};

/// The most aggregates one probe records (the standard library asks 52 shapes); beyond it a
/// probed aggregate has no data, which ends the formula at once.
pub(super) const PROBE_LIMIT: usize = 256;

/// How long a probe runs formulas before it stops (the library's take about a millisecond).
const PROBE_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// What a probed aggregate answers: a value of the right kind, so the formula goes on.
pub(super) fn placeholder(agg: &Agg) -> AggValue {
    match agg {
        Agg::Values(_) => AggValue::Items(Default::default()),
        Agg::CountBy(_) => AggValue::Counts(Default::default()),
        _ => AggValue::Number(1.0),
    }
}

/// One shape to answer ahead, over the periods its first ask would answer it over.
struct Job {
    query: Query,
    agg: Agg,
    periods: Vec<PeriodId>,
}

impl Evaluation {
    /// Answers ahead, in parallel, the shapes the formulas of `kpis` ask for `subjects` (one of
    /// each kind is enough: the shapes depend on the kind, not on the team) in `periods`.
    pub fn prefetch(self: &Rc<Self>, kpis: &[usize], subjects: &[Subject], periods: &[PeriodId]) {
        let jobs = self.jobs(self.probe(kpis, subjects, periods));
        if jobs.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let (store, memo, cal) = (&*self.records.store, &*self.records.memo, self.calendar());
        let answers = parallel(
            &jobs,
            |j| joins(&j.query),
            |j| {
                let last = *j.periods.last().expect("a job has periods");
                memo.answer(store, cal, &j.query, &j.agg, &j.periods, last)
            },
        );
        let mut shapes = self.shapes.borrow_mut();
        for (job, answer) in jobs.into_iter().zip(answers) {
            // An error is left for the formula that asks: it reports it where it belongs.
            if let Ok(a) = answer {
                shapes.insert((job.query, job.agg), a);
            }
        }
        tracing::debug!(
            shapes = shapes.len(),
            ms = started.elapsed().as_millis() as u64,
            "prefetched shapes"
        );
    }

    /// [`Self::prefetch`] for the KPIs the scorecards `cards` weigh in `periods`, for their kind
    /// of subject.
    pub fn prefetch_scorecards(self: &Rc<Self>, cards: &[&Scorecard], periods: &[PeriodId]) {
        let mut kpis: Vec<usize> = cards
            .iter()
            .flat_map(|c| {
                periods
                    .iter()
                    .flat_map(|p| c.weights_for(*p).unwrap_or_default())
            })
            .filter_map(|(k, _)| self.config.kpi_index(k))
            .collect();
        kpis.sort_unstable();
        kpis.dedup();
        let subjects: Vec<Subject> = cards
            .iter()
            .filter_map(|c| match c.subjects {
                Subjects::Teams => (!self.teams.is_empty()).then_some(Subject::Team(0)),
                Subjects::Owners => (!self.owners.is_empty()).then_some(Subject::Owner(0)),
            })
            .collect();
        self.prefetch(&kpis, &subjects, periods);
    }

    /// Runs the formulas with placeholder answers and returns the shapes they asked.
    fn probe(
        self: &Rc<Self>,
        kpis: &[usize],
        subjects: &[Subject],
        periods: &[PeriodId],
    ) -> Vec<(Query, Agg, PeriodId)> {
        let team = subjects.iter().find(|s| matches!(s, Subject::Team(_)));
        let owner = subjects.iter().find(|s| matches!(s, Subject::Owner(_)));
        *self.probe.borrow_mut() = Some(Vec::new());
        let started = std::time::Instant::now();
        'probe: for subject in team.into_iter().chain(owner) {
            for &p in periods {
                for &k in kpis {
                    // A formula that computes for long without asking is not run again.
                    if started.elapsed() > PROBE_TIME {
                        break 'probe;
                    }
                    self.value_of(k, *subject, p);
                }
            }
        }
        self.probe.borrow_mut().take().unwrap_or_default()
    }

    /// The distinct shapes of `asked` not answered yet, each over the periods [`Self::shape`]
    /// would answer it over (a cut query: every asked period and the one before each, which
    /// answers each of them as asking it alone would). Semi-joins, the longest, first.
    fn jobs(&self, asked: Vec<(Query, Agg, PeriodId)>) -> Vec<Job> {
        let universe = self.periods.borrow().clone();
        let shapes = self.shapes.borrow();
        let mut jobs: Vec<Job> = Vec::new();
        let mut at: HashMap<(Query, Agg), usize> = HashMap::new();
        for (query, agg, period) in asked {
            let cut = query.is_cut();
            let key = (query, agg);
            if shapes.contains_key(&key) || (!cut && !universe.contains(&period)) {
                continue;
            }
            let i = match at.get(&key) {
                Some(i) => *i,
                None => {
                    let (query, agg) = key.clone();
                    at.insert(key, jobs.len());
                    let periods = if cut { Vec::new() } else { universe.clone() };
                    jobs.push(Job {
                        query,
                        agg,
                        periods,
                    });
                    jobs.len() - 1
                }
            };
            if cut {
                let ps = &mut jobs[i].periods;
                ps.extend([period.prev(), period]);
                ps.sort();
                ps.dedup();
            }
        }
        jobs.sort_by_key(|j| !joins(&j.query));
        jobs
    }
}

/// Whether `q` has a semi-join (`one_of` over another query): the longest passes, and the ones
/// holding the most memory.
fn joins(q: &Query) -> bool {
    q.filters
        .iter()
        .any(|f| matches!(f, Filter::InQuery { .. }))
}

/// `f` of every item, on as many threads as there are cores (at most one per item), each
/// taking the next item left, but never two `heavy` ones at once (a semi-join's pass holds bit
/// sets and a mask over every period and team: 300 MB at 9.2M deals, twice that when the two
/// conversions ran side by side); in the items' order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    heavy: impl Fn(&T) -> bool + Sync,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let queue = Queue {
        state: Mutex::new(Taking {
            left: (0..items.len()).collect(),
            heavy_running: false,
        }),
        turn: Condvar::new(),
    };
    let out: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(i) = queue.next(|i| heavy(&items[i])) {
                    // Lets the next heavy item go when this one ends, even by a panic.
                    let _done = heavy(&items[i]).then(|| HeavyDone(&queue));
                    let r = f(&items[i]);
                    *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item is taken by a thread")
        })
        .collect()
}

/// The items of [`parallel`] not taken yet.
struct Queue {
    state: Mutex<Taking>,
    /// Wakes a thread waiting for the heavy item running to end.
    turn: Condvar,
}

struct Taking {
    /// Indexes of the items left, in order.
    left: Vec<usize>,
    heavy_running: bool,
}

impl Queue {
    /// The first item left that may run now: a light one, or a heavy one while no heavy one
    /// runs. Waits while only heavy ones are left and one runs; None when none is left.
    fn next(&self, heavy: impl Fn(usize) -> bool) -> Option<usize> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.left.is_empty() {
                return None;
            }
            let busy = st.heavy_running;
            if let Some(k) = st.left.iter().position(|&i| !busy || !heavy(i)) {
                let i = st.left.remove(k);
                st.heavy_running |= heavy(i);
                return Some(i);
            }
            st = self.turn.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Held while a heavy item runs.
struct HeavyDone<'a>(&'a Queue);

impl Drop for HeavyDone<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        st.heavy_running = false;
        self.0.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Records;
    use crate::period::Grain;
    use crate::store::columns::ColumnStore;
    use crate::store::{RecordStore, db, demo_writer};
    use std::sync::Arc;

    /// The standard library over a new in-memory database with the demo CRM at `scale`, up to
    /// `until(calendar)`.
    fn library_on_demo(
        scale: u32,
        until: impl Fn(&crate::period::Calendar) -> i64,
    ) -> (Arc<crate::config::ConfigSnapshot>, Arc<ColumnStore>, i64) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in crate::init::library() {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = crate::load_checked(dir.path()).unwrap();
        let cal = &config.settings.calendar;
        let mut conn = db::open_in_memory().unwrap();
        db::migrate(&mut conn, &config.schema).unwrap();
        let until = until(cal);
        let demo = crate::demo::DemoOptions {
            scale,
            seed: 7,
            until,
        };
        demo_writer::write_demo(&mut conn, &config.schema, cal, &demo).unwrap();
        let store = Arc::new(ColumnStore::new(conn, config.schema.clone()));
        (config, store, until)
    }

    #[test]
    fn values_answered_ahead_in_parallel_equal_those_answered_when_asked() {
        let until_q3 = |cal: &crate::period::Calendar| {
            cal.period("2026-Q3".parse().unwrap()).start + 40 * 86_400_000
        };
        let (config, store, until) = library_on_demo(2, until_q3);
        let cal = &config.settings.calendar;
        let store: Arc<dyn RecordStore> = store;
        let last = cal.containing(Grain::Quarter, until);
        let periods: Vec<PeriodId> = (0..6).rev().map(|i| last.shift(-i)).collect();
        let eval = |ahead: bool| {
            let records = Records::new(store.clone());
            let e = Evaluation::new(config.clone(), records, until, &periods, false).unwrap();
            if ahead {
                let cards: Vec<&Scorecard> = config.scorecards.iter().collect();
                e.prefetch_scorecards(&cards, &periods);
                assert!(e.shapes_executed() > 10, "the probe found the shapes");
            }
            e
        };
        let (asked, ahead) = (eval(false), eval(true));
        let owners = (0..ahead.owners.len() as u32).take(5).map(Subject::Owner);
        let subjects: Vec<Subject> = (0..ahead.teams.len() as u32)
            .map(Subject::Team)
            .chain(owners)
            .collect();
        let mut compared = 0;
        for k in 0..config.kpis.len() {
            for &s in &subjects {
                for &p in &periods {
                    let (a, b) = (asked.value_of(k, s, p), ahead.value_of(k, s, p));
                    let bits = |v: Option<f64>| v.map(f64::to_bits);
                    assert_eq!(
                        bits(a.value),
                        bits(b.value),
                        "{} {s:?} {p}",
                        config.kpis[k].def.id
                    );
                    assert_eq!(a.error, b.error);
                    compared += usize::from(a.value.is_some());
                }
            }
        }
        assert!(compared > 500, "values with data: {compared}");
    }

    #[test]
    fn a_probe_loads_no_table() {
        let (config, store, until) =
            library_on_demo(1, |cal| cal.period("2026-Q3".parse().unwrap()).start);
        let cal = &config.settings.calendar;
        let periods = vec![cal.containing(Grain::Quarter, until)];
        let records = Records::new(store.clone());
        let e = Rc::new(Evaluation::new(config.clone(), records, until, &periods, false).unwrap());
        let loaded_before = store.loaded();
        let kpis: Vec<usize> = (0..config.kpis.len()).collect();
        let asked = e.probe(&kpis, &[Subject::Team(0)], &periods);
        assert!(asked.len() > 40, "every shape asked: {}", asked.len());
        // (Loading a table during the probe had it run out of time after the first KPI at 9.2M
        // deals: one shape answered ahead of 47.)
        assert_eq!(
            store.loaded(),
            loaded_before,
            "no table loaded by the probe"
        );
    }

    #[test]
    fn parallel_keeps_the_order_of_the_items_and_runs_one_heavy_item_at_a_time() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let items: Vec<u64> = (0..100).collect();
        let heavy = |x: &u64| x.is_multiple_of(10);
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out = parallel(&items, heavy, |x| {
            if heavy(x) {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                running.fetch_sub(1, Ordering::SeqCst);
            }
            x * x
        });
        assert_eq!(out, items.iter().map(|x| x * x).collect::<Vec<_>>());
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "never two heavy items at once"
        );
        assert!(parallel(&[] as &[u64], |_| true, |x| *x).is_empty());
    }
}
