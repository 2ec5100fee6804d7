//! Role resolution: what the IdP says about a person (groups, claims, attributes)
//! in, a workspace role and the rule that decided it out.
//!
//! A [`RoleMapping`](crate::api::RoleMapping) is compiled once into a
//! [`CompiledMapping`]; evaluation is pure and allocation-light, because it runs on
//! every sign-in and every SCIM group-membership change. Each value the person has
//! is tested against all rules of its source in one pass: `equals` rules through a
//! hash map, `regex` rules through one `RegexSet`, `prefix` rules in a short scan.

pub mod assignments;
mod compile;
mod evaluate;

pub use compile::{CompileError, CompiledMapping};
pub use evaluate::{DecidedBy, Principal, Resolution, TestFailure};

#[cfg(test)]
mod tests;
