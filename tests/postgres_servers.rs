//! Two real `kpi serve` processes on one throwaway PostgreSQL database, each
//! with a root of its own, as two hosts behind one load balancer (SPEC 20):
//! exactly one runs the alert scheduler (it holds the lease), a robot hears
//! each transition exactly once, the other takes over when the holder is
//! killed with SIGKILL, and an ingest or a configuration edit through one is
//! served by the other.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::util::alerts::Receiver;
use crate::util::pg;
use crate::util::server::{ADMIN, Options, Server, root_with_missing_probe};

/// Long enough for a takeover on a loaded machine; each wait ends as soon as it holds.
const PATIENCE: Duration = Duration::from_secs(60);

/// A root of the library with a KPI that is always 0 against a target of 1 (it misses in
/// every closed period), and alerts evaluated every second to `hook`, for that KPI and one team.
fn deployment(hook: &str) -> tempfile::TempDir {
    let dir = root_with_missing_probe();
    std::fs::write(
        dir.path().join("kpis/alerts.toml"),
        format!(
            "evaluate_every = \"1s\"\n[[webhook]]\nname = \"probe\"\nurl = \"{hook}\"\nkpis = [\"probe\"]\nteams = [\"east\"]\n"
        ),
    )
    .unwrap();
    dir
}

fn start(dir: tempfile::TempDir, db: &str) -> Server {
    Server::start_in(
        dir,
        Options {
            demo: false,
            env: vec![
                ("KPI_ADMIN_TOKEN", ADMIN.to_string()),
                ("KPI_DB", db.to_string()),
            ],
        },
    )
}

/// `kpi_alert_scheduler_leader` of a server's /metrics.
fn leader(s: &Server) -> Option<f64> {
    let text = s.get("/metrics").text;
    text.lines()
        .find_map(|l| l.strip_prefix("kpi_alert_scheduler_leader "))
        .and_then(|v| v.trim().parse().ok())
}

/// How many notifications the robot took per (alert, state).
fn told(hook: &Receiver) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for b in hook.bodies() {
        let key = (
            b["id"].as_str().unwrap_or_default().to_string(),
            b["state"].as_str().unwrap_or_default().to_string(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn two_servers_share_one_database_one_scheduler_and_every_change() {
    let db = pg::database();
    let hook = Receiver::start(&[]);
    let a_root = deployment(&hook.url);
    let demo = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(a_root.path())
        .args(["--db", &db, "demo", "--scale", "4"])
        .env_remove("KPI_DB")
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let a = start(a_root, &db);
    let b = start(deployment(&hook.url), &db);
    let servers = [&a, &b];

    // Exactly one runs the scheduler; the other knows it does not.
    a.wait_for("one scheduler of two", PATIENCE, || {
        let mut l: Vec<Option<f64>> = servers.iter().map(|s| leader(s)).collect();
        l.sort_by(|x, y| x.partial_cmp(y).unwrap());
        l == [Some(0.0), Some(1.0)]
    });
    let (holder, other) = if leader(&a) == Some(1.0) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        holder
            .log()
            .contains("this server runs the alert scheduler"),
        "{}",
        holder.log()
    );
    assert!(
        other
            .log()
            .contains("another server runs the alert scheduler"),
        "{}",
        other.log()
    );

    // The holder fires the probe's missed alert, heard once.
    let fired = "firing".to_string();
    holder.wait_for("the missed alert delivered", PATIENCE, || {
        told(&hook)
            .keys()
            .any(|(id, s)| id.starts_with("missed:probe:east:") && *s == fired)
    });

    // An ingest through one is served by the other.
    let now = holder.json("/api/values?kpi=revenue&team=east");
    let period = now["period"].as_str().expect("the open period").to_string();
    let revenue = |s: &Server| s.value("revenue", "east", &period).as_f64().unwrap_or(0.0);
    let before = revenue(&other);
    let closed_at = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let deal = json!([{
        "id": "two-servers-1", "team": "east", "stage": "won", "amount": 12345.0,
        "created_at": closed_at, "closed_at": closed_at
    }]);
    holder
        .admin("POST", "/api/records/deals", &deal.to_string())
        .expect(200);
    assert_eq!(revenue(&holder), before + 12345.0);
    other.wait_for("the ingest seen by the other server", PATIENCE, || {
        revenue(&other) == before + 12345.0
    });

    // A configuration edit through one is applied by the other, its files written there too.
    let edit = holder.admin(
        "PUT",
        "/api/scorecards/sales/weights/default",
        &json!({"revenue": 50, "win_rate": 50}).to_string(),
    );
    edit.expect(200);
    let version = edit.json["config_version"].as_u64().unwrap();
    other.wait_for("the edit served by the other server", PATIENCE, || {
        other.health()["config_version"].as_u64() == Some(version)
    });
    assert_eq!(
        other.read("kpis/scorecards.toml"),
        holder.read("kpis/scorecards.toml")
    );
    let history = other.json("/api/config/history");
    let versions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        versions.iter().filter(|v| **v == version).count(),
        1,
        "adopting a version records no new one: {versions:?}"
    );

    // SIGKILL the holder: the other takes the scheduler over.
    let _ = holder.stop();
    other.wait_for("the takeover", PATIENCE, || leader(&other) == Some(1.0));
    assert!(other.log().contains("this server runs the alert scheduler"));
    // A transition after the takeover is told by the new holder: the probe meets its target.
    other
        .admin(
            "PUT",
            "/api/kpis/probe",
            "name = \"Probe\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"2.0\"\n",
        )
        .expect(200);
    let resolved = "resolved".to_string();
    other.wait_for("the resolution delivered", PATIENCE, || {
        told(&hook)
            .keys()
            .any(|(id, s)| id.starts_with("missed:probe:east:") && *s == resolved)
    });
    let counts = told(&hook);
    assert!(
        counts.values().all(|n| *n == 1),
        "each transition told once: {counts:?}"
    );
}
