//! Reading Kubernetes manifests (multi-document YAML) into idsync's types, for
//! `idsync admin apply`, `idsync roles test` and the examples' tests.

use std::{
    fs,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::de::DeserializeOwned;

use crate::api::{IdentityService, RoleMapping, ScimToken, SsoConnection, Workspace};

/// One document of a manifest file. Manifests are read once per command, so the
/// size difference between variants costs nothing worth boxing for.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    IdentityService(IdentityService),
    Workspace(Workspace),
    SsoConnection(SsoConnection),
    ScimToken(ScimToken),
    RoleMapping(RoleMapping),
    Secret(Secret),
    ConfigMap(ConfigMap),
    /// A kind idsync does not read; kept so callers can say what they skipped.
    Other {
        api_version: String,
        kind: String,
        name: String,
    },
}

impl Manifest {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, name) = match self {
            Manifest::IdentityService(o) => ("IdentityService", o.metadata.name.as_deref()),
            Manifest::Workspace(o) => ("Workspace", o.metadata.name.as_deref()),
            Manifest::SsoConnection(o) => ("SSOConnection", o.metadata.name.as_deref()),
            Manifest::ScimToken(o) => ("SCIMToken", o.metadata.name.as_deref()),
            Manifest::RoleMapping(o) => ("RoleMapping", o.metadata.name.as_deref()),
            Manifest::Secret(o) => ("Secret", o.metadata.name.as_deref()),
            Manifest::ConfigMap(o) => ("ConfigMap", o.metadata.name.as_deref()),
            Manifest::Other { kind, name, .. } => (kind.as_str(), Some(name.as_str())),
        };
        format!("{kind}/{}", name.unwrap_or("<unnamed>"))
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn typed<T: DeserializeOwned>(value: serde_json::Value, source: &str) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::Invalid {
        origin: source.to_string(),
        message: format!("at {}: {}", e.path(), e.inner()),
    })
}

/// Parses every document of a YAML stream. `source` names it in errors.
pub fn parse_str(yaml: &str, source: &str) -> Result<Vec<Manifest>, ManifestError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ManifestError::Invalid {
            origin: source.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let kind = doc
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let name = doc
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let here = format!("{source} (document {}, {kind}/{name})", index + 1);
        if kind.is_empty() || api_version.is_empty() {
            return Err(ManifestError::Invalid {
                origin: here,
                message: "apiVersion and kind are required".into(),
            });
        }
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let manifest = match (group, kind.as_str()) {
            ("idsync.dev", _) if api_version != "idsync.dev/v1alpha1" => {
                return Err(ManifestError::Invalid {
                    origin: here,
                    message: format!(
                        "unsupported apiVersion {api_version:?}: use idsync.dev/v1alpha1"
                    ),
                });
            }
            ("idsync.dev", "IdentityService") => Manifest::IdentityService(typed(doc, &here)?),
            ("idsync.dev", "Workspace") => Manifest::Workspace(typed(doc, &here)?),
            ("idsync.dev", "SSOConnection") => Manifest::SsoConnection(typed(doc, &here)?),
            ("idsync.dev", "SCIMToken") => Manifest::ScimToken(typed(doc, &here)?),
            ("idsync.dev", "RoleMapping") => Manifest::RoleMapping(typed(doc, &here)?),
            ("idsync.dev", other) => {
                return Err(ManifestError::Invalid {
                    origin: here,
                    message: format!("unknown idsync.dev kind {other:?}"),
                });
            }
            ("", "Secret") => Manifest::Secret(typed(doc, &here)?),
            ("", "ConfigMap") => Manifest::ConfigMap(typed(doc, &here)?),
            _ => Manifest::Other {
                api_version,
                kind,
                name,
            },
        };
        out.push(manifest);
    }
    Ok(out)
}

/// Reads a file, or every `.yaml`/`.yml` file of a directory (sorted, not recursive).
pub fn load_path(path: &Path) -> Result<Vec<(PathBuf, Manifest)>, ManifestError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|e| ManifestError::Io(path.to_path_buf(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).map_err(|e| ManifestError::Io(file.clone(), e))?;
        for m in parse_str(&text, &file.display().to_string())? {
            out.push((file.clone(), m));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let err = parse_str(
            "apiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {name: a}\nspec:\n  serviceRef: {name: s}\n  domian: [x.com]\n",
            "test.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.yaml (document 1, Workspace/a)"), "{err}");
        assert!(err.contains("domian"), "{err}");
    }

    #[test]
    fn reads_several_documents_and_skips_other_kinds() {
        let docs = parse_str(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: acme}\n---\napiVersion: idsync.dev/v1alpha1\nkind: Workspace\nmetadata: {name: acme}\nspec: {serviceRef: {name: idsync}}\n",
            "x",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].describe(), "Namespace/acme");
        assert!(matches!(docs[1], Manifest::Workspace(_)));
    }
}
