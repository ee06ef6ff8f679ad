-- Stitching writes only what incremental runs and users need. The per-edge
-- table `matching` is gone: `cdpctl stitch explain` derives an entity's
-- edges on demand from its events and the configured value expressions.
-- A run from scratch journals one 'rebuilt' row (entity_id = the nil uuid)
-- instead of one row per entity: every entity may have changed.
DROP TABLE IF EXISTS {{ps}}.matching;

ALTER TABLE {{cdpctl}}.entity_changes DROP CONSTRAINT IF EXISTS entity_changes_kind_check;
ALTER TABLE {{cdpctl}}.entity_changes ADD CONSTRAINT entity_changes_kind_check
    CHECK (kind IN ('events', 'merged', 'removed', 'attributes', 'rebuilt'));
