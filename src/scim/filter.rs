//! The RFC 7644 §3.4.2.2 filter grammar: a lexer and a recursive-descent parser
//! producing [`Filter`], with bounded length and nesting so hostile input cannot
//! exhaust the stack.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")" / "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"      ; and Entra's  attrPath "[" … "]" "." subAttr op value
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! ```
//! Precedence: `not` binds tightest, then `and`, then `or`. Keywords and operators
//! are case-insensitive.

use std::fmt;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, brackets and `not` accepted.
pub const MAX_DEPTH: usize = 32;

/// `[urn ":"] attr ["." sub]`, as written (case preserved; resolution against the
/// schema happens later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        write!(f, "{}", self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// A comparison value: JSON `false`, `null`, `true`, a number or a string.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(String),
}

impl CompValue {
    /// The value as the store and the evaluator compare it: strings as they are,
    /// booleans and numbers in their JSON spelling.
    pub fn as_text(&self) -> Option<String> {
        match self {
            CompValue::Null => None,
            CompValue::Bool(b) => Some(b.to_string()),
            CompValue::Number(n) => Some(n.to_string()),
            CompValue::Str(s) => Some(s.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` satisfies `filter`,
    /// whose paths are sub-attributes of that element.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// Why a filter was refused; the message is shown to the IdP admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn lex(input: &str) -> Result<Vec<Token>, FilterError> {
    if input.len() > MAX_FILTER_LEN {
        return err(format!("filter longer than {MAX_FILTER_LEN} bytes"));
    }
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::LParen);
            }
            ')' => {
                chars.next();
                tokens.push(Token::RParen);
            }
            '[' => {
                chars.next();
                tokens.push(Token::LBracket);
            }
            ']' => {
                chars.next();
                tokens.push(Token::RBracket);
            }
            '"' => {
                // A JSON string literal: find its end honouring escapes, then let
                // serde_json decode the escapes.
                chars.next();
                let mut end = None;
                let mut escaped = false;
                for (i, ch) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if ch == '\\' {
                        escaped = true;
                    } else if ch == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return err("unterminated string literal");
                };
                let literal = &input[start..=end];
                let s: String = serde_json::from_str(literal)
                    .map_err(|_| FilterError(format!("invalid string literal {literal}")))?;
                tokens.push(Token::Str(s));
            }
            _ => {
                let mut end = input.len();
                while let Some(&(i, ch)) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | '[' | ']' | '"') {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                tokens.push(Token::Word(input[start..end].to_string()));
            }
        }
    }
    Ok(tokens)
}

/// Whether a name starts with `urn:` (any case) and has more after it. Byte
/// slicing is safe: `get` refuses a cut inside a multi-byte character.
pub fn is_urn(word: &str) -> bool {
    word.len() > 4
        && word
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

/// Parses an attribute path such as `userName`, `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
pub fn parse_attr_path(word: &str) -> Result<AttrPath, FilterError> {
    let (urn, rest) = if is_urn(word) {
        // The URN may itself contain dots ("2.0"); the attribute follows its last colon.
        match word.rfind(':') {
            Some(i) if i + 1 < word.len() => (Some(word[..i].to_string()), &word[i + 1..]),
            _ => return err(format!("attribute path {word:?} has no attribute name")),
        }
    } else {
        (None, word)
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let valid_name = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !valid_name(attr) {
        return err(format!("{word:?} is not a valid attribute path"));
    }
    if let Some(sub) = sub
        && !valid_name(sub)
    {
        return err(format!("{word:?} is not a valid attribute path"));
    }
    Ok(AttrPath {
        urn,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

/// Parses a filter expression.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let tokens = lex(input)?;
    if tokens.is_empty() {
        return err("empty filter");
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let filter = parser.or_expr(false)?;
    if parser.pos < parser.tokens.len() {
        return err(format!(
            "unexpected {} after a complete expression",
            parser.describe(parser.pos)
        ));
    }
    Ok(filter)
}

/// Parses the filter inside `[...]` of a PATCH path: the same grammar.
pub(crate) fn parse_value_filter(input: &str) -> Result<Filter, FilterError> {
    parse(input)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn describe(&self, pos: usize) -> String {
        match self.tokens.get(pos) {
            None => "end of filter".into(),
            Some(Token::LParen) => "\"(\"".into(),
            Some(Token::RParen) => "\")\"".into(),
            Some(Token::LBracket) => "\"[\"".into(),
            Some(Token::RBracket) => "\"]\"".into(),
            Some(Token::Str(s)) => format!("string {s:?}"),
            Some(Token::Word(w)) => format!("{w:?}"),
        }
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!("filter nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), FilterError> {
        if self.tokens.get(self.pos) == Some(&token) {
            self.pos += 1;
            Ok(())
        } else {
            err(format!(
                "expected {what}, found {}",
                self.describe(self.pos)
            ))
        }
    }

    /// `inside_value_path`: sub-filters of `attr[...]` may not nest another `[`.
    fn or_expr(&mut self, inside_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.and_expr(inside_value_path)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and_expr(inside_value_path)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, inside_value_path: bool) -> Result<Filter, FilterError> {
        let mut left = self.unary(inside_value_path)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary(inside_value_path)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, inside_value_path: bool) -> Result<Filter, FilterError> {
        self.enter()?;
        let result = self.unary_inner(inside_value_path);
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self, inside_value_path: bool) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") && self.tokens.get(self.pos + 1) == Some(&Token::LParen) {
            self.pos += 2;
            let inner = self.or_expr(inside_value_path)?;
            self.expect(Token::RParen, "\")\" closing not(…)")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.tokens.get(self.pos).cloned() {
            Some(Token::LParen) => {
                self.pos += 1;
                let inner = self.or_expr(inside_value_path)?;
                self.expect(Token::RParen, "\")\"")?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                self.pos += 1;
                let path = parse_attr_path(&word)?;
                if self.tokens.get(self.pos) == Some(&Token::LBracket) {
                    if inside_value_path {
                        return err("a value filter cannot contain another \"[\"");
                    }
                    return self.value_path(path);
                }
                self.attr_exp(path)
            }
            _ => err(format!(
                "expected an attribute path, \"(\" or \"not\", found {}",
                self.describe(self.pos)
            )),
        }
    }

    fn value_path(&mut self, attr: AttrPath) -> Result<Filter, FilterError> {
        if attr.sub.is_some() {
            return err(format!(
                "{attr}[…]: a value filter applies to an attribute, not a sub-attribute"
            ));
        }
        self.pos += 1; // "["
        self.enter()?;
        let inner = self.or_expr(true)?;
        self.depth -= 1;
        self.expect(Token::RBracket, "\"]\"")?;
        let mut filter = inner;
        // Entra ID sends `emails[type eq "work"].value eq "x"`; RFC 7644 has no such
        // form, but its meaning is unambiguous: the same element matches both.
        if let Some(Token::Word(w)) = self.tokens.get(self.pos)
            && let Some(sub) = w.strip_prefix('.')
        {
            let sub = sub.to_string();
            self.pos += 1;
            let sub_path = parse_attr_path(&sub)?;
            if sub_path.urn.is_some() || sub_path.sub.is_some() {
                return err(format!("\"].{sub}\" is not a sub-attribute name"));
            }
            let trailing = self.attr_exp(sub_path)?;
            filter = Filter::And(Box::new(filter), Box::new(trailing));
        }
        Ok(Filter::ValuePath {
            attr,
            filter: Box::new(filter),
        })
    }

    fn attr_exp(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        let Some(Token::Word(op_word)) = self.tokens.get(self.pos).cloned() else {
            return err(format!(
                "expected an operator after {path}, found {}",
                self.describe(self.pos)
            ));
        };
        self.pos += 1;
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&op_word) else {
            return err(format!(
                "unknown operator {op_word:?} (expected eq, ne, co, sw, ew, gt, ge, lt, le or pr)"
            ));
        };
        let value = match self.tokens.get(self.pos).cloned() {
            Some(Token::Str(s)) => CompValue::Str(s),
            Some(Token::Word(w)) => match w.as_str() {
                "true" => CompValue::Bool(true),
                "false" => CompValue::Bool(false),
                "null" => CompValue::Null,
                _ => match serde_json::from_str::<serde_json::Number>(&w) {
                    Ok(n) => CompValue::Number(n),
                    Err(_) => {
                        return err(format!(
                            "comparison value {w:?} must be a quoted string, a number, true, false or null"
                        ));
                    }
                },
            },
            _ => {
                return err(format!(
                    "expected a value after {path} {op_word}, found {}",
                    self.describe(self.pos)
                ));
            }
        };
        self.pos += 1;
        if matches!(value, CompValue::Null | CompValue::Bool(_))
            && !matches!(op, CompareOp::Eq | CompareOp::Ne)
        {
            return err(format!(
                "{op_word} cannot compare with {value:?}; only eq and ne can"
            ));
        }
        Ok(Filter::Compare { path, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> AttrPath {
        parse_attr_path(s).unwrap()
    }

    fn eq(p: &str, v: &str) -> Filter {
        Filter::Compare {
            path: path(p),
            op: CompareOp::Eq,
            value: CompValue::Str(v.into()),
        }
    }

    #[test]
    fn parses_the_rfc_examples() {
        for f in [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ] {
            parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let f = parse(r#"a eq "1" or b eq "2" and not (c eq "3")"#).unwrap();
        assert_eq!(
            f,
            Filter::Or(
                Box::new(eq("a", "1")),
                Box::new(Filter::And(
                    Box::new(eq("b", "2")),
                    Box::new(Filter::Not(Box::new(eq("c", "3"))))
                ))
            )
        );
    }

    #[test]
    fn urn_qualified_paths_split_at_the_last_colon() {
        let p = path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(
            p.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.attr, "manager");
        assert_eq!(p.sub.as_deref(), Some("value"));
    }

    #[test]
    fn entra_trailing_sub_attribute_joins_the_value_filter() {
        let f = parse(r#"emails[type eq "work"].value eq "a@b.c""#).unwrap();
        assert_eq!(
            f,
            Filter::ValuePath {
                attr: path("emails"),
                filter: Box::new(Filter::And(
                    Box::new(eq("type", "work")),
                    Box::new(eq("value", "a@b.c"))
                ))
            }
        );
    }

    #[test]
    fn refuses_malformed_filters_with_a_reason() {
        for (f, why) in [
            ("", "empty"),
            ("userName", "expected an operator"),
            (r#"userName xx "a""#, "unknown operator"),
            (r#"userName eq"#, "expected a value"),
            (r#"userName eq john"#, "must be a quoted string"),
            (r#"userName eq "a" and"#, "expected an attribute path"),
            (r#"(userName eq "a""#, "expected \")\""),
            (r#"userName eq "a")"#, "unexpected"),
            (r#"emails[type eq "a""#, "expected \"]\""),
            (r#"emails[types[x eq "a"]]"#, "cannot contain another"),
            (r#"userName eq "unterminated"#, "unterminated"),
            (r#"active gt true"#, "only eq and ne"),
            (r#"1abc eq "x""#, "not a valid attribute path"),
        ] {
            let e = parse(f).expect_err(f);
            assert!(e.0.contains(why), "{f}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}a pr{}", "(".repeat(1000), ")".repeat(1000));
        assert!(parse(&deep).unwrap_err().0.contains("nested deeper"));
        let nots = format!("{}a pr{}", "not (".repeat(40), ")".repeat(40));
        assert!(parse(&nots).is_err());
    }

    #[test]
    fn string_escapes_are_decoded() {
        let f = parse(r#"displayName eq "a \"quoted\" \u00e9""#).unwrap();
        assert_eq!(f, eq("displayName", "a \"quoted\" é"));
    }
}
