//! Page journeys in headless Chromium through chromedriver (Debian packages
//! `chromium` and `chromium-driver`; scripts/test.sh installs them).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::helpers::spawn_app;

/// A headless Chromium session with its own chromedriver, stopped on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where downloads land.
    pub downloads: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Browser {
    pub async fn start() -> Self {
        Self::start_with_language("en-US,en").await
    }

    /// A browser whose preferred languages (Accept-Language) are `languages`.
    pub async fn start_with_language(languages: &str) -> Self {
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin} ({e}): run scripts/test.sh, which installs chromium and chromium-driver"
                )
            });
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("downloads dir");
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--accept-lang={languages}"),
                    format!("--lang={}", languages.split(',').next().unwrap_or("en-US")),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().display().to_string(),
                    "download.prompt_for_download": false,
                    "intl.accept_languages": languages,
                }
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Self { client, driver, _profile: profile, downloads }
    }

    /// Saves a screenshot under target/screenshots/ for people to look at.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("screenshots");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// The accessibility violations axe-core finds on the page shown (every
    /// rule axe runs by default, any impact), one line each.
    pub async fn axe(&self) -> Vec<String> {
        let path = std::env::var("SELDESK_AXE").unwrap_or_else(|_| {
            format!(
                "{}/.cache/seldesk/axe-4.14.1/node_modules/axe-core/axe.min.js",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("axe-core at {path} ({e}): run scripts/test.sh, which installs it"));
        self.client.execute(&source, vec![]).await.expect("inject axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.map(v => \
                   `${v.id} (${v.impact}): ${v.nodes.length} × ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')} — ${v.help}`)));",
                vec![],
            )
            .await
            .expect("run axe-core");
        found.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }

    /// Answers the cookie banner with "Reject all", as a careful visitor would.
    pub async fn reject_cookies(&self, base: &str) {
        self.client.goto(base).await.expect("home");
        self.click("#cookies-reject").await;
        self.wait_for_text("Your business database").await;
    }

    /// Signs in through the sign-in page at `url`, as a person would.
    pub async fn sign_in(&self, url: &str, email: &str, password: &str) {
        self.client.goto(url).await.expect("signin");
        self.fill("email", email).await;
        self.fill("password", password).await;
        self.click("form.stack button[type=submit]").await;
    }

    /// Fills the first visible form field with this name.
    pub async fn fill(&self, name: &str, value: &str) {
        let fields = self.client.find_all(Locator::Css(&format!("[name='{name}']"))).await.expect("fields");
        for field in fields {
            if field.is_displayed().await.unwrap_or(false) {
                field.clear().await.expect("clear");
                field.send_keys(value).await.expect("type");
                return;
            }
        }
        panic!("no visible field {name}");
    }

    /// Clicks the first element matching a CSS selector.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("element {css}"))
            .click()
            .await
            .expect("click");
    }

    /// The visible text of the page body (retried while a navigation is under way).
    pub async fn text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(body) = self.client.find(Locator::Css("body")).await
                && let Ok(text) = body.text().await
            {
                return text;
            }
            assert!(Instant::now() < deadline, "the page has a body");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page shows `needle` (after a click that navigates).
    pub async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "the page shows {needle:?}; it shows: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a downloaded file to appear (Chromium writes it under a temporary name first).
    /// A finished download ending in `suffix`. Chromium reserves the final
    /// name with an empty file at the start and writes to a `.crdownload`
    /// beside it, so a download is finished only when no `.crdownload` is
    /// left and its size held between two looks.
    pub async fn downloaded(&self, suffix: &str) -> std::path::PathBuf {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last: Option<(std::path::PathBuf, u64)> = None;
        loop {
            if let Ok(rd) = std::fs::read_dir(self.downloads.path()) {
                let paths: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
                let partial = paths.iter().any(|p| p.to_string_lossy().ends_with(".crdownload"));
                let found = paths.into_iter().find(|p| p.to_string_lossy().ends_with(suffix));
                let seen = found.and_then(|p| Some((p.clone(), std::fs::metadata(&p).ok()?.len())));
                if let Some((p, len)) = &seen
                    && !partial
                    && *len > 0
                    && last.as_ref() == Some(&(p.clone(), *len))
                {
                    return p.clone();
                }
                last = seen;
            }
            assert!(Instant::now() < deadline, "download {suffix} arrived");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
    }
}

// promise: POL-1, PRC-1, CK-6
#[tokio::test]
async fn privacy_page_in_chromium_shows_last_updated_providers_and_older_versions() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = crate::helpers::policy_with_an_older_version(dir.path());
    let app = crate::helpers::spawn_app_with(|_| {}, policy).await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/")).await.expect("home");
    b.screenshot("home").await;
    b.client.find(Locator::LinkText("Read the privacy policy")).await.expect("link").click().await.expect("click");
    let h1 = b.client.find(Locator::Css("article.policy h1")).await.expect("h1");
    assert_eq!(h1.text().await.expect("text"), "Seldesk Privacy Policy");
    let body = b.client.find(Locator::Css("article.policy")).await.expect("policy").text().await.expect("text");
    assert!(body.contains("Last updated: "), "visible 'Last updated'");
    assert!(body.contains("We do not currently support Do Not Track signals"));
    let rows = b.client.find_all(Locator::Css("article.policy table tr")).await.expect("rows");
    let mut provider_rows = Vec::new();
    for row in rows {
        provider_rows.push(row.text().await.expect("text"));
    }
    for name in ["PayPal", "Ingenico Payment Services", "Google LLC", "Amazon Web Services, Inc."] {
        assert!(provider_rows.iter().any(|r| r.starts_with(name)), "{name} row shown");
    }
    b.screenshot("privacy").await;

    b.client.find(Locator::LinkText("Policy versions")).await.expect("footer link").click().await.expect("click");
    assert!(b.client.current_url().await.expect("url").path().ends_with("/privacy/versions"));
    b.client.find(Locator::LinkText("1 June 2025")).await.expect("older version").click().await.expect("click");
    let notice = b.client.find(Locator::Css(".notice")).await.expect("notice").text().await.expect("text");
    assert!(notice.contains("took effect on 2025-06-01"), "{notice}");
    b.screenshot("privacy-2025-06-01").await;
    b.close().await;
    app.stop().await;
}

#[tokio::test]
async fn not_found_page_in_chromium_leads_back_home() {
    let app = spawn_app().await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/nowhere")).await.expect("goto");
    let h1 = b.client.find(Locator::Css("h1")).await.expect("h1").text().await.expect("text");
    assert_eq!(h1, "Page not found");
    b.client.find(Locator::LinkText("Go to the home page")).await.expect("link").click().await.expect("click");
    assert_eq!(b.client.current_url().await.expect("url").path(), "/");
    b.close().await;
    app.stop().await;
}

// promise: ACC-1, ACC-3, POL-3, CK-1
#[tokio::test]
async fn sign_up_verify_sign_in_edit_and_download_my_data_in_chromium() {
    let app = spawn_app().await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/")).await.expect("home");
    b.click("a.nav-cta").await;
    b.fill("name", "Meera Iyer").await;
    b.fill("company", "Iyer Spices").await;
    b.fill("email", "meera@example.in").await;
    b.fill("phone", "+91 44 5555 0199").await;
    b.fill("password", "saffron harbour kite").await;
    let country = b.client.find(Locator::Css("select[name=country]")).await.expect("country");
    country.select_by_value("IN").await.expect("India");
    b.screenshot("signup").await;
    b.click("form.stack button[type=submit]").await;
    // Sign-up leads to the first database, its data center the account's country's.
    b.wait_for_text("create your first database").await;
    let chosen = b.client.find(Locator::Css("form[action='/databases'] select[name=region] option:checked")).await;
    let chosen = chosen.expect("region").text().await.expect("text");
    assert!(chosen.contains("India"), "the country given at sign-up picks the data center: {chosen}");
    b.client.goto(&app.url("/account")).await.expect("account");
    b.wait_for_text("e-mail not verified").await;
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let session = cookies.iter().find(|c| c.name() == "seldesk_session").expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert!(
        cookies.iter().all(|c| ["seldesk_session", "seldesk_csrf", "seldesk_consent"].contains(&c.name())),
        "only necessary cookies"
    );

    let mail = app.mail_to("meera@example.in", "Confirm your e-mail").expect("verification mail");
    let link = crate::helpers::link(&mail, "/verify-email").expect("link");
    b.client.goto(&link).await.expect("verify");
    b.wait_for_text("confirmed").await;

    b.client.goto(&app.url("/account")).await.expect("account");
    // Signing out from the menu under the person's name, in the header.
    b.click(".user-menu summary").await;
    b.click(".user-menu form[action='/signout'] button").await;
    b.wait_for_text("Your business database").await;
    b.client.goto(&app.url("/account")).await.expect("account");
    assert!(b.client.current_url().await.expect("url").path().starts_with("/signin"), "signed out");
    b.fill("email", "meera@example.in").await;
    b.fill("password", "saffron harbour kite").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("e-mail verified").await;

    b.fill("company", "Iyer Spices & Teas").await;
    b.click("form[action='/account'] button[type=submit]").await;
    b.wait_for_text("Your changes are saved.").await;
    b.wait_for_text("Account details corrected").await;
    b.screenshot("account").await;

    b.client.goto(&app.url("/account/requests")).await.expect("requests");
    b.fill("password", "saffron harbour kite").await;
    b.click("form[action='/account/requests'] button[type=submit]").await;
    b.wait_for_text("We are preparing your archive").await;
    app.run_jobs().await;
    b.client.refresh().await.expect("reload");
    b.fill("password", "saffron harbour kite").await;
    b.screenshot("request-ready").await;
    b.click("#download").await;
    let zip = b.downloaded(".zip").await;
    let bytes = std::fs::read(&zip).expect("archive");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("personal-data.json").expect("json"), &mut json).expect("read");
    assert!(json.contains("Iyer Spices & Teas"), "the archive holds the corrected data");
    b.close().await;
    app.stop().await;
}

// promise: SEC-1, ACC-3
#[tokio::test]
async fn make_use_and_revoke_a_personal_access_token_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("tokens@example.in", "monsoon copper tiger").await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.sign_in(&app.url("/signin"), "tokens@example.in", "monsoon copper tiger").await;
    b.wait_for_text("Everything we hold in your account").await;
    // Without a scope the form says what is missing and keeps the name.
    b.fill("token_name", "nightly report").await;
    b.click("#new-token-form button[type=submit]").await;
    b.wait_for_text("Choose at least one scope").await;
    b.click("#new-token-form input[name='databases:read']").await;
    b.click("#new-token-form button[type=submit]").await;
    b.wait_for_text("shown only this once").await;
    let token = b.client.find(Locator::Css("#token-value")).await.expect("token").text().await.expect("text");
    assert!(token.starts_with("sdpat_"), "{token}");
    b.screenshot("api-token-made").await;
    b.client.set_window_size(390, 844).await.expect("phone");
    b.screenshot("api-token-made-phone").await;
    b.client.set_window_size(1280, 800).await.expect("desktop");
    // It reads databases, and is refused writing.
    let list = app.client.get(app.url("/api/v1/databases")).bearer_auth(&token).send().await.expect("list");
    assert_eq!(list.status(), 200);
    let write = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .expect("write");
    assert_eq!(write.status(), 403);
    // The page shows its use, never the token again.
    b.client.goto(&app.url("/account")).await.expect("account");
    let page = b.text().await;
    assert!(page.contains("nightly report") && page.contains("databases:read") && !page.contains(&token), "{page}");
    let row = b.client.find(Locator::Css("#token-list tbody tr")).await.expect("row").text().await.expect("text");
    assert!(row.contains('2'), "two uses counted: {row}");
    b.click("#token-list button[type=submit]").await;
    b.wait_for_text("The token is revoked").await;
    assert!(b.text().await.contains("You have no tokens"));
    let after = app.client.get(app.url("/api/v1/databases")).bearer_auth(&token).send().await.expect("after");
    assert_eq!(after.status(), 401);
    b.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_api_reference_reads_in_chromium_on_a_desktop_and_a_phone() {
    let app = spawn_app().await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/api/docs")).await.expect("docs");
    b.wait_for_text("API reference").await;
    b.click("a[href='#tag-contacts']").await;
    let op = b.client.find(Locator::Css("#post--api-v1-databases--id--contacts")).await.expect("operation");
    assert!(op.text().await.expect("text").contains("databases:write"));
    b.screenshot("api-docs").await;
    b.client.set_window_size(390, 844).await.expect("phone");
    b.client.goto(&app.url("/api/docs#tag-contacts")).await.expect("docs");
    b.screenshot("api-docs-phone").await;
    b.client.goto(&app.url("/api/v1/openapi.json")).await.expect("json");
    assert!(b.text().await.contains("\"openapi\""));
    b.close().await;
    app.stop().await;
}

// promise: ACC-4
#[tokio::test]
async fn erasure_request_in_chromium_signs_out_erases_and_sends_a_receipt() {
    let app = spawn_app().await;
    let id = app.sign_up("ravi@example.in", "monsoon copper tiger").await;
    crate::helpers::add_invoice(&app, &id, "2026-000042", "IN").await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.sign_in(&app.url("/signin"), "ravi@example.in", "monsoon copper tiger").await;
    b.wait_for_text("Everything we hold in your account").await;
    b.client.goto(&app.url("/account/requests")).await.expect("requests");
    b.client.find(Locator::Css("#kind")).await.expect("kind").select_by_value("erasure").await.expect("select");
    b.fill("password", "monsoon copper tiger").await;
    b.fill("confirm", "ravi@example.in").await;
    b.click("form[action='/account/requests'] button[type=submit]").await;
    b.wait_for_text("Your erasure request is under way").await;
    b.screenshot("erasure").await;
    app.run_jobs().await;
    b.sign_in(&app.url("/signin"), "ravi@example.in", "monsoon copper tiger").await;
    b.wait_for_text("not right").await;
    let receipt = app.mail_to("ravi@example.in", "has been erased").expect("receipt in the outbox");
    assert!(receipt.contains("1 invoice(s), in a restricted finance archive"), "{receipt}");
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM invoices").fetch_one(app.db().pool()).await.expect("count");
    let archived: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM finance_archive").fetch_one(app.db().pool()).await.expect("count");
    assert_eq!((live, archived), (0, 1), "the invoice is kept only in the finance archive");
    b.close().await;
    app.stop().await;
}

// promise: DB-1, DB-5, DB-6, DB-7, DB-8
#[tokio::test]
async fn customer_database_lifecycle_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("panel@example.com", "orchid lantern ferry").await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/signin?next=/databases")).await.expect("signin");
    b.fill("email", "panel@example.com").await;
    b.fill("password", "orchid lantern ferry").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("New database").await;
    assert!(b.text().await.contains("Preselected: United Kingdom"), "the page says why this data center");
    b.fill("name", "panel-crm").await;
    b.click("form[action='/databases'] button[type=submit]").await;
    b.wait_for_text("Contacts").await;
    for (name, email) in [("Asha Rao", "asha@example.in"), ("Lee Wong", "lee@example.sg")] {
        b.fill("name", name).await;
        b.fill("email", email).await;
        b.click("form[action$='/contacts'] button[type=submit]").await;
        b.wait_for_text(name).await;
    }
    b.screenshot("database").await;
    b.fill("q", "lee@").await;
    b.click("form[method='get'] button").await;
    b.wait_for_text("Search").await;
    let rows = b.client.find_all(Locator::Css("table tbody tr td:first-child")).await.expect("rows");
    let mut names = Vec::new();
    for r in rows {
        names.push(r.text().await.expect("text"));
    }
    assert!(
        names.iter().any(|n| n.starts_with("Lee Wong")) && !names.iter().any(|n| n.starts_with("Asha")),
        "search finds by e-mail: {names:?}"
    );
    b.client
        .goto(b.client.current_url().await.expect("url").as_str().split('?').next().expect("base"))
        .await
        .expect("back");
    b.click("td details summary").await;
    b.fill("notes", "Prefers calls after 3 pm").await;
    b.click("td details[open] form button[type=submit]").await;
    b.wait_for_text("Contact saved.").await;
    b.click("#export").await;
    let zip = b.downloaded(".zip").await;

    b.client.goto(&app.url("/databases")).await.expect("list");
    let import = b.client.find(Locator::Css("form[action^='/databases/import']")).await.expect("import form");
    import.find(Locator::Css("[name='name']")).await.expect("name").send_keys("panel-copy").await.expect("type");
    import
        .find(Locator::Css("[name='archive']"))
        .await
        .expect("file")
        .send_keys(&zip.display().to_string())
        .await
        .expect("file");
    import.find(Locator::Css("button[type=submit]")).await.expect("submit").click().await.expect("click");
    b.wait_for_text("panel-copy").await;
    b.wait_for_text("Lee Wong").await;

    // Cancel and remove are under Settings, in the danger zone.
    b.click("#tab-settings").await;
    b.wait_for_text("Danger zone").await;
    b.screenshot("database-settings").await;
    b.click("#cancel-confirm summary").await;
    b.click("#cancel").await;
    b.wait_for_text("This database is deactivated").await;
    assert!(b.text().await.contains("will be destroyed on"));
    b.screenshot("database-deactivated").await;
    b.click("#reactivate").await;
    b.wait_for_text("Add contact").await;
    b.click("#tab-location").await;
    b.click("#move").await;
    b.wait_for_text("This database is moving to India").await;
    b.click("#tab-contacts").await;
    let page = b.text().await;
    assert!(page.contains("% copied"), "the page shows how far the copy is");
    assert!(page.contains("Lee Wong") && page.contains("Add contact"), "it keeps working while it moves");
    b.screenshot("database-moving").await;
    app.run_jobs().await;
    b.client.refresh().await.expect("reload");
    b.wait_for_text("India").await;
    b.wait_for_text("Lee Wong").await;

    b.click("#tab-settings").await;
    b.fill("confirm", "panel-copy").await;
    b.click("#remove").await;
    b.wait_for_text("Database removed").await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases").fetch_one(app.db().pool()).await.expect("count");
    assert_eq!(n, 1, "the copy is gone, the original stays");
    b.close().await;
    app.stop().await;
}

// promise: CK-2, CK-3, CK-4, CK-5
#[tokio::test]
async fn cookie_banner_refusal_consent_and_withdrawal_in_chromium() {
    let app = crate::helpers::spawn_app_with(
        |c| c.google_analytics_id = Some("G-TEST123".into()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let b = Browser::start().await;
    b.client.goto(&app.url("/")).await.expect("home");
    b.wait_for_text("Accept all").await;
    let names = |cookies: Vec<fantoccini::cookies::Cookie<'static>>| {
        cookies.iter().map(|c| c.name().to_string()).collect::<Vec<_>>()
    };
    let before = names(b.client.get_all_cookies().await.expect("cookies"));
    assert!(before.iter().all(|n| n == "seldesk_csrf"), "only strictly necessary cookies before a choice: {before:?}");
    assert!(
        !b.client.source().await.expect("source").contains("googletagmanager"),
        "no third-party script before consent"
    );
    b.screenshot("cookie-banner").await;

    b.click("#cookies-reject").await;
    b.wait_for_text("Your business database").await;
    let source = b.client.source().await.expect("source");
    assert!(!source.contains("cookie-banner") && !source.contains("googletagmanager"));
    let after = names(b.client.get_all_cookies().await.expect("cookies"));
    assert!(
        after.contains(&"seldesk_consent".to_string()) && !after.contains(&"seldesk_visit".to_string()),
        "{after:?}"
    );

    b.click("#cookie-settings").await;
    b.wait_for_text("Save my choice").await;
    b.click("button[value='accept_all']").await;
    b.wait_for_text("Your choice is saved.").await;
    b.client.goto(&app.url("/")).await.expect("home");
    assert!(
        b.client.source().await.expect("source").contains("googletagmanager.com/gtag/js?id=G-TEST123"),
        "the script loads after consent"
    );
    let accepted = names(b.client.get_all_cookies().await.expect("cookies"));
    assert!(accepted.contains(&"seldesk_visit".to_string()), "analytics cookie after consent: {accepted:?}");
    let records: Vec<(i64, i64)> = sqlx::query_as("SELECT analytics, withdrawn FROM consents ORDER BY id")
        .fetch_all(app.db().pool())
        .await
        .expect("records");
    assert_eq!(records, vec![(0, 0), (1, 0)], "each choice is kept as proof");

    b.click("#cookie-settings").await;
    b.click("#cookies-withdraw").await;
    b.wait_for_text("Your choice is saved.").await;
    let withdrawn = names(b.client.get_all_cookies().await.expect("cookies"));
    assert!(
        !withdrawn.contains(&"seldesk_visit".to_string()),
        "withdrawing deletes the cookies it covered: {withdrawn:?}"
    );
    b.client.goto(&app.url("/")).await.expect("home");
    assert!(!b.client.source().await.expect("source").contains("googletagmanager"));
    let last: (i64, String) = sqlx::query_as("SELECT withdrawn, policy_version FROM consents ORDER BY id DESC LIMIT 1")
        .fetch_one(app.db().pool())
        .await
        .expect("record");
    assert_eq!(last.0, 1);
    assert_eq!(last.1, app.app().services().policy.current_version(app.clock_today()).effective.to_string());
    b.close().await;
    app.stop().await;
}

// promise: JOB-1, JOB-4, JOB-5, JOB-6
#[tokio::test]
async fn careers_apply_pipeline_rejection_correction_objection_and_erasure_in_chromium() {
    let app = spawn_app().await;
    let (password, secret) = crate::helpers::add_staff(&app, "hiring@seldesk.com", "hr");
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;

    // HR signs in with password and TOTP, writes and publishes a posting.
    b.client.goto(&app.url("/staff")).await.expect("staff");
    b.fill("email", "hiring@seldesk.com").await;
    b.fill("password", &password).await;
    let code = seldesk_accounts::staff::totp_code(&secret, app.clock_now()).expect("code");
    b.fill("code", &code).await;
    b.click("form.stack button[type=submit]").await;
    // HR lands on the careers console.
    b.wait_for_text("New posting").await;
    b.fill("title", "Site reliability engineer").await;
    b.fill("location", "Singapore").await;
    b.fill("description", "Keep **every database** running.").await;
    b.click("#new-posting button[type=submit]").await;
    b.wait_for_text("status draft").await;
    b.client.goto(&app.url("/staff/careers")).await.expect("console");
    b.click("#postings button[value='open']").await;
    b.wait_for_text("open").await;

    // A person applies with a CV.
    let cv = tempfile::Builder::new().suffix(".pdf").tempfile().expect("cv");
    std::fs::write(cv.path(), crate::careers::PDF).expect("write cv");
    b.client.goto(&app.url("/careers")).await.expect("careers");
    b.click("#openings a").await;
    b.wait_for_text("every database").await;
    b.fill("name", "Mei Tan").await;
    b.fill("email", "mei@example.sg").await;
    b.fill("phone", "+65 6123 4567").await;
    b.fill("letter", "I have run PostgreSQL fleets for six years.").await;
    b.client
        .find(Locator::Css("[name='cv']"))
        .await
        .expect("file input")
        .send_keys(&cv.path().display().to_string())
        .await
        .expect("choose file");
    b.click("form[action*='/apply?'] button[type=submit]").await;
    b.wait_for_text("Application received").await;
    let ack = app.mail_to("mei@example.sg", "We received your application").expect("acknowledgement in the outbox");
    let private = crate::helpers::link(&ack, "/careers/application/").expect("private link");
    b.screenshot("careers-applied").await;

    // HR moves it through screening and interview, then rejects it.
    b.client.goto(&app.url("/staff/careers")).await.expect("console");
    b.click("#applications a").await;
    b.wait_for_text("six years").await;
    b.fill("note", "Good fit for the on-call rota").await;
    b.click("#stage-form button[value='screening']").await;
    b.wait_for_text("Good fit for the on-call rota").await;
    b.click("#stage-form button[value='interview']").await;
    b.wait_for_text("Interview").await;
    b.fill("note", "We chose a candidate with more Kubernetes experience").await;
    b.click("#stage-form button[value='rejected']").await;
    b.wait_for_text("Not selected").await;
    b.screenshot("careers-hr").await;

    // The applicant sees everything, corrects the phone number, objects to keeping.
    b.client.goto(&private).await.expect("private page");
    b.wait_for_text("Everything we hold about your application").await;
    let text = b.text().await;
    assert!(text.contains("Not selected") && text.contains("more Kubernetes experience"), "{text}");
    assert!(text.contains("opened your application"), "reads are shown");
    b.fill("phone", "+65 6999 0000").await;
    b.click("#correct button[type=submit]").await;
    b.wait_for_text("Your corrections are saved").await;
    assert!(b.text().await.contains("+65 6999 0000"));
    b.click("#object").await;
    b.wait_for_text("we will not keep your application").await;
    b.wait_for_text("we delete your application by").await;
    b.screenshot("careers-applicant").await;

    // A week later the retention run erases it, CV included.
    app.clock.advance(time::Duration::days(8));
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    b.client.goto(&private).await.expect("private page");
    b.wait_for_text("No application is held under this link").await;
    let cvs = std::fs::read_dir(app.data.path().join("blobs/cv")).map(|rd| rd.count()).unwrap_or(0);
    assert_eq!(cvs, 0, "the CV file is erased");
    b.close().await;
    app.stop().await;
}

// promise: BRW-1
#[tokio::test]
async fn the_page_language_follows_accept_language_in_chromium() {
    let app = spawn_app().await;
    let b = Browser::start_with_language("fr-FR,fr").await;
    b.client.goto(&app.url("/")).await.expect("home");
    b.wait_for_text("Tout refuser").await;
    b.click("#cookies-reject").await;
    b.wait_for_text("Votre base de données").await;
    let lang = b.client.find(Locator::Css("html")).await.expect("html").attr("lang").await.expect("attr");
    assert_eq!(lang.as_deref(), Some("fr"));
    assert!(b.text().await.contains("Centres de données"));
    // The visitor switches to English; without preferences consent it lasts for the visit.
    b.click("#languages a[hreflang='en']").await;
    b.wait_for_text("Your business database").await;
    b.client.goto(&app.url("/careers")).await.expect("careers");
    b.wait_for_text("There are no open positions").await;
    b.close().await;
    app.stop().await;
}

// promise: UPG-1, UPG-2, UPG-3
#[tokio::test]
async fn upgrade_an_old_export_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("oldtimer@example.com", "orchid lantern ferry").await;
    // An export archive of a version-1 database, as an older Seldesk made it.
    let token = app.token("oldtimer@example.com", "orchid lantern ferry").await;
    let db: serde_json::Value = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "vintage", "region": "sg" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = db["id"].as_str().expect("id").to_string();
    let file = app.data.path().join("tenants/sg").join(&id).join("db.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    let conn = seldesk_tenants::files::create_at_version(&file, 1).expect("v1");
    conn.execute("INSERT INTO contacts (name, created_at, updated_at) VALUES ('Ravi Kumar', 'now', 'now')", [])
        .expect("row");
    drop(conn);
    let archive = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/export")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("bytes");
    let scratch = tempfile::tempdir().expect("tmp");
    let old = scratch.path().join("vintage-export.zip");
    std::fs::write(&old, &archive).expect("write");

    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/signin?next=/upgrade")).await.expect("signin");
    b.fill("email", "oldtimer@example.com").await;
    b.fill("password", "orchid lantern ferry").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("Database Upgrade").await;
    b.client
        .find(Locator::Css("#upload-form [name='file']"))
        .await
        .expect("file input")
        .send_keys(&old.display().to_string())
        .await
        .expect("choose");
    b.click("#upload-form button[type=submit]").await;
    b.wait_for_text("queued").await;
    b.screenshot("upgrade-queued").await;
    app.run_jobs().await;
    // The page refreshes itself while the upgrade runs.
    b.wait_for_text("done").await;
    assert!(b.text().await.contains("1 → 3"));
    b.click("#download-1").await;
    let result = b.downloaded("-upgraded.zip").await;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&result).expect("open")).expect("zip");
    let mut dump = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("dump.sql").expect("dump"), &mut dump).expect("read");
    assert!(dump.contains("given_name") && dump.contains("Ravi"), "the result is at the newest version");
    let storage = app.data.path().join("upgrade");
    assert!(std::fs::read_dir(storage.join("uploads")).map(|rd| rd.count()).unwrap_or(0) == 0, "the source is gone");
    app.clock.advance(time::Duration::days(125));
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    assert!(
        std::fs::read_dir(storage.join("results")).map(|rd| rd.count()).unwrap_or(0) == 0,
        "the result is gone at 4 months"
    );
    b.close().await;
    app.stop().await;
}

// promise: MKT-3, MKT-4
#[tokio::test]
async fn register_for_an_event_ask_for_a_partner_and_find_both_transfers_in_my_data_in_chromium() {
    let app = spawn_app().await;
    let staff = crate::helpers::staff_session(&app, "events@seldesk.com", "marketing").await;
    crate::marketing::open_event(&app, &staff, "", "Cloud Partners Ltd").await;
    let csrf = staff.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let r = app
        .client
        .post(app.url("/staff/marketing/partners"))
        .header("cookie", &staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Mumbai Systems"),
            ("country", "IN"),
            ("website", "https://mumbai-systems.example"),
        ])
        .send()
        .await
        .expect("partner");
    assert_eq!(r.status(), 303);
    crate::marketing::verified_account(&app, "meera@example.in", "IN", None).await;

    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    // Consent is the basis for marketing mail: the sign-up box starts empty.
    b.client.goto(&app.url("/signup")).await.expect("signup");
    let marketing = b.client.find(Locator::Css("#marketing")).await.expect("marketing box");
    assert!(!marketing.is_selected().await.expect("selected"), "not pre-ticked");

    b.sign_in(&app.url("/signin"), "meera@example.in", "saffron harbour kite").await;
    b.wait_for_text("e-mail verified").await;

    // The event page names the organiser and the sponsor before registration.
    b.client.goto(&app.url("/events")).await.expect("events");
    b.click("#events a").await;
    b.wait_for_text("Acme Events Pvt Ltd").await;
    let notice = b.client.find(Locator::Css("#recipients")).await.expect("notice").text().await.expect("text");
    assert!(notice.contains("Cloud Partners Ltd") && notice.contains("name, e-mail, phone and company"), "{notice}");
    b.screenshot("event-registration").await;
    b.fill("phone", "+91 22 5555 0199").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("You are registered").await;

    // A partner of her country (from her account) is chosen and named.
    b.client.goto(&app.url("/partners")).await.expect("partners");
    b.fill("phone", "+91 22 5555 0199").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("Mumbai Systems (https://mumbai-systems.example) will contact you").await;
    b.screenshot("partner-referral").await;
    app.run_jobs().await;

    // Both hand-overs are in the access export.
    b.client.goto(&app.url("/account/requests")).await.expect("requests");
    b.fill("password", "saffron harbour kite").await;
    b.click("form[action='/account/requests'] button[type=submit]").await;
    b.wait_for_text("We are preparing your archive").await;
    app.run_jobs().await;
    b.client.refresh().await.expect("reload");
    b.fill("password", "saffron harbour kite").await;
    b.click("#download").await;
    let zip = b.downloaded(".zip").await;
    let bytes = std::fs::read(&zip).expect("archive");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("personal-data.json").expect("json"), &mut json).expect("read");
    let data: serde_json::Value = serde_json::from_str(&json).expect("parse");
    let sent: Vec<(String, String)> = data["disclosures_to_third_parties"]
        .as_array()
        .expect("ledger")
        .iter()
        .map(|d| (d["recipient"].as_str().unwrap_or("").into(), d["recipient_name"].as_str().unwrap_or("").into()))
        .collect();
    for expected in [
        ("event_organiser", "Acme Events Pvt Ltd"),
        ("event_sponsor", "Cloud Partners Ltd"),
        ("partner", "Mumbai Systems"),
    ] {
        assert!(sent.contains(&(expected.0.to_string(), expected.1.to_string())), "{expected:?} in {sent:?}");
    }
    assert_eq!(data["other_records"]["marketing"]["event_registrations"][0]["event"], "Seldesk Day Mumbai");
    assert_eq!(data["other_records"]["marketing"]["partner_referrals"][0]["partner_name"], "Mumbai Systems");
    b.close().await;
    app.stop().await;
}

// promise: BAK-3, DB-5
#[tokio::test]
async fn the_owner_restores_a_backup_into_a_new_database_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("restore@example.in", "saffron harbour kite").await;
    let token = app.token("restore@example.in", "saffron harbour kite").await;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "shop", "region": "in" }))
        .send()
        .await
        .expect("create");
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    for name in ["Ravi Kumar", "Anita Desai"] {
        app.client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("contact");
    }
    // `run` reports each database's failure in its outcome rather than as an
    // error: a backup that did not happen must fail here, saying why, not
    // later as an empty list of backups. One retry covers a transient one.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes = app.app().services().backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
        if outcomes.iter().all(|o| o.error.is_none()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(outcomes.iter().all(|o| o.error.is_none() && o.snapshot.is_some()), "the backup was made: {outcomes:?}");
    // A contact deleted after the backup comes back only in the restored copy.
    let contacts: serde_json::Value = app
        .client
        .get(app.url(&format!("/api/v1/databases/{id}/contacts")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let anita =
        contacts.as_array().expect("contacts").iter().find(|c| c["name"] == "Anita Desai").expect("anita")["id"]
            .clone();
    app.client
        .delete(app.url(&format!("/api/v1/databases/{id}/contacts/{anita}")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");

    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.sign_in(&app.url("/signin"), "restore@example.in", "saffron harbour kite").await;
    b.wait_for_text("e-mail").await;
    b.client.goto(&app.url(&format!("/databases/{id}"))).await.expect("db page");
    b.click("#tab-backups").await;
    b.wait_for_text("Restore into a new database").await;
    let table = b.client.find(Locator::Css("#snapshots")).await.expect("snapshots").text().await.expect("text");
    assert!(table.contains("in, sg"), "{table}");
    let field = b.client.find(Locator::Css("#snapshots input[name='name']")).await.expect("name field");
    field.send_keys("shop-restored").await.expect("type");
    b.screenshot("restore-backup").await;
    b.click("#snapshots button[type=submit]").await;
    // The restore runs as a job; its page shows the progress and refreshes itself.
    b.wait_for_text("Restoring shop-restored").await;
    assert!(b.client.find(Locator::Css("#restore-running progress")).await.is_ok(), "a progress bar while it runs");
    b.screenshot("restore-progress").await;
    app.run_jobs().await;
    b.wait_for_text("Restored.").await;
    b.click("#open-restored").await;
    b.wait_for_text("shop-restored").await;
    b.wait_for_text("Anita Desai").await;
    let audit = app.app().services().audit.recent(20).await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "backup.restored" && e.details.to_string().contains("requested by the owner"))
    );
    b.close().await;
    app.stop().await;
}

// promise: BAK-1, BAK-3
#[tokio::test]
async fn the_owner_restores_a_database_to_a_moment_in_chromium() {
    use seldesk_domain::Clock as _;
    let app = spawn_app().await;
    app.sign_up("moment@example.in", "saffron harbour kite").await;
    let token = app.token("moment@example.in", "saffron harbour kite").await;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "ledger", "region": "in" }))
        .send()
        .await
        .expect("create");
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let add = async |name: &str| -> serde_json::Value {
        app.client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("contact")
            .json()
            .await
            .expect("json")
    };
    let step = || app.clock.advance(time::Duration::seconds(2));
    let ravi = add("Ravi Kumar").await;
    step();
    app.app().services().backups.run(Some(&id), std::sync::Arc::new(|_, _| {})).await.expect("backup");
    step();
    add("Meera Iyer").await;
    step();
    // The moment to go back to: Meera added, Ravi not yet deleted.
    let moment = app.clock.now() - time::Duration::seconds(1);
    app.client
        .delete(app.url(&format!("/api/v1/databases/{id}/contacts/{}", ravi["id"])))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    step();
    app.app().shipper().expect("streaming").ship().await.expect("ship");

    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.sign_in(&app.url("/signin"), "moment@example.in", "saffron harbour kite").await;
    b.wait_for_text("e-mail").await;
    b.client.goto(&app.url(&format!("/databases/{id}"))).await.expect("db page");
    b.wait_for_text("changes copied to both backup data centers up to").await;
    b.click("#tab-backups").await;
    b.wait_for_text("Restore to a moment").await;
    let protected = b.client.find(Locator::Css("#protected")).await.expect("protected").text().await.expect("text");
    assert!(protected.contains("protected up to"), "{protected}");
    let t = moment.to_offset(time::UtcOffset::UTC);
    let value = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    b.client
        .execute("document.getElementById('restore-at').value = arguments[0]", vec![serde_json::json!(value)])
        .await
        .expect("pick the moment");
    let field = b.client.find(Locator::Css("#restore-at-name")).await.expect("name field");
    field.send_keys("ledger-before").await.expect("type");
    b.screenshot("restore-to-a-moment").await;
    b.click("#restore-at-submit").await;
    b.wait_for_text("Restoring ledger-before").await;
    app.run_jobs().await;
    b.wait_for_text("Restored.").await;
    b.click("#open-restored").await;
    b.wait_for_text("ledger-before").await;
    b.wait_for_text("Meera Iyer").await;
    b.wait_for_text("Ravi Kumar").await;
    b.close().await;
    app.stop().await;
}

// promise: PAY-1, DB-7
#[tokio::test]
async fn subscribe_pay_on_the_test_processor_download_the_invoice_and_cancel_in_chromium() {
    let app = crate::helpers::spawn_app_with(
        |c| c.billing.processor = Some("test".into()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    app.sign_up("payer@example.com", "orchid lantern ferry").await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.client.goto(&app.url("/signin?next=/databases")).await.expect("signin");
    b.fill("email", "payer@example.com").await;
    b.fill("password", "orchid lantern ferry").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("New database").await;
    b.fill("name", "paid-crm").await;
    b.click("form[action='/databases'] button[type=submit]").await;
    b.wait_for_text("Free trial (ends").await;
    b.click("#tab-billing").await;
    b.click("#subscribe").await;
    b.wait_for_text("Choose a plan").await;
    assert!(b.text().await.contains("Prices in USD"), "currency shown");
    b.screenshot("subscribe").await;
    b.click("#pay").await;
    b.wait_for_text("TEST PROCESSOR").await;
    assert!(b.text().await.contains("29.00 USD"), "the amount comes from our prices");
    // The processor's page asks for no card here, and nothing of ours ever does.
    let inputs = b.client.find_all(Locator::Css("input:not([type=hidden])")).await.expect("inputs");
    assert!(inputs.is_empty(), "no card form on our pages");
    b.screenshot("test-processor").await;
    b.click("#approve").await;
    b.wait_for_text("Payment received").await;
    b.screenshot("billing").await;
    b.click("a.pdf").await;
    let pdf = b.downloaded(".pdf").await;
    assert!(std::fs::read(&pdf).expect("pdf").starts_with(b"%PDF-"), "an invoice PDF");
    let db = app.app().services().databases.list_all().await.expect("list").into_iter().next().expect("db");
    assert_eq!(db.plan, "subscribed");
    b.client.goto(&app.url(&format!("/databases/{}?tab=billing", db.id))).await.expect("db page");
    b.wait_for_text("Plan and billing").await;
    b.click("#tab-settings").await;
    b.click("#cancel-confirm summary").await;
    b.click("#cancel").await;
    b.wait_for_text("This database is deactivated").await;
    assert!(b.text().await.contains("will be destroyed on"), "the grace date is shown");
    b.close().await;
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn every_form_works_on_a_first_visit_with_no_cookies_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("first-visit@example.com", "violet tractor lemon").await;
    let b = Browser::start().await;
    let first_visit = |path: &'static str| {
        let (client, url) = (b.client.clone(), app.url(path));
        async move {
            client.delete_all_cookies().await.expect("no cookies");
            client.goto(&url).await.expect("page");
        }
    };
    let refused = |text: &str| text.contains("Form expired");
    // The page's own form, sent as its button would send it (the cookie
    // banner, still open on a first visit, covers the button on a short screen).
    async fn submit(b: &Browser) {
        b.client.execute("document.querySelector('form.stack').requestSubmit()", vec![]).await.expect("submit");
    }

    first_visit("/signin").await;
    b.fill("email", "first-visit@example.com").await;
    b.fill("password", "violet tractor lemon").await;
    submit(&b).await;
    b.wait_for_text("Asha Rao").await;
    assert!(!refused(&b.text().await));

    first_visit("/signup").await;
    b.fill("name", "New Visitor").await;
    b.fill("company", "First Co").await;
    b.fill("email", "new-visitor@example.com").await;
    b.fill("password", "orange kettle window").await;
    submit(&b).await;
    b.wait_for_text("New Visitor").await;

    first_visit("/contact").await;
    b.fill("name", "Curious Visitor").await;
    b.fill("company", "Ask Co").await;
    b.fill("email", "curious@example.com").await;
    submit(&b).await;
    b.client.find(Locator::Css("#done")).await.expect("the request was taken");

    first_visit("/forgot-password").await;
    b.fill("email", "first-visit@example.com").await;
    submit(&b).await;
    b.wait_for_text("If an account uses that address").await;

    // The cookie banner's form and the settings page's own, each on a first
    // visit (the settings page shows no banner over itself).
    first_visit("/privacy").await;
    b.click("#cookies-reject").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.client.get_named_cookie("seldesk_consent").await.is_err() {
        assert!(Instant::now() < deadline, "the banner's choice was taken: {}", b.text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first_visit("/cookies").await;
    b.client.execute("document.getElementById('cookies-save').click()", vec![]).await.expect("save");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.client.get_named_cookie("seldesk_consent").await.is_err() {
        let text = b.text().await;
        assert!(!refused(&text) && Instant::now() < deadline, "the page's choice was taken: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await;
    app.stop().await;
}

/// A database with more contacts than a page holds: the page says where
/// the rest are, and every contact is reached by following "Next".
#[tokio::test]
async fn a_long_contact_list_is_paged_and_every_contact_is_reached_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("pages@example.in", "saffron harbour kite").await;
    let token = app.token("pages@example.in", "saffron harbour kite").await;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "crm", "region": "in" }))
        .send()
        .await
        .expect("create");
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    for i in 0..120 {
        let r = app
            .client
            .post(app.url(&format!("/api/v1/databases/{id}/contacts")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": format!("Person {i:03}") }))
            .send()
            .await
            .expect("contact");
        assert_eq!(r.status(), 201);
    }
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    b.sign_in(&app.url("/signin"), "pages@example.in", "saffron harbour kite").await;
    b.wait_for_text("e-mail").await;
    b.client.goto(&app.url(&format!("/databases/{id}"))).await.expect("db page");
    b.wait_for_text("Person 000").await;
    let mut seen = Vec::new();
    for page in 0..3 {
        let text = b.text().await;
        let names: Vec<String> =
            (0..120).map(|i| format!("Person {i:03}")).filter(|n| text.contains(n.as_str())).collect();
        assert_eq!(names.len(), if page < 2 { 50 } else { 20 }, "page {page}");
        seen.extend(names);
        if page == 0 {
            b.screenshot("contacts-paged").await;
        }
        if page < 2 {
            b.click("#next-contacts").await;
            b.wait_for_text(&format!("Person {:03}", (page + 1) * 50)).await;
        } else {
            assert!(b.client.find(Locator::Css("#next-contacts")).await.is_err(), "no next page after the last");
            assert!(b.client.find(Locator::Css("#first-contacts")).await.is_ok(), "a way back to the first page");
        }
    }
    let want: Vec<String> = (0..120).map(|i| format!("Person {i:03}")).collect();
    assert_eq!(seen, want, "every contact once, in order");
    b.close().await;
    app.stop().await;
}

/// Whether the page is wider than the window (a phone would scroll sideways).
async fn overflows(b: &Browser) -> Option<String> {
    let v = b
        .client
        .execute(
            "const w = window.innerWidth; const d = document.documentElement.scrollWidth; \
             if (d <= w) return null; \
             const out = e => e.getBoundingClientRect().right > w + 1; \
             const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) { if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; }; \
             const wide = [...document.querySelectorAll('body *')].filter(e => out(e) && !out(e.parentElement) && !clipped(e) && getComputedStyle(e).position !== 'fixed').slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id + ' in ' + e.parentElement.tagName + '.' + e.parentElement.className); \
             return `${d} > ${w}: ${wide.join(', ')}`;",
            vec![],
        )
        .await
        .expect("measure");
    v.as_str().map(str::to_string)
}

/// The header, the phone menu and the width of the main pages at 1280 and
/// 390 pixels, signed out and signed in; screenshots of each.
#[tokio::test]
async fn the_app_frame_works_on_a_desktop_and_a_phone_in_chromium() {
    let app = spawn_app().await;
    app.sign_up("frame@example.com", "violet tractor lemon").await;
    let b = Browser::start().await;
    b.reject_cookies(&app.url("/")).await;
    let public = ["/", "/pricing", "/privacy", "/signup", "/signin", "/careers", "/helpdesk", "/cookies"];
    for (w, h, tag) in [(1280, 900, "desktop"), (390, 844, "phone")] {
        b.client.set_window_size(w, h).await.expect("size");
        for path in public {
            b.client.goto(&app.url(path)).await.expect("page");
            assert_eq!(overflows(&b).await, None, "{path} at {w}px");
            let name = if path == "/" { "home".to_string() } else { path.trim_start_matches('/').replace('/', "-") };
            b.screenshot(&format!("frame-{name}-{tag}")).await;
        }
    }
    // On a phone the links sit behind the menu button.
    b.client.goto(&app.url("/")).await.expect("home");
    let main_nav = b.client.find(Locator::Css(".main-nav")).await.expect("nav");
    assert!(!main_nav.is_displayed().await.expect("shown?"), "the desktop links are folded away");
    b.click(".phone-menu summary").await;
    let pricing = b.client.find(Locator::Css(".phone-menu a[href='/pricing']")).await.expect("pricing");
    assert!(pricing.is_displayed().await.expect("shown?"));
    b.screenshot("frame-menu-open-phone").await;
    pricing.click().await.expect("click");
    b.wait_for_text("Simple pricing").await;

    // Signed in: the customer's own links, on both widths.
    b.client.set_window_size(1280, 900).await.expect("desktop");
    b.sign_in(&app.url("/signin"), "frame@example.com", "violet tractor lemon").await;
    b.wait_for_text("Asha Rao").await;
    b.click(".main-nav a[href='/databases']").await;
    b.wait_for_text("No databases yet").await;
    b.fill("name", "ledger").await;
    b.click("form[action='/databases'] button[type=submit]").await;
    b.wait_for_text("ledger").await;
    let db_page = b.client.current_url().await.expect("url").path().to_string();
    let tabs: Vec<String> =
        ["backups", "location", "billing", "access", "settings"].iter().map(|t| format!("{db_page}?tab={t}")).collect();
    let subscribe = format!("{db_page}/subscribe");
    let mut private = vec![
        "/databases",
        db_page.as_str(),
        "/account",
        "/account/requests",
        "/account/billing",
        "/api/docs",
        subscribe.as_str(),
    ];
    private.extend(tabs.iter().map(String::as_str));
    for (w, h, tag) in [(1280, 900, "desktop"), (390, 844, "phone")] {
        b.client.set_window_size(w, h).await.expect("size");
        for path in private.iter().copied() {
            b.client.goto(&app.url(path)).await.expect("page");
            assert_eq!(overflows(&b).await, None, "{path} at {w}px");
            let name = path.trim_start_matches('/').split('/').take(2).collect::<Vec<_>>().join("-");
            let name = match path.strip_prefix(db_page.as_str()) {
                Some("") => "database".to_string(),
                Some(rest) => format!("database-{}", rest.trim_start_matches(['?', '/']).replace("tab=", "")),
                None => name,
            };
            b.screenshot(&format!("frame-signed-in-{name}-{tag}")).await;
        }
    }
    b.click(".phone-menu summary").await;
    let requests = b.client.find(Locator::Css(".phone-menu a[href='/account/requests']")).await.expect("link");
    assert!(requests.is_displayed().await.expect("shown?"));
    b.screenshot("frame-signed-in-menu-phone").await;
    // The same workspace in French, from the footer's choice.
    b.client.set_window_size(1280, 900).await.expect("desktop");
    b.client.goto(&app.url(&format!("{db_page}?lang=fr"))).await.expect("french");
    b.wait_for_text("Ajouter le contact").await;
    b.screenshot("frame-signed-in-database-fr").await;
    b.client.goto(&app.url(&format!("{db_page}?tab=settings"))).await.expect("settings");
    b.wait_for_text("Zone de danger").await;
    b.screenshot("frame-signed-in-database-settings-fr").await;
    b.close().await;
    app.stop().await;
}

/// axe-core finds no accessibility violation of any impact on the public
/// pages, the customer's pages and a staff console, at 1280 and 390 pixels.
#[tokio::test]
async fn axe_finds_no_accessibility_violation_at_desktop_and_phone_widths() {
    let app = spawn_app().await;
    app.sign_up("axe@example.com", "violet tractor lemon").await;
    let staff = crate::helpers::add_staff(&app, "axe-staff@seldesk.com", "support");
    let b = Browser::start().await;
    let mut found = Vec::new();
    // The cookie banner, as a first visit shows it.
    b.client.goto(&app.url("/")).await.expect("home");
    found.extend(b.axe().await.into_iter().map(|v| format!("/ with the cookie banner: {v}")));
    b.reject_cookies(&app.url("/")).await;
    let public = [
        "/",
        "/pricing",
        "/privacy",
        "/privacy/versions",
        "/signup",
        "/signin",
        "/forgot-password",
        "/careers",
        "/events",
        "/partners",
        "/helpdesk",
        "/contact",
        "/cookies",
        "/api/docs",
        "/no-such-page",
    ];
    let check = |paths: Vec<String>, who: &'static str| {
        let b = &b;
        let app = &app;
        async move {
            let mut out = Vec::new();
            for (w, h) in [(1280, 900), (390, 844)] {
                b.client.set_window_size(w, h).await.expect("size");
                for path in &paths {
                    b.client.goto(&app.url(path)).await.expect("page");
                    out.extend(b.axe().await.into_iter().map(|v| format!("{who} {path} at {w}px: {v}")));
                }
            }
            b.client.set_window_size(1280, 900).await.expect("size");
            out
        }
    };
    found.extend(check(public.iter().map(|p| p.to_string()).collect(), "signed out").await);

    b.sign_in(&app.url("/signin"), "axe@example.com", "violet tractor lemon").await;
    b.wait_for_text("Asha Rao").await;
    b.client.goto(&app.url("/databases")).await.expect("databases");
    b.fill("name", "ledger").await;
    b.click("form[action='/databases'] button[type=submit]").await;
    b.wait_for_text("Add your first contact").await;
    b.fill("name", "Meera Shah").await;
    b.fill("email", "meera@example.com").await;
    b.click("form[action$='/contacts'] button[type=submit]").await;
    b.wait_for_text("Contact added").await;
    let db = b.client.current_url().await.expect("url").path().to_string();
    let mut customer: Vec<String> =
        ["/databases", "/account", "/account/requests", "/account/billing", "/pricing"].map(String::from).into();
    for tab in ["", "?tab=backups", "?tab=location", "?tab=billing", "?tab=access", "?tab=settings", "/subscribe"] {
        customer.push(format!("{db}{tab}"));
    }
    found.extend(check(customer, "customer").await);

    b.client.delete_all_cookies().await.expect("sign out");
    b.reject_cookies(&app.url("/")).await;
    let (password, secret) = staff;
    b.client.goto(&app.url("/staff")).await.expect("staff");
    found.extend(check(vec!["/staff".into()], "staff sign-in").await);
    b.fill("email", "axe-staff@seldesk.com").await;
    b.fill("password", &password).await;
    b.fill("code", &seldesk_accounts::staff::totp_code(&secret, app.clock_now()).expect("code")).await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for_text("Helpdesk").await;
    found.extend(
        check(vec!["/staff/tickets".into(), "/staff/analytics".into(), "/staff/backups".into()], "staff").await,
    );
    assert!(found.is_empty(), "axe-core found:\n{}", found.join("\n"));
    b.close().await;
    app.stop().await;
}
