//! SCIM 2.0 protocol logic with no I/O: the filter grammar, the schemas, resource
//! normalisation and the PATCH engine. The identity service (`service::scim`)
//! stores and serves what this module produces; fuzzers and benchmarks call it
//! directly.

pub mod eval;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

/// A client mistake, as RFC 7644 §3.12 names it. The service turns it into an
/// error body with `status` 400 (409 for `uniqueness`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scim_type}: {detail}")]
pub struct ScimProblem {
    pub scim_type: &'static str,
    pub detail: String,
}

impl ScimProblem {
    pub fn new(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new("invalidValue", detail)
    }
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new("invalidPath", detail)
    }
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::new("invalidSyntax", detail)
    }
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::new("invalidFilter", detail)
    }
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::new("mutability", detail)
    }
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::new("noTarget", detail)
    }
}

/// A member of a JSON object by name, ignoring case: SCIM names are
/// case-insensitive everywhere (RFC 7643 §2.1), in bodies as in paths.
pub fn get_ci<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'v serde_json::Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

impl From<filter::FilterError> for ScimProblem {
    fn from(e: filter::FilterError) -> Self {
        ScimProblem::invalid_filter(e.0)
    }
}
