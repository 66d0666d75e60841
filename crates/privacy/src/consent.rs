//! Cookie consent (CK-1…CK-5): the choices a browser made, recorded as
//! proof, and what they allow.

use std::sync::Arc;

use seldesk_domain::Clock;
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::PrivacyError;

/// The version of the banner's wording; recorded with each choice.
pub const BANNER_VERSION: &str = "2026-11-25";

/// What a browser allows beyond strictly necessary cookies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Choices {
    pub preferences: bool,
    pub analytics: bool,
    pub third_party: bool,
}

impl Choices {
    pub const ALL: Self = Self { preferences: true, analytics: true, third_party: true };
    pub const NONE: Self = Self { preferences: false, analytics: false, third_party: false };

    /// Global Privacy Control refuses analytics of both kinds.
    pub fn honour_gpc(self, gpc: bool) -> Self {
        if gpc { Self { analytics: false, third_party: false, ..self } } else { self }
    }

    /// Three digits for the cookie: preferences, analytics, third party.
    pub fn encode(self) -> String {
        [self.preferences, self.analytics, self.third_party].iter().map(|b| if *b { '1' } else { '0' }).collect()
    }

    pub fn decode(s: &str) -> Option<Self> {
        let b: Vec<bool> = s.chars().map(|c| c == '1').collect();
        (s.len() == 3 && s.chars().all(|c| c == '0' || c == '1')).then(|| Self {
            preferences: b[0],
            analytics: b[1],
            third_party: b[2],
        })
    }
}

/// A recorded choice.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRecord {
    pub consent_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub choices: Choices,
    pub policy_version: String,
    pub banner_version: String,
    pub gpc: bool,
    pub withdrawn: bool,
}

/// The consent store.
#[derive(Debug, Clone)]
pub struct Consents {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Consents {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Records a choice (or a withdrawal) as proof.
    pub async fn record(
        &self,
        consent_id: &str,
        subject: Option<&str>,
        choices: Choices,
        policy_version: &str,
        gpc: bool,
        withdrawn: bool,
    ) -> Result<(), PrivacyError> {
        sqlx::query(
            "INSERT INTO consents (consent_id, subject, at, preferences, analytics, third_party, policy_version, banner_version, gpc, withdrawn)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(consent_id)
        .bind(subject)
        .bind(to_millis(self.clock.now()))
        .bind(i64::from(choices.preferences))
        .bind(i64::from(choices.analytics))
        .bind(i64::from(choices.third_party))
        .bind(policy_version)
        .bind(BANNER_VERSION)
        .bind(i64::from(gpc))
        .bind(i64::from(withdrawn))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn query(&self, column: &'static str, value: &str) -> Result<Vec<ConsentRecord>, PrivacyError> {
        let sql = format!(
            "SELECT consent_id, at, preferences, analytics, third_party, policy_version, banner_version, gpc, withdrawn
             FROM consents WHERE {column} = $1 ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(ConsentRecord {
                    consent_id: r.try_get("consent_id")?,
                    at: from_millis(r.try_get("at")?),
                    choices: Choices {
                        preferences: r.try_get::<i64, _>("preferences")? != 0,
                        analytics: r.try_get::<i64, _>("analytics")? != 0,
                        third_party: r.try_get::<i64, _>("third_party")? != 0,
                    },
                    policy_version: r.try_get("policy_version")?,
                    banner_version: r.try_get("banner_version")?,
                    gpc: r.try_get::<i64, _>("gpc")? != 0,
                    withdrawn: r.try_get::<i64, _>("withdrawn")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The history of one browser's choices.
    pub async fn history(&self, consent_id: &str) -> Result<Vec<ConsentRecord>, PrivacyError> {
        self.query("consent_id", consent_id).await
    }

    /// Choices made while signed in as a person (for their access export).
    pub async fn for_subject(&self, subject: &str) -> Result<Vec<ConsentRecord>, PrivacyError> {
        self.query("subject", subject).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // promise: CK-5
    #[test]
    fn gpc_refuses_analytics_and_choices_round_trip() {
        assert_eq!(Choices::ALL.honour_gpc(true), Choices { preferences: true, analytics: false, third_party: false });
        assert_eq!(Choices::decode(&Choices::ALL.encode()), Some(Choices::ALL));
        assert_eq!(Choices::decode("101"), Some(Choices { preferences: true, analytics: false, third_party: true }));
        assert_eq!(Choices::decode("12x"), None);
    }
}

/// The consent records linked to an account holder (choices made while
/// signed in); anonymous browsers' records are not linked to anyone.
#[derive(Debug, Clone)]
pub struct ConsentRecords {
    pub db: Db,
}

impl crate::PersonalDataStore for ConsentRecords {
    fn section(&self) -> &'static str {
        "cookie_consents"
    }

    fn category(&self) -> &'static str {
        "consent_record"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["consents"]
    }

    fn export<'a>(&'a self, _subject: &'a str) -> crate::BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        // The access export lists them in its own section already.
        Box::pin(async move { Ok(serde_json::Value::Null) })
    }

    fn erase<'a>(&'a self, person: &'a crate::Person) -> crate::BoxFuture<'a, Result<crate::Erased, PrivacyError>> {
        Box::pin(async move {
            let n = sqlx::query("DELETE FROM consents WHERE subject = $1")
                .bind(&person.subject)
                .execute(self.db.pool())
                .await?
                .rows_affected();
            let mut out = crate::Erased { records: n, ..Default::default() };
            if n > 0 {
                out.erased.push(format!("{n} record(s) of the cookie choices you made while signed in"));
            }
            Ok(out)
        })
    }
}
