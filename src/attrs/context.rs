//! Context keys: results of queries over the whole customer base (a
//! key-value store custom queries can read). Stale keys (never computed or
//! older than the context window) are recomputed before a calculation; each
//! query runs on the evaluation session ([`crate::db::eval`]).

use anyhow::{bail, Result};
use serde::Serialize;

use super::definition::trim_query;
use crate::db::{Db, PgError, PgResultExt};

#[derive(Debug, Clone, Serialize)]
pub struct ContextValue {
    pub key: String,
    pub value: Option<String>,
}

/// Keys never computed or computed more than `max_age_hours` ago.
pub async fn stale_keys(db: &Db, max_age_hours: f64) -> Result<Vec<String>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT key FROM {{attr}}.context
                  WHERE modified IS NULL
                     OR modified < (now() AT TIME ZONE 'UTC') - make_interval(secs => $1::float8 * 3600)
                  ORDER BY key",
            ),
            &[&max_age_hours],
        )
        .await
        .pg_context(|| "reading stale context keys".into())?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Checks that every named key exists; all keys when `keys` is empty.
pub async fn resolve_keys(db: &Db, keys: &[String]) -> Result<Vec<String>> {
    let all: Vec<String> = db
        .client
        .query(
            &db.schemas
                .substitute("SELECT key FROM {{attr}}.context ORDER BY key"),
            &[],
        )
        .await
        .pg_context(|| "reading context keys".into())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if keys.is_empty() {
        return Ok(all);
    }
    let unknown: Vec<&String> = keys.iter().filter(|k| !all.contains(k)).collect();
    if !unknown.is_empty() {
        bail!(
            "unknown context key{} {}; known keys: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", "),
            if all.is_empty() {
                "none (insert rows into the context table)".to_string()
            } else {
                all.join(", ")
            }
        );
    }
    Ok(keys.to_vec())
}

/// Marks keys stale (`modified = NULL`); returns how many rows changed.
pub async fn reset(db: &Db, keys: &[String]) -> Result<u64> {
    db.client
        .execute(
            &db.schemas
                .substitute("UPDATE {{attr}}.context SET modified = NULL WHERE key = ANY($1)"),
            &[&keys],
        )
        .await
        .pg_context(|| "marking context keys stale".into())
}

/// Evaluates the keys' queries (first column of the first row, as text; no
/// row = NULL) on the evaluation session, each as one prepared statement in
/// a read-only transaction. Writes nothing.
pub async fn evaluate(db: &Db, keys: &[String]) -> Result<Vec<ContextValue>> {
    let rows = db
        .client
        .query(
            &db.schemas.substitute(
                "SELECT key, query FROM {{attr}}.context WHERE key = ANY($1) ORDER BY key",
            ),
            &[&keys],
        )
        .await
        .pg_context(|| "reading context queries".into())?;
    let eval = db.eval().await?;
    let mut out = Vec::new();
    for r in rows {
        let key: String = r.get(0);
        let query: Option<String> = r.get(1);
        let query = query.map(|q| trim_query(&q)).filter(|q| !q.is_empty());
        let Some(query) = query else {
            bail!("context \"{key}\": the query is empty; set {}.context.query for this key or delete the key", db.schemas.raw_name("attr"));
        };
        // the first column by position, in the text form of its type
        let sql = format!(
            "SELECT CASE WHEN num_nulls(q.cdpctl_value) = 0 THEN format('%s', q.cdpctl_value) END
               FROM ({query}\n) AS q(cdpctl_value) LIMIT 1"
        );
        let tx = eval.begin().await?;
        let res = tx.query(&sql, &[]).await;
        tx.end().await;
        let rows = res.map_err(|e| {
            let cause = match e.downcast_ref::<PgError>() {
                Some(p) => p.message.clone(),
                None => format!("{e:#}"),
            };
            anyhow::anyhow!(
                "context \"{key}\": {cause}; fix the query in {}.context (it runs read-only)",
                db.schemas.raw_name("attr")
            )
        })?;
        out.push(ContextValue {
            key,
            value: rows.first().and_then(|r| r.get::<_, Option<String>>(0)),
        });
    }
    Ok(out)
}

/// Stores evaluated values with `modified = now`.
pub async fn store(db: &mut Db, values: &[ContextValue]) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = values.iter().map(|v| v.key.as_str()).collect();
    let vals: Vec<Option<&str>> = values.iter().map(|v| v.value.as_deref()).collect();
    db.client
        .execute(
            &db.schemas.substitute(
                "UPDATE {{attr}}.context c SET value = u.value, modified = now() AT TIME ZONE 'UTC'
                   FROM unnest($1::text[], $2::text[]) AS u(key, value)
                  WHERE c.key = u.key",
            ),
            &[&keys, &vals],
        )
        .await
        .pg_context(|| "storing context values".into())?;
    Ok(())
}

/// Recomputes the given keys and stores them.
pub async fn refresh(db: &mut Db, keys: &[String]) -> Result<Vec<ContextValue>> {
    let values = evaluate(db, keys).await?;
    store(db, &values).await?;
    Ok(values)
}
