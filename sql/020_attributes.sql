-- Attribute calculation bookkeeping: one row per calc-attrs run that wrote,
-- for `cdpctl status` and for operators asking "when did it last run".
CREATE TABLE IF NOT EXISTS {{cdpctl}}.attribute_runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT now(),
    mode             text NOT NULL,
    attributes       integer NOT NULL,
    entities         bigint NOT NULL,
    entities_changed bigint NOT NULL,
    values_written   bigint NOT NULL,
    seconds          double precision NOT NULL
);
