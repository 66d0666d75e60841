//! The customer control panel for databases: list, create, contacts,
//! export, import, cancel, reactivate, remove.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use seldesk_tenants::{Contact, ContactInput, CustomerDb, DbStatus, TenantError};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::auth::{CsrfToken, SignedIn};
use crate::errors::{error_page, message_of, status_of};
use crate::pages::{message_page, render};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/databases", get(list).post(create))
        .route("/databases/{id}", get(show))
        .route("/databases/{id}/contacts", post(add_contact))
        .route("/databases/{id}/contacts/{cid}/delete", post(delete_contact))
        .route("/databases/{id}/contacts/{cid}", post(edit_contact))
        .route("/databases/{id}/export", get(export))
        .route("/databases/{id}/cancel", post(cancel))
        .route("/databases/{id}/reactivate", post(reactivate))
        .route("/databases/{id}/upgrade", post(upgrade))
        .route("/databases/{id}/test-upgrade", post(test_upgrade))
        .route("/databases/{id}/remove", post(remove))
        .route("/databases/{id}/restore", post(restore))
        .route("/databases/{id}/restore-at", post(restore_at))
        .route("/databases/{id}/restores/{rid}", get(restore_progress))
        .route("/databases/{id}/move", post(move_db))
        .route("/databases/{id}/access/{grant}/revoke", post(revoke_grant))
        .route("/databases/{id}/access/{grant}/approve", post(approve_grant))
}

pub(crate) fn upload_routes() -> Router<AppState> {
    Router::new().route("/databases/import", post(import))
}

/// The country of the browser's first preferred language, e.g. `IN` for `en-IN`.
pub(crate) fn browser_country(headers: &HeaderMap) -> Option<String> {
    let first = headers.get(axum::http::header::ACCEPT_LANGUAGE)?.to_str().ok()?.split(',').next()?;
    let tag = first.split(';').next()?.trim();
    let region = tag.split(['-', '_']).nth(1)?;
    (region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic())).then(|| region.to_ascii_uppercase())
}

/// What just happened, said on the page an action leads back to
/// (`?done=KEY`; an unknown key says nothing, so the address carries no text).
fn done_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "Your database is ready. Add your first contact below, or import an export.",
        "contact-added" => "Contact added.",
        "contact-saved" => "Contact saved.",
        "contact-deleted" => "Contact deleted, with its files.",
        "cancelled" => "Database cancelled.",
        "reactivated" => "Database reactivated: it works again.",
        "upgraded" => "Database upgraded to the current structure.",
        "move-started" => "The move has begun.",
        "access-revoked" => "Support access ended.",
        "changes-allowed" => "Support may now make changes, until the access ends.",
        _ => return None,
    })
}

/// The sections of a database's page, in the order its tabs show them.
const TABS: &[(&str, &str)] = &[
    ("contacts", "Contacts"),
    ("backups", "Backups"),
    ("location", "Data center"),
    ("billing", "Billing"),
    ("access", "Access log"),
    ("settings", "Settings"),
];

/// The tab a query names; the contacts for anything else.
fn tab_of(v: Option<&str>) -> &'static str {
    TABS.iter().find(|(k, _)| Some(*k) == v).map_or("contacts", |(k, _)| k)
}

/// The page of a database showing `tab`, for an error to be shown on.
fn on_tab(tab: &str) -> Option<SearchQuery> {
    Some(SearchQuery { tab: Some(tab.to_string()), ..SearchQuery::default() })
}

/// Back to a tab of a database's page, saying what was done.
fn to_db(id: &str, tab: &str, done: &str) -> Response {
    let tab = tab_of(Some(tab));
    let at = if tab == "contacts" { String::new() } else { format!("tab={tab}&") };
    Redirect::to(&format!("/databases/{id}?{at}done={done}")).into_response()
}

/// After an action on a database: back to its page, or the error page.
fn back_to_db<T>(id: &str, tab: &str, done: &str, result: Result<T, TenantError>) -> Response {
    match result {
        Ok(_) => to_db(id, tab, done),
        Err(e) => error_page(&e),
    }
}

/// After a billing action on a database: back to its page; when payment is
/// needed first, to the plans.
fn billing_back_to_db<T>(
    id: &str,
    tab: &str,
    done: &str,
    result: Result<T, seldesk_billing::BillingError>,
) -> Response {
    match result {
        Ok(_) => to_db(id, tab, done),
        Err(seldesk_billing::BillingError::PaymentRequired(_)) => {
            Redirect::to(&format!("/databases/{id}/subscribe")).into_response()
        }
        Err(e) => error_page(&e),
    }
}

struct RegionChoice {
    id: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "databases.html")]
struct ListPage {
    title: &'static str,
    csrf: String,
    databases: Vec<CustomerDb>,
    pager: crate::paging::Pager,
    regions: Vec<RegionChoice>,
    why: String,
    error: Option<String>,
    trial: String,
    /// Just signed up: greet, and point at the first database.
    welcome: bool,
    /// Every data center by (id, name).
    region_names: Vec<(String, String)>,
}

impl ListPage {
    /// A data center's name ("United Kingdom"), not its id.
    fn region_name(&self, id: &str) -> String {
        self.region_names.iter().find(|(i, _)| i == id).map_or_else(|| id.to_string(), |(_, n)| n.clone())
    }
}

/// `/databases?after=&welcome=`.
#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    welcome: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn list_view(
    state: &AppState,
    headers: &HeaderMap,
    ip: std::net::IpAddr,
    account: &seldesk_accounts::Account,
    error: Option<String>,
    status: StatusCode,
    after: Option<&str>,
    welcome: bool,
) -> Response {
    let account_id = account.id.as_str();
    let csrf = CsrfToken::for_request(state, headers);
    let (databases, pager) = crate::paging::site_page(
        state.databases.list(account_id).await.unwrap_or_default(),
        |d| format!("{:030}|{}", d.created_at.unix_timestamp_nanos(), d.id),
        crate::paging::Order::Oldest,
        after,
        crate::paging::SITE_PAGE,
        "Database pages",
        "databases",
        |c| c.map_or_else(|| "/databases".to_string(), |c| format!("/databases?after={c}")),
    );
    // The country from the IP address when a geolocation database is
    // configured, else from the region of the browser's language ("en-IN" → IN).
    let (country, source) = match (
        crate::consent::remembered_country(state, headers),
        account.country.clone(),
        state.visits.geo.country(ip),
    ) {
        (Some(c), _, _) => (Some(c), "the country you chose before"),
        (None, Some(c), _) => (Some(c), "the country of your account"),
        (None, None, Some(c)) => (Some(c), "from your connection's location"),
        (None, None, None) => (browser_country(headers), "from your browser's language settings"),
    };
    let nearest = state.policy.nearest_region(country.as_deref());
    let regions = state
        .policy
        .hosting_regions()
        .map(|r| RegionChoice {
            id: r.id.clone(),
            label: format!("{} ({})", r.name, r.city),
            selected: r.id == nearest.id,
        })
        .collect();
    use crate::i18n::tr;
    let why = match &country {
        Some(c) if nearest.countries.iter().any(|x| x == c) => {
            tr("Preselected: {0}, the data center nearest to your country ({1}, {2}). You can choose another.")
                .replace("{0}", &nearest.name)
                .replace("{1}", c)
                .replace("{2}", &tr(source))
        }
        _ => tr("Preselected: {0}, the default data center, because we do not know your country. Choose the one closest to you and your customers.")
            .replace("{0}", &nearest.name),
    };
    let page = ListPage {
        title: "Your databases",
        csrf: csrf.token.clone(),
        databases,
        pager,
        regions,
        why,
        error,
        trial: state.policy.trial.length.to_string(),
        welcome,
        region_names: state.policy.regions.iter().map(|r| (r.id.clone(), r.name.clone())).collect(),
    };
    csrf.attach(render(status, &page))
}

async fn list(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let welcome = q.welcome.is_some();
    list_view(&state, &headers, peer.ip(), &account, None, StatusCode::OK, q.after.as_deref(), welcome).await
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    plan: String,
}

async fn create(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<CreateForm>,
) -> Response {
    match state.databases.create(&account.id, &f.name, Some(&f.region), Some(&f.plan), None).await {
        Ok(d) => to_db(&d.id, "contacts", "created"),
        Err(e) => {
            list_view(&state, &headers, peer.ip(), &account, Some(message_of(&e)), status_of(&e), None, false).await
        }
    }
}

#[derive(Template)]
#[template(path = "database.html")]
struct DbPage {
    title: String,
    csrf: String,
    db: CustomerDb,
    contacts: Vec<Contact>,
    /// Where the next page starts, when there are more contacts.
    next_cursor: Option<String>,
    /// Whether this is a later page (a link back to the first is shown).
    paged: bool,
    active: bool,
    moving: bool,
    /// How large the database may grow on its plan, in MB.
    quota_mb: u64,
    /// The data center a moving database goes to, by name.
    moving_to: String,
    error: Option<String>,
    region_name: String,
    regions: Vec<RegionChoice>,
    q: String,
    grants: Vec<seldesk_tenants::support::SupportGrant>,
    log: Vec<(String, String, String)>,
    latest_schema: i64,
    snapshots: Vec<seldesk_vault::SnapshotInfo>,
    /// "12:03:04 UTC on 7 Dec (3 s ago)": its newest change in every backup region.
    protected: Option<String>,
    window: Option<RestoreWindow>,
    /// What the last action did.
    notice: Option<&'static str>,
    /// The section shown, and every section.
    tab: &'static str,
    tabs: &'static [(&'static str, &'static str)],
    /// How long a cancelled database can be reactivated ("30 days").
    grace: String,
}

/// The moments a database can be restored to, for the time picker.
struct RestoreWindow {
    /// `datetime-local` values (UTC).
    min: String,
    max: String,
    /// The first moment, for people.
    from: String,
}

fn local_value(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn readable(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let time = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    crate::i18n::tr2("{0} UTC on {1}", time, crate::i18n::long_date(t.date()))
}

async fn show_view(
    state: &AppState,
    headers: &HeaderMap,
    account_id: &str,
    id: &str,
    error: Option<String>,
    status: StatusCode,
    listing: Option<SearchQuery>,
) -> Response {
    let SearchQuery { q, after, done, tab } = listing.unwrap_or_default();
    let tab = tab_of(tab.as_deref());
    let notice = done.as_deref().and_then(done_notice);
    let db = match state.databases.get(account_id, id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    let active = db.status == DbStatus::Active;
    let db_moving = db.status == DbStatus::Moving;
    let quota_mb = state.databases.quotas().of(&db.plan) / 1_000_000;
    let moving_to = db
        .moving
        .as_ref()
        .map(|m| state.policy.region(&m.to).map(|r| r.name.clone()).unwrap_or_else(|| m.to.clone()))
        .unwrap_or_else(|| "another data center".into());
    let (mut error, mut status) = (error, status);
    let cursor = match after.as_deref().filter(|a| !a.is_empty()).map(seldesk_tenants::app::Cursor::parse).transpose() {
        Ok(c) => c,
        Err(e) => {
            (error, status) = (Some(message_of(&e)), status_of(&e));
            None
        }
    };
    let paged = cursor.is_some();
    let page = if active || db_moving {
        state.databases.contacts_page(account_id, id, q.clone(), CONTACTS_PER_PAGE, cursor).await.ok()
    } else {
        None
    };
    let (contacts, next_cursor) = page.map(|p| (p.contacts, p.next_cursor)).unwrap_or_default();
    let csrf = CsrfToken::for_request(state, headers);
    let region_name = state.policy.region(&db.region).map(|r| r.name.clone()).unwrap_or_else(|| db.region.clone());
    let grants = state.databases.support_grants(account_id, id).await.unwrap_or_default();
    let me = seldesk_domain::Subject::person(account_id);
    let log = state
        .databases
        .access_log(account_id, id)
        .await
        .unwrap_or_default()
        .into_iter()
        .rev()
        .take(50)
        .map(|e| (readable(e.at), crate::pages::audit_who(&e.actor, me.as_str()), crate::pages::audit_what(&e.action)))
        .collect();
    let regions = state
        .policy
        .hosting_regions()
        .filter(|r| r.id != db.region)
        .map(|r| RegionChoice { id: r.id.clone(), label: format!("{} ({})", r.name, r.city), selected: false })
        .collect();
    let snapshots = state.backups.list_for_owner(account_id, id).await.unwrap_or_default();
    let now = state.clock.now();
    let protected = state.backups.protected_up_to(id).await.ok().flatten().map(|t| {
        let ago = (now - t).whole_seconds().max(0);
        crate::i18n::tr2("{0} ({1} s ago)", readable(t), ago)
    });
    let window = state.backups.restore_window(id).await.ok().flatten().map(|(from, to)| RestoreWindow {
        min: local_value(from),
        max: local_value(to.max(from)),
        from: readable(from),
    });
    let page = DbPage {
        title: format!("Database {}", db.name),
        csrf: csrf.token.clone(),
        db,
        contacts,
        next_cursor,
        paged,
        active,
        moving: db_moving,
        moving_to,
        quota_mb,
        error,
        region_name,
        regions,
        q: q.unwrap_or_default(),
        grants,
        log,
        latest_schema: seldesk_tenants::files::SCHEMA_VERSION,
        snapshots,
        protected,
        window,
        notice,
        tab,
        tabs: TABS,
        grace: crate::i18n::period(
            &state.policy.retention("customer_database").map(|r| r.keep.to_string()).unwrap_or_default(),
        ),
    };
    csrf.attach(render(status, &page))
}

async fn show(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SearchQuery>,
) -> Response {
    show_view(&state, &headers, &account.id, &id, None, StatusCode::OK, Some(q)).await
}

/// Contacts on one page of a database's page; the next ones a click away.
const CONTACTS_PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
struct SearchQuery {
    q: Option<String>,
    /// The last contact of the page before (`Cursor`).
    after: Option<String>,
    /// What the action that led here did ([`done_notice`]).
    done: Option<String>,
    /// The section shown ([`TABS`]).
    tab: Option<String>,
}

#[derive(Deserialize)]
struct ContactForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    is_company: Option<String>,
}

async fn add_contact(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ContactForm>,
) -> Response {
    let input = ContactInput {
        name: Some(f.name),
        email: Some(f.email),
        phone: Some(f.phone),
        is_company: Some(f.is_company.is_some()),
        ..ContactInput::default()
    };
    match state
        .databases
        .write_db(&account.id, &id, false, move |c, now| seldesk_tenants::app::create(c, &input, now))
        .await
    {
        Ok(_) => to_db(&id, "contacts", "contact-added"),
        Err(e) => show_view(&state, &headers, &account.id, &id, Some(message_of(&e)), status_of(&e), None).await,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    confirm: String,
}

async fn delete_contact(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path((id, cid)): Path<(String, i64)>,
) -> Response {
    match state
        .databases
        .write_db_files(&account.id, &id, move |c, files, _| seldesk_tenants::app::delete_with_files(c, files, cid))
        .await
    {
        Ok(()) => to_db(&id, "contacts", "contact-deleted"),
        Err(e) => error_page(&e),
    }
}

async fn export(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match crate::db_api::export_response(&state, &account.id, &id, &headers).await {
        Ok(r) => r,
        Err(e) => message_page(e.status, "Export not completed", &e.message),
    }
}

async fn cancel(State(state): State<AppState>, SignedIn(account, _, _): SignedIn, Path(id): Path<String>) -> Response {
    billing_back_to_db(&id, "settings", "cancelled", state.billing.cancel(&account.id, &id).await)
}

async fn test_upgrade(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match state.databases.test_upgrade(&account.id, &id).await {
        Ok(copy) => Redirect::to(&format!("/databases/{}", copy.id)).into_response(),
        Err(e) => error_page(&e),
    }
}

async fn upgrade(State(state): State<AppState>, SignedIn(account, _, _): SignedIn, Path(id): Path<String>) -> Response {
    back_to_db(&id, "settings", "upgraded", state.databases.upgrade(&account.id, &id).await)
}

async fn reactivate(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    billing_back_to_db(&id, "contacts", "reactivated", state.billing.reactivate(&account.id, &id).await)
}

#[derive(Deserialize)]
struct MoveForm {
    #[serde(default)]
    region: String,
}

async fn move_db(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<MoveForm>,
) -> Response {
    match state.databases.request_move(&account.id, &id, &f.region).await {
        Ok(_) => to_db(&id, "location", "move-started"),
        Err(e) => {
            show_view(&state, &headers, &account.id, &id, Some(message_of(&e)), status_of(&e), on_tab("location")).await
        }
    }
}

async fn revoke_grant(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path((id, grant)): Path<(String, i64)>,
) -> Response {
    back_to_db(&id, "access", "access-revoked", state.databases.revoke_support(&account.id, &id, grant).await)
}

async fn approve_grant(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path((id, grant)): Path<(String, i64)>,
) -> Response {
    back_to_db(&id, "access", "changes-allowed", state.databases.approve_support_changes(&account.id, &id, grant).await)
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    notes: String,
}

async fn edit_contact(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path((id, cid)): Path<(String, i64)>,
    Form(f): Form<EditForm>,
) -> Response {
    let input = ContactInput {
        name: Some(f.name),
        email: Some(f.email),
        phone: Some(f.phone),
        notes: Some(f.notes),
        ..ContactInput::default()
    };
    match state
        .databases
        .write_db(&account.id, &id, false, move |c, now| seldesk_tenants::app::update(c, cid, &input, now))
        .await
    {
        Ok(_) => to_db(&id, "contacts", "contact-saved"),
        Err(e) => show_view(&state, &headers, &account.id, &id, Some(message_of(&e)), status_of(&e), None).await,
    }
}

#[derive(Deserialize)]
struct RestoreForm {
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    name: String,
}

/// The owner restores one of their snapshots into a new database (their
/// own request is the reason; audited like every restore).
async fn restore(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RestoreForm>,
) -> Response {
    match state.backups.start_owner_restore(&account.id, &id, &f.snapshot, &f.name).await {
        Ok(rid) => Redirect::to(&format!("/databases/{id}/restores/{rid}")).into_response(),
        Err(e) => {
            let (status, message) = (status_of(&e), message_of(&e));
            show_view(&state, &headers, &account.id, &id, Some(message), status, on_tab("backups")).await
        }
    }
}

#[derive(Deserialize)]
struct RestoreAtForm {
    /// `datetime-local`: 2026-12-06T10:15 or 2026-12-06T10:15:30, in UTC.
    #[serde(default)]
    at: String,
    #[serde(default)]
    name: String,
}

/// The moment a `datetime-local` field names, read as UTC.
fn moment(value: &str) -> Option<time::OffsetDateTime> {
    let with_seconds = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let without = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let v = value.trim();
    time::PrimitiveDateTime::parse(v, with_seconds)
        .or_else(|_| time::PrimitiveDateTime::parse(v, without))
        .ok()
        .map(|t| t.assume_utc())
}

/// The owner restores their database as it was at a moment into a new
/// database (a job, like a snapshot restore; audited likewise).
async fn restore_at(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<RestoreAtForm>,
) -> Response {
    let Some(at) = moment(&f.at) else {
        let message = "Pick the moment to restore to (a date and a time, UTC).".to_string();
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return show_view(&state, &headers, &account.id, &id, Some(message), status, on_tab("backups")).await;
    };
    match state.backups.start_owner_restore_at(&account.id, &id, at, &f.name).await {
        Ok(rid) => Redirect::to(&format!("/databases/{id}/restores/{rid}")).into_response(),
        Err(e) => {
            let (status, message) = (status_of(&e), message_of(&e));
            show_view(&state, &headers, &account.id, &id, Some(message), status, on_tab("backups")).await
        }
    }
}

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePage {
    title: String,
    db: CustomerDb,
    restore: seldesk_vault::RestoreStatus,
}

/// A restore's progress; the page refreshes itself until it finishes.
async fn restore_progress(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path((id, rid)): Path<(String, String)>,
) -> Response {
    let db = match state.databases.get(&account.id, &id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    let restores = state.backups.owner_restores(&account.id, &id).await.unwrap_or_default();
    match restores.into_iter().find(|r| r.id == rid) {
        Some(restore) => {
            render(StatusCode::OK, &RestorePage { title: format!("Restoring {}", restore.name), db, restore })
        }
        None => message_page(StatusCode::NOT_FOUND, "No such restore", "This restore is not one of this database's."),
    }
}

async fn remove(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    match state.databases.remove(&account.id, &id, &f.confirm).await {
        Ok(until) => message_page(
            StatusCode::OK,
            "Database removed",
            &format!(
                "The database and its files were erased from our live systems just now. Encrypted backups still hold it until {} at the latest; then it is gone for good.",
                until.date()
            ),
        ),
        Err(e) => {
            show_view(&state, &headers, &account.id, &id, Some(message_of(&e)), status_of(&e), on_tab("settings")).await
        }
    }
}

/// The import form: a multipart upload spooled into the chosen region's folder.
async fn import(State(state): State<AppState>, SignedIn(account, _, _): SignedIn, mut form: Multipart) -> Response {
    let (mut name, mut region) = (String::new(), String::new());
    let mut spooled: Option<std::path::PathBuf> = None;
    let fail = |msg: &str| message_page(StatusCode::UNPROCESSABLE_ENTITY, "Import not completed", msg);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return fail("The upload broke off or is larger than 2 GiB."),
        };
        match field.name().unwrap_or_default() {
            "name" => name = field.text().await.unwrap_or_default(),
            "region" => region = field.text().await.unwrap_or_default(),
            "archive" => {
                if state.policy.region(&region).is_none_or(|r| !r.hosting) {
                    return fail("Choose a data center before the archive.");
                }
                let dir = match state.databases.import_spool(&account.id, &region).await {
                    Ok(dir) => dir,
                    Err(e) => return fail(&e.to_string()),
                };
                if tokio::fs::create_dir_all(&dir).await.is_err() {
                    return fail("The upload could not be stored.");
                }
                let path = dir.join(format!("{}.zip", uuid::Uuid::now_v7().simple()));
                let Ok(mut out) = tokio::fs::File::create(&path).await else {
                    return fail("The upload could not be stored.");
                };
                let mut field = field;
                while let Ok(Some(chunk)) = field.chunk().await {
                    if out.write_all(&chunk).await.is_err() {
                        let _ = tokio::fs::remove_file(&path).await;
                        return fail("The upload could not be stored.");
                    }
                }
                let _ = out.flush().await;
                spooled = Some(path);
            }
            _ => {}
        }
    }
    let Some(path) = spooled else { return fail("Choose the export archive (.zip) to import.") };
    let result = state.databases.import(&account.id, &name, Some(&region), path.clone()).await;
    let _ = tokio::fs::remove_file(&path).await;
    match result {
        Ok(d) => Redirect::to(&format!("/databases/{}", d.id)).into_response(),
        Err(e) => message_page(status_of(&e), "Import not completed", &message_of(&e)),
    }
}
