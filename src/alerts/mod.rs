//! Alerts (SPEC 9): conditions, their state in the database, the outbox of
//! notifications and webhook delivery.
//!
//! - [`conditions`] judges every (KPI, team) that has a target over the two
//!   periods of the alert grain: the open one (`at_risk`) and the one that
//!   closed last (`missed`). Pure: it only reads an [`Evaluation`].
//! - [`state`] keeps one row per alert in `_kpi_alerts` and applies the
//!   transitions (fired, resolved, fired again) in one transaction that also
//!   writes their notifications to the outbox.
//! - [`outbox`] is `_kpi_outbox`: one row per notification and webhook,
//!   pending until delivered or failed.
//! - [`deliver`] POSTs due notifications with a timeout and retries with
//!   backoff; [`Worker`] does it on a background thread.
//! - [`schedule`] re-evaluates every `evaluate_every` and when poked.
//! - [`view`] lists alerts with their delivery status (GET /api/alerts, `kpi alerts`).
//!
//! Architecture Invariant: the state of an alert lives only in the database.
//! Evaluating an unchanged condition again (after a reload, a restart, or
//! from another process) changes nothing and sends nothing.
//! Architecture Invariant: a transition and its notifications are written in
//! the same transaction, so a notification is never lost nor made twice; the
//! network is never touched while a transaction is open.

pub mod conditions;
pub mod deliver;
pub mod outbox;
pub mod schedule;
pub mod state;
pub mod view;

use std::sync::Arc;

use rusqlite::Connection;
use serde::Serialize;

use crate::config::ConfigSnapshot;
use crate::eval::{Evaluation, Records};
use crate::period::Millis;
use crate::store::StoreError;

pub use deliver::{DeliveryOptions, DeliveryReport, Worker, deliver_due, deliver_within};
pub use schedule::Scheduler;
pub use state::{Payload, Transition};
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
}

/// The two kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
/// `records` are read; `conn` holds the alert state (usually the same
/// database file, through another connection). Call it on a blocking thread:
/// it runs formulas and writes SQLite.
pub fn evaluate(
    config: &Arc<ConfigSnapshot>,
    conn: &mut Connection,
    records: Records,
    as_of: Millis,
) -> Result<Vec<Transition>, AlertError> {
    let periods = conditions::watched_periods(config, as_of);
    let eval = Evaluation::new(
        config.clone(),
        records,
        as_of,
        &[periods.closed, periods.open],
        false,
    )?;
    let found = conditions::judge_all(&eval, periods);
    state::apply(conn, config, &periods, &found, as_of)
}
