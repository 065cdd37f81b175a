//! The token management operations behind the management API: each call checks the actor's
//! role on the project and writes its audit event (refused attempts included).
//!
//! Authorization: owners and members may write, viewers may read; a principal without a role
//! on the project gets [`AuthError::NotFound`] from every call, exactly as if the project or
//! token did not exist, so ids of other projects never leak.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{AuditAction, AuditEvent, AuditPage, AuditQuery, AuditRecord, MAX_PAGE_SIZE};
use crate::clock::{to_micros, Clock, SystemClock};
use crate::error::AuthError;
use crate::key::{CredentialKind, KeyDigest};
use crate::labels::{self, LabelSelector};
use crate::model::{Actor, KeyPatch, KeyRecord, LabelChange, ProjectAccess, RequestContext};
use crate::store::Store;
use crate::wire::{
    valid_region, CreateToken, CreatedToken, Token, UpdateToken, ValidCreateToken, ValidUpdateToken,
};

/// How often an update whose label patch raced another one is recomputed before it answers
/// [`AuthError::Conflict`].
const UPDATE_ATTEMPTS: usize = 10;

/// What a call needs from the actor's role.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

/// The management service: a store and a clock. Cheap to clone; share one per process.
#[derive(Clone, Debug)]
pub struct Management {
    pub(crate) store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Management {
    /// A service on `store` with the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    /// A service on `store` with the given clock (tests use a manual one).
    pub fn with_clock(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The store this service writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        to_micros(self.clock.now())
    }

    /// Resolves a management token (`gmt-…`) to its principal. Missing, malformed, unknown
    /// and expired tokens all give [`AuthError::Unauthenticated`].
    pub async fn authenticate_management_token(&self, presented: &str) -> Result<Actor, AuthError> {
        let public_id = CredentialKind::ManagementToken
            .public_id(presented)
            .ok_or(AuthError::Unauthenticated)?;
        let record = self
            .store
            .management_token(public_id)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let digest_ok = KeyDigest::of(presented).ct_eq(&record.digest);
        let expired = record.expires_at.is_some_and(|t| t <= self.now());
        if !digest_ok || expired {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Actor {
            subject: record.subject,
            email: record.email,
        })
    }

    /// Records a management request on `project_id` that carried no valid credential, when
    /// that project exists: requests on made-up ids write nothing, so they cannot fill the
    /// database.
    pub async fn record_unauthenticated(
        &self,
        project_id: Uuid,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        if self.store.project(project_id).await?.is_none() {
            return Ok(());
        }
        let event = AuditRecord::failure(
            self.now(),
            project_id,
            None,
            AuditAction::Authenticate,
            ctx,
            &AuthError::Unauthenticated,
        );
        Ok(self.store.append_audit(&event).await?)
    }

    /// `GET /v1/projects`: the projects `actor` has a role on, with that role, by name.
    pub async fn projects(&self, actor: &Actor) -> Result<Vec<ProjectAccess>, AuthError> {
        Ok(self.store.projects_of(&actor.subject).await?)
    }

    /// `POST /v1/projects/{projectId}/regions/{regionId}/tokens`.
    pub async fn create_token(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        request: CreateToken,
        ctx: &RequestContext,
    ) -> Result<CreatedToken, AuthError> {
        let action = AuditAction::TokenCreate;
        self.authorize(actor, project_id, Access::Write, action, None, ctx)
            .await?;
        let valid = match valid_region(region).and_then(|()| request.validate()) {
            Ok(valid) => valid,
            Err(err) => {
                return Err(self
                    .refuse(project_id, Some(actor), action, None, ctx, err)
                    .await)
            }
        };
        self.insert_key(actor, project_id, region, valid, ctx).await
    }

    /// `GET …/tokens?label_selector=…`: the project's tokens in the region whose labels match
    /// the selector (all without one), oldest first. See [`crate::labels`] for the syntax.
    pub async fn list_tokens(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        label_selector: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Vec<Token>, AuthError> {
        let action = AuditAction::TokenRead;
        self.authorize(actor, project_id, Access::Read, action, None, ctx)
            .await?;
        let selector = match label_selector.map(LabelSelector::parse).transpose() {
            Ok(selector) => selector.unwrap_or_default(),
            Err(err) => {
                return Err(self
                    .refuse(project_id, Some(actor), action, None, ctx, err)
                    .await)
            }
        };
        self.sweep_expired().await?;
        let now = self.now();
        let keys = self.store.keys(project_id, region).await?;
        Ok(keys
            .iter()
            .filter(|key| selector.matches(&key.labels))
            .map(|key| Token::from_record(key, now))
            .collect())
    }

    /// `GET …/tokens/{tokenId}`.
    pub async fn get_token(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        token_id: Uuid,
        ctx: &RequestContext,
    ) -> Result<Token, AuthError> {
        let action = AuditAction::TokenRead;
        self.authorize(actor, project_id, Access::Read, action, Some(token_id), ctx)
            .await?;
        self.sweep_expired().await?;
        match self.store.key(project_id, region, token_id).await? {
            Some(key) => Ok(Token::from_record(&key, self.now())),
            None => Err(self
                .refuse(
                    project_id,
                    Some(actor),
                    action,
                    Some(token_id),
                    ctx,
                    AuthError::NotFound,
                )
                .await),
        }
    }

    /// `PATCH …/tokens/{tokenId}`: changes name, description and/or labels.
    pub async fn update_token(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        token_id: Uuid,
        request: UpdateToken,
        ctx: &RequestContext,
    ) -> Result<Token, AuthError> {
        let action = AuditAction::TokenUpdate;
        let target = Some(token_id);
        self.authorize(actor, project_id, Access::Write, action, target, ctx)
            .await?;
        let result = match request.validate() {
            Ok(valid) => {
                self.apply_update(actor, project_id, region, token_id, &valid, ctx)
                    .await
            }
            Err(err) => Err(err),
        };
        match result {
            Err(err) if !matches!(err, AuthError::Store(_)) => Err(self
                .refuse(project_id, Some(actor), action, target, ctx, err)
                .await),
            done => done,
        }
    }

    /// Writes a validated update. A label patch is applied to the labels the key has, and
    /// recomputed when another update changed them in between.
    async fn apply_update(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        token_id: Uuid,
        update: &ValidUpdateToken,
        ctx: &RequestContext,
    ) -> Result<Token, AuthError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let labels = match &update.labels {
                None => None,
                Some(patch) => {
                    let key = self
                        .store
                        .key(project_id, region, token_id)
                        .await?
                        .ok_or(AuthError::NotFound)?;
                    let new = labels::apply(&key.labels, patch)?;
                    Some(LabelChange {
                        expected: key.labels,
                        new,
                    })
                }
            };
            let now = self.now();
            let mut event =
                AuditRecord::success(now, project_id, Some(actor), AuditAction::TokenUpdate, ctx)
                    .target(token_id);
            if let Some(name) = &update.name {
                event = event.change("name", name);
            }
            if let Some(description) = &update.description {
                event = event.change("description", description);
            }
            if let Some(change) = &labels {
                event = event.change("labels", &change.new);
            }
            let patch = KeyPatch {
                name: update.name.clone(),
                description: update.description.clone(),
                labels,
                updated_at: now,
            };
            let updated = self
                .store
                .update_key(project_id, region, token_id, &patch, &event)
                .await?;
            match updated {
                Some(key) => return Ok(Token::from_record(&key, now)),
                // Without labels nothing can have raced: the key does not exist.
                None if patch.labels.is_none() => return Err(AuthError::NotFound),
                // The labels changed (or the key went) since they were read: read again.
                None => continue,
            }
        }
        Err(AuthError::Conflict(
            "the token's labels kept changing during the update".to_owned(),
        ))
    }

    /// `DELETE …/tokens/{tokenId}`: revokes the token (verifiers notice within their cache age).
    pub async fn delete_token(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        token_id: Uuid,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let action = AuditAction::TokenDelete;
        let target = Some(token_id);
        self.authorize(actor, project_id, Access::Write, action, target, ctx)
            .await?;
        let event =
            AuditRecord::success(self.now(), project_id, Some(actor), action, ctx).target(token_id);
        if self
            .store
            .delete_key(project_id, region, token_id, &event)
            .await?
        {
            Ok(())
        } else {
            Err(self
                .refuse(
                    project_id,
                    Some(actor),
                    action,
                    target,
                    ctx,
                    AuthError::NotFound,
                )
                .await)
        }
    }

    /// `GET /v1/projects/{projectId}/audit-log?from=&to=&cursor=&limit=`: one page, oldest first.
    pub async fn audit_page(
        &self,
        actor: &Actor,
        project_id: Uuid,
        query: &AuditQuery,
        ctx: &RequestContext,
    ) -> Result<AuditPage, AuthError> {
        let action = AuditAction::AuditRead;
        self.authorize(actor, project_id, Access::Read, action, None, ctx)
            .await?;
        let mut filter = match query.to_filter(project_id) {
            Ok(filter) => filter,
            Err(err) => {
                return Err(self
                    .refuse(project_id, Some(actor), action, None, ctx, err)
                    .await)
            }
        };
        self.sweep_expired().await?;
        let page_size = filter.limit;
        filter.limit += 1;
        let mut events = self.store.audit_events(&filter).await?;
        let more = events.len() as i64 > page_size;
        events.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next_cursor = match events.last() {
            Some(last) if more => Some(last.sequence.to_string()),
            _ => None,
        };
        Ok(AuditPage {
            events,
            next_cursor,
        })
    }

    /// Checks that `actor` may read the project's usage (any role on it; 404 otherwise, as
    /// for its tokens); a refusal is audited as `usage.read`.
    pub async fn authorize_usage_read(
        &self,
        actor: &Actor,
        project_id: Uuid,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let action = AuditAction::UsageRead;
        self.authorize(actor, project_id, Access::Read, action, None, ctx)
            .await
    }

    /// Every event matching `query` from its cursor on, for an NDJSON export (see
    /// [`crate::write_ndjson`]), read a page of [`MAX_PAGE_SIZE`] events at a time so that an
    /// export of any length holds one page in memory; the query's `limit` is ignored. The
    /// first page is read here, so a refusal is this call's error.
    pub async fn export_audit(
        &self,
        actor: &Actor,
        project_id: Uuid,
        query: &AuditQuery,
        ctx: &RequestContext,
    ) -> Result<AuditExport, AuthError> {
        let query = AuditQuery {
            limit: Some(MAX_PAGE_SIZE),
            ..query.clone()
        };
        let first = self.audit_page(actor, project_id, &query, ctx).await?;
        Ok(AuditExport {
            management: self.clone(),
            actor: actor.clone(),
            project_id,
            query,
            ctx: ctx.clone(),
            first: Some(first),
            cursor: None,
        })
    }

    /// Writes the `token.expire` events of keys that have expired since the last sweep.
    /// Called by the reading operations; a server may also call it periodically.
    pub async fn sweep_expired(&self) -> Result<u64, AuthError> {
        Ok(self.store.record_expirations(self.now()).await?)
    }

    /// Generates a key, stores its digest and the creation event.
    pub(crate) async fn insert_key(
        &self,
        actor: &Actor,
        project_id: Uuid,
        region: &str,
        valid: ValidCreateToken,
        ctx: &RequestContext,
    ) -> Result<CreatedToken, AuthError> {
        let now = self.now();
        let generated = CredentialKind::ApiKey.generate();
        let key = KeyRecord {
            id: Uuid::new_v4(),
            project_id,
            region: region.to_owned(),
            public_id: generated.public_id,
            digest: generated.digest,
            name: valid.name,
            description: valid.description,
            labels: valid.labels,
            allowed_models: valid.allowed_models,
            created_at: now,
            updated_at: now,
            expires_at: valid.ttl.map(|ttl| now + ttl.as_time_delta()),
        };
        let event =
            AuditRecord::success(now, project_id, Some(actor), AuditAction::TokenCreate, ctx)
                .target(key.id)
                .change("name", &key.name)
                .change("description", &key.description)
                .change("region", &key.region)
                .change("validUntil", key.expires_at)
                .change("labels", &key.labels)
                .change("allowedModels", &key.allowed_models);
        self.store.insert_key(&key, &event).await?;
        Ok(CreatedToken {
            token: Token::from_record(&key, now),
            content: generated.secret,
        })
    }

    /// Checks the actor's role; a refusal is audited and returned.
    async fn authorize(
        &self,
        actor: &Actor,
        project_id: Uuid,
        access: Access,
        action: AuditAction,
        target: Option<Uuid>,
        ctx: &RequestContext,
    ) -> Result<(), AuthError> {
        let refusal = match self.store.role(project_id, &actor.subject).await? {
            None => AuthError::NotFound,
            Some(role) if access == Access::Write && !role.can_write() => AuthError::Forbidden,
            Some(_) => return Ok(()),
        };
        Err(self
            .refuse(project_id, Some(actor), action, target, ctx, refusal)
            .await)
    }

    /// Appends the failure event of a refused attempt and gives the error back.
    async fn refuse(
        &self,
        project_id: Uuid,
        actor: Option<&Actor>,
        action: AuditAction,
        target: Option<Uuid>,
        ctx: &RequestContext,
        error: AuthError,
    ) -> AuthError {
        let mut event = AuditRecord::failure(self.now(), project_id, actor, action, ctx, &error);
        event.target_token_id = target;
        if let Err(store_error) = self.store.append_audit(&event).await {
            tracing::error!(
                error = %store_error,
                action = action.as_str(),
                "could not audit a refused management attempt"
            );
        }
        error
    }
}

/// An audit-log export in progress ([`Management::export_audit`]): its pages, read one at a
/// time, each with the caller's access checked again.
#[derive(Debug)]
pub struct AuditExport {
    management: Management,
    actor: Actor,
    project_id: Uuid,
    query: AuditQuery,
    ctx: RequestContext,
    /// The first page, until it is handed out.
    first: Option<AuditPage>,
    /// Where the page after the last one handed out starts; `None` at the end.
    cursor: Option<String>,
}

impl AuditExport {
    /// The next page's events, or `None` after the last page (or after an error).
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditEvent>>, AuthError> {
        let page = match self.first.take() {
            Some(page) => page,
            None => {
                let Some(cursor) = self.cursor.take() else {
                    return Ok(None);
                };
                self.query.cursor = Some(cursor);
                self.management
                    .audit_page(&self.actor, self.project_id, &self.query, &self.ctx)
                    .await?
            }
        };
        self.cursor = page.next_cursor;
        Ok(Some(page.events))
    }

    /// Every remaining event, in one vector.
    pub async fn all(mut self) -> Result<Vec<AuditEvent>, AuthError> {
        let mut events = Vec::new();
        while let Some(page) = self.next_page().await? {
            events.extend(page);
        }
        Ok(events)
    }
}
