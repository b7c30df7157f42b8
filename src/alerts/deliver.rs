//! Webhook delivery: POSTing due messages of the outbox, retrying with
//! exponential backoff, and the background [`Worker`] that does it for
//! `kpi serve`.
//!
//! Delivery is at least once: a message stays `pending` in the database
//! until the receiver takes it (2xx, and for DingTalk, WeCom and Feishu an
//! error code 0 in the answer), so a crash at any point only delays it.
//! Each POST carries `X-KPI-Notification: <outbox id>`, the same on every
//! retry, for receivers that want to drop the rare duplicate (an answer
//! that was lost on the way back).
//!
//! Every lane (webhook and URL) is delivered on a thread of its own, in
//! order: a receiver that hangs costs its own lane a timeout per try and
//! never delays another lane.

use crate::metrics::Delivery;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::outbox::{self, LaneHead, Notification};
use super::{AlertError, robots};
use crate::config::AlertSettings;
use crate::period::Millis;
use crate::store::db;
use crate::store::engine_db::{AsDb, Db, EngineConn};

/// How notifications are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOptions {
    /// Tries of one notification before it is marked failed (alerts.toml).
    pub max_attempts: u32,
    /// Limit of one POST, connecting and answering included.
    pub timeout: Duration,
    /// Wait after the first failed try; it doubles after each further one…
    pub backoff: Duration,
    /// …up to this.
    pub max_backoff: Duration,
}

impl DeliveryOptions {
    /// 5 s per POST; retries after 1 s, 2 s, 4 s … at most 5 min apart.
    pub fn new(max_attempts: u32) -> DeliveryOptions {
        DeliveryOptions {
            max_attempts: max_attempts.max(1),
            timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }

    pub fn from_settings(settings: &AlertSettings) -> DeliveryOptions {
        DeliveryOptions::new(settings.max_attempts)
    }

    /// The wait after the `attempts`-th failed try (attempts ≥ 1).
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliveryReport {
    /// POSTs made.
    pub attempts: usize,
    pub delivered: usize,
    /// Tries that failed and will be retried.
    pub retrying: usize,
    /// Notifications marked failed (their last try failed).
    pub failed: usize,
    /// Notifications still pending afterwards (due later).
    pub pending: usize,
    /// One line per failed try: "webhook (url): error".
    pub errors: Vec<String>,
}

impl DeliveryReport {
    fn add(&mut self, other: DeliveryReport) {
        self.attempts += other.attempts;
        self.delivered += other.delivered;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.pending = other.pending;
        self.errors.extend(other.errors);
    }
}

/// POSTs the pending messages due at `now` (UTC millis), each lane in
/// order on a thread of its own, and records the outcomes: a message the
/// receiver takes is delivered; anything else (another status, a robot's
/// error code, a refused connection, a timeout) is retried after a backoff,
/// or marked failed when it was the last of `max_attempts`. A lane stops at
/// its first failure: its later messages wait behind the retry, in order.
///
/// Blocking: a POST may take up to `opts.timeout`; lanes run side by side.
/// No transaction is held while a POST is in flight.
pub fn deliver_due(
    conn: &impl AsDb,
    now: Millis,
    opts: &DeliveryOptions,
) -> Result<DeliveryReport, AlertError> {
    deliver_due_until(&conn.as_db(), now, opts, &|| false)
}

/// How long a claim outlasts the request's timeout: a deliverer that dies
/// in the middle of a POST leaves the message to others after
/// timeout + this.
const LEASE_MARGIN: Millis = 5_000;

type Stop<'a> = &'a (dyn Fn() -> bool + Sync);

fn deliver_due_until(
    conn: &Db<'_>,
    now: Millis,
    opts: &DeliveryOptions,
    stop: Stop<'_>,
) -> Result<DeliveryReport, AlertError> {
    let heads: Vec<LaneHead> = outbox::lane_heads(conn)?
        .into_iter()
        .filter(|h| h.next_attempt_at <= now)
        .collect();
    // A SQLite file gives each lane a connection of its own; lanes over one
    // PostgreSQL connection (`kpi alerts --send`) take turns.
    let path = conn.path();
    let mut report = DeliveryReport::default();
    match path {
        Some(path) if heads.len() > 1 => {
            let reports: Vec<Result<DeliveryReport, AlertError>> = std::thread::scope(|s| {
                let handles: Vec<_> = heads
                    .iter()
                    .map(|h| {
                        let path = &path;
                        s.spawn(move || {
                            let c = db::open(path)?;
                            deliver_lane(&Db::Sqlite(&c), h, now, opts, stop)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a delivery lane panicked"))
                    .collect()
            });
            for r in reports {
                report.add(r?);
            }
        }
        _ => {
            for h in &heads {
                report.add(deliver_lane(conn, h, now, opts, stop)?);
            }
        }
    }
    report.pending = outbox::pending_count(conn)?;
    Ok(report)
}

fn agent(opts: &DeliveryOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(opts.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("kpi-engine/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Delivers one lane's due messages in order, up to its first failure.
fn deliver_lane(
    conn: &Db<'_>,
    head: &LaneHead,
    now: Millis,
    opts: &DeliveryOptions,
    stop: Stop<'_>,
) -> Result<DeliveryReport, AlertError> {
    let started = Instant::now();
    let clock = || now + started.elapsed().as_millis() as Millis;
    let agent = agent(opts);
    let mut report = DeliveryReport::default();
    for n in outbox::lane(conn, &head.webhook, &head.url)? {
        if stop() || n.next_attempt_at > clock() {
            break;
        }
        // The lease outlasts the POST, so nobody else sends it meanwhile.
        let lease = clock() + opts.timeout.as_millis() as Millis + LEASE_MARGIN;
        if !outbox::claim(conn, n.id, clock(), lease)? {
            break;
        }
        report.attempts += 1;
        let attempts = n.attempts + 1;
        let outcome = post(&agent, &n, opts.timeout);
        let at = clock();
        match outcome {
            Ok(()) => {
                outbox::mark_delivered(conn, n.id, attempts, at)?;
                crate::metrics::get().notification(name(&n), Delivery::Delivered);
                report.delivered += 1;
            }
            Err(e) => {
                report.errors.push(format!("{} ({}): {e}", name(&n), n.url));
                let retry_at = (attempts < opts.max_attempts)
                    .then(|| at + opts.backoff_after(attempts).as_millis() as Millis);
                outbox::mark_attempt_failed(conn, n.id, attempts, &e, retry_at, at)?;
                if retry_at.is_some() {
                    crate::metrics::get().notification(name(&n), Delivery::Retried);
                    report.retrying += 1;
                    break;
                }
                tracing::warn!(
                    "the notification of alert {} to {} failed after {attempts} tries: {e}",
                    n.alert_id,
                    name(&n)
                );
                crate::metrics::get().notification(name(&n), Delivery::Failed);
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

fn name(n: &Notification) -> &str {
    if n.webhook.is_empty() {
        "webhook"
    } else {
        &n.webhook
    }
}

/// One POST, signed now when the robot has a secret; Err is the message
/// kept in `last_error`.
fn post(agent: &ureq::Agent, n: &Notification, timeout: Duration) -> Result<(), String> {
    let (url, body) = robots::signed(
        n.kind,
        &n.url,
        &n.payload,
        n.secret.as_deref(),
        wall_clock(),
    );
    let result = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .header("X-KPI-Notification", n.id.to_string())
        .send(body.as_str());
    match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_vec()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            robots::judge(n.kind, status, &text)
        }
        Err(ureq::Error::Timeout(_)) => Err(format!(
            "no answer within {} s (timeout)",
            timeout.as_secs_f64()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Delivers what is due now, then keeps retrying (sleeping between tries)
/// while something is pending and the next try falls within `budget` of the
/// start; no POST starts after the budget is spent. What is left stays
/// pending for a later run. For `kpi alerts --send`.
pub fn deliver_within(
    conn: &impl AsDb,
    opts: &DeliveryOptions,
    budget: Duration,
) -> Result<DeliveryReport, AlertError> {
    let conn = &conn.as_db();
    let started = Instant::now();
    let over = || started.elapsed() >= budget;
    let mut total = DeliveryReport::default();
    loop {
        let now = wall_clock();
        total.add(deliver_due_until(conn, now, opts, &over)?);
        if over() {
            break;
        }
        let Some(next) = outbox::next_due(conn)? else {
            break;
        };
        let wait = Duration::from_millis((next - wall_clock()).max(0) as u64);
        if started.elapsed() + wait > budget {
            break;
        }
        std::thread::sleep(wait);
    }
    Ok(total)
}

fn wall_clock() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// How often the worker looks at the outbox when nothing wakes it (other
/// processes, such as `kpi alerts`, may queue notifications too).
const POLL: Duration = Duration::from_secs(30);

enum Msg {
    Wake,
    /// A lane's thread is done with its work (it may not have exited yet).
    LaneDone((String, String)),
    Options(DeliveryOptions),
}

/// Delivers in the background: a coordinating thread watches the outbox
/// (at start, when woken, when a lane's retry falls due, and every 30 s)
/// and runs every lane that is due on a thread of its own, each with its
/// own connection.
pub struct Worker {
    tx: Mutex<Sender<Msg>>,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// A running lane, by (webhook, url).
type Lanes = HashMap<(String, String), JoinHandle<()>>;

impl Worker {
    pub fn spawn(db_path: PathBuf, opts: DeliveryOptions) -> Worker {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let wake = tx.clone();
        let handle = std::thread::Builder::new()
            .name("kpi-alert-delivery".into())
            .spawn(move || {
                let mut opts = opts;
                let mut conn: Option<EngineConn> = None;
                let mut lanes = Lanes::new();
                while !flag.load(Ordering::SeqCst) {
                    lanes.retain(|_, h| !h.is_finished());
                    let wait =
                        match coordinate(&db_path, &mut conn, &opts, &flag, &mut lanes, &wake) {
                            Ok(wait) => wait,
                            Err(e) => {
                                tracing::warn!("alert delivery: {e}");
                                conn = None;
                                Duration::from_secs(5)
                            }
                        };
                    // A finished lane is dropped here, not by `is_finished`: its thread
                    // sends LaneDone just before it exits, and a lane still counted as
                    // running would wait for the next 30 s poll for its retry.
                    let mut handle = |msg: Msg, opts: &mut DeliveryOptions| match msg {
                        Msg::Wake => {}
                        Msg::LaneDone(key) => {
                            if let Some(h) = lanes.remove(&key) {
                                let _ = h.join();
                            }
                        }
                        Msg::Options(o) => *opts = o,
                    };
                    match rx.recv_timeout(wait) {
                        Ok(msg) => handle(msg, &mut opts),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    for msg in rx.try_iter() {
                        handle(msg, &mut opts);
                    }
                }
                for (_, h) in lanes {
                    let _ = h.join();
                }
            })
            .expect("spawn the alert delivery thread");
        Worker {
            tx: Mutex::new(tx),
            stop,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Look at the outbox now (new notifications were queued).
    pub fn wake(&self) {
        let _ = self.tx.lock().expect("worker channel").send(Msg::Wake);
    }

    /// New options (after a reload changed max_attempts).
    pub fn set_options(&self, opts: DeliveryOptions) {
        let _ = self
            .tx
            .lock()
            .expect("worker channel")
            .send(Msg::Options(opts));
    }

    /// Stops the threads after the POSTs in flight, if any, and waits for them.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
        if let Some(h) = self.handle.lock().expect("worker handle").take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Do not wait for a POST in flight: the threads end right after it.
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// Starts every due lane that is not running; returns how long to sleep
/// before looking again.
fn coordinate(
    db_path: &Path,
    conn: &mut Option<EngineConn>,
    opts: &DeliveryOptions,
    stop: &Arc<AtomicBool>,
    lanes: &mut Lanes,
    wake: &Sender<Msg>,
) -> Result<Duration, AlertError> {
    if conn.is_none() {
        *conn = Some(EngineConn::open(db_path)?);
    }
    let c = conn.as_ref().expect("just opened");
    let now = wall_clock();
    let mut wait = POLL;
    for head in outbox::lane_heads(c)? {
        let key = (head.webhook.clone(), head.url.clone());
        if lanes.contains_key(&key) {
            continue;
        }
        if head.next_attempt_at > now {
            let until = Duration::from_millis((head.next_attempt_at - now) as u64);
            wait = wait.min(until);
            continue;
        }
        let (path, opts, stop, wake, done) = (
            db_path.to_path_buf(),
            opts.clone(),
            stop.clone(),
            wake.clone(),
            key.clone(),
        );
        let lane = std::thread::Builder::new()
            .name("kpi-alert-lane".into())
            .spawn(move || {
                let run = || -> Result<DeliveryReport, AlertError> {
                    let c = EngineConn::open(&path)?;
                    deliver_lane(&c.db(), &head, wall_clock(), &opts, &|| {
                        stop.load(Ordering::SeqCst)
                    })
                };
                if let Err(e) = run() {
                    tracing::warn!("alert delivery to {}: {e}", head.webhook);
                }
                let _ = wake.send(Msg::LaneDone(done));
            })
            .expect("spawn an alert delivery lane");
        lanes.insert(key, lane);
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = DeliveryOptions::new(8);
        let secs: Vec<u64> = (1..=11).map(|n| o.backoff_after(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(o.backoff_after(1000), Duration::from_secs(300));
        assert_eq!(DeliveryOptions::new(0).max_attempts, 1);
    }
}
