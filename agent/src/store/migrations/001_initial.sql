-- gridwatch store, version 1: incidents, their events, and the MQTT outbox.
-- Applied once by Store::open; later versions add files 002_..., never edit this one.

CREATE TABLE incidents (
    incident_id     TEXT PRIMARY KEY,
    camera_id       TEXT NOT NULL,
    zone_id         TEXT,
    kind            TEXT NOT NULL,
    -- Lifecycle state of the latest event: opened, updated, closed (reviews do not change it).
    state           TEXT NOT NULL,
    status          TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    opened_at_us    INTEGER NOT NULL,
    closed_at       TEXT,
    last_seq        INTEGER NOT NULL,
    -- The latest lifecycle event, as published (JSON).
    last_event      TEXT NOT NULL,
    review_verdict  TEXT,
    reviewer        TEXT,
    review_note     TEXT,
    reviewed_at     TEXT
);
CREATE INDEX incidents_by_opened ON incidents (opened_at_us);
CREATE INDEX incidents_by_camera ON incidents (camera_id, opened_at_us);

-- Every event ever raised, for the API and for audits.
CREATE TABLE events (
    event_id        TEXT PRIMARY KEY,
    incident_id     TEXT NOT NULL REFERENCES incidents (incident_id),
    seq             INTEGER NOT NULL,
    state           TEXT NOT NULL,
    event_at        TEXT NOT NULL,
    payload         TEXT NOT NULL
);
CREATE INDEX events_by_incident ON events (incident_id, seq);

-- Store-and-forward queue to MQTT: a row is committed before the event is handed to the
-- client and deleted only after the broker's PUBACK. Rows go out in id order, which keeps
-- every camera's events in order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    camera_id       TEXT NOT NULL,
    topic           TEXT NOT NULL,
    state           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    created_at_us   INTEGER NOT NULL
);

-- Monotonic counters that must survive restarts (e.g. outbox events dropped by policy).
CREATE TABLE counters (
    name            TEXT PRIMARY KEY,
    value           INTEGER NOT NULL
);
