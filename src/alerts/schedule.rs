//! The alert scheduler of `kpi serve`: evaluates the conditions on its own
//! thread at start, every `evaluate_every` and whenever poked (after a reload
//! or an ingest), wakes the delivery [`Worker`] when a transition queued
//! notifications, and prunes delivered notifications older than
//! `keep_delivered`. It logs readable sentences: each transition when there
//! are a few, one summary line when there are many (a first start).
//!
//! It asks for the configuration and store to use at each evaluation, so it
//! always judges what the server serves; it keeps nothing between runs but a
//! database connection (the state is in the database).
//!
//! On PostgreSQL several servers may share the database (SPEC 20): only the
//! one holding the scheduler's lease ([`Lease`], a session-level advisory
//! lock) evaluates. The others try to take it at each of their turns (every
//! `evaluate_every`, and when poked), so one of them takes over within
//! `evaluate_every` of the holder's death. `kpi_alert_scheduler_leader` tells
//! which server holds it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::deliver::{DeliveryOptions, Worker};
use super::message::Names;
use super::state::Applied;
use super::{AlertError, AlertState, Kind, evaluate_applied, outbox};
use crate::config::ConfigSnapshot;
use crate::eval::Records;
use crate::store::engine_db::EngineConn;
use crate::store::pg::lease::Lease;

/// The evaluation loop plus its delivery worker.
pub struct Scheduler {
    tx: Mutex<Sender<()>>,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
    worker: Arc<Worker>,
}

impl Scheduler {
    /// Starts evaluating (at once, then every `evaluate_every` of the current
    /// configuration) and delivering. `current` returns the configuration and
    /// store being served.
    pub fn spawn<F>(db_path: PathBuf, current: F) -> Scheduler
    where
        F: Fn() -> (Arc<ConfigSnapshot>, Records) + Send + 'static,
    {
        let (cfg, _) = current();
        let worker = Arc::new(Worker::spawn(
            db_path.clone(),
            DeliveryOptions::from_settings(&cfg.alerts),
        ));
        let (tx, rx) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, w) = (stop.clone(), worker.clone());
        let handle = std::thread::Builder::new()
            .name("kpi-alert-scheduler".into())
            .spawn(move || {
                let mut conn: Option<EngineConn> = None;
                let mut turn = Turn::new(&db_path);
                let mut opts = DeliveryOptions::from_settings(&cfg.alerts);
                while !flag.load(Ordering::SeqCst) {
                    let (cfg, store) = current();
                    let fresh = DeliveryOptions::from_settings(&cfg.alerts);
                    if fresh != opts {
                        w.set_options(fresh.clone());
                        opts = fresh;
                    }
                    if turn.mine()
                        && let Err(e) = tick(&db_path, &mut conn, &cfg, store, &w)
                    {
                        tracing::warn!("alert evaluation: {e}");
                        conn = None;
                    }
                    let every = cfg.alerts.evaluate_every.max(Duration::from_secs(1));
                    drop(cfg);
                    match rx.recv_timeout(every) {
                        Ok(()) => settle(&rx, &flag),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    // Pokes that came in meanwhile are served by this one run.
                    for () in rx.try_iter() {}
                }
            })
            .expect("spawn the alert scheduler thread");
        Scheduler {
            tx: Mutex::new(tx),
            stop,
            handle: Mutex::new(Some(handle)),
            worker,
        }
    }

    /// Evaluate now: the configuration or the records changed.
    pub fn poke(&self) {
        let _ = self.tx.lock().expect("scheduler channel").send(());
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Stops both threads, waiting for an evaluation or POST in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.poke();
        if let Some(h) = self.handle.lock().expect("scheduler handle").take() {
            let _ = h.join();
        }
        self.worker.stop();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.poke();
    }
}

/// Whether this process evaluates: always on SQLite; on PostgreSQL while it
/// holds the scheduler's lease.
enum Turn {
    Always,
    Lease {
        url: String,
        held: Option<Box<Lease>>,
        /// Whether "another server holds it" was logged since the last change.
        told_waiting: bool,
    },
}

impl Turn {
    fn new(db_path: &std::path::Path) -> Turn {
        match crate::engine::postgres_url(db_path) {
            Some(url) => Turn::Lease {
                url: url.to_string(),
                held: None,
                told_waiting: false,
            },
            None => {
                crate::metrics::get().scheduler_leader.set(1);
                Turn::Always
            }
        }
    }

    /// Whether this turn is ours: the lease is kept, or taken now.
    fn mine(&mut self) -> bool {
        let Turn::Lease {
            url,
            held,
            told_waiting,
        } = self
        else {
            return true;
        };
        if let Some(lease) = held {
            if lease.still_held() {
                return true;
            }
            tracing::warn!("lost the alert scheduler's lease (the database connection dropped)");
            *held = None;
        }
        let taken = match Lease::try_take(url) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot ask for the alert scheduler's lease: {e}");
                None
            }
        };
        let mine = taken.is_some();
        if mine {
            tracing::info!(
                "this server runs the alert scheduler (it holds the lease on the database)"
            );
            *told_waiting = false;
        } else if !*told_waiting {
            tracing::info!(
                "another server runs the alert scheduler; this one tries to take over every evaluate_every"
            );
            *told_waiting = true;
        }
        *held = taken.map(Box::new);
        crate::metrics::get().scheduler_leader.set(i64::from(mine));
        mine
    }
}

/// A poke waits this long for the next one: an integration pushing records
/// in a burst of POSTs gets one evaluation after the burst, not one per POST
/// over states that are gone before the evaluation ends.
const BURST_QUIET: Duration = Duration::from_millis(250);

/// ... but no longer than this after the first poke.
const BURST_MAX: Duration = Duration::from_secs(2);

/// Waits until no poke has come for [`BURST_QUIET`] (at most [`BURST_MAX`]),
/// or the scheduler is stopping.
fn settle(rx: &mpsc::Receiver<()>, stop: &AtomicBool) {
    let started = std::time::Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < BURST_MAX {
        match rx.recv_timeout(BURST_QUIET) {
            Ok(()) => {}
            Err(_) => return,
        }
    }
}

fn tick(
    db_path: &std::path::Path,
    conn: &mut Option<EngineConn>,
    cfg: &Arc<ConfigSnapshot>,
    store: Records,
    worker: &Worker,
) -> Result<(), AlertError> {
    if conn.is_none() {
        *conn = Some(EngineConn::open(db_path)?);
    }
    let c = conn.as_ref().expect("just opened");
    let now = chrono::Utc::now().timestamp_millis();
    let teams = store.store.teams()?;
    let applied = evaluate_applied(cfg, c, store, now)?;
    for line in log_lines(&Names { cfg, teams: &teams }, &applied) {
        tracing::info!("{line}");
    }
    if applied.messages > 0 {
        worker.wake();
    }
    let keep = cfg.alerts.keep_delivered.as_millis() as i64;
    let pruned = outbox::prune(c, now - keep)?;
    if pruned > 0 {
        tracing::info!("pruned {pruned} delivered notification(s) older than keep_delivered");
    }
    Ok(())
}

/// At most this many transitions are logged one by one.
const LOGGED_ONE_BY_ONE: usize = 5;

/// What an evaluation logs: a sentence per transition when there are a
/// few, else one summary.
pub fn log_lines(names: &Names<'_>, applied: &Applied) -> Vec<String> {
    let mut lines = Vec::new();
    if !applied.settled.is_empty() {
        let periods: Vec<String> = applied.settled.iter().map(|p| p.to_string()).collect();
        lines.push(format!(
            "settled the alerts of {}, which closed while no evaluation ran",
            periods.join(", ")
        ));
    }
    let ts = &applied.transitions;
    if ts.is_empty() {
        return lines;
    }
    if ts.len() <= LOGGED_ONE_BY_ONE {
        for t in ts {
            lines.push(sentence(names, t));
        }
        return lines;
    }
    let count = |kind: Kind, state: AlertState| {
        ts.iter()
            .filter(|t| t.payload.kind == kind && t.payload.state == state)
            .count()
    };
    let muted = ts.iter().filter(|t| t.muted.is_some()).count();
    lines.push(format!(
        "alerts: {} at risk and {} missed fired, {} resolved; {} notification(s) queued{}",
        count(Kind::AtRisk, AlertState::Firing),
        count(Kind::Missed, AlertState::Firing),
        ts.iter()
            .filter(|t| t.payload.state == AlertState::Resolved)
            .count(),
        applied.messages,
        if muted > 0 {
            format!(", {muted} held back by silences or inhibition")
        } else {
            String::new()
        }
    ));
    lines
}

/// "revenue of North (north) in 2026-Q3 is at risk: ¥200.00 against a
/// target of ¥1,000, on pace for ¥409.00; 1 notification queued."
fn sentence(names: &Names<'_>, t: &super::Transition) -> String {
    let p = &t.payload;
    let what = match (p.kind, p.state) {
        (Kind::AtRisk, AlertState::Firing) => "is at risk",
        (Kind::Missed, AlertState::Firing) => "missed its target",
        (Kind::AtRisk, AlertState::Resolved) => "is no longer at risk",
        (Kind::Missed, AlertState::Resolved) => "no longer misses its target",
    };
    let value = match p.value {
        Some(v) => names.value(&p.kpi, Some(v)),
        None => "no data".to_string(),
    };
    let mut s = format!(
        "{} of {} ({}) in {} {what}: {value}",
        p.kpi,
        names.team(&p.team),
        p.team,
        p.period,
    );
    if let Some(target) = p.target {
        s.push_str(&format!(
            " against a target of {}",
            names.value(&p.kpi, Some(target))
        ));
    }
    if let Some(pace) = p.projected {
        s.push_str(&format!(
            ", on pace for {}",
            names.value(&p.kpi, Some(pace))
        ));
    }
    match &t.muted {
        Some(why) => s.push_str(&format!("; not sent ({why})")),
        None => s.push_str(&format!("; {} notification(s) queued", t.notifications)),
    }
    s
}
