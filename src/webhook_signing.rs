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

/// The `webhook-signature` value: one `v1,<signature>` per secret.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    let content = format!("{id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(|s| key_of(s))
        .filter_map(|key| {
            // Any key length is valid for HMAC; a key that is not one is skipped.
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(content.as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
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
