//! The `idsync` binary as people run it.

use crate::support;

use std::process::Command;

use support::{ADMIN_TOKEN, Db, TestDb, base_url, repo_root, start_service};

fn idsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idsync"))
}

/// `idsync admin ARGS` against the service at `url`; answers its stdout and
/// fails the test when it fails. The service runs on the test's runtime, so
/// the CLI runs beside it (not blocking it).
async fn admin_cli(url: &str, token_file: &std::path::Path, args: &[&str]) -> String {
    let mut c = idsync();
    c.arg("admin")
        .args(args)
        .env("IDSYNC_URL", url)
        .env("IDSYNC_ADMIN_TOKEN_FILE", token_file);
    let out = tokio::process::Command::from(c).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "admin {args:?}: {stdout}{stderr}");
    stdout
}

#[test]
fn roles_test_names_the_deciding_rule() {
    let out = idsync()
        .args(["roles", "test", "-f"])
        .arg(repo_root().join("examples/okta-oidc.yaml"))
        .args(["--groups", "engineering,octomil-admins"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("role: admin"), "{stdout}");
    assert!(
        stdout.contains("decided by: rule 1 (group equals \"octomil-admins\")"),
        "{stdout}"
    );
    assert!(stdout.contains("inline tests: all 3 pass"), "{stdout}");

    let out = idsync()
        .args(["roles", "test", "-f"])
        .arg(repo_root().join("examples/entra-saml.yaml"))
        .args(["--claim", "department=data-science"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("role: editor"), "{stdout}");
    assert!(stdout.contains("claim \"department\""), "{stdout}");
}

#[test]
fn crd_command_prints_every_kind() {
    let out = idsync().arg("crd").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for kind in [
        "IdentityService",
        "Workspace",
        "SSOConnection",
        "SCIMToken",
        "RoleMapping",
    ] {
        assert!(
            stdout.contains(&format!("kind: {kind}\n")),
            "{kind} missing"
        );
    }
}

#[tokio::test]
async fn admin_apply_of_the_examples_is_idempotent() {
    let db = TestDb::new(Db::Sqlite).await;
    let svc = start_service(&db.url).await;
    let token_file = db.dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let token_dir = db.dir.path().join("tokens");
    let url = base_url(&svc);
    let apply = || {
        tokio::process::Command::from({
            let mut c = idsync();
            c.args(["admin", "apply", "-f"])
                .arg(repo_root().join("examples"))
                .arg("--token-dir")
                .arg(&token_dir)
                .env("IDSYNC_URL", &url)
                .env("IDSYNC_ADMIN_TOKEN_FILE", &token_file);
            c
        })
        .output()
    };
    let first = apply().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // 4 Workspaces, 4 SSOConnections, 4 SCIMTokens and 3 RoleMappings.
    let objects = 15;
    assert_eq!(stdout.matches(" created").count(), objects, "{stdout}");
    assert!(
        stdout.contains("workspace.idsync.dev/octomil created"),
        "{stdout}"
    );
    let tokens: Vec<_> = std::fs::read_dir(&token_dir).unwrap().collect();
    assert_eq!(tokens.len(), 4, "one file per SCIMToken");

    let audit_before = support::client(&svc)
        .audit("limit=1000")
        .await
        .unwrap()
        .len();
    let second = apply().await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success());
    assert_eq!(stdout.matches(" unchanged").count(), objects, "{stdout}");
    let audit_after = support::client(&svc)
        .audit("limit=1000")
        .await
        .unwrap()
        .len();
    assert_eq!(
        audit_after, audit_before,
        "re-applying wrote to the service"
    );
    svc.stop().await.unwrap();
}

#[test]
fn help_reads_like_a_finished_tool() {
    let out = idsync().arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "operator", "crd", "roles", "admin"] {
        assert!(stdout.contains(command), "{command} missing from --help");
    }
    let out = idsync()
        .args(["admin", "scim-token", "issue", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--workspace"));
}

/// What an administrator without Kubernetes does for a product's CI: apply
/// the Tecton example, see what SCIM gave a member (`members get`), issue a
/// key for them (`keys issue`), list it and revoke it; the key answers the
/// session check until it is revoked.
#[tokio::test]
async fn admin_members_and_keys_from_the_command_line() {
    let db = TestDb::new(Db::Sqlite).await;
    let svc = start_service(&db.url).await;
    let token_file = db.dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let url = base_url(&svc);
    let admin = async |args: &[&str]| admin_cli(&url, &token_file, args).await;
    let example = repo_root().join("examples/tecton-okta.yaml");
    admin(&[
        "apply",
        "-f",
        example.to_str().unwrap(),
        "--token-dir",
        db.dir.path().to_str().unwrap(),
    ])
    .await;
    let scim_token = admin(&["scim-token", "issue", "-w", "tecton"])
        .await
        .trim()
        .to_string();
    let http = reqwest::Client::new();
    // The same for an IdP that asks for a client ID and secret.
    let printed = admin(&["scim-token", "issue", "-w", "tecton", "--basic"]).await;
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {printed}"))
            .to_string()
    };
    let (client_id, client_secret) = (field("client id: "), field("client secret: "));
    let listed = http
        .get(format!("{url}/scim/v2/tecton/Users"))
        .basic_auth(&client_id, Some(&client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), reqwest::StatusCode::OK);
    let created = http
        .post(format!("{url}/scim/v2/tecton/Users"))
        .bearer_auth(&scim_token)
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "alice@tecton.ai",
            "roles": [{"type": "workspace_prod", "value": "editor"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    let member: serde_json::Value = serde_json::from_str(
        &admin(&[
            "members",
            "get",
            "-w",
            "tecton",
            "alice@tecton.ai",
            "-o",
            "json",
        ])
        .await,
    )
    .unwrap();
    assert_eq!(member["type"], "User");
    assert_eq!(
        member["assignments"],
        serde_json::json!([{"type": "workspace_prod", "value": "editor"}])
    );
    let table = admin(&["members", "get", "-w", "tecton", "alice@tecton.ai"]).await;
    assert!(table.contains("workspace_prod=editor"), "{table}");

    let key = admin(&[
        "keys",
        "issue",
        "-w",
        "tecton",
        "--principal",
        "alice@tecton.ai",
        "--name",
        "ci",
        "--expires-in",
        "30d",
    ])
    .await;
    let key = key.trim();
    assert!(key.starts_with("idsync_key_"), "{key}");
    let check = || {
        http.get(format!("{url}/sso/session"))
            .bearer_auth(key)
            .send()
    };
    let answer: serde_json::Value = check().await.unwrap().json().await.unwrap();
    assert_eq!(answer["userName"], "alice@tecton.ai", "{answer}");
    let listed: serde_json::Value =
        serde_json::from_str(&admin(&["keys", "list", "-w", "tecton", "-o", "json"]).await)
            .unwrap();
    let id = listed[0]["id"].as_str().expect("the key's id").to_string();
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        !listed.to_string().contains(key),
        "listings never show the key"
    );
    admin(&["keys", "revoke", "-w", "tecton", &id]).await;
    assert_eq!(
        check().await.unwrap().status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    svc.stop().await.unwrap();
}

/// `idsync admin approvals` and `members explain` as an admin without a
/// cluster uses them: what waits and why, approving with an expiry and a
/// reason, revoking.
#[tokio::test]
async fn approvals_and_explanations_from_the_command_line() {
    let db = TestDb::new(Db::Sqlite).await;
    let svc = start_service(&db.url).await;
    let token_file = db.dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let url = base_url(&svc);
    let admin = async |args: &[&str]| admin_cli(&url, &token_file, args).await;
    let manifests = db.dir.path().join("acme.yaml");
    std::fs::write(
        &manifests,
        r#"apiVersion: idsync.dev/v1alpha1
kind: Workspace
metadata: {name: acme}
spec:
  serviceRef: {name: idsync}
  domains: [acme.com]
  policy: {approvalRequiredRoles: [owner]}
---
apiVersion: idsync.dev/v1alpha1
kind: RoleMapping
metadata: {name: roles}
spec:
  workspaceRef: {name: acme}
  defaultRole: member
  rules: [{role: owner, equals: founders}]
"#,
    )
    .unwrap();
    admin(&["apply", "-f", manifests.to_str().unwrap()]).await;
    let token = admin(&["scim-token", "issue", "-w", "acme"]).await;
    let scim = async |path: &str, body: serde_json::Value| -> serde_json::Value {
        let r = reqwest::Client::new()
            .post(format!("{url}/scim/v2/acme{path}"))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        r.json().await.unwrap()
    };
    let ada = scim(
        "/Users",
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                           "userName": "ada@acme.com"}),
    )
    .await;
    scim(
        "/Groups",
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": "founders", "members": [{"value": ada["id"]}]}),
    )
    .await;

    let listed = admin(&["approvals", "list", "-w", "acme"]).await;
    let row = listed
        .lines()
        .find(|l| l.starts_with("ada@acme.com"))
        .unwrap_or_else(|| panic!("no pending row for ada: {listed}"));
    for cell in ["owner", "admin", "rules[0]"] {
        assert!(row.contains(cell), "{cell} missing: {row}");
    }
    let explained = admin(&["members", "explain", "-w", "acme", "--user", "ada@acme.com"]).await;
    for line in [
        "waiting for:  owner (needs an approval)",
        "decided by:   rules[0] of roles, giving owner",
        "groups:       founders",
        "approvals:    none",
    ] {
        assert!(explained.contains(line), "{line:?} missing:\n{explained}");
    }

    admin(&[
        "approvals",
        "approve",
        "-w",
        "acme",
        "--user",
        "ada@acme.com",
        "--role",
        "owner",
        "--expires-in",
        "30d",
        "--reason",
        "CHG-42",
    ])
    .await;
    let member = admin(&["members", "get", "-w", "acme", "ada@acme.com", "-o", "json"]).await;
    let member: serde_json::Value = serde_json::from_str(&member).unwrap();
    assert_eq!(member["role"], "owner", "{member}");
    let both = admin(&["approvals", "list", "-w", "acme", "-o", "json"]).await;
    let both: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(both["pending"], serde_json::json!([]), "{both}");
    assert_eq!(both["approvals"][0]["spec"]["reason"], "CHG-42", "{both}");
    let explained = admin(&["members", "explain", "-w", "acme", "--user", "ada@acme.com"]).await;
    let name = both["approvals"][0]["name"].as_str().unwrap();
    assert!(
        explained.contains(&format!("approvals:    {name}")),
        "{explained}"
    );

    admin(&[
        "approvals",
        "revoke",
        "-w",
        "acme",
        "--user",
        "ada@acme.com",
        "--role",
        "owner",
    ])
    .await;
    let member = admin(&["members", "get", "-w", "acme", "ada@acme.com", "-o", "json"]).await;
    let member: serde_json::Value = serde_json::from_str(&member).unwrap();
    assert_eq!(
        (member["role"].as_str(), member["pendingRole"].as_str()),
        (Some("admin"), Some("owner"))
    );
}
