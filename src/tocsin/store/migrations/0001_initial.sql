-- Initial schema: incidents, their timelines, and the tailers' read positions.
-- Times are REAL epoch seconds, states are their text values, labels are a JSON object.

CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY,  -- assigned by the engine, never reused
    fingerprint TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    priority    TEXT    NOT NULL,
    impact      TEXT    NOT NULL,
    urgency     TEXT    NOT NULL,
    first_seen  REAL    NOT NULL,
    last_seen   REAL    NOT NULL,
    count       INTEGER NOT NULL,
    service     TEXT    NOT NULL DEFAULT '',
    category    TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    resolved_at REAL
);

-- Listing by state (newest first) and finding an incident by fingerprint.
CREATE INDEX incidents_state ON incidents (state, id);
CREATE INDEX incidents_fingerprint ON incidents (fingerprint);

CREATE TABLE incident_history (
    seq         INTEGER PRIMARY KEY,  -- append order, which is the order changes happened
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    time        REAL    NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    note        TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX incident_history_incident ON incident_history (incident_id, seq);

-- dev and ino are unsigned 64-bit in the kernel; they are stored as the signed
-- 64-bit integer with the same bits, because that is SQLite's widest integer.
CREATE TABLE file_offsets (
    path        TEXT    PRIMARY KEY,
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    fp_len      INTEGER NOT NULL,
    fp_hash     TEXT    NOT NULL,
    byte_offset INTEGER NOT NULL
) WITHOUT ROWID;
