//! `idsync roles test`: evaluate a RoleMapping offline.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::manifest::{self, Manifest};
use crate::roles::{CompiledMapping, DecidedBy, Principal};

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Resolve the role a person with these groups and claims gets, and run the
    /// mapping's inline tests.
    Test {
        /// File with a RoleMapping manifest (the first one in the file is used
        /// unless --name is given).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Name of the RoleMapping in the file.
        #[arg(long)]
        name: Option<String>,
        /// The person's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// A claim or attribute as NAME=VALUE; repeat for several values or claims.
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
}

pub fn run(cmd: RolesCommand) -> anyhow::Result<()> {
    let RolesCommand::Test {
        file,
        name,
        groups,
        claims,
    } = cmd;
    let mapping = manifest::load_path(&file)?
        .into_iter()
        .filter_map(|(_, m)| match m {
            Manifest::RoleMapping(rm) => Some(rm),
            _ => None,
        })
        .find(|rm| name.is_none() || rm.metadata.name == name)
        .with_context(|| match &name {
            Some(n) => format!("no RoleMapping named {n:?} in {}", file.display()),
            None => format!("no RoleMapping in {}", file.display()),
        })?;
    let compiled = CompiledMapping::compile_spec(&mapping.spec)?;

    let mut claim_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for claim in &claims {
        let (k, v) = claim
            .split_once('=')
            .with_context(|| format!("--claim {claim:?}: expected NAME=VALUE"))?;
        claim_map
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let resolution = compiled.evaluate(Principal::new(&groups, &claim_map));
    let name = mapping.metadata.name.as_deref().unwrap_or("<unnamed>");
    match resolution.decided_by {
        DecidedBy::Rule(i) => {
            let rule = &mapping.spec.rules[i];
            let matcher = rule
                .equals
                .as_ref()
                .map(|v| format!("equals {v:?}"))
                .or(rule.prefix.as_ref().map(|v| format!("prefix {v:?}")))
                .or(rule.regex.as_ref().map(|v| format!("regex {v:?}")))
                .unwrap_or_default();
            let source = rule
                .claim
                .as_ref()
                .map_or("group".to_string(), |c| format!("claim {c:?}"));
            println!(
                "role: {}\ndecided by: rule {i} ({source} {matcher})",
                resolution.role.unwrap_or("none")
            );
        }
        DecidedBy::MappingDefault => println!(
            "role: {}\ndecided by: defaultRole (no rule matched)",
            resolution.role.unwrap_or("none")
        ),
        DecidedBy::NoMatch => println!(
            "role: none\ndecided by: no rule matched and {name} has no defaultRole; the workspace's default role applies"
        ),
    }
    let failures = compiled.run_tests(&mapping.spec.tests);
    if !mapping.spec.tests.is_empty() {
        match failures.len() {
            0 => println!("inline tests: all {} pass", mapping.spec.tests.len()),
            n => println!("inline tests: {n} of {} fail", mapping.spec.tests.len()),
        }
        for f in &failures {
            println!("  FAIL {f}");
        }
    }
    if !failures.is_empty() {
        bail!("{} inline test(s) of {name} failed", failures.len());
    }
    Ok(())
}
