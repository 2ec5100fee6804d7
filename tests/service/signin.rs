//! Sign-in through a real OpenID Provider (oidc-provider from npm) on 127.0.0.1:
//! the whole browser redirect dance, then the workspace's policy, role
//! mapping, sessions, sign-out and deprovisioning.

use std::collections::BTreeMap;

use crate::{on_both_databases, support};

use idsync::service::store::ObjectKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Db, signin::SignInFixture};

pub(crate) fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@acme.com", "email_verified": true, "given_name": "Alice",
                  "family_name": "Liddell", "groups": ["engineering", "admins"]},
        "bob": {"email": "bob@acme.com", "email_verified": true, "groups": ["engineering"]},
        "mallory": {"email": "mallory@evil.example", "email_verified": true, "groups": ["admins"]},
    })
}

pub(crate) fn mapping() -> Value {
    json!({
        "defaultRole": "member",
        "rules": [
            {"equals": "admins", "role": "admin"},
            {"equals": "founders", "role": "owner"},
        ]
    })
}

/// A SCIM client of the fixture's workspace, as an IdP would hold it.
pub(crate) async fn scim_token(f: &SignInFixture) -> String {
    support::scim::issue_token(&f.admin, "acme").await
}

pub(crate) async fn scim(
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

/// Provisions a user over SCIM; answers its id.
pub(crate) async fn scim_user(f: &SignInFixture, token: &str, user_name: &str) -> String {
    let user = scim(
        f,
        token,
        reqwest::Method::POST,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": user_name, "active": true}),
    )
    .await;
    user["id"].as_str().expect("id").to_string()
}

/// Provisions a group with `members` over SCIM; answers its id.
pub(crate) async fn scim_group(
    f: &SignInFixture,
    token: &str,
    name: &str,
    members: &[String],
) -> String {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    let group = scim(
        f,
        token,
        reqwest::Method::POST,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": name, "members": members}),
    )
    .await;
    group["id"].as_str().expect("id").to_string()
}

pub(crate) async fn audit(
    f: &SignInFixture,
    action: &str,
) -> Vec<idsync::service::store::AuditRecord> {
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
        created_at: now,
        expires_at: now + jiff::SignedDuration::from_hours(720),
    };
    let bad = f.admin.put_key("k8s-test", &doc("not-hex")).await;
    assert_eq!(
        bad.expect_err("refused").status(),
        Some(StatusCode::BAD_REQUEST)
    );
    f.admin
        .put_key("k8s-test", &doc(&"ab".repeat(32)))
        .await
        .expect("registered");
    let listed = f
        .admin
        .list_keys::<idsync::admin::SessionKeyDoc>()
        .await
        .expect("list");
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

/// Products ask whether to show a password field. Anyone may ask, so the
/// unauthenticated answer has one shape whoever is asked about, and only an
/// admin-token caller learns who may use a password (the break-glass list).
async fn discovery_says_who_must_use_sso(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {
            "requireSso": {"mode": "All"}, "breakGlassAdmins": ["root@acme.com"]}}),
        accounts(),
        None,
    )
    .await;
    let ask = |workspace: &'static str, email: &'static str, token: Option<&'static str>| {
        let url = format!("{}/sso/{workspace}/discover?email={email}", f.base);
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let r = request.send().await.expect("discover");
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.expect("JSON")
        }
    };
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let alice = ask("acme", "alice@acme.com", None).await;
    assert_eq!(alice["ssoRequired"], true);
    assert!(
        alice["signInUrl"]
            .as_str()
            .expect("url")
            .ends_with("/sso/acme/start?connection=okta")
    );
    let root = ask("acme", "root@acme.com", None).await;
    let nobody = ask("acme", "nobody@elsewhere.example", None).await;
    let no_workspace = ask("no-such-workspace", "alice@acme.com", None).await;
    for other in [&root, &nobody, &no_workspace] {
        assert_eq!(keys(other), keys(&alice), "one shape for everyone: {other}");
    }
    assert_eq!(
        root["ssoRequired"], true,
        "the break-glass list stays private"
    );
    assert_eq!(no_workspace["ssoRequired"], false);
    assert!(alice.get("passwordAllowed").is_none());
    // An authenticated caller learns who keeps a password.
    let token = support::ADMIN_TOKEN;
    let root = ask("acme", "root@acme.com", Some(token)).await;
    assert_eq!(
        root["passwordAllowed"], true,
        "break-glass admins keep their password"
    );
    let alice = ask("acme", "alice@acme.com", Some(token)).await;
    assert_eq!(alice["passwordAllowed"], false);
    assert_eq!(alice["connection"], "okta");
}

/// The right person: an IdP account whose email claim is someone else's (and
/// unverified) does not sign in as them (the nOAuth pattern, tried against the
/// certified oidc-provider), and once a user is bound to their subject, another
/// subject with the same, verified email is refused unless relinking is on.
async fn an_account_cannot_sign_in_as_another_persons_email(db: Db) {
    let accounts = json!({
        "victim": {"email": "victim@acme.com", "email_verified": true},
        "mallory": {"email": "victim@acme.com"},
        "impostor": {"email": "victim@acme.com", "email_verified": "true"},
    });
    let f =
        SignInFixture::start(db, json!({"domains": ["acme.com"]}), accounts.clone(), None).await;
    let token = scim_token(&f).await;
    let victim_id = scim_user(&f, &token, "victim@acme.com").await;

    let unverified = f.sign_in(&f.browser(), "victim@acme.com", "mallory").await;
    assert_eq!(
        unverified.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        unverified.body
    );
    assert!(
        unverified.body.contains("unverified_email"),
        "{}",
        unverified.body
    );
    assert!(unverified.session_cookie().is_none());

    let landing = f.sign_in(&f.browser(), "victim@acme.com", "victim").await;
    let (status, session) = f.session(&landing.session_cookie().expect("cookie")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["userId"], victim_id);

    // The victim is bound to the subject "victim" of okta now.
    let impostor = f.sign_in(&f.browser(), "victim@acme.com", "impostor").await;
    assert_eq!(impostor.status, StatusCode::FORBIDDEN, "{}", impostor.body);
    assert!(
        impostor.body.contains("subject_mismatch"),
        "{}",
        impostor.body
    );
    assert!(impostor.session_cookie().is_none());
    // The bound subject still signs in, by the binding.
    let again = f.sign_in(&f.browser(), "victim@acme.com", "victim").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);

    // A workspace that allows relinking lets the new subject take over, audited.
    f.admin
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &json!({"domains": ["acme.com"], "policy": {"allowRelinking": true}}),
        )
        .await
        .expect("workspace updated");
    let relinked = f.sign_in(&f.browser(), "victim@acme.com", "impostor").await;
    assert_eq!(relinked.status, StatusCode::SEE_OTHER, "{}", relinked.body);
    assert_eq!(audit(&f, "subject_relinked").await.len(), 1);

    // trustUnverifiedEmail is the connection's explicit, documented-unsafe choice.
    let mut conn = f
        .admin
        .get_object(ObjectKind::SsoConnection, "acme", "okta")
        .await
        .expect("read")
        .expect("exists")
        .spec;
    conn["oidc"]["clientSecret"] = support::signin::CLIENT_SECRET.into();
    conn["oidc"]
        .as_object_mut()
        .expect("oidc")
        .remove("clientSecretSet");
    conn["oidc"]["trustUnverifiedEmail"] = true.into();
    f.admin
        .put_object(ObjectKind::SsoConnection, "acme", "okta", &conn)
        .await
        .expect("connection updated");
    let trusted = f.sign_in(&f.browser(), "victim@acme.com", "mallory").await;
    assert_eq!(trusted.status, StatusCode::SEE_OTHER, "{}", trusted.body);
}

/// A session reports the member's role now: a SCIM membership change shows on
/// the next check, no rule and no declared default give `member`, and a
/// deactivation over SCIM ends the session on this replica's very next check.
async fn sessions_report_the_current_role_and_die_with_deprovisioning(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"]}),
        json!({"alice": {"email": "alice@acme.com", "email_verified": true}}),
        Some(json!({"rules": [{"equals": "eng-admins", "role": "admin"}]})),
    )
    .await;
    let token = scim_token(&f).await;
    let id = scim_user(&f, &token, "alice@acme.com").await;
    let group_id = scim_group(&f, &token, "eng-admins", std::slice::from_ref(&id)).await;
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = landing.session_cookie().expect("cookie");
    assert_eq!(f.session(&cookie).await.1["role"], "admin");

    scim(
        &f,
        &token,
        reqwest::Method::PATCH,
        &format!("/Groups/{group_id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}),
    )
    .await;
    // The check cache answers a live session for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, session) = f.session(&cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        session["role"], "member",
        "the documented default: {session}"
    );

    // Warm the cache, deactivate, and check at once.
    assert_eq!(f.session(&cookie).await.0, StatusCode::OK);
    scim(
        &f,
        &token,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await;
    assert_eq!(f.session(&cookie).await.0, StatusCode::UNAUTHORIZED);
}

/// A RoleMapping change recomputes every member in the background, audited
/// per member whose role moved, and sessions show it.
async fn a_mapping_change_recomputes_every_member(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"]}),
        json!({"alice": {"email": "alice@acme.com", "email_verified": true}}),
        Some(json!({"rules": [{"equals": "eng", "role": "member"}]})),
    )
    .await;
    let token = scim_token(&f).await;
    let mut ids = Vec::new();
    for name in ["alice", "bob", "carol"] {
        ids.push(scim_user(&f, &token, &format!("{name}@acme.com")).await);
    }
    // A service account in the group is a member like the people in it.
    let robot = scim(
        &f,
        &token,
        reqwest::Method::POST,
        "/ServiceAccounts",
        json!({"schemas": ["urn:idsync:params:scim:schemas:core:1.0:ServiceAccount"],
               "displayName": "deployer"}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    scim_group(
        &f,
        &token,
        "eng",
        &[ids[0].clone(), ids[1].clone(), robot.clone()],
    )
    .await;
    let cookie = f
        .sign_in(&f.browser(), "alice@acme.com", "alice")
        .await
        .session_cookie()
        .expect("cookie");
    assert_eq!(f.session(&cookie).await.1["role"], "member");
    f.admin
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "default",
            &json!({"rules": [{"equals": "eng", "role": "admin"}], "defaultRole": "viewer"}),
        )
        .await
        .expect("mapping changed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while audit(&f, "role_changed").await.len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "recompute never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(f.session(&cookie).await.1["role"], "admin");
    let changes = audit(&f, "role_changed").await;
    let to: Vec<&str> = changes
        .iter()
        .filter_map(|e| e.detail.as_ref()?["to"].as_str())
        .collect();
    assert_eq!(
        to.iter().filter(|r| **r == "admin").count(),
        3,
        "{changes:?}"
    );
    assert_eq!(
        to.iter().filter(|r| **r == "viewer").count(),
        1,
        "{changes:?}"
    );
    let robot = f.admin.member("acme", &robot).await.expect("the robot");
    assert_eq!(
        (robot.kind.as_str(), robot.role.as_deref()),
        ("ServiceAccount", Some("admin"))
    );
}

/// A role the IdP's own assertion gives (its `groups` at sign-in) survives a
/// SCIM change that recomputes the member without a sign-in: the recompute
/// decides on what the last sign-in asserted plus the directory as it is now.
async fn a_role_from_the_idp_survives_a_scim_change(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"]}),
        accounts(),
        Some(mapping()),
    )
    .await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    let cookie = f
        .sign_in(&f.browser(), "alice@acme.com", "alice")
        .await
        .session_cookie()
        .expect("cookie");
    // The IdP asserts `admins`; the directory has her in no group yet.
    assert_eq!(f.session(&cookie).await.1["role"], "admin");
    let group = scim_group(&f, &token, "engineering", std::slice::from_ref(&alice)).await;
    let leave = json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]);
    scim(
        &f,
        &token,
        reqwest::Method::PATCH,
        &format!("/Groups/{group}"),
        patch_op(leave),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        f.session(&cookie).await.1["role"],
        "admin",
        "two recomputes later"
    );
    let changes = audit(&f, "role_changed").await;
    assert_eq!(
        changes.len(),
        1,
        "only the sign-in moved her role: {changes:?}"
    );
}

/// Tecton's scheme, as `examples/tecton-okta.yaml` declares it.
pub(crate) fn tecton_assignments(managed_on: &[&str]) -> Value {
    let roles = ["owner", "editor", "consumer", "operator", "viewer"];
    json!({
        "types": [
            {"name": "account_type", "values": ["admin"]},
            {"name": "all_workspaces", "values": roles},
            {"prefix": "workspace_", "values": roles},
            {"prefix": "secret_scope_", "values": ["secret_scope_manager", "secret_scope_writer", "secret_scope_reader"]},
        ],
        "managedOn": managed_on,
    })
}

pub(crate) fn patch_op(operations: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
}

/// A session's assignments as `{type: value}`, once the check cache (1 s) has
/// let go of the previous answer.
async fn assignments_now(f: &SignInFixture, cookie: &str) -> BTreeMap<String, String> {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, session) = f.session(cookie).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session["assignments"]
        .as_array()
        .unwrap_or_else(|| panic!("no assignments in {session}"))
        .iter()
        .map(|a| {
            let text = |k: &str| a[k].as_str().expect("a string").to_string();
            (text("type"), text("value"))
        })
        .collect()
}

/// The Okta flow of Tecton's guide: a user pushed with `account_type` and
/// `workspace_prod`, changed through the filtered path, one assignment "Not
/// Mapped" away; a group's assignment inherited by its members and lost with
/// the membership; a value outside the declared list refused.
async fn role_assignments_follow_the_okta_flow(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"roleAssignments": tecton_assignments(&["users", "groups"])}}),
        json!({"alice": {"email": "alice@acme.com", "email_verified": true}}),
        None,
    )
    .await;
    let token = scim_token(&f).await;
    let alice = scim(&f, &token, reqwest::Method::POST, "/Users", json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@acme.com", "active": true,
        "roles": [{"type": "account_type", "value": "admin"}, {"type": "workspace_prod", "value": "viewer"}],
    }))
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = landing.session_cookie().expect("cookie");
    let mut want = BTreeMap::from([
        ("account_type".to_string(), "admin".to_string()),
        ("workspace_prod".to_string(), "viewer".to_string()),
    ]);
    assert_eq!(assignments_now(&f, &cookie).await, want);

    // Okta's app-profile mapping: roles.^[type=='workspace_prod'].value.
    let user = format!("/Users/{alice}");
    let set = json!([{"op": "replace", "path": "roles[type eq \"workspace_prod\"].value", "value": "editor"}]);
    scim(&f, &token, reqwest::Method::PATCH, &user, patch_op(set)).await;
    want.insert("workspace_prod".into(), "editor".into());
    assert_eq!(assignments_now(&f, &cookie).await, want);
    // "Not Mapped": Okta sends null.
    let unmap =
        json!([{"op": "replace", "path": "roles[type eq \"account_type\"].value", "value": null}]);
    scim(&f, &token, reqwest::Method::PATCH, &user, patch_op(unmap)).await;
    want.remove("account_type");
    assert_eq!(assignments_now(&f, &cookie).await, want);

    // A value outside the list, or an undeclared type: 400 invalidValue,
    // naming what is allowed, and nothing changes.
    let client = reqwest::Client::new();
    for (path, value, names) in [
        (
            "roles[type eq \"workspace_prod\"].value",
            "god",
            "owner, editor",
        ),
        (
            "roles[type eq \"favourite_colour\"].value",
            "blue",
            "workspace_*",
        ),
    ] {
        let r = client
            .patch(format!("{}/scim/v2/acme{user}", f.base))
            .bearer_auth(&token)
            .json(&patch_op(
                json!([{"op": "replace", "path": path, "value": value}]),
            ))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.expect("a SCIM error");
        assert_eq!(body["scimType"], "invalidValue", "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(names), "{detail}");
    }

    // A group's assignment applies to its members, the highest value winning,
    // and goes with the membership.
    let group = scim(&f, &token, reqwest::Method::POST, "/Groups", json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "prod-owners", "members": [{"value": alice}],
        "roles": [{"type": "workspace_prod", "value": "owner"}, {"type": "secret_scope_payments", "value": "secret_scope_reader"}],
    }))
    .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    want.insert("workspace_prod".into(), "owner".into());
    want.insert("secret_scope_payments".into(), "secret_scope_reader".into());
    assert_eq!(assignments_now(&f, &cookie).await, want);
    let leave = json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]);
    scim(
        &f,
        &token,
        reqwest::Method::PATCH,
        &format!("/Groups/{group}"),
        patch_op(leave),
    )
    .await;
    want.insert("workspace_prod".into(), "editor".into());
    want.remove("secret_scope_payments");
    assert_eq!(assignments_now(&f, &cookie).await, want);

    let changes = audit(&f, "assignment_changed").await;
    assert_eq!(changes.len(), 5, "one entry per move: {changes:?}");

    // What `idsync admin members get` shows, by userName or id.
    for who in ["Alice@acme.com", alice.as_str()] {
        let member = f.admin.member("acme", who).await.expect("the member");
        assert_eq!(member.id, alice);
        assert_eq!(member.role.as_deref(), Some("member"));
        let shown: BTreeMap<String, String> = member
            .assignments
            .into_iter()
            .map(|a| (a.kind, a.value))
            .collect();
        assert_eq!(shown, want);
        assert!(
            member.groups.is_empty(),
            "left prod-owners: {:?}",
            member.groups
        );
    }
    assert!(f.admin.member("acme", "nobody@acme.com").await.is_err());

    // Filters see a user's own assignments.
    let filter = "roles[type eq \"workspace_prod\" and value eq \"editor\"]";
    let filter: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let found = client
        .get(format!("{}/scim/v2/acme/Users?filter={filter}", f.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET")
        .json::<Value>()
        .await
        .expect("a list");
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], alice.as_str());
}

/// With role management off for groups (Okta cannot push a group's
/// assignments), a group's `roles` is ignored on write and gives nothing.
async fn group_roles_are_ignored_where_scim_may_not_manage_them(db: Db) {
    let f = SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"roleAssignments": tecton_assignments(&["users"])}}),
        json!({"alice": {"email": "alice@acme.com", "email_verified": true}}),
        None,
    )
    .await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    let group = scim(
        &f,
        &token,
        reqwest::Method::POST,
        "/Groups",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "prod-owners", "members": [{"value": alice}],
            "roles": [{"type": "workspace_prod", "value": "owner"}],
        }),
    )
    .await;
    assert!(group.get("roles").is_none(), "stored as sent: {group}");
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = landing.session_cookie().expect("cookie");
    assert_eq!(assignments_now(&f, &cookie).await, BTreeMap::new());
}

/// `GET /admin/v1/usage?since=`, which the operator polls to keep SCIMToken
/// and SSOConnection statuses fresh: the credentials presented and the
/// connections signed in through since a moment, and nothing after the last.
async fn usage_reports_what_was_used_since(db: Db) {
    let f = SignInFixture::start(db, json!({"domains": ["acme.com"]}), accounts(), None).await;
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let token = scim_token(&f).await;
    scim_user(&f, &token, "alice@acme.com").await;
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let usage = f.admin.usage(before).await.expect("usage");
    let id = idsync::token::parse_id(&token).expect("a token id");
    let tokens: Vec<(&str, &str)> = (usage.tokens.iter())
        .map(|t| (t.workspace.as_str(), t.id.as_str()))
        .collect();
    assert_eq!(tokens, [("acme", id)], "{usage:?}");
    let connections: Vec<(&str, &str)> = (usage.connections.iter())
        .map(|c| (c.workspace.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(connections, [("acme", "okta")], "{usage:?}");
    let last = (usage.tokens.iter().map(|t| t.last_used_at))
        .chain(usage.connections.iter().map(|c| c.last_success_at))
        .max()
        .expect("a moment");
    let after = f.admin.usage(last).await.expect("usage");
    assert!(
        after.tokens.is_empty() && after.connections.is_empty(),
        "{after:?}"
    );
}

on_both_databases!(
    usage_reports_what_was_used_since,
    oidc_sign_in_lands_with_the_mapped_role,
    scim_decides_who_may_sign_in,
    an_account_cannot_sign_in_as_another_persons_email,
    sessions_report_the_current_role_and_die_with_deprovisioning,
    a_mapping_change_recomputes_every_member,
    role_assignments_follow_the_okta_flow,
    a_role_from_the_idp_survives_a_scim_change,
    group_roles_are_ignored_where_scim_may_not_manage_them
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

/// IdP URLs a resource author or an IdP chose, answered the way an attacker
/// would answer them, against a separate `idsync serve`: every outbound
/// request goes through the guarded client.
mod hostile_idps {
    use std::{io::Write, time::Duration};

    use super::*;
    use support::{
        signin::FixtureOptions,
        stub::{Stub, memory_mib},
    };

    async fn fixture() -> SignInFixture {
        SignInFixture::start_with(
            Db::Sqlite,
            json!({"domains": ["acme.com"]}),
            accounts(),
            None,
            FixtureOptions {
                process: true,
                ..Default::default()
            },
        )
        .await
    }

    /// Adds an OIDC connection `evil` whose discovery document is at `url`.
    async fn connection_to(f: &SignInFixture, issuer: &str, url: &str) {
        f.admin
            .put_object(
                ObjectKind::SsoConnection,
                "acme",
                "evil",
                &json!({"protocol": "oidc", "domains": ["acme.com"], "oidc": {
                    "issuer": issuer, "discoveryUrl": url, "clientId": "x", "clientSecret": "y"}}),
            )
            .await
            .expect("connection stored");
    }

    async fn start(f: &SignInFixture) -> (StatusCode, String, Duration) {
        let started = std::time::Instant::now();
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/sso/acme/start?connection=evil", f.base))
            .send()
            .await
            .expect("start");
        let status = r.status();
        (
            status,
            r.text().await.unwrap_or_default(),
            started.elapsed(),
        )
    }

    fn log(f: &SignInFixture) -> String {
        std::fs::read_dir(f.db.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    /// A discovery URL that redirects to another local port: not followed.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let f = fixture().await;
        let target = Stub::probe();
        let location = target.url("/internal");
        let redirector = Stub::start(move |s| {
            let _ = write!(
                s,
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        });
        let issuer = format!("http://127.0.0.1:{}", redirector.port);
        connection_to(
            &f,
            &issuer,
            &redirector.url("/.well-known/openid-configuration"),
        )
        .await;
        let (status, page, _) = start(&f).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(page.contains("idp_unavailable"), "{page}");
        assert!(redirector.hits() >= 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(target.hits(), 0, "the redirect was followed");
        assert!(log(&f).contains("redirect"), "the log names the class");
    }

    /// A discovery document of 400 MB: read up to the cap, then dropped; the
    /// service's peak memory barely moves.
    #[tokio::test]
    async fn huge_answers_are_capped() {
        let f = fixture().await;
        let pid = f.service.pid().expect("a process");
        let (peak_before, _) = memory_mib(pid);
        let flood = Stub::start(|s| {
            // Chunked, so no Content-Length gives the size away.
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            );
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "a".repeat(1 << 20));
            for _ in 0..400 {
                if s.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        let issuer = format!("http://127.0.0.1:{}", flood.port);
        connection_to(&f, &issuer, &flood.url("/.well-known/openid-configuration")).await;
        let (status, page, took) = start(&f).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let (peak_after, _) = memory_mib(pid);
        assert!(
            peak_after - peak_before < 32.0,
            "peak resident memory went from {peak_before:.0} to {peak_after:.0} MiB"
        );
        assert!(
            log(&f).contains("answer larger than"),
            "the log names the class"
        );
    }

    /// The cloud metadata address is refused before any connection, whatever
    /// the document says.
    #[tokio::test]
    async fn metadata_addresses_are_refused() {
        let f = fixture().await;
        connection_to(
            &f,
            "https://169.254.169.254",
            "https://169.254.169.254/latest/meta-data/.well-known/openid-configuration",
        )
        .await;
        let (status, page, took) = start(&f).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(
            took < Duration::from_secs(2),
            "refused at once, not timed out: {took:?}"
        );
        assert!(log(&f).contains("address refused"), "{}", log(&f));
    }
}

/// What keeps the service up whoever connects: timeouts, caps and per-source
/// budgets, each tried against the real service.
mod limits {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        time::{Duration, Instant},
    };

    use super::*;
    use support::signin::FixtureOptions;

    async fn process_with(args: &[&str]) -> SignInFixture {
        SignInFixture::start_with(
            Db::Sqlite,
            json!({"domains": ["acme.com"]}),
            accounts(),
            None,
            FixtureOptions {
                process: true,
                serve_args: args.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
    }

    /// 40 connections that never finish their headers are closed by the
    /// service after the header-read timeout.
    #[tokio::test]
    async fn connections_that_never_finish_their_headers_are_closed() {
        let f = process_with(&["--header-read-timeout", "2s"]).await;
        let mut held: Vec<TcpStream> = (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", f.port)).expect("connect");
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .expect("partial headers");
                s.set_read_timeout(Some(Duration::from_secs(6)))
                    .expect("timeout");
                s
            })
            .collect();
        let started = Instant::now();
        // Closed (EOF, a reset, or a 408 before the close), not left waiting.
        let closed = tokio::task::spawn_blocking(move || {
            held.iter_mut()
                .map(|s| match s.read(&mut [0u8; 256]) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                })
                .filter(|closed| *closed)
                .count()
        })
        .await
        .expect("reads");
        assert_eq!(closed, 40, "connections still held");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the service held the connections for {:?}",
            started.elapsed()
        );
        assert!(f.service.is_running());
        assert!(
            reqwest::get(format!("{}/healthz", f.base))
                .await
                .expect("healthz")
                .status()
                .is_success()
        );
    }

    /// A request that trickles in holds its slot only until the request
    /// timeout, and requests beyond the cap are answered 503 at once.
    #[tokio::test]
    async fn requests_in_flight_are_capped_and_timed_out() {
        let f = process_with(&["--max-concurrent-requests", "2", "--request-timeout", "2s"]).await;
        let slow = |port: u16| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            write!(
                s,
                "PUT /admin/v1/workspaces/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                support::ADMIN_TOKEN
            )
            .expect("headers");
            s.set_read_timeout(Some(Duration::from_secs(8)))
                .expect("timeout");
            s
        };
        let mut held = [slow(f.port), slow(f.port)];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = reqwest::get(format!("{}/healthz", f.base))
            .await
            .expect("healthz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("retry-after"));
        let started = Instant::now();
        let answers = tokio::task::spawn_blocking(move || {
            held.iter_mut()
                .map(|s| {
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).unwrap_or(0);
                    String::from_utf8_lossy(&buf[..n]).to_string()
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("reads");
        for a in &answers {
            assert!(a.starts_with("HTTP/1.1 503"), "{a:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let r = reqwest::get(format!("{}/healthz", f.base))
            .await
            .expect("healthz");
        assert!(r.status().is_success(), "slots are free again");
    }

    /// `/metrics` on a listener of its own leaves the public port.
    #[tokio::test]
    async fn metrics_can_leave_the_public_port() {
        let port = support::cluster::free_port();
        let f = process_with(&["--metrics-listen", &format!("127.0.0.1:{port}")]).await;
        let public = reqwest::get(format!("{}/metrics", f.base))
            .await
            .expect("metrics");
        assert_eq!(public.status(), StatusCode::NOT_FOUND);
        let own = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("metrics");
        assert_eq!(own.status(), StatusCode::OK);
        assert!(
            own.text()
                .await
                .unwrap()
                .contains("idsync_http_requests_total")
        );
    }

    /// Failed authentications from one source: 401s, then 429 with
    /// Retry-After and an RFC 7644 body even for a good token, and one
    /// aggregated audit entry with the count instead of one per failure.
    #[tokio::test]
    async fn failed_authentications_are_rate_limited_and_audited_in_aggregate() {
        let f = SignInFixture::start(
            Db::Sqlite,
            json!({"domains": ["acme.com"]}),
            accounts(),
            None,
        )
        .await;
        let good = scim_token(&f).await;
        let users = format!("{}/scim/v2/acme/Users", f.base);
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        for _ in 0..31 {
            let r = client
                .get(&users)
                .bearer_auth("scim_wrong.token")
                .send()
                .await
                .expect("SCIM");
            statuses.push(r.status());
        }
        assert!(
            statuses[..30]
                .iter()
                .all(|s| *s == StatusCode::UNAUTHORIZED),
            "{statuses:?}"
        );
        assert_eq!(statuses[30], StatusCode::TOO_MANY_REQUESTS);
        let r = client
            .get(&users)
            .bearer_auth(&good)
            .send()
            .await
            .expect("SCIM");
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "the source is not even checked"
        );
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.expect("SCIM error body");
        assert_eq!(body["status"], "429");
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        // The admin API shares the source's failure budget.
        let admin = client
            .get(format!("{}/admin/v1/workspaces", f.base))
            .bearer_auth("wrong-admin-token")
            .send()
            .await
            .expect("admin");
        assert_eq!(admin.status(), StatusCode::TOO_MANY_REQUESTS);
        // This source may not call the admin API either now: read the log
        // through the service itself.
        f.service.flush_audit().await;
        let support::signin::ServiceUnderTest::InProcess(service) = &f.service else {
            unreachable!("in process")
        };
        let failures = service
            .state
            .admin
            .audit(&idsync::service::store::AuditFilter {
                workspace: Some("acme".into()),
                action: Some("scim.unauthorized".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("audit");
        assert_eq!(failures.len(), 1, "{failures:?}");
        let detail = failures[0].detail.as_ref().expect("detail");
        assert_eq!(detail["count"], 30, "{detail}");
        assert_eq!(detail["source"], "127.0.0.1");
    }

    /// Unauthenticated sign-in traffic from one source runs out of budget.
    #[tokio::test]
    async fn unauthenticated_sign_in_traffic_is_rate_limited() {
        let f = SignInFixture::start(
            Db::Sqlite,
            json!({"domains": ["acme.com"]}),
            accounts(),
            None,
        )
        .await;
        let url = format!("{}/sso/acme/discover?email=a@acme.com", f.base);
        let client = reqwest::Client::new();
        let mut limited = None;
        for i in 0..400 {
            let r = client.get(&url).send().await.expect("discover");
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                limited = Some((i, r.headers().get("retry-after").cloned()));
                break;
            }
        }
        let (after, retry) = limited.expect("the budget ran out");
        assert!(
            after >= 200,
            "the burst of 200 is allowed: limited after {after}"
        );
        assert!(retry.is_some());
        // Session checks by a product's backend are budgeted apart.
        assert_eq!(f.session("not-a-cookie").await.0, StatusCode::UNAUTHORIZED);
    }

    /// The audit log's retention and expired sign-in state are pruned.
    #[tokio::test]
    async fn old_audit_entries_and_expired_sign_in_state_are_pruned() {
        let f = SignInFixture::start(
            Db::Sqlite,
            json!({"domains": ["acme.com"]}),
            accounts(),
            None,
        )
        .await;
        assert!(
            !f.admin
                .audit("workspace=acme")
                .await
                .expect("audit")
                .is_empty()
        );
        let support::signin::ServiceUnderTest::InProcess(service) = &f.service else {
            unreachable!("in process")
        };
        let store = service.state.admin.store();
        idsync::service::maintenance::prune_once(store, Duration::ZERO).await;
        assert!(
            f.admin
                .audit("workspace=acme")
                .await
                .expect("audit")
                .is_empty()
        );
    }
}
