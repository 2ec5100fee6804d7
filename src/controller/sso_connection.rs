//! Reconciling `SSOConnection`s: resolve secrets, validate the IdP, sync.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{
    Context,
    error::{Error, Result},
    status::{self, Cond, READY, SYNCED, VALIDATED},
    sync, validation,
};
use crate::admin::ObjectKind;
use crate::admin::desired::{self, ResolvedRefs};
use crate::api::{DeletionPolicy, MetadataSourceKind, SsoConnection, SsoConnectionStatus};

async fn resolve_refs(ctx: &Context, conn: &SsoConnection) -> Result<ResolvedRefs> {
    let ns = conn.namespace().unwrap_or_default();
    let mut refs = ResolvedRefs::default();
    if let Some(oidc) = &conn.spec.oidc {
        let r = &oidc.client_secret_ref;
        refs.client_secret = Some(ctx.targets.secret_value(&ns, r).await?.ok_or_else(|| {
            Error::config(
                "ClientSecretNotFound",
                format!(
                    "client secret key `{}` not found in Secret `{}`",
                    r.key, r.name
                ),
            )
        })?);
    }
    if let Some(r) = conn
        .spec
        .saml
        .as_ref()
        .and_then(|s| s.metadata_ref.as_ref())
    {
        let value = match r.kind {
            MetadataSourceKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&r.name)
                    .await?
                    .and_then(|c| c.data.and_then(|d| d.get(&r.key).cloned()))
            }
            MetadataSourceKind::Secret => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                api.get_opt(&r.name).await?.and_then(|s| {
                    s.data.and_then(|d| {
                        d.get(&r.key)
                            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    })
                })
            }
        };
        refs.saml_metadata = Some(value.ok_or_else(|| {
            Error::config(
                "MetadataNotFound",
                format!(
                    "SAML metadata key `{}` not found in {:?} `{}`",
                    r.key, r.kind, r.name
                ),
            )
        })?);
    }
    Ok(refs)
}

pub async fn apply(conn: Arc<SsoConnection>, ctx: Arc<Context>) -> Result<Action> {
    let ns = conn.namespace().unwrap_or_default();
    let name = conn.name_any();
    let current = conn.status.clone().unwrap_or_default();
    let generation = conn.metadata.generation;
    let mut new = SsoConnectionStatus {
        observed_generation: generation,
        ..current.clone()
    };

    let outcome: Result<(validation::IdpInfo, sync::Synced, Option<String>)> = async {
        let (ws, target) = ctx
            .targets
            .for_workspace_ref(&ns, &conn.spec.workspace_ref.name)
            .await?;
        let refs = resolve_refs(&ctx, &conn).await?;
        let doc = desired::sso_connection(&conn.spec, refs);
        let info = match (&doc.oidc, &doc.saml) {
            (Some(oidc), _) => validation::oidc(&ctx.outbound, oidc).await,
            (_, Some(saml)) => validation::saml(&ctx.outbound, saml).await,
            _ => Err(Error::config("InvalidSpec", "neither oidc nor saml is set")),
        };
        let info = match info {
            Ok(info) => info,
            Err(e) => {
                // Keep serving the last validated configuration: do not push an
                // unvalidated one, and let status say which is active.
                return Err(e);
            }
        };
        let synced = sync::document(
            &ctx,
            &target,
            ObjectKind::SsoConnection,
            &ws.workspace_id(),
            &name,
            &doc,
            current.synced_fingerprint.as_deref(),
        )
        .await?;
        // Sign-in health is advisory: a failed read keeps the last known value.
        let health = target
            .call(
                "get",
                target.client.sign_in_health(&ws.workspace_id(), &name),
            )
            .await
            .ok()
            .and_then(|h| h.last_success_at);
        Ok((info, synced, health))
    }
    .await;

    let last_good =
        current.synced_fingerprint.is_some() && status::is_true(&current.conditions, SYNCED);
    match &outcome {
        Ok((info, synced, last_sign_in)) => {
            new.idp = Some(info.idp.clone());
            new.idp_certificate_expires_at = info.certificate_expires_at.map(|t| t.to_string());
            new.redirect_uri = synced.endpoints.get("redirectUri").cloned();
            new.acs_url = synced.endpoints.get("acsUrl").cloned();
            new.sp_entity_id = synced.endpoints.get("spEntityId").cloned();
            new.sp_metadata_url = synced.endpoints.get("spMetadataUrl").cloned();
            new.synced_fingerprint = Some(synced.fingerprint.clone());
            new.last_successful_sign_in_at = last_sign_in
                .clone()
                .or(current.last_successful_sign_in_at.clone());
            if synced.wrote || new.last_synced_at.is_none() {
                new.last_synced_at = Some(status::now_rfc3339());
            }
            match info.certificate_expires_at {
                Some(t) => {
                    ctx.metrics
                        .idp_certificate_expiry_seconds
                        .with_label_values(&[&ns, &name])
                        .set(t.duration_since(jiff::Timestamp::now()).as_secs_f64());
                    ctx.metrics
                        .idp_certificate_expiry_timestamp
                        .with_label_values(&[&ns, &name])
                        .set(t.as_millisecond() as f64 / 1000.0);
                }
                None => {
                    let _ = ctx
                        .metrics
                        .idp_certificate_expiry_seconds
                        .remove_label_values(&[&ns, &name]);
                    let _ = ctx
                        .metrics
                        .idp_certificate_expiry_timestamp
                        .remove_label_values(&[&ns, &name]);
                }
            }
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![
                    Cond::ok(
                        READY,
                        "Synced",
                        format!(
                            "{} connection to {} is in sync",
                            conn.spec.protocol.as_str(),
                            info.idp
                        ),
                    ),
                    Cond::ok(VALIDATED, "IdPChecked", info.summary.clone()),
                    Cond::ok(
                        SYNCED,
                        "Synced",
                        format!("fingerprint {}", synced.fingerprint),
                    ),
                ],
            );
        }
        Err(
            e @ Error::Validation {
                transient: true, ..
            },
        ) if last_good => {
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![
                    Cond::ok(
                        READY,
                        "ServingLastGood",
                        format!(
                            "serving the last validated configuration; the IdP check failed: {e}"
                        ),
                    ),
                    Cond::error(VALIDATED, e),
                    Cond::ok(
                        SYNCED,
                        "LastGood",
                        "the last validated configuration stays synced",
                    ),
                ],
            );
        }
        Err(e) => {
            let validated = match e {
                Error::Validation { .. } => Cond::error(VALIDATED, e),
                _ => current
                    .conditions
                    .iter()
                    .find(|c| c.type_ == VALIDATED)
                    .map(|c| Cond {
                        type_: VALIDATED,
                        ok: c.status == "True",
                        reason: if c.status == "True" {
                            "IdPChecked"
                        } else {
                            "NotChecked"
                        },
                        message: c.message.clone(),
                    })
                    .unwrap_or_else(|| Cond::fail(VALIDATED, "NotChecked", "not checked yet")),
            };
            new.conditions = status::conditions(
                &current.conditions,
                generation,
                vec![Cond::error(READY, e), validated, Cond::error(SYNCED, e)],
            );
        }
    }
    status::patch_if_changed(&ctx, conn.as_ref(), conn.status.as_ref(), &new).await?;

    match outcome {
        Ok((info, synced, _)) => {
            sync::announce(
                &ctx,
                conn.as_ref(),
                &synced,
                &format!("connection ({})", info.summary),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

pub async fn cleanup(conn: Arc<SsoConnection>, ctx: Arc<Context>) -> Result<Action> {
    let ns = conn.namespace().unwrap_or_default();
    let name = conn.name_any();
    let _ = ctx
        .metrics
        .idp_certificate_expiry_seconds
        .remove_label_values(&[&ns, &name]);
    let _ = ctx
        .metrics
        .idp_certificate_expiry_timestamp
        .remove_label_values(&[&ns, &name]);
    if conn.spec.deletion_policy == Some(DeletionPolicy::Retain) {
        return Ok(Action::await_change());
    }
    let Some((ws, target)) = ctx
        .targets
        .for_cleanup(&ns, &conn.spec.workspace_ref.name)
        .await?
    else {
        return Ok(Action::await_change());
    };
    target
        .call(
            "delete",
            target.client.delete_object(
                ObjectKind::SsoConnection,
                &ws.workspace_id(),
                &name,
                false,
            ),
        )
        .await?;
    Ok(Action::await_change())
}
