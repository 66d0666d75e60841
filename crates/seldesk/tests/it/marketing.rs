//! Marketing: one-click opt-out in every message and in every later send,
//! crash-safe campaign sends, event registrations and partner referrals
//! handed over through the disclosure gate, trend reports from counts only,
//! and the person's rights over all of it (MKT-1…MKT-4, PRC-2, PRC-3).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::StatusCode as AxumStatus;
use axum::routing::post;
use seldesk_accounts::OutgoingMail;
use seldesk_domain::Actor;
use seldesk_marketing::{CampaignMail, Segment};
use time::Duration;

use crate::helpers::{TestApp, link, spawn_app, spawn_app_with, staff_session};

/// A loopback recipient: records JSON bodies; answers 500 to the first `fail_first` calls.
pub async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |Json(body): Json<serde_json::Value>| {
            let (b, calls) = (b.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return AxumStatus::INTERNAL_SERVER_ERROR;
                }
                b.lock().expect("lock").push(body);
                AxumStatus::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), bodies)
}

/// Signs up through the API with a country and a marketing choice, and
/// confirms the address; returns the account id.
pub async fn verified_account(app: &TestApp, email: &str, country: &str, marketing: Option<bool>) -> String {
    let mut body = serde_json::json!({
        "name": "Asha Rao", "company": "Rao Textiles", "email": email, "password": "saffron harbour kite",
        "country": country, "industry": "Retail and wholesale",
    });
    if let Some(m) = marketing {
        body["marketing"] = serde_json::json!(m);
    }
    let r = app.client.post(app.url("/api/v1/accounts")).json(&body).send().await.expect("signup");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let id = r.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let mail = app.mail_to(email, "Confirm your e-mail").expect("verification mail");
    let verify = link(&mail, "/verify-email").expect("link");
    assert_eq!(app.client.get(&verify).send().await.expect("verify").status(), 200);
    id
}

fn csrf_of(cookie: &str) -> String {
    cookie.split("seldesk_csrf=").nth(1).expect("csrf").split(';').next().expect("value").to_string()
}

/// Creates a campaign through the console; returns its id.
async fn new_campaign(app: &TestApp, staff: &str, subject: &str, country: &str) -> String {
    let csrf = csrf_of(staff);
    let r = app
        .client
        .post(app.url("/staff/marketing"))
        .header("cookie", staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("mail_subject", subject),
            ("body", "Hello {name},\n\nSeldesk now hosts databases in Singapore."),
            ("country", country),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    r.headers()["location"].to_str().expect("loc").rsplit('/').next().expect("id").to_string()
}

async fn send(app: &TestApp, staff: &str, id: &str) -> reqwest::Response {
    let csrf = csrf_of(staff);
    app.client
        .post(app.url(&format!("/staff/marketing/campaigns/{id}/send")))
        .header("cookie", staff)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("send")
}

fn campaign_mails(app: &TestApp, subject: &str) -> Vec<String> {
    app.outbox().into_iter().filter(|m| m.contains(&format!("Subject: {subject}"))).collect()
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn recipient_of(mail: &str) -> String {
    header(mail, "To").expect("To").trim().to_string()
}

// promise: MKT-1
#[tokio::test]
async fn every_campaign_message_has_a_one_click_opt_out_that_every_later_send_honours() {
    let app = spawn_app().await;
    let mut people = Vec::new();
    for i in 0..6 {
        let email = format!("buyer{i}@example.in");
        people.push((verified_account(&app, &email, "IN", Some(true)).await, email));
    }
    // Consent is the basis in the policy file: no tick, no marketing.
    verified_account(&app, "quiet@example.in", "IN", None).await;
    verified_account(&app, "said-no@example.in", "IN", Some(false)).await;
    let staff = staff_session(&app, "marketing@seldesk.com", "marketing").await;

    // The console says who the segment reaches before anything goes.
    let id = new_campaign(&app, &staff, "Singapore is open", "").await;
    let page = app
        .client
        .get(app.url(&format!("/staff/marketing/campaigns/{id}")))
        .header("cookie", &staff)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("id=\"audience\">6<"), "{page}");
    assert!(page.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "the preview shows the headers");
    assert_eq!(send(&app, &staff, &id).await.status(), 303);
    app.run_jobs().await;

    let mails = campaign_mails(&app, "Singapore is open");
    assert_eq!(mails.len(), 6, "one message for each person who opted in");
    let mut to: Vec<String> = mails.iter().map(|m| recipient_of(m)).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 6, "nobody got two");
    assert!(!to.iter().any(|t| t.contains("quiet") || t.contains("said-no")));
    for m in &mails {
        let unsubscribe = header(m, "List-Unsubscribe").expect("List-Unsubscribe header");
        let url = unsubscribe.trim().trim_start_matches('<').trim_end_matches('>').to_string();
        assert!(url.starts_with(&app.url("/marketing/unsubscribe/")), "{url}");
        assert_eq!(header(m, "List-Unsubscribe-Post").map(str::trim), Some("List-Unsubscribe=One-Click"));
        assert!(m.contains(&url), "the link is also visible in the text");
        assert!(m.contains("Hello Asha Rao"), "{{name}} is filled in");
    }

    // The visible link works without signing in and does not act on GET.
    let victim = &mails[0];
    let victim_email = recipient_of(victim);
    let url = header(victim, "List-Unsubscribe").expect("h").trim().trim_matches(|c| c == '<' || c == '>').to_string();
    let page = app.client.get(&url).send().await.expect("get");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("text").contains("One click"), "a page with one button");
    // RFC 8058: one POST, no cookie, no form token.
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("one click");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("Unsubscribed"));

    // The suppression list holds a hash, not the address.
    let hashes: Vec<String> = sqlx::query_scalar("SELECT email_hash FROM marketing_suppressions")
        .fetch_all(app.db().pool())
        .await
        .expect("suppressions");
    assert!(hashes.iter().any(|h| *h == seldesk_marketing::email_hash(&victim_email)));
    assert!(hashes.iter().all(|h| !h.contains('@')));

    // A later campaign skips the address…
    let second = new_campaign(&app, &staff, "Second news", "IN").await;
    send(&app, &staff, &second).await;
    app.run_jobs().await;
    let mails = campaign_mails(&app, "Second news");
    assert_eq!(mails.len(), 5);
    assert!(mails.iter().all(|m| recipient_of(m) != victim_email));

    // …and so does one whose audience was rebuilt from a list that says
    // "opted in" again (an import, a sync from another tool).
    sqlx::query("UPDATE marketing_preferences SET opted_in = 1").execute(app.db().pool()).await.expect("reimport");
    let third = new_campaign(&app, &staff, "Third news", "").await;
    send(&app, &staff, &third).await;
    app.run_jobs().await;
    let mails = campaign_mails(&app, "Third news");
    assert_eq!(mails.len(), 5, "suppressed addresses stay out whatever the list says");
    assert!(mails.iter().all(|m| recipient_of(m) != victim_email && !recipient_of(m).contains("said-no")));
    let c = app.app().services().marketing.campaign(&Actor::Operator, &third).await.expect("campaign");
    assert_eq!(c.stats.sent, 5);
    app.stop().await;
}

/// A mail system that records what it accepts; `hang_at` makes it accept
/// that message and then never answer (the process dies before confirming).
struct Recorder {
    got: Mutex<Vec<String>>,
    hang_at: Option<usize>,
}

impl CampaignMail for Recorder {
    fn send<'a>(
        &'a self,
        mail: &'a OutgoingMail,
        _headers: &'a [(&'static str, String)],
    ) -> seldesk_privacy::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let n = {
                let mut got = self.got.lock().expect("lock");
                got.push(mail.to.clone());
                got.len()
            };
            if Some(n) == self.hang_at {
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

// promise: MKT-1
#[tokio::test]
async fn a_send_that_dies_half_way_resumes_without_sending_anyone_twice() {
    let app = spawn_app_with(
        |c| {
            c.marketing.batch_size = 3;
            c.marketing.batch_pause_ms = 0;
        },
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    for i in 0..12 {
        verified_account(&app, &format!("p{i:02}@example.sg"), "SG", Some(true)).await;
    }
    let m = app.app().services().marketing.clone();
    let c =
        m.create_campaign(&Actor::Operator, "Crash test", "Hello {name}", Segment::default()).await.expect("create");
    m.start_campaign(&Actor::Operator, &c.id).await.expect("start");

    // The first run hands five messages over and dies waiting for the fifth's answer.
    let first = Recorder { got: Mutex::new(Vec::new()), hang_at: Some(5) };
    let died = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        m.send_pending(&c.id, &first, std::time::Duration::MAX),
    )
    .await;
    assert!(died.is_err(), "the first run never finished");
    // A new run (the job retried on a restarted node) finishes the rest.
    let second = Recorder { got: Mutex::new(Vec::new()), hang_at: None };
    let run = m.send_pending(&c.id, &second, std::time::Duration::MAX).await.expect("resume");
    assert_eq!(run, seldesk_marketing::SendRun::Finished);

    let first = first.got.into_inner().expect("lock");
    let second = second.got.into_inner().expect("lock");
    assert_eq!(first.len(), 5);
    assert_eq!(second.len(), 7);
    let mut all: Vec<&String> = first.iter().chain(second.iter()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 12, "everyone exactly once: {first:?} {second:?}");
    let c = m.campaign(&Actor::Operator, &c.id).await.expect("campaign");
    assert_eq!(c.status, seldesk_marketing::CampaignStatus::Sent);
    assert_eq!((c.stats.sent, c.stats.unconfirmed, c.stats.pending), (11, 1, 0), "{:?}", c.stats);
    app.stop().await;
}

/// Creates and opens an event through the console; returns (id, slug).
pub async fn open_event(app: &TestApp, staff: &str, organiser_hook: &str, sponsors: &str) -> (String, String) {
    let csrf = csrf_of(staff);
    let r = app
        .client
        .post(app.url("/staff/marketing/events"))
        .header("cookie", staff)
        .form(&[
            ("csrf", csrf.as_str()),
            ("title", "Seldesk Day Mumbai"),
            ("description", "Hands-on sessions with the **Seldesk** team."),
            ("city", "Mumbai"),
            ("country", "IN"),
            ("starts_at", "2027-02-10T09:30"),
            ("organiser", "Acme Events Pvt Ltd"),
            ("organiser_webhook", organiser_hook),
            ("sponsors", sponsors),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let m = &app.app().services().marketing;
    let (e, _) = m.all_events(&Actor::Operator).await.expect("events").into_iter().next().expect("event");
    let r = app
        .client
        .post(app.url(&format!("/staff/marketing/events/{}/status", e.id)))
        .header("cookie", staff)
        .form(&[("csrf", csrf.as_str()), ("status", "open")])
        .send()
        .await
        .expect("open");
    assert_eq!(r.status(), 303);
    (e.id, e.slug)
}

// promise: MKT-3, PRC-2
#[tokio::test]
async fn an_event_registration_goes_to_the_named_organiser_and_sponsors_only_once_each_and_is_recorded() {
    let app = spawn_app().await;
    let staff = staff_session(&app, "events@seldesk.com", "marketing").await;
    let (organiser_hook, organiser_got) = receiver(0).await;
    // The second sponsor's system is down at first: the transfer is retried.
    let (sponsor_hook, sponsor_got) = receiver(1).await;
    let (event_id, slug) =
        open_event(&app, &staff, &organiser_hook, &format!("Cloud Partners Ltd\nBig Bank | {sponsor_hook}")).await;

    // The page names every recipient and the four fields before anyone types.
    let page = app.text(&format!("/events/{slug}")).await;
    assert_eq!(page.0, 200);
    for needle in ["Acme Events Pvt Ltd", "Cloud Partners Ltd", "Big Bank", "name, e-mail, phone and company"] {
        assert!(page.1.contains(needle), "{needle}: {}", page.1);
    }
    assert!(app.text("/events").await.1.contains("Seldesk Day Mumbai"));
    // The public list names the sponsors, never their webhook addresses (a credential).
    let listed = app.text("/api/v1/events").await.1;
    assert!(listed.contains("Big Bank") && !listed.contains(&sponsor_hook), "{listed}");
    assert!(!listed.contains(&organiser_hook), "{listed}");

    // Anything beyond the four fields is refused before anything is stored.
    let r = app
        .client
        .post(app.url(&format!("/api/v1/events/{slug}/registrations")))
        .json(&serde_json::json!({ "name": "X", "email": "x@example.in", "phone": "+91 22 5555 0100", "company": "X", "date_of_birth": "1990-01-01" }))
        .send()
        .await
        .expect("extra");
    assert_eq!(r.status(), 422);

    let account = verified_account(&app, "meera@example.in", "IN", None).await;
    let session = app.web_session("meera@example.in", "saffron harbour kite").await;
    let csrf = csrf_of(&session);
    let r = app
        .client
        .post(app.url(&format!("/events/{slug}")))
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Meera Iyer"),
            ("email", "meera@example.in"),
            ("phone", "+91 22 5555 0199"),
            ("company", "Iyer Spices"),
        ])
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("You are registered"));
    let confirmation = app.mail_to("meera@example.in", "Registered: Seldesk Day Mumbai").expect("confirmation");
    assert!(confirmation.contains("Acme Events Pvt Ltd") && confirmation.contains("Big Bank"));

    // The first run reaches the organiser and the file sponsor; the second sponsor fails.
    app.run_jobs().await;
    assert_eq!(organiser_got.lock().expect("lock").len(), 1);
    assert_eq!(sponsor_got.lock().expect("lock").len(), 0);
    app.clock.advance(Duration::minutes(2));
    app.run_jobs().await;
    assert_eq!(organiser_got.lock().expect("lock").len(), 1, "the organiser is not sent the data twice");
    let sponsor = sponsor_got.lock().expect("lock").clone();
    assert_eq!(sponsor.len(), 1);
    let fields: BTreeMap<String, String> = serde_json::from_value(sponsor[0]["fields"].clone()).expect("fields");
    assert_eq!(
        fields.keys().map(String::as_str).collect::<Vec<_>>(),
        ["person.company", "person.email", "person.name", "person.phone"],
        "exactly the four registered fields"
    );
    assert_eq!(sponsor[0]["purpose"], "events");

    // The sponsor without a webhook gets a file that marketing hands over.
    let csv = app
        .client
        .get(app.url(&format!("/staff/marketing/events/{event_id}/transfers/sponsor-cloud-partners-ltd.csv")))
        .header("cookie", &staff)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(csv.contains("Meera Iyer,meera@example.in,+91 22 5555 0199,Iyer Spices"), "{csv}");

    // Every transfer is in the ledger and in the person's access export.
    let s = app.app().services();
    let ledger = s.disclosures.for_subject(&format!("person:{account}")).await.expect("ledger");
    let sent: Vec<(String, String)> =
        ledger.iter().filter(|d| d.status == "sent").map(|d| (d.recipient.clone(), d.recipient_name.clone())).collect();
    assert_eq!(sent.len(), 3, "{ledger:?}");
    assert!(sent.contains(&("event_organiser".into(), "Acme Events Pvt Ltd".into())));
    assert!(sent.contains(&("event_sponsor".into(), "Big Bank".into())));
    assert!(sent.contains(&("event_sponsor".into(), "Cloud Partners Ltd".into())));
    let me = s.accounts.account(&account).await.expect("account");
    let export = s.accounts.personal_data(&me).await.expect("export").to_string();
    assert!(export.contains("Seldesk Day Mumbai") && export.contains("Big Bank"), "{export}");

    // Registering twice is refused with a clear message.
    let again = app
        .client
        .post(app.url(&format!("/api/v1/events/{slug}/registrations")))
        .json(&serde_json::json!({ "name": "Meera Iyer", "email": "meera@example.in", "phone": "+91 22 5555 0199", "company": "Iyer Spices" }))
        .send()
        .await
        .expect("again");
    assert_eq!(again.status(), 409);
    // Erasure with the account removes registrations and choices; an opt-out stays as a hash.
    s.marketing
        .set_preference(&Actor::System, &format!("person:{account}"), "meera@example.in", false, "account")
        .await
        .expect("out");
    let records = seldesk_marketing::MarketingRecords::new(s.marketing.clone());
    let person = seldesk_privacy::Person {
        subject: format!("person:{account}"),
        account_id: account.to_string(),
        email: "meera@example.in".into(),
        at: app.clock_now(),
    };
    let erased = seldesk_privacy::PersonalDataStore::erase(&records, &person).await.expect("erase");
    assert!(erased.records >= 2, "registration and choice erased: {erased:?}");
    assert!(erased.kept.iter().any(|k| k.contains("do-not-contact")), "the opt-out hash is said to stay: {erased:?}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_registrations WHERE email = 'meera@example.in'")
        .fetch_one(app.db().pool())
        .await
        .expect("count");
    assert_eq!(left, 0);
    assert!(s.marketing.suppressed("meera@example.in").await.expect("suppressed"));
    app.stop().await;
}

// promise: MKT-4, PRC-2
#[tokio::test]
async fn a_partner_of_the_persons_country_gets_the_four_fields_and_the_person_is_told_which() {
    let app = spawn_app().await;
    let staff = staff_session(&app, "partners@seldesk.com", "marketing").await;
    let csrf = csrf_of(&staff);
    let (india_hook, india_got) = receiver(0).await;
    for (name, country, hook) in [("Mumbai Systems", "IN", india_hook.as_str()), ("Lion City IT", "SG", "")] {
        let r = app
            .client
            .post(app.url("/staff/marketing/partners"))
            .header("cookie", &staff)
            .form(&[
                ("csrf", csrf.as_str()),
                ("name", name),
                ("country", country),
                ("website", "https://partner.example"),
                ("webhook", hook),
            ])
            .send()
            .await
            .expect("partner");
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    }
    let directory = app.text("/partners").await.1;
    assert!(directory.contains("Mumbai Systems") && directory.contains("Lion City IT"));

    let (cookie, token) = app.csrf("/partners").await;
    let ask = |country: &'static str| {
        let (cookie, token) = (cookie.clone(), token.clone());
        let app = &app;
        async move {
            app.client
                .post(app.url("/partners"))
                .header("cookie", &cookie)
                .form(&[
                    ("csrf", token.as_str()),
                    ("name", "Ravi Kumar"),
                    ("email", "ravi@example.in"),
                    ("phone", "+91 22 5555 0111"),
                    ("company", "Kumar Traders"),
                    ("country", country),
                ])
                .send()
                .await
                .expect("ask")
        }
    };
    // No partner in France: nothing is stored or sent, and the page says so.
    let r = ask("FR").await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("text").contains("no official partner in France"));
    let r = ask("IN").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("Mumbai Systems"), "the person is told which partner");
    app.run_jobs().await;
    let got = india_got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["purpose"], "partner_contact");
    assert_eq!(got[0]["fields"]["person.company"], "Kumar Traders");
    assert_eq!(got[0]["fields"].as_object().expect("fields").len(), 4);

    let m = &app.app().services().marketing;
    let referrals: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM partner_referrals").fetch_one(app.db().pool()).await.expect("count");
    assert_eq!(referrals, 1, "the refused request left nothing");
    let mail = app.mail_to("ravi@example.in", "Mumbai Systems will contact you").expect("mail");
    let page = link(&mail, "/marketing/preferences/").expect("link");
    let token = page.rsplit('/').next().expect("token");
    let subject = m.link(token).await.expect("link").subject;
    let ledger = app.app().services().disclosures.for_subject(&subject).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].recipient.as_str(), ledger[0].recipient_name.as_str()), ("partner", "Mumbai Systems"));
    let html = app.client.get(&page).send().await.expect("page").text().await.expect("text");
    assert!(html.contains("Mumbai Systems") && html.contains("partner_contact"), "{html}");
    app.stop().await;
}

// promise: MKT-2, PRC-3
#[tokio::test]
async fn trend_reports_are_built_from_counts_and_hide_groups_under_five() {
    let app = spawn_app().await;
    for i in 0..6 {
        verified_account(&app, &format!("in{i}@example.in"), "IN", None).await;
    }
    for i in 0..2 {
        verified_account(&app, &format!("sg{i}@example.sg"), "SG", None).await;
    }
    let m = app.app().services().marketing.clone();
    assert_eq!(m.aggregate_trends().await.expect("count"), 8);
    assert_eq!(m.aggregate_trends().await.expect("again"), 0, "each record is counted once");
    // The records go (retention, erasure); the counts stay.
    sqlx::query("DELETE FROM accounts").execute(app.db().pool()).await.expect("delete");
    assert_eq!(m.aggregate_trends().await.expect("after"), 0);

    let staff = staff_session(&app, "trends@seldesk.com", "marketing").await;
    let page = app
        .client
        .get(app.url("/staff/marketing/trends?by=country"))
        .header("cookie", &staff)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("<td>India</td>\n  <td>6</td>"), "{page}");
    assert!(page.contains("<td>Singapore</td>\n  <td>&lt;5</td>"), "{page}");
    let csv = app
        .client
        .get(app.url("/staff/marketing/trends.csv?by=country"))
        .header("cookie", &staff)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let month = {
        let now = app.clock_now();
        format!("{:04}-{:02}", now.year(), u8::from(now.month()))
    };
    assert!(csv.starts_with("month,country,signups,trials,conversions\n"), "{csv}");
    assert!(csv.contains(&format!("{month},India,6,0,0")), "{csv}");
    assert!(csv.contains(&format!("{month},Singapore,<5,0,0")), "{csv}");
    assert!(!csv.contains('@'));
    // Other staff cannot read them.
    let support = staff_session(&app, "support@seldesk.com", "support").await;
    let r = app.client.get(app.url("/staff/marketing/trends.csv")).header("cookie", &support).send().await.expect("r");
    assert_eq!(r.status(), 403);
    let r = app.client.get(app.url("/staff/marketing/trends?by=age")).header("cookie", &staff).send().await.expect("r");
    assert_eq!(r.status(), 422);
    app.stop().await;
}

// promise: MKT-1, MKT-3
#[tokio::test]
async fn marketing_records_are_erased_after_their_period_but_an_opt_out_survives_as_a_hash() {
    let app = spawn_app().await;
    let staff = staff_session(&app, "events2@seldesk.com", "marketing").await;
    let (event_id, slug) = open_event(&app, &staff, "", "Cloud Partners Ltd").await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/events/{slug}/registrations")))
        .json(&serde_json::json!({ "name": "Ana Lim", "email": "ana@example.sg", "phone": "+65 6555 0100", "company": "Lim Pte" }))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    app.run_jobs().await;
    let files = app.data.path().join("transfers").join("events").join(&event_id);
    let count_files = || walk(&files).into_iter().filter(|p| p.extension().is_some_and(|x| x == "json")).count();
    assert_eq!(count_files(), 2, "organiser and sponsor files");
    let mail = app.mail_to("ana@example.sg", "Registered").expect("mail");
    let page = link(&mail, "/marketing/preferences/").expect("link");
    // She opts out from the page (consent basis: she had not opted in, but says so explicitly).
    let (cookie, csrf) = app.csrf(&page.replace(&app.url(""), "")).await;
    let r = app
        .client
        .post(&page)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("choice", "out")])
        .send()
        .await
        .expect("out");
    assert_eq!(r.status(), 200);

    let period = app.app().services().policy.retention("marketing_contact").expect("rule").keep;
    app.clock.advance(Duration::days(i64::try_from(period.max_days()).expect("days") + 2));
    app.app().services().retention.run(&Actor::System, false).await.expect("retention");
    for table in ["event_registrations", "marketing_links", "marketing_preferences"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(app.db().pool())
            .await
            .expect("count");
        assert_eq!(n, 0, "{table} is empty after the period");
    }
    assert_eq!(count_files(), 0, "our transfer files went too");
    assert!(app.app().services().marketing.suppressed("ana@example.sg").await.expect("suppressed"));
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
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
