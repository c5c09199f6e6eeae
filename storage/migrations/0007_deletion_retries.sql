-- Deleting a message that shows a secret is a job retried until Telegram confirms it.
ALTER TABLE scheduled_deletions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE scheduled_deletions ADD COLUMN first_due_at INTEGER;          -- unix ms, when it first fell due
ALTER TABLE scheduled_deletions ADD COLUMN told INTEGER NOT NULL DEFAULT 0; -- the user was asked to delete it by hand
