//! Webhook deliveries of lifecycle events, verified by the Standard Webhooks
//! reference library (PyPI `standardwebhooks`) in a receiver of its own.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use idsync::service::store::ObjectKind;
use serde_json::{Value, json};

use crate::support::{Db, cluster::free_port, process::OwnedProcess, repo_root, scim::ScimFixture};

fn python() -> PathBuf {
    let venv = std::env::var_os("IDSYNC_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/idsync/venv")
        });
    venv.join("bin/python")
}

/// A receiver on a free port; answers its URL and the file it records to.
fn receiver(dir: &Path, secret: &str, mode: &str) -> (OwnedProcess, String, PathBuf) {
    let port = free_port();
    let out = dir.join(format!("received-{port}.jsonl"));
    let script = repo_root().join("tests/clients/webhook_receiver.py");
    let args = [
        script.display().to_string(),
        port.to_string(),
        secret.to_string(),
        out.display().to_string(),
        mode.to_string(),
    ];
    let log = dir.join(format!("receiver-{port}.log"));
    let process = OwnedProcess::spawn("webhook receiver", &python(), args, &[], &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the receiver did not start: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, format!("http://127.0.0.1:{port}/hook"), out)
}

/// What the receiver recorded, once it holds `n` lines (or after 30 s).
async fn received(out: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let names: Vec<&str> = got.iter().filter_map(|l| l["userName"].as_str()).collect();
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

/// A failed delivery is retried with the same webhook-id, and the events
/// behind it wait their turn; 410 Gone stops deliveries for good.
#[tokio::test]
async fn retries_keep_the_id_and_the_order_and_gone_disables() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let (_flaky, url, out) = receiver(f.db.dir.path(), &secret(), "fail:1");
    subscribe(&f, &url, json!(["*"])).await;
    f.create_user("ada").await;
    f.create_user("bob").await;
    let got = received(&out, 3).await;
    let summary: Vec<(Option<&str>, i64)> = got
        .iter()
        .map(|l| (l["userName"].as_str(), l["status"].as_i64().unwrap_or(0)))
        .collect();
    assert_eq!(
        summary,
        [(Some("ada"), 500), (Some("ada"), 204), (Some("bob"), 204)],
        "{got:?}"
    );
    assert_eq!(got[0]["id"], got[1]["id"], "a retry keeps its webhook-id");

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
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        received(&gone_out, 2).await.len(),
        1,
        "nothing after 410 Gone"
    );
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
