-- Telegram users who have talked to the bot. is_admin is not stored: it comes from ADMIN_USER_IDS.
CREATE TABLE users (
    telegram_id   INTEGER PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    first_name    TEXT NOT NULL DEFAULT '',
    last_name     TEXT,
    username      TEXT,
    created_at    INTEGER NOT NULL,   -- unix ms
    last_seen_at  INTEGER NOT NULL,   -- unix ms
    blocked       INTEGER NOT NULL DEFAULT 0  -- 1 once Telegram says the user blocked the bot
);
CREATE INDEX users_last_seen ON users(last_seen_at);

-- Values the application checks at start (e.g. the sealed check value of the master key).
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
