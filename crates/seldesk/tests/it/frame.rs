//! The app frame: the header each visitor gets, the staff navigation by
//! role, and the pricing page.

use crate::helpers::{TestApp, spawn_app, staff_session};

const PW: &str = "violet tractor lemon";

async fn page(app: &TestApp, path: &str, cookie: Option<&str>, lang: &str) -> (u16, String) {
    let mut req = app.client.get(app.url(path)).header("accept-language", lang);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.expect("page");
    (r.status().as_u16(), r.text().await.expect("html"))
}

/// The part of the page before `<main`: the header.
fn header(html: &str) -> &str {
    html.split("<main").next().unwrap_or_default()
}

#[tokio::test]
async fn the_header_fits_who_is_looking() {
    let app = spawn_app().await;
    // Signed out: the product, pricing, the policy, sign in and sign up.
    let (_, home) = page(&app, "/", None, "en").await;
    let h = header(&home);
    for link in ["href=\"/pricing\"", "href=\"/privacy\"", "href=\"/signin\"", "href=\"/signup\""] {
        assert!(h.contains(link), "{link}: {h}");
    }
    assert!(!h.contains("href=\"/databases\"") && !h.contains("/signout"));
    assert!(h.contains("class=\"phone-menu\""), "a menu button for narrow screens");

    // A customer: their lists, their name, sign-out; no sign-up.
    app.sign_up("frame@example.com", PW).await;
    let session = app.web_session("frame@example.com", PW).await;
    let (_, html) = page(&app, "/databases", Some(&session), "en").await;
    let h = header(&html);
    for want in [
        "href=\"/databases\"",
        "href=\"/account/requests\"",
        "href=\"/account/billing\"",
        "Asha Rao",
        "action=\"/signout\"",
    ] {
        assert!(h.contains(want), "{want}: {h}");
    }
    assert!(h.contains("href=\"/databases\" aria-current=\"page\""), "the current page is marked: {h}");
    assert!(!h.contains("href=\"/signup\""));
    // The same on a public page, so a signed-in visitor can get back.
    assert!(header(&page(&app, "/privacy", Some(&session), "en").await.1).contains("href=\"/databases\""));

    // The header's sign-out form signs out (its token is the one the page set).
    let r = app.client.get(app.url("/account/billing")).header("cookie", &session).send().await.expect("page");
    // (the sign-in left the browser its CSRF cookie)
    let csrf_cookie = session.split("; ").find(|c| c.starts_with("seldesk_csrf=")).expect("a csrf cookie").to_string();
    let html = r.text().await.expect("html");
    let token = header(&html)
        .split("action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form's token")
        .to_string();
    assert_eq!(csrf_cookie.split_once('=').map(|(_, v)| v), Some(token.as_str()));
    let out = app
        .client
        .post(app.url("/signout"))
        .header("cookie", &session)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), 303);
    assert!(!header(&page(&app, "/", Some(&session), "en").await.1).contains("href=\"/databases\""), "signed out");
    let session = app.web_session("frame@example.com", PW).await;

    // French: the header speaks it too.
    let (_, fr) = page(&app, "/", Some(&session), "fr").await;
    assert!(header(&fr).contains("Bases de données") && header(&fr).contains("Déconnexion"), "{}", header(&fr));
    app.stop().await;
}

/// Each role's navigation lists exactly the consoles that role can open.
#[tokio::test]
async fn staff_see_the_consoles_of_their_roles_and_only_those() {
    let app = spawn_app().await;
    for (i, role) in seldesk_domain::Role::ALL.iter().enumerate() {
        let session = staff_session(&app, &format!("staff{i}@seldesk.com"), role.as_str()).await;
        let listed: Vec<&str> = seldesk_web::frame::staff_pages_for(&[*role]).map(|p| p.path).collect();
        let (_, html) = page(&app, "/staff/analytics", Some(&session), "en").await;
        let h = header(&html);
        assert!(h.contains("action=\"/staff/signout\""), "{role:?}");
        for p in seldesk_web::frame::STAFF_PAGES {
            let shown = h.contains(&format!("href=\"{}\"", p.path));
            let open = page(&app, p.path, Some(&session), "en").await.0 == 200;
            assert_eq!(shown, listed.contains(&p.path), "{role:?} {}", p.path);
            assert_eq!(
                open,
                shown,
                "{role:?}: {} is {} but {}",
                p.path,
                if shown { "listed" } else { "not listed" },
                if open { "opens" } else { "refuses" }
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn pricing_comes_from_the_billing_configuration_in_the_visitors_currency() {
    let app = spawn_app().await;
    let settings = seldesk_billing::BillingSettings::default();
    let standard = &settings.plans[0];
    let (status, html) = page(&app, "/pricing", None, "en-IN,en;q=0.8").await;
    assert_eq!(status, 200);
    let inr = seldesk_billing::money(standard.prices["INR"].monthly, "INR");
    assert!(html.contains(&inr), "{inr}");
    assert!(html.contains("GST 18%"), "the tax of the country is named");
    assert!(html.contains("id=\"paid-closed\""), "no processor: paid plans are said to be closed, not faked");
    let (_, eur) = page(&app, "/pricing?currency=EUR", None, "en-IN").await;
    assert!(eur.contains(&seldesk_billing::money(standard.prices["EUR"].monthly, "EUR")));
    assert!(!eur.contains("GST 18%"), "a tax is named only with its country's currency");
    let (_, bogus) = page(&app, "/pricing?currency=%3Cscript%3E", None, "en-GB").await;
    assert!(
        bogus.contains(&seldesk_billing::money(standard.prices["GBP"].monthly, "GBP")),
        "an unknown currency is ignored"
    );
    let (_, fr) = page(&app, "/pricing", None, "fr-FR").await;
    assert!(
        fr.contains("Commencer l'essai gratuit")
            || fr.contains("Commencer l&#39;essai gratuit")
            || fr.contains("Commencer l&#x27;essai gratuit"),
        "French"
    );
    assert!(fr.contains(&seldesk_billing::money(standard.prices["EUR"].monthly, "EUR")), "France pays in euros");
    app.stop().await;
}

/// The visible text of a page: tags dropped, entities read, spaces folded.
fn visible_text(html: &str) -> String {
    let body = html.split("<body").nth(1).unwrap_or(html);
    let (mut out, mut in_tag) = (String::new(), false);
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out.replace("&#x27;", "'").replace("&#39;", "'").replace("&quot;", "\"").replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The English a control-panel template writes: its translated sentences
/// (each fragment between placeholders) and any literal text left in it,
/// three words or more (shorter ones, like "Export" or "Notes", read the
/// same in French).
fn english_of_the_templates() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let french: std::collections::BTreeMap<String, String> =
        toml::from_str(&std::fs::read_to_string(root.join("i18n/fr.toml")).expect("fr.toml")).expect("parses");
    let mut english = Vec::new();
    let long = |s: &str| s.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).count() >= 3;
    for (en, fr) in &french {
        for part in en.split(['{', '}']).filter(|p| !p.chars().all(|c| c.is_ascii_digit())) {
            let part = part.trim().trim_matches(|c: char| c.is_ascii_punctuation() || c == '“' || c == '”');
            if long(part) && !fr.contains(part) {
                english.push(part.to_string());
            }
        }
    }
    for name in [
        "databases",
        "database",
        "account",
        "requests",
        "request",
        "billing",
        "subscribe",
        "invoice",
        "restore",
        "upgrade",
        "pager",
    ] {
        let text = std::fs::read_to_string(root.join(format!("templates/{name}.html"))).expect("template");
        // Drop expressions, statements and tags; what is left is literal text.
        let mut literal = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(['{', '<']) {
            literal.push_str(&rest[..i]);
            literal.push('\n');
            let close = match &rest[i..i + 2.min(rest.len() - i)] {
                "{{" => "}}",
                "{%" => "%}",
                "{#" => "#}",
                _ if rest[i..].starts_with('<') => ">",
                _ => {
                    rest = &rest[i + 1..];
                    continue;
                }
            };
            rest = rest[i..].split_once(close).map_or("", |(_, after)| after);
        }
        literal.push_str(rest);
        for line in literal.split('\n').map(str::trim).filter(|l| long(l)) {
            english.push(line.to_string());
        }
    }
    english
}

/// The control panel in French shows no English sentence of its templates.
#[tokio::test]
async fn the_control_panel_speaks_french_with_no_english_left() {
    let app = spawn_app().await;
    app.sign_up("francais@example.com", PW).await;
    let t = app.token("francais@example.com", PW).await;
    let db = app
        .client
        .post(app.url("/api/v1/databases"))
        .bearer_auth(&t)
        .json(&serde_json::json!({ "name": "registre" }))
        .send()
        .await
        .expect("db")
        .json::<serde_json::Value>()
        .await
        .expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let contact = serde_json::json!({ "name": "Élodie Dupont", "email": "elodie@example.fr" });
    app.client
        .post(app.url(&format!("/api/v1/databases/{db}/contacts")))
        .bearer_auth(&t)
        .json(&contact)
        .send()
        .await
        .expect("c");
    let request = serde_json::json!({ "kind": "question", "message": "Où sont mes sauvegardes ?" });
    let r = app.client.post(app.url("/api/v1/me/requests")).bearer_auth(&t).json(&request).send().await.expect("r");
    let request_id = r.json::<serde_json::Value>().await.expect("json")["id"].to_string();
    let session = app.web_session("francais@example.com", PW).await;
    let english = english_of_the_templates();
    assert!(english.len() > 100, "the templates' English is found ({})", english.len());
    let mut pages = vec![
        "/databases".to_string(),
        "/account".into(),
        "/account/requests".into(),
        format!("/account/requests/{request_id}"),
        "/account/billing".into(),
        "/upgrade".into(),
        format!("/databases/{db}/subscribe"),
    ];
    for tab in ["", "?tab=backups", "?tab=location", "?tab=billing", "?tab=access", "?tab=settings"] {
        pages.push(format!("/databases/{db}{tab}"));
    }
    let mut found = Vec::new();
    for path in &pages {
        let (status, html) = page(&app, path, Some(&session), "fr-FR,fr;q=0.9").await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("lang=\"fr\""), "{path} is served in French");
        let text = visible_text(&html);
        found.extend(english.iter().filter(|e| text.contains(e.as_str())).map(|e| format!("{path}: {e}")));
    }
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "English on French pages:\n{}", found.join("\n"));
    // The same pages in English still read in English, and the check sees it.
    let mut seen_in_english = 0;
    for path in &pages {
        let text = visible_text(&page(&app, path, Some(&session), "en").await.1);
        seen_in_english += english.iter().filter(|e| text.contains(e.as_str())).count();
    }
    assert!(seen_in_english > 60, "the English pages show the sentences looked for ({seen_in_english})");
    app.stop().await;
}
