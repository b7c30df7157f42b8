//! Alerts (SPEC 9 and 18): conditions, their state in the database, the
//! outbox of notifications and delivery to webhooks and chat robots.
//!
//! - [`conditions`] judges every (KPI, team) that has a target over the two
//!   periods of the alert grain: the open one (`at_risk`) and the one that
//!   closed last (`missed`). Pure: it only reads an [`Evaluation`].
//! - [`state`] keeps one row per alert in `_kpi_alerts` and applies the
//!   transitions (fired, resolved, fired again) in one transaction that also
//!   writes their notifications to the outbox; it also settles the alerts of
//!   periods that closed while nothing evaluated.
//! - [`notify`] turns the transitions of one evaluation into messages:
//!   [`silence`]s hold them back, `inhibit_children` folds children into
//!   their parent, `group_by` makes digests; [`message`] renders them
//!   ([`template`]) and [`robots`] knows each vendor's body, signature and
//!   error answers.
//! - [`outbox`] is `_kpi_outbox`: one row per message and webhook, pending
//!   until delivered or failed; each webhook is a lane of its own.
//! - [`deliver`] POSTs due messages with a timeout and retries with
//!   backoff, every lane independently; [`Worker`] does it in the background.
//! - [`schedule`] re-evaluates every `evaluate_every` and when poked, and
//!   prunes old delivered messages.
//! - [`view`] lists alerts with their delivery status (GET /api/alerts,
//!   `kpi alerts`); [`cli`] is `kpi alerts` with its filters and dry run.
//!
//! Architecture Invariant: the state of an alert lives only in the database.
//! Evaluating an unchanged condition again (after a reload, a restart, or
//! from another process) changes nothing and sends nothing.
//! Architecture Invariant: a transition and its notifications are written in
//! the same transaction, so a notification is never lost nor made twice; the
//! network is never touched while a transaction is open.

pub mod cli;
pub mod conditions;
pub mod deliver;
pub mod message;
pub mod notify;
pub mod outbox;
pub mod robots;
pub mod schedule;
pub mod silence;
pub mod state;
pub mod template;
pub mod view;

use std::sync::Arc;

use serde::Serialize;

use crate::config::ConfigSnapshot;
use crate::eval::{Evaluation, Records};
use crate::period::Millis;
use crate::store::StoreError;
use crate::store::engine_db::AsDb;

pub use deliver::{DeliveryOptions, DeliveryReport, Worker, deliver_due, deliver_within};
pub use schedule::Scheduler;
pub use state::{Applied, Judged, Payload, Transition};
pub use view::{AlertView, NotificationView, StateFilter, list, report, table};

/// Errors of the alerts layer.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("alerts database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state: expected firing, resolved or all, got {0:?}")]
    BadState(String),
    #[error("kind: expected missed or at_risk, got {0:?}")]
    BadKind(String),
    #[error("{0}")]
    Silence(#[from] silence::SilenceError),
    #[error("alerts database error: {0}")]
    Corrupt(String),
}

/// The two kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The open period is on pace to end worse than target.
    AtRisk,
    /// The period that closed last ended worse than target.
    Missed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missed => "missed",
            Kind::AtRisk => "at_risk",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "missed" => Some(Kind::Missed),
            "at_risk" => Some(Kind::AtRisk),
            _ => None,
        }
    }
}

/// The state of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// Evaluates every alert condition as of `as_of`, compares it with the state
/// stored in `conn` and applies the transitions (with their notifications
/// queued in the outbox), all in one transaction. Returns the transitions;
/// none when nothing changed.
///
/// `records` are read; `conn` holds the alert state (a SQLite connection,
/// usually to the same database file, or the engine's PostgreSQL database;
/// taken by reference or by value).
/// Call it on a blocking thread: it runs formulas and writes the database.
pub fn evaluate(
    config: &Arc<ConfigSnapshot>,
    conn: impl AsDb,
    records: Records,
    as_of: Millis,
) -> Result<Vec<Transition>, AlertError> {
    Ok(evaluate_applied(config, conn, records, as_of)?.transitions)
}

/// [`evaluate`], telling also how many messages were queued and which
/// closed periods were settled.
pub fn evaluate_applied(
    config: &Arc<ConfigSnapshot>,
    conn: impl AsDb,
    records: Records,
    as_of: Millis,
) -> Result<Applied, AlertError> {
    let db = conn.as_db();
    let judged = judge(config, &db, records, as_of)?;
    db.in_transaction(|tx| state::apply(tx, config, &judged, as_of))
}

/// Judges every condition as of `as_of` (the watched periods, and closed
/// periods that still have firing `at_risk` alerts). Reads only; no
/// transaction is held while formulas run.
pub fn judge(
    config: &Arc<ConfigSnapshot>,
    conn: &impl AsDb,
    records: Records,
    as_of: Millis,
) -> Result<Judged, AlertError> {
    let periods = conditions::watched_periods(config, as_of);
    let settling = state::settling_periods(&conn.as_db(), config, &periods, as_of)?;
    let mut all = settling.clone();
    all.extend([periods.closed, periods.open]);
    let eval = Evaluation::new(config.clone(), records, as_of, &all, false)?;
    let found = conditions::judge_all(&eval, &all);
    Ok(Judged {
        periods,
        settling,
        found,
        teams: eval.teams.clone(),
    })
}

/// Applies what [`judge`] found inside a transaction the caller owns (and
/// commits, or rolls back for a dry run).
pub fn apply_in(
    config: &Arc<ConfigSnapshot>,
    tx: &impl AsDb,
    judged: &Judged,
    as_of: Millis,
) -> Result<Applied, AlertError> {
    state::apply(&tx.as_db(), config, judged, as_of)
}
