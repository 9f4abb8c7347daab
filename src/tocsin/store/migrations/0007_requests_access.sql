-- Service requests and access grants, with their timelines and the access audit log.

CREATE TABLE service_requests (
    id    INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    data  TEXT NOT NULL              -- JSON, as records.requests.ServiceRequest.to_dict gives it
);

CREATE INDEX service_requests_state ON service_requests (state, id);

CREATE TABLE request_history (
    seq        INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES service_requests (id),
    time       REAL    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    note       TEXT    NOT NULL DEFAULT '',
    kind       TEXT    NOT NULL DEFAULT 'state'
);

CREATE INDEX request_history_request ON request_history (request_id, seq);

CREATE TABLE access_grants (
    id      INTEGER PRIMARY KEY,
    state   TEXT NOT NULL,
    role    TEXT NOT NULL,
    subject TEXT NOT NULL,
    data    TEXT NOT NULL            -- JSON, as records.access.Grant.to_dict gives it
);

CREATE INDEX access_grants_state ON access_grants (state, id);
CREATE INDEX access_grants_subject ON access_grants (subject, id);

-- Every access decision: requested, approved, denied, granted, revoked, expired, failed.
CREATE TABLE access_audit (
    seq     INTEGER PRIMARY KEY,
    time    REAL    NOT NULL,
    action  TEXT    NOT NULL,
    role    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    data    TEXT    NOT NULL         -- JSON, as records.access.AuditEntry.to_dict gives it
);

CREATE INDEX access_audit_subject ON access_audit (subject, seq);
CREATE INDEX access_audit_time ON access_audit (time);
