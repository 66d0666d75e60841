//! Validation of a parsed policy: every reference resolves, every required
//! category has its rule, regions and cookie classes make sense.

use std::collections::HashSet;

use super::{CookieClassId, Policy, ProviderKind, REQUIRED_CATEGORIES};

/// One segment of the path to an offending key.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    /// `[[name]]` array element number `index`, shown by its `id`.
    Item(&'static str, usize, String),
    Key(String),
}

#[derive(Debug)]
pub(super) struct Violation {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Violation {
    pub fn key(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                Seg::Item(table, _, id) => format!("{table}.{id}"),
                Seg::Key(k) => k.clone(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn fail(path: Vec<Seg>, message: impl Into<String>) -> Result<(), Violation> {
    Err(Violation { path, message: message.into() })
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn item(table: &'static str, i: usize, id: &str) -> Seg {
    Seg::Item(table, i, id.to_string())
}

fn is_country(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

/// A promise ID as PROMISES.md writes them: `DB-7`, `BRW-5`.
pub fn is_promise_id(s: &str) -> bool {
    let Some((prefix, num)) = s.split_once('-') else {
        return false;
    };
    (2..=3).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_uppercase())
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
}

fn unique<'a>(table: &'static str, ids: impl Iterator<Item = &'a str>) -> Result<HashSet<&'a str>, Violation> {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if id.trim().is_empty() {
            return Err(Violation { path: vec![item(table, i, "?"), key("id")], message: "must not be empty".into() });
        }
        if !seen.insert(id) {
            return Err(Violation {
                path: vec![item(table, i, id), key("id")],
                message: format!("`{id}` is listed twice in `{table}`; ids must be unique"),
            });
        }
    }
    Ok(seen)
}

fn known(set: &HashSet<&str>, value: &str, what: &str, path: Vec<Seg>) -> Result<(), Violation> {
    if set.contains(value) {
        return Ok(());
    }
    let mut choices: Vec<&&str> = set.iter().collect();
    choices.sort();
    let choices: Vec<String> = choices.iter().map(|c| format!("`{c}`")).collect();
    fail(path, format!("`{value}` is not a known {what}; known: {}", choices.join(", ")))
}

pub(super) fn validate(p: &Policy) -> Result<(), Violation> {
    let org = &p.organisation;
    if !org.helpdesk_path.starts_with('/') {
        fail(vec![key("organisation"), key("helpdesk_path")], "must be a path on the site, starting with `/`")?;
    }
    if !org.helpdesk_email.contains('@') {
        fail(vec![key("organisation"), key("helpdesk_email")], "must be an e-mail address")?;
    }

    if p.versions.is_empty() {
        fail(vec![key("versions")], "at least one version with its effective date is required")?;
    }
    let mut dates = HashSet::new();
    for (i, v) in p.versions.iter().enumerate() {
        if !dates.insert(v.effective) {
            fail(
                vec![item("versions", i, &v.effective.to_string()), key("effective")],
                "two versions share this effective date",
            )?;
        }
    }

    let purposes = unique("purposes", p.purposes.iter().map(|x| x.id.as_str()))?;
    let fields = unique("fields", p.fields.iter().map(|x| x.id.as_str()))?;
    let categories = unique("categories", p.categories.iter().map(|x| x.id.as_str()))?;
    let providers = unique("providers", p.providers.iter().map(|x| x.id.as_str()))?;
    let regions = unique("regions", p.regions.iter().map(|x| x.id.as_str()))?;

    for required in REQUIRED_CATEGORIES {
        if !categories.contains(required) {
            fail(
                vec![key("categories")],
                format!(
                    "category `{required}` is missing: Seldesk stores it, so it needs a retention rule and purposes here"
                ),
            )?;
        }
    }
    for (i, c) in p.categories.iter().enumerate() {
        let at = |k: &str| vec![item("categories", i, &c.id), key(k)];
        if c.purposes.is_empty() {
            fail(at("purposes"), "a category needs at least one purpose")?;
        }
        for purpose in &c.purposes {
            known(&purposes, purpose, "purpose", at("purposes"))?;
        }
        for country in c.retention.by_country.keys() {
            if !is_country(country) {
                fail(
                    at("retention"),
                    format!("`{country}` is not a country code; use ISO 3166 alpha-2 in capitals, e.g. `IN`"),
                )?;
            }
        }
        for promise in &c.promises {
            if !is_promise_id(promise) {
                fail(at("promises"), format!("`{promise}` is not a promise ID such as `DB-7`"))?;
            }
        }
    }

    if !p.regions.iter().any(|r| r.hosting) {
        fail(vec![key("regions")], "at least one region must have `hosting = true`")?;
    }
    if !p.regions.iter().any(|r| r.backup) {
        fail(vec![key("regions")], "at least one region must have `backup = true`")?;
    }
    let defaults = p.regions.iter().filter(|r| r.hosting && r.default).count();
    if defaults != 1 {
        fail(
            vec![key("regions")],
            format!("exactly one hosting region must have `default = true` (found {defaults})"),
        )?;
    }
    let mut served = HashSet::new();
    for (i, r) in p.regions.iter().enumerate() {
        let at = |k: &str| vec![item("regions", i, &r.id), key(k)];
        if !r.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            fail(at("id"), "region ids are lowercase letters, digits and `-` (they name folders)")?;
        }
        if r.default && !r.hosting {
            fail(at("default"), "only a hosting region can be the default")?;
        }
        for c in &r.countries {
            if !is_country(c) {
                fail(at("countries"), format!("`{c}` is not a country code; use ISO 3166 alpha-2 in capitals"))?;
            }
            if r.hosting && !served.insert(c.as_str()) {
                fail(at("countries"), format!("`{c}` is served by two hosting regions; list it once"))?;
            }
        }
    }
    let _ = regions;

    match p.provider(&p.upgrade_location.provider) {
        Some(pr) if pr.kind == ProviderKind::Hosting => {}
        Some(_) => fail(vec![key("upgrade_location"), key("provider")], "must name a provider of kind `hosting`")?,
        None => {
            known(&providers, &p.upgrade_location.provider, "provider", vec![key("upgrade_location"), key("provider")])?
        }
    }

    if let Some(backup) = p.retention("backup")
        && backup.keep != p.backups.max_age
    {
        fail(
            vec![key("backups"), key("max_age")],
            format!("is {} but category `backup` keeps snapshots {}; make them equal", p.backups.max_age, backup.keep),
        )?;
    }
    for (plan, window) in [("trial", p.backups.point_in_time.trial), ("subscribed", p.backups.point_in_time.subscribed)]
    {
        if window.max_days() > p.backups.max_age.max_days() {
            fail(
                vec![key("backups"), key("point_in_time"), key(plan)],
                format!("is {window} but no backup is kept beyond max_age {}", p.backups.max_age),
            )?;
        }
    }
    if u64::from(p.backups.keep_monthly) * 28 > p.backups.max_age.max_days() {
        fail(
            vec![key("backups"), key("keep_monthly")],
            format!("{} monthly snapshots would outlive max_age {}", p.backups.keep_monthly, p.backups.max_age),
        )?;
    }

    for (i, f) in p.fields.iter().enumerate() {
        known(&categories, &f.category, "category", vec![item("fields", i, &f.id), key("category")])?;
    }
    let mut offer_ids = HashSet::new();
    for (i, f) in p.careers.offer_fields.iter().enumerate() {
        let at = || vec![key("careers"), item("offer_fields", i, &f.id)];
        if !offer_ids.insert(f.id.as_str()) {
            fail(at(), "two offer fields share this id")?;
        }
        if f.id.is_empty() || !f.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            fail(at(), "an offer field id is lowercase letters, digits and `_`")?;
        }
        if let Some(what) = crate::special::special_category(&f.id).or(crate::special::special_category(&f.label)) {
            fail(at(), format!("Seldesk never asks for {what} (JOB-3)"))?;
        }
    }
    if p.research.min_group_size < 2 {
        fail(
            vec![key("research"), key("min_group_size")],
            "must be at least 2, or single people could be singled out",
        )?;
    }

    for (i, pr) in p.providers.iter().enumerate() {
        let at = |k: &str| vec![item("providers", i, &pr.id), key(k)];
        for purpose in &pr.purposes {
            known(&purposes, purpose, "purpose", at("purposes"))?;
        }
        for f in &pr.fields {
            known(&fields, f, "field (see [[fields]])", at("fields"))?;
        }
        for c in &pr.hosts {
            known(&categories, c, "category", at("hosts"))?;
        }
        if pr.kind == ProviderKind::Payment && pr.fields.is_empty() {
            fail(at("fields"), "a payment processor must list the fields it may receive")?;
        }
        // The provider table has no blank cell: say what each one receives.
        if pr.kind != ProviderKind::Recipient && pr.fields.is_empty() && pr.hosts.is_empty() {
            fail(at("fields"), "list the fields this provider receives (or the categories it hosts)")?;
        }
    }

    let mut classes = HashSet::new();
    for (i, c) in p.cookies.iter().enumerate() {
        let name = format!("{:?}", c.class).to_lowercase();
        let at = |k: &str| vec![item("cookies", i, &name), key(k)];
        if !classes.insert(c.class) {
            fail(at("class"), "each cookie class is listed once")?;
        }
        let necessary = c.class == CookieClassId::Necessary;
        if necessary == c.needs_consent {
            fail(
                at("needs_consent"),
                if necessary {
                    "strictly necessary cookies never need consent"
                } else {
                    "only strictly necessary cookies may be set without consent"
                },
            )?;
        }
        if let Some(pid) = &c.provider {
            known(&providers, pid, "provider", at("provider"))?;
        }
    }
    if !classes.contains(&CookieClassId::Necessary) {
        fail(vec![key("cookies")], "the `necessary` cookie class is required (the session cookie belongs to it)")?;
    }

    for promise in &p.implemented_promises {
        if !is_promise_id(promise) {
            fail(vec![key("implemented_promises")], format!("`{promise}` is not a promise ID such as `DB-7`"))?;
        }
    }
    Ok(())
}

/// Finds the line of the key a violation names, for the error message.
pub(super) fn locate(source: &str, path: &[Seg]) -> Option<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let mut start = 0usize;
    let mut keys = path.iter().peekable();
    // Find the table the path enters.
    match keys.peek()? {
        Seg::Item(table, index, _) => {
            let header = format!("[[{table}]]");
            let (line, _) = lines.iter().enumerate().filter(|(_, l)| l.trim() == header).nth(*index)?;
            start = line;
            keys.next();
        }
        Seg::Key(k) => {
            let header = format!("[{k}]");
            if let Some(line) = lines.iter().position(|l| l.trim() == header) {
                start = line;
                keys.next();
            }
        }
    }
    let Some(Seg::Key(k)) = keys.next() else {
        return Some(start + 1);
    };
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if t.strip_prefix(k.as_str()).is_some_and(|rest| rest.trim_start().starts_with('=') || rest.starts_with('.')) {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

/// The dotted key written on `line` (1-based), with its table and the `id` of
/// its `[[table]]` element, for parse errors that only know a position.
pub(super) fn key_at_line(source: &str, line: usize) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let Some(text) = lines.get(line.saturating_sub(1)) else {
        return String::new();
    };
    let own = text.split_once('=').map(|(k, _)| k.trim().to_string()).unwrap_or_default();
    let header_at = lines[..line.saturating_sub(1)].iter().rposition(|l| l.trim_start().starts_with('['));
    let mut parts = Vec::new();
    if let Some(h) = header_at {
        let header = lines[h].trim().trim_matches(|c| c == '[' || c == ']').to_string();
        let id = lines[h + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('['))
            .find_map(|l| l.trim().strip_prefix("id = ").map(|v| v.trim_matches('"').to_string()));
        parts.push(header);
        if let Some(id) = id.filter(|_| lines[h].trim().starts_with("[[")) {
            parts.push(id);
        }
    }
    if !own.is_empty() && !own.starts_with('[') {
        parts.push(own);
    }
    parts.join(".")
}
