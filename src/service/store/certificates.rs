//! Expiry warnings for IdP signing certificates, each announced once: the
//! warning's row and its audit entry (which makes the
//! `sso_connection.certificate_expiring` event) are one write, and the row's
//! key makes a second announcement of the same warning a no-op, whichever
//! replica makes it. Rows go with their connection (a connection declared
//! again is warned about afresh); they are a few per connection.

use serde_json::json;

use super::{AuditEntry, Result, Store, audit};

/// A certificate of a connection that has reached a warning threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateWarning {
    pub workspace: String,
    pub connection: String,
    /// SHA-256 of the certificate's DER, hex: which certificate of a rotation.
    pub sha256: String,
    /// notAfter, in seconds since the epoch.
    pub not_after: i64,
    /// The threshold crossed (days left at most); 0 once it has expired.
    pub threshold_days: i64,
    /// Whole days left (negative once expired).
    pub days_left: i64,
}

impl Store {
    /// Announces `warning` unless it was announced before; answers whether
    /// this call announced it.
    pub async fn announce_certificate_warning(
        &self,
        warning: &CertificateWarning,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = tx
            .execute(
                "INSERT INTO certificate_warnings \
                 (workspace, connection, certificate_sha256, threshold_days, not_after) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    warning.workspace.as_str().into(),
                    warning.connection.as_str().into(),
                    warning.sha256.as_str().into(),
                    warning.threshold_days.into(),
                    warning.not_after.into(),
                ],
            )
            .await?;
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let not_after = jiff::Timestamp::from_second(warning.not_after)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let entry = AuditEntry {
            workspace: Some(warning.workspace.clone()),
            actor: "idsync".into(),
            action: "sso-connection.certificate_expiring".into(),
            kind: Some("SSOConnection".into()),
            name: Some(warning.connection.clone()),
            detail: Some(json!({
                "certificateSha256": warning.sha256,
                "notAfter": not_after,
                "daysLeft": warning.days_left,
                "thresholdDays": warning.threshold_days,
                "expired": warning.days_left < 0,
            })),
        };
        audit::insert(&mut tx, &entry, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
