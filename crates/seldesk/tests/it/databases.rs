use std::io::Write;

use reqwest::StatusCode;
use serde_json::json;
use time::Duration;

use crate::helpers::{TestApp, cli_run, spawn_app};

const PW: &str = "violet tractor lemon";

async fn customer(app: &TestApp, email: &str) -> String {
    app.sign_up(email, PW).await;
    app.token(email, PW).await
}

pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

use reqwest::Method;

// promise: DB-1, RES-1
#[tokio::test]
async fn create_places_one_file_per_database_in_its_region_folder() {
    let app = spawn_app().await;
    let t = customer(&app, "owner@example.in").await;
    let (status, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "rao-sales", "region": "in" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{db}");
    assert_eq!(db["status"], "active");
    assert_eq!(db["region"], "in");
    assert_eq!(db["schema_version"], seldesk_tenants::files::SCHEMA_VERSION);
    let trial_ends = time::OffsetDateTime::parse(
        db["trial_ends"].as_str().expect("trial"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("date");
    let days = ((trial_ends - app.clock_now()).as_seconds_f64() / 86_400.0).round();
    assert_eq!(days, 15.0, "trial length from the policy file");
    let id = db["id"].as_str().expect("id").to_string();
    let dir = app.data.path().join("tenants").join("in").join(&id);
    assert!(dir.join("db.sqlite").is_file() && dir.join("files").is_dir());
    for other in ["sg", "uk"] {
        assert!(!app.data.path().join("tenants").join(other).join(&id).exists(), "nothing under {other}");
    }
    for (body, want) in [
        (json!({ "name": "rao-sales" }), StatusCode::CONFLICT),
        (json!({ "name": "Bad Name!" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "name": "ok-name", "region": "mars" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "name": "ok-name", "plan": "platinum" }), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, e) = call(&app, Method::POST, "/api/v1/databases", &t, Some(body.clone())).await;
        assert_eq!(status, want, "{body}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    assert_eq!(list.as_array().expect("list").len(), 1);
    app.stop().await;
}

// promise: DB-4, DB-2
#[tokio::test]
async fn contacts_are_managed_by_the_owner_and_deletes_are_real() {
    let app = spawn_app().await;
    let t = customer(&app, "crm@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "crm" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let base = format!("/api/v1/databases/{id}/contacts");
    let (status, company) =
        call(&app, Method::POST, &base, &t, Some(json!({ "name": "Acme Ltd", "is_company": true }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, person) = call(&app, Method::POST, &base, &t, Some(json!({ "name": "Zanele Secretname", "email": "z@acme.example", "company_id": company["id"], "tags": ["vip"] }))).await;
    assert_eq!(status, StatusCode::CREATED, "{person}");
    let pid = person["id"].as_i64().expect("id");
    let (_, found) = call(&app, Method::GET, &format!("{base}?q=vip"), &t, None).await;
    assert_eq!(found.as_array().expect("list").len(), 1);
    let (status, updated) =
        call(&app, Method::PATCH, &format!("{base}/{pid}"), &t, Some(json!({ "phone": "+27 21 555 0100" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["phone"], "+27 21 555 0100");
    let (status, _) = call(&app, Method::POST, &base, &t, Some(json!({ "email": "no-name@example.com" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(&app, Method::DELETE, &format!("{base}/{pid}"), &t, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, Method::GET, &format!("{base}/{pid}"), &t, None).await.0, StatusCode::NOT_FOUND);
    let region = db["region"].as_str().expect("region");
    let dir = app.data.path().join("tenants").join(region).join(&id);
    for f in ["db.sqlite", "db.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(f)) {
            assert!(!String::from_utf8_lossy(&bytes).contains("Secretname"), "deleted contact lingers in {f}");
        }
    }
    app.stop().await;
}

// promise: DB-2, SEC-1
#[tokio::test]
async fn no_account_reaches_another_accounts_database() {
    let app = spawn_app().await;
    let alice = customer(&app, "alice@example.com").await;
    let mallory = customer(&app, "mallory@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &alice, Some(json!({ "name": "alice-db" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let (_, c) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{id}/contacts"),
        &alice,
        Some(json!({ "name": "Private Person" })),
    )
    .await;
    let cid = c["id"].as_i64().expect("cid");
    // Mallory tries the real id and many made-up ones on every route.
    let mut ids = vec![id.clone()];
    for i in 0..20u64 {
        ids.push(format!("{:032x}", u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0123_4567_89ab_cdef));
    }
    ids.push("../../etc".into());
    for target in &ids {
        for (method, path, body) in [
            (Method::GET, format!("/api/v1/databases/{target}"), None),
            (Method::GET, format!("/api/v1/databases/{target}/contacts"), None),
            (Method::POST, format!("/api/v1/databases/{target}/contacts"), Some(json!({ "name": "x" }))),
            (Method::GET, format!("/api/v1/databases/{target}/contacts/{cid}"), None),
            (Method::PATCH, format!("/api/v1/databases/{target}/contacts/{cid}"), Some(json!({ "name": "x" }))),
            (Method::DELETE, format!("/api/v1/databases/{target}/contacts/{cid}"), None),
            (Method::POST, format!("/api/v1/databases/{target}/sql"), Some(json!({ "sql": "SELECT * FROM contacts" }))),
            (Method::GET, format!("/api/v1/databases/{target}/export"), None),
            (Method::POST, format!("/api/v1/databases/{target}/cancel"), None),
            (Method::POST, format!("/api/v1/databases/{target}/reactivate"), None),
            (Method::DELETE, format!("/api/v1/databases/{target}?confirm=alice-db"), None),
        ] {
            let (status, body) = call(&app, method.clone(), &path, &mallory, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
            assert!(!body.to_string().contains("Private Person"));
        }
    }
    let (_, list) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts"), &alice, None).await;
    assert_eq!(list.as_array().expect("list").len(), 1, "Alice's data is untouched");
    app.stop().await;
}

#[tokio::test]
async fn the_sql_console_runs_in_a_sandbox() {
    let app = spawn_app().await;
    let t = customer(&app, "sql@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "sqlbox" }))).await;
    let id = db["id"].as_str().expect("id");
    let path = format!("/api/v1/databases/{id}/sql");
    let (status, r) = call(&app, Method::POST, &path, &t, Some(json!({ "sql": "INSERT INTO contacts (name, created_at, updated_at) VALUES (?1, 'now', 'now')", "params": ["Via SQL"] }))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["changed"], 1);
    let (_, r) = call(&app, Method::POST, &path, &t, Some(json!({ "sql": "SELECT name FROM contacts" }))).await;
    assert_eq!(r["rows"], json!([["Via SQL"]]));
    for bad in ["ATTACH DATABASE 'x.db' AS x", "SELECT load_extension('evil')", "PRAGMA journal_mode=DELETE"] {
        let (status, r) = call(&app, Method::POST, &path, &t, Some(json!({ "sql": bad }))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {r}");
    }
    app.stop().await;
}

fn zip_entries(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
    let mut out = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).expect("read");
        out.insert(f.name().map(|n| n.to_string()).unwrap_or_default(), v);
    }
    out
}

// promise: DB-5
#[tokio::test]
async fn an_interrupted_export_download_resumes_from_the_same_archive() {
    let app = spawn_app().await;
    let t = customer(&app, "resume@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "big", "region": "in" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let contact = |i: usize| json!({ "name": format!("Person {i}"), "notes": "x".repeat(2000 + i) });
    for i in 0..40 {
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(contact(i))).await;
    }
    let url = app.url(&format!("/api/v1/databases/{id}/export"));
    let get = |range: Option<&str>, if_range: Option<&str>| {
        let mut rb = app.client.get(&url).bearer_auth(&t);
        if let Some(r) = range {
            rb = rb.header("range", r);
        }
        if let Some(v) = if_range {
            rb = rb.header("if-range", v);
        }
        rb.send()
    };
    let full = get(None, None).await.expect("export");
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().expect("etag").to_string();
    let whole = full.bytes().await.expect("bytes").to_vec();
    assert!(whole.len() > 1000);

    // The database changes after the download started: the resumed part still
    // comes from the archive the first part came from.
    call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(contact(99))).await;
    let cut = whole.len() / 3;
    let part = get(Some(&format!("bytes={cut}-")), Some(&etag)).await.expect("resume");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().expect("cr"),
        format!("bytes {cut}-{}/{}", whole.len() - 1, whole.len())
    );
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &whole[cut..]);

    // `curl -C -` sends no If-Range: the latest archive is resumed.
    let part = get(Some(&format!("bytes={cut}-{}", cut + 9)), None).await.expect("resume");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("bytes").as_ref(), &whole[cut..cut + 10]);

    // An unknown archive: the whole, fresh archive (with the new contact), not a piece.
    let fresh = get(Some("bytes=10-"), Some("\"00000000000000000000000000000000\"")).await.expect("fresh");
    assert_eq!(fresh.status(), 200);
    assert_ne!(fresh.headers()["etag"].to_str().expect("etag"), etag);
    let fresh = fresh.bytes().await.expect("bytes");
    let dump = String::from_utf8(zip_entries(&fresh)["dump.sql"].clone()).expect("text");
    assert!(dump.contains("Person 99"));

    // Past the end: 416 naming the size.
    let r = get(Some(&format!("bytes={}-", whole.len() + 5)), Some(&etag)).await.expect("416");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"].to_str().expect("cr"), format!("bytes */{}", whole.len()));

    // Another account cannot resume this archive.
    let other = customer(&app, "other-resume@example.com").await;
    let r = app
        .client
        .get(&url)
        .bearer_auth(&other)
        .header("range", "bytes=0-")
        .header("if-range", &etag)
        .send()
        .await
        .expect("other");
    assert_eq!(r.status(), 404);
}

// promise: DB-5
#[tokio::test]
async fn export_is_a_complete_archive_that_imports_into_a_new_database() {
    let app = spawn_app().await;
    let t = customer(&app, "export@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "source", "region": "sg" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    for i in 0..50 {
        call(
            &app,
            Method::POST,
            &format!("/api/v1/databases/{id}/contacts"),
            &t,
            Some(json!({ "name": format!("Person {i}"), "notes": "it's \"quoted\"" })),
        )
        .await;
    }
    let r = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/export")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let bytes = r.bytes().await.expect("bytes");
    let entries = zip_entries(&bytes);
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
    assert_eq!(manifest["schema_version"], seldesk_tenants::files::SCHEMA_VERSION);
    assert_eq!(manifest["database_name"], "source");
    let dump = String::from_utf8(entries["dump.sql"].clone()).expect("text");
    // The dump loads into a plain SQLite database, as the sqlite3 tool would.
    let check = rusqlite::Connection::open_in_memory().expect("db");
    check.execute_batch(&dump).expect("dump loads");
    let n: i64 = check.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 50);
    // The archive is kept (for resuming) only inside the database's own
    // region folder, and nowhere else in the data folder (RES-1).
    let kept: Vec<_> = std::fs::read_dir(app.data.path().join("tenants/sg").join(&id))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".export"))
        .collect();
    assert_eq!(kept.len(), 1, "one archive kept for resuming: {kept:?}");

    let r = app
        .client
        .post(app.url("/api/v1/databases/import?name=copy&region=sg"))
        .bearer_auth(&t)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    let copy = list.as_array().expect("list").iter().find(|d| d["name"] == "copy").expect("copy").clone();
    let (_, contacts) =
        call(&app, Method::GET, &format!("/api/v1/databases/{}/contacts", copy["id"].as_str().expect("id")), &t, None)
            .await;
    assert_eq!(contacts.as_array().expect("contacts").len(), 50);
    assert!(contacts.to_string().contains(r#"it's \"quoted\""#));
    app.stop().await;
}

fn archive(entries: &[(&str, &[u8])], manifest: serde_json::Value) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default();
        for (name, data) in entries {
            z.start_file(*name, o).expect("start");
            z.write_all(data).expect("write");
        }
        z.start_file("manifest.json", o).expect("start");
        z.write_all(manifest.to_string().as_bytes()).expect("write");
        z.finish().expect("finish");
    }
    buf.into_inner()
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let app = spawn_app().await;
    let t = customer(&app, "hostile@example.com").await;
    let evil_sql = b"CREATE TABLE seldesk_meta (key TEXT, value TEXT); INSERT INTO seldesk_meta VALUES ('schema_version','1'); ATTACH DATABASE '/tmp/x.db' AS x;";
    let sum = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not a zip at all".to_vec(), "not a zip"),
        (
            archive(
                &[("../escape.sql", b"x")],
                json!({ "format": "seldesk-export/1", "seldesk_version": "0", "schema_version": 1, "database_name": "x", "created": "", "checksums": { "../escape.sql": sum(b"x") } }),
            ),
            "leave the archive",
        ),
        (
            archive(
                &[("dump.sql", b"SELECT 1;")],
                json!({ "format": "seldesk-export/1", "seldesk_version": "0", "schema_version": 1, "database_name": "x", "created": "", "checksums": { "dump.sql": "0000" } }),
            ),
            "checksum",
        ),
        (
            archive(
                &[("dump.sql", evil_sql)],
                json!({ "format": "seldesk-export/1", "seldesk_version": "0", "schema_version": 1, "database_name": "x", "created": "", "checksums": { "dump.sql": sum(evil_sql) } }),
            ),
            "could not be loaded",
        ),
        (
            archive(
                &[("dump.sql", b"")],
                json!({ "format": "something-else", "seldesk_version": "0", "schema_version": 1, "database_name": "x", "created": "", "checksums": {} }),
            ),
            "not from a Seldesk export",
        ),
    ];
    for (bytes, says) in cases {
        let r = app
            .client
            .post(app.url("/api/v1/databases/import?name=imported"))
            .bearer_auth(&t)
            .body(bytes)
            .send()
            .await
            .expect("import");
        let status = r.status();
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(status, 422, "{says}: {body}");
        assert!(body["message"].as_str().unwrap_or_default().contains(says), "{says}: {body}");
    }
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    assert!(list.as_array().expect("list").is_empty());
    assert!(
        !std::path::Path::new("/tmp/x.db").exists()
            || std::fs::metadata("/tmp/x.db").map(|m| m.len()).unwrap_or(0) == 0
    );
    let uk = app.data.path().join("tenants/uk");
    let left: Vec<_> =
        std::fs::read_dir(&uk).map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.iter().all(|n| n == "incoming"), "nothing half-imported: {left:?}");
    app.stop().await;
}

// promise: DB-7, DB-9, DB-6
#[tokio::test]
async fn cancel_deactivates_reactivate_restores_and_the_grace_period_ends_in_destruction() {
    let app = spawn_app().await;
    let t = customer(&app, "cancel@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "short-lived" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    crate::helpers::paid(&app, &id).await;
    let region = db["region"].as_str().expect("region").to_string();
    let (status, d) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/cancel"), &t, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["status"], "deactivated");
    let until = d["reactivate_until"].as_str().expect("until").to_string();
    let (status, e) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts"), &t, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(e["message"].as_str().expect("message").contains("Reactivate it before"), "{e}");
    let (_, d) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/reactivate"), &t, None).await;
    assert_eq!(d["status"], "active");
    call(&app, Method::POST, &format!("/api/v1/databases/{id}/cancel"), &t, None).await;
    let _ = until;
    let engine = &app.app().services().retention;
    app.clock.advance(Duration::weeks(3) - Duration::days(1));
    engine.run(&seldesk_domain::Actor::System, false).await.expect("run");
    // API tokens last a day: sign in again after the clock moved.
    let t = app.token("cancel@example.com", PW).await;
    assert_eq!(
        call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await.0,
        StatusCode::OK,
        "kept until the grace period ends"
    );
    app.clock.advance(Duration::days(1));
    let t = app.token("cancel@example.com", PW).await;
    let (status, _) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/reactivate"), &t, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "too late to reactivate");
    engine.run(&seldesk_domain::Actor::System, false).await.expect("run");
    assert_eq!(call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await.0, StatusCode::NOT_FOUND);
    assert!(!app.data.path().join("tenants").join(&region).join(&id).exists(), "files destroyed");

    // A trial that ends follows the same path.
    let (_, trial) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "a-trial" }))).await;
    let tid = trial["id"].as_str().expect("id").to_string();
    app.clock.advance(Duration::days(15));
    let t = app.token("cancel@example.com", PW).await;
    app.run_jobs().await;
    app.app().services().databases.expire_trials().await.expect("expire");
    let (_, d) = call(&app, Method::GET, &format!("/api/v1/databases/{tid}"), &t, None).await;
    assert_eq!(d["status"], "deactivated", "an ended trial is deactivated");

    // Removal is immediate and needs the name.
    let (_, keep) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "remove-me" }))).await;
    let rid = keep["id"].as_str().expect("id").to_string();
    let (status, _) = call(&app, Method::DELETE, &format!("/api/v1/databases/{rid}?confirm=wrong"), &t, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, r) = call(&app, Method::DELETE, &format!("/api/v1/databases/{rid}?confirm=remove-me"), &t, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(r["backups_hold_it_until"].is_string());
    assert!(!app.data.path().join("tenants").join(keep["region"].as_str().expect("r")).join(&rid).exists());
    let (_, me) = call(&app, Method::GET, "/api/v1/me", &t, None).await;
    let log = app
        .app()
        .services()
        .erasure_log
        .for_subject(&format!("person:{}", me["id"].as_str().expect("id")))
        .await
        .expect("log");
    assert!(log.iter().any(|e| e.category == "customer_database" && e.reason == "database_removed"));
    assert!(log.iter().any(|e| e.category == "customer_database" && e.reason == "retention"));
    app.stop().await;
}

// promise: DB-8, RES-1
#[tokio::test]
async fn move_copies_verifies_switches_and_erases_the_source_without_losing_writes() {
    let app = spawn_app().await;
    let t = customer(&app, "mover@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "traveller", "region": "uk" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    for i in 0..30 {
        call(
            &app,
            Method::POST,
            &format!("/api/v1/databases/{id}/contacts"),
            &t,
            Some(json!({ "name": format!("Client {i}") })),
        )
        .await;
    }
    let (status, e) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/move"), &t, Some(json!({ "region": "uk" }))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "already there: {e}");
    let (status, d) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/move"), &t, Some(json!({ "region": "sg" }))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{d}");
    assert_eq!(d["status"], "moving");
    // The database keeps working while it is copied: a write during the
    // move is taken, and the copy catches up with it.
    let (status, e) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{id}/contacts"),
        &t,
        Some(json!({ "name": "Written during the move" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    app.run_jobs().await;
    let (_, d) = call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await;
    assert_eq!(d["status"], "active");
    assert_eq!(d["region"], "sg");
    assert!(app.data.path().join("tenants/sg").join(&id).join("db.sqlite").is_file());
    assert!(!app.data.path().join("tenants/uk").join(&id).exists(), "the source is erased");
    let (_, contacts) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts"), &t, None).await;
    assert_eq!(contacts.as_array().expect("list").len(), 31, "nothing lost, the write during the move included");
    let (status, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{id}/contacts"),
        &t,
        Some(json!({ "name": "Late write" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "writes work where it lives now");
    app.stop().await;
}

/// The CSRF cookie and token of a fresh page, for staff form posts.
fn csrf_of(cookie: &str) -> String {
    cookie.split("; ").find_map(|c| c.strip_prefix("seldesk_csrf=")).expect("csrf cookie").to_string()
}

// promise: DB-3, STF-1
#[tokio::test]
async fn support_access_needs_a_reason_and_ticket_is_read_only_time_boxed_audited_and_revocable() {
    let app = spawn_app().await;
    let t = customer(&app, "helpme@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "needs-help" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(json!({ "name": "Secret Client" })))
        .await;
    // Tickets that do not open this database: another customer's, one of
    // the owner's about nothing in particular, one about another database.
    let other = customer(&app, "someone-else@example.com").await;
    let (_, other_db) = call(&app, Method::POST, "/api/v1/databases", &other, Some(json!({ "name": "theirs" }))).await;
    let theirs = other_db["id"].as_str().expect("id").to_string();
    let request = |token: String, body: serde_json::Value| {
        let app = &app;
        async move { call(app, Method::POST, "/api/v1/me/requests", &token, Some(body)).await }
    };
    let (_, foreign) =
        request(other.clone(), json!({ "kind": "question", "message": "Help me", "database": theirs })).await;
    let (_, general) = request(t.clone(), json!({ "kind": "question", "message": "A general question" })).await;
    let (_, elsewhere) =
        request(t.clone(), json!({ "kind": "question", "message": "Not this one", "database": theirs })).await;
    assert!(elsewhere["error"].is_string(), "a customer cannot name another's database: {elsewhere}");
    let (_, ticket) =
        request(t.clone(), json!({ "kind": "question", "message": "My contacts page is empty", "database": id })).await;
    assert_eq!(ticket["database"], id.as_str(), "{ticket}");
    let ticket = ticket["id"].as_i64().expect("ticket").to_string();

    let support = crate::helpers::staff_session(&app, "sup@seldesk.com", "support").await;
    let csrf = csrf_of(&support);
    let grant = |database: String, ticket: String, reason: &'static str, hours: &'static str, cookie: String| {
        let (client, url, csrf) = (app.client.clone(), app.url("/staff/support"), csrf_of(&cookie));
        async move {
            let r = client
                .post(url)
                .header("cookie", &cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("database", database.as_str()),
                    ("ticket", ticket.as_str()),
                    ("reason", reason),
                    ("hours", hours),
                ])
                .send()
                .await
                .expect("grant");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let (status, _) =
        grant(id.clone(), "999999".into(), "Customer reports empty contacts page", "2", support.clone()).await;
    assert_eq!(status, 422, "a ticket is required");
    for (t, why) in [(&foreign, "another customer's ticket"), (&general, "a ticket about no database")] {
        let n = t["id"].as_i64().expect("ticket").to_string();
        let (status, page) = grant(id.clone(), n, "Customer reports empty contacts page", "2", support.clone()).await;
        assert_eq!(status, 422, "{why}: {page}");
    }
    let (status, _) = grant(id.clone(), ticket.clone(), "because", "2", support.clone()).await;
    assert_eq!(status, 422, "a reason is required");
    let (status, _) =
        grant(id.clone(), ticket.clone(), "Customer reports empty contacts page", "12", support.clone()).await;
    assert_eq!(status, 422, "time-boxed");
    let hr = crate::helpers::staff_session(&app, "hr@seldesk.com", "hr").await;
    let (status, _) = grant(id.clone(), ticket.clone(), "Customer reports empty contacts page", "2", hr).await;
    assert_eq!(status, 403, "least privilege: hr has no business here");
    let (status, page) =
        grant(id.clone(), ticket.clone(), "Customer reports empty contacts page", "2", support.clone()).await;
    assert_eq!(status, 200, "{page}");
    let grant_id: i64 = sqlx::query_scalar("SELECT id FROM support_grants ORDER BY id DESC LIMIT 1")
        .fetch_one(app.db().pool())
        .await
        .expect("grant");

    let query = |sql: &'static str| {
        let (client, url, cookie, csrf) =
            (app.client.clone(), app.url(&format!("/staff/support/{grant_id}")), support.clone(), csrf.clone());
        async move {
            let r = client
                .post(url)
                .header("cookie", &cookie)
                .form(&[("csrf", csrf.as_str()), ("sql", sql)])
                .send()
                .await
                .expect("query");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let (status, page) = query("SELECT name FROM contacts").await;
    assert_eq!(status, 200);
    assert!(page.contains("Secret Client"));
    let (status, _) = query("DELETE FROM contacts").await;
    assert_eq!(status, 422, "read-only");
    // ...unless the owner approves more: then changes go through, audited.
    let (status, g) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/access/{grant_id}/approve"), &t, None).await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(g["scope"], "write");
    let (status, page) = query("UPDATE contacts SET notes = 'fixed by support' WHERE name = 'Secret Client'").await;
    assert_eq!(status, 200, "{page}");
    let (_, c) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts"), &t, None).await;
    assert_eq!(c[0]["notes"], "fixed by support", "{c}");
    let (status, _) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/access/{grant_id}/approve"), &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the owner approves");

    let (_, log) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/access-log"), &t, None).await;
    assert_eq!(log["grants"][0]["reason"], "Customer reports empty contacts page");
    let entries = log["entries"].as_array().expect("entries");
    assert!(entries.iter().any(|e| e["action"] == "database.support_access_granted"));
    assert!(entries.iter().any(|e| e["action"] == "database.support_changes_approved"));
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "database.support_query" && e["details"]["sql"] == "SELECT name FROM contacts")
    );

    let (status, _) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/access/{grant_id}/revoke"), &t, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = query("SELECT name FROM contacts").await;
    assert_eq!(status, 403, "revoked");

    let (status, _) = grant(id.clone(), ticket.clone(), "Second look at the contacts page", "1", support.clone()).await;
    assert_eq!(status, 200);
    let second: i64 = sqlx::query_scalar("SELECT id FROM support_grants ORDER BY id DESC LIMIT 1")
        .fetch_one(app.db().pool())
        .await
        .expect("grant");
    app.clock.advance(Duration::minutes(61));
    let r = app
        .client
        .post(app.url(&format!("/staff/support/{second}")))
        .header("cookie", &support)
        .form(&[("csrf", csrf.as_str()), ("sql", "SELECT 1")])
        .send()
        .await
        .expect("query");
    assert_eq!(r.status(), 403, "expired after its hour");
    app.stop().await;
}

// promise: DB-4, DB-5
#[tokio::test]
async fn attachments_are_stored_with_the_database_exported_imported_and_deleted_with_their_contact() {
    let app = spawn_app().await;
    let t = customer(&app, "files@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "with-files", "region": "in" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let (_, c) =
        call(&app, Method::POST, &format!("/api/v1/databases/{id}/contacts"), &t, Some(json!({ "name": "Has Files" })))
            .await;
    let cid = c["id"].as_i64().expect("cid");
    let content = b"%PDF-1.4 signed contract".to_vec();
    let up = |name: &str, body: Vec<u8>| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts/{cid}/attachments?name={name}")))
            .bearer_auth(&t)
            .body(body);
        async move { req.send().await.expect("upload") }
    };
    let r = up("..%2F..%2Fcontract.pdf", content.clone()).await;
    assert_eq!(r.status(), 201);
    let att: serde_json::Value = r.json().await.expect("json");
    assert_eq!(att["file_name"], "contract.pdf", "no path survives in the name");
    let aid = att["id"].as_i64().expect("aid");
    assert_eq!(up("big.bin", vec![0u8; 26 * 1024 * 1024]).await.status(), 413);
    let (_, list) =
        call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts/{cid}/attachments"), &t, None).await;
    assert_eq!(list.as_array().expect("list").len(), 1);
    let got = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/attachments/{aid}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), content);
    let files_dir = app.data.path().join("tenants/in").join(&id).join("files");
    assert_eq!(std::fs::read_dir(&files_dir).expect("files").count(), 1, "stored in the database's own folder");

    let export = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/export")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("zip");
    let entries = zip_entries(&export);
    assert!(entries.iter().any(|(k, v)| k.starts_with("files/") && *v == content), "the export holds the file");
    let r = app
        .client
        .post(app.url("/api/v1/databases/import?name=files-copy&region=in"))
        .bearer_auth(&t)
        .body(export.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 201);
    let copy: serde_json::Value = r.json().await.expect("json");
    let copy_id = copy["id"].as_str().expect("id");
    let got = app
        .client
        .get(app.url(&format!("/api/v1/databases/{copy_id}/attachments/{aid}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("download");
    assert_eq!(got.bytes().await.expect("bytes").to_vec(), content, "the copy restores the file");

    let (status, _) = call(&app, Method::DELETE, &format!("/api/v1/databases/{id}/contacts/{cid}"), &t, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(std::fs::read_dir(&files_dir).expect("files").count(), 0, "the file goes with its contact");
    app.stop().await;
}

// promise: DB-7
#[tokio::test]
async fn owners_are_reminded_once_a_week_before_destruction() {
    let app = spawn_app().await;
    let t = customer(&app, "remind@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "fading" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    call(&app, Method::POST, &format!("/api/v1/databases/{id}/cancel"), &t, None).await;
    let remind = || async {
        app.app()
            .services()
            .queue
            .enqueue(seldesk_jobs::NewJob::new(seldesk_tenants::JOB_REMIND))
            .await
            .expect("enqueue");
        app.run_jobs().await;
    };
    app.clock.advance(Duration::days(13));
    remind().await;
    assert!(app.mail_to("remind@example.com", "will be destroyed").is_none(), "too early");
    app.clock.advance(Duration::days(1));
    remind().await;
    let mail = app.mail_to("remind@example.com", "will be destroyed").expect("reminder");
    assert!(mail.contains("fading") && mail.contains("export a full backup"));
    remind().await;
    assert_eq!(app.outbox().iter().filter(|m| m.contains("will be destroyed")).count(), 1, "once");
    app.stop().await;
}

// promise: DB-8
#[tokio::test]
async fn the_create_form_preselects_the_data_center_nearest_the_visitor() {
    let app = spawn_app().await;
    app.sign_up("near@example.in", PW).await;
    let both = app.web_session("near@example.in", PW).await;
    for (lang, region, says) in [
        ("hi-IN,hi;q=0.9", "in", "nearest to your country (IN"),
        ("en-SG", "sg", "nearest to your country (SG"),
        // In French, and saying so in French.
        ("fr", "uk", "le centre de données par défaut"),
    ] {
        let body = app
            .client
            .get(app.url("/databases"))
            .header("cookie", &both)
            .header("accept-language", lang)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(body.contains(&format!("<option value=\"{region}\" selected>")), "{lang} → {region}");
        assert!(body.contains(says), "{lang}: the page says why");
    }
    app.stop().await;
}

// promise: DB-5, SEC-1
#[tokio::test]
async fn operators_export_from_the_cli_with_a_reason_and_it_is_audited() {
    let app = spawn_app().await;
    let t = customer(&app, "cli-export@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "ops", "region": "uk" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    for i in 0..20 {
        call(
            &app,
            Method::POST,
            &format!("/api/v1/databases/{id}/contacts"),
            &t,
            Some(json!({ "name": format!("Client {i}") })),
        )
        .await;
    }
    let url = app.database_url();
    let (code, out, err) = cli_run(&["db", "list", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id) && out.contains("ops") && out.contains("uk"), "{out}");

    let target = app.data.path().join("ops-export.zip");
    let target_s = target.to_str().expect("path");
    let base = ["db", "export", &id, "--database-url", &url, "--data", app.data_dir(), "--output", target_s];
    // No reason worth the name: refused, nothing written.
    let (code, _, err) = cli_run(&[&base[..], &["--reason", "x"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("--reason"), "{err}");
    assert!(!target.exists());
    let (code, out, err) = cli_run(&[&base[..], &["--reason", "ticket 4711: customer asked for a copy"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exported ops"), "{out}");
    let bytes = std::fs::read(&target).expect("archive");
    let dump = String::from_utf8(zip_entries(&bytes)["dump.sql"].clone()).expect("text");
    assert!(dump.contains("Client 19"));
    // Never overwrites.
    let (code, _, err) = cli_run(&[&base[..], &["--reason", "ticket 4711 again"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    // An unknown id names the problem.
    let (code, _, err) = cli_run(&[
        "db",
        "export",
        "nope",
        "--database-url",
        &url,
        "--data",
        app.data_dir(),
        "--output",
        "/tmp/x.zip",
        "--reason",
        "ticket 1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("`nope`"), "{err}");

    let audit = app.app().services().audit.for_target(&format!("db:{id}")).await.expect("audit");
    let e = audit.iter().find(|e| e.action == "database.exported").expect("export audited");
    assert_eq!(e.actor, "operator");
    assert!(e.details.to_string().contains("ticket 4711"), "{:?}", e.details);
}

/// Replaces a database's file with one at schema version 1 holding `names`,
/// as a database made before versions existed would be.
fn make_version_1(app: &TestApp, region: &str, id: &str, names: &[&str]) {
    let path = app.data.path().join("tenants").join(region).join(id).join("db.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let conn = seldesk_tenants::files::create_at_version(&path, 1).expect("v1");
    for n in names {
        conn.execute("INSERT INTO contacts (name, created_at, updated_at) VALUES (?1, 'now', 'now')", [n])
            .expect("insert");
    }
}

#[tokio::test]
async fn an_older_database_is_upgraded_in_place_with_a_way_back() {
    let app = spawn_app().await;
    let t = customer(&app, "upgrade@example.com").await;
    let (_, db) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "legacy", "region": "in" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    assert_eq!(db["schema_version"], seldesk_tenants::files::SCHEMA_VERSION, "new databases start at the newest");
    make_version_1(&app, "in", &id, &["Asha Rao", "Lee Wong"]);
    sqlx::query("UPDATE databases SET schema_version = 1 WHERE id = $1")
        .bind(&id)
        .execute(app.db().pool())
        .await
        .expect("v1");
    // The page offers the upgrade.
    let session = app.web_session("upgrade@example.com", PW).await;
    let page = app.client.get(app.url(&format!("/databases/{id}"))).header("cookie", &session).send().await.expect("p");
    assert!(page.text().await.expect("body").contains("an upgrade is available"), "the header points to it");
    let page = app
        .client
        .get(app.url(&format!("/databases/{id}?tab=settings")))
        .header("cookie", &session)
        .send()
        .await
        .expect("p");
    assert!(page.text().await.expect("body").contains("id=\"upgrade-offer\""));

    // Its export says version 1; importing it gives a database at the newest version.
    let archive = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/export")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("bytes");
    let manifest: serde_json::Value = serde_json::from_slice(&zip_entries(&archive)["manifest.json"]).expect("m");
    assert_eq!(manifest["schema_version"], 1);
    let r = app
        .client
        .post(app.url("/api/v1/databases/import?name=legacy-copy&region=in"))
        .bearer_auth(&t)
        .body(archive.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), 201);
    let copy: serde_json::Value = r.json().await.expect("json");
    assert_eq!(copy["schema_version"], seldesk_tenants::files::SCHEMA_VERSION);
    let (_, rows) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{}/sql", copy["id"].as_str().expect("id")),
        &t,
        Some(json!({ "sql": "SELECT family_name FROM contacts WHERE given_name = 'Lee'" })),
    )
    .await;
    assert!(rows.to_string().contains("Wong"), "{rows}");

    // A test upgrade first: an upgraded copy to open and check; the original stays.
    let (status, copy) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/test-upgrade"), &t, None).await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["name"], "legacy-upgrade-test");
    assert_eq!(copy["test_of"], id.as_str());
    assert_eq!(copy["schema_version"], seldesk_tenants::files::SCHEMA_VERSION);
    let copy_id = copy["id"].as_str().expect("id").to_string();
    let (_, rows) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{copy_id}/sql"),
        &t,
        Some(json!({ "sql": "SELECT given_name FROM contacts ORDER BY id" })),
    )
    .await;
    assert!(rows.to_string().contains("Asha"), "{rows}");
    let (_, original) = call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await;
    assert_eq!(original["schema_version"], 1, "the original is untouched");
    let page =
        app.client.get(app.url(&format!("/databases/{copy_id}"))).header("cookie", &session).send().await.expect("p");
    assert!(page.text().await.expect("body").contains("id=\"test-copy\""));

    // A step that cannot apply (a table of that name already exists) fails cleanly.
    let file = app.data.path().join("tenants/in").join(&id).join("db.sqlite");
    rusqlite::Connection::open(&file).expect("open").execute_batch("CREATE TABLE opportunities (x TEXT)").expect("t");
    let (status, body) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/upgrade"), &t, None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().expect("message").contains("exactly as it was"), "{body}");
    let (_, shown) = call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await;
    assert_eq!(shown["schema_version"], 1);
    let (_, contacts) = call(&app, Method::GET, &format!("/api/v1/databases/{id}/contacts"), &t, None).await;
    assert_eq!(contacts.as_array().expect("list").len(), 2, "data untouched");

    rusqlite::Connection::open(&file).expect("open").execute_batch("DROP TABLE opportunities").expect("drop");
    let (status, body) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/upgrade"), &t, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["from"].as_i64(), body["to"].as_i64()), (Some(1), Some(seldesk_tenants::files::SCHEMA_VERSION)));
    let (_, rows) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{id}/sql"),
        &t,
        Some(json!({ "sql": "SELECT given_name, family_name FROM contacts ORDER BY id" })),
    )
    .await;
    assert!(rows.to_string().contains("Asha") && rows.to_string().contains("Wong"), "{rows}");
    let (status, _) = call(&app, Method::POST, &format!("/api/v1/databases/{id}/upgrade"), &t, None).await;
    assert_eq!(status, 409, "already the newest");
    let dir = app.data.path().join("tenants/in").join(&id);
    assert!(!dir.join(".before-upgrade.sqlite").exists(), "the pre-upgrade copy is not left behind");
    let audit = app.app().services().audit.for_target(&format!("db:{id}")).await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "database.upgraded"),
        "{:?}",
        audit.iter().map(|e| &e.action).collect::<Vec<_>>()
    );
}

// promise: DB-3
#[tokio::test]
async fn the_request_form_names_the_database_support_may_look_into() {
    let app = spawn_app().await;
    let t = customer(&app, "form-ask@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "ask-about-me" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let session = app.web_session("form-ask@example.com", PW).await;
    let html = app.client.get(app.url("/account/requests")).header("cookie", &session).send().await;
    let html = html.expect("page").text().await.expect("html");
    assert!(html.contains(&format!("<option value=\"{id}\">ask-about-me</option>")), "{html}");
    let post = |database: &str| {
        let csrf = csrf_of(&session);
        let req = app.client.post(app.url("/account/requests")).header("cookie", &session).form(&[
            ("csrf", csrf.as_str()),
            ("kind", "question"),
            ("message", "Why is my report empty?"),
            ("database", database),
        ]);
        async move { req.send().await.expect("post").status() }
    };
    assert_eq!(post("not-mine").await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(post(&id).await, StatusCode::SEE_OTHER);
    let linked: Option<String> = sqlx::query_scalar("SELECT database_id FROM tickets ORDER BY id DESC LIMIT 1")
        .fetch_one(app.db().pool())
        .await
        .expect("ticket");
    assert_eq!(linked.as_deref(), Some(id.as_str()));
    app.stop().await;
}

// promise: DB-1, BAK-1
/// Group commit answers a write only once it is committed: a SIGKILL in
/// the middle of a write load loses no acknowledged write and leaves the
/// database intact (docs/customer-databases.md, "Durability").
#[tokio::test]
async fn a_sigkill_during_a_write_load_loses_no_acknowledged_write() {
    let mut server = crate::helpers::ServerProcess::start(&[]).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let token = server.customer_token(&client, "kill@example.com", PW).await;
    let id = server.create_database(&client, &token, json!({ "name": "killed", "region": "uk" })).await;
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (client, token, acknowledged) = (client.clone(), token.clone(), acknowledged.clone());
        let url = format!("{base}/api/v1/databases/{id}/contacts");
        writers.spawn(async move {
            for n in 0.. {
                let name = format!("Writer{w} Row{n}");
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .timeout(std::time::Duration::from_secs(5))
                    .json(&json!({ "name": name, "notes": "x".repeat(200) }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 201 => acknowledged.lock().expect("lock").push(name),
                    Ok(r) => panic!("a write failed before the kill: {}", r.status()),
                    // The server is gone.
                    Err(_) => break,
                }
            }
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let _ = server.child.kill(); // SIGKILL, in the middle of the load
    let _ = server.child.wait();
    while writers.join_next().await.is_some() {}
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() > 100, "the load ran: {} writes", acknowledged.len());

    let file = server.dir.path().join("tenants").join("uk").join(&id).join("db.sqlite");
    {
        let conn = rusqlite::Connection::open(&file).expect("open");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok");
        let mut stmt = conn.prepare("SELECT name FROM contacts").expect("stmt");
        let present: std::collections::HashSet<String> =
            stmt.query_map([], |r| r.get(0)).expect("rows").map(|r| r.expect("row")).collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|n| !present.contains(*n)).collect();
        assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), lost.first());
    }
    // And the server comes back over it and serves the database.
    server.kill_and_restart();
    let r = client
        .get(format!("{}/api/v1/databases/{id}/contacts?q=Writer0%20Row0&limit=1", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
}
