//! Delivering events to webhook endpoints, the Standard Webhooks way
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`, secrets as `whsec_<base64>`), so a
//! receiver verifies with the `standardwebhooks` or `svix` libraries.
//!
//! At least once, in order: an endpoint gets the event after its cursor and
//! nothing else until that one is answered with a 2xx, retried with the same
//! `webhook-id` on an exponential schedule with jitter. 410 Gone, or failing
//! for the whole schedule (about three days), disables the endpoint. Only
//! the replica holding an endpoint's claim delivers to it.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use reqwest::Method;
use sha2::Sha256;

use crate::{
    admin::WebhookDoc,
    outbound::{BodyLimit, Guarded},
    service::store::{Attempt, EventRecord, ObjectKind, Result, Store, now_millis},
};

/// How long a claim lasts: past the outbound timeout, so it never runs out
/// while its holder still waits for an answer.
const CLAIM_FOR: Duration = Duration::from_secs(30);

/// Events read per claim; the ones an endpoint does not want are skipped in
/// the same pass.
const BATCH: i64 = 100;

/// Seconds before each retry (Svix's schedule): a failing endpoint is tried
/// for about three days, then disabled.
const RETRY_AFTER: [u64; 8] = [5, 300, 1800, 7200, 18000, 36000, 36000, 172_800];

/// The HMAC key of a `whsec_` secret, if it is one.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// The `webhook-signature` value: one `v1,<signature>` per secret.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    let content = format!("{id}.{timestamp}.{body}");
    secrets
        .iter()
        .filter_map(|s| key_of(s))
        .filter_map(|key| {
            // Any key length is valid for HMAC; a key that is not one is skipped.
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(content.as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an endpoint listing `patterns` wants events of type `kind`.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some("") => true,
        Some(family) => kind.starts_with(family),
        None => p == kind,
    })
}

/// The body of an event's delivery.
fn body(event: &EventRecord) -> String {
    serde_json::json!({
        "type": event.kind,
        "timestamp": crate::service::store::format_millis(event.at),
        "data": event.data,
        "id": event.id,
        "workspace": event.workspace,
        "seq": event.seq,
    })
    .to_string()
}

/// One pass over every endpoint: each that is due and unclaimed gets its
/// next events. Answers how many deliveries succeeded.
pub async fn deliver_due(store: &Store, http: &Guarded) -> Result<usize> {
    let mut delivered = 0;
    for object in store.list_objects(ObjectKind::Webhook, None).await? {
        let Ok(doc) = serde_json::from_value::<WebhookDoc>(object.body.clone()) else {
            continue; // validated on the way in; an older version's is skipped
        };
        let now = now_millis();
        if !store
            .webhook_due(&object.workspace, &object.name, now)
            .await?
        {
            continue;
        }
        let until = now + CLAIM_FOR.as_millis() as i64;
        let Some(cursor) = store
            .claim_webhook(
                (&object.workspace, &object.name, object.created_at),
                now,
                until,
            )
            .await?
        else {
            continue;
        };
        let events = store
            .events_after(&object.workspace, cursor.delivered_seq, BATCH)
            .await?;
        let (mut last, mut attempts) = (None, cursor.attempts);
        for event in &events {
            let attempt = match wants(&doc.event_types, &event.kind) {
                false => Attempt::Delivered(event.seq),
                true => attempt(http, &doc, event, attempts).await,
            };
            match &attempt {
                Attempt::Delivered(seq) => {
                    delivered += usize::from(wants(&doc.event_types, &event.kind));
                    (last, attempts) = (Some(*seq), 0);
                }
                _ => {
                    // Skipped events before the failure count as passed.
                    if let Some(seq) = last {
                        let passed = Attempt::Delivered(seq);
                        store
                            .record_attempt(&object.workspace, &object.name, &passed, now)
                            .await?;
                    }
                    store
                        .record_attempt(&object.workspace, &object.name, &attempt, now_millis())
                        .await?;
                    last = None;
                    break;
                }
            }
        }
        match last {
            Some(seq) => {
                let done = Attempt::Delivered(seq);
                store
                    .record_attempt(&object.workspace, &object.name, &done, now_millis())
                    .await?;
            }
            // Nothing new, or it failed (recorded): either way the claim goes.
            None if events.is_empty() => {
                let same = Attempt::Delivered(cursor.delivered_seq);
                store
                    .record_attempt(&object.workspace, &object.name, &same, now_millis())
                    .await?;
            }
            None => {}
        }
    }
    Ok(delivered)
}

/// POSTs one event; a 2xx delivers it, 410 disables the endpoint, anything
/// else (a timeout, a refused address, a redirect) schedules a retry.
async fn attempt(http: &Guarded, doc: &WebhookDoc, event: &EventRecord, attempts: i64) -> Attempt {
    let body = body(event);
    let timestamp = now_millis() / 1000;
    let signed = signature(&doc.secrets, &event.id, timestamp, &body);
    let outcome = match http.request(Method::POST, &doc.url) {
        Ok(request) => {
            let request = request
                .header("content-type", "application/json")
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signed)
                .body(body);
            http.send(request, BodyLimit::Json)
                .await
                .map(|(status, _)| status)
        }
        Err(e) => Err(e),
    };
    let failure = match outcome {
        Ok(status) if status.is_success() => return Attempt::Delivered(event.seq),
        Ok(status) if status == reqwest::StatusCode::GONE => {
            return Attempt::Disabled {
                failure: "410 Gone".into(),
            };
        }
        Ok(status) => format!("HTTP {}", status.as_u16()),
        Err(e) => e.to_string(),
    };
    match RETRY_AFTER.get(attempts as usize) {
        Some(secs) => {
            // Up to a fifth more, so endpoints that failed together spread out.
            let jitter = crate::token::random_id()
                .map(|id| id.bytes().map(u64::from).sum::<u64>() % (secs / 5 + 1))
                .unwrap_or(0);
            Attempt::Failed {
                retry_at: now_millis() + ((secs + jitter) * 1000) as i64,
                failure,
            }
        }
        None => Attempt::Disabled {
            failure: format!("failed for the whole retry schedule: {failure}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_match_the_specification() {
        let secret = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string()];
        let signed = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // During a rotation both secrets sign, space-separated.
        let both = [
            secret[0].clone(),
            format!("whsec_{}", STANDARD.encode([7u8; 32])),
        ];
        assert_eq!(signature(&both, "m", 1, "{}").split(' ').count(), 2);
        assert!(key_of("whsec_c2hvcnQ=").is_none(), "too short a key");
        assert!(key_of("not-a-secret").is_none());
    }

    #[test]
    fn families_and_wildcards() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&p(&["member.*"]), "member.created"));
        assert!(!wants(&p(&["member.*"]), "group.created"));
        assert!(wants(&p(&["*"]), "group.created"));
        assert!(wants(&p(&["group.deleted"]), "group.deleted"));
        assert!(!wants(&p(&["group.deleted"]), "group.deleted_later"));
    }
}
