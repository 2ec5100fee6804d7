//! Service accounts over SCIM and API keys: a key answers `/sso/session` as
//! a session does, and SCIM deprovisioning kills it on the next check.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};

use serde_json::{Value, json};

use crate::{
    on_both_databases,
    signin::{
        accounts, audit, mapping, patch_op, scim, scim_group, scim_token, scim_user,
        tecton_assignments,
    },
    support::{Db, signin::SignInFixture},
};
use idsync::admin::ApiKeyRequest;

const SERVICE_ACCOUNT: &str = "urn:idsync:params:scim:schemas:core:1.0:ServiceAccount";

async fn scim_get(f: &SignInFixture, token: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}/scim/v2/acme{path}", f.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("SCIM GET");
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.expect("SCIM body")
}

/// `GET /sso/session` with `Authorization: Bearer <credential>`.
async fn check(f: &SignInFixture, bearer: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}/sso/session", f.base))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("session check");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assignments(answer: &Value) -> BTreeMap<String, String> {
    answer["assignments"]
        .as_array()
        .unwrap_or_else(|| panic!("no assignments in {answer}"))
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or_default().into(),
                a["value"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

async fn admin_key(
    f: &SignInFixture,
    principal: &str,
    name: &str,
) -> idsync::admin::IssuedApiKeyView {
    let req = ApiKeyRequest {
        principal: Some(principal.into()),
        name: name.into(),
        expires_at: None,
    };
    f.admin.issue_api_key("acme", &req).await.expect("a key")
}

fn workspace() -> Value {
    json!({"domains": ["acme.com"], "policy": {"roleAssignments": tecton_assignments(&["users", "groups", "serviceAccounts"])}})
}

/// A service account created over SCIM, put in a group, given a key; the
/// key answers `/sso/session` with the group's role and the assignments;
/// deactivating the account over SCIM makes the key fail on the next check,
/// and reactivating it does not bring the key back.
async fn a_service_account_key_lives_and_dies_with_the_account(db: Db) {
    let f = SignInFixture::start(db, workspace(), accounts(), Some(mapping())).await;
    let token = scim_token(&f).await;

    // Discoverable as a resource type with our schema.
    let types = scim_get(&f, &token, "/ResourceTypes").await;
    let listed = types["Resources"].as_array().expect("resource types");
    let sa = listed
        .iter()
        .find(|t| t["id"] == "ServiceAccount")
        .unwrap_or_else(|| panic!("no ServiceAccount in {types}"));
    assert_eq!(sa["endpoint"], "/ServiceAccounts");
    assert_eq!(sa["schema"], SERVICE_ACCOUNT);
    let schema = scim_get(&f, &token, &format!("/Schemas/{SERVICE_ACCOUNT}")).await;
    let names: Vec<&str> = schema["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    for want in ["displayName", "description", "active", "roles", "groups"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }

    let created = scim(
        &f,
        &token,
        Method::POST,
        "/ServiceAccounts",
        json!({
            "schemas": [SERVICE_ACCOUNT], "displayName": "ci-deployer", "externalId": "okta-sa-1",
            "description": "deploys from CI", "active": true,
            "roles": [{"type": "workspace_prod", "value": "operator"}],
        }),
    )
    .await;
    let sa_id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["meta"]["resourceType"], "ServiceAccount");
    assert_eq!(created["schemas"], json!([SERVICE_ACCOUNT]));
    // No displayName: refused like a group without one.
    let r = reqwest::Client::new()
        .post(format!("{}/scim/v2/acme/ServiceAccounts", f.base))
        .bearer_auth(&token)
        .json(&json!({"schemas": [SERVICE_ACCOUNT], "description": "nameless"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let group = scim_group(&f, &token, "admins", std::slice::from_ref(&sa_id)).await;
    let g = scim_get(&f, &token, &format!("/Groups/{group}")).await;
    assert_eq!(g["members"][0]["type"], "ServiceAccount", "{g}");
    assert!(
        g["members"][0]["$ref"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/ServiceAccounts/{sa_id}"))
    );
    let read = scim_get(&f, &token, &format!("/ServiceAccounts/{sa_id}")).await;
    assert_eq!(read["groups"][0]["display"], "admins", "{read}");
    let filter: String =
        url::form_urlencoded::byte_serialize(b"displayName eq \"CI-Deployer\"").collect();
    let found = scim_get(&f, &token, &format!("/ServiceAccounts?filter={filter}")).await;
    assert_eq!(found["totalResults"], 1, "{found}");

    let issued = admin_key(&f, &sa_id, "deploys").await;
    assert!(issued.key.starts_with("idsync_key_"));
    assert!(
        issued.view.issued_by.starts_with("admin/"),
        "{:?}",
        issued.view
    );
    let (status, answer) = check(&f, &issued.key).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["principalType"], "ServiceAccount");
    assert_eq!(answer["userId"], sa_id.as_str());
    assert_eq!(
        answer["role"], "admin",
        "the admins group maps to admin: {answer}"
    );
    assert_eq!(answer["keyId"], issued.view.id.as_str());
    assert_eq!(
        assignments(&answer),
        BTreeMap::from([("workspace_prod".into(), "operator".into())])
    );
    let member = f
        .admin
        .member("acme", &sa_id)
        .await
        .expect("the service account");
    assert_eq!(member.kind, "ServiceAccount");
    assert_eq!(member.groups, vec!["admins".to_string()]);

    // A key one character off, or of the right shape but unknown: refused.
    let mut forged = issued.key.clone();
    let last = forged.pop().expect("a character");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(check(&f, &forged).await.0, StatusCode::UNAUTHORIZED);

    let off = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    scim(
        &f,
        &token,
        Method::PATCH,
        &format!("/ServiceAccounts/{sa_id}"),
        off,
    )
    .await;
    assert_eq!(check(&f, &issued.key).await.0, StatusCode::UNAUTHORIZED);
    let gone = audit(&f, "service_account_deprovisioned").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    let detail = gone[0].detail.as_ref().expect("detail");
    assert_eq!(detail["keysRevoked"], 1, "{detail}");
    assert_eq!(detail["displayName"], "ci-deployer", "{detail}");
    let on = patch_op(json!([{"op": "replace", "path": "active", "value": true}]));
    scim(
        &f,
        &token,
        Method::PATCH,
        &format!("/ServiceAccounts/{sa_id}"),
        on,
    )
    .await;
    assert_eq!(
        check(&f, &issued.key).await.0,
        StatusCode::UNAUTHORIZED,
        "revoked keys stay revoked"
    );
    let keys = f
        .admin
        .list_api_keys("acme", Some(&sa_id))
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].valid && keys[0].revoked_at.is_some(), "{keys:?}");
}

/// A person's own key ("personal access token"), issued with their session,
/// and a key an administrator issued them: both, and the session, dead on
/// the next check after SCIM deactivates the person.
async fn a_users_keys_and_session_die_with_deactivation(db: Db) {
    let f = SignInFixture::start(db, workspace(), accounts(), Some(mapping())).await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    let cookie = f
        .sign_in(&f.browser(), "alice@acme.com", "alice")
        .await
        .session_cookie()
        .expect("cookie");
    let http = reqwest::Client::new();
    let keys_url = format!("{}/sso/keys", f.base);
    let with_session =
        |req: reqwest::RequestBuilder| req.header("cookie", format!("idsync_session={cookie}"));

    let r = with_session(http.post(&keys_url))
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .expect("POST /sso/keys");
    assert_eq!(r.status(), StatusCode::CREATED);
    let own: Value = r.json().await.expect("the key");
    let own_key = own["key"].as_str().expect("key").to_string();
    assert_eq!(own["issuedBy"], "self");
    assert_eq!(own["principalId"], alice.as_str());
    let expires: jiff::Timestamp = own["expiresAt"]
        .as_str()
        .expect("an expiry")
        .parse()
        .expect("a time");
    let days = (expires - jiff::Timestamp::now())
        .total(jiff::Unit::Hour)
        .expect("hours")
        / 24.0;
    assert!(
        (89.0..=90.0).contains(&days),
        "self-issued keys default to 90 days: {days}"
    );

    // What a self-service key request may not do.
    let refused = [
        (
            with_session(http.post(&keys_url))
                .json(&json!({"name": "x", "principal": "bob@acme.com"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with_session(http.post(&keys_url))
                .json(&json!({"name": "x", "expiresAt": "2099-01-01T00:00:00Z"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            with_session(http.post(&keys_url)).json(&json!({"name": ""})),
            StatusCode::BAD_REQUEST,
        ),
        // A form another site could post: not JSON, so no key.
        (
            with_session(http.post(&keys_url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        // A key cannot mint its successor.
        (
            http.post(&keys_url)
                .bearer_auth(&own_key)
                .json(&json!({"name": "x"})),
            StatusCode::FORBIDDEN,
        ),
        (
            http.post(&keys_url).json(&json!({"name": "x"})),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (req, want) in refused {
        let r = req.send().await.expect("POST /sso/keys");
        assert_eq!(r.status(), want);
        let body: Value = r.json().await.expect("a JSON error");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    let (status, answer) = check(&f, &own_key).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["principalType"], "User");
    assert_eq!(answer["userName"], "alice@acme.com");
    let by_admin = admin_key(&f, "Alice@acme.com", "batch job").await;
    assert_eq!(by_admin.view.principal_id, alice);
    assert_eq!(check(&f, &by_admin.key).await.0, StatusCode::OK);

    // A person lists and revokes their own keys, and no one else's.
    let r = with_session(http.post(&keys_url))
        .json(&json!({"name": "spare"}))
        .send()
        .await
        .expect("POST");
    let spare: Value = r.json().await.expect("the key");
    let mine: Value = with_session(http.get(&keys_url))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("list");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(3), "{mine}");
    let spare_id = spare["id"].as_str().expect("id");
    let r = with_session(http.delete(format!("{keys_url}/{spare_id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        check(&f, spare["key"].as_str().expect("key")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let bob = scim_user(&f, &token, "bob@acme.com").await;
    let bobs = admin_key(&f, &bob, "bob's").await;
    let r = with_session(http.delete(format!("{keys_url}/{}", bobs.view.id)))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        check(&f, &bobs.key).await.0,
        StatusCode::OK,
        "bob's key is not alice's to revoke"
    );

    let off = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    scim(&f, &token, Method::PATCH, &format!("/Users/{alice}"), off).await;
    assert_eq!(check(&f, &own_key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(check(&f, &by_admin.key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(f.session(&cookie).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        check(&f, &bobs.key).await.0,
        StatusCode::OK,
        "bob is still active"
    );
    let issued = audit(&f, "api-key.issued").await;
    assert_eq!(issued.len(), 4, "{issued:?}");
}

/// An expired key fails; an admin cannot issue for no one, nor a key that
/// is already expired.
async fn expired_and_orphan_keys_are_refused(db: Db) {
    let f = SignInFixture::start(db, workspace(), accounts(), None).await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    let soon = ApiKeyRequest {
        principal: Some(alice.clone()),
        name: "short".into(),
        expires_at: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_millis(800)),
    };
    let key = f.admin.issue_api_key("acme", &soon).await.expect("a key");
    assert_eq!(check(&f, &key.key).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(check(&f, &key.key).await.0, StatusCode::UNAUTHORIZED);

    let past = ApiKeyRequest {
        expires_at: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)),
        ..soon.clone()
    };
    let e = f
        .admin
        .issue_api_key("acme", &past)
        .await
        .expect_err("already expired");
    assert!(e.to_string().contains("future"), "{e}");
    let nobody = ApiKeyRequest {
        principal: Some("nobody@acme.com".into()),
        ..soon
    };
    let e = f
        .admin
        .issue_api_key("acme", &nobody)
        .await
        .expect_err("no such principal");
    assert!(e.to_string().contains("404"), "{e}");
    // A group is not a principal.
    let group = scim_group(&f, &token, "engineering", &[]).await;
    let e = f
        .admin
        .issue_api_key(
            "acme",
            &ApiKeyRequest {
                principal: Some(group),
                name: "g".into(),
                expires_at: None,
            },
        )
        .await
        .expect_err("a group");
    assert!(e.to_string().contains("404"), "{e}");

    // One principal holds at most 100 live keys; revoking one makes room.
    let carol = scim_user(&f, &token, "carol@acme.com").await;
    let mut first = None;
    for i in 0..idsync::service::store::MAX_LIVE_KEYS {
        let issued = admin_key(&f, &carol, &format!("k{i}")).await;
        first.get_or_insert(issued.view.id);
    }
    let req = ApiKeyRequest {
        principal: Some(carol.clone()),
        name: "one too many".into(),
        expires_at: None,
    };
    let e = f
        .admin
        .issue_api_key("acme", &req)
        .await
        .expect_err("a cap");
    assert!(e.to_string().contains("revoke one first"), "{e}");
    let first = first.expect("a key");
    f.admin
        .revoke_api_key("acme", &first)
        .await
        .expect("revoked");
    f.admin
        .issue_api_key("acme", &req)
        .await
        .expect("room again");

    // Deleting the workspace with everything in it kills its keys.
    let last = admin_key(&f, &alice, "last").await;
    assert_eq!(check(&f, &last.key).await.0, StatusCode::OK);
    f.admin
        .delete_object(
            idsync::service::store::ObjectKind::Workspace,
            "acme",
            "acme",
            true,
        )
        .await
        .expect("cascade");
    assert_eq!(check(&f, &last.key).await.0, StatusCode::UNAUTHORIZED);
}

on_both_databases!(
    a_service_account_key_lives_and_dies_with_the_account,
    a_users_keys_and_session_die_with_deactivation,
    expired_and_orphan_keys_are_refused,
);
