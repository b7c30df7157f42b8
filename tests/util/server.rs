//! Shared fixture of the server tests: the real `kpi serve` binary over a
//! temporary root (a copy of the repository's kpis/ and scripts/, demo data),
//! and a small blocking HTTP client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "test-admin-token";

/// A running `kpi serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// How to start a server.
pub struct Options {
    pub demo: bool,
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            demo: true,
            env: vec![("KPI_ADMIN_TOKEN", ADMIN.to_string())],
        }
    }
}

/// A response: status, body text, and the body as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and that an error body has the JSON error shape.
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        if status >= 400 {
            assert!(
                self.json["error"].is_string() && self.json["details"].is_array(),
                "error body is not {{error, details}}: {}",
                self.text
            );
        }
        self
    }
}

/// A copy of the repository's kpis/ and scripts/ in a new temporary folder.
pub fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    super::library(dir.path());
    dir
}

/// [`root`] with a KPI `probe` that is always 0 against a default target of 1: it misses
/// its target in every closed period, for every team.
pub fn root_with_missing_probe() -> tempfile::TempDir {
    let dir = root();
    let kpis = dir.path().join("kpis");
    std::fs::write(
        kpis.join("probe.toml"),
        "[kpi.probe]\nname = \"Probe\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"0.0\"\n",
    )
    .unwrap();
    let mut targets = std::fs::read_to_string(kpis.join("targets.toml")).unwrap();
    targets.push_str("\n[probe]\ndefault = 1.0\n");
    std::fs::write(kpis.join("targets.toml"), targets).unwrap();
    dir
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Server {
        Server::start_in(root(), opts)
    }

    /// Starts on a prepared root; the server picks a free port and prints it.
    pub fn start_in(dir: tempfile::TempDir, opts: Options) -> Server {
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kpi"));
        cmd.arg("--root")
            .arg(dir.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env_remove("KPI_ADMIN_TOKEN")
            .env_remove("KPI_ADMIN_TOKENS")
            .env_remove("KPI_READ_TOKEN")
            .env_remove("KPI_DB")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if opts.demo {
            cmd.arg("--demo");
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start kpi serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let Some(base) = line.trim().strip_prefix("kpi serve: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            panic!("kpi serve did not start: {line}\n{log}");
        };
        let base = base.to_string();
        // Keep draining stdout so the server never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child,
            base,
            dir,
            agent,
        }
    }

    /// Stops the server (SIGKILL) and hands back its root, database included.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end on its own; its exit code (None: still running or killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Any request; `token` goes in `Authorization: Bearer`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut b = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let result = match body {
            Some(bytes) => self.agent.run(b.body(bytes.to_vec()).unwrap()),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let text = resp
            .body_mut()
            .with_config()
            .limit(50 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            text,
            json,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, &[], None)
    }

    /// GET that must answer 200; returns the JSON.
    pub fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        r.expect(200);
        r.json
    }

    pub fn admin(&self, method: &str, path: &str, body: &str) -> Reply {
        self.request(method, path, Some(ADMIN), &[], Some(body.as_bytes()))
    }

    /// The value of one KPI (`null` for no data).
    pub fn value(&self, kpi: &str, team: &str, period: &str) -> Value {
        let r = self.get(&format!(
            "/api/values?kpi={kpi}&team={team}&period={period}"
        ));
        if r.status != 200 {
            return Value::String(format!("HTTP {}: {}", r.status, r.text));
        }
        r.json["value"].clone()
    }

    pub fn health(&self) -> Value {
        self.json("/health")
    }

    /// Polls `check` every 20 ms until it holds; panics after `timeout`. Returns the time taken.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check() {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nhealth: {}\nlog:\n{}",
                    self.get("/health").text,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until /api/values for (kpi, team, period) equals `expected`.
    pub fn wait_value(&self, kpi: &str, team: &str, period: &str, expected: Value) -> Duration {
        self.wait_for(
            &format!("{kpi} {team} {period} = {expected}"),
            Duration::from_secs(5),
            || self.value(kpi, team, period) == expected,
        )
    }

    /// Sends a raw HTTP request (for bodies a client library would not send) and
    /// returns the status of the answer.
    pub fn raw_status(&self, head: &str, body: &[u8]) -> u16 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut data = head.as_bytes().to_vec();
        data.extend_from_slice(body);
        // Write while reading: the server may answer (and stop reading) before the end.
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = writer.join();
        let line = String::from_utf8_lossy(&got);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status line: {line:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A probe KPI whose value is the formula's number, independent of the data.
pub fn probe_kpi(id: &str, formula: &str) -> String {
    format!(
        "# A probe KPI for the reload tests.\n[kpi.{id}]\nname = \"Probe {id}\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"{formula}\"\n"
    )
}

/// Median and maximum of some durations, in milliseconds.
pub fn summary(ds: &[Duration]) -> (u128, u128) {
    let mut ms: Vec<u128> = ds.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    (ms[ms.len() / 2], *ms.last().unwrap())
}
