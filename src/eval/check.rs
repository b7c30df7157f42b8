//! The dry run of `kpi check`: every KPI evaluated once over an empty
//! database, to catch the mistakes a literal scan cannot see (a field name
//! held in a variable, a wrong value type in a comparison).

use std::sync::Arc;

use super::{Evaluation, Records, ValueError};
use crate::config::ConfigSnapshot;
use crate::diag::Diagnostic;
use crate::formula::FailKind;
use crate::period::Grain;
use crate::store::StoreError;
use crate::store::columns::ColumnStore;

pub fn dry_run(config: &Arc<ConfigSnapshot>, as_of: i64) -> Result<Vec<Diagnostic>, StoreError> {
    let team = serde_json::json!({"id": "check", "name": "check"});
    let store = ColumnStore::in_memory(
        config.schema.clone(),
        &config.settings.calendar,
        &[("teams", "the check database", vec![team])],
    )?;
    let period = config.settings.calendar.containing(Grain::Quarter, as_of);
    let records = Records::new(Arc::new(store));
    let eval = Evaluation::new(config.clone(), records, as_of, &[period], false)?;
    let mut out = Vec::new();
    for i in 0..config.kpis.len() {
        // Only a mistake in the formula: a runtime failure may depend on the data.
        if let Some(ValueError::Formula { error, .. }) = eval.value(i, 0, period).error
            && error.kind == FailKind::Mistake
        {
            out.push(Diagnostic::new(
                &error.file,
                error.line,
                error.col,
                &error.message,
            ));
        }
    }
    out.dedup();
    Ok(out)
}
