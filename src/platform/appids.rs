//! Per-app user and group ids (extension `usersAndGroups.appRange`).
//!
//! A device that runs each app as its own user (`AppUser0`..`AppUser99`
//! sharing `AppGroup`, say) declares the id ranges:
//!
//! ```json
//! "usersAndGroups": { "appRange": { "uids": "30000-30099", "gids": "30000" } }
//! ```
//!
//! `uids`/`gids` are an inclusive range `"FIRST-LAST"` or one id (a shared
//! group). An app's id is chosen from its app id alone: the first 8 bytes of
//! SHA-256(app id), big-endian, modulo the range size, give a starting
//! slot; ids already allocated (to other apps on the same device) are
//! skipped by probing upwards, wrapping at the end of the range. The same
//! app id and the same taken set always give the same id.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An inclusive id range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: u32,
    pub last: u32,
}

impl IdRange {
    pub fn len(&self) -> u64 {
        u64::from(self.last) - u64::from(self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false // `last >= first` is checked at parse time
    }

    pub fn contains(&self, id: u32) -> bool {
        (self.first..=self.last).contains(&id)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

const RANGE_FORM: &str =
    "an id (\"30000\" or 30000) or an inclusive range \"FIRST-LAST\" (\"30000-30099\")";

impl std::str::FromStr for IdRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid id range {s:?}: expected {RANGE_FORM}");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u32 = a.trim().parse().map_err(|_| bad())?;
        let last: u32 = b.trim().parse().map_err(|_| bad())?;
        if last < first {
            return Err(format!(
                "invalid id range {s:?}: the last id is below the first; expected {RANGE_FORM}"
            ));
        }
        Ok(IdRange { first, last })
    }
}

impl<'de> Deserialize<'de> for IdRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IdRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(RANGE_FORM)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IdRange, E> {
                let id = u32::try_from(v)
                    .map_err(|_| E::custom(format!("id {v} does not fit in 32 bits")))?;
                Ok(IdRange {
                    first: id,
                    last: id,
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for IdRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `usersAndGroups.appRange` object.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AppRange {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// The ids one app runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AppIds {
    pub uid: u32,
    pub gid: u32,
}

/// The range has no free id left for a new app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usersAndGroups.appRange.{which}: all {count} ids of {range} are taken; widen the range")]
pub struct RangeFull {
    pub which: &'static str,
    pub range: IdRange,
    pub count: u64,
}

/// Deterministic slot for `app_id` in `range`, skipping `taken` ids.
pub fn allocate(app_id: &str, range: IdRange, taken: &BTreeSet<u32>) -> Option<u32> {
    let digest = Sha256::digest(app_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let len = range.len();
    let start = u64::from_be_bytes(head) % len;
    (0..len)
        .map(|i| range.first as u64 + (start + i) % len)
        .map(|id| id as u32) // within [first, last], so within u32
        .find(|id| !taken.contains(id))
}

impl AppRange {
    /// Ids for `app_id`. A single-id `gids` is a shared group and is never
    /// "taken"; a gid range is allocated like the uids.
    pub fn ids_for(
        &self,
        app_id: &str,
        taken_uids: &BTreeSet<u32>,
        taken_gids: &BTreeSet<u32>,
    ) -> Result<AppIds, RangeFull> {
        let full = |which, range: IdRange| RangeFull {
            which,
            range,
            count: range.len(),
        };
        let uid = allocate(app_id, self.uids, taken_uids).ok_or_else(|| full("uids", self.uids))?;
        let gid = if self.gids.len() == 1 {
            self.gids.first
        } else {
            allocate(app_id, self.gids, taken_gids).ok_or_else(|| full("gids", self.gids))?
        };
        Ok(AppIds { uid, gid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> IdRange {
        s.parse().expect("valid range")
    }

    #[test]
    fn allocation_is_stable_and_in_range() {
        let r = range("30000-30099");
        let a = allocate("com.example.app", r, &BTreeSet::new()).expect("free");
        assert_eq!(allocate("com.example.app", r, &BTreeSet::new()), Some(a));
        assert!(r.contains(a));
        let b = allocate("com.example.other", r, &BTreeSet::new()).expect("free");
        assert!(r.contains(b));
    }

    #[test]
    fn taken_ids_are_probed_past_and_wrap() {
        let r = range("100-103");
        let first = allocate("app", r, &BTreeSet::new()).expect("free");
        let taken = BTreeSet::from([first]);
        let second = allocate("app", r, &taken).expect("free");
        let expected = if first == 103 { 100 } else { first + 1 };
        assert_eq!(second, expected);
        let all: BTreeSet<u32> = (100..=103).collect();
        assert_eq!(allocate("app", r, &all), None);
    }

    #[test]
    fn shared_group_and_full_range() {
        let ar = AppRange {
            uids: range("5-5"),
            gids: range("700"),
        };
        let ids = ar
            .ids_for("x", &BTreeSet::new(), &BTreeSet::new())
            .expect("free");
        assert_eq!(ids, AppIds { uid: 5, gid: 700 });
        let err = ar
            .ids_for("y", &BTreeSet::from([5]), &BTreeSet::new())
            .expect_err("full");
        assert!(err.to_string().contains("appRange.uids"), "{err}");
    }

    #[test]
    fn ranges_parse_and_reject_bad_forms() {
        assert_eq!(
            range("10-20"),
            IdRange {
                first: 10,
                last: 20
            }
        );
        assert_eq!(range("7"), IdRange { first: 7, last: 7 });
        assert!("20-10".parse::<IdRange>().is_err());
        assert!("a-b".parse::<IdRange>().is_err());
        let r: IdRange = serde_json::from_str("42").expect("int");
        assert_eq!(
            r,
            IdRange {
                first: 42,
                last: 42
            }
        );
    }
}
