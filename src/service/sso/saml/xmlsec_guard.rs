//! Takes away what xmlsec could do with a hostile signature: open a URI, or run
//! a transform outside the canonicalization profile.
//!
//! Why here, through the FFI, and not on samael's signature context: the
//! per-context switches (`enabledReferenceUris`, `enabledReferenceTransforms`)
//! live on the `xmlSecDSigCtx` that samael creates and drops inside one call,
//! behind a private module, so there is no way to reach them short of forking
//! samael. Every context falls back on two process-wide registries, though,
//! which xmlsec exports: the I/O callbacks that resolve a Reference URI or a
//! RetrievalMethod (libxml's file, HTTP and FTP openers) and the list of
//! transforms an `Algorithm` attribute is looked up in. Emptying the first and
//! cutting the second down to the profile of `response_shape` restricts every
//! context samael makes, now and in later versions, to same-document
//! references and the allowed algorithms, whatever passes the shape check.
//!
//! The registries are filled by samael's one-time xmlsec initialisation, so the
//! guard first makes samael initialise, then edits them, once per process and
//! before any response is verified. If it cannot, SAML verification refuses
//! everything (fails closed).

use std::{
    ffi::{CStr, c_char, c_int, c_uint, c_void},
    sync::OnceLock,
};

use samael::crypto::{CertificateDer, Crypto, CryptoProvider};

use super::response_shape::{C14N_ALGORITHMS, ENVELOPED_SIGNATURE};

/// `xmlSecTransformUsageAny` in `xmlsec/transforms.h`.
const USAGE_ANY: c_uint = 0xFFFF;

/// Signature and digest methods that samael's allow-list (see `SamlSp::provider`)
/// may ask for; nothing else is kept in the registry.
const METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// `xmlSecErrorsCallback` in `xmlsec/errors.h`.
type ErrorsCallback = unsafe extern "C" fn(
    file: *const c_char,
    line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
);

// libxmlsec1, linked by samael.
unsafe extern "C" {
    fn xmlSecErrorsSetCallback(callback: ErrorsCallback);
    fn xmlSecIOCleanupCallbacks();
    fn xmlSecTransformIdsGet() -> *mut c_void;
    fn xmlSecTransformIdListFindByHref(
        list: *mut c_void,
        href: *const u8,
        usage: c_uint,
    ) -> *const c_void;
    fn xmlSecPtrListEmpty(list: *mut c_void);
    fn xmlSecPtrListAdd(list: *mut c_void, item: *mut c_void) -> c_int;
    fn xmlSecPtrListGetSize(list: *mut c_void) -> c_uint;
}

/// Restricts xmlsec once; every later call answers the first outcome.
pub fn ensure() -> Result<(), String> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    OUTCOME.get_or_init(restrict).clone()
}

/// xmlsec's own error reports (it writes them to stderr by default) as debug
/// logs: a refused forgery is not an operator's concern, and the reports may
/// quote what a hostile document named.
unsafe extern "C" fn log_xmlsec_error(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    _error_object: *const c_char,
    _error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
) {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: xmlsec passes NUL-terminated strings that live for the call.
            let s = unsafe { CStr::from_ptr(p) }.to_string_lossy();
            s.chars().take(200).collect()
        }
    };
    tracing::debug!(function = %text(func), reason, message = %text(msg), "xmlsec");
}

fn restrict() -> Result<(), String> {
    // SAFETY: sets a process-wide function pointer xmlsec calls on errors; the
    // function is `extern "C"`, never unwinds and lives for the whole process.
    unsafe { xmlSecErrorsSetCallback(log_xmlsec_error) };
    // samael initialises xmlsec (registries included) on its first key load.
    // A throwaway certificate makes it do that without an error to report;
    // the document has no signature, so nothing is verified.
    let certificate = throwaway_certificate().map_err(|e| e.to_string())?;
    let _ = Crypto::verify_signed_xml(b"<a/>", &CertificateDer::from(certificate), None);
    let hrefs: Vec<&str> = C14N_ALGORITHMS
        .iter()
        .chain([ENVELOPED_SIGNATURE].iter())
        .chain(METHODS)
        .copied()
        .collect();
    // xmlsec's initialisation may have reset the callback: set it again.
    // SAFETY: as above.
    unsafe { xmlSecErrorsSetCallback(log_xmlsec_error) };
    // SAFETY: xmlsec is initialised (above) and nothing verifies concurrently:
    // `ensure` runs this once, before the first verification. The registry
    // holds static transform klass pointers (its list klass destroys nothing),
    // so emptying it and adding some back only changes which are found.
    unsafe {
        xmlSecIOCleanupCallbacks();
        let registry = xmlSecTransformIdsGet();
        if registry.is_null() {
            return Err("xmlsec has no transform registry".into());
        }
        let mut keep = Vec::with_capacity(hrefs.len());
        for href in &hrefs {
            let c = std::ffi::CString::new(*href).map_err(|e| e.to_string())?;
            let id = xmlSecTransformIdListFindByHref(registry, c.as_ptr().cast(), USAGE_ANY);
            if id.is_null() {
                return Err(format!("xmlsec does not know the transform {href}"));
            }
            keep.push(id);
        }
        xmlSecPtrListEmpty(registry);
        for id in keep {
            if xmlSecPtrListAdd(registry, id.cast_mut()) < 0 {
                return Err("xmlsec refused to re-register a transform".into());
            }
        }
        if xmlSecPtrListGetSize(registry) as usize != hrefs.len() {
            return Err("xmlsec's transform registry did not take the allow-list".into());
        }
    }
    tracing::debug!(
        transforms = hrefs.len(),
        "xmlsec restricted to same-document references and the signature profile"
    );
    Ok(())
}

/// A self-signed P-256 certificate, DER, for no purpose but loading a key.
fn throwaway_certificate() -> Result<Vec<u8>, openssl::error::ErrorStack> {
    use openssl::{
        asn1::Asn1Time,
        ec::{EcGroup, EcKey},
        hash::MessageDigest,
        nid::Nid,
        pkey::PKey,
        x509::X509Builder,
    };
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut builder = X509Builder::new()?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    builder.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
    builder.sign(&key, MessageDigest::sha256())?;
    builder.build().to_der()
}

/// Whether xmlsec still finds a transform by its algorithm URI (for tests).
#[cfg(test)]
pub fn knows_transform(href: &CStr) -> bool {
    // SAFETY: a lookup in the registry `ensure` prepared; it reads only.
    unsafe {
        let registry = xmlSecTransformIdsGet();
        !registry.is_null()
            && !xmlSecTransformIdListFindByHref(registry, href.as_ptr().cast(), USAGE_ANY).is_null()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_profile_is_left_in_xmlsec() {
        ensure().expect("xmlsec restricted");
        assert!(knows_transform(c"http://www.w3.org/2001/10/xml-exc-c14n#"));
        assert!(knows_transform(
            c"http://www.w3.org/2000/09/xmldsig#enveloped-signature"
        ));
        assert!(knows_transform(
            c"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        ));
        for gone in [
            c"http://www.w3.org/TR/1999/REC-xslt-19991116",
            c"http://www.w3.org/TR/1999/REC-xpath-19991116",
            c"http://www.w3.org/2002/06/xmldsig-filter2",
            c"http://www.w3.org/2000/09/xmldsig#base64",
            c"http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        ] {
            assert!(!knows_transform(gone), "{gone:?}");
        }
    }

    /// Past the shape check (called directly here), xmlsec itself opens no URI
    /// and runs no XSLT: the guard is a second wall, not a restatement of the
    /// first.
    #[test]
    fn xmlsec_opens_no_uri_and_runs_no_xslt_even_without_the_shape_check() {
        use std::{net::TcpListener, time::Instant};

        use base64::Engine;
        use samael::crypto::ReduceMode;

        const SIGNED: &str = include_str!("../../../../tests/data/saml-response-signed.xml");
        const CERT: &str = include_str!("../../../../tests/data/saml-idp-cert.pem");
        ensure().expect("xmlsec restricted");
        let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let der = base64::engine::general_purpose::STANDARD
            .decode(crate::saml_signing::pem_body(CERT))
            .expect("PEM");
        let certs = [CertificateDer::from(der)];
        let first_reference = SIGNED.find("URI=\"#").expect("a Reference") + 5;
        let id_end = first_reference + SIGNED[first_reference..].find('"').expect("quote");
        let with_uri =
            |uri: &str| format!("{}{uri}{}", &SIGNED[..first_reference], &SIGNED[id_end..]);
        let xslt = SIGNED.replacen(
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            &format!(
                r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:copy-of select="document('http://127.0.0.1:{port}/xslt')"/></xsl:template></xsl:stylesheet></ds:Transform>"#
            ),
            1,
        );
        for xml in [
            with_uri(&format!("http://127.0.0.1:{port}/probe")),
            with_uri("file:///dev/zero"),
            with_uri("file:///etc/passwd"),
            xslt,
        ] {
            let started = Instant::now();
            let outcome = Crypto::reduce_xml_to_signed(&xml, &certs, ReduceMode::default());
            assert!(
                outcome.is_err(),
                "verified although it names another resource"
            );
            assert!(
                started.elapsed().as_secs() < 1,
                "took {:?}",
                started.elapsed()
            );
        }
        assert!(
            listener.accept().is_err(),
            "xmlsec connected to the listener"
        );
        // The untouched response still verifies: the guard left the profile.
        Crypto::reduce_xml_to_signed(SIGNED, &certs, ReduceMode::default())
            .expect("the honest response verifies");
    }
}
