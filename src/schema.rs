//! Versioned schema migrations from `sql/`: applied in order, recorded with a
//! checksum in `<cdpctl_schema>.schema_migrations`, idempotent. A changed file
//! that was already applied is an error, never silently re-run.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::db::{Db, PgResultExt};

pub struct Migration {
    pub version: &'static str,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../sql/", $file)),
        }
    };
}

/// Every migration, in the order it is applied. Add new files at the end.
pub const MIGRATIONS: &[Migration] = &[
    migration!("001", "core", "001_core.sql"),
    migration!("002", "audiences", "002_audiences.sql"),
    migration!("003", "history", "003_history.sql"),
    migration!("004", "entities", "004_entities.sql"),
    migration!("005", "segment_queue", "005_segment_queue.sql"),
    migration!("010", "stitching", "010_stitching.sql"),
    migration!("020", "attributes", "020_attributes.sql"),
    migration!("030", "audience_migration", "030_audience_migration.sql"),
    migration!("040", "history", "040_history.sql"),
    migration!("050", "production", "050_production.sql"),
    migration!("060", "segments", "060_segments.sql"),
    migration!("070", "groups", "070_groups.sql"),
    migration!("080", "eval_role", "080_eval_role.sql"),
    migration!("090", "stitch_bulk", "090_stitch_bulk.sql"),
    migration!("100", "serve", "100_serve.sql"),
    migration!("110", "history_actor", "110_history_actor.sql"),
    migration!("120", "identifier_key", "120_identifier_key.sql"),
    migration!("130", "job_runs", "130_job_runs.sql"),
];

impl Migration {
    /// SHA-256 of the file as shipped (before schema names are substituted,
    /// so custom schema names do not change it).
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    pub fn label(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
}

const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS {{cdpctl}};
CREATE TABLE IF NOT EXISTS {{cdpctl}}.schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);";

/// The state of every migration; errors when an applied file has changed.
pub async fn plan(db: &Db) -> Result<Vec<(&'static Migration, State)>> {
    let applied: Vec<(String, String)> =
        if db.relation_exists("cdpctl", "schema_migrations").await? {
            db.client
                .query(
                    &db.schemas
                        .substitute("SELECT version, checksum FROM {{cdpctl}}.schema_migrations"),
                    &[],
                )
                .await
                .pg_context(|| "reading applied migrations".into())?
                .into_iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        } else {
            Vec::new()
        };
    let mut out = Vec::new();
    for m in MIGRATIONS {
        match applied.iter().find(|(v, _)| v == m.version) {
            Some((_, sum)) if *sum == m.checksum() => out.push((m, State::Applied)),
            Some(_) => bail!(
                "migration sql/{}.sql was changed after it was applied to this database; restore the original file and put the change in a new migration",
                m.label()
            ),
            None => out.push((m, State::Pending)),
        }
    }
    Ok(out)
}

/// Versions recorded as applied that this binary does not ship (applied
/// by a newer cdpctl, or a file removed): `status --check` fails on them.
pub async fn unknown_applied(db: &Db) -> Result<Vec<String>> {
    if !db.relation_exists("cdpctl", "schema_migrations").await? {
        return Ok(Vec::new());
    }
    let known: Vec<&str> = MIGRATIONS.iter().map(|m| m.version).collect();
    Ok(db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT version || '_' || name FROM {{cdpctl}}.schema_migrations
                  WHERE version <> ALL($1::text[]) ORDER BY version",
            ),
            &[&known],
        )
        .await
        .pg_context(|| "reading applied migrations".into())?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// The SQL `init` would run for the pending migrations, schema names filled in.
pub fn render(db: &Db, pending: &[&Migration]) -> String {
    let mut sql = db.schemas.substitute(BOOTSTRAP);
    sql.push('\n');
    for m in pending {
        sql.push_str(&format!("\n-- sql/{}.sql\n", m.label()));
        sql.push_str(&db.schemas.substitute(m.sql));
    }
    sql
}

/// Applies every pending migration in one transaction. Returns the labels
/// applied (empty when the schema was up to date).
pub async fn apply(db: &mut Db) -> Result<Vec<String>> {
    let pending: Vec<&Migration> = plan(db)
        .await?
        .into_iter()
        .filter(|(_, s)| *s == State::Pending)
        .map(|(m, _)| m)
        .collect();
    let bootstrap = db.schemas.substitute(BOOTSTRAP);
    let record = db.schemas.substitute(
        "INSERT INTO {{cdpctl}}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
    );
    let subst: Vec<(String, &Migration)> = pending
        .iter()
        .map(|m| (db.schemas.substitute(m.sql), *m))
        .collect();
    let tx = db.client.transaction().await?;
    tx.batch_execute(&bootstrap)
        .await
        .pg_context(|| "creating the cdpctl bookkeeping schema".into())?;
    // Serialise concurrent `init`s on the migrations table itself.
    tx.batch_execute(
        &db.schemas
            .substitute("LOCK TABLE {{cdpctl}}.schema_migrations IN SHARE ROW EXCLUSIVE MODE"),
    )
    .await
    .pg_context(|| "locking the migrations table".into())?;
    let mut done = Vec::new();
    for (sql, m) in &subst {
        let exists = tx
            .query_opt(
                &db.schemas
                    .substitute("SELECT 1 FROM {{cdpctl}}.schema_migrations WHERE version = $1"),
                &[&m.version],
            )
            .await?;
        if exists.is_some() {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .pg_context(|| format!("applying sql/{}.sql", m.label()))?;
        tx.execute(&record, &[&m.version, &m.name, &m.checksum()])
            .await
            .pg_context(|| "recording the migration".into())?;
        done.push(m.label());
    }
    tx.commit().await.context("committing the migrations")?;
    Ok(done)
}

/// Errors with a pointer to `cdpctl init` when the database is not (fully)
/// initialised or a configured schema is missing.
pub async fn require_current(db: &Db) -> Result<()> {
    require_schemas(db).await?;
    let pending: Vec<String> = plan(db)
        .await?
        .into_iter()
        .filter(|(_, s)| *s == State::Pending)
        .map(|(m, _)| m.label())
        .collect();
    if !pending.is_empty() {
        bail!(
            "database \"{}\" needs {} schema migration(s) ({}); run `cdpctl init` first",
            db.params.dbname(),
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(())
}

/// Errors naming the config key when a configured schema does not exist.
pub async fn require_schemas(db: &Db) -> Result<()> {
    let missing: Vec<String> = db
        .client
        .query(
            "SELECT n FROM unnest($1::text[]) AS n WHERE NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = n)",
            &[&db.schemas.raw().iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()],
        )
        .await
        .pg_context(|| "checking schemas".into())?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(name) = missing.first() {
        let key = db
            .schemas
            .raw()
            .iter()
            .find(|(_, v)| v == name)
            .map(|(k, _)| match *k {
                "cdp" => "cdp_schema",
                "ce" => "ce_schema",
                "ps" => "ps_schema",
                "attr" => "attr_schema",
                "audience" => "audience_schema",
                "history" => "history_schema",
                _ => "cdpctl_schema",
            })
            .unwrap_or("?");
        bail!(
            "schema \"{name}\" ({key} in the config) does not exist in database \"{}\"; run `cdpctl init` to create it, or fix {key} in the config",
            db.params.dbname()
        );
    }
    Ok(())
}
