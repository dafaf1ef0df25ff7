//! Shards: a plan split across machines by a hash of each call's stable key.
//!
//! A call belongs to shard `i` of `N` when `sha256(call id) mod N == i`, so membership depends on
//! the call alone, never on its position in the plan: adding a judge or an artifact does not move
//! the other calls between shards. A shard is an ordinary run directory that stores the whole plan
//! (so `merge` and `report` see the same plan everywhere) and records its shard in the run store.

use crate::design::Plan;
use crate::run::store::{RunStore, StoreError};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Run-store metadata key holding a shard run's `i/N`.
pub const SHARD_KEY: &str = "shard";

/// Shard `index` of `count` (`index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u64,
    /// Number of shards (>= 1).
    pub count: u64,
}

impl Shard {
    /// Whether the call with stable id `call_id` belongs to this shard.
    pub fn contains(&self, call_id: &str) -> bool {
        shard_of(call_id, self.count) == self.index
    }

    /// The plan restricted to this shard's calls (in plan order).
    pub fn filter_plan(&self, plan: &Plan) -> Plan {
        Plan {
            calls: plan
                .calls
                .iter()
                .filter(|c| self.contains(&c.id))
                .cloned()
                .collect(),
            ..plan.clone()
        }
    }
}

/// The shard (of `count`) a call id falls in: the first eight bytes of its SHA-256, big-endian,
/// modulo `count`. SHA-256 rather than a std hasher, whose output may change between Rust versions.
pub fn shard_of(call_id: &str, count: u64) -> u64 {
    let digest = Sha256::digest(call_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head) % count.max(1)
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parse `i/N` with `0 <= i < N`.
    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not a shard: write i/N with 0 <= i < N, e.g. 0/4");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The shard recorded in `dir`'s run store (`None`: an ordinary, whole run).
pub fn stored(dir: &Path) -> Result<Option<Shard>, StoreError> {
    if !RunStore::exists(dir) {
        return Ok(None);
    }
    let store = RunStore::open(dir)?;
    let Some(text) = store.meta(SHARD_KEY)? else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|message| StoreError::Corrupt {
            path: dir.join(crate::run::store::RUN_DB),
            what: "shard".into(),
            message,
        })
}

/// Start (or check) shard run `shard` of `prepared` in `out`: the run store is created with the
/// whole plan, as any run, and records the shard, so `run --resume out` sends only this shard's
/// calls. A directory that already holds another shard of the audit, or a whole run, is refused.
pub fn start(
    prepared: &crate::audit::Prepared,
    out: &Path,
    shard: Shard,
) -> Result<(), crate::audit::AuditError> {
    let existing = stored(out)?;
    let had_run = RunStore::exists(out);
    let store = crate::audit::open_run(prepared, out)?;
    match existing {
        Some(other) if other != shard => {
            return Err(crate::audit::AuditError::Config(format!(
                "{}: this directory holds shard {other}, not {shard}; use another --out",
                out.display()
            )));
        }
        Some(_) => {}
        None if had_run && !store.completed_ids()?.is_empty() => {
            return Err(crate::audit::AuditError::Config(format!(
                "{}: this directory holds an unsharded run; use another --out for shard {shard}",
                out.display()
            )));
        }
        None => store.set_meta(SHARD_KEY, &shard.to_string())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            "3/8".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 8 }
        );
        for bad in ["8/8", "1/0", "x/2", "2", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 1, count: 4 }.to_string(), "1/4");
    }

    #[test]
    fn membership_is_a_partition_and_matches_sha256() {
        // sha256("a") = ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb:
        // 0xca978112ca1bbdca mod 4 = 2 (its last hex digit a = 1010, low two bits 10).
        assert_eq!(shard_of("a", 4), 2);
        let ids: Vec<String> = (0..200).map(|i| format!("j/p{i}/baseline/ab/r0")).collect();
        let mut seen = vec![0usize; 4];
        for id in &ids {
            let owners: Vec<u64> = (0..4)
                .filter(|&i| Shard { index: i, count: 4 }.contains(id))
                .collect();
            assert_eq!(owners.len(), 1, "{id} belongs to exactly one shard");
            seen[owners[0] as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 20),
            "shards are balanced: {seen:?}"
        );
    }
}
