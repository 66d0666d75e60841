//! The Database Upgrade service's pages and API: upload, progress, download,
//! delete. Uploads are spooled straight into the upgrade storage location.

use askama::Template;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use seldesk_domain::Fault;
use seldesk_upgrades::{UpgradeError, UpgradeRequest};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::auth::{ApiAccount, ApiError, CsrfToken, SignedIn};
use crate::errors::{message_of, status_of};
use crate::pages::{message_page, render};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/upgrade", get(page))
        .route("/upgrade/{id}/result", get(download))
        .route("/upgrade/{id}/delete", post(delete))
        .route("/api/v1/upgrades", get(api_list))
        .route("/api/v1/upgrades/{id}", get(api_show).delete(api_delete))
        .route("/api/v1/upgrades/{id}/result", get(api_download))
}

/// Routes that carry an upload (up to the import limit).
pub(crate) fn upload_routes() -> Router<AppState> {
    Router::new().route("/upgrade", post(upload)).route("/api/v1/upgrades", post(api_upload))
}

#[derive(Template)]
#[template(path = "upgrade.html")]
struct UpgradePage {
    title: &'static str,
    csrf: String,
    requests: Vec<UpgradeRequest>,
    running: bool,
    latest: i64,
    keep: String,
    keep_failed: String,
    error: Option<String>,
}

async fn view(state: &AppState, headers: &HeaderMap, account: &str, error: Option<(StatusCode, String)>) -> Response {
    let requests = state.upgrades.list(account).await.unwrap_or_default();
    let csrf = CsrfToken::for_request(state, headers);
    let keep = |c: &str| state.policy.retention(c).map(|r| r.keep.to_string()).unwrap_or_default();
    let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
    csrf.attach(render(
        status,
        &UpgradePage {
            title: "Database Upgrade",
            csrf: csrf.token.clone(),
            running: requests.iter().any(|r| r.status == "queued" || r.status == "running"),
            requests,
            latest: seldesk_tenants::files::SCHEMA_VERSION,
            keep: keep("upgrade_upload"),
            keep_failed: keep("upgrade_failed_upload"),
            error: error.map(|(_, m)| m),
        },
    ))
}

async fn page(State(state): State<AppState>, SignedIn(account, _, _): SignedIn, headers: HeaderMap) -> Response {
    view(&state, &headers, &account.id, None).await
}

/// Why an upload stopped at the account's daily allowance.
fn over_allowance(left: u64) -> String {
    format!(
        "This file is larger than what you may still upload today ({:.1} GB); nothing was kept. Try again tomorrow or with a smaller file.",
        left as f64 / 1e9
    )
}

/// A new file in the upgrade storage's incoming folder.
async fn spool_target(state: &AppState) -> Result<(std::path::PathBuf, tokio::fs::File), UpgradeError> {
    let dir = state.upgrades.storage().root().join("incoming");
    tokio::fs::create_dir_all(&dir).await?;
    let path = dir.join(uuid::Uuid::now_v7().simple().to_string());
    let file = tokio::fs::File::create(&path).await?;
    Ok((path, file))
}

async fn upload(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut spooled: Option<(std::path::PathBuf, String)> = None;
    let too_big = "The upload broke off or is larger than 2 GiB.";
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                return view(&state, &headers, &account.id, Some((StatusCode::PAYLOAD_TOO_LARGE, too_big.into())))
                    .await;
            }
        };
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("upload").to_string();
            let left = match state.upgrades.allowance_left(&account.id).await {
                Ok(left) => left,
                Err(e) => return view(&state, &headers, &account.id, Some((status_of(&e), message_of(&e)))).await,
            };
            let mut written = 0u64;
            let Ok((path, mut out)) = spool_target(&state).await else {
                return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Upload not stored", "Try again in a moment.");
            };
            let mut field = field;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => {
                        written += chunk.len() as u64;
                        if written > left {
                            let _ = tokio::fs::remove_file(&path).await;
                            return view(
                                &state,
                                &headers,
                                &account.id,
                                Some((StatusCode::PAYLOAD_TOO_LARGE, over_allowance(left))),
                            )
                            .await;
                        }
                        if out.write_all(&chunk).await.is_err() {
                            let _ = tokio::fs::remove_file(&path).await;
                            return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Upload not stored", "Try again.");
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let _ = tokio::fs::remove_file(&path).await;
                        return view(
                            &state,
                            &headers,
                            &account.id,
                            Some((StatusCode::PAYLOAD_TOO_LARGE, too_big.into())),
                        )
                        .await;
                    }
                }
            }
            let _ = out.flush().await;
            spooled = Some((path, name));
        }
    }
    let Some((path, name)) = spooled else {
        return view(
            &state,
            &headers,
            &account.id,
            Some((StatusCode::UNPROCESSABLE_ENTITY, "Choose a file to upload.".into())),
        )
        .await;
    };
    match state.upgrades.submit(&account.id, &name, &path).await {
        Ok(_) => Redirect::to("/upgrade").into_response(),
        Err(e) => view(&state, &headers, &account.id, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn stream_result(state: &AppState, account: &str, id: &str) -> Result<Response, UpgradeError> {
    let req = state.upgrades.finished(account, id).await?;
    // Opened from its seal on a blocking thread, streamed in 256 KiB pieces.
    let (mut reader, len) = state.upgrades.storage().open_result(&req.id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf.into())).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // An altered result ends the download with an error, never wrong bytes.
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let base: String =
        req.file_name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_".contains(c) { c } else { '-' }).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{base}-upgraded.zip\"")),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
        Body::from_stream(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )),
    )
        .into_response())
}

async fn download(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match stream_result(&state, &account.id, &id).await {
        Ok(r) => r,
        Err(e) => message_page(status_of(&e), "Not available", &message_of(&e)),
    }
}

async fn delete(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match state.upgrades.erase(&account.id, &id).await {
        Ok(()) => Redirect::to("/upgrade").into_response(),
        Err(e) => view(&state, &headers, &account.id, Some((status_of(&e), message_of(&e)))).await,
    }
}

// ----- API -----

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    #[serde(default)]
    name: String,
}

/// `POST /api/v1/upgrades?name=FILE` with the file as the body → 202.
#[utoipa::path(
    post,
    path = "/api/v1/upgrades",
    tag = "upgrades",
    summary = "Upload an old export to be upgraded (the body)",
    params(("name" = String, Query, description = "The file name"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "An export archive (.zip)"),
    responses((status = 202, description = "Accepted; its address in Location", body = seldesk_upgrades::UpgradeRequest), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn api_upload(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let left = state.upgrades.allowance_left(&a.id).await.map_err(ApiError::from)?;
    let mut written = 0u64;
    let (path, mut out) = spool_target(&state).await.map_err(ApiError::from)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        written += chunk.as_ref().map(|c| c.len() as u64).unwrap_or(0);
        if written > left {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", over_allowance(left)));
        }
        let Ok(chunk) = chunk else {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "The upload broke off or is larger than 2 GiB.",
            ));
        };
        if out.write_all(&chunk).await.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::from(UpgradeError::Internal(Fault::msg("cannot store the upload"))));
        }
    }
    let _ = out.flush().await;
    let req = state.upgrades.submit(&a.id, &q.name, &path).await.map_err(ApiError::from)?;
    Ok(crate::errors::created(StatusCode::ACCEPTED, format!("/api/v1/upgrades/{}", req.id), req))
}

#[utoipa::path(
    get,
    path = "/api/v1/upgrades",
    tag = "upgrades",
    summary = "Your upgrade requests",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The requests", body = Vec<seldesk_upgrades::UpgradeRequest>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn api_list(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    axum::extract::Query(q): axum::extract::Query<crate::paging::PageQuery>,
) -> Result<Response, ApiError> {
    let list = state.upgrades.list(&a.id).await.map_err(ApiError::from)?;
    let (list, next) = crate::paging::page(list, |u| u.id.clone(), crate::paging::Order::Newest, &q)?;
    Ok(crate::paging::announce(Json(list).into_response(), "/api/v1/upgrades", &q, next))
}

#[utoipa::path(
    get,
    path = "/api/v1/upgrades/{id}",
    tag = "upgrades",
    summary = "One upgrade request",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "The request", body = seldesk_upgrades::UpgradeRequest), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn api_show(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Json<UpgradeRequest>, ApiError> {
    state.upgrades.get(&a.id, &id).await.map(Json).map_err(ApiError::from)
}

#[utoipa::path(
    get,
    path = "/api/v1/upgrades/{id}/result",
    tag = "upgrades",
    summary = "Download the upgraded archive",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "The archive", body = Vec<u8>, content_type = "application/zip"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn api_download(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    stream_result(&state, &a.id, &id).await.map_err(ApiError::from)
}

#[utoipa::path(
    delete,
    path = "/api/v1/upgrades/{id}",
    tag = "upgrades",
    summary = "Delete an upgrade request and its files",
    params(("id" = String, Path, description = "The id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn api_delete(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.upgrades.erase(&a.id, &id).await.map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
