//! The dashboard end to end: the page over plain HTTP, and in headless
//! Chromium when /usr/bin/chromium exists (the browser part is skipped, and
//! says so, when it does not).

use crate::util::server as server_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use server_common::Server;

/// Team ids of a scorecard in rank order, from the API.
fn ranked(s: &Server, card: &str, period: &str) -> Vec<String> {
    let r = s.json(&format!("/api/scorecards/{card}?period={period}"));
    r["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts the ranking table lists `ids` in this order.
fn assert_ranked(html: &str, ids: &[String]) {
    let start = html
        .find("<table class=\"ranking\">")
        .expect("the ranking table");
    let end = start + html[start..].find("</table>").unwrap();
    let table = &html[start..end];
    let mut at = 0;
    for id in ids {
        let needle = format!("<div class=\"id\">{id}</div>");
        let found = table[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{id} missing or out of order in the ranking"));
        at += found + needle.len();
    }
}

#[test]
fn the_dashboard_ranks_the_teams() {
    let s = Server::start();
    let period = s.json("/api/scorecards/sales")["period"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = ranked(&s, "sales", &period);
    assert!(ids.len() >= 6);

    // Plain HTTP: the server renders the page.
    let page = s.get("/");
    page.expect(200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = &page.text;
    assert_ranked(html, &ids);
    for part in [
        "Sales team quarterly assessment",
        "name=\"scorecard\"",
        "name=\"period\"",
        "<svg class=\"spark\"",
        "id=\"alerts\"",
        "Open alerts",
        "class=\"cell ",
    ] {
        assert!(html.contains(part), "the page has {part}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );

    // Chinese labels.
    let zh = s.get("/?scorecard=sales&lang=zh").text;
    assert!(zh.contains("销售团队季度考核"));
    assert!(zh.contains("营收"), "KPI labels in Chinese");
    assert!(zh.contains("团队排名"));

    // Other scorecards and periods; bad input is refused with JSON.
    let service = s.get("/?scorecard=service&period=2026-Q1");
    service.expect(200);
    assert!(service.text.contains("<option value=\"2026-Q1\" selected>"));
    assert_ranked(&service.text, &ranked(&s, "service", "2026-Q1"));
    s.get("/?scorecard=nope").expect(404);
    s.get("/?period=2026-Q7").expect(400);

    // In a real browser, when there is one.
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("note: /usr/bin/chromium not found; the browser part of this test was skipped");
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("{}/", s.base))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table class=\"ranking\">"),
        "chromium rendered the page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ranked(&dom, &ids);
    eprintln!("chromium: the ranked teams are in the DOM");
}

#[test]
fn the_dashboard_shows_config_errors() {
    let s = Server::start();
    let path = s.path("kpis/scorecards.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[scorecard.broken\n")).unwrap();
    s.wait_for("degraded", Duration::from_secs(5), || {
        s.health()["status"] == "degraded"
    });
    let html = s.get("/").text;
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("kpis/scorecards.toml:"));
    assert!(html.contains("data-status=\"degraded\""));
    assert!(html.contains("Still serving configuration version 1"));
    let zh = s.get("/?lang=zh").text;
    assert!(zh.contains("磁盘上的配置有错误"));
}
