-- Tables shared by stitching, attribute calculation, audiences and the
-- production views.

-- Event → customer entity, written by `cdpctl stitch`.
CREATE TABLE IF NOT EXISTS {{ps}}.event_entities (
    event_id  uuid PRIMARY KEY,
    entity_id uuid NOT NULL
);
CREATE INDEX IF NOT EXISTS event_entities_entity_idx ON {{ps}}.event_entities (entity_id);

-- Change journal of customer entities, consumed (and deleted) by
-- `cdpctl calc-audiences`:
--   kind 'events'     items = event keys "source/type/version" the entity gained
--   kind 'merged'     items = ids of the entities it absorbed
--   kind 'removed'    the entity was absorbed into another (items = {surviving id})
--   kind 'attributes' items = attribute ids whose values changed
CREATE TABLE IF NOT EXISTS {{cdpctl}}.entity_changes (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_id   uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('events', 'merged', 'removed', 'attributes')),
    items       text[] NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
