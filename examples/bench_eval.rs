//! The evaluation benchmark: the engine against hand-written SQL on the demo CRM.
//!
//!     cargo run --release --example bench_eval -- [--deals N] [--dir DIR] [--keep]
//!         [--warm-runs N] [--only engine|sql] [--plain-sql]
//!
//! 1. Builds a SQLite database with the demo CRM at about N deals (default 1,000,000), exactly
//!    as `kpi demo` writes it (db::open, db::migrate with the repository's schema, BulkWriter,
//!    demo::generate), with a fixed `until` so that runs are reproducible. `--keep` reuses a
//!    database an earlier run built with the same options.
//! 2. Engine, cold: `Engine::open` (check, new connection, new column store), one Evaluation over the eight
//!    quarters ending with the quarter containing `until`, every scorecard × period × team (in
//!    tree order) through `report::scorecard`. Engine, warm: new Evaluations over the same
//!    ColumnStore (columns already loaded).
//! 3. The SQL baseline (`bench_eval/sql.rs`): one grouped query per measure, rolled up the team
//!    tree in Rust, derived KPIs in plain arithmetic. Cold: a new connection; warm: again on it.
//! 4. Compares every (KPI, team, period) of the two (relative tolerance 1e-9; no data must
//!    match no data) and prints the first mismatches.
//! 5. Prints a summary: rows, times, ratios, peak RSS per phase. Exits with status 1 on any
//!    mismatch.
//!
//! `--only engine` or `--only sql` runs one side (for a profiler: `perf record -g`); nothing is
//! compared then. See BENCHMARKS.md for the figures and how they were measured.
//!
//! Peak RSS per phase: the kernel's high-water mark (VmHWM) is reset before each phase by
//! writing 5 to /proc/self/clear_refs, where the kernel allows it.

#[path = "bench_eval/sql.rs"]
mod sql;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kpi_engine::ConfigSnapshot;
use kpi_engine::config::{Scorecard, Subjects};
use kpi_engine::demo::{self, DemoOptions};
use kpi_engine::engine::snapshot::members;
use kpi_engine::engine::{Engine, EngineOptions};
use kpi_engine::eval::Records;
use kpi_engine::eval::{Evaluation, report};
use kpi_engine::period::{Grain, Millis, PeriodId};
use kpi_engine::store::RecordStore;
use kpi_engine::store::db;
use kpi_engine::store::demo_writer::{self, BulkWriter};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The demo seed: `demo::DEFAULT_SEED` (the `kpi demo` CLI defaults to 1, so pass `--seed 2026`
/// to it for the same records).
const SEED: u64 = demo::DEFAULT_SEED;
/// The last day of data, in the settings time zone: the data ends at its local midnight.
const UNTIL_DAY: (i32, u32, u32) = (2026, 11, 21);
/// Leaf teams × quarters of the demo: scale = deals ÷ this.
const TEAM_QUARTERS: u64 = 6 * 8;
const TOLERANCE: f64 = 1e-9;
const SHOWN_MISMATCHES: usize = 20;

struct Args {
    deals: u64,
    dir: PathBuf,
    keep: bool,
    warm_runs: usize,
    /// `NOT INDEXED` hints and larger SQLite caches for the SQL baseline.
    sql_hints: bool,
    engine: bool,
    sql: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let root = repo_root();
        let mut args = Args {
            deals: 1_000_000,
            dir: root.join("target").join("bench_eval"),
            keep: false,
            warm_runs: 2,
            sql_hints: true,
            engine: true,
            sql: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
            match a.as_str() {
                "--deals" => {
                    let v = value("--deals")?.replace(['_', ','], "");
                    args.deals = v
                        .parse()
                        .map_err(|_| format!("--deals: expected a number, got {v:?}"))?;
                    if args.deals < TEAM_QUARTERS {
                        return Err(format!("--deals: at least {TEAM_QUARTERS}"));
                    }
                }
                "--dir" => args.dir = PathBuf::from(value("--dir")?),
                "--keep" => args.keep = true,
                "--plain-sql" => args.sql_hints = false,
                "--only" => match value("--only")?.as_str() {
                    "engine" => args.sql = false,
                    "sql" => args.engine = false,
                    other => return Err(format!("--only: engine or sql, not {other:?}")),
                },
                "--warm-runs" => {
                    let v = value("--warm-runs")?;
                    args.warm_runs = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or(format!("--warm-runs: expected a number ≥ 1, got {v:?}"))?;
                }
                "-h" | "--help" => {
                    println!(
                        "usage: bench_eval [--deals N] [--dir DIR] [--keep] [--warm-runs N] [--only engine|sql] [--plain-sql]\n\
                         \x20 --deals N      about N deals (default 1000000)\n\
                         \x20 --dir DIR      where the database goes (default target/bench_eval)\n\
                         \x20 --keep         reuse the database of an earlier run with the same options\n\
                         \x20 --warm-runs N  warm runs of the engine and of SQL (default 2; the best is reported)\n\
                         \x20 --only S       run only the engine or only the SQL baseline (no comparison)\n\
                         \x20 --plain-sql    the SQL baseline without its NOT INDEXED hints and cache pragmas"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        Ok(args)
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    // RUST_LOG=kpi_engine=debug shows the engine's column loads and query shapes with timings.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_eval: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("bench_eval: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Res<()> {
    let root = repo_root();
    let started = Instant::now();
    let cfg = kpi_engine::load_checked(&root)?;
    let config_time = started.elapsed();
    let cal = cfg.settings.calendar;
    let until = cal.local_midnight(
        chrono::NaiveDate::from_ymd_opt(UNTIL_DAY.0, UNTIL_DAY.1, UNTIL_DAY.2)
            .and_then(|d| d.succ_opt())
            .ok_or("bad until")?,
    );
    let as_of = until;
    let last = cal.containing(Grain::Quarter, until - 1);
    let periods: Vec<PeriodId> = (0..8).map(|i| last.shift(i - 7)).collect();
    let scale = (args.deals as f64 / TEAM_QUARTERS as f64).round().max(1.0) as u32;
    println!(
        "bench_eval: about {} deals (scale {scale} per team-quarter, seed {SEED}), data until {}, periods {}..{}, as of {}",
        args.deals,
        cal.format_local(until),
        periods[0],
        periods[7],
        kpi_engine::period::format_utc(as_of)
    );
    println!(
        "config: {} KPIs, {} scorecards, loaded and checked in {}",
        cfg.kpis.len(),
        cfg.scorecards.len(),
        secs(config_time)
    );

    // 1. The database.
    std::fs::create_dir_all(&args.dir)?;
    let path = args.dir.join(format!("crm-{}.db", args.deals));
    reset_peak();
    let built = build(&cfg, &path, scale, until, args.keep)?;
    let build_rss = peak_rss();
    let rows: u64 = built.counts.iter().map(|c| c.1).sum();
    let deals = built
        .counts
        .iter()
        .find(|c| c.0 == "deals")
        .map_or(0, |c| c.1);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    match built.time {
        Some(t) => println!(
            "built {} in {} ({:.0} MB)",
            path.display(),
            secs(t),
            size as f64 / 1e6
        ),
        None => println!(
            "reused {} (--keep; {:.0} MB)",
            path.display(),
            size as f64 / 1e6
        ),
    }
    let shown: Vec<String> = built
        .counts
        .iter()
        .map(|(e, n)| format!("{e} {n}"))
        .collect();
    println!("rows: {} ({rows} in all)", shown.join(", "));

    // 2. The engine, 3. the SQL baseline.
    let engine = if args.engine {
        Some(engine_phase(args, &cfg, &path, as_of, &periods)?)
    } else {
        None
    };
    let sql = if args.sql {
        Some(sql_phase(args, &path, &cal, &periods, as_of)?)
    } else {
        None
    };

    // 4. Same values?
    let mut mismatches = Vec::new();
    if let (Some(e), Some(s)) = (&engine, &sql) {
        let c = compare(&e.values, &s.values);
        println!(
            "compared {} values (KPI × team × period; {} no data on both sides, largest relative \
             difference of the others {:.1e}): {} mismatch(es)",
            c.values,
            c.no_data,
            c.largest_difference,
            c.mismatches.len()
        );
        mismatches = c.mismatches;
        for m in mismatches.iter().take(SHOWN_MISMATCHES) {
            println!("  {m}");
        }
    }

    // 5. Summary.
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let cell =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.3}s", d.as_secs_f64()));
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".to_string(),
    };
    let (ec, ew) = (
        engine.as_ref().map(|e| e.cold),
        engine.as_ref().map(|e| best(&e.warm)),
    );
    let (sc, sw) = (
        sql.as_ref().map(|s| s.cold),
        sql.as_ref().map(|s| best(&s.warm)),
    );
    let rss = |kb: Option<u64>| kb.map_or("-".to_string(), |kb| format!("{}MB", kb / 1024));
    println!();
    println!(
        "{:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "deals",
        "rows",
        "eng cold",
        "eng warm",
        "SQL cold",
        "SQL warm",
        "cold e/S",
        "warm e/S",
        "RSS eng",
        "RSS SQL",
        "RSS max"
    );
    println!(
        "{:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        deals,
        rows,
        cell(ec),
        cell(ew),
        cell(sc),
        cell(sw),
        ratio(ec, sc),
        ratio(ew, sw),
        rss(engine.as_ref().map(|e| e.peak_rss)),
        rss(sql.as_ref().map(|s| s.peak_rss)),
        rss(Some(
            build_rss
                .max(peak_rss())
                .max(engine.as_ref().map_or(0, |e| e.peak_rss))
                .max(sql.as_ref().map_or(0, |s| s.peak_rss))
        )),
    );
    println!(
        "(warm: the best of {} runs; e/S: engine time ÷ SQL time)",
        args.warm_runs
    );
    if !mismatches.is_empty() {
        return Err(format!("{} mismatch(es) between engine and SQL", mismatches.len()).into());
    }
    Ok(())
}

struct EnginePhase {
    cold: Duration,
    warm: Vec<Duration>,
    /// Peak RSS of the phase, kB.
    peak_rss: u64,
    values: EngineValues,
}

/// Engine cold (new connection, new ColumnStore, one Evaluation), then warm (new Evaluations
/// over the same ColumnStore).
fn engine_phase(
    args: &Args,
    cfg: &Arc<ConfigSnapshot>,
    path: &Path,
    as_of: Millis,
    periods: &[PeriodId],
) -> Res<EnginePhase> {
    reset_peak();
    let started = Instant::now();
    // Opened as `kpi eval` opens it: the configuration checked, the fields formulas name
    // read in one scan of each table.
    let opened = Engine::open(&EngineOptions {
        root: repo_root(),
        db: path.to_path_buf(),
        serving: false,
    })?;
    let store = opened.snapshot().records.store.clone();
    let (mut eval, lines) = engine(cfg, &store, as_of, periods)?;
    let cold = started.elapsed();
    println!(
        "engine cold: {} ({lines} KPI lines, {} query shapes)",
        secs(cold),
        eval.shapes_executed()
    );
    let mut warm = Vec::new();
    for _ in 0..args.warm_runs {
        let started = Instant::now();
        let (e, _) = engine(cfg, &store, as_of, periods)?;
        warm.push(started.elapsed());
        eval = e;
    }
    println!("engine warm: {}", list(&warm));
    people(cfg, &store, as_of, periods)?;
    let peak_rss = peak_rss();
    let values = engine_values(cfg, &eval, periods)?;
    Ok(EnginePhase {
        cold,
        warm,
        peak_rss,
        values,
    })
}

struct SqlPhase {
    cold: Duration,
    warm: Vec<Duration>,
    /// Peak RSS of the phase, kB.
    peak_rss: u64,
    values: sql::Values,
}

/// SQL cold (new connection), then warm (again on the same connection).
fn sql_phase(
    args: &Args,
    path: &Path,
    cal: &kpi_engine::period::Calendar,
    periods: &[PeriodId],
    as_of: Millis,
) -> Res<SqlPhase> {
    reset_peak();
    let started = Instant::now();
    let conn = sql::open(path, args.sql_hints)?;
    let values = sql::run(&conn, cal, periods, as_of, args.sql_hints)?;
    let cold = started.elapsed();
    println!("SQL cold:    {}", secs(cold));
    let mut warm = Vec::new();
    let mut last = None;
    for _ in 0..args.warm_runs {
        let started = Instant::now();
        let v = sql::run(&conn, cal, periods, as_of, args.sql_hints)?;
        warm.push(started.elapsed());
        last = Some(v);
    }
    println!("SQL warm:    {}", list(&warm));
    if let Some(w) = &last {
        let per_query: Vec<String> = values
            .timings
            .iter()
            .zip(&w.timings)
            .map(|((q, cold), (_, warm))| format!("{q} {:.0}/{:.0}", ms(*cold), ms(*warm)))
            .collect();
        println!("SQL per query, ms cold/last warm: {}", per_query.join(", "));
    }
    Ok(SqlPhase {
        cold,
        warm,
        peak_rss: peak_rss(),
        values,
    })
}

struct Built {
    /// None when an earlier database was reused.
    time: Option<Duration>,
    counts: Vec<(String, u64)>,
}

/// Writes the demo CRM into a new database at `path`, as `kpi demo` does, or reuses one that
/// an earlier run wrote with the same options (`keep`).
fn build(cfg: &ConfigSnapshot, path: &Path, scale: u32, until: Millis, keep: bool) -> Res<Built> {
    let stamp = format!("scale={scale} seed={SEED} until={until}");
    if keep && path.exists() {
        let conn = db::open(path)?;
        if demo_writer::meta(&conn, "bench_eval")?.as_deref() == Some(stamp.as_str()) {
            let mut counts = Vec::new();
            for e in cfg.schema.entities.keys() {
                let n: i64 =
                    conn.query_row(&format!("SELECT COUNT(*) FROM \"{e}\""), [], |r| r.get(0))?;
                counts.push((e.clone(), n as u64));
            }
            return Ok(Built { time: None, counts });
        }
        println!(
            "--keep: {} was built with other options; rebuilding",
            path.display()
        );
    }
    let started = Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let mut conn = db::open(path)?;
    db::migrate(&mut conn, &cfg.schema)?;
    let opts = DemoOptions {
        scale,
        seed: SEED,
        until,
    };
    let mut writer = BulkWriter::new(&mut conn, &cfg.schema)?;
    let counts = demo::generate(&opts, &cfg.settings.calendar, &mut writer)?;
    writer.set_meta("demo", &format!("scale={scale} seed={SEED}"))?;
    writer.set_meta("bench_eval", &stamp)?;
    writer.commit()?;
    // Closing the last connection checkpoints the WAL into the database file and removes it.
    drop(conn);
    Ok(Built {
        time: Some(started.elapsed()),
        counts: counts
            .into_iter()
            .map(|(e, n)| (e.to_string(), n))
            .collect(),
    })
}

/// The per-person assessment against the team one (SPEC 14): `sales_reps`
/// for every person and `sales` for every team over the same periods, each
/// in a new evaluation over the loaded columns; best of three.
fn people(
    cfg: &Arc<ConfigSnapshot>,
    store: &Arc<dyn RecordStore>,
    as_of: Millis,
    periods: &[PeriodId],
) -> Res<()> {
    let time = |card: &str| -> Res<(Duration, usize)> {
        let card = cfg.scorecard(card).ok_or("no such scorecard")?;
        let mut best = Duration::MAX;
        let mut subjects = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let eval = Evaluation::new(
                cfg.clone(),
                Records::new(store.clone()),
                as_of,
                periods,
                false,
            )?;
            let members = members(&eval, card);
            for p in periods {
                report::scorecard(&eval, card, *p, &members);
            }
            best = best.min(started.elapsed());
            subjects = members.len();
        }
        Ok((best, subjects))
    };
    let (teams, n_teams) = time("sales")?;
    let (reps, n_people) = time("sales_reps")?;
    println!(
        "people: sales_reps for {n_people} people {} vs sales for {n_teams} teams {} over {} periods: {:.2}x",
        secs(reps),
        secs(teams),
        periods.len(),
        reps.as_secs_f64() / teams.as_secs_f64()
    );
    Ok(())
}

/// One evaluation of every scorecard × period × team, as `kpi eval --period A..B` does.
/// Returns the evaluation and the number of KPI lines of the reports.
fn engine(
    cfg: &Arc<ConfigSnapshot>,
    store: &Arc<dyn RecordStore>,
    as_of: Millis,
    periods: &[PeriodId],
) -> Res<(Rc<Evaluation>, usize)> {
    // A memo of its own: every run computes its shapes from the loaded columns.
    let records = Records::new(store.clone());
    let eval = Evaluation::new(cfg.clone(), records, as_of, periods, false)?;
    // As `Snapshot::evaluate` does: the shapes answered ahead, on every core.
    let cards: Vec<&Scorecard> = (cfg.scorecards.iter())
        .filter(|c| c.subjects == Subjects::Teams)
        .collect();
    eval.prefetch_scorecards(&cards, periods);
    let mut lines = 0;
    for p in periods {
        // Team scorecards: what the SQL baseline computes too (people are timed apart).
        for card in cfg
            .scorecards
            .iter()
            .filter(|c| c.subjects == Subjects::Teams)
        {
            let members = members(&eval, card);
            let r = report::scorecard(&eval, card, *p, &members);
            lines += r.teams.iter().map(|t| t.kpis.len()).sum::<usize>();
            std::hint::black_box(&r);
        }
    }
    Ok((eval, lines))
}

/// (KPI, team, period) → the engine's value (Err: the engine's error).
type EngineValues = BTreeMap<(String, String, PeriodId), Result<Option<f64>, String>>;

/// The engine's value of every KPI any scorecard uses, for every team and period (not timed:
/// values the scorecards did not need for a period are computed here).
fn engine_values(
    cfg: &ConfigSnapshot,
    eval: &Rc<Evaluation>,
    periods: &[PeriodId],
) -> Res<EngineValues> {
    let mut kpis: Vec<&str> = cfg.scorecards.iter().flat_map(|c| c.all_kpis()).collect();
    kpis.sort_unstable();
    kpis.dedup();
    let mut out = BTreeMap::new();
    for kpi in kpis {
        let idx = cfg.kpi_index(kpi).ok_or_else(|| cfg.unknown_kpi(kpi))?;
        for team in eval.teams.tree_order() {
            for p in periods {
                let v = eval.value(idx, team, *p);
                let v = match v.error {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v.value),
                };
                out.insert(
                    (kpi.to_string(), eval.teams.ids[team as usize].clone(), *p),
                    v,
                );
            }
        }
    }
    Ok(out)
}

/// Compares every engine value with the baseline's; returns the count and the mismatches.
struct Comparison {
    values: usize,
    no_data: usize,
    /// The largest relative difference among values within tolerance.
    largest_difference: f64,
    mismatches: Vec<String>,
}

fn compare(engine: &EngineValues, sql: &sql::Values) -> Comparison {
    let mut c = Comparison {
        values: engine.len(),
        no_data: 0,
        largest_difference: 0.0,
        mismatches: Vec::new(),
    };
    for ((kpi, team, period), e) in engine {
        let s = sql.get(kpi, team, *period);
        let same = match (e, &s) {
            (Ok(None), Ok(None)) => {
                c.no_data += 1;
                true
            }
            (Ok(Some(a)), Ok(Some(b))) => {
                let rel = if a == b {
                    0.0
                } else {
                    (a - b).abs() / a.abs().max(b.abs())
                };
                if rel <= TOLERANCE {
                    c.largest_difference = c.largest_difference.max(rel);
                }
                rel <= TOLERANCE
            }
            _ => false,
        };
        if !same {
            let show = |v: &Result<Option<f64>, String>| match v {
                Ok(Some(x)) => format!("{x}"),
                Ok(None) => "no data".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let rel = match (e, &s) {
                (Ok(Some(a)), Ok(Some(b))) => {
                    format!(
                        " (relative difference {:.3e})",
                        (a - b).abs() / a.abs().max(b.abs())
                    )
                }
                _ => String::new(),
            };
            c.mismatches.push(format!(
                "{kpi} {team} {period}: engine {}, SQL {}{rel}",
                show(e),
                show(&s)
            ));
        }
    }
    c
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn list(ds: &[Duration]) -> String {
    ds.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ")
}

/// Resets the kernel's peak-RSS mark of this process (best effort).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size in kB (VmHWM of /proc/self/status), 0 when unknown.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
