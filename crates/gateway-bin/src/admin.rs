//! `gateway admin …`: the operator's commands. They open the same database as `serve` (also
//! while it runs) and print exactly one JSON object on stdout, so scripts can use them.

use anyhow::Context;
use gateway_auth::{parse_id, AuthError, CreateToken, Management, Role, TtlDuration};
use serde::Serialize;

use gateway_metering::report::{usage_report as usage_report_of, GroupBy};
use gateway_metering::{LimitOverride, UsageQuery};

use crate::cli::{
    AdminArgs, AdminCommand, KeyCommand, KeyCreateArgs, ManagementTokenCommand, PrincipalCommand,
    ProjectCommand, RetentionCommand, UsageArgs,
};
use crate::config::Config;

/// Runs one admin command and prints its result.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let config = Config::load_with_env(args.config.as_deref())?;
    let output = match args.command {
        AdminCommand::Usage(usage) => usage_report(&config, usage).await?,
        AdminCommand::Retention(RetentionCommand::Run { as_of }) => {
            crate::retention::run_command(&config, as_of.as_deref()).await?
        }
        AdminCommand::Project(ProjectCommand::Limits {
            project,
            model,
            rpm,
            tpm,
        }) => {
            let limits = LimitOverride {
                project_id: project_id(&project)?,
                model,
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
                updated_at: chrono::Utc::now(),
            };
            set_limits(&config, limits).await?
        }
        command => {
            let management = Management::new(crate::store::open(&config).await?);
            execute(&management, command).await?
        }
    };
    println!("{output}");
    Ok(())
}

/// `gateway admin usage`: the report as the management API's JSON.
async fn usage_report(config: &Config, args: UsageArgs) -> anyhow::Result<String> {
    let time = |text: &Option<String>| text.as_deref().map(crate::metering::parse_time).transpose();
    let query = UsageQuery {
        project_id: project_id(&args.project)?,
        from: time(&args.from).context("invalid --from")?,
        to: time(&args.to).context("invalid --to")?,
    };
    let group_by: GroupBy = args.group_by.parse()?;
    let store = crate::metering::usage_store(config).await?;
    let report = usage_report_of(
        store.as_ref(),
        &query,
        group_by,
        config.metering.granularity,
    )
    .await
    .context("cannot read the usage records")?;
    json(&report)
}

/// `gateway admin project limits`: stores the override (every replica reloads it).
async fn set_limits(config: &Config, limits: LimitOverride) -> anyhow::Result<String> {
    let store = crate::metering::usage_store(config).await?;
    store
        .set_limit_override(&limits)
        .await
        .context("cannot store the limits")?;
    json(&serde_json::json!({
        "projectId": limits.project_id,
        "model": limits.model,
        "requestsPerMinute": limits.requests_per_minute,
        "tokensPerMinute": limits.tokens_per_minute,
        "updatedAt": limits.updated_at,
    }))
}

/// Executes a command on keys, principals and projects and returns its JSON output.
async fn execute(management: &Management, command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::Project(ProjectCommand::Create { name }) => {
            json(&management.create_project(&name).await?)
        }
        AdminCommand::Project(ProjectCommand::Limits { .. })
        | AdminCommand::Usage(_)
        | AdminCommand::Retention(_) => {
            anyhow::bail!("not a key, principal or project command")
        }
        AdminCommand::Key(KeyCommand::Create(args)) => {
            let project = project_id(&args.project)?;
            let region = args.region.clone();
            let created = management
                .create_key(project, &region, create_token(args))
                .await
                .map_err(|error| explain(error, "the project does not exist"))?;
            json(&created)
        }
        AdminCommand::Principal(PrincipalCommand::Add {
            project,
            subject,
            email,
            role,
        }) => {
            let role: Role = role.parse()?;
            let membership = management
                .add_principal(project_id(&project)?, &subject, &email, role)
                .await
                .map_err(|error| explain(error, "the project does not exist"))?;
            json(&membership)
        }
        AdminCommand::Principal(PrincipalCommand::Remove { project, subject }) => {
            let project = project_id(&project)?;
            let removal = management
                .remove_principal(project, &subject)
                .await
                .map_err(|error| explain(error, "the principal has no role on that project"))?;
            json(&serde_json::json!({
                "projectId": project,
                "subject": subject,
                "role": removal.role,
                "principalDeleted": removal.principal_deleted,
                "revokedManagementTokens": removal.revoked_management_tokens,
            }))
        }
        AdminCommand::ManagementToken(ManagementTokenCommand::List { subject }) => {
            let tokens = management.management_tokens(subject.as_deref()).await?;
            json(&serde_json::json!({ "managementTokens": tokens }))
        }
        AdminCommand::ManagementToken(ManagementTokenCommand::Revoke { id }) => {
            let revoked = management
                .revoke_management_token(&id)
                .await
                .map_err(|error| explain(error, "no management token has that id"))?;
            json(&revoked)
        }
        AdminCommand::ManagementToken(ManagementTokenCommand::Create { subject, ttl }) => {
            let ttl = ttl
                .as_deref()
                .map(str::parse::<TtlDuration>)
                .transpose()
                .context("invalid --ttl")?;
            let created = management
                .create_management_token(&subject, ttl)
                .await
                .map_err(|error| {
                    explain(
                        error,
                        "unknown subject: add the principal to a project first",
                    )
                })?;
            json(&created)
        }
    }
}

/// The management API's create body for `gateway admin key create`.
fn create_token(args: KeyCreateArgs) -> CreateToken {
    CreateToken {
        name: args.name,
        description: args.description,
        ttl_duration: args.ttl,
        labels: None,
        allowed_models: (!args.allowed_models.is_empty()).then_some(args.allowed_models),
    }
}

fn project_id(text: &str) -> anyhow::Result<uuid::Uuid> {
    parse_id(text).map_err(|_| anyhow::anyhow!("--project {text:?} is not a project id (UUID)"))
}

/// Says what a [`AuthError::NotFound`] means for the command at hand.
fn explain(error: AuthError, not_found: &'static str) -> anyhow::Error {
    match error {
        AuthError::NotFound => anyhow::anyhow!(not_found),
        other => other.into(),
    }
}

fn json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string(value)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_arguments_become_a_create_body() {
        let args = KeyCreateArgs {
            project: String::new(),
            name: "ci".to_owned(),
            ttl: Some("30d".to_owned()),
            description: None,
            allowed_models: vec![],
            region: "eu01".to_owned(),
        };
        let body = create_token(args);
        assert_eq!(body.name, "ci");
        assert_eq!(body.ttl_duration.as_deref(), Some("30d"));
        assert_eq!(body.allowed_models, None);
    }

    #[test]
    fn project_ids_must_be_uuids() {
        assert!(project_id("nope").is_err());
        assert!(project_id("0b3c8f9e-2f4d-4c1a-9d6e-1f2a3b4c5d6e").is_ok());
    }
}
