//! The admin API over real HTTP, on SQLite and on a real PostgreSQL.

use crate::{on_both_databases, support};

use idsync::admin::{ClientError, PutResult, ScimTokenDoc};
use idsync::service::store::ObjectKind;
use reqwest::StatusCode;
use serde_json::json;
use support::{ADMIN_TOKEN, Db, TestDb, base_url, client, start_service};

async fn audit_count(svc: &idsync::service::RunningService) -> usize {
    client(svc).audit("limit=1000").await.unwrap().len()
}

async fn raw_put(
    svc: &idsync::service::RunningService,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let resp = reqwest::Client::new()
        .put(format!("{}/admin/v1{path}", base_url(svc)))
        .bearer_auth(ADMIN_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

async fn second_identical_put_changes_nothing(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    let doc = json!({"domains": ["acme.com"], "defaultRole": "member"});
    let first = c
        .put_object(ObjectKind::Workspace, "acme", "acme", &doc)
        .await
        .unwrap();
    assert_eq!(first.result, Some(PutResult::Created));
    let audit_after_first = audit_count(&svc).await;

    // Same content, other key order: same fingerprint, nothing written.
    let same = json!({"defaultRole": "member", "domains": ["acme.com"]});
    let second = c
        .put_object(ObjectKind::Workspace, "acme", "acme", &same)
        .await
        .unwrap();
    assert_eq!(second.result, Some(PutResult::Unchanged));
    assert_eq!(second.fingerprint, first.fingerprint);
    assert_eq!(second.updated_at, first.updated_at);
    assert_eq!(
        audit_count(&svc).await,
        audit_after_first,
        "an unchanged PUT wrote an audit entry"
    );

    let changed = json!({"domains": ["acme.com", "acme.io"], "defaultRole": "member"});
    let third = c
        .put_object(ObjectKind::Workspace, "acme", "acme", &changed)
        .await
        .unwrap();
    assert_eq!(third.result, Some(PutResult::Updated));
    assert_ne!(third.fingerprint, first.fingerprint);
    assert_eq!(audit_count(&svc).await, audit_after_first + 1);
    // The fingerprint the service reports is the one callers compute locally.
    assert_eq!(
        third.fingerprint,
        c.fingerprint(&serde_json::from_value::<idsync::admin::WorkspaceDoc>(changed).unwrap())
    );
    svc.stop().await.unwrap();
}

async fn bad_input_gets_a_clear_4xx_and_changes_nothing(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    c.put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .unwrap();
    let audit_before = audit_count(&svc).await;
    let mapping_with_bad_regex = json!({"rules": [{"role": "admin", "regex": "(unclosed"}]});
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("/workspaces/acme", b"{not json".to_vec(), StatusCode::BAD_REQUEST, "invalid body"),
        ("/workspaces/acme", br#"{"domian": ["x.com"]}"#.to_vec(), StatusCode::BAD_REQUEST, "unknown field `domian`"),
        ("/workspaces/acme", br#"{"domains": "acme.com"}"#.to_vec(), StatusCode::BAD_REQUEST, "at domains"),
        ("/workspaces/acme", br#"{"domains": ["Acme.COM"]}"#.to_vec(), StatusCode::BAD_REQUEST, "not a lower-case domain"),
        ("/workspaces/Not_Valid", b"{}".to_vec(), StatusCode::BAD_REQUEST, "not a valid workspace id"),
        ("/workspaces/acme", vec![b' '; 2 * 1024 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "length limit"),
        ("/workspaces/nope/role-mappings/r", br#"{"defaultRole": "member"}"#.to_vec(), StatusCode::NOT_FOUND, "unknown workspace"),
        ("/workspaces/acme/role-mappings/r", serde_json::to_vec(&mapping_with_bad_regex).unwrap(), StatusCode::BAD_REQUEST, "rule 0: invalid regex"),
        ("/workspaces/acme/connections/okta", br#"{"protocol": "oidc", "oidc": {"issuer": "https://acme.okta.com", "clientId": "x"}}"#.to_vec(), StatusCode::BAD_REQUEST, "clientSecret is required"),
        ("/workspaces/acme/connections/okta", br#"{"protocol": "saml", "oidc": {"issuer": "https://acme.okta.com", "clientId": "x", "clientSecret": "s"}}"#.to_vec(), StatusCode::BAD_REQUEST, "protocol saml requires the saml block"),
        ("/workspaces/acme/connections/okta", br#"{"protocol": "ldap"}"#.to_vec(), StatusCode::BAD_REQUEST, "unknown variant `ldap`"),
        ("/workspaces/acme/scim-tokens/abcdefghijkmnpqr", br#"{"name": "t", "sha256": "not-a-hash"}"#.to_vec(), StatusCode::BAD_REQUEST, "sha256 must be"),
        ("/workspaces/acme/widgets/x", b"{}".to_vec(), StatusCode::NOT_FOUND, "no collection"),
    ];
    for (path, body, status, needle) in cases {
        let (got, body) = raw_put(&svc, path, body).await;
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(got, status, "PUT {path}: {body}");
        assert!(
            message.contains(needle),
            "PUT {path}: message {message:?} lacks {needle:?}"
        );
        assert!(
            body["error"]["code"].is_string(),
            "PUT {path}: no error code in {body}"
        );
    }
    assert_eq!(
        audit_count(&svc).await,
        audit_before,
        "a refused PUT wrote to the audit log"
    );
    assert!(
        c.list_objects(ObjectKind::RoleMapping, Some("acme"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.list_objects(ObjectKind::SsoConnection, Some("acme"))
            .await
            .unwrap()
            .is_empty()
    );
    svc.stop().await.unwrap();
}

async fn wrong_or_missing_admin_token_is_401_and_audited(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let http = reqwest::Client::new();
    let url = format!("{}/admin/v1/workspaces", base_url(&svc));
    let missing = http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(&url)
        .bearer_auth("x".repeat(40))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let refused = client(&svc)
        .audit("action=admin.unauthorized")
        .await
        .unwrap();
    assert_eq!(refused.len(), 2);
    assert_eq!(
        refused[0].detail.as_ref().unwrap()["reason"],
        "wrong admin token"
    );
    assert_eq!(
        refused[1].detail.as_ref().unwrap()["reason"],
        "missing bearer token"
    );
    svc.stop().await.unwrap();
}

async fn deletes_are_idempotent_and_workspaces_refuse_orphans(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    c.put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .unwrap();
    c.put_object(
        ObjectKind::RoleMapping,
        "acme",
        "roles",
        &json!({"defaultRole": "member"}),
    )
    .await
    .unwrap();
    let token = idsync::token::generate().unwrap();
    c.put_token(
        "acme",
        &token.id,
        &ScimTokenDoc {
            authentication: None,
            name: "okta".into(),
            sha256: Some(token.hash()),
            expires_at: None,
        },
    )
    .await
    .unwrap();

    let err = c
        .delete_object(ObjectKind::Workspace, "acme", "acme", false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status, .. } if *status == StatusCode::CONFLICT),
        "{err}"
    );
    assert!(err.to_string().contains("still has 2"), "{err}");

    // Deleting twice succeeds twice: a finalizer never wedges on "already gone".
    c.delete_object(ObjectKind::RoleMapping, "acme", "roles", false)
        .await
        .unwrap();
    c.delete_object(ObjectKind::RoleMapping, "acme", "roles", false)
        .await
        .unwrap();
    assert!(
        c.get_object(ObjectKind::RoleMapping, "acme", "roles")
            .await
            .unwrap()
            .is_none()
    );

    c.delete_object(ObjectKind::Workspace, "acme", "acme", true)
        .await
        .unwrap();
    assert!(
        c.get_object(ObjectKind::Workspace, "acme", "acme")
            .await
            .unwrap()
            .is_none()
    );
    let stored = svc
        .state
        .admin
        .store()
        .get_token(&token.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.revoked_at.is_some(),
        "cascade left the SCIM token valid"
    );
    svc.stop().await.unwrap();
}

async fn connection_secrets_never_leave_the_service(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    c.put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .unwrap();
    let secret = "oidc-client-secret-d41d8cd98f00b204";
    let doc = json!({"protocol": "oidc", "oidc": {"issuer": "https://acme.okta.com", "clientId": "0oa1", "clientSecret": secret}});
    // With no domains of its own and none on its workspace, a connection
    // could assert any email address: refused, quoting no secret.
    let e = c
        .put_object(ObjectKind::SsoConnection, "acme", "okta", &doc)
        .await
        .expect_err("a connection that may assert any email is refused")
        .to_string();
    assert!(e.contains("400") && e.contains("domains"), "{e}");
    assert!(!e.contains(secret), "{e}");
    c.put_object(
        ObjectKind::Workspace,
        "acme",
        "acme",
        &json!({"domains": ["acme.com"]}),
    )
    .await
    .unwrap();
    let put = c
        .put_object(ObjectKind::SsoConnection, "acme", "okta", &doc)
        .await
        .unwrap();
    assert_eq!(put.spec["oidc"]["clientSecretSet"], true);
    assert_eq!(
        put.endpoints["redirectUri"],
        "https://idsync.example.test/sso/acme/oidc/okta/callback"
    );
    for path in [
        "/workspaces/acme/connections/okta",
        "/workspaces/acme/connections",
        "/audit",
    ] {
        let text = reqwest::Client::new()
            .get(format!("{}/admin/v1{path}", base_url(&svc)))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains(secret),
            "GET {path} returned the client secret"
        );
    }
    svc.stop().await.unwrap();
}

async fn scim_tokens_are_stored_as_hashes_and_ids_are_immutable(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    c.put_object(ObjectKind::Workspace, "acme", "acme", &json!({}))
        .await
        .unwrap();
    let token = idsync::token::generate().unwrap();
    let doc = ScimTokenDoc {
        authentication: None,
        name: "okta-scim".into(),
        sha256: Some(token.hash()),
        expires_at: None,
    };
    assert_eq!(
        c.put_token("acme", &token.id, &doc).await.unwrap().result,
        Some(PutResult::Created)
    );
    assert_eq!(
        c.put_token("acme", &token.id, &doc).await.unwrap().result,
        Some(PutResult::Unchanged)
    );
    let with_expiry = ScimTokenDoc {
        authentication: None,
        expires_at: Some("2030-01-01T00:00:00Z".parse().unwrap()),
        ..doc.clone()
    };
    let view = c.put_token("acme", &token.id, &with_expiry).await.unwrap();
    assert_eq!(view.result, Some(PutResult::Updated));
    assert_eq!(
        view.expires_at.map(|t| t.to_string()).as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    assert_eq!(
        view.scim_base_url,
        "https://idsync.example.test/scim/v2/acme"
    );

    let other = idsync::token::generate().unwrap();
    let hijack = ScimTokenDoc {
        authentication: None,
        sha256: Some(other.hash()),
        ..doc
    };
    let err = c.put_token("acme", &token.id, &hijack).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::CONFLICT), "{err}");

    c.revoke_token("acme", &token.id).await.unwrap();
    let listed = c.list_tokens("acme").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].valid);

    if db.url.starts_with("sqlite:") {
        svc.stop().await.unwrap();
        let secret_part = &token.expose()[idsync::token::PREFIX.len() + 17..];
        for file in db.sqlite_files() {
            let bytes = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret_part),
                "{} holds the token",
                file.display()
            );
            assert!(
                !text.contains(token.expose()),
                "{} holds the token",
                file.display()
            );
        }
        let all: String = db
            .sqlite_files()
            .iter()
            .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned())
            .collect();
        assert!(
            all.contains(&token.hash()),
            "the hash is not in the database at all"
        );
    } else {
        svc.stop().await.unwrap();
    }
}

async fn audit_log_filters_by_workspace_kind_and_time(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    for ws in ["acme", "globex"] {
        c.put_object(ObjectKind::Workspace, ws, ws, &json!({}))
            .await
            .unwrap();
        c.put_object(
            ObjectKind::RoleMapping,
            ws,
            "roles",
            &json!({"defaultRole": "viewer"}),
        )
        .await
        .unwrap();
    }
    let acme = c.audit("workspace=acme").await.unwrap();
    assert_eq!(acme.len(), 2);
    assert!(acme.iter().all(|r| r.workspace.as_deref() == Some("acme")));
    assert_eq!(
        acme[0].kind.as_deref(),
        Some("role-mapping"),
        "newest first"
    );
    assert_eq!(acme[0].actor, "admin:test");
    let mappings = c.audit("kind=role-mapping").await.unwrap();
    assert_eq!(mappings.len(), 2);
    assert!(
        c.audit("since=2999-01-01T00:00:00Z")
            .await
            .unwrap()
            .is_empty()
    );
    let err = c.audit("since=yesterday").await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    svc.stop().await.unwrap();
}

async fn health_readiness_and_metrics(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let http = reqwest::Client::new();
    let base = base_url(&svc);
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    client(&svc).info().await.unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"idsync_http_requests_total{method="GET",route="/admin/v1/info",status="200"} 1"#
        ),
        "{metrics}"
    );
    let unknown = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    svc.stop().await.unwrap();
}

/// Workspace ids are claimed: the first claimant to write one owns it, and
/// every write to it or to anything in it from another claimant is refused
/// with a 409 that names the owner and changes nothing, until the owner
/// deletes it or an administrator releases the claim.
async fn workspace_ids_are_claimed(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let team_a = client(&svc).with_claimant("kubernetes:prod:team-a/prod:uid-a");
    let team_b = client(&svc).with_claimant("kubernetes:prod:team-b/prod:uid-b");
    let ws = json!({"domains": ["team-a.example"]});
    team_a
        .put_object(ObjectKind::Workspace, "prod", "prod", &ws)
        .await
        .unwrap();
    let writes_before = audit_count(&svc).await;
    let taken = |e: ClientError| match e {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(code, "workspace_taken");
            assert!(message.contains("namespace team-a"), "{message}");
        }
        other => panic!("not a 409: {other:?}"),
    };
    let evil = json!({"domains": ["evil.example"]});
    taken(
        team_b
            .put_object(ObjectKind::Workspace, "prod", "prod", &evil)
            .await
            .unwrap_err(),
    );
    let conn = json!({"protocol": "oidc", "domains": ["team-a.example"],
                      "oidc": {"issuer": "https://evil.example", "clientId": "x", "clientSecret": "y"}});
    taken(
        team_b
            .put_object(ObjectKind::SsoConnection, "prod", "evil", &conn)
            .await
            .unwrap_err(),
    );
    let token = ScimTokenDoc {
        authentication: None,
        name: "evil".into(),
        sha256: Some("0".repeat(64)),
        expires_at: None,
    };
    taken(
        team_b
            .put_token("prod", "aaaaaaaaaaaaaaaa", &token)
            .await
            .unwrap_err(),
    );
    taken(
        team_b
            .delete_object(ObjectKind::Workspace, "prod", "prod", true)
            .await
            .unwrap_err(),
    );
    taken(team_b.release_workspace("prod").await.unwrap_err());
    assert_eq!(
        audit_count(&svc).await,
        writes_before,
        "a refused write changed something"
    );
    let stored = client(&svc)
        .get_object(ObjectKind::Workspace, "prod", "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spec["domains"][0], "team-a.example");

    // The owner writes on; an administrator (no claimant) may release the claim.
    team_a
        .put_object(ObjectKind::SsoConnection, "prod", "okta", &conn)
        .await
        .unwrap();
    assert!(client(&svc).release_workspace("prod").await.unwrap());
    let released = client(&svc)
        .audit("workspace=prod&action=workspace.released")
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    team_b
        .put_object(ObjectKind::Workspace, "prod", "prod", &evil)
        .await
        .unwrap();
    taken_by_b(
        team_a
            .put_object(ObjectKind::Workspace, "prod", "prod", &ws)
            .await
            .unwrap_err(),
    );
    // Deleting the workspace frees the id too.
    team_b
        .delete_object(ObjectKind::Workspace, "prod", "prod", true)
        .await
        .unwrap();
    team_a
        .put_object(ObjectKind::Workspace, "prod", "prod", &ws)
        .await
        .unwrap();
    svc.stop().await.unwrap();
}

fn taken_by_b(e: ClientError) {
    assert!(
        matches!(&e, ClientError::Api { code, message, .. } if code == "workspace_taken" && message.contains("team-b")),
        "{e:?}"
    );
}

/// A workspace has one RoleMapping: it decides every role, so a second is
/// refused (409 `one_per_workspace`, naming the first) rather than stored
/// and ignored, also when two first mappings arrive at once.
async fn a_workspace_has_one_role_mapping(db: Db) {
    let db = TestDb::new(db).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    let mapping = |role: &str| json!({"rules": [{"equals": "eng", "role": role}]});
    for ws in ["acme", "globex"] {
        c.put_object(
            ObjectKind::Workspace,
            ws,
            ws,
            &json!({"domains": [format!("{ws}.com")]}),
        )
        .await
        .unwrap();
    }
    c.put_object(ObjectKind::RoleMapping, "acme", "roles", &mapping("admin"))
        .await
        .unwrap();
    let err = c
        .put_object(
            ObjectKind::RoleMapping,
            "acme",
            "more-roles",
            &mapping("owner"),
        )
        .await
        .unwrap_err();
    match &err {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!(
                (*status, code.as_str()),
                (StatusCode::CONFLICT, "one_per_workspace")
            );
            assert!(message.contains("\"roles\""), "{message}");
        }
        other => panic!("{other}"),
    }
    let updated = c
        .put_object(ObjectKind::RoleMapping, "acme", "roles", &mapping("owner"))
        .await
        .unwrap();
    assert_eq!(updated.result, Some(PutResult::Updated));

    // Two first mappings of one workspace at once: one wins.
    let doc = mapping("admin");
    let (a, b) = tokio::join!(
        c.put_object(ObjectKind::RoleMapping, "globex", "a", &doc),
        c.put_object(ObjectKind::RoleMapping, "globex", "b", &doc),
    );
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");

    // Once the first is gone, another may take its place.
    c.delete_object(ObjectKind::RoleMapping, "acme", "roles", false)
        .await
        .unwrap();
    c.put_object(
        ObjectKind::RoleMapping,
        "acme",
        "more-roles",
        &mapping("owner"),
    )
    .await
    .unwrap();
    svc.stop().await.unwrap();
}

on_both_databases!(
    a_workspace_has_one_role_mapping,
    workspace_ids_are_claimed,
    second_identical_put_changes_nothing,
    bad_input_gets_a_clear_4xx_and_changes_nothing,
    wrong_or_missing_admin_token_is_401_and_audited,
    deletes_are_idempotent_and_workspaces_refuse_orphans,
    connection_secrets_never_leave_the_service,
    scim_tokens_are_stored_as_hashes_and_ids_are_immutable,
    audit_log_filters_by_workspace_kind_and_time,
    health_readiness_and_metrics,
);

#[tokio::test]
async fn restart_on_the_same_sqlite_file_keeps_everything() {
    let db = TestDb::new(Db::Sqlite).await;
    let svc = start_service(&db.url).await;
    let c = client(&svc);
    let ws = c
        .put_object(
            ObjectKind::Workspace,
            "acme",
            "acme",
            &json!({"domains": ["acme.com"]}),
        )
        .await
        .unwrap();
    let token = idsync::token::generate().unwrap();
    c.put_token(
        "acme",
        &token.id,
        &ScimTokenDoc {
            authentication: None,
            name: "t".into(),
            sha256: Some(token.hash()),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    svc.stop().await.unwrap();

    let svc = start_service(&db.url).await;
    let c = client(&svc);
    let again = c
        .get_object(ObjectKind::Workspace, "acme", "acme")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.fingerprint, ws.fingerprint);
    assert_eq!(c.list_tokens("acme").await.unwrap().len(), 1);
    assert_eq!(c.audit("workspace=acme").await.unwrap().len(), 2);
    svc.stop().await.unwrap();
}
