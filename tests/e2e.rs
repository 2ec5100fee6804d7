//! End to end: a real kube-apiserver, kube-controller-manager and etcd; `idsync
//! serve` and `idsync operator` as real processes; a real OpenID Provider. What is
//! asserted is what a user checks with kubectl and their IdP.

mod support;

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use idsync::api::{RoleMapping, ScimToken, SsoConnection, Workspace};
use idsync::service::store::ObjectKind;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, Client, api::Patch, api::PatchParams};
use serde_json::json;
use support::cluster::{
    ControlPlane, OidcProvider, OperatorProcess, ServiceProcess, eventually, scim_status,
    secret_value,
};

/// One control plane, identity service, operator and IdP for this test binary;
/// each test works in namespaces of its own.
struct Stack {
    cp: ControlPlane,
    service: ServiceProcess,
    operator: OperatorProcess,
    oidc: OidcProvider,
}

const RESYNC: Duration = Duration::from_secs(2);

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        // Under the target directory, wiped per run: state, logs and PIDs of the last
        // run stay there to read after a failure.
        let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "e2e");
        let (cp, service, operator) = support::cluster::start_stack(&dir, "2s");
        let clients = support::cluster::example_oidc_clients();
        let oidc = OidcProvider::start(&dir, clients, json!({}));
        Stack {
            cp,
            service,
            operator,
            oidc,
        }
    })
}

async fn client() -> Client {
    stack().cp.client().await
}

/// An IdentityService (with its admin token Secret) and a Workspace in `ns`.
fn tenant_yaml(ns: &str, workspace_id: &str) -> String {
    support::cluster::tenant_yaml(&stack().service, ns, workspace_id)
}

fn wait_ready(kind: &str, ns: &str, name: &str, timeout: &str) {
    stack().cp.wait_ready(kind, ns, name, timeout);
}

#[tokio::test]
async fn examples_become_ready_and_their_scim_tokens_work() {
    let s = stack();
    let client = client().await;
    s.cp.apply(&support::cluster::examples_yaml(&s.service, &s.oidc));

    for kind in [
        "identityservices",
        "workspaces",
        "ssoconnections",
        "scimtokens",
        "rolemappings",
    ] {
        wait_ready(kind, "idsync-examples", "--all", "90s");
    }

    // Each SCIMToken's Secret holds a token the SCIM endpoint accepts, and the base
    // URL to paste into the IdP.
    for (secret, workspace) in [
        ("okta-scim-token", "octomil"),
        ("entra-scim-token", "omniflow"),
        ("google-scim-scim-token", "brightpath"),
        ("tecton-scim-token", "tecton"),
    ] {
        let token = secret_value(&client, "idsync-examples", secret, "token")
            .await
            .unwrap();
        let base = secret_value(&client, "idsync-examples", secret, "scimBaseUrl")
            .await
            .unwrap();
        assert_eq!(base, format!("{}/scim/v2/{workspace}", s.service.url));
        assert!(token.starts_with("idsync_scim_"));
        assert_eq!(
            scim_status(&base, &token).await,
            200,
            "{secret} not accepted"
        );
        // Tenants are isolated: the token reaches nothing of another workspace.
        let other = format!(
            "{}/scim/v2/{}",
            s.service.url,
            if workspace == "octomil" {
                "omniflow"
            } else {
                "octomil"
            }
        );
        assert_eq!(scim_status(&other, &token).await, 401);
    }

    // The session-cookie keys live in a Secret the operator owns, and the
    // service verifies with exactly those keys.
    let keys: Vec<serde_json::Value> = serde_json::from_str(
        &secret_value(
            &client,
            "idsync-examples",
            "idsync-session-keys",
            "keys.json",
        )
        .await
        .expect("the session-keys Secret"),
    )
    .expect("a key list");
    assert_eq!(keys.len(), 1, "one key to start with");
    let registered = s
        .service
        .admin()
        .list_keys::<idsync::admin::SessionKeyDoc>()
        .await
        .expect("session keys");
    assert!(
        registered
            .iter()
            .any(|(id, _)| keys[0]["id"] == id.as_str()),
        "the service holds the Secret's key: {registered:?}"
    );
    assert!(
        registered.iter().all(|(_, doc)| doc.secret.is_none()),
        "the admin API never returns key material"
    );

    // What the IdP admin needs is in status.
    let sso: Api<SsoConnection> = Api::namespaced(client.clone(), "idsync-examples");
    let okta = sso.get("okta").await.unwrap().status.unwrap();
    assert_eq!(
        okta.redirect_uri.as_deref(),
        Some(format!("{}/sso/octomil/oidc/okta/callback", s.service.url).as_str())
    );
    let entra = sso.get("entra").await.unwrap().status.unwrap();
    assert_eq!(
        entra.acs_url.as_deref(),
        Some(format!("{}/sso/omniflow/saml/entra/acs", s.service.url).as_str())
    );

    // The SAML signing key lives in a Secret the operator owns; its
    // certificate is in the SP metadata the IdP admin imports, and the
    // metadata says AuthnRequests are signed.
    let saml_keys: Vec<serde_json::Value> = serde_json::from_str(
        &secret_value(
            &client,
            "idsync-examples",
            "idsync-saml-signing",
            "keys.json",
        )
        .await
        .expect("the saml-signing Secret"),
    )
    .expect("a key list");
    assert_eq!(saml_keys.len(), 1, "one SAML signing key to start with");
    let pem = saml_keys[0]["certificate"].as_str().expect("a certificate");
    let der_b64 = idsync::saml_signing::pem_body(pem);
    let metadata_url = entra
        .sp_metadata_url
        .clone()
        .expect("spMetadataUrl in status");
    let metadata = reqwest::get(&metadata_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metadata.contains(&der_b64),
        "the SP metadata carries the Secret's certificate"
    );
    assert!(
        metadata.contains("AuthnRequestsSigned=\"true\""),
        "{metadata}"
    );
    let held = s
        .service
        .admin()
        .list_keys::<idsync::admin::SamlSigningKeyDoc>()
        .await
        .expect("SAML signing keys");
    // (The other tests' IdentityServices share this service and add theirs.)
    assert!(
        held.iter().any(|(id, _)| saml_keys[0]["id"] == id.as_str()),
        "the service holds the Secret's key"
    );
    assert!(
        held.iter().all(|(_, doc)| doc.private_key.is_none()),
        "the admin API never returns a private key"
    );
    assert!(entra.idp_certificate_expires_at.is_some());
    let expires_at = s
        .operator
        .metric_sum(
            "idsync_operator_idp_certificate_expiry_timestamp_seconds",
            &["name=\"entra\""],
        )
        .await;
    let in_a_day = jiff::Timestamp::now().as_second() as f64 + 86_400.0;
    assert!(
        expires_at > in_a_day,
        "certificate expiry metric: {expires_at}"
    );

    // And the identity service holds what was declared.
    let admin = s.service.admin();
    let ws = admin
        .get_object(ObjectKind::Workspace, "omniflow", "omniflow")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ws.spec["domains"], json!(["omniflow.io", "omniflow.co.uk"]));
    let mapping = admin
        .get_object(ObjectKind::RoleMapping, "octomil", "octomil-roles")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mapping.spec["rules"][1]["equals"], "octomil-admins");
    // Secrets never leave: the connection's client secret is write-only.
    let conn = admin
        .get_object(ObjectKind::SsoConnection, "octomil", "okta")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.spec["oidc"]["clientSecretSet"], true);
    assert!(
        !conn
            .spec
            .to_string()
            .contains("REPLACE-WITH-THE-OKTA-CLIENT-SECRET")
    );
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_readable_messages() {
    let s = stack();
    s.cp.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: refused}\n");
    let cases = [
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: SSOConnection\nmetadata: {name: a, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n  protocol: ldap\n",
            "supported values: \"oidc\", \"saml\"",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: SSOConnection\nmetadata: {name: b, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n  protocol: saml\n  oidc: {issuer: 'https://x.okta.com', clientId: c, clientSecretRef: {name: s, key: k}}\n",
            "protocol saml requires the saml block and forbids oidc",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: SCIMToken\nmetadata: {name: c, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n  rotation: {every: 24h, overlap: 2d}\n",
            "rotation.overlap must be shorter than rotation.every",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: RoleMapping\nmetadata: {name: d, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n  rules: [{role: superuser, equals: admins}]\n",
            "every rule's role must be one of spec.roles",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: RoleMapping\nmetadata: {name: e, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n",
            "give at least one rule or a defaultRole",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {name: f, namespace: refused}\nspec:\n  serviceRef: {name: s}\n  domains: [Example.COM]\n",
            "spec.domains[0]",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: SCIMToken\nmetadata: {name: g, namespace: refused}\nspec:\n  workspaceRef: {name: w}\n  rotation: {every: 90 days, overlap: 1d}\n",
            "spec.rotation.every",
        ),
        (
            "apiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {name: h, namespace: refused}\nspec:\n  serviceRef: {name: s}\n  policy: {sourceRanges: {scim: [10.0.0.0/33]}}\n",
            "every source range must be a CIDR range",
        ),
    ];
    for (yaml, message) in cases {
        let (ok, out, err) = s.cp.kubectl_run(&["apply", "-f", "-"], Some(yaml));
        assert!(!ok, "accepted:\n{yaml}\n{out}");
        assert!(
            err.contains(message),
            "message for\n{yaml}\nlacks {message:?}:\n{err}"
        );
    }
    let (_, out, _) = s.cp.kubectl_run(
        &[
            "get",
            "sso,scimtoken,rolemap,ws",
            "-n",
            "refused",
            "-o",
            "name",
        ],
        None,
    );
    assert!(out.trim().is_empty(), "something was stored: {out}");
}

/// Everything a resource's reconcile could write: its resourceVersion (status
/// patches, finalizer changes) and the identity service's audit entries.
async fn write_marks(client: &Client, ns: &str, workspace: &str) -> (Vec<String>, usize) {
    let mut versions = Vec::new();
    let ws: Api<Workspace> = Api::namespaced(client.clone(), ns);
    let rm: Api<RoleMapping> = Api::namespaced(client.clone(), ns);
    let tok: Api<ScimToken> = Api::namespaced(client.clone(), ns);
    let sec: Api<Secret> = Api::namespaced(client.clone(), ns);
    versions.push(
        ws.get("main")
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap(),
    );
    versions.push(
        rm.get("roles")
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap(),
    );
    versions.push(
        tok.get("scim")
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap(),
    );
    versions.push(
        sec.get("scim-scim-token")
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap(),
    );
    let audit = stack()
        .service
        .admin()
        .audit(&format!("workspace={workspace}&limit=1000"))
        .await
        .unwrap()
        .len();
    (versions, audit)
}

#[tokio::test]
async fn nothing_is_written_across_idle_resyncs() {
    let s = stack();
    let client = client().await;
    let ns = "quiet";
    s.cp.apply(&tenant_yaml(ns, "quiet"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {{name: roles, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  rules: [{{role: admin, equals: admins}}]
  tests: [{{groups: [admins], expect: admin}}]
---
apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: scim, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  rotation: {{every: 30d, overlap: 1h}}
"#
    ));
    for kind in ["workspaces", "rolemappings", "scimtokens"] {
        wait_ready(kind, ns, "--all", "60s");
    }
    // Let the reconciles that follow the first sync (status, Secret) settle.
    tokio::time::sleep(RESYNC * 2).await;
    let reconciles = || async {
        s.operator
            .metric_sum(
                "idsync_operator_reconciles_total",
                &["kind=\"RoleMapping\"", "result=\"ok\""],
            )
            .await
    };
    let before = write_marks(&client, ns, "quiet").await;
    let reconciled_before = reconciles().await;
    tokio::time::sleep(RESYNC * 3 + Duration::from_secs(1)).await;
    let after = write_marks(&client, ns, "quiet").await;
    assert_eq!(
        before, after,
        "an idle resync wrote something (resourceVersions, audit entries)"
    );
    // The resyncs did run: every RoleMapping of the stack was compared again.
    assert!(
        reconciles().await >= reconciled_before + 2.0,
        "no resync ran in three periods"
    );
}

#[tokio::test]
async fn role_mapping_changes_reach_the_service_and_failing_tests_block_them() {
    let s = stack();
    let client = client().await;
    let ns = "mapping";
    s.cp.apply(&tenant_yaml(ns, "mapping"));
    let mapping = |group: &str, expect: &str| {
        format!(
            r#"apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {{name: roles, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  rules: [{{role: admin, equals: {group}}}]
  tests: [{{name: admins, groups: [platform-admins], expect: {expect}}}]
"#
        )
    };
    s.cp.apply(&mapping("platform-admins", "admin"));
    wait_ready("rolemappings", ns, "roles", "60s");
    let admin = s.service.admin();
    let first = admin
        .get_object(ObjectKind::RoleMapping, "mapping", "roles")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.spec["rules"][0]["equals"], "platform-admins");

    // A change reaches the service.
    s.cp.apply(&mapping("sre-admins", "none"));
    let changed = eventually(
        "the new rule in the identity service",
        Duration::from_secs(30),
        || async {
            admin
                .get_object(ObjectKind::RoleMapping, "mapping", "roles")
                .await
                .unwrap()
                .filter(|o| o.spec["rules"][0]["equals"] == "sre-admins")
        },
    )
    .await;
    assert_ne!(changed.fingerprint, first.fingerprint);

    // A change whose inline tests fail is not synced; the previous mapping stays.
    s.cp.apply(&mapping("nobody", "admin"));
    let api: Api<RoleMapping> = Api::namespaced(client.clone(), ns);
    let message = eventually("TestsPassed=False", Duration::from_secs(30), || async {
        let status = api.get("roles").await.ok()?.status?;
        status
            .conditions
            .iter()
            .find(|c| c.type_ == "TestsPassed" && c.status == "False")
            .map(|c| c.message.clone())
    })
    .await;
    assert!(
        message.contains("test 0 (\"admins\"): expected admin, got none"),
        "{message}"
    );
    let still = admin
        .get_object(ObjectKind::RoleMapping, "mapping", "roles")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.fingerprint, changed.fingerprint,
        "a mapping with failing tests was synced"
    );
}

#[tokio::test]
async fn drift_in_the_service_is_corrected() {
    let s = stack();
    let client = client().await;
    let ns = "drift";
    s.cp.apply(&tenant_yaml(ns, "drift"));
    wait_ready("workspaces", ns, "main", "60s");
    let admin = s.service.admin();
    let synced = admin
        .get_object(ObjectKind::Workspace, "drift", "drift")
        .await
        .unwrap()
        .unwrap();
    let before = s
        .operator
        .metric_sum(
            "idsync_operator_drift_corrections_total",
            &["kind=\"Workspace\""],
        )
        .await;

    // Someone changes the workspace behind the operator's back.
    admin
        .put_object(
            ObjectKind::Workspace,
            "drift",
            "drift",
            &json!({"domains": ["evil.example.com"]}),
        )
        .await
        .unwrap();
    eventually(
        "the workspace restored",
        Duration::from_secs(30),
        || async {
            let now = admin
                .get_object(ObjectKind::Workspace, "drift", "drift")
                .await
                .unwrap()?;
            (now.fingerprint == synced.fingerprint).then_some(())
        },
    )
    .await;
    let after = s
        .operator
        .metric_sum(
            "idsync_operator_drift_corrections_total",
            &["kind=\"Workspace\""],
        )
        .await;
    assert!(after > before, "drift correction not counted");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually(
        "a DriftCorrected event",
        Duration::from_secs(15),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("DriftCorrected"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn forced_rotations_never_reject_a_client_that_reads_the_secret() {
    let s = stack();
    let client = client().await;
    let ns = "rotation";
    s.cp.apply(&tenant_yaml(ns, "rotation"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: scim, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  secretName: idp-token
  rotation: {{every: 90d, overlap: 5s}}
"#
    ));
    wait_ready("scimtokens", ns, "scim", "60s");
    let base = secret_value(&client, ns, "idp-token", "scimBaseUrl")
        .await
        .unwrap();

    // An IdP: calls SCIM continuously; on a 401 it re-reads the Secret (as after an
    // admin pastes the new token) and counts the rejection.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Calls made so far, so each rotation can wait until the client has really
    // called through it (a loaded machine must not let rotations outrun it).
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let idp = {
        let (client, base, stop, calls) =
            (client.clone(), base.clone(), stop.clone(), calls.clone());
        tokio::spawn(async move {
            let mut token = secret_value(&client, ns, "idp-token", "token")
                .await
                .unwrap();
            let (mut ok, mut rejected) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match scim_status(&base, &token).await {
                    200 => ok += 1,
                    401 => {
                        rejected += 1;
                        token = secret_value(&client, ns, "idp-token", "token")
                            .await
                            .unwrap();
                    }
                    other => panic!("SCIM answered {other}"),
                }
                // Pick up rotations the way a polling IdP integration would.
                if ok % 20 == 0 {
                    token = secret_value(&client, ns, "idp-token", "token")
                        .await
                        .unwrap();
                }
            }
            (ok, rejected)
        })
    };

    let api: Api<ScimToken> = Api::namespaced(client.clone(), ns);
    let mut ids = std::collections::BTreeSet::new();
    let rotations = 8;
    for i in 0..rotations {
        let value = format!("rotation-{i}");
        let patch = json!({"metadata": {"annotations": {"idsync.dev/rotate-requested-at": value}}});
        api.patch("scim", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let id = eventually(
            "the rotation to be acted on",
            Duration::from_secs(30),
            || async {
                let st = api.get("scim").await.ok()?.status?;
                (st.last_rotation_request.as_deref() == Some(value.as_str()))
                    .then_some(st.token_id?)
            },
        )
        .await;
        ids.insert(id);
        // Let the client call through this rotation before forcing the next.
        let before = calls.load(std::sync::atomic::Ordering::Relaxed);
        eventually(
            "the client to keep calling SCIM",
            Duration::from_secs(30),
            || async {
                (calls.load(std::sync::atomic::Ordering::Relaxed) >= before + 8).then_some(())
            },
        )
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, rejected) = idp.await.unwrap();
    assert_eq!(ids.len(), rotations, "every request rotated to a new token");
    assert!(
        ok > 50,
        "the client made too few calls to prove anything: {ok}"
    );
    assert_eq!(
        rejected, 0,
        "{rejected} SCIM calls were rejected during {rotations} rotations ({ok} accepted)"
    );

    // After the overlap window only the current token is valid.
    let admin = s.service.admin();
    let current = api
        .get("scim")
        .await
        .unwrap()
        .status
        .unwrap()
        .token_id
        .unwrap();
    let valid = eventually("old tokens to expire", Duration::from_secs(30), || async {
        let tokens = admin.list_tokens("rotation").await.ok()?;
        let valid: Vec<String> = tokens
            .iter()
            .filter(|t| t.valid)
            .map(|t| t.id.clone())
            .collect();
        (valid.len() == 1).then_some(valid)
    })
    .await;
    assert_eq!(valid, vec![current]);
}

#[tokio::test]
async fn a_deleted_secret_is_restored_and_deletion_cleans_up() {
    let s = stack();
    let client = client().await;
    let ns = "cleanup";
    s.cp.apply(&tenant_yaml(ns, "cleanup"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: scim, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
---
apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {{name: drop, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  defaultRole: viewer
"#
    ));
    wait_ready("scimtokens", ns, "scim", "60s");
    wait_ready("rolemappings", ns, "drop", "60s");
    // A workspace has one RoleMapping: a second says so in its status.
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {{name: keep, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  defaultRole: viewer
  deletionPolicy: Retain
"#
    ));
    let (ok, out, err) = s.cp.kubectl_run(
        &[
            "wait",
            "rolemap/keep",
            "-n",
            ns,
            "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=WorkspaceHasRoleMapping",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "the second RoleMapping never said why: {out}{err}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let old = secret_value(&client, ns, "scim-scim-token", "token")
        .await
        .unwrap();
    secrets
        .delete("scim-scim-token", &Default::default())
        .await
        .unwrap();
    let restored = eventually("the Secret restored", Duration::from_secs(30), || async {
        secret_value(&client, ns, "scim-scim-token", "token").await
    })
    .await;
    let base = format!("{}/scim/v2/cleanup", s.service.url);
    assert_eq!(scim_status(&base, &restored).await, 200);
    assert_ne!(restored, old);

    // Deleting resources removes what they created, except what says Retain.
    let admin = s.service.admin();
    let delete_mapping = |name: &str| {
        let (ok, out, err) = s.cp.kubectl_run(
            &["delete", "rolemap", name, "-n", ns, "--timeout=60s"],
            None,
        );
        assert!(ok, "{out}{err}");
    };
    delete_mapping("drop");
    assert!(
        admin
            .get_object(ObjectKind::RoleMapping, "cleanup", "drop")
            .await
            .unwrap()
            .is_none()
    );
    // The waiting mapping takes the workspace on its next pass (a resync,
    // or here a touch of the object).
    let (ok, out, err) = s.cp.kubectl_run(
        &[
            "annotate",
            "rolemap",
            "keep",
            "-n",
            ns,
            "touched=1",
            "--overwrite",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    wait_ready("rolemappings", ns, "keep", "60s");
    delete_mapping("keep");
    assert!(
        admin
            .get_object(ObjectKind::RoleMapping, "cleanup", "keep")
            .await
            .unwrap()
            .is_some()
    );
    let (ok, out, err) = s.cp.kubectl_run(
        &["delete", "scimtoken", "scim", "-n", ns, "--timeout=60s"],
        None,
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        scim_status(&base, &restored).await,
        401,
        "a deleted SCIMToken's token still works"
    );

    // The retained mapping blocks the workspace's deletion in the service; a
    // namespace deletion still completes (finalizers never wedge), and the
    // workspace's Ready condition said why it waited.
    admin
        .delete_object(ObjectKind::RoleMapping, "cleanup", "keep", false)
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(ns, &Default::default()).await.unwrap();
    let started = Instant::now();
    eventually(
        "the namespace to be deleted",
        Duration::from_secs(90),
        || async { namespaces.get_opt(ns).await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(
        admin
            .get_object(ObjectKind::Workspace, "cleanup", "cleanup")
            .await
            .unwrap()
            .is_none()
    );
    eprintln!("namespace deletion completed in {:?}", started.elapsed());
}

/// A Secret that exists before a SCIMToken names it is the application's:
/// it keeps its data, gains no owner, and survives the SCIMToken's deletion;
/// the SCIMToken says why it is not Ready.
#[tokio::test]
async fn secrets_the_operator_did_not_create_are_left_alone() {
    let s = stack();
    let client = client().await;
    let ns = "foreign-secret";
    s.cp.apply(&tenant_yaml(ns, "foreign-secret"));
    s.cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: app-creds, namespace: {ns}}}
stringData: {{token: the-application-s-own, other: kept}}
---
apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: scim, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  secretName: app-creds
"#
    ));
    let tokens: Api<ScimToken> = Api::namespaced(client.clone(), ns);
    let condition = eventually(
        "SecretConflict in status",
        Duration::from_secs(30),
        || async {
            let t = tokens.get("scim").await.ok()?;
            let ready = t
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "SecretConflict").then_some(ready)
        },
    )
    .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("app-creds"),
        "{}",
        condition.message
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let untouched = secrets.get("app-creds").await.unwrap();
    assert!(
        untouched.metadata.owner_references.is_none(),
        "adopted: {untouched:?}"
    );
    assert_eq!(
        secret_value(&client, ns, "app-creds", "token")
            .await
            .as_deref(),
        Some("the-application-s-own")
    );
    // No token was issued for it either.
    let admin = s.service.admin();
    assert!(
        admin
            .list_tokens("foreign-secret")
            .await
            .unwrap()
            .is_empty()
    );
    let (ok, out, err) = s.cp.kubectl_run(
        &["delete", "scimtoken", "scim", "-n", ns, "--timeout=60s"],
        None,
    );
    assert!(ok, "{out}{err}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        secret_value(&client, ns, "app-creds", "other")
            .await
            .as_deref(),
        Some("kept"),
        "the garbage collector deleted the application's Secret"
    );
}

/// The Ready condition of a resource, once it has the given reason.
async fn ready_with_reason(
    client: &Client,
    kind: &str,
    ns: &str,
    name: &str,
    reason: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource {
            group: "idsync.dev".into(),
            version: "v1alpha1".into(),
            api_version: "idsync.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        },
    );
    eventually(
        &format!("{kind} {ns}/{name} {reason}"),
        Duration::from_secs(45),
        || async {
            let obj = api.get(name).await.ok()?;
            let conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
                serde_json::from_value(obj.data["status"]["conditions"].clone()).ok()?;
            conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.reason == reason)
        },
    )
    .await
}

/// Two namespaces that both declare workspace id `contested`: exactly one
/// owns it, the other waits with WorkspaceIdTaken and writes nothing across
/// resyncs, its SSOConnection included (so nobody signs in through it); once
/// the winner is deleted, the other claims the id on its next pass.
#[tokio::test]
async fn one_namespace_owns_a_workspace_id_and_the_other_waits() {
    let s = stack();
    let client = client().await;
    s.cp.apply(&tenant_yaml("claim-a", "contested"));
    wait_ready("workspaces", "claim-a", "main", "60s");
    s.cp.apply(&tenant_yaml("claim-b", "contested"));
    s.cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: evil-oidc, namespace: claim-b}}
stringData: {{clientSecret: evil}}
---
apiVersion: idsync.dev/v1alpha1
kind: SSOConnection
metadata: {{name: evil, namespace: claim-b}}
spec:
  workspaceRef: {{name: main}}
  protocol: oidc
  oidc:
    issuer: {issuer}
    clientId: octomil-idsync
    clientSecretRef: {{name: evil-oidc, key: clientSecret}}
"#,
        issuer = s.oidc.issuer
    ));
    let taken =
        ready_with_reason(&client, "Workspace", "claim-b", "main", "WorkspaceIdTaken").await;
    assert_eq!(taken.status, "False");
    assert!(
        taken.message.contains("namespace claim-a"),
        "{}",
        taken.message
    );
    let conn = ready_with_reason(
        &client,
        "SSOConnection",
        "claim-b",
        "evil",
        "WorkspaceIdTaken",
    )
    .await;
    assert_eq!(conn.status, "False");
    let admin = s.service.admin();
    assert!(
        admin
            .get_object(ObjectKind::SsoConnection, "contested", "evil")
            .await
            .unwrap()
            .is_none(),
        "the other namespace's connection reached the workspace"
    );
    let start = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/sso/contested/start?connection=evil",
            s.service.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        404,
        "a sign-in through the other namespace's connection"
    );
    // Nothing more is written to the id across resyncs: no flip-flop.
    let writes = || async {
        admin
            .audit("workspace=contested&limit=1000")
            .await
            .unwrap()
            .len()
    };
    let before = writes().await;
    tokio::time::sleep(RESYNC * 5).await;
    assert_eq!(
        writes().await,
        before,
        "the contested workspace was rewritten"
    );
    let stored = admin
        .get_object(ObjectKind::Workspace, "contested", "contested")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec["domains"][0], "contested.example.com");

    // The owner goes; the waiting namespace claims the id on its next pass.
    let (ok, out, err) =
        s.cp.kubectl_run(&["delete", "namespace", "claim-a", "--timeout=90s"], None);
    assert!(ok, "{out}{err}");
    wait_ready("workspaces", "claim-b", "main", "60s");
    wait_ready("ssoconnections", "claim-b", "evil", "60s");
}

/// A ClusterIdentityService that allows namespaces labelled for it: a
/// Workspace in an allowed namespace becomes Ready with no admin token there,
/// one in another namespace is refused with a condition.
#[tokio::test]
async fn a_cluster_identity_service_serves_the_namespaces_it_allows() {
    let s = stack();
    let client = client().await;
    s.cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: cluster-admin-token, namespace: default}}
stringData: {{token: {token}}}
---
apiVersion: idsync.dev/v1alpha1
kind: ClusterIdentityService
metadata: {{name: shared}}
spec:
  url: {url}
  adminTokenSecretRef: {{name: cluster-admin-token, key: token}}
  allowedNamespaces:
    selector: {{matchLabels: {{idsync.dev/tenant: enabled}}}}
"#,
        token = s.service.admin_token,
        url = s.service.url
    ));
    for (ns, label) in [("tenant-a", "enabled"), ("tenant-b", "not-yet")] {
        s.cp.apply(&format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}, labels: {{idsync.dev/tenant: {label}}}}}
---
apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {{name: main, namespace: {ns}}}
spec:
  serviceRef: {{kind: ClusterIdentityService, name: shared}}
  workspaceId: cluster-{ns}
  domains: [{ns}.example.com]
"#
        ));
    }
    let (ok, out, err) = s.cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Ready",
            "clusteridentityservice/shared",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    wait_ready("workspaces", "tenant-a", "main", "60s");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "tenant-a");
    assert!(
        secrets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "tenant-a holds a Secret"
    );
    let admin = s.service.admin();
    assert!(
        admin
            .get_object(
                ObjectKind::Workspace,
                "cluster-tenant-a",
                "cluster-tenant-a"
            )
            .await
            .unwrap()
            .is_some()
    );
    let refused = ready_with_reason(
        &client,
        "Workspace",
        "tenant-b",
        "main",
        "NamespaceNotAllowed",
    )
    .await;
    assert_eq!(refused.status, "False");
    assert!(refused.message.contains("shared"), "{}", refused.message);
    assert!(
        admin
            .get_object(
                ObjectKind::Workspace,
                "cluster-tenant-b",
                "cluster-tenant-b"
            )
            .await
            .unwrap()
            .is_none()
    );
    // The service's key Secrets sit in the operator's namespace, owned by it.
    let keys: Api<Secret> = Api::namespaced(client.clone(), "default");
    let ring = keys
        .get("cluster-shared-session-keys")
        .await
        .expect("the session keys Secret");
    assert!(
        ring.metadata
            .owner_references
            .is_some_and(|o| o[0].kind == "ClusterIdentityService")
    );
}

/// A SCIMToken with `authentication: basic` lands as the client ID and
/// client secret an IdP like One Model asks for, and the service accepts
/// them over HTTP Basic (and only so).
#[tokio::test]
async fn a_basic_scim_token_lands_as_client_id_and_secret() {
    let s = stack();
    let client = client().await;
    let ns = "basic-auth";
    s.cp.apply(&tenant_yaml(ns, "basicauth"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: one-model, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  authentication: basic
"#
    ));
    wait_ready("scimtokens", ns, "one-model", "60s");
    let secret = "one-model-scim-token";
    let id = secret_value(&client, ns, secret, "clientId")
        .await
        .expect("clientId");
    let password = secret_value(&client, ns, secret, "clientSecret")
        .await
        .expect("clientSecret");
    assert!(secret_value(&client, ns, secret, "token").await.is_none());
    let base = format!("{}/scim/v2/basicauth", s.service.url);
    let with_basic = reqwest::Client::new()
        .get(format!("{base}/Users"))
        .basic_auth(&id, Some(&password))
        .send()
        .await
        .expect("GET /Users");
    assert_eq!(with_basic.status(), 200);
    assert_eq!(
        scim_status(&base, &password).await,
        401,
        "not as a bearer token"
    );
    // The status says when the IdP last used it.
    let api: Api<ScimToken> = Api::namespaced(client.clone(), ns);
    let used = eventually("status.lastUsedAt", Duration::from_secs(60), || async {
        api.get("one-model").await.ok()?.status?.last_used_at
    })
    .await;
    assert!(used.parse::<jiff::Timestamp>().is_ok(), "{used}");
}

#[tokio::test]
async fn a_role_approval_applies_at_once_and_its_deletion_demotes() {
    let s = stack();
    let client = client().await;
    let ns = "approvals";
    s.cp.apply(&tenant_yaml(ns, "approvals"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {{name: main, namespace: {ns}}}
spec:
  serviceRef: {{name: idsync}}
  workspaceId: approvals
  domains: [approvals.example.com]
  policy: {{approvalRequiredRoles: [owner]}}
---
apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {{name: roles, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  defaultRole: member
  rules: [{{role: owner, equals: founders}}]
---
apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: idp, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
"#
    ));
    wait_ready("scimtokens", ns, "idp", "60s");
    wait_ready("rolemappings", ns, "roles", "60s");
    let token = secret_value(&client, ns, "idp-scim-token", "token")
        .await
        .expect("token");
    let base = format!("{}/scim/v2/approvals", s.service.url);
    let scim = |path: &str, body: serde_json::Value| {
        let (url, token) = (format!("{base}{path}"), token.clone());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("SCIM POST");
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.expect("SCIM body")
        }
    };
    let ada = scim(
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "ada@approvals.example.com"}),
    )
    .await;
    let ada = ada["id"].as_str().expect("id").to_string();
    scim(
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": "founders", "members": [{"value": ada}]}),
    )
    .await;
    let admin = s.service.admin();
    let role_is = |role: &'static str, pending: Option<&'static str>| {
        let (admin, ada) = (admin.clone(), ada.clone());
        async move {
            let m = admin.member("approvals", &ada).await.ok()?;
            (m.role.as_deref() == Some(role) && m.pending_role.as_deref() == pending).then_some(())
        }
    };
    // Owner waits; admin, the next role down, needs no approval.
    eventually("owner waits for approval", Duration::from_secs(30), || {
        role_is("admin", Some("owner"))
    })
    .await;

    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: RoleApproval
metadata: {{name: ada-owner, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  email: Ada@approvals.example.com
  role: owner
  reason: CHG-1234
"#
    ));
    wait_ready("roleapprovals", ns, "ada-owner", "60s");
    // Ready means the service has it, and it applied in the same call.
    assert!(role_is("owner", None).await.is_some());

    let (ok, _, err) = s.cp.kubectl_run(
        &[
            "delete",
            "roleapproval",
            "ada-owner",
            "-n",
            ns,
            "--wait=true",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(role_is("admin", Some("owner")).await.is_some());
    let changes = admin
        .audit("workspace=approvals&action=role_changed")
        .await
        .expect("audit");
    let by_approval: Vec<_> = changes
        .iter()
        .filter(|e| e.actor == "role-approval")
        .filter_map(|e| {
            e.detail
                .as_ref()
                .map(|d| (d["from"].clone(), d["to"].clone()))
        })
        .collect();
    assert_eq!(
        by_approval,
        [
            (json!("owner"), json!("admin")),
            (json!("admin"), json!("owner"))
        ],
        "promoted, then demoted (newest first): {changes:?}"
    );
}

/// A Webhook resource: the operator makes its signing secret, the product's
/// receiver (the Standard Webhooks reference library) verifies with it,
/// a rotation signs with both secrets through the overlap, status shows
/// where deliveries stand, and the replay annotation redelivers.
#[tokio::test]
async fn a_webhook_signs_with_its_secret_rotates_with_overlap_and_replays() {
    let s = stack();
    let client = client().await;
    let ns = "hooks";
    let dir = tempfile::tempdir().expect("a temporary directory");
    let secrets_file = dir.path().join("secrets");
    std::fs::write(&secrets_file, "").expect("secrets file");
    let (_receiver, url, out) =
        support::webhooks::receiver(dir.path(), &format!("@{}", secrets_file.display()), "ok");
    s.cp.apply(&tenant_yaml(ns, "hooks"));
    s.cp.apply(&format!(
        r#"apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {{name: main, namespace: {ns}}}
spec:
  serviceRef: {{name: idsync}}
  workspaceId: hooks
  domains: [hooks.example.com]
---
apiVersion: idsync.dev/v1alpha1
kind: SCIMToken
metadata: {{name: idp, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
---
apiVersion: idsync.dev/v1alpha1
kind: Webhook
metadata: {{name: product, namespace: {ns}}}
spec:
  workspaceRef: {{name: main}}
  url: {url}
  eventTypes: ["member.*"]
  rotation: {{every: 90d, overlap: 24h}}
"#
    ));
    wait_ready("scimtokens", ns, "idp", "60s");
    wait_ready("webhooks", ns, "product", "60s");
    let first = secret_value(&client, ns, "product-webhook-secret", "secret")
        .await
        .expect("the signing secret");
    assert!(first.starts_with("whsec_"), "a Standard Webhooks secret");
    std::fs::write(&secrets_file, format!("{first}\n")).expect("secrets file");
    let token = secret_value(&client, ns, "idp-scim-token", "token")
        .await
        .expect("token");
    let before = jiff::Timestamp::now();
    let create = |name: &'static str| {
        let (url, token) = (
            format!("{}/scim/v2/hooks/Users", s.service.url),
            token.clone(),
        );
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(
                    &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                              "userName": format!("{name}@hooks.example.com")}),
                )
                .send()
                .await
                .expect("SCIM POST");
            assert_eq!(r.status(), 201);
        }
    };
    create("ada").await;
    let got = support::webhooks::received(&out, 1).await;
    assert_eq!(got[0]["verifiedWith"], json!([0]), "{got:?}");

    // A rotation on request: the new secret in the Secret, the old one beside it.
    let (ok, _, err) = s.cp.kubectl_run(
        &[
            "annotate",
            "webhook",
            "product",
            "-n",
            ns,
            "idsync.dev/rotate-requested-at=1",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (second, previous) = eventually("the secret rotates", Duration::from_secs(30), || {
        let client = client.clone();
        let first = first.clone();
        async move {
            let now = secret_value(&client, ns, "product-webhook-secret", "secret").await?;
            let previous =
                secret_value(&client, ns, "product-webhook-secret", "previousSecret").await?;
            (now != first).then_some((now, previous))
        }
    })
    .await;
    assert_eq!(previous, first);
    // The receiver knows both: each delivery verifies with either.
    std::fs::write(&secrets_file, format!("{first}\n{second}\n")).expect("secrets file");
    create("bob").await;
    let got = support::webhooks::received(&out, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1]["verifiedWith"],
        json!([0, 1]),
        "signed with both: {got:?}"
    );

    // Status: where deliveries stand, and the overlap's end.
    let api: Api<idsync::api::Webhook> = Api::namespaced(client.clone(), ns);
    let status = eventually(
        "status shows the deliveries",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let st = api.get("product").await.ok()?.status?;
                (st.pending == Some(0) && st.last_success_at.is_some()).then_some(st)
            }
        },
    )
    .await;
    assert!(status.previous_secret_expires_at.is_some(), "{status:?}");
    assert!(status.next_rotation_at.is_some(), "{status:?}");
    let yaml = serde_json::to_string(&status).expect("status serializes");
    assert!(!yaml.contains("whsec_"), "no secret in status: {yaml}");

    // The replay annotation redelivers ada's and bob's events, same ids.
    let (ok, _, err) = s.cp.kubectl_run(
        &[
            "annotate",
            "webhook",
            "product",
            "-n",
            ns,
            &format!("idsync.dev/replay-from={before}"),
        ],
        None,
    );
    assert!(ok, "{err}");
    let got = support::webhooks::received(&out, 4).await;
    assert_eq!(got.len(), 4, "{got:?}");
    let ids = |lines: &[serde_json::Value]| {
        let mut ids: Vec<String> = lines.iter().map(|l| l["id"].to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&got[2..]), ids(&got[..2]), "{got:?}");

    // A replay-from that is no time: a condition says so, nothing is sent.
    let (ok, _, err) = s.cp.kubectl_run(
        &[
            "annotate",
            "--overwrite",
            "webhook",
            "product",
            "-n",
            ns,
            "idsync.dev/replay-from=last tuesday",
        ],
        None,
    );
    assert!(ok, "{err}");
    let ready = ready_with_reason(&client, "Webhook", ns, "product", "InvalidReplay").await;
    assert!(ready.message.contains("last tuesday"), "{ready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(support::webhooks::received(&out, 0).await.len(), 4);

    let (ok, _, err) = s.cp.kubectl_run(
        &["delete", "webhook", "product", "-n", ns, "--wait=true"],
        None,
    );
    assert!(ok, "{err}");
    let left = s
        .service
        .admin()
        .get_object(ObjectKind::Webhook, "hooks", "product")
        .await
        .expect("read");
    assert!(left.is_none(), "the endpoint is gone from the service");
}
