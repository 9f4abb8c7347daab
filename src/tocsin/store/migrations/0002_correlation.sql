-- Correlation state: each rule's per-key windows and timers, committed with the read offsets
-- so that re-reading from the offsets after a crash rebuilds exactly what was lost.

CREATE TABLE correlation_state (
    rule  TEXT NOT NULL,
    key   TEXT NOT NULL,
    state TEXT NOT NULL,     -- JSON, as the rule's correlator dumps it
    seq   INTEGER NOT NULL,  -- higher: used more recently (max_keys evicts the lowest first)
    PRIMARY KEY (rule, key)
) WITHOUT ROWID;

-- The definition each rule's state was built under: a changed rule starts fresh.
CREATE TABLE correlation_rules (
    rule   TEXT PRIMARY KEY,
    digest TEXT NOT NULL
) WITHOUT ROWID;

-- Engine-wide values that must survive a restart (the event-time watermark).
CREATE TABLE engine_meta (
    name  TEXT PRIMARY KEY,
    value REAL NOT NULL
) WITHOUT ROWID;
