-- Prompt caching (SQLite): of a record's input tokens, those the backend took from its prompt
-- cache, and the price of 1 million of them when the request ended. Keep in step with
-- migrations/postgres.

-- Earlier records had no cached tokens and no discount: their cached price is their input price.
ALTER TABLE usage_records
    ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0 CHECK (cached_input_tokens >= 0);
ALTER TABLE usage_records ADD COLUMN cached_input_price TEXT NOT NULL DEFAULT '';
UPDATE usage_records SET cached_input_price = input_price;
