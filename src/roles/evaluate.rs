//! Evaluating a compiled mapping against a person.

use std::collections::BTreeMap;

use super::compile::{CompiledMapping, SourceMatcher};
use crate::api::{RoleTest, Strategy};

/// What is known about a person: the groups the directory pushed (SCIM),
/// which every rule sees, and what an IdP asserted at sign-in (groups and
/// claims), which a rule that lists connections sees only from those.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub groups: &'a [String],
    pub claims: &'a BTreeMap<String, Vec<String>>,
    pub asserted_groups: &'a [String],
    /// The connection that asserted `claims` and `asserted_groups`.
    pub connection: Option<&'a str>,
}

impl<'a> Principal<'a> {
    /// Directory groups and claims of no particular connection (inline
    /// tests, `idsync roles test`, SCIM recomputes).
    pub fn new(groups: &'a [String], claims: &'a BTreeMap<String, Vec<String>>) -> Self {
        Self {
            groups,
            claims,
            asserted_groups: &[],
            connection: None,
        }
    }

    /// Adds what `connection` asserted at sign-in: its groups (the claims
    /// already given are taken as its claims too).
    pub fn through(mut self, connection: &'a str, asserted_groups: &'a [String]) -> Self {
        self.connection = Some(connection);
        self.asserted_groups = asserted_groups;
        self
    }
}

/// Where a value came from, for rules limited to connections.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// Pushed by the workspace's directory over SCIM: every rule sees it.
    Directory,
    /// Asserted at sign-in through this connection (or none named).
    Connection(Option<&'a str>),
}

/// Which part of the mapping decided the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The rule at this index (0-based, in spec order).
    Rule(usize),
    /// No rule matched; the mapping's `defaultRole` applied.
    MappingDefault,
    /// No rule matched and the mapping has no default: the caller applies the
    /// workspace's default role.
    NoMatch,
}

/// The outcome of evaluating a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution<'m> {
    pub role: Option<&'m str>,
    pub decided_by: DecidedBy,
}

impl std::fmt::Display for Resolution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.role, self.decided_by) {
            (Some(role), DecidedBy::Rule(i)) => write!(f, "{role} (rule {i})"),
            (Some(role), _) => write!(f, "{role} (defaultRole)"),
            (None, _) => write!(f, "none (no rule matched, no defaultRole)"),
        }
    }
}

/// An inline test case whose expectation did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub index: usize,
    pub name: Option<String>,
    pub expected: String,
    pub got: String,
}

impl std::fmt::Display for TestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "test {} ({name:?})", self.index)?,
            None => write!(f, "test {}", self.index)?,
        }
        write!(f, ": expected {}, got {}", self.expected, self.got)
    }
}

/// The best rule seen so far under the mapping's strategy.
struct Best<'a> {
    strategy: Strategy,
    /// (rank, rule) of the best match; lower is better for both.
    best: Option<(u32, u32)>,
    /// Where the values offered now came from.
    origin: Origin<'a>,
}

impl Best<'_> {
    #[inline]
    fn offer(&mut self, mapping: &CompiledMapping, rule: u32) {
        let compiled = &mapping.rules[rule as usize];
        let seen = compiled.connections.is_empty()
            || match self.origin {
                Origin::Directory => true,
                Origin::Connection(Some(c)) => {
                    compiled.connections.iter().any(|allowed| allowed == c)
                }
                Origin::Connection(None) => false,
            };
        if !seen {
            return;
        }
        let rank = compiled.rank;
        let candidate = match self.strategy {
            // First match: the lowest rule index wins, whatever its role.
            Strategy::FirstMatch => (0, rule),
            // Highest role: the lowest rank wins; ties go to the earlier rule.
            Strategy::HighestRole => (rank, rule),
        };
        if self.best.is_none_or(|best| candidate < best) {
            self.best = Some(candidate);
        }
    }
}

impl CompiledMapping {
    /// Resolves the role of a person.
    pub fn evaluate(&self, principal: Principal<'_>) -> Resolution<'_> {
        let mut best = Best {
            strategy: self.strategy,
            best: None,
            origin: Origin::Directory,
        };
        for group in principal.groups {
            self.groups.offer_matches(self, group, &mut best);
        }
        best.origin = Origin::Connection(principal.connection);
        for group in principal.asserted_groups {
            self.groups.offer_matches(self, group, &mut best);
        }
        if !self.claims.is_empty() {
            for (name, values) in principal.claims {
                if let Some(matcher) = self.claims.get(name) {
                    for value in values {
                        matcher.offer_matches(self, value, &mut best);
                    }
                }
            }
        }
        match best.best {
            Some((_, rule)) => Resolution {
                role: Some(&self.roles[self.rules[rule as usize].rank as usize]),
                decided_by: DecidedBy::Rule(rule as usize),
            },
            None => match self.default_rank {
                Some(rank) => Resolution {
                    role: Some(&self.roles[rank as usize]),
                    decided_by: DecidedBy::MappingDefault,
                },
                None => Resolution {
                    role: None,
                    decided_by: DecidedBy::NoMatch,
                },
            },
        }
    }

    /// Runs a mapping's inline tests; returns every failure.
    pub fn run_tests(&self, tests: &[RoleTest]) -> Vec<TestFailure> {
        tests
            .iter()
            .enumerate()
            .filter_map(|(index, test)| {
                let got = match &test.connection {
                    // The test's groups were asserted through that connection.
                    Some(c) => {
                        self.evaluate(Principal::new(&[], &test.claims).through(c, &test.groups))
                    }
                    None => self.evaluate(Principal::new(&test.groups, &test.claims)),
                };
                let got_role = got.role.unwrap_or("none");
                (got_role != test.expect).then(|| TestFailure {
                    index,
                    name: test.name.clone(),
                    expected: test.expect.clone(),
                    got: got.to_string(),
                })
            })
            .collect()
    }

    /// Rank of a role in the hierarchy (0 is highest), if it is in it.
    pub fn rank(&self, role: &str) -> Option<usize> {
        self.roles.iter().position(|r| r == role)
    }
}

impl SourceMatcher {
    #[inline]
    fn offer_matches(&self, mapping: &CompiledMapping, value: &str, best: &mut Best<'_>) {
        if let Some(rules) = self.exact.get(value) {
            rules.iter().for_each(|&r| best.offer(mapping, r));
        }
        // Lower-case only when some rule of this source ignores case.
        let lowered = self.any_ignore_case.then(|| value.to_lowercase());
        if let Some(lowered) = &lowered
            && let Some(rules) = self.exact_ignore_case.get(lowered.as_str())
        {
            rules.iter().for_each(|&r| best.offer(mapping, r));
        }
        for (prefix, ignore_case, rule) in &self.prefixes {
            let subject = match (ignore_case, &lowered) {
                (true, Some(lowered)) => lowered.as_str(),
                _ => value,
            };
            if subject.starts_with(prefix.as_str()) {
                best.offer(mapping, *rule);
            }
        }
        if let Some(set) = &self.regexes {
            // Skip the per-pattern pass when no pattern matches at all, the common case.
            if set.is_match(value) {
                for pattern in set.matches(value).iter() {
                    best.offer(mapping, self.regex_rules[pattern]);
                }
            }
        }
    }
}
