//! Marketing: event pages and registration, the partner directory and
//! "have a partner contact me", the preference page and one-click
//! unsubscribe reached from any message, and the marketing console
//! (campaigns, events, partners, trend reports). Handlers only translate
//! HTTP; the marketing service holds every rule.

use std::net::SocketAddr;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use seldesk_marketing::{
    Campaign, Dimension, Event, EventInput, MarketingError, Partner, PartnerInput, Preference, Referral, Registration,
    RegistrationInput, Segment, TrendRow,
};
use seldesk_privacy::DisclosureRecord;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{ApiError, CsrfToken, MaybeAccount, SignedIn, StaffUser};
use crate::errors::{error_page, message_of, status_of};
use crate::pages::render;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events_page))
        .route("/events/{slug}", get(event_page).post(register))
        .route("/partners", get(partners_page).post(refer))
        .route("/marketing/preferences/{token}", get(preferences_page).post(set_preferences))
        .route("/marketing/unsubscribe/{token}", get(unsubscribe_page).post(one_click))
        .route("/account/marketing", post(account_marketing))
        .route("/staff/marketing", get(console).post(create_campaign))
        .route("/staff/marketing/campaigns/{id}", get(campaign_page))
        .route("/staff/marketing/campaigns/{id}/send", post(send_campaign))
        .route("/staff/marketing/events", post(create_event))
        .route("/staff/marketing/events/{id}/status", post(event_status))
        .route("/staff/marketing/events/{id}/transfers/{key}", get(transfer_file))
        .route("/staff/marketing/partners", post(create_partner))
        .route("/staff/marketing/partners/{id}/active", post(partner_active))
        .route("/staff/marketing/trends", get(trends_page))
        .route("/staff/marketing/trends.csv", get(trends_csv))
        .route("/api/v1/events", get(api_events))
        .route("/api/v1/events/{slug}/registrations", post(api_register))
        .route("/api/v1/partners", get(api_partners))
        .route("/api/v1/partners/referrals", post(api_refer))
}

/// Pages behind a private link: keep the token out of caches and referrers.
fn private(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

fn keep_of(state: &AppState) -> String {
    state.policy.retention("marketing_contact").map(|r| r.keep.to_string()).unwrap_or_default()
}

// ----- events -----

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    title: &'static str,
    events: Vec<Event>,
}

async fn events_page(State(state): State<AppState>) -> Response {
    match state.marketing.open_events().await {
        Ok(events) => render(StatusCode::OK, &EventsPage { title: "Events", events }),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ContactFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    country: String,
}

impl ContactFields {
    fn input(&self) -> RegistrationInput {
        RegistrationInput {
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            company: self.company.clone(),
            country: self.country.clone(),
        }
    }

    fn from_account(a: &seldesk_accounts::Account) -> Self {
        Self {
            name: a.name.clone(),
            email: a.email.clone(),
            phone: a.phone.clone().unwrap_or_default(),
            company: a.company.clone(),
            country: a.country.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    title: String,
    csrf: String,
    event: Event,
    description_html: String,
    keep: String,
    f: ContactFields,
    error: Option<String>,
    done: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn event_view(
    state: &AppState,
    headers: &HeaderMap,
    event: Event,
    f: ContactFields,
    error: Option<String>,
    done: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    let page = EventPage {
        title: event.title.clone(),
        csrf: csrf.token.clone(),
        description_html: crate::markdown_to_html(&event.description),
        event,
        keep: keep_of(state),
        f,
        error,
        done,
    };
    csrf.attach(render(status, &page))
}

async fn event_page(
    State(state): State<AppState>,
    MaybeAccount(me): MaybeAccount,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Response {
    match state.marketing.open_event(&slug).await {
        Ok(e) => {
            let f = me.map(|(a, _, _)| ContactFields::from_account(&a)).unwrap_or_default();
            event_view(&state, &headers, e, f, None, None, StatusCode::OK)
        }
        Err(e) => error_page(&e),
    }
}

async fn register(
    State(state): State<AppState>,
    MaybeAccount(me): MaybeAccount,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(f): Form<ContactFields>,
) -> Response {
    let event = match state.marketing.open_event(&slug).await {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    let account_id = me.as_ref().map(|(a, _, _)| a.id.as_str());
    match state.marketing.register(&slug, &f.input(), account_id).await {
        Ok((r, _)) => {
            let done = format!(
                "You are registered, {}. We sent a confirmation to {} with a private link showing what was shared with whom.",
                r.name, r.email
            );
            event_view(&state, &headers, event, ContactFields::default(), None, Some(done), StatusCode::OK)
        }
        Err(e) => {
            let status = status_of(&e);
            event_view(&state, &headers, event, f, Some(message_of(&e)), None, status)
        }
    }
}

// ----- partners -----

#[derive(Template)]
#[template(path = "partners.html")]
struct PartnersPage {
    title: &'static str,
    csrf: String,
    partners: Vec<Partner>,
    countries: Vec<(&'static str, &'static str)>,
    f: ContactFields,
    error: Option<String>,
    done: Option<Referral>,
}

#[allow(clippy::too_many_arguments)]
async fn partners_view(
    state: &AppState,
    headers: &HeaderMap,
    f: ContactFields,
    error: Option<String>,
    done: Option<Referral>,
    status: StatusCode,
) -> Response {
    let partners = match state.marketing.partners(true).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let csrf = CsrfToken::for_request(state, headers);
    let page = PartnersPage {
        title: "Partners",
        csrf: csrf.token.clone(),
        partners,
        countries: seldesk_domain::country::all(),
        f,
        error,
        done,
    };
    csrf.attach(render(status, &page))
}

async fn partners_page(
    State(state): State<AppState>,
    MaybeAccount(me): MaybeAccount,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let mut f = me.map(|(a, _, _)| ContactFields::from_account(&a)).unwrap_or_default();
    if f.country.is_empty() {
        f.country = crate::consent::remembered_country(&state, &headers)
            .or_else(|| state.visits.geo.country(conn.0.ip()))
            .or_else(|| crate::db_pages::browser_country(&headers))
            .unwrap_or_default();
    }
    partners_view(&state, &headers, f, None, None, StatusCode::OK).await
}

async fn refer(
    State(state): State<AppState>,
    MaybeAccount(me): MaybeAccount,
    headers: HeaderMap,
    Form(f): Form<ContactFields>,
) -> Response {
    let account_id = me.as_ref().map(|(a, _, _)| a.id.as_str());
    match state.marketing.refer(&f.input(), account_id).await {
        Ok((r, _)) => {
            let mut page =
                partners_view(&state, &headers, ContactFields::default(), None, Some(r), StatusCode::OK).await;
            crate::consent::remember_country(&state, &headers, &mut page, &f.country);
            page
        }
        Err(e) => {
            let status = status_of(&e);
            partners_view(&state, &headers, f, Some(message_of(&e)), None, status).await
        }
    }
}

// ----- the person's page behind a message's link -----

#[derive(Template)]
#[template(path = "marketing_preferences.html")]
struct PreferencesPage {
    title: &'static str,
    csrf: String,
    token: String,
    pref: Preference,
    suppressed: bool,
    registrations: Vec<(Registration, Event)>,
    referrals: Vec<Referral>,
    transfers: Vec<DisclosureRecord>,
    keep: String,
    notice: Option<String>,
}

async fn preferences_view(state: &AppState, headers: &HeaderMap, token: &str, notice: Option<String>) -> Response {
    let m = &state.marketing;
    let result = async {
        let link = m.link(token).await?;
        Ok::<_, MarketingError>((
            m.preference(&link.subject).await?,
            m.link_suppressed(&link).await?,
            m.registrations_of(&link.subject).await?,
            m.referrals_of(&link.subject).await?,
            m.transfers_of(&link.subject).await?,
        ))
    }
    .await;
    match result {
        Ok((pref, suppressed, registrations, referrals, transfers)) => {
            let csrf = CsrfToken::for_request(state, headers);
            let page = PreferencesPage {
                title: "Your marketing choices",
                csrf: csrf.token.clone(),
                token: token.to_string(),
                pref,
                suppressed,
                registrations,
                referrals,
                transfers,
                keep: keep_of(state),
                notice,
            };
            private(csrf.attach(render(StatusCode::OK, &page)))
        }
        Err(e) => private(error_page(&e)),
    }
}

async fn preferences_page(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    preferences_view(&state, &headers, &token, None).await
}

#[derive(Deserialize)]
struct ChoiceForm {
    #[serde(default)]
    choice: String,
}

async fn set_preferences(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<ChoiceForm>,
) -> Response {
    let result = match f.choice.as_str() {
        "in" => state.marketing.resubscribe(&token).await.map(|_| "You will get our news again. Thank you."),
        "out" => state.marketing.unsubscribe(&token).await.map(|_| "You are unsubscribed: no more marketing e-mail."),
        _ => Err(MarketingError::Invalid { field: "choice", message: "Choose to get our news or not.".into() }),
    };
    match result {
        Ok(notice) => preferences_view(&state, &headers, &token, Some(notice.into())).await,
        Err(e) => private(error_page(&e)),
    }
}

#[derive(Template)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage {
    title: &'static str,
    token: String,
    done: bool,
}

/// The visible link: one button, because mail scanners follow links and a
/// GET must never unsubscribe anyone by itself.
async fn unsubscribe_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.marketing.link(&token).await {
        Ok(_) => private(render(StatusCode::OK, &UnsubscribePage { title: "Unsubscribe", token, done: false })),
        Err(e) => private(error_page(&e)),
    }
}

/// RFC 8058 one-click: the mail client (or the button) posts here. The
/// unguessable token in the address is the authority, so no session or
/// form token is asked for — a mail client has neither.
async fn one_click(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    match state.marketing.unsubscribe(&token).await {
        Ok(_) => {
            let wants_html =
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
            if wants_html {
                private(render(StatusCode::OK, &UnsubscribePage { title: "Unsubscribe", token, done: true }))
            } else {
                private(
                    (StatusCode::OK, "Unsubscribed: no more marketing e-mail will be sent to this address.\n")
                        .into_response(),
                )
            }
        }
        Err(e) => private(error_page(&e)),
    }
}

#[derive(Deserialize)]
struct AccountChoice {
    #[serde(default)]
    marketing: Option<String>,
}

async fn account_marketing(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Form(f): Form<AccountChoice>,
) -> Response {
    let yes = f.marketing.is_some();
    match state.marketing.set_preference(&account.actor(), &account.subject(), &account.email, yes, "account").await {
        Ok(_) => Redirect::to("/account?saved=1").into_response(),
        Err(e) => error_page(&e),
    }
}

// ----- the marketing console -----

#[derive(Template)]
#[template(path = "staff_marketing.html")]
struct ConsolePage {
    title: &'static str,
    csrf: String,
    campaigns: Vec<Campaign>,
    events: Vec<(Event, u64)>,
    partners: Vec<Partner>,
    countries: Vec<(&'static str, &'static str)>,
    industries: &'static [&'static str],
    interests: &'static [&'static str],
    basis: &'static str,
    error: Option<String>,
}

async fn console_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    error: Option<(StatusCode, String)>,
) -> Response {
    let actor = staff.actor();
    let m = &state.marketing;
    let result = async {
        Ok::<_, MarketingError>((m.campaigns(&actor).await?, m.all_events(&actor).await?, m.partners(false).await?))
    }
    .await;
    match result {
        Ok((campaigns, events, partners)) => {
            let csrf = CsrfToken::for_request(state, headers);
            let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
            csrf.attach(render(
                status,
                &ConsolePage {
                    title: "Marketing",
                    csrf: csrf.token.clone(),
                    campaigns,
                    events,
                    partners,
                    countries: seldesk_domain::country::all(),
                    industries: seldesk_accounts::INDUSTRIES,
                    interests: seldesk_accounts::INTERESTS,
                    basis: m.basis().as_str(),
                    error: error.map(|(_, m)| m),
                },
            ))
        }
        Err(e) => error_page(&e),
    }
}

/// After a form of the console: back to its section, or the console with the error.
async fn back_to_console<T>(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    result: Result<T, MarketingError>,
    section: &str,
) -> Response {
    match result {
        Ok(_) => Redirect::to(&format!("/staff/marketing#{section}")).into_response(),
        Err(e) => console_view(state, headers, staff, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn console(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    console_view(&state, &headers, &staff, None).await
}

#[derive(Deserialize)]
struct CampaignForm {
    #[serde(default)]
    mail_subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    industry: String,
    #[serde(default)]
    interest: String,
    #[serde(default)]
    plan: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string()).filter(|s| !s.trim().is_empty())
}

async fn create_campaign(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<CampaignForm>,
) -> Response {
    let segment = Segment {
        country: some(&f.country),
        industry: some(&f.industry),
        interest: some(&f.interest),
        plan: some(&f.plan),
    };
    match state.marketing.create_campaign(&staff.actor(), &f.mail_subject, &f.body, segment).await {
        Ok(c) => Redirect::to(&format!("/staff/marketing/campaigns/{}", c.id)).into_response(),
        Err(e) => {
            let status = status_of(&e);
            console_view(&state, &headers, &staff, Some((status, message_of(&e)))).await
        }
    }
}

#[derive(Template)]
#[template(path = "staff_campaign.html")]
struct CampaignPage {
    title: &'static str,
    csrf: String,
    c: Campaign,
    preview: String,
    audience: usize,
    not_opted_in: u64,
    suppressed: u64,
    error: Option<String>,
}

async fn campaign_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    id: &str,
    error: Option<(StatusCode, String)>,
) -> Response {
    let m = &state.marketing;
    let result = async {
        let c = m.campaign(&staff.actor(), id).await?;
        let audience = m.audience(&c.segment).await?;
        Ok::<_, MarketingError>((c, audience))
    }
    .await;
    match result {
        Ok((c, audience)) => {
            let csrf = CsrfToken::for_request(state, headers);
            let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
            let page = CampaignPage {
                title: "Campaign",
                csrf: csrf.token.clone(),
                preview: m.render_message(&c, "Asha", "PERSONAL-LINK"),
                audience: audience.subjects.len(),
                not_opted_in: audience.not_opted_in,
                suppressed: audience.suppressed,
                c,
                error: error.map(|(_, m)| m),
            };
            csrf.attach(render(status, &page))
        }
        Err(e) => error_page(&e),
    }
}

async fn campaign_page(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    campaign_view(&state, &headers, &staff, &id, None).await
}

async fn send_campaign(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match state.marketing.start_campaign(&staff.actor(), &id).await {
        Ok(_) => Redirect::to(&format!("/staff/marketing/campaigns/{id}")).into_response(),
        Err(e) => {
            let status = status_of(&e);
            campaign_view(&state, &headers, &staff, &id, Some((status, message_of(&e)))).await
        }
    }
}

#[derive(Deserialize)]
struct EventForm {
    #[serde(flatten)]
    input: EventInput,
}

async fn create_event(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<EventForm>,
) -> Response {
    let result = state.marketing.create_event(&staff.actor(), &f.input).await;
    back_to_console(&state, &headers, &staff, result, "events").await
}

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    status: String,
}

async fn event_status(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(id): Path<String>,
    Form(f): Form<StatusForm>,
) -> Response {
    match state.marketing.set_event_status(&staff.actor(), &id, &f.status).await {
        Ok(_) => Redirect::to("/staff/marketing#events").into_response(),
        Err(e) => error_page(&e),
    }
}

async fn transfer_file(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    let key = key.strip_suffix(".csv").unwrap_or(&key).to_string();
    match state.marketing.transfer_file(&staff.actor(), &id, &key).await {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"registrations-{key}.csv\"")),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            csv,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct PartnerForm {
    #[serde(flatten)]
    input: PartnerInput,
}

async fn create_partner(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<PartnerForm>,
) -> Response {
    let result = state.marketing.create_partner(&staff.actor(), &f.input).await;
    back_to_console(&state, &headers, &staff, result, "partners").await
}

async fn partner_active(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(id): Path<String>,
    Form(f): Form<StatusForm>,
) -> Response {
    match state.marketing.set_partner_active(&staff.actor(), &id, f.status == "active").await {
        Ok(_) => Redirect::to("/staff/marketing#partners").into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
struct TrendQuery {
    #[serde(default)]
    by: Option<String>,
}

fn dimension(q: &TrendQuery) -> Result<Dimension, MarketingError> {
    match q.by.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(Dimension::Total),
        Some(s) => Dimension::parse(s).ok_or_else(|| MarketingError::Invalid {
            field: "by",
            message: format!("`{s}` is not a breakdown; use total, country, industry or interest."),
        }),
    }
}

#[derive(Template)]
#[template(path = "staff_trends.html")]
struct TrendsPage {
    title: &'static str,
    by: &'static str,
    dimensions: [Dimension; 4],
    rows: Vec<TrendRow>,
    min: u64,
}

async fn trends_page(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Query(q): Query<TrendQuery>,
) -> Response {
    let result = async {
        let d = dimension(&q)?;
        Ok::<_, MarketingError>((d, state.marketing.trends(&staff.actor(), d).await?))
    }
    .await;
    match result {
        Ok((d, rows)) => render(
            StatusCode::OK,
            &TrendsPage {
                title: "Trends",
                by: d.as_str(),
                dimensions: Dimension::ALL,
                rows,
                min: state.policy.research.min_group_size,
            },
        ),
        Err(e) => error_page(&e),
    }
}

async fn trends_csv(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Query(q): Query<TrendQuery>,
) -> Response {
    let result = async {
        let d = dimension(&q)?;
        Ok::<_, MarketingError>((d, state.marketing.trends_csv(&staff.actor(), d).await?))
    }
    .await;
    match result {
        Ok((d, csv)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"seldesk-trends-by-{}.csv\"", d.as_str())),
            ],
            csv,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

// ----- JSON API -----

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    summary = "Upcoming events",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The events", body = Events), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_events(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<crate::paging::PageQuery>,
) -> Result<Response, ApiError> {
    let events = state.marketing.open_events().await.map_err(ApiError::from)?;
    let (events, next) = crate::paging::page(
        events,
        |e| format!("{:030}|{}", e.starts_at.unix_timestamp_nanos(), e.id),
        crate::paging::Order::Oldest,
        &q,
    )?;
    let body = Json(Events { events }).into_response();
    Ok(crate::paging::announce(body, "/api/v1/events", &q, next))
}

#[utoipa::path(
    post,
    path = "/api/v1/events/{slug}/registrations",
    tag = "events",
    summary = "Register for an event",
    params(("slug" = String, Path, description = "The event slug")),
    request_body(content = seldesk_marketing::RegistrationInput, content_type = "application/json"),
    responses((status = 201, description = "The registration", body = Registered), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_register(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: RegistrationInput = crate::api::json(&body)?;
    let (r, _) = state.marketing.register(&slug, &input, None).await.map_err(ApiError::from)?;
    let event = state.marketing.open_event(&slug).await.map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(Registered { id: r.id, event: event.title.clone(), shared_with: event.recipient_names() }),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/partners",
    tag = "partners",
    summary = "Partners",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The partners", body = Partners), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_partners(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<crate::paging::PageQuery>,
) -> Result<Response, ApiError> {
    let partners = state.marketing.partners(true).await.map_err(ApiError::from)?;
    let (partners, next) = crate::paging::page(
        partners,
        |p| format!("{}\u{0}{}\u{0}{}", p.country, p.name, p.id),
        crate::paging::Order::Oldest,
        &q,
    )?;
    let body = Json(Partners { partners }).into_response();
    Ok(crate::paging::announce(body, "/api/v1/partners", &q, next))
}

#[utoipa::path(
    post,
    path = "/api/v1/partners/referrals",
    tag = "partners",
    summary = "Ask to be put in touch with a partner",
    request_body(content = seldesk_marketing::RegistrationInput, content_type = "application/json"),
    responses((status = 201, description = "The referral", body = Referred), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_refer(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let input: RegistrationInput = crate::api::json(&body)?;
    let (r, _) = state.marketing.refer(&input, None).await.map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(Referred { id: r.id, partner: r.partner_name, partner_website: r.partner_website }))
        .into_response())
}

/// Upcoming events.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Events {
    pub events: Vec<seldesk_marketing::Event>,
}

/// A registration: who receives the four fields.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Registered {
    pub id: String,
    /// The event's title.
    pub event: String,
    /// The organiser and each sponsor, who each receive name, e-mail, phone and company.
    pub shared_with: Vec<String>,
}

/// The partners.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Partners {
    pub partners: Vec<seldesk_marketing::Partner>,
}

/// A referral: the partner the person is put in touch with.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Referred {
    pub id: String,
    pub partner: String,
    pub partner_website: String,
}
