//! SPEC 21: `GET /api/openapi.json` describes every route of the API.
//!
//! Completeness both ways: every route of [`EXPECTED`] (SPEC 12 and 14–21)
//! is in the document, and every operation of the document is served (a
//! request to it reaches a handler, not the fallback). The router cannot
//! serve an API route the document lacks, because `server::api_routes`
//! registers routes and operations together; `tidy`-style, no API path is
//! routed on the plain router. Whether responses validate against the
//! document is schemathesis' job (`.ci/schemathesis`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use kpi_engine::server::{AppState, ServeOptions, Tokens, app, openapi};

/// Every route of SPEC 12 and 14–21 that the API has, as (method, path
/// template). A new route gets a line here; the test fails until the route
/// is registered in `server::api_routes` with its `#[utoipa::path]`.
const EXPECTED: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/api/kpis"),
    ("get", "/api/kpis/{id}"),
    ("put", "/api/kpis/{id}"),
    ("get", "/api/scorecards"),
    ("get", "/api/scorecards/{id}"),
    ("put", "/api/scorecards/{id}/weights/{key}"),
    ("put", "/api/targets/{kpi}"),
    ("post", "/api/preview"),
    ("get", "/api/values"),
    ("get", "/api/alerts"),
    ("post", "/api/records/{entity}"),
    ("post", "/api/reload"),
    ("get", "/api/config/history"),
    ("get", "/api/silences"),
    ("post", "/api/silences"),
    ("delete", "/api/silences/{id}"),
    ("get", "/api/periods"),
    ("post", "/api/periods/{id}/close"),
    ("post", "/api/periods/{id}/reopen"),
    ("get", "/api/periods/{id}/restatement"),
    ("get", "/api/config/history/{version}"),
    ("get", "/api/config/diff"),
    ("post", "/api/config/rollback/{version}"),
];

fn document() -> Value {
    serde_json::from_str(openapi::document_json()).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_of_the_spec_is_in_the_document() {
    let doc = document();
    let ops = operations(&doc);
    let missing: Vec<_> = EXPECTED
        .iter()
        .filter(|(m, p)| !ops.iter().any(|(om, op)| om == m && op == p))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from GET /api/openapi.json (register them with routes!() in \
         server::api_routes and give the handler a #[utoipa::path]): {missing:?}"
    );
    let unlisted: Vec<_> = ops
        .iter()
        .filter(|(m, p)| !EXPECTED.iter().any(|(em, ep)| em == m && ep == p))
        .collect();
    assert!(
        unlisted.is_empty(),
        "operations in the document that EXPECTED in tests/openapi.rs does not list: {unlisted:?}"
    );
}

#[test]
fn every_operation_says_its_parameters_auth_responses_and_error_shape() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let what = format!("{method} {path}");
        // Path templates name parameters the operation declares.
        for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            assert!(declared, "{what}: path parameter {name} is not declared");
        }
        let ok = &op["responses"]["200"];
        assert!(
            ok["content"].is_object(),
            "{what}: no 200 body schema: {ok}"
        );
        for status in ["400", "401", "404", "413", "422"] {
            let r = &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(r, "#/components/schemas/ErrorBody", "{what}: {status}");
        }
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no security"));
        let bearer = security.iter().any(|s| s.get("bearer").is_some());
        let open = security
            .iter()
            .any(|s| s.as_object().is_some_and(|o| o.is_empty()));
        assert!(bearer, "{what}: no bearer auth");
        // POST /api/preview computes and writes nothing: a read.
        if method == "get" || path == "/api/preview" {
            assert!(open, "{what}: reads are open unless KPI_READ_TOKEN is set");
            assert!(op["responses"]["403"].is_null(), "{what}");
        } else {
            assert!(!open, "{what}: writes need the admin token");
            assert!(op["responses"]["403"].is_object(), "{what}");
        }
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["properties"]["details"]["type"], "array", "{error}");
}

/// A request to every operation of the document reaches a handler: not the
/// fallback's "no route", not 405. Path parameters are filled with ids that
/// do not exist, so handlers answer 404 with their own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_the_document_is_served() {
    let dir = tempfile::tempdir().unwrap();
    crate::util::library(dir.path());
    let opts = ServeOptions {
        root: dir.path().to_path_buf(),
        db: dir.path().join("crm.db"),
        addr: "127.0.0.1:0".into(),
        demo: false,
        limits: Default::default(),
    };
    let tokens = Tokens::new(Some("t"), None);
    let state = Arc::new(AppState::open(&opts, tokens).unwrap());
    for (method, path) in operations(&document()) {
        let uri = path.replace('{', "zz-").replace('}', "");
        let req = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header("authorization", "Bearer t")
            .body(Body::from("{}"))
            .unwrap();
        let res = app(state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {text}"
        );
        assert!(
            !text.contains("no route"),
            "{method} {uri} is documented but not served: {text}"
        );
    }
}

#[test]
fn api_routes_are_registered_only_through_the_document() {
    // A `.route("/api/…")` on a plain axum Router would serve a route the
    // document does not describe.
    let dir = crate::util::repo().join("src/server");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (at, _) in text.match_indices(".route(") {
            let head: String = text[at + 7..].chars().take(80).collect();
            let first = head.trim_start().split(',').next().unwrap_or("");
            if ["\"/api", "\"/health\"", "\"/metrics\""]
                .iter()
                .any(|p| first.starts_with(p))
            {
                let line = text[..at].lines().count();
                offenders.push(format!("{}:{line}: .route({first}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "API routes must be registered with .routes(routes!(handler)) in server::api_routes \
         (so GET /api/openapi.json describes them):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_document_is_served_under_the_read_token_rule() {
    let mut opts = crate::util::server::Options {
        demo: false,
        ..Default::default()
    };
    opts.env.push(("KPI_READ_TOKEN", "reader".to_string()));
    let s = crate::util::server::Server::start_with(opts);
    s.get("/api/openapi.json").expect(401);
    let r = s.request("GET", "/api/openapi.json", Some("reader"), &[], None);
    r.expect(200);
    assert_eq!(r.json["openapi"], "3.1.0");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json, document());
}
