//! Benchmarks of alerts (issue 12):
//!
//! 1. delivery: notifications delivered per second to a local keep-alive
//!    receiver on 127.0.0.1 that answers like a DingTalk robot, with signed
//!    DingTalk messages, for 1 webhook (one lane, in order) and for 8
//!    webhooks (8 lanes side by side);
//! 2. evaluation: judging every KPI that has a target × every team × the
//!    two watched quarters on the demo CRM at `--deals` (default 1M), cold
//!    (a fresh column store) and warm, and applying the transitions.
//!
//!     cargo run --release --example bench_alerts -- [--deals N] [--small-scale N] [--keep]
//!
//! `--keep` reuses the demo database under target/bench_alerts/ while its
//! options match. Nothing is asserted: it prints figures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kpi_engine::ConfigSnapshot;
use kpi_engine::alerts::{self, DeliveryOptions};
use kpi_engine::demo::{self, DemoOptions};
use kpi_engine::engine::{Engine, EngineOptions};
use kpi_engine::period::Millis;
use kpi_engine::store::db;
use kpi_engine::store::demo_writer::{self, BulkWriter};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SEED: u64 = demo::DEFAULT_SEED;
/// Leaf teams × quarters of the demo: scale = deals ÷ this.
const TEAM_QUARTERS: u64 = 6 * 8;
const UNTIL: &str = "2026-11-21";

struct Args {
    deals: u64,
    small_scale: u32,
    keep: bool,
}

fn args() -> Res<Args> {
    let mut a = Args {
        deals: 1_000_000,
        small_scale: 20,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--deals" => a.deals = it.next().ok_or("--deals N")?.parse()?,
            "--small-scale" => a.small_scale = it.next().ok_or("--small-scale N")?.parse()?,
            "--keep" => a.keep = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

fn main() -> Res<()> {
    let a = args()?;
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench_alerts");
    std::fs::create_dir_all(&work)?;
    let rx = Receiver::start()?;
    for lanes in [1, 8] {
        delivery(&work, &rx, lanes, a.small_scale)?;
    }
    evaluation(&work, a.deals, a.keep)?;
    Ok(())
}

/// A deployment root under `work/name` with the repository's kpis/ and
/// scripts/ copied in and `alerts` as alerts.toml.
fn root(work: &Path, name: &str, alerts: &str) -> Res<PathBuf> {
    let dir = work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("kpis"), &dir.join("kpis"))?;
    copy_dir(&repo.join("scripts"), &dir.join("scripts"))?;
    std::fs::write(dir.join("kpis/alerts.toml"), alerts)?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Res<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn until(cfg: &ConfigSnapshot) -> Res<Millis> {
    Ok(cfg.settings.calendar.parse_time(UNTIL)?)
}

/// Writes the demo CRM at `scale` into `path` (or keeps one written with the same options).
fn build(cfg: &ConfigSnapshot, path: &Path, scale: u32, keep: bool) -> Res<Option<Duration>> {
    let stamp = format!("scale={scale} seed={SEED} until={UNTIL}");
    if keep && path.exists() {
        let conn = db::open(path)?;
        if demo_writer::meta(&conn, "bench_alerts")?.as_deref() == Some(stamp.as_str()) {
            return Ok(None);
        }
    }
    let started = Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let mut conn = db::open(path)?;
    db::migrate(&mut conn, &cfg.schema)?;
    let opts = DemoOptions {
        scale,
        seed: SEED,
        until: until(cfg)?,
    };
    let mut writer = BulkWriter::new(&mut conn, &cfg.schema)?;
    demo::generate(&opts, &cfg.settings.calendar, &mut writer)?;
    writer.set_meta("demo", &format!("scale={scale} seed={SEED}"))?;
    writer.set_meta("bench_alerts", &stamp)?;
    writer.commit()?;
    Ok(Some(started.elapsed()))
}

fn delivery(work: &Path, rx: &Receiver, lanes: usize, scale: u32) -> Res<()> {
    let mut toml = String::new();
    for i in 0..lanes {
        toml.push_str(&format!(
            "[[webhook]]\nname = \"robot-{i}\"\nkind = \"dingtalk\"\nurl = \"{}/robot/send?access_token=bench-{i}\"\nsecret = \"SECbench\"\n\n",
            rx.base
        ));
    }
    let dir = root(work, &format!("delivery-{lanes}"), &toml)?;
    let cfg = kpi_engine::load_checked(&dir).map_err(|d| d.to_string())?;
    let path = dir.join("crm.db");
    build(&cfg, &path, scale, false)?;
    let engine = open(&dir, &path)?;
    let store = engine.snapshot().records.clone();
    let mut conn = engine.connection()?;
    let started = Instant::now();
    let applied = alerts::evaluate_applied(&cfg, &mut conn, store, until(&cfg)?)?;
    let queued_in = started.elapsed();
    let before = rx.count.load(Ordering::SeqCst);
    let started = Instant::now();
    let report = alerts::deliver_due(
        &conn,
        chrono::Utc::now().timestamp_millis(),
        &DeliveryOptions::new(8),
    )?;
    let took = started.elapsed();
    let got = rx.count.load(Ordering::SeqCst) - before;
    println!(
        "delivery, {lanes} webhook(s): {} transitions queued {} signed DingTalk messages in {:.2} s; \
         {} delivered ({got} received) in {:.2} s = {:.0} notifications/s",
        applied.transitions.len(),
        applied.messages,
        queued_in.as_secs_f64(),
        report.delivered,
        took.as_secs_f64(),
        report.delivered as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn evaluation(work: &Path, deals: u64, keep: bool) -> Res<()> {
    let dir = root(work, "evaluation", "")?;
    let cfg = kpi_engine::load_checked(&dir).map_err(|d| d.to_string())?;
    let scale = (deals as f64 / TEAM_QUARTERS as f64).round().max(1.0) as u32;
    let path = work.join(format!("demo-scale{scale}.db"));
    match build(&cfg, &path, scale, keep)? {
        Some(t) => println!(
            "evaluation: built the demo CRM (scale {scale}, about {deals} deals) in {:.1} s",
            t.as_secs_f64()
        ),
        None => println!("evaluation: reusing {}", path.display()),
    }
    let conn = db::open(&path)?;
    let n_deals: i64 = conn.query_row("SELECT COUNT(*) FROM deals", [], |r| r.get(0))?;
    let as_of = until(&cfg)?;
    let engine = open(&dir, &path)?;
    let store = engine.snapshot().records.clone();
    for run in ["cold", "warm"] {
        let started = Instant::now();
        let judged = alerts::judge(&cfg, &conn, store.clone(), as_of)?;
        println!(
            "evaluation, {n_deals} deals, {run}: {} conditions ({} KPIs with targets × {} teams × 2 quarters × 2 kinds) judged in {:.2} s",
            judged.found.len(),
            cfg.targets.kpis.len(),
            judged.teams.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let mut conn = conn;
    let started = Instant::now();
    let applied = alerts::evaluate_applied(&cfg, &mut conn, store, as_of)?;
    println!(
        "evaluation, {n_deals} deals, warm, with the state applied: {} transitions in {:.2} s",
        applied.transitions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A keep-alive HTTP receiver on 127.0.0.1 that answers every POST at once
/// as a DingTalk robot does, and counts them.
struct Receiver {
    base: String,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    fn start() -> Res<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let c = c.clone();
                std::thread::spawn(move || serve(stream, &c));
            }
        });
        Ok(Receiver { base, count })
    }
}

fn serve(mut stream: TcpStream, count: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + length);
        count.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"errcode":0,"errmsg":"ok"}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The engine over `root` and `db`, as `kpi alerts` opens it.
fn open(root: &Path, db: &Path) -> Result<Engine, Box<dyn std::error::Error>> {
    Ok(Engine::open(&EngineOptions {
        root: root.to_path_buf(),
        db: db.to_path_buf(),
        serving: false,
    })?)
}
