//! The Secrets the operator writes (SCIMToken tokens, an IdentityService's
//! session and SAML signing keys): only ones it created.
//!
//! A resource author names the Secret (`spec.secretName`), so the name may be
//! an application's own Secret. The operator creates its Secrets with its
//! managed-by label and a controller reference to the resource; a Secret that
//! exists without both (made by someone else, or stripped of the reference
//! later) is never read, modified or adopted, and the resource reports
//! `SecretConflict` instead. Otherwise a forced apply would overwrite the
//! application's keys and make the resource its owner, and deleting the
//! resource would have the garbage collector delete the application's Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};

use super::{
    Context, FIELD_MANAGER,
    error::{Error, Result},
};

/// Label on Secrets the operator owns, so it can watch only those.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "idsync");

/// Whether a Secret is one the operator created for the owner with `owner_uid`.
fn created_for(secret: &Secret, owner_uid: Option<&str>) -> bool {
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL.0))
        .is_some_and(|v| v == MANAGED_BY_LABEL.1);
    let owned = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == owner_uid);
    labelled && owned
}

/// `Ok` when the Secret is missing or the operator's; `SecretConflict`
/// naming it otherwise.
pub fn check_owned(
    secret: Option<&Secret>,
    owner_uid: Option<&str>,
    owner: &str,
    name: &str,
) -> Result<()> {
    match secret {
        Some(s) if !created_for(s, owner_uid) => Err(Error::config(
            "SecretConflict",
            format!(
                "Secret `{name}` exists and was not created by idsync for {owner} (it lacks the \
                 {}={} label or the owner reference); it is left untouched: name another \
                 Secret, or delete this one",
                MANAGED_BY_LABEL.0, MANAGED_BY_LABEL.1
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether the stored Secret already matches what we would write.
pub fn matches(current: Option<&Secret>, want: &Secret) -> bool {
    let Some(current) = current else { return false };
    let has_all = |have: &Option<BTreeMap<String, String>>,
                   want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    current.data == want.data
        && has_all(&current.metadata.labels, &want.metadata.labels)
        && has_all(&current.metadata.annotations, &want.metadata.annotations)
        && current.metadata.owner_references == want.metadata.owner_references
}

/// Writes an operator-owned Secret: created when `exists` is false (so a
/// Secret someone made in between is refused by the apiserver, not taken
/// over), else applied over the operator's own. The caller has checked
/// [`check_owned`] on what it read. Counted under the kind that owns it.
pub async fn write(
    ctx: &Context,
    namespace: &str,
    secret: &Secret,
    exists: bool,
    owner_kind: &str,
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = secret.metadata.name.clone().unwrap_or_default();
    if exists {
        let mut body =
            serde_json::to_value(secret).map_err(|e| Error::config("Internal", e.to_string()))?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "Secret".into();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    } else {
        // AlreadyExists (409) is a transient Kubernetes error: the next pass
        // reads the Secret and checks whose it is.
        api.create(&PostParams::default(), secret).await?;
    }
    ctx.metrics
        .secret_writes
        .with_label_values(&[owner_kind])
        .inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    use super::*;

    fn secret(labelled: bool, owner: Option<&str>) -> Secret {
        let labels = labelled.then(|| {
            BTreeMap::from([(
                MANAGED_BY_LABEL.0.to_string(),
                MANAGED_BY_LABEL.1.to_string(),
            )])
        });
        Secret {
            metadata: ObjectMeta {
                name: Some("app-creds".into()),
                labels,
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_secrets_created_for_this_resource_are_its_own() {
        let uid = Some("uid-1");
        assert!(check_owned(None, uid, "SCIMToken okta", "app-creds").is_ok());
        assert!(
            check_owned(
                Some(&secret(true, Some("uid-1"))),
                uid,
                "SCIMToken okta",
                "app-creds"
            )
            .is_ok()
        );
        for foreign in [
            secret(false, None),
            secret(true, None),
            secret(false, Some("uid-1")),
            secret(true, Some("uid-2")),
        ] {
            let e = check_owned(Some(&foreign), uid, "SCIMToken okta", "app-creds").unwrap_err();
            assert_eq!(e.reason(), "SecretConflict");
            assert!(e.to_string().contains("app-creds"), "{e}");
        }
    }
}
