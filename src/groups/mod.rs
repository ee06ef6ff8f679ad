//! Rule-based contact groups: definitions, validation, and the
//! `calc-audiences` job that keeps memberships current. Rules compile to SQL
//! (see [`rules`]); a run consumes the entity change journal, re-evaluates
//! only the (group, entity) pairs whose entity changed in something the group
//! depends on, and applies membership changes in one transaction.

pub mod rules;

mod engine;

pub use engine::{run, RunOptions, RunReport};

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::commands::status::Item;
use crate::db::{Db, PgResultExt};
use rules::{Compiled, Rule, SqlEnv};

/// The `audiences.groups` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Entities evaluated per batch.
    #[serde(default = "d_batch")]
    pub batch_size: u64,
    /// The attribute whose value is an entity's contact id in campaign audiences.
    #[serde(default = "d_contact")]
    pub contact_id_attribute: String,
    /// Groups whose membership changes with time alone are recalculated in
    /// full when their last full recalculation is this old.
    #[serde(default = "d_refresh")]
    pub time_window_refresh_hours: u64,
}

fn d_batch() -> u64 {
    100_000
}
fn d_contact() -> String {
    "contact_id".into()
}
fn d_refresh() -> u64 {
    24
}

impl Default for Settings {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("defaults")
    }
}

impl Settings {
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self> {
        let Some(v) = cfg.audiences.get("groups") else {
            return Ok(Self::default());
        };
        let s: Settings = serde_path_to_error::deserialize(v.clone()).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." || path.is_empty() {
                "audiences.groups".to_string()
            } else {
                format!("audiences.groups.{path}")
            };
            anyhow!(
                "config: key \"{key}\": {}; see examples/cdpctl.json",
                e.into_inner()
            )
        })?;
        if s.batch_size == 0 {
            bail!("config: key \"audiences.groups.batch_size\": must be at least 1");
        }
        if s.contact_id_attribute.is_empty() {
            bail!("config: key \"audiences.groups.contact_id_attribute\": must name an attribute");
        }
        Ok(s)
    }
}

/// A group as stored in `<audience>.groups`.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub definition: Value,
    pub rule: Rule,
    pub campaign_id: Option<i64>,
    pub evaluated_hash: Option<String>,
    pub last_full_at: Option<DateTime<Utc>>,
    pub context_stamp: Option<String>,
    pub member_count: i64,
}

/// A group as written in a definitions file (`--define FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub rule: Value,
    #[serde(default)]
    pub campaign_id: Option<i64>,
    #[serde(default = "d_true")]
    pub enabled: bool,
}

fn d_true() -> bool {
    true
}

/// Parses a definitions file: a list of groups or `{"groups": [...]}`.
pub fn parse_specs(text: &str, origin: &str) -> Result<Vec<GroupSpec>> {
    let v: Value =
        serde_json::from_str(text).with_context(|| format!("{origin}: not valid JSON"))?;
    let list = match v {
        Value::Object(mut m) if m.contains_key("groups") && m.len() == 1 => {
            m.remove("groups").unwrap()
        }
        other => other,
    };
    let specs: Vec<GroupSpec> = serde_path_to_error::deserialize(list).map_err(|e| {
        let path = e.path().to_string();
        anyhow!(
            "{origin}: at {path}: {}; expected a list of {{\"id\", \"name\", \"rule\", \"campaign_id\", \"enabled\"}}",
            e.into_inner()
        )
    })?;
    let mut seen = BTreeSet::new();
    for s in &specs {
        if s.id.trim().is_empty() {
            bail!("{origin}: a group has an empty \"id\"");
        }
        if !seen.insert(s.id.clone()) {
            bail!("{origin}: group \"{}\" is defined twice", s.id);
        }
    }
    Ok(specs)
}

/// Loads the groups (all, or enabled only). A stored definition that no
/// longer parses is an error naming the group.
pub async fn load_groups(db: &Db, enabled_only: bool) -> Result<Vec<Group>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT id, name, definition, campaign_id, evaluated_hash, last_full_at, context_stamp, member_count
                   FROM {{audience}}.groups WHERE enabled OR NOT $1 ORDER BY id",
            ),
            &[&enabled_only],
        )
        .await
        .pg_context(|| "loading group definitions".into())?;
    rows.iter()
        .map(|r| {
            let id: String = r.get(0);
            let definition: Value = r.get(2);
            let rule = rules::parse(&definition).map_err(|e| {
                anyhow!(
                    "group \"{id}\": {e}; fix the definition (cdpctl calc-audiences --define FILE)"
                )
            })?;
            Ok(Group {
                name: r.get(1),
                rule,
                campaign_id: r.get(3),
                evaluated_hash: r.get(4),
                last_full_at: r.get(5),
                context_stamp: r.get(6),
                member_count: r.get(7),
                definition,
                id,
            })
        })
        .collect()
}

/// Validates groups against the database: unknown attributes, event types
/// and context keys, and SQL errors of custom predicates (prepared on the
/// evaluation session, never executed). Each message names the group and
/// the leaf.
pub async fn validate(
    db: &Db,
    settings: &Settings,
    groups: &[(String, Rule, Option<i64>)],
) -> Result<Vec<String>> {
    let s = &db.schemas;
    let attrs: BTreeSet<String> = db
        .client
        .query(&s.substitute("SELECT id FROM {{attr}}.attributes"), &[])
        .await
        .pg_context(|| "reading attribute definitions".into())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let events: Vec<String> = db
        .client
        .query(
            &s.substitute("SELECT source_id || '/' || type || '/' || version FROM {{cdp}}.events"),
            &[],
        )
        .await
        .pg_context(|| "reading the event catalogue".into())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let context: BTreeSet<String> = db
        .client
        .query(&s.substitute("SELECT key FROM {{attr}}.context"), &[])
        .await
        .pg_context(|| "reading context keys".into())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let env = SqlEnv {
        schemas: s.clone(),
        now: Utc::now(),
    };
    let mut errors = Vec::new();
    let eval = db.eval().await?;
    for (id, rule, campaign) in groups {
        let mut bad =
            |leaf: &str, msg: String| errors.push(format!("group \"{id}\": rule {leaf}: {msg}"));
        for (leaf, r) in rule.leaves() {
            let (attr_refs, event_refs, ctx_refs) = match r {
                Rule::Attr(a) => (vec![a.attribute.clone()], vec![], vec![]),
                Rule::Activity(a) => (vec![], vec![a.event.clone()], vec![]),
                Rule::Sql(q) => (q.attributes.clone(), q.events.clone(), q.context.clone()),
                _ => continue,
            };
            for a in attr_refs {
                if !attrs.contains(&a) {
                    bad(
                        &leaf,
                        format!(
                            "unknown attribute \"{a}\" (not in {}.attributes)",
                            s.raw_name("attr")
                        ),
                    );
                }
            }
            for e in event_refs {
                if !events.iter().any(|k| e.matches(k)) {
                    bad(
                        &leaf,
                        format!(
                            "unknown event type \"{e}\" (no match in {}.events)",
                            s.raw_name("cdp")
                        ),
                    );
                }
            }
            for k in ctx_refs {
                if !context.contains(&k) {
                    bad(
                        &leaf,
                        format!(
                            "unknown context key \"{k}\" (not in {}.context)",
                            s.raw_name("attr")
                        ),
                    );
                }
            }
            if let Rule::Sql(q) = r {
                let probe = format!(
                    "SELECT e.id FROM (SELECT NULL::uuid AS id) e WHERE coalesce(({}), false)",
                    env.substitute(&q.sql)
                );
                if let Err(e) = eval.prepare(&probe).await {
                    let pe = crate::db::PgError::from(e);
                    bad(
                        &leaf,
                        format!("SQL error: {pe} (the predicate sees the entity as e.id)"),
                    );
                }
            }
        }
        if campaign.is_some() && !attrs.contains(&settings.contact_id_attribute) {
            errors.push(format!(
                "group \"{id}\": linked to campaign {} but the contact id attribute \"{}\" (audiences.groups.contact_id_attribute) is not in {}.attributes",
                campaign.unwrap(),
                settings.contact_id_attribute,
                s.raw_name("attr")
            ));
        }
    }
    Ok(errors)
}

/// Validates and saves definitions (insert or replace) in one transaction.
/// Nothing is saved when any group is invalid.
pub async fn define(
    db: &mut Db,
    settings: &Settings,
    specs: &[GroupSpec],
    dry_run: bool,
) -> Result<Value> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for s in specs {
        match rules::parse(&s.rule) {
            Ok(r) => parsed.push((s.id.clone(), r, s.campaign_id)),
            Err(e) => errors.push(format!("group \"{}\": {e}", s.id)),
        }
    }
    errors.extend(validate(db, settings, &parsed).await?);
    if !errors.is_empty() {
        bail!(
            "{} invalid group definition(s), nothing saved:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    if !dry_run {
        let tx = db.client.transaction().await?;
        let sql = db.schemas.substitute(
            "INSERT INTO {{audience}}.groups (id, name, definition, campaign_id, enabled)
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int8[], $5::bool[])
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, definition = EXCLUDED.definition,
                 campaign_id = EXCLUDED.campaign_id, enabled = EXCLUDED.enabled, modified = now()",
        );
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let defs: Vec<Value> = specs.iter().map(|s| s.rule.clone()).collect();
        let camps: Vec<Option<i64>> = specs.iter().map(|s| s.campaign_id).collect();
        let en: Vec<bool> = specs.iter().map(|s| s.enabled).collect();
        tx.execute(&sql, &[&ids, &names, &defs, &camps, &en])
            .await
            .pg_context(|| "saving group definitions".into())?;
        tx.commit().await.context("committing group definitions")?;
    }
    Ok(json!({"defined": ids, "dry_run": dry_run}))
}

/// `--check`: every stored group, parsed and validated.
pub async fn check(db: &Db, settings: &Settings) -> Result<(usize, Vec<String>)> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT id, definition, campaign_id FROM {{audience}}.groups ORDER BY id",
            ),
            &[],
        )
        .await
        .pg_context(|| "loading group definitions".into())?;
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for r in &rows {
        let id: String = r.get(0);
        match rules::parse(&r.get::<_, Value>(1)) {
            Ok(rule) => parsed.push((id, rule, r.get(2))),
            Err(e) => errors.push(format!("group \"{id}\": {e}")),
        }
    }
    errors.extend(validate(db, settings, &parsed).await?);
    Ok((rows.len(), errors))
}

/// The SQL a run executes for one group: its feature statement (computed
/// once per batch for all groups evaluated together) and its predicate.
pub fn explain_sql(db_schemas: &crate::db::Schemas, group: &Group, now: DateTime<Utc>) -> String {
    let env = SqlEnv {
        schemas: db_schemas.clone(),
        now,
    };
    let c: Compiled = rules::compile(&group.rule, &env);
    let d = &c.deps;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut s = format!(
        "-- group \"{}\"{}\n",
        group.id,
        if group.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", group.name)
        }
    );
    s.push_str(&format!(
        "-- depends on attributes: {}\n",
        list(d.attributes.iter().cloned().collect())
    ));
    s.push_str(&format!(
        "-- depends on events: {}\n",
        list(d.events.iter().map(|e| e.to_string()).collect())
    ));
    s.push_str(&format!(
        "-- depends on context keys: {}\n",
        list(d.context.iter().cloned().collect())
    ));
    s.push_str(&format!(
        "-- changes with time alone: {}\n-- reference time: {}\n\n",
        if d.time {
            "yes (recalculated in full daily)"
        } else {
            "no"
        },
        now.to_rfc3339()
    ));
    s.push_str("-- 1. feature rows of a batch (the listed entities; a full run uses key ranges)\n");
    s.push_str(&rules::features_sql(
        &env,
        "batch_features",
        &rules::Batch::Table("batch".into()),
        &c.attributes,
        &c.activities,
    ));
    s.push_str(";\n\n-- 2. the members among them\n");
    s.push_str(&format!(
        "SELECT e.id FROM batch_features e WHERE {};\n",
        c.predicate
    ));
    s
}

/// `status` lines: groups, members, journal backlog.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    if !db.relation_exists("audience", "groups").await? {
        return Ok(Vec::new());
    }
    let r = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*), count(*) FILTER (WHERE enabled), coalesce(sum(member_count), 0)::bigint,
                        count(*) FILTER (WHERE enabled AND evaluated_hash IS NULL)
                   FROM {{audience}}.groups",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading group status".into())?;
    let mut items = vec![
        Item::new(
            "groups",
            "group definitions (enabled)",
            format!("{} ({})", r.get::<_, i64>(0), r.get::<_, i64>(1)),
        ),
        Item::new("groups", "memberships", r.get::<_, i64>(2)),
        Item::new("groups", "groups never calculated", r.get::<_, i64>(3)),
    ];
    if db.relation_exists("cdpctl", "entity_changes").await? {
        items.push(Item::new(
            "groups",
            "entity changes waiting for calc-audiences",
            crate::commands::status::count(db, "cdpctl", "entity_changes", None).await?,
        ));
    }
    Ok(items)
}

/// Sample groups over the demo data (src/demo/generate.rs).
pub fn demo_specs() -> Vec<GroupSpec> {
    let spec = |id: &str, name: &str, rule: Value| GroupSpec {
        id: id.into(),
        name: name.into(),
        rule,
        campaign_id: None,
        enabled: true,
    };
    vec![
        spec(
            "big_spenders",
            "spent over 500 EUR",
            json!({"attribute": "total_spent", "op": "gt", "value": 500}),
        ),
        spec(
            "pricing_visitors",
            "viewed /pricing twice in the last 30 days",
            json!({"activity": {"source": "web", "type": "page_view", "where": [{"field": "page", "op": "eq", "value": "/pricing"}],
                                "at_least": 2, "within_days": 30}}),
        ),
        spec(
            "engaged_readers",
            "clicked an e-mail and mostly reads the blog or docs",
            json!({"all": [
                {"activity": {"source": "email", "type": "email_click"}},
                {"attribute": "favourite_page", "op": "in", "value": ["/blog", "/docs"]}
            ]}),
        ),
        spec(
            "lapsed_buyers",
            "bought before, nothing in the last 30 days",
            json!({"all": [
                {"activity": {"source": "app", "type": "purchase"}},
                {"not": {"activity": {"source": "app", "type": "purchase", "within_days": 30}}}
            ]}),
        ),
        spec(
            "app_only",
            "uses the app, never signed in on the web",
            json!({"all": [
                {"activity": {"source": "app", "type": "app_open"}},
                {"not": {"activity": {"source": "web", "type": "signin"}}}
            ]}),
        ),
    ]
}

/// The demo step: defines the sample groups and calculates them. Skipped
/// (with a reason) when there are no customer entities or attributes yet.
pub async fn demo(db: &mut Db, now: DateTime<Utc>) -> Result<Value> {
    let s = db.schemas.clone();
    let n: i64 = db
        .client
        .query_one(
            &s.substitute("SELECT count(*) FROM {{attr}}.customer_entities"),
            &[],
        )
        .await
        .pg_context(|| "counting customer entities".into())?
        .get(0);
    if n == 0 {
        return Ok(
            json!({"skipped": "no customer entities yet (stitch and calc-attrs come first)"}),
        );
    }
    let settings = Settings::default();
    define(db, &settings, &demo_specs(), false).await?;
    let report = run(
        &*db,
        &settings,
        &RunOptions {
            all: true,
            now: Some(now),
            ..RunOptions::default()
        },
        None,
    )
    .await?;
    let sizes: BTreeMap<String, i64> = load_groups(db, true)
        .await?
        .into_iter()
        .map(|g| (g.id, g.member_count))
        .collect();
    Ok(json!({"entities": n, "groups": sizes, "seconds": report.seconds}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_the_example_config_and_errors_name_the_key() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cdpctl.json"))
                .unwrap();
        let cfg = crate::config::Config::from_json(&text, "example").unwrap();
        let s = Settings::from_config(&cfg).unwrap();
        assert_eq!(
            (
                s.batch_size,
                s.contact_id_attribute.as_str(),
                s.time_window_refresh_hours
            ),
            (100_000, "contact_id", 24)
        );
        let bad = crate::config::Config::from_json(
            r#"{"audiences": {"groups": {"batch_sise": 5}}}"#,
            "x",
        )
        .unwrap();
        let e = Settings::from_config(&bad).unwrap_err().to_string();
        assert!(e.starts_with("config: key \"audiences.groups"), "{e}");
        assert!(e.contains("batch_sise"), "{e}");
        let bad = crate::config::Config::from_json(
            r#"{"audiences": {"groups": {"batch_size": "x"}}}"#,
            "x",
        )
        .unwrap();
        let e = Settings::from_config(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("config: key \"audiences.groups.batch_size\""),
            "{e}"
        );
    }

    #[test]
    fn definitions_files() {
        let specs = parse_specs(r#"{"groups": [{"id": "a", "rule": {"attribute": "x", "op": "exists"}, "campaign_id": 7}]}"#, "f").unwrap();
        assert_eq!(specs[0].campaign_id, Some(7));
        assert!(
            parse_specs(r#"[{"id": "a", "rule": {}}, {"id": "a", "rule": {}}]"#, "f")
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
        let e = parse_specs(r#"[{"id": "a", "rules": {}}]"#, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `rules`"), "{e}");
    }
}
