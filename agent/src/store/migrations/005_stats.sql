-- gridwatch store, version 5: the daily statistics summary published retained over MQTT.
-- Outbox rows may now be retained messages (the summary; incident events never are).
-- Which local day was last summarised is kept in `counters` (`daily_summary_day`, days
-- since 1970-01-01 in site time), written in the summary's own transaction.

ALTER TABLE outbox ADD COLUMN retain INTEGER NOT NULL DEFAULT 0;
CREATE INDEX crossings_by_camera_time ON crossings (camera_id, at_us);
