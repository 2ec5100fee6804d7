//! Reconciler scenarios against a scripted API server: a real kube `Client`
//! over a service that hands each request to the test, so a test sees every
//! request a reconcile sends, in order, and answers it. They run in milliseconds and pin what the
//! real-apiserver tests (tests/e2e*.rs) cannot single out: a status written
//! only when it changes, an Event only when a failure is new.
//!
//! A mock is the right part here: the question is which requests are sent,
//! and a real apiserver would answer them all without telling.

use std::{sync::Arc, time::Duration};

use http::{Method, Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{
    Context, OperatorMetrics,
    cache::{Caches, Shared},
    context::Settings,
    reconciler::Reconciler,
};
use crate::api::RoleMapping;

/// A request the client sent, with the way to answer it.
type Exchange = (Request<Body>, oneshot::Sender<Response<Body>>);

/// The scripted side of the API server.
struct ApiServer(mpsc::UnboundedReceiver<Exchange>);

impl ApiServer {
    /// Answers the next request, which must be `method` on a path ending in
    /// `path_end`, with what `answer` makes of its body; returns that body.
    async fn expect(
        &mut self,
        method: Method,
        path_end: &str,
        answer: impl FnOnce(&Value) -> Value,
    ) -> Value {
        self.expect_status(method, path_end, 200, answer).await
    }

    /// [`Self::expect`], answering with HTTP status `code`.
    async fn expect_status(
        &mut self,
        method: Method,
        path_end: &str,
        code: u16,
        answer: impl FnOnce(&Value) -> Value,
    ) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(5), self.0.recv());
        let (request, answer_with) = next
            .await
            .expect("a request within 5 s")
            .expect("the client is still there");
        let path = request.uri().path().to_string();
        assert_eq!(request.method(), method, "{path}");
        assert!(path.ends_with(path_end), "{method} {path}, not …{path_end}");
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("a request body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let answer = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(answer(&body).to_string().into_bytes()))
            .expect("a valid response");
        // The client may have given up (a test failing elsewhere).
        let _ = answer_with.send(answer);
        body
    }

    /// No request arrives within a while.
    async fn expect_none(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.0.recv()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected {} {}", request.method(), request.uri());
        }
    }
}

fn context() -> (Arc<Context>, ApiServer) {
    let (requests, handle) = mpsc::unbounded_channel::<Exchange>();
    let service = tower::service_fn(move |request: Request<Body>| {
        let requests = requests.clone();
        async move {
            let (answer_with, answer) = oneshot::channel();
            requests
                .send((request, answer_with))
                .map_err(|_| "the test stopped listening")?;
            answer.await.map_err(|_| "the test did not answer")
        }
    });
    let client = Client::new(service, "default");
    let settings = Settings {
        resync: Duration::from_secs(60),
        concurrency: 1,
        outbound: Default::default(),
        cluster: "test".into(),
        operator_namespace: "idsync".into(),
    };
    let caches = Caches::new(
        client.clone(),
        &Shared::new(),
        &Shared::new(),
        &Shared::new(),
        &Shared::new(),
    );
    let ctx = Context::new(client, OperatorMetrics::new(), &settings, caches);
    (ctx, ApiServer(handle))
}

/// A RoleMapping whose one inline test fails: `admins` map to admin, and the
/// test expects member.
fn failing_mapping() -> RoleMapping {
    serde_json::from_value(json!({
        "apiVersion": "idsync.dev/v1alpha1",
        "kind": "RoleMapping",
        "metadata": {"name": "roles", "namespace": "acme", "generation": 3, "uid": "u1"},
        "spec": {
            "workspaceRef": {"name": "acme"},
            "rules": [{"equals": "admins", "role": "admin"}],
            "tests": [{"name": "admins are members", "groups": ["admins"], "expect": "member"}],
        },
    }))
    .expect("a RoleMapping")
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status}"))
}

#[tokio::test]
async fn failing_inline_tests_are_reported_once_and_never_synced() {
    let (ctx, mut api) = context();
    let rm = Arc::new(failing_mapping());
    let reconcile = tokio::spawn(RoleMapping::apply(rm, ctx.clone()));

    // The status says why, and nothing reaches the identity service (there
    // is none to reach: the mock would see any request the sync made).
    // The apiserver answers a status patch with the whole object.
    let with_status = |patch: &Value| {
        let mut object = serde_json::to_value(failing_mapping()).expect("serializes");
        object["status"] = patch["status"].clone();
        object
    };
    let echo = |body: &Value| body.clone();
    let patch = api
        .expect(Method::PATCH, "/rolemappings/roles/status", with_status)
        .await;
    let status = &patch["status"];
    assert_eq!(status["observedGeneration"], 3, "{status}");
    assert_eq!(condition(status, "TestsPassed")["status"], "False");
    assert_eq!(condition(status, "TestsPassed")["reason"], "TestsFailed");
    assert_eq!(condition(status, "Ready")["status"], "False");
    let event = api
        .expect(Method::POST, "/namespaces/acme/events", echo)
        .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "TestsFailed");
    let result = reconcile.await.expect("the reconcile ran");
    let error = result.expect_err("a failing mapping is an error");
    assert!(!error.is_transient(), "{error}: retrying cannot fix a test");

    // The next pass over the same object, now carrying that status, sends
    // nothing at all: no status patch, no second Event.
    let mut seen = failing_mapping();
    seen.status = Some(serde_json::from_value(status.clone()).expect("a status"));
    let again = tokio::spawn(RoleMapping::apply(Arc::new(seen), ctx));
    api.expect_none().await;
    assert!(again.await.expect("the reconcile ran").is_err());
}

#[tokio::test]
async fn deleting_a_mapping_leaves_the_service_alone_when_retained_or_its_workspace_is_gone() {
    let (ctx, mut api) = context();
    let mut retained = failing_mapping();
    retained.spec.deletion_policy = Some(crate::api::DeletionPolicy::Retain);
    let cleanup = RoleMapping::cleanup(Arc::new(retained), ctx.clone());
    let done = tokio::spawn(cleanup);
    api.expect_none().await;
    assert!(done.await.expect("ran").is_ok(), "Retain releases at once");

    // Delete: the Workspace is looked up (the cache may lag a deletion), and
    // when the apiserver says it is gone there is nothing to delete from.
    let done = tokio::spawn(RoleMapping::cleanup(Arc::new(failing_mapping()), ctx));
    let not_found = |_: &Value| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "NotFound", "code": 404, "message": "workspaces \"acme\" not found"})
    };
    api.expect_status(
        Method::GET,
        "/namespaces/acme/workspaces/acme",
        404,
        not_found,
    )
    .await;
    api.expect_none().await;
    assert!(
        done.await.expect("ran").is_ok(),
        "a gone workspace releases"
    );
}
