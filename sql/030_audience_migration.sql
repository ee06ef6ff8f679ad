-- Migration of campaign audiences from contact references to contact ids
-- (`cdpctl migrate-audiences`): per-campaign state with the checkpoint, and
-- the references that have no contact id (kept, never dropped).

-- One row per campaign that a migration has touched. Every reference of the
-- legacy table up to and including `last_reference` (in key order) has been
-- processed: written to campaign_contact_id_master or recorded as unmapped.
-- A batch and its checkpoint commit in the same transaction.
--   copying        the copy is under way (or was interrupted: rerun resumes)
--   migrated       copy verified; membership reads only the contact-id table
--                  (plus unmapped references) for this campaign
--   source_dropped verified, and the legacy rows were removed (--drop-source)
CREATE TABLE IF NOT EXISTS {{audience}}.audience_migrations (
    campaign_id      bigint PRIMARY KEY,
    state            text   NOT NULL DEFAULT 'copying'
                     CHECK (state IN ('copying', 'migrated', 'source_dropped')),
    last_reference   text,
    references_total bigint NOT NULL DEFAULT 0,
    migrated         bigint NOT NULL DEFAULT 0,
    unmapped         bigint NOT NULL DEFAULT 0,
    batches          bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    source_dropped_at timestamptz
);

-- Legacy references that DynamoDB had no contact id for, with their program
-- runs, so a migrated campaign still targets exactly the contacts it did.
CREATE TABLE IF NOT EXISTS {{audience}}.unmapped_contact_references (
    campaign_id       bigint NOT NULL,
    contact_reference text   NOT NULL,
    rti_program_runs  bigint[] NOT NULL DEFAULT '{}',
    ac_program_runs   bigint[] NOT NULL DEFAULT '{}',
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, contact_reference)
);
CREATE INDEX IF NOT EXISTS unmapped_contact_references_contact_idx
    ON {{audience}}.unmapped_contact_references (contact_reference, campaign_id);
