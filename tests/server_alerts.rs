//! End to end: the alert scheduler inside `kpi serve` fires alerts, delivers
//! them to a real webhook receiver on 127.0.0.1, lists them on GET
//! /api/alerts, and sends nothing again after a reload.

use crate::util::server as server_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use server_common::{Options, Server, root};

/// Accepts POSTs, answers 200, keeps every JSON body.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            }
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn the_server_fires_delivers_and_lists_alerts_once() {
    let (url, bodies) = receiver();
    let dir = root();
    // A KPI that is always 0 against a target of 1: it misses in every closed period.
    std::fs::write(
        dir.path().join("kpis/probe.toml"),
        "[kpi.probe]\nname = \"Probe\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"0.0\"\n",
    )
    .unwrap();
    let mut targets = std::fs::read_to_string(dir.path().join("kpis/targets.toml")).unwrap();
    targets.push_str("\n[probe]\ndefault = 1.0\n");
    std::fs::write(dir.path().join("kpis/targets.toml"), targets).unwrap();
    std::fs::write(
        dir.path().join("kpis/alerts.toml"),
        format!("evaluate_every = \"1h\"\n[[webhook]]\nname = \"test\"\nurl = \"{url}\"\nkpis = [\"probe\"]\nteams = [\"east\"]\n"),
    )
    .unwrap();
    let server = Server::start_in(dir, Options::default());
    server.wait_for("a delivered missed alert", Duration::from_secs(15), || {
        bodies.lock().unwrap().iter().any(|b| b["kind"] == "missed")
    });
    let delivered = bodies.lock().unwrap().clone();
    for b in &delivered {
        assert_eq!(
            (b["kpi"].as_str(), b["team"].as_str(), b["state"].as_str()),
            (Some("probe"), Some("east"), Some("firing")),
            "{b}"
        );
        assert_eq!(b["value"], 0.0);
        assert_eq!(b["target"], 1.0);
    }
    let listed = server.json("/api/alerts?state=firing");
    let ours: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kpi"] == "probe" && a["team"] == "east")
        .collect();
    assert!(ours.iter().any(|a| a["kind"] == "missed"), "{listed}");
    server.wait_for("delivery status", Duration::from_secs(5), || {
        let listed = server.json("/api/alerts?state=firing");
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kpi"] == "probe" && a["team"] == "east")
            .all(|a| a["delivery"] == "delivered")
    });
    // A reload that changes no condition sends nothing more.
    server.admin("POST", "/api/reload", "").expect(200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bodies.lock().unwrap().len(), delivered.len());
    server.get("/api/alerts?state=bogus").expect(400);
}
