//! The JSON API under `/api/v1`. Errors are `{error, message}` with the
//! status a client can act on.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use seldesk_accounts::{Principal, ProfileUpdate, SessionKind, SignUp, TicketKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{ApiAccount, ApiError, client_ip};
use crate::paging::{self, PageQuery};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/accounts", post(create_account))
        .route("/api/v1/auth/token", post(token))
        .route("/api/v1/me", get(me).patch(update_me))
        .route("/api/v1/me/requests", post(create_request).get(list_requests))
        .route("/api/v1/me/requests/{id}", get(request))
        .route("/api/v1/me/requests/{id}/download", get(download))
        .route("/api/v1/me/erasure", get(erasure_preview))
        .route("/api/v1/me/close", post(close_account))
        .route("/api/v1/me/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/me/tokens/{id}", get(show_token).delete(revoke_token))
        .route("/api/v1/openapi.json", get(crate::openapi::json))
        .route("/api/docs", get(crate::openapi::docs))
        .route("/api/problems/{code}", get(crate::errors::problem_type))
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API route.") }),
        )
}

/// Parses a JSON body with errors a client can act on.
pub(crate) fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "The request body must be a JSON object."));
    }
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_data() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_REQUEST };
        ApiError::new(
            status,
            if e.is_data() { "invalid" } else { "bad_request" },
            format!("The JSON body is not valid: {e}"),
        )
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "account",
    summary = "Sign up: make an account",
    request_body(content = SignUpBody, content_type = "application/json"),
    responses((status = 201, description = "The account was made; its id", body = AccountCreated), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn create_account(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // `marketing` (true or false) is the marketing choice; the rest is the account.
    let mut value: serde_json::Value = json(&body)?;
    let marketing = match value.as_object_mut().and_then(|o| o.remove("marketing")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(b)) => Some(b),
        Some(_) => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "`marketing` is true or false.")
                .at("marketing"));
        }
    };
    let input: SignUp = serde_json::from_value(value).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("The JSON body is not valid: {e}"))
    })?;
    let account = state.accounts.sign_up(input, &client_ip(Some(&conn))).await?;
    if let Some(yes) = marketing {
        state.marketing.set_preference(&account.actor(), &account.subject(), &account.email, yes, "signup").await?;
    }
    Ok((StatusCode::CREATED, Json(AccountCreated { id: account.id })).into_response())
}

/// Sign-up: the account's fields and the marketing choice. Parsed in two
/// steps so a wrong `marketing` gets its own message.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Asha Rao", "company": "Rao Traders", "email": "asha@example.com", "password": "violet tractor lemon", "country": "IN", "marketing": false}))]
#[allow(dead_code)] // the document's description of the body `create_account` reads
pub(crate) struct SignUpBody {
    #[schema(inline)]
    #[serde(flatten)]
    account: SignUp,
    /// Whether we may send product news (asked once, changeable any time).
    marketing: Option<bool>,
}

/// A new account.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AccountCreated {
    pub id: String,
}

/// A sign-in token for the API.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SignInToken {
    /// Send as `Authorization: Bearer …`.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// A personal token just made: the only time `token` is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MadeToken {
    #[serde(flatten)]
    pub about: seldesk_accounts::ApiToken,
    /// The token itself (`sdpat_…`), shown in this answer only.
    pub token: String,
}

/// Sign-in for the API.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "asha@example.com", "password": "violet tractor lemon"}))]
pub(crate) struct TokenRequest {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "account",
    summary = "Sign in: a sign-in token for the API",
    request_body(content = TokenRequest, content_type = "application/json"),
    responses((status = 200, description = "The token and when it expires", body = SignInToken), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn token(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: TokenRequest = json(&body)?;
    let ua = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let account =
        state.accounts.authenticate(&req.email, req.password.expose_secret(), &client_ip(Some(&conn)), ua).await?;
    let (token, session) = state.accounts.create_session(SessionKind::Api, Principal::Account(account.id)).await?;
    let expires = session.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    Ok(Json(SignInToken { token, expires_at: expires }).into_response())
}

/// A personal access token to make.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly export", "scopes": ["databases:read"], "expires_in_days": 30}))]
pub(crate) struct NewTokenRequest {
    /// Where it is used, 1 to 60 characters.
    name: String,
    /// account:read, account:write, databases:read, databases:write, billing:read, billing:write.
    scopes: Vec<String>,
    /// Days until the token expires.
    expires_in_days: i64,
}

/// Closing the account: the password again.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"password": "violet tractor lemon"}))]
pub(crate) struct CloseRequest {
    #[serde(default)]
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

/// `GET /api/v1/me/tokens`: the account's personal tokens (never the tokens themselves).
#[utoipa::path(
    get,
    path = "/api/v1/me/tokens",
    tag = "tokens",
    summary = "Your personal access tokens (never the tokens themselves)",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The tokens", body = Vec<seldesk_accounts::ApiToken>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = [])),
)]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let tokens = state.accounts.api_tokens(&account.id).await?;
    let (tokens, next) = paging::page(
        tokens,
        |t| format!("{:030}|{}", t.created_at.unix_timestamp_nanos(), t.id),
        paging::Order::Newest,
        &q,
    )?;
    Ok(paging::announce(Json(tokens).into_response(), "/api/v1/me/tokens", &q, next))
}

/// `POST /api/v1/me/tokens`: a new personal token, shown in this response only.
#[utoipa::path(
    post,
    path = "/api/v1/me/tokens",
    tag = "tokens",
    summary = "Make a personal access token, shown in this answer only",
    request_body(content = NewTokenRequest, content_type = "application/json"),
    responses((status = 201, description = "The token, with `token` set this once", body = MadeToken), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = [])),
)]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NewTokenRequest = json(&body)?;
    let new = seldesk_accounts::NewToken::parse(&req.name, &req.scopes, req.expires_in_days)?;
    let (made, secret) = state.accounts.create_api_token(&account, new).await?;
    let location = format!("/api/v1/me/tokens/{}", made.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(MadeToken { about: made, token: secret }),
    )
        .into_response())
}

/// `GET /api/v1/me/tokens/{id}`: one personal token.
#[utoipa::path(
    get,
    path = "/api/v1/me/tokens/{id}",
    tag = "tokens",
    summary = "One personal access token",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "The token", body = seldesk_accounts::ApiToken), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = [])),
)]
pub(crate) async fn show_token(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    Path(id): Path<String>,
) -> Result<Json<seldesk_accounts::ApiToken>, ApiError> {
    let found = state.accounts.api_tokens(&account.id).await?.into_iter().find(|t| t.id == id);
    let t =
        found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "You hold no token with this id."))?;
    Ok(Json(t))
}

/// `DELETE /api/v1/me/tokens/{id}`: revokes a token at once.
#[utoipa::path(
    delete,
    path = "/api/v1/me/tokens/{id}",
    tag = "tokens",
    summary = "Revoke a personal access token at once",
    params(("id" = String, Path, description = "The id")),
    responses((status = 204, description = "Revoked"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = [])),
)]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.accounts.revoke_api_token(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "account",
    summary = "Your account: every field held",
    responses((status = 200, description = "The account", body = seldesk_accounts::Account), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:read"])),
)]
pub(crate) async fn me(ApiAccount(account): ApiAccount) -> Json<seldesk_accounts::Account> {
    Json(account)
}

#[utoipa::path(
    patch,
    path = "/api/v1/me",
    tag = "account",
    summary = "Correct your account",
    request_body(content = seldesk_accounts::ProfileUpdate, content_type = "application/json"),
    responses((status = 200, description = "The account as corrected", body = seldesk_accounts::Account), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:write"])),
)]
pub(crate) async fn update_me(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    body: Bytes,
) -> Result<Json<seldesk_accounts::Account>, ApiError> {
    let update: ProfileUpdate = json(&body)?;
    Ok(Json(state.accounts.update_profile(&account.id, update, &account.actor()).await?))
}

/// A personal-data request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "question", "message": "Where are my backups kept?"}))]
pub(crate) struct NewRequest {
    /// access, erasure, rectification, objection or question.
    kind: String,
    #[serde(default)]
    message: Option<String>,
    /// Your password, for access and erasure requests.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<SecretString>,
    /// The id of one of the account's databases the request is about (a
    /// support question: support staff may then look into that database).
    #[serde(default)]
    database: Option<String>,
    /// For an erasure: the account's e-mail address, typed to confirm.
    #[serde(default)]
    confirm: Option<String>,
}

/// A personal-data request as its maker sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RequestView {
    pub id: i64,
    /// access, erasure, rectification, objection or question.
    pub kind: &'static str,
    /// open, answered or closed.
    pub status: &'static str,
    /// The day the answer is due at the latest (RFC 3339).
    pub due: String,
    pub created_at: String,
    /// What was done, once answered.
    pub outcome: Option<String>,
    /// The database the request is about, when one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// For an access request: whether the archive is ready to download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_ready: Option<bool>,
    /// The conversation, on `GET /api/v1/me/requests/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<seldesk_accounts::TicketMessage>>,
}

impl RequestView {
    fn of(t: &seldesk_accounts::Ticket) -> Self {
        let fmt =
            |d: time::OffsetDateTime| d.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Self {
            id: t.id,
            kind: t.kind.as_str(),
            status: t.status.as_str(),
            due: fmt(t.due_at),
            created_at: fmt(t.created_at),
            outcome: t.outcome.clone(),
            database: None,
            download_ready: None,
            messages: None,
        }
    }
}

/// What an erasure would do.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErasurePreview {
    /// Each database the erasure removes (export it first to keep it).
    pub databases_removed: Vec<DatabaseToRemove>,
    /// What is kept, and why.
    pub kept: String,
    /// How to confirm.
    pub confirm: String,
}

/// A database an erasure removes.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DatabaseToRemove {
    pub id: String,
    pub name: String,
    pub region: String,
    /// Where to export it first.
    pub export: String,
    /// The day its last backup is destroyed.
    pub backups_destroyed_by: String,
}

/// A closed account.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Closed {
    /// Always `closed`.
    pub status: &'static str,
    /// The day it is erased unless you sign in before.
    pub erased_on: String,
}

/// What an erasure request would do, before it is made: the databases it
/// removes (export them first), and how to confirm it.
#[utoipa::path(
    get,
    path = "/api/v1/me/erasure",
    tag = "account",
    summary = "What an erasure would remove and keep",
    responses((status = 200, description = "The preview", body = ErasurePreview), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:read"])),
)]
pub(crate) async fn erasure_preview(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
) -> Result<Response, ApiError> {
    let databases = state.databases.list(&account.id).await.map_err(ApiError::from)?;
    let backups = state.policy.backups.max_age.after(state.clock.now()).date().to_string();
    let databases_removed = databases
        .iter()
        .map(|d| DatabaseToRemove {
            id: d.id.clone(),
            name: d.name.clone(),
            region: d.region.clone(),
            export: format!("/api/v1/databases/{}/export", d.id),
            backups_destroyed_by: backups.clone(),
        })
        .collect();
    Ok(Json(ErasurePreview {
        databases_removed,
        kept: "Invoices and payment records, in a restricted archive for the legal period of your country; the receipt lists each with its date.".into(),
        confirm: format!("POST /api/v1/me/requests with kind \"erasure\", your password, and \"confirm\": \"{}\"", account.email),
    })
    .into_response())
}

/// Closes the account (not an erasure): kept for the policy's period, then
/// erased; signing in before then reopens it. Databases must be removed first.
#[utoipa::path(
    post,
    path = "/api/v1/me/close",
    tag = "account",
    summary = "Close the account (kept for the policy period, then erased)",
    request_body(content = CloseRequest, content_type = "application/json"),
    responses((status = 200, description = "Closed; the day it will be erased", body = Closed), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:write"])),
)]
pub(crate) async fn close_account(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CloseRequest = json(&body)?;
    state.accounts.confirm_password(&account.id, req.password.expose_secret()).await?;
    let open = state.databases.list(&account.id).await.map_err(ApiError::from)?;
    if !open.is_empty() {
        let names: Vec<&str> = open.iter().map(|d| d.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "databases_left",
            format!("Remove your databases first (export them if you want to keep them): {}.", names.join(", ")),
        ));
    }
    let erase_on = state.accounts.close_account(&account).await?;
    Ok(Json(Closed { status: "closed", erased_on: erase_on.to_string() }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/me/requests",
    tag = "account",
    summary = "Make a personal-data request (access, erasure, rectification, objection, question)",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry with the same key to get the first result, never a second object (see /api/docs)")),
    request_body(content = NewRequest, content_type = "application/json"),
    responses((status = 201, description = "The request; its address in Location", body = RequestView), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:write"])),
)]
pub(crate) async fn create_request(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NewRequest = json(&body)?;
    let kind = TicketKind::parse(&req.kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "`kind` must be one of access, erasure, rectification, objection, question.",
        )
    })?;
    // Only one of the account's own databases can be named.
    let database = match &req.database {
        Some(id) => Some(state.databases.get(&account.id, id).await.map_err(ApiError::from)?.id),
        None => None,
    };
    let t = state
        .accounts
        .request(
            &account,
            kind,
            req.message.as_deref(),
            req.password.as_ref().map(ExposeSecret::expose_secret),
            req.confirm.as_deref(),
        )
        .await?;
    if let Some(db) = &database {
        state.accounts.link_ticket_to_database(&account, t.id, db).await?;
    }
    let body = RequestView { database, ..RequestView::of(&t) };
    Ok(crate::errors::created(StatusCode::CREATED, format!("/api/v1/me/requests/{}", t.id), body))
}

#[utoipa::path(
    get,
    path = "/api/v1/me/requests",
    tag = "account",
    summary = "Your personal-data requests",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The requests, newest first", body = Vec<RequestView>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:read"])),
)]
pub(crate) async fn list_requests(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let tickets = state.accounts.tickets_of(&account.id).await?;
    let (tickets, next) = paging::page(tickets, |t| format!("{:020}", t.id), paging::Order::Newest, &q)?;
    let body = Json(tickets.iter().map(RequestView::of).collect::<Vec<_>>()).into_response();
    Ok(paging::announce(body, "/api/v1/me/requests", &q, next))
}

#[utoipa::path(
    get,
    path = "/api/v1/me/requests/{id}",
    tag = "account",
    summary = "One personal-data request and its messages",
    params(("id" = i64, Path, description = "The request number")),
    responses((status = 200, description = "The request", body = RequestView), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:read"])),
)]
pub(crate) async fn request(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    Path(id): Path<i64>,
) -> Result<Json<RequestView>, ApiError> {
    let t = state.accounts.own_ticket(&account, id).await?;
    let ready = t.kind == TicketKind::Access && state.accounts.export_ready(&account, id).await?;
    let messages = state.accounts.messages(id).await?;
    Ok(Json(RequestView { download_ready: Some(ready), messages: Some(messages), ..RequestView::of(&t) }))
}

/// The archive, once the password is given again in `X-Seldesk-Password`.
#[utoipa::path(
    get,
    path = "/api/v1/me/requests/{id}/download",
    tag = "account",
    summary = "Download the archive of an access request (password again in X-Seldesk-Password)",
    params(("id" = i64, Path, description = "The request number"), ("X-Seldesk-Password" = String, Header, description = "Your password again")),
    responses((status = 200, description = "The archive", body = Vec<u8>, content_type = "application/zip"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["account:read"])),
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    ApiAccount(account): ApiAccount,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let password = headers.get("x-seldesk-password").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if password.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send your password again in the X-Seldesk-Password header to download the archive.",
        ));
    }
    let bytes = state.accounts.download_export(&account, id, password).await?;
    Ok(crate::account_pages::zip_response(id, bytes))
}
