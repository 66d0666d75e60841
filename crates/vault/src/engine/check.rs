//! Checking every region (objects present, named by their hash, keys and
//! seals readable) and repairing one from another.

use std::collections::{BTreeSet, HashMap};

use super::{CheckProblem, RepairReport, Vault};
use crate::VaultError;
use crate::format::{Key, Manifest, PackIndex, content_hash, decode, key_name, manifest_mac, open, pack_name, split};
use crate::store::RegionStore;

impl Vault {
    /// Objects some snapshot needs: every manifest found in any region, its
    /// indexes, their packs and its database's key. Objects outside this set
    /// were left by a run that was interrupted before its manifest.
    fn needed(&self, all: &BTreeSet<String>) -> BTreeSet<String> {
        let read = |name: &str| self.regions.iter().find_map(|r| r.get(name).ok());
        // Every shipped stream segment: a point-in-time restore may need it.
        let mut needed: BTreeSet<String> = all.iter().filter(|n| n.starts_with("stream/")).cloned().collect();
        for name in all.iter().filter(|n| n.starts_with("snapshots/")) {
            needed.insert(name.clone());
            let Some((_, db, _)) = split(name) else { continue };
            needed.insert(key_name(db));
            let Some(manifest) = read(name).and_then(|b| decode::<Manifest>(&b).ok()) else { continue };
            for index in &manifest.indexes {
                needed.insert(index.clone());
                if let Some(idx) = read(index).and_then(|b| decode::<PackIndex>(&b).ok()) {
                    needed.insert(pack_name(db, &idx.pack));
                }
            }
        }
        needed
    }

    /// Verifies every region: manifests, indexes and packs present and named
    /// by their hash, keys readable; with `read_data`, every pack's bytes and
    /// every segment's seal. Returns what is wrong (empty: all good).
    pub fn check(
        &self,
        read_data: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<CheckProblem>, VaultError> {
        let mut problems = Vec::new();
        let all = self.names("")?;
        let needed = self.needed(&all);
        let total = all.len() as u64 * self.regions.len() as u64;
        let mut n = 0;
        for r in &self.regions {
            let here: BTreeSet<String> = r.list("")?.into_iter().collect();
            // Each database's key, unwrapped once per region, not per object.
            let mut keys: HashMap<String, Option<Key>> = HashMap::new();
            let mut key_of = |db: &str| {
                keys.entry(db.to_string())
                    .or_insert_with(|| r.get(&key_name(db)).and_then(|b| self.unwrap_key(db, &b)).ok())
                    .clone()
            };
            let mut p = |object: &str, what: String| {
                problems.push(CheckProblem { region: r.region.clone(), object: object.to_string(), problem: what })
            };
            for name in &all {
                n += 1;
                progress(n, total);
                if !here.contains(name) {
                    // What an interrupted run left in some regions belongs to no
                    // snapshot: not a problem (the next run reuses or prune removes it).
                    if needed.contains(name) {
                        p(name, "missing (another region has it; `seldesk backup repair` copies it back)".into());
                    }
                    continue;
                }
                let Some((kind, db, id)) = split(name) else { continue };
                if kind == "keys" {
                    match r.get(name).and_then(|b| self.unwrap_key(db, &b)) {
                        Ok(_) => {}
                        Err(e) => p(name, format!("unreadable key: {e}")),
                    }
                    continue;
                }
                let check_bytes = !matches!(kind, "packs" | "stream") || read_data;
                if !check_bytes {
                    continue;
                }
                let bytes = match r.get(name) {
                    Ok(b) => b,
                    Err(e) => {
                        p(name, e.to_string());
                        continue;
                    }
                };
                if content_hash(&bytes) != id {
                    p(name, "changed: its bytes no longer match its hash".into());
                    continue;
                }
                match kind {
                    "snapshots" => match decode::<Manifest>(&bytes) {
                        Ok(m) => {
                            for i in &m.indexes {
                                if !here.contains(i) {
                                    p(name, format!("needs {i}, which is missing"));
                                }
                            }
                            if !here.contains(&key_name(db)) {
                                p(name, "its database key is missing".into());
                            } else if m.format >= 3
                                && let Some(key) = key_of(db)
                                && manifest_mac(&key.hash_key(), &m).ok().as_ref() != Some(&m.mac)
                            {
                                p(name, "not authentic: its MAC does not match under its database's key".into());
                            }
                        }
                        Err(e) => p(name, format!("unreadable manifest: {e}")),
                    },
                    "indexes" => match decode::<PackIndex>(&bytes) {
                        Ok(idx) => {
                            let pack = pack_name(db, &idx.pack);
                            let end = idx.segments.iter().map(|s| s.offset + u64::from(s.len)).max().unwrap_or(0);
                            match r.size(&pack) {
                                None => p(name, format!("its pack {pack} is missing")),
                                Some(sz) if sz < end => p(&pack, "shorter than its index says".into()),
                                _ => {}
                            }
                            if read_data && let Some(key) = key_of(db) {
                                let aad = format!("seldesk-vault-segment:{db}");
                                for s in &idx.segments {
                                    let ok = r.get_range(&pack, s.offset, s.len as usize).and_then(|sealed| {
                                        if !s.holds(&sealed) {
                                            return Err(VaultError::Corrupt("not the segment its index names".into()));
                                        }
                                        open(&key, &sealed, aad.as_bytes())
                                    });
                                    if let Err(e) = ok {
                                        p(&pack, format!("segment at {} unreadable: {e}", s.offset));
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => p(name, format!("unreadable index: {e}")),
                    },
                    "stream" if read_data => match key_of(db) {
                        Some(key) => {
                            if let Err(e) = open(&key, &bytes, crate::stream::stream_aad(db).as_bytes()) {
                                p(name, format!("stream segment unreadable: {e}"));
                            }
                        }
                        None => p(name, "stream segment of a database whose key is missing".into()),
                    },
                    _ => {}
                }
            }
        }
        Ok(problems)
    }

    /// Copies objects a region lacks (or holds damaged) from a region with a
    /// good copy; damaged copies are moved aside first.
    pub fn repair(&self) -> Result<RepairReport, VaultError> {
        let mut report = RepairReport::default();
        for name in self.names("")? {
            let Some((kind, db, id)) = split(&name) else { continue };
            let good = |r: &RegionStore| -> Option<Vec<u8>> {
                let b = r.get(&name).ok()?;
                let ok = if kind == "keys" { self.unwrap_key(db, &b).is_ok() } else { content_hash(&b) == id };
                ok.then_some(b)
            };
            let Some((source, bytes)) = self.regions.iter().find_map(|r| good(r).map(|b| (r, b))) else {
                continue; // no good copy anywhere: check reports it
            };
            let until = source.retain_until(&name).unwrap_or(0);
            for r in &self.regions {
                if r.exists(&name) {
                    if good(r).is_some() {
                        continue;
                    }
                    r.quarantine(&name)?;
                    report.quarantined.push(format!("{}: {name}", r.region));
                }
                r.put(&name, &bytes, until)?;
                report.copied.push(format!("{}: {name}", r.region));
            }
        }
        Ok(report)
    }
}
