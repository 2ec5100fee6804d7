//! Refusals in the audit log without letting a flood grow it: failed
//! authentications and refused sign-ins are aggregated into one entry per
//! source, action, workspace, reason and minute, with a count.
//!
//! The first refusal of a minute is written at once (so an on-call engineer
//! sees it while it happens); the others only count in memory, and when the
//! minute is over the entry's count is set once. A flood from one source
//! therefore costs one insert and one update a minute, whatever its rate.

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use serde_json::{Value, json};

use super::store::{AuditEntry, Store, now_millis};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    minute: i64,
    source: IpAddr,
    action: String,
    workspace: Option<String>,
    reason: String,
}

#[derive(Debug)]
struct Open {
    /// The entry's id once it is written (`None` while the insert runs).
    id: Option<i64>,
    detail: Value,
    count: u64,
    written: u64,
}

pub struct FailureAudit {
    store: Store,
    open: Mutex<HashMap<Key, Open>>,
}

impl FailureAudit {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Records one refusal of `entry.action` for `reason` from `source`.
    /// Never fails: the refusal is answered whatever the audit log does.
    pub async fn record(&self, source: IpAddr, reason: &str, mut entry: AuditEntry) {
        let now = now_millis();
        let key = Key {
            minute: now / 60_000,
            source,
            action: entry.action.clone(),
            workspace: entry.workspace.clone(),
            reason: reason.to_string(),
        };
        let mut detail = match entry.detail.take() {
            Some(Value::Object(map)) => Value::Object(map),
            Some(other) => json!({ "detail": other }),
            None => json!({}),
        };
        detail["reason"] = reason.into();
        detail["source"] = source.to_string().into();
        detail["count"] = 1.into();
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = open.get_mut(&key) {
                o.count += 1;
                return;
            }
            open.insert(
                key.clone(),
                Open {
                    id: None,
                    detail: detail.clone(),
                    count: 1,
                    written: 1,
                },
            );
        }
        entry.detail = Some(detail);
        match self.store.append_audit_returning_id(&entry).await {
            Ok(id) => {
                if let Some(o) = self
                    .open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&key)
                {
                    o.id = Some(id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, action = %entry.action, "could not audit a refusal")
            }
        }
    }

    /// Sets the counts of the minutes that are over (all of them when
    /// `everything`, at shutdown) and forgets them.
    pub async fn flush(&self, everything: bool) {
        let current = now_millis() / 60_000;
        let closed: Vec<Open> = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<Key> = open
                .iter()
                // An entry whose insert is still running stays for the next flush.
                .filter(|(k, o)| (everything || k.minute < current) && o.id.is_some())
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for mut o in closed {
            let Some(id) = o.id.filter(|_| o.count > o.written) else {
                continue;
            };
            o.detail["count"] = o.count.into();
            if let Err(e) = self.store.set_audit_detail(id, &o.detail).await {
                tracing::warn!(error = %e, "could not write an aggregated refusal count");
            } else {
                o.written = o.count;
            }
        }
    }
}
