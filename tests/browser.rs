//! The dashboard in a real browser: `tests/browser/flow.js` (playwright-core driving Debian's
//! /usr/bin/chromium, installed with `npm ci` in tests/browser by .ci/run) against the real
//! `kpi serve`. It clicks from the ranking into a team, into a KPI and back, edits a target
//! with the live preview, sees a refused edit's error beside its field, saves and sees the
//! new target, checks that no page scrolls sideways at 360 px, and saves screenshots at 360
//! and 1440 px under target/browser/. Without Chromium or the npm package it fails, naming
//! what to install: like the PostgreSQL tests, it never skips.

use std::path::Path;
use std::process::Command;

use crate::util::repo;
use crate::util::server::{ADMIN, Server};

#[test]
fn the_dashboard_in_chromium_drill_down_edit_and_phones() {
    let chromium = Path::new("/usr/bin/chromium");
    let dir = repo().join("tests/browser");
    assert!(
        chromium.exists() && dir.join("node_modules/playwright-core").exists(),
        "/usr/bin/chromium or tests/browser/node_modules is missing: install Debian's chromium \
         and run `npm ci` in tests/browser (.ci/run does both)"
    );
    let s = Server::start();
    let out = repo().join("target/browser");
    let run = Command::new("node")
        .arg("flow.js")
        .current_dir(&dir)
        .env("BASE", &s.base)
        .env("TOKEN", ADMIN)
        .env("OUT", &out)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "the browser flow failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        s.log()
    );
    for shot in [
        "home-1440",
        "team-1440",
        "kpi-1440",
        "edit-1440",
        "home-360",
        "team-360",
    ] {
        let f = out.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&f).is_ok_and(|m| m.len() > 1000),
            "screenshot {}",
            f.display()
        );
    }
    // What the browser saved is on disk.
    assert!(s.read("kpis/targets.toml").contains("0.8"));
}
