//! Discovery (RFC 7644 §4): what this server supports, stated truthfully so IdPs
//! use PATCH, filters and bulk as they are.

use serde_json::{Value, json};

use super::{bulk, service::MAX_RESULTS};
use crate::scim::schema::{self, LIST_RESPONSE};

/// Only the attributes RFC 7643 §5 defines: strict clients (scim2-cli's
/// pydantic models) refuse the whole document over one extra key. The PATCH
/// operation limit (`patch::MAX_OPERATIONS`) is stated in the `tooMany`
/// error a longer PATCH gets instead.
/// `basic`: the workspace has an HTTP Basic credential, so `httpbasic` is
/// listed beside the bearer token.
pub fn service_provider_config(base_url: &str, basic: bool) -> Value {
    let mut schemes = vec![json!({
        "type": "oauthbearertoken",
        "name": "OAuth Bearer Token",
        "description": "A bearer token issued by idsync for this workspace (a SCIMToken resource)",
        "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
        "primary": true
    })];
    if basic {
        schemes.push(json!({
            "type": "httpbasic",
            "name": "HTTP Basic",
            "description": "A client ID and secret issued by idsync for this workspace (a SCIMToken with authentication: basic)",
            "specUri": "https://www.rfc-editor.org/rfc/rfc7617",
            "primary": false
        }));
    }
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://idsync.dev/docs/scim",
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": bulk::MAX_OPERATIONS,
            "maxPayloadSize": bulk::MAX_PAYLOAD_BYTES,
        },
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": schemes,
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        },
    })
}

/// A ListResponse of discovery resources.
pub fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

pub fn resource_types(base_url: &str, declared: &[String]) -> Vec<Value> {
    schema::resource_types(base_url, declared)
}

pub fn schemas(base_url: &str) -> Vec<Value> {
    schema::schema_resources(base_url)
}

/// One discovery resource by its `id`, case-insensitively.
pub fn by_id(resources: Vec<Value>, id: &str) -> Option<Value> {
    resources
        .into_iter()
        .find(|r| r["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))
}
