//! Attribute definitions as stored in `attributes(id, definition jsonb)`,
//! parsed and validated without a database. Field names and defaults follow
//! the stitching component's documentation (see the README).

use anyhow::{bail, Result};
use serde::Deserialize;

/// How the values of an attribute are aggregated per customer entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Avg,
    First,
    Last,
    LeastFrequent,
    MostFrequent,
    List,
    Max,
    Min,
    NumOfUnique,
    Sum,
    Value,
    Custom,
}

impl Kind {
    pub const ALL: &'static [(&'static str, Kind)] = &[
        ("avg", Kind::Avg),
        ("first", Kind::First),
        ("last", Kind::Last),
        ("least_frequent", Kind::LeastFrequent),
        ("most_frequent", Kind::MostFrequent),
        ("list", Kind::List),
        ("max", Kind::Max),
        ("min", Kind::Min),
        ("num_of_unique", Kind::NumOfUnique),
        ("sum", Kind::Sum),
        ("value", Kind::Value),
        ("custom", Kind::Custom),
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        Kind::ALL.iter().find(|(_, k)| *k == self).unwrap().0
    }

    /// Numeric types skip (and count) values that are not numbers.
    pub fn numeric(self) -> bool {
        matches!(self, Kind::Avg | Kind::Sum | Kind::Min | Kind::Max)
    }

    /// Types that order values by event time (then event id).
    pub fn timed(self) -> bool {
        matches!(self, Kind::First | Kind::Last)
    }

    /// Types that use the weights.
    pub fn weighted(self) -> bool {
        matches!(self, Kind::MostFrequent | Kind::LeastFrequent)
    }
}

/// The JSON document exactly as stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
    outer_value: Option<String>,
    weight: Option<serde_json::Value>,
    outer_weight: Option<serde_json::Value>,
    filter: Option<String>,
    outer_filter: Option<String>,
    sources: Option<Vec<String>>,
    types: Option<Vec<String>>,
    versions: Option<Vec<String>>,
    query: Option<String>,
}

/// A validated definition. Empty strings mean "not set"; defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub id: String,
    pub kind: Kind,
    /// Expression over the event's columns (`payload`, `source_id`, ...).
    pub value: String,
    /// Expression over `value` (the inner value); `None` = `value` itself.
    pub outer_value: Option<String>,
    /// `None` = 1.
    pub weight: Option<String>,
    /// `None` = 1.
    pub outer_weight: Option<String>,
    pub filter: Option<String>,
    pub outer_filter: Option<String>,
    pub sources: Vec<String>,
    pub types: Vec<String>,
    pub versions: Vec<String>,
    /// Custom attributes: the query over `base`.
    pub query: String,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Weights may be written as JSON numbers (`1`) or SQL expressions (`"1"`).
fn weight_expr(id: &str, field: &str, v: Option<serde_json::Value>) -> Result<Option<String>> {
    let s = match v {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.trim().to_string(),
        Some(other) => bail!(
            "attribute \"{id}\": \"{field}\" must be an SQL expression (a string) or a number, got {other}"
        ),
    };
    Ok(if s.is_empty() || s == "1" {
        None
    } else {
        Some(s)
    })
}

/// Removes trailing semicolons and blanks (a common habit in saved queries).
pub fn trim_query(q: &str) -> String {
    q.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .trim_start()
        .to_string()
}

impl Definition {
    /// Parses the stored JSON of attribute `id`. Errors name the attribute
    /// and the field.
    pub fn parse(id: &str, doc: Option<&serde_json::Value>) -> Result<Definition> {
        let Some(doc) = doc.filter(|d| !d.is_null()) else {
            bail!("attribute \"{id}\": the definition is empty; set it to a JSON object with at least \"type\" and \"value\"");
        };
        let raw: Raw = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                anyhow::anyhow!("attribute \"{id}\": {inner}")
            } else {
                anyhow::anyhow!("attribute \"{id}\": field \"{path}\": {inner}")
            }
        })?;
        if let Some(doc_id) = &raw.id {
            if doc_id != id {
                bail!("attribute \"{id}\": the definition says \"id\": \"{doc_id}\"; make it match the row id or remove it");
            }
        }
        let Some(kind_name) = raw.kind.as_deref() else {
            bail!(
                "attribute \"{id}\": missing field \"type\" (one of {})",
                type_list()
            );
        };
        let Some(kind) = Kind::parse(kind_name.trim()) else {
            bail!(
                "attribute \"{id}\": unknown type \"{kind_name}\"; expected one of {}",
                type_list()
            );
        };
        let value = nonempty(raw.value);
        let query = nonempty(raw.query).map(|q| trim_query(&q));
        if kind == Kind::Custom {
            let Some(query) = query else {
                bail!("attribute \"{id}\": type \"custom\" needs a \"query\" over the table base returning one column named value");
            };
            let stray: Vec<&str> = [
                ("value", value.is_some()),
                ("outer_value", raw.outer_value.is_some()),
                ("weight", raw.weight.is_some()),
                ("outer_weight", raw.outer_weight.is_some()),
                ("filter", nonempty(raw.filter.clone()).is_some()),
                ("outer_filter", nonempty(raw.outer_filter.clone()).is_some()),
                (
                    "sources",
                    raw.sources.as_ref().is_some_and(|v| !v.is_empty()),
                ),
                ("types", raw.types.as_ref().is_some_and(|v| !v.is_empty())),
                (
                    "versions",
                    raw.versions.as_ref().is_some_and(|v| !v.is_empty()),
                ),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| n)
            .collect();
            if !stray.is_empty() {
                bail!(
                    "attribute \"{id}\": type \"custom\" uses only \"query\"; remove {} (filter events inside the query instead)",
                    stray.join(", ")
                );
            }
            return Ok(Definition {
                id: id.to_string(),
                kind,
                value: String::new(),
                outer_value: None,
                weight: None,
                outer_weight: None,
                filter: None,
                outer_filter: None,
                sources: Vec::new(),
                types: Vec::new(),
                versions: Vec::new(),
                query,
            });
        }
        if query.is_some() {
            bail!("attribute \"{id}\": \"query\" is only used by type \"custom\"; remove it or change the type");
        }
        let Some(value) = value else {
            bail!("attribute \"{id}\": missing field \"value\" (an SQL expression over the event, e.g. \"payload->>'email'\")");
        };
        let outer_value = nonempty(raw.outer_value).filter(|v| v != "value");
        let outer_filter = nonempty(raw.outer_filter);
        let outer_weight = weight_expr(id, "outer_weight", raw.outer_weight)?;
        Ok(Definition {
            id: id.to_string(),
            kind,
            value,
            outer_value,
            weight: weight_expr(id, "weight", raw.weight)?,
            outer_weight,
            filter: nonempty(raw.filter),
            outer_filter,
            sources: raw.sources.unwrap_or_default(),
            types: raw.types.unwrap_or_default(),
            versions: raw.versions.unwrap_or_default(),
            query: String::new(),
        })
    }

    /// True when values go through the outer stage (an extraction from the
    /// inner value, its own weight or its own filter).
    pub fn has_outer(&self) -> bool {
        self.outer_value.is_some() || self.outer_weight.is_some() || self.outer_filter.is_some()
    }
}

fn type_list() -> String {
    Kind::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(doc: serde_json::Value) -> Result<Definition> {
        Definition::parse("a1", Some(&doc))
    }

    #[test]
    fn seed_example_parses_with_defaults() {
        let d = parse(json!({
            "id": "a1", "type": "last", "value": "payload->>'device_family'",
            "outer_value": "value", "weight": "1", "filter": "", "outer_filter": "",
            "sources": ["bank_web"], "types": ["app_signin"], "versions": ["1-0-0"]
        }))
        .unwrap();
        assert_eq!(d.kind, Kind::Last);
        assert_eq!(d.outer_value, None);
        assert_eq!(d.weight, None);
        assert_eq!(d.filter, None);
        assert!(!d.has_outer());
        assert_eq!(d.sources, ["bank_web"]);
    }

    #[test]
    fn numeric_weights_and_outer_stage() {
        let d = parse(json!({"type": "most_frequent", "value": "payload->'items'",
            "outer_value": "jsonb_array_elements(value)->>'category'", "weight": 2, "outer_weight": "1"}))
        .unwrap();
        assert_eq!(d.weight.as_deref(), Some("2"));
        assert_eq!(d.outer_weight, None);
        assert!(d.has_outer());
    }

    #[test]
    fn custom_needs_query_only() {
        let d = parse(json!({"type": "custom", "query": "SELECT count(*) AS value FROM base;\n"}))
            .unwrap();
        assert_eq!(d.query, "SELECT count(*) AS value FROM base");
        let e = parse(json!({"type": "custom"})).unwrap_err().to_string();
        assert!(
            e.contains("attribute \"a1\"") && e.contains("\"query\""),
            "{e}"
        );
        let e = parse(json!({"type": "custom", "query": "SELECT 1 AS value", "value": "x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("remove value"), "{e}");
    }

    #[test]
    fn errors_name_the_attribute_and_the_problem() {
        let cases = [
            (
                json!({"type": "median", "value": "x"}),
                "unknown type \"median\"",
            ),
            (json!({"value": "x"}), "missing field \"type\""),
            (json!({"type": "sum"}), "missing field \"value\""),
            (
                json!({"type": "sum", "value": "x", "filtr": "y"}),
                "unknown field `filtr`",
            ),
            (
                json!({"type": "sum", "value": "x", "sources": "web"}),
                "field \"sources\"",
            ),
            (
                json!({"type": "sum", "value": "x", "id": "other"}),
                "\"id\": \"other\"",
            ),
            (
                json!({"type": "sum", "value": "x", "query": "q"}),
                "only used by type \"custom\"",
            ),
        ];
        for (doc, want) in cases {
            let e = parse(doc.clone()).unwrap_err().to_string();
            assert!(e.starts_with("attribute \"a1\""), "{e}");
            assert!(e.contains(want), "{doc}: {e}");
        }
        let e = Definition::parse("a1", None).unwrap_err().to_string();
        assert!(e.contains("definition is empty"), "{e}");
    }
}
