//! Operator operations behind the `gateway admin …` commands: create projects, give
//! principals roles, issue management tokens and create keys without a management token.
//! They act as [`Actor::operator`] and are audited like the management API's operations.

use uuid::Uuid;

use crate::audit::{AuditAction, AuditRecord};
use crate::duration::TtlDuration;
use crate::error::AuthError;
use crate::key::CredentialKind;
use crate::management::Management;
use crate::model::{Actor, ManagementTokenRecord, Membership, Project, RequestContext, Role};
use crate::wire::{valid_region, CreateToken, CreatedManagementToken, CreatedToken};

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
        self.store.insert_management_token(&record).await?;
        Ok(CreatedManagementToken {
            id: record.id,
            subject: record.subject,
            valid_until: record.expires_at,
            content: generated.secret,
        })
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
