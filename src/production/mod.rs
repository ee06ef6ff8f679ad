//! The production switch: `go-production` replaces the legacy
//! `customer_events` view and `pivoted_customer_attributes` table of the cdp
//! schema with views over cdpctl's tables, keeping the legacy objects as
//! `*_backup`; `rollback` restores them. Each is one transaction under a
//! lock timeout; views that depended on the replaced objects are saved in
//! `<cdpctl>.production_saved_views` and recreated exactly.
//!
//! The catalogue is the source of truth for the state: a view whose comment
//! starts with [`sql::MARKER`] is one cdpctl created.

pub mod sql;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::commands::status::Item;
use crate::db::{quote_ident, quote_literal, Db, PgResultExt};
use sql::{backup_name, AttrColumn, Settings, ViewSource, EVENTS, MARKER, PIVOT};

/// A relation of the cdp schema as the catalogue has it.
#[derive(Debug, Clone)]
pub struct Rel {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub relkind: String,
    pub comment: Option<String>,
}

impl Rel {
    /// A view cdpctl created.
    pub fn ours(&self) -> bool {
        self.relkind == "v"
            && self
                .comment
                .as_deref()
                .is_some_and(|c| c.starts_with(MARKER))
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `public.customer_events (view)`, `... (cdpctl view)`.
    pub fn describe(&self) -> String {
        let kind = if self.ours() {
            "view created by cdpctl go-production"
        } else {
            sql::kind_name(&self.relkind)
        };
        format!("{} ({kind})", self.qualified())
    }
}

/// The four names a switch touches.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub events: Option<Rel>,
    pub pivot: Option<Rel>,
    pub events_backup: Option<Rel>,
    pub pivot_backup: Option<Rel>,
}

impl Catalog {
    pub fn in_production(&self) -> bool {
        self.events.as_ref().is_some_and(Rel::ours) && self.pivot.as_ref().is_some_and(Rel::ours)
    }

    pub fn backups(&self) -> Vec<&Rel> {
        [&self.events_backup, &self.pivot_backup]
            .into_iter()
            .flatten()
            .collect()
    }
}

pub async fn catalog(db: &Db) -> Result<Catalog> {
    let schema = db.config.cdp_schema.clone();
    let names = vec![
        EVENTS.to_string(),
        PIVOT.to_string(),
        backup_name(EVENTS),
        backup_name(PIVOT),
    ];
    let rows = db
        .client
        .query(
            "SELECT c.relname::text, c.oid, c.relkind::text, obj_description(c.oid, 'pg_class')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = ANY($2)",
            &[&schema, &names],
        )
        .await
        .pg_context(|| format!("looking up the production objects in schema {schema:?}"))?;
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == name)
            .map(|r| Rel {
                oid: r.get(1),
                schema: schema.clone(),
                name: name.to_string(),
                relkind: r.get(2),
                comment: r.get(3),
            })
    };
    Ok(Catalog {
        events: find(EVENTS),
        pivot: find(PIVOT),
        events_backup: find(&backup_name(EVENTS)),
        pivot_backup: find(&backup_name(PIVOT)),
    })
}

/// One pre-flight check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Errors listing every failed check (`what` = the command).
pub fn refuse_on_failures(what: &str, checks: &[Check]) -> Result<()> {
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    bail!(
        "{what} refused, nothing was changed: {} check(s) failed: {}",
        failed.len(),
        failed.join("; ")
    )
}

/// A go-production or rollback switch record.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchRecord {
    pub id: i64,
    pub action: String,
    pub switched_at: String,
    pub db_user: String,
    pub os_user: Option<String>,
}

impl SwitchRecord {
    pub fn who(&self) -> String {
        match &self.os_user {
            Some(os) if os != &self.db_user => format!("{} (OS user {os})", self.db_user),
            _ => self.db_user.clone(),
        }
    }
}

async fn switches_table_exists(db: &Db) -> Result<bool> {
    db.relation_exists("cdpctl", "production_switches").await
}

/// The latest go-production/rollback of the configured cdp schema.
pub async fn last_switch(db: &Db) -> Result<Option<SwitchRecord>> {
    if !switches_table_exists(db).await? {
        return Ok(None);
    }
    let row = db
        .client
        .query_opt(
            &db.schemas.substitute(
                "SELECT id, action, to_char(switched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC',
                        db_user, os_user
                   FROM {{cdpctl}}.production_switches
                  WHERE cdp_schema = $1 AND action IN ('go-production', 'rollback')
                  ORDER BY id DESC LIMIT 1",
            ),
            &[&db.config.cdp_schema],
        )
        .await
        .pg_context(|| "reading the production switch records".into())?;
    Ok(row.map(|r| SwitchRecord {
        id: r.get(0),
        action: r.get(1),
        switched_at: r.get(2),
        db_user: r.get(3),
        os_user: r.get(4),
    }))
}

/// The attribute definitions as pivot columns, ordered by id.
pub async fn attribute_columns(db: &Db) -> Result<Vec<AttrColumn>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT id, coalesce(definition->>'type', '') = 'list' FROM {{attr}}.attributes ORDER BY id",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the attribute definitions".into())?;
    Ok(rows
        .iter()
        .map(|r| AttrColumn {
            id: r.get(0),
            list: r.get(1),
        })
        .collect())
}

/// Views depending (transitively) on the given relations, in creation order,
/// with everything needed to recreate them. Runs in its own read-only
/// transaction with `search_path = pg_catalog`, so the saved definitions name
/// every relation with its schema.
pub async fn dependent_views(db: &Db, oids: &[u32]) -> Result<Vec<ViewSource>> {
    if oids.is_empty() {
        return Ok(Vec::new());
    }
    let query = "
        WITH RECURSIVE deps(oid, depth) AS (
            SELECT r.ev_class, 1
              FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = ANY($1::oid[]) AND r.ev_class <> ALL($1::oid[])
            UNION
            SELECT r.ev_class, deps.depth + 1
              FROM deps
              JOIN pg_depend d ON d.refobjid = deps.oid
                  AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
              JOIN pg_rewrite r ON r.oid = d.objid
             WHERE r.ev_class <> deps.oid AND r.ev_class <> ALL($1::oid[])
        ), ordered AS (
            SELECT oid, max(depth) AS depth FROM deps GROUP BY oid
        )
        SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid),
               coalesce(c.reloptions, '{}')::text[], pg_get_userbyid(c.relowner)::text,
               obj_description(c.oid, 'pg_class'), c.relispopulated,
               ARRAY(SELECT format('GRANT %s ON %I.%I TO %s%s', x.privilege_type, n.nspname, c.relname,
                                   CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                   CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                       FROM aclexplode(c.relacl) x WHERE x.grantee <> c.relowner ORDER BY 1),
               ARRAY(SELECT format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, a.attname, d.description)
                       FROM pg_attribute a
                       JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = a.attnum
                      WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum),
               ARRAY(SELECT def FROM (
                       SELECT 1 AS k, i.indexrelid AS o, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i WHERE i.indrelid = c.oid
                       UNION ALL
                       SELECT 2, t.oid, pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal
                     ) x ORDER BY k, o)
          FROM ordered o
          JOIN pg_class c ON c.oid = o.oid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm')
         ORDER BY o.depth, n.nspname, c.relname";
    db.client
        .batch_execute("BEGIN READ ONLY; SET LOCAL search_path TO pg_catalog")
        .await
        .pg_context(|| "starting the read-only snapshot of view definitions".into())?;
    let rows = db.client.query(query, &[&oids]).await;
    let _ = db.client.batch_execute("COMMIT").await;
    let rows = rows.pg_context(|| "reading the definitions of dependent views".into())?;
    Ok(rows
        .iter()
        .map(|r| ViewSource {
            schema: r.get(0),
            name: r.get(1),
            relkind: r.get(2),
            definition: r.get(3),
            options: r.get(4),
            owner: r.get(5),
            comment: r.get(6),
            populated: r.get(7),
            grants: r.get(8),
            column_comments: r.get(9),
            indexes: r.get(10),
        })
        .collect())
}

/// `GRANT SELECT` statements giving `target` the readers of `oid`.
async fn copied_grants(db: &Db, oid: u32, target: &str) -> Result<Vec<String>> {
    let rows = db
        .client
        .query(
            "SELECT DISTINCT format('GRANT SELECT ON %s TO %s', $2::text,
                           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END)
               FROM pg_class c, aclexplode(c.relacl) x
              WHERE c.oid = $1 AND x.grantee <> c.relowner AND x.privilege_type = 'SELECT'
              ORDER BY 1",
            &[&oid, &target],
        )
        .await
        .pg_context(|| format!("reading the privileges of {target}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One statement of a switch, with the relations it locks (for the message
/// when the lock timeout hits).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub what: String,
    pub sql: String,
    #[serde(skip)]
    pub locks: Vec<String>,
}

/// Everything a switch or a rollback will do, before it does it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub action: &'static str,
    pub steps: Vec<Step>,
    /// Views saved with this switch (go-production) or restored (rollback).
    pub saved: Vec<ViewSource>,
    pub details: Value,
}

impl Plan {
    /// The SQL the transaction runs, with a comment per step.
    pub fn script(&self, lock_timeout: Duration, cdpctl_schema: &str) -> String {
        let mut s = format!(
            "BEGIN;\nSET LOCAL lock_timeout = '{}ms';\n",
            lock_timeout.as_millis()
        );
        for st in &self.steps {
            s.push_str(&format!("-- {}\n{};\n", st.what, st.sql));
        }
        s.push_str(&format!(
            "-- record the {} (who, when, what{}) in {}.production_switches\nCOMMIT;\n",
            self.action,
            if self.action == "go-production" {
                ", saved view definitions"
            } else {
                ""
            },
            quote_ident(cdpctl_schema)
        ));
        s
    }
}

fn qual(schema_q: &str, name: &str) -> String {
    format!("{schema_q}.{}", quote_ident(name))
}

fn names(views: &[ViewSource]) -> Vec<String> {
    views
        .iter()
        .map(|v| format!("{}.{}", v.schema, v.name))
        .collect()
}

/// Options of `cdpctl go-production` that change the checks.
#[derive(Debug, Clone, Default)]
pub struct GoOptions {
    pub allow_backlog: bool,
}

/// The pre-flight checks of go-production, each pass or fail.
pub async fn go_checks(db: &Db, settings: &Settings, opts: &GoOptions) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    object_checks(db, &mut checks).await?;
    jobs_check(db, settings, &mut checks).await?;
    backlog_checks(db, opts, &mut checks).await?;
    columns_check(db, &mut checks).await?;
    Ok(checks)
}

/// The objects to replace exist, are not switched yet, and nothing is in the
/// way of their backups.
async fn object_checks(db: &Db, checks: &mut Vec<Check>) -> Result<()> {
    let cat = catalog(db).await?;
    let cdp = &db.config.cdp_schema;
    if cat.in_production() {
        let since = match last_switch(db).await? {
            Some(r) if r.action == "go-production" => {
                format!(" since {} (switch #{} by {})", r.switched_at, r.id, r.who())
            }
            _ => String::new(),
        };
        checks.push(Check::fail(
            "legacy objects",
            format!(
                "already in production{since}: {cdp}.{EVENTS} and {cdp}.{PIVOT} are the views cdpctl created; to go back run `cdpctl rollback`"
            ),
        ));
    } else {
        let mut problems = Vec::new();
        let mut found = Vec::new();
        for (name, rel) in [(EVENTS, &cat.events), (PIVOT, &cat.pivot)] {
            match rel {
                None => problems.push(format!(
                    "{cdp}.{name} does not exist (go-production replaces the legacy {name} and keeps it as {}; check cdp_schema in the config)",
                    backup_name(name)
                )),
                Some(r) if r.ours() => problems.push(format!(
                    "{} is already a cdpctl view while the other object is not: a switch was undone by hand; run `cdpctl rollback` or restore the legacy object",
                    r.qualified()
                )),
                Some(r) if !matches!(r.relkind.as_str(), "r" | "p" | "v" | "m" | "f") => {
                    problems.push(format!("{} is a {}, expected a table or a view", r.qualified(), sql::kind_name(&r.relkind)))
                }
                Some(r) => found.push(r.describe()),
            }
        }
        checks.push(if problems.is_empty() {
            Check::pass("legacy objects", found.join(", "))
        } else {
            Check::fail("legacy objects", problems.join("; "))
        });
        // 2. nothing in the way of the backups
        let backups = cat.backups();
        checks.push(if backups.is_empty() {
            Check::pass(
                "no backups left over",
                format!(
                    "{cdp}.{} and {cdp}.{} are free",
                    backup_name(EVENTS),
                    backup_name(PIVOT)
                ),
            )
        } else {
            Check::fail(
                "no backups left over",
                format!(
                    "{} already exist(s), left over from an earlier switch; inspect it, then drop or rename it before switching",
                    backups.iter().map(|r| r.describe()).collect::<Vec<_>>().join(" and ")
                ),
            )
        });
    }
    Ok(())
}

/// No other cdpctl job and no legacy processing session is connected.
async fn jobs_check(db: &Db, settings: &Settings, checks: &mut Vec<Check>) -> Result<()> {
    // A session whose client just exited (say, the rollback run a moment
    // ago) stays in pg_stat_activity until its backend has gone: look again
    // for up to two seconds before calling it a running job.
    let mut attempts = 0;
    let rows = loop {
        let rows = db
            .client
            .query(
                "SELECT pid, coalesce(application_name, ''), coalesce(state, '')
                   FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()
                    AND pid <> ALL($2::int4[])
                    AND ((application_name LIKE 'cdpctl %' AND application_name <> 'cdpctl status')
                         OR application_name = ANY($1))
                  ORDER BY pid",
                &[&settings.legacy_application_names, &db.side_session_pids()],
            )
            .await
            .pg_context(|| "listing running jobs in pg_stat_activity".into())?;
        attempts += 1;
        if rows.is_empty() || attempts == 20 {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    checks.push(if rows.is_empty() {
        Check::pass(
            "no other jobs running",
            format!(
                "no cdpctl job and no {} session",
                settings
                    .legacy_application_names
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        )
    } else {
        let list: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "\"{}\" (pid {}, {})",
                    r.get::<_, String>(1),
                    r.get::<_, i32>(0),
                    r.get::<_, String>(2)
                )
            })
            .collect();
        Check::fail(
            "no other jobs running",
            format!(
                "{} running: {}; stop the processing (disable the legacy workspaces and cron jobs) and wait for it to finish",
                if rows.len() == 1 { "a job is" } else { "jobs are" },
                list.join(", ")
            ),
        )
    });
    Ok(())
}

/// Stitching and attribute calculation ran and have no backlog (unless
/// `--allow-backlog`).
async fn backlog_checks(db: &Db, opts: &GoOptions, checks: &mut Vec<Check>) -> Result<()> {
    let allow = if opts.allow_backlog {
        " (allowed by --allow-backlog)"
    } else {
        ""
    };
    let ps = &db.config.ps_schema;
    let stitch = if !db
        .relation_exists("ps", "customer_events_to_process")
        .await?
    {
        let msg =
            format!("stitching has never run ({ps}.customer_events_to_process does not exist)");
        if opts.allow_backlog {
            Check::pass("stitching done", format!("{msg}{allow}"))
        } else {
            Check::fail(
                "stitching done",
                format!("{msg}; run `cdpctl stitch` first, or pass --allow-backlog"),
            )
        }
    } else {
        let n: i64 = db
            .client
            .query_one(
                &db.schemas
                    .substitute("SELECT count(*) FROM {{ps}}.customer_events_to_process"),
                &[],
            )
            .await
            .pg_context(|| "counting the stitching backlog".into())?
            .get(0);
        if n == 0 {
            Check::pass("stitching done", "no events waiting for stitching")
        } else if opts.allow_backlog {
            Check::pass(
                "stitching done",
                format!(
                    "{} event(s) wait for stitching{allow}",
                    crate::output::num(n)
                ),
            )
        } else {
            Check::fail(
                "stitching done",
                format!(
                    "{} event(s) wait for stitching in {ps}.customer_events_to_process; run `cdpctl stitch`, or pass --allow-backlog",
                    crate::output::num(n)
                ),
            )
        }
    };
    checks.push(stitch);

    // 5. attributes calculated
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT count(*) FILTER (WHERE calculated IS NULL), count(*),
                        EXISTS (SELECT 1 FROM {{ps}}.event_entities)
                   FROM {{attr}}.customer_entities",
            ),
            &[],
        )
        .await
        .pg_context(|| "counting the attribute calculation backlog".into())?;
    let (waiting, entities, stitched): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
    let attr_schema = &db.config.attr_schema;
    let attrs = if entities == 0 && stitched {
        let msg = format!(
            "attribute calculation has never run (no customer entities in {attr_schema}.customer_entities)"
        );
        if opts.allow_backlog {
            Check::pass("attributes calculated", format!("{msg}{allow}"))
        } else {
            Check::fail(
                "attributes calculated",
                format!("{msg}; run `cdpctl calc-attrs` first, or pass --allow-backlog"),
            )
        }
    } else if waiting == 0 {
        Check::pass(
            "attributes calculated",
            format!(
                "customer entities: {}, none waiting",
                crate::output::num(entities)
            ),
        )
    } else if opts.allow_backlog {
        Check::pass(
            "attributes calculated",
            format!(
                "{} of {} customer entities wait for calculation{allow}",
                crate::output::num(waiting),
                crate::output::num(entities)
            ),
        )
    } else {
        Check::fail(
            "attributes calculated",
            format!(
                "{} of {} customer entities wait for calculation ({attr_schema}.customer_entities.calculated IS NULL); run `cdpctl calc-attrs`, or pass --allow-backlog",
                crate::output::num(waiting),
                crate::output::num(entities)
            ),
        )
    };
    checks.push(attrs);
    Ok(())
}

/// Every attribute id can be a column name of the pivot view.
async fn columns_check(db: &Db, checks: &mut Vec<Check>) -> Result<()> {
    let cdp = &db.config.cdp_schema;
    let attr_schema = &db.config.attr_schema;
    let cols = attribute_columns(db).await?;
    let problems = sql::column_problems(&cols);
    checks.push(if problems.is_empty() {
        Check::pass(
            "attribute columns",
            format!(
                "{} attribute(s) become columns of {cdp}.{PIVOT}",
                cols.len()
            ),
        )
    } else {
        Check::fail(
            "attribute columns",
            format!(
                "{}; rename the attribute(s) in {attr_schema}.attributes",
                problems.join("; ")
            ),
        )
    });
    Ok(())
}

/// The go-production transaction. Call after the checks passed.
pub async fn go_plan(db: &Db) -> Result<Plan> {
    let cat = catalog(db).await?;
    let (Some(events), Some(pivot)) = (cat.events.clone(), cat.pivot.clone()) else {
        bail!("the legacy objects are missing; run the checks (`cdpctl go-production --check`)");
    };
    let s = &db.schemas;
    let dependents = dependent_views(db, &[events.oid, pivot.oid]).await?;
    let cols = attribute_columns(db).await?;
    let mut steps = Vec::new();
    for v in dependents.iter().rev() {
        steps.push(Step {
            what: format!(
                "drop the dependent {} {}.{} (definition saved)",
                v.kind(),
                v.schema,
                v.name
            ),
            sql: v.drop_sql(),
            locks: vec![v.qualified()],
        });
    }
    for rel in [&pivot, &events] {
        steps.push(Step {
            what: format!(
                "keep the legacy {} {} as {}",
                sql::kind_name(&rel.relkind),
                rel.qualified(),
                backup_name(&rel.name)
            ),
            sql: sql::rename_sql(&s.cdp, &rel.relkind, &rel.name, &backup_name(&rel.name)),
            locks: vec![qual(&s.cdp, &rel.name)],
        });
    }
    // A view created on the legacy objects after the plan was made would now
    // silently follow the backup: refuse instead.
    let oids = format!("{}, {}", events.oid, pivot.oid);
    steps.push(Step {
        what: "make sure no view was created on the legacy objects meanwhile".into(),
        sql: format!(
            "DO $check$ BEGIN IF EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid \
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
             AND d.refobjid IN ({oids}) AND r.ev_class NOT IN ({oids})) THEN \
             RAISE EXCEPTION 'a view was created on the legacy objects while go-production was running; run it again'; \
             END IF; END $check$"
        ),
        locks: vec![],
    });
    let events_q = qual(&s.cdp, EVENTS);
    let pivot_q = qual(&s.cdp, PIVOT);
    let mut create_events = vec![
        sql::events_view_sql(s),
        sql::marker_comment(
            s,
            EVENTS,
            &format!(
                "events with their customer entity, over {}.customer_events and {}.event_entities",
                db.config.ce_schema, db.config.ps_schema
            ),
        ),
    ];
    create_events.extend(copied_grants(db, events.oid, &events_q).await?);
    steps.push(Step {
        what: format!(
            "create the view {cdp}.{EVENTS}: events with their customer entity",
            cdp = db.config.cdp_schema
        ),
        sql: create_events.join(";\n"),
        locks: vec![],
    });
    let mut create_pivot = vec![
        sql::pivot_view_sql(s, &cols),
        sql::marker_comment(
            s,
            PIVOT,
            &format!(
                "one row per customer entity, one column per attribute of {}.attributes",
                db.config.attr_schema
            ),
        ),
    ];
    create_pivot.extend(copied_grants(db, pivot.oid, &pivot_q).await?);
    steps.push(Step {
        what: format!(
            "create the view {}.{PIVOT}: one row per customer entity, {} attribute column(s)",
            db.config.cdp_schema,
            cols.len()
        ),
        sql: create_pivot.join(";\n"),
        locks: vec![],
    });
    for v in &dependents {
        steps.push(Step {
            what: format!(
                "recreate the {} {}.{} on the new objects",
                v.kind(),
                v.schema,
                v.name
            ),
            sql: v.statements().join(";\n"),
            locks: vec![],
        });
    }
    let details = json!({
        "renamed": [
            {"from": pivot.qualified(), "to": format!("{}.{}", pivot.schema, backup_name(PIVOT)), "kind": sql::kind_name(&pivot.relkind)},
            {"from": events.qualified(), "to": format!("{}.{}", events.schema, backup_name(EVENTS)), "kind": sql::kind_name(&events.relkind)},
        ],
        "created": [events.qualified(), pivot.qualified()],
        "attribute_columns": cols.iter().map(|c| json!({"id": c.id, "type": c.sql_type()})).collect::<Vec<_>>(),
        "saved_views": names(&dependents),
    });
    Ok(Plan {
        action: "go-production",
        steps,
        saved: dependents,
        details,
    })
}

/// The checks of a rollback: the database is in production, the backups are
/// there, the switch and its saved views are recorded, and no unknown view
/// was built on the new objects.
pub async fn rollback_checks(db: &Db) -> Result<(Vec<Check>, Option<i64>)> {
    let cat = catalog(db).await?;
    let cdp = &db.config.cdp_schema;
    let mut checks = Vec::new();
    let describe = |r: &Option<Rel>, name: &str| match r {
        Some(r) => r.describe(),
        None => format!("{cdp}.{name} (missing)"),
    };
    let ours_events = cat.events.as_ref().is_some_and(Rel::ours);
    let ours_pivot = cat.pivot.as_ref().is_some_and(Rel::ours);
    if !ours_events && !ours_pivot {
        checks.push(Check::fail(
            "in production",
            format!(
                "nothing to roll back: {} and {} are not views created by cdpctl go-production (this database is not switched)",
                describe(&cat.events, EVENTS),
                describe(&cat.pivot, PIVOT)
            ),
        ));
        return Ok((checks, None));
    }
    if ours_events && ours_pivot {
        checks.push(Check::pass(
            "in production",
            format!("{cdp}.{EVENTS} and {cdp}.{PIVOT} are cdpctl views"),
        ));
    } else {
        checks.push(Check::fail(
            "in production",
            format!(
                "half switched: {} and {}; restore the objects by hand (see the README, \"rollback\")",
                describe(&cat.events, EVENTS),
                describe(&cat.pivot, PIVOT)
            ),
        ));
    }
    let missing: Vec<String> = [(&cat.events_backup, EVENTS), (&cat.pivot_backup, PIVOT)]
        .iter()
        .filter(|(r, _)| r.is_none())
        .map(|(_, n)| format!("{cdp}.{}", backup_name(n)))
        .collect();
    checks.push(if missing.is_empty() {
        Check::pass(
            "backups present",
            cat.backups()
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else {
        Check::fail(
            "backups present",
            format!(
                "{} missing: the legacy object(s) to restore are gone; restore them from a database backup before rolling back",
                missing.join(" and ")
            ),
        )
    });
    let record = match last_switch(db).await? {
        Some(r) if r.action == "go-production" => {
            checks.push(Check::pass(
                "switch recorded",
                format!("switch #{} at {} by {}", r.id, r.switched_at, r.who()),
            ));
            Some(r.id)
        }
        _ => {
            checks.push(Check::fail(
                "switch recorded",
                format!(
                    "no go-production of schema {cdp:?} is recorded in {}.production_switches, so the saved view definitions are unknown; restore by hand",
                    db.config.cdpctl_schema
                ),
            ));
            None
        }
    };
    if let (Some(id), Some(e), Some(p)) = (record, &cat.events, &cat.pivot) {
        let saved = saved_views(db, id).await?;
        let on_new = dependent_views(db, &[e.oid, p.oid]).await?;
        let unknown: Vec<String> = on_new
            .iter()
            .filter(|v| {
                !saved
                    .iter()
                    .any(|s| s.schema == v.schema && s.name == v.name)
            })
            .map(|v| format!("{}.{}", v.schema, v.name))
            .collect();
        checks.push(if unknown.is_empty() {
            Check::pass(
                "views on the new objects",
                format!(
                    "{} saved view(s) to restore{}",
                    saved.len(),
                    if saved.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            saved
                                .iter()
                                .map(|v| format!("{}.{}", v.schema, v.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            )
        } else {
            Check::fail(
                "views on the new objects",
                format!(
                    "{} {} created on the new views after go-production and cannot be restored on the legacy objects; save their definitions and drop them first",
                    unknown.join(", "),
                    if unknown.len() == 1 { "was" } else { "were" }
                ),
            )
        });
    }
    Ok((checks, record))
}

/// A view definition saved by a go-production, as recorded.
#[derive(Debug, Clone)]
pub struct SavedView {
    pub schema: String,
    pub name: String,
    pub kind: String,
    pub statements: Vec<String>,
}

async fn saved_views(db: &Db, switch_id: i64) -> Result<Vec<SavedView>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT schema_name, view_name, kind, statements
                   FROM {{cdpctl}}.production_saved_views WHERE switch_id = $1 ORDER BY ord",
            ),
            &[&switch_id],
        )
        .await
        .pg_context(|| format!("reading the view definitions saved by switch #{switch_id}"))?;
    Ok(rows
        .iter()
        .map(|r| SavedView {
            schema: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            statements: r.get(3),
        })
        .collect())
}

/// The rollback transaction. Call after the checks passed.
pub async fn rollback_plan(db: &Db, switch_id: i64) -> Result<Plan> {
    let cat = catalog(db).await?;
    let (Some(events), Some(pivot), Some(eb), Some(pb)) = (
        cat.events.clone(),
        cat.pivot.clone(),
        cat.events_backup.clone(),
        cat.pivot_backup.clone(),
    ) else {
        bail!("the database is not in the state rollback expects; run `cdpctl rollback --dry-run` to see the checks");
    };
    let s = &db.schemas;
    let saved = saved_views(db, switch_id).await?;
    let on_new = dependent_views(db, &[events.oid, pivot.oid]).await?;
    let mut steps = Vec::new();
    for v in on_new.iter().rev() {
        steps.push(Step {
            what: format!(
                "drop the {} {}.{} (it is restored from its saved definition below)",
                v.kind(),
                v.schema,
                v.name
            ),
            sql: v.drop_sql(),
            locks: vec![v.qualified()],
        });
    }
    for rel in [&pivot, &events] {
        steps.push(Step {
            what: format!("drop the cdpctl view {}", rel.qualified()),
            sql: format!("DROP VIEW {}", qual(&s.cdp, &rel.name)),
            locks: vec![qual(&s.cdp, &rel.name)],
        });
    }
    for (b, name) in [(&pb, PIVOT), (&eb, EVENTS)] {
        steps.push(Step {
            what: format!(
                "restore the legacy {} {} as {}",
                sql::kind_name(&b.relkind),
                b.qualified(),
                name
            ),
            sql: sql::rename_sql(&s.cdp, &b.relkind, &b.name, name),
            locks: vec![qual(&s.cdp, &b.name)],
        });
    }
    for v in &saved {
        steps.push(Step {
            what: format!(
                "recreate the {} {}.{} from its saved definition",
                v.kind, v.schema, v.name
            ),
            sql: v.statements.join(";\n"),
            locks: vec![],
        });
    }
    let details = json!({
        "undoes_switch": switch_id,
        "dropped": [events.qualified(), pivot.qualified()],
        "restored": [
            {"from": pb.qualified(), "to": pivot.qualified(), "kind": sql::kind_name(&pb.relkind)},
            {"from": eb.qualified(), "to": events.qualified(), "kind": sql::kind_name(&eb.relkind)},
        ],
        "recreated_views": saved.iter().map(|v| format!("{}.{}", v.schema, v.name)).collect::<Vec<_>>(),
    });
    Ok(Plan {
        action: "rollback",
        steps,
        saved: Vec::new(),
        details,
    })
}

fn os_user() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; the
    // name is copied out immediately.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    std::env::var("USER").ok()
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated
    // on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// What a finished switch reports.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub switch_id: i64,
    pub action: String,
    pub cdp_schema: String,
    pub db_user: String,
    pub os_user: Option<String>,
    pub switched_at: String,
    pub seconds: f64,
    pub details: Value,
}

/// Runs a plan in one transaction under `lock_timeout` and records it.
/// Nothing is changed when any statement fails; a lock timeout names the
/// sessions holding the locks.
pub async fn execute(db: &Db, plan: &Plan, lock_timeout: Duration) -> Result<Done> {
    let started = Instant::now();
    let c = &db.client;
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL lock_timeout = '{}ms'",
        lock_timeout.as_millis().max(1)
    ))
    .await
    .pg_context(|| format!("{}: starting the transaction", plan.action))?;
    let mut failed: Option<(usize, anyhow::Error)> = None;
    for (i, st) in plan.steps.iter().enumerate() {
        if let Err(e) = c.batch_execute(&st.sql).await {
            failed = Some((
                i,
                anyhow::Error::new(crate::db::PgError::from(e)).context(format!(
                    "{} failed while it was going to {} (nothing was changed)",
                    plan.action, st.what
                )),
            ));
            break;
        }
    }
    let record = match failed {
        Some(f) => Err(f),
        None => record(db, plan).await.map_err(|e| {
            (
                usize::MAX,
                e.context(format!("{} failed (nothing was changed)", plan.action)),
            )
        }),
    };
    match record {
        Ok((id, at, db_user, os_user)) => {
            c.batch_execute("COMMIT")
                .await
                .pg_context(|| format!("{}: committing", plan.action))?;
            Ok(Done {
                switch_id: id,
                action: plan.action.to_string(),
                cdp_schema: db.config.cdp_schema.clone(),
                db_user,
                os_user,
                switched_at: at,
                seconds: started.elapsed().as_secs_f64(),
                details: plan.details.clone(),
            })
        }
        Err((i, e)) => {
            let _ = c.batch_execute("ROLLBACK").await;
            if crate::db::is_lock_timeout(&e) {
                let locks = plan
                    .steps
                    .get(i)
                    .map(|s| s.locks.clone())
                    .unwrap_or_default();
                let holders = lock_holders(db, &locks).await.unwrap_or_default();
                let object = if locks.is_empty() {
                    "the objects".to_string()
                } else {
                    locks.join(", ")
                };
                // The server's error stays in the chain (SQLSTATE 55P03), so
                // callers such as `sync_pivot` can retry.
                let server = crate::db::PgError {
                    code: crate::db::sqlstate(&e),
                    message: "canceling statement due to lock timeout".into(),
                };
                return Err(anyhow::Error::new(server).context(format!(
                    "{} failed: could not lock {object} within the lock timeout of {}ms{}; nothing was changed. Wait for {} to finish or stop it, then retry (or raise --lock-timeout)",
                    plan.action,
                    lock_timeout.as_millis(),
                    if holders.is_empty() {
                        String::new()
                    } else {
                        format!(": held by {}", holders.join(", "))
                    },
                    if holders.len() == 1 { "that session" } else { "those sessions" }
                )));
            }
            Err(e)
        }
    }
}

async fn record(db: &Db, plan: &Plan) -> Result<(i64, String, String, Option<String>)> {
    let os = os_user();
    let host = host_name();
    let version = env!("CARGO_PKG_VERSION");
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "INSERT INTO {{cdpctl}}.production_switches (action, cdp_schema, os_user, client_host, cdpctl_version, details)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING id, to_char(switched_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', db_user",
            ),
            &[&plan.action, &db.config.cdp_schema, &os, &host, &version, &plan.details],
        )
        .await
        .pg_context(|| format!("recording the {} in {}.production_switches", plan.action, db.config.cdpctl_schema))?;
    let id: i64 = row.get(0);
    if plan.action == "go-production" && !plan.saved.is_empty() {
        let saved: Vec<Value> = plan
            .saved
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({"ord": i as i64, "schema_name": v.schema, "view_name": v.name,
                       "kind": v.kind(), "definition": v.definition, "statements": v.statements()})
            })
            .collect();
        db.client
            .execute(
                &db.schemas.substitute(
                    "INSERT INTO {{cdpctl}}.production_saved_views (switch_id, ord, schema_name, view_name, kind, definition, statements)
                     SELECT $1, ord, schema_name, view_name, kind, definition, statements
                       FROM jsonb_to_recordset($2::jsonb)
                         AS x(ord int, schema_name text, view_name text, kind text, definition text, statements text[])",
                ),
                &[&id, &Value::Array(saved)],
            )
            .await
            .pg_context(|| "saving the dependent view definitions".into())?;
    }
    Ok((id, row.get(1), row.get(2), os))
}

/// Sessions holding locks on the named relations: `pid 123 ("psql", idle in
/// transaction for 12s: SELECT ...)`.
async fn lock_holders(db: &Db, relations: &[String]) -> Result<Vec<String>> {
    let rows = db
        .client
        .query(
            "SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                    coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::bigint, 0),
                    (SELECT CASE WHEN length(q) > 80 THEN left(q, 77) || '...' ELSE q END
                       FROM regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g') AS q)
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.granted AND l.pid <> pg_backend_pid()
                AND l.relation IN (SELECT to_regclass(x) FROM unnest($1::text[]) x)
              ORDER BY a.pid",
            &[&relations],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "pid {} (\"{}\", {} for {}s: {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i64>(3),
                r.get::<_, String>(4)
            )
        })
        .collect())
}

/// The columns the pivot view has now, as `(name, type)`.
async fn view_columns(db: &Db, oid: u32) -> Result<Vec<(String, String)>> {
    let rows = db
        .client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .pg_context(|| "reading the columns of the pivot view".into())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn wanted_columns(cols: &[AttrColumn]) -> Vec<(String, String)> {
    std::iter::once(("customer_entity_id".to_string(), "uuid".to_string()))
        .chain(
            cols.iter()
                .map(|c| (c.id.clone(), c.sql_type().to_string())),
        )
        .collect()
}

/// When in production, recreates `pivoted_customer_attributes` so it has one
/// column per current attribute definition (views built on it are recreated
/// too), in one transaction under the configured lock timeout, retried on
/// lock conflicts. Returns whether anything changed; `false` when not in
/// production or already in step. Called at the end of `calc-attrs`.
pub async fn sync_pivot(db: &Db) -> Result<bool> {
    if !switches_table_exists(db).await? {
        return Ok(false);
    }
    let settings = Settings::from_config(&db.config.production_switch)?;
    let timeout = Duration::from_millis(settings.lock_timeout_ms);
    db.retry_locked("syncing pivoted_customer_attributes", || async {
        sync_pivot_once(db, timeout).await
    })
    .await
}

async fn sync_pivot_once(db: &Db, lock_timeout: Duration) -> Result<bool> {
    let cat = catalog(db).await?;
    let Some(pivot) = cat.pivot.filter(Rel::ours) else {
        return Ok(false);
    };
    let cols = attribute_columns(db).await?;
    let current = view_columns(db, pivot.oid).await?;
    let wanted = wanted_columns(&cols);
    if current == wanted {
        return Ok(false);
    }
    let problems = sql::column_problems(&cols);
    if !problems.is_empty() {
        bail!(
            "cannot bring {}.{PIVOT} in step with the attribute definitions: {}; rename the attribute(s) in {}.attributes",
            db.config.cdp_schema,
            problems.join("; "),
            db.config.attr_schema
        );
    }
    let added: Vec<&str> = wanted
        .iter()
        .filter(|w| !current.iter().any(|c| c.0 == w.0))
        .map(|w| w.0.as_str())
        .collect();
    let removed: Vec<&str> = current
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.0 == c.0))
        .map(|c| c.0.as_str())
        .collect();
    let s = &db.schemas;
    let pivot_q = qual(&s.cdp, PIVOT);
    let dependents = dependent_views(db, &[pivot.oid]).await?;
    let mut steps = Vec::new();
    for v in dependents.iter().rev() {
        steps.push(Step {
            what: format!("drop the {} {}.{} built on it", v.kind(), v.schema, v.name),
            sql: v.drop_sql(),
            locks: vec![v.qualified()],
        });
    }
    let mut create = vec![
        format!("DROP VIEW {pivot_q}"),
        sql::pivot_view_sql(s, &cols),
        pivot.comment.as_deref().map_or_else(
            || sql::marker_comment(s, PIVOT, "one row per customer entity"),
            |c| format!("COMMENT ON VIEW {pivot_q} IS {}", quote_literal(c)),
        ),
    ];
    create.extend(copied_grants(db, pivot.oid, &pivot_q).await?);
    steps.push(Step {
        what: format!(
            "recreate {}.{PIVOT} with {} attribute column(s)",
            db.config.cdp_schema,
            cols.len()
        ),
        sql: create.join(";\n"),
        locks: vec![pivot_q.clone()],
    });
    for v in &dependents {
        steps.push(Step {
            what: format!("recreate the {} {}.{}", v.kind(), v.schema, v.name),
            sql: v.statements().join(";\n"),
            locks: vec![],
        });
    }
    let plan = Plan {
        action: "sync-pivot",
        steps,
        saved: Vec::new(),
        details: json!({"added": added, "removed": removed, "columns": cols.len(),
                        "recreated_views": names(&dependents)}),
    };
    execute(db, &plan, lock_timeout).await.with_context(|| {
        format!(
            "bringing {}.{PIVOT} in step with the attribute definitions",
            db.config.cdp_schema
        )
    })?;
    Ok(true)
}

/// The `production` lines of `cdpctl status`.
pub async fn status_items(db: &Db) -> Result<Vec<Item>> {
    if !switches_table_exists(db).await? {
        return Ok(Vec::new());
    }
    let cat = catalog(db).await?;
    let last = last_switch(db).await?;
    let cdp = &db.config.cdp_schema;
    let mut items = Vec::new();
    let state = if cat.in_production() {
        match &last {
            Some(r) if r.action == "go-production" => format!(
                "production since {} (switch #{} by {})",
                r.switched_at,
                r.id,
                r.who()
            ),
            _ => "production (switch not recorded)".to_string(),
        }
    } else if cat.events.as_ref().is_some_and(Rel::ours)
        || cat.pivot.as_ref().is_some_and(Rel::ours)
    {
        "half switched: run `cdpctl rollback --dry-run` to see what is wrong".to_string()
    } else {
        match &last {
            Some(r) if r.action == "rollback" => format!(
                "legacy (rolled back {} by {}, switch #{})",
                r.switched_at,
                r.who(),
                r.id
            ),
            _ => "legacy (not switched; `cdpctl go-production --check`)".to_string(),
        }
    };
    items.push(Item::new("production", "state", state));
    let backups = cat.backups();
    items.push(Item::new(
        "production",
        "backups",
        if backups.is_empty() {
            "none".to_string()
        } else {
            backups
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", ")
        },
    ));
    if let Some(p) = cat.pivot.as_ref().filter(|p| p.ours()) {
        let cols = attribute_columns(db).await?;
        let current = view_columns(db, p.oid).await?;
        let line = if current == wanted_columns(&cols) {
            format!("{} attribute column(s), in step", cols.len())
        } else {
            format!(
                "{} column(s) for {} attribute(s): out of step, `cdpctl go-production --sync-pivot` (or the next calc-attrs) fixes it",
                current.len().saturating_sub(1),
                cols.len()
            )
        };
        items.push(Item::new("production", format!("{cdp}.{PIVOT}"), line));
    }
    Ok(items)
}

/// The demo's production step: go-production (backlogs allowed), a look at
/// the new views, then rollback. Check failures are reported, not raised.
pub async fn demo_round_trip(db: &Db) -> Result<Value> {
    let settings = Settings::from_config(&db.config.production_switch)?;
    let timeout = Duration::from_millis(settings.lock_timeout_ms);
    let checks = go_checks(
        db,
        &settings,
        &GoOptions {
            allow_backlog: true,
        },
    )
    .await?;
    if let Err(e) = refuse_on_failures("go-production", &checks) {
        return Ok(json!({"skipped": true, "summary": format!("skipped: {e}")}));
    }
    let plan = go_plan(db).await?;
    let on = execute(db, &plan, timeout).await?;
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "SELECT (SELECT count(*) FROM {{cdp}}.pivoted_customer_attributes),
                        (SELECT count(*) FROM {{cdp}}.customer_events WHERE customer_entity_id IS NOT NULL),
                        (SELECT count(*) FROM {{cdp}}.customer_events)",
            ),
            &[],
        )
        .await
        .pg_context(|| "reading the new production views".into())?;
    let (entities, stitched, events): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let (_, switch_id) = rollback_checks(db).await?;
    let back = rollback_plan(db, switch_id.context("the switch was not recorded")?).await?;
    let off = execute(db, &back, timeout).await?;
    let cdp = &db.config.cdp_schema;
    Ok(json!({
        "go_production": {"switch": on.switch_id, "seconds": on.seconds, "saved_views": plan.details["saved_views"]},
        "pivoted_customer_attributes_rows": entities,
        "customer_events_with_entity": stitched,
        "customer_events": events,
        "rollback": {"switch": off.switch_id, "seconds": off.seconds},
        "summary": format!(
            "switched {cdp} in {:.2}s (the new {cdp}.{PIVOT}: {} entities; {cdp}.{EVENTS}: {} of {} events with an entity), rolled back in {:.2}s",
            on.seconds,
            crate::output::num(entities),
            crate::output::num(stitched),
            crate::output::num(events),
            off.seconds
        ),
    }))
}
