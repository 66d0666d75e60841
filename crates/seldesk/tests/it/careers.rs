//! Careers: postings, applications with CVs, the pipeline, applicant rights
//! and retention (JOB-1…JOB-7).

use std::io::Write;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use time::Duration;

use crate::helpers::{TestApp, link, spawn_app, staff_session};

/// The smallest PDF a reader opens (the CV check follows its cross-reference table).
pub const PDF: &[u8] = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\nxref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000058 00000 n \ntrailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n110\n%%EOF\n";

/// An HR session and an open posting; returns (hr cookie, posting id, slug).
pub async fn open_posting(app: &TestApp, title: &str) -> (String, String, String) {
    let hr = staff_session(app, &format!("hr-{}@seldesk.com", title.len()), "hr").await;
    let csrf = hr.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let r = app
        .client
        .post(app.url("/staff/careers/postings"))
        .header("cookie", &hr)
        .form(&[
            ("csrf", csrf.as_str()),
            ("title", title),
            ("location", "Bengaluru or remote"),
            ("employment_type", "Full-time"),
            ("description", "You will build **Seldesk**.\n\n<script>alert(1)</script>"),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 303);
    let id = r.headers()["location"].to_str().expect("loc").rsplit('/').next().expect("id").to_string();
    let r = app
        .client
        .post(app.url(&format!("/staff/careers/postings/{id}/status")))
        .header("cookie", &hr)
        .form(&[("csrf", csrf.as_str()), ("status", "open")])
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 303);
    let postings: serde_json::Value =
        app.client.get(app.url("/api/v1/careers/postings")).send().await.expect("list").json().await.expect("json");
    let slug = postings
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["id"] == id.as_str())
        .and_then(|p| p["slug"].as_str())
        .expect("listed once open")
        .to_string();
    (hr, id, slug)
}

fn application(email: &str) -> serde_json::Value {
    json!({
        "name": "Asha Rao",
        "email": email,
        "phone": "+91 80 1234 5678",
        "letter": "I have built billing systems for ten years.",
        "shared": "I speak Kannada and English.",
        "cv_name": "asha-cv.pdf",
        "cv_base64": data_encoding::BASE64.encode(PDF),
    })
}

async fn api_apply(app: &TestApp, posting: &str, body: &serde_json::Value) -> (StatusCode, serde_json::Value) {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/careers/postings/{posting}/applications")))
        .json(body)
        .send()
        .await
        .expect("apply");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.db().pool())
        .await
        .expect("count")
}

fn cv_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.data.path().join("blobs/cv")).map(|rd| rd.count()).unwrap_or(0)
}

/// The token of the private link in the acknowledgement.
fn private_token(app: &TestApp, email: &str) -> String {
    let mail = app.mail_to(email, "We received your application").expect("acknowledgement");
    let url = link(&mail, "/careers/application/").expect("private link");
    url.rsplit('/').next().expect("token").to_string()
}

// promise: JOB-3
#[tokio::test]
async fn no_special_category_exists_in_any_table_and_submissions_carrying_one_are_refused() {
    let app = spawn_app().await;
    // Every column of every control-plane table, on SQLite or PostgreSQL.
    let columns: Vec<(String, String)> = match app.db().backend() {
        seldesk_store::Backend::Sqlite => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                    .fetch_all(app.db().pool())
                    .await
                    .expect("tables");
            let mut out = Vec::new();
            for t in tables {
                let cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                    .bind(&t)
                    .fetch_all(app.db().pool())
                    .await
                    .expect("columns");
                out.extend(cols.into_iter().map(|c| (t.clone(), c)));
            }
            out
        }
        seldesk_store::Backend::Postgres => sqlx::query_as::<_, (String, String)>(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema()",
        )
        .fetch_all(app.db().pool())
        .await
        .expect("columns"),
    };
    assert!(columns.iter().any(|(t, c)| t == "job_applications" && c == "letter"), "the schema was read");
    for (table, column) in &columns {
        assert_eq!(seldesk_domain::special::special_category(column), None, "{table}.{column}");
    }
    // The API's list of keys and the policy's offer fields hold none either.
    for k in seldesk_careers::APPLICATION_KEYS {
        assert_eq!(seldesk_domain::special::special_category(k), None, "{k}");
    }
    for f in &app.app().services().policy.careers.offer_fields {
        assert_eq!(seldesk_domain::special::special_category(&f.id), None, "{}", f.id);
    }

    let (_, posting, _) = open_posting(&app, "Rust engineer").await;
    for (key, value) in [
        ("religion", json!("any")),
        ("ethnicOrigin", json!("any")),
        ("political_opinions", json!("any")),
        ("trade_union_member", json!(true)),
        ("sexual_orientation", json!("any")),
    ] {
        let mut body = application("special@example.com");
        body[key] = value;
        let (status, err) = api_apply(&app, &posting, &body).await;
        assert_eq!(status, 422, "{key}");
        assert_eq!((&err["error"], &err["field"]), (&json!("invalid"), &json!("special_category")), "{err}");
        assert!(err["message"].as_str().expect("message").contains("never collect"), "{err}");
    }
    let mut body = application("unknown@example.com");
    body["favourite_colour"] = json!("blue");
    let (status, err) = api_apply(&app, &posting, &body).await;
    assert_eq!(status, 422);
    assert_eq!(err["field"], "unknown_field", "{err}");
    assert!(err["message"].as_str().expect("message").contains("favourite_colour"));
    assert_eq!(count(&app, "job_applications").await, 0, "nothing stored");
    assert_eq!(cv_files(&app), 0, "no CV stored");
    assert!(app.outbox().iter().all(|m| !m.contains("We received your application")));

    // The form refuses such a field too.
    let (cookie, csrf) = app.csrf("/careers").await;
    let slug: String =
        sqlx::query_scalar("SELECT slug FROM job_postings").fetch_one(app.db().pool()).await.expect("slug");
    let form = Form::new()
        .text("name", "A")
        .text("email", "form@example.com")
        .text("phone", "+44 20 7946 0000")
        .text("letter", "Hello")
        .text("religion", "x")
        .part("cv", Part::bytes(PDF.to_vec()).file_name("cv.pdf"));
    let r = app
        .client
        .post(app.url(&format!("/careers/{slug}/apply")))
        // A multipart form carries its token in the action's query.
        .query(&[("csrf", csrf.as_str())])
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await
        .expect("form");
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("never collect"));
    assert_eq!(count(&app, "job_applications").await, 0);
}

// promise: JOB-1, JOB-4, JOB-5
#[tokio::test]
async fn an_application_moves_through_the_pipeline_read_only_by_hr_and_every_read_is_audited() {
    let app = spawn_app().await;
    let (hr, posting, slug) = open_posting(&app, "Support engineer").await;
    let csrf = hr.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    // The public page renders the description without its HTML.
    let (status, page) = app.text(&format!("/careers/{slug}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<strong>Seldesk</strong>") && !page.contains("<script>alert"));

    let (status, created) = api_apply(&app, &posting, &application("asha@example.com")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let token = private_token(&app, "asha@example.com");
    // The CV is stored encrypted: its bytes appear nowhere in the blob store.
    let raw = std::fs::read(app.data.path().join("blobs/cv").join(&id)).expect("cv blob");
    assert!(!raw.windows(9).any(|w| w == b"%PDF-1.7\n"));

    // Other staff roles cannot read applications.
    let support = staff_session(&app, "support@seldesk.com", "support").await;
    let r = app
        .client
        .get(app.url(&format!("/staff/careers/applications/{id}")))
        .header("cookie", &support)
        .send()
        .await
        .expect("support");
    assert_eq!(r.status(), 403);

    // HR reads it (audited) and moves it along with notes.
    let r = app
        .client
        .get(app.url(&format!("/staff/careers/applications/{id}")))
        .header("cookie", &hr)
        .send()
        .await
        .expect("hr");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("billing systems"));
    for (to, note) in [("screening", "Strong CV"), ("interview", "")] {
        let r = app
            .client
            .post(app.url(&format!("/staff/careers/applications/{id}/stage")))
            .header("cookie", &hr)
            .form(&[("csrf", csrf.as_str()), ("to", to), ("note", note)])
            .send()
            .await
            .expect("stage");
        assert_eq!(r.status(), 303, "{to}");
    }
    // Skipping a stage is refused with the allowed moves.
    let r = app
        .client
        .post(app.url(&format!("/staff/careers/applications/{id}/stage")))
        .header("cookie", &hr)
        .form(&[("csrf", csrf.as_str()), ("to", "hired")])
        .send()
        .await
        .expect("skip");
    assert_eq!(r.status(), 409);
    assert!(r.text().await.expect("body").contains("Offer"));

    let audit = app.app().services().audit.about(&format!("applicant:{id}")).await.expect("audit");
    assert!(audit.iter().filter(|e| e.action == "careers.application_viewed").count() >= 2);
    assert!(audit.iter().any(|e| e.action == "careers.stage_changed"));

    // The applicant sees everything, including HR's note and the reads.
    let mine: serde_json::Value = app
        .client
        .get(app.url(&format!("/api/v1/careers/applications/{token}")))
        .send()
        .await
        .expect("mine")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["stage"], "interview");
    assert_eq!(mine["notes"][0]["body"], "Strong CV");
    assert_eq!(mine["cv"]["name"], "asha-cv.pdf");
    assert!(mine["reads"].as_array().expect("reads").len() >= 2);
    let cv = app.client.get(app.url(&format!("/careers/application/{token}/cv"))).send().await.expect("cv");
    assert_eq!(cv.headers()["content-type"], "application/pdf");
    assert_eq!(cv.bytes().await.expect("bytes").as_ref(), PDF);
    // A wrong token opens nothing.
    let r = app.client.get(app.url("/api/v1/careers/applications/not-a-real-token-at-all")).send().await.expect("x");
    assert_eq!(r.status(), 404);

    // Correction through the link.
    let (cookie, form_csrf) = app.csrf(&format!("/careers/application/{token}")).await;
    let r = app
        .client
        .post(app.url(&format!("/careers/application/{token}/correct")))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", form_csrf.as_str()),
            ("name", "Asha R. Rao"),
            ("email", "asha@example.com"),
            ("phone", "+91 80 1234 5678"),
            ("letter", "I have built billing systems for eleven years."),
            ("shared", ""),
        ])
        .send()
        .await
        .expect("correct");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(body.contains("Asha R. Rao") && body.contains("eleven years"));
    // A card number in the letter is refused and nothing changes.
    let r = app
        .client
        .post(app.url(&format!("/careers/application/{token}/correct")))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", form_csrf.as_str()),
            ("name", "Asha R. Rao"),
            ("email", "asha@example.com"),
            ("phone", "+91 80 1234 5678"),
            ("letter", "Charge 4111 1111 1111 1111 for the fee"),
        ])
        .send()
        .await
        .expect("card");
    assert_eq!(r.status(), 422);
    let letter: String = sqlx::query_scalar("SELECT letter FROM job_applications WHERE id = $1")
        .bind(&id)
        .fetch_one(app.db().pool())
        .await
        .expect("letter");
    assert!(letter.contains("eleven years"));
}

// promise: JOB-2, JOB-7
#[tokio::test]
async fn contract_data_is_asked_only_at_the_offer_and_hires_are_kept_for_the_country_period() {
    let app = spawn_app().await;
    let (hr, posting, _) = open_posting(&app, "Accountant").await;
    let csrf = hr.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let (_, created) = api_apply(&app, &posting, &application("ravi@example.com")).await;
    let id = created["id"].as_str().expect("id").to_string();
    let token = private_token(&app, "ravi@example.com");
    let careers = &app.app().services().careers;
    let offer: std::collections::BTreeMap<String, String> = [
        ("postal_address", "12 MG Road, Bengaluru"),
        ("date_of_birth", "1990-04-01"),
        ("bank_account", "IN12 3456 7890"),
        ("tax_id", "ABCDE1234F"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Before the offer: refused, nothing stored.
    let err = careers.submit_offer_data(&token, &offer).await.expect_err("too early");
    assert!(err.to_string().contains("only once we make an offer"));
    assert_eq!(count(&app, "job_offer_data").await, 0);
    let page = app.client.get(app.url(&format!("/careers/application/{token}"))).send().await.expect("page");
    assert!(!page.text().await.expect("body").contains("Date of birth"), "no offer form before the offer");

    let stage = |to: &'static str| {
        let (hr, csrf, id) = (hr.clone(), csrf.clone(), id.clone());
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url(&format!("/staff/careers/applications/{id}/stage")))
                .header("cookie", &hr)
                .form(&[("csrf", csrf.as_str()), ("to", to)])
                .send()
                .await
                .expect("stage");
            assert_eq!(r.status(), 303, "{to}");
        }
    };
    stage("screening").await;
    stage("interview").await;
    stage("offer").await;
    assert!(app.mail_to("ravi@example.com", "An offer").is_some());
    let page = app.client.get(app.url(&format!("/careers/application/{token}"))).send().await.expect("page");
    assert!(page.text().await.expect("body").contains("Date of birth"), "the offer form appears");
    // Only the policy's fields, each checked.
    let mut extra = offer.clone();
    extra.insert("passport_photo".into(), "x".into());
    assert!(careers.submit_offer_data(&token, &extra).await.is_err());
    let mut bad_date = offer.clone();
    bad_date.insert("date_of_birth".into(), "first of April".into());
    assert!(careers.submit_offer_data(&token, &bad_date).await.expect_err("date").to_string().contains("YYYY-MM-DD"));
    careers.submit_offer_data(&token, &offer).await.expect("offer data");
    assert_eq!(count(&app, "job_offer_data").await, 1);

    // Hired in India: an employee record; the application is gone.
    let r = app
        .client
        .post(app.url(&format!("/staff/careers/applications/{id}/hire")))
        .header("cookie", &hr)
        .form(&[("csrf", csrf.as_str()), ("country", "IN")])
        .send()
        .await
        .expect("hire");
    assert_eq!(r.status(), 303);
    assert_eq!(count(&app, "job_applications").await, 0);
    assert_eq!(count(&app, "job_offer_data").await, 0);
    let employee: String =
        sqlx::query_scalar("SELECT id FROM employees").fetch_one(app.db().pool()).await.expect("emp");
    // The contract ends; India's period (8 years in the policy file) runs from then.
    let end = app.clock_today() + Duration::days(365);
    let r = app
        .client
        .post(app.url(&format!("/staff/careers/employees/{employee}/end")))
        .header("cookie", &hr)
        .form(&[("csrf", csrf.as_str()), ("end", end.to_string().as_str())])
        .send()
        .await
        .expect("end");
    assert_eq!(r.status(), 303);
    let run =
        || async { app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("run") };
    app.clock.advance(Duration::days(365 + 7 * 365 + 300));
    run().await;
    assert_eq!(count(&app, "employees").await, 1, "kept through 7 years: India's period is 8");
    app.clock.advance(Duration::days(120));
    run().await;
    assert_eq!(count(&app, "employees").await, 0, "erased after 8 years");
    assert_eq!(cv_files(&app), 0, "the CV went with the record");
}

// promise: JOB-6, JOB-5
#[tokio::test]
async fn rejected_applications_go_after_two_years_and_promptly_after_an_objection() {
    let app = spawn_app().await;
    let (hr, posting, _) = open_posting(&app, "Designer").await;
    let csrf = hr.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let careers = &app.app().services().careers;
    let hr_actor = {
        let id: String = sqlx::query_scalar("SELECT id FROM staff").fetch_one(app.db().pool()).await.expect("staff");
        seldesk_domain::Actor::Staff { id, roles: vec![seldesk_domain::Role::Hr] }
    };
    let (_, kept) = api_apply(&app, &posting, &application("kept@example.com")).await;
    let kept = kept["id"].as_str().expect("id").to_string();
    let mut objecting = application("objects@example.com");
    objecting["object_to_keeping"] = json!(true);
    let (_, objected) = api_apply(&app, &posting, &objecting).await;
    let objected = objected["id"].as_str().expect("id").to_string();
    let (_, later) = api_apply(&app, &posting, &application("later@example.com")).await;
    let later = later["id"].as_str().expect("id").to_string();
    let later_token = private_token(&app, "later@example.com");
    for id in [&kept, &objected, &later] {
        careers.move_stage(&hr_actor, id, seldesk_careers::Stage::Rejected, "Not this time").await.expect("reject");
    }
    // One click from the link objects after the fact, too.
    let (cookie, form_csrf) = app.csrf(&format!("/careers/application/{later_token}")).await;
    let r = app
        .client
        .post(app.url(&format!("/careers/application/{later_token}/object")))
        .header("cookie", &cookie)
        .form(&[("csrf", form_csrf.as_str())])
        .send()
        .await
        .expect("object");
    assert_eq!(r.status(), 200);
    assert_eq!(cv_files(&app), 3);
    let _ = csrf;

    let run =
        || async { app.app().services().retention.run(&seldesk_domain::Actor::System, false).await.expect("run") };
    let app_ref = &app;
    let exists = move |id: String| async move {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM job_applications WHERE id = $1")
            .bind(id)
            .fetch_one(app_ref.db().pool())
            .await
            .expect("count")
            == 1
    };
    app.clock.advance(Duration::days(8));
    run().await;
    assert!(exists(kept.clone()).await, "kept for future openings");
    assert!(!exists(objected.clone()).await, "objected at application time: erased a week after rejection");
    assert!(!exists(later.clone()).await, "objected later: erased too");
    assert_eq!(cv_files(&app), 1);
    let erasures = app.app().services().erasure_log.for_subject(&format!("applicant:{objected}")).await.expect("log");
    assert_eq!(erasures.len(), 1);
    assert_eq!(erasures[0].category, "job_application_objected");

    app.clock.advance(Duration::days(700));
    run().await;
    assert!(exists(kept.clone()).await, "still inside 2 years");
    app.clock.advance(Duration::days(40));
    run().await;
    assert!(!exists(kept.clone()).await, "erased at 2 years");
    assert_eq!(cv_files(&app), 0, "CV files erased with them");
    assert!(app.app().services().erasure_log.for_subject(&format!("applicant:{kept}")).await.expect("log").len() == 1);
}

// promise: JOB-5
#[tokio::test]
async fn the_applicant_deletes_the_application_at_once_and_it_is_logged() {
    let app = spawn_app().await;
    let (_, posting, _) = open_posting(&app, "Tester").await;
    let (_, created) = api_apply(&app, &posting, &application("gone@example.com")).await;
    let id = created["id"].as_str().expect("id").to_string();
    let token = private_token(&app, "gone@example.com");
    let (cookie, csrf) = app.csrf(&format!("/careers/application/{token}")).await;
    // Without confirmation nothing happens.
    let r = app
        .client
        .post(app.url(&format!("/careers/application/{token}/delete")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 422);
    assert_eq!(cv_files(&app), 1);
    let r = app
        .client
        .post(app.url(&format!("/careers/application/{token}/delete")))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    assert_eq!(count(&app, "job_applications").await, 0);
    assert_eq!(cv_files(&app), 0);
    let log = app.app().services().erasure_log.for_subject(&format!("applicant:{id}")).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].reason, "person_request");
    let r = app.client.get(app.url(&format!("/careers/application/{token}"))).send().await.expect("gone");
    assert_eq!(r.status(), 404);
}

// promise: JOB-1
#[tokio::test]
async fn malicious_uploads_are_refused_with_clear_messages() {
    let app = spawn_app().await;
    let (hr, posting, slug) = open_posting(&app, "Security engineer").await;
    let docx = {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (n, b) in [("[Content_Types].xml", &b"<Types/>"[..]), ("word/document.xml", &b"<w:document/>"[..])] {
            z.start_file(n, zip::write::SimpleFileOptions::default()).expect("entry");
            z.write_all(b).expect("write");
        }
        z.finish().expect("zip").into_inner()
    };
    let send = |file_name: &'static str, bytes: Vec<u8>, letter: &'static str| {
        let app = &app;
        let slug = slug.clone();
        async move {
            let (cookie, csrf) = app.csrf(&format!("/careers/{slug}")).await;
            let form = Form::new()
                .text("name", "Mallory")
                .text("email", "mallory@example.com")
                .text("phone", "+1 555 0100 200")
                .text("letter", letter)
                .part("cv", Part::bytes(bytes).file_name(file_name));
            let r = app
                .client
                .post(app.url(&format!("/careers/{slug}/apply")))
                .query(&[("csrf", csrf.as_str())])
                .header("cookie", cookie)
                .multipart(form)
                .send()
                .await
                .expect("apply");
            (r.status(), r.text().await.unwrap_or_default())
        }
    };
    let (status, body) = send("cv.pdf", b"MZ\x90\x00this is an executable".to_vec(), "Hello").await;
    assert_eq!(status, 422);
    assert!(body.contains("PDF, DOCX or ODT"), "{body}");
    let (status, body) = send("../../etc/cv.pdf", PDF.to_vec(), "Hello").await;
    assert_eq!(status, 422);
    assert!(body.contains("may not contain a path"), "{body}");
    let big = [PDF, &vec![b' '; seldesk_careers::MAX_CV_BYTES]].concat();
    let (status, body) = send("big.pdf", big, "Hello").await;
    assert_eq!(status, 422);
    assert!(body.contains("the limit is 5 MB"), "{body}");
    let huge = [PDF, &vec![b' '; seldesk_careers::MAX_CV_BYTES * 3]].concat();
    let (status, body) = send("huge.pdf", huge, "Hello").await;
    assert_eq!(status, 413);
    assert!(body.contains("at most 5 MB"), "{body}");
    let (status, body) = send("cv.pdf", PDF.to_vec(), "My card is 4111 1111 1111 1111, thanks").await;
    assert_eq!(status, 422);
    assert!(body.to_lowercase().contains("card"), "{body}");
    assert_eq!(count(&app, "job_applications").await, 0, "nothing stored");
    assert_eq!(cv_files(&app), 0);
    // A real DOCX goes through, and so does an agency's application entered by HR.
    let (status, body) = send("cv.docx", docx, "Hello").await;
    assert_eq!(status, 200, "{body}");
    let csrf = hr.split("seldesk_csrf=").nth(1).expect("csrf").to_string();
    let form = Form::new()
        .text("posting_id", posting)
        .text("agency", "TalentBridge Recruiters")
        .text("name", "Kiran")
        .text("email", "kiran@example.com")
        .text("phone", "+91 22 5555 0000")
        .text("letter", "Sent by the agency");
    let r = app
        .client
        .post(app.url("/staff/careers/applications"))
        .query(&[("csrf", csrf.as_str())])
        .header("cookie", &hr)
        .multipart(form)
        .send()
        .await
        .expect("agency");
    assert_eq!(r.status(), 303);
    let agency: String = sqlx::query_scalar("SELECT agency FROM job_applications WHERE email = 'kiran@example.com'")
        .fetch_one(app.db().pool())
        .await
        .expect("agency");
    assert_eq!(agency, "TalentBridge Recruiters");
    assert!(app.mail_to("kiran@example.com", "We received your application").is_some());
}

// promise: SEC-1
/// CVs and uploads in a bucket (every node reaching the same one): sealed
/// before they leave the server, written once, and a changed object does
/// not open.
#[tokio::test]
async fn blobs_in_a_bucket_are_sealed_written_once_and_tamper_evident() {
    use crate::backups::{boto3, s3_endpoint};
    let endpoint = s3_endpoint();
    let bucket = format!("seldesk-{}-blobs", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    boto3("s3.create_bucket(Bucket=sys.argv[2])\nprint(json.dumps(True))", &[&bucket]);
    let url = format!(
        "s3://{bucket}/blobs?endpoint={endpoint}&allow_http=true&access_key_id=test&secret_access_key=test&region=us-east-1"
    );
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("keys/blobs.key");
    let blobs = seldesk_blob::SealedBlobs::open(seldesk_blob::BlobStore::bucket(&url).expect("bucket"), &key_file)
        .expect("open");
    let cv = b"Curriculum vitae of Ada Lovelace, analyst";
    blobs.put("cv/a1", cv).await.expect("put");
    assert_eq!(blobs.get("cv/a1").await.expect("get").as_deref(), Some(&cv[..]));
    assert!(matches!(blobs.put("cv/a1", b"other").await, Err(seldesk_blob::BlobError::Exists(_))), "written once");
    // What the bucket holds is sealed.
    let raw = boto3(
        "import base64\nb = s3.get_object(Bucket=sys.argv[2], Key='blobs/cv/a1')['Body'].read()\nprint(json.dumps(base64.b64encode(b).decode()))",
        &[&bucket],
    );
    let raw = data_encoding::BASE64.decode(raw.as_str().expect("text").as_bytes()).expect("base64");
    assert!(!raw.windows(cv.len()).any(|w| w == cv), "sealed before it left the server");
    // Changed in the bucket: refused, not read as something else.
    boto3(
        "b = s3.get_object(Bucket=sys.argv[2], Key='blobs/cv/a1')['Body'].read()\nb = b[:-1] + bytes([b[-1] ^ 1])\ns3.put_object(Bucket=sys.argv[2], Key='blobs/cv/a1', Body=b)\nprint(json.dumps(True))",
        &[&bucket],
    );
    assert!(matches!(blobs.get("cv/a1").await, Err(seldesk_blob::BlobError::Corrupt(_))));
    assert!(blobs.delete("cv/a1").await.expect("delete"));
    assert!(!blobs.delete("cv/a1").await.expect("delete again"), "nothing left to delete");
    assert_eq!(blobs.get("cv/a1").await.expect("get"), None);
    // The server takes such an address for `blobs`, and refuses one it cannot use.
    let app = crate::helpers::spawn_app_with(
        {
            let url = url.clone();
            move |c| c.blobs = Some(url)
        },
        seldesk_domain::Policy::builtin().expect("policy"),
    )
    .await;
    app.stop().await;
    let data = tempfile::tempdir().expect("data");
    let mut config = crate::helpers::test_config(data.path(), crate::helpers::fresh_database_url(data.path()).await);
    config.blobs = Some("ftp://example.com/blobs".into());
    let clock = std::sync::Arc::new(seldesk_domain::TestClock::new(time::OffsetDateTime::now_utc()));
    match seldesk::Application::build(config, seldesk_domain::Policy::builtin().expect("policy"), clock).await {
        Err(e) => assert!(e.to_string().contains("s3://bucket"), "{e}"),
        Ok(_) => panic!("an ftp:// blob store was accepted"),
    }
}
