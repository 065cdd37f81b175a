-- Labels of model API keys: a JSON object of string values, '{}' when there are none.
-- Keep in step with migrations/sqlite.

ALTER TABLE api_keys ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
