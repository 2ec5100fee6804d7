//! `policy.accessGroups`: only members of the declared directory groups may
//! use the workspace. Leaving the last one deactivates a member at once
//! (sessions and keys revoked), joining one restores them with the role the
//! mapping gives, and a group rename or delete counts.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    on_both_databases,
    signin::{accounts, audit, patch_op, scim, scim_group, scim_token, scim_user},
    support::{Db, signin::SignInFixture},
};
use idsync::{admin::ApiKeyRequest, service::store::ObjectKind};

fn workspace(access_groups: Value) -> Value {
    json!({"domains": ["acme.com"], "policy": {"accessGroups": access_groups}})
}

/// `GET /sso/session` with `Authorization: Bearer <credential>`.
async fn check_key(f: &SignInFixture, key: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/sso/session", f.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("key check")
        .status()
}

async fn key_for(f: &SignInFixture, principal: &str) -> String {
    let req = ApiKeyRequest {
        principal: Some(principal.into()),
        name: "ci".into(),
        expires_at: None,
    };
    f.admin
        .issue_api_key("acme", &req)
        .await
        .expect("a key")
        .key
}

async fn member(f: &SignInFixture, who: &str) -> idsync::admin::MemberView {
    f.admin.member("acme", who).await.expect("a member")
}

/// Provisioned, joining, leaving, rejoining through a prefix, and what a
/// token's own groups claim cannot do.
async fn access_follows_the_directory_groups(db: Db) {
    let f = SignInFixture::start(
        db,
        workspace(json!([{"name": "Engineering"}, {"prefix": "app-idsync-"}])),
        accounts(),
        Some(json!({"rules": [{"equals": "app-idsync-admins", "role": "admin"}]})),
    )
    .await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    assert!(member(&f, &alice).await.access_revoked_at.is_some());
    // Alice's ID token says `groups: [engineering, admins]`: what an IdP
    // asserts at sign-in is not the directory, and grants no access.
    let refused = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("not_in_access_group"),
        "{}",
        refused.body
    );
    // Bob was never provisioned: just-in-time creation does not get him in.
    let bob = f.sign_in(&f.browser(), "bob@acme.com", "bob").await;
    assert_eq!(bob.status, StatusCode::FORBIDDEN, "{}", bob.body);

    // The IdP adds her to the group (names compare case-insensitively).
    let eng = scim_group(&f, &token, "engineering", std::slice::from_ref(&alice)).await;
    let granted = audit(&f, "user_access_granted").await;
    assert_eq!(granted.len(), 1, "{granted:?}");
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
    let cookie = landing.session_cookie().expect("a session");
    let key = key_for(&f, &alice).await;
    assert_eq!(f.session(&cookie).await.0, StatusCode::OK);
    assert_eq!(check_key(&f, &key).await, StatusCode::OK);

    // Removed from the group: deactivated at once, this replica's cache too.
    let remove = json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]);
    scim(
        &f,
        &token,
        Method::PATCH,
        &format!("/Groups/{eng}"),
        patch_op(remove),
    )
    .await;
    assert_eq!(f.session(&cookie).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(check_key(&f, &key).await, StatusCode::UNAUTHORIZED);
    let revoked = audit(&f, "user_access_revoked").await;
    let detail = revoked[0].detail.clone().expect("detail");
    assert_eq!(detail["reason"], "not_in_access_group", "{detail}");
    assert_eq!(
        (
            detail["sessionsRevoked"].as_u64(),
            detail["keysRevoked"].as_u64()
        ),
        (Some(1), Some(1)),
        "{detail}"
    );
    // SCIM shows what the IdP set, so the IdP sees no drift to "fix".
    let user: Value = reqwest::Client::new()
        .get(format!("{}/scim/v2/acme/Users/{alice}", f.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("SCIM GET")
        .json()
        .await
        .expect("a user");
    assert_eq!(user["active"], true, "{user}");
    // A revoked key stays dead when access comes back.
    let admins = scim_group(
        &f,
        &token,
        "app-idsync-admins",
        std::slice::from_ref(&alice),
    )
    .await;
    let back = member(&f, &alice).await;
    assert_eq!(
        (back.access_revoked_at, back.role.as_deref()),
        (None, Some("admin"))
    );
    assert_eq!(check_key(&f, &key).await, StatusCode::UNAUTHORIZED);
    let again = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = again.session_cookie().expect("a session");
    assert_eq!(f.session(&cookie).await.1["role"], "admin");

    // A rename out of the family counts; a rename back too; so does a delete.
    let rename = |name: &str| json!([{"op": "replace", "path": "displayName", "value": name}]);
    let path = format!("/Groups/{admins}");
    scim(
        &f,
        &token,
        Method::PATCH,
        &path,
        patch_op(rename("former-admins")),
    )
    .await;
    assert_eq!(f.session(&cookie).await.0, StatusCode::UNAUTHORIZED);
    scim(
        &f,
        &token,
        Method::PATCH,
        &path,
        patch_op(rename("app-idsync-admins")),
    )
    .await;
    assert!(member(&f, &alice).await.access_revoked_at.is_none());
    let gone = reqwest::Client::new()
        .delete(format!("{}/scim/v2/acme{path}", f.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert!(member(&f, &alice).await.access_revoked_at.is_some());
    assert_eq!(audit(&f, "user_access_revoked").await.len(), 3);
}

/// Access is separate from `active`: a member the IdP deactivated stays
/// deactivated in an access group, service accounts need no group, and a
/// workspace that stops declaring access groups lets everyone back.
async fn access_groups_and_the_rest_of_the_lifecycle(db: Db) {
    let f = SignInFixture::start(
        db,
        workspace(json!([{"name": "engineering"}])),
        accounts(),
        None,
    )
    .await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    let deactivate = json!([{"op": "replace", "path": "active", "value": false}]);
    scim(
        &f,
        &token,
        Method::PATCH,
        &format!("/Users/{alice}"),
        patch_op(deactivate),
    )
    .await;
    scim_group(&f, &token, "engineering", std::slice::from_ref(&alice)).await;
    let refused = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    assert!(refused.body.contains("deprovisioned"), "{}", refused.body);

    let robot = scim(
        &f,
        &token,
        Method::POST,
        "/ServiceAccounts",
        json!({"schemas": ["urn:idsync:params:scim:schemas:core:1.0:ServiceAccount"],
               "displayName": "deployer"}),
    )
    .await;
    let robot = robot["id"].as_str().expect("id").to_string();
    assert_eq!(
        check_key(&f, &key_for(&f, &robot).await).await,
        StatusCode::OK
    );

    let bob = scim_user(&f, &token, "bob@acme.com").await;
    assert!(member(&f, &bob).await.access_revoked_at.is_some());
    f.admin
        .put_object(ObjectKind::Workspace, "acme", "acme", &workspace(json!([])))
        .await
        .expect("access groups dropped");
    // The policy change recomputes the workspace in the background.
    let mut waited = 0;
    while member(&f, &bob).await.access_revoked_at.is_some() {
        assert!(waited < 100, "bob never got access back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let landing = f.sign_in(&f.browser(), "bob@acme.com", "bob").await;
    assert_eq!(landing.status, StatusCode::SEE_OTHER, "{}", landing.body);
}

/// The admin API refuses an entry that is neither a name nor a prefix.
async fn a_malformed_access_group_is_refused(db: Db) {
    let f = SignInFixture::start(db, workspace(json!([])), accounts(), None).await;
    for bad in [
        json!([{}]),
        json!([{"name": "a", "prefix": "b"}]),
        json!([{"name": ""}]),
    ] {
        let e = f
            .admin
            .put_object(
                ObjectKind::Workspace,
                "acme",
                "acme",
                &workspace(bad.clone()),
            )
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("accessGroups"), "{bad}: {e}");
    }
}

on_both_databases!(
    access_follows_the_directory_groups,
    access_groups_and_the_rest_of_the_lifecycle,
    a_malformed_access_group_is_refused
);
