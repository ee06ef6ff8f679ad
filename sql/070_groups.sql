-- Rule-based contact groups (`cdpctl calc-audiences`): definitions as JSON
-- condition trees, current membership, and the journal of membership changes.

CREATE SCHEMA IF NOT EXISTS {{audience}};

-- One row per group. `definition` is the condition tree (all/any/not with
-- attribute, activity and custom SQL leaves); `campaign_id` links the group
-- to a campaign audience whose membership changes go to the segment queue.
-- The evaluated_* columns are calc-audiences' bookkeeping: a definition whose
-- hash differs from evaluated_hash is recalculated in full on the next run.
CREATE TABLE IF NOT EXISTS {{audience}}.groups (
    id              text PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    definition      jsonb NOT NULL,
    campaign_id     bigint,
    enabled         boolean NOT NULL DEFAULT true,
    created         timestamptz NOT NULL DEFAULT now(),
    modified        timestamptz NOT NULL DEFAULT now(),
    evaluated_hash  text,
    last_full_at    timestamptz,
    context_stamp   text,
    member_count    bigint NOT NULL DEFAULT 0,
    CHECK (id <> '')
);

-- No foreign key to groups: a full recalculation inserts millions of rows and
-- a per-row FK check would double its cost; the trigger below removes the
-- members of a deleted group instead.
CREATE TABLE IF NOT EXISTS {{audience}}.group_members (
    group_id   text NOT NULL,
    entity_id  uuid NOT NULL,
    since      timestamptz NOT NULL,
    -- the contact id sent to the segment queue when the member joined a
    -- linked group, so its removal can be sent even after the entity is gone
    contact_id text,
    PRIMARY KEY (group_id, entity_id)
);
CREATE INDEX IF NOT EXISTS group_members_entity_idx ON {{audience}}.group_members (entity_id);

CREATE OR REPLACE FUNCTION {{audience}}.groups_delete_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {{audience}}.group_members m USING old_groups o WHERE m.group_id = o.id;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS groups_delete_members ON {{audience}}.groups;
CREATE TRIGGER groups_delete_members AFTER DELETE ON {{audience}}.groups
    REFERENCING OLD TABLE AS old_groups FOR EACH STATEMENT
    EXECUTE FUNCTION {{audience}}.groups_delete_members();

CREATE TABLE IF NOT EXISTS {{audience}}.group_member_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000) PRIMARY KEY,
    group_id   text NOT NULL,
    entity_id  uuid NOT NULL,
    change     text NOT NULL CHECK (change IN ('added', 'removed')),
    changed_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS group_member_changes_group_idx ON {{audience}}.group_member_changes (group_id, id);

-- Entities every group has evaluated at least once. An entity that shows up
-- in the change journal without being listed here is new: it is evaluated
-- against every group once (a rule such as "has no e-mail" holds for it
-- without any dependency changing), afterwards only by dependencies.
CREATE TABLE IF NOT EXISTS {{audience}}.group_entities_seen (
    entity_id uuid PRIMARY KEY
);

-- Attribute values are text; numeric rule operators compare the values that
-- look like decimal numbers and ignore the rest (never a cast error).
CREATE OR REPLACE FUNCTION {{audience}}.to_num(v text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN v ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN v::numeric END $$;
