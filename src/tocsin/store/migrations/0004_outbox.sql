-- The outbox: messages actions asked to send (MQTT publishes, later webhooks and mail),
-- committed in the transaction of the batch that made them and deleted once delivered, so
-- a restart resends exactly what was not delivered (at-least-once).

CREATE TABLE outbox (
    -- AUTOINCREMENT: ids only grow, even after the newest rows were deleted, so they are the
    -- send order and a sender's "after id" cursor stays valid.
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT    NOT NULL,  -- where it goes, e.g. 'mqtt:BROKER'
    rule    TEXT    NOT NULL,  -- the rule whose action made it
    body    TEXT    NOT NULL,  -- JSON, as the channel's sender reads it
    created REAL    NOT NULL   -- epoch seconds of the commit
);

-- Each channel's sender pages through its own rows in id order.
CREATE INDEX outbox_channel ON outbox (channel, id);
