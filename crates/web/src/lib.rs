//! The web layer: public pages, `/healthz`, and the admin listener with
//! Prometheus `/metrics`. Handlers are thin: they ask the domain (the policy
//! object, the stores) and render.

mod account_pages;
mod api;
pub mod auth;
mod billing_pages;
mod card_guard;
mod careers_pages;
pub mod cluster;
mod consent;
pub mod cookies;
mod db_api;
mod db_pages;
mod errors;
pub mod frame;
pub mod i18n;
pub mod idempotency;
mod markdown;
mod marketing_pages;
pub mod openapi;
mod pages;
pub mod paging;
pub mod proxy;
mod staff_pages;
pub mod transfers;
mod upgrade_pages;
mod visits_pages;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use seldesk_domain::{Clock, Policy};
use seldesk_store::Db;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use markdown::markdown_to_html;

/// What every handler can reach: a shared handle, so that giving it to a
/// handler or a layer (axum clones the state for every extractor) costs one
/// reference count, not a copy of every service (that was a third of the
/// CPU time of an API request, docs/benchmarks.md).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

/// The services and settings behind [`AppState`].
pub struct AppParts {
    pub policy: Arc<Policy>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub accounts: seldesk_accounts::Accounts,
    pub retention: seldesk_privacy::RetentionEngine,
    pub databases: seldesk_tenants::Databases,
    pub careers: seldesk_careers::Careers,
    pub upgrades: seldesk_upgrades::Upgrades,
    /// Preferences, campaigns, events, partners and trends (issue 10).
    pub marketing: seldesk_marketing::Marketing,
    /// The vault: snapshots, owner restores, the staff listing (issue 5).
    pub backups: seldesk_vault::Backups,
    /// Plans, checkout, invoices, webhooks, the finance console (issue 9).
    pub billing: seldesk_billing::Billing,
    /// Browser data: the recorder (BRW-2), partitions and aggregates.
    pub visits: seldesk_visits::Visits,
    pub web: WebSettings,
    /// The audit trail (refusals at the cluster's internal listener).
    pub audit: seldesk_privacy::AuditLog,
    /// This node's part in a cluster; None for a single node.
    pub cluster: Option<cluster::Cluster>,
    /// The public site, once built: what an idempotent retry reads the
    /// created thing back through.
    pub site: OnceLock<Router>,
}

/// Web settings from the configuration.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// This node's name in the cluster (shown by /healthz).
    pub node_name: String,
    /// The site's public address without a trailing slash, for the sitemap.
    pub public_url: String,
    /// Mark cookies `Secure` (set when the site is served over TLS).
    pub secure_cookies: bool,
    /// Google Analytics measurement id; its script loads only after consent (CK-4).
    pub google_analytics_id: Option<String>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// server started in this process, as tests start several).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program's); then
            // our handle still renders what it has, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The public site and API.
pub fn router(state: AppState) -> Router {
    site(state, false)
}

/// The internal listener: the same site for requests the cluster's other
/// nodes forward, behind the cluster's secret; never forwarded again.
pub fn internal_router(state: AppState) -> Router {
    site(state, true)
}

fn site(state: AppState, internal: bool) -> Router {
    let app = build_site(state.clone(), internal);
    if !internal {
        let _ = state.site.set(app.clone());
    }
    app
}

fn build_site(state: AppState, internal: bool) -> Router {
    let security_headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
        ),
        (HeaderName::from_static("permissions-policy"), "geolocation=(), camera=(), microphone=()"),
    ];
    // Ordinary requests are small; only database imports carry large bodies.
    let small = pages::routes()
        .merge(account_pages::routes())
        .merge(staff_pages::routes())
        .merge(api::routes())
        .merge(db_api::routes())
        .merge(db_pages::routes())
        .merge(consent::routes())
        .merge(staff_pages::support_routes())
        .merge(staff_pages::hold_routes())
        .merge(staff_pages::people_routes())
        .merge(careers_pages::routes())
        .merge(visits_pages::routes())
        .merge(upgrade_pages::routes())
        .merge(marketing_pages::routes())
        .merge(billing_pages::routes())
        .route("/healthz", get(healthz))
        .layer(RequestBodyLimitLayer::new(1024 * 1024));
    let large = db_api::upload_routes()
        .merge(db_pages::upload_routes())
        .merge(upgrade_pages::upload_routes())
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(seldesk_tenants::files::MAX_IMPORT_BYTES as usize));
    let attachments = db_api::attachment_routes()
        .layer(axum::extract::DefaultBodyLimit::max(seldesk_tenants::app::MAX_ATTACHMENT_BYTES + 1))
        .layer(RequestBodyLimitLayer::new(seldesk_tenants::app::MAX_ATTACHMENT_BYTES + 1));
    let cvs = careers_pages::upload_routes().layer(axum::extract::DefaultBodyLimit::max(careers_pages::UPLOAD_LIMIT));
    let large = large.merge(attachments).merge(cvs);
    let app = small
        .merge(large)
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .fallback(pages::not_found)
        .layer(middleware::from_fn(errors::api_problems))
        .layer(middleware::from_fn(auth::csrf_layer))
        .layer(middleware::from_fn_with_state(state.clone(), consent::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), record_visit))
        .layer(middleware::from_fn_with_state(state.clone(), frame::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), i18n::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), billing_pages::simulated_payments))
        .layer(middleware::from_fn_with_state(state.clone(), auth::session_cookies));
    // A request for another node's database leaves here, the client's
    // address known; one that came from another node is not sent on.
    let app = match internal {
        false => app.layer(middleware::from_fn_with_state(state.clone(), cluster::forward)),
        true => app.merge(transfers::routes()),
    };
    let mut app = app
        .layer(middleware::from_fn_with_state(state.clone(), proxy::client_address))
        .with_state(state.clone())
        .layer(middleware::from_fn(card_guard::middleware))
        .layer(middleware::from_fn(record_metrics));
    if internal {
        app = app.layer(middleware::from_fn_with_state(state, cluster::internal_gate));
    }
    for (name, value) in security_headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value)));
    }
    app.layer(compression()).layer(TraceLayer::new_for_http()).layer(CatchPanicLayer::new())
}

/// Brotli or gzip, as the browser asks, for text the site renders: pages,
/// the stylesheet, JSON. Never for archives, database files, PDFs or
/// uploads (already compressed, or read with `Range`), nor for bodies too
/// small to gain.
fn compression() -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    fn text(_: StatusCode, _: axum::http::Version, h: &axum::http::HeaderMap, _: &axum::http::Extensions) -> bool {
        let kind = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let kind = kind.split(';').next().unwrap_or("").trim();
        kind.starts_with("text/")
            || matches!(kind, "application/json" | "application/problem+json" | "image/svg+xml" | "application/xml")
    }
    // Brotli's default quality (11) is meant for files compressed once;
    // on every response it would cost milliseconds a page. Quality 4 keeps
    // most of the gain for a fraction of the time (as CDNs compress dynamic
    // pages); gzip at 4 likewise.
    tower_http::compression::CompressionLayer::new()
        .no_deflate()
        .no_zstd()
        .quality(tower_http::CompressionLevel::Precise(4))
        .compress_when(SizeAbove::new(512).and(text as fn(_, _, &_, &_) -> bool))
}

/// The admin listener: metrics and health, never exposed with the site.
pub fn admin_router(state: AppState) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()) }
            }),
        )
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// 200 when the control-plane database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db = tokio::time::timeout(Duration::from_secs(5), state.db.ping()).await;
    let ok = matches!(db, Ok(Ok(())));
    let regions: Vec<String> = state.databases.files().served().map(<[String]>::to_vec).unwrap_or_default();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": if ok { "ok" } else { "unreachable" },
        "version": env!("CARGO_PKG_VERSION"),
        "checked_in_ms": started.elapsed().as_millis(),
        "node": state.web.node_name,
        "regions": regions,
        // One node serving several data centers keeps them as folders of
        // one machine: not physically separate (docs/scaling-out.md).
        "regions_physically_separate": regions.len() <= 1,
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Records each page request (BRW-2): never waits, never fails the request.
async fn record_visit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let page = req.method() == axum::http::Method::GET
        && !["/static/", "/api/", "/healthz"].iter().any(|p| path.starts_with(p));
    if page {
        let h = req.headers();
        let text = |name: header::HeaderName| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let language = text(header::ACCEPT_LANGUAGE).and_then(|l| seldesk_visits::first_language(&l));
        // Without a geolocation database, the region of the language tag
        // (en-IN → IN) is the best guess of the country.
        let country = language
            .as_deref()
            .and_then(|l| l.split('-').nth(1))
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase);
        // Secrets in addresses (private links) are recorded as their route.
        let path = match req.extensions().get::<MatchedPath>() {
            Some(m) if m.as_str().contains("{token}") => m.as_str().to_string(),
            _ => path.chars().take(500).collect(),
        };
        let session = auth::cookie(h, auth::SESSION_COOKIE).map(|t| seldesk_accounts::secret::token_hash(&t));
        state.visits.recorder.record(seldesk_visits::Visit {
            at: state.clock.now(),
            ip: auth::client_ip(req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()),
            browser: String::new(),
            browser_version: String::new(),
            platform: String::new(),
            referrer: text(header::REFERER).map(|r| r.chars().take(500).collect()),
            path,
            language,
            country,
            person: None,
            session,
            user_agent: Some(text(header::USER_AGENT).unwrap_or_default()),
            visit: consent::consented_visit(&state, h),
        });
    }
    next.run(req).await
}

/// Counts requests and their latency by route, not by raw path (no IDs or
/// personal data in metric labels).
async fn record_metrics(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("seldesk_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("seldesk_http_request_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}
