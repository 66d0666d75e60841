//! The Helpdesk (POL-3): questions and personal-data requests with due dates
//! from the policy file; access archives (ACC-3, POL-3) and erasure with a
//! receipt (ACC-4).

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
#[derive(Debug, Clone, Serialize)]
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
    ) -> Result<Ticket, AccountError> {
        let message = input::text("message", "Message", message.unwrap_or_default(), 5000, false)?;
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
                    .enqueue(NewJob::new(JOB_ACCESS_EXPORT).payload(serde_json::json!({ "ticket": ticket.id })))
                    .await
                    .map_err(|e| AccountError::Internal(e.to_string()))?;
            }
            TicketKind::Erasure => {
                sqlx::query("UPDATE accounts SET status = 'erasing' WHERE id = $1")
                    .bind(&account.id)
                    .execute(self.db.pool())
                    .await?;
                self.end_all_sessions(&Principal::Account(account.id.clone())).await?;
                self.queue
                    .enqueue(NewJob::new(JOB_ERASE).payload(serde_json::json!({ "ticket": ticket.id })))
                    .await
                    .map_err(|e| AccountError::Internal(e.to_string()))?;
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
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        let id = crate::secret::token()?;
        let dir = self.config.exports_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| AccountError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let path = archive_path(&dir, &id).ok_or_else(|| AccountError::Internal("a malformed archive id".into()))?;
        let json = serde_json::to_vec_pretty(&data).map_err(|e| AccountError::Internal(e.to_string()))?;
        let file = std::fs::File::create(&path)
            .map_err(|e| AccountError::Internal(format!("cannot write the archive: {e}")))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in [("personal-data.json", json.as_slice()), ("index.html", html.as_bytes())] {
            zip.start_file(name, options).map_err(|e| AccountError::Internal(e.to_string()))?;
            zip.write_all(bytes).map_err(|e| AccountError::Internal(e.to_string()))?;
        }
        zip.finish().map_err(|e| AccountError::Internal(e.to_string()))?;
        let now = self.now();
        sqlx::query("INSERT INTO access_exports (id, account_id, ticket_id, path, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(&account.id)
            .bind(ticket_id)
            .bind(path.display().to_string())
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
        // The file's name comes from the archive's id, never from a path
        // stored in the database.
        let path = archive_path(&self.config.exports_dir, &row.try_get::<String, _>("id")?)
            .ok_or(AccountError::LinkExpired)?;
        let bytes = tokio::fs::read(&path).await.map_err(|_| AccountError::LinkExpired)?;
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

    /// Erases an account holder's personal data everywhere live (the job
    /// behind an erasure request) and e-mails the receipt.
    pub async fn erase_account(&self, ticket_id: i64) -> Result<String, AccountError> {
        let t = self.ticket(ticket_id).await?;
        let Some(account_id) = t.account_id.clone() else {
            return Err(AccountError::NotFound("The ticket has no account.".into()));
        };
        let account = match self.account(&account_id).await {
            Ok(a) => a,
            // Already erased: a retried job has nothing left to do.
            Err(AccountError::NotFound(_)) => return Ok("already erased".into()),
            Err(e) => return Err(e),
        };
        let subject = account.subject();
        let now = self.now();
        let mut erased: Vec<(&str, String)> = Vec::new();

        // Access archives: files and rows.
        let rows = sqlx::query("SELECT id FROM access_exports WHERE account_id = $1")
            .bind(&account_id)
            .fetch_all(self.db.pool())
            .await?;
        for r in &rows {
            remove_archive(&self.config.exports_dir, &r.try_get::<String, _>("id")?)?;
        }
        let mut tx = self.db.begin_write().await?;
        // Records the law requires (invoices) leave the account for the
        // restricted finance archive, detached from any account.
        let invoices = sqlx::query(
            "SELECT id, number, buyer_name, buyer_email, buyer_address, country, currency, total_cents, issued_at, document FROM invoices WHERE account_id = $1",
        )
        .bind(&account_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut kept_invoices = Vec::new();
        for r in &invoices {
            let (id, country, issued): (String, Option<String>, i64) =
                (r.try_get("id")?, r.try_get("country")?, r.try_get("issued_at")?);
            let data = serde_json::json!({
                "number": r.try_get::<String, _>("number")?,
                "buyer_name": r.try_get::<String, _>("buyer_name")?,
                "buyer_email": r.try_get::<String, _>("buyer_email")?,
                "buyer_address": r.try_get::<Option<String>, _>("buyer_address")?,
                "currency": r.try_get::<String, _>("currency")?,
                "total_cents": r.try_get::<i64, _>("total_cents")?,
                "issued_at": from_millis(issued).to_string(),
                "document": r.try_get::<Option<String>, _>("document")?.and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok()),
            });
            sqlx::query("INSERT INTO finance_archive (kind, record, data, country, start_at, archived_at) VALUES ('invoice', $1, $2, $3, $4, $5)")
                .bind(format!("invoice:{id}"))
                .bind(data.to_string())
                .bind(&country)
                .bind(issued)
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?;
            let until = self
                .policy
                .retention("invoice")
                .map(|rule| rule.due(from_millis(issued), country.as_deref()).date().to_string())
                .unwrap_or_default();
            kept_invoices.push(until);
        }
        sqlx::query("DELETE FROM invoices WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        // Payment records go to the archive too (tax law); subscriptions and
        // the processors' tokens are simply gone.
        let payments = sqlx::query(
            "SELECT id, kind, processor, processor_order, processor_payment, status, amount_cents, refunded_cents, currency, description, reference, country, created_at, captured_at FROM payments WHERE account_id = $1",
        )
        .bind(&account_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in &payments {
            let (id, country, created): (String, Option<String>, i64) =
                (r.try_get("id")?, r.try_get("country")?, r.try_get("created_at")?);
            let mut data = serde_json::Map::new();
            for column in ["kind", "processor", "status", "currency", "description", "reference"] {
                data.insert(column.into(), r.try_get::<String, _>(column)?.into());
            }
            for column in ["processor_order", "processor_payment"] {
                data.insert(column.into(), r.try_get::<Option<String>, _>(column)?.into());
            }
            for column in ["amount_cents", "refunded_cents"] {
                data.insert(column.into(), r.try_get::<i64, _>(column)?.into());
            }
            data.insert("created_at".into(), from_millis(created).to_string().into());
            sqlx::query("INSERT INTO finance_archive (kind, record, data, country, start_at, archived_at) VALUES ('payment', $1, $2, $3, $4, $5)")
                .bind(format!("payment:{id}"))
                .bind(serde_json::Value::Object(data).to_string())
                .bind(&country)
                .bind(created)
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM payments WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM subscriptions WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM backup_restores WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM access_exports WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        let other_tickets = sqlx::query("SELECT id FROM tickets WHERE account_id = $1 AND id <> $2")
            .bind(&account_id)
            .bind(ticket_id)
            .fetch_all(&mut *tx)
            .await?;
        for r in &other_tickets {
            let id: i64 = r.try_get("id")?;
            sqlx::query("DELETE FROM ticket_messages WHERE ticket_id = $1").bind(id).execute(&mut *tx).await?;
            erased.push(("helpdesk_ticket", format!("ticket:{id}")));
        }
        sqlx::query("DELETE FROM tickets WHERE account_id = $1 AND id <> $2")
            .bind(&account_id)
            .bind(ticket_id)
            .execute(&mut *tx)
            .await?;
        // The erasure ticket stays as proof that the request was carried out,
        // without anything that identifies the person.
        sqlx::query("DELETE FROM ticket_messages WHERE ticket_id = $1").bind(ticket_id).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE tickets SET name = NULL, email = NULL, company = NULL, phone = NULL, industry = NULL, interest = NULL,
                 status = 'done', closed_at = $1, outcome = 'erased' WHERE id = $2",
        )
        .bind(to_millis(now))
        .bind(ticket_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM signins WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM policy_notices WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM consents WHERE subject = $1").bind(&subject).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM auth_tokens WHERE account_id = $1").bind(&account_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sessions WHERE principal = $1")
            .bind(format!("account:{account_id}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1").bind(&account_id).execute(&mut *tx).await?;
        tx.commit().await?;
        erased.push(("account_contact", format!("account:{account_id}")));

        let refs: Vec<(Option<&str>, &str)> = erased
            .iter()
            .filter(|(c, _)| *c == "account_contact")
            .map(|(_, r)| (Some(subject.as_str()), r.as_str()))
            .collect();
        self.erasure_log.record("account_contact", &refs, ErasureReason::PersonRequest, &Actor::System).await?;
        let tickets: Vec<(Option<&str>, &str)> = erased
            .iter()
            .filter(|(c, _)| *c == "helpdesk_ticket")
            .map(|(_, r)| (Some(subject.as_str()), r.as_str()))
            .collect();
        if !tickets.is_empty() {
            self.erasure_log.record("helpdesk_ticket", &tickets, ErasureReason::PersonRequest, &Actor::System).await?;
        }
        for store in &self.stores {
            let n = store.erase(&subject).await?;
            if n > 0 {
                let record = format!("{}:{n}", store.section());
                self.erasure_log
                    .record(
                        store.category(),
                        &[(Some(subject.as_str()), record.as_str())],
                        ErasureReason::PersonRequest,
                        &Actor::System,
                    )
                    .await?;
            }
        }
        self.audit
            .record(
                &Actor::System,
                "account.erased",
                Some(&subject),
                Some(&format!("ticket:{ticket_id}")),
                serde_json::json!({ "records": erased.len() }),
            )
            .await?;
        // Physically: deleted rows leave no bytes behind in free pages or the WAL.
        if self.db.backend() == seldesk_store::Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.db.pool()).await?;
        }

        let keep =
            |id: &str| self.policy.retention(id).map(|r| r.keep.after(now).date().to_string()).unwrap_or_default();
        let backups_until = self.policy.backups.max_age.after(now).date();
        let receipt = format!(
            "Hello,\n\nAs you asked (ticket {ticket_id}), on {date} we erased your personal data from our live systems:\n\n\
             - your account and contact data (name, company, e-mail, phone, address, industry, interest, password);\n\
             - your sign-in history, sessions and links;\n\
             - {n_tickets} Helpdesk ticket(s) and their messages, and any personal data archive prepared for you.\n\n\
             What we keep, and why:\n\
             - records of transfers of your data to our providers, by an anonymous reference only (legal obligation to account for them), until {disclosures};\n\
             - our staff access and audit trail, which names you only by an anonymous reference (legal obligation, security), until {audit};\n\
             - {invoices}\n\n\
             Copies in our encrypted backups are destroyed automatically by {backups_until}; until then they are used only to keep our backups whole.\n\n\
             -- Seldesk Helpdesk\n",
            date = now.date(),
            n_tickets = other_tickets.len(),
            disclosures = keep("disclosure_record"),
            audit = keep("audit_event"),
            invoices = if kept_invoices.is_empty() {
                "invoices and payment records: you had none.".to_string()
            } else {
                format!(
                    "{} invoice(s), in a restricted finance archive detached from your account, for the legal period of your country (tax law), until {}.",
                    kept_invoices.len(),
                    kept_invoices.iter().max().cloned().unwrap_or_default()
                )
            },
        );
        self.mail(&account.email, &format!("Your personal data has been erased (ticket {ticket_id})"), receipt).await?;
        Ok(format!("erased {} records", erased.len()))
    }
}

fn require_support(staff: &StaffMember) -> Result<(), AccountError> {
    if staff.has(Role::Support) || staff.has(Role::Dpo) {
        Ok(())
    } else {
        Err(AccountError::Forbidden("The Helpdesk is for the support and dpo roles.".into()))
    }
}

/// Where the access archive with this id is kept: a name made from the id
/// (32 bytes of randomness, base64url), or nothing for an id that is not one.
pub(crate) fn archive_path(dir: &std::path::Path, id: &str) -> Option<std::path::PathBuf> {
    let ok = id.len() >= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| dir.join(format!("{}.zip", &id[..16])))
}

/// Deletes an access archive's file; one already gone is fine, any other
/// failure is reported (the erasure is then retried), never ignored.
pub(crate) fn remove_archive(dir: &std::path::Path, id: &str) -> Result<(), AccountError> {
    let Some(path) = archive_path(dir, id) else { return Ok(()) };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AccountError::Internal(format!("cannot delete access archive {}: {e}", path.display()))),
    }
}
