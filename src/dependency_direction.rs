//! Modules depend on each other in one direction: wire types and pure
//! libraries at the bottom, the operator and the service above them, the
//! command line at the top; inside the service, the HTTP layer above the
//! services it routes to. This test resolves every `crate::` and `super::`
//! path in `src/` and fails on a cycle, naming it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every source file's module path (`src/service/sso/admit.rs` is
/// `[service, sso, admit]`) and text.
fn sources() -> Vec<(Vec<String>, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).expect("under src/");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if matches!(module.as_slice(), [m] if m == "lib" || m == "main" || m == "dependency_direction")
            {
                continue;
            }
            out.push((
                module,
                std::fs::read_to_string(&path).expect("a source file"),
            ));
        }
    }
    out
}

/// The paths a text names: `crate::a::b`, `super::super::c`, and the items of
/// `{…}` groups after them (nested too), as (how many `super`s, segments).
fn paths(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        expand(&text[at + "crate::".len()..], Vec::new(), &mut |p| {
            found.push((0, p))
        });
    }
    for (at, _) in text.match_indices("super::") {
        // A chain is read once, from its first `super::`.
        if text[..at].ends_with("super::") {
            continue;
        }
        let mut rest = &text[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        expand(rest, Vec::new(), &mut |p| found.push((ups, p)));
    }
    found
}

/// Reads one path (with `{…}` groups, nested) from the start of `s`, calling
/// `emit` with each full path it names.
fn expand(s: &str, mut prefix: Vec<String>, emit: &mut dyn FnMut(Vec<String>)) {
    let mut rest = s.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 0 => {
                        expand(&group[start..i], prefix.clone(), emit);
                        start = i + 1;
                        if c == '}' {
                            return;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            return;
        }
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        prefix.push(ident);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    if !prefix.is_empty() {
        emit(prefix);
    }
}

/// The dependency graph of modules `level` deep (1: top-level; 2: inside each
/// top-level module), from every path that resolves to another module.
fn graph(level: usize) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in sources() {
        if module.len() < level {
            continue;
        }
        let own = module[..level].join("::");
        let targets = graph.entry(own.clone()).or_default();
        for (ups, segments) in paths(&text) {
            let absolute: Vec<String> = if ups == 0 {
                segments
            } else if ups <= module.len() {
                module[..module.len() - ups]
                    .iter()
                    .cloned()
                    .chain(segments)
                    .collect()
            } else {
                continue;
            };
            if absolute.len() < level || absolute[..level - 1] != module[..level - 1] {
                continue;
            }
            let target = absolute[..level].join("::");
            if target != own {
                targets.insert(target);
            }
        }
    }
    // Only edges between modules that are files of the crate.
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|t| known.contains(t));
    }
    graph
}

/// A cycle, if any (depth-first).
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_depend_in_one_direction() {
    let graph = graph(1);
    assert!(
        graph.contains_key("service") && graph.contains_key("admin"),
        "{graph:?}"
    );
    if let Some(c) = cycle(&graph) {
        panic!("module cycle: {}\nall edges: {graph:#?}", c.join(" -> "));
    }
    // The layers the README promises, spelled out.
    for (low, high) in [
        ("admin", "service"),
        ("admin", "controller"),
        ("roles", "service"),
        ("api", "admin"),
        ("controller", "service"),
        ("controller", "cli"),
        ("service", "cli"),
        ("service", "controller"),
    ] {
        assert!(
            !graph.get(low).is_some_and(|targets| targets.contains(high)),
            "{low} depends on {high}"
        );
    }
}

#[test]
fn the_service_layers_depend_in_one_direction() {
    let graph: Graph = graph(2)
        .into_iter()
        .filter(|(k, _)| k.starts_with("service::"))
        .collect();
    assert!(graph.contains_key("service::http"), "{graph:?}");
    if let Some(c) = cycle(&graph) {
        panic!("module cycle: {}\nall edges: {graph:#?}", c.join(" -> "));
    }
    for low in [
        "service::scim",
        "service::sso",
        "service::admin",
        "service::store",
    ] {
        assert!(
            !graph.get(low).is_some_and(|t| t.contains("service::http")),
            "{low} depends on the HTTP layer"
        );
    }
}

#[test]
fn paths_groups_and_super_chains_are_all_read() {
    let text = "use crate::{a::{b, c}, d, e::f};\nlet x = crate::g::h();\nuse super::{i, j::k};\nuse super::super::l::m;";
    let found = paths(text);
    assert!(
        found.contains(&(0, vec!["a".into(), "b".into()])),
        "{found:?}"
    );
    assert!(found.contains(&(0, vec!["d".into()])), "{found:?}");
    assert!(
        found.contains(&(0, vec!["g".into(), "h".into()])),
        "{found:?}"
    );
    assert!(
        found.contains(&(1, vec!["j".into(), "k".into()])),
        "{found:?}"
    );
    assert!(
        found.contains(&(2, vec!["l".into(), "m".into()])),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|(ups, p)| *ups == 1 && p.first().is_some_and(|s| s == "super")),
        "{found:?}"
    );
    let mut g = Graph::new();
    g.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    g.insert("y".to_string(), BTreeSet::from(["x".to_string()]));
    assert_eq!(cycle(&g), Some(vec!["x".into(), "y".into(), "x".into()]));
}
