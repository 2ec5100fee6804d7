//! SCIM over HTTP Basic (One Model's guide: a client ID as the username, a
//! client secret as the password), beside bearer tokens, each credential
//! accepted only the way it was registered.

use base64::{Engine, engine::general_purpose::STANDARD};
use idsync::{
    admin::ScimTokenDoc,
    api::ScimAuthentication,
    token::{self, GeneratedToken},
};
use reqwest::{Method, StatusCode, header::WWW_AUTHENTICATE};
use serde_json::{Value, json};

use crate::{
    on_both_databases,
    support::{Db, scim::ScimFixture},
};

pub(crate) async fn register_basic(f: &ScimFixture) -> GeneratedToken {
    let credential = token::generate().expect("random");
    let doc = ScimTokenDoc {
        name: "one-model".into(),
        authentication: Some(ScimAuthentication::Basic),
        sha256: Some(credential.hash()),
        expires_at: None,
    };
    let view = f
        .admin
        .put_token("acme", &credential.id, &doc)
        .await
        .expect("registered");
    assert_eq!(view.authentication, ScimAuthentication::Basic);
    credential
}

/// A request with a raw `Authorization` header value.
async fn with_authorization(f: &ScimFixture, value: &str) -> (StatusCode, Value, Vec<String>) {
    let r = f
        .http
        .get(format!("{}/Users", f.base()))
        .header("authorization", value)
        .send()
        .await
        .expect("GET /Users");
    let challenges = r
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null), challenges)
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn scim_accepts_http_basic_and_refuses_every_mismatch(db: Db) {
    let f = ScimFixture::start(db, json!({"domains": ["acme.com"]})).await;
    let schemes = |config: &Value| -> Vec<String> {
        config["authenticationSchemes"]
            .as_array()
            .expect("schemes")
            .iter()
            .filter_map(|s| s["type"].as_str().map(str::to_string))
            .collect()
    };
    let config = f
        .call(Method::GET, "/ServiceProviderConfig", None)
        .await
        .body;
    assert_eq!(schemes(&config), ["oauthbearertoken"]);

    let credential = register_basic(&f).await;
    let (id, secret) = (credential.id.as_str(), credential.expose());
    let (status, list, _) = with_authorization(&f, &basic(id, secret)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let created = f
        .http
        .post(format!("{}/Users", f.base()))
        .basic_auth(id, Some(secret))
        .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@acme.com"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), StatusCode::CREATED);
    let config = f
        .call(Method::GET, "/ServiceProviderConfig", None)
        .await
        .body;
    assert_eq!(schemes(&config), ["oauthbearertoken", "httpbasic"]);

    // Every way to get it wrong is the same plain 401 with a SCIM body.
    let stranger = token::generate().expect("random");
    let mut wrong_secret = secret.to_string();
    let last = wrong_secret.pop().expect("a character");
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    let refused = [
        ("a wrong secret", basic(id, &wrong_secret)),
        (
            "an unknown client id",
            basic(&stranger.id, stranger.expose()),
        ),
        ("another client's id", basic(&stranger.id, secret)),
        (
            "the Basic secret as a bearer token",
            format!("Bearer {secret}"),
        ),
        (
            "the bearer token as Basic",
            basic(token::parse_id(&f.token).expect("id"), &f.token),
        ),
        ("no colon", format!("Basic {}", STANDARD.encode(secret))),
        ("not base64", "Basic !!!".to_string()),
    ];
    for (what, header) in refused {
        let (status, body, challenges) = with_authorization(&f, &header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{what}"
        );
        assert_eq!(body["status"], "401", "{what}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains(secret) && !detail.contains(id),
            "{what}: {detail}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic")),
            "{challenges:?}"
        );
    }

    // Revoked: refused from then on, and no longer advertised.
    f.admin.revoke_token("acme", id).await.expect("revoked");
    assert_eq!(
        with_authorization(&f, &basic(id, secret)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let config = f
        .call(Method::GET, "/ServiceProviderConfig", None)
        .await
        .body;
    assert_eq!(schemes(&config), ["oauthbearertoken"]);
    // A registered id keeps its scheme: re-registering it as bearer is refused.
    let again = ScimTokenDoc {
        name: "one-model".into(),
        authentication: Some(ScimAuthentication::Bearer),
        sha256: Some(credential.hash()),
        expires_at: None,
    };
    assert!(f.admin.put_token("acme", id, &again).await.is_err());
    f.stop().await;
}

on_both_databases!(scim_accepts_http_basic_and_refuses_every_mismatch);
