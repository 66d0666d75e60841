//! Fixed-window rate limits kept in the control-plane database, so they hold
//! across nodes. Keys are hashed: no e-mail or IP address is stored here.

use seldesk_store::{Db, to_millis};
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::AccountError;

fn key_of(kind: &str, value: &str) -> String {
    format!("{kind}:{}", &blake3::hash(value.as_bytes()).to_hex()[..32])
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
    let (start, count) = bump(db, kind, value, window, now).await?;
    if count > limit {
        return Err(refusal(start, window, now));
    }
    Ok(())
}

fn refusal(start: i64, window: Duration, now: OffsetDateTime) -> AccountError {
    let ends = start + window.whole_milliseconds() as i64;
    let secs = u64::try_from((ends - to_millis(now)) / 1000).unwrap_or(1).max(1);
    AccountError::RateLimited { retry_after_secs: secs }
}

/// What spending one attempt of a budget came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Within the budget.
    Allowed,
    /// Over it; `first` for the one attempt that went over in this window
    /// (exactly one concurrent attempt sees it), to warn the owner once.
    Refused { retry_after_secs: u64, first: bool },
}

/// A budget of attempts whose window doubles each further time it was
/// exhausted in the last day (up to 16 times the base): a guesser slows down
/// exponentially while the count itself stays small.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub kind: &'static str,
    pub limit: i64,
    pub base: Duration,
}

impl Budget {
    /// Counts one attempt before it is judged: the count is taken and read
    /// in one statement, so attempts sent in parallel cannot all pass a
    /// check made before any of them was counted.
    pub async fn spend(&self, db: &Db, value: &str, now: OffsetDateTime) -> Result<Spent, AccountError> {
        let strikes_kind = format!("{}-strikes", self.kind);
        let strikes = current(db, &strikes_kind, value, Duration::days(1), now).await?;
        // The first time the budget runs out the pause is the base; each
        // further time within a day it doubles.
        let window = self.base * 2i32.pow((strikes - 1).clamp(0, 4) as u32);
        let (start, count) = bump(db, self.kind, value, window, now).await?;
        if count <= self.limit {
            return Ok(Spent::Allowed);
        }
        let first = count == self.limit + 1;
        if first {
            bump(db, &strikes_kind, value, Duration::days(1), now).await?;
        }
        match refusal(start, window, now) {
            AccountError::RateLimited { retry_after_secs } => Ok(Spent::Refused { retry_after_secs, first }),
            other => Err(other),
        }
    }

    /// Gives back the attempts of a success (the budget is for failures).
    pub async fn refund(&self, db: &Db, value: &str) -> Result<(), AccountError> {
        clear(db, self.kind, value).await
    }
}

/// Hits counted for `kind:value` in its live window.
async fn current(db: &Db, kind: &str, value: &str, window: Duration, now: OffsetDateTime) -> Result<i64, AccountError> {
    let row = sqlx::query("SELECT window_start, count FROM rate_limits WHERE key = $1")
        .bind(key_of(kind, value))
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) if r.try_get::<i64, _>("window_start")? + window.whole_milliseconds() as i64 > to_millis(now) => {
            r.try_get("count")?
        }
        _ => 0,
    })
}

/// Gives back one hit (an attempt that turned out fine).
pub async fn release(db: &Db, kind: &str, value: &str) -> Result<(), AccountError> {
    sqlx::query("UPDATE rate_limits SET count = count - 1 WHERE key = $1 AND count > 0")
        .bind(key_of(kind, value))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Counts one hit in one atomic statement; returns the window's start and
/// the count including this hit.
async fn bump(
    db: &Db,
    kind: &str,
    value: &str,
    window: Duration,
    now: OffsetDateTime,
) -> Result<(i64, i64), AccountError> {
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
    Ok((row.try_get("window_start")?, row.try_get("count")?))
}

/// Forgets a key (after a successful sign-in).
pub async fn clear(db: &Db, kind: &str, value: &str) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM rate_limits WHERE key = $1").bind(key_of(kind, value)).execute(db.pool()).await?;
    Ok(())
}
