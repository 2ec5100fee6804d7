//! From custom resources to admin API documents: the desired state, computed as a
//! pure function so the operator and `idsync admin apply` agree on it and tests can
//! check it without a cluster.

use super::model::{
    OidcDoc, RoleApprovalDoc, RoleMappingDoc, SamlDoc, SsoConnectionDoc, WorkspaceDoc,
};
use crate::api::{
    MetadataSourceKind, RoleApprovalSpec, RoleMappingSpec, SsoConnectionSpec, WorkspaceSpec,
};

pub fn workspace(spec: &WorkspaceSpec) -> WorkspaceDoc {
    WorkspaceDoc {
        display_name: spec.display_name.clone(),
        domains: spec.domains.clone(),
        default_role: spec.default_role.clone(),
        policy: spec.policy.clone(),
    }
}

/// What an SSO connection references outside itself, resolved by the caller
/// (from Kubernetes Secrets and ConfigMaps, or from files for `idsync admin`).
#[derive(Debug, Clone, Default)]
pub struct ResolvedRefs {
    pub client_secret: Option<String>,
    pub saml_metadata: Option<String>,
}

/// What a referenced value is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefPurpose {
    ClientSecret,
    SamlMetadata,
}

/// One value outside an SSOConnection that it refers to: a key of a Secret or
/// ConfigMap in its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueRef {
    pub purpose: RefPurpose,
    pub source: MetadataSourceKind,
    pub name: String,
    pub key: String,
}

impl ValueRef {
    /// The condition reason when the value is missing.
    pub fn missing_reason(&self) -> &'static str {
        match self.purpose {
            RefPurpose::ClientSecret => "ClientSecretNotFound",
            RefPurpose::SamlMetadata => "MetadataNotFound",
        }
    }
}

impl std::fmt::Display for ValueRef {
    /// "client secret key `k` not found in Secret `n`" names the value, never shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.purpose {
            RefPurpose::ClientSecret => "client secret",
            RefPurpose::SamlMetadata => "SAML metadata",
        };
        write!(
            f,
            "{what} key `{}` not found in {:?} `{}`",
            self.key, self.source, self.name
        )
    }
}

/// Every value `spec` refers to.
pub fn value_refs(spec: &SsoConnectionSpec) -> Vec<ValueRef> {
    let client_secret = spec.oidc.as_ref().map(|o| ValueRef {
        purpose: RefPurpose::ClientSecret,
        source: MetadataSourceKind::Secret,
        name: o.client_secret_ref.name.clone(),
        key: o.client_secret_ref.key.clone(),
    });
    let metadata = spec
        .saml
        .as_ref()
        .and_then(|s| s.metadata_ref.as_ref())
        .map(|r| ValueRef {
            purpose: RefPurpose::SamlMetadata,
            source: r.kind,
            name: r.name.clone(),
            key: r.key.clone(),
        });
    client_secret.into_iter().chain(metadata).collect()
}

/// Resolves every value `spec` refers to through `lookup`; the first one
/// missing is the error.
pub fn resolve_refs(
    spec: &SsoConnectionSpec,
    mut lookup: impl FnMut(&ValueRef) -> Option<String>,
) -> Result<ResolvedRefs, ValueRef> {
    let mut refs = ResolvedRefs::default();
    for r in value_refs(spec) {
        let value = lookup(&r).ok_or_else(|| r.clone())?;
        match r.purpose {
            RefPurpose::ClientSecret => refs.client_secret = Some(value),
            RefPurpose::SamlMetadata => refs.saml_metadata = Some(value),
        }
    }
    Ok(refs)
}

pub fn sso_connection(spec: &SsoConnectionSpec, refs: ResolvedRefs) -> SsoConnectionDoc {
    SsoConnectionDoc {
        protocol: spec.protocol,
        display_name: spec.display_name.clone(),
        domains: spec.domains.clone(),
        oidc: spec.oidc.as_ref().map(|o| OidcDoc {
            issuer: o.issuer.clone(),
            discovery_url: o.discovery_url.clone(),
            client_id: o.client_id.clone(),
            client_secret: refs.client_secret.clone(),
            token_endpoint_auth_method: o.token_endpoint_auth_method,
            scopes: o.scopes.clone(),
            claim_mapping: o.claim_mapping.clone(),
            use_userinfo: o.use_userinfo,
            trust_unverified_email: o.trust_unverified_email,
        }),
        saml: spec.saml.as_ref().map(|s| SamlDoc {
            metadata_url: s.metadata_url.clone(),
            metadata: s.metadata.clone().or(refs.saml_metadata),
            entity_id: s.entity_id.clone(),
            sso_url: s.sso_url.clone(),
            certificates: s.certificates.clone().unwrap_or_default(),
            attribute_mapping: s.attribute_mapping.clone(),
            allowed_clock_skew: s.allowed_clock_skew,
            allow_idp_initiated: s.allow_idp_initiated,
        }),
    }
}

pub fn role_mapping(spec: &RoleMappingSpec) -> RoleMappingDoc {
    RoleMappingDoc {
        roles: spec.roles.clone(),
        strategy: spec.strategy,
        default_role: spec.default_role.clone(),
        rules: spec.rules.clone(),
    }
}

/// A `RoleApproval`'s document; an `expiresAt` that is not an RFC 3339 time
/// is an error (the CRD's schema refuses it at apply).
pub fn role_approval(spec: &RoleApprovalSpec) -> Result<RoleApprovalDoc, String> {
    let expires_at = spec
        .expires_at
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map_err(|e| format!("expiresAt {t:?} is not an RFC 3339 time: {e}"))
        })
        .transpose()?;
    Ok(RoleApprovalDoc {
        email: spec.email.as_ref().map(|e| e.to_lowercase()),
        scim_id: spec.scim_id.clone(),
        role: spec.role.clone(),
        expires_at,
        reason: spec.reason.clone(),
    })
}
