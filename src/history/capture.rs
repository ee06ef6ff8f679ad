//! Installing the capture triggers on the configured campaigns table:
//! statement-level AFTER INSERT / UPDATE / DELETE triggers with transition
//! tables plus BEFORE TRUNCATE, all calling
//! `<history_schema>.capture_campaign_changes(customer column, id column)`
//! (sql/040_history.sql). Installation is idempotent and reports changes.

use anyhow::{bail, Result};
use tokio_postgres::GenericClient;

use super::{CaptureTarget, HistoryConfig, TableRef};
use crate::db::{quote_ident, quote_literal, Db, PgResultExt, Schemas};

/// Trigger name, timing/event, REFERENCING clause, FOR EACH.
const TRIGGERS: [(&str, &str, &str); 4] = [
    (
        "cdpctl_history_insert",
        "AFTER INSERT",
        "REFERENCING NEW TABLE AS cdpctl_new_rows",
    ),
    (
        "cdpctl_history_update",
        "AFTER UPDATE",
        "REFERENCING OLD TABLE AS cdpctl_old_rows NEW TABLE AS cdpctl_new_rows",
    ),
    (
        "cdpctl_history_delete",
        "AFTER DELETE",
        "REFERENCING OLD TABLE AS cdpctl_old_rows",
    ),
    ("cdpctl_history_truncate", "BEFORE TRUNCATE", ""),
];

/// A capture trigger found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub trigger: String,
    pub table: TableRef,
    pub args: Vec<String>,
}

/// What `init` would do: statements to run and a line per change.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub statements: Vec<String>,
    pub lines: Vec<String>,
}

/// Every trigger in the database that calls the capture function.
pub async fn installed(client: &impl GenericClient, schemas: &Schemas) -> Result<Vec<Installed>> {
    let func = format!("{}.capture_campaign_changes()", schemas.history);
    let rows = client
        .query(
            "SELECT t.tgname::text, n.nspname::text, c.relname::text, t.tgargs
               FROM pg_trigger t
               JOIN pg_class c ON c.oid = t.tgrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE t.tgfoid = to_regprocedure($1)
              ORDER BY n.nspname, c.relname, t.tgname",
            &[&func],
        )
        .await
        .pg_context(|| "listing the campaign history capture triggers".into())?;
    Ok(rows
        .iter()
        .map(|r| {
            let raw: Vec<u8> = r.get(3);
            let args = raw
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            Installed {
                trigger: r.get(0),
                table: TableRef {
                    schema: r.get(1),
                    name: r.get(2),
                },
                args,
            }
        })
        .collect())
}

/// DROP + CREATE statements putting the capture triggers on `target`.
pub fn trigger_sql(schemas: &Schemas, target: &CaptureTarget) -> Vec<String> {
    let table = target.table.qualified();
    let mut out = Vec::new();
    for (name, when, referencing) in TRIGGERS {
        out.push(format!("DROP TRIGGER IF EXISTS {name} ON {table}"));
        out.push(format!(
            "CREATE TRIGGER {name} {when} ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {}.capture_campaign_changes({}, {})",
            schemas.history,
            quote_literal(&target.customer_column),
            quote_literal(&target.id_column)
        ));
    }
    out
}

/// Checks that the target table exists and its key columns are integers.
pub async fn check_target(client: &impl GenericClient, target: &CaptureTarget) -> Result<()> {
    let t = target.table.display();
    let exists = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&target.table.qualified()],
        )
        .await
        .pg_context(|| format!("looking up the campaigns table {t}"))?
        .get::<_, bool>(0);
    if !exists {
        bail!("config: key \"history.campaigns_table\": table {t} does not exist; create it or fix the key (format \"schema.table\")");
    }
    for (key, col) in [
        ("customer_column", &target.customer_column),
        ("id_column", &target.id_column),
    ] {
        let ty: Option<String> = client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                &[&target.table.qualified(), col],
            )
            .await
            .pg_context(|| format!("looking up column {col} of {t}"))?
            .map(|r| r.get(0));
        match ty.as_deref() {
            None => bail!(
                "config: key \"history.{key}\": table {t} has no column {col:?}; fix the key"
            ),
            Some("smallint" | "integer" | "bigint") => {}
            Some(other) => bail!(
                "config: key \"history.{key}\": column {col:?} of {t} is {other}; campaign history needs an integer column"
            ),
        }
    }
    Ok(())
}

/// What it takes to make the triggers match the config: capture on the
/// configured table (if any) and nowhere else.
pub async fn plan(
    client: &impl GenericClient,
    schemas: &Schemas,
    hc: &HistoryConfig,
    cfg: &crate::config::Config,
) -> Result<Plan> {
    let target = hc.target(cfg);
    let found = installed(client, schemas).await?;
    let mut plan = Plan::default();
    let mut stale_tables: Vec<TableRef> = Vec::new();
    for i in &found {
        let on_target = target.as_ref().is_some_and(|t| t.table == i.table);
        // The demo's own table keeps its triggers.
        let demo = i.table.schema == schemas.raw_name("history")
            && i.table.name == super::demo::DEMO_TABLE;
        if !on_target && !demo {
            plan.statements.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                quote_ident(&i.trigger),
                i.table.qualified()
            ));
            if !stale_tables.contains(&i.table) {
                stale_tables.push(i.table.clone());
            }
        }
    }
    for t in stale_tables {
        plan.lines.push(format!(
            "history: removed the capture triggers from {} (it is no longer history.campaigns_table)",
            t.display()
        ));
    }
    if let Some(target) = target {
        check_target(client, &target).await?;
        let args = vec![target.customer_column.clone(), target.id_column.clone()];
        let complete = TRIGGERS.iter().all(|(name, _, _)| {
            found
                .iter()
                .any(|i| i.table == target.table && i.trigger == *name && i.args == args)
        });
        if !complete {
            plan.statements.extend(trigger_sql(schemas, &target));
            plan.lines.push(format!(
                "history: capture triggers installed on {} (customer {}, campaign id {})",
                target.table.display(),
                target.customer_column,
                target.id_column
            ));
        }
    }
    Ok(plan)
}

/// Makes the capture triggers match the config (one transaction). Returns
/// what changed; empty when everything was in place.
pub async fn install(db: &mut Db) -> Result<Vec<String>> {
    let hc = HistoryConfig::from_config(&db.config)?;
    if hc.campaigns_table.is_none() && installed(&db.client, &db.schemas).await?.is_empty() {
        return Ok(Vec::new());
    }
    let retries = db.config.session.lock_retries;
    let mut attempt = 0u32;
    loop {
        match install_once(db, &hc).await {
            Ok(lines) => return Ok(lines),
            Err(e) if crate::db::is_retryable(&e) && attempt < retries => {
                attempt += 1;
                let ms = (100u64 << attempt.min(6)) + rand::random::<u64>() % 100;
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Err(e) if crate::db::is_lock_timeout(&e) => {
                return Err(e.context(
                    "installing the campaign history triggers: the campaigns table stayed locked (see pg_stat_activity); retry later or raise session.lock_timeout_ms",
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

async fn install_once(db: &mut Db, hc: &HistoryConfig) -> Result<Vec<String>> {
    let tx = db.client.transaction().await?;
    let plan = plan(&tx, &db.schemas, hc, &db.config).await?;
    for s in &plan.statements {
        tx.batch_execute(s)
            .await
            .pg_context(|| format!("installing campaign history capture: {s}"))?;
    }
    tx.commit().await?;
    Ok(plan.lines)
}

/// Installs the capture triggers on any table (the demo uses this).
pub async fn install_on(
    client: &impl GenericClient,
    schemas: &Schemas,
    target: &CaptureTarget,
) -> Result<()> {
    check_target(client, target).await?;
    for s in trigger_sql(schemas, target) {
        client
            .batch_execute(&s)
            .await
            .pg_context(|| format!("installing campaign history capture: {s}"))?;
    }
    Ok(())
}

/// The statements `init` would run for the capture triggers, each preceded
/// by a `-- config:` comment line, for `init --dry-run`.
pub async fn dry_run_sql(db: &Db) -> Result<Vec<String>> {
    let hc = HistoryConfig::from_config(&db.config)?;
    if hc.campaigns_table.is_none() && installed(&db.client, &db.schemas).await?.is_empty() {
        return Ok(Vec::new());
    }
    let plan = plan(&db.client, &db.schemas, &hc, &db.config).await?;
    if plan.statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, s) in plan.statements.iter().enumerate() {
        if i == 0 {
            let what = plan.lines.join("; ");
            out.push(format!("\n-- config: {what}\n{s}"));
        } else {
            out.push(s.clone());
        }
    }
    Ok(out)
}
