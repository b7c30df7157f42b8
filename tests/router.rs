//! The HTTP routes through `server::app` with `oneshot`: no socket, no
//! process; for what does not need the real server (status codes, error
//! shapes, auth, the JSON of reads). Reload, signals and webhooks are tested
//! against the real `kpi serve` in the server modules.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use kpi_engine::server::{AppState, ServeOptions, Tokens, app};

pub(crate) const ADMIN: &str = "router-admin";

/// An app over a fresh copy of the library with the demo data, an admin token and no read token.
pub(crate) fn state() -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    crate::util::library(dir.path());
    let opts = ServeOptions {
        root: dir.path().to_path_buf(),
        db: dir.path().join("crm.db"),
        addr: "127.0.0.1:0".into(),
        demo: true,
        limits: Default::default(),
    };
    let tokens = Tokens::new(Some(ADMIN), None);
    let state = AppState::open(&opts, tokens).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, Arc::new(state))
}

/// One request: its status and its body as JSON (Null when it is not JSON).
pub(crate) async fn call(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Value) {
    let res = app(state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

pub(crate) fn put(path: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::put(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

/// Every error leaves as `{"error": "...", "details": [...]}`.
fn is_error_shape(v: &Value) -> bool {
    v["error"].is_string() && v["details"].is_array()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_with_their_json_shapes() {
    let (_dir, state) = state();
    let (status, health) = call(&state, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok", "{health}");
    let (status, card) = call(&state, get("/api/scorecards/sales?period=2026-Q1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(card["subjects"], "teams");
    assert!(
        card["teams"].as_array().is_some_and(|t| !t.is_empty()),
        "{card}"
    );
    let (status, reps) = call(&state, get("/api/scorecards/sales_reps?period=2026-Q1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reps["subjects"], "owners");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_error_shape_and_their_status() {
    let (_dir, state) = state();
    let cases = [
        ("/no/such/route", StatusCode::NOT_FOUND),
        ("/api/scorecards/salez", StatusCode::NOT_FOUND),
        (
            "/api/scorecards/sales?period=2026-Q5",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/values?kpi=revenue", StatusCode::BAD_REQUEST),
        (
            "/api/values?kpi=revenue&team=nowhere",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/values?kpi=revenue&owner=nobody",
            StatusCode::NOT_FOUND,
        ),
        ("/api/alerts?state=open", StatusCode::BAD_REQUEST),
    ];
    for (path, want) in cases {
        let (status, body) = call(&state, get(path)).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(is_error_shape(&body), "{path}: {body}");
    }
    let (status, body) = call(&state, put("/health", None, "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(is_error_shape(&body), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_admin_token_and_a_bad_body_changes_nothing() {
    let (dir, state) = state();
    let body = r#"{"key": "default", "target": 0.4}"#;
    let (status, _) = call(&state, put("/api/targets/win_rate", None, body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, put("/api/targets/win_rate", Some("wrong"), body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let before = std::fs::read_to_string(dir.path().join("kpis/targets.toml")).unwrap();
    let (status, reply) = call(
        &state,
        put("/api/targets/win_rate", Some(ADMIN), "{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, reply) = call(
        &state,
        put(
            "/api/scorecards/sales/weights/Q4",
            Some(ADMIN),
            r#"{"revenue": 1e308}"#,
        ),
    )
    .await;
    assert!(status.is_client_error(), "{status} {reply}");
    let after = std::fs::read_to_string(dir.path().join("kpis/targets.toml")).unwrap();
    assert_eq!(before, after, "a refused write changes no file");
    let (status, reply) = call(&state, put("/api/targets/win_rate", Some(ADMIN), body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["changed"], true, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_put_naming_only_target_keeps_threshold_and_stretch() {
    let (dir, state) = state();
    let targets = || std::fs::read_to_string(dir.path().join("kpis/targets.toml")).unwrap();
    assert!(
        targets().contains("\"2026-Q4\" = { target = 0.35, threshold = 0.20, stretch = 0.45 }")
    );
    let only = r#"{"key": "2026-Q4", "target": 0.36}"#;
    let (status, reply) = call(&state, put("/api/targets/win_rate", Some(ADMIN), only)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(
        targets().contains("\"2026-Q4\" = { target = 0.36, threshold = 0.2, stretch = 0.45 }"),
        "{}",
        targets()
    );
    let drop = r#"{"key": "2026-Q4", "target": 0.36, "threshold": null}"#;
    let (status, reply) = call(&state, put("/api/targets/win_rate", Some(ADMIN), drop)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(
        targets().contains("\"2026-Q4\" = { target = 0.36, stretch = 0.45 }"),
        "{}",
        targets()
    );
}
