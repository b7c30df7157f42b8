//! Alert conditions and state: what fires, resolves and fires again as time
//! passes (driven with as-of), and what a reload or a restart does (nothing).

use crate::util::alerts as alerts_common;

use alerts_common::{Root, TARGETS, alerts_toml, t};
use kpi_engine::alerts::{self, AlertState, Kind, outbox};

const NO_WEBHOOK: &str = "at_risk_after = 0.25\n";

fn ids(ts: &[alerts::Transition]) -> Vec<String> {
    ts.iter()
        .map(|t| format!("{} {}", t.payload.id, t.payload.state.as_str()))
        .collect()
}

#[test]
fn at_risk_fires_once_then_the_closing_period_resolves_it_and_fires_missed() {
    let root = Root::new(TARGETS, NO_WEBHOOK);
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);

    // Early in Q3 nothing is judged yet (less than at_risk_after has passed).
    let early =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-07-15T00:00:00Z")).unwrap();
    assert!(early.is_empty(), "{:?}", ids(&early));

    // Half way: north's 200 projects to ~409 < 1000; south (2000) and hq (2200) are on pace.
    let as_of = t("2026-08-15T00:00:00Z");
    let fired = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), as_of).unwrap();
    assert_eq!(ids(&fired), ["at_risk:revenue:north:2026-Q3 firing"]);
    let p = &fired[0].payload;
    assert_eq!(p.kind, Kind::AtRisk);
    assert_eq!((p.value, p.target), (Some(200.0), Some(1000.0)));
    let elapsed = (as_of - t("2026-07-01T00:00:00Z")) as f64
        / (t("2026-10-01T00:00:00Z") - t("2026-07-01T00:00:00Z")) as f64;
    assert_eq!(p.projected, Some(200.0 / elapsed));
    assert_eq!(p.fired_at, "2026-08-15T00:00:00Z");
    assert_eq!(fired[0].notifications, 0, "no webhook configured");

    // The same condition again, later the same day: nothing changes.
    let again = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), as_of + 3_600_000).unwrap();
    assert!(again.is_empty(), "{:?}", ids(&again));

    // Q3 closes: at_risk is resolved (with the final value), missed fires.
    let closed = t("2026-10-01T00:00:05Z");
    let ts = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), closed).unwrap();
    assert_eq!(
        ids(&ts),
        [
            "at_risk:revenue:north:2026-Q3 resolved",
            "missed:revenue:north:2026-Q3 firing"
        ]
    );
    let resolved = &ts[0].payload;
    assert_eq!(
        resolved.resolved_at.as_deref(),
        Some("2026-10-01T00:00:05Z")
    );
    assert_eq!(
        resolved.fired_at, "2026-08-15T00:00:00Z",
        "fired_at is kept"
    );
    assert_eq!(
        resolved.projected, None,
        "a closed period has no projection"
    );
    let missed = &ts[1].payload;
    assert_eq!((missed.value, missed.target), (Some(200.0), Some(1000.0)));
    assert_eq!(missed.fired_at, "2026-10-01T00:00:05Z");
    assert_eq!(missed.resolved_at, None);

    let firing = alerts::list(&conn, Some("firing")).unwrap();
    assert_eq!(
        firing
            .iter()
            .map(|a| a.alert.id.as_str())
            .collect::<Vec<_>>(),
        ["missed:revenue:north:2026-Q3"]
    );
    let resolved = alerts::list(&conn, Some("resolved")).unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].alert.state, AlertState::Resolved);
    assert_eq!(resolved[0].delivery, "none");
    assert_eq!(alerts::list(&conn, None).unwrap().len(), 2);
    assert!(matches!(
        alerts::list(&conn, Some("open")),
        Err(alerts::AlertError::BadState(_))
    ));

    // A quarter later Q3 is no longer watched: its missed alert is left as it is.
    let later =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2027-01-15T00:00:00Z")).unwrap();
    assert!(later.is_empty(), "{:?}", ids(&later));
    assert_eq!(alerts::list(&conn, Some("firing")).unwrap().len(), 1);
}

#[test]
fn a_resolved_alert_fires_again_with_a_new_fired_at() {
    let root = Root::new(TARGETS, NO_WEBHOOK);
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-15T00:00:00Z")).unwrap();
    assert_eq!(ids(&ts), ["at_risk:revenue:north:2026-Q3 firing"]);

    // North wins 700 more: 900 by Aug 20 projects to ~1656, back on pace.
    root.deal(&cfg, "d3", "north", 700.0, "2026-08-16T00:00:00Z");
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-20T00:00:00Z")).unwrap();
    assert_eq!(ids(&ts), ["at_risk:revenue:north:2026-Q3 resolved"]);
    assert_eq!(ts[0].payload.value, Some(900.0));

    // Nothing more is won: by Sep 25 900 projects to ~963 < 1000, at risk again.
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-09-25T00:00:00Z")).unwrap();
    assert_eq!(ids(&ts), ["at_risk:revenue:north:2026-Q3 firing"]);
    assert_eq!(ts[0].payload.fired_at, "2026-09-25T00:00:00Z");
    assert_eq!(ts[0].payload.resolved_at, None);
    assert_eq!(
        alerts::list(&conn, None).unwrap().len(),
        1,
        "one alert, one row"
    );
}

#[test]
fn a_reload_or_a_restart_repeats_nothing() {
    let hook = "http://127.0.0.1:9/never-called";
    let root = Root::new(TARGETS, &alerts_toml(hook, ""));
    let cfg = root.load();
    root.seed(&cfg);
    let as_of = t("2026-08-15T00:00:00Z");
    {
        let mut conn = root.open(&cfg);
        let ts = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), as_of).unwrap();
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].notifications, 1);
    }
    // A reload: a new snapshot with the same conditions (and another webhook added).
    root.write(
        "kpis/alerts.toml",
        &format!(
            "{}\n[[webhook]]\nname = \"second\"\nurl = \"{hook}/2\"\n",
            alerts_toml(hook, "evaluate_every = \"1m\"")
        ),
    );
    let reloaded = root.load();
    assert_eq!(reloaded.alerts.webhooks.len(), 2);
    // A restart: a new connection and store; the state is only in the database.
    let mut conn = root.open(&reloaded);
    for when in [as_of, as_of + 60_000, t("2026-08-20T00:00:00Z")] {
        let ts = alerts::evaluate(&reloaded, &mut conn, root.store(&reloaded), when).unwrap();
        assert!(ts.is_empty(), "{:?}", ids(&ts));
    }
    assert_eq!(outbox::all(&conn).unwrap().len(), 1, "nothing new queued");
}

#[test]
fn notifications_go_only_to_matching_webhooks() {
    let alerts_toml = "\
[[webhook]]
name = \"everything\"
url = \"http://127.0.0.1:9/a\"

[[webhook]]
name = \"win-rate-only\"
url = \"http://127.0.0.1:9/b\"
kpis = [\"win_rate\"]

[[webhook]]
name = \"north-revenue\"
url = \"http://127.0.0.1:9/c\"
kpis = [\"revenue\", \"win_rate\"]
teams = [\"north\"]

[[webhook]]
name = \"south\"
url = \"http://127.0.0.1:9/d\"
teams = [\"south\"]
";
    let root = Root::new(TARGETS, alerts_toml);
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-15T00:00:00Z")).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].notifications, 2);
    let queued: Vec<String> = outbox::all(&conn)
        .unwrap()
        .into_iter()
        .map(|n| format!("{} {} {}", n.webhook, n.url, n.status.as_str()))
        .collect();
    assert_eq!(
        queued,
        [
            "everything http://127.0.0.1:9/a pending",
            "north-revenue http://127.0.0.1:9/c pending"
        ]
    );
    let view = &alerts::list(&conn, Some("firing")).unwrap()[0];
    assert_eq!(view.delivery, "pending");
    assert_eq!(view.notifications.len(), 2);
}

#[test]
fn a_kpi_that_loses_its_target_resolves_its_alert() {
    let root = Root::new(TARGETS, NO_WEBHOOK);
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);
    let as_of = t("2026-08-15T00:00:00Z");
    assert_eq!(
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), as_of)
            .unwrap()
            .len(),
        1
    );
    root.write("kpis/targets.toml", "[deals_won]\n\"2025-Q1\" = 1\n");
    let cfg = root.load();
    let ts = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), as_of + 1000).unwrap();
    assert_eq!(ids(&ts), ["at_risk:revenue:north:2026-Q3 resolved"]);
    assert_eq!(ts[0].payload.target, Some(1000.0), "the last numbers known");
}
