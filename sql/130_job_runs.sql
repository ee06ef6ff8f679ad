-- Run history: one row per job run (stitch, calc-attrs, calc-audiences, ...).
-- The row is inserted as 'running' in its own short transaction before the
-- job starts, so a run whose own transaction rolled back still leaves a
-- trace; the command layer then records 'succeeded' or 'failed' with the
-- error text and the run's counts (the numbers of its JSON report).
-- A row left 'running' long after its job ended belongs to a process that
-- was killed (kill -9, OOM) before it could record the end.

CREATE TABLE IF NOT EXISTS {{cdpctl}}.job_runs (
    id          bigserial PRIMARY KEY,
    job         text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text NOT NULL DEFAULT 'running'
                CHECK (outcome IN ('running', 'succeeded', 'failed')),
    error       text,
    exit_code   int,
    counts      jsonb NOT NULL DEFAULT '{}',
    run_by      text NOT NULL DEFAULT current_user,
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);

-- last run and last failure per job
CREATE INDEX IF NOT EXISTS job_runs_job_idx ON {{cdpctl}}.job_runs (job, id DESC);
CREATE INDEX IF NOT EXISTS job_runs_failed_idx ON {{cdpctl}}.job_runs (job, id DESC)
    WHERE outcome = 'failed';
