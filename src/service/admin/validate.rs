//! Checks on admin API documents beyond their types: the same rules the CRD schema
//! enforces, for callers that do not go through the apiserver.

use regex::Regex;
use std::sync::LazyLock;

use crate::admin::{RoleApprovalDoc, RoleMappingDoc, SsoConnectionDoc, WebhookDoc, WorkspaceDoc};
use crate::api::{self, Protocol};
use crate::roles::CompiledMapping;

fn compiled(pattern: &str) -> Regex {
    // The patterns are constants of this crate, covered by tests.
    Regex::new(pattern).expect("built-in pattern compiles")
}

static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| compiled(api::DNS_LABEL_PATTERN));
static OBJECT_NAME: LazyLock<Regex> =
    LazyLock::new(|| compiled(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"));
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| compiled(api::DOMAIN_PATTERN));
static ROLE: LazyLock<Regex> = LazyLock::new(|| compiled(r"^[a-z][-a-z0-9_]{0,62}$"));
static ISSUER: LazyLock<Regex> = LazyLock::new(|| compiled(api::ISSUER_URL_PATTERN));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| compiled(api::EMAIL_PATTERN));

pub fn workspace_id(id: &str) -> Result<(), String> {
    if DNS_LABEL.is_match(id) {
        Ok(())
    } else {
        Err(format!(
            "workspace {id:?} is not a valid workspace id: lower-case letters, digits and '-', at most 63 characters"
        ))
    }
}

pub fn object_name(name: &str) -> Result<(), String> {
    if OBJECT_NAME.is_match(name) {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} is not valid: lower-case letters, digits, '-' and '.', at most 253 characters"
        ))
    }
}

fn domains(field: &str, domains: &[String]) -> Result<(), String> {
    for d in domains {
        if !DOMAIN.is_match(d) {
            return Err(format!("{field}: {d:?} is not a lower-case domain name"));
        }
    }
    Ok(())
}

fn role(field: &str, role: &str) -> Result<(), String> {
    if ROLE.is_match(role) {
        Ok(())
    } else {
        Err(format!("{field}: {role:?} is not a valid role name"))
    }
}

pub fn workspace(doc: &WorkspaceDoc) -> Result<(), String> {
    domains("domains", &doc.domains)?;
    if let Some(r) = &doc.default_role {
        role("defaultRole", r)?;
    }
    if let Some(policy) = &doc.policy {
        if let Some(bad) = policy
            .source_ranges
            .as_ref()
            .and_then(|r| r.invalid().first().map(|s| s.to_string()))
        {
            return Err(format!(
                "policy.sourceRanges: {bad:?} is neither a CIDR range (10.0.0.0/8) nor an address"
            ));
        }
        for email in &policy.break_glass_admins {
            if !EMAIL.is_match(email) {
                return Err(format!(
                    "policy.breakGlassAdmins: {email:?} is not an email address"
                ));
            }
        }
        if let Some(require) = &policy.require_sso {
            domains("policy.requireSso.domains", &require.domains)?;
            let wants_domains = require.mode == api::RequireSsoMode::Domains;
            if wants_domains == require.domains.is_empty() {
                return Err(
                    "policy.requireSso: domains must be listed when mode is Domains, and only then"
                        .into(),
                );
            }
        }
        for r in policy
            .approval_required_roles
            .iter()
            .chain(policy.session_lifetimes.keys())
        {
            role("policy", r)?;
        }
        if let Some(assignments) = &policy.role_assignments {
            role_assignments(assignments)?;
        }
        if policy.access_groups.len() > 64 {
            return Err("policy.accessGroups: at most 64 entries".into());
        }
        for (i, group) in policy.access_groups.iter().enumerate() {
            if let Some(problem) = group.invalid() {
                return Err(format!("policy.accessGroups[{i}]: {problem}"));
            }
        }
    }
    Ok(())
}

/// What the CRD's schema checks of `policy.roleAssignments`, for documents
/// that did not come through the apiserver (`idsync admin apply`).
fn role_assignments(declared: &api::RoleAssignments) -> Result<(), String> {
    let field = "policy.roleAssignments.types";
    if declared.types.is_empty() {
        return Err(format!("{field}: declare at least one type"));
    }
    for t in &declared.types {
        if t.name.is_some() == t.prefix.is_some() {
            return Err(format!("{field}: give exactly one of name or prefix"));
        }
        if t.values.is_empty() {
            return Err(format!("{field}: every type needs at least one value"));
        }
    }
    Ok(())
}

pub fn sso_connection(doc: &SsoConnectionDoc) -> Result<(), String> {
    domains("domains", &doc.domains)?;
    match (doc.protocol, &doc.oidc, &doc.saml) {
        (Protocol::Oidc, Some(oidc), None) => {
            if !ISSUER.is_match(&oidc.issuer) {
                return Err(format!(
                    "oidc.issuer: {:?} must be an https URL (http only for localhost)",
                    oidc.issuer
                ));
            }
            if let Some(url) = &oidc.discovery_url
                && !ISSUER.is_match(url)
            {
                return Err(
                    "oidc.discoveryUrl must be an https URL (http only for localhost)".into(),
                );
            }
            if oidc.client_id.is_empty() {
                return Err("oidc.clientId must not be empty".into());
            }
            if oidc.client_secret.as_deref().is_none_or(str::is_empty) {
                return Err("oidc.clientSecret is required".into());
            }
            if !oidc.scopes.is_empty() && !oidc.scopes.iter().any(|s| s == "openid") {
                return Err("oidc.scopes must include openid".into());
            }
            Ok(())
        }
        (Protocol::Saml, None, Some(saml)) => {
            let sources = [
                saml.metadata_url.is_some(),
                saml.metadata.is_some(),
                saml.entity_id.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err("saml: give exactly one of metadataUrl, metadata, or entityId with ssoUrl and certificates".into());
            }
            if saml.entity_id.is_some() && (saml.sso_url.is_none() || saml.certificates.is_empty())
            {
                return Err(
                    "saml: entityId requires ssoUrl and at least one signing certificate".into(),
                );
            }
            if let Some(skew) = saml.allowed_clock_skew
                && skew.as_secs() > 600
            {
                return Err("saml.allowedClockSkew must be at most 10m".into());
            }
            Ok(())
        }
        (Protocol::Oidc, _, _) => {
            Err("protocol oidc requires the oidc block and forbids saml".into())
        }
        (Protocol::Saml, _, _) => {
            Err("protocol saml requires the saml block and forbids oidc".into())
        }
    }
}

pub fn role_mapping(doc: &RoleMappingDoc) -> Result<(), String> {
    CompiledMapping::compile(doc)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Longest `reason` an approval carries into the audit log.
const MAX_REASON: usize = 500;

pub fn role_approval(doc: &RoleApprovalDoc) -> Result<(), String> {
    match (&doc.email, &doc.scim_id) {
        (Some(email), None) if !EMAIL.is_match(email) || email.len() > 254 => {
            Err(format!("email: {email:?} is not an email address"))
        }
        (None, Some(id)) if id.is_empty() || id.len() > 256 => {
            Err("scimId: give the SCIM id of the user or service account".into())
        }
        (Some(_), None) | (None, Some(_)) => role("role", &doc.role),
        _ => Err("give exactly one of email or scimId".into()),
    }?;
    match &doc.reason {
        Some(r) if r.chars().count() > MAX_REASON => {
            Err(format!("reason: at most {MAX_REASON} characters"))
        }
        _ => Ok(()),
    }
}

pub fn webhook(doc: &WebhookDoc) -> Result<(), String> {
    if !HTTP_URL.is_match(&doc.url) || doc.url.len() > 2048 {
        return Err(format!("url: {:?} is not an http(s) URL", doc.url));
    }
    if doc.event_types.is_empty() || doc.event_types.len() > 64 {
        return Err("eventTypes: list 1 to 64 types (`member.*`, `*`)".into());
    }
    if let Some(bad) = doc.event_types.iter().find(|t| !EVENT_TYPE.is_match(t)) {
        return Err(format!(
            "eventTypes: {bad:?} is not an event type or family"
        ));
    }
    if doc.secrets.is_empty() || doc.secrets.len() > 2 {
        return Err("secrets: give one signing secret, or two during a rotation".into());
    }
    if doc
        .secrets
        .iter()
        .any(|s| crate::webhook_signing::key_of(s).is_none())
    {
        // Never echo a secret, not even a malformed one.
        return Err("secrets: each is `whsec_` and 24 to 64 bytes in base64".into());
    }
    match &doc.ca_bundle {
        Some(pem) if pem.len() > 1024 * 1024 => Err("caBundle: at most 1 MiB".into()),
        Some(pem) => {
            let refused = || "caBundle: give PEM certificates (-----BEGIN CERTIFICATE-----)";
            match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
                Ok(certs) if !certs.is_empty() => {}
                _ => return Err(refused().into()),
            }
            // The deliverer's client is built from it: one that cannot be is
            // refused now, not found out at the first delivery.
            let options = crate::outbound::ClientOptions {
                ca_bundle: Some(pem.clone()),
                ..Default::default()
            };
            crate::outbound::Guarded::new(Default::default(), &options)
                .map(drop)
                .map_err(|_| refused().into())
        }
        None => Ok(()),
    }
}

static HTTP_URL: LazyLock<Regex> = LazyLock::new(|| compiled(api::HTTP_URL_PATTERN));
static EVENT_TYPE: LazyLock<Regex> =
    LazyLock::new(|| compiled(r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_type_is_a_name_or_a_prefix_with_values() {
        let doc = |types: serde_json::Value| -> WorkspaceDoc {
            serde_json::from_value(
                serde_json::json!({"policy": {"roleAssignments": {"types": types}}}),
            )
            .expect("a workspace document")
        };
        assert!(
            workspace(&doc(
                serde_json::json!([{"prefix": "workspace_", "values": ["owner"]}])
            ))
            .is_ok()
        );
        for bad in [
            serde_json::json!([]),
            serde_json::json!([{"values": ["owner"]}]),
            serde_json::json!([{"name": "a", "prefix": "b", "values": ["owner"]}]),
            serde_json::json!([{"name": "account_type", "values": []}]),
        ] {
            assert!(workspace(&doc(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn built_in_patterns_compile_and_accept_examples() {
        assert!(workspace_id("acme-corp").is_ok());
        assert!(workspace_id("Acme").is_err());
        assert!(object_name("okta.oidc-1").is_ok());
        assert!(DOMAIN.is_match("example.co.uk"));
        assert!(!DOMAIN.is_match("Example.com"));
        assert!(ISSUER.is_match("https://acme.okta.com"));
        assert!(ISSUER.is_match("http://127.0.0.1:4000"));
        assert!(!ISSUER.is_match("http://acme.okta.com"));
    }
}
