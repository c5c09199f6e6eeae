-- What a user's next typed message answers (and a strategy being edited), shared by every instance: with
-- several webhook instances the message may reach another instance than the one that asked for it.
CREATE TABLE IF NOT EXISTS conversations (
    telegram_id BIGINT PRIMARY KEY,
    state_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
