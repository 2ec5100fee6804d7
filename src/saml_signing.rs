//! The SAML service provider's signing keys: RSA keys with self-signed
//! certificates. The operator makes them ([`generate`]) and keeps them in a
//! Secret; the identity service checks what it is given ([`parse`]), lists every
//! unexpired certificate in its SP metadata and signs AuthnRequests with the key
//! [`signing_key`] picks.
//!
//! Rotation overlaps like SCIM tokens: a new key is made a year after the
//! previous one and appears in the SP metadata at once, but only signs after
//! [`PUBLISH_AHEAD`], so IdPs that refresh SP metadata hold the new certificate
//! before the first request signed with it arrives. The old key keeps signing
//! until then and stays in the metadata until its certificate expires.

use openssl::{
    asn1::Asn1Time,
    bn::{BigNum, MsbOption},
    hash::MessageDigest,
    pkey::{PKey, Private},
    rsa::Rsa,
    x509::{X509, X509NameBuilder},
};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// A new key is made when the newest is this old.
pub const ROTATE_EVERY_MS: i64 = 365 * DAY_MS;
/// A certificate is valid this long after its key was made (rotation plus a
/// year of overlap).
pub const VALID_FOR_MS: i64 = 2 * 365 * DAY_MS;
/// A new key is in the metadata this long before it signs.
pub const PUBLISH_AHEAD_MS: i64 = 14 * DAY_MS;
/// Smallest RSA modulus accepted.
const MIN_RSA_BITS: u32 = 2048;

/// A key and its certificate, both PEM.
pub struct GeneratedKey {
    pub private_key_pem: String,
    pub certificate_pem: String,
}

/// A checked key: the private key, the certificate (DER) and its expiry.
pub struct SigningKey {
    pub key: PKey<Private>,
    pub certificate_der: Vec<u8>,
    /// The certificate's notAfter, in milliseconds since the epoch.
    pub not_after_ms: i64,
}

/// Makes an RSA-2048 key and a self-signed certificate for `subject` valid from
/// `now_ms` for [`VALID_FOR_MS`].
pub fn generate(subject: &str, now_ms: i64) -> Result<GeneratedKey, String> {
    let build = || -> Result<GeneratedKey, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(MIN_RSA_BITS)?)?;
        let mut name = X509NameBuilder::new()?;
        // X.509 common names are at most 64 characters.
        let cn: String = subject.chars().take(64).collect();
        name.append_entry_by_text("CN", &cn)?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let mut cert = X509::builder()?;
        cert.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        cert.set_serial_number(&serial)?;
        cert.set_subject_name(&name)?;
        cert.set_issuer_name(&name)?;
        cert.set_pubkey(&key)?;
        let not_before = Asn1Time::from_unix(now_ms / 1000)?;
        let not_after = Asn1Time::from_unix((now_ms + VALID_FOR_MS) / 1000)?;
        cert.set_not_before(&not_before)?;
        cert.set_not_after(&not_after)?;
        cert.sign(&key, MessageDigest::sha256())?;
        let cert = cert.build();
        Ok(GeneratedKey {
            private_key_pem: String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned(),
            certificate_pem: String::from_utf8_lossy(&cert.to_pem()?).into_owned(),
        })
    };
    // OpenSSL's error stack names the failing call, never key material.
    build().map_err(|e| format!("making a SAML signing key: {e}"))
}

/// Checks a key and certificate: both parse, the key is RSA of at least 2048
/// bits, and the certificate is for this key. Errors never quote the input.
pub fn parse(private_key_pem: &str, certificate_pem: &str) -> Result<SigningKey, String> {
    let key = PKey::private_key_from_pem(private_key_pem.as_bytes())
        .map_err(|_| "privateKey is not a PEM private key".to_string())?;
    let rsa = key.rsa().map_err(|_| {
        "privateKey must be an RSA key (rsa-sha256 is what IdPs verify)".to_string()
    })?;
    if rsa.size() * 8 < MIN_RSA_BITS {
        return Err(format!("privateKey must have at least {MIN_RSA_BITS} bits"));
    }
    let cert = X509::from_pem(certificate_pem.as_bytes())
        .map_err(|_| "certificate is not a PEM X.509 certificate".to_string())?;
    let public = cert
        .public_key()
        .map_err(|_| "certificate has no usable public key".to_string())?;
    if !public.public_eq(&key) {
        return Err("certificate is not for privateKey".into());
    }
    let certificate_der = cert
        .to_der()
        .map_err(|_| "certificate does not encode".to_string())?;
    let not_after_ms = x509_parser::parse_x509_certificate(&certificate_der)
        .map_err(|_| "certificate does not parse".to_string())?
        .1
        .validity()
        .not_after
        .timestamp()
        * 1000;
    Ok(SigningKey {
        key,
        certificate_der,
        not_after_ms,
    })
}

/// The base64 body of a PEM block (what XML signatures and SAML metadata carry
/// in `X509Certificate`), without its armour lines or whitespace.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect()
}

/// Which of the keys (newest first, by creation time in ms) signs at `now_ms`:
/// the newest published at least [`PUBLISH_AHEAD_MS`] ago, else the oldest
/// (a new service's only key signs at once).
pub fn signing_key(created_at_ms: &[i64], now_ms: i64) -> Option<usize> {
    created_at_ms
        .iter()
        .position(|&t| now_ms - t >= PUBLISH_AHEAD_MS)
        .or_else(|| created_at_ms.len().checked_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_its_certificate_covers_two_years() {
        let now = 1_800_000_000_000;
        let made = generate("idsync SP", now).unwrap();
        assert!(
            made.private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let key = parse(&made.private_key_pem, &made.certificate_pem).unwrap();
        assert_eq!(key.not_after_ms, now + VALID_FOR_MS);
    }

    #[test]
    fn a_certificate_for_another_key_is_refused_without_quoting_either() {
        let a = generate("a", 1_800_000_000_000).unwrap();
        let b = generate("b", 1_800_000_000_000).unwrap();
        let err = parse(&a.private_key_pem, &b.certificate_pem)
            .err()
            .expect("mismatch refused");
        assert_eq!(err, "certificate is not for privateKey");
        let err = parse(
            "-----BEGIN PRIVATE KEY-----\nnot base64\n",
            &a.certificate_pem,
        )
        .err()
        .expect("garbage refused");
        assert!(!err.contains("not base64"), "{err}");
    }

    #[test]
    fn a_new_key_signs_only_after_it_was_published_for_two_weeks() {
        let day = DAY_MS;
        let now = 1000 * day;
        // Only key: signs at once.
        assert_eq!(signing_key(&[now], now), Some(0));
        // New key a day old, previous a year old: the previous still signs.
        assert_eq!(signing_key(&[now - day, now - 365 * day], now), Some(1));
        // Fifteen days on, the new key signs.
        assert_eq!(
            signing_key(&[now - 15 * day, now - 380 * day], now),
            Some(0)
        );
        assert_eq!(signing_key(&[], now), None);
    }
}
