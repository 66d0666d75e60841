//! Every cookie the site sets comes from the registry and waits for the
//! consent its class needs (CK-1…CK-6): a crawl of pages and journeys in
//! every consent state collects each `Set-Cookie`.

use std::collections::{BTreeMap, BTreeSet};

use seldesk_domain::policy::CookieClassId;
use seldesk_web::cookies::{REGISTRY, registered_for};

use crate::helpers::{TestApp, spawn_app_with, staff_session};

const PW: &str = "violet tractor lemon";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Choice {
    None,
    Accept,
    Reject,
}

/// A browser with a cookie jar that checks every cookie it receives.
struct Visitor<'a> {
    app: &'a TestApp,
    jar: BTreeMap<String, String>,
    choice: Choice,
    gpc: bool,
    seen: &'a mut BTreeSet<(String, CookieClassId)>,
    label: &'static str,
}

impl<'a> Visitor<'a> {
    fn new(app: &'a TestApp, seen: &'a mut BTreeSet<(String, CookieClassId)>, gpc: bool, label: &'static str) -> Self {
        Self { app, jar: BTreeMap::new(), choice: Choice::None, gpc, seen, label }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn allowed(&self, class: CookieClassId) -> bool {
        match class {
            CookieClassId::Necessary => true,
            CookieClassId::Preferences => self.choice == Choice::Accept,
            CookieClassId::Analytics | CookieClassId::ThirdPartyAnalytics => self.choice == Choice::Accept && !self.gpc,
        }
    }

    fn take(&mut self, path: &str, r: &reqwest::Response) {
        for raw in r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = raw.split_once(';').unwrap_or((raw, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            let max_age =
                attrs.split(';').find_map(|a| a.trim().strip_prefix("Max-Age=").and_then(|v| v.parse::<i64>().ok()));
            if max_age == Some(0) {
                // A deletion needs no consent.
                self.jar.remove(name);
                continue;
            }
            let registered = registered_for(name, max_age.is_some()).unwrap_or_else(|| {
                panic!(
                    "[{}] {path} set `{name}` (kept: {}), which the registry does not list",
                    self.label,
                    max_age.is_some()
                )
            });
            assert!(!registered.third_party, "[{}] {path}: the server set third-party cookie {name}", self.label);
            assert!(
                self.allowed(registered.class),
                "[{}] {path} set `{name}` ({:?}) under consent {:?}, GPC {}",
                self.label,
                registered.class,
                self.choice,
                self.gpc
            );
            self.seen.insert((name.to_string(), registered.class));
            self.jar.insert(name.to_string(), value.to_string());
        }
    }

    async fn get(&mut self, path: &str) -> String {
        let mut req = self.app.client.get(self.app.url(path)).header("cookie", self.cookie_header());
        if self.gpc {
            req = req.header("sec-gpc", "1");
        }
        let r = req.send().await.expect("get");
        assert!(r.status().as_u16() < 500, "[{}] GET {path}: {}", self.label, r.status());
        self.take(path, &r);
        r.text().await.expect("text")
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::StatusCode {
        let csrf = self.jar.get("seldesk_csrf").cloned().expect("a page set the CSRF cookie first");
        let mut fields: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        let mut req = self.app.client.post(self.app.url(path)).header("cookie", self.cookie_header()).form(&fields);
        if self.gpc {
            req = req.header("sec-gpc", "1");
        }
        let r = req.send().await.expect("post");
        assert!(r.status().as_u16() < 500, "[{}] POST {path}: {}", self.label, r.status());
        self.take(path, &r);
        r.status()
    }

    async fn choose(&mut self, choice: Choice) {
        self.get("/cookies").await;
        let value = if choice == Choice::Accept { "accept_all" } else { "reject_all" };
        self.choice = choice;
        assert_eq!(self.post("/cookies", &[("choice", value)]).await, 303);
    }

    /// Public pages, a language choice, and the forms that take a country.
    async fn browse(&mut self, email: &str) {
        for path in [
            "/",
            "/privacy",
            "/privacy/versions",
            "/privacy.md",
            "/cookies",
            "/helpdesk",
            "/contact",
            "/careers",
            "/events",
            "/partners",
            "/upgrade",
            "/?lang=fr",
            "/privacy",
            "/signin",
            "/signup",
            "/no/such/page",
        ] {
            self.get(path).await;
        }
        let status = self
            .post(
                "/signup",
                &[
                    ("name", "Crawl Er"),
                    ("company", "Cookies Ltd"),
                    ("email", email),
                    ("password", PW),
                    ("country", "IN"),
                ],
            )
            .await;
        assert_eq!(status, 303, "[{}] signed up", self.label);
        for path in ["/account", "/databases", "/account/requests", "/"] {
            self.get(path).await;
        }
        assert_eq!(self.post("/signout", &[]).await, 303);
        self.get("/signin").await;
        assert_eq!(self.post("/signin", &[("email", email), ("password", PW)]).await, 303);
        self.get("/account").await;
    }
}

// promise: CK-1, CK-2, CK-3, CK-5
#[tokio::test]
async fn every_cookie_comes_from_the_registry_and_waits_for_its_consent() {
    let app = spawn_app_with(
        |c| c.google_analytics_id = Some("G-CRAWL1".into()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let mut seen = BTreeSet::new();

    let mut undecided = Visitor::new(&app, &mut seen, false, "no choice");
    undecided.browse("crawl-none@example.com").await;
    assert!(!undecided.get("/").await.contains("googletagmanager"));

    let mut rejecting = Visitor::new(&app, &mut seen, false, "rejected");
    rejecting.choose(Choice::Reject).await;
    rejecting.browse("crawl-reject@example.com").await;
    assert!(!rejecting.get("/").await.contains("googletagmanager"));

    let mut gpc = Visitor::new(&app, &mut seen, true, "accepted with GPC");
    gpc.choose(Choice::Accept).await;
    gpc.browse("crawl-gpc@example.com").await;
    assert!(!gpc.get("/").await.contains("googletagmanager"), "GPC refuses third-party analytics");

    let mut accepting = Visitor::new(&app, &mut seen, false, "accepted");
    accepting.choose(Choice::Accept).await;
    accepting.browse("crawl-accept@example.com").await;
    accepting.get("/upgrade").await;
    let home = accepting.get("/").await;
    assert!(home.contains("googletagmanager"), "Google Analytics loads after consent, and then sets `_ga`");
    assert!(home.contains("id=\"recent-page\""), "the preference cookie offers the last product page");
    let databases = accepting.get("/databases").await;
    // (in French: the visitor chose it on the way, and the preference cookie keeps it)
    assert!(
        databases.contains("le pays que vous avez choisi auparavant"),
        "the country cookie preselects the data center"
    );
    // Only the visitor who accepted analytics (without GPC) is followed from
    // page to page, by one visit id.
    app.app().visits().flush().await;
    let visits = app.app().visit_store().day(app.clock_today()).await.expect("visits");
    let ids: BTreeSet<&str> = visits.iter().filter_map(|v| v.visit.as_deref()).collect();
    assert_eq!(ids.len(), 1, "one consenting visit: {ids:?}");
    let followed = visits.iter().filter(|v| v.visit.is_some()).count();
    assert!(followed >= 10 && followed < visits.len(), "{followed} of {} pages", visits.len());
    // Withdrawing deletes what the refused classes set.
    accepting.get("/cookies").await;
    assert_eq!(accepting.post("/cookies", &[("choice", "withdraw")]).await, 303);
    assert!(!accepting.jar.contains_key("seldesk_visit") && !accepting.jar.contains_key("seldesk_recent"));

    // Staff pages set only necessary cookies.
    let staff = staff_session(&app, "crawl-admin@seldesk.com", "admin").await;
    for path in ["/staff", "/staff/tickets", "/staff/analytics", "/staff/backups"] {
        let r = app.client.get(app.url(path)).header("cookie", &staff).send().await.expect("staff page");
        for raw in r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let name = raw.split('=').next().unwrap_or_default();
            let kept = raw.contains("Max-Age=") && !raw.contains("Max-Age=0");
            let registered = registered_for(name, kept).unwrap_or_else(|| panic!("{path} set unregistered {name}"));
            assert_eq!(registered.class, CookieClassId::Necessary, "{path} set {name}");
            seen.insert((name.to_string(), registered.class));
        }
    }

    let never: Vec<String> = REGISTRY
        .iter()
        .filter(|r| !r.third_party && !seen.contains(&(r.name.to_string(), r.class)))
        .map(|r| format!("{} ({:?})", r.name, r.class))
        .collect();
    assert!(never.is_empty(), "registered but never set: {never:?}");
    app.stop().await;
}
