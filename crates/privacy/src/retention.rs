//! The retention engine: every data category has exactly one rule, in the
//! policy file; every store that holds a category registers an [`Eraser`];
//! one run applies every rule, skipping what a legal hold covers, and logs
//! each erasure.

use std::collections::HashMap;
use std::sync::Arc;

use seldesk_domain::policy::RetentionRule;
use seldesk_domain::{Actor, Clock, Policy, Role};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::{AuditLog, BoxFuture, ErasureLog, ErasureReason, PrivacyError};

/// A record whose retention clock started at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The store's own reference of the record.
    pub record: String,
    /// Opaque reference of the person it is about.
    pub subject: Option<String>,
    /// When its retention clock started (per the rule's anchor).
    pub start: OffsetDateTime,
    /// Country, for rules with per-country periods.
    pub country: Option<String>,
}

/// How much a store holds.
#[derive(Debug, Clone, Default)]
pub struct Census {
    pub live: u64,
    pub oldest: Option<OffsetDateTime>,
}

/// How a store finds and erases its records of one category.
pub trait Eraser: Send + Sync {
    fn category(&self) -> &'static str;
    /// Records whose clock started at or before `cutoff`, oldest first.
    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>>;
    /// Erases these records physically; returns how many went.
    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>>;
    /// Live records and the oldest clock start.
    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>>;
    /// Whether each erasure is written to the erasure log.
    fn logs_erasures(&self) -> bool {
        true
    }
}

/// The eraser of a plain table with `id`, `at` (when the clock starts) and
/// `subject` columns: the disclosure ledger and the erasure log.
pub struct TableEraser {
    db: Db,
    category: &'static str,
    table: &'static str,
    log: bool,
}

impl TableEraser {
    /// `log`: whether erasures go to the erasure log (not for the log itself,
    /// whose erasure would only write new log lines).
    pub fn new(db: Db, category: &'static str, table: &'static str, log: bool) -> Self {
        Self { db, category, table, log }
    }
}

impl Eraser for TableEraser {
    fn category(&self) -> &'static str {
        self.category
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            // The table name is ours (a &'static str), never input.
            let sql = format!("SELECT id, at, subject FROM {} WHERE at <= $1 ORDER BY id", self.table);
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(cutoff)).fetch_all(self.db.pool()).await?;
            rows.iter()
                .map(|r| {
                    Ok(Candidate {
                        record: r.try_get::<i64, _>("id")?.to_string(),
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
            let ids: Vec<i64> = records.iter().filter_map(|c| c.record.parse().ok()).collect();
            crate::audit::delete_ids(&self.db, self.table, &ids).await
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(crate::audit::census(&self.db, self.table, "at"))
    }

    fn logs_erasures(&self) -> bool {
        self.log
    }
}

/// A legal hold: records it covers are kept past their period until it ends.
#[derive(Debug, Clone, Serialize)]
pub struct LegalHold {
    pub id: i64,
    pub category: String,
    pub subject: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
}

impl LegalHold {
    /// Whether the hold covers a record of its category.
    pub fn covers(&self, c: &Candidate) -> bool {
        self.subject.as_ref().is_none_or(|s| c.subject.as_ref() == Some(s))
            && self.from.is_none_or(|f| c.start >= f)
            && self.to.is_none_or(|t| c.start <= t)
    }

    fn active(&self, now: OffsetDateTime) -> bool {
        self.released_at.is_none() && self.until > now
    }
}

/// A hold to place.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub category: String,
    pub subject: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub reason: String,
    pub until: OffsetDateTime,
}

/// What one run did for one category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CategoryRun {
    pub category: String,
    pub due: u64,
    pub held: u64,
    pub erased: u64,
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    /// Categories whose store failed, each with its error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    pub categories: Vec<CategoryRun>,
}

impl RunReport {
    pub fn erased(&self) -> u64 {
        self.categories.iter().map(|c| c.erased).sum()
    }
    pub fn held(&self) -> u64 {
        self.categories.iter().map(|c| c.held).sum()
    }
}

/// One line of the retention report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub category: String,
    pub name: String,
    pub rule: String,
    /// Whether this build stores the category (a registered eraser).
    pub collected: bool,
    pub live: u64,
    pub oldest_age_days: Option<i64>,
    pub overdue: u64,
    pub held: u64,
}

/// The retention report.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run: Option<OffsetDateTime>,
    pub rows: Vec<ReportRow>,
}

impl RetentionReport {
    pub fn overdue(&self) -> u64 {
        self.rows.iter().map(|r| r.overdue).sum()
    }
}

/// The engine.
#[derive(Clone)]
pub struct RetentionEngine {
    policy: Arc<Policy>,
    db: Db,
    clock: Arc<dyn Clock>,
    erasers: Vec<Arc<dyn Eraser>>,
    audit: AuditLog,
    erasure_log: ErasureLog,
}

impl std::fmt::Debug for RetentionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cats: Vec<&str> = self.erasers.iter().map(|e| e.category()).collect();
        f.debug_struct("RetentionEngine").field("categories", &cats).finish()
    }
}

/// The latest clock start at which a record may be due now: the shortest of
/// the rule's periods decides (stores prefilter with it; the engine decides).
fn cutoff(rule: &RetentionRule, now: OffsetDateTime) -> OffsetDateTime {
    std::iter::once(rule.keep).chain(rule.by_country.values().copied()).map(|p| p.before(now)).max().unwrap_or(now)
}

impl RetentionEngine {
    /// Builds the engine. Refuses an eraser for a category the policy lacks,
    /// two erasers for one category, and a `collected` personal category
    /// without an eraser.
    pub fn new(
        policy: Arc<Policy>,
        db: Db,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        erasers: Vec<Arc<dyn Eraser>>,
        collected: &[&str],
    ) -> Result<Self, PrivacyError> {
        let mut seen = HashMap::new();
        for e in &erasers {
            if policy.category(e.category()).is_none() {
                return Err(PrivacyError::Misconfigured(format!(
                    "a store erases category `{}`, which the policy file does not list",
                    e.category()
                )));
            }
            if seen.insert(e.category(), ()).is_some() {
                return Err(PrivacyError::Misconfigured(format!("two erasers for category `{}`", e.category())));
            }
        }
        for c in collected {
            let category = policy.category(c).ok_or_else(|| {
                PrivacyError::Misconfigured(format!("category `{c}` is stored but the policy file does not list it"))
            })?;
            if category.personal && !seen.contains_key(c) {
                return Err(PrivacyError::Misconfigured(format!(
                    "category `{c}` holds personal data but no store registered an eraser for it"
                )));
            }
        }
        let erasure_log = ErasureLog::new(db.clone(), clock.clone());
        Ok(Self { policy, db, clock, erasers, audit, erasure_log })
    }

    fn rule(&self, category: &str) -> Result<&RetentionRule, PrivacyError> {
        self.policy
            .retention(category)
            .ok_or_else(|| PrivacyError::Misconfigured(format!("no retention rule for `{category}`")))
    }

    /// Due records of one store, split into (to erase, held).
    async fn due(
        &self,
        eraser: &dyn Eraser,
        holds: &[LegalHold],
        now: OffsetDateTime,
    ) -> Result<(Vec<Candidate>, u64), PrivacyError> {
        let rule = self.rule(eraser.category())?;
        let holds: Vec<&LegalHold> = holds.iter().filter(|h| h.category == eraser.category()).collect();
        let mut erase = Vec::new();
        let mut held = 0;
        for c in eraser.candidates(cutoff(rule, now)).await? {
            if rule.due(c.start, c.country.as_deref()) > now {
                continue;
            }
            if holds.iter().any(|h| h.covers(&c)) {
                held += 1;
            } else {
                erase.push(c);
            }
        }
        Ok((erase, held))
    }

    /// Applies every rule once. With `dry_run`, erases nothing and says what would go.
    pub async fn run(&self, actor: &Actor, dry_run: bool) -> Result<RunReport, PrivacyError> {
        let started = self.clock.now();
        let holds = self.active_holds().await?;
        let mut report = RunReport { dry_run, categories: Vec::new(), failures: Vec::new() };
        // One store that fails does not keep the others' due records: every
        // category is tried, and the run fails at the end naming each failure.
        for eraser in &self.erasers {
            match self.apply(eraser.as_ref(), &holds, started, actor, dry_run).await {
                Ok(line) => report.categories.push(line),
                Err(e) => {
                    tracing::error!("retention of `{}` failed: {e}", eraser.category());
                    report.failures.push(format!("{}: {e}", eraser.category()));
                }
            }
        }
        if !dry_run {
            sqlx::query(
                "INSERT INTO retention_runs (started_at, finished_at, dry_run, erased, held, summary)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(to_millis(started))
            .bind(to_millis(self.clock.now()))
            .bind(0i64)
            .bind(i64::try_from(report.erased()).unwrap_or(i64::MAX))
            .bind(i64::try_from(report.held()).unwrap_or(i64::MAX))
            .bind(serde_json::to_string(&report.categories).unwrap_or_default())
            .execute(self.db.pool())
            .await?;
        }
        if !report.failures.is_empty() {
            return Err(PrivacyError::Incomplete(Box::new(report)));
        }
        Ok(report)
    }

    /// Applies the rule of one store.
    async fn apply(
        &self,
        eraser: &dyn Eraser,
        holds: &[LegalHold],
        now: OffsetDateTime,
        actor: &Actor,
        dry_run: bool,
    ) -> Result<CategoryRun, PrivacyError> {
        let (due, held) = self.due(eraser, holds, now).await?;
        let mut line = CategoryRun { category: eraser.category().to_string(), due: due.len() as u64, held, erased: 0 };
        if dry_run || due.is_empty() {
            return Ok(line);
        }
        line.erased = eraser.erase(&due).await?;
        if eraser.logs_erasures() {
            let refs: Vec<(Option<&str>, &str)> =
                due.iter().map(|c| (c.subject.as_deref(), c.record.as_str())).collect();
            self.erasure_log.record(eraser.category(), &refs, ErasureReason::Retention, actor).await?;
        }
        self.audit
            .record(
                actor,
                "retention.erase",
                None,
                Some(eraser.category()),
                serde_json::json!({ "erased": line.erased, "held": held }),
            )
            .await?;
        Ok(line)
    }

    /// For each category: rule, live records, oldest, overdue, held.
    pub async fn report(&self) -> Result<RetentionReport, PrivacyError> {
        let now = self.clock.now();
        let holds = self.active_holds().await?;
        let mut rows = Vec::new();
        for category in &self.policy.categories {
            let eraser = self.erasers.iter().find(|e| e.category() == category.id);
            let mut row = ReportRow {
                category: category.id.clone(),
                name: category.name.clone(),
                rule: category.retention.to_string(),
                collected: eraser.is_some(),
                live: 0,
                oldest_age_days: None,
                overdue: 0,
                held: 0,
            };
            if let Some(e) = eraser {
                let census = e.census().await?;
                row.live = census.live;
                row.oldest_age_days = census.oldest.map(|o| (now - o).whole_days());
                let (due, held) = self.due(e.as_ref(), &holds, now).await?;
                row.overdue = due.len() as u64;
                row.held = held;
            }
            rows.push(row);
        }
        let last = sqlx::query("SELECT MAX(finished_at) AS last FROM retention_runs WHERE dry_run = 0")
            .fetch_one(self.db.pool())
            .await?;
        let last_run: Option<i64> = last.try_get("last")?;
        Ok(RetentionReport { generated_at: now, last_run: last_run.map(from_millis), rows })
    }

    /// Places a legal hold. Only the security and dpo roles (or the operator) may.
    pub async fn place_hold(&self, actor: &Actor, hold: NewHold) -> Result<i64, PrivacyError> {
        if !actor.has_any_role(&[Role::Security, Role::Dpo]) {
            return Err(PrivacyError::Forbidden("only the security or dpo role can place a legal hold".into()));
        }
        // Holding browser data keeps named people's visits: a security matter (BRW-5).
        if hold.category == "browser_event" && !actor.has_any_role(&[Role::Security]) {
            return Err(PrivacyError::Forbidden(
                "only the security role can place a legal hold on browser data".into(),
            ));
        }
        if self.policy.category(&hold.category).is_none() {
            return Err(PrivacyError::Invalid(format!("`{}` is not a data category of the policy", hold.category)));
        }
        if hold.reason.trim().len() < 10 {
            return Err(PrivacyError::Invalid(
                "state the reason for the hold (a case or legal request reference, at least 10 characters)".into(),
            ));
        }
        if crate::card::contains_card_number(&hold.reason) {
            return Err(PrivacyError::Invalid(crate::card::CARD_NUMBER_REFUSED.into()));
        }
        let now = self.clock.now();
        if hold.until <= now {
            return Err(PrivacyError::Invalid("the hold must end in the future".into()));
        }
        if let (Some(f), Some(t)) = (hold.from, hold.to)
            && f > t
        {
            return Err(PrivacyError::Invalid("the held period starts after it ends".into()));
        }
        let row = sqlx::query(
            "INSERT INTO legal_holds (category, subject, from_at, to_at, reason, until_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&hold.category)
        .bind(&hold.subject)
        .bind(hold.from.map(to_millis))
        .bind(hold.to.map(to_millis))
        .bind(&hold.reason)
        .bind(to_millis(hold.until))
        .bind(actor.reference())
        .bind(to_millis(now))
        .fetch_one(self.db.pool())
        .await?;
        let id: i64 = row.try_get("id")?;
        self.audit
            .record(
                actor,
                "legal_hold.place",
                hold.subject.as_deref(),
                Some(&hold.category),
                serde_json::json!({ "hold": id, "reason": hold.reason, "until": hold.until.unix_timestamp() }),
            )
            .await?;
        Ok(id)
    }

    /// Ends a hold early.
    pub async fn release_hold(&self, actor: &Actor, id: i64) -> Result<(), PrivacyError> {
        if !actor.has_any_role(&[Role::Security, Role::Dpo]) {
            return Err(PrivacyError::Forbidden("only the security or dpo role can release a legal hold".into()));
        }
        let done = sqlx::query(
            "UPDATE legal_holds SET released_at = $1, released_by = $2 WHERE id = $3 AND released_at IS NULL",
        )
        .bind(to_millis(self.clock.now()))
        .bind(actor.reference())
        .bind(id)
        .execute(self.db.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(PrivacyError::Invalid(format!("no active legal hold {id}")));
        }
        self.audit.record(actor, "legal_hold.release", None, None, serde_json::json!({ "hold": id })).await?;
        Ok(())
    }

    /// Every hold, newest first.
    pub async fn holds(&self) -> Result<Vec<LegalHold>, PrivacyError> {
        let rows = sqlx::query(
            "SELECT id, category, subject, from_at, to_at, reason, until_at, created_by, released_at
             FROM legal_holds ORDER BY id DESC",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LegalHold {
                    id: r.try_get("id")?,
                    category: r.try_get("category")?,
                    subject: r.try_get("subject")?,
                    from: r.try_get::<Option<i64>, _>("from_at")?.map(from_millis),
                    to: r.try_get::<Option<i64>, _>("to_at")?.map(from_millis),
                    reason: r.try_get("reason")?,
                    until: from_millis(r.try_get("until_at")?),
                    created_by: r.try_get("created_by")?,
                    released_at: r.try_get::<Option<i64>, _>("released_at")?.map(from_millis),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn active_holds(&self) -> Result<Vec<LegalHold>, PrivacyError> {
        let now = self.clock.now();
        Ok(self.holds().await?.into_iter().filter(|h| h.active(now)).collect())
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn erasure_log(&self) -> &ErasureLog {
        &self.erasure_log
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing;
    use time::Duration;
    use time::macros::datetime;

    /// An in-memory store of one category.
    struct Memory {
        category: &'static str,
        records: Mutex<Vec<Candidate>>,
    }

    impl Eraser for Memory {
        fn category(&self) -> &'static str {
            self.category
        }
        fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
            let v = self.records.lock().expect("lock").iter().filter(|c| c.start <= cutoff).cloned().collect();
            Box::pin(async move { Ok(v) })
        }
        fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
            let mut all = self.records.lock().expect("lock");
            let before = all.len();
            all.retain(|c| !records.contains(c));
            let n = (before - all.len()) as u64;
            Box::pin(async move { Ok(n) })
        }
        fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
            let all = self.records.lock().expect("lock");
            let c = Census { live: all.len() as u64, oldest: all.iter().map(|c| c.start).min() };
            Box::pin(async move { Ok(c) })
        }
    }

    fn record(id: &str, start: OffsetDateTime, country: Option<&str>) -> Candidate {
        Candidate {
            record: id.into(),
            subject: Some(seldesk_domain::Subject::person(id).into_string()),
            start,
            country: country.map(Into::into),
        }
    }

    /// A store whose erasing fails.
    struct Broken;

    impl Eraser for Broken {
        fn category(&self) -> &'static str {
            "helpdesk_ticket"
        }
        fn candidates<'a>(&'a self, _: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
            Box::pin(async { Ok(vec![record("stuck", datetime!(2020-01-01 00:00 UTC), None)]) })
        }
        fn erase<'a>(&'a self, _: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
            Box::pin(async { Err(PrivacyError::Invalid("the disk is read-only".into())) })
        }
        fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
            Box::pin(async { Ok(Census { live: 1, oldest: None }) })
        }
    }

    #[tokio::test]
    async fn a_failing_store_does_not_stop_the_categories_after_it() {
        let (db, clock, _dir) = testing::db().await;
        let policy = Arc::new(Policy::builtin().expect("policy"));
        let start = datetime!(2020-01-10 09:00 UTC);
        let store =
            Arc::new(Memory { category: "invoice", records: Mutex::new(vec![record("old", start, Some("SG"))]) });
        let engine = RetentionEngine::new(
            policy,
            db.clone(),
            testing::clock(&clock),
            testing::audit(&db, &clock),
            vec![Arc::new(Broken), store.clone()],
            &[],
        )
        .expect("engine");
        clock.set(datetime!(2031-01-10 09:00 UTC));
        let Err(PrivacyError::Incomplete(report)) = engine.run(&Actor::System, false).await else {
            panic!("the run must fail, naming the broken store");
        };
        assert_eq!(report.failures, ["helpdesk_ticket: the disk is read-only"]);
        assert_eq!(report.erased(), 1, "the store after the broken one was still applied");
        assert!(store.records.lock().expect("lock").is_empty());
        let error = PrivacyError::Incomplete(report).to_string();
        assert!(error.contains("helpdesk_ticket: the disk is read-only"), "{error}");
    }

    #[tokio::test]
    async fn per_country_periods_decide_and_not_a_day_early() {
        let (db, clock, _dir) = testing::db().await;
        let policy = Arc::new(Policy::builtin().expect("policy"));
        let start = datetime!(2026-01-10 09:00 UTC);
        let store = Arc::new(Memory {
            category: "invoice",
            records: Mutex::new(vec![record("sg", start, Some("SG")), record("fr", start, Some("FR"))]),
        });
        let engine = RetentionEngine::new(
            policy,
            db.clone(),
            testing::clock(&clock),
            testing::audit(&db, &clock),
            vec![store.clone()],
            &[],
        )
        .expect("engine");
        clock.set(datetime!(2031-01-09 09:00 UTC));
        assert_eq!(engine.run(&Actor::System, false).await.expect("run").erased(), 0, "SG: 5 years not yet over");
        clock.set(datetime!(2031-01-10 09:00 UTC));
        assert_eq!(engine.run(&Actor::System, false).await.expect("run").erased(), 1, "SG invoice at 5 years");
        clock.set(datetime!(2036-01-09 09:00 UTC));
        assert_eq!(engine.run(&Actor::System, false).await.expect("run").erased(), 0);
        clock.set(datetime!(2036-01-10 09:00 UTC));
        assert_eq!(engine.run(&Actor::System, false).await.expect("run").erased(), 1, "default 10 years");
        let log = engine.erasure_log().for_subject("person:sg").await.expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].reason, "retention");
    }

    #[tokio::test]
    async fn start_up_refuses_a_stored_personal_category_without_eraser() {
        let (db, clock, _dir) = testing::db().await;
        let policy = Arc::new(Policy::builtin().expect("policy"));
        let err = RetentionEngine::new(
            policy.clone(),
            db.clone(),
            testing::clock(&clock),
            testing::audit(&db, &clock),
            vec![],
            &["browser_event"],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("browser_event"), "{err}");
        let stray = Arc::new(Memory { category: "not_in_policy", records: Mutex::new(vec![]) });
        let err = RetentionEngine::new(
            policy,
            db.clone(),
            testing::clock(&clock),
            testing::audit(&db, &clock),
            vec![stray],
            &[],
        )
        .expect_err("refused");
        assert!(err.to_string().contains("not_in_policy"), "{err}");
    }

    #[tokio::test]
    async fn holds_need_the_right_role_and_a_reason() {
        let (db, clock, _dir) = testing::db().await;
        let policy = Arc::new(Policy::builtin().expect("policy"));
        let engine =
            RetentionEngine::new(policy, db.clone(), testing::clock(&clock), testing::audit(&db, &clock), vec![], &[])
                .expect("engine");
        let hold = NewHold {
            category: "browser_event".into(),
            subject: None,
            from: None,
            to: None,
            reason: "AUP case 2026-17: abuse from one address".into(),
            until: clock.now() + Duration::days(30),
        };
        let support = Actor::Staff { id: "s1".into(), roles: vec![Role::Support] };
        assert!(matches!(engine.place_hold(&support, hold.clone()).await, Err(PrivacyError::Forbidden(_))));
        let short = NewHold { reason: "because".into(), ..hold.clone() };
        let security = Actor::Staff { id: "s2".into(), roles: vec![Role::Security] };
        assert!(matches!(engine.place_hold(&security, short).await, Err(PrivacyError::Invalid(_))));
        let id = engine.place_hold(&security, hold).await.expect("placed");
        let audit = engine.audit().recent(5).await.expect("audit");
        assert!(audit.iter().any(|e| e.action == "legal_hold.place" && e.actor == "staff:s2"));
        engine.release_hold(&security, id).await.expect("released");
        assert!(engine.release_hold(&security, id).await.is_err(), "only once");
    }
}
