//! The workspace's sign-in policy as pure functions: which connection an email
//! is routed to, whether SSO is required for it, and how long a session lasts.

use std::time::Duration;

use crate::{
    admin::{SsoConnectionDoc, WorkspaceDoc},
    api::RequireSsoMode,
};

use super::session::MAX_SESSION;

/// Session lifetime when the workspace sets none.
const DEFAULT_SESSION: Duration = Duration::from_secs(8 * 3600);

/// The domain part of an email, lower-cased.
pub fn email_domain(email: &str) -> Option<String> {
    let (local, domain) = email.rsplit_once('@')?;
    (!local.is_empty() && domain.contains('.')).then(|| domain.to_ascii_lowercase())
}

/// The domains a connection may assert emails of: its own, else the
/// workspace's. Empty means none (the admin API refuses such a connection;
/// a workspace that later drops its domains refuses sign-in, not opens it).
pub fn connection_domains<'a>(ws: &'a WorkspaceDoc, conn: &'a SsoConnectionDoc) -> &'a [String] {
    if conn.domains.is_empty() {
        &ws.domains
    } else {
        &conn.domains
    }
}

/// Whether `conn` may sign in someone with this email.
pub fn domain_allowed(ws: &WorkspaceDoc, conn: &SsoConnectionDoc, email: &str) -> bool {
    let allowed = connection_domains(ws, conn);
    email_domain(email).is_some_and(|d| allowed.contains(&d))
}

/// Picks the connection for a sign-in: the named one, else the one whose
/// domains hold the email's domain, else the only one.
pub fn route<'a>(
    ws: &WorkspaceDoc,
    connections: &'a [(String, SsoConnectionDoc)],
    named: Option<&str>,
    email: Option<&str>,
) -> Option<&'a (String, SsoConnectionDoc)> {
    if let Some(name) = named {
        return connections.iter().find(|(n, _)| n == name);
    }
    if let Some(domain) = email.and_then(email_domain) {
        // A connection that lists the domain itself beats one that inherits
        // the workspace's domains.
        if let Some(c) = connections
            .iter()
            .find(|(_, c)| c.domains.contains(&domain))
        {
            return Some(c);
        }
        let inheriting: Vec<_> = connections
            .iter()
            .filter(|(_, c)| c.domains.is_empty() && ws.domains.contains(&domain))
            .collect();
        if let [one] = inheriting.as_slice() {
            return Some(one);
        }
    }
    match connections {
        [one] => Some(one),
        _ => None,
    }
}

/// Whether SSO is required for this email's domain (the workspace's rule,
/// before any break-glass exception).
pub fn sso_required_for_domain(ws: &WorkspaceDoc, email: &str) -> bool {
    let Some(policy) = &ws.policy else {
        return false;
    };
    match policy.require_sso.as_ref().map(|r| (r.mode, &r.domains)) {
        None | Some((RequireSsoMode::Off, _)) => false,
        Some((RequireSsoMode::All, _)) => true,
        Some((RequireSsoMode::Domains, domains)) => {
            email_domain(email).is_some_and(|d| domains.contains(&d))
        }
    }
}

/// Whether this email is one of the workspace's break-glass administrators.
pub fn is_break_glass(ws: &WorkspaceDoc, email: &str) -> bool {
    ws.policy.as_ref().is_some_and(|p| {
        p.break_glass_admins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(email))
    })
}

/// Whether this person must sign in through SSO (and may not use a password).
pub fn sso_required(ws: &WorkspaceDoc, email: &str) -> bool {
    !is_break_glass(ws, email) && sso_required_for_domain(ws, email)
}

/// Whether a person SCIM never provisioned may be created at first sign-in.
pub fn jit_allowed(ws: &WorkspaceDoc) -> bool {
    let policy = ws.policy.clone().unwrap_or_default();
    let requires_scim = policy.require_scim_provisioning == Some(true);
    !requires_scim && policy.jit_provisioning != Some(false)
}

/// Whether sign-in refuses people SCIM has not provisioned.
pub fn requires_scim(ws: &WorkspaceDoc) -> bool {
    ws.policy
        .as_ref()
        .is_some_and(|p| p.require_scim_provisioning == Some(true))
}

/// How long a session of `role` lasts.
pub fn session_lifetime(ws: &WorkspaceDoc, role: Option<&str>) -> Duration {
    let policy = ws.policy.as_ref();
    let by_role = role.and_then(|r| policy.and_then(|p| p.session_lifetimes.get(r)));
    let lifetime = by_role
        .or_else(|| policy.and_then(|p| p.default_session_lifetime.as_ref()))
        .map(|d| d.as_duration())
        .unwrap_or(DEFAULT_SESSION);
    lifetime.min(MAX_SESSION)
}

/// A safe place to send the browser after sign-in: a local path only, so the
/// sign-in URL cannot be turned into an open redirect.
pub fn safe_return_to(requested: Option<&str>) -> String {
    match requested {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 2048
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Protocol, RequireSso, WorkspacePolicy};

    fn ws(domains: &[&str], policy: WorkspacePolicy) -> WorkspaceDoc {
        WorkspaceDoc {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            policy: Some(policy),
            ..Default::default()
        }
    }

    fn conn(domains: &[&str]) -> SsoConnectionDoc {
        SsoConnectionDoc {
            protocol: Protocol::Oidc,
            display_name: None,
            domains: domains.iter().map(|d| d.to_string()).collect(),
            oidc: None,
            saml: None,
        }
    }

    #[test]
    fn emails_route_to_the_connection_of_their_domain() {
        let w = ws(&["acme.com", "acme.io"], WorkspacePolicy::default());
        let conns = vec![
            ("okta".to_string(), conn(&["acme.com"])),
            ("entra".to_string(), conn(&["acme.io"])),
        ];
        let pick = |email| route(&w, &conns, None, Some(email)).map(|(n, _)| n.as_str());
        assert_eq!(pick("a@acme.com"), Some("okta"));
        assert_eq!(pick("a@ACME.io"), Some("entra"));
        assert_eq!(pick("a@other.com"), None);
        assert_eq!(
            route(&w, &conns, Some("entra"), Some("a@acme.com")).map(|(n, _)| n.as_str()),
            Some("entra")
        );
        assert!(domain_allowed(&w, &conns[0].1, "x@acme.com"));
        assert!(!domain_allowed(&w, &conns[0].1, "x@acme.io"));
    }

    #[test]
    fn break_glass_admins_escape_required_sso() {
        let w = ws(
            &["acme.com"],
            WorkspacePolicy {
                require_sso: Some(RequireSso {
                    mode: RequireSsoMode::Domains,
                    domains: vec!["acme.com".into()],
                }),
                break_glass_admins: vec!["Root@acme.com".into()],
                ..Default::default()
            },
        );
        assert!(sso_required(&w, "alice@acme.com"));
        assert!(!sso_required(&w, "root@acme.com"));
        assert!(!sso_required(&w, "contractor@gmail.com"));
    }

    #[test]
    fn jit_is_off_when_scim_provisioning_is_required() {
        let w = ws(
            &[],
            WorkspacePolicy {
                require_scim_provisioning: Some(true),
                jit_provisioning: Some(true),
                ..Default::default()
            },
        );
        assert!(!jit_allowed(&w) && requires_scim(&w));
        assert!(jit_allowed(&ws(&[], WorkspacePolicy::default())));
    }

    #[test]
    fn return_to_is_a_local_path() {
        assert_eq!(safe_return_to(Some("/app?x=1")), "/app?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "app"] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad}");
        }
    }
}
