//! The Database Upgrade service (UPG-1…UPG-4).

use std::io::Write;

use reqwest::StatusCode;
use time::Duration;

use crate::helpers::{TestApp, spawn_app};

const PW: &str = "violet tractor lemon";

/// A version-1 Seldesk database with `n` contacts, as a SQLite file and as
/// the export archive of the hosted service.
pub(crate) fn version_1_database(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("old.sqlite");
    let conn = seldesk_tenants::files::create_at_version(&path, 1).expect("v1");
    conn.execute_batch("BEGIN").expect("begin");
    for i in 0..n {
        conn.execute(
            "INSERT INTO contacts (name, email, created_at, updated_at) VALUES (?1, ?2, 'now', 'now')",
            rusqlite::params![format!("Mei Tan {i}"), format!("mei{i}@example.sg")],
        )
        .expect("insert");
    }
    conn.execute_batch("COMMIT").expect("commit");
    path
}

async fn upload(app: &TestApp, token: &str, name: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/upgrades?name={name}")))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

async fn show(app: &TestApp, token: &str, id: &str) -> serde_json::Value {
    app.client
        .get(app.url(&format!("/api/v1/upgrades/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("show")
        .json()
        .await
        .expect("json")
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

// promise: UPG-1, UPG-2, UPG-3, UPG-4
#[tokio::test]
async fn an_old_database_is_upgraded_apart_from_production_and_its_data_erased_on_time() {
    let app = spawn_app().await;
    app.sign_up("upgrader@example.com", PW).await;
    let token = app.token("upgrader@example.com", PW).await;
    let scratch = tempfile::tempdir().expect("tmp");
    let old = version_1_database(scratch.path(), 20_000);
    let (status, req) = upload(&app, &token, "old.sqlite", std::fs::read(&old).expect("read")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{req}");
    let id = req["id"].as_str().expect("id").to_string();
    assert_eq!(req["status"], "queued");
    let storage = app.data.path().join("upgrade");
    assert!(storage.join("uploads").join(&id).is_file(), "the upload is in the upgrade storage");
    // Sealed at rest: neither the SQLite header nor any row in the clear.
    let at_rest = std::fs::read(storage.join("uploads").join(&id)).expect("upload");
    assert!(at_rest.starts_with(b"SDSEAL1\0"), "sealed upload");
    assert!(!at_rest.windows(8).any(|w| w == b"Mei Tan "), "no contact in the clear");
    assert!(files_under(&storage.join("incoming")).is_empty(), "the plain spool is gone");

    app.run_jobs().await;
    let done = show(&app, &token, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(
        (done["from_version"].as_i64(), done["to_version"].as_i64()),
        (Some(1), Some(seldesk_tenants::files::SCHEMA_VERSION))
    );
    assert_eq!(done["report"]["rows_after"]["contacts"], 20_000);
    assert!(done["report"]["tables_added"].as_array().expect("added").iter().any(|t| t == "opportunities"));
    // UPG-2: the source is gone as soon as the upgrade succeeded.
    assert!(!storage.join("uploads").join(&id).exists());
    assert_eq!(done["source_present"], false);
    let log = app.app().services().erasure_log.since(time::OffsetDateTime::UNIX_EPOCH).await.expect("log");
    assert!(log.iter().any(|e| e.record == format!("upload:{id}") && e.reason == "upgrade_finished"));

    // The result downloads as an export archive at the newest version.
    let r =
        app.client.get(app.url(&format!("/api/v1/upgrades/{id}/result"))).bearer_auth(&token).send().await.expect("dl");
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.expect("bytes");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
    let mut manifest = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("manifest.json").expect("manifest"), &mut manifest).expect("read");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest["schema_version"], seldesk_tenants::files::SCHEMA_VERSION);
    let result_at_rest = std::fs::read(storage.join("results").join(format!("{id}.zip"))).expect("result");
    assert!(result_at_rest.starts_with(b"SDSEAL1\0") && !result_at_rest.starts_with(b"PK"), "sealed result");
    assert!(files_under(&storage.join("work")).is_empty(), "no plain copy left after the upgrade");
    // A result altered in storage is never served as if it were right.
    let mut altered = result_at_rest.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x40;
    std::fs::write(storage.join("results").join(format!("{id}.zip")), &altered).expect("alter");
    let r =
        app.client.get(app.url(&format!("/api/v1/upgrades/{id}/result"))).bearer_auth(&token).send().await.expect("dl");
    assert!(r.bytes().await.is_err(), "the download breaks off instead of serving altered bytes");
    std::fs::write(storage.join("results").join(format!("{id}.zip")), &result_at_rest).expect("restore");

    // UPG-4: nothing of it ever lands in production storage, and production
    // data never lands in the upgrade storage.
    let tenant_files = files_under(&app.data.path().join("tenants"));
    assert!(tenant_files.iter().all(|p| !p.to_string_lossy().contains(&id)), "{tenant_files:?}");
    let (_, db) = {
        let r = app
            .client
            .post(app.url("/api/v1/databases"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": "hosted", "region": "uk" }))
            .send()
            .await
            .expect("create");
        (r.status(), r.json::<serde_json::Value>().await.expect("json"))
    };
    let hosted = db["id"].as_str().expect("id");
    assert!(files_under(&storage).iter().all(|p| !p.to_string_lossy().contains(hosted)));

    // UPG-3: the result goes at 4 months after the last successful upgrade.
    let run =
        || async { app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("run") };
    app.clock.advance(Duration::days(100));
    run().await;
    assert!(storage.join("results").join(format!("{id}.zip")).is_file(), "kept inside 4 months");
    app.clock.advance(Duration::days(30));
    run().await;
    assert!(!storage.join("results").join(format!("{id}.zip")).exists(), "erased after 4 months");
    let token = app.token("upgrader@example.com", PW).await;
    let r = app.client.get(app.url(&format!("/api/v1/upgrades/{id}"))).bearer_auth(&token).send().await.expect("gone");
    assert_eq!(r.status(), 404);
}

// promise: UPG-1, UPG-2
#[tokio::test]
async fn hostile_uploads_are_refused_without_harm_and_results_deleted_on_request() {
    let app = spawn_app().await;
    app.sign_up("hostile@example.com", PW).await;
    let token = app.token("hostile@example.com", PW).await;
    // Not a database at all: refused at once.
    let (status, body) = upload(&app, &token, "x.pdf", b"%PDF-1.4 not a database".to_vec()).await;
    assert_eq!(status, 422);
    assert!(body["message"].as_str().expect("m").contains("neither"), "{body}");

    let zip_with = |entries: &[(&str, &[u8])]| {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default()).expect("entry");
            z.write_all(data).expect("write");
        }
        z.finish().expect("zip").into_inner()
    };
    let sum = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    let manifest = |checks: serde_json::Value| {
        serde_json::json!({ "format": "seldesk-export/1", "seldesk_version": "0", "schema_version": 1,
            "database_name": "x", "created": "", "checksums": checks })
        .to_string()
    };
    // Path traversal, and SQL that tries to attach a file.
    let traversal = zip_with(&[
        ("manifest.json", manifest(serde_json::json!({ "../../escape.sql": sum(b"x") })).as_bytes()),
        ("../../escape.sql", b"x"),
    ]);
    let evil_sql: &[u8] = b"CREATE TABLE seldesk_meta (key TEXT, value TEXT); INSERT INTO seldesk_meta VALUES ('schema_version','1'); ATTACH DATABASE '/tmp/owned.db' AS x;";
    let evil = zip_with(&[
        ("manifest.json", manifest(serde_json::json!({ "dump.sql": sum(evil_sql) })).as_bytes()),
        ("dump.sql", evil_sql),
    ]);
    // A crafted SQLite file whose trigger would run code of its choosing.
    let scratch = tempfile::tempdir().expect("tmp");
    let crafted = version_1_database(scratch.path(), 3);
    rusqlite::Connection::open(&crafted)
        .expect("open")
        .execute_batch("CREATE TRIGGER t AFTER INSERT ON contacts BEGIN DELETE FROM contacts; END;")
        .expect("trigger");
    // A zip bomb: 64 MiB of zeros packed into about 64 KiB.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let bomb = {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("manifest.json", options).expect("entry");
        z.write_all(manifest(serde_json::json!({ "dump.sql": sum(&zeros) })).as_bytes()).expect("write");
        z.start_file("dump.sql", options).expect("entry");
        z.write_all(&zeros).expect("write");
        z.finish().expect("zip").into_inner()
    };
    assert!(bomb.len() < 1024 * 1024, "packed small: {}", bomb.len());
    let mut ids = Vec::new();
    for (name, body) in [
        ("traversal.zip", traversal),
        ("evil.zip", evil),
        ("crafted.sqlite", std::fs::read(&crafted).expect("read")),
        ("bomb.zip", bomb),
    ] {
        let (status, req) = upload(&app, &token, name, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}: {req}");
        ids.push(req["id"].as_str().expect("id").to_string());
    }
    app.run_jobs().await;
    for (id, why) in ids.iter().zip(["leave the archive", "not authorized", "not authorized", "zip bomb"]) {
        let r = show(&app, &token, id).await;
        assert_eq!(r["status"], "failed", "{r}");
        assert!(r["error"].as_str().expect("error").contains(why), "{why}: {r}");
    }
    assert!(!std::path::Path::new("/tmp/owned.db").exists());
    let storage = app.data.path().join("upgrade");
    assert!(
        !storage.join("work").exists() || files_under(&storage.join("work")).is_empty(),
        "no half-made database left"
    );
    // Failed uploads go after the policy's short period.
    app.clock.advance(Duration::days(8));
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("run");
    assert!(files_under(&storage.join("uploads")).is_empty(), "failed uploads erased");

    // A good upload, deleted at the person's request.
    let fresh = tempfile::tempdir().expect("tmp");
    let old = version_1_database(fresh.path(), 10);
    let token = app.token("hostile@example.com", PW).await;
    let (_, req) = upload(&app, &token, "ok.sqlite", std::fs::read(&old).expect("read")).await;
    let id = req["id"].as_str().expect("id").to_string();
    app.run_jobs().await;
    assert_eq!(show(&app, &token, &id).await["status"], "done");
    let r =
        app.client.delete(app.url(&format!("/api/v1/upgrades/{id}"))).bearer_auth(&token).send().await.expect("del");
    assert_eq!(r.status(), 204);
    assert!(files_under(&storage).iter().all(|p| !p.to_string_lossy().contains(&id)));
    // Another account never sees it.
    app.sign_up("other-upg@example.com", PW).await;
    let other = app.token("other-upg@example.com", PW).await;
    let r =
        app.client.get(app.url(&format!("/api/v1/upgrades/{}", ids[0]))).bearer_auth(&other).send().await.expect("o");
    assert_eq!(r.status(), 404);
}

/// The `seldesk upgrade-worker` children of a process.
fn workers_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The parent pid is the second field after the command's closing parenthesis.
        let ppid =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains("upgrade-worker") {
            out.push(pid);
        }
    }
    out
}

async fn the_worker(parent: u32, not: Option<u32>) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(pid) = workers_of(parent).into_iter().find(|p| Some(*p) != not) {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "an upgrade worker runs beside the server");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn upgrade_through(base: &str, token: &str, body: Vec<u8>) -> serde_json::Value {
    upgrade_named(base, token, "old.sqlite", body).await
}

async fn upgrade_named(base: &str, token: &str, name: &str, body: Vec<u8>) -> serde_json::Value {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/upgrades?name={name}"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state: serde_json::Value = client
            .get(format!("{base}/api/v1/upgrades/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        if state["status"] == "done" || state["status"] == "failed" {
            return state;
        }
        assert!(std::time::Instant::now() < deadline, "the upgrade finished: {state}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

// promise: UPG-4
#[tokio::test]
async fn upgrades_run_in_their_own_process_under_limits_and_the_process_is_restarted() {
    let mut server = crate::helpers::ServerProcess::start(&[("SELDESK_UPGRADES__FILE_LIMIT_MB", "2")]).await;
    let parent = server.child.id();
    let worker = the_worker(parent, None).await;
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{worker}/cmdline")).expect("cmdline")).replace('\0', " ");
    assert!(cmdline.contains("--storage") && cmdline.contains("/upgrade"), "its own storage: {cmdline}");
    let client = reqwest::Client::new();
    let token = server.customer_token(&client, "worker@example.com", PW).await;
    let scratch = tempfile::tempdir().expect("tmp");
    let small = std::fs::read(version_1_database(scratch.path(), 200)).expect("read");
    // A file name is a value for the upgrade process, even one that looks like a flag.
    let done = upgrade_named(&server.base, &token, "--help.sqlite", small.clone()).await;
    assert_eq!(done["status"], "done", "{done}");

    // Past the file-size limit the upgrade fails with a message; the worker lives on.
    let big_dir = tempfile::tempdir().expect("tmp");
    let big = std::fs::read(version_1_database(big_dir.path(), 30_000)).expect("read");
    assert!(big.len() > 2 * 1024 * 1024, "larger than the limit: {}", big.len());
    let refused = upgrade_through(&server.base, &token, big).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"].as_str().is_some_and(|e| e.contains("larger than the service allows (2 MB)")),
        "{refused}"
    );
    assert_eq!(the_worker(parent, None).await, worker, "the same worker, not killed by the limit");

    // A worker that dies is replaced, and upgrades go on.
    let killed = std::process::Command::new("kill").args(["-KILL", &worker.to_string()]).status().expect("kill");
    assert!(killed.success());
    let replacement = the_worker(parent, Some(worker)).await;
    assert_ne!(replacement, worker);
    let again = upgrade_through(&server.base, &token, small).await;
    assert_eq!(again["status"], "done", "{again}");

    // Stopping the server stops its worker.
    assert!(server.terminate().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{replacement}")).exists()
        && std::fs::read_to_string(format!("/proc/{replacement}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(std::time::Instant::now() < deadline, "the worker stopped with the server");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

async fn account_on(base: &str, email: &str) -> String {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/accounts"))
        .json(&serde_json::json!({ "name": "Worker Test", "company": "W", "email": email, "password": PW }))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201);
    let token: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({ "email": email, "password": PW }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    token["token"].as_str().expect("token").to_string()
}

// promise: UPG-4
#[tokio::test]
async fn an_upgrade_that_needs_more_memory_or_time_than_allowed_fails_alone() {
    let server = crate::helpers::ServerProcess::start(&[("SELDESK_UPGRADES__MEMORY_LIMIT_MB", "16")]).await;
    let token = account_on(&server.base, "memory@example.com").await;
    let scratch = tempfile::tempdir().expect("tmp");
    let small = std::fs::read(version_1_database(scratch.path(), 200)).expect("read");
    let refused = upgrade_through(&server.base, &token, small.clone()).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error"].as_str().is_some_and(|e| e.contains("more memory than the service allows (16 MB)")),
        "{refused}"
    );
    drop(server);

    let server = crate::helpers::ServerProcess::start(&[("SELDESK_UPGRADES__TIME_LIMIT_SECS", "1")]).await;
    let token = account_on(&server.base, "slow@example.com").await;
    let big_dir = tempfile::tempdir().expect("tmp");
    let big = std::fs::read(version_1_database(big_dir.path(), 300_000)).expect("read");
    let refused = upgrade_through(&server.base, &token, big).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("took longer than the service allows")), "{refused}");
    let work: Vec<_> = std::fs::read_dir(server.dir.path().join("upgrade").join("work"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "nothing of it is left: {work:?}");
}

// promise: UPG-1
#[tokio::test]
async fn a_database_with_our_exact_schema_is_used_as_is_and_still_checked() {
    let app = spawn_app().await;
    app.sign_up("fastpath@example.com", PW).await;
    let token = app.token("fastpath@example.com", PW).await;
    let dir = tempfile::tempdir().expect("tmp");
    let clean = version_1_database(dir.path(), 500);
    let (status, req) = upload(&app, &token, "clean.sqlite", std::fs::read(&clean).expect("read")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{req}");
    app.run_jobs().await;
    let done = show(&app, &token, req["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["report"]["rows_before"]["contacts"], 500);
    assert_eq!(done["report"]["rows_after"]["contacts"], 500);

    // The same schema, but an attachment naming a file outside: refused on
    // the quick path as on the slow one.
    let tampered_dir = tempfile::tempdir().expect("tmp");
    let tampered = version_1_database(tampered_dir.path(), 3);
    {
        let conn = rusqlite::Connection::open(&tampered).expect("open");
        conn.execute(
            "INSERT INTO attachments (contact_id, file_name, stored_name, size, created_at) VALUES (1, 'x', '../../keys/vault.key', 1, 'now')",
            [],
        )
        .expect("tamper");
    }
    let (_, req) = upload(&app, &token, "tampered.sqlite", std::fs::read(&tampered).expect("read")).await;
    app.run_jobs().await;
    let refused = show(&app, &token, req["id"].as_str().expect("id")).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("did not create")), "{refused}");
    app.stop().await;
}
