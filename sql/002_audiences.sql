-- Campaign audiences: the legacy contact-reference structure and the
-- contact-id structure, both indexed for the membership query
-- (look-up by contact, filter by a list of campaigns).

CREATE SCHEMA IF NOT EXISTS {{audience}};

CREATE TABLE IF NOT EXISTS {{audience}}.campaign_contact_reference_master (
    campaign_id       bigint NOT NULL,
    contact_reference text   NOT NULL,
    rti_program_runs  bigint[] NOT NULL DEFAULT '{}',
    ac_program_runs   bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (campaign_id, contact_reference)
);
CREATE INDEX IF NOT EXISTS campaign_contact_reference_master_contact_idx
    ON {{audience}}.campaign_contact_reference_master (contact_reference, campaign_id);

CREATE TABLE IF NOT EXISTS {{audience}}.campaign_contact_id_master (
    campaign_id      bigint NOT NULL,
    contact_id       bigint NOT NULL,
    rti_program_runs bigint[] NOT NULL DEFAULT '{}',
    ac_program_runs  bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (campaign_id, contact_id)
);
CREATE INDEX IF NOT EXISTS campaign_contact_id_master_contact_idx
    ON {{audience}}.campaign_contact_id_master (contact_id, campaign_id);
