//! The outbox, `_kpi_outbox`: one row per notification (a transition of an
//! alert) and matching webhook, written in the transaction that changes the
//! alert's state.
//!
//! A row is `pending` until a POST of it is answered 2xx (`delivered`) or
//! its last attempt fails (`failed`). The row keeps the URL and the exact
//! payload it was queued with, so what is sent does not depend on later
//! configuration. (alert_id, transition, webhook, url) is unique: a
//! transition is queued at most once per webhook.
//!
//! A deliverer claims a due row before POSTing it by moving its
//! `next_attempt_at` past the request's timeout (a lease), so two deliverers
//! (the server and `kpi alerts --send`) never send it at the same time, and a
//! deliverer that dies mid-request leaves it to be retried when the lease ends.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::AlertError;
use super::state::Payload;
use crate::config::alerts::Webhook;
use crate::period::Millis;

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    Pending,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    /// The alert's id ("missed:win_rate:north:2026-Q3").
    pub alert_id: String,
    /// Which transition of the alert (1 = it first fired).
    pub transition: i64,
    /// The alert state the transition went to: "firing" or "resolved".
    pub state: String,
    pub webhook: String,
    pub url: String,
    /// The JSON body, exactly as it is POSTed.
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub status: DeliveryStatus,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

pub(crate) fn ensure_table(conn: &Connection) -> Result<(), AlertError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL,
            transition INTEGER NOT NULL,
            state TEXT NOT NULL,
            webhook TEXT NOT NULL,
            url TEXT NOT NULL,
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            last_error TEXT,
            created_at INTEGER NOT NULL,
            delivered_at INTEGER,
            UNIQUE (alert_id, transition, webhook, url));
        CREATE INDEX IF NOT EXISTS _kpi_outbox_due ON _kpi_outbox (status, next_attempt_at);
        CREATE INDEX IF NOT EXISTS _kpi_outbox_alert ON _kpi_outbox (alert_id);",
    )?;
    Ok(())
}

/// Does a webhook take notifications of this KPI and team? (Its lists, when
/// present, are filters; a webhook without them takes every alert.)
pub fn matches(w: &Webhook, kpi: &str, team: &str) -> bool {
    let allows = |list: &Option<Vec<String>>, x: &str| {
        list.as_ref().is_none_or(|l| l.iter().any(|y| y == x))
    };
    allows(&w.kpis, kpi) && allows(&w.teams, team)
}

/// Queues one transition for every matching webhook; returns how many rows were written.
pub(crate) fn enqueue(
    conn: &Connection,
    payload: &Payload,
    transition: i64,
    webhooks: &[Webhook],
    now: Millis,
) -> Result<usize, AlertError> {
    let body = serde_json::to_string(payload).expect("a payload always serialises");
    let mut n = 0;
    for w in webhooks
        .iter()
        .filter(|w| matches(w, &payload.kpi, &payload.team))
    {
        n += conn.execute(
            "INSERT OR IGNORE INTO _kpi_outbox
                (alert_id, transition, state, webhook, url, payload, attempts, next_attempt_at, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'pending', ?7)",
            params![
                payload.id,
                transition,
                payload.state.as_str(),
                w.name,
                w.url,
                body,
                now
            ],
        )?;
    }
    Ok(n)
}

const COLUMNS: &str = "id, alert_id, transition, state, webhook, url, payload, attempts, \
     next_attempt_at, status, last_error, created_at, delivered_at";

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        alert_id: r.get(1)?,
        transition: r.get(2)?,
        state: r.get(3)?,
        webhook: r.get(4)?,
        url: r.get(5)?,
        payload: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        status: DeliveryStatus::parse(&r.get::<_, String>(9)?),
        last_error: r.get(10)?,
        created_at: r.get(11)?,
        delivered_at: r.get(12)?,
    })
}

fn select(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Notification>, AlertError> {
    ensure_table(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM _kpi_outbox {filter} ORDER BY id"
    ))?;
    let rows = stmt.query_map(args, read)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every notification, oldest first.
pub fn all(conn: &Connection) -> Result<Vec<Notification>, AlertError> {
    select(conn, "", [])
}

/// The notifications of one alert, oldest first.
pub fn of_alert(conn: &Connection, alert_id: &str) -> Result<Vec<Notification>, AlertError> {
    select(conn, "WHERE alert_id = ?1", params![alert_id])
}

/// Pending notifications due at `now`, oldest first.
pub(crate) fn due(conn: &Connection, now: Millis) -> Result<Vec<Notification>, AlertError> {
    select(
        conn,
        "WHERE status = 'pending' AND next_attempt_at <= ?1",
        params![now],
    )
}

/// When the next pending notification falls due, if any is pending.
pub fn next_due(conn: &Connection) -> Result<Option<Millis>, AlertError> {
    ensure_table(conn)?;
    Ok(conn.query_row(
        "SELECT min(next_attempt_at) FROM _kpi_outbox WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?)
}

/// How many notifications are pending.
pub fn pending_count(conn: &Connection) -> Result<usize, AlertError> {
    ensure_table(conn)?;
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM _kpi_outbox WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(n as usize)
}

/// Takes a due row for one attempt; false when another deliverer has it.
pub(crate) fn claim(
    conn: &Connection,
    id: i64,
    now: Millis,
    lease_until: Millis,
) -> Result<bool, AlertError> {
    let n = conn.execute(
        "UPDATE _kpi_outbox SET next_attempt_at = ?3
         WHERE id = ?1 AND status = 'pending' AND next_attempt_at <= ?2",
        params![id, now, lease_until],
    )?;
    Ok(n == 1)
}

pub(crate) fn mark_delivered(
    conn: &Connection,
    id: i64,
    attempts: u32,
    at: Millis,
) -> Result<(), AlertError> {
    conn.execute(
        "UPDATE _kpi_outbox SET status = 'delivered', attempts = ?2, delivered_at = ?3 WHERE id = ?1",
        params![id, attempts, at],
    )?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or failed for good when None.
pub(crate) fn mark_attempt_failed(
    conn: &Connection,
    id: i64,
    attempts: u32,
    error: &str,
    retry_at: Option<Millis>,
    at: Millis,
) -> Result<(), AlertError> {
    match retry_at {
        Some(t) => conn.execute(
            "UPDATE _kpi_outbox SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
            params![id, attempts, error, t],
        )?,
        None => conn.execute(
            "UPDATE _kpi_outbox SET status = 'failed', attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
            params![id, attempts, error, at],
        )?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_lists_are_filters() {
        let w = |kpis: Option<&[&str]>, teams: Option<&[&str]>| Webhook {
            name: "w".into(),
            url: "http://x".into(),
            kpis: kpis.map(|l| l.iter().map(|s| s.to_string()).collect()),
            teams: teams.map(|l| l.iter().map(|s| s.to_string()).collect()),
        };
        assert!(matches(&w(None, None), "revenue", "north"));
        assert!(matches(&w(Some(&["revenue"]), None), "revenue", "south"));
        assert!(!matches(&w(Some(&["win_rate"]), None), "revenue", "north"));
        assert!(matches(
            &w(Some(&["revenue"]), Some(&["north"])),
            "revenue",
            "north"
        ));
        assert!(!matches(
            &w(Some(&["revenue"]), Some(&["north"])),
            "revenue",
            "hq"
        ));
        assert!(
            !matches(&w(Some(&[]), None), "revenue", "north"),
            "an empty list takes nothing"
        );
    }
}
