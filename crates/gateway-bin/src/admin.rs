//! `gateway admin …`: the operator's commands. They open the same database as `serve` (also
//! while it runs) and print exactly one JSON object on stdout, so scripts can use them.

use anyhow::Context;
use gateway_auth::{parse_id, AuthError, CreateToken, Management, Role, TtlDuration};
use serde::Serialize;

use crate::cli::{
    AdminArgs, AdminCommand, KeyCommand, KeyCreateArgs, ManagementTokenCommand, PrincipalCommand,
    ProjectCommand,
};
use crate::config::Config;

/// Runs one admin command and prints its result.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let config = Config::load_with_env(args.config.as_deref())?;
    let management = Management::new(crate::store::open(&config).await?);
    let output = execute(&management, args.command).await?;
    println!("{output}");
    Ok(())
}

/// Executes `command` and returns its JSON output.
async fn execute(management: &Management, command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::Project(ProjectCommand::Create { name }) => {
            json(&management.create_project(&name).await?)
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
