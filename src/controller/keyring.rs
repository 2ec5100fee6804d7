//! Keys the operator keeps for each `IdentityService` in Secrets it owns
//! (labelled, owner reference to the IdentityService) and registers with the
//! service, which never makes them visible again:
//!
//! - session-cookie keys (`<name>-session-keys`): HMAC keys; the newest signs
//!   new sessions, every unexpired one verifies;
//! - SAML SP signing keys (`<name>-saml-signing`): RSA keys with self-signed
//!   certificates, listed in the SP metadata and signing AuthnRequests (see
//!   [`crate::saml_signing`] for which one signs).
//!
//! Rotation is the SCIM tokens' pattern without a client in between: a new key
//! every `rotate_every`, each kept until `valid_for` has passed since it was
//! made. The Secret is the source of truth: it is written first, then each of
//! its keys the service lacks is registered; a crash between the two converges
//! on the next pass. When nothing is due, a pass writes nothing and makes one
//! list call per ring.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Resource, ResourceExt, api::ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{
    Context,
    error::{Error, Result},
    metrics::Op,
    owned_secret::{self, MANAGED_BY_LABEL},
    target::Target,
};
use crate::{
    admin::{KeyDoc, KeyKind, SamlSigningKeyDoc, SessionKeyDoc},
    api::{ClusterIdentityService, IdentityService},
};

/// The key in the Secret's data holding the key set.
const DATA_KEY: &str = "keys.json";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What a set of keys is for, and how it rotates.
pub struct Keyring {
    /// The Secret is `<IdentityService name><suffix>`.
    secret_suffix: &'static str,
    /// A new key is made when the newest is this old (ms).
    rotate_every: i64,
    /// A key is dropped this long after it was made (ms).
    valid_for: i64,
    kind: KeyKind,
    /// Event reason and message when a key is made.
    pub rotated_event: (&'static str, &'static str),
}

/// Session-cookie keys: weekly, each verifying for 30 days (the service caps
/// sessions below `valid_for - rotate_every`).
pub const SESSION_KEYS: Keyring = Keyring {
    secret_suffix: "-session-keys",
    rotate_every: 7 * DAY_MS,
    valid_for: 30 * DAY_MS,
    kind: KeyKind::SessionCookies,
    rotated_event: (
        "SessionKeyRotated",
        "made a new session-cookie signing key; the previous keys verify until they expire",
    ),
};

/// SAML SP signing keys: yearly, each certificate valid two years.
pub const SAML_SIGNING_KEYS: Keyring = Keyring {
    secret_suffix: "-saml-signing",
    rotate_every: crate::saml_signing::ROTATE_EVERY_MS,
    valid_for: crate::saml_signing::VALID_FOR_MS,
    kind: KeyKind::SamlSigning,
    rotated_event: (
        "SamlSigningKeyRotated",
        "made a new SAML SP signing key; it is in the SP metadata now and signs AuthnRequests in 14 days",
    ),
};

/// One key as the Secret holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    pub id: String,
    /// Session keys: 32 bytes, hex. SAML keys: the PKCS#8 PEM private key.
    pub secret: String,
    /// SAML keys: the PEM certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
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

impl Keyring {
    /// The key set as it must be at `now`: unexpired keys, plus a fresh one
    /// when the newest is due for rotation. Newest first.
    pub fn desired(
        &self,
        current: &[StoredKey],
        now: i64,
        fresh: impl FnOnce() -> Result<StoredKey>,
    ) -> Result<Vec<StoredKey>> {
        let mut keys: Vec<StoredKey> = current
            .iter()
            .filter(|k| k.created_at + self.valid_for > now)
            .cloned()
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        if keys
            .first()
            .is_none_or(|k| now - k.created_at >= self.rotate_every)
        {
            keys.insert(0, fresh()?);
        }
        Ok(keys)
    }

    fn secret_name(&self, owner: &KeyOwner) -> String {
        format!("{}{}", owner.secret_prefix, self.secret_suffix)
    }

    fn new_key(&self, owner: &KeyOwner, now: i64) -> Result<StoredKey> {
        let internal = |e: String| Error::config("KeyGenerationFailed", e);
        let mut id = [0u8; 6];
        crate::token::random_bytes(&mut id).map_err(|e| internal(e.to_string()))?;
        let id = format!("k8s-{}", hex::encode(id));
        Ok(match self.kind {
            KeyKind::SessionCookies => {
                let mut secret = [0u8; 32];
                crate::token::random_bytes(&mut secret).map_err(|e| internal(e.to_string()))?;
                StoredKey {
                    id,
                    secret: hex::encode(secret),
                    certificate: None,
                    created_at: now,
                }
            }
            KeyKind::SamlSigning => {
                let subject = format!("idsync SAML SP {}", owner.display);
                let made = crate::saml_signing::generate(&subject, now).map_err(internal)?;
                StoredKey {
                    id,
                    secret: made.private_key_pem,
                    certificate: Some(made.certificate_pem),
                    created_at: now,
                }
            }
        })
    }

    /// Ids of the keys the service holds.
    async fn registered(&self, target: &Target) -> Result<Vec<String>> {
        async fn ids<D: KeyDoc>(target: &Target) -> Result<Vec<String>> {
            let listed = target.call(Op::ListKeys, target.client.list_keys::<D>());
            Ok(listed.await?.into_iter().map(|(id, _)| id).collect())
        }
        match self.kind {
            KeyKind::SessionCookies => ids::<SessionKeyDoc>(target).await,
            KeyKind::SamlSigning => ids::<SamlSigningKeyDoc>(target).await,
        }
    }

    async fn register(&self, target: &Target, key: &StoredKey) -> Result<()> {
        let time =
            |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        match self.kind {
            KeyKind::SessionCookies => {
                let doc = SessionKeyDoc {
                    secret: Some(key.secret.clone()),
                    created_at: time(key.created_at),
                    expires_at: time(key.created_at + self.valid_for),
                };
                target
                    .call(Op::PutKey, target.client.put_key(&key.id, &doc))
                    .await?;
            }
            KeyKind::SamlSigning => {
                let doc = SamlSigningKeyDoc {
                    private_key: Some(key.secret.clone()),
                    certificate: key.certificate.clone().unwrap_or_default(),
                    created_at: time(key.created_at),
                    expires_at: None,
                };
                target
                    .call(Op::PutKey, target.client.put_key(&key.id, &doc))
                    .await?;
            }
        }
        Ok(())
    }
}

fn stored_keys(secret: Option<&Secret>) -> Vec<StoredKey> {
    secret
        .and_then(|s| s.data.as_ref()?.get(DATA_KEY))
        .and_then(|v| serde_json::from_slice(&v.0).ok())
        .unwrap_or_default()
}

/// The object a service's key Secrets belong to: a namespaced IdentityService
/// (Secrets beside it), or a ClusterIdentityService (Secrets in the
/// operator's namespace).
pub struct KeyOwner {
    /// Where the Secrets live.
    pub namespace: String,
    /// Their names start with this.
    pub secret_prefix: String,
    /// How messages and certificates name the owner.
    pub display: String,
    pub uid: Option<String>,
    pub owner_ref: Option<OwnerReference>,
}

impl KeyOwner {
    pub fn of_service(svc: &IdentityService) -> Self {
        Self {
            namespace: svc.namespace().unwrap_or_default(),
            secret_prefix: svc.name_any(),
            display: format!(
                "IdentityService {}/{}",
                svc.namespace().unwrap_or_default(),
                svc.name_any()
            ),
            uid: svc.metadata.uid.clone(),
            owner_ref: svc.controller_owner_ref(&()),
        }
    }

    pub fn of_cluster_service(svc: &ClusterIdentityService, operator_namespace: &str) -> Self {
        Self {
            namespace: operator_namespace.to_string(),
            secret_prefix: format!("cluster-{}", svc.name_any()),
            display: format!("ClusterIdentityService {}", svc.name_any()),
            uid: svc.metadata.uid.clone(),
            owner_ref: svc.controller_owner_ref(&()),
        }
    }
}

fn desired_secret(owner: &KeyOwner, name: &str, keys: &[StoredKey]) -> Result<Secret> {
    let json = serde_json::to_vec(keys).map_err(|e| Error::config("Internal", e.to_string()))?;
    let mut labels = BTreeMap::new();
    labels.insert(
        MANAGED_BY_LABEL.0.to_string(),
        MANAGED_BY_LABEL.1.to_string(),
    );
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(labels),
            owner_references: owner.owner_ref.clone().map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(json))])),
        ..Default::default()
    })
}

/// Rotates the ring's Secret when due and registers its keys with the service.
/// Returns whether a new key was made.
pub async fn reconcile(
    ctx: &Context,
    owner: &KeyOwner,
    target: &Target,
    ring: &Keyring,
) -> Result<bool> {
    let name = ring.secret_name(owner);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let current = api.get_opt(&name).await?;
    // A Secret idsync did not create is neither read nor written.
    owned_secret::check_owned(
        current.as_ref(),
        owner.uid.as_deref(),
        &owner.display,
        &name,
    )?;
    let now = jiff::Timestamp::now().as_millisecond();
    let have = stored_keys(current.as_ref());
    let want = ring.desired(&have, now, || ring.new_key(owner, now))?;
    let rotated = want.first().map(|k| &k.id) != have.first().map(|k| &k.id);
    let secret = desired_secret(owner, &name, &want)?;
    if !owned_secret::matches(current.as_ref(), &secret) {
        owned_secret::write(
            ctx,
            &owner.namespace,
            &secret,
            current.is_some(),
            "IdentityService",
        )
        .await?;
    }
    let registered = ring.registered(target).await?;
    for key in want.iter().filter(|k| !registered.contains(&k.id)) {
        ring.register(target, key).await?;
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
            certificate: None,
            created_at,
        }
    }

    fn fresh(id: &str, now: i64) -> impl FnOnce() -> Result<StoredKey> {
        let k = key(id, now);
        move || Ok(k)
    }

    #[test]
    fn a_fresh_key_set_is_left_alone() {
        let now = 100 * DAY_MS;
        let keys = vec![key("b", now - DAY_MS), key("a", now - 10 * DAY_MS)];
        assert_eq!(
            SESSION_KEYS.desired(&keys, now, fresh("new", now)).unwrap(),
            keys
        );
    }

    #[test]
    fn rotation_adds_a_key_and_expiry_drops_old_ones() {
        let now = 100 * DAY_MS;
        let keys = vec![key("old", now - 31 * DAY_MS), key("b", now - 8 * DAY_MS)];
        let want = SESSION_KEYS.desired(&keys, now, fresh("new", now)).unwrap();
        let ids: Vec<&str> = want.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(
            ids,
            ["new", "b"],
            "the new key signs, b still verifies, old is gone"
        );
        let first = SESSION_KEYS.desired(&[], now, fresh("first", now)).unwrap();
        assert_eq!(first[0].id, "first");
    }

    #[test]
    fn saml_keys_rotate_yearly_and_overlap_for_a_year() {
        let now = 1000 * DAY_MS;
        let keys = vec![key("a", now - 200 * DAY_MS)];
        let kept = SAML_SIGNING_KEYS
            .desired(&keys, now, fresh("new", now))
            .unwrap();
        assert_eq!(kept, keys, "a key under a year old is not rotated");
        let keys = vec![key("a", now - 366 * DAY_MS)];
        let want = SAML_SIGNING_KEYS
            .desired(&keys, now, fresh("new", now))
            .unwrap();
        let ids: Vec<&str> = want.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["new", "a"], "the old certificate stays published");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let k = StoredKey {
            id: "k".into(),
            secret: "deadbeef".repeat(8),
            certificate: None,
            created_at: 1,
        };
        assert!(!format!("{k:?}").contains("deadbeef"));
    }
}
