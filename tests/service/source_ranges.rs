//! `policy.sourceRanges`: SCIM requests and sign-in callbacks only from the
//! workspace's ranges, with `X-Forwarded-For` believed only from a trusted
//! proxy.

use idsync::service::store::ObjectKind;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    on_both_databases,
    signin::accounts,
    support::{
        Db,
        scim::ScimFixture,
        signin::{FixtureOptions, SignInFixture},
    },
};

/// A browser behind a proxy that says the request came from `forwarded_for`.
fn browser_from(f: &SignInFixture, forwarded_for: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        forwarded_for.parse().expect("a header value"),
    );
    f.browser_with(headers)
}

async fn scim_only_from_its_ranges(db: Db) {
    let doc = |ranges: serde_json::Value| json!({"domains": ["acme.com"], "policy": {"sourceRanges": {"scim": ranges}}});
    let f = ScimFixture::start(db, doc(json!(["203.0.113.0/24"]))).await;
    let refused = f.call(Method::GET, "/Users", None).await;
    refused.assert_error(403, None);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("sourceRanges.scim")
    );
    // The service trusts no proxy here: a forged X-Forwarded-For changes nothing.
    let forged = f
        .call_with(
            Method::GET,
            "/Users",
            None,
            &f.token,
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
    forged.assert_error(403, None);
    // A wrong token from outside the ranges learns nothing about them.
    f.call_with(Method::GET, "/Users", None, "idsync_scim_nope", &[])
        .await
        .assert_error(401, None);
    f.admin
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &doc(json!(["127.0.0.1", "::1"])),
        )
        .await
        .expect("ranges changed");
    assert_eq!(
        f.call(Method::GET, "/Users", None).await.status,
        StatusCode::OK
    );
    // A range that is not one is refused by the admin API.
    let bad = f
        .admin
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &doc(json!(["10.0.0.0/33"])),
        )
        .await
        .expect_err("not a range");
    assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
    f.stop().await;
}

async fn sign_in_only_from_its_ranges(db: Db) {
    let f = SignInFixture::start_with(
        db,
        json!({"domains": ["acme.com"], "policy": {"sourceRanges": {"signIn": ["203.0.113.0/24"]}}}),
        accounts(),
        None,
        FixtureOptions {
            process: true,
            serve_args: vec!["--trusted-proxies".into(), "127.0.0.1/32".into()],
            ..Default::default()
        },
    )
    .await;
    let direct = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(direct.status, StatusCode::FORBIDDEN, "{}", direct.body);
    assert!(
        direct.body.contains("source_not_allowed"),
        "{}",
        direct.body
    );
    let elsewhere = f
        .sign_in(&browser_from(&f, "198.51.100.7"), "alice@acme.com", "alice")
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::FORBIDDEN,
        "{}",
        elsewhere.body
    );
    let office = f
        .sign_in(&browser_from(&f, "203.0.113.9"), "alice@acme.com", "alice")
        .await;
    assert_eq!(office.status, StatusCode::SEE_OTHER, "{}", office.body);
    let health = f.health("okta").await;
    assert_eq!(health["failures"], 2, "{health}");
    assert_eq!(
        health["lastFailureReason"], "source_not_allowed",
        "{health}"
    );
}

on_both_databases!(scim_only_from_its_ranges, sign_in_only_from_its_ranges);
