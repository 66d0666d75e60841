//! The receiving end of moves between nodes (issue 30, item 5), on the
//! internal listener only (behind the cluster's secret): thin handlers over
//! [`seldesk_tenants::Databases`]'s `receive_*`. The sending end is
//! [`crate::cluster::PeerLink`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use seldesk_tenants::TenantError;
use seldesk_tenants::transfer::{MAX_BATCH, Manifest, Transfer};

use crate::AppState;
use crate::errors::ApiError;

/// Paths of the transfer steps.
pub const BEGIN: &str = "/internal/v1/transfers/begin";
pub const BATCH: &str = "/internal/v1/transfers/batch";
pub const COMMIT: &str = "/internal/v1/transfers/commit";
pub const ABORT: &str = "/internal/v1/transfers/abort";

/// The routes, for the internal listener.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(BEGIN, post(begin))
        .route(BATCH, post(batch))
        .route(COMMIT, post(commit))
        .route(ABORT, post(abort))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH + 64 * 1024))
}

fn answer(result: Result<(), TenantError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn begin(State(s): State<AppState>, Query(t): Query<Transfer>) -> Response {
    answer(s.databases.receive_begin(&t).await)
}

async fn batch(State(s): State<AppState>, Query(t): Query<Transfer>, body: Bytes) -> Response {
    answer(s.databases.receive_batch(&t, body.to_vec()).await)
}

async fn commit(State(s): State<AppState>, Query(t): Query<Transfer>, body: Bytes) -> Response {
    let m: Manifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return answer(Err(TenantError::Invalid { field: "manifest", message: format!("not a manifest: {e}") }));
        }
    };
    answer(s.databases.receive_commit(&t, &m).await)
}

async fn abort(State(s): State<AppState>, Query(t): Query<Transfer>) -> Response {
    answer(s.databases.receive_abort(&t).await)
}
