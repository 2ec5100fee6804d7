//! Making the identity service hold a document: read, compare fingerprints, and
//! write only on a difference.

use std::collections::BTreeMap;

use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use serde::Serialize;

use super::{
    Context,
    error::Result,
    metrics::{Kind, Op},
    status::{self, Cond, SYNCED},
    target::Target,
};
use crate::admin::ObjectKind;
use crate::api::DeletionPolicy;

/// What a sync found and did.
pub struct Synced {
    pub fingerprint: String,
    /// Whether the service was written to.
    pub wrote: bool,
    /// Whether the write corrected drift: the service differed from content this
    /// resource had already synced.
    pub drift: bool,
    /// URLs to configure at the IdP, as the service reports them.
    pub endpoints: BTreeMap<String, String>,
}

impl Synced {
    /// Records this sync in a status: the fingerprint, and when the service last
    /// changed to match.
    pub fn record(&self, fingerprint: &mut Option<String>, last_synced_at: &mut Option<String>) {
        *fingerprint = Some(self.fingerprint.clone());
        if self.wrote || last_synced_at.is_none() {
            *last_synced_at = Some(status::now_rfc3339());
        }
    }

    /// The `Synced` condition of this sync.
    pub fn condition(&self) -> Cond<'static> {
        Cond::ok(
            SYNCED,
            "Synced",
            format!("fingerprint {}", self.fingerprint),
        )
    }
}

/// Makes the identity service hold `doc` as `kind` `name` of `workspace`.
pub async fn document<T: Serialize>(
    ctx: &Context,
    target: &Target,
    kind: ObjectKind,
    workspace: &str,
    name: &str,
    doc: &T,
    previously_synced: Option<&str>,
) -> Result<Synced> {
    let fingerprint = target.client.fingerprint(doc);
    let current = target
        .call(
            Op::GetObject,
            target.client.get_object(kind, workspace, name),
        )
        .await?;
    // Matching content is in sync only when this resource owns the
    // workspace id: otherwise the PUT below claims it, or is refused.
    if let Some(current) = &current
        && current.fingerprint == fingerprint
        && (target.client.claimant().is_none()
            || current.claimant.as_deref() == target.client.claimant())
    {
        return Ok(Synced {
            fingerprint,
            wrote: false,
            drift: false,
            endpoints: current.endpoints.clone(),
        });
    }
    let view = target
        .call(
            Op::PutObject,
            target.client.put_object(kind, workspace, name, doc),
        )
        .await?;
    let drift = previously_synced == Some(fingerprint.as_str());
    if drift {
        ctx.metrics
            .drift_corrections
            .with_label_values(&[Kind::from(kind).as_str()])
            .inc();
    }
    Ok(Synced {
        fingerprint: view.fingerprint,
        wrote: true,
        drift,
        endpoints: view.endpoints,
    })
}

/// The Event a sync deserves: a warning when it corrected drift, a note when it
/// wrote, nothing when the service already matched.
pub async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    synced: &Synced,
    what: &str,
) {
    if synced.drift {
        ctx.event(
            obj,
            EventType::Warning,
            "DriftCorrected",
            format!("{what} differed in the identity service and was restored"),
        )
        .await;
    } else if synced.wrote {
        ctx.event(
            obj,
            EventType::Normal,
            "Synced",
            format!("{what} synced ({})", synced.fingerprint),
        )
        .await;
    }
}

/// The cleanup of a kind synced as a document: removes it from the identity
/// service, unless its deletion policy retains it. A workspace or service
/// that is gone counts as cleaned up.
pub async fn delete_document<K: ResourceExt>(
    ctx: &Context,
    obj: &K,
    workspace: &str,
    policy: Option<DeletionPolicy>,
    kind: ObjectKind,
) -> Result<Action> {
    if policy == Some(DeletionPolicy::Retain) {
        return Ok(Action::await_change());
    }
    let ns = obj.namespace().unwrap_or_default();
    let Some((ws, target)) = ctx.targets.for_cleanup(&ns, workspace).await? else {
        return Ok(Action::await_change());
    };
    let (ws_id, name) = (ws.workspace_id(), obj.name_any());
    let delete = target.client.delete_object(kind, &ws_id, &name, false);
    target.call(Op::DeleteObject, delete).await?;
    Ok(Action::await_change())
}
