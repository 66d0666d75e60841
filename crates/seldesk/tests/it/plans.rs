//! No paid plan without payment (issue 28, item 1; PAY, DB-9): a database
//! is subscribed only when a payment is confirmed, and every unpaid one is
//! covered by the trial expiry.

use reqwest::{Method, StatusCode};
use serde_json::json;
use time::Duration;

use crate::databases::call;
use crate::helpers::{TestApp, spawn_app};

const PW: &str = "violet tractor lemon";

async fn owner(app: &TestApp, email: &str) -> String {
    app.sign_up(email, PW).await;
    app.token(email, PW).await
}

// promise: DB-9
#[tokio::test]
async fn a_new_or_imported_database_is_a_trial_until_a_payment_is_confirmed() {
    let app = spawn_app().await;
    let t = owner(&app, "free-rider@example.com").await;
    let (status, body) =
        call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "free-ride", "plan": "subscribed" })))
            .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("subscribe")), "{body}");
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing was created");

    let (status, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "honest" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{db}");
    assert_eq!(db["plan"], "trial");
    assert!(db["trial_ends"].is_string());
    let id = db["id"].as_str().expect("id").to_string();

    // An import is a new database: a trial too, with an end.
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
    let r = app
        .client
        .post(app.url("/api/v1/databases/import?name=imported-copy"))
        .bearer_auth(&t)
        .body(export.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), StatusCode::CREATED);
    let imported: serde_json::Value = r.json().await.expect("json");
    assert_eq!(imported["plan"], "trial", "{imported}");
    assert!(imported["trial_ends"].is_string(), "{imported}");

    // The control panel offers no paid plan to create, and refuses one posted anyway.
    let session = app.web_session("free-rider@example.com", PW).await;
    let page = app.client.get(app.url("/databases")).header("cookie", &session).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(!html.contains("value=\"subscribed\""), "no paid plan in the create form");
    let csrf = session.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let r = app
        .client
        .post(app.url("/databases"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("name", "form-ride"), ("region", "in"), ("plan", "subscribed")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    let (_, list) = call(&app, Method::GET, "/api/v1/databases", &t, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    app.stop().await;
}

// promise: DB-9, PAY-3
#[tokio::test]
async fn every_unpaid_database_is_deactivated_and_a_paid_one_is_not() {
    let app = spawn_app().await;
    let t = owner(&app, "mixed@example.com").await;
    let mut ids = Vec::new();
    for name in ["paid-one", "unpaid-subscribed", "endless-trial", "lapsed-cancel"] {
        let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": name }))).await;
        ids.push(db["id"].as_str().expect("id").to_string());
    }
    crate::helpers::paid(&app, &ids[0]).await;
    // Rows as older versions or a crafted request left them.
    sqlx::query("UPDATE databases SET plan = 'subscribed', trial_ends_at = NULL WHERE id = $1")
        .bind(&ids[1])
        .execute(app.db().pool())
        .await
        .expect("unpaid");
    sqlx::query("UPDATE databases SET trial_ends_at = NULL WHERE id = $1")
        .bind(&ids[2])
        .execute(app.db().pool())
        .await
        .expect("endless");
    crate::helpers::paid(&app, &ids[3]).await;
    sqlx::query("UPDATE subscriptions SET status = 'cancelled' WHERE database_id = $1")
        .bind(&ids[3])
        .execute(app.db().pool())
        .await
        .expect("cancelled");
    let databases = &app.app().services().databases;
    assert_eq!(databases.expire_trials().await.expect("expire"), 2, "the unpaid subscribed one and the endless trial");
    let status = |id: &str| {
        let (app, id) = (&app, id.to_string());
        async move {
            let s: String = sqlx::query_scalar("SELECT status FROM databases WHERE id = $1")
                .bind(&id)
                .fetch_one(app.db().pool())
                .await
                .expect("status");
            s
        }
    };
    assert_eq!(status(&ids[0]).await, "active");
    assert_eq!(status(&ids[1]).await, "deactivated");
    assert_eq!(status(&ids[2]).await, "deactivated");
    assert_eq!(status(&ids[3]).await, "active", "cancelled, but its paid month runs");
    // Reactivating what was never paid asks for a payment.
    let (code, body) = call(&app, Method::POST, &format!("/api/v1/databases/{}/reactivate", ids[1]), &t, None).await;
    assert_eq!(code, StatusCode::PAYMENT_REQUIRED, "{body}");
    // Past the paid month, the cancelled one goes too; the paying one stays.
    app.clock.advance(Duration::days(32));
    sqlx::query("UPDATE subscriptions SET period_end = $1 WHERE database_id = $2")
        .bind(seldesk_store::to_millis(app.clock_now() + Duration::days(30)))
        .bind(&ids[0])
        .execute(app.db().pool())
        .await
        .expect("renewed");
    assert_eq!(databases.expire_trials().await.expect("expire"), 1);
    assert_eq!(status(&ids[3]).await, "deactivated");
    assert_eq!(status(&ids[0]).await, "active");
    app.stop().await;
}

// promise: PAY-1
#[tokio::test]
async fn payments_are_simulated_only_when_asked_for_and_say_so_on_every_page() {
    // No processor: paid plans are unavailable, not faked.
    let app = spawn_app().await;
    let t = owner(&app, "no-processor@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "no-pay" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let session = app.web_session("no-processor@example.com", PW).await;
    let page = app.client.get(app.url(&format!("/databases/{id}/subscribe"))).header("cookie", &session).send().await;
    let html = page.expect("page").text().await.expect("html");
    assert!(html.contains("id=\"paid-unavailable\"") && !html.contains("id=\"pay\""), "{html}");
    let (status, body) = call(
        &app,
        Method::POST,
        &format!("/api/v1/databases/{id}/subscription"),
        &t,
        Some(json!({ "plan": "standard", "interval": "monthly", "processor": "test" })),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(!app.text("/").await.1.contains("payments-simulated"));
    assert_eq!(app.get("/billing/test-processor/x").await.status(), StatusCode::NOT_FOUND);
    app.stop().await;

    // The test processor: only when configured, and every page says so.
    let app = crate::helpers::spawn_app_with(
        |c| c.billing.processor = Some("test".into()),
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    for path in ["/", "/privacy", "/signin", "/staff", "/no-such-page"] {
        let (_, html) = app.text(path).await;
        assert!(html.contains("id=\"payments-simulated\""), "{path}");
    }
    let r = app.get("/healthz").await;
    assert_eq!(r.headers().get("x-seldesk-payments").and_then(|v| v.to_str().ok()), Some("simulated"));
    app.stop().await;
}

// promise: DB-9, STF-1
#[tokio::test]
async fn the_finance_role_can_grant_a_subscription_with_a_reason_and_it_is_audited() {
    let app = spawn_app().await;
    let t = owner(&app, "granted@example.com").await;
    let (_, db) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "by-transfer" }))).await;
    let id = db["id"].as_str().expect("id").to_string();
    let grant = |cookie: String, reason: &'static str, until: String| {
        let (client, url, id) = (app.client.clone(), app.url("/staff/finance/grant"), id.clone());
        async move {
            let csrf = cookie.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
            let r = client
                .post(url)
                .header("cookie", &cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("database", id.as_str()),
                    ("until", until.as_str()),
                    ("reason", reason),
                ])
                .send()
                .await
                .expect("grant");
            r.status()
        }
    };
    let support = crate::helpers::staff_session(&app, "not-finance@seldesk.com", "support").await;
    let finance = crate::helpers::staff_session(&app, "money@seldesk.com", "finance").await;
    let later = (app.clock_now() + Duration::days(60)).date().to_string();
    let reason = "Paid by bank transfer, invoice 2026-12";
    assert_eq!(grant(support, reason, later.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(
        grant(finance.clone(), "why", later.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is needed"
    );
    assert_eq!(grant(finance.clone(), reason, "2001-01-01".into()).await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(grant(finance, reason, later).await, StatusCode::OK);
    let (_, d) = call(&app, Method::GET, &format!("/api/v1/databases/{id}"), &t, None).await;
    assert_eq!(d["plan"], "subscribed", "{d}");
    // Not deactivated as unpaid while the grant runs; afterwards it is.
    let databases = &app.app().services().databases;
    assert_eq!(databases.expire_trials().await.expect("expire"), 0);
    app.clock.advance(Duration::days(61));
    assert_eq!(databases.expire_trials().await.expect("expire"), 1);
    let audit = app.app().services().audit.for_target(&format!("db:{id}")).await.expect("audit");
    let granted = audit.iter().find(|e| e.action == "database.subscription_granted").expect("audited");
    assert_eq!(granted.details["reason"], "Paid by bank transfer, invoice 2026-12");
    assert!(granted.actor.starts_with("staff:"));
    app.stop().await;
}

// promise: DB-9
#[tokio::test]
async fn an_account_that_used_its_trials_is_refused_a_new_one_even_after_removing_some() {
    let app = crate::helpers::spawn_app_with(
        |c| c.databases.trials_per_account = 2,
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    let t = owner(&app, "serial-trialist@example.com").await;
    let (_, first) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "first" }))).await;
    let first_id = first["id"].as_str().expect("id").to_string();
    let export = app
        .client
        .get(app.url(&format!("/api/v1/databases/{first_id}/export")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("zip");
    let (status, _) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "second" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "third" }))).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("used your 2 free trials")), "{body}");
    // Removing one does not give a trial back, and an import is a trial too.
    app.app()
        .services()
        .databases
        .remove(
            &app.app()
                .services()
                .accounts
                .account_id_by_email("serial-trialist@example.com")
                .await
                .expect("id")
                .expect("some"),
            &first_id,
            "first",
        )
        .await
        .expect("removed");
    let (status, _) = call(&app, Method::POST, "/api/v1/databases", &t, Some(json!({ "name": "again" }))).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    let r = app
        .client
        .post(app.url("/api/v1/databases/import?name=imported"))
        .bearer_auth(&t)
        .body(export.to_vec())
        .send()
        .await
        .expect("import");
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    // Another account has its own trials.
    let other = owner(&app, "newcomer@example.com").await;
    let (status, _) = call(&app, Method::POST, "/api/v1/databases", &other, Some(json!({ "name": "first" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await;
}
