//! idsync: GitOps for enterprise identity.
//!
//! One crate, one binary: the Kubernetes operator (`controller`), the identity
//! service it syncs to (`service`), and the command-line tools around them.

pub mod admin;
pub mod api;
pub mod cli;
pub mod controller;
pub mod crdgen;
pub mod fingerprint;
pub mod manifest;
pub mod outbound;
pub mod prom;
pub mod roles;
pub mod saml_metadata;
pub mod saml_signing;
pub mod scim;
pub mod service;
pub mod signal;
pub mod token;
pub mod webhook_signing;

#[cfg(test)]
mod dependency_direction;
