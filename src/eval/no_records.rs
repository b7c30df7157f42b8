//! The "no records at all" rule of SPEC 15: a KPI whose formula (with the
//! KPIs it names, transitively) reads only entities that hold no records at
//! all has no data, not 0 — the CRM does not track those records yet, so a
//! count of 0 or a score of 0 "at risk" would be a false alarm.
//!
//! Kept apart from the evaluator: `Evaluation::run` asks [`reads_only_empty`]
//! after a formula gave a value (the formula still runs, so the dry run of
//! `kpi check` still sees its errors) and drops the value when it is true.

use crate::config::ConfigSnapshot;
use crate::store::RecordStore;

/// True when `kpi` reads at least one entity and every entity it reads
/// (directly or through the KPIs it names) has no record in `store`.
pub fn reads_only_empty(config: &ConfigSnapshot, store: &dyn RecordStore, kpi: usize) -> bool {
    let read = config.entities_read(kpi);
    // An entity that cannot be read is not known to be empty.
    !read.is_empty()
        && read
            .iter()
            .all(|e| store.holds_records(e).is_ok_and(|h| !h))
}
