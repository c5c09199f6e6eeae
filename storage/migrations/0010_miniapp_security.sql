-- The dashboard Mini App's security state: PIN hashes with their failure counters, the withdrawal
-- allow-list, security changes waiting out their delay, and withdrawals (the executor's record).
-- Ids are TEXT made by the application and times are Unix milliseconds, so the same SQL runs on both backends.
CREATE TABLE miniapp_pins (
    telegram_id   BIGINT PRIMARY KEY REFERENCES users(telegram_id) ON DELETE CASCADE,
    pin_hash      TEXT NOT NULL,                -- Argon2id, with its salt and parameters
    failures      INTEGER NOT NULL DEFAULT 0,   -- wrong PINs since the last right one
    locked_until  BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE miniapp_allowlist (
    id            TEXT PRIMARY KEY,
    telegram_id   BIGINT NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    label         TEXT NOT NULL,
    usable_at     BIGINT NOT NULL,              -- a new address is locked until then
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX miniapp_allowlist_address ON miniapp_allowlist (telegram_id, address);

CREATE TABLE miniapp_security_changes (
    id            TEXT PRIMARY KEY,
    telegram_id   BIGINT NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,                -- 'pin_change', 'pin_remove'
    value         TEXT,                         -- the new PIN's hash (never the PIN)
    effective_at  BIGINT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',  -- pending, applied, cancelled
    created_at    BIGINT NOT NULL
);
CREATE INDEX miniapp_security_changes_due ON miniapp_security_changes (state, effective_at);

CREATE TABLE withdrawals (
    id            TEXT PRIMARY KEY,
    telegram_id   BIGINT NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    wallet        TEXT NOT NULL,
    destination   TEXT NOT NULL,
    lamports      BIGINT NOT NULL,
    state         TEXT NOT NULL,                -- approved, signing, submitted, landed, failed
    signed_tx_b64 TEXT,
    signature     TEXT,
    error         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX withdrawals_user ON withdrawals (telegram_id, created_at);
