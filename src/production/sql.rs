//! The SQL of the production switch, built without a database: the new
//! views, renames, saved-view statements, the `production_switch` config
//! section and durations. Unit tested.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

use crate::db::{quote_ident, quote_literal, Schemas};

/// Comments on the views cdpctl creates start with this; it is how a view is
/// recognised as "ours" (the catalogue, not a flag, is the source of truth).
pub const MARKER: &str = "cdpctl go-production";

pub const EVENTS: &str = "customer_events";
pub const PIVOT: &str = "pivoted_customer_attributes";
pub const BACKUP_SUFFIX: &str = "_backup";

pub fn backup_name(name: &str) -> String {
    format!("{name}{BACKUP_SUFFIX}")
}

/// The `production_switch` section of the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `application_name`s of legacy processing sessions that must not run
    /// during a switch.
    #[serde(default = "d_legacy")]
    pub legacy_application_names: Vec<String>,
    /// Default lock timeout of a switch, a rollback and a pivot sync.
    #[serde(default = "d_lock_timeout")]
    pub lock_timeout_ms: u64,
}

fn d_legacy() -> Vec<String> {
    vec!["Meiro CPS".into()]
}
fn d_lock_timeout() -> u64 {
    5_000
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            legacy_application_names: d_legacy(),
            lock_timeout_ms: d_lock_timeout(),
        }
    }
}

impl Settings {
    pub fn from_config(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let v = serde_json::Value::Object(map.clone());
        let s: Settings = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "production_switch".to_string()
            } else {
                format!("production_switch.{path}")
            };
            anyhow!(
                "config: key \"{key}\": {}; see examples/cdpctl.json",
                e.into_inner()
            )
        })?;
        if s.lock_timeout_ms == 0 {
            bail!("config: key \"production_switch.lock_timeout_ms\": must be at least 1 (0 would wait for locks forever)");
        }
        Ok(s)
    }
}

/// Parses `500ms`, `5s`, `2m` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "ms"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid duration {text:?}: expected e.g. 500ms, 5s or 1m"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000.0,
        "m" | "min" => n * 60_000.0,
        _ => bail!("invalid duration {text:?}: unit must be ms, s or m"),
    };
    if ms < 1.0 {
        bail!("invalid duration {text:?}: must be at least 1ms");
    }
    Ok(Duration::from_millis(ms as u64))
}

/// One column of the new `pivoted_customer_attributes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrColumn {
    pub id: String,
    /// `list` attributes become `text[]` (every value, sorted); all others
    /// `text` (the value; the smallest one should a custom query return several).
    pub list: bool,
}

impl AttrColumn {
    pub fn sql_type(&self) -> &'static str {
        if self.list {
            "text[]"
        } else {
            "text"
        }
    }
}

/// Attribute ids that cannot be column names of the pivot view.
pub fn column_problems(attrs: &[AttrColumn]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for a in attrs {
        if a.id.is_empty() {
            out.push("an attribute has an empty id".to_string());
        } else if a.id.len() > 63 {
            out.push(format!(
                "attribute id {:?} is longer than 63 bytes, PostgreSQL's limit for a column name",
                a.id
            ));
        } else if a.id == "customer_entity_id" {
            out.push("attribute id \"customer_entity_id\" clashes with the key column".to_string());
        } else if !seen.insert(a.id.as_str()) {
            out.push(format!("attribute id {:?} appears twice", a.id));
        }
    }
    out
}

/// The new `customer_events`: every raw event with its customer entity
/// (NULL while the event is not stitched yet).
pub fn events_view_sql(s: &Schemas) -> String {
    format!(
        "CREATE VIEW {cdp}.{name} AS\n\
         SELECT e.id, e.source_id, e.type, e.version, e.event_time, e.payload,\n       \
         ee.entity_id AS customer_entity_id\n  \
         FROM {ce}.customer_events e\n  \
         LEFT JOIN {ps}.event_entities ee ON ee.event_id = e.id",
        cdp = s.cdp,
        name = quote_ident(EVENTS),
        ce = s.ce,
        ps = s.ps
    )
}

/// The new `pivoted_customer_attributes`: one row per customer entity, one
/// column per attribute. A filter on `customer_entity_id` is pushed into
/// the grouped subquery, so looking up one customer reads only its values.
pub fn pivot_view_sql(s: &Schemas, attrs: &[AttrColumn]) -> String {
    let mut inner = String::new();
    let mut outer = String::new();
    for a in attrs {
        let col = quote_ident(&a.id);
        let lit = quote_literal(&a.id);
        let agg = if a.list {
            format!("array_agg(value ORDER BY value) FILTER (WHERE attribute_id = {lit})")
        } else {
            format!("min(value) FILTER (WHERE attribute_id = {lit})")
        };
        inner.push_str(&format!(",\n              {agg} AS {col}"));
        outer.push_str(&format!(", v.{col}"));
    }
    format!(
        "CREATE VIEW {cdp}.{name} AS\n\
         SELECT ce.id AS customer_entity_id{outer}\n  \
         FROM {attr}.customer_entities ce\n  \
         LEFT JOIN (SELECT customer_entity_id{inner}\n               \
         FROM {attr}.customer_attributes\n              \
         GROUP BY customer_entity_id) v ON v.customer_entity_id = ce.id",
        cdp = s.cdp,
        name = quote_ident(PIVOT),
        attr = s.attr,
    )
}

/// `COMMENT ON VIEW` marking a view as created by cdpctl.
pub fn marker_comment(s: &Schemas, name: &str, what: &str) -> String {
    format!(
        "COMMENT ON VIEW {}.{} IS {}",
        s.cdp,
        quote_ident(name),
        quote_literal(&format!(
            "{MARKER}: {what}; `cdpctl rollback` restores the legacy object from {}",
            backup_name(name)
        ))
    )
}

/// The keyword `ALTER ...` / `DROP ...` needs for a relation kind.
pub fn kind_keyword(relkind: &str) -> &'static str {
    match relkind {
        "v" => "VIEW",
        "m" => "MATERIALIZED VIEW",
        "f" => "FOREIGN TABLE",
        _ => "TABLE",
    }
}

/// A relation kind in words, for messages.
pub fn kind_name(relkind: &str) -> &'static str {
    match relkind {
        "r" => "table",
        "p" => "partitioned table",
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "i" | "I" => "index",
        "S" => "sequence",
        _ => "relation",
    }
}

pub fn rename_sql(schema_q: &str, relkind: &str, from: &str, to: &str) -> String {
    format!(
        "ALTER {} {schema_q}.{} RENAME TO {}",
        kind_keyword(relkind),
        quote_ident(from),
        quote_ident(to)
    )
}

/// What the catalogue says about a view that is about to be dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSource {
    pub schema: String,
    pub name: String,
    /// `v` or `m`
    pub relkind: String,
    /// `pg_get_viewdef`, taken with `search_path = pg_catalog` so every name
    /// is schema-qualified.
    pub definition: String,
    pub options: Vec<String>,
    pub owner: String,
    pub comment: Option<String>,
    pub populated: bool,
    pub grants: Vec<String>,
    pub column_comments: Vec<String>,
    /// `CREATE INDEX` (materialized views) and `CREATE TRIGGER` (e.g.
    /// INSTEAD OF triggers) statements.
    pub indexes: Vec<String>,
}

impl ViewSource {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    pub fn kind(&self) -> &'static str {
        if self.relkind == "m" {
            "materialized view"
        } else {
            "view"
        }
    }

    pub fn drop_sql(&self) -> String {
        format!("DROP {} {}", kind_keyword(&self.relkind), self.qualified())
    }

    /// The statements that recreate the view exactly: definition, options,
    /// owner, grants, comments (and indexes of a materialized view).
    pub fn statements(&self) -> Vec<String> {
        let kw = kind_keyword(&self.relkind);
        let q = self.qualified();
        let body = self.definition.trim().trim_end_matches(';').trim_end();
        let with = if self.options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", self.options.join(", "))
        };
        let mut create = format!("CREATE {kw} {q}{with} AS\n{body}");
        if self.relkind == "m" {
            create.push_str(if self.populated {
                "\nWITH DATA"
            } else {
                "\nWITH NO DATA"
            });
        }
        let mut out = vec![
            create,
            format!("ALTER {kw} {q} OWNER TO {}", quote_ident(&self.owner)),
        ];
        out.extend(self.grants.iter().cloned());
        if let Some(c) = &self.comment {
            out.push(format!("COMMENT ON {kw} {q} IS {}", quote_literal(c)));
        }
        out.extend(self.column_comments.iter().cloned());
        out.extend(self.indexes.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn schemas() -> Schemas {
        Schemas::from_config(&Config {
            cdp_schema: "My Cdp".into(),
            ..Config::default()
        })
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = Settings::from_config(&serde_json::Map::new()).unwrap();
        assert_eq!(s, Settings::default());
        let m = serde_json::json!({"lock_timeout_ms": "x"});
        let e = Settings::from_config(m.as_object().unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("key \"production_switch.lock_timeout_ms\""),
            "{e}"
        );
        let m = serde_json::json!({"legacy_apps": []});
        let e = Settings::from_config(m.as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("unknown field `legacy_apps`"), "{e}");
    }

    #[test]
    fn pivot_sql_quotes_and_types() {
        let s = schemas();
        let sql = pivot_view_sql(
            &s,
            &[
                AttrColumn {
                    id: "email".into(),
                    list: false,
                },
                AttrColumn {
                    id: "odd \"name\"".into(),
                    list: true,
                },
            ],
        );
        assert!(sql.starts_with("CREATE VIEW \"My Cdp\".\"pivoted_customer_attributes\""));
        assert!(sql.contains("min(value) FILTER (WHERE attribute_id = 'email') AS \"email\""));
        assert!(sql.contains(
            "array_agg(value ORDER BY value) FILTER (WHERE attribute_id = 'odd \"name\"') AS \"odd \"\"name\"\"\""
        ));
        assert!(sql.contains("v.\"odd \"\"name\"\"\""));
        // no attributes: still one row per entity
        let sql = pivot_view_sql(&s, &[]);
        assert!(sql.contains("SELECT ce.id AS customer_entity_id\n"));
    }

    #[test]
    fn column_name_problems() {
        let a = |id: &str| AttrColumn {
            id: id.into(),
            list: false,
        };
        assert!(column_problems(&[a("email"), a("city")]).is_empty());
        let long = "x".repeat(64);
        let p = column_problems(&[a(&long), a("customer_entity_id"), a("")]);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("longer than 63 bytes"));
    }

    #[test]
    fn saved_view_statements() {
        let v = ViewSource {
            schema: "public".into(),
            name: "pca view".into(),
            relkind: "v".into(),
            definition: " SELECT p.a\n   FROM public.pivoted_customer_attributes p;".into(),
            options: vec!["security_barrier=true".into()],
            owner: "app owner".into(),
            comment: Some("it's used".into()),
            populated: true,
            grants: vec!["GRANT SELECT ON public.\"pca view\" TO reader".into()],
            column_comments: vec![],
            indexes: vec![],
        };
        let st = v.statements();
        assert_eq!(
            st[0],
            "CREATE VIEW \"public\".\"pca view\" WITH (security_barrier=true) AS\nSELECT p.a\n   FROM public.pivoted_customer_attributes p"
        );
        assert_eq!(
            st[1],
            "ALTER VIEW \"public\".\"pca view\" OWNER TO \"app owner\""
        );
        assert_eq!(st[2], "GRANT SELECT ON public.\"pca view\" TO reader");
        assert_eq!(
            st[3],
            "COMMENT ON VIEW \"public\".\"pca view\" IS 'it''s used'"
        );
        assert_eq!(v.drop_sql(), "DROP VIEW \"public\".\"pca view\"");
        let m = ViewSource {
            relkind: "m".into(),
            populated: false,
            ..v
        };
        assert!(m.statements()[0].ends_with("WITH NO DATA"));
        assert!(m.statements()[0].starts_with("CREATE MATERIALIZED VIEW"));
    }

    #[test]
    fn renames() {
        assert_eq!(
            rename_sql("\"public\"", "r", PIVOT, &backup_name(PIVOT)),
            "ALTER TABLE \"public\".\"pivoted_customer_attributes\" RENAME TO \"pivoted_customer_attributes_backup\""
        );
        assert_eq!(
            rename_sql("\"public\"", "v", EVENTS, &backup_name(EVENTS)),
            "ALTER VIEW \"public\".\"customer_events\" RENAME TO \"customer_events_backup\""
        );
    }
}
