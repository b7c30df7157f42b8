//! The dry run of `kpi check`: every KPI evaluated once over an empty
//! database, to catch the schema mistakes a literal scan cannot see (a field
//! name held in a variable, a wrong value type in a comparison).

use std::sync::Arc;

use super::Evaluation;
use crate::config::ConfigSnapshot;
use crate::diag::Diagnostic;
use crate::period::Grain;
use crate::store::columns::ColumnStore;
use crate::store::{StoreError, db};

/// Messages of errors that mean the formula is wrong whatever the data.
const STATIC_ERRORS: &[&str] = &[
    "has no field",
    "unknown entity",
    "needs a time field",
    "needs a number field",
    "cannot compare",
    "unknown KPI",
];

pub fn dry_run(config: &Arc<ConfigSnapshot>, as_of: i64) -> Result<Vec<Diagnostic>, StoreError> {
    let mut conn = db::open_in_memory()?;
    db::migrate(&mut conn, &config.schema)?;
    conn.execute("INSERT INTO teams (id, name) VALUES ('check', 'check')", [])?;
    let store = Arc::new(ColumnStore::new(conn, config.schema.clone()));
    let period = config.settings.calendar.containing(Grain::Quarter, as_of);
    let eval = Evaluation::new(config.clone(), store, as_of, &[period], false)?;
    let mut out = Vec::new();
    for (i, k) in config.kpis.iter().enumerate() {
        let v = eval.value(i, 0, period);
        if let Some(e) = v.error
            && STATIC_ERRORS.iter().any(|s| e.contains(s))
        {
            // "<kpi>: <file>:<line>:<col>: <message>"
            let rest = e.strip_prefix(&format!("{}: ", k.def.id)).unwrap_or(&e);
            out.push(
                parse_located(rest)
                    .unwrap_or_else(|| Diagnostic::new(&k.def.file, k.def.line, k.def.col, rest)),
            );
        }
    }
    out.dedup();
    Ok(out)
}

/// Splits "file:line:col: message" back into its parts.
fn parse_located(s: &str) -> Option<Diagnostic> {
    let mut parts = s.splitn(4, ':');
    let file = parts.next()?;
    let line = parts.next()?.parse().ok()?;
    let col = parts.next()?.parse().ok()?;
    Some(Diagnostic::new(file, line, col, parts.next()?.trim()))
}
