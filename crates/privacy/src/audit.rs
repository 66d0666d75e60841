//! The audit trail: append-only, each entry chained to the previous one by
//! a BLAKE3 hash keyed with a secret kept outside the control-plane database
//! (`<data>/keys/audit.key`), so whoever can edit the database cannot
//! recompute the chain after an edit. The head is anchored into the
//! write-once backup vault (daily and at every backup run), so removing the
//! newest entries and moving the head back is caught too. People appear
//! only by opaque references.

use std::sync::Arc;

use seldesk_domain::{Actor, Clock};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

use crate::{BoxFuture, Candidate, Census, Eraser, PrivacyError, placeholders};

/// One entry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub checked: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Each problem names the entry.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The secret the chain is keyed with: never printed, zeroed when dropped.
#[derive(Clone, Debug)]
pub struct AuditKey(std::sync::Arc<secrecy::SecretBox<[u8; 32]>>);

impl AuditKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(std::sync::Arc::new(secrecy::SecretBox::new(Box::new(bytes))))
    }

    fn bytes(&self) -> &[u8; 32] {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }

    /// The key in `path` (`<data>/keys/audit.key`), made on first use;
    /// true when it was just made.
    pub fn load_or_create(path: &std::path::Path) -> Result<(Self, bool), PrivacyError> {
        let (bytes, created) =
            seldesk_domain::keyfile::load_or_create(path).map_err(|e| PrivacyError::Misconfigured(e.to_string()))?;
        Ok((Self::new(bytes), created))
    }
}

/// What an anchor of the chain's head records, MACed under the audit key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
    /// Milliseconds since the epoch when the head was anchored.
    pub at: i64,
    pub mac: String,
}

fn anchor_mac(key: &AuditKey, seq: i64, hash: &str, at: i64) -> String {
    let mut h = blake3::Hasher::new_keyed(key.bytes());
    h.update(b"seldesk-audit-anchor\0");
    h.update(&seq.to_le_bytes());
    h.update(&at.to_le_bytes());
    h.update(hash.as_bytes());
    h.finalize().to_hex().to_string()
}

/// The hash of an entry: every stored column but the hash, in order; keyed
/// from the head's `keyed_from` on (entries written before the key existed
/// stay as they were, and the first keyed entry seals them).
#[allow(clippy::too_many_arguments)]
fn entry_hash(
    key: Option<&AuditKey>,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: Option<&str>,
    target: Option<&str>,
    details: &str,
    prev: &str,
) -> String {
    let mut h = match key {
        Some(k) => blake3::Hasher::new_keyed(k.bytes()),
        None => blake3::Hasher::new(),
    };
    for part in [
        seq.to_string().as_str(),
        at.to_string().as_str(),
        actor,
        action,
        subject.unwrap_or("\u{0}"),
        target.unwrap_or("\u{0}"),
        details,
        prev,
    ] {
        // Length-prefixed so no two different entries hash the same text.
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// `value` with card numbers redacted in every string it holds.
fn redact_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(crate::card::redact_card_numbers(&s).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(redact_json).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, redact_json(v))).collect()),
        other => other,
    }
}

/// The trail.
#[derive(Debug, Clone)]
pub struct AuditLog {
    db: Db,
    clock: Arc<dyn Clock>,
    key: AuditKey,
}

const COLUMNS: &str = "seq, at, actor, action, subject, target, details, prev_hash, hash";

fn from_row(row: &sqlx::any::AnyRow) -> Result<AuditEntry, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: from_millis(row.try_get("at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        target: row.try_get("target")?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl AuditLog {
    pub fn new(db: Db, clock: Arc<dyn Clock>, key: AuditKey) -> Self {
        Self { db, clock, key }
    }

    fn key_for(&self, seq: i64, keyed_from: i64) -> Option<&AuditKey> {
        (seq >= keyed_from).then_some(&self.key)
    }

    /// Appends an entry. `subject` is the opaque id of the person or database
    /// concerned, `target` what was touched; `details` must hold no personal data.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        subject: Option<&str>,
        target: Option<&str>,
        details: serde_json::Value,
    ) -> Result<i64, PrivacyError> {
        let mut tx = self.db.begin_write().await?;
        let seq = self.record_in(&mut tx, actor, action, subject, target, details).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Appends an entry inside the caller's write transaction, so a change
    /// and its audit entry commit together (or not at all).
    pub async fn record_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        actor: &Actor,
        action: &str,
        subject: Option<&str>,
        target: Option<&str>,
        details: serde_json::Value,
    ) -> Result<i64, PrivacyError> {
        let at = to_millis(self.clock.now());
        let actor = actor.reference();
        // The trail cannot be edited afterwards, so nothing that looks like
        // a card number gets in (PAY-2): a reason, a query, a header.
        let details = redact_json(details).to_string();
        let subject = subject.map(crate::card::redact_card_numbers);
        let target = target.map(crate::card::redact_card_numbers);
        let (subject, target) = (subject.as_deref(), target.as_deref());
        // Taking the head row first serialises writers (row lock on PostgreSQL,
        // the write lock on SQLite), so the chain never forks.
        let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, keyed_from")
            .fetch_one(&mut **tx)
            .await?;
        let seq: i64 = head.try_get("seq")?;
        let prev: String = head.try_get("hash")?;
        let key = self.key_for(seq, head.try_get("keyed_from")?);
        let hash = entry_hash(key, seq, at, &actor, action, subject, target, &details, &prev);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, subject, target, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(seq)
        .bind(at)
        .bind(&actor)
        .bind(action)
        .bind(subject)
        .bind(target)
        .bind(&details)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut **tx).await?;
        Ok(seq)
    }

    /// Entries about one subject, oldest first (for the person's own view and
    /// access export).
    pub async fn about(&self, subject: &str) -> Result<Vec<AuditEntry>, PrivacyError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE subject = $1 ORDER BY seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Entries about one target (a database, a ticket), oldest first.
    pub async fn for_target(&self, target: &str) -> Result<Vec<AuditEntry>, PrivacyError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE target = $1 ORDER BY seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(target).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The newest entries, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<AuditEntry>, PrivacyError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The last entry of an action, if any.
    pub async fn last_of(&self, action: &str) -> Result<Option<AuditEntry>, PrivacyError> {
        let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE action = $1 ORDER BY seq DESC LIMIT 1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(action).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Recomputes the whole chain from its base to its head.
    pub async fn verify(&self) -> Result<VerifyReport, PrivacyError> {
        let head = sqlx::query("SELECT seq, hash, base_seq, base_hash, keyed_from FROM audit_head WHERE id = 1")
            .fetch_one(self.db.pool())
            .await?;
        let keyed_from: i64 = head.try_get("keyed_from")?;
        let head_seq: i64 = head.try_get("seq")?;
        let head_hash: String = head.try_get("hash")?;
        let mut expected_seq: i64 = head.try_get::<i64, _>("base_seq")? + 1;
        let mut expected_prev: String = head.try_get("base_hash")?;
        let mut report = VerifyReport::default();
        let page: i64 = 1000;
        let mut after: i64 = i64::MIN;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, subject, target, details, prev_hash, hash
                 FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(page)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let seq: i64 = row.try_get("seq")?;
                let at: i64 = row.try_get("at")?;
                let actor: String = row.try_get("actor")?;
                let action: String = row.try_get("action")?;
                let subject: Option<String> = row.try_get("subject")?;
                let target: Option<String> = row.try_get("target")?;
                let details: String = row.try_get("details")?;
                let prev: String = row.try_get("prev_hash")?;
                let hash: String = row.try_get("hash")?;
                report.checked += 1;
                report.first_seq.get_or_insert(seq);
                report.last_seq = Some(seq);
                if seq != expected_seq {
                    if seq > expected_seq {
                        report.problems.push(format!("entries {expected_seq} to {} are missing (removed)", seq - 1));
                    } else {
                        report.problems.push(format!("entry {seq} is out of order"));
                    }
                }
                if prev != expected_prev {
                    report.problems.push(format!(
                        "entry {seq} does not follow the entry before it (an entry was removed, inserted or reordered)"
                    ));
                }
                let key = self.key_for(seq, keyed_from);
                let recomputed =
                    entry_hash(key, seq, at, &actor, &action, subject.as_deref(), target.as_deref(), &details, &prev);
                if recomputed != hash {
                    report.problems.push(format!(
                        "entry {seq} was edited: its content no longer matches its hash under the audit key"
                    ));
                }
                expected_seq = seq + 1;
                expected_prev = hash;
                after = seq;
            }
        }
        if keyed_from > head_seq + 1 {
            report.problems.push(format!(
                "the head says the chain is keyed only from entry {keyed_from}, after its last entry {head_seq}"
            ));
        }
        if expected_seq - 1 != head_seq {
            report.problems.push(format!(
                "the trail ends at entry {} but its head records entry {head_seq}: the newest entries were removed",
                expected_seq - 1
            ));
        } else if expected_prev != head_hash {
            report.problems.push(format!("entry {head_seq} does not match the hash recorded in the head"));
        }
        Ok(report)
    }
}

impl AuditLog {
    /// An anchor of the head as it is now, for the write-once vault.
    pub async fn anchor(&self) -> Result<Anchor, PrivacyError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(self.db.pool()).await?;
        let seq: i64 = head.try_get("seq")?;
        let hash: String = head.try_get("hash")?;
        let at = to_millis(self.clock.now());
        let mac = anchor_mac(&self.key, seq, &hash, at);
        Ok(Anchor { seq, hash, at, mac })
    }

    /// [`AuditLog::verify`], and every anchor checked against the trail:
    /// an anchor not made with the audit key, an anchored entry that is
    /// gone or differs, or a trail that ends before an anchor, is named.
    pub async fn verify_with_anchors(&self, anchors: &[Anchor]) -> Result<VerifyReport, PrivacyError> {
        let mut report = self.verify().await?;
        let head = sqlx::query("SELECT base_seq FROM audit_head WHERE id = 1").fetch_one(self.db.pool()).await?;
        let base: i64 = head.try_get("base_seq")?;
        let last = report.last_seq.unwrap_or(base);
        let mut sorted: Vec<&Anchor> = anchors.iter().collect();
        sorted.sort_by_key(|a| (a.seq, a.at));
        for a in sorted {
            let when = from_millis(a.at).date();
            if anchor_mac(&self.key, a.seq, &a.hash, a.at) != a.mac {
                report
                    .problems
                    .push(format!("the anchor of entry {} made on {when} was not made with this audit key", a.seq));
                continue;
            }
            if a.seq <= base {
                continue; // retention removed that entry since
            }
            if a.seq > last {
                report.problems.push(format!(
                    "the trail ends at entry {last} but entry {} was anchored on {when}: the newest entries were removed",
                    a.seq
                ));
                continue;
            }
            let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
                .bind(a.seq)
                .fetch_optional(self.db.pool())
                .await?;
            match row {
                Some(r) if r.try_get::<String, _>("hash")? == a.hash => {}
                Some(_) => report.problems.push(format!(
                    "entry {} differs from the entry anchored on {when}: the chain was rewritten",
                    a.seq
                )),
                None => report.problems.push(format!("entry {}, anchored on {when}, is missing", a.seq)),
            }
        }
        Ok(report)
    }
}

/// Retention of the audit trail: the oldest entries go first, as a prefix,
/// and the head's base moves forward so `verify` still checks what remains.
pub struct AuditEraser {
    pub db: Db,
}

impl Eraser for AuditEraser {
    fn category(&self) -> &'static str {
        "audit_event"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT seq, at, subject FROM audit_log WHERE at <= $1 ORDER BY seq")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Candidate {
                        record: r.try_get::<i64, _>("seq")?.to_string(),
                        subject: r.try_get("subject")?,
                        start: from_millis(r.try_get("at")?),
                        country: None,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut seqs: Vec<i64> = records.iter().filter_map(|c| c.record.parse().ok()).collect();
            seqs.sort_unstable();
            let mut tx = self.db.begin_write().await?;
            let head = sqlx::query("SELECT base_seq FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
            let base: i64 = head.try_get("base_seq")?;
            // Only a contiguous run from the base can go: a held entry stops it.
            let mut last = base;
            for s in seqs {
                if s == last + 1 {
                    last = s;
                } else if s > last + 1 {
                    break;
                }
            }
            if last == base {
                tx.commit().await?;
                return Ok(0);
            }
            let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1").bind(last).fetch_one(&mut *tx).await?;
            let hash: String = row.try_get("hash")?;
            let done = sqlx::query("DELETE FROM audit_log WHERE seq > $1 AND seq <= $2")
                .bind(base)
                .bind(last)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE audit_head SET base_seq = $1, base_hash = $2 WHERE id = 1")
                .bind(last)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(census(&self.db, "audit_log", "at"))
    }
}

/// Live count and oldest record of a table (table and column are ours, never input).
pub(crate) async fn census(db: &Db, table: &'static str, at: &'static str) -> Result<Census, PrivacyError> {
    let sql = format!("SELECT COUNT(*) AS n, MIN({at}) AS oldest FROM {table}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(db.pool()).await?;
    let n: i64 = row.try_get("n")?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    Ok(Census { live: u64::try_from(n).unwrap_or(0), oldest: oldest.map(from_millis) })
}

/// Deletes rows of `table` by integer id, in chunks (table and column are ours).
pub(crate) async fn delete_ids(db: &Db, table: &'static str, ids: &[i64]) -> Result<u64, PrivacyError> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        let sql = format!("DELETE FROM {table} WHERE id IN ({})", placeholders(1, chunk.len()));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(*id);
        }
        n += q.execute(db.pool()).await?.rows_affected();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use serde_json::json;

    #[tokio::test]
    async fn chain_verifies_and_catches_edits() {
        let (db, clock, _dir) = testing::db().await;
        let log = testing::audit(&db, &clock);
        for i in 0..5 {
            log.record(&Actor::System, "test.action", Some("person:a"), None, json!({ "n": i })).await.expect("record");
        }
        let report = log.verify().await.expect("verify");
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!(report.checked, 5);
        sqlx::query("UPDATE audit_log SET details = '{\"n\":99}' WHERE seq = 3")
            .execute(db.pool())
            .await
            .expect("tamper");
        let report = log.verify().await.expect("verify");
        assert!(report.problems.iter().any(|p| p.contains("entry 3 was edited")), "{:?}", report.problems);
    }

    async fn entries(log: &AuditLog, n: i64) {
        for i in 0..n {
            log.record(&Actor::System, "test.action", Some("person:a"), None, json!({ "n": i })).await.expect("record");
        }
    }

    /// Rewrites entry `from` and recomputes every later hash and the head,
    /// as someone with the database but not the key would.
    async fn rewrite_from(db: &Db, from: i64) {
        let rows = sqlx::query("SELECT seq, at, actor, action, subject, target, details, prev_hash FROM audit_log WHERE seq >= $1 ORDER BY seq")
            .bind(from)
            .fetch_all(db.pool())
            .await
            .expect("rows");
        let mut prev: Option<String> = None;
        for r in &rows {
            let seq: i64 = r.try_get("seq").expect("seq");
            let details = if seq == from { "{\"n\":999}".to_string() } else { r.try_get("details").expect("d") };
            let p = prev.clone().unwrap_or_else(|| r.try_get("prev_hash").expect("prev"));
            let subject: Option<String> = r.try_get("subject").expect("s");
            let target: Option<String> = r.try_get("target").expect("t");
            let actor: String = r.try_get("actor").expect("a");
            let action: String = r.try_get("action").expect("a");
            let at: i64 = r.try_get("at").expect("at");
            let h = entry_hash(None, seq, at, &actor, &action, subject.as_deref(), target.as_deref(), &details, &p);
            sqlx::query("UPDATE audit_log SET details = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
                .bind(&details)
                .bind(&p)
                .bind(&h)
                .bind(seq)
                .execute(db.pool())
                .await
                .expect("rewrite");
            prev = Some(h);
        }
        sqlx::query("UPDATE audit_head SET hash = $1")
            .bind(prev.expect("rows"))
            .execute(db.pool())
            .await
            .expect("head");
    }

    #[tokio::test]
    async fn a_rewritten_chain_is_caught_without_the_key() {
        let (db, clock, _dir) = testing::db().await;
        let log = testing::audit(&db, &clock);
        entries(&log, 20).await;
        rewrite_from(&db, 10).await;
        let report = log.verify().await.expect("verify");
        assert!(report.problems.first().is_some_and(|p| p.contains("entry 10 was edited")), "{:?}", report.problems);
        // A log opened with another key does not accept the chain either.
        let (db2, clock2, _dir2) = testing::db().await;
        let log2 = testing::audit(&db2, &clock2);
        entries(&log2, 3).await;
        let other = AuditLog::new(db2.clone(), testing::clock(&clock2), AuditKey::new([8; 32]));
        assert!(!other.verify().await.expect("verify").is_intact());
    }

    #[tokio::test]
    async fn removing_the_newest_entries_is_caught_by_an_anchor() {
        let (db, clock, _dir) = testing::db().await;
        let log = testing::audit(&db, &clock);
        entries(&log, 12).await;
        let anchor = log.anchor().await.expect("anchor");
        assert_eq!(anchor.seq, 12);
        assert!(log.verify_with_anchors(std::slice::from_ref(&anchor)).await.expect("verify").is_intact());
        // Delete the last 3 and move the head back: the chain alone agrees.
        let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = 9").fetch_one(db.pool()).await.expect("row");
        let hash: String = row.try_get("hash").expect("hash");
        sqlx::query("DELETE FROM audit_log WHERE seq > 9").execute(db.pool()).await.expect("delete");
        sqlx::query("UPDATE audit_head SET seq = 9, hash = $1").bind(&hash).execute(db.pool()).await.expect("head");
        assert!(log.verify().await.expect("verify").is_intact(), "the chain alone cannot tell");
        let report = log.verify_with_anchors(std::slice::from_ref(&anchor)).await.expect("verify");
        assert!(
            report.problems.iter().any(|p| p.contains("ends at entry 9") && p.contains("entry 12 was anchored")),
            "{:?}",
            report.problems
        );
        // A forged anchor is named as such.
        let forged = Anchor { seq: 5, hash: "00".repeat(32), at: anchor.at, mac: anchor.mac.clone() };
        let report = log.verify_with_anchors(&[forged]).await.expect("verify");
        assert!(report.problems.iter().any(|p| p.contains("not made with this audit key")), "{:?}", report.problems);
    }
}
