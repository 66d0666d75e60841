//! Personal access tokens: credentials an account holder makes for scripts
//! and integrations, each limited to scopes and an expiry, shown once and
//! kept only as a hash. Unlike a sign-in token (which carries every scope of
//! its account), a personal token reaches only what its scopes name, cannot
//! manage tokens, and every use is counted and recorded in the account's
//! activity.

use seldesk_store::{from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::AccountError;
use crate::secret::{token, token_hash};
use crate::service::{Account, Accounts};

/// What a personal token tells apart from a sign-in token: its prefix, also
/// what secret scanners look for in leaked code.
pub const TOKEN_PREFIX: &str = "sdpat_";

/// The longest a personal token may live.
pub const MAX_DAYS: i64 = 366;

/// How many live tokens an account may hold.
pub const MAX_TOKENS: i64 = 50;

/// Uses of one token within this window share one entry in the account's
/// activity (the count and the last route are kept on the token at every use).
const AUDIT_WINDOW: Duration = Duration::hours(1);

/// What a token may reach. A write scope does not imply its read scope: a
/// token that only adds contacts cannot read them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "account:read")]
    AccountRead,
    #[serde(rename = "account:write")]
    AccountWrite,
    #[serde(rename = "databases:read")]
    DatabasesRead,
    #[serde(rename = "databases:write")]
    DatabasesWrite,
    #[serde(rename = "billing:read")]
    BillingRead,
    #[serde(rename = "billing:write")]
    BillingWrite,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::AccountRead,
        Scope::AccountWrite,
        Scope::DatabasesRead,
        Scope::DatabasesWrite,
        Scope::BillingRead,
        Scope::BillingWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountRead => "account:read",
            Self::AccountWrite => "account:write",
            Self::DatabasesRead => "databases:read",
            Self::DatabasesWrite => "databases:write",
            Self::BillingRead => "billing:read",
            Self::BillingWrite => "billing:write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What the scope lets a token do, in the account page's words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::AccountRead => "read your profile and your personal-data requests",
            Self::AccountWrite => "change your profile and make personal-data requests",
            Self::DatabasesRead => "list your databases and read their contents, backups and exports",
            Self::DatabasesWrite => "create, change, restore, move and remove databases and their contents",
            Self::BillingRead => "read plans, subscriptions and invoices",
            Self::BillingWrite => "subscribe, change plans and pay",
        }
    }
}

/// A personal token as its owner sees it (never the token itself).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub last_route: Option<String>,
    pub uses: i64,
}

impl ApiToken {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at <= now
    }

    pub fn scope_names(&self) -> String {
        self.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// What a new token is to be.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Days until it expires, 1..=[`MAX_DAYS`].
    pub days: i64,
}

impl NewToken {
    /// Reads the form or API fields, naming the one at fault.
    pub fn parse(name: &str, scopes: &[String], days: i64) -> Result<Self, AccountError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(AccountError::invalid(
                "name",
                "Give the token a name of 1 to 60 characters, saying where it is used.",
            ));
        }
        if name.chars().any(|c| c.is_control() || seldesk_domain::is_bidi_control(c)) {
            return Err(AccountError::invalid("name", "The name cannot hold control or text-direction characters."));
        }
        let mut parsed = Vec::new();
        for s in scopes {
            let scope = Scope::parse(s.trim()).ok_or_else(|| {
                AccountError::invalid(
                    "scopes",
                    format!(
                        "\"{}\" is not a scope; choose among {}.",
                        s.chars().take(40).collect::<String>(),
                        Scope::ALL.map(Scope::as_str).join(", ")
                    ),
                )
            })?;
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        if parsed.is_empty() {
            return Err(AccountError::invalid("scopes", "Choose at least one scope: what the token may reach."));
        }
        parsed.sort();
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(AccountError::invalid("days", format!("A token lives from 1 to {MAX_DAYS} days.")));
        }
        Ok(Self { name: name.to_string(), scopes: parsed, days })
    }
}

/// The account and scopes a personal token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: String,
    pub account_id: String,
    pub scopes: Vec<Scope>,
}

fn token_from_row(r: &sqlx::any::AnyRow) -> Result<ApiToken, sqlx::Error> {
    let scopes: String = r.try_get("scopes")?;
    Ok(ApiToken {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        created_at: from_millis(r.try_get("created_at")?),
        expires_at: from_millis(r.try_get("expires_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(from_millis),
        last_route: r.try_get("last_route")?,
        uses: r.try_get("uses")?,
    })
}

impl Accounts {
    /// Makes a personal token; returns it with the token itself, which is
    /// never stored and cannot be shown again.
    pub async fn create_api_token(&self, account: &Account, new: NewToken) -> Result<(ApiToken, String), AccountError> {
        let now = self.now();
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE account_id = $1 AND expires_at > $2")
            .bind(&account.id)
            .bind(to_millis(now))
            .fetch_one(self.db.pool())
            .await?;
        if live >= MAX_TOKENS {
            return Err(AccountError::Conflict(format!(
                "You already hold {MAX_TOKENS} tokens; revoke one you no longer use first."
            )));
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let secret = format!("{TOKEN_PREFIX}{}", token()?);
        let scopes = new.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        let expires = now + Duration::days(new.days);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, account_id, name, token_hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&account.id)
        .bind(&new.name)
        .bind(token_hash(&secret))
        .bind(&scopes)
        .bind(to_millis(now))
        .bind(to_millis(expires))
        .execute(&mut *tx)
        .await?;
        self.audit
            .record_in(
                &mut tx,
                &account.actor(),
                "account.token_created",
                Some(&account.subject()),
                Some(&format!("api_token:{id}")),
                serde_json::json!({ "name": new.name, "scopes": scopes, "expires_at": expires.date().to_string() }),
            )
            .await?;
        tx.commit().await?;
        let made = ApiToken {
            id,
            name: new.name,
            scopes: new.scopes,
            created_at: now,
            expires_at: expires,
            last_used_at: None,
            last_route: None,
            uses: 0,
        };
        Ok((made, secret))
    }

    /// The account's personal tokens, newest first, expired ones included
    /// (marked by their date) until revoked.
    pub async fn api_tokens(&self, account_id: &str) -> Result<Vec<ApiToken>, AccountError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, expires_at, last_used_at, last_route, uses
             FROM api_tokens WHERE account_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(account_id)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(token_from_row).collect::<Result<_, _>>()?)
    }

    /// Revokes a token of the account: it stops working at once and is
    /// deleted (the activity keeps that it existed and was revoked).
    pub async fn revoke_api_token(&self, account: &Account, token_id: &str) -> Result<(), AccountError> {
        let mut tx = self.db.begin_write().await?;
        let gone = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND account_id = $2")
            .bind(token_id)
            .bind(&account.id)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Err(AccountError::NotFound("You hold no token with this id; it may be revoked already.".into()));
        }
        self.audit
            .record_in(
                &mut tx,
                &account.actor(),
                "account.token_revoked",
                Some(&account.subject()),
                Some(&format!("api_token:{token_id}")),
                serde_json::json!({}),
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What a presented personal token grants, counting the use: `None`
    /// when it is unknown, revoked or expired. `route` is the route
    /// template used (`GET /api/v1/databases/{id}`), never the address with
    /// its values.
    pub async fn use_api_token(&self, secret: &str, route: &str) -> Result<Option<TokenGrant>, AccountError> {
        let now = self.now();
        let row = sqlx::query(
            "SELECT id, account_id, scopes, audited_at FROM api_tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash(secret))
        .bind(to_millis(now))
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let account_id: String = row.try_get("account_id")?;
        let scopes: String = row.try_get("scopes")?;
        let audited: Option<i64> = row.try_get("audited_at")?;
        let route: String = route.chars().take(200).collect();
        let due = audited.is_none_or(|t| from_millis(t) + AUDIT_WINDOW <= now);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE api_tokens SET uses = uses + 1, last_used_at = $1, last_route = $2, audited_at = CASE WHEN $3 = 1 THEN $1 ELSE audited_at END WHERE id = $4",
        )
        .bind(to_millis(now))
        .bind(&route)
        .bind(i64::from(due))
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if due {
            self.audit
                .record_in(
                    &mut tx,
                    &seldesk_domain::Actor::Person { id: account_id.clone() },
                    "account.token_used",
                    Some(&crate::service::subject_of(&account_id)),
                    Some(&format!("api_token:{id}")),
                    serde_json::json!({ "route": route, "window_minutes": AUDIT_WINDOW.whole_minutes() }),
                )
                .await?;
        }
        tx.commit().await?;
        Ok(Some(TokenGrant { token_id: id, account_id, scopes: scopes.split(' ').filter_map(Scope::parse).collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_the_way_they_are_written() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
        }
        assert_eq!(Scope::parse("databases:admin"), None);
    }

    #[test]
    fn a_new_token_names_the_field_at_fault() {
        let scopes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = NewToken::parse(" ci ", &scopes(&["databases:write", "databases:read", "databases:read"]), 30)
            .expect("valid");
        assert_eq!(ok.name, "ci");
        assert_eq!(ok.scopes, vec![Scope::DatabasesRead, Scope::DatabasesWrite]);
        let field = |r: Result<NewToken, AccountError>| match r {
            Err(AccountError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(NewToken::parse("", &scopes(&["account:read"]), 30)), "name");
        assert_eq!(field(NewToken::parse("x\u{202e}", &scopes(&["account:read"]), 30)), "name");
        assert_eq!(field(NewToken::parse("ci", &scopes(&[]), 30)), "scopes");
        assert_eq!(field(NewToken::parse("ci", &scopes(&["root"]), 30)), "scopes");
        assert_eq!(field(NewToken::parse("ci", &scopes(&["account:read"]), 0)), "days");
        assert_eq!(field(NewToken::parse("ci", &scopes(&["account:read"]), MAX_DAYS + 1)), "days");
    }
}
