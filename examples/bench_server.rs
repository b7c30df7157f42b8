//! Benchmarks of `kpi serve` and `kpi import` on a ~1M-deal demo CRM (issue 5, parts 2–5):
//!
//! 2. freshness: a saved KPI file → the new value served, and a one-record
//!    ingest → the scorecard reflecting it (p50/p95 over `--trials` each);
//! 3. ingest: `kpi import deals` of a 1M-row CSV against `sqlite3 .import` of
//!    the same file into a plain table (rows per second, `--runs` each, interleaved);
//! 4. HTTP: GET /api/scorecards/sales under `wrk -t2 -c64 -d10s --latency`;
//! 5. memory: peak RSS (VmHWM) of the server after 2 and 4;
//! 6. pages: every dashboard page (SPEC 19) with a warm store, by the server's own
//!    `Server-Timing` (p50/p95 over `--trials` of each), once served from the scorecard
//!    cache and once with a new as-of each time (a cache miss: what the first request of every
//!    minute costs).
//!
//!     cargo build --release && cargo run --release --example bench_server -- [options]
//!
//! Options: `--scale N` (20834: ~920k deals), `--until YYYY-MM-DD` (2026-11-21),
//! `--trials N` (50), `--runs N` (3; wrk and import repetitions), `--rows N`
//! (1000000, the CSV is padded to it), `--work DIR` (a temp dir; the demo database
//! is kept there and reused while scale and until match), `--kpi PATH` (the binary
//! to measure, default target/release/kpi), `--parts freshness,http,memory,ingest,pages`,
//! `--db postgres://…` (serve a PostgreSQL database instead: the demo is written there
//! afresh on each run, and the ingest part, which compares SQLite imports, is skipped).
//! Needs `wrk` and `sqlite3` on the PATH. Nothing is asserted: it prints figures.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const ADMIN_TOKEN: &str = "bench-admin-token";
/// The value the freshness trials watch: one team's revenue in one quarter.
const TEAM: &str = "shanghai";
const KPI: &str = "revenue";
const PERIOD: &str = "2026-Q4";

struct Opts {
    scale: u32,
    until: String,
    trials: usize,
    runs: usize,
    rows: usize,
    work: PathBuf,
    kpi: PathBuf,
    parts: Vec<String>,
    /// A PostgreSQL URL to serve instead of a SQLite file.
    db: Option<String>,
}

fn opts() -> Res<Opts> {
    let exe = std::env::current_exe()?;
    // target/release/examples/bench_server → target/release/kpi
    let default_kpi = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("kpi"))
        .unwrap_or_else(|| PathBuf::from("kpi"));
    let mut o = Opts {
        scale: 20834,
        until: "2026-11-21".into(),
        trials: 50,
        runs: 3,
        rows: 1_000_000,
        work: std::env::temp_dir().join("kpi-bench-server"),
        kpi: default_kpi,
        parts: ["freshness", "http", "memory", "ingest", "pages"]
            .map(String::from)
            .to_vec(),
        db: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--scale" => o.scale = val()?.parse()?,
            "--until" => o.until = val()?,
            "--trials" => o.trials = val()?.parse()?,
            "--runs" => o.runs = val()?.parse()?,
            "--rows" => o.rows = val()?.parse()?,
            "--work" => o.work = val()?.into(),
            "--kpi" => o.kpi = val()?.into(),
            "--parts" => o.parts = val()?.split(',').map(String::from).collect(),
            "--db" => o.db = Some(val()?),
            "-h" | "--help" => {
                println!("see the doc comment of examples/bench_server.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if !o.kpi.exists() {
        return Err(format!(
            "{} does not exist: run `cargo build --release` first (or pass --kpi)",
            o.kpi.display()
        )
        .into());
    }
    Ok(o)
}

fn main() -> Res<()> {
    let o = opts()?;
    std::fs::create_dir_all(&o.work)?;
    machine(&o);
    let pristine = demo_db(&o)?;
    let wants = |p: &str| o.parts.iter().any(|x| x == p);
    if wants("freshness") || wants("http") || wants("memory") || wants("pages") {
        serve_benchmarks(&o, &pristine, &wants)?;
    }
    if wants("ingest") && o.db.is_none() {
        ingest_benchmark(&o, &pristine)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- setup

fn machine(o: &Opts) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    println!("# machine");
    println!(
        "cpu: {cpu} × {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{}", mem.split_whitespace().collect::<Vec<_>>().join(" "));
    println!("kernel: {}", cmd("uname", &["-sr"]));
    println!("load average at start: {}", read("/proc/loadavg").trim());
    println!("sqlite3: {}", cmd("sqlite3", &["--version"]));
    println!(
        "wrk: {}",
        cmd("sh", &["-c", "wrk --version 2>&1 | head -1"])
    );
    println!("kpi: {}", o.kpi.display());
    println!(
        "commit: {}",
        cmd(
            "git",
            &[
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "describe",
                "--always",
                "--dirty"
            ]
        )
    );
    println!();
}

/// A root with copies of the repository's kpis/ and scripts/.
fn fresh_root(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["kpis", "scripts"] {
        copy_dir(&repo.join(sub), &dir.join(sub))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn kpi(o: &Opts, root: &Path) -> Command {
    let mut c = Command::new(&o.kpi);
    c.arg("--root").arg(root);
    if let Some(db) = &o.db {
        c.args(["--db", db]);
    }
    c
}

fn run_ok(mut c: Command) -> Res<String> {
    let out = c.output()?;
    if !out.status.success() {
        return Err(format!(
            "{c:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The demo database for `--scale` and `--until`, written once and kept.
fn demo_db(o: &Opts) -> Res<PathBuf> {
    let db = o.work.join("pristine.db");
    let stamp = o.work.join("pristine.txt");
    let want = format!("scale={} until={}", o.scale, o.until);
    if o.db.is_some() {
        return pg_demo(o, &want);
    }
    if db.exists() && std::fs::read_to_string(&stamp).unwrap_or_default() == want {
        println!("# demo database: {} (reused; {want})\n", db.display());
        return Ok(db);
    }
    let _ = std::fs::remove_file(&stamp);
    let root = write_demo(o, &format!("demo database ({want})"))?;
    // One file, no WAL beside it, so it can be copied.
    let conn = rusqlite::Connection::open(root.join("crm.db"))?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    drop(conn);
    std::fs::rename(root.join("crm.db"), &db)?;
    std::fs::write(&stamp, want)?;
    println!();
    Ok(db)
}

/// The demo written into the PostgreSQL database of `--db` (the path it returns is unused).
fn pg_demo(o: &Opts, want: &str) -> Res<PathBuf> {
    let root = write_demo(o, &format!("demo written to PostgreSQL ({want})"))?;
    println!();
    Ok(root.join("crm.db"))
}

/// `kpi demo --force` for `--scale` and `--until` in a fresh demo root (into `--db` when
/// given); prints how long it took and what it wrote. Returns the root.
fn write_demo(o: &Opts, what: &str) -> Res<PathBuf> {
    let root = o.work.join("demo-root");
    fresh_root(&root)?;
    let t = Instant::now();
    let mut c = kpi(o, &root);
    c.args([
        "demo",
        "--force",
        "--scale",
        &o.scale.to_string(),
        "--until",
        &o.until,
    ]);
    let out = run_ok(c)?;
    println!("# {what}: {:.1} s", t.elapsed().as_secs_f64());
    println!("{}", out.trim());
    Ok(root)
}

// ---------------------------------------------------------------- the server

struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
    started_in: Duration,
}

impl Server {
    fn start(o: &Opts, root: &Path) -> Res<Server> {
        let log = std::fs::File::create(o.work.join("serve.log"))?;
        let t = Instant::now();
        let mut child = kpi(o, root)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env("KPI_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("KPI_READ_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let started_in = t.elapsed();
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .ok_or_else(|| format!("kpi serve did not start: {line:?} (see serve.log)"))?
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Server {
            child,
            base,
            agent,
            started_in,
        })
    }

    fn get(&self, path: &str) -> Res<Value> {
        let mut r = self.agent.get(format!("{}{path}", self.base)).call()?;
        let body = r.body_mut().read_to_string()?;
        if !r.status().is_success() {
            return Err(format!("GET {path}: {} {body}", r.status()).into());
        }
        Ok(serde_json::from_str(&body)?)
    }

    fn post(&self, path: &str, body: &str) -> Res<Value> {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .content_type("application/json")
            .send(body)?;
        let text = r.body_mut().read_to_string()?;
        if !r.status().is_success() {
            return Err(format!("POST {path}: {} {text}", r.status()).into());
        }
        Ok(serde_json::from_str(&text)?)
    }

    fn status(&self, field: &str) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// SIGTERM, then SIGKILL if it has not stopped after 10 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (value, target) of KPI for TEAM in a scorecard response.
fn in_scorecard(card: &Value) -> Option<(f64, f64)> {
    let team = card["teams"]
        .as_array()?
        .iter()
        .find(|t| t["team"] == TEAM)?;
    let line = team["kpis"].as_array()?.iter().find(|k| k["kpi"] == KPI)?;
    Some((line["value"].as_f64()?, line["target"].as_f64()?))
}

fn scorecard_path() -> String {
    format!("/api/scorecards/sales?period={PERIOD}")
}

fn values_path() -> String {
    format!("/api/values?kpi={KPI}&team={TEAM}&period={PERIOD}")
}

fn serve_benchmarks(o: &Opts, pristine: &Path, wants: &dyn Fn(&str) -> bool) -> Res<()> {
    let root = o.work.join("serve-root");
    fresh_root(&root)?;
    if o.db.is_none() {
        std::fs::copy(pristine, root.join("crm.db"))?;
    }
    let server = Server::start(o, &root)?;
    println!("# kpi serve");
    println!(
        "ready after {:.2} s (every column the formulas name read); VmRSS {} MiB, VmHWM {} MiB",
        server.started_in.as_secs_f64(),
        server.status("VmRSS:").unwrap_or(0) / 1024,
        server.status("VmHWM:").unwrap_or(0) / 1024
    );
    let t = Instant::now();
    server.get(&scorecard_path())?;
    println!(
        "first GET {} (cold evaluation): {:.0} ms",
        scorecard_path(),
        ms(t.elapsed())
    );
    println!();
    let result = (|| -> Res<()> {
        if wants("freshness") {
            freshness_file(o, &server, &root)?;
            freshness_ingest(o, &server)?;
        }
        if wants("http") {
            http(o, &server)?;
        }
        if wants("pages") {
            pages(o, &server)?;
        }
        Ok(())
    })();
    if wants("memory") {
        println!("# memory of kpi serve after the benchmarks above");
        println!(
            "VmHWM (peak RSS) {} MiB, VmRSS {} MiB",
            server.status("VmHWM:").unwrap_or(0) / 1024,
            server.status("VmRSS:").unwrap_or(0) / 1024
        );
        println!();
    }
    server.stop();
    // The copy of the database is not needed again (the pristine one is kept).
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// (a) Save kpis/targets.toml with a new target of KPI for TEAM, then poll
/// until the new target is served: once through /api/values, once through
/// the scorecard.
fn freshness_file(o: &Opts, server: &Server, root: &Path) -> Res<()> {
    let path = root.join("kpis/targets.toml");
    let text = std::fs::read_to_string(&path)?;
    let header = format!("[{KPI}.teams.{TEAM}]");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let h = lines
        .iter()
        .position(|l| l.trim() == header)
        .ok_or_else(|| format!("{header} not found in kpis/targets.toml"))?;
    // The team's "Q4" line (added if missing) is the one rewritten.
    let q4 = match lines[h + 1..]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| l.trim_start().starts_with("\"Q4\""))
    {
        Some(i) => h + 1 + i,
        None => {
            lines.insert(h + 1, String::new());
            h + 1
        }
    };
    println!("# freshness (a): save kpis/targets.toml → new target served");
    let mut saves = 0u32;
    for (name, via) in [
        ("GET /api/values", values_path()),
        ("GET /api/scorecards/sales", scorecard_path()),
    ] {
        let mut took = Vec::new();
        let mut failed = 0;
        for _ in 0..o.trials {
            saves += 1;
            let target = 2_400_000.0 + 1000.0 * f64::from(saves % 2 + 1);
            lines[q4] = format!("\"Q4\" = {target:.1}");
            let t = Instant::now();
            std::fs::write(&path, lines.join("\n") + "\n")?;
            let seen = poll(t, || {
                let v = server.get(&via)?;
                let served = if via.starts_with("/api/values") {
                    v["target"].as_f64()
                } else {
                    in_scorecard(&v).map(|x| x.1)
                };
                Ok(served == Some(target))
            })?;
            match seen {
                Some(d) => took.push(d),
                None => failed += 1,
            }
            // Let the debounce window of this save close before the next.
            std::thread::sleep(Duration::from_millis(300));
        }
        report(&format!("polling {name}"), &took, failed);
    }
    println!();
    Ok(())
}

/// Polls `check` until true (Some(time since `t`)) or 10 s (None).
fn poll(t: Instant, mut check: impl FnMut() -> Res<bool>) -> Res<Option<Duration>> {
    while t.elapsed() < Duration::from_secs(10) {
        if check()? {
            return Ok(Some(t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(None)
}

/// (b) POST one won deal, then GET the scorecard until TEAM's revenue includes it.
fn freshness_ingest(o: &Opts, server: &Server) -> Res<()> {
    println!(
        "# freshness (b): POST /api/records/deals (one won deal) → GET /api/scorecards/sales reflects it"
    );
    let tag = std::process::id();
    let mut took = Vec::new();
    let mut posts = Vec::new();
    let mut failed = 0;
    for i in 0..o.trials {
        let before = in_scorecard(&server.get(&scorecard_path())?)
            .ok_or("no revenue line")?
            .0;
        let amount = 1000.0 + i as f64;
        let body = json!([{
            "id": format!("bench-{tag}-{i}"), "team": TEAM, "stage": "won", "amount": amount,
            "created_at": "2026-11-01T00:00:00Z", "closed_at": "2026-11-20T00:00:00Z"
        }])
        .to_string();
        let t = Instant::now();
        server.post("/api/records/deals", &body)?;
        posts.push(t.elapsed());
        let seen = poll(t, || {
            let v = in_scorecard(&server.get(&scorecard_path())?).map(|x| x.0);
            Ok(v.is_some_and(|v| (v - (before + amount)).abs() < 0.5))
        })?;
        match seen {
            Some(d) => took.push(d),
            None => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    report("POST alone", &posts, 0);
    report("POST → scorecard reflects it", &took, failed);
    println!();
    Ok(())
}

/// The server's own time of one GET (its `Server-Timing` header), in ms.
fn server_ms(server: &Server, path: &str) -> Res<f64> {
    let r = server
        .agent
        .get(format!("{}{path}", server.base))
        .header("Accept", "text/html")
        .call()?;
    if !r.status().is_success() {
        return Err(format!("GET {path}: {}", r.status()).into());
    }
    let timing = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("app;dur="))
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("GET {path}: no Server-Timing header"))?;
    Ok(timing)
}

/// 6. Every dashboard page, warm, by the server's own time.
fn pages(o: &Opts, server: &Server) -> Res<()> {
    let owners = server.get("/api/scorecards/sales_reps")?;
    let owner = owners["owners"][0]["owner"]
        .as_str()
        .ok_or("no person in sales_reps")?
        .to_string();
    let list = [
        "/?scorecard=sales".to_string(),
        "/?scorecard=sales&level=leaves".to_string(),
        "/?scorecard=sales&period=2026-Q1".to_string(),
        format!("/teams/{TEAM}?scorecard=sales"),
        "/teams/hq?scorecard=sales".to_string(),
        format!("/owners/{owner}?scorecard=sales_reps"),
        format!("/kpis/{KPI}?team={TEAM}&scorecard=sales"),
        format!("/kpis/{KPI}?team=hq&scorecard=sales"),
        format!("/kpis/{KPI}?owner={owner}&scorecard=sales_reps"),
        "/alerts?state=all".to_string(),
        "/history".to_string(),
    ];
    println!(
        "# pages (server time from Server-Timing, ms; {} trials each)",
        o.trials
    );
    println!(
        "{:<52} {:>9} {:>9} {:>12} {:>12}",
        "page", "warm p50", "warm p95", "new-as_of p50", "new-as_of p95"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    for (n, path) in list.iter().enumerate() {
        server_ms(server, path)?;
        let mut warm: Vec<f64> = (0..o.trials)
            .map(|_| server_ms(server, path))
            .collect::<Res<_>>()?;
        // A distinct as-of minute per trial: the scorecard cache misses, the store stays warm.
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut fresh: Vec<f64> = (0..o.trials)
            .map(|i| {
                // Minutes no other page or trial asked for.
                let at = now - 60 * ((n * o.trials + i) as i64 + 1);
                let stamp = chrono::DateTime::from_timestamp(at, 0)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:00Z").to_string())
                    .unwrap_or_default();
                server_ms(server, &format!("{path}{sep}as_of={stamp}"))
            })
            .collect::<Res<_>>()?;
        println!(
            "{path:<52} {:>9.1} {:>9.1} {:>12.1} {:>12.1}",
            median(&mut warm),
            pct(&warm, 95.0),
            median(&mut fresh),
            pct(&fresh, 95.0)
        );
    }
    println!();
    Ok(())
}

fn http(o: &Opts, server: &Server) -> Res<()> {
    let url = format!("{}/api/scorecards/sales", server.base);
    server.get("/api/scorecards/sales")?;
    println!("# HTTP: wrk -t2 -c64 -d10s --latency {url}");
    let mut rps = Vec::new();
    let mut p99 = Vec::new();
    for run in 1..=o.runs {
        let out = Command::new("wrk")
            .args(["-t2", "-c64", "-d10s", "--latency", &url])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let r = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|x| x.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("cannot read wrk's output:\n{text}"))?;
        let l99 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("99%"))
            .and_then(|x| latency_ms(x.trim()))
            .ok_or_else(|| format!("cannot read wrk's latency:\n{text}"))?;
        let errors = text
            .lines()
            .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
            .collect::<Vec<_>>()
            .join("; ");
        println!(
            "run {run}: {r:.0} req/s, p99 {l99:.2} ms{}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({errors})")
            }
        );
        rps.push(r);
        p99.push(l99);
    }
    println!(
        "median: {:.0} req/s, p99 {:.2} ms",
        median(&mut rps),
        median(&mut p99)
    );
    println!();
    Ok(())
}

/// wrk's "1.23ms", "456.00us", "1.02s" in ms.
fn latency_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let x: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => x / 1000.0,
        "ms" => x,
        "s" => x * 1000.0,
        "m" => x * 60_000.0,
        _ => return None,
    })
}

// ---------------------------------------------------------------- ingest

/// Exports teams and deals (times as RFC 3339 UTC), padded to `--rows` deals
/// with copies under new ids.
fn export(o: &Opts, pristine: &Path) -> Res<(PathBuf, PathBuf, usize)> {
    let teams_csv = o.work.join("teams.csv");
    let deals_csv = o.work.join(format!("deals-{}.csv", o.rows));
    let conn = rusqlite::Connection::open(pristine)?;
    let mut w = csv::Writer::from_path(&teams_csv)?;
    w.write_record(["id", "name", "parent"])?;
    let mut stmt = conn.prepare("SELECT id, name, parent FROM teams ORDER BY rowid")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let cells: [Option<String>; 3] = [r.get(0)?, r.get(1)?, r.get(2)?];
        w.write_record(cells.iter().map(|c| c.as_deref().unwrap_or("")))?;
    }
    w.flush()?;
    if deals_csv.exists() {
        let n = BufReader::new(std::fs::File::open(&deals_csv)?)
            .lines()
            .count()
            - 1;
        return Ok((teams_csv, deals_csv, n));
    }
    let cols = [
        "id",
        "team",
        "owner",
        "customer",
        "stage",
        "amount",
        "created_at",
        "closed_at",
        "campaign",
    ];
    let time = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default()
    };
    let tmp = deals_csv.with_extension("tmp");
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
    w.write_record(cols)?;
    let sql = format!("SELECT {} FROM deals ORDER BY rowid", cols.join(", "));
    let mut stmt = conn.prepare(&sql)?;
    let mut written = 0;
    let mut copy = 0;
    while written < o.rows {
        let mut rows = stmt.query([])?;
        let mut any = false;
        while written < o.rows
            && let Some(r) = rows.next()?
        {
            any = true;
            let id: String = r.get(0)?;
            let id = if copy == 0 {
                id
            } else {
                format!("{id}-copy{copy}")
            };
            let text = |i: usize| -> rusqlite::Result<String> {
                Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
            };
            let amount: f64 = r.get(5)?;
            w.write_record([
                id,
                text(1)?,
                text(2)?,
                text(3)?,
                text(4)?,
                amount.to_string(),
                time(r.get(6)?),
                time(r.get(7)?),
                text(8)?,
            ])?;
            written += 1;
        }
        if !any {
            return Err("the demo database has no deals".into());
        }
        copy += 1;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, &deals_csv)?;
    Ok((teams_csv, deals_csv, written))
}

fn ingest_benchmark(o: &Opts, pristine: &Path) -> Res<()> {
    let t = Instant::now();
    let (teams_csv, deals_csv, rows) = export(o, pristine)?;
    let size = std::fs::metadata(&deals_csv)?.len();
    println!(
        "# ingest: {rows} deals, {:.0} MiB CSV ({}; ready in {:.1} s)",
        size as f64 / (1 << 20) as f64,
        deals_csv.display(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "kpi:     kpi --root R import deals {0}   (R: fresh root and database, teams imported first)",
        deals_csv.display()
    );
    println!(
        "sqlite3: sqlite3 plain.db \".mode csv\" \".import {0} deals\"   (plain.db removed first)",
        deals_csv.display()
    );
    let mut k = Vec::new();
    let mut s = Vec::new();
    for run in 1..=o.runs {
        // sqlite3 .import into a new plain table (TEXT columns from the header).
        let plain = o.work.join("plain.db");
        let _ = std::fs::remove_file(&plain);
        let mut c = Command::new("sqlite3");
        c.arg(&plain)
            .arg(".mode csv")
            .arg(format!(".import {} deals", deals_csv.display()));
        let t = Instant::now();
        run_quiet(c)?;
        let sq = t.elapsed();
        check_count(&plain, rows)?;
        let _ = std::fs::remove_file(&plain);

        // kpi import into the schema's table (typed, indexed, every row validated).
        let root = o.work.join("import-root");
        fresh_root(&root)?;
        let mut c = kpi(o, &root);
        c.arg("import").arg("teams").arg(&teams_csv);
        run_ok(c)?;
        let mut c = kpi(o, &root);
        c.arg("import").arg("deals").arg(&deals_csv);
        let t = Instant::now();
        run_ok(c)?;
        let kt = t.elapsed();
        check_count(&root.join("crm.db"), rows)?;
        std::fs::remove_dir_all(&root)?;

        let (kr, sr) = (
            rows as f64 / kt.as_secs_f64(),
            rows as f64 / sq.as_secs_f64(),
        );
        println!(
            "run {run}: kpi import {:.2} s = {kr:.0} rows/s; sqlite3 .import {:.2} s = {sr:.0} rows/s; ratio {:.2}",
            kt.as_secs_f64(),
            sq.as_secs_f64(),
            kr / sr
        );
        k.push(kr);
        s.push(sr);
    }
    let (km, sm) = (median(&mut k), median(&mut s));
    println!(
        "median: kpi import {km:.0} rows/s, sqlite3 .import {sm:.0} rows/s, ratio {:.2} (goal ≥ 0.5)",
        km / sm
    );
    println!(
        "load average at end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    Ok(())
}

fn run_quiet(mut c: Command) -> Res<()> {
    let out = c.output()?;
    if !out.status.success() || !out.stderr.is_empty() {
        return Err(format!("{c:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn check_count(db: &Path, rows: usize) -> Res<()> {
    let conn = rusqlite::Connection::open(db)?;
    let n: i64 = conn.query_row("SELECT count(*) FROM deals", [], |r| r.get(0))?;
    if n as usize != rows {
        return Err(format!("{}: {n} deals, expected {rows}", db.display()).into());
    }
    Ok(())
}

// ---------------------------------------------------------------- figures

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted `xs`.
fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * xs.len() as f64).ceil().max(1.0) as usize;
    xs[rank.min(xs.len()) - 1]
}

fn report(what: &str, took: &[Duration], failed: usize) {
    let mut xs: Vec<f64> = took.iter().map(|d| ms(*d)).collect();
    xs.sort_by(f64::total_cmp);
    print!(
        "{what}: n={} p50 {:.0} ms, p95 {:.0} ms, min {:.0}, max {:.0}",
        xs.len(),
        pct(&xs, 50.0),
        pct(&xs, 95.0),
        xs.first().copied().unwrap_or(f64::NAN),
        xs.last().copied().unwrap_or(f64::NAN)
    );
    if failed > 0 {
        print!(" ({failed} not seen within 10 s)");
    }
    println!();
    let _ = std::io::stdout().flush();
}
