-- A user's LaserSell API key, sealed by the vault. key_hash (SHA-256 with a domain prefix) finds a key
-- already used by another user without keeping the key readable.
CREATE TABLE lasersell_keys (
    telegram_id  INTEGER PRIMARY KEY REFERENCES users(telegram_id) ON DELETE CASCADE,
    sealed       BLOB NOT NULL,
    key_hint     TEXT NOT NULL,            -- e.g. ls_…abcd
    key_hash     TEXT NOT NULL UNIQUE,
    tier         TEXT,
    created_at   INTEGER NOT NULL
);

-- Wallets; the secret key is sealed and bound to (user, address).
CREATE TABLE wallets (
    id             INTEGER PRIMARY KEY,
    telegram_id    INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    address        TEXT NOT NULL UNIQUE,
    label          TEXT NOT NULL,
    sealed         BLOB NOT NULL,
    is_default     INTEGER NOT NULL DEFAULT 0,
    registered_at  INTEGER,               -- when LaserSell accepted the ownership proof
    created_at     INTEGER NOT NULL
);
CREATE INDEX wallets_user ON wallets(telegram_id);

-- Per-user strategy and settings.
CREATE TABLE user_settings (
    telegram_id        INTEGER PRIMARY KEY REFERENCES users(telegram_id) ON DELETE CASCADE,
    strategy_json      TEXT,               -- NULL until the user confirmed a strategy
    send_mode          TEXT NOT NULL DEFAULT 'rpc',
    astralane_sealed   BLOB,
    tip_lamports       INTEGER NOT NULL DEFAULT 0,
    slippage_bps       INTEGER NOT NULL DEFAULT 500,
    slippage_cap_bps   INTEGER NOT NULL DEFAULT 1500,
    retry_count        INTEGER NOT NULL DEFAULT 2,
    auto_sell          INTEGER NOT NULL DEFAULT 0,
    alerts_json        TEXT NOT NULL DEFAULT '{}',
    paused             INTEGER NOT NULL DEFAULT 0,
    onboarding_step    TEXT NOT NULL DEFAULT 'apikey',  -- apikey, wallet, strategy, done
    skipped_steps      TEXT NOT NULL DEFAULT '',
    updated_at         INTEGER NOT NULL
);

-- Messages the bot must delete later (a shown secret), kept here so a restart does not forget them.
CREATE TABLE scheduled_deletions (
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    delete_at   INTEGER NOT NULL,   -- unix ms
    PRIMARY KEY (chat_id, message_id)
);
