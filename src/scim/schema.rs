//! The resource schemas idsync serves (RFC 7643 §4 and §8.7): core User, Group and
//! the EnterpriseUser extension. One table of attribute definitions drives the
//! `/Schemas` answer, case-insensitive attribute names, `caseExact` comparisons,
//! read-only stripping and type checks.

use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// idsync's own resource type (RFC 7643 §10.3 leaves URNs outside
/// `urn:ietf:params:scim` to their owners): a non-human principal the IdP
/// provisions, as Tecton's SCIM API has them.
pub const SERVICE_ACCOUNT_SCHEMA: &str = "urn:idsync:params:scim:schemas:core:1.0:ServiceAccount";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

impl AttrType {
    fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
            AttrType::Binary => "binary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// One attribute definition.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub required: bool,
    pub unique: bool,
    pub sub: &'static [Attr],
}

const fn s(name: &'static str) -> Attr {
    Attr {
        name,
        ty: AttrType::String,
        multi: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        required: false,
        unique: false,
        sub: &[],
    }
}
const fn b(name: &'static str) -> Attr {
    Attr {
        ty: AttrType::Boolean,
        ..s(name)
    }
}
const fn reference(name: &'static str) -> Attr {
    Attr {
        ty: AttrType::Reference,
        case_exact: true,
        ..s(name)
    }
}
const fn complex(name: &'static str, sub: &'static [Attr]) -> Attr {
    Attr {
        ty: AttrType::Complex,
        sub,
        ..s(name)
    }
}
const fn multi(name: &'static str, sub: &'static [Attr]) -> Attr {
    Attr {
        multi: true,
        ..complex(name, sub)
    }
}
const fn read_only(a: Attr) -> Attr {
    Attr {
        mutability: Mutability::ReadOnly,
        ..a
    }
}

/// `value`, `display`, `type`, `primary`: the shape of most multi-valued attributes.
const MULTI_SUB: &[Attr] = &[s("value"), s("display"), s("type"), b("primary")];

/// The groups a principal is a direct member of, which the service keeps.
const GROUPS_ATTR: Attr = read_only(multi(
    "groups",
    &[
        read_only(s("value")),
        read_only(reference("$ref")),
        read_only(s("display")),
        read_only(s("type")),
    ],
));

const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        unique: true,
        ..s("userName")
    },
    complex(
        "name",
        &[
            s("formatted"),
            s("familyName"),
            s("givenName"),
            s("middleName"),
            s("honorificPrefix"),
            s("honorificSuffix"),
        ],
    ),
    s("displayName"),
    s("nickName"),
    reference("profileUrl"),
    s("title"),
    s("userType"),
    s("preferredLanguage"),
    s("locale"),
    s("timezone"),
    b("active"),
    Attr {
        mutability: Mutability::WriteOnly,
        case_exact: true,
        ..s("password")
    },
    multi("emails", MULTI_SUB),
    multi("phoneNumbers", MULTI_SUB),
    multi("ims", MULTI_SUB),
    multi("photos", MULTI_SUB),
    multi(
        "addresses",
        &[
            s("formatted"),
            s("streetAddress"),
            s("locality"),
            s("region"),
            s("postalCode"),
            s("country"),
            s("type"),
            b("primary"),
        ],
    ),
    GROUPS_ATTR,
    multi("entitlements", MULTI_SUB),
    multi("roles", MULTI_SUB),
    multi("x509Certificates", MULTI_SUB),
];

const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber"),
    s("costCenter"),
    s("organization"),
    s("division"),
    s("department"),
    complex(
        "manager",
        &[s("value"), reference("$ref"), read_only(s("displayName"))],
    ),
];

const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..s("displayName")
    },
    multi(
        "members",
        &[
            Attr {
                mutability: Mutability::Immutable,
                case_exact: true,
                ..s("value")
            },
            Attr {
                mutability: Mutability::Immutable,
                ..reference("$ref")
            },
            read_only(s("display")),
            Attr {
                mutability: Mutability::Immutable,
                ..s("type")
            },
        ],
    ),
    // Not in RFC 7643's Group: role assignments a group gives its members
    // (`{type, value}`), as Tecton's SCIM API has them.
    multi("roles", MULTI_SUB),
];

/// A service account: what a machine principal needs to be named, switched
/// off, grouped and given roles. `displayName` identifies it, as a group's does.
const SERVICE_ACCOUNT_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..s("displayName")
    },
    s("description"),
    b("active"),
    GROUPS_ATTR,
    multi("roles", MULTI_SUB),
];

/// Attributes every resource has (RFC 7643 §3.1).
const COMMON_ATTRS: &[Attr] = &[
    Attr {
        case_exact: true,
        mutability: Mutability::ReadOnly,
        unique: true,
        ..s("id")
    },
    Attr {
        case_exact: true,
        ..s("externalId")
    },
    read_only(complex(
        "meta",
        &[
            s("resourceType"),
            Attr {
                ty: AttrType::DateTime,
                ..s("created")
            },
            Attr {
                ty: AttrType::DateTime,
                ..s("lastModified")
            },
            reference("location"),
            Attr {
                case_exact: true,
                ..s("version")
            },
        ],
    )),
];

/// A SCIM resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
    ServiceAccount,
}

impl ResourceKind {
    /// Every kind, in the order discovery and `/.search` list them.
    pub const ALL: [ResourceKind; 3] = [
        ResourceKind::User,
        ResourceKind::Group,
        ResourceKind::ServiceAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
            ResourceKind::ServiceAccount => "ServiceAccount",
        }
    }
    /// The kind a stored or sent name (`User`, `serviceaccount`) names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
            ResourceKind::ServiceAccount => "ServiceAccounts",
        }
    }
    /// The kind an endpoint path segment (`Users`, case-insensitively) names.
    pub fn from_endpoint(segment: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.endpoint().eq_ignore_ascii_case(segment))
    }
    pub fn schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
            ResourceKind::ServiceAccount => SERVICE_ACCOUNT_SCHEMA,
        }
    }
    fn attrs(self) -> &'static [Attr] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
            ResourceKind::ServiceAccount => SERVICE_ACCOUNT_ATTRS,
        }
    }
    /// How audit actions name this kind: `user_provisioned`,
    /// `service_account_deprovisioned`, `group_created`.
    pub fn audit_noun(self) -> &'static str {
        match self {
            ResourceKind::User => "user",
            ResourceKind::Group => "group",
            ResourceKind::ServiceAccount => "service_account",
        }
    }
    /// The attribute that names a resource of this kind (its `name_key`).
    pub fn name_attr(self) -> &'static str {
        match self {
            ResourceKind::User => "userName",
            ResourceKind::Group | ResourceKind::ServiceAccount => "displayName",
        }
    }
    /// Whether resources of this kind are principals: they can be switched
    /// off (`active`), belong to groups, hold a role and assignments, and
    /// authenticate (sessions, API keys). Groups are not.
    pub fn is_principal(self) -> bool {
        self != ResourceKind::Group
    }
    /// The extension schemas this kind supports beyond the workspace's own.
    pub fn builtin_extensions(self) -> &'static [&'static str] {
        match self {
            ResourceKind::User => &[ENTERPRISE_USER_SCHEMA],
            ResourceKind::Group | ResourceKind::ServiceAccount => &[],
        }
    }
}

/// Where an attribute lives: in the core schema, in a known extension, or in an
/// extension the workspace declared (whose attributes we store as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    Core,
    Extension(&'static str),
    Declared(String),
}

/// An attribute resolved against the schema: canonical names and its definition.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub namespace: Namespace,
    pub attr: Option<&'static Attr>,
    /// Canonical spelling of the attribute (as the client wrote it when the
    /// attribute is in a declared extension).
    pub name: String,
    pub sub: Option<(String, Option<&'static Attr>)>,
}

impl Resolved {
    /// The definition of the leaf (the sub-attribute when there is one).
    pub fn leaf(&self) -> Option<&'static Attr> {
        match &self.sub {
            Some((_, def)) => *def,
            None => self.attr,
        }
    }
    pub fn case_exact(&self) -> bool {
        self.leaf().is_some_and(|a| a.case_exact)
    }
    pub fn multi(&self) -> bool {
        self.attr.is_some_and(|a| a.multi)
    }
    /// The store's lower-case path key: `emails.value`, or
    /// `<extension urn>:manager.value` for extension attributes.
    pub fn key(&self) -> String {
        let mut key = match &self.namespace {
            Namespace::Core => String::new(),
            Namespace::Extension(urn) => format!("{urn}:"),
            Namespace::Declared(urn) => format!("{urn}:"),
        };
        key.push_str(&self.name);
        if let Some((sub, _)) = &self.sub {
            key.push('.');
            key.push_str(sub);
        }
        key.to_lowercase()
    }
}

fn find(attrs: &'static [Attr], name: &str) -> Option<&'static Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Schema knowledge for one workspace: the resource kind plus the extension URNs
/// the workspace declared (`spec.policy.scimSchemaExtensions`).
#[derive(Debug, Clone)]
pub struct SchemaSet {
    pub kind: ResourceKind,
    pub declared: Vec<String>,
}

impl SchemaSet {
    pub fn new(kind: ResourceKind, declared: Vec<String>) -> Self {
        Self { kind, declared }
    }

    /// The canonical URN of a schema this kind accepts, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<Namespace> {
        if let Some(b) = self
            .kind
            .builtin_extensions()
            .iter()
            .find(|b| b.eq_ignore_ascii_case(urn))
        {
            return Some(Namespace::Extension(b));
        }
        self.declared
            .iter()
            .find(|d| d.eq_ignore_ascii_case(urn))
            .map(|d| Namespace::Declared(d.clone()))
    }

    /// Resolves `[urn:]attr[.sub]`. `None` when the attribute is unknown.
    pub fn resolve(&self, urn: Option<&str>, attr: &str, sub: Option<&str>) -> Option<Resolved> {
        let namespace = match urn {
            None => Namespace::Core,
            Some(u) if u.eq_ignore_ascii_case(self.kind.schema()) => Namespace::Core,
            Some(u) => self.extension(u)?,
        };
        let (def, name) = match &namespace {
            Namespace::Core => {
                let def = find(self.kind.attrs(), attr).or_else(|| find(COMMON_ATTRS, attr))?;
                (Some(def), def.name.to_string())
            }
            Namespace::Extension(_) => {
                let def = find(ENTERPRISE_ATTRS, attr)?;
                (Some(def), def.name.to_string())
            }
            Namespace::Declared(_) => (None, attr.to_string()),
        };
        let sub = match (sub, def) {
            (None, _) => None,
            (Some(sub), Some(def)) => {
                let sub_def = find(def.sub, sub)?;
                Some((sub_def.name.to_string(), Some(sub_def)))
            }
            (Some(sub), None) => Some((sub.to_string(), None)),
        };
        Some(Resolved {
            namespace,
            attr: def,
            name,
            sub,
        })
    }

    /// Resolves a path relative to an element of a multi-valued attribute (the
    /// paths inside `emails[...]`).
    pub fn resolve_sub(&self, parent: &Resolved, sub: &str) -> Option<Resolved> {
        let def = parent.attr?;
        let sub_def = find(def.sub, sub)?;
        Some(Resolved {
            sub: Some((sub_def.name.to_string(), Some(sub_def))),
            ..parent.clone()
        })
    }
}

fn attr_json(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": a.ty.as_str(),
        "multiValued": a.multi,
        "description": "",
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": match a.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        },
        "returned": match a.mutability {
            Mutability::WriteOnly => "never",
            _ if a.name == "id" => "always",
            _ => "default",
        },
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if !a.sub.is_empty() {
        v["subAttributes"] = a.sub.iter().map(attr_json).collect();
    }
    if a.ty == AttrType::Reference {
        v["referenceTypes"] = json!(["external"]);
    }
    v
}

/// The `/Schemas` resources: one per schema, RFC 7643 §7 shape.
pub fn schema_resources(base_url: &str) -> Vec<Value> {
    let one = |id: &str, name: &str, description: &str, attrs: &[Attr]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{id}")},
        })
    };
    vec![
        one(USER_SCHEMA, "User", "User Account", USER_ATTRS),
        one(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS),
        one(
            ENTERPRISE_USER_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            ENTERPRISE_ATTRS,
        ),
        one(
            SERVICE_ACCOUNT_SCHEMA,
            "ServiceAccount",
            "Service Account",
            SERVICE_ACCOUNT_ATTRS,
        ),
    ]
}

/// The `/ResourceTypes` resources.
pub fn resource_types(base_url: &str, declared: &[String]) -> Vec<Value> {
    let mut user_ext: Vec<Value> =
        vec![json!({"schema": ENTERPRISE_USER_SCHEMA, "required": false})];
    user_ext.extend(
        declared
            .iter()
            .map(|urn| json!({"schema": urn, "required": false})),
    );
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users",
            "description": "User Account", "schema": USER_SCHEMA,
            "schemaExtensions": user_ext,
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "Group", "schema": GROUP_SCHEMA, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/Group")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "ServiceAccount", "name": "ServiceAccount", "endpoint": "/ServiceAccounts",
            "description": "Service Account", "schema": SERVICE_ACCOUNT_SCHEMA, "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/ServiceAccount")},
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_case_insensitively_to_their_canonical_spelling() {
        let users = SchemaSet::new(ResourceKind::User, vec![]);
        let r = users.resolve(None, "USERNAME", None).unwrap();
        assert_eq!(r.name, "userName");
        assert!(!r.case_exact());
        let r = users.resolve(None, "emails", Some("VALUE")).unwrap();
        assert_eq!(r.key(), "emails.value");
        assert!(r.multi());
        let r = users.resolve(None, "externalId", None).unwrap();
        assert!(r.case_exact());
        let r = users
            .resolve(
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"),
                "MANAGER",
                Some("value"),
            )
            .unwrap();
        assert_eq!(
            r.key(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager.value"
        );
        assert!(users.resolve(None, "nosuch", None).is_none());
        assert!(users.resolve(Some("urn:x:unknown"), "a", None).is_none());
    }

    #[test]
    fn declared_extensions_resolve_any_attribute() {
        let urn = "urn:ietf:params:scim:schemas:extension:custom:2.0:User";
        let users = SchemaSet::new(ResourceKind::User, vec![urn.into()]);
        let r = users.resolve(Some(urn), "personId", None).unwrap();
        assert_eq!(r.namespace, Namespace::Declared(urn.into()));
        assert_eq!(r.key(), format!("{}:personid", urn.to_lowercase()));
    }
}
