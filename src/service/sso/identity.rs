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
    pub subject: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: Vec<String>,
    /// Every string (or string-list) claim, for role rules on claims.
    pub claims: BTreeMap<String, Vec<String>>,
}

/// Maps claims to an identity, by the connection's claim mapping (OIDC defaults:
/// `email`, `given_name`, `family_name`, `groups`).
pub fn identity_from_claims(
    claims: &Map<String, Value>,
    mapping: Option<&crate::api::ClaimMapping>,
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
    // An IdP that says the address is unverified is not vouching for it.
    if claims.get("email_verified") == Some(&Value::Bool(false)) {
        return Err(SignInError::new(
            Reason::MissingEmail,
            "the IdP marks the email address unverified",
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
            .unwrap_or_default()
            .to_string(),
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
    let (name_id, attrs) = saml::attributes(assertion);
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
        subject: name_id.unwrap_or_default(),
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
        let id = identity_from_claims(&claims, None).expect("an identity");
        assert_eq!(id.email, "Alice@Acme.com");
        assert_eq!(id.groups, ["eng", "admins"]);
        assert_eq!(id.claims["dept"], ["R&D"]);
    }

    #[test]
    fn unverified_or_missing_emails_are_refused() {
        let unverified: Map<String, Value> = serde_json::from_value(
            json!({"sub": "u", "email": "a@b.com", "email_verified": false}),
        )
        .expect("an object");
        let missing: Map<String, Value> =
            serde_json::from_value(json!({"sub": "u"})).expect("an object");
        for claims in [unverified, missing] {
            assert_eq!(
                identity_from_claims(&claims, None)
                    .map(|_| ())
                    .unwrap_err()
                    .reason,
                Reason::MissingEmail
            );
        }
    }
}
