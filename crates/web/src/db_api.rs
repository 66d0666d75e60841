//! The customer-databases API: create, list, contacts, SQL console, export,
//! import, cancel, reactivate, remove. Every route checks ownership through
//! the service, which answers "not found" for another account's database.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use seldesk_tenants::{ContactInput, TenantError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::AppState;
use crate::auth::{ApiAccount, ApiError};
use crate::errors::created;
use crate::paging::{self, PageQuery};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/databases", post(create).get(list))
        .route("/api/v1/databases/{id}", get(show).delete(remove))
        .route("/api/v1/databases/{id}/backups", get(backups))
        .route("/api/v1/databases/{id}/backups/{snapshot}/restore", post(restore_backup))
        .route("/api/v1/databases/{id}/restore-at", post(restore_at))
        .route("/api/v1/databases/{id}/cancel", post(cancel))
        .route("/api/v1/databases/{id}/reactivate", post(reactivate))
        .route("/api/v1/databases/{id}/upgrade", post(upgrade))
        .route("/api/v1/databases/{id}/test-upgrade", post(test_upgrade))
        .route("/api/v1/databases/{id}/move", post(move_db))
        .route("/api/v1/databases/{id}/access-log", get(access_log))
        .route("/api/v1/databases/{id}/access/{grant}/revoke", post(revoke))
        .route("/api/v1/databases/{id}/access/{grant}/approve", post(approve))
        .route("/api/v1/databases/{id}/contacts", post(create_contact).get(list_contacts))
        .route("/api/v1/databases/{id}/contacts/{cid}", get(show_contact).patch(update_contact).delete(delete_contact))
        .route("/api/v1/databases/{id}/sql", post(sql))
        .route("/api/v1/databases/{id}/export", get(export))
        .route("/api/v1/databases/{id}/attachments/{aid}", get(download_attachment).delete(delete_attachment))
        .route("/api/v1/databases/{id}/contacts/{cid}/attachments/{aid}", get(show_attachment))
}

/// Attachment uploads: bodies up to 25 MiB.
pub(crate) fn attachment_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/databases/{id}/contacts/{cid}/attachments", post(upload_attachment).get(list_attachments))
}

/// Routes that take large bodies.
pub(crate) fn upload_routes() -> Router<AppState> {
    Router::new().route("/api/v1/databases/import", post(import))
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/backups",
    tag = "backups",
    summary = "The database backups",
    params(crate::paging::PageQuery, ("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The snapshots", body = Snapshots), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn backups(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let list = s.backups.list_for_owner(&a.id, &id).await.map_err(ApiError::from)?;
    let (list, next) = paging::page(
        list,
        |b| format!("{:030}|{}", b.taken_at.unix_timestamp_nanos(), b.id),
        paging::Order::Oldest,
        &q,
    )?;
    let body = Json(Snapshots { snapshots: list }).into_response();
    Ok(paging::announce(body, &format!("/api/v1/databases/{id}/backups"), &q, next))
}

/// A database's backups.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Snapshots {
    pub snapshots: Vec<seldesk_vault::SnapshotInfo>,
}

/// A database restored to a moment.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RestoredDb {
    #[serde(flatten)]
    pub database: seldesk_tenants::CustomerDb,
    /// The moment it holds changes up to (RFC 3339).
    pub restored_as_of: Option<String>,
}

/// A removed database.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Removed {
    /// Always true.
    pub removed: bool,
    /// The day its last backup is destroyed.
    pub backups_hold_it_until: String,
}

/// A schema upgrade.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SchemaUpgrade {
    pub id: String,
    pub from: i64,
    pub to: i64,
}

/// Support access to a database.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AccessLog {
    pub grants: Vec<seldesk_tenants::support::SupportGrant>,
    /// Every recorded access and change, oldest first.
    pub entries: Vec<seldesk_privacy::AuditEntry>,
}

/// A revoked support grant.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Revoked {
    /// Always true.
    pub revoked: bool,
}

/// Where a backup is restored to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ledger-restored"}))]
pub(crate) struct RestoreRequest {
    /// The new database's name.
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/backups/{snapshot}/restore",
    tag = "backups",
    summary = "Restore a backup into a new database",
    params(("id" = String, Path, description = "The database id"), ("snapshot" = String, Path, description = "The snapshot id"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = RestoreRequest, content_type = "application/json"),
    responses((status = 201, description = "The new database; its address in Location", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn restore_backup(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, snapshot)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RestoreRequest = json(&body)?;
    let owned = s.backups.list_for_owner(&a.id, &id).await.unwrap_or_default();
    if !owned.iter().any(|x| x.id == snapshot) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such backup of this database."));
    }
    let d = s
        .backups
        .restore(&a.actor(), &snapshot, &req.name, "requested by the owner", Some(&a.id))
        .await
        .map_err(ApiError::from)?;
    Ok(created(StatusCode::CREATED, format!("/api/v1/databases/{}", d.id), d))
}

/// A point-in-time restore.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"at": "2026-12-06T10:15:30Z", "name": "ledger-at-10-15"}))]
pub(crate) struct RestoreAtRequest {
    /// The moment, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    at: time::OffsetDateTime,
    /// The new database's name.
    name: String,
}

/// `POST /api/v1/databases/{id}/restore-at {"at": "2026-12-06T10:15:30Z",
/// "name": …}`: the database as it was at that moment, into a new
/// database (its newest snapshot before then and every change streamed up
/// to then); 201 with the new database and the moment it holds changes to.
#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/restore-at",
    tag = "backups",
    summary = "Restore the database as it was at a moment, into a new database",
    params(("id" = String, Path, description = "The database id"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = RestoreAtRequest, content_type = "application/json"),
    responses((status = 201, description = "The new database and the moment it holds changes to", body = RestoredDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn restore_at(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RestoreAtRequest = json(&body)?;
    s.databases.get(&a.id, &id).await?;
    let (d, plan) = s
        .backups
        .restore_at(&a.actor(), &id, req.at, &req.name, "", Some(&a.id), std::sync::Arc::new(|_, _| {}))
        .await
        .map_err(ApiError::from)?;
    let location = format!("/api/v1/databases/{}", d.id);
    let restored_as_of = plan.shipped_to.format(&time::format_description::well_known::Rfc3339).ok();
    Ok(created(StatusCode::CREATED, location, RestoredDb { database: d, restored_as_of }))
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_data() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_REQUEST };
        ApiError::new(
            status,
            if e.is_data() { "invalid" } else { "bad_request" },
            format!("The JSON body is not valid: {e}"),
        )
    })
}

/// A database to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ledger", "region": "uk"}))]
pub(crate) struct NewDb {
    name: String,
    /// Its data center (the account's nearest when absent).
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    plan: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases",
    tag = "databases",
    summary = "Create a database (a trial until paid)",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = NewDb, content_type = "application/json"),
    responses((status = 201, description = "The database; its address in Location", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn create(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: NewDb = json(&body)?;
    let d = s.databases.create(&a.id, &req.name, req.region.as_deref(), req.plan.as_deref(), None).await?;
    Ok(created(StatusCode::CREATED, format!("/api/v1/databases/{}", d.id), d))
}

#[utoipa::path(
    get,
    path = "/api/v1/databases",
    tag = "databases",
    summary = "Your databases",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The databases", body = Vec<seldesk_tenants::CustomerDb>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn list(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let all = s.databases.list(&a.id).await?;
    let (dbs, next) = paging::page(
        all,
        |d| format!("{:030}|{}", d.created_at.unix_timestamp_nanos(), d.id),
        paging::Order::Oldest,
        &q,
    )?;
    Ok(paging::announce(Json(dbs).into_response(), "/api/v1/databases", &q, next))
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}",
    tag = "databases",
    summary = "One database",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The database", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn show(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.databases.get(&a.id, &id).await?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Confirm {
    #[serde(default)]
    confirm: String,
}

#[utoipa::path(
    delete,
    path = "/api/v1/databases/{id}",
    tag = "databases",
    summary = "Remove a database (its name typed in `confirm`)",
    params(("id" = String, Path, description = "The database id"), ("confirm" = String, Query, description = "The database name, typed to confirm")),
    responses((status = 200, description = "Removed; when its backups are destroyed", body = Removed), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn remove(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    Query(q): Query<Confirm>,
) -> Result<Response, ApiError> {
    let until = s.databases.remove(&a.id, &id, &q.confirm).await?;
    let until = until.date().to_string();
    Ok(Json(Removed { removed: true, backups_hold_it_until: until }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/cancel",
    tag = "databases",
    summary = "Cancel a database (deactivated, removed after the grace period)",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The database", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.billing.cancel(&a.id, &id).await.map_err(ApiError::from)?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/reactivate",
    tag = "databases",
    summary = "Reactivate a cancelled database within its grace period",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The database", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn reactivate(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.billing.reactivate(&a.id, &id).await.map_err(ApiError::from)?).into_response())
}

/// Upgrades the database to the newest schema version: 200 `{from, to}`.
#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/upgrade",
    tag = "databases",
    summary = "Upgrade the database to the current schema, with a way back",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "From and to which schema version", body = SchemaUpgrade), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn upgrade(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (from, to) = s.databases.upgrade(&a.id, &id).await?;
    Ok(Json(SchemaUpgrade { id, from, to }).into_response())
}

/// A test upgrade on a copy: 201 with the new (test) database.
#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/test-upgrade",
    tag = "databases",
    summary = "Upgrade a copy first, to try it",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 201, description = "The copy", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn test_upgrade(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, Json(s.databases.test_upgrade(&a.id, &id).await?)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/access-log",
    tag = "support access",
    summary = "Support access to the database: grants and every read",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "Grants and entries", body = AccessLog), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn access_log(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grants = s.databases.support_grants(&a.id, &id).await?;
    let entries = s.databases.access_log(&a.id, &id).await?;
    Ok(Json(AccessLog { grants, entries }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/access/{grant}/approve",
    tag = "support access",
    summary = "Approve the changes support proposed",
    params(("id" = String, Path, description = "The database id"), ("grant" = i64, Path, description = "The access grant number")),
    responses((status = 200, description = "Applied", body = seldesk_tenants::support::SupportGrant), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn approve(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, grant)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    Ok(Json(s.databases.approve_support_changes(&a.id, &id, grant).await?).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/access/{grant}/revoke",
    tag = "support access",
    summary = "End a support access grant at once",
    params(("id" = String, Path, description = "The database id"), ("grant" = i64, Path, description = "The access grant number")),
    responses((status = 200, description = "Revoked", body = Revoked), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn revoke(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, grant)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    s.databases.revoke_support(&a.id, &id, grant).await?;
    Ok(Json(Revoked { revoked: true }).into_response())
}

/// Where a database moves to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"region": "sg"}))]
pub(crate) struct MoveRequest {
    region: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/move",
    tag = "databases",
    summary = "Move the database to another data center",
    params(("id" = String, Path, description = "The database id")),
    request_body(content = MoveRequest, content_type = "application/json"),
    responses((status = 202, description = "The move has begun", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn move_db(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: MoveRequest = json(&body)?;
    Ok((StatusCode::ACCEPTED, Json(s.databases.request_move(&a.id, &id, &req.region).await?)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/contacts",
    tag = "contacts",
    summary = "Add a contact",
    params(("id" = String, Path, description = "The database id"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = seldesk_tenants::app::ContactInput, content_type = "application/json"),
    responses((status = 201, description = "The contact; its address in Location", body = seldesk_tenants::app::Contact), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn create_contact(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: ContactInput = json(&body)?;
    let c = s
        .databases
        .write_db(&a.id, &id, false, move |conn, now| seldesk_tenants::app::create(conn, &input, now))
        .await?;
    Ok(created(StatusCode::CREATED, format!("/api/v1/databases/{id}/contacts/{}", c.id), c))
}

#[derive(Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
    /// How many contacts at most (1 to 500; 500 when absent).
    limit: Option<i64>,
    /// Where the page starts: the `next_cursor` of the page before.
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/contacts",
    tag = "contacts",
    summary = "Contacts, by name, a page at a time (the next page in Link and Next-Cursor)",
    params(("id" = String, Path, description = "The database id"), ("q" = Option<String>, Query, description = "Search in names, e-mails and tags"), ("limit" = Option<i64>, Query, description = "At most this many, 1 to 500 (500 when absent)"), ("cursor" = Option<String>, Query, description = "Where the page starts: the Next-Cursor of the page before")),
    responses((status = 200, description = "A page of contacts", body = Vec<seldesk_tenants::app::Contact>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn list_contacts(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    Query(q): Query<Search>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(500);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "`limit` is a number from 1 to 500."));
    }
    let after = q.cursor.as_deref().map(seldesk_tenants::app::Cursor::parse).transpose()?;
    let page = s.databases.contacts_page(&a.id, &id, q.q.clone(), limit, after).await?;
    // The body stays the list it always was; where the next page starts is
    // said in `Link` (RFC 8288, as GitHub's API does) and `Next-Cursor`.
    let mut r = Json(page.contacts).into_response();
    if let Some(next) = page.next_cursor {
        let mut query = vec![("limit", limit.to_string()), ("cursor", next.clone())];
        if let Some(text) = q.q {
            query.push(("q", text));
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        let link = format!("</api/v1/databases/{id}/contacts?{query}>; rel=\"next\"");
        for (name, value) in [(header::LINK, link), (HeaderName::from_static("next-cursor"), next)] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
    }
    Ok(r)
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/contacts/{cid}",
    tag = "contacts",
    summary = "One contact",
    params(("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id")),
    responses((status = 200, description = "The contact", body = seldesk_tenants::app::Contact), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn show_contact(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let c = s.databases.read_db(&a.id, &id, move |conn| seldesk_tenants::app::get(conn, cid)).await?;
    Ok(Json(c).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/databases/{id}/contacts/{cid}",
    tag = "contacts",
    summary = "Change a contact (absent fields stay)",
    params(("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id")),
    request_body(content = seldesk_tenants::app::ContactInput, content_type = "application/json"),
    responses((status = 200, description = "The contact", body = seldesk_tenants::app::Contact), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn update_contact(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid)): Path<(String, i64)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: ContactInput = json(&body)?;
    let c = s
        .databases
        .write_db(&a.id, &id, false, move |conn, now| seldesk_tenants::app::update(conn, cid, &input, now))
        .await?;
    Ok(Json(c).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/databases/{id}/contacts/{cid}",
    tag = "contacts",
    summary = "Delete a contact and its attachments",
    params(("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn delete_contact(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    s.databases
        .write_db_files(&a.id, &id, move |conn, files, _| seldesk_tenants::app::delete_with_files(conn, files, cid))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct FileName {
    #[serde(default)]
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/contacts/{cid}/attachments",
    tag = "contacts",
    summary = "Attach a file (the body) to a contact",
    params(("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id"), ("name" = String, Query, description = "The file name"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, description = "The attachment; its address in Location", body = seldesk_tenants::app::Attachment), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn upload_attachment(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid)): Path<(String, i64)>,
    Query(q): Query<FileName>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let att = s
        .databases
        .write_db_files(&a.id, &id, move |conn, files, now| {
            seldesk_tenants::app::add_attachment(conn, files, cid, &q.name, &body, now)
        })
        .await?;
    Ok(created(StatusCode::CREATED, format!("/api/v1/databases/{id}/contacts/{cid}/attachments/{}", att.id), att))
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/contacts/{cid}/attachments",
    tag = "contacts",
    summary = "A contact attachments",
    params(crate::paging::PageQuery, ("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id")),
    responses((status = 200, description = "The attachments", body = Vec<seldesk_tenants::app::Attachment>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn list_attachments(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid)): Path<(String, i64)>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let list = s.databases.read_db(&a.id, &id, move |conn| seldesk_tenants::app::attachments(conn, cid)).await?;
    let (list, next) = paging::page(list, |x| format!("{:020}", x.id), paging::Order::Oldest, &q)?;
    Ok(paging::announce(
        Json(list).into_response(),
        &format!("/api/v1/databases/{id}/contacts/{cid}/attachments"),
        &q,
        next,
    ))
}

/// `GET /api/v1/databases/{id}/contacts/{cid}/attachments/{aid}`: one
/// attachment's details (its bytes are at `/api/v1/databases/{id}/attachments/{aid}`).
#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/contacts/{cid}/attachments/{aid}",
    tag = "contacts",
    summary = "One attachment details",
    params(("id" = String, Path, description = "The database id"), ("cid" = i64, Path, description = "The contact id"), ("aid" = i64, Path, description = "The attachment id")),
    responses((status = 200, description = "The attachment", body = seldesk_tenants::app::Attachment), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn show_attachment(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, cid, aid)): Path<(String, i64, i64)>,
) -> Result<Response, ApiError> {
    let list = s.databases.read_db(&a.id, &id, move |conn| seldesk_tenants::app::attachments(conn, cid)).await?;
    match list.into_iter().find(|x| x.id == aid) {
        Some(att) => Ok(Json(att).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "This contact has no attachment with this id.")),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/attachments/{aid}",
    tag = "contacts",
    summary = "Download an attachment",
    params(("id" = String, Path, description = "The database id"), ("aid" = i64, Path, description = "The attachment id")),
    responses((status = 200, description = "Its bytes", body = Vec<u8>, content_type = "application/octet-stream"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn download_attachment(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, aid)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let (att, bytes) = s
        .databases
        .read_db_files(&a.id, &id, move |conn, files| seldesk_tenants::app::read_attachment(conn, files, aid))
        .await?;
    let safe: String =
        att.file_name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ').collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{safe}\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/databases/{id}/attachments/{aid}",
    tag = "contacts",
    summary = "Delete an attachment",
    params(("id" = String, Path, description = "The database id"), ("aid" = i64, Path, description = "The attachment id")),
    responses((status = 204, description = "Deleted"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn delete_attachment(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path((id, aid)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    s.databases
        .write_db_files(&a.id, &id, move |conn, files, _| seldesk_tenants::app::delete_attachment(conn, files, aid))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// SQL for the sandbox.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sql": "SELECT name FROM contacts WHERE name LIKE ?", "params": ["A%"]}))]
pub(crate) struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/sql",
    tag = "databases",
    summary = "Run SQL in the database sandbox",
    params(("id" = String, Path, description = "The database id")),
    request_body(content = SqlRequest, content_type = "application/json"),
    responses((status = 200, description = "Columns and rows", body = seldesk_tenants::sandbox::QueryResult), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn sql(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: SqlRequest = json(&body)?;
    let result = s.databases.console(&a.id, &id, req.sql, req.params).await?;
    Ok(Json(result).into_response())
}

/// Streams the archive from disk: memory stays flat whatever the size.
#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/export",
    tag = "databases",
    summary = "Export the database as an archive that imports anywhere (resumable with Range)",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The archive", body = Vec<u8>, content_type = "application/zip"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:read"])),
)]
pub(crate) async fn export(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    export_response(&s, &a.id, &id, &headers).await
}

/// Serves an export archive with resumable downloads. A plain GET prepares a
/// fresh archive (tagged by its ETag); a GET with `Range` resumes the archive
/// named by `If-Range`, or the latest one when there is no `If-Range` (what
/// `curl -C -` and browsers send), so the pieces always come from the same
/// bytes. When the archive is no longer kept the answer is the whole new
/// archive (200), never pieces of two different archives.
pub(crate) async fn export_response(
    s: &AppState,
    account: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let resumed = match range {
        Some(_) => {
            let tag = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
                // A date in If-Range never matches: our validator is the ETag.
                Some(v) => v.trim().strip_prefix('"').and_then(|v| v.strip_suffix('"')).map(|t| Some(t.to_string())),
                None => Some(None),
            };
            match tag {
                Some(t) => s.databases.resume_export(account, id, t.as_deref()).await.map_err(ApiError::from)?,
                None => None,
            }
        }
        None => None,
    };
    let (d, prepared, range) = match resumed {
        Some((d, p)) => (d, p, range),
        None => {
            let (d, p) = s.databases.export(account, id).await.map_err(ApiError::from)?;
            (d, p, None)
        }
    };
    let mut file = tokio::fs::File::open(&prepared.path).await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
    let len = file.metadata().await.map(|m| m.len()).map_err(|e| ApiError::from(TenantError::Io(e)))?;
    let date = s.clock.now().date();
    let etag = format!("\"{}\"", prepared.tag);
    let common = [
        (header::CONTENT_TYPE, "application/zip".to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}-{date}.zip\"", d.name)),
        (header::CACHE_CONTROL, "private, no-store".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::ETAG, etag),
    ];
    let Some(range) = range else {
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        return Ok((StatusCode::OK, common, [(header::CONTENT_LENGTH, len.to_string())], Body::from_stream(stream))
            .into_response());
    };
    let ranges = http_range_header::parse_range_header(range).and_then(|r| r.validate(len));
    // Download tools resume with one range; several are answered with the
    // whole archive, which the standard allows, rather than multipart.
    if ranges.as_ref().is_ok_and(|r| r.len() > 1) {
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        return Ok((StatusCode::OK, common, [(header::CONTENT_LENGTH, len.to_string())], Body::from_stream(stream))
            .into_response());
    }
    let Some(first) = ranges.ok().and_then(|r| r.into_iter().next()) else {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            Json(serde_json::json!({
                "error": "range_not_satisfiable",
                "message": format!("The archive is {len} bytes; ask for a range inside it, e.g. `Range: bytes=0-`."),
            })),
        )
            .into_response());
    };
    let (start, end) = (*first.start(), *first.end());
    file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
    let part = file.take(end - start + 1);
    let stream = tokio_util::io::ReaderStream::with_capacity(part, 256 * 1024);
    Ok((
        StatusCode::PARTIAL_CONTENT,
        common,
        [
            (header::CONTENT_LENGTH, (end - start + 1).to_string()),
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct ImportQuery {
    #[serde(default)]
    name: String,
    region: Option<String>,
}

/// Creates a database from an export archive sent as the body. The upload is
/// spooled into the target region's folder, never elsewhere.
#[utoipa::path(
    post,
    path = "/api/v1/databases/import",
    tag = "databases",
    summary = "Create a database from an export archive (the body)",
    params(("name" = String, Query, description = "The new database name"), ("region" = Option<String>, Query, description = "Its data center (the account default when absent)"), ("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "An export archive (.zip)"),
    responses((status = 201, description = "The new database; its address in Location", body = seldesk_tenants::CustomerDb), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["databases:write"])),
)]
pub(crate) async fn import(
    State(s): State<AppState>,
    ApiAccount(a): ApiAccount,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let region = q.region.clone().unwrap_or_else(|| s.policy.nearest_region(None).id.clone());
    if s.policy.region(&region).is_none_or(|r| !r.hosting) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("`{region}` is not a hosting region."),
        ));
    }
    let dir = s.databases.import_spool(&a.id, &region).await.map_err(ApiError::from)?;
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
    let spool = dir.join(format!("{}.zip", uuid::Uuid::now_v7().simple()));
    let result = async {
        let mut out = tokio::fs::File::create(&spool).await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
        let mut stream = body.into_data_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "The archive is larger than 2 GiB, or the upload broke off.",
                )
            })?;
            total += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
        }
        out.flush().await.map_err(|e| ApiError::from(TenantError::Io(e)))?;
        if total == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Send the export archive (.zip) as the request body.",
            ));
        }
        s.databases.import(&a.id, &q.name, Some(&region), spool.clone()).await.map_err(ApiError::from)
    }
    .await;
    let _ = tokio::fs::remove_file(&spool).await;
    let d = result?;
    Ok(created(StatusCode::CREATED, format!("/api/v1/databases/{}", d.id), d))
}
