//! Remembers the `jti` of every accepted token until the token could no longer pass the time
//! checks anyway, so that a captured `Authorization` header cannot be sent a second time.
//!
//! Kept in memory: a restart forgets it, which is acceptable because tokens live minutes and
//! the service takes a while to start. With several replicas each keeps its own; a replay to
//! another replica is caught only with `trust.shared_replay_check`, which also records accepted
//! ids in the database (`audit::seen_tokens`).

use std::{collections::HashMap, sync::Mutex};

pub(super) struct ReplayCache {
    /// `(iss, jti)` → the Unix second after which the entry may be forgotten.
    seen: Mutex<HashMap<(String, String), i64>>,
    capacity: usize,
}

/// The `(iss, jti)` pair was accepted before.
#[derive(Debug)]
pub(super) struct Replayed;

impl ReplayCache {
    pub(super) fn new(capacity: usize) -> ReplayCache {
        ReplayCache { seen: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// Records the pair, or fails if it is already recorded and not yet expired.
    pub(super) fn remember(&self, iss: &str, jti: &str, forget_after: i64, now: i64) -> Result<(), Replayed> {
        // A poisoned lock only means another request panicked mid-insert; the map is still sound.
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (iss.to_string(), jti.to_string());
        if let Some(until) = seen.get(&key)
            && *until >= now
        {
            return Err(Replayed);
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
        }
        if seen.len() >= self.capacity {
            // Still full of live entries: forget the one closest to expiry. Its token has the
            // least time left to be replayed in, so this weakens the protection the least.
            if let Some(oldest) = seen.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone()) {
                seen.remove(&oldest);
                tracing::warn!(capacity = self.capacity, "replay cache full of live tokens; forgot the one closest to expiry");
            }
        }
        seen.insert(key, forget_after);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_issuer_and_jti_is_refused_until_it_expires() {
        let cache = ReplayCache::new(10);
        assert!(cache.remember("iss", "a", 100, 50).is_ok());
        assert!(cache.remember("iss", "a", 100, 60).is_err());
        assert!(cache.remember("other-iss", "a", 100, 60).is_ok(), "jti is only unique per issuer");
        assert!(cache.remember("iss", "a", 200, 101).is_ok(), "expired entries no longer count");
    }

    #[test]
    fn a_full_cache_evicts_expired_entries_first_then_the_closest_to_expiry() {
        let cache = ReplayCache::new(3);
        cache.remember("iss", "expired", 10, 0).ok();
        cache.remember("iss", "soon", 30, 0).ok();
        cache.remember("iss", "late", 90, 0).ok();
        assert!(cache.remember("iss", "new", 90, 20).is_ok());
        assert_eq!(cache.len(), 3, "the expired entry made room");
        assert!(cache.remember("iss", "late", 90, 20).is_err(), "live entries survive eviction of expired ones");
        assert!(cache.remember("iss", "newer", 90, 20).is_ok());
        assert_eq!(cache.len(), 3);
        assert!(cache.remember("iss", "soon", 30, 20).is_ok(), "the entry closest to expiry was evicted");
    }
}
