-- Incident management: lifecycle fields, timeline entry kinds, notification groups.

ALTER TABLE incidents ADD COLUMN opened_at REAL NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN acknowledged_at REAL;
ALTER TABLE incidents ADD COLUMN closed_at REAL;
ALTER TABLE incidents ADD COLUMN assignee TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN assignment_group TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN workaround TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;
-- JSON: {"samples": [...], "sla_fired": [...], "escalation": {...} or null}
ALTER TABLE incidents ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
UPDATE incidents SET opened_at = first_seen;

-- Finding resolved incidents to reopen or close, and listing by who works on them.
CREATE INDEX incidents_resolved ON incidents (state, resolved_at);
CREATE INDEX incidents_assignee ON incidents (assignee, id);

-- What made each timeline entry: "state" (a plain transition), "comment", "assign", "rate",
-- "notify", "escalate", "sla", "mute", "reopen", ...
ALTER TABLE incident_history ADD COLUMN kind TEXT NOT NULL DEFAULT 'state';

-- Notification groups (route + receiver + group labels): who was told what, and when next.
-- A small head row per group, and a row per member, so one member's change rewrites one row.
CREATE TABLE notify_groups (
    id   TEXT PRIMARY KEY,
    data TEXT NOT NULL  -- JSON head, as notify.grouping's Dispatcher dumps it
) WITHOUT ROWID;
CREATE TABLE notify_members (
    group_id    TEXT NOT NULL,     -- notify_groups.id, deleted along with its head
    incident_id INTEGER NOT NULL,
    data        TEXT NOT NULL,     -- JSON: notify-state, what was told, the incident's view
    PRIMARY KEY (group_id, incident_id)
) WITHOUT ROWID;
