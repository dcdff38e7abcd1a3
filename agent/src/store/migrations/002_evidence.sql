-- gridwatch store, version 2: evidence files (snapshots, thumbnails, clips) per incident,
-- for the API and for retention. Paths are relative to the data directory.

CREATE TABLE evidence (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     TEXT NOT NULL REFERENCES incidents (incident_id),
    kind            TEXT NOT NULL,
    path            TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    -- Set when retention removed the file; the row stays as a record of what existed.
    deleted_at_us   INTEGER
);
CREATE INDEX evidence_by_incident ON evidence (incident_id);
CREATE INDEX evidence_live ON evidence (deleted_at_us, created_at_us);

-- Dismissed incidents suppress look-alikes: same camera, zone and kind, an object at the
-- same place, until `until_us`.
CREATE TABLE suppressions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     TEXT NOT NULL,
    camera_id       TEXT NOT NULL,
    zone_id         TEXT,
    kind            TEXT NOT NULL,
    box_norm        TEXT NOT NULL,
    created_at_us   INTEGER NOT NULL,
    until_us        INTEGER NOT NULL,
    hits            INTEGER NOT NULL DEFAULT 0
);
