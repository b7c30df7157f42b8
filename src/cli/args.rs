//! The command line as types: every command, option, help text and example
//! of `kpi`. Parsing only; the work is in `commands`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use kpi_engine::demo;

#[derive(Parser)]
#[command(
    name = "kpi",
    version,
    about = "A rules-driven KPI engine for CRM data",
    long_about = "A rules-driven KPI engine for CRM data.\n\n\
        KPI formulas, targets and scorecard weights live in ROOT/kpis/ (TOML) and \
        ROOT/scripts/ (Rhai); records live in a SQLite database (ROOT/crm.db by default).",
    after_help = "Examples:\n  \
        kpi demo && kpi eval                       # demo data, every scorecard, this quarter\n  \
        kpi eval --scorecard sales --period 2026-Q3 --lang zh\n  \
        kpi import deals deals.csv\n  \
        kpi serve --demo                           # dashboard on http://127.0.0.1:8080\n\n\
        Exit status: 0 success, 1 a user error (printed to stderr), 2 bad usage."
)]
pub struct Cli {
    /// Deployment root holding kpis/ and scripts/.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,
    /// SQLite database file [default: ROOT/crm.db].
    #[arg(long, global = true, env = "KPI_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The database path: `--db`, `$KPI_DB`, or ROOT/crm.db.
    pub fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(|| self.root.join("crm.db"))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate kpis/ and scripts/ (TOML, schema, Rhai, names, references, cycles, weights).
    #[command(
        after_help = "Prints each problem as FILE:LINE:COL: error: MESSAGE and exits 1 \
        when there is any; a dry run of every formula finds the mistakes a literal scan cannot.\n\n\
        Example:\n  kpi check --root /srv/kpi"
    )]
    Check,
    /// Import records from CSV or NDJSON (upsert by id, all or nothing).
    #[command(
        after_help = "Import `teams` first: every record must name a known team. \
        A bad row writes nothing and is reported as FILE:LINE: field 'NAME': …\n\n\
        Examples:\n  kpi import teams teams.csv\n  kpi import deals deals.csv\n  \
        kpi import tickets tickets.ndjson --format ndjson\n  \
        kpi import deals export.csv --delimiter ';'\n  \
        kpi import deals Opportunities.csv --mapping salesforce_opportunity --dry-run"
    )]
    Import(ImportArgs),
    /// Write a clean deployment into DIR: the standard library, targets without demo teams, an
    /// empty database.
    #[command(
        after_help = "Example:\n  kpi init /srv/kpi && kpi --root /srv/kpi import teams teams.csv"
    )]
    Init {
        /// The folder to write (created when missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Write a deterministic demo CRM into the database.
    #[command(
        after_help = "Examples:\n  kpi demo\n  kpi demo --scale 200 --until 2026-09-30\n  \
        kpi demo --db /tmp/demo.db"
    )]
    Demo(DemoArgs),
    /// Evaluate scorecards or KPIs.
    #[command(after_help = "Examples:\n  \
        kpi eval                                             # every scorecard, this quarter\n  \
        kpi eval --scorecard sales --period 2026-Q3 --lang zh\n  \
        kpi eval --scorecard service --period 2025-Q1..2026-Q4 --format json\n  \
        kpi eval --kpi revenue,win_rate --team east --explain\n  \
        kpi eval --scorecard sales_reps --team east            # the people of east, ranked\n  \
        kpi eval --kpi revenue,win_rate --owners --period 2026-Q3\n  \
        kpi eval --as-of 2026-09-30T23:00:00+08:00")]
    Eval(EvalArgs),
    /// Evaluate alert conditions, print the alerts, and with --send deliver pending notifications.
    #[command(after_help = "Examples:\n  kpi alerts\n  kpi alerts --send\n  \
        kpi alerts --as-of 2026-10-01")]
    Alerts(kpi_engine::alerts::cli::AlertsArgs),
    /// Run the formula tests in kpis/tests/*.toml.
    #[command(
        after_help = "Each case runs against a fresh in-memory database holding only \
        its records. Prints each failure with the value's explanation and `N passed, N failed`.\n\n\
        Example:\n  kpi test --root ."
    )]
    Test,
    /// Close a period: freeze every scorecard's assessment of it (SPEC 16).
    #[command(
        after_help = "A frozen period is served as it was frozen: later edits of weights, \
        targets or formulas and later imports do not change it (`kpi eval --live` computes it \
        afresh, `kpi restatement` lists what differs). `kpi serve` closes each period of \
        settings.toml's freeze_grains on its own once its end + close_after has passed.\n\n\
        Examples:\n  kpi close 2026-Q3\n  kpi close 2026-Q4 --force          # before its end"
    )]
    Close(CloseArgs),
    /// Reopen a frozen period: drop its freeze (recorded in the config history).
    #[command(
        after_help = "The period is then evaluated live again and is not closed \
        automatically again; `kpi close` freezes it anew.\n\nExample:\n  kpi reopen 2026-Q3"
    )]
    Reopen {
        /// The frozen period (e.g. 2026-Q3).
        period: String,
    },
    /// List every value of a frozen period whose live result differs from the frozen one.
    #[command(
        after_help = "Late or backdated records and later edits show here: each \
        scorecard, subject and KPI whose value, target, status or score differs, frozen beside \
        live.\n\nExamples:\n  kpi restatement 2026-Q3\n  kpi restatement 2026-Q3 --format json"
    )]
    Restatement(RestatementArgs),
    /// Run the admin server: HTTP API, dashboard and hot reload of kpis/ and scripts/.
    #[command(after_help = "Environment:\n  \
        KPI_ADMIN_TOKEN   bearer token for writes (PUT, POST), the writer `admin` in the config history\n  \
        KPI_ADMIN_TOKENS  named writers, NAME:TOKEN,NAME:TOKEN (e.g. alice:TOKEN1,bob:TOKEN2): each\n                    \
        token's name is the actor of what it changes in the config history;\n                    \
        with neither variable set, every write is refused (403)\n  \
        KPI_READ_TOKEN    when set, reads need it too (Authorization: Bearer, or /?token= once)\n  \
        RUST_LOG          log filter (default info), e.g. RUST_LOG=debug\n\n\
        Examples:\n  kpi serve --demo\n  KPI_ADMIN_TOKEN=change-me kpi serve --addr 0.0.0.0:8080\n  \
        KPI_ADMIN_TOKENS=\"alice:$(openssl rand -hex 16),bob:$(openssl rand -hex 16)\" kpi serve")]
    Serve(ServeArgs),
    /// List the config history kept by `kpi serve`, or show one version: who applied it and its diff.
    #[command(
        after_help = "Each version has its origin (file, api, rollback) and its actor: the \
        name of the admin token that wrote it, or `file` for an edit on disk.\n\n\
        Examples:\n  kpi history\n  kpi history 12           # version 12 and its diff against 11"
    )]
    History(HistoryArgs),
    /// Print the unified diff of the configuration's files between two versions of the history.
    #[command(after_help = "Examples:\n  kpi diff 3 7\n  kpi diff 7 3 | less")]
    Diff {
        /// The older side (any version: the diff may go backwards).
        from: u64,
        /// The newer side.
        to: u64,
    },
    /// Write the files of a version of the config history back, checked like any edit, as a new
    /// version with origin `rollback`.
    #[command(
        after_help = "The actor recorded is cli:$USER. Files of the configuration that \
        the version did not have are removed. A running `kpi serve` applies the files as that same \
        version. The configuration on disk must check for the command to open the deployment; \
        when it does not, use POST /api/config/rollback/VERSION of the running server.\n\n\
        Example:\n  kpi history && kpi rollback 7"
    )]
    Rollback {
        /// The version whose files to write back.
        version: u64,
    },
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// One version to show with its diff [default: list the versions].
    pub version: Option<u64>,
    /// List at most this many of the newest versions.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The entity to import into (see the list below).
    pub entity: String,
    /// The file to read (.csv, .ndjson or .jsonl).
    pub file: PathBuf,
    /// The file's format [default: from the extension].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The CSV delimiter: one character, or "\t" for a tab [default: ",", tab for .tsv].
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Read FILE through kpis/mappings/NAME.toml (a CRM's own export).
    #[arg(long, value_name = "NAME")]
    pub mapping: Option<String>,
    /// With --mapping: print the first mapped records and every error; write nothing.
    #[arg(long = "dry-run", requires = "mapping")]
    pub dry_run: bool,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// About this many deals per leaf team per quarter.
    #[arg(long, default_value_t = demo::DEFAULT_SCALE)]
    pub scale: u32,
    /// The random seed: the same seed, scale and --until write the same records.
    #[arg(long, default_value_t = demo::DEFAULT_SEED)]
    pub seed: u64,
    /// Last day of data (YYYY-MM-DD, inclusive) [default: today]. Fix it for reproducible data.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Replace the records of a database that was not made by `kpi demo`.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The scorecard to evaluate [default: every scorecard].
    #[arg(long)]
    pub scorecard: Option<String>,
    /// Comma-separated KPI ids to evaluate instead of a scorecard (no scores or ranks).
    #[arg(long = "kpi", value_delimiter = ',', value_name = "KPI,…")]
    pub kpis: Vec<String>,
    /// A period id (2026-Q3, 2026-07, 2026) or a range (2025-Q1..2026-Q4)
    /// [default: the quarter containing --as-of].
    #[arg(long)]
    pub period: Option<String>,
    /// Show only this team (its rank stays the one among all teams); with an
    /// owner scorecard, the people of its subtree.
    #[arg(long)]
    pub team: Option<String>,
    /// Show only this person (an owner scorecard, or --kpi for one person).
    #[arg(long)]
    pub owner: Option<String>,
    /// With --kpi: evaluate the KPIs for every person instead of every team.
    #[arg(long)]
    pub owners: bool,
    /// Evaluate as of this time (RFC 3339 or YYYY-MM-DD[ HH:MM:SS] in the settings'
    /// time zone) [default: now].
    #[arg(long = "as-of", value_name = "TIME")]
    pub as_of: Option<String>,
    /// Output: an aligned table for people, the JSON of the API, or CSV.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Show each value's queries and their results (a frozen period is then
    /// evaluated live: explanations are not frozen).
    #[arg(long)]
    pub explain: bool,
    /// Evaluate a frozen period afresh instead of showing its frozen result.
    #[arg(long)]
    pub live: bool,
    /// Display language of names, headers and statuses.
    #[arg(long, value_enum)]
    pub lang: Option<Lang>,
}

#[derive(clap::Args)]
pub struct CloseArgs {
    /// The period to close (e.g. 2026-Q3).
    pub period: String,
    /// Close a period that is still running (its results so far are frozen).
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct RestatementArgs {
    /// The frozen period (e.g. 2026-Q3).
    pub period: String,
    /// Output: an aligned table for people, or the JSON of the API.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Fill an empty database with the demo CRM first.
    #[arg(long)]
    pub demo: bool,
    /// Close a connection that has not sent a whole request head within this
    /// long (slow clients; idle keep-alive connections too), e.g. "10s".
    #[arg(long, env = "KPI_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: std::time::Duration,
    /// At most this many open connections; more are answered 503 and closed.
    #[arg(long, env = "KPI_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// How the log on stderr is written: text, or one JSON object a line
    /// ({"time", "level", "message", "fields"}) for log collectors.
    #[arg(long, value_enum, env = "KPI_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// "10s", "2m", or milliseconds as "500ms".
fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| format!("expected a duration such as 10s or 500ms, got {s}"));
    }
    kpi_engine::config::alerts::parse_duration(s)
        .ok_or_else(|| format!("expected a duration such as 10s or 500ms, got {s}"))
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum Lang {
    /// English.
    En,
    /// Chinese (中文).
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }
}
