//! Browser data: recorded off the request path, in daily partitions,
//! expired whole at the policy's period, legal holds keep named visits.

use time::Duration;

use crate::helpers::spawn_app;

const CHROME: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36";

// promise: BRW-2
#[tokio::test]
async fn every_page_request_records_ip_time_browser_platform_referrer_language() {
    let app = spawn_app().await;
    for path in ["/", "/privacy", "/careers"] {
        let r = app
            .client
            .get(app.url(path))
            .header("user-agent", CHROME)
            .header("referer", "https://search.example/?q=seldesk")
            .header("accept-language", "en-IN,en;q=0.9")
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200, "{path}");
    }
    // API and health checks are not page visits.
    app.client.get(app.url("/healthz")).send().await.expect("health");
    app.app().visits().flush().await;
    let store = app.app().visit_store();
    let today = app.clock_today();
    let visits = store.day(today).await.expect("day");
    let paths: Vec<&str> = visits.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["/", "/privacy", "/careers"]);
    let v = &visits[0];
    assert_eq!(v.ip, "127.0.0.1");
    assert_eq!((v.browser.as_str(), v.platform.as_str()), ("Chrome", "Linux"));
    assert!(v.browser_version.starts_with("121"), "{}", v.browser_version);
    assert_eq!(v.referrer.as_deref(), Some("https://search.example/?q=seldesk"));
    assert_eq!(v.language.as_deref(), Some("en-IN"));
    assert_eq!(v.country.as_deref(), Some("IN"));
    assert!((app.clock_now() - v.at).abs() < Duration::milliseconds(1), "stored with the time of the request");
    // Partitioned by day: a file per day, or a PostgreSQL partition per day.
    assert_eq!(store.days().await.expect("days"), vec![today]);
    if app.db().backend() == seldesk_store::Backend::Sqlite {
        assert!(app.data.path().join("visits").join(format!("{today}.sqlite")).exists(), "one file per day");
    } else {
        assert!(!app.data.path().join("visits").exists(), "in PostgreSQL, not in node-local files");
    }
    let metrics =
        reqwest::get(format!("http://{}/metrics", app.app().admin_addr())).await.expect("m").text().await.expect("t");
    assert!(metrics.contains("seldesk_browser_events_recorded_total"), "recording is measured");
}

// promise: BRW-5
#[tokio::test]
async fn visits_are_erased_at_two_months_by_whole_days_unless_a_legal_hold_names_them() {
    let app = spawn_app().await;
    let visit = |ua: &'static str| {
        let app = &app;
        async move {
            app.client.get(app.url("/")).header("user-agent", ua).send().await.expect("page");
        }
    };
    visit(CHROME).await;
    app.app().visits().flush().await;
    let store = app.app().visit_store();
    let first_day = app.clock_today();
    // The security role holds this IP's visits for an Acceptable Use case.
    let s = app.app().services();
    let security = seldesk_domain::Actor::Staff { id: "sec-1".into(), roles: vec![seldesk_domain::Role::Security] };
    let hold = s
        .retention
        .place_hold(
            &security,
            seldesk_privacy::NewHold {
                category: "browser_event".into(),
                subject: Some("ip:127.0.0.1".into()),
                from: None,
                to: None,
                reason: "AUP case 17: credential stuffing from this address".into(),
                until: app.clock_now() + Duration::days(365),
            },
        )
        .await
        .expect("hold");

    let run = || async { s.retention.run(&seldesk_domain::Actor::System, false).await.expect("run") };
    app.clock.advance(Duration::days(58));
    run().await;
    assert_eq!(store.days().await.expect("days"), vec![first_day], "kept inside 2 months");
    app.clock.advance(Duration::days(5));
    run().await;
    assert!(store.days().await.expect("days").is_empty(), "the day's partition is dropped whole after 2 months");
    let held = store.held().await.expect("held");
    assert_eq!(held.len(), 1, "the held IP's visit is kept past expiry");
    assert_eq!(held[0].ip, "127.0.0.1");
    run().await;
    assert_eq!(store.held().await.expect("held").len(), 1, "kept while the hold lasts");
    s.retention.release_hold(&security, hold).await.expect("release");
    run().await;
    assert!(store.held().await.expect("held").is_empty(), "erased once the hold ends");
}

/// Seeds a day of visits straight into its partition: `n` visits from
/// distinct addresses of one /24 per browser.
async fn seed(app: &crate::helpers::TestApp, day: time::Date, rows: &[(&str, &str, &str, &str, usize)]) {
    let store = app.app().visit_store();
    let mut visits = Vec::new();
    for (net, path, browser, country, n) in rows {
        for i in 0..*n {
            visits.push(seldesk_visits::Visit {
                at: day.with_hms(12, 0, 0).expect("time").assume_utc(),
                ip: format!("{net}.{}", i + 1),
                browser: browser.to_string(),
                browser_version: "1".into(),
                platform: "Linux".into(),
                referrer: Some(format!("https://news.example/story?reader={i}@example.com")),
                path: path.to_string(),
                language: Some("en-GB".into()),
                country: Some(country.to_string()),
                person: None,
                session: None,
                user_agent: None,
                visit: None,
            });
        }
    }
    store.write(visits).await.expect("seed");
}

// promise: BRW-3
#[tokio::test]
async fn the_analytics_dashboard_shows_only_anonymous_aggregates_with_small_groups_suppressed() {
    let app = spawn_app().await;
    let yesterday = app.clock_today() - Duration::days(1);
    seed(
        &app,
        yesterday,
        &[
            ("203.0.113", "/", "Chrome", "IN", 12),
            ("198.51.100", "/careers", "Firefox", "SG", 6),
            ("192.0.2", "/rare-page", "Lynx", "GB", 2),
        ],
    )
    .await;
    let s = app.app().services();
    s.visit_aggregates.aggregate_pending(app.clock_today()).await.expect("aggregate");
    // Nothing personal in the aggregates: no address, no referrer path or query.
    let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT dimension, value, visits FROM visit_daily")
        .fetch_all(app.db().pool())
        .await
        .expect("rows");
    for (dim, value, visits) in &rows {
        assert!(!value.contains("203.0.113.") && !value.contains('@'), "{dim}={value}");
        assert!(*visits >= 5, "no group under 5: {dim}={value} ({visits})");
    }
    assert!(rows.iter().any(|(d, v, n)| d == "referrer" && v == "news.example" && *n == 20));
    assert!(!rows.iter().any(|(_, v, _)| v == "Lynx" || v == "/rare-page"), "groups of 2 suppressed");

    let staff = crate::helpers::staff_session(&app, "analyst@seldesk.com", "dpo").await;
    let r = app.client.get(app.url("/staff/analytics")).header("cookie", &staff).send().await.expect("page");
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("body");
    assert!(page.contains("<svg id=\"visits-chart\""), "a chart drawn on the page");
    assert!(page.contains("20 visits in the period"), "{page}");
    assert!(page.contains("Chrome") && page.contains("Firefox") && page.contains("(other)"));
    assert!(!page.contains("Lynx") && !page.contains("203.0.113"));

    // The aggregates outlive the raw visits. (The staff pages above were
    // recorded in the background: written before the clock moves on.)
    app.app().visits().flush().await;
    app.clock.advance(Duration::days(70));
    s.retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    assert!(app.app().visit_store().days().await.expect("days").is_empty());
    let d = s.visit_aggregates.dashboard(yesterday, yesterday, 10).await.expect("dashboard");
    assert_eq!(d.days[0].visits, 20);
}

// promise: BRW-4
#[tokio::test]
async fn only_the_security_role_links_visits_to_people_with_a_basis_and_it_is_audited() {
    let app = spawn_app().await;
    let account_id = app.sign_up("watched@example.com", "violet tractor lemon").await;
    let session = app.web_session("watched@example.com", "violet tractor lemon").await;
    app.client.get(app.url("/account")).header("cookie", &session).send().await.expect("account");
    app.client.get(app.url("/privacy")).send().await.expect("anonymous");
    app.app().visits().flush().await;

    // Other roles cannot search.
    let support = crate::helpers::staff_session(&app, "helper@seldesk.com", "support").await;
    let r = app.client.get(app.url("/staff/security")).header("cookie", &support).send().await.expect("page");
    assert_eq!(r.status(), 403);
    let sec = crate::helpers::staff_session(&app, "sec@seldesk.com", "security").await;
    let csrf = sec.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let search = |by: &'static str, who: &'static str, basis: &'static str, reference: &'static str| {
        let (app, sec, csrf) = (&app, sec.clone(), csrf.clone());
        async move {
            let r = app
                .client
                .post(app.url("/staff/security"))
                .header("cookie", &sec)
                .form(&[("csrf", csrf.as_str()), ("by", by), ("who", who), ("basis", basis), ("reference", reference)])
                .send()
                .await
                .expect("search");
            (r.status(), r.text().await.expect("body"))
        }
    };
    let (status, body) = search("email", "watched@example.com", "", "AUP-9 spam").await;
    assert_eq!(status, 422, "a basis is required");
    assert!(body.contains("Choose the basis"));
    let (status, _) = search("email", "watched@example.com", "aup_case", "x").await;
    assert_eq!(status, 422, "a reference is required");
    let (status, body) = search("email", "watched@example.com", "aup_case", "AUP-9: phishing pages hosted").await;
    assert_eq!(status, 200);
    assert!(body.contains("/account") && body.contains(&format!("person:{account_id}")), "{body}");
    assert!(!body.contains("/privacy</td>"), "only this person's visits");
    let (status, body) = search("ip", "127.0.0.1", "legal_request", "Court order 2026/114").await;
    assert_eq!(status, 200);
    assert!(body.contains("/privacy") && body.contains("/account"));

    // Each search is audited with its basis and is in the person's access export.
    let audit = app.app().services().audit.about(&format!("person:{account_id}")).await.expect("audit");
    let searches: Vec<_> = audit.iter().filter(|e| e.action == "security.visits_searched").collect();
    assert_eq!(searches.len(), 2, "both searches concern this person");
    assert!(searches[0].details.to_string().contains("AUP-9"));
    assert!(searches[1].details.to_string().contains("legal_request"));
}

// promise: BRW-1
#[tokio::test]
async fn with_a_geolocation_database_visits_get_their_country_and_the_nearest_data_center_is_preselected() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-geoip.mmdb");
    let app = crate::helpers::spawn_app_with(
        |c| c.geoip = Some(fixture.clone()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    // The fixture places 127.0.0.0/8 in India; the browser claims Britain.
    app.client.get(app.url("/")).header("accept-language", "en-GB").send().await.expect("home");
    app.app().visits().flush().await;
    let visits = app.app().visit_store().day(app.clock_today()).await.expect("day");
    assert_eq!(visits[0].country.as_deref(), Some("IN"), "the address decides, not the language");
    assert_eq!(visits[0].language.as_deref(), Some("en-GB"));

    app.sign_up("geo@example.com", "violet tractor lemon").await;
    let session = app.web_session("geo@example.com", "violet tractor lemon").await;
    let page = app
        .client
        .get(app.url("/databases"))
        .header("cookie", &session)
        .header("accept-language", "en-GB")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(page.contains("from your connection&#39;s location"), "{page}");
    assert!(page.contains("Preselected: India"), "{page}");

    // Without a database the page says where the country came from instead.
    let plain = spawn_app().await;
    plain.sign_up("lang@example.com", "violet tractor lemon").await;
    let session = plain.web_session("lang@example.com", "violet tractor lemon").await;
    let page = plain
        .client
        .get(plain.url("/databases"))
        .header("cookie", &session)
        .header("accept-language", "en-SG")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("body");
    assert!(
        page.contains("from your browser&#39;s language settings") && page.contains("Preselected: Singapore"),
        "{page}"
    );
    let staff = crate::helpers::staff_session(&plain, "ops@seldesk.com", "dpo").await;
    let analytics = plain.client.get(plain.url("/staff/analytics")).header("cookie", &staff).send().await.expect("a");
    assert!(analytics.text().await.expect("body").contains("No geolocation database is configured"));
}

// promise: BRW-5
#[tokio::test]
async fn only_the_security_role_holds_browser_data() {
    let app = spawn_app().await;
    let dpo = seldesk_domain::Actor::Staff { id: "dpo-1".into(), roles: vec![seldesk_domain::Role::Dpo] };
    let hold = seldesk_privacy::NewHold {
        category: "browser_event".into(),
        subject: Some("ip:203.0.113.9".into()),
        from: None,
        to: None,
        reason: "AUP case 21: scraping".into(),
        until: app.clock_now() + Duration::days(30),
    };
    let err = app.app().services().retention.place_hold(&dpo, hold).await.expect_err("dpo may not");
    assert!(err.to_string().contains("security role"), "{err}");
}

// promise: BRW-2
#[tokio::test]
async fn visits_linked_to_an_account_are_in_its_access_export_and_erased_with_it() {
    let app = spawn_app().await;
    let pw = "violet tractor lemon";
    let account_id = app.sign_up("linked@example.com", pw).await;
    let session = app.web_session("linked@example.com", pw).await;
    app.client
        .get(app.url("/account"))
        .header("cookie", &session)
        .header("user-agent", CHROME)
        .send()
        .await
        .expect("a");
    app.client.get(app.url("/privacy")).send().await.expect("anonymous visit");
    app.app().visits().flush().await;
    let s = app.app().services();
    let account = s.accounts.account(&account_id).await.expect("account");
    let data = s.accounts.personal_data(&account).await.expect("export");
    let visits = data["other_records"]["browser_visits"].as_array().expect("section");
    assert!(visits.iter().any(|v| v["path"] == "/account" && v["browser"] == "Chrome"), "{visits:?}");
    assert!(!visits.iter().any(|v| v["path"] == "/privacy"), "only this person's visits");

    let token = app.token("linked@example.com", pw).await;
    let r = app
        .client
        .post(app.url("/api/v1/me/requests"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "kind": "erasure", "password": pw, "confirm": "linked@example.com" }))
        .send()
        .await
        .expect("erasure");
    assert!(r.status().is_success(), "{}", r.status());
    app.run_jobs().await;
    let store = app.app().visit_store();
    let left = store.search(seldesk_visits::Who::Person(format!("person:{account_id}"))).await.expect("search");
    assert!(left.is_empty(), "linked visits erased with the account");
    assert!(store.day(app.clock_today()).await.expect("day").iter().any(|v| v.path == "/privacy"), "others stay");
    let log = s.erasure_log.for_subject(&format!("person:{account_id}")).await.expect("log");
    assert!(log.iter().any(|e| e.category == "browser_event"));
}
