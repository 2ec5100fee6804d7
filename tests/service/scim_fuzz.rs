//! Property tests of the SCIM parsers: whatever a client sends, the filter
//! parser, the PATCH path parser and the PATCH engine answer with a value or a
//! SCIM problem, never a panic.

use idsync::scim::{
    filter, patch,
    schema::{ResourceKind, SchemaSet},
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Strings drawn from the grammar's own alphabet reach deep into the parser;
/// arbitrary Unicode covers the rest.
fn filterish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("userName".to_string()),
        Just("emails".to_string()),
        Just("members".to_string()),
        Just("urn:ietf:params:scim:schemas:core:2.0:User:".to_string()),
        Just(" eq ".to_string()),
        Just(" co ".to_string()),
        Just(" pr".to_string()),
        Just(" and ".to_string()),
        Just(" or ".to_string()),
        Just("not ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(".".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("\"x\"".to_string()),
        Just("42".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        "\\PC{0,3}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn filters_never_panic(input in prop_oneof![filterish(), "\\PC{0,200}"]) {
        let _ = filter::parse(&input);
        let _ = filter::parse_attr_path(&input);
    }

    #[test]
    fn patch_paths_never_panic(input in prop_oneof![filterish(), "\\PC{0,200}"]) {
        let _ = patch::parse_path(&input);
    }

    #[test]
    fn patch_operations_never_panic(
        op in prop_oneof![Just("add"), Just("Replace"), Just("remove"), Just("jump")],
        path in prop::option::of(filterish()),
        value in prop_oneof![
            Just(Value::Null),
            Just(json!("False")),
            Just(json!({"name.givenName": "x", "emails": [{"value": "a", "primary": true}]})),
            Just(json!([{"value": "u1"}, {"value": 2}])),
            "\\PC{0,20}".prop_map(Value::from),
        ],
    ) {
        let body = json!({"Operations": [{"op": op, "path": path, "value": value}]});
        for kind in [ResourceKind::User, ResourceKind::Group] {
            let set = SchemaSet::new(kind, vec![]);
            let mut doc: Map<String, Value> = serde_json::from_value(json!({
                "userName": "ada", "displayName": "Ada",
                "emails": [{"value": "a@x", "type": "work", "primary": true}],
            }))
            .expect("a JSON object");
            if let Ok(ops) = patch::parse_operations(&body) {
                let _ = patch::apply(&set, &mut doc, &ops);
            }
        }
    }
}
