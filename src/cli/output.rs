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

/// A restatement for people: one row per changed value, frozen beside live.
pub fn restatement_table(r: &kpi_engine::engine::Restatement) -> String {
    let mut out = format!(
        "restatement of {} · frozen at {} (config version {}) · live as of {}\n\n",
        r.period, r.frozen_at, r.config_version, r.as_of
    );
    if r.changes.is_empty() {
        out.push_str("no changes: every live value equals the frozen one\n");
        return out;
    }
    let num = |x: Option<f64>| {
        x.map_or("–".to_string(), |v| {
            let s = format!("{v:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        })
    };
    let side = |s: &Option<kpi_engine::engine::freeze::Side>| match s {
        None => vec!["(none)".to_string(), String::new(), String::new()],
        Some(s) => vec![num(s.value), s.status.to_string(), num(s.score)],
    };
    let mut rows = vec![
        [
            "scorecard",
            "subject",
            "KPI",
            "frozen",
            "status",
            "score",
            "live",
            "status",
            "score",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &r.changes {
        let mut row = vec![c.scorecard.clone(), c.subject.clone(), c.kpi.clone()];
        row.extend(side(&c.frozen));
        row.extend(side(&c.live));
        rows.push(row);
    }
    let right = [false, false, false, true, false, true, true, false, true];
    out.push_str(&render::columns(&rows, &right, ""));
    out.push_str(&format!("\n{} value(s) differ\n", r.changes.len()));
    out
}
