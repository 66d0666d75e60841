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
    let store = seldesk_visits::VisitStore::new(app.data.path());
    let today = app.clock_today();
    let visits = store.day(today).expect("day");
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
    assert!(app.data.path().join("visits").join(format!("{today}.sqlite")).exists(), "one file per day");
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
    let store = seldesk_visits::VisitStore::new(app.data.path());
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
    assert_eq!(store.days(), vec![first_day], "kept inside 2 months");
    app.clock.advance(Duration::days(5));
    run().await;
    assert!(store.days().is_empty(), "the day's partition is dropped whole after 2 months");
    let held = store.held().expect("held");
    assert_eq!(held.len(), 1, "the held IP's visit is kept past expiry");
    assert_eq!(held[0].ip, "127.0.0.1");
    run().await;
    assert_eq!(store.held().expect("held").len(), 1, "kept while the hold lasts");
    s.retention.release_hold(&security, hold).await.expect("release");
    run().await;
    assert!(store.held().expect("held").is_empty(), "erased once the hold ends");
}
