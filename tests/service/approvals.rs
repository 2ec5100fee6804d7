//! Approvals of elevated roles: `approvalRequiredRoles` holds a role back
//! until a `role-approval` names the person; it applies at once, lapses at
//! its expiry, and its removal demotes. Pending requests are listed (who,
//! which role, which rule asked, since when) and counted in a metric.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    on_both_databases,
    signin::{accounts, audit, scim, scim_group, scim_token, scim_user},
    support::{
        Db,
        signin::{ServiceUnderTest, SignInFixture},
    },
};
use idsync::service::store::{ObjectKind, now_millis};

async fn start(db: Db) -> SignInFixture {
    SignInFixture::start(
        db,
        json!({"domains": ["acme.com"], "policy": {"approvalRequiredRoles": ["owner", "admin"]}}),
        accounts(),
        Some(json!({
            "defaultRole": "member",
            "rules": [{"equals": "founders", "role": "owner"}, {"equals": "admins", "role": "admin"}],
        })),
    )
    .await
}

async fn role_of(f: &SignInFixture, who: &str) -> (Option<String>, Option<String>) {
    let m = f.admin.member("acme", who).await.expect("a member");
    (m.role, m.pending_role)
}

fn pair(role: &str, pending: Option<&str>) -> (Option<String>, Option<String>) {
    (Some(role.into()), pending.map(str::to_string))
}

async fn approve(f: &SignInFixture, name: &str, doc: Value) {
    f.admin
        .put_object(ObjectKind::RoleApproval, "acme", name, &doc)
        .await
        .expect("approval stored");
}

/// The metric line for pending approvals of workspace acme, if present.
fn pending_metric(metrics: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| l.starts_with("idsync_role_approvals_pending{workspace=\"acme\"}"))
        .map(str::to_string)
}

/// A counter's value in a metrics page (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn approvals_release_and_lapse(db: Db) {
    let f = start(db).await;
    let token = scim_token(&f).await;
    let alice = scim_user(&f, &token, "alice@acme.com").await;
    scim_group(&f, &token, "founders", std::slice::from_ref(&alice)).await;
    // Owner and admin both wait: she holds member meanwhile.
    assert_eq!(role_of(&f, &alice).await, pair("member", Some("owner")));
    let pending = f.admin.pending_approvals("acme").await.expect("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (pending[0].role.as_str(), pending[0].decided_by.as_str()),
        ("owner", "rules[0]")
    );
    assert!(pending[0].since.is_some());
    let metric = pending_metric(&f.metrics().await);
    assert_eq!(
        metric.as_deref().and_then(|l| l.split(' ').nth(1)),
        Some("1")
    );

    // Approving admin (by email, in any case) releases the lower role only.
    approve(
        &f,
        "alice-admin",
        json!({"email": "ALICE@acme.com", "role": "admin"}),
    )
    .await;
    assert_eq!(role_of(&f, &alice).await, pair("admin", Some("owner")));
    // Approving owner applies at once: the next session check shows it.
    let soon = jiff::Timestamp::from_millisecond(now_millis() + 2_000).expect("a time");
    approve(
        &f,
        "alice-owner",
        json!({"scimId": alice, "role": "owner", "expiresAt": soon.to_string(), "reason": "INC-7"}),
    )
    .await;
    assert_eq!(role_of(&f, &alice).await, pair("owner", None));
    let landing = f.sign_in(&f.browser(), "alice@acme.com", "alice").await;
    let cookie = landing.session_cookie().expect("a session");
    assert_eq!(f.session(&cookie).await.1["role"], "owner");
    assert!(
        f.admin
            .pending_approvals("acme")
            .await
            .expect("pending")
            .is_empty()
    );
    let metric = pending_metric(&f.metrics().await);
    // Zero, not a stale 1.
    assert_eq!(
        metric.as_deref().and_then(|l| l.split(' ').nth(1)),
        Some("0")
    );

    // The owner approval lapses: demoted to what is approved, handled once.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let ServiceUnderTest::InProcess(service) = &f.service else {
        unreachable!("in process")
    };
    let lapsed = service.state.scim.expire_approvals(now_millis()).await;
    assert_eq!(lapsed.expect("lapses handled"), 1);
    assert_eq!(
        service.state.scim.expire_approvals(now_millis()).await.ok(),
        Some(0)
    );
    assert_eq!(role_of(&f, &alice).await, pair("admin", Some("owner")));
    let expired = audit(&f, "role_approval_expired").await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    tokio::time::sleep(Duration::from_millis(1_100)).await; // the check cache
    assert_eq!(f.session(&cookie).await.1["role"], "admin");

    // Deleting the admin approval demotes to member.
    f.admin
        .delete_object(ObjectKind::RoleApproval, "acme", "alice-admin", false)
        .await
        .expect("approval revoked");
    assert_eq!(role_of(&f, &alice).await, pair("member", Some("owner")));
    assert_eq!(audit(&f, "role-approval.deleted").await.len(), 1);

    // Pruning keeps a lapse while its approval is there (else it would be
    // handled again), and forgets it once the approval is deleted.
    let store = service.state.scim.store();
    assert_eq!(store.prune_lapses().await.expect("pruned"), 0);
    assert_eq!(
        service.state.scim.expire_approvals(now_millis()).await.ok(),
        Some(0)
    );
    f.admin
        .delete_object(ObjectKind::RoleApproval, "acme", "alice-owner", false)
        .await
        .expect("approval deleted");
    assert_eq!(store.prune_lapses().await.expect("pruned"), 1);
    assert!(store.handled_lapses().await.expect("read").is_empty());
}

/// An approval may come before the person: given by email, it applies when
/// the directory provisions them into the group. An approval grants nothing
/// the mapping does not give.
async fn approvals_name_people_not_yet_provisioned(db: Db) {
    let f = start(db).await;
    approve(
        &f,
        "bob-owner",
        json!({"email": "bob@acme.com", "role": "owner"}),
    )
    .await;
    approve(
        &f,
        "carol-owner",
        json!({"email": "carol@acme.com", "role": "owner"}),
    )
    .await;
    let token = scim_token(&f).await;
    // Mallory adds bob's address to her own profile: an approval follows a
    // userName, never another email.
    let mallory = scim(
        &f,
        &token,
        reqwest::Method::POST,
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName": "mallory@acme.com", "emails": [{"value": "bob@acme.com"}]}),
    )
    .await;
    let mallory = mallory["id"].as_str().expect("id").to_string();
    let bob = scim_user(&f, &token, "bob@acme.com").await;
    let carol = scim_user(&f, &token, "carol@acme.com").await;
    assert_eq!(role_of(&f, &bob).await, pair("member", None));
    scim_group(&f, &token, "founders", &[bob.clone(), mallory.clone()]).await;
    assert_eq!(role_of(&f, &bob).await, pair("owner", None));
    assert_eq!(role_of(&f, &mallory).await, pair("member", Some("owner")));
    assert_eq!(role_of(&f, &carol).await, pair("member", None));
    // Decisions by outcome: the group gave bob and mallory a rule's role;
    // before that, and for carol, the mapping's default applied.
    let metrics = f.metrics().await;
    let series = |outcome: &str| {
        let name =
            format!("idsync_role_decisions_total{{outcome=\"{outcome}\",workspace=\"acme\"}}");
        counter(&metrics, &name)
    };
    assert_eq!(series("rule_matched"), 2.0, "{metrics}");
    assert!(series("default_applied") >= 2.0, "{metrics}");
    assert_eq!(series("no_role"), 0.0, "{metrics}");
}

/// What the admin API refuses in an approval, with a message that says why.
async fn malformed_approvals_are_refused(db: Db) {
    let f = start(db).await;
    let cases = [
        (json!({"role": "owner"}), "exactly one of email or scimId"),
        (
            json!({"email": "a@acme.com", "scimId": "x", "role": "owner"}),
            "exactly one of email or scimId",
        ),
        (json!({"email": "not-an-email", "role": "owner"}), "email"),
        (json!({"email": "a@acme.com", "role": "Owner!"}), "role"),
        (
            json!({"email": "a@acme.com", "role": "owner", "reason": "x".repeat(501)}),
            "reason",
        ),
        (
            json!({"email": "a@acme.com", "role": "owner", "grant": true}),
            "grant",
        ),
    ];
    for (doc, says) in cases {
        let e = f
            .admin
            .put_object(ObjectKind::RoleApproval, "acme", "bad", &doc)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains(says), "{doc}: {e}");
    }
    let missing = f
        .admin
        .get_object(ObjectKind::RoleApproval, "acme", "bad")
        .await
        .expect("a read");
    assert!(missing.is_none(), "nothing was stored");
    let unknown = reqwest::Client::new()
        .get(format!(
            "{}/admin/v1/workspaces/acme/pending-approvals",
            f.base
        ))
        .send()
        .await
        .expect("unauthenticated call");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
}

on_both_databases!(
    approvals_release_and_lapse,
    approvals_name_people_not_yet_provisioned,
    malformed_approvals_are_refused
);
