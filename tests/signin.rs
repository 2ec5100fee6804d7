//! Sign-in through a real OpenID Provider (oidc-provider from npm) on 127.0.0.1:
//! the whole browser redirect dance, then the workspace's policy, role
//! mapping, sessions, sign-out and deprovisioning.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Db, signin::SignInFixture};

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.com", "email_verified": true, "given_name": "Alice",
                  "family_name": "Liddell", "groups": ["engineering", "admins"]},
        "bob": {"email": "bob@acme.com", "email_verified": true, "groups": ["engineering"]},
        "mallory": {"email": "mallory@evil.example", "email_verified": true, "groups": ["admins"]},
    })
}

fn mapping() -> Value {
    json!({
        "defaultRole": "member",
        "rules": [
            {"equals": "admins", "role": "admin"},
            {"equals": "founders", "role": "owner"},
        ]
    })
}

/// A SCIM client of the fixture's workspace, as an IdP would hold it.
async fn scim_token(f: &SignInFixture) -> String {
    support::scim::issue_token(&f.admin, "acme").await
}

async fn scim(
    f: &SignInFixture,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let r = reqwest::Client::new()
        .request(method, format!("{}/scim/v2/acme{path}", f.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("SCIM call");
    assert!(r.status().is_success(), "SCIM {path}: {}", r.status());
    r.json().await.expect("SCIM body")
}

async fn audit(f: &SignInFixture, action: &str) -> Vec<idsync::service::store::AuditRecord> {
    f.admin
        .audit(&format!("workspace=acme&action={action}"))
        .await
        .expect("audit")
}

/// The whole experience: click "Sign in with SSO", authenticate at the IdP,
/// land in the product signed in with the role the directory's groups give.
async fn oidc_sign_in_lands_with_the_mapped_role(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"sessionLifetimes": {"admin": "4h", "member": "8h"}}}),
        accounts(),
        Some(mapping()),
    )
    .await;
    let browser = f.browser();
    let landing = f.sign_in(&browser, "alice@acme.com", "alice").await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    assert_eq!(landing.location.as_deref(), Some("/app/home"));
    let set = landing
        .set_cookies
        .iter()
        .find(|c| c.starts_with("idsync_session="))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(set.contains("Max-Age=14400"), "admins get 4 h: {set}");
    let cookie = landing.session_cookie().expect("session cookie value");

    let (status, session) = f.session(&cookie).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["workspace"], "acme");
    assert_eq!(session["userName"], "alice@acme.com");
    assert_eq!(session["role"], "admin");
    assert_eq!(session["connection"], "okta");

    // Just-in-time provisioned, audited, counted.
    let signed_in = audit(&f, "sign_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(
        signed_in[0].detail.as_ref().expect("detail")["role"],
        "admin"
    );
    let health = f.health("okta").await;
    assert_eq!(health["successes"], 1, "{health}");
    assert!(health["lastSuccessAt"].is_string(), "{health}");
    let metrics = f.metrics().await;
    assert!(
        metrics.contains(
            r#"idsync_sso_signins_total{connection="okta",protocol="oidc",result="success",workspace="acme"} 1"#
        ),
        "{metrics}"
    );

    // A second person with fewer groups gets the mapping's default and 8 h.
    let bob = f.sign_in(&f.browser(), "bob@acme.com", "bob").await;
    let (_, session) = f.session(&bob.session_cookie().expect("cookie")).await;
    assert_eq!(session["role"], "member");

    // Sign-out ends the session at once.
    let r = reqwest::Client::new()
        .post(format!("{}/sso/logout", f.base))
        .header("cookie", format!("idsync_session={cookie}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(f.session(&cookie).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(audit(&f, "sign_out").await.len(), 1);
}

/// `requireScimProvisioning`: a person the directory never provisioned is
/// refused with a page that says why; once SCIM provisions them, they get in;
/// once SCIM deactivates them, their session stops working within seconds.
async fn scim_decides_who_may_sign_in(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"requireScimProvisioning": true}}),
        accounts(),
        Some(mapping()),
    )
    .await;
    let refused = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("not_provisioned"), "{}", refused.body);
    assert!(
        refused.body.contains("IT administrator"),
        "{}",
        refused.body
    );
    assert!(refused.session_cookie().is_none());
    let failed = audit(&f, "sign_in_failed").await;
    assert_eq!(
        failed[0].detail.as_ref().expect("detail")["reason"],
        "not_provisioned"
    );

    let token = scim_token(&f).await;
    let user = scim(
        &f,
        &token,
        reqwest::Method::POST,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "alice@acme.com", "active": true}),
    )
    .await;
    let id = user["id"].as_str().expect("id").to_string();
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let cookie = landing.session_cookie().expect("cookie");
    assert_eq!(f.session(&cookie).await.0, StatusCode::OK);

    scim(
        &f,
        &token,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
    )
    .await;
    // Within seconds (the session-check cache holds a live answer for 1 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while f.session(&cookie).await.0 != StatusCode::UNAUTHORIZED {
        assert!(
            std::time::Instant::now() < deadline,
            "session survived deprovisioning"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let again = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.body.contains("deprovisioned"), "{}", again.body);
}

/// The IdP may only assert emails of the connection's domains, and JIT off
/// means only provisioned people get in.
async fn domains_and_jit_policy_are_enforced(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"jitProvisioning": false}}),
        accounts(),
        None,
    )
    .await;
    let evil = f.sign_in(&f.browser(), "mallory@acme.com", "mallory").await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    assert!(evil.body.contains("domain_not_allowed"), "{}", evil.body);
    let bob = f.sign_in(&f.browser(), "bob@acme.com", "bob").await;
    assert_eq!(bob.status, StatusCode::FORBIDDEN);
    assert!(bob.body.contains("jit_disabled"), "{}", bob.body);
    let health = f.health("okta").await;
    assert_eq!(health["failures"], 2, "{health}");
    assert_eq!(health["lastFailureReason"], "jit_disabled", "{health}");
}

/// `state` binds the callback to the browser that started the sign-in, and
/// each sign-in completes at most once.
async fn state_is_single_use_and_bound_to_the_browser(db: Db) {
    let f = SignInFixture::start(db, json!({"domains": ["acme.com"]}), accounts(), None).await;
    let browser = f.browser();
    let callback = f.through_idp(&browser, "alice@acme.com", "alice").await;

    // Another browser (an attacker who got the victim to open the URL, or
    // the reverse: login CSRF) holds no state cookie.
    let stranger = f.land(&f.browser(), &callback).await;
    assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
    assert!(stranger.body.contains("invalid_state"), "{}", stranger.body);
    // The stranger's attempt consumed the request: the real browser must start again.
    let replay = f.land(&browser, &callback).await;
    assert!(replay.body.contains("invalid_state"), "{}", replay.body);

    let callback = f.through_idp(&browser, "alice@acme.com", "alice").await;
    let tampered = callback.replace("state=", "state=x");
    let r = f.land(&browser, &tampered).await;
    assert!(r.body.contains("invalid_state"), "{}", r.body);
    let fresh = f.through_idp(&browser, "alice@acme.com", "alice").await;
    let ok = f.land(&browser, &fresh).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let replayed = f.land(&browser, &fresh).await;
    assert!(replayed.body.contains("invalid_state"), "{}", replayed.body);
    assert!(replayed.session_cookie().is_none());
}

/// Two first sign-ins of one person at once (two tabs, two devices) both land,
/// as one user.
async fn concurrent_first_sign_ins_make_one_user(db: Db) {
    let f = SignInFixture::start(db, json!({"domains": ["acme.com"]}), accounts(), None).await;
    let (a, b) = (f.browser(), f.browser());
    let first = f.through_idp(&a, "alice@acme.com", "alice").await;
    let second = f.through_idp(&b, "alice@acme.com", "alice").await;
    let (one, two) = tokio::join!(f.land(&a, &first), f.land(&b, &second));
    assert_eq!(one.status, StatusCode::SEE_OTHER, "{}", one.body);
    assert_eq!(two.status, StatusCode::SEE_OTHER, "{}", two.body);
    let token = scim_token(&f).await;
    let found = scim(
        &f,
        &token,
        reqwest::Method::GET,
        "/Users?filter=userName%20eq%20%22alice%40acme.com%22",
        Value::Null,
    )
    .await;
    assert_eq!(found["totalResults"], 1, "{found}");
    let (_, s1) = f.session(&one.session_cookie().expect("cookie")).await;
    let (_, s2) = f.session(&two.session_cookie().expect("cookie")).await;
    assert_eq!(s1["userId"], s2["userId"]);
}

/// The operator registers the session-cookie keys it keeps in a Secret; the
/// service signs with the newest and never gives key material back.
async fn sessions_are_signed_with_the_registered_key(db: Db) {
    let f = SignInFixture::start(db, json!({"domains": ["acme.com"]}), accounts(), None).await;
    let now = jiff::Timestamp::now();
    let doc = |secret: &str| idsync::admin::SessionKeyDoc {
        secret: Some(secret.to_string()),
        created_at: now.to_string(),
        expires_at: (now + jiff::SignedDuration::from_hours(720)).to_string(),
    };
    let bad = f.admin.put_session_key("k8s-test", &doc("not-hex")).await;
    assert_eq!(
        bad.expect_err("refused").status(),
        Some(StatusCode::BAD_REQUEST)
    );
    f.admin
        .put_session_key("k8s-test", &doc(&"ab".repeat(32)))
        .await
        .expect("registered");
    let listed = f.admin.list_session_keys().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "k8s-test");
    assert!(
        listed[0].1.secret.is_none(),
        "key material never comes back"
    );
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = landing.session_cookie().expect("cookie");
    assert!(cookie.starts_with("k8s-test."), "{cookie}");
    assert_eq!(f.session(&cookie).await.0, StatusCode::OK);
}

/// Products ask whether to show a password field.
async fn discovery_says_who_must_use_sso(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {
            "requireSso": {"mode": "All"}, "breakGlassAdmins": ["root@acme.com"]}}),
        accounts(),
        None,
    )
    .await;
    let ask = |email: &'static str| {
        let url = format!("{}/sso/acme/discover?email={email}", f.base);
        async move {
            reqwest::get(url)
                .await
                .expect("discover")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let alice = ask("alice@acme.com").await;
    assert_eq!(alice["ssoRequired"], true);
    assert_eq!(alice["passwordAllowed"], false);
    assert_eq!(alice["connection"], "okta");
    assert!(
        alice["signInUrl"]
            .as_str()
            .expect("url")
            .ends_with("/sso/acme/start?connection=okta")
    );
    let root = ask("root@acme.com").await;
    assert_eq!(
        root["passwordAllowed"], true,
        "break-glass admins keep their password"
    );
}

on_both_databases!(
    oidc_sign_in_lands_with_the_mapped_role,
    scim_decides_who_may_sign_in
);

#[tokio::test]
async fn domains_and_jit_policy_are_enforced_on_sqlite() {
    domains_and_jit_policy_are_enforced(Db::Sqlite).await
}

#[tokio::test]
async fn state_is_single_use_and_bound_to_the_browser_on_sqlite() {
    state_is_single_use_and_bound_to_the_browser(Db::Sqlite).await
}

#[tokio::test]
async fn concurrent_first_sign_ins_make_one_user_on_sqlite() {
    concurrent_first_sign_ins_make_one_user(Db::Sqlite).await
}

#[tokio::test]
async fn sessions_are_signed_with_the_registered_key_on_sqlite() {
    sessions_are_signed_with_the_registered_key(Db::Sqlite).await
}

#[tokio::test]
async fn discovery_says_who_must_use_sso_on_sqlite() {
    discovery_says_who_must_use_sso(Db::Sqlite).await
}
