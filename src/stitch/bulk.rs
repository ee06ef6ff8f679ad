//! Bulk loading for runs from scratch, the way pg_restore loads a table:
//! the secondary indexes and index-backed constraints of the tables about to
//! be refilled are dropped inside the run's transaction (after its TRUNCATE)
//! and rebuilt once the rows are in, with parallel workers and a large
//! `maintenance_work_mem`. Everything happens in the one transaction, so a
//! crash or Ctrl-C leaves the previous tables, indexes and results as they
//! were, and views over the tables stay valid (they depend on the tables,
//! not on their indexes).

use anyhow::Result;
use tokio_postgres::Client;

use crate::db::{quote_ident, PgResultExt};

/// What was dropped, in the order it must be recreated.
#[derive(Debug, Default)]
pub struct Deferred {
    /// `CREATE INDEX` / `ALTER TABLE ... ADD CONSTRAINT` statements: plain
    /// indexes and primary/unique constraints first, foreign keys that
    /// reference the tables last.
    restore: Vec<(String, String)>,
}

impl Deferred {
    pub fn len(&self) -> usize {
        self.restore.len()
    }

    pub fn is_empty(&self) -> bool {
        self.restore.is_empty()
    }
}

/// Session settings for the index builds of a bulk load (transaction-local).
pub const BUILD_SETTINGS: &str = "SET LOCAL maintenance_work_mem = '1GB';
     SET LOCAL max_parallel_maintenance_workers = 2;
     SET LOCAL synchronous_commit = on";

/// Drops the indexes and index-backed constraints of `tables` (already
/// truncated in the current transaction) and the foreign keys that point at
/// them. Each drop runs under a savepoint: one that something else depends
/// on (a view grouping by a primary key, say) is kept and simply maintained
/// during the load.
pub async fn defer_indexes(client: &Client, tables: &[String]) -> Result<Deferred> {
    let mut d = Deferred::default();
    let rows = client
        .query(
            "WITH t AS (SELECT unnest($1::text[])::regclass AS rel)
             SELECT 1 AS ord, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), NULL
               FROM pg_constraint c JOIN t ON t.rel = c.confrelid
              WHERE c.contype = 'f' AND c.conrelid <> c.confrelid
             UNION ALL
             SELECT 2, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), NULL
               FROM pg_constraint c JOIN t ON t.rel = c.conrelid
              WHERE c.contype IN ('p', 'u', 'x')
             UNION ALL
             SELECT 3, i.indrelid::regclass::text, ic.relname, pg_get_indexdef(i.indexrelid), n.nspname
               FROM pg_index i JOIN t ON t.rel = i.indrelid
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = ic.relnamespace
              WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c
                                 WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
             ORDER BY 1, 2, 3",
            &[&tables],
        )
        .await
        .pg_context(|| "reading the indexes of the stitching tables".into())?;
    let mut fks = Vec::new();
    for r in rows {
        let ord: i32 = r.get(0);
        let table: String = r.get(1);
        let name: String = r.get(2);
        let def: String = r.get(3);
        let (drop, create) = match ord {
            3 => {
                let schema: String = r.get(4);
                (
                    format!("DROP INDEX {}.{}", quote_ident(&schema), quote_ident(&name)),
                    def,
                )
            }
            _ => (
                format!("ALTER TABLE {table} DROP CONSTRAINT {}", quote_ident(&name)),
                format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {def}",
                    quote_ident(&name)
                ),
            ),
        };
        client
            .batch_execute("SAVEPOINT cdpctl_defer")
            .await
            .pg_context(|| "setting a savepoint".into())?;
        match client.batch_execute(&drop).await {
            Ok(()) => {
                client
                    .batch_execute("RELEASE SAVEPOINT cdpctl_defer")
                    .await
                    .pg_context(|| "releasing a savepoint".into())?;
                let entry = (create, format!("rebuilding {name} on {table}"));
                if ord == 1 {
                    fks.push(entry);
                } else {
                    d.restore.push(entry);
                }
            }
            Err(_) => {
                client
                    .batch_execute(
                        "ROLLBACK TO SAVEPOINT cdpctl_defer; RELEASE SAVEPOINT cdpctl_defer",
                    )
                    .await
                    .pg_context(|| "rolling back to a savepoint".into())?;
            }
        }
    }
    d.restore.extend(fks);
    Ok(d)
}

/// Recreates what [`defer_indexes`] dropped.
pub async fn restore_indexes(client: &Client, d: Deferred) -> Result<()> {
    for (sql, what) in d.restore {
        client.batch_execute(&sql).await.pg_context(|| what)?;
    }
    Ok(())
}
