//! The vault: encrypted, write-once, replicated backups with retention,
//! check, repair and restores that replay the erasure log (BAK-1…BAK-4).

use serde_json::json;
use time::Duration;

use crate::helpers::{TestApp, cli_run, spawn_app};

const PW: &str = "violet tractor lemon";

/// A customer with a database holding `n` contacts; returns (token, db id).
async fn database_with_contacts(app: &TestApp, email: &str, name: &str, n: usize) -> (String, String) {
    app.sign_up(email, PW).await;
    let t = app.token(email, PW).await;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&t)
        .json(&json!({ "name": name, "region": "uk" }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    for i in 0..n {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&t)
            .json(&json!({ "name": format!("Secret Client {i}"), "email": format!("client{i}@example.com") }))
            .send()
            .await
            .expect("contact");
        assert_eq!(r.status(), 201);
    }
    (t, id)
}

fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let url = app.database_url();
    let mut all: Vec<&str> = vec!["backup"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--database-url", &url, "--data", app.data_dir()]);
    cli_run(&all)
}

fn objects(app: &TestApp, region: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![app.data.path().join("backups").join(region).join("objects")];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.filter_map(Result::ok) {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

// promise: BAK-1, SEC-1
#[tokio::test]
async fn backups_are_encrypted_and_write_once_and_check_names_a_changed_pack() {
    let app = spawn_app().await;
    let (_, id) = database_with_contacts(&app, "bak1@example.com", "books", 30).await;
    let (code, out, err) = cli(&app, &["run", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("books") && out.contains("in and sg"), "{out}");
    assert!(out.contains("control plane"), "the control plane is backed up too: {out}");
    let (code, out, _) = cli(&app, &["list", "--database", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("1 snapshot(s)"), "{out}");
    // The time it was taken, in UTC to the second, every field two digits.
    let snap = &app.app().services().backups.list(Some(&id)).await.expect("list")[0];
    let t = snap.taken_at.to_offset(time::UtcOffset::UTC);
    let shown = format!("{} {:02}:{:02}:{:02}", t.date(), t.hour(), t.minute(), t.second());
    assert!(out.contains(&format!("{id}   {shown}")), "{shown} in {out}");

    // Nothing readable at rest: no contact name in any object.
    let packs: Vec<_> =
        objects(&app, "in").into_iter().filter(|p| p.to_string_lossy().contains(&format!("packs/{id}"))).collect();
    assert!(!packs.is_empty());
    for p in &packs {
        let bytes = std::fs::read(p).expect("pack");
        assert!(!bytes.windows(13).any(|w| w == b"Secret Client"), "{} holds plaintext", p.display());
    }
    // Write-once: the store refuses other bytes under a name, and deletion before the date.
    let s = app.app().services();
    let region = &s.backups.vault().regions()[0];
    let name = packs[0].strip_prefix(region.root().join("objects")).expect("rel").to_string_lossy().to_string();
    assert!(matches!(region.put(&name, b"forged", 0), Err(seldesk_vault::VaultError::Overwrite(_))));
    assert!(matches!(
        region.delete(&name, seldesk_store::to_millis(app.clock_now())),
        Err(seldesk_vault::VaultError::Locked { .. })
    ));

    let (code, out, err) = cli(&app, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("vault OK"), "{out}");
    // The control plane comes back as files for the operator's recovery (a reason is required).
    let snaps = app.app().services().backups.list(Some("control-plane")).await.expect("list");
    let cp = &snaps[0].id[..12];
    let folder = app.data.path().join("recovered");
    let folder_s = folder.to_str().expect("path");
    let (code, _, err) = cli(&app, &["restore", cp, "--to-folder", folder_s, "--reason", ""]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) =
        cli(&app, &["restore", cp, "--to-folder", folder_s, "--reason", "drill: recover the control plane"]);
    assert_eq!(code, 0, "{out}{err}");
    if app.database_url().starts_with("sqlite:") {
        let conn = rusqlite::Connection::open(folder.join("db.sqlite")).expect("open");
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0)).expect("accounts");
        assert_eq!(n, 1);
    } else {
        let dump = std::fs::read(folder.join("control.pgdump")).expect("dump");
        assert!(dump.starts_with(b"PGDMP"), "a pg_dump custom archive");
    }
    // One flipped byte in a pack: check fails and names it.
    let target = &packs[0];
    let mut bytes = std::fs::read(target).expect("pack");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(target, &bytes).expect("tamper");
    let (code, out, _) = cli(&app, &["check", "--read-data"]);
    assert_eq!(code, 1, "{out}");
    let short = target.file_name().expect("name").to_string_lossy().to_string();
    assert!(out.contains(&short) && out.contains("in: packs/") && out.contains("changed"), "{out}");
    // With Singapore's copy damaged as well, an extraction fails and leaves no half folder.
    let sg_copy =
        app.data.path().join("backups/sg").join(target.strip_prefix(app.data.path().join("backups/in")).expect("in"));
    let good = std::fs::read(&sg_copy).expect("sg copy");
    let mut bad = good.clone();
    bad[mid] ^= 0x01;
    std::fs::write(&sg_copy, &bad).expect("tamper sg");
    let snaps = app.app().services().backups.list(Some(&id)).await.expect("list");
    let half = app.data.path().join("half");
    let (code, out, err) = cli(
        &app,
        &[
            "restore",
            &snaps[0].id[..12],
            "--to-folder",
            half.to_str().expect("path"),
            "--reason",
            "drill: damaged copies",
        ],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("damaged"), "{err}");
    assert!(!half.exists(), "a failed extraction leaves nothing behind");
    std::fs::write(&sg_copy, &good).expect("put sg back");
    // The other region's copy repairs it.
    let (code, out, _) = cli(&app, &["repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 damaged moved aside"), "{out}");
    let (code, out, _) = cli(&app, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;
}

// promise: BAK-4
#[tokio::test]
async fn every_snapshot_is_in_both_regions_and_losing_one_region_loses_nothing() {
    let app = spawn_app().await;
    let (t, id) = database_with_contacts(&app, "bak4@example.com", "ledger", 12).await;
    let s = app.app().services();
    let out = s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
    let snap = out[0].snapshot.clone().expect("snapshot");
    assert_eq!(snap.regions, vec!["in".to_string(), "sg".to_string()], "hosted in uk, backed up to both");
    assert_eq!(objects(&app, "in").len(), objects(&app, "sg").len());

    // India's folder is gone entirely.
    // (The stream shipper may be writing there at this moment: try again.)
    let region = app.data.path().join("backups").join("in");
    for attempt in 0.. {
        match std::fs::remove_dir_all(&region) {
            Ok(()) => break,
            Err(e) if attempt < 50 && e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("lose a region: {e}"),
        }
    }
    let (code, out, _) = cli(&app, &["check"]);
    assert_eq!(code, 1);
    assert!(out.contains("in: snapshots/") && out.contains("missing"), "{out}");
    // Restore still works, from Singapore.
    let restored = s
        .backups
        .restore(&seldesk_domain::Actor::Operator, &snap.id, "ledger-restored", "ticket 88: region drill", None)
        .await
        .expect("restore");
    let r = app
        .client
        .get(app.url(&format!("/api/v1/databases/{}/contacts", restored.id)))
        .bearer_auth(&t)
        .send()
        .await
        .expect("contacts");
    let body = r.text().await.expect("text");
    assert!(body.contains("Secret Client 11"), "{body}");
    // Support staff see every database's backups, with their regions and dates.
    let support = crate::helpers::staff_session(&app, "ops@seldesk.com", "support").await;
    let page = app
        .client
        .get(app.url("/staff/backups"))
        .header("cookie", &support)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("ledger") && page.contains(&snap.id[..16]) && page.contains("sg"), "{page}");
    // Repair copies India back.
    let (code, out, _) = cli(&app, &["repair"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(objects(&app, "in").len(), objects(&app, "sg").len());
    let (code, out, _) = cli(&app, &["check", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;
}

// promise: BAK-3
#[tokio::test]
async fn restores_need_a_reason_are_audited_and_never_bring_back_a_removed_database() {
    let app = spawn_app().await;
    let (t, id) = database_with_contacts(&app, "bak3@example.com", "crm", 5).await;
    let s = app.app().services();
    let snap = s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup")[0]
        .snapshot
        .clone()
        .expect("snapshot");
    // No reason, no restore.
    let (code, _, err) = cli(&app, &["restore", &snap.id[..12], "--to-new-database", "crm-copy", "--reason", ""]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a reason"), "{err}");
    // A bad or taken name is refused before a byte is restored.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (name, says) in [("Crm Copy!", "lowercase letters"), ("crm", "already have a database named")] {
        let c = calls.clone();
        let err = s
            .backups
            .restore_with_progress(
                &seldesk_domain::Actor::Operator,
                &snap.id,
                name,
                "ticket 12: customer asked",
                None,
                std::sync::Arc::new(move |_, _| {
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }),
            )
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(says), "{name}: {err}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing was restored");
    let (code, out, err) = cli(
        &app,
        &["restore", &snap.id[..12], "--to-new-database", "crm-copy", "--reason", "ticket 12: customer asked"],
    );
    assert_eq!(code, 0, "{out}{err}");
    // It says how much it wrote and how fast.
    assert!(out.contains(" MB/s)"), "{out}");
    assert!(out.contains(&format!("{} bytes in", snap.size)), "all of the snapshot was written: {out}");
    let audit = s.audit.recent(50).await.expect("audit");
    let restored = audit.iter().find(|e| e.action == "backup.restored").expect("audited");
    assert_eq!(restored.actor, "operator");
    assert!(restored.details.to_string().contains("ticket 12"), "{restored:?}");

    // After the owner removes the database, its snapshots are never restored.
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/databases/{id}?confirm=crm")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("remove");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let err = s
        .backups
        .restore(&seldesk_domain::Actor::Operator, &snap.id, "crm-back", "ticket 13: please", None)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("was removed"), "{err}");
    app.stop().await;
}

// promise: BAK-2, DB-6
#[tokio::test]
async fn a_removed_database_leaves_no_readable_trace_in_the_vault_after_twelve_months() {
    let app = spawn_app().await;
    let (t, id) = database_with_contacts(&app, "bak2@example.com", "old", 8).await;
    let (_, keep) = database_with_contacts(&app, "bak2b@example.com", "kept", 3).await;
    let s = app.app().services();
    let noop = std::sync::Arc::new(|_: u64, _: u64| {});
    s.backups.run(None, noop.clone()).await.expect("backup");
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/databases/{id}?confirm=old")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("remove");
    assert!(r.status().is_success());
    let has = |db: &str| {
        objects(&app, "in").iter().chain(objects(&app, "sg").iter()).any(|p| p.to_string_lossy().contains(db))
    };
    // This node's change maps of it (sealed fingerprints of its pages).
    let maps = app.data.path().join("backups").join(".maps");
    assert!(maps.join(&id).is_dir(), "a backup leaves a change map");
    // Daily backups and prunes for a year.
    for _ in 0..(365 / 5) {
        app.clock.advance(Duration::days(5));
        s.backups.run(None, noop.clone()).await.expect("backup");
        s.backups.prune().await.expect("prune");
    }
    assert!(!has(&id), "no pack, index, snapshot or key of the removed database remains");
    assert!(!maps.join(&id).exists(), "its change maps go with its key");
    assert!(has(&keep), "the live database keeps its snapshots");
    assert!(maps.join(&keep).is_dir(), "the live database keeps its change map");
    let snaps = s.backups.list(Some(&keep)).await.expect("list");
    let oldest = snaps.iter().map(|x| x.taken_at).min().expect("some");
    assert!(app.clock_now() - oldest <= Duration::days(366), "nothing older than 12 months");
    assert!(snaps.len() <= 7 + 4 + 12, "retention from the policy file: {}", snaps.len());
    app.stop().await;
}

// promise: BAK-1, BAK-4
#[tokio::test]
async fn a_backup_killed_at_any_moment_leaves_the_vault_consistent() {
    let app = spawn_app().await;
    let (_, id) = database_with_contacts(&app, "crash@example.com", "big", 0).await;
    let path = app.data.path().join("tenants").join("uk").join(&id).join("db.sqlite");
    // Enough data that a backup takes a moment.
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("BEGIN").expect("begin");
        for i in 0..40_000u32 {
            conn.execute(
                "INSERT INTO contacts (name, notes, created_at, updated_at) VALUES (?1, ?2, '2026-01-01', '2026-01-01')",
                rusqlite::params![format!("Person {i}"), blake3::hash(&i.to_le_bytes()).to_hex().repeat(8)],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    let url = app.database_url();
    // Kills at many points, with the database changed before each run, so
    // a run's objects reach one region and not the other.
    for round in 1..=14i64 {
        let delay = u64::try_from(30 * round - 10).unwrap_or(0);
        rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.execute(
                    "UPDATE contacts SET notes = notes || ?1 WHERE id % 97 = ?2",
                    rusqlite::params![format!("-{round}"), round % 97],
                )
            })
            .expect("update");
        let mut child = std::process::Command::new(crate::helpers::bin())
            .args(["backup", "run", "--database", &id, "--database-url", &url, "--data", app.data_dir()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (code, out, err) = cli(&app, &["check", "--read-data"]);
        if code != 0 {
            // A kill between the manifest's writes to the two regions leaves
            // the new snapshot in one of them only: check names exactly that,
            // and repair (or the next run) copies it to the other.
            // Every problem line ("region: object: problem").
            let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("in: ") || l.starts_with("sg: ")).collect();
            assert!(
                !problems.is_empty()
                    && problems
                        .iter()
                        .all(|l| l.contains(": snapshots/") && l.contains("missing (another region has it")),
                "after a kill at {delay} ms, only a manifest half copied may be missing: {out}{err}"
            );
            let (code, out, err) = cli(&app, &["repair"]);
            assert_eq!(code, 0, "repair after a kill at {delay} ms: {out}{err}");
            let (code, out, err) = cli(&app, &["check", "--read-data"]);
            assert_eq!(code, 0, "after a kill at {delay} ms and a repair: {out}{err}");
        }
    }
    let (code, out, err) = cli(&app, &["run", "--database", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&app, &["list", "--database", &id]);
    assert_eq!(code, 0, "{err}");
    let snapshots: Vec<&str> = out.lines().filter(|l| l.contains(&id)).collect();
    assert!(!snapshots.is_empty(), "{out}");
    let (code, out, err) = cli(&app, &["run", "--database", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&app, &["check"]);
    assert_eq!(code, 0, "after the runs that followed the kills: {out}{err}");
    // Every listed snapshot restores completely, from each region alone
    // (BAK-4: a region lost loses nothing).
    let s = app.app().services();
    let all = s.backups.list(Some(&id)).await.expect("list");
    for region in ["in", "sg"] {
        let (alone, _) = seldesk_vault::Vault::open(
            vec![seldesk_vault::RegionStore::new(region, app.data.path().join("backups").join(region))],
            &app.data.path().join("keys").join("vault.key"),
            seldesk_vault::VaultSettings::default(),
        )
        .expect("one region");
        assert_eq!(alone.list(Some(&id)).expect("list").len(), all.len(), "{region} holds every manifest");
        for snap in &all {
            let dir = tempfile::tempdir().expect("dir");
            let m = alone
                .restore(&snap.id, &dir.path().join("r"), &|_, _| {})
                .unwrap_or_else(|e| panic!("{region} alone cannot restore {}: {e}", snap.id));
            assert_eq!(std::fs::metadata(dir.path().join("r").join("db.sqlite")).expect("file").len(), m.files[0].size);
        }
    }
    app.stop().await;
}

// promise: BAK-1
#[tokio::test]
async fn snapshots_taken_while_the_database_is_written_restore_to_a_consistent_database() {
    let app = spawn_app().await;
    let (_, id) = database_with_contacts(&app, "busy@example.com", "busy", 0).await;
    let path = app.data.path().join("tenants").join("uk").join(&id).join("db.sqlite");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(5)).expect("timeout");
            conn.execute_batch("PRAGMA journal_mode = WAL").expect("wal");
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                conn.execute_batch("BEGIN").expect("begin");
                for _ in 0..200 {
                    i += 1;
                    conn.execute(
                        "INSERT INTO contacts (name, notes, created_at, updated_at) VALUES (?1, ?2, '2026-01-01', '2026-01-01')",
                        rusqlite::params![format!("Writer {i}"), "x".repeat(300)],
                    )
                    .expect("insert");
                }
                conn.execute_batch("COMMIT").expect("commit");
            }
            i
        })
    };
    let s = app.app().services();
    for _ in 0..6 {
        s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup while writing");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    for snap in s.backups.list(Some(&id)).await.expect("list") {
        let dir = tempfile::tempdir().expect("dir");
        s.backups.vault().restore(&snap.id, &dir.path().join("r"), &|_, _| {}).expect("restore");
        let conn = rusqlite::Connection::open(dir.path().join("r").join("db.sqlite")).expect("open");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok", "snapshot {}", snap.id);
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0)).expect("count");
        assert_eq!(n % 200, 0, "whole transactions only: {n}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_backup_after_changes_made_through_seldesk_reads_what_its_change_log_lists_and_restores_them() {
    let app = spawn_app().await;
    let (t, id) = database_with_contacts(&app, "logged@example.com", "logged", 30).await;
    let s = app.app().services();
    let snapshot = |outcomes: Vec<seldesk_vault::BackupOutcome>| {
        outcomes.into_iter().next().and_then(|o| o.snapshot).expect("a snapshot").id
    };
    let log_path = app.data.path().join("tenants").join("uk").join(&id).join("db.sqlite-changes");
    let first = snapshot(s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("first"));
    let log = std::fs::read_to_string(&log_path).expect("a change log after the first backup");
    assert!(log.starts_with(&format!("base {first} ")), "{log}");

    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{id}/sql")))
        .bearer_auth(&t)
        .json(&json!({ "sql": "UPDATE contacts SET notes = 'changed after the first backup' WHERE id % 3 = 0" }))
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), 200);
    let log = std::fs::read_to_string(&log_path).expect("log");
    let pages: Vec<&str> = log.lines().filter(|l| l.starts_with("wal ")).flat_map(|l| l.split(' ').skip(6)).collect();
    assert!(!pages.is_empty(), "the update's pages are listed before they reach the file: {log}");
    assert!(!log.contains("broken"), "{log}");

    let second = snapshot(s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("second"));
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.starts_with(&format!("base {second} ")), "the log starts again from the new snapshot: {log}");
    let dir = tempfile::tempdir().expect("dir");
    s.backups.vault().restore(&second, &dir.path().join("r"), &|_, _| {}).expect("restore");
    let conn = rusqlite::Connection::open(dir.path().join("r").join("db.sqlite")).expect("open");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
    assert_eq!(check, "ok");
    let changed: i64 = conn
        .query_row("SELECT COUNT(*) FROM contacts WHERE notes = 'changed after the first backup'", [], |r| r.get(0))
        .expect("count");
    assert_eq!(changed, 10);
    // The same bytes a full read of the live file gives.
    let live = std::fs::read(app.data.path().join("tenants").join("uk").join(&id).join("db.sqlite")).expect("live");
    assert!(std::fs::read(dir.path().join("r").join("db.sqlite")).expect("restored") == live);
    app.stop().await;
}

/// The S3-compatible server for tests (moto, started by scripts/test.sh).
pub(crate) fn s3_endpoint() -> String {
    std::env::var("SELDESK_TEST_S3").expect(
        "SELDESK_TEST_S3 is not set: run scripts/test.sh, which starts an S3-compatible server (moto) on loopback",
    )
}

/// Runs Python with boto3 (AWS's own SDK, installed with moto) against the
/// test server: an S3 client independent of ours. Returns its JSON output.
pub(crate) fn boto3(script: &str, args: &[&str]) -> serde_json::Value {
    let python = std::env::var("SELDESK_TEST_S3_PYTHON").unwrap_or_else(|_| "python3".into());
    let prelude = "import boto3, json, sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg(s3_endpoint())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): run scripts/test.sh"));
    assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("boto3 prints JSON")
}

// promise: BAK-1, BAK-4
#[tokio::test]
async fn backups_in_s3_buckets_are_write_once_locked_by_the_provider_checked_and_restored() {
    let endpoint = s3_endpoint();
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let (bucket_in, bucket_sg) = (format!("seldesk-{tag}-in"), format!("seldesk-{tag}-sg"));
    // Buckets with Object Lock: every object version kept at least a day, in compliance mode.
    for bucket in [&bucket_in, &bucket_sg] {
        boto3(
            "s3.create_bucket(Bucket=sys.argv[2], ObjectLockEnabledForBucket=True)\n\
             s3.put_object_lock_configuration(Bucket=sys.argv[2], ObjectLockConfiguration={'ObjectLockEnabled': 'Enabled', 'Rule': {'DefaultRetention': {'Mode': 'COMPLIANCE', 'Days': 1}}})\n\
             print(json.dumps(True))",
            &[bucket],
        );
    }
    // Credentials would come from AWS_* in production; moto takes any.
    let options =
        format!("?endpoint={endpoint}&allow_http=true&access_key_id=test&secret_access_key=test&region=us-east-1");
    let stores: std::collections::BTreeMap<String, String> = [
        ("in".to_string(), format!("s3://{bucket_in}/vault{options}")),
        ("sg".to_string(), format!("s3://{bucket_sg}/vault{options}")),
    ]
    .into();
    let app = crate::helpers::spawn_app_with(
        move |c| c.backup_stores = stores,
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let (t, id) = database_with_contacts(&app, "s3@example.com", "cloud", 10).await;
    let s = app.app().services();
    let out = s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
    let snap = out[0].snapshot.clone().unwrap_or_else(|| panic!("{:?}", out[0].error));
    assert_eq!(snap.regions, vec!["in".to_string(), "sg".to_string()]);
    assert!(objects(&app, "in").is_empty(), "nothing in the local folder: the bucket holds it");

    // The buckets hold the objects with their locks.
    let keys = boto3(
        "r = s3.list_objects_v2(Bucket=sys.argv[2], Prefix='vault/')\nprint(json.dumps([o['Key'] for o in r.get('Contents', [])]))",
        &[&bucket_in],
    );
    let keys: Vec<String> = serde_json::from_value(keys).expect("keys");
    let pack = keys.iter().find(|k| k.starts_with(&format!("vault/objects/packs/{id}"))).expect("a pack").clone();
    assert!(keys.iter().any(|k| k.starts_with("vault/locks/packs/")), "retain-until records: {keys:?}");

    // The vault refuses to overwrite an object or delete it before its date; nothing is readable.
    let region = s.backups.vault().regions()[0].clone();
    let name = pack.trim_start_matches("vault/objects/").to_string();
    let (overwrite, delete, until, bytes) = tokio::task::spawn_blocking(move || {
        (region.put(&name, b"other bytes", 0), region.delete(&name, 0), region.retain_until(&name), region.get(&name))
    })
    .await
    .expect("join");
    assert!(matches!(overwrite, Err(seldesk_vault::VaultError::Overwrite(_))), "{overwrite:?}");
    assert!(matches!(delete, Err(seldesk_vault::VaultError::Locked { .. })), "{delete:?}");
    assert!(until.is_some_and(|u| u > 0));
    assert!(!String::from_utf8_lossy(&bytes.expect("pack")).contains("Secret Client"), "encrypted at rest");

    // Check reads every block back; a restore comes from the buckets.
    let problems = s.backups.check(true, std::sync::Arc::new(|_, _| {})).await.expect("check");
    assert!(problems.is_empty(), "{problems:?}");
    let restored = s
        .backups
        .restore(&seldesk_domain::Actor::Operator, &snap.id, "cloud-restored", "ticket 7: bucket drill", None)
        .await
        .expect("restore");
    let body = app
        .client
        .get(app.url(&format!("/api/v1/databases/{}/contacts", restored.id)))
        .bearer_auth(&t)
        .send()
        .await
        .expect("contacts")
        .text()
        .await
        .expect("text");
    assert!(body.contains("Secret Client 9"), "{body}");

    // Another S3 client, with the bucket owner's rights, cannot remove a version either:
    // the provider enforces the lock (compliance mode) whatever our code does.
    let outcome = boto3(
        "def remove(bucket, key):\n\
         \x20   v = s3.list_object_versions(Bucket=bucket, Prefix=key)['Versions'][0]['VersionId']\n\
         \x20   try:\n        s3.delete_object(Bucket=bucket, Key=key, VersionId=v)\n        return 'deleted'\n\
         \x20   except Exception as e:\n        return e.response['Error']['Code']\n\
         free = sys.argv[2] + '-free'\n\
         s3.create_bucket(Bucket=free)\n\
         s3.put_bucket_versioning(Bucket=free, VersioningConfiguration={'Status': 'Enabled'})\n\
         s3.put_object(Bucket=free, Key='x', Body=b'x')\n\
         print(json.dumps([remove(sys.argv[2], sys.argv[3]), remove(free, 'x')]))",
        &[&bucket_in, &pack],
    );
    // The same client removes a version in a bucket without a lock: the refusal is the lock's.
    assert_eq!(outcome, serde_json::json!(["AccessDenied", "deleted"]), "the provider keeps a locked version");
    app.stop().await;
}

/// Contact names of a database, read from its file.
fn names_in(app: &TestApp, id: &str) -> std::collections::BTreeSet<String> {
    let path = app.data.path().join("tenants").join("uk").join(id).join("db.sqlite");
    let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut stmt = conn.prepare("SELECT name FROM contacts").expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0)).expect("query").collect::<Result<_, _>>().expect("names")
}

// promise: BAK-1, BAK-3, BAK-4
#[tokio::test]
async fn a_database_is_restored_exactly_as_it_was_at_any_moment_its_changes_were_streamed() {
    use seldesk_domain::Clock as _;
    let app = spawn_app().await;
    // An hour ago, so that every moment of the test is in the past for the
    // command line, which runs on the real clock.
    app.clock.set(time::OffsetDateTime::now_utc() - Duration::hours(1));
    let (t, id) = database_with_contacts(&app, "pitr@example.com", "ledger", 3).await;
    let shipper = app.app().shipper().expect("streaming is on by default").clone();
    // What the database held after each acknowledged write, and when.
    let mut history: Vec<(time::OffsetDateTime, std::collections::BTreeSet<String>)> = Vec::new();
    let mut live: Vec<(i64, String)> = Vec::new();
    let write = async |step: usize, live: &mut Vec<(i64, String)>| {
        app.clock.advance(Duration::seconds(1));
        let c = &app.client;
        if step % 5 == 4 && live.len() > 2 {
            // A deletion of the second-oldest contact.
            let (cid, _) = live.remove(1);
            let r = c.delete(app.url(&format!("/api/v1/databases/{id}/contacts/{cid}"))).bearer_auth(&t).send().await;
            assert_eq!(r.expect("delete").status(), 204);
        } else if step % 5 == 2 && !live.is_empty() {
            let (cid, name) = live[0].clone();
            let renamed = format!("{name} (renamed at {step})");
            let r = c
                .patch(app.url(&format!("/api/v1/databases/{id}/contacts/{cid}")))
                .bearer_auth(&t)
                .json(&json!({ "name": renamed }))
                .send()
                .await;
            assert_eq!(r.expect("rename").status(), 200);
            live[0].1 = renamed;
        } else {
            let name = format!("Streamed Person {step}");
            let r = c
                .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
                .bearer_auth(&t)
                .json(&json!({ "name": name, "notes": "x".repeat(step * 300) }))
                .send()
                .await
                .expect("add");
            assert_eq!(r.status(), 201);
            let cid = r.json::<serde_json::Value>().await.expect("json")["id"].as_i64().expect("id");
            live.push((cid, name));
        }
    };
    for step in 0..8 {
        write(step, &mut live).await;
        history.push((app.clock.now(), names_in(&app, &id)));
    }
    app.clock.advance(Duration::seconds(1));
    let s = app.app().services();
    let out = s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
    let snapshot = out[0].snapshot.clone().expect("snapshot");
    let snapshot_at = snapshot.taken_at;
    for step in 8..40 {
        write(step, &mut live).await;
        history.push((app.clock.now(), names_in(&app, &id)));
    }
    // The server's own shipper runs every 500 ms and may have sent part of
    // the 32 commits already; what matters is that none waits now.
    let shipped = shipper.ship().await.expect("ship");
    assert_eq!(shipper.waiting(), 0, "{shipped:?}");
    app.clock.advance(Duration::seconds(1));

    // Every backup region holds the segments, sealed.
    for region in ["in", "sg"] {
        let dir = app.data.path().join("backups").join(region).join("objects").join("stream").join(&id);
        let segments: Vec<_> = std::fs::read_dir(&dir).expect("segments").filter_map(Result::ok).collect();
        assert!(!segments.is_empty(), "{region}");
        for e in segments {
            let raw = std::fs::read(e.path()).expect("segment");
            assert!(!raw.windows(15).any(|w| w == b"Streamed Person"), "sealed at rest");
        }
    }

    // Restored at moments between writes: exactly what the database held then.
    let reason = "ticket 4711: rows deleted by mistake";
    for (i, (at, expected)) in
        history.iter().enumerate().filter(|(_, (at, _))| *at > snapshot_at + Duration::seconds(1))
    {
        if i % 4 != 0 && i + 1 != history.len() {
            continue;
        }
        let moment = *at + Duration::milliseconds(500);
        let (d, plan) = s
            .backups
            .restore_at(
                &seldesk_domain::Actor::Operator,
                &id,
                moment,
                &format!("ledger-at-{i}"),
                reason,
                None,
                std::sync::Arc::new(|_, _| {}),
            )
            .await
            .unwrap_or_else(|e| panic!("restore at write {i}: {e}"));
        assert_eq!(plan.snapshot.id, snapshot.id);
        assert_eq!(&names_in(&app, &d.id), expected, "as it was after write {i}");
    }
    // Before the snapshot there is nothing to replay onto; the future is refused.
    let before = s
        .backups
        .restore_at(
            &seldesk_domain::Actor::Operator,
            &id,
            history[2].0,
            "too-early",
            reason,
            None,
            std::sync::Arc::new(|_, _| {}),
        )
        .await;
    assert!(matches!(&before, Err(seldesk_vault::VaultError::NotFound(m)) if m.contains("No snapshot")), "{before:?}");
    let future = s
        .backups
        .restore_at(
            &seldesk_domain::Actor::Operator,
            &id,
            app.clock.now() + Duration::hours(2),
            "future",
            reason,
            None,
            std::sync::Arc::new(|_, _| {}),
        )
        .await;
    assert!(matches!(future, Err(seldesk_vault::VaultError::Invalid(_))));

    // Through the API, by the owner.
    let (moment, expected) = history[20].clone();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{id}/restore-at")))
        .bearer_auth(&t)
        .json(&json!({ "at": (moment + Duration::milliseconds(300)).format(&time::format_description::well_known::Rfc3339).expect("time"), "name": "ledger-api" }))
        .send()
        .await
        .expect("restore-at");
    assert_eq!(r.status(), 201);
    let restored: serde_json::Value = r.json().await.expect("json");
    assert_eq!(names_in(&app, restored["id"].as_str().expect("id")), expected);
    assert!(restored["restored_as_of"].is_string(), "{restored}");
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{id}/restore-at")))
        .bearer_auth(&t)
        .json(&json!({ "at": "2020-01-01T00:00:00Z", "name": "ledger-old" }))
        .send()
        .await
        .expect("restore-at");
    assert_eq!(r.status(), 409, "further back than a trial's window");
    let window = s.backups.restore_window(&id).await.expect("window").expect("a window");
    assert!(window.0 > snapshot_at && window.1 >= history[39].0 - Duration::seconds(1), "{window:?}");
    // A trial goes back as far as the policy file says (7 days), for its owner.
    app.clock.advance(Duration::days(8));
    let later = app.token("pitr@example.com", PW).await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/databases/{id}/restore-at")))
        .bearer_auth(&later)
        .json(&json!({ "at": (moment + Duration::milliseconds(300)).format(&time::format_description::well_known::Rfc3339).expect("time"), "name": "ledger-late" }))
        .send()
        .await
        .expect("restore-at");
    assert_eq!(r.status(), 409);
    let body = r.text().await.expect("body");
    assert!(body.contains("last 7 days"), "{body}");
    assert!(
        s.backups.restore_window(&id).await.expect("window").is_none_or(|w| w.0 >= app.clock.now() - Duration::days(7))
    );
    app.clock.advance(Duration::days(-8));

    // The command line, audited with its reason.
    let (moment, expected) = history[30].clone();
    let at =
        (moment + Duration::milliseconds(200)).format(&time::format_description::well_known::Rfc3339).expect("time");
    let (code, stdout, stderr) =
        cli(&app, &["restore", &id, "--at", &at, "--to-new-database", "ledger-cli", "--reason", reason]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("segment(s) of changes"), "{stdout}");
    let restored: String = sqlx::query_scalar("SELECT id FROM databases WHERE name = 'ledger-cli'")
        .fetch_one(s.db.pool())
        .await
        .expect("restored");
    assert_eq!(names_in(&app, &restored), expected);
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'backup.restored' AND details LIKE '%ticket 4711%'",
    )
    .fetch_one(s.db.pool())
    .await
    .expect("audit");
    assert!(audited >= 1);
    let (code, _, stderr) =
        cli(&app, &["restore", &id, "--at", "yesterday", "--to-new-database", "x", "--reason", reason]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a time"), "{stderr}");

    // A segment altered in one region is found and named, and repaired from the other.
    let dir = app.data.path().join("backups").join("sg").join("objects").join("stream").join(&id);
    let victim = std::fs::read_dir(&dir).expect("segments").filter_map(Result::ok).next().expect("one").path();
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[40] ^= 1;
    let mut perms = std::fs::metadata(&victim).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).expect("writable");
    std::fs::write(&victim, &bytes).expect("tamper");
    let name = format!("stream/{id}/{}", victim.file_name().expect("name").to_string_lossy());
    let problems = s.backups.check(true, std::sync::Arc::new(|_, _| {})).await.expect("check");
    assert!(problems.iter().any(|p| p.region == "sg" && p.object == name), "{problems:?}");
    let repaired = s.backups.repair(&seldesk_domain::Actor::Operator).await.expect("repair");
    assert!(repaired.copied.iter().any(|c| c.contains(&name)), "{repaired:?}");
    assert!(s.backups.check(true, std::sync::Arc::new(|_, _| {})).await.expect("check").is_empty());
    app.stop().await;
}

// promise: BAK-1, BAK-4, SEC-1
/// The node-loss drill: a write loop records when each write was
/// acknowledged, the node is SIGKILLed and its data folder deleted, and
/// `node recover` on another node brings the database back from its
/// snapshot and the commits the lost node shipped. Every write acknowledged
/// more than the shipping interval (plus the time a shipment takes) before
/// the kill is there. The full drill: SELDESK_NODE_LOSS_DRILL_ROUNDS=50
/// (docs/backups.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_loses_at_most_the_commits_of_its_last_shipping_interval() {
    let rounds: usize = std::env::var("SELDESK_NODE_LOSS_DRILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let interval = std::time::Duration::from_millis(500);
    let mut worst = std::time::Duration::ZERO;
    let (mut lost_total, mut acknowledged_total) = (0usize, 0usize);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let vault = tempfile::tempdir().expect("vault");
        let (store_in, store_sg) =
            (vault.path().join("in").display().to_string(), vault.path().join("sg").display().to_string());
        let env = [
            ("SELDESK_BACKUP_STORES__IN", store_in.as_str()),
            ("SELDESK_BACKUP_STORES__SG", store_sg.as_str()),
            ("SELDESK_BACKUP_STREAM_MS", "500"),
        ];
        let dir = tempfile::tempdir().expect("data");
        let url = crate::helpers::fresh_database_url(dir.path()).await;
        let mut server =
            crate::helpers::ServerProcess::start_with(dir, url.clone(), &["--node-name".into(), "lost".into()], &env);
        let client = reqwest::Client::new();
        let token = server.customer_token(&client, &format!("drill{round}@example.com"), PW).await;
        let id = server.create_database(&client, &token, json!({ "name": "drilled", "region": "in" })).await;
        let data = server.dir.path().to_str().expect("path").to_string();
        let backup = std::process::Command::new(crate::helpers::bin())
            .args(["backup", "run", "--database", &id, "--database-url", &url, "--data", &data])
            .envs(env)
            .output()
            .expect("backup");
        assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));

        // Writes until the kill, each with the moment it was acknowledged.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (client, url, token, stop) = (
                client.clone(),
                format!("{}/api/v1/databases/{id}/contacts", server.base),
                token.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("d{n}");
                    n += 1;
                    let sent = client.post(&url).bearer_auth(&token).json(&json!({ "name": name })).send().await;
                    if sent.is_ok_and(|r| r.status() == 201) {
                        acknowledged.push((name, std::time::Instant::now()));
                    }
                }
                acknowledged
            })
        };
        // The node asks for a snapshot of the chain its first write began
        // (the steady state: a database backed up during its current chain).
        let db = seldesk_store::Db::connect(&url).await.expect("control plane");
        let started = std::time::Instant::now();
        loop {
            let done: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'backup.run' AND dedupe_key LIKE 'chain-backup:%' AND status = 'done'",
            )
            .fetch_one(db.pool())
            .await
            .expect("jobs");
            if done > 0 {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "round {round}: the chain's snapshot");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 + seed % 2500)).await;
        let _ = server.child.kill();
        let killed = std::time::Instant::now();
        let _ = server.child.wait();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acknowledged = writer.await.expect("writer");
        // The machine is gone; its vault key was kept apart, as docs/backups.md says.
        let rescuer = tempfile::tempdir().expect("rescuer");
        std::fs::create_dir_all(rescuer.path().join("keys")).expect("keys");
        std::fs::copy(server.dir.path().join("keys/vault.key"), rescuer.path().join("keys/vault.key")).expect("key");
        std::fs::remove_dir_all(server.dir.path().join("tenants")).expect("the disk is gone");
        sqlx::query("UPDATE nodes SET last_seen_at = 0 WHERE name = 'lost'").execute(db.pool()).await.expect("silent");
        db.close().await;
        let recovered = std::process::Command::new(crate::helpers::bin())
            .args(["node", "recover", "lost", "--region", "in", "--node-name", "rescuer", "--database-url", &url])
            .arg("--data")
            .arg(rescuer.path())
            .envs(env)
            .output()
            .expect("recover");
        let out = String::from_utf8_lossy(&recovered.stdout).to_string();
        let err = String::from_utf8_lossy(&recovered.stderr).to_string();
        assert!(recovered.status.success(), "{out}{err}");
        assert!(!err.contains("latest snapshot only"), "recovered from its streamed commits: {err}");

        let path = rescuer.path().join("tenants").join("in").join(&id).join("db.sqlite");
        let conn =
            rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("db");
        let names: std::collections::HashSet<String> = conn
            .prepare("SELECT name FROM contacts")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("names");
        let lost: Vec<std::time::Duration> = acknowledged
            .iter()
            .filter(|(name, _)| !names.contains(name))
            .map(|(_, at)| killed.saturating_duration_since(*at))
            .collect();
        let window = lost.iter().max().copied().unwrap_or_default();
        eprintln!(
            "round {round}: {} acknowledged, {} lost, all acknowledged within {window:?} of the kill",
            acknowledged.len(),
            lost.len()
        );
        assert!(acknowledged.len() > 20, "round {round}: the load ran");
        // One interval, and the moment a shipment takes on a loaded machine.
        assert!(window <= interval * 2, "round {round}: a write acknowledged {window:?} before the kill was lost");
        worst = worst.max(window);
        lost_total += lost.len();
        acknowledged_total += acknowledged.len();
    }
    eprintln!(
        "{rounds} drills: {acknowledged_total} writes acknowledged, {lost_total} lost, the oldest lost acknowledged {worst:?} before its kill"
    );
}

/// Segment objects of a database in one backup region.
fn segment_files(app: &TestApp, region: &str, id: &str) -> usize {
    let dir = app.data.path().join("backups").join(region).join("objects").join("stream").join(id);
    std::fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

// promise: BAK-1, BAK-2
#[tokio::test]
async fn small_segments_are_joined_and_the_small_ones_pruned_once_unlocked() {
    use seldesk_domain::Clock as _;
    let app = spawn_app().await;
    let (t, id) = database_with_contacts(&app, "joined@example.com", "journal", 1).await;
    let shipper = app.app().shipper().expect("streaming").clone();
    let s = app.app().services();
    app.clock.advance(Duration::seconds(2));
    s.backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
    let mut history = Vec::new();
    for i in 0..12 {
        app.clock.advance(Duration::seconds(1));
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&t)
            .json(&json!({ "name": format!("Entry {i}") }))
            .send()
            .await
            .expect("add");
        assert_eq!(r.status(), 201);
        shipper.ship().await.expect("ship");
        history.push((app.clock.now(), names_in(&app, &id)));
    }
    let listed = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM stream_segments WHERE database_id = $1")
            .bind(&id)
            .fetch_one(s.db.pool())
            .await
            .expect("count")
    };
    let before = listed().await;
    assert!(before >= 12, "one segment a second: {before}");
    // Younger than a minute: left as they are.
    assert_eq!(shipper.compact().await.expect("compact"), 0);
    app.clock.advance(Duration::minutes(2));
    let joined = shipper.compact().await.expect("compact");
    assert_eq!(joined as i64, before, "all of them, consecutive, into one");
    assert_eq!(listed().await, 1);
    assert_eq!(segment_files(&app, "in", &id) as i64, before + 1, "the small ones wait for their lock");
    let restore = async |i: usize, name: &str| {
        let (at, expected) = &history[i];
        let (d, plan) = s
            .backups
            .restore_at(
                &seldesk_domain::Actor::Operator,
                &id,
                *at + Duration::milliseconds(400),
                name,
                "ticket 77: checking the journal",
                None,
                std::sync::Arc::new(|_, _| {}),
            )
            .await
            .expect("restore");
        assert_eq!(plan.segments.len(), 1, "one object to read");
        assert_eq!(&names_in(&app, &d.id), expected);
    };
    restore(3, "journal-3").await;
    restore(11, "journal-11").await;
    // Past the lock, prune deletes what the list no longer names.
    app.clock.advance(Duration::days(8));
    let report = s.backups.prune().await.expect("prune");
    assert!(report.segments_removed as i64 >= before, "{report:?}");
    assert_eq!(segment_files(&app, "in", &id), 1);
    assert_eq!(segment_files(&app, "sg", &id), 1);
    restore(7, "journal-7").await;
    app.stop().await;
}
