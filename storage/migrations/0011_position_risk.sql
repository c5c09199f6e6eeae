-- The token's risk flags (a JSON list of sentences), read from its mint when the position opened.
ALTER TABLE positions ADD COLUMN risk_flags TEXT;
