//! Sign-up, sign-in, the account page, personal-data requests and the
//! public Helpdesk forms.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use seldesk_accounts::{
    Account, ContactForm, Principal, ProfileUpdate, SessionKind, SignUp, Ticket, TicketKind, TicketMessage,
};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{
    CsrfToken, MaybeAccount, SESSION_COOKIE, SignedIn, WebError, client_ip, message_of, safe_next, status_of,
};
use crate::pages::render;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/signup", get(signup_form).post(signup))
        .route("/verify-email", get(verify_email))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/signout-everywhere", post(signout_everywhere))
        .route("/forgot-password", get(forgot_form).post(forgot))
        .route("/reset-password", get(reset_form).post(reset))
        .route("/signin/link", get(signin_link_form).post(signin_link))
        .route("/account", get(account_page).post(account_update))
        .route("/account/close", post(close_account))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/account/requests", get(requests_page).post(new_request))
        .route("/account/requests/{id}", get(request_page))
        .route("/account/requests/{id}/download", post(download))
        .route("/helpdesk", get(helpdesk))
        .route("/contact", get(|s, h| contact_form(s, h, "contact")).post(|s, c, f| contact(s, c, f, "contact")))
        .route("/trial", get(|s, h| contact_form(s, h, "trial")).post(|s, c, f| contact(s, c, f, "trial")))
        .route("/download", get(|s, h| contact_form(s, h, "download")).post(|s, c, f| contact(s, c, f, "download")))
}

fn ip(c: &ConnectInfo<SocketAddr>) -> String {
    client_ip(Some(c))
}

/// Values of the sign-up and profile forms.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    industry: String,
    #[serde(default)]
    interest: String,
    #[serde(default)]
    invoice_by_post: Option<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    password: SecretString,
    #[serde(default)]
    country: String,
    /// The marketing box (sign-up only; the account page has its own form).
    #[serde(default)]
    marketing: Option<String>,
}

impl ProfileForm {
    fn from_account(a: &Account) -> Self {
        Self {
            name: a.name.clone(),
            company: a.company.clone(),
            email: a.email.clone(),
            phone: a.phone.clone().unwrap_or_default(),
            industry: a.industry.clone().unwrap_or_default(),
            interest: a.interest.clone().unwrap_or_default(),
            invoice_by_post: a.invoice_by_post.then(|| "on".to_string()),
            address: a.address.clone().unwrap_or_default(),
            country: a.country.clone().unwrap_or_default(),
            ..Self::default()
        }
    }

    fn by_post(&self) -> bool {
        self.invoice_by_post.is_some()
    }
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    title: &'static str,
    csrf: String,
    /// A problem with no field of its own (too many sign-ups from here…).
    error: Option<String>,
    /// Each field's problem, shown beside it: (field, message).
    problems: Vec<(&'static str, String)>,
    f: ProfileForm,
    industries: &'static [&'static str],
    interests: &'static [&'static str],
    countries: Vec<(&'static str, &'static str)>,
}

impl SignupPage {
    /// The problem with `field`, if it has one.
    fn problem(&self, field: &str) -> Option<&str> {
        self.problems.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    /// A field's label, for the list of fields to change.
    fn label(&self, field: &str) -> String {
        let key = match field {
            "name" => "form.name",
            "company" => "form.company",
            "email" => "form.email",
            "phone" => "form.phone",
            "industry" => "form.industry",
            "interest" => "form.interest",
            "country" => "signup.country",
            "address" => "signup.address",
            "password" => "form.password",
            other => return other.to_string(),
        };
        crate::i18n::t(key)
    }
}

async fn signup_form(State(state): State<AppState>, conn: ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    // The box is ticked in advance only where the policy's basis for
    // marketing is legitimate interest; with consent it starts empty.
    let f = ProfileForm {
        country: crate::consent::remembered_country(&state, &headers)
            .or_else(|| state.visits.geo.country(conn.0.ip()))
            .or_else(|| crate::db_pages::browser_country(&headers))
            .and_then(|c| seldesk_domain::country::normalise(&c))
            .unwrap_or_default(),
        marketing: state.marketing.default_opt_in().then(|| "on".to_string()),
        ..ProfileForm::default()
    };
    let page = SignupPage {
        title: "Create your Seldesk account",
        csrf: csrf.token.clone(),
        error: None,
        problems: Vec::new(),
        f,
        industries: seldesk_accounts::INDUSTRIES,
        interests: seldesk_accounts::INTERESTS,
        countries: seldesk_domain::country::all(),
    };
    csrf.attach(render(StatusCode::OK, &page))
}

async fn signup(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ProfileForm>,
) -> Response {
    let input = SignUp {
        name: f.name.clone(),
        company: f.company.clone(),
        email: f.email.clone(),
        phone: Some(f.phone.clone()),
        industry: Some(f.industry.clone()),
        interest: Some(f.interest.clone()),
        password: f.password.clone(),
        invoice_by_post: f.by_post(),
        address: Some(f.address.clone()),
        country: Some(f.country.clone()),
    };
    // Every field's problem at once, beside the field; then the service,
    // which checks the same rules again and what only it knows (a taken
    // address, too many sign-ups from one place).
    let problems: Vec<seldesk_accounts::AccountError> = input.check().err().unwrap_or_default();
    let result = if problems.is_empty() { Some(state.accounts.sign_up(input, &ip(&conn)).await) } else { None };
    match result {
        Some(Ok(account)) => {
            let yes = f.marketing.is_some();
            // Record a choice the person made: a tick, or an untick of a pre-ticked box.
            if yes || state.marketing.default_opt_in() {
                let (actor, subject) = (account.actor(), account.subject());
                let set = state.marketing.set_preference(&actor, &subject, &account.email, yes, "signup");
                if let Err(e) = set.await {
                    tracing::error!(error = %e, "the marketing choice made at sign-up was not saved");
                }
            }
            // First things first: the database they came for.
            let mut r = start_session(&state, &account, "/databases?welcome=1").await;
            crate::consent::remember_country(&state, &headers, &mut r, &f.country);
            r
        }
        failed => {
            let refused = failed.and_then(Result::err);
            let status = refused.as_ref().map_or(StatusCode::UNPROCESSABLE_ENTITY, |e| status_of(e));
            let all: Vec<&seldesk_accounts::AccountError> = refused.iter().chain(problems.iter()).collect();
            let (with_field, without): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|p| seldesk_domain::Failure::field(*p).is_some());
            let page = SignupPage {
                title: "Create your Seldesk account",
                csrf: f.csrf.clone(),
                error: without.first().map(|p| message_of(*p)),
                problems: with_field
                    .into_iter()
                    .filter_map(|p| seldesk_domain::Failure::field(p).map(|field| (field, message_of(p))))
                    .collect(),
                f: ProfileForm { password: SecretString::default(), ..f },
                industries: seldesk_accounts::INDUSTRIES,
                interests: seldesk_accounts::INTERESTS,
                countries: seldesk_domain::country::all(),
            };
            render(status, &page)
        }
    }
}

/// Signs in: a fresh session id (never one the browser brought along).
async fn start_session(state: &AppState, account: &Account, next: &str) -> Response {
    match state.accounts.create_session(SessionKind::Web, Principal::Account(account.id.clone())).await {
        Ok((token, _)) => {
            let mut r = Redirect::to(next).into_response();
            r.headers_mut().append(header::SET_COOKIE, crate::cookies::set(state, &crate::cookies::SESSION, &token));
            r
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn verify_email(State(state): State<AppState>, Query(q): Query<TokenQuery>) -> Response {
    match state.accounts.verify_email(&q.token).await {
        Ok(_) => crate::pages::message_page(
            StatusCode::OK,
            "E-mail address confirmed",
            "Thank you: your e-mail address is confirmed.",
        ),
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    title: &'static str,
    csrf: String,
    error: Option<String>,
    email: String,
    next: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn signin_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    let page = SigninPage {
        title: "Sign in",
        csrf: csrf.token.clone(),
        error: None,
        email: String::new(),
        next: safe_next(q.next.as_deref(), "/account"),
    };
    csrf.attach(render(StatusCode::OK, &page))
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
    next: String,
}

async fn signin(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match state.accounts.authenticate(&f.email, f.password.expose_secret(), &ip(&conn), ua).await {
        Ok(account) => {
            // A session the browser already had is ended: the id changes at sign-in.
            if let Some(old) = crate::auth::cookie(&headers, SESSION_COOKIE) {
                let _ = state.accounts.end_session(&old).await;
            }
            start_session(&state, &account, &safe_next(Some(&f.next), "/account")).await
        }
        Err(e) => {
            let page = SigninPage {
                title: "Sign in",
                csrf: f.csrf,
                error: Some(message_of(&e)),
                email: f.email,
                next: safe_next(Some(&f.next), "/account"),
            };
            render(status_of(&e), &page)
        }
    }
}

async fn signout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        let _ = state.accounts.end_session(&token).await;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, &crate::cookies::SESSION));
    r
}

#[derive(Deserialize)]
struct CloseForm {
    #[serde(default)]
    password: SecretString,
}

/// Closes the account (kept for the policy's period, then erased); the
/// account's databases must be removed first.
async fn close_account(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Form(f): Form<CloseForm>,
) -> Response {
    let refuse = |status: StatusCode, message: String| {
        crate::pages::message_page(status, "Your account is still open", &message)
    };
    if let Err(e) = state.accounts.confirm_password(&account.id, f.password.expose_secret()).await {
        return refuse(status_of(&e), message_of(&e));
    }
    let databases = state.databases.list(&account.id).await.unwrap_or_default();
    if !databases.is_empty() {
        let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "Remove your databases first (export them if you want to keep them): {}. Then close your account.",
                names.join(", ")
            ),
        );
    }
    match state.accounts.close_account(&account).await {
        Ok(erase_on) => {
            let mut r = crate::pages::message_page(
                StatusCode::OK,
                "Your account is closed",
                &format!(
                    "You have been signed out everywhere. We keep your account data until {erase_on}: sign in before then to reopen your account. On that day it is erased and a receipt reaches {}.",
                    account.email
                ),
            );
            r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, &crate::cookies::SESSION));
            r
        }
        Err(e) => refuse(status_of(&e), message_of(&e)),
    }
}

async fn signout_everywhere(State(state): State<AppState>, SignedIn(account, _, _): SignedIn) -> Response {
    if let Err(e) = state.accounts.end_all_sessions(&Principal::Account(account.id.clone())).await {
        return WebError::from(e).into_response();
    }
    let mut r = Redirect::to("/signin").into_response();
    r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, &crate::cookies::SESSION));
    r
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    title: &'static str,
    csrf: String,
    sent: bool,
    error: Option<String>,
}

async fn forgot_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    csrf.attach(render(
        StatusCode::OK,
        &ForgotPage { title: "Reset your password", csrf: csrf.token.clone(), sent: false, error: None },
    ))
}

#[derive(Deserialize)]
struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

async fn forgot(State(state): State<AppState>, conn: ConnectInfo<SocketAddr>, Form(f): Form<ForgotForm>) -> Response {
    match state.accounts.request_password_reset(&f.email, &ip(&conn)).await {
        // The same answer whether or not the address has an account.
        Ok(()) => {
            render(StatusCode::OK, &ForgotPage { title: "Reset your password", csrf: f.csrf, sent: true, error: None })
        }
        Err(e) => render(
            status_of(&e),
            &ForgotPage { title: "Reset your password", csrf: f.csrf, sent: false, error: Some(message_of(&e)) },
        ),
    }
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    title: &'static str,
    csrf: String,
    token: String,
    error: Option<String>,
}

async fn reset_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    csrf.attach(render(
        StatusCode::OK,
        &ResetPage { title: "Choose a new password", csrf: csrf.token.clone(), token: q.token, error: None },
    ))
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: SecretString,
}

async fn reset(State(state): State<AppState>, Form(f): Form<ResetForm>) -> Response {
    match state.accounts.reset_password(&f.token, f.password.expose_secret()).await {
        Ok(_) => crate::pages::message_page(
            StatusCode::OK,
            "Password changed",
            "Your new password is set and every session was signed out. Sign in with the new password.",
        ),
        Err(e) => render(
            status_of(&e),
            &ResetPage { title: "Choose a new password", csrf: f.csrf, token: f.token, error: Some(message_of(&e)) },
        ),
    }
}

#[derive(Template)]
#[template(path = "signin_link.html")]
struct SigninLinkPage {
    title: &'static str,
    csrf: String,
    token: String,
    email: String,
}

/// The page of a "sign-ins were paused" e-mail's link: it asks before it
/// signs in, so a mail scanner that opens links cannot use it up.
async fn signin_link_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    let account = match state.accounts.signin_link_account(&q.token).await {
        Ok(a) => a,
        Err(e) => return WebError::from(e).into_response(),
    };
    let csrf = CsrfToken::for_request(&state, &headers);
    csrf.attach(render(
        StatusCode::OK,
        &SigninLinkPage {
            title: "Sign in with your e-mail link",
            csrf: csrf.token.clone(),
            token: q.token,
            email: account.email,
        },
    ))
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

async fn signin_link(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match state.accounts.sign_in_with_link(&f.token, &ip(&conn), ua).await {
        Ok(account) => {
            if let Some(old) = crate::auth::cookie(&headers, SESSION_COOKIE) {
                let _ = state.accounts.end_session(&old).await;
            }
            start_session(&state, &account, "/account").await
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    title: &'static str,
    csrf: String,
    account: Account,
    f: ProfileForm,
    error: Option<String>,
    notice: Option<String>,
    industries: &'static [&'static str],
    interests: &'static [&'static str],
    audit: Vec<(String, String, String)>,
    audit_pager: crate::paging::Pager,
    upcoming: Option<(String, String)>,
    countries: Vec<(&'static str, &'static str)>,
    marketing: Option<seldesk_marketing::Preference>,
    /// How long a closed account is kept before erasure ("30 days after…").
    closure_keep: String,
    tokens: TokenPanel,
    scopes: Vec<(&'static str, &'static str)>,
}

/// The account page's personal access tokens.
#[derive(Default)]
struct TokenPanel {
    list: Vec<TokenRow>,
    /// A token just made: (name, token), shown this once.
    made: Option<(String, String)>,
    error: Option<String>,
    /// What the person typed, kept when the form is refused.
    name: String,
}

struct TokenRow {
    id: String,
    name: String,
    scopes: String,
    expires: String,
    last_used: String,
    uses: i64,
}

#[derive(Deserialize)]
struct AccountQuery {
    welcome: Option<String>,
    saved: Option<String>,
    revoked: Option<String>,
    /// The activity list's page (a cursor).
    activity: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn account_view(
    state: &AppState,
    headers: &HeaderMap,
    account: Account,
    f: Option<ProfileForm>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
    mut tokens: TokenPanel,
    activity: Option<&str>,
) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    let now = state.clock.now();
    let day = |d: time::OffsetDateTime| crate::i18n::day(d.date());
    tokens.list = state
        .accounts
        .api_tokens(&account.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| TokenRow {
            expires: if t.expired(now) {
                crate::i18n::tr1("expired {0}", day(t.expires_at))
            } else {
                day(t.expires_at)
            },
            last_used: t.last_used_at.map_or_else(|| crate::i18n::tr("never"), day),
            scopes: t.scope_names(),
            uses: t.uses,
            id: t.id,
            name: t.name,
        })
        .collect();
    let (audit, audit_pager) = crate::paging::site_page(
        state.accounts.audit_about(&account).await.unwrap_or_default(),
        |e| format!("{:020}", e.seq),
        crate::paging::Order::Newest,
        activity,
        crate::paging::SITE_PAGE,
        "Activity pages",
        "activity",
        |c| c.map_or_else(|| "/account#activity".to_string(), |c| format!("/account?activity={c}#activity")),
    );
    let me = account.subject();
    let audit = audit
        .into_iter()
        .map(|e| {
            (
                crate::i18n::long_date(e.at.date()),
                crate::pages::audit_who(&e.actor, me.as_str()),
                crate::pages::audit_what(&e.action),
            )
        })
        .collect();
    let marketing = state.marketing.preference(&account.subject()).await.ok();
    let page = AccountPage {
        title: "Your account",
        csrf: csrf.token.clone(),
        f: f.unwrap_or_else(|| ProfileForm::from_account(&account)),
        account,
        error,
        notice,
        industries: seldesk_accounts::INDUSTRIES,
        interests: seldesk_accounts::INTERESTS,
        audit,
        audit_pager,
        countries: seldesk_domain::country::all(),
        marketing,
        upcoming: {
            let newest = state.policy.newest_version();
            (newest.effective > state.clock.now().date())
                .then(|| (newest.effective.to_string(), newest.summary.clone()))
        },
        closure_keep: state
            .policy
            .retention("account_contact")
            .map(|r| {
                let keep = crate::i18n::period(&r.keep.to_string());
                format!("{keep} {}", crate::i18n::tr(r.after.label()))
            })
            .unwrap_or_default(),
        tokens,
        scopes: seldesk_accounts::Scope::ALL.iter().map(|s| (s.as_str(), s.describe())).collect(),
    };
    csrf.attach(render(status, &page))
}

async fn account_page(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Query(q): Query<AccountQuery>,
) -> Response {
    let notice = if q.welcome.is_some() {
        Some("Welcome to Seldesk! We sent you an e-mail to confirm your address.".to_string())
    } else if q.saved.is_some() {
        Some("Your changes are saved.".to_string())
    } else if q.revoked.is_some() {
        Some("The token is revoked: it no longer works.".to_string())
    } else {
        None
    };
    account_view(
        &state,
        &headers,
        account,
        None,
        None,
        notice,
        StatusCode::OK,
        TokenPanel::default(),
        q.activity.as_deref(),
    )
    .await
}

async fn account_update(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Form(f): Form<ProfileForm>,
) -> Response {
    let update = ProfileUpdate {
        name: Some(f.name.clone()),
        company: Some(f.company.clone()),
        email: Some(f.email.clone()),
        phone: Some(f.phone.clone()),
        industry: Some(f.industry.clone()),
        interest: Some(f.interest.clone()),
        invoice_by_post: Some(f.by_post()),
        address: Some(f.address.clone()),
        country: Some(f.country.clone()),
    };
    match state.accounts.update_profile(&account.id, update, &account.actor()).await {
        Ok(_) => Redirect::to("/account?saved=1").into_response(),
        Err(e) => {
            let status = status_of(&e);
            let panel = TokenPanel::default();
            account_view(&state, &headers, account, Some(f), Some(message_of(&e)), None, status, panel, None).await
        }
    }
}

/// `POST /account/tokens`: makes a personal access token and shows it once.
/// The form has `token_name`, `days` and one checkbox per scope, named by it.
async fn create_token(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Form(f): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let name = f.get("token_name").cloned().unwrap_or_default();
    let scopes: Vec<String> = seldesk_accounts::Scope::ALL
        .iter()
        .filter(|s| f.contains_key(s.as_str()))
        .map(|s| s.as_str().to_string())
        .collect();
    let days = f.get("days").and_then(|d| d.trim().parse::<i64>().ok()).unwrap_or(0);
    let made = match seldesk_accounts::NewToken::parse(&name, &scopes, days) {
        Ok(new) => state.accounts.create_api_token(&account, new).await,
        Err(e) => Err(e),
    };
    let (status, panel) = match made {
        Ok((t, secret)) => (StatusCode::CREATED, TokenPanel { made: Some((t.name, secret)), ..TokenPanel::default() }),
        Err(e) => (status_of(&e), TokenPanel { error: Some(message_of(&e)), name, ..TokenPanel::default() }),
    };
    account_view(&state, &headers, account, None, None, None, status, panel, None).await
}

/// `POST /account/tokens/{id}/revoke`.
async fn revoke_token(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match state.accounts.revoke_api_token(&account, &id).await {
        Ok(()) => Redirect::to("/account?revoked=1#tokens").into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    title: &'static str,
    csrf: String,
    tickets: Vec<Ticket>,
    pager: crate::paging::Pager,
    error: Option<String>,
    notice: Option<String>,
    due_days: String,
    email: String,
    backups_until: String,
    /// The account's databases, by (id, name), to name one in a question.
    databases: Vec<(String, String)>,
}

async fn requests_view(
    state: &AppState,
    headers: &HeaderMap,
    account: &Account,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
    after: Option<&str>,
) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    let (tickets, pager) = crate::paging::site_page(
        state.accounts.tickets_of(&account.id).await.unwrap_or_default(),
        |t| format!("{:020}", t.id),
        crate::paging::Order::Newest,
        after,
        crate::paging::SITE_PAGE,
        "Request pages",
        "requests",
        |c| {
            c.map_or_else(
                || "/account/requests#requests".to_string(),
                |c| format!("/account/requests?after={c}#requests"),
            )
        },
    );
    let page = RequestsPage {
        title: "Your requests",
        csrf: csrf.token.clone(),
        tickets,
        pager,
        error,
        notice,
        due_days: state.policy.organisation.request_due.to_string(),
        email: account.email.clone(),
        backups_until: state.policy.backups.max_age.after(state.clock.now()).date().to_string(),
        databases: state
            .databases
            .list(&account.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect(),
    };
    csrf.attach(render(status, &page))
}

/// `?after=` of a list page: where its page starts.
#[derive(Deserialize)]
pub(crate) struct AfterQuery {
    pub after: Option<String>,
}

async fn requests_page(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Query(q): Query<AfterQuery>,
) -> Response {
    requests_view(&state, &headers, &account, None, None, StatusCode::OK, q.after.as_deref()).await
}

#[derive(Deserialize)]
struct RequestForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    password: SecretString,
    /// One of the account's databases the request is about, or empty.
    #[serde(default)]
    database: String,
    /// The e-mail address typed to confirm an erasure.
    #[serde(default)]
    confirm: String,
}

async fn new_request(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Form(f): Form<RequestForm>,
) -> Response {
    let Some(kind) = TicketKind::parse(&f.kind) else {
        return requests_view(
            &state,
            &headers,
            &account,
            Some("Choose what you are asking for.".into()),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        )
        .await;
    };
    let database = match f.database.as_str() {
        "" => None,
        id => match state.databases.get(&account.id, id).await {
            Ok(d) => Some(d.id),
            Err(_) => {
                let e = "Choose one of your databases, or none.".to_string();
                return requests_view(
                    &state,
                    &headers,
                    &account,
                    Some(e),
                    None,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    None,
                )
                .await;
            }
        },
    };
    let made = state
        .accounts
        .request(&account, kind, Some(&f.message), Some(f.password.expose_secret()), Some(&f.confirm))
        .await;
    if let (Ok(t), Some(db)) = (&made, &database)
        && let Err(e) = state.accounts.link_ticket_to_database(&account, t.id, db).await
    {
        return WebError::from(e).into_response();
    }
    match made {
        Ok(t) if kind == TicketKind::Erasure => {
            let mut r = crate::pages::message_page(
                StatusCode::OK,
                "Your erasure request is under way",
                &format!(
                    "Ticket {}: we are erasing your personal data now and you have been signed out. A receipt will reach {} saying what was erased, what the law makes us keep, and when backups no longer hold your data.",
                    t.id, account.email
                ),
            );
            r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, &crate::cookies::SESSION));
            r
        }
        Ok(t) => Redirect::to(&format!("/account/requests/{}", t.id)).into_response(),
        Err(e) => {
            let status = status_of(&e);
            requests_view(&state, &headers, &account, Some(message_of(&e)), None, status, None).await
        }
    }
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    title: String,
    csrf: String,
    ticket: Ticket,
    messages: Vec<TicketMessage>,
    ready: bool,
    error: Option<String>,
}

async fn request_page(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    request_view(&state, &headers, &account, id, None, StatusCode::OK).await
}

async fn request_view(
    state: &AppState,
    headers: &HeaderMap,
    account: &Account,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let ticket = match state.accounts.own_ticket(account, id).await {
        Ok(t) => t,
        Err(e) => return WebError::from(e).into_response(),
    };
    let messages = state.accounts.messages(id).await.unwrap_or_default();
    let ready = ticket.kind == TicketKind::Access && state.accounts.export_ready(account, id).await.unwrap_or(false);
    let csrf = CsrfToken::for_request(state, headers);
    let page = RequestPage { title: format!("Request {id}"), csrf: csrf.token.clone(), ticket, messages, ready, error };
    csrf.attach(render(status, &page))
}

#[derive(Deserialize)]
struct DownloadForm {
    #[serde(default)]
    password: SecretString,
}

async fn download(
    State(state): State<AppState>,
    SignedIn(account, _, _): SignedIn,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<DownloadForm>,
) -> Response {
    match state.accounts.download_export(&account, id, f.password.expose_secret()).await {
        Ok(bytes) => zip_response(id, bytes),
        Err(e) => {
            let status = status_of(&e);
            request_view(&state, &headers, &account, id, Some(message_of(&e)), status).await
        }
    }
}

pub(crate) fn zip_response(id: i64, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"seldesk-personal-data-{id}.zip\"")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        bytes,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "helpdesk.html")]
struct HelpdeskPage {
    title: &'static str,
    due: String,
    email: String,
    signed_in: bool,
}

async fn helpdesk(State(state): State<AppState>, MaybeAccount(who): MaybeAccount) -> Response {
    let page = HelpdeskPage {
        title: "Helpdesk",
        due: state.policy.organisation.request_due.to_string(),
        email: state.policy.organisation.helpdesk_email.clone(),
        signed_in: who.is_some(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "contact.html")]
struct ContactPage {
    title: &'static str,
    source: &'static str,
    intro: &'static str,
    csrf: String,
    f: ContactValues,
    error: Option<String>,
    done: Option<i64>,
    industries: &'static [&'static str],
    interests: &'static [&'static str],
}

#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ContactValues {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    industry: String,
    #[serde(default)]
    interest: String,
    #[serde(default)]
    message: String,
}

fn contact_texts(source: &str) -> (&'static str, &'static str, &'static str) {
    match source {
        "trial" => ("trial", "Start a free trial", "Tell us who you are and we will set up your free trial with you."),
        "download" => ("download", "Download Seldesk", "Tell us who you are and we will send you the download links."),
        _ => ("contact", "Contact us", "Ask us anything. We answer by e-mail."),
    }
}

async fn contact_form(State(state): State<AppState>, headers: HeaderMap, source: &'static str) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    let (source, title, intro) = contact_texts(source);
    let page = ContactPage {
        title,
        source,
        intro,
        csrf: csrf.token.clone(),
        f: ContactValues::default(),
        error: None,
        done: None,
        industries: seldesk_accounts::INDUSTRIES,
        interests: seldesk_accounts::INTERESTS,
    };
    csrf.attach(render(StatusCode::OK, &page))
}

async fn contact(
    State(state): State<AppState>,
    conn: ConnectInfo<SocketAddr>,
    Form(f): Form<ContactValues>,
    source: &'static str,
) -> Response {
    let (source, title, intro) = contact_texts(source);
    let form = ContactForm {
        name: f.name.clone(),
        company: f.company.clone(),
        email: f.email.clone(),
        phone: Some(f.phone.clone()),
        industry: Some(f.industry.clone()),
        interest: Some(f.interest.clone()),
        message: Some(f.message.clone()),
    };
    let result = state.accounts.contact(source, form, &ip(&conn)).await;
    let (status, error, done) = match result {
        Ok(t) => (StatusCode::OK, None, Some(t.id)),
        Err(e) => (status_of(&e), Some(message_of(&e)), None),
    };
    let values = if done.is_some() { ContactValues::default() } else { f.clone() };
    let page = ContactPage {
        title,
        source,
        intro,
        csrf: f.csrf,
        f: values,
        error,
        done,
        industries: seldesk_accounts::INDUSTRIES,
        interests: seldesk_accounts::INTERESTS,
    };
    render(status, &page)
}
