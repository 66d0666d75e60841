//! Anonymous statistics (BRW-3): daily counts per page, referrer host,
//! country, browser, platform and language, computed from a day's visits
//! into the control plane. No IP address reaches them: visitors are counted
//! by truncated address (IPv4 /24, IPv6 /48), groups smaller than the
//! policy's minimum are folded into "(other)" — or dropped when that is small
//! too — and the aggregates outlive the raw visits.

use std::collections::{BTreeMap, HashMap, HashSet};

use seldesk_store::Db;
use serde::Serialize;
use sqlx::Row;
use time::Date;

use crate::{VisitError, VisitStore, day_name};

/// The dimensions the dashboard breaks visits down by.
pub const DIMENSIONS: &[(&str, &str)] = &[
    ("page", "Top pages"),
    ("referrer", "Referrers"),
    ("country", "Countries"),
    ("browser", "Browsers"),
    ("platform", "Platforms"),
    ("language", "Languages"),
];

/// The address with its host part removed: IPv4 /24, IPv6 /48.
pub fn truncate_ip(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => "unknown".into(),
    }
}

/// Only the host of a referring page: paths and queries can carry personal data.
fn referrer_host(r: &str) -> String {
    let rest = r.split_once("://").map(|(_, x)| x).unwrap_or(r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    if host.is_empty() { "(direct)".into() } else { host.to_ascii_lowercase() }
}

/// One day's totals.
#[derive(Debug, Clone, Serialize)]
pub struct DayTotal {
    pub day: Date,
    pub visits: u64,
    pub visitors: u64,
}

/// What the dashboard shows for a period.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub days: Vec<DayTotal>,
    /// Per dimension, (value, visits), largest first.
    pub top: BTreeMap<String, Vec<(String, u64)>>,
    pub min_group: u32,
    /// Pages viewed and visits made by visitors who accepted analytics
    /// cookies (only they can be followed from page to page).
    pub consented_pages: u64,
    pub consented_visits: u64,
}

/// Computes and reads the daily aggregates.
#[derive(Clone)]
pub struct Aggregates {
    db: Db,
    store: VisitStore,
    min_group: u32,
}

impl Aggregates {
    pub fn new(db: Db, store: VisitStore, min_group: u32) -> Self {
        Self { db, store, min_group }
    }

    /// (Re)computes one day from its partition; returns the groups stored.
    pub async fn aggregate_day(&self, day: Date) -> Result<usize, AggregateError> {
        let visits = self.store.day(day).await?;
        let mut groups: HashMap<(&str, String), (u64, HashSet<String>)> = HashMap::new();
        let mut add = |dim: &'static str, value: String, net: &String| {
            let g = groups.entry((dim, value)).or_default();
            g.0 += 1;
            g.1.insert(net.clone());
        };
        for v in &visits {
            let net = truncate_ip(&v.ip);
            add("total", String::new(), &net);
            add("page", v.path.clone(), &net);
            add("referrer", v.referrer.as_deref().map(referrer_host).unwrap_or_else(|| "(direct)".into()), &net);
            add("country", v.country.clone().unwrap_or_else(|| "(unknown)".into()), &net);
            add("browser", v.browser.clone(), &net);
            add("platform", v.platform.clone(), &net);
            // Site interaction: only visitors who accepted analytics cookies
            // carry a visit id; "visitors" here counts their visits.
            if let Some(visit) = &v.visit {
                add("interaction", "pages".into(), visit);
            }
            add(
                "language",
                v.language
                    .as_deref()
                    .map(|l| l.split('-').next().unwrap_or(l).to_ascii_lowercase())
                    .unwrap_or_else(|| "(none)".into()),
                &net,
            );
        }
        // Small groups fold into "(other)"; an "(other)" still too small goes.
        let min = u64::from(self.min_group);
        let mut rows: Vec<(&str, String, u64, u64)> = Vec::new();
        let mut other: HashMap<&str, (u64, HashSet<String>)> = HashMap::new();
        for ((dim, value), (n, nets)) in groups {
            if n >= min {
                rows.push((dim, value, n, nets.len() as u64));
            } else if dim != "total" {
                let o = other.entry(dim).or_default();
                o.0 += n;
                o.1.extend(nets);
            }
        }
        for (dim, (n, nets)) in other {
            if n >= min {
                rows.push((dim, "(other)".into(), n, nets.len() as u64));
            }
        }
        let mut tx = self.db.begin_write().await.map_err(|e| AggregateError::Store(e.to_string()))?;
        let d = day_name(day);
        sqlx::query("DELETE FROM visit_daily WHERE day = $1").bind(&d).execute(&mut *tx).await?;
        for (dim, value, n, visitors) in &rows {
            sqlx::query(
                "INSERT INTO visit_daily (day, dimension, value, visits, visitors) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&d)
            .bind(*dim)
            .bind(value)
            .bind(*n as i64)
            .bind(*visitors as i64)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO visit_days_done (day) VALUES ($1) ON CONFLICT (day) DO NOTHING")
            .bind(&d)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Aggregates every finished day not done yet (before `today`); returns how many.
    pub async fn aggregate_pending(&self, today: Date) -> Result<usize, AggregateError> {
        let done: HashSet<String> = sqlx::query_scalar("SELECT day FROM visit_days_done")
            .fetch_all(self.db.pool())
            .await?
            .into_iter()
            .collect();
        let mut n = 0;
        for day in self.store.days().await? {
            if day < today && !done.contains(&day_name(day)) {
                self.aggregate_day(day).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The dashboard for `from..=to`.
    pub async fn dashboard(&self, from: Date, to: Date, top: usize) -> Result<Dashboard, AggregateError> {
        let rows = sqlx::query(
            "SELECT day, dimension, value, visits, visitors FROM visit_daily WHERE day >= $1 AND day <= $2 ORDER BY day",
        )
        .bind(day_name(from))
        .bind(day_name(to))
        .fetch_all(self.db.pool())
        .await?;
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut consented = (0u64, 0u64);
        let mut dims: BTreeMap<String, HashMap<String, u64>> = BTreeMap::new();
        for r in &rows {
            let day: String = r.try_get("day")?;
            let dim: String = r.try_get("dimension")?;
            let value: String = r.try_get("value")?;
            let visits = r.try_get::<i64, _>("visits")?.max(0) as u64;
            let visitors = r.try_get::<i64, _>("visitors")?.max(0) as u64;
            if dim == "total" {
                totals.insert(day, (visits, visitors));
            } else if dim == "interaction" {
                consented.0 += visits;
                consented.1 += visitors;
            } else {
                *dims.entry(dim).or_default().entry(value).or_default() += visits;
            }
        }
        let mut days = Vec::new();
        let mut d = from;
        while d <= to {
            let (visits, visitors) = totals.get(&day_name(d)).copied().unwrap_or((0, 0));
            days.push(DayTotal { day: d, visits, visitors });
            match d.next_day() {
                Some(n) => d = n,
                None => break,
            }
        }
        let top = DIMENSIONS
            .iter()
            .map(|(dim, _)| {
                let mut list: Vec<(String, u64)> = dims.remove(*dim).unwrap_or_default().into_iter().collect();
                list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                list.truncate(top);
                (dim.to_string(), list)
            })
            .collect();
        Ok(Dashboard {
            days,
            top,
            min_group: self.min_group,
            consented_pages: consented.0,
            consented_visits: consented.1,
        })
    }
}

/// Errors of the aggregates.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    Visits(#[from] VisitError),
    #[error("aggregates query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("aggregates store: {0}")]
    Store(String),
    #[error("aggregates task: {0}")]
    Task(String),
}

impl seldesk_domain::Failure for AggregateError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        seldesk_domain::ErrorKind::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_truncated_and_referrers_keep_only_the_host() {
        assert_eq!(truncate_ip("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(truncate_ip("2001:db8:abcd:12::1"), "2001:db8:abcd::/48");
        assert_eq!(referrer_host("https://User@Search.Example/q?email=a@b.c"), "search.example");
        assert_eq!(referrer_host(""), "(direct)");
    }
}
