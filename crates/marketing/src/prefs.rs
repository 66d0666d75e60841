//! A person's marketing choice, the links in every message that lead to it,
//! and the suppression list that makes an opt-out permanent (MKT-1).

use seldesk_accounts::secret;
use seldesk_domain::Actor;
use seldesk_domain::policy::LegalBasis;
use seldesk_store::{from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::{Marketing, MarketingError, email_hash};

/// The policy category that holds marketing choices.
pub(crate) const CATEGORY: &str = "marketing_contact";

/// Why we may send someone marketing mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Only after the person said yes; the box is never pre-ticked.
    Consent,
    /// Customers get it until they say no.
    LegitimateInterest,
}

impl Basis {
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::Consent => "consent",
            Basis::LegitimateInterest => "legitimate_interest",
        }
    }
}

/// A person's marketing choice as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Preference {
    pub opted_in: bool,
    pub basis: Basis,
    /// Where the choice was made (`signup`, `account`, `unsubscribe_link`, …);
    /// `default` when the person never chose.
    pub source: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub changed_at: Option<OffsetDateTime>,
}

/// What a message's link identifies: a person and their address's hash.
#[derive(Debug, Clone)]
pub struct Link {
    pub subject: String,
    pub email_hash: String,
}

impl Marketing {
    /// The basis the policy file gives for marketing mail.
    pub fn basis(&self) -> Basis {
        match self.policy.category(CATEGORY).map(|c| c.legal_basis) {
            Some(LegalBasis::LegitimateInterest) => Basis::LegitimateInterest,
            // Anything else, or no category at all, needs consent: the safe side.
            _ => Basis::Consent,
        }
    }

    /// Whether a sign-up form ticks the marketing box in advance.
    pub fn default_opt_in(&self) -> bool {
        self.basis() == Basis::LegitimateInterest
    }

    /// A person's marketing choice.
    pub async fn preference(&self, subject: &str) -> Result<Preference, MarketingError> {
        let row = sqlx::query("SELECT opted_in, source, changed_at FROM marketing_preferences WHERE subject = $1")
            .bind(subject)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => Preference {
                opted_in: r.try_get::<i64, _>("opted_in")? != 0,
                basis: self.basis(),
                source: r.try_get("source")?,
                changed_at: Some(from_millis(r.try_get("changed_at")?)),
            },
            None => Preference {
                opted_in: self.default_opt_in(),
                basis: self.basis(),
                source: "default".into(),
                changed_at: None,
            },
        })
    }

    /// Records a choice. Saying no also puts the address on the suppression
    /// list; saying yes again (the person's own act) takes it off.
    pub async fn set_preference(
        &self,
        actor: &Actor,
        subject: &str,
        email: &str,
        opted_in: bool,
        source: &str,
    ) -> Result<Preference, MarketingError> {
        let action = if opted_in { "marketing.opted_in" } else { "marketing.opted_out" };
        self.record_choice(actor, subject, &email_hash(email), opted_in, source, action).await?;
        self.preference(subject).await
    }

    /// The one place a choice is written: the preference, the suppression
    /// entry (by hash), and the audit entry, in one transaction.
    async fn record_choice(
        &self,
        actor: &Actor,
        subject: &str,
        hash: &str,
        opted_in: bool,
        source: &str,
        action: &str,
    ) -> Result<(), MarketingError> {
        let now = to_millis(self.now());
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO marketing_preferences (subject, opted_in, basis, source, changed_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (subject) DO UPDATE SET opted_in = excluded.opted_in, basis = excluded.basis,
                 source = excluded.source, changed_at = excluded.changed_at",
        )
        .bind(subject)
        .bind(i64::from(opted_in))
        .bind(self.basis().as_str())
        .bind(source)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if opted_in {
            sqlx::query("DELETE FROM marketing_suppressions WHERE email_hash = $1")
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO marketing_suppressions (email_hash, source, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (email_hash) DO NOTHING",
            )
            .bind(hash)
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        self.audit
            .record_in(
                &mut tx,
                actor,
                action,
                Some(subject),
                None,
                serde_json::json!({ "source": source, "basis": self.basis().as_str() }),
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether an address is on the suppression list.
    pub async fn suppressed(&self, email: &str) -> Result<bool, MarketingError> {
        self.hash_suppressed(&email_hash(email)).await
    }

    async fn hash_suppressed(&self, hash: &str) -> Result<bool, MarketingError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM marketing_suppressions WHERE email_hash = $1")
            .bind(hash)
            .fetch_one(self.db.pool())
            .await?;
        Ok(n > 0)
    }

    /// A new private link for a person's address; returns the token (only
    /// its hash is stored).
    pub async fn new_link(&self, subject: &str, email: &str) -> Result<String, MarketingError> {
        let token = secret::token()?;
        sqlx::query(
            "INSERT INTO marketing_links (token_hash, subject, email_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(secret::token_hash(&token))
        .bind(subject)
        .bind(email_hash(email))
        .bind(to_millis(self.now()))
        .execute(self.db.pool())
        .await?;
        Ok(token)
    }

    /// The person and address behind a link.
    pub async fn link(&self, token: &str) -> Result<Link, MarketingError> {
        let gone = || {
            MarketingError::NotFound(
                "This link is not valid (any more). Your choices are on your account page, or write to our Helpdesk."
                    .into(),
            )
        };
        if token.len() < 20 || token.len() > 100 {
            return Err(gone());
        }
        let row = sqlx::query("SELECT subject, email_hash FROM marketing_links WHERE token_hash = $1")
            .bind(secret::token_hash(token))
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(gone)?;
        Ok(Link { subject: row.try_get("subject")?, email_hash: row.try_get("email_hash")? })
    }

    /// One click from a message (RFC 8058): no sign-in, no questions. The
    /// address goes on the suppression list even when the person's other
    /// records are gone.
    pub async fn unsubscribe(&self, token: &str) -> Result<Link, MarketingError> {
        let link = self.link(token).await?;
        let (subject, hash) = (&link.subject, &link.email_hash);
        self.record_choice(&Actor::System, subject, hash, false, "unsubscribe_link", "marketing.unsubscribed").await?;
        Ok(link)
    }

    /// Whether a link's address is on the suppression list.
    pub async fn link_suppressed(&self, link: &Link) -> Result<bool, MarketingError> {
        self.hash_suppressed(&link.email_hash).await
    }

    /// Opting in again from a message's preference page: the person's own act.
    pub async fn resubscribe(&self, token: &str) -> Result<Link, MarketingError> {
        let link = self.link(token).await?;
        let (subject, hash) = (&link.subject, &link.email_hash);
        self.record_choice(&Actor::System, subject, hash, true, "preference_page", "marketing.opted_in").await?;
        Ok(link)
    }
}
