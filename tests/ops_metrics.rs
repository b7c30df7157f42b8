//! SPEC 21 through the real `kpi serve`: `GET /metrics` is a valid Prometheus
//! text exposition with the names and labels of the SPEC (read by a strict
//! parser here, and by the Python `prometheus_client` parser where it is
//! installed), and its numbers move with what happens: a reload, an ingest,
//! an evaluation, a delivered and a failed notification, requests by route.
//! Also `--log-format json`: one JSON object a line.

use crate::util::alerts as alerts_common;
use crate::util::server as server_common;

use std::collections::BTreeMap;
use std::time::Duration;

use alerts_common::robot::{Robot, Vendor};
use serde_json::Value;
use server_common::{Options, Server, root_with_missing_probe};

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's type, and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {:#?}", self.samples))
    }

    fn label_sets(&self, name: &str) -> Vec<Vec<String>> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.keys().cloned().collect())
            .collect()
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The text format, strictly: HELP and TYPE lines before a family's samples,
/// valid names, quoted and escaped label values, float values, a histogram's
/// buckets cumulative and ending in +Inf equal to its count.
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(is_name(name), "{}", at("bad metric name"));
            if kind == "TYPE" {
                let t = parts.next().unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{}",
                    at("bad type")
                );
                assert!(
                    e.types.insert(name.into(), t.into()).is_none(),
                    "{}",
                    at("TYPE twice")
                );
            } else {
                assert_eq!(
                    kind,
                    "HELP",
                    "{}",
                    at("a comment that is neither HELP nor TYPE")
                );
            }
            continue;
        }
        let (head, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{}", at("no value")));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{}", at("bad value"))),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{}", at("unclosed {")));
                (
                    name,
                    parse_labels(body).unwrap_or_else(|m| panic!("{}", at(&m))),
                )
            }
        };
        assert!(is_name(name), "{}", at("bad metric name"));
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| e.types.contains_key(*base))
            })
            .unwrap_or(name);
        let family = if e.types.contains_key(name) {
            name
        } else {
            family
        };
        assert!(
            e.types.contains_key(family),
            "{}",
            at("a sample before its TYPE")
        );
        e.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    for (family, t) in &e.types {
        if t == "histogram" {
            let buckets: Vec<&Sample> = e
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
                .collect();
            assert!(!buckets.is_empty(), "{family}: no buckets");
            assert!(
                buckets.windows(2).all(|w| w[0].value <= w[1].value),
                "{family}: not cumulative"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.labels["le"], "+Inf", "{family}");
            let count = e.get(&format!("{family}_count"), &[]).unwrap();
            assert_eq!(last.value, count, "{family}: +Inf bucket ≠ count");
            assert!(
                e.get(&format!("{family}_sum"), &[]).is_some(),
                "{family}: no sum"
            );
        }
    }
    e
}

fn parse_labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
        if !is_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unclosed label value".into()),
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in a label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
            }
        };
        if out.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

/// Runs the Python client's own parser over the text where it is installed
/// (CI installs it); returns how many families it read.
fn python_families(text: &str) -> Option<usize> {
    use std::io::Write;
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
                  print(len(list(f(sys.stdin.read()))))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named") {
        return None;
    }
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {err}"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn scrape(s: &Server) -> Exposition {
    let r = s.get("/metrics");
    r.expect(200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    parse(&r.text)
}

/// A URL nothing listens on: every POST to it fails at once.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/hook")
}

/// A root whose probe KPI misses its target for east, and two webhooks for
/// it: one that takes every message, one that cannot be reached.
fn root_with_hooks(good: &str, dead: &str) -> tempfile::TempDir {
    let dir = root_with_missing_probe();
    let kpis = dir.path().join("kpis");
    let hook = |name: &str, kind: &str, url: &str| {
        format!(
            "[[webhook]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\nkpis = [\"probe\"]\nteams = [\"east\"]\n"
        )
    };
    std::fs::write(
        kpis.join("alerts.toml"),
        format!(
            "evaluate_every = \"1h\"\nat_risk_after = 0.0\nmax_attempts = 1\n{}{}",
            hook("good", "slack", good),
            hook("dead", "json", dead)
        ),
    )
    .unwrap();
    dir
}

#[test]
fn metrics_have_the_spec_names_and_move_with_reloads_ingests_evaluations_and_deliveries() {
    let robot = Robot::start(Vendor::Slack, None, vec![]);
    let s = Server::start_in(root_with_hooks(&robot.url, &dead_url()), Options::default());

    // Deliveries: the robot takes east's two messages, the dead hook fails twice.
    robot.wait_accepted(2, Duration::from_secs(30));
    let mut m = scrape(&s);
    s.wait_for(
        "a delivered and a failed notification counted",
        Duration::from_secs(30),
        || {
            m = scrape(&s);
            m.get(
                "kpi_notifications_total",
                &[("webhook", "good"), ("result", "delivered")],
            ) == Some(2.0)
                && m.get(
                    "kpi_notifications_total",
                    &[("webhook", "dead"), ("result", "failed")],
                ) == Some(2.0)
        },
    );
    assert_eq!(
        m.get(
            "kpi_notifications_total",
            &[("webhook", "dead"), ("result", "retried")]
        ),
        None
    );
    assert_eq!(m.value("kpi_outbox_pending", &[("webhook", "good")]), 0.0);
    assert_eq!(m.value("kpi_outbox_pending", &[("webhook", "dead")]), 0.0);
    assert!(m.value("kpi_alerts", &[("state", "firing"), ("kind", "missed")]) >= 1.0);
    assert!(
        m.get("kpi_alerts", &[("state", "resolved"), ("kind", "at_risk")])
            .is_some()
    );

    // The families and their types, exactly as SPEC 21 names them.
    for (name, t) in [
        ("kpi_config_version", "gauge"),
        ("kpi_config_last_reload_successful", "gauge"),
        ("kpi_config_last_reload_success_timestamp_seconds", "gauge"),
        ("kpi_records", "gauge"),
        ("kpi_evaluation_seconds", "histogram"),
        ("kpi_alerts", "gauge"),
        ("kpi_notifications_total", "counter"),
        ("kpi_outbox_pending", "gauge"),
        ("kpi_http_requests_total", "counter"),
        ("kpi_http_request_seconds", "histogram"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(t), "{name}");
    }
    assert!(m.label_sets("kpi_records").iter().all(|l| l == &["entity"]));
    assert!(
        m.label_sets("kpi_alerts")
            .iter()
            .all(|l| l == &["kind", "state"])
    );
    assert!(
        m.label_sets("kpi_notifications_total")
            .iter()
            .all(|l| l == &["result", "webhook"])
    );
    assert!(
        m.label_sets("kpi_http_requests_total")
            .iter()
            .all(|l| l == &["route", "status"])
    );
    if let Some(n) = python_families(&s.get("/metrics").text) {
        assert_eq!(
            n,
            m.types.len(),
            "prometheus_client read another number of families"
        );
    }

    // An evaluation: a scorecard read (a new period, so not from the cache).
    let evaluations = m.value("kpi_evaluation_seconds_count", &[]);
    s.get("/api/scorecards/sales?period=2026-Q1").expect(200);
    let m = scrape(&s);
    assert!(m.value("kpi_evaluation_seconds_count", &[]) > evaluations);
    // Requests count under their route template, never the raw path.
    assert!(
        m.value(
            "kpi_http_requests_total",
            &[("route", "/api/scorecards/{id}"), ("status", "200")]
        ) >= 1.0
    );
    s.get("/api/kpis/no_such_kpi").expect(404);
    s.get("/no/such/page").expect(404);
    let m = scrape(&s);
    assert_eq!(
        m.value(
            "kpi_http_requests_total",
            &[("route", "/api/kpis/{id}"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "kpi_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        !m.samples
            .iter()
            .any(|x| x.labels.get("route").is_some_and(|r| r.contains("sales")))
    );
    assert!(m.value("kpi_http_request_seconds_count", &[]) >= 3.0);

    // An ingest: one more team.
    let teams = m.value("kpi_records", &[("entity", "teams")]);
    s.admin(
        "POST",
        "/api/records/teams",
        r#"[{"id": "metrics_team", "name": "M", "parent": "east"}]"#,
    )
    .expect(200);
    let m = scrape(&s);
    assert_eq!(m.value("kpi_records", &[("entity", "teams")]), teams + 1.0);

    // A reload that applies a change, then one that fails.
    let version = m.value("kpi_config_version", &[]);
    let stamp = m.value("kpi_config_last_reload_success_timestamp_seconds", &[]);
    assert_eq!(m.value("kpi_config_last_reload_successful", &[]), 1.0);
    let probe = s.path("kpis/probe.toml");
    std::fs::write(
        &probe,
        std::fs::read_to_string(&probe)
            .unwrap()
            .replace("\"Probe\"", "\"Probe 2\""),
    )
    .unwrap();
    s.admin("POST", "/api/reload", "").expect(200);
    let m = scrape(&s);
    assert_eq!(m.value("kpi_config_version", &[]), version + 1.0);
    assert!(m.value("kpi_config_last_reload_success_timestamp_seconds", &[]) >= stamp);
    std::fs::write(&probe, "[kpi.probe\n").unwrap();
    s.admin("POST", "/api/reload", "").expect(422);
    let m = scrape(&s);
    assert_eq!(m.value("kpi_config_last_reload_successful", &[]), 0.0);
    assert_eq!(m.value("kpi_config_version", &[]), version + 1.0);
}

#[test]
fn metrics_follow_the_read_token_rule() {
    let mut opts = Options {
        demo: false,
        ..Default::default()
    };
    opts.env.push(("KPI_READ_TOKEN", "reader".to_string()));
    let s = Server::start_with(opts);
    s.get("/metrics").expect(401);
    let r = s.request("GET", "/metrics", Some("reader"), &[], None);
    r.expect(200);
    parse(&r.text);
}

#[test]
fn the_json_log_is_one_object_a_line() {
    let mut opts = Options {
        demo: false,
        ..Default::default()
    };
    opts.env.push(("KPI_LOG_FORMAT", "json".to_string()));
    let s = Server::start_with(opts);
    s.get("/health").expect(200);
    std::fs::write(s.path("kpis/broken.toml"), "[kpi.broken\n").unwrap();
    s.admin("POST", "/api/reload", "").expect(422);
    let log = s.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{log}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    for l in &lines {
        for key in ["time", "level", "message", "fields"] {
            assert!(l.get(key).is_some(), "no {key}: {l}");
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(l["time"].as_str().unwrap()).is_ok(),
            "{l}"
        );
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&l["level"].as_str().unwrap())
        );
        assert!(l["fields"].is_object(), "{l}");
    }
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://")
    }));
    assert!(
        lines.iter().any(|l| l["level"] != "info" && l["message"].as_str().unwrap().contains("broken.toml")),
        "the failed reload is logged: {log}"
    );
}

#[test]
fn the_text_log_stays_the_default() {
    let opts = Options {
        demo: false,
        ..Default::default()
    };
    let s = Server::start_with(opts);
    s.get("/health").expect(200);
    let log = s.log();
    assert!(
        log.contains(" INFO ") && !log.trim_start().starts_with('{'),
        "{log}"
    );
}
