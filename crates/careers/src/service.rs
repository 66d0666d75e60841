//! The careers service: postings, applications and the pipeline.

use seldesk_domain::Fault;
use std::collections::BTreeMap;
use std::sync::Arc;

use seldesk_accounts::{Mailer, OutgoingMail, input, secret};
use seldesk_blob::SealedBlobs;
use seldesk_domain::policy::OfferFieldKind;
use seldesk_domain::{Actor, Clock, Policy, Role};
use seldesk_privacy::{AuditLog, ErasureLog, ErasureReason};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::{CareerError, cv};

/// Where a posting stands; only open postings are public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostingStatus {
    Draft,
    Open,
    Closed,
}

impl PostingStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(Self::Draft),
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A job posting.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Posting {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub location: String,
    pub employment_type: String,
    pub description: String,
    pub status: PostingStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
}

/// What HR writes for a posting.
#[derive(Debug, Clone, Default)]
pub struct PostingInput {
    pub title: String,
    pub location: String,
    pub employment_type: String,
    pub description: String,
}

/// Employment types a posting may name.
pub const EMPLOYMENT_TYPES: &[&str] = &["Full-time", "Part-time", "Internship", "Fixed-term contract"];

/// A stage of the hiring pipeline (JOB-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    New,
    Screening,
    Interview,
    Offer,
    Hired,
    Rejected,
    Withdrawn,
}

impl Stage {
    pub const ALL: [Stage; 7] =
        [Stage::New, Stage::Screening, Stage::Interview, Stage::Offer, Stage::Hired, Stage::Rejected, Stage::Withdrawn];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Screening => "screening",
            Stage::Interview => "interview",
            Stage::Offer => "offer",
            Stage::Hired => "hired",
            Stage::Rejected => "rejected",
            Stage::Withdrawn => "withdrawn",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Stage::New => "New",
            Stage::Screening => "Screening",
            Stage::Interview => "Interview",
            Stage::Offer => "Offer",
            Stage::Hired => "Hired",
            Stage::Rejected => "Not selected",
            Stage::Withdrawn => "Withdrawn",
        }
    }
    /// Whether the process is over.
    pub fn is_closed(self) -> bool {
        matches!(self, Stage::Hired | Stage::Rejected | Stage::Withdrawn)
    }
    /// Where HR may move an application from here: the next step, or a rejection.
    pub fn next_for_hr(self) -> Vec<Stage> {
        match self {
            Stage::New => vec![Stage::Screening, Stage::Rejected],
            Stage::Screening => vec![Stage::Interview, Stage::Rejected],
            Stage::Interview => vec![Stage::Offer, Stage::Rejected],
            Stage::Offer => vec![Stage::Hired, Stage::Rejected],
            _ => vec![],
        }
    }
}

/// How an application reached us (JOB-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "agency", rename_all = "snake_case")]
pub enum Source {
    Website,
    Agency(String),
}

/// A new application, from the form, the API, or HR for an agency.
#[derive(Debug, Clone, Default)]
pub struct NewApplication {
    pub posting_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub letter: String,
    pub shared: String,
    /// (file name as sent, bytes)
    pub cv: Option<(String, Vec<u8>)>,
    /// The applicant asks us not to keep the application after the process (JOB-6).
    pub object_to_keeping: bool,
    /// An employment agency's name when HR enters the application for it.
    pub agency: Option<String>,
}

/// What the applicant may correct.
#[derive(Debug, Clone, Default)]
pub struct ApplicationUpdate {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub letter: String,
    pub shared: String,
}

/// The CV as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CvFile {
    pub name: String,
    pub content_type: String,
    pub size: i64,
}

/// A note HR wrote at a stage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Note {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub stage: String,
    pub body: String,
}

/// Everything held about an application.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Application {
    pub id: String,
    pub posting_id: String,
    pub posting_title: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub letter: String,
    pub shared: String,
    pub source: Source,
    pub cv: Option<CvFile>,
    pub stage: Stage,
    pub objected: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub notes: Vec<Note>,
    /// Only from the offer stage (JOB-2).
    pub offer: Option<BTreeMap<String, String>>,
    /// When the process ends without a hire, until when we keep it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub kept_until: Option<OffsetDateTime>,
    #[serde(skip)]
    cv_key: Option<String>,
}

/// A line of HR's list.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationSummary {
    pub id: String,
    pub posting_title: String,
    pub name: String,
    pub stage: Stage,
    pub source: Source,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Someone we hired (JOB-7).
#[derive(Debug, Clone, Serialize)]
pub struct Employee {
    pub id: String,
    pub name: String,
    pub email: String,
    pub country: String,
    pub job_title: String,
    #[serde(with = "time::serde::rfc3339")]
    pub hired_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub contract_end: Option<OffsetDateTime>,
    /// When the record is erased, once the contract end is known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub erase_after: Option<OffsetDateTime>,
}

/// The careers service.
#[derive(Clone)]
pub struct Careers {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: Arc<Policy>,
    audit: AuditLog,
    erasure_log: ErasureLog,
    blobs: SealedBlobs,
    mailer: Mailer,
    public_url: String,
}

const APP_COLUMNS: &str = "a.id, a.posting_id, p.title AS posting_title, a.name, a.email, a.phone, a.letter, a.shared, \
     a.source, a.agency, a.cv_key, a.cv_name, a.cv_type, a.cv_size, a.stage, a.objected, a.created_at, a.updated_at, a.closed_at";

fn hr_only(actor: &Actor) -> Result<(), CareerError> {
    if actor.has_any_role(&[Role::Hr]) {
        Ok(())
    } else {
        Err(CareerError::Forbidden("Only the hr role works with postings and applications.".into()))
    }
}

fn subject(id: &str) -> String {
    seldesk_domain::Subject::applicant(id).into_string()
}

/// Erases an application's rows and CV file; returns rows removed (0 or 1).
pub(crate) async fn erase_application_rows(db: &Db, blobs: &SealedBlobs, id: &str) -> Result<u64, CareerError> {
    let cv: Option<Option<String>> = sqlx::query_scalar("SELECT cv_key FROM job_applications WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    if let Some(Some(key)) = &cv {
        blobs.delete(key).await?;
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM job_offer_data WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM job_application_notes WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
    let n = sqlx::query("DELETE FROM job_applications WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(n)
}

fn slugify(title: &str) -> String {
    let mut s = String::new();
    for ch in title.chars() {
        if ch.is_ascii_alphanumeric() {
            s.push(ch.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-').chars().take(60).collect::<String>();
    if s.is_empty() { "job".into() } else { s }
}

impl Careers {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        audit: AuditLog,
        erasure_log: ErasureLog,
        blobs: SealedBlobs,
        mailer: Mailer,
        public_url: String,
    ) -> Self {
        Self { db, clock, policy, audit, erasure_log, blobs, mailer, public_url }
    }

    /// Records something the applicant did through their private link.
    async fn audit_applicant(&self, id: &str, action: &str) -> Result<(), CareerError> {
        let who = subject(id);
        self.audit.record(&Actor::Person { id: who.clone() }, action, Some(&who), None, serde_json::json!({})).await?;
        Ok(())
    }

    pub fn blobs(&self) -> &SealedBlobs {
        &self.blobs
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    // ----- postings -----

    fn posting_row(r: &sqlx::any::AnyRow) -> Result<Posting, CareerError> {
        Ok(Posting {
            id: r.try_get("id")?,
            slug: r.try_get("slug")?,
            title: r.try_get("title")?,
            location: r.try_get("location")?,
            employment_type: r.try_get("employment_type")?,
            description: r.try_get("description")?,
            status: PostingStatus::parse(&r.try_get::<String, _>("status")?).unwrap_or(PostingStatus::Draft),
            published_at: r.try_get::<Option<i64>, _>("published_at")?.map(from_millis),
        })
    }

    fn check_posting(input: &PostingInput) -> Result<PostingInput, CareerError> {
        let title = input::text("title", "Title", &input.title, 120, true)?.unwrap_or_default();
        let location = input::text("location", "Location", &input.location, 120, true)?.unwrap_or_default();
        let employment_type = input.employment_type.trim().to_string();
        if !EMPLOYMENT_TYPES.contains(&employment_type.as_str()) {
            return Err(CareerError::invalid(
                "employment_type",
                format!("Choose an employment type: {}.", EMPLOYMENT_TYPES.join(", ")),
            ));
        }
        let description =
            input::text("description", "Description", &input.description, 20_000, true)?.unwrap_or_default();
        Ok(PostingInput { title, location, employment_type, description })
    }

    /// Creates a draft posting.
    pub async fn create_posting(&self, actor: &Actor, input: &PostingInput) -> Result<Posting, CareerError> {
        hr_only(actor)?;
        let p = Self::check_posting(input)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let base = slugify(&p.title);
        let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_postings WHERE slug = $1 OR slug LIKE $2")
            .bind(&base)
            .bind(format!("{base}-%"))
            .fetch_one(self.db.pool())
            .await?;
        let slug = if taken == 0 { base } else { format!("{base}-{}", &id[id.len() - 6..]) };
        let now = to_millis(self.clock.now());
        sqlx::query(
            "INSERT INTO job_postings (id, slug, title, location, employment_type, description, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $7)",
        )
        .bind(&id)
        .bind(&slug)
        .bind(&p.title)
        .bind(&p.location)
        .bind(&p.employment_type)
        .bind(&p.description)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(actor, "careers.posting_created", None, Some(&format!("posting:{id}")), serde_json::json!({}))
            .await?;
        self.posting(&id).await
    }

    pub async fn update_posting(&self, actor: &Actor, id: &str, input: &PostingInput) -> Result<Posting, CareerError> {
        hr_only(actor)?;
        let p = Self::check_posting(input)?;
        let n = sqlx::query(
            "UPDATE job_postings SET title = $1, location = $2, employment_type = $3, description = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&p.title)
        .bind(&p.location)
        .bind(&p.employment_type)
        .bind(&p.description)
        .bind(to_millis(self.clock.now()))
        .bind(id)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CareerError::NotFound("No such posting.".into()));
        }
        self.audit
            .record(actor, "careers.posting_updated", None, Some(&format!("posting:{id}")), serde_json::json!({}))
            .await?;
        self.posting(id).await
    }

    /// Publishes (open), closes or returns a posting to draft.
    pub async fn set_posting_status(
        &self,
        actor: &Actor,
        id: &str,
        status: PostingStatus,
    ) -> Result<Posting, CareerError> {
        hr_only(actor)?;
        let now = to_millis(self.clock.now());
        let n = sqlx::query(
            "UPDATE job_postings SET status = $1, updated_at = $2,
                 published_at = CASE WHEN $1 = 'open' AND published_at IS NULL THEN $2 ELSE published_at END
             WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(CareerError::NotFound("No such posting.".into()));
        }
        self.audit
            .record(
                actor,
                "careers.posting_status",
                None,
                Some(&format!("posting:{id}")),
                serde_json::json!({ "status": status.as_str() }),
            )
            .await?;
        self.posting(id).await
    }

    pub async fn posting(&self, id: &str) -> Result<Posting, CareerError> {
        let r = sqlx::query("SELECT * FROM job_postings WHERE id = $1").bind(id).fetch_optional(self.db.pool()).await?;
        r.as_ref().map(Self::posting_row).transpose()?.ok_or_else(|| CareerError::NotFound("No such posting.".into()))
    }

    /// An open posting by its address, for the public page.
    pub async fn open_posting(&self, slug: &str) -> Result<Posting, CareerError> {
        let r = sqlx::query("SELECT * FROM job_postings WHERE slug = $1 AND status = 'open'")
            .bind(slug)
            .fetch_optional(self.db.pool())
            .await?;
        r.as_ref()
            .map(Self::posting_row)
            .transpose()?
            .ok_or_else(|| CareerError::NotFound("This job is not open (any more). See our other openings.".into()))
    }

    pub async fn open_postings(&self) -> Result<Vec<Posting>, CareerError> {
        let rows = sqlx::query("SELECT * FROM job_postings WHERE status = 'open' ORDER BY published_at DESC")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(Self::posting_row).collect()
    }

    pub async fn all_postings(&self, actor: &Actor) -> Result<Vec<Posting>, CareerError> {
        hr_only(actor)?;
        let rows = sqlx::query("SELECT * FROM job_postings ORDER BY created_at DESC").fetch_all(self.db.pool()).await?;
        rows.iter().map(Self::posting_row).collect()
    }

    // ----- applications -----

    /// Receives an application (JOB-1): checks every field (no card numbers
    /// in free text), the CV by its content, stores the CV encrypted, and
    /// e-mails the applicant a private link. Returns the application and the
    /// link's token.
    pub async fn apply(&self, actor: &Actor, a: &NewApplication) -> Result<(Application, String), CareerError> {
        let posting = self.posting(&a.posting_id).await?;
        let agency = match &a.agency {
            Some(agency) => {
                hr_only(actor)?;
                Some(input::text("agency", "Agency", agency, 120, true)?.unwrap_or_default())
            }
            None => {
                if posting.status != PostingStatus::Open {
                    return Err(CareerError::NotFound(
                        "This job is not open (any more). See our other openings.".into(),
                    ));
                }
                None
            }
        };
        let name = input::text("name", "Name", &a.name, 120, true)?.unwrap_or_default();
        let email = input::email(&a.email)?;
        let phone = input::phone(&a.phone)?
            .ok_or_else(|| CareerError::invalid("phone", "Phone is required, so that we can call you."))?;
        let letter = input::text("letter", "Letter of introduction", &a.letter, 20_000, true)?.unwrap_or_default();
        let shared =
            input::text("shared", "What else you want us to know", &a.shared, 10_000, false)?.unwrap_or_default();
        let cv = match &a.cv {
            Some((file_name, bytes)) => Some((cv::check(file_name, bytes)?, bytes)),
            None if agency.is_none() => {
                return Err(CareerError::invalid("cv", "Attach your CV (PDF, DOCX or ODT)."));
            }
            None => None,
        };
        let id = uuid::Uuid::now_v7().simple().to_string();
        let token = secret::token().map_err(CareerError::from)?;
        let cv_key = format!("cv/{id}");
        if let Some(((_, _), bytes)) = &cv {
            self.blobs.put(&cv_key, bytes).await?;
        }
        let now = to_millis(self.clock.now());
        let (cv_name, cv_type, cv_size) = match &cv {
            Some(((kind, name), bytes)) => (Some(name.clone()), Some(kind.content_type()), Some(bytes.len() as i64)),
            None => (None, None, None),
        };
        let inserted = sqlx::query(
            "INSERT INTO job_applications (id, posting_id, token_hash, name, email, phone, letter, shared, source, agency,
                 cv_key, cv_name, cv_type, cv_size, stage, objected, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'new', $15, $16, $16)",
        )
        .bind(&id)
        .bind(&posting.id)
        .bind(secret::token_hash(&token))
        .bind(&name)
        .bind(&email)
        .bind(&phone)
        .bind(&letter)
        .bind(&shared)
        .bind(if agency.is_some() { "agency" } else { "website" })
        .bind(&agency)
        .bind(cv.as_ref().map(|_| cv_key.clone()))
        .bind(cv_name)
        .bind(cv_type)
        .bind(cv_size)
        .bind(i64::from(a.object_to_keeping))
        .bind(now)
        .execute(self.db.pool())
        .await;
        if let Err(e) = inserted {
            // Never leave a CV without its application.
            let _ = self.blobs.delete(&cv_key).await;
            return Err(e.into());
        }
        self.audit
            .record(
                actor,
                "careers.application_received",
                Some(&subject(&id)),
                Some(&format!("posting:{}", posting.id)),
                serde_json::json!({ "source": if agency.is_some() { "agency" } else { "website" } }),
            )
            .await?;
        let keep = self.policy.retention("job_application").map(|r| r.keep.to_string()).unwrap_or_default();
        let link = self.link(&token);
        self.mailer
            .send(&OutgoingMail {
                to: email.clone(),
                subject: format!("We received your application: {}", posting.title),
                text: format!(
                    "Hello {name},\n\nThank you for applying for \"{}\" at {}. We will get back to you.\n\n\
                     Your application, privately: {link}\n\
                     There you can see everything we hold about your application, correct it, withdraw it, \
                     or have it deleted at once.\n\n\
                     If we do not hire you, we may keep your application for up to {keep} to contact you about \
                     new openings. If you would rather we did not, say so from the same link with one click.\n\n\
                     Keep this link to yourself: anyone who has it can see your application.\n",
                    posting.title, self.policy.organisation.name,
                ),
            })
            .await
            .map_err(CareerError::from)?;
        Ok((self.load(&id).await?, token))
    }

    /// The applicant's private address.
    pub fn link(&self, token: &str) -> String {
        format!("{}/careers/application/{token}", self.public_url.trim_end_matches('/'))
    }

    async fn id_by_token(&self, token: &str) -> Result<String, CareerError> {
        let gone = || {
            CareerError::NotFound(
                "No application is held under this link: it was deleted, or the link is not complete.".into(),
            )
        };
        if token.len() < 20 || token.len() > 100 {
            return Err(gone());
        }
        sqlx::query_scalar("SELECT id FROM job_applications WHERE token_hash = $1")
            .bind(secret::token_hash(token))
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(gone)
    }

    async fn load(&self, id: &str) -> Result<Application, CareerError> {
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM job_applications a JOIN job_postings p ON p.id = a.posting_id WHERE a.id = $1"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| CareerError::NotFound("No such application.".into()))?;
        let notes =
            sqlx::query("SELECT at, stage, body FROM job_application_notes WHERE application_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?
                .iter()
                .map(|n| {
                    Ok(Note { at: from_millis(n.try_get("at")?), stage: n.try_get("stage")?, body: n.try_get("body")? })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let offer: Option<String> = sqlx::query_scalar("SELECT fields FROM job_offer_data WHERE application_id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let stage = Stage::parse(&r.try_get::<String, _>("stage")?).unwrap_or(Stage::New);
        let objected = r.try_get::<i64, _>("objected")? != 0;
        let closed_at = r.try_get::<Option<i64>, _>("closed_at")?.map(from_millis);
        let category = if objected { "job_application_objected" } else { "job_application" };
        let kept_until = match (closed_at, self.policy.retention(category)) {
            (Some(c), Some(rule)) if stage != Stage::Hired => Some(rule.keep.after(c)),
            _ => None,
        };
        let cv_key: Option<String> = r.try_get("cv_key")?;
        Ok(Application {
            id: r.try_get("id")?,
            posting_id: r.try_get("posting_id")?,
            posting_title: r.try_get("posting_title")?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            phone: r.try_get("phone")?,
            letter: r.try_get("letter")?,
            shared: r.try_get("shared")?,
            source: match r.try_get::<Option<String>, _>("agency")? {
                Some(a) => Source::Agency(a),
                None => Source::Website,
            },
            cv: match &cv_key {
                Some(_) => Some(CvFile {
                    name: r.try_get::<Option<String>, _>("cv_name")?.unwrap_or_default(),
                    content_type: r.try_get::<Option<String>, _>("cv_type")?.unwrap_or_default(),
                    size: r.try_get::<Option<i64>, _>("cv_size")?.unwrap_or_default(),
                }),
                None => None,
            },
            stage,
            objected,
            created_at: from_millis(r.try_get("created_at")?),
            updated_at: from_millis(r.try_get("updated_at")?),
            closed_at,
            notes,
            offer: offer.and_then(|f| serde_json::from_str(&f).ok()),
            kept_until,
            cv_key,
        })
    }

    /// The applicant's own view through the private link (JOB-5).
    pub async fn by_token(&self, token: &str) -> Result<Application, CareerError> {
        let id = self.id_by_token(token).await?;
        self.load(&id).await
    }

    /// When HR read this application: dates only, for the applicant's page.
    pub async fn reads(&self, application: &Application) -> Result<Vec<OffsetDateTime>, CareerError> {
        Ok(self
            .audit
            .about(&subject(&application.id))
            .await?
            .into_iter()
            .filter(|e| e.action == "careers.application_viewed")
            .map(|e| e.at)
            .collect())
    }

    /// HR reads an application; every read is audited (JOB-4).
    pub async fn view(&self, actor: &Actor, id: &str) -> Result<Application, CareerError> {
        hr_only(actor)?;
        let a = self.load(id).await?;
        self.audit.record(actor, "careers.application_viewed", Some(&subject(id)), None, serde_json::json!({})).await?;
        Ok(a)
    }

    /// HR's list of applications (names and stages); the listing is audited too.
    pub async fn list(&self, actor: &Actor, stage: Option<Stage>) -> Result<Vec<ApplicationSummary>, CareerError> {
        hr_only(actor)?;
        let rows = sqlx::query(
            "SELECT a.id, p.title AS posting_title, a.name, a.stage, a.agency, a.created_at
             FROM job_applications a JOIN job_postings p ON p.id = a.posting_id
             WHERE ($1 = '' OR a.stage = $1) ORDER BY a.created_at DESC",
        )
        .bind(stage.map(Stage::as_str).unwrap_or(""))
        .fetch_all(self.db.pool())
        .await?;
        let list = rows
            .iter()
            .map(|r| {
                Ok(ApplicationSummary {
                    id: r.try_get("id")?,
                    posting_title: r.try_get("posting_title")?,
                    name: r.try_get("name")?,
                    stage: Stage::parse(&r.try_get::<String, _>("stage")?).unwrap_or(Stage::New),
                    source: match r.try_get::<Option<String>, _>("agency")? {
                        Some(a) => Source::Agency(a),
                        None => Source::Website,
                    },
                    created_at: from_millis(r.try_get("created_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        self.audit
            .record(actor, "careers.applications_listed", None, None, serde_json::json!({ "count": list.len() }))
            .await?;
        Ok(list)
    }

    /// The CV's bytes for the applicant (by token) or HR (audited).
    pub async fn cv(&self, application: &Application) -> Result<(CvFile, Vec<u8>), CareerError> {
        let (Some(file), Some(key)) = (&application.cv, &application.cv_key) else {
            return Err(CareerError::NotFound("This application has no CV.".into()));
        };
        let bytes =
            self.blobs.get(key).await?.ok_or_else(|| CareerError::NotFound("The CV file is missing.".into()))?;
        Ok((file.clone(), bytes))
    }

    /// Moves an application along the pipeline, with an optional note.
    pub async fn move_stage(&self, actor: &Actor, id: &str, to: Stage, note: &str) -> Result<Application, CareerError> {
        hr_only(actor)?;
        let a = self.load(id).await?;
        if !a.stage.next_for_hr().contains(&to) {
            let allowed: Vec<&str> = a.stage.next_for_hr().iter().map(|s| s.label()).collect();
            return Err(CareerError::Conflict(if allowed.is_empty() {
                format!("The process has ended ({}); the stage can no longer change.", a.stage.label())
            } else {
                format!("From {} the application can move to: {}.", a.stage.label(), allowed.join(", "))
            }));
        }
        if to == Stage::Hired {
            return Err(CareerError::Conflict(
                "Hire from the application's page, giving the country of employment.".into(),
            ));
        }
        let note = input::text("note", "Note", note, 5_000, false)?;
        let now = to_millis(self.clock.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE job_applications SET stage = $1, updated_at = $2, closed_at = CASE WHEN $3 = 1 THEN $2 ELSE closed_at END WHERE id = $4",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(i64::from(to.is_closed()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(body) = &note {
            sqlx::query("INSERT INTO job_application_notes (application_id, at, staff_id, stage, body) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(now)
                .bind(actor.reference())
                .bind(to.as_str())
                .bind(body)
                .execute(&mut *tx)
                .await?;
        }
        // A rejected offer no longer needs the contract data (JOB-2).
        if to == Stage::Rejected {
            sqlx::query("DELETE FROM job_offer_data WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.audit
            .record(
                actor,
                "careers.stage_changed",
                Some(&subject(id)),
                None,
                serde_json::json!({ "from": a.stage.as_str(), "to": to.as_str() }),
            )
            .await?;
        if to == Stage::Offer {
            self.mail_applicant(&a, "An offer, and what we need for the contract", &format!(
                "Hello {},\n\nWe would like to offer you the position \"{}\". To prepare the contract we need a few more \
                 details; please give them on your application's page (the private link from our first e-mail).\n",
                a.name, a.posting_title
            ))
            .await?;
        }
        self.load(id).await
    }

    async fn mail_applicant(&self, a: &Application, subject_line: &str, text: &str) -> Result<(), CareerError> {
        self.mailer
            .send(&OutgoingMail { to: a.email.clone(), subject: subject_line.to_string(), text: text.to_string() })
            .await
            .map_err(CareerError::from)
    }

    /// The applicant corrects their details (JOB-5).
    pub async fn correct(&self, token: &str, u: &ApplicationUpdate) -> Result<Application, CareerError> {
        let id = self.id_by_token(token).await?;
        let name = input::text("name", "Name", &u.name, 120, true)?.unwrap_or_default();
        let email = input::email(&u.email)?;
        let phone = input::phone(&u.phone)?
            .ok_or_else(|| CareerError::invalid("phone", "Phone is required, so that we can call you."))?;
        let letter = input::text("letter", "Letter of introduction", &u.letter, 20_000, true)?.unwrap_or_default();
        let shared =
            input::text("shared", "What else you want us to know", &u.shared, 10_000, false)?.unwrap_or_default();
        sqlx::query(
            "UPDATE job_applications SET name = $1, email = $2, phone = $3, letter = $4, shared = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&name)
        .bind(&email)
        .bind(&phone)
        .bind(&letter)
        .bind(&shared)
        .bind(to_millis(self.clock.now()))
        .bind(&id)
        .execute(self.db.pool())
        .await?;
        self.audit_applicant(&id, "careers.application_corrected").await?;
        self.load(&id).await
    }

    /// The applicant withdraws; the process ends.
    pub async fn withdraw(&self, token: &str) -> Result<Application, CareerError> {
        let id = self.id_by_token(token).await?;
        let a = self.load(&id).await?;
        if a.stage.is_closed() {
            return Err(CareerError::Conflict(format!("The process has already ended ({}).", a.stage.label())));
        }
        let now = to_millis(self.clock.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE job_applications SET stage = 'withdrawn', closed_at = $1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM job_offer_data WHERE application_id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.audit_applicant(&id, "careers.application_withdrawn").await?;
        self.load(&id).await
    }

    /// The applicant asks us not to keep the application for future openings
    /// (JOB-6): it is erased shortly after the process ends (policy file).
    pub async fn object(&self, token: &str) -> Result<Application, CareerError> {
        let id = self.id_by_token(token).await?;
        sqlx::query("UPDATE job_applications SET objected = 1, updated_at = $1 WHERE id = $2")
            .bind(to_millis(self.clock.now()))
            .bind(&id)
            .execute(self.db.pool())
            .await?;
        self.audit_applicant(&id, "careers.application_objection").await?;
        self.load(&id).await
    }

    /// Erases an application at once, CV included, and logs it (JOB-5): by
    /// the applicant through the link.
    pub async fn erase_by_token(&self, token: &str) -> Result<(), CareerError> {
        let id = self.id_by_token(token).await?;
        self.erase(&Actor::Person { id: subject(&id) }, &id, None).await
    }

    /// HR erases an application on the applicant's request through the
    /// Helpdesk; the ticket or reason is recorded.
    pub async fn erase_by_staff(&self, actor: &Actor, id: &str, reason: &str) -> Result<(), CareerError> {
        hr_only(actor)?;
        let reason = input::text("reason", "Reason (ticket)", reason, 500, true)?.unwrap_or_default();
        self.load(id).await?;
        self.erase(actor, id, Some(&reason)).await
    }

    /// Erases every application made with this e-mail address (an account
    /// erasure); a hired applicant's record is an employee record, kept for
    /// employment law. Returns (applications erased, employee records kept).
    pub async fn erase_by_email(&self, email: &str) -> Result<(u64, u64), CareerError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM job_applications WHERE LOWER(email) = $1")
            .bind(email.trim().to_lowercase())
            .fetch_all(self.db.pool())
            .await?;
        let (mut erased, mut kept) = (0, 0);
        for id in ids {
            match self.erase(&Actor::System, &id, Some("account erased")).await {
                Ok(()) => erased += 1,
                Err(CareerError::Conflict(_)) => kept += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((erased, kept))
    }

    async fn erase(&self, actor: &Actor, id: &str, reason: Option<&str>) -> Result<(), CareerError> {
        let a = self.load(id).await?;
        if a.stage == Stage::Hired {
            return Err(CareerError::Conflict("A hired applicant's data is an employee record now.".into()));
        }
        erase_application_rows(&self.db, &self.blobs, id).await?;
        let category = if a.objected { "job_application_objected" } else { "job_application" };
        self.erasure_log
            .record(
                category,
                &[(Some(&subject(id)), &format!("application:{id}"))],
                ErasureReason::PersonRequest,
                actor,
            )
            .await?;
        self.audit
            .record(
                actor,
                "careers.application_erased",
                Some(&subject(id)),
                None,
                match reason {
                    Some(r) => serde_json::json!({ "reason": r }),
                    None => serde_json::json!({}),
                },
            )
            .await?;
        Ok(())
    }

    /// The candidate gives what the offer needs (JOB-2): only at the offer
    /// stage, only the fields the policy file lists, each checked.
    pub async fn submit_offer_data(
        &self,
        token: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<Application, CareerError> {
        let id = self.id_by_token(token).await?;
        let a = self.load(&id).await?;
        if a.stage != Stage::Offer {
            return Err(CareerError::Conflict(
                "We ask for these details only once we make an offer; nothing was stored.".into(),
            ));
        }
        let fields = &self.policy.careers.offer_fields;
        for k in values.keys() {
            if !fields.iter().any(|f| &f.id == k) {
                return Err(CareerError::invalid("offer", format!("`{k}` is not something an offer asks for.")));
            }
        }
        let mut clean = BTreeMap::new();
        for f in fields {
            let v = values.get(&f.id).map(String::as_str).unwrap_or("");
            let v = input::text("offer", &f.label, v, 500, true)?.unwrap_or_default();
            if f.kind == OfferFieldKind::Date
                && time::Date::parse(&v, time::macros::format_description!("[year]-[month]-[day]")).is_err()
            {
                return Err(CareerError::invalid("offer", format!("{}: write the date as YYYY-MM-DD.", f.label)));
            }
            clean.insert(f.id.clone(), v);
        }
        let json = serde_json::to_string(&clean)
            .map_err(|e| CareerError::Internal(Fault::new("encoding the application", e)))?;
        let now = to_millis(self.clock.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM job_offer_data WHERE application_id = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO job_offer_data (application_id, fields, submitted_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(&json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.audit_applicant(&id, "careers.offer_data_given").await?;
        self.load(&id).await
    }

    /// Hires the candidate (JOB-7): the application becomes an employee
    /// record (with the offer data and CV) for the country of employment,
    /// and the application itself is gone.
    pub async fn hire(&self, actor: &Actor, id: &str, country: &str) -> Result<Employee, CareerError> {
        hr_only(actor)?;
        let a = self.load(id).await?;
        if a.stage != Stage::Offer {
            return Err(CareerError::Conflict("Only a candidate at the offer stage can be hired.".into()));
        }
        let country = country.trim().to_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CareerError::invalid(
                "country",
                "Give the country of employment as a two-letter code, e.g. IN.",
            ));
        }
        let offer = a.offer.clone().ok_or_else(|| {
            CareerError::Conflict("The candidate has not yet given the details the contract needs.".into())
        })?;
        let employee_id = uuid::Uuid::now_v7().simple().to_string();
        let now = to_millis(self.clock.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO employees (id, name, email, phone, country, job_title, offer_fields, cv_key, hired_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&employee_id)
        .bind(&a.name)
        .bind(&a.email)
        .bind(&a.phone)
        .bind(&country)
        .bind(&a.posting_title)
        .bind(serde_json::to_string(&offer).map_err(|e| CareerError::Internal(Fault::new("encoding the offer", e)))?)
        .bind(&a.cv_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM job_offer_data WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM job_application_notes WHERE application_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM job_applications WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.audit
            .record(
                actor,
                "careers.hired",
                Some(&subject(id)),
                Some(&format!("employee:{employee_id}")),
                serde_json::json!({ "country": country }),
            )
            .await?;
        self.employee(&employee_id).await
    }

    fn employee_row(&self, r: &sqlx::any::AnyRow) -> Result<Employee, CareerError> {
        let country: String = r.try_get("country")?;
        let contract_end = r.try_get::<Option<i64>, _>("contract_end")?.map(from_millis);
        let erase_after = match (contract_end, self.policy.retention("employee_record")) {
            (Some(end), Some(rule)) => Some(rule.due(end, Some(&country))),
            _ => None,
        };
        Ok(Employee {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            country,
            job_title: r.try_get("job_title")?,
            hired_at: from_millis(r.try_get("hired_at")?),
            contract_end,
            erase_after,
        })
    }

    pub async fn employee(&self, id: &str) -> Result<Employee, CareerError> {
        let r = sqlx::query("SELECT * FROM employees WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| CareerError::NotFound("No such employee record.".into()))?;
        self.employee_row(&r)
    }

    pub async fn employees(&self, actor: &Actor) -> Result<Vec<Employee>, CareerError> {
        hr_only(actor)?;
        let rows = sqlx::query("SELECT * FROM employees ORDER BY hired_at DESC").fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| self.employee_row(r)).collect()
    }

    /// Records when an employment contract ended; the country's legal
    /// period then runs (JOB-7).
    pub async fn end_contract(&self, actor: &Actor, id: &str, end: time::Date) -> Result<Employee, CareerError> {
        hr_only(actor)?;
        let at = end.midnight().assume_utc();
        let n = sqlx::query("UPDATE employees SET contract_end = $1 WHERE id = $2")
            .bind(to_millis(at))
            .bind(id)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(CareerError::NotFound("No such employee record.".into()));
        }
        self.audit
            .record(
                actor,
                "careers.contract_ended",
                Some(&format!("employee:{id}")),
                None,
                serde_json::json!({ "end": end.to_string() }),
            )
            .await?;
        self.employee(id).await
    }

    /// Adds a note without changing the stage.
    pub async fn add_note(&self, actor: &Actor, id: &str, body: &str) -> Result<Application, CareerError> {
        hr_only(actor)?;
        let a = self.load(id).await?;
        let body = input::text("note", "Note", body, 5_000, true)?.unwrap_or_default();
        sqlx::query(
            "INSERT INTO job_application_notes (application_id, at, staff_id, stage, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(to_millis(self.clock.now()))
        .bind(actor.reference())
        .bind(a.stage.as_str())
        .bind(&body)
        .execute(self.db.pool())
        .await?;
        self.audit.record(actor, "careers.note_added", Some(&subject(id)), None, serde_json::json!({})).await?;
        self.load(id).await
    }
}

/// Job applications made with an account holder's e-mail address: erased
/// with the account, except an employee record (kept for employment law).
pub struct ApplicationRecords {
    pub careers: Careers,
}

impl seldesk_privacy::PersonalDataStore for ApplicationRecords {
    fn section(&self) -> &'static str {
        "job_applications"
    }

    fn category(&self) -> &'static str {
        "job_application"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["job_applications", "job_application_notes", "job_offer_data"]
    }

    fn export<'a>(
        &'a self,
        _subject: &'a str,
    ) -> seldesk_privacy::BoxFuture<'a, Result<serde_json::Value, seldesk_privacy::PrivacyError>> {
        // Applicants read their application from its private link.
        Box::pin(async move { Ok(serde_json::Value::Null) })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> seldesk_privacy::BoxFuture<'a, Result<seldesk_privacy::Erased, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let (erased, kept) = self
                .careers
                .erase_by_email(&person.email)
                .await
                .map_err(|e| seldesk_privacy::PrivacyError::Invalid(e.to_string()))?;
            let mut out = seldesk_privacy::Erased { records: erased, ..Default::default() };
            if erased > 0 {
                out.erased.push(format!("{erased} job application(s), with their CVs"));
            }
            if kept > 0 {
                let period =
                    self.careers.policy.retention("employee_record").map(|r| r.to_string()).unwrap_or_default();
                out.kept.push(format!("your employee record, which employment law requires us to keep ({period})"));
            }
            Ok(out)
        })
    }
}
