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

/// The account's activity (its audit trail), by action.
async fn activity(app: &TestApp, account: &str, action: &str) -> usize {
    let subject = seldesk_domain::Subject::person(account).into_string();
    let entries = app.app().services().audit.about(&subject).await.expect("audit");
    entries.iter().filter(|e| e.action == action).count()
}

// promise: SEC-1, ACC-3
#[tokio::test]
async fn personal_tokens_reach_only_their_scopes_and_every_use_is_recorded() {
    let app = spawn_app().await;
    let account = app.sign_up("tokens@example.com", PW).await;
    let signin = app.token("tokens@example.com", PW).await;
    let make = async |name: &str, scopes: Value, days: i64| {
        let body = json!({ "name": name, "scopes": scopes, "expires_in_days": days }).to_string();
        call(&app, Method::POST, "/api/v1/me/tokens", Some(&signin), Some(&body)).await
    };
    let (status, headers, made) = make("reporting", json!(["databases:read"]), 30).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let reader = made["token"].as_str().expect("the token, shown once").to_string();
    assert!(reader.starts_with("sdpat_") && reader.len() > 40, "{reader}");
    let location = headers["location"].to_str().expect("ascii").to_string();
    let (status, _, shown) = call(&app, Method::GET, &location, Some(&signin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["scopes"], json!(["databases:read"]));
    assert!(shown.get("token").is_none(), "never shown again: {shown}");
    // Only a hash is kept.
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_all(app.db().pool()).await.expect("rows");
    assert!(stored.iter().all(|h| !h.contains(&reader[6..])));
    let (_, _, writer) = make("importer", json!(["databases:write"]), 7).await;
    let writer = writer["token"].as_str().expect("token").to_string();
    let db = call(&app, Method::POST, "/api/v1/databases", Some(&writer), Some(r#"{"name":"ledger"}"#)).await;
    assert_eq!(db.0, StatusCode::CREATED, "{}", db.2);
    let db = db.2["id"].as_str().expect("id").to_string();

    // A read token reads and cannot write; a write token writes and cannot read.
    for i in 0..3 {
        let (status, _, list) = call(&app, Method::GET, "/api/v1/databases", Some(&reader), None).await;
        assert_eq!(status, StatusCode::OK, "read {i}: {list}");
    }
    let contacts = format!("/api/v1/databases/{db}/contacts");
    let refused = [
        (Method::POST, "/api/v1/databases", &reader, "databases:write"),
        (Method::POST, contacts.as_str(), &reader, "databases:write"),
        (Method::GET, "/api/v1/me", &reader, "account:read"),
        (Method::GET, "/api/v1/billing/invoices", &reader, "billing:read"),
        (Method::GET, "/api/v1/databases", &writer, "databases:read"),
        (Method::GET, contacts.as_str(), &writer, "databases:read"),
    ];
    for (method, path, token, scope) in refused {
        let what = format!("{method} {path} needs {scope}");
        let body = (method == Method::POST).then_some(r#"{"name":"x"}"#);
        let got = call(&app, method, path, Some(token), body).await;
        assert!(got.2["detail"].as_str().is_some_and(|d| d.contains(scope)), "{what}: {}", got.2);
        assert_problem(&app, &what, got, (403, "insufficient_scope")).await;
    }
    let added = call(&app, Method::POST, &contacts, Some(&writer), Some(r#"{"name":"Ravi"}"#)).await;
    assert_eq!(added.0, StatusCode::CREATED, "{}", added.2);
    // No personal token manages tokens, whatever its scopes.
    let (_, _, all) = make(
        "everything",
        json!(["account:read", "account:write", "databases:read", "databases:write", "billing:read", "billing:write"]),
        366,
    )
    .await;
    let all = all["token"].as_str().expect("token").to_string();
    let got = call(
        &app,
        Method::POST,
        "/api/v1/me/tokens",
        Some(&all),
        Some(r#"{"name":"x","scopes":["account:read"],"expires_in_days":1}"#),
    )
    .await;
    assert_problem(&app, "a token making a token", got, (403, "insufficient_scope")).await;
    assert_eq!(call(&app, Method::GET, "/api/v1/me", Some(&all), None).await.0, StatusCode::OK);

    // Uses are counted on the token and recorded in the activity, once an hour.
    let (_, _, list) = call(&app, Method::GET, "/api/v1/me/tokens", Some(&signin), None).await;
    let reporting = list.as_array().expect("list").iter().find(|t| t["name"] == "reporting").expect("listed").clone();
    assert!(reporting["uses"].as_i64().expect("uses") >= 3, "{reporting}");
    // Refused tries count too: the owner sees what a leaked token tried.
    assert_eq!(reporting["last_route"], "GET /api/v1/billing/invoices", "{reporting}");
    assert!(list.as_array().expect("list").iter().all(|t| t.get("token").is_none()));
    assert_eq!(activity(&app, &account, "account.token_created").await, 3);
    let used = activity(&app, &account, "account.token_used").await;
    assert_eq!(used, 3, "one entry per token within the hour");
    app.clock.advance(time::Duration::minutes(61));
    call(&app, Method::GET, "/api/v1/databases", Some(&reader), None).await;
    assert_eq!(activity(&app, &account, "account.token_used").await, used + 1);

    // Bad requests name their field.
    for (body, field) in [
        (r#"{"name":"","scopes":["account:read"],"expires_in_days":1}"#, "name"),
        (r#"{"name":"x","scopes":["root"],"expires_in_days":1}"#, "scopes"),
        (r#"{"name":"x","scopes":["account:read"],"expires_in_days":9999}"#, "days"),
    ] {
        let got = call(&app, Method::POST, "/api/v1/me/tokens", Some(&signin), Some(body)).await;
        assert_eq!(got.2["field"], field, "{}", got.2);
        assert_problem(&app, field, got, (422, "invalid")).await;
    }
    // Revoked: refused at once. Expired: refused.
    let id = reporting["id"].as_str().expect("id");
    let gone = call(&app, Method::DELETE, &format!("/api/v1/me/tokens/{id}"), Some(&signin), None).await;
    assert_eq!(gone.0, StatusCode::NO_CONTENT);
    let got = call(&app, Method::GET, "/api/v1/databases", Some(&reader), None).await;
    assert_problem(&app, "a revoked token", got, (401, "unauthorized")).await;
    assert_eq!(activity(&app, &account, "account.token_revoked").await, 1);
    app.clock.advance(time::Duration::days(8));
    let got = call(&app, Method::POST, &contacts, Some(&writer), Some(r#"{"name":"Late"}"#)).await;
    assert_problem(&app, "an expired token", got, (401, "unauthorized")).await;
    app.stop().await;
}

async fn create_with_key(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_makes_one_object() {
    let app = spawn_app().await;
    app.sign_up("retries@example.com", PW).await;
    let t = app.token("retries@example.com", PW).await;
    let first = create_with_key(&app, "/api/v1/databases", &t, "k-db-1", r#"{"name":"orders"}"#).await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.2);
    assert!(first.1.get("idempotent-replayed").is_none());
    let again = create_with_key(&app, "/api/v1/databases", &t, "k-db-1", r#"{"name":"orders"}"#).await;
    assert_eq!(again.0, StatusCode::CREATED, "{}", again.2);
    assert_eq!(again.1["idempotent-replayed"], "true");
    assert_eq!(again.1["location"], first.1["location"]);
    assert_eq!(again.2["id"], first.2["id"]);
    assert_eq!(again.2["name"], "orders");
    let (_, _, list) = call(&app, Method::GET, "/api/v1/databases", Some(&t), None).await;
    assert_eq!(list.as_array().expect("list").len(), 1, "one database: {list}");
    let db = first.2["id"].as_str().expect("id").to_string();

    // The same key for another request is refused, naming the header.
    let other = create_with_key(&app, "/api/v1/databases", &t, "k-db-1", r#"{"name":"other"}"#).await;
    assert_eq!(other.2["field"], "Idempotency-Key", "{}", other.2);
    assert_problem(&app, "a key reused", other, (422, "idempotency_key_reused")).await;
    // A first attempt that failed does not pin its key.
    let bad = create_with_key(&app, "/api/v1/databases", &t, "k-db-2", r#"{"name":""}"#).await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY);
    let good = create_with_key(&app, "/api/v1/databases", &t, "k-db-2", r#"{"name":"second"}"#).await;
    assert_eq!(good.0, StatusCode::CREATED, "{}", good.2);
    let key = create_with_key(&app, "/api/v1/databases", &t, "has space", r#"{"name":"x"}"#).await;
    assert_eq!(key.2["field"], "Idempotency-Key", "{}", key.2);

    // Contacts (customer data: the retry reads the contact back from its database).
    let contacts = format!("/api/v1/databases/{db}/contacts");
    let c1 =
        create_with_key(&app, &contacts, &t, "k-contact", r#"{"name":"Meera Shah","email":"meera@example.com"}"#).await;
    assert_eq!(c1.0, StatusCode::CREATED, "{}", c1.2);
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT location FROM idempotency_keys").fetch_all(app.db().pool()).await.expect("keys");
    assert!(stored.iter().flatten().all(|l| !l.contains("Meera")), "no customer data kept: {stored:?}");
    // Several retries at once still make one contact.
    let body = r#"{"name":"Meera Shah","email":"meera@example.com"}"#;
    let at_once = |key: &'static str| create_with_key(&app, &contacts, &t, key, body);
    let (a, b, c, d) =
        tokio::join!(at_once("k-contact"), at_once("k-contact"), at_once("k-contact"), at_once("k-contact"));
    for r in [&a, &b, &c, &d] {
        assert!(r.0 == StatusCode::CREATED || r.0 == StatusCode::CONFLICT, "{} {}", r.0, r.2);
        if r.0 == StatusCode::CREATED {
            assert_eq!(r.2["id"], c1.2["id"]);
            assert_eq!(r.2["email"], "meera@example.com");
        }
    }
    // Two first tries racing: exactly one creates.
    for key in ["k-race-0", "k-race-1", "k-race-2", "k-race-3"] {
        let raced = r#"{"name":"Raced"}"#;
        let (a, b) = tokio::join!(
            create_with_key(&app, &contacts, &t, key, raced),
            create_with_key(&app, &contacts, &t, key, raced)
        );
        let made =
            [&a, &b].iter().filter(|r| r.0 == StatusCode::CREATED && r.1.get("idempotent-replayed").is_none()).count();
        assert_eq!(made, 1, "exactly one of two racing tries creates: {} {} / {} {}", a.0, a.2, b.0, b.2);
    }
    let (_, _, all) = call(&app, Method::GET, &format!("{contacts}?limit=100"), Some(&t), None).await;
    let names: Vec<&str> = all.as_array().expect("list").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "Meera Shah").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "Raced").count(), 4, "{names:?}");

    // Attachments: the retry answers with the attachment's details.
    let cid = c1.2["id"].as_i64().expect("id");
    let upload = async || {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/{db}/contacts/{cid}/attachments?name=offer.txt")))
            .bearer_auth(&t)
            .header("idempotency-key", "k-file")
            .body("the signed offer")
            .send()
            .await
            .expect("upload");
        (r.status(), r.headers().clone(), r.json::<Value>().await.expect("json"))
    };
    let (s1, _, a1) = upload().await;
    let (s2, h2, a2) = upload().await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{a1} {a2}");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(a1, a2);
    let (_, _, files) =
        call(&app, Method::GET, &format!("/api/v1/databases/{db}/contacts/{cid}/attachments"), Some(&t), None).await;
    assert_eq!(files.as_array().expect("list").len(), 1, "{files}");

    // Requests; and keys are each account's own.
    let ask = r#"{"kind":"question","message":"Where are my backups kept?"}"#;
    let r1 = create_with_key(&app, "/api/v1/me/requests", &t, "k-ask", ask).await;
    let r2 = create_with_key(&app, "/api/v1/me/requests", &t, "k-ask", ask).await;
    assert_eq!((r1.0, r2.0), (StatusCode::CREATED, StatusCode::CREATED), "{} {}", r1.2, r2.2);
    assert_eq!(r1.2["id"], r2.2["id"]);
    app.sign_up("other@example.com", PW).await;
    let o = app.token("other@example.com", PW).await;
    let theirs = create_with_key(&app, "/api/v1/databases", &o, "k-db-1", r#"{"name":"orders"}"#).await;
    assert_eq!(theirs.0, StatusCode::CREATED);
    assert!(theirs.1.get("idempotent-replayed").is_none());
    assert_ne!(theirs.2["id"], first.2["id"]);
    // A day later the key is forgotten.
    app.clock.advance(time::Duration::hours(25));
    let later = create_with_key(&app, "/api/v1/databases", &t, "k-db-1", r#"{"name":"orders"}"#).await;
    assert!(later.1.get("idempotent-replayed").is_none());
    assert_ne!(later.2["id"], first.2["id"], "{}", later.2);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_and_its_page_describe_every_operation() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("ascii").starts_with("application/json"));
    let doc: Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 40, "{}", paths.len());
    let create = &doc["paths"]["/api/v1/databases/{id}/contacts"]["post"];
    assert_eq!(create["security"][1]["personal_token"][0], "databases:write", "{create}");
    assert!(create["parameters"].as_array().expect("params").iter().any(|p| p["name"] == "Idempotency-Key"));
    assert_eq!(
        create["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert!(doc["components"]["securitySchemes"]["personal_token"].is_object());
    // Bodies are typed, with examples.
    let body = &doc["paths"]["/api/v1/databases"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/NewDb", "{body}");
    assert_eq!(doc["components"]["schemas"]["NewDb"]["example"]["name"], "ledger");
    let answer =
        &doc["paths"]["/api/v1/databases"]["post"]["responses"]["201"]["content"]["application/json"]["schema"];
    assert_eq!(answer["$ref"], "#/components/schemas/CustomerDb", "{answer}");
    let (status, page) = app.text("/api/docs").await;
    assert_eq!(status, 200);
    for needle in ["/api/v1/openapi.json", "Idempotency-Key", "databases:write", "/api/v1/databases/{id}/contacts"] {
        assert!(page.contains(needle), "the page names {needle}");
    }
    app.stop().await;
}

#[tokio::test]
async fn ten_thousand_contacts_are_each_seen_once_while_a_thousand_are_inserted() {
    let app = spawn_app().await;
    let account = app.sign_up("tenk@example.com", PW).await;
    let t = app.token("tenk@example.com", PW).await;
    let created = call(&app, Method::POST, "/api/v1/databases", Some(&t), Some(r#"{"name":"big-crm"}"#)).await;
    let db = created.2["id"].as_str().expect("id").to_string();
    // 10,000 contacts at once through the service (the API would take minutes in a debug build).
    let before: Vec<i64> = app
        .app()
        .services()
        .databases
        .write_db(&account, &db, false, |conn, now| {
            (0..10_000)
                .map(|i| {
                    let input = seldesk_tenants::app::ContactInput {
                        name: Some(format!("Person {:05}", (i * 7919) % 10_000)),
                        ..Default::default()
                    };
                    seldesk_tenants::app::create(conn, &input, now).map(|c| c.id)
                })
                .collect()
        })
        .await
        .expect("contacts");
    let mut path = format!("/api/v1/databases/{db}/contacts?limit=200");
    let (mut seen, mut pages, mut inserted) = (Vec::new(), 0, 0);
    loop {
        let (status, headers, body) = call(&app, Method::GET, &path, Some(&t), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.extend(body.as_array().expect("list").iter().map(|c| c["id"].as_i64().expect("id")));
        pages += 1;
        // Twenty others through the API meanwhile: before, among and after what was read.
        for k in 0..20 {
            let name = match k % 4 {
                0 => format!("Aaa {pages}-{k}"),
                1 => format!("Person {:05} new", (pages * 397 + k) % 10_000),
                2 => format!("Person {:05} later", (pages * 211 + k * 13) % 10_000),
                _ => format!("Zzz {pages}-{k}"),
            };
            let r = call(
                &app,
                Method::POST,
                &format!("/api/v1/databases/{db}/contacts"),
                Some(&t),
                Some(&json!({ "name": name }).to_string()),
            )
            .await;
            assert_eq!(r.0, StatusCode::CREATED);
            inserted += 1;
        }
        let Some(link) = headers.get("link") else { break };
        path = link.to_str().expect("ascii").trim_start_matches('<').split('>').next().expect("url").to_string();
    }
    assert!(inserted >= 1_000, "{inserted} inserted while paging");
    let before: std::collections::BTreeSet<i64> = before.into_iter().collect();
    let old: Vec<i64> = seen.iter().copied().filter(|id| before.contains(id)).collect();
    let unique: std::collections::BTreeSet<i64> = old.iter().copied().collect();
    assert_eq!(old.len(), 10_000, "every one of the 10,000 seen, in {pages} pages");
    assert_eq!(unique.len(), 10_000, "none twice");
    app.stop().await;
}

#[tokio::test]
async fn every_list_is_paged_with_the_same_cursor_headers() {
    let app = spawn_app().await;
    app.sign_up("lists@example.com", PW).await;
    let t = app.token("lists@example.com", PW).await;
    for i in 0..3 {
        let body = json!({ "name": format!("t{i}"), "scopes": ["databases:read"], "expires_in_days": 5 }).to_string();
        assert_eq!(call(&app, Method::POST, "/api/v1/me/tokens", Some(&t), Some(&body)).await.0, StatusCode::CREATED);
        let body = json!({ "kind": "question", "message": format!("Question {i}") }).to_string();
        assert_eq!(call(&app, Method::POST, "/api/v1/me/requests", Some(&t), Some(&body)).await.0, StatusCode::CREATED);
        let body = json!({ "name": format!("db{i}") }).to_string();
        assert_eq!(call(&app, Method::POST, "/api/v1/databases", Some(&t), Some(&body)).await.0, StatusCode::CREATED);
    }
    for list in ["/api/v1/databases", "/api/v1/me/requests", "/api/v1/me/tokens"] {
        let mut path = format!("{list}?limit=2");
        let mut ids = Vec::new();
        loop {
            let (status, headers, body) = call(&app, Method::GET, &path, Some(&t), None).await;
            assert_eq!(status, StatusCode::OK, "{list}: {body}");
            let page = body.as_array().expect("a list");
            assert!(page.len() <= 2, "{list}");
            ids.extend(page.iter().map(|x| x["id"].to_string()));
            let Some(link) = headers.get("link") else { break };
            assert!(headers.get("next-cursor").is_some());
            path = link.to_str().expect("ascii").trim_start_matches('<').split('>').next().expect("url").to_string();
            assert!(path.starts_with(list), "{path}");
        }
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (3, 3), "{list}: {ids:?}");
        let bad = call(&app, Method::GET, &format!("{list}?cursor=%2A%2A"), Some(&t), None).await;
        assert_eq!(bad.2["field"], "cursor", "{list}: {}", bad.2);
        assert_problem(&app, list, bad, (422, "invalid")).await;
    }
    app.stop().await;
}

/// Follows a site list's "Next page" links from `path`; returns each page's
/// HTML.
async fn site_pages(app: &TestApp, session: &str, path: &str, id: &str) -> Vec<String> {
    let mut pages = Vec::new();
    let mut path = path.to_string();
    loop {
        let r = app.client.get(app.url(&path)).header("cookie", session).send().await.expect("page");
        assert_eq!(r.status(), 200, "{path}");
        let html = r.text().await.expect("html");
        let next = html
            .split(&format!("id=\"next-{id}\" href=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|href| href.replace("&amp;", "&"));
        if !pages.is_empty() {
            assert!(html.contains(&format!("id=\"first-{id}\"")), "a later page links back to the first: {path}");
        }
        pages.push(html);
        match next {
            Some(href) => path = href,
            None => break,
        }
        assert!(pages.len() < 20, "the pages end");
    }
    pages
}

/// The site's own lists page as the API's do: nothing is cut off silently.
#[tokio::test]
async fn the_site_lists_are_paged_and_every_row_is_reached() {
    let app = spawn_app().await;
    app.sign_up("pages@example.com", PW).await;
    let t = app.token("pages@example.com", PW).await;
    for i in 0..27 {
        let body = json!({ "kind": "question", "message": format!("Question {i}") }).to_string();
        assert_eq!(call(&app, Method::POST, "/api/v1/me/requests", Some(&t), Some(&body)).await.0, StatusCode::CREATED);
    }
    let session = app.web_session("pages@example.com", PW).await;

    // Requests: 25 on the first page, newest first, then the rest; each once.
    let pages = site_pages(&app, &session, "/account/requests", "requests").await;
    assert_eq!(pages.len(), 2);
    let ids_of = |html: &str| -> Vec<String> {
        html.split("<a href=\"/account/requests/")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_string))
            .collect()
    };
    let first = ids_of(&pages[0]);
    assert_eq!(first.len(), 25);
    let all: Vec<String> = pages.iter().flat_map(|p| ids_of(p)).collect();
    let unique: std::collections::BTreeSet<i64> = all.iter().map(|i| i.parse().expect("id")).collect();
    assert_eq!((all.len(), unique.len()), (27, 27), "{all:?}");
    let numbers: Vec<i64> = all.iter().map(|i| i.parse().expect("id")).collect();
    assert!(numbers.windows(2).all(|w| w[0] > w[1]), "newest first across pages: {numbers:?}");

    // The account's activity: every entry about the person, over pages.
    let held = app.app().services().audit.about(&format!("person:{}", me(&app, &t).await)).await.expect("audit").len();
    assert!(held > 27, "{held}");
    let pages = site_pages(&app, &session, "/account", "activity").await;
    let rows: usize = pages
        .iter()
        .map(|p| {
            let table = p.split("id=\"activity\"").nth(1).and_then(|t| t.split("</tbody>").next()).unwrap_or_default();
            table.matches("<tr><td>").count()
        })
        .sum();
    assert_eq!(rows, held, "every activity entry is on one of the pages");

    // A cursor that is not ours shows the first page rather than an error.
    let r =
        app.client.get(app.url("/account/requests?after=%2A%2A")).header("cookie", &session).send().await.expect("bad");
    assert_eq!(r.status(), 200);
    assert_eq!(ids_of(&r.text().await.expect("html")), first);
    app.stop().await;
}

async fn me(app: &TestApp, token: &str) -> String {
    call(app, Method::GET, "/api/v1/me", Some(token), None).await.2["id"].as_str().expect("id").to_string()
}

/// A contact's e-mail address and phone number must have their shape, on
/// create and on edit, with the field named.
#[tokio::test]
async fn contact_addresses_and_numbers_without_their_shape_are_refused() {
    let app = spawn_app().await;
    app.sign_up("shapes@example.com", PW).await;
    let t = app.token("shapes@example.com", PW).await;
    let body = json!({ "name": "shapes" }).to_string();
    let (_, _, db) = call(&app, Method::POST, "/api/v1/databases", Some(&t), Some(&body)).await;
    let contacts = format!("/api/v1/databases/{}/contacts", db["id"].as_str().expect("id"));
    for (field, value) in [("email", "nope"), ("email", "a@b"), ("phone", "call me"), ("phone", "12")] {
        let body = json!({ "name": "Meera", field: value }).to_string();
        let got = call(&app, Method::POST, &contacts, Some(&t), Some(&body)).await;
        assert_eq!(got.2["field"], field, "{value}: {}", got.2);
        assert_problem(&app, value, got, (422, "invalid")).await;
    }
    let body = json!({ "name": "Meera", "email": "meera@example.in", "phone": "+91 22 5555 0100" }).to_string();
    let (status, _, made) = call(&app, Method::POST, &contacts, Some(&t), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let one = format!("{contacts}/{}", made["id"]);
    let got = call(&app, Method::PATCH, &one, Some(&t), Some(&json!({ "email": "still nope" }).to_string())).await;
    assert_eq!(got.2["field"], "email");
    assert_problem(&app, "edit", got, (422, "invalid")).await;
    app.stop().await;
}
