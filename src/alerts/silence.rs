//! Silences (SPEC 18): spans of time in which matching alerts still change
//! state but nothing is sent. They come from `[[silence]]` in alerts.toml
//! and from `POST /api/silences` (kept in `_kpi_silences`).
//!
//! A silence has optional `kpis` and `teams` filters (exact ids, as for
//! webhooks), and a time: `from`/`until` (either may be open), `weekly`
//! days, or both (those weekdays within the span). A bare date `until`
//! covers that whole day; times are read in settings.timezone.

use chrono::{Datelike, TimeZone, Weekday};
use serde::{Deserialize, Serialize};

use super::AlertError;
use crate::period::{Calendar, Millis, format_utc};
use crate::store::engine_db::{Db, Param};

/// One silence, from the file or the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// "3" for a silence of the API; "alerts.toml:LINE" for one of the file.
    pub id: String,
    pub kpis: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub from: Option<Millis>,
    pub until: Option<Millis>,
    pub weekly: Option<Vec<Weekday>>,
    pub comment: String,
    /// The writer who added it through the API (None in alerts.toml, and on
    /// silences stored before writers were named).
    pub created_by: Option<String>,
}

/// Why a silence is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("{what}: bad time {value:?} (RFC 3339, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD)")]
    BadTime { what: &'static str, value: String },
    #[error("until ({until}) must be after from ({from})")]
    Backwards { from: String, until: String },
    #[error("weekly days: expected mon, tue, wed, thu, fri, sat or sun, got {0:?}")]
    BadDay(String),
    #[error("a silence needs `until` or `weekly = {{ days = [...] }}`: it would never end")]
    Endless,
}

impl Silence {
    /// Does it hold back a notification of this KPI and team at `at`?
    pub fn matches(&self, kpi: &str, team: &str, at: Millis, calendar: &Calendar) -> bool {
        let allows = |list: &Option<Vec<String>>, x: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|y| y == x))
        };
        allows(&self.kpis, kpi) && allows(&self.teams, team) && self.active(at, calendar)
    }

    /// Is it in force at `at`?
    pub fn active(&self, at: Millis, calendar: &Calendar) -> bool {
        if self.from.is_some_and(|f| at < f) || self.until.is_some_and(|u| at >= u) {
            return false;
        }
        match &self.weekly {
            None => true,
            Some(days) => {
                let day = calendar
                    .tz
                    .timestamp_millis_opt(at)
                    .single()
                    .map(|t| t.weekday());
                day.is_some_and(|d| days.contains(&d))
            }
        }
    }

    /// What `kpi alerts` and the API show for an alert it held back.
    pub fn describe(&self) -> String {
        if self.comment.is_empty() {
            format!("silence {}", self.id)
        } else {
            format!("silence {} ({})", self.id, self.comment)
        }
    }
}

/// Reads a `from` or `until` bound. A bare date `until` ends with its day.
pub fn parse_bound(
    calendar: &Calendar,
    what: &'static str,
    value: &str,
) -> Result<Millis, SilenceError> {
    let bad = || SilenceError::BadTime {
        what,
        value: value.to_string(),
    };
    let t = calendar.parse_time(value).map_err(|_| bad())?;
    let bare_date = value.trim().len() == 10;
    if what == "until" && bare_date {
        let date =
            chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| bad())?;
        let next = date.succ_opt().ok_or_else(bad)?;
        return Ok(calendar.local_midnight(next));
    }
    Ok(t)
}

/// "mon" … "sun" (also full English names).
pub fn parse_day(s: &str) -> Result<Weekday, SilenceError> {
    let d = s.trim().to_ascii_lowercase();
    let day = match d.get(..3).unwrap_or("") {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return Err(SilenceError::BadDay(s.to_string())),
    };
    Ok(day)
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// Checks the pieces of a silence and builds it.
pub fn build(calendar: &Calendar, spec: &SilenceSpec, id: String) -> Result<Silence, SilenceError> {
    let from = spec
        .from
        .as_deref()
        .map(|s| parse_bound(calendar, "from", s))
        .transpose()?;
    let until = spec
        .until
        .as_deref()
        .map(|s| parse_bound(calendar, "until", s))
        .transpose()?;
    let weekly = spec
        .weekly
        .as_ref()
        .map(|w| {
            w.days
                .iter()
                .map(|d| parse_day(d))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if let (Some(f), Some(u)) = (from, until)
        && u <= f
    {
        return Err(SilenceError::Backwards {
            from: format_utc(f),
            until: format_utc(u),
        });
    }
    if until.is_none() && weekly.is_none() {
        return Err(SilenceError::Endless);
    }
    Ok(Silence {
        id,
        kpis: spec.kpis.clone(),
        teams: spec.teams.clone(),
        from,
        until,
        weekly,
        comment: spec.comment.clone().unwrap_or_default(),
        created_by: None,
    })
}

/// A silence as written: the body of `POST /api/silences`, or a `[[silence]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub kpis: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub weekly: Option<Weekly>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    pub days: Vec<String>,
}

/// A silence as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SilenceView {
    pub id: String,
    /// `file` (alerts.toml: change it there) or `api`.
    pub source: &'static str,
    pub kpis: Option<Vec<String>>,
    pub teams: Option<Vec<String>>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub weekly: Option<Vec<&'static str>>,
    pub comment: String,
    /// The writer who added it through the API (null in alerts.toml).
    pub created_by: Option<String>,
    /// In force right now.
    pub active: bool,
}

impl SilenceView {
    pub fn new(s: &Silence, now: Millis, calendar: &Calendar) -> SilenceView {
        SilenceView {
            id: s.id.clone(),
            source: if s.id.parse::<i64>().is_ok() {
                "api"
            } else {
                "file"
            },
            kpis: s.kpis.clone(),
            teams: s.teams.clone(),
            from: s.from.map(format_utc),
            until: s.until.map(format_utc),
            weekly: s
                .weekly
                .as_ref()
                .map(|d| d.iter().map(|d| day_name(*d)).collect()),
            comment: s.comment.clone(),
            created_by: s.created_by.clone(),
            active: s.active(now, calendar),
        }
    }
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS _kpi_silences (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kpis TEXT,
            teams TEXT,
            from_at INTEGER,
            until_at INTEGER,
            weekly TEXT,
            comment TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            created_by TEXT);";

pub(crate) fn ensure_table(conn: &Db<'_>) -> Result<(), AlertError> {
    conn.create(TABLE)?;
    // A table made before writers were named lacks created_by.
    conn.add_missing_column("_kpi_silences", "created_by", "TEXT")?;
    Ok(())
}

fn to_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).expect("a list of strings serialises"))
}

fn from_json(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Stores a silence of the API; returns it with its id.
pub fn add(conn: &Db<'_>, s: &Silence, now: Millis) -> Result<Silence, AlertError> {
    ensure_table(conn)?;
    let weekly = s
        .weekly
        .as_ref()
        .map(|d| d.iter().map(|d| day_name(*d)).collect::<Vec<_>>().join(","));
    let (kpis, teams) = (to_json(&s.kpis), to_json(&s.teams));
    let id = conn
        .row(
            "INSERT INTO _kpi_silences
                (kpis, teams, from_at, until_at, weekly, comment, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             RETURNING id",
            &[
                Param::OptText(kpis.as_deref()),
                Param::OptText(teams.as_deref()),
                Param::OptInt(s.from),
                Param::OptInt(s.until),
                Param::OptText(weekly.as_deref()),
                Param::Text(&s.comment),
                Param::Int(now),
                Param::OptText(s.created_by.as_deref()),
            ],
        )?
        .map_or(0, |r| r.int(0));
    Ok(Silence {
        id: id.to_string(),
        ..s.clone()
    })
}

/// The silences of the API, oldest first.
pub fn stored(conn: &Db<'_>) -> Result<Vec<Silence>, AlertError> {
    ensure_table(conn)?;
    let rows = conn.rows(
        "SELECT id, kpis, teams, from_at, until_at, weekly, comment, created_by
         FROM _kpi_silences ORDER BY id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Silence {
            id: r.int(0).to_string(),
            kpis: from_json(r.opt_text(1)),
            teams: from_json(r.opt_text(2)),
            from: r.opt_int(3),
            until: r.opt_int(4),
            weekly: r
                .opt_text(5)
                .map(|w| w.split(',').filter_map(|d| parse_day(d).ok()).collect()),
            comment: r.text(6),
            created_by: r.opt_text(7),
        })
        .collect())
}

/// Removes a silence of the API; false when there is none with that id.
pub fn remove(conn: &Db<'_>, id: i64) -> Result<bool, AlertError> {
    ensure_table(conn)?;
    Ok(conn.execute("DELETE FROM _kpi_silences WHERE id = ?1", &[Param::Int(id)])? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::new("Asia/Shanghai", 1).unwrap()
    }

    fn t(s: &str) -> Millis {
        cal().parse_time(s).unwrap()
    }

    #[test]
    fn a_date_span_covers_its_last_day_and_filters_apply() {
        let spec = SilenceSpec {
            kpis: Some(vec!["revenue".into()]),
            from: Some("2027-02-10".into()),
            until: Some("2027-02-18".into()),
            comment: Some("春节".into()),
            ..SilenceSpec::default()
        };
        let s = build(&cal(), &spec, "1".into()).unwrap();
        let c = cal();
        assert!(!s.matches("revenue", "north", t("2027-02-09 23:59:59"), &c));
        assert!(s.matches("revenue", "north", t("2027-02-10 00:00:00"), &c));
        assert!(s.matches("revenue", "north", t("2027-02-18 23:59:59"), &c));
        assert!(!s.matches("revenue", "north", t("2027-02-19 00:00:00"), &c));
        assert!(!s.matches("win_rate", "north", t("2027-02-12"), &c));
    }

    #[test]
    fn weekly_days_are_local_weekdays() {
        let spec = SilenceSpec {
            weekly: Some(Weekly {
                days: vec!["sat".into(), "Sunday".into()],
            }),
            ..SilenceSpec::default()
        };
        let s = build(&cal(), &spec, "alerts.toml:3".into()).unwrap();
        let c = cal();
        // 2026-12-05 is a Saturday; 00:30 in Shanghai is still Friday in UTC.
        assert!(s.active(t("2026-12-05 00:30:00"), &c));
        assert!(s.active(t("2026-12-06 23:00:00"), &c));
        assert!(!s.active(t("2026-12-07 00:00:00"), &c));
        assert!(matches!(
            build(&c, &SilenceSpec::default(), "x".into()),
            Err(SilenceError::Endless)
        ));
        let bad = SilenceSpec {
            weekly: Some(Weekly {
                days: vec!["someday".into()],
            }),
            ..SilenceSpec::default()
        };
        assert!(matches!(
            build(&c, &bad, "x".into()),
            Err(SilenceError::BadDay(_))
        ));
    }
}
