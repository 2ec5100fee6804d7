use std::collections::BTreeMap;

use super::*;
use crate::api::{RoleMappingSpec, RoleRule, RoleTest, RuleSource, Strategy};

fn rule(role: &str, equals: &str) -> RoleRule {
    RoleRule {
        role: role.into(),
        equals: Some(equals.into()),
        ..Default::default()
    }
}

fn spec(strategy: Strategy, rules: Vec<RoleRule>) -> RoleMappingSpec {
    RoleMappingSpec {
        workspace_ref: Default::default(),
        roles: None,
        strategy: Some(strategy),
        default_role: None,
        rules,
        tests: vec![],
        deletion_policy: None,
    }
}

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn resolve(mapping: &CompiledMapping, gs: &[&str]) -> (Option<String>, DecidedBy) {
    let claims = BTreeMap::new();
    let g = groups(gs);
    let r = mapping.evaluate(Principal::new(&g, &claims));
    (r.role.map(str::to_string), r.decided_by)
}

#[test]
fn first_match_takes_the_earliest_rule_even_if_lower() {
    let m = CompiledMapping::compile_spec(&spec(
        Strategy::FirstMatch,
        vec![
            rule("member", "engineering"),
            rule("admin", "octomil-admins"),
        ],
    ))
    .unwrap();
    assert_eq!(
        resolve(&m, &["octomil-admins", "engineering"]),
        (Some("member".into()), DecidedBy::Rule(0))
    );
    assert_eq!(
        resolve(&m, &["octomil-admins"]),
        (Some("admin".into()), DecidedBy::Rule(1))
    );
}

#[test]
fn highest_role_wins_over_rule_order() {
    let m = CompiledMapping::compile_spec(&spec(
        Strategy::HighestRole,
        vec![
            rule("member", "Omniflow-Users"),
            rule("admin", "Omniflow-Admins"),
        ],
    ))
    .unwrap();
    assert_eq!(
        resolve(&m, &["Omniflow-Users", "Omniflow-Admins"]),
        (Some("admin".into()), DecidedBy::Rule(1))
    );
}

#[test]
fn no_match_falls_back_to_mapping_default_then_to_none() {
    let mut s = spec(Strategy::FirstMatch, vec![rule("admin", "admins")]);
    let m = CompiledMapping::compile_spec(&s).unwrap();
    assert_eq!(resolve(&m, &["other"]), (None, DecidedBy::NoMatch));
    s.default_role = Some("viewer".into());
    let m = CompiledMapping::compile_spec(&s).unwrap();
    assert_eq!(
        resolve(&m, &["other"]),
        (Some("viewer".into()), DecidedBy::MappingDefault)
    );
}

#[test]
fn equals_is_case_sensitive_unless_told_otherwise() {
    let mut r = rule("admin", "Octomil-Admins");
    let m = CompiledMapping::compile_spec(&spec(Strategy::FirstMatch, vec![r.clone()])).unwrap();
    assert_eq!(resolve(&m, &["octomil-admins"]).0, None);
    r.ignore_case = Some(true);
    let m = CompiledMapping::compile_spec(&spec(Strategy::FirstMatch, vec![r])).unwrap();
    assert_eq!(resolve(&m, &["OCTOMIL-ADMINS"]).0.as_deref(), Some("admin"));
}

#[test]
fn prefix_and_regex_matchers() {
    let m = CompiledMapping::compile_spec(&spec(
        Strategy::HighestRole,
        vec![
            RoleRule {
                role: "viewer".into(),
                prefix: Some("contractors-".into()),
                ..Default::default()
            },
            RoleRule {
                role: "admin".into(),
                regex: Some("^team-[a-z]+-leads$".into()),
                ..Default::default()
            },
        ],
    ))
    .unwrap();
    assert_eq!(
        resolve(&m, &["contractors-emea"]).0.as_deref(),
        Some("viewer")
    );
    assert_eq!(
        resolve(&m, &["team-data-leads"]).0.as_deref(),
        Some("admin")
    );
    assert_eq!(resolve(&m, &["team-data-leads-x"]).0, None);
}

#[test]
fn claims_match_by_name() {
    let m = CompiledMapping::compile_spec(&spec(
        Strategy::FirstMatch,
        vec![RoleRule {
            role: "member".into(),
            source: Some(RuleSource::Claim),
            claim: Some("department".into()),
            equals: Some("data-science".into()),
            ..Default::default()
        }],
    ))
    .unwrap();
    let mut claims = BTreeMap::new();
    claims.insert("department".to_string(), vec!["data-science".to_string()]);
    let r = m.evaluate(Principal::new(&[], &claims));
    assert_eq!(r.role, Some("member"));
    // A group with the same value is not the claim.
    assert_eq!(resolve(&m, &["data-science"]).0, None);
}

#[test]
fn declared_hierarchy_orders_highest_role() {
    let mut s = spec(
        Strategy::HighestRole,
        vec![rule("billing", "finance"), rule("support", "helpdesk")],
    );
    s.roles = Some(vec!["support".into(), "billing".into()]);
    let m = CompiledMapping::compile_spec(&s).unwrap();
    assert_eq!(
        resolve(&m, &["finance", "helpdesk"]).0.as_deref(),
        Some("support")
    );
}

#[test]
fn compile_errors_name_the_rule() {
    let err = CompiledMapping::compile_spec(&spec(
        Strategy::FirstMatch,
        vec![rule("admin", "a"), rule("superuser", "b")],
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule 1: role \"superuser\" is not in the role hierarchy (owner, admin, member, viewer)"
    );
    let err = CompiledMapping::compile_spec(&spec(
        Strategy::FirstMatch,
        vec![RoleRule {
            role: "admin".into(),
            regex: Some("(unclosed".into()),
            ..Default::default()
        }],
    ))
    .unwrap_err();
    assert!(
        matches!(err, CompileError::InvalidRegex { rule: 0, .. }),
        "{err}"
    );
}

#[test]
fn inline_tests_report_each_failure() {
    let m =
        CompiledMapping::compile_spec(&spec(Strategy::FirstMatch, vec![rule("admin", "admins")]))
            .unwrap();
    let tests = vec![
        RoleTest {
            name: Some("admins are admins".into()),
            groups: groups(&["admins"]),
            expect: "admin".into(),
            ..Default::default()
        },
        RoleTest {
            name: Some("others get nothing".into()),
            groups: groups(&["x"]),
            expect: "member".into(),
            ..Default::default()
        },
    ];
    let failures = m.run_tests(&tests);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].to_string(),
        "test 1 (\"others get nothing\"): expected member, got none (no rule matched, no defaultRole)"
    );
}

#[test]
fn a_rule_limited_to_connections_sees_only_their_assertions_and_the_directory() {
    let mut limited = rule("admin", "admins");
    limited.connections = vec!["okta".into()];
    let m = CompiledMapping::compile_spec(&spec(Strategy::FirstMatch, vec![limited])).unwrap();
    let admins = groups(&["admins"]);
    let none = BTreeMap::new();
    let via = |connection: &str| {
        m.evaluate(Principal::new(&[], &none).through(connection, &admins))
            .role
            .map(str::to_string)
    };
    assert_eq!(via("okta").as_deref(), Some("admin"));
    assert_eq!(
        via("partner-idp"),
        None,
        "a second IdP cannot assert the group"
    );
    // The directory's own groups count for every rule.
    assert_eq!(
        m.evaluate(Principal::new(&admins, &none)).role,
        Some("admin")
    );
}
