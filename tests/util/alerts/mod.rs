//! Helpers for the alert tests: a small deployment root (the repository's
//! schema and sales KPIs, UTC, targets and alerts.toml given by the test), a
//! few hand-written records, and a real webhook receiver on 127.0.0.1 that
//! records what it is sent and answers from a script.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kpi_engine::ConfigSnapshot;
use kpi_engine::engine::{Engine, EngineOptions};
use kpi_engine::eval::Records;
use kpi_engine::period::Millis;
use kpi_engine::store::import::Input;
use rusqlite::Connection;
use tempfile::TempDir;

pub mod robot;

pub use super::repo;

/// An instant from RFC 3339.
pub fn t(s: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

pub fn wall_clock() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Revenue target 1000 for 2026-Q3 only, so exactly the periods a test drives have conditions.
pub const TARGETS: &str = "[revenue]\n\"2026-Q3\" = 1000.0\n";

/// A deployment root: schema and sales KPIs of the standard library, UTC.
pub struct Root {
    pub dir: TempDir,
}

impl Root {
    pub fn new(targets: &str, alerts: &str) -> Root {
        let dir = TempDir::new().unwrap();
        let kpis = dir.path().join("kpis");
        fs::create_dir_all(&kpis).unwrap();
        fs::create_dir_all(dir.path().join("scripts")).unwrap();
        for f in ["schema.toml", "sales.toml"] {
            fs::copy(repo().join("kpis").join(f), kpis.join(f)).unwrap();
        }
        for e in fs::read_dir(repo().join("scripts")).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.path().join("scripts").join(e.file_name())).unwrap();
        }
        fs::write(kpis.join("settings.toml"), "timezone = \"UTC\"\n").unwrap();
        fs::write(kpis.join("targets.toml"), targets).unwrap();
        fs::write(kpis.join("alerts.toml"), alerts).unwrap();
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("crm.db")
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.path().join(rel), text).unwrap();
    }

    /// A checked snapshot of the root as it is on disk now.
    pub fn load(&self) -> Arc<ConfigSnapshot> {
        kpi_engine::load_checked(self.path()).unwrap_or_else(|d| panic!("config: {d}"))
    }

    /// The engine over the root as it is on disk now, and crm.db.
    pub fn engine(&self) -> Engine {
        Engine::open(&EngineOptions {
            root: self.path().to_path_buf(),
            db: self.db_path(),
            serving: false,
        })
        .unwrap_or_else(|e| panic!("open: {e}"))
    }

    /// A connection to crm.db with the schema applied.
    pub fn open(&self, _cfg: &ConfigSnapshot) -> Connection {
        self.engine().connection().unwrap()
    }

    /// The records of crm.db (every record written so far).
    pub fn store(&self, _cfg: &ConfigSnapshot) -> Records {
        self.engine().snapshot().records.clone()
    }

    /// Imports NDJSON rows into `entity`.
    pub fn import(&self, _cfg: &ConfigSnapshot, entity: &str, ndjson: &str) {
        self.engine()
            .ingest(entity, "test", Input::Ndjson(Box::new(ndjson.as_bytes())))
            .unwrap_or_else(|e| panic!("import {entity}: {e}"));
    }

    /// hq with north and south under it; north won 200 and south 2000 in July 2026.
    pub fn seed(&self, cfg: &ConfigSnapshot) {
        self.import(
            cfg,
            "teams",
            r#"{"id":"hq","name":"Head office"}
{"id":"north","name":"North","parent":"hq"}
{"id":"south","name":"South","parent":"hq"}
"#,
        );
        self.deal(cfg, "d1", "north", 200.0, "2026-07-10T00:00:00Z");
        self.deal(cfg, "d2", "south", 2000.0, "2026-07-20T00:00:00Z");
    }

    /// A won deal.
    pub fn deal(&self, cfg: &ConfigSnapshot, id: &str, team: &str, amount: f64, closed_at: &str) {
        self.import(
            cfg,
            "deals",
            &format!(
                r#"{{"id":"{id}","team":"{team}","stage":"won","amount":{amount},"created_at":"2026-06-01T00:00:00Z","closed_at":"{closed_at}"}}"#
            ),
        );
    }
}

/// alerts.toml with one webhook to `url` and the given settings lines.
pub fn alerts_toml(url: &str, extra: &str) -> String {
    format!("{extra}\n[[webhook]]\nname = \"ops\"\nurl = \"{url}\"\n")
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    Status(u16),
    /// Read the request, then never answer (hold the connection open).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// A webhook receiver on 127.0.0.1: answers each request with the next
/// scripted answer, then 200 once the script is used up.
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(script: &[Answer]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let got = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (got, script) = (got.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &got, &script));
            }
        });
        Receiver { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received().iter().map(Received::json).collect()
    }
}

/// Reads one HTTP request (head and Content-Length body) from `stream`.
pub fn read_request(stream: &mut TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let first: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Received {
        method: first.first().cloned().unwrap_or_default(),
        path: first.get(1).cloned().unwrap_or_default(),
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Writes a whole HTTP answer and closes.
pub fn respond(stream: &mut TcpStream, code: u16, content_type: &str, text: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn serve(mut stream: TcpStream, got: &Mutex<Vec<Received>>, script: &Mutex<VecDeque<Answer>>) {
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    got.lock().unwrap().push(request);
    let answer = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200));
    match answer {
        Answer::Status(code) => respond(&mut stream, code, "text/plain", &format!("status {code}")),
        Answer::Hang => std::thread::sleep(Duration::from_secs(30)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
