//! Trend reports (MKT-2, PRC-3): sign-ups, trials and conversions by month,
//! country, industry and interest. A job adds each new record to monthly
//! counts once, when first seen; reports read only those counts, so they
//! outlive the records and never see a person. Any cell under the policy's
//! `research.min_group_size` is suppressed.

use std::collections::BTreeMap;

use seldesk_domain::Actor;
use seldesk_store::{from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;

use crate::{Marketing, MarketingError, marketing_only};

/// What a report breaks the months down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Total,
    Country,
    Industry,
    Interest,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [Dimension::Total, Dimension::Country, Dimension::Industry, Dimension::Interest];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Dimension::Total => "total",
            Dimension::Country => "country",
            Dimension::Industry => "industry",
            Dimension::Interest => "interest",
        }
    }
}

/// One line of a report; `None` is a suppressed (too small) count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrendRow {
    pub month: String,
    pub value: String,
    pub signups: Option<u64>,
    pub trials: Option<u64>,
    pub conversions: Option<u64>,
}

/// The metrics and where each is read from: (metric, time column, query).
const METRICS: [(&str, &str); 3] = [
    (
        "signups",
        "SELECT a.created_at AS at, a.country, a.industry, a.interest FROM accounts a
         WHERE a.created_at > $1 AND a.created_at <= $2",
    ),
    (
        "trials",
        "SELECT d.created_at AS at, a.country, a.industry, a.interest FROM databases d LEFT JOIN accounts a ON a.id = d.account_id
         WHERE d.trial_ends_at IS NOT NULL AND d.created_at > $1 AND d.created_at <= $2",
    ),
    (
        "conversions",
        "SELECT d.converted_at AS at, a.country, a.industry, a.interest FROM databases d LEFT JOIN accounts a ON a.id = d.account_id
         WHERE d.converted_at IS NOT NULL AND d.converted_at > $1 AND d.converted_at <= $2",
    ),
];

fn month_of(millis: i64) -> String {
    let t = from_millis(millis);
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

impl Marketing {
    /// The job: counts records created since the last run, once each.
    /// Returns how many were counted.
    pub async fn aggregate_trends(&self) -> Result<u64, MarketingError> {
        let upto = to_millis(self.now());
        let mut counted = 0;
        for (metric, sql) in METRICS {
            let mut tx = self.db.begin_write().await?;
            let from: i64 = sqlx::query_scalar("SELECT upto FROM trend_watermarks WHERE metric = $1")
                .bind(metric)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(i64::MIN);
            let rows = sqlx::query(sql).bind(from).bind(upto).fetch_all(&mut *tx).await?;
            let mut cells: BTreeMap<(String, String, String, String), i64> = BTreeMap::new();
            for r in &rows {
                let dim =
                    |k: &str| r.try_get::<Option<String>, _>(k).ok().flatten().unwrap_or_else(|| "unknown".into());
                let key = (month_of(r.try_get("at")?), dim("country"), dim("industry"), dim("interest"));
                *cells.entry(key).or_default() += 1;
            }
            for ((month, country, industry, interest), n) in cells {
                sqlx::query(
                    "INSERT INTO trend_counts (month, metric, country, industry, interest, n) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (month, metric, country, industry, interest) DO UPDATE SET n = trend_counts.n + excluded.n",
                )
                .bind(&month)
                .bind(metric)
                .bind(&country)
                .bind(&industry)
                .bind(&interest)
                .bind(n)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO trend_watermarks (metric, upto) VALUES ($1, $2) ON CONFLICT (metric) DO UPDATE SET upto = excluded.upto",
            )
            .bind(metric)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            counted += rows.len() as u64;
        }
        Ok(counted)
    }

    /// A report by month and `dimension`, small cells suppressed.
    pub async fn trends(&self, actor: &Actor, dimension: Dimension) -> Result<Vec<TrendRow>, MarketingError> {
        marketing_only(actor)?;
        // Fixed column names, never input. `'all'` is grouped by position
        // rather than by value: PostgreSQL refuses a constant in GROUP BY.
        let column = match dimension {
            Dimension::Total => "'all'",
            Dimension::Country => "country",
            Dimension::Industry => "industry",
            Dimension::Interest => "interest",
        };
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT month, {column} AS value, metric, CAST(SUM(n) AS BIGINT) AS n FROM trend_counts GROUP BY 1, 2, 3 ORDER BY 1, 2"
        )))
        .fetch_all(self.db.pool())
        .await?;
        let min = self.policy.research.min_group_size;
        let mut table: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
        for r in &rows {
            let metric: String = r.try_get("metric")?;
            let i = match metric.as_str() {
                "signups" => 0,
                "trials" => 1,
                _ => 2,
            };
            let n = r.try_get::<i64, _>("n")?.max(0) as u64;
            table.entry((r.try_get("month")?, r.try_get("value")?)).or_default()[i] += n;
        }
        let keep = |n: u64| if n >= min { Some(n) } else { None };
        Ok(table
            .into_iter()
            .filter(|(_, c)| c.iter().any(|n| *n > 0))
            .map(|((month, value), c)| TrendRow {
                month,
                value: if dimension == Dimension::Country {
                    seldesk_domain::country::name(&value).map(str::to_string).unwrap_or(value)
                } else {
                    value
                },
                signups: keep(c[0]).or(if c[0] == 0 { Some(0) } else { None }),
                trials: keep(c[1]).or(if c[1] == 0 { Some(0) } else { None }),
                conversions: keep(c[2]).or(if c[2] == 0 { Some(0) } else { None }),
            })
            .collect())
    }

    /// The report as CSV for research; suppressed cells read `<N`.
    pub async fn trends_csv(&self, actor: &Actor, dimension: Dimension) -> Result<String, MarketingError> {
        let rows = self.trends(actor, dimension).await?;
        let small = format!("<{}", self.policy.research.min_group_size);
        let cell = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| small.clone());
        let mut out = format!("month,{},signups,trials,conversions\n", dimension.as_str());
        for r in rows {
            let value =
                if r.value.contains([',', '"']) { format!("\"{}\"", r.value.replace('"', "\"\"")) } else { r.value };
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                r.month,
                value,
                cell(r.signups),
                cell(r.trials),
                cell(r.conversions)
            ));
        }
        self.audit
            .record(actor, "trends.exported", None, None, serde_json::json!({ "dimension": dimension.as_str() }))
            .await?;
        Ok(out)
    }
}
