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

use super::AdminArgs;
use super::scim_token::issue_token;
use crate::admin::{AdminClient, ObjectKind, PutResult, desired};
use crate::api::{MetadataSourceKind, RoleMapping, ScimToken, SsoConnection, Workspace};
use crate::manifest::{self, Manifest};
use crate::roles::CompiledMapping;

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

fn name_of(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
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

/// What applying one object came to.
enum Step {
    Applied(String, Option<PutResult>),
    WouldApply(String),
    /// Not applied (its inline tests fail); reported already.
    Refused,
}

impl Step {
    fn report(self) -> bool {
        let (what, verb) = match self {
            Step::Refused => return false,
            Step::WouldApply(what) => (what, "would be applied"),
            Step::Applied(what, Some(PutResult::Created)) => (what, "created"),
            Step::Applied(what, Some(PutResult::Updated)) => (what, "configured"),
            Step::Applied(what, _) => (what, "unchanged"),
        };
        println!("{what} {verb}");
        true
    }
}

pub async fn run(admin: &AdminArgs, args: &ApplyArgs) -> anyhow::Result<()> {
    let mut manifests = Vec::new();
    for path in &args.files {
        manifests.extend(manifest::load_path(path)?.into_iter().map(|(_, m)| m));
    }
    let (secrets, config_maps) = collect_values(&manifests, &args.secrets)?;
    let applier = Applier {
        client: admin
            .client()?
            .with_claimant(format!("admin/{}", args.owner)),
        args,
        secrets,
        config_maps,
        workspaces: manifests
            .iter()
            .filter_map(|m| match m {
                Manifest::Workspace(w) => {
                    Some(((namespace_of(&w.metadata), name_of(&w.metadata)), w))
                }
                _ => None,
            })
            .collect(),
    };
    // Dependency order: workspaces, then what lives in them.
    for workspace in applier.workspaces.values() {
        applier.workspace(workspace).await?.report();
    }
    let mut failures = 0;
    for m in &manifests {
        let step = match m {
            Manifest::SsoConnection(c) => applier.connection(c).await?,
            Manifest::RoleMapping(r) => applier.role_mapping(r).await?,
            Manifest::ScimToken(t) => applier.token(t).await?,
            _ => continue,
        };
        if !step.report() {
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} object(s) were not applied");
    }
    Ok(())
}

struct Applier<'a> {
    client: AdminClient,
    args: &'a ApplyArgs,
    secrets: Values,
    config_maps: Values,
    /// (namespace, resource name) → the Workspace, for references.
    workspaces: BTreeMap<(String, String), &'a Workspace>,
}

impl Applier<'_> {
    /// The workspace id a `workspaceRef` in `namespace` names.
    fn workspace_id(&self, namespace: &str, name: &str) -> String {
        self.workspaces
            .get(&(namespace.to_string(), name.to_string()))
            .map(|w| w.workspace_id())
            .unwrap_or_else(|| name.to_string())
    }

    async fn workspace(&self, w: &Workspace) -> anyhow::Result<Step> {
        let id = w.workspace_id();
        let what = format!("workspace.idsync.dev/{id}");
        let doc = desired::workspace(&w.spec);
        self.put(ObjectKind::Workspace, (&id, &id), &doc, what)
            .await
    }

    /// Puts one object's document, or with `--dry-run` says it would.
    async fn put(
        &self,
        kind: ObjectKind,
        (workspace, name): (&str, &str),
        doc: &impl serde::Serialize,
        what: String,
    ) -> anyhow::Result<Step> {
        if self.args.dry_run {
            return Ok(Step::WouldApply(what));
        }
        let view = self
            .client
            .put_object(kind, workspace, name, doc)
            .await
            .with_context(|| what.clone())?;
        Ok(Step::Applied(what, view.result))
    }

    async fn connection(&self, c: &SsoConnection) -> anyhow::Result<Step> {
        let (ns, name) = (namespace_of(&c.metadata), name_of(&c.metadata));
        let ws = self.workspace_id(&ns, &c.spec.workspace_ref.name);
        let refs = desired::resolve_refs(&c.spec, |r| {
            let source = match r.source {
                MetadataSourceKind::Secret => &self.secrets,
                MetadataSourceKind::ConfigMap => &self.config_maps,
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
                MetadataSourceKind::ConfigMap => "include the ConfigMap in the files".into(),
            };
            anyhow!("SSOConnection {ns}/{name}: {missing}; {hint}")
        })?;
        let what = format!("ssoconnection.idsync.dev/{name} (workspace {ws})");
        let doc = desired::sso_connection(&c.spec, refs);
        self.put(ObjectKind::SsoConnection, (&ws, &name), &doc, what)
            .await
    }

    async fn role_mapping(&self, r: &RoleMapping) -> anyhow::Result<Step> {
        let (ns, name) = (namespace_of(&r.metadata), name_of(&r.metadata));
        let ws = self.workspace_id(&ns, &r.spec.workspace_ref.name);
        let what = format!("rolemapping.idsync.dev/{name} (workspace {ws})");
        let compiled = CompiledMapping::compile_spec(&r.spec).with_context(|| what.clone())?;
        let failed = compiled.run_tests(&r.spec.tests);
        if !failed.is_empty() {
            eprintln!("{what} not applied: its inline tests fail:");
            for f in failed {
                eprintln!("  {f}");
            }
            return Ok(Step::Refused);
        }
        let doc = desired::role_mapping(&r.spec);
        self.put(ObjectKind::RoleMapping, (&ws, &name), &doc, what)
            .await
    }

    async fn token(&self, t: &ScimToken) -> anyhow::Result<Step> {
        let (ns, name) = (namespace_of(&t.metadata), name_of(&t.metadata));
        let ws = self.workspace_id(&ns, &t.spec.workspace_ref.name);
        let what = format!("scimtoken.idsync.dev/{name} (workspace {ws})");
        if self.args.dry_run {
            return Ok(Step::WouldApply(what));
        }
        let result = apply_token(&self.client, &ws, &ns, &name, self.args)
            .await
            .with_context(|| what.clone())?;
        Ok(Step::Applied(what, result))
    }
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
    let (token, view) = issue_token(client, workspace, name, None, Default::default()).await?;
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
