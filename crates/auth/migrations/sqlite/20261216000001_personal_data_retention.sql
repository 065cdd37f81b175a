-- Retention of personal data in the audit log (SQLite). Keep in step with migrations/postgres.
--
-- After the retention period the job replaces an event's actor subject by a pseudonym, clears
-- its actor e-mail and source IP (and the subject and e-mail in its changes) and sets
-- `pseudonymized`. That is the one update the log accepts: everything else of an event stays
-- as it was written, and an event is pseudonymized at most once.

ALTER TABLE audit_events ADD COLUMN pseudonymized BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX audit_events_personal_data ON audit_events (time) WHERE pseudonymized = FALSE;

-- The key of the pseudonyms: 32 random bytes, drawn once per database by the first run.
CREATE TABLE pseudonym_key (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    secret      BLOB NOT NULL,
    created_at  TEXT NOT NULL
);

DROP TRIGGER audit_events_no_update;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN NOT (
    OLD.pseudonymized = FALSE AND NEW.pseudonymized = TRUE
    AND NEW.seq = OLD.seq AND NEW.id = OLD.id AND NEW.time = OLD.time
    AND NEW.project_id = OLD.project_id AND NEW.action = OLD.action
    AND NEW.outcome = OLD.outcome AND NEW.reason IS OLD.reason
    AND NEW.target_token_id IS OLD.target_token_id AND NEW.request_id IS OLD.request_id
    AND NEW.actor_email IS NULL AND NEW.source_ip IS NULL
)
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
