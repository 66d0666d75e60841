//! The person's side: everything marketing holds about them in their access
//! export, erased with them (the suppression list keeps only a hash, so an
//! opt-out outlives the erasure), and retention of `marketing_contact`.

use seldesk_privacy::{BoxFuture, Candidate, Census, Erased, Eraser, Person, PersonalDataStore, PrivacyError};
use seldesk_store::{from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

use crate::prefs::CATEGORY;
use crate::{Marketing, MarketingError};

fn privacy(e: MarketingError) -> PrivacyError {
    match e {
        MarketingError::Privacy(p) => p,
        MarketingError::Query(q) => PrivacyError::Query(q),
        other => PrivacyError::Invalid(other.to_string()),
    }
}

/// Marketing records in the access export, erased with the account.
pub struct MarketingRecords {
    marketing: Marketing,
}

impl MarketingRecords {
    pub fn new(marketing: Marketing) -> Self {
        Self { marketing }
    }
}

impl Marketing {
    /// Everything about `subject`: choice, registrations (with who received
    /// them), referrals, campaigns received.
    pub async fn export_of(&self, subject: &str) -> Result<serde_json::Value, MarketingError> {
        let registrations: Vec<serde_json::Value> = self
            .registrations_of(subject)
            .await?
            .into_iter()
            .map(|(r, e)| {
                serde_json::json!({
                    "event": e.title, "starts_at": e.starts_at.to_string(), "name": r.name, "email": r.email,
                    "phone": r.phone, "company": r.company, "registered_at": r.created_at.to_string(),
                    "shared_with": e.recipient_names(),
                })
            })
            .collect();
        Ok(serde_json::json!({
            "marketing_choice": self.preference(subject).await?,
            "event_registrations": registrations,
            "partner_referrals": self.referrals_of(subject).await?,
            "campaigns_received": self.campaigns_of(subject).await?,
            "note": "Transfers to organisers, sponsors and partners are listed under disclosures_to_third_parties.",
        }))
    }

    /// Erases everything about `subject` except the hashed suppression entry.
    pub async fn erase_subject(&self, subject: &str) -> Result<u64, MarketingError> {
        let mut n = 0;
        let regs: Vec<String> = sqlx::query_scalar("SELECT id FROM event_registrations WHERE subject = $1")
            .bind(subject)
            .fetch_all(self.db.pool())
            .await?;
        for id in regs {
            n += self.erase_registration(&id).await?;
        }
        let refs: Vec<String> = sqlx::query_scalar("SELECT id FROM partner_referrals WHERE subject = $1")
            .bind(subject)
            .fetch_all(self.db.pool())
            .await?;
        for id in refs {
            n += self.erase_referral(&id).await?;
        }
        for sql in [
            "DELETE FROM marketing_preferences WHERE subject = $1",
            "DELETE FROM campaign_recipients WHERE subject = $1",
            "DELETE FROM marketing_links WHERE subject = $1",
        ] {
            n += sqlx::query(sql).bind(subject).execute(self.db.pool()).await?.rows_affected();
        }
        Ok(n)
    }
}

impl PersonalDataStore for MarketingRecords {
    fn section(&self) -> &'static str {
        "marketing"
    }

    fn category(&self) -> &'static str {
        CATEGORY
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "event_registrations",
            "partner_referrals",
            "marketing_preferences",
            "campaign_recipients",
            "marketing_links",
            "marketing_transfers",
        ]
    }

    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        Box::pin(async move { self.marketing.export_of(subject).await.map_err(privacy) })
    }

    fn erase<'a>(&'a self, person: &'a Person) -> BoxFuture<'a, Result<Erased, PrivacyError>> {
        Box::pin(async move {
            // Registrations and referrals made before signing in carry their
            // own `contact:` reference; the address finds them.
            let mut subjects: Vec<String> = vec![person.subject.clone()];
            for sql in [
                "SELECT DISTINCT subject FROM event_registrations WHERE LOWER(email) = $1",
                "SELECT DISTINCT subject FROM partner_referrals WHERE LOWER(email) = $1",
            ] {
                let found: Vec<String> = sqlx::query_scalar(sql)
                    .bind(&person.email)
                    .fetch_all(self.marketing.db.pool())
                    .await
                    .map_err(PrivacyError::Query)?;
                subjects.extend(found);
            }
            subjects.sort();
            subjects.dedup();
            let mut n = 0;
            for subject in &subjects {
                n += self.marketing.erase_subject(subject).await.map_err(privacy)?;
            }
            let mut out = Erased { records: n, ..Default::default() };
            if n > 0 {
                out.erased.push(format!(
                    "{n} marketing record(s): your marketing choice, event registrations, partner requests and the campaigns sent to you"
                ));
            }
            if self.marketing.suppressed(&person.email).await.map_err(privacy)? {
                out.kept.push(
                    "a one-way hash of your e-mail address on our do-not-contact list, so that we never send you marketing again (kept as long as we send marketing)".into(),
                );
            }
            Ok(out)
        })
    }
}

/// Retention of `marketing_contact`: each record goes its period after it was made.
pub struct MarketingEraser {
    marketing: Marketing,
}

impl MarketingEraser {
    pub fn new(marketing: Marketing) -> Self {
        Self { marketing }
    }
}

/// (record prefix, query of id, subject and start for records started by $1).
const SOURCES: [(&str, &str); 5] = [
    ("registration", "SELECT id, subject, created_at AS start FROM event_registrations WHERE created_at <= $1"),
    ("referral", "SELECT id, subject, created_at AS start FROM partner_referrals WHERE created_at <= $1"),
    (
        "recipient",
        "SELECT campaign_id || ' ' || subject AS id, subject, created_at AS start FROM campaign_recipients WHERE created_at <= $1",
    ),
    ("link", "SELECT token_hash AS id, subject, created_at AS start FROM marketing_links WHERE created_at <= $1"),
    (
        "preference",
        "SELECT subject AS id, subject, changed_at AS start FROM marketing_preferences WHERE changed_at <= $1",
    ),
];

impl Eraser for MarketingEraser {
    fn category(&self) -> &'static str {
        CATEGORY
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (prefix, sql) in SOURCES {
                let rows = sqlx::query(sql).bind(to_millis(cutoff)).fetch_all(self.marketing.db.pool()).await?;
                for r in rows {
                    out.push(Candidate {
                        record: format!("{prefix}:{}", r.try_get::<String, _>("id")?),
                        subject: Some(r.try_get("subject")?),
                        start: from_millis(r.try_get("start")?),
                        country: None,
                    });
                }
            }
            out.sort_by_key(|c| c.start);
            Ok(out)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let m = &self.marketing;
            let mut n = 0;
            for c in records {
                let Some((prefix, id)) = c.record.split_once(':') else { continue };
                n += match prefix {
                    "registration" => m.erase_registration(id).await.map_err(privacy)?,
                    "referral" => m.erase_referral(id).await.map_err(privacy)?,
                    "recipient" => {
                        let Some((campaign, subject)) = id.split_once(' ') else { continue };
                        sqlx::query("DELETE FROM campaign_recipients WHERE campaign_id = $1 AND subject = $2")
                            .bind(campaign)
                            .bind(subject)
                            .execute(m.db.pool())
                            .await?
                            .rows_affected()
                    }
                    "link" => sqlx::query("DELETE FROM marketing_links WHERE token_hash = $1")
                        .bind(id)
                        .execute(m.db.pool())
                        .await?
                        .rows_affected(),
                    "preference" => sqlx::query("DELETE FROM marketing_preferences WHERE subject = $1")
                        .bind(id)
                        .execute(m.db.pool())
                        .await?
                        .rows_affected(),
                    _ => 0,
                };
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let mut live = 0u64;
            let mut oldest: Option<i64> = None;
            for (_, sql) in SOURCES {
                // The same queries with no cutoff: every record counts.
                let rows = sqlx::query(sql).bind(i64::MAX).fetch_all(self.marketing.db.pool()).await?;
                live += rows.len() as u64;
                for r in rows {
                    let s: i64 = r.try_get("start")?;
                    oldest = Some(oldest.map_or(s, |o| o.min(s)));
                }
            }
            Ok(Census { live, oldest: oldest.map(from_millis) })
        })
    }
}
