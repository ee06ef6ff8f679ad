-- The role configured SQL runs as: attribute expressions, filters, custom and
-- context queries, stitching value expressions and group predicates are
-- evaluated on a separate connection whose *session user* is cdpctl_eval, so
-- neither set_config('role', ...) nor SET SESSION AUTHORIZATION can reach the
-- privileges of the role cdpctl itself connects as. It may read what
-- configured SQL is documented to read, and nothing else: no write, no
-- server files or programs, no large objects, no role membership.
-- Roles belong to the cluster: an existing cdpctl_eval is kept as it is
-- (cdpctl refuses to evaluate as one that is privileged).
DO $cdpctl$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdpctl_eval') THEN
        BEGIN
            CREATE ROLE cdpctl_eval LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
                NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            -- created meanwhile by an init of another database of the cluster
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot create the role cdpctl_eval, which configured SQL runs as: %', SQLERRM
                    USING HINT = 'run cdpctl init as a role with CREATEROLE, or have a superuser run: '
                        'CREATE ROLE cdpctl_eval LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT';
        END;
    END IF;
END
$cdpctl$;

-- The grants, as a function so `init` and stitching (which recreates a
-- dropped queue table) can re-apply them to tables created again later.
-- Temporary tables are the evaluation's scratch space (the batch's entities
-- and events, group features); they live and die with its session.
CREATE OR REPLACE FUNCTION {{cdpctl}}.grant_eval_role() RETURNS void
LANGUAGE plpgsql AS $cdpctl$
BEGIN
    BEGIN
        EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO cdpctl_eval', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'cannot grant CONNECT, TEMPORARY on database % to cdpctl_eval (%); it needs both (PUBLIC has them by default)',
            current_database(), SQLERRM;
    END;
    GRANT USAGE ON SCHEMA {{cdp}}, {{ce}}, {{ps}}, {{attr}}, {{audience}} TO cdpctl_eval;
    GRANT SELECT ON {{cdp}}.sources, {{cdp}}.attributes, {{cdp}}.events TO cdpctl_eval;
    GRANT SELECT ON {{ce}}.customer_events TO cdpctl_eval;
    GRANT SELECT ON {{ps}}.event_entities, {{ps}}.entities TO cdpctl_eval;
    IF to_regclass(format('%I.%I', {{ps_lit}}, 'customer_events_to_process')) IS NOT NULL THEN
        GRANT SELECT ON {{ps}}.customer_events_to_process TO cdpctl_eval;
    END IF;
    GRANT SELECT ON {{attr}}.attributes, {{attr}}.context, {{attr}}.customer_entities,
                    {{attr}}.customer_attributes TO cdpctl_eval;
    GRANT SELECT ON {{audience}}.group_members TO cdpctl_eval;
    GRANT EXECUTE ON FUNCTION {{audience}}.to_num(text) TO cdpctl_eval;
END
$cdpctl$;
REVOKE ALL ON FUNCTION {{cdpctl}}.grant_eval_role() FROM PUBLIC;

SELECT {{cdpctl}}.grant_eval_role();
