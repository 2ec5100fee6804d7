//! From custom resources to admin API documents: the desired state, computed as a
//! pure function so the operator and `idsync admin apply` agree on it and tests can
//! check it without a cluster.

use super::model::{OidcDoc, RoleMappingDoc, SamlDoc, SsoConnectionDoc, WorkspaceDoc};
use crate::api::{RoleMappingSpec, SsoConnectionSpec, WorkspaceSpec};

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
