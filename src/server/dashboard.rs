//! The dashboard at `/`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::auth::ReadAccess;
use super::state::AppState;

pub async fn page(State(_state): State<Arc<AppState>>, _: ReadAccess) -> Html<String> {
    Html(String::from("<!doctype html><title>kpi</title>"))
}
