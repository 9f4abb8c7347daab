-- Muting: why an incident did not notify, and the silences and one-off maintenance windows
-- made through the API (kept after they end, for the audit trail).

ALTER TABLE incidents ADD COLUMN muted TEXT NOT NULL DEFAULT '';

CREATE TABLE silences (
    id      TEXT PRIMARY KEY,
    ends_at REAL NOT NULL,
    data    TEXT NOT NULL  -- JSON, as Silence.to_dict gives it
) WITHOUT ROWID;

CREATE TABLE maintenance_windows (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL  -- JSON, as OneOffWindow.to_dict gives it
) WITHOUT ROWID;
