//! Accounts and sessions.

use seldesk_domain::Fault;
use std::path::PathBuf;

use secrecy::ExposeSecret;
use std::sync::Arc;

use seldesk_domain::{Actor, Clock, Policy};
use seldesk_jobs::Queue;
use seldesk_privacy::{AuditLog, DisclosureGate, ErasureLog};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::input::{self, ProfileUpdate, SignUp};
use crate::rate::{Budget, Spent};
use crate::secret::{hash_password, token, token_hash, verify_password};
use crate::{AccountError, Mailer, OutgoingMail, rate};

/// Settings of accounts and sessions.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Public address of the site, for links in e-mails (no trailing slash).
    pub base_url: String,
    /// Where access archives are kept, sealed: the blob store every node
    /// reaches (a download may come to any node), under `access/`.
    pub archives: seldesk_blob::SealedBlobs,
    /// Where access archives were written before they went to the blob
    /// store: what is left there is deleted with its row.
    pub exports_dir: PathBuf,
    /// A web session ends after this long without a request…
    pub idle: Duration,
    /// …and at the latest this long after sign-in.
    pub absolute: Duration,
    /// Lifetime of an API token.
    pub api_ttl: Duration,
}

/// An account holder's personal data, as stored (never the password).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub company: String,
    pub phone: Option<String>,
    pub industry: Option<String>,
    pub interest: Option<String>,
    pub invoice_by_post: bool,
    pub address: Option<String>,
    /// ISO 3166-1 alpha-2 code, when given.
    pub country: Option<String>,
    pub email_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub status: AccountStatus,
    /// Effective date of the policy version this person accepted (POL-2).
    pub policy_accepted: Option<String>,
}

/// Where an account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// In use: its holder can sign in.
    Active,
    /// Closed by its holder, kept for the period of the policy file; a
    /// sign-in with the password reopens it.
    Closed,
    /// An erasure has begun: nobody signs in again.
    Erasing,
}

impl AccountStatus {
    /// As stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Closed => "closed",
            Self::Erasing => "erasing",
        }
    }

    /// From the `status` column; a value this build does not know is
    /// taken as erasing, the state that lets nobody in.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "closed" => Self::Closed,
            _ => Self::Erasing,
        }
    }
}

impl Account {
    /// The opaque reference the audit trail and ledgers use.
    pub fn subject(&self) -> String {
        subject_of(&self.id)
    }

    pub fn actor(&self) -> Actor {
        Actor::Person { id: self.id.clone() }
    }
}

/// The opaque reference of an account holder.
pub fn subject_of(account_id: &str) -> String {
    seldesk_domain::Subject::person(account_id).into_string()
}

/// Which kind of session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Web,
    Api,
    Staff,
}

impl SessionKind {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Api => "api",
            Self::Staff => "staff",
        }
    }
}

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Account(String),
    Staff(String),
}

impl Principal {
    fn encode(&self) -> String {
        match self {
            Principal::Account(id) => format!("account:{id}"),
            Principal::Staff(id) => format!("staff:{id}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        match s.split_once(':')? {
            ("account", id) => Some(Principal::Account(id.to_string())),
            ("staff", id) => Some(Principal::Staff(id.to_string())),
            _ => None,
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub kind: SessionKind,
    pub principal: Principal,
    /// The form token bound to this session.
    pub csrf: secrecy::SecretString,
    pub expires_at: OffsetDateTime,
}

/// The accounts service.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) audit: AuditLog,
    pub(crate) erasure_log: ErasureLog,
    pub(crate) disclosures: DisclosureGate,
    pub(crate) mailer: Mailer,
    pub(crate) queue: Queue,
    pub(crate) config: AccountsConfig,
    /// Other stores about account holders: exported and erased with them.
    pub(crate) stores: Vec<Arc<dyn seldesk_privacy::PersonalDataStore>>,
    /// Stores whose records keep an account in use (not idle).
    pub(crate) activity: Vec<Arc<dyn crate::lifecycle::AccountActivity>>,
}

const ACCOUNT_COLUMNS: &str = "id, email, name, company, phone, industry, interest, invoice_by_post, address, country, email_verified_at, created_at, updated_at, status, policy_accepted";

fn account_from_row(r: &sqlx::any::AnyRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        company: r.try_get("company")?,
        phone: r.try_get("phone")?,
        industry: r.try_get("industry")?,
        interest: r.try_get("interest")?,
        invoice_by_post: r.try_get::<i64, _>("invoice_by_post")? != 0,
        address: r.try_get("address")?,
        country: r.try_get("country")?,
        email_verified: r.try_get::<Option<i64>, _>("email_verified_at")?.is_some(),
        created_at: from_millis(r.try_get("created_at")?),
        updated_at: from_millis(r.try_get("updated_at")?),
        status: AccountStatus::parse(&r.try_get::<String, _>("status")?),
        policy_accepted: r.try_get("policy_accepted")?,
    })
}

/// Sign-in attempts per address (all accounts): 30 per 15 minutes.
pub const SIGNIN_ADDRESS: Budget = Budget { kind: "signin-ip", limit: 30, base: Duration::minutes(15) };
/// Sign-in attempts per account from addresses it never signed in from: 5 per 15 minutes.
pub const SIGNIN_ACCOUNT: Budget = Budget { kind: "signin-account", limit: 5, base: Duration::minutes(15) };
/// Sign-in attempts per account from one familiar address: 10 per 15 minutes.
pub const SIGNIN_FAMILIAR: Budget = Budget { kind: "signin-familiar", limit: 10, base: Duration::minutes(15) };
/// How long the link of a "sign-ins were paused" e-mail works.
pub const SIGNIN_LINK_TTL: Duration = Duration::minutes(30);

pub(crate) fn refuse(spent: Spent) -> Result<(), AccountError> {
    match spent {
        Spent::Allowed => Ok(()),
        Spent::Refused { retry_after_secs, .. } => Err(AccountError::RateLimited { retry_after_secs }),
    }
}

/// Verifies a password on a blocking thread: argon2 takes tens of
/// milliseconds of CPU that the async workers should not spend.
pub(crate) async fn verify_password_off_thread(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false)
}

/// Hashes a password on a blocking thread, for the same reason.
pub(crate) async fn hash_password_off_thread(password: &str) -> Result<String, AccountError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Internal(Fault::new("password hashing stopped", e)))?
}

/// A real argon2id hash to verify against when no account matches, so a
/// wrong e-mail takes as long as a wrong password (made once, off the
/// async workers).
pub(crate) async fn dummy_hash() -> &'static str {
    static HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    HASH.get_or_init(|| async { hash_password_off_thread("no account has this password").await.unwrap_or_default() })
        .await
}

impl Accounts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        audit: AuditLog,
        erasure_log: ErasureLog,
        disclosures: DisclosureGate,
        mailer: Mailer,
        queue: Queue,
        config: AccountsConfig,
    ) -> Self {
        Self {
            db,
            clock,
            policy,
            audit,
            erasure_log,
            disclosures,
            mailer,
            queue,
            config,
            stores: Vec::new(),
            activity: Vec::new(),
        }
    }

    /// Adds a store whose data about account holders is part of their access
    /// export and goes with their account.
    pub fn with_store(mut self, store: Arc<dyn seldesk_privacy::PersonalDataStore>) -> Self {
        self.stores.push(store);
        self
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }

    pub(crate) async fn mail(&self, to: &str, subject: &str, text: String) -> Result<(), AccountError> {
        self.mailer.send(&OutgoingMail { to: to.to_string(), subject: subject.to_string(), text }).await
    }

    /// Creates an account (ACC-1) and sends the verification e-mail. The
    /// account works at once; it shows "e-mail not verified" until the link is used.
    pub async fn sign_up(&self, input: SignUp, ip: &str) -> Result<Account, AccountError> {
        let now = self.now();
        rate::hit(&self.db, "signup-ip", ip, 20, Duration::hours(1), now).await?;
        // Every field is checked; the API answers with the first problem.
        let input::CheckedSignUp { name, company, email, phone, industry, interest, address, country } =
            input.check().map_err(|mut problems| problems.remove(0))?;
        let exists =
            sqlx::query("SELECT id FROM accounts WHERE email = $1").bind(&email).fetch_optional(self.db.pool()).await?;
        if exists.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let hash = hash_password_off_thread(input.password.expose_secret()).await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, email, name, company, phone, industry, interest, invoice_by_post, address, password_hash,
                 created_at, updated_at, policy_accepted, policy_accepted_at, country)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $11, $13)",
        )
        .bind(&id)
        .bind(&email)
        .bind(&name)
        .bind(&company)
        .bind(&phone)
        .bind(&industry)
        .bind(&interest)
        .bind(i64::from(input.invoice_by_post))
        .bind(&address)
        .bind(&hash)
        .bind(to_millis(now))
        .bind(self.policy.current_version(now.date()).effective.to_string())
        .bind(&country)
        .execute(self.db.pool())
        .await;
        if let Err(e) = inserted {
            // A concurrent sign-up with the same address lost the race.
            if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                return Err(AccountError::EmailTaken);
            }
            return Err(e.into());
        }
        let account = self.account(&id).await?;
        self.audit
            .record(&account.actor(), "account.created", Some(&account.subject()), None, serde_json::json!({}))
            .await?;
        self.send_verification(&account).await?;
        Ok(account)
    }

    async fn new_link(&self, account_id: &str, purpose: &str, ttl: Duration) -> Result<String, AccountError> {
        let t = token()?;
        let now = self.now();
        sqlx::query("INSERT INTO auth_tokens (token_hash, account_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash(&t))
            .bind(account_id)
            .bind(purpose)
            .bind(to_millis(now + ttl))
            .bind(to_millis(now))
            .execute(self.db.pool())
            .await?;
        Ok(t)
    }

    /// Uses a single-use link; returns its account id.
    async fn use_link(&self, t: &str, purpose: &str) -> Result<String, AccountError> {
        let now = to_millis(self.now());
        let row = sqlx::query(
            "UPDATE auth_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING account_id",
        )
        .bind(now)
        .bind(token_hash(t))
        .bind(purpose)
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(r) => Ok(r.try_get("account_id")?),
            None => Err(AccountError::LinkExpired),
        }
    }

    async fn send_verification(&self, account: &Account) -> Result<(), AccountError> {
        let t = self.new_link(&account.id, "verify", Duration::days(7)).await?;
        let link = format!("{}/verify-email?token={t}", self.config.base_url);
        self.mail(
            &account.email,
            "Confirm your e-mail address for Seldesk",
            format!(
                "Hello {},\n\nPlease confirm that this is your e-mail address by opening this link within 7 days:\n\n{link}\n\nYour account already works; until you confirm, it shows \"e-mail not verified\".\n\nIf you did not sign up for Seldesk, ignore this message.\n\n-- Seldesk\n",
                account.name
            ),
        )
        .await
    }

    /// Confirms an e-mail address from the link.
    pub async fn verify_email(&self, t: &str) -> Result<Account, AccountError> {
        let id = self.use_link(t, "verify").await?;
        sqlx::query("UPDATE accounts SET email_verified_at = $1 WHERE id = $2")
            .bind(to_millis(self.now()))
            .bind(&id)
            .execute(self.db.pool())
            .await?;
        let account = self.account(&id).await?;
        self.audit
            .record(&account.actor(), "account.email_verified", Some(&account.subject()), None, serde_json::json!({}))
            .await?;
        Ok(account)
    }

    /// An account by id.
    /// The id of the account with this e-mail address, if any (staff tools).
    pub async fn account_id_by_email(&self, email: &str) -> Result<Option<String>, AccountError> {
        Ok(sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(self.db.pool())
            .await?)
    }

    pub async fn account(&self, id: &str) -> Result<Account, AccountError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
        row.as_ref().map(account_from_row).transpose()?.ok_or_else(|| AccountError::NotFound("No such account.".into()))
    }

    /// Checks e-mail and password under the sign-in budgets (ACC-3): every
    /// attempt is counted before its password is checked, per address and
    /// per account; an address that signed in to the account before has a
    /// budget of its own, so guesses from elsewhere cannot lock the owner
    /// out (docs/configuration.md, "Sign-in budgets").
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
        ip: &str,
        user_agent: &str,
    ) -> Result<Account, AccountError> {
        let now = self.now();
        let email = email.trim().to_lowercase();
        refuse(SIGNIN_ADDRESS.spend(&self.db, ip, now).await?)?;
        let row = sqlx::query("SELECT id, password_hash, status FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(self.db.pool())
            .await?;
        let (id, hash, status) = match &row {
            Some(r) => (
                Some(r.try_get::<String, _>("id")?),
                r.try_get::<String, _>("password_hash")?,
                AccountStatus::parse(&r.try_get::<String, _>("status")?),
            ),
            None => (None, dummy_hash().await.to_string(), AccountStatus::Erasing),
        };
        let familiar = match &id {
            Some(id) => self.familiar_address(id, ip, now).await?,
            None => false,
        };
        let (budget, key) = if familiar {
            (SIGNIN_FAMILIAR, format!("{email} {}", truncate_ip(ip)))
        } else {
            (SIGNIN_ACCOUNT, email.clone())
        };
        if let Spent::Refused { retry_after_secs, first } = budget.spend(&self.db, &key, now).await? {
            if first && let Some(id) = &id {
                self.warn_of_guesses(id, familiar).await?;
            }
            return Err(AccountError::RateLimited { retry_after_secs });
        }
        // A closed account is still within its period: signing in reopens it.
        let open = matches!(status, AccountStatus::Active | AccountStatus::Closed);
        let ok = verify_password_off_thread(password.to_string(), hash).await && id.is_some() && open;
        if let Some(id) = &id {
            self.record_signin(id, ok, ip, user_agent).await?;
        }
        if !ok {
            return Err(AccountError::BadCredentials);
        }
        budget.refund(&self.db, &key).await?;
        rate::release(&self.db, SIGNIN_ADDRESS.kind, ip).await?;
        let account = self.account(&id.unwrap_or_default()).await?;
        if account.status == AccountStatus::Closed {
            self.reopen(&account).await?;
        }
        // POL-2: using the service after a new version took effect accepts it.
        self.accept_policy(&account, "continued use").await?;
        self.account(&account.id).await
    }

    async fn record_signin(&self, id: &str, ok: bool, ip: &str, user_agent: &str) -> Result<(), AccountError> {
        sqlx::query("INSERT INTO signins (account_id, at, success, ip, user_agent) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(to_millis(self.now()))
            .bind(i64::from(ok))
            .bind(truncate_ip(ip))
            .bind(
                seldesk_privacy::card::redact_card_numbers(&user_agent.chars().take(200).collect::<String>())
                    .into_owned(),
            )
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Whether the account signed in successfully from this address (its
    /// /24 or /48, as sign-ins are kept) in the last 90 days.
    async fn familiar_address(&self, id: &str, ip: &str, now: OffsetDateTime) -> Result<bool, AccountError> {
        let net = truncate_ip(ip);
        if net.is_empty() {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT 1 AS one FROM signins WHERE account_id = $1 AND ip = $2 AND success = 1 AND at > $3 LIMIT 1",
        )
        .bind(id)
        .bind(&net)
        .bind(to_millis(now - Duration::days(90)))
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Tells the owner that sign-ins were paused after wrong passwords, with
    /// a single-use link that signs them in from wherever they are.
    async fn warn_of_guesses(&self, id: &str, familiar: bool) -> Result<(), AccountError> {
        let account = self.account(id).await?;
        let t = self.new_link(id, "signin", SIGNIN_LINK_TTL).await?;
        let link = format!("{}/signin/link?token={t}", self.config.base_url);
        let place = if familiar { "an address you have used before" } else { "an address you have not used before" };
        let minutes = SIGNIN_LINK_TTL.whole_minutes();
        self.mail(
            &account.email,
            "Sign-ins to your Seldesk account were paused",
            format!(
                "Hello {},\n\nSomeone entered a wrong password for your Seldesk account several times from {place}, \
                 so sign-ins from there are paused for a while. Your password was not given away, and the places \
                 you usually sign in from still work.\n\nIf it was you, this link signs you in within {minutes} \
                 minutes; it works once:\n\n{link}\n\nIf it was not you, nothing is needed. If you use this \
                 password anywhere else, change it there.\n\n-- Seldesk\n",
                account.name
            ),
        )
        .await?;
        self.audit
            .record(&Actor::System, "account.signins_paused", Some(&account.subject()), None, serde_json::json!({}))
            .await?;
        Ok(())
    }

    /// Signs in with the single-use link of a "sign-ins were paused" e-mail:
    /// it stands for the password, and the address becomes familiar.
    pub async fn sign_in_with_link(&self, t: &str, ip: &str, user_agent: &str) -> Result<Account, AccountError> {
        let now = self.now();
        refuse(SIGNIN_ADDRESS.spend(&self.db, ip, now).await?)?;
        let id = self.use_link(t, "signin").await?;
        let account = self.account(&id).await?;
        if account.status != AccountStatus::Active {
            return Err(AccountError::LinkExpired);
        }
        self.record_signin(&id, true, ip, user_agent).await?;
        rate::release(&self.db, SIGNIN_ADDRESS.kind, ip).await?;
        self.audit
            .record(
                &account.actor(),
                "account.signed_in_by_link",
                Some(&account.subject()),
                None,
                serde_json::json!({}),
            )
            .await?;
        self.accept_policy(&account, "continued use").await?;
        self.account(&id).await
    }

    /// The account a sign-in link belongs to, without using it (the page
    /// that asks "sign in as …?").
    pub async fn signin_link_account(&self, t: &str) -> Result<Account, AccountError> {
        let row = sqlx::query(
            "SELECT account_id FROM auth_tokens WHERE token_hash = $1 AND purpose = 'signin' AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash(t))
        .bind(to_millis(self.now()))
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Err(AccountError::LinkExpired) };
        self.account(&row.try_get::<String, _>("account_id")?).await
    }

    /// Starts a session; returns the token for the cookie or bearer header.
    pub async fn create_session(
        &self,
        kind: SessionKind,
        principal: Principal,
    ) -> Result<(String, Session), AccountError> {
        let t = token()?;
        let csrf = token()?;
        let now = self.now();
        let expires = now + if kind == SessionKind::Api { self.config.api_ttl } else { self.config.absolute };
        sqlx::query(
            "INSERT INTO sessions (token_hash, kind, principal, csrf, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(token_hash(&t))
        .bind(kind.as_str())
        .bind(principal.encode())
        .bind(&csrf)
        .bind(to_millis(now))
        .bind(to_millis(expires))
        .execute(self.db.pool())
        .await?;
        Ok((t, Session { kind, principal, csrf: csrf.into(), expires_at: expires }))
    }

    /// The live session of a token: ended when past its absolute expiry or,
    /// for browser sessions, idle for too long.
    pub async fn session(&self, t: &str) -> Result<Option<Session>, AccountError> {
        let now = self.now();
        let row =
            sqlx::query("SELECT kind, principal, csrf, last_seen_at, expires_at FROM sessions WHERE token_hash = $1")
                .bind(token_hash(t))
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let kind = match row.try_get::<String, _>("kind")?.as_str() {
            "api" => SessionKind::Api,
            "staff" => SessionKind::Staff,
            _ => SessionKind::Web,
        };
        let last_seen = from_millis(row.try_get("last_seen_at")?);
        let expires = from_millis(row.try_get("expires_at")?);
        let idle_over = kind != SessionKind::Api && last_seen + self.config.idle <= now;
        if expires <= now || idle_over {
            self.end_session(t).await?;
            return Ok(None);
        }
        let Some(principal) = Principal::decode(&row.try_get::<String, _>("principal")?) else {
            return Ok(None);
        };
        if now - last_seen > Duration::minutes(1) {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(to_millis(now))
                .bind(token_hash(t))
                .execute(self.db.pool())
                .await?;
        }
        Ok(Some(Session { kind, principal, csrf: row.try_get::<String, _>("csrf")?.into(), expires_at: expires }))
    }

    pub async fn end_session(&self, t: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(t)).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Closes an account, which is not erasing it: the person can no longer
    /// use it, every session ends, and the data is kept for the policy's
    /// `account_contact` period after closure (to reopen it by signing in, or
    /// for legal needs), then the retention engine erases it as an erasure
    /// request would. Returns the day it will be erased.
    pub async fn close_account(&self, account: &Account) -> Result<time::Date, AccountError> {
        let now = self.now();
        let closed = sqlx::query(
            "UPDATE accounts SET status = 'closed', closed_at = $1, updated_at = $1 WHERE id = $2 AND status = 'active'",
        )
        .bind(to_millis(now))
        .bind(&account.id)
        .execute(self.db.pool())
        .await?;
        if closed.rows_affected() == 0 {
            return Err(AccountError::Conflict("This account is not open, so it cannot be closed.".into()));
        }
        self.end_all_sessions(&Principal::Account(account.id.clone())).await?;
        let erase_on = self.closure_erasure_day(now)?;
        self.audit
            .record(
                &account.actor(),
                "account.closed",
                Some(&account.subject()),
                None,
                serde_json::json!({ "erase_on": erase_on.to_string() }),
            )
            .await?;
        self.mail(
            &account.email,
            "Your Seldesk account is closed",
            format!(
                "Hello {},\n\nYour Seldesk account is closed and all its sessions have ended.\n\n\
                 We keep your account data until {erase_on}, as our privacy policy says, so that you can reopen \
                 the account by signing in before then. On that day it is erased, as if you had asked us to \
                 erase it, and you will receive a receipt.\n\n-- Seldesk\n",
                account.name
            ),
        )
        .await?;
        Ok(erase_on)
    }

    /// When a closure made `at` is erased: the policy's period for account data.
    pub fn closure_erasure_day(&self, at: OffsetDateTime) -> Result<time::Date, AccountError> {
        let rule = self.policy.retention("account_contact").ok_or_else(|| {
            AccountError::Internal(Fault::msg("the policy file has no retention rule for account_contact"))
        })?;
        Ok(rule.keep.after(at).date())
    }

    /// Reopens a closed account (its owner signed in before it was erased).
    async fn reopen(&self, account: &Account) -> Result<(), AccountError> {
        sqlx::query(
            "UPDATE accounts SET status = 'active', closed_at = NULL, updated_at = $1 WHERE id = $2 AND status = 'closed'",
        )
        .bind(to_millis(self.now()))
        .bind(&account.id)
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(&account.actor(), "account.reopened", Some(&account.subject()), None, serde_json::json!({}))
            .await?;
        Ok(())
    }

    /// Signs a principal out everywhere.
    pub async fn end_all_sessions(&self, principal: &Principal) -> Result<u64, AccountError> {
        let done = sqlx::query("DELETE FROM sessions WHERE principal = $1")
            .bind(principal.encode())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Corrects the profile (ACC-3); the change is audited by field name.
    pub async fn update_profile(&self, id: &str, u: ProfileUpdate, actor: &Actor) -> Result<Account, AccountError> {
        let before = self.account(id).await?;
        let mut after = before.clone();
        if let Some(v) = &u.name {
            after.name = input::text("name", "Name", v, 100, true)?.unwrap_or_default();
        }
        if let Some(v) = &u.company {
            after.company = input::text("company", "Company", v, 100, true)?.unwrap_or_default();
        }
        if let Some(v) = &u.email {
            after.email = input::email(v)?;
        }
        if let Some(v) = &u.phone {
            after.phone = input::phone(v)?;
        }
        if let Some(v) = &u.industry {
            after.industry = input::choice("industry", "an industry", v, crate::INDUSTRIES)?;
        }
        if let Some(v) = &u.interest {
            after.interest = input::choice("interest", "your interest", v, crate::INTERESTS)?;
        }
        if let Some(v) = u.invoice_by_post {
            after.invoice_by_post = v;
        }
        if let Some(v) = &u.address {
            after.address = input::text("address", "Mailing address", v, 500, false)?;
        }
        if let Some(v) = &u.country {
            after.country = input::country(v)?;
        }
        if after.invoice_by_post && after.address.is_none() {
            return Err(AccountError::invalid("address", "Invoices by post need a mailing address."));
        }
        if !after.invoice_by_post {
            after.address = None;
        }
        let mut changed = Vec::new();
        for (field, differs) in [
            ("name", before.name != after.name),
            ("company", before.company != after.company),
            ("email", before.email != after.email),
            ("phone", before.phone != after.phone),
            ("industry", before.industry != after.industry),
            ("interest", before.interest != after.interest),
            ("invoice_by_post", before.invoice_by_post != after.invoice_by_post),
            ("address", before.address != after.address),
            ("country", before.country != after.country),
        ] {
            if differs {
                changed.push(field);
            }
        }
        if changed.is_empty() {
            return Ok(before);
        }
        if before.email != after.email {
            let taken = sqlx::query("SELECT id FROM accounts WHERE email = $1 AND id <> $2")
                .bind(&after.email)
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
            if taken.is_some() {
                return Err(AccountError::Conflict("Another account uses this e-mail address.".into()));
            }
        }
        let email_changed = before.email != after.email;
        sqlx::query(
            "UPDATE accounts SET name = $1, company = $2, email = $3, phone = $4, industry = $5, interest = $6, invoice_by_post = $7,
                 address = $8, updated_at = $9, email_verified_at = CASE WHEN $10 = 1 THEN NULL ELSE email_verified_at END,
                 country = $12
             WHERE id = $11",
        )
        .bind(&after.name)
        .bind(&after.company)
        .bind(&after.email)
        .bind(&after.phone)
        .bind(&after.industry)
        .bind(&after.interest)
        .bind(i64::from(after.invoice_by_post))
        .bind(&after.address)
        .bind(to_millis(self.now()))
        .bind(i64::from(email_changed))
        .bind(id)
        .bind(&after.country)
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(actor, "account.updated", Some(&subject_of(id)), None, serde_json::json!({ "fields": changed }))
            .await?;
        let account = self.account(id).await?;
        if email_changed {
            self.send_verification(&account).await?;
        }
        Ok(account)
    }

    /// Sends a reset link if the address has an account; says nothing either way.
    pub async fn request_password_reset(&self, email: &str, ip: &str) -> Result<(), AccountError> {
        let now = self.now();
        rate::hit(&self.db, "reset-ip", ip, 10, Duration::hours(1), now).await?;
        let Ok(email) = input::email(email) else { return Ok(()) };
        let row = sqlx::query("SELECT id, name FROM accounts WHERE email = $1 AND status = 'active'")
            .bind(&email)
            .fetch_optional(self.db.pool())
            .await?;
        if let Some(r) = row {
            let id: String = r.try_get("id")?;
            let name: String = r.try_get("name")?;
            let t = self.new_link(&id, "reset", Duration::hours(1)).await?;
            let link = format!("{}/reset-password?token={t}", self.config.base_url);
            self.mail(
                &email,
                "Reset your Seldesk password",
                format!("Hello {name},\n\nTo choose a new password, open this link within one hour. It works once.\n\n{link}\n\nIf you did not ask for this, ignore this message: your password stays as it is.\n\n-- Seldesk\n"),
            )
            .await?;
        }
        Ok(())
    }

    /// Sets a new password from a reset link and signs out every session.
    pub async fn reset_password(&self, t: &str, new_password: &str) -> Result<Account, AccountError> {
        let row = sqlx::query("SELECT account_id FROM auth_tokens WHERE token_hash = $1 AND purpose = 'reset' AND used_at IS NULL AND expires_at > $2")
            .bind(token_hash(t))
            .bind(to_millis(self.now()))
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else {
            return Err(AccountError::LinkExpired);
        };
        let id: String = row.try_get("account_id")?;
        let account = self.account(&id).await?;
        input::password(new_password, &account.email, &account.name)?;
        self.use_link(t, "reset").await?;
        sqlx::query("UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash_password_off_thread(new_password).await?)
            .bind(to_millis(self.now()))
            .bind(&id)
            .execute(self.db.pool())
            .await?;
        self.end_all_sessions(&Principal::Account(id.clone())).await?;
        self.audit
            .record(&account.actor(), "account.password_reset", Some(&account.subject()), None, serde_json::json!({}))
            .await?;
        Ok(account)
    }

    /// Checks an account holder's password (re-entry before sensitive steps).
    pub async fn confirm_password(&self, id: &str, password: &str) -> Result<(), AccountError> {
        let row = sqlx::query("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let hash: String = match row {
            Some(r) => r.try_get("password_hash")?,
            None => return Err(AccountError::NotFound("No such account.".into())),
        };
        if verify_password_off_thread(password.to_string(), hash).await {
            Ok(())
        } else {
            Err(AccountError::Forbidden("The password is not right.".into()))
        }
    }

    /// Sign-in history of an account, newest first.
    pub async fn signins(&self, id: &str) -> Result<Vec<serde_json::Value>, AccountError> {
        let rows =
            sqlx::query("SELECT at, success, ip, user_agent FROM signins WHERE account_id = $1 ORDER BY id DESC")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "at": from_millis(r.try_get("at")?).to_string(),
                    "success": r.try_get::<i64, _>("success")? != 0,
                    "ip": r.try_get::<Option<String>, _>("ip")?,
                    "browser": r.try_get::<Option<String>, _>("user_agent")?,
                }))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// Sign-in history keeps IP addresses shortened (IPv4 /24, IPv6 /48).
pub fn truncate_ip(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::", s[0], s[1], s[2])
        }
        Err(_) => String::new(),
    }
}

impl Accounts {
    /// E-mails an account holder (service messages about their databases).
    pub async fn mail_account(&self, account_id: &str, subject: &str, text: String) -> Result<(), AccountError> {
        let account = self.account(account_id).await?;
        self.mail(&account.email, subject, format!("Hello {},\n\n{text}\n\n-- Seldesk\n", account.name)).await
    }

    /// Records that the person accepted the version in force (POL-2), once per version.
    pub async fn accept_policy(&self, account: &Account, how: &str) -> Result<bool, AccountError> {
        let now = self.now();
        let current = self.policy.current_version(now.date()).effective.to_string();
        if account.policy_accepted.as_deref() == Some(current.as_str()) {
            return Ok(false);
        }
        sqlx::query("UPDATE accounts SET policy_accepted = $1, policy_accepted_at = $2 WHERE id = $3")
            .bind(&current)
            .bind(to_millis(now))
            .bind(&account.id)
            .execute(self.db.pool())
            .await?;
        self.audit
            .record(
                &account.actor(),
                "policy.accepted",
                Some(&account.subject()),
                None,
                serde_json::json!({ "version": current, "how": how }),
            )
            .await?;
        Ok(true)
    }

    /// Tells every account holder who has not accepted the newest version
    /// about it, once each (a resumable job: sent notices are recorded).
    pub async fn notify_policy_version(&self) -> Result<u64, AccountError> {
        let newest = self.policy.newest_version().clone();
        let version = newest.effective.to_string();
        let rows = sqlx::query(
            "SELECT a.id, a.email, a.name FROM accounts a
             WHERE a.status = 'active' AND (a.policy_accepted IS NULL OR a.policy_accepted <> $1)
               AND NOT EXISTS (SELECT 1 FROM policy_notices n WHERE n.version = $1 AND n.account_id = a.id)",
        )
        .bind(&version)
        .fetch_all(self.db.pool())
        .await?;
        let mut sent = 0;
        for r in rows {
            let (id, email, name): (String, String, String) =
                (r.try_get("id")?, r.try_get("email")?, r.try_get("name")?);
            self.mail(
                &email,
                &format!("Our privacy policy changes on {version}"),
                format!(
                    "Hello {name},\n\nWe updated our privacy policy. The new version takes effect on {version}:\n\n{}\n\nRead it at {}/privacy/versions/{version}\n\nIf you keep using Seldesk after that date, you accept the updated policy. Questions go to our Helpdesk: {}/helpdesk\n\n-- Seldesk\n",
                    newest.summary, self.config.base_url, self.config.base_url
                ),
            )
            .await?;
            sqlx::query("INSERT INTO policy_notices (version, account_id, sent_at) VALUES ($1, $2, $3)")
                .bind(&version)
                .bind(&id)
                .bind(to_millis(self.now()))
                .execute(self.db.pool())
                .await?;
            sent += 1;
        }
        Ok(sent)
    }
}
