//! Translating a SCIM filter into a parameterised SQL condition over
//! `scim_resources r`. User input only ever becomes bound parameters; the SQL
//! text is built from fixed fragments and placeholders.
//!
//! The hot attributes (`id`, `externalId`, `userName`, a group's `displayName`,
//! `active`, `meta.created/lastModified`) are indexed columns; members are rows of
//! `scim_members`; every other attribute is looked up in `scim_values` through
//! its `(path, value)` index as `r.pk IN (SELECT resource_pk …)`, which both
//! SQLite and PostgreSQL run as an index lookup followed by a primary-key probe.

use crate::scim::{
    ScimProblem,
    filter::{AttrPath, CompValue, CompareOp, Filter},
    schema::{Namespace, Resolved, ResourceKind, SchemaSet},
};

use super::Backend;

/// A bound query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// The values bound to a statement's `$N` placeholders, in order.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    pub params: Vec<Param>,
}

impl Sql {
    /// Appends a parameter and returns its placeholder.
    pub fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }
}

/// Where a filtered attribute lives.
enum Source {
    /// A text column of `r`; `lower` when the column holds lower-cased text.
    Text { column: &'static str, lower: bool },
    /// A time column (ms since the epoch).
    Time(&'static str),
    /// `r.active`, 0 or 1.
    Active,
    /// A group's members (`members.value`, `members.type`).
    Members,
    /// A user's groups, through the membership table.
    Groups,
    /// Rows of `scim_values` with this path.
    Values(String),
}

pub struct Translator<'a> {
    pub set: &'a SchemaSet,
    pub backend: Backend,
    pub sql: Sql,
    pub unknown_attributes_match_nothing: bool,
}

fn unknown(path: &AttrPath, kind: ResourceKind) -> ScimProblem {
    ScimProblem::invalid_filter(format!(
        "{path} is not an attribute of {} resources",
        kind.as_str()
    ))
}

impl<'a> Translator<'a> {
    pub fn new(set: &'a SchemaSet, backend: Backend, sql: Sql) -> Self {
        Self {
            set,
            backend,
            sql,
            unknown_attributes_match_nothing: false,
        }
    }

    fn resolve(&self, path: &AttrPath) -> Result<Resolved, ScimProblem> {
        self.set
            .resolve(path.urn.as_deref(), &path.attr, path.sub.as_deref())
            .ok_or_else(|| unknown(path, self.set.kind))
    }

    fn source(&self, r: &Resolved) -> Source {
        let kind = self.set.kind;
        let sub = r.sub.as_ref().map(|(s, _)| s.as_str());
        if r.namespace == Namespace::Core {
            match (r.name.as_str(), sub, kind) {
                ("id", None, _) => {
                    return Source::Text {
                        column: "r.id",
                        lower: false,
                    };
                }
                ("externalId", None, _) => {
                    return Source::Text {
                        column: "r.external_id",
                        lower: false,
                    };
                }
                (name, None, kind) if name == kind.name_attr() => {
                    return Source::Text {
                        column: "r.name_key",
                        lower: true,
                    };
                }
                ("active", None, kind) if kind.is_principal() => return Source::Active,
                ("meta", Some("created"), _) => return Source::Time("r.created_at"),
                ("meta", Some("lastModified"), _) => return Source::Time("r.updated_at"),
                ("members", _, ResourceKind::Group) => return Source::Members,
                ("groups", _, kind) if kind.is_principal() => return Source::Groups,
                _ => {}
            }
        }
        // `emails co "x"` on a complex multi-valued attribute means `emails.value`.
        let key = if r.sub.is_none() && r.attr.is_some_and(|a| a.multi && !a.sub.is_empty()) {
            format!("{}.value", r.key())
        } else {
            r.key()
        };
        Source::Values(key)
    }

    /// Whether `filter` is an equality on an attribute kept in an indexed
    /// column (`id`, `externalId`, `userName`, a group's `displayName`), or
    /// an `and` holding one: an index probe answers it, however large the
    /// workspace. IdPs send these before every create.
    pub fn is_point_lookup(&self, filter: &Filter) -> bool {
        match filter {
            Filter::And(a, b) => self.is_point_lookup(a) || self.is_point_lookup(b),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if !matches!(value, CompValue::Null) => self
                .resolve(path)
                .is_ok_and(|r| matches!(self.source(&r), Source::Text { .. })),
            _ => false,
        }
    }

    /// The SQL condition for `filter`, on resource alias `r`.
    pub fn condition(&mut self, filter: &Filter) -> Result<String, ScimProblem> {
        if self.unknown_attributes_match_nothing
            && let Filter::Present(path)
            | Filter::Compare { path, .. }
            | Filter::ValuePath { attr: path, .. } = filter
            && self.resolve(path).is_err()
        {
            return Ok("(1 = 0)".into());
        }
        Ok(match filter {
            Filter::And(a, b) => format!("({} AND {})", self.condition(a)?, self.condition(b)?),
            Filter::Or(a, b) => format!("({} OR {})", self.condition(a)?, self.condition(b)?),
            Filter::Not(a) => format!("(NOT {})", self.condition(a)?),
            Filter::Present(path) => {
                let r = self.resolve(path)?;
                self.present(&r)?
            }
            Filter::Compare { path, op, value } => {
                let r = self.resolve(path)?;
                match (op, value) {
                    (CompareOp::Eq, CompValue::Null) => format!("(NOT {})", self.present(&r)?),
                    (CompareOp::Ne, CompValue::Null) => self.present(&r)?,
                    // `ne` holds for resources without the attribute too.
                    (CompareOp::Ne, _) => {
                        format!("(NOT {})", self.compare(&r, CompareOp::Eq, value)?)
                    }
                    _ => self.compare(&r, *op, value)?,
                }
            }
            Filter::ValuePath { attr, filter } => {
                let r = self.resolve(attr)?;
                if !r.multi() {
                    return Err(ScimProblem::invalid_filter(format!(
                        "{attr} is not multi-valued and cannot take a value filter"
                    )));
                }
                self.value_path(&r, filter)?
            }
        })
    }

    fn present(&mut self, r: &Resolved) -> Result<String, ScimProblem> {
        Ok(match self.source(r) {
            Source::Text { column, .. } => format!("({column} IS NOT NULL AND {column} <> '')"),
            Source::Time(_) => "1 = 1".into(),
            Source::Active => "1 = 1".into(),
            Source::Members => "r.pk IN (SELECT m.group_pk FROM scim_members m)".into(),
            Source::Groups => "r.id IN (SELECT m.member_id FROM scim_members m)".into(),
            Source::Values(path) => {
                let (column, key) = if path.ends_with(".value") && r.sub.is_none() {
                    ("attr", r.key())
                } else {
                    ("path", path)
                };
                let p = self.sql.bind(Param::Text(key));
                format!("r.pk IN (SELECT v.resource_pk FROM scim_values v WHERE v.{column} = {p})")
            }
        })
    }

    fn compare(
        &mut self,
        r: &Resolved,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimProblem> {
        let case_exact = r.case_exact();
        match self.source(r) {
            Source::Text { column, lower } => {
                let text = self.text_value(r, value)?;
                Ok(self.text_condition(column, op, text, lower || !case_exact))
            }
            Source::Time(column) => {
                let CompValue::Str(s) = value else {
                    return Err(ScimProblem::invalid_filter(
                        "dates compare with an RFC 3339 string",
                    ));
                };
                let ms = s
                    .parse::<jiff::Timestamp>()
                    .map_err(|_| {
                        ScimProblem::invalid_filter(format!("{s:?} is not an RFC 3339 date-time"))
                    })?
                    .as_millisecond();
                let sql_op = match op {
                    CompareOp::Eq => "=",
                    CompareOp::Gt => ">",
                    CompareOp::Ge => ">=",
                    CompareOp::Lt => "<",
                    CompareOp::Le => "<=",
                    _ => {
                        return Err(ScimProblem::invalid_filter(
                            "dates compare with eq, ne, gt, ge, lt or le",
                        ));
                    }
                };
                let p = self.sql.bind(Param::Int(ms));
                Ok(format!("{column} {sql_op} {p}"))
            }
            Source::Active => {
                let b = match value {
                    CompValue::Bool(b) => *b,
                    CompValue::Str(s) if s.eq_ignore_ascii_case("true") => true,
                    CompValue::Str(s) if s.eq_ignore_ascii_case("false") => false,
                    _ => {
                        return Err(ScimProblem::invalid_filter(
                            "active compares with true or false",
                        ));
                    }
                };
                if op != CompareOp::Eq {
                    return Err(ScimProblem::invalid_filter("active compares with eq or ne"));
                }
                let p = self.sql.bind(Param::Int(b as i64));
                Ok(format!("r.active = {p}"))
            }
            Source::Members | Source::Groups => {
                let sub = r
                    .sub
                    .as_ref()
                    .map_or("value", |(s, _)| s.as_str())
                    .to_string();
                let cond = self.member_condition(&sub, op, value)?;
                Ok(self.membership(&cond))
            }
            Source::Values(path) => {
                let text = self.text_value(r, value)?;
                let p = self.sql.bind(Param::Text(path));
                let column = if case_exact { "v.v_text" } else { "v.v_lower" };
                let cond = self.text_condition(column, op, text, !case_exact);
                Ok(format!(
                    "r.pk IN (SELECT v.resource_pk FROM scim_values v WHERE v.path = {p} AND {cond})"
                ))
            }
        }
    }

    fn text_value(&self, r: &Resolved, value: &CompValue) -> Result<String, ScimProblem> {
        value.as_text().ok_or_else(|| {
            ScimProblem::invalid_filter(format!("{} cannot compare with null here", r.name))
        })
    }

    /// `column op value`; `fold` lower-cases the value (the column already is).
    fn text_condition(&mut self, column: &str, op: CompareOp, value: String, fold: bool) -> String {
        let value = if fold { value.to_lowercase() } else { value };
        let p = self.sql.bind(Param::Text(value));
        // PostgreSQL's default collation is locale-aware; "C" orders by code
        // point, as SQLite does.
        let collate = match self.backend {
            Backend::Postgres => " COLLATE \"C\"",
            Backend::Sqlite => "",
        };
        match op {
            CompareOp::Eq => format!("{column} = {p}"),
            CompareOp::Ne => format!("{column} <> {p}"),
            CompareOp::Co => match self.backend {
                Backend::Sqlite => format!("instr({column}, {p}) > 0"),
                Backend::Postgres => format!("strpos({column}, {p}) > 0"),
            },
            CompareOp::Sw => format!("substr({column}, 1, length(CAST({p} AS TEXT))) = {p}"),
            CompareOp::Ew => {
                format!("substr({column}, length({column}) - length(CAST({p} AS TEXT)) + 1) = {p}")
            }
            CompareOp::Gt => format!("{column}{collate} > {p}"),
            CompareOp::Ge => format!("{column}{collate} >= {p}"),
            CompareOp::Lt => format!("{column}{collate} < {p}"),
            CompareOp::Le => format!("{column}{collate} <= {p}"),
        }
    }

    /// A condition on one membership row `m` (and, for a user's groups, the
    /// group `g`).
    fn member_condition(
        &mut self,
        sub: &str,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimProblem> {
        let text = value
            .as_text()
            .ok_or_else(|| ScimProblem::invalid_filter("members compare with a string"))?;
        let (column, fold) = match (self.set.kind, sub) {
            (ResourceKind::Group, "value") => ("m.member_id", false),
            (ResourceKind::Group, "type") => ("lower(m.member_type)", true),
            (kind, "value") if kind.is_principal() => ("g.id", false),
            (kind, "display") if kind.is_principal() => ("g.name_key", true),
            (_, other) => {
                return Err(ScimProblem::invalid_filter(format!(
                    "filtering on {other} of a membership is not supported; use value"
                )));
            }
        };
        Ok(match op {
            CompareOp::Ne => {
                let c = self.text_condition(column, CompareOp::Eq, text, fold);
                format!("(NOT {c})")
            }
            _ => self.text_condition(column, op, text, fold),
        })
    }

    fn membership(&self, cond: &str) -> String {
        match self.set.kind {
            ResourceKind::Group => {
                format!("r.pk IN (SELECT m.group_pk FROM scim_members m WHERE {cond})")
            }
            ResourceKind::User | ResourceKind::ServiceAccount => format!(
                "r.id IN (SELECT m.member_id FROM scim_members m JOIN scim_resources g \
                 ON g.pk = m.group_pk WHERE g.workspace = r.workspace AND g.deleted_at IS NULL AND {cond})"
            ),
        }
    }

    /// `attr[filter]`: one element satisfies every part of `filter`.
    fn value_path(&mut self, parent: &Resolved, filter: &Filter) -> Result<String, ScimProblem> {
        match self.source(parent) {
            Source::Members | Source::Groups => {
                let cond = self.member_filter(filter)?;
                Ok(self.membership(&cond))
            }
            Source::Values(_) => {
                let attr = self.sql.bind(Param::Text(parent.key()));
                let cond = self.element_filter(parent, filter)?;
                Ok(format!(
                    "r.pk IN (SELECT d.resource_pk FROM scim_values d WHERE d.attr = {attr} AND {cond})"
                ))
            }
            _ => Err(ScimProblem::invalid_filter(format!(
                "{} cannot take a value filter",
                parent.name
            ))),
        }
    }

    fn member_filter(&mut self, filter: &Filter) -> Result<String, ScimProblem> {
        Ok(match filter {
            Filter::And(a, b) => format!(
                "({} AND {})",
                self.member_filter(a)?,
                self.member_filter(b)?
            ),
            Filter::Or(a, b) => {
                format!("({} OR {})", self.member_filter(a)?, self.member_filter(b)?)
            }
            Filter::Not(a) => format!("(NOT {})", self.member_filter(a)?),
            Filter::Compare { path, op, value } if path.urn.is_none() && path.sub.is_none() => {
                self.member_condition(&path.attr.to_ascii_lowercase(), *op, value)?
            }
            Filter::Present(_) => "1 = 1".into(),
            _ => return Err(ScimProblem::invalid_filter("unsupported membership filter")),
        })
    }

    /// A condition on the element `d.elem` of `d.resource_pk`.
    fn element_filter(
        &mut self,
        parent: &Resolved,
        filter: &Filter,
    ) -> Result<String, ScimProblem> {
        Ok(match filter {
            Filter::And(a, b) => format!(
                "({} AND {})",
                self.element_filter(parent, a)?,
                self.element_filter(parent, b)?
            ),
            Filter::Or(a, b) => format!(
                "({} OR {})",
                self.element_filter(parent, a)?,
                self.element_filter(parent, b)?
            ),
            Filter::Not(a) => format!("(NOT {})", self.element_filter(parent, a)?),
            Filter::Present(path) | Filter::Compare { path, .. } => {
                if path.urn.is_some() || path.sub.is_some() {
                    return Err(ScimProblem::invalid_filter(format!(
                        "{path} inside {}[…] must be a sub-attribute name",
                        parent.name
                    )));
                }
                let sub = self.set.resolve_sub(parent, &path.attr).ok_or_else(|| {
                    ScimProblem::invalid_filter(format!(
                        "{} is not a sub-attribute of {}",
                        path.attr, parent.name
                    ))
                })?;
                let p = self.sql.bind(Param::Text(sub.key()));
                let exists = |cond: &str| {
                    format!(
                        "EXISTS (SELECT 1 FROM scim_values x WHERE x.resource_pk = d.resource_pk \
                         AND x.elem = d.elem AND x.path = {p}{cond})"
                    )
                };
                match filter {
                    Filter::Compare { op, value, .. } => {
                        let text = match value.as_text() {
                            Some(t) => t,
                            None if *op == CompareOp::Eq => {
                                return Ok(format!("(NOT {})", exists("")));
                            }
                            None => return Ok(exists("")),
                        };
                        let exact = sub.case_exact();
                        let column = if exact { "x.v_text" } else { "x.v_lower" };
                        if *op == CompareOp::Ne {
                            let c = self.text_condition(column, CompareOp::Eq, text, !exact);
                            format!("(NOT {})", exists(&format!(" AND {c}")))
                        } else {
                            let c = self.text_condition(column, *op, text, !exact);
                            exists(&format!(" AND {c}"))
                        }
                    }
                    _ => exists(""),
                }
            }
            Filter::ValuePath { .. } => {
                return Err(ScimProblem::invalid_filter("value filters cannot nest"));
            }
        })
    }

    /// An `ORDER BY` key for `sortBy`.
    pub fn sort_key(&mut self, path: &AttrPath) -> Result<String, ScimProblem> {
        let r = self.resolve(path)?;
        Ok(match self.source(&r) {
            Source::Text { column, .. } => column.to_string(),
            Source::Time(column) => column.to_string(),
            Source::Active => "r.active".into(),
            Source::Values(path) => {
                let p = self.sql.bind(Param::Text(path));
                format!(
                    "(SELECT MIN(s.v_lower) FROM scim_values s WHERE s.resource_pk = r.pk AND s.path = {p})"
                )
            }
            Source::Members | Source::Groups => {
                return Err(ScimProblem::invalid_value("cannot sort by memberships"));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_lookups_are_equalities_on_indexed_columns() {
        let users = SchemaSet::new(ResourceKind::User, vec![]);
        let groups = SchemaSet::new(ResourceKind::Group, vec![]);
        let point = |set: &SchemaSet, f: &str| {
            let filter = crate::scim::filter::parse(f).expect("a valid filter");
            Translator::new(set, Backend::Sqlite, Sql::default()).is_point_lookup(&filter)
        };
        for f in [
            r#"userName eq "ada@example.com""#,
            r#"externalId eq "e-1""#,
            r#"id eq "1""#,
            r#"externalId eq "e-1" and active eq true"#,
            r#"active eq true and USERNAME eq "ada""#,
        ] {
            assert!(point(&users, f), "{f}");
        }
        assert!(point(&groups, r#"displayName eq "Engineering""#));
        for f in [
            r#"userName co "ada""#,
            r#"userName ne "ada""#,
            r#"userName eq null"#,
            r#"emails.value eq "ada@example.com""#,
            r#"title eq "Engineer""#,
            r#"userName eq "a" or title eq "b""#,
            r#"not (userName eq "a")"#,
        ] {
            assert!(!point(&users, f), "{f}");
        }
        assert!(
            !point(&users, r#"displayName eq "Ada""#),
            "a user's displayName is not indexed"
        );
    }
}
