//! The Helpdesk (POL-3): questions and personal-data requests with due dates
//! from the policy file; access archives (ACC-3, POL-3) and erasure with a
//! receipt (ACC-4).

use seldesk_domain::Fault;
use std::io::Write;

use askama::Template;
use seldesk_domain::{Actor, Role};
use seldesk_jobs::NewJob;
use seldesk_privacy::ErasureReason;
use seldesk_store::{from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::service::subject_of;
use crate::staff::StaffMember;
use crate::{Account, AccountError, Accounts, Principal, input};

/// Job kind: build an access archive.
pub const JOB_ACCESS_EXPORT: &str = "account.access_export";
/// Job kind: erase an account.
pub const JOB_ERASE: &str = "account.erase";
/// The job that builds the access archive a ticket asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AccessExportJob {
    pub ticket: i64,
}

impl seldesk_jobs::JobPayload for AccessExportJob {
    const KIND: &'static str = JOB_ACCESS_EXPORT;
}

/// The job that erases the account a ticket asks to erase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct EraseJob {
    pub ticket: i64,
}

impl seldesk_jobs::JobPayload for EraseJob {
    const KIND: &'static str = JOB_ERASE;
}

/// Job kind: e-mail the dpo role about personal-data requests past their answer date.
pub const JOB_OVERDUE_REQUESTS: &str = "helpdesk.overdue_requests";

/// What a ticket asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    Question,
    Access,
    Rectification,
    Erasure,
    Objection,
}

impl TicketKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "question" => Self::Question,
            "access" => Self::Access,
            "rectification" => Self::Rectification,
            "erasure" => Self::Erasure,
            "objection" => Self::Objection,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::Access => "access",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Objection => "objection",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Question => "Question",
            Self::Access => "Access to my data",
            Self::Rectification => "Correction of my data",
            Self::Erasure => "Erasure of my data",
            Self::Objection => "Objection to a use of my data",
        }
    }
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    InProgress,
    Done,
    Rejected,
}

impl TicketStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "in_progress" => Self::InProgress,
            "done" => Self::Done,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Rejected => "rejected",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::Open => "Open",
            Self::InProgress => "In progress",
            Self::Done => "Done",
            Self::Rejected => "Declined",
        }
    }
}

/// A Helpdesk ticket.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub account_id: Option<String>,
    pub kind: TicketKind,
    pub source: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub industry: Option<String>,
    pub interest: Option<String>,
    pub status: TicketStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub outcome: Option<String>,
}

/// A message in a ticket.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketMessage {
    pub author: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A contact, trial or download form (ACC-1 fields only).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactForm {
    pub name: String,
    pub company: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub interest: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

const TICKET_COLUMNS: &str = "id, account_id, kind, source, name, email, company, phone, industry, interest, status, due_at, created_at, outcome";

fn ticket_from_row(r: &sqlx::any::AnyRow) -> Result<Ticket, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    Ok(Ticket {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        kind: TicketKind::parse(&kind).unwrap_or(TicketKind::Question),
        source: r.try_get("source")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        company: r.try_get("company")?,
        phone: r.try_get("phone")?,
        industry: r.try_get("industry")?,
        interest: r.try_get("interest")?,
        status: TicketStatus::parse(&status).unwrap_or(TicketStatus::Open),
        due_at: from_millis(r.try_get("due_at")?),
        created_at: from_millis(r.try_get("created_at")?),
        outcome: r.try_get("outcome")?,
    })
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    generated: String,
    sections: Vec<(String, String)>,
}

impl Accounts {
    fn due(&self, from: OffsetDateTime) -> OffsetDateTime {
        self.policy.organisation.request_due.after(from)
    }

    async fn insert_ticket(
        &self,
        account: Option<&Account>,
        kind: TicketKind,
        source: &str,
        contact: (&str, &str, &str, Option<&str>, Option<&str>, Option<&str>),
        status: TicketStatus,
        message: Option<(&str, &str)>,
    ) -> Result<Ticket, AccountError> {
        let now = self.now();
        let (name, email, company, phone, industry, interest) = contact;
        let row = sqlx::query(
            "INSERT INTO tickets (account_id, kind, source, name, email, company, phone, industry, interest, status, due_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(account.map(|a| a.id.clone()))
        .bind(kind.as_str())
        .bind(source)
        .bind(name)
        .bind(email)
        .bind(company)
        .bind(phone)
        .bind(industry)
        .bind(interest)
        .bind(status.as_str())
        .bind(to_millis(self.due(now)))
        .bind(to_millis(now))
        .fetch_one(self.db.pool())
        .await?;
        let id: i64 = row.try_get("id")?;
        if let Some((author, body)) = message {
            self.add_message(id, author, body).await?;
        }
        self.ticket(id).await
    }

    async fn add_message(&self, ticket: i64, author: &str, body: &str) -> Result<(), AccountError> {
        sqlx::query("INSERT INTO ticket_messages (ticket_id, author, body, created_at) VALUES ($1, $2, $3, $4)")
            .bind(ticket)
            .bind(author)
            .bind(body)
            .bind(to_millis(self.now()))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A contact, free-trial or download form from the public site (ACC-1, ACC-5).
    pub async fn contact(&self, source: &str, form: ContactForm, ip: &str) -> Result<Ticket, AccountError> {
        crate::rate::hit(&self.db, "contact-ip", ip, 20, Duration::hours(1), self.now()).await?;
        let name = input::text("name", "Name", &form.name, 100, true)?.unwrap_or_default();
        let company = input::text("company", "Company", &form.company, 100, true)?.unwrap_or_default();
        let email = input::email(&form.email)?;
        let phone = input::phone(form.phone.as_deref().unwrap_or_default())?;
        let industry =
            input::choice("industry", "an industry", form.industry.as_deref().unwrap_or_default(), crate::INDUSTRIES)?;
        let interest =
            input::choice("interest", "your interest", form.interest.as_deref().unwrap_or_default(), crate::INTERESTS)?;
        let message = input::text("message", "Message", form.message.as_deref().unwrap_or_default(), 5000, false)?;
        let ticket = self
            .insert_ticket(
                None,
                TicketKind::Question,
                source,
                (&name, &email, &company, phone.as_deref(), industry.as_deref(), interest.as_deref()),
                TicketStatus::Open,
                message.as_deref().map(|m| ("requester", m)),
            )
            .await?;
        self.mail(
            &email,
            &format!("We received your request (ticket {})", ticket.id),
            format!("Hello {name},\n\nThank you for contacting Seldesk. Your request is ticket {} and we will answer by {}.\n\n-- Seldesk Helpdesk\n", ticket.id, ticket.due_at.date()),
        )
        .await?;
        Ok(ticket)
    }

    /// A request from a signed-in account holder (POL-3). Access and erasure
    /// need the password again; both run as jobs.
    pub async fn request(
        &self,
        account: &Account,
        kind: TicketKind,
        message: Option<&str>,
        password: Option<&str>,
        confirm: Option<&str>,
    ) -> Result<Ticket, AccountError> {
        let message = input::text("message", "Message", message.unwrap_or_default(), 5000, false)?;
        // Erasure removes every database of the account too: typed, as
        // removing one database is.
        if kind == TicketKind::Erasure && !confirm.is_some_and(|c| c.trim().eq_ignore_ascii_case(account.email.trim()))
        {
            return Err(AccountError::invalid(
                "confirm",
                format!(
                    "Type your e-mail address, {}, to confirm the erasure: your account, your databases and everything in them are removed, and this cannot be undone.",
                    account.email
                ),
            ));
        }
        if matches!(kind, TicketKind::Access | TicketKind::Erasure) {
            let Some(pw) = password.filter(|p| !p.is_empty()) else {
                return Err(AccountError::invalid("password", "Enter your password to confirm this request."));
            };
            self.confirm_password(&account.id, pw).await?;
            let open = sqlx::query(
                "SELECT id FROM tickets WHERE account_id = $1 AND kind = $2 AND status IN ('open', 'in_progress')",
            )
            .bind(&account.id)
            .bind(kind.as_str())
            .fetch_optional(self.db.pool())
            .await?;
            if open.is_some() {
                return Err(AccountError::Conflict(
                    "A request of this kind is already in progress (see your requests).".into(),
                ));
            }
        }
        let status = if matches!(kind, TicketKind::Access | TicketKind::Erasure) {
            TicketStatus::InProgress
        } else {
            TicketStatus::Open
        };
        let ticket = self
            .insert_ticket(
                Some(account),
                kind,
                "account",
                (
                    &account.name,
                    &account.email,
                    &account.company,
                    account.phone.as_deref(),
                    account.industry.as_deref(),
                    account.interest.as_deref(),
                ),
                status,
                message.as_deref().map(|m| ("requester", m)),
            )
            .await?;
        self.audit
            .record(
                &account.actor(),
                &format!("request.{}", kind.as_str()),
                Some(&account.subject()),
                Some(&format!("ticket:{}", ticket.id)),
                serde_json::json!({}),
            )
            .await?;
        match kind {
            TicketKind::Access => {
                self.queue
                    .enqueue(NewJob::of(&AccessExportJob { ticket: ticket.id }))
                    .await
                    .map_err(|e| AccountError::Internal(Fault::new("cannot schedule the access export", e)))?;
            }
            TicketKind::Erasure => {
                sqlx::query("UPDATE accounts SET status = 'erasing' WHERE id = $1")
                    .bind(&account.id)
                    .execute(self.db.pool())
                    .await?;
                self.end_all_sessions(&Principal::Account(account.id.clone())).await?;
                self.queue
                    .enqueue(NewJob::of(&EraseJob { ticket: ticket.id }))
                    .await
                    .map_err(|e| AccountError::Internal(Fault::new("cannot schedule the erasure", e)))?;
            }
            _ => {}
        }
        Ok(ticket)
    }

    /// Records that the owner's request `ticket_id` is about their database
    /// `database_id` (the caller checked the database is theirs): only such
    /// a ticket lets support staff into that database (DB-3).
    pub async fn link_ticket_to_database(
        &self,
        account: &Account,
        ticket_id: i64,
        database_id: &str,
    ) -> Result<(), AccountError> {
        sqlx::query("UPDATE tickets SET database_id = $1 WHERE id = $2 AND account_id = $3")
            .bind(database_id)
            .bind(ticket_id)
            .bind(&account.id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Personal-data requests (access, correction, erasure, objection) still
    /// open past their answer date, oldest first.
    pub async fn overdue_requests(&self) -> Result<Vec<Ticket>, AccountError> {
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE kind IN ('access', 'rectification', 'erasure', 'objection')
             AND status IN ('open', 'in_progress') AND due_at < $1 ORDER BY due_at"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(self.now())).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(ticket_from_row).collect::<Result<_, _>>()?)
    }

    /// E-mails every active staff member of the dpo role the list of
    /// overdue personal-data requests (ticket numbers and dates only: no
    /// requester's data in mail). Returns how many requests are overdue.
    pub async fn alert_overdue_requests(&self) -> Result<usize, AccountError> {
        let overdue = self.overdue_requests().await?;
        if overdue.is_empty() {
            return Ok(0);
        }
        let lines: Vec<String> = overdue
            .iter()
            .map(|t| format!("- ticket {} ({}), due {}", t.id, t.kind.label(), t.due_at.date()))
            .collect();
        let dpos: Vec<crate::StaffMember> =
            self.list_staff().await?.into_iter().filter(|m| !m.disabled && m.has(Role::Dpo)).collect();
        for m in &dpos {
            self.mail(
                &m.email,
                &format!("{} personal-data requests are overdue", overdue.len()),
                format!(
                    "These requests are past the date we promised an answer by:\n\n{}\n\nAnswer them from the Helpdesk: {}/staff/tickets\n\n-- Seldesk\n",
                    lines.join("\n"),
                    self.config.base_url
                ),
            )
            .await?;
        }
        self.audit
            .record(
                &Actor::System,
                "helpdesk.overdue_alerted",
                None,
                None,
                serde_json::json!({ "overdue": overdue.len(), "dpos": dpos.len() }),
            )
            .await?;
        Ok(overdue.len())
    }

    pub async fn ticket(&self, id: i64) -> Result<Ticket, AccountError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(ticket_from_row).transpose()?.ok_or_else(|| AccountError::NotFound(format!("No ticket {id}.")))
    }

    /// A ticket of this account (others' tickets are "not found").
    pub async fn own_ticket(&self, account: &Account, id: i64) -> Result<Ticket, AccountError> {
        let t = self.ticket(id).await?;
        if t.account_id.as_deref() != Some(account.id.as_str()) {
            return Err(AccountError::NotFound(format!("No ticket {id}.")));
        }
        Ok(t)
    }

    pub async fn tickets_of(&self, account_id: &str) -> Result<Vec<Ticket>, AccountError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE account_id = $1 ORDER BY id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(ticket_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn messages(&self, ticket: i64) -> Result<Vec<TicketMessage>, AccountError> {
        let rows = sqlx::query("SELECT author, body, created_at FROM ticket_messages WHERE ticket_id = $1 ORDER BY id")
            .bind(ticket)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketMessage {
                    author: r.try_get("author")?,
                    body: r.try_get("body")?,
                    at: from_millis(r.try_get("created_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Tickets for the staff console, open ones first by due date.
    pub async fn staff_tickets(&self, staff: &StaffMember) -> Result<Vec<Ticket>, AccountError> {
        require_support(staff)?;
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets ORDER BY CASE WHEN status IN ('open', 'in_progress') THEN 0 ELSE 1 END, due_at LIMIT 500"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        self.audit
            .record(&staff.actor(), "tickets.list", None, None, serde_json::json!({ "count": rows.len() }))
            .await?;
        Ok(rows.iter().map(ticket_from_row).collect::<Result<_, _>>()?)
    }

    /// A ticket opened by staff: audited as an access to the person's data.
    pub async fn staff_ticket(
        &self,
        staff: &StaffMember,
        id: i64,
    ) -> Result<(Ticket, Vec<TicketMessage>), AccountError> {
        require_support(staff)?;
        let t = self.ticket(id).await?;
        let subject = t.account_id.as_deref().map(subject_of);
        self.audit
            .record(
                &staff.actor(),
                "ticket.read",
                subject.as_deref(),
                Some(&format!("ticket:{id}")),
                serde_json::json!({}),
            )
            .await?;
        let m = self.messages(id).await?;
        Ok((t, m))
    }

    /// Staff answer: e-mailed to the requester; status and outcome recorded.
    pub async fn staff_reply(
        &self,
        staff: &StaffMember,
        id: i64,
        body: &str,
        status: TicketStatus,
        outcome: Option<&str>,
    ) -> Result<Ticket, AccountError> {
        require_support(staff)?;
        let t = self.ticket(id).await?;
        let body = input::text("body", "Reply", body, 10_000, true)?.unwrap_or_default();
        let outcome = input::text("outcome", "Outcome", outcome.unwrap_or_default(), 1000, false)?;
        if matches!(status, TicketStatus::Done | TicketStatus::Rejected)
            && matches!(t.kind, TicketKind::Rectification | TicketKind::Objection)
            && outcome.is_none()
        {
            return Err(AccountError::invalid("outcome", "Record the outcome of this request before closing it."));
        }
        self.add_message(id, &format!("staff:{}", staff.id), &body).await?;
        let closed = matches!(status, TicketStatus::Done | TicketStatus::Rejected);
        sqlx::query("UPDATE tickets SET status = $1, outcome = COALESCE($2, outcome), closed_at = CASE WHEN $3 = 1 THEN $4 ELSE closed_at END WHERE id = $5")
            .bind(status.as_str())
            .bind(&outcome)
            .bind(i64::from(closed))
            .bind(to_millis(self.now()))
            .bind(id)
            .execute(self.db.pool())
            .await?;
        let subject = t.account_id.as_deref().map(subject_of);
        self.audit
            .record(
                &staff.actor(),
                "ticket.reply",
                subject.as_deref(),
                Some(&format!("ticket:{id}")),
                serde_json::json!({ "status": status.as_str() }),
            )
            .await?;
        if let Some(email) = &t.email {
            self.mail(
                email,
                &format!("Re: your request (ticket {id})"),
                format!("{body}\n\n-- Seldesk Helpdesk\nTicket {id}: {}\n", status.label()),
            )
            .await?;
        }
        self.ticket(id).await
    }

    /// Everything Seldesk holds about an account holder, as JSON.
    pub async fn personal_data(&self, account: &Account) -> Result<serde_json::Value, AccountError> {
        let subject = account.subject();
        let tickets = self.tickets_of(&account.id).await?;
        let mut ticket_json = Vec::new();
        for t in &tickets {
            ticket_json.push(serde_json::json!({ "ticket": t, "messages": self.messages(t.id).await? }));
        }
        let mut others = serde_json::Map::new();
        for store in &self.stores {
            others.insert(store.section().to_string(), store.export(&subject).await?);
        }
        Ok(serde_json::json!({
            "other_records": others,
            "generated_at": self.now().to_string(),
            "account": account,
            "sign_in_history": self.signins(&account.id).await?,
            "api_tokens": self.api_tokens(&account.id).await?,
            "helpdesk_tickets": ticket_json,
            "cookie_consents": seldesk_privacy::consent::Consents::new(self.db.clone(), self.clock.clone()).for_subject(&subject).await?,
            "disclosures_to_third_parties": self.disclosures.for_subject(&subject).await?,
            "mail_sent_through_our_relay": self.disclosures.for_subject(&crate::mail::mail_subject(&account.email)).await?,
            "staff_and_system_access_log": self.audit.about(&subject).await?,
            "erasures": self.erasure_log.for_subject(&subject).await?,
        }))
    }

    /// Builds the access archive of a ticket (the job behind an access request).
    pub async fn build_access_export(&self, ticket_id: i64) -> Result<String, AccountError> {
        let t = self.ticket(ticket_id).await?;
        let account_id =
            t.account_id.clone().ok_or_else(|| AccountError::NotFound("The ticket has no account.".into()))?;
        let account = self.account(&account_id).await?;
        let data = self.personal_data(&account).await?;
        let sections = data
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.replace('_', " "), serde_json::to_string_pretty(v).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let html = AccessPage { generated: self.now().date().to_string(), sections }
            .render()
            .map_err(|e| AccountError::Internal(Fault::new("rendering the access page", e)))?;
        let id = crate::secret::token()?;
        let key = archive_key(&id).ok_or_else(|| AccountError::Internal(Fault::msg("a malformed archive id")))?;
        let json = serde_json::to_vec_pretty(&data)
            .map_err(|e| AccountError::Internal(Fault::new("encoding the access data", e)))?;
        // Zipped off the async threads: a large history takes a moment.
        let zipped = tokio::task::spawn_blocking(move || {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            for (name, bytes) in [("personal-data.json", json.as_slice()), ("index.html", html.as_bytes())] {
                zip.start_file(name, options)
                    .map_err(|e| AccountError::Internal(Fault::new("writing the access archive", e)))?;
                zip.write_all(bytes)
                    .map_err(|e| AccountError::Internal(Fault::new("writing the access archive", e)))?;
            }
            Ok::<_, AccountError>(
                zip.finish()
                    .map_err(|e| AccountError::Internal(Fault::new("writing the access archive", e)))?
                    .into_inner(),
            )
        })
        .await
        .map_err(|e| AccountError::Internal(Fault::new("the archive could not be made", e)))??;
        self.config
            .archives
            .put(&key, &zipped)
            .await
            .map_err(|e| AccountError::Internal(Fault::new("cannot store the archive", e)))?;
        let path = key;
        let now = self.now();
        sqlx::query("INSERT INTO access_exports (id, account_id, ticket_id, path, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(&account.id)
            .bind(ticket_id)
            .bind(path)
            .bind(to_millis(now))
            .bind(to_millis(now + Duration::days(7)))
            .execute(self.db.pool())
            .await?;
        sqlx::query("UPDATE tickets SET status = 'done', closed_at = $1, outcome = 'archive ready' WHERE id = $2")
            .bind(to_millis(now))
            .bind(ticket_id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .record(
                &Actor::System,
                "access_export.built",
                Some(&account.subject()),
                Some(&format!("ticket:{ticket_id}")),
                serde_json::json!({}),
            )
            .await?;
        self.mail(
            &account.email,
            "Your Seldesk personal data archive is ready",
            format!(
                "Hello {},\n\nThe archive of your personal data (ticket {ticket_id}) is ready. Sign in and open\n\n{}/account/requests/{ticket_id}\n\nto download it; you will be asked for your password. The download is available for 7 days.\n\n-- Seldesk Helpdesk\n",
                account.name, self.config.base_url
            ),
        )
        .await?;
        Ok(id)
    }

    /// Whether the archive of an access request can be downloaded.
    pub async fn export_ready(&self, account: &Account, ticket_id: i64) -> Result<bool, AccountError> {
        let row = sqlx::query("SELECT expires_at FROM access_exports WHERE account_id = $1 AND ticket_id = $2")
            .bind(&account.id)
            .bind(ticket_id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => from_millis(r.try_get("expires_at")?) > self.now(),
            None => false,
        })
    }

    /// Audit entries about an account holder (shown on their account page).
    pub async fn audit_about(&self, account: &Account) -> Result<Vec<seldesk_privacy::AuditEntry>, AccountError> {
        Ok(self.audit.about(&account.subject()).await?)
    }

    /// The archive of an access request, after the password is entered again.
    pub async fn download_export(
        &self,
        account: &Account,
        ticket_id: i64,
        password: &str,
    ) -> Result<Vec<u8>, AccountError> {
        self.own_ticket(account, ticket_id).await?;
        self.confirm_password(&account.id, password).await?;
        let row =
            sqlx::query("SELECT id, path, expires_at FROM access_exports WHERE account_id = $1 AND ticket_id = $2")
                .bind(&account.id)
                .bind(ticket_id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else {
            return Err(AccountError::NotFound(
                "The archive is not ready yet; you will get an e-mail when it is.".into(),
            ));
        };
        if from_millis(row.try_get("expires_at")?) <= self.now() {
            return Err(AccountError::LinkExpired);
        }
        // The object's name comes from the archive's id, never from a path
        // stored in the database.
        let key = archive_key(&row.try_get::<String, _>("id")?).ok_or(AccountError::LinkExpired)?;
        let bytes = match self.config.archives.get(&key).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(AccountError::LinkExpired),
            Err(e) => return Err(AccountError::Internal(Fault::new("cannot read the archive", e))),
        };
        sqlx::query("UPDATE access_exports SET downloaded_at = $1 WHERE id = $2")
            .bind(to_millis(self.now()))
            .bind(row.try_get::<String, _>("id")?)
            .execute(self.db.pool())
            .await?;
        self.audit
            .record(
                &account.actor(),
                "access_export.downloaded",
                Some(&account.subject()),
                Some(&format!("ticket:{ticket_id}")),
                serde_json::json!({}),
            )
            .await?;
        Ok(bytes)
    }

    /// The job behind an erasure request: erases the account holder's
    /// personal data everywhere live and e-mails the receipt.
    pub async fn erase_account(&self, ticket_id: i64) -> Result<String, AccountError> {
        let t = self.ticket(ticket_id).await?;
        let Some(account_id) = t.account_id.clone() else {
            return Err(AccountError::NotFound("The ticket has no account.".into()));
        };
        self.erase_person(&account_id, ErasureReason::PersonRequest).await
    }

    /// Erases an account holder everywhere live: each store erases (or
    /// archives under its legal period) its own tables and files, then the
    /// accounts tables go, and the person gets a receipt naming what went
    /// and what is kept, why and until when. One function for an erasure
    /// request, a closed account at the end of its period, an idle account
    /// and a stuck erasure; safe to run again after a failure.
    pub async fn erase_person(&self, account_id: &str, reason: ErasureReason) -> Result<String, AccountError> {
        let account = match self.account(account_id).await {
            Ok(a) => a,
            // Already erased: a retried job has nothing left to do.
            Err(AccountError::NotFound(_)) => return Ok("already erased".into()),
            Err(e) => return Err(e),
        };
        let now = self.now();
        let person = seldesk_privacy::Person {
            subject: account.subject(),
            account_id: account.id.clone(),
            email: account.email.trim().to_lowercase(),
            at: now,
        };
        let subject = person.subject.clone();
        // Nobody signs in while the erasure runs.
        sqlx::query("UPDATE accounts SET status = 'erasing', updated_at = $1 WHERE id = $2")
            .bind(to_millis(now))
            .bind(account_id)
            .execute(self.db.pool())
            .await?;
        self.end_all_sessions(&Principal::Account(account.id.clone())).await?;

        let mut outcome = seldesk_privacy::Erased::default();
        for store in &self.stores {
            let part = store.erase(&person).await?;
            if part.records > 0 {
                let record = format!("{}:{}", store.section(), part.records);
                self.erasure_log
                    .record(store.category(), &[(Some(subject.as_str()), record.as_str())], reason, &Actor::System)
                    .await?;
            }
            outcome.absorb(part);
        }
        let core = self.erase_core(&account, &person).await?;
        let tickets = core.tickets;
        self.erasure_log
            .record(
                "account_contact",
                &[(Some(subject.as_str()), &format!("account:{account_id}"))],
                reason,
                &Actor::System,
            )
            .await?;
        if !tickets.is_empty() {
            let refs: Vec<(Option<&str>, &str)> =
                tickets.iter().map(|r| (Some(subject.as_str()), r.as_str())).collect();
            self.erasure_log.record("helpdesk_ticket", &refs, reason, &Actor::System).await?;
        }
        self.audit
            .record(
                &Actor::System,
                "account.erased",
                Some(&subject),
                core.ticket.map(|t| format!("ticket:{t}")).as_deref(),
                serde_json::json!({ "reason": reason.as_str(), "records": outcome.records + 1 + tickets.len() as u64 }),
            )
            .await?;
        // Physically: deleted rows leave no bytes behind in free pages or the WAL.
        if self.db.backend() == seldesk_store::Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.db.pool()).await?;
        }
        let receipt = self.receipt(&person, reason, core.ticket, tickets.len(), core.mails, &outcome);
        let title = match core.ticket {
            Some(t) => format!("Your personal data has been erased (ticket {t})"),
            None => "Your personal data has been erased".to_string(),
        };
        self.mail(&person.email, &title, receipt).await?;
        Ok(format!("erased {} records", outcome.records + 1 + tickets.len() as u64))
    }

    /// The tables the accounts crate owns, in one transaction, plus access
    /// archives and mail kept in the outbox folder.
    async fn erase_core(
        &self,
        account: &Account,
        person: &seldesk_privacy::Person,
    ) -> Result<CoreErased, AccountError> {
        let account_id = account.id.as_str();
        let ticket: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE account_id = $1 AND kind = 'erasure' ORDER BY id DESC LIMIT 1",
        )
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?;
        // Access archives: files first; a file that cannot be deleted fails
        // the erasure, which is then retried.
        let archives: Vec<String> = sqlx::query_scalar("SELECT id FROM access_exports WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(self.db.pool())
            .await?;
        for id in &archives {
            remove_archive(&self.config.archives, &self.config.exports_dir, id).await?;
        }
        let mails = self.erase_outbox_mail(&person.email).await?;
        let mut tx = self.db.begin_write().await?;
        // Tickets of the account and those sent from its address signed out.
        let others: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE (account_id = $1 OR LOWER(email) = $2) AND id <> $3")
                .bind(account_id)
                .bind(&person.email)
                .bind(ticket.unwrap_or(-1))
                .fetch_all(&mut *tx)
                .await?;
        for id in &others {
            sqlx::query("DELETE FROM ticket_messages WHERE ticket_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM tickets WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        if let Some(t) = ticket {
            // The erasure ticket stays as proof that the request was carried
            // out, without anything that identifies the person.
            sqlx::query("DELETE FROM ticket_messages WHERE ticket_id = $1").bind(t).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE tickets SET account_id = NULL, name = NULL, email = NULL, company = NULL, phone = NULL, industry = NULL, interest = NULL,
                     status = 'done', closed_at = $1, outcome = 'erased' WHERE id = $2",
            )
            .bind(to_millis(person.at))
            .bind(t)
            .execute(&mut *tx)
            .await?;
        }
        for sql in [
            "DELETE FROM access_exports WHERE account_id = $1",
            "DELETE FROM signins WHERE account_id = $1",
            "DELETE FROM policy_notices WHERE account_id = $1",
            "DELETE FROM auth_tokens WHERE account_id = $1",
            "DELETE FROM api_tokens WHERE account_id = $1",
            "DELETE FROM idempotency_keys WHERE account_id = $1",
        ] {
            sqlx::query(sql).bind(account_id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM sessions WHERE principal = $1")
            .bind(format!("account:{account_id}"))
            .execute(&mut *tx)
            .await?;
        // Sign-in budgets are keyed by the address.
        let pattern = format!("%{}%", person.email.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        sqlx::query("DELETE FROM rate_limits WHERE key LIKE $1 ESCAPE '\\'").bind(pattern).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1").bind(account_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(CoreErased { ticket, tickets: others.iter().map(|t| format!("ticket:{t}")).collect(), mails })
    }

    /// Deletes mail to this address kept in the outbox folder (when no SMTP
    /// server is configured); returns how many went. Each file is read up to
    /// its headers only, and a failure to delete one fails the erasure.
    async fn erase_outbox_mail(&self, email: &str) -> Result<usize, AccountError> {
        let Some(dir) = self.mailer.outbox_dir().map(std::path::Path::to_path_buf) else { return Ok(0) };
        let email = email.to_string();
        tokio::task::spawn_blocking(move || crate::mail::delete_outbox_mail_to(&dir, &email))
            .await
            .map_err(|e| AccountError::Internal(Fault::new("the outbox task failed", e)))?
    }

    fn receipt(
        &self,
        person: &seldesk_privacy::Person,
        reason: ErasureReason,
        ticket: Option<i64>,
        tickets: usize,
        mails: usize,
        outcome: &seldesk_privacy::Erased,
    ) -> String {
        let now = person.at;
        let keep =
            |id: &str| self.policy.retention(id).map(|r| r.keep.after(now).date().to_string()).unwrap_or_default();
        let backups_until = self.policy.backups.max_age.after(now).date();
        let why = match (reason, ticket) {
            (ErasureReason::PersonRequest, Some(t)) => format!("As you asked (ticket {t}), on"),
            (ErasureReason::PersonRequest, None) => "As you asked, on".to_string(),
            _ => "As our privacy policy says (your account was closed, or unused for the period it gives), on"
                .to_string(),
        };
        let mut erased = vec![
            "your account and contact data (name, company, e-mail, phone, address, industry, interest, password)"
                .to_string(),
            "your sign-in history, sessions and links".to_string(),
            format!("{tickets} Helpdesk ticket(s) and their messages, and any personal data archive prepared for you"),
        ];
        if mails > 0 {
            erased.push(format!("{mails} e-mail(s) to you waiting in our outgoing mail folder"));
        }
        erased.extend(outcome.erased.iter().cloned());
        let mut kept = vec![
            format!(
                "records of transfers of your data to our providers, by an anonymous reference only (legal obligation to account for them), until {}",
                keep("disclosure_record")
            ),
            format!(
                "our staff access and audit trail, which names you only by an anonymous reference (legal obligation, security), until {}",
                keep("audit_event")
            ),
            format!(
                "the erasure log, by anonymous references only, so that anything restored from a backup is erased again, until {}",
                keep("erasure_record")
            ),
        ];
        kept.extend(outcome.kept.iter().cloned());
        if self.mailer.outbox_dir().is_some() {
            kept.push(format!("this receipt, in our outgoing mail folder, until {}", keep("outgoing_mail")));
        }
        let list = |items: &[String]| items.iter().map(|i| format!("- {i};\n")).collect::<String>();
        format!(
            "Hello,\n\n{why} {date} we erased your personal data from our live systems:\n\n{erased}\n\
             What we keep, and why:\n{kept}\n\
             Copies in our encrypted backups are destroyed automatically by {backups_until}; until then they are used only to keep our backups whole, and anything restored from them is erased again first.\n\n\
             -- Seldesk Helpdesk\n",
            date = now.date(),
            erased = list(&erased),
            kept = list(&kept),
        )
    }
}

/// What the accounts tables gave up in an erasure.
struct CoreErased {
    /// The erasure request's ticket, kept anonymised as proof.
    ticket: Option<i64>,
    /// Other tickets erased.
    tickets: Vec<String>,
    /// Outbox files deleted.
    mails: usize,
}

fn require_support(staff: &StaffMember) -> Result<(), AccountError> {
    if staff.has(Role::Support) || staff.has(Role::Dpo) {
        Ok(())
    } else {
        Err(AccountError::Forbidden("The Helpdesk is for the support and dpo roles.".into()))
    }
}

/// The blob key of the access archive with this id: a name made from the
/// id (32 bytes of randomness, base64url), or nothing for an id that is not one.
pub(crate) fn archive_key(id: &str) -> Option<String> {
    let ok = id.len() >= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| format!("access/{}.zip", &id[..16]))
}

/// Deletes an access archive (and the file an older version wrote to
/// `legacy_dir`); one already gone is fine, any other failure is reported
/// (the erasure is then retried), never ignored.
pub(crate) async fn remove_archive(
    archives: &seldesk_blob::SealedBlobs,
    legacy_dir: &std::path::Path,
    id: &str,
) -> Result<(), AccountError> {
    let Some(key) = archive_key(id) else { return Ok(()) };
    archives
        .delete(&key)
        .await
        .map_err(|e| AccountError::Internal(Fault::new(format!("cannot delete access archive {key}"), e)))?;
    let legacy = legacy_dir.join(key.trim_start_matches("access/"));
    match std::fs::remove_file(&legacy) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(AccountError::Internal(Fault::new(format!("cannot delete access archive {}", legacy.display()), e)))
        }
    }
}
