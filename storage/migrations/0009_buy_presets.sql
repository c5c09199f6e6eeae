-- The SOL amounts on a token panel's buy buttons, per user (lamports, comma-separated).
-- IF NOT EXISTS: databases from before this migration may have created the table on first use.
CREATE TABLE IF NOT EXISTS buy_presets (
    telegram_id INTEGER PRIMARY KEY REFERENCES users(telegram_id) ON DELETE CASCADE,
    lamports    TEXT NOT NULL
);
