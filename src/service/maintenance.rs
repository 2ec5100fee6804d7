//! Background upkeep of a service process: the counts of aggregated refusals,
//! demoting people whose role approvals lapsed, announcing IdP certificates
//! about to expire, and pruning what would
//! otherwise grow without bound (expired sign-in state, and audit entries past
//! `--audit-retention`). Every replica runs it; the deletes are idempotent,
//! and each lapse is handled and each warning announced once.

use std::{sync::Arc, time::Duration};

use super::{
    failure_audit::FailureAudit,
    scim::service::ScimService,
    sso::SsoService,
    store::{Store, now_millis},
};

/// How often aggregated refusal counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often lapsed role approvals are looked for: a lapsed approval's
/// role is gone within this (a SCIM change or sign-in of the person in
/// between already decides without it).
const LAPSES_EVERY: Duration = Duration::from_secs(15);
/// How often IdP signing certificates are looked at (metadata fetched from
/// a URL is cached as long as this, so each look reads the IdP's current one).
const CERTIFICATES_EVERY: Duration = Duration::from_secs(3600);
/// The first look, after start: soon enough that a replica restarted more
/// often than hourly still looks, late enough not to add to start-up.
const CERTIFICATES_FIRST: Duration = Duration::from_secs(60);
/// How often expired rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Audit entries deleted per transaction.
const AUDIT_PRUNE_BATCH: i64 = 10_000;

/// Runs until `stop` resolves, then writes the last counts.
pub async fn run(
    store: Store,
    failures: Arc<FailureAudit>,
    scim: ScimService,
    sso: Arc<SsoService>,
    audit_retention: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut lapses = tokio::time::interval(LAPSES_EVERY);
    let first = tokio::time::Instant::now() + CERTIFICATES_FIRST;
    let mut certificates = tokio::time::interval_at(first, CERTIFICATES_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = flush.tick() => failures.flush(false).await,
            _ = lapses.tick() => match scim.expire_approvals(now_millis()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lapsed = n, "demoted people whose role approvals lapsed"),
                Err(e) => tracing::warn!(error = %e, "handling lapsed role approvals failed"),
            },
            _ = certificates.tick() => match sso.watch_certificates(now_millis()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(announced = n, "announced IdP certificates about to expire"),
                Err(e) => tracing::warn!(error = %e, "watching IdP certificates failed"),
            },
            _ = prune.tick() => prune_once(&store, audit_retention).await,
        }
    }
    failures.flush(true).await;
}

/// One pruning pass; failures are logged and retried on the next pass.
pub async fn prune_once(store: &Store, audit_retention: Duration) {
    let now = now_millis();
    if let Err(e) = store.prune_signin_state(now).await {
        tracing::warn!(error = %e, "pruning expired sign-in state failed");
    }
    let before = now.saturating_sub(audit_retention.as_millis().min(i64::MAX as u128) as i64);
    if let Err(e) = store.prune_lapses().await {
        tracing::warn!(error = %e, "pruning handled approval lapses failed");
    }
    // Events are kept as long as the audit entries they come from.
    if let Err(e) = store.prune_events(before).await {
        tracing::warn!(error = %e, "pruning old events failed");
    }
    loop {
        match store.prune_audit(before, AUDIT_PRUNE_BATCH).await {
            Ok(n) if (n as i64) < AUDIT_PRUNE_BATCH => break,
            Ok(_) => tokio::task::yield_now().await,
            Err(e) => {
                tracing::warn!(error = %e, "pruning the audit log failed");
                break;
            }
        }
    }
}
