//! The commands of `kpi`: each opens the [`Engine`] (or only checks the
//! configuration), calls it, and hands the typed result to `output`.

use std::path::Path;
use std::process::ExitCode;

use kpi_engine::demo::DemoOptions;
use kpi_engine::engine::{Engine, EngineError, EngineOptions, EvalRequest};
use kpi_engine::eval::formula_tests;
use kpi_engine::server::{self, ServeOptions};
use kpi_engine::store::import::{Format, Input};

use kpi_engine::alerts::cli::AlertsArgs;

use super::args::{
    Cli, CloseArgs, Command, DemoArgs, EvalArgs, FormatArg, ImportArgs, ListFormat,
    RestatementArgs, ServeArgs,
};
use super::output::{self, out, outln};

/// A failure to report to the user (exit 1).
pub struct UserError(pub String);

impl<E: std::fmt::Display> From<E> for UserError {
    fn from(e: E) -> Self {
        UserError(e.to_string())
    }
}

type Res<T> = Result<T, UserError>;

pub fn run(cli: Cli) -> Res<ExitCode> {
    let db = cli.db_path();
    let root = cli.root.as_path();
    match cli.command {
        Command::Check => check(root, &db),
        Command::Import(args) if args.mapping.is_some() => import_mapped(root, &db, &args),
        Command::Import(args) => import(root, &db, &args),
        Command::Init { dir } => init(&dir),
        Command::Demo(args) => demo(root, &db, &args),
        Command::Eval(args) => eval(root, &db, &args),
        Command::Alerts(args) => alerts(root, &db, &args),
        Command::Close(args) => close(root, &db, &args),
        Command::Reopen { period } => reopen(root, &db, &period),
        Command::Restatement(args) => restatement(root, &db, &args),
        Command::Test => test(root, &db),
        Command::Serve(args) => serve(root, &db, args),
        Command::History(args) => super::history::show(&db, &args),
        Command::Diff { from, to } => super::history::diff(&db, from, to),
        Command::Rollback { version } => super::history::rollback(root, &db, version),
    }
}

/// The database as messages name it (a PostgreSQL URL without its password).
fn shown(db: &Path) -> String {
    match kpi_engine::engine::postgres_url(db) {
        Some(url) => kpi_engine::store::pg::redacted(url),
        None => db.display().to_string(),
    }
}

/// Opens the engine for one command.
fn open(root: &Path, db: &Path) -> Res<Engine> {
    Engine::open(&EngineOptions {
        root: root.to_path_buf(),
        db: db.to_path_buf(),
        serving: false,
    })
    .map_err(|e| config_error(e, "nothing was done"))
}

/// Opens the engine over an existing database.
fn open_existing(root: &Path, db: &Path) -> Res<Engine> {
    if kpi_engine::engine::postgres_url(db).is_none() && !db.exists() {
        return Err(UserError(format!(
            "no database at {}: run `kpi demo` or `kpi import` first (or pass --db)",
            shown(db)
        )));
    }
    open(root, db)
}

/// A configuration that does not check: every error, a count and what did
/// not happen because of them (`outcome`, empty for `kpi check`).
fn config_error(e: EngineError, outcome: &str) -> UserError {
    match e {
        EngineError::Config(d) if outcome.is_empty() => {
            UserError(format!("{d}\n{} error(s)", d.0.len()))
        }
        EngineError::Config(d) => UserError(format!("{d}\n{} error(s); {outcome}", d.0.len())),
        other => UserError(other.to_string()),
    }
}

fn check(root: &Path, db: &Path) -> Res<ExitCode> {
    let summary = Engine::check(root, db).map_err(|e| match e {
        EngineError::Rejected { diagnostics, .. } => UserError(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        e => config_error(e, ""),
    })?;
    let cfg = &summary.config;
    for w in cfg.warnings() {
        eprintln!("{w}");
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

fn import(root: &Path, db: &Path, args: &ImportArgs) -> Res<ExitCode> {
    let label = args.file.display().to_string();
    let delimiter = args.delimiter.as_deref();
    let format = match args.format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Ndjson) => Format::Ndjson,
        None if delimiter.is_some() => Format::Csv,
        None => Format::from_path(&label).ok_or_else(|| {
            UserError(format!(
                "{label}: cannot tell the format from the extension; use --format csv or --format ndjson"
            ))
        })?,
    };
    let delimiter = match delimiter {
        None if label.to_ascii_lowercase().ends_with(".tsv") => b'\t',
        None | Some(",") => b',',
        Some("\\t" | "\t" | "tab") => b'\t',
        Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        Some(d) => {
            return Err(UserError(format!(
                "--delimiter must be one character (or \\t for a tab), got {d:?}"
            )));
        }
    };
    let engine = open(root, db)?;
    let reader = open_input(&args.file)?;
    let input = match format {
        Format::Csv if delimiter == b',' => Input::Csv(reader),
        Format::Csv => Input::Delimited(reader, delimiter),
        Format::Ndjson => Input::Ndjson(reader),
    };
    let (report, _) = engine
        .ingest(&args.entity, &label, input)
        .map_err(|e| UserError(format!("{e}\nnothing was imported")))?;
    outln!("imported {} from {label}", report.summary());
    Ok(ExitCode::SUCCESS)
}

/// A file to import, buffered, with a progress bar on a terminal.
fn open_input(file: &Path) -> Res<Box<dyn std::io::Read>> {
    let label = file.display().to_string();
    let f = std::fs::File::open(file).map_err(|e| UserError(format!("{label}: {e}")))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = Box::new(std::io::BufReader::with_capacity(1 << 20, f));
    Ok(kpi_engine::store::import::progress::on_terminal(
        reader, len,
    ))
}

/// `kpi import ENTITY FILE --mapping NAME [--dry-run]`.
fn import_mapped(root: &Path, db: &Path, args: &ImportArgs) -> Res<ExitCode> {
    if args.format.is_some() || args.delimiter.is_some() {
        return Err(UserError(
            "--format and --delimiter come from the mapping file with --mapping".into(),
        ));
    }
    let engine = open(root, db)?;
    let label = args.file.display().to_string();
    let request = kpi_engine::mapping::Request {
        entity: args.entity.clone(),
        mapping: args.mapping.clone().unwrap_or_default(),
        label: label.clone(),
        input: open_input(&args.file)?,
        dir: args.file.parent().map(Path::to_path_buf),
        dry_run: args.dry_run,
    };
    let (done, _) = engine
        .ingest_mapped(request)
        .map_err(|e| UserError(format!("{e}\nnothing was imported")))?;
    for line in &done.preview {
        outln!("{line}");
    }
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    for r in &done.reports {
        outln!("{verb} {} from {label}", r.summary());
    }
    if done.skipped > 0 {
        outln!("skipped {} of {} rows (skip_if)", done.skipped, done.rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn init(dir: &Path) -> Res<ExitCode> {
    let written = kpi_engine::init::write_deployment(dir)?;
    outln!(
        "wrote a clean deployment in {} ({} files and an empty crm.db); next: kpi --root {} import teams FILE",
        dir.display(),
        written.len() - 1,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn demo(root: &Path, db: &Path, args: &DemoArgs) -> Res<ExitCode> {
    if args.scale == 0 {
        return Err(UserError("--scale must be at least 1".into()));
    }
    let engine = open(root, db)?;
    let cal = engine.snapshot().config.settings.calendar;
    let until = match &args.until {
        Some(d) => {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| UserError(format!("--until: expected YYYY-MM-DD, got {d:?}")))?;
            cal.local_midnight(date.succ_opt().unwrap_or(date))
        }
        None => kpi_engine::engine::now(),
    };
    if !args.force && !engine.made_by_demo()? && engine.has_records()? {
        return Err(UserError(format!(
            "{} holds records that `kpi demo` did not write; refusing to replace them (use --db for another file, or --force)",
            shown(db)
        )));
    }
    let counts = engine.write_demo(&DemoOptions {
        scale: args.scale,
        seed: args.seed,
        until,
    })?;
    let summary: Vec<String> = counts.iter().map(|(e, n)| format!("{n} {e}")).collect();
    outln!("wrote a demo CRM to {}: {}", shown(db), summary.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn eval(root: &Path, db: &Path, args: &EvalArgs) -> Res<ExitCode> {
    let engine = open_existing(root, db)?;
    let snapshot = engine.snapshot();
    let as_of = snapshot
        .instant(args.as_of.as_deref(), kpi_engine::engine::now())
        .map_err(option_error)?;
    let periods = snapshot
        .periods(args.period.as_deref(), as_of)
        .map_err(option_error)?;
    let reports = snapshot
        .evaluate(&EvalRequest {
            scorecards: args.scorecard.iter().cloned().collect(),
            kpis: args.kpis.clone(),
            periods,
            as_of,
            team: args.team.clone(),
            owner: args.owner.clone(),
            owners: args.owners,
            explain: args.explain,
            live: args.live,
        })
        .map_err(option_error)?;
    output::reports(&snapshot.config, &reports, args);
    // The process ends here: freeing every column and dictionary string one
    // by one would only delay the exit (about 7% of a cold evaluation at 1M deals).
    std::mem::forget((reports, snapshot, engine));
    Ok(ExitCode::SUCCESS)
}

/// An engine error about an input, named by the option that gave it.
fn option_error(e: EngineError) -> UserError {
    use kpi_engine::engine::Kind;
    let option = match &e {
        EngineError::BadInput {
            field: "as_of",
            message,
        } => {
            return UserError(format!("--as-of: {message}"));
        }
        EngineError::BadInput {
            field: "period",
            message,
        } => {
            return UserError(format!("--period: {message}"));
        }
        EngineError::BadInput {
            field: "kpi",
            message,
        } => {
            return UserError(format!("--kpi: {message}"));
        }
        EngineError::Unknown { kind, .. } => match kind {
            Kind::Team => "--team",
            Kind::Scorecard => "--scorecard",
            Kind::Kpi => "--kpi",
            Kind::Entity => "ENTITY",
            Kind::Owner => "--owner",
            Kind::FrozenPeriod => "PERIOD",
            Kind::Version => "VERSION",
        },
        _ => return UserError(e.to_string()),
    };
    UserError(format!("{option}: {e}"))
}

/// A period id given on the command line.
fn period_arg(period: &str) -> Res<kpi_engine::period::PeriodId> {
    period
        .trim()
        .parse()
        .map_err(|e| UserError(format!("PERIOD: {e}")))
}

/// `kpi close PERIOD [--force]`.
fn close(root: &Path, db: &Path, args: &CloseArgs) -> Res<ExitCode> {
    let period = period_arg(&args.period)?;
    let engine = open_existing(root, db)?;
    let how = kpi_engine::engine::How::Close;
    let closed = engine
        .close(period, args.force, how, kpi_engine::engine::now())
        .map_err(|e| UserError(format!("{e}\nnothing was frozen")))?;
    outln!(
        "froze {} ({}): {} scorecards, {} values, config version {}, data generation {} ({} rows, about {} KiB, {} ms)",
        closed.period,
        closed.how,
        closed.scorecards,
        closed.values,
        closed.config_version,
        closed.data_generation,
        closed.rows,
        closed.bytes.div_ceil(1024),
        closed.millis
    );
    Ok(ExitCode::SUCCESS)
}

/// `kpi reopen PERIOD`.
fn reopen(root: &Path, db: &Path, period: &str) -> Res<ExitCode> {
    let period = period_arg(period)?;
    let engine = open_existing(root, db)?;
    let actor = kpi_engine::store::config_history::cli_actor();
    let version = engine.reopen(period, &actor).map_err(option_error)?;
    outln!(
        "reopened {period}: its results are live again (config history version {version}, origin reopen)"
    );
    Ok(ExitCode::SUCCESS)
}

/// `kpi restatement PERIOD [--format table|json]`.
fn restatement(root: &Path, db: &Path, args: &RestatementArgs) -> Res<ExitCode> {
    let period = period_arg(&args.period)?;
    let engine = open_existing(root, db)?;
    let r = engine
        .snapshot()
        .restatement(period, kpi_engine::engine::now())
        .map_err(option_error)?;
    match args.format {
        ListFormat::Json => outln!("{}", serde_json::to_string_pretty(&r)?),
        ListFormat::Table => out!("{}", output::restatement_table(&r)),
    }
    Ok(ExitCode::SUCCESS)
}

fn test(root: &Path, db: &Path) -> Res<ExitCode> {
    // The cases' records go into the embedded store, or with --db postgres://… into PostgreSQL.
    let on = match kpi_engine::engine::postgres_url(db) {
        Some(url) => formula_tests::CaseStore::Postgres(url),
        None => formula_tests::CaseStore::Embedded,
    };
    let cfg = kpi_engine::load_checked(root)
        .map_err(|d| UserError(format!("{d}\n{} error(s); no test was run", d.0.len())))?;
    let cases = formula_tests::read_cases(root)
        .map_err(|d| UserError(kpi_engine::Diagnostics(d).to_string()))?;
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        for check in formula_tests::run_case_on(&cfg, case, on) {
            if check.passed {
                passed += 1;
                continue;
            }
            failed += 1;
            let expected = match &check.expected {
                formula_tests::Expect::NoData => "no data".to_string(),
                formula_tests::Expect::Value { value, tolerance } => {
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

/// `kpi alerts`: evaluates (as of T: a dry run unless --record or --send),
/// delivers with --send, prints.
fn alerts(root: &Path, db: &Path, args: &AlertsArgs) -> Res<ExitCode> {
    let engine = open_existing(root, db)?;
    let snapshot = engine.snapshot();
    let conn = engine.engine_conn()?;
    let out =
        kpi_engine::alerts::cli::run(&snapshot.config, &conn, snapshot.records.clone(), args)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    out!("{}", out.text);
    Ok(ExitCode::SUCCESS)
}

fn serve(root: &Path, db: &Path, args: ServeArgs) -> Res<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let opts = ServeOptions {
        root: root.to_path_buf(),
        db: db.to_path_buf(),
        addr: args.addr,
        demo: args.demo,
        limits: server::listen::Limits {
            header_timeout: args.header_timeout,
            max_connections: args.max_connections.max(1),
        },
    };
    runtime.block_on(server::serve(opts)).map_err(|e| match e {
        server::ServeError::Start(e) => config_error(e, "the server was not started"),
        other => UserError(other.to_string()),
    })?;
    Ok(ExitCode::SUCCESS)
}
