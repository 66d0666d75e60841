//! Erasure leaves nothing behind (ACC-4, POL-3, DB-6): a person who used
//! every feature is erased, then every byte of the data folder and every
//! row of the control plane is searched for their e-mail address and name.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

const PW: &str = "quiet lantern orchard";
const EMAIL: &str = "zanzibar.quill@example.com";
const NAME: &str = "Zanzibar Quillfeather";

async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let r = app.client.request(method, app.url(path)).bearer_auth(token).json(&body).send().await.expect("api");
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Occurrences of `needle` (ASCII, any case) in `hay`, with their offsets.
fn find_all(hay: &[u8], needle: &str) -> Vec<usize> {
    let needle = needle.to_ascii_lowercase().into_bytes();
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w.iter().zip(&needle).all(|(a, b)| a.to_ascii_lowercase() == *b))
        .map(|(i, _)| i)
        .collect()
}

/// A file's bytes, and for a zip archive (exports, access archives) the
/// bytes of every entry too: compression would hide them from a grep.
fn readable(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read");
    if bytes.starts_with(b"PK\x03\x04")
        && let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone()))
    {
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).expect("entry");
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("inflate");
        }
    }
    bytes
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every text value of every control-plane table that contains `needle`:
/// (table, value).
async fn rows_containing(app: &TestApp, needle: &str) -> Vec<(String, String)> {
    let pool = app.db().pool();
    let postgres = app.database_url().starts_with("postgres");
    let tables: Vec<String> = if postgres {
        sqlx::query_scalar("SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
            .fetch_all(pool)
            .await
            .expect("tables")
    } else {
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(pool)
            .await
            .expect("tables")
    };
    let mut out = Vec::new();
    for table in tables {
        let columns: Vec<String> = if postgres {
            sqlx::query_scalar("SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("columns")
        } else {
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("columns")
        };
        for column in columns {
            let sql = format!(
                "SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\" WHERE LOWER(CAST(\"{column}\" AS TEXT)) LIKE $1"
            );
            let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(format!("%{}%", needle.to_lowercase()))
                .fetch_all(pool)
                .await
                .expect("scan");
            out.extend(values.into_iter().flatten().map(|v| (table.clone(), v)));
        }
    }
    out
}

// promise: ACC-4, POL-3, DB-6
#[tokio::test]
async fn erasure_leaves_nothing_of_the_person_but_what_the_receipt_names() {
    let app = spawn_app().await;

    // Before an account: a job application with a CV, an event registration
    // and a contact form, all with the same address.
    let (_, posting, _) = crate::careers::open_posting(&app, "Erasure engineer").await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/careers/postings/{posting}/applications")))
        .json(&json!({
            "name": NAME, "email": EMAIL, "phone": "+44 20 7946 0018",
            "letter": "Quillfeather here: I erase things for a living.",
            "shared": "", "cv_name": "quillfeather-cv.pdf",
            "cv_base64": data_encoding::BASE64.encode(crate::careers::PDF),
        }))
        .send()
        .await
        .expect("apply");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
    let staff = crate::helpers::staff_session(&app, "events-erasure@seldesk.com", "marketing").await;
    let (hook, _got) = crate::marketing::receiver(0).await;
    let (_, slug) = crate::marketing::open_event(&app, &staff, &hook, "").await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/events/{slug}/registrations")))
        .json(&json!({ "name": NAME, "email": EMAIL, "phone": "+44 20 7946 0018", "company": "Quill & Co" }))
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let (cookie, csrf) = app.csrf("/contact").await;
    let r = app
        .client
        .post(app.url("/contact"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", NAME),
            ("company", "Quill & Co"),
            ("email", EMAIL),
            ("message", "Hello from Quillfeather."),
        ])
        .send()
        .await
        .expect("contact");
    assert_eq!(r.status(), 200);

    // The account, a database with a file and an export, an upgrade, a
    // question, an invoice, an access archive, visits and a cookie choice.
    let r = app
        .client
        .post(app.url("/api/v1/accounts"))
        .json(&json!({ "name": NAME, "company": "Quill & Co", "email": EMAIL, "password": PW }))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201);
    let account: serde_json::Value = r.json().await.expect("json");
    let account_id = account["id"].as_str().expect("id").to_string();
    let token = app.token(EMAIL, PW).await;
    let db = api(&app, reqwest::Method::POST, "/api/v1/databases", &token, json!({ "name": "quill-crm" })).await;
    let db_id = db["id"].as_str().expect("id").to_string();
    let contact = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/databases/{db_id}/contacts"),
        &token,
        json!({ "name": NAME, "email": EMAIL }),
    )
    .await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{db_id}/contacts/{}/attachments?name=note.txt", contact["id"])))
        .bearer_auth(&token)
        .body(format!("{NAME} <{EMAIL}>"))
        .send()
        .await
        .expect("attach");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let r = app
        .client
        .get(app.url(&format!("/api/v1/databases/{db_id}/export")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export");
    assert!(r.status().is_success());
    let _ = r.bytes().await.expect("zip");
    let dir = tempfile::tempdir().expect("tmp");
    let old = crate::upgrades::version_1_database(dir.path(), 3);
    let r = app
        .client
        .post(app.url("/api/v1/upgrades?name=quill.sqlite"))
        .bearer_auth(&token)
        .body(std::fs::read(old).expect("read"))
        .send()
        .await
        .expect("upload");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    api(
        &app,
        reqwest::Method::POST,
        "/api/v1/me/requests",
        &token,
        json!({ "kind": "question", "message": "Quill asks" }),
    )
    .await;
    sqlx::query(
        "INSERT INTO invoices (id, number, account_id, buyer_name, buyer_email, country, currency, total_cents, issued_at)
         VALUES ('inv-quill', '2026-000099', $1, $2, $3, 'GB', 'GBP', 4900, $4)",
    )
    .bind(&account_id)
    .bind(NAME)
    .bind(EMAIL)
    .bind(seldesk_store::to_millis(app.clock_now()))
    .execute(app.db().pool())
    .await
    .expect("invoice");
    api(&app, reqwest::Method::POST, "/api/v1/me/requests", &token, json!({ "kind": "access", "password": PW })).await;
    app.run_jobs().await;
    let web = app.web_session(EMAIL, PW).await;
    for path in ["/account", "/databases", &format!("/databases/{db_id}")] {
        assert_eq!(app.client.get(app.url(path)).header("cookie", &web).send().await.expect("page").status(), 200);
    }
    let csrf = web.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let r = app
        .client
        .post(app.url("/cookies"))
        .header("cookie", &web)
        .form(&[("csrf", csrf.as_str()), ("choice", "accept_all")])
        .send()
        .await
        .expect("consent");
    assert_eq!(r.status(), 303);
    app.app().visits().flush().await;
    assert!(!rows_containing(&app, EMAIL).await.is_empty(), "the person is everywhere before");
    let holding: Vec<_> = files_under(app.data.path())
        .into_iter()
        .filter(|p| {
            let b = readable(p);
            !find_all(&b, EMAIL).is_empty() || !find_all(&b, NAME).is_empty()
        })
        .collect();
    assert!(holding.len() >= 3, "the grep sees them before: {holding:?}");
    // The access archive is sealed in the blob store (every node reads it
    // there): the grep cannot see into it, so it is checked by its object.
    let archives = files_under(&app.data.path().join("blobs").join("access"));
    assert_eq!(archives.len(), 1, "the access archive is stored: {archives:?}");
    assert!(holding.iter().any(|p| p.starts_with(app.data.path().join("tenants"))), "tenants holds them: {holding:?}");
    assert!(
        holding.iter().any(|p| p.extension().is_some_and(|e| e == "zip")),
        "archives are searched inside: {holding:?}"
    );

    // A personal token and a remembered Idempotency-Key: account data too.
    api(
        &app,
        reqwest::Method::POST,
        "/api/v1/me/tokens",
        &token,
        json!({ "name": "sync", "scopes": ["databases:read"], "expires_in_days": 30 }),
    )
    .await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{db_id}/contacts")))
        .bearer_auth(&token)
        .header("idempotency-key", "erase-me-too")
        .json(&json!({ "name": "Retried" }))
        .send()
        .await
        .expect("keyed create");
    assert_eq!(r.status(), StatusCode::CREATED);
    // The erasure: the preview names the database, the request needs it typed.
    let preview = app.client.get(app.url("/api/v1/me/erasure")).bearer_auth(&token).send().await.expect("preview");
    let preview: serde_json::Value = preview.json().await.expect("json");
    assert_eq!(preview["databases_removed"][0]["name"], "quill-crm", "{preview}");
    api(
        &app,
        reqwest::Method::POST,
        "/api/v1/me/requests",
        &token,
        json!({ "kind": "erasure", "password": PW, "confirm": EMAIL }),
    )
    .await;
    app.run_jobs().await;
    app.run_jobs().await;

    let receipt = app.mail_to(EMAIL, "has been erased").expect("receipt");
    let backups = app.app().services().policy.backups.max_age.after(app.clock_now()).date().to_string();
    for line in [
        format!(
            "your database \u{201c}quill-crm\u{201d}, with its files and exports (its copies in our encrypted backups are destroyed by {backups})"
        ),
        "1 database upgrade request(s)".to_string(),
        "1 job application(s), with their CVs".to_string(),
        "marketing record(s)".to_string(),
        "1 invoice(s), in a restricted finance archive".to_string(),
        "this receipt, in our outgoing mail folder".to_string(),
    ] {
        assert!(receipt.contains(&line), "the receipt says: {line}\n{receipt}");
    }

    for table in ["api_tokens", "idempotency_keys"] {
        let left: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE account_id = $1")))
                .bind(&account_id)
                .fetch_one(app.db().pool())
                .await
                .expect("count");
        assert_eq!(left, 0, "{table} emptied of the account");
    }
    // Control plane: only the archived invoice, which the receipt names.
    for needle in [EMAIL, NAME] {
        for (table, value) in rows_containing(&app, needle).await {
            assert_eq!(table, "finance_archive", "{needle} still in {table}: {value}");
        }
    }
    // Every byte of the data folder: only the receipt and, inside the
    // control-plane file, the archived invoice's own fields.
    let receipt_files: Vec<std::path::PathBuf> = files_under(&app.data.path().join("mail").join("outbox"));
    assert_eq!(receipt_files.len(), 1, "the outbox holds only the receipt");
    for path in files_under(app.data.path()) {
        if receipt_files.contains(&path) {
            continue;
        }
        let bytes = readable(&path);
        let control_plane = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("control.db"));
        for needle in [EMAIL, NAME] {
            for at in find_all(&bytes, needle) {
                let around = &bytes[at.saturating_sub(400)..(at + 400).min(bytes.len())];
                let archived =
                    !find_all(around, "\"buyer_email\"").is_empty() || !find_all(around, "\"buyer_name\"").is_empty();
                assert!(
                    control_plane && archived,
                    "{needle} found in {} at {at}: {:?}",
                    path.display(),
                    String::from_utf8_lossy(around)
                );
            }
        }
    }
    // Nothing left in the sealed blob store that could decrypt to them.
    let cvs = files_under(&app.data.path().join("blobs").join("cv"));
    assert!(cvs.is_empty(), "CVs left: {cvs:?}");
    let archives = files_under(&app.data.path().join("blobs").join("access"));
    assert!(archives.is_empty(), "access archives left: {archives:?}");
    assert!(!app.data.path().join("tenants").join("uk").join(&db_id).exists(), "the database folder is gone");
    app.stop().await;
}

async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut r = app.client.post(app.url(path)).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("post");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

async fn retention(app: &TestApp) {
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
}

async fn exists(app: &TestApp, id: &str) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_one(app.db().pool())
        .await
        .expect("count");
    n == 1
}

// promise: ACC-6, ACC-4
#[tokio::test]
async fn a_closed_account_is_kept_for_the_policy_period_then_erased_and_signing_in_reopens_it() {
    let app = spawn_app().await;
    let id = app.sign_up("closing@example.com", PW).await;
    let token = app.token("closing@example.com", PW).await;
    // Not while a database is left; not without the password.
    let db = api(&app, reqwest::Method::POST, "/api/v1/databases", &token, json!({ "name": "left-behind" })).await;
    let (status, body) = post(&app, "/api/v1/me/close", Some(&token), json!({ "password": "wrong wrong wrong" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post(&app, "/api/v1/me/close", Some(&token), json!({ "password": PW })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("left-behind")), "{body}");
    app.app().services().databases.remove(&id, db["id"].as_str().expect("id"), "left-behind").await.expect("removed");

    let (status, body) = post(&app, "/api/v1/me/close", Some(&token), json!({ "password": PW })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keep = seldesk_domain::Policy::builtin().expect("policy").retention("account_contact").expect("rule").keep;
    let erase_on = keep.after(app.clock_now()).date().to_string();
    assert_eq!(body["erased_on"], erase_on.as_str());
    let me = app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.expect("me");
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "every session ended");
    let notice = app.mail_to("closing@example.com", "account is closed").expect("told");
    assert!(notice.contains(&erase_on), "{notice}");

    // Signing in within the period reopens it.
    app.clock.advance(time::Duration::days(10));
    let token = app.token("closing@example.com", PW).await;
    let me: serde_json::Value =
        app.client.get(app.url("/api/v1/me")).bearer_auth(&token).send().await.expect("me").json().await.expect("json");
    assert_eq!(me["status"], "active", "{me}");

    // Closed again: kept until the period ends, erased the day after.
    let (status, _) = post(&app, "/api/v1/me/close", Some(&token), json!({ "password": PW })).await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(keep.after(app.clock_now()) - app.clock_now() - time::Duration::hours(1));
    retention(&app).await;
    assert!(exists(&app, &id).await, "kept until the period ends");
    app.clock.advance(time::Duration::hours(2));
    retention(&app).await;
    assert!(!exists(&app, &id).await, "erased when it ends");
    let receipt = app.mail_to("closing@example.com", "has been erased").expect("receipt");
    assert!(receipt.contains("your account was closed"), "{receipt}");
    app.stop().await;
}

// promise: ACC-6
#[tokio::test]
async fn an_idle_account_is_warned_then_erased_and_one_in_use_is_not() {
    let app = spawn_app().await;
    let policy = seldesk_domain::Policy::builtin().expect("policy");
    let idle = policy.retention("idle_account").expect("idle rule").keep;
    let warning = policy.accounts.idle_warning;
    let accounts = app.app().services().accounts.clone();
    let quiet = app.sign_up("hushed@example.com", PW).await;
    let back = app.sign_up("back@example.com", PW).await;
    let busy = app.sign_up("busy@example.com", PW).await;
    let busy_token = app.token("busy@example.com", PW).await;
    api(&app, reqwest::Method::POST, "/api/v1/databases", &busy_token, json!({ "name": "in-use" })).await;
    let start = app.clock_now();

    // Nobody is warned before the idle period is within the warning period.
    app.clock.advance(warning.before(idle.after(start)) - start - time::Duration::days(1));
    assert_eq!(accounts.warn_idle_accounts().await.expect("warn"), 0);
    app.clock.advance(time::Duration::days(2));
    let warned = accounts.warn_idle_accounts().await.expect("warn");
    assert_eq!(warned, 2, "hushed@ and back@, not the account with a database");
    assert_eq!(accounts.warn_idle_accounts().await.expect("again"), 0, "warned once");
    let mail = app.mail_to("hushed@example.com", "will be erased if it stays unused").expect("warning");
    assert!(mail.contains("sign in"), "{mail}");
    assert!(app.mail_to("busy@example.com", "will be erased").is_none());

    // back@ signs in: its idle spell starts again.
    app.token("back@example.com", PW).await;
    app.clock.advance(warning.after(app.clock_now()) - app.clock_now() + time::Duration::days(1));
    retention(&app).await;
    assert!(!exists(&app, &quiet).await, "the idle, warned account is erased");
    assert!(exists(&app, &back).await, "the account used again stays");
    assert!(exists(&app, &busy).await, "the account with a database stays");
    let receipt = app.mail_to("hushed@example.com", "has been erased").expect("receipt");
    assert!(receipt.contains("unused"), "{receipt}");
    app.stop().await;
}

// promise: ACC-4
#[tokio::test]
async fn mail_kept_in_the_outbox_goes_at_its_retention_period() {
    let app = spawn_app().await;
    app.sign_up("outbox-kept@example.com", PW).await;
    assert!(app.mail_to("outbox-kept@example.com", "").is_some(), "a confirmation in the outbox");
    let keep = seldesk_domain::Policy::builtin().expect("policy").retention("outgoing_mail").expect("rule").keep;
    app.clock.advance(keep.after(app.clock_now()) - app.clock_now() - time::Duration::days(1));
    retention(&app).await;
    assert!(app.mail_to("outbox-kept@example.com", "").is_some(), "kept until its period ends");
    app.clock.advance(time::Duration::days(2));
    retention(&app).await;
    assert!(app.mail_to("outbox-kept@example.com", "").is_none(), "gone after it");
    app.stop().await;
}
