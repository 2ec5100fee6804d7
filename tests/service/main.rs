//! Everything that needs the identity service (with real IdPs, SCIM clients,
//! PostgreSQL and a browser) but no Kubernetes control plane, in one test
//! binary: each file under `tests/` is a binary of its own to compile and
//! link against xmlsec, OpenSSL, sqlx and kube, so these live as modules of
//! this one. Tests that start a control plane have binaries of their own
//! (`e2e*.rs`, `helm_chart.rs`): they run one after another, not side by side.

#[path = "../support/mod.rs"]
mod support;

mod access_groups;
mod admin_api;
mod api_keys;
mod approvals;
mod cli;
mod events;
mod manifests;
mod scim;
mod scim_basic_auth;
mod scim_clients;
mod scim_durability;
mod scim_fuzz;
mod signin;
mod signin_saml;
mod signin_tokens;
mod source_ranges;
mod webhooks;
