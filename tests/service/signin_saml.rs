//! SAML 2.0 sign-in through a real IdP built on samlify (npm) on 127.0.0.1: a
//! different XML-signature stack from the xmlsec behind idsync's SP. Negative
//! cases are either signed by the IdP itself (wrong audience, expired) or made
//! from its real responses (tampering, wrapping, comments, replays).

use crate::{on_both_databases, support};

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Db,
    signin::{SamlPost, SignInFixture},
};

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.io", "givenName": "Alice", "familyName": "Liddell",
                  "groups": ["admins", "engineering"]},
        "bob": {"email": "bob@acme.io", "groups": ["engineering"]},
    })
}

fn mapping() -> Value {
    json!({"defaultRole": "member", "rules": [{"equals": "admins", "role": "admin"}]})
}

async fn fixture(db: Db, idp_initiated: bool) -> SignInFixture {
    SignInFixture::start_with_saml(
        db,
        json!({"domains": ["acme.com", "acme.io"]}),
        accounts(),
        Some(mapping()),
        idp_initiated,
    )
    .await
}

/// An edit of a real response's XML, as an attacker in the browser would make it.
type Edit = Box<dyn Fn(String) -> String>;

fn rewrite(post: &SamlPost, f: impl Fn(String) -> String) -> SamlPost {
    let xml = String::from_utf8(STANDARD.decode(&post.response).expect("base64")).expect("UTF-8");
    SamlPost {
        acs: post.acs.clone(),
        response: STANDARD.encode(f(xml)),
        relay_state: post.relay_state.clone(),
    }
}

fn assert_refused(landing: &support::signin::Landing, reason: &str) {
    assert!(
        landing.status.is_client_error(),
        "{reason}: {} {}",
        landing.status,
        landing.body
    );
    assert!(
        landing.body.contains(reason),
        "expected {reason}: {}",
        landing.body
    );
    assert!(landing.session_cookie().is_none(), "{reason}: no session");
}

async fn saml_sign_in_lands_with_the_mapped_role(db: Db) {
    let f = fixture(db, false).await;
    let browser = f.browser();
    let post = f.saml_through_idp(&browser, "alice", "").await;
    assert!(
        post.acs.ends_with("/sso/acme/saml/entra/acs"),
        "{}",
        post.acs
    );
    let landing = f.post_acs(&browser, &post).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    assert_eq!(landing.location.as_deref(), Some("/app/home"));
    let (status, session) = f.session(&landing.session_cookie().expect("cookie")).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["userName"], "alice@acme.io");
    assert_eq!(session["role"], "admin");
    assert_eq!(session["connection"], "entra");
    let metrics = f.metrics().await;
    assert!(
        metrics.contains(
            r#"idsync_sso_signins_total{connection="entra",protocol="saml",result="success",workspace="acme"} 1"#
        ),
        "{metrics}"
    );
    // The SP metadata an IdP admin imports.
    let metadata = reqwest::get(format!("{}/sso/acme/saml/entra/metadata", f.base))
        .await
        .expect("metadata")
        .text()
        .await
        .expect("XML");
    assert!(
        metadata.contains(&format!("{}/sso/acme/saml/entra/acs", f.base)),
        "{metadata}"
    );
    // The same response again: its request is used up.
    assert_refused(&f.post_acs(&browser, &post).await, "invalid_state");
}

/// An IdP that requires signed AuthnRequests (as Entra ID and Okta can) refuses
/// ours until the SP holds a signing key, then verifies its signature against
/// the certificate in our SP metadata and signs the person in.
#[tokio::test]
async fn an_idp_requiring_signed_requests_verifies_ours_against_the_sp_metadata() {
    let f = SignInFixture::start_with_saml_idp(
        Db::Sqlite,
        json!({"domains": ["acme.com", "acme.io"]}),
        accounts(),
        Some(mapping()),
        false,
        &[("IDP_WANT_SIGNED_REQUESTS", "1")],
    )
    .await;
    let browser = f.browser();
    let start = format!("{}/sso/acme/start?connection=entra", f.base);
    let metadata_url = format!("{}/sso/acme/saml/entra/metadata", f.base);

    // No key yet: the request goes unsigned, the metadata says so, the IdP refuses.
    let metadata = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metadata.contains(r#"AuthnRequestsSigned="false""#),
        "{metadata}"
    );
    let page = browser.get(&start).send().await.expect("start");
    let status = page.status();
    let body = page.text().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("ERR_MISSING_SIG_ALG"), "{body}");

    // The operator's part: a key made by the same code, registered.
    let now = jiff::Timestamp::now().as_millisecond();
    let made = idsync::saml_signing::generate("idsync SAML SP test", now).expect("key");
    let doc = |certificate: &str| idsync::admin::SamlSigningKeyDoc {
        private_key: Some(made.private_key_pem.clone()),
        certificate: certificate.to_string(),
        created_at: jiff::Timestamp::from_millisecond(now).unwrap(),
        expires_at: None,
    };
    f.admin
        .put_key("k8s-test", &doc(&made.certificate_pem))
        .await
        .expect("key registered");
    let metadata = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metadata.contains(r#"AuthnRequestsSigned="true""#),
        "{metadata}"
    );
    let der = idsync::saml_signing::pem_body(&made.certificate_pem);
    assert!(metadata.contains(&der), "the certificate is published");

    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&start)
        .send()
        .await
        .unwrap();
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256")
            && location.contains("&Signature="),
        "{location}"
    );

    let post = f.saml_through_idp(&browser, "alice", "").await;
    let landing = f.post_acs(&browser, &post).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    assert!(landing.session_cookie().is_some());

    // The list the operator compares with never carries the private key.
    let held = f
        .admin
        .list_keys::<idsync::admin::SamlSigningKeyDoc>()
        .await
        .expect("list");
    assert_eq!(held.len(), 1);
    assert!(held[0].1.private_key.is_none());
    assert_eq!(held[0].1.certificate, made.certificate_pem);

    // A key whose certificate belongs to another key is refused, quoting neither.
    let other = idsync::saml_signing::generate("other", now).expect("key");
    let err = f
        .admin
        .put_key("k8s-mismatch", &doc(&other.certificate_pem))
        .await
        .expect_err("mismatch refused")
        .to_string();
    assert!(err.contains("certificate is not for privateKey"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

async fn forged_and_misdirected_responses_are_refused(db: Db) {
    let f = fixture(db, false).await;
    // Signed by the IdP, but not for us / not now.
    for (variant, reason) in [
        ("wrong-audience", "wrong_audience"),
        ("no-audience", "wrong_audience"),
        ("expired", "expired"),
    ] {
        let browser = f.browser();
        let post = f.saml_through_idp(&browser, "alice", variant).await;
        assert_refused(&f.post_acs(&browser, &post).await, reason);
    }
    // Made from a real response.
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "NameID changed after signing",
            Box::new(|x: String| x.replace(">alice@acme.io<", ">bob@acme.io<")),
            &["invalid_signature"],
        ),
        (
            "attribute changed after signing",
            Box::new(|x: String| x.replace(">engineering<", ">founders<")),
            &["invalid_signature"],
        ),
        (
            "comment splitting the NameID",
            Box::new(|x: String| x.replace(">alice@acme.io<", ">alice@acme.io<!---->.evil<")),
            &["malformed_response"],
        ),
        (
            "a second, unsigned assertion before the signed one (wrapping)",
            Box::new(|x: String| {
                let start = x.find("<saml:Assertion").expect("assertion");
                let end = x.find("</saml:Assertion>").expect("end") + "</saml:Assertion>".len();
                let signed = &x[start..end];
                let sig_start = signed.find("<ds:Signature").expect("signature");
                let sig_end =
                    signed.find("</ds:Signature>").expect("end") + "</ds:Signature>".len();
                let evil = format!("{}{}", &signed[..sig_start], &signed[sig_end..])
                    .replace(">alice@acme.io<", ">mallory@acme.io<")
                    .replacen("ID=\"_", "ID=\"_evil", 1);
                format!("{}{evil}{}", &x[..start], &x[start..])
            }),
            &["malformed_response", "invalid_signature"],
        ),
        (
            "the signature stripped",
            Box::new(|x: String| {
                let s = x.find("<ds:Signature").expect("signature");
                let e = x.find("</ds:Signature>").expect("end") + "</ds:Signature>".len();
                format!("{}{}", &x[..s], &x[e..])
            }),
            &["invalid_signature", "malformed_response"],
        ),
    ];
    for (what, edit, reasons) in cases {
        let browser = f.browser();
        let post = rewrite(&f.saml_through_idp(&browser, "alice", "").await, edit);
        let landing = f.post_acs(&browser, &post).await;
        assert!(
            landing.status.is_client_error(),
            "{what}: {} {}",
            landing.status,
            landing.body
        );
        assert!(
            reasons.iter().any(|r| landing.body.contains(r)),
            "{what}: expected one of {reasons:?}: {}",
            landing.body
        );
        assert!(landing.session_cookie().is_none(), "{what}");
    }
    // Nothing above signed anyone in; every refusal is audited, identical ones
    // (same source, reason and minute) as one entry with a count.
    f.service.flush_audit().await;
    let failed = f
        .admin
        .audit("workspace=acme&action=sign_in_failed")
        .await
        .expect("audit");
    let counted: u64 = failed
        .iter()
        .map(|e| {
            e.detail
                .as_ref()
                .and_then(|d| d["count"].as_u64())
                .unwrap_or(0)
        })
        .sum();
    assert!(
        failed.len() < 8,
        "identical refusals share an entry: {failed:?}"
    );
    assert_eq!(counted, 8, "{failed:?}");
    assert!(
        f.admin
            .audit("workspace=acme&action=sign_in")
            .await
            .expect("audit")
            .is_empty()
    );
}

async fn idp_initiated_sign_in_is_opt_in_and_single_use(db: Db) {
    let off = fixture(db, false).await;
    let unsolicited = off.saml_unsolicited("alice").await;
    assert_refused(
        &off.post_acs(&off.browser(), &unsolicited).await,
        "invalid_state",
    );

    let on = fixture(db, true).await;
    let unsolicited = on.saml_unsolicited("bob").await;
    let landing = on.post_acs(&on.browser(), &unsolicited).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let (_, session) = on.session(&landing.session_cookie().expect("cookie")).await;
    assert_eq!(session["role"], "member");
    // The same assertion again: the replay cache, shared through the store.
    assert_refused(&on.post_acs(&on.browser(), &unsolicited).await, "replayed");
}

/// A RoleMapping rule limited to the `okta` connection: the SAML IdP of the
/// same workspace asserting the admins group gets nobody admin.
#[tokio::test]
async fn a_rule_limited_to_a_connection_ignores_another_idps_groups() {
    let f = SignInFixture::start_with_saml(
        Db::Sqlite,
        json!({"domains": ["acme.com", "acme.io"]}),
        accounts(),
        Some(json!({"rules": [{"equals": "admins", "role": "admin", "connections": ["okta"]}]})),
        false,
    )
    .await;
    let browser = f.browser();
    let post = f.saml_through_idp(&browser, "alice", "").await;
    let landing = f.post_acs(&browser, &post).await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let (_, session) = f.session(&landing.session_cookie().expect("cookie")).await;
    assert_eq!(session["userName"], "alice@acme.io");
    assert_eq!(
        session["role"], "member",
        "entra's admins group is not okta's: {session}"
    );
}

on_both_databases!(saml_sign_in_lands_with_the_mapped_role);

#[tokio::test]
async fn forged_and_misdirected_responses_are_refused_on_sqlite() {
    forged_and_misdirected_responses_are_refused(Db::Sqlite).await
}

#[tokio::test]
async fn idp_initiated_sign_in_is_opt_in_and_single_use_on_postgres() {
    idp_initiated_sign_in_is_opt_in_and_single_use(Db::Postgres).await
}

/// Hostile responses, each posted to the real ACS of a separate `idsync serve`
/// with a live RelayState, the way one unauthenticated request from anyone on
/// the internet can (one `GET /sso/acme/start` buys the RelayState).
mod hostile {
    use std::time::{Duration, Instant};

    use super::*;
    use support::{
        signin::FixtureOptions,
        stub::{Stub, cpu_seconds},
    };

    async fn fixture(db: Db) -> SignInFixture {
        let mut f = SignInFixture::start_with(
            db,
            json!({"domains": ["acme.com", "acme.io"]}),
            json!({}),
            Some(mapping()),
            FixtureOptions {
                process: true,
                ..Default::default()
            },
        )
        .await;
        f.add_saml_idp(accounts(), false, &[]).await;
        f
    }

    /// The assertion's signature with its Reference URI replaced.
    fn reference_to(xml: String, uri: &str) -> String {
        let assertion = xml.find("<saml:Assertion").expect("assertion");
        let at = assertion + xml[assertion..].find("URI=\"").expect("a Reference") + 5;
        let end = at + xml[at..].find('"').expect("closing quote");
        format!("{}{uri}{}", &xml[..at], &xml[end..])
    }

    /// The assertion's signature with its Transforms replaced.
    fn transforms(xml: String, inner: &str) -> String {
        let assertion = xml.find("<saml:Assertion").expect("assertion");
        let start = assertion
            + xml[assertion..]
                .find("<ds:Transforms>")
                .expect("Transforms");
        let end = start + xml[start..].find("</ds:Transforms>").expect("end");
        format!("{}<ds:Transforms>{inner}{}", &xml[..start], &xml[end..])
    }

    /// An XSLT transform that would never finish (2^40 template calls).
    const XSLT_BOMB: &str = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:call-template name="t"><xsl:with-param name="n" select="40"/></xsl:call-template><xsl:copy-of select="document('PROBE')"/></xsl:template><xsl:template name="t"><xsl:param name="n"/><xsl:if test="$n &gt; 0"><xsl:call-template name="t"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template><xsl:call-template name="t"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:if></xsl:template></xsl:stylesheet></ds:Transform>"#;

    /// An XPath filter that costs the cube of the document's size per node.
    const XPATH_BOMB: &str = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//*[count(//*[count(//*) &gt; 0]) &gt; 0]) &gt; 0</ds:XPath></ds:Transform>"#;

    /// Pads the Response with elements that make an XPath bomb slow.
    fn padded(xml: String) -> String {
        let pad = "<x/>".repeat(20_000);
        xml.replacen(
            "<samlp:Status>",
            &format!("<samlp:Extensions>{pad}</samlp:Extensions><samlp:Status>"),
            1,
        )
    }

    /// Posts `edit` of a fresh response and checks it is refused with one of
    /// `reasons` within `within`; returns nothing, asserts everything.
    async fn refused_quickly(
        f: &SignInFixture,
        what: &str,
        edit: &Edit,
        reasons: &[&str],
        within: Duration,
    ) {
        let browser = f.browser();
        let post = rewrite(&f.saml_through_idp(&browser, "alice", "").await, edit);
        let started = Instant::now();
        let landing =
            tokio::time::timeout(within + Duration::from_secs(4), f.post_acs(&browser, &post))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer within {within:?} and more"));
        let took = started.elapsed();
        assert!(took <= within, "{what}: answered after {took:?}");
        assert!(
            landing.status.is_client_error(),
            "{what}: {} {}",
            landing.status,
            landing.body
        );
        assert!(
            reasons.iter().any(|r| landing.body.contains(r)),
            "{what}: expected one of {reasons:?}: {}",
            landing.body
        );
        assert!(landing.session_cookie().is_none(), "{what}");
        assert!(f.service.is_running(), "{what}: the service died");
    }

    /// Reference URIs and transforms that make xmlsec fetch, read or compute
    /// are refused before it sees them, and the service stays up and idle.
    #[tokio::test]
    async fn signatures_that_steer_xmlsec_are_refused_and_the_service_stays_up() {
        let f = fixture(Db::Sqlite).await;
        let pid = f.service.pid().expect("a separate process");
        let probe = Stub::probe();
        let second = Duration::from_secs(1);
        let probe_url = probe.url("probe");
        let cases: Vec<(&str, Edit)> = vec![
            ("a Reference to a listener on 127.0.0.1", {
                let u = probe_url.clone();
                Box::new(move |x| reference_to(x, &u))
            }),
            (
                "a Reference to file:///dev/zero",
                Box::new(|x| reference_to(x, "file:///dev/zero")),
            ),
            (
                "a Reference to file:///etc/passwd",
                Box::new(|x| reference_to(x, "file:///etc/passwd")),
            ),
            (
                "a relative Reference",
                Box::new(|x| reference_to(x, "probe.xml")),
            ),
            (
                "an XPointer Reference",
                Box::new(|x| reference_to(x, "#xpointer(/)")),
            ),
            ("an XSLT transform", {
                let u = probe.url("xslt");
                Box::new(move |x| transforms(x, &XSLT_BOMB.replace("PROBE", &u)))
            }),
            (
                "an XPath transform",
                Box::new(|x| padded(transforms(x, XPATH_BOMB))),
            ),
        ];
        for (what, edit) in &cases {
            refused_quickly(&f, what, edit, &["invalid_signature"], second).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(probe.hits(), 0, "the service connected to the probe");
        // Nothing keeps running after the answers: the process is idle.
        let before = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let used = cpu_seconds(pid) - before;
        assert!(
            used < 0.3,
            "the service used {used:.2} s of CPU in 1.5 s after the refusals"
        );
        // And it still signs people in.
        let browser = f.browser();
        let post = f.saml_through_idp(&browser, "alice", "").await;
        let landing = f.post_acs(&browser, &post).await;
        assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    }

    /// The NameID comment trick and a DTD, hidden from a UTF-8 reader by an
    /// encoding declaration that libxml would honour.
    #[tokio::test]
    async fn encodings_that_hide_markup_are_refused() {
        let f = fixture(Db::Sqlite).await;
        let second = Duration::from_secs(1);
        let utf7_comment: Edit = Box::new(|x: String| {
            // `<!---->` in UTF-7, inside the NameID: "alice@acme.io<!---->.evil".
            let x = x.replacen(
                ">alice@acme.io<",
                ">alice@acme.io+ADwAIQ-----+AD4-.evil<",
                1,
            );
            format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{x}")
        });
        let utf7_doctype: Edit = Box::new(|x: String| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY e SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-{x}"
            )
        });
        let utf16_doctype: Edit = Box::new(|x: String| {
            let doc = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
                x.replacen(">alice@acme.io<", ">alice@acme.io<!---->.evil<", 1)
            );
            // UTF-16LE without a BOM: every ASCII byte followed by a NUL, which
            // is also valid UTF-8 text.
            doc.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .map(char::from)
                .collect()
        });
        for (what, edit) in [
            ("UTF-7 hiding a comment in the NameID", &utf7_comment),
            ("UTF-7 hiding a DOCTYPE", &utf7_doctype),
            ("UTF-16 hiding a DOCTYPE and a comment", &utf16_doctype),
        ] {
            refused_quickly(&f, what, edit, &["malformed_response"], second).await;
        }
    }

    /// Where an XSW payload puts things, from a real response `x`.
    struct Parts {
        /// The Response's start tag, its content before the assertion, and
        /// its end, without the Response's own signature.
        head: String,
        tail: String,
        /// The signed assertion, and the same without its signature.
        assertion: String,
        bare_assertion: String,
        /// The assertion's signature, and the Response's (when signed).
        assertion_signature: String,
        response_signature: Option<String>,
    }

    fn element(x: &str, open: &str, close: &str) -> (usize, usize) {
        let s = x.find(open).unwrap_or_else(|| panic!("{open} in {x}"));
        let e = s + x[s..].find(close).expect("end") + close.len();
        (s, e)
    }

    fn parts(x: &str) -> Parts {
        let (a_start, a_end) = element(x, "<saml:Assertion", "</saml:Assertion>");
        let assertion = x[a_start..a_end].to_string();
        let (s_start, s_end) = element(&assertion, "<ds:Signature", "</ds:Signature>");
        let assertion_signature = assertion[s_start..s_end].to_string();
        let bare_assertion = format!("{}{}", &assertion[..s_start], &assertion[s_end..]);
        let (mut head, tail) = (x[..a_start].to_string(), x[a_end..].to_string());
        let response_signature = head.find("<ds:Signature").map(|_| {
            let (s, e) = element(&head, "<ds:Signature", "</ds:Signature>");
            let sig = head[s..e].to_string();
            head = format!("{}{}", &head[..s], &head[e..]);
            sig
        });
        Parts {
            head,
            tail,
            assertion,
            bare_assertion,
            assertion_signature,
            response_signature,
        }
    }

    /// What the attacker wants read: mallory, under a fresh ID.
    fn evil(assertion: &str) -> String {
        assertion
            .replace(">alice@acme.io<", ">mallory@acme.io<")
            .replacen(" ID=\"_", " ID=\"_evil", 1)
    }

    /// SAML Raider's eight XML-signature-wrapping payloads (after Somorovsky et
    /// al., "On Breaking SAML"), built from a real response.
    fn xsw(n: u8, x: &str) -> String {
        let p = parts(x);
        let evil_response_head = evil(&p.head);
        match n {
            // The evil Response at the root; the original, signed Response
            // inside its signature (1) or before it (2).
            1 | 2 => {
                let sig = p.response_signature.clone().expect("a signed Response");
                let original = x.to_string();
                let original_bare = original.replacen(&sig, "", 1);
                let wrapped = if n == 1 {
                    sig.replacen(
                        "</ds:Signature>",
                        &format!("{original_bare}</ds:Signature>"),
                        1,
                    )
                } else {
                    format!("{original_bare}{sig}")
                };
                format!(
                    "{evil_response_head}{wrapped}{}{}",
                    evil(&p.bare_assertion),
                    p.tail
                )
            }
            // An evil assertion before the signed one.
            3 => format!(
                "{}{}{}{}",
                p.head,
                evil(&p.bare_assertion),
                p.assertion,
                p.tail
            ),
            // The signed assertion inside the evil one.
            4 => {
                let e = evil(&p.bare_assertion);
                let e = e.replacen(
                    "</saml:Assertion>",
                    &format!("{}</saml:Assertion>", p.assertion),
                    1,
                );
                format!("{}{e}{}", p.head, p.tail)
            }
            // The evil assertion carries the signature; the original, bare,
            // follows it (5) or sits inside the signature (6), or in a
            // ds:Object of it (8).
            5 | 6 | 8 => {
                let e = evil(&p.bare_assertion);
                let at = e.find("<saml:Subject").expect("subject");
                let sig = match n {
                    5 => p.assertion_signature.clone(),
                    6 => p.assertion_signature.replacen(
                        "</ds:Signature>",
                        &format!("{}</ds:Signature>", p.bare_assertion),
                        1,
                    ),
                    _ => p.assertion_signature.replacen(
                        "</ds:Signature>",
                        &format!("<ds:Object>{}</ds:Object></ds:Signature>", p.bare_assertion),
                        1,
                    ),
                };
                let e = format!("{}{sig}{}", &e[..at], &e[at..]);
                let rest = if n == 5 {
                    p.bare_assertion.clone()
                } else {
                    String::new()
                };
                format!("{}{e}{rest}{}", p.head, p.tail)
            }
            // The signed assertion hidden in samlp:Extensions, the evil one after.
            7 => format!(
                "{}<samlp:Extensions>{}</samlp:Extensions>{}{}",
                p.head,
                p.assertion,
                evil(&p.bare_assertion),
                p.tail
            ),
            _ => unreachable!("eight payloads"),
        }
    }

    /// XSW1–8 from real responses (the Response signed too for 1 and 2): all
    /// refused, nobody signed in, and a response signed both ways still works.
    #[tokio::test]
    async fn signature_wrapping_payloads_are_refused() {
        let f = fixture(Db::Sqlite).await;
        for n in 1..=8u8 {
            let variant = if n <= 2 { "signed-response" } else { "" };
            let browser = f.browser();
            let post = f.saml_through_idp(&browser, "alice", variant).await;
            let post = rewrite(&post, |x| xsw(n, &x));
            let landing = f.post_acs(&browser, &post).await;
            assert!(
                landing.status.is_client_error(),
                "XSW{n}: {} {}",
                landing.status,
                landing.body
            );
            assert!(
                ["malformed_response", "invalid_signature"]
                    .iter()
                    .any(|r| landing.body.contains(r)),
                "XSW{n}: {}",
                landing.body
            );
            assert!(landing.session_cookie().is_none(), "XSW{n}");
        }
        let browser = f.browser();
        let post = f
            .saml_through_idp(&browser, "alice", "signed-response")
            .await;
        let landing = f.post_acs(&browser, &post).await;
        assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
        assert!(
            f.admin
                .audit("workspace=acme&action=sign_in")
                .await
                .expect("audit")
                .iter()
                .all(|e| e
                    .detail
                    .as_ref()
                    .is_some_and(|d| d["email"] == "alice@acme.io")),
            "only alice ever signed in"
        );
    }
}

/// Both sign-in flows and a login-CSRF attempt in Debian's headless Chromium,
/// with the service on https://localhost (TLS from a test CA, terminated by a
/// proxy as an ingress would) and the IdPs on another site (127.0.0.1).
mod browser {
    use std::{path::Path, process::Command};

    use super::*;
    use support::{cluster::free_port, process::OwnedProcess, repo_root, signin::FixtureOptions};

    /// A test CA and a certificate it signed for localhost: (CA PEM, cert, key).
    fn test_ca(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=idsync test CA",
            "-days",
            "1",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "tls-key.pem",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "tls.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ]);
        (
            std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            dir.join("tls.pem"),
            dir.join("tls-key.pem"),
        )
    }

    #[tokio::test]
    async fn both_flows_work_and_login_csrf_is_refused_in_a_real_browser() {
        let chromium = Path::new("/usr/bin/chromium");
        assert!(
            chromium.exists(),
            "Chromium is needed: scripts/install-deps.sh installs Debian's"
        );
        let tls_port = free_port();
        let public = format!("https://localhost:{tls_port}");
        let mut f = SignInFixture::start_with(
            Db::Sqlite,
            json!({"domains": ["acme.com", "acme.io"]}),
            json!({"alice": {"email": "alice@acme.com", "email_verified": true}}),
            Some(mapping()),
            FixtureOptions {
                public_url: Some(public.clone()),
                ..Default::default()
            },
        )
        .await;
        f.add_saml_idp(
            json!({"alice": {"email": "alice@acme.io", "groups": ["admins"]},
                   "mallory": {"email": "mallory@acme.io", "groups": []}}),
            false,
            &[],
        )
        .await;
        let (ca, cert, key) = test_ca(f.db.dir.path());
        let _proxy = OwnedProcess::spawn(
            "tls-proxy",
            Path::new("node"),
            [
                repo_root()
                    .join("tests/idp/tls-proxy.mjs")
                    .display()
                    .to_string(),
                tls_port.to_string(),
                f.port.to_string(),
            ],
            &[
                ("TLS_CERT", cert.display().to_string()),
                ("TLS_KEY", key.display().to_string()),
                ("IDSYNC_OWNER_PID", std::process::id().to_string()),
            ],
            &f.db.dir.path().join("tls-proxy.log"),
        );
        // Up, and its certificate chains to the test CA.
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while https.get(format!("{public}/healthz")).send().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the TLS proxy never answered"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let out = tokio::process::Command::new("node")
            .arg(repo_root().join("tests/idp/browser-signin.mjs"))
            .env("CHROMIUM", chromium)
            .env("PUBLIC", &public)
            .output()
            .await
            .expect("node runs the browser");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert!(result.get("error").is_none(), "{}", result["error"]);
        // OIDC: the state cookie (SameSite=Lax) came back on the IdP's
        // top-level redirect; a session for alice.
        assert_eq!(result["oidc"]["status"], 200, "{result}");
        assert_eq!(result["oidc"]["body"]["userName"], "alice@acme.com");
        // SAML: the cross-site POST from the IdP's page carried the
        // SameSite=None state cookie; a session for alice with her role.
        assert_eq!(result["saml"]["status"], 200, "{result}");
        assert_eq!(result["saml"]["body"]["userName"], "alice@acme.io");
        assert_eq!(result["saml"]["body"]["role"], "admin");
        assert!(
            result["samlAcsCookie"]
                .as_str()
                .is_some_and(|c| c.contains("idsync_signin=")),
            "{result}"
        );
        // Login CSRF: mallory's response, posted from the attacker's page in
        // the victim's browser, is refused, and the victim has no session.
        assert_eq!(result["csrf"]["captured"], true, "{result}");
        assert_eq!(result["csrf"]["status"], 400, "{result}");
        assert!(
            result["csrf"]["body"]
                .as_str()
                .unwrap_or_default()
                .contains("invalid_state"),
            "{result}"
        );
        assert_eq!(result["csrf"]["session"]["status"], 401, "{result}");
    }
}
