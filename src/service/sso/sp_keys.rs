//! The SAML SP signing keys this service holds: registered by the operator
//! (`PUT /admin/v1/saml-signing-keys/{id}`), parsed once, reloaded at least
//! every minute (another replica may have been given a key) and at once when
//! this replica is given one. Which key signs is [`crate::saml_signing`]'s rule.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use openssl::pkey::{PKey, Private};

use super::error::SignInError;
use crate::{
    saml_signing::{self, SigningKey},
    service::store::Store,
};

/// Keys are re-read from the store at least this often.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// The unexpired keys, newest first, each with its creation time (ms).
pub struct LoadedKeys(Vec<(i64, SigningKey)>);

impl LoadedKeys {
    /// The key that signs AuthnRequests now, if the service holds any.
    pub fn signer(&self, now_ms: i64) -> Option<&PKey<Private>> {
        let created: Vec<i64> = self.0.iter().map(|(t, _)| *t).collect();
        saml_signing::signing_key(&created, now_ms).map(|i| &self.0[i].1.key)
    }

    /// Every unexpired certificate (DER), for the SP metadata.
    pub fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|(_, k)| k.certificate_der.as_slice())
    }
}

pub struct SpKeys {
    store: Store,
    cached: Mutex<Option<(Instant, Arc<LoadedKeys>)>>,
}

impl SpKeys {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cached: Mutex::new(None),
        }
    }

    /// The keys, from memory unless a minute has passed or a key was added.
    pub async fn get(&self) -> Result<Arc<LoadedKeys>, SignInError> {
        if let Some((at, keys)) = self.lock().as_ref()
            && at.elapsed() < RELOAD_EVERY
        {
            return Ok(keys.clone());
        }
        let now = crate::service::store::now_millis();
        let records = self.store.saml_signing_keys(now).await?;
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            // Checked when registered; a row that no longer parses (say, an
            // OpenSSL that refuses its algorithm) is skipped, not fatal.
            match saml_signing::parse(&r.private_key_pem, &r.certificate_pem) {
                Ok(k) => keys.push((r.created_at, k)),
                Err(e) => tracing::warn!(key = %r.id, error = %e, "skipping a SAML signing key"),
            }
        }
        let keys = Arc::new(LoadedKeys(keys));
        *self.lock() = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Forgets the loaded keys, so the next use reads the store.
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<LoadedKeys>)>> {
        // Guards a swap, never an await; a poisoned cache is still usable.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }
}
