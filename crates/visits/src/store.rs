//! Where visits live: daily SQLite files beside an embedded control plane, or
//! a PostgreSQL table partitioned by day (declarative partitions) when the
//! control plane is PostgreSQL, so that every node of a cluster writes to,
//! searches and expires the same data. Either way expiry drops whole days.

use std::path::Path;

use seldesk_store::{Backend, Db, from_millis, to_millis};
use sqlx::Row;
use time::{Date, OffsetDateTime};

use crate::{FileVisits, Hold, Visit, VisitError, Who, day_name};

/// The visit store of this node.
#[derive(Debug, Clone)]
pub enum VisitStore {
    Files(FileVisits),
    Postgres(PgVisits),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VisitError> + Send + 'static,
) -> Result<T, VisitError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| VisitError::Task(e.to_string()))?
}

impl VisitStore {
    /// Files under `<data>/visits` with SQLite, partitions with PostgreSQL.
    pub fn for_node(data: &Path, db: &Db) -> Self {
        match db.backend() {
            Backend::Sqlite => Self::Files(FileVisits::new(data)),
            Backend::Postgres => Self::Postgres(PgVisits { db: db.clone() }),
        }
    }

    /// Stores a batch.
    pub async fn write(&self, visits: Vec<Visit>) -> Result<(), VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.write(&visits)).await
            }
            Self::Postgres(p) => p.write(&visits).await,
        }
    }

    /// Days that have a partition, oldest first.
    pub async fn days(&self) -> Result<Vec<Date>, VisitError> {
        match self {
            Self::Files(f) => Ok(f.days()),
            Self::Postgres(p) => p.days().await,
        }
    }

    /// Visits of one day, in order.
    pub async fn day(&self, day: Date) -> Result<Vec<Visit>, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.day(day)).await
            }
            Self::Postgres(p) => p.select("SELECT * FROM visits WHERE at >= $1 AND at < $2 ORDER BY at", day).await,
        }
    }

    /// Visits kept past expiry by a legal hold.
    pub async fn held(&self) -> Result<Vec<Visit>, VisitError> {
        Ok(self.held_with_ids().await?.into_iter().map(|(_, v)| v).collect())
    }

    pub async fn held_with_ids(&self) -> Result<Vec<(i64, Visit)>, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.held_with_ids()).await
            }
            Self::Postgres(p) => {
                let rows = sqlx::query("SELECT * FROM visits_held ORDER BY id").fetch_all(p.db.pool()).await?;
                rows.iter().map(|r| Ok((r.try_get("id")?, pg_visit(r)?))).collect()
            }
        }
    }

    /// Every retained visit of an IP or a person, newest first.
    pub async fn search(&self, who: Who) -> Result<Vec<Visit>, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.search(&who)).await
            }
            Self::Postgres(p) => p.search(&who).await,
        }
    }

    /// Drops a day, first keeping aside what active holds cover.
    pub(crate) async fn drop_day(&self, day: Date, holds: Vec<Hold>) -> Result<u64, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.drop_day(day, &holds)).await
            }
            Self::Postgres(p) => p.drop_day(day, &holds).await,
        }
    }

    pub async fn delete_held(&self, ids: Vec<i64>) -> Result<u64, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.delete_held(&ids)).await
            }
            Self::Postgres(p) => {
                let mut n = 0;
                for id in ids {
                    n += sqlx::query("DELETE FROM visits_held WHERE id = $1")
                        .bind(id)
                        .execute(p.db.pool())
                        .await?
                        .rows_affected();
                }
                Ok(n)
            }
        }
    }

    /// Erases every visit linked to a person.
    pub async fn erase_person(&self, person: String) -> Result<u64, VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.erase_person(&person)).await
            }
            Self::Postgres(p) => {
                let a = sqlx::query("DELETE FROM visits WHERE person = $1").bind(&person).execute(p.db.pool()).await?;
                let b =
                    sqlx::query("DELETE FROM visits_held WHERE person = $1").bind(&person).execute(p.db.pool()).await?;
                Ok(a.rows_affected() + b.rows_affected())
            }
        }
    }

    /// Visits kept and the oldest clock start.
    pub async fn census(&self) -> Result<(u64, Option<OffsetDateTime>), VisitError> {
        match self {
            Self::Files(f) => {
                let f = f.clone();
                blocking(move || f.census()).await
            }
            Self::Postgres(p) => {
                let r = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM visits) + (SELECT COUNT(*) FROM visits_held) AS n,
                            LEAST((SELECT MIN(at) FROM visits), (SELECT MIN(at) FROM visits_held)) AS oldest",
                )
                .fetch_one(p.db.pool())
                .await?;
                Ok((r.try_get::<i64, _>("n")?.max(0) as u64, r.try_get::<Option<i64>, _>("oldest")?.map(from_millis)))
            }
        }
    }
}

/// Visits in PostgreSQL: `visits` partitioned by range of `at`, one
/// partition per day (`visits_YYYYMMDD`), created when a day's first visit
/// is written and dropped whole at expiry.
#[derive(Debug, Clone)]
pub struct PgVisits {
    db: Db,
}

fn day_bounds(day: Date) -> (i64, i64) {
    let start = day.midnight().assume_utc();
    let end = day.next_day().unwrap_or(day).midnight().assume_utc();
    (to_millis(start), to_millis(end))
}

/// The partition's name; built from a date only, never from input.
fn partition(day: Date) -> String {
    format!("visits_{}", day_name(day).replace('-', ""))
}

fn pg_visit(r: &sqlx::any::AnyRow) -> Result<Visit, sqlx::Error> {
    Ok(Visit {
        at: from_millis(r.try_get("at")?),
        ip: r.try_get("ip")?,
        browser: r.try_get("browser")?,
        browser_version: r.try_get("browser_version")?,
        platform: r.try_get("platform")?,
        referrer: r.try_get("referrer")?,
        path: r.try_get("path")?,
        language: r.try_get("language")?,
        country: r.try_get("country")?,
        person: r.try_get("person")?,
        session: None,
        user_agent: None,
        visit: r.try_get("visit")?,
    })
}

const INSERT_COLUMNS: &str =
    "at, ip, browser, browser_version, platform, referrer, path, language, country, person, visit";

/// Stores a visit: in `visits` (routed to its day's partition), or in
/// `visits_held` for the hold `hold`.
async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    v: &Visit,
    hold: Option<i64>,
) -> Result<(), sqlx::Error> {
    let sql = match hold {
        None => format!("INSERT INTO visits ({INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
        Some(_) => format!(
            "INSERT INTO visits_held ({INSERT_COLUMNS}, hold_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(to_millis(v.at))
        .bind(v.ip.clone())
        .bind(v.browser.clone())
        .bind(v.browser_version.clone())
        .bind(v.platform.clone())
        .bind(v.referrer.clone())
        .bind(v.path.clone())
        .bind(v.language.clone())
        .bind(v.country.clone())
        .bind(v.person.clone())
        .bind(v.visit.clone());
    if let Some(h) = hold {
        q = q.bind(h);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

impl PgVisits {
    async fn write(&self, visits: &[Visit]) -> Result<(), VisitError> {
        let mut days: Vec<Date> = visits.iter().map(|v| v.at.date()).collect();
        days.sort();
        days.dedup();
        for day in days {
            let (from, to) = day_bounds(day);
            // Several nodes may race to create the same day: IF NOT EXISTS.
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF visits FOR VALUES FROM ({from}) TO ({to})",
                partition(day)
            );
            sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(self.db.pool()).await?;
        }
        let mut tx = self.db.begin_write().await?;
        for v in visits {
            insert(&mut tx, v, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn days(&self) -> Result<Vec<Date>, VisitError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'visits' AND p.relnamespace = to_regnamespace(current_schema())::oid",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut days: Vec<Date> = names
            .iter()
            .filter_map(|n| {
                let d = n.strip_prefix("visits_")?;
                Date::parse(d, time::macros::format_description!("[year][month][day]")).ok()
            })
            .collect();
        days.sort();
        Ok(days)
    }

    async fn select(&self, sql: &'static str, day: Date) -> Result<Vec<Visit>, VisitError> {
        let (from, to) = day_bounds(day);
        let rows = sqlx::query(sql).bind(from).bind(to).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(pg_visit).collect::<Result<_, _>>()?)
    }

    async fn search(&self, who: &Who) -> Result<Vec<Visit>, VisitError> {
        let (column, value) = match who {
            Who::Ip(ip) => ("ip", ip.as_str()),
            Who::Person(p) => ("person", p.as_str()),
        };
        let sql = format!(
            "SELECT {INSERT_COLUMNS} FROM visits WHERE {column} = $1
             UNION ALL SELECT {INSERT_COLUMNS} FROM visits_held WHERE {column} = $1 ORDER BY at DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(pg_visit).collect::<Result<_, _>>()?)
    }

    async fn drop_day(&self, day: Date, holds: &[Hold]) -> Result<u64, VisitError> {
        if !self.days().await?.contains(&day) {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        if !holds.is_empty() {
            let visits = self.select("SELECT * FROM visits WHERE at >= $1 AND at < $2 ORDER BY at", day).await?;
            for v in &visits {
                if let Some(h) = holds.iter().find(|h| h.covers(v)) {
                    insert(&mut tx, v, Some(h.id)).await?;
                }
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", partition(day)))).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(1)
    }
}
