-- Usage records and per-project limit overrides of gateway-metering (PostgreSQL), in the same
-- database as gateway-auth's tables (no foreign keys to them: the crates stay apart).
-- Keep in step with migrations/sqlite: same tables, columns and constraints.

-- Prices and costs are exact decimals as text; `day` (YYYY-MM-DD) and `month` (YYYY-MM) are
-- the UTC date of `time`, computed at insert so that both databases group alike.
CREATE TABLE usage_records (
    id            UUID PRIMARY KEY,
    time          TIMESTAMPTZ NOT NULL,
    day           TEXT NOT NULL,
    month         TEXT NOT NULL,
    project_id    UUID NOT NULL,
    key_id        UUID NOT NULL,
    model         TEXT NOT NULL,
    plan          TEXT NOT NULL CHECK (plan IN ('base', 'plus', 'premium')),
    input_tokens  BIGINT NOT NULL CHECK (input_tokens >= 0),
    output_tokens BIGINT NOT NULL CHECK (output_tokens >= 0),
    exact         BOOLEAN NOT NULL,
    currency      TEXT NOT NULL,
    input_price   TEXT NOT NULL,
    output_price  TEXT NOT NULL,
    cost          TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('complete', 'cancelled', 'failed'))
);

CREATE INDEX usage_records_by_project ON usage_records (project_id, time);

-- `model` is '' for the override of every model of the project.
CREATE TABLE limit_overrides (
    project_id          UUID NOT NULL,
    model               TEXT NOT NULL,
    requests_per_minute BIGINT NOT NULL CHECK (requests_per_minute >= 0),
    tokens_per_minute   BIGINT NOT NULL CHECK (tokens_per_minute >= 0),
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, model)
);
