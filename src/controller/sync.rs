//! Making the identity service hold a document: read, compare fingerprints, and
//! write only on a difference.

use std::collections::BTreeMap;

use kube::{Resource, runtime::events::EventType};
use serde::Serialize;

use super::{Context, error::Result, target::Target};
use crate::admin::ObjectKind;

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
        .call("get", target.client.get_object(kind, workspace, name))
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
        .call("put", target.client.put_object(kind, workspace, name, doc))
        .await?;
    let drift = previously_synced == Some(fingerprint.as_str());
    if drift {
        ctx.metrics
            .drift_corrections
            .with_label_values(&[kind.as_str()])
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
