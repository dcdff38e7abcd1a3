-- gridwatch store, version 4: the action outbox (`[[actions]]`): one row per HTTP(S) POST an
-- incident event triggers, written in the event's own transaction, deleted once delivered.
-- A row that used up its attempts stays, with `given_up_at_us` and the last error.

CREATE TABLE action_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at_us      INTEGER NOT NULL,
    created_at_us   INTEGER NOT NULL,
    last_error      TEXT,
    given_up_at_us  INTEGER,
    UNIQUE (action_id, event_id)
);
CREATE INDEX action_outbox_due ON action_outbox (given_up_at_us, next_at_us);
