-- Projects, principals, roles, management tokens, model API keys and the audit log (SQLite).
-- Keep in step with migrations/postgres: same tables, columns and constraints.

CREATE TABLE projects (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE principals (
    subject     TEXT PRIMARY KEY NOT NULL,
    email       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE memberships (
    project_id  BLOB NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subject     TEXT NOT NULL REFERENCES principals (subject) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (project_id, subject)
);

CREATE TABLE management_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    public_id   TEXT NOT NULL UNIQUE,
    digest      BLOB NOT NULL UNIQUE,
    subject     TEXT NOT NULL REFERENCES principals (subject) ON DELETE CASCADE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT
);

CREATE TABLE api_keys (
    id              BLOB PRIMARY KEY NOT NULL,
    project_id      BLOB NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    region          TEXT NOT NULL,
    public_id       TEXT NOT NULL UNIQUE,
    digest          BLOB NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    description     TEXT,
    allowed_models  TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    expires_at      TEXT,
    expiry_recorded BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX api_keys_by_project ON api_keys (project_id, region, created_at);
CREATE INDEX api_keys_pending_expiry ON api_keys (expires_at)
    WHERE expiry_recorded = FALSE AND expires_at IS NOT NULL;

-- No foreign key on project_id: refused attempts on unknown projects are recorded too.
CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE,
    time            TEXT NOT NULL,
    project_id      BLOB NOT NULL,
    actor_subject   TEXT,
    actor_email     TEXT,
    action          TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    reason          TEXT,
    target_token_id BLOB,
    changes         TEXT NOT NULL,
    request_id      TEXT,
    source_ip       TEXT
);

CREATE INDEX audit_events_by_project ON audit_events (project_id, seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
