//! Support access to customer databases (DB-3): a staff member states a
//! reason and a ticket; access is time-boxed, read-only unless the customer
//! approves more, shows in the customer's access log, and can be revoked.

use seldesk_domain::{Actor, Role};
use seldesk_store::{from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::sandbox::{QueryResult, run_console, run_read_only};
use crate::{Databases, TenantError};

/// Longest support access, in hours.
pub const MAX_HOURS: i64 = 8;

/// A grant of support access.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupportGrant {
    pub id: i64,
    pub database_id: String,
    pub staff: String,
    pub reason: String,
    pub ticket_id: i64,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

fn grant_from(r: &sqlx::any::AnyRow) -> Result<SupportGrant, sqlx::Error> {
    Ok(SupportGrant {
        id: r.try_get("id")?,
        database_id: r.try_get("database_id")?,
        staff: format!("staff:{}", r.try_get::<String, _>("staff_id")?),
        reason: r.try_get("reason")?,
        ticket_id: r.try_get("ticket_id")?,
        scope: r.try_get("scope")?,
        created_at: from_millis(r.try_get("created_at")?),
        expires_at: from_millis(r.try_get("expires_at")?),
        revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

const GRANT_COLUMNS: &str = "id, database_id, staff_id, reason, ticket_id, scope, created_at, expires_at, revoked_at";

impl Databases {
    /// Opens read-only support access for a staff member of the support role.
    pub async fn grant_support(
        &self,
        staff: &Actor,
        database_id: &str,
        reason: &str,
        ticket_id: i64,
        hours: i64,
    ) -> Result<SupportGrant, TenantError> {
        let Actor::Staff { id: staff_id, .. } = staff else {
            return Err(TenantError::Forbidden("Only staff can ask for support access.".into()));
        };
        if !staff.has_any_role(&[Role::Support, Role::Security]) {
            return Err(TenantError::Forbidden("Support access is for the support and security roles.".into()));
        }
        if reason.trim().len() < 10 {
            return Err(TenantError::invalid("reason", "State why you need access (at least 10 characters)."));
        }
        if seldesk_privacy::card::contains_card_number(reason) {
            return Err(TenantError::invalid("reason", seldesk_privacy::card::CARD_NUMBER_REFUSED));
        }
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(TenantError::invalid("hours", format!("Access lasts 1 to {MAX_HOURS} hours.")));
        }
        let row = sqlx::query("SELECT account_id FROM databases WHERE id = $1")
            .bind(database_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Err(TenantError::NotFound("No such database.".into())) };
        let account_id: String = row.try_get("account_id")?;
        // Only the owner's own request about this very database opens it.
        let ticket = sqlx::query("SELECT account_id, database_id, status FROM tickets WHERE id = $1")
            .bind(ticket_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(ticket) = ticket else {
            return Err(TenantError::invalid(
                "ticket",
                format!("There is no ticket {ticket_id}: support access needs a Helpdesk ticket."),
            ));
        };
        let (owner, about, status): (Option<String>, Option<String>, String) =
            (ticket.try_get("account_id")?, ticket.try_get("database_id")?, ticket.try_get("status")?);
        if owner.as_deref() != Some(account_id.as_str()) || about.as_deref() != Some(database_id) {
            return Err(TenantError::invalid(
                "ticket",
                format!(
                    "Ticket {ticket_id} is not the owner's request about this database: support access needs a ticket its owner opened about it."
                ),
            ));
        }
        if !matches!(status.as_str(), "open" | "in_progress") {
            return Err(TenantError::invalid(
                "ticket",
                format!("Ticket {ticket_id} is closed: access ends with the request."),
            ));
        }
        let now = self.clock.now();
        let r = sqlx::query(
            "INSERT INTO support_grants (database_id, account_id, staff_id, reason, ticket_id, scope, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'read', $6, $7) RETURNING id",
        )
        .bind(database_id)
        .bind(&account_id)
        .bind(staff_id)
        .bind(reason.trim())
        .bind(ticket_id)
        .bind(to_millis(now))
        .bind(to_millis(now + Duration::hours(hours)))
        .fetch_one(self.db.pool())
        .await?;
        let id: i64 = r.try_get("id")?;
        self.audit
            .record(
                staff,
                "database.support_access_granted",
                Some(seldesk_domain::Subject::person(&account_id).as_str()),
                Some(&format!("db:{database_id}")),
                serde_json::json!({ "grant": id, "reason": reason.trim(), "ticket": ticket_id, "hours": hours, "scope": "read" }),
            )
            .await?;
        self.grant(id).await
    }

    /// A grant by id (for the staff member's own page).
    pub async fn support_grant(&self, id: i64) -> Result<SupportGrant, TenantError> {
        self.grant(id).await
    }

    async fn grant(&self, id: i64) -> Result<SupportGrant, TenantError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM support_grants WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
        row.as_ref()
            .map(grant_from)
            .transpose()?
            .ok_or_else(|| TenantError::NotFound(format!("No support grant {id}.")))
    }

    /// Runs a read-only query under a live grant of this staff member; audited with its text.
    pub async fn support_query(&self, staff: &Actor, grant_id: i64, sql: &str) -> Result<QueryResult, TenantError> {
        let Actor::Staff { id: staff_id, .. } = staff else {
            return Err(TenantError::Forbidden("Only staff use support access.".into()));
        };
        let g = self.grant(grant_id).await?;
        if g.staff != format!("staff:{staff_id}") {
            return Err(TenantError::Forbidden("This grant belongs to someone else.".into()));
        }
        if g.revoked {
            return Err(TenantError::Forbidden("The customer revoked this access.".into()));
        }
        if g.expires_at <= self.clock.now() {
            return Err(TenantError::Forbidden("This access has expired; ask again with a reason.".into()));
        }
        let row = sqlx::query("SELECT region, account_id, plan FROM databases WHERE id = $1")
            .bind(&g.database_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Err(TenantError::NotFound("No such database.".into())) };
        let (region, account_id, plan): (String, String, String) =
            (row.try_get("region")?, row.try_get("account_id")?, row.try_get("plan")?);
        self.audit
            .record(
                staff,
                "database.support_query",
                Some(seldesk_domain::Subject::person(&account_id).as_str()),
                Some(&format!("db:{}", g.database_id)),
                serde_json::json!({ "grant": grant_id, "sql": sql }),
            )
            .await?;
        self.resident(&region, staff, Some(&format!("db:{}", g.database_id))).await?;
        let (sql, deadline) = (sql.to_string(), std::time::Duration::from_secs(5));
        if g.scope == "write" {
            // Changes go through the database's writer like the owner's own.
            let quota = self.quotas.of(&plan);
            let opts = crate::WriteOptions { mode: crate::WriteMode::Alone, quota, checkpoint: true };
            self.open.write(&region, &g.database_id, opts, move |conn| run_console(conn, &sql, &[], deadline)).await
        } else {
            // Read-only unless the owner approved more.
            self.open.read(&region, &g.database_id, move |conn| run_read_only(conn, &sql, deadline)).await
        }
    }

    /// Grants on a database, for its owner.
    pub async fn support_grants(&self, account_id: &str, database_id: &str) -> Result<Vec<SupportGrant>, TenantError> {
        self.get(account_id, database_id).await?;
        let sql = format!("SELECT {GRANT_COLUMNS} FROM support_grants WHERE database_id = $1 ORDER BY id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(database_id).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(grant_from).collect::<Result<_, _>>()?)
    }

    /// The owner lets a live grant change data too ("read-only unless you
    /// approve more"): its queries then run under the owner's own console
    /// rules, until it expires or is revoked. Audited.
    pub async fn approve_support_changes(
        &self,
        account_id: &str,
        database_id: &str,
        grant_id: i64,
    ) -> Result<SupportGrant, TenantError> {
        self.get(account_id, database_id).await?;
        let done = sqlx::query(
            "UPDATE support_grants SET scope = 'write'
             WHERE id = $1 AND database_id = $2 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(grant_id)
        .bind(database_id)
        .bind(to_millis(self.clock.now()))
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(TenantError::NotFound(format!("No live support grant {grant_id} on this database.")));
        }
        self.audit
            .record(
                &Actor::Person { id: account_id.into() },
                "database.support_changes_approved",
                Some(seldesk_domain::Subject::person(account_id).as_str()),
                Some(&format!("db:{database_id}")),
                serde_json::json!({ "grant": grant_id }),
            )
            .await?;
        self.grant(grant_id).await
    }

    /// The owner ends a grant.
    pub async fn revoke_support(&self, account_id: &str, database_id: &str, grant_id: i64) -> Result<(), TenantError> {
        self.get(account_id, database_id).await?;
        let done = sqlx::query(
            "UPDATE support_grants SET revoked_at = $1 WHERE id = $2 AND database_id = $3 AND revoked_at IS NULL",
        )
        .bind(to_millis(self.clock.now()))
        .bind(grant_id)
        .bind(database_id)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(TenantError::NotFound(format!("No active support grant {grant_id} on this database.")));
        }
        self.audit
            .record(
                &Actor::Person { id: account_id.into() },
                "database.support_access_revoked",
                Some(seldesk_domain::Subject::person(account_id).as_str()),
                Some(&format!("db:{database_id}")),
                serde_json::json!({ "grant": grant_id }),
            )
            .await?;
        Ok(())
    }

    /// Everything recorded about a database: the owner's access log.
    pub async fn access_log(
        &self,
        account_id: &str,
        database_id: &str,
    ) -> Result<Vec<seldesk_privacy::AuditEntry>, TenantError> {
        self.get(account_id, database_id).await?;
        Ok(self.audit.for_target(&format!("db:{database_id}")).await?)
    }
}
