//! The custom resources idsync reconciles: group `idsync.dev`, version `v1alpha1`.
//!
//! Conventions every kind follows, so GitOps tools and `kubectl wait` work unchanged:
//! - optional fields are `Option` and skipped when absent: defaults are applied in
//!   code, never written into stored objects (Argo CD and Flux would show drift);
//! - references are `*Ref` objects; a `Secret` key reference names both the Secret
//!   and the key;
//! - `status` carries `observedGeneration` and `metav1.Condition`s, `Ready` first;
//! - validation lives in the schema (patterns, enums, CEL rules), so a bad manifest
//!   is refused at `kubectl apply`.

pub mod cluster_identity_service;
pub mod common;
pub mod duration;
pub mod identity_service;
pub mod role_approval;
pub mod role_mapping;
pub mod scim_token;
pub mod sso_connection;
pub mod webhook;
pub mod workspace;

pub use cluster_identity_service::{
    AllowedNamespaces, ClusterIdentityService, ClusterIdentityServiceSpec,
};
pub use common::{
    Condition, DeletionPolicy, LocalObjectRef, SecretKeyRef, ServiceKind, ServiceRef,
};
pub use duration::DurationSpec;
pub use identity_service::{IdentityService, IdentityServiceSpec, IdentityServiceStatus};
pub use role_approval::{RoleApproval, RoleApprovalSpec, RoleApprovalStatus};
pub use role_mapping::{
    RoleMapping, RoleMappingSpec, RoleMappingStatus, RoleRule, RoleTest, RuleSource, Strategy,
};
pub use scim_token::{RotationSpec, ScimAuthentication, ScimToken, ScimTokenSpec, ScimTokenStatus};
pub use sso_connection::{
    ClaimMapping, MetadataSourceKind, OidcSpec, Protocol, SamlMetadataRef, SamlSpec, SsoConnection,
    SsoConnectionSpec, SsoConnectionStatus,
};
pub use webhook::{Webhook, WebhookSpec, WebhookStatus};
pub use workspace::{
    AccessGroup, AssignmentHolder, AssignmentType, RequireSso, RequireSsoMode, RoleAssignments,
    SourceRanges, Workspace, WorkspaceDeletionPolicy, WorkspacePolicy, WorkspaceSpec,
    WorkspaceStatus,
};

/// The API group of every idsync resource.
pub const GROUP: &str = "idsync.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Pattern for DNS-1123 labels: workspace IDs and object names in the identity service.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// Pattern for an email domain such as `example.com` (lower case, at least two labels).
pub const DOMAIN_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";
/// Pattern for an http(s) URL; the apiserver has no `uri` format check of its own.
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s/$.?#][^\s]*$";
/// Pattern for an https URL (issuers and IdP endpoints must be TLS in production;
/// `http://127.0.0.1` and `http://localhost` are allowed for local testing).
pub const ISSUER_URL_PATTERN: &str =
    r"^(https://[^\s/$.?#][^\s]*|http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^\s]*)?)$";
/// Pattern for an email address (deliberately permissive; IdPs are the authority).
pub const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
