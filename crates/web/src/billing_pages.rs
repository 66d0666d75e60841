//! Billing in the control panel, the API and the staff console: plans and
//! checkout on the processor's page, the buyer's return, invoices (HTML and
//! PDF), processor webhooks, the built-in test processor's page and the
//! finance console. Card data is never asked for anywhere here (PAY-1).

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use seldesk_billing::{BillingError, Interval, InvoiceSummary, Payment, Per, Subscription};
use seldesk_tenants::CustomerDb;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{ApiAccount, ApiError, CsrfToken, SignedIn, StaffUser};
use crate::errors::{error_page, message_of, status_of};
use crate::pages::{message_page, render};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/databases/{id}/subscribe", get(subscribe_page).post(subscribe))
        .route("/databases/{id}/plan", post(change_plan))
        .route("/billing/return/{payment}", get(return_from_processor))
        .route("/billing/test-processor/{order}", get(test_processor_page).post(test_processor_decide))
        .route("/account/billing", get(account_billing))
        .route("/pricing", get(pricing))
        .route("/account/invoices/{id}", get(invoice_page))
        .route("/account/invoices/{id}/pdf", get(invoice_pdf))
        .route("/staff/finance/invoices/{id}/pdf", get(staff_invoice_pdf))
        .route("/staff/finance/payments/{id}/refund", post(staff_refund))
        .route("/api/v1/billing/plans", get(api_plans))
        .route("/api/v1/billing/invoices", get(api_invoices))
        .route("/api/v1/billing/invoices/{id}", get(api_invoice))
        .route("/api/v1/billing/invoices/{id}/pdf", get(api_invoice_pdf))
        .route("/api/v1/billing/payments/{id}/complete", post(api_complete))
        .route("/api/v1/billing/webhooks/{processor}", post(webhook))
        .route("/api/v1/databases/{id}/subscription", get(api_subscription).post(api_subscribe).patch(api_change_plan))
}

struct PlanChoice {
    id: String,
    name: String,
    per_user: bool,
    monthly: String,
    yearly: String,
}

#[derive(Template)]
#[template(path = "subscribe.html")]
struct SubscribePage {
    title: String,
    csrf: String,
    db: CustomerDb,
    plans: Vec<PlanChoice>,
    processors: Vec<(&'static str, &'static str)>,
    currency: String,
    tax: Option<String>,
    subscription: Option<Subscription>,
    can_subscribe: bool,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct SubscribeQuery {
    #[serde(default)]
    cancelled: Option<String>,
}

fn plan_choices(state: &AppState, currency: &str) -> Vec<PlanChoice> {
    state
        .billing
        .settings()
        .plans
        .iter()
        .filter_map(|p| {
            let price = p.prices.get(currency)?;
            let (monthly, yearly) = if p.per == Per::User {
                ("{0} per user a month", "{0} per user a year")
            } else {
                ("{0} a month", "{0} a year")
            };
            Some(PlanChoice {
                id: p.id.clone(),
                name: p.name.clone(),
                per_user: p.per == Per::User,
                monthly: crate::i18n::tr1(monthly, seldesk_billing::money(price.monthly, currency)),
                yearly: crate::i18n::tr1(yearly, seldesk_billing::money(price.yearly, currency)),
            })
        })
        .collect()
}

tokio::task_local! {
    static SIMULATED: bool;
}

/// Whether payments on this site are simulated (the test processor is
/// configured): every page says so.
pub fn payments_simulated() -> bool {
    SIMULATED.try_with(|s| *s).unwrap_or(false)
}

/// Serves the request knowing whether payments are simulated (for the page
/// banner), and says so to API clients in a header.
pub(crate) async fn simulated_payments(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let simulated = state.billing.test_processor().is_some();
    let mut response = SIMULATED.scope(simulated, next.run(req)).await;
    if simulated {
        response.headers_mut().insert("x-seldesk-payments", axum::http::HeaderValue::from_static("simulated"));
    }
    response
}

async fn subscribe_view(
    state: &AppState,
    headers: &HeaderMap,
    account: &seldesk_accounts::Account,
    id: &str,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let db = match state.databases.get(&account.id, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    let csrf = CsrfToken::for_request(state, headers);
    let settings = state.billing.settings();
    let currency = settings.currency_for(account.country.as_deref()).to_string();
    let subscription = state.billing.subscription_of(&db.id).await.ok().flatten().filter(|s| s.status != "pending");
    let page = SubscribePage {
        title: format!("Subscribe: {}", db.name),
        csrf: csrf.token.clone(),
        plans: plan_choices(state, &currency),
        processors: state.billing.processors(),
        tax: settings.tax_for(account.country.as_deref()).map(|t| t.label.clone()),
        currency,
        can_subscribe: !subscription.as_ref().is_some_and(|s| s.status == "active" || s.status == "past_due"),
        subscription,
        db,
        notice,
        error,
    };
    csrf.attach(render(status, &page))
}

async fn subscribe_page(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SubscribeQuery>,
) -> Response {
    let notice = q.cancelled.map(|_| "You left the payment page; nothing was charged. Choose again when ready.".into());
    subscribe_view(&state, &headers, &account, &id, notice, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct PlanForm {
    #[serde(default)]
    plan: String,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    seats: Option<String>,
    #[serde(default)]
    processor: String,
}

impl PlanForm {
    /// The interval and number of users chosen.
    fn choice(&self) -> Result<(Interval, i64), BillingError> {
        Ok((Interval::parse(&self.interval)?, seats_of(self.seats.as_deref())?))
    }
}

/// The plans page again, with what went wrong.
async fn plan_error(
    state: &AppState,
    headers: &HeaderMap,
    account: &seldesk_accounts::Account,
    id: &str,
    e: BillingError,
) -> Response {
    subscribe_view(state, headers, account, id, None, Some(message_of(&e)), status_of(&e)).await
}

fn seats_of(s: Option<&str>) -> Result<i64, BillingError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(1),
        Some(s) => s.parse().map_err(|_| BillingError::Invalid {
            field: "seats",
            message: "Give the number of users as a whole number.".into(),
        }),
    }
}

async fn subscribe(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<PlanForm>,
) -> Response {
    let result = async {
        let (interval, seats) = f.choice()?;
        state.billing.subscribe(&account.id, &id, &f.plan, interval, seats, &f.processor).await
    }
    .await;
    match result {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => plan_error(&state, &headers, &account, &id, e).await,
    }
}

async fn change_plan(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<PlanForm>,
) -> Response {
    let result = async {
        let (interval, seats) = f.choice()?;
        state.billing.change_plan(&account.id, &id, &f.plan, interval, seats).await
    }
    .await;
    match result {
        Ok(_) => Redirect::to("/account/billing").into_response(),
        Err(e) => plan_error(&state, &headers, &account, &id, e).await,
    }
}

async fn return_from_processor(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(payment): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    match state.billing.complete_return(&account.id, &payment, query).await {
        Ok(p) if p.status == "captured" || p.status == "refunded" => {
            Redirect::to(&format!("/account/billing?paid={}", p.id)).into_response()
        }
        Ok(p) => message_page(
            StatusCode::CONFLICT,
            "Payment not completed",
            &format!("This payment is {}{}.", p.status, p.error.map(|e| format!(": {e}")).unwrap_or_default()),
        ),
        Err(e) => error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "test_processor.html")]
struct TestProcessorPage {
    title: &'static str,
    csrf: String,
    order: String,
    amount: String,
    decided: Option<bool>,
}

async fn test_processor_page(State(state): State<AppState>, headers: HeaderMap, Path(order): Path<String>) -> Response {
    let Some(test) = state.billing.test_processor() else {
        return message_page(StatusCode::NOT_FOUND, "Not available", "The test processor is turned off here.");
    };
    let Some((cents, currency, decided)) = test.order(&order) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "No such test order",
            "The test processor keeps orders in memory: start the checkout again.",
        );
    };
    let csrf = CsrfToken::for_request(&state, &headers);
    let page = TestProcessorPage {
        title: "Test processor",
        csrf: csrf.token.clone(),
        order,
        amount: seldesk_billing::money(cents, &currency),
        decided,
    };
    csrf.attach(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct DecisionForm {
    #[serde(default)]
    decision: String,
}

async fn test_processor_decide(
    State(state): State<AppState>,
    Path(order): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    let Some(test) = state.billing.test_processor() else {
        return message_page(StatusCode::NOT_FOUND, "Not available", "The test processor is turned off here.");
    };
    let approve = match f.decision.as_str() {
        "approve" => true,
        "decline" => false,
        _ => return message_page(StatusCode::UNPROCESSABLE_ENTITY, "Choose", "Approve or decline the payment."),
    };
    match test.decide(&order, approve) {
        Some(back) => Redirect::to(&back).into_response(),
        None => message_page(StatusCode::CONFLICT, "Already decided", "This test order was already decided."),
    }
}

#[derive(Template)]
#[template(path = "pricing.html")]
struct PricingPage {
    title: &'static str,
    currency: String,
    /// Every currency prices are set in, to switch.
    currencies: Vec<String>,
    plans: Vec<PlanCard>,
    /// The tax added for the visitor's country, e.g. "GST 18%".
    tax: Option<String>,
    trial: String,
    /// Whether a payment processor is set up (else paid plans are not offered yet).
    paid_open: bool,
}

struct PlanCard {
    name: String,
    per_user: bool,
    monthly: String,
    yearly: String,
}

#[derive(Deserialize)]
struct PricingQuery {
    currency: Option<String>,
}

/// `GET /pricing`: the plans of the billing configuration in the visitor's
/// currency (from their country, as the data-center choice finds it), or
/// the one they pick.
async fn pricing(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<PricingQuery>,
) -> Response {
    let settings = state.billing.settings();
    let country = crate::consent::remembered_country(&state, &headers)
        .or_else(|| state.visits.geo.country(peer.ip()))
        .or_else(|| crate::db_pages::browser_country(&headers));
    let mut currencies: Vec<String> = settings.plans.iter().flat_map(|p| p.prices.keys().cloned()).collect();
    currencies.sort();
    currencies.dedup();
    let currency = q
        .currency
        .filter(|c| currencies.contains(c))
        .unwrap_or_else(|| settings.currency_for(country.as_deref()).to_string());
    let plans = settings
        .plans
        .iter()
        .filter_map(|p| {
            let price = p.prices.get(&currency)?;
            Some(PlanCard {
                name: p.name.clone(),
                per_user: p.per == seldesk_billing::Per::User,
                monthly: seldesk_billing::money(price.monthly, &currency),
                yearly: seldesk_billing::money(price.yearly, &currency),
            })
        })
        .collect();
    // A tax applies to the visitor's country only when prices are in its currency.
    let tax = settings
        .tax_for(country.as_deref())
        .filter(|_| settings.currency_for(country.as_deref()) == currency)
        .map(|t| t.label.clone());
    let page = PricingPage {
        title: "Pricing",
        currency,
        currencies,
        plans,
        tax,
        trial: crate::i18n::period(&state.policy.trial.length.to_string()),
        paid_open: !state.billing.processors().is_empty(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    title: &'static str,
    paid: Option<InvoiceSummary>,
    subscriptions: Vec<(Subscription, String)>,
    invoices: Vec<InvoiceSummary>,
    invoices_pager: crate::paging::Pager,
    payments: Vec<Payment>,
    payments_pager: crate::paging::Pager,
}

#[derive(Deserialize)]
struct PaidQuery {
    paid: Option<String>,
    /// Where the invoice list's page starts.
    invoices: Option<String>,
    /// Where the payment list's page starts.
    payments: Option<String>,
}

async fn account_billing(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Query(q): Query<PaidQuery>,
) -> Response {
    let invoices = state.billing.invoices_of(&account.id).await.unwrap_or_default();
    let payments = state.billing.payments_of(&account.id).await.unwrap_or_default();
    let paid = q.paid.and_then(|p| invoices.iter().find(|i| i.payment_id.as_deref() == Some(p.as_str())).cloned());
    // Each list pages on its own; the other keeps its place in the link.
    let link = |list: &str, c: Option<&str>| {
        let mut query: Vec<(&str, &str)> = Vec::new();
        for (name, value) in [("invoices", q.invoices.as_deref()), ("payments", q.payments.as_deref())] {
            let value = if name == list { c } else { value };
            if let Some(v) = value {
                query.push((name, v));
            }
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!("/account/billing{}{}#{list}", if query.is_empty() { "" } else { "?" }, query)
    };
    let (invoices, invoices_pager) = crate::paging::site_page(
        invoices,
        |i| format!("{:030}|{}|{}", i.issued_at.unix_timestamp_nanos(), i.number, i.id),
        crate::paging::Order::Newest,
        q.invoices.as_deref(),
        crate::paging::SITE_PAGE,
        "Invoice pages",
        "invoices",
        |c| link("invoices", c),
    );
    let (payments, payments_pager) = crate::paging::site_page(
        payments,
        |p| format!("{:030}|{}", p.created_at.unix_timestamp_nanos(), p.id),
        crate::paging::Order::Newest,
        q.payments.as_deref(),
        crate::paging::SITE_PAGE,
        "Payment pages",
        "payments",
        |c| link("payments", c),
    );
    let mut subscriptions = Vec::new();
    for d in state.databases.list(&account.id).await.unwrap_or_default() {
        if let Ok(Some(s)) = state.billing.subscription_of(&d.id).await
            && s.status != "pending"
        {
            subscriptions.push((s, d.name));
        }
    }
    let page =
        BillingPage { title: "Billing", paid, subscriptions, invoices, invoices_pager, payments, payments_pager };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoicePage {
    title: String,
    invoice: InvoiceSummary,
    data: seldesk_billing::InvoiceData,
}

impl InvoicePage {
    fn money(&self, cents: &i64) -> String {
        seldesk_billing::money(*cents, &self.data.currency)
    }
}

async fn invoice_page(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match state.billing.invoice(Some(&account.id), &id).await {
        Ok((invoice, data)) => {
            render(StatusCode::OK, &InvoicePage { title: format!("Invoice {}", invoice.number), invoice, data })
        }
        Err(e) => error_page(&e),
    }
}

fn pdf_response(name: String, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response()
}

async fn invoice_pdf(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match state.billing.invoice_pdf(Some(&account.id), &id).await {
        Ok((name, bytes)) => pdf_response(name, bytes),
        Err(e) => error_page(&e),
    }
}

async fn staff_invoice_pdf(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(id): Path<String>,
) -> Response {
    match state.billing.staff_invoice_pdf(&staff, &id).await {
        Ok((name, bytes)) => pdf_response(name, bytes),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct RefundForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

async fn staff_refund(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(id): Path<String>,
    Form(f): Form<RefundForm>,
) -> Response {
    let amount = match f.amount.trim() {
        "" => None,
        a => match seldesk_billing::processor::parse_decimal(a) {
            Some(c) => Some(c),
            None => {
                return message_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Refund not made",
                    "Give the amount as a number such as 12.50, or leave it empty to refund everything left.",
                );
            }
        },
    };
    match state.billing.refund(&staff, &id, amount, &f.reason).await {
        Ok(_) => Redirect::to("/staff/finance").into_response(),
        Err(e) => error_page(&e),
    }
}

// --- JSON API -----------------------------------------------------------------

/// Plans and prices in the caller's currency.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Plans {
    /// ISO 4217, from the account's country.
    pub currency: String,
    /// The tax added to prices, when the country has one.
    pub tax: Option<seldesk_billing::Tax>,
    pub plans: Vec<PlanPrice>,
    /// The payment processors that can be chosen; empty when paid plans are unavailable.
    pub processors: Vec<String>,
}

/// A plan's price.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PlanPrice {
    pub id: String,
    pub name: String,
    /// What the price is counted in.
    pub per: seldesk_billing::Per,
    pub monthly_cents: i64,
    pub yearly_cents: i64,
}

/// A new subscription and where to pay for it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Subscribed {
    /// Where the customer pays (the processor's page).
    pub redirect_url: String,
    pub subscription: Option<seldesk_billing::Subscription>,
}

/// A database's subscription.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriptionView {
    /// None for a trial or free database.
    pub subscription: Option<seldesk_billing::Subscription>,
}

/// A changed plan and the payment it took, if any.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PlanChanged {
    pub subscription: Option<seldesk_billing::Subscription>,
    pub payment: Option<seldesk_billing::Payment>,
}

/// A completed payment.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Completed {
    pub payment: seldesk_billing::Payment,
}

/// The account's invoices.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Invoices {
    pub invoices: Vec<seldesk_billing::InvoiceSummary>,
}

/// One invoice and everything printed on it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct InvoiceView {
    pub invoice: seldesk_billing::InvoiceSummary,
    pub document: seldesk_billing::InvoiceData,
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/plans",
    tag = "billing",
    summary = "Plans and prices",
    responses((status = 200, description = "The plans", body = Plans), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:read"])),
)]
pub(crate) async fn api_plans(State(state): State<AppState>, ApiAccount(a): ApiAccount) -> Response {
    let settings = state.billing.settings();
    let currency = settings.currency_for(a.country.as_deref());
    let plans = settings
        .plans
        .iter()
        .filter_map(|p| {
            let price = p.prices.get(currency)?;
            Some(PlanPrice {
                id: p.id.clone(),
                name: p.name.clone(),
                per: p.per,
                monthly_cents: price.monthly,
                yearly_cents: price.yearly,
            })
        })
        .collect();
    let processors = state.billing.processors().into_iter().map(|(id, _)| id.to_string()).collect();
    Json(Plans {
        currency: currency.to_string(),
        tax: settings.tax_for(a.country.as_deref()).cloned(),
        plans,
        processors,
    })
    .into_response()
}

/// A subscription to take.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"plan": "standard", "interval": "monthly", "seats": 1}))]
pub(crate) struct SubscribeBody {
    /// A plan id from GET /api/v1/billing/plans.
    plan: String,
    /// monthly or yearly.
    interval: String,
    #[serde(default)]
    seats: Option<i64>,
    #[serde(default)]
    processor: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/databases/{id}/subscription",
    tag = "billing",
    summary = "Subscribe the database to a plan",
    params(("id" = String, Path, description = "The database id")),
    request_body(content = SubscribeBody, content_type = "application/json"),
    responses((status = 201, description = "Where to pay, and the subscription", body = Subscribed), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:write"])),
)]
pub(crate) async fn api_subscribe(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: SubscribeBody = crate::api::json(&body)?;
    let interval = Interval::parse(&b.interval).map_err(ApiError::from)?;
    let processor = match b.processor {
        Some(p) => p,
        None => state.billing.processors().first().map(|(id, _)| id.to_string()).unwrap_or_default(),
    };
    let url = state
        .billing
        .subscribe(&a.id, &id, &b.plan, interval, b.seats.unwrap_or(1), &processor)
        .await
        .map_err(ApiError::from)?;
    let sub = state.billing.subscription_of(&id).await.map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(Subscribed { redirect_url: url, subscription: sub })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/databases/{id}/subscription",
    tag = "billing",
    summary = "The database subscription",
    params(("id" = String, Path, description = "The database id")),
    responses((status = 200, description = "The subscription", body = SubscriptionView), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:read"])),
)]
pub(crate) async fn api_subscription(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.databases.get(&a.id, &id).await.map_err(ApiError::from)?;
    let sub = state.billing.subscription_of(&id).await.map_err(ApiError::from)?;
    Ok(Json(SubscriptionView { subscription: sub }).into_response())
}

/// A plan to change to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"plan": "standard", "interval": "yearly"}))]
pub(crate) struct ChangeBody {
    /// A plan id from GET /api/v1/billing/plans.
    plan: String,
    /// monthly or yearly.
    interval: String,
    #[serde(default)]
    seats: Option<i64>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/databases/{id}/subscription",
    tag = "billing",
    summary = "Change the plan",
    params(("id" = String, Path, description = "The database id")),
    request_body(content = ChangeBody, content_type = "application/json"),
    responses((status = 200, description = "The subscription and any payment", body = PlanChanged), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:write"])),
)]
pub(crate) async fn api_change_plan(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ChangeBody = crate::api::json(&body)?;
    let interval = Interval::parse(&b.interval).map_err(ApiError::from)?;
    let payment =
        state.billing.change_plan(&a.id, &id, &b.plan, interval, b.seats.unwrap_or(1)).await.map_err(ApiError::from)?;
    let sub = state.billing.subscription_of(&id).await.map_err(ApiError::from)?;
    Ok(Json(PlanChanged { subscription: sub, payment }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/billing/payments/{id}/complete",
    tag = "billing",
    summary = "Complete a payment the processor confirmed",
    params(("id" = String, Path, description = "The id")),
    request_body(content = BTreeMap<String, String>, content_type = "application/json", description = "The query parameters the processor added to the return address"),
    responses((status = 200, description = "The payment", body = Completed), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:write"])),
)]
pub(crate) async fn api_complete(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query: BTreeMap<String, String> = if body.is_empty() { BTreeMap::new() } else { crate::api::json(&body)? };
    let payment = state.billing.complete_return(&a.id, &id, query).await.map_err(ApiError::from)?;
    Ok(Json(Completed { payment }).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/invoices",
    tag = "billing",
    summary = "Your invoices",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The invoices", body = Invoices), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:read"])),
)]
pub(crate) async fn api_invoices(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    axum::extract::Query(q): axum::extract::Query<crate::paging::PageQuery>,
) -> Result<Response, ApiError> {
    let invoices = state.billing.invoices_of(&a.id).await.map_err(ApiError::from)?;
    let (invoices, next) = crate::paging::page(
        invoices,
        |i| format!("{:030}|{}|{}", i.issued_at.unix_timestamp_nanos(), i.number, i.id),
        crate::paging::Order::Newest,
        &q,
    )?;
    let body = Json(Invoices { invoices }).into_response();
    Ok(crate::paging::announce(body, "/api/v1/billing/invoices", &q, next))
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/invoices/{id}",
    tag = "billing",
    summary = "One invoice",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "The invoice and its document", body = InvoiceView), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:read"])),
)]
pub(crate) async fn api_invoice(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (invoice, data) = state.billing.invoice(Some(&a.id), &id).await.map_err(ApiError::from)?;
    Ok(Json(InvoiceView { invoice, document: data }).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/billing/invoices/{id}/pdf",
    tag = "billing",
    summary = "An invoice as PDF",
    params(("id" = String, Path, description = "The id")),
    responses((status = 200, description = "The PDF", body = Vec<u8>, content_type = "application/pdf"), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(("signin_token" = []), ("personal_token" = ["billing:read"])),
)]
pub(crate) async fn api_invoice_pdf(
    State(state): State<AppState>,
    ApiAccount(a): ApiAccount,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (name, bytes) = state.billing.invoice_pdf(Some(&a.id), &id).await.map_err(ApiError::from)?;
    Ok(pdf_response(name, bytes))
}

/// A processor's webhook: 200 applied, 401 bad signature, 409 replayed.
#[utoipa::path(
    post,
    path = "/api/v1/billing/webhooks/{processor}",
    tag = "billing",
    summary = "A payment processor notification (signed by the processor)",
    params(("processor" = String, Path, description = "The processor name")),
    request_body(content = Object, content_type = "application/json", description = "The processor's own notification"),
    responses((status = 200, description = "Handled", body = seldesk_billing::WebhookResult), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    Path(processor): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let headers: Vec<(String, String)> =
        headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string()))).collect();
    let result = state.billing.webhook(&processor, &headers, &body).await.map_err(ApiError::from)?;
    Ok(Json(result).into_response())
}
