-- Every admin action: who, what, when.
CREATE TABLE admin_audit (
    id           INTEGER PRIMARY KEY,
    telegram_id  INTEGER NOT NULL,
    action       TEXT NOT NULL,            -- stats, broadcast_preview, broadcast_send, broadcast_cancel, ...
    detail       TEXT NOT NULL DEFAULT '',
    at_ms        INTEGER NOT NULL          -- unix ms
);
CREATE INDEX admin_audit_at ON admin_audit(at_ms);

-- An admin broadcast. A draft waits for Send; a running job survives restarts and resumes.
CREATE TABLE broadcasts (
    id                   INTEGER PRIMARY KEY,
    admin_id             INTEGER NOT NULL,
    admin_chat_id        INTEGER NOT NULL,
    kind                 TEXT NOT NULL,      -- text (HTML) or copy (copyMessage of the admin's message)
    text                 TEXT,               -- kind=text
    source_chat_id       INTEGER,            -- kind=copy
    source_message_id    INTEGER,            -- kind=copy
    state                TEXT NOT NULL DEFAULT 'draft',  -- draft, running, done, cancelled, discarded
    total                INTEGER NOT NULL DEFAULT 0,
    sent                 INTEGER NOT NULL DEFAULT 0,
    failed               INTEGER NOT NULL DEFAULT 0,
    blocked              INTEGER NOT NULL DEFAULT 0,
    unknown              INTEGER NOT NULL DEFAULT 0,  -- in flight at a crash or timed out: never resent
    progress_message_id  INTEGER,            -- the admin's message edited with the progress
    created_at_ms        INTEGER NOT NULL,
    started_at_ms        INTEGER,
    finished_at_ms       INTEGER,
    updated_at_ms        INTEGER NOT NULL
);
CREATE INDEX broadcasts_state ON broadcasts(state);

-- One row per recipient, snapshotted when the admin pressed Send.
-- pending -> sending (just before the Bot API call) -> sent / failed / blocked;
-- a row found in 'sending' after a restart becomes 'unknown' and is not sent again (at most once).
CREATE TABLE broadcast_recipients (
    broadcast_id   INTEGER NOT NULL REFERENCES broadcasts(id) ON DELETE CASCADE,
    telegram_id    INTEGER NOT NULL,
    chat_id        INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',
    error          TEXT,                     -- Telegram's description for failed rows
    updated_at_ms  INTEGER,
    PRIMARY KEY (broadcast_id, telegram_id)
) WITHOUT ROWID;
CREATE INDEX broadcast_recipients_state ON broadcast_recipients(broadcast_id, state);
