//! SAML 2.0 service provider over samael (XML signatures through xmlsec).
//!
//! samael verifies the signature and parses only the signed element (so an
//! XML-signature-wrapping payload is not what gets read), rejects several or
//! nested assertions, and checks `Destination`, `Recipient`, `InResponseTo`,
//! issuer, status and the validity windows with our clock skew. This module
//! closes what it leaves open:
//! - no signing certificate means samael skips verification: refused here,
//!   both when the connection is loaded and at every sign-in;
//! - its AuthnRequest ID has 32 random bits: ours has 128;
//! - it has no replay cache: assertion IDs are consumed once, in the store,
//!   so the cache holds across replicas;
//! - it checks the audience only when an `AudienceRestriction` is present: we
//!   require one naming this SP;
//! - IdP-initiated mode drops the `InResponseTo` check: an unsolicited
//!   response must then carry none, and is accepted only when the connection
//!   allows IdP-initiated sign-in;
//! - the document and its signatures must fit one profile before xmlsec sees
//!   them (`response_shape`: UTF-8 only, no comments, DTDs, CDATA or PIs, one
//!   assertion, same-document references, canonicalization transforms only),
//!   and xmlsec itself can no longer open URIs or run other transforms
//!   (`xmlsec_guard`);
//! - only SHA-2 RSA/ECDSA signature algorithms are accepted.
//!
//! samael's errors are not `Send`: it is called from blocking tasks and its
//! errors become our reason codes there.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use samael::{
    crypto::AllowedSignatureAlgorithm,
    metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING},
    schema::Assertion,
    service_provider::{Error as SamlError, ServiceProvider, ServiceProviderBuilder},
};

mod response_shape;
mod xmlsec_guard;

pub use response_shape::decode_response;

use super::error::{Reason, SignInError};
use crate::{
    admin::SamlDoc,
    outbound::{BodyLimit, Guarded},
};
/// Default and largest clock skew on the validity windows.
const DEFAULT_SKEW: Duration = Duration::from_secs(120);
const MAX_SKEW: Duration = Duration::from_secs(600);
/// Fetched IdP metadata is reused for this long.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long after its issue instant a response is still accepted.
const MAX_ISSUE_DELAY: Duration = Duration::from_secs(300);

/// The SP's own URLs for one connection.
#[derive(Debug, Clone)]
pub struct SpEndpoints {
    pub entity_id: String,
    pub acs_url: String,
}

/// IdP metadata fetching (through the guarded client) and the samael service
/// provider per connection.
pub struct SamlSp {
    http: Guarded,
    metadata: Mutex<HashMap<String, (String, Instant)>>,
}

fn refused(reason: Reason, detail: impl Into<String>) -> SignInError {
    SignInError::new(reason, detail)
}

impl SamlSp {
    pub fn new(http: Guarded) -> Self {
        Self {
            http,
            metadata: Mutex::new(HashMap::new()),
        }
    }

    /// The IdP's metadata XML: inline, fetched (cached), or made from the
    /// entity ID, SSO URL and certificates.
    pub async fn idp_metadata(&self, cfg: &SamlDoc) -> Result<String, SignInError> {
        if let Some(xml) = &cfg.metadata {
            return Ok(xml.clone());
        }
        if let Some(url) = &cfg.metadata_url {
            if let Some((xml, at)) = lock(&self.metadata).get(url)
                && at.elapsed() < METADATA_TTL
            {
                return Ok(xml.clone());
            }
            let body = self
                .http
                .get(url, BodyLimit::Metadata)
                .await
                .map_err(|e| refused(Reason::IdpUnavailable, format!("IdP metadata at {e}")))?;
            let xml = String::from_utf8(body.to_vec())
                .map_err(|_| refused(Reason::IdpUnavailable, "IdP metadata is not UTF-8"))?;
            lock(&self.metadata).insert(url.clone(), (xml.clone(), Instant::now()));
            return Ok(xml);
        }
        let (Some(entity_id), Some(sso_url)) = (&cfg.entity_id, &cfg.sso_url) else {
            return Err(refused(
                Reason::UnknownConnection,
                "the SAML connection has no metadata and no entityId/ssoUrl",
            ));
        };
        Ok(metadata_from_parts(entity_id, sso_url, &cfg.certificates))
    }

    /// A service provider for this connection, refusing one whose IdP has no
    /// signing certificate.
    pub fn provider(
        &self,
        cfg: &SamlDoc,
        metadata_xml: &str,
        sp: &SpEndpoints,
        idp_initiated: bool,
    ) -> Result<ServiceProvider, SignInError> {
        if metadata_xml.contains("<!DOCTYPE") {
            return Err(refused(
                Reason::MalformedResponse,
                "IdP metadata with a DTD is refused",
            ));
        }
        let descriptor: EntityDescriptor = metadata_xml.parse().map_err(|e| {
            refused(
                Reason::IdpUnavailable,
                format!("IdP metadata does not parse: {e}"),
            )
        })?;
        let skew = cfg
            .allowed_clock_skew
            .map(|d| d.as_duration())
            .unwrap_or(DEFAULT_SKEW)
            .min(MAX_SKEW);
        let provider = ServiceProviderBuilder::default()
            .entity_id(Some(sp.entity_id.clone()))
            .acs_url(Some(sp.acs_url.clone()))
            .idp_metadata(descriptor)
            .allow_idp_initiated(idp_initiated)
            .max_clock_skew(chrono::Duration::seconds(skew.as_secs() as i64))
            .max_issue_delay(chrono::Duration::seconds(
                (MAX_ISSUE_DELAY + skew).as_secs() as i64,
            ))
            .allowed_signature_algorithms(Some(vec![
                AllowedSignatureAlgorithm::RsaSha256,
                AllowedSignatureAlgorithm::RsaSha384,
                AllowedSignatureAlgorithm::RsaSha512,
                AllowedSignatureAlgorithm::EcdsaSha256,
                AllowedSignatureAlgorithm::EcdsaSha384,
                AllowedSignatureAlgorithm::EcdsaSha512,
            ]))
            .build()
            .map_err(|e| refused(Reason::IdpUnavailable, format!("SAML provider: {e}")))?;
        match provider.idp_signing_certs() {
            Ok(Some(certs)) if !certs.is_empty() => Ok(provider),
            _ => Err(refused(
                Reason::InvalidSignature,
                "the IdP metadata has no usable signing certificate; refusing unsigned sign-in",
            )),
        }
    }

    /// The IdP URL (HTTP-Redirect binding) with a fresh AuthnRequest whose ID
    /// is returned for the `InResponseTo` check.
    ///
    /// With a `signer`, the request is signed as the HTTP-Redirect binding
    /// says (`SigAlg` and `Signature` over the query, RSA-SHA256).
    pub fn authn_redirect(
        &self,
        provider: &ServiceProvider,
        relay_state: &str,
        signer: Option<&openssl::pkey::PKey<openssl::pkey::Private>>,
    ) -> Result<(String, String), SignInError> {
        let sso_url = provider
            .sso_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| {
                refused(
                    Reason::IdpUnavailable,
                    "the IdP metadata has no HTTP-Redirect SingleSignOnService",
                )
            })?;
        let mut id = [0u8; 16];
        crate::token::random_bytes(&mut id)
            .map_err(|e| refused(Reason::Unavailable, e.to_string()))?;
        // An XML ID must not start with a digit.
        let request_id = format!("_{}", hex::encode(id));
        let built = provider
            .make_authentication_request(&sso_url)
            .map_err(|e| e.to_string())
            .and_then(|mut request| {
                request.id = request_id.clone();
                match signer {
                    Some(key) => request.signed_redirect(relay_state, key),
                    None => request.redirect(relay_state),
                }
                .map_err(|e| e.to_string())
            });
        match built {
            Ok(Some(url)) => Ok((url.to_string(), request_id)),
            Ok(None) => Err(refused(Reason::IdpUnavailable, "no SSO URL")),
            Err(e) => Err(refused(
                Reason::IdpUnavailable,
                format!("building the AuthnRequest: {e}"),
            )),
        }
    }
}

/// The SP metadata document IdPs import: entity ID, ACS (HTTP-POST), every
/// unexpired signing certificate, and whether AuthnRequests are signed.
/// Written here rather than by samael, whose metadata carries one certificate
/// (no rotation overlap), always says `AuthnRequestsSigned="false"` and
/// needs a logout URL this SP does not have.
pub fn sp_metadata<'a>(
    sp: &SpEndpoints,
    certificates: impl Iterator<Item = &'a [u8]>,
    signs_requests: bool,
) -> String {
    let esc = super::error::escape_html;
    let keys: String = certificates
        .map(|der| {
            format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
                STANDARD.encode(der)
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
         <md:SPSSODescriptor AuthnRequestsSigned=\"{signs_requests}\" WantAssertionsSigned=\"true\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}\
         <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>\
         <md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>\n",
        esc(&sp.entity_id),
        esc(&sp.acs_url)
    )
}

/// Verifies a response with samael (on a blocking thread) and applies the
/// checks it leaves to us. `request_id` is the AuthnRequest this answers, or
/// None for an unsolicited (IdP-initiated) response.
pub async fn verify(
    provider: ServiceProvider,
    xml: String,
    request_id: Option<String>,
    sp_entity_id: &str,
) -> Result<Assertion, SignInError> {
    let sp_entity_id = sp_entity_id.to_string();
    tokio::task::spawn_blocking(move || {
        verify_blocking(&provider, &xml, request_id.as_deref(), &sp_entity_id)
    })
    .await
    .map_err(|e| refused(Reason::Unavailable, format!("SAML verification task: {e}")))?
}

/// [`verify`] on the calling thread (xmlsec is synchronous and CPU-bound).
pub fn verify_blocking(
    provider: &ServiceProvider,
    xml: &str,
    request_id: Option<&str>,
    sp_entity_id: &str,
) -> Result<Assertion, SignInError> {
    xmlsec_guard::ensure().map_err(|e| {
        tracing::error!(error = %e, "xmlsec could not be restricted; refusing SAML sign-in");
        refused(Reason::Unavailable, "SAML verification is unavailable")
    })?;
    let ids: Vec<&str> = request_id.into_iter().collect();
    let assertion = provider
        .parse_xml_response(xml, Some(&ids))
        .map_err(|e| classify(&e))?;
    let audiences = assertion
        .conditions
        .as_ref()
        .and_then(|c| c.audience_restrictions.as_ref());
    let ours = audiences.is_some_and(|rs| {
        !rs.is_empty()
            && rs
                .iter()
                .all(|r| r.audience.iter().any(|a| a == sp_entity_id))
    });
    if !ours {
        return Err(refused(
            Reason::WrongAudience,
            "the assertion has no AudienceRestriction naming this SP",
        ));
    }
    if request_id.is_none() {
        let answers_a_request = assertion
            .subject
            .as_ref()
            .and_then(|s| s.subject_confirmations.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.subject_confirmation_data
                    .as_ref()
                    .is_some_and(|d| d.in_response_to.is_some())
            });
        if answers_a_request {
            return Err(refused(
                Reason::WrongRecipient,
                "an unsolicited response answers a request this sign-in did not make",
            ));
        }
    }
    Ok(assertion)
}

/// samael's error as a reason code (its messages hold no assertion content
/// beyond times and URLs).
fn classify(e: &SamlError) -> SignInError {
    let reason = match e {
        SamlError::FailedToValidateSignature => Reason::InvalidSignature,
        SamlError::AssertionExpired { .. }
        | SamlError::AssertionConditionExpired { .. }
        | SamlError::AssertionSubjectConfirmationExpired { .. }
        | SamlError::ResponseExpired { .. } => Reason::Expired,
        SamlError::AssertionConditionExpiredBefore { .. }
        | SamlError::AssertionSubjectConfirmationExpiredBefore { .. } => Reason::NotYetValid,
        SamlError::AssertionConditionAudienceRestrictionFailed { .. } => Reason::WrongAudience,
        SamlError::AssertionRecipientMismatch { .. }
        | SamlError::DestinationValidationError { .. }
        | SamlError::AssertionInResponseToInvalid { .. }
        | SamlError::ResponseInResponseToInvalid { .. } => Reason::WrongRecipient,
        SamlError::AssertionIssuerMismatch { .. } | SamlError::ResponseIssuerMismatch { .. } => {
            Reason::WrongIssuer
        }
        SamlError::ResponseBadStatusCode { .. } => Reason::IdpError,
        _ => Reason::MalformedResponse,
    };
    refused(reason, format!("SAML: {e}"))
}

/// When an assertion stops being usable (for the replay cache).
pub fn assertion_expiry_millis(a: &Assertion, now: i64) -> i64 {
    let condition = a
        .conditions
        .as_ref()
        .and_then(|c| c.not_on_or_after)
        .map(|t| t.timestamp_millis());
    let confirmation = a
        .subject
        .as_ref()
        .and_then(|s| s.subject_confirmations.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.subject_confirmation_data.as_ref()?.not_on_or_after)
        .map(|t| t.timestamp_millis())
        .max();
    let skew = MAX_SKEW.as_millis() as i64;
    condition
        .into_iter()
        .chain(confirmation)
        .max()
        .map_or(now + 24 * 3600 * 1000, |t| t + skew)
}

/// The persistent NameID format: an opaque, stable id of the person at the IdP.
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

/// The NameID, whether it is of the persistent format, and the attributes as
/// string lists keyed by attribute name (and friendly name).
pub fn attributes(a: &Assertion) -> (Option<String>, bool, HashMap<String, Vec<String>>) {
    let name_id = a.subject.as_ref().and_then(|s| s.name_id.as_ref());
    let persistent = name_id.is_some_and(|n| n.format.as_deref() == Some(PERSISTENT));
    let name_id = name_id.map(|n| n.value.trim().to_string());
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for statement in a.attribute_statements.iter().flatten() {
        for attr in &statement.attributes {
            let values: Vec<String> = attr
                .values
                .iter()
                .filter_map(|v| v.value.as_ref().map(|s| s.trim().to_string()))
                .collect();
            for key in [&attr.name, &attr.friendly_name].into_iter().flatten() {
                out.entry(key.clone()).or_default().extend(values.clone());
            }
        }
    }
    (name_id, persistent, out)
}

/// Metadata XML for an IdP configured by entity ID, SSO URL and certificates.
fn metadata_from_parts(entity_id: &str, sso_url: &str, certificates: &[String]) -> String {
    let esc = super::error::escape_html;
    let keys: String = certificates
        .iter()
        .map(|pem| {
            let body = crate::saml_signing::pem_body(pem);
            format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
                esc(&body)
            )
        })
        .collect();
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
         <md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}\
         <md:SingleSignOnService Binding=\"{HTTP_REDIRECT_BINDING}\" Location=\"{}\"/>\
         </md:IDPSSODescriptor></md:EntityDescriptor>",
        esc(entity_id),
        esc(sso_url)
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Guards a map operation, never an await; a poisoned map is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_without_signing_certificates_is_refused() {
        let sp = SamlSp::new(Guarded::with_defaults());
        let cfg = SamlDoc::default();
        let xml = metadata_from_parts("https://idp.example", "https://idp.example/sso", &[]);
        let ends = SpEndpoints {
            entity_id: "https://sp.example".into(),
            acs_url: "https://sp.example/acs".into(),
        };
        let e = sp
            .provider(&cfg, &xml, &ends, false)
            .map(|_| ())
            .expect_err("no certificate, no provider");
        assert_eq!(e.reason, Reason::InvalidSignature);
    }

    /// Random bytes and mutated real responses through the decoder, the shape
    /// check and (when those pass) xmlsec: no panic, and every refusal is a
    /// client error, as the ACS page shows it.
    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        /// A real samlify response, Response and Assertion signed by the test
        /// IdP (tests/idp/sample-response.mjs).
        const SIGNED: &str = include_str!("../../../../tests/data/saml-response-signed.xml");
        const IDP_CERT: &str = include_str!("../../../../tests/data/saml-idp-cert.pem");
        const SP: &str = "https://sp.example.test/sso/acme/saml/entra";

        /// Markup an attacker would splice in.
        const TOKENS: &[&str] = &[
            "<",
            ">",
            "\"",
            "&",
            "&amp;",
            "<!--",
            "-->",
            "<![CDATA[x]]>",
            "<?x?>",
            "<!DOCTYPE x>",
            " URI=\"file:///dev/zero\"",
            " URI=\"http://127.0.0.1:9/\"",
            " URI=\"\"",
            " Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"",
            "<ds:Object></ds:Object>",
            "<saml:Assertion ID=\"_x\">",
            "</saml:Assertion>",
            "<?xml version=\"1.0\" encoding=\"UTF-7\"?>",
            "\u{0}",
            "\u{feff}",
            " ID=\"_a\"",
            " xmlns:ds=\"urn:x\"",
            "+ADw-",
            "\u{202e}",
            " ",
        ];

        fn provider() -> ServiceProvider {
            let metadata = metadata_from_parts(
                "https://idp.example.test/metadata",
                "https://idp.example.test/sso",
                &[IDP_CERT.to_string()],
            );
            let ends = SpEndpoints {
                entity_id: SP.into(),
                acs_url: format!("{SP}/acs"),
            };
            SamlSp::new(Guarded::with_defaults())
                .provider(&SamlDoc::default(), &metadata, &ends, false)
                .expect("the test IdP's certificate makes a provider")
        }

        fn boundary(s: &str, mut i: usize) -> usize {
            i = i.min(s.len());
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn random_bytes_are_refused_as_client_errors(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048)
            ) {
                for encoded in [STANDARD.encode(&bytes), String::from_utf8_lossy(&bytes).into_owned()] {
                    if let Err(e) = decode_response(&encoded) {
                        prop_assert!(e.reason.status().is_client_error(), "{:?}", e);
                    }
                }
            }

            #[test]
            fn mutated_real_responses_are_refused_as_client_errors(
                edits in proptest::collection::vec(
                    (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(TOKENS)),
                    1..6,
                )
            ) {
                let mut xml = SIGNED.to_string();
                for (at, op, token) in edits {
                    let i = boundary(&xml, at.index(xml.len() + 1));
                    match op {
                        0 => xml.insert_str(i, token),
                        1 => {
                            let end = boundary(&xml, i + token.len());
                            xml.replace_range(i..end, "");
                        }
                        _ => {
                            let end = boundary(&xml, i + token.len());
                            xml.replace_range(i..end, token);
                        }
                    }
                }
                let outcome = decode_response(&STANDARD.encode(&xml))
                    .and_then(|xml| verify_blocking(&provider(), &xml, Some("_req1"), SP));
                // The seed expired long ago, so even a harmless edit is refused.
                let e = outcome.expect_err("refused");
                prop_assert!(e.reason.status().is_client_error(), "{:?}", e);
            }
        }

        #[test]
        fn the_untouched_seed_passes_the_shape_check_and_is_refused_only_as_expired() {
            let xml = decode_response(&STANDARD.encode(SIGNED))
                .expect("a real response fits the profile");
            let e = verify_blocking(&provider(), &xml, Some("_req1"), SP).expect_err("expired");
            assert_eq!(e.reason, Reason::Expired, "{e}");
        }
    }
}
