//! Region-bound nodes (issue 30): a node serves the customer databases of
//! its data centers only, registers in the control plane, and says what it
//! serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, cli_run, spawn_app, spawn_app_with};

const PW: &str = "violet tractor lemon";

/// Every file under `dir`, with its size and modification time.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().filter_map(Result::ok) {
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

/// A second node over the same data folder and control plane, serving `regions`.
async fn node(app: &TestApp, name: &str, regions: &[&str]) -> seldesk::Application {
    let mut config = app.config.clone();
    config.node.regions = regions.iter().map(|r| r.to_string()).collect();
    config.node.name = Some(name.to_string());
    seldesk::Application::build(config, seldesk_domain::Policy::builtin().expect("policy"), Arc::new(app.clock.clone()))
        .await
        .expect("the node starts")
}

// promise: RES-1
#[tokio::test]
async fn a_uk_node_refuses_every_use_of_an_india_database_and_writes_nothing() {
    let app = spawn_app().await;
    app.sign_up("bound@example.com", PW).await;
    let t = app.token("bound@example.com", PW).await;
    let c = &app.client;
    let r = c
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&t)
        .json(&json!({ "name": "mumbai", "region": "in" }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let r = c
        .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
        .bearer_auth(&t)
        .json(&json!({ "name": "Asha Rao" }))
        .send()
        .await
        .expect("contact");
    assert_eq!(r.status(), StatusCode::CREATED);
    let export = c.get(app.url(&format!("/api/v1/databases/{id}/export"))).bearer_auth(&t).send().await.expect("x");
    assert_eq!(export.status(), StatusCode::OK);
    let archive = export.bytes().await.expect("archive");
    // Let the all-regions node settle what it wrote (checkpoint after a quiet second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let india = app.data.path().join("tenants").join("in");
    let before = files_under(&india);

    let uk = node(&app, "uk-1", &["uk"]).await;
    let base = format!("http://{}", uk.web_addr());
    let refused = |r: reqwest::Response, what: &'static str| async move {
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{what}");
        let body: serde_json::Value = r.json().await.expect("json");
        let message = body["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("`in`") && message.contains("uk"), "{what}: both regions named: {message}");
    };
    let db = format!("{base}/api/v1/databases/{id}");
    refused(c.get(format!("{db}/contacts")).bearer_auth(&t).send().await.expect("list"), "read").await;
    refused(
        c.post(format!("{db}/contacts")).bearer_auth(&t).json(&json!({ "name": "X" })).send().await.expect("add"),
        "write",
    )
    .await;
    refused(
        c.post(format!("{db}/sql")).bearer_auth(&t).json(&json!({ "sql": "SELECT 1" })).send().await.expect("sql"),
        "console",
    )
    .await;
    refused(c.get(format!("{db}/export")).bearer_auth(&t).send().await.expect("export"), "export").await;
    // Creating or importing in India: another node serves it, not this one.
    refused(
        c.post(format!("{base}/api/v1/databases"))
            .bearer_auth(&t)
            .json(&json!({ "name": "another", "region": "in" }))
            .send()
            .await
            .expect("create"),
        "create",
    )
    .await;
    refused(
        c.post(format!("{base}/api/v1/databases/import?name=imported&region=in"))
            .bearer_auth(&t)
            .body(archive.clone())
            .send()
            .await
            .expect("import"),
        "import",
    )
    .await;
    // Its own region works.
    let r = c
        .post(format!("{base}/api/v1/databases"))
        .bearer_auth(&t)
        .json(&json!({ "name": "london", "region": "uk" }))
        .send()
        .await
        .expect("create uk");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(files_under(&india), before, "the uk node wrote nothing of India");

    // The CLI bound to uk refuses too: an export and a restore into India.
    let url = app.database_url();
    let out = app.data.path().join("out.zip");
    let (code, _, err) = cli_run(&[
        "db",
        "export",
        &id,
        "--output",
        out.to_str().expect("path"),
        "--reason",
        "ticket 7",
        "--region",
        "uk",
        "--database-url",
        &url,
        "--data",
        app.data_dir(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("`in`") && err.contains("uk"), "{err}");
    assert!(!out.exists(), "no archive written");
    let (code, _, err) =
        cli_run(&["backup", "run", "--database", &id, "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{err}");
    let (_, list, _) =
        cli_run(&["backup", "list", "--database", &id, "--database-url", &url, "--data", app.data_dir()]);
    let snapshot = list
        .lines()
        .find(|l| l.contains(&id))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("a snapshot: {list}"))
        .to_string();
    let before_restore = files_under(&india);
    let (code, _, err) = cli_run(&[
        "backup",
        "restore",
        &snapshot,
        "--to-new-database",
        "restored",
        "--reason",
        "ticket 8",
        "--region",
        "uk",
        "--database-url",
        &url,
        "--data",
        app.data_dir(),
    ]);
    assert_ne!(code, 0, "restore refused");
    assert!(err.contains("`in`") && err.contains("uk"), "{err}");
    assert_eq!(files_under(&india), before_restore, "the refused restore wrote nothing in India");

    // Each refusal is audited.
    let audit = app.app().services().audit.for_target(&format!("db:{id}")).await.expect("audit");
    assert!(audit.iter().filter(|e| e.action == "residency.refused").count() >= 4, "refusals audited");

    // Each node says what it serves; both are in the registry.
    let health: serde_json::Value =
        c.get(format!("{base}/healthz")).send().await.expect("health").json().await.expect("json");
    assert_eq!(health["regions"], json!(["uk"]));
    assert_eq!(health["regions_physically_separate"], json!(true));
    let health: serde_json::Value = app.get("/healthz").await.json().await.expect("json");
    assert_eq!(health["regions_physically_separate"], json!(false), "one node for every region says so");
    let (code, out, err) = cli_run(&["node", "list", "--json", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{err}");
    let nodes: serde_json::Value = serde_json::from_str(&out).expect("json");
    let uk_row = nodes.as_array().expect("list").iter().find(|n| n["name"] == "uk-1").expect("uk-1 registered");
    assert_eq!(uk_row["regions"], json!(["uk"]));
    assert_eq!(uk_row["live"], json!(true));
    assert_eq!(nodes.as_array().expect("list").len(), 2, "{nodes}");
    // The admin role sees the same in the staff console; other roles do not.
    let admin = crate::helpers::staff_session(&app, "ops@seldesk.example", "admin").await;
    let page = c.get(app.url("/staff/nodes")).header("cookie", &admin).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("body");
    assert!(html.contains("uk-1") && html.contains("United Kingdom"), "{html}");
    assert!(!html.contains("stream-alert"), "no node is behind");
    // A node whose commits wait to reach the backup regions is an alert,
    // on the page and from `seldesk backup status`.
    let status = || cli_run(&["backup", "status", "--database-url", &url, "--data", app.data_dir()]);
    let (code, out, err) = status();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("node uk-1") && out.contains(&id), "{out}");
    // (A node of its own, so that no heartbeat of a running one resets it.)
    let registry = uk.services().databases.nodes();
    registry.register("sg-9", "a-node-of-the-test", &["sg".to_string()], "").await.expect("register");
    registry.set_stream_lag("sg-9", 15_000).await.expect("lag");
    let html = c.get(app.url("/staff/nodes")).header("cookie", &admin).send().await.expect("page").text().await;
    let html = html.expect("body");
    assert!(html.contains("stream-alert") && html.contains("sg-9 (15.0 s)"), "{html}");
    let (code, _, err) = status();
    assert_eq!(code, 1);
    assert!(err.contains("ALERT") && err.contains("sg-9"), "{err}");
    registry.retire("sg-9").await.expect("retire");
    let support = crate::helpers::staff_session(&app, "help@seldesk.example", "support").await;
    let page = c.get(app.url("/staff/nodes")).header("cookie", &support).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    // Past its grace period, an India database is the India node's to
    // remove: a retention run on the uk node leaves it, one on a node that
    // serves India removes it.
    let r = c.post(app.url(&format!("/api/v1/databases/{id}/cancel"))).bearer_auth(&t).send().await.expect("cancel");
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance(time::Duration::days(30));
    uk.services().retention.run(&seldesk_domain::Actor::System, false).await.expect("uk retention");
    assert!(india.join(&id).join("db.sqlite").is_file(), "not the uk node's to remove");
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    assert!(!india.join(&id).exists(), "removed by a node that serves India");
    // Each node's /metrics has its databases, heartbeat and writers.
    let metrics = c.get(format!("{}/metrics", app.admin)).send().await.expect("metrics").text().await.expect("text");
    for name in ["seldesk_node_databases", "seldesk_node_heartbeat_timestamp_seconds", "seldesk_open_databases"] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    uk.stop().await;
    app.stop().await;
}

// promise: RES-1
#[tokio::test]
async fn with_no_live_node_of_a_region_nothing_is_created_there() {
    let app =
        spawn_app_with(|c| c.node.regions = vec!["uk".into()], seldesk_domain::Policy::builtin().expect("p")).await;
    app.sign_up("nowhere@example.com", PW).await;
    let t = app.token("nowhere@example.com", PW).await;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&t)
        .json(&json!({ "name": "mumbai", "region": "in" }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("India") && m.contains("nothing was created")),
        "{body}"
    );
    assert!(!app.data.path().join("tenants").join("in").exists(), "nothing written");
    let list = app.client.get(app.url("/api/v1/databases")).bearer_auth(&t).send().await.expect("list");
    assert!(!list.text().await.expect("body").contains("mumbai"), "no record either");
    // A region the policy does not have is refused before anything runs.
    let (code, _, err) =
        cli_run(&["db", "list", "--region", "mars", "--database-url", &app.database_url(), "--data", app.data_dir()]);
    assert_ne!(code, 0);
    assert!(err.contains("mars") && err.contains("in, sg, uk"), "{err}");
    app.stop().await;
}

/// A node of a cluster over its own data folder and the shared control plane.
async fn cluster_node_with(
    url: &str,
    data: &Path,
    name: &str,
    regions: &[&str],
    secret: &Path,
    clock: &seldesk_domain::TestClock,
    tweak: impl FnOnce(&mut seldesk::Config),
) -> seldesk::Application {
    let mut config = crate::helpers::test_config(data, url.to_string());
    tweak(&mut config);
    config.node.regions = regions.iter().map(|r| r.to_string()).collect();
    config.node.name = Some(name.to_string());
    config.node.internal_listen = Some("127.0.0.1:0".parse().expect("addr"));
    config.node.cluster_secret_file = Some(secret.to_path_buf());
    seldesk::Application::build(config, seldesk_domain::Policy::builtin().expect("policy"), Arc::new(clock.clone()))
        .await
        .expect("the node starts")
}

/// A uk node (`a-uk`) and an India node (`b-in`) on one control plane, each
/// over its own data folder, with the cluster's secret; `tweak` applies to both.
struct TwoNodes {
    a: seldesk::Application,
    b: seldesk::Application,
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
    /// The control plane, the secret and anything else both share.
    shared: tempfile::TempDir,
    url: String,
    secret: PathBuf,
    clock: seldesk_domain::TestClock,
}

async fn two_nodes(tweak: impl Fn(&mut seldesk::Config)) -> TwoNodes {
    let (a_dir, b_dir, shared) =
        (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"), tempfile::tempdir().expect("shared"));
    let url = crate::helpers::fresh_database_url(shared.path()).await;
    let secret = shared.path().join("cluster.secret");
    std::fs::write(&secret, "a shared secret of the cluster, long enough\n").expect("secret");
    let clock = seldesk_domain::TestClock::new(time::OffsetDateTime::now_utc());
    let a = cluster_node_with(&url, a_dir.path(), "a-uk", &["uk"], &secret, &clock, &tweak).await;
    let b = cluster_node_with(&url, b_dir.path(), "b-in", &["in"], &secret, &clock, &tweak).await;
    TwoNodes { a, b, a_dir, b_dir, shared, url, secret, clock }
}

// promise: RES-1, DB-5
#[tokio::test]
async fn any_node_answers_for_any_database_and_its_files_stay_on_its_home_node() {
    // `shared` holds the control plane: kept to the end of the test.
    let TwoNodes { a, b, a_dir, b_dir, shared: _shared, .. } = two_nodes(|_| {}).await;
    let (base_a, base_b) = (format!("http://{}", a.web_addr()), format!("http://{}", b.web_addr()));
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base_a, "two@example.com", PW).await;

    // Made through the uk node, the India database lives on the India node.
    let id = create_db(&c, &base_a, &t, "mumbai", "in").await;
    assert!(b_dir.path().join("tenants/in").join(&id).join("db.sqlite").is_file(), "on the India node");
    assert!(!a_dir.path().join("tenants/in").exists(), "nothing of India on the uk node");

    // Used through either node: the same database.
    let db_a = format!("{base_a}/api/v1/databases/{id}");
    let r = c.post(format!("{db_a}/contacts")).bearer_auth(&t).json(&json!({ "name": "Asha Rao" })).send().await;
    assert_eq!(r.expect("add").status(), StatusCode::CREATED);
    let list: serde_json::Value = c
        .get(format!("{base_b}/api/v1/databases/{id}/contacts"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1, "{list}");
    let sql: serde_json::Value = c
        .post(format!("{db_a}/sql"))
        .bearer_auth(&t)
        .json(&json!({ "sql": "SELECT name FROM contacts" }))
        .send()
        .await
        .expect("sql")
        .json()
        .await
        .expect("json");
    assert_eq!(sql["rows"][0][0], "Asha Rao");
    let export = c.get(format!("{db_a}/export")).bearer_auth(&t).send().await.expect("export");
    assert_eq!(export.status(), StatusCode::OK);
    let archive = export.bytes().await.expect("archive");
    assert!(archive.starts_with(b"PK"), "a zip, streamed through the uk node");
    let r = c
        .post(format!("{base_a}/api/v1/databases/import?name=copied&region=in"))
        .bearer_auth(&t)
        .body(archive.clone())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
    let imported = std::fs::read_dir(b_dir.path().join("tenants/in")).expect("in").count();
    assert!(imported >= 2, "the import is on the India node too");
    assert!(!a_dir.path().join("tenants/in").exists(), "still nothing of India on the uk node");
    // A uk database stays on the uk node.
    let r = c
        .post(format!("{base_b}/api/v1/databases"))
        .bearer_auth(&t)
        .json(&json!({ "name": "london", "region": "uk" }))
        .send()
        .await
        .expect("create uk");
    assert_eq!(r.status(), StatusCode::CREATED);
    let uk_id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    assert!(a_dir.path().join("tenants/uk").join(&uk_id).join("db.sqlite").is_file());

    // The internal listener takes the cluster's nodes only, and says so in the audit trail.
    let internal = a.services().databases.nodes().list().await.expect("nodes");
    let b_address = internal.iter().find(|n| n.name == "b-in").expect("b").address.clone();
    for secret in [None, Some("not the secret at all, but long enough to try")] {
        let mut req = c.get(format!("{b_address}/api/v1/databases/{id}/contacts")).bearer_auth(&t);
        if let Some(s) = secret {
            req = req.header("x-seldesk-cluster", s);
        }
        assert_eq!(req.send().await.expect("internal").status(), StatusCode::UNAUTHORIZED);
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'cluster.refused'")
        .fetch_one(a.services().db.pool())
        .await
        .expect("count");
    assert_eq!(rows, 2, "both refusals audited");

    // The India node down: its databases answer 503 through the uk node, the rest keep working.
    b.stop().await;
    let r = c.get(format!("{db_a}/contacts")).bearer_auth(&t).send().await.expect("down");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("India")), "{body}");
    let r = c.get(format!("{base_a}/api/v1/databases/{uk_id}/contacts")).bearer_auth(&t).send().await.expect("uk");
    assert_eq!(r.status(), StatusCode::OK, "the uk database keeps working");
    a.stop().await;
}

// promise: RES-1
#[tokio::test]
async fn a_customer_uses_an_india_database_through_the_uk_node_in_chromium() {
    // `shared` holds the control plane: kept to the end of the test.
    let TwoNodes { a, b, a_dir, b_dir, shared: _shared, .. } = two_nodes(|_| {}).await;
    let base = format!("http://{}", a.web_addr());
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/accounts"))
        .json(&json!({ "name": "Asha Rao", "company": "Rao Textiles", "email": "browse@example.com", "password": PW }))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), StatusCode::CREATED);

    let br = crate::browser::Browser::start().await;
    br.reject_cookies(&format!("{base}/")).await;
    br.client.goto(&format!("{base}/signin?next=/databases")).await.expect("signin");
    br.fill("email", "browse@example.com").await;
    br.fill("password", PW).await;
    br.click("form.stack button[type=submit]").await;
    br.wait_for_text("New database").await;
    br.fill("name", "mumbai-crm").await;
    let form = br.client.find(fantoccini::Locator::Css("form[action='/databases']")).await.expect("form");
    form.find(fantoccini::Locator::Css("select[name='region']"))
        .await
        .expect("select")
        .select_by_value("in")
        .await
        .expect("India");
    br.click("form[action='/databases'] button[type=submit]").await;
    br.wait_for_text("Contacts").await;
    br.fill("name", "Lee Wong").await;
    br.fill("email", "lee@example.in").await;
    br.click("form[action$='/contacts'] button[type=submit]").await;
    br.wait_for_text("Lee Wong").await;
    let page = br.client.current_url().await.expect("url");
    assert!(page.as_str().starts_with(&base), "the customer stayed on the node they came to: {page}");
    br.screenshot("database-through-another-node").await;
    br.close().await;

    let ids: Vec<String> = std::fs::read_dir(b_dir.path().join("tenants/in"))
        .expect("in")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 32)
        .collect();
    assert_eq!(ids.len(), 1, "the database is on the India node: {ids:?}");
    let conn = rusqlite::Connection::open(b_dir.path().join("tenants/in").join(&ids[0]).join("db.sqlite")).expect("db");
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM contacts WHERE name = 'Lee Wong'", [], |r| r.get(0)).expect("n");
    assert_eq!(n, 1);
    assert!(!a_dir.path().join("tenants/in").exists(), "nothing of India on the uk node");
    b.stop().await;
    a.stop().await;
}

// promise: BAK-1, BAK-4
#[tokio::test]
async fn a_lost_nodes_databases_are_recovered_on_another_node_of_its_data_center() {
    let vault = tempfile::tempdir().expect("vault");
    // The vault's regions are shared by every node, as buckets would be.
    let stores: std::collections::BTreeMap<String, String> =
        ["in", "sg"].iter().map(|r| (r.to_string(), vault.path().join(r).display().to_string())).collect();
    let with_stores = |c: &mut seldesk::Config| c.backup_stores = stores.clone();
    let TwoNodes { a, b, a_dir: _a_dir, b_dir, shared, url, secret, clock } = two_nodes(with_stores).await;
    let c_dir = tempfile::tempdir().expect("c");
    let base = format!("http://{}", a.web_addr());
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base, "lost@example.com", PW).await;
    let id = create_db(&c, &base, &t, "pune", "in").await;
    let add = |name: &'static str| {
        let (c, t, url) = (c.clone(), t.clone(), format!("{base}/api/v1/databases/{id}/contacts"));
        async move { c.post(url).bearer_auth(t).json(&json!({ "name": name })).send().await.expect("add").status() }
    };
    assert_eq!(add("Before the backup").await, StatusCode::CREATED);
    b.services().backups.run(Some(&id), Arc::new(|_, _| {})).await.expect("backup on the India node");
    assert_eq!(add("After the backup").await, StatusCode::CREATED);

    // A job about it waits for the India node (a removal due, say).
    let waiting = a
        .services()
        .queue
        .enqueue(
            seldesk_jobs::NewJob::of(&seldesk_tenants::ExpireJob { database: id.clone() })
                .dedupe(format!("expire:{id}"))
                .on_node("b-in")
                .run_at(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
        )
        .await
        .expect("enqueue")
        .expect("new job");
    // The India node is lost with its disk.
    b.stop().await;
    std::fs::remove_dir_all(b_dir.path().join("tenants")).expect("the disk is gone");
    let r = c.get(format!("{base}/api/v1/databases/{id}/contacts")).bearer_auth(&t).send().await.expect("down");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Recovery is refused while the node may come back.
    let config = shared.path().join("c.toml");
    let toml_stores: String = stores.iter().map(|(k, v)| format!("{k} = \"{}\"\n", v.replace('\\', "\\\\"))).collect();
    std::fs::write(&config, format!("[backup_stores]\n{toml_stores}")).expect("config");
    std::fs::create_dir_all(c_dir.path().join("keys")).expect("keys");
    std::fs::copy(b_dir.path().join("keys/vault.key"), c_dir.path().join("keys/vault.key")).expect("the vault key");
    let recover = || {
        cli_run(&[
            "--config",
            config.to_str().expect("path"),
            "node",
            "recover",
            "b-in",
            "--region",
            "in",
            "--node-name",
            "c-in",
            "--database-url",
            &url,
            "--data",
            c_dir.path().to_str().expect("path"),
        ])
    };
    let (code, _, err) = recover();
    assert_ne!(code, 0, "b-in was seen seconds ago");
    assert!(err.contains("not lost"), "{err}");
    // Silent for long: lost.
    sqlx::query("UPDATE nodes SET last_seen_at = 0 WHERE name = 'b-in'")
        .execute(a.services().db.pool())
        .await
        .expect("silence");
    let (code, out, err) = recover();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pune") && out.contains("restored here as it was at"), "{out}");
    assert!(out.contains("retired"), "{out}");
    let told = std::fs::read_dir(c_dir.path().join("mail/outbox"))
        .expect("outbox")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).expect("mail"))
        .any(|m| m.contains("lost@example.com") && m.contains("restored"));
    assert!(told, "the owner is told the time of the backup used");

    // The new India node serves it, through any node, as of the backup.
    let c_node = cluster_node_with(&url, c_dir.path(), "c-in", &["in"], &secret, &clock, with_stores).await;
    // The uk node may remember the old home for up to 2 s.
    let mut list = serde_json::Value::Null;
    for _ in 0..50 {
        let r = c.get(format!("{base}/api/v1/databases/{id}/contacts")).bearer_auth(&t).send().await.expect("list");
        if r.status() == StatusCode::OK {
            list = r.json().await.expect("json");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let names: std::collections::BTreeSet<&str> =
        list.as_array().expect("list").iter().filter_map(|c| c["name"].as_str()).collect();
    // The snapshot, and what the India node streamed after it (all of it:
    // it stopped, shipping its last commits, before its disk was lost).
    assert_eq!(names, ["After the backup", "Before the backup"].into(), "as of its last streamed commit");
    let nodes = a.services().databases.nodes().list().await.expect("nodes");
    assert!(nodes.iter().any(|n| n.name == "b-in" && n.retired && !n.live), "b-in is retired");
    let node: Option<String> = sqlx::query_scalar("SELECT node FROM jobs WHERE id = $1")
        .bind(waiting)
        .fetch_one(a.services().db.pool())
        .await
        .expect("job");
    assert_eq!(node.as_deref(), Some("c-in"), "its job runs on the node that took it over");
    c_node.stop().await;
    a.stop().await;
}

/// Makes database `name` in `region` through the node at `base`; its id.
async fn create_db(c: &reqwest::Client, base: &str, t: &str, name: &str, region: &str) -> String {
    let r = c
        .post(format!("{base}/api/v1/databases"))
        .bearer_auth(t)
        .json(&json!({ "name": name, "region": region }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED, "{name} in {region}");
    r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string()
}

/// Adds `n` contacts named `bulk <i>` with 400 bytes of notes each, in one
/// statement of the SQL console: bulk for a copy to take rounds.
async fn bulk_contacts(c: &reqwest::Client, base: &str, t: &str, id: &str, n: u32) {
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO contacts (name, notes, created_at, updated_at) \
         SELECT 'bulk ' || i, hex(randomblob(200)), 'now', 'now' FROM n"
    );
    let r =
        c.post(format!("{base}/api/v1/databases/{id}/sql")).bearer_auth(t).json(&json!({ "sql": sql })).send().await;
    let r = r.expect("bulk");
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap_or_default());
}

/// Nodes that run their jobs, as in production.
fn with_workers(c: &mut seldesk::Config) {
    c.jobs.workers = 1;
    c.jobs.poll_ms = 20;
}

/// Adds contacts named `w<n>` through `base` until `stop`, retrying what is
/// refused for a moment; returns the names whose write was acknowledged.
async fn write_loop(
    c: reqwest::Client,
    base: String,
    t: String,
    id: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let name = format!("w{n}");
        n += 1;
        let sent = c
            .post(format!("{base}/api/v1/databases/{id}/contacts"))
            .bearer_auth(&t)
            .json(&json!({ "name": name }))
            .send()
            .await;
        match sent.map(|r| r.status()) {
            Ok(StatusCode::CREATED) => acknowledged.push(name),
            Ok(s) => {
                // Held for the switch (503 with Retry-After: 1) or a moment
                // of the forwarding node not knowing the new home yet.
                assert!(s == StatusCode::SERVICE_UNAVAILABLE, "a write was refused with {s}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    acknowledged
}

/// The contact names of database `id` that match `glob`, read through `base`.
async fn contact_names(
    c: &reqwest::Client,
    base: &str,
    t: &str,
    id: &str,
    glob: &str,
) -> std::collections::BTreeSet<String> {
    // Page by page: the console answers at most 1,000 rows at a time.
    const PAGE: usize = 500;
    let mut names = std::collections::BTreeSet::new();
    let mut after = String::new();
    loop {
        let mut tries = 0;
        let r = loop {
            let r = c
                .post(format!("{base}/api/v1/databases/{id}/sql"))
                .bearer_auth(t)
                .json(&json!({
                    "sql": format!("SELECT DISTINCT name FROM contacts WHERE name GLOB ?1 AND name > ?2 ORDER BY name LIMIT {PAGE}"),
                    "params": [glob, after],
                }))
                .send()
                .await
                .expect("sql");
            // Retried as Retry-After says while a node learns the new home.
            if r.status() != StatusCode::SERVICE_UNAVAILABLE || tries == 50 {
                break r;
            }
            tries += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = r.json().await.expect("json");
        let page: Vec<String> =
            body["rows"].as_array().expect("rows").iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
        let full = page.len() == PAGE;
        match page.last() {
            Some(last) if full => after = last.clone(),
            _ => {
                names.extend(page);
                return names;
            }
        }
        names.extend(page);
    }
}

/// Waits until database `id` is active and not moving; returns its region.
async fn settled_region(c: &reqwest::Client, base: &str, t: &str, id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let r = c.get(format!("{base}/api/v1/databases/{id}")).bearer_auth(t).send().await.expect("show");
        if r.status() == StatusCode::OK {
            let d: serde_json::Value = r.json().await.expect("json");
            if d["status"] == "active" && d.get("moving").is_none() {
                return d["region"].as_str().expect("region").to_string();
            }
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let r = c.get(format!("{base}/api/v1/databases/{id}")).bearer_auth(t).send().await.expect("show");
            panic!("the move did not settle: {}", r.text().await.unwrap_or_default());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// promise: DB-8, RES-1
#[tokio::test]
async fn a_database_moves_between_nodes_under_writes_without_losing_one() {
    // Each node runs its own jobs: the move runs on the database's home.
    let TwoNodes { a, b, a_dir, b_dir, shared: _shared, .. } = two_nodes(with_workers).await;
    let (base_a, base_b) = (format!("http://{}", a.web_addr()), format!("http://{}", b.web_addr()));
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base_a, "travel@example.com", PW).await;
    let id = create_db(&c, &base_a, &t, "nomad", "in").await;
    // Some bulk, and an attachment, so the copy takes rounds.
    bulk_contacts(&c, &base_a, &t, &id, 20_000).await;
    let contact: serde_json::Value = c
        .post(format!("{base_a}/api/v1/databases/{id}/contacts"))
        .bearer_auth(&t)
        .json(&json!({ "name": "With a file" }))
        .send()
        .await
        .expect("add")
        .json()
        .await
        .expect("json");
    let cid = contact["id"].as_i64().expect("contact id");
    let r = c
        .post(format!("{base_a}/api/v1/databases/{id}/contacts/{cid}/attachments?name=contract.txt"))
        .bearer_auth(&t)
        .body("signed on the dotted line")
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());

    // Writes keep coming through both nodes while it moves from India to the uk.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [&base_a, &base_b]
        .into_iter()
        .map(|base| tokio::spawn(write_loop(c.clone(), base.clone(), t.clone(), id.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = c
        .post(format!("{base_a}/api/v1/databases/{id}/move"))
        .bearer_auth(&t)
        .json(&json!({ "region": "uk" }))
        .send()
        .await
        .expect("move");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().await.unwrap_or_default());
    assert_eq!(settled_region(&c, &base_b, &t, &id).await, "uk");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert!(acknowledged.len() > 20, "the load ran: {}", acknowledged.len());

    // Served by the uk node from its own disk; nothing of it left in India.
    assert!(a_dir.path().join("tenants/uk").join(&id).join("db.sqlite").is_file(), "on the uk node");
    let files = files_under(&a_dir.path().join("tenants/uk").join(&id).join("files"));
    assert_eq!(files.len(), 1, "the attachment came along");
    assert!(!b_dir.path().join("tenants/in").join(&id).exists(), "the India copy is erased");
    let leftovers: Vec<_> = files_under(&b_dir.path().join("tenants"))
        .into_iter()
        .filter(|f| f.0.to_string_lossy().contains(&id))
        .collect();
    assert!(leftovers.is_empty(), "nothing of it on the India node: {leftovers:?}");
    let names = contact_names(&c, &base_b, &t, &id, "w[0-9]*").await;
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !names.contains(*n)).collect();
    assert!(lost.is_empty(), "every acknowledged write is there; lost {} of {}", lost.len(), acknowledged.len());
    assert_eq!(contact_names(&c, &base_b, &t, &id, "bulk 20000").await.len(), 1);
    assert_eq!(contact_names(&c, &base_b, &t, &id, "With a file").await.len(), 1);
    let r = c
        .get(format!("{base_b}/api/v1/databases/{id}/contacts/{cid}/attachments"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("attachments");
    assert_eq!(r.status(), StatusCode::OK);

    // The audit trail says how long writes were held.
    let details: String = sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'database.moved'")
        .fetch_one(a.services().db.pool())
        .await
        .expect("moved");
    let details: serde_json::Value = serde_json::from_str(&details).expect("json");
    assert_eq!(details["node"], "a-uk", "{details}");
    assert!(details["rounds"].as_u64().is_some_and(|r| r >= 2), "{details}");
    let paused = details["paused_ms"].as_u64().expect("paused_ms");
    eprintln!("moved in {} rounds, {} bytes, writes held {paused} ms", details["rounds"], details["bytes"]);
    // The sending node counts it for /metrics.
    let stats = b.services().databases.move_stats();
    assert_eq!(stats.finished.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(stats.sent_bytes.load(std::sync::atomic::Ordering::Relaxed) >= details["bytes"].as_u64().unwrap_or(0));
    a.stop().await;
    b.stop().await;
}

// promise: DB-8, RES-1
#[tokio::test]
async fn a_drained_node_hands_its_databases_to_another_node_of_its_data_center() {
    let TwoNodes { a, b, b_dir, shared, url, secret, clock, .. } = two_nodes(with_workers).await;
    let base = format!("http://{}", a.web_addr());
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base, "drain@example.com", PW).await;
    let mut ids = Vec::new();
    for name in ["delhi", "chennai"] {
        ids.push(create_db(&c, &base, &t, name, "in").await);
    }
    // A second India node joins; the first goes down for maintenance.
    let c_dir = tempfile::tempdir().expect("c");
    let c_node = cluster_node_with(&url, c_dir.path(), "c-in", &["in"], &secret, &clock, with_workers).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(write_loop(c.clone(), base.clone(), t.clone(), ids[0].clone(), stop.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let data = shared.path().join("cli");
    let drain = |extra: &[&str]| {
        let mut args = vec!["node", "drain", "b-in", "--database-url", &url, "--data", data.to_str().expect("path")];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || cli_run(&args.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .expect("cli")
        }
    };
    // The command queues the moves by the wall clock; the nodes' clock follows it.
    let ticking = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                clock.set(time::OffsetDateTime::now_utc());
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let (code, out, err) = drain(&[]).await;
    ticking.abort();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("moving to c-in") && out.contains("holds no active database"), "{out}");
    assert!(err.contains("2 of 2 moved"), "progress is shown: {err}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = writer.await.expect("writer");

    for id in &ids {
        assert!(c_dir.path().join("tenants/in").join(id).join("db.sqlite").is_file(), "on c-in");
        assert!(!b_dir.path().join("tenants/in").join(id).exists(), "gone from b-in");
        let home = a.services().databases.home(id).await.expect("home").expect("record");
        assert_eq!(home, ("in".to_string(), Some("c-in".to_string())));
    }
    let names = contact_names(&c, &base, &t, &ids[0], "w[0-9]*").await;
    let lost = acknowledged.iter().filter(|n| !names.contains(*n)).count();
    assert_eq!(lost, 0, "no acknowledged write lost of {}", acknowledged.len());
    // New India databases go to the node that is not drained.
    let nodes = a.services().databases.nodes().list().await.expect("nodes");
    assert!(nodes.iter().any(|n| n.name == "b-in" && n.draining));
    let id = create_db(&c, &base, &t, "kochi", "in").await;
    assert!(c_dir.path().join("tenants/in").join(&id).is_dir(), "placed on c-in");
    let (code, out, _) = drain(&["--cancel"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("takes new databases again"), "{out}");
    c_node.stop().await;
    b.stop().await;
    a.stop().await;
}

/// Where a database's folder is under a node's data folder: the regions
/// holding `<region>/<id>`, and any staging folder a move left.
fn copies_of(data: &Path, id: &str) -> (Vec<String>, Vec<PathBuf>) {
    let (mut held, mut staging) = (Vec::new(), Vec::new());
    for region in std::fs::read_dir(data.join("tenants")).into_iter().flatten().filter_map(Result::ok) {
        if region.path().join(id).exists() {
            held.push(region.file_name().to_string_lossy().to_string());
        }
        let incoming = region.path().join(format!(".incoming-{id}"));
        if incoming.exists() {
            staging.push(incoming);
        }
    }
    (held, staging)
}

// promise: DB-8, RES-1
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_between_nodes_survives_a_kill_of_either_node_at_any_moment() {
    let shared = tempfile::tempdir().expect("shared");
    let url = crate::helpers::fresh_database_url(shared.path()).await;
    let secret = shared.path().join("cluster.secret");
    std::fs::write(&secret, "a shared secret of the cluster, long enough\n").expect("secret");
    let node = |name: &str, region: &str| {
        let args: Vec<String> = [
            "--region",
            region,
            "--node-name",
            name,
            "--internal-listen",
            "127.0.0.1:0",
            "--cluster-secret-file",
            secret.to_str().expect("path"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        crate::helpers::ServerProcess::start_with(
            tempfile::tempdir().expect("node"),
            url.clone(),
            &args,
            &[("SELDESK_JOBS__POLL_MS", "20")],
        )
    };
    // [uk node, India node]
    let mut nodes = [node("a-uk", "uk"), node("b-in", "in")];
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &nodes[0].base, "drill@example.com", PW).await;
    let id = create_db(&c, &nodes[0].base, &t, "drill", "in").await;
    bulk_contacts(&c, &nodes[0].base, &t, &id, 20_000).await;

    // The full drill (docs/scaling-out.md): SELDESK_NODE_MOVE_DRILL_ROUNDS=50.
    let rounds: usize = std::env::var("SELDESK_NODE_MOVE_DRILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut region = "in".to_string();
    let (mut mid_move, mut acknowledged_total) = (0usize, 0usize);
    for round in 0..rounds {
        let (from, to) = if region == "in" { (1, 0) } else { (0, 1) };
        let to_region = if region == "in" { "uk" } else { "in" };
        let victim = if next() % 2 == 0 { from } else { to };
        let survivor = 1 - victim;
        let base = nodes[survivor].base.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = tokio::spawn(write_loop(c.clone(), base.clone(), t.clone(), id.clone(), stop.clone()));
        let mut tries = 0;
        let r = loop {
            let r = c
                .post(format!("{base}/api/v1/databases/{id}/move"))
                .bearer_auth(&t)
                .json(&json!({ "region": to_region }))
                .send()
                .await
                .expect("move");
            // A node that still thought it lived on its old home: retried, as Retry-After says.
            if r.status() != StatusCode::SERVICE_UNAVAILABLE || tries == 20 {
                break r;
            }
            tries += 1;
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        };
        assert_eq!(r.status(), StatusCode::ACCEPTED, "round {round}: {}", r.text().await.unwrap_or_default());
        tokio::time::sleep(std::time::Duration::from_millis(next() % 150)).await;
        let d: serde_json::Value = c
            .get(format!("{base}/api/v1/databases/{id}"))
            .bearer_auth(&t)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .unwrap_or_default();
        let moving = d["status"] == "moving";
        mid_move += usize::from(moving);
        let killed = if victim == from { "source" } else { "destination" };
        tokio::task::block_in_place(|| nodes[victim].kill_and_restart());
        region = settled_region(&c, &base, &t, &id).await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acknowledged = writer.await.expect("writer");
        acknowledged_total += acknowledged.len();

        // Served from exactly one node, in the region the control plane says.
        let holder = if region == "uk" { 0 } else { 1 };
        let (held, _) = copies_of(nodes[holder].dir.path(), &id);
        let (other, _) = copies_of(nodes[1 - holder].dir.path(), &id);
        assert_eq!((held, other), (vec![region.clone()], vec![]), "round {round}: one copy, on the {region} node");
        let names = contact_names(&c, &base, &t, &id, "w[0-9]*").await;
        let lost = acknowledged.iter().filter(|n| !names.contains(*n)).count();
        assert_eq!(lost, 0, "round {round}: {lost} of {} acknowledged writes lost", acknowledged.len());
        // Staging folders are dropped too (at once, or when the killed node starts).
        let started = std::time::Instant::now();
        while [0, 1].iter().any(|n| !copies_of(nodes[*n].dir.path(), &id).1.is_empty()) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "round {round}: a staging folder is left");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        eprintln!(
            "round {round}: {} → {to_region}, killed the {killed} {}, in {region}, {} acknowledged writes all there",
            if to_region == "uk" { "in" } else { "uk" },
            if moving { "mid-move" } else { "before or after the move" },
            acknowledged.len()
        );
        // The next move starts from a settled database: let the names be
        // unique across rounds.
        let r = c
            .post(format!("{base}/api/v1/databases/{id}/sql"))
            .bearer_auth(&t)
            .json(&json!({ "sql": "UPDATE contacts SET name = 'r' || ?1 || name WHERE name GLOB 'w[0-9]*'", "params": [round] }))
            .send()
            .await
            .expect("rename");
        assert_eq!(r.status(), StatusCode::OK, "round {round}");
    }
    eprintln!("{mid_move} of {rounds} kills landed during a move; {acknowledged_total} acknowledged writes, none lost");
    assert!(mid_move >= 1, "no kill landed during a move");
}

// promise: DB-7, RES-1
#[tokio::test]
async fn a_grace_period_removal_runs_on_the_databases_home_node() {
    let TwoNodes { a, b, b_dir, shared: _shared, clock, .. } = two_nodes(with_workers).await;
    let base = format!("http://{}", a.web_addr());
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base, "expire@example.com", PW).await;
    let id = create_db(&c, &base, &t, "bygone", "in").await;
    let r = c.post(format!("{base}/api/v1/databases/{id}/cancel")).bearer_auth(&t).send().await.expect("cancel");
    assert!(r.status().is_success(), "{}", r.status());
    assert!(b_dir.path().join("tenants/in").join(&id).is_dir());
    // Past the grace period; the retention run happens on the uk node.
    clock.advance(time::Duration::days(400));
    a.services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    let started = std::time::Instant::now();
    while b_dir.path().join("tenants/in").join(&id).exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the India node removed it");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pool = a.services().db.pool();
    // The files go first, then the record: waited for.
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE id = $1")
            .bind(&id)
            .fetch_one(pool)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "its record is gone too");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let node: Option<String> =
        sqlx::query_scalar("SELECT node FROM jobs WHERE kind = 'databases.expire'").fetch_one(pool).await.expect("job");
    assert_eq!(node.as_deref(), Some("b-in"), "the job ran on its home node");
    let logged = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM erasure_log WHERE category = 'customer_database' AND record = $1 AND reason = 'retention'",
        )
        .bind(&id)
        .fetch_one(pool)
        .await
        .expect("log")
    };
    while logged().await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "in the erasure log");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(logged().await, 1, "in the erasure log once");
    a.stop().await;
    b.stop().await;
}

// promise: RES-1, DB-8
#[tokio::test]
async fn three_data_centers_on_three_nodes_keep_each_databases_files_at_home() {
    let shared = tempfile::tempdir().expect("shared");
    let url = crate::helpers::fresh_database_url(shared.path()).await;
    let secret = shared.path().join("cluster.secret");
    std::fs::write(&secret, "a shared secret of the cluster, long enough\n").expect("secret");
    let clock = seldesk_domain::TestClock::new(time::OffsetDateTime::now_utc());
    let mut nodes = Vec::new();
    for (name, region) in [("n-in", "in"), ("n-sg", "sg"), ("n-uk", "uk")] {
        let dir = tempfile::tempdir().expect("node");
        let app = cluster_node_with(&url, dir.path(), name, &[region], &secret, &clock, with_workers).await;
        nodes.push((region, app, dir));
    }
    let uk = format!("http://{}", nodes[2].1.web_addr());
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &uk, "three@example.com", PW).await;
    let mut ids = Vec::new();
    for region in ["in", "sg"] {
        // Everything through the uk node.
        let id = create_db(&c, &uk, &t, &format!("far-{region}"), region).await;
        let db = format!("{uk}/api/v1/databases/{id}");
        let contact: serde_json::Value = c
            .post(format!("{db}/contacts"))
            .bearer_auth(&t)
            .json(&json!({ "name": "Far Away" }))
            .send()
            .await
            .expect("add")
            .json()
            .await
            .expect("json");
        let cid = contact["id"].as_i64().expect("contact id");
        let r =
            c.post(format!("{db}/contacts/{cid}/attachments?name=note.txt")).bearer_auth(&t).body("far").send().await;
        assert_eq!(r.expect("upload").status(), StatusCode::CREATED);
        let names = contact_names(&c, &uk, &t, &id, "Far*").await;
        assert_eq!(names.len(), 1, "the SQL console answers through the uk node");
        let archive =
            c.get(format!("{db}/export")).bearer_auth(&t).send().await.expect("export").bytes().await.expect("zip");
        let r = c
            .post(format!("{uk}/api/v1/databases/import?name=copy-{region}&region={region}"))
            .bearer_auth(&t)
            .body(archive)
            .send()
            .await
            .expect("import");
        assert_eq!(r.status(), StatusCode::CREATED);
        let copy = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        ids.push((region, id, copy));
    }
    // Each database, its attachment and its copy on its own data center's
    // node only; nothing of India or Singapore on the uk node.
    for (region, id, copy) in &ids {
        for (node_region, _, dir) in &nodes {
            let here = node_region == region;
            for db in [id, copy] {
                let path = dir.path().join("tenants").join(region).join(db);
                assert_eq!(path.join("db.sqlite").is_file(), here, "{db} of {region} on the {node_region} node");
            }
            if !here {
                let foreign: Vec<_> = files_under(&dir.path().join("tenants").join(region));
                assert!(foreign.is_empty(), "nothing of {region} on the {node_region} node: {foreign:?}");
            }
        }
        let home = nodes.iter().find(|n| n.0 == *region).expect("home");
        assert_eq!(files_under(&home.2.path().join("tenants").join(region).join(id).join("files")).len(), 1);
    }
    // Moved from India to Singapore through the uk node: on the Singapore node only.
    let (_, in_id, _) = &ids[0];
    let r = c
        .post(format!("{uk}/api/v1/databases/{in_id}/move"))
        .bearer_auth(&t)
        .json(&json!({ "region": "sg" }))
        .send()
        .await;
    assert_eq!(r.expect("move").status(), StatusCode::ACCEPTED);
    assert_eq!(settled_region(&c, &uk, &t, in_id).await, "sg");
    assert!(nodes[1].2.path().join("tenants/sg").join(in_id).join("db.sqlite").is_file());
    assert!(!nodes[0].2.path().join("tenants/in").join(in_id).exists());
    assert_eq!(contact_names(&c, &uk, &t, in_id, "Far*").await.len(), 1);
    for (_, app, _) in nodes {
        app.stop().await;
    }
}

// promise: ACC-3, RES-1
#[tokio::test]
async fn an_access_archive_built_on_one_node_downloads_through_another() {
    let (a_dir, b_dir, shared) =
        (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"), tempfile::tempdir().expect("s"));
    let url = crate::helpers::fresh_database_url(shared.path()).await;
    let secret = shared.path().join("cluster.secret");
    std::fs::write(&secret, "a shared secret of the cluster, long enough\n").expect("secret");
    let clock = seldesk_domain::TestClock::new(time::OffsetDateTime::now_utc());
    // Blobs in one place every node reaches (a bucket in production), under
    // one key; only the uk node runs jobs.
    let blobs = shared.path().join("blobs").display().to_string();
    let a = cluster_node_with(&url, a_dir.path(), "a-uk", &["uk"], &secret, &clock, |c| {
        with_workers(c);
        c.blobs = Some(blobs.clone());
    })
    .await;
    std::fs::create_dir_all(b_dir.path().join("keys")).expect("keys");
    std::fs::copy(a_dir.path().join("keys/blobs.key"), b_dir.path().join("keys/blobs.key")).expect("the same key");
    let b = cluster_node_with(&url, b_dir.path(), "b-in", &["in"], &secret, &clock, |c| c.blobs = Some(blobs.clone()))
        .await;
    let (base_a, base_b) = (format!("http://{}", a.web_addr()), format!("http://{}", b.web_addr()));
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base_b, "archive@example.com", PW).await;
    let r = c
        .post(format!("{base_b}/api/v1/me/requests"))
        .bearer_auth(&t)
        .json(&json!({ "kind": "access", "password": PW }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let ticket = r.json::<serde_json::Value>().await.expect("json")["id"].as_i64().expect("ticket");
    let started = std::time::Instant::now();
    loop {
        let t: serde_json::Value = c
            .get(format!("{base_a}/api/v1/me/requests/{ticket}"))
            .bearer_auth(&t)
            .send()
            .await
            .expect("ticket")
            .json()
            .await
            .expect("json");
        if t["download_ready"] == true {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the uk node built the archive: {t}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(files_under(&a_dir.path().join("exports")).is_empty(), "nothing on the building node's own disk");
    let r = c
        .get(format!("{base_b}/api/v1/me/requests/{ticket}/download"))
        .bearer_auth(&t)
        .header("x-seldesk-password", PW)
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), StatusCode::OK, "downloaded through the India node");
    let bytes = r.bytes().await.expect("zip");
    assert_eq!(&bytes[..2], b"PK");
    let sealed = files_under(&shared.path().join("blobs/access"));
    assert_eq!(sealed.len(), 1);
    let raw = std::fs::read(&sealed[0].0).expect("object");
    assert!(!raw.starts_with(b"PK") && raw.len() > bytes.len(), "sealed at rest, not the zip itself");
    a.stop().await;
    b.stop().await;
}

// promise: UPG-1, UPG-2, UPG-4
#[tokio::test]
async fn an_upgrade_uploaded_through_one_node_is_run_by_another_and_downloaded_anywhere() {
    use crate::backups::{boto3, s3_endpoint};
    let (a_dir, b_dir, shared) =
        (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"), tempfile::tempdir().expect("s"));
    let url = crate::helpers::fresh_database_url(shared.path()).await;
    let secret = shared.path().join("cluster.secret");
    std::fs::write(&secret, "a shared secret of the cluster, long enough\n").expect("secret");
    let clock = seldesk_domain::TestClock::new(time::OffsetDateTime::now_utc());
    // Uploads and results in a bucket both nodes reach, sealed under the
    // upgrade service's one key; only the uk node runs upgrades.
    let bucket = format!("seldesk-upg-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    boto3("s3.create_bucket(Bucket=sys.argv[2])\nprint(json.dumps(True))", &[&bucket]);
    let objects = format!(
        "s3://{bucket}/upg?endpoint={}&allow_http=true&access_key_id=test&secret_access_key=test&region=us-east-1",
        s3_endpoint()
    );
    let list = || -> Vec<String> {
        let keys = boto3(
            "r = s3.list_objects_v2(Bucket=sys.argv[2])\nprint(json.dumps([o['Key'] for o in r.get('Contents', [])]))",
            &[&bucket],
        );
        serde_json::from_value(keys).expect("keys")
    };
    let a = cluster_node_with(&url, a_dir.path(), "a-uk", &["uk"], &secret, &clock, |c| {
        with_workers(c);
        c.upgrades.objects = Some(objects.clone());
    })
    .await;
    std::fs::create_dir_all(b_dir.path().join("keys")).expect("keys");
    std::fs::copy(a_dir.path().join("keys/upgrade.key"), b_dir.path().join("keys/upgrade.key")).expect("one key");
    let b = cluster_node_with(&url, b_dir.path(), "b-in", &["in"], &secret, &clock, |c| {
        c.upgrades.objects = Some(objects.clone());
    })
    .await;
    let (base_a, base_b) = (format!("http://{}", a.web_addr()), format!("http://{}", b.web_addr()));
    let c = reqwest::Client::new();
    let t = crate::helpers::customer_token_at(&c, &base_b, "upgrade@example.com", PW).await;

    // Large enough to go to the bucket in parts.
    let scratch = tempfile::tempdir().expect("tmp");
    let old = std::fs::read(crate::upgrades::version_1_database(scratch.path(), 120_000)).expect("old");
    assert!(old.len() > 8 * 1024 * 1024, "{} bytes", old.len());
    let r = c
        .post(format!("{base_b}/api/v1/upgrades?name=old.sqlite"))
        .bearer_auth(&t)
        .body(old)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    assert_eq!(list(), vec![format!("upg/uploads/{id}")], "the upload is in the bucket");

    let started = std::time::Instant::now();
    let req = loop {
        let req: serde_json::Value = c
            .get(format!("{base_a}/api/v1/upgrades/{id}"))
            .bearer_auth(&t)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        if req["status"] == "done" || req["status"] == "failed" {
            break req;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the uk node upgrades it: {req}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(req["status"], "done", "{req}");
    assert_eq!(req["report"]["rows_after"]["contacts"], 120_000);
    assert_eq!(list(), vec![format!("upg/results/{id}.zip")], "the upload went, the result is in the bucket");
    for dir in [a_dir.path(), b_dir.path()] {
        let kept: Vec<_> = files_under(&dir.join("upgrade")).into_iter().map(|f| f.0).collect();
        assert!(kept.is_empty(), "nothing of the upgrade stays on a node's disk: {kept:?}");
    }

    // Downloaded through the node that did not run it, opened from its seal.
    let r = c.get(format!("{base_b}/api/v1/upgrades/{id}/result")).bearer_auth(&t).send().await.expect("download");
    assert_eq!(r.status(), StatusCode::OK);
    let len: usize = r.headers()[reqwest::header::CONTENT_LENGTH].to_str().expect("len").parse().expect("len");
    let zip = r.bytes().await.expect("zip");
    assert_eq!(zip.len(), len);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("a zip archive");
    assert!(archive.by_name("dump.sql").is_ok() && archive.by_name("manifest.json").is_ok(), "an export archive");

    // Deleted through it: nothing left in the bucket.
    let r = c.delete(format!("{base_b}/api/v1/upgrades/{id}")).bearer_auth(&t).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(list().is_empty(), "erased from the bucket");
    let r = c.get(format!("{base_a}/api/v1/upgrades/{id}/result")).bearer_auth(&t).send().await.expect("again");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    a.stop().await;
    b.stop().await;
}
