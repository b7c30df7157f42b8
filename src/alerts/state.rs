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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::conditions::{AlertKey, Condition, Verdict, WatchedPeriods};
use super::{AlertError, AlertState, Kind, notify, outbox, silence};
use crate::config::ConfigSnapshot;
use crate::period::{Millis, PeriodId, format_utc};
use crate::store::TeamTree;
use crate::store::engine_db::{Db, Param, Row as DbRow};

/// The JSON POSTed to webhooks, exactly SPEC 9's shape (fields in this order).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// Messages that tell it (one per matching webhook; a digest tells several).
    pub notifications: usize,
    /// Why nothing was sent for it: a silence, or a parent's firing alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted: Option<String>,
}

const ALERTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _kpi_alerts (
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
            muted TEXT,
            PRIMARY KEY (kind, kpi, team, period));
        CREATE INDEX IF NOT EXISTS _kpi_alerts_period ON _kpi_alerts (period);";

/// Creates the alert, outbox and silence tables when missing.
pub fn ensure_tables(conn: &Db<'_>) -> Result<(), AlertError> {
    if conn.is_postgres() {
        // Checked first: CREATE INDEX IF NOT EXISTS would lock the table.
        if !conn.has_table("_kpi_alerts")? {
            conn.create(ALERTS_TABLE)?;
        }
    } else {
        conn.batch(ALERTS_TABLE, "")?;
    }
    // Databases made before SPEC 18 lack `muted` (PostgreSQL ones never do).
    conn.add_missing_column("_kpi_alerts", "muted", "TEXT")?;
    outbox::ensure_table(conn)?;
    silence::ensure_table(conn)
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
    /// Why its latest transition was not sent, if it was held back.
    pub muted: Option<String>,
}

/// The columns `read_row` reads, in order (`muted` is written apart, by
/// [`set_muted`], after the notifications are planned).
pub(crate) const ROW_COLUMNS: &str = "kind, kpi, team, period, state, kpi_name, value, target, \
     projected, direction, fired_at, resolved_at, updated_at, transitions, muted";

const WRITE_COLUMNS: &str = "kind, kpi, team, period, state, kpi_name, value, target, \
     projected, direction, fired_at, resolved_at, updated_at, transitions";

pub(crate) fn read_row(r: &DbRow) -> Result<Row, AlertError> {
    let bad = |s: String| AlertError::Corrupt(format!("unexpected value {s:?} in _kpi_alerts"));
    let (kind, state) = (r.text(0), r.text(4));
    Ok(Row {
        key: AlertKey {
            kind: Kind::parse(&kind).ok_or_else(|| bad(kind.clone()))?,
            kpi: r.text(1),
            team: r.text(2),
            period: r.text(3),
        },
        state: AlertState::parse(&state).ok_or_else(|| bad(state.clone()))?,
        kpi_name: r.text(5),
        value: r.real(6),
        target: r.real(7),
        projected: r.real(8),
        direction: r.text(9),
        fired_at: r.int(10),
        resolved_at: r.opt_int(11),
        updated_at: r.int(12),
        transitions: r.int(13),
        muted: r.opt_text(14),
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
                    muted: None,
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

/// What was judged for one evaluation, before anything is written.
pub struct Judged {
    pub periods: WatchedPeriods,
    /// Closed periods older than the watched ones whose `at_risk` alerts are
    /// still firing (the server was down when they closed): settled first.
    pub settling: Vec<PeriodId>,
    pub found: BTreeMap<AlertKey, Condition>,
    pub teams: Arc<TeamTree>,
}

/// Periods of the alert grain, closed before the watched ones, that still
/// have firing `at_risk` alerts (at most the latest eight).
pub(crate) fn settling_periods(
    conn: &Db<'_>,
    config: &ConfigSnapshot,
    periods: &WatchedPeriods,
    as_of: Millis,
) -> Result<Vec<PeriodId>, AlertError> {
    if !conn.has_table("_kpi_alerts")? {
        return Ok(Vec::new());
    }
    let names = conn.rows(
        "SELECT DISTINCT period FROM _kpi_alerts WHERE kind = 'at_risk' AND state = 'firing'",
        &[],
    )?;
    let cal = &config.settings.calendar;
    let mut out: Vec<PeriodId> = Vec::new();
    for name in names {
        let Ok(p) = name.text(0).parse::<PeriodId>() else {
            continue;
        };
        if p.grain == config.alerts.grain && p < periods.closed && cal.period(p).end <= as_of {
            out.push(p);
        }
    }
    out.sort();
    let keep = out.len().saturating_sub(8);
    Ok(out.split_off(keep))
}

fn stored_rows(conn: &Db<'_>, period: &str) -> Result<Vec<Row>, AlertError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM _kpi_alerts WHERE period = ?1");
    conn.rows(&sql, &[Param::Text(period)])?
        .iter()
        .map(read_row)
        .collect()
}

/// The keys a settling period decides: its firing `at_risk` alerts and the
/// `missed` alert of each.
fn settling_keys(rows: &[Row]) -> Vec<AlertKey> {
    let mut keys = Vec::new();
    for r in rows {
        if r.key.kind == Kind::AtRisk && r.state == AlertState::Firing {
            keys.push(r.key.clone());
            keys.push(AlertKey {
                kind: Kind::Missed,
                ..r.key.clone()
            });
        }
    }
    keys
}

/// Compares the judged conditions with the stored alerts and applies the
/// transitions, queuing their notifications, inside `tx` (an immediate
/// transaction on SQLite; on PostgreSQL one that first takes the alerts'
/// advisory lock: either way two evaluators never apply the same one twice).
/// The settling periods come first, so their notifications are sent first.
pub(crate) fn apply(
    tx: &Db<'_>,
    config: &Arc<ConfigSnapshot>,
    judged: &Judged,
    as_of: Millis,
) -> Result<Applied, AlertError> {
    let now = chrono::Utc::now().timestamp_millis();
    tx.batch("", crate::store::pg::sql::ALERTS_LOCK)?;
    ensure_tables(tx)?;
    let mut stored: BTreeMap<AlertKey, Row> = BTreeMap::new();
    let mut keys: Vec<AlertKey> = Vec::new();
    for p in &judged.settling {
        let rows = stored_rows(tx, &p.to_string())?;
        let mut k = settling_keys(&rows);
        k.sort();
        k.dedup();
        keys.extend(k);
        stored.extend(rows.into_iter().map(|r| (r.key.clone(), r)));
    }
    let mut watched: Vec<AlertKey> = Vec::new();
    for p in [judged.periods.closed, judged.periods.open] {
        for r in stored_rows(tx, &p.to_string())? {
            watched.push(r.key.clone());
            stored.insert(r.key.clone(), r);
        }
    }
    watched.extend(
        judged
            .found
            .keys()
            .filter(|k| judged.periods.contains(&k.period))
            .cloned(),
    );
    watched.sort();
    watched.dedup();
    keys.extend(watched);

    let mut rows = Vec::new();
    let mut firing_missed = HashSet::new();
    for key in &keys {
        let old = stored.get(key);
        let state = match decide(old, judged.found.get(key), key, as_of) {
            Change::Nothing => old.map(|r| r.state),
            Change::Refresh(row) => {
                write_row(tx, &row)?;
                Some(row.state)
            }
            Change::Transition(row) => {
                write_row(tx, &row)?;
                let state = row.state;
                rows.push(row);
                Some(state)
            }
        };
        if key.kind == Kind::Missed && state == Some(AlertState::Firing) {
            firing_missed.insert((key.kpi.clone(), key.team.clone(), key.period.clone()));
        }
    }
    let mut transitions: Vec<Transition> = rows
        .iter()
        .map(|row| Transition {
            payload: row.payload(),
            notifications: 0,
            muted: None,
        })
        .collect();
    let queued = notify::queue(
        tx,
        config,
        &judged.teams,
        &rows,
        &mut transitions,
        &firing_missed,
        as_of,
        now,
    )?;
    Ok(Applied {
        transitions,
        messages: queued,
        settled: judged.settling.clone(),
    })
}

/// What one evaluation applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub transitions: Vec<Transition>,
    /// Messages queued in the outbox (a digest counts once).
    pub messages: usize,
    /// The closed periods settled on the way.
    pub settled: Vec<PeriodId>,
}

/// Records why a transition was not sent (or clears it).
pub(crate) fn set_muted(conn: &Db<'_>, id: &str, muted: Option<&str>) -> Result<(), AlertError> {
    conn.execute(
        "UPDATE _kpi_alerts SET muted = ?2 WHERE id = ?1",
        &[Param::Text(id), Param::OptText(muted)],
    )?;
    Ok(())
}

fn write_row(conn: &Db<'_>, r: &Row) -> Result<(), AlertError> {
    conn.execute(
        &format!(
            "INSERT INTO _kpi_alerts (id, {WRITE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (kind, kpi, team, period) DO UPDATE SET
                state = excluded.state, kpi_name = excluded.kpi_name, value = excluded.value,
                target = excluded.target, projected = excluded.projected,
                direction = excluded.direction, fired_at = excluded.fired_at,
                resolved_at = excluded.resolved_at, updated_at = excluded.updated_at,
                transitions = excluded.transitions"
        ),
        &[
            Param::Text(&r.key.id()),
            Param::Text(r.key.kind.as_str()),
            Param::Text(&r.key.kpi),
            Param::Text(&r.key.team),
            Param::Text(&r.key.period),
            Param::Text(r.state.as_str()),
            Param::Text(&r.kpi_name),
            Param::Real(r.value),
            Param::Real(r.target),
            Param::Real(r.projected),
            Param::Text(&r.direction),
            Param::Int(r.fired_at),
            Param::OptInt(r.resolved_at),
            Param::Int(r.updated_at),
            Param::Int(r.transitions),
        ],
    )?;
    Ok(())
}
