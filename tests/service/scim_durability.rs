//! `kill -9` of `idsync serve` in the middle of a SCIM provisioning burst loses no
//! write it acknowledged: SQLite in WAL mode with synchronous=FULL commits
//! before the 201 leaves.

use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use idsync::{admin::ScimTokenDoc, service::store::ObjectKind};
use serde_json::json;
use support::cluster::ServiceProcess;

#[tokio::test]
async fn kill_9_during_a_provisioning_burst_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let svc = ServiceProcess::start(&dir);
    let admin = svc.admin();
    admin
        .put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .unwrap();
    let token = idsync::token::generate().unwrap();
    admin
        .put_token(
            "acme",
            &token.id,
            &ScimTokenDoc {
                authentication: None,
                name: "burst".into(),
                sha256: Some(token.hash()),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let value = token.expose().to_string();
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let http = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (http, url, value, acknowledged) = (
            http.clone(),
            format!("{}/scim/v2/acme/Users", svc.url),
            value.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({"userName": format!("w{w}-{i}")});
                let Ok(resp) = http.post(&url).bearer_auth(&value).json(&body).send().await else {
                    return; // the server is gone
                };
                if resp.status() != 201 {
                    return;
                }
                let Ok(created) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                let id = created["id"].as_str().unwrap_or_default().to_string();
                acknowledged.lock().unwrap().push(id);
            }
        }));
    }
    // Let the burst run, then kill the server without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    svc.process.signal("-KILL");
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "the burst wrote ({})",
        acknowledged.len()
    );
    drop(svc);

    let svc = ServiceProcess::start(&dir);
    let mut missing = Vec::new();
    for id in &acknowledged {
        let r = http
            .get(format!("{}/scim/v2/acme/Users/{id}", svc.url))
            .bearer_auth(&value)
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            missing.push(id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged users are gone after kill -9",
        missing.len(),
        acknowledged.len()
    );
}
