//! Session-cookie signing keys, kept by the operator in a Secret beside each
//! `IdentityService` (`<name>-session-keys`, owned by it) and registered with
//! the identity service, which signs new sessions with the newest key and
//! verifies with every unexpired one.
//!
//! Rotation is the SCIM tokens' pattern without a client in between: a new key
//! every `ROTATE_EVERY`, the previous ones kept until `VALID_FOR` has passed
//! since they were made, so every live session's key stays verifiable (the
//! service caps sessions below `VALID_FOR - ROTATE_EVERY`). The Secret is the
//! source of truth: it is written first, then each of its keys the service
//! lacks is registered; a crash between the two converges on the next pass.
//! When nothing is due, a pass reads and writes nothing but one list call.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, Resource, ResourceExt, api::ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{
    Context,
    error::{Error, Result},
    scim_token::{MANAGED_BY_LABEL, secret_matches, write_secret},
    target::Target,
};
use crate::{admin::SessionKeyDoc, api::IdentityService};

/// A new key is made when the newest is this old (7 days, in ms).
pub const ROTATE_EVERY: i64 = 7 * 24 * 3600 * 1000;
/// A key verifies cookies for this long after it was made (30 days, in ms).
pub const VALID_FOR: i64 = 30 * 24 * 3600 * 1000;
/// The key in the Secret's data holding the key set.
const DATA_KEY: &str = "keys.json";

/// One key as the Secret holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    pub id: String,
    /// 32 bytes, hex.
    pub secret: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoredKey {{ id: {:?}, created_at: {} }}",
            self.id, self.created_at
        )
    }
}

/// The key set as it must be at `now`: unexpired keys, plus a fresh one when
/// the newest is due for rotation. Newest first.
pub fn desired(
    current: &[StoredKey],
    now: i64,
    fresh: impl FnOnce() -> Option<StoredKey>,
) -> Vec<StoredKey> {
    let mut keys: Vec<StoredKey> = current
        .iter()
        .filter(|k| k.created_at + VALID_FOR > now)
        .cloned()
        .collect();
    keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    if keys
        .first()
        .is_none_or(|k| now - k.created_at >= ROTATE_EVERY)
        && let Some(k) = fresh()
    {
        keys.insert(0, k);
    }
    keys
}

fn secret_name(svc: &IdentityService) -> String {
    format!("{}-session-keys", svc.name_any())
}

fn new_key(now: i64) -> Option<StoredKey> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    crate::token::random_bytes(&mut secret).ok()?;
    crate::token::random_bytes(&mut id).ok()?;
    Some(StoredKey {
        id: format!("k8s-{}", hex::encode(id)),
        secret: hex::encode(secret),
        created_at: now,
    })
}

fn stored_keys(secret: Option<&Secret>) -> Vec<StoredKey> {
    secret
        .and_then(|s| s.data.as_ref()?.get(DATA_KEY))
        .and_then(|v| serde_json::from_slice(&v.0).ok())
        .unwrap_or_default()
}

fn desired_secret(svc: &IdentityService, keys: &[StoredKey]) -> Result<Secret> {
    let json = serde_json::to_vec(keys).map_err(|e| Error::config("Internal", e.to_string()))?;
    let mut labels = BTreeMap::new();
    labels.insert(
        MANAGED_BY_LABEL.0.to_string(),
        MANAGED_BY_LABEL.1.to_string(),
    );
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(svc)),
            namespace: svc.namespace(),
            labels: Some(labels),
            owner_references: svc.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(json))])),
        ..Default::default()
    })
}

/// Rotates the Secret when due and registers its keys with the service.
/// Returns whether a new key was made.
pub async fn reconcile(ctx: &Context, svc: &IdentityService, target: &Target) -> Result<bool> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let current = api.get_opt(&secret_name(svc)).await?;
    let now = jiff::Timestamp::now().as_millisecond();
    let have = stored_keys(current.as_ref());
    let want = desired(&have, now, || new_key(now));
    let rotated = want.first().map(|k| &k.id) != have.first().map(|k| &k.id);
    let secret = desired_secret(svc, &want)?;
    if !secret_matches(current.as_ref(), &secret) {
        write_secret(ctx, &ns, &secret_name(svc), &secret, "IdentityService").await?;
    }
    let registered = target
        .call("list_session_keys", target.client.list_session_keys())
        .await?;
    for key in &want {
        if registered.iter().any(|(id, _)| *id == key.id) {
            continue;
        }
        let time = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let doc = SessionKeyDoc {
            secret: Some(key.secret.clone()),
            created_at: time(key.created_at),
            expires_at: time(key.created_at + VALID_FOR),
        };
        target
            .call(
                "put_session_key",
                target.client.put_session_key(&key.id, &doc),
            )
            .await?;
    }
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, created_at: i64) -> StoredKey {
        StoredKey {
            id: id.into(),
            secret: "00".repeat(32),
            created_at,
        }
    }

    #[test]
    fn a_fresh_key_set_is_left_alone() {
        let day = 24 * 3600 * 1000;
        let now = 100 * day;
        let keys = vec![key("b", now - day), key("a", now - 10 * day)];
        assert_eq!(desired(&keys, now, || Some(key("new", now))), keys);
    }

    #[test]
    fn rotation_adds_a_key_and_expiry_drops_old_ones() {
        let day = 24 * 3600 * 1000;
        let now = 100 * day;
        let keys = vec![key("old", now - 31 * day), key("b", now - 8 * day)];
        let want = desired(&keys, now, || Some(key("new", now)));
        let ids: Vec<&str> = want.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(
            ids,
            ["new", "b"],
            "the new key signs, b still verifies, old is gone"
        );
        assert_eq!(desired(&[], now, || Some(key("first", now)))[0].id, "first");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let k = StoredKey {
            id: "k".into(),
            secret: "deadbeef".repeat(8),
            created_at: 1,
        };
        assert!(!format!("{k:?}").contains("deadbeef"));
    }
}
