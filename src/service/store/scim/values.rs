//! The value index: every scalar of a document as a `scim_values` row, so a
//! filter on any attribute is an indexed lookup.

use serde_json::{Map, Value};

use crate::scim::schema::ResourceKind;

/// The `scim_values` rows of a document: every scalar, with its lower-cased path,
/// top-level attribute and element index. Columns cover `userName`, `externalId`
/// and a group's `displayName`, so those are skipped.
pub fn value_rows(
    kind: ResourceKind,
    doc: &Map<String, Value>,
) -> Vec<(String, String, i64, String)> {
    let mut rows = Vec::new();
    fn scalar(v: &Value) -> Option<String> {
        crate::scim::eval::scalar_text(v)
    }
    fn push_value(
        rows: &mut Vec<(String, String, i64, String)>,
        attr: &str,
        prefix: &str,
        v: &Value,
    ) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(obj) => {
                            for (k, sv) in obj {
                                if let Some(t) = scalar(sv) {
                                    rows.push((
                                        attr.into(),
                                        format!("{prefix}.{}", k.to_lowercase()),
                                        i as i64,
                                        t,
                                    ));
                                }
                            }
                        }
                        other => {
                            if let Some(t) = scalar(other) {
                                rows.push((attr.into(), prefix.into(), i as i64, t));
                            }
                        }
                    }
                }
            }
            Value::Object(obj) => {
                for (k, sv) in obj {
                    if let Some(t) = scalar(sv) {
                        rows.push((attr.into(), format!("{prefix}.{}", k.to_lowercase()), 0, t));
                    }
                }
            }
            other => {
                if let Some(t) = scalar(other) {
                    rows.push((attr.into(), prefix.into(), 0, t));
                }
            }
        }
    }
    for (key, value) in doc {
        let column_backed =
            matches!(key.as_str(), "externalId" | "members") || key == kind.name_attr();
        if column_backed {
            continue;
        }
        if key.starts_with("urn:") {
            let urn = key.to_lowercase();
            if let Value::Object(ext) = value {
                for (k, v) in ext {
                    let path = format!("{urn}:{}", k.to_lowercase());
                    push_value(&mut rows, &path, &path, v);
                }
            }
            continue;
        }
        let lower = key.to_lowercase();
        push_value(&mut rows, &lower, &lower, value);
    }
    rows
}
