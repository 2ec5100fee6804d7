//! Why a sign-in was refused: a stable reason code (for the audit log, metrics
//! and the on-call engineer) and a sentence for the person at the browser.
//!
//! Messages never carry token, assertion or secret content: only what the
//! service decided and what to do about it.

use http::StatusCode;

use crate::service::store::{FailureKind, StoreError};

/// Every way a sign-in can fail. The code is a bounded metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No such workspace, or no connection for it / for the email's domain.
    UnknownConnection,
    /// The request lacked something it needs (`code`, `state`, `SAMLResponse`).
    BadRequest,
    /// The IdP answered the callback with an error (the person cancelled, ...).
    IdpError,
    /// The `state` is unknown, used, expired or not this browser's.
    InvalidState,
    /// The IdP's discovery, JWKS, token endpoint or metadata could not be used.
    IdpUnavailable,
    /// The token endpoint refused the code.
    TokenExchangeFailed,
    /// ID-token or assertion signature did not verify.
    InvalidSignature,
    /// `alg` outside the allow-list (`none`, HMAC, ...).
    AlgorithmNotAllowed,
    /// The signing key id is not in the IdP's key set, even after a refresh.
    UnknownKey,
    /// `iss` is not the configured issuer / IdP entity ID.
    WrongIssuer,
    /// `aud` / `azp` / `Audience` is not this service.
    WrongAudience,
    /// `exp`, `NotOnOrAfter` or the issue instant is past (beyond the skew).
    Expired,
    /// `nbf`, `NotBefore` or `iat` is in the future (beyond the skew).
    NotYetValid,
    /// The `nonce` does not match the one this sign-in sent.
    NonceMismatch,
    /// `Destination`, `Recipient` or `InResponseTo` do not match what this SP sent.
    WrongRecipient,
    /// The assertion ID was already consumed.
    Replayed,
    /// The token or assertion is malformed, or has a shape that is refused
    /// (several assertions, missing subject, ...).
    MalformedResponse,
    /// No email in the claims or attributes.
    MissingEmail,
    /// The IdP does not vouch for the email (`email_verified` not true).
    UnverifiedEmail,
    /// The email matches a user bound to another subject of this connection.
    SubjectMismatch,
    /// The email's domain is not one this connection may assert.
    DomainNotAllowed,
    /// `requireScimProvisioning`: the person was never provisioned.
    NotProvisioned,
    /// The person was deactivated or deleted through SCIM.
    Deprovisioned,
    /// Not provisioned, and just-in-time provisioning is off.
    JitDisabled,
    /// Several users carry this email.
    AmbiguousUser,
    /// The store could not be reached.
    Unavailable,
    /// The source sent more sign-in requests than its budget allows.
    RateLimited,
    /// The browser's address is outside the workspace's `sourceRanges.signIn`.
    SourceNotAllowed,
    /// The person is in none of the workspace's `accessGroups`.
    NotInAccessGroup,
    /// The service's own fault (a corrupt stored row, ...).
    Internal,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::UnknownConnection => "unknown_connection",
            Reason::BadRequest => "bad_request",
            Reason::IdpError => "idp_error",
            Reason::InvalidState => "invalid_state",
            Reason::IdpUnavailable => "idp_unavailable",
            Reason::TokenExchangeFailed => "token_exchange_failed",
            Reason::InvalidSignature => "invalid_signature",
            Reason::AlgorithmNotAllowed => "algorithm_not_allowed",
            Reason::UnknownKey => "unknown_key",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::NonceMismatch => "nonce_mismatch",
            Reason::WrongRecipient => "wrong_recipient",
            Reason::Replayed => "replayed",
            Reason::MalformedResponse => "malformed_response",
            Reason::MissingEmail => "missing_email",
            Reason::UnverifiedEmail => "unverified_email",
            Reason::SubjectMismatch => "subject_mismatch",
            Reason::DomainNotAllowed => "domain_not_allowed",
            Reason::NotProvisioned => "not_provisioned",
            Reason::Deprovisioned => "deprovisioned",
            Reason::JitDisabled => "jit_disabled",
            Reason::AmbiguousUser => "ambiguous_user",
            Reason::Unavailable => "unavailable",
            Reason::RateLimited => "rate_limited",
            Reason::SourceNotAllowed => "source_not_allowed",
            Reason::NotInAccessGroup => "not_in_access_group",
            Reason::Internal => "internal_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Reason::UnknownConnection => StatusCode::NOT_FOUND,
            Reason::BadRequest | Reason::IdpError | Reason::InvalidState => StatusCode::BAD_REQUEST,
            Reason::IdpUnavailable | Reason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::NotProvisioned
            | Reason::Deprovisioned
            | Reason::JitDisabled
            | Reason::DomainNotAllowed
            | Reason::SubjectMismatch
            | Reason::SourceNotAllowed
            | Reason::NotInAccessGroup
            | Reason::AmbiguousUser => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// What the person at the browser reads, and what to do.
    fn advice(self) -> &'static str {
        match self {
            Reason::NotProvisioned => {
                "Your account has not been provisioned to this workspace by your company's \
                 directory. Ask your IT administrator to assign you to the application."
            }
            Reason::Deprovisioned => {
                "Your account in this workspace has been deactivated by your company's directory. \
                 Ask your IT administrator if you think this is a mistake."
            }
            Reason::JitDisabled => {
                "This workspace only admits people its administrators have added. Ask your IT \
                 administrator for access."
            }
            Reason::DomainNotAllowed => {
                "Your email address's domain is not one this workspace signs in through this \
                 identity provider."
            }
            Reason::InvalidState => {
                "This sign-in link has expired or was already used. Start signing in again."
            }
            Reason::IdpUnavailable | Reason::Unavailable => {
                "Signing in is temporarily unavailable. Try again in a few minutes."
            }
            Reason::UnknownConnection => "There is no single sign-on configured for this address.",
            Reason::SourceNotAllowed => {
                "This workspace accepts sign-ins only from its company's network. Connect to \
                 it (office or VPN) and sign in again."
            }
            Reason::NotInAccessGroup => {
                "This workspace admits members of certain groups of your company's directory, \
                 and you are in none of them. Ask your IT administrator to add you to one."
            }
            Reason::RateLimited => {
                "Too many sign-in attempts came from your network. Wait a minute, then try again."
            }
            _ => {
                "Your identity provider's answer could not be accepted. Start signing in again; \
                 if it keeps failing, tell your IT administrator the reason code below."
            }
        }
    }
}

/// A refused sign-in: the reason, and detail for the logs and the audit entry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sign-in refused ({}): {detail}", reason.code())]
pub struct SignInError {
    pub reason: Reason,
    /// For operators: which check failed (no token or assertion content).
    pub detail: String,
}

impl SignInError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// The page the browser shows.
    pub fn page(&self) -> String {
        page(
            "Sign-in failed",
            &format!(
                "<p>{}</p><p class=\"code\">Reason: <code>{}</code></p>",
                escape_html(self.reason.advice()),
                self.reason.code()
            ),
        )
    }
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            FailureKind::Transient => {
                tracing::warn!(error = %e, "store unavailable during sign-in");
                SignInError::new(Reason::Unavailable, "the database is unreachable")
            }
            FailureKind::Conflict | FailureKind::Internal => {
                tracing::error!(error = %e, "store error during sign-in");
                SignInError::new(Reason::Internal, "internal error; see the service log")
            }
        }
    }
}

/// A minimal HTML page; `body` must already be escaped.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = escape_html(title)
    )
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = SignInError::new(Reason::NotProvisioned, "<script>").page();
        assert!(html.contains("not_provisioned"));
        assert!(!html.contains("<script>"), "detail stays out of the page");
    }
}
