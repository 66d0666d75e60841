//! Staff: one role model for everyone, wherever they work (STF-1); password
//! plus TOTP at sign-in; every staff action audited by the callers.

use secrecy::SecretString;
use seldesk_domain::Fault;
use seldesk_domain::{Actor, Role};
use seldesk_store::{from_millis, to_millis};
use sqlx::Row;
use time::{Duration, OffsetDateTime};
use totp_rs::{Algorithm, Secret, Totp};

use crate::rate::Budget;
use crate::secret::random_bytes;
use crate::service::{dummy_hash, hash_password_off_thread, refuse, verify_password_off_thread};
use crate::{AccountError, Accounts, input, rate};

/// A staff member.
#[derive(Debug, Clone)]
pub struct StaffMember {
    pub id: String,
    pub email: String,
    pub roles: Vec<Role>,
    pub created_at: OffsetDateTime,
    pub disabled: bool,
}

impl StaffMember {
    pub fn actor(&self) -> Actor {
        Actor::Staff { id: self.id.clone(), roles: self.roles.clone() }
    }

    pub fn has(&self, role: Role) -> bool {
        // Least privilege: admin manages staff but does not inherit other roles.
        self.roles.contains(&role)
    }
}

/// A staff account to create.
#[derive(Debug, Clone)]
pub struct NewStaff {
    pub email: String,
    pub roles: Vec<Role>,
}

/// What the operator hands the new staff member, once.
#[derive(Debug, Clone)]
pub struct StaffCredentials {
    pub staff: StaffMember,
    /// The secrets are never printed by `{:?}`: shown once, on purpose.
    pub password: SecretString,
    /// `otpauth://` URL for an authenticator app (it holds the secret).
    pub totp_url: SecretString,
    pub totp_secret: SecretString,
}

fn totp(secret_b32: &str, email: &str) -> Result<Totp, AccountError> {
    let secret =
        Secret::try_from_base32(secret_b32).map_err(|e| AccountError::Internal(Fault::new("bad TOTP secret", e)))?;
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some("Seldesk"))
        .with_account_name(email)
        .build()
        .map_err(|e| AccountError::Internal(Fault::new("cannot set up TOTP", e)))
}

/// The current code of a secret (for tests and the operator's first check).
pub fn totp_code(secret_b32: &str, at: OffsetDateTime) -> Result<String, AccountError> {
    let t = totp(secret_b32, "staff@seldesk")?;
    Ok(t.generate(u64::try_from(at.unix_timestamp()).unwrap_or(0)).to_string())
}

fn staff_from_row(r: &sqlx::any::AnyRow) -> Result<StaffMember, sqlx::Error> {
    let roles: String = r.try_get("roles")?;
    Ok(StaffMember {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        roles: roles.split(',').filter_map(Role::parse).collect(),
        created_at: from_millis(r.try_get("created_at")?),
        disabled: r.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
    })
}

impl Accounts {
    /// Creates a staff account with a generated password and TOTP secret.
    pub async fn add_staff(&self, actor: &Actor, new: NewStaff) -> Result<StaffCredentials, AccountError> {
        if !actor.has_any_role(&[Role::Admin]) {
            return Err(AccountError::Forbidden("Only an admin can add staff.".into()));
        }
        let email = input::email(&new.email)?;
        if new.roles.is_empty() {
            return Err(AccountError::invalid(
                "role",
                "Give at least one role: admin, support, hr, security, finance or dpo.",
            ));
        }
        let password = data_encoding::BASE32_NOPAD.encode(&random_bytes::<15>()?).to_lowercase();
        let secret = data_encoding::BASE32_NOPAD.encode(&random_bytes::<20>()?);
        let id = uuid::Uuid::now_v7().simple().to_string();
        let roles: Vec<&str> = new.roles.iter().map(Role::as_str).collect();
        let inserted = sqlx::query("INSERT INTO staff (id, email, password_hash, totp_secret, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(&email)
            .bind(hash_password_off_thread(&password).await?)
            .bind(&secret)
            .bind(roles.join(","))
            .bind(to_millis(self.now()))
            .execute(self.db.pool())
            .await;
        if let Err(e) = inserted {
            if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
                return Err(AccountError::Conflict(format!("A staff account for {email} exists already.")));
            }
            return Err(e.into());
        }
        let staff = self.staff(&id).await?;
        self.audit
            .record(actor, "staff.added", None, Some(&format!("staff:{id}")), serde_json::json!({ "roles": roles }))
            .await?;
        let totp_url = totp(&secret, &email)?
            .to_url()
            .map_err(|e| AccountError::Internal(Fault::new("cannot make the TOTP link", e)))?;
        Ok(StaffCredentials { staff, password: password.into(), totp_url: totp_url.into(), totp_secret: secret.into() })
    }

    /// A staff member by e-mail (operators name them so).
    pub async fn staff_by_email(&self, email: &str) -> Result<StaffMember, AccountError> {
        let email = email.trim().to_lowercase();
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM staff WHERE email = $1")
            .bind(&email)
            .fetch_optional(self.db.pool())
            .await?;
        match id {
            Some(id) => self.staff(&id).await,
            None => {
                Err(AccountError::NotFound(format!("There is no staff account for {email}; see `seldesk staff list`.")))
            }
        }
    }

    /// Disables a staff member (who left, or whose credentials are in
    /// doubt): every session ends at once and no sign-in works until enabled
    /// again. Admins only; audited.
    pub async fn set_staff_disabled(
        &self,
        actor: &Actor,
        email: &str,
        disabled: bool,
    ) -> Result<StaffMember, AccountError> {
        Self::admin_only(actor)?;
        let staff = self.staff_by_email(email).await?;
        sqlx::query("UPDATE staff SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(|| to_millis(self.now())))
            .bind(&staff.id)
            .execute(self.db.pool())
            .await?;
        let ended = if disabled { self.end_all_sessions(&crate::Principal::Staff(staff.id.clone())).await? } else { 0 };
        let action = if disabled { "staff.disabled" } else { "staff.enabled" };
        self.audit
            .record(
                actor,
                action,
                None,
                Some(&format!("staff:{}", staff.id)),
                serde_json::json!({ "sessions_ended": ended }),
            )
            .await?;
        self.staff(&staff.id).await
    }

    /// Replaces a staff member's roles (least privilege as duties change);
    /// their sessions end so the next sign-in starts with the new roles.
    pub async fn set_staff_roles(
        &self,
        actor: &Actor,
        email: &str,
        roles: &[Role],
    ) -> Result<StaffMember, AccountError> {
        Self::admin_only(actor)?;
        if roles.is_empty() {
            return Err(AccountError::invalid(
                "role",
                "Give at least one role: admin, support, hr, security, finance or dpo.",
            ));
        }
        let staff = self.staff_by_email(email).await?;
        let names: Vec<&str> = roles.iter().map(Role::as_str).collect();
        sqlx::query("UPDATE staff SET roles = $1 WHERE id = $2")
            .bind(names.join(","))
            .bind(&staff.id)
            .execute(self.db.pool())
            .await?;
        self.end_all_sessions(&crate::Principal::Staff(staff.id.clone())).await?;
        let before: Vec<&str> = staff.roles.iter().map(Role::as_str).collect();
        self.audit
            .record(
                actor,
                "staff.roles_changed",
                None,
                Some(&format!("staff:{}", staff.id)),
                serde_json::json!({ "from": before, "to": names }),
            )
            .await?;
        self.staff(&staff.id).await
    }

    /// Gives a staff member a new TOTP secret (a lost or exposed
    /// authenticator): the old codes stop working and sessions end.
    /// Returns the new secret and its otpauth:// URL.
    pub async fn reset_staff_totp(&self, actor: &Actor, email: &str) -> Result<(String, String), AccountError> {
        Self::admin_only(actor)?;
        let staff = self.staff_by_email(email).await?;
        let secret = data_encoding::BASE32_NOPAD.encode(&random_bytes::<20>()?);
        sqlx::query("UPDATE staff SET totp_secret = $1, totp_last_step = NULL WHERE id = $2")
            .bind(&secret)
            .bind(&staff.id)
            .execute(self.db.pool())
            .await?;
        self.end_all_sessions(&crate::Principal::Staff(staff.id.clone())).await?;
        self.audit
            .record(actor, "staff.totp_reset", None, Some(&format!("staff:{}", staff.id)), serde_json::json!({}))
            .await?;
        let url = totp(&secret, &staff.email)?
            .to_url()
            .map_err(|e| AccountError::Internal(Fault::new("cannot make the TOTP link", e)))?;
        Ok((secret, url))
    }

    fn admin_only(actor: &Actor) -> Result<(), AccountError> {
        if actor.has_any_role(&[Role::Admin]) {
            Ok(())
        } else {
            Err(AccountError::Forbidden("Only an admin can change staff accounts.".into()))
        }
    }

    pub async fn staff(&self, id: &str) -> Result<StaffMember, AccountError> {
        let row = sqlx::query("SELECT id, email, roles, created_at, disabled_at FROM staff WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref()
            .map(staff_from_row)
            .transpose()?
            .ok_or_else(|| AccountError::NotFound("No such staff member.".into()))
    }

    pub async fn list_staff(&self) -> Result<Vec<StaffMember>, AccountError> {
        let rows = sqlx::query("SELECT id, email, roles, created_at, disabled_at FROM staff ORDER BY email")
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows.iter().map(staff_from_row).collect::<Result<_, _>>()?)
    }

    /// Staff sign-in: password and a current TOTP code, each attempt
    /// counted before it is checked. An unknown e-mail costs the same
    /// password hashing as a known one, and a code is accepted only once.
    pub async fn authenticate_staff(
        &self,
        email: &str,
        password: &str,
        code: &str,
        ip: &str,
    ) -> Result<StaffMember, AccountError> {
        let now = self.now();
        let email = email.trim().to_lowercase();
        refuse(STAFF_ADDRESS.spend(&self.db, ip, now).await?)?;
        refuse(STAFF_ACCOUNT.spend(&self.db, &email, now).await?)?;
        let row = sqlx::query("SELECT id, password_hash, totp_secret, disabled_at FROM staff WHERE email = $1")
            .bind(&email)
            .fetch_optional(self.db.pool())
            .await?;
        let hash = match &row {
            Some(r) => r.try_get::<String, _>("password_hash")?,
            None => dummy_hash().await.to_string(),
        };
        let pw = verify_password_off_thread(password.to_string(), hash).await;
        let step = match &row {
            Some(r) => {
                let secret: String = r.try_get("totp_secret")?;
                let disabled: Option<i64> = r.try_get("disabled_at")?;
                let t = totp(&secret, &email)?;
                t.check(code.trim(), u64::try_from(now.unix_timestamp()).unwrap_or(0))
                    .filter(|_| pw && disabled.is_none())
            }
            None => None,
        };
        let id: Option<String> = row.map(|r| r.try_get("id")).transpose()?;
        let fresh = match (&id, step) {
            (Some(id), Some(step)) => {
                // One statement decides, so two requests with the same code
                // cannot both pass.
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                sqlx::query(
                    "UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
                )
                .bind(step)
                .bind(id)
                .execute(self.db.pool())
                .await?
                .rows_affected()
                    == 1
            }
            _ => false,
        };
        if !fresh {
            return Err(AccountError::Forbidden(if step.is_some() {
                "That code was already used. Wait for the next code of your authenticator app.".into()
            } else {
                "The e-mail, password or code is not right.".into()
            }));
        }
        STAFF_ACCOUNT.refund(&self.db, &email).await?;
        rate::release(&self.db, STAFF_ADDRESS.kind, ip).await?;
        let staff = self.staff(&id.unwrap_or_default()).await?;
        self.audit.record(&staff.actor(), "staff.signed_in", None, None, serde_json::json!({})).await?;
        Ok(staff)
    }
}

/// Staff sign-in attempts per address: 20 per 15 minutes.
pub const STAFF_ADDRESS: Budget = Budget { kind: "staff-ip", limit: 20, base: Duration::minutes(15) };
/// Staff sign-in attempts per staff e-mail: 5 per 15 minutes.
pub const STAFF_ACCOUNT: Budget = Budget { kind: "staff-account", limit: 5, base: Duration::minutes(15) };

impl Accounts {
    /// Records that a staff member viewed a console page.
    pub async fn audit_staff_view(&self, staff: &StaffMember, action: &str) -> Result<(), AccountError> {
        self.audit.record(&staff.actor(), action, None, None, serde_json::json!({})).await?;
        Ok(())
    }
}
