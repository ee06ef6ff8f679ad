-- `cdpctl serve`: the tenants of the server-fed queue. One row per Split
-- environment; its API token is sealed (ChaCha20-Poly1305, key from
-- CDPCTL_SECRET_KEY, never stored in the clear) and replaced when a request
-- brings a new one. Queued rows and flush statistics name the tenant by id.
CREATE TABLE IF NOT EXISTS {{audience}}.split_tenants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  text   NOT NULL UNIQUE CHECK (environment_id <> ''),
    workspace_id    text   NOT NULL,
    traffic_type_id text   NOT NULL,
    token_sealed    bytea  NOT NULL,   -- nonce || ciphertext || tag
    key_id          text   NOT NULL,   -- fingerprint of the key that sealed it
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- No foreign key: its check would triple the cost of every queued key on
-- serve's hot path; tenants are never deleted by cdpctl, and a row naming an
-- unknown tenant fails its flush with a message saying so.
ALTER TABLE {{audience}}.segment_changes
    ADD COLUMN IF NOT EXISTS tenant_id bigint;
-- the server-fed rows in queue order (serve's flusher claims only those)
CREATE INDEX IF NOT EXISTS segment_changes_tenant_idx
    ON {{audience}}.segment_changes (id) WHERE tenant_id IS NOT NULL;

ALTER TABLE {{audience}}.segment_flushes
    ADD COLUMN IF NOT EXISTS tenant_id bigint;
