//! OpenID Connect relying party: discovery, the authorization request (code flow
//! with PKCE S256, `state`, `nonce`), the token exchange, and ID-token
//! validation against the IdP's JWKS.
//!
//! Signature checks are jsonwebtoken's (on aws-lc-rs); everything around them is
//! ours: the algorithm allow-list (never `none`, never HMAC: an IdP's public key
//! must not become an HMAC secret), key selection by `kid` with a refresh of the
//! key set that callers cannot turn into a flood, and the OIDC Core §3.1.3.7
//! claim checks (`iss`, `aud`, `azp`, `exp`, `iat`, `nbf`, `nonce`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, Jwk},
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Reason, SignInError};
use crate::{
    admin::OidcDoc,
    api::sso_connection::TokenEndpointAuthMethod,
    outbound::{BodyLimit, FailureClass, FetchError, Guarded, https_url},
};

/// Discovery documents are refetched after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Key sets are refetched after this long, and sooner on an unknown `kid`...
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// ...but never more often than this, whatever callers send.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
/// Allowed clock skew on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// An ID token issued longer ago than this is refused (it was minted for this
/// sign-in, seconds ago).
const MAX_ID_TOKEN_AGE_SECS: i64 = 600;

/// Asymmetric algorithms an ID token may be signed with.
const ALLOWED_ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The parts of a discovery document the relying party uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

impl Discovery {
    /// Every endpoint must be https (plain http only on loopback): a discovery
    /// document is the IdP's word, and the next requests go where it says.
    pub fn check_endpoints(&self) -> Result<(), SignInError> {
        let endpoints = [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("jwks_uri", Some(&self.jwks_uri)),
            ("userinfo_endpoint", self.userinfo_endpoint.as_ref()),
        ];
        for (name, url) in endpoints {
            if let Some(url) = url {
                https_url(url).map_err(|e| {
                    SignInError::new(
                        Reason::IdpUnavailable,
                        format!("the discovery document's {name} ({e}) is refused"),
                    )
                })?;
            }
        }
        Ok(())
    }
}

struct KeySet {
    keys: Arc<Vec<Jwk>>,
    fetched: Instant,
    last_attempt: Instant,
}

/// Talks to OpenID Providers (through the guarded client); caches discovery
/// documents and key sets.
pub struct OidcClient {
    http: Guarded,
    jwks_min_refresh: Duration,
    discovery: Mutex<HashMap<String, (Arc<Discovery>, Instant)>>,
    jwks: Mutex<HashMap<String, KeySet>>,
}

/// What the authorization request carries, minted per sign-in.
pub struct AuthRequest {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
}

/// An IdP call that failed: the host and a class, never the answer's text.
fn unavailable(what: &str, e: FetchError) -> SignInError {
    SignInError::new(Reason::IdpUnavailable, format!("{what} at {e}"))
}

/// A random URL-safe string of 32 bytes (256 bits).
pub fn random_token() -> Result<String, SignInError> {
    let mut b = [0u8; 32];
    crate::token::random_bytes(&mut b)
        .map_err(|e| SignInError::new(Reason::Unavailable, e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

impl AuthRequest {
    pub fn new() -> Result<Self, SignInError> {
        Ok(Self {
            state: random_token()?,
            nonce: random_token()?,
            code_verifier: random_token()?,
        })
    }
}

/// PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OidcClient {
    pub fn new(http: Guarded) -> Self {
        Self {
            http,
            jwks_min_refresh: JWKS_MIN_REFRESH,
            discovery: Mutex::new(HashMap::new()),
            jwks: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how often an unknown `kid` may trigger a key-set refetch (tests of
    /// an IdP key rollover use a short one).
    pub fn with_jwks_min_refresh(mut self, interval: Duration) -> Self {
        self.jwks_min_refresh = interval;
        self
    }

    /// The IdP's discovery document; its `issuer` must be the configured one.
    pub async fn discover(&self, cfg: &OidcDoc) -> Result<Arc<Discovery>, SignInError> {
        let url = cfg.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                cfg.issuer.trim_end_matches('/')
            )
        });
        if let Some((d, at)) = lock(&self.discovery).get(&url)
            && at.elapsed() < DISCOVERY_TTL
            && d.issuer == cfg.issuer
        {
            return Ok(d.clone());
        }
        let d: Discovery = self
            .http
            .get_json(&url)
            .await
            .map_err(|e| unavailable("the discovery document", e))?;
        d.check_endpoints()?;
        if d.issuer != cfg.issuer {
            return Err(SignInError::new(
                Reason::WrongIssuer,
                format!(
                    "discovery says issuer {:?}, the connection says {:?}",
                    d.issuer, cfg.issuer
                ),
            ));
        }
        let d = Arc::new(d);
        lock(&self.discovery).insert(url, (d.clone(), Instant::now()));
        Ok(d)
    }

    /// The URL the browser is sent to.
    pub fn authorization_url(
        &self,
        d: &Discovery,
        cfg: &OidcDoc,
        redirect_uri: &str,
        req: &AuthRequest,
    ) -> Result<String, SignInError> {
        let mut url = reqwest::Url::parse(&d.authorization_endpoint).map_err(|_| {
            SignInError::new(
                Reason::IdpUnavailable,
                "the authorization endpoint is not a URL",
            )
        })?;
        let scopes = if cfg.scopes.is_empty() {
            "openid email profile".to_string()
        } else {
            cfg.scopes.join(" ")
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes)
            .append_pair("state", &req.state)
            .append_pair("nonce", &req.nonce)
            .append_pair("code_challenge", &pkce_challenge(&req.code_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the authorization code; returns (ID token, access token).
    pub async fn exchange(
        &self,
        d: &Discovery,
        cfg: &OidcDoc,
        redirect_uri: &str,
        code: &str,
        code_verifier: &str,
    ) -> Result<(String, Option<String>), SignInError> {
        let secret = cfg.client_secret.as_deref().unwrap_or_default();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut request = self
            .http
            .request(reqwest::Method::POST, &d.token_endpoint)
            .map_err(|e| unavailable("the token endpoint", e))?;
        match cfg.token_endpoint_auth_method {
            Some(TokenEndpointAuthMethod::ClientSecretPost) => {
                form.push(("client_id", &cfg.client_id));
                form.push(("client_secret", secret));
            }
            // RFC 6749 §2.3.1: form-encode the id and secret before Basic.
            _ => {
                request = request.basic_auth(form_encode(&cfg.client_id), Some(form_encode(secret)))
            }
        }
        let (status, body) = self
            .http
            .send(request.form(&form), BodyLimit::Json)
            .await
            .map_err(|e| unavailable("the token endpoint", e))?;
        if !status.is_success() {
            // Only the OAuth error code: descriptions are free text from the IdP.
            let code = serde_json::from_slice::<TokenError>(&body)
                .ok()
                .and_then(|e| e.error)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
                .unwrap_or_else(|| "unknown".into());
            let reason = if status.is_server_error() {
                Reason::IdpUnavailable
            } else {
                Reason::TokenExchangeFailed
            };
            return Err(SignInError::new(
                reason,
                format!("the token endpoint answered {status} ({code})"),
            ));
        }
        let tokens: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            SignInError::new(
                Reason::MalformedResponse,
                "the token endpoint's answer is not a token response",
            )
        })?;
        let id_token = tokens.id_token.ok_or_else(|| {
            SignInError::new(
                Reason::MalformedResponse,
                "the token endpoint sent no id_token (is the openid scope granted?)",
            )
        })?;
        Ok((id_token, tokens.access_token))
    }

    /// Validates an ID token and returns its claims.
    pub async fn validate_id_token(
        &self,
        d: &Discovery,
        cfg: &OidcDoc,
        id_token: &str,
        nonce: &str,
        now_secs: i64,
    ) -> Result<Map<String, Value>, SignInError> {
        let header = token_header(id_token)?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = ALLOWED_ALGORITHMS
            .iter()
            .find(|(name, _)| *name == alg_name)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                SignInError::new(
                    Reason::AlgorithmNotAllowed,
                    format!("ID token alg {alg_name:?} is not an allowed asymmetric algorithm"),
                )
            })?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self.key_for(&d.jwks_uri, kid, alg).await?;

        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| SignInError::new(jwt_reason(&e), format!("ID token: {e}")))?
            .claims;

        check_issued_at(&claims, now_secs)?;
        check_authorized_party(&claims, &cfg.client_id)?;
        let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !constant_time_eq(token_nonce, nonce) {
            return Err(SignInError::new(
                Reason::NonceMismatch,
                "ID token nonce does not match this sign-in",
            ));
        }
        Ok(claims)
    }

    /// Claims from the userinfo endpoint; its `sub` must be the ID token's.
    pub async fn userinfo(
        &self,
        d: &Discovery,
        access_token: &str,
        sub: &str,
    ) -> Result<Map<String, Value>, SignInError> {
        let url = d.userinfo_endpoint.as_deref().ok_or_else(|| {
            SignInError::new(
                Reason::IdpUnavailable,
                "useUserinfo is set but the IdP has no userinfo endpoint",
            )
        })?;
        let request = self
            .http
            .request(reqwest::Method::GET, url)
            .map_err(|e| unavailable("the userinfo endpoint", e))?
            .bearer_auth(access_token);
        let (status, body) = self
            .http
            .send(request, BodyLimit::Json)
            .await
            .map_err(|e| unavailable("the userinfo endpoint", e))?;
        let decoded = if status.is_success() {
            serde_json::from_slice::<Map<String, Value>>(&body).map_err(|_| FailureClass::Decode)
        } else {
            Err(FailureClass::Status(status.as_u16()))
        };
        let claims = decoded.map_err(|class| {
            let host = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            unavailable("the userinfo endpoint", FetchError { host, class })
        })?;
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(SignInError::new(
                Reason::MalformedResponse,
                "userinfo sub differs from the ID token's",
            ));
        }
        Ok(claims)
    }

    /// The verification key for `kid`, refetching the key set when the kid is
    /// unknown (an IdP key rollover) at most every `JWKS_MIN_REFRESH`.
    async fn key_for(
        &self,
        jwks_uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, SignInError> {
        let cached = {
            let cache = lock(&self.jwks);
            cache.get(jwks_uri).map(|s| {
                (
                    s.keys.clone(),
                    s.fetched.elapsed() < JWKS_TTL,
                    s.last_attempt.elapsed() >= self.jwks_min_refresh,
                )
            })
        };
        if let Some((keys, fresh, may_refresh)) = &cached {
            match select_key(keys, kid, alg) {
                Ok(key) if *fresh => return Ok(key),
                Err(e) if !may_refresh => return Err(e),
                _ => {}
            }
        }
        // Mark the attempt before fetching, so concurrent callers with made-up
        // kids wait for the next window instead of fetching too.
        if let Some(set) = lock(&self.jwks).get_mut(jwks_uri) {
            set.last_attempt = Instant::now();
        }
        let keys = match self.fetch_jwks(jwks_uri).await {
            Ok(keys) => Arc::new(keys),
            // A refetch that fails keeps the keys we had.
            Err(e) => match cached {
                Some((keys, _, _)) => return select_key(&keys, kid, alg).map_err(|_| e),
                None => return Err(e),
            },
        };
        lock(&self.jwks).insert(
            jwks_uri.to_string(),
            KeySet {
                keys: keys.clone(),
                fetched: Instant::now(),
                last_attempt: Instant::now(),
            },
        );
        select_key(&keys, kid, alg)
    }

    async fn fetch_jwks(&self, uri: &str) -> Result<Vec<Jwk>, SignInError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let raw: RawSet = self
            .http
            .get_json(uri)
            .await
            .map_err(|e| unavailable("the JWKS", e))?;
        // Keys of types we do not understand are skipped, not fatal.
        Ok(raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect())
    }
}

/// The sign-in failure a JWT validation error is.
fn jwt_reason(e: &jsonwebtoken::errors::Error) -> Reason {
    match e.kind() {
        ErrorKind::InvalidSignature => Reason::InvalidSignature,
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidIssuer => Reason::WrongIssuer,
        ErrorKind::InvalidAudience => Reason::WrongAudience,
        ErrorKind::InvalidAlgorithm => Reason::AlgorithmNotAllowed,
        _ => Reason::MalformedResponse,
    }
}

/// `iat`: required, not in the future, and recent.
fn check_issued_at(claims: &Map<String, Value>, now_secs: i64) -> Result<(), SignInError> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| SignInError::new(Reason::MalformedResponse, "ID token has no iat"))?;
    if iat > now_secs + CLOCK_SKEW_SECS as i64 {
        return Err(SignInError::new(
            Reason::NotYetValid,
            "ID token iat is in the future",
        ));
    }
    if iat < now_secs - MAX_ID_TOKEN_AGE_SECS - CLOCK_SKEW_SECS as i64 {
        return Err(SignInError::new(
            Reason::Expired,
            "ID token was issued too long ago",
        ));
    }
    Ok(())
}

/// `azp`: required when there are several audiences, and then ours.
fn check_authorized_party(claims: &Map<String, Value>, client_id: &str) -> Result<(), SignInError> {
    let several_audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => Err(SignInError::new(
            Reason::WrongAudience,
            "ID token azp is another client",
        )),
        None if several_audiences => Err(SignInError::new(
            Reason::WrongAudience,
            "ID token has several audiences and no azp",
        )),
        _ => Ok(()),
    }
}

/// Picks the key for `kid` (or the only suitable one when the token names
/// none) and checks it is a public key of the algorithm's family.
fn select_key(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, SignInError> {
    let suits = |k: &&Jwk| {
        let family_ok = matches!(
            (&k.algorithm, alg),
            (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (
                AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
        );
        let alg_ok = k
            .common
            .key_algorithm
            .is_none_or(|ka| ka.to_string() == format!("{alg:?}"));
        family_ok && alg_ok
    };
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.iter().filter(suits).collect(),
    };
    let key = match candidates.as_slice() {
        [] => {
            return Err(SignInError::new(
                Reason::UnknownKey,
                "the ID token's signing key is not in the IdP's key set",
            ));
        }
        [one] => *one,
        _ => {
            return Err(SignInError::new(
                Reason::UnknownKey,
                "the ID token names no kid and the key set has several keys",
            ));
        }
    };
    if !suits(&key) {
        return Err(SignInError::new(
            Reason::AlgorithmNotAllowed,
            "the ID token's alg does not match its key's type",
        ));
    }
    DecodingKey::from_jwk(key)
        .map_err(|e| SignInError::new(Reason::UnknownKey, format!("unusable JWK: {e}")))
}

/// The JOSE header of a compact JWT, as JSON.
fn token_header(token: &str) -> Result<Map<String, Value>, SignInError> {
    let malformed = || SignInError::new(Reason::MalformedResponse, "the ID token is not a JWT");
    let (header, rest) = token.split_once('.').ok_or_else(malformed)?;
    if rest.matches('.').count() != 1 {
        return Err(malformed());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn form_encode(s: &str) -> String {
    reqwest::Url::parse_with_params("x:", [("v", s)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Guards map operations only, never an await; a poisoned lock still holds a
    // usable map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn headers_of_none_and_hmac_tokens_are_read_for_the_refusal() {
        let none = format!("{}.e30.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            token_header(&none).expect("a header").get("alg"),
            Some(&Value::from("none"))
        );
        assert!(token_header("not-a-jwt").is_err());
        assert!(token_header("a.b.c.d").is_err());
    }

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
    }
}
