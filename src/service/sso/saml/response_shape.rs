//! What a posted SAMLResponse may look like before any XML-signature code sees
//! it. Everything here is pure and runs on the decoded text with roxmltree.
//!
//! xmlsec follows whatever a `ds:Signature` names: a Reference URI of
//! `http://…` or `file://…` is fetched, an XSLT or XPath transform is run, and
//! all of it happens while the digests are computed, before the SignatureValue
//! is checked, so a forged response costs an attacker nothing. The profile below
//! is what every IdP we know of sends; anything else is refused as
//! `invalid_signature` here. (`xmlsec_guard` also takes those capabilities out
//! of xmlsec itself, so this is the first of two walls, not the only one.)
//!
//! The document rules close the parser differentials: roxmltree (this check)
//! and libxml (which xmlsec and samael use) must read the same tree, so only
//! UTF-8 is accepted whatever the declaration says, and comments, processing
//! instructions, CDATA sections and DTDs, which canonicalization drops or
//! folds so that a signed text can be split after signing, are refused.

use base64::{Engine, engine::general_purpose::STANDARD};
use roxmltree::{Document, Node};

use crate::service::sso::error::{Reason, SignInError};

/// Largest SAMLResponse accepted (decoded).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Canonicalization algorithms, for `CanonicalizationMethod` and as transforms.
pub const C14N_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
];
pub const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

fn malformed(detail: impl Into<String>) -> SignInError {
    SignInError::new(Reason::MalformedResponse, detail)
}

fn bad_signature(detail: impl Into<String>) -> SignInError {
    SignInError::new(Reason::InvalidSignature, detail)
}

/// Decodes a posted SAMLResponse and refuses shapes no honest IdP sends.
pub fn decode_response(encoded: &str) -> Result<String, SignInError> {
    let cleaned: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    if cleaned.len() > MAX_RESPONSE_BYTES / 3 * 4 + 4 {
        return Err(malformed("SAMLResponse is too large"));
    }
    let bytes = STANDARD
        .decode(cleaned)
        .map_err(|_| malformed("SAMLResponse is not base64"))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(malformed("SAMLResponse is too large"));
    }
    let xml = String::from_utf8(bytes).map_err(|_| malformed("SAMLResponse is not UTF-8"))?;
    check_document(&xml)?;
    Ok(xml)
}

/// The document rules, then the signature profile.
pub fn check_document(xml: &str) -> Result<(), SignInError> {
    let body = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let body = check_declaration(body)?;
    // Markup that canonicalization drops or folds, checked on the raw text so
    // no parser's reading of it matters.
    for (needle, what) in [
        ("<!--", "XML comments"),
        ("<?", "processing instructions"),
        ("<![CDATA[", "CDATA sections"),
        ("<!", "DTDs and declarations"),
    ] {
        if body.contains(needle) {
            return Err(malformed(format!("{what} are refused in a SAMLResponse")));
        }
    }
    let doc =
        Document::parse(xml).map_err(|e| malformed(format!("SAMLResponse is not XML: {e}")))?;
    let assertion = the_assertion(&doc)?;
    check_signatures(&doc, assertion)
}

/// Skips the XML declaration, refusing any encoding but UTF-8: libxml honours
/// the declared encoding (UTF-7 and UTF-16 included) while roxmltree reads UTF-8,
/// so a declaration is how one byte string becomes two different documents.
fn check_declaration(body: &str) -> Result<&str, SignInError> {
    let Some(rest) = body.strip_prefix("<?xml") else {
        return Ok(body);
    };
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(malformed(
            "processing instructions are refused in a SAMLResponse",
        ));
    }
    let end = rest
        .find("?>")
        .ok_or_else(|| malformed("the XML declaration is not closed"))?;
    let declaration = &rest[..end];
    if let Some(at) = declaration.find("encoding") {
        let value = declaration[at + "encoding".len()..]
            .trim_start()
            .strip_prefix('=')
            .map(str::trim_start)
            .and_then(|v| {
                let quote = v.chars().next().filter(|q| *q == '"' || *q == '\'')?;
                let v = &v[1..];
                Some(&v[..v.find(quote)?])
            })
            .ok_or_else(|| malformed("the XML declaration's encoding is malformed"))?;
        if !value.eq_ignore_ascii_case("UTF-8") {
            return Err(malformed(format!(
                "a SAMLResponse must be UTF-8; its declaration says {:?}",
                value.chars().take(32).collect::<String>()
            )));
        }
    }
    Ok(&rest[end + 2..])
}

fn is(node: &Node, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(namespace)
        && node.tag_name().name() == name
}

/// The root must be a `samlp:Response` carrying exactly one `saml:Assertion`
/// as a direct child: a second assertion, one wrapped elsewhere (the XSW
/// family), or an encrypted one (this SP publishes no encryption key) is an
/// attack or a misconfiguration, not something to make the best of.
fn the_assertion<'a, 'i>(doc: &'a Document<'i>) -> Result<Node<'a, 'i>, SignInError> {
    let root = doc.root_element();
    if !is(&root, SAMLP, "Response") {
        return Err(malformed("the SAMLResponse's root is not a samlp:Response"));
    }
    if doc
        .descendants()
        .any(|n| is(&n, SAML, "EncryptedAssertion"))
    {
        return Err(malformed(
            "encrypted assertions are not supported: configure the IdP to sign, not encrypt",
        ));
    }
    let assertions: Vec<Node> = doc
        .descendants()
        .filter(|n| is(n, SAML, "Assertion"))
        .collect();
    match assertions.as_slice() {
        [one] if one.parent_element() == Some(root) => Ok(*one),
        [_] => Err(malformed(
            "the assertion is not a direct child of the Response",
        )),
        other => Err(malformed(format!(
            "a SAMLResponse must carry exactly one assertion, this one has {}",
            other.len()
        ))),
    }
}

/// Every `ds:Signature` must sit in the Response or the Assertion, sign exactly
/// that element by a same-document reference to its ID, and use only the
/// canonicalization and enveloped-signature transforms.
fn check_signatures(doc: &Document, assertion: Node) -> Result<(), SignInError> {
    let root = doc.root_element();
    for signature in doc.descendants().filter(|n| is(n, DSIG, "Signature")) {
        let parent = signature
            .parent_element()
            .filter(|p| *p == root || *p == assertion)
            .ok_or_else(|| {
                bad_signature("a signature sits outside the Response and the Assertion")
            })?;
        let id = parent
            .attribute("ID")
            .ok_or_else(|| bad_signature("a signed element has no ID"))?;
        check_signature(signature, id, parent == root)?;
    }
    // Anything that makes xmlsec open a URI outside a signature too.
    if doc.descendants().any(|n| {
        is(&n, DSIG, "RetrievalMethod") || is(&n, DSIG, "Object") || is(&n, DSIG, "Manifest")
    }) {
        return Err(bad_signature(
            "ds:Object, ds:Manifest and ds:RetrievalMethod are refused",
        ));
    }
    Ok(())
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

fn check_signature(signature: Node, parent_id: &str, on_root: bool) -> Result<(), SignInError> {
    let mut children = elements(signature);
    let signed_info = children
        .next()
        .filter(|n| is(n, DSIG, "SignedInfo"))
        .ok_or_else(|| bad_signature("a signature does not start with SignedInfo"))?;
    for child in children {
        if !(is(&child, DSIG, "SignatureValue") || is(&child, DSIG, "KeyInfo")) {
            return Err(bad_signature(format!(
                "ds:{} is refused in a signature",
                child.tag_name().name()
            )));
        }
    }
    let mut references = 0;
    for child in elements(signed_info) {
        match child.tag_name().name() {
            "CanonicalizationMethod" if is(&child, DSIG, "CanonicalizationMethod") => {
                allowed_algorithm(child, C14N_ALGORITHMS)?;
                refuse_children_but_prefix_lists(child)?;
            }
            "SignatureMethod" if is(&child, DSIG, "SignatureMethod") => {}
            "Reference" if is(&child, DSIG, "Reference") => {
                references += 1;
                check_reference(child, parent_id, on_root)?;
            }
            other => {
                return Err(bad_signature(format!(
                    "ds:{other} is refused in SignedInfo"
                )));
            }
        }
    }
    if references != 1 {
        return Err(bad_signature(format!(
            "a signature must carry exactly one Reference, this one has {references}"
        )));
    }
    Ok(())
}

/// `URI="#ID"` of the element the signature sits in, or `""` (the whole
/// document) for a signature on the Response.
fn check_reference(reference: Node, parent_id: &str, on_root: bool) -> Result<(), SignInError> {
    let uri = reference
        .attribute("URI")
        .ok_or_else(|| bad_signature("a Reference without URI is refused"))?;
    let same_element = uri.strip_prefix('#') == Some(parent_id);
    if !(same_element || (uri.is_empty() && on_root)) {
        return Err(bad_signature(
            "the Reference must name the element the signature sits in (URI=\"#its ID\")",
        ));
    }
    for child in elements(reference) {
        match child.tag_name().name() {
            "Transforms" if is(&child, DSIG, "Transforms") => {
                for transform in elements(child) {
                    if !is(&transform, DSIG, "Transform") {
                        return Err(bad_signature(
                            "Transforms holds something else than Transform",
                        ));
                    }
                    allowed_algorithm(transform, C14N_ALGORITHMS)
                        .or_else(|_| allowed_algorithm(transform, &[ENVELOPED_SIGNATURE]))?;
                    refuse_children_but_prefix_lists(transform)?;
                }
            }
            "DigestMethod" if is(&child, DSIG, "DigestMethod") => {}
            "DigestValue" if is(&child, DSIG, "DigestValue") => {}
            other => {
                return Err(bad_signature(format!(
                    "ds:{other} is refused in a Reference"
                )));
            }
        }
    }
    Ok(())
}

fn allowed_algorithm(node: Node, allowed: &[&str]) -> Result<(), SignInError> {
    match node.attribute("Algorithm") {
        Some(a) if allowed.contains(&a) => Ok(()),
        Some(a) => Err(bad_signature(format!(
            "the algorithm {:?} is refused in a {}",
            a.chars().take(96).collect::<String>(),
            node.tag_name().name()
        ))),
        None => Err(bad_signature("an algorithm element without Algorithm")),
    }
}

/// Exclusive canonicalization may carry an `InclusiveNamespaces PrefixList`;
/// nothing else may have content (an XPath or XSLT body is how transforms run
/// code).
fn refuse_children_but_prefix_lists(node: Node) -> Result<(), SignInError> {
    for child in node.children() {
        let prefix_list = child.is_element()
            && child.tag_name().namespace() == Some(EXC_C14N)
            && child.tag_name().name() == "InclusiveNamespaces"
            && child
                .children()
                .all(|c| c.is_text() && c.text().is_some_and(|t| t.trim().is_empty()));
        let blank = child.is_text() && child.text().is_some_and(|t| t.trim().is_empty());
        if !(prefix_list || blank) {
            return Err(bad_signature(format!(
                "{} may not carry content here",
                node.tag_name().name()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSERTION_ID: &str = "_a1";

    fn signature(uri: &str, transforms: &str) -> String {
        format!(
            r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="{uri}"><ds:Transforms>{transforms}</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>"##
        )
    }

    const HONEST_TRANSFORMS: &str = r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/></ds:Transform>"#;

    fn response(signature: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_r1"><saml:Issuer>x</saml:Issuer><saml:Assertion ID="{ASSERTION_ID}"><saml:Issuer>x</saml:Issuer>{signature}<saml:Subject><saml:NameID>a@acme.com</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#
        )
    }

    fn reason(xml: &str) -> Option<Reason> {
        check_document(xml).err().map(|e| e.reason)
    }

    #[test]
    fn the_profile_idps_send_passes() {
        let honest = response(&signature("#_a1", HONEST_TRANSFORMS));
        assert_eq!(reason(&honest), None);
        let declared = format!("<?xml version=\"1.0\" encoding='utf-8'?>\n{honest}");
        assert_eq!(reason(&declared), None);
    }

    #[test]
    fn references_outside_the_signed_element_are_refused() {
        for uri in [
            "http://127.0.0.1:9/probe",
            "file:///dev/zero",
            "file:///etc/passwd",
            "probe.xml",
            "#xpointer(/)",
            "#xpointer(id('_a1'))",
            "#_r1",
            "",
        ] {
            let xml = response(&signature(uri, HONEST_TRANSFORMS));
            assert_eq!(reason(&xml), Some(Reason::InvalidSignature), "{uri}");
        }
    }

    #[test]
    fn transforms_that_run_code_are_refused() {
        for transform in [
            r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/></ds:Transform>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//*)</ds:XPath></ds:Transform>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2002/06/xmldsig-filter2"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#base64"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ds:XPath>1</ds:XPath></ds:Transform>"#,
        ] {
            let xml = response(&signature("#_a1", transform));
            assert_eq!(reason(&xml), Some(Reason::InvalidSignature), "{transform}");
        }
    }

    #[test]
    fn objects_manifests_and_retrieval_methods_are_refused() {
        let object = signature("#_a1", HONEST_TRANSFORMS).replace(
            "</ds:Signature>",
            r#"<ds:Object><ds:Manifest><ds:Reference URI="http://127.0.0.1:9/"/></ds:Manifest></ds:Object></ds:Signature>"#,
        );
        let retrieval = signature("#_a1", HONEST_TRANSFORMS).replace(
            "</ds:Signature>",
            r#"<ds:KeyInfo><ds:RetrievalMethod URI="http://127.0.0.1:9/key"/></ds:KeyInfo></ds:Signature>"#,
        );
        for sig in [object, retrieval] {
            assert_eq!(reason(&response(&sig)), Some(Reason::InvalidSignature));
        }
    }

    #[test]
    fn encodings_other_than_utf8_and_hidden_markup_are_refused() {
        let honest = response(&signature("#_a1", HONEST_TRANSFORMS));
        for xml in [
            format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{honest}"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{honest}"),
            format!("<?xml version=\"1.0\" encoding = 'ISO-8859-1' ?>{honest}"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8?>{honest}"),
            honest.replace(">a@acme.com<", ">a@acme.com<!---->.evil.com<"),
            honest.replace(">a@acme.com<", ">a@acme.com<![CDATA[.evil.com]]><"),
            honest.replace(">a@acme.com<", ">a@acme.com<?x y?>.evil.com<"),
            format!("<!DOCTYPE x [<!ENTITY e 'x'>]>{honest}"),
            format!("<?xml-stylesheet href=\"x\"?>{honest}"),
        ] {
            assert_eq!(reason(&xml), Some(Reason::MalformedResponse), "{xml}");
        }
    }

    #[test]
    fn assertions_that_are_not_the_one_child_of_the_response_are_refused() {
        let a = format!(r#"<saml:Assertion xmlns:saml="{SAML}" ID="_b"/>"#);
        for xml in [
            format!(r#"<samlp:Response xmlns:samlp="{SAMLP}" ID="_r">{a}{a}</samlp:Response>"#),
            format!(r#"<samlp:Response xmlns:samlp="{SAMLP}" ID="_r"/>"#),
            format!(r#"<samlp:Response xmlns:samlp="{SAMLP}" ID="_r"><x>{a}</x></samlp:Response>"#),
            a.clone(),
            format!(
                r#"<samlp:Response xmlns:samlp="{SAMLP}" ID="_r"><saml:EncryptedAssertion xmlns:saml="{SAML}"/></samlp:Response>"#
            ),
            "<Response>".to_string(),
        ] {
            assert_eq!(reason(&xml), Some(Reason::MalformedResponse), "{xml}");
        }
        assert!(decode_response("%%%").is_err());
    }
}
