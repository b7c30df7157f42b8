//! Alert state in `_kpi_alerts`: one row per (kind, KPI, team, period), and
//! the transitions that change it.
//!
//! A condition that starts to hold inserts a `firing` row; a firing alert
//! whose condition is clear becomes `resolved`; a resolved alert whose
//! condition holds again fires again with a new `fired_at`. Each of these is
//! one [`Transition`], and its notifications are queued in the outbox in the
//! same transaction. Anything else (the numbers of a firing alert moving, a
//! condition that cannot be computed, alerts of periods no longer watched)
//! changes no state and sends nothing.
//!
//! Times are UTC milliseconds; an alert's times are evaluation instants
//! (as-of), so a replay with `--as-of` is stamped with the replayed time.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;

use super::conditions::{AlertKey, Condition, Verdict, WatchedPeriods};
use super::{AlertError, AlertState, Kind, outbox};
use crate::config::ConfigSnapshot;
use crate::period::{Millis, format_utc};

/// The JSON POSTed to webhooks, exactly SPEC 9's shape (fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// Stable for the alert: "missed:win_rate:north:2026-Q3".
    pub id: String,
    pub kind: Kind,
    pub state: AlertState,
    pub kpi: String,
    pub kpi_name: String,
    pub team: String,
    pub period: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub projected: Option<f64>,
    pub direction: String,
    /// RFC 3339, UTC.
    pub fired_at: String,
    pub resolved_at: Option<String>,
}

/// One change of an alert's state, as applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    #[serde(flatten)]
    pub payload: Payload,
    /// Notifications queued for it (one per matching webhook).
    pub notifications: usize,
}

/// Creates the alert and outbox tables when missing.
pub fn ensure_tables(conn: &Connection) -> Result<(), AlertError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_alerts (
            kind TEXT NOT NULL,
            kpi TEXT NOT NULL,
            team TEXT NOT NULL,
            period TEXT NOT NULL,
            id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
            kpi_name TEXT NOT NULL,
            value REAL,
            target REAL,
            projected REAL,
            direction TEXT NOT NULL,
            fired_at INTEGER NOT NULL,
            resolved_at INTEGER,
            updated_at INTEGER NOT NULL,
            transitions INTEGER NOT NULL,
            PRIMARY KEY (kind, kpi, team, period));
        CREATE INDEX IF NOT EXISTS _kpi_alerts_period ON _kpi_alerts (period);",
    )?;
    outbox::ensure_table(conn)
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub key: AlertKey,
    pub state: AlertState,
    pub kpi_name: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub projected: Option<f64>,
    pub direction: String,
    pub fired_at: Millis,
    pub resolved_at: Option<Millis>,
    pub updated_at: Millis,
    /// How many transitions it went through (numbers its notifications).
    pub transitions: i64,
}

pub(crate) const ROW_COLUMNS: &str = "kind, kpi, team, period, state, kpi_name, value, target, \
     projected, direction, fired_at, resolved_at, updated_at, transitions";

pub(crate) fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let kind: String = r.get(0)?;
    let state: String = r.get(4)?;
    let bad = |i, s: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unexpected value {s:?} in _kpi_alerts").into(),
        )
    };
    Ok(Row {
        key: AlertKey {
            kind: Kind::parse(&kind).ok_or_else(|| bad(0, &kind))?,
            kpi: r.get(1)?,
            team: r.get(2)?,
            period: r.get(3)?,
        },
        state: AlertState::parse(&state).ok_or_else(|| bad(4, &state))?,
        kpi_name: r.get(5)?,
        value: r.get(6)?,
        target: r.get(7)?,
        projected: r.get(8)?,
        direction: r.get(9)?,
        fired_at: r.get(10)?,
        resolved_at: r.get(11)?,
        updated_at: r.get(12)?,
        transitions: r.get(13)?,
    })
}

impl Row {
    pub fn payload(&self) -> Payload {
        Payload {
            id: self.key.id(),
            kind: self.key.kind,
            state: self.state,
            kpi: self.key.kpi.clone(),
            kpi_name: self.kpi_name.clone(),
            team: self.key.team.clone(),
            period: self.key.period.clone(),
            value: self.value,
            target: self.target,
            projected: self.projected,
            direction: self.direction.clone(),
            fired_at: format_utc(self.fired_at),
            resolved_at: self.resolved_at.map(format_utc),
        }
    }

    fn with_numbers(&self, c: &Condition) -> Row {
        Row {
            kpi_name: c.kpi_name.clone(),
            value: c.value,
            target: c.target,
            projected: c.projected,
            direction: c.direction.name().to_string(),
            ..self.clone()
        }
    }

    fn same_numbers(&self, other: &Row) -> bool {
        (
            &self.kpi_name,
            self.value,
            self.target,
            self.projected,
            &self.direction,
        ) == (
            &other.kpi_name,
            other.value,
            other.target,
            other.projected,
            &other.direction,
        )
    }
}

/// What evaluating one alert does to it.
enum Change {
    Nothing,
    /// The numbers moved; no transition, no notification.
    Refresh(Row),
    Transition(Row),
}

fn decide(old: Option<&Row>, cond: Option<&Condition>, key: &AlertKey, as_of: Millis) -> Change {
    let verdict = cond.map_or(Verdict::Clear, |c| c.verdict);
    match (old, verdict) {
        (_, Verdict::Unknown) | (None, Verdict::Clear) => Change::Nothing,
        (None, Verdict::Holds) => {
            let c = cond.expect("a holding condition");
            Change::Transition(
                Row {
                    key: key.clone(),
                    state: AlertState::Firing,
                    kpi_name: String::new(),
                    value: None,
                    target: None,
                    projected: None,
                    direction: String::new(),
                    fired_at: as_of,
                    resolved_at: None,
                    updated_at: as_of,
                    transitions: 1,
                }
                .with_numbers(c),
            )
        }
        (Some(row), Verdict::Holds) => {
            let c = cond.expect("a holding condition");
            let fresh = row.with_numbers(c);
            match row.state {
                AlertState::Resolved => Change::Transition(Row {
                    state: AlertState::Firing,
                    fired_at: as_of,
                    resolved_at: None,
                    updated_at: as_of,
                    transitions: row.transitions + 1,
                    ..fresh
                }),
                AlertState::Firing if fresh.same_numbers(row) => Change::Nothing,
                AlertState::Firing => Change::Refresh(Row {
                    updated_at: as_of,
                    ..fresh
                }),
            }
        }
        (Some(row), Verdict::Clear) => match row.state {
            AlertState::Resolved => Change::Nothing,
            AlertState::Firing => {
                // The final numbers, when the (KPI, team) is still judged;
                // otherwise (its target or team is gone) the last ones known.
                let fresh = cond.map_or_else(|| row.clone(), |c| row.with_numbers(c));
                Change::Transition(Row {
                    state: AlertState::Resolved,
                    resolved_at: Some(as_of),
                    updated_at: as_of,
                    transitions: row.transitions + 1,
                    ..fresh
                })
            }
        },
    }
}

/// Compares the judged conditions with the stored alerts of the watched
/// periods and applies the transitions, queuing their notifications, in one
/// immediate transaction (so two evaluators never apply the same one twice).
pub(crate) fn apply(
    conn: &mut Connection,
    config: &Arc<ConfigSnapshot>,
    periods: &WatchedPeriods,
    found: &BTreeMap<AlertKey, Condition>,
    as_of: Millis,
) -> Result<Vec<Transition>, AlertError> {
    let now = chrono::Utc::now().timestamp_millis();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    ensure_tables(&tx)?;
    let stored: BTreeMap<AlertKey, Row> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM _kpi_alerts WHERE period IN (?1, ?2)"
        ))?;
        let rows = stmt.query_map(
            params![periods.open.to_string(), periods.closed.to_string()],
            read_row,
        )?;
        rows.map(|r| r.map(|r| (r.key.clone(), r)))
            .collect::<Result<_, _>>()?
    };
    let keys: Vec<&AlertKey> = {
        let mut k: Vec<&AlertKey> = found.keys().chain(stored.keys()).collect();
        k.sort();
        k.dedup();
        k
    };
    let mut transitions = Vec::new();
    for key in keys {
        match decide(stored.get(key), found.get(key), key, as_of) {
            Change::Nothing => {}
            Change::Refresh(row) => write_row(&tx, &row)?,
            Change::Transition(row) => {
                write_row(&tx, &row)?;
                let payload = row.payload();
                let notifications =
                    outbox::enqueue(&tx, &payload, row.transitions, &config.alerts.webhooks, now)?;
                transitions.push(Transition {
                    payload,
                    notifications,
                });
            }
        }
    }
    tx.commit()?;
    Ok(transitions)
}

fn write_row(conn: &Connection, r: &Row) -> Result<(), AlertError> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO _kpi_alerts (id, {ROW_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            r.key.id(),
            r.key.kind.as_str(),
            r.key.kpi,
            r.key.team,
            r.key.period,
            r.state.as_str(),
            r.kpi_name,
            r.value,
            r.target,
            r.projected,
            r.direction,
            r.fired_at,
            r.resolved_at,
            r.updated_at,
            r.transitions,
        ],
    )?;
    Ok(())
}
