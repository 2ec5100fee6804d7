//! Conditions and status writes.
//!
//! Status is written with a server-side apply of the status subresource only, under
//! one field manager, and only when it differs from what is stored: a reconcile
//! that changes nothing writes nothing. Apply (rather than a merge patch) also
//! removes fields the new status no longer has.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Api, Resource, ResourceExt, api::Patch, api::PatchParams};
use serde::{Serialize, de::DeserializeOwned};

use super::{Context, error::Result};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const VALIDATED: &str = "Validated";
pub const ROTATED: &str = "Rotated";
pub const TESTS_PASSED: &str = "TestsPassed";

/// A condition to set: type, status, reason, message.
pub struct Cond<'a> {
    pub type_: &'a str,
    pub ok: bool,
    pub reason: &'a str,
    pub message: String,
}

impl<'a> Cond<'a> {
    pub fn ok(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: true,
            reason,
            message: message.into(),
        }
    }
    /// A False condition carrying an error's reason and message.
    pub fn error(type_: &'a str, e: &'a super::Error) -> Self {
        Self::fail(type_, e.reason(), e.to_string())
    }
    pub fn fail(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// Builds the new condition list: `Ready` first, then the others in the given
/// order; `lastTransitionTime` is kept while a condition's status is unchanged.
pub fn conditions(
    existing: &[Condition],
    generation: Option<i64>,
    wanted: Vec<Cond<'_>>,
) -> Vec<Condition> {
    let now = Time(jiff::Timestamp::now());
    wanted
        .into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_string();
            let previous = existing.iter().find(|e| e.type_ == c.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: c.type_.to_string(),
                status,
                reason: c.reason.to_string(),
                message: c.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether a condition of this type is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Patches the status subresource when `new` differs from the stored status.
/// Returns whether it wrote.
pub async fn patch_if_changed<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    new: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    patch_with(ctx, api, obj, current, new).await
}

/// [`patch_if_changed`] for a cluster-scoped object.
pub async fn patch_cluster_if_changed<K, S>(
    ctx: &Context,
    obj: &K,
    current: Option<&S>,
    new: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    let api: Api<K> = Api::all(ctx.client.clone());
    patch_with(ctx, api, obj, current, new).await
}

async fn patch_with<K, S>(
    ctx: &Context,
    api: Api<K>,
    obj: &K,
    current: Option<&S>,
    new: &S,
) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(new) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": new,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(super::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics
        .status_patches
        .with_label_values(&[K::kind(&()).as_ref()])
        .inc();
    Ok(true)
}

/// RFC 3339 "now", for status timestamps.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}
