//! Who the IdP says signed in: OIDC claims or SAML attributes mapped to one
//! `Identity` by the connection's claim or attribute mapping.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    error::{Reason, SignInError},
    policy, saml,
};

/// Who the IdP says signed in, after claim or attribute mapping.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The IdP's stable id for the person, which a user is bound to: the OIDC
    /// `sub` (the connection fixes the issuer), or a SAML NameID of the
    /// persistent format. `None` when the IdP gives no stable id (an
    /// email-format NameID), and then the email alone matches.
    pub subject: Option<String>,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: Vec<String>,
    /// Every string (or string-list) claim, for role rules on claims.
    pub claims: BTreeMap<String, Vec<String>>,
}

/// Whether the IdP vouches for the email: `email_verified` is JSON `true`, or
/// the string "true" that some IdPs send.
fn email_verified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Maps claims to an identity, by the connection's claim mapping (OIDC defaults:
/// `email`, `given_name`, `family_name`, `groups`). The email must be verified
/// by the IdP (`email_verified`), unless the connection says to trust
/// unverified ones: an account at the IdP whose unverified email is someone
/// else's would otherwise sign in as them (the "nOAuth" pattern).
pub fn identity_from_claims(
    claims: &Map<String, Value>,
    mapping: Option<&crate::api::ClaimMapping>,
    trust_unverified_email: bool,
) -> Result<Identity, SignInError> {
    let m = mapping.cloned().unwrap_or_default();
    let text = |key: Option<&String>, default: &str| {
        claims
            .get(key.map(String::as_str).unwrap_or(default))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let email = text(m.email.as_ref(), "email")
        .filter(|e| policy::email_domain(e).is_some())
        .ok_or_else(|| {
            SignInError::new(
                Reason::MissingEmail,
                "the ID token carries no email address",
            )
        })?;
    if !trust_unverified_email && !email_verified(claims) {
        return Err(SignInError::new(
            Reason::UnverifiedEmail,
            "the ID token's email_verified is not true (missing or false); the IdP does not \
             vouch for the address",
        ));
    }
    let groups_key = m.groups.as_deref().unwrap_or("groups");
    let groups = string_list(claims.get(groups_key));
    let mut all = BTreeMap::new();
    for (k, v) in claims {
        let values = string_list(Some(v));
        if !values.is_empty() {
            all.insert(k.clone(), values);
        }
    }
    Ok(Identity {
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        email,
        given_name: text(m.given_name.as_ref(), "given_name"),
        family_name: text(m.family_name.as_ref(), "family_name"),
        groups,
        claims: all,
    })
}

/// Common attribute names IdPs use, tried in order when the mapping names none.
const SAML_EMAIL: &[&str] = &[
    "email",
    "mail",
    "emailAddress",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
];
const SAML_GIVEN: &[&str] = &[
    "givenName",
    "firstName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    "urn:oid:2.5.4.42",
];
const SAML_FAMILY: &[&str] = &[
    "sn",
    "surname",
    "lastName",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    "urn:oid:2.5.4.4",
];
const SAML_GROUPS: &[&str] = &[
    "groups",
    "memberOf",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
];

/// Maps a verified assertion to an identity, by the connection's attribute
/// mapping or the usual attribute names (email falls back to an email NameID).
pub fn identity_from_assertion(
    assertion: &samael::schema::Assertion,
    mapping: Option<&crate::api::ClaimMapping>,
) -> Result<Identity, SignInError> {
    let (name_id, persistent, attrs) = saml::attributes(assertion);
    let pick = |configured: Option<&String>, defaults: &[&str]| -> Vec<String> {
        match configured {
            Some(name) => attrs.get(name).cloned().unwrap_or_default(),
            None => defaults
                .iter()
                .find_map(|n| attrs.get(*n).filter(|v| !v.is_empty()).cloned())
                .unwrap_or_default(),
        }
    };
    let m = mapping.cloned().unwrap_or_default();
    let email = pick(m.email.as_ref(), SAML_EMAIL)
        .into_iter()
        .next()
        .or_else(|| {
            name_id
                .clone()
                .filter(|n| m.email.is_none() && policy::email_domain(n).is_some())
        })
        .filter(|e| policy::email_domain(e).is_some())
        .ok_or_else(|| {
            SignInError::new(
                Reason::MissingEmail,
                "the assertion carries no email address",
            )
        })?;
    let claims = attrs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Identity {
        subject: name_id.filter(|_| persistent),
        email,
        given_name: pick(m.given_name.as_ref(), SAML_GIVEN).into_iter().next(),
        family_name: pick(m.family_name.as_ref(), SAML_FAMILY).into_iter().next(),
        groups: pick(m.groups.as_ref(), SAML_GROUPS),
        claims,
    })
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::Bool(b)) => vec![b.to_string()],
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_map_to_an_identity_with_groups() {
        let claims: Map<String, Value> = serde_json::from_value(json!({
            "sub": "u1", "email": "Alice@Acme.com", "given_name": "Alice",
            "groups": ["eng", "admins"], "dept": "R&D",
        }))
        .expect("an object");
        let id = identity_from_claims(&claims, None, true).expect("an identity");
        assert_eq!(id.email, "Alice@Acme.com");
        assert_eq!(id.groups, ["eng", "admins"]);
        assert_eq!(id.claims["dept"], ["R&D"]);
    }

    #[test]
    fn unverified_or_missing_emails_are_refused() {
        let claims =
            |v: Value| -> Map<String, Value> { serde_json::from_value(v).expect("an object") };
        let reason = |c: &Map<String, Value>, trust: bool| {
            identity_from_claims(c, None, trust)
                .map(|_| ())
                .unwrap_err()
                .reason
        };
        for unverified in [
            json!({"sub": "u", "email": "a@b.com", "email_verified": false}),
            json!({"sub": "u", "email": "a@b.com"}),
            json!({"sub": "u", "email": "a@b.com", "email_verified": "false"}),
            json!({"sub": "u", "email": "a@b.com", "email_verified": 1}),
        ] {
            assert_eq!(reason(&claims(unverified), false), Reason::UnverifiedEmail);
        }
        for verified in [
            json!({"sub": "u", "email": "a@b.com", "email_verified": true}),
            json!({"sub": "u", "email": "a@b.com", "email_verified": "TRUE"}),
        ] {
            assert!(identity_from_claims(&claims(verified), None, false).is_ok());
        }
        // Trusting unverified emails is the connection's explicit choice.
        assert!(
            identity_from_claims(&claims(json!({"sub": "u", "email": "a@b.com"})), None, true)
                .is_ok()
        );
        assert_eq!(
            reason(&claims(json!({"sub": "u"})), true),
            Reason::MissingEmail
        );
    }
}
