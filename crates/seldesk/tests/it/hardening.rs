//! What an outside probe of the release binary found (issue 27): each test
//! replays an attack and checks the guarantee that closes it.

use std::io::{Read, Write};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::databases::call;
use crate::helpers::{TestApp, spawn_app};

const PW: &str = "violet tractor lemon";

async fn customer_db(app: &TestApp, email: &str, name: &str) -> (String, String) {
    app.sign_up(email, PW).await;
    let t = app.token(email, PW).await;
    let (status, db) =
        call(app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": name, "region": "in" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{db}");
    (t, db["id"].as_str().expect("id").to_string())
}

async fn attach(app: &TestApp, t: &str, id: &str, body: &[u8]) -> (i64, i64) {
    let (_, c) =
        call(app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), t, Some(json!({ "name": "x" }))).await;
    let cid = c["id"].as_i64().expect("cid");
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{id}/contacts/{cid}/attachments?name=a.txt")))
        .bearer_auth(t)
        .body(body.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let a: serde_json::Value = r.json().await.expect("json");
    (cid, a["id"].as_i64().expect("aid"))
}

/// Sets a column in the customer's database file directly, as a tampered
/// file or an import that slipped past would.
fn tamper(app: &TestApp, id: &str, sql: &str, params: impl rusqlite::Params) {
    let path = app.data.path().join("tenants/in").join(id).join("db.sqlite");
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute(sql, params).expect("tamper");
}

// promise: DB-2, SEC-1
#[tokio::test]
async fn an_attachment_row_cannot_point_at_a_file_outside_its_database() {
    let app = spawn_app().await;
    let (t, id) = customer_db(&app, "probe@example.com", "probe").await;
    let (_, aid) = attach(&app, &t, &id, b"hi").await;
    let (victim_t, victim) = customer_db(&app, "victim@example.com", "victim").await;
    let _ = victim_t;
    let key = app.data.path().join("keys/vault.key");
    // Something outside every database that must survive a delete.
    let outside = app.data.path().join("outside.txt");
    std::fs::write(&outside, b"not yours").expect("outside");
    let victim_db = format!("../../{victim}/db.sqlite");
    let targets = [
        "../../../../keys/vault.key".to_string(),
        key.display().to_string(),
        "../../../../control.db".to_string(),
        victim_db,
        "/etc/passwd".to_string(),
        "../../../../outside.txt".to_string(),
        "0123456789abcdef0123456789abcde\0".to_string(),
    ];

    // The console may not say where a file lives.
    for target in &targets {
        let (status, body) = call(
            &app,
            Method::POST,
            &format!("/api/v1/databases/{id}/sql"),
            &t,
            Some(json!({ "sql": "UPDATE attachments SET stored_name = ?1 WHERE id = ?2", "params": [target, aid] })),
        )
        .await;
        assert!(status.is_client_error(), "{target}: {status} {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("Not allowed")), "{body}");
    }
    for sql in ["DROP TABLE attachments", "ALTER TABLE attachments RENAME TO old_attachments"] {
        let (status, body) =
            call(&app, Method::POST, &format!("/api/v1/databases/{id}/sql"), &t, Some(json!({ "sql": sql }))).await;
        assert!(status.is_client_error(), "{sql}: {status} {body}");
    }

    // A row changed behind Seldesk's back reaches nothing either.
    for target in &targets {
        tamper(&app, &id, "UPDATE attachments SET stored_name = ?1 WHERE id = ?2", rusqlite::params![target, aid]);
        let r = app
            .client
            .get(app.url(&format!("/api/v1/databases/{id}/attachments/{aid}")))
            .bearer_auth(&t)
            .send()
            .await
            .expect("download");
        let status = r.status();
        let body = r.bytes().await.expect("body");
        assert!(status.is_client_error(), "{target}: {status}");
        assert!(!body.windows(9).any(|w| w == b"not yours") && body.len() < 1000, "{target}: leaked");
    }
    // A symlink where the file should be is not followed.
    let files = app.data.path().join("tenants/in").join(&id).join("files");
    let stored = std::fs::read_dir(&files).expect("files").next().expect("one").expect("entry").file_name();
    let stored = stored.to_string_lossy().into_owned();
    std::fs::remove_file(files.join(&stored)).expect("rm");
    std::os::unix::fs::symlink(&key, files.join(&stored)).expect("symlink");
    tamper(&app, &id, "UPDATE attachments SET stored_name = ?1 WHERE id = ?2", rusqlite::params![stored, aid]);
    let r = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/attachments/{aid}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a link is not a stored file");

    // Deleting through a tampered row removes nothing outside.
    tamper(
        &app,
        &id,
        "UPDATE attachments SET stored_name = ?1 WHERE id = ?2",
        rusqlite::params!["../../../../outside.txt", aid],
    );
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/databases/{id}/attachments/{aid}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "the row itself goes: {}", r.status());
    assert!(outside.is_file(), "a file outside the database survives");
    assert!(key.is_file() && app.data.path().join("tenants/in").join(&victim).join("db.sqlite").is_file());
    app.stop().await;
}

/// A database's export archive, as its owner downloads it.
async fn export_of(app: &TestApp, token: &str, id: &str) -> Vec<u8> {
    let r = app.client.get(app.url(&format!("/api/v1/databases/{id}/export"))).bearer_auth(token).send().await;
    r.expect("export").bytes().await.expect("zip").to_vec()
}

fn rezip(entries: &std::collections::BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default()).expect("entry");
        out.write_all(data).expect("write");
    }
    out.finish().expect("zip").into_inner()
}

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
    let mut out = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read");
        out.insert(f.name().expect("name").to_string(), v);
    }
    out
}

/// Rewrites an export's dump and recomputes the manifest's checksums, as an
/// attacker who knows the format would.
fn forge(export: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut entries = unzip(export);
    let dump = String::from_utf8(entries["dump.sql"].clone()).expect("utf8");
    let forged = edit(&dump);
    assert_ne!(forged, dump, "the edit changes the dump");
    entries.insert("dump.sql".into(), forged.into_bytes());
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
    for (name, data) in &entries {
        if name != "manifest.json" {
            manifest["checksums"][name] = json!(blake3::hash(data).to_hex().to_string());
        }
    }
    entries.insert("manifest.json".into(), serde_json::to_vec(&manifest).expect("json"));
    rezip(&entries)
}

// promise: DB-2, SEC-1
#[tokio::test]
async fn an_imported_archive_cannot_name_a_file_outside_its_database() {
    let app = spawn_app().await;
    let (t, id) = customer_db(&app, "importer@example.com", "origin").await;
    attach(&app, &t, &id, b"hello").await;
    let export = export_of(&app, &t, &id).await;
    let stored = unzip(&export)
        .keys()
        .find_map(|k| k.strip_prefix("files/").map(str::to_string))
        .expect("an attachment in the export");
    let import = |body: Vec<u8>, name: &'static str| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/databases/import?name={name}&region=in")))
            .bearer_auth(&t)
            .body(body);
        async move {
            let r = req.send().await.expect("import");
            (r.status(), r.text().await.unwrap_or_default())
        }
    };
    for (i, target) in ["../../../../keys/vault.key", "/etc/passwd", "..", "a/b"].into_iter().enumerate() {
        let forged = forge(&export, |d| d.replace(&stored, target));
        let name = ["forged-a", "forged-b", "forged-c", "forged-d"][i];
        let (status, body) = import(forged, name).await;
        assert!(status.is_client_error(), "{target}: {status} {body}");
        assert!(body.contains("did not create") || body.contains("not a file name"), "{target}: {body}");
    }
    // A file entry whose name Seldesk never gives is refused too.
    let mut entries = unzip(&export);
    let data = entries.remove(&format!("files/{stored}")).expect("file");
    entries.insert("files/.hidden".into(), data.clone());
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
    manifest["checksums"]["files/.hidden"] = json!(blake3::hash(&data).to_hex().to_string());
    entries.insert("manifest.json".into(), serde_json::to_vec(&manifest).expect("json"));
    let (status, body) = import(rezip(&entries), "forged-e").await;
    assert!(status.is_client_error(), "{status} {body}");
    // Nothing of the refused imports stays.
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    assert_eq!(list.as_array().expect("list").len(), 1, "{list}");
    // The untouched archive still imports.
    let (status, body) = import(export, "honest-copy").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

/// A client whose requests come from `ip` (any address of 127.0.0.0/8
/// reaches the test server), so tests can sign in from several places.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().expect("ip"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn token_attempt(app: &TestApp, client: &reqwest::Client, email: &str, password: &str) -> StatusCode {
    client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("attempt")
        .status()
}

// promise: ACC-3, SEC-1
#[tokio::test]
async fn parallel_guesses_are_counted_before_any_password_is_checked() {
    let app = spawn_app().await;
    app.sign_up("parallel@example.com", PW).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/token");
        // The right password goes last.
        let password = if i == 59 { PW.to_string() } else { format!("wrong guess {i}") };
        set.spawn(async move {
            let body = json!({ "email": "parallel@example.com", "password": password });
            (i, client.post(url).json(&body).send().await.expect("attempt").status())
        });
    }
    let mut evaluated = 0;
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        let (i, status) = r.expect("task");
        match status {
            StatusCode::UNAUTHORIZED => evaluated += 1,
            StatusCode::OK => panic!("attempt {i} got in"),
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("attempt {i}: {other}"),
        }
    }
    assert!(evaluated <= 5, "{evaluated} passwords were checked; the budget is 5");
    assert_eq!(evaluated + refused, 60);

    // Staff sign-in: the same, password and code checked at most 5 times.
    let (password, secret) = crate::helpers::add_staff(&app, "guarded@seldesk.com", "support");
    let code = seldesk_accounts::staff::totp_code(&secret, app.clock_now()).expect("code");
    let accounts = app.app().services().accounts.clone();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let accounts = accounts.clone();
        let pw = if i == 49 { password.clone() } else { format!("wrong {i}") };
        let code = code.clone();
        set.spawn(async move { accounts.authenticate_staff("guarded@seldesk.com", &pw, &code, "127.0.0.1").await });
    }
    let mut staff_checked = 0;
    while let Some(r) = set.join_next().await {
        match r.expect("task") {
            Ok(_) => panic!("a staff guess got in"),
            Err(seldesk_accounts::AccountError::RateLimited { .. }) => {}
            Err(_) => staff_checked += 1,
        }
    }
    assert!(staff_checked <= 5, "{staff_checked} staff attempts were checked");
    app.stop().await;
}

// promise: ACC-3
#[tokio::test]
async fn guesses_from_elsewhere_slow_down_but_never_lock_the_owner_out() {
    let app = spawn_app().await;
    let email = "owner-lock@example.com";
    app.sign_up(email, PW).await;
    let home = client_from("127.0.1.1");
    let attacker = client_from("127.0.2.1");
    let elsewhere = client_from("127.0.3.1");
    assert_eq!(token_attempt(&app, &home, email, PW).await, StatusCode::OK, "the owner signs in from home");

    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(token_attempt(&app, &attacker, email, &format!("guess {i}")).await);
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(&statuses[5..], &[StatusCode::TOO_MANY_REQUESTS; 3]);
    let r = attacker
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({ "email": email, "password": PW }))
        .send()
        .await
        .expect("attempt");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits at the attacker's");
    assert!(r.headers().contains_key("retry-after"));

    // The owner at home is not locked out, and was told.
    assert_eq!(token_attempt(&app, &home, email, PW).await, StatusCode::OK, "home still works");
    let mails: Vec<String> = app.outbox().into_iter().filter(|m| m.contains("were paused")).collect();
    assert_eq!(mails.len(), 1, "one warning, however many guesses");
    // From a new place the owner waits too, but the e-mailed link works.
    assert_eq!(token_attempt(&app, &elsewhere, email, PW).await, StatusCode::TOO_MANY_REQUESTS);
    let link = crate::helpers::link(&mails[0], "/signin/link").expect("link in the warning");
    let page = elsewhere.get(&link).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let (cookie, csrf) = crate::helpers::csrf_of(&page);
    let html = page.text().await.expect("html");
    assert!(html.contains(email), "the page names the account");
    let token = link.split("token=").nth(1).expect("token").to_string();
    let post = |client: &reqwest::Client| {
        client
            .post(app.url("/signin/link"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("token", token.as_str())])
            .send()
    };
    let r = post(&elsewhere).await.expect("sign in by link");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers().get_all("set-cookie").iter().any(|c| c.to_str().is_ok_and(|c| c.starts_with("seldesk_session=")))
    );
    assert!(post(&elsewhere).await.expect("again").status().is_client_error(), "the link works once");
    // That place is familiar now.
    assert_eq!(token_attempt(&app, &elsewhere, email, PW).await, StatusCode::OK);

    // Backoff: after the first pause the attacker gets a new budget, and
    // once that is used up too the pause doubles.
    app.clock.advance(time::Duration::minutes(16));
    for i in 0..5 {
        assert_eq!(token_attempt(&app, &attacker, email, &format!("again {i}")).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(token_attempt(&app, &attacker, email, "again").await, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(time::Duration::minutes(16));
    assert_eq!(token_attempt(&app, &attacker, email, "later").await, StatusCode::TOO_MANY_REQUESTS, "30 minutes now");
    app.clock.advance(time::Duration::minutes(15));
    assert_eq!(token_attempt(&app, &attacker, email, "later").await, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn staff_sign_in_costs_the_same_for_unknown_e_mails_and_a_code_works_once() {
    let app = spawn_app().await;
    let accounts = app.app().services().accounts.clone();
    let known: Vec<(String, String, String)> = (0..3)
        .map(|i| {
            let email = format!("known{i}@seldesk.com");
            let (pw, secret) = crate::helpers::add_staff(&app, &email, "support");
            (email, pw, secret)
        })
        .collect();
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    for round in 0..6 {
        let started = std::time::Instant::now();
        let r = accounts.authenticate_staff(&known[round % 3].0, "wrong password", "000000", "127.0.0.1").await;
        known_times.push(started.elapsed());
        assert!(matches!(r, Err(seldesk_accounts::AccountError::Forbidden(_))), "{r:?}");
        let started = std::time::Instant::now();
        let r = accounts
            .authenticate_staff(&format!("nobody{round}@seldesk.com"), "wrong password", "000000", "127.0.0.1")
            .await;
        unknown_times.push(started.elapsed());
        assert!(matches!(r, Err(seldesk_accounts::AccountError::Forbidden(_))), "{r:?}");
    }
    known_times.sort();
    unknown_times.sort();
    let (k, u) = (known_times[3], unknown_times[3]);
    assert!(u * 3 >= k, "an unknown e-mail answers in {u:?}, a known one in {k:?}: the difference tells them apart");

    let (email, pw, secret) = &known[0];
    let code = seldesk_accounts::staff::totp_code(secret, app.clock_now()).expect("code");
    accounts.authenticate_staff(email, pw, &code, "127.0.0.1").await.expect("first use");
    let again = accounts.authenticate_staff(email, pw, &code, "127.0.0.1").await;
    assert!(
        matches!(&again, Err(seldesk_accounts::AccountError::Forbidden(m)) if m.contains("already used")),
        "{again:?}"
    );
    app.clock.advance(time::Duration::seconds(30));
    let next = seldesk_accounts::staff::totp_code(secret, app.clock_now()).expect("code");
    accounts.authenticate_staff(email, pw, &next, "127.0.0.1").await.expect("the next code works");
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn after_sign_in_the_browser_only_ever_goes_to_a_page_of_this_site() {
    let app = spawn_app().await;
    app.sign_up("next@example.com", PW).await;
    for (next, want) in [
        ("/%09/evil.example", "/account"),
        ("//evil.example", "/account"),
        ("/%5Cevil.example", "/account"),
        ("/a%0Ab", "/account"),
        ("/%0D%0ASet-Cookie:x=1", "/account"),
        ("https://evil.example/", "/account"),
        ("/databases", "/databases"),
    ] {
        let (cookie, csrf) = app.csrf("/signin").await;
        let body = format!("csrf={csrf}&email=next%40example.com&password={}&next={next}", PW.replace(' ', "+"));
        let r = app
            .client
            .post(app.url("/signin"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("signin");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.headers()["location"], want, "{next}");
    }
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn signed_in_pages_are_never_cached_and_https_cookies_are_secure() {
    let app = spawn_app().await;
    app.sign_up("cache@example.com", PW).await;
    let session = app.web_session("cache@example.com", PW).await;
    for path in ["/account", "/databases", "/account/requests"] {
        let r = app.client.get(app.url(path)).header("cookie", &session).send().await.expect("page");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            r.headers().get("cache-control").map(|v| v.to_str().unwrap_or_default()),
            Some("no-store"),
            "{path}"
        );
    }
    app.stop().await;

    let app = crate::helpers::spawn_app_with(
        |c| c.public_url = Some("https://seldesk.example".into()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let r = app.get("/signin").await;
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    assert!(!cookies.is_empty());
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn a_first_visit_sets_one_form_token_that_the_form_accepts() {
    let app = spawn_app().await;
    for path in ["/signin", "/signup", "/contact", "/forgot-password", "/cookies"] {
        let r = app.get(path).await;
        let tokens: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|c| c.starts_with("seldesk_csrf="))
            .map(str::to_string)
            .collect();
        assert_eq!(tokens.len(), 1, "{path}: {tokens:?}");
        let value = tokens[0].split(';').next().expect("pair").split_once('=').expect("kv").1.to_string();
        let html = r.text().await.expect("html");
        let in_forms = html.matches("name=\"csrf\" value=\"").count();
        assert!(in_forms >= 1, "{path} has a form");
        assert_eq!(
            html.matches(&format!("name=\"csrf\" value=\"{value}\"")).count(),
            in_forms,
            "{path}: every form carries the cookie's token"
        );
    }
    app.stop().await;
}

// promise: DB-2, SEC-1
#[tokio::test]
async fn console_queries_cannot_take_the_servers_memory() {
    let server = crate::helpers::ServerProcess::start(&[]).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let token = server.customer_token(&client, "mem@example.com", PW).await;
    let db = server.create_database(&client, &token, json!({ "name": "memory" })).await;
    let sql_url = url(&format!("/api/v1/databases/{db}/sql"));
    let before = server.peak_rss_kib();
    let rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)";
    let queries = [
        // 9 MB a value: refused at once.
        format!("{rows} SELECT hex(randomblob(9000000)) FROM n"),
        // 900 KB a value, 90 MB in all: stopped at the result cap.
        format!("{rows} SELECT printf('%.*c', 900000, 'x') FROM n"),
        // Many large columns in one row.
        format!("SELECT {}", vec!["printf('%.*c', 900000, 'y')"; 40].join(", ")),
    ];
    let mut set = tokio::task::JoinSet::new();
    for round in 0..4 {
        for q in &queries {
            let (client, sql_url, token, q) = (client.clone(), sql_url.clone(), token.clone(), q.clone());
            set.spawn(async move {
                let r = client.post(sql_url).bearer_auth(token).json(&json!({ "sql": q })).send().await.expect("sql");
                let status = r.status();
                (round, status, r.text().await.expect("body"))
            });
        }
    }
    while let Some(r) = set.join_next().await {
        let (round, status, body) = r.expect("task");
        assert!(status.is_client_error(), "round {round}: {status} with {} bytes", body.len());
        assert!(body.len() < 10_000, "an error, not the data");
        assert!(body.contains("MB") || body.contains("MiB"), "the message names the limit: {body}");
    }
    let peak = server.peak_rss_kib();
    assert!(peak < before + 400 * 1024, "peak memory went from {before} KiB to {peak} KiB");
}

// promise: SEC-1
#[tokio::test]
async fn a_rewritten_or_shortened_audit_trail_is_caught_with_the_key_and_the_vault_anchors() {
    let app = spawn_app().await;
    let s = app.app().services();
    for i in 0..12 {
        s.audit
            .record(&seldesk_domain::Actor::System, "test.action", Some("db:1"), None, json!({ "i": i }))
            .await
            .expect("record");
    }
    let url = app.database_url();
    let verify = || crate::helpers::cli_run(&["audit", "verify", "--database-url", &url, "--data", app.data_dir()]);
    // A backup run anchors the head in both backup regions.
    let (code, out, err) =
        crate::helpers::cli_run(&["backup", "run", "--all", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{out}{err}");
    for region in ["in", "sg"] {
        let anchors = app.data.path().join("backups").join(region).join("objects/anchors/audit");
        assert!(std::fs::read_dir(&anchors).is_ok_and(|d| d.count() >= 1), "an anchor in {region}");
    }
    let (code, out, err) = verify();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact") && out.contains("anchors"), "{out}");

    // 1. Delete the newest entries and move the head back: the chain agrees
    // with itself, the anchor does not.
    let last: i64 = sqlx::query_scalar("SELECT seq FROM audit_head").fetch_one(app.db().pool()).await.expect("seq");
    let keep = last - 3;
    let hash: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
        .bind(keep)
        .fetch_one(app.db().pool())
        .await
        .expect("hash");
    sqlx::query("DELETE FROM audit_log WHERE seq > $1").bind(keep).execute(app.db().pool()).await.expect("delete");
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2")
        .bind(keep)
        .bind(&hash)
        .execute(app.db().pool())
        .await
        .expect("head");
    assert!(s.audit.verify().await.expect("verify").is_intact(), "the chain alone cannot tell");
    let (code, out, err) = verify();
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("ends at entry {keep}")) && out.contains("newest entries were removed"), "{out}");

    // 2. Edit an entry and recompute every later hash and the head without
    // the key: the first edited entry is named.
    type Entry = (i64, i64, String, String, Option<String>, Option<String>, String);
    let rows: Vec<Entry> = sqlx::query_as(
        "SELECT seq, at, actor, action, subject, target, details FROM audit_log WHERE seq >= 5 ORDER BY seq",
    )
    .fetch_all(app.db().pool())
    .await
    .expect("rows");
    let mut prev: String = sqlx::query_scalar("SELECT prev_hash FROM audit_log WHERE seq = 5")
        .fetch_one(app.db().pool())
        .await
        .expect("prev");
    for (seq, at, actor, action, subject, target, details) in rows {
        let details = if seq == 5 { "{\"i\":999}".to_string() } else { details };
        let mut h = blake3::Hasher::new();
        for part in [
            seq.to_string().as_str(),
            at.to_string().as_str(),
            &actor,
            &action,
            subject.as_deref().unwrap_or("\u{0}"),
            target.as_deref().unwrap_or("\u{0}"),
            &details,
            &prev,
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let hash = h.finalize().to_hex().to_string();
        sqlx::query("UPDATE audit_log SET details = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&details)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(app.db().pool())
            .await
            .expect("rewrite");
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1").bind(&prev).execute(app.db().pool()).await.expect("head");
    let (code, out, err) = verify();
    assert_eq!(code, 1, "{out}{err}");
    let first = out.lines().find(|l| l.contains("TAMPERED")).unwrap_or_default();
    assert!(first.contains("entry 5 was edited"), "{out}");
    app.stop().await;
}

/// An export's entries stored again without compression, with the central
/// directory claiming `extra` more bytes for `entry` than it holds.
fn lying_sizes(export: &[u8], entry: &str, extra: u32) -> Vec<u8> {
    let entries = unzip(export);
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in &entries {
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        out.start_file(name.as_str(), options).expect("entry");
        out.write_all(data).expect("write");
    }
    let mut bytes = out.finish().expect("zip").into_inner();
    let sig = [0x50, 0x4b, 0x01, 0x02];
    let mut at = 0;
    let mut patched = false;
    while let Some(pos) = bytes[at..].windows(4).position(|w| w == sig) {
        let h = at + pos;
        let name_len = u16::from_le_bytes([bytes[h + 28], bytes[h + 29]]) as usize;
        if &bytes[h + 46..h + 46 + name_len] == entry.as_bytes() {
            for field in [h + 20, h + 24] {
                let v = u32::from_le_bytes(bytes[field..field + 4].try_into().expect("4")) + extra;
                bytes[field..field + 4].copy_from_slice(&v.to_le_bytes());
            }
            patched = true;
        }
        at = h + 4;
    }
    assert!(patched, "{entry} found in the central directory");
    bytes
}

// promise: DB-5
#[tokio::test]
async fn an_archive_whose_headers_lie_about_a_size_is_refused_naming_the_entry() {
    let app = spawn_app().await;
    let (t, id) = customer_db(&app, "liar@example.com", "liar").await;
    attach(&app, &t, &id, b"attached").await;
    let export = export_of(&app, &t, &id).await;
    for (i, extra) in [40u32, 5000].into_iter().enumerate() {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/import?name=liar-{i}&region=in")))
            .bearer_auth(&t)
            .body(lying_sizes(&export, "dump.sql", extra))
            .send()
            .await
            .expect("import");
        let status = r.status();
        let body = r.text().await.expect("body");
        assert!(status.is_client_error(), "{extra}: {status} {body}");
        assert!(body.contains("dump.sql") || body.contains("damaged"), "{body}");
    }
    app.stop().await;
}

/// Every spelling of three test card numbers the outside probe tried.
fn card_spellings() -> Vec<String> {
    let mut out = Vec::new();
    for card in ["4111111111111111", "5500000000000004", "378282246310005"] {
        let groups: Vec<String> = if card.len() == 15 {
            vec![card[..4].into(), card[4..10].into(), card[10..].into()]
        } else {
            card.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect()
        };
        for sep in [" ", "-", ".", "  ", "\u{a0}", "/", "_", "\u{2009}", "\u{200b}"] {
            out.push(groups.join(sep));
        }
        out.push(card.to_string());
        out.push(card.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + 0xff10).unwrap_or(c)).collect());
    }
    out
}

/// Files under `dir` whose bytes hold any of `needles`.
fn files_holding(dir: &std::path::Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_slice()) {
                        found.push(format!("{} holds {:?}", p.display(), String::from_utf8_lossy(n)));
                    }
                }
            }
        }
    }
    found
}

// promise: PAY-2
#[tokio::test]
async fn card_numbers_in_any_spelling_are_refused_or_redacted_and_never_reach_the_data_folder() {
    let app = spawn_app().await;
    let spellings = card_spellings();
    // Each batch of attempts from its own address, so per-address limits
    // never answer for the guard.
    let mut next_ip = 0u32;
    let mut client = || {
        next_ip += 1;
        client_from(&format!("127.0.{}.{}", 10 + next_ip / 200, 1 + next_ip % 200))
    };
    app.sign_up("holder@example.com", PW).await;
    let token = app.token("holder@example.com", PW).await;
    let (_, posting, _) = crate::careers::open_posting(&app, "Card Guard Engineer").await;
    let mut refused = 0;
    for (i, card) in spellings.iter().enumerate() {
        let c = client();
        let email = format!("{}@example.org", card.replace(' ', ""));
        let signups = [
            json!({ "name": card, "company": "C", "email": format!("s{i}a@example.com"), "password": PW }),
            json!({ "name": "N", "company": card, "email": format!("s{i}b@example.com"), "password": PW }),
            json!({ "name": "N", "company": "C", "email": email, "password": PW }),
            json!({ "name": "N", "company": "C", "email": format!("s{i}c@example.com"), "password": PW, "phone": card }),
            json!({ "name": "N", "company": "C", "email": format!("s{i}d@example.com"), "password": PW, "invoice_by_post": true, "address": card }),
        ];
        for body in &signups {
            let r = c.post(app.url("/api/v1/accounts")).json(body).send().await.expect("signup");
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "sign-up {body}");
            refused += 1;
        }
        for field in ["name", "company", "address", "email"] {
            let value = if field == "email" { email.clone() } else { card.clone() };
            let (status, body) = call(&app, Method::PATCH, "/api/v1/me", &token, Some(json!({ field: value }))).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "PATCH /me {field} {card:?}: {body}");
            refused += 1;
        }
        let (status, body) =
            call(&app, Method::POST, "/api/v1/databases", &token, Some(json!({ "name": card.replace(' ', "-") })))
                .await;
        assert!(status.is_client_error(), "database name {card:?}: {body}");
        for (field, value) in [
            ("name", card.clone()),
            ("email", email.clone()),
            ("letter", card.clone()),
            ("cv_name", format!("{card}.pdf")),
        ] {
            let mut body = json!({
                "name": "Asha Rao", "email": format!("a{i}@example.in"), "phone": "+91 80 1234 5678",
                "letter": "Ten years of billing systems.", "cv_name": "cv.pdf",
                "cv_base64": data_encoding::BASE64.encode(crate::careers::PDF),
            });
            body[field] = json!(value);
            let r = c
                .post(app.url(&format!("/api/v1/careers/postings/{posting}/applications")))
                .json(&body)
                .send()
                .await
                .expect("apply");
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "application {field} {card:?}");
            refused += 1;
        }
        let r = c
            .post(app.url(&format!("/api/v1/upgrades?name={}", percent(&format!("{card}.zip")))))
            .bearer_auth(&token)
            .body(b"PK\x03\x04 not really".to_vec())
            .send()
            .await
            .expect("upgrade");
        assert!(r.status().is_client_error(), "upgrade name {card:?}");
        // Headers are recorded, not refused: they are stored redacted.
        let r = c
            .post(app.url("/api/v1/auth/token"))
            .header("user-agent", format!("Mozilla/5.0 ({card}) Firefox/{card}"))
            .json(&json!({ "email": "holder@example.com", "password": PW }))
            .send()
            .await
            .expect("sign in");
        assert_eq!(r.status(), StatusCode::OK);
        let r = c
            .get(app.url(&format!("/privacy/{}", percent(card))))
            .header("referer", format!("https://search.example/?q={card}"))
            .header("accept-language", card.replace(' ', "-"))
            .header("user-agent", format!("Mozilla/5.0 Chrome/{card}"))
            .send()
            .await
            .expect("visit");
        assert!(r.status().as_u16() < 500);
    }
    assert!(refused >= 13 * spellings.len(), "{refused}");
    app.app().visits().flush().await;
    // What the person asked to be kept: the data folder holds no card in
    // any of the spellings (the digits alone, or as sent).
    let mut needles: Vec<Vec<u8>> =
        ["4111111111111111", "5500000000000004", "378282246310005"].iter().map(|c| c.as_bytes().to_vec()).collect();
    needles.extend(spellings.iter().filter(|s| s.chars().count() > 16).map(|s| s.as_bytes().to_vec()));
    let found = files_holding(app.data.path(), &needles);
    assert!(found.is_empty(), "{found:#?}");
    app.stop().await;
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'.' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Regions whose folder holds database `id` (or a staging copy of it).
fn regions_holding(data: &std::path::Path, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for region in std::fs::read_dir(data.join("tenants")).into_iter().flatten().flatten() {
        let name = region.file_name().to_string_lossy().into_owned();
        if region.path().join(id).exists() || region.path().join(format!(".incoming-{id}")).exists() {
            out.push(name);
        }
    }
    out.sort();
    out
}

// promise: DB-8
#[tokio::test]
async fn a_move_killed_at_any_moment_ends_in_exactly_one_region_serving_at_once() {
    let mut server = crate::helpers::ServerProcess::start(&[("SELDESK_JOBS__POLL_MS", "20")]).await;
    let client = reqwest::Client::new();
    let url = |base: &str, p: &str| format!("{base}{p}");
    client
        .post(url(&server.base, "/api/v1/accounts"))
        .json(&json!({ "name": "Mover", "company": "M", "email": "mover@example.com", "password": PW }))
        .send()
        .await
        .expect("signup");
    let token: serde_json::Value = client
        .post(url(&server.base, "/api/v1/auth/token"))
        .json(&json!({ "email": "mover@example.com", "password": PW }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token").to_string();
    let db: serde_json::Value = client
        .post(url(&server.base, "/api/v1/databases"))
        .bearer_auth(&token)
        .json(&json!({ "name": "mover", "region": "uk" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = db["id"].as_str().expect("id").to_string();
    {
        // Enough rows that a copy takes a moment to check.
        let conn =
            rusqlite::Connection::open(server.dir.path().join("tenants/uk").join(&id).join("db.sqlite")).expect("open");
        conn.execute_batch("BEGIN").expect("begin");
        for i in 0..30_000u32 {
            conn.execute(
                "INSERT INTO contacts (name, notes, created_at, updated_at) VALUES (?1, ?2, 'now', 'now')",
                rusqlite::params![format!("Person {i}"), blake3::hash(&i.to_le_bytes()).to_hex().repeat(6)],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    let mut expected = 30_000u64;
    let targets = ["sg", "in", "uk"];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut killed_mid_move = 0usize;
    let mut window = 200u64;
    // The full drill (docs/customer-databases.md): SELDESK_MOVE_DRILL_ROUNDS=60.
    let rounds: usize = std::env::var("SELDESK_MOVE_DRILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    for round in 0..rounds {
        let to = targets[round % 3];
        let r = client
            .post(url(&server.base, &format!("/api/v1/databases/{id}/move")))
            .bearer_auth(&token)
            .json(&json!({ "region": to }))
            .send()
            .await
            .expect("move");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "round {round}");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Anywhere from before the job starts to after the switch: the
        // window follows how long moves take on this machine, so about
        // half the kills land during one however fast or loaded it is.
        tokio::time::sleep(std::time::Duration::from_millis(seed % window.max(2))).await;
        let before: serde_json::Value = client
            .get(url(&server.base, &format!("/api/v1/databases/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        let mid_move = before["status"] == "moving";
        killed_mid_move += usize::from(mid_move);
        window = if mid_move { window + window / 4 } else { window * 2 / 3 };
        server.kill_and_restart();
        let restarted = std::time::Instant::now();
        // Serving again, in exactly one region, within seconds.
        let region = loop {
            let r = client
                .get(url(&server.base, &format!("/api/v1/databases/{id}")))
                .bearer_auth(&token)
                .send()
                .await
                .expect("show");
            let d: serde_json::Value = r.json().await.expect("json");
            if d["status"] == "active" && d.get("moving").is_none() {
                break d["region"].as_str().expect("region").to_string();
            }
            assert!(restarted.elapsed() < std::time::Duration::from_secs(20), "round {round}: still {d}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let serving = restarted.elapsed();
        assert_eq!(
            regions_holding(server.dir.path(), &id),
            vec![region.clone()],
            "round {round}: one copy, in {region}"
        );
        let r = client
            .post(url(&server.base, &format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&token)
            .json(&json!({ "name": format!("After round {round}") }))
            .send()
            .await
            .expect("write");
        assert_eq!(r.status(), StatusCode::CREATED, "round {round}: writes work");
        expected += 1;
        let r = client
            .post(url(&server.base, &format!("/api/v1/databases/{id}/sql")))
            .bearer_auth(&token)
            .json(&json!({ "sql": "SELECT count(*) FROM contacts" }))
            .send()
            .await
            .expect("count");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["rows"][0][0], json!(expected), "round {round}: every row is there");
        let conn =
            rusqlite::Connection::open(server.dir.path().join("tenants").join(&region).join(&id).join("db.sqlite"))
                .expect("open");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok", "round {round}");
        eprintln!(
            "round {round}: to {to}, killed {}, in {region}, serving {serving:?} after the restart",
            if mid_move { "mid-move" } else { "after it" }
        );
    }
    assert!(killed_mid_move * 3 >= rounds, "only {killed_mid_move} of {rounds} kills landed during a move");
}

// promise: DB-1
#[tokio::test]
async fn a_database_cannot_grow_past_its_plans_quota_and_a_refused_write_leaves_no_large_wal() {
    let app = crate::helpers::spawn_app_with(
        |c| c.databases.trial_quota_mb = 3,
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let (t, id) = customer_db(&app, "quota@example.com", "quota").await;
    let sql_path = format!("/api/v1/databases/{id}/sql");
    let sql = |q: &str| call(&app, Method::POST, &sql_path, &t, Some(json!({ "sql": q })));
    // 80 MB in one statement, then row by row: both stop at 3 MB.
    let (status, body) = sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO contacts (name, notes, created_at, updated_at) SELECT 'Bulk', hex(randomblob(400000)), 'now', 'now' FROM n",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("3 MB")), "the limit is named: {body}");
    let wal = app.data.path().join("tenants/in").join(&id).join("db.sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(wal_len < 1_000_000, "the rolled-back write left a WAL of {wal_len} bytes");
    let mut last = StatusCode::OK;
    for _ in 0..10 {
        (last, _) = sql("INSERT INTO contacts (name, notes, created_at, updated_at) VALUES ('Row', hex(randomblob(400000)), 'now', 'now')").await;
        if last != StatusCode::OK {
            break;
        }
    }
    assert_eq!(last, StatusCode::PAYLOAD_TOO_LARGE);
    let file = app.data.path().join("tenants/in").join(&id).join("db.sqlite");
    assert!(std::fs::metadata(&file).expect("db").len() <= 3_000_000 + 65_536);
    // Room is made by deleting; the contacts still work.
    let (status, _) = sql("DELETE FROM contacts WHERE name IN ('Bulk', 'Row')").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(json!({ "name": "Fits" })))
            .await;
    assert_eq!(status, StatusCode::CREATED);
    // The control panel shows the limit.
    let session = app.web_session("quota@example.com", PW).await;
    let page =
        app.client.get(app.url(&format!("/databases/{id}"))).header("cookie", &session).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(html.contains(" MB of 3 MB"), "{html}");
    app.stop().await;
}

// promise: UPG-2
#[tokio::test]
async fn upgrade_uploads_have_a_daily_allowance_and_a_failed_upload_is_erased_at_once() {
    let app = crate::helpers::spawn_app_with(
        |c| {
            c.upgrades.uploads_per_day = 3;
            c.upgrades.upload_mb_per_day = 1;
        },
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    app.sign_up("uploader@example.com", PW).await;
    let t = app.token("uploader@example.com", PW).await;
    let upload = |name: &str, body: Vec<u8>| {
        let req = app.client.post(app.url(&format!("/api/v1/upgrades?name={name}"))).bearer_auth(&t).body(body);
        async move {
            let r = req.send().await.expect("upload");
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // Larger than what is left today: refused while it streams, nothing kept.
    let (status, body) = upload("big.sqlite", vec![7u8; 1_200_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("today")), "{body}");
    let incoming = app.data.path().join("upgrade/incoming");
    assert_eq!(std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0), 0, "nothing of it stays");
    // A broken SQLite file is taken, fails, and its file goes at once.
    let mut broken = b"SQLite format 3\0".to_vec();
    broken.extend(vec![0u8; 4096]);
    let (status, req) = upload("broken.sqlite", broken.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{req}");
    app.run_jobs().await;
    let id = req["id"].as_str().expect("id");
    let shown: serde_json::Value = app
        .client
        .get(app.url(&format!("/api/v1/upgrades/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json");
    assert_eq!(shown["status"], "failed", "{shown}");
    assert!(shown["error"].as_str().is_some_and(|e| !e.is_empty()), "the reason stays visible: {shown}");
    assert_eq!(shown["source_present"], false);
    assert!(!app.data.path().join("upgrade/uploads").join(id).exists(), "the failed upload's file is erased at once");
    // Three uploads a day at most.
    for _ in 0..2 {
        let (status, body) = upload("again.sqlite", broken.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = upload("one-more.sqlite", broken.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("3 uploads")), "{body}");
    app.clock.advance(time::Duration::hours(25));
    let fresh = app.token("uploader@example.com", PW).await;
    let r = app
        .client
        .post(app.url("/api/v1/upgrades?name=tomorrow.sqlite"))
        .bearer_auth(&fresh)
        .body(broken)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "a new day, a new allowance");
    app.stop().await;
}

// promise: DB-4
#[tokio::test]
async fn names_with_nul_or_text_direction_characters_are_refused() {
    let app = spawn_app().await;
    let (t, id) = customer_db(&app, "names@example.com", "names").await;
    for name in ["Evil\u{0}Name", "Invoice\u{202e}fdp.exe", "Tab\tName", "Isolate\u{2066}x"] {
        let (status, body) =
            call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(json!({ "name": name })))
                .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}: {body}");
    }
    let (_, c) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(json!({ "name": "Plain" })))
            .await;
    let cid = c["id"].as_i64().expect("cid");
    for name in ["a%00b.txt", "report%E2%80%AEfdp.exe"] {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts/{cid}/attachments?name={name}")))
            .bearer_auth(&t)
            .body(b"x".to_vec())
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
    }
    app.stop().await;
}

// promise: BRW-2, ACC-3
#[tokio::test]
async fn behind_a_trusted_proxy_the_client_address_comes_from_its_headers_and_from_no_one_else() {
    for (trusted, want) in [(vec!["127.0.0.1".to_string()], "203.0.113.0"), (vec![], "127.0.0.0")] {
        let app = crate::helpers::spawn_app_with(
            |c| c.trusted_proxies = trusted.clone(),
            seldesk_domain::Policy::builtin().expect("policy"),
        )
        .await;
        app.sign_up("proxied@example.com", PW).await;
        let r = app
            .client
            .post(app.url("/api/v1/auth/token"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
            .json(&json!({ "email": "proxied@example.com", "password": PW }))
            .send()
            .await
            .expect("sign in");
        assert_eq!(r.status(), StatusCode::OK);
        let ips: Vec<String> =
            sqlx::query_scalar("SELECT ip FROM signins").fetch_all(app.db().pool()).await.expect("signins");
        assert_eq!(ips, vec![want.to_string()], "trusted: {trusted:?}");
        app.stop().await;
    }
}

/// Every state-changing route of the site is behind the CSRF layer: the
/// routes are read from the web crate's source (a route added tomorrow is
/// walked too), and each is sent, by a signed-in browser with its CSRF
/// cookie, without the token: everything outside the listed exemptions is
/// refused with 403 before its handler runs. With the token the layer lets
/// a form through, whether the token comes in the body, the query or a
/// header.
#[tokio::test]
async fn every_state_changing_route_outside_the_exemptions_needs_the_csrf_token() {
    let app = crate::helpers::spawn_app().await;
    app.sign_up("walker@example.com", PW).await;
    let session = app.web_session("walker@example.com", PW).await;
    let token = session.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src");
    let mut walked = Vec::new();
    for entry in std::fs::read_dir(&source).expect("web sources") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        walked.extend(state_changing_routes(&text));
    }
    walked.sort();
    walked.dedup();
    assert!(walked.len() > 80, "the walk found too few routes to be trusted: {walked:?}");
    let mut checked = 0;
    for (verb, path) in &walked {
        if seldesk_web::auth::csrf_exempt(path) {
            continue;
        }
        let r = app
            .client
            .request(verb.parse().expect("method"), app.url(path))
            .header("cookie", &session)
            .form(&[("name", "x")])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 403, "{verb} {path} ran without the CSRF token");
        checked += 1;
    }
    assert!(checked > 50, "{checked}");
    // The same token through each of the three ways gets past the layer.
    for (query, header, body) in [(None, None, Some(&token)), (Some(&token), None, None), (None, Some(&token), None)] {
        let mut form: Vec<(&str, &str)> = vec![("name", "x")];
        if let Some(t) = body {
            form.push(("csrf", t));
        }
        let mut req = app.client.post(app.url("/signout")).header("cookie", &session).form(&form);
        if let Some(t) = query {
            req = req.query(&[("csrf", t)]);
        }
        if let Some(t) = header {
            req = req.header("x-csrf-token", t);
        }
        assert_eq!(req.send().await.expect("send").status(), 303, "signed out with the token");
    }
    app.stop().await;
}

/// `(METHOD, path)` of each `.route("path", …post(…)…)` in Rust source, the
/// path's `{parameters}` left as plain words.
fn state_changing_routes(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(".route(") {
        let rest = &text[at + ".route(".len()..];
        // Paths given as constants are the internal listener's (exempt).
        let Some(literal) = rest.trim_start().strip_prefix('"') else { continue };
        let Some(len) = literal.find('"') else { continue };
        let path = literal[..len].replace(['{', '}'], "");
        // The route's arguments end where its parenthesis closes.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(rest.len(), |(i, _)| i);
        let args = &rest[..end];
        for verb in ["post", "put", "patch", "delete"] {
            let called = args
                .match_indices(&format!("{verb}("))
                .any(|(i, _)| !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
            if called {
                found.push((verb.to_uppercase(), path.clone()));
            }
        }
    }
    found
}
