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

use std::{collections::BTreeMap, sync::Arc};

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
    metrics::{Kind, Op, OperatorMetrics},
    owned_secret::{self, MANAGED_BY_LABEL},
    reconciler::{Reconciler, References, Referent},
    rotation::{self, IssueReason, Retirement},
    status::{self, Cond, READY, ROTATED},
    target::Target,
};
use crate::admin::{ScimTokenDoc, TokenView};
use crate::api::{
    DeletionPolicy, ScimAuthentication, ScimToken, ScimTokenStatus, scim_token::ROTATE_ANNOTATION,
};
use crate::token;

pub const TOKEN_LABEL: &str = "idsync.dev/scim-token";
const TOKEN_ID_ANNOTATION: &str = "idsync.dev/token-id";

impl Reconciler for ScimToken {
    const KIND: Kind = Kind::ScimToken;
    const REFERS_TO: &'static [Referent] = &[Referent::Secrets, Referent::Workspace];

    async fn apply(t: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let outcome = async {
            let ns = t.namespace().unwrap_or_default();
            let (ws, target) = ctx
                .targets
                .for_workspace_ref(&ns, &t.spec.workspace_ref.name)
                .await?;
            converge(&ctx, &t, &target, &ws.workspace_id()).await
        }
        .await;
        let now = Timestamp::now();
        let new = status_after(&t, &outcome, now);
        if outcome.is_ok() {
            let next = new.next_rotation_at.as_deref().and_then(|n| n.parse().ok());
            set_next_rotation(&ctx.metrics, &t, next);
        }
        status::patch_if_changed(&ctx, t.as_ref(), t.status.as_ref(), &new).await?;
        outcome?;
        // Something due before the next resync pass gets its own timer.
        let moments = [&new.next_rotation_at, &new.previous_token_expires_at]
            .map(|m| m.as_deref().and_then(|m| m.parse::<Timestamp>().ok()));
        let previous_past =
            moments[1].map(|e| rotation::plus(e, std::time::Duration::from_secs(1)));
        Ok(
            match rotation::next_due(now, &[moments[0], previous_past]) {
                Some(d) if ctx.due_before_resync(d) => Action::requeue(d),
                _ => Action::await_change(),
            },
        )
    }

    async fn cleanup(t: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        set_next_rotation(&ctx.metrics, &t, None);
        if t.spec.deletion_policy == Some(DeletionPolicy::Retain) {
            return Ok(Action::await_change());
        }
        let ns = t.namespace().unwrap_or_default();
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
            .call(Op::ListTokens, target.client.list_tokens(&ws_id))
            .await?;
        for tok in tokens
            .iter()
            .filter(|x| x.name == name && x.revoked_at.is_none())
        {
            target
                .call(Op::RevokeToken, target.client.revoke_token(&ws_id, &tok.id))
                .await?;
        }
        Ok(Action::await_change())
    }

    /// The token's own Secret: editing or deleting it restores it at once.
    fn references(&self) -> References<'_> {
        References {
            secrets: vec![self.secret_name()],
            workspace: Some(&self.spec.workspace_ref.name),
            service: None,
        }
    }
}

/// Name of this resource's tokens in the identity service.
fn token_name(t: &ScimToken) -> String {
    format!("{}.{}", t.namespace().unwrap_or_default(), t.name_any())
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

/// The Secret key holding the credential's secret: `token` for a bearer
/// token, `clientSecret` for HTTP Basic (beside `clientId`).
fn secret_key(t: &ScimToken) -> &'static str {
    match t.spec.authentication.unwrap_or_default() {
        ScimAuthentication::Bearer => "token",
        ScimAuthentication::Basic => "clientSecret",
    }
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
        secret_key(t).to_string(),
        ByteString(token_value.as_bytes().to_vec()),
    );
    if t.spec.authentication == Some(ScimAuthentication::Basic) {
        // The client ID is the token's public id.
        data.insert(
            "clientId".to_string(),
            ByteString(token_id.as_bytes().to_vec()),
        );
    }
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

/// What the Secret holds, and the service's view of that token if it accepts it.
async fn observe(
    t: &ScimToken,
    target: &Target,
    ws_id: &str,
    secret: Option<&Secret>,
) -> Result<(Option<String>, Option<TokenView>)> {
    let in_secret = secret_data(secret, secret_key(t));
    let Some((value, id)) = in_secret
        .as_deref()
        .and_then(|v| Some((v, token::parse_id(v)?)))
    else {
        return Ok((in_secret, None));
    };
    let accepted = target
        .call(Op::GetToken, target.client.get_token(ws_id, id))
        .await?
        .filter(|v| {
            // A changed `authentication` needs a credential registered that way.
            v.valid
                && v.name == token_name(t)
                && v.authentication == t.spec.authentication.unwrap_or_default()
                && token::hash(value) == v.sha256
        });
    Ok((in_secret, accepted))
}

/// Steps 1 and 2: registers a new token expiring after one overlap (unless step
/// 3 is reached), then writes it to the Secret.
async fn issue(
    ctx: &Context,
    t: &ScimToken,
    target: &Target,
    ws_id: &str,
    secret_exists: bool,
    now: Timestamp,
) -> Result<(TokenView, String)> {
    let new = token::generate()?;
    let pending = ScimTokenDoc {
        name: token_name(t),
        authentication: Some(t.spec.authentication.unwrap_or_default()),
        sha256: Some(new.hash()),
        expires_at: Some(rotation::plus(now, rotation::overlap_of(t))),
    };
    target
        .call(
            Op::PutToken,
            target.client.put_token(ws_id, &new.id, &pending),
        )
        .await?;
    let scim_base_url = target.scim_base_url(ws_id);
    let secret = desired_secret(t, new.expose(), &new.id, &scim_base_url);
    let ns = t.namespace().unwrap_or_default();
    owned_secret::write(ctx, &ns, &secret, secret_exists, "SCIMToken").await?;
    let view = target
        .call(Op::GetToken, target.client.get_token(ws_id, &new.id))
        .await?
        .ok_or_else(|| {
            Error::config(
                "TokenLost",
                "the token just registered is gone from the identity service",
            )
        })?;
    Ok((view, new.expose().to_string()))
}

/// One pass: issue if needed, make the Secret's token permanent, put the
/// Secret right, retire the others.
async fn converge(ctx: &Context, t: &ScimToken, target: &Target, ws_id: &str) -> Result<Converged> {
    let now = Timestamp::now();
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let secret = secrets.get_opt(&t.secret_name()).await?;
    // A Secret idsync did not create is neither read nor written.
    let owner = format!("SCIMToken {}", t.name_any());
    owned_secret::check_owned(
        secret.as_ref(),
        t.metadata.uid.as_deref(),
        &owner,
        &t.secret_name(),
    )?;
    let (in_secret, accepted) = observe(t, target, ws_id, secret.as_ref()).await?;
    let issued = rotation::issue_reason(t, in_secret.is_some(), accepted.as_ref(), now);
    let (current, value) = match (issued, accepted) {
        (None, Some(view)) => (view, in_secret.unwrap_or_default()),
        (reason, _) => {
            let (view, value) = issue(ctx, t, target, ws_id, secret.is_some(), now).await?;
            if let Some(reason) = reason {
                let (event, note) = reason.event();
                let note = format!("{note}: token {}", view.id);
                ctx.event(t, EventType::Normal, event, note).await;
            }
            (view, value)
        }
    };
    // 3. The token in the Secret never expires on its own.
    let current = if current.expires_at.is_some() {
        let permanent = ScimTokenDoc {
            name: token_name(t),
            ..Default::default()
        };
        let put = target.client.put_token(ws_id, &current.id, &permanent);
        target.call(Op::PutToken, put).await?
    } else {
        current
    };
    // The Secret's other keys, labels and owner (restores hand edits; writes
    // nothing when it already matches).
    let scim_base_url = target.scim_base_url(ws_id);
    let want = desired_secret(t, &value, &current.id, &scim_base_url);
    let secret_now = match issued {
        Some(_) => secrets.get_opt(&t.secret_name()).await?,
        None => secret,
    };
    if !owned_secret::matches(secret_now.as_ref(), &want) {
        let ns = t.namespace().unwrap_or_default();
        owned_secret::write(ctx, &ns, &want, secret_now.is_some(), "SCIMToken").await?;
    }
    let previous = retire(t, target, ws_id, &current.id, now).await?;
    Ok(Converged {
        current,
        issued,
        previous,
        scim_base_url,
    })
}

/// Step 4: every other token of this resource gets the overlap window as its
/// expiry, and tokens past their expiry are revoked. Answers the previous
/// token that stays valid longest.
async fn retire(
    t: &ScimToken,
    target: &Target,
    ws_id: &str,
    current: &str,
    now: Timestamp,
) -> Result<Option<(String, Timestamp)>> {
    let tokens = target
        .call(Op::ListTokens, target.client.list_tokens(ws_id))
        .await?;
    let name = token_name(t);
    let overlap = rotation::overlap_of(t);
    let (steps, previous) = rotation::retirements(&tokens, &name, current, now, overlap);
    for step in steps {
        match step {
            Retirement::Expire { id, at } => {
                let doc = ScimTokenDoc {
                    name: name.clone(),
                    expires_at: Some(at),
                    ..Default::default()
                };
                let put = target.client.put_token(ws_id, &id, &doc);
                target.call(Op::PutToken, put).await?;
            }
            Retirement::Revoke { id } => {
                let revoke = target.client.revoke_token(ws_id, &id);
                target.call(Op::RevokeToken, revoke).await?;
            }
        }
    }
    Ok(previous)
}

fn set_next_rotation(metrics: &OperatorMetrics, t: &ScimToken, at: Option<Timestamp>) {
    OperatorMetrics::set_moment(
        &metrics.token_rotation_timestamp,
        &t.namespace().unwrap_or_default(),
        &t.name_any(),
        at,
    );
}

/// The status a pass leaves.
fn status_after(t: &ScimToken, outcome: &Result<Converged>, now: Timestamp) -> ScimTokenStatus {
    let current = t.status.clone().unwrap_or_default();
    let generation = t.metadata.generation;
    let mut new = ScimTokenStatus {
        observed_generation: generation,
        secret_name: Some(t.secret_name()),
        ..current.clone()
    };
    let conditions = match outcome {
        Ok(c) => {
            let issued_at = rotation::current_issued_at(t, &c.current, c.issued.is_some(), now);
            new.token_id = Some(c.current.id.clone());
            new.last_used_at = c.current.last_used_at.map(|t| t.to_string());
            new.issued_at = Some(issued_at.to_string());
            new.scim_base_url = Some(c.scim_base_url.clone());
            new.previous_token_id = c.previous.as_ref().map(|(id, _)| id.clone());
            new.previous_token_expires_at = c
                .previous
                .as_ref()
                .map(|(_, e)| rotation::to_second(*e).to_string());
            new.last_rotation_request = t.annotations().get(ROTATE_ANNOTATION).cloned();
            new.next_rotation_at = rotation::next_rotation(t, issued_at).map(|n| n.to_string());
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
            let ready = format!(
                "the token in Secret `{}` is accepted at {}",
                t.secret_name(),
                c.scim_base_url
            );
            vec![Cond::ok(READY, "TokenAccepted", ready), rotated]
        }
        Err(e) => vec![Cond::error(READY, e), Cond::error(ROTATED, e)],
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ScimTokenSpec;

    fn token() -> ScimToken {
        let spec: ScimTokenSpec = serde_json::from_value(serde_json::json!({
            "workspaceRef": {"name": "acme"},
            "rotation": {"every": "90d", "overlap": "24h"},
        }))
        .unwrap();
        let mut t = ScimToken::new("okta", spec);
        t.metadata.namespace = Some("ns".into());
        t
    }

    #[test]
    fn a_basic_credential_lands_as_client_id_and_secret() {
        let bearer = desired_secret(&token(), "idsync_scim_x", "abc", "https://id/scim/v2/acme");
        let keys = |s: &Secret| {
            s.data
                .clone()
                .unwrap_or_default()
                .into_keys()
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&bearer), ["scimBaseUrl", "token"]);
        let mut basic = token();
        basic.spec.authentication = Some(ScimAuthentication::Basic);
        let secret = desired_secret(&basic, "idsync_scim_x", "abc", "https://id/scim/v2/acme");
        assert_eq!(keys(&secret), ["clientId", "clientSecret", "scimBaseUrl"]);
        assert_eq!(
            secret_data(Some(&secret), "clientId").as_deref(),
            Some("abc")
        );
        assert_eq!(
            secret_data(Some(&secret), secret_key(&basic)).as_deref(),
            Some("idsync_scim_x")
        );
    }

    fn converged(issued: Option<IssueReason>) -> Converged {
        Converged {
            current: TokenView {
                id: "tok1".into(),
                workspace: "acme".into(),
                name: "ns.okta".into(),
                authentication: Default::default(),
                sha256: String::new(),
                created_at: "2026-12-01T10:00:00.123Z".parse().expect("a time"),
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                valid: true,
                result: None,
                scim_base_url: String::new(),
            },
            issued,
            previous: None,
            scim_base_url: "https://id/scim/v2/acme".into(),
        }
    }

    #[test]
    fn a_new_token_is_ready_with_its_next_rotation() {
        let now = "2026-12-01T10:00:01Z".parse().unwrap();
        let new = status_after(&token(), &Ok(converged(Some(IssueReason::Initial))), now);
        assert_eq!(new.token_id.as_deref(), Some("tok1"));
        assert_eq!(new.issued_at.as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!(
            new.next_rotation_at.as_deref(),
            Some("2027-03-01T10:00:00Z")
        );
        assert_eq!(new.secret_name.as_deref(), Some("okta-scim-token"));
        let rotated = new.conditions.iter().find(|c| c.type_ == ROTATED).unwrap();
        assert_eq!(rotated.reason, "Issued");
        assert!(status::is_true(&new.conditions, READY));
    }

    #[test]
    fn a_failed_pass_keeps_the_token_it_knew() {
        let now = "2026-12-01T10:00:01Z".parse().unwrap();
        let mut t = token();
        t.status = Some(status_after(&t, &Ok(converged(None)), now));
        let failed = status_after(
            &t,
            &Err(Error::config("WorkspaceNotFound", "no Workspace `acme`")),
            now,
        );
        assert_eq!(failed.token_id.as_deref(), Some("tok1"));
        assert!(!status::is_true(&failed.conditions, READY));
    }
}
