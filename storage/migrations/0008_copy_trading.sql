-- Copy trading: the wallets a user watches, their global limits, and every copy buy (budget, source).
CREATE TABLE copy_wallets (
    telegram_id   INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    address       TEXT NOT NULL,               -- the watched wallet
    nickname      TEXT NOT NULL,
    amount_units  INTEGER NOT NULL DEFAULT 100000000,  -- per buy, in the quote's atomic units
    quote         TEXT NOT NULL DEFAULT 'SOL',  -- 'SOL' or 'USD1'
    buy_wallet    TEXT,                         -- the user's wallet that buys; NULL = the default wallet
    mode          TEXT NOT NULL DEFAULT 'ask',  -- 'ask' (Copy / Skip) or 'auto'
    enabled       INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (telegram_id, address)
);
CREATE UNIQUE INDEX copy_wallets_nickname ON copy_wallets (telegram_id, nickname);

CREATE TABLE copy_settings (
    telegram_id   INTEGER PRIMARY KEY REFERENCES users(telegram_id) ON DELETE CASCADE,
    limits_json   TEXT NOT NULL DEFAULT '{}'    -- only the limits the user changed
);

CREATE TABLE copy_buys (
    order_id      TEXT PRIMARY KEY,             -- buy_orders.id: the executor's record
    telegram_id   INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    watched       TEXT NOT NULL,
    wallet        TEXT NOT NULL,
    mint          TEXT NOT NULL,
    lamports      INTEGER NOT NULL,
    mode          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX copy_buys_user_day ON copy_buys (telegram_id, created_at);
CREATE INDEX copy_buys_position ON copy_buys (telegram_id, wallet, mint);
