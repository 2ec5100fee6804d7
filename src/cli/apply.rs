//! `idsync admin apply`: GitOps without a cluster.
//!
//! Reads the manifests the operator reads and syncs them to the identity service
//! in dependency order. References to Secrets and ConfigMaps resolve from the same
//! files, or from `--secret NAMESPACE/NAME/KEY=SOURCE` (SOURCE is `file:PATH` or
//! `env:VAR`), since there is no Kubernetes to read them from.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use anyhow::{Context, anyhow, bail};
use clap::Args;

use super::admin::{AdminArgs, issue_token};
use crate::admin::{AdminClient, PutResult, desired};
use crate::api::{MetadataSourceKind, Workspace};
use crate::manifest::{self, Manifest};
use crate::roles::CompiledMapping;
use crate::service::store::ObjectKind;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file or directory of `.yaml` files; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,

    /// A Secret key's value: `NAME/KEY=file:PATH` or `NAME/KEY=env:VAR` (Secrets in
    /// the default namespace), or `NAMESPACE/NAME/KEY=…`.
    #[arg(long = "secret", value_name = "REF=SOURCE")]
    pub secrets: Vec<String>,

    /// Directory to write issued SCIM tokens into (`<namespace>.<name>.token`, mode
    /// 0600) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub token_dir: Option<PathBuf>,

    /// Show what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Who owns the workspace ids this applies: they are claimed as
    /// `admin/<OWNER>`, and a workspace another owner (a Workspace resource, or
    /// another `--owner`) claimed is refused.
    #[arg(long, default_value = "cli", value_name = "OWNER")]
    pub owner: String,
}

/// (namespace, name, key) → value
type Values = HashMap<(String, String, String), String>;

fn namespace_of(meta: &kube::api::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

fn secret_flag(flag: &str) -> anyhow::Result<((String, String, String), String)> {
    let (reference, source) = flag.split_once('=').with_context(|| {
        format!("--secret {flag:?}: expected NAME/KEY=file:PATH or NAME/KEY=env:VAR")
    })?;
    let parts: Vec<&str> = reference.split('/').collect();
    let key = match parts.as_slice() {
        [name, key] => ("default".to_string(), name.to_string(), key.to_string()),
        [ns, name, key] => (ns.to_string(), name.to_string(), key.to_string()),
        _ => bail!("--secret {reference:?}: expected NAME/KEY or NAMESPACE/NAME/KEY"),
    };
    let value = if let Some(path) = source.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .with_context(|| format!("--secret {reference}: reading {path}"))?
            .trim_end_matches('\n')
            .to_string()
    } else if let Some(var) = source.strip_prefix("env:") {
        std::env::var(var).with_context(|| {
            format!("--secret {reference}: environment variable {var} is not set")
        })?
    } else {
        bail!("--secret {reference}: the source must start with file: or env:");
    };
    Ok((key, value))
}

fn collect_values(manifests: &[Manifest], flags: &[String]) -> anyhow::Result<(Values, Values)> {
    let mut secrets = Values::new();
    let mut config_maps = Values::new();
    for m in manifests {
        match m {
            Manifest::Secret(s) => {
                let ns = namespace_of(&s.metadata);
                let name = s.metadata.name.clone().unwrap_or_default();
                for (k, v) in s.data.iter().flatten() {
                    let value = String::from_utf8(v.0.clone())
                        .map_err(|_| anyhow!("Secret {ns}/{name} key {k} is not UTF-8"))?;
                    secrets.insert((ns.clone(), name.clone(), k.clone()), value);
                }
                for (k, v) in s.string_data.iter().flatten() {
                    secrets.insert((ns.clone(), name.clone(), k.clone()), v.clone());
                }
            }
            Manifest::ConfigMap(c) => {
                let ns = namespace_of(&c.metadata);
                let name = c.metadata.name.clone().unwrap_or_default();
                for (k, v) in c.data.iter().flatten() {
                    config_maps.insert((ns.clone(), name.clone(), k.clone()), v.clone());
                }
            }
            _ => {}
        }
    }
    for flag in flags {
        let (key, value) = secret_flag(flag)?;
        secrets.insert(key, value);
    }
    Ok((secrets, config_maps))
}

fn report(what: &str, result: Option<PutResult>, dry_run: bool) {
    let verb = match (result, dry_run) {
        (_, true) => "would be applied",
        (Some(PutResult::Created), _) => "created",
        (Some(PutResult::Updated), _) => "configured",
        (Some(PutResult::Unchanged), _) | (None, _) => "unchanged",
    };
    println!("{what} {verb}");
}

pub async fn run(admin: &AdminArgs, args: &ApplyArgs) -> anyhow::Result<()> {
    let mut manifests = Vec::new();
    for path in &args.files {
        manifests.extend(manifest::load_path(path)?.into_iter().map(|(_, m)| m));
    }
    let (secrets, config_maps) = collect_values(&manifests, &args.secrets)?;
    let client = admin
        .client()?
        .with_claimant(format!("admin/{}", args.owner));

    // Workspace resource name → workspace id, per namespace, for references.
    let workspaces: BTreeMap<(String, String), &Workspace> = manifests
        .iter()
        .filter_map(|m| match m {
            Manifest::Workspace(w) => Some((
                (
                    namespace_of(&w.metadata),
                    w.metadata.name.clone().unwrap_or_default(),
                ),
                w,
            )),
            _ => None,
        })
        .collect();
    let workspace_id = |ns: &str, name: &str| -> String {
        workspaces
            .get(&(ns.to_string(), name.to_string()))
            .map(|w| w.workspace_id())
            .unwrap_or_else(|| name.to_string())
    };

    let mut failures = 0;
    // Dependency order: workspaces, then what lives in them.
    for m in manifests
        .iter()
        .filter(|m| matches!(m, Manifest::Workspace(_)))
    {
        let Manifest::Workspace(w) = m else { continue };
        let id = w.workspace_id();
        let what = format!("workspace.idsync.dev/{id}");
        if args.dry_run {
            report(&what, None, true);
            continue;
        }
        let view = client
            .put_object(
                ObjectKind::Workspace,
                &id,
                &id,
                &desired::workspace(&w.spec),
            )
            .await
            .with_context(|| what.clone())?;
        report(&what, view.result, false);
    }

    for m in &manifests {
        let outcome = match m {
            Manifest::SsoConnection(c) => {
                let ns = namespace_of(&c.metadata);
                let name = c.metadata.name.clone().unwrap_or_default();
                let ws = workspace_id(&ns, &c.spec.workspace_ref.name);
                let refs = desired::resolve_refs(&c.spec, |r| {
                    let source = match r.source {
                        MetadataSourceKind::Secret => &secrets,
                        MetadataSourceKind::ConfigMap => &config_maps,
                    };
                    source
                        .get(&(ns.clone(), r.name.clone(), r.key.clone()))
                        .cloned()
                })
                .map_err(|missing| {
                    let hint = match missing.source {
                        MetadataSourceKind::Secret => format!(
                            "include the Secret in the files or pass --secret {}/{}=env:VAR",
                            missing.name, missing.key
                        ),
                        MetadataSourceKind::ConfigMap => {
                            "include the ConfigMap in the files".into()
                        }
                    };
                    anyhow::anyhow!("SSOConnection {ns}/{name}: {missing}; {hint}")
                })?;
                let doc = desired::sso_connection(&c.spec, refs);
                let what = format!("ssoconnection.idsync.dev/{name} (workspace {ws})");
                if args.dry_run {
                    report(&what, None, true);
                    continue;
                }
                client
                    .put_object(ObjectKind::SsoConnection, &ws, &name, &doc)
                    .await
                    .map(|v| (what.clone(), v.result))
                    .with_context(|| what)
            }
            Manifest::RoleMapping(r) => {
                let ns = namespace_of(&r.metadata);
                let name = r.metadata.name.clone().unwrap_or_default();
                let ws = workspace_id(&ns, &r.spec.workspace_ref.name);
                let what = format!("rolemapping.idsync.dev/{name} (workspace {ws})");
                let compiled =
                    CompiledMapping::compile_spec(&r.spec).with_context(|| what.clone())?;
                let failed = compiled.run_tests(&r.spec.tests);
                if !failed.is_empty() {
                    eprintln!("{what} not applied: its inline tests fail:");
                    for f in failed {
                        eprintln!("  {f}");
                    }
                    failures += 1;
                    continue;
                }
                if args.dry_run {
                    report(&what, None, true);
                    continue;
                }
                client
                    .put_object(
                        ObjectKind::RoleMapping,
                        &ws,
                        &name,
                        &desired::role_mapping(&r.spec),
                    )
                    .await
                    .map(|v| (what.clone(), v.result))
                    .with_context(|| what)
            }
            Manifest::ScimToken(t) => {
                let ns = namespace_of(&t.metadata);
                let name = t.metadata.name.clone().unwrap_or_default();
                let ws = workspace_id(&ns, &t.spec.workspace_ref.name);
                let what = format!("scimtoken.idsync.dev/{name} (workspace {ws})");
                if args.dry_run {
                    report(&what, None, true);
                    continue;
                }
                apply_token(&client, &ws, &ns, &name, args)
                    .await
                    .map(|r| (what.clone(), r))
                    .with_context(|| what)
            }
            _ => continue,
        };
        let (what, result) = outcome?;
        report(&what, result, false);
    }
    if failures > 0 {
        bail!("{failures} object(s) were not applied");
    }
    Ok(())
}

/// A SCIMToken without Kubernetes: issue one unless a valid token of that name exists.
async fn apply_token(
    client: &AdminClient,
    workspace: &str,
    namespace: &str,
    name: &str,
    args: &ApplyArgs,
) -> anyhow::Result<Option<PutResult>> {
    let existing = client.list_tokens(workspace).await?;
    if existing.iter().any(|t| t.name == name && t.valid) {
        return Ok(Some(PutResult::Unchanged));
    }
    let (token, view) = issue_token(client, workspace, name, None).await?;
    match &args.token_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{namespace}.{name}.token"));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            use std::io::Write;
            options
                .open(&path)
                .and_then(|mut f| writeln!(f, "{}", token.expose()))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "SCIM token {} for {} written to {}",
                view.id,
                view.scim_base_url,
                path.display()
            );
        }
        None => eprintln!(
            "SCIM token for {} (shown once; give it to the IdP with this base URL):\n    {}",
            view.scim_base_url,
            token.expose()
        ),
    }
    Ok(view.result)
}
