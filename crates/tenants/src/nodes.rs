//! The nodes of a cluster (issue 30): each `seldesk serve` registers in the
//! control plane with the regions whose customer databases live on it, and
//! beats every few seconds; a node not heard from for [`LIVE_FOR`] is
//! taken as down. Placement asks here for a live node of a region.

use std::sync::Arc;

use seldesk_domain::Clock;
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::TenantError;

/// How often a node beats.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// A node silent for this long is taken as down (six missed beats).
pub const LIVE_FOR: time::Duration = time::Duration::seconds(30);

/// A node as the control plane knows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub regions: Vec<String>,
    /// How other nodes reach it (`--advertise`), empty when not set.
    pub address: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Customer databases in its regions, at its last beat.
    pub databases: i64,
    /// Bytes of customer databases on its disk, at its last count.
    pub disk_bytes: i64,
    /// Heard from within [`LIVE_FOR`], and not retired.
    pub live: bool,
    /// Given up for dead: its databases were recovered elsewhere.
    pub retired: bool,
    /// Being drained: it takes no new database (`seldesk node drain`).
    pub draining: bool,
    /// How long its oldest commit not yet shipped to the backup regions had
    /// waited at its last beat, in milliseconds.
    pub stream_lag_ms: i64,
}

/// The node registry.
#[derive(Clone)]
pub struct Nodes {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Nodes {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Registers this node (again, after a restart) with its regions.
    /// `node_id` is the data folder's own id: another live node by the same
    /// name (two machines with one host name) is refused, not overwritten.
    pub async fn register(
        &self,
        name: &str,
        node_id: &str,
        regions: &[String],
        address: &str,
    ) -> Result<(), TenantError> {
        let now = self.clock.now();
        let row = sqlx::query("SELECT node_id, last_seen_at FROM nodes WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        if let Some(row) = row {
            let (other, seen): (String, i64) = (row.try_get("node_id")?, row.try_get("last_seen_at")?);
            if other != node_id && now - from_millis(seen) < LIVE_FOR {
                return Err(TenantError::Conflict(format!(
                    "another node named `{name}` is running (data folder {other}); give this one its own name with --node-name"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO nodes (name, node_id, regions, address, version, started_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (name) DO UPDATE SET node_id = $2, regions = $3, address = $4, version = $5, started_at = $6, last_seen_at = $6, retired = 0",
        )
        .bind(name)
        .bind(node_id)
        .bind(regions.join(","))
        .bind(address)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(to_millis(now))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// One beat: alive now, with its databases and (when counted) disk
    /// use. Returns how many databases its regions hold.
    pub async fn beat(&self, name: &str, disk_bytes: Option<u64>) -> Result<i64, TenantError> {
        let now = to_millis(self.clock.now());
        let regions: Option<String> = sqlx::query_scalar("SELECT regions FROM nodes WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(regions) = regions else { return Ok(0) };
        let mut databases = 0i64;
        for region in regions.split(',').filter(|r| !r.is_empty()) {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE region = $1")
                .bind(region)
                .fetch_one(self.db.pool())
                .await?;
            databases += n;
        }
        match disk_bytes {
            Some(bytes) => {
                sqlx::query("UPDATE nodes SET last_seen_at = $1, databases = $2, disk_bytes = $3 WHERE name = $4")
                    .bind(now)
                    .bind(databases)
                    .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                    .bind(name)
                    .execute(self.db.pool())
                    .await?
            }
            None => {
                sqlx::query("UPDATE nodes SET last_seen_at = $1, databases = $2 WHERE name = $3")
                    .bind(now)
                    .bind(databases)
                    .bind(name)
                    .execute(self.db.pool())
                    .await?
            }
        };
        Ok(databases)
    }

    /// Records how far behind this node's shipping of commits is.
    pub async fn set_stream_lag(&self, name: &str, lag_ms: i64) -> Result<(), TenantError> {
        sqlx::query("UPDATE nodes SET stream_lag_ms = $1 WHERE name = $2")
            .bind(lag_ms)
            .bind(name)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Every node the control plane knows, by name.
    pub async fn list(&self) -> Result<Vec<NodeInfo>, TenantError> {
        let now = self.clock.now();
        let rows = sqlx::query(
            "SELECT name, regions, address, version, started_at, last_seen_at, databases, disk_bytes, retired, draining, stream_lag_ms
             FROM nodes ORDER BY name",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let last_seen = from_millis(r.try_get("last_seen_at")?);
                let retired = r.try_get::<i64, _>("retired")? != 0;
                Ok(NodeInfo {
                    name: r.try_get("name")?,
                    regions: r
                        .try_get::<String, _>("regions")?
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    address: r.try_get("address")?,
                    version: r.try_get("version")?,
                    started_at: from_millis(r.try_get("started_at")?),
                    last_seen,
                    databases: r.try_get("databases")?,
                    disk_bytes: r.try_get("disk_bytes")?,
                    live: !retired && now - last_seen < LIVE_FOR,
                    retired,
                    draining: r.try_get::<i64, _>("draining")? != 0,
                    stream_lag_ms: r.try_get("stream_lag_ms")?,
                })
            })
            .collect()
    }

    /// Marks a node given up for dead (its databases recovered elsewhere).
    /// A retired node that starts again registers afresh.
    pub async fn retire(&self, name: &str) -> Result<(), TenantError> {
        sqlx::query("UPDATE nodes SET retired = 1 WHERE name = $1").bind(name).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Marks a node as draining (no new databases) or not. False: no such node.
    pub async fn set_draining(&self, name: &str, draining: bool) -> Result<bool, TenantError> {
        let done = sqlx::query("UPDATE nodes SET draining = $1 WHERE name = $2")
            .bind(i64::from(draining))
            .bind(name)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where a database of `region` goes, other than `except`: the live,
    /// undrained node of the region with the fewest databases, then the
    /// least disk used.
    pub async fn place(&self, region: &str, except: Option<&str>) -> Result<Option<NodeInfo>, TenantError> {
        let mut live: Vec<NodeInfo> = self
            .live_in(region)
            .await?
            .into_iter()
            .filter(|n| !n.draining && Some(n.name.as_str()) != except && !n.address.is_empty())
            .collect();
        live.sort_by_key(|n| (n.databases, n.disk_bytes));
        Ok(live.into_iter().next())
    }

    /// The live nodes serving `region`.
    pub async fn live_in(&self, region: &str) -> Result<Vec<NodeInfo>, TenantError> {
        Ok(self.list().await?.into_iter().filter(|n| n.live && n.regions.iter().any(|r| r == region)).collect())
    }
}
