//! Webhook deliveries of lifecycle events, verified by the Standard Webhooks
//! reference library (PyPI `standardwebhooks`) in a receiver of its own.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::STANDARD};
use idsync::service::store::ObjectKind;
use serde_json::{Value, json};

use crate::support::{
    Db,
    cluster::free_port,
    scim::ScimFixture,
    webhooks::{received, receiver, receiver_on, svix_receiver},
};

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode([42u8; 32]))
}

async fn subscribe(f: &ScimFixture, url: &str, types: Value) {
    f.admin
        .put_object(
            ObjectKind::Webhook,
            "acme",
            "product",
            &json!({"url": url, "eventTypes": types, "secrets": [secret()]}),
        )
        .await
        .expect("webhook stored");
}

/// Delivered in order, signed so the reference library verifies them, only
/// the types asked for, and the secret never shown back.
async fn deliveries_verify_with_the_reference_library_in_order(db: Db) {
    let f = ScimFixture::start(db, json!({})).await;
    let (_receiver, url, out) = receiver(f.db.dir.path(), &secret(), "ok");
    subscribe(&f, &url, json!(["member.*"])).await;
    let view = f
        .admin
        .get_object(ObjectKind::Webhook, "acme", "product")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(view.spec["secretsSet"], 1, "{}", view.spec);
    assert!(!view.spec.to_string().contains("whsec_"), "{}", view.spec);
    for name in ["ada", "bob", "cy"] {
        f.create_user(name).await;
    }
    f.create_group("Engineering", &[]).await;
    let got = received(&out, 3).await;
    // Different members' events may arrive in any order (they go out
    // concurrently); each arrives once.
    let mut names: Vec<&str> = got.iter().filter_map(|l| l["userName"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["ada", "bob", "cy"], "{got:?}");
    assert!(
        got.iter()
            .all(|l| l["verified"] == true && l["type"] == "member.created"),
        "{got:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        received(&out, 3).await.len(),
        3,
        "group events were not asked for"
    );
    f.stop().await;
}

/// Svix's own library verifies the deliveries too, with the secret of a
/// rotation's both: a receiver holding either one accepts every delivery.
#[tokio::test]
async fn svix_verifies_deliveries_with_either_secret_of_a_rotation() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let old = secret();
    let new = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    let (_a, old_url, old_out) = svix_receiver(f.db.dir.path(), &old);
    let (_b, new_url, new_out) = svix_receiver(f.db.dir.path(), &new);
    for (name, url) in [("old", &old_url), ("new", &new_url)] {
        let doc = json!({"url": url, "eventTypes": ["member.*"], "secrets": [new, old]});
        f.admin
            .put_object(ObjectKind::Webhook, "acme", name, &doc)
            .await
            .expect("webhook stored");
    }
    f.create_user("ada").await;
    for out in [&old_out, &new_out] {
        let got = received(out, 1).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["verified"], true, "{got:?}");
        assert_eq!(got[0]["userName"], "ada");
    }
    // A secret it was never given does not verify.
    let stranger = format!("whsec_{}", STANDARD.encode([9u8; 32]));
    let (_c, url, out) = svix_receiver(f.db.dir.path(), &stranger);
    let doc = json!({"url": url, "eventTypes": ["member.*"], "secrets": [new]});
    f.admin
        .put_object(ObjectKind::Webhook, "acme", "stranger", &doc)
        .await
        .expect("webhook stored");
    f.create_user("bob").await;
    let got = received(&out, 1).await;
    assert_eq!(got[0]["verified"], false, "{got:?}");
    f.stop().await;
}

/// A rotation in the middle of a burst: the service signs with both
/// secrets from the moment it is told (a pass in flight too, within a tick),
/// so a receiver that then switches to the new secret alone, at a random
/// moment while events keep coming, rejects nothing. The switch comes at
/// least a tick and a delivery timeout (5.25 s) after the rotation: a
/// delivery signed just before it may reach an overloaded receiver that
/// late (one answering slowly does: its backlog waits in the kernel).
#[tokio::test]
async fn a_rotation_mid_burst_is_verified_throughout() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let dir = f.db.dir.path();
    let file = dir.join("secrets");
    let (old, new) = (secret(), format!("whsec_{}", STANDARD.encode([7u8; 32])));
    std::fs::write(&file, format!("{old}\n")).expect("secrets file");
    // Slow answers keep a pass in flight across the rotation.
    let (_receiver, url, out) = receiver(dir, &format!("@{}", file.display()), "slow:0.2");
    let hook =
        |secrets: Value| json!({"url": url, "eventTypes": ["member.created"], "secrets": secrets});
    let admin = &f.admin;
    let put = |doc: Value| async move {
        admin
            .put_object(ObjectKind::Webhook, "acme", "product", &doc)
            .await
    };
    put(hook(json!([old]))).await.expect("webhook stored");
    // Creates until 50 after the receiver switched, however fast they go.
    let switched_at = std::sync::OnceLock::new();
    let burst = async {
        let (mut n, mut after) = (0, 0);
        while after < 50 {
            f.create_user(&format!("u{n:04}")).await;
            n += 1;
            after += usize::from(switched_at.get().is_some());
        }
        (n, Instant::now())
    };
    let rotate = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        put(hook(json!([new, old]))).await.expect("rotated");
        let jitter = idsync::token::random_id()
            .expect("random")
            .bytes()
            .map(u64::from)
            .sum::<u64>()
            % 300;
        tokio::time::sleep(Duration::from_millis(5350 + jitter)).await;
        // Renamed into place: the receiver never reads a half-written file.
        let next = file.with_extension("next");
        std::fs::write(&next, format!("{new}\n")).expect("secrets file");
        std::fs::rename(&next, &file).expect("secrets file");
        *switched_at.get_or_init(Instant::now)
    };
    let ((n, ended), switched) = tokio::join!(burst, rotate);
    assert!(ended > switched, "the switch came before the burst ended");
    let got = received(&out, n).await;
    let ids: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|l| l["id"].as_str()).collect();
    let rejected: Vec<&Value> = got.iter().filter(|l| l["verified"] != true).collect();
    assert!(rejected.is_empty(), "rejected: {rejected:?}");
    assert_eq!(ids.len(), n, "{} of {n} delivered", ids.len());
    f.stop().await;
}

/// Deactivates a user (a `member.deactivated` after its `member.created`).
async fn deactivate(f: &ScimFixture, id: &str) {
    let r = f
        .patch(
            &format!("/Users/{id}"),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}],
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The deliveries that got a 2xx, per subject, in the order they arrived.
fn delivered_per_subject(got: &[Value]) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut per: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for line in got.iter().filter(|l| l["status"] == 204) {
        let subject = line["subject"].as_str().unwrap_or_default().to_string();
        per.entry(subject)
            .or_default()
            .push(line["seq"].as_i64().unwrap_or(0));
    }
    per
}

/// A failed delivery is retried with the same webhook-id, and each
/// member's events still arrive in their order; 410 Gone stops deliveries
/// for good (until a replay), and the endpoint's status says why.
#[tokio::test]
async fn retries_keep_the_id_and_each_members_order_and_gone_disables() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let (_flaky, url, out) = receiver(f.db.dir.path(), &secret(), "fail:1");
    subscribe(&f, &url, json!(["*"])).await;
    let ada = f.create_user("ada").await;
    let bob = f.create_user("bob").await;
    deactivate(&f, &ada).await;
    deactivate(&f, &bob).await;
    let got = received(&out, 5).await;
    let failed: Vec<&Value> = got.iter().filter(|l| l["status"] == 500).collect();
    assert_eq!(failed.len(), 1, "{got:?}");
    let retried = got
        .iter()
        .filter(|l| l["id"] == failed[0]["id"] && l["status"] == 204)
        .count();
    assert_eq!(retried, 1, "a retry keeps its webhook-id: {got:?}");
    // Each member's events arrive in their order; a member delivered
    // beside the failure may get an event twice, with the same id.
    let per = delivered_per_subject(&got);
    assert_eq!(per.len(), 2, "{got:?}");
    for (subject, seqs) in per {
        assert!(seqs.is_sorted(), "{subject}'s events out of order: {got:?}");
        assert_eq!(
            seqs.iter().collect::<std::collections::BTreeSet<_>>().len(),
            2
        );
    }
    let status = f
        .admin
        .webhook_deliveries("acme", "product")
        .await
        .expect("status");
    assert_eq!(status.pending, 0, "{status:?}");
    assert_eq!(
        status.last_failure.as_deref(),
        Some("HTTP 500"),
        "{status:?}"
    );
    assert!(
        status.last_success_at >= status.last_failure_at,
        "{status:?}"
    );

    let (_gone, url, gone_out) = receiver(f.db.dir.path(), &secret(), "gone");
    f.admin
        .put_object(
            ObjectKind::Webhook,
            "acme",
            "retired",
            &json!({"url": url, "eventTypes": ["*"], "secrets": [secret()]}),
        )
        .await
        .expect("webhook stored");
    f.create_user("cy").await;
    assert_eq!(received(&gone_out, 1).await.len(), 1);
    f.create_user("dee").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        received(&gone_out, 2).await.len(),
        1,
        "nothing after 410 Gone"
    );
    let status = f
        .admin
        .webhook_deliveries("acme", "retired")
        .await
        .expect("status");
    assert!(status.disabled_at.is_some(), "{status:?}");
    assert_eq!(status.last_failure.as_deref(), Some("410 Gone"));
    assert_eq!(status.pending, 2, "cy's and dee's events wait: {status:?}");
    f.stop().await;
}

/// Svix's retry schedule made sixty times faster (5 s → 1 s, 5 min → 5 s,
/// 30 min → 30 s, …), so that a ten-minute outage takes ten seconds.
fn retries_sixty_times_faster() -> Vec<Duration> {
    idsync::service::webhooks::RETRY_AFTER
        .iter()
        .map(|wait| (*wait / 60).max(Duration::from_secs(1)))
        .collect()
}

/// A receiver down for "ten minutes" (ten seconds on a schedule sixty times
/// faster) while members are created, changed and deleted: the endpoint is
/// retried on its schedule, not disabled, and once the receiver is back
/// every event arrives, each member's in order.
#[tokio::test]
async fn a_receiver_down_for_ten_minutes_gets_everything_in_order_when_back() {
    let f = ScimFixture::start_with(Db::Sqlite, json!({}), |config| {
        config.webhook_retry = retries_sixty_times_faster();
    })
    .await;
    let port = free_port();
    subscribe(
        &f,
        &format!("http://127.0.0.1:{port}/hook"),
        json!(["member.*"]),
    )
    .await;
    let outage = Instant::now();
    let mut members = Vec::new();
    let mut round = 0;
    while outage.elapsed() < Duration::from_secs(10) {
        let id = f.create_user(&format!("m{round:03}")).await;
        if round % 2 == 0 {
            deactivate(&f, &id).await;
        }
        if round % 3 == 0 {
            let r = f
                .call(reqwest::Method::DELETE, &format!("/Users/{id}"), None)
                .await;
            assert_eq!(r.status, 204, "{}", r.body);
        }
        members.push(id);
        round += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let down = f
        .admin
        .webhook_deliveries("acme", "product")
        .await
        .expect("status");
    assert!(down.pending > 0 && down.disabled_at.is_none(), "{down:?}");
    assert!(
        down.last_failure.is_some() && down.next_attempt_at.is_some(),
        "{down:?}"
    );

    let (_receiver, _, out) = receiver_on(f.db.dir.path(), port, &secret(), "ok");
    let events: Vec<_> = f
        .admin
        .events("acme", 0, 1000)
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.kind.starts_with("member."))
        .collect();
    // The third retry, 36 s after the outage began (and its jitter), is
    // the first the receiver is back for.
    let mut got = received(&out, events.len()).await;
    if got.len() < events.len() {
        got = received(&out, events.len()).await;
    }
    // Each member's events, first arrivals only (a retry may repeat one).
    let mut seen = std::collections::BTreeSet::new();
    let first: Vec<Value> = got
        .iter()
        .filter(|l| l["status"] == 204 && seen.insert(l["id"].to_string()))
        .cloned()
        .collect();
    let per = delivered_per_subject(&first);
    for member in &members {
        let want: Vec<i64> = (events.iter())
            .filter(|e| e.data["id"] == member.as_str())
            .map(|e| e.seq)
            .collect();
        assert_eq!(per.get(member), Some(&want), "{member}: {got:?}");
    }
    let after = f
        .admin
        .webhook_deliveries("acme", "product")
        .await
        .expect("status");
    assert_eq!((after.pending, after.disabled_at), (0, None), "{after:?}");
    f.stop().await;
}

/// A receiver answering 200 with a body (as most do) gets its deliveries on
/// one kept-alive connection: the answer is read, so the connection goes
/// back to the pool instead of a new one (and a TLS handshake) per event.
#[tokio::test]
async fn deliveries_reuse_a_connection_when_the_answer_has_a_body() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let (_receiver, url, out) = receiver(f.db.dir.path(), &secret(), "body");
    subscribe(&f, &url, json!(["member.*"])).await;
    let ada = f.create_user("ada").await;
    for i in 0..15 {
        let r = f
            .patch(
                &format!("/Users/{ada}"),
                json!({"Operations": [{"op": "replace", "path": "displayName",
                                       "value": format!("Ada {i}")}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = received(&out, 16).await;
    assert!(got.iter().all(|l| l["status"] == 200), "{got:?}");
    let ports: std::collections::BTreeSet<i64> =
        got.iter().filter_map(|l| l["peerPort"].as_i64()).collect();
    assert_eq!(got.len(), 16, "{got:?}");
    assert!(ports.len() <= 2, "a connection per delivery: {ports:?}");
    f.stop().await;
}

/// A replay of a time range delivers its events again with the same ids,
/// and not the events after it that were delivered already.
#[tokio::test]
async fn a_replay_redelivers_the_range_with_the_same_ids() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let (_receiver, url, out) = receiver(f.db.dir.path(), &secret(), "ok");
    subscribe(&f, &url, json!(["member.created"])).await;
    let from = jiff::Timestamp::now();
    f.create_user("ada").await;
    f.create_user("bob").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let until = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    f.create_user("cy").await;
    let first = received(&out, 3).await;
    assert_eq!(first.len(), 3, "{first:?}");
    let range = idsync::admin::ReplayRequest {
        from,
        until: Some(until),
    };
    let queued = f
        .admin
        .replay_webhook("acme", "product", &range)
        .await
        .expect("replayed");
    assert_eq!(queued.events, 2, "ada's and bob's creation");
    let got = received(&out, 5).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got_then = received(&out, 0).await;
    assert_eq!(got_then.len(), 5, "cy is not delivered again: {got_then:?}");
    let ids = |lines: &[Value], names: &[&str]| -> std::collections::BTreeSet<String> {
        (lines.iter())
            .filter(|l| names.contains(&l["userName"].as_str().unwrap_or_default()))
            .map(|l| l["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(
        ids(&got[3..], &["ada", "bob", "cy"]),
        ids(&first, &["ada", "bob"]),
        "the same ids: {got:?}"
    );
    let audited = f.audit("webhook.replayed").await;
    assert_eq!(audited.len(), 1);
    let backwards = idsync::admin::ReplayRequest {
        from: until,
        until: Some(from),
    };
    let e = f
        .admin
        .replay_webhook("acme", "product", &backwards)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("until"), "{e}");
    f.stop().await;
}

/// Receivers that redirect (to a metadata address), answer hugely, hang,
/// or live at a metadata address: none is followed or read, each failure
/// shows as its class, and SCIM writes go on meanwhile.
#[tokio::test]
async fn hostile_receivers_are_refused_or_timed_out_and_scim_goes_on() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let dir = f.db.dir.path();
    let (_r1, redirect, redirect_out) = receiver(dir, &secret(), "redirect");
    let (_r2, huge, _) = receiver(dir, &secret(), "huge");
    let (_r3, slow, _) = receiver(dir, &secret(), "slow:30");
    let hooks = [
        ("redirect", redirect.as_str()),
        ("huge", huge.as_str()),
        ("slow", slow.as_str()),
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ];
    for (name, url) in hooks {
        f.admin
            .put_object(
                ObjectKind::Webhook,
                "acme",
                name,
                &json!({"url": url, "eventTypes": ["*"], "secrets": [secret()]}),
            )
            .await
            .expect("webhook stored");
    }
    f.create_user("ada").await;
    let expected = [
        ("redirect", Some("answered a redirect")),
        ("huge", None),
        ("slow", Some("timed out")),
        ("metadata", Some("address refused")),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, failure) in expected {
        loop {
            let s = f
                .admin
                .webhook_deliveries("acme", name)
                .await
                .expect("status");
            let settled = match failure {
                None => s.last_success_at.is_some(),
                Some(_) => s.last_failure.is_some(),
            };
            if settled {
                let class = s.last_failure.as_deref().unwrap_or_default();
                assert!(
                    failure.is_none_or(|f| class.starts_with(f)),
                    "{name}: {s:?}"
                );
                if failure.is_some() {
                    assert!(s.pending >= 1, "{name}: ada's event waits: {s:?}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "{name} never settled: {s:?}");
            // SCIM keeps answering while deliveries hang.
            // A fresh name each time: a free port can come round again.
            let filler = idsync::token::random_id().expect("random");
            f.create_user(&format!("filler-{filler}")).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let redirect = f
        .admin
        .webhook_deliveries("acme", "redirect")
        .await
        .expect("status");
    assert!(
        redirect.last_success_at.is_none(),
        "a 302 is no delivery: {redirect:?}"
    );
    assert!(!received(&redirect_out, 1).await.is_empty());
    f.stop().await;
}

/// What the admin API refuses in a webhook, never echoing a secret.
#[tokio::test]
async fn malformed_webhooks_are_refused() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let cases = [
        (
            json!({"url": "ftp://x", "eventTypes": ["*"], "secrets": [secret()]}),
            "url",
        ),
        (
            json!({"url": "https://x.example", "eventTypes": [], "secrets": [secret()]}),
            "eventTypes",
        ),
        (
            json!({"url": "https://x.example", "eventTypes": ["member"], "secrets": [secret()]}),
            "eventTypes",
        ),
        (
            json!({"url": "https://x.example", "eventTypes": ["*"], "secrets": ["whsec_hunter2"]}),
            "secrets",
        ),
        (
            json!({"url": "https://x.example", "eventTypes": ["*"]}),
            "secrets",
        ),
        (
            json!({"url": "https://x.example", "eventTypes": ["*"], "secrets": [secret()],
                   "caBundle": "hunter2"}),
            "caBundle",
        ),
        (
            // PEM armour around bytes that are no certificate.
            json!({"url": "https://x.example", "eventTypes": ["*"], "secrets": [secret()],
                   "caBundle": "-----BEGIN CERTIFICATE-----\naHVudGVyMiBpcyBubyBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"}),
            "caBundle",
        ),
    ];
    for (doc, says) in cases {
        let e = f
            .admin
            .put_object(ObjectKind::Webhook, "acme", "bad", &doc)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains(says), "{doc}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
    f.stop().await;
}

crate::on_both_databases!(deliveries_verify_with_the_reference_library_in_order);
