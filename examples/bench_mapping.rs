//! Benchmark of SPEC 15's speed goal: a mapped import of a 1M-row CSV (renames, a values map,
//! one lookup, one date format) against the plain `kpi import` of the same records.
//!
//!     cargo build --release --bins && cargo run --release --example bench_mapping [-- --rows N]
//!
//! Writes two files of the same deals under $TMPDIR/kpi-bench-mapping: plain.csv (our field
//! names, times as YYYY-MM-DD) and export.csv (a CRM's names, stages as labels, teams by name,
//! dates as %m/%d/%Y), imports each into a fresh root with target/release/kpi, and prints the
//! wall time and rows/s of both and their ratio (goal: mapped ≥ 0.7× plain).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TEAMS: &[(&str, &str)] = &[
    ("shanghai", "Shanghai Sales"),
    ("beijing", "Beijing Sales"),
    ("shenzhen", "Shenzhen Sales"),
    ("hangzhou", "Hangzhou Sales"),
];
const STAGES: &[(&str, &str)] = &[
    ("lead", "Prospecting"),
    ("qualified", "Qualification"),
    ("quote", "Proposal/Price Quote"),
    ("negotiation", "Negotiation/Review"),
    ("won", "Closed Won"),
    ("lost", "Closed Lost"),
];

const MAPPING: &str = r#"
[mapping]
entity = "deals"
time_formats = ["%m/%d/%Y"]

[mapping.fields]
id         = "Opportunity ID"
team       = { column = "Team", lookup = "team" }
amount     = "Amount"
created_at = "Created Date"
closed_at  = "Close Date"
stage      = { column = "Stage", values = { "Prospecting" = "lead", "Qualification" = "qualified", "Proposal/Price Quote" = "quote", "Negotiation/Review" = "negotiation", "Closed Won" = "won", "Closed Lost" = "lost" } }

[mapping.lookup.team]
file = "teams_by_name.csv"
key = "name"
value = "id"
"#;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn root(dir: &Path, repo: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(dir);
    copy_dir(&repo.join("kpis"), &dir.join("kpis"));
    copy_dir(&repo.join("scripts"), &dir.join("scripts"));
    fs::write(dir.join("kpis/mappings/bench.toml"), MAPPING).unwrap();
    let mut teams = String::from("id,name\n");
    for (id, name) in TEAMS {
        teams.push_str(&format!("{id},{name}\n"));
    }
    fs::write(dir.join("teams.csv"), teams).unwrap();
    run(dir, &["import", "teams", "teams.csv"]);
    dir.to_path_buf()
}

fn run(root: &Path, args: &[&str]) -> f64 {
    let kpi = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kpi");
    let started = Instant::now();
    let out = Command::new(&kpi)
        .arg("--root")
        .arg(root)
        .args(args)
        .current_dir(root)
        .output()
        .expect("run target/release/kpi (cargo build --release --bins first)");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn main() {
    let rows: usize = std::env::args()
        .skip_while(|a| a != "--rows")
        .nth(1)
        .map_or(1_000_000, |n| n.parse().expect("--rows N"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join("kpi-bench-mapping");
    fs::create_dir_all(&work).unwrap();
    let plain_root = root(&work.join("plain"), &repo);
    let mapped_root = root(&work.join("mapped"), &repo);
    let mut by_name = String::from("name,id\n");
    for (id, name) in TEAMS {
        by_name.push_str(&format!("{name},{id}\n"));
    }
    fs::write(mapped_root.join("teams_by_name.csv"), by_name).unwrap();

    let mut plain =
        std::io::BufWriter::new(fs::File::create(plain_root.join("deals.csv")).unwrap());
    let mut export =
        std::io::BufWriter::new(fs::File::create(mapped_root.join("export.csv")).unwrap());
    writeln!(plain, "id,team,stage,amount,created_at,closed_at").unwrap();
    writeln!(
        export,
        "Opportunity ID,Team,Stage,Amount,Created Date,Close Date"
    )
    .unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (team, team_name) = TEAMS[(x % 4) as usize];
        let (stage, label) = STAGES[((x >> 8) % 6) as usize];
        let amount = (x >> 16) % 200_000;
        let (m, d) = (1 + (x >> 24) % 12, 1 + (x >> 28) % 28);
        let closed = matches!(stage, "won" | "lost");
        let (pc, ec) = if closed {
            (format!("2026-{m:02}-{d:02}"), format!("{m}/{d}/2026"))
        } else {
            (String::new(), String::new())
        };
        writeln!(
            plain,
            "d{i},{team},{stage},{amount}.5,2025-{m:02}-{d:02},{pc}"
        )
        .unwrap();
        writeln!(
            export,
            "d{i},{team_name},{label},{amount}.5,{m}/{d}/2025,{ec}"
        )
        .unwrap();
    }
    plain.flush().unwrap();
    export.flush().unwrap();
    drop((plain, export));

    let t_plain = run(&plain_root, &["import", "deals", "deals.csv"]);
    let t_mapped = run(
        &mapped_root,
        &["import", "deals", "export.csv", "--mapping", "bench"],
    );
    let rate = |t: f64| rows as f64 / t;
    println!(
        "plain  kpi import deals deals.csv:                  {t_plain:6.2} s  {:>9.0} rows/s",
        rate(t_plain)
    );
    println!(
        "mapped kpi import deals export.csv --mapping bench: {t_mapped:6.2} s  {:>9.0} rows/s",
        rate(t_mapped)
    );
    println!(
        "mapped / plain rate: {:.2}x (goal >= 0.7x)",
        rate(t_mapped) / rate(t_plain)
    );
}
