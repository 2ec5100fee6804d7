//! Bearer secrets the service issues: SCIM tokens and API keys. Generation,
//! parsing and hashing.
//!
//! A token is `<prefix><id>_<secret>`: a fixed prefix secret scanners can find
//! (`idsync_scim_` for SCIM tokens, `idsync_key_` for API keys), a
//! 16-character public id the service looks the hash up by, and 256 random bits
//! (43 characters of unpadded URL-safe base64). The service stores only the
//! SHA-256 of the whole token; 256 random bits make a fast hash the right
//! choice, where a password KDF would add milliseconds to every request for no
//! gain.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every SCIM token starts with this.
pub const PREFIX: &str = "idsync_scim_";
/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "idsync_key_";

/// One kind of token: what it starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    prefix: &'static str,
}

/// SCIM bearer tokens.
pub const SCIM: Format = Format { prefix: PREFIX };
/// API keys of users and service accounts.
pub const API_KEY: Format = Format {
    prefix: API_KEY_PREFIX,
};
const ID_LEN: usize = 16;
const SECRET_BYTES: usize = 32;
const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A freshly generated token. `Debug` and `Display` never show the secret.
pub struct GeneratedToken {
    pub id: String,
    value: String,
}

impl GeneratedToken {
    /// The whole token, for the Secret (or to print once).
    pub fn expose(&self) -> &str {
        &self.value
    }
    /// Hex SHA-256 the identity service stores.
    pub fn hash(&self) -> String {
        hash(&self.value)
    }
}

impl fmt::Debug for GeneratedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GeneratedToken {{ id: {:?}, value: <redacted> }}",
            self.id
        )
    }
}

/// Error from the operating system's random source.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|e| RandomError(e.to_string()))
}

/// A random public identifier (16 characters, 80 bits).
pub fn random_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; ID_LEN];
    random_bytes(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| ID_ALPHABET[(*b & 31) as usize] as char)
        .collect())
}

impl Format {
    /// Generates a new token of this kind.
    pub fn generate(self) -> Result<GeneratedToken, RandomError> {
        let id = random_id()?;
        let mut secret = [0u8; SECRET_BYTES];
        random_bytes(&mut secret)?;
        let value = format!("{}{id}_{}", self.prefix, URL_SAFE_NO_PAD.encode(secret));
        Ok(GeneratedToken { id, value })
    }

    /// The public id inside a presented token, if it has this kind's shape.
    pub fn parse_id(self, token: &str) -> Option<&str> {
        let rest = token.strip_prefix(self.prefix)?;
        let (id, secret) = rest.split_at_checked(ID_LEN)?;
        let secret = secret.strip_prefix('_')?;
        let well_formed = id.bytes().all(|b| ID_ALPHABET.contains(&b))
            && secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then_some(id)
    }
}

/// Generates a new SCIM token.
pub fn generate() -> Result<GeneratedToken, RandomError> {
    SCIM.generate()
}

/// Hex SHA-256 of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The public id inside a presented SCIM token, if it has the token's shape.
pub fn parse_id(token: &str) -> Option<&str> {
    SCIM.parse_id(token)
}

/// Whether `token` hashes to `stored_hash`, compared in constant time.
pub fn matches(token: &str, stored_hash: &str) -> bool {
    let presented = hash(token);
    presented.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Whether a string looks like a lower-case hex SHA-256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_their_hash() {
        let t = generate().unwrap();
        assert!(t.expose().starts_with(PREFIX));
        assert_eq!(parse_id(t.expose()), Some(t.id.as_str()));
        assert!(matches(t.expose(), &t.hash()));
        assert!(!matches(&format!("{}x", t.expose()), &t.hash()));
        assert!(is_sha256_hex(&t.hash()));
        assert!(!format!("{t:?}").contains(&t.expose()[PREFIX.len() + 17..]));
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        for bad in [
            "",
            "idsync_scim_",
            "Bearer x",
            "idsync_scim_abcdefghijkmnpqr",
            "ghp_abc",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        let t = generate().unwrap();
        let truncated = &t.expose()[..t.expose().len() - 1];
        assert_eq!(parse_id(truncated), None);
    }

    #[test]
    fn api_keys_and_scim_tokens_are_told_apart() {
        let key = API_KEY.generate().unwrap();
        assert!(key.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(API_KEY.parse_id(key.expose()), Some(key.id.as_str()));
        assert_eq!(parse_id(key.expose()), None);
        assert_eq!(API_KEY.parse_id(generate().unwrap().expose()), None);
    }

    #[test]
    fn two_tokens_differ() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.id, b.id);
    }
}
