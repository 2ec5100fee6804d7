//! SAML 2.0 sign-in through a real IdP built on samlify (npm) on 127.0.0.1: a
//! different XML-signature stack from the xmlsec behind idsync's SP. Negative
//! cases are either signed by the IdP itself (wrong audience, expired) or made
//! from its real responses (tampering, wrapping, comments, replays).

mod support;

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
        created_at: jiff::Timestamp::from_millisecond(now).unwrap().to_string(),
        expires_at: None,
    };
    f.admin
        .put_saml_signing_key("k8s-test", &doc(&made.certificate_pem))
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
    let held = f.admin.list_saml_signing_keys().await.expect("list");
    assert_eq!(held.len(), 1);
    assert!(held[0].1.private_key.is_none());
    assert_eq!(held[0].1.certificate, made.certificate_pem);

    // A key whose certificate belongs to another key is refused, quoting neither.
    let other = idsync::saml_signing::generate("other", now).expect("key");
    let err = f
        .admin
        .put_saml_signing_key("k8s-mismatch", &doc(&other.certificate_pem))
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
    // Nothing above signed anyone in; every refusal is audited.
    let failed = f
        .admin
        .audit("workspace=acme&action=sign_in_failed")
        .await
        .expect("audit");
    assert_eq!(failed.len(), 8);
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

on_both_databases!(saml_sign_in_lands_with_the_mapped_role);

#[tokio::test]
async fn forged_and_misdirected_responses_are_refused_on_sqlite() {
    forged_and_misdirected_responses_are_refused(Db::Sqlite).await
}

#[tokio::test]
async fn idp_initiated_sign_in_is_opt_in_and_single_use_on_postgres() {
    idp_initiated_sign_in_is_opt_in_and_single_use(Db::Postgres).await
}
