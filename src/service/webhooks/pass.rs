//! One claimed pass over an endpoint: the events after its cursor, delivered
//! up to [`CONCURRENCY`] at a time while each subject's (a member's, a
//! group's) events go one after another in order, and where the cursor ends.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use reqwest::{Method, StatusCode};

use crate::{
    admin::WebhookDoc,
    outbound::{FetchError, Guarded},
    service::{
        metrics::ServiceMetrics,
        store::{Cursor, EventRecord, Failure, PassEnd, format_millis, now_millis},
    },
    webhook_signing::Signer,
};

/// Deliveries in flight to one endpoint at once.
pub const CONCURRENCY: usize = 64;

/// The wait before each retry by default (Svix's schedule, and two more
/// days): a failing endpoint is tried for about three days, then disabled.
pub const RETRY_AFTER: [Duration; 8] = [
    Duration::from_secs(5),
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(7200),
    Duration::from_secs(18_000),
    Duration::from_secs(36_000),
    Duration::from_secs(36_000),
    Duration::from_secs(172_800),
];

/// An endpoint as a pass delivers to it.
pub struct Endpoint<'a> {
    pub workspace: &'a str,
    pub name: &'a str,
    pub doc: &'a WebhookDoc,
    /// The endpoint's signer as last refreshed: a rotation in the middle of
    /// a pass signs the deliveries after it with both secrets at once.
    pub signer: &'a RwLock<Arc<Signer>>,
    pub http: &'a Guarded,
    /// The endpoint's URL, checked once per pass.
    pub url: Result<url::Url, FetchError>,
    /// The wait before each retry; past the last, the endpoint is disabled.
    pub retry_after: &'a [Duration],
}

/// Why a POST did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// 410 Gone: the receiver asks for no more.
    Gone,
    /// Anything else: a status, a timeout, a refused address or redirect.
    Failed(String),
}

/// Whether an endpoint listing `patterns` wants events of type `kind`.
/// Sign-ins are opt-in: `*` does not cover them, `sign_in.*` does.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some("") => !kind.starts_with("sign_in."),
        Some(family) => kind.starts_with(family),
        None => p == kind,
    })
}

/// Delivers `events` (the ones after `cursor`, in order) until they are
/// all answered, one fails, or `deadline` passes; answers where the
/// endpoint's cursor ends.
pub async fn run(
    ep: &Endpoint<'_>,
    cursor: &Cursor,
    events: &[EventRecord],
    metrics: &ServiceMetrics,
    deadline: Instant,
) -> PassEnd {
    let due = |e: &&EventRecord| wants(&ep.doc.event_types, &e.kind) && !cursor.skips(e.seq);
    let mut chains: BTreeMap<&str, Vec<&EventRecord>> = BTreeMap::new();
    for event in events.iter().filter(due) {
        let subject = event.subject.as_deref().unwrap_or_default();
        chains.entry(subject).or_default().push(event);
    }
    // The first failure stops every chain from starting another delivery.
    let halt = AtomicBool::new(false);
    // A hand-rolled `buffer_unordered`: its closure would not be `Send`
    // for every lifetime, as a spawned pass needs.
    let (mut chains, mut running) = (chains.into_values(), FuturesUnordered::new());
    let (mut delivered, mut failures) = (BTreeSet::new(), Vec::new());
    loop {
        while running.len() < CONCURRENCY {
            let Some(chain) = chains.next() else { break };
            running.push(deliver_chain(ep, chain, &halt, metrics, deadline));
        }
        let Some((seqs, failure)) = running.next().await else {
            break;
        };
        delivered.extend(seqs);
        failures.extend(failure);
    }
    let passed = |e: &EventRecord| delivered.contains(&e.seq) || !due(&e);
    let succeeded = !delivered.is_empty();
    end_of_pass(cursor, events, passed, succeeded, failures, ep.retry_after)
}

/// One subject's events, in order, stopping at the first that fails.
async fn deliver_chain(
    ep: &Endpoint<'_>,
    chain: Vec<&EventRecord>,
    halt: &AtomicBool,
    metrics: &ServiceMetrics,
    deadline: Instant,
) -> (Vec<i64>, Option<(i64, Refusal)>) {
    let mut delivered = Vec::new();
    for event in chain {
        if halt.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        let answer = post(ep, event).await;
        let result = match &answer {
            Ok(()) => "delivered",
            Err(Refusal::Gone) => "gone",
            Err(Refusal::Failed(_)) => "failed",
        };
        metrics
            .webhook_deliveries
            .with_label_values(&[ep.workspace, ep.name, result])
            .inc();
        if let Err(refusal) = answer {
            halt.store(true, Ordering::Relaxed);
            return (delivered, Some((event.seq, refusal)));
        }
        let waited = (now_millis() - event.at).max(0) as f64 / 1000.0;
        metrics
            .webhook_latency
            .with_label_values(&[ep.workspace, ep.name])
            .observe(waited);
        delivered.push(event.seq);
    }
    (delivered, None)
}

/// The body of an event's delivery, serialized from the event in place.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
    id: &'a str,
    workspace: &'a str,
    seq: i64,
}

fn body(event: &EventRecord) -> String {
    let body = Body {
        kind: &event.kind,
        timestamp: format_millis(event.at),
        data: &event.data,
        id: &event.id,
        workspace: &event.workspace,
        seq: event.seq,
    };
    // A struct of strings and a JSON value: serializing cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// POSTs one event, signed with every secret the endpoint has.
async fn post(ep: &Endpoint<'_>, event: &EventRecord) -> Result<(), Refusal> {
    let body = body(event);
    let timestamp = now_millis() / 1000;
    // Written only by a whole-value replace; a poisoned lock still holds one.
    let signer = ep.signer.read().unwrap_or_else(|p| p.into_inner()).clone();
    let signed = signer.sign(&event.id, timestamp, &body);
    let status = match &ep.url {
        Ok(url) => {
            let request = (ep.http.request_to(Method::POST, url.clone()))
                .header("content-type", "application/json")
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signed)
                .body(body);
            ep.http.status_of(request).await
        }
        Err(e) => Err(e.clone()),
    };
    match status {
        Ok(s) if s.is_success() => Ok(()),
        Ok(StatusCode::GONE) => Err(Refusal::Gone),
        Ok(s) => Err(Refusal::Failed(format!("HTTP {}", s.as_u16()))),
        // The class only: never the receiver's body, never a secret.
        Err(e) => Err(Refusal::Failed(e.class.to_string())),
    }
}

/// Where the cursor ends: past every event before the first one not
/// `passed`. A failure (the earliest, if several chains failed) schedules
/// the next pass, or disables the endpoint.
fn end_of_pass(
    cursor: &Cursor,
    events: &[EventRecord],
    passed: impl Fn(&EventRecord) -> bool,
    succeeded: bool,
    mut failures: Vec<(i64, Refusal)>,
    retry_after: &[Duration],
) -> PassEnd {
    let delivered_seq = events
        .iter()
        .take_while(|e| passed(e))
        .last()
        .map_or(cursor.delivered_seq, |e| e.seq);
    let moved = delivered_seq > cursor.delivered_seq;
    // A 410 anywhere decides; else the earliest failure.
    failures.sort_by_key(|(seq, r)| (*r != Refusal::Gone, *seq));
    let Some((_, first)) = failures.into_iter().next() else {
        let attempts = if moved { 0 } else { cursor.attempts };
        return PassEnd {
            delivered_seq,
            attempts,
            succeeded,
            failure: None,
        };
    };
    let attempts = if moved { 1 } else { cursor.attempts + 1 };
    let failure = match (first, retry_after.get(attempts as usize - 1)) {
        (Refusal::Gone, _) => Failure::Disable {
            class: "410 Gone".into(),
        },
        (Refusal::Failed(class), Some(wait)) => Failure::Retry {
            at: now_millis() + (*wait + jitter(*wait)).as_millis() as i64,
            class,
        },
        (Refusal::Failed(class), None) => Failure::Disable {
            class: format!("failed for the whole retry schedule: {class}"),
        },
    };
    PassEnd {
        delivered_seq,
        attempts,
        succeeded,
        failure: Some(failure),
    }
}

/// Up to a fifth more than `wait`, so endpoints that failed together spread
/// out.
fn jitter(wait: Duration) -> Duration {
    let spread = wait.as_millis() as u64 / 5 + 1;
    let ms = crate::token::random_id()
        .map(|id| id.bytes().map(u64::from).sum::<u64>() % spread)
        .unwrap_or(0);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_wildcards() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&p(&["member.*"]), "member.created"));
        assert!(!wants(&p(&["member.*"]), "group.created"));
        assert!(wants(&p(&["*"]), "group.created"));
        assert!(wants(&p(&["group.deleted"]), "group.deleted"));
        assert!(!wants(&p(&["group.deleted"]), "group.deleted_later"));
        assert!(
            !wants(&p(&["*"]), "sign_in.succeeded"),
            "sign-ins are opt-in"
        );
        assert!(wants(&p(&["*", "sign_in.*"]), "sign_in.failed"));
    }

    fn events(n: i64) -> Vec<EventRecord> {
        (1..=n)
            .map(|seq| EventRecord {
                id: format!("evt_{seq}"),
                workspace: "acme".into(),
                seq,
                kind: "member.created".into(),
                subject: Some(format!("m{}", seq % 2)),
                at: 0,
                data: serde_json::Value::Null,
            })
            .collect()
    }

    fn cursor(at: i64, attempts: i64) -> Cursor {
        Cursor {
            delivered_seq: at,
            attempts,
            skip: (0, 0),
            last: 0,
        }
    }

    #[test]
    fn the_cursor_stops_before_the_first_event_not_delivered() {
        let evs = events(5);
        // 1, 2 and 4 delivered, 3 failed: 4 is sent again on the retry.
        let failed = vec![(3, Refusal::Failed("HTTP 500".into()))];
        let end = end_of_pass(
            &cursor(0, 3),
            &evs,
            |e| e.seq != 3 && e.seq != 5,
            true,
            failed,
            &RETRY_AFTER,
        );
        assert_eq!(end.delivered_seq, 2);
        assert_eq!(end.attempts, 1, "the cursor moved: the count starts over");
        assert!(
            matches!(end.failure, Some(Failure::Retry { ref class, .. }) if class == "HTTP 500")
        );
        // Nothing moved: the count goes on, and runs out into a disablement.
        let failed = vec![(1, Refusal::Failed("timed out".into()))];
        let end = end_of_pass(&cursor(0, 8), &evs, |_| false, false, failed, &RETRY_AFTER);
        assert_eq!((end.delivered_seq, end.attempts), (0, 9));
        assert!(matches!(end.failure, Some(Failure::Disable { .. })));
    }

    #[test]
    fn gone_disables_and_a_clean_pass_resets() {
        let evs = events(3);
        let failed = vec![(3, Refusal::Failed("HTTP 500".into())), (2, Refusal::Gone)];
        let end = end_of_pass(
            &cursor(0, 0),
            &evs,
            |e| e.seq == 1,
            true,
            failed,
            &RETRY_AFTER,
        );
        assert_eq!(end.delivered_seq, 1);
        assert_eq!(
            end.failure,
            Some(Failure::Disable {
                class: "410 Gone".into()
            })
        );
        let end = end_of_pass(&cursor(0, 2), &evs, |_| true, true, vec![], &RETRY_AFTER);
        assert_eq!((end.delivered_seq, end.attempts, end.failure), (3, 0, None));
        // Out of time before the end, without a failure: due again at once.
        let end = end_of_pass(
            &cursor(1, 0),
            &evs,
            |e| e.seq < 3,
            true,
            vec![],
            &RETRY_AFTER,
        );
        assert_eq!((end.delivered_seq, end.failure), (2, None));
    }
}
