//! The generated CRDs and the examples: what a platform team copies must be current
//! and valid.

use crate::support;

use std::collections::BTreeSet;

use idsync::manifest::{self, Manifest};
use idsync::roles::CompiledMapping;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use support::repo_root;

/// Asserts `dir` holds exactly the files `render` makes of each CRD, byte for byte.
fn assert_generated(
    dir: &std::path::Path,
    shown: &str,
    command: &str,
    render: impl Fn(&CustomResourceDefinition) -> String,
) {
    let mut expected = BTreeSet::new();
    for crd in idsync::crdgen::all() {
        let name = idsync::crdgen::file_name(&crd);
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            have == render(&crd),
            "{shown}{name} is stale or missing: run `{command}` and commit the result"
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected,
        "{shown} holds files the code does not generate"
    );
}

#[test]
fn crds_directory_matches_the_code() {
    assert_generated(
        &repo_root().join("crds"),
        "crds/",
        "cargo run -- crd --out crds/",
        |crd| idsync::crdgen::render(crd).unwrap(),
    );
}

#[test]
fn chart_crds_match_the_code_and_crds_directory() {
    let dir = repo_root()
        .join("charts/idsync")
        .join(idsync::crdgen::CHART_CRD_DIR);
    assert_generated(
        &dir,
        "charts/idsync/templates/crds/",
        "cargo run -- crd --chart charts/idsync",
        |crd| idsync::crdgen::render_chart_template(crd).unwrap(),
    );
    for crd in idsync::crdgen::all() {
        let name = idsync::crdgen::file_name(&crd);
        let have = std::fs::read_to_string(dir.join(&name)).unwrap();
        // The same CRD as crds/ (what `kubectl apply -f crds/` installs), only
        // wrapped in the `crds.install` condition and annotated to be kept.
        let body = have
            .split_once("---\n")
            .and_then(|(_, rest)| rest.strip_suffix("{{- end }}\n"))
            .expect("a `{{- if .Values.crds.install }}` ... `{{- end }}` template");
        assert!(
            !body.contains("{{"),
            "{name} contains `{{{{`, which Helm would read as a template action"
        );
        let mut chart_crd: serde_json::Value = serde_saphyr::from_str(body).unwrap();
        let annotations = chart_crd["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations");
        assert_eq!(
            annotations.remove("helm.sh/resource-policy"),
            Some("keep".into()),
            "{name}: `helm uninstall` would delete the CRD and every resource of its kind"
        );
        if annotations.is_empty() {
            chart_crd["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
        let plain: serde_json::Value = serde_saphyr::from_str(
            std::fs::read_to_string(repo_root().join("crds").join(&name))
                .unwrap()
                .split_once("---\n")
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            chart_crd, plain,
            "{name}: the chart's CRD differs from crds/"
        );
    }
}

fn examples() -> Vec<Manifest> {
    manifest::load_path(&repo_root().join("examples"))
        .expect("every example parses into idsync's types")
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn examples_cover_the_three_identity_providers() {
    let all = examples();
    let count = |f: fn(&Manifest) -> bool| all.iter().filter(|m| f(m)).count();
    assert_eq!(count(|m| matches!(m, Manifest::Workspace(_))), 4);
    assert_eq!(count(|m| matches!(m, Manifest::SsoConnection(_))), 4);
    assert_eq!(count(|m| matches!(m, Manifest::ScimToken(_))), 4);
    assert_eq!(count(|m| matches!(m, Manifest::RoleMapping(_))), 3);
    let issuers: Vec<String> = all
        .iter()
        .filter_map(|m| match m {
            Manifest::SsoConnection(c) => Some(
                c.spec
                    .oidc
                    .as_ref()
                    .map(|o| o.issuer.clone())
                    .or_else(|| c.spec.saml.as_ref().and_then(|s| s.entity_id.clone()))
                    .unwrap_or_default(),
            ),
            _ => None,
        })
        .collect();
    assert!(
        issuers.iter().any(|i| i.contains("okta.com")),
        "{issuers:?}"
    );
    assert!(
        issuers.iter().any(|i| i.contains("sts.windows.net")),
        "{issuers:?}"
    );
    assert!(
        issuers.iter().any(|i| i == "https://accounts.google.com"),
        "{issuers:?}"
    );
}

/// The Tecton example declares Tecton's assignment scheme: the values its
/// guide lists are accepted, anything else is not.
#[test]
fn the_tecton_example_declares_tectons_assignments() {
    let policy = examples()
        .into_iter()
        .find_map(|m| match m {
            Manifest::Workspace(w) if w.metadata.name.as_deref() == Some("tecton") => {
                w.spec.policy.and_then(|p| p.role_assignments)
            }
            _ => None,
        })
        .expect("the tecton Workspace declares role assignments");
    let roles = |entries: Value| {
        let mut doc = serde_json::Map::new();
        doc.insert("roles".into(), entries);
        policy.check(&mut doc)
    };
    roles(json!([
        {"type": "account_type", "value": "admin"},
        {"type": "all_workspaces", "value": "viewer"},
        {"type": "workspace_prod", "value": "operator"},
        {"type": "secret_scope_payments", "value": "secret_scope_writer"},
    ]))
    .expect("the guide's values");
    assert!(roles(json!([{"type": "account_type", "value": "owner"}])).is_err());
    use idsync::api::AssignmentHolder::{Groups, ServiceAccounts, Users};
    assert!(!policy.managed_on(Groups));
    assert!(policy.managed_on(Users) && policy.managed_on(ServiceAccounts));
}

/// All examples are applied together (`scripts/run-local.sh`, the e2e test):
/// two objects of one kind and name would overwrite each other.
#[test]
fn no_two_examples_share_a_kind_and_name() {
    let mut seen = BTreeSet::new();
    for m in examples() {
        let what = m.describe();
        assert!(seen.insert(what.clone()), "{what} is defined twice");
    }
}

#[test]
fn every_example_reference_resolves() {
    let all = examples();
    let names =
        |f: fn(&Manifest) -> Option<String>| all.iter().filter_map(f).collect::<BTreeSet<_>>();
    let services = names(|m| match m {
        Manifest::IdentityService(s) => s.metadata.name.clone(),
        _ => None,
    });
    let workspaces = names(|m| match m {
        Manifest::Workspace(w) => w.metadata.name.clone(),
        _ => None,
    });
    let secrets = names(|m| match m {
        Manifest::Secret(s) => s.metadata.name.clone(),
        _ => None,
    });
    for m in &all {
        let (what, target, pool) = match m {
            Manifest::Workspace(w) => (m.describe(), w.spec.service_ref.name.clone(), &services),
            Manifest::SsoConnection(c) => {
                (m.describe(), c.spec.workspace_ref.name.clone(), &workspaces)
            }
            Manifest::ScimToken(t) => {
                (m.describe(), t.spec.workspace_ref.name.clone(), &workspaces)
            }
            Manifest::RoleMapping(r) => {
                (m.describe(), r.spec.workspace_ref.name.clone(), &workspaces)
            }
            Manifest::IdentityService(s) => (
                m.describe(),
                s.spec.admin_token_secret_ref.name.clone(),
                &secrets,
            ),
            _ => continue,
        };
        assert!(
            pool.contains(&target),
            "{what} references {target:?}, which no example defines"
        );
        if let Manifest::SsoConnection(c) = m
            && let Some(oidc) = &c.spec.oidc
        {
            assert!(
                secrets.contains(&oidc.client_secret_ref.name),
                "{what}: client secret Secret missing"
            );
        }
    }
}

#[test]
fn example_role_mappings_compile_and_their_tests_pass() {
    let mut mappings = 0;
    for m in examples() {
        if let Manifest::RoleMapping(r) = &m {
            let compiled = CompiledMapping::compile_spec(&r.spec)
                .unwrap_or_else(|e| panic!("{}: {e}", m.describe()));
            assert!(
                !r.spec.tests.is_empty(),
                "{} has no inline tests",
                m.describe()
            );
            let failures = compiled.run_tests(&r.spec.tests);
            assert!(failures.is_empty(), "{}: {failures:?}", m.describe());
            mappings += 1;
        }
    }
    assert_eq!(mappings, 3);
}

#[test]
fn examples_round_trip_without_gaining_fields() {
    // What a GitOps tool applies is what the types serialize back: no defaults are
    // filled in, so Argo CD and Flux never see a diff the user did not write.
    for (file, m) in manifest::load_path(&repo_root().join("examples")).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        let originals: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        let (spec, name) = match &m {
            Manifest::Workspace(o) => (
                serde_json::to_value(&o.spec).unwrap(),
                o.metadata.name.clone(),
            ),
            Manifest::SsoConnection(o) => (
                serde_json::to_value(&o.spec).unwrap(),
                o.metadata.name.clone(),
            ),
            Manifest::ScimToken(o) => (
                serde_json::to_value(&o.spec).unwrap(),
                o.metadata.name.clone(),
            ),
            Manifest::RoleMapping(o) => (
                serde_json::to_value(&o.spec).unwrap(),
                o.metadata.name.clone(),
            ),
            Manifest::IdentityService(o) => (
                serde_json::to_value(&o.spec).unwrap(),
                o.metadata.name.clone(),
            ),
            _ => continue,
        };
        let original = originals
            .iter()
            .find(|d| {
                d.pointer("/metadata/name").and_then(|n| n.as_str()) == name.as_deref()
                    && d["kind"] != "Secret"
            })
            .unwrap();
        assert_eq!(
            &spec,
            &original["spec"],
            "{} changes when re-serialized",
            m.describe()
        );
    }
}
