//! Aggregates for research, trends and statistics (PRC-3, BRW-3, MKT-2):
//! counts by group, where any group smaller than the policy's
//! `research.min_group_size` is suppressed so no one can be singled out.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts by key with small groups removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aggregate<K: Ord> {
    pub groups: Vec<(K, u64)>,
    /// How many groups were suppressed (their members are not reported).
    pub suppressed_groups: u64,
}

/// Counts `items` by key and suppresses groups under `min_group_size`.
pub fn aggregate<K: Ord + Clone>(items: impl IntoIterator<Item = K>, min_group_size: u64) -> Aggregate<K> {
    let mut counts: BTreeMap<K, u64> = BTreeMap::new();
    for k in items {
        *counts.entry(k).or_default() += 1;
    }
    from_counts(counts, min_group_size)
}

/// Suppresses groups under `min_group_size` from counts made elsewhere (SQL GROUP BY).
pub fn from_counts<K: Ord>(counts: impl IntoIterator<Item = (K, u64)>, min_group_size: u64) -> Aggregate<K> {
    let mut groups = Vec::new();
    let mut suppressed_groups = 0;
    for (k, n) in counts {
        if n >= min_group_size {
            groups.push((k, n));
        } else if n > 0 {
            suppressed_groups += 1;
        }
    }
    Aggregate { groups, suppressed_groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    // promise: PRC-3
    #[test]
    fn groups_under_the_minimum_are_suppressed() {
        let items = ["IN"; 7].into_iter().chain(["SG"; 5]).chain(["GB"; 4]).chain(["FR"; 1]);
        let agg = aggregate(items, 5);
        assert_eq!(agg.groups, vec![("IN", 7), ("SG", 5)]);
        assert_eq!(agg.suppressed_groups, 2);
    }
}
