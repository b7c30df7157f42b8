//! Webhook delivery against a real receiver on 127.0.0.1: the exact payload,
//! retries with backoff after 500s, a receiver that never answers, and a
//! crash between the state change and the POST.

use crate::util::alerts as alerts_common;

use std::time::{Duration, Instant};

use alerts_common::{Answer, Receiver, Root, TARGETS, alerts_toml, t, wall_clock};
use kpi_engine::alerts::outbox::DeliveryStatus;
use kpi_engine::alerts::{self, DeliveryOptions, outbox};
use serde_json::json;

const HOUR: i64 = 3_600_000;

/// A root whose only webhook is `receiver`, seeded, evaluated at mid-Q3 (one at_risk alert).
fn fired(receiver: &Receiver, extra: &str) -> (Root, rusqlite::Connection) {
    let root = Root::new(TARGETS, &alerts_toml(&receiver.url, extra));
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-15T00:00:00Z")).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].notifications, 1);
    (root, conn)
}

fn only(conn: &rusqlite::Connection) -> outbox::Notification {
    let all = outbox::all(conn).unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

#[test]
fn delivers_the_exact_payload_once() {
    let rx = Receiver::start(&[]);
    let (root, mut conn) = fired(&rx, "");
    let report = alerts::deliver_due(&conn, wall_clock(), &DeliveryOptions::new(8)).unwrap();
    assert_eq!(
        (report.attempts, report.delivered, report.pending),
        (1, 1, 0)
    );

    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let elapsed = (t("2026-08-15T00:00:00Z") - t("2026-07-01T00:00:00Z")) as f64
        / (t("2026-10-01T00:00:00Z") - t("2026-07-01T00:00:00Z")) as f64;
    assert_eq!(
        got[0].json(),
        json!({
            "id": "at_risk:revenue:north:2026-Q3",
            "kind": "at_risk",
            "state": "firing",
            "kpi": "revenue",
            "kpi_name": "Revenue",
            "team": "north",
            "period": "2026-Q3",
            "value": 200.0,
            "target": 1000.0,
            "projected": 200.0 / elapsed,
            "direction": "higher",
            "fired_at": "2026-08-15T00:00:00Z",
            "resolved_at": null
        })
    );
    // The keys come in SPEC order.
    assert!(
        got[0]
            .body
            .starts_with("{\"id\":\"at_risk:revenue:north:2026-Q3\",\"kind\":")
    );

    let n = only(&conn);
    assert_eq!((n.status, n.attempts), (DeliveryStatus::Delivered, 1));
    let view = &alerts::list(&conn, None).unwrap()[0];
    assert_eq!(view.delivery, "delivered");
    assert_eq!(view.notifications[0].status, DeliveryStatus::Delivered);

    // Delivered is final; re-evaluating the same condition queues nothing.
    let later = alerts::deliver_due(&conn, wall_clock() + HOUR, &DeliveryOptions::new(8)).unwrap();
    assert_eq!(later.attempts, 0);
    let cfg = root.load();
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-16T00:00:00Z")).unwrap();
    assert!(ts.is_empty());
    alerts::deliver_due(&conn, wall_clock() + 2 * HOUR, &DeliveryOptions::new(8)).unwrap();
    assert_eq!(rx.received().len(), 1);
}

#[test]
fn retries_after_500s_with_backoff_and_delivers_once() {
    let rx = Receiver::start(&[Answer::Status(500), Answer::Status(500)]);
    let (_root, conn) = fired(&rx, "max_attempts = 5");
    let opts = DeliveryOptions::new(5);
    let now = wall_clock();

    let r1 = alerts::deliver_due(&conn, now, &opts).unwrap();
    assert_eq!((r1.attempts, r1.retrying, r1.delivered), (1, 1, 0));
    assert!(r1.errors[0].contains("HTTP 500"), "{:?}", r1.errors);
    let n = only(&conn);
    assert_eq!((n.status, n.attempts), (DeliveryStatus::Pending, 1));
    assert!(n.last_error.as_deref().unwrap().starts_with("HTTP 500"));
    let wait1 = n.next_attempt_at - now;
    assert!(
        (1000..6000).contains(&wait1),
        "first backoff ~1 s, got {wait1} ms"
    );

    // Not due yet: nothing is sent.
    assert_eq!(alerts::deliver_due(&conn, now, &opts).unwrap().attempts, 0);

    let now2 = now + HOUR;
    let r2 = alerts::deliver_due(&conn, now2, &opts).unwrap();
    assert_eq!((r2.attempts, r2.retrying), (1, 1));
    let wait2 = only(&conn).next_attempt_at - now2;
    assert!(
        (2000..7000).contains(&wait2),
        "second backoff ~2 s, got {wait2} ms"
    );

    let r3 = alerts::deliver_due(&conn, now + 2 * HOUR, &opts).unwrap();
    assert_eq!((r3.attempts, r3.delivered), (1, 1));
    let n = only(&conn);
    assert_eq!((n.status, n.attempts), (DeliveryStatus::Delivered, 3));

    assert_eq!(
        alerts::deliver_due(&conn, now + 3 * HOUR, &opts)
            .unwrap()
            .attempts,
        0
    );
    let got = rx.received();
    assert_eq!(got.len(), 3, "two failures, one success, nothing after");
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "every try sends the same payload"
    );
    assert!(
        got.iter()
            .all(|r| r.header("x-kpi-notification") == Some("1"))
    );
}

#[test]
fn retries_within_one_call_while_the_wait_is_short() {
    let rx = Receiver::start(&[Answer::Status(503), Answer::Status(500)]);
    let (_root, conn) = fired(&rx, "");
    let opts = DeliveryOptions {
        backoff: Duration::from_millis(20),
        ..DeliveryOptions::new(8)
    };
    let report = alerts::deliver_within(&conn, &opts, Duration::from_secs(10)).unwrap();
    assert_eq!(
        (report.attempts, report.delivered, report.pending),
        (3, 1, 0)
    );
    assert_eq!(rx.received().len(), 3);

    // A long backoff is not waited for: the notification is left pending.
    let rx = Receiver::start(&[Answer::Status(500)]);
    let (_root, conn) = fired(&rx, "");
    let started = Instant::now();
    let report =
        alerts::deliver_within(&conn, &DeliveryOptions::new(8), Duration::from_millis(200))
            .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!((report.attempts, report.pending), (1, 1));
    assert_eq!(only(&conn).status, DeliveryStatus::Pending);
}

#[test]
fn a_receiver_that_never_answers_times_out_and_fails_after_max_attempts() {
    let rx = Receiver::start(&[Answer::Hang, Answer::Hang, Answer::Hang]);
    let (_root, conn) = fired(&rx, "max_attempts = 3");
    let cfg_attempts = 3;
    let opts = DeliveryOptions {
        timeout: Duration::from_millis(300),
        ..DeliveryOptions::new(cfg_attempts)
    };
    let now = wall_clock();
    for i in 0..3 {
        let started = Instant::now();
        let r = alerts::deliver_due(&conn, now + i * HOUR, &opts).unwrap();
        assert_eq!(r.attempts, 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the timeout holds"
        );
        assert!(r.errors[0].contains("timeout"), "{:?}", r.errors);
        if i < 2 {
            assert_eq!(r.retrying, 1);
        } else {
            assert_eq!((r.failed, r.pending), (1, 0));
        }
    }
    let n = only(&conn);
    assert_eq!((n.status, n.attempts), (DeliveryStatus::Failed, 3));
    assert!(n.last_error.unwrap().contains("timeout"));
    assert_eq!(
        alerts::deliver_due(&conn, now + 9 * HOUR, &opts)
            .unwrap()
            .attempts,
        0
    );
    assert_eq!(rx.received().len(), 3);
    let view = &alerts::list(&conn, Some("firing")).unwrap()[0];
    assert_eq!(view.delivery, "failed");
    assert_eq!(view.notifications[0].attempts, 3);
}

#[test]
fn a_crash_between_the_state_change_and_the_post_delivers_after_restart_exactly_once() {
    let rx = Receiver::start(&[]);
    let db_path;
    let root;
    {
        // Evaluate, then "crash": everything is dropped before any delivery.
        let (r, conn) = fired(&rx, "");
        db_path = r.db_path();
        root = r;
        drop(conn);
    }
    assert!(rx.received().is_empty());

    // Restart: a new connection finds the notification pending and sends it once.
    let conn = kpi_engine::store::db::open(&db_path).unwrap();
    let pending = alerts::list(&conn, Some("firing")).unwrap();
    assert_eq!(pending[0].delivery, "pending");
    let cfg = root.load();
    let opts = DeliveryOptions::from_settings(&cfg.alerts);
    assert_eq!(
        alerts::deliver_due(&conn, wall_clock(), &opts)
            .unwrap()
            .delivered,
        1
    );
    assert_eq!(
        alerts::deliver_due(&conn, wall_clock() + HOUR, &opts)
            .unwrap()
            .attempts,
        0
    );
    let mut conn = conn;
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-08-15T00:00:00Z")).unwrap();
    assert!(ts.is_empty(), "the restart does not repeat the alert");
    assert_eq!(rx.received().len(), 1);
}

#[test]
fn the_worker_delivers_in_the_background() {
    let rx = Receiver::start(&[Answer::Status(500)]);
    let (root, _conn) = fired(&rx, "");
    let opts = DeliveryOptions {
        backoff: Duration::from_millis(50),
        ..DeliveryOptions::new(8)
    };
    let worker = alerts::Worker::spawn(root.db_path(), opts);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.received().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.stop();
    assert_eq!(rx.received().len(), 2, "one 500, then delivered");
    let conn = kpi_engine::store::db::open(&root.db_path()).unwrap();
    assert_eq!(only(&conn).status, DeliveryStatus::Delivered);
}

#[test]
fn the_scheduler_evaluates_at_start_and_when_poked_and_wakes_delivery() {
    let rx = Receiver::start(&[]);
    // Judged from the start of a period; revenue 0 misses and is at risk everywhere, now.
    let root = Root::new(
        "[revenue]\ndefault = 1000.0\n",
        &alerts_toml(&rx.url, "at_risk_after = 0.0\nevaluate_every = \"1h\""),
    );
    let cfg = root.load();
    root.import(
        &cfg,
        "teams",
        "{\"id\":\"north\",\"name\":\"North\"}\n{\"id\":\"south\",\"name\":\"South\"}\n",
    );
    // One open deal of 2000: deals are tracked (an entity with no record at all would give no
    // data, SPEC 15), and revenue now is 0.
    root.import(
        &cfg,
        "deals",
        "{\"id\":\"d0\",\"team\":\"north\",\"stage\":\"lead\",\"amount\":1,\"created_at\":\"2000-01-03\"}\n",
    );
    let (c, store) = (cfg.clone(), root.store(&cfg));
    let scheduler = alerts::Scheduler::spawn(root.db_path(), move || (c.clone(), store.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.received().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    scheduler.poke();
    std::thread::sleep(Duration::from_millis(500));
    scheduler.stop();
    let mut ids: Vec<String> = rx
        .bodies()
        .iter()
        .map(|b| format!("{} {} {}", b["kind"], b["team"], b["state"]))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "\"at_risk\" \"north\" \"firing\"",
            "\"at_risk\" \"south\" \"firing\"",
            "\"missed\" \"north\" \"firing\"",
            "\"missed\" \"south\" \"firing\""
        ],
        "one notification per alert, none repeated by the poke"
    );
}
