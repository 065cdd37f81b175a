-- Projects, principals, roles, management tokens, model API keys and the audit log (PostgreSQL).
-- Keep in step with migrations/sqlite: same tables, columns and constraints.

CREATE TABLE projects (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE principals (
    subject     TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    project_id  UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subject     TEXT NOT NULL REFERENCES principals (subject) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, subject)
);

CREATE TABLE management_tokens (
    id          UUID PRIMARY KEY,
    public_id   TEXT NOT NULL UNIQUE,
    digest      BYTEA NOT NULL UNIQUE,
    subject     TEXT NOT NULL REFERENCES principals (subject) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ
);

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    project_id      UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    region          TEXT NOT NULL,
    public_id       TEXT NOT NULL UNIQUE,
    digest          BYTEA NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    description     TEXT,
    allowed_models  TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ,
    expiry_recorded BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX api_keys_by_project ON api_keys (project_id, region, created_at);
CREATE INDEX api_keys_pending_expiry ON api_keys (expires_at)
    WHERE expiry_recorded = FALSE AND expires_at IS NOT NULL;

-- No foreign key on project_id: refused attempts on unknown projects are recorded too.
CREATE TABLE audit_events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    time            TIMESTAMPTZ NOT NULL,
    project_id      UUID NOT NULL,
    actor_subject   TEXT,
    actor_email     TEXT,
    action          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    reason          TEXT,
    target_token_id UUID,
    changes         TEXT NOT NULL,
    request_id      TEXT,
    source_ip       TEXT
);

CREATE INDEX audit_events_by_project ON audit_events (project_id, seq);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
