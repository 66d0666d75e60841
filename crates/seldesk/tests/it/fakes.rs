#![allow(dead_code)]
//! Local fakes of the PayPal (Orders v2, OAuth, webhook verification) and
//! Ingenico / Worldline Direct (hosted checkout, token payments, refunds)
//! APIs, served by one axum server on loopback.
//!
//! Point both processors' API base URL at [`FakeProcessors::base`]. The
//! buyer pages (`/fake/...`) stand in for the processors' hosted pages: a
//! GET on them answers 303 to the merchant's return URL.
//!
//! Every API request is recorded (also the rejected ones) before it is
//! handled; the buyer pages are not.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The PayPal payer id put on the approve redirect (`PayerID=`).
pub const FAKE_PAYER_ID: &str = "FAKEPAYER1";

/// Both fakes, served until this is dropped.
pub struct FakeProcessors {
    base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

/// One API request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// "paypal", "ingenico", or "unknown" for a path neither fake serves.
    pub processor: &'static str,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names are lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty or not JSON (e.g. a form).
    pub body: Value,
    /// The body as text (lossy UTF-8).
    pub raw: String,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl FakeProcessors {
    pub const PAYPAL_CLIENT_ID: &'static str = "fake-paypal-client-id";
    pub const PAYPAL_SECRET: &'static str = "fake-paypal-secret";
    pub const PAYPAL_WEBHOOK_ID: &'static str = "FAKEWEBHOOK0001";
    pub const INGENICO_MERCHANT: &'static str = "fakemerchant";
    pub const INGENICO_KEY_ID: &'static str = "fake-ingenico-key-id";
    pub const INGENICO_SECRET: &'static str = "fake-ingenico-secret";
    pub const INGENICO_WEBHOOK_KEY_ID: &'static str = "fake-ingenico-webhook-key-id";
    pub const INGENICO_WEBHOOK_SECRET: &'static str = "fake-ingenico-webhook-secret";

    /// Starts one axum server on 127.0.0.1:0 serving both fakes.
    pub async fn start() -> FakeProcessors {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake processors");
        let addr = listener.local_addr().expect("fake processors' address");
        let base = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State::default()));
        let ctx = Ctx { base: base.clone().into(), state: state.clone() };
        let app = Router::new().fallback(handle).with_state(ctx);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake processors stopped: {e}");
            }
        });
        FakeProcessors { base, state, task }
    }

    /// "http://127.0.0.1:PORT", the API base of both processors.
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// Every API request received (not the buyer pages), in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The payment an Ingenico hosted checkout created, once the buyer paid.
    pub fn ingenico_payment_of(&self, hosted_checkout: &str) -> Option<String> {
        match &lock(&self.state).ingenico_checkouts.get(hosted_checkout)?.status {
            CheckoutStatus::Paid(id) => Some(id.clone()),
            _ => None,
        }
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Makes the next `n` token (renewal) charges decline, PayPal's and
    /// Ingenico's alike (one counter; replaces what was pending).
    pub fn decline_next_charges(&self, n: usize) {
        lock(&self.state).declines = n;
    }

    /// A signed PayPal webhook: (headers, body) to POST to our endpoint. The
    /// signature is valid for this fake's verify endpoint as long as the body
    /// is sent back unchanged as `webhook_event`.
    pub fn paypal_webhook(&self, event: &Value) -> (Vec<(String, String)>, String) {
        let body = serde_json::to_string(event).expect("serialise the webhook event");
        let transmission_id = Uuid::now_v7().hyphenated().to_string();
        let time = rfc3339(SystemTime::now());
        let sig = paypal_transmission_sig(&transmission_id, &time, Self::PAYPAL_WEBHOOK_ID, &body);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("PAYPAL-AUTH-ALGO".to_string(), "SHA256withRSA".to_string()),
            ("PAYPAL-CERT-URL".to_string(), format!("{}/fake/paypal/certs/CERT-FAKE-1", self.base)),
            ("PAYPAL-TRANSMISSION-ID".to_string(), transmission_id),
            ("PAYPAL-TRANSMISSION-SIG".to_string(), sig),
            ("PAYPAL-TRANSMISSION-TIME".to_string(), time),
        ];
        (headers, body)
    }

    /// A signed Ingenico webhook: (headers, body) with `X-GCS-Signature` =
    /// base64(HMAC-SHA256(INGENICO_WEBHOOK_SECRET, body)) and `X-GCS-KeyId`.
    pub fn ingenico_webhook(&self, event: &Value) -> (Vec<(String, String)>, String) {
        let body = serde_json::to_string(event).expect("serialise the webhook event");
        let sig = hmac_b64(Self::INGENICO_WEBHOOK_SECRET, &body);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-GCS-Signature".to_string(), sig),
            ("X-GCS-KeyId".to_string(), Self::INGENICO_WEBHOOK_KEY_ID.to_string()),
        ];
        (headers, body)
    }

    /// The `Authorization` value the Ingenico fake expects:
    /// `GCS v1HMAC:<key id>:<base64(HMAC-SHA256(secret, "METHOD\nContent-Type\nDate\npath\n"))>`.
    pub fn ingenico_authorization(method: &str, content_type: &str, date: &str, path: &str) -> String {
        let signed = format!("{method}\n{content_type}\n{date}\n{path}\n");
        format!("GCS v1HMAC:{}:{}", Self::INGENICO_KEY_ID, hmac_b64(Self::INGENICO_SECRET, &signed))
    }

    /// An RFC 1123 date for the `Date` header, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    pub fn http_date(t: SystemTime) -> String {
        http_date(t)
    }
}

impl Drop for FakeProcessors {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- state

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    declines: usize,
    /// (scope, idempotency key) -> the successful answer first given.
    idempotent: HashMap<(&'static str, String), (u16, Value)>,
    paypal_tokens: HashSet<String>,
    paypal_orders: HashMap<String, PaypalOrder>,
    paypal_captures: HashMap<String, Capture>,
    paypal_vaults: HashSet<String>,
    ingenico_checkouts: HashMap<String, HostedCheckout>,
    ingenico_payments: HashMap<String, IngenicoPayment>,
    ingenico_tokens: HashSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OrderStatus {
    PayerActionRequired,
    Approved,
    Completed,
}

struct PaypalOrder {
    reference_id: String,
    currency: String,
    value: String,
    return_url: String,
    cancel_url: String,
    store_in_vault: bool,
    email: Value,
    name: Value,
    status: OrderStatus,
    capture_id: Option<String>,
    vault_id: Option<String>,
}

struct Capture {
    currency: String,
    cents: i64,
    refunded: i64,
}

#[derive(Clone, PartialEq, Eq)]
enum CheckoutStatus {
    InProgress,
    Paid(String),
    Cancelled,
}

struct HostedCheckout {
    returnmac: String,
    return_url: String,
    tokenize: bool,
    amount: i64,
    currency: String,
    merchant_reference: Value,
    status: CheckoutStatus,
}

struct IngenicoPayment {
    amount: i64,
    currency: String,
    merchant_reference: Value,
    token: Option<String>,
    refunded: i64,
}

#[derive(Clone)]
struct Ctx {
    base: Arc<str>,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request as the handlers see it.
struct ApiReq {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Value,
    raw: String,
}

impl ApiReq {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Answer = (u16, Value);

fn respond((status, body): Answer) -> Response {
    let status = StatusCode::from_u16(status).expect("valid status");
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Answers a request that carries an idempotency key the way the first
/// successful one with that key was answered (failures are not remembered,
/// so a retry after a decline is tried again).
fn idempotent(st: &mut State, scope: &'static str, key: Option<&str>, f: impl FnOnce(&mut State) -> Answer) -> Answer {
    let Some(key) = key else { return f(st) };
    if let Some(answer) = st.idempotent.get(&(scope, key.to_string())) {
        return answer.clone();
    }
    let answer = f(st);
    if answer.0 < 300 {
        st.idempotent.insert((scope, key.to_string()), answer.clone());
    }
    answer
}

// ---------------------------------------------------------------- dispatch

async fn handle(AxumState(ctx): AxumState<Ctx>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, 4 << 20).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large or unreadable").into_response();
    };
    let path = parts.uri.path().to_string();
    let method = parts.method.as_str().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.first() == Some(&"fake") {
        return page(&ctx, &method, &segs);
    }
    let processor =
        if path.starts_with("/v1/") || path.starts_with("/v2/checkout/") || path.starts_with("/v2/payments/") {
            "paypal"
        } else if path.starts_with("/v2/") {
            "ingenico"
        } else {
            "unknown"
        };
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    lock(&ctx.state).requests.push(Recorded {
        processor,
        method: method.clone(),
        path: path.clone(),
        headers,
        body: body.clone(),
        raw: raw.clone(),
    });
    let req = ApiReq { method, path: path.clone(), headers: parts.headers, body, raw };
    match processor {
        "paypal" => respond(paypal(&ctx, &req, &segs)),
        "ingenico" => respond(ingenico(&ctx, &req, &segs)),
        _ => respond((404, json!({"message": "no such fake endpoint"}))),
    }
}

/// The buyer pages.
fn page(ctx: &Ctx, method: &str, segs: &[&str]) -> Response {
    let mut st = lock(&ctx.state);
    let not_found = || (StatusCode::NOT_FOUND, "no such fake page").into_response();
    match (method, segs) {
        ("GET", ["fake", "paypal", "approve", id]) => {
            let Some(order) = st.paypal_orders.get_mut(*id) else { return not_found() };
            if order.status == OrderStatus::PayerActionRequired {
                order.status = OrderStatus::Approved;
            }
            Redirect::to(&with_query(&order.return_url, &[("token", id), ("PayerID", FAKE_PAYER_ID)])).into_response()
        }
        ("GET", ["fake", "paypal", "cancel", id]) => {
            let Some(order) = st.paypal_orders.get(*id) else { return not_found() };
            Redirect::to(&with_query(&order.cancel_url, &[("token", id)])).into_response()
        }
        ("GET", ["fake", "paypal", "certs", _]) => {
            "-----BEGIN CERTIFICATE-----\nFAKE\n-----END CERTIFICATE-----\n".into_response()
        }
        ("GET", ["fake", "ingenico", "pay", id]) => {
            let st = &mut *st;
            let Some(hc) = st.ingenico_checkouts.get_mut(*id) else { return not_found() };
            if hc.status == CheckoutStatus::InProgress {
                let token = hc.tokenize.then(|| Uuid::now_v7().hyphenated().to_string());
                if let Some(token) = &token {
                    st.ingenico_tokens.insert(token.clone());
                }
                let payment_id = ingenico_payment_id();
                st.ingenico_payments.insert(
                    payment_id.clone(),
                    IngenicoPayment {
                        amount: hc.amount,
                        currency: hc.currency.clone(),
                        merchant_reference: hc.merchant_reference.clone(),
                        token,
                        refunded: 0,
                    },
                );
                hc.status = CheckoutStatus::Paid(payment_id);
            }
            Redirect::to(&with_query(&hc.return_url, &[("hostedCheckoutId", id), ("RETURNMAC", &hc.returnmac)]))
                .into_response()
        }
        ("GET", ["fake", "ingenico", "cancel", id]) => {
            let Some(hc) = st.ingenico_checkouts.get_mut(*id) else { return not_found() };
            if hc.status == CheckoutStatus::InProgress {
                hc.status = CheckoutStatus::Cancelled;
            }
            Redirect::to(&with_query(&hc.return_url, &[("hostedCheckoutId", id), ("RETURNMAC", &hc.returnmac)]))
                .into_response()
        }
        _ => not_found(),
    }
}

// ---------------------------------------------------------------- PayPal

fn paypal(ctx: &Ctx, r: &ApiReq, segs: &[&str]) -> Answer {
    let mut st = lock(&ctx.state);
    if r.method == "POST" && r.path == "/v1/oauth2/token" {
        return paypal_token(&mut st, r);
    }
    let token = r.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| st.paypal_tokens.contains(t)) {
        return (401, json!({"error": "invalid_token", "error_description": "Token signature verification failed"}));
    }
    match (r.method.as_str(), segs) {
        ("POST", ["v2", "checkout", "orders"]) => {
            let key = r.header("paypal-request-id");
            idempotent(&mut st, "paypal-orders", key, |st| paypal_create_order(&ctx.base, st, &r.body))
        }
        ("GET", ["v2", "checkout", "orders", id]) => match st.paypal_orders.get(*id) {
            Some(order) => (200, paypal_order_json(&ctx.base, id, order)),
            None => paypal_not_found(),
        },
        ("POST", ["v2", "checkout", "orders", id, "capture"]) => paypal_capture(&mut st, id),
        ("POST", ["v2", "payments", "captures", id, "refund"]) => paypal_refund(&mut st, id, &r.body),
        ("POST", ["v1", "notifications", "verify-webhook-signature"]) => paypal_verify(&r.body),
        _ => paypal_not_found(),
    }
}

fn paypal_token(st: &mut State, r: &ApiReq) -> Answer {
    let expected = format!("{}:{}", FakeProcessors::PAYPAL_CLIENT_ID, FakeProcessors::PAYPAL_SECRET);
    let given = r
        .header("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| BASE64.decode(b.trim().as_bytes()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if given.as_deref() != Some(expected.as_str()) {
        return (401, json!({"error": "invalid_client", "error_description": "Client Authentication failed"}));
    }
    if form_value(&r.raw, "grant_type").as_deref() != Some("client_credentials") {
        return (
            400,
            json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL or unsupported"}),
        );
    }
    let token = format!("A21AA{}", Uuid::now_v7().simple());
    st.paypal_tokens.insert(token.clone());
    (
        200,
        json!({
            "scope": "https://uri.paypal.com/services/payments/payment",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-FAKE",
            "expires_in": 32400,
            "nonce": Uuid::now_v7().simple().to_string(),
        }),
    )
}

fn paypal_invalid(message: &str) -> Answer {
    (
        400,
        json!({
            "name": "INVALID_REQUEST",
            "message": message,
            "debug_id": debug_id(),
            "details": [{"issue": "INVALID_PARAMETER_VALUE", "description": message}],
        }),
    )
}

fn paypal_unprocessable(issue: &str, description: &str) -> Answer {
    (
        422,
        json!({
            "name": "UNPROCESSABLE_ENTITY",
            "message": "The requested action could not be performed, semantically incorrect, or failed business validation.",
            "debug_id": debug_id(),
            "details": [{"issue": issue, "description": description}],
        }),
    )
}

fn paypal_not_found() -> Answer {
    (
        404,
        json!({
            "name": "RESOURCE_NOT_FOUND",
            "message": "The specified resource does not exist.",
            "debug_id": debug_id(),
            "details": [{"issue": "INVALID_RESOURCE_ID", "description": "Specified resource ID does not exist."}],
        }),
    )
}

fn paypal_create_order(base: &str, st: &mut State, body: &Value) -> Answer {
    if body["intent"] != "CAPTURE" {
        return paypal_invalid("intent must be CAPTURE");
    }
    let pu = &body["purchase_units"][0];
    if !pu.is_object() {
        return paypal_invalid("purchase_units must hold one purchase unit");
    }
    let Some(currency) = pu["amount"]["currency_code"].as_str().filter(|c| is_currency(c)) else {
        return paypal_invalid("purchase_units[0].amount.currency_code must be 3 upper-case letters");
    };
    let Some(value) = pu["amount"]["value"].as_str() else {
        return paypal_invalid("purchase_units[0].amount.value must be a string");
    };
    let Some(cents) = parse_cents(value).filter(|c| *c > 0) else {
        return paypal_invalid("purchase_units[0].amount.value must be a positive decimal with 2 places");
    };
    let reference_id = pu["reference_id"].as_str().unwrap_or("default").to_string();
    let source = &body["payment_source"]["paypal"];
    let order_id = paypal_id();

    if let Some(vault_id) = source["vault_id"].as_str() {
        // A renewal charge against a vaulted payment token.
        if !st.paypal_vaults.contains(vault_id) {
            return paypal_unprocessable("INVALID_VAULT_ID", "The vault_id is invalid or unknown.");
        }
        if st.declines > 0 {
            st.declines -= 1;
            return paypal_unprocessable("INSTRUMENT_DECLINED", "The instrument presented was declined.");
        }
        let capture_id = paypal_id();
        st.paypal_captures.insert(capture_id.clone(), Capture { currency: currency.to_string(), cents, refunded: 0 });
        st.paypal_orders.insert(
            order_id.clone(),
            PaypalOrder {
                reference_id: reference_id.clone(),
                currency: currency.to_string(),
                value: value.to_string(),
                return_url: String::new(),
                cancel_url: String::new(),
                store_in_vault: false,
                email: Value::Null,
                name: Value::Null,
                status: OrderStatus::Completed,
                capture_id: Some(capture_id.clone()),
                vault_id: Some(vault_id.to_string()),
            },
        );
        return (
            201,
            json!({
                "id": order_id,
                "status": "COMPLETED",
                "payment_source": {"paypal": {"attributes": {"vault": {"id": vault_id, "status": "VAULTED"}}}},
                "purchase_units": [{
                    "reference_id": reference_id,
                    "payments": {"captures": [{
                        "id": capture_id,
                        "status": "COMPLETED",
                        "amount": {"currency_code": currency, "value": value},
                    }]},
                }],
            }),
        );
    }

    // A buyer checkout.
    let return_url = source["experience_context"]["return_url"]
        .as_str()
        .or_else(|| body["application_context"]["return_url"].as_str());
    let Some(return_url) = return_url else {
        return paypal_invalid("payment_source.paypal.experience_context.return_url is required");
    };
    let cancel_url = source["experience_context"]["cancel_url"]
        .as_str()
        .or_else(|| body["application_context"]["cancel_url"].as_str())
        .unwrap_or(return_url);
    let order = PaypalOrder {
        reference_id,
        currency: currency.to_string(),
        value: value.to_string(),
        return_url: return_url.to_string(),
        cancel_url: cancel_url.to_string(),
        store_in_vault: source["attributes"]["vault"]["store_in_vault"] == "ON_SUCCESS",
        email: source["email_address"].clone(),
        name: source["name"].clone(),
        status: OrderStatus::PayerActionRequired,
        capture_id: None,
        vault_id: None,
    };
    st.paypal_orders.insert(order_id.clone(), order);
    (
        200,
        json!({
            "id": order_id,
            "status": "PAYER_ACTION_REQUIRED",
            "payment_source": {"paypal": {}},
            "links": [
                {"href": format!("{base}/v2/checkout/orders/{order_id}"), "rel": "self", "method": "GET"},
                {"href": format!("{base}/fake/paypal/approve/{order_id}"), "rel": "payer-action", "method": "GET"},
            ],
        }),
    )
}

fn paypal_order_json(base: &str, id: &str, order: &PaypalOrder) -> Value {
    let status = match order.status {
        OrderStatus::PayerActionRequired => "PAYER_ACTION_REQUIRED",
        OrderStatus::Approved => "APPROVED",
        OrderStatus::Completed => "COMPLETED",
    };
    let amount = json!({"currency_code": order.currency, "value": order.value});
    let mut unit = json!({"reference_id": order.reference_id, "amount": amount});
    if let Some(capture_id) = &order.capture_id {
        unit["payments"] = json!({"captures": [{"id": capture_id, "status": "COMPLETED", "amount": amount}]});
    }
    let mut out = json!({"id": id, "intent": "CAPTURE", "status": status, "purchase_units": [unit]});
    if order.status == OrderStatus::PayerActionRequired {
        out["links"] =
            json!([{"href": format!("{base}/fake/paypal/approve/{id}"), "rel": "payer-action", "method": "GET"}]);
    }
    out
}

fn paypal_capture(st: &mut State, id: &str) -> Answer {
    let Some(order) = st.paypal_orders.get_mut(id) else { return paypal_not_found() };
    match order.status {
        OrderStatus::Completed => {
            return paypal_unprocessable(
                "ORDER_ALREADY_CAPTURED",
                "Order already captured. If 'intent=CAPTURE' only one capture per order is allowed.",
            );
        }
        OrderStatus::PayerActionRequired => {
            return paypal_unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.");
        }
        OrderStatus::Approved => {}
    }
    let capture_id = paypal_id();
    order.status = OrderStatus::Completed;
    order.capture_id = Some(capture_id.clone());
    let mut source = json!({"email_address": order.email, "account_id": FAKE_PAYER_ID, "name": order.name});
    if order.store_in_vault {
        let vault_id = format!("VT{}", paypal_id());
        order.vault_id = Some(vault_id.clone());
        source["attributes"] = json!({"vault": {"id": vault_id, "status": "VAULTED", "customer": {"id": format!("FAKECUST{}", paypal_id())}}});
    }
    let answer = (
        201,
        json!({
            "id": id,
            "status": "COMPLETED",
            "payment_source": {"paypal": source},
            "payer": {"payer_id": FAKE_PAYER_ID, "email_address": order.email, "name": order.name},
            "purchase_units": [{
                "reference_id": order.reference_id,
                "payments": {"captures": [{
                    "id": capture_id,
                    "status": "COMPLETED",
                    "amount": {"currency_code": order.currency, "value": order.value},
                }]},
            }],
        }),
    );
    let capture = Capture {
        currency: order.currency.clone(),
        cents: parse_cents(&order.value).expect("validated at creation"),
        refunded: 0,
    };
    if let Some(vault_id) = order.vault_id.clone() {
        st.paypal_vaults.insert(vault_id);
    }
    st.paypal_captures.insert(capture_id, capture);
    answer
}

fn paypal_refund(st: &mut State, capture_id: &str, body: &Value) -> Answer {
    let Some(capture) = st.paypal_captures.get_mut(capture_id) else { return paypal_not_found() };
    let remaining = capture.cents - capture.refunded;
    let (cents, currency) = if body["amount"].is_null() {
        (remaining, capture.currency.clone())
    } else {
        let Some(cents) = body["amount"]["value"].as_str().and_then(parse_cents).filter(|c| *c > 0) else {
            return paypal_invalid("amount.value must be a positive decimal with 2 places");
        };
        let Some(currency) = body["amount"]["currency_code"].as_str().filter(|c| is_currency(c)) else {
            return paypal_invalid("amount.currency_code must be 3 upper-case letters");
        };
        (cents, currency.to_string())
    };
    if currency != capture.currency {
        return paypal_unprocessable("CURRENCY_MISMATCH", "The refund currency must match the capture's.");
    }
    if cents > remaining || remaining == 0 {
        return paypal_unprocessable(
            "REFUND_AMOUNT_EXCEEDED",
            "The refund amount must be less than or equal to the capture amount that has not yet been refunded.",
        );
    }
    capture.refunded += cents;
    (
        201,
        json!({
            "id": paypal_id(),
            "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": format_cents(cents)},
        }),
    )
}

fn paypal_verify(body: &Value) -> Answer {
    let field = |name: &str| body[name].as_str();
    let (Some(_), Some(_), Some(id), Some(sig), Some(time), Some(webhook_id)) = (
        field("auth_algo"),
        field("cert_url"),
        field("transmission_id"),
        field("transmission_sig"),
        field("transmission_time"),
        field("webhook_id"),
    ) else {
        return paypal_invalid(
            "auth_algo, cert_url, transmission_id, transmission_sig, transmission_time and webhook_id are required",
        );
    };
    if !body["webhook_event"].is_object() {
        return paypal_invalid("webhook_event must be an object");
    }
    let event = serde_json::to_string(&body["webhook_event"]).expect("serialise a JSON value");
    let expected = paypal_transmission_sig(id, time, webhook_id, &event);
    let ok = webhook_id == FakeProcessors::PAYPAL_WEBHOOK_ID && sig == expected;
    (200, json!({"verification_status": if ok { "SUCCESS" } else { "FAILURE" }}))
}

fn paypal_transmission_sig(id: &str, time: &str, webhook_id: &str, event: &str) -> String {
    hmac_b64(FakeProcessors::PAYPAL_SECRET, &format!("{id}|{time}|{webhook_id}|{event}"))
}

// ---------------------------------------------------------------- Ingenico

fn gcs_error(status: u16, code: &str, id: &str, message: &str, property: Option<&str>) -> Answer {
    let mut error = json!({
        "code": code,
        "id": id,
        "category": "CONNECT_PLATFORM_ERROR",
        "message": message,
        "httpStatusCode": status,
    });
    if let Some(property) = property {
        error["propertyName"] = json!(property);
    }
    (status, json!({"errorId": Uuid::now_v7().hyphenated().to_string(), "errors": [error]}))
}

fn gcs_invalid(property: &str, message: &str) -> Answer {
    gcs_error(400, "1002", "INVALID_VALUE", message, Some(property))
}

fn gcs_not_found(what: &str) -> Answer {
    gcs_error(404, "1002", "UNKNOWN_ID", &format!("UNKNOWN_{what}_ID"), None)
}

fn ingenico_authorised(r: &ApiReq) -> bool {
    let Some(date) = r.header("date").filter(|d| is_http_date(d)) else { return false };
    let content_type = r.header("content-type").unwrap_or("");
    let Some(auth) = r.header("authorization") else { return false };
    auth == FakeProcessors::ingenico_authorization(&r.method, content_type, date, &r.path)
}

fn ingenico(ctx: &Ctx, r: &ApiReq, segs: &[&str]) -> Answer {
    if !ingenico_authorised(r) {
        return gcs_error(401, "9007", "ACCESS_TO_MERCHANT_NOT_ALLOWED", "MISSING_OR_INVALID_AUTHORIZATION", None);
    }
    let ["v2", merchant, rest @ ..] = segs else { return gcs_not_found("RESOURCE") };
    if *merchant != FakeProcessors::INGENICO_MERCHANT {
        return gcs_error(404, "9002", "UNKNOWN_MERCHANT", "UNKNOWN_MERCHANT", None);
    }
    let mut st = lock(&ctx.state);
    let key = r.header("x-gcs-idempotence-key");
    match (r.method.as_str(), rest) {
        ("POST", ["hostedcheckouts"]) => {
            idempotent(&mut st, "ingenico-hostedcheckouts", key, |st| ingenico_create_checkout(&ctx.base, st, &r.body))
        }
        ("GET", ["hostedcheckouts", id]) => ingenico_checkout_status(&st, id),
        ("POST", ["payments"]) => {
            idempotent(&mut st, "ingenico-payments", key, |st| ingenico_token_payment(st, &r.body))
        }
        ("GET", ["payments", id]) => match st.ingenico_payments.get(*id) {
            Some(p) => (200, ingenico_payment_json(id, p)),
            None => gcs_not_found("PAYMENT"),
        },
        ("POST", ["payments", id, "refund"]) => ingenico_refund(&mut st, id, &r.body),
        _ => gcs_not_found("RESOURCE"),
    }
}

/// Validates `amountOfMoney`: (amount, currency).
fn gcs_money(money: &Value, property: &str) -> Result<(i64, String), Answer> {
    let Some(amount) = money["amount"].as_i64().filter(|a| *a > 0) else {
        return Err(gcs_invalid(&format!("{property}.amount"), "amount must be a positive integer (minor units)"));
    };
    let Some(currency) = money["currencyCode"].as_str().filter(|c| is_currency(c)) else {
        return Err(gcs_invalid(&format!("{property}.currencyCode"), "currencyCode must be 3 upper-case letters"));
    };
    Ok((amount, currency.to_string()))
}

fn ingenico_create_checkout(base: &str, st: &mut State, body: &Value) -> Answer {
    let (amount, currency) = match gcs_money(&body["order"]["amountOfMoney"], "order.amountOfMoney") {
        Ok(m) => m,
        Err(e) => return e,
    };
    let input = &body["hostedCheckoutSpecificInput"];
    let Some(return_url) = input["returnUrl"].as_str() else {
        return gcs_invalid("hostedCheckoutSpecificInput.returnUrl", "returnUrl is required");
    };
    let id = ingenico_next_id().to_string();
    let returnmac = Uuid::now_v7().hyphenated().to_string();
    let merchant_reference = body["order"]["references"]["merchantReference"].clone();
    st.ingenico_checkouts.insert(
        id.clone(),
        HostedCheckout {
            returnmac: returnmac.clone(),
            return_url: return_url.to_string(),
            tokenize: input["tokenize"].as_bool().unwrap_or(false),
            amount,
            currency,
            merchant_reference: merchant_reference.clone(),
            status: CheckoutStatus::InProgress,
        },
    );
    (
        201,
        json!({
            "hostedCheckoutId": id,
            "RETURNMAC": returnmac,
            "redirectUrl": format!("{base}/fake/ingenico/pay/{id}"),
            "partialRedirectUrl": format!("fake/ingenico/pay/{id}"),
            "merchantReference": merchant_reference,
        }),
    )
}

fn ingenico_payment_json(id: &str, p: &IngenicoPayment) -> Value {
    let mut output = json!({
        "amountOfMoney": {"amount": p.amount, "currencyCode": p.currency},
        "references": {"merchantReference": p.merchant_reference},
        "paymentMethod": "card",
        "cardPaymentMethodSpecificOutput": {"paymentProductId": 1},
    });
    if let Some(token) = &p.token {
        output["cardPaymentMethodSpecificOutput"]["token"] = json!(token);
    }
    json!({
        "id": id,
        "status": "CAPTURED",
        "statusOutput": {"statusCode": 9, "statusCategory": "COMPLETED", "isCancellable": false},
        "paymentOutput": output,
    })
}

fn ingenico_checkout_status(st: &State, id: &str) -> Answer {
    let Some(hc) = st.ingenico_checkouts.get(id) else { return gcs_not_found("HOSTED_CHECKOUT") };
    match &hc.status {
        CheckoutStatus::InProgress => (200, json!({"status": "IN_PROGRESS"})),
        CheckoutStatus::Cancelled => (200, json!({"status": "CANCELLED_BY_CONSUMER"})),
        CheckoutStatus::Paid(payment_id) => {
            let payment = st.ingenico_payments.get(payment_id).expect("a paid checkout's payment");
            (
                200,
                json!({
                    "status": "PAYMENT_CREATED",
                    "createdPaymentOutput": {
                        "payment": ingenico_payment_json(payment_id, payment),
                        "paymentStatusCategory": "SUCCESSFUL",
                    },
                }),
            )
        }
    }
}

fn ingenico_token_payment(st: &mut State, body: &Value) -> Answer {
    let Some(token) = body["cardPaymentMethodSpecificInput"]["token"].as_str() else {
        return gcs_invalid("cardPaymentMethodSpecificInput.token", "this fake only takes token payments");
    };
    let (amount, currency) = match gcs_money(&body["order"]["amountOfMoney"], "order.amountOfMoney") {
        Ok(m) => m,
        Err(e) => return e,
    };
    if !st.ingenico_tokens.contains(token) {
        return gcs_error(400, "1004", "UNKNOWN_TOKEN", "UNKNOWN_TOKEN", Some("cardPaymentMethodSpecificInput.token"));
    }
    let payment_id = ingenico_payment_id();
    if st.declines > 0 {
        st.declines -= 1;
        let (_, mut err) = gcs_error(402, "30511001", "DECLINED", "DECLINED", None);
        err["paymentResult"] = json!({
            "payment": {
                "id": payment_id,
                "status": "REJECTED",
                "statusOutput": {"statusCode": 2, "statusCategory": "UNSUCCESSFUL", "isCancellable": false},
            },
        });
        return (402, err);
    }
    let payment = IngenicoPayment {
        amount,
        currency,
        merchant_reference: body["order"]["references"]["merchantReference"].clone(),
        token: Some(token.to_string()),
        refunded: 0,
    };
    let answer = (
        201,
        json!({
            "payment": ingenico_payment_json(&payment_id, &payment),
            "creationOutput": {"isNewToken": false, "token": token},
        }),
    );
    st.ingenico_payments.insert(payment_id, payment);
    answer
}

fn ingenico_refund(st: &mut State, id: &str, body: &Value) -> Answer {
    let Some(payment) = st.ingenico_payments.get_mut(id) else { return gcs_not_found("PAYMENT") };
    let remaining = payment.amount - payment.refunded;
    let (amount, currency) = if body["amountOfMoney"].is_null() {
        (remaining, payment.currency.clone())
    } else {
        match gcs_money(&body["amountOfMoney"], "amountOfMoney") {
            Ok(m) => m,
            Err(e) => return e,
        }
    };
    if currency != payment.currency {
        return gcs_invalid("amountOfMoney.currencyCode", "the refund currency must match the payment's");
    }
    if amount > remaining || remaining == 0 {
        return gcs_error(
            400,
            "300450",
            "REFUND_AMOUNT_EXCEEDED",
            "the refund exceeds what is left of the payment",
            Some("amountOfMoney.amount"),
        );
    }
    payment.refunded += amount;
    (
        201,
        json!({
            "id": format!("{}_{}", id.trim_end_matches("_0"), Uuid::now_v7().simple()),
            "status": "REFUND_REQUESTED",
            "refundOutput": {
                "amountOfMoney": {"amount": amount, "currencyCode": currency},
                "references": body["references"],
            },
            "statusOutput": {"statusCode": 81, "statusCategory": "PENDING_PAYMENT", "isCancellable": false},
        }),
    )
}

// ---------------------------------------------------------------- helpers

fn hmac_b64(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    BASE64.encode(&mac.finalize().into_bytes())
}

fn debug_id() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_string()
}

/// An upper-case id in PayPal's style (unique, URL-safe).
fn paypal_id() -> String {
    Uuid::now_v7().simple().to_string().to_uppercase()
}

static INGENICO_IDS: AtomicU64 = AtomicU64::new(4_000_000_000);

fn ingenico_next_id() -> u64 {
    INGENICO_IDS.fetch_add(1, Ordering::Relaxed)
}

fn ingenico_payment_id() -> String {
    format!("{}_0", ingenico_next_id())
}

fn is_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// "12.00" -> 1200; anything but digits, a dot and exactly two decimals -> None.
fn parse_cents(value: &str) -> Option<i64> {
    let (units, cents) = value.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(units) || units.len() > 15 || cents.len() != 2 || !digits(cents) {
        return None;
    }
    Some(units.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

fn format_cents(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Appends query parameters to a URL (percent-encoding the values).
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        sep = '&';
    }
    out
}

/// The first value of `name` in an application/x-www-form-urlencoded body.
fn form_value(raw: &str, name: &str) -> Option<String> {
    raw.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| url_decode(k) == name)
        .map(|(_, v)| url_decode(v))
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month 1-12, day 1-31, hour, minute, second, weekday 0=Sunday), UTC.
fn civil(t: SystemTime) -> (i64, usize, u64, u64, u64, u64, usize) {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = i64::try_from(yoe + era * 400).expect("a sane year") + i64::from(month <= 2);
    let weekday = usize::try_from((days + 4) % 7).expect("0..7");
    let month = usize::try_from(month).expect("1..=12");
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, weekday)
}

fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn http_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!("{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT", DAYS[wd], MONTHS[mo - 1])
}

/// Whether `s` has the shape "Sun, 06 Nov 1994 08:49:37 GMT".
fn is_http_date(s: &str) -> bool {
    if !s.is_ascii() || s.len() != 29 {
        return false;
    }
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    DAYS.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
}
