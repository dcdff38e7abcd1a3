-- gridwatch store, version 3: line crossings (`[[cameras.lines]]`), every direction, for the
-- station's statistics (crossings per line, direction and class). A crossing in a forbidden
-- direction is also an incident; this table counts them all.

CREATE TABLE crossings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id       TEXT NOT NULL,
    line_id         TEXT NOT NULL,
    -- "in" or "out"
    direction       TEXT NOT NULL,
    label           TEXT NOT NULL,
    track_id        INTEGER NOT NULL,
    at_us           INTEGER NOT NULL
);
CREATE INDEX crossings_by_time ON crossings (at_us, camera_id, line_id);
