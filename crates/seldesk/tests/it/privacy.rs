use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::routing::post;
use seldesk_domain::{Actor, Clock, Role};
use seldesk_privacy::{Disclosure, NewHold, PrivacyError, Refusal, WebhookTransport};
use time::Duration;

use crate::helpers::{TestApp, cli_run, spawn_app};

fn services(app: &TestApp) -> &seldesk::app::Services {
    app.app().services()
}

/// The span of `years` calendar years from `start` (periods follow the calendar).
fn years_after(start: time::OffsetDateTime, years: u32) -> Duration {
    seldesk_domain::policy::Period::new(years, seldesk_domain::policy::Unit::Years).after(start) - start
}

fn disclosure(recipient: &str, purpose: &str, subject: &str, fields: &[(&str, &str)]) -> Disclosure {
    Disclosure {
        recipient: recipient.into(),
        recipient_name: None,
        purpose: purpose.into(),
        subject: subject.into(),
        fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }
}

/// A recipient on loopback that counts what reaches it.
async fn recipient() -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, b) = (hits.clone(), bodies.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |Json(body): Json<serde_json::Value>| {
            let (h, b) = (h.clone(), b.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                b.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), hits, bodies)
}

// promise: PRC-2, PAY-4
#[tokio::test]
async fn the_gate_sends_only_registered_fields_and_a_refused_field_never_reaches_the_network() {
    let app = spawn_app().await;
    let s = services(&app);
    let (url, hits, bodies) = recipient().await;
    let transport = WebhookTransport::new(url).expect("transport");

    let ok = disclosure(
        "paypal",
        "payment_processing",
        "person:p1",
        &[
            ("order.amount", "49.00"),
            ("order.currency", "EUR"),
            ("order.description", "Seldesk Standard, 1 month"),
            ("order.reference", "SO-2026-0001"),
            ("customer.name", "Asha Rao"),
            ("customer.email", "asha@example.com"),
        ],
    );
    let id = s.disclosures.send(&Actor::System, &ok, &transport).await.expect("sent");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(bodies.lock().expect("lock")[0]["fields"]["customer.name"], "Asha Rao");

    let mut extra = ok.clone();
    extra.fields.insert("person.phone".into(), "+91 22 5555 0100".into());
    let err = s.disclosures.send(&Actor::System, &extra, &transport).await.expect_err("refused");
    assert!(
        matches!(err, PrivacyError::Refused(Refusal::FieldNotAllowed { ref field, .. }) if field == "person.phone"),
        "{err}"
    );
    let mut card = ok.clone();
    card.fields.insert("order.description".into(), "paid with 4111 1111 1111 1111".into());
    assert!(matches!(
        s.disclosures.send(&Actor::System, &card, &transport).await,
        Err(PrivacyError::Refused(Refusal::CardNumber { .. }))
    ));
    let stranger = disclosure("acme_ads", "marketing", "person:p1", &[("customer.email", "asha@example.com")]);
    assert!(matches!(
        s.disclosures.send(&Actor::System, &stranger, &transport).await,
        Err(PrivacyError::Refused(Refusal::UnknownRecipient(_)))
    ));
    let wrong_purpose = disclosure("paypal", "marketing", "person:p1", &[("customer.email", "asha@example.com")]);
    assert!(matches!(
        s.disclosures.send(&Actor::System, &wrong_purpose, &transport).await,
        Err(PrivacyError::Refused(Refusal::PurposeNotRegistered { .. }))
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "nothing refused reached the recipient");

    let ledger = s.disclosures.for_subject("person:p1").await.expect("ledger");
    assert_eq!(ledger.len(), 1, "only the sent disclosure is in the ledger");
    assert_eq!(ledger[0].id, id);
    assert_eq!(ledger[0].recipient_name, "PayPal");
    assert_eq!(ledger[0].fields.len(), 6);
    let audit = s.audit.about("person:p1").await.expect("audit");
    assert_eq!(audit.iter().filter(|e| e.action == "disclosure.refused").count(), 4);
    assert!(audit.iter().all(|e| !e.details.to_string().contains("Asha")), "values never enter the audit trail");
    app.stop().await;
}

// promise: MKT-3, MKT-4
#[tokio::test]
async fn event_and_partner_transfers_carry_the_four_fields_and_are_recorded() {
    let app = spawn_app().await;
    let s = services(&app);
    let (url, hits, _) = recipient().await;
    let transport = WebhookTransport::new(url).expect("transport");
    let four = [
        ("person.name", "Lee Wong"),
        ("person.email", "lee@example.sg"),
        ("person.phone", "+65 5555 0101"),
        ("person.company", "Wong Trading"),
    ];
    let mut organiser = disclosure("event_organiser", "events", "person:lee", &four);
    organiser.recipient_name = Some("Marina Events Pte Ltd".into());
    s.disclosures.send(&Actor::System, &organiser, &transport).await.expect("organiser");
    let mut partner = disclosure("partner", "partner_contact", "person:lee", &four);
    partner.recipient_name = Some("Lion City ERP Partners".into());
    s.disclosures.send(&Actor::System, &partner, &transport).await.expect("partner");
    let mut more = partner.clone();
    more.fields.insert("customer.email".into(), "lee@example.sg".into());
    assert!(s.disclosures.send(&Actor::System, &more, &transport).await.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let ledger = s.disclosures.for_subject("person:lee").await.expect("ledger");
    let names: Vec<&str> = ledger.iter().map(|d| d.recipient_name.as_str()).collect();
    assert_eq!(names, ["Marina Events Pte Ltd", "Lion City ERP Partners"]);
    app.stop().await;
}

// promise: SEC-1
#[tokio::test]
async fn audit_verify_catches_edited_removed_and_truncated_entries() {
    let app = spawn_app().await;
    let s = services(&app);
    for i in 0..6 {
        s.audit
            .record(
                &Actor::Staff { id: "st1".into(), roles: vec![Role::Support] },
                "customer_db.read",
                Some("db:1"),
                None,
                serde_json::json!({ "i": i }),
            )
            .await
            .expect("record");
    }
    assert!(s.audit.verify().await.expect("verify").is_intact());
    let url = app.database_url();
    let (code, out, _) = cli_run(&["audit", "verify", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"));

    let seq = s.audit.recent(7).await.expect("recent")[3].seq;
    sqlx::query("UPDATE audit_log SET actor = 'staff:someone-else' WHERE seq = $1")
        .bind(seq)
        .execute(app.db().pool())
        .await
        .expect("tamper");
    let (code, out, err) = cli_run(&["audit", "verify", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("entry {seq} was edited")), "{out}");

    sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(seq - 1).execute(app.db().pool()).await.expect("remove");
    let report = s.audit.verify().await.expect("verify");
    assert!(
        report.problems.iter().any(|p| p.contains(&format!("entries {} to {} are missing", seq - 1, seq - 1))),
        "{:?}",
        report.problems
    );

    let last = s.audit.recent(1).await.expect("recent")[0].seq;
    sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(last).execute(app.db().pool()).await.expect("truncate");
    let report = s.audit.verify().await.expect("verify");
    assert!(report.problems.iter().any(|p| p.contains("newest entries were removed")), "{:?}", report.problems);
    app.stop().await;
}

#[tokio::test]
async fn each_category_disappears_at_its_rule_and_not_a_day_earlier() {
    let app = spawn_app().await;
    let s = services(&app);
    let (url, _, _) = recipient().await;
    let transport = WebhookTransport::new(url).expect("transport");
    s.audit.record(&Actor::System, "test.event", Some("person:old"), None, serde_json::json!({})).await.expect("audit");
    let d = disclosure("partner", "partner_contact", "person:old", &[("person.name", "Old Record")]);
    s.disclosures.send(&Actor::System, &d, &transport).await.expect("sent");
    s.erasure_log
        .record(
            "account_contact",
            &[(Some("person:gone"), "account:9")],
            seldesk_privacy::ErasureReason::PersonRequest,
            &Actor::System,
        )
        .await
        .expect("erasure");

    // erasure_record: 13 months.
    let thirteen_months = seldesk_domain::policy::Period::new(13, seldesk_domain::policy::Unit::Months);
    let start = app.clock.now();
    app.clock.set(thirteen_months.after(start) - Duration::days(1));
    s.retention.run(&Actor::System, false).await.expect("run");
    assert_eq!(s.erasure_log.for_subject("person:gone").await.expect("log").len(), 1, "a day early: kept");
    app.clock.set(thirteen_months.after(start));
    s.retention.run(&Actor::System, false).await.expect("run");
    assert!(s.erasure_log.for_subject("person:gone").await.expect("log").is_empty(), "erased at 13 months");

    // disclosure_record and audit_event: 3 years.
    let three_years = years_after(start, 3);
    app.clock.set(start + three_years - Duration::days(1));
    s.retention.run(&Actor::System, false).await.expect("run");
    assert_eq!(s.disclosures.for_subject("person:old").await.expect("ledger").len(), 1, "a day early: kept");
    assert!(!s.audit.about("person:old").await.expect("audit").is_empty());
    app.clock.set(start + three_years);
    let report = s.retention.run(&Actor::System, false).await.expect("run");
    assert!(s.disclosures.for_subject("person:old").await.expect("ledger").is_empty(), "erased at 3 years");
    assert!(s.audit.about("person:old").await.expect("audit").is_empty(), "old audit entries pruned");
    assert!(report.erased() >= 2);
    let verify = s.audit.verify().await.expect("verify");
    assert!(verify.is_intact(), "pruning keeps the chain verifiable: {:?}", verify.problems);
    assert!(s.retention.report().await.expect("report").overdue() == 0);
    app.stop().await;
}

#[tokio::test]
async fn a_legal_hold_keeps_what_it_covers_and_lets_go_at_its_end() {
    let app = spawn_app().await;
    let s = services(&app);
    let (url, _, _) = recipient().await;
    let transport = WebhookTransport::new(url).expect("transport");
    for who in ["person:held", "person:free"] {
        let d = disclosure("partner", "partner_contact", who, &[("person.name", "N")]);
        s.disclosures.send(&Actor::System, &d, &transport).await.expect("sent");
    }
    let start = app.clock.now();
    let three_years = years_after(start, 3);
    let dpo = Actor::Staff { id: "dpo1".into(), roles: vec![Role::Dpo] };
    s.retention
        .place_hold(
            &dpo,
            NewHold {
                category: "disclosure_record".into(),
                subject: Some("person:held".into()),
                from: None,
                to: None,
                reason: "Court order 2026/441 to preserve transfer records".into(),
                until: start + three_years + Duration::days(30),
            },
        )
        .await
        .expect("hold");
    app.clock.set(start + three_years);
    let run = s.retention.run(&Actor::System, false).await.expect("run");
    let line = run.categories.iter().find(|c| c.category == "disclosure_record").expect("line");
    assert_eq!((line.erased, line.held), (1, 1));
    assert_eq!(s.disclosures.for_subject("person:held").await.expect("ledger").len(), 1, "held");
    assert!(s.disclosures.for_subject("person:free").await.expect("ledger").is_empty());
    let report = s.retention.report().await.expect("report");
    let row = report.rows.iter().find(|r| r.category == "disclosure_record").expect("row");
    assert_eq!((row.overdue, row.held), (0, 1), "held records are not overdue");
    app.clock.set(start + three_years + Duration::days(30));
    s.retention.run(&Actor::System, false).await.expect("run");
    assert!(s.disclosures.for_subject("person:held").await.expect("ledger").is_empty(), "released at the hold's end");
    app.stop().await;
}

#[tokio::test]
async fn retention_report_exits_non_zero_when_the_engine_stopped_past_a_deadline() {
    let app = spawn_app().await;
    let url = app.database_url();
    let (code, out, err) = cli_run(&["retention", "report", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "{out}{err}");
    // Four-year-old ledger lines that no engine run erased.
    let old = seldesk_store::to_millis(time::OffsetDateTime::now_utc() - Duration::days(4 * 366));
    sqlx::query(
        "INSERT INTO disclosures (at, recipient, recipient_name, purpose, subject, fields, status) VALUES ($1, 'partner', 'P', 'partner_contact', 'person:x', 'person.name', 'sent')",
    )
    .bind(old)
    .execute(app.db().pool())
    .await
    .expect("insert");
    let (code, out, err) = cli_run(&["retention", "report", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("1 records are past their retention period"), "{err}");
    let (code, out, _) = cli_run(&["retention", "run", "--dry-run", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0);
    assert!(out.contains("disclosure_record    would erase      1"), "{out}");
    let (code, _, _) = cli_run(&["retention", "run", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0);
    let (code, out, _) = cli_run(&["retention", "report", "--json", "--database-url", &url, "--data", app.data_dir()]);
    assert_eq!(code, 0, "nothing overdue after a run: {out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(json["last_run"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn a_policy_change_is_recorded_in_the_audit_trail_once() {
    let app = spawn_app().await;
    let s = services(&app);
    let loaded = s.audit.recent(50).await.expect("recent");
    assert_eq!(loaded.iter().filter(|e| e.action == "policy.loaded").count(), 1);
    s.audit_policy().await.expect("again");
    let loaded = s.audit.recent(50).await.expect("recent");
    assert_eq!(loaded.iter().filter(|e| e.action == "policy.loaded").count(), 1, "unchanged policy: no new entry");
    app.stop().await;
}

#[test]
fn policy_ropa_lists_activities_in_markdown_and_json() {
    let (code, md, _) = cli_run(&["policy", "ropa"]);
    assert_eq!(code, 0);
    assert!(md.contains("# Records of processing activities"));
    assert!(md.contains("| Browser data |"));
    let (code, json, _) = cli_run(&["policy", "ropa", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(v["activities"].as_array().expect("list").len() >= 14);
}

// promise: SEC-1, STF-1
#[tokio::test]
async fn the_security_role_places_legal_holds_in_the_console_and_support_cannot() {
    let app = spawn_app().await;
    let security = crate::helpers::staff_session(&app, "sec@seldesk.com", "security").await;
    let csrf = security.split("; ").find_map(|c| c.strip_prefix("seldesk_csrf=")).expect("csrf").to_string();
    let until = (app.clock_today() + Duration::days(90)).to_string();
    let r = app
        .client
        .post(app.url("/staff/holds"))
        .header("cookie", &security)
        .form(&[
            ("csrf", csrf.as_str()),
            ("category", "browser_event"),
            ("subject", ""),
            ("reason", "AUP case 2026-17: abuse from one address"),
            ("until", until.as_str()),
        ])
        .send()
        .await
        .expect("place");
    assert_eq!(r.status(), 303);
    let holds = services(&app).retention.holds().await.expect("holds");
    assert_eq!(holds.len(), 1);
    assert!(holds[0].created_by.starts_with("staff:"));
    let audit = services(&app).audit.recent(10).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "legal_hold.place" && e.actor.starts_with("staff:")));
    let support = crate::helpers::staff_session(&app, "sup3@seldesk.com", "support").await;
    assert_eq!(
        app.client.get(app.url("/staff/holds")).header("cookie", &support).send().await.expect("get").status(),
        403
    );
    app.stop().await;
}

/// `seldesk retention` erases with the services that hold personal data and
/// nothing more: on a data folder that never had a vault it makes no vault
/// key (nor reads one where there is).
#[tokio::test]
async fn the_retention_commands_open_no_vault_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let data = dir.path().join("data");
    let data = data.to_str().expect("path");
    for args in [["retention", "run"], ["retention", "report"]] {
        let (code, out, err) = cli_run(&[args[0], args[1], "--database-url", &url, "--data", data]);
        assert_eq!(code, 0, "{out}{err}");
    }
    assert!(!dir.path().join("data/keys/vault.key").exists(), "retention made a vault key");
    assert!(dir.path().join("data/keys/audit.key").exists(), "it does keep the audit trail");
}
