//! Checking an SSO connection's identity provider before syncing it: OIDC discovery
//! (issuer matches, endpoints present, JWKS reachable) or SAML metadata (entity ID,
//! SSO URL, signing certificates and their expiry).

use jiff::Timestamp;

use super::error::{Error, Result};
use crate::{
    admin::{OidcDoc, SamlDoc},
    outbound::{BodyLimit, Guarded, https_url},
    saml_metadata,
};

/// What validation learned about the IdP.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpInfo {
    /// Issuer or entity ID.
    pub idp: String,
    /// Expiry of the first-expiring signing certificate (SAML).
    pub certificate_expires_at: Option<Timestamp>,
    pub summary: String,
}

/// Fetches an IdP document through the guarded client. Failures name the
/// host and a class (never the answer, never a low-level error chain): a
/// status is read by whoever may read the resource.
async fn fetch(http: &Guarded, url: &str, what: &str, limit: BodyLimit) -> Result<bytes::Bytes> {
    http.get(url, limit).await.map_err(|e| Error::Validation {
        reason: "IdPUnreachable",
        message: format!("fetching {what} from {e}"),
        transient: e.is_transient(),
    })
}

fn invalid(reason: &'static str, message: String) -> Error {
    Error::Validation {
        reason,
        message,
        transient: false,
    }
}

/// Fetches and checks an OIDC discovery document and its JWKS.
pub async fn oidc(http: &Guarded, doc: &OidcDoc) -> Result<IdpInfo> {
    let issuer = doc.issuer.trim_end_matches('/');
    let url = doc
        .discovery_url
        .clone()
        .unwrap_or_else(|| format!("{issuer}/.well-known/openid-configuration"));
    let body = fetch(http, &url, "the OIDC discovery document", BodyLimit::Json).await?;
    let discovery: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        invalid(
            "InvalidDiscovery",
            format!("{url} is not a JSON discovery document: {e}"),
        )
    })?;
    let advertised = discovery["issuer"].as_str().unwrap_or_default();
    if advertised.trim_end_matches('/') != issuer {
        return Err(invalid(
            "IssuerMismatch",
            format!(
                "discovery document at {url} names issuer {advertised:?}, not {:?}",
                doc.issuer
            ),
        ));
    }
    for field in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        if discovery[field].as_str().is_none_or(str::is_empty) {
            return Err(invalid(
                "InvalidDiscovery",
                format!("discovery document at {url} has no {field}"),
            ));
        }
    }
    // The service will call these; they must be https (http only on loopback).
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
    ] {
        if let Some(endpoint) = discovery[field].as_str()
            && let Err(e) = https_url(endpoint)
        {
            return Err(invalid(
                "InvalidDiscovery",
                format!("the discovery document at {url} names a {field} that is refused ({e})"),
            ));
        }
    }
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
    let jwks: serde_json::Value =
        serde_json::from_slice(&fetch(http, jwks_uri, "the JWKS", BodyLimit::Json).await?)
            .map_err(|e| invalid("InvalidJwks", format!("{jwks_uri} is not a JWK set: {e}")))?;
    let keys = jwks["keys"].as_array().map_or(0, Vec::len);
    if keys == 0 {
        return Err(invalid(
            "InvalidJwks",
            format!("the JWK set at {jwks_uri} has no keys"),
        ));
    }
    Ok(IdpInfo {
        idp: doc.issuer.clone(),
        certificate_expires_at: None,
        summary: format!("discovery at {url} checked; JWKS has {keys} key(s)"),
    })
}

/// Checks SAML settings: metadata (inline, resolved, or fetched) or explicit values.
pub async fn saml(http: &Guarded, doc: &SamlDoc) -> Result<IdpInfo> {
    let (entity_id, sso_url, certs, source) =
        match (&doc.metadata, &doc.metadata_url, &doc.entity_id) {
            (Some(xml), _, _) => {
                let (e, s, c) = parse_metadata(xml)?;
                (e, s, c, "inline metadata")
            }
            (None, Some(url), _) => {
                let body = fetch(http, url, "the SAML metadata", BodyLimit::Metadata).await?;
                let xml = String::from_utf8_lossy(&body);
                let (e, s, c) = parse_metadata(&xml)?;
                (e, s, c, "metadata URL")
            }
            (None, None, Some(entity_id)) => {
                let certs = doc
                    .certificates
                    .iter()
                    .map(|pem| pem_to_der(pem))
                    .collect::<Result<Vec<_>>>()?;
                (
                    entity_id.clone(),
                    doc.sso_url.clone().unwrap_or_default(),
                    certs,
                    "spec",
                )
            }
            _ => {
                return Err(invalid(
                "MissingIdpConfig",
                "give metadataUrl, metadata, metadataRef, or entityId with ssoUrl and certificates"
                    .into(),
            ));
            }
        };
    if certs.is_empty() {
        // Without a certificate nothing could verify an assertion's signature.
        return Err(invalid(
            "NoSigningCertificate",
            format!(
                "the IdP ({source}) has no signing certificate; a connection that cannot verify signatures is refused"
            ),
        ));
    }
    let mut earliest: Option<Timestamp> = None;
    for der in &certs {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
            invalid(
                "InvalidCertificate",
                format!("an IdP signing certificate does not parse: {e}"),
            )
        })?;
        let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
            .map_err(|e| invalid("InvalidCertificate", e.to_string()))?;
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
    }
    if !sso_url.starts_with("https://")
        && !sso_url.starts_with("http://127.0.0.1")
        && !sso_url.starts_with("http://localhost")
    {
        return Err(invalid(
            "InvalidSsoUrl",
            format!("the IdP SSO URL {sso_url:?} is not an https URL"),
        ));
    }
    let expires = earliest.map(|t| t.to_string()).unwrap_or_default();
    Ok(IdpInfo {
        idp: entity_id,
        certificate_expires_at: earliest,
        summary: format!(
            "{} signing certificate(s) from {source}, first expiring {expires}",
            certs.len()
        ),
    })
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    saml_metadata::pem_to_der(pem).map_err(unreadable)
}

fn unreadable(e: saml_metadata::MetadataError) -> Error {
    invalid(e.reason(), e.to_string())
}

/// (entity ID, SSO URL, signing certificates as DER) from IdP metadata.
fn parse_metadata(xml: &str) -> Result<(String, String, Vec<Vec<u8>>)> {
    let parsed = saml_metadata::parse(xml).map_err(unreadable)?;
    Ok((
        parsed.entity_id,
        parsed.sso_url,
        parsed.signing_certificates,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = include_str!("../../tests/data/idp-signing.pem");

    #[tokio::test]
    async fn saml_without_signing_certificate_is_refused() {
        let xml = r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com">
            <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
              <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
            </IDPSSODescriptor></EntityDescriptor>"#;
        let err = saml(
            &Guarded::with_defaults(),
            &SamlDoc {
                metadata: Some(xml.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "NoSigningCertificate");
    }

    #[tokio::test]
    async fn saml_metadata_yields_entity_and_certificate_expiry() {
        let body = crate::saml_signing::pem_body(CERT);
        let xml = format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com">
            <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
              <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
              <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp.example.com/post"/>
              <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/redirect"/>
            </md:IDPSSODescriptor></md:EntityDescriptor>"#
        );
        let info = saml(
            &Guarded::with_defaults(),
            &SamlDoc {
                metadata: Some(xml),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(info.idp, "https://idp.example.com");
        let expiry = info.certificate_expires_at.unwrap();
        assert!(expiry > Timestamp::now(), "{expiry}");
    }

    #[tokio::test]
    async fn dtds_are_refused() {
        let xml = r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><EntityDescriptor entityID="x"/>"#;
        let err = saml(
            &Guarded::with_defaults(),
            &SamlDoc {
                metadata: Some(xml.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidMetadata");
    }
}
