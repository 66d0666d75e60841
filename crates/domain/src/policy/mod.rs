//! The privacy policy as data.
//!
//! One typed [`Policy`] is loaded from the policy file (`policy/seldesk.toml`,
//! compiled into the binary, replaceable at run time) and validated before
//! anything starts. Everything that enforces or publishes the policy asks this
//! object: retention periods, the provider registry and the fields each
//! provider may receive, hosting and backup regions, cookie classes, and the
//! public text rendered on `/privacy`.

pub mod markers;
mod period;
mod render;
mod ropa;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};
use time::{Date, OffsetDateTime};

pub use period::{Period, PeriodError, Unit};
pub use render::{render_markdown, render_with_markers};
pub use ropa::{Ropa, RopaEntry};

/// The policy file shipped with Seldesk.
pub const BUILTIN_SOURCE: &str = include_str!("../../../../policy/seldesk.toml");
/// Where the built-in policy file lives in the repository (for messages).
pub const BUILTIN_NAME: &str = "policy/seldesk.toml (built in)";

/// Archived texts of earlier policy versions, compiled in beside the built-in file.
/// Empty until a second version is published: the history shows only texts
/// that were really in force.
const BUILTIN_ARCHIVES: &[(&str, &str)] = &[];

/// Data categories the code stores. The policy file must give each a rule, so
/// no store can hold personal data that the retention engine does not know.
pub const REQUIRED_CATEGORIES: &[&str] = &[
    "account_contact",
    "payment_order",
    "invoice",
    "job_application",
    "employee_record",
    "browser_event",
    "customer_database",
    "upgrade_upload",
    "backup",
    "consent_record",
    "disclosure_record",
    "audit_event",
    "helpdesk_ticket",
    "erasure_record",
    "outgoing_mail",
    "idle_account",
];

/// A policy file that could not be loaded: names the key, the line when it
/// can be found, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Which file.
    pub source_name: String,
    /// Dotted path of the offending key, e.g. `categories.browser_event.retention.keep`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy file {}", self.source_name)?;
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The whole policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub organisation: Organisation,
    pub versions: Vec<Version>,
    pub purposes: Vec<Purpose>,
    pub fields: Vec<Field>,
    pub categories: Vec<Category>,
    pub regions: Vec<Region>,
    pub upgrade_location: UpgradeLocation,
    pub backups: Backups,
    pub trial: Trial,
    pub accounts: AccountsPolicy,
    pub careers: Careers,
    pub providers: Vec<Provider>,
    pub cookies: Vec<CookieClass>,
    /// Promise IDs (from PROMISES.md) that the project claims as implemented:
    /// CI fails when one of them has no tagged test.
    #[serde(default)]
    pub implemented_promises: Vec<String>,
    /// Security measures, as the records of processing activities list them.
    #[serde(default)]
    pub security_measures: Vec<String>,
    pub research: Research,
    /// Archived Markdown of earlier versions, by effective date.
    #[serde(skip)]
    pub archives: BTreeMap<Date, String>,
    /// Where the policy came from (file path or "built in").
    #[serde(skip)]
    pub source_name: String,
    /// BLAKE3 of the file and its archived texts: changes whenever the policy does.
    #[serde(skip)]
    pub fingerprint: String,
}

/// Who publishes the policy and how people reach them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    pub name: String,
    pub website: String,
    pub helpdesk_email: String,
    /// Path of the Helpdesk on the site.
    pub helpdesk_path: String,
    /// How long the Helpdesk has to answer a personal-data request.
    pub request_due: Period,
}

/// One published version of the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    #[serde(deserialize_with = "de_date")]
    pub effective: Date,
    pub summary: String,
    /// Frozen Markdown of this version, relative to the policy file. Every
    /// version but the newest has one; the newest is rendered from the file.
    #[serde(default)]
    pub archive: Option<String>,
}

/// Rules for aggregates shared for research and trends (PRC-3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Research {
    /// Groups smaller than this are suppressed from any aggregate we publish.
    pub min_group_size: u64,
}

/// Why we process data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub id: String,
    pub description: String,
}

/// A personal-data field that may leave Seldesk (the disclosure gate checks
/// names against this list).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub id: String,
    pub label: String,
    /// The data category the field belongs to.
    pub category: String,
}

/// Legal basis of processing (GDPR art. 6 terms; the same four cover the
/// other laws the policy serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Contract,
    LegalObligation,
    LegitimateInterest,
    Consent,
}

impl LegalBasis {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Contract => "performance of a contract",
            Self::LegalObligation => "legal obligation",
            Self::LegitimateInterest => "legitimate interest",
            Self::Consent => "consent",
        }
    }
}

/// A kind of data we hold, with its one retention rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Whether records of this category are about an identifiable person.
    pub personal: bool,
    pub purposes: Vec<String>,
    pub legal_basis: LegalBasis,
    pub retention: RetentionRule,
    #[serde(default)]
    pub promises: Vec<String>,
}

/// When the retention clock of a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// When the record was made.
    Created,
    /// When the account was closed or erased.
    AccountClosed,
    /// When the contract (employment, subscription) ended.
    ContractEnd,
    /// When the service was cancelled (grace period).
    Cancelled,
    /// When the last successful upgrade finished.
    LastUpgrade,
    /// When the hiring process ended without a hire.
    ProcessEnd,
    /// The account's last sign-in, database or invoice.
    LastActivity,
}

impl Anchor {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Created => "after it is recorded",
            Self::AccountClosed => "after the account is closed",
            Self::ContractEnd => "after the contract ends",
            Self::Cancelled => "after cancellation",
            Self::LastUpgrade => "after the last successful upgrade",
            Self::ProcessEnd => "after the hiring process ends",
            Self::LastActivity => "after your last sign-in, database or invoice",
        }
    }
}

/// How long a category is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    pub keep: Period,
    pub after: Anchor,
    /// Country-specific periods (ISO 3166 alpha-2), e.g. legal retention of invoices.
    #[serde(default)]
    pub by_country: BTreeMap<String, Period>,
}

impl RetentionRule {
    /// The period that applies to a record of `country` (or the default).
    pub fn keep_for(&self, country: Option<&str>) -> Period {
        country.and_then(|c| self.by_country.get(&c.to_ascii_uppercase())).copied().unwrap_or(self.keep)
    }

    /// When a record whose clock started at `start` is due for erasure.
    pub fn due(&self, start: OffsetDateTime, country: Option<&str>) -> OffsetDateTime {
        self.keep_for(country).after(start)
    }
}

impl fmt::Display for RetentionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.keep, self.after.label())?;
        if !self.by_country.is_empty() {
            let parts: Vec<String> = self.by_country.iter().map(|(c, p)| format!("{c}: {p}")).collect();
            write!(f, " (by country: {})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// A data center region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub city: String,
    /// Customer databases may be hosted here.
    pub hosting: bool,
    /// Backups are replicated here.
    pub backup: bool,
    /// Countries (ISO 3166 alpha-2) this hosting region serves best.
    #[serde(default)]
    pub countries: Vec<String>,
    /// The hosting region for countries no region lists.
    #[serde(default)]
    pub default: bool,
}

/// Where the Database Upgrade service keeps uploads and results.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeLocation {
    pub name: String,
    /// The hosting provider (an id from `providers`).
    pub provider: String,
}

/// Free trials (DB-1, DB-9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    pub length: Period,
}

/// Accounts (ACC-6): how long before an idle account is erased its owner is
/// warned (the idle period is the `idle_account` category's retention).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsPolicy {
    pub idle_warning: Period,
}

/// Hiring (JOB-2): what an offer asks of the candidate, and nothing earlier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Careers {
    pub offer_fields: Vec<OfferField>,
}

/// One piece of information asked for only once an offer is made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferField {
    pub id: String,
    pub label: String,
    pub kind: OfferFieldKind,
}

/// How an offer field is entered and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferFieldKind {
    Text,
    Date,
}

/// Backup schedule and retention (BAK-2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// No snapshot outlives this; must equal the `backup` category's period.
    pub max_age: Period,
    /// How far back an owner may restore their database to a moment, by plan.
    #[serde(default)]
    pub point_in_time: RestoreWindows,
}

/// How far back an owner may restore a database to a moment (point-in-time
/// restore from its streamed changes), by plan; never beyond `max_age`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreWindows {
    pub trial: Period,
    pub subscribed: Period,
}

impl Default for RestoreWindows {
    fn default() -> Self {
        Self { trial: Period::new(7, Unit::Days), subscribed: Period::new(30, Unit::Days) }
    }
}

impl RestoreWindows {
    /// The window of a plan (`trial` or `subscribed`; any other is a trial's).
    pub fn of(&self, plan: &str) -> Period {
        if plan == "subscribed" { self.subscribed } else { self.trial }
    }
}

/// What a provider is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Processes payments.
    Payment,
    /// Hosts our infrastructure.
    Hosting,
    /// Analytics or other services embedded in the site.
    Analytics,
    /// A class of recipients named per case (event organisers, sponsors, partners).
    Recipient,
    /// Delivers our e-mail (the SMTP relay).
    Mail,
}

/// A third party that may receive personal data, and exactly which fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub certification: Option<String>,
    /// Purpose IDs this provider serves.
    pub purposes: Vec<String>,
    /// The purpose as published.
    pub description: String,
    /// Field IDs the disclosure gate lets through to this provider.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Categories this provider hosts (hosting providers).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// What only the provider stores (e.g. card details).
    #[serde(default)]
    pub only_stored_by_provider: Option<String>,
    #[serde(default)]
    pub privacy_url: Option<String>,
    #[serde(default)]
    pub promises: Vec<String>,
}

/// The cookie classes a visitor can accept or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieClassId {
    Necessary,
    Preferences,
    Analytics,
    ThirdPartyAnalytics,
}

/// A class of cookies and whether it needs consent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieClass {
    pub class: CookieClassId,
    pub name: String,
    pub description: String,
    pub needs_consent: bool,
    #[serde(default)]
    pub provider: Option<String>,
    pub cookies: Vec<Cookie>,
}

/// One cookie.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookie {
    pub name: String,
    pub purpose: String,
    pub lifetime: String,
}

fn de_date<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    let dt = toml::value::Datetime::deserialize(d)?;
    let (Some(date), None) = (dt.date, dt.time) else {
        return Err(serde::de::Error::custom("expected a date such as 2026-11-25 (no time of day)"));
    };
    let month = time::Month::try_from(date.month).map_err(serde::de::Error::custom)?;
    Date::from_calendar_date(i32::from(date.year), month, date.day).map_err(serde::de::Error::custom)
}

impl Policy {
    /// The policy compiled into the binary.
    pub fn builtin() -> Result<Self, PolicyError> {
        Self::parse(BUILTIN_SOURCE, BUILTIN_NAME, |path| {
            BUILTIN_ARCHIVES
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, text)| (*text).to_string())
                .ok_or_else(|| format!("no archived text `{path}` is built in"))
        })
    }

    /// Loads a policy file; archives are read relative to its folder.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: name.clone(),
            key: String::new(),
            line: None,
            message: format!("cannot read the file: {e}"),
        })?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&source, &name, |rel| {
            std::fs::read_to_string(dir.join(rel))
                .map_err(|e| format!("cannot read archived text `{}`: {e}", dir.join(rel).display()))
        })
    }

    /// Parses and validates policy text. `read_archive` resolves `archive` paths.
    pub fn parse(
        source: &str,
        source_name: &str,
        read_archive: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Self, PolicyError> {
        let mut policy: Policy = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| source[..s.start.min(source.len())].matches('\n').count() + 1);
            PolicyError {
                source_name: source_name.to_string(),
                key: line.map(|l| validate::key_at_line(source, l)).unwrap_or_default(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        policy.source_name = source_name.to_string();
        validate::validate(&policy).map_err(|v| PolicyError {
            source_name: source_name.to_string(),
            line: validate::locate(source, &v.path),
            key: v.key(),
            message: v.message,
        })?;
        policy.versions.sort_by_key(|v| std::cmp::Reverse(v.effective));
        let mut archives = BTreeMap::new();
        for (i, version) in policy.versions.iter().enumerate() {
            if let Some(rel) = &version.archive {
                let text = read_archive(rel).map_err(|message| PolicyError {
                    source_name: source_name.to_string(),
                    key: format!("versions.{}.archive", version.effective),
                    line: source.find(rel.as_str()).map(|at| source[..at].matches('\n').count() + 1),
                    message,
                })?;
                archives.insert(version.effective, text);
            } else if i > 0 {
                return Err(PolicyError {
                    source_name: source_name.to_string(),
                    key: format!("versions.{}.archive", version.effective),
                    line: None,
                    message: "every version but the newest needs `archive`, the file holding the text as it was published (write it with `seldesk policy render --markdown` before changing the policy)".into(),
                });
            }
        }
        let mut h = blake3::Hasher::new();
        h.update(source.as_bytes());
        for text in archives.values() {
            h.update(text.as_bytes());
        }
        policy.fingerprint = h.finalize().to_hex().to_string();
        policy.archives = archives;
        Ok(policy)
    }

    /// Versions, newest first.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// The newest version: the one this file's values describe.
    pub fn newest_version(&self) -> &Version {
        // validate() guarantees at least one version.
        &self.versions[0]
    }

    /// The version in force on `today`: the newest whose effective date has come.
    pub fn current_version(&self, today: Date) -> &Version {
        self.versions.iter().find(|v| v.effective <= today).unwrap_or_else(|| {
            // Every version is in the future: show the oldest as current.
            &self.versions[self.versions.len() - 1]
        })
    }

    /// A version by its effective date.
    pub fn version(&self, effective: Date) -> Option<&Version> {
        self.versions.iter().find(|v| v.effective == effective)
    }

    /// The Markdown text of a version: rendered from this file for the newest,
    /// the archived text for older ones.
    pub fn text_of(&self, version: &Version) -> String {
        match self.archives.get(&version.effective) {
            Some(text) => text.clone(),
            None => render_markdown(self, version),
        }
    }

    /// A category by id.
    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// The retention rule of a category.
    pub fn retention(&self, id: &str) -> Option<&RetentionRule> {
        self.category(id).map(|c| &c.retention)
    }

    /// A provider by id.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// A purpose by id.
    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id == id)
    }

    /// A field by id.
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// A region by id.
    pub fn region(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id == id)
    }

    /// Regions where customer databases may be hosted.
    pub fn hosting_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.hosting)
    }

    /// Regions every backup is replicated to.
    pub fn backup_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.backup)
    }

    /// The hosting region that serves a country best (DB-8).
    pub fn nearest_region(&self, country: Option<&str>) -> &Region {
        let wanted = country.map(str::to_ascii_uppercase);
        self.hosting_regions()
            .find(|r| wanted.as_ref().is_some_and(|c| r.countries.iter().any(|x| x == c)))
            .or_else(|| self.hosting_regions().find(|r| r.default))
            .unwrap_or_else(|| {
                // validate() guarantees a default hosting region.
                &self.regions[0]
            })
    }

    /// A cookie class by id.
    pub fn cookie_class(&self, id: CookieClassId) -> Option<&CookieClass> {
        self.cookies.iter().find(|c| c.class == id)
    }
}

#[cfg(test)]
mod tests;
