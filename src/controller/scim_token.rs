//! Reconciling `SCIMToken`s: issue, rotate with overlap, restore, revoke.
//!
//! The invariant: at every instant, the token in the Secret is accepted by the
//! identity service. Each reconcile converges from what it observes (the Secret,
//! the service's tokens, the status) rather than from remembered steps, so a crash
//! or an API error between any two steps converges on the next pass:
//!
//! 1. a new token is registered first, with an expiry one overlap window away, so a
//!    token that never reaches the Secret (crash right after) dies by itself;
//! 2. the Secret is written;
//! 3. the token in the Secret is made permanent;
//! 4. every other token of this resource gets the overlap window as its expiry,
//!    and tokens past their expiry are revoked.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Resource, ResourceExt,
    api::ObjectMeta,
    runtime::{controller::Action, events::EventType},
};

use super::{
    Context,
    error::{Error, Result},
    owned_secret::{self, MANAGED_BY_LABEL},
    status::{self, Cond, READY, ROTATED},
    target::Target,
};
use crate::admin::{ScimTokenDoc, TokenView};
use crate::api::{DeletionPolicy, ScimToken, ScimTokenStatus, scim_token::ROTATE_ANNOTATION};
use crate::token;

/// Overlap when the resource sets no rotation schedule (rotation by annotation only).
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
pub const TOKEN_LABEL: &str = "idsync.dev/scim-token";
const TOKEN_ID_ANNOTATION: &str = "idsync.dev/token-id";

/// Name of this resource's tokens in the identity service.
fn token_name(t: &ScimToken) -> String {
    format!("{}.{}", t.namespace().unwrap_or_default(), t.name_any())
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// Why a new token is issued, if one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssueReason {
    /// No Secret or no token in it yet.
    Initial,
    /// The Secret holds a token the service does not accept (edited, revoked).
    Restore,
    /// `rotation.every` has passed since the current token was issued.
    Scheduled,
    /// The rotate annotation has a value not acted on yet.
    Requested,
}

impl IssueReason {
    fn event(self) -> (&'static str, &'static str) {
        match self {
            IssueReason::Initial => ("Issued", "issued the first token"),
            IssueReason::Restore => (
                "Restored",
                "the Secret's token was not accepted by the identity service; issued a new one",
            ),
            IssueReason::Scheduled => ("Rotated", "rotated on schedule"),
            IssueReason::Requested => (
                "Rotated",
                "rotated on request (idsync.dev/rotate-requested-at)",
            ),
        }
    }
}

/// What one pass decided, for status.
struct Converged {
    current: TokenView,
    issued: Option<IssueReason>,
    previous: Option<(String, Timestamp)>,
    scim_base_url: String,
}

fn secret_data(secret: Option<&Secret>, key: &str) -> Option<String> {
    secret?
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// The Secret as it must be, for `token`.
fn desired_secret(t: &ScimToken, token_value: &str, token_id: &str, scim_base_url: &str) -> Secret {
    let mut labels = BTreeMap::new();
    labels.insert(
        MANAGED_BY_LABEL.0.to_string(),
        MANAGED_BY_LABEL.1.to_string(),
    );
    labels.insert(TOKEN_LABEL.to_string(), t.name_any());
    let mut annotations = BTreeMap::new();
    annotations.insert(TOKEN_ID_ANNOTATION.to_string(), token_id.to_string());
    let mut data = BTreeMap::new();
    data.insert(
        "token".to_string(),
        ByteString(token_value.as_bytes().to_vec()),
    );
    data.insert(
        "scimBaseUrl".to_string(),
        ByteString(scim_base_url.as_bytes().to_vec()),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(t.secret_name()),
            namespace: t.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: t.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn overlap_of(t: &ScimToken) -> Duration {
    t.spec
        .rotation
        .as_ref()
        .map(|r| r.overlap.as_duration())
        .unwrap_or(DEFAULT_OVERLAP)
}

fn plus(ts: Timestamp, d: Duration) -> Timestamp {
    ts.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

async fn converge(ctx: &Context, t: &ScimToken, target: &Target, ws_id: &str) -> Result<Converged> {
    let now = Timestamp::now();
    let name = token_name(t);
    let overlap = overlap_of(t);
    let scim_base_url = target.scim_base_url(ws_id);
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let secret = secrets.get_opt(&t.secret_name()).await?;
    // A Secret idsync did not create is neither read nor written.
    owned_secret::check_owned(
        secret.as_ref(),
        t.metadata.uid.as_deref(),
        &format!("SCIMToken {}", t.name_any()),
        &t.secret_name(),
    )?;
    let status = t.status.clone().unwrap_or_default();

    // What the Secret holds, and whether the service accepts it.
    let in_secret = secret_data(secret.as_ref(), "token");
    let accepted: Option<TokenView> = match in_secret.as_deref().and_then(token::parse_id) {
        Some(id) => target
            .call("get-token", target.client.get_token(ws_id, id))
            .await?
            .filter(|v| {
                v.valid
                    && v.name == name
                    && in_secret
                        .as_deref()
                        .is_some_and(|s| token::hash(s) == v.sha256)
            }),
        None => None,
    };

    let requested = t.annotations().get(ROTATE_ANNOTATION).cloned();
    let due = |view: &TokenView| {
        let issued = if status.token_id.as_deref() == Some(view.id.as_str()) {
            status.issued_at.as_deref().and_then(parse_time)
        } else {
            parse_time(&view.created_at)
        };
        match (&t.spec.rotation, issued) {
            (Some(r), Some(issued)) => plus(issued, r.every.as_duration()) <= now,
            _ => false,
        }
    };
    let reason = match &accepted {
        None if in_secret.is_none() => Some(IssueReason::Initial),
        None => Some(IssueReason::Restore),
        Some(view) if due(view) => Some(IssueReason::Scheduled),
        Some(_) if requested.is_some() && requested != status.last_rotation_request => {
            Some(IssueReason::Requested)
        }
        Some(_) => None,
    };

    let (current, current_value) = match (reason, accepted) {
        (None, Some(view)) => (view, in_secret.unwrap_or_default()),
        (reason, _) => {
            // 1. Register first, expiring after one overlap unless step 3 is reached.
            let new = token::generate()?;
            let pending = ScimTokenDoc {
                name: name.clone(),
                sha256: Some(new.hash()),
                expires_at: Some(plus(now, overlap).to_string()),
            };
            target
                .call(
                    "put-token",
                    target.client.put_token(ws_id, &new.id, &pending),
                )
                .await?;
            // 2. The Secret.
            owned_secret::write(
                ctx,
                &t.namespace().unwrap_or_default(),
                &desired_secret(t, new.expose(), &new.id, &scim_base_url),
                secret.is_some(),
                "SCIMToken",
            )
            .await?;
            let view = target
                .call("get-token", target.client.get_token(ws_id, &new.id))
                .await?
                .ok_or_else(|| {
                    Error::config(
                        "TokenLost",
                        "the token just registered is gone from the identity service",
                    )
                })?;
            if let Some(reason) = reason {
                let (event, note) = reason.event();
                ctx.event(
                    t,
                    EventType::Normal,
                    event,
                    format!("{note}: token {}", new.id),
                )
                .await;
            }
            (view, new.expose().to_string())
        }
    };
    let issued = reason;

    // 3. The token in the Secret never expires on its own.
    let current = if current.expires_at.is_some() {
        let permanent = ScimTokenDoc {
            name: name.clone(),
            sha256: None,
            expires_at: None,
        };
        target
            .call(
                "put-token",
                target.client.put_token(ws_id, &current.id, &permanent),
            )
            .await?
    } else {
        current
    };

    // The Secret's other keys, labels and owner (restores hand edits; writes nothing
    // when it already matches).
    let want = desired_secret(t, &current_value, &current.id, &scim_base_url);
    let secret_now = if issued.is_some() {
        secrets.get_opt(&t.secret_name()).await?
    } else {
        secret
    };
    if !owned_secret::matches(secret_now.as_ref(), &want) {
        owned_secret::write(
            ctx,
            &t.namespace().unwrap_or_default(),
            &want,
            secret_now.is_some(),
            "SCIMToken",
        )
        .await?;
    }

    // 4. Retire every other token of this resource.
    let mut previous: Option<(String, Timestamp)> = None;
    let tokens = target
        .call("list-tokens", target.client.list_tokens(ws_id))
        .await?;
    for other in tokens
        .iter()
        .filter(|o| o.name == name && o.id != current.id && o.revoked_at.is_none())
    {
        match other.expires_at.as_deref().and_then(parse_time) {
            None => {
                let expires = plus(now, overlap);
                let doc = ScimTokenDoc {
                    name: name.clone(),
                    sha256: None,
                    expires_at: Some(expires.to_string()),
                };
                target
                    .call("put-token", target.client.put_token(ws_id, &other.id, &doc))
                    .await?;
                if previous.as_ref().is_none_or(|(_, e)| expires > *e) {
                    previous = Some((other.id.clone(), expires));
                }
            }
            Some(expires) if expires <= now => {
                target
                    .call("revoke-token", target.client.revoke_token(ws_id, &other.id))
                    .await?;
            }
            Some(expires) => {
                if previous.as_ref().is_none_or(|(_, e)| expires > *e) {
                    previous = Some((other.id.clone(), expires));
                }
            }
        }
    }
    Ok(Converged {
        current,
        issued,
        previous,
        scim_base_url,
    })
}

pub async fn apply(t: Arc<ScimToken>, ctx: Arc<Context>) -> Result<Action> {
    let ns = t.namespace().unwrap_or_default();
    let name = t.name_any();
    let current = t.status.clone().unwrap_or_default();
    let generation = t.metadata.generation;
    let outcome = async {
        let (ws, target) = ctx
            .targets
            .for_workspace_ref(&ns, &t.spec.workspace_ref.name)
            .await?;
        converge(&ctx, &t, &target, &ws.workspace_id()).await
    }
    .await;

    let now = Timestamp::now();
    let mut new = ScimTokenStatus {
        observed_generation: generation,
        secret_name: Some(t.secret_name()),
        ..current.clone()
    };
    // Something due before the next resync pass gets its own timer.
    let mut requeue: Option<Duration> = None;
    let mut due_in = |d: Duration| requeue = Some(requeue.map_or(d, |r| r.min(d)));
    match &outcome {
        Ok(c) => {
            let issued_at = if c.issued.is_some()
                || current.token_id.as_deref() != Some(c.current.id.as_str())
            {
                // Second precision, as Kubernetes stores times.
                c.current.created_at.parse::<Timestamp>().unwrap_or(now)
            } else {
                current
                    .issued_at
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(now)
            };
            let issued_at = Timestamp::from_second(issued_at.as_second()).unwrap_or(issued_at);
            new.token_id = Some(c.current.id.clone());
            new.issued_at = Some(issued_at.to_string());
            new.scim_base_url = Some(c.scim_base_url.clone());
            new.previous_token_id = c.previous.as_ref().map(|(id, _)| id.clone());
            new.previous_token_expires_at = c.previous.as_ref().map(|(_, e)| {
                Timestamp::from_second(e.as_second())
                    .unwrap_or(*e)
                    .to_string()
            });
            new.last_rotation_request = t.annotations().get(ROTATE_ANNOTATION).cloned();
            let next = t
                .spec
                .rotation
                .as_ref()
                .map(|r| plus(issued_at, r.every.as_duration()));
            new.next_rotation_at = next.map(|n| n.to_string());
            match next {
                Some(n) => {
                    let until = n.duration_since(now);
                    ctx.metrics
                        .token_rotation_seconds
                        .with_label_values(&[&ns, &name])
                        .set(until.as_secs_f64());
                    ctx.metrics
                        .token_rotation_timestamp
                        .with_label_values(&[&ns, &name])
                        .set(n.as_millisecond() as f64 / 1000.0);
                    due_in(if until.is_negative() {
                        Duration::from_secs(1)
                    } else {
                        until.unsigned_abs().max(Duration::from_secs(1))
                    });
                }
                None => {
                    let _ = ctx
                        .metrics
                        .token_rotation_seconds
                        .remove_label_values(&[&ns, &name]);
                    let _ = ctx
                        .metrics
                        .token_rotation_timestamp
                        .remove_label_values(&[&ns, &name]);
                }
            }
            if let Some((_, expires)) = &c.previous {
                let until = expires.duration_since(now).unsigned_abs();
                due_in(until + Duration::from_secs(1));
            }
            let rotated = match (&c.issued, &new.next_rotation_at) {
                (Some(r), _) => Cond::ok(ROTATED, r.event().0, r.event().1),
                (None, Some(next)) => {
                    Cond::ok(ROTATED, "UpToDate", format!("next rotation at {next}"))
                }
                (None, None) => Cond::ok(
                    ROTATED,
                    "UpToDate",
                    format!("rotates on request ({ROTATE_ANNOTATION})"),
                ),
            };
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![
                    Cond::ok(
                        READY,
                        "TokenAccepted",
                        format!(
                            "the token in Secret `{}` is accepted at {}",
                            t.secret_name(),
                            c.scim_base_url
                        ),
                    ),
                    rotated,
                ],
            );
        }
        Err(e) => {
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![Cond::error(READY, e), Cond::error(ROTATED, e)],
            );
        }
    }
    status::patch_if_changed(&ctx, t.as_ref(), t.status.as_ref(), &new).await?;
    outcome.map(|_| match requeue {
        Some(d) if ctx.due_before_resync(d) => Action::requeue(d),
        _ => Action::await_change(),
    })
}

pub async fn cleanup(t: Arc<ScimToken>, ctx: Arc<Context>) -> Result<Action> {
    let ns = t.namespace().unwrap_or_default();
    let _ = ctx
        .metrics
        .token_rotation_seconds
        .remove_label_values(&[&ns, &t.name_any()]);
    let _ = ctx
        .metrics
        .token_rotation_timestamp
        .remove_label_values(&[&ns, &t.name_any()]);
    if t.spec.deletion_policy == Some(DeletionPolicy::Retain) {
        return Ok(Action::await_change());
    }
    let Some((ws, target)) = ctx
        .targets
        .for_cleanup(&ns, &t.spec.workspace_ref.name)
        .await?
    else {
        return Ok(Action::await_change());
    };
    let ws_id = ws.workspace_id();
    let name = token_name(&t);
    let tokens = target
        .call("list-tokens", target.client.list_tokens(&ws_id))
        .await?;
    for tok in tokens
        .iter()
        .filter(|x| x.name == name && x.revoked_at.is_none())
    {
        target
            .call("revoke-token", target.client.revoke_token(&ws_id, &tok.id))
            .await?;
    }
    Ok(Action::await_change())
}
