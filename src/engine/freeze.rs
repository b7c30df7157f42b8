//! Closed assessments (SPEC 16): freezing a period's scorecards, serving the
//! frozen results, reopening, the automatic close, and restatements.
//!
//! A period is frozen by [`Engine::close`]: every scorecard is evaluated once
//! (live, as of the close), stamped with the configuration version, content
//! hash and data generation, and written whole in one transaction
//! (`store::frozen`). What is served afterwards is read back from those rows,
//! so a frozen result is exactly what was stored, across restarts and in
//! every process. A close freezes the records and configuration served when
//! it begins; its evaluation runs without the engine's write lock (an ingest
//! or an edit meanwhile is not held up, and shows in the restatement) and
//! only the write holds it. [`Snapshot::evaluate`] serves a frozen period's stored
//! report unless the request asks for `live`.
//!
//! Which past periods the server closes on its own ([`Engine::auto_close`]):
//! for each grain of `freeze_grains`, the first time the server looks it
//! freezes only the period that closed last (end + close_after ≤ now) and
//! records it as the grain's watermark; from then on every later period of
//! that grain is frozen once it closes, also those that closed while the
//! server was down. Older history is never frozen automatically with today's
//! configuration (`kpi close` does it on purpose), and a period reopened by
//! hand stays open until it is closed by hand again. Nothing is closed
//! automatically while the database holds no records.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::error::{EngineError, Kind};
use super::snapshot::{EvalRequest, Snapshot};
use super::{Engine, Seen, now, record_start};
use crate::config::scorecards::Subjects;
use crate::config::settings::Settings;
use crate::eval::report::{FrozenMark, KpiLine, Report, TeamLine};
use crate::eval::scoring::Status;
use crate::period::{Calendar, Grain, Millis, PeriodId, format_utc};
use crate::store::config_history::{self, Origin};
use crate::store::engine_db::Db;
use crate::store::frozen::{self, CardRow, FrozenRows, GENERATION_KEY, SubjectRow, ValueRow};
use crate::store::{StoreError, db};

/// The frozen periods, and the marks of the closing rules, as served.
#[derive(Debug, Default)]
pub struct FrozenSet {
    pub periods: BTreeMap<PeriodId, Arc<FrozenPeriod>>,
    /// Periods reopened by hand (when): never closed automatically again.
    pub reopened: BTreeMap<PeriodId, Millis>,
    /// Grain → the first period the server closed on its own.
    pub watermarks: BTreeMap<Grain, PeriodId>,
    /// The `_kpi_data` generation of the frozen tables this set reflects.
    pub db_generation: i64,
}

/// One frozen period: its stamp and every scorecard's report.
#[derive(Debug)]
pub struct FrozenPeriod {
    pub period: PeriodId,
    /// The instant the reports were evaluated as of.
    pub as_of: Millis,
    /// `auto`, `close` or `force`.
    pub how: String,
    pub mark: FrozenMark,
    pub reports: Vec<Report>,
    /// Stored rows (cards, subjects, KPI lines).
    pub rows: usize,
}

/// A close evaluates as of the start of its minute: the instant the server
/// answers reads without an as_of for (its cache bucket), so what is frozen
/// is exactly what was served in that minute, an open period's too.
pub const AS_OF_BUCKET_MS: Millis = 60_000;

/// How a period was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// By the server, once its end + close_after passed.
    Auto,
    /// By hand (`kpi close`, `POST /api/periods/{id}/close`).
    Close,
    /// By hand, before its end (`--force`).
    Force,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Auto => "auto",
            How::Close => "close",
            How::Force => "force",
        }
    }
}

/// What a close froze.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Closed {
    pub period: String,
    pub frozen_at: String,
    pub config_version: u64,
    pub content_hash: String,
    pub data_generation: i64,
    pub how: &'static str,
    pub scorecards: usize,
    /// KPI lines frozen (every scorecard × subject × KPI).
    pub values: usize,
    /// Rows stored (cards, subjects, KPI lines) and about how many bytes.
    pub rows: u64,
    pub bytes: u64,
    /// How long the evaluation and the write took.
    pub millis: u64,
}

/// One side of a restated value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Side {
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub status: &'static str,
    pub score: Option<f64>,
}

/// A value whose live result differs from the frozen one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub scorecard: String,
    /// The subject's id: the person's or the team's.
    pub subject: String,
    pub team: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub kpi: String,
    /// None: the line is not in the frozen result (or not in the live one).
    pub frozen: Option<Side>,
    pub live: Option<Side>,
}

/// Every value of a frozen period whose live result differs (SPEC 16).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Restatement {
    pub period: String,
    pub frozen_at: String,
    pub config_version: u64,
    /// The live evaluation's as-of.
    pub as_of: String,
    pub changes: Vec<Change>,
}

impl FrozenSet {
    /// Reads the frozen periods and the closing marks.
    pub fn load(conn: &Db<'_>) -> Result<FrozenSet, StoreError> {
        let mut set = FrozenSet {
            db_generation: db::generations_in(conn)?
                .get(GENERATION_KEY)
                .copied()
                .unwrap_or(0),
            ..FrozenSet::default()
        };
        for rows in frozen::load_all(conn)? {
            match from_rows(rows) {
                Ok(f) => {
                    set.periods.insert(f.period, Arc::new(f));
                }
                Err(m) => tracing::warn!("a frozen period cannot be read: {m}"),
            }
        }
        let marks = frozen::marks(conn)?;
        for (p, at) in marks.reopened {
            if let Ok(p) = p.parse() {
                set.reopened.insert(p, at);
            }
        }
        for (g, p) in marks.watermarks {
            if let (Ok(g), Ok(p)) = (g.parse(), p.parse()) {
                set.watermarks.insert(g, p);
            }
        }
        Ok(set)
    }

    /// The frozen period served to a read of `period` as of `as_of`: once the
    /// period has ended (or from the frozen as-of on, after a forced close).
    /// A replay as of an earlier instant is computed live.
    pub fn serving(
        &self,
        period: PeriodId,
        as_of: Millis,
        cal: &Calendar,
    ) -> Option<&Arc<FrozenPeriod>> {
        let f = self.periods.get(&period)?;
        (as_of >= cal.period(period).end.min(f.as_of)).then_some(f)
    }

    /// What the server should close at `now`: per frozen grain, the
    /// watermark to record (the first look) and the periods due.
    pub fn due(
        &self,
        settings: &Settings,
        now: Millis,
    ) -> Vec<(Grain, Option<PeriodId>, Vec<PeriodId>)> {
        let grace = i64::try_from(settings.close_after.as_millis()).unwrap_or(i64::MAX / 2);
        let cal = &settings.calendar;
        let mut out = Vec::new();
        for &grain in &settings.freeze_grains {
            let last = cal.containing(grain, now.saturating_sub(grace)).prev();
            let (first, record) = match self.watermarks.get(&grain) {
                Some(w) => (*w, None),
                None => (last, Some(last)),
            };
            let mut periods = Vec::new();
            let mut p = first;
            while p <= last && periods.len() < super::snapshot::MAX_PERIODS {
                if !self.periods.contains_key(&p) && !self.reopened.contains_key(&p) {
                    periods.push(p);
                }
                p = p.next();
            }
            if record.is_some() || !periods.is_empty() {
                out.push((grain, record, periods));
            }
        }
        out
    }
}

impl Snapshot {
    /// The frozen report of `card` for `period` that a request is served
    /// (none when it asks for `live` or for explanations, which are not frozen).
    pub(super) fn frozen_report(
        &self,
        card: &str,
        period: PeriodId,
        req: &EvalRequest,
    ) -> Option<Report> {
        if req.live || req.explain {
            return None;
        }
        let f = self
            .frozen
            .serving(period, req.as_of, &self.config.settings.calendar)?;
        f.reports
            .iter()
            .find(|r| r.scorecard.as_deref() == Some(card))
            .cloned()
    }

    /// The frozen period `period`, or an error naming the frozen ones.
    pub fn frozen_period(&self, period: PeriodId) -> Result<&Arc<FrozenPeriod>, EngineError> {
        self.frozen.periods.get(&period).ok_or_else(|| {
            let ids: Vec<String> = self
                .frozen
                .periods
                .keys()
                .map(ToString::to_string)
                .collect();
            EngineError::unknown(
                Kind::FrozenPeriod,
                &period.to_string(),
                ids.iter().map(String::as_str),
            )
        })
    }

    /// Every value of frozen `period` whose live result (as of `as_of`)
    /// differs from the frozen one: value, target, status or score.
    pub fn restatement(&self, period: PeriodId, as_of: Millis) -> Result<Restatement, EngineError> {
        let f = self.frozen_period(period)?.clone();
        let live = self.evaluate(&EvalRequest {
            periods: vec![period],
            as_of,
            live: true,
            ..EvalRequest::default()
        })?;
        let mut changes = Vec::new();
        for frozen in &f.reports {
            let card = frozen.scorecard.clone().unwrap_or_default();
            let now = live.iter().find(|r| r.scorecard == frozen.scorecard);
            changes.extend(compare(&card, frozen, now));
        }
        Ok(Restatement {
            period: period.to_string(),
            frozen_at: format_utc(f.mark.frozen_at),
            config_version: f.mark.config_version,
            as_of: format_utc(as_of),
            changes,
        })
    }
}

/// The lines of one scorecard that differ between the frozen and the live report.
fn compare(card: &str, frozen: &Report, live: Option<&Report>) -> Vec<Change> {
    let sides = |r: &Report| -> BTreeMap<(String, String), (TeamLine, Side)> {
        let mut m = BTreeMap::new();
        for t in &r.teams {
            for k in &t.kpis {
                let head = TeamLine {
                    kpis: Vec::new(),
                    ..t.clone()
                };
                m.insert((t.key().to_string(), k.kpi.clone()), (head, side(k)));
            }
        }
        m
    };
    let before = sides(frozen);
    let after = live.map(sides).unwrap_or_default();
    let mut out = Vec::new();
    // Frozen order first (ranked subjects, weight order), then lines only live.
    let order = frozen
        .teams
        .iter()
        .chain(live.iter().flat_map(|r| r.teams.iter()));
    let mut seen = std::collections::BTreeSet::new();
    for t in order {
        for k in &t.kpis {
            let key = (t.key().to_string(), k.kpi.clone());
            if !seen.insert(key.clone()) {
                continue;
            }
            let (f, l) = (before.get(&key), after.get(&key));
            if same(f.map(|x| &x.1), l.map(|x| &x.1)) {
                continue;
            }
            let head = &f.or(l).expect("one side has the line").0;
            out.push(Change {
                scorecard: card.to_string(),
                subject: key.0.clone(),
                team: head.team.clone(),
                owner: head.owner.clone(),
                kpi: key.1,
                frozen: f.map(|x| x.1.clone()),
                live: l.map(|x| x.1.clone()),
            });
        }
    }
    out
}

fn side(k: &KpiLine) -> Side {
    Side {
        value: k.value,
        target: k.target,
        status: k.status.name(),
        score: k.score,
    }
}

/// Equal sides: the same status, and numbers equal within a relative 1e-9
/// (a sum taken in another order is the same value).
fn same(a: Option<&Side>, b: Option<&Side>) -> bool {
    let num = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    };
    match (a, b) {
        (Some(a), Some(b)) => {
            a.status == b.status
                && num(a.value, b.value)
                && num(a.target, b.target)
                && num(a.score, b.score)
        }
        (None, None) => true,
        _ => false,
    }
}

impl Engine {
    /// Freezes `period` (SPEC 16) as of `at`: every scorecard evaluated live,
    /// stamped, and written in one transaction; then served. A period that
    /// has not ended needs `force`; one of a grain that is not frozen, one
    /// that has not started, or one frozen already is refused. Blocking.
    pub fn close(
        &self,
        period: PeriodId,
        force: bool,
        how: How,
        at: Millis,
    ) -> Result<Closed, EngineError> {
        let started = std::time::Instant::now();
        let as_of = at - at.rem_euclid(AS_OF_BUCKET_MS);
        // The records and configuration served when the close begins: the evaluation, the
        // long part (every scorecard, every person), runs without the write lock, so ingests
        // and edits meanwhile are not held up; they come after the close, as its restatement
        // shows. Only the write holds the lock, checking again that no other close came first.
        let (served, seen_generations) = self.served_with_generations();
        check_closable(&served, period, force, at)?;
        let mut reports = served.evaluate(&EvalRequest {
            periods: vec![period],
            as_of,
            live: true,
            ..EvalRequest::default()
        })?;
        let seen = self.write_lock();
        check_closable(&self.snapshot(), period, force, at)?;
        let cfg = &served.config;
        let how = match how {
            How::Auto => How::Auto,
            _ if at < cfg.settings.calendar.period(period).end => How::Force,
            other => other,
        };
        let generations: BTreeMap<&String, &i64> = seen_generations
            .iter()
            .filter(|(e, _)| e.as_str() != GENERATION_KEY)
            .collect();
        let data_generation: i64 = generations.values().copied().sum();
        let (version, mark, stored, bytes) = self.write_engine_tables(|tx| {
            let version = if self.serving {
                served.version
            } else {
                record_start(tx, cfg, &served.content_hash)?
            };
            let mark = FrozenMark {
                frozen_at: at,
                config_version: version,
                content_hash: served.content_hash.clone(),
                data_generation,
            };
            for r in &mut reports {
                r.frozen = Some(mark.clone());
            }
            let rows = to_rows(period, as_of, how, &mark, &generations, &reports);
            frozen::save(tx, &rows)?;
            let (stored, bytes) = frozen::stored_size(tx, &rows.period)?;
            Ok((version, mark, stored, bytes))
        })?;
        // Served before the lock is let go: a second close of the period sees it frozen.
        self.serve_frozen(&seen)?;
        drop(seen);
        Ok(Closed {
            period: period.to_string(),
            frozen_at: format_utc(at),
            config_version: version,
            content_hash: mark.content_hash,
            data_generation,
            how: how.as_str(),
            scorecards: reports.len(),
            values: reports
                .iter()
                .flat_map(|r| &r.teams)
                .map(|t| t.kpis.len())
                .sum(),
            rows: stored,
            bytes,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// The served snapshot and the record generations it reflects, read together under the
    /// write lock (which every change holds while it swaps both).
    fn served_with_generations(&self) -> (Arc<Snapshot>, BTreeMap<String, i64>) {
        let seen = self.write_lock();
        (self.snapshot(), seen.generations.clone())
    }

    /// Drops the freeze of `period` and records it in the config history
    /// (origin `reopen`, by `actor`, a new version of the same files). The
    /// period is not closed automatically again. Returns the new version.
    /// Blocking.
    pub fn reopen(&self, period: PeriodId, actor: &str) -> Result<u64, EngineError> {
        let writer = self.write_lock();
        let served = self.snapshot();
        served.frozen_period(period)?;
        let at = now();
        let version = self.write_engine_tables(|tx| {
            frozen::delete(tx, &period.to_string(), at)?;
            Ok(config_history::append(
                tx,
                &config_history::NewVersion {
                    applied_at: &format_utc(at),
                    origin: Origin::Reopen,
                    actor,
                    files_changed: &[],
                    content_hash: &served.content_hash,
                    files: &served.config.files,
                },
            )?)
        })?;
        if self.serving {
            self.swap(Snapshot {
                version,
                ..Snapshot::clone(&served)
            });
        }
        self.serve_frozen(&writer)?;
        Ok(version)
    }

    /// Whether the server has a period to close at `now` (cheap: no database).
    pub fn closing_due(&self, at: Millis) -> bool {
        let s = self.snapshot();
        !s.frozen.due(&s.config.settings, at).is_empty()
    }

    /// Closes what is due at `at` (see the module doc): records a grain's
    /// watermark on the first look, then freezes each period due. Nothing
    /// happens while the database holds no records at all (a deployment that
    /// has not imported its history yet must not freeze empty quarters).
    /// Returns what it froze, or None when there are no records. Blocking.
    pub fn auto_close(&self, at: Millis) -> Result<Option<Vec<Closed>>, EngineError> {
        if !self.has_records()? {
            return Ok(None);
        }
        let s = self.snapshot();
        let due = s.frozen.due(&s.config.settings, at);
        let mut closed = Vec::new();
        for (grain, record, periods) in due {
            if let Some(first) = record {
                let _writer = self.write_lock();
                self.write_engine_tables(|tx| {
                    Ok(frozen::set_watermark(
                        tx,
                        grain.as_str(),
                        &first.to_string(),
                    )?)
                })?;
            }
            for p in periods {
                closed.push(self.close(p, false, How::Auto, at)?);
            }
        }
        self.reload_frozen()?;
        Ok(Some(closed))
    }

    /// Serves the version another process recorded for the served files (a
    /// `kpi reopen` while the server runs), so /health and the history agree.
    pub(super) fn adopt_recorded_version(&self) -> Result<(), EngineError> {
        if !self.serving {
            return Ok(());
        }
        let _writer = self.write_lock();
        let served = self.snapshot();
        if let Some(last) = config_history::last(&self.engine_conn()?.db())?
            && last.content_hash == served.content_hash
            && last.version > served.version
        {
            self.swap(Snapshot {
                version: last.version,
                ..Snapshot::clone(&served)
            });
        }
        Ok(())
    }

    /// Reads the frozen periods again and serves them (after a close, a
    /// reopen, or another process's).
    pub(super) fn reload_frozen(&self) -> Result<(), EngineError> {
        self.serve_frozen(&self.write_lock())
    }

    /// [`Engine::reload_frozen`] by a caller holding the write lock (`_held`).
    fn serve_frozen(&self, _held: &Seen) -> Result<(), EngineError> {
        let set = FrozenSet::load(&self.engine_conn()?.db())?;
        let served = self.snapshot();
        self.swap(Snapshot {
            frozen: Arc::new(set),
            ..Snapshot::clone(&served)
        });
        Ok(())
    }
}

/// Why `period` cannot be closed at `at`, if it cannot.
fn check_closable(
    served: &Snapshot,
    period: PeriodId,
    force: bool,
    at: Millis,
) -> Result<(), EngineError> {
    let settings = &served.config.settings;
    let refuse = |m: String| Err(EngineError::rejected(m, Vec::new()));
    if !settings.freeze_grains.contains(&period.grain) {
        let grains: Vec<&str> = settings.freeze_grains.iter().map(|g| g.as_str()).collect();
        return refuse(format!(
            "{period} is a {}; kpis/settings.toml freeze_grains = {grains:?} freezes only those grains",
            period.grain
        ));
    }
    if let Some(f) = served.frozen.periods.get(&period) {
        return refuse(format!(
            "{period} is frozen already (at {}, config version {}); reopen it first to freeze it again",
            format_utc(f.mark.frozen_at),
            f.mark.config_version
        ));
    }
    let p = settings.calendar.period(period);
    if at < p.start {
        return refuse(format!(
            "{period} has not started yet (it starts {})",
            format_utc(p.start)
        ));
    }
    if at < p.end && !force {
        return refuse(format!(
            "{period} is still running (it ends {}); closing it now freezes results of an open period: use --force (API: ?force=true) to do it anyway",
            settings.calendar.format_local(p.end)
        ));
    }
    Ok(())
}

/// The rows of a frozen period.
fn to_rows(
    period: PeriodId,
    as_of: Millis,
    how: How,
    mark: &FrozenMark,
    generations: &BTreeMap<&String, &i64>,
    reports: &[Report],
) -> FrozenRows {
    FrozenRows {
        period: period.to_string(),
        grain: period.grain.as_str().to_string(),
        frozen_at: mark.frozen_at,
        as_of,
        config_version: mark.config_version,
        content_hash: mark.content_hash.clone(),
        data_generation: mark.data_generation,
        data_generations: serde_json::to_string(generations).unwrap_or_default(),
        how: how.as_str().to_string(),
        cards: reports
            .iter()
            .map(|r| CardRow {
                scorecard: r.scorecard.clone().unwrap_or_default(),
                subjects: r.subjects.name().to_string(),
                open: r.open,
                lines: r
                    .teams
                    .iter()
                    .map(|t| SubjectRow {
                        team: t.team.clone(),
                        name: t.name.clone(),
                        owner: t.owner.clone(),
                        score: t.score,
                        rank: t.rank,
                        rank_in_team: t.rank_in_team,
                        projected_score: t.projected_score,
                        values: t.kpis.iter().map(value_row).collect(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn value_row(k: &KpiLine) -> ValueRow {
    ValueRow {
        kpi: k.kpi.clone(),
        value: k.value,
        target: k.target,
        weight: k.weight,
        score: k.score,
        status: k.status.name().to_string(),
        projected: k.projected,
        forecast: k.forecast,
        projected_score: k.projected_score,
        error: k.error.clone(),
    }
}

/// A frozen period read back: the reports exactly as they were frozen.
fn from_rows(f: FrozenRows) -> Result<FrozenPeriod, String> {
    let period: PeriodId = f.period.parse().map_err(|e| format!("{}: {e}", f.period))?;
    let mark = FrozenMark {
        frozen_at: f.frozen_at,
        config_version: f.config_version,
        content_hash: f.content_hash,
        data_generation: f.data_generation,
    };
    let mut rows = 0;
    let mut reports = Vec::with_capacity(f.cards.len());
    for card in f.cards {
        let subjects = match card.subjects.as_str() {
            "owners" => Subjects::Owners,
            _ => Subjects::Teams,
        };
        let mut teams = Vec::with_capacity(card.lines.len());
        for l in card.lines {
            let kpis = l
                .values
                .into_iter()
                .map(|v| {
                    Ok(KpiLine {
                        status: Status::from_name(&v.status).ok_or_else(|| {
                            format!("{}: unknown status {:?}", f.period, v.status)
                        })?,
                        kpi: v.kpi,
                        value: v.value,
                        target: v.target,
                        weight: v.weight,
                        score: v.score,
                        projected: v.projected,
                        forecast: v.forecast,
                        projected_score: v.projected_score,
                        error: v.error,
                        explanation: Vec::new(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            rows += 1 + kpis.len();
            teams.push(TeamLine {
                team: l.team,
                name: l.name,
                score: l.score,
                rank: l.rank,
                kpis,
                owner: l.owner,
                rank_in_team: l.rank_in_team,
                projected_score: l.projected_score,
            });
        }
        rows += 1;
        reports.push(Report {
            scorecard: Some(card.scorecard),
            period,
            as_of: f.as_of,
            subjects,
            open: card.open,
            teams,
            explain: false,
            frozen: Some(mark.clone()),
        });
    }
    Ok(FrozenPeriod {
        period,
        as_of: f.as_of,
        how: f.how,
        mark,
        reports,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(close_after_days: u64, grains: Vec<Grain>) -> Settings {
        Settings {
            close_after: std::time::Duration::from_secs(close_after_days * 86_400),
            freeze_grains: grains,
            ..Settings::default()
        }
    }

    fn at(s: &str) -> Millis {
        Calendar::utc().parse_time(s).unwrap()
    }

    fn q(s: &str) -> PeriodId {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_look_closes_only_the_period_that_closed_last() {
        let set = FrozenSet::default();
        let s = settings(5, vec![Grain::Quarter]);
        // 2026-Q3 ended 2026-10-01; closed at 10-06.
        assert_eq!(
            set.due(&s, at("2026-10-05T23:59:59Z")),
            [(Grain::Quarter, Some(q("2026-Q2")), vec![q("2026-Q2")])]
        );
        assert_eq!(
            set.due(&s, at("2026-10-06T00:00:00Z")),
            [(Grain::Quarter, Some(q("2026-Q3")), vec![q("2026-Q3")])]
        );
        assert!(
            set.due(&settings(5, vec![]), at("2026-10-06T00:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn after_the_watermark_every_closed_period_is_due_unless_frozen_or_reopened() {
        let mut set = FrozenSet::default();
        set.watermarks.insert(Grain::Quarter, q("2025-Q4"));
        set.reopened.insert(q("2026-Q1"), 0);
        let s = settings(5, vec![Grain::Quarter]);
        // Down through two closes: both are due, the reopened one is not.
        assert_eq!(
            set.due(&s, at("2026-10-07T00:00:00Z")),
            [(
                Grain::Quarter,
                None,
                vec![q("2025-Q4"), q("2026-Q2"), q("2026-Q3")]
            )]
        );
        // A longer grace than the time since the watermark: nothing.
        assert!(
            set.due(
                &settings(400, vec![Grain::Quarter]),
                at("2026-10-07T00:00:00Z")
            )
            .is_empty()
        );
    }

    #[test]
    fn a_frozen_period_is_served_from_its_end_or_its_forced_close_on() {
        let mut set = FrozenSet::default();
        let cal = Calendar::utc();
        let frozen = |as_of| {
            Arc::new(FrozenPeriod {
                period: q("2026-Q3"),
                as_of,
                how: "close".into(),
                mark: FrozenMark {
                    frozen_at: as_of,
                    config_version: 1,
                    content_hash: String::new(),
                    data_generation: 0,
                },
                reports: Vec::new(),
                rows: 0,
            })
        };
        set.periods
            .insert(q("2026-Q3"), frozen(at("2026-10-09T00:00:00Z")));
        assert!(
            set.serving(q("2026-Q3"), at("2026-09-30T00:00:00Z"), &cal)
                .is_none()
        );
        assert!(
            set.serving(q("2026-Q3"), at("2026-10-01T00:00:00Z"), &cal)
                .is_some()
        );
        assert!(
            set.serving(q("2026-Q2"), at("2026-10-01T00:00:00Z"), &cal)
                .is_none()
        );
        set.periods
            .insert(q("2026-Q3"), frozen(at("2026-09-01T00:00:00Z")));
        assert!(
            set.serving(q("2026-Q3"), at("2026-08-31T00:00:00Z"), &cal)
                .is_none()
        );
        assert!(
            set.serving(q("2026-Q3"), at("2026-09-01T00:00:00Z"), &cal)
                .is_some()
        );
    }

    #[test]
    fn a_report_read_back_from_its_rows_serializes_to_the_same_bytes() {
        let mark = FrozenMark {
            frozen_at: at("2026-10-06T00:00:00.250Z"),
            config_version: 7,
            content_hash: "abc".into(),
            data_generation: 13,
        };
        let line = |kpi: &str, value: Option<f64>, status| KpiLine {
            kpi: kpi.into(),
            value,
            target: Some(0.25),
            weight: Some(15.0),
            score: value.map(|v| v * 400.0),
            status,
            projected: value,
            forecast: value.map(|v| v / 0.7),
            projected_score: Some(1.0 / 3.0),
            error: None,
            explanation: Vec::new(),
        };
        let report = Report {
            scorecard: Some("reps".into()),
            period: q("2026-Q3"),
            as_of: mark.frozen_at,
            subjects: Subjects::Owners,
            open: true,
            teams: vec![TeamLine {
                team: "north".into(),
                name: "王芳".into(),
                score: Some(0.1 + 0.2),
                rank: Some(1),
                kpis: vec![
                    line("win_rate", Some(0.1 + 0.2), Status::OnTrack),
                    line("nps", None, Status::NoData),
                ],
                owner: Some("u-1".into()),
                rank_in_team: Some(1),
                projected_score: Some(2.0 / 3.0),
            }],
            explain: false,
            frozen: Some(mark.clone()),
        };
        let generations = BTreeMap::new();
        let rows = to_rows(
            q("2026-Q3"),
            mark.frozen_at,
            How::Force,
            &mark,
            &generations,
            std::slice::from_ref(&report),
        );
        let back = from_rows(rows).unwrap();
        assert_eq!(back.how, "force");
        assert_eq!(back.rows, 4);
        assert_eq!(
            serde_json::to_string(&back.reports[0]).unwrap(),
            serde_json::to_string(&report).unwrap()
        );
    }

    #[test]
    fn sides_are_the_same_within_rounding_and_differ_on_any_field() {
        let a = Side {
            value: Some(0.1 + 0.2),
            target: Some(0.25),
            status: "met",
            score: Some(100.0),
        };
        let b = Side {
            value: Some(0.3),
            ..a.clone()
        };
        assert!(same(Some(&a), Some(&b)));
        assert!(!same(
            Some(&a),
            Some(&Side {
                status: "missed",
                ..a.clone()
            })
        ));
        assert!(!same(
            Some(&a),
            Some(&Side {
                score: None,
                ..a.clone()
            })
        ));
        assert!(!same(Some(&a), None));
    }
}
