//! Sessions: a signed cookie naming a server-side session row.
//!
//! Keys come from the store: the service makes its own, and keys registered
//! through the admin API join them. The newest signs; every unexpired one
//! verifies.
//!
//! The cookie is `<key id>.<session secret>.<HMAC-SHA256>`. The MAC lets every
//! replica refuse a forged or mangled cookie without touching the database;
//! the row (looked up by the secret's SHA-256, so a database reader cannot
//! mint cookies) is what deprovisioning and sign-out revoke.
//!
//! Session checks are the product's hot path, so a live session is cached for
//! `CHECK_CACHE_TTL`: a revocation made on another replica takes effect within
//! that second; one made here (sign-out) takes effect at once.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{
    service::{
        session_cache::CheckCache,
        store::{Result, SessionKey, SessionRecord, Store},
    },
    token,
};

/// The session cookie's name.
pub const COOKIE: &str = "idsync_session";
/// A new signing key is made when the newest is older than this.
const KEY_ROTATE_EVERY: i64 = 7 * 24 * 3600 * 1000;
/// How long a key verifies cookies after it was made. Session lifetimes are
/// capped below `KEY_VALID_FOR - KEY_ROTATE_EVERY`, so no live session outlives
/// the key that signed it.
const KEY_VALID_FOR: i64 = 30 * 24 * 3600 * 1000;
/// Longest session the service issues, whatever the workspace policy says.
pub const MAX_SESSION: Duration = Duration::from_secs(23 * 24 * 3600);
/// Signing picks up a key another replica or the admin API added within this.
const KEY_REFRESH_EVERY: Duration = Duration::from_secs(60);
/// Unknown key ids reload keys from the store at most this often.
const KEY_RELOAD_EVERY: Duration = Duration::from_secs(1);

type HmacSha256 = Hmac<Sha256>;

/// A freshly minted session: the cookie value (for the browser only) and the
/// id the store keeps.
pub struct NewSession {
    pub cookie: String,
    pub id: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewSession {{ id: {:?}, cookie: <redacted> }}", self.id)
    }
}

#[derive(Default)]
struct Keys {
    /// (id, key bytes), newest first.
    keys: Vec<(String, Vec<u8>)>,
    newest_created_at: i64,
    loaded: Option<Instant>,
}

/// Session cookies and checks, shared by every handler.
pub struct Sessions {
    store: Store,
    keys: Mutex<Keys>,
    cache: Arc<CheckCache>,
}

impl Sessions {
    pub fn new(store: Store, cache: Arc<CheckCache>) -> Self {
        Self {
            store,
            keys: Mutex::new(Keys::default()),
            cache,
        }
    }

    /// Drops this replica's cached checks of principals a write just revoked.
    pub fn forget_revoked(&self, revoked: &[(String, String)]) {
        self.cache.forget_all(revoked);
    }

    /// Loads the keys, making a new one when none is fresh enough.
    async fn reload_keys(&self, now: i64) -> Result<()> {
        let mut keys = self.store.session_keys(now).await?;
        if keys
            .first()
            .is_none_or(|k| now - k.created_at >= KEY_ROTATE_EVERY)
        {
            let mut secret = [0u8; 32];
            let mut id = [0u8; 6];
            if token::random_bytes(&mut secret).is_ok() && token::random_bytes(&mut id).is_ok() {
                let key = SessionKey {
                    id: hex::encode(id),
                    secret: hex::encode(secret),
                    created_at: now,
                    expires_at: now + KEY_VALID_FOR,
                };
                self.store.insert_session_key(&key).await?;
                keys = self.store.session_keys(now).await?;
            }
        }
        let decoded = keys
            .iter()
            .filter_map(|k| Some((k.id.clone(), hex::decode(&k.secret).ok()?)))
            .collect();
        let mut guard = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        guard.keys = decoded;
        guard.newest_created_at = keys.first().map_or(0, |k| k.created_at);
        guard.loaded = Some(Instant::now());
        Ok(())
    }

    /// Makes a session cookie signed with the newest key.
    pub async fn mint(&self, now: i64) -> Result<Option<NewSession>> {
        let stale = {
            let guard = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            guard.keys.is_empty()
                || now - guard.newest_created_at >= KEY_ROTATE_EVERY
                || guard
                    .loaded
                    .is_none_or(|at| at.elapsed() >= KEY_REFRESH_EVERY)
        };
        if stale {
            self.reload_keys(now).await?;
        }
        let mut secret = [0u8; 32];
        if token::random_bytes(&mut secret).is_err() {
            return Ok(None);
        }
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let guard = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some((kid, key)) = guard.keys.first() else {
            return Ok(None);
        };
        let mac = sign(key, kid, &secret);
        Ok(Some(NewSession {
            cookie: format!("{kid}.{secret}.{mac}"),
            id: session_id(&secret),
        }))
    }

    /// The store id of a cookie whose MAC verifies, or None for anything forged,
    /// mangled or signed by an expired key.
    pub async fn verify(&self, cookie: &str) -> Result<Option<String>> {
        let mut parts = cookie.split('.');
        let (Some(kid), Some(secret), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        if secret.len() != 43 || kid.len() > 32 {
            return Ok(None);
        }
        let Ok(mac) = URL_SAFE_NO_PAD.decode(mac) else {
            return Ok(None);
        };
        for attempt in 0..2 {
            {
                let guard = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, key)) = guard.keys.iter().find(|(id, _)| id == kid) {
                    return Ok(verify_mac(key, kid, secret, &mac).then(|| session_id(secret)));
                }
                // An unknown key id reloads the keys (another replica may have
                // made a new one), but a flood of made-up ids cannot make every
                // request hit the database.
                let recently = guard
                    .loaded
                    .is_some_and(|at| at.elapsed() < KEY_RELOAD_EVERY);
                if attempt == 1 || (recently && !guard.keys.is_empty()) {
                    return Ok(None);
                }
            }
            self.reload_keys(crate::service::store::now_millis())
                .await?;
        }
        Ok(None)
    }

    /// The live session a cookie names, if any.
    pub async fn check(&self, cookie: &str, now: i64) -> Result<Option<SessionRecord>> {
        let Some(id) = self.verify(cookie).await? else {
            return Ok(None);
        };
        if let Some(record) = self.cache.get(&id, now) {
            return Ok(Some(record));
        }
        let record = self.store.live_session(&id, now).await?;
        self.cache.put(id, record.as_ref());
        Ok(record)
    }

    /// Forgets a session here at once (sign-out on this replica).
    pub fn forget(&self, id: &str) {
        self.cache.forget(id);
    }
}

fn sign(key: &[u8], kid: &str, secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac_of(key, kid, secret).finalize().into_bytes())
}

fn verify_mac(key: &[u8], kid: &str, secret: &str, mac: &[u8]) -> bool {
    mac_of(key, kid, secret).verify_slice(mac).is_ok()
}

fn mac_of(key: &[u8], kid: &str, secret: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(kid.as_bytes());
    m.update(b".");
    m.update(secret.as_bytes());
    m
}

/// The store id of a session: SHA-256 of its secret, hex.
fn session_id(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The `Set-Cookie` value that stores a session (or clears it, with `None`).
pub fn set_cookie(value: Option<&str>, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            max_age.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// A cookie's value from a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_the_key_id_and_the_secret() {
        let key = [7u8; 32];
        let mac = URL_SAFE_NO_PAD
            .decode(sign(&key, "k1", "secret"))
            .expect("our own encoding");
        assert!(verify_mac(&key, "k1", "secret", &mac));
        assert!(!verify_mac(&key, "k2", "secret", &mac));
        assert!(!verify_mac(&key, "k1", "secreT", &mac));
        assert!(!verify_mac(&[8u8; 32], "k1", "secret", &mac));
    }

    #[test]
    fn cookies_are_http_only_and_secure_over_https() {
        let c = set_cookie(Some("a.b.c"), Duration::from_secs(60), true);
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(c.contains("Max-Age=60"));
        assert_eq!(
            cookie_value("x=1; idsync_session=a.b.c; y=2", COOKIE),
            Some("a.b.c")
        );
        assert_eq!(cookie_value("x=1", COOKIE), None);
    }
}
