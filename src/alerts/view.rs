//! Alerts as users see them: each alert with the delivery status of its
//! notifications, as JSON (GET /api/alerts) or as a table (`kpi alerts`).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::conditions::watched_periods;
use super::deliver::DeliveryReport;
use super::outbox::{self, DeliveryStatus, Notification, Told};
use super::state::{Payload, ROW_COLUMNS, Transition, ensure_tables, read_row};
use super::{AlertError, AlertState, Kind};
use crate::config::ConfigSnapshot;
use crate::period::{Millis, format_utc};
use crate::render::format_value;
use crate::store::engine_db::AsDb;

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Firing,
    Resolved,
    All,
}

impl StateFilter {
    /// `firing`, `resolved` or `all`; None means all.
    pub fn parse(s: Option<&str>) -> Result<StateFilter, AlertError> {
        match s.unwrap_or("all") {
            "firing" => Ok(StateFilter::Firing),
            "resolved" => Ok(StateFilter::Resolved),
            "all" => Ok(StateFilter::All),
            other => Err(AlertError::BadState(other.to_string())),
        }
    }

    /// The one state it keeps; None keeps both.
    pub fn state(self) -> Option<AlertState> {
        match self {
            StateFilter::Firing => Some(AlertState::Firing),
            StateFilter::Resolved => Some(AlertState::Resolved),
            StateFilter::All => None,
        }
    }
}

/// One alert and its notifications.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert as its webhooks see it (SPEC 9's fields).
    #[serde(flatten)]
    pub alert: Payload,
    pub updated_at: String,
    /// Delivery of the latest transition to every matching webhook: `failed`
    /// if one failed, else `pending` if one is pending, else `delivered`;
    /// `silenced` or `inhibited` when it was held back; `none` when no
    /// webhook matched.
    pub delivery: String,
    /// Why the latest transition was held back: "silence 3 (春节)",
    /// "inhibited by missed:revenue:east:2026-Q3"; null when it was not.
    pub muted: Option<String>,
    /// Every notification of the alert, oldest first.
    pub notifications: Vec<NotificationView>,
    #[serde(skip)]
    transitions: i64,
}

/// One notification of an alert to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// The transition it tells: the alert state it went to.
    pub state: String,
    pub webhook: String,
    /// The webhook's kind: json, dingtalk, wecom, feishu or slack.
    pub kind: &'static str,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the next try is due (pending only).
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    #[serde(skip)]
    transition: i64,
}

impl NotificationView {
    fn new(t: Told, n: Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            state: t.state,
            webhook: n.webhook,
            kind: n.kind.as_str(),
            url: n.url,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            next_attempt_at: (n.status == DeliveryStatus::Pending)
                .then(|| format_utc(n.next_attempt_at)),
            created_at: format_utc(n.created_at),
            delivered_at: n.delivered_at.map(format_utc),
            transition: t.transition,
        }
    }
}

/// Which alerts `kpi alerts` lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub state: Option<AlertState>,
    pub kind: Option<Kind>,
    pub kpis: Option<Vec<String>>,
    /// Team ids (a team and its subtree, already expanded).
    pub teams: Option<Vec<String>>,
}

impl Filter {
    fn keeps(&self, a: &AlertView) -> bool {
        self.state.is_none_or(|s| a.alert.state == s)
            && self.kind.is_none_or(|k| a.alert.kind == k)
            && self.kpis.as_ref().is_none_or(|l| l.contains(&a.alert.kpi))
            && self
                .teams
                .as_ref()
                .is_none_or(|l| l.contains(&a.alert.team))
    }
}

/// The alerts in `state` (`firing`, `resolved`, `all`; None = all): firing
/// first, then the latest periods first. A bad `state` is
/// [`AlertError::BadState`] (a 400 for the API).
pub fn list(conn: &impl AsDb, state: Option<&str>) -> Result<Vec<AlertView>, AlertError> {
    list_filtered(
        conn,
        &Filter {
            state: StateFilter::parse(state)?.state(),
            ..Filter::default()
        },
    )
}

/// The alerts that pass `filter`, ordered as [`list`] orders them.
pub fn list_filtered(conn: &impl AsDb, filter: &Filter) -> Result<Vec<AlertView>, AlertError> {
    let conn = conn.as_db();
    ensure_tables(&conn)?;
    let rows = conn
        .rows(
            &format!(
                "SELECT {ROW_COLUMNS} FROM _kpi_alerts
                 ORDER BY state = 'resolved', period DESC, kind, kpi, team"
            ),
            &[],
        )?
        .iter()
        .map(read_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_alert: HashMap<String, Vec<NotificationView>> = HashMap::new();
    for (t, n) in outbox::told(&conn)? {
        by_alert
            .entry(t.alert_id.clone())
            .or_default()
            .push(NotificationView::new(t, n));
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let notifications = by_alert.remove(&r.key.id()).unwrap_or_default();
            let latest: Vec<DeliveryStatus> = notifications
                .iter()
                .filter(|n| n.transition == r.transitions)
                .map(|n| n.status)
                .collect();
            let delivery = match (latest.iter().max(), &r.muted) {
                (Some(s), _) => s.as_str(),
                (None, Some(m)) if m.starts_with("inhibited") => "inhibited",
                (None, Some(_)) => "silenced",
                (None, None) => "none",
            }
            .to_string();
            AlertView {
                alert: r.payload(),
                updated_at: format_utc(r.updated_at),
                delivery,
                muted: r.muted.clone(),
                notifications,
                transitions: r.transitions,
            }
        })
        .filter(|a| filter.keeps(a))
        .collect())
}

/// Counts per team × kind: the `--summary` of `kpi alerts`.
pub fn summary(alerts: &[AlertView]) -> String {
    let mut counts: std::collections::BTreeMap<&str, [usize; 2]> = Default::default();
    for a in alerts {
        let c = counts.entry(a.alert.team.as_str()).or_default();
        c[usize::from(a.alert.kind == Kind::Missed)] += 1;
    }
    let mut rows: Vec<Vec<String>> = vec![
        ["TEAM", "AT_RISK", "MISSED", "TOTAL"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    let mut total = [0usize; 2];
    for (team, c) in &counts {
        total[0] += c[0];
        total[1] += c[1];
        rows.push(vec![
            team.to_string(),
            c[0].to_string(),
            c[1].to_string(),
            (c[0] + c[1]).to_string(),
        ]);
    }
    rows.push(vec![
        "all teams".to_string(),
        total[0].to_string(),
        total[1].to_string(),
        (total[0] + total[1]).to_string(),
    ]);
    crate::render::columns(&rows, &[false, true, true, true], "")
}

/// A table for people: kind, state, KPI, team, period, value against
/// target (with the pace projection), and delivery. Values are shown in
/// their KPI's unit when the KPI is still defined.
pub fn table(cfg: &ConfigSnapshot, alerts: &[AlertView]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "KIND", "STATE", "KPI", "TEAM", "PERIOD", "VALUE", "TARGET", "DELIVERY",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for a in alerts {
        let fmt = |v: Option<f64>| match (v, cfg.kpi(&a.alert.kpi)) {
            (None, _) => "no data".to_string(),
            (Some(x), Some(k)) => format_value(x, k.def.unit, &cfg.settings.currency),
            (Some(x), None) => format!("{x}"),
        };
        let mut value = fmt(a.alert.value);
        if a.alert.projected.is_some() {
            let _ = write!(value, " (pace {})", fmt(a.alert.projected));
        }
        rows.push(vec![
            a.alert.kind.as_str().to_string(),
            a.alert.state.as_str().to_string(),
            a.alert.kpi.clone(),
            a.alert.team.clone(),
            a.alert.period.clone(),
            value,
            fmt(a.alert.target),
            delivery_text(a),
        ]);
    }
    crate::render::columns(
        &rows,
        &[false, false, false, false, false, true, true, false],
        "",
    )
}

/// What `kpi alerts` prints after evaluating as of `as_of` (and delivering,
/// when `delivery` is given): the watched periods, the transitions just
/// applied, the delivery outcome, and the alerts of the watched periods.
pub fn report(
    cfg: &ConfigSnapshot,
    conn: &impl AsDb,
    as_of: Millis,
    transitions: &[Transition],
    delivery: Option<&DeliveryReport>,
) -> Result<String, AlertError> {
    report_filtered(cfg, conn, as_of, transitions, delivery, &Filter::default())
}

/// [`report`], listing only the alerts that pass `filter`.
pub fn report_filtered(
    cfg: &ConfigSnapshot,
    conn: &impl AsDb,
    as_of: Millis,
    transitions: &[Transition],
    delivery: Option<&DeliveryReport>,
    filter: &Filter,
) -> Result<String, AlertError> {
    let watched = watched_periods(cfg, as_of);
    let mut out = format!(
        "alerts as of {}: {} open (at_risk), {} closed last (missed); {} transition(s)\n",
        format_utc(as_of),
        watched.open,
        watched.closed,
        transitions.len()
    );
    const LISTED: usize = 10;
    for t in transitions.iter().take(LISTED) {
        let sent = match &t.muted {
            Some(why) => format!("not sent: {why}"),
            None => format!("{} notification(s) queued", t.notifications),
        };
        let _ = writeln!(
            out,
            "  {} -> {} ({sent})",
            t.payload.id,
            t.payload.state.as_str()
        );
    }
    if transitions.len() > LISTED {
        let _ = writeln!(out, "  … and {} more", transitions.len() - LISTED);
    }
    match delivery {
        Some(d) => {
            let _ = writeln!(
                out,
                "sent {} POST(s): {} delivered, {} failed, {} still pending",
                d.attempts, d.delivered, d.failed, d.pending
            );
        }
        None => {
            let pending = outbox::pending_count(conn)?;
            if pending > 0 {
                let _ = writeln!(
                    out,
                    "{pending} notification(s) pending: `kpi alerts --send` delivers them (kpi serve does on its own)"
                );
            }
        }
    }
    let shown: Vec<AlertView> = list_filtered(conn, filter)?
        .into_iter()
        .filter(|a| watched.contains(&a.alert.period))
        .collect();
    out.push('\n');
    if shown.is_empty() {
        out.push_str("no alerts in these periods\n");
    } else {
        out.push_str(&table(cfg, &shown));
    }
    Ok(out)
}

fn delivery_text(a: &AlertView) -> String {
    let parts: Vec<String> = a
        .notifications
        .iter()
        .filter(|n| n.transition == a.transitions)
        .map(|n| {
            let who = if n.webhook.is_empty() {
                &n.url
            } else {
                &n.webhook
            };
            let tries = match n.attempts {
                1 => "1 try".to_string(),
                k => format!("{k} tries"),
            };
            match (n.status, &n.last_error) {
                (DeliveryStatus::Delivered, _) => format!("{who}: delivered"),
                (DeliveryStatus::Pending, None) => format!("{who}: pending"),
                (s, Some(e)) => format!("{who}: {} ({tries}; {e})", s.as_str()),
                (s, None) => format!("{who}: {} ({tries})", s.as_str()),
            }
        })
        .collect();
    if parts.is_empty() {
        match &a.muted {
            Some(m) => m.clone(),
            None => "no webhook".to_string(),
        }
    } else {
        parts.join(", ")
    }
}
