//! Embedding the engine in another program: open a root and its database,
//! and read one KPI for every team.
//!
//!     cargo run --release -- demo
//!     cargo run --release --example embed -- . win_rate 2026-Q3

use std::path::Path;

use kpi_engine::engine::{Engine, EngineOptions, Who};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(args.first().map_or(".", String::as_str));
    let kpi = args.get(1).map_or("revenue", String::as_str);
    let engine = Engine::open(&EngineOptions {
        root: root.to_path_buf(),
        db: root.join("crm.db"),
        serving: false,
    })?;
    let snapshot = engine.snapshot();
    let now = kpi_engine::engine::now();
    let when = snapshot.when(None, args.get(2).map(String::as_str), now)?;
    for team in snapshot.teams()?.tree_order() {
        let id = &snapshot.teams()?.ids[team as usize];
        let v = snapshot.value(kpi, Who::Team(id), when, false)?;
        let shown = match (v.value, v.error) {
            (Some(x), _) => format!("{x:.4}"),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "no data".into(),
        };
        println!("{} {id:<10} {kpi} = {shown}", when.period);
    }
    Ok(())
}
