//! The operator's errors, and what each means for retrying.

use crate::admin::ClientError;

/// A reconcile failure. Messages say what to do and never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The identity service failed or refused a call.
    #[error("{0}")]
    Service(#[from] ClientError),

    /// Something the resource references is missing or unusable; retrying will not
    /// help until the user changes it (or the referenced object appears).
    #[error("{message}")]
    Config {
        reason: &'static str,
        message: String,
    },

    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),

    /// The operating system's random source failed.
    #[error(transparent)]
    Random(#[from] crate::token::RandomError),

    /// The IdP could not be validated (discovery or metadata).
    #[error("{message}")]
    Validation {
        reason: &'static str,
        message: String,
        /// Whether a retry may succeed (network) or the spec is wrong.
        transient: bool,
    },
}

impl Error {
    pub fn config(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Config {
            reason,
            message: message.into(),
        }
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Service(e) if e.is_transient() => "service_unavailable",
            Error::Service(_) => "service_rejected",
            Error::Config { .. } => "config",
            Error::Finalizer(_) => "finalizer",
            Error::Validation { .. } => "validation",
            Error::Random(_) => "random",
        }
    }

    /// Retry soon with backoff (true), or wait for a change or the periodic resync.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => {
                status.code >= 500 || status.code == 429 || status.code == 409
            }
            Error::Kube(_) => true,
            Error::Service(e) => e.is_transient(),
            Error::Config { .. } => false,
            Error::Finalizer(_) | Error::Random(_) => true,
            Error::Validation { transient, .. } => *transient,
        }
    }

    /// The condition reason this error shows in status.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Service(e) if e.is_transient() => "ServiceUnavailable",
            Error::Service(e) if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) => {
                "ServiceUnauthorized"
            }
            Error::Service(ClientError::Api { code, .. }) if code == "workspace_taken" => {
                "WorkspaceIdTaken"
            }
            Error::Service(ClientError::Api { code, .. }) if code == "one_per_workspace" => {
                "WorkspaceHasRoleMapping"
            }
            Error::Service(_) => "ServiceRejected",
            Error::Config { reason, .. } => reason,
            Error::Finalizer(_) => "FinalizerFailed",
            Error::Random(_) => "RandomSourceFailed",
            Error::Validation { reason, .. } => reason,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_role_mapping_says_why_and_waits_for_a_change() {
        let refused = Error::Service(ClientError::Api {
            status: reqwest::StatusCode::CONFLICT,
            code: "one_per_workspace".into(),
            message: "workspace acme already has role-mapping \"roles\"".into(),
        });
        assert_eq!(refused.reason(), "WorkspaceHasRoleMapping");
        assert!(
            !refused.is_transient(),
            "retrying cannot help until the first goes"
        );
    }
}
