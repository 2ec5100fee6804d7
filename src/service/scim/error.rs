//! RFC 7644 §3.12 error bodies.

use http::StatusCode;
use serde_json::{Value, json};

use crate::{
    scim::ScimProblem,
    service::store::{FailureKind, StoreError},
};

/// A SCIM error answer: HTTP status, optional `scimType`, and a detail that says
/// what the IdP admin can do about it. Details never contain secret values.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }
    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn too_many_requests(detail: &str) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn precondition_failed(current_etag: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            format!("the resource changed: its version is now {current_etag}"),
        )
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            scim_type: Some("tooMany"),
            detail: detail.into(),
        }
    }

    /// The RFC 7644 §3.12 body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        body
    }
}

impl From<ScimProblem> for ScimError {
    fn from(p: ScimProblem) -> Self {
        let status = if p.scim_type == "uniqueness" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            scim_type: Some(p.scim_type),
            detail: p.detail,
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            // A unique index caught two writers racing past the conflict check.
            FailureKind::Conflict => {
                Self::uniqueness("another resource already holds this userName or externalId")
            }
            // 503: IdPs retry a 5xx, and this one is worth retrying.
            FailureKind::Transient => {
                tracing::warn!(error = %e, "store unavailable answering SCIM");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the service cannot reach its database; retry later",
                )
            }
            // Not 503: an IdP would retry a corrupt row forever.
            FailureKind::Internal => {
                tracing::error!(error = %e, "store error answering SCIM");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the service log says more",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_map_to_their_class_not_all_to_503() {
        let corrupt = StoreError::Corrupt {
            kind: "Workspace",
            workspace: "acme".into(),
            name: "acme".into(),
            message: "expected value".into(),
        };
        assert_eq!(corrupt.kind(), FailureKind::Internal);
        let scim = ScimError::from(corrupt);
        assert_eq!(
            scim.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "an IdP would retry a 503 forever"
        );
        assert!(
            !scim.detail.contains("expected value"),
            "row detail stays in the log"
        );
        let down = StoreError::NotCommitted("disk".into());
        assert_eq!(
            ScimError::from(down).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
