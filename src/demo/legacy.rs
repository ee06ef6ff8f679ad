//! The legacy production objects of a CDP that predates cdpctl, for the demo:
//! a `customer_events` view without entities, a `pivoted_customer_attributes`
//! table and a view built on it, so `go-production` has something to replace.

use anyhow::Result;

use crate::db::{Db, PgResultExt};

const LEGACY: &str = "
CREATE VIEW {{cdp}}.customer_events AS
    SELECT id, NULL::uuid AS customer_entity_id, source_id, type, version, event_time, payload
      FROM {{ce}}.customer_events;
CREATE TABLE {{cdp}}.pivoted_customer_attributes (
    customer_entity_id uuid PRIMARY KEY,
    first_source text,
    emails text[],
    total_spent text
);
CREATE VIEW {{cdp}}.pivoted_customer_attributes_view AS
    SELECT customer_entity_id, first_source, total_spent
      FROM {{cdp}}.pivoted_customer_attributes;
";

/// Creates the legacy objects unless the cdp schema already has either of
/// them. Returns whether it created them.
pub async fn create_if_missing(db: &Db) -> Result<bool> {
    if db.relation_exists("cdp", "customer_events").await?
        || db
            .relation_exists("cdp", "pivoted_customer_attributes")
            .await?
    {
        return Ok(false);
    }
    db.client
        .batch_execute(&format!("BEGIN; {} COMMIT;", db.schemas.substitute(LEGACY)))
        .await
        .pg_context(|| "creating the legacy production objects of the demo".into())?;
    Ok(true)
}
