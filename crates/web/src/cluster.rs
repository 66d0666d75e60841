//! Any node answers for any database (issue 30, item 4). A request for a
//! customer database whose home is another node, or a new database in a
//! region this node does not serve, is forwarded to that node's internal
//! listener with the cluster's secret; the answer streams back as it comes
//! (exports and imports are never held whole). The user never sees which
//! node answered. A home node that is down answers 503 with `Retry-After`
//! naming the data center; every other database keeps working.
//!
//! The internal listener serves the same site, behind [`internal_gate`]:
//! a request without the secret is refused and audited; one with it is
//! handled as if it came from the client the forwarding node names, and is
//! never forwarded again (no loops).

use seldesk_domain::Fault;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use seldesk_domain::Actor;
use seldesk_tenants::TenantError;
use seldesk_tenants::nodes::NodeInfo;
use seldesk_tenants::transfer::{Destination, Manifest, Step, Transfer, Transport};

use crate::AppState;
use crate::errors::ApiError;

/// The cluster's secret on a forwarded request.
pub const SECRET_HEADER: &str = "x-seldesk-cluster";
/// The client's address, as the forwarding node saw it.
pub const CLIENT_HEADER: &str = "x-seldesk-client";
/// The node that forwarded the request.
pub const VIA_HEADER: &str = "x-seldesk-forwarded-by";
/// On an answer: the database was moved away from the answering node (the
/// forwarding node forgets where it thought it lived).
pub const MOVED_HEADER: &str = "x-seldesk-moved";

/// How long the list of nodes is reused before it is read again.
const PEERS_FOR: Duration = Duration::from_secs(2);

/// Largest body read to find the region of a new database (a JSON or form
/// body of a few fields); a larger one is handled here, not forwarded.
const PEEK_LIMIT: usize = 64 * 1024;

/// The nodes as last read, and when.
type PeerCache = Arc<Mutex<Option<(Instant, Vec<NodeInfo>)>>>;

/// Where each database lives (region, home node), as last read, and when.
type HomeCache = Arc<Mutex<std::collections::HashMap<String, (Instant, Option<(String, Option<String>)>)>>>;

/// How long where a database lives is reused: a move or a removal is seen
/// by every node within this (a request in between reaches the old home,
/// which answers that the database is not there).
const HOMES_FOR: Duration = Duration::from_secs(2);

/// Most databases whose home is remembered; past it the memory starts afresh.
const HOMES_MAX: usize = 100_000;

/// This node's part in the cluster.
#[derive(Clone)]
pub struct Cluster {
    node: String,
    secret: blake3::Hash,
    secret_value: HeaderValue,
    client: reqwest::Client,
    peers: PeerCache,
    homes: HomeCache,
}

/// Why a cluster cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(String);

impl Cluster {
    /// `secret`: the shared secret (at least 32 characters).
    pub fn new(node: String, secret: &str) -> Result<Self, ClusterError> {
        let secret = secret.trim();
        if secret.len() < 32 {
            return Err(ClusterError("the cluster secret must be at least 32 characters".into()));
        }
        let secret_value = HeaderValue::from_str(secret)
            .map_err(|_| ClusterError("the cluster secret must be printable ASCII".into()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClusterError(format!("no HTTP client: {e}")))?;
        Ok(Self {
            node,
            secret: blake3::hash(secret.as_bytes()),
            secret_value,
            client,
            peers: Arc::new(Mutex::new(None)),
            homes: Arc::new(Mutex::new(std::collections::HashMap::new())),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn secret_matches(&self, given: &[u8]) -> bool {
        // Compared as hashes: blake3's equality takes the same time whatever differs.
        blake3::hash(given) == self.secret
    }

    /// Where database `id` lives, from memory when read within [`HOMES_FOR`].
    async fn home(&self, state: &AppState, id: &str) -> Option<(String, Option<String>)> {
        if let Ok(homes) = self.homes.lock()
            && let Some((at, home)) = homes.get(id)
            && at.elapsed() < HOMES_FOR
        {
            return home.clone();
        }
        let home = state.databases.home(id).await.ok().flatten();
        if let Ok(mut homes) = self.homes.lock() {
            if homes.len() >= HOMES_MAX {
                homes.clear();
            }
            homes.insert(id.to_string(), (Instant::now(), home.clone()));
        }
        home
    }

    /// Forgets where database `id` lives (it moved).
    fn forget(&self, id: &str) {
        if let Ok(mut homes) = self.homes.lock() {
            homes.remove(id);
        }
    }

    async fn peers(&self, state: &AppState) -> Vec<NodeInfo> {
        if let Ok(cached) = self.peers.lock()
            && let Some((at, list)) = cached.as_ref()
            && at.elapsed() < PEERS_FOR
        {
            return list.clone();
        }
        let list = state.databases.nodes().list().await.unwrap_or_default();
        if let Ok(mut cached) = self.peers.lock() {
            *cached = Some((Instant::now(), list.clone()));
        }
        list
    }
}

/// How this node sends databases to other nodes (moves, drains): their
/// internal listeners, with the cluster's secret.
#[derive(Clone)]
pub struct PeerLink {
    cluster: Cluster,
}

impl PeerLink {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }
}

impl Transport for PeerLink {
    fn to(&self, node: &NodeInfo) -> Arc<dyn Destination> {
        Arc::new(RemoteNode { cluster: self.cluster.clone(), node: node.name.clone(), address: node.address.clone() })
    }
}

/// Another node receiving a database.
struct RemoteNode {
    cluster: Cluster,
    node: String,
    address: String,
}

impl RemoteNode {
    async fn post(&self, path: &str, t: &Transfer, body: Vec<u8>, wait: Duration) -> Result<(), TenantError> {
        let query = serde_urlencoded::to_string(t)
            .map_err(|e| TenantError::Internal(Fault::new("encoding the forwarded query", e)))?;
        let url = format!("{}{path}?{query}", self.address.trim_end_matches('/'));
        let sent = self
            .cluster
            .client
            .post(url)
            .header(SECRET_HEADER, self.cluster.secret_value.clone())
            .header(VIA_HEADER, self.cluster.node())
            .timeout(wait)
            .body(body)
            .send()
            .await
            .map_err(|e| TenantError::Unavailable(format!("node {} did not answer: {e}", self.node)))?;
        if sent.status().is_success() {
            return Ok(());
        }
        let status = sent.status();
        let text = sent.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        let message = format!("node {} refused ({status}): {message}", self.node);
        Err(match status {
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => TenantError::Conflict(message),
            StatusCode::SERVICE_UNAVAILABLE => TenantError::Unavailable(message),
            _ => TenantError::Internal(Fault::msg(message)),
        })
    }
}

impl Destination for RemoteNode {
    fn begin<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()> {
        Box::pin(self.post(crate::transfers::BEGIN, t, Vec::new(), Duration::from_secs(30)))
    }
    fn send<'a>(&'a self, t: &'a Transfer, batch: Vec<u8>) -> Step<'a, ()> {
        Box::pin(self.post(crate::transfers::BATCH, t, batch, Duration::from_secs(120)))
    }
    fn commit<'a>(&'a self, t: &'a Transfer, m: &'a Manifest) -> Step<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_vec(m)
                .map_err(|e| TenantError::Internal(Fault::new("encoding the forwarded body", e)))?;
            // The receiver hashes the whole copy before it answers.
            self.post(crate::transfers::COMMIT, t, body, Duration::from_secs(600)).await
        })
    }
    fn abort<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()> {
        Box::pin(self.post(crate::transfers::ABORT, t, Vec::new(), Duration::from_secs(30)))
    }
}

/// Where a request goes.
enum Route {
    Here,
    Node(NodeInfo),
    /// The region's node is down: its name for the answer.
    Down(String),
}

/// The database a path names: `/api/v1/databases/{id}…` or `/databases/{id}…`.
fn database_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/databases/").or_else(|| path.strip_prefix("/databases/"))?;
    let id = rest.split('/').next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(id)
}

fn region_name(state: &AppState, region: &str) -> String {
    state.policy.region(region).map(|r| r.name.clone()).unwrap_or_else(|| region.to_string())
}

/// A live node serving `region` other than this one, one that is not
/// being drained first.
fn serving<'a>(peers: &'a [NodeInfo], me: &str, region: &str) -> Option<&'a NodeInfo> {
    let mut candidates = peers
        .iter()
        .filter(|n| n.live && n.name != me && !n.address.is_empty() && n.regions.iter().any(|r| r == region));
    let all: Vec<&NodeInfo> = candidates.by_ref().collect();
    all.iter().find(|n| !n.draining).or(all.first()).copied()
}

/// Where a request for database `id` goes, and the name of its region.
async fn route_database(state: &AppState, cluster: &Cluster, id: &str) -> (Route, String) {
    let mut found = cluster.home(state, id).await;
    if state.databases.moved_away_recently(id) {
        // This node sent it away: where it lived a moment ago is stale.
        cluster.forget(id);
        found = cluster.home(state, id).await;
    }
    let Some((region, home)) = found else { return (Route::Here, String::new()) };
    let name = region_name(state, &region);
    let here = match &home {
        Some(h) => h == cluster.node(),
        None => state.databases.files().serves(&region),
    };
    if here {
        return (Route::Here, name);
    }
    let peers = cluster.peers(state).await;
    let target = match &home {
        Some(h) => peers.iter().find(|n| &n.name == h && n.live && !n.address.is_empty()),
        None => serving(&peers, cluster.node(), &region),
    };
    let route = match target {
        Some(n) => Route::Node(n.clone()),
        None => Route::Down(name.clone()),
    };
    (route, name)
}

async fn route_region(state: &AppState, cluster: &Cluster, region: &str) -> Route {
    if state.databases.files().serves(region) {
        return Route::Here;
    }
    match serving(&cluster.peers(state).await, cluster.node(), region) {
        Some(n) => Route::Node(n.clone()),
        // Placement answers: nothing is created, and it says why.
        None => Route::Here,
    }
}

/// The region a request to make a database names: the `region` query
/// parameter of an import, the `region` field of a create (JSON or form).
async fn region_of(req: Request) -> (Request, Option<String>) {
    let (path, method) = (req.uri().path().to_string(), req.method().clone());
    if method != Method::POST {
        return (req, None);
    }
    if path == "/api/v1/databases/import" {
        let region = req.uri().query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "region")
                .map(|(_, v)| v)
        });
        return (req, region);
    }
    if path != "/api/v1/databases" && path != "/databases" {
        return (req, None);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, PEEK_LIMIT).await else {
        // Too large for a create: refused here as it would be anyway.
        return (Request::from_parts(parts, Body::empty()), None);
    };
    let json =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let region = if json {
        serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v["region"].as_str().map(str::to_string))
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|f| f.into_iter().find(|(k, _)| k == "region").map(|(_, v)| v))
    };
    (Request::from_parts(parts, Body::from(bytes)), region.filter(|r| !r.is_empty()))
}

/// Headers that belong to one connection, never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    ) || [SECRET_HEADER, CLIENT_HEADER, VIA_HEADER].contains(&name.as_str())
}

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (k, v) in from {
        if !hop_by_hop(k) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

fn unavailable(req_is_api: bool, region: &str) -> Response {
    let message = format!(
        "The {region} data center is not reachable right now; your database is safe there. Please try again in a minute."
    );
    let mut r = if req_is_api {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": "unavailable", "message": message })))
            .into_response()
    } else {
        crate::pages::message_page(StatusCode::SERVICE_UNAVAILABLE, "Data center unavailable", &message)
    };
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    r
}

async fn proxy(cluster: &Cluster, node: &NodeInfo, req: Request, client: IpAddr, region: &str) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let (parts, body) = req.into_parts();
    let url = format!(
        "{}{}",
        node.address.trim_end_matches('/'),
        parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut headers = copy_headers(&parts.headers);
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, len.clone());
    }
    headers.insert(HeaderName::from_static(SECRET_HEADER), cluster.secret_value.clone());
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        headers.insert(HeaderName::from_static(CLIENT_HEADER), v);
    }
    if let Ok(v) = HeaderValue::from_str(cluster.node()) {
        headers.insert(HeaderName::from_static(VIA_HEADER), v);
    }
    let started = Instant::now();
    let sent = cluster
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    metrics::histogram!("seldesk_forwarded_request_seconds").record(started.elapsed().as_secs_f64());
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            metrics::counter!("seldesk_forwarded_requests_total", "outcome" => "unreachable").increment(1);
            tracing::warn!(node = %node.name, error = %e, "forwarding failed");
            return unavailable(is_api, region);
        }
    };
    metrics::counter!("seldesk_forwarded_requests_total", "outcome" => "answered").increment(1);
    if answer.headers().contains_key(MOVED_HEADER)
        && let Some(id) = database_of(parts.uri.path())
    {
        cluster.forget(id);
    }
    let mut out = Response::builder().status(answer.status());
    if let Some(h) = out.headers_mut() {
        *h = copy_headers(answer.headers());
        if let Some(len) = answer.headers().get(header::CONTENT_LENGTH) {
            h.insert(header::CONTENT_LENGTH, len.clone());
        }
    }
    out.body(Body::from_stream(answer.bytes_stream())).unwrap_or_else(|_| unavailable(is_api, region))
}

/// Sends a request to the node that holds its database (module docs).
pub(crate) async fn forward(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else { return next.run(req).await };
    let client =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (req, route, region) = match database_of(req.uri().path()).map(str::to_string) {
        Some(id) => {
            let (route, region) = route_database(&state, &cluster, &id).await;
            (req, route, region)
        }
        None => {
            let (req, region) = region_of(req).await;
            match region {
                Some(r) => {
                    let route = route_region(&state, &cluster, &r).await;
                    (req, route, region_name(&state, &r))
                }
                None => (req, Route::Here, String::new()),
            }
        }
    };
    match route {
        Route::Here => next.run(req).await,
        Route::Node(node) => proxy(&cluster, &node, req, client, &region).await,
        Route::Down(name) => unavailable(req.uri().path().starts_with("/api/"), &name),
    }
}

/// The internal listener's gate: the cluster's secret, or a refusal that is
/// audited; a request let in is seen as coming from the client it names.
pub(crate) async fn internal_gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let allowed = match (&state.cluster, req.headers().get(SECRET_HEADER)) {
        (Some(cluster), Some(given)) => cluster.secret_matches(given.as_bytes()),
        _ => false,
    };
    if !allowed {
        let _ = state
            .audit
            .record(
                &Actor::System,
                "cluster.refused",
                None,
                None,
                serde_json::json!({
                    "peer": peer.map(|p| p.to_string()),
                    "path": req.uri().path(),
                    "reason": if req.headers().contains_key(SECRET_HEADER) { "wrong secret" } else { "no secret" },
                }),
            )
            .await;
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "unauthorized",
                "message": "This listener takes requests from the cluster's nodes only.",
            })),
        )
            .into_response();
    }
    let client = req.headers().get(CLIENT_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<IpAddr>().ok());
    if let (Some(ip), Some(peer)) = (client, peer) {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, peer.port())));
    }
    for h in [SECRET_HEADER, CLIENT_HEADER, VIA_HEADER] {
        req.headers_mut().remove(h);
    }
    // Forwarded here by a node that did not know yet that this one sent the
    // database away: the client retries and reaches its new home.
    if let Some(id) = database_of(req.uri().path())
        && state.databases.moved_away_recently(id)
    {
        let busy = seldesk_tenants::TenantError::Busy(
            "This database has just moved to another data center; please try again in a second.".into(),
        );
        let mut r = ApiError::from(busy).into_response();
        r.headers_mut().insert(HeaderName::from_static(MOVED_HEADER), HeaderValue::from_static("1"));
        return r;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_path_is_its_id_segment_only() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(database_of(&format!("/api/v1/databases/{id}/contacts")), Some(id));
        assert_eq!(database_of(&format!("/databases/{id}")), Some(id));
        assert_eq!(database_of("/api/v1/databases/import"), None);
        assert_eq!(database_of("/api/v1/databases"), None);
        assert_eq!(database_of(&format!("/databases/{}", id.to_uppercase())), None);
        assert_eq!(database_of("/databases/../etc"), None);
    }

    #[test]
    fn a_short_secret_is_refused_and_the_right_one_matches() {
        assert!(Cluster::new("a".into(), "short").is_err());
        let c = Cluster::new("a".into(), &"s".repeat(40)).expect("cluster");
        assert!(c.secret_matches("s".repeat(40).as_bytes()));
        assert!(!c.secret_matches("s".repeat(39).as_bytes()));
        for h in [SECRET_HEADER, CLIENT_HEADER, VIA_HEADER, "host", "connection"] {
            assert!(hop_by_hop(&HeaderName::from_static(h)), "{h} is not passed on");
        }
    }
}
