//! Reading an IdP's SAML metadata: its entity ID, SSO URL and signing
//! certificates, and when those certificates expire. The operator checks a
//! connection with it before syncing; the identity service watches the same
//! certificates to announce their expiry as events. One parser, so both read
//! a document the same way.

use base64::{Engine, engine::general_purpose::STANDARD};

/// What the metadata says about the IdP.
#[derive(Debug, Clone, PartialEq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// The HTTP-Redirect SSO location, else the first one listed.
    pub sso_url: String,
    /// Signing certificates (DER), in document order.
    pub signing_certificates: Vec<Vec<u8>>,
}

/// Why metadata cannot be read; the reasons are the operator's condition reasons.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("SAML metadata is not well-formed XML: {0}")]
    NotXml(String),
    #[error("SAML metadata has no EntityDescriptor")]
    NoEntityDescriptor,
    #[error("SAML metadata has no IDPSSODescriptor")]
    NoIdpDescriptor,
    #[error("a certificate is not PEM/base64: {0}")]
    NotBase64(String),
}

impl MetadataError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotBase64(_) => "InvalidCertificate",
            _ => "InvalidMetadata",
        }
    }
}

/// A PEM certificate (or the bare base64 of one) as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, MetadataError> {
    let body = crate::saml_signing::pem_body(pem);
    STANDARD
        .decode(body.as_bytes())
        .map_err(|e| MetadataError::NotBase64(e.to_string()))
}

/// Reads IdP metadata; a document type declaration is refused (no entity
/// expansion from a document an IdP controls).
pub fn parse(xml: &str) -> Result<IdpMetadata, MetadataError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..Default::default()
    };
    let parsed = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| MetadataError::NotXml(e.to_string()))?;
    let entity = parsed
        .descendants()
        .find(|n| n.has_tag_name("EntityDescriptor"))
        .ok_or(MetadataError::NoEntityDescriptor)?;
    let idp = entity
        .descendants()
        .find(|n| n.has_tag_name("IDPSSODescriptor"))
        .ok_or(MetadataError::NoIdpDescriptor)?;
    let services: Vec<_> = idp
        .children()
        .filter(|n| n.has_tag_name("SingleSignOnService"))
        .collect();
    let sso_url = services
        .iter()
        .find(|n| {
            n.attribute("Binding")
                .is_some_and(|b| b.ends_with("HTTP-Redirect"))
        })
        .or(services.first())
        .and_then(|n| n.attribute("Location"))
        .unwrap_or_default()
        .to_string();
    let mut signing_certificates = Vec::new();
    for key in idp.children().filter(|n| n.has_tag_name("KeyDescriptor")) {
        // No `use` means both signing and encryption.
        if key.attribute("use").is_some_and(|u| u != "signing") {
            continue;
        }
        for cert in key
            .descendants()
            .filter(|n| n.has_tag_name("X509Certificate"))
        {
            signing_certificates.push(pem_to_der(cert.text().unwrap_or_default())?);
        }
    }
    Ok(IdpMetadata {
        entity_id: entity.attribute("entityID").unwrap_or_default().to_string(),
        sso_url,
        signing_certificates,
    })
}

/// A certificate's notAfter, in seconds since the epoch; None when it does
/// not parse as X.509.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_type_declaration_is_refused() {
        let xml = r#"<!DOCTYPE x [<!ENTITY e "boom">]><EntityDescriptor entityID="&e;"/>"#;
        assert!(matches!(parse(xml), Err(MetadataError::NotXml(_))));
    }

    #[test]
    fn encryption_keys_are_not_signing_certificates() {
        let xml = r#"<EntityDescriptor entityID="https://idp"><IDPSSODescriptor>
            <KeyDescriptor use="encryption"><X509Certificate>AAAA</X509Certificate></KeyDescriptor>
            <KeyDescriptor><X509Certificate>AQID</X509Certificate></KeyDescriptor>
            <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://idp/post"/>
            </IDPSSODescriptor></EntityDescriptor>"#;
        let parsed = parse(xml).expect("well-formed");
        assert_eq!(parsed.entity_id, "https://idp");
        assert_eq!(parsed.sso_url, "https://idp/post");
        assert_eq!(parsed.signing_certificates, vec![vec![1, 2, 3]]);
        assert_eq!(not_after(&parsed.signing_certificates[0]), None);
    }
}
