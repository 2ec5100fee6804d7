//! Faults on a real control plane with the real identity service: what the
//! operator does when the service goes away, when it rejects the operator's
//! credentials, and when a SCIMToken rotation is cut off between registering a
//! token and writing its Secret; and the identity service killed in the
//! middle of a burst of SCIM writes a webhook receiver follows, and one of two
//! replicas on PostgreSQL killed in the middle of its deliveries. Each test runs
//! its own control plane, service and operator, so a fault in one touches no
//! other.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use idsync::service::store::ObjectKind;

use kube::Client;
use serde_json::Value;
use support::cluster::{ControlPlane, OperatorProcess, ServiceProcess, eventually};

/// Operator resync period in these tests.
const RESYNC: &str = "2s";

struct Stack {
    dir: std::path::PathBuf,
    cp: ControlPlane,
    service: Option<ServiceProcess>,
    operator: OperatorProcess,
}

fn stack(name: &str) -> Stack {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), name);
    let (cp, service, operator) = support::cluster::start_stack(&dir, RESYNC);
    Stack {
        dir,
        cp,
        service: Some(service),
        operator,
    }
}

impl Stack {
    fn service(&self) -> &ServiceProcess {
        self.service.as_ref().expect("the service is running")
    }

    /// `status.conditions[type=Ready]` of an object, as (status, reason, message).
    fn ready(&self, kind: &str, ns: &str, name: &str) -> Option<(String, String, String)> {
        let (ok, out, _) = self
            .cp
            .kubectl_run(&["get", kind, name, "-n", ns, "-o", "json"], None);
        if !ok {
            return None;
        }
        let obj: Value = serde_json::from_str(&out).ok()?;
        let cond = obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        let field = |k: &str| cond[k].as_str().unwrap_or_default().to_string();
        Some((field("status"), field("reason"), field("message")))
    }

    /// How many reconciles of `kind` ended with `result` over `window`.
    async fn reconciles_during(&self, kind: &str, result: &str, window: Duration) -> f64 {
        let before = self.reconcile_results(kind, result).await;
        tokio::time::sleep(window).await;
        self.reconcile_results(kind, result).await - before
    }

    async fn reconcile_results(&self, kind: &str, result: &str) -> f64 {
        self.operator
            .metric_sum(
                "idsync_operator_reconciles_total",
                &[&format!("kind=\"{kind}\""), &format!("result=\"{result}\"")],
            )
            .await
    }
}

async fn secret_token(client: &Client, ns: &str, name: &str) -> Option<String> {
    support::cluster::secret_value(client, ns, name, "token").await
}

async fn scim_status(service: &ServiceProcess, workspace: &str, token: &str) -> u16 {
    support::cluster::scim_status(&format!("{}/scim/v2/{workspace}", service.url), token).await
}

/// The identity service dies: the operator says so in status (Ready=False,
/// ServiceUnavailable), counts it, retries with backoff rather than in a hot
/// loop, and recovers by itself when the service is back.
#[tokio::test]
async fn an_unreachable_service_is_reported_retried_with_backoff_and_recovered() {
    let mut s = stack("e2e-faults-down");
    s.cp.apply(&support::cluster::tenant_yaml(s.service(), "down", "down"));
    s.cp.wait_ready("workspaces", "down", "main", "60s");

    let (port, token) = (s.service().port(), s.service().admin_token.clone());
    s.service.take().expect("running").kill();
    let (_, reason, message) = eventually(
        "Workspace Ready=False after the service died",
        Duration::from_secs(30),
        || async {
            s.ready("workspaces", "down", "main")
                .filter(|(status, _, _)| status == "False")
        },
    )
    .await;
    assert_eq!(reason, "ServiceUnavailable", "{message}");
    assert!(!message.is_empty(), "the condition says what failed");

    // Ten seconds of outage: exponential backoff (0.5 s doubling, jittered)
    // plus one resync pass every 2 s make a handful of attempts, not hundreds.
    let attempts = s
        .reconciles_during("Workspace", "service_unavailable", Duration::from_secs(10))
        .await;
    eprintln!("{attempts} Workspace attempts in 10 s of outage");
    assert!(
        (1.0..=15.0).contains(&attempts),
        "{attempts} Workspace attempts in 10 s of outage"
    );

    s.service = Some(ServiceProcess::start_on(&s.dir, port, token));
    eventually("Workspace Ready again", Duration::from_secs(60), || async {
        s.ready("workspaces", "down", "main")
            .filter(|(status, _, _)| status == "True")
    })
    .await;
}

/// The service rejects the operator's admin token (a 4xx, a configuration
/// problem): a clear condition, and no retry loop — the object is retried on
/// the next resync pass or when its Secret changes, and fixing the Secret
/// fixes the status.
#[tokio::test]
async fn a_rejected_admin_token_is_a_clear_condition_without_a_retry_loop() {
    let s = stack("e2e-faults-4xx");
    let yaml = support::cluster::tenant_yaml(s.service(), "rejected", "rejected");
    let wrong = yaml.replace(&s.service().admin_token, "not-the-admin-token");
    assert_ne!(yaml, wrong);
    s.cp.apply(&wrong);
    let (_, reason, message) = eventually(
        "IdentityService Ready=False",
        Duration::from_secs(30),
        || async {
            s.ready("identityservices", "rejected", "idsync")
                .filter(|(status, _, _)| status == "False")
        },
    )
    .await;
    assert_eq!(reason, "ServiceUnauthorized", "{message}");
    assert!(
        !message.contains("not-the-admin-token"),
        "the token never reaches status: {message}"
    );

    // Over 10 s (five resync periods) the IdentityService is tried about once
    // per pass: no backoff loop of its own.
    let attempts = s
        .reconciles_during(
            "IdentityService",
            "service_rejected",
            Duration::from_secs(10),
        )
        .await;
    eprintln!("{attempts} IdentityService attempts in 10 s with a rejected token");
    assert!(
        (1.0..=8.0).contains(&attempts),
        "{attempts} attempts in 10 s with a 2 s resync"
    );

    // The platform team fixes the Secret: the watch on it re-queues at once.
    s.cp.apply(&yaml);
    s.cp.wait_ready("identityservices", "rejected", "idsync", "30s");
}

const FREEZE_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: freeze-secrets}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [UPDATE]
        resources: [secrets]
  validations:
    - expression: "false"
      message: frozen by the rotation fault test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: freeze-secrets}
spec:
  policyName: freeze-secrets
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: rotation}
"#;

/// A rotation cut off between its steps — the new token registered with the
/// service, but the Secret write refused by the apiserver (an admission policy
/// stands in for any API error or a crash at that point) — never breaks the
/// client: the token in the Secret stays accepted throughout, the token that
/// never reached the Secret expires by itself within the overlap, and the
/// rotation completes once writes go through again.
#[tokio::test]
async fn a_rotation_cut_off_before_the_secret_write_never_breaks_the_client() {
    let s = stack("e2e-faults-rotation");
    let client = s.cp.client().await;
    s.cp.apply(&support::cluster::tenant_yaml(
        s.service(),
        "rotation",
        "rotation",
    ));
    s.cp.apply(
        r#"apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {name: scim, namespace: rotation}
spec:
  workspaceRef: {name: main}
  rotation: {every: 30d, overlap: 1h}
"#,
    );
    s.cp.wait_ready("scimtokens", "rotation", "scim", "60s");
    let before = secret_token(&client, "rotation", "scim-scim-token")
        .await
        .expect("the token Secret");
    assert_eq!(scim_status(s.service(), "rotation", &before).await, 200);

    s.cp.apply(FREEZE_POLICY);
    // Policies take effect once the apiserver has loaded them.
    eventually(
        "the freeze policy in force",
        Duration::from_secs(30),
        || async {
            let (ok, _, err) = s.cp.kubectl_run(
                &[
                    "annotate",
                    "secret",
                    "idsync-admin",
                    "-n",
                    "rotation",
                    "probe=1",
                    "--overwrite",
                ],
                None,
            );
            (!ok && err.contains("frozen")).then_some(())
        },
    )
    .await;

    s.cp.apply(
        r#"apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata:
  name: scim
  namespace: rotation
  annotations: {idsync.dev/rotate-requested-at: "2026-11-29T10:00:00Z"}
spec:
  workspaceRef: {name: main}
  rotation: {every: 30d, overlap: 1h}
"#,
    );
    let admin = s.service().admin();
    let tokens_named_scim = || async {
        admin
            .list_tokens("rotation")
            .await
            .expect("tokens")
            .into_iter()
            .filter(|t| t.name == "rotation.scim")
            .collect::<Vec<_>>()
    };
    // The operator got as far as registering a new token, then the Secret
    // write was refused.
    eventually(
        "a new token registered but not in the Secret",
        Duration::from_secs(30),
        || async { (tokens_named_scim().await.len() >= 2).then_some(()) },
    )
    .await;
    let (status, reason, message) = eventually(
        "SCIMToken reports the refused write",
        Duration::from_secs(30),
        || async {
            s.ready("scimtokens", "rotation", "scim")
                .filter(|(status, _, _)| status == "False")
        },
    )
    .await;
    assert_eq!(status, "False");
    assert!(message.contains("frozen"), "{reason}: {message}");

    // Meanwhile the client's token, still the one in the Secret, works, and
    // every token that never reached the Secret expires within the overlap.
    for _ in 0..5 {
        let in_secret = secret_token(&client, "rotation", "scim-scim-token")
            .await
            .unwrap();
        assert_eq!(in_secret, before, "the Secret was not written");
        assert_eq!(scim_status(s.service(), "rotation", &before).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let in_secret_id = idsync::token::parse_id(&before).unwrap().to_string();
    let horizon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    for t in tokens_named_scim().await {
        if t.id == in_secret_id || !t.valid {
            continue;
        }
        let expires = t
            .expires_at
            .unwrap_or_else(|| panic!("orphan token {} never expires", t.id));
        assert!(
            expires <= horizon,
            "orphan token {} outlives the overlap",
            t.id
        );
    }

    // Writes go through again: the rotation completes, and the client reading
    // the Secret is never refused.
    let (ok, out, err) = s.cp.kubectl_run(
        &[
            "delete",
            "validatingadmissionpolicybinding",
            "freeze-secrets",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let after = eventually(
        "the rotated token in the Secret",
        Duration::from_secs(60),
        || async {
            secret_token(&client, "rotation", "scim-scim-token")
                .await
                .filter(|t| *t != before)
        },
    )
    .await;
    assert_eq!(scim_status(s.service(), "rotation", &after).await, 200);
    assert_eq!(
        scim_status(s.service(), "rotation", &before).await,
        200,
        "the previous token stays valid for the overlap"
    );
    s.cp.wait_ready("scimtokens", "rotation", "scim", "30s");
}

/// Workspace `ws` with a SCIM token (answered first) and a webhook
/// subscribed to `member.created`, delivering to a Standard Webhooks
/// receiver in `mode` (answered with the file it records to).
async fn subscribed_workspace(
    admin: &idsync::admin::AdminClient,
    dir: &std::path::Path,
    ws: &str,
    mode: &str,
) -> (String, support::process::OwnedProcess, std::path::PathBuf) {
    admin
        .put_object(ObjectKind::Workspace, ws, ws, &serde_json::json!({}))
        .await
        .expect("workspace");
    let token = support::scim::issue_token(admin, ws).await;
    let secret = format!("whsec_{}=", "A".repeat(43));
    let (receiver, url, out) = support::webhooks::receiver(dir, &secret, mode);
    let hook =
        serde_json::json!({"url": url, "eventTypes": ["member.created"], "secrets": [secret]});
    admin
        .put_object(ObjectKind::Webhook, ws, "product", &hook)
        .await
        .expect("webhook");
    (token, receiver, out)
}

/// `kill -9` of `service`, then the ids the burst's `clients` had
/// acknowledged once each has stopped.
async fn kill_and_settle(
    service: ServiceProcess,
    clients: Vec<tokio::task::JoinHandle<()>>,
    acked: &Mutex<Vec<String>>,
) -> BTreeSet<String> {
    tokio::task::spawn_blocking(move || service.kill())
        .await
        .expect("killed");
    for c in clients {
        c.await.expect("client task");
    }
    acked
        .lock()
        .expect("not poisoned")
        .iter()
        .cloned()
        .collect()
}

/// A burst of `n` SCIM creates of users `<prefix>CC-IIII` from 16 clients
/// at `base`, each pushing the id of every user acknowledged (201) to
/// `acked`; a client stops at its first failed request (its replica is gone).
fn burst(
    base: &str,
    token: &str,
    n: usize,
    prefix: &'static str,
    acked: &Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..16)
        .map(|c| {
            let (base, token, acked) = (base.to_string(), token.to_string(), acked.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..(n / 16) {
                    let body = serde_json::json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": format!("{prefix}{c:02}-{i:04}"),
                    });
                    let Ok(r) = http
                        .post(format!("{base}/Users"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                    else {
                        return; // the service is gone
                    };
                    if r.status() == 201
                        && let Ok(user) = r.json::<Value>().await
                        && let Some(id) = user["id"].as_str()
                    {
                        acked.lock().expect("not poisoned").push(id.to_string());
                    }
                }
            })
        })
        .collect()
}

/// `kill -9` of the identity service in the middle of a burst of SCIM
/// creates, with a webhook receiver (the Standard Webhooks reference
/// library) recording what it gets: after a restart, every create the IdP
/// saw acknowledged has its `member.created` delivered, every event
/// delivered is of a user that exists (its write committed), and an event
/// delivered twice carries the same id both times.
#[tokio::test]
async fn a_service_killed_mid_burst_delivers_every_acknowledged_write_after_restart() {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "kill-burst");
    let service = ServiceProcess::start(&dir);
    let (port, admin_token) = (service.port(), service.admin_token.clone());
    let admin = service.admin();
    let (token, _receiver, out) = subscribed_workspace(&admin, &dir, "burst", "ok").await;

    let base = format!("{}/scim/v2/burst", service.url);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients = burst(&base, &token, 5000, "u", &acked);
    // Mid-burst: once a thousand creates were acknowledged.
    eventually("a thousand creates", Duration::from_secs(60), || {
        let n = acked.lock().expect("not poisoned").len();
        async move { (n >= 1000).then_some(()) }
    })
    .await;
    let acked = kill_and_settle(service, clients, &acked).await;
    assert!(
        acked.len() < 5000,
        "the kill came before the end of the burst"
    );

    let service = ServiceProcess::start_on(&dir, port, admin_token);
    every_acknowledged_write_delivered(
        &out,
        &acked,
        &format!("{}/scim/v2/burst", service.url),
        &token,
    )
    .await;
}

/// Waits until every create in `acked` has its event delivered (204) to the
/// receiver recording to `out`, then checks what a product would: every
/// delivery verified, every user delivered exists at `base` (its write
/// committed, acknowledged or not), and a duplicate is the same event (one
/// id, one subject and seq). Answers the receiver's lines.
async fn every_acknowledged_write_delivered(
    out: &std::path::Path,
    acked: &BTreeSet<String>,
    base: &str,
    token: &str,
) -> Vec<Value> {
    let delivered = |lines: &[Value]| -> BTreeSet<String> {
        (lines.iter())
            .filter(|l| l["status"] == 204)
            .filter_map(|l| l["subject"].as_str().map(str::to_string))
            .collect()
    };
    let lines = eventually(
        "every acknowledged create delivered",
        Duration::from_secs(150),
        || async move {
            let lines = support::webhooks::received(out, 0).await;
            delivered(&lines).is_superset(acked).then_some(lines)
        },
    )
    .await;
    assert!(
        lines.iter().all(|l| l["verified"] == true),
        "signatures verify after the fault"
    );
    let http = reqwest::Client::new();
    for id in delivered(&lines).difference(acked) {
        let r = http
            .get(format!("{base}/Users/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        assert_eq!(
            r.status(),
            200,
            "{id} was delivered but its create did not commit"
        );
    }
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in &lines {
        by_id
            .entry(l["id"].to_string())
            .or_default()
            .insert(format!("{}/{}", l["subject"], l["seq"]));
    }
    assert!(
        by_id.values().all(|v| v.len() == 1),
        "an id named two events"
    );
    lines
}

/// Two `idsync serve` replicas on one PostgreSQL, SCIM creates spread over
/// both, a receiver that answers slowly (so deliveries are in flight), and
/// `kill -9` of the replica delivering: the other takes the endpoint over
/// once the dead one's claim runs out, every acknowledged create is
/// delivered, and no event is ever delivered twice at the same time.
#[tokio::test]
async fn a_replica_killed_mid_delivery_leaves_its_claim_to_the_other() {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "two-replicas");
    let database = support::postgres::shared().fresh_database().await;
    let token = format!("e2e-admin-{}", idsync::token::random_id().expect("random"));
    let start = |name: &str| {
        let port = support::cluster::free_port();
        ServiceProcess::start_replica(&dir, name, port, token.clone(), &database)
    };
    let replicas = [start("replica-a"), start("replica-b")];
    let admin = replicas[0].admin();
    let (scim_token, _receiver, out) = subscribed_workspace(&admin, &dir, "pair", "slow:0.2").await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let bases = replicas
        .each_ref()
        .map(|r| format!("{}/scim/v2/pair", r.url));
    let mut clients = burst(&bases[0], &scim_token, 1600, "a", &acked);
    clients.extend(burst(&bases[1], &scim_token, 1600, "b", &acked));

    // The replica delivering now: its delivery count grows.
    let delivering = eventually("a replica delivering", Duration::from_secs(60), || {
        let urls = replicas.each_ref().map(|r| r.url.clone());
        async move {
            let before = futures::future::join_all(urls.iter().map(|u| deliveries(u))).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = futures::future::join_all(urls.iter().map(|u| deliveries(u))).await;
            (0..2).find(|&i| after[i] > before[i] && after[i] >= 50.0)
        }
    })
    .await;
    let [a, b] = replicas;
    let (killed, survivor) = if delivering == 0 { (a, b) } else { (b, a) };
    let before = deliveries(&survivor.url).await;
    let acked = kill_and_settle(killed, clients, &acked).await;
    let base = format!("{}/scim/v2/pair", survivor.url);
    let lines = every_acknowledged_write_delivered(&out, &acked, &base, &scim_token).await;
    // The backlog (a slow receiver keeps one) went out from the survivor:
    // at once if it held the claim, else once the dead one's ran out.
    assert!(
        deliveries(&survivor.url).await > before,
        "the survivor delivered nothing after the kill"
    );
    // Never twice at once: an event's deliveries do not overlap in time.
    let mut spans: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for l in &lines {
        let span = (
            l["start"].as_f64().unwrap_or(0.0),
            l["end"].as_f64().unwrap_or(0.0),
        );
        spans.entry(l["id"].to_string()).or_default().push(span);
    }
    for (id, mut spans) in spans {
        spans.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(
            spans.windows(2).all(|w| w[0].1 <= w[1].0),
            "{id} was delivered twice at once: {spans:?}"
        );
    }
}

/// Deliveries a replica made, from its `/metrics`.
async fn deliveries(url: &str) -> f64 {
    let metrics = format!("{url}/metrics");
    let name = "idsync_webhook_deliveries_total";
    support::cluster::metric_sum_at(&metrics, name, &["result=\"delivered\""]).await
}
