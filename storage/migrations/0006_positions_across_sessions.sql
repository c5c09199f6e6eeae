-- A stream position_id names a position only within one stream session; every reconnect starts a new
-- session with new ids. From here on `position_id` is the bot's own number for the position (stable, what
-- the trader sees as #n and what callbacks, signals and charts refer to), the token account names it across
-- sessions, and `stream_position_id` is the id the latest session gave it.
ALTER TABLE positions ADD COLUMN stream_position_id INTEGER;
-- The market's quote asset: 'USD1' when market_context's quote_mint is USD1's mint, else 'SOL'.
ALTER TABLE positions ADD COLUMN quote TEXT NOT NULL DEFAULT 'SOL';
-- Until now the bot's number was the stream's id of the session that first announced the position.
UPDATE positions SET stream_position_id = position_id;
-- A reconnect with new ids used to file a second open row for the same token account: keep the first one
-- (it has the card, the deadline's start and any per-position strategy) and close the later copies.
UPDATE positions SET strategy_json = (
    SELECT later.strategy_json FROM positions AS later
    WHERE later.telegram_id = positions.telegram_id AND later.token_account = positions.token_account
      AND later.status = 'open' AND later.strategy_json IS NOT NULL
    ORDER BY later.updated_at DESC LIMIT 1
)
WHERE status = 'open' AND token_account IS NOT NULL AND strategy_json IS NULL;
UPDATE positions SET status = 'closed', closed_reason = 'merged_after_reconnect', waiting_exit = 0
WHERE status = 'open' AND token_account IS NOT NULL AND EXISTS (
    SELECT 1 FROM positions AS earlier
    WHERE earlier.telegram_id = positions.telegram_id AND earlier.token_account = positions.token_account
      AND earlier.status = 'open'
      AND (earlier.first_seen_ms < positions.first_seen_ms
           OR (earlier.first_seen_ms = positions.first_seen_ms AND earlier.position_id < positions.position_id))
);
-- One open position per token account and user.
CREATE UNIQUE INDEX positions_open_account ON positions(telegram_id, token_account) WHERE status = 'open';
