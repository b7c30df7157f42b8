//! `kpi`: the command line. Parses arguments, calls the library, prints, and
//! exits 0 (success), 1 (a user error, printed to stderr) or 2 (bad usage).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use kpi_engine::config::{self, ConfigSnapshot};
use kpi_engine::demo::{self, DemoOptions};
use kpi_engine::diag::hint;
use kpi_engine::eval::{Evaluation, report, tests_runner};
use kpi_engine::period::{Grain, PeriodId, parse_period_range};
use kpi_engine::render::{self, Style};
use kpi_engine::server::{self, ServeOptions};
use kpi_engine::store::columns::ColumnStore;
use kpi_engine::store::import::{Format, Input, import};
use kpi_engine::store::{bulk, db};

/// Prints a line to stdout. A closed pipe (`kpi eval | head`) is not an error,
/// so write failures are ignored rather than panicking like `println!`.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Like [`outln!`], without the newline.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "kpi",
    version,
    about = "A rules-driven KPI engine for CRM data"
)]
struct Cli {
    /// Deployment root holding kpis/ and scripts/.
    #[arg(long, global = true, default_value = ".")]
    root: PathBuf,
    /// SQLite database (default: ROOT/crm.db, or $KPI_DB).
    #[arg(long, global = true, env = "KPI_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate kpis/ and scripts/ (TOML, schema, Rhai, names, references, cycles, weights).
    Check,
    /// Import records from CSV or NDJSON (upsert by id, all or nothing).
    Import {
        entity: String,
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Write a deterministic demo CRM into the database.
    Demo {
        /// About this many deals per leaf team per quarter.
        #[arg(long, default_value_t = demo::DEFAULT_SCALE)]
        scale: u32,
        #[arg(long, default_value_t = demo::DEFAULT_SEED)]
        seed: u64,
        /// Last day of data (YYYY-MM-DD, inclusive); default today. Fix it for reproducible data.
        #[arg(long)]
        until: Option<String>,
        /// Replace the records of a database that was not made by `kpi demo`.
        #[arg(long)]
        force: bool,
    },
    /// Evaluate scorecards or KPIs.
    Eval(EvalArgs),
    /// Evaluate alert conditions, print the alerts, and with --send deliver pending notifications.
    Alerts(kpi_engine::alerts::cli::AlertsArgs),
    /// Run the formula tests in kpis/tests/*.toml.
    Test,
    /// Run the admin server: HTTP API, dashboard and hot reload of kpis/ and scripts/.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Fill an empty database with the demo CRM first.
        #[arg(long)]
        demo: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Ndjson,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Csv,
}

/// A failure to report to the user (exit 1).
struct UserError(String);

impl<E: std::fmt::Display> From<E> for UserError {
    fn from(e: E) -> Self {
        UserError(e.to_string())
    }
}

type Res<T> = Result<T, UserError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it applies and rejects; other commands only errors.
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(UserError(message)) => {
            eprintln!("{}", message.trim_end());
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Res<ExitCode> {
    let db_path = cli.db.clone().unwrap_or_else(|| cli.root.join("crm.db"));
    match cli.command {
        Command::Check => check(&cli.root, &db_path),
        Command::Import {
            entity,
            file,
            format,
        } => import_file(&cli.root, &db_path, &entity, &file, format),
        Command::Demo {
            scale,
            seed,
            until,
            force,
        } => run_demo(&cli.root, &db_path, scale, seed, until, force),
        Command::Eval(args) => eval(&cli.root, &db_path, &args),
        Command::Alerts(args) => run_alerts(&cli.root, &db_path, &args),
        Command::Test => run_tests(&cli.root),
        Command::Serve { addr, demo } => serve(ServeOptions {
            root: cli.root.clone(),
            db: db_path,
            addr,
            demo,
        }),
    }
}

fn serve(opts: ServeOptions) -> Res<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(server::serve(opts))?;
    Ok(ExitCode::SUCCESS)
}

fn load(root: &Path) -> Res<Arc<ConfigSnapshot>> {
    kpi_engine::load_checked(root)
        .map_err(|d| UserError(format!("{d}\n{} error(s); nothing was done", d.0.len())))
}

fn check(root: &Path, db_path: &Path) -> Res<ExitCode> {
    let cfg = load(root)?;
    if db_path.exists() {
        let conn = db::open(db_path)?;
        db::plan(&conn, &cfg.schema)
            .map_err(|e| UserError(format!("kpis/schema.toml: error: {e}")))?;
    }
    outln!(
        "ok: {} KPIs, {} scorecards, {} entities, {} scripts",
        cfg.kpis.len(),
        cfg.scorecards.len(),
        cfg.schema.entities.len(),
        cfg.files
            .keys()
            .filter(|f| f.starts_with("scripts/"))
            .count()
    );
    Ok(ExitCode::SUCCESS)
}

/// Opens the database and applies schema additions.
fn open_db(cfg: &ConfigSnapshot, db_path: &Path) -> Res<rusqlite::Connection> {
    let mut conn = db::open(db_path)?;
    db::migrate(&mut conn, &cfg.schema)?;
    Ok(conn)
}

fn import_file(
    root: &Path,
    db_path: &Path,
    entity: &str,
    file: &Path,
    format: Option<FormatArg>,
) -> Res<ExitCode> {
    let cfg = load(root)?;
    let label = file.display().to_string();
    let format = match format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Ndjson) => Format::Ndjson,
        None => Format::from_path(&label)
            .ok_or_else(|| UserError(format!("{label}: cannot tell the format from the extension; use --format csv or --format ndjson")))?,
    };
    let reader = std::fs::File::open(file).map_err(|e| UserError(format!("{label}: {e}")))?;
    let reader = Box::new(std::io::BufReader::with_capacity(1 << 20, reader));
    let input = match format {
        Format::Csv => Input::Csv(reader),
        Format::Ndjson => Input::Ndjson(reader),
    };
    let mut conn = open_db(&cfg, db_path)?;
    let report = import(
        &mut conn,
        &cfg.schema,
        &cfg.settings.calendar,
        entity,
        &label,
        input,
    )
    .map_err(|e| UserError(format!("{e}\nnothing was imported")))?;
    outln!(
        "imported {} {} records from {label}",
        report.written,
        report.entity
    );
    Ok(ExitCode::SUCCESS)
}

fn run_demo(
    root: &Path,
    db_path: &Path,
    scale: u32,
    seed: u64,
    until: Option<String>,
    force: bool,
) -> Res<ExitCode> {
    let cfg = load(root)?;
    let cal = &cfg.settings.calendar;
    let until = match until {
        Some(d) => {
            let date = chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|_| UserError(format!("--until: expected YYYY-MM-DD, got {d:?}")))?;
            cal.local_midnight(date.succ_opt().unwrap_or(date))
        }
        None => chrono::Utc::now().timestamp_millis(),
    };
    if scale == 0 {
        return Err(UserError("--scale must be at least 1".into()));
    }
    let mut conn = open_db(&cfg, db_path)?;
    let made_by_demo = bulk::meta(&conn, "demo")?.is_some();
    if !force && !made_by_demo && bulk::has_records(&conn, &cfg.schema)? {
        return Err(UserError(format!(
            "{} holds records that `kpi demo` did not write; refusing to replace them (use --db for another file, or --force)",
            db_path.display()
        )));
    }
    let counts = bulk::write_demo(
        &mut conn,
        &cfg.schema,
        cal,
        &DemoOptions { scale, seed, until },
    )?;
    let summary: Vec<String> = counts.iter().map(|(e, n)| format!("{n} {e}")).collect();
    outln!(
        "wrote a demo CRM to {}: {}",
        db_path.display(),
        summary.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct EvalArgs {
    #[arg(long)]
    scorecard: Option<String>,
    /// Comma-separated KPI ids (no scores without a scorecard).
    #[arg(long = "kpi", value_delimiter = ',')]
    kpis: Vec<String>,
    /// A period id (2026-Q3, 2026-07, 2026) or a range (2025-Q1..2026-Q4).
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    team: Option<String>,
    /// Evaluate as of this time (RFC 3339 or YYYY-MM-DD[ HH:MM:SS]); default now.
    #[arg(long = "as-of")]
    as_of: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Show each value's queries and their results.
    #[arg(long)]
    explain: bool,
    /// Display language for names (e.g. zh).
    #[arg(long)]
    lang: Option<String>,
}

fn eval(root: &Path, db_path: &Path, args: &EvalArgs) -> Res<ExitCode> {
    let cfg = load(root)?;
    if !db_path.exists() {
        return Err(UserError(format!(
            "no database at {}: run `kpi demo` or `kpi import` first (or pass --db)",
            db_path.display()
        )));
    }
    let cal = cfg.settings.calendar;
    let as_of = match &args.as_of {
        Some(t) => cal
            .parse_time(t)
            .map_err(|e| UserError(format!("--as-of: {e}")))?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let periods = match &args.period {
        Some(p) => parse_period_range(p).map_err(|e| UserError(format!("--period: {e}")))?,
        None => vec![cal.containing(Grain::Quarter, as_of)],
    };
    let conn = open_db(&cfg, db_path)?;
    let store = Arc::new(ColumnStore::new(conn, cfg.schema.clone()).prefetch(&cfg.fields_used));
    let ev = Evaluation::new(cfg.clone(), store, as_of, &periods, args.explain)?;
    let reports = build_reports(&cfg, &ev, args, &periods)?;
    print_reports(&cfg, &reports, args);
    Ok(ExitCode::SUCCESS)
}

fn build_reports(
    cfg: &ConfigSnapshot,
    ev: &Rc<Evaluation>,
    args: &EvalArgs,
    periods: &[PeriodId],
) -> Res<Vec<report::Report>> {
    let teams = select_teams(ev, args.team.as_deref())?;
    if !args.kpis.is_empty() {
        if args.scorecard.is_some() {
            return Err(UserError("use --scorecard or --kpi, not both".into()));
        }
        let ids = args
            .kpis
            .iter()
            .map(|k| {
                cfg.kpi_index(k)
                    .ok_or_else(|| UserError(format!("--kpi: {}", cfg.unknown_kpi(k))))
            })
            .collect::<Res<Vec<_>>>()?;
        return Ok(periods
            .iter()
            .map(|p| report::kpis(ev, &ids, *p, &teams))
            .collect());
    }
    let cards: Vec<&config::Scorecard> = match &args.scorecard {
        Some(id) => vec![cfg.scorecard(id).ok_or_else(|| {
            UserError(format!(
                "--scorecard: unknown scorecard '{id}'{}",
                hint(id, cfg.scorecards.iter().map(|s| s.id.as_str()))
            ))
        })?],
        None => cfg.scorecards.iter().collect(),
    };
    let mut out = Vec::new();
    for p in periods {
        for card in &cards {
            let members = scorecard_teams(ev, card, &teams);
            out.push(report::scorecard(ev, card, *p, &members));
        }
    }
    Ok(out)
}

/// All teams in tree order, or the one asked for.
fn select_teams(ev: &Evaluation, team: Option<&str>) -> Res<Vec<u32>> {
    let Some(t) = team else {
        return Ok(ev.teams.tree_order());
    };
    ev.teams.index(t).map(|i| vec![i]).ok_or_else(|| {
        let ids = || ev.teams.ids.iter().map(String::as_str);
        let known = match hint(t, ids()) {
            h if h.is_empty() => format!(" (teams: {})", ids().collect::<Vec<_>>().join(", ")),
            h => h,
        };
        UserError(format!("--team: unknown team '{t}'{known}"))
    })
}

/// The scorecard's own team list (if any), within the selected teams.
fn scorecard_teams(ev: &Evaluation, card: &config::Scorecard, selected: &[u32]) -> Vec<u32> {
    match &card.teams {
        None => selected.to_vec(),
        Some(list) => {
            for t in list.iter().filter(|t| ev.teams.index(t).is_none()) {
                eprintln!("warning: scorecard {} lists unknown team '{t}'", card.id);
            }
            selected
                .iter()
                .copied()
                .filter(|i| list.contains(&ev.teams.ids[*i as usize]))
                .collect()
        }
    }
}

fn print_reports(cfg: &ConfigSnapshot, reports: &[report::Report], args: &EvalArgs) {
    match args.format {
        OutputFormat::Json => {
            let items: Vec<serde_json::Value> = reports
                .iter()
                .map(|r| json_with_explain(r, args.explain))
                .collect();
            let out = if items.len() == 1 {
                items[0].clone()
            } else {
                serde_json::Value::Array(items)
            };
            outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            print_errors(reports);
        }
        OutputFormat::Csv => {
            out!("{}", render::report_csv(reports));
            print_errors(reports);
        }
        OutputFormat::Table => {
            let style = Style {
                color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            for r in reports {
                out!(
                    "{}",
                    render::report_table(cfg, r, args.lang.as_deref(), args.explain, style)
                );
            }
        }
    }
}

/// The SPEC 11 shape, plus each KPI's explanation when asked for.
fn json_with_explain(r: &report::Report, explain: bool) -> serde_json::Value {
    let mut v = r.to_json();
    if explain && let Some(teams) = v["teams"].as_array_mut() {
        for (t, line) in teams.iter_mut().zip(&r.teams) {
            for (k, kl) in t["kpis"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .zip(&line.kpis)
            {
                k["explanation"] = serde_json::json!(kl.explanation);
                if let Some(e) = &kl.error {
                    k["error"] = serde_json::json!(e);
                }
            }
        }
    }
    v
}

/// Value errors go to stderr when stdout carries JSON or CSV.
fn print_errors(reports: &[report::Report]) {
    let mut seen = std::collections::BTreeSet::new();
    for r in reports {
        for t in &r.teams {
            for k in &t.kpis {
                if let Some(e) = &k.error
                    && seen.insert(e.clone())
                {
                    eprintln!("warning: {} {} {}: {e}", r.period, t.team, k.kpi);
                }
            }
        }
    }
}

fn run_tests(root: &Path) -> Res<ExitCode> {
    let cfg = load(root)?;
    let cases = tests_runner::read_cases(root)
        .map_err(|d| UserError(kpi_engine::Diagnostics(d).to_string()))?;
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        for check in tests_runner::run_case(&cfg, case) {
            if check.passed {
                passed += 1;
                continue;
            }
            failed += 1;
            let expected = match &check.expected {
                tests_runner::Expect::NoData => "no data".to_string(),
                tests_runner::Expect::Value { value, tolerance } => {
                    format!("{value} (± {tolerance})")
                }
            };
            let got = match &check.got {
                Ok(Some(v)) => v.to_string(),
                Ok(None) => "no data".to_string(),
                Err(e) => format!("error: {e}"),
            };
            outln!(
                "FAIL {}:{}: case '{}': {}: expected {expected}, got {got}",
                check.file,
                check.line,
                check.case,
                check.kpi
            );
            for line in &check.explanation {
                outln!("    {line}");
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `kpi alerts`: evaluates, prints, and with --send delivers (see `alerts::cli`).
fn run_alerts(
    root: &Path,
    db_path: &Path,
    args: &kpi_engine::alerts::cli::AlertsArgs,
) -> Res<ExitCode> {
    let cfg = load(root)?;
    if !db_path.exists() {
        return Err(UserError(format!(
            "no database at {}: run `kpi demo` or `kpi import` first (or pass --db)",
            db_path.display()
        )));
    }
    let store = Arc::new(ColumnStore::new(
        open_db(&cfg, db_path)?,
        cfg.schema.clone(),
    ));
    let mut conn = db::open(db_path)?;
    let out = kpi_engine::alerts::cli::run(&cfg, &mut conn, store, args)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    out!("{}", out.text);
    Ok(ExitCode::SUCCESS)
}
