//! ID-token validation against forged, stale and confused tokens.
//!
//! A real IdP never mints these, so this is the one place a stand-in is right:
//! a key set served over HTTP on 127.0.0.1 (counting fetches) and tokens signed
//! here with test keys. The full sign-in against a real IdP is `tests/service/signin.rs`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use idsync::{
    admin::OidcDoc,
    service::sso::{
        error::Reason,
        oidc::{Discovery, OidcClient},
    },
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.test";
const CLIENT: &str = "idsync-client";
const NONCE: &str = "nonce-of-this-sign-in";

struct KeySetServer {
    jwks_uri: String,
    fetches: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone)]
struct Served {
    fetches: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Value>>>,
}

async fn jwks(State(s): State<Served>) -> Json<Value> {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = s.keys.lock().expect("test lock").clone();
    Json(json!({ "keys": keys }))
}

impl KeySetServer {
    async fn start(keys: Vec<Value>) -> Self {
        let served = Served {
            fetches: Arc::new(AtomicUsize::new(0)),
            keys: Arc::new(Mutex::new(keys)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = Router::new()
            .route("/jwks", get(jwks))
            .with_state(served.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            jwks_uri: format!("http://{addr}/jwks"),
            fetches: served.fetches,
            keys: served.keys,
        }
    }

    fn discovery(&self) -> Discovery {
        Discovery {
            issuer: ISSUER.into(),
            authorization_endpoint: format!("{ISSUER}/auth"),
            token_endpoint: format!("{ISSUER}/token"),
            jwks_uri: self.jwks_uri.clone(),
            userinfo_endpoint: None,
        }
    }
}

fn rsa_key(file: &str) -> EncodingKey {
    let pem = std::fs::read(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR")))
        .expect("test key");
    EncodingKey::from_rsa_pem(&pem).expect("an RSA key")
}

fn public_jwk(key: &EncodingKey, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).expect("a JWK");
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).expect("JSON")
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": CLIENT, "sub": "00u1", "email": "alice@acme.com",
        "iat": now(), "exp": now() + 300, "nonce": NONCE,
    })
}

fn sign(key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn config() -> OidcDoc {
    OidcDoc {
        issuer: ISSUER.into(),
        client_id: CLIENT.into(),
        ..Default::default()
    }
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

async fn reason_of(client: &OidcClient, d: &Discovery, token: &str) -> Option<Reason> {
    client
        .validate_id_token(d, &config(), token, NONCE, now())
        .await
        .err()
        .map(|e| e.reason)
}

#[tokio::test]
async fn forged_stale_and_confused_tokens_are_refused_with_their_reason() {
    let key = rsa_key("jwt-signing.pem");
    let attacker = rsa_key("jwt-attacker.pem");
    let server = KeySetServer::start(vec![public_jwk(&key, "k1")]).await;
    let d = server.discovery();
    let client = OidcClient::new(idsync::outbound::Guarded::with_defaults());

    let good = sign(&key, Some("k1"), &claims());
    let ok = client
        .validate_id_token(&d, &config(), &good, NONCE, now())
        .await
        .expect("a valid token is accepted");
    assert_eq!(ok["email"], "alice@acme.com");

    // A signature over other claims: the payload swapped after signing.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload =
        URL_SAFE_NO_PAD.encode(with(claims(), "email", json!("mallory@acme.com")).to_string());
    parts[1] = &forged_payload;
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "tampered payload",
            parts.join("."),
            Reason::InvalidSignature,
        ),
        (
            "signed by another key under the IdP's kid",
            sign(&attacker, Some("k1"), &claims()),
            Reason::InvalidSignature,
        ),
        (
            "another client's token",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "aud", json!("someone-else")),
            ),
            Reason::WrongAudience,
        ),
        (
            "another issuer",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "iss", json!("https://evil.example")),
            ),
            Reason::WrongIssuer,
        ),
        (
            "expired an hour ago",
            sign(
                &key,
                Some("k1"),
                &with(
                    with(claims(), "exp", json!(now() - 3600)),
                    "iat",
                    json!(now() - 3700),
                ),
            ),
            Reason::Expired,
        ),
        (
            "not valid before tomorrow",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "nbf", json!(now() + 86_400)),
            ),
            Reason::NotYetValid,
        ),
        (
            "issued in the future",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "iat", json!(now() + 3600)),
            ),
            Reason::NotYetValid,
        ),
        (
            "minted for another sign-in",
            sign(&key, Some("k1"), &with(claims(), "nonce", json!("other"))),
            Reason::NonceMismatch,
        ),
        (
            "authorized party is another client",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "azp", json!("someone-else")),
            ),
            Reason::WrongAudience,
        ),
        (
            "several audiences and no azp",
            sign(
                &key,
                Some("k1"),
                &with(claims(), "aud", json!([CLIENT, "other"])),
            ),
            Reason::WrongAudience,
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            reason_of(&client, &d, &token).await,
            Some(expected),
            "{what}"
        );
    }

    // alg none: no signature at all.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    assert_eq!(
        reason_of(&client, &d, &format!("{header}.{payload}.")).await,
        Some(Reason::AlgorithmNotAllowed)
    );
    // RS/HS confusion: HMAC "signed" with the IdP's public key as the secret.
    let public = serde_json::to_vec(&public_jwk(&key, "k1")).expect("JSON");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(),
        &EncodingKey::from_secret(&public).expect("a key"),
    )
    .expect("signed");
    assert_eq!(
        reason_of(&client, &d, &confused).await,
        Some(Reason::AlgorithmNotAllowed)
    );
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "one fetch served all of these"
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_cannot_make_the_service_hammer_the_idp() {
    let key = rsa_key("jwt-signing.pem");
    let server = KeySetServer::start(vec![public_jwk(&key, "k1")]).await;
    let d = server.discovery();
    let client = OidcClient::new(idsync::outbound::Guarded::with_defaults());
    for i in 0..200 {
        let token = sign(&key, Some(&format!("made-up-{i}")), &claims());
        assert_eq!(
            reason_of(&client, &d, &token).await,
            Some(Reason::UnknownKey)
        );
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "200 unknown kids within the refresh window cost one key-set fetch"
    );
}

#[tokio::test]
async fn an_idp_key_rollover_is_picked_up_on_the_first_unknown_kid() {
    let old = rsa_key("jwt-signing.pem");
    let new = rsa_key("jwt-attacker.pem");
    let server = KeySetServer::start(vec![public_jwk(&old, "old")]).await;
    let d = server.discovery();
    let client = OidcClient::new(idsync::outbound::Guarded::with_defaults())
        .with_jwks_min_refresh(Duration::from_millis(200));
    let token = sign(&old, Some("old"), &claims());
    assert_eq!(reason_of(&client, &d, &token).await, None);

    // The IdP publishes a new key and starts signing with it.
    server
        .keys
        .lock()
        .expect("test lock")
        .push(public_jwk(&new, "new"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = sign(&new, Some("new"), &claims());
    assert_eq!(reason_of(&client, &d, &token).await, None);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}
