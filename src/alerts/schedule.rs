//! The alert scheduler of `kpi serve`: evaluates the conditions on its own
//! thread at start, every `evaluate_every` and whenever poked (after a reload
//! or an ingest), and wakes the delivery [`Worker`] when a transition queued
//! notifications.
//!
//! It asks for the configuration and store to use at each evaluation, so it
//! always judges what the server serves; it keeps nothing between runs but a
//! database connection (the state is in the database).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::deliver::{DeliveryOptions, Worker};
use super::{AlertError, evaluate};
use crate::config::ConfigSnapshot;
use crate::eval::Records;
use crate::store::db;

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
                let mut conn: Option<Connection> = None;
                let mut opts = DeliveryOptions::from_settings(&cfg.alerts);
                while !flag.load(Ordering::SeqCst) {
                    let (cfg, store) = current();
                    let fresh = DeliveryOptions::from_settings(&cfg.alerts);
                    if fresh != opts {
                        w.set_options(fresh.clone());
                        opts = fresh;
                    }
                    if let Err(e) = tick(&db_path, &mut conn, &cfg, store, &w) {
                        tracing::warn!("alert evaluation: {e}");
                        conn = None;
                    }
                    let every = cfg.alerts.evaluate_every.max(Duration::from_secs(1));
                    drop(cfg);
                    match rx.recv_timeout(every) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
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

fn tick(
    db_path: &std::path::Path,
    conn: &mut Option<Connection>,
    cfg: &Arc<ConfigSnapshot>,
    store: Records,
    worker: &Worker,
) -> Result<(), AlertError> {
    if conn.is_none() {
        *conn = Some(db::open(db_path)?);
    }
    let c = conn.as_mut().expect("just opened");
    let now = chrono::Utc::now().timestamp_millis();
    let transitions = evaluate(cfg, c, store, now)?;
    for t in &transitions {
        tracing::info!(
            "alert {} {} (value {:?}, target {:?}); {} notification(s) queued",
            t.payload.id,
            t.payload.state.as_str(),
            t.payload.value,
            t.payload.target,
            t.notifications
        );
    }
    if transitions.iter().any(|t| t.notifications > 0) {
        worker.wake();
    }
    Ok(())
}
