//! Events (MKT-3) and partners (MKT-4). A registration's name, e-mail, phone
//! and company go to the event's organiser and each sponsor, and a referral's
//! to an official partner of the person's country: always through the
//! disclosure gate (registered recipient, purpose and fields only), each
//! transfer recorded in the ledger the person's access export shows, and
//! never twice to the same recipient, however often a failed one is retried.

use seldesk_domain::Fault;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seldesk_accounts::OutgoingMail;
use seldesk_domain::Actor;
use seldesk_privacy::BoxFuture;
use seldesk_privacy::disclosure::{Disclosure, Transport, WebhookTransport};
use seldesk_store::{from_millis, to_millis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{JOB_TRANSFER, Marketing, MarketingError, checked, marketing_only};

/// A sponsor of an event, and where its copy of registrations goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sponsor {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

fn sponsor_names<S: serde::Serializer>(sponsors: &[Sponsor], out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(sponsors.iter().map(|s| &s.name))
}

/// An event people can register for.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub description: String,
    pub city: String,
    pub country: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    pub organiser: String,
    #[serde(skip_serializing)]
    pub organiser_webhook: Option<String>,
    /// Shown by name only: a sponsor's webhook address is a credential.
    #[serde(serialize_with = "sponsor_names")]
    #[schema(value_type = Vec<String>)]
    pub sponsors: Vec<Sponsor>,
    /// `draft`, `open` or `closed`.
    pub status: String,
}

impl Event {
    /// Everyone a registration goes to, as the form names them.
    pub fn recipient_names(&self) -> Vec<String> {
        std::iter::once(self.organiser.clone()).chain(self.sponsors.iter().map(|s| s.name.clone())).collect()
    }

    /// "25 Jan 2027, 10:00 UTC".
    pub fn when(&self) -> String {
        let f = time::macros::format_description!("[day] [month repr:short] [year], [hour]:[minute] UTC");
        self.starts_at.format(&f).unwrap_or_default()
    }

    pub fn country_name(&self) -> &'static str {
        seldesk_domain::country::name(&self.country).unwrap_or("")
    }
}

/// What the marketing role enters for an event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventInput {
    pub title: String,
    pub description: String,
    pub city: String,
    pub country: String,
    /// `2027-01-25T10:00` (UTC).
    pub starts_at: String,
    pub organiser: String,
    #[serde(default)]
    pub organiser_webhook: String,
    /// One sponsor a line: `Name` or `Name | https://webhook`.
    #[serde(default)]
    pub sponsors: String,
}

/// The four fields a registration or referral asks for, and nothing else.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "Meera Iyer", "email": "meera@example.in", "phone": "+91 22 5555 0199", "company": "Iyer Spices"}))]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    /// Referrals only: the person's country (two letters).
    #[serde(default)]
    pub country: String,
}

/// Someone's registration for an event.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub id: String,
    pub event_id: String,
    pub subject: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// An official partner.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Partner {
    pub id: String,
    pub name: String,
    pub country: String,
    pub website: String,
    #[serde(skip_serializing)]
    pub webhook: Option<String>,
    pub active: bool,
}

impl Partner {
    pub fn country_name(&self) -> &'static str {
        seldesk_domain::country::name(&self.country).unwrap_or("")
    }
}

/// What the marketing role enters for a partner.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PartnerInput {
    pub name: String,
    pub country: String,
    pub website: String,
    #[serde(default)]
    pub webhook: String,
}

/// A request to be contacted by a partner.
#[derive(Debug, Clone, Serialize)]
pub struct Referral {
    pub id: String,
    pub partner_id: String,
    pub partner_name: String,
    pub partner_website: String,
    pub subject: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub company: String,
    pub country: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Writes an approved transfer as a file staff hand over to the recipient.
struct FileTransport {
    path: PathBuf,
}

impl Transport for FileTransport {
    fn deliver<'a>(&'a self, d: &'a Disclosure) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "recipient": d.recipient_name,
                "purpose": d.purpose,
                "fields": d.fields,
            });
            let dir = self.path.parent().ok_or("no folder for the transfer file")?;
            tokio::fs::create_dir_all(dir).await.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let tmp = self.path.with_extension("tmp");
            tokio::fs::write(&tmp, body.to_string())
                .await
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            tokio::fs::rename(&tmp, &self.path).await.map_err(|e| format!("cannot write {}: {e}", self.path.display()))
        })
    }
}

/// A recipient of a transfer: registry id, name, where it goes.
struct Recipient {
    key: String,
    provider: &'static str,
    name: String,
    webhook: Option<String>,
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(60).collect()
}

fn webhook(field: &'static str, v: &str) -> Result<Option<String>, MarketingError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if !(v.starts_with("https://") || v.starts_with("http://")) || v.contains(char::is_whitespace) || v.len() > 500 {
        return Err(MarketingError::invalid(field, format!("`{v}` is not a web address (https://…).")));
    }
    Ok(Some(v.to_string()))
}

fn country_code(v: &str) -> Result<String, MarketingError> {
    seldesk_domain::country::normalise(v).ok_or_else(|| {
        MarketingError::invalid(
            "country",
            if v.trim().is_empty() {
                "Choose a country.".to_string()
            } else {
                format!("`{}` is not a country code.", v.trim())
            },
        )
    })
}

const EVENT_COLUMNS: &str =
    "id, slug, title, description, city, country, starts_at, organiser, organiser_webhook, sponsors, status";

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<Event, sqlx::Error> {
    let sponsors: String = r.try_get("sponsors")?;
    Ok(Event {
        id: r.try_get("id")?,
        slug: r.try_get("slug")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        city: r.try_get("city")?,
        country: r.try_get("country")?,
        starts_at: from_millis(r.try_get("starts_at")?),
        organiser: r.try_get("organiser")?,
        organiser_webhook: r.try_get("organiser_webhook")?,
        sponsors: serde_json::from_str(&sponsors).unwrap_or_default(),
        status: r.try_get("status")?,
    })
}

const REGISTRATION_COLUMNS: &str = "id, event_id, subject, name, email, phone, company, created_at";

fn registration_from_row(r: &sqlx::any::AnyRow) -> Result<Registration, sqlx::Error> {
    Ok(Registration {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        subject: r.try_get("subject")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        company: r.try_get("company")?,
        created_at: from_millis(r.try_get("created_at")?),
    })
}

fn partner_from_row(r: &sqlx::any::AnyRow) -> Result<Partner, sqlx::Error> {
    Ok(Partner {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        country: r.try_get("country")?,
        website: r.try_get("website")?,
        webhook: r.try_get("webhook")?,
        active: r.try_get::<i64, _>("active")? != 0,
    })
}

const REFERRAL_COLUMNS: &str = "r.id, r.partner_id, p.name AS partner_name, p.website AS partner_website, r.subject, r.name, r.email, r.phone, r.company, r.country, r.created_at";

fn referral_from_row(r: &sqlx::any::AnyRow) -> Result<Referral, sqlx::Error> {
    Ok(Referral {
        id: r.try_get("id")?,
        partner_id: r.try_get("partner_id")?,
        partner_name: r.try_get("partner_name")?,
        partner_website: r.try_get("partner_website")?,
        subject: r.try_get("subject")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        company: r.try_get("company")?,
        country: r.try_get("country")?,
        created_at: from_millis(r.try_get("created_at")?),
    })
}

/// An event's fields once checked.
struct CheckedEvent {
    title: String,
    description: String,
    city: String,
    country: String,
    starts_at: i64,
    organiser: String,
    organiser_webhook: Option<String>,
    sponsors: Vec<Sponsor>,
}

/// The four checked fields of a registration or referral.
struct Contact {
    name: String,
    email: String,
    phone: String,
    company: String,
}

fn contact(input: &RegistrationInput) -> Result<Contact, MarketingError> {
    use seldesk_accounts::input;
    let name = checked(input::text("name", "Name", &input.name, 100, true))?.unwrap_or_default();
    let email = checked(input::email(&input.email))?;
    let phone = checked(input::phone(&input.phone))?
        .ok_or_else(|| MarketingError::invalid("phone", "Phone is required: the organiser uses it to reach you."))?;
    let company = checked(input::text("company", "Company", &input.company, 100, true))?.unwrap_or_default();
    Ok(Contact { name, email, phone, company })
}

fn fields_of(c: &Contact) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("person.name".to_string(), c.name.clone()),
        ("person.email".to_string(), c.email.clone()),
        ("person.phone".to_string(), c.phone.clone()),
        ("person.company".to_string(), c.company.clone()),
    ])
}

impl Marketing {
    fn event_input(&self, input: &EventInput) -> Result<CheckedEvent, MarketingError> {
        use seldesk_accounts::input;
        let title = checked(input::text("title", "Title", &input.title, 150, true))?.unwrap_or_default();
        let description =
            checked(input::text("description", "Description", &input.description, 10_000, true))?.unwrap_or_default();
        let city = checked(input::text("city", "City", &input.city, 100, true))?.unwrap_or_default();
        let country = country_code(&input.country)?;
        let raw = input.starts_at.trim().replace(' ', "T");
        let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
        let starts_at = time::PrimitiveDateTime::parse(raw.get(..16).unwrap_or(&raw), &f)
            .map_err(|_| {
                MarketingError::invalid("starts_at", "Give the start as date and time, e.g. 2027-01-25T10:00 (UTC).")
            })?
            .assume_utc();
        let organiser =
            checked(input::text("organiser", "Organiser", &input.organiser, 150, true))?.unwrap_or_default();
        let organiser_webhook = webhook("organiser_webhook", &input.organiser_webhook)?;
        let mut sponsors = Vec::new();
        for line in input.sponsors.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (name, hook) = line.split_once('|').map(|(a, b)| (a.trim(), b.trim())).unwrap_or((line, ""));
            let name = checked(input::text("sponsors", "Sponsor name", name, 150, true))?.unwrap_or_default();
            if sponsors.iter().any(|s: &Sponsor| s.name == name) || name == organiser {
                return Err(MarketingError::invalid("sponsors", format!("`{name}` is named twice.")));
            }
            sponsors.push(Sponsor { name, webhook: webhook("sponsors", hook)? });
        }
        if sponsors.len() > 20 {
            return Err(MarketingError::invalid("sponsors", "At most 20 sponsors."));
        }
        Ok(CheckedEvent {
            title,
            description,
            city,
            country,
            starts_at: to_millis(starts_at),
            organiser,
            organiser_webhook,
            sponsors,
        })
    }

    /// Creates an event (as a draft: registrations open when it is opened).
    pub async fn create_event(&self, actor: &Actor, input: &EventInput) -> Result<Event, MarketingError> {
        marketing_only(actor)?;
        let CheckedEvent { title, description, city, country, starts_at, organiser, organiser_webhook: hook, sponsors } =
            self.event_input(input)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let base = slug(&title);
        let slug = format!("{}-{}", if base.is_empty() { "event".into() } else { base }, &id[id.len() - 6..]);
        sqlx::query(
            "INSERT INTO events (id, slug, title, description, city, country, starts_at, organiser, organiser_webhook, sponsors, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', $11)",
        )
        .bind(&id)
        .bind(&slug)
        .bind(&title)
        .bind(&description)
        .bind(&city)
        .bind(&country)
        .bind(starts_at)
        .bind(&organiser)
        .bind(&hook)
        .bind(serde_json::to_string(&sponsors).unwrap_or_default())
        .bind(to_millis(self.now()))
        .execute(self.db.pool())
        .await?;
        self.audit.record(actor, "event.created", None, Some(&format!("event:{id}")), serde_json::json!({})).await?;
        self.event(&id).await
    }

    /// Opens, closes or returns an event to draft.
    pub async fn set_event_status(&self, actor: &Actor, id: &str, status: &str) -> Result<Event, MarketingError> {
        marketing_only(actor)?;
        if !["draft", "open", "closed"].contains(&status) {
            return Err(MarketingError::invalid("status", "An event is draft, open or closed."));
        }
        self.event(id).await?;
        sqlx::query("UPDATE events SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .record(actor, "event.status", None, Some(&format!("event:{id}")), serde_json::json!({ "status": status }))
            .await?;
        self.event(id).await
    }

    /// One event by id.
    pub async fn event(&self, id: &str) -> Result<Event, MarketingError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| MarketingError::NotFound("No such event.".into()))?;
        Ok(event_from_row(&row)?)
    }

    /// An open event by its address.
    pub async fn open_event(&self, slug: &str) -> Result<Event, MarketingError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE slug = $1 AND status = 'open'"
        )))
        .bind(slug)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| MarketingError::NotFound("This event does not exist or registration has closed.".into()))?;
        Ok(event_from_row(&row)?)
    }

    /// Open events, soonest first.
    pub async fn open_events(&self) -> Result<Vec<Event>, MarketingError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE status = 'open' ORDER BY starts_at"
        )))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(event_from_row).collect::<Result<_, _>>().map_err(Into::into)
    }

    /// Every event with its number of registrations (marketing role).
    pub async fn all_events(&self, actor: &Actor) -> Result<Vec<(Event, u64)>, MarketingError> {
        marketing_only(actor)?;
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY starts_at DESC")))
                .fetch_all(self.db.pool())
                .await?;
        let mut out = Vec::new();
        for r in &rows {
            let e = event_from_row(r)?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_registrations WHERE event_id = $1")
                .bind(&e.id)
                .fetch_one(self.db.pool())
                .await?;
            out.push((e, n.max(0) as u64));
        }
        Ok(out)
    }

    /// The person a registration or referral is about: the signed-in account
    /// holder, the account holder with this address, or a new reference.
    async fn subject_for(&self, account_id: Option<&str>, email: &str) -> Result<String, MarketingError> {
        if let Some(id) = account_id {
            return Ok(seldesk_domain::Subject::person(id).into_string());
        }
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
            .bind(email)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match id {
            Some(id) => seldesk_domain::Subject::person(&id).into_string(),
            None => format!("contact:{}", uuid::Uuid::now_v7().simple()),
        })
    }

    /// Registers someone for an open event and schedules the transfer of
    /// their four fields to the organiser and sponsors. Returns the private
    /// link's token.
    pub async fn register(
        &self,
        slug: &str,
        input: &RegistrationInput,
        account_id: Option<&str>,
    ) -> Result<(Registration, String), MarketingError> {
        let event = self.open_event(slug).await?;
        let c = contact(input)?;
        let taken: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM event_registrations WHERE event_id = $1 AND email = $2")
                .bind(&event.id)
                .bind(&c.email)
                .fetch_one(self.db.pool())
                .await?;
        if taken > 0 {
            return Err(MarketingError::Conflict(format!("{} is registered for this event already.", c.email)));
        }
        let subject = self.subject_for(account_id, &c.email).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO event_registrations ({REGISTRATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&id)
        .bind(&event.id)
        .bind(&subject)
        .bind(&c.name)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(&c.company)
        .bind(to_millis(self.now()))
        .execute(&mut *tx)
        .await?;
        self.audit
            .record_in(
                &mut tx,
                &Actor::System,
                "event.registered",
                Some(&subject),
                Some(&format!("event:{}", event.id)),
                serde_json::json!({ "recipients": event.recipient_names() }),
            )
            .await?;
        tx.commit().await?;
        self.enqueue_transfer("registration", &id).await?;
        let token = self.new_link(&subject, &c.email).await?;
        let sponsors = if event.sponsors.is_empty() {
            "no sponsors".to_string()
        } else {
            event.sponsors.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        };
        let text = format!(
            "Hello {name},\n\nYou are registered for {title} on {when} in {city}.\n\nAs the form said, your name, e-mail, phone and company go to the organiser, {organiser}, and to the sponsors ({sponsors}), to prepare the event. See what was shared with whom, and your marketing choice:\n{link}\n\n-- Seldesk\n",
            name = c.name,
            title = event.title,
            when = event.when(),
            city = event.city,
            organiser = event.organiser,
            link = self.url(&format!("/marketing/preferences/{token}")),
        );
        self.mailer
            .send(&OutgoingMail { to: c.email.clone(), subject: format!("Registered: {}", event.title), text })
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REGISTRATION_COLUMNS} FROM event_registrations WHERE id = $1"
        )))
        .bind(&id)
        .fetch_one(self.db.pool())
        .await?;
        Ok((registration_from_row(&row)?, token))
    }

    async fn enqueue_transfer(&self, kind: &str, id: &str) -> Result<(), MarketingError> {
        self.queue
            .enqueue(
                seldesk_jobs::NewJob::of(&crate::TransferJob { kind: kind.to_string(), id: id.to_string() })
                    .dedupe(format!("{JOB_TRANSFER}:{kind}:{id}"))
                    .max_attempts(10),
            )
            .await
            .map_err(|e| MarketingError::Internal(Fault::new("cannot schedule the transfer", e)))?;
        Ok(())
    }

    fn event_dir(&self, event_id: &str) -> PathBuf {
        self.config.transfers_dir.join("events").join(event_id)
    }

    fn partner_dir(&self, partner_id: &str) -> PathBuf {
        self.config.transfers_dir.join("partners").join(partner_id)
    }

    /// The job: hands a registration or referral to every recipient that
    /// does not have it yet; fails (to be retried) if one could not be reached.
    pub async fn run_transfer(&self, kind: &str, id: &str) -> Result<(), MarketingError> {
        match kind {
            "registration" => {
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {REGISTRATION_COLUMNS} FROM event_registrations WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?
                else {
                    return Ok(()); // erased meanwhile: nothing to hand over
                };
                let r = registration_from_row(&row)?;
                let event = self.event(&r.event_id).await?;
                let mut recipients = vec![Recipient {
                    key: "organiser".into(),
                    provider: "event_organiser",
                    name: event.organiser.clone(),
                    webhook: event.organiser_webhook.clone(),
                }];
                for s in &event.sponsors {
                    recipients.push(Recipient {
                        key: format!("sponsor-{}", slug(&s.name)),
                        provider: "event_sponsor",
                        name: s.name.clone(),
                        webhook: s.webhook.clone(),
                    });
                }
                let c = Contact { name: r.name, email: r.email, phone: r.phone, company: r.company };
                let dir = self.event_dir(&event.id);
                self.transfer(&format!("registration:{id}"), &r.subject, "events", &fields_of(&c), &recipients, |key| {
                    dir.join(key).join(format!("{id}.json"))
                })
                .await
            }
            "referral" => {
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {REFERRAL_COLUMNS} FROM partner_referrals r JOIN partners p ON p.id = r.partner_id WHERE r.id = $1"
                )))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?
                else {
                    return Ok(());
                };
                let r = referral_from_row(&row)?;
                let partner = self.partner(&r.partner_id).await?;
                let recipients = vec![Recipient {
                    key: "partner".into(),
                    provider: "partner",
                    name: partner.name.clone(),
                    webhook: partner.webhook.clone(),
                }];
                let c = Contact { name: r.name, email: r.email, phone: r.phone, company: r.company };
                let dir = self.partner_dir(&partner.id);
                self.transfer(
                    &format!("referral:{id}"),
                    &r.subject,
                    "partner_contact",
                    &fields_of(&c),
                    &recipients,
                    |_| dir.join(format!("{id}.json")),
                )
                .await
            }
            other => Err(MarketingError::Internal(Fault::msg(format!("unknown transfer kind `{other}`")))),
        }
    }

    async fn transfer(
        &self,
        source: &str,
        subject: &str,
        purpose: &str,
        fields: &BTreeMap<String, String>,
        recipients: &[Recipient],
        file_for: impl Fn(&str) -> PathBuf,
    ) -> Result<(), MarketingError> {
        let mut failures = Vec::new();
        for r in recipients {
            let done: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM marketing_transfers WHERE source = $1 AND recipient = $2")
                    .bind(source)
                    .bind(&r.key)
                    .fetch_one(self.db.pool())
                    .await?;
            if done > 0 {
                continue;
            }
            let d = Disclosure {
                recipient: r.provider.to_string(),
                recipient_name: Some(r.name.clone()),
                purpose: purpose.to_string(),
                subject: subject.to_string(),
                fields: fields.clone(),
            };
            let sent = match &r.webhook {
                Some(url) => {
                    let t = WebhookTransport::new(url.clone())?;
                    self.disclosures.send(&Actor::System, &d, &t).await
                }
                None => self.disclosures.send(&Actor::System, &d, &FileTransport { path: file_for(&r.key) }).await,
            };
            match sent {
                Ok(ledger) => {
                    sqlx::query(
                        "INSERT INTO marketing_transfers (source, recipient, ledger_id, at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(source)
                    .bind(&r.key)
                    .bind(ledger)
                    .bind(to_millis(self.now()))
                    .execute(self.db.pool())
                    .await?;
                }
                Err(e) => failures.push(format!("{}: {e}", r.name)),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(MarketingError::Internal(Fault::msg(format!("transfer not complete ({})", failures.join("; ")))))
        }
    }

    /// Registrations of an event handed over as files to one recipient, as
    /// CSV for staff to pass on (marketing role; audited).
    pub async fn transfer_file(&self, actor: &Actor, event_id: &str, key: &str) -> Result<String, MarketingError> {
        marketing_only(actor)?;
        let event = self.event(event_id).await?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(MarketingError::NotFound("No such recipient.".into()));
        }
        let dir = self.event_dir(&event.id).join(key);
        // The folder is read off the async workers: it may hold many files.
        let (out, n) = tokio::task::spawn_blocking(move || {
            let mut out = String::from("name,email,phone,company\n");
            let mut n = 0;
            if let Ok(entries) = std::fs::read_dir(&dir) {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                paths.sort();
                for p in paths {
                    let Ok(text) = std::fs::read_to_string(&p) else { continue };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                    let f = |k: &str| csv_cell(v["fields"][k].as_str().unwrap_or_default());
                    out.push_str(&format!(
                        "{},{},{},{}\n",
                        f("person.name"),
                        f("person.email"),
                        f("person.phone"),
                        f("person.company")
                    ));
                    n += 1;
                }
            }
            (out, n)
        })
        .await
        .map_err(|e| MarketingError::Internal(Fault::new("reading the transfer files stopped", e)))?;
        self.audit
            .record(
                actor,
                "event.transfer_file_read",
                None,
                Some(&format!("event:{}", event.id)),
                serde_json::json!({ "recipient": key, "rows": n }),
            )
            .await?;
        Ok(out)
    }

    /// File keys of an event's recipients without a webhook.
    pub fn file_recipients(event: &Event) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if event.organiser_webhook.is_none() {
            out.push(("organiser".to_string(), event.organiser.clone()));
        }
        for s in &event.sponsors {
            if s.webhook.is_none() {
                out.push((format!("sponsor-{}", slug(&s.name)), s.name.clone()));
            }
        }
        out
    }

    // ----- partners -----

    /// Adds an official partner.
    pub async fn create_partner(&self, actor: &Actor, input: &PartnerInput) -> Result<Partner, MarketingError> {
        use seldesk_accounts::input;
        marketing_only(actor)?;
        let name = checked(input::text("name", "Name", &input.name, 150, true))?.unwrap_or_default();
        let country = country_code(&input.country)?;
        let website = webhook("website", &input.website)?
            .ok_or_else(|| MarketingError::invalid("website", "A partner needs a website people can check."))?;
        let hook = webhook("webhook", &input.webhook)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        sqlx::query(
            "INSERT INTO partners (id, name, country, website, webhook, active, created_at) VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(&id)
        .bind(&name)
        .bind(&country)
        .bind(&website)
        .bind(&hook)
        .bind(to_millis(self.now()))
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(
                actor,
                "partner.created",
                None,
                Some(&format!("partner:{id}")),
                serde_json::json!({ "country": country }),
            )
            .await?;
        self.partner(&id).await
    }

    /// Stops or resumes referrals to a partner.
    pub async fn set_partner_active(&self, actor: &Actor, id: &str, active: bool) -> Result<Partner, MarketingError> {
        marketing_only(actor)?;
        self.partner(id).await?;
        sqlx::query("UPDATE partners SET active = $1 WHERE id = $2")
            .bind(i64::from(active))
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .record(
                actor,
                "partner.active",
                None,
                Some(&format!("partner:{id}")),
                serde_json::json!({ "active": active }),
            )
            .await?;
        self.partner(id).await
    }

    pub async fn partner(&self, id: &str) -> Result<Partner, MarketingError> {
        let row = sqlx::query("SELECT id, name, country, website, webhook, active FROM partners WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| MarketingError::NotFound("No such partner.".into()))?;
        Ok(partner_from_row(&row)?)
    }

    /// The partner directory: active partners by country (everyone may read it).
    pub async fn partners(&self, only_active: bool) -> Result<Vec<Partner>, MarketingError> {
        let sql = if only_active {
            "SELECT id, name, country, website, webhook, active FROM partners WHERE active = 1 ORDER BY country, name"
        } else {
            "SELECT id, name, country, website, webhook, active FROM partners ORDER BY country, name"
        };
        let rows = sqlx::query(sql).fetch_all(self.db.pool()).await?;
        rows.iter().map(partner_from_row).collect::<Result<_, _>>().map_err(Into::into)
    }

    /// "Have a partner contact me": picks an official partner of the person's
    /// country (the one with the fewest referrals), records the request and
    /// schedules the transfer. Returns the referral and the private link's token.
    pub async fn refer(
        &self,
        input: &RegistrationInput,
        account_id: Option<&str>,
    ) -> Result<(Referral, String), MarketingError> {
        let c = contact(input)?;
        let country = country_code(&input.country)?;
        let partner_id: Option<String> = sqlx::query_scalar(
            "SELECT p.id FROM partners p LEFT JOIN partner_referrals r ON r.partner_id = p.id
             WHERE p.active = 1 AND p.country = $1 GROUP BY p.id ORDER BY COUNT(r.id), p.id LIMIT 1",
        )
        .bind(&country)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(partner_id) = partner_id else {
            return Err(MarketingError::invalid(
                "country",
                format!(
                    "We have no official partner in {} yet, so nothing was sent to anyone. Our own team can help: write to us at /contact.",
                    seldesk_domain::country::name(&country).unwrap_or(&country)
                ),
            ));
        };
        let subject = self.subject_for(account_id, &c.email).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO partner_referrals (id, partner_id, subject, name, email, phone, company, country, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&partner_id)
        .bind(&subject)
        .bind(&c.name)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(&c.company)
        .bind(&country)
        .bind(to_millis(self.now()))
        .execute(&mut *tx)
        .await?;
        self.audit
            .record_in(
                &mut tx,
                &Actor::System,
                "partner.referral",
                Some(&subject),
                Some(&format!("partner:{partner_id}")),
                serde_json::json!({}),
            )
            .await?;
        tx.commit().await?;
        self.enqueue_transfer("referral", &id).await?;
        let partner = self.partner(&partner_id).await?;
        let token = self.new_link(&subject, &c.email).await?;
        let text = format!(
            "Hello {},\n\nAs you asked, {} ({}), our official partner in {}, will contact you. They received your name, e-mail, phone and company, and nothing else.\n\nSee what was shared with whom, and your marketing choice:\n{}\n\n-- Seldesk\n",
            c.name,
            partner.name,
            partner.website,
            partner.country_name(),
            self.url(&format!("/marketing/preferences/{token}")),
        );
        self.mailer
            .send(&OutgoingMail { to: c.email.clone(), subject: format!("{} will contact you", partner.name), text })
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERRAL_COLUMNS} FROM partner_referrals r JOIN partners p ON p.id = r.partner_id WHERE r.id = $1"
        )))
        .bind(&id)
        .fetch_one(self.db.pool())
        .await?;
        Ok((referral_from_row(&row)?, token))
    }

    /// A person's registrations with their events.
    pub async fn registrations_of(&self, subject: &str) -> Result<Vec<(Registration, Event)>, MarketingError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REGISTRATION_COLUMNS} FROM event_registrations WHERE subject = $1 ORDER BY created_at"
        )))
        .bind(subject)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let reg = registration_from_row(r)?;
            let event = self.event(&reg.event_id).await?;
            out.push((reg, event));
        }
        Ok(out)
    }

    /// What was handed to whom about a person (the disclosure ledger).
    pub async fn transfers_of(&self, subject: &str) -> Result<Vec<seldesk_privacy::DisclosureRecord>, MarketingError> {
        Ok(self.disclosures.for_subject(subject).await?)
    }

    /// A person's partner referrals.
    pub async fn referrals_of(&self, subject: &str) -> Result<Vec<Referral>, MarketingError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REFERRAL_COLUMNS} FROM partner_referrals r JOIN partners p ON p.id = r.partner_id WHERE r.subject = $1 ORDER BY r.created_at"
        )))
        .bind(subject)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(referral_from_row).collect::<Result<_, _>>().map_err(Into::into)
    }

    /// Erases a registration and our transfer files of it.
    pub(crate) async fn erase_registration(&self, id: &str) -> Result<u64, MarketingError> {
        self.erase_handed_over("event_registrations", "event_id", "registration", id, |m, event| m.event_dir(event))
            .await
    }

    /// Erases a referral and our transfer file of it.
    pub(crate) async fn erase_referral(&self, id: &str) -> Result<u64, MarketingError> {
        self.erase_handed_over("partner_referrals", "partner_id", "referral", id, |m, partner| m.partner_dir(partner))
            .await
    }

    /// Erases a record that was handed over (`table` is one of two fixed
    /// names), its transfer marks and our transfer files; `dir` gives the
    /// folder of the files from the record's `owner` column.
    async fn erase_handed_over(
        &self,
        table: &'static str,
        owner: &'static str,
        kind: &str,
        id: &str,
        dir: impl Fn(&Self, &str) -> PathBuf,
    ) -> Result<u64, MarketingError> {
        let found: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {owner} FROM {table} WHERE id = $1")))
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(found) = found else { return Ok(0) };
        let (folder, name) = (dir(self, &found), format!("{id}.json"));
        tokio::task::spawn_blocking(move || remove_files_named(&folder, &name))
            .await
            .map_err(|e| MarketingError::Internal(Fault::new("erasing the handed-over files stopped", e)))??;
        sqlx::query("DELETE FROM marketing_transfers WHERE source = $1")
            .bind(format!("{kind}:{id}"))
            .execute(self.db.pool())
            .await?;
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE id = $1")))
            .bind(id)
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }
}

/// Removes `name` from `dir` and from each of its direct subfolders.
fn remove_files_named(dir: &Path, name: &str) -> Result<(), MarketingError> {
    let remove = |p: PathBuf| match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MarketingError::Internal(Fault::new(format!("cannot erase {}", p.display()), e))),
    };
    remove(dir.join(name))?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            if e.path().is_dir() {
                remove(e.path().join(name))?;
            }
        }
    }
    Ok(())
}

fn csv_cell(v: &str) -> String {
    // Cells that a spreadsheet would run as a formula are quoted with a lead apostrophe.
    // A phone number (+91 22 …) is left alone.
    let phone_like = v.len() > 1 && v[1..].chars().all(|c| c.is_ascii_digit() || " ()-.".contains(c));
    let v = if v.starts_with(['=', '@']) || (v.starts_with(['+', '-']) && !phone_like) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_csv_cells_are_safe() {
        assert_eq!(slug("Acme Events Ltd."), "acme-events-ltd");
        assert_eq!(slug("../etc"), "etc");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("=cmd()"), "'=cmd()");
        assert_eq!(csv_cell("+cmd|' /C calc'!A0"), "'+cmd|' /C calc'!A0");
        assert_eq!(csv_cell("+91 22 5555 0199"), "+91 22 5555 0199");
    }
}
