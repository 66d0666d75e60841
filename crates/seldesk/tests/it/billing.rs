//! Billing (issue 9) against local fakes of PayPal and Ingenico on loopback:
//! the exact fields each processor receives, signatures, idempotency,
//! gap-free invoices, renewals that fail and lapse, and card data refused.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use time::Duration;

use crate::databases::call;
use crate::fakes::FakeProcessors;
use crate::helpers::{TestApp, spawn_app_with};
use crate::marketing::verified_account;

async fn billing_app(fake: &FakeProcessors) -> TestApp {
    let base = fake.base();
    spawn_app_with(
        move |c| {
            c.billing.paypal = Some(seldesk_billing::config::PaypalSettings {
                base_url: base.clone(),
                client_id: FakeProcessors::PAYPAL_CLIENT_ID.into(),
                client_secret: FakeProcessors::PAYPAL_SECRET.into(),
                webhook_id: FakeProcessors::PAYPAL_WEBHOOK_ID.into(),
            });
            c.billing.ingenico = Some(seldesk_billing::config::IngenicoSettings {
                base_url: base,
                merchant_id: FakeProcessors::INGENICO_MERCHANT.into(),
                api_key_id: FakeProcessors::INGENICO_KEY_ID.into(),
                api_secret: FakeProcessors::INGENICO_SECRET.into(),
                webhook_key_id: FakeProcessors::INGENICO_WEBHOOK_KEY_ID.into(),
                webhook_secret: FakeProcessors::INGENICO_WEBHOOK_SECRET.into(),
            });
        },
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await
}

/// A verified customer in `country` with a trial database: (token, database id).
async fn customer(app: &TestApp, email: &str, country: &str) -> (String, String) {
    verified_account(app, email, country, None).await;
    let token = app.token(email, "saffron harbour kite").await;
    let (status, d) =
        call(app, reqwest::Method::POST, "/api/v1/databases", &token, Some(serde_json::json!({ "name": "shop" })))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    (token, d["id"].as_str().expect("id").to_string())
}

/// Follows the processor's buyer page (the fake approves) and returns the
/// query our return address got.
async fn approve(app: &TestApp, redirect: &str) -> (String, BTreeMap<String, String>) {
    let r = app.client.get(redirect).send().await.expect("approve page");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = r.headers()["location"].to_str().expect("location").to_string();
    let url = reqwest::Url::parse(&back).expect("url");
    let payment = url.path().rsplit('/').next().expect("payment id").to_string();
    (payment, url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

/// Subscribes `db` with `body`, approves on the fake processor's page and
/// completes the return: (payment id, the completed payment).
async fn subscribe_and_pay(
    app: &TestApp,
    token: &str,
    db: &str,
    body: serde_json::Value,
) -> (String, serde_json::Value) {
    let path = format!("/api/v1/databases/{db}/subscription");
    let (status, started) = call(app, reqwest::Method::POST, &path, token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let (payment, query) = approve(app, started["redirect_url"].as_str().expect("url")).await;
    let path = format!("/api/v1/billing/payments/{payment}/complete");
    let (status, done) =
        call(app, reqwest::Method::POST, &path, token, Some(serde_json::to_value(&query).expect("json"))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    (payment, done["payment"].clone())
}

fn keys_of(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                keys_of(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys_of(v, out)),
        _ => {}
    }
}

// promise: PAY-3, PAY-4
#[tokio::test]
async fn paypal_checkout_sends_only_the_registered_fields_renews_with_its_token_and_numbers_invoices_without_gaps() {
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "asha@example.com", "FR").await;

    // Amounts never come from the client: an amount field is refused.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/databases/{db}/subscription"),
        &token,
        Some(serde_json::json!({ "plan": "standard", "interval": "monthly", "processor": "paypal", "amount": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, started) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/databases/{db}/subscription"),
        &token,
        Some(serde_json::json!({ "plan": "standard", "interval": "monthly", "processor": "paypal" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let (payment, query) = approve(&app, started["redirect_url"].as_str().expect("url")).await;
    let (status, done) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/billing/payments/{payment}/complete"),
        &token,
        Some(serde_json::to_value(&query).expect("json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["payment"]["status"], "captured");
    // Returning twice changes nothing.
    let (_, again) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/billing/payments/{payment}/complete"),
        &token,
        Some(serde_json::to_value(&query).expect("json")),
    )
    .await;
    assert_eq!(again["payment"]["status"], "captured");

    // What PayPal received: order details, the customer's name and e-mail, nothing else personal.
    let orders: Vec<_> = fake.requests().into_iter().filter(|r| r.path == "/v2/checkout/orders").collect();
    assert_eq!(orders.len(), 1);
    let body = &orders[0].body;
    let unit = &body["purchase_units"][0];
    assert_eq!(
        unit["amount"],
        serde_json::json!({ "currency_code": "EUR", "value": "29.00" }),
        "France pays EUR, no tax configured"
    );
    assert!(unit["description"].as_str().expect("description").contains("Standard"));
    let paypal = &body["payment_source"]["paypal"];
    assert_eq!(paypal["email_address"], "asha@example.com");
    assert_eq!(paypal["name"], serde_json::json!({ "given_name": "Asha", "surname": "Rao" }));
    let raw = &orders[0].raw;
    let mut keys = Vec::new();
    keys_of(body, &mut keys);
    let allowed = [
        "intent",
        "purchase_units",
        "reference_id",
        "custom_id",
        "description",
        "amount",
        "currency_code",
        "value",
        "payment_source",
        "paypal",
        "name",
        "given_name",
        "surname",
        "email_address",
        "attributes",
        "vault",
        "store_in_vault",
        "usage_type",
        "experience_context",
        "return_url",
        "cancel_url",
        "user_action",
        "shipping_preference",
    ];
    for key in &keys {
        assert!(allowed.contains(&key.as_str()), "PayPal got `{key}`: {raw}");
    }
    for value in ["Rao Textiles", "Retail"] {
        assert!(!raw.contains(value), "PayPal got `{value}`: {raw}");
    }

    // Each call is in the disclosure ledger with exactly the registered fields.
    let person = format!(
        "person:{}",
        app.app().services().accounts.account_id_by_email("asha@example.com").await.expect("id").expect("some")
    );
    let ledger = app.app().services().disclosures.for_subject(&person).await.expect("ledger");
    let paypal_calls: Vec<_> = ledger.iter().filter(|d| d.recipient == "paypal").collect();
    assert_eq!(paypal_calls.len(), 2, "checkout and capture");
    let mut checkout_fields = paypal_calls[0].fields.clone();
    checkout_fields.sort();
    assert_eq!(
        checkout_fields,
        ["customer.email", "customer.name", "order.amount", "order.currency", "order.description", "order.reference"]
    );
    assert!(
        !paypal_calls[1].fields.iter().any(|f| f.starts_with("customer.")),
        "the capture carries no personal field"
    );

    // The database is subscribed; the first invoice is number 1 of the year, with a PDF.
    let (_, d) = call(&app, reqwest::Method::GET, &format!("/api/v1/databases/{db}"), &token, None).await;
    assert_eq!(d["plan"], "subscribed");
    let (_, list) = call(&app, reqwest::Method::GET, "/api/v1/billing/invoices", &token, None).await;
    let year = app.clock_now().year();
    assert_eq!(list["invoices"][0]["number"], format!("{year}-000001"));
    let invoice = list["invoices"][0]["id"].as_str().expect("id").to_string();
    let pdf = app
        .client
        .get(app.url(&format!("/api/v1/billing/invoices/{invoice}/pdf")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("pdf");
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.expect("bytes").starts_with(b"%PDF-"));
    assert!(app.mail_to("asha@example.com", &format!("Invoice {year}-000001")).is_some(), "invoice mailed");

    // A month later the renewal charges PayPal's vaulted token: invoice 2, no gap.
    app.clock.advance(Duration::days(32));
    let (renewed, failed, lapsed) = app.app().services().billing.renew_due().await.expect("renew");
    assert_eq!((renewed, failed, lapsed), (1, 0, 0));
    let token = app.token("asha@example.com", "saffron harbour kite").await;
    let charge = fake.requests().into_iter().filter(|r| r.path == "/v2/checkout/orders").nth(1).expect("renewal order");
    assert!(charge.body["payment_source"]["paypal"]["vault_id"].is_string(), "charged to the processor's token");
    assert!(!charge.raw.contains("asha@example.com"), "a renewal needs no e-mail");
    let (_, list) = call(&app, reqwest::Method::GET, "/api/v1/billing/invoices", &token, None).await;
    let mut numbers: Vec<String> = list["invoices"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["number"].as_str().expect("n").to_string())
        .collect();
    numbers.sort();
    let year2 = app.clock_now().year();
    if year2 == year {
        assert_eq!(numbers, [format!("{year}-000001"), format!("{year}-000002")]);
    } else {
        assert_eq!(numbers, [format!("{year}-000001"), format!("{year2}-000001")], "numbering restarts each year");
    }

    // The access export holds the billing section and the ledger entries.
    let export = seldesk_privacy::PersonalDataStore::export(
        &seldesk_billing::BillingRecords {
            db: app.db().clone(),
            policy: std::sync::Arc::new(seldesk_domain::Policy::builtin().expect("policy")),
        },
        &person,
    )
    .await
    .expect("export");
    assert_eq!(export["payments"].as_array().expect("payments").len(), 2);
    assert!(!export.to_string().contains("vault"), "the processor's token is not in the export");
    app.stop().await;
}

// promise: PAY-3
#[tokio::test]
async fn ingenico_webhooks_are_verified_applied_once_and_replays_or_forgeries_are_refused_and_audited() {
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "lee@example.com", "SG").await;
    let (status, started) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/databases/{db}/subscription"),
        &token,
        Some(serde_json::json!({ "plan": "team", "interval": "yearly", "seats": 3, "processor": "ingenico" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let hosted = fake.requests().into_iter().find(|r| r.path.ends_with("/hostedcheckouts")).expect("checkout");
    // Singapore: SGD, 3 users x 90.00 a year + GST 9% = 294.30 SGD, in minor units.
    assert_eq!(hosted.body["order"]["amountOfMoney"], serde_json::json!({ "amount": 29430, "currencyCode": "SGD" }));
    assert_eq!(hosted.body["order"]["customer"]["contactDetails"]["emailAddress"], "lee@example.com");
    assert!(hosted.header("authorization").expect("signed").starts_with("GCS v1HMAC:"));
    let (payment, query) = approve(&app, started["redirect_url"].as_str().expect("url")).await;

    // The webhook arrives before the buyer comes back.
    let pay_id = fake.ingenico_payment_of(&query["hostedCheckoutId"]).expect("the fake created the payment");
    let event = serde_json::json!({
        "apiVersion": "v1", "id": "evt-1", "created": "2026-11-30T08:00:00Z", "merchantId": FakeProcessors::INGENICO_MERCHANT,
        "type": "payment.captured",
        "payment": { "id": pay_id, "status": "CAPTURED", "paymentOutput": {
            "amountOfMoney": { "amount": 29430, "currencyCode": "SGD" },
            "references": { "merchantReference": hosted.body["order"]["references"]["merchantReference"] } } },
    });
    let post = |headers: Vec<(String, String)>, body: String| {
        let mut req = app.client.post(app.url("/api/v1/billing/webhooks/ingenico")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let (headers, body) = fake.ingenico_webhook(&event);
    let r = post(headers.clone(), body.clone()).await.expect("webhook");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["applied"], "captured");
    // The same event again: 409, nothing applied twice.
    assert_eq!(post(headers.clone(), body.clone()).await.expect("replay").status(), StatusCode::CONFLICT);
    // A forged one (body changed after signing): 401.
    let forged = body.replace("29430", "1");
    assert_eq!(post(headers.clone(), forged).await.expect("forged").status(), StatusCode::UNAUTHORIZED);
    let mut unsigned = headers.clone();
    unsigned.retain(|(k, _)| !k.eq_ignore_ascii_case("x-gcs-signature"));
    assert_eq!(post(unsigned, body.clone()).await.expect("unsigned").status(), StatusCode::UNAUTHORIZED);
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'billing.webhook%' ORDER BY seq")
            .fetch_all(app.db().pool())
            .await
            .expect("audit");
    assert_eq!(
        audit,
        ["billing.webhook_applied", "billing.webhook_replayed", "billing.webhook_refused", "billing.webhook_refused"]
    );

    // The buyer's return after the webhook settles nothing twice: one invoice.
    let (status, done) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/billing/payments/{payment}/complete"),
        &token,
        Some(serde_json::to_value(&query).expect("json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, list) = call(&app, reqwest::Method::GET, "/api/v1/billing/invoices", &token, None).await;
    assert_eq!(list["invoices"].as_array().expect("list").len(), 1);
    assert_eq!(list["invoices"][0]["total_cents"], 29430);

    // A refund event after a capture event it overtook is applied once; a late capture changes nothing.
    let refund = serde_json::json!({ "apiVersion": "v1", "id": "evt-2", "type": "payment.refunded",
        "payment": { "id": pay_id, "status": "REFUNDED", "paymentOutput": { "amountOfMoney": { "amount": 29430, "currencyCode": "SGD" } } } });
    let (h, b) = fake.ingenico_webhook(&refund);
    assert_eq!(post(h, b).await.expect("refund").status(), StatusCode::OK);
    let late = serde_json::json!({ "apiVersion": "v1", "id": "evt-3", "type": "payment.captured",
        "payment": { "id": pay_id, "status": "CAPTURED", "paymentOutput": { "amountOfMoney": { "amount": 29430, "currencyCode": "SGD" } } } });
    let (h, b) = fake.ingenico_webhook(&late);
    let r = post(h, b).await.expect("late");
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["applied"], "no change");
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(&payment)
        .fetch_one(app.db().pool())
        .await
        .expect("status");
    assert_eq!(status, "refunded");
    app.stop().await;
}

// promise: DB-7
#[tokio::test]
async fn a_renewal_that_keeps_failing_is_retried_then_deactivates_the_database_with_notice() {
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "ravi@example.com", "IN").await;
    subscribe_and_pay(
        &app,
        &token,
        &db,
        serde_json::json!({ "plan": "standard", "interval": "monthly", "processor": "paypal" }),
    )
    .await;
    fake.decline_next_charges(10);
    let billing = &app.app().services().billing;

    app.clock.advance(Duration::days(31) + Duration::hours(1));
    assert_eq!(billing.renew_due().await.expect("renew"), (0, 1, 0), "first failure");
    assert!(app.mail_to("ravi@example.com", "Payment for shop failed").is_some());
    assert_eq!(billing.renew_due().await.expect("renew"), (0, 0, 0), "not before the retry date");
    for (days, expect) in [(1, (0, 1, 0)), (3, (0, 1, 0)), (7, (0, 0, 1))] {
        app.clock.advance(Duration::days(days) + Duration::minutes(1));
        assert_eq!(billing.renew_due().await.expect("renew"), expect, "after {days} more days");
    }
    let token = app.token("ravi@example.com", "saffron harbour kite").await;
    let (status, d) = call(&app, reqwest::Method::GET, &format!("/api/v1/databases/{db}"), &token, None).await;
    assert_eq!(d["status"], "deactivated", "{status} {d}");
    let until = d["reactivate_until"].as_str().expect("grace").to_string();
    let notice = app.mail_to("ravi@example.com", "is deactivated: payment failed").expect("notice");
    assert!(notice.contains(&until[..10]), "the notice gives the grace date {until}: {notice}");
    // Reactivating needs a payment now.
    let (status, e) =
        call(&app, reqwest::Method::POST, &format!("/api/v1/databases/{db}/reactivate"), &token, None).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{e}");
    // India: INR with GST 18% on 1,999.00 = 2,358.82, charged 4 times in vain.
    let charges: Vec<_> = fake.requests().into_iter().filter(|r| r.path == "/v2/checkout/orders").skip(1).collect();
    assert_eq!(charges.len(), 4);
    assert!(
        charges.iter().all(|c| c.body["purchase_units"][0]["amount"]
            == serde_json::json!({ "currency_code": "INR", "value": "2358.82" }))
    );
    app.stop().await;
}

/// Log lines written while the server runs in this test binary.
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut logs) = captured_logs().lock() {
                    logs.extend_from_slice(buf);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
        std::sync::Mutex::new(Vec::new())
    })
}

/// Every route the web layer declares, read from its source.
fn declared_routes() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src");
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("web sources") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        for part in text.split(".route(").skip(1) {
            if let Some(path) = part.trim_start().strip_prefix('"').and_then(|p| p.split('"').next()) {
                routes.push(path.to_string());
            }
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

// promise: PAY-1
#[tokio::test]
async fn card_details_posted_to_every_route_are_refused_and_never_stored_or_logged() {
    captured_logs();
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "card@example.com", "GB").await;
    let session = app.web_session("card@example.com", "saffron harbour kite").await;
    let csrf = session.split("seldesk_csrf=").nth(1).expect("csrf").split(';').next().expect("v").to_string();
    let routes = declared_routes();
    assert!(routes.len() > 100, "found {} routes", routes.len());
    let card = "4111 1111 1111 1111";
    let mut tried = 0;
    for route in &routes {
        // Real ids where the route names a database, so the request would reach real code.
        let path: String = route
            .replace("{id}", &db)
            .replace("{processor}", "ingenico")
            .replace("{*rest}", "anything")
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x0123456789abcdef".to_string() } else { seg.to_string() })
            .collect::<Vec<_>>()
            .join("/");
        let form = [
            ("csrf", csrf.as_str()),
            ("name", "Card Test"),
            ("email", "card@example.com"),
            ("card_number", card),
            ("cvv", "737"),
            ("expiry", "12/30"),
        ];
        let json = serde_json::json!({ "name": "Card Test", "card_number": card, "cvv": "737", "expiry": "12/30" });
        // Processors' webhooks are not ours to refuse by field name: an unsigned one is refused as such.
        let webhook = path.starts_with("/api/v1/billing/webhooks/");
        for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::PATCH] {
            let r = app
                .client
                .request(method.clone(), app.url(&path))
                .header("cookie", &session)
                .form(&form)
                .send()
                .await
                .expect("form");
            let s = r.status();
            assert!(
                if webhook { s.is_client_error() } else { s == StatusCode::UNPROCESSABLE_ENTITY },
                "{method} {path} (form) answered {s}"
            );
            let r = app
                .client
                .request(method.clone(), app.url(&path))
                .bearer_auth(&token)
                .json(&json)
                .send()
                .await
                .expect("json");
            let s = r.status();
            assert!(
                if webhook { s.is_client_error() } else { s == StatusCode::UNPROCESSABLE_ENTITY },
                "{method} {path} (JSON) answered {s}"
            );
            tried += 2;
        }
    }
    assert!(tried > 600);
    let text = r#"{"name":"card-shop"}"#;
    let r = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(text)
        .send()
        .await
        .expect("plain");
    let status = r.status();
    let answer = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "an ordinary body that merely mentions cards passes the guard: {answer}");

    // Nothing anywhere: the control plane, every file in the data folder, the logs.
    let digits = "4111111111111111";
    for (dir, files) in [(app.data.path().to_path_buf(), walk(app.data.path()))] {
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(
                !hay.contains(card) && !hay.contains(digits),
                "card number in {}",
                f.strip_prefix(&dir).unwrap_or(&f).display()
            );
        }
    }
    if app.database_url.starts_with("postgres") {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_all(app.db().pool())
                .await
                .expect("tables");
        for t in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT CAST(t.* AS TEXT) FROM \"{t}\" t")))
                    .fetch_all(app.db().pool())
                    .await
                    .expect("rows");
            assert!(!rows.iter().any(|r| r.contains(card) || r.contains(digits)), "card number in table {t}");
        }
    }
    let logs = String::from_utf8_lossy(&captured_logs().lock().expect("logs")).to_string();
    assert!(!logs.contains(card) && !logs.contains(digits), "card number in the logs");
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

// promise: PAY-3, PAY-4
#[tokio::test]
async fn plan_changes_prorate_refunds_go_through_the_processor_and_a_paypal_capture_of_the_wrong_amount_activates_nothing()
 {
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "gwen@example.com", "GB").await;
    let sub_path = format!("/api/v1/databases/{db}/subscription");
    let (_, paid) = subscribe_and_pay(
        &app,
        &token,
        &db,
        serde_json::json!({ "plan": "standard", "interval": "monthly", "processor": "paypal" }),
    )
    .await;
    // United Kingdom: 24.00 GBP + VAT 20%.
    assert_eq!(paid["amount_cents"], 2880);

    // Half-way through the month, a cheaper plan: nothing charged, the difference kept as credit.
    app.clock.advance(Duration::days(14));
    let token = app.token("gwen@example.com", "saffron harbour kite").await;
    let (status, changed) = call(
        &app,
        reqwest::Method::PATCH,
        &sub_path,
        &token,
        Some(serde_json::json!({ "plan": "team", "interval": "monthly", "seats": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert!(changed["payment"].is_null(), "a downgrade charges nothing");
    let credit = changed["subscription"]["credit_cents"].as_i64().expect("credit");
    assert!(credit > 0 && credit < 2400, "credit for unused time: {credit}");
    // Then a bigger one: the rest of the period at the new price, less the credit, charged to the token now.
    let (status, changed) = call(
        &app,
        reqwest::Method::PATCH,
        &sub_path,
        &token,
        Some(serde_json::json!({ "plan": "team", "interval": "monthly", "seats": 10 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["payment"]["status"], "captured", "{changed}");
    let charged = changed["payment"]["amount_cents"].as_i64().expect("amount");
    assert!(charged > 0 && charged < 7200, "prorated: {charged}");
    let (_, list) = call(&app, reqwest::Method::GET, "/api/v1/billing/invoices", &token, None).await;
    assert_eq!(list["invoices"].as_array().expect("list").len(), 2);
    let latest = list["invoices"][0]["id"].as_str().expect("id");
    let (_, inv) = call(&app, reqwest::Method::GET, &format!("/api/v1/billing/invoices/{latest}"), &token, None).await;
    let lines = inv["document"]["lines"].as_array().expect("lines");
    assert!(lines.iter().any(|l| l["amount_cents"].as_i64().expect("n") < 0), "the credit is a line: {inv}");
    assert_eq!(inv["document"]["total_cents"], charged);

    // Finance refunds the change through PayPal; other roles cannot.
    let change_payment = changed["payment"]["id"].as_str().expect("id").to_string();
    let support = crate::helpers::staff_session(&app, "sam@seldesk.com", "support").await;
    let finance = crate::helpers::staff_session(&app, "fin@seldesk.com", "finance").await;
    for (cookie, expected) in [(&support, StatusCode::FORBIDDEN), (&finance, StatusCode::SEE_OTHER)] {
        let csrf = cookie.split("seldesk_csrf=").nth(1).expect("csrf").split(';').next().expect("v").to_string();
        let r = app
            .client
            .post(app.url(&format!("/staff/finance/payments/{change_payment}/refund")))
            .header("cookie", cookie.as_str())
            .form(&[("csrf", csrf.as_str()), ("amount", ""), ("reason", "customer asked within 14 days")])
            .send()
            .await
            .expect("refund");
        assert_eq!(r.status(), expected);
    }
    let refund = fake.requests().into_iter().find(|r| r.path.ends_with("/refund")).expect("refund sent to PayPal");
    assert_eq!(refund.body["amount"]["value"], seldesk_billing::processor::decimal(charged));
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(&change_payment)
        .fetch_one(app.db().pool())
        .await
        .expect("status");
    assert_eq!(status, "refunded");

    // A second database: PayPal's webhook reports a capture of another amount: nothing is activated.
    let (_, d2) =
        call(&app, reqwest::Method::POST, "/api/v1/databases", &token, Some(serde_json::json!({ "name": "second" })))
            .await;
    let d2 = d2["id"].as_str().expect("id").to_string();
    let (_, started) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/databases/{d2}/subscription"),
        &token,
        Some(serde_json::json!({ "plan": "standard", "interval": "yearly", "processor": "paypal" })),
    )
    .await;
    let (payment2, query2) = approve(&app, started["redirect_url"].as_str().expect("url")).await;
    let event = serde_json::json!({ "id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": { "id": "CAP-X", "status": "COMPLETED", "amount": { "currency_code": "GBP", "value": "1.00" },
            "supplementary_data": { "related_ids": { "order_id": query2["token"] } } } });
    let (headers, body) = fake.paypal_webhook(&event);
    let send = |headers: Vec<(String, String)>, body: String| {
        let mut req = app.client.post(app.url("/api/v1/billing/webhooks/paypal")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(
        send(headers.clone(), body.replace("1.00", "288.00")).await.expect("forged").status(),
        StatusCode::UNAUTHORIZED
    );
    let r = send(headers, body).await.expect("webhook");
    assert_eq!(r.status(), StatusCode::CONFLICT, "a wrong amount is refused");
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(&payment2)
        .fetch_one(app.db().pool())
        .await
        .expect("status");
    assert_eq!(status, "mismatch");
    let (_, d) = call(&app, reqwest::Method::GET, &format!("/api/v1/databases/{d2}"), &token, None).await;
    assert_eq!(d["plan"], "trial", "nothing activated");
    app.stop().await;
}

// promise: ACC-4, ACC-6
#[tokio::test]
async fn a_paying_customer_erased_leaves_invoices_and_payments_only_in_the_finance_archive_until_the_legal_period_ends()
{
    let fake = FakeProcessors::start().await;
    let app = billing_app(&fake).await;
    let (token, db) = customer(&app, "mei@example.com", "SG").await;
    let account =
        app.app().services().accounts.account_id_by_email("mei@example.com").await.expect("id").expect("some");
    let (_, paid) = subscribe_and_pay(
        &app,
        &token,
        &db,
        serde_json::json!({ "plan": "standard", "interval": "monthly", "processor": "ingenico" }),
    )
    .await;
    assert_eq!(paid["status"], "captured");

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/me/requests",
        &token,
        Some(
            serde_json::json!({ "kind": "erasure", "password": "saffron harbour kite", "confirm": "mei@example.com" }),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.run_jobs().await;
    for table in ["invoices", "payments", "subscriptions"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(app.db().pool())
            .await
            .expect("count");
        assert_eq!(n, 0, "nothing left in {table}");
    }
    let archived: Vec<(String, String)> = sqlx::query_as("SELECT kind, data FROM finance_archive ORDER BY kind")
        .fetch_all(app.db().pool())
        .await
        .expect("archive");
    let kinds: Vec<&str> = archived.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["invoice", "payment"]);
    assert!(archived.iter().all(|(_, d)| !d.contains(&account)), "detached from the account");
    assert!(archived[0].1.contains("Asha Rao"), "the invoice keeps its buyer, as tax law requires");
    assert!(!archived[1].1.contains("mei@example.com"), "the payment record holds no contact details");
    let receipt = app.mail_to("mei@example.com", "has been erased").expect("receipt");
    assert!(receipt.contains("1 invoice(s)"), "{receipt}");

    // Singapore's period is 5 years: kept the day before, erased after.
    app.clock.advance(Duration::days(5 * 365));
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM finance_archive").fetch_one(app.db().pool()).await.expect("n");
    assert_eq!(n, 2, "still inside the legal period");
    app.clock.advance(Duration::days(3));
    app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("retention");
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM finance_archive").fetch_one(app.db().pool()).await.expect("n");
    assert_eq!(n, 0, "erased when the legal period ended");
    app.stop().await;
}
