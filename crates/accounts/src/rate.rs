//! Fixed-window rate limits kept in the control-plane database, so they hold
//! across nodes. Keys are hashed: no e-mail or IP address is stored here.

use seldesk_store::{Db, to_millis};
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::AccountError;

fn key_of(kind: &str, value: &str) -> String {
    format!("{kind}:{}", &blake3::hash(value.as_bytes()).to_hex()[..32])
}

/// Fails when `kind:value` already had `limit` hits in the current window.
pub async fn check(
    db: &Db,
    kind: &str,
    value: &str,
    limit: i64,
    window: Duration,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    let row = sqlx::query("SELECT window_start, count FROM rate_limits WHERE key = $1")
        .bind(key_of(kind, value))
        .fetch_optional(db.pool())
        .await?;
    if let Some(row) = row {
        let start: i64 = row.try_get("window_start")?;
        let count: i64 = row.try_get("count")?;
        let ends = start + window.whole_milliseconds() as i64;
        if count >= limit && ends > to_millis(now) {
            let secs = u64::try_from((ends - to_millis(now)) / 1000).unwrap_or(1).max(1);
            return Err(AccountError::RateLimited { retry_after_secs: secs });
        }
    }
    Ok(())
}

/// Counts one hit; fails when it goes over `limit` in the window.
pub async fn hit(
    db: &Db,
    kind: &str,
    value: &str,
    limit: i64,
    window: Duration,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    let now_ms = to_millis(now);
    let expired = now_ms - window.whole_milliseconds() as i64;
    let row = sqlx::query(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
             count = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.count + 1 END,
             window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END
         RETURNING window_start, count",
    )
    .bind(key_of(kind, value))
    .bind(now_ms)
    .bind(expired)
    .fetch_one(db.pool())
    .await?;
    // Old windows are worthless: drop them as we go.
    sqlx::query("DELETE FROM rate_limits WHERE window_start < $1").bind(now_ms - 86_400_000).execute(db.pool()).await?;
    let start: i64 = row.try_get("window_start")?;
    let count: i64 = row.try_get("count")?;
    if count > limit {
        let ends = start + window.whole_milliseconds() as i64;
        let secs = u64::try_from((ends - now_ms) / 1000).unwrap_or(1).max(1);
        return Err(AccountError::RateLimited { retry_after_secs: secs });
    }
    Ok(())
}

/// Forgets a key (after a successful sign-in).
pub async fn clear(db: &Db, kind: &str, value: &str) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM rate_limits WHERE key = $1").bind(key_of(kind, value)).execute(db.pool()).await?;
    Ok(())
}
