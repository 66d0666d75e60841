use time::macros::{date, datetime};

use super::*;

fn builtin() -> Policy {
    Policy::builtin().expect("the built-in policy is valid")
}

/// Parses the built-in file with one line replaced.
fn with_replaced(from: &str, to: &str) -> Result<Policy, PolicyError> {
    assert!(BUILTIN_SOURCE.contains(from), "test edits a line that exists: {from}");
    let source = BUILTIN_SOURCE.replacen(from, to, 1);
    Policy::parse(&source, "edited.toml", |_| Ok("archived".into()))
}

#[test]
fn builtin_policy_loads_with_every_required_category() {
    let p = builtin();
    for id in REQUIRED_CATEGORIES {
        assert!(p.category(id).is_some(), "{id}");
    }
    assert_eq!(p.retention("browser_event").map(|r| r.keep.to_string()).as_deref(), Some("2 months"));
    assert_eq!(p.retention("job_application").map(|r| r.keep.to_string()).as_deref(), Some("2 years"));
    assert_eq!(p.retention("customer_database").map(|r| r.keep.to_string()).as_deref(), Some("3 weeks"));
    assert_eq!(p.retention("upgrade_upload").map(|r| r.keep.to_string()).as_deref(), Some("4 months"));
    assert_eq!(p.retention("backup").map(|r| r.keep.to_string()).as_deref(), Some("12 months"));
    let hosting: Vec<&str> = p.hosting_regions().map(|r| r.id.as_str()).collect();
    assert_eq!(hosting, ["in", "sg", "uk"]);
    let backup: Vec<&str> = p.backup_regions().map(|r| r.id.as_str()).collect();
    assert_eq!(backup, ["in", "sg"]);
}

/// The built-in policy with an invented earlier version (a test fixture:
/// the shipped file lists only versions that were really published).
fn with_an_older_version() -> Policy {
    let newest = "[[versions]]\neffective = 2026-11-25\n";
    let older = format!(
        "{newest}summary = \"Second version.\"\n\n[[versions]]\neffective = 2025-06-01\nsummary = \"Older.\"\narchive = \"versions/2025-06-01.md\"\n#"
    );
    let source = BUILTIN_SOURCE.replacen(newest, &older, 1);
    Policy::parse(&source, "edited.toml", |_| Ok("# Older\n\nLast updated: 2025-06-01\n".into())).expect("valid")
}

#[test]
fn the_shipped_history_is_only_what_was_published() {
    let p = builtin();
    assert_eq!(p.versions().len(), 1, "one published version; add one only when its text is frozen");
    assert_eq!(p.newest_version().summary, "First published version.");
}

#[test]
fn versions_are_newest_first_and_current_follows_the_date() {
    let p = with_an_older_version();
    assert!(p.versions().windows(2).all(|w| w[0].effective > w[1].effective));
    let newest = p.newest_version().effective;
    assert_eq!(p.current_version(newest).effective, newest);
    let day_before = newest.previous_day().expect("date");
    assert!(p.current_version(day_before).effective < newest);
}

// promise: POL-1
#[test]
fn older_versions_keep_their_archived_text() {
    let p = with_an_older_version();
    let older = &p.versions()[1];
    let text = p.text_of(older);
    assert!(text.contains(&format!("Last updated: {}", older.effective)), "archive shows its own date");
    let newest = p.newest_version();
    assert!(p.text_of(newest).contains(&format!("Last updated: {}", newest.effective)));
}

#[test]
fn nearest_region_follows_the_country() {
    let p = builtin();
    assert_eq!(p.nearest_region(Some("IN")).id, "in");
    assert_eq!(p.nearest_region(Some("my")).id, "sg");
    assert_eq!(p.nearest_region(Some("GB")).id, "uk");
    assert_eq!(p.nearest_region(Some("ZZ")).id, "uk", "default region");
    assert_eq!(p.nearest_region(None).id, "uk");
}

#[test]
fn retention_rule_uses_country_periods() {
    let p = builtin();
    let rule = p.retention("invoice").expect("invoice rule");
    assert_eq!(rule.keep_for(Some("SG")).to_string(), "5 years");
    assert_eq!(rule.keep_for(Some("FR")).to_string(), "10 years");
    assert_eq!(rule.due(datetime!(2026-01-01 0:00 UTC), Some("in")), datetime!(2034-01-01 0:00 UTC));
}

#[test]
fn an_invalid_period_names_key_and_line() {
    let err = with_replaced(
        r#"retention = { keep = "2 months", after = "created" }"#,
        r#"retention = { keep = "2 moons", after = "created" }"#,
    )
    .expect_err("refused");
    let line = BUILTIN_SOURCE.lines().position(|l| l.contains(r#"keep = "2 months""#)).expect("line") + 1;
    assert_eq!(err.line, Some(line), "{err}");
    assert!(err.message.contains("2 moons"), "{err}");
    assert_eq!(err.key, "categories.browser_event.retention", "{err}");
}

#[test]
fn an_unknown_provider_field_is_refused() {
    let err = with_replaced(
        r#"fields = ["order.amount", "order.currency", "order.description", "order.reference", "customer.name", "customer.email"]"#,
        r#"fields = ["order.amount", "customer.card_number"]"#,
    )
    .expect_err("refused");
    assert_eq!(err.key, "providers.paypal.fields");
    assert!(err.message.contains("customer.card_number"), "{err}");
    assert!(err.line.is_some());
}

#[test]
fn a_missing_required_category_is_refused() {
    let err = with_replaced(r#"id = "browser_event""#, r#"id = "browser_events""#).expect_err("refused");
    assert!(err.to_string().contains("browser_event"), "{err}");
}

#[test]
fn backup_max_age_must_match_backup_category() {
    let err = with_replaced(r#"max_age = "12 months""#, r#"max_age = "18 months""#).expect_err("refused");
    assert_eq!(err.key, "backups.max_age");
}

#[test]
fn unknown_keys_and_syntax_errors_name_the_line() {
    let err = with_replaced("keep_daily = 7", "keep_dayly = 7").expect_err("refused");
    assert!(err.message.contains("keep_dayly"), "{err}");
    assert!(err.line.is_some(), "{err}");
    let err = with_replaced("keep_daily = 7", "keep_daily = ").expect_err("refused");
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn optional_cookies_must_need_consent() {
    let source = BUILTIN_SOURCE.replacen(
        "class = \"analytics\"\nname = \"Analytics\"\ndescription = \"Our own measurement of aggregate traffic and interaction, to improve the site.\"\nneeds_consent = true",
        "class = \"analytics\"\nname = \"Analytics\"\ndescription = \"Our own measurement of aggregate traffic and interaction, to improve the site.\"\nneeds_consent = false",
        1,
    );
    assert_ne!(source, BUILTIN_SOURCE);
    let err = Policy::parse(&source, "edited.toml", |_| Ok(String::new())).expect_err("refused");
    assert_eq!(err.key, "cookies.analytics.needs_consent");
}

#[test]
fn older_versions_need_an_archive() {
    let newest = "[[versions]]\neffective = 2026-11-25\n";
    let with_older = format!(
        "{newest}summary = \"First published version.\"\n\n[[versions]]\neffective = 2025-06-01\nsummary = \"Older.\"\n#"
    );
    let source = BUILTIN_SOURCE.replacen(newest, &with_older, 1);
    assert_ne!(source, BUILTIN_SOURCE);
    let err = Policy::parse(&source, "edited.toml", |_| Ok(String::new())).expect_err("refused");
    assert_eq!(err.key, "versions.2025-06-01.archive");
    let archived =
        source.replacen("summary = \"Older.\"\n", "summary = \"Older.\"\narchive = \"versions/2025-06-01.md\"\n", 1);
    Policy::parse(&archived, "edited.toml", |_| Ok("# Older text".into()))
        .expect("an archived older version is accepted");
}

// promise: PRC-1
#[test]
fn provider_table_lists_exactly_the_registered_fields() {
    let p = builtin();
    let text = p.text_of(p.newest_version());
    let paypal_row = text.lines().find(|l| l.starts_with("| PayPal")).expect("paypal row");
    for f in &p.provider("paypal").expect("paypal").fields {
        let label = &p.field(f).expect("field").label;
        assert!(paypal_row.contains(label.as_str()), "{label} in {paypal_row}");
    }
    assert!(!paypal_row.contains("Phone"), "PayPal does not receive phone numbers");
    for pr in p.providers.iter().filter(|pr| pr.kind != ProviderKind::Recipient) {
        assert!(text.contains(&format!("| {}", pr.name)), "{} in the table", pr.name);
    }
    // Every row says what the provider receives: no blank cell.
    for row in
        text.lines().skip_while(|l| !l.starts_with("| Service provider")).skip(2).take_while(|l| l.starts_with('|'))
    {
        assert!(row.split('|').map(str::trim).skip(1).take(3).all(|c| !c.is_empty()), "blank cell in {row}");
    }
    let relay = text.lines().find(|l| l.starts_with("| E-mail relay")).expect("the SMTP relay has a row");
    assert!(relay.contains("Recipient e-mail address") && relay.contains("Message subject and text"), "{relay}");
    let ga = text.lines().find(|l| l.starts_with("| Google Analytics")).expect("GA row");
    assert!(ga.contains("IP address") && ga.contains("Its own cookie identifier"), "{ga}");
}

#[test]
fn a_provider_must_say_what_it_receives() {
    let source = BUILTIN_SOURCE.replacen(
        "fields = [\"browser.ip\", \"browser.page\", \"browser.agent\", \"browser.cookie_id\"]\n",
        "",
        1,
    );
    assert_ne!(source, BUILTIN_SOURCE);
    let err = Policy::parse(&source, "edited.toml", |_| Ok(String::new())).expect_err("refused");
    assert_eq!(err.key, "providers.google_analytics.fields");
}

#[test]
fn changing_a_period_changes_the_text() {
    let p = with_replaced(
        r#"retention = { keep = "2 months", after = "created" }"#,
        r#"retention = { keep = "6 weeks", after = "created" }"#,
    )
    .expect("valid");
    let text = p.text_of(p.newest_version());
    assert!(text.contains("usually 6 weeks"), "the browser-data period follows the file");
    assert!(!text.contains("usually 2 months"));
}

// promise: CK-6
#[test]
fn text_states_do_not_track_is_not_supported() {
    let p = builtin();
    assert!(p.text_of(p.newest_version()).contains("We do not currently support Do Not Track signals"));
}

#[test]
fn date_parsing_rejects_datetimes() {
    let err = with_replaced("effective = 2026-11-25", "effective = 2026-11-25T10:00:00").expect_err("refused");
    assert!(err.message.contains("date"), "{err}");
    let _ = date!(2026 - 11 - 25);
}
