//! Watching the IdP signing certificates of SAML connections, so the product
//! hears (`sso_connection.certificate_expiring`) before its customer's
//! sign-ins start failing: at 30, 7 and 1 day left, and once expired. A
//! connection stops working when its *last* certificate expires, so that is
//! the one watched; an old certificate expiring beside its replacement is a
//! rotation going as planned, not news (the operator's alert watches the
//! first-expiring one, for whoever runs the rotation).

use sha2::{Digest, Sha256};

use super::SsoService;
use crate::{
    admin::SsoConnectionDoc,
    saml_metadata,
    service::store::{CertificateWarning, ObjectKind, Result},
};

/// Days left at which a warning is announced, widest first; 0 is "expired".
pub const THRESHOLD_DAYS: [i64; 3] = [30, 7, 1];

const DAY: i64 = 86_400;

/// The warning a certificate expiring at `not_after` calls for at `now`
/// (seconds): the tightest threshold it has crossed, if any.
fn threshold(not_after: i64, now: i64) -> Option<i64> {
    let left = not_after - now;
    if left <= 0 {
        return Some(0);
    }
    THRESHOLD_DAYS
        .iter()
        .rev()
        .find(|days| left <= *days * DAY)
        .copied()
}

impl SsoService {
    /// Announces every SAML connection whose last signing certificate crossed
    /// a threshold since it was last announced; answers how many were. An IdP
    /// whose metadata cannot be read now is passed over (the operator's
    /// condition says why) and looked at again on the next watch.
    pub async fn watch_certificates(&self, now_ms: i64) -> Result<usize> {
        let now = now_ms.div_euclid(1000);
        let mut announced = 0;
        for object in self
            .store
            .list_objects(ObjectKind::SsoConnection, None)
            .await?
        {
            let Ok(SsoConnectionDoc {
                saml: Some(saml), ..
            }) = serde_json::from_value(object.body)
            else {
                continue;
            };
            let Ok(xml) = self.saml.idp_metadata(&saml).await else {
                continue;
            };
            let Ok(metadata) = saml_metadata::parse(&xml) else {
                continue;
            };
            let last = metadata
                .signing_certificates
                .iter()
                .filter_map(|der| Some((saml_metadata::not_after(der)?, der)))
                .max_by_key(|(not_after, _)| *not_after);
            let Some((not_after, der)) = last else {
                continue;
            };
            let Some(threshold_days) = threshold(not_after, now) else {
                continue;
            };
            let warning = CertificateWarning {
                workspace: object.workspace,
                connection: object.name,
                sha256: hex::encode(Sha256::digest(der)),
                not_after,
                threshold_days,
                days_left: (not_after - now).div_euclid(DAY),
            };
            if self
                .store
                .announce_certificate_warning(&warning, now_ms)
                .await?
            {
                announced += 1;
            }
        }
        Ok(announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_threshold_crossed_is_the_warning() {
        let now = 1_000_000_000;
        assert_eq!(threshold(now + 31 * DAY, now), None);
        assert_eq!(threshold(now + 30 * DAY, now), Some(30));
        assert_eq!(threshold(now + 8 * DAY, now), Some(30));
        assert_eq!(threshold(now + 5 * DAY, now), Some(7));
        assert_eq!(threshold(now + 3600, now), Some(1));
        assert_eq!(threshold(now, now), Some(0));
        assert_eq!(threshold(now - 90 * DAY, now), Some(0));
    }
}
