//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256
//! of "id.timestamp.body">`, one per secret during a rotation, secrets as
//! `whsec_<base64>`, so a receiver verifies with the `standardwebhooks` or
//! `svix` libraries unchanged.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HMAC key of a `whsec_` secret, if it is one.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// Signs with every secret of an endpoint, each HMAC keyed once: a
/// delivery pays for its own bytes only, not for decoding the secrets and
/// keying a MAC per secret again.
#[derive(Clone, Default)]
pub struct Signer {
    keyed: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        write!(f, "Signer({} secrets)", self.keyed.len())
    }
}

impl Signer {
    /// A signer for `secrets`; one that is not a `whsec_` secret is skipped.
    pub fn new(secrets: &[String]) -> Self {
        let keyed = secrets
            .iter()
            .filter_map(|s| key_of(s))
            // Any key length is valid for HMAC.
            .filter_map(|key| Hmac::<Sha256>::new_from_slice(&key).ok())
            .collect();
        Self { keyed }
    }

    /// The `webhook-signature` value: one `v1,<signature>` per secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let timestamp = timestamp.to_string();
        let mut out = String::with_capacity(self.keyed.len() * 48);
        for keyed in &self.keyed {
            let mut mac = keyed.clone();
            for part in [id, ".", &timestamp, ".", body] {
                mac.update(part.as_bytes());
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        }
        out
    }
}

/// The `webhook-signature` value for `secrets`: one `v1,<signature>` each.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    Signer::new(secrets).sign(id, timestamp, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_match_the_specification() {
        let secret = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()];
        let signed = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // During a rotation both secrets sign, space-separated.
        let both = [
            secret[0].clone(),
            format!("whsec_{}", STANDARD.encode([7u8; 32])),
        ];
        assert_eq!(signature(&both, "m", 1, "{}").split(' ').count(), 2);
        assert!(key_of("whsec_c2hvcnQ=").is_none(), "too short a key");
        assert!(key_of("not-a-secret").is_none());
    }
}
