//! Careers: public openings and the application form, the applicant's
//! private page, the hr console, and the JSON API. Handlers only translate
//! HTTP; the careers service holds every rule.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use seldesk_careers::{
    Application, ApplicationSummary, ApplicationUpdate, CareerError, Employee, NewApplication, Posting, PostingInput,
    PostingStatus, Stage,
};
use seldesk_domain::policy::OfferField;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{ApiError, CsrfToken, StaffUser};
use crate::errors::{error_page, message_of, status_of};
use crate::pages::{message_page, render};

/// Routes with small bodies.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/careers", get(openings))
        .route("/careers/{slug}", get(posting_page))
        .route("/careers/application/{token}", get(application_page))
        .route("/careers/application/{token}/cv", get(applicant_cv))
        .route("/careers/application/{token}/correct", post(correct))
        .route("/careers/application/{token}/withdraw", post(withdraw))
        .route("/careers/application/{token}/object", post(object))
        .route("/careers/application/{token}/delete", post(delete))
        .route("/careers/application/{token}/offer", post(offer))
        .route("/staff/careers", get(console))
        .route("/staff/careers/postings", post(create_posting))
        .route("/staff/careers/postings/{id}", get(edit_posting).post(update_posting))
        .route("/staff/careers/postings/{id}/status", post(posting_status))
        .route("/staff/careers/applications/{id}", get(staff_application))
        .route("/staff/careers/applications/{id}/cv", get(staff_cv))
        .route("/staff/careers/applications/{id}/stage", post(move_stage))
        .route("/staff/careers/applications/{id}/hire", post(hire))
        .route("/staff/careers/applications/{id}/erase", post(staff_erase))
        .route("/staff/careers/employees/{id}/end", post(end_contract))
        .route("/api/v1/careers/postings", get(api_postings))
        .route("/api/v1/careers/applications/{token}", get(api_application))
}

/// Routes that carry a CV.
pub(crate) fn upload_routes() -> Router<AppState> {
    Router::new()
        .route("/careers/{slug}/apply", post(apply))
        .route("/staff/careers/applications", post(agency_application))
        .route("/api/v1/careers/postings/{id}/applications", post(api_apply))
}

/// Largest request carrying a CV: the CV plus room for the other fields.
pub(crate) const UPLOAD_LIMIT: usize = seldesk_careers::MAX_CV_BYTES * 2 + 256 * 1024;

// ----- public pages -----

#[derive(Template)]
#[template(path = "careers.html")]
struct OpeningsPage {
    title: &'static str,
    postings: Vec<Posting>,
}

async fn openings(State(state): State<AppState>) -> Response {
    match state.careers.open_postings().await {
        Ok(postings) => render(StatusCode::OK, &OpeningsPage { title: "Careers", postings }),
        Err(e) => error_page(&e),
    }
}

#[derive(Default, Deserialize)]
struct ApplyFields {
    name: String,
    email: String,
    phone: String,
    letter: String,
    shared: String,
    object_to_keeping: bool,
}

#[derive(Template)]
#[template(path = "careers_posting.html")]
struct PostingPage {
    title: String,
    csrf: String,
    posting: Posting,
    description_html: String,
    keep: String,
    keep_objected: String,
    max_cv_mb: usize,
    f: ApplyFields,
    error: Option<String>,
}

fn keep_of(state: &AppState, category: &str) -> String {
    state.policy.retention(category).map(|r| r.keep.to_string()).unwrap_or_default()
}

fn posting_view(
    state: &AppState,
    headers: &HeaderMap,
    posting: Posting,
    f: ApplyFields,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = CsrfToken::for_request(state, headers);
    let page = PostingPage {
        title: posting.title.clone(),
        csrf: csrf.token.clone(),
        description_html: crate::markdown_to_html(&posting.description),
        posting,
        keep: keep_of(state, "job_application"),
        keep_objected: keep_of(state, "job_application_objected"),
        max_cv_mb: seldesk_careers::MAX_CV_BYTES / 1_048_576,
        f,
        error,
    };
    csrf.attach(render(status, &page))
}

async fn posting_page(State(state): State<AppState>, headers: HeaderMap, Path(slug): Path<String>) -> Response {
    match state.careers.open_posting(&slug).await {
        Ok(p) => posting_view(&state, &headers, p, ApplyFields::default(), None, StatusCode::OK),
        Err(e) => error_page(&e),
    }
}

/// An application form as sent: its text fields by name and the CV.
struct SentForm {
    fields: BTreeMap<String, String>,
    cv: Option<(String, Vec<u8>)>,
}

impl SentForm {
    fn get(&self, k: &str) -> String {
        self.fields.get(k).cloned().unwrap_or_default()
    }
}

async fn read_form(mut form: Multipart) -> Result<SentForm, CareerError> {
    let too_big = || CareerError::Invalid {
        field: "cv",
        message: format!(
            "The upload broke off or is too large: the CV may be at most {} MB.",
            seldesk_careers::MAX_CV_BYTES / 1_048_576
        ),
    };
    let mut fields = BTreeMap::new();
    let mut cv = None;
    while let Some(field) = form.next_field().await.map_err(|_| too_big())? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "cv" {
            let file_name = field.file_name().unwrap_or_default().to_string();
            let bytes = field.bytes().await.map_err(|_| too_big())?;
            // An empty file input sends a part with no name and no bytes.
            if !(file_name.is_empty() && bytes.is_empty()) {
                cv = Some((file_name, bytes.to_vec()));
            }
        } else {
            let value = field.text().await.map_err(|_| too_big())?;
            fields.insert(name, value);
        }
    }
    Ok(SentForm { fields, cv })
}

fn new_application(posting_id: String, f: &SentForm, agency: Option<String>) -> NewApplication {
    NewApplication {
        posting_id,
        name: f.get("name"),
        email: f.get("email"),
        phone: f.get("phone"),
        letter: f.get("letter"),
        shared: f.get("shared"),
        cv: f.cv.clone(),
        object_to_keeping: !f.get("object_to_keeping").is_empty(),
        agency,
    }
}

async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    form: Multipart,
) -> Response {
    let posting = match state.careers.open_posting(&slug).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let sent = read_form(form).await;
    let keep = |f: &SentForm| ApplyFields {
        name: f.get("name"),
        email: f.get("email"),
        phone: f.get("phone"),
        letter: f.get("letter"),
        shared: f.get("shared"),
        object_to_keeping: !f.get("object_to_keeping").is_empty(),
    };
    let sent = match sent {
        Ok(s) => s,
        Err(e) => {
            let status = StatusCode::PAYLOAD_TOO_LARGE;
            return posting_view(&state, &headers, posting, ApplyFields::default(), Some(e.to_string()), status);
        }
    };
    let keys = sent.fields.keys().map(String::as_str).filter(|k| *k != "csrf");
    let result = match seldesk_careers::check_application_keys(keys) {
        Ok(()) => {
            let a = new_application(posting.id.clone(), &sent, None);
            state.careers.apply(&seldesk_domain::Actor::System, &a).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((a, _)) => message_page(
            StatusCode::OK,
            "Application received",
            &format!(
                "Thank you, {}. We sent a private link to {}: there you can see, correct, withdraw or delete your application.",
                a.name, a.email
            ),
        ),
        Err(e) => {
            let status = status_of(&e);
            posting_view(&state, &headers, posting, keep(&sent), Some(message_of(&e)), status)
        }
    }
}

// ----- the applicant's page -----

#[derive(Template)]
#[template(path = "careers_application.html")]
struct ApplicationPage {
    title: &'static str,
    csrf: String,
    token: String,
    a: Application,
    reads: Vec<time::OffsetDateTime>,
    keep: String,
    keep_objected: String,
    offer_fields: Vec<OfferField>,
    notice: Option<String>,
    error: Option<String>,
}

async fn applicant_view(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let a = match state.careers.by_token(token).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let reads = state.careers.reads(&a).await.unwrap_or_default();
    let csrf = CsrfToken::for_request(state, headers);
    let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
    let page = ApplicationPage {
        title: "Your application",
        csrf: csrf.token.clone(),
        token: token.to_string(),
        a,
        reads,
        keep: keep_of(state, "job_application"),
        keep_objected: keep_of(state, "job_application_objected"),
        offer_fields: state.policy.careers.offer_fields.clone(),
        notice,
        error: error.map(|(_, m)| m),
    };
    let mut r = csrf.attach(render(status, &page));
    // The token is in the address: keep it out of caches and referrers.
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

async fn application_page(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    applicant_view(&state, &headers, &token, None, None).await
}

async fn applicant_cv(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let result = async {
        let a = state.careers.by_token(&token).await?;
        state.careers.cv(&a).await
    }
    .await;
    cv_response(result)
}

fn cv_response(result: Result<(seldesk_careers::CvFile, Vec<u8>), CareerError>) -> Response {
    match result {
        Ok((file, bytes)) => {
            let safe: String = file
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || ".-_ ".contains(c) { c } else { '_' })
                .collect();
            (
                [
                    (header::CONTENT_TYPE, file.content_type),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{safe}\"")),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => error_page(&e),
    }
}

type Fields = BTreeMap<String, String>;

/// Runs an applicant action, then shows the page again.
async fn applicant_action<F, Fut>(state: &AppState, headers: &HeaderMap, token: &str, done: &str, action: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), CareerError>>,
{
    match action().await {
        Ok(()) => applicant_view(state, headers, token, Some(done.to_string()), None).await,
        Err(e) => applicant_view(state, headers, token, None, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn correct(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let u = ApplicationUpdate {
        name: get("name"),
        email: get("email"),
        phone: get("phone"),
        letter: get("letter"),
        shared: get("shared"),
    };
    applicant_action(&state, &headers, &token, "Your corrections are saved.", || async {
        state.careers.correct(&token, &u).await.map(|_| ())
    })
    .await
}

async fn withdraw(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    applicant_action(&state, &headers, &token, "You withdrew your application.", || async {
        state.careers.withdraw(&token).await.map(|_| ())
    })
    .await
}

async fn object(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    applicant_action(
        &state,
        &headers,
        &token,
        "Noted: we will not keep your application for future openings.",
        || async { state.careers.object(&token).await.map(|_| ()) },
    )
    .await
}

async fn offer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let values: Fields = f.iter().filter(|(k, _)| k.as_str() != "csrf").map(|(k, v)| (k.clone(), v.clone())).collect();
    applicant_action(&state, &headers, &token, "Thank you: we have what the contract needs.", || async {
        state.careers.submit_offer_data(&token, &values).await.map(|_| ())
    })
    .await
}

async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    if f.get("confirm").map(String::as_str) != Some("yes") {
        return applicant_view(
            &state,
            &headers,
            &token,
            None,
            Some((StatusCode::UNPROCESSABLE_ENTITY, "Tick the box to confirm the deletion.".into())),
        )
        .await;
    }
    match state.careers.erase_by_token(&token).await {
        Ok(()) => message_page(
            StatusCode::OK,
            "Application deleted",
            "Your application and CV are deleted, and the deletion is logged. This link no longer opens anything.",
        ),
        Err(e) => error_page(&e),
    }
}

// ----- the hr console -----

#[derive(Template)]
#[template(path = "staff_careers.html")]
struct ConsolePage {
    title: &'static str,
    csrf: String,
    applications: Vec<ApplicationSummary>,
    postings: Vec<Posting>,
    employees: Vec<Employee>,
    stages: Vec<Stage>,
    employment_types: &'static [&'static str],
    error: Option<String>,
}

#[derive(Deserialize)]
struct StageFilter {
    stage: Option<String>,
}

async fn console_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    stage: Option<Stage>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let actor = staff.actor();
    let result = async {
        Ok::<_, CareerError>((
            state.careers.list(&actor, stage).await?,
            state.careers.all_postings(&actor).await?,
            state.careers.employees(&actor).await?,
        ))
    }
    .await;
    match result {
        Ok((applications, postings, employees)) => {
            let csrf = CsrfToken::for_request(state, headers);
            let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
            csrf.attach(render(
                status,
                &ConsolePage {
                    title: "Careers",
                    csrf: csrf.token.clone(),
                    applications,
                    postings,
                    employees,
                    stages: Stage::ALL.to_vec(),
                    employment_types: seldesk_careers::EMPLOYMENT_TYPES,
                    error: error.map(|(_, m)| m),
                },
            ))
        }
        Err(e) => error_page(&e),
    }
}

async fn console(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Query(q): Query<StageFilter>,
) -> Response {
    let stage = q.stage.as_deref().and_then(Stage::parse);
    console_view(&state, &headers, &staff, stage, None).await
}

fn posting_input(f: &Fields) -> PostingInput {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    PostingInput {
        title: get("title"),
        location: get("location"),
        employment_type: get("employment_type"),
        description: get("description"),
    }
}

async fn create_posting(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    match state.careers.create_posting(&staff.actor(), &posting_input(&f)).await {
        Ok(p) => Redirect::to(&format!("/staff/careers/postings/{}", p.id)).into_response(),
        Err(e) => console_view(&state, &headers, &staff, None, Some((status_of(&e), message_of(&e)))).await,
    }
}

#[derive(Template)]
#[template(path = "staff_posting.html")]
struct PostingEditPage {
    title: String,
    csrf: String,
    p: Posting,
    employment_types: &'static [&'static str],
    error: Option<String>,
}

async fn posting_edit_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    id: &str,
    error: Option<(StatusCode, String)>,
) -> Response {
    if !staff.has(seldesk_domain::Role::Hr) {
        return message_page(StatusCode::FORBIDDEN, "Not allowed", "Only the hr role works with postings.");
    }
    match state.careers.posting(id).await {
        Ok(p) => {
            let csrf = CsrfToken::for_request(state, headers);
            let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
            csrf.attach(render(
                status,
                &PostingEditPage {
                    title: format!("Posting: {}", p.title),
                    csrf: csrf.token.clone(),
                    p,
                    employment_types: seldesk_careers::EMPLOYMENT_TYPES,
                    error: error.map(|(_, m)| m),
                },
            ))
        }
        Err(e) => error_page(&e),
    }
}

async fn edit_posting(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    posting_edit_view(&state, &headers, &staff, &id, None).await
}

async fn update_posting(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    match state.careers.update_posting(&staff.actor(), &id, &posting_input(&f)).await {
        Ok(p) => Redirect::to(&format!("/staff/careers/postings/{}", p.id)).into_response(),
        Err(e) => posting_edit_view(&state, &headers, &staff, &id, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn posting_status(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let Some(status) = f.get("status").and_then(|s| PostingStatus::parse(s)) else {
        return message_page(StatusCode::UNPROCESSABLE_ENTITY, "Not done", "Choose draft, open or closed.");
    };
    match state.careers.set_posting_status(&staff.actor(), &id, status).await {
        Ok(_) => Redirect::to("/staff/careers").into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "staff_application.html")]
struct StaffApplicationPage {
    title: String,
    csrf: String,
    a: Application,
    next: Vec<Stage>,
    error: Option<String>,
}

async fn staff_application_view(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    id: &str,
    error: Option<(StatusCode, String)>,
) -> Response {
    match state.careers.view(&staff.actor(), id).await {
        Ok(a) => {
            let csrf = CsrfToken::for_request(state, headers);
            let status = error.as_ref().map(|(s, _)| *s).unwrap_or(StatusCode::OK);
            csrf.attach(render(
                status,
                &StaffApplicationPage {
                    title: format!("Application: {}", a.name),
                    csrf: csrf.token.clone(),
                    next: a.stage.next_for_hr(),
                    a,
                    error: error.map(|(_, m)| m),
                },
            ))
        }
        Err(e) => error_page(&e),
    }
}

async fn staff_application(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    staff_application_view(&state, &headers, &staff, &id, None).await
}

async fn staff_cv(State(state): State<AppState>, StaffUser(staff, _): StaffUser, Path(id): Path<String>) -> Response {
    let result = async {
        let a = state.careers.view(&staff.actor(), &id).await?;
        state.careers.cv(&a).await
    }
    .await;
    cv_response(result)
}

/// Runs an hr action; back to the application page.
async fn hr_action<F, Fut>(
    state: &AppState,
    headers: &HeaderMap,
    staff: &seldesk_accounts::StaffMember,
    id: &str,
    done: Option<String>,
    action: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), CareerError>>,
{
    match action().await {
        Ok(()) => Redirect::to(done.as_deref().unwrap_or(&format!("/staff/careers/applications/{id}"))).into_response(),
        Err(e) => staff_application_view(state, headers, staff, id, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn move_stage(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let to = f.get("to").and_then(|s| Stage::parse(s));
    let note = f.get("note").cloned().unwrap_or_default();
    let actor = staff.actor();
    hr_action(&state, &headers, &staff, &id, None, || async {
        let to = to.ok_or_else(|| CareerError::Invalid { field: "to", message: "Choose a stage.".into() })?;
        state.careers.move_stage(&actor, &id, to, &note).await.map(|_| ())
    })
    .await
}

async fn hire(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let country = f.get("country").cloned().unwrap_or_default();
    let actor = staff.actor();
    hr_action(&state, &headers, &staff, &id, Some("/staff/careers".into()), || async {
        state.careers.hire(&actor, &id, &country).await.map(|_| ())
    })
    .await
}

async fn staff_erase(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let reason = f.get("reason").cloned().unwrap_or_default();
    let actor = staff.actor();
    hr_action(&state, &headers, &staff, &id, Some("/staff/careers".into()), || async {
        state.careers.erase_by_staff(&actor, &id, &reason).await
    })
    .await
}

async fn end_contract(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let end = f.get("end").map(|s| s.trim().to_string()).unwrap_or_default();
    let Ok(date) = time::Date::parse(&end, time::macros::format_description!("[year]-[month]-[day]")) else {
        let e = CareerError::Invalid { field: "end", message: "Give the contract's end as YYYY-MM-DD.".into() };
        return console_view(&state, &headers, &staff, None, Some((status_of(&e), message_of(&e)))).await;
    };
    match state.careers.end_contract(&staff.actor(), &id, date).await {
        Ok(_) => Redirect::to("/staff/careers").into_response(),
        Err(e) => console_view(&state, &headers, &staff, None, Some((status_of(&e), message_of(&e)))).await,
    }
}

async fn agency_application(
    State(state): State<AppState>,
    StaffUser(staff, _): StaffUser,
    headers: HeaderMap,
    form: Multipart,
) -> Response {
    let sent = match read_form(form).await {
        Ok(s) => s,
        Err(e) => {
            return console_view(&state, &headers, &staff, None, Some((StatusCode::PAYLOAD_TOO_LARGE, e.to_string())))
                .await;
        }
    };
    let keys = sent.fields.keys().map(String::as_str).filter(|k| !["csrf", "posting_id", "agency"].contains(k));
    let result = match seldesk_careers::check_application_keys(keys) {
        Ok(()) => {
            let a = new_application(sent.get("posting_id"), &sent, Some(sent.get("agency")));
            state.careers.apply(&staff.actor(), &a).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((a, _)) => Redirect::to(&format!("/staff/careers/applications/{}", a.id)).into_response(),
        Err(e) => console_view(&state, &headers, &staff, None, Some((status_of(&e), message_of(&e)))).await,
    }
}

// ----- JSON API -----

#[utoipa::path(
    get,
    path = "/api/v1/careers/postings",
    tag = "careers",
    summary = "Open job postings",
    params(crate::paging::PageQuery),
    responses((status = 200, description = "The postings", body = Vec<Posting>), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_postings(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<crate::paging::PageQuery>,
) -> Result<Response, ApiError> {
    let postings: Vec<Posting> = state.careers.open_postings().await.map_err(ApiError::from)?;
    let (postings, next) = crate::paging::page(
        postings,
        |p| format!("{:030}|{}", p.published_at.map_or(0, |t| t.unix_timestamp_nanos()), p.id),
        crate::paging::Order::Newest,
        &q,
    )?;
    Ok(crate::paging::announce(Json(postings).into_response(), "/api/v1/careers/postings", &q, next))
}

/// `POST /api/v1/careers/postings/{id}/applications` with a JSON object:
/// name, email, phone, letter, shared?, cv_name, cv_base64, object_to_keeping?.
/// Keys outside that list are refused (422) before anything is stored; a key
/// naming a special category says so (JOB-3).
#[utoipa::path(
    post,
    path = "/api/v1/careers/postings/{id}/applications",
    tag = "careers",
    summary = "Apply for a job",
    params(("id" = String, Path, description = "The id")),
    request_body(content = ApplicationBody, content_type = "application/json"),
    responses((status = 201, description = "The application", body = ApplicationReceived), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_apply(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ApplicationReceived>), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("The body is not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Send a JSON object."));
    };
    seldesk_careers::check_application_keys(obj.keys().map(String::as_str)).map_err(ApiError::from)?;
    let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let cv = match obj.get("cv_base64").and_then(|v| v.as_str()) {
        Some(b64) => {
            let bytes = data_encoding::BASE64.decode(b64.as_bytes()).map_err(|_| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "cv_base64 is not valid base64.")
                    .at("cv_base64")
            })?;
            Some((text("cv_name"), bytes))
        }
        None => None,
    };
    let posting = state.careers.posting(&id).await.map_err(ApiError::from)?;
    if posting.status != PostingStatus::Open {
        return Err(ApiError::from(CareerError::NotFound("This job is not open (any more).".into())));
    }
    let a = NewApplication {
        posting_id: posting.id,
        name: text("name"),
        email: text("email"),
        phone: text("phone"),
        letter: text("letter"),
        shared: text("shared"),
        cv,
        object_to_keeping: obj.get("object_to_keeping").and_then(|v| v.as_bool()).unwrap_or(false),
        agency: None,
    };
    let (a, _) = state.careers.apply(&seldesk_domain::Actor::System, &a).await.map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(ApplicationReceived {
            id: a.id,
            stage: a.stage,
            message: "Received. A private link to the application was e-mailed to the applicant.",
        }),
    ))
}

/// An application, as the API takes it. The keys are checked against this
/// list before anything is read (JOB-3), so the handler reads the object
/// itself; this type is what the document shows.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Ravi Kumar", "email": "ravi@example.in", "phone": "+91 98 1234 5678", "letter": "I would like to join.", "cv_name": "cv.pdf", "cv_base64": "JVBERi0xLjQK"}))]
#[allow(dead_code)]
pub(crate) struct ApplicationBody {
    name: String,
    email: String,
    phone: Option<String>,
    letter: Option<String>,
    /// Links the applicant chooses to share.
    shared: Option<String>,
    /// The CV's file name (PDF, DOCX, ODT or TXT).
    cv_name: Option<String>,
    /// The CV, base64.
    cv_base64: Option<String>,
    /// Ask us not to keep the application after the process ends.
    object_to_keeping: Option<bool>,
}

/// A received application.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ApplicationReceived {
    pub id: String,
    pub stage: seldesk_careers::Stage,
    pub message: &'static str,
}

/// Everything held about an application, and each day HR read it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ApplicationView {
    #[serde(flatten)]
    pub application: seldesk_careers::Application,
    /// The days HR opened it.
    pub reads: Vec<String>,
}

/// Everything held about an application, for its private link's holder.
#[utoipa::path(
    get,
    path = "/api/v1/careers/applications/{token}",
    tag = "careers",
    summary = "Your application, by its private link token",
    params(("token" = String, Path, description = "The private link token")),
    responses((status = 200, description = "Everything held about the application", body = ApplicationView), (status = "default", description = "An error: an RFC 9457 problem document", body = crate::openapi::Problem, content_type = "application/problem+json")),
    security(()),
)]
pub(crate) async fn api_application(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    let a = state.careers.by_token(&token).await.map_err(ApiError::from)?;
    let reads = state.careers.reads(&a).await.map_err(ApiError::from)?;
    Ok(Json(ApplicationView { application: a, reads: reads.iter().map(|r| r.date().to_string()).collect() }))
}
