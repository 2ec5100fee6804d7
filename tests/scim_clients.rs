//! Real SCIM clients written by others, run against the real service on
//! 127.0.0.1: Microsoft's Entra ID SCIM collection through newman (npm), and
//! the `scim-sanity` conformance checker (PyPI). `scripts/test.sh` installs both.

mod support;

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::json;
use support::{Db, repo_root, scim::ScimFixture};

/// Runs a client to completion (it may not outlive the test) and returns
/// (success, stdout + stderr).
async fn run_client(
    program: &std::path::Path,
    args: &[String],
    envs: &[(&str, String)],
) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "{} cannot start ({e}): run scripts/test.sh, which installs it",
            program.display()
        )
    });
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the client finishes within 5 minutes")
        .expect("client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Microsoft's collection, kept beside the checkout in `../shared/`. Its bodies
/// set `externalId` to `${__UUID}`, JMeter syntax that Postman sends literally,
/// so every user would share one externalId (which idsync rightly refuses with
/// 409). Real Entra sends each object's own id; the copy the test runs asks
/// Postman for a fresh GUID there instead (`{{$guid}}`), and changes nothing else.
fn entra_collection(dir: &std::path::Path) -> PathBuf {
    let original = repo_root().join("../shared/scim-clients/entra-scim-postman-collection.json");
    let text = std::fs::read_to_string(&original).unwrap_or_else(|e| {
        panic!(
            "{} ({e}): CI keeps shared/ beside the checkout",
            original.display()
        )
    });
    let copy = dir.join("entra-scim-postman-collection.json");
    std::fs::write(&copy, text.replace("${__UUID}", "{{$guid}}")).expect("collection copy written");
    copy
}

#[tokio::test]
async fn entra_id_scim_collection_passes() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let newman = repo_root().join("tests/clients/node_modules/.bin/newman");
    let port = format!(":{}", f.service.addr.port());
    let args: Vec<String> = [
        "run",
        &entra_collection(f.db.dir.path()).to_string_lossy(),
        "--folder",
        "Endpoint tests",
        "--folder",
        "User tests",
        "--folder",
        "Group tests",
        "--env-var",
        "Protocol=http",
        "--env-var",
        "Server=127.0.0.1",
        "--env-var",
        &format!("Port={port}"),
        "--env-var",
        "Api=scim/v2/acme",
        "--env-var",
        &format!("token={}", f.token),
        "--color",
        "off",
        "--disable-unicode",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, output) = run_client(&newman, &args, &[]).await;
    assert!(ok, "newman reported failures:\n{output}");
    // The run really exercised the server: users and groups were provisioned.
    let metrics = f.service.state.metrics.render();
    assert!(
        metrics.contains(r#"idsync_scim_provisioned_total{resource="User",workspace="acme"}"#),
        "{output}"
    );
    assert!(
        metrics.contains(r#"idsync_scim_provisioned_total{resource="Group",workspace="acme"}"#),
        "{output}"
    );
    f.stop().await;
}

/// The Python tools `scripts/test.sh` installs into a virtualenv.
fn python_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("IDSYNC_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/idsync/venv")
        });
    venv.join("bin").join(name)
}

#[tokio::test]
async fn scim_sanity_probe_finds_no_conformance_failures() {
    let f = ScimFixture::start(Db::Sqlite, json!({})).await;
    let args: Vec<String> = [
        "probe",
        &f.base(),
        "--token",
        &f.token,
        "--i-accept-side-effects",
        "--json-output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ok, output) = run_client(&python_tool("scim-sanity"), &args, &[]).await;
    assert!(ok, "scim-sanity reported failures:\n{output}");
    assert!(!output.contains(&f.token), "the token is not echoed");
    f.stop().await;
}
