-- Who made each captured campaign change.
--
-- * actor_user: the role that ran the statement. The capture function is
--   SECURITY DEFINER (it writes the snapshot table, which the roles changing
--   campaigns need no rights on), so inside it current_user is its owner;
--   the invoker's role is the session's: the role set with SET ROLE, else
--   session_user. Neither can be set to a role the session may not become.
--   (A change made inside another SECURITY DEFINER function is recorded with
--   the session's role, i.e. the login that called that function.)
-- * actor_application: the session's application_name.
-- * actor: the session's optional cdpctl.actor setting, which application
--   code sets to name the person behind a shared login
--   (SET cdpctl.actor = 'alice@support', or SET LOCAL in the transaction).
-- Empty settings are stored as NULL; imported snapshots leave all three NULL.

ALTER TABLE {{history}}.campaign_snapshots
    ADD COLUMN IF NOT EXISTS actor_user text,
    ADD COLUMN IF NOT EXISTS actor_application text,
    ADD COLUMN IF NOT EXISTS actor text;

CREATE OR REPLACE FUNCTION {{history}}.capture_campaign_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    cust  text := TG_ARGV[0];
    idcol text := TG_ARGV[1];
    t     timestamptz := clock_timestamp();
    who   text := CASE current_setting('role') WHEN 'none' THEN session_user::text
                       ELSE current_setting('role') END;
    app   text := nullif(current_setting('application_name'), '');
    actr  text := nullif(current_setting('cdpctl.actor', true), '');
    ins   text := format(
        'INSERT INTO %I.campaign_snapshots
                (customer_id, campaign_id, event_time, event_type, snapshot,
                 actor_user, actor_application, actor) ', {{history_lit}});
BEGIN
    -- $1 time, $2 role, $3 application, $4 actor; one INSERT ... SELECT per statement
    IF TG_OP = 'INSERT' THEN
        EXECUTE ins || format(
            'SELECT n.%1$I, n.%2$I, $1, ''created'', to_jsonb(n), $2, $3, $4
               FROM cdpctl_new_rows n
              WHERE n.%1$I IS NOT NULL AND n.%2$I IS NOT NULL',
            cust, idcol) USING t, who, app, actr;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Pair old and new rows by (customer, id): a changed key is a delete
        -- of the old campaign and a creation of the new one.
        EXECUTE ins || format(
            'SELECT coalesce(n.%1$I, o.%1$I), coalesce(n.%2$I, o.%2$I), $1,
                    CASE WHEN o.%2$I IS NULL THEN ''created''
                         WHEN n.%2$I IS NULL THEN ''deleted''
                         ELSE ''updated'' END,
                    CASE WHEN n.%2$I IS NULL THEN to_jsonb(o) ELSE to_jsonb(n) END,
                    $2, $3, $4
               FROM cdpctl_new_rows n
               FULL JOIN cdpctl_old_rows o ON o.%1$I = n.%1$I AND o.%2$I = n.%2$I
              WHERE coalesce(n.%1$I, o.%1$I) IS NOT NULL AND coalesce(n.%2$I, o.%2$I) IS NOT NULL',
            cust, idcol) USING t, who, app, actr;
    ELSE
        -- DELETE reads the transition table, TRUNCATE (BEFORE) the table itself
        EXECUTE ins || format(
            'SELECT o.%1$I, o.%2$I, $1, ''deleted'', to_jsonb(o), $2, $3, $4
               FROM %3$s o
              WHERE o.%1$I IS NOT NULL AND o.%2$I IS NOT NULL',
            cust, idcol,
            CASE TG_OP WHEN 'DELETE' THEN 'cdpctl_old_rows'
                 ELSE format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME) END)
            USING t, who, app, actr;
    END IF;
    RETURN NULL;
END
$fn$;
