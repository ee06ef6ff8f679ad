//! The two cache tables the CDP's UI reads: entities per attribute and
//! entities per (attribute, value) (the most common values of each
//! attribute). Rebuilt in one transaction when stale or on request.

use anyhow::{Context as _, Result};

use crate::db::{Db, PgResultExt};

/// True when a cache was never filled, was marked stale (`modified =
/// NULL`, the seed's way to force an update) or is older than the window.
pub async fn is_stale(db: &Db, max_age_hours: f64) -> Result<bool> {
    let row = db
        .client
        .query_one(
            &db.schemas.substitute(
                "WITH cutoff AS (SELECT (now() AT TIME ZONE 'UTC') - make_interval(secs => $1::float8 * 3600) AS t)
                 SELECT NOT EXISTS (SELECT 1 FROM {{attr}}.cached_attributes_counts_customers_per_attribute)
                     OR EXISTS (SELECT 1 FROM {{attr}}.cached_attributes_counts_customers_per_attribute, cutoff
                                 WHERE modified IS NULL OR modified < cutoff.t)
                     OR EXISTS (SELECT 1 FROM {{attr}}.cached_attribute_values_counts, cutoff
                                 WHERE modified IS NULL OR modified < cutoff.t)",
            ),
            &[&max_age_hours],
        )
        .await
        .pg_context(|| "checking the attribute caches".into())?;
    Ok(row.get(0))
}

/// Rebuilds both caches; returns (attributes, value rows).
pub async fn refresh(db: &mut Db, values_per_attribute: i64) -> Result<(u64, u64)> {
    let s = db.schemas.clone();
    let tx = db.client.transaction().await?;
    tx.batch_execute(&s.substitute(
        "DELETE FROM {{attr}}.cached_attributes_counts_customers_per_attribute;
         DELETE FROM {{attr}}.cached_attribute_values_counts;",
    ))
    .await
    .pg_context(|| "clearing the attribute caches".into())?;
    let attrs = tx
        .execute(
            &s.substitute(
                "INSERT INTO {{attr}}.cached_attributes_counts_customers_per_attribute (attribute_id, count, modified)
                 SELECT a.id, coalesce(c.n, 0), now() AT TIME ZONE 'UTC'
                   FROM {{attr}}.attributes a
                   LEFT JOIN (SELECT attribute_id, count(DISTINCT customer_entity_id) AS n
                                FROM {{attr}}.customer_attributes GROUP BY attribute_id) c
                     ON c.attribute_id = a.id",
            ),
            &[],
        )
        .await
        .pg_context(|| "filling cached_attributes_counts_customers_per_attribute".into())?;
    let values = tx
        .execute(
            &s.substitute(
                "INSERT INTO {{attr}}.cached_attribute_values_counts (attribute_id, value, count, modified)
                 SELECT attribute_id, value, n, now() AT TIME ZONE 'UTC'
                   FROM (SELECT attribute_id, value, count(*) AS n,
                                row_number() OVER (PARTITION BY attribute_id
                                                   ORDER BY count(*) DESC, value COLLATE \"C\") AS rank
                           FROM {{attr}}.customer_attributes
                          WHERE value IS NOT NULL
                          GROUP BY attribute_id, value) v
                  WHERE rank <= $1",
            ),
            &[&values_per_attribute],
        )
        .await
        .pg_context(|| "filling cached_attribute_values_counts".into())?;
    tx.commit()
        .await
        .context("committing the attribute caches")?;
    Ok((attrs, values))
}
