-- The durable queue of one-at-a-time segment add/remove requests, drained by
-- `cdpctl flush-segment`. Producers insert with plain SQL; a row stays until
-- the change it carries has been applied.
CREATE TABLE IF NOT EXISTS {{audience}}.segment_changes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    segment      text   NOT NULL,
    key          text   NOT NULL,
    key_kind     text   NOT NULL DEFAULT 'contact_id' CHECK (key_kind IN ('contact_id', 'contact_reference')),
    verb         text   NOT NULL CHECK (verb IN ('add', 'remove')),
    program_kind text   CHECK (program_kind IN ('rti', 'ac')),
    run_id       bigint,
    enqueued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((program_kind IS NULL) = (run_id IS NULL))
);
CREATE INDEX IF NOT EXISTS segment_changes_segment_idx ON {{audience}}.segment_changes (segment, id);
