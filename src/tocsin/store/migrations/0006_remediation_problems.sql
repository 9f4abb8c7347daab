-- Remediation runs, problems and known errors, and small named state documents.

-- One remediation run: committed (queued) with the batch whose rule asked for it, then moved
-- through its states by the remediator. `spec` is the rendered run (argv etc.), fixed at commit.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,   -- assigned by the daemon, never reused
    runbook     TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    incident_id INTEGER,               -- the incident it works on, if any
    state       TEXT    NOT NULL,      -- queued, awaiting_approval, running, succeeded, ...
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL,
    data        TEXT    NOT NULL       -- JSON: spec, outcome handling, result, dry_run, approvals
);

CREATE INDEX runs_state ON runs (state, id);

CREATE TABLE problems (
    id    INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    data  TEXT NOT NULL              -- JSON, as records.problems.Problem.to_dict gives it
);

CREATE INDEX problems_state ON problems (state, id);

CREATE TABLE problem_history (
    seq        INTEGER PRIMARY KEY,
    problem_id INTEGER NOT NULL REFERENCES problems (id),
    time       REAL    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT '',
    kind       TEXT    NOT NULL DEFAULT 'state'
);

CREATE INDEX problem_history_problem ON problem_history (problem_id, seq);

-- Known errors made through the API (config ones live in the config).
CREATE TABLE known_errors (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;

-- Small named JSON documents that must survive a restart: the remediation kill switch,
-- open circuit breakers, pending approvals, the recurrence policy's counts.
CREATE TABLE documents (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;
