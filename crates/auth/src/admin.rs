//! Operator operations behind the `gateway admin …` commands: create projects, give and
//! remove principals' roles, issue, list and revoke management tokens, and create keys without
//! a management token. They act as [`Actor::operator`] and are audited like the management
//! API's operations.
//!
//! A management token belongs to a principal, not to a project, while an audit event belongs to
//! a project: issuing or revoking one is recorded in the log of every project its principal has
//! a role in at that moment (`management_token.create`, `management_token.revoke`), since each
//! of those projects is what the token opens or no longer opens.

use uuid::Uuid;

use crate::audit::{AuditAction, AuditRecord};
use crate::duration::TtlDuration;
use crate::error::AuthError;
use crate::key::CredentialKind;
use crate::management::Management;
use crate::model::{
    Actor, ManagementTokenRecord, Membership, MembershipRemoval, Project, RequestContext, Role,
};
use crate::wire::{
    valid_region, CreateToken, CreatedManagementToken, CreatedToken, ManagementToken,
};

impl Management {
    /// `gateway admin project create --name NAME`.
    pub async fn create_project(&self, name: &str) -> Result<Project, AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AuthError::validation("name", "must be 1-200 characters"));
        }
        let now = self.now();
        let project = Project {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: now,
        };
        let operator = Actor::operator();
        let ctx = RequestContext::default();
        let event = AuditRecord::success(
            now,
            project.id,
            Some(&operator),
            AuditAction::ProjectCreate,
            &ctx,
        )
        .change("name", &project.name);
        self.store.insert_project(&project, &event).await?;
        Ok(project)
    }

    /// `gateway admin principal add --project ID --subject SUB --email E --role ROLE`:
    /// creates the principal if needed (updating its e-mail otherwise) and sets its role.
    pub async fn add_principal(
        &self,
        project_id: Uuid,
        subject: &str,
        email: &str,
        role: Role,
    ) -> Result<Membership, AuthError> {
        let subject = subject.trim();
        let email = email.trim();
        if subject.is_empty() || subject.len() > 256 {
            return Err(AuthError::validation("subject", "must be 1-256 characters"));
        }
        if !email.contains('@') || email.len() > 320 {
            return Err(AuthError::validation("email", "must be an e-mail address"));
        }
        if self.store.project(project_id).await?.is_none() {
            return Err(AuthError::NotFound);
        }
        let now = self.now();
        let membership = Membership {
            project_id,
            subject: subject.to_owned(),
            email: email.to_owned(),
            role,
        };
        let operator = Actor::operator();
        let ctx = RequestContext::default();
        let event = AuditRecord::success(
            now,
            project_id,
            Some(&operator),
            AuditAction::PrincipalAdd,
            &ctx,
        )
        .change("subject", subject)
        .change("email", email)
        .change("role", role);
        self.store
            .upsert_membership(&membership, now, &event)
            .await?;
        Ok(membership)
    }

    /// `gateway admin management-token create --subject SUB [--ttl 30d]`: a credential for the
    /// management API, shown once. The principal must exist (see [`Self::add_principal`]).
    pub async fn create_management_token(
        &self,
        subject: &str,
        ttl: Option<TtlDuration>,
    ) -> Result<CreatedManagementToken, AuthError> {
        if self.store.principal_email(subject).await?.is_none() {
            return Err(AuthError::NotFound);
        }
        let now = self.now();
        let generated = CredentialKind::ManagementToken.generate();
        let record = ManagementTokenRecord {
            id: Uuid::new_v4(),
            public_id: generated.public_id,
            digest: generated.digest,
            subject: subject.to_owned(),
            email: String::new(),
            created_at: now,
            expires_at: ttl.map(|ttl| now + ttl.as_time_delta()),
        };
        let events = |projects: &[Uuid]| {
            self.management_token_events(&record, AuditAction::ManagementTokenCreate, projects)
        };
        self.store.insert_management_token(&record, &events).await?;
        Ok(CreatedManagementToken {
            id: record.id,
            subject: record.subject,
            valid_until: record.expires_at,
            content: generated.secret,
        })
    }

    /// `gateway admin management-token list [--subject SUB]`: the management tokens of one
    /// principal (of all without a subject), oldest first, without their secrets.
    pub async fn management_tokens(
        &self,
        subject: Option<&str>,
    ) -> Result<Vec<ManagementToken>, AuthError> {
        let records = self.store.management_tokens(subject).await?;
        Ok(records.iter().map(ManagementToken::from).collect())
    }

    /// `gateway admin management-token revoke --id ID`: deletes the management token with this
    /// id or public id; it is refused from the next request on, on every replica (management
    /// tokens are looked up on every request, never cached).
    pub async fn revoke_management_token(
        &self,
        reference: &str,
    ) -> Result<ManagementToken, AuthError> {
        let record = match reference.parse::<Uuid>() {
            Ok(id) => self.store.management_token_by_id(id).await?,
            Err(_) => self.store.management_token(reference).await?,
        }
        .ok_or(AuthError::NotFound)?;
        let events = |projects: &[Uuid]| {
            self.management_token_events(&record, AuditAction::ManagementTokenRevoke, projects)
        };
        if !self
            .store
            .delete_management_token(record.id, &record.subject, &events)
            .await?
        {
            return Err(AuthError::NotFound);
        }
        Ok(ManagementToken::from(&record))
    }

    /// `gateway admin principal remove --project ID --subject SUB`: removes the principal's role
    /// on the project (audited as `principal.remove`). When that was its last role, the
    /// principal — its e-mail — and its management tokens are deleted as well; audit events
    /// keep their own copies until retention pseudonymizes them.
    pub async fn remove_principal(
        &self,
        project_id: Uuid,
        subject: &str,
    ) -> Result<MembershipRemoval, AuthError> {
        let now = self.now();
        let operator = Actor::operator();
        let ctx = RequestContext::default();
        let event = |removal: &MembershipRemoval| {
            AuditRecord::success(
                now,
                project_id,
                Some(&operator),
                AuditAction::PrincipalRemove,
                &ctx,
            )
            .change("subject", subject)
            .change("role", removal.role)
            .change("principalDeleted", removal.principal_deleted)
            .change(
                "revokedManagementTokens",
                &removal.revoked_management_tokens,
            )
        };
        self.store
            .remove_membership(project_id, subject, &event)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// The events of issuing or revoking `token`: one per project its principal has a role in.
    fn management_token_events(
        &self,
        token: &ManagementTokenRecord,
        action: AuditAction,
        projects: &[Uuid],
    ) -> Vec<AuditRecord> {
        let now = self.now();
        let operator = Actor::operator();
        let ctx = RequestContext::default();
        projects
            .iter()
            .map(|project_id| {
                AuditRecord::success(now, *project_id, Some(&operator), action, &ctx)
                    .target(token.id)
                    .change("subject", &token.subject)
                    .change("validUntil", token.expires_at)
            })
            .collect()
    }

    /// `gateway admin key create --project ID --name NAME [--ttl 30d]`: a model API key created
    /// by the operator, in `region`.
    pub async fn create_key(
        &self,
        project_id: Uuid,
        region: &str,
        request: CreateToken,
    ) -> Result<CreatedToken, AuthError> {
        valid_region(region)?;
        let valid = request.validate()?;
        if self.store.project(project_id).await?.is_none() {
            return Err(AuthError::NotFound);
        }
        let ctx = RequestContext::default();
        self.insert_key(&Actor::operator(), project_id, region, valid, &ctx)
            .await
    }
}
