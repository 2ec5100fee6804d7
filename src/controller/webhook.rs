//! Reconciling `Webhook`s: the endpoint as a document of the identity
//! service, its signing secret in a Secret the operator owns and rotates,
//! and where deliveries stand in status.
//!
//! The invariant: every delivery is signed with the secret the Secret
//! holds. A rotation therefore tells the service first (it signs with the
//! new and the previous secret from then on) and writes the Secret second;
//! the previous secret stops signing once the overlap has passed. A crash
//! between the two leaves the Secret's secret signing, and the next pass
//! rotates again.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use jiff::Timestamp;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Resource, ResourceExt,
    api::ObjectMeta,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context,
    error::{Error, Result},
    metrics::{Kind, Op},
    owned_secret::{self, MANAGED_BY_LABEL},
    reconciler::{Reconciler, References, Referent},
    rotation::{self, IssueReason},
    status::{self, Cond, READY},
    sync::{self, Synced},
    target::Target,
};
use crate::admin::{DeliveryView, ObjectKind, ReplayRequest, WebhookDoc};
use crate::api::{
    Webhook, WebhookStatus, scim_token::ROTATE_ANNOTATION, webhook::REPLAY_ANNOTATION,
};

pub const WEBHOOK_LABEL: &str = "idsync.dev/webhook";
const ISSUED_AT: &str = "idsync.dev/issued-at";
const PREVIOUS_EXPIRES_AT: &str = "idsync.dev/previous-expires-at";
const DELIVERING: &str = "Delivering";
/// Overlap when the resource sets no rotation schedule.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// How often where deliveries stand is brought to status.
const STATUS_EVERY: Duration = Duration::from_secs(30);

impl Reconciler for Webhook {
    const KIND: Kind = Kind::Webhook;
    const REFERS_TO: &'static [Referent] = &[Referent::Secrets, Referent::Workspace];

    async fn apply(w: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let now = Timestamp::now();
        let outcome = converge(&ctx, &w, now).await;
        let new = status_after(&w, &outcome);
        if let Ok(pass) = &outcome {
            announce(&ctx, &w, pass).await;
        }
        status::patch_if_changed(&ctx, w.as_ref(), w.status.as_ref(), &new).await?;
        let pass = outcome?;
        let moments = [
            next_rotation(&w, &pass.keys),
            pass.keys.previous.as_ref().map(|p| p.1),
        ];
        let due = rotation::next_due(now, &moments).map_or(STATUS_EVERY, |d| d.min(STATUS_EVERY));
        Ok(Action::requeue(due))
    }

    async fn cleanup(w: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        // The Secret goes with the resource (it is owned); the endpoint too.
        sync::delete_document(
            &ctx,
            w.as_ref(),
            &w.spec.workspace_ref.name,
            None,
            ObjectKind::Webhook,
        )
        .await
    }

    /// The signing secret's Secret: editing or deleting it restores it.
    fn references(&self) -> References<'_> {
        References {
            secrets: vec![self.secret_name()],
            workspace: Some(&self.spec.workspace_ref.name),
            service: None,
        }
    }
}

/// The signing secrets as a Secret holds them.
#[derive(Debug, Clone, PartialEq)]
struct Keys {
    current: String,
    issued_at: Timestamp,
    /// The previous secret and until when it still signs.
    previous: Option<(String, Timestamp)>,
}

/// What one pass found and did.
struct Pass {
    keys: Keys,
    issued: Option<IssueReason>,
    synced: Synced,
    deliveries: DeliveryView,
    replayed: Option<(String, i64)>,
}

async fn converge(ctx: &Context, w: &Webhook, now: Timestamp) -> Result<Pass> {
    let ns = w.namespace().unwrap_or_default();
    let (ws, target) = ctx
        .targets
        .for_workspace_ref(&ns, &w.spec.workspace_ref.name)
        .await?;
    let ws_id = ws.workspace_id();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets.get_opt(&w.secret_name()).await?;
    let owner = format!("Webhook {}", w.name_any());
    owned_secret::check_owned(
        secret.as_ref(),
        w.metadata.uid.as_deref(),
        &owner,
        &w.secret_name(),
    )?;
    let (keys, issued) = next_keys(w, observe(secret.as_ref()), now)?;
    // The service first: from here on it signs with every secret a receiver may hold.
    let doc = WebhookDoc {
        url: w.spec.url.clone(),
        event_types: w.spec.event_types.clone(),
        secrets: std::iter::once(keys.current.clone())
            .chain(keys.previous.iter().map(|p| p.0.clone()))
            .collect(),
        ca_bundle: w.spec.ca_bundle.clone(),
    };
    let previous = w
        .status
        .as_ref()
        .and_then(|s| s.synced_fingerprint.as_deref());
    let name = w.name_any();
    let synced = sync::document(
        ctx,
        &target,
        ObjectKind::Webhook,
        &ws_id,
        &name,
        &doc,
        previous,
    )
    .await?;
    let want = desired_secret(w, &keys);
    if !owned_secret::matches(secret.as_ref(), &want) {
        owned_secret::write(ctx, &ns, &want, secret.is_some(), "Webhook").await?;
    }
    let replayed = replay_if_asked(w, &target, &ws_id).await?;
    let deliveries = target
        .call(
            Op::WebhookDeliveries,
            target.client.webhook_deliveries(&ws_id, &name),
        )
        .await?;
    Ok(Pass {
        keys,
        issued,
        synced,
        deliveries,
        replayed,
    })
}

/// Replays from the time `idsync.dev/replay-from` names, once per value.
async fn replay_if_asked(
    w: &Webhook,
    target: &Target,
    ws_id: &str,
) -> Result<Option<(String, i64)>> {
    let asked = w.annotations().get(REPLAY_ANNOTATION);
    let done = w
        .status
        .as_ref()
        .and_then(|s| s.last_replay_request.as_ref());
    let Some(asked) = asked.filter(|a| Some(*a) != done) else {
        return Ok(None);
    };
    let from: Timestamp = asked.parse().map_err(|_| {
        Error::config(
            "InvalidReplay",
            format!("{REPLAY_ANNOTATION}: {asked:?} is not an RFC 3339 time"),
        )
    })?;
    let range = ReplayRequest { from, until: None };
    let name = w.name_any();
    let replay = target.client.replay_webhook(ws_id, &name, &range);
    let queued = target.call(Op::ReplayWebhook, replay).await?;
    Ok(Some((asked.clone(), queued.events)))
}

/// The keys a Secret holds, if its `secret` is a signing secret.
fn observe(secret: Option<&Secret>) -> Option<Keys> {
    let data = secret?.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let at = |k: &str| secret?.annotations().get(k)?.parse::<Timestamp>().ok();
    let current = text("secret").filter(|s| crate::webhook_signing::key_of(s).is_some())?;
    let previous = text("previousSecret")
        .filter(|s| crate::webhook_signing::key_of(s).is_some())
        .zip(at(PREVIOUS_EXPIRES_AT));
    Some(Keys {
        current,
        // A Secret without the annotation was edited by hand: rotate on schedule from now.
        issued_at: at(ISSUED_AT).unwrap_or_else(Timestamp::now),
        previous,
    })
}

/// The keys after this pass: the first, a rotation (scheduled or asked
/// for), or the ones held with an expired previous secret dropped.
fn next_keys(
    w: &Webhook,
    held: Option<Keys>,
    now: Timestamp,
) -> Result<(Keys, Option<IssueReason>)> {
    let Some(held) = held else {
        let keys = Keys {
            current: generate()?,
            issued_at: now,
            previous: None,
        };
        return Ok((keys, Some(IssueReason::Initial)));
    };
    let due = next_rotation(w, &held).is_some_and(|at| at <= now);
    let asked = w.annotations().get(ROTATE_ANNOTATION);
    let done = w
        .status
        .as_ref()
        .and_then(|s| s.last_rotation_request.as_ref());
    let reason = match (due, asked.is_some() && asked != done) {
        (true, _) => Some(IssueReason::Scheduled),
        (false, true) => Some(IssueReason::Requested),
        (false, false) => None,
    };
    if let Some(reason) = reason {
        let overlap = w
            .spec
            .rotation
            .as_ref()
            .map_or(DEFAULT_OVERLAP, |r| r.overlap.as_duration());
        let keys = Keys {
            current: generate()?,
            issued_at: now,
            previous: Some((held.current, rotation::plus(now, overlap))),
        };
        return Ok((keys, Some(reason)));
    }
    let previous = held.previous.filter(|(_, until)| *until > now);
    Ok((Keys { previous, ..held }, None))
}

fn next_rotation(w: &Webhook, keys: &Keys) -> Option<Timestamp> {
    let every = w.spec.rotation.as_ref()?.every.as_duration();
    Some(rotation::plus(keys.issued_at, every))
}

/// A new signing secret: 32 random bytes, `whsec_` and base64.
fn generate() -> Result<String> {
    let mut key = [0u8; 32];
    crate::token::random_bytes(&mut key)?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

/// The Secret as it must be for `keys`.
fn desired_secret(w: &Webhook, keys: &Keys) -> Secret {
    let labels = BTreeMap::from([
        (
            MANAGED_BY_LABEL.0.to_string(),
            MANAGED_BY_LABEL.1.to_string(),
        ),
        (WEBHOOK_LABEL.to_string(), w.name_any()),
    ]);
    let mut annotations = BTreeMap::from([(ISSUED_AT.to_string(), keys.issued_at.to_string())]);
    let mut data = BTreeMap::from([(
        "secret".to_string(),
        ByteString(keys.current.clone().into_bytes()),
    )]);
    if let Some((previous, until)) = &keys.previous {
        data.insert(
            "previousSecret".into(),
            ByteString(previous.clone().into_bytes()),
        );
        annotations.insert(PREVIOUS_EXPIRES_AT.into(), until.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(w.secret_name()),
            namespace: w.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: w.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Events for what changed: a rotation, a replay, a sync, a disablement.
async fn announce(ctx: &Context, w: &Webhook, pass: &Pass) {
    if let Some(reason) = pass.issued {
        let (event, note) = reason.event();
        let note = note.replace("token", "signing secret");
        ctx.event(w, EventType::Normal, event, note).await;
    }
    if let Some((from, n)) = &pass.replayed {
        ctx.event(
            w,
            EventType::Normal,
            "Replayed",
            format!("{n} events from {from} queued again"),
        )
        .await;
    }
    sync::announce(ctx, w, &pass.synced, "webhook").await;
    let was_disabled = w.status.as_ref().is_some_and(|s| s.disabled_at.is_some());
    if pass.deliveries.disabled_at.is_some() && !was_disabled {
        let why = pass.deliveries.last_failure.as_deref().unwrap_or("unknown");
        let note = format!(
            "deliveries stopped ({why}); fix the endpoint, then replay with the {REPLAY_ANNOTATION} annotation"
        );
        ctx.event(w, EventType::Warning, "EndpointDisabled", note)
            .await;
    }
}

/// The status a pass leaves.
fn status_after(w: &Webhook, outcome: &Result<Pass>) -> WebhookStatus {
    let current = w.status.clone().unwrap_or_default();
    let generation = w.metadata.generation;
    let mut new = WebhookStatus {
        observed_generation: generation,
        ..current.clone()
    };
    let conditions = match outcome {
        Ok(pass) => {
            pass.synced
                .record(&mut new.synced_fingerprint, &mut new.last_synced_at);
            record_pass(w, &mut new, pass);
            let d = &pass.deliveries;
            let delivering = match (&d.disabled_at, &d.last_failure) {
                (Some(_), why) => Cond::fail(
                    DELIVERING,
                    "EndpointDisabled",
                    format!(
                        "stopped: {}; replay to start again",
                        why.as_deref().unwrap_or("unknown")
                    ),
                ),
                _ => Cond::ok(
                    DELIVERING,
                    "Delivering",
                    format!("{} events pending", d.pending),
                ),
            };
            vec![
                Cond::ok(READY, "Synced", format!("delivering to {}", w.spec.url)),
                pass.synced.condition(),
                delivering,
            ]
        }
        Err(e) => vec![Cond::error(READY, e), Cond::error(status::SYNCED, e)],
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}

/// The secret's and the deliveries' fields of status.
fn record_pass(w: &Webhook, new: &mut WebhookStatus, pass: &Pass) {
    let at = |t: Option<Timestamp>| t.map(|t| rotation::to_second(t).to_string());
    let d = &pass.deliveries;
    new.secret_name = Some(w.secret_name());
    new.secret_issued_at = at(Some(pass.keys.issued_at));
    new.next_rotation_at = at(next_rotation(w, &pass.keys));
    new.previous_secret_expires_at = at(pass.keys.previous.as_ref().map(|p| p.1));
    new.pending = Some(d.pending);
    new.oldest_pending_at = at(d.oldest_pending_at);
    new.last_success_at = at(d.last_success_at);
    new.last_failure_at = at(d.last_failure_at);
    new.last_failure = d.last_failure.clone();
    new.disabled_at = at(d.disabled_at);
    if let Some((asked, _)) = &pass.replayed {
        new.last_replay_request = Some(asked.clone());
    }
    if pass.issued == Some(IssueReason::Requested) {
        new.last_rotation_request = w.annotations().get(ROTATE_ANNOTATION).cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LocalObjectRef, RotationSpec, WebhookSpec};

    fn webhook(rotation: Option<(&str, &str)>) -> Webhook {
        let spec = WebhookSpec {
            workspace_ref: LocalObjectRef {
                name: "main".into(),
            },
            url: "https://product.example/hooks".into(),
            event_types: vec!["*".into()],
            ca_bundle: None,
            secret_name: None,
            rotation: rotation.map(|(every, overlap)| RotationSpec {
                every: every.parse().expect("a duration"),
                overlap: overlap.parse().expect("a duration"),
            }),
        };
        Webhook::new("product", spec)
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    #[test]
    fn the_first_pass_makes_a_secret_and_a_due_rotation_keeps_the_old_one_for_the_overlap() {
        let w = webhook(Some(("90d", "24h")));
        let now = at("2026-01-01T00:00:00Z");
        let (first, why) = next_keys(&w, None, now).expect("keys");
        assert_eq!(why, Some(IssueReason::Initial));
        assert!(crate::webhook_signing::key_of(&first.current).is_some());
        // Not due: the same keys.
        let (same, why) =
            next_keys(&w, Some(first.clone()), at("2026-02-01T00:00:00Z")).expect("keys");
        assert_eq!((same, why), (first.clone(), None));
        // Due: a new secret, the old one signing for 24 h more.
        let later = at("2026-04-02T00:00:00Z");
        let (rotated, why) = next_keys(&w, Some(first.clone()), later).expect("keys");
        assert_eq!(why, Some(IssueReason::Scheduled));
        assert_ne!(rotated.current, first.current);
        assert_eq!(
            rotated.previous,
            Some((first.current.clone(), at("2026-04-03T00:00:00Z")))
        );
        // Past the overlap the previous secret stops signing.
        let (after, why) =
            next_keys(&w, Some(rotated.clone()), at("2026-04-03T00:00:01Z")).expect("keys");
        assert_eq!((after.previous, why), (None, None));
        let secret = desired_secret(&w, &rotated);
        let data = secret.data.expect("data");
        assert_eq!(data["previousSecret"].0, first.current.as_bytes());
    }

    #[test]
    fn a_rotation_request_is_acted_on_once() {
        let mut w = webhook(None);
        w.metadata.annotations = Some(BTreeMap::from([(
            ROTATE_ANNOTATION.to_string(),
            "1".to_string(),
        )]));
        let now = at("2026-01-01T00:00:00Z");
        let (keys, _) = next_keys(&w, None, now).expect("keys");
        let (_, why) = next_keys(&w, Some(keys.clone()), now).expect("keys");
        assert_eq!(why, Some(IssueReason::Requested));
        w.status = Some(WebhookStatus {
            last_rotation_request: Some("1".into()),
            ..Default::default()
        });
        let (_, why) = next_keys(&w, Some(keys), now).expect("keys");
        assert_eq!(why, None);
    }
}
