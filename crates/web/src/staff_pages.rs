//! The staff console: sign-in with password and TOTP, the Helpdesk queue,
//! and the retention report for the dpo role. Every view of personal data
//! is audited by the services it calls.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use seldesk_accounts::{Principal, SessionKind, StaffMember, Ticket, TicketMessage, TicketStatus};
use seldesk_domain::Role;
use seldesk_privacy::retention::ReportRow;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CsrfToken, SESSION_COOKIE, StaffUser, WebError, client_ip, cookie, message_of, status_of};
use crate::errors::ApiError;
use crate::pages::{message_page, render};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/staff", get(signin_form).post(signin))
        .route("/staff/signout", post(signout))
        .route("/staff/tickets", get(tickets))
        .route("/staff/tickets/{id}", get(ticket).post(reply))
        .route("/staff/retention", get(retention))
        .route("/staff/finance", get(finance))
        .route("/staff/finance/grant", post(grant_subscription))
}

#[derive(Template)]
#[template(path = "staff_signin.html")]
struct SigninPage {
    title: &'static str,
    csrf: String,
    error: Option<String>,
}

async fn signin_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(s)) = state.accounts.session(&t).await
        && s.kind == SessionKind::Staff
        && let Principal::Staff(id) = &s.principal
        && let Ok(staff) = state.accounts.staff(id).await
    {
        return Redirect::to(landing(&staff)).into_response();
    }
    let csrf = CsrfToken::for_request(&state, &headers);
    csrf.attach(render(StatusCode::OK, &SigninPage { title: "Staff sign-in", csrf: csrf.token.clone(), error: None }))
}

/// The first page a staff member sees: the console of their work, not one
/// their roles are refused (an HR member landing on the Helpdesk was told
/// it is for support and the DPO). Analytics, open to every staff member,
/// for roles without a console of their own.
fn landing(staff: &StaffMember) -> &'static str {
    [
        (Role::Support, "/staff/tickets"),
        (Role::Marketing, "/staff/marketing"),
        (Role::Dpo, "/staff/retention"),
        (Role::Hr, "/staff/careers"),
        (Role::Security, "/staff/security"),
        (Role::Finance, "/staff/finance"),
        (Role::Admin, "/staff/backups"),
    ]
    .into_iter()
    .find(|(role, _)| staff.has(*role))
    .map_or("/staff/analytics", |(_, page)| page)
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: SecretString,
    #[serde(default)]
    code: String,
}

async fn signin(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    match state
        .accounts
        .authenticate_staff(&f.email, f.password.expose_secret(), &f.code, &client_ip(Some(&conn)))
        .await
    {
        Ok(staff) => {
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                let _ = state.accounts.end_session(&old).await;
            }
            match state.accounts.create_session(SessionKind::Staff, Principal::Staff(staff.id.clone())).await {
                Ok((token, _)) => {
                    let mut r = Redirect::to(landing(&staff)).into_response();
                    r.headers_mut()
                        .append(header::SET_COOKIE, crate::cookies::set(&state, &crate::cookies::SESSION, &token));
                    r
                }
                Err(e) => WebError::from(e).into_response(),
            }
        }
        Err(e) => {
            render(status_of(&e), &SigninPage { title: "Staff sign-in", csrf: f.csrf, error: Some(message_of(&e)) })
        }
    }
}

async fn signout(State(state): State<AppState>, StaffUser(_, token): StaffUser) -> Response {
    let _ = state.accounts.end_session(&token).await;
    let mut r = Redirect::to("/staff").into_response();
    r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, &crate::cookies::SESSION));
    r
}

#[derive(Template)]
#[template(path = "staff_tickets.html")]
struct TicketsPage {
    title: &'static str,
    csrf: String,
    staff: StaffMember,
    tickets: Vec<Ticket>,
}

async fn tickets(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    match state.accounts.staff_tickets(&staff).await {
        Ok(tickets) => {
            let csrf = CsrfToken::for_request(&state, &headers);
            csrf.attach(render(
                StatusCode::OK,
                &TicketsPage { title: "Helpdesk queue", csrf: csrf.token.clone(), staff, tickets },
            ))
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "staff_ticket.html")]
struct TicketPage {
    title: String,
    csrf: String,
    ticket: Ticket,
    messages: Vec<TicketMessage>,
    error: Option<String>,
}

async fn ticket_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &StaffMember,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    match state.accounts.staff_ticket(staff, id).await {
        Ok((ticket, messages)) => {
            let csrf = CsrfToken::for_request(state, headers);
            csrf.attach(render(
                status,
                &TicketPage { title: format!("Ticket {id}"), csrf: csrf.token.clone(), ticket, messages, error },
            ))
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

async fn ticket(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    ticket_view(&state, &headers, &staff, id, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct ReplyForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    outcome: String,
}

async fn reply(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ReplyForm>,
) -> Response {
    let status = TicketStatus::parse(&f.status).unwrap_or(TicketStatus::InProgress);
    match state.accounts.staff_reply(&staff, id, &f.body, status, Some(&f.outcome)).await {
        Ok(_) => Redirect::to(&format!("/staff/tickets/{id}")).into_response(),
        Err(e) => {
            let code = status_of(&e);
            ticket_view(&state, &headers, &staff, id, Some(message_of(&e)), code).await
        }
    }
}

#[derive(Template)]
#[template(path = "staff_retention.html")]
struct RetentionPage {
    title: &'static str,
    csrf: String,
    rows: Vec<ReportRow>,
    last_run: String,
    overdue: u64,
    /// Personal-data requests past their answer date.
    late_requests: Vec<seldesk_accounts::Ticket>,
}

async fn retention(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    if !staff.has(Role::Dpo) {
        return crate::pages::message_page(
            StatusCode::FORBIDDEN,
            "Not for your role",
            "The retention report is for the dpo role.",
        );
    }
    let report = match state.retention.report().await {
        Ok(r) => r,
        Err(e) => return WebError::from(seldesk_accounts::AccountError::from(e)).into_response(),
    };
    let _ = state.accounts.audit_staff_view(&staff, "retention.report.view").await;
    let csrf = CsrfToken::for_request(&state, &headers);
    let page = RetentionPage {
        title: "Retention report",
        csrf: csrf.token.clone(),
        overdue: report.overdue(),
        late_requests: state.accounts.overdue_requests().await.unwrap_or_default(),
        last_run: report.last_run.map(|t| t.to_string()).unwrap_or_else(|| "never".into()),
        rows: report.rows,
    };
    csrf.attach(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "staff_support.html")]
struct SupportPage {
    title: &'static str,
    csrf: String,
    error: Option<String>,
    grant: Option<seldesk_tenants::support::SupportGrant>,
    sql: String,
    result: Option<seldesk_tenants::sandbox::QueryResult>,
}

pub(crate) fn support_routes() -> Router<AppState> {
    Router::new()
        .route("/staff/support", get(support_form).post(support_grant))
        .route("/staff/support/{grant}", post(support_query))
}

async fn support_form(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    // The same roles the grant itself needs (least privilege: no one else
    // is shown a way into customer databases).
    if !(staff.has(Role::Support) || staff.has(Role::Security)) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Not for your role",
            "Support access to a customer's database is for the support and security roles.",
        );
    }
    let csrf = CsrfToken::for_request(&state, &headers);
    csrf.attach(render(
        StatusCode::OK,
        &SupportPage {
            title: "Support access",
            csrf: csrf.token.clone(),
            error: None,
            grant: None,
            sql: String::new(),
            result: None,
        },
    ))
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    database: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    hours: String,
}

async fn support_grant(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Form(f): Form<GrantForm>,
) -> Response {
    let ticket = f.ticket.trim().parse::<i64>().unwrap_or(0);
    let hours = f.hours.trim().parse::<i64>().unwrap_or(0);
    let result = state.databases.grant_support(&staff.actor(), f.database.trim(), &f.reason, ticket, hours).await;
    let (status, error, grant) = match result {
        Ok(g) => (StatusCode::OK, None, Some(g)),
        Err(e) => (status_of(&e), Some(message_of(&e)), None),
    };
    render(
        status,
        &SupportPage { title: "Support access", csrf: f.csrf, error, grant, sql: String::new(), result: None },
    )
}

#[derive(Deserialize)]
struct QueryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
}

async fn support_query(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(grant): Path<i64>,
    Form(f): Form<QueryForm>,
) -> Response {
    let outcome = state.databases.support_query(&staff.actor(), grant, &f.sql).await;
    let grant = state.databases.support_grant(grant).await.ok();
    let (status, error, result) = match outcome {
        Ok(r) => (StatusCode::OK, None, Some(r)),
        Err(e) => (status_of(&e), Some(message_of(&e)), None),
    };
    render(status, &SupportPage { title: "Support access", csrf: f.csrf, error, grant, sql: f.sql, result })
}

#[derive(Template)]
#[template(path = "staff_finance.html")]
struct FinancePage {
    title: &'static str,
    csrf: String,
    records: Vec<seldesk_accounts::finance::ArchivedRecord>,
    payments: Vec<seldesk_billing::Payment>,
    invoices: Vec<seldesk_billing::InvoiceSummary>,
    failed: Vec<seldesk_billing::FailedRenewal>,
}

async fn finance(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    let records = match state.accounts.finance_archive(&staff).await {
        Ok(r) => r,
        Err(e) => return WebError::from(e).into_response(),
    };
    let lists = async {
        Ok::<_, seldesk_billing::BillingError>((
            state.billing.staff_payments(&staff).await?,
            state.billing.staff_invoices(&staff).await?,
            state.billing.failed_renewals(&staff).await?,
        ))
    }
    .await;
    match lists {
        Ok((payments, invoices, failed)) => {
            let csrf = CsrfToken::for_request(&state, &headers);
            let page = FinancePage { title: "Finance", csrf: csrf.token.clone(), records, payments, invoices, failed };
            csrf.attach(render(StatusCode::OK, &page))
        }
        Err(e) => message_page(status_of(&e), "Finance", &message_of(&e)),
    }
}

#[derive(Deserialize)]
struct SubscriptionGrantForm {
    #[serde(default)]
    database: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reason: String,
}

/// The finance role grants a subscription without a payment, with a reason.
async fn grant_subscription(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Form(f): Form<SubscriptionGrantForm>,
) -> Response {
    let Ok(until) = time::Date::parse(f.until.trim(), time::macros::format_description!("[year]-[month]-[day]")) else {
        return message_page(StatusCode::UNPROCESSABLE_ENTITY, "Grant", "Give the last day as YYYY-MM-DD.");
    };
    let until = until.with_hms(23, 59, 59).map(|d| d.assume_utc()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    match state.databases.grant_paid(&staff.actor(), f.database.trim(), until, &f.reason).await {
        Ok(d) => message_page(
            StatusCode::OK,
            "Subscription granted",
            &format!("{} is subscribed until {} (audited with your reason).", d.name, until.date()),
        ),
        Err(e) => message_page(status_of(&e), "Grant", &message_of(&e)),
    }
}

#[derive(Template)]
#[template(path = "staff_holds.html")]
struct HoldsPage {
    title: &'static str,
    csrf: String,
    holds: Vec<seldesk_privacy::LegalHold>,
    categories: Vec<(String, String)>,
    error: Option<String>,
}

pub(crate) fn hold_routes() -> Router<AppState> {
    Router::new().route("/staff/holds", get(holds).post(place_hold)).route("/staff/backups", get(backups))
}

#[derive(Template)]
#[template(path = "staff_backups.html")]
struct BackupsPage {
    title: &'static str,
    /// (database id, its name or why it has none, snapshots).
    databases: Vec<(String, String, Vec<seldesk_vault::SnapshotInfo>)>,
    regions: Vec<String>,
    /// Where mail goes when no SMTP server is configured.
    outbox: Option<String>,
}

/// Backups per database with size, date, regions and retain-until. Lists
/// metadata only; reading a backup's content is a restore (audited).
async fn backups(State(state): State<AppState>, StaffUser(staff, _): StaffUser) -> Response {
    if !(staff.has(Role::Admin) || staff.has(Role::Dpo) || staff.has(Role::Support)) {
        return crate::pages::message_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "The backup list is for the admin, dpo and support roles.",
        );
    }
    let names: std::collections::HashMap<String, String> =
        state.databases.list_all().await.unwrap_or_default().into_iter().map(|d| (d.id, d.name)).collect();
    let mut by_db: std::collections::BTreeMap<String, Vec<seldesk_vault::SnapshotInfo>> = Default::default();
    for s in state.backups.list(None).await.unwrap_or_default() {
        by_db.entry(s.database.clone()).or_default().push(s);
    }
    let databases = by_db
        .into_iter()
        .map(|(id, snaps)| {
            let name = if id == seldesk_vault::service::CONTROL_PLANE {
                "control plane".to_string()
            } else {
                names.get(&id).cloned().unwrap_or_else(|| "removed (kept until its backups expire)".into())
            };
            (id, name, snaps)
        })
        .collect();
    let regions = state.backups.vault().regions().iter().map(|r| r.region.clone()).collect();
    render(
        StatusCode::OK,
        &BackupsPage {
            title: "Backups",
            databases,
            regions,
            outbox: state.accounts.mailer().outbox_dir().map(|d| d.display().to_string()),
        },
    )
}

async fn holds_view(state: &AppState, headers: &HeaderMap, error: Option<String>, status: StatusCode) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    let holds = state.retention.holds().await.unwrap_or_default();
    let categories = state.policy.categories.iter().map(|c| (c.id.clone(), c.name.clone())).collect();
    csrf.attach(render(status, &HoldsPage { title: "Legal holds", csrf: csrf.token.clone(), holds, categories, error }))
}

async fn holds(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    if !(staff.has(Role::Security) || staff.has(Role::Dpo)) {
        return crate::pages::message_page(
            StatusCode::FORBIDDEN,
            "Not for your role",
            "Legal holds are for the security and dpo roles.",
        );
    }
    holds_view(&state, &headers, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct HoldForm {
    #[serde(default)]
    category: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    until: String,
}

async fn place_hold(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<HoldForm>,
) -> Response {
    let Ok(until) = time::Date::parse(f.until.trim(), time::macros::format_description!("[year]-[month]-[day]")) else {
        return holds_view(
            &state,
            &headers,
            Some("Give the end date as YYYY-MM-DD.".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let hold = seldesk_privacy::NewHold {
        category: f.category,
        subject: Some(f.subject.trim().to_string()).filter(|s| !s.is_empty()),
        from: None,
        to: None,
        reason: f.reason,
        until: until.midnight().assume_utc(),
    };
    match state.retention.place_hold(&staff.actor(), hold).await {
        Ok(_) => Redirect::to("/staff/holds").into_response(),
        Err(e) => holds_view(&state, &headers, Some(message_of(&e)), status_of(&e)).await,
    }
}

/// A staff member, their roles written out, and every role with whether they hold it.
type StaffRow = (seldesk_accounts::StaffMember, String, Vec<(&'static str, bool)>);

#[derive(Template)]
#[template(path = "staff_people.html")]
struct PeoplePage {
    title: &'static str,
    csrf: String,
    /// Each member with their roles written out, and every role with
    /// whether they hold it.
    staff: Vec<StaffRow>,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "staff_nodes.html")]
struct NodesPage {
    title: &'static str,
    nodes: Vec<NodeRow>,
    /// Live nodes whose commits wait longer than [`LAG_ALERT_MS`] to reach
    /// the backup regions.
    behind: Vec<String>,
}

/// Past this, a node's shipping lag is an alert (as `seldesk backup status`
/// says by default).
const LAG_ALERT_MS: i64 = 10_000;

struct NodeRow {
    name: String,
    /// Data centers by name, e.g. "India (Mumbai)".
    regions: String,
    address: String,
    live: bool,
    retired: bool,
    draining: bool,
    seen: String,
    databases: i64,
    disk: String,
    /// How long its oldest commit not yet in the backup regions had waited.
    lag: String,
}

/// The cluster's nodes, for the admin role (the same as `seldesk node list`).
async fn nodes(State(state): State<AppState>, StaffUser(staff, _): StaffUser) -> Response {
    if !staff.has(Role::Admin) {
        return message_page(StatusCode::FORBIDDEN, "Not for your role", "The nodes are for the admin role.");
    }
    let list = match state.databases.nodes().list().await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let _ = state.accounts.audit_staff_view(&staff, "nodes.view").await;
    let now = state.clock.now();
    let behind = list
        .iter()
        .filter(|n| n.live && n.stream_lag_ms > LAG_ALERT_MS)
        .map(|n| format!("{} ({:.1} s)", n.name, n.stream_lag_ms as f64 / 1000.0))
        .collect();
    let nodes = list
        .into_iter()
        .map(|n| NodeRow {
            regions: n
                .regions
                .iter()
                .map(|r| {
                    state.policy.region(r).map(|x| format!("{} ({})", x.name, x.city)).unwrap_or_else(|| r.clone())
                })
                .collect::<Vec<_>>()
                .join(", "),
            seen: format!("{} s ago", (now - n.last_seen).whole_seconds().max(0)),
            disk: format!("{:.1} MB", n.disk_bytes as f64 / 1e6),
            lag: format!("{:.1} s", n.stream_lag_ms as f64 / 1000.0),
            name: n.name,
            address: n.address,
            live: n.live,
            retired: n.retired,
            draining: n.draining,
            databases: n.databases,
        })
        .collect();
    render(StatusCode::OK, &NodesPage { title: "Nodes", nodes, behind })
}

pub(crate) fn people_routes() -> Router<AppState> {
    Router::new()
        .route("/staff/people", get(people))
        .route("/staff/people/{id}/{action}", post(change_person))
        .route("/staff/nodes", get(nodes))
}

/// The admin's list of staff, where people who leave are disabled and
/// duties change (the same as `seldesk staff …`).
async fn people_view(
    state: &AppState,
    staff: &seldesk_accounts::StaffMember,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    if !staff.has(Role::Admin) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Not for your role",
            "Staff accounts are managed by the admin role.",
        );
    }
    let list = state.accounts.list_staff().await.unwrap_or_default();
    let _ = state.accounts.audit_staff_view(staff, "staff.list.view").await;
    let csrf = CsrfToken::for_request(state, headers);
    let page = PeoplePage {
        title: "Staff",
        csrf: csrf.token.clone(),
        staff: list
            .into_iter()
            .map(|m| {
                let roles = m.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
                let choices = Role::ALL.iter().map(|r| (r.as_str(), m.roles.contains(r))).collect();
                (m, roles, choices)
            })
            .collect(),
        notice,
        error: error.clone(),
    };
    csrf.attach(render(if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK }, &page))
}

async fn people(State(state): State<AppState>, StaffUser(staff, _): StaffUser, headers: HeaderMap) -> Response {
    people_view(&state, &staff, &headers, None, None).await
}

async fn change_person(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    if !staff.has(Role::Admin) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Not for your role",
            "Staff accounts are managed by the admin role.",
        );
    }
    let member = match state.accounts.staff(&id).await {
        Ok(m) => m,
        Err(e) => return WebError::from(e).into_response(),
    };
    let actor = staff.actor();
    let done = match action.as_str() {
        "disable" | "enable" => {
            state.accounts.set_staff_disabled(&actor, &member.email, action == "disable").await.map(|m| {
                format!("{} is {}.", m.email, if m.disabled { "disabled: every session ended" } else { "enabled" })
            })
        }
        "roles" => {
            let roles: Option<Vec<Role>> = field("role").into_iter().map(Role::parse).collect();
            match roles {
                Some(roles) => state.accounts.set_staff_roles(&actor, &member.email, &roles).await.map(|m| {
                    format!(
                        "{} now has the roles {}.",
                        m.email,
                        roles.iter().map(Role::as_str).collect::<Vec<_>>().join(", ")
                    )
                }),
                None => Err(seldesk_accounts::AccountError::Invalid {
                    field: "role",
                    message: "Choose roles from the list.".into(),
                }),
            }
        }
        "reset-totp" => state.accounts.reset_staff_totp(&actor, &member.email).await.map(|(secret, url)| {
            format!(
                "New authenticator secret for {} (shown once; hand it over in person): {secret} — {url}",
                member.email
            )
        }),
        _ => return message_page(StatusCode::NOT_FOUND, "Not found", "No such change."),
    };
    match done {
        Ok(notice) => people_view(&state, &staff, &headers, Some(notice), None).await,
        Err(e) => people_view(&state, &staff, &headers, None, Some(message_of(&e))).await,
    }
}
