//! The end of an account without an erasure request (ACC-6): a closed
//! account is erased when the policy's `account_contact` period after
//! closure is over, an idle one (no sign-in, no database, no invoice for the
//! `idle_account` period) after an e-mail warning. Both go through the same
//! erasure as a request, and a stuck erasure is finished the same way.

use seldesk_domain::Fault;
use std::sync::Arc;

use seldesk_domain::Actor;
use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, ErasureReason, PrivacyError};
use seldesk_store::{from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{AccountError, Accounts};

/// Job kind: warn owners of idle accounts before they are erased.
pub const JOB_IDLE_WARNINGS: &str = "accounts.idle_warnings";

pub use seldesk_privacy::{AccountActivity, Activity};

fn privacy(e: AccountError) -> PrivacyError {
    match e {
        AccountError::Privacy(p) => p,
        AccountError::Query(q) => PrivacyError::Query(q),
        other => PrivacyError::Invalid(other.to_string()),
    }
}

/// The tables the account erasure itself owns (the stores own the rest).
pub const CORE_TABLES: &[&str] = &[
    "accounts",
    "signins",
    "auth_tokens",
    "sessions",
    "policy_notices",
    "access_exports",
    "tickets",
    "ticket_messages",
    "rate_limits",
    "api_tokens",
    "idempotency_keys",
];

impl Accounts {
    /// Start-up check: every table with personal data has exactly one owner.
    pub fn check_owners(&self) -> Result<(), PrivacyError> {
        seldesk_privacy::check_owners(CORE_TABLES, &self.stores)
    }

    /// Registers a store whose records keep accounts in use.
    pub fn with_activity(mut self, source: Arc<dyn AccountActivity>) -> Self {
        self.activity.push(source);
        self
    }

    /// When the account was last used: sign-up, a successful sign-in, or a
    /// store's last record; `None` while something of it is live.
    pub async fn last_activity(&self, account_id: &str) -> Result<Option<OffsetDateTime>, AccountError> {
        let row = sqlx::query(
            "SELECT a.created_at, (SELECT MAX(at) FROM signins s WHERE s.account_id = a.id AND s.success = 1) AS signed_in
             FROM accounts a WHERE a.id = $1",
        )
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| AccountError::NotFound("No such account.".into()))?;
        let mut last = from_millis(row.try_get("created_at")?);
        if let Some(at) = row.try_get::<Option<i64>, _>("signed_in")? {
            last = last.max(from_millis(at));
        }
        for source in &self.activity {
            match source.activity(account_id).await? {
                Activity::None => {}
                Activity::Live => return Ok(None),
                Activity::Last(at) => last = last.max(at),
            }
        }
        Ok(Some(last))
    }

    fn idle_period(&self) -> Result<seldesk_domain::policy::Period, AccountError> {
        self.policy
            .retention("idle_account")
            .map(|r| r.keep)
            .ok_or_else(|| AccountError::Internal(Fault::msg("the policy file has no retention rule for idle_account")))
    }

    /// Open accounts not used since `before` (by sign-up or sign-in), with
    /// when they were warned; the stores are asked afterwards.
    async fn quiet_accounts(&self, before: OffsetDateTime) -> Result<Vec<(String, Option<i64>)>, AccountError> {
        let rows = sqlx::query(
            "SELECT a.id, a.idle_warned_at FROM accounts a WHERE a.status = 'active' AND a.created_at <= $1
               AND NOT EXISTS (SELECT 1 FROM signins s WHERE s.account_id = a.id AND s.success = 1 AND s.at > $1)
             ORDER BY a.created_at",
        )
        .bind(to_millis(before))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("idle_warned_at")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Warns the owners of accounts that will be erased as idle within the
    /// policy's warning period; each owner once per idle spell.
    pub async fn warn_idle_accounts(&self) -> Result<usize, AccountError> {
        let now = self.now();
        let idle = self.idle_period()?;
        let warning = self.policy.accounts.idle_warning;
        // Accounts that reach the idle period within the warning period.
        let horizon = warning.after(idle.before(now));
        let mut n = 0;
        for (id, warned) in self.quiet_accounts(horizon).await? {
            let Some(last) = self.last_activity(&id).await? else { continue };
            if last > horizon || warned.is_some_and(|w| from_millis(w) > last) {
                continue;
            }
            let account = self.account(&id).await?;
            // Never sooner than a full warning period after the e-mail.
            let erase_on = idle.after(last).max(warning.after(now)).date();
            self.mail(
                &account.email,
                "Your Seldesk account will be erased if it stays unused",
                format!(
                    "Hello {},\n\nYour Seldesk account has not been used since {} (no sign-in, no database, no \
                     invoice). As our privacy policy says, we do not keep unused accounts: it will be erased on \
                     {erase_on} unless you sign in before then.\n\nTo keep it, just sign in: {}/signin\n\n-- Seldesk\n",
                    account.name,
                    last.date(),
                    self.config.base_url
                ),
            )
            .await?;
            sqlx::query("UPDATE accounts SET idle_warned_at = $1 WHERE id = $2")
                .bind(to_millis(now))
                .bind(&id)
                .execute(self.db.pool())
                .await?;
            self.audit
                .record(
                    &Actor::System,
                    "account.idle_warned",
                    Some(&account.subject()),
                    None,
                    serde_json::json!({ "erase_on": erase_on.to_string() }),
                )
                .await?;
            n += 1;
        }
        Ok(n)
    }
}

/// Erases each account as an erasure request would (retention's reason).
async fn erase_all(accounts: &Accounts, records: &[Candidate]) -> Result<u64, PrivacyError> {
    for c in records {
        accounts.erase_person(&c.record, ErasureReason::Retention).await.map_err(privacy)?;
    }
    Ok(records.len() as u64)
}

/// Retention of `account_contact` (30 days after closure in the shipped
/// policy): closed accounts at the end of their period, and erasures that
/// were asked for but did not finish, go through the same erasure.
pub struct AccountEraser {
    pub accounts: Accounts,
}

impl Eraser for AccountEraser {
    fn category(&self) -> &'static str {
        "account_contact"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, closed_at AS since FROM accounts WHERE status = 'closed' AND closed_at <= $1
                 UNION ALL
                 SELECT id, updated_at AS since FROM accounts WHERE status = 'erasing' AND updated_at <= $1",
            )
            .bind(to_millis(cutoff))
            .fetch_all(self.accounts.db.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    let id: String = r.try_get("id")?;
                    Ok(Candidate {
                        subject: Some(crate::service::subject_of(&id)),
                        record: id,
                        start: from_millis(r.try_get("since")?),
                        country: None,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(erase_all(&self.accounts, records))
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(crate::erasers::count(
            &self.accounts.db,
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM accounts",
        ))
    }
}

/// Retention of `idle_account`: accounts unused for the policy's period,
/// whose owner was warned at least the warning period before.
pub struct IdleAccountEraser {
    pub accounts: Accounts,
}

impl Eraser for IdleAccountEraser {
    fn category(&self) -> &'static str {
        "idle_account"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let warned_by = self.accounts.policy.accounts.idle_warning.before(self.accounts.now());
            let mut out = Vec::new();
            for (id, warned) in self.accounts.quiet_accounts(cutoff).await.map_err(privacy)? {
                let Some(warned) = warned.map(from_millis) else { continue };
                let Some(last) = self.accounts.last_activity(&id).await.map_err(privacy)? else { continue };
                if last <= cutoff && warned > last && warned <= warned_by {
                    out.push(Candidate {
                        subject: Some(crate::service::subject_of(&id)),
                        record: id,
                        start: last,
                        country: None,
                    });
                }
            }
            Ok(out)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(erase_all(&self.accounts, records))
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(crate::erasers::count(
            &self.accounts.db,
            "SELECT COUNT(*) AS n, MIN(idle_warned_at) AS oldest FROM accounts WHERE idle_warned_at IS NOT NULL AND status = 'active'",
        ))
    }
}
