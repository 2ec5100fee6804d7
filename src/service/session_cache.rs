//! Live sessions checked in the last second, by session id: the product's hot
//! path (a session check per page view) answers from memory, and whatever
//! revokes a session on this replica (sign-out, SCIM deprovisioning) clears
//! its entries at once. Its own module because sign-in and SCIM both use it.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::store::SessionRecord;

/// How long a live session is trusted without asking the database again.
const CHECK_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bound on the check cache; it is emptied when full (entries live 1 s anyway).
const CHECK_CACHE_MAX: usize = 200_000;

/// Live sessions checked in the last `CHECK_CACHE_TTL`, by session id. Shared
/// with SCIM, which drops a deprovisioned member's entries in the request
/// that deprovisions them, so this replica's very next check is a 401.
#[derive(Default)]
pub struct CheckCache {
    entries: Mutex<HashMap<String, (SessionRecord, Instant)>>,
}

impl CheckCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (SessionRecord, Instant)>> {
        // Guards map operations only; a poisoned map is still a usable map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &str, now: i64) -> Option<SessionRecord> {
        let cache = self.lock();
        let (record, at) = cache.get(id)?;
        (at.elapsed() < CHECK_CACHE_TTL && record.expires_at > now).then(|| record.clone())
    }

    pub(crate) fn put(&self, id: String, record: Option<&SessionRecord>) {
        let mut cache = self.lock();
        match record {
            Some(r) => {
                if cache.len() >= CHECK_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(id, (r.clone(), Instant::now()));
            }
            None => {
                cache.remove(&id);
            }
        }
    }

    /// Forgets one session (sign-out on this replica).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Drops the entries of every (workspace, user) a committed write revoked
    /// the credentials of: this replica's next check of them is a 401.
    pub fn forget_all(&self, revoked: &[(String, String)]) {
        if revoked.is_empty() {
            return;
        }
        self.lock().retain(|_, (r, _)| {
            !revoked
                .iter()
                .any(|(ws, user)| r.workspace == *ws && r.user_id == *user)
        });
    }
}
