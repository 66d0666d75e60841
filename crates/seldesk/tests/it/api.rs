//! The JSON API's contract across route families: one error format.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const PW: &str = "violet tractor lemon";

/// Sends a request and returns the status, the headers and the JSON body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// Each failure is an RFC 9457 problem whose `type` page exists, with the
/// stable `error` code and `message` of the first API kept beside it.
async fn assert_problem(
    app: &TestApp,
    what: &str,
    got: (StatusCode, reqwest::header::HeaderMap, Value),
    want: (u16, &str),
) {
    let (status, headers, body) = got;
    assert_eq!(status.as_u16(), want.0, "{what}: {body}");
    assert_eq!(headers["content-type"], "application/problem+json", "{what}");
    assert_eq!(body["status"], want.0, "{what}: {body}");
    assert_eq!(body["error"], want.1, "{what}: {body}");
    assert_eq!(body["type"], format!("/api/problems/{}", want.1), "{what}: {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{what}: {body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(!detail.is_empty() && body["message"] == detail, "{what}: {body}");
    let page = app.get(body["type"].as_str().expect("type")).await;
    assert_eq!(page.status(), 200, "{what}: the problem type {} has a page", body["type"]);
}

#[tokio::test]
async fn every_route_family_answers_errors_as_problem_json_with_the_field_at_fault() {
    let app = spawn_app().await;
    app.sign_up("problems@example.com", PW).await;
    let t = app.token("problems@example.com", PW).await;
    let t = Some(t.as_str());
    let created = call(&app, Method::POST, "/api/v1/databases", t, Some(r#"{"name":"acme"}"#)).await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.2);
    let db = created.2["id"].as_str().expect("id").to_string();

    // Accounts: a bad field is named.
    let bad = call(
        &app,
        Method::POST,
        "/api/v1/accounts",
        None,
        Some(r#"{"name":"A","company":"B","email":"nope","password":"violet tractor lemon"}"#),
    )
    .await;
    assert_eq!(bad.2["field"], "email", "{}", bad.2);
    assert_problem(&app, "sign-up with a bad e-mail", bad, (422, "invalid")).await;
    // Not signed in; a malformed body; a route that does not exist.
    assert_problem(&app, "no token", call(&app, Method::GET, "/api/v1/me", None, None).await, (401, "unauthorized"))
        .await;
    assert_problem(
        &app,
        "malformed JSON",
        call(&app, Method::PATCH, "/api/v1/me", t, Some("{")).await,
        (400, "bad_request"),
    )
    .await;
    assert_problem(
        &app,
        "no such route",
        call(&app, Method::GET, "/api/v1/nothing-here", t, None).await,
        (404, "not_found"),
    )
    .await;
    // Databases and contacts.
    assert_problem(
        &app,
        "someone else's database",
        call(&app, Method::GET, "/api/v1/databases/0000", t, None).await,
        (404, "not_found"),
    )
    .await;
    let dup = call(&app, Method::POST, "/api/v1/databases", t, Some(r#"{"name":"acme"}"#)).await;
    assert_problem(&app, "a name taken", dup, (409, "conflict")).await;
    let contact =
        call(&app, Method::POST, &format!("/api/v1/databases/{db}/contacts"), t, Some(r#"{"name":""}"#)).await;
    assert!(contact.2["field"].is_string(), "{}", contact.2);
    assert_problem(&app, "a contact without a name", contact, (422, "invalid")).await;
    // Billing, upgrades, events, careers.
    assert_problem(
        &app,
        "an invoice not ours",
        call(&app, Method::GET, "/api/v1/billing/invoices/0000", t, None).await,
        (404, "not_found"),
    )
    .await;
    assert_problem(
        &app,
        "an upgrade not ours",
        call(&app, Method::GET, "/api/v1/upgrades/0000", t, None).await,
        (404, "not_found"),
    )
    .await;
    let event = call(
        &app,
        Method::POST,
        "/api/v1/events/no-such-event/registrations",
        None,
        Some(r#"{"name":"A","email":"a@example.com","phone":"+44 20 7946 0000","company":"Acme"}"#),
    )
    .await;
    assert_problem(&app, "an event that does not exist", event, (404, "not_found")).await;
    let application = call(&app, Method::GET, "/api/v1/careers/applications/not-a-token", None, None).await;
    assert_problem(&app, "an application link that is wrong", application, (404, "not_found")).await;

    // Too many sign-in attempts: the wait is announced (a familiar address
    // gets a few more tries than a new one).
    let mut limited = None;
    for _ in 0..30 {
        let attempt = call(
            &app,
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&json!({"email": "problems@example.com", "password": "guess guess guess"}).to_string()),
        )
        .await;
        if attempt.0 == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(attempt);
            break;
        }
        assert_problem(&app, "a wrong password", attempt, (401, "unauthorized")).await;
    }
    let limited = limited.expect("sign-in attempts are limited");
    let wait: u64 = limited.1["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(wait > 0);
    assert_eq!(limited.1["ratelimit"], format!("\"default\";r=0;t={wait}").as_str());
    assert_problem(&app, "too many attempts", limited, (429, "rate_limited")).await;
    assert_eq!(app.get("/api/problems/no-such-code").await.status(), 404);
    app.stop().await;
}

/// Contacts come in pages: `limit` and `cursor`, the next page announced in
/// `Link` and `Next-Cursor`; contacts added while a client pages through are
/// never shown twice and never push an existing one out of reach.
#[tokio::test]
async fn contacts_are_paged_with_a_cursor_that_inserts_do_not_disturb() {
    let app = spawn_app().await;
    app.sign_up("paging@example.com", PW).await;
    let t = app.token("paging@example.com", PW).await;
    let created = call(&app, Method::POST, "/api/v1/databases", Some(&t), Some(r#"{"name":"crm"}"#)).await;
    let db = created.2["id"].as_str().expect("id").to_string();
    let add = async |name: String| {
        let body = json!({ "name": name }).to_string();
        let r = call(&app, Method::POST, &format!("/api/v1/databases/{db}/contacts"), Some(&t), Some(&body)).await;
        assert_eq!(r.0, StatusCode::CREATED);
        r.2["id"].as_i64().expect("id")
    };
    let mut before = Vec::new();
    for i in 0..250 {
        before.push(add(format!("Person {:03}", (i * 7) % 250)).await);
    }
    let mut path = format!("/api/v1/databases/{db}/contacts?limit=40");
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let (status, headers, body) = call(&app, Method::GET, &path, Some(&t), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body.as_array().expect("a list, as before");
        assert!(page.len() <= 40);
        seen.extend(page.iter().map(|c| c["id"].as_i64().expect("id")));
        pages += 1;
        // Others write meanwhile: before, among and after what was read.
        for name in ["Aaa new", "Person 100 new", "Zzz new"] {
            add(name.to_string()).await;
        }
        let Some(link) = headers.get("link") else {
            assert!(headers.get("next-cursor").is_none());
            break;
        };
        let link = link.to_str().expect("ascii");
        let next = headers["next-cursor"].to_str().expect("ascii");
        assert!(link.ends_with("; rel=\"next\"") && link.contains("limit=40"), "{link}");
        path = link.trim_start_matches('<').split('>').next().expect("url").to_string();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let carried =
            query.split('&').any(|kv| kv.strip_prefix("cursor=").is_some_and(|c| c.replace("%3D", "=") == next));
        assert!(carried, "{path} carries the cursor {next}");
    }
    let old: Vec<i64> = seen.iter().copied().filter(|id| before.contains(id)).collect();
    assert_eq!(old.len(), 250, "every contact of before seen, in {pages} pages");
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "none twice");
    let bad =
        call(&app, Method::GET, &format!("/api/v1/databases/{db}/contacts?cursor=nonsense"), Some(&t), None).await;
    assert_eq!(bad.2["field"], "cursor", "{}", bad.2);
    assert_problem(&app, "a cursor we did not give", bad, (422, "invalid")).await;
    app.stop().await;
}
