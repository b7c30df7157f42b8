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

use serde::Serialize;

use super::AlertError;
use crate::config::alerts::{Webhook, WebhookKind};
use crate::period::Millis;
use crate::store::engine_db::{AsDb, Db, Param, Row};

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

const TABLES: &str = "CREATE TABLE IF NOT EXISTS _kpi_outbox (
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
        CREATE INDEX IF NOT EXISTS _kpi_outbox_alert ON _kpi_outbox (alert_id);";

const LANE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS _kpi_outbox_lane ON _kpi_outbox (status, webhook, url, id);";

/// What SPEC 18 added to SQLite's table: each message's kind and secret.
const SPEC_18_COLUMNS: &str =
    "ALTER TABLE _kpi_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'json';
     ALTER TABLE _kpi_outbox ADD COLUMN secret TEXT;";

const TOLD_TABLE: &str = "CREATE TABLE IF NOT EXISTS _kpi_outbox_alerts (
                outbox_id INTEGER NOT NULL,
                alert_id TEXT NOT NULL,
                transition INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (outbox_id, alert_id));
             CREATE INDEX IF NOT EXISTS _kpi_outbox_alerts_alert ON _kpi_outbox_alerts (alert_id);";

pub(crate) fn ensure_table(conn: &Db<'_>) -> Result<(), AlertError> {
    if conn.is_postgres() {
        // Made whole at once (one implicit transaction): a PostgreSQL database
        // never had the older tables. Checked first, so that readers never
        // take the table lock CREATE INDEX takes.
        if !conn.has_table("_kpi_outbox_alerts")? {
            let all = format!(
                "{}\n{TOLD_TABLE}",
                TABLES.replace(
                    "delivered_at INTEGER,",
                    "delivered_at INTEGER, kind TEXT NOT NULL DEFAULT 'json', secret TEXT,"
                )
            );
            conn.create(&all)?;
            conn.batch("", LANE_INDEX)?;
        }
        return Ok(());
    }
    conn.batch(TABLES, "")?;
    // Databases made before SPEC 18 lack `kind`, `secret` and the list of
    // alerts per message (each older message told exactly its own alert).
    if !conn.has_column("_kpi_outbox", "kind")? {
        conn.batch(&format!("{SPEC_18_COLUMNS}\n{LANE_INDEX}"), "")?;
    }
    if !conn.has_table("_kpi_outbox_alerts")? {
        let migrate = format!(
            "{TOLD_TABLE}
             INSERT OR IGNORE INTO _kpi_outbox_alerts (outbox_id, alert_id, transition, state)
                SELECT id, alert_id, transition, state FROM _kpi_outbox;"
        );
        conn.batch(&migrate, "")?;
    }
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
pub(crate) fn enqueue(conn: &Db<'_>, m: &Outgoing, now: Millis) -> Result<bool, AlertError> {
    let first = &m.tells[0];
    let id = conn.row(
        "INSERT INTO _kpi_outbox
            (alert_id, transition, state, webhook, url, payload, attempts, next_attempt_at, status,
             created_at, kind, secret)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'pending', ?7, ?8, ?9)
         ON CONFLICT DO NOTHING
         RETURNING id",
        &[
            Param::Text(&first.alert_id),
            Param::Int(first.transition),
            Param::Text(&first.state),
            Param::Text(&m.webhook),
            Param::Text(&m.url),
            Param::Text(&m.body),
            Param::Int(now),
            Param::Text(m.kind.as_str()),
            Param::OptText(m.secret.as_deref()),
        ],
    )?;
    let Some(id) = id.map(|r| r.int(0)) else {
        return Ok(false);
    };
    for t in &m.tells {
        conn.execute(
            "INSERT INTO _kpi_outbox_alerts (outbox_id, alert_id, transition, state)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            &[
                Param::Int(id),
                Param::Text(&t.alert_id),
                Param::Int(t.transition),
                Param::Text(&t.state),
            ],
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

fn read(r: &Row) -> Notification {
    Notification {
        id: r.int(0),
        alert_id: r.text(1),
        transition: r.int(2),
        state: r.text(3),
        webhook: r.text(4),
        url: r.text(5),
        payload: r.text(6),
        attempts: r.int(7).clamp(0, u32::MAX.into()) as u32,
        next_attempt_at: r.int(8),
        status: DeliveryStatus::parse(&r.text(9)),
        last_error: r.opt_text(10),
        created_at: r.int(11),
        delivered_at: r.opt_int(12),
        kind: WebhookKind::parse(&r.text(13)).unwrap_or(WebhookKind::Json),
        secret: r.opt_text(14),
    }
}

fn select(
    conn: &Db<'_>,
    filter: &str,
    args: &[Param<'_>],
) -> Result<Vec<Notification>, AlertError> {
    ensure_table(conn)?;
    let sql = format!("SELECT {COLUMNS} FROM _kpi_outbox {filter} ORDER BY id");
    Ok(conn.rows(&sql, args)?.iter().map(read).collect())
}

/// Every message, oldest first.
pub fn all(conn: &impl AsDb) -> Result<Vec<Notification>, AlertError> {
    select(&conn.as_db(), "", &[])
}

/// Every (alert transition, message that tells it), oldest message first.
pub fn told(conn: &impl AsDb) -> Result<Vec<(Told, Notification)>, AlertError> {
    let conn = conn.as_db();
    ensure_table(&conn)?;
    let sql = format!(
        "SELECT {O_COLUMNS}, a.alert_id, a.transition, a.state
         FROM _kpi_outbox_alerts a JOIN _kpi_outbox o ON o.id = a.outbox_id
         ORDER BY o.id, a.alert_id"
    );
    Ok(conn
        .rows(&sql, &[])?
        .iter()
        .map(|r| {
            (
                Told {
                    alert_id: r.text(15),
                    transition: r.int(16),
                    state: r.text(17),
                },
                read(r),
            )
        })
        .collect())
}

/// The messages that tell one alert, oldest first, each with the
/// transition of that alert it tells.
pub fn of_alert(conn: &impl AsDb, alert_id: &str) -> Result<Vec<Notification>, AlertError> {
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
pub fn lane_heads(conn: &impl AsDb) -> Result<Vec<LaneHead>, AlertError> {
    let conn = conn.as_db();
    ensure_table(&conn)?;
    let rows = conn.rows(
        "SELECT o.webhook, o.url, o.next_attempt_at FROM _kpi_outbox o
         JOIN (SELECT min(id) AS id FROM _kpi_outbox WHERE status = 'pending'
               GROUP BY webhook, url) h ON o.id = h.id
         ORDER BY o.id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| LaneHead {
            webhook: r.text(0),
            url: r.text(1),
            next_attempt_at: r.int(2),
        })
        .collect())
}

/// The pending messages of one lane, oldest first.
pub(crate) fn lane(
    conn: &Db<'_>,
    webhook: &str,
    url: &str,
) -> Result<Vec<Notification>, AlertError> {
    select(
        conn,
        "WHERE status = 'pending' AND webhook = ?1 AND url = ?2",
        &[Param::Text(webhook), Param::Text(url)],
    )
}

/// When the next lane's head falls due, if anything is pending.
pub fn next_due(conn: &impl AsDb) -> Result<Option<Millis>, AlertError> {
    Ok(lane_heads(conn)?.iter().map(|h| h.next_attempt_at).min())
}

/// Deletes messages delivered before `before`; returns how many.
pub fn prune(conn: &impl AsDb, before: Millis) -> Result<usize, AlertError> {
    let conn = conn.as_db();
    ensure_table(&conn)?;
    let n = conn.execute(
        "DELETE FROM _kpi_outbox WHERE status = 'delivered' AND delivered_at < ?1",
        &[Param::Int(before)],
    )?;
    if n > 0 {
        conn.execute(
            "DELETE FROM _kpi_outbox_alerts
             WHERE outbox_id NOT IN (SELECT id FROM _kpi_outbox)",
            &[],
        )?;
    }
    Ok(n as usize)
}

/// How many notifications are pending.
pub fn pending_count(conn: &impl AsDb) -> Result<usize, AlertError> {
    let conn = conn.as_db();
    ensure_table(&conn)?;
    let n = conn.row(
        "SELECT count(*) FROM _kpi_outbox WHERE status = 'pending'",
        &[],
    )?;
    Ok(n.map_or(0, |r| r.int(0).max(0) as usize))
}

/// How many notifications are pending, per webhook name.
pub fn pending_by_webhook(conn: &impl AsDb) -> Result<Vec<(String, usize)>, AlertError> {
    let conn = conn.as_db();
    ensure_table(&conn)?;
    let rows = conn.rows(
        "SELECT webhook, count(*) FROM _kpi_outbox WHERE status = 'pending' GROUP BY webhook",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.text(0), r.int(1).max(0) as usize))
        .collect())
}

/// Takes a due row for one attempt; false when another deliverer has it.
pub(crate) fn claim(
    conn: &Db<'_>,
    id: i64,
    now: Millis,
    lease_until: Millis,
) -> Result<bool, AlertError> {
    let n = conn.execute(
        "UPDATE _kpi_outbox SET next_attempt_at = ?3
         WHERE id = ?1 AND status = 'pending' AND next_attempt_at <= ?2",
        &[Param::Int(id), Param::Int(now), Param::Int(lease_until)],
    )?;
    Ok(n == 1)
}

pub(crate) fn mark_delivered(
    conn: &Db<'_>,
    id: i64,
    attempts: u32,
    at: Millis,
) -> Result<(), AlertError> {
    conn.execute(
        "UPDATE _kpi_outbox SET status = 'delivered', attempts = ?2, delivered_at = ?3 WHERE id = ?1",
        &[Param::Int(id), Param::Int(attempts.into()), Param::Int(at)],
    )?;
    Ok(())
}

/// Records a failed attempt: retried at `retry_at`, or failed for good when None.
pub(crate) fn mark_attempt_failed(
    conn: &Db<'_>,
    id: i64,
    attempts: u32,
    error: &str,
    retry_at: Option<Millis>,
    at: Millis,
) -> Result<(), AlertError> {
    let sql = match retry_at {
        Some(_) => {
            "UPDATE _kpi_outbox SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1"
        }
        None => {
            "UPDATE _kpi_outbox SET status = 'failed', attempts = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1"
        }
    };
    conn.execute(
        sql,
        &[
            Param::Int(id),
            Param::Int(attempts.into()),
            Param::Text(error),
            Param::Int(retry_at.unwrap_or(at)),
        ],
    )?;
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
