//! Frozen assessments (SPEC 16) in the engine's own tables: one header row
//! per frozen period (`_kpi_frozen`), its scorecards (`_kpi_frozen_cards`),
//! their scored subjects (`_kpi_frozen_subjects`) and every KPI line
//! (`_kpi_frozen_values`); and the marks of the closing rules
//! (`_kpi_close_marks`: periods reopened by hand, and for each frozen grain
//! the first period the server closed on its own).
//!
//! A period is written whole by [`save`] inside the caller's transaction and
//! removed whole by [`delete`], so a reader finds a period frozen completely
//! or not at all. The rows are plain typed values; turning reports into rows
//! and back is the engine's (`engine::freeze`).

use super::StoreError;
use super::engine_db::{Db, Param};

/// The `_kpi_data` key bumped by every freeze and reopen, so another process
/// serving the database (see `db::generations`) reads the frozen periods again.
pub const GENERATION_KEY: &str = "_kpi_frozen";

/// A frozen period: its stamp and every scorecard's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenRows {
    pub period: String,
    pub grain: String,
    /// When it was frozen (UTC ms).
    pub frozen_at: i64,
    /// The instant the frozen results were evaluated as of.
    pub as_of: i64,
    pub config_version: u64,
    pub content_hash: String,
    /// The sum of the record generations, and each entity's (JSON).
    pub data_generation: i64,
    pub data_generations: String,
    /// `auto` (the server, once end + close_after passed), `close`, or `force`.
    pub how: String,
    pub cards: Vec<CardRow>,
}

/// One scorecard of a frozen period.
#[derive(Debug, Clone, PartialEq)]
pub struct CardRow {
    pub scorecard: String,
    /// `teams` or `owners`.
    pub subjects: String,
    /// Whether the period was still open at the frozen as-of (a forced close).
    pub open: bool,
    pub lines: Vec<SubjectRow>,
}

/// One scored subject of a frozen scorecard, in ranked order.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectRow {
    pub team: String,
    pub name: String,
    pub owner: Option<String>,
    pub score: Option<f64>,
    pub rank: Option<u32>,
    pub rank_in_team: Option<u32>,
    pub projected_score: Option<f64>,
    pub values: Vec<ValueRow>,
}

/// One KPI line of a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    pub kpi: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub weight: Option<f64>,
    pub score: Option<f64>,
    pub status: String,
    pub projected: Option<f64>,
    pub forecast: Option<f64>,
    pub projected_score: Option<f64>,
    pub error: Option<String>,
}

/// The marks of the closing rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloseMarks {
    /// Periods reopened by hand (period id, when): never closed automatically again.
    pub reopened: Vec<(String, i64)>,
    /// Grain → the first period of it the server closed on its own.
    pub watermarks: Vec<(String, String)>,
}

const TABLES: &str = "CREATE TABLE IF NOT EXISTS _kpi_frozen (
            period TEXT PRIMARY KEY NOT NULL, grain TEXT NOT NULL,
            frozen_at INTEGER NOT NULL, as_of INTEGER NOT NULL,
            config_version INTEGER NOT NULL, content_hash TEXT NOT NULL,
            data_generation INTEGER NOT NULL, data_generations TEXT NOT NULL,
            how TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS _kpi_frozen_cards (
            period TEXT NOT NULL, pos INTEGER NOT NULL, scorecard TEXT NOT NULL,
            subjects TEXT NOT NULL, open INTEGER NOT NULL,
            PRIMARY KEY (period, pos));
         CREATE TABLE IF NOT EXISTS _kpi_frozen_subjects (
            period TEXT NOT NULL, card INTEGER NOT NULL, pos INTEGER NOT NULL,
            team TEXT NOT NULL, name TEXT NOT NULL, owner TEXT,
            score REAL, rank INTEGER, rank_in_team INTEGER, projected_score REAL,
            PRIMARY KEY (period, card, pos));
         CREATE TABLE IF NOT EXISTS _kpi_frozen_values (
            period TEXT NOT NULL, card INTEGER NOT NULL, subject INTEGER NOT NULL,
            pos INTEGER NOT NULL, kpi TEXT NOT NULL,
            value REAL, target REAL, weight REAL, score REAL, status TEXT NOT NULL,
            projected REAL, forecast REAL, projected_score REAL, error TEXT,
            PRIMARY KEY (period, card, subject, pos));
         CREATE TABLE IF NOT EXISTS _kpi_close_marks (
            kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (kind, key));";

/// Creates the tables when missing (on PostgreSQL with 64-bit integers and doubles).
pub fn ensure(conn: &Db<'_>) -> Result<(), StoreError> {
    conn.create(TABLES)
}

/// Writes a frozen period whole, in the caller's transaction (`conn` is
/// the transaction): a failure of any row leaves nothing once it rolls back.
/// The period's reopened mark is cleared and the frozen generation bumped.
pub fn save(conn: &Db<'_>, f: &FrozenRows) -> Result<(), StoreError> {
    ensure(conn)?;
    conn.execute(
        "INSERT INTO _kpi_frozen (period, grain, frozen_at, as_of, config_version,
            content_hash, data_generation, data_generations, how)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            Param::Text(&f.period),
            Param::Text(&f.grain),
            Param::Int(f.frozen_at),
            Param::Int(f.as_of),
            Param::Int(f.config_version as i64),
            Param::Text(&f.content_hash),
            Param::Int(f.data_generation),
            Param::Text(&f.data_generations),
            Param::Text(&f.how),
        ],
    )?;
    for (c, card) in f.cards.iter().enumerate() {
        save_card(conn, &f.period, c as i64, card)?;
    }
    conn.execute(
        "DELETE FROM _kpi_close_marks WHERE kind = 'reopened' AND key = ?1",
        &[Param::Text(&f.period)],
    )?;
    super::db::bump_generation_in(conn, GENERATION_KEY)?;
    Ok(())
}

fn save_card(conn: &Db<'_>, period: &str, c: i64, card: &CardRow) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _kpi_frozen_cards (period, pos, scorecard, subjects, open)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            Param::Text(period),
            Param::Int(c),
            Param::Text(&card.scorecard),
            Param::Text(&card.subjects),
            Param::Int(card.open.into()),
        ],
    )?;
    for (s, l) in card.lines.iter().enumerate() {
        conn.execute(
            "INSERT INTO _kpi_frozen_subjects (period, card, pos, team, name, owner, score, rank,
                rank_in_team, projected_score)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &[
                Param::Text(period),
                Param::Int(c),
                Param::Int(s as i64),
                Param::Text(&l.team),
                Param::Text(&l.name),
                Param::OptText(l.owner.as_deref()),
                Param::Real(l.score),
                Param::OptInt(l.rank.map(i64::from)),
                Param::OptInt(l.rank_in_team.map(i64::from)),
                Param::Real(l.projected_score),
            ],
        )?;
        for (k, v) in l.values.iter().enumerate() {
            conn.execute(
                "INSERT INTO _kpi_frozen_values (period, card, subject, pos, kpi, value, target,
                    weight, score, status, projected, forecast, projected_score, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                &[
                    Param::Text(period),
                    Param::Int(c),
                    Param::Int(s as i64),
                    Param::Int(k as i64),
                    Param::Text(&v.kpi),
                    Param::Real(v.value),
                    Param::Real(v.target),
                    Param::Real(v.weight),
                    Param::Real(v.score),
                    Param::Text(&v.status),
                    Param::Real(v.projected),
                    Param::Real(v.forecast),
                    Param::Real(v.projected_score),
                    Param::OptText(v.error.as_deref()),
                ],
            )?;
        }
    }
    Ok(())
}

/// Removes a frozen period whole and marks it reopened (at `at`), in the
/// caller's transaction. Returns whether it was frozen.
pub fn delete(conn: &Db<'_>, period: &str, at: i64) -> Result<bool, StoreError> {
    ensure(conn)?;
    let p = [Param::Text(period)];
    let n = conn.execute("DELETE FROM _kpi_frozen WHERE period = ?1", &p)?;
    for sql in [
        "DELETE FROM _kpi_frozen_cards WHERE period = ?1",
        "DELETE FROM _kpi_frozen_subjects WHERE period = ?1",
        "DELETE FROM _kpi_frozen_values WHERE period = ?1",
    ] {
        conn.execute(sql, &p)?;
    }
    conn.execute(
        "INSERT INTO _kpi_close_marks (kind, key, value) VALUES ('reopened', ?1, ?2)
         ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
        &[Param::Text(period), Param::Text(&at.to_string())],
    )?;
    super::db::bump_generation_in(conn, GENERATION_KEY)?;
    Ok(n > 0)
}

/// Records the first period of `grain` the server closes on its own (kept
/// when one is recorded already).
pub fn set_watermark(conn: &Db<'_>, grain: &str, period: &str) -> Result<(), StoreError> {
    ensure(conn)?;
    conn.execute(
        "INSERT INTO _kpi_close_marks (kind, key, value) VALUES ('watermark', ?1, ?2)
         ON CONFLICT (kind, key) DO NOTHING",
        &[Param::Text(grain), Param::Text(period)],
    )?;
    super::db::bump_generation_in(conn, GENERATION_KEY)?;
    Ok(())
}

/// Every frozen period, oldest first.
pub fn load_all(conn: &Db<'_>) -> Result<Vec<FrozenRows>, StoreError> {
    ensure(conn)?;
    let rows = conn.rows(
        "SELECT period, grain, frozen_at, as_of, config_version, content_hash, data_generation,
            data_generations, how
         FROM _kpi_frozen ORDER BY frozen_at, period",
        &[],
    )?;
    let mut out: Vec<FrozenRows> = rows
        .iter()
        .map(|r| FrozenRows {
            period: r.text(0),
            grain: r.text(1),
            frozen_at: r.int(2),
            as_of: r.int(3),
            config_version: r.int(4) as u64,
            content_hash: r.text(5),
            data_generation: r.int(6),
            data_generations: r.text(7),
            how: r.text(8),
            cards: Vec::new(),
        })
        .collect();
    for f in &mut out {
        f.cards = cards(conn, &f.period)?;
    }
    Ok(out)
}

fn cards(conn: &Db<'_>, period: &str) -> Result<Vec<CardRow>, StoreError> {
    let p = [Param::Text(period)];
    let mut cards: Vec<CardRow> = conn
        .rows(
            "SELECT scorecard, subjects, open FROM _kpi_frozen_cards WHERE period = ?1 ORDER BY pos",
            &p,
        )?
        .iter()
        .map(|r| CardRow {
            scorecard: r.text(0),
            subjects: r.text(1),
            open: r.int(2) != 0,
            lines: Vec::new(),
        })
        .collect();
    let subjects = conn.rows(
        "SELECT card, team, name, owner, score, rank, rank_in_team, projected_score
         FROM _kpi_frozen_subjects WHERE period = ?1 ORDER BY card, pos",
        &p,
    )?;
    for r in &subjects {
        let line = SubjectRow {
            team: r.text(1),
            name: r.text(2),
            owner: r.opt_text(3),
            score: r.real(4),
            rank: r.opt_int(5).map(|v| v as u32),
            rank_in_team: r.opt_int(6).map(|v| v as u32),
            projected_score: r.real(7),
            values: Vec::new(),
        };
        if let Some(c) = cards.get_mut(r.int(0) as usize) {
            c.lines.push(line);
        }
    }
    let values = conn.rows(
        "SELECT card, subject, kpi, value, target, weight, score, status, projected, forecast,
            projected_score, error
         FROM _kpi_frozen_values WHERE period = ?1 ORDER BY card, subject, pos",
        &p,
    )?;
    for r in &values {
        let value = ValueRow {
            kpi: r.text(2),
            value: r.real(3),
            target: r.real(4),
            weight: r.real(5),
            score: r.real(6),
            status: r.text(7),
            projected: r.real(8),
            forecast: r.real(9),
            projected_score: r.real(10),
            error: r.opt_text(11),
        };
        let (card, subject) = (r.int(0) as usize, r.int(1) as usize);
        if let Some(l) = cards.get_mut(card).and_then(|c| c.lines.get_mut(subject)) {
            l.values.push(value);
        }
    }
    Ok(cards)
}

/// The marks of the closing rules.
pub fn marks(conn: &Db<'_>) -> Result<CloseMarks, StoreError> {
    ensure(conn)?;
    let mut out = CloseMarks::default();
    for r in conn.rows(
        "SELECT kind, key, value FROM _kpi_close_marks ORDER BY key",
        &[],
    )? {
        let (key, value) = (r.text(1), r.text(2));
        if r.text(0) == "reopened" {
            out.reopened.push((key, value.parse().unwrap_or(0)));
        } else {
            out.watermarks.push((key, value));
        }
    }
    Ok(out)
}

/// The size of a period's stored rows (cards, subjects and KPI lines): how
/// many, and about how many bytes of values (text lengths, 8 bytes a number),
/// for `kpi close`'s summary and the benchmark.
pub fn stored_size(conn: &Db<'_>, period: &str) -> Result<(u64, u64), StoreError> {
    ensure(conn)?;
    let row = conn.row(
        "SELECT (SELECT count(*) FROM _kpi_frozen_values WHERE period = ?1)
              + (SELECT count(*) FROM _kpi_frozen_subjects WHERE period = ?1)
              + (SELECT count(*) FROM _kpi_frozen_cards WHERE period = ?1),
                (SELECT COALESCE(SUM(length(kpi) + length(status) + 8 * 8 + COALESCE(length(error), 0)), 0)
                   FROM _kpi_frozen_values WHERE period = ?1)
              + (SELECT COALESCE(SUM(length(team) + length(name) + COALESCE(length(owner), 0) + 5 * 8), 0)
                   FROM _kpi_frozen_subjects WHERE period = ?1)",
        &[Param::Text(period)],
    )?;
    Ok(row.map_or((0, 0), |r| (r.int(0) as u64, r.int(1) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(period: &str) -> FrozenRows {
        let value = |kpi: &str, v: Option<f64>| ValueRow {
            kpi: kpi.into(),
            value: v,
            target: Some(0.25),
            weight: Some(15.0),
            score: v.map(|x| x * 400.0),
            status: "met".into(),
            projected: None,
            forecast: None,
            projected_score: None,
            error: None,
        };
        FrozenRows {
            period: period.into(),
            grain: "quarter".into(),
            frozen_at: 1_000,
            as_of: 999,
            config_version: 3,
            content_hash: "h".into(),
            data_generation: 12,
            data_generations: "{}".into(),
            how: "close".into(),
            cards: vec![CardRow {
                scorecard: "s".into(),
                subjects: "teams".into(),
                open: false,
                lines: vec![SubjectRow {
                    team: "north".into(),
                    name: "北区".into(),
                    owner: None,
                    score: Some(87.5),
                    rank: Some(1),
                    rank_in_team: None,
                    projected_score: None,
                    values: vec![value("a", Some(0.1 + 0.2)), value("b", None)],
                }],
            }],
        }
    }

    #[test]
    fn a_period_is_saved_and_read_back_exactly_and_reopened_whole() {
        let mut conn = crate::store::db::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        save(&Db::Sqlite(&tx), &sample("2026-Q3")).unwrap();
        tx.commit().unwrap();
        assert_eq!(load_all(&Db::Sqlite(&conn)).unwrap(), [sample("2026-Q3")]);
        assert_eq!(stored_size(&Db::Sqlite(&conn), "2026-Q3").unwrap().0, 4);
        assert!(delete(&Db::Sqlite(&conn), "2026-Q3", 7).unwrap());
        assert!(load_all(&Db::Sqlite(&conn)).unwrap().is_empty());
        assert_eq!(stored_size(&Db::Sqlite(&conn), "2026-Q3").unwrap().0, 0);
        assert_eq!(
            marks(&Db::Sqlite(&conn)).unwrap().reopened,
            [("2026-Q3".into(), 7)]
        );
        // Frozen again: the reopened mark goes.
        save(&Db::Sqlite(&conn), &sample("2026-Q3")).unwrap();
        assert!(marks(&Db::Sqlite(&conn)).unwrap().reopened.is_empty());
        set_watermark(&Db::Sqlite(&conn), "quarter", "2026-Q2").unwrap();
        set_watermark(&Db::Sqlite(&conn), "quarter", "2026-Q3").unwrap();
        assert_eq!(
            marks(&Db::Sqlite(&conn)).unwrap().watermarks,
            [("quarter".into(), "2026-Q2".into())]
        );
    }

    #[test]
    fn a_failing_row_leaves_nothing_of_the_period() {
        let mut conn = crate::store::db::open_in_memory().unwrap();
        ensure(&Db::Sqlite(&conn)).unwrap();
        // The second value row of the period fails, as a full disk would.
        conn.execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON _kpi_frozen_values
             WHEN (SELECT count(*) FROM _kpi_frozen_values) >= 1
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        assert!(save(&Db::Sqlite(&tx), &sample("2026-Q3")).is_err());
        drop(tx);
        assert!(load_all(&Db::Sqlite(&conn)).unwrap().is_empty());
        assert_eq!(stored_size(&Db::Sqlite(&conn), "2026-Q3").unwrap().0, 0);
        assert!(
            !crate::store::db::generations(&conn)
                .unwrap()
                .contains_key(GENERATION_KEY)
        );
    }
}
