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
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Browser {
    pub async fn start() -> Self {
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
                ]
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
        Self {
            client,
            driver,
            _profile: profile,
        }
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

    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        let _ = self.driver.kill();
    }
}

// promise: POL-1, PRC-1, CK-6
#[tokio::test]
async fn privacy_page_in_chromium_shows_last_updated_providers_and_older_versions() {
    let app = spawn_app().await;
    let b = Browser::start().await;
    b.client.goto(&app.url("/")).await.expect("home");
    b.screenshot("home").await;
    b.client
        .find(Locator::LinkText("Read the privacy policy"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    let h1 = b.client.find(Locator::Css("article.policy h1")).await.expect("h1");
    assert_eq!(h1.text().await.expect("text"), "Seldesk Privacy Policy");
    let body = b
        .client
        .find(Locator::Css("article.policy"))
        .await
        .expect("policy")
        .text()
        .await
        .expect("text");
    assert!(body.contains("Last updated: "), "visible 'Last updated'");
    assert!(body.contains("We do not currently support Do Not Track signals"));
    let rows = b
        .client
        .find_all(Locator::Css("article.policy table tr"))
        .await
        .expect("rows");
    let mut provider_rows = Vec::new();
    for row in rows {
        provider_rows.push(row.text().await.expect("text"));
    }
    for name in [
        "PayPal",
        "Ingenico Payment Services",
        "Google LLC",
        "Amazon Web Services, Inc.",
    ] {
        assert!(provider_rows.iter().any(|r| r.starts_with(name)), "{name} row shown");
    }
    b.screenshot("privacy").await;

    b.client
        .find(Locator::LinkText("Policy versions"))
        .await
        .expect("footer link")
        .click()
        .await
        .expect("click");
    assert!(
        b.client
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/privacy/versions")
    );
    b.client
        .find(Locator::LinkText("1 June 2025"))
        .await
        .expect("older version")
        .click()
        .await
        .expect("click");
    let notice = b
        .client
        .find(Locator::Css(".notice"))
        .await
        .expect("notice")
        .text()
        .await
        .expect("text");
    assert!(notice.contains("took effect on 2025-06-01"), "{notice}");
    b.screenshot("privacy-2025-06-01").await;
    b.close().await;
    app.stop().await;
}

#[tokio::test]
async fn not_found_page_in_chromium_leads_back_home() {
    let app = spawn_app().await;
    let b = Browser::start().await;
    b.client.goto(&app.url("/nowhere")).await.expect("goto");
    let h1 = b
        .client
        .find(Locator::Css("h1"))
        .await
        .expect("h1")
        .text()
        .await
        .expect("text");
    assert_eq!(h1, "Page not found");
    b.client
        .find(Locator::LinkText("Go to the home page"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    assert_eq!(b.client.current_url().await.expect("url").path(), "/");
    b.close().await;
    app.stop().await;
}
