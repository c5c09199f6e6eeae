-- A bounded history of each position's value, sampled from pnl_update (at most one per few seconds,
-- thinned past a cap), for the PnL chart. Times are the stream's server time.
CREATE TABLE pnl_samples (
    telegram_id     INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    position_id     INTEGER NOT NULL,
    t_ms            INTEGER NOT NULL,
    proceeds_units  INTEGER NOT NULL,
    profit_units    INTEGER NOT NULL
);
CREATE INDEX pnl_samples_position ON pnl_samples(telegram_id, position_id, t_ms);

-- Moments worth marking on the chart: exit signals, sells asked from the card, the close.
CREATE TABLE position_marks (
    id              INTEGER PRIMARY KEY,
    telegram_id     INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    position_id     INTEGER NOT NULL,
    t_ms            INTEGER NOT NULL,
    kind            TEXT NOT NULL,      -- signal, sell, closed
    label           TEXT NOT NULL
);
CREATE INDEX position_marks_position ON position_marks(telegram_id, position_id, t_ms);

-- Buys asked for by /buy: quoted, then one tap approves (atomically), signed bytes stored before sending.
CREATE TABLE buy_orders (
    id               TEXT PRIMARY KEY,
    telegram_id      INTEGER NOT NULL REFERENCES users(telegram_id) ON DELETE CASCADE,
    wallet           TEXT NOT NULL,
    mint             TEXT NOT NULL,
    lamports         INTEGER NOT NULL,
    slippage_bps     INTEGER NOT NULL,
    tip_lamports     INTEGER NOT NULL,
    unsigned_tx_b64  TEXT NOT NULL,
    route_json       TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'quoted', -- quoted, approved, signing, submitted, landed, failed, expired, cancelled
    chat_id          INTEGER,
    message_id       INTEGER,
    signed_tx_b64    TEXT,
    signature        TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX buy_orders_state ON buy_orders(state);
