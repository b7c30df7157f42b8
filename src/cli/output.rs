//! What `kpi` prints: reports as tables, JSON or CSV on stdout, warnings and
//! errors on stderr. The only JSON the command line makes is here.

use std::io::IsTerminal;

use kpi_engine::ConfigSnapshot;
use kpi_engine::eval::report::Report;
use kpi_engine::render::{self, Style};

use super::args::{EvalArgs, OutputFormat};

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

pub(crate) use {out, outln};

/// Reports in the format asked for.
pub fn reports(cfg: &ConfigSnapshot, reports: &[Report], args: &EvalArgs) {
    match args.format {
        OutputFormat::Json => {
            // One period: one object; a range: an array of them, in order.
            let text = match reports {
                [one] => serde_json::to_string_pretty(one),
                all => serde_json::to_string_pretty(all),
            };
            outln!("{}", text.unwrap_or_default());
            value_errors(reports);
        }
        OutputFormat::Csv => {
            out!("{}", render::report_csv(reports));
            value_errors(reports);
        }
        OutputFormat::Table => {
            let style = Style {
                color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            let lang = args.lang.map(|l| l.code());
            for r in reports {
                out!(
                    "{}",
                    render::report_table(cfg, r, lang, args.explain, style)
                );
            }
        }
    }
}

/// Value errors go to stderr when stdout carries JSON or CSV.
fn value_errors(reports: &[Report]) {
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
