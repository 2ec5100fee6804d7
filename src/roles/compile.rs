//! Compiling a RoleMapping spec into matchers.

use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder};

use crate::admin::{RoleMappingDoc, desired};
use crate::api::{RoleMappingSpec, RoleRule, RuleSource, Strategy, role_mapping::DEFAULT_ROLES};

/// Compiled regexes larger than this are refused: a mapping is user input and must
/// not make the service spend unbounded memory.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// Why a mapping cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("rule {rule}: role {role:?} is not in the role hierarchy ({hierarchy})")]
    UnknownRole {
        rule: usize,
        role: String,
        hierarchy: String,
    },
    #[error("defaultRole {role:?} is not in the role hierarchy ({hierarchy})")]
    UnknownDefaultRole { role: String, hierarchy: String },
    #[error("rule {rule}: give exactly one of equals, prefix or regex")]
    MatcherCount { rule: usize },
    #[error("rule {rule}: source claim needs the claim name in `claim`")]
    MissingClaim { rule: usize },
    #[error("rule {rule}: invalid regex: {message}")]
    InvalidRegex { rule: usize, message: String },
    #[error("the role hierarchy must not be empty or repeat a role")]
    BadHierarchy,
}

/// A rule after compilation: which role it gives.
#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    /// Index into the hierarchy; lower is higher.
    pub(super) rank: u32,
    /// Connections whose sign-in assertions the rule sees (empty: any).
    pub(super) connections: Vec<String>,
}

/// All rules that test one source (the groups, or one named claim).
#[derive(Debug, Default)]
pub(super) struct SourceMatcher {
    pub(super) exact: HashMap<String, Vec<u32>>,
    /// Keys lower-cased; values are tested lower-cased.
    pub(super) exact_ignore_case: HashMap<String, Vec<u32>>,
    /// (prefix, ignore case, rule). Prefix lower-cased when ignoring case.
    pub(super) prefixes: Vec<(String, bool, u32)>,
    pub(super) regexes: Option<RegexSet>,
    /// Rule of each pattern in `regexes`, by pattern index.
    pub(super) regex_rules: Vec<u32>,
    pub(super) any_ignore_case: bool,
}

/// A mapping ready to evaluate.
#[derive(Debug)]
pub struct CompiledMapping {
    pub(super) roles: Vec<String>,
    pub(super) strategy: Strategy,
    pub(super) default_rank: Option<u32>,
    pub(super) rules: Vec<CompiledRule>,
    pub(super) groups: SourceMatcher,
    /// Claim name → matcher. Claim names compare exactly, as IdPs send them.
    pub(super) claims: HashMap<String, SourceMatcher>,
}

#[derive(Default)]
struct SourceBuilder {
    matcher: SourceMatcher,
    patterns: Vec<String>,
}

impl CompiledMapping {
    /// Compiles a RoleMapping resource's spec.
    pub fn compile_spec(spec: &RoleMappingSpec) -> Result<Self, CompileError> {
        Self::compile(&desired::role_mapping(spec))
    }

    /// Compiles a mapping, refusing anything the schema would have refused too (so a
    /// mapping that bypassed the apiserver, e.g. through `idsync admin apply`, gets
    /// the same checks).
    pub fn compile(spec: &RoleMappingDoc) -> Result<Self, CompileError> {
        let roles: Vec<String> = match &spec.roles {
            Some(roles) => roles.clone(),
            None => DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
        };
        let mut seen = std::collections::HashSet::new();
        if roles.is_empty() || !roles.iter().all(|r| seen.insert(r.as_str())) {
            return Err(CompileError::BadHierarchy);
        }
        let rank_of = |role: &str| roles.iter().position(|r| r == role).map(|p| p as u32);
        let hierarchy = || roles.join(", ");

        let default_rank = match &spec.default_role {
            Some(role) => Some(
                rank_of(role).ok_or_else(|| CompileError::UnknownDefaultRole {
                    role: role.clone(),
                    hierarchy: hierarchy(),
                })?,
            ),
            None => None,
        };

        let mut groups = SourceBuilder::default();
        let mut claims: HashMap<String, SourceBuilder> = HashMap::new();
        let mut rules = Vec::with_capacity(spec.rules.len());

        for (index, rule) in spec.rules.iter().enumerate() {
            let rank = rank_of(&rule.role).ok_or_else(|| CompileError::UnknownRole {
                rule: index,
                role: rule.role.clone(),
                hierarchy: hierarchy(),
            })?;
            let source = match rule.source.unwrap_or_default() {
                RuleSource::Group => &mut groups,
                RuleSource::Claim => {
                    let name = rule
                        .claim
                        .as_ref()
                        .ok_or(CompileError::MissingClaim { rule: index })?;
                    claims.entry(name.clone()).or_default()
                }
            };
            source.add(index, rule)?;
            rules.push(CompiledRule {
                rank,
                connections: rule.connections.clone(),
            });
        }

        let groups = groups.finish()?;
        let claims = claims
            .into_iter()
            .map(|(name, builder)| builder.finish().map(|m| (name, m)))
            .collect::<Result<_, _>>()?;

        Ok(Self {
            roles,
            strategy: spec.strategy.unwrap_or_default(),
            default_rank,
            rules,
            groups,
            claims,
        })
    }

    /// The role hierarchy, highest first.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
}

impl SourceBuilder {
    /// Adds rule `index`'s matcher (exactly one of equals, prefix, regex).
    fn add(&mut self, index: usize, rule: &RoleRule) -> Result<(), CompileError> {
        let id = index as u32;
        let ignore_case = rule.ignore_case.unwrap_or(false);
        self.matcher.any_ignore_case |= ignore_case;
        match (&rule.equals, &rule.prefix, &rule.regex) {
            (Some(value), None, None) if ignore_case => self
                .matcher
                .exact_ignore_case
                .entry(value.to_lowercase())
                .or_default()
                .push(id),
            (Some(value), None, None) => self
                .matcher
                .exact
                .entry(value.clone())
                .or_default()
                .push(id),
            (None, Some(prefix), None) => {
                let prefix = if ignore_case {
                    prefix.to_lowercase()
                } else {
                    prefix.clone()
                };
                self.matcher.prefixes.push((prefix, ignore_case, id));
            }
            (None, None, Some(pattern)) => {
                // Check each pattern alone first so an error names its rule.
                regex::RegexBuilder::new(pattern)
                    .case_insensitive(ignore_case)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| CompileError::InvalidRegex {
                        rule: index,
                        message: e.to_string(),
                    })?;
                let pattern = if ignore_case {
                    format!("(?i:{pattern})")
                } else {
                    pattern.clone()
                };
                self.patterns.push(pattern);
                self.matcher.regex_rules.push(id);
            }
            _ => return Err(CompileError::MatcherCount { rule: index }),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SourceMatcher, CompileError> {
        if !self.patterns.is_empty() {
            let set = RegexSetBuilder::new(&self.patterns)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| CompileError::InvalidRegex {
                    rule: self.matcher.regex_rules.first().copied().unwrap_or(0) as usize,
                    message: e.to_string(),
                })?;
            self.matcher.regexes = Some(set);
        }
        Ok(self.matcher)
    }
}
