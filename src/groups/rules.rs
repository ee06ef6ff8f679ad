//! Contact-group rules: the JSON condition tree, its validation, the
//! dependencies it implies and its compilation to one SQL predicate. Pure: no
//! database here, so every operator's translation is unit tested.
//!
//! A rule is evaluated over a *feature row* `e` per entity: `e.id`, one
//! `text[]` column per attribute the rules read (`"attr:<id>"`, NULL when the
//! entity has no value) and one `bigint` column per distinct activity filter
//! (`"act:<hash>"`, the count of matching events). [`features_sql`] builds
//! those rows set-based for a batch of entities; custom SQL leaves are pasted
//! as declared predicates and see the entity as `e.id`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::{quote_ident, quote_literal};

/// Operators of attribute conditions and payload filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    Exists,
}

pub const OPS: &str = "eq, ne, in, gt, gte, lt, lte, contains, exists";

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "in" => Op::In,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    fn sql_cmp(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            _ => "=",
        }
    }
}

/// A literal a condition compares with: numbers compare numerically with the
/// values that look like numbers, strings compare as text (byte order).
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Num(String),
}

/// One comparison: `op` with its operand (none for `exists`, a list for `in`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    pub op: Op,
    pub values: Vec<Lit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttrCond {
    pub attribute: String,
    pub cmp: Cmp,
}

/// A payload field filter of an activity condition (`field` is a dotted path).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCond {
    pub path: Vec<String>,
    pub cmp: Cmp,
}

/// An event type pattern: source and version may be left open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub source: Option<String>,
    pub event_type: String,
    pub version: Option<String>,
}

impl EventKey {
    /// Parses `source/type/version`, `source/type` or `type`; `*` is "any".
    pub fn parse(s: &str) -> Option<EventKey> {
        let parts: Vec<&str> = s.split('/').collect();
        let open = |p: &str| (p != "*" && !p.is_empty()).then(|| p.to_string());
        let (source, ty, version) = match parts.as_slice() {
            [t] => (None, *t, None),
            [s, t] => (open(s), *t, None),
            [s, t, v] => (open(s), *t, open(v)),
            _ => return None,
        };
        if ty.is_empty() || ty == "*" {
            return None;
        }
        Some(EventKey {
            source,
            event_type: ty.to_string(),
            version,
        })
    }

    /// True when a journal key `source/type/version` matches this pattern.
    pub fn matches(&self, key: &str) -> bool {
        let mut it = key.splitn(3, '/');
        let (s, t, v) = (it.next(), it.next(), it.next());
        t == Some(self.event_type.as_str())
            && self.source.as_deref().is_none_or(|x| Some(x) == s)
            && self.version.as_deref().is_none_or(|x| Some(x) == v)
    }
}

impl std::fmt::Display for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.source.as_deref().unwrap_or("*"),
            self.event_type,
            self.version.as_deref().unwrap_or("*")
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivityCond {
    pub event: EventKey,
    pub filters: Vec<FieldCond>,
    pub at_least: u64,
    pub at_most: Option<u64>,
    pub within_days: Option<u32>,
}

/// The "translator" leaf: an SQL predicate over `e.id` with its declared
/// dependencies (the rules engine cannot see inside it).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCond {
    pub sql: String,
    pub attributes: Vec<String>,
    pub events: Vec<EventKey>,
    pub context: Vec<String>,
    pub time: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Attr(AttrCond),
    Activity(ActivityCond),
    Sql(SqlCond),
}

/// A validation error: where in the tree (`all[1].activity`) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub leaf: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {}: {}", self.leaf, self.message)
    }
}

type PResult<T> = std::result::Result<T, RuleError>;

fn err<T>(leaf: &str, message: impl Into<String>) -> PResult<T> {
    Err(RuleError {
        leaf: if leaf.is_empty() {
            "(root)".into()
        } else {
            leaf.into()
        },
        message: message.into(),
    })
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_string()
    } else if part.starts_with('[') {
        format!("{path}{part}")
    } else {
        format!("{path}.{part}")
    }
}

fn obj<'a>(v: &'a Value, path: &str) -> PResult<&'a serde_json::Map<String, Value>> {
    v.as_object()
        .map_or_else(|| err(path, format!("expected a JSON object, got {v}")), Ok)
}

fn only_keys(m: &serde_json::Map<String, Value>, allowed: &[&str], path: &str) -> PResult<()> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return err(
                path,
                format!("unknown key \"{k}\" (expected {})", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

fn string_list(v: Option<&Value>, path: &str) -> PResult<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => err(
                    path,
                    format!("expected a list of non-empty strings, got {x}"),
                ),
            })
            .collect(),
        Some(other) => err(path, format!("expected a list of strings, got {other}")),
    }
}

fn lit(v: &Value, path: &str) -> PResult<Lit> {
    match v {
        Value::String(s) => Ok(Lit::Str(s.clone())),
        Value::Number(n) => Ok(Lit::Num(n.to_string())),
        other => err(
            path,
            format!("value must be a string or a number, got {other}"),
        ),
    }
}

fn parse_cmp(m: &serde_json::Map<String, Value>, path: &str) -> PResult<Cmp> {
    let op_name = match m.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return err(path, format!("\"op\" must be a string, got {other}")),
        None => return err(path, format!("missing \"op\" (one of {OPS})")),
    };
    let Some(op) = Op::parse(op_name) else {
        return err(
            path,
            format!("unknown operator \"{op_name}\" (expected one of {OPS})"),
        );
    };
    let value = m.get("value");
    let values = match (op, value) {
        (Op::Exists, None) => Vec::new(),
        (Op::Exists, Some(_)) => return err(path, "operator \"exists\" takes no \"value\""),
        (_, None) => return err(path, format!("operator \"{op_name}\" needs a \"value\"")),
        (Op::In, Some(Value::Array(a))) if !a.is_empty() => a
            .iter()
            .map(|x| lit(x, path))
            .collect::<PResult<Vec<_>>>()?,
        (Op::In, Some(other)) => {
            return err(
                path,
                format!("operator \"in\" needs a non-empty list, got {other}"),
            )
        }
        (Op::Contains, Some(Value::String(s))) => vec![Lit::Str(s.clone())],
        (Op::Contains, Some(other)) => {
            return err(
                path,
                format!("operator \"contains\" needs a string, got {other}"),
            )
        }
        (_, Some(v)) => vec![lit(v, path)?],
    };
    Ok(Cmp { op, values })
}

fn count(m: &serde_json::Map<String, Value>, key: &str, path: &str) -> PResult<Option<u64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).map_or_else(
            || {
                err(
                    path,
                    format!("\"{key}\" must be a non-negative integer, got {v}"),
                )
            },
            Ok,
        ),
    }
}

/// Parses and structurally validates a condition tree.
pub fn parse(v: &Value) -> PResult<Rule> {
    parse_at(v, "")
}

fn parse_at(v: &Value, path: &str) -> PResult<Rule> {
    let m = obj(v, path)?;
    let kinds = ["all", "any", "not", "attribute", "activity", "sql"];
    let present: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            return err(
                path,
                format!(
                    "a condition needs one of the keys {} (got {})",
                    kinds.join(", "),
                    m.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        }
        more => {
            return err(
                path,
                format!(
                    "a condition has exactly one kind, got {}",
                    more.join(" and ")
                ),
            )
        }
    };
    match kind {
        "all" | "any" => {
            only_keys(m, &[kind], path)?;
            let Some(items) = m[kind].as_array() else {
                return err(path, format!("\"{kind}\" must be a list of conditions"));
            };
            if items.is_empty() {
                return err(path, format!("\"{kind}\" must not be empty"));
            }
            let rules = items
                .iter()
                .enumerate()
                .map(|(i, x)| parse_at(x, &join(path, &format!("{kind}[{i}]"))))
                .collect::<PResult<Vec<_>>>()?;
            Ok(if kind == "all" {
                Rule::All(rules)
            } else {
                Rule::Any(rules)
            })
        }
        "not" => {
            only_keys(m, &["not"], path)?;
            Ok(Rule::Not(Box::new(parse_at(
                &m["not"],
                &join(path, "not"),
            )?)))
        }
        "attribute" => {
            let path = &join(path, "attribute");
            only_keys(m, &["attribute", "op", "value"], path)?;
            let attribute = match &m["attribute"] {
                Value::String(s) if !s.is_empty() => s.clone(),
                other => {
                    return err(
                        path,
                        format!("\"attribute\" must be an attribute id, got {other}"),
                    )
                }
            };
            let path = &format!("{path}({attribute})");
            Ok(Rule::Attr(AttrCond {
                cmp: parse_cmp(m, path)?,
                attribute,
            }))
        }
        "activity" => {
            only_keys(m, &["activity"], path)?;
            let path = &join(path, "activity");
            let a = obj(&m["activity"], path)?;
            only_keys(
                a,
                &[
                    "source",
                    "type",
                    "version",
                    "where",
                    "at_least",
                    "at_most",
                    "within_days",
                ],
                path,
            )?;
            let text = |k: &str| -> PResult<Option<String>> {
                match a.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                    Some(other) => err(
                        path,
                        format!("\"{k}\" must be a non-empty string, got {other}"),
                    ),
                }
            };
            let Some(event_type) = text("type")? else {
                return err(
                    path,
                    "missing \"type\" (the event type, e.g. \"page_view\")",
                );
            };
            let event = EventKey {
                source: text("source")?,
                event_type,
                version: text("version")?,
            };
            let path = &format!("{path}({event})");
            let filters = match a.get("where") {
                None => Vec::new(),
                Some(Value::Array(fs)) => {
                    fs.iter()
                        .enumerate()
                        .map(|(i, f)| {
                            let p = format!("{path}.where[{i}]");
                            let fm = obj(f, &p)?;
                            only_keys(fm, &["field", "op", "value"], &p)?;
                            let field =
                                match fm.get("field") {
                                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                                    _ => return err(
                                        &p,
                                        "missing \"field\" (a payload key, dotted for nested keys)",
                                    ),
                                };
                            let path: Vec<String> = field.split('.').map(str::to_string).collect();
                            if path.iter().any(String::is_empty) {
                                return err(&p, format!("bad field path \"{field}\""));
                            }
                            Ok(FieldCond {
                                path,
                                cmp: parse_cmp(fm, &p)?,
                            })
                        })
                        .collect::<PResult<Vec<_>>>()?
                }
                Some(other) => {
                    return err(
                        path,
                        format!("\"where\" must be a list of field conditions, got {other}"),
                    )
                }
            };
            let at_most = count(a, "at_most", path)?;
            let at_least =
                count(a, "at_least", path)?.unwrap_or(if at_most.is_some() { 0 } else { 1 });
            if let Some(max) = at_most {
                if max < at_least {
                    return err(
                        path,
                        format!("\"at_most\" ({max}) is below \"at_least\" ({at_least})"),
                    );
                }
            }
            let within_days = match count(a, "within_days", path)? {
                None => None,
                Some(0) => return err(path, "\"within_days\" must be at least 1"),
                Some(d) if d > 36_500 => return err(path, "\"within_days\" must be at most 36500"),
                Some(d) => Some(d as u32),
            };
            Ok(Rule::Activity(ActivityCond {
                event,
                filters,
                at_least,
                at_most,
                within_days,
            }))
        }
        _ => {
            only_keys(m, &["sql", "depends_on"], path)?;
            let path = &join(path, "sql");
            let sql = match &m["sql"] {
                Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
                other => {
                    return err(
                        path,
                        format!("\"sql\" must be an SQL predicate, got {other}"),
                    )
                }
            };
            if sql.contains(';') {
                return err(path, "a custom predicate is one SQL expression: no \";\"");
            }
            let Some(deps) = m.get("depends_on") else {
                return err(
                    path,
                    "a custom predicate must declare \"depends_on\": {\"attributes\": [...], \"events\": [...], \"context\": [...], \"time\": bool} so runs know when to re-evaluate it",
                );
            };
            let dp = &format!("{path}.depends_on");
            let d = obj(deps, dp)?;
            only_keys(d, &["attributes", "events", "context", "time"], dp)?;
            let events = string_list(d.get("events"), dp)?
                .iter()
                .map(|s| {
                    EventKey::parse(s).map_or_else(
                        || err(dp, format!("bad event type \"{s}\" (expected source/type/version, source/type or type)")),
                        Ok,
                    )
                })
                .collect::<PResult<Vec<_>>>()?;
            let time = match d.get("time") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return err(dp, format!("\"time\" must be true or false, got {other}"))
                }
            };
            Ok(Rule::Sql(SqlCond {
                sql,
                attributes: string_list(d.get("attributes"), dp)?,
                events,
                context: string_list(d.get("context"), dp)?,
                time,
            }))
        }
    }
}

/// What a group's membership can change with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deps {
    pub attributes: BTreeSet<String>,
    pub events: BTreeSet<EventKey>,
    pub context: BTreeSet<String>,
    /// Membership changes with time alone (activity windows, time-dependent
    /// custom predicates): recalculated in full once a day.
    pub time: bool,
}

impl Rule {
    /// Visits every leaf with its path.
    pub fn leaves(&self) -> Vec<(String, &Rule)> {
        let mut out = Vec::new();
        fn walk<'a>(r: &'a Rule, path: String, out: &mut Vec<(String, &'a Rule)>) {
            match r {
                Rule::All(rs) | Rule::Any(rs) => {
                    let k = if matches!(r, Rule::All(_)) {
                        "all"
                    } else {
                        "any"
                    };
                    for (i, x) in rs.iter().enumerate() {
                        walk(x, join(&path, &format!("{k}[{i}]")), out);
                    }
                }
                Rule::Not(x) => walk(x, join(&path, "not"), out),
                Rule::Attr(a) => {
                    out.push((format!("{}({})", join(&path, "attribute"), a.attribute), r))
                }
                Rule::Activity(a) => {
                    out.push((format!("{}({})", join(&path, "activity"), a.event), r))
                }
                Rule::Sql(_) => out.push((join(&path, "sql"), r)),
            }
        }
        walk(self, String::new(), &mut out);
        out
    }

    pub fn deps(&self) -> Deps {
        let mut d = Deps::default();
        for (_, leaf) in self.leaves() {
            match leaf {
                Rule::Attr(a) => {
                    d.attributes.insert(a.attribute.clone());
                }
                Rule::Activity(a) => {
                    d.events.insert(a.event.clone());
                    d.time |= a.within_days.is_some();
                }
                Rule::Sql(s) => {
                    d.attributes.extend(s.attributes.iter().cloned());
                    d.events.extend(s.events.iter().cloned());
                    d.context.extend(s.context.iter().cloned());
                    d.time |= s.time;
                }
                _ => {}
            }
        }
        d
    }
}

/// A group compiled for one reference time.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Boolean SQL over the feature row `e`.
    pub predicate: String,
    /// Attribute ids whose values the predicate reads (feature columns).
    pub attributes: BTreeSet<String>,
    /// Activity count columns: column name → filter over `ce` (customer_events).
    pub activities: BTreeMap<String, String>,
    pub deps: Deps,
}

/// Schema names the compiled SQL refers to (quoted) plus placeholder values.
#[derive(Debug, Clone)]
pub struct SqlEnv {
    pub schemas: crate::db::Schemas,
    pub now: DateTime<Utc>,
}

impl SqlEnv {
    fn now_lit(&self) -> String {
        format!("{}::timestamptz", quote_literal(&self.now.to_rfc3339()))
    }

    fn to_num(&self, x: &str) -> String {
        format!("{}.to_num({x})", self.schemas.audience)
    }

    /// Substitutes `{{attr}}`-style schema placeholders and `{{now}}` in a
    /// custom predicate.
    pub fn substitute(&self, sql: &str) -> String {
        self.schemas
            .substitute(sql)
            .replace("{{now}}", &self.now_lit())
    }
}

/// Feature column holding an attribute's values.
pub fn attr_column(id: &str) -> String {
    let name = format!("attr:{id}");
    if name.len() <= 60 {
        quote_ident(&name)
    } else {
        quote_ident(&format!(
            "attr#{}",
            &hex::encode(Sha256::digest(id.as_bytes()))[..16]
        ))
    }
}

fn num_lit(n: &str) -> String {
    format!("{}::numeric", quote_literal(n))
}

/// A comparison of one scalar text expression `x` (never NULL-valued result).
fn scalar_cmp(env: &SqlEnv, x: &str, cmp: &Cmp) -> String {
    let one = |l: &Lit, op: Op| -> String {
        match l {
            Lit::Str(s) => format!("{x} COLLATE \"C\" {} {}", op.sql_cmp(), quote_literal(s)),
            Lit::Num(n) => format!("{} {} {}", env.to_num(x), op.sql_cmp(), num_lit(n)),
        }
    };
    match cmp.op {
        Op::Exists => format!("{x} IS NOT NULL"),
        Op::Contains => match &cmp.values[0] {
            Lit::Str(s) => format!("strpos({x}, {}) > 0", quote_literal(s)),
            Lit::Num(n) => format!("strpos({x}, {}) > 0", quote_literal(n)),
        },
        Op::In => {
            let strs: Vec<String> = cmp
                .values
                .iter()
                .filter_map(|l| match l {
                    Lit::Str(s) => Some(quote_literal(s)),
                    _ => None,
                })
                .collect();
            let nums: Vec<String> = cmp
                .values
                .iter()
                .filter_map(|l| match l {
                    Lit::Num(n) => Some(num_lit(n)),
                    _ => None,
                })
                .collect();
            let mut parts = Vec::new();
            if !strs.is_empty() {
                parts.push(format!("{x} IN ({})", strs.join(", ")));
            }
            if !nums.is_empty() {
                parts.push(format!("{} IN ({})", env.to_num(x), nums.join(", ")));
            }
            parts.join(" OR ")
        }
        Op::Ne => unreachable!("ne is compiled as NOT eq"),
        op => one(&cmp.values[0], op),
    }
}

fn attr_sql(env: &SqlEnv, a: &AttrCond) -> String {
    let col = format!("e.{}", attr_column(&a.attribute));
    match (&a.cmp.op, a.cmp.values.first()) {
        (Op::Exists, _) => format!("coalesce(cardinality({col}) > 0, false)"),
        (Op::Ne, _) => {
            let eq = Cmp {
                op: Op::Eq,
                values: a.cmp.values.clone(),
            };
            format!(
                "NOT {}",
                attr_sql(
                    env,
                    &AttrCond {
                        attribute: a.attribute.clone(),
                        cmp: eq
                    }
                )
            )
        }
        (Op::Eq, Some(Lit::Str(s))) => {
            format!("coalesce({} = ANY ({col}), false)", quote_literal(s))
        }
        _ => format!(
            "EXISTS (SELECT 1 FROM unnest({col}) AS v(x) WHERE {})",
            scalar_cmp(env, "v.x", &a.cmp)
        ),
    }
}

fn field_sql(env: &SqlEnv, f: &FieldCond) -> String {
    let path = format!(
        "{{{}}}",
        f.path
            .iter()
            .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(",")
    );
    let x = format!("(ce.payload #>> {})", quote_literal(&path));
    match f.cmp.op {
        Op::Ne => format!(
            "NOT coalesce({}, false)",
            scalar_cmp(
                env,
                &x,
                &Cmp {
                    op: Op::Eq,
                    values: f.cmp.values.clone()
                }
            )
        ),
        _ => format!("coalesce({}, false)", scalar_cmp(env, &x, &f.cmp)),
    }
}

/// The filter over `ce` (customer_events) selecting an activity's events.
pub fn activity_filter(env: &SqlEnv, a: &ActivityCond) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &a.event.source {
        parts.push(format!("ce.source_id = {}", quote_literal(s)));
    }
    parts.push(format!("ce.type = {}", quote_literal(&a.event.event_type)));
    if let Some(v) = &a.event.version {
        parts.push(format!("ce.version = {}", quote_literal(v)));
    }
    if let Some(d) = a.within_days {
        let now = env.now_lit();
        parts.push(format!(
            "ce.event_time > {now} - interval '{d} days' AND ce.event_time <= {now}"
        ));
    }
    for f in &a.filters {
        parts.push(field_sql(env, f));
    }
    parts.join(" AND ")
}

/// Column holding the count of one activity filter (shared by equal filters).
pub fn activity_column(filter: &str) -> String {
    quote_ident(&format!(
        "act:{}",
        &hex::encode(Sha256::digest(filter.as_bytes()))[..12]
    ))
}

/// Compiles a rule for the reference time of `env`.
pub fn compile(rule: &Rule, env: &SqlEnv) -> Compiled {
    let mut c = Compiled {
        predicate: String::new(),
        attributes: BTreeSet::new(),
        activities: BTreeMap::new(),
        deps: rule.deps(),
    };
    c.predicate = compile_at(rule, env, &mut c, 0);
    c
}

fn compile_at(rule: &Rule, env: &SqlEnv, c: &mut Compiled, depth: usize) -> String {
    let pad = "  ".repeat(depth + 1);
    match rule {
        Rule::All(rs) | Rule::Any(rs) => {
            let sep = if matches!(rule, Rule::All(_)) {
                "AND"
            } else {
                "OR"
            };
            let parts: Vec<String> = rs
                .iter()
                .map(|r| compile_at(r, env, c, depth + 1))
                .collect();
            let end = "  ".repeat(depth);
            format!("(\n{pad}{}\n{end})", parts.join(&format!("\n{pad}{sep} ")))
        }
        Rule::Not(r) => format!("NOT {}", compile_at(r, env, c, depth)),
        Rule::Attr(a) => {
            c.attributes.insert(a.attribute.clone());
            format!("({})", attr_sql(env, a))
        }
        Rule::Activity(a) => {
            let filter = activity_filter(env, a);
            let col = activity_column(&filter);
            c.activities.insert(col.clone(), filter);
            let n = format!("coalesce(e.{col}, 0)");
            match a.at_most {
                Some(max) => format!("({n} >= {} AND {n} <= {max})", a.at_least),
                None => format!("({n} >= {})", a.at_least),
            }
        }
        Rule::Sql(s) => format!("coalesce(({}), false)", env.substitute(&s.sql)),
    }
}

/// Which entities a feature statement covers.
#[derive(Debug, Clone)]
pub enum Batch {
    /// Entities listed in a temp table (`id uuid`).
    Table(String),
    /// A key range of customer_entities (exclusive lower, inclusive upper bound).
    Range(Option<String>, Option<String>),
    /// One entity given by an SQL expression (such as a query parameter): the
    /// per-entity evaluation of the benchmark's baseline.
    One(String),
}

/// `CREATE TEMP TABLE <name> AS` the feature rows of a batch: one row per
/// existing entity, one column per attribute and activity filter. Attribute
/// values are read with one pass over the batch's attribute rows, activity
/// counts with one pass over the batch's matching events.
pub fn features_sql(
    env: &SqlEnv,
    name: &str,
    batch: &Batch,
    attributes: &BTreeSet<String>,
    activities: &BTreeMap<String, String>,
) -> String {
    format!(
        "CREATE TEMP TABLE {name} AS\n{}",
        features_select(env, batch, attributes, activities)
    )
}

/// The SELECT producing the feature rows of a batch.
pub fn features_select(
    env: &SqlEnv,
    batch: &Batch,
    attributes: &BTreeSet<String>,
    activities: &BTreeMap<String, String>,
) -> String {
    let s = &env.schemas;
    let (ids, attr_keep, ev_keep) = match batch {
        Batch::One(expr) => (
            format!(
                "SELECT ent.id FROM {}.customer_entities ent WHERE ent.id = {expr}",
                s.attr
            ),
            format!("ca.customer_entity_id = {expr}"),
            format!("ee.entity_id = {expr}"),
        ),
        Batch::Table(t) => (
            format!(
                "SELECT ent.id FROM {t} b JOIN {}.customer_entities ent ON ent.id = b.id",
                s.attr
            ),
            format!("ca.customer_entity_id IN (SELECT id FROM {t})"),
            format!("ee.entity_id IN (SELECT id FROM {t})"),
        ),
        Batch::Range(lo, hi) => {
            let range = |col: &str| {
                let mut r = vec!["true".to_string()];
                if let Some(lo) = lo {
                    r.push(format!("{col} > {}::uuid", quote_literal(lo)));
                }
                if let Some(hi) = hi {
                    r.push(format!("{col} <= {}::uuid", quote_literal(hi)));
                }
                r.join(" AND ")
            };
            (
                format!(
                    "SELECT ent.id FROM {}.customer_entities ent WHERE {}",
                    s.attr,
                    range("ent.id")
                ),
                range("ca.customer_entity_id"),
                range("ee.entity_id"),
            )
        }
    };
    let mut sql = "SELECT b.id".to_string();
    for a in attributes {
        let _ = write!(sql, ", av.{}", attr_column(a));
    }
    for col in activities.keys() {
        let _ = write!(sql, ", ac.{col}");
    }
    let _ = write!(sql, "\n  FROM ({ids}) b");
    if !attributes.is_empty() {
        let cols: Vec<String> = attributes
            .iter()
            .map(|a| {
                format!(
                    "array_agg(ca.value) FILTER (WHERE ca.attribute_id = {}) AS {}",
                    quote_literal(a),
                    attr_column(a)
                )
            })
            .collect();
        let list: Vec<String> = attributes.iter().map(|a| quote_literal(a)).collect();
        let _ = write!(
            sql,
            "\n  LEFT JOIN (SELECT ca.customer_entity_id AS id, {}\n      FROM {}.customer_attributes ca\n     WHERE {attr_keep} AND ca.attribute_id IN ({}) AND ca.value IS NOT NULL\n     GROUP BY 1) av ON av.id = b.id",
            cols.join(", "),
            s.attr,
            list.join(", ")
        );
    }
    if !activities.is_empty() {
        let cols: Vec<String> = activities
            .iter()
            .map(|(col, f)| format!("count(*) FILTER (WHERE {f}) AS {col}"))
            .collect();
        let any: Vec<String> = activities.values().map(|f| format!("({f})")).collect();
        let _ = write!(
            sql,
            "\n  LEFT JOIN (SELECT ee.entity_id AS id, {}\n      FROM {}.event_entities ee JOIN {}.customer_events ce ON ce.id = ee.event_id\n     WHERE {ev_keep} AND ({})\n     GROUP BY 1) ac ON ac.id = b.id",
            cols.join(", "),
            s.ps,
            s.ce,
            any.join(" OR ")
        );
    }
    sql
}

/// A stable fingerprint of a definition (canonical JSON).
pub fn definition_hash(v: &Value) -> String {
    fn canon(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, x)| (k, canon(x))).collect();
                Value::Object(sorted.into_iter().map(|(k, x)| (k.clone(), x)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
            x => x.clone(),
        }
    }
    hex::encode(&Sha256::digest(canon(v).to_string().as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> SqlEnv {
        SqlEnv {
            schemas: crate::db::Schemas::from_config(&crate::config::Config::default()),
            now: DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn compiled(v: Value) -> Compiled {
        compile(&parse(&v).unwrap(), &env())
    }

    #[test]
    fn attribute_operators_translate() {
        let p = |op: &str, v: Value| {
            let mut leaf = json!({"attribute": "country", "op": op});
            if !v.is_null() {
                leaf["value"] = v;
            }
            compiled(leaf).predicate
        };
        assert_eq!(
            p("eq", json!("CZ")),
            "(coalesce('CZ' = ANY (e.\"attr:country\"), false))"
        );
        assert_eq!(
            p("ne", json!("CZ")),
            "(NOT coalesce('CZ' = ANY (e.\"attr:country\"), false))"
        );
        assert!(p("eq", json!(5)).contains("\"audience_data\".to_num(v.x) = '5'::numeric"));
        assert!(p("in", json!(["CZ", 1]))
            .contains("v.x IN ('CZ') OR \"audience_data\".to_num(v.x) IN ('1'::numeric)"));
        assert!(p("gt", json!(10.5)).contains("to_num(v.x) > '10.5'::numeric"));
        assert!(p("gte", json!(1)).contains(">= '1'::numeric"));
        assert!(p("lt", json!("m")).contains("v.x COLLATE \"C\" < 'm'"));
        assert!(p("lte", json!(2)).contains("<= '2'::numeric"));
        assert!(p("contains", json!("o'k")).contains("strpos(v.x, 'o''k') > 0"));
        assert_eq!(
            p("exists", Value::Null),
            "(coalesce(cardinality(e.\"attr:country\") > 0, false))"
        );
    }

    #[test]
    fn nesting_and_activity() {
        let c = compiled(json!({"all": [
            {"attribute": "country", "op": "eq", "value": "CZ"},
            {"not": {"any": [
                {"activity": {"source": "web", "type": "page_view", "where": [{"field": "page", "op": "eq", "value": "/pricing"}],
                              "at_least": 3, "within_days": 30}},
                {"activity": {"type": "purchase", "at_most": 0}}
            ]}}
        ]}));
        assert!(c.predicate.contains("AND NOT (\n"), "{}", c.predicate);
        assert!(c.predicate.contains(" >= 3)"));
        assert!(c.predicate.contains(">= 0 AND "));
        assert_eq!(c.activities.len(), 2);
        let f = c
            .activities
            .values()
            .find(|f| f.contains("page_view"))
            .unwrap();
        assert!(
            f.contains("ce.source_id = 'web' AND ce.type = 'page_view'"),
            "{f}"
        );
        assert!(f.contains(
            "ce.event_time > '2026-11-01T12:00:00+00:00'::timestamptz - interval '30 days'"
        ));
        assert!(
            f.contains("coalesce((ce.payload #>> '{\"page\"}') COLLATE \"C\" = '/pricing', false)"),
            "{f}"
        );
        assert!(c.deps.time);
        assert_eq!(c.deps.attributes.iter().collect::<Vec<_>>(), ["country"]);
        assert_eq!(c.deps.events.len(), 2);
    }

    #[test]
    fn equal_activity_filters_share_a_column() {
        let c = compiled(json!({"any": [
            {"activity": {"type": "purchase", "at_least": 2}},
            {"activity": {"type": "purchase", "at_most": 5}}
        ]}));
        assert_eq!(c.activities.len(), 1);
    }

    #[test]
    fn custom_predicates_are_pasted_with_declared_deps() {
        let c = compiled(
            json!({"sql": "e.id IN (SELECT customer_entity_id FROM {{attr}}.customer_attributes WHERE modified > {{now}} - interval '1 day')",
            "depends_on": {"attributes": ["x"], "events": ["web/signin"], "context": ["k"], "time": true}}),
        );
        assert!(c.predicate.starts_with("coalesce((e.id IN (SELECT customer_entity_id FROM \"cdp_attr\".customer_attributes WHERE modified > '2026-11-01T12:00:00+00:00'::timestamptz"), "{}", c.predicate);
        assert!(c.deps.time);
        assert_eq!(
            c.deps.events.iter().next().unwrap().to_string(),
            "web/signin/*"
        );
        assert!(c.deps.context.contains("k"));
    }

    #[test]
    fn errors_name_the_leaf() {
        let e = |v: Value| parse(&v).unwrap_err().to_string();
        assert_eq!(
            e(json!({"all": [{"attribute": "a", "op": "eq", "value": 1}, {"attribute": "b", "op": "like", "value": "x"}]})),
            "rule all[1].attribute(b): unknown operator \"like\" (expected one of eq, ne, in, gt, gte, lt, lte, contains, exists)"
        );
        assert!(e(json!({"any": []})).contains("must not be empty"));
        assert!(e(json!({"not": {"activity": {"source": "web"}}}))
            .starts_with("rule not.activity: missing \"type\""));
        assert!(e(json!({"sql": "true"})).contains("must declare \"depends_on\""));
        assert!(e(json!({"sql": "true; drop table x", "depends_on": {}})).contains("no \";\""));
        assert!(
            e(json!({"attribute": "a", "op": "exists", "value": 1})).contains("takes no \"value\"")
        );
        assert!(e(json!({"attribute": "a", "op": "in", "value": []})).contains("non-empty list"));
        assert!(
            e(json!({"activity": {"type": "x", "at_least": 3, "at_most": 1}})).contains("below")
        );
        assert!(
            e(json!({"attribute": "a", "op": "eq", "value": 1, "extra": 2}))
                .contains("unknown key \"extra\"")
        );
        assert!(e(json!({"all": [{"any": [{"foo": 1}]}]}))
            .starts_with("rule all[0].any[0]: a condition needs one of"));
    }

    #[test]
    fn event_keys_match_journal_items() {
        let k = EventKey::parse("web/page_view").unwrap();
        assert!(k.matches("web/page_view/1-0-0"));
        assert!(!k.matches("app/page_view/1-0-0"));
        assert!(EventKey::parse("page_view")
            .unwrap()
            .matches("app/page_view/2"));
        assert!(!EventKey::parse("web/page_view/2")
            .unwrap()
            .matches("web/page_view/1"));
        assert!(EventKey::parse("a/b/c/d").is_none());
    }

    #[test]
    fn features_cover_batch_attributes_and_activities() {
        let c = compiled(json!({"all": [
            {"attribute": "country", "op": "eq", "value": "CZ"},
            {"activity": {"type": "purchase"}}
        ]}));
        let sql = features_sql(
            &env(),
            "f",
            &Batch::Table("cand".into()),
            &c.attributes,
            &c.activities,
        );
        assert!(sql.contains(
            "array_agg(ca.value) FILTER (WHERE ca.attribute_id = 'country') AS \"attr:country\""
        ));
        assert!(sql.contains("ca.customer_entity_id IN (SELECT id FROM cand)"));
        assert!(sql.contains("count(*) FILTER (WHERE ce.type = 'purchase') AS \"act:"));
        let sql = features_sql(
            &env(),
            "f",
            &Batch::Range(None, Some("00000000-0000-0000-0000-000000000001".into())),
            &c.attributes,
            &BTreeMap::new(),
        );
        assert!(sql.contains("ent.id <= '00000000-0000-0000-0000-000000000001'::uuid"));
        assert!(!sql.contains("event_entities"));
    }

    #[test]
    fn definition_hash_ignores_key_order() {
        assert_eq!(
            definition_hash(&json!({"attribute": "a", "op": "eq", "value": 1})),
            definition_hash(&json!({"value": 1, "op": "eq", "attribute": "a"}))
        );
    }
}
