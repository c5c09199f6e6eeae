-- A withdrawal of a token: its mint (NULL for SOL); `lamports` then holds the token's base units.
ALTER TABLE withdrawals ADD COLUMN mint TEXT;
