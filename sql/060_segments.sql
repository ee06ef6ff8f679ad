-- Segment flushing (`cdpctl flush-segment`): requests kept aside because
-- their contact reference has no contact id, one statistics row per segment
-- and batch (written in the batch's transaction), and the index that lets
-- concurrent flushers keep each key's arrival order.

CREATE TABLE IF NOT EXISTS {{audience}}.segment_changes_unresolved (
    id           bigint PRIMARY KEY,            -- the request's id in segment_changes
    segment      text   NOT NULL,
    key          text   NOT NULL,
    key_kind     text   NOT NULL,
    verb         text   NOT NULL,
    program_kind text,
    run_id       bigint,
    enqueued_at  timestamptz NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason       text   NOT NULL
);
CREATE INDEX IF NOT EXISTS segment_changes_unresolved_key_idx
    ON {{audience}}.segment_changes_unresolved (key_kind, key);

CREATE TABLE IF NOT EXISTS {{audience}}.segment_flushes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flushed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    segment     text   NOT NULL,
    destination text   NOT NULL CHECK (destination IN ('audience', 'rest')),
    requests    bigint NOT NULL,   -- queued requests settled by this batch
    coalesced   bigint NOT NULL,
    added       bigint NOT NULL,
    removed     bigint NOT NULL,
    unresolved  bigint NOT NULL,
    first_id    bigint NOT NULL,
    last_id     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS segment_flushes_segment_idx
    ON {{audience}}.segment_flushes (segment, id);

CREATE INDEX IF NOT EXISTS segment_changes_key_idx
    ON {{audience}}.segment_changes (segment, key, id);
