//! What a member's last sign-in asserted, kept for role recomputes.
//!
//! A RoleMapping may decide on what the IdP asserts at sign-in (its groups,
//! a `department` claim). A SCIM change recomputes roles without a sign-in;
//! with only the directory's groups it would reset a claim-derived role until
//! the person signs in again. So each sign-in stores what its connection
//! asserted, and a recompute uses the member's latest.

use std::collections::{BTreeMap, HashMap};

use super::{
    Result, Store,
    reader::{Read, rows_for_ids},
    scim::ScimTx,
};

/// Most groups, claims and values per claim kept, and the longest string:
/// an IdP's assertion is input from outside, and the store keeps it.
const MAX_GROUPS: usize = 256;
const MAX_CLAIMS: usize = 64;
const MAX_VALUES: usize = 64;
const MAX_LEN: usize = 256;

/// One connection's assertion about a member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assertion {
    pub connection: String,
    pub groups: Vec<String>,
    pub claims: BTreeMap<String, Vec<String>>,
}

impl Assertion {
    /// What is kept of an assertion: longer strings, and entries past the
    /// limits (in the IdP's order, claims by name), are left out.
    pub fn bounded(
        connection: &str,
        groups: &[String],
        claims: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let fits = |s: &&String| s.len() <= MAX_LEN;
        Self {
            connection: connection.to_string(),
            groups: groups
                .iter()
                .filter(fits)
                .take(MAX_GROUPS)
                .cloned()
                .collect(),
            claims: claims
                .iter()
                .filter(|(k, _)| k.len() <= MAX_LEN)
                .take(MAX_CLAIMS)
                .map(|(k, values)| {
                    let kept = values.iter().filter(fits).take(MAX_VALUES).cloned();
                    (k.clone(), kept.collect())
                })
                .collect(),
        }
    }
}

impl ScimTx {
    /// Keeps what `assertion.connection` asserted about a member at `now`.
    pub async fn record_assertion(
        &mut self,
        workspace: &str,
        user_id: &str,
        assertion: &Assertion,
        now: i64,
    ) -> Result<()> {
        // Lists and maps of strings always serialise.
        let groups = serde_json::to_string(&assertion.groups).expect("strings serialise");
        let claims = serde_json::to_string(&assertion.claims).expect("strings serialise");
        self.tx
            .execute(
                "INSERT INTO signin_assertions (workspace, user_id, connection, groups, claims, \
             signed_in_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (workspace, user_id, connection) DO UPDATE SET \
             groups = excluded.groups, claims = excluded.claims, \
             signed_in_at = excluded.signed_in_at",
                &[
                    workspace.into(),
                    user_id.into(),
                    assertion.connection.as_str().into(),
                    groups.as_str().into(),
                    claims.as_str().into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The latest sign-in assertion of each of `user_ids` that has one.
    pub async fn latest_assertions(
        &mut self,
        workspace: &str,
        user_ids: &[String],
    ) -> Result<HashMap<String, Assertion>> {
        latest_assertions(&mut self.tx, workspace, user_ids).await
    }
}

impl Store {
    /// A member's latest sign-in assertion, if any (`members explain`).
    pub async fn latest_assertion(
        &self,
        workspace: &str,
        user_id: &str,
    ) -> Result<Option<Assertion>> {
        let ids = [user_id.to_string()];
        Ok(latest_assertions(&mut &*self, workspace, &ids)
            .await?
            .remove(user_id))
    }

    /// The names a role mapping sees for a member's directory groups.
    pub async fn group_names_of_member(
        &self,
        workspace: &str,
        user_id: &str,
    ) -> Result<Vec<String>> {
        let ids = [user_id.to_string()];
        Ok(super::scim::group_names_of(&mut &*self, workspace, &ids)
            .await?
            .remove(user_id)
            .unwrap_or_default())
    }
}

/// The latest sign-in assertion of each of `user_ids` that has one.
async fn latest_assertions(
    reader: &mut impl Read,
    workspace: &str,
    user_ids: &[String],
) -> Result<HashMap<String, Assertion>> {
    let sql = |ids: &str| {
        format!(
            "SELECT user_id, connection, groups, claims, signed_in_at FROM signin_assertions \
                 WHERE workspace = $1 AND user_id IN ({ids})"
        )
    };
    let rows = rows_for_ids(reader, workspace.into(), user_ids, sql, |row| {
        // Written by `record_assertion`; a row it cannot read counts as none.
        let assertion = Assertion {
            connection: row.text("connection")?,
            groups: serde_json::from_str(&row.text("groups")?).unwrap_or_default(),
            claims: serde_json::from_str(&row.text("claims")?).unwrap_or_default(),
        };
        Ok((row.text("user_id")?, row.int("signed_in_at")?, assertion))
    })
    .await?;
    let mut latest: HashMap<String, (i64, Assertion)> = HashMap::new();
    for (user, at, assertion) in rows {
        match latest.get(&user) {
            Some((seen, _)) if *seen >= at => {}
            _ => {
                latest.insert(user, (at, assertion));
            }
        }
    }
    Ok(latest.into_iter().map(|(u, (_, a))| (u, a)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_assertion_is_kept_bounded() {
        let long = "x".repeat(MAX_LEN + 1);
        let groups: Vec<String> = (0..1000)
            .map(|i| format!("g{i}"))
            .chain([long.clone()])
            .collect();
        let claims: BTreeMap<String, Vec<String>> = (0..500)
            .map(|i| (format!("c{i:03}"), vec!["v".to_string(); 1000]))
            .chain([(long.clone(), vec!["v".into()])])
            .collect();
        let kept = Assertion::bounded("okta", &groups, &claims);
        assert_eq!(kept.groups.len(), MAX_GROUPS);
        assert_eq!(kept.groups[0], "g0");
        assert_eq!(kept.claims.len(), MAX_CLAIMS);
        assert!(kept.claims.values().all(|v| v.len() == MAX_VALUES));
        assert!(!kept.claims.contains_key(&long));
        let small = Assertion::bounded(
            "okta",
            &["eng".into()],
            &BTreeMap::from([("dept".into(), vec!["ds".into()])]),
        );
        assert_eq!(small.groups, vec!["eng".to_string()]);
        assert_eq!(small.claims["dept"], vec!["ds".to_string()]);
    }
}
