-- Campaign history capture and import.
--
-- * import_key: idempotency key of imported snapshots (md5 of the change's
--   content), unique, so importing the same export twice adds nothing.
--   Captured snapshots leave it NULL.
-- * capture_campaign_changes(): the statement-level trigger function that
--   `cdpctl init` attaches (AFTER INSERT / UPDATE / DELETE with transition
--   tables, BEFORE TRUNCATE) to the campaigns table named in the config.
--   TG_ARGV = (customer column, id column). One INSERT ... SELECT per
--   statement, all rows stamped with clock_timestamp() of that statement, so
--   several statements in one transaction get distinct, ordered times (the
--   snapshot id breaks ties).
-- * snapshots are append-only: UPDATE is refused (DELETE stays possible for
--   retention).

ALTER TABLE {{history}}.campaign_snapshots ADD COLUMN IF NOT EXISTS import_key uuid;
CREATE UNIQUE INDEX IF NOT EXISTS campaign_snapshots_import_key_idx
    ON {{history}}.campaign_snapshots (import_key) WHERE import_key IS NOT NULL;

CREATE OR REPLACE FUNCTION {{history}}.capture_campaign_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    cust  text := TG_ARGV[0];
    idcol text := TG_ARGV[1];
    t     timestamptz := clock_timestamp();
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(
            'INSERT INTO %1$I.campaign_snapshots (customer_id, campaign_id, event_time, event_type, snapshot)
             SELECT n.%2$I, n.%3$I, $1, ''created'', to_jsonb(n)
               FROM cdpctl_new_rows n
              WHERE n.%2$I IS NOT NULL AND n.%3$I IS NOT NULL',
            {{history_lit}}, cust, idcol) USING t;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Pair old and new rows by (customer, id): a changed key is a delete
        -- of the old campaign and a creation of the new one.
        EXECUTE format(
            'INSERT INTO %1$I.campaign_snapshots (customer_id, campaign_id, event_time, event_type, snapshot)
             SELECT coalesce(n.%2$I, o.%2$I), coalesce(n.%3$I, o.%3$I), $1,
                    CASE WHEN o.%3$I IS NULL THEN ''created''
                         WHEN n.%3$I IS NULL THEN ''deleted''
                         ELSE ''updated'' END,
                    CASE WHEN n.%3$I IS NULL THEN to_jsonb(o) ELSE to_jsonb(n) END
               FROM cdpctl_new_rows n
               FULL JOIN cdpctl_old_rows o ON o.%2$I = n.%2$I AND o.%3$I = n.%3$I
              WHERE coalesce(n.%2$I, o.%2$I) IS NOT NULL AND coalesce(n.%3$I, o.%3$I) IS NOT NULL',
            {{history_lit}}, cust, idcol) USING t;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'INSERT INTO %1$I.campaign_snapshots (customer_id, campaign_id, event_time, event_type, snapshot)
             SELECT o.%2$I, o.%3$I, $1, ''deleted'', to_jsonb(o)
               FROM cdpctl_old_rows o
              WHERE o.%2$I IS NOT NULL AND o.%3$I IS NOT NULL',
            {{history_lit}}, cust, idcol) USING t;
    ELSIF TG_OP = 'TRUNCATE' THEN
        EXECUTE format(
            'INSERT INTO %1$I.campaign_snapshots (customer_id, campaign_id, event_time, event_type, snapshot)
             SELECT o.%2$I, o.%3$I, $1, ''deleted'', to_jsonb(o)
               FROM %4$I.%5$I o
              WHERE o.%2$I IS NOT NULL AND o.%3$I IS NOT NULL',
            {{history_lit}}, cust, idcol, TG_TABLE_SCHEMA, TG_TABLE_NAME) USING t;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION {{history}}.refuse_snapshot_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'campaign snapshots are append-only: UPDATE of %.% is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING HINT = 'record a new snapshot instead; DELETE is allowed for retention';
END
$fn$;

DROP TRIGGER IF EXISTS campaign_snapshots_append_only ON {{history}}.campaign_snapshots;
CREATE TRIGGER campaign_snapshots_append_only
    BEFORE UPDATE ON {{history}}.campaign_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION {{history}}.refuse_snapshot_update();
