//! Leader election on a real control plane: two operator replicas, one active; the
//! standby takes over within the lease duration when the leader dies.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{ControlPlane, OperatorProcess, ServiceProcess, eventually};

const LEASE_SECONDS: u64 = 6;

#[tokio::test]
async fn standby_takes_over_when_the_leader_dies() {
    let dir = support::cluster::fresh_dir(env!("CARGO_TARGET_TMPDIR"), "e2e-leader");
    let cp = ControlPlane::start(&dir.join("cluster"));
    cp.install_crds();
    let service = ServiceProcess::start(&dir);
    let lease = LEASE_SECONDS.to_string();
    let extra = [
        "--lease-namespace",
        "default",
        "--lease-duration",
        lease.as_str(),
    ];
    let a = OperatorProcess::start(&cp, &dir, "replica-a", "30s", &extra);
    let b = OperatorProcess::start(&cp, &dir, "replica-b", "30s", &extra);

    let leaders = || async {
        (
            a.metric("idsync_operator_leader").await,
            b.metric("idsync_operator_leader").await,
        )
    };
    let (la, lb) = eventually("one leader", Duration::from_secs(30), || async {
        let (la, lb) = leaders().await;
        (la + lb == 1.0).then_some((la, lb))
    })
    .await;
    let (leader, standby) = if la == 1.0 { (&a, &b) } else { (&b, &a) };
    assert_eq!(la + lb, 1.0, "exactly one replica leads");

    let tenant = |ws: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: idsync-admin, namespace: default}}\nstringData: {{token: {token}}}\n---\napiVersion: idsync.dev/v1alpha1\nkind: IdentityService\nmetadata: {{name: idsync, namespace: default}}\nspec:\n  url: {url}\n  adminTokenSecretRef: {{name: idsync-admin, key: token}}\n---\napiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}, namespace: default}}\nspec:\n  serviceRef: {{name: idsync}}\n",
            token = service.admin_token,
            url = service.url
        )
    };
    cp.apply(&tenant("before"));
    let (ok, out, err) = cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Ready",
            "workspace/before",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "{out}{err}");

    // The leader dies without releasing the lease.
    leader.process.signal("-KILL");
    let killed = Instant::now();
    cp.apply(&tenant("after"));
    let (ok, out, err) = cp.kubectl_run(
        &[
            "wait",
            "--for=condition=Ready",
            "workspace/after",
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        ok,
        "the standby did not take over: {out}{err}\n{}",
        standby.process.tail()
    );
    let takeover = killed.elapsed();
    assert_eq!(standby.metric("idsync_operator_leader").await, 1.0);
    eprintln!(
        "standby synced a new Workspace {takeover:?} after the leader was killed (lease {LEASE_SECONDS}s)"
    );
    assert!(
        takeover < Duration::from_secs(LEASE_SECONDS * 3),
        "takeover took {takeover:?}, more than three lease durations"
    );
    assert!(
        service
            .admin()
            .get_object(
                idsync::service::store::ObjectKind::Workspace,
                "after",
                "after"
            )
            .await
            .unwrap()
            .is_some()
    );
}
