//! The outbox, `_kpi_outbox`: one row per message to one webhook (one
//! transition of an alert, or a `group_by` digest of several), written in
//! the transaction that changes the alerts' state. `_kpi_outbox_alerts`
//! names the alert transitions each message tells.
//!
//! A row is `pending` until a POST of it is taken by the receiver
//! (`delivered`) or its last attempt fails (`failed`). The row keeps the
//! URL, kind and body it was queued with, so what is sent does not depend on
//! later configuration.
//!
//! A deliverer claims a due row before POSTing it by moving its
//! `next_attempt_at` past the request's timeout (a lease), so two deliverers
//! (the server and `kpi alerts --send`) never send it at the same time, and a
//! deliverer that dies mid-request leaves it to be retried when the lease ends.
//!
//! Each (webhook, url) is a **lane**: its messages are sent in order, and a
//! lane waits while its oldest pending message waits for a retry. Lanes never
//! wait for each other.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::AlertError;
use crate::config::alerts::{Webhook, WebhookKind};
use crate::period::Millis;

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
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

/// One row of the outbox: one message to one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    /// The (first) alert it tells ("missed:win_rate:north:2026-Q3").
    pub alert_id: String,
    /// Which transition of that alert (1 = it first fired).
    pub transition: i64,
    /// The alert state the transition went to: "firing" or "resolved".
    pub state: String,
    pub webhook: String,
    pub url: String,
    /// The JSON body, as it is POSTed (a signature is added when sent).
    pub payload: String,
    pub kind: WebhookKind,
    /// DingTalk and Feishu signing; never shown by the API.
    pub secret: Option<String>,
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
    // Databases made before SPEC 18 lack `kind`, `secret` and the list of
    // alerts per message (each older message told exactly its own alert).
    if !has_column(conn, "_kpi_outbox", "kind")? {
        conn.execute_batch(
            "ALTER TABLE _kpi_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'json';
             ALTER TABLE _kpi_outbox ADD COLUMN secret TEXT;
             CREATE INDEX IF NOT EXISTS _kpi_outbox_lane ON _kpi_outbox (status, webhook, url, id);",
        )?;
    }
    if !has_table(conn, "_kpi_outbox_alerts")? {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS _kpi_outbox_alerts (
                outbox_id INTEGER NOT NULL,
                alert_id TEXT NOT NULL,
                transition INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (outbox_id, alert_id));
             CREATE INDEX IF NOT EXISTS _kpi_outbox_alerts_alert ON _kpi_outbox_alerts (alert_id);
             INSERT OR IGNORE INTO _kpi_outbox_alerts (outbox_id, alert_id, transition, state)
                SELECT id, alert_id, transition, state FROM _kpi_outbox;",
        )?;
    }
    Ok(())
}

/// Does `table` have `column`? (Both are the engine's own names.)
pub(crate) fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, AlertError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

pub(crate) fn has_table(conn: &Connection, table: &str) -> Result<bool, AlertError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![table],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Does a webhook take notifications of this KPI and team? (Its lists, when
/// present, are filters; a webhook without them takes every alert.)
pub fn matches(w: &Webhook, kpi: &str, team: &str) -> bool {
    let allows = |list: &Option<Vec<String>>, x: &str| {
        list.as_ref().is_none_or(|l| l.iter().any(|y| y == x))
    };
    allows(&w.kpis, kpi) && allows(&w.teams, team)
}

/// One alert transition a message tells.
#[derive(Debug, Clone, PartialEq)]
pub struct Told {
    pub alert_id: String,
    pub transition: i64,
    /// "firing" or "resolved".
    pub state: String,
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub webhook: String,
    pub url: String,
    pub kind: WebhookKind,
    pub secret: Option<String>,
    pub body: String,
    /// At least one.
    pub tells: Vec<Told>,
}

/// Queues one message; false when it was queued before (the same first
/// transition to the same webhook and URL).
pub(crate) fn enqueue(conn: &Connection, m: &Outgoing, now: Millis) -> Result<bool, AlertError> {
    let first = &m.tells[0];
    let n = conn.execute(
        "INSERT OR IGNORE INTO _kpi_outbox
            (alert_id, transition, state, webhook, url, payload, attempts, next_attempt_at, status,
             created_at, kind, secret)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'pending', ?7, ?8, ?9)",
        params![
            first.alert_id,
            first.transition,
            first.state,
            m.webhook,
            m.url,
            m.body,
            now,
            m.kind.as_str(),
            m.secret
        ],
    )?;
    if n == 0 {
        return Ok(false);
    }
    let id = conn.last_insert_rowid();
    for t in &m.tells {
        conn.execute(
            "INSERT OR IGNORE INTO _kpi_outbox_alerts (outbox_id, alert_id, transition, state)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, t.alert_id, t.transition, t.state],
        )?;
    }
    Ok(true)
}

const COLUMNS: &str = "id, alert_id, transition, state, webhook, url, payload, attempts, \
     next_attempt_at, status, last_error, created_at, delivered_at, kind, secret";

/// The same columns of `_kpi_outbox o`, for joins.
const O_COLUMNS: &str = "o.id, o.alert_id, o.transition, o.state, o.webhook, o.url, o.payload, \
     o.attempts, o.next_attempt_at, o.status, o.last_error, o.created_at, o.delivered_at, o.kind, \
     o.secret";

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
        kind: WebhookKind::parse(&r.get::<_, String>(13)?).unwrap_or(WebhookKind::Json),
        secret: r.get(14)?,
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

/// Every message, oldest first.
pub fn all(conn: &Connection) -> Result<Vec<Notification>, AlertError> {
    select(conn, "", [])
}

/// Every (alert transition, message that tells it), oldest message first.
pub fn told(conn: &Connection) -> Result<Vec<(Told, Notification)>, AlertError> {
    ensure_table(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {O_COLUMNS}, a.alert_id, a.transition, a.state
         FROM _kpi_outbox_alerts a JOIN _kpi_outbox o ON o.id = a.outbox_id
         ORDER BY o.id, a.alert_id"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            Told {
                alert_id: r.get(15)?,
                transition: r.get(16)?,
                state: r.get(17)?,
            },
            read(r)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The messages that tell one alert, oldest first, each with the
/// transition of that alert it tells.
pub fn of_alert(conn: &Connection, alert_id: &str) -> Result<Vec<Notification>, AlertError> {
    Ok(told(conn)?
        .into_iter()
        .filter(|(t, _)| t.alert_id == alert_id)
        .map(|(t, n)| Notification {
            alert_id: t.alert_id,
            transition: t.transition,
            state: t.state,
            ..n
        })
        .collect())
}

/// The head of a lane: its oldest pending message.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneHead {
    pub webhook: String,
    pub url: String,
    pub next_attempt_at: Millis,
}

/// The oldest pending message of every lane, oldest lane first.
pub fn lane_heads(conn: &Connection) -> Result<Vec<LaneHead>, AlertError> {
    ensure_table(conn)?;
    let mut stmt = conn.prepare(
        "SELECT o.webhook, o.url, o.next_attempt_at FROM _kpi_outbox o
         JOIN (SELECT min(id) AS id FROM _kpi_outbox WHERE status = 'pending'
               GROUP BY webhook, url) h ON o.id = h.id
         ORDER BY o.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(LaneHead {
            webhook: r.get(0)?,
            url: r.get(1)?,
            next_attempt_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The pending messages of one lane, oldest first.
pub(crate) fn lane(
    conn: &Connection,
    webhook: &str,
    url: &str,
) -> Result<Vec<Notification>, AlertError> {
    select(
        conn,
        "WHERE status = 'pending' AND webhook = ?1 AND url = ?2",
        params![webhook, url],
    )
}

/// When the next lane's head falls due, if anything is pending.
pub fn next_due(conn: &Connection) -> Result<Option<Millis>, AlertError> {
    Ok(lane_heads(conn)?.iter().map(|h| h.next_attempt_at).min())
}

/// Deletes messages delivered before `before`; returns how many.
pub fn prune(conn: &Connection, before: Millis) -> Result<usize, AlertError> {
    ensure_table(conn)?;
    let n = conn.execute(
        "DELETE FROM _kpi_outbox WHERE status = 'delivered' AND delivered_at < ?1",
        params![before],
    )?;
    if n > 0 {
        conn.execute(
            "DELETE FROM _kpi_outbox_alerts
             WHERE outbox_id NOT IN (SELECT id FROM _kpi_outbox)",
            [],
        )?;
    }
    Ok(n)
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

/// How many notifications are pending, per webhook name.
pub fn pending_by_webhook(conn: &Connection) -> Result<Vec<(String, usize)>, AlertError> {
    ensure_table(conn)?;
    let mut stmt = conn.prepare(
        "SELECT webhook, count(*) FROM _kpi_outbox WHERE status = 'pending' GROUP BY webhook",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (webhook, n) = row?;
        out.push((webhook, n.max(0) as usize));
    }
    Ok(out)
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
    use crate::config::alerts::Webhook;

    #[test]
    fn webhook_lists_are_filters() {
        let w = |kpis: Option<&[&str]>, teams: Option<&[&str]>| Webhook {
            kpis: kpis.map(|l| l.iter().map(|s| s.to_string()).collect()),
            teams: teams.map(|l| l.iter().map(|s| s.to_string()).collect()),
            ..Webhook::json("w", "http://x")
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
