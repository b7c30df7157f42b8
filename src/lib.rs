//! kpi-engine: a rules-driven KPI engine for CRM data.
//!
//! The engine knows nothing about CRM. Records are whatever `kpis/schema.toml`
//! says; KPIs are Rhai formulas in `kpis/*.toml` and `scripts/`; targets and
//! weights are TOML. This crate loads that configuration into an immutable
//! snapshot ([`config`]), keeps records in SQLite ([`store`]), runs formulas
//! in a sandbox ([`formula`]) over batched column queries ([`query`]), and
//! scores teams per period ([`eval`]). See ARCHITECTURE.md for the map.

pub mod alerts;
pub mod config;
pub mod demo;
pub mod diag;
pub mod engine;
pub mod eval;
pub mod formula;
pub mod init;
pub mod mapping;
pub mod memo;
pub mod metrics;
pub mod period;
pub mod query;
pub mod render;
pub mod server;
pub mod store;

use std::path::Path;
use std::sync::Arc;

pub use config::ConfigSnapshot;
pub use diag::{Diagnostic, Diagnostics};

/// Loads a root's configuration and checks it completely, exactly as
/// `kpi check` does: every file, every cross-reference, and a dry run of
/// every formula. This is the only way a snapshot is made for use.
pub fn load_checked(root: &Path) -> Result<Arc<ConfigSnapshot>, Diagnostics> {
    let snapshot = Arc::new(config::load(root)?);
    check_snapshot(snapshot).map_err(Diagnostics)
}

/// The dry-run part of the check, for a snapshot built from files.
pub fn check_snapshot(
    snapshot: Arc<ConfigSnapshot>,
) -> Result<Arc<ConfigSnapshot>, Vec<Diagnostic>> {
    let now = chrono::Utc::now().timestamp_millis();
    match eval::check::dry_run(&snapshot, now) {
        Ok(errors) if errors.is_empty() => Ok(snapshot),
        Ok(errors) => Err(errors),
        Err(e) => Err(vec![Diagnostic::file(
            "kpis/schema.toml",
            format!("cannot build the check database: {e}"),
        )]),
    }
}
