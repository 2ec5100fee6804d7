//! Content fingerprints: how the operator and the identity service tell "already in
//! sync" without writing.
//!
//! A fingerprint is an HMAC-SHA256 of a document's canonical JSON: the typed
//! document serialized to a `serde_json::Value` (whose objects keep keys sorted)
//! and written without whitespace. Both sides compute it from the same Rust
//! types, so equal content gives an equal fingerprint whatever the key order or
//! formatting on the wire.
//!
//! It is keyed because documents hold secrets (an SSO connection's client
//! secret) and fingerprints are published (in resource statuses, the audit
//! log): a plain hash would let anyone who reads a status test guesses of the
//! secret offline. The key is derived from the identity service's admin token,
//! which the service and the operator already share and nobody else holds; a
//! new admin token changes every fingerprint, so each object is rewritten once.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix that says which algorithm made a fingerprint.
const PREFIX: &str = "hmac-sha256:";

/// The fingerprint key of one identity service.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

impl FingerprintKey {
    /// The key derived from the service's admin token.
    pub fn from_admin_token(token: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"idsync fingerprint key\0");
        h.update(token.trim().as_bytes());
        Self(h.finalize().into())
    }

    /// Fingerprint of any serializable document.
    pub fn of<T: Serialize>(&self, doc: &T) -> String {
        // Serializing plain data types to a Value cannot fail: they have string
        // keys and no fallible Serialize impls.
        let value = serde_json::to_value(doc).unwrap_or(serde_json::Value::Null);
        self.of_value(&value)
    }

    /// Fingerprint of a JSON value.
    pub fn of_value(&self, value: &serde_json::Value) -> String {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(value.to_string().as_bytes());
        format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// An unkeyed digest of any serializable value, for caches held in memory
/// (never published).
pub fn digest<T: Serialize>(value: &T) -> String {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let key = FingerprintKey::from_admin_token("token-a");
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(key.of_value(&a), key.of_value(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":[2,1],"b":1}"#).unwrap();
        assert_ne!(key.of_value(&a), key.of_value(&c));
        assert!(key.of_value(&a).starts_with("hmac-sha256:"));
    }

    #[test]
    fn without_the_key_a_fingerprint_tells_nothing_about_a_secret() {
        let doc = |secret: &str| serde_json::json!({"oidc": {"clientSecret": secret}});
        let ours = FingerprintKey::from_admin_token("the service's admin token");
        let published = ours.of_value(&doc("hunter2"));
        // A guess checked with any other key, or with the plain hash, misses.
        let guessing = FingerprintKey::from_admin_token("");
        assert_ne!(guessing.of_value(&doc("hunter2")), published);
        assert_ne!(
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(doc("hunter2").to_string().as_bytes()))
            ),
            published
        );
        assert_eq!(ours.of_value(&doc("hunter2")), published);
    }
}
