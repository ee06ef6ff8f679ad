-- Core CDP tables whose shape the stitching/attribute component fixes.
-- {{cdp}}, {{ce}}, ... are replaced by the quoted schema names of the config.

CREATE SCHEMA IF NOT EXISTS {{cdp}};
CREATE SCHEMA IF NOT EXISTS {{ce}};
CREATE SCHEMA IF NOT EXISTS {{ps}};
CREATE SCHEMA IF NOT EXISTS {{attr}};

-- CDP catalogue -----------------------------------------------------------
CREATE TABLE IF NOT EXISTS {{cdp}}.sources (
    id          character varying(255) PRIMARY KEY,
    name        text NOT NULL,
    description text
);

CREATE TABLE IF NOT EXISTS {{cdp}}.attributes (
    id          character varying(255) PRIMARY KEY,
    name        text NOT NULL,
    data_type   text NOT NULL DEFAULT 'string',
    description text
);

-- Translates an event's source/type/version to its event id.
CREATE TABLE IF NOT EXISTS {{cdp}}.events (
    id        character varying(255) PRIMARY KEY,
    source_id character varying(255) NOT NULL REFERENCES {{cdp}}.sources(id),
    type      text NOT NULL,
    version   text NOT NULL,
    name      text,
    UNIQUE (source_id, type, version)
);

-- Raw events: an immutable log ---------------------------------------------
CREATE TABLE IF NOT EXISTS {{ce}}.customer_events (
    id         uuid PRIMARY KEY,
    source_id  text NOT NULL,
    type       text NOT NULL,
    version    text NOT NULL,
    event_time timestamptz NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS customer_events_event_time_idx ON {{ce}}.customer_events (event_time);

-- Profile stitching configuration, exactly as the stitching component defines it.
CREATE TABLE IF NOT EXISTS {{ps}}.stitching_attributes_config (
    attribute_id     character varying(255) REFERENCES {{cdp}}.attributes(id),
    event_id         character varying(255) REFERENCES {{cdp}}.events(id),
    value_expression text
);
CREATE INDEX IF NOT EXISTS stitching_attributes_config_attribute_id_idx ON {{ps}}.stitching_attributes_config (attribute_id);
CREATE INDEX IF NOT EXISTS stitching_attributes_config_event_id_idx ON {{ps}}.stitching_attributes_config (event_id);
CREATE UNIQUE INDEX IF NOT EXISTS stitching_attributes_config_event_attr_idx ON {{ps}}.stitching_attributes_config (event_id, attribute_id);

-- Attribute calculation -----------------------------------------------------
CREATE TABLE IF NOT EXISTS {{attr}}.attributes (
    id         text PRIMARY KEY,
    definition jsonb
);

-- Key-value store of results of queries over the whole customer base.
CREATE TABLE IF NOT EXISTS {{attr}}.context (
    key      text PRIMARY KEY,
    value    text,
    query    text,
    modified timestamp without time zone
);

-- One row per customer entity. calculated IS NULL means "(re)calculate on the
-- next run": stitching sets it for entities that gained events or merged, and
-- `UPDATE customer_entities SET calculated = NULL` forces a recalculation that
-- keeps the data. TRUNCATE ... CASCADE removes every attribute value.
CREATE TABLE IF NOT EXISTS {{attr}}.customer_entities (
    id         uuid PRIMARY KEY,
    calculated timestamp without time zone,
    created    timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX IF NOT EXISTS customer_entities_calculated_idx ON {{attr}}.customer_entities (calculated);

-- Attribute values; list attributes have one row per value.
CREATE TABLE IF NOT EXISTS {{attr}}.customer_attributes (
    customer_entity_id uuid NOT NULL REFERENCES {{attr}}.customer_entities(id) ON DELETE CASCADE,
    attribute_id       text NOT NULL,
    value              text,
    modified           timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX IF NOT EXISTS customer_attributes_entity_idx ON {{attr}}.customer_attributes (customer_entity_id, attribute_id);
CREATE INDEX IF NOT EXISTS customer_attributes_attribute_idx ON {{attr}}.customer_attributes (attribute_id);

CREATE TABLE IF NOT EXISTS {{attr}}.cached_attributes_counts_customers_per_attribute (
    attribute_id text PRIMARY KEY,
    count        bigint NOT NULL DEFAULT 0,
    modified     timestamp without time zone
);

CREATE TABLE IF NOT EXISTS {{attr}}.cached_attribute_values_counts (
    attribute_id text NOT NULL,
    value        text NOT NULL,
    count        bigint NOT NULL DEFAULT 0,
    modified     timestamp without time zone,
    PRIMARY KEY (attribute_id, value)
);
