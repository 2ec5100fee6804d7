//! `Workspace`: one tenant of the identity service and its sign-in policy.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, DurationSpec, ServiceRef};

/// One tenant (organization) of the identity service: its domains, default role and
/// how its people must sign in.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idsync.dev",
    doc = "A tenant of the identity service: its domains, default role and sign-in policy.",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    status = "WorkspaceStatus",
    shortname = "ws",
    category = "idsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Workspace","type":"string","jsonPath":".status.workspaceId"}"#,
    printcolumn = r#"{"name":"Domains","type":"string","jsonPath":".spec.domains"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// The identity service this workspace lives in: an `IdentityService` of
    /// this namespace (`{name: idsync}`), or a `ClusterIdentityService` that
    /// allows this namespace (`{kind: ClusterIdentityService, name: idsync}`).
    pub service_ref: ServiceRef,

    /// Workspace identifier in the identity service and in its URLs
    /// (`/scim/v2/{workspaceId}/`). Defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
        length(max = 63)
    )]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("workspaceId is immutable"))]
    pub workspace_id: Option<String>,

    /// Human-readable name shown on sign-in pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub display_name: Option<String>,

    /// Verified email domains of this workspace (lower case). Sign-in routes people
    /// to the workspace's SSO connection by the domain of their email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
    ), length(max = 253)), length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub domains: Vec<String>,

    /// Role given to members no role-mapping rule matches (default `member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63))]
    pub default_role: Option<String>,

    /// Sign-in and provisioning policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<WorkspacePolicy>,

    /// What deleting this resource does in the identity service. `Delete` (default)
    /// removes the workspace but refuses while SSO connections, SCIM tokens or role
    /// mappings still reference it; `Cascade` removes it with everything in it;
    /// `Retain` leaves it in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<WorkspaceDeletionPolicy>,
}

/// What deleting a `Workspace` does in the identity service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WorkspaceDeletionPolicy {
    /// Remove the workspace; refused while dependents exist.
    #[default]
    Delete,
    /// Remove the workspace and every user, group, connection and token in it.
    Cascade,
    /// Leave the workspace in the identity service.
    Retain,
}

/// How the people of a workspace must sign in and how they get provisioned.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspacePolicy {
    /// Where SCIM requests and sign-in callbacks may come from. A request
    /// from elsewhere is refused with 403 and counted. Behind a proxy the
    /// client address is taken from `X-Forwarded-For` only when the peer is
    /// in the service's `--trusted-proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<SourceRanges>,

    /// Directory groups whose members may use the workspace, by name or name
    /// prefix, compared case-insensitively with the groups SCIM pushed
    /// (displayName or externalId). When set, a user in none of them is
    /// deactivated at once: sessions and API keys revoked, sign-in refused
    /// with `not_in_access_group`, audited as `user_access_revoked`. Joining
    /// one again restores them (`user_access_granted`) with the role the
    /// mapping gives. SCIM's `active` stays what the IdP set, so the IdP sees
    /// no drift to correct. Service accounts are not affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub access_groups: Vec<AccessGroup>,

    /// Whether single sign-on is mandatory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_sso: Option<RequireSso>,

    /// Emails of break-glass administrators who may still sign in with a password
    /// when SSO is required (for when the IdP itself is down).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$")),
        length(max = 20)
    )]
    pub break_glass_admins: Vec<String>,

    /// Refuse SSO sign-in to people the IdP has not provisioned (and kept active)
    /// through SCIM. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_scim_provisioning: Option<bool>,

    /// Create a user on first successful SSO sign-in when SCIM has not. Default true
    /// unless `requireScimProvisioning` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jit_provisioning: Option<bool>,

    /// Roles that take effect only after an administrator approves them (for example
    /// `owner`, `admin`). Until then the person gets the next lower role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^[a-z][-a-z0-9_]{0,62}$"), length(max = 63)),
        length(max = 32)
    )]
    pub approval_required_roles: Vec<String>,

    /// Session lifetime by role, e.g. `{admin: 4h, member: 8h}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub session_lifetimes: BTreeMap<String, DurationSpec>,

    /// Session lifetime for roles not listed in `sessionLifetimes` (default 8h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_session_lifetime: Option<DurationSpec>,

    /// Let a sign-in whose email matches a user bound to another IdP subject of
    /// the same connection take that user over (rebinding it, audited as
    /// `subject_relinked`). Default false: the sign-in is refused with
    /// `subject_mismatch`, because an email is not a stable identity (it can be
    /// reassigned at the IdP, or asserted by an account that is not its owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_relinking: Option<bool>,

    /// Whether the IdP may provision through SCIM (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_enabled: Option<bool>,

    /// Delete users for good on SCIM `DELETE` instead of deactivating them (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_hard_delete: Option<bool>,

    /// Schema extension URNs, besides the core and enterprise User schemas, whose
    /// attributes SCIM stores and returns (e.g.
    /// `urn:ietf:params:scim:schemas:extension:custom:2.0:User`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(regex(pattern = r"^urn:[a-zA-Z0-9][-a-zA-Z0-9.:_]+$")),
        length(max = 16)
    )]
    pub scim_schema_extensions: Vec<String>,

    /// Role assignments the IdP may set over SCIM (`roles: [{type, value}]` on
    /// Users and Groups): the types that exist and their values. Declared here,
    /// beside the SCIM schema extensions, because they are part of what this
    /// workspace's SCIM endpoint accepts, checked on every write; a RoleMapping
    /// decides the one workspace role from groups and claims, independently.
    /// Without it, `roles` is stored as sent and means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_assignments: Option<RoleAssignments>,
}

/// A directory group that grants access (`name: Engineering`), or a family of
/// them (`prefix: app-idsync-`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.name) != has(self.prefix)").message("give exactly one of name or prefix"))]
pub struct AccessGroup {
    /// The group's displayName (or externalId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// The start of the names of the groups that grant access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub prefix: Option<String>,
}

impl AccessGroup {
    /// Whether the group named `group` is this one (or of this family).
    fn matches(&self, group: &str) -> bool {
        match (&self.name, &self.prefix) {
            (Some(name), _) => group.to_lowercase() == name.to_lowercase(),
            (None, Some(prefix)) => group.to_lowercase().starts_with(&prefix.to_lowercase()),
            (None, None) => false,
        }
    }

    /// The entry's own problem, if any (the schema says the same at apply).
    pub fn invalid(&self) -> Option<&'static str> {
        match (&self.name, &self.prefix) {
            (Some(_), Some(_)) | (None, None) => Some("give exactly one of name or prefix"),
            (Some(v), None) | (None, Some(v)) if v.is_empty() => Some("must not be empty"),
            _ => None,
        }
    }
}

impl WorkspacePolicy {
    /// Whether a user in the directory groups `groups` (their names) may use
    /// the workspace: always, when it declares no access groups.
    pub fn grants_access(&self, groups: &[String]) -> bool {
        self.access_groups.is_empty()
            || groups
                .iter()
                .any(|g| self.access_groups.iter().any(|a| a.matches(g)))
    }
}

/// The role assignment types of a workspace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignments {
    /// Each type, or family of types, with its values.
    #[schemars(length(min = 1, max = 32))]
    pub types: Vec<AssignmentType>,

    /// Which SCIM resources may carry assignments (default all three). An IdP
    /// that cannot push a group's assignments (Okta) gets `[users,
    /// serviceAccounts]`: a group's `roles` is then ignored on write, like a
    /// read-only attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_on: Option<Vec<AssignmentHolder>>,
}

/// One assignment type (`name: account_type`) or a family of them
/// (`prefix: workspace_` covers `workspace_prod`, `workspace_dev`, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.name) != has(self.prefix)").message("give exactly one of name or prefix"))]
pub struct AssignmentType {
    /// The exact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_.-]{0,62}$"))]
    pub name: Option<String>,
    /// The prefix of a family of types; what follows it names, say, a
    /// workspace or a secret scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_.-]{0,62}$"))]
    pub prefix: Option<String>,
    /// The values, highest first: a member with several gets the highest.
    #[schemars(
        inner(regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")),
        length(min = 1, max = 32),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub values: Vec<String>,
}

/// A SCIM resource type that can hold role assignments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AssignmentHolder {
    Users,
    Groups,
    ServiceAccounts,
}

/// CIDR ranges (or single addresses) requests must come from; a list left
/// out or empty allows every address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(!has(self.scim) || self.scim.all(r, isCIDR(r) || isIP(r))) && (!has(self.signIn) || self.signIn.all(r, isCIDR(r) || isIP(r)))").message("every source range must be a CIDR range (10.0.0.0/8) or an address"))]
pub struct SourceRanges {
    /// Where the IdP's SCIM requests come from (its published egress ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub scim: Option<Vec<String>>,
    /// Where browsers finish a sign-in from (the OIDC callback and the SAML
    /// ACS): the company network's egress ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub sign_in: Option<Vec<String>>,
}

impl SourceRanges {
    /// Whether `ip` is in `ranges` (none given: every address is). A range
    /// that does not parse matches nothing: the admin API refuses those, so
    /// one can only be a row an older version wrote, and failing closed is
    /// the safe reading.
    pub fn allows(ranges: Option<&[String]>, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        match ranges {
            None | Some([]) => true,
            Some(ranges) => ranges.iter().any(|r| {
                r.parse::<ipnet::IpNet>()
                    .or_else(|_| r.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .is_ok_and(|net| net.contains(&ip))
            }),
        }
    }

    /// Each range that is neither a CIDR range nor an address.
    pub fn invalid(&self) -> Vec<&str> {
        let lists = [self.scim.as_deref(), self.sign_in.as_deref()];
        lists
            .into_iter()
            .flatten()
            .flatten()
            .filter(|r| {
                r.parse::<ipnet::IpNet>().is_err() && r.parse::<std::net::IpAddr>().is_err()
            })
            .map(String::as_str)
            .collect()
    }
}

/// Whether SSO is required for everyone, for some domains, or not at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.mode == 'Domains' ? size(self.domains) > 0 : !has(self.domains) || size(self.domains) == 0").message("domains must be listed when mode is Domains, and only then"))]
pub struct RequireSso {
    /// `Off`, `All` (everyone but break-glass admins) or `Domains` (people whose email
    /// domain is in `domains`).
    pub mode: RequireSsoMode,
    /// Email domains for which SSO is required, with mode `Domains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
    ), length(max = 253)), length(max = 100), extend("x-kubernetes-list-type" = "set"))]
    pub domains: Vec<String>,
}

/// Modes of SSO enforcement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RequireSsoMode {
    /// Password sign-in stays available.
    #[default]
    Off,
    /// Everyone must use SSO, except break-glass admins.
    All,
    /// People with an email in the listed domains must use SSO.
    Domains,
}

/// Observed state of a `Workspace`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The workspace identifier in the identity service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// SCIM base URL to paste into the IdP's provisioning settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_base_url: Option<String>,
    /// Content fingerprint the identity service reported after the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_fingerprint: Option<String>,
    /// When the identity service last changed to match this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<String>,
}

impl Workspace {
    /// The identifier this workspace has in the identity service.
    pub fn workspace_id(&self) -> String {
        self.spec
            .workspace_id
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod source_range_tests {
    use super::SourceRanges;

    #[test]
    fn ranges_admit_their_addresses_only_and_fail_closed() {
        let ranges = vec!["203.0.113.0/24".to_string(), "2001:db8::1".to_string()];
        let allows = |ip: &str| SourceRanges::allows(Some(&ranges), ip.parse().unwrap());
        assert!(allows("203.0.113.9"));
        // An IPv4 client seen on an IPv6 socket is still that IPv4 client.
        assert!(allows("::ffff:203.0.113.9"));
        assert!(allows("2001:db8::1"));
        assert!(!allows("203.0.114.1"));
        assert!(!allows("2001:db8::2"));
        assert!(SourceRanges::allows(None, "198.51.100.1".parse().unwrap()));
        assert!(SourceRanges::allows(
            Some(&[]),
            "198.51.100.1".parse().unwrap()
        ));
        let broken = vec!["10.0.0.0/33".to_string()];
        assert!(!SourceRanges::allows(
            Some(&broken),
            "10.0.0.1".parse().unwrap()
        ));
        let doc = SourceRanges {
            scim: Some(broken),
            sign_in: Some(ranges),
        };
        assert_eq!(doc.invalid(), ["10.0.0.0/33"]);
    }
}
