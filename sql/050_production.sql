-- Production switch (`cdpctl go-production` / `cdpctl rollback`): who switched
-- what and when, and the definitions of the views a switch dropped, so a
-- rollback recreates them exactly. The current production state of a cdp
-- schema is its latest go-production or rollback row.

CREATE TABLE IF NOT EXISTS {{cdpctl}}.production_switches (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action         text NOT NULL CHECK (action IN ('go-production', 'rollback', 'sync-pivot')),
    cdp_schema     text NOT NULL,
    switched_at    timestamptz NOT NULL DEFAULT now(),
    db_user        text NOT NULL DEFAULT current_user,
    os_user        text,
    client_host    text,
    cdpctl_version text,
    -- objects renamed, created and dropped, check results, flags
    details        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS production_switches_schema_idx
    ON {{cdpctl}}.production_switches (cdp_schema, id DESC);

-- Views that depended on the replaced objects, as they were before the switch
-- (in creation order). `statements` recreates one exactly: CREATE, owner,
-- grants, comments, indexes of materialized views.
CREATE TABLE IF NOT EXISTS {{cdpctl}}.production_saved_views (
    switch_id   bigint NOT NULL REFERENCES {{cdpctl}}.production_switches (id),
    ord         integer NOT NULL,
    schema_name text NOT NULL,
    view_name   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('view', 'materialized view')),
    definition  text NOT NULL,
    statements  text[] NOT NULL,
    PRIMARY KEY (switch_id, ord)
);
