//! SCIM 2.0 (RFC 7643/7644) under `/scim/v2/{workspace}/`.
//!
//! [`Endpoint::parse`] names what a request path is for (endpoint names are
//! case-insensitive: Entra's test collection sends `/users`); the operations
//! live in [`service::ScimService`], which tests call without HTTP. The route,
//! authentication, metrics and headers are the HTTP layer's `scim_routes`.

pub mod approvals;
pub mod assignments;
pub mod bulk;
pub mod context;
pub mod discovery;
pub mod error;
pub mod explain;
pub mod render;
pub mod roles;
pub mod service;

use crate::scim::schema::ResourceKind;

/// Media type of SCIM answers (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// What a SCIM request path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    ServiceProviderConfig,
    ResourceTypes(Option<String>),
    Schemas(Option<String>),
    /// `/Users`, `/Users/{id}`, `/Groups`, `/Groups/{id}`, `/ServiceAccounts`, …
    Resources(ResourceKind, Option<String>),
    /// `/.search` (every kind) or `/Users/.search`.
    Search(Option<ResourceKind>),
    Bulk,
    Me,
}

impl Endpoint {
    pub fn parse(rest: &str) -> Option<Self> {
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        let is = |p: &str, name: &str| p.eq_ignore_ascii_case(name);
        let kind = ResourceKind::from_endpoint;
        Some(match parts.as_slice() {
            // `serviceConfiguration` is what Microsoft's SCIM reference code serves.
            [p] if is(p, "ServiceProviderConfig")
                || is(p, "ServiceProviderConfigs")
                || is(p, "serviceConfiguration") =>
            {
                Endpoint::ServiceProviderConfig
            }
            [p] if is(p, "ResourceTypes") => Endpoint::ResourceTypes(None),
            [p, id] if is(p, "ResourceTypes") => Endpoint::ResourceTypes(Some(id.to_string())),
            [p] if is(p, "Schemas") => Endpoint::Schemas(None),
            [p, id] if is(p, "Schemas") => Endpoint::Schemas(Some(id.to_string())),
            [p] if is(p, ".search") => Endpoint::Search(None),
            [p] if is(p, "Bulk") => Endpoint::Bulk,
            [p, ..] if is(p, "Me") => Endpoint::Me,
            [p] => Endpoint::Resources(kind(p)?, None),
            [p, s] if is(s, ".search") => Endpoint::Search(Some(kind(p)?)),
            [p, id] => Endpoint::Resources(kind(p)?, Some(id.to_string())),
            _ => return None,
        })
    }

    /// The `resource` metric label.
    pub fn resource_label(&self) -> &'static str {
        match self {
            Endpoint::Resources(k, _) | Endpoint::Search(Some(k)) => k.as_str(),
            Endpoint::Search(None) => "Search",
            Endpoint::Bulk => "Bulk",
            Endpoint::Me => "Me",
            Endpoint::ServiceProviderConfig | Endpoint::ResourceTypes(_) | Endpoint::Schemas(_) => {
                "Discovery"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_case_insensitive() {
        assert_eq!(
            Endpoint::parse("users"),
            Some(Endpoint::Resources(ResourceKind::User, None))
        );
        assert_eq!(
            Endpoint::parse("/GROUPS/abc"),
            Some(Endpoint::Resources(ResourceKind::Group, Some("abc".into())))
        );
        assert_eq!(
            Endpoint::parse("Users/.search"),
            Some(Endpoint::Search(Some(ResourceKind::User)))
        );
        assert_eq!(Endpoint::parse(".Search"), Some(Endpoint::Search(None)));
        assert_eq!(
            Endpoint::parse("serviceproviderconfig"),
            Some(Endpoint::ServiceProviderConfig)
        );
        assert_eq!(
            Endpoint::parse("Schemas/urn:ietf:params:scim:schemas:core:2.0:User"),
            Some(Endpoint::Schemas(Some(
                "urn:ietf:params:scim:schemas:core:2.0:User".into()
            )))
        );
        assert_eq!(
            Endpoint::parse("serviceaccounts/x"),
            Some(Endpoint::Resources(
                ResourceKind::ServiceAccount,
                Some("x".into())
            ))
        );
        assert_eq!(Endpoint::parse("Me"), Some(Endpoint::Me));
        assert_eq!(Endpoint::parse("Widgets"), None);
        assert_eq!(Endpoint::parse("Users/a/b"), None);
    }
}
