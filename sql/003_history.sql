-- Campaign change history: one full snapshot per change, append-only,
-- indexed for point-in-time look-ups (latest snapshot at or before T).

CREATE SCHEMA IF NOT EXISTS {{history}};

CREATE TABLE IF NOT EXISTS {{history}}.campaign_snapshots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint      NOT NULL,
    campaign_id bigint      NOT NULL,
    event_time  timestamptz NOT NULL,
    event_type  text        NOT NULL CHECK (event_type IN ('created', 'updated', 'deleted')),
    snapshot    jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS campaign_snapshots_lookup_idx
    ON {{history}}.campaign_snapshots (customer_id, campaign_id, event_time DESC, id DESC);
