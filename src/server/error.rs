//! The one error type of the HTTP layer, and the extractors that turn every
//! kind of malformed input (path, query, body, size) into it.
//!
//! Every error leaves the server as JSON `{"error": "...", "details": [...]}`
//! with the status its variant names. Internal failures are logged with their
//! detail and answered with a generic message: nothing internal is returned.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::config::edit::EditError;
use crate::diag::Diagnostic;
use crate::engine::EngineError;
use crate::store::StoreError;

/// The largest request body accepted (SPEC 12).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: a bad period, time, query parameter or body.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The action is disabled (writes without KPI_ADMIN_TOKEN).
    #[error("{0}")]
    Forbidden(String),
    /// An unknown KPI, scorecard, team, entity or route; the message carries a hint.
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large: the limit is {} MiB", MAX_BODY_BYTES / (1024 * 1024))]
    PayloadTooLarge,
    /// Well-formed input that does not check: a candidate configuration or rows that fail.
    #[error("{message}")]
    Unprocessable {
        message: String,
        details: Vec<String>,
    },
    /// The database stayed locked by another process past the busy timeout.
    #[error("{0}")]
    Busy(String),
    /// A write failed because the disk is full (507).
    #[error("{0}")]
    DiskFull(String),
    /// A bug or an I/O failure; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(message.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(message.to_string())
    }

    /// 422 for a candidate configuration that does not check.
    pub fn invalid_config(message: impl Into<String>, diagnostics: &[Diagnostic]) -> ApiError {
        ApiError::Unprocessable {
            message: message.into(),
            details: diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ApiError::Busy("the database is locked by another process; try again".into())
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                ApiError::DiskFull("the disk of the database is full; nothing was written".into())
            }
            StoreError::Import { bad_rows, messages } => ApiError::Unprocessable {
                message: format!("{bad_rows} bad row(s); nothing was imported"),
                details: messages,
            },
            StoreError::Schema(refusals) => ApiError::Unprocessable {
                message: "schema change refused; nothing was changed".into(),
                details: refusals.iter().map(ToString::to_string).collect(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Config(d) => {
                ApiError::invalid_config("the configuration does not check", &d.0)
            }
            EngineError::Rejected {
                message,
                diagnostics,
            } => ApiError::invalid_config(message, &diagnostics),
            e @ EngineError::Unknown { .. } => ApiError::NotFound(e.to_string()),
            e @ EngineError::BadInput { .. } => ApiError::BadRequest(e.to_string()),
            EngineError::Edit(e) => e.into(),
            EngineError::Store(e) => e.into(),
            EngineError::Io(m) => ApiError::Internal(m),
            EngineError::DiskFull(m) => ApiError::DiskFull(m),
        }
    }
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> ApiError {
        match e {
            EditError::BadRequest(m) => ApiError::BadRequest(m),
            EditError::NotFound(m) => ApiError::NotFound(m),
            EditError::Unprocessable { message, details } => {
                ApiError::Unprocessable { message, details }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, details) = match self {
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                ("internal error; see the server log".to_string(), Vec::new())
            }
            ApiError::Unprocessable { message, details } => (message, details),
            other => (other.to_string(), Vec::new()),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: message,
                details,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The JSON of every error: `{"error": "...", "details": [...]}` (SPEC 12).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, naming the file, line, field or record.
    pub error: String,
    /// Every error found (bad rows, configuration diagnostics); often empty.
    pub details: Vec<String>,
}

/// A request body of at most [`MAX_BODY_BYTES`]; too large is 413, unreadable 400.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A declared length over the limit is refused before any of the body is read.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) => Err(body_rejection(&e)),
        }
    }
}

fn body_rejection(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::bad_request(format!("cannot read the request body: {}", e.body_text()))
    }
}

/// A JSON body of type `T`: 400 naming the problem when it does not parse.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Body(bytes) = Body::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("empty body: expected JSON"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Path parameters; a rejection becomes a JSON 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e: PathRejection| ApiError::bad_request(e.body_text()))
    }
}

/// Query parameters; a rejection becomes a JSON 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_as_such() {
        let io = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = ApiError::from(EngineError::from_io("cannot write kpis/targets.toml", &io));
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(e.to_string().contains("the disk is full"), "{e}");
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let e = ApiError::from(StoreError::Sqlite(full));
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(e.to_string().contains("disk"), "{e}");
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(ApiError::bad_request("x").status(), 400);
        assert_eq!(ApiError::Unauthorized("x".into()).status(), 401);
        assert_eq!(ApiError::Forbidden("x".into()).status(), 403);
        assert_eq!(ApiError::not_found("x").status(), 404);
        assert_eq!(ApiError::PayloadTooLarge.status(), 413);
        let bad = ApiError::from(StoreError::Import {
            bad_rows: 1,
            messages: vec!["body:1: field 'x': bad".into()],
        });
        assert_eq!(bad.status(), 422);
    }
}
