//! The crate's top-level modules depend on each other in one direction: wire
//! types and pure libraries at the bottom, the operator and the service above
//! them, the command line at the top. This test reads every `crate::` path in
//! `src/` and fails on a cycle, naming it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Top-level modules each file's `crate::` paths name.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
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
            let module = relative
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_string()
                })
                .unwrap_or_default();
            if matches!(module.as_str(), "lib" | "main" | "dependency_direction") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            let named = graph.entry(module.clone()).or_default();
            for target in crate_paths(&text) {
                if target != module {
                    named.insert(target);
                }
            }
        }
    }
    graph
}

/// The first segment of every `crate::…` path, `crate::{a, b::c}` included.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at depth one of the group.
            let (mut depth, mut item_start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.insert(ident(&group[item_start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(ident(&group[item_start..i]));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.remove("");
    found
}

/// A cycle through `from`, if any (depth-first).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
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
    let graph = edges();
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
fn groups_and_plain_paths_are_both_read() {
    let text = "use crate::{a::{b, c}, d, e::f};\nlet x = crate::g::h();";
    let found: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(found, ["a", "d", "e", "g"]);
    let mut graph = BTreeMap::new();
    graph.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    graph.insert("y".to_string(), BTreeSet::from(["x".to_string()]));
    assert_eq!(
        cycle(&graph),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
}
