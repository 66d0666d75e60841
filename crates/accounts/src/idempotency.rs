//! Idempotent creates: a client that retries a create with the same
//! `Idempotency-Key` gets the first result, never a second object.
//!
//! Per account, for [`WINDOW`]. Only where the created thing lives (and the
//! status first answered) is kept, never what it holds: a contact is
//! customer data and stays in its database's region, so a retry is answered
//! by reading the created thing again.

use seldesk_store::to_millis;
use sqlx::Row;
use time::Duration;

use crate::AccountError;
use crate::service::Accounts;

/// How long a key is remembered (as Stripe does).
pub const WINDOW: Duration = Duration::hours(24);

/// A claim left `pending` this long belongs to a request that died with
/// its node: the next retry runs again.
const ABANDONED: Duration = Duration::minutes(10);

/// The longest key accepted.
pub const MAX_KEY: usize = 255;

/// What a key means for a request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: run the request, then [`Accounts::idempotency_done`] or
    /// [`Accounts::idempotency_release`].
    Fresh,
    /// Already done: answer with this status and the thing at `location`.
    Replay { status: u16, location: String },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for another request (another route or body).
    Mismatch,
}

/// Checks a key's form: 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), AccountError> {
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AccountError::invalid(
            "Idempotency-Key",
            format!("An Idempotency-Key is 1 to {MAX_KEY} visible ASCII characters, such as a UUID."),
        ));
    }
    Ok(())
}

impl Accounts {
    /// Claims `key` for a request whose route and body hash to `fingerprint`.
    pub async fn idempotency_claim(
        &self,
        account_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, AccountError> {
        check_key(key)?;
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(to_millis(now - WINDOW))
            .execute(&mut *tx)
            .await?;
        // Insert first: of two tries racing, the database lets one in.
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (account_id, idem_key, fingerprint, state, created_at) VALUES ($1, $2, $3, 'pending', $4)
             ON CONFLICT (account_id, idem_key) DO NOTHING",
        )
        .bind(account_id)
        .bind(key)
        .bind(fingerprint)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        let claim = if inserted.rows_affected() == 1 {
            Claim::Fresh
        } else {
            let r = sqlx::query(
                "SELECT fingerprint, state, status, location, created_at FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2",
            )
            .bind(account_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            if r.try_get::<String, _>("fingerprint")? != fingerprint {
                Claim::Mismatch
            } else if r.try_get::<String, _>("state")? == "done" {
                let status: i64 = r.try_get("status")?;
                Claim::Replay {
                    status: u16::try_from(status).unwrap_or(200),
                    location: r.try_get::<Option<String>, _>("location")?.unwrap_or_default(),
                }
            } else {
                // Take over a claim whose request died, if no one else did.
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET created_at = $1 WHERE account_id = $2 AND idem_key = $3 AND state = 'pending' AND created_at < $4",
                )
                .bind(to_millis(now))
                .bind(account_id)
                .bind(key)
                .bind(to_millis(now - ABANDONED))
                .execute(&mut *tx)
                .await?;
                if taken.rows_affected() == 1 { Claim::Fresh } else { Claim::InProgress }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// Records the first result of a claimed key.
    pub async fn idempotency_done(
        &self,
        account_id: &str,
        key: &str,
        status: u16,
        location: &str,
    ) -> Result<(), AccountError> {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'done', status = $1, location = $2 WHERE account_id = $3 AND idem_key = $4",
        )
        .bind(i64::from(status))
        .bind(location)
        .bind(account_id)
        .bind(key)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Lets a key go after its request failed: a retry runs again.
    pub async fn idempotency_release(&self, account_id: &str, key: &str) -> Result<(), AccountError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2 AND state = 'pending'")
            .bind(account_id)
            .bind(key)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(check_key("0193a7c2-6a4e-7d2b-9c1f-2b3c4d5e6f70").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("with space").is_err());
        assert!(check_key("é").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY + 1)).is_err());
    }
}
