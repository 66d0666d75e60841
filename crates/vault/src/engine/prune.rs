//! Retention: which snapshots are kept, and pruning what no kept snapshot
//! needs.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::{PruneReport, Retention, Vault, ms};
use crate::VaultError;
use crate::format::{Manifest, PackIndex, decode, key_name, pack_name, split};
use crate::pagemap::PageMap;

impl Vault {
    /// Removes snapshots past retention, then the packs, indexes and keys no
    /// remaining snapshot needs (each once its lock has ended). `live` are
    /// the databases that still exist.
    pub fn prune(
        &self,
        now: OffsetDateTime,
        rules: &Retention,
        live: &BTreeSet<String>,
    ) -> Result<PruneReport, VaultError> {
        let now_ms = ms(now);
        let mut report = PruneReport::default();
        let mut dbs: BTreeSet<String> = BTreeSet::new();
        for name in self.names("")? {
            if let Some((_, db, _)) = split(&name) {
                dbs.insert(db.to_string());
            }
        }
        for db in dbs {
            let mut snaps: Vec<(String, Manifest)> = Vec::new();
            for name in self.names(&format!("snapshots/{db}"))? {
                if let Ok(b) = self.get_verified(&name)
                    && let Ok(m) = decode::<Manifest>(&b)
                {
                    snaps.push((name, m));
                }
            }
            let keep = select(&snaps, now, rules, live.contains(&db));
            let mut remaining = Vec::new();
            for (name, m) in snaps {
                if keep.contains(&name) {
                    remaining.push(m);
                    continue;
                }
                match self.delete_all(&name, now_ms) {
                    Ok(()) => report.snapshots_removed += 1,
                    Err(VaultError::Locked { .. }) => {
                        report.waiting_for_lock += 1;
                        remaining.push(m);
                    }
                    Err(e) => return Err(e),
                }
            }
            let needed_indexes: BTreeSet<&String> = remaining.iter().flat_map(|m| m.indexes.iter()).collect();
            let mut needed_packs = BTreeSet::new();
            for i in &needed_indexes {
                if let Ok(b) = self.get_verified(i)
                    && let Ok(idx) = decode::<PackIndex>(&b)
                {
                    needed_packs.insert(pack_name(&db, &idx.pack));
                }
            }
            for name in self.names(&format!("indexes/{db}"))? {
                if !needed_indexes.contains(&name) {
                    match self.delete_all(&name, now_ms) {
                        Ok(()) | Err(VaultError::Locked { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            for name in self.names(&format!("packs/{db}"))? {
                if !needed_packs.contains(&name) {
                    match self.delete_all(&name, now_ms) {
                        Ok(()) => report.packs_removed += 1,
                        Err(VaultError::Locked { .. }) => report.waiting_for_lock += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            let leftovers = self.names(&format!("packs/{db}"))?.len() + self.names(&format!("indexes/{db}"))?.len();
            if remaining.is_empty()
                && leftovers == 0
                && !live.contains(&db)
                && self.regions.iter().any(|r| r.exists(&key_name(&db)))
            {
                self.delete_all(&key_name(&db), now_ms)?;
                // The change maps hold fingerprints of its pages: they go too.
                if let Some(folder) = self.maps.as_ref().and_then(|dir| PageMap::folder(dir, &db)) {
                    let _ = std::fs::remove_dir_all(folder);
                }
                report.keys_destroyed.push(db.clone());
            }
        }
        Ok(report)
    }

    pub(crate) fn delete_all(&self, name: &str, now_ms: i64) -> Result<(), VaultError> {
        for r in &self.regions {
            if let Some(until) = r.retain_until(name)
                && now_ms < until
            {
                return Err(VaultError::Locked { object: format!("{}: {name}", r.region), until_ms: until });
            }
        }
        for r in &self.regions {
            r.delete(name, now_ms)?;
        }
        Ok(())
    }
}

/// A calendar bucket (day, ISO week or month) of a time.
type Bucket = dyn Fn(OffsetDateTime) -> (i32, u32);

/// Which snapshots retention keeps: the newest of each day within
/// `keep_daily` days, of each ISO week within `keep_weekly` weeks, of each
/// month within `keep_monthly` months, nothing older than `max_age`; and the
/// newest of a live database within `max_age`, however old. This is what
/// keeps BAK-2: nothing older than the policy's cap is ever kept.
fn select(snaps: &[(String, Manifest)], now: OffsetDateTime, rules: &Retention, live: bool) -> BTreeSet<String> {
    let now_ms = ms(now);
    let max_ms = rules.max_age.whole_milliseconds() as i64;
    let mut sorted: Vec<&(String, Manifest)> = snaps.iter().filter(|(_, m)| now_ms - m.taken_at <= max_ms).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.1.taken_at));
    let mut keep = BTreeSet::new();
    if live && let Some((n, _)) = sorted.first() {
        keep.insert(n.clone());
    }
    let day = |t: OffsetDateTime| (t.year(), u32::from(t.ordinal()));
    let week = |t: OffsetDateTime| {
        let (y, w, _) = t.to_iso_week_date();
        (y, u32::from(w))
    };
    let month = |t: OffsetDateTime| (t.year(), u32::from(u8::from(t.month())));
    let windows: [(i64, &Bucket); 3] = [
        (i64::from(rules.keep_daily) * 86_400_000, &day),
        (i64::from(rules.keep_weekly) * 7 * 86_400_000, &week),
        (i64::from(rules.keep_monthly) * 31 * 86_400_000, &month),
    ];
    for (window, bucket) in windows {
        let mut seen = BTreeSet::new();
        for (name, m) in &sorted {
            if now_ms - m.taken_at > window {
                continue;
            }
            // Newest first: the first snapshot of each bucket is kept.
            if seen.insert(bucket(seldesk_store::from_millis(m.taken_at))) {
                keep.insert(name.clone());
            }
        }
    }
    keep
}
