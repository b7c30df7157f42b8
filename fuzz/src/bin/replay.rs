//! Runs every target over its corpus (fuzz/corpus/<target>/) and any files
//! given, without AFL: `cargo run --bin replay [-- TARGET [FILE…]]`. Prints the
//! executions and the time; a panic names the file.

use std::time::Instant;

use kpi_engine_fuzz::{TARGETS, repo};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args.first().cloned();
    for (name, target) in TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let files: Vec<std::path::PathBuf> = if args.len() > 1 {
            args[1..].iter().map(Into::into).collect()
        } else {
            let dir = repo().join("fuzz/corpus").join(name);
            std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        let started = Instant::now();
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            eprintln!("{name}: {}", f.display());
            target(&data);
        }
        println!("{name}: {} inputs in {:?}", files.len(), started.elapsed());
    }
}
