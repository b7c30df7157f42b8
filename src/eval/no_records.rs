//! The "no records at all" rule of SPEC 15: a KPI whose formula (with the
//! KPIs it names, transitively) reads only entities that hold no records at
//! all has no data, not 0 — the CRM does not track those records yet, so a
//! count of 0 or a score of 0 "at risk" would be a false alarm.
//!
//! Kept apart from the evaluator: `Evaluation::run` asks [`reads_only_empty`]
//! after a formula gave a value (the formula still runs, so the dry run of
//! `kpi check` still sees its errors) and drops the value when it is true.

use std::collections::HashSet;

use crate::config::ConfigSnapshot;
use crate::store::columns::ColumnStore;

/// True when `kpi` reads at least one entity and every entity it reads
/// (directly or through the KPIs it names) has no record in `store`.
pub fn reads_only_empty(config: &ConfigSnapshot, store: &ColumnStore, kpi: usize) -> bool {
    let mut entities = HashSet::new();
    let mut seen = HashSet::new();
    collect(config, kpi, &mut entities, &mut seen);
    !entities.is_empty()
        && entities.iter().all(|e| {
            store
                .table(e, &[])
                .map(|t| t.is_empty())
                // An entity that cannot be read is not known to be empty.
                .unwrap_or(false)
        })
}

fn collect<'c>(
    config: &'c ConfigSnapshot,
    kpi: usize,
    entities: &mut HashSet<&'c str>,
    seen: &mut HashSet<usize>,
) {
    if !seen.insert(kpi) {
        return;
    }
    let k = &config.kpis[kpi];
    entities.extend(k.reads.iter().map(String::as_str));
    for dep in &k.depends_on {
        if let Some(i) = config.kpi_index(dep) {
            collect(config, i, entities, seen);
        }
    }
}
