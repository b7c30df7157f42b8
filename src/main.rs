//! `kpi`: the command line. Parses arguments (`cli::args`), runs the command
//! against the library (`cli::commands`), prints (`cli::output`), and exits 0
//! (success), 1 (a user error, printed to stderr) or 2 (bad usage).

mod cli;

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use cli::args::{Cli, Command};
use cli::commands::{UserError, run};

/// mimalloc returns freed pages to the system, where glibc's malloc kept the
/// old copies of patched columns (see BENCHMARKS.md, issue 17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = parse();
    // The server logs what it applies and rejects; other commands only errors.
    let (default_level, json) = match &cli.command {
        Command::Serve(a) => ("info", a.log_format == cli::args::LogFormat::Json),
        _ => ("error", false),
    };
    cli::log::init(default_level, json);
    let result = run(cli);
    // A column snapshot being written is finished, not left as a temporary file.
    kpi_engine::store::columns::wait_for_snapshot_writes();
    match result {
        Ok(code) => code,
        Err(UserError(message)) => {
            eprintln!("{}", message.trim_end());
            ExitCode::from(1)
        }
    }
}

/// Parses the arguments; `kpi import --help` lists the entities of the
/// schema under `--root`.
fn parse() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    let root = root_arg(&args);
    let mut command = Cli::command();
    if let Some(list) = cli::entities::help(Path::new(&root)) {
        command = command.mut_subcommand("import", |c| {
            let help = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            c.after_help(format!("{help}\n\n{list}"))
        });
    }
    let matches = command.get_matches_from(&args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The value of `--root` among raw arguments, before they are parsed.
fn root_arg(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--root" {
            return it.next().cloned().unwrap_or_else(|| ".".into());
        }
        if let Some(v) = a.strip_prefix("--root=") {
            return v.to_string();
        }
    }
    ".".into()
}
