//! `GET /api/openapi.json` (SPEC 21): the OpenAPI 3.1 document of the API.
//!
//! The document is not written by hand. Each handler carries a
//! `#[utoipa::path]` annotation (method, path, parameters, body, responses)
//! and [`super::api_routes`] registers handlers with utoipa-axum's
//! `routes!`, which adds the route to the router and its operation to the
//! document in the same step: a route cannot be served without being
//! described. Bodies and responses are the code's own types (`ToSchema`);
//! the few replies still built with `json!` are described by the shapes
//! below. This module adds what every operation shares: the bearer scheme,
//! the read-token rule and the error responses ([`ErrorBody`]).

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::auth::ReadAccess;
use super::error::ErrorBody;
use super::state::AppState;

/// The parts of the document no route owns.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kpi-engine",
        description = "The admin HTTP API of `kpi serve` (SPEC 12, 14–21). Reads are open unless \
            the server has KPI_READ_TOKEN; then they need `Authorization: Bearer` with the read \
            or the admin token. Writes need `Authorization: Bearer $KPI_ADMIN_TOKEN` and are \
            refused (403) when the server has none. Every error is `{\"error\", \"details\"}`."
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The security scheme's name in the document.
pub const BEARER: &str = "bearer";

/// Adds the bearer scheme and the error responses every operation can give.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "KPI_ADMIN_TOKEN for writes; KPI_READ_TOKEN (or the admin token) for \
                         reads when the server has a read token",
                    ))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                // A read may go without a token (an empty requirement); a write may not.
                let open = op.security.iter().flatten().any(|r| {
                    serde_json::to_value(r)
                        .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                });
                add_errors(&mut op.responses, !open);
            }
        }
    }
}

/// Every status an operation can answer with besides its own: bad input,
/// credentials, unknown ids, size limits, refusals, a busy or full database.
fn add_errors(responses: &mut utoipa::openapi::Responses, write: bool) {
    let mut errors = vec![
        ("400", "Malformed input: a bad period, parameter or body"),
        ("401", "Missing or wrong token"),
        ("404", "An unknown id or route (the message carries a hint)"),
        ("405", "Method not allowed"),
        ("413", "Body over 10 MiB"),
        ("414", "URI too long"),
        (
            "422",
            "Well-formed input that does not check; details lists every error",
        ),
        ("431", "Request headers too large"),
        ("500", "A bug; the detail is in the server log"),
        (
            "503",
            "The database is locked by another process; try again",
        ),
        (
            "507",
            "The disk of the database is full; nothing was written",
        ),
    ];
    if write {
        errors.push((
            "403",
            "Writes are disabled: the server has no KPI_ADMIN_TOKEN",
        ));
    }
    for (status, description) in errors {
        responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    ErrorBody::name(),
                                ))))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

/// The whole document, as built from the router (once).
pub fn document() -> &'static Document {
    static DOC: LazyLock<Document> = LazyLock::new(|| {
        let mut doc = super::api_routes().split_for_parts().1;
        Shared.modify(&mut doc);
        doc
    });
    &DOC
}

/// The document as JSON text.
pub fn document_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        document()
            .to_pretty_json()
            .expect("the API document serializes")
    });
    &JSON
}

/// `GET /api/openapi.json`
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "meta",
    security((), ("bearer" = [])),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub async fn openapi(State(_): State<Arc<AppState>>, _: ReadAccess) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The shapes of replies built with `json!` in the handlers.
pub mod shapes {
    use super::*;

    /// `GET /health`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Health {
        #[schema(pattern = "^(ok|degraded)$")]
        pub status: String,
        pub config_version: i64,
        pub loaded_at: String,
        /// The errors of the last reload that failed (empty when ok).
        pub errors: Vec<String>,
        pub failed_at: Option<String>,
        pub data_generation: i64,
        pub content_hash: String,
    }

    /// One KPI definition (`GET /api/kpis`, `GET /api/kpis/{id}`).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct KpiDefinition {
        pub id: String,
        pub name: String,
        #[schema(value_type = Object)]
        pub labels: Value,
        pub description: Option<String>,
        pub unit: Option<String>,
        pub direction: String,
        pub cumulative: bool,
        /// The formula text (or the script's).
        pub formula: Option<String>,
        pub script: Option<String>,
        #[schema(value_type = Option<Object>)]
        pub params: Value,
        pub file: String,
        pub line: Option<i64>,
        pub formula_file: Option<String>,
        pub depends_on: Vec<String>,
        /// `GET /api/kpis/{id}` only: `{keys, teams, owners, per_owner}` or null.
        #[schema(value_type = Option<Object>)]
        pub targets: Value,
    }

    /// One scorecard (`GET /api/scorecards`).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct ScorecardDefinition {
        pub id: String,
        pub name: String,
        #[schema(value_type = Object)]
        pub labels: Value,
        #[schema(value_type = Option<Vec<String>>)]
        pub teams: Value,
        pub cap: f64,
        /// Period key → {KPI → weight}.
        #[schema(value_type = Object)]
        pub weights: Value,
        pub kpis: Vec<String>,
    }

    /// A configuration change that was applied (PUT routes, `POST /api/reload`).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Applied {
        #[schema(pattern = "^ok$")]
        pub status: String,
        /// The file written (PUT routes).
        pub file: Option<String>,
        pub config_version: i64,
        pub changed: bool,
        pub files_changed: Vec<String>,
    }

    /// One entity's count in an ingest.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Written {
        pub entity: String,
        pub written: i64,
        pub duplicates: i64,
    }

    /// `POST /api/records/{entity}`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Ingested {
        #[schema(pattern = "^ok$")]
        pub status: String,
        pub entity: String,
        pub written: i64,
        /// Rows that repeated an id (the last of each was kept).
        pub duplicates: i64,
        pub data_generation: i64,
        /// With a mapping that writes more than one entity: each of them.
        pub entities: Option<Vec<Written>>,
    }

    /// One applied configuration version (`GET /api/config/history`).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct HistoryEntry {
        pub version: i64,
        pub applied_at: String,
        pub origin: String,
        /// Who: a token's name, `file` for an edit on disk, `cli:USER`; null on old rows.
        pub actor: Option<String>,
        pub files_changed: Vec<String>,
        pub content_hash: String,
    }

    /// `GET /api/config/history/{version}`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct VersionDetail {
        /// The version's row, as in the list.
        #[serde(flatten)]
        pub entry: HistoryEntry,
        /// The version before (null for the first).
        pub previous: Option<i64>,
        /// Every file of the version (null on rows older than SPEC 17).
        pub files: Option<Vec<FileText>>,
        /// Every difference to the version before, removed files too.
        pub diffs: Option<Vec<FileChange>>,
    }

    /// One file of a version.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct FileText {
        pub path: String,
        pub content: String,
        /// Its unified diff against the version before; null when unchanged.
        pub diff: Option<String>,
    }

    /// One file that differs between two versions.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct FileChange {
        pub path: String,
        #[schema(pattern = "^(added|removed|changed)$")]
        pub change: String,
        pub diff: String,
    }

    /// `GET /api/config/diff`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct ConfigDiff {
        pub from: i64,
        pub to: i64,
        pub files_changed: Vec<String>,
        pub diffs: Vec<FileChange>,
        /// Every diff, one after the other.
        pub patch: String,
    }

    /// `POST /api/config/rollback/{version}`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct RolledBack {
        #[schema(pattern = "^ok$")]
        pub status: String,
        pub rolled_back_to: i64,
        pub config_version: i64,
        /// False when the files were already those of the version (no new version).
        pub changed: bool,
        pub files_changed: Vec<String>,
    }

    /// `GET /api/periods`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Periods {
        pub close_after_seconds: i64,
        pub freeze_grains: Vec<String>,
        pub frozen: Vec<FrozenEntry>,
        pub reopened: Vec<ReopenedEntry>,
    }

    /// One frozen period of `GET /api/periods`.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct FrozenEntry {
        pub period: String,
        pub frozen_at: String,
        pub as_of: String,
        pub config_version: i64,
        pub content_hash: String,
        pub data_generation: i64,
        #[schema(pattern = "^(auto|close|force)$")]
        pub how: String,
        pub scorecards: Vec<String>,
    }

    /// One period reopened by hand.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct ReopenedEntry {
        pub period: String,
        pub reopened_at: String,
    }

    /// `POST /api/periods/{id}/reopen`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Reopened {
        #[schema(pattern = "^ok$")]
        pub status: String,
        pub period: String,
        pub config_version: i64,
    }

    /// `DELETE /api/silences/{id}`
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Removed {
        #[schema(pattern = "^ok$")]
        pub status: String,
        pub removed: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_the_error_shape() {
        let doc: Value = serde_json::from_str(document_json()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        let error = &doc["components"]["schemas"]["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["error", "details"]));
        let put = &doc["paths"]["/api/targets/{kpi}"]["put"];
        assert!(put["responses"]["403"].is_object(), "{put}");
        assert!(put["responses"]["422"].is_object(), "{put}");
    }
}
