//! The keys the operator registers (session-cookie and SAML signing keys):
//! one way to list and one to register, whatever the kind; what differs by
//! kind is what a key must be, checked here before anything is stored.

use serde_json::{Value, json};

use super::{AdminError, Result, parse};
use crate::admin::{KeyKind, SamlSigningKeyDoc, SessionKeyDoc};
use crate::service::store::{SamlSigningKeyRecord, SessionKey, Store, format_millis};

/// The keys of `kind` still valid at `now`, newest first: ids and times, and
/// for SAML keys the (public) certificate. Secrets never leave.
pub async fn list(store: &Store, kind: KeyKind, now: i64) -> Result<Vec<Value>> {
    let item = |id: &str, created_at: i64, expires_at: i64| {
        json!({
            "id": id,
            "createdAt": format_millis(created_at),
            "expiresAt": format_millis(expires_at),
        })
    };
    Ok(match kind {
        KeyKind::SessionCookies => store
            .session_keys(now)
            .await?
            .iter()
            .map(|k| item(&k.id, k.created_at, k.expires_at))
            .collect(),
        KeyKind::SamlSigning => store
            .saml_signing_keys(now)
            .await?
            .iter()
            .map(|k| {
                let mut listed = item(&k.id, k.created_at, k.expires_at);
                listed["certificate"] = k.certificate_pem.clone().into();
                listed
            })
            .collect(),
    })
}

/// Registers a key of `kind` under `id` from its JSON document. Idempotent by
/// id: a key never changes, so a second registration keeps the first.
pub async fn register(store: &Store, kind: KeyKind, id: &str, body: &[u8]) -> Result<()> {
    check_key_id(id)?;
    match kind {
        KeyKind::SessionCookies => {
            let key = session_key(id, parse(body)?)?;
            store.insert_session_key(&key).await?;
        }
        KeyKind::SamlSigning => {
            let key = saml_signing_key(id, parse(body)?)?;
            store.insert_saml_signing_key(&key).await?;
        }
    }
    Ok(())
}

fn session_key(id: &str, doc: SessionKeyDoc) -> Result<SessionKey> {
    let secret = doc
        .secret
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| invalid("secret must be 32 bytes as 64 hex characters"))?;
    Ok(SessionKey {
        id: id.to_string(),
        secret: secret.to_ascii_lowercase(),
        created_at: doc.created_at.as_millisecond(),
        expires_at: doc.expires_at.as_millisecond(),
    })
}

/// A SAML key whose private key and certificate belong together; it expires
/// with the certificate.
fn saml_signing_key(id: &str, doc: SamlSigningKeyDoc) -> Result<SamlSigningKeyRecord> {
    let private_key = doc
        .private_key
        .ok_or_else(|| invalid("privateKey is required"))?;
    let checked = crate::saml_signing::parse(&private_key, &doc.certificate).map_err(invalid)?;
    Ok(SamlSigningKeyRecord {
        id: id.to_string(),
        private_key_pem: private_key,
        certificate_pem: doc.certificate,
        created_at: doc.created_at.as_millisecond(),
        expires_at: checked.not_after_ms,
    })
}

/// A key id: 1 to 32 letters, digits or '-'.
fn check_key_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid("a key id is 1 to 32 letters, digits or '-'"))
    }
}

fn invalid(message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        code: "invalid_request",
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_short_and_plain() {
        assert!(check_key_id("k8s-0a1b2c3d4e5f").is_ok());
        for bad in ["", "a/b", "../x", &"k".repeat(33), "ключ"] {
            assert!(check_key_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_session_key_must_be_32_hex_bytes_and_is_stored_lower_case() {
        let doc = |secret: &str| SessionKeyDoc {
            secret: Some(secret.into()),
            created_at: "2026-12-01T00:00:00Z".parse().expect("a time"),
            expires_at: "2026-12-31T00:00:00Z".parse().expect("a time"),
        };
        let key = session_key("k1", doc(&"AB".repeat(32))).expect("64 hex characters");
        assert_eq!(key.secret, "ab".repeat(32));
        assert!(session_key("k1", doc("abcd")).is_err());
        assert!(session_key("k1", doc(&"zz".repeat(32))).is_err());
    }
}
