//! Browser data in the staff console: the anonymous analytics dashboard
//! (BRW-3) and the security role's audited search (BRW-4).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use seldesk_domain::Role;
use seldesk_visits::security::Basis;
use seldesk_visits::{Visit, Who};

use crate::AppState;
use crate::auth::{CsrfToken, StaffUser};
use crate::errors::{message_of, status_of};
use crate::pages::{message_page, render};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/staff/analytics", get(analytics))
        .route("/staff/security", get(security_form).post(security_search))
}

struct Bar {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    label: String,
    value: u64,
}

struct TopRow {
    value: String,
    count: u64,
    width: u32,
}

struct Top {
    dimension: &'static str,
    label: &'static str,
    rows: Vec<TopRow>,
}

#[derive(Template)]
#[template(path = "staff_analytics.html")]
struct AnalyticsPage {
    title: &'static str,
    span: i64,
    min_group: u32,
    keep: String,
    total_visits: u64,
    consented_visits: u64,
    pages_per_visit: Option<String>,
    chart_w: u32,
    chart_h: u32,
    bars: Vec<Bar>,
    first_day: String,
    last_day: String,
    tops: Vec<Top>,
    geo_configured: bool,
}

const SPAN_DAYS: i64 = 30;

async fn analytics(State(state): State<AppState>, StaffUser(_staff, _): StaffUser) -> Response {
    let to = state.clock.now().date();
    let from = to - time::Duration::days(SPAN_DAYS - 1);
    let d = match state.visits.aggregates.dashboard(from, to, 10).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "analytics failed");
            return message_page(StatusCode::INTERNAL_SERVER_ERROR, "Analytics", "The statistics could not be read.");
        }
    };
    let (chart_w, chart_h) = (600u32, 160u32);
    let max = d.days.iter().map(|x| x.visits).max().unwrap_or(0).max(1);
    let slot = chart_w / d.days.len().max(1) as u32;
    let bars = d
        .days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let h = (day.visits * u64::from(chart_h) / max) as u32;
            Bar {
                x: i as u32 * slot + 1,
                y: chart_h - h,
                w: slot.saturating_sub(2).max(1),
                h,
                label: day.day.to_string(),
                value: day.visits,
            }
        })
        .collect();
    let tops = seldesk_visits::aggregate::DIMENSIONS
        .iter()
        .map(|(dim, label)| {
            let list = d.top.get(*dim).cloned().unwrap_or_default();
            let top_max = list.iter().map(|x| x.1).max().unwrap_or(1).max(1);
            Top {
                dimension: dim,
                label,
                rows: list
                    .into_iter()
                    .map(|(value, count)| TopRow { width: (count * 300 / top_max) as u32, value, count })
                    .collect(),
            }
        })
        .collect();
    let page = AnalyticsPage {
        title: "Analytics",
        span: SPAN_DAYS,
        min_group: d.min_group,
        keep: state.policy.retention("browser_event").map(|r| r.keep.to_string()).unwrap_or_default(),
        total_visits: d.days.iter().map(|x| x.visits).sum(),
        consented_visits: d.consented_visits,
        pages_per_visit: (d.consented_visits > 0)
            .then(|| format!("{:.1}", d.consented_pages as f64 / d.consented_visits as f64)),
        chart_w,
        chart_h,
        bars,
        first_day: from.to_string(),
        last_day: to.to_string(),
        tops,
        geo_configured: state.visits.geo.is_configured(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "staff_security.html")]
struct SecurityPage {
    title: &'static str,
    csrf: String,
    who: String,
    error: Option<String>,
    results: Option<Vec<Visit>>,
}

fn security_view(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    who: String,
    error: Option<String>,
    results: Option<Vec<Visit>>,
) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    csrf.attach(render(
        status,
        &SecurityPage { title: "Security: browser data", csrf: csrf.token.clone(), who, error, results },
    ))
}

async fn security_form(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    if !staff.has(Role::Security) {
        return message_page(StatusCode::FORBIDDEN, "Not allowed", "Only the security role can search browser data.");
    }
    security_view(&state, &headers, StatusCode::OK, String::new(), None, None)
}

#[derive(serde::Deserialize)]
struct SearchForm {
    #[serde(default)]
    by: String,
    #[serde(default)]
    who: String,
    #[serde(default)]
    basis: String,
    #[serde(default)]
    reference: String,
}

async fn security_search(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<SearchForm>,
) -> Response {
    let fail = |status, msg: String| security_view(&state, &headers, status, f.who.clone(), Some(msg), None);
    let Some(basis) = Basis::parse(&f.basis) else {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose the basis: an Acceptable Use Policy case or a legal request.".into(),
        );
    };
    let who = match f.by.as_str() {
        "ip" => Who::Ip(f.who.trim().to_string()),
        "email" => match state.accounts.account_id_by_email(&f.who).await {
            Ok(Some(id)) => Who::Person(seldesk_accounts::service::subject_of(&id)),
            Ok(None) => return fail(StatusCode::NOT_FOUND, "No account has this e-mail address.".into()),
            Err(e) => return fail(status_of(&e), message_of(&e)),
        },
        _ => return fail(StatusCode::UNPROCESSABLE_ENTITY, "Search by IP address or account e-mail.".into()),
    };
    let audit = state.retention.audit().clone();
    match seldesk_visits::security::search(&state.visits.store, &audit, &staff.actor(), who, basis, &f.reference).await
    {
        Ok(rows) => security_view(&state, &headers, StatusCode::OK, f.who.clone(), None, Some(rows)),
        Err(e) => fail(status_of(&e), message_of(&e)),
    }
}
