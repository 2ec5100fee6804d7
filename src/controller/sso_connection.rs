//! Reconciling `SSOConnection`s: resolve what they refer to, check the IdP, sync.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{
    Context,
    error::{Error, Result},
    metrics::{Kind, Op, OperatorMetrics},
    reconciler::{Reconciler, References, Referent},
    status::{self, Cond, READY, SYNCED, VALIDATED},
    sync::{self, Synced},
    validation::{self, IdpInfo},
};
use crate::admin::ObjectKind;
use crate::admin::desired::{self, ResolvedRefs, ValueRef};
use crate::api::{
    MetadataSourceKind, SecretKeyRef, SsoConnection, SsoConnectionSpec, SsoConnectionStatus,
};

impl Reconciler for SsoConnection {
    const KIND: Kind = Kind::SsoConnection;
    const REFERS_TO: &'static [Referent] = &[Referent::Secrets, Referent::Workspace];

    async fn apply(conn: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        let outcome = check_and_sync(&ctx, &conn).await;
        let new = status_after(&conn, &outcome);
        // A failed pass keeps the last known expiry: alerts keep seeing it.
        if let Ok(checked) = &outcome {
            set_expiry(&ctx.metrics, &conn, checked.info.certificate_expires_at);
        }
        status::patch_if_changed(&ctx, conn.as_ref(), conn.status.as_ref(), &new).await?;
        let checked = outcome?;
        let what = format!("connection ({})", checked.info.summary);
        sync::announce(&ctx, conn.as_ref(), &checked.synced, &what).await;
        Ok(Action::await_change())
    }

    async fn cleanup(conn: Arc<Self>, ctx: Arc<Context>) -> Result<Action> {
        set_expiry(&ctx.metrics, &conn, None);
        sync::delete_document(
            &ctx,
            conn.as_ref(),
            &conn.spec.workspace_ref.name,
            conn.spec.deletion_policy,
            ObjectKind::SsoConnection,
        )
        .await
    }

    fn references(&self) -> References<'_> {
        References {
            secrets: secret_names(&self.spec),
            workspace: Some(&self.spec.workspace_ref.name),
            service: None,
        }
    }
}

/// The Secrets a connection reads.
fn secret_names(spec: &SsoConnectionSpec) -> Vec<String> {
    let client_secret = spec.oidc.iter().map(|o| o.client_secret_ref.name.clone());
    let metadata = spec
        .saml
        .iter()
        .filter_map(|s| s.metadata_ref.as_ref())
        .filter(|r| r.kind == MetadataSourceKind::Secret)
        .map(|r| r.name.clone());
    client_secret.chain(metadata).collect()
}

fn set_expiry(metrics: &OperatorMetrics, conn: &SsoConnection, at: Option<jiff::Timestamp>) {
    OperatorMetrics::set_moment(
        &metrics.idp_certificate_expiry_timestamp,
        &conn.namespace().unwrap_or_default(),
        &conn.name_any(),
        at,
    );
}

/// What a successful pass found.
struct Checked {
    info: IdpInfo,
    synced: Synced,
    /// The service's last successful sign-in through the connection.
    last_sign_in: Option<String>,
}

/// Reads every value the connection refers to (Secrets through the cache).
async fn resolve_refs(ctx: &Context, conn: &SsoConnection) -> Result<ResolvedRefs> {
    let ns = conn.namespace().unwrap_or_default();
    let mut values = Vec::new();
    for r in desired::value_refs(&conn.spec) {
        let value = match r.source {
            MetadataSourceKind::Secret => {
                let key = SecretKeyRef {
                    name: r.name.clone(),
                    key: r.key.clone(),
                };
                ctx.targets.secret_value(&ns, &key).await?
            }
            MetadataSourceKind::ConfigMap => Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&r.name)
                .await?
                .and_then(|c| c.data?.remove(&r.key)),
        };
        values.push((r, value));
    }
    let lookup = |wanted: &ValueRef| {
        values
            .iter()
            .find(|(r, _)| r == wanted)
            .and_then(|(_, v)| v.clone())
    };
    desired::resolve_refs(&conn.spec, lookup)
        .map_err(|missing| Error::config(missing.missing_reason(), missing.to_string()))
}

/// Checks the IdP, then syncs. A connection whose IdP check fails is not
/// pushed: the service keeps serving the last validated configuration.
async fn check_and_sync(ctx: &Context, conn: &SsoConnection) -> Result<Checked> {
    let ns = conn.namespace().unwrap_or_default();
    let name = conn.name_any();
    let (ws, target) = ctx
        .targets
        .for_workspace_ref(&ns, &conn.spec.workspace_ref.name)
        .await?;
    let doc = desired::sso_connection(&conn.spec, resolve_refs(ctx, conn).await?);
    let info = match (&doc.oidc, &doc.saml) {
        (Some(oidc), _) => validation::oidc(&ctx.outbound, oidc).await?,
        (_, Some(saml)) => validation::saml(&ctx.outbound, saml).await?,
        _ => return Err(Error::config("InvalidSpec", "neither oidc nor saml is set")),
    };
    let previous = conn
        .status
        .as_ref()
        .and_then(|s| s.synced_fingerprint.as_deref());
    let ws_id = ws.workspace_id();
    let kind = ObjectKind::SsoConnection;
    let synced = sync::document(ctx, &target, kind, &ws_id, &name, &doc, previous).await?;
    // Sign-in health is advisory: a failed read keeps the last known value.
    let health = target.client.sign_in_health(&ws_id, &name);
    let last_sign_in = target
        .call(Op::SignInHealth, health)
        .await
        .ok()
        .and_then(|h| h.last_success_at)
        .map(|t| t.to_string());
    Ok(Checked {
        info,
        synced,
        last_sign_in,
    })
}

/// The status a pass leaves.
fn status_after(conn: &SsoConnection, outcome: &Result<Checked>) -> SsoConnectionStatus {
    let current = conn.status.clone().unwrap_or_default();
    let generation = conn.metadata.generation;
    let mut new = SsoConnectionStatus {
        observed_generation: generation,
        ..current.clone()
    };
    let conditions = match outcome {
        Ok(checked) => {
            record(&mut new, checked);
            let ready = format!(
                "{} connection to {} is in sync",
                conn.spec.protocol.as_str(),
                checked.info.idp
            );
            vec![
                Cond::ok(READY, "Synced", ready),
                Cond::ok(VALIDATED, "IdPChecked", checked.info.summary.clone()),
                checked.synced.condition(),
            ]
        }
        Err(e) => failed_conditions(&current, e),
    };
    new.conditions = status::conditions(&current.conditions, generation, conditions);
    new
}

/// What a successful pass puts in status beside the conditions.
fn record(new: &mut SsoConnectionStatus, checked: &Checked) {
    let endpoint = |key: &str| checked.synced.endpoints.get(key).cloned();
    new.idp = Some(checked.info.idp.clone());
    new.idp_certificate_expires_at = checked.info.certificate_expires_at.map(|t| t.to_string());
    new.redirect_uri = endpoint("redirectUri");
    new.acs_url = endpoint("acsUrl");
    new.sp_entity_id = endpoint("spEntityId");
    new.sp_metadata_url = endpoint("spMetadataUrl");
    if checked.last_sign_in.is_some() {
        new.last_successful_sign_in_at = checked.last_sign_in.clone();
    }
    checked
        .synced
        .record(&mut new.synced_fingerprint, &mut new.last_synced_at);
}

/// The conditions of a failed pass. An IdP that cannot be reached for a
/// moment does not make a connection that synced before unready: the service
/// keeps serving the last validated configuration, and status says so.
fn failed_conditions<'a>(current: &'a SsoConnectionStatus, e: &'a Error) -> Vec<Cond<'a>> {
    let last_good =
        current.synced_fingerprint.is_some() && status::is_true(&current.conditions, SYNCED);
    if last_good
        && matches!(
            e,
            Error::Validation {
                transient: true,
                ..
            }
        )
    {
        return vec![
            Cond::ok(
                READY,
                "ServingLastGood",
                format!("serving the last validated configuration; the IdP check failed: {e}"),
            ),
            Cond::error(VALIDATED, e),
            Cond::ok(
                SYNCED,
                "LastGood",
                "the last validated configuration stays synced",
            ),
        ];
    }
    let validated = match e {
        Error::Validation { .. } => Cond::error(VALIDATED, e),
        // Not checked this pass: the last check's verdict stands.
        _ => match current.conditions.iter().find(|c| c.type_ == VALIDATED) {
            Some(c) if c.status == "True" => Cond::ok(VALIDATED, "IdPChecked", c.message.clone()),
            Some(c) => Cond::fail(VALIDATED, "NotChecked", c.message.clone()),
            None => Cond::fail(VALIDATED, "NotChecked", "not checked yet"),
        },
    };
    vec![Cond::error(READY, e), validated, Cond::error(SYNCED, e)]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::SsoConnectionSpec;

    fn connection(status: Option<SsoConnectionStatus>) -> SsoConnection {
        let spec: SsoConnectionSpec = serde_json::from_value(serde_json::json!({
            "workspaceRef": {"name": "acme"},
            "protocol": "oidc",
            "oidc": {
                "issuer": "https://idp.example.com",
                "clientId": "idsync",
                "clientSecretRef": {"name": "oidc", "key": "clientSecret"},
            },
        }))
        .unwrap();
        let mut conn = SsoConnection::new("okta", spec);
        conn.metadata.generation = Some(1);
        conn.status = status;
        conn
    }

    fn checked() -> Checked {
        Checked {
            info: IdpInfo {
                idp: "https://idp.example.com".into(),
                summary: "OIDC discovery and JWKS (2 keys) checked".into(),
                certificate_expires_at: None,
            },
            synced: Synced {
                fingerprint: "f".into(),
                wrote: true,
                drift: false,
                endpoints: BTreeMap::from([(
                    "redirectUri".to_string(),
                    "https://id/sso/acme/okta/callback".to_string(),
                )]),
            },
            last_sign_in: None,
        }
    }

    fn ready_reason(s: &SsoConnectionStatus) -> (&str, &str) {
        let c = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_checked_and_synced_connection_shows_what_to_paste_into_the_idp() {
        let new = status_after(&connection(None), &Ok(checked()));
        assert_eq!(ready_reason(&new), ("True", "Synced"));
        assert_eq!(
            new.redirect_uri.as_deref(),
            Some("https://id/sso/acme/okta/callback")
        );
        assert_eq!(new.idp.as_deref(), Some("https://idp.example.com"));
    }

    #[test]
    fn an_idp_outage_after_a_good_sync_serves_the_last_good_configuration() {
        let good = status_after(&connection(None), &Ok(checked()));
        let outage = Error::Validation {
            reason: "DiscoveryFailed",
            message: "connection refused".into(),
            transient: true,
        };
        let new = status_after(&connection(Some(good.clone())), &Err(outage));
        assert_eq!(ready_reason(&new), ("True", "ServingLastGood"));
        assert!(!status::is_true(&new.conditions, VALIDATED));
        assert_eq!(new.redirect_uri, good.redirect_uri, "what to paste stays");
    }

    #[test]
    fn a_first_idp_outage_is_not_ready() {
        let outage = Error::Validation {
            reason: "DiscoveryFailed",
            message: "connection refused".into(),
            transient: true,
        };
        let new = status_after(&connection(None), &Err(outage));
        assert_eq!(ready_reason(&new), ("False", "DiscoveryFailed"));
    }

    #[test]
    fn a_missing_secret_keeps_the_last_idp_verdict() {
        let good = status_after(&connection(None), &Ok(checked()));
        let missing = Error::config("ClientSecretNotFound", "client secret key `k` not found");
        let new = status_after(&connection(Some(good)), &Err(missing));
        assert_eq!(ready_reason(&new), ("False", "ClientSecretNotFound"));
        assert!(status::is_true(&new.conditions, VALIDATED));
    }

    #[test]
    fn the_connection_watches_only_the_secrets_it_reads() {
        let conn = connection(None);
        assert_eq!(conn.references().secrets, vec!["oidc"]);
    }
}
