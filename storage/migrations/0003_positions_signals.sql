-- Positions the stream told us about, per user; position_id is the stream's id.
CREATE TABLE positions (
    telegram_id        INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    position_id        INTEGER NOT NULL,
    wallet             TEXT NOT NULL,
    mint               TEXT NOT NULL,
    token_account      TEXT,
    token_program      TEXT,
    symbol             TEXT,
    name               TEXT,
    decimals           INTEGER,
    tokens             INTEGER NOT NULL,
    entry_quote_units  INTEGER NOT NULL,
    market_type        TEXT,
    opened_at_ms       INTEGER,          -- from the stream; NULL when it did not say
    first_seen_ms      INTEGER NOT NULL, -- when this bot first heard of it (deadline fallback)
    watched            INTEGER NOT NULL DEFAULT 0,
    status             TEXT NOT NULL DEFAULT 'open',  -- open, closed
    closed_reason      TEXT,
    profit_units       INTEGER,
    proceeds_units     INTEGER,
    price_quote        INTEGER,
    market_cap_quote   INTEGER,
    liquidity_trend    TEXT,
    bands_json         TEXT,
    card_message_id    INTEGER,
    waiting_exit       INTEGER NOT NULL DEFAULT 0, -- we asked for an exit and have not received it
    deadline_fired     INTEGER NOT NULL DEFAULT 0,
    strategy_json      TEXT,             -- per-position override, re-applied after every reconnect
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (telegram_id, position_id)
);
CREATE INDEX positions_open ON positions(status, telegram_id);

-- Exit signals, stored before the user sees them; the callback data of Sell/Skip is the id.
CREATE TABLE exit_signals (
    id                 TEXT PRIMARY KEY,
    telegram_id        INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    position_id        INTEGER NOT NULL,
    wallet             TEXT NOT NULL,
    mint               TEXT NOT NULL,
    token_account      TEXT,
    reason             TEXT NOT NULL,
    profit_units       INTEGER NOT NULL,
    position_tokens    INTEGER NOT NULL,
    sell_tokens        INTEGER,
    level_index        INTEGER,
    triggered_at_ms    INTEGER NOT NULL,
    received_at_ms     INTEGER NOT NULL,
    market_type        TEXT,
    unsigned_tx_b64    TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'pending',
    chat_id            INTEGER,
    message_id         INTEGER,
    slippage_bps       INTEGER,
    attempt            INTEGER NOT NULL DEFAULT 0,
    signed_tx_b64      TEXT,
    signature          TEXT,
    submitted_at_ms    INTEGER,
    tapped_at_ms       INTEGER,
    outcome_json       TEXT,
    error              TEXT,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX exit_signals_user ON exit_signals(telegram_id, state);
CREATE INDEX exit_signals_position ON exit_signals(telegram_id, position_id);
