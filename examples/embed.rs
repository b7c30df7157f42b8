//! Embedding the engine in another program: load a root, open its database,
//! and read one KPI for every team.
//!
//!     cargo run --release -- demo
//!     cargo run --release --example embed -- . win_rate 2026-Q3

use std::path::Path;
use std::sync::Arc;

use kpi_engine::eval::Evaluation;
use kpi_engine::store::columns::ColumnStore;
use kpi_engine::store::db;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(args.first().map_or(".", String::as_str));
    let kpi = args.get(1).map_or("revenue", String::as_str);
    let config = kpi_engine::load_checked(root)?;
    let now = chrono::Utc::now().timestamp_millis();
    let period = match args.get(2) {
        Some(p) => p.parse()?,
        None => config
            .settings
            .calendar
            .containing(kpi_engine::period::Grain::Quarter, now),
    };
    let mut conn = db::open(&root.join("crm.db"))?;
    db::migrate(&mut conn, &config.schema)?;
    let store = Arc::new(ColumnStore::new(conn, config.schema.clone()));
    let eval = Evaluation::new(config.clone(), store, now, &[period], false)?;
    let index = config
        .kpi_index(kpi)
        .ok_or_else(|| config.unknown_kpi(kpi))?;
    for team in eval.teams.tree_order() {
        let v = eval.value(index, team, period);
        let shown = match (v.value, v.error) {
            (Some(x), _) => format!("{x:.4}"),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "no data".into(),
        };
        println!(
            "{period} {:<10} {kpi} = {shown}",
            eval.teams.ids[team as usize]
        );
    }
    Ok(())
}
