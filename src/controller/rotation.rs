//! The decisions of a SCIMToken pass, as pure functions of what it observed and
//! the time: whether to issue a token, what becomes of the others, and when the
//! next pass is due. [`super::scim_token`] observes and carries them out.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::admin::TokenView;
use crate::api::ScimToken;
use crate::api::scim_token::ROTATE_ANNOTATION;

/// Overlap when the resource sets no rotation schedule (rotation by annotation only).
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// Why a new token is issued, if one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueReason {
    /// No Secret or no token in it yet.
    Initial,
    /// The Secret holds a token the service does not accept (edited, revoked).
    Restore,
    /// `rotation.every` has passed since the current token was issued.
    Scheduled,
    /// The rotate annotation has a value not acted on yet.
    Requested,
}

impl IssueReason {
    /// The Event reason and note of an issue.
    pub fn event(self) -> (&'static str, &'static str) {
        match self {
            IssueReason::Initial => ("Issued", "issued the first token"),
            IssueReason::Restore => (
                "Restored",
                "the Secret's token was not accepted by the identity service; issued a new one",
            ),
            IssueReason::Scheduled => ("Rotated", "rotated on schedule"),
            IssueReason::Requested => (
                "Rotated",
                "rotated on request (idsync.dev/rotate-requested-at)",
            ),
        }
    }
}

/// `ts + d`, saturating.
pub fn plus(ts: Timestamp, d: Duration) -> Timestamp {
    ts.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// How long a retired token stays valid.
pub fn overlap_of(t: &ScimToken) -> Duration {
    t.spec
        .rotation
        .as_ref()
        .map(|r| r.overlap.as_duration())
        .unwrap_or(DEFAULT_OVERLAP)
}

/// When the token `view` was issued, as status recorded it (or as the service
/// did, for a token status does not know yet).
fn issued_at(t: &ScimToken, view: &TokenView) -> Option<Timestamp> {
    let status = t.status.as_ref();
    match status.and_then(|s| s.token_id.as_deref()) {
        Some(id) if id == view.id => status?.issued_at.as_deref().and_then(parse_time),
        _ => Some(view.created_at),
    }
}

/// Whether to issue a token, given whether the Secret holds one and which
/// token of the service, if any, accepts it.
pub fn issue_reason(
    t: &ScimToken,
    secret_has_token: bool,
    accepted: Option<&TokenView>,
    now: Timestamp,
) -> Option<IssueReason> {
    let Some(view) = accepted else {
        return Some(if secret_has_token {
            IssueReason::Restore
        } else {
            IssueReason::Initial
        });
    };
    let due = match (&t.spec.rotation, issued_at(t, view)) {
        (Some(r), Some(issued)) => plus(issued, r.every.as_duration()) <= now,
        _ => false,
    };
    let requested = t
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATE_ANNOTATION));
    let acted_on = t
        .status
        .as_ref()
        .and_then(|s| s.last_rotation_request.as_ref());
    if due {
        Some(IssueReason::Scheduled)
    } else if requested.is_some() && requested != acted_on {
        Some(IssueReason::Requested)
    } else {
        None
    }
}

/// What becomes of one of the resource's other tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retirement {
    /// Still permanent: give it the overlap window.
    Expire { id: String, at: Timestamp },
    /// Past its expiry.
    Revoke { id: String },
}

/// What to do with the tokens of `name` other than `current`, and the one
/// that stays valid longest (status's "previous token").
pub fn retirements(
    tokens: &[TokenView],
    name: &str,
    current: &str,
    now: Timestamp,
    overlap: Duration,
) -> (Vec<Retirement>, Option<(String, Timestamp)>) {
    let mut steps = Vec::new();
    let mut previous: Option<(String, Timestamp)> = None;
    let others = tokens
        .iter()
        .filter(|o| o.name == name && o.id != current && o.revoked_at.is_none());
    for other in others {
        let expires = match other.expires_at {
            None => {
                let at = plus(now, overlap);
                steps.push(Retirement::Expire {
                    id: other.id.clone(),
                    at,
                });
                at
            }
            Some(expires) if expires <= now => {
                steps.push(Retirement::Revoke {
                    id: other.id.clone(),
                });
                continue;
            }
            Some(expires) => expires,
        };
        if previous.as_ref().is_none_or(|(_, e)| expires > *e) {
            previous = Some((other.id.clone(), expires));
        }
    }
    (steps, previous)
}

/// `ts` at second precision, as Kubernetes stores times.
pub fn to_second(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// When the current token counts as issued: now for a new token, else what
/// status recorded.
pub fn current_issued_at(
    t: &ScimToken,
    current: &TokenView,
    issued: bool,
    now: Timestamp,
) -> Timestamp {
    let known = t.status.as_ref().and_then(|s| s.token_id.as_deref()) == Some(current.id.as_str());
    let at = if issued || !known {
        current.created_at
    } else {
        issued_at(t, current).unwrap_or(now)
    };
    to_second(at)
}

/// The next scheduled rotation of a token issued at `issued_at`.
pub fn next_rotation(t: &ScimToken, issued_at: Timestamp) -> Option<Timestamp> {
    let r = t.spec.rotation.as_ref()?;
    Some(plus(issued_at, r.every.as_duration()))
}

/// How long until something is due: the next rotation, or the previous token's
/// expiry (a second after, so it is past). Never less than a second.
pub fn next_due(now: Timestamp, moments: &[Option<Timestamp>]) -> Option<Duration> {
    moments
        .iter()
        .flatten()
        .map(|m| {
            let until = m.duration_since(now);
            if until.is_negative() {
                Duration::from_secs(1)
            } else {
                until.unsigned_abs().max(Duration::from_secs(1))
            }
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ScimTokenSpec, ScimTokenStatus};

    const DAY: Duration = Duration::from_secs(86_400);

    fn token(rotation: bool, status: Option<ScimTokenStatus>) -> ScimToken {
        let mut spec = serde_json::json!({"workspaceRef": {"name": "acme"}});
        if rotation {
            spec["rotation"] = serde_json::json!({"every": "90d", "overlap": "24h"});
        }
        let spec: ScimTokenSpec = serde_json::from_value(spec).unwrap();
        let mut t = ScimToken::new("okta", spec);
        t.status = status;
        t
    }

    fn view(id: &str, created: Timestamp, expires: Option<Timestamp>) -> TokenView {
        TokenView {
            id: id.into(),
            workspace: "acme".into(),
            name: "ns.okta".into(),
            authentication: Default::default(),
            sha256: String::new(),
            created_at: created,
            expires_at: expires,
            revoked_at: None,
            last_used_at: None,
            valid: true,
            result: None,
            scim_base_url: String::new(),
        }
    }

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_missing_or_rejected_token_is_issued_again() {
        let t = token(true, None);
        assert_eq!(
            issue_reason(&t, false, None, now()),
            Some(IssueReason::Initial)
        );
        assert_eq!(
            issue_reason(&t, true, None, now()),
            Some(IssueReason::Restore)
        );
    }

    #[test]
    fn a_token_rotates_when_its_period_has_passed_and_not_before() {
        let t = token(true, None);
        let young = view(
            "a",
            plus(now(), Duration::ZERO) - SignedDuration::from_hours(24),
            None,
        );
        assert_eq!(issue_reason(&t, true, Some(&young), now()), None);
        let old = view("a", now() - SignedDuration::from_hours(24 * 91), None);
        assert_eq!(
            issue_reason(&t, true, Some(&old), now()),
            Some(IssueReason::Scheduled)
        );
        let unscheduled = token(false, None);
        assert_eq!(issue_reason(&unscheduled, true, Some(&old), now()), None);
    }

    #[test]
    fn a_rotation_request_is_acted_on_once() {
        let mut t = token(false, None);
        t.metadata.annotations = Some([(ROTATE_ANNOTATION.to_string(), "1".to_string())].into());
        let current = view("a", now(), None);
        assert_eq!(
            issue_reason(&t, true, Some(&current), now()),
            Some(IssueReason::Requested)
        );
        t.status = Some(ScimTokenStatus {
            last_rotation_request: Some("1".into()),
            ..Default::default()
        });
        assert_eq!(issue_reason(&t, true, Some(&current), now()), None);
    }

    #[test]
    fn other_tokens_get_the_overlap_then_are_revoked() {
        let permanent = view("old", now(), None);
        let lapsed = view("older", now(), Some(now() - SignedDuration::from_secs(1)));
        let current = view("new", now(), None);
        let tokens = [permanent, lapsed, current];
        let (steps, previous) = retirements(&tokens, "ns.okta", "new", now(), DAY);
        let until = plus(now(), DAY);
        assert_eq!(
            steps,
            vec![
                Retirement::Expire {
                    id: "old".into(),
                    at: until
                },
                Retirement::Revoke { id: "older".into() },
            ]
        );
        assert_eq!(previous, Some(("old".to_string(), until)));
    }

    #[test]
    fn the_next_pass_comes_when_something_is_due() {
        let soon = plus(now(), Duration::from_secs(90));
        let later = plus(now(), DAY);
        assert_eq!(
            next_due(now(), &[Some(later), Some(soon)]),
            Some(Duration::from_secs(90))
        );
        let overdue = now() - SignedDuration::from_secs(5);
        assert_eq!(
            next_due(now(), &[Some(overdue)]),
            Some(Duration::from_secs(1))
        );
        assert_eq!(next_due(now(), &[None]), None);
    }
}
