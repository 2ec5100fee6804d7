//! Keeping "last used" in statuses fresh without reconciling every object: each
//! identity service is asked every [`POLL_EVERY`] what its IdPs used since its
//! last answer (SCIM credentials presented, connections signed in through),
//! and only the SCIMTokens and SSOConnections concerned are reconciled, which
//! writes their status (`lastUsedAt`, `lastSuccessfulSignInAt`) if it moved.
//! One call per service per poll, whatever the number of objects.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::Stream;
use jiff::Timestamp;
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use tokio::sync::mpsc;

use super::{Context, metrics::Op, target::Target};
use crate::{
    admin::UsageView,
    api::{ScimToken, ServiceKind, SsoConnection, Workspace},
};

/// How often each identity service is asked. The service records a
/// credential's use to the minute, so a status trails the IdP by about a
/// minute plus this.
pub const POLL_EVERY: Duration = Duration::from_secs(20);

/// How far back the first poll of a service looks: the first list of each
/// watch reconciled everything a moment ago.
const FIRST_LOOK_BACK: Duration = Duration::from_secs(120);

/// Objects waiting for a reconcile, per kind. A full channel drops the
/// trigger: the next use, or the periodic resync, brings it.
const QUEUE: usize = 1024;

/// Where the poller sends the objects it found used.
pub struct Senders {
    tokens: mpsc::Sender<ObjectRef<ScimToken>>,
    connections: mpsc::Sender<ObjectRef<SsoConnection>>,
}

/// The triggers of each controller, for `reconcile_on`.
pub struct Triggers {
    pub tokens: mpsc::Receiver<ObjectRef<ScimToken>>,
    pub connections: mpsc::Receiver<ObjectRef<SsoConnection>>,
}

pub fn channels() -> (Senders, Triggers) {
    let (tokens, token_rx) = mpsc::channel(QUEUE);
    let (connections, connection_rx) = mpsc::channel(QUEUE);
    let triggers = Triggers {
        tokens: token_rx,
        connections: connection_rx,
    };
    (
        Senders {
            tokens,
            connections,
        },
        triggers,
    )
}

/// A receiver as a stream.
pub fn stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// Polls every service its Workspaces use, forever.
pub async fn run(
    ctx: Arc<Context>,
    workspaces: Store<Workspace>,
    tokens: Store<ScimToken>,
    send: Senders,
) {
    let mut since: HashMap<String, Timestamp> = HashMap::new();
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tick.tick().await;
        for (key, (target, members)) in services(&ctx, &workspaces).await {
            let from = since.get(&key).copied().unwrap_or_else(|| {
                Timestamp::now()
                    - jiff::SignedDuration::try_from(FIRST_LOOK_BACK).unwrap_or_default()
            });
            // Advisory: a failed poll is retried from the same moment.
            let Ok(usage) = target.call(Op::Usage, target.client.usage(from)).await else {
                continue;
            };
            if let Some(latest) = latest(&usage) {
                since.insert(key, latest.max(from));
            }
            dispatch(&usage, &members, &tokens, &send);
        }
    }
}

/// The Workspaces of each identity service (by `ns/name`, or the name of a
/// ClusterIdentityService), with the service's target.
async fn services(
    ctx: &Context,
    workspaces: &Store<Workspace>,
) -> HashMap<String, (Target, Vec<Arc<Workspace>>)> {
    let mut by_service: HashMap<String, (Target, Vec<Arc<Workspace>>)> = HashMap::new();
    for ws in workspaces.state() {
        let service = &ws.spec.service_ref;
        let key = match service.kind() {
            ServiceKind::IdentityService => {
                format!("{}/{}", ws.namespace().unwrap_or_default(), service.name)
            }
            ServiceKind::ClusterIdentityService => service.name.clone(),
        };
        if let Some((_, members)) = by_service.get_mut(&key) {
            members.push(ws);
            continue;
        }
        // A Workspace whose service is missing shows that in its own status.
        if let Ok(target) = ctx.targets.for_workspace(&ws).await {
            by_service.insert(key, (target, vec![ws]));
        }
    }
    by_service
}

/// The latest moment an answer reports.
fn latest(usage: &UsageView) -> Option<Timestamp> {
    let tokens = usage.tokens.iter().map(|t| t.last_used_at);
    let connections = usage.connections.iter().map(|c| c.last_success_at);
    tokens.chain(connections).max()
}

/// Sends each SCIMToken and SSOConnection of `members` the answer names.
fn dispatch(
    usage: &UsageView,
    members: &[Arc<Workspace>],
    tokens: &Store<ScimToken>,
    send: &Senders,
) {
    let namespaces_of = |workspace_id: &str| -> BTreeSet<String> {
        members
            .iter()
            .filter(|ws| ws.workspace_id() == workspace_id)
            .filter_map(|ws| ws.namespace())
            .collect()
    };
    for used in &usage.tokens {
        let namespaces = namespaces_of(&used.workspace);
        let at = used.last_used_at.to_string();
        for t in tokens.state() {
            let status = t.status.as_ref();
            let current = status.and_then(|s| s.token_id.as_deref()) == Some(used.id.as_str());
            let shown = status.and_then(|s| s.last_used_at.as_deref()) == Some(at.as_str());
            if current && !shown && namespaces.contains(&t.namespace().unwrap_or_default()) {
                let _ = send.tokens.try_send(ObjectRef::from_obj(t.as_ref()));
            }
        }
    }
    for used in &usage.connections {
        for ns in namespaces_of(&used.workspace) {
            let object = ObjectRef::new(&used.name).within(&ns);
            let _ = send.connections.try_send(object);
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::admin::{ConnectionUse, TokenUse};
    use crate::api::ScimTokenStatus;

    fn workspace(ns: &str, id: &str) -> Arc<Workspace> {
        let spec = serde_json::from_value(serde_json::json!({
            "serviceRef": {"name": "idsync"}, "workspaceId": id,
        }))
        .expect("a spec");
        let mut ws = Workspace::new("main", spec);
        ws.metadata.namespace = Some(ns.into());
        Arc::new(ws)
    }

    fn token(ns: &str, name: &str, id: &str, shown: Option<&str>) -> ScimToken {
        let spec = serde_json::from_value(serde_json::json!({"workspaceRef": {"name": "main"}}))
            .expect("a spec");
        let mut t = ScimToken::new(name, spec);
        t.metadata.namespace = Some(ns.into());
        t.status = Some(ScimTokenStatus {
            token_id: Some(id.into()),
            last_used_at: shown.map(str::to_string),
            ..Default::default()
        });
        t
    }

    #[test]
    fn only_the_objects_an_answer_names_are_reconciled() {
        let (store, mut writer) = reflector::store::<ScimToken>();
        let at: Timestamp = "2026-12-02T10:00:00Z".parse().expect("a time");
        for t in [
            token("team-a", "okta", "tok1", None),
            // Already shows this use: nothing to write.
            token("team-a", "entra", "tok2", Some(&at.to_string())),
            // Same token id in a namespace of another workspace.
            token("team-b", "okta", "tok1", None),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(t));
        }
        let members = [workspace("team-a", "acme"), workspace("team-b", "globex")];
        let usage = UsageView {
            tokens: ["tok1", "tok2"]
                .map(|id| TokenUse {
                    workspace: "acme".into(),
                    id: id.into(),
                    last_used_at: at,
                })
                .into(),
            connections: vec![ConnectionUse {
                workspace: "acme".into(),
                name: "okta-oidc".into(),
                last_success_at: at,
            }],
        };
        let (send, mut triggers) = channels();
        dispatch(&usage, &members, &store, &send);
        let tokens: Vec<_> = std::iter::from_fn(|| triggers.tokens.try_recv().ok()).collect();
        assert_eq!(tokens, [ObjectRef::new("okta").within("team-a")]);
        let connections: Vec<_> =
            std::iter::from_fn(|| triggers.connections.try_recv().ok()).collect();
        assert_eq!(connections, [ObjectRef::new("okta-oidc").within("team-a")]);
        assert_eq!(latest(&usage), Some(at));
    }
}
