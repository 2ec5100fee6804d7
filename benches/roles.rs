//! Role resolution throughput: evaluations per second of a 100-rule mapping whose
//! rules are all regex matchers, on one core. Goal: at least 1,000,000/s.
//!
//! Run with `cargo bench --bench roles`. Prints numbers; asserts nothing.

use std::{collections::BTreeMap, hint::black_box, time::Instant};

use idsync::admin::RoleMappingDoc;
use idsync::api::{RoleRule, RuleSource, Strategy};
use idsync::roles::{CompiledMapping, Principal};

fn mapping(strategy: Strategy) -> CompiledMapping {
    let roles = ["owner", "admin", "member", "viewer"];
    let rules = (0..100)
        .map(|i| RoleRule {
            role: roles[i % roles.len()].to_string(),
            source: Some(if i % 10 == 9 {
                RuleSource::Claim
            } else {
                RuleSource::Group
            }),
            claim: (i % 10 == 9).then(|| "department".to_string()),
            regex: Some(format!("^(team|dept)-{i:03}-(leads|admins|members)$")),
            ignore_case: Some(i % 3 == 0),
            ..Default::default()
        })
        .collect();
    CompiledMapping::compile(&RoleMappingDoc {
        roles: None,
        strategy: Some(strategy),
        default_role: Some("viewer".into()),
        rules,
    })
    .expect("benchmark mapping compiles")
}

fn measure(
    label: &str,
    mapping: &CompiledMapping,
    groups: &[String],
    claims: &BTreeMap<String, Vec<String>>,
) {
    let principal = Principal::new(groups, claims);
    // Warm up caches and the regex engine's lazy DFA.
    for _ in 0..100_000 {
        black_box(mapping.evaluate(black_box(principal)));
    }
    let iterations = 2_000_000u64;
    let started = Instant::now();
    for _ in 0..iterations {
        black_box(mapping.evaluate(black_box(principal)));
    }
    let elapsed = started.elapsed();
    let per_sec = iterations as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<44} {per_sec:>12.0} evaluations/s  ({:.0} ns each)",
        elapsed.as_nanos() as f64 / iterations as f64
    );
}

fn main() {
    println!("role resolution, 100 regex rules, one core");
    let groups: Vec<String> = [
        "engineering",
        "team-042-leads",
        "all-staff",
        "vpn-users",
        "dept-077-members",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut claims = BTreeMap::new();
    claims.insert(
        "department".to_string(),
        vec!["dept-019-admins".to_string()],
    );
    let no_claims = BTreeMap::new();
    let no_match: Vec<String> = ["engineering", "all-staff", "vpn-users"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    for strategy in [Strategy::FirstMatch, Strategy::HighestRole] {
        let m = mapping(strategy);
        measure(
            &format!("{strategy:?}: 5 groups (2 match) + 1 claim"),
            &m,
            &groups,
            &claims,
        );
        measure(
            &format!("{strategy:?}: 3 groups, none match"),
            &m,
            &no_match,
            &no_claims,
        );
    }
}
