//! Content fingerprints: how the operator and the identity service tell "already in
//! sync" without writing.
//!
//! A fingerprint is the SHA-256 of a document's canonical JSON: the typed document
//! serialized to a `serde_json::Value` (whose objects keep keys sorted) and written
//! without whitespace. Both sides compute it from the same Rust types, so equal
//! content gives an equal fingerprint whatever the key order or formatting on the wire.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix that says which algorithm made a fingerprint.
const PREFIX: &str = "sha256:";

/// Fingerprint of any serializable document.
pub fn of<T: Serialize>(doc: &T) -> String {
    // Serializing plain data types to a Value cannot fail: they have string keys
    // and no fallible Serialize impls.
    let value = serde_json::to_value(doc).unwrap_or(serde_json::Value::Null);
    of_value(&value)
}

/// Fingerprint of a JSON value.
pub fn of_value(value: &serde_json::Value) -> String {
    let canonical = value.to_string();
    format!(
        "{PREFIX}{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": [1, 2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(of_value(&a), of_value(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":[2,1],"b":1}"#).unwrap();
        assert_ne!(of_value(&a), of_value(&c));
        assert!(of_value(&a).starts_with("sha256:"));
    }
}
