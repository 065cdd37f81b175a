//! The SQL both stores run, and [`impl_store!`], which implements [`super::Store`] for a
//! store type over its concrete `sqlx` pool. The statements use `$n` placeholders, which
//! SQLite and PostgreSQL both accept; the only per-database differences are the statement
//! that opens a write transaction and the lock that orders audit appends.

macro_rules! key_columns {
    () => {
        "id, project_id, region, public_id, digest, name, description, allowed_models, \
         created_at, updated_at, expires_at, labels"
    };
}

macro_rules! management_token_query {
    ($condition:literal) => {
        concat!(
            "SELECT t.id, t.public_id, t.digest, t.subject, p.email, t.created_at, t.expires_at ",
            "FROM management_tokens t JOIN principals p ON p.subject = t.subject WHERE ",
            $condition
        )
    };
}

pub(crate) const INSERT_PROJECT: &str =
    "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)";
pub(crate) const SELECT_PROJECT: &str = "SELECT id, name, created_at FROM projects WHERE id = $1";
pub(crate) const UPSERT_PRINCIPAL: &str = "INSERT INTO principals (subject, email, created_at) \
     VALUES ($1, $2, $3) ON CONFLICT (subject) DO UPDATE SET email = excluded.email";
pub(crate) const UPSERT_MEMBERSHIP: &str =
    "INSERT INTO memberships (project_id, subject, role, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (project_id, subject) DO UPDATE SET role = excluded.role";
pub(crate) const SELECT_ROLE: &str =
    "SELECT role FROM memberships WHERE project_id = $1 AND subject = $2";
pub(crate) const SELECT_PRINCIPAL_EMAIL: &str = "SELECT email FROM principals WHERE subject = $1";
pub(crate) const SELECT_PRINCIPAL_PROJECTS: &str =
    "SELECT project_id FROM memberships WHERE subject = $1 ORDER BY project_id";
pub(crate) const SELECT_PROJECTS_OF_PRINCIPAL: &str =
    "SELECT p.id, p.name, p.created_at, m.role FROM memberships m \
     JOIN projects p ON p.id = m.project_id WHERE m.subject = $1 ORDER BY p.name, p.id";
pub(crate) const DELETE_MEMBERSHIP: &str =
    "DELETE FROM memberships WHERE project_id = $1 AND subject = $2 RETURNING role";
/// Deletes the principal's management tokens once it has no role left.
pub(crate) const DELETE_ORPHANED_MANAGEMENT_TOKENS: &str = "DELETE FROM management_tokens \
     WHERE subject = $1 AND NOT EXISTS (SELECT 1 FROM memberships WHERE subject = $1) \
     RETURNING id";
/// Deletes the principal once it has no role left.
pub(crate) const DELETE_ORPHANED_PRINCIPAL: &str = "DELETE FROM principals \
     WHERE subject = $1 AND NOT EXISTS (SELECT 1 FROM memberships WHERE subject = $1) \
     RETURNING subject";
pub(crate) const INSERT_MANAGEMENT_TOKEN: &str = "INSERT INTO management_tokens \
     (id, public_id, digest, subject, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const SELECT_MANAGEMENT_TOKEN: &str = management_token_query!("t.public_id = $1");
pub(crate) const SELECT_MANAGEMENT_TOKEN_BY_ID: &str = management_token_query!("t.id = $1");
pub(crate) const SELECT_MANAGEMENT_TOKENS: &str =
    management_token_query!("($1 IS NULL OR t.subject = $1) ORDER BY t.created_at, t.id");
pub(crate) const DELETE_MANAGEMENT_TOKEN: &str =
    "DELETE FROM management_tokens WHERE id = $1 AND subject = $2 RETURNING id";
pub(crate) const INSERT_KEY: &str = concat!(
    "INSERT INTO api_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
pub(crate) const SELECT_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE project_id = $1 AND region = $2 ORDER BY created_at, id"
);
pub(crate) const SELECT_KEY: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE project_id = $1 AND region = $2 AND id = $3"
);
pub(crate) const SELECT_KEY_BY_PUBLIC_ID: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE public_id = $1"
);
/// Sets the labels (`$8`) only where they still are what they were computed from (`$9`).
pub(crate) const UPDATE_KEY: &str = concat!(
    "UPDATE api_keys SET name = COALESCE($4, name), ",
    "description = CASE WHEN $5 THEN $6 ELSE description END, ",
    "labels = CASE WHEN $7 THEN $8 ELSE labels END, updated_at = $10 ",
    "WHERE project_id = $1 AND region = $2 AND id = $3 AND (NOT $7 OR labels = $9) RETURNING ",
    key_columns!()
);
pub(crate) const DELETE_KEY: &str =
    "DELETE FROM api_keys WHERE project_id = $1 AND region = $2 AND id = $3 RETURNING id";
pub(crate) const ANY_PENDING_EXPIRY: &str = "SELECT id FROM api_keys \
     WHERE expiry_recorded = FALSE AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1";
pub(crate) const MARK_EXPIRED: &str = "UPDATE api_keys SET expiry_recorded = TRUE \
     WHERE expiry_recorded = FALSE AND expires_at IS NOT NULL AND expires_at <= $1 \
     RETURNING id, project_id, expires_at";
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_events (id, time, project_id, \
     actor_subject, actor_email, action, outcome, reason, target_token_id, changes, request_id, \
     source_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const SELECT_AUDIT: &str = "SELECT seq, id, time, project_id, actor_subject, \
     actor_email, action, outcome, reason, target_token_id, changes, request_id, source_ip \
     FROM audit_events WHERE project_id = $1 AND seq > $2 \
     AND ($3 IS NULL OR time >= $3) AND ($4 IS NULL OR time < $4) ORDER BY seq LIMIT $5";

/// Events due for pseudonymization, oldest first, one batch at a time.
pub(crate) const SELECT_PERSONAL_DATA: &str = "SELECT seq, actor_subject, changes \
     FROM audit_events WHERE pseudonymized = FALSE AND time < $1 ORDER BY seq LIMIT $2";
/// The one update the audit log accepts (its trigger checks that nothing else changes).
pub(crate) const PSEUDONYMIZE_EVENT: &str = "UPDATE audit_events SET actor_subject = $2, \
     actor_email = NULL, source_ip = NULL, changes = $3, pseudonymized = TRUE \
     WHERE seq = $1 AND pseudonymized = FALSE";
pub(crate) const SELECT_PSEUDONYM_KEY: &str = "SELECT secret FROM pseudonym_key WHERE id = 1";
/// Stores a fresh key unless a replica was first; everyone then reads the one stored.
pub(crate) const INSERT_PSEUDONYM_KEY: &str = "INSERT INTO pseudonym_key (id, secret, created_at) \
     VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";
/// Events pseudonymized in one transaction.
pub(crate) const PSEUDONYMIZE_BATCH: i64 = 500;

/// Implements `Store` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `begin_write` opens a write transaction; `lock_audit`, when `Some`, runs before each audit
/// append so that sequence order equals commit order; `lock_retention`, when `Some`, runs at
/// the start of each pseudonymization batch so that replicas take turns.
macro_rules! impl_store {
    (
        $store:ty,
        $db:ty,
        begin_write = $begin:expr,
        lock_audit = $lock:expr,
        lock_retention = $retention_lock:expr
    ) => {
        impl $store {
            async fn write(&self) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                Ok(self.pool.begin_with($begin).await?)
            }

            async fn append_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                event: &AuditRecord,
            ) -> Result<(), StoreError> {
                let lock: Option<&'static str> = $lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut **tx).await?;
                }
                let columns = AuditColumns::of(event);
                sqlx::query(sql::INSERT_AUDIT)
                    .bind(event.id)
                    .bind(event.time)
                    .bind(event.project_id)
                    .bind(columns.actor_subject)
                    .bind(columns.actor_email)
                    .bind(event.action.as_str())
                    .bind(event.outcome.as_str())
                    .bind(event.reason.as_deref())
                    .bind(event.target_token_id)
                    .bind(columns.changes)
                    .bind(event.request_id.as_deref())
                    .bind(columns.source_ip)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Appends the events `events` builds from the projects `subject` has a role in.
            async fn append_project_events(
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &str,
                events: ProjectEvents<'_>,
            ) -> Result<(), StoreError> {
                let projects: Vec<(Uuid,)> = sqlx::query_as(sql::SELECT_PRINCIPAL_PROJECTS)
                    .bind(subject)
                    .fetch_all(&mut **tx)
                    .await?;
                let projects: Vec<Uuid> = projects.into_iter().map(|(id,)| id).collect();
                for event in events(&projects) {
                    Self::append_in(tx, &event).await?;
                }
                Ok(())
            }

            /// Deletes the principal and its management tokens if it has no role left;
            /// returns the ids of the deleted tokens and whether the principal was deleted.
            async fn delete_if_orphaned(
                tx: &mut sqlx::Transaction<'static, $db>,
                subject: &str,
            ) -> Result<(Vec<Uuid>, bool), StoreError> {
                let tokens: Vec<(Uuid,)> = sqlx::query_as(sql::DELETE_ORPHANED_MANAGEMENT_TOKENS)
                    .bind(subject)
                    .fetch_all(&mut **tx)
                    .await?;
                let principal: Option<(String,)> = sqlx::query_as(sql::DELETE_ORPHANED_PRINCIPAL)
                    .bind(subject)
                    .fetch_optional(&mut **tx)
                    .await?;
                let tokens = tokens.into_iter().map(|(id,)| id).collect();
                Ok((tokens, principal.is_some()))
            }

            /// The database's pseudonym key, drawn and stored by the first caller.
            async fn pseudonym_key(&self) -> Result<PseudonymKey, StoreError> {
                let stored: Option<(Vec<u8>,)> = sqlx::query_as(sql::SELECT_PSEUDONYM_KEY)
                    .fetch_optional(&self.pool)
                    .await?;
                let secret = match stored {
                    Some((secret,)) => secret,
                    None => {
                        sqlx::query(sql::INSERT_PSEUDONYM_KEY)
                            .bind(PseudonymKey::generate().as_bytes().to_vec())
                            .bind(Utc::now())
                            .execute(&self.pool)
                            .await?;
                        let (secret,): (Vec<u8>,) = sqlx::query_as(sql::SELECT_PSEUDONYM_KEY)
                            .fetch_one(&self.pool)
                            .await?;
                        secret
                    }
                };
                PseudonymKey::from_slice(&secret)
                    .ok_or_else(|| StoreError::Corrupt("pseudonym_key.secret".to_owned()))
            }

            /// Pseudonymizes one batch of due events in one transaction; returns how many
            /// were due and how many of them this call changed.
            async fn pseudonymize_batch(
                &self,
                key: &PseudonymKey,
                before: DateTime<Utc>,
            ) -> Result<(usize, u64), StoreError> {
                let mut tx = self.write().await?;
                let lock: Option<&'static str> = $retention_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let due: Vec<PersonalDataRow> = sqlx::query_as(sql::SELECT_PERSONAL_DATA)
                    .bind(before)
                    .bind(sql::PSEUDONYMIZE_BATCH)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut changed = 0;
                for row in &due {
                    let clean = pseudonymize(key, row)?;
                    changed += sqlx::query(sql::PSEUDONYMIZE_EVENT)
                        .bind(row.seq)
                        .bind(clean.actor_subject)
                        .bind(clean.changes)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok((due.len(), changed))
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            async fn insert_project(
                &self,
                project: &Project,
                event: &AuditRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                sqlx::query(sql::INSERT_PROJECT)
                    .bind(project.id)
                    .bind(&project.name)
                    .bind(project.created_at)
                    .execute(&mut *tx)
                    .await?;
                Self::append_in(&mut tx, event).await?;
                Ok(tx.commit().await?)
            }

            async fn project(&self, id: Uuid) -> Result<Option<Project>, StoreError> {
                let row: Option<ProjectRow> = sqlx::query_as(sql::SELECT_PROJECT)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Project::from))
            }

            async fn upsert_membership(
                &self,
                membership: &Membership,
                now: DateTime<Utc>,
                event: &AuditRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                sqlx::query(sql::UPSERT_PRINCIPAL)
                    .bind(&membership.subject)
                    .bind(&membership.email)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::UPSERT_MEMBERSHIP)
                    .bind(membership.project_id)
                    .bind(&membership.subject)
                    .bind(membership.role.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Self::append_in(&mut tx, event).await?;
                Ok(tx.commit().await?)
            }

            async fn role(
                &self,
                project_id: Uuid,
                subject: &str,
            ) -> Result<Option<Role>, StoreError> {
                let role: Option<(String,)> = sqlx::query_as(sql::SELECT_ROLE)
                    .bind(project_id)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await?;
                role.map(|(text,)| stored_role(&text)).transpose()
            }

            async fn projects_of(&self, subject: &str) -> Result<Vec<ProjectAccess>, StoreError> {
                let rows: Vec<MembershipRow> = sqlx::query_as(sql::SELECT_PROJECTS_OF_PRINCIPAL)
                    .bind(subject)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(ProjectAccess::try_from).collect()
            }

            async fn remove_membership(
                &self,
                project_id: Uuid,
                subject: &str,
                event: RemovalEvent<'_>,
            ) -> Result<Option<MembershipRemoval>, StoreError> {
                let mut tx = self.write().await?;
                let role: Option<(String,)> = sqlx::query_as(sql::DELETE_MEMBERSHIP)
                    .bind(project_id)
                    .bind(subject)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((role,)) = role else {
                    return Ok(None);
                };
                let role = stored_role(&role)?;
                let (revoked_management_tokens, principal_deleted) =
                    Self::delete_if_orphaned(&mut tx, subject).await?;
                let removal = MembershipRemoval {
                    role,
                    principal_deleted,
                    revoked_management_tokens,
                };
                Self::append_in(&mut tx, &event(&removal)).await?;
                tx.commit().await?;
                Ok(Some(removal))
            }

            async fn principal_email(&self, subject: &str) -> Result<Option<String>, StoreError> {
                let email: Option<(String,)> = sqlx::query_as(sql::SELECT_PRINCIPAL_EMAIL)
                    .bind(subject)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(email.map(|(e,)| e))
            }

            async fn insert_management_token(
                &self,
                token: &ManagementTokenRecord,
                events: ProjectEvents<'_>,
            ) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                sqlx::query(sql::INSERT_MANAGEMENT_TOKEN)
                    .bind(token.id)
                    .bind(&token.public_id)
                    .bind(token.digest.as_bytes().to_vec())
                    .bind(&token.subject)
                    .bind(token.created_at)
                    .bind(token.expires_at)
                    .execute(&mut *tx)
                    .await?;
                Self::append_project_events(&mut tx, &token.subject, events).await?;
                Ok(tx.commit().await?)
            }

            async fn management_token(
                &self,
                public_id: &str,
            ) -> Result<Option<ManagementTokenRecord>, StoreError> {
                let row: Option<ManagementTokenRow> = sqlx::query_as(sql::SELECT_MANAGEMENT_TOKEN)
                    .bind(public_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(ManagementTokenRecord::try_from).transpose()
            }

            async fn management_token_by_id(
                &self,
                id: Uuid,
            ) -> Result<Option<ManagementTokenRecord>, StoreError> {
                let row: Option<ManagementTokenRow> =
                    sqlx::query_as(sql::SELECT_MANAGEMENT_TOKEN_BY_ID)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(ManagementTokenRecord::try_from).transpose()
            }

            async fn management_tokens(
                &self,
                subject: Option<&str>,
            ) -> Result<Vec<ManagementTokenRecord>, StoreError> {
                let rows: Vec<ManagementTokenRow> = sqlx::query_as(sql::SELECT_MANAGEMENT_TOKENS)
                    .bind(subject)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(ManagementTokenRecord::try_from)
                    .collect()
            }

            async fn delete_management_token(
                &self,
                id: Uuid,
                subject: &str,
                events: ProjectEvents<'_>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.write().await?;
                let deleted: Option<(Uuid,)> = sqlx::query_as(sql::DELETE_MANAGEMENT_TOKEN)
                    .bind(id)
                    .bind(subject)
                    .fetch_optional(&mut *tx)
                    .await?;
                if deleted.is_none() {
                    return Ok(false);
                }
                Self::append_project_events(&mut tx, subject, events).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_key(
                &self,
                key: &KeyRecord,
                event: &AuditRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                sqlx::query(sql::INSERT_KEY)
                    .bind(key.id)
                    .bind(key.project_id)
                    .bind(&key.region)
                    .bind(&key.public_id)
                    .bind(key.digest.as_bytes().to_vec())
                    .bind(&key.name)
                    .bind(key.description.as_deref())
                    .bind(models_column(key))
                    .bind(key.created_at)
                    .bind(key.updated_at)
                    .bind(key.expires_at)
                    .bind(labels_column(&key.labels))
                    .execute(&mut *tx)
                    .await?;
                Self::append_in(&mut tx, event).await?;
                Ok(tx.commit().await?)
            }

            async fn keys(
                &self,
                project_id: Uuid,
                region: &str,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                let rows: Vec<KeyRow> = sqlx::query_as(sql::SELECT_KEYS)
                    .bind(project_id)
                    .bind(region)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(KeyRecord::try_from).collect()
            }

            async fn key(
                &self,
                project_id: Uuid,
                region: &str,
                id: Uuid,
            ) -> Result<Option<KeyRecord>, StoreError> {
                let row: Option<KeyRow> = sqlx::query_as(sql::SELECT_KEY)
                    .bind(project_id)
                    .bind(region)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn key_by_public_id(
                &self,
                public_id: &str,
            ) -> Result<Option<KeyRecord>, StoreError> {
                let row: Option<KeyRow> = sqlx::query_as(sql::SELECT_KEY_BY_PUBLIC_ID)
                    .bind(public_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn update_key(
                &self,
                project_id: Uuid,
                region: &str,
                id: Uuid,
                patch: &KeyPatch,
                event: &AuditRecord,
            ) -> Result<Option<KeyRecord>, StoreError> {
                let mut tx = self.write().await?;
                let labels = patch.labels.as_ref();
                let row: Option<KeyRow> = sqlx::query_as(sql::UPDATE_KEY)
                    .bind(project_id)
                    .bind(region)
                    .bind(id)
                    .bind(patch.name.as_deref())
                    .bind(patch.description.is_some())
                    .bind(patch.description.clone().flatten())
                    .bind(labels.is_some())
                    .bind(labels.map(|change| labels_column(&change.new)))
                    .bind(labels.map(|change| labels_column(&change.expected)))
                    .bind(patch.updated_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                Self::append_in(&mut tx, event).await?;
                tx.commit().await?;
                KeyRecord::try_from(row).map(Some)
            }

            async fn delete_key(
                &self,
                project_id: Uuid,
                region: &str,
                id: Uuid,
                event: &AuditRecord,
            ) -> Result<bool, StoreError> {
                let mut tx = self.write().await?;
                let deleted: Option<(Uuid,)> = sqlx::query_as(sql::DELETE_KEY)
                    .bind(project_id)
                    .bind(region)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if deleted.is_none() {
                    return Ok(false);
                }
                Self::append_in(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn record_expirations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                let pending: Option<(Uuid,)> = sqlx::query_as(sql::ANY_PENDING_EXPIRY)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                if pending.is_none() {
                    return Ok(0);
                }
                let mut tx = self.write().await?;
                let expired: Vec<ExpiredRow> = sqlx::query_as(sql::MARK_EXPIRED)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                for key in &expired {
                    let event =
                        crate::audit::expiry_event(now, key.project_id, key.id, key.expires_at);
                    Self::append_in(&mut tx, &event).await?;
                }
                tx.commit().await?;
                Ok(expired.len() as u64)
            }

            async fn append_audit(&self, event: &AuditRecord) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                Self::append_in(&mut tx, event).await?;
                Ok(tx.commit().await?)
            }

            async fn audit_events(
                &self,
                filter: &AuditFilter,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(sql::SELECT_AUDIT)
                    .bind(filter.project_id)
                    .bind(filter.after_sequence)
                    .bind(filter.from)
                    .bind(filter.to)
                    .bind(filter.limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(AuditEvent::try_from).collect()
            }

            async fn pseudonymize_audit_events(
                &self,
                before: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let key = self.pseudonym_key().await?;
                let mut total = 0;
                loop {
                    let (due, changed) = self.pseudonymize_batch(&key, before).await?;
                    total += changed;
                    if (due as i64) < sql::PSEUDONYMIZE_BATCH {
                        return Ok(total);
                    }
                }
            }

            async fn check_writable(&self) -> Result<(), StoreError> {
                let mut tx = self.write().await?;
                sqlx::query("DELETE FROM projects WHERE 1 = 0")
                    .execute(&mut *tx)
                    .await?;
                tx.rollback().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store;
