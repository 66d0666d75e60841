//! Campaigns: composed by the marketing role, sent to a segment in batches
//! at the configured rate. Every message carries a visible unsubscribe link
//! and the RFC 8058 one-click headers; every opt-out is checked again just
//! before each message goes; a recipient is claimed before the message is
//! handed to the mail server and marked sent after, so a send that dies half
//! way resumes without sending anyone a message twice (MKT-1).

use seldesk_domain::Fault;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use seldesk_accounts::{Mailer, OutgoingMail};
use seldesk_domain::Actor;
use seldesk_privacy::BoxFuture;
use seldesk_store::{from_millis, to_millis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Marketing, MarketingError, checked, marketing_only};

/// How long one job run sends before handing over to the next run, so no
/// run outlives its lease however large the audience.
const RUN_BUDGET: Duration = Duration::from_secs(60);

/// Who a campaign is for; an empty criterion matches everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<String>,
    /// `trial`, `subscribed` or `none` (no database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// The plans a segment can name.
pub const PLANS: &[&str] = &["trial", "subscribed", "none"];

impl Segment {
    /// Checks and normalises the criteria; empty strings mean "any".
    pub fn checked(self) -> Result<Self, MarketingError> {
        let blank = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let country = match blank(self.country) {
            Some(c) => Some(seldesk_domain::country::normalise(&c).ok_or_else(|| {
                MarketingError::invalid("country", format!("`{c}` is not a country code (two letters, e.g. IN)."))
            })?),
            None => None,
        };
        let industry = match blank(self.industry) {
            Some(v) => {
                checked(seldesk_accounts::input::choice("industry", "an industry", &v, seldesk_accounts::INDUSTRIES))?
            }
            None => None,
        };
        let interest = match blank(self.interest) {
            Some(v) => {
                checked(seldesk_accounts::input::choice("interest", "an interest", &v, seldesk_accounts::INTERESTS))?
            }
            None => None,
        };
        let plan = match blank(self.plan) {
            Some(v) if PLANS.contains(&v.as_str()) => Some(v),
            Some(v) => {
                return Err(MarketingError::invalid(
                    "plan",
                    format!("`{v}` is not a plan; use trial, subscribed or none."),
                ));
            }
            None => None,
        };
        Ok(Self { country, industry, interest, plan })
    }

    /// "everyone" or "country IN, plan trial".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.country.as_ref().map(|v| format!("country {v}")),
            self.industry.as_ref().map(|v| format!("industry {v}")),
            self.interest.as_ref().map(|v| format!("interest {v}")),
            self.plan.as_ref().map(|v| format!("plan {v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() { "everyone who agreed to marketing".into() } else { parts.join(", ") }
    }
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Sending,
    Sent,
}

impl CampaignStatus {
    fn parse(s: &str) -> Self {
        match s {
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            _ => Self::Draft,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Sending => "sending",
            Self::Sent => "sent",
        }
    }
}

/// Recipients by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignStats {
    pub pending: u64,
    pub sent: u64,
    /// Opted out, unsubscribed or erased after the audience was fixed.
    pub skipped: u64,
    /// Handed to the mail server by a run that stopped before confirming:
    /// never sent again, so nobody gets a message twice.
    pub unconfirmed: u64,
    pub failed: u64,
}

/// A campaign.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: String,
    pub mail_subject: String,
    pub body: String,
    pub segment: Segment,
    pub status: CampaignStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub stats: CampaignStats,
}

/// Who a segment reaches now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audience {
    /// `person:…` references that would get the message.
    pub subjects: Vec<String>,
    /// Matching account holders who did not agree to marketing.
    pub not_opted_in: u64,
    /// Matching addresses on the suppression list.
    pub suppressed: u64,
}

/// Hands a campaign message to the mail system.
pub trait CampaignMail: Send + Sync {
    fn send<'a>(
        &'a self,
        mail: &'a OutgoingMail,
        headers: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<(), String>>;
}

impl CampaignMail for Mailer {
    fn send<'a>(
        &'a self,
        mail: &'a OutgoingMail,
        headers: &'a [(&'static str, String)],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.send_with_headers(mail, headers).await.map_err(|e| e.to_string()) })
    }
}

/// The outcome of one send run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRun {
    /// Every recipient is done.
    Finished,
    /// The run used its budget; another run carries on.
    More,
}

const CAMPAIGN_COLUMNS: &str = "id, mail_subject, body, segment, status, created_at, started_at, finished_at";

impl Marketing {
    /// Creates a draft campaign.
    pub async fn create_campaign(
        &self,
        actor: &Actor,
        mail_subject: &str,
        body: &str,
        segment: Segment,
    ) -> Result<Campaign, MarketingError> {
        marketing_only(actor)?;
        let mail_subject = checked(seldesk_accounts::input::text("mail_subject", "Subject", mail_subject, 200, true))?
            .unwrap_or_default();
        if mail_subject.contains(['\r', '\n']) {
            return Err(MarketingError::invalid("mail_subject", "The subject must be one line."));
        }
        let body = checked(seldesk_accounts::input::text("body", "Message", body, 20_000, true))?.unwrap_or_default();
        let segment = segment.checked()?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = to_millis(self.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO campaigns (id, mail_subject, body, segment, status, created_by, created_at) VALUES ($1, $2, $3, $4, 'draft', $5, $6)",
        )
        .bind(&id)
        .bind(&mail_subject)
        .bind(&body)
        .bind(serde_json::to_string(&segment).unwrap_or_default())
        .bind(actor.reference())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.audit
            .record_in(
                &mut tx,
                actor,
                "campaign.created",
                None,
                Some(&format!("campaign:{id}")),
                serde_json::json!({ "segment": segment }),
            )
            .await?;
        tx.commit().await?;
        self.campaign(actor, &id).await
    }

    /// Every campaign, newest first.
    pub async fn campaigns(&self, actor: &Actor) -> Result<Vec<Campaign>, MarketingError> {
        marketing_only(actor)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY created_at DESC LIMIT 500"
        )))
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.push(self.campaign_from_row(r).await?);
        }
        Ok(out)
    }

    /// One campaign with its counts.
    pub async fn campaign(&self, actor: &Actor, id: &str) -> Result<Campaign, MarketingError> {
        marketing_only(actor)?;
        self.load_campaign(id).await
    }

    async fn load_campaign(&self, id: &str) -> Result<Campaign, MarketingError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| MarketingError::NotFound("No such campaign.".into()))?;
        self.campaign_from_row(&row).await
    }

    async fn campaign_from_row(&self, r: &sqlx::any::AnyRow) -> Result<Campaign, MarketingError> {
        let id: String = r.try_get("id")?;
        let segment: String = r.try_get("segment")?;
        Ok(Campaign {
            stats: self.stats(&id).await?,
            id,
            mail_subject: r.try_get("mail_subject")?,
            body: r.try_get("body")?,
            segment: serde_json::from_str(&segment).unwrap_or_default(),
            status: CampaignStatus::parse(&r.try_get::<String, _>("status")?),
            created_at: from_millis(r.try_get("created_at")?),
            started_at: r.try_get::<Option<i64>, _>("started_at")?.map(from_millis),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_millis),
        })
    }

    async fn stats(&self, id: &str) -> Result<CampaignStats, MarketingError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM campaign_recipients WHERE campaign_id = $1 GROUP BY status")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        let mut s = CampaignStats::default();
        for r in rows {
            let n = r.try_get::<i64, _>("n")?.max(0) as u64;
            match r.try_get::<String, _>("status")?.as_str() {
                // A claimed row is one in flight right now.
                "pending" | "claimed" => s.pending += n,
                "sent" => s.sent += n,
                "skipped" => s.skipped += n,
                "unconfirmed" => s.unconfirmed += n,
                _ => s.failed += n,
            }
        }
        Ok(s)
    }

    /// Who a segment reaches now: verified, active account holders who agreed
    /// to marketing (or did not object, where the basis is legitimate
    /// interest), minus every suppressed address.
    pub async fn audience(&self, segment: &Segment) -> Result<Audience, MarketingError> {
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.country, a.industry, a.interest, p.opted_in
             FROM accounts a LEFT JOIN marketing_preferences p ON p.subject = 'person:' || a.id
             WHERE a.status = 'active' AND a.email_verified_at IS NOT NULL ORDER BY a.id",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut plans: HashMap<String, BTreeSet<String>> = HashMap::new();
        if segment.plan.is_some() {
            for r in sqlx::query("SELECT account_id, plan FROM databases").fetch_all(self.db.pool()).await? {
                plans.entry(r.try_get("account_id")?).or_default().insert(r.try_get("plan")?);
            }
        }
        let suppressed: BTreeSet<String> = sqlx::query_scalar("SELECT email_hash FROM marketing_suppressions")
            .fetch_all(self.db.pool())
            .await?
            .into_iter()
            .collect();
        let default_in = self.default_opt_in();
        let mut out = Audience::default();
        for r in rows {
            let id: String = r.try_get("id")?;
            let field = |k: &str| r.try_get::<Option<String>, _>(k).ok().flatten();
            let matches = |want: &Option<String>, have: Option<String>| want.is_none() || want == &have;
            if !matches(&segment.country, field("country"))
                || !matches(&segment.industry, field("industry"))
                || !matches(&segment.interest, field("interest"))
            {
                continue;
            }
            if let Some(plan) = &segment.plan {
                let held = plans.get(&id);
                let ok = match plan.as_str() {
                    "none" => held.is_none_or(BTreeSet::is_empty),
                    p => held.is_some_and(|h| h.contains(p)),
                };
                if !ok {
                    continue;
                }
            }
            let opted_in = r.try_get::<Option<i64>, _>("opted_in")?.map(|v| v != 0).unwrap_or(default_in);
            if !opted_in {
                out.not_opted_in += 1;
                continue;
            }
            let email: String = r.try_get("email")?;
            if suppressed.contains(&crate::email_hash(&email)) {
                out.suppressed += 1;
                continue;
            }
            out.subjects.push(seldesk_domain::Subject::person(&id).into_string());
        }
        Ok(out)
    }

    /// The message as a recipient will read it (`{name}` filled in).
    pub fn render_message(&self, c: &Campaign, name: &str, token: &str) -> String {
        let body = c.body.replace("{name}", name);
        format!(
            "{body}\n\n-- \nYou get this because you agreed to hear from Seldesk.\nUnsubscribe with one click: {}\nChange your choice: {}\n",
            self.url(&format!("/marketing/unsubscribe/{token}")),
            self.url(&format!("/marketing/preferences/{token}")),
        )
    }

    /// Starts sending: the audience is fixed now, and a job sends it.
    pub async fn start_campaign(&self, actor: &Actor, id: &str) -> Result<Campaign, MarketingError> {
        marketing_only(actor)?;
        let c = self.load_campaign(id).await?;
        if c.status != CampaignStatus::Draft {
            return Err(MarketingError::Conflict("This campaign was sent already; create a new one.".into()));
        }
        let audience = self.audience(&c.segment).await?;
        if audience.subjects.is_empty() {
            return Err(MarketingError::Conflict(format!(
                "Nobody in this segment ({}) agreed to marketing; nothing to send.",
                c.segment.describe()
            )));
        }
        let now = to_millis(self.now());
        let mut tx = self.db.begin_write().await?;
        let started =
            sqlx::query("UPDATE campaigns SET status = 'sending', started_at = $1 WHERE id = $2 AND status = 'draft'")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if started == 0 {
            return Err(MarketingError::Conflict("This campaign is being sent already.".into()));
        }
        for subject in &audience.subjects {
            sqlx::query(
                "INSERT INTO campaign_recipients (campaign_id, subject, status, created_at, updated_at) VALUES ($1, $2, 'pending', $3, $3)",
            )
            .bind(id)
            .bind(subject)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        self.audit
            .record_in(
                &mut tx,
                actor,
                "campaign.started",
                None,
                Some(&format!("campaign:{id}")),
                serde_json::json!({ "recipients": audience.subjects.len(), "suppressed": audience.suppressed }),
            )
            .await?;
        tx.commit().await?;
        self.enqueue_send(id, None).await?;
        self.load_campaign(id).await
    }

    async fn enqueue_send(&self, id: &str, at: Option<OffsetDateTime>) -> Result<(), MarketingError> {
        let mut job = seldesk_jobs::NewJob::of(&crate::SendJob { campaign: id.to_string() }).max_attempts(20);
        if let Some(at) = at {
            job = job.run_at(at);
        }
        self.queue
            .enqueue(job)
            .await
            .map_err(|e| MarketingError::Internal(Fault::new("cannot schedule the campaign", e)))?;
        Ok(())
    }

    /// The job: sends pending messages in batches for up to a minute, then
    /// schedules the next run; finishes the campaign when nobody is left.
    pub async fn run_send_job(&self, id: &str) -> Result<SendRun, MarketingError> {
        let run = self.send_pending(id, &self.mailer.clone(), RUN_BUDGET).await?;
        if run == SendRun::More {
            let pause = time::Duration::try_from(self.config.batch_pause).unwrap_or(time::Duration::ZERO);
            self.enqueue_send(id, Some(self.now() + pause)).await?;
        }
        Ok(run)
    }

    /// Sends pending messages of a campaign through `transport` until none
    /// is left or `budget` is used up.
    pub async fn send_pending(
        &self,
        id: &str,
        transport: &dyn CampaignMail,
        budget: Duration,
    ) -> Result<SendRun, MarketingError> {
        let c = self.load_campaign(id).await?;
        if c.status != CampaignStatus::Sending {
            return Ok(SendRun::Finished);
        }
        // Rows a stopped run claimed may have gone out: never send them again.
        sqlx::query(
            "UPDATE campaign_recipients SET status = 'unconfirmed', updated_at = $1 WHERE campaign_id = $2 AND status = 'claimed'",
        )
        .bind(to_millis(self.now()))
        .bind(id)
        .execute(self.db.pool())
        .await?;
        let started = Instant::now();
        loop {
            let batch: Vec<String> = sqlx::query_scalar(
                "SELECT subject FROM campaign_recipients WHERE campaign_id = $1 AND status = 'pending' ORDER BY subject LIMIT $2",
            )
            .bind(id)
            .bind(i64::from(self.config.batch_size.max(1)))
            .fetch_all(self.db.pool())
            .await?;
            if batch.is_empty() {
                break;
            }
            for subject in &batch {
                self.send_one(&c, subject, transport).await?;
            }
            if started.elapsed() >= budget {
                return Ok(SendRun::More);
            }
            tokio::time::sleep(self.config.batch_pause).await;
        }
        let finished =
            sqlx::query("UPDATE campaigns SET status = 'sent', finished_at = $1 WHERE id = $2 AND status = 'sending'")
                .bind(to_millis(self.now()))
                .bind(id)
                .execute(self.db.pool())
                .await?
                .rows_affected();
        if finished > 0 {
            let stats = self.stats(id).await?;
            self.audit
                .record(
                    &Actor::System,
                    "campaign.sent",
                    None,
                    Some(&format!("campaign:{id}")),
                    serde_json::json!(stats),
                )
                .await?;
        }
        Ok(SendRun::Finished)
    }

    async fn mark(&self, id: &str, subject: &str, from: &str, to: &str) -> Result<u64, MarketingError> {
        Ok(sqlx::query(
            "UPDATE campaign_recipients SET status = $1, updated_at = $2 WHERE campaign_id = $3 AND subject = $4 AND status = $5",
        )
        .bind(to)
        .bind(to_millis(self.now()))
        .bind(id)
        .bind(subject)
        .bind(from)
        .execute(self.db.pool())
        .await?
        .rows_affected())
    }

    async fn send_one(&self, c: &Campaign, subject: &str, transport: &dyn CampaignMail) -> Result<(), MarketingError> {
        let account_id = subject.strip_prefix("person:").unwrap_or(subject);
        let row = sqlx::query("SELECT email, name FROM accounts WHERE id = $1 AND status = 'active'")
            .bind(account_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else {
            // Erased or being erased since the audience was fixed.
            self.mark(&c.id, subject, "pending", "skipped").await?;
            return Ok(());
        };
        let (email, name): (String, String) = (row.try_get("email")?, row.try_get("name")?);
        // Every opt-out counts up to the last moment, whatever list the
        // audience came from.
        if !self.preference(subject).await?.opted_in || self.suppressed(&email).await? {
            self.mark(&c.id, subject, "pending", "skipped").await?;
            return Ok(());
        }
        if self.mark(&c.id, subject, "pending", "claimed").await? == 0 {
            return Ok(()); // another run took it
        }
        let token = self.new_link(subject, &email).await?;
        let mail =
            OutgoingMail { to: email, subject: c.mail_subject.clone(), text: self.render_message(c, &name, &token) };
        let headers = [
            ("List-Unsubscribe", format!("<{}>", self.url(&format!("/marketing/unsubscribe/{token}")))),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".to_string()),
        ];
        match transport.send(&mail, &headers).await {
            Ok(()) => {
                self.mark(&c.id, subject, "claimed", "sent").await?;
            }
            Err(e) => {
                tracing::warn!(campaign = %c.id, error = %e, "a campaign message was not accepted");
                self.mark(&c.id, subject, "claimed", "failed").await?;
            }
        }
        Ok(())
    }

    /// Campaigns a person received (for their access export).
    pub(crate) async fn campaigns_of(&self, subject: &str) -> Result<Vec<serde_json::Value>, MarketingError> {
        let rows = sqlx::query(
            "SELECT c.mail_subject, r.status, r.updated_at FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
             WHERE r.subject = $1 ORDER BY r.updated_at",
        )
        .bind(subject)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("updated_at")?;
                Ok(serde_json::json!({
                    "campaign": r.try_get::<String, _>("mail_subject")?,
                    "status": r.try_get::<String, _>("status")?,
                    "at": from_millis(at).to_string(),
                }))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}
