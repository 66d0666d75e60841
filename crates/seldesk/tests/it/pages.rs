use seldesk_domain::Policy;

use crate::helpers::{edited_policy, spawn_app, spawn_app_with};

#[tokio::test]
async fn home_page_describes_the_product_and_links_onward() {
    let app = spawn_app().await;
    let (status, body) = app.text("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/privacy\""), "links to the policy");
    assert!(body.contains("India") && body.contains("Singapore") && body.contains("United Kingdom"));
    let css_url = body.split("href=\"/static/site.").nth(1).and_then(|r| r.split('"').next()).expect("stylesheet link");
    let css = app.get(&format!("/static/site.{css_url}")).await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().expect("ct").starts_with("text/css"));
    app.stop().await;
}

// promise: POL-1
#[tokio::test]
async fn privacy_page_shows_last_updated_of_the_version_in_force() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = crate::helpers::policy_with_an_older_version(dir.path());
    let app = spawn_app_with(|_| {}, policy.clone()).await;
    let current = policy.current_version(app.clock_today());
    let (status, body) = app.text("/privacy").await;
    assert_eq!(status, 200);
    assert!(body.contains(&format!("Last updated: {}", current.effective)), "last updated shown");
    let older: Vec<_> = policy.versions().iter().filter(|v| v.effective < current.effective).collect();
    assert_eq!(older.len(), 1, "the fixture's older version");
    for older in older {
        let (status, old) = app.text(&format!("/privacy/versions/{}", older.effective)).await;
        assert_eq!(status, 200);
        assert!(old.contains(&format!("Last updated: {}", older.effective)));
        assert!(old.contains("You are reading the version"), "older versions say so");
        assert!(old.contains("3 months after the last successful upgrade"), "the archived text, not today's");
    }
    let (status, list) = app.text("/privacy/versions").await;
    assert_eq!(status, 200);
    assert!(list.contains("in force"));
    app.stop().await;
}

// promise: PRC-1
#[tokio::test]
async fn privacy_page_has_every_section_and_the_provider_table_from_the_registry() {
    let app = spawn_app().await;
    let (_, body) = app.text("/privacy").await;
    for section in [
        "Information we collect",
        "How we use this information",
        "Accessing, updating or deleting your personal information",
        "Security",
        "Third-party service providers",
        "Data retention",
        "Safety retention period",
        "Transfer of data",
        "International staff",
        "Disclosure to third parties",
        "Cookie policy",
        "Policy updates",
        "Contacting us",
    ] {
        assert!(body.contains(&format!(">{section}</h")), "section {section}");
    }
    for figure in ["usually 2 months", "up to 2 years", "deactivated for 3 weeks", "up to 4 months", "up to 12 months"]
    {
        assert!(body.contains(figure), "figure {figure}");
    }
    let policy = Policy::builtin().expect("policy");
    for provider in policy.providers.iter().filter(|p| p.kind != seldesk_domain::policy::ProviderKind::Recipient) {
        assert!(body.contains(&format!("<td>{}", provider.name)), "row for {}", provider.name);
    }
    assert!(body.contains("Shared with PayPal: Order amount, Order currency, Order description, Order reference, Customer name, Customer e-mail."));
    app.stop().await;
}

// promise: CK-6
#[tokio::test]
async fn privacy_page_states_do_not_track_is_not_supported() {
    let app = spawn_app().await;
    let (_, body) = app.text("/privacy").await;
    assert!(body.contains("We do not currently support Do Not Track signals"));
    app.stop().await;
}

#[tokio::test]
async fn changing_a_period_in_the_policy_file_changes_the_page() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = edited_policy(
        dir.path(),
        r#"retention = { keep = "2 months", after = "created" }"#,
        r#"retention = { keep = "7 weeks", after = "created" }"#,
    );
    let policy = Policy::load(&file).expect("edited policy is valid");
    let app = spawn_app_with(|_| {}, policy).await;
    let (_, body) = app.text("/privacy").await;
    assert!(body.contains("usually 7 weeks"), "the page follows the file");
    assert!(!body.contains("usually 2 months"));
    let (_, md) = app.text("/privacy.md").await;
    assert!(md.contains("usually 7 weeks"));
    app.stop().await;
}

#[tokio::test]
async fn unknown_pages_and_versions_get_a_404_in_the_site_layout() {
    let app = spawn_app().await;
    for path in ["/no/such/page", "/privacy/versions/1999-01-01", "/privacy/versions/yesterday"] {
        let (status, body) = app.text(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("class=\"site-header\""), "{path} uses the layout");
        assert!(body.contains("href=\"/\""), "{path} links home");
    }
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = spawn_app().await;
    let r = app.get("/privacy").await;
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"].to_str().expect("csp").contains("default-src 'self'"));
    app.stop().await;
}

#[tokio::test]
async fn healthz_answers_and_metrics_live_only_on_the_admin_listener() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(app.get("/metrics").await.status(), 404, "no metrics on the public listener");
    let metrics = app.client.get(format!("{}/metrics", app.admin)).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("seldesk_http_requests_total"), "{text}");
    assert!(!text.contains("127.0.0.1"), "no addresses in metric labels");
    app.stop().await;
}

#[tokio::test]
async fn healthz_reports_an_unreachable_database() {
    let app = spawn_app().await;
    app.app().db().close().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 503);
    app.stop().await;
}

// promise: CK-5, CK-6
#[tokio::test]
async fn global_privacy_control_refuses_analytics_and_a_new_policy_version_asks_again() {
    let app =
        spawn_app_with(|c| c.google_analytics_id = Some("G-TEST123".into()), Policy::builtin().expect("policy")).await;
    assert!(app.text("/").await.1.contains("id=\"cookie-banner\""));
    let (cookie, csrf) = app.csrf("/").await;
    let r = app
        .client
        .post(app.url("/cookies"))
        .header("cookie", &cookie)
        .header("sec-gpc", "1")
        .form(&[("csrf", csrf.as_str()), ("choice", "accept_all")])
        .send()
        .await
        .expect("choose");
    assert_eq!(r.status(), 303);
    let consent = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_consent="))
        .expect("consent")
        .to_string();
    assert!(consent.contains(".100;"), "GPC: preferences yes, analytics no: {consent}");
    let rec: (i64, i64, i64) = sqlx::query_as("SELECT analytics, third_party, gpc FROM consents")
        .fetch_one(app.db().pool())
        .await
        .expect("record");
    assert_eq!(rec, (0, 0, 1));
    let pair = consent.split(';').next().expect("pair").to_string();
    let home =
        app.client.get(app.url("/")).header("cookie", &pair).send().await.expect("home").text().await.expect("text");
    assert!(!home.contains("cookie-banner") && !home.contains("googletagmanager"));
    // A choice made under an older policy version is asked again.
    let id = pair.split('=').nth(1).expect("value").split('.').next().expect("id");
    let old = format!("seldesk_consent={id}.2025-06-01.111");
    let home =
        app.client.get(app.url("/")).header("cookie", old).send().await.expect("home").text().await.expect("text");
    assert!(home.contains("id=\"cookie-banner\""), "asked again after a new version");
    assert!(!home.contains("googletagmanager"), "an outdated consent allows nothing");
    app.stop().await;
}

// promise: BRW-1, CK-2
#[tokio::test]
async fn the_site_speaks_the_visitors_language_and_remembers_a_choice_only_with_consent() {
    let app = spawn_app().await;
    let get = |path: &'static str, lang: Option<&'static str>, cookie: Option<String>| {
        let app = &app;
        async move {
            let mut rb = app.client.get(app.url(path));
            if let Some(l) = lang {
                rb = rb.header("accept-language", l);
            }
            if let Some(c) = cookie {
                rb = rb.header("cookie", c);
            }
            rb.send().await.expect("page")
        }
    };
    let r = get("/", Some("fr-FR,fr;q=0.9,en;q=0.5"), None).await;
    assert_eq!(r.headers()["content-language"], "fr");
    let page = r.text().await.expect("body");
    assert!(page.contains("<html lang=\"fr\">"));
    assert!(
        page.contains("Votre base de données d'entreprise") || page.contains("Votre base de données d&#39;entreprise")
    );
    assert!(page.contains("3 semaines"), "periods from the policy file in French");
    assert!(page.contains("Tout refuser"), "the cookie banner too");
    // Forms too: sign-up, sign-in, Helpdesk, cookie settings.
    for (path, words) in [
        ("/signup", ["Créez votre compte Seldesk", "Mot de passe"]),
        ("/signin", ["Connexion", "Mot de passe oublié"]),
        ("/helpdesk", ["Vos données personnelles", "Essai gratuit"]),
        ("/cookies", ["Paramètres des cookies", "Enregistrer mon choix"]),
        ("/contact", ["Nous contacter", "Envoyer"]),
        ("/privacy", ["seul le texte anglais fait foi", "Last updated"]),
    ] {
        let page = get(path, Some("fr"), None).await.text().await.expect("body");
        for w in words {
            assert!(page.contains(w), "{path} in French shows {w:?}");
        }
    }
    let page = get("/", Some("de-DE, en;q=0.8"), None).await.text().await.expect("body");
    assert!(page.contains("<html lang=\"en\">") && page.contains("Your business database"));

    // A choice without preferences consent lasts for the visit (a session cookie).
    let r = get("/?lang=fr", Some("en"), None).await;
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_lang="))
        .expect("language cookie")
        .to_string();
    assert!(!set.to_lowercase().contains("max-age"), "session only: {set}");
    let page = get("/privacy", Some("en"), Some("seldesk_lang=fr".into())).await.text().await.expect("body");
    assert!(page.contains("<html lang=\"fr\">"), "the choice beats Accept-Language");

    // With preferences consent it is remembered for 12 months.
    let (cookie, csrf) = app.csrf("/").await;
    let r = app
        .client
        .post(app.url("/cookies"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("choice", "accept_all")])
        .send()
        .await
        .expect("choose");
    let consent = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_consent="))
        .expect("consent")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let r = get("/?lang=fr", None, Some(consent)).await;
    let set = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_lang="))
        .expect("language cookie")
        .to_string();
    assert!(set.contains("Max-Age=31536000"), "{set}");
}

/// Cheap wins of a production site: brotli or gzip for text as the browser
/// asks (never for archives), a fingerprinted stylesheet cached for a year
/// with an ETag, an icon, robots.txt and a meta description.
#[tokio::test]
async fn text_is_compressed_the_stylesheet_is_fingerprinted_and_the_site_has_an_icon_and_robots_txt() {
    let app = spawn_app().await;
    let plain = app.client.get(app.url("/privacy")).send().await.expect("page");
    assert!(plain.headers().get("content-encoding").is_none(), "no encoding unless asked");
    let plain = plain.bytes().await.expect("body").len();
    for (asked, got) in [("br", "br"), ("gzip", "gzip"), ("gzip, deflate, br", "br")] {
        let r = app.client.get(app.url("/privacy")).header("accept-encoding", asked).send().await.expect("page");
        assert_eq!(r.headers()["content-encoding"], got, "{asked}");
        let size = r.bytes().await.expect("body").len();
        assert!(size * 3 < plain, "{asked}: {size} bytes against {plain}");
    }
    let api = app.client.get(app.url("/api/v1/nothing")).header("accept-encoding", "br").send().await.expect("api");
    assert!(api.headers().get("content-encoding").is_none() || api.headers()["content-encoding"] == "br");

    let (_, home) = app.text("/").await;
    assert!(home.contains("<meta name=\"description\" content=\"Seldesk hosts"), "a meta description");
    assert!(home.contains("rel=\"icon\" href=\"/static/favicon.svg\""));
    let name = home.split("href=\"/static/site.").nth(1).and_then(|r| r.split('"').next()).expect("stylesheet");
    let hash = name.strip_suffix(".css").expect("css");
    assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    let css = app.get(&format!("/static/site.{name}")).await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = css.headers()["etag"].clone();
    let again = app.client.get(app.url(&format!("/static/site.{name}"))).header("if-none-match", etag).send().await;
    assert_eq!(again.expect("again").status(), 304, "the browser's copy is still good");
    assert_eq!(app.get("/static/site.0000000000000000.css").await.status(), 404, "an old fingerprint is gone");
    assert_eq!(app.get("/static/../Cargo.toml").await.status(), 404);

    let old = app.get("/favicon.ico").await;
    assert_eq!((old.status().as_u16(), &old.headers()["location"]), (308, &"/static/favicon.svg".parse().expect("hv")));
    let icon = app.get("/static/favicon.svg").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    let (status, robots) = app.text("/robots.txt").await;
    assert_eq!(status, 200);
    assert!(robots.contains("Disallow: /account") && robots.contains("Disallow: /api/"), "{robots}");
    assert!(robots.contains("Sitemap: http://") && robots.contains("/sitemap.xml"), "{robots}");
    let r = app.client.get(app.url("/sitemap.xml")).header("host", "evil.example").send().await.expect("sitemap");
    assert_eq!(r.headers()["content-type"], "application/xml; charset=utf-8");
    let map = r.text().await.expect("xml");
    for page in ["/pricing</loc>", "/privacy</loc>", "/careers</loc>"] {
        assert!(map.contains(page), "{page}: {map}");
    }
    assert!(
        !map.contains("evil.example") && !map.contains("/account"),
        "the configured address, public pages only: {map}"
    );
    app.stop().await;
}
